//! The replica side of the internode verbs: what a node does when a coordinator (possibly
//! itself) sends it a mutation, a read or a scan.
//!
//! [`Replica`] is used two ways. The coordinator calls it directly for the local replica, so a
//! node that owns a key never talks to itself over the network. And [`serve`] drains the
//! transport's verb queue, decodes each [`VerbRequest`], runs it on the [`Replica`] and answers.
//!
//! A replica applies only mutations for tables its schema knows: a mutation for an unknown table
//! id means the schema has not reached this node yet (or the table was dropped), and storing it
//! would leave data no table owns. The coordinator counts that answer as a failure.
//!
//! Every timestamp in an applied mutation is shown to the hybrid logical clock, so a write this
//! node coordinates later is never stamped behind one it already stored.
//!
//! Bounded: at most [`MAX_CONCURRENT_VERBS`] verbs run at once; beyond that the transport's
//! inbound queue fills and senders are told the node is overloaded.
//!
//! ## The batchlog
//!
//! A node is also a *batchlog node* for logged batches other nodes coordinate
//! (`coordinator::batchlog` explains the protocol). It keeps each batch in the engine's meta
//! space under `batchlog/` | the id's time (8 bytes, big-endian) | the id (16 bytes), so that
//! keys sort oldest first and the replay worker finds the batches past their grace period with
//! one bounded scan from the start. The value is a format byte and the bincode (serde) encoding
//! of the batch's write time and mutations, no larger than a verb. A batch is stored only when
//! every table it writes is known here (as for [`VerbRequest::Mutate`]), so a batch this node
//! later replays names tables its schema knows unless they were dropped since. Storing waits for
//! durability as `commitlog_sync` promises; removing does not (a removal lost in a crash only
//! means an applied batch is applied once more, which last-write-wins makes harmless).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch, Semaphore};

use ringdb_gossip::transport::Inbound;

use crate::clock::HybridClock;
use crate::commitlog::CommitSync;
use crate::hints::HintStore;
use crate::purge::PurgeQueue;
use crate::schema::SchemaStore;
use crate::storage::{
    Cell, CellKey, ColumnId, Deletion, Engine, Liveness, Mutation, PartitionData, PartitionKey,
    RangeDeletion, ScanRange, Seconds, Slice, StorageError, TableId,
};
use crate::verbs::{self, ReplicaError, VerbRequest, VerbResponse};

/// Verbs executing at once on one node.
pub const MAX_CONCURRENT_VERBS: usize = 512;

/// Most partitions one scan verb returns, whatever the coordinator asks.
pub const MAX_SCAN_PARTITIONS: u32 = 10_000;

/// Meta-space prefix of the batchlog (see the module documentation for the key layout).
pub const BATCHLOG_PREFIX: &[u8] = b"batchlog/";

/// Format byte in front of every stored batch.
const BATCHLOG_FORMAT: u8 = 1;

/// Length of a batchlog key: prefix, id time, id.
const BATCHLOG_KEY_LEN: usize = BATCHLOG_PREFIX.len() + 8 + 16;

/// A logged batch as a batchlog node keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredBatch {
    /// The batch's time-based id.
    pub id: uuid::Uuid,
    /// When the coordinator wrote it, microseconds since the epoch.
    pub written_at: i64,
    /// Every mutation of the batch.
    pub mutations: Vec<Mutation>,
}

/// One batchlog entry read back: the batch, or why its stored bytes do not decode.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchlogRecord {
    /// The batch's id (from the key, so known even when the value is corrupt).
    pub id: uuid::Uuid,
    /// The batch, or the decoding error.
    pub batch: Result<StoredBatch, String>,
}

/// A position in this node's batchlog, for reading it in pages with [`Replica::batchlog_page`];
/// the default is the start (the oldest batch).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchlogCursor(Option<Vec<u8>>);

/// What is stored for a batch (its id is in the key), borrowed for encoding.
#[derive(Serialize)]
struct StoredBatchRef<'a> {
    written_at: i64,
    mutations: &'a [Mutation],
}

/// What is stored for a batch, decoded (the same layout as [`StoredBatchRef`]).
#[derive(Deserialize)]
struct StoredBatchValue {
    written_at: i64,
    mutations: Vec<Mutation>,
}

