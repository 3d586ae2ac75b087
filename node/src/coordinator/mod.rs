//! The coordinator: any node runs any request against the replicas that own its key.
//!
//! The executor turns CQL into mutations and slice reads and hands them to a
//! [`DataPath`]; in a cluster that data path is the [`Coordinator`]. For each request it:
//!
//! 1. takes one snapshot of the cluster ([`placement::ClusterState`]: the token ring, replica maps
//!    cached per keyspace replication, and who is alive);
//! 2. finds the replicas of the partition ([`ringdb_ring::ReplicaMap`]) and works out what the
//!    consistency level needs from them ([`ringdb_ring::Requirement`]); if the replicas alive
//!    cannot meet it, the request fails at once with `Unavailable` and nothing is sent;
//! 3. sends the verb ([`crate::verbs`]) to the replicas — in-process to this node's own
//!    [`Replica`], over the internode transport to the others — and counts answers with a
//!    sans-I/O [`ringdb_ring::QuorumTracker`] until the level is met, cannot be met any more
//!    (`WriteFailure`/`ReadFailure`), or the request timeout passes (`WriteTimeout`/`ReadTimeout`
//!    with what was received and what was needed).
//!
//! Writes ([`write`]) go to every live replica of every datacenter; the answer waits only for as
//! many as the level needs, while the other replicas keep applying in the background. A replica
//! that is down, or does not answer in time, gets a hint instead, replayed when it is back
//! ([`hints`]); a write at `ANY` with no replica alive is acknowledged on a stored hint. The partitions of a simple write or
//! an unlogged batch are coordinated independently; a logged batch over several partitions is
//! first stored in a batchlog on two other nodes ([`batchlog`]), which replay it if this node
//! dies before it is applied, so that once acknowledged it is applied completely or not at all.
//!
//! Reads ([`read`]) ask the closest replica for the data and as many others as the level needs
//! for a digest only. When a digest differs, the coordinator reads the full data from all of
//! them, merges it last-write-wins, writes the merged partition back to every replica whose
//! answer differed (blocking read repair: the client sees the answer only once a quorum holds
//! it, so a later read at the same level can never see older data) and answers with the merge.
//!
//! Range scans ([`scan`]) walk the ring in token order, one piece with one replica set at a
//! time, reading full data from as many replicas as the level needs and merging it; paging
//! state stays the executor's (the last partition key seen).
//!
//! Timestamps are not the coordinator's business: the executor stamps mutations with the hybrid
//! logical clock before they get here, replicas show every timestamp they apply to their clock,
//! and the coordinator shows its own clock the newest timestamp in what it reads, so a write a
//! client makes after reading something is always stamped later than it.
//!
//! Reads and scans with a row limit are protected against short reads: when replicas disagree
//! about which rows are live, the merge is trusted only as far as every replica that stopped at
//! the limit got, and the replicas are asked again past that point ([`read::short_read_cut`]).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use ringdb_gossip::membership::Membership;
use ringdb_gossip::transport::{Channel, Transport, TransportError};
use ringdb_ring::consistency::Counting;
use ringdb_ring::{ConsistencyLevel, HostId, Requirement};

use crate::executor::datapath::{PartitionRead, RangeRead, WriteRequest};
use crate::executor::{DataPath, ExecError};
use crate::hints::HintStore;
use crate::replica::Replica;
use crate::schema::SchemaStore;
use crate::storage::{PartitionData, TableId};
use crate::verbs::{self, VerbRequest, VerbResponse};

pub mod batchlog;
mod forward;
pub mod hints;
pub mod placement;
mod read;
mod scan;
pub mod streaming;
#[cfg(test)]
pub(crate) mod testing;
mod write;

pub use batchlog::run_batchlog_replay;
pub use hints::run_hint_replay;

use placement::{ClusterState, KeyspacePlacement};

/// How long a TRUNCATE waits for every node.
pub const TRUNCATE_TIMEOUT: Duration = Duration::from_secs(10);

