//! Hinted handoff, the coordinator's side: when to keep a hint, and the replay worker.
//!
//! A write goes to every live replica. For each replica of the write that is down, and for each
//! live one that did not answer before the write timeout (or could not be reached), the
//! coordinator keeps the write as a hint in its [`HintStore`] — only while the replica has been
//! down for less than `max_hint_window_ms` (this node counts from when its failure detector saw
//! it go down, or from its own start for a replica it never saw up). Hints are written in the
//! background and change no answer, except at `ANY`: a write at `ANY` with no replica alive is
//! acknowledged once a hint for one of its replicas is durable.
//!
//! [`run_hint_replay`] looks every [`HINT_REPLAY_INTERVAL`], and at once when a node comes up,
//! for targets with hints that gossip says are up and sends them their hints, oldest first: the
//! mutations of consecutive hints travel together in verbs of up to [`REPLAY_BATCH_BYTES`] or
//! [`REPLAY_BATCH_HINTS`] hints ([`REPLAY_IN_FLIGHT`] of them awaiting the target at once), at
//! most `hinted_handoff_throttle` bytes per second, and hints are deleted (in one batch per
//! verb) only once the target applied the verb that carried them. A
//! failure stops that target until the next round; a restart of either side resumes from the
//! oldest hint left. Mutations of tables dropped since, or older than their table's
//! `gc_grace_seconds` (their tombstones may be gone on the target, so replaying them could bring
//! back deleted data), are dropped instead. Hints for a node that has been out of the ring for
//! [`HINT_ORPHAN_AFTER`] (it left or was removed) are deleted.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;

use ringdb_ring::HostId;

use super::{ClusterState, Coordinator};
use crate::hints::{unix_micros, Hint, HintError};
use crate::metrics as m;
use crate::schema::TableDef;
use crate::storage::{Mutation, TableId};
use crate::verbs::{VerbRequest, VerbResponse};

/// How often the replay worker looks for targets to replay to.
pub const HINT_REPLAY_INTERVAL: Duration = Duration::from_secs(1);

/// How long a target must have been out of the ring before its hints are deleted.
pub const HINT_ORPHAN_AFTER: Duration = Duration::from_secs(600);

/// Hints read from the store at once during replay.
const REPLAY_PAGE: usize = 128;

/// Bytes of hints (as stored) sent to a target in one verb during replay, at most: a batch
/// closes once it reaches this, so one is never much larger.
pub const REPLAY_BATCH_BYTES: u64 = 256 << 10;

/// Hints sent to a target in one verb during replay, at most. The target applies a verb's
/// mutations in one storage batch, so small hints are cheap only when many travel together.
const REPLAY_BATCH_HINTS: usize = 1024;

/// Replay verbs to one target awaiting its acknowledgement at once, at most. A tuning knob:
/// on a 2-core machine running sender and target, four were no faster than one (BENCHMARKS.md),
/// so the pipeline is kept for links with real latency but runs one verb at a time.
const REPLAY_IN_FLIGHT: usize = 1;

/// What one replay round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HintRound {
    /// Hints delivered and deleted.
    pub replayed: u64,
    /// Hints deleted without delivery (nothing left worth replaying).
    pub expired: u64,
    /// Targets whose replay stopped on an error.
    pub failed_targets: usize,
}

impl Coordinator {
    /// Whether a hint may still be written for `host`: hinted handoff is on, the host is
    /// another node, it has been down for less than the hint window, and it is not a dead node
    /// being removed from the ring (its ranges go to other replicas, which get the writes).
    pub(super) fn hint_allowed(&self, host: &HostId) -> bool {
        let config = self.hints.config();
        if !config.enabled || *host == self.config.local {
            return false;
        }
        let state = self.state();
        if state.placement.key().is_leaving(host) && !state.is_alive(host) {
            return false;
        }
        self.down_since(host).elapsed() <= config.window
    }

    /// When this node last saw `host` go down (or started, if it never saw it up).
    fn down_since(&self, host: &HostId) -> Instant {
        let down = self.down_since.lock().unwrap_or_else(|e| e.into_inner());
        down.get(host).copied().unwrap_or(self.started)
    }