/// The time of a batch id: when its coordinator made it. `None` for an id that is not
/// time-based.
pub fn batch_time(id: &uuid::Uuid) -> Option<SystemTime> {
    if id.get_version_num() != 1 {
        return None;
    }
    let (secs, nanos) = id.get_timestamp()?.to_unix();
    SystemTime::UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
}

/// The batchlog key of a batch id; only time-based (version 1) ids have one.
fn batchlog_key(id: &uuid::Uuid) -> Result<Vec<u8>, ReplicaError> {
    let ticks = match id.get_timestamp() {
        Some(ts) if id.get_version_num() == 1 => ts.to_gregorian().0,
        _ => {
            return Err(ReplicaError::BadRequest(format!(
                "batch id {id} is not a time-based (version 1) UUID"
            )))
        }
    };
    let mut key = Vec::with_capacity(BATCHLOG_KEY_LEN);
    key.extend_from_slice(BATCHLOG_PREFIX);
    key.extend_from_slice(&ticks.to_be_bytes());
    key.extend_from_slice(id.as_bytes());
    Ok(key)
}

/// Decodes one stored batchlog entry; `None` for a key that is not a batchlog key.
fn batchlog_record(key: &[u8], value: &[u8]) -> Option<BatchlogRecord> {
    if key.len() != BATCHLOG_KEY_LEN || !key.starts_with(BATCHLOG_PREFIX) {
        return None;
    }
    let id = uuid::Uuid::from_slice(&key[BATCHLOG_PREFIX.len() + 8..]).ok()?;
    let batch = match value.split_first() {
        Some((&BATCHLOG_FORMAT, rest)) => {
            verbs::decode::<StoredBatchValue>(rest).map(|v| StoredBatch {
                id,
                written_at: v.written_at,
                mutations: v.mutations,
            })
        }
        Some((format, _)) => Err(format!("unknown batchlog format {format}")),
        None => Err("empty batchlog entry".to_string()),
    };
    Some(BatchlogRecord { id, batch })
}

/// Answers schema verbs; implemented by schema synchronization.
pub trait SchemaVerbs: Send + Sync + 'static {
    /// Answers a schema verb (`SchemaPull`, `SchemaPush`).
    fn handle<'a>(&'a self, request: VerbRequest) -> futures::future::BoxFuture<'a, VerbResponse>;
}

/// Mutations a replica applies on the calling task at most; more go to the blocking pool.
pub const INLINE_APPLY: usize = 16;

/// This node as a replica: its engine, commit policy, schema and clock.
pub struct Replica {
    engine: Arc<dyn Engine>,
    commit: Arc<CommitSync>,
    schema: Arc<SchemaStore>,
    clock: Arc<HybridClock>,
    /// Where hints handed over by a node leaving the ring go ([`Replica::set_hints`]).
    hints: std::sync::OnceLock<Arc<HintStore>>,
    /// The tables that took deletions or TTLs, for the purge worker.
    purge: Arc<PurgeQueue>,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica").finish_non_exhaustive()
    }
}

fn storage_error(e: StorageError) -> ReplicaError {
    match e {
        StorageError::DiskFull(m) => {
            log_disk_full(&m);
            ReplicaError::DiskFull(m)
        }
        other => ReplicaError::Storage(other.to_string()),
    }
}

/// Says why writes fail while the disk is full: at most once every 10 s (every refused write
/// would flood the log).
fn log_disk_full(why: &str) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST_LOGGED_SECS: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let last = LAST_LOGGED_SECS.load(Ordering::Relaxed);
    if now >= last + 10
        && LAST_LOGGED_SECS
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::error!("refusing writes: {why}");
    }
}

impl Replica {
    /// A replica over the node's storage.
    pub fn new(
        engine: Arc<dyn Engine>,
        commit: Arc<CommitSync>,
        schema: Arc<SchemaStore>,
        clock: Arc<HybridClock>,
    ) -> Arc<Replica> {
        Arc::new(Replica {
            engine,
            commit,
            schema,
            clock,
            hints: std::sync::OnceLock::new(),
            purge: Arc::new(PurgeQueue::new()),
        })
    }

    /// The tables the purge worker has to walk: those this replica applied deletions or TTLs
    /// to (and those the worker queues itself: every table the node had at start).
    pub fn purge_queue(&self) -> Arc<PurgeQueue> {
        self.purge.clone()
    }

