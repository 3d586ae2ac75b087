//! Logged batches: once acknowledged, applied completely or not at all.
//!
//! A mutation is atomic on its partition (one table, one partition key), and the partitions of
//! a batch live on different replicas: a coordinator that dies halfway through a batch would
//! leave some of it applied and the rest lost. Like Cassandra, ringdb makes a logged batch over
//! several mutations atomic *eventually* with a batchlog — a copy of the whole batch kept by
//! other nodes until the batch is known to be applied, and replayed by them otherwise:
//!
//! 1. **Check.** The batch is planned like any write (groups of mutations per keyspace and
//!    replica set) and every group's availability is checked first: `Unavailable` means
//!    nothing, batchlog included, was written.
//! 2. **Batchlog.** The coordinator picks up to two *batchlog nodes* ([`batchlog_endpoints`]):
//!    live ring members of its own datacenter other than itself, on racks other than its own
//!    and each other's when there are such, so that one failure — the coordinator's, or a
//!    rack's — does not take every copy with it. It sends them the whole batch
//!    ([`VerbRequest::BatchlogStore`], with a time-based id) and waits until both keep it
//!    durably. A node alone in its datacenter keeps its own batchlog (it is replayed when the
//!    node restarts). A node whose datacenter peers are all down answers `Unavailable` (ONE
//!    required, 0 alive), as Cassandra does, unless the level is ANY, which makes do with a
//!    local batchlog. A batchlog that cannot be stored in time is a `WriteTimeout` with
//!    write type `BATCH_LOG` and the level `ONE` or `TWO` (one per batchlog node): nothing
//!    was sent to the replicas, so drivers may retry it; the copies that were stored are
//!    removed, best effort.
//! 3. **Write.** The groups are written exactly as a simple write, at the requested level;
//!    a timeout or failure now reports write type `BATCH`. Whatever the client is told, the
//!    batchlog stays until step 4, so a batch the client saw fail is still completed by replay.
//! 4. **Forget.** In the background, once *every live replica* it was sent to has applied
//!    *every* group, the coordinator tells the batchlog nodes to remove the batch
//!    ([`VerbRequest::BatchlogRemove`], best effort). Cassandra removes it as soon as every
//!    mutation met the level and relies on hints for the replicas still missing it; ringdb has
//!    no hints yet, so the batchlog is what carries the batch to those replicas: if one of them
//!    failed or did not answer within the write timeout, the batch is left for replay.
//!
//! **Replay** ([`run_batchlog_replay`]): every [`BATCHLOG_REPLAY_INTERVAL`] each node looks at
//! its batchlog, oldest first, and replays the batches older than the grace period
//! ([`batchlog_grace`]: twice the write timeout, at least [`MIN_BATCHLOG_GRACE`]; before that the
//! coordinator may still be at step 3 or 4). Age comes from the batch id's time, the
//! coordinator's clock, as in Cassandra: clock skew between nodes shifts replay by as much,
//! which only delays it or repeats work that last-write-wins makes harmless. A replay sends
//! every mutation to *all* its live replicas through this node's coordinator and waits for
//! every one of them: waiting for a level only (ONE, QUORUM) would leave the rest to repair
//! with no batchlog left to retry from. Replicas that are down get nothing (the same rule as any
//! write until hints exist) but at least one replica of each mutation must be alive. Only when
//! everything was applied is the batch removed; otherwise it is retried the next round.
//! Mutations of tables dropped since, and mutations older than their table's
//! `gc_grace_seconds` (whose tombstones may already be purged, so replaying them could bring
//! back deleted data — Cassandra skips them too) are not replayed. A round replays at most
//! [`MAX_BATCHES_PER_ROUND`] batches, reading one at a time (each at most a verb's size).
//!
//! Replaying is idempotent: the mutations carry their timestamps, so a batch applied twice, or
//! replayed after newer writes to the same cells, changes nothing that should not change.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{oneshot, watch};

use ringdb_cql::message::WriteType;
use ringdb_ring::{ConsistencyLevel, HostId, Token};

use super::write::WriteGroup;
use super::{unavailable, ClusterState, Coordinator};
use crate::executor::ExecError;
use crate::metrics as m;
use crate::replica::{batch_time, BatchlogCursor, StoredBatch};
use crate::storage::Mutation;
use crate::verbs::{self, VerbRequest, VerbResponse};

