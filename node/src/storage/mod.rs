//! Storage: where a node keeps its data.
//!
//! The storage layer knows partitions, rows and cells, never CQL. A table is a `TableId`; a
//! partition is identified by its token and its serialized partition key (the bytes Cassandra
//! hashes); a row inside a partition by its *clustering bytes*: the clustering values encoded with
//! an order-preserving, prefix-preserving encoding (`ringdb_cql::types::encode_comparable`), so
//! the byte order of keys is the clustering order of the table. Storage treats those bytes as
//! opaque. A table without clustering columns has one row per partition, with empty clustering
//! bytes; in a table *with* clustering columns, the empty clustering is the static row (it sorts
//! first, as Cassandra's static row does).
//!
//! Every piece of data carries its write timestamp (microseconds, as CQL's `writetime`), and
//! possibly a TTL with an absolute expiry time (seconds since the epoch). Deletions are data too:
//! partition deletions, range deletions over clustering bytes, row deletions, cell tombstones and
//! collection deletions. What a write stores never depends on what is already there: each slot
//! (cell, liveness, deletion...) keeps the version that wins last-write-wins with Cassandra's
//! tie-break rules (an engine may resolve that on write, as the sled engine does, or on read),
//! and reads resolve shadowing (see [`merge`]). Because merge is commutative, associative and
//! idempotent, replicas that receive the same mutations in any order converge, and re-applying a
//! mutation (hint replay, repair, read repair) changes nothing.
//!
//! Range deletions never cover the row with empty clustering bytes: in a table with clustering
//! columns that is the static row, which Cassandra's range tombstones do not touch; a table
//! without clustering columns has no range deletions. Reading with `include_static: false` treats
//! that row as an ordinary row, which is how a table without clustering columns reads its row.
//!
//! Read answers ([`PartitionData`]) are canonical: shadowed data removed, deletions kept so that
//! answers from several replicas can be merged again ([`PartitionData::merge`]); the helpers in
//! [`merge`] ([`Row::is_live`], [`Row::live_cells`], [`PartitionData::live_rows`], ...) interpret
//! them at a given `now`.
//!
//! The engine interface ([`Engine`]) is deliberately narrow so that it can be implemented over
//! sled (the production engine) and in memory (tests), and one conformance suite runs against both.
//! Besides data, an engine keeps a small key-value *meta* space for node-local metadata (schema,
//! host id, the batchlog, hints bookkeeping later).

use std::ops::Bound;

use serde::{Deserialize, Serialize};

mod commit_log;
pub mod failstop;
pub mod memory;
pub mod merge;
mod partition;
pub mod sled_engine;
mod sled_format;

pub use failstop::FailStop;
pub use memory::MemoryEngine;
pub use sled_engine::SledEngine;

/// Identifies a table; assigned by the schema when the table is created and never reused.
pub type TableId = uuid::Uuid;

/// Identifies a column within a table; assigned by the schema, never reused within a table, so
/// that a column dropped and re-added does not resurrect old data.
pub type ColumnId = u32;

/// Seconds since the Unix epoch (Cassandra's "local deletion time" and TTL expiry resolution).
pub type Seconds = i64;

/// A partition's address: its token on the ring and its serialized key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PartitionKey {
    /// Murmur3 token of `key`.
    pub token: i64,
    /// The partition key as Cassandra serializes it for hashing (a single component's raw bytes,
    /// or the composite form for several components).
    pub key: Vec<u8>,
}

/// When and at what time something was deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Deletion {
    /// Write timestamp of the deletion, microseconds. Data with a timestamp `<=` this is deleted.
    pub timestamp: i64,
    /// When the deletion was written on the coordinator, seconds since the epoch; tombstones older
    /// than `gc_grace_seconds` by this clock may be purged.
    pub local_deletion_time: Seconds,
}

