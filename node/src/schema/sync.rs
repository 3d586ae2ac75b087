//! Schema propagation between nodes, and deletion of the local data of dropped tables.
//!
//! Every node gossips its schema version. Three mechanisms make every live node end with the
//! same schema, each merging whole [`SchemaSnapshot`]s (merging is commutative, associative and
//! idempotent, see [`super::merge`], so duplicated, reordered or lost exchanges are harmless):
//!
//! - **Announce** ([`announce`]): right after a local DDL, the coordinator pushes its snapshot
//!   to every live peer and waits (bounded) until they have merged it. A DDL thus reaches the
//!   live nodes in about one round trip, and a client writing right after `CREATE TABLE`
//!   through the same coordinator finds the table on the replicas.
//! - **Pull** ([`run_schema_sync`]): whenever the gossip view changes, and every
//!   [`SyncSettings::interval`] as a safety net, the node fetches the snapshot of each live peer
//!   that gossips a version different from its own and merges it. This catches up nodes that
//!   were down or partitioned during an announce, and nodes that just joined.
//! - **Push after pull**: when a pull changed our schema, or showed that the peer lacks part of
//!   ours, we push ours to the peers that still differ, so that a change spreads without waiting
//!   for every node's own pull.
//!
//! Each peer has its own back-off: it is fetched at most once per [`SyncSettings::min_retry`]
//! (about a second); while its fetches fail, or its version keeps differing though merging its
//! schema teaches us nothing (it is the one behind, and will pull from us), the wait doubles up
//! to [`SyncSettings::max_backoff`], and falls back to `min_retry` as soon as either version
//! changes. A peer whose last fetch failed is not pushed to either, and peers that gossip no
//! version yet are left for a later round. Every fetch and push is bounded by
//! [`SyncSettings::rpc_timeout`], and at most [`SyncSettings::max_concurrent`] run at once.
//!
//! The transport is abstracted by [`SchemaPeers`] (implemented over the internode messaging
//! service), so the driver is tested with in-memory fakes.
//!
//! **Local data of dropped tables.** A drop — local or merged from a peer — leaves a "pending
//! purge" record per table that stopped being live ([`super::SchemaStore`] writes it in the same
//! commit). [`purge_dropped_tables`] deletes those tables' local data and then the record, on
//! start (a crash may have left records) and after every schema change. Data of a dropped table
//! is unreachable from the moment the drop is published (tables are addressed by id, never by
//! name), so the purge only frees space; it never decides what reads see.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::watch;
use tokio::time::Instant;

use super::{MergeOutcome, SchemaSnapshot, SchemaStore, TableId};
use crate::server::stopping;
use crate::storage::Engine;

/// How the node reaches its peers for schema exchange.
pub trait SchemaPeers: Send + Sync + 'static {
    /// Live peers (not this node) and the schema version each one gossips (None if unknown).
    fn live_peers(&self) -> Vec<(SocketAddr, Option<uuid::Uuid>)>;
    /// Asks `peer` for its whole schema.
    fn fetch(&self, peer: SocketAddr) -> BoxFuture<'_, Result<SchemaSnapshot, String>>;
    /// Sends our whole schema to `peer`, which merges it; resolves when it has.
    fn push(
        &self,
        peer: SocketAddr,
        snapshot: Arc<SchemaSnapshot>,
    ) -> BoxFuture<'_, Result<(), String>>;
}

/// Default of [`SyncSettings::interval`].
pub const SYNC_INTERVAL: Duration = Duration::from_secs(1);
/// Default of [`SyncSettings::rpc_timeout`].
pub const SYNC_RPC_TIMEOUT: Duration = Duration::from_secs(2);
/// Default of [`SyncSettings::min_retry`].
pub const SYNC_MIN_RETRY: Duration = Duration::from_secs(1);
/// Default of [`SyncSettings::max_backoff`].
pub const SYNC_MAX_BACKOFF: Duration = Duration::from_secs(8);
/// Default of [`SyncSettings::max_concurrent`].
pub const SYNC_MAX_CONCURRENT: usize = 4;
/// How long the purge task waits before retrying a table whose data it failed to delete.
pub const PURGE_RETRY: Duration = Duration::from_secs(30);