/// How often the replay worker looks at the batchlog (Cassandra: 10 s).
pub const BATCHLOG_REPLAY_INTERVAL: Duration = Duration::from_secs(10);

/// The shortest time a batch stays in the batchlog before a replay may touch it.
pub const MIN_BATCHLOG_GRACE: Duration = Duration::from_secs(10);

/// Most batches one replay round replays (or tries to): a round with failing replays costs up
/// to a write timeout per batch.
pub const MAX_BATCHES_PER_ROUND: usize = 32;

/// Batchlog nodes per batch.
const BATCHLOG_COPIES: usize = 2;

/// How old a batch must be before it is replayed: twice the write timeout (a coordinator
/// still writing it is done by then, removal included), at least [`MIN_BATCHLOG_GRACE`].
pub fn batchlog_grace(write_timeout: Duration) -> Duration {
    write_timeout.saturating_mul(2).max(MIN_BATCHLOG_GRACE)
}

/// The nodes that keep the batchlog of a batch coordinated by `state.local` (in datacenter `dc`
/// and rack `rack`): up to two live ring members of `dc` other than the coordinator, chosen
/// first on racks other than `rack` and other than each other's, then on racks not yet used,
/// then any. `spread` rotates the candidates so that batches spread over the datacenter.
///
/// The coordinator alone when no other ring member is in `dc`; empty when there are such
/// members but none is alive.
pub fn batchlog_endpoints(
    state: &ClusterState,
    dc: &str,
    rack: &str,
    spread: usize,
) -> Vec<HostId> {
    let placement = &state.placement;
    let mut peers: Vec<(HostId, &str)> = placement
        .ring()
        .hosts()
        .filter(|h| *h != state.local)
        .filter_map(|h| placement.endpoint(&h).map(|e| (h, e)))
        .filter(|(_, e)| e.dc == dc)
        .map(|(h, e)| (h, e.rack.as_str()))
        .collect();
    if peers.is_empty() {
        return vec![state.local];
    }
    peers.retain(|(h, _)| state.is_alive(h));
    if peers.is_empty() {
        return Vec::new();
    }
    peers.sort();
    let start = spread % peers.len();
    peers.rotate_left(start);
    let mut chosen: Vec<(HostId, &str)> = Vec::with_capacity(BATCHLOG_COPIES);
    for pass in 0..3 {
        for &(host, host_rack) in &peers {
            if chosen.len() == BATCHLOG_COPIES {
                break;
            }
            if chosen.iter().any(|(h, _)| *h == host) {
                continue;
            }
            let rack_used = chosen.iter().any(|(_, r)| *r == host_rack);
            let fits = match pass {
                0 => host_rack != rack && !rack_used,
                1 => !rack_used,
                _ => true,
            };
            if fits {
                chosen.push((host, host_rack));
            }
        }
    }
    chosen.into_iter().map(|(h, _)| h).collect()
}

/// A new batch id: time-based (version 1), the node part from the coordinator's host id.
fn new_batch_id(local: &HostId) -> uuid::Uuid {
    let h = &local.0;
    uuid::Uuid::now_v1(&[h[10], h[11], h[12], h[13], h[14], h[15]])
}

/// Microseconds since the epoch (0 before it).
fn unix_micros(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// What one replay round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayRound {
    /// Batches applied by every live replica and removed.
    pub replayed: usize,
    /// Batches whose replay failed; they stay for the next round.
    pub failed: usize,
    /// Batches removed without being written: undecodable, or nothing left to replay (tables
    /// dropped, mutations older than `gc_grace_seconds`).
    pub discarded: usize,
}