    /// Gives the replica this node's hint store, for [`VerbRequest::StoreHint`].
    pub fn set_hints(&self, hints: Arc<HintStore>) {
        let _ = self.hints.set(hints);
    }

    /// Keeps mutations handed over by another node as a hint for `target`.
    async fn store_hint(
        &self,
        target: [u8; 16],
        mutations: &[Mutation],
    ) -> Result<(), ReplicaError> {
        for m in mutations {
            self.check_table(m.table)?;
        }
        let hints = self
            .hints
            .get()
            .ok_or_else(|| ReplicaError::BadRequest("this node keeps no hints".into()))?;
        hints
            .store_unconditionally(ringdb_ring::HostId(target), mutations)
            .await
            .map_err(|e| ReplicaError::Storage(e.to_string()))
    }

    fn check_table(&self, table: TableId) -> Result<(), ReplicaError> {
        let known = self.schema.current().table_by_id(table).is_some();
        if known {
            Ok(())
        } else {
            Err(ReplicaError::UnknownTable(table))
        }
    }

    /// Applies mutations and waits until they are durable. A large batch (streaming, hint
    /// replay) is applied on the blocking pool, so that it never holds up the tasks that share
    /// the runtime (gossip heartbeats among them).
    pub async fn apply(&self, mutations: &Arc<Vec<Mutation>>) -> Result<(), ReplicaError> {
        for m in mutations.iter() {
            self.check_table(m.table)?;
        }
        for m in mutations.iter() {
            if let Some(ts) = max_timestamp(m) {
                self.clock.observe(ts);
            }
            if let Some(from) = m.purge_from() {
                self.purge.mark(m.table, from);
            }
        }
        if mutations.len() > INLINE_APPLY {
            let engine = self.engine.clone();
            let batch = mutations.clone();
            tokio::task::spawn_blocking(move || engine.apply_all(&batch))
                .await
                .map_err(|e| ReplicaError::Storage(format!("apply task failed: {e}")))?
                .map_err(storage_error)?;
        } else {
            self.engine.apply_all(mutations).map_err(storage_error)?;
        }
        self.commit
            .wait_durable()
            .await
            .map_err(|e| ReplicaError::Storage(e.to_string()))
    }

    /// The clock this node stamps writes with.
    pub fn clock(&self) -> &Arc<HybridClock> {
        &self.clock
    }

    /// Shows the clock the newest timestamp in data this node read as a coordinator, so that
    /// a write it stamps after reading is newer than what the client saw.
    pub fn observe_read(&self, data: &PartitionData) {
        let rows = data.static_row.iter().chain(&data.rows).map(|r| {
            (
                r.liveness.as_ref(),
                r.deletion.as_ref(),
                &r.cells[..],
                &r.collection_deletions[..],
            )
        });
        if let Some(ts) = newest_timestamp(
            data.partition_deletion.as_ref(),
            &data.range_deletions,
            rows,
        ) {
            self.clock.observe(ts);
        }
    }

    /// Reads a slice of one partition.
    pub fn read(
        &self,
        table: TableId,
        partition: &PartitionKey,
        slice: &Slice,
        now: Seconds,
    ) -> Result<Option<PartitionData>, ReplicaError> {
        self.check_table(table)?;
        self.engine
            .read_partition(table, partition, slice, now)
            .map_err(storage_error)
    }

    /// Scans partitions in ring order (on a blocking thread: a scan may read many rows).
    pub async fn scan(
        &self,
        table: TableId,
        range: ScanRange,
        slice: Slice,
        max_partitions: u32,
        now: Seconds,
    ) -> Result<Vec<PartitionData>, ReplicaError> {
        self.check_table(table)?;
        let engine = self.engine.clone();
        let max = max_partitions.clamp(1, MAX_SCAN_PARTITIONS) as usize;
        tokio::task::spawn_blocking(move || engine.scan(table, &range, &slice, max, now))
            .await
            .map_err(|e| ReplicaError::Storage(format!("scan task failed: {e}")))?
            .map_err(storage_error)
    }