/// Liveness of a row's primary key (Cassandra's "primary key liveness info"): written by INSERT,
/// not by UPDATE, so that a row inserted with only its key columns exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Liveness {
    /// Write timestamp, microseconds.
    pub timestamp: i64,
    /// TTL in seconds, 0 for none.
    pub ttl: i32,
    /// Absolute expiry, seconds since the epoch; meaningful only when `ttl > 0`.
    pub expires_at: Seconds,
}

/// One cell: a regular or static column's value, or one element of a non-frozen collection.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Cell {
    /// Write timestamp, microseconds.
    pub timestamp: i64,
    /// TTL in seconds, 0 for none.
    pub ttl: i32,
    /// For a live cell with a TTL: absolute expiry (seconds since the epoch). For a tombstone:
    /// its local deletion time. Otherwise 0.
    pub local_deletion_time: Seconds,
    /// The serialized value (native protocol form); `None` is a tombstone.
    pub value: Option<Vec<u8>>,
}

/// Address of a cell within a row: the column, and for a non-frozen collection element the
/// element's path (comparable-encoded map key or set element; for lists a timeuuid-like ordering
/// key chosen by the writer).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CellKey {
    /// The column.
    pub column: ColumnId,
    /// The element's path for a non-frozen collection element, `None` for a simple column.
    pub path: Option<Vec<u8>>,
}

/// What a write does to one row.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RowUpdate {
    /// Clustering bytes (empty: the only row of a table without clustering columns, or the static
    /// row of a table with clustering columns).
    pub clustering: Vec<u8>,
    /// Set by INSERT.
    pub liveness: Option<Liveness>,
    /// Row deletion (`DELETE FROM t WHERE <full primary key>`).
    pub deletion: Option<Deletion>,
    /// Cells written (values or tombstones).
    pub cells: Vec<(CellKey, Cell)>,
    /// Whole-collection deletions (`SET m = {...}` first deletes the previous elements; `DELETE m`).
    pub collection_deletions: Vec<(ColumnId, Deletion)>,
}

/// A deletion of every row whose clustering bytes fall in `[start, end]` per the bounds (never
/// the row with empty clustering bytes: see the module documentation). A range whose start is
/// after its end deletes nothing and is not stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RangeDeletion {
    /// Lower bound on clustering bytes.
    pub start: Bound<Vec<u8>>,
    /// Upper bound on clustering bytes.
    pub end: Bound<Vec<u8>>,
    /// The deletion applied to the rows in range.
    pub deletion: Deletion,
}

/// Everything one write does to one partition of one table. The unit of atomicity and isolation
/// on a replica.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mutation {
    /// The table written.
    pub table: TableId,
    /// The partition written.
    pub partition: PartitionKey,
    /// Deletion of the whole partition (`DELETE FROM t WHERE <partition key>`).
    pub partition_deletion: Option<Deletion>,
    /// Deletions of clustering ranges (`DELETE ... WHERE <partition key> AND c > ?`, or a
    /// clustering prefix).
    pub range_deletions: Vec<RangeDeletion>,
    /// Row writes and deletions.
    pub rows: Vec<RowUpdate>,
}

impl Mutation {
    /// When a purge may first find something this mutation left behind, as the time a table's
    /// `gc_grace_seconds` is counted from ([`Engine::purge`] removes it once `now - gc_grace`
    /// is past that time): `None` when nothing (plain writes replace their slot's previous
    /// version and leave nothing behind); [`Seconds::MIN`], at once, when it deletes anything
    /// but a single cell (the data it shadows can go at the next pass); else the earliest local
    /// deletion time of its cell tombstones and expiry of its TTLs.
    pub fn purge_from(&self) -> Option<Seconds> {
        let deletes = self.partition_deletion.is_some()
            || !self.range_deletions.is_empty()
            || self
                .rows
                .iter()
                .any(|row| row.deletion.is_some() || !row.collection_deletions.is_empty());
        if deletes {
            return Some(Seconds::MIN);
        }
        let liveness = self
            .rows
            .iter()
            .filter_map(|row| row.liveness.filter(Liveness::is_expiring))
            .map(|l| l.expires_at);
        let cells = self
            .rows
            .iter()
            .flat_map(|row| &row.cells)
            .filter(|(_, cell)| cell.is_tombstone() || cell.is_expiring())
            .map(|(_, cell)| cell.local_deletion_time);
        liveness.chain(cells).min()
    }
}