impl Coordinator {
    /// Steps 2 to 4 of the module documentation, for the already planned `groups` of `batch`.
    pub(super) async fn write_logged_batch(
        &self,
        state: Arc<ClusterState>,
        cl: ConsistencyLevel,
        consistency: u16,
        groups: Vec<WriteGroup>,
        batch: Vec<Mutation>,
    ) -> Result<(), ExecError> {
        let id = new_batch_id(&self.config.local);
        let request = VerbRequest::BatchlogStore {
            id,
            mutations: batch,
            written_at: unix_micros(SystemTime::now()),
        };
        let size = verbs::encoded_len(&request).map_err(ExecError::Server)?;
        if size > verbs::MAX_VERB_BYTES {
            return Err(ExecError::Invalid(format!(
                "Batch too large: a logged batch travels to its batchlog as one message of at \
                 most {} bytes, this one takes {size}",
                verbs::MAX_VERB_BYTES
            )));
        }
        let mut endpoints = batchlog_endpoints(
            &state,
            &self.config.dc,
            &self.config.rack,
            rand::random::<u32>() as usize,
        );
        if endpoints.is_empty() {
            if cl != ConsistencyLevel::Any {
                return Err(unavailable(
                    ConsistencyLevel::One.code(),
                    ringdb_ring::Unavailable {
                        consistency: ConsistencyLevel::One,
                        required: 1,
                        alive: 0,
                        dc: Some(self.config.dc.clone()),
                    },
                ));
            }
            endpoints.push(self.config.local);
        }
        self.store_batchlog(&state, &endpoints, id, request).await?;

        let (done, applied): (Vec<_>, Vec<_>) = groups.iter().map(|_| oneshot::channel()).unzip();
        self.remove_batchlog_once_applied(state.clone(), endpoints, id, applied);
        self.write_groups(&state, consistency, WriteType::Batch, groups, Some(done))
            .await
    }

    /// Sends the batch to its batchlog nodes and waits until every one keeps it.
    async fn store_batchlog(
        &self,
        state: &Arc<ClusterState>,
        endpoints: &[HostId],
        id: uuid::Uuid,
        request: VerbRequest,
    ) -> Result<(), ExecError> {
        let timeout = self.config.write_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut answers = self.dispatch(state, endpoints, request, timeout);
        let mut stored = 0;
        let failure = loop {
            match tokio::time::timeout_at(deadline, answers.recv()).await {
                Ok(Some((_, Ok(VerbResponse::BatchlogStored)))) => {
                    stored += 1;
                    if stored == endpoints.len() {
                        return Ok(());
                    }
                }
                Ok(Some((host, answer))) => break format!("{host} answered {answer:?}"),
                Ok(None) => break "no answer".to_string(),
                Err(_) => break format!("no answer within {timeout:?}"),
            }
        };
        tracing::debug!(%id, stored, wanted = endpoints.len(), %failure, "batchlog not stored");
        metrics::counter!(m::COORDINATOR_ERRORS, "kind" => "write_timeout").increment(1);
        // The batch is not written at all: forget the copies that were kept, so that it is not
        // replayed either (best effort: a copy that stays is replayed, which a timeout allows).
        if let Some(me) = self.me.upgrade() {
            let state = state.clone();
            let endpoints = endpoints.to_vec();
            tokio::spawn(async move { me.remove_batchlog(&state, &endpoints, id).await });
        }
        let level = if endpoints.len() == 1 {
            ConsistencyLevel::One
        } else {
            ConsistencyLevel::Two
        };
        Err(ExecError::WriteTimeout {
            consistency: level.code(),
            received: stored as i32,
            block_for: endpoints.len() as i32,
            write_type: WriteType::BatchLog.as_str().to_string(),
        })
    }

    /// In the background: once every group reports that all its live replicas applied it, the
    /// batchlog nodes forget the batch; otherwise it stays for replay.
    fn remove_batchlog_once_applied(
        &self,
        state: Arc<ClusterState>,
        endpoints: Vec<HostId>,
        id: uuid::Uuid,
        applied: Vec<oneshot::Receiver<bool>>,
    ) {
        let Some(me) = self.me.upgrade() else {
            return;
        };
        tokio::spawn(async move {
            let everywhere = futures::future::join_all(applied)
                .await
                .into_iter()
                .all(|a| matches!(a, Ok(true)));
            if everywhere {
                me.remove_batchlog(&state, &endpoints, id).await;
            } else {
                tracing::debug!(%id, "logged batch not applied by every live replica: left for batchlog replay");
            }
        });
    }

    /// Tells the batchlog nodes to forget a batch and waits for their answers (failures are
    /// only logged: a batch left behind is replayed, harmlessly).
    async fn remove_batchlog(&self, state: &ClusterState, endpoints: &[HostId], id: uuid::Uuid) {
        let mut answers = self.dispatch(
            state,
            endpoints,
            VerbRequest::BatchlogRemove { id },
            self.config.write_timeout,
        );
        while let Some((host, answer)) = answers.recv().await {
            if !matches!(answer, Ok(VerbResponse::BatchlogRemoved)) {
                tracing::debug!(%id, %host, ?answer, "batchlog removal failed: the batch will be replayed");
            }
        }
    }