    /// This replica's Merkle tree of `table` over `range`, at `depth` or at the depth its
    /// partition count there calls for (anti-entropy repair: see [`crate::repair::tree`]).
    pub async fn merkle_tree(
        &self,
        table: TableId,
        range: ringdb_ring::TokenRange,
        depth: Option<u8>,
    ) -> Result<ringdb_ring::MerkleTree, ReplicaError> {
        self.check_table(table)?;
        crate::repair::tree::build(self.engine.clone(), table, range, depth).await
    }

    /// A page of whole partitions for repair streaming, bounded in count and in bytes, and
    /// whether the range holds nothing after it (see [`crate::repair::tree::read_page`]).
    pub async fn repair_page(
        &self,
        table: TableId,
        range: ScanRange,
        max_partitions: u32,
        max_bytes: u32,
    ) -> Result<(Vec<PartitionData>, bool), ReplicaError> {
        self.check_table(table)?;
        crate::repair::tree::read_page(self.engine.clone(), table, range, max_partitions, max_bytes)
            .await
    }

    /// Removes all local data of a table (known or not: a dropped table's data goes too).
    pub async fn truncate(&self, table: TableId) -> Result<(), ReplicaError> {
        let engine = self.engine.clone();
        tokio::task::spawn_blocking(move || engine.truncate(table))
            .await
            .map_err(|e| ReplicaError::Storage(format!("truncate task failed: {e}")))?
            .map_err(storage_error)?;
        self.commit
            .wait_durable()
            .await
            .map_err(|e| ReplicaError::Storage(e.to_string()))
    }

    /// Keeps a logged batch in this node's batchlog and waits until it is durable. Refused when
    /// the id is not time-based, a table is unknown here, or the batch is larger than a verb.
    pub async fn store_batch(
        &self,
        id: uuid::Uuid,
        written_at: i64,
        mutations: &[Mutation],
    ) -> Result<(), ReplicaError> {
        let key = batchlog_key(&id)?;
        for m in mutations {
            self.check_table(m.table)?;
        }
        let encoded = verbs::encode(&StoredBatchRef {
            written_at,
            mutations,
        })
        .map_err(ReplicaError::BadRequest)?;
        if encoded.len() > verbs::MAX_VERB_BYTES {
            return Err(ReplicaError::BadRequest(format!(
                "batch of {} bytes is larger than the {} a verb may carry",
                encoded.len(),
                verbs::MAX_VERB_BYTES
            )));
        }
        let mut value = Vec::with_capacity(encoded.len() + 1);
        value.push(BATCHLOG_FORMAT);
        value.extend_from_slice(&encoded);
        let engine = self.engine.clone();
        tokio::task::spawn_blocking(move || engine.meta_put(&key, &value))
            .await
            .map_err(|e| ReplicaError::Storage(format!("batchlog task failed: {e}")))?
            .map_err(storage_error)?;
        self.commit
            .wait_durable()
            .await
            .map_err(|e| ReplicaError::Storage(e.to_string()))
    }

    /// Forgets a batch (nothing to do when it is not there). Does not wait for durability.
    pub fn remove_batch(&self, id: uuid::Uuid) -> Result<(), ReplicaError> {
        let key = batchlog_key(&id)?;
        self.engine.meta_delete(&key).map_err(storage_error)
    }

    /// Up to `limit` batchlog entries after `cursor`, oldest first, and the cursor after them.
    /// Bounded in memory by `limit` entries of at most a verb's size each.
    pub fn batchlog_page(
        &self,
        cursor: &BatchlogCursor,
        limit: usize,
    ) -> Result<(Vec<BatchlogRecord>, BatchlogCursor), ReplicaError> {
        let entries = self
            .engine
            .meta_scan_prefix_after(BATCHLOG_PREFIX, cursor.0.as_deref(), limit)
            .map_err(storage_error)?;
        let next = match entries.last() {
            Some((key, _)) => BatchlogCursor(Some(key.clone())),
            None => cursor.clone(),
        };
        let mut records = Vec::with_capacity(entries.len());
        for (key, value) in &entries {
            match batchlog_record(key, value) {
                Some(record) => records.push(record),
                None => tracing::warn!(key = ?key, "ignoring a malformed batchlog key"),
            }
        }
        Ok((records, next))
    }