/// Limits of the schema sync driver.
#[derive(Debug, Clone)]
pub struct SyncSettings {
    /// How often peers' versions are compared when the gossip view does not change.
    pub interval: Duration,
    /// Bound on one fetch or push.
    pub rpc_timeout: Duration,
    /// Least time between two attempts on the same peer.
    pub min_retry: Duration,
    /// Greatest back-off of a peer that keeps failing or differing.
    pub max_backoff: Duration,
    /// Fetches (and, separately, pushes) in flight at once.
    pub max_concurrent: usize,
}

impl Default for SyncSettings {
    fn default() -> Self {
        SyncSettings {
            interval: SYNC_INTERVAL,
            rpc_timeout: SYNC_RPC_TIMEOUT,
            min_retry: SYNC_MIN_RETRY,
            max_backoff: SYNC_MAX_BACKOFF,
            max_concurrent: SYNC_MAX_CONCURRENT,
        }
    }
}

/// Keeps the schema in step with live peers' until `shutdown`, with the default
/// [`SyncSettings`]. `view_changes` fires when the gossip view changes (a peer came up, a
/// version changed); if its sender goes away the driver goes on with the periodic check.
pub async fn run_schema_sync(
    store: Arc<SchemaStore>,
    peers: Arc<dyn SchemaPeers>,
    view_changes: watch::Receiver<()>,
    shutdown: watch::Receiver<bool>,
) {
    run_schema_sync_with(
        SyncSettings::default(),
        store,
        peers,
        view_changes,
        shutdown,
    )
    .await
}

/// [`run_schema_sync`] with explicit limits.
pub async fn run_schema_sync_with(
    settings: SyncSettings,
    store: Arc<SchemaStore>,
    peers: Arc<dyn SchemaPeers>,
    mut view_changes: watch::Receiver<()>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut sync = PeerSync::new(settings.clone());
    let mut ticker = tokio::time::interval(settings.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut view_open = true;
    loop {
        tokio::select! {
            _ = stopping(&mut shutdown) => return,
            changed = view_changes.changed(), if view_open => {
                if changed.is_err() {
                    view_open = false;
                    continue;
                }
            }
            _ = ticker.tick() => {}
        }
        tokio::select! {
            _ = stopping(&mut shutdown) => return,
            _ = sync.round(&store, &*peers) => {}
        }
    }
}

/// Pushes the current schema to every live peer at once (one push per peer: bounded by the
/// cluster's size) and waits until they have merged it, or `timeout`. Failures are logged, never returned: the DDL has succeeded locally, and peers
/// that missed the push catch up through [`run_schema_sync`].
pub async fn announce(store: &SchemaStore, peers: &dyn SchemaPeers, timeout: Duration) {
    let live = peers.live_peers();
    if live.is_empty() {
        return;
    }
    let snapshot = Arc::new(store.snapshot());
    let mut waiting: HashSet<SocketAddr> = live.iter().map(|(a, _)| *a).collect();
    let mut pushes: FuturesUnordered<_> = live
        .into_iter()
        .map(|(addr, _)| {
            let snapshot = snapshot.clone();
            async move { (addr, peers.push(addr, snapshot).await) }
        })
        .collect();
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            next = pushes.next() => match next {
                None => return,
                Some((addr, result)) => {
                    waiting.remove(&addr);
                    if let Err(error) = result {
                        tracing::warn!(peer = %addr, %error, "schema announce failed; the peer will catch up through schema sync");
                    }
                }
            },
            _ = &mut deadline => {
                tracing::warn!(
                    peers = ?waiting,
                    timeout_ms = timeout.as_millis() as u64,
                    "schema announce not acknowledged in time; these peers will catch up through schema sync"
                );
                return;
            }
        }
    }
}

/// Per-peer bookkeeping of the pull driver.
#[derive(Debug, Clone)]
struct PeerState {
    last_attempt: Instant,
    /// Wait after `last_attempt` while neither version changes.
    backoff: Duration,
    /// (ours, theirs) at the last attempt.
    versions: (uuid::Uuid, Option<uuid::Uuid>),
    /// Fetches failed in a row.
    failures: u32,
}

/// The pull driver's state: who was tried when.
struct PeerSync {
    settings: SyncSettings,
    peers: HashMap<SocketAddr, PeerState>,
}