/// The coordinator's settings.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    /// This node's host id.
    pub local: HostId,
    /// This node's datacenter (the `LOCAL_*` levels count replicas there).
    pub dc: String,
    /// This node's rack (replica proximity).
    pub rack: String,
    /// How long a write waits for its consistency level (`write_request_timeout_ms`).
    pub write_timeout: Duration,
    /// How long a read waits (`read_request_timeout_ms`).
    pub read_timeout: Duration,
    /// Most bytes per second this node streams ranges at when it joins or leaves
    /// (`stream_throughput_outbound`; 0: unthrottled).
    pub stream_throughput: u64,
}

/// Coordinates requests across the replicas of the cluster. Until [`Coordinator::attach`] gives
/// it the transport and the membership, it knows no ring and answers `Unavailable`.
pub struct Coordinator {
    replica: Arc<Replica>,
    schema: Arc<SchemaStore>,
    config: CoordinatorConfig,
    state: RwLock<Arc<ClusterState>>,
    transport: OnceLock<Transport>,
    /// Hints for replicas that miss writes ([`hints`]).
    hints: Arc<HintStore>,
    /// When each host that is down was seen going down (the hint window counts from there).
    down_since: Mutex<HashMap<HostId, Instant>>,
    /// When this coordinator started (the hint window of hosts never seen up counts from here).
    started: Instant,
    /// Woken when a host comes up, so that its hints go at once rather than at the next round.
    hint_wake: tokio::sync::Notify,
    /// This coordinator, for background work that outlives a request (batchlog removal).
    me: Weak<Coordinator>,
    /// The deliberate bug of test clusters ([`crate::faults`]); off unless a fault file sets it.
    lose_writes: Arc<crate::faults::LoseWrites>,
    /// Cross-datacenter writes waiting for forwarded acknowledgements ([`forward`]).
    forwards: forward::Forwards,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("local", &self.config.local)
            .finish_non_exhaustive()
    }
}

/// What one replica answered (or why it did not).
type Answer = (HostId, Result<VerbResponse, String>);

impl Coordinator {
    /// A coordinator over this node's replica.
    pub fn new(
        replica: Arc<Replica>,
        schema: Arc<SchemaStore>,
        hints: Arc<HintStore>,
        config: CoordinatorConfig,
    ) -> Arc<Coordinator> {
        let empty = ClusterState {
            placement: Arc::new(placement::Placement::new(Default::default())),
            alive: HashSet::from([config.local]),
            local: config.local,
        };
        Arc::new_cyclic(|me| Coordinator {
            replica,
            schema,
            config,
            state: RwLock::new(Arc::new(empty)),
            transport: OnceLock::new(),
            hints,
            down_since: Mutex::new(HashMap::new()),
            started: Instant::now(),
            hint_wake: tokio::sync::Notify::new(),
            me: me.clone(),
            lose_writes: Arc::default(),
            forwards: forward::Forwards::default(),
        })
    }

    /// The switch of the deliberate write-losing bug ([`crate::faults`], test clusters only).
    pub fn lose_writes(&self) -> Arc<crate::faults::LoseWrites> {
        self.lose_writes.clone()
    }