/// A range of clustering bytes: `(start, end)` bounds.
pub type ClusteringRange = (Bound<Vec<u8>>, Bound<Vec<u8>>);

/// One entry of the meta space: key and value.
pub type MetaEntry = (Vec<u8>, Vec<u8>);

/// Where a page of a meta scan under `prefix` starts: just after `after` when that sorts at or
/// after `prefix` (a cursor from the previous page), else at `prefix` itself.
pub(crate) fn meta_page_start(prefix: &[u8], after: Option<&[u8]>) -> Bound<Vec<u8>> {
    match after {
        Some(after) if after >= prefix => Bound::Excluded(after.to_vec()),
        _ => Bound::Included(prefix.to_vec()),
    }
}

/// Which rows of a partition to read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Slice {
    /// Clustering byte ranges, sorted and non-overlapping (engines also accept unsorted or
    /// overlapping ranges and read their union); empty means the whole partition.
    pub ranges: Vec<ClusteringRange>,
    /// Return the static row (empty clustering) in [`PartitionData::static_row`], whatever the
    /// ranges. When not set, the row with empty clustering is an ordinary row, returned in
    /// [`PartitionData::rows`] if the ranges include it: read a table without clustering columns
    /// this way.
    pub include_static: bool,
    /// Return rows in descending clustering-byte order.
    pub reversed: bool,
    /// Stop after this many *live* rows (at `now`), not counting the static row. Dead rows met
    /// before the limit (deletions, tombstones) are returned too.
    pub limit: Option<usize>,
}

impl Slice {
    /// The whole partition, in clustering order, static row included.
    pub fn all() -> Slice {
        Slice {
            ranges: Vec::new(),
            include_static: true,
            reversed: false,
            limit: None,
        }
    }
}

/// A row as read: merged, with shadowed data removed but the deletions themselves kept so the
/// result can be merged again with other replicas' answers.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Row {
    /// Clustering bytes (empty for the static row).
    pub clustering: Vec<u8>,
    /// Primary-key liveness, possibly expired (an expired liveness still supersedes older ones).
    pub liveness: Option<Liveness>,
    /// Row deletion, if newer than any partition or range deletion covering the row.
    pub deletion: Option<Deletion>,
    /// Cells in `CellKey` order, one version each; tombstones and expired cells included.
    pub cells: Vec<(CellKey, Cell)>,
    /// Collection deletions, by column.
    pub collection_deletions: Vec<(ColumnId, Deletion)>,
}

/// A partition as read (merged).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionData {
    /// The partition read.
    pub partition: PartitionKey,
    /// The partition deletion, if any.
    pub partition_deletion: Option<Deletion>,
    /// Range deletions that still shadow something or may shadow data on other replicas:
    /// normalized (disjoint, each with the strongest deletion over it, none implied by the
    /// partition deletion), clipped to the slice, in ascending order even for reversed slices.
    pub range_deletions: Vec<RangeDeletion>,
    /// The static row, if the slice asked for it and it has anything.
    pub static_row: Option<Row>,
    /// Rows in the slice's order (ascending, or descending when `reversed`).
    pub rows: Vec<Row>,
}

/// Where a scan over a table starts and stops, in ring order (by token, then key bytes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanRange {
    /// Start strictly after this partition (`None`: from the lowest token).
    pub after: Option<PartitionKey>,
    /// Stop after the last partition with token `<=` this (`None`: to the end of the ring).
    pub end_token: Option<i64>,
}