    /// Runs one data verb (schema verbs are answered by schema synchronization, not here).
    pub async fn handle(&self, request: &VerbRequest) -> VerbResponse {
        let result = match request {
            VerbRequest::Mutate { mutations } => {
                self.apply(mutations).await.map(|()| VerbResponse::Applied)
            }
            VerbRequest::Read {
                table,
                partition,
                slice,
                now,
                digest,
            } => self
                .read(*table, partition, slice, *now)
                .map(|data| match digest {
                    true => VerbResponse::Digest(verbs::digest_of(&data)),
                    false => VerbResponse::Data(data),
                }),
            VerbRequest::Scan {
                table,
                range,
                slice,
                max_partitions,
                now,
            } => self
                .scan(*table, range.clone(), slice.clone(), *max_partitions, *now)
                .await
                .map(VerbResponse::Partitions),
            VerbRequest::Truncate { table } => self
                .truncate(*table)
                .await
                .map(|()| VerbResponse::Truncated),
            VerbRequest::BatchlogStore {
                id,
                mutations,
                written_at,
            } => self
                .store_batch(*id, *written_at, mutations)
                .await
                .map(|()| VerbResponse::BatchlogStored),
            VerbRequest::BatchlogRemove { id } => self
                .remove_batch(*id)
                .map(|()| VerbResponse::BatchlogRemoved),
            VerbRequest::StoreHint { target, mutations } => self
                .store_hint(*target, mutations)
                .await
                .map(|()| VerbResponse::HintStored),
            VerbRequest::MerkleTree {
                table,
                start,
                end,
                depth,
            } => {
                let range = ringdb_ring::TokenRange::new(
                    ringdb_ring::Token(*start),
                    ringdb_ring::Token(*end),
                );
                self.merkle_tree(*table, range, *depth)
                    .await
                    .map(|tree| VerbResponse::MerkleTree(Box::new(tree)))
            }
            VerbRequest::RepairRead {
                table,
                range,
                max_partitions,
                max_bytes,
            } => self
                .repair_page(*table, range.clone(), *max_partitions, *max_bytes)
                .await
                .map(|(partitions, complete)| VerbResponse::RepairPage {
                    partitions,
                    complete,
                }),
            VerbRequest::SchemaPull | VerbRequest::SchemaPush(_) => Err(ReplicaError::BadRequest(
                "schema verbs are answered by schema synchronization".into(),
            )),
            VerbRequest::MutateForward { .. }
            | VerbRequest::MutateAndAck { .. }
            | VerbRequest::ForwardAck { .. } => Err(ReplicaError::BadRequest(
                "forwarding verbs are answered by the coordinator".into(),
            )),
        };
        result.unwrap_or_else(VerbResponse::Error)
    }
}

/// The newest timestamp a mutation carries.
fn max_timestamp(m: &Mutation) -> Option<i64> {
    let rows = m.rows.iter().map(|r| {
        (
            r.liveness.as_ref(),
            r.deletion.as_ref(),
            &r.cells[..],
            &r.collection_deletions[..],
        )
    });
    newest_timestamp(m.partition_deletion.as_ref(), &m.range_deletions, rows)
}

/// The parts of a row that carry timestamps: liveness, deletion, cells, collection deletions.
type RowStamps<'a> = (
    Option<&'a Liveness>,
    Option<&'a Deletion>,
    &'a [(CellKey, Cell)],
    &'a [(ColumnId, Deletion)],
);

/// The newest timestamp among a partition's deletions and rows (written or read).
fn newest_timestamp<'a>(
    partition_deletion: Option<&Deletion>,
    range_deletions: &[RangeDeletion],
    rows: impl Iterator<Item = RowStamps<'a>>,
) -> Option<i64> {
    let deletions = partition_deletion
        .into_iter()
        .chain(range_deletions.iter().map(|r| &r.deletion))
        .map(|d| d.timestamp);
    let rows = rows.flat_map(|(liveness, deletion, cells, collection_deletions)| {
        liveness
            .map(|l| l.timestamp)
            .into_iter()
            .chain(deletion.map(|d| d.timestamp))
            .chain(cells.iter().map(|(_, c)| c.timestamp))
            .chain(collection_deletions.iter().map(|(_, d)| d.timestamp))
    });
    deletions.chain(rows).max()
}

