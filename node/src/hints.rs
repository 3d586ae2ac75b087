//! Durable hints: writes kept by a coordinator for a replica that could not take them.
//!
//! When a replica is down (per the failure detector) or does not answer a write in time, the
//! coordinator keeps the mutations for it here as a *hint*, and the replay worker
//! ([`crate::coordinator::hints`]) delivers them once gossip says the replica is up again. This
//! module is the store; when to write and replay hints is the coordinator's business.
//!
//! Hints live in the engine's meta space, durable before a write counts them (a write at `ANY`
//! is acknowledged on a stored hint), under one key per hint:
//!
//! ```text
//! hints/ | target host id (16 bytes) | written at (µs since the epoch, u64 BE) | sequence (u64 BE)
//! ```
//!
//! so a target's hints sort together, oldest first, and replay resumes where it stopped after a
//! restart of either side: nothing is deleted before the target acknowledged it. The value is a
//! format byte followed by the mutations, encoded as a verb body (so never larger than a verb may
//! carry). Hints are bounded in total by `max_hints_size`: past it a new hint is refused (the
//! write's answer does not change, since a hint never counts toward a level other than `ANY`;
//! repair converges the replica later). Replay is idempotent: mutations keep their timestamps.
//!
//! The store keeps per-target counts in memory (rebuilt from disk at open) for `ringdb status`,
//! `system_views.cluster_status` and the `ringdb_hints_pending` metric.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use ringdb_ring::HostId;

use crate::commitlog::CommitSync;
use crate::metrics as m;
use crate::storage::{Engine, Mutation, StorageError};
use crate::verbs;

/// Meta-space prefix of every hint.
pub const HINTS_PREFIX: &[u8] = b"hints/";

/// Format byte in front of every stored hint.
const HINT_FORMAT: u8 = 1;

/// Length of a hint key: prefix, target, time, sequence.
const HINT_KEY_LEN: usize = HINTS_PREFIX.len() + 16 + 8 + 8;

/// Hints read from disk at once when counting them at open.
const OPEN_PAGE: usize = 1024;

/// The store's settings (`hinted_handoff_enabled`, `max_hint_window_ms`, `max_hints_size`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HintConfig {
    /// Whether hints are written at all (replay of hints already stored goes on regardless).
    pub enabled: bool,
    /// Hints are written for a replica only this long after it went down.
    pub window: Duration,
    /// Most bytes all hints together may take.
    pub max_bytes: u64,
}