/// What a purge (compaction of expired data) removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PurgeStats {
    /// Values (live, expired or shadowed cells) and row liveness markers removed.
    pub cells_purged: u64,
    /// Deletions removed: cell tombstones, row, collection, range and partition deletions.
    pub tombstones_purged: u64,
    /// Deletions and expiring cells kept because they are not old enough yet: a later purge
    /// may remove them.
    pub waiting: u64,
    /// The earliest local deletion time or expiry among the `waiting` ones: the purge that
    /// runs once `now - gc_grace` is past it removes at least one of them.
    pub next: Option<Seconds>,
}

impl PurgeStats {
    /// Adds another partition's (or table's) figures to these.
    pub fn add(&mut self, other: PurgeStats) {
        self.cells_purged += other.cells_purged;
        self.tombstones_purged += other.tombstones_purged;
        self.waiting += other.waiting;
        self.next = earliest(self.next, other.next);
    }
}

/// Partitions per page of [`Engine::purge`].
pub const PURGE_PAGE: usize = 256;

/// What one page of a purge did ([`Engine::purge_page`]).
#[derive(Debug, Default)]
pub struct PurgePage {
    /// What it removed and kept.
    pub stats: PurgeStats,
    /// Where the next page starts (after this partition); `None` once the table is done.
    pub resume_after: Option<PartitionKey>,
    /// Bytes of stored data it read: what a throttle counts.
    pub bytes_read: u64,
    /// The first error of a partition it skipped because its data is corrupt.
    pub skipped: Option<StorageError>,
}

/// The sum of the pages of one purge walk ([`Engine::purge_page`]).
#[derive(Debug, Default)]
pub struct PurgeWalk {
    stats: PurgeStats,
    bytes_read: u64,
    skipped: Option<StorageError>,
}

impl PurgeWalk {
    /// Adds a page; returns where the next page starts, `None` once the table is done.
    pub fn add(&mut self, page: PurgePage) -> Option<PartitionKey> {
        self.stats.add(page.stats);
        self.bytes_read += page.bytes_read;
        self.skipped = self.skipped.take().or(page.skipped);
        page.resume_after
    }

    /// What the walk removed and kept, and the bytes it read; or the error of the first
    /// partition it skipped because its data is corrupt.
    pub fn finish(self) -> Result<(PurgeStats, u64), StorageError> {
        match self.skipped {
            Some(e) => Err(e),
            None => Ok((self.stats, self.bytes_read)),
        }
    }
}

/// The earlier of two optional times.
pub(crate) fn earliest(a: Option<Seconds>, b: Option<Seconds>) -> Option<Seconds> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An I/O or storage-library failure other than a full device.
    #[error("storage I/O error: {0}")]
    Io(String),
    /// Bytes read back from storage do not decode.
    #[error("corrupt data in storage: {0}")]
    Corrupt(String),
    /// The device is full: the write was not applied.
    #[error("disk full: {0}")]
    DiskFull(String),
    /// An earlier failure stopped the storage ([`FailStop`]): nothing is served any more.
    #[error("{0}")]
    Stopped(String),
}