/// Drains the transport's verb queue until it closes or the node stops: each request is decoded,
/// run (data verbs on `replica`, schema verbs on `schema`) and answered. A request that does not
/// decode is answered with [`ReplicaError::BadRequest`]; one-way verb messages are not used and
/// are dropped. Cross-datacenter forwarding verbs go to `coordinator` (refused without one).
pub async fn serve(
    replica: Arc<Replica>,
    schema: Arc<dyn SchemaVerbs>,
    coordinator: Option<Arc<crate::coordinator::Coordinator>>,
    mut inbound: mpsc::Receiver<Inbound>,
    mut shutdown: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONCURRENT_VERBS));
    loop {
        let message = tokio::select! {
            m = inbound.recv() => match m {
                Some(m) => m,
                None => return,
            },
            _ = crate::server::stopping(&mut shutdown) => return,
        };
        if !message.expects_response() {
            tracing::debug!(from = %message.from, "ignoring a one-way verb message");
            continue;
        }
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let replica = replica.clone();
        let schema = schema.clone();
        let coordinator = coordinator.clone();
        tokio::spawn(async move {
            let response = match verbs::decode::<VerbRequest>(&message.body) {
                Ok(request @ (VerbRequest::SchemaPull | VerbRequest::SchemaPush(_))) => {
                    schema.handle(request).await
                }
                Ok(
                    request @ (VerbRequest::MutateForward { .. }
                    | VerbRequest::MutateAndAck { .. }
                    | VerbRequest::ForwardAck { .. }),
                ) => {
                    metrics::counter!(crate::metrics::REPLICA_VERBS, "verb" => request.name())
                        .increment(1);
                    match &coordinator {
                        Some(c) => c.handle_forwarding(message.from, request).await,
                        None => VerbResponse::Error(ReplicaError::BadRequest(
                            "this node does not forward writes".into(),
                        )),
                    }
                }
                Ok(request) => {
                    metrics::counter!(crate::metrics::REPLICA_VERBS, "verb" => request.name())
                        .increment(1);
                    replica.handle(&request).await
                }
                Err(e) => {
                    tracing::warn!(from = %message.from, error = %e, "malformed verb request");
                    VerbResponse::Error(ReplicaError::BadRequest(e))
                }
            };
            match verbs::encode(&response) {
                Ok(body) => message.respond(body),
                Err(e) => tracing::error!(error = %e, "cannot encode a verb response"),
            }
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commitlog::SyncMode;
    use crate::coordinator::testing::{create_table, insert};
    use crate::storage::MemoryEngine;

    /// A replica over the in-memory engine with table `ks.t (k int PRIMARY KEY, v text)`.
    fn replica() -> (
        Arc<Replica>,
        Arc<crate::schema::TableDef>,
        watch::Sender<bool>,
    ) {
        let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
        let (stop, stop_rx) = watch::channel(false);
        let (commit, _flusher) = CommitSync::start(SyncMode::Batch, engine.clone(), stop_rx);
        let schema = SchemaStore::open(engine.clone()).expect("schema");
        let table = create_table(&schema, 1, "CREATE TABLE t (k int PRIMARY KEY, v text)");
        let replica = Replica::new(engine, commit, schema, HybridClock::system());
        (replica, table, stop)
    }

    /// A batch id made `secs` seconds after the epoch (node part `node`).
    fn id_at(secs: u64, node: u8) -> uuid::Uuid {
        let ts = uuid::Timestamp::from_unix(uuid::timestamp::context::NoContext, secs, 0);
        uuid::Uuid::new_v1(ts, &[0, 0, 0, 0, 0, node])
    }

    fn ids(replica: &Replica) -> Vec<uuid::Uuid> {
        let (page, _) = replica
            .batchlog_page(&BatchlogCursor::default(), 100)
            .expect("page");
        page.into_iter().map(|r| r.id).collect()
    }

    #[tokio::test]
    async fn batchlog_stores_lists_in_time_order_and_removes() {
        let (replica, table, _stop) = replica();
        let late = id_at(2_000_000_000, 1);
        let early = id_at(1_000_000_000, 2);
        let batch = vec![insert(&table, 1, "a", 10), insert(&table, 2, "b", 10)];
        for (id, written_at) in [(late, 7), (early, 5)] {
            let answer = replica
                .handle(&VerbRequest::BatchlogStore {
                    id,
                    mutations: batch.clone(),
                    written_at,
                })
                .await;
            assert_eq!(answer, VerbResponse::BatchlogStored);
        }
        assert_eq!(
            ids(&replica),
            vec![early, late],
            "oldest first, whatever the order of storing"
        );
        let (page, _) = replica
            .batchlog_page(&BatchlogCursor::default(), 1)
            .expect("page");
        assert_eq!(
            page,
            vec![BatchlogRecord {
                id: early,
                batch: Ok(StoredBatch {
                    id: early,
                    written_at: 5,
                    mutations: batch.clone(),
                }),
            }]
        );
        // Storing is not applying.
        assert_eq!(
            crate::coordinator::testing::value_of(&*replica.engine, &table, 1),
            None
        );

        // Pages resume after their cursor and end with an unchanged cursor.
        let (first, cursor) = replica
            .batchlog_page(&BatchlogCursor::default(), 1)
            .expect("page");
        let (second, cursor) = replica.batchlog_page(&cursor, 1).expect("page");
        let (third, end) = replica.batchlog_page(&cursor, 1).expect("page");
        assert_eq!((first[0].id, second[0].id), (early, late));
        assert!(third.is_empty());
        assert_eq!(end, cursor);

        let answer = replica
            .handle(&VerbRequest::BatchlogRemove { id: early })
            .await;
        assert_eq!(answer, VerbResponse::BatchlogRemoved);
        assert_eq!(ids(&replica), vec![late]);
        // Removing what is not there is not an error (a retried or late removal).
        let answer = replica
            .handle(&VerbRequest::BatchlogRemove { id: early })
            .await;
        assert_eq!(answer, VerbResponse::BatchlogRemoved);
        assert_eq!(ids(&replica), vec![late]);
    }

    #[tokio::test]
    async fn batchlog_refuses_ids_without_time_and_unknown_tables() {
        let (replica, table, _stop) = replica();
        let answer = replica
            .handle(&VerbRequest::BatchlogStore {
                id: uuid::Uuid::from_u128(42), // not version 1
                mutations: vec![insert(&table, 1, "a", 10)],
                written_at: 1,
            })
            .await;
        assert!(
            matches!(answer, VerbResponse::Error(ReplicaError::BadRequest(_))),
            "{answer:?}"
        );
        let mut unknown = insert(&table, 1, "a", 10);
        unknown.table = uuid::Uuid::from_u128(7);
        let answer = replica
            .handle(&VerbRequest::BatchlogStore {
                id: id_at(1_000_000_000, 1),
                mutations: vec![insert(&table, 2, "b", 10), unknown],
                written_at: 1,
            })
            .await;
        assert_eq!(
            answer,
            VerbResponse::Error(ReplicaError::UnknownTable(uuid::Uuid::from_u128(7)))
        );
        let answer = replica
            .handle(&VerbRequest::BatchlogRemove {
                id: uuid::Uuid::from_u128(42),
            })
            .await;
        assert!(matches!(
            answer,
            VerbResponse::Error(ReplicaError::BadRequest(_))
        ));
        assert!(ids(&replica).is_empty());
    }

    #[tokio::test]
    async fn corrupt_batchlog_entries_are_reported_not_fatal() {
        let (replica, table, _stop) = replica();
        let good = id_at(1_000_000_002, 1);
        replica
            .store_batch(good, 1, &[insert(&table, 1, "a", 10)])
            .await
            .expect("store");
        let bad = id_at(1_000_000_001, 2);
        let bad_key = batchlog_key(&bad).expect("key");
        replica
            .engine
            .meta_put(&bad_key, &[BATCHLOG_FORMAT, 0xff, 0xff])
            .expect("put");
        let unknown_format = id_at(1_000_000_000, 3);
        let key = batchlog_key(&unknown_format).expect("key");
        replica.engine.meta_put(&key, &[9, 0]).expect("put");
        // Not a batchlog key at all: skipped.
        replica
            .engine
            .meta_put(b"batchlog/short", b"x")
            .expect("put");

        let (page, _) = replica
            .batchlog_page(&BatchlogCursor::default(), 10)
            .expect("page");
        let summary: Vec<(uuid::Uuid, bool)> =
            page.iter().map(|r| (r.id, r.batch.is_ok())).collect();
        assert_eq!(
            summary,
            vec![(unknown_format, false), (bad, false), (good, true)]
        );
        assert!(batch_time(&good).is_some());
        assert_eq!(batch_time(&uuid::Uuid::from_u128(1)), None);
    }
}