    /// Follows liveness changes between two snapshots (for the hint window).
    pub(super) fn track_down(&self, previous: &ClusterState, next: &ClusterState) {
        let mut down = self.down_since.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        for host in previous.alive.difference(&next.alive) {
            down.insert(*host, now);
        }
        for host in next.alive.difference(&previous.alive) {
            down.remove(host);
        }
    }

    /// Keeps `mutations` as a hint for each of `targets` that may still get one; returns how
    /// many were stored (durable).
    pub(super) async fn store_hints(&self, targets: &[HostId], mutations: &[Mutation]) -> usize {
        let mut stored = 0;
        for target in targets {
            if !self.hint_allowed(target) {
                if self.hints.config().enabled && *target != self.config.local {
                    metrics::counter!(m::HINTS_DROPPED, "reason" => "window").increment(1);
                }
                continue;
            }
            match self.hints.store(*target, mutations).await {
                Ok(()) => stored += 1,
                Err(HintError::Disabled) => {}
                Err(e) => tracing::warn!(%target, error = %e, "hint not stored"),
            }
        }
        stored
    }

    /// Replays hints to every target that is up; see the module documentation.
    pub async fn replay_hints_round(
        &self,
        orphans: &mut HashMap<HostId, Instant>,
        throttle: u64,
    ) -> HintRound {
        let mut round = HintRound::default();
        let state = self.state();
        for (target, _) in self.hints.targets() {
            if state.addr_of(&target).is_none() && target != self.config.local {
                let since = *orphans.entry(target).or_insert_with(Instant::now);
                if since.elapsed() >= HINT_ORPHAN_AFTER {
                    match self.hints.drop_target(&target) {
                        Ok(n) => {
                            tracing::warn!(%target, hints = n, "deleted the hints of a node out of the ring")
                        }
                        Err(e) => tracing::warn!(%target, error = %e, "cannot delete hints"),
                    }
                    orphans.remove(&target);
                }
                continue;
            }
            orphans.remove(&target);
            if !state.is_alive(&target) {
                continue;
            }
            match self.replay_to(&state, target, throttle, &mut round).await {
                Ok(()) => {}
                Err(e) => {
                    tracing::info!(%target, error = %e, "hint replay stopped; retrying next round");
                    round.failed_targets += 1;
                }
            }
        }
        round
    }

    async fn replay_to(
        &self,
        state: &ClusterState,
        target: HostId,
        throttle: u64,
        round: &mut HintRound,
    ) -> Result<(), String> {
        use futures::stream::{FuturesUnordered, StreamExt};
        // Where reading resumes: the key of the last hint taken into a batch.
        let mut after: Option<Vec<u8>> = None;
        // Batches sent and not yet acknowledged, at most REPLAY_IN_FLIGHT (the order of hints
        // does not matter: last-write-wins).
        let mut in_flight = FuturesUnordered::new();
        let started = Instant::now();
        let mut sent_bytes: u64 = 0;
        let mut exhausted = false;
        loop {
            while !exhausted && in_flight.len() < REPLAY_IN_FLIGHT {
                let (hints, mutations, bytes) =
                    self.next_replay_batch(&target, &mut after, &mut exhausted, round)?;
                if hints.is_empty() {
                    break;
                }
                in_flight.push(self.deliver_hints(state, target, hints, mutations));
                sent_bytes += bytes;
                if throttle > 0 {
                    // The throttle paces what is sent, whatever is still in flight.
                    let due = Duration::from_secs_f64(sent_bytes as f64 / throttle as f64);
                    tokio::time::sleep(due.saturating_sub(started.elapsed())).await;
                }
            }
            match in_flight.next().await {
                Some(delivered) => round.replayed += delivered?,
                None => return Ok(()),
            }
        }
    }