    /// Connects the coordinator to the cluster: requests to other nodes go through `transport`,
    /// and the ring follows `membership`'s view. Returns the task that tracks the view; it ends
    /// when the view's sender is gone or `shutdown` turns true.
    pub fn attach(
        self: &Arc<Self>,
        transport: Transport,
        membership: &Membership,
        mut shutdown: watch::Receiver<bool>,
    ) -> JoinHandle<()> {
        let _ = self.transport.set(transport);
        let mut views = membership.watch();
        self.update_state(&views.borrow_and_update());
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    changed = views.changed() => {
                        if changed.is_err() {
                            return;
                        }
                    }
                    _ = crate::server::stopping(&mut shutdown) => return,
                }
                let view = views.borrow_and_update().clone();
                this.update_state(&view);
            }
        })
    }

    fn update_state(&self, view: &ringdb_gossip::state::ClusterView) {
        let previous = self.state();
        let next = ClusterState::of(view, self.config.local, Some(&previous));
        self.track_down(&previous, &next);
        // A node seen coming back (possibly only through others' gossip) may be in this node's
        // connection back-off from while it was down: requests to it would fail fast for up to
        // the back-off's length although it is up.
        if let Some(transport) = self.transport.get() {
            for host in next.alive.difference(&previous.alive) {
                if let Some(addr) = next.addr_of(host) {
                    transport.reset_backoff(addr);
                }
            }
        }
        if next.alive.difference(&previous.alive).next().is_some() {
            self.hint_wake.notify_one();
        }
        if !Arc::ptr_eq(&next.placement, &previous.placement) {
            let ring = next.placement.ring();
            tracing::info!(
                nodes = ring.topology().len(),
                vnodes = ring.len(),
                "ring changed"
            );
        }
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(next);
    }

    /// The current cluster snapshot.
    pub fn state(&self) -> Arc<ClusterState> {
        self.state.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// This node's settings.
    pub fn config(&self) -> &CoordinatorConfig {
        &self.config
    }

    /// The hints this node keeps for other replicas.
    pub fn hints(&self) -> &Arc<HintStore> {
        &self.hints
    }

    /// The placement of `keyspace` on the current ring.
    fn keyspace(
        &self,
        state: &ClusterState,
        keyspace: &str,
    ) -> Result<Arc<KeyspacePlacement>, ExecError> {
        let schema = self.schema.current();
        let ks = schema
            .keyspace(keyspace)
            .ok_or_else(|| ExecError::Invalid(format!("Keyspace '{keyspace}' does not exist")))?;
        state
            .placement
            .keyspace(&ks.replication)
            .map_err(|e| ExecError::Invalid(format!("keyspace {keyspace}: {e}")))
    }

    /// What a read at `consistency` of `keyspace` needs: the level, the snapshot, the keyspace's
    /// placement and the requirement.
    fn plan_read(
        &self,
        keyspace: &str,
        consistency: u16,
    ) -> Result<(Arc<ClusterState>, Arc<KeyspacePlacement>, Requirement), ExecError> {
        let cl = consistency_level(consistency)?;
        cl.validate_for_read()
            .map_err(|e| ExecError::Invalid(e.to_string()))?;
        let state = self.state();
        let ksp = self.keyspace(&state, keyspace)?;
        let requirement = Requirement::new(cl, &ksp.replication, &self.config.dc);
        Ok((state, ksp, requirement))
    }

    /// The replicas a read asks: the closest live ones, as many as `requirement` needs (never
    /// empty), or `Unavailable` when too few are alive. Also returns every live replica, in
    /// proximity order (the spares to ask when a target fails).
    fn read_targets(
        &self,
        state: &ClusterState,
        requirement: &Requirement,
        replicas: &[HostId],
        consistency: u16,
    ) -> Result<(Vec<HostId>, Vec<HostId>), ExecError> {
        let live: Vec<HostId> = state
            .by_proximity(replicas, &self.config.dc, &self.config.rack)
            .into_iter()
            .filter(|h| state.is_alive(h))
            .collect();
        requirement
            .check_live(live.iter().map(|h| state.dc_of(h)))
            .map_err(|u| unavailable(consistency, u))?;
        let targets = closest_needed(requirement, &live, state);
        if targets.is_empty() {
            return Err(nobody_to_ask(consistency, requirement));
        }
        Ok((targets, live))
    }

    /// Sends `request` to each of `hosts` (this node in-process, others over the transport) and
    /// returns a channel yielding each answer as it arrives. The sends run as their own tasks:
    /// they go on after the caller stops listening (a write acknowledged at ONE still reaches
    /// every live replica).
    pub(crate) fn dispatch(
        &self,
        state: &ClusterState,
        hosts: &[HostId],
        request: VerbRequest,
        timeout: Duration,
    ) -> mpsc::Receiver<Answer> {
        let (tx, rx) = mpsc::channel(hosts.len().max(1));
        self.send_to(state, hosts, request, timeout, &tx);
        rx
    }

    /// Like [`Coordinator::dispatch`], answering on `tx` (which must have room for one answer
    /// per host, so that no send task ever waits).
    pub(super) fn send_to(
        &self,
        state: &ClusterState,
        hosts: &[HostId],
        request: VerbRequest,
        timeout: Duration,
        tx: &mpsc::Sender<Answer>,
    ) {
        let request = Arc::new(request);
        let mut body: Option<Result<Bytes, String>> = None;
        for &host in hosts {
            let tx = tx.clone();
            if host == self.config.local {
                let replica = self.replica.clone();
                let request = request.clone();
                tokio::spawn(async move {
                    let answer = tokio::time::timeout(timeout, replica.handle(&request))
                        .await
                        .map_err(|_| "local replica timed out".to_string());
                    let _ = tx.send((host, answer)).await;
                });
                continue;
            }
            let encoded = body.get_or_insert_with(|| verbs::encode(&*request)).clone();
            let addr = state.addr_of(&host);
            let transport = self.transport.get().cloned();
            tokio::spawn(async move {
                let answer = match (encoded, addr, transport) {
                    (Err(e), _, _) => Err(e),
                    (_, None, _) => Err("replica not in the ring".to_string()),
                    (_, _, None) => Err("not connected to the cluster".to_string()),
                    (Ok(body), Some(addr), Some(transport)) => {
                        remote_call(&transport, addr, body, timeout).await
                    }
                };
                let _ = tx.send((host, answer)).await;
            });
        }
    }
}