/// What one fetch-and-merge gave.
enum Pulled {
    /// Merged; the peer's version as fetched.
    Merged {
        outcome: MergeOutcome,
        theirs: uuid::Uuid,
    },
    Failed(String),
}

impl PeerSync {
    fn new(settings: SyncSettings) -> PeerSync {
        PeerSync {
            settings,
            peers: HashMap::new(),
        }
    }

    /// Whether `peer`, gossiping `theirs` while we are at `ours`, is due for a fetch.
    fn due(
        &self,
        peer: SocketAddr,
        ours: uuid::Uuid,
        theirs: Option<uuid::Uuid>,
        now: Instant,
    ) -> bool {
        if theirs.is_none() || theirs == Some(ours) {
            return false;
        }
        match self.peers.get(&peer) {
            None => true,
            Some(p) => {
                let since = now.saturating_duration_since(p.last_attempt);
                if p.versions != (ours, theirs) {
                    since >= self.settings.min_retry
                } else {
                    since >= p.backoff
                }
            }
        }
    }

    /// Records an attempt on `peer`: `learned` when the merge stored something new, `failed`
    /// when the fetch or merge failed. Returns the number of failures in a row.
    fn record(
        &mut self,
        peer: SocketAddr,
        versions: (uuid::Uuid, Option<uuid::Uuid>),
        now: Instant,
        learned: bool,
        failed: bool,
    ) -> u32 {
        let min = self.settings.min_retry;
        let max = self.settings.max_backoff.max(min);
        let p = self.peers.entry(peer).or_insert(PeerState {
            last_attempt: now,
            backoff: min,
            versions,
            failures: 0,
        });
        p.backoff = if learned || (!failed && p.versions != versions) {
            min
        } else {
            p.backoff.saturating_mul(2).clamp(min, max)
        };
        p.failures = if failed {
            p.failures.saturating_add(1)
        } else {
            0
        };
        p.last_attempt = now;
        p.versions = versions;
        p.failures
    }

    /// Whether the last fetch from `peer` failed (it is then not pushed to either).
    fn failing(&self, peer: &SocketAddr) -> bool {
        self.peers.get(peer).is_some_and(|p| p.failures > 0)
    }

    /// One pass: fetch and merge every due peer, then push ours where it is missing.
    async fn round(&mut self, store: &Arc<SchemaStore>, peers: &dyn SchemaPeers) {
        let live = peers.live_peers();
        self.peers
            .retain(|addr, _| live.iter().any(|(a, _)| a == addr));
        let ours = store.current().version();
        let now = Instant::now();
        let due: Vec<(SocketAddr, Option<uuid::Uuid>)> = live
            .iter()
            .copied()
            .filter(|&(addr, theirs)| self.due(addr, ours, theirs, now))
            .collect();
        if due.is_empty() {
            return;
        }

        let timeout = self.settings.rpc_timeout;
        let mut pulls = futures::stream::iter(due.iter().copied())
            .map(|(addr, gossiped)| {
                let store = store.clone();
                async move {
                    let pulled = match tokio::time::timeout(timeout, peers.fetch(addr)).await {
                        Err(_) => Pulled::Failed(format!("no answer in {timeout:?}")),
                        Ok(Err(e)) => Pulled::Failed(e),
                        Ok(Ok(snapshot)) => merge_blocking(store, snapshot).await,
                    };
                    (addr, gossiped, pulled)
                }
            })
            .buffer_unordered(self.settings.max_concurrent.max(1));

        let mut schema_changed = false;
        // Peers whose schema we now know, and at which version.
        let mut known: HashMap<SocketAddr, uuid::Uuid> = HashMap::new();
        while let Some((addr, gossiped, pulled)) = pulls.next().await {
            match pulled {
                Pulled::Merged { outcome, theirs } => {
                    if outcome.schema_changed() {
                        schema_changed = true;
                        let changes: Vec<String> =
                            outcome.changes.iter().map(|c| c.to_string()).collect();
                        tracing::info!(
                            peer = %addr,
                            changes = %changes.join(", "),
                            version = %store.current().version(),
                            "schema merged from peer"
                        );
                    }
                    known.insert(addr, theirs);
                    self.record(addr, (ours, gossiped), now, outcome.changed, false);
                }
                Pulled::Failed(error) => {
                    // Warn once per streak of failures; the rest is noise.
                    if self.record(addr, (ours, gossiped), now, false, true) == 1 {
                        tracing::warn!(peer = %addr, %error, "schema fetch failed");
                    } else {
                        tracing::debug!(peer = %addr, %error, "schema fetch failed again");
                    }
                }
            }
        }
        drop(pulls);

        // Push ours to the peers we know lack part of it: those whose fetched schema differs
        // from our merged one, and — when we learned something — every other peer not known to
        // be at our version (their gossiped versions predate our merge).
        let now_ours = store.current().version();
        let targets: Vec<SocketAddr> = live
            .iter()
            .filter(|(addr, _)| !self.failing(addr))
            .filter(|(addr, gossiped)| match known.get(addr) {
                Some(v) => *v != now_ours,
                None => schema_changed && *gossiped != Some(now_ours),
            })
            .map(|(addr, _)| *addr)
            .collect();
        if targets.is_empty() {
            return;
        }
        let snapshot = Arc::new(store.snapshot());
        let mut pushes = futures::stream::iter(targets)
            .map(|addr| {
                let snapshot = snapshot.clone();
                async move {
                    let r = match tokio::time::timeout(timeout, peers.push(addr, snapshot)).await {
                        Err(_) => Err(format!("no answer in {timeout:?}")),
                        Ok(r) => r,
                    };
                    (addr, r)
                }
            })
            .buffer_unordered(self.settings.max_concurrent.max(1));
        while let Some((addr, result)) = pushes.next().await {
            if let Err(error) = result {
                tracing::debug!(peer = %addr, %error, "schema push failed");
            }
        }
    }
}