    /// Reads the hints for `target` after `after` into one replay batch: the live mutations
    /// of consecutive hints until the batch holds [`REPLAY_BATCH_BYTES`] or
    /// [`REPLAY_BATCH_HINTS`] hints, or the store has no more (`exhausted`). Hints with nothing
    /// left worth replaying are deleted on the way. Returns the hints, their mutations and
    /// their stored size.
    fn next_replay_batch(
        &self,
        target: &HostId,
        after: &mut Option<Vec<u8>>,
        exhausted: &mut bool,
        round: &mut HintRound,
    ) -> Result<(Vec<Hint>, Vec<Mutation>, u64), String> {
        let mut hints: Vec<Hint> = Vec::new();
        let mut mutations = Vec::new();
        let mut bytes = 0;
        while bytes < REPLAY_BATCH_BYTES && hints.len() < REPLAY_BATCH_HINTS {
            let page = self
                .hints
                .page(target, after.as_deref(), REPLAY_PAGE)
                .map_err(|e| e.to_string())?;
            if page.is_empty() {
                *exhausted = true;
                break;
            }
            let schema = self.schema.current();
            let tables = schema.replicated_tables_by_id();
            for hint in page {
                if bytes >= REPLAY_BATCH_BYTES || hints.len() >= REPLAY_BATCH_HINTS {
                    // The rest of the page is read again for the next batch.
                    break;
                }
                *after = Some(hint.key.clone());
                let live = worth_replaying(&tables, &hint);
                if live.is_empty() {
                    metrics::counter!(m::HINTS_DROPPED, "reason" => "expired").increment(1);
                    self.hints
                        .remove(target, &hint)
                        .map_err(|e| e.to_string())?;
                    round.expired += 1;
                } else {
                    mutations.extend(live);
                    bytes += hint.size;
                    hints.push(hint);
                }
            }
        }
        Ok((hints, mutations, bytes))
    }

    /// Sends the mutations of `hints` to `target` in one verb and deletes the hints once it
    /// applied them; returns how many were delivered.
    async fn deliver_hints(
        &self,
        state: &ClusterState,
        target: HostId,
        hints: Vec<Hint>,
        mutations: Vec<Mutation>,
    ) -> Result<u64, String> {
        let mut answers = self.dispatch(
            state,
            &[target],
            VerbRequest::mutate(mutations),
            self.config.write_timeout,
        );
        match answers.recv().await {
            Some((_, Ok(VerbResponse::Applied))) => {}
            Some((_, Ok(other))) => return Err(format!("target answered {other:?}")),
            Some((_, Err(e))) => return Err(e),
            None => return Err("no answer".into()),
        }
        self.hints
            .remove_all(&target, &hints)
            .map_err(|e| e.to_string())?;
        metrics::counter!(m::HINTS_REPLAYED).increment(hints.len() as u64);
        Ok(hints.len() as u64)
    }
}

/// The mutations of `hint` still worth replaying: of tables that exist (`tables`), and younger
/// than their table's `gc_grace_seconds`.
fn worth_replaying(tables: &HashMap<TableId, &TableDef>, hint: &Hint) -> Vec<Mutation> {
    let age_secs = (unix_micros(SystemTime::now()) - hint.written_at).max(0) / 1_000_000;
    hint.mutations
        .iter()
        .filter(|m| {
            tables
                .get(&m.table)
                .is_some_and(|t| age_secs <= i64::from(t.options.gc_grace_seconds.max(0)))
        })
        .cloned()
        .collect()
}