    /// One replay round at `now`: this node's batchlog, oldest first, up to the first batch
    /// younger than [`batchlog_grace`] and at most [`MAX_BATCHES_PER_ROUND`] batches, each
    /// replayed (see the module documentation) and removed once every live replica applied it.
    pub async fn replay_batchlog(&self, now: SystemTime) -> ReplayRound {
        let grace = batchlog_grace(self.config.write_timeout);
        let mut round = ReplayRound::default();
        let mut cursor = BatchlogCursor::default();
        for _ in 0..MAX_BATCHES_PER_ROUND {
            let (records, next) = match self.replica.batchlog_page(&cursor, 1) {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the batchlog");
                    break;
                }
            };
            if next == cursor {
                break; // the end of the batchlog
            }
            cursor = next;
            let Some(record) = records.into_iter().next() else {
                continue; // a malformed key, logged by the replica
            };
            let id = record.id;
            let Some(made) = batch_time(&id) else {
                tracing::warn!(%id, "batchlog entry without a time-based id: skipped");
                continue;
            };
            if now.duration_since(made).map_or(true, |age| age < grace) {
                break; // keys are in time order: every later batch is younger still
            }
            match record.batch {
                Err(e) => {
                    tracing::error!(%id, error = %e, "undecodable batchlog entry: removed without replay");
                    self.forget_local_batch(id);
                    round.discarded += 1;
                }
                Ok(batch) => match self.replay_batch(&batch, now).await {
                    Ok(Replayed {
                        written: 0,
                        skipped,
                    }) => {
                        tracing::warn!(%id, skipped, "logged batch with nothing left to replay (tables dropped, or older than gc_grace_seconds): removed");
                        self.forget_local_batch(id);
                        round.discarded += 1;
                    }
                    Ok(Replayed { written, skipped }) => {
                        tracing::info!(%id, mutations = written, skipped, "replayed a logged batch from the batchlog");
                        metrics::counter!(m::BATCHLOG_REPLAYED).increment(1);
                        self.forget_local_batch(id);
                        round.replayed += 1;
                    }
                    Err(e) => {
                        tracing::warn!(%id, error = %e, "batchlog replay failed: retrying next round");
                        round.failed += 1;
                    }
                },
            }
        }
        round
    }

    fn forget_local_batch(&self, id: uuid::Uuid) {
        if let Err(e) = self.replica.remove_batch(id) {
            tracing::warn!(%id, error = %e, "cannot remove a replayed batch from the batchlog");
        }
    }

    /// Writes the mutations of `batch` still worth replaying at `now` to every live replica of
    /// each and waits for all of them.
    async fn replay_batch(&self, batch: &StoredBatch, now: SystemTime) -> Result<Replayed, String> {
        let schema = self.schema.current();
        let tables = schema.replicated_tables_by_id();
        let age_secs = (unix_micros(now) - batch.written_at).max(0) / 1_000_000;
        let state = self.state();
        let mut groups: BTreeMap<Vec<HostId>, Vec<Mutation>> = BTreeMap::new();
        let mut skipped = 0;
        for mutation in &batch.mutations {
            let Some(table) = tables.get(&mutation.table) else {
                skipped += 1;
                continue;
            };
            if age_secs > i64::from(table.options.gc_grace_seconds.max(0)) {
                skipped += 1;
                continue;
            }
            let ksp = self
                .keyspace(&state, &table.keyspace)
                .map_err(|e| e.to_string())?;
            let live: Vec<HostId> = ksp
                .map
                .replicas(Token(mutation.partition.token))
                .iter()
                .filter(|h| state.is_alive(h))
                .copied()
                .collect();
            if live.is_empty() {
                return Err(format!(
                    "no replica of a partition of {}.{} is alive",
                    table.keyspace, table.name
                ));
            }
            groups.entry(live).or_default().push(mutation.clone());
        }
        let written = groups.values().map(Vec::len).sum();
        let timeout = self.config.write_timeout;
        let sent: Vec<_> = groups
            .into_iter()
            .map(|(live, mutations)| {
                let answers = self.dispatch(&state, &live, VerbRequest::mutate(mutations), timeout);
                (live.len(), answers)
            })
            .collect();
        for (wanted, mut answers) in sent {
            let mut applied = 0;
            // Each send gives up at the write timeout, so the channel closes by then.
            while let Some((host, answer)) = answers.recv().await {
                match answer {
                    Ok(VerbResponse::Applied) => applied += 1,
                    other => return Err(format!("{host} answered {other:?}")),
                }
            }
            if applied < wanted {
                return Err(format!("{applied} of {wanted} live replicas answered"));
            }
        }
        Ok(Replayed { written, skipped })
    }
}