/// Why a hint was not stored.
#[derive(Debug, thiserror::Error)]
pub enum HintError {
    /// Hinted handoff is turned off.
    #[error("hinted handoff is disabled")]
    Disabled,
    /// `max_hints_size` would be exceeded.
    #[error("hint store full: {used} of {max} bytes used, {wanted} more wanted")]
    Full {
        /// Bytes used now.
        used: u64,
        /// The limit.
        max: u64,
        /// Size of the refused hint.
        wanted: u64,
    },
    /// The mutations do not fit in one verb.
    #[error("hint too large: {0}")]
    TooLarge(String),
    /// The engine failed (or the disk is full).
    #[error("cannot store hint: {0}")]
    Storage(#[from] StorageError),
    /// Durability could not be confirmed.
    #[error("cannot make hint durable: {0}")]
    Durability(String),
}

/// One stored hint.
#[derive(Debug, Clone, PartialEq)]
pub struct Hint {
    /// Its key in the meta space (the replay cursor, and what [`HintStore::remove`] takes).
    pub key: Vec<u8>,
    /// When it was written, microseconds since the epoch.
    pub written_at: i64,
    /// The mutations the target missed.
    pub mutations: Vec<Mutation>,
    /// Bytes it takes on disk (value only).
    pub size: u64,
}

/// Hints held for one target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pending {
    /// How many.
    pub hints: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// The hints this node holds, by target.
pub struct HintStore {
    engine: Arc<dyn Engine>,
    commit: Arc<CommitSync>,
    config: HintConfig,
    pending: Mutex<HashMap<HostId, Pending>>,
    total_bytes: AtomicU64,
    sequence: AtomicU64,
}

impl std::fmt::Debug for HintStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HintStore")
            .field("config", &self.config)
            .field("total_bytes", &self.total_bytes.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl HintStore {
    /// Opens the store over `engine`, counting the hints already there. Malformed entries are
    /// deleted (with a warning): they could never be replayed.
    pub fn open(
        engine: Arc<dyn Engine>,
        commit: Arc<CommitSync>,
        config: HintConfig,
    ) -> Result<Arc<HintStore>, StorageError> {
        let mut pending: HashMap<HostId, Pending> = HashMap::new();
        let mut total = 0u64;
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = engine.meta_scan_prefix_after(HINTS_PREFIX, after.as_deref(), OPEN_PAGE)?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            for (key, value) in &page {
                match parse_key(key) {
                    Some((target, _)) if value.first() == Some(&HINT_FORMAT) => {
                        let p = pending.entry(target).or_default();
                        p.hints += 1;
                        p.bytes += value.len() as u64;
                        total += value.len() as u64;
                    }
                    _ => {
                        tracing::warn!(key = ?key, "deleting a malformed hint");
                        engine.meta_delete(key)?;
                    }
                }
            }
        }
        for (target, p) in &pending {
            set_gauge(target, p);
        }
        if total > 0 {
            let hints: u64 = pending.values().map(|p| p.hints).sum();
            tracing::info!(
                hints,
                bytes = total,
                targets = pending.len(),
                "hints waiting for replay"
            );
        }
        Ok(Arc::new(HintStore {
            engine,
            commit,
            config,
            pending: Mutex::new(pending),
            total_bytes: AtomicU64::new(total),
            sequence: AtomicU64::new(rand::random::<u32>() as u64),
        }))
    }

    /// The store's settings.
    pub fn config(&self) -> &HintConfig {
        &self.config
    }

    /// Keeps `mutations` for `target` and waits until the hint is durable.
    pub async fn store(&self, target: HostId, mutations: &[Mutation]) -> Result<(), HintError> {
        if !self.config.enabled {
            return Err(HintError::Disabled);
        }
        self.store_unconditionally(target, mutations).await
    }

    /// [`HintStore::store`] even with hinted handoff off: for hints another node hands over as
    /// it leaves the ring (they were accepted already; dropping them would lose writes).
    pub async fn store_unconditionally(
        &self,
        target: HostId,
        mutations: &[Mutation],
    ) -> Result<(), HintError> {
        let encoded = verbs::encode(&mutations).map_err(HintError::TooLarge)?;
        let size = encoded.len() as u64 + 1;
        let used = self.total_bytes.fetch_add(size, Ordering::SeqCst);
        if used + size > self.config.max_bytes {
            self.total_bytes.fetch_sub(size, Ordering::SeqCst);
            metrics::counter!(m::HINTS_DROPPED, "reason" => "full").increment(1);
            return Err(HintError::Full {
                used,
                max: self.config.max_bytes,
                wanted: size,
            });
        }
        let written_at = unix_micros(SystemTime::now());
        let key = hint_key(
            &target,
            written_at,
            self.sequence.fetch_add(1, Ordering::Relaxed),
        );
        let mut value = Vec::with_capacity(encoded.len() + 1);
        value.push(HINT_FORMAT);
        value.extend_from_slice(&encoded);
        let engine = self.engine.clone();
        let put = tokio::task::spawn_blocking(move || engine.meta_put(&key, &value)).await;
        let result = match put {
            Ok(Ok(())) => self
                .commit
                .wait_durable()
                .await
                .map_err(|e| HintError::Durability(e.to_string())),
            Ok(Err(e)) => Err(HintError::Storage(e)),
            Err(e) => Err(HintError::Durability(format!("hint task failed: {e}"))),
        };
        if let Err(e) = result {
            self.total_bytes.fetch_sub(size, Ordering::SeqCst);
            metrics::counter!(m::HINTS_DROPPED, "reason" => "storage").increment(1);
            return Err(e);
        }
        let mut pending = lock(&self.pending);
        let p = pending.entry(target).or_default();
        p.hints += 1;
        p.bytes += size;
        set_gauge(&target, p);
        metrics::counter!(m::HINTS_STORED).increment(1);
        Ok(())
    }

    /// Up to `limit` hints for `target` after the hint with key `after` (from its oldest when
    /// `None`), oldest first. A malformed one is deleted and skipped.
    pub fn page(
        &self,
        target: &HostId,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Hint>, StorageError> {
        let prefix = target_prefix(target);
        let entries = self.engine.meta_scan_prefix_after(&prefix, after, limit)?;
        let mut hints = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            let decoded = match (parse_key(&key), value.split_first()) {
                (Some((_, written_at)), Some((&HINT_FORMAT, body))) => {
                    verbs::decode::<Vec<Mutation>>(body)
                        .ok()
                        .map(|mutations| (written_at, mutations))
                }
                _ => None,
            };
            match decoded {
                Some((written_at, mutations)) => hints.push(Hint {
                    size: value.len() as u64,
                    key,
                    written_at,
                    mutations,
                }),
                None => {
                    tracing::warn!(key = ?key, "deleting a hint that does not decode");
                    metrics::counter!(m::HINTS_DROPPED, "reason" => "corrupt").increment(1);
                    self.forget(target, &key, value.len() as u64)?;
                }
            }
        }
        Ok(hints)
    }

    /// Deletes a hint once its target acknowledged it (or it is not worth replaying).
    pub fn remove(&self, target: &HostId, hint: &Hint) -> Result<(), StorageError> {
        self.forget(target, &hint.key, hint.size)
    }

    /// Deletes hints once their target acknowledged them all: one storage batch.
    pub fn remove_all(&self, target: &HostId, hints: &[Hint]) -> Result<(), StorageError> {
        let keys: Vec<&[u8]> = hints.iter().map(|h| &h.key[..]).collect();
        self.engine.meta_delete_all(&keys)?;
        self.forgotten(
            target,
            hints.len() as u64,
            hints.iter().map(|h| h.size).sum(),
        );
        Ok(())
    }

    fn forget(&self, target: &HostId, key: &[u8], size: u64) -> Result<(), StorageError> {
        self.engine.meta_delete(key)?;
        self.forgotten(target, 1, size);
        Ok(())
    }

    /// Accounts for `count` deleted hints of `size` bytes in all.
    fn forgotten(&self, target: &HostId, count: u64, size: u64) {
        self.total_bytes.fetch_sub(
            size.min(self.total_bytes.load(Ordering::SeqCst)),
            Ordering::SeqCst,
        );
        let mut pending = lock(&self.pending);
        if let Some(p) = pending.get_mut(target) {
            p.hints = p.hints.saturating_sub(count);
            p.bytes = p.bytes.saturating_sub(size);
            set_gauge(target, p);
            if p.hints == 0 {
                pending.remove(target);
            }
        }
    }

    /// Deletes every hint for `target` (it left the cluster); returns how many there were.
    pub fn drop_target(&self, target: &HostId) -> Result<u64, StorageError> {
        let mut dropped = 0;
        loop {
            let page =
                self.engine
                    .meta_scan_prefix_after(&target_prefix(target), None, OPEN_PAGE)?;
            if page.is_empty() {
                break;
            }
            for (key, value) in page {
                self.forget(target, &key, value.len() as u64)?;
                dropped += 1;
            }
        }
        metrics::counter!(m::HINTS_DROPPED, "reason" => "target_left").increment(dropped);
        Ok(dropped)
    }

    /// What is held for `target`.
    pub fn pending(&self, target: &HostId) -> Pending {
        lock(&self.pending).get(target).copied().unwrap_or_default()
    }

    /// Every target with hints, and what is held for it.
    pub fn targets(&self) -> Vec<(HostId, Pending)> {
        let mut all: Vec<(HostId, Pending)> =
            lock(&self.pending).iter().map(|(h, p)| (*h, *p)).collect();
        all.sort_by_key(|(h, _)| *h);
        all
    }

    /// Bytes all hints take.
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes.load(Ordering::SeqCst)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn set_gauge(target: &HostId, p: &Pending) {
    let target = uuid::Uuid::from_bytes(target.0).to_string();
    metrics::gauge!(m::HINTS_PENDING, "target" => target).set(p.hints as f64);
}

fn target_prefix(target: &HostId) -> Vec<u8> {
    let mut prefix = Vec::with_capacity(HINTS_PREFIX.len() + 16);
    prefix.extend_from_slice(HINTS_PREFIX);
    prefix.extend_from_slice(&target.0);
    prefix
}

fn hint_key(target: &HostId, written_at: i64, sequence: u64) -> Vec<u8> {
    let mut key = target_prefix(target);
    key.extend_from_slice(&(written_at.max(0) as u64).to_be_bytes());
    key.extend_from_slice(&sequence.to_be_bytes());
    key
}

/// The target and write time of a hint key.
fn parse_key(key: &[u8]) -> Option<(HostId, i64)> {
    if key.len() != HINT_KEY_LEN {
        return None;
    }
    let rest = key.strip_prefix(HINTS_PREFIX)?;
    let target = HostId(rest[..16].try_into().ok()?);
    let written_at = u64::from_be_bytes(rest[16..24].try_into().ok()?);
    Some((target, i64::try_from(written_at).ok()?))
}

/// Microseconds since the epoch.
pub fn unix_micros(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use tokio::sync::watch;

    use super::*;
    use crate::commitlog::SyncMode;
    use crate::storage::{MemoryEngine, PartitionKey};

    fn mutation(k: u8) -> Mutation {
        Mutation {
            table: uuid::Uuid::from_u128(7),
            partition: PartitionKey {
                token: i64::from(k),
                key: vec![k],
            },
            partition_deletion: None,
            range_deletions: vec![],
            rows: vec![],
        }
    }

    fn config(max_bytes: u64) -> HintConfig {
        HintConfig {
            enabled: true,
            window: Duration::from_secs(3600),
            max_bytes,
        }
    }

    async fn open(
        engine: &Arc<dyn Engine>,
        max_bytes: u64,
    ) -> (Arc<HintStore>, watch::Sender<bool>) {
        let (shutdown, rx) = watch::channel(false);
        let (commit, _flusher) = CommitSync::start(SyncMode::Batch, engine.clone(), rx);
        (
            HintStore::open(engine.clone(), commit, config(max_bytes)).expect("open"),
            shutdown,
        )
    }

    const A: HostId = HostId([1; 16]);
    const B: HostId = HostId([2; 16]);

    #[tokio::test]
    async fn hints_are_kept_per_target_in_order_and_survive_a_reopen() {
        let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
        let (store, _s) = open(&engine, 1 << 20).await;
        for k in 0..5 {
            store.store(A, &[mutation(k)]).await.expect("store");
        }
        store.store(B, &[mutation(9)]).await.expect("store");
        assert_eq!(store.pending(&A).hints, 5);
        assert_eq!(store.pending(&B).hints, 1);

        let (reopened, _s2) = open(&engine, 1 << 20).await;
        assert_eq!(reopened.pending(&A), store.pending(&A));
        assert_eq!(reopened.total_bytes(), store.total_bytes());
        let first = reopened.page(&A, None, 3).expect("page");
        let keys: Vec<u8> = first
            .iter()
            .map(|h| h.mutations[0].partition.key[0])
            .collect();
        assert_eq!(keys, vec![0, 1, 2]);
        let rest = reopened
            .page(&A, Some(&first[2].key), 10)
            .expect("next page");
        let keys: Vec<u8> = rest
            .iter()
            .map(|h| h.mutations[0].partition.key[0])
            .collect();
        assert_eq!(keys, vec![3, 4]);

        for hint in first.iter().chain(&rest) {
            reopened.remove(&A, hint).expect("remove");
        }
        assert_eq!(reopened.pending(&A), Pending::default());
        assert!(reopened.page(&A, None, 10).expect("page").is_empty());
        assert_eq!(reopened.targets().len(), 1);
    }

    #[tokio::test]
    async fn the_size_bound_refuses_new_hints() {
        let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
        let (store, _s) = open(&engine, 1 << 20).await;
        store.store(A, &[mutation(1)]).await.expect("store");
        let one = store.total_bytes();
        let other: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
        let (small, _s2) = open(&other, one).await;
        small.store(A, &[mutation(1)]).await.expect("fits");
        let err = small.store(A, &[mutation(2)]).await.expect_err("full");
        assert!(matches!(err, HintError::Full { .. }), "{err}");
        assert_eq!(small.pending(&A).hints, 1);
    }

    #[tokio::test]
    async fn disabled_stores_nothing_and_malformed_entries_are_dropped() {
        let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
        let (shutdown, rx) = watch::channel(false);
        let (commit, _flusher) = CommitSync::start(SyncMode::Batch, engine.clone(), rx);
        let off = HintStore::open(
            engine.clone(),
            commit,
            HintConfig {
                enabled: false,
                ..config(1 << 20)
            },
        )
        .expect("open");
        assert!(matches!(
            off.store(A, &[mutation(1)]).await,
            Err(HintError::Disabled)
        ));
        drop(shutdown);

        engine.meta_put(b"hints/short", b"x").expect("put");
        engine.meta_put(&hint_key(&A, 5, 1), &[9, 9]).expect("put");
        let (store, _s) = open(&engine, 1 << 20).await;
        assert_eq!(store.targets(), vec![]);
        assert!(engine.meta_get(b"hints/short").expect("get").is_none());
        assert!(store.page(&A, None, 10).expect("page").is_empty());

        // A hint whose body does not decode is dropped when met.
        engine
            .meta_put(&hint_key(&A, 6, 2), &[HINT_FORMAT, 0xff, 0xff, 0xff])
            .expect("put");
        assert!(store.page(&A, None, 10).expect("page").is_empty());
        assert!(engine.meta_get(&hint_key(&A, 6, 2)).expect("get").is_none());
    }
}