/// Merges a fetched snapshot on the blocking pool (the merge writes and flushes the meta
/// space).
async fn merge_blocking(store: Arc<SchemaStore>, snapshot: SchemaSnapshot) -> Pulled {
    let joined = tokio::task::spawn_blocking(move || {
        let theirs = snapshot.version()?;
        let outcome = store.merge(snapshot)?;
        Ok::<_, super::SchemaError>((outcome, theirs))
    })
    .await;
    match joined {
        Ok(Ok((outcome, theirs))) => Pulled::Merged { outcome, theirs },
        Ok(Err(e)) => Pulled::Failed(format!("cannot merge its schema: {e}")),
        Err(e) => Pulled::Failed(format!("merge task failed: {e}")),
    }
}

/// Deletes the local data of tables that stopped being live (dropped here or by a peer), on
/// start and after every schema change, until `shutdown`. A table whose deletion fails is
/// retried every [`PURGE_RETRY`].
pub async fn purge_dropped_tables(
    store: Arc<SchemaStore>,
    engine: Arc<dyn Engine>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut changes = store.subscribe();
    loop {
        let all_done = purge_pending(&store, &engine).await;
        let retry = async {
            if all_done {
                std::future::pending::<()>().await
            } else {
                tokio::time::sleep(PURGE_RETRY).await
            }
        };
        tokio::select! {
            _ = stopping(&mut shutdown) => return,
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = retry => {}
        }
    }
}

/// Deletes the data of every pending purge; true when none is left pending.
async fn purge_pending(store: &Arc<SchemaStore>, engine: &Arc<dyn Engine>) -> bool {
    let pending = match store.pending_purges() {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list dropped tables to purge");
            return false;
        }
    };
    let mut all_done = true;
    for p in pending {
        // A table that is live again (an ALTER newer than the drop won) keeps its data.
        if live_ids(store).contains(&p.id) {
            if let Err(e) = store.purge_done(p.id) {
                tracing::warn!(error = %e, "cannot clear a purge record");
            }
            continue;
        }
        let engine = engine.clone();
        let id = p.id;
        let deleted = tokio::task::spawn_blocking(move || {
            engine.truncate(id)?;
            engine.flush()
        })
        .await;
        let table = format!("{}.{}", p.keyspace, p.name);
        match deleted {
            Ok(Ok(())) => {
                tracing::info!(%table, id = %p.id, "deleted the local data of a dropped table");
                if let Err(e) = store.purge_done(p.id) {
                    tracing::warn!(error = %e, "cannot clear a purge record");
                }
            }
            Ok(Err(e)) => {
                all_done = false;
                tracing::warn!(%table, error = %e, "cannot delete the data of a dropped table");
            }
            Err(e) => {
                all_done = false;
                tracing::warn!(%table, error = %e, "purge task failed");
            }
        }
    }
    all_done
}