async fn remote_call(
    transport: &Transport,
    addr: SocketAddr,
    body: Bytes,
    timeout: Duration,
) -> Result<VerbResponse, String> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut attempts = 0;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let error = match transport
            .request(addr, Channel::Verb, body.clone(), left)
            .await
        {
            Ok(bytes) => return verbs::decode(&bytes),
            Err(e) => e,
        };
        attempts += 1;
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        // The coordinator sends only to replicas it believes alive, so a failure that says
        // nothing about the peer now is worth another try while time is left (every verb is
        // idempotent: last-write-wins): a connection that closed under the request (typically
        // the peer restarted and the transport dropped its old incarnation's connections), a
        // dial that failed or a back-off that began just before the peer came back, a peer
        // whose inbound queue was full for a moment.
        let wait = match &error {
            TransportError::ConnectionLost { .. } | TransportError::Connect { .. } => {
                Some(Duration::ZERO)
            }
            TransportError::Unreachable { retry_in, .. } => Some(*retry_in),
            TransportError::Overloaded { .. } => Some(RETRY_OVERLOADED_AFTER * attempts),
            _ => None,
        };
        match wait {
            Some(wait) if attempts < REMOTE_ATTEMPTS && wait < left / 2 => {
                tokio::time::sleep(wait).await;
            }
            _ => return Err(error.to_string()),
        }
    }
}

/// Most attempts at one internode request that fails transiently ([`remote_call`]).
const REMOTE_ATTEMPTS: u32 = 4;

/// How long a request to an overloaded peer waits before its next attempt, times the attempts
/// made.
const RETRY_OVERLOADED_AFTER: Duration = Duration::from_millis(20);

/// Parses a protocol consistency code.
fn consistency_level(code: u16) -> Result<ConsistencyLevel, ExecError> {
    ConsistencyLevel::from_code(code)
        .map_err(|_| ExecError::Protocol(format!("unknown consistency level 0x{code:04x}")))
}

/// The hosts a request at `requirement` is sent to when only as many as needed are asked (reads):
/// the closest live replicas that count, enough for each counting group, in proximity order.
fn closest_needed(
    requirement: &Requirement,
    by_proximity: &[HostId],
    state: &ClusterState,
) -> Vec<HostId> {
    let picked: Vec<HostId> = match requirement.counting() {
        Counting::Anywhere { block_for } => by_proximity.iter().take(*block_for).copied().collect(),
        Counting::InDc { dc, block_for } => by_proximity
            .iter()
            .filter(|h| state.dc_of(h) == dc)
            .take(*block_for)
            .copied()
            .collect(),
        Counting::PerDc(per_dc) => {
            let mut out = Vec::new();
            for (dc, need) in per_dc {
                out.extend(
                    by_proximity
                        .iter()
                        .filter(|h| state.dc_of(h) == dc)
                        .take(*need)
                        .copied(),
                );
            }
            out
        }
    };
    by_proximity
        .iter()
        .filter(|h| picked.contains(h))
        .copied()
        .collect()
}