/// What replaying one batch wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Replayed {
    /// Mutations applied by every live replica.
    written: usize,
    /// Mutations not replayed: their table is gone, or they are older than its
    /// `gc_grace_seconds`.
    skipped: usize,
}

/// The batchlog replay worker of a node: every [`BATCHLOG_REPLAY_INTERVAL`] (the first time one
/// interval after it starts, when gossip has had time to say who is alive) it runs
/// [`Coordinator::replay_batchlog`] on this node's batchlog. Ends when `shutdown` turns true or
/// its sender is gone, also in the middle of a round: a batch whose replay is cut short stays
/// in the batchlog for the next start.
///
/// Spawn it once per node, next to [`Coordinator::attach`]:
/// `tokio::spawn(run_batchlog_replay(coordinator.clone(), shutdown_rx.clone()))`.
pub async fn run_batchlog_replay(coordinator: Arc<Coordinator>, shutdown: watch::Receiver<bool>) {
    crate::server::every(BATCHLOG_REPLAY_INTERVAL, shutdown, || async {
        let round = coordinator.replay_batchlog(SystemTime::now()).await;
        if round != ReplayRound::default() {
            tracing::info!(
                replayed = round.replayed,
                failed = round.failed,
                discarded = round.discarded,
                "batchlog replay round"
            );
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::net::SocketAddr;

    use super::*;
    use crate::coordinator::placement::host_id;
    use crate::coordinator::testing::{insert, value_of, view_of, TestCluster, TestNode, ViewNode};
    use crate::executor::{DataPath, WriteKind, WriteRequest};
    use crate::schema::TableDef;

    const TIMEOUT: Duration = Duration::from_millis(1500);
    const TABLE: &str = "CREATE TABLE t (k int PRIMARY KEY, v text) WITH gc_grace_seconds = 3600";

    fn host(i: usize) -> HostId {
        host_id(uuid::Uuid::from_u128(i as u128 + 1))
    }

    /// The cluster state node `local` has of `nodes` (datacenter, rack, alive).
    fn state(local: usize, nodes: &[(&str, &str, bool)]) -> ClusterState {
        let addr = |i: usize| SocketAddr::from(([127, 0, 0, 1], 7000 + i as u16));
        let view: Vec<ViewNode<'_>> = nodes
            .iter()
            .enumerate()
            .map(|(i, &(dc, rack, alive))| ViewNode {
                host: host(i),
                addr: addr(i),
                dc,
                rack,
                token: i as i64 * 1000,
                alive,
            })
            .collect();
        ClusterState::of(&view_of(addr(local), &view), host(local), None)
    }

    /// The endpoints node 0 (in dc1, rack r1) picks, for every spread.
    fn picks(nodes: &[(&str, &str, bool)]) -> BTreeSet<Vec<usize>> {
        let state = state(0, nodes);
        (0..8)
            .map(|spread| {
                let mut chosen: Vec<usize> = batchlog_endpoints(&state, "dc1", "r1", spread)
                    .iter()
                    .map(|h| (0..nodes.len()).find(|&i| host(i) == *h).expect("a node"))
                    .collect();
                chosen.sort();
                chosen
            })
            .collect()
    }

    fn set(choices: &[&[usize]]) -> BTreeSet<Vec<usize>> {
        choices.iter().map(|c| c.to_vec()).collect()
    }

    #[test]
    fn batchlog_endpoints_are_live_peers_of_the_datacenter_on_other_racks() {
        let up = true;
        let down = false;
        // Alone in the cluster, or in its datacenter: this node keeps its own batchlog.
        assert_eq!(picks(&[("dc1", "r1", up)]), set(&[&[0]]));
        assert_eq!(
            picks(&[("dc1", "r1", up), ("dc2", "r1", up), ("dc2", "r2", up)]),
            set(&[&[0]])
        );
        // Peers in the datacenter, all down: nobody (the caller answers Unavailable).
        assert_eq!(
            picks(&[("dc1", "r1", up), ("dc1", "r2", down), ("dc2", "r1", up)]),
            set(&[&[]])
        );
        // One live peer: that one only.
        assert_eq!(
            picks(&[("dc1", "r1", up), ("dc1", "r2", down), ("dc1", "r1", up)]),
            set(&[&[2]])
        );
        // Other racks first: never the peer on this node's rack while two other racks have one.
        assert_eq!(
            picks(&[
                ("dc1", "r1", up),
                ("dc1", "r1", up),
                ("dc1", "r2", up),
                ("dc1", "r3", up)
            ]),
            set(&[&[2, 3]])
        );
        // Then racks not used yet: the one other-rack peer, and one of this node's rack.
        assert_eq!(
            picks(&[
                ("dc1", "r1", up),
                ("dc1", "r1", up),
                ("dc1", "r1", up),
                ("dc1", "r2", up)
            ]),
            set(&[&[1, 3], &[2, 3]])
        );
        // Then anyone: two peers on one other rack.
        assert_eq!(
            picks(&[("dc1", "r1", up), ("dc1", "r2", up), ("dc1", "r2", up)]),
            set(&[&[1, 2]])
        );
        // Never a dead peer or another datacenter's.
        assert_eq!(
            picks(&[
                ("dc1", "r1", up),
                ("dc1", "r2", down),
                ("dc2", "r3", up),
                ("dc1", "r3", up),
                ("dc1", "r1", up),
            ]),
            set(&[&[3, 4]])
        );
        // Batches spread over the candidates.
        let spread = picks(&[
            ("dc1", "r1", up),
            ("dc1", "r2", up),
            ("dc1", "r3", up),
            ("dc1", "r4", up),
            ("dc1", "r5", up),
        ]);
        let used: BTreeSet<usize> = spread.iter().flatten().copied().collect();
        assert_eq!(used, BTreeSet::from([1, 2, 3, 4]), "{spread:?}");
    }

    fn batchlog_len(node: &TestNode) -> usize {
        node.replica
            .batchlog_page(&BatchlogCursor::default(), 100)
            .expect("batchlog")
            .0
            .len()
    }

    async fn eventually(what: &str, check: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !check() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "not within 10 s: {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn batch(table: &TableDef, keys: std::ops::Range<i32>, value: &str) -> Vec<(String, Mutation)> {
        keys.map(|k| ("ks".to_string(), insert(table, k, value, 100)))
            .collect()
    }

    async fn write(
        node: &TestNode,
        mutations: Vec<(String, Mutation)>,
        cl: ConsistencyLevel,
        kind: WriteKind,
    ) -> Result<(), ExecError> {
        node.coordinator
            .write(WriteRequest {
                mutations,
                consistency: cl.code(),
                kind,
            })
            .await
    }

    /// The write type of a WriteTimeout or WriteFailure (a peer that is gone may fail a request
    /// at once rather than let it time out).
    fn write_type_of(err: &ExecError) -> Option<&str> {
        match err {
            ExecError::WriteTimeout { write_type, .. }
            | ExecError::WriteFailure { write_type, .. } => Some(write_type),
            _ => None,
        }
    }

    /// When a replay may touch a batch written now.
    fn after_grace() -> SystemTime {
        SystemTime::now() + batchlog_grace(TIMEOUT) + Duration::from_secs(1)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn logged_batch_reaches_every_replica_and_its_batchlog_is_removed() {
        let cluster = TestCluster::start(&["r1", "r2", "r3"], TIMEOUT).await;
        let table = cluster.create_table(3, TABLE);
        let node0 = &cluster.nodes[0];
        write(
            node0,
            batch(&table, 0..6, "x"),
            ConsistencyLevel::Quorum,
            WriteKind::LoggedBatch,
        )
        .await
        .expect("logged batch");
        eventually("every replica holds every row", || {
            cluster
                .nodes
                .iter()
                .all(|n| (0..6).all(|k| value_of(&*n.engine, &table, k).as_deref() == Some("x")))
        })
        .await;
        eventually("every batchlog is empty", || {
            cluster.nodes.iter().all(|n| batchlog_len(n) == 0)
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unreachable_batchlog_is_a_batch_log_timeout_and_writes_nothing() {
        let cluster = TestCluster::start(&["r1", "r2", "r3"], TIMEOUT).await;
        let table = cluster.create_table(3, TABLE);
        // Node 2 died a moment ago; nobody has noticed yet.
        cluster.cut_off(2).await;
        let node0 = &cluster.nodes[0];
        let err = write(
            node0,
            batch(&table, 0..3, "x"),
            ConsistencyLevel::One,
            WriteKind::LoggedBatch,
        )
        .await
        .expect_err("the batchlog needs both its nodes");
        match err {
            ExecError::WriteTimeout {
                consistency,
                received,
                block_for,
                write_type,
            } => {
                assert_eq!(write_type, "BATCH_LOG");
                assert_eq!(consistency, ConsistencyLevel::Two.code());
                assert_eq!(block_for, 2);
                assert!(received <= 1, "{received}");
            }
            other => panic!("expected a BATCH_LOG write timeout, got {other:?}"),
        }
        for node in &cluster.nodes[..2] {
            for k in 0..3 {
                assert_eq!(
                    value_of(&*node.engine, &table, k),
                    None,
                    "nothing was written"
                );
            }
        }
        eventually("the copy node 1 kept is removed", || {
            batchlog_len(&cluster.nodes[1]) == 0
        })
        .await;

        // Unlogged batches and simple writes need no batchlog, and name their own write type.
        write(
            node0,
            batch(&table, 0..3, "u"),
            ConsistencyLevel::One,
            WriteKind::UnloggedBatch,
        )
        .await
        .expect("an unlogged batch at ONE");
        let err = write(
            node0,
            batch(&table, 0..3, "u"),
            ConsistencyLevel::All,
            WriteKind::UnloggedBatch,
        )
        .await
        .expect_err("ALL cannot be met");
        assert_eq!(write_type_of(&err), Some("UNLOGGED_BATCH"), "{err:?}");
        let err = write(
            node0,
            batch(&table, 0..1, "s"),
            ConsistencyLevel::All,
            WriteKind::Simple,
        )
        .await
        .expect_err("ALL cannot be met");
        assert_eq!(write_type_of(&err), Some("SIMPLE"), "{err:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batch_that_misses_a_live_replica_is_completed_by_replay() {
        // Node 3 shares the coordinator's rack, so the batchlog goes to nodes 1 and 2.
        let mut cluster = TestCluster::start(&["r1", "r2", "r3", "r1"], TIMEOUT).await;
        let table = cluster.create_table(4, TABLE);
        cluster.cut_off(3).await;
        let node0 = &cluster.nodes[0];
        let err = write(
            node0,
            batch(&table, 0..4, "x"),
            ConsistencyLevel::All,
            WriteKind::LoggedBatch,
        )
        .await
        .expect_err("node 3 cannot answer");
        assert_eq!(write_type_of(&err), Some("BATCH"), "{err:?}");
        // Written where it could be (the failure may be answered before the other replicas
        // are done); the batchlog stays, because node 3 never applied it.
        eventually("nodes 0 to 2 hold every row", || {
            cluster.nodes[..3]
                .iter()
                .all(|n| (0..4).all(|k| value_of(&*n.engine, &table, k).as_deref() == Some("x")))
        })
        .await;
        tokio::time::sleep(TIMEOUT * 2).await;
        assert_eq!(batchlog_len(&cluster.nodes[1]), 1);
        assert_eq!(batchlog_len(&cluster.nodes[2]), 1);
        assert_eq!(batchlog_len(&cluster.nodes[0]), 0, "not on the coordinator");

        // Too young to replay: the coordinator may still be working on it.
        let round = cluster.nodes[1]
            .coordinator
            .replay_batchlog(SystemTime::now())
            .await;
        assert_eq!(round, ReplayRound::default());
        // While node 3 still looks alive, the replay cannot reach it and keeps the batch.
        let round = cluster.nodes[1]
            .coordinator
            .replay_batchlog(after_grace())
            .await;
        assert_eq!(round.failed, 1, "{round:?}");
        assert_eq!(batchlog_len(&cluster.nodes[1]), 1);
        // Once node 3 is known down, every live replica applies it and the batch is forgotten.
        cluster.set_alive(3, false);
        for i in [1, 2] {
            let round = cluster.nodes[i]
                .coordinator
                .replay_batchlog(after_grace())
                .await;
            assert_eq!(
                round,
                ReplayRound {
                    replayed: 1,
                    ..ReplayRound::default()
                }
            );
            assert_eq!(batchlog_len(&cluster.nodes[i]), 0);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replay_applies_a_batch_whose_coordinator_died() {
        let cluster = TestCluster::start(&["r1", "r2", "r3"], TIMEOUT).await;
        let table = cluster.create_table(3, TABLE);
        let (node0, node1) = (&cluster.nodes[0], &cluster.nodes[1]);
        // Node 0 stores the batchlog on node 1 over the network, then dies before writing.
        let id = new_batch_id(&node0.host);
        let mutations: Vec<Mutation> = batch(&table, 10..14, "replayed")
            .into_iter()
            .map(|(_, m)| m)
            .collect();
        let mut answers = node0.coordinator.dispatch(
            &node0.coordinator.state(),
            &[node1.host],
            VerbRequest::BatchlogStore {
                id,
                mutations,
                written_at: unix_micros(SystemTime::now()),
            },
            TIMEOUT,
        );
        let (_, answer) = answers.recv().await.expect("an answer");
        assert_eq!(answer, Ok(VerbResponse::BatchlogStored));
        assert_eq!(value_of(&*node1.engine, &table, 10), None);

        let round = node1.coordinator.replay_batchlog(after_grace()).await;
        assert_eq!(round.replayed, 1, "{round:?}");
        for node in &cluster.nodes {
            for k in 10..14 {
                assert_eq!(
                    value_of(&*node.engine, &table, k).as_deref(),
                    Some("replayed"),
                    "every live replica has the batch once the replay is done"
                );
            }
        }
        assert_eq!(batchlog_len(node1), 0);
        assert_eq!(
            node1.coordinator.replay_batchlog(after_grace()).await,
            ReplayRound::default()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn single_node_keeps_its_own_batchlog() {
        let cluster = TestCluster::start(&["r1"], TIMEOUT).await;
        let table = cluster.create_table(1, TABLE);
        let node = &cluster.nodes[0];
        write(
            node,
            batch(&table, 0..3, "x"),
            ConsistencyLevel::One,
            WriteKind::LoggedBatch,
        )
        .await
        .expect("logged batch");
        for k in 0..3 {
            assert_eq!(value_of(&*node.engine, &table, k).as_deref(), Some("x"));
        }
        eventually("the local batchlog is empty", || batchlog_len(node) == 0).await;

        // A batch left behind by a crash is replayed after the restart...
        let now = SystemTime::now();
        let mutations: Vec<Mutation> = batch(&table, 5..7, "late")
            .into_iter()
            .map(|(_, m)| m)
            .collect();
        node.replica
            .store_batch(new_batch_id(&node.host), unix_micros(now), &mutations)
            .await
            .expect("store");
        // ...unless it is older than the table's gc_grace_seconds: its tombstones may be gone.
        let stale: Vec<Mutation> = batch(&table, 8..9, "stale")
            .into_iter()
            .map(|(_, m)| m)
            .collect();
        node.replica
            .store_batch(
                new_batch_id(&node.host),
                unix_micros(now - Duration::from_secs(7200)),
                &stale,
            )
            .await
            .expect("store");
        let round = node.coordinator.replay_batchlog(after_grace()).await;
        assert_eq!(
            round,
            ReplayRound {
                replayed: 1,
                failed: 0,
                discarded: 1
            }
        );
        assert_eq!(value_of(&*node.engine, &table, 5).as_deref(), Some("late"));
        assert_eq!(value_of(&*node.engine, &table, 8), None);
        assert_eq!(batchlog_len(node), 0);
    }

    #[tokio::test]
    async fn oversized_logged_batch_is_refused_before_anything_is_written() {
        let cluster = TestCluster::start(&["r1"], TIMEOUT).await;
        let table = cluster.create_table(1, TABLE);
        let big = "x".repeat(verbs::MAX_VERB_BYTES / 2 + 1);
        let mutations = vec![
            ("ks".to_string(), insert(&table, 1, &big, 1)),
            ("ks".to_string(), insert(&table, 2, &big, 1)),
        ];
        let node = &cluster.nodes[0];
        let err = write(
            node,
            mutations,
            ConsistencyLevel::One,
            WriteKind::LoggedBatch,
        )
        .await
        .expect_err("too large");
        assert!(
            matches!(&err, ExecError::Invalid(m) if m.contains("Batch too large")),
            "{err:?}"
        );
        assert_eq!(value_of(&*node.engine, &table, 1), None);
        assert_eq!(batchlog_len(node), 0);
    }
}