fn live_ids(store: &SchemaStore) -> HashSet<TableId> {
    super::store::live_table_ids(&store.current())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::merge::tests::{keyspace, table};
    use crate::schema::store::SchemaEdit;
    use crate::storage::{Liveness, MemoryEngine, Mutation, PartitionKey, RowUpdate, Slice};
    use std::sync::Mutex;

    /// How a fake node answers.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Behaviour {
        Healthy,
        /// Every fetch and push fails at once.
        Failing,
        /// Every fetch and push never answers.
        Hanging,
    }

    struct FakeNode {
        store: Arc<SchemaStore>,
        behaviour: Behaviour,
        /// The version it gossips when it is not healthy (healthy nodes gossip their real one).
        fake_version: uuid::Uuid,
        fetches: usize,
    }

    /// An in-memory cluster: every node sees every other one as live.
    #[derive(Default)]
    struct FakeNet {
        nodes: Mutex<Vec<(SocketAddr, FakeNode)>>,
    }

    impl FakeNet {
        fn add(&self, behaviour: Behaviour) -> (SocketAddr, Arc<SchemaStore>) {
            let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
            let store = SchemaStore::open(engine).unwrap();
            let mut nodes = self.nodes.lock().unwrap();
            let n = nodes.len() + 1;
            let addr: SocketAddr = format!("127.0.0.{n}:7000").parse().unwrap();
            nodes.push((
                addr,
                FakeNode {
                    store: store.clone(),
                    behaviour,
                    fake_version: uuid::Uuid::from_u128(n as u128),
                    fetches: 0,
                },
            ));
            (addr, store)
        }

        fn node(&self, addr: SocketAddr) -> (Arc<SchemaStore>, Behaviour) {
            let mut nodes = self.nodes.lock().unwrap();
            let (_, n) = nodes.iter_mut().find(|(a, _)| *a == addr).unwrap();
            n.fetches += 1;
            (n.store.clone(), n.behaviour)
        }

        fn fetches(&self, addr: SocketAddr) -> usize {
            let nodes = self.nodes.lock().unwrap();
            nodes.iter().find(|(a, _)| *a == addr).unwrap().1.fetches
        }
    }

    /// One node's view of the fake cluster.
    struct FakePeers {
        me: SocketAddr,
        net: Arc<FakeNet>,
    }

    impl SchemaPeers for FakePeers {
        fn live_peers(&self) -> Vec<(SocketAddr, Option<uuid::Uuid>)> {
            let nodes = self.net.nodes.lock().unwrap();
            nodes
                .iter()
                .filter(|(a, _)| *a != self.me)
                .map(|(a, n)| {
                    let v = match n.behaviour {
                        Behaviour::Healthy => n.store.current().version(),
                        _ => n.fake_version,
                    };
                    (*a, Some(v))
                })
                .collect()
        }

        fn fetch(&self, peer: SocketAddr) -> BoxFuture<'_, Result<SchemaSnapshot, String>> {
            let (store, behaviour) = self.net.node(peer);
            Box::pin(async move {
                match behaviour {
                    Behaviour::Healthy => Ok(store.snapshot()),
                    Behaviour::Failing => Err("connection refused".into()),
                    Behaviour::Hanging => std::future::pending().await,
                }
            })
        }

        fn push(
            &self,
            peer: SocketAddr,
            snapshot: Arc<SchemaSnapshot>,
        ) -> BoxFuture<'_, Result<(), String>> {
            let (store, behaviour) = self.net.node(peer);
            Box::pin(async move {
                match behaviour {
                    Behaviour::Healthy => store
                        .merge((*snapshot).clone())
                        .map(|_| ())
                        .map_err(|e| e.to_string()),
                    Behaviour::Failing => Err("connection refused".into()),
                    Behaviour::Hanging => std::future::pending().await,
                }
            })
        }
    }

    fn fast() -> SyncSettings {
        SyncSettings {
            interval: Duration::from_millis(50),
            rpc_timeout: Duration::from_millis(200),
            min_retry: Duration::from_millis(20),
            max_backoff: Duration::from_millis(200),
            max_concurrent: 2,
        }
    }

    /// Gives each store a different schema; returns the table ids created.
    fn diverge(stores: &[Arc<SchemaStore>]) {
        for (i, s) in stores.iter().enumerate() {
            let ks = format!("ks{i}");
            s.apply(SchemaEdit::PutKeyspace(keyspace(&ks, 10, "1")))
                .unwrap();
            s.apply(SchemaEdit::PutTable(Box::new(table(
                &ks,
                "t",
                i as u128 + 100,
                20,
                &[],
            ))))
            .unwrap();
            // Everyone also creates ks.shared concurrently, with its own id.
            s.apply(SchemaEdit::PutKeyspace(keyspace("ks", 10, "1")))
                .unwrap();
            s.apply(SchemaEdit::PutTable(Box::new(table(
                "ks",
                "shared",
                i as u128 + 200,
                30,
                &[],
            ))))
            .unwrap();
        }
    }

    fn assert_converged(stores: &[Arc<SchemaStore>]) {
        let snapshot = stores[0].snapshot();
        for s in stores {
            assert_eq!(s.current().version(), stores[0].current().version());
            assert_eq!(s.snapshot(), snapshot);
        }
        let schema = stores[0].current();
        assert_eq!(schema.user_keyspaces().count(), stores.len() + 1);
        assert_eq!(schema.tables("ks").count(), 1);
    }

    #[tokio::test]
    async fn rounds_converge_divergent_stores() {
        let net = Arc::new(FakeNet::default());
        let nodes: Vec<_> = (0..3).map(|_| net.add(Behaviour::Healthy)).collect();
        let stores: Vec<_> = nodes.iter().map(|(_, s)| s.clone()).collect();
        diverge(&stores);
        let settings = SyncSettings {
            min_retry: Duration::ZERO,
            ..fast()
        };
        let mut syncs: Vec<PeerSync> = (0..3).map(|_| PeerSync::new(settings.clone())).collect();
        // One round of the first node pulls everything in and pushes the union to the others.
        let peers = FakePeers {
            me: nodes[0].0,
            net: net.clone(),
        };
        syncs[0].round(&stores[0], &peers).await;
        assert_converged(&stores);
        // Nothing differs any more: further rounds fetch nothing.
        let before: Vec<usize> = nodes.iter().map(|(a, _)| net.fetches(*a)).collect();
        for (i, (addr, store)) in nodes.iter().enumerate() {
            let peers = FakePeers {
                me: *addr,
                net: net.clone(),
            };
            syncs[i].round(store, &peers).await;
        }
        let after: Vec<usize> = nodes.iter().map(|(a, _)| net.fetches(*a)).collect();
        assert_eq!(before, after);
    }

    #[tokio::test]
    async fn driver_converges_despite_failing_and_hanging_peers() {
        let net = Arc::new(FakeNet::default());
        let nodes: Vec<_> = (0..3).map(|_| net.add(Behaviour::Healthy)).collect();
        let (failing, _) = net.add(Behaviour::Failing);
        let (hanging, _) = net.add(Behaviour::Hanging);
        let stores: Vec<_> = nodes.iter().map(|(_, s)| s.clone()).collect();
        diverge(&stores);

        let (stop, shutdown) = watch::channel(false);
        let (view_tx, _) = watch::channel(());
        let started = std::time::Instant::now();
        let tasks: Vec<_> = nodes
            .iter()
            .map(|(addr, store)| {
                let peers = Arc::new(FakePeers {
                    me: *addr,
                    net: net.clone(),
                });
                tokio::spawn(run_schema_sync_with(
                    fast(),
                    store.clone(),
                    peers,
                    view_tx.subscribe(),
                    shutdown.clone(),
                ))
            })
            .collect();
        view_tx.send_replace(());
        let converged = async {
            loop {
                let v = stores[0].current().version();
                if stores.iter().all(|s| s.current().version() == v)
                    && stores[0].current().user_keyspaces().count() == 4
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(2), converged)
            .await
            .expect("converged within 2 s");
        assert_converged(&stores);
        // Keep running a while: the broken peers are retried, but backed off.
        tokio::time::sleep(Duration::from_millis(600)).await;
        let elapsed = started.elapsed().as_millis() as usize;
        for peer in [failing, hanging] {
            let attempts = net.fetches(peer);
            // 3 drivers, each at most once per `min_retry` (20 ms), in practice far fewer
            // thanks to the back-off.
            assert!(attempts > 0, "never tried {peer}");
            assert!(
                attempts <= 3 * (elapsed / 100 + 2),
                "{peer} tried {attempts} times in {elapsed} ms"
            );
        }
        stop.send_replace(true);
        for t in tasks {
            tokio::time::timeout(Duration::from_secs(1), t)
                .await
                .expect("driver stops on shutdown")
                .unwrap();
        }
    }

    #[tokio::test]
    async fn announce_reaches_live_peers_and_is_bounded() {
        let net = Arc::new(FakeNet::default());
        let (a, store_a) = net.add(Behaviour::Healthy);
        let (_, store_b) = net.add(Behaviour::Healthy);
        net.add(Behaviour::Failing);
        net.add(Behaviour::Hanging);
        let (_, store_e) = net.add(Behaviour::Healthy);
        store_a
            .apply(SchemaEdit::PutKeyspace(keyspace("ks", 10, "1")))
            .unwrap();
        let peers = FakePeers { me: a, net };
        let started = std::time::Instant::now();
        announce(&store_a, &peers, Duration::from_millis(300)).await;
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(300), "{took:?}");
        assert!(took < Duration::from_secs(2), "{took:?}");
        for s in [&store_b, &store_e] {
            assert_eq!(s.current().version(), store_a.current().version());
        }
    }

    fn write_row(engine: &dyn Engine, table: TableId) -> PartitionKey {
        let partition = PartitionKey {
            token: 1,
            key: vec![0, 0, 0, 1],
        };
        engine
            .apply(&Mutation {
                table,
                partition: partition.clone(),
                partition_deletion: None,
                range_deletions: vec![],
                rows: vec![RowUpdate {
                    liveness: Some(Liveness {
                        timestamp: 1,
                        ttl: 0,
                        expires_at: 0,
                    }),
                    ..Default::default()
                }],
            })
            .unwrap();
        partition
    }

    fn has_data(engine: &dyn Engine, table: TableId, partition: &PartitionKey) -> bool {
        engine
            .read_partition(table, partition, &Slice::all(), 0)
            .unwrap()
            .is_some()
    }

    #[tokio::test]
    async fn dropped_tables_lose_their_local_data_on_every_node() {
        let engine_a: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
        let engine_b: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
        let a = SchemaStore::open(engine_a.clone()).unwrap();
        let b = SchemaStore::open(engine_b.clone()).unwrap();
        a.apply(SchemaEdit::PutKeyspace(keyspace("ks", 10, "1")))
            .unwrap();
        a.apply(SchemaEdit::PutTable(Box::new(table("ks", "t", 1, 20, &[]))))
            .unwrap();
        a.apply(SchemaEdit::PutTable(Box::new(table(
            "ks",
            "keep",
            2,
            20,
            &[],
        ))))
        .unwrap();
        b.merge(a.snapshot()).unwrap();
        let (t, keep) = (uuid::Uuid::from_u128(1), uuid::Uuid::from_u128(2));
        let pa = write_row(&*engine_a, t);
        let pb = write_row(&*engine_b, t);
        write_row(&*engine_a, keep);

        // Node A drops the table before its purge task runs (as before a restart).
        a.apply(SchemaEdit::DropTable {
            keyspace: "ks".into(),
            name: "t".into(),
            timestamp: 30,
        })
        .unwrap();
        let (stop, shutdown) = watch::channel(false);
        let task_a = tokio::spawn(purge_dropped_tables(
            a.clone(),
            engine_a.clone(),
            shutdown.clone(),
        ));
        let task_b = tokio::spawn(purge_dropped_tables(
            b.clone(),
            engine_b.clone(),
            shutdown.clone(),
        ));
        // Node B learns of the drop from A.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(has_data(&*engine_b, t, &pb));
        b.merge(a.snapshot()).unwrap();
        let gone = async {
            while has_data(&*engine_a, t, &pa)
                || has_data(&*engine_b, t, &pb)
                || !a.pending_purges().unwrap().is_empty()
                || !b.pending_purges().unwrap().is_empty()
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(2), gone)
            .await
            .expect("dropped table data deleted on both nodes");
        assert!(has_data(&*engine_a, keep, &pa));
        stop.send_replace(true);
        task_a.await.unwrap();
        task_b.await.unwrap();
    }

    fn executor(
        engine: Arc<dyn Engine>,
        shutdown: watch::Receiver<bool>,
    ) -> crate::executor::Executor {
        use crate::commitlog::{CommitSync, SyncMode};
        use crate::executor::{Executor, LocalNodeInfo};
        let (commit, _flusher) = CommitSync::start(SyncMode::Batch, engine.clone(), shutdown);
        let store = SchemaStore::open(engine.clone()).unwrap();
        let node = LocalNodeInfo::for_tests();
        Executor::new(engine, commit, store, node)
    }

    /// DDL through the executor runs the announcer once per change, and a node that runs
    /// `announce` from it has its DDL on the other node before the client gets its answer.
    #[tokio::test]
    async fn executor_announces_each_schema_change() {
        use crate::executor::{QueryOptions, Session};
        use std::sync::atomic::{AtomicUsize, Ordering};

        let (_stop, shutdown) = watch::channel(false);
        let net = Arc::new(FakeNet::default());
        let engine_a: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
        let engine_b: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
        let a = executor(engine_a, shutdown.clone());
        let b = executor(engine_b, shutdown.clone());
        let addr_a: SocketAddr = "127.0.0.1:7000".parse().unwrap();
        let addr_b: SocketAddr = "127.0.0.2:7000".parse().unwrap();
        {
            let mut nodes = net.nodes.lock().unwrap();
            for (addr, exec) in [(addr_a, &a), (addr_b, &b)] {
                nodes.push((
                    addr,
                    FakeNode {
                        store: exec.schema_store().clone(),
                        behaviour: Behaviour::Healthy,
                        fake_version: uuid::Uuid::nil(),
                        fetches: 0,
                    },
                ));
            }
        }
        let announced = Arc::new(AtomicUsize::new(0));
        let peers: Arc<dyn SchemaPeers> = Arc::new(FakePeers {
            me: addr_a,
            net: net.clone(),
        });
        let store = a.schema_store().clone();
        let count = announced.clone();
        a.set_schema_announcer(move || {
            let (store, peers, count) = (store.clone(), peers.clone(), count.clone());
            Box::pin(async move {
                count.fetch_add(1, Ordering::SeqCst);
                announce(&store, &*peers, Duration::from_secs(2)).await;
            })
        });

        let mut session = Session::default();
        let opts = QueryOptions::default();
        let expectations: &[(&str, usize)] = &[
            ("CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}", 1),
            ("CREATE KEYSPACE IF NOT EXISTS ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}", 1),
            ("CREATE TABLE ks.t (k int PRIMARY KEY, v text)", 2),
            ("CREATE TABLE IF NOT EXISTS ks.t (k int PRIMARY KEY)", 2),
            ("ALTER TABLE ks.t ADD w int", 3),
            ("ALTER KEYSPACE ks WITH durable_writes = false", 4),
            ("DROP TABLE IF EXISTS ks.nope", 4),
            ("CREATE TABLE ks.u (k int PRIMARY KEY)", 5),
            ("DROP TABLE ks.u", 6),
        ];
        for (text, count) in expectations {
            a.query(&mut session, text, &opts)
                .await
                .unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(announced.load(Ordering::SeqCst), *count, "{text}");
            // Announced means merged by the peer before the answer.
            assert_eq!(b.schema().version(), a.schema().version(), "{text}");
        }
        // The peer's executor sees the table at once.
        let mut session_b = Session::default();
        b.query(
            &mut session_b,
            "INSERT INTO ks.t (k, v, w) VALUES (1, 'x', 2)",
            &opts,
        )
        .await
        .unwrap();
        a.query(&mut session, "DROP KEYSPACE ks", &opts)
            .await
            .unwrap();
        assert_eq!(announced.load(Ordering::SeqCst), 7);
        assert!(b.schema().keyspace("ks").is_none());
    }
}