/// `Unavailable` for a request with no replica at all to ask (an empty ring, or a level that
/// needs none that is alive).
fn nobody_to_ask(consistency: u16, requirement: &Requirement) -> ExecError {
    unavailable(
        consistency,
        ringdb_ring::Unavailable {
            consistency: requirement.consistency(),
            required: requirement.block_for().max(1),
            alive: 0,
            dc: None,
        },
    )
}

fn unavailable(consistency: u16, u: ringdb_ring::Unavailable) -> ExecError {
    metrics::counter!(crate::metrics::COORDINATOR_ERRORS, "kind" => "unavailable").increment(1);
    ExecError::Unavailable {
        consistency,
        required: u.required as i32,
        alive: u.alive as i32,
    }
}

/// The data of a remote answer, for read paths.
/// Why a replica's answer is a failure, for the client's error message: `replica H: what it
/// said`, or `replica H not reached: why`.
fn failure_reason(host: HostId, answer: &Result<VerbResponse, String>) -> String {
    match answer {
        Ok(VerbResponse::Error(e)) => format!("replica {host}: {e}"),
        Ok(other) => format!("replica {host}: unexpected answer {other:?}"),
        Err(e) => format!("replica {host} not reached: {e}"),
    }
}

/// Failure reasons a client error carries at most (the first ones).
const MAX_FAILURE_REASONS: usize = 3;

/// Keeps the first [`MAX_FAILURE_REASONS`] reasons.
fn note_failure(reasons: &mut Vec<String>, reason: impl FnOnce() -> String) {
    if reasons.len() < MAX_FAILURE_REASONS {
        reasons.push(reason());
    }
}

fn expect_data(answer: Result<VerbResponse, String>) -> Result<Option<PartitionData>, String> {
    match answer? {
        VerbResponse::Data(d) => Ok(d),
        VerbResponse::Error(e) => Err(e.to_string()),
        other => Err(format!("unexpected answer {other:?}")),
    }
}

impl DataPath for Coordinator {
    fn write(&self, write: WriteRequest) -> BoxFuture<'_, Result<(), ExecError>> {
        Box::pin(self.coordinate_write(write))
    }

    fn read<'a>(
        &'a self,
        read: PartitionRead<'a>,
    ) -> BoxFuture<'a, Result<Option<PartitionData>, ExecError>> {
        Box::pin(self.read_partition(read))
    }

    fn scan<'a>(
        &'a self,
        read: RangeRead<'a>,
    ) -> BoxFuture<'a, Result<Vec<PartitionData>, ExecError>> {
        Box::pin(self.scan_range(read))
    }

    fn truncate<'a>(
        &'a self,
        _keyspace: &'a str,
        table: TableId,
    ) -> BoxFuture<'a, Result<(), ExecError>> {
        Box::pin(async move {
            let state = self.state();
            let hosts: Vec<HostId> = state.placement.ring().hosts().collect();
            let alive = hosts.iter().filter(|h| state.is_alive(h)).count();
            if alive < hosts.len() {
                return Err(ExecError::Unavailable {
                    consistency: ConsistencyLevel::All.code(),
                    required: hosts.len() as i32,
                    alive: alive as i32,
                });
            }
            let mut answers = self.dispatch(
                &state,
                &hosts,
                VerbRequest::Truncate { table },
                TRUNCATE_TIMEOUT,
            );
            let mut done = 0;
            while let Some((host, answer)) = answers.recv().await {
                match answer {
                    Ok(VerbResponse::Truncated) => done += 1,
                    Ok(other) => {
                        return Err(ExecError::Server(format!(
                            "truncate failed on {host}: {other:?}"
                        )))
                    }
                    Err(e) => {
                        return Err(ExecError::Server(format!("truncate failed on {host}: {e}")))
                    }
                }
            }
            if done < hosts.len() {
                return Err(ExecError::Server(format!(
                    "truncate reached {done} of {} nodes",
                    hosts.len()
                )));
            }
            Ok(())
        })
    }
}