/// A storage engine. Implementations are internally synchronized; every method may be called
/// from many threads at once. Methods are synchronous and fast (no network); callers that need
/// durability call [`Engine::flush`] (group commit is the caller's business).
pub trait Engine: Send + Sync + 'static {
    /// Stores a mutation. Atomic: after a crash either all of it is there or none of it, and
    /// concurrent reads of the partition see all of it or none of it.
    fn apply(&self, mutation: &Mutation) -> Result<(), StorageError>;

    /// Stores several mutations, each atomic as with [`Engine::apply`] (not all of them
    /// together). An engine may write them in fewer, larger storage operations, which is what
    /// makes hint replay, streaming and repair cheap per mutation; by default one at a time.
    fn apply_all(&self, mutations: &[Mutation]) -> Result<(), StorageError> {
        mutations.iter().try_for_each(|m| self.apply(m))
    }

    /// Reads the slice of one partition, merged. `None` if the engine holds nothing at all for
    /// the partition; an answer with no rows if it holds something, but nothing in the slice.
    /// `now` decides expiry (TTL) for the `limit` count.
    fn read_partition(
        &self,
        table: TableId,
        partition: &PartitionKey,
        slice: &Slice,
        now: Seconds,
    ) -> Result<Option<PartitionData>, StorageError>;

    /// Partitions of a table in ring order within `range`, each read with `slice`, at most
    /// `max_partitions` of them. Every partition the engine holds something for is returned
    /// (and counted), even if its answer has no live row, so that paging with `after` resumes
    /// where the page ended.
    fn scan(
        &self,
        table: TableId,
        range: &ScanRange,
        slice: &Slice,
        max_partitions: usize,
        now: Seconds,
    ) -> Result<Vec<PartitionData>, StorageError>;

    /// Removes every partition of a table.
    fn truncate(&self, table: TableId) -> Result<(), StorageError>;

    /// Makes every write applied so far durable (fsync). Blocking.
    fn flush(&self) -> Result<(), StorageError>;

    /// Makes every write applied so far durable in the engine's own files, so that opening it
    /// again has nothing to recover (an engine with a commit log drops it up to here). Blocking
    /// and slower than [`Engine::flush`]; for a clean shutdown.
    fn checkpoint(&self) -> Result<(), StorageError> {
        self.flush()
    }

    /// Removes data that can no longer matter: cells expired more than `gc_grace` seconds ago,
    /// tombstones older than `gc_grace`, and data they shadow.
    ///
    /// Precisely: a deletion or tombstone goes when `local_deletion_time < now - gc_grace`, an
    /// expiring cell or liveness when its expiry is `< now - gc_grace`; data shadowed by any
    /// deletion (purged or not) goes whatever its age. A younger tombstone stays and keeps
    /// shadowing older data that arrives late. Reads at `now` see the same live data before and
    /// after.
    ///
    /// A partition whose data is corrupt is skipped, the others purged; the first such error is
    /// returned at the end.
    fn purge(
        &self,
        table: TableId,
        now: Seconds,
        gc_grace: Seconds,
    ) -> Result<PurgeStats, StorageError> {
        let mut walk = PurgeWalk::default();
        let mut after = None;
        loop {
            after = walk.add(self.purge_page(table, after.as_ref(), PURGE_PAGE, now, gc_grace)?);
            if after.is_none() {
                return walk.finish().map(|(stats, _)| stats);
            }
        }
    }

    /// One page of [`Engine::purge`]: at most `max_partitions` partitions of `table`, in ring
    /// order from just after `after` (from the first when `None`), so that a caller can pace
    /// the walk and let other work run between pages.
    fn purge_page(
        &self,
        table: TableId,
        after: Option<&PartitionKey>,
        max_partitions: usize,
        now: Seconds,
        gc_grace: Seconds,
    ) -> Result<PurgePage, StorageError>;

    /// Node-local metadata: put, get, delete, and list by prefix (in key order).
    fn meta_put(&self, key: &[u8], value: &[u8]) -> Result<(), StorageError>;
    fn meta_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;
    fn meta_delete(&self, key: &[u8]) -> Result<(), StorageError>;
    /// Deletes several meta keys at once (atomically where the engine can).
    fn meta_delete_all(&self, keys: &[&[u8]]) -> Result<(), StorageError> {
        keys.iter().try_for_each(|k| self.meta_delete(k))
    }
    fn meta_scan_prefix(&self, prefix: &[u8]) -> Result<Vec<MetaEntry>, StorageError>;

    /// At most `limit` meta entries under `prefix` whose key sorts after `after` (from the first
    /// one when `after` is `None`), in key order: [`Engine::meta_scan_prefix`] in bounded pages,
    /// for spaces that may hold many or large values (the batchlog).
    fn meta_scan_prefix_after(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<MetaEntry>, StorageError>;

    /// Approximate bytes used on disk (0 for the in-memory engine).
    fn disk_size(&self) -> u64;
}