/// Replays hints every [`HINT_REPLAY_INTERVAL`], and as soon as a node comes up, until
/// `shutdown` turns true; `throttle` is
/// `hinted_handoff_throttle` (bytes per second per target, 0: unthrottled).
pub async fn run_hint_replay(
    coordinator: Arc<Coordinator>,
    throttle: u64,
    shutdown: watch::Receiver<bool>,
) {
    let mut orphans = HashMap::new();
    let mut ticker = tokio::time::interval(HINT_REPLAY_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shutdown = shutdown;
    loop {
        // A round every interval, and one as soon as some node comes up.
        tokio::select! {
            _ = ticker.tick() => {}
            () = coordinator.hint_wake.notified() => {}
            _ = crate::server::stopping(&mut shutdown) => return,
        }
        tokio::select! {
            round = coordinator.replay_hints_round(&mut orphans, throttle) => {
                if round.replayed > 0 || round.expired > 0 {
                    tracing::info!(
                        replayed = round.replayed,
                        expired = round.expired,
                        "hints replayed"
                    );
                }
            }
            _ = crate::server::stopping(&mut shutdown) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use ringdb_ring::ConsistencyLevel;

    use super::*;
    use crate::coordinator::testing::{insert, value_of, TestCluster};
    use crate::executor::{ExecError, WriteKind, WriteRequest};

    const TIMEOUT: Duration = Duration::from_millis(800);
    const TABLE: &str = "CREATE TABLE t (k int PRIMARY KEY, v text)";

    async fn write(
        cluster: &TestCluster,
        node: usize,
        table: &TableDef,
        k: i32,
        cl: ConsistencyLevel,
    ) -> Result<(), ExecError> {
        cluster.nodes[node]
            .coordinator
            .coordinate_write(WriteRequest {
                mutations: vec![("ks".into(), insert(table, k, "hinted", 10 + i64::from(k)))],
                consistency: cl.code(),
                kind: WriteKind::Simple,
            })
            .await
    }

    async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
        for _ in 0..100 {
            if check() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("timed out waiting until {what}");
    }

    fn pending(cluster: &TestCluster, node: usize, target: usize) -> u64 {
        cluster.nodes[node]
            .coordinator
            .hints()
            .pending(&cluster.nodes[target].host)
            .hints
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_down_replica_gets_hints_and_receives_them_when_it_is_back() {
        let mut cluster = TestCluster::start(&["r1", "r2", "r3"], TIMEOUT).await;
        let table = cluster.create_table(3, TABLE);
        cluster.set_alive(2, false);
        for k in 0..4 {
            write(&cluster, 0, &table, k, ConsistencyLevel::Quorum)
                .await
                .expect("QUORUM with one replica down");
        }
        eventually("node 0 holds 4 hints for node 2", || {
            pending(&cluster, 0, 2) == 4
        })
        .await;
        assert!((0..4).all(|k| value_of(&*cluster.nodes[2].engine, &table, k).is_none()));

        // While it is down, a replay round leaves its hints alone.
        let coordinator = cluster.nodes[0].coordinator.clone();
        let mut orphans = HashMap::new();
        let round = coordinator.replay_hints_round(&mut orphans, 0).await;
        assert_eq!(round, HintRound::default());
        assert_eq!(pending(&cluster, 0, 2), 4);

        cluster.set_alive(2, true);
        let round = coordinator.replay_hints_round(&mut orphans, 0).await;
        assert_eq!(round.replayed, 4);
        assert_eq!(pending(&cluster, 0, 2), 0);
        for k in 0..4 {
            assert_eq!(
                value_of(&*cluster.nodes[2].engine, &table, k).as_deref(),
                Some("hinted")
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replay_spans_pages_and_batches_and_drops_hints_of_unknown_tables() {
        let mut cluster = TestCluster::start(&["r1", "r2", "r3"], TIMEOUT).await;
        let table = cluster.create_table(3, TABLE);
        cluster.set_alive(2, false);
        let hints = cluster.nodes[0].coordinator.hints().clone();
        let target = cluster.nodes[2].host;
        // More hints than a page and than a batch; every seventh is of a table that is gone.
        let total = REPLAY_BATCH_HINTS as i32 + 3 * REPLAY_PAGE as i32 + 5;
        let mut gone = 0;
        for k in 0..total {
            let mut m = insert(&table, k, "paged", 10);
            if k % 7 == 0 {
                m.table = TableId::from_u128(0xdead);
                gone += 1;
            }
            hints.store(target, &[m]).await.expect("store a hint");
        }
        assert_eq!(pending(&cluster, 0, 2), total as u64);

        cluster.set_alive(2, true);
        let mut orphans = HashMap::new();
        let round = cluster.nodes[0]
            .coordinator
            .replay_hints_round(&mut orphans, 0)
            .await;
        assert_eq!(round.expired, gone);
        assert_eq!(round.replayed, total as u64 - gone);
        assert_eq!(round.failed_targets, 0);
        assert_eq!(pending(&cluster, 0, 2), 0);
        for k in 0..total {
            let want = (k % 7 != 0).then_some("paged");
            assert_eq!(
                value_of(&*cluster.nodes[2].engine, &table, k).as_deref(),
                want,
                "key {k}"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_leaving_node_hands_its_hints_to_their_target_or_to_a_live_node() {
        let mut cluster = TestCluster::start(&["r1", "r2", "r3", "r4"], TIMEOUT).await;
        let table = cluster.create_table(3, TABLE);
        // Node 0 holds hints for node 2 (down) and for node 3 (back up when node 0 leaves).
        cluster.set_alive(2, false);
        cluster.set_alive(3, false);
        let hints = cluster.nodes[0].coordinator.hints().clone();
        for k in 0..3 {
            for target in [2, 3] {
                hints
                    .store(
                        cluster.nodes[target].host,
                        &[insert(&table, k, "handed", 10)],
                    )
                    .await
                    .expect("store a hint");
            }
        }
        cluster.set_alive(3, true);

        let handed = cluster.nodes[0]
            .coordinator
            .hand_off_hints()
            .await
            .expect("hand off");
        assert_eq!(handed, 6);
        assert_eq!(pending(&cluster, 0, 2), 0);
        assert_eq!(pending(&cluster, 0, 3), 0);
        // Node 3 is up: it got its writes directly.
        for k in 0..3 {
            assert_eq!(
                value_of(&*cluster.nodes[3].engine, &table, k).as_deref(),
                Some("handed")
            );
        }
        // Node 2 is down: a live node keeps its hints now, to replay them when it is back.
        let kept: u64 = [1, 3].iter().map(|&n| pending(&cluster, n, 2)).sum();
        assert_eq!(kept, 3, "node 2's hints are kept by another live node");
        assert!((0..3).all(|k| value_of(&*cluster.nodes[2].engine, &table, k).is_none()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replica_that_never_answers_gets_a_hint_after_the_timeout() {
        let cluster = TestCluster::start(&["r1", "r2", "r3"], TIMEOUT).await;
        let table = cluster.create_table(3, TABLE);
        // Node 2 died a moment ago; nobody has noticed yet.
        cluster.cut_off(2).await;
        write(&cluster, 0, &table, 1, ConsistencyLevel::Quorum)
            .await
            .expect("QUORUM from the two others");
        eventually("node 0 holds a hint for node 2", || {
            pending(&cluster, 0, 2) == 1
        })
        .await;
        assert_eq!(pending(&cluster, 0, 1), 0, "node 1 answered: no hint");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn any_with_every_replica_down_is_acknowledged_on_a_stored_hint() {
        let mut cluster = TestCluster::start(&["r1", "r2", "r3"], TIMEOUT).await;
        let table = cluster.create_table(1, TABLE);
        // Find a key whose only replica is node 1, and take node 1 down.
        let state = cluster.nodes[0].coordinator.state();
        let ksp = cluster.nodes[0]
            .coordinator
            .keyspace(&state, "ks")
            .expect("keyspace");
        let k = (0..1000)
            .find(|&k| {
                let token = crate::coordinator::testing::int_partition(k).token;
                ksp.map.replicas(ringdb_ring::Token(token)) == [cluster.nodes[1].host]
            })
            .expect("a key on node 1");
        cluster.set_alive(1, false);
        let err = write(&cluster, 0, &table, k, ConsistencyLevel::One)
            .await
            .expect_err("ONE with the only replica down");
        assert!(matches!(err, ExecError::Unavailable { .. }), "{err:?}");
        assert_eq!(pending(&cluster, 0, 1), 0, "Unavailable writes nothing");

        write(&cluster, 0, &table, k, ConsistencyLevel::Any)
            .await
            .expect("ANY is acknowledged on a hint");
        assert_eq!(
            pending(&cluster, 0, 1),
            1,
            "the hint is durable before the answer"
        );

        cluster.set_alive(1, true);
        let round = cluster.nodes[0]
            .coordinator
            .replay_hints_round(&mut HashMap::new(), 0)
            .await;
        assert_eq!(round.replayed, 1);
        assert_eq!(
            value_of(&*cluster.nodes[1].engine, &table, k).as_deref(),
            Some("hinted")
        );
    }
}
