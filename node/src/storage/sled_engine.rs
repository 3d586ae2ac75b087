//! `SledEngine`: the production storage engine, over the embedded sled database.
//!
//! ## Layout
//!
//! One sled database per node with two trees: `data` holds every table's data, `meta` holds the
//! node-local metadata as given. In `data`, a partition is a contiguous key range; its partition
//! deletion and range deletions sit at its start, before its rows, so a slice read finds them
//! with one point lookup and one short prefix scan, then walks only the key ranges of the
//! requested clustering slices (backwards for reversed reads), stopping at the limit.
//!
//! ## Keys (tree `data`)
//!
//! Every *atom* (the stored version of one slot: a cell, a row's liveness or deletion, a
//! collection deletion, a range or partition deletion) is one sled key. sled orders keys by
//! unsigned bytes, so the layout is chosen for that order to be ring order, then the order in
//! which a read wants things:
//!
//! ```text
//! partition prefix = table id (16 bytes, UUID big-endian)
//!                  | token (8 bytes: big-endian of token XOR 0x8000_0000_0000_0000)
//!                  | escape(partition key) 00 01
//! key = prefix 00                                  partition deletion
//!     | prefix 01 | pos(start) | pos(end)           range deletion
//!     | prefix 02 | escape(clustering) 00 01 | ...  row atoms:
//!                    00                               row deletion
//!                    01                               row liveness
//!                    02 | column (4 bytes BE)         collection deletion
//!                    03 | column (4 bytes BE) | 00    simple cell
//!                    03 | column (4 bytes BE) | 01 | path (raw, to the end)   collection element
//! pos = 00 (-inf) | 01 escape(v) 00 01 00 (before v) | 01 escape(v) 00 01 02 (after v) | 02 (+inf)
//! escape(bytes) = bytes with every 00 written as 00 FF
//! ```
//!
//! Flipping the token's sign bit makes big-endian byte order signed order. Escaping with a
//! `00 01` terminator keeps byte order and makes the encoding prefix-free: key `a` sorts before
//! `a\0` and `ab`, and no partition's prefix is a prefix of another's, so `scan_prefix(prefix)`
//! is exactly one partition and `prefix | FF` is an exclusive upper bound for it. Within a
//! partition the partition deletion comes first, then every range deletion (one short scan finds
//! them all), then rows in clustering order, each row's atoms together: a slice of rows is a key
//! range (`prefix 02 escape(v) 00 01` starts row `v`, `prefix 02 escape(v) 00 02` is just after
//! it), the static row (empty clustering) is the first row, and a row's cells come in `CellKey`
//! order. The column id makes a dropped and re-added column start empty.
//!
//! ## Values
//!
//! A value starts with a format version byte (currently 1), so the format can evolve; its kind
//! follows from the key.
//! Timestamps are 8 bytes big-endian; TTLs and seconds are zigzag LEB128 varints (usually one
//! byte: 0):
//!
//! ```text
//! deletion = 01 | timestamp | varint(local_deletion_time)
//! liveness = 01 | timestamp | varint(ttl) | varint(expires_at)
//! cell     = 01 | flags (bit 0: has value) | timestamp | varint(ttl) | varint(local_deletion_time) | value (to the end)
//! ```
//!
//! Anything that does not decode is reported as [`StorageError::Corrupt`], never a panic.
//!
//! ## Writes: one version per slot, atomic, isolated
//!
//! A mutation becomes a set of atoms. `apply` reads the current version of each atom's slot,
//! reconciles it with the new one (last write wins, [`super::merge`]), appends the mutation to the
//! commit log ([`super::commit_log`]) and writes the winners to sled with plain inserts. Atomicity
//! across a crash comes from the log: start-up replays it, completing a mutation sled holds only
//! part of (sled batches would give it too, but cost two synchronous log writes each). Slots whose
//! stored version already wins are not rewritten, so replaying a mutation (the commit log, hints,
//! repair) writes nothing.
//!
//! The alternative, blind writes with the timestamp in the key and the merge done by every read,
//! would spare the point lookups on write but make reads of frequently overwritten cells scan
//! every version until a purge. Keeping only the winner costs one lookup per written slot (a page
//! cache hit for hot data) and keeps reads proportional to the live data. Shadowing by partition,
//! range, row and collection deletions is still resolved at read time, and the shadowed data is
//! removed by [`Engine::purge`].
//!
//! The read-reconcile-write must not interleave with another write of the same slot, and a
//! multi-key read must not see half a mutation. Both are ensured by a fixed array of
//! reader-writer locks striped by partition: `apply` and `purge` take their partition's stripe
//! exclusively, reads take it shared. Writes to different partitions proceed in parallel (up to
//! the commit log's append lock, held for one `pwrite`).
//!
//! ## Truncate and purge
//!
//! `truncate` logs the truncation, then removes the table's key range (`table id` prefix) while
//! holding every stripe, so no read or write overlaps it; replay finishes a truncation a crash
//! interrupted, and keeps the table's earlier logged writes from coming back. `purge` walks the
//! table partition by partition, each under its stripe: it loads the partition's atoms, asks the
//! shared purge rules which to drop (see [`Engine::purge`]), logs the keys and removes them.
//!
//! ## Errors
//!
//! sled and I/O errors become [`StorageError::Io`], except a full device (`ENOSPC`) which becomes
//! [`StorageError::DiskFull`]; bytes that do not decode become [`StorageError::Corrupt`]. A
//! corrupt stored version of a slot makes writes to that slot fail rather than silently replace
//! it.

use std::collections::hash_map::DefaultHasher;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::io;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use super::commit_log::{replay_segment, CommitLog, Record, RecordRef};
use super::merge::{Pos, RowAtoms};
use super::partition::{
    mutation_atoms, AtomKey, AtomValue, PartitionState, ReadAssembler, SlicePlan,
};
use super::sled_format::{
    atom_key, decode_atom_key, decode_partition, decode_value, encode_token, encode_value,
    partition_deletion_key, partition_prefix, prefix_successor, ranges_section, row_end, row_start,
    rows_section, table_prefix,
};
use super::{
    Engine, MetaEntry, Mutation, PartitionData, PartitionKey, PurgePage, PurgeStats, ScanRange,
    Seconds, Slice, StorageError, TableId,
};

/// The commit log's directory, inside the database's.
pub const COMMITLOG_DIR: &str = "commitlog";

/// Number of partition lock stripes.
const STRIPES: usize = 64;

/// Bytes of mutations (roughly) written in one sled batch by `apply_all`.
const APPLY_BATCH_BYTES: usize = 1 << 20;

/// A rough size of a mutation's atoms (keys and values), for cutting `apply_all` batches.
fn mutation_size(mutation: &Mutation) -> usize {
    const PER_ATOM: usize = 32;
    let rows: usize = mutation
        .rows
        .iter()
        .map(|r| {
            r.clustering.len()
                + PER_ATOM
                + r.cells
                    .iter()
                    .map(|(_, c)| PER_ATOM + c.value.as_ref().map_or(0, Vec::len))
                    .sum::<usize>()
                + r.collection_deletions.len() * PER_ATOM
        })
        .sum();
    mutation.partition.key.len() + PER_ATOM * (1 + mutation.range_deletions.len()) + rows
}

/// Keys removed per batch by `truncate`.
const TRUNCATE_BATCH: usize = 1024;

/// Raw OS error number of "no space left on device" on Linux and macOS.
const ENOSPC: i32 = 28;

/// Seal the commit log and flush sled once the active segment holds this many bytes...
const CHECKPOINT_BYTES: u64 = 8 << 20;
/// ... or once this much time has passed with something in it.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(30);
/// How often the checkpoint thread looks at the log.
const CHECKPOINT_POLL: Duration = Duration::from_millis(200);

/// The sled-backed engine. Cheap to share behind an `Arc`; every method is thread-safe.
pub struct SledEngine {
    db: sled::Db,
    data: sled::Tree,
    meta: sled::Tree,
    stripes: Box<[RwLock<()>]>,
    space: SpaceGuard,
    durability: Arc<Durability>,
    /// Keeps meta changes in the commit log in the order sled sees them.
    meta_order: Mutex<()>,
    /// The checkpoint thread: dropping the sender stops it.
    checkpointer: Option<(std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>)>,
}

/// The commit log and what a checkpoint needs, shared with the checkpoint thread.
struct Durability {
    db: sled::Db,
    log: CommitLog,
    /// Held (shared) from a change's append to the log until sled has it, and exclusively while
    /// a checkpoint seals the log: so every change in a sealed segment is in sled when the
    /// checkpoint flushes sled.
    gate: RwLock<()>,
    /// One checkpoint at a time.
    checkpointing: Mutex<()>,
}

impl Durability {
    /// Seals the log, makes sled durable, and deletes the sealed segments.
    fn checkpoint(&self) -> Result<(), StorageError> {
        let _one = self
            .checkpointing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let sealed = {
            let _gate = self.gate.write().unwrap_or_else(PoisonError::into_inner);
            self.log.seal()?
        };
        self.db.flush().map_err(map_sled_error)?;
        self.log.delete_sealed(sealed)
    }

    fn append(
        &self,
        record: &RecordRef<'_>,
    ) -> Result<std::sync::RwLockReadGuard<'_, ()>, StorageError> {
        let gate = self.gate.read().unwrap_or_else(PoisonError::into_inner);
        self.log.append(record)?;
        Ok(gate)
    }
}

/// Checkpoints when the log has grown enough or aged enough, until `stop` sends or closes.
fn checkpoint_loop(durability: Arc<Durability>, stop: std::sync::mpsc::Receiver<()>) {
    let mut last = Instant::now();
    loop {
        match stop.recv_timeout(CHECKPOINT_POLL) {
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        let active = durability.log.active_bytes();
        if active >= CHECKPOINT_BYTES || (active > 0 && last.elapsed() >= CHECKPOINT_INTERVAL) {
            last = Instant::now();
            if let Err(e) = durability.checkpoint() {
                // The segments stay and are replayed at the next start; nothing is lost.
                tracing::error!(error = %e, "commit log checkpoint failed");
            }
        }
    }
}

/// How long a reading of the file system's free space is trusted.
const SPACE_CHECK_EVERY: Duration = Duration::from_millis(100);

/// Refuses writes while the file system holding the database has less than `min_free` bytes
/// available, so that sled never meets a full disk: sled 0.34 does not recover from a failed
/// log write (every later operation fails until the process restarts), while refusing early
/// keeps reads working and lets writes resume as soon as space returns.
struct SpaceGuard {
    path: PathBuf,
    min_free: u64,
    /// When free space was last read, and what it was.
    last: Mutex<Option<(Instant, u64)>>,
}

impl SpaceGuard {
    fn check(&self) -> Result<(), StorageError> {
        if self.min_free == 0 {
            return Ok(());
        }
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let free = match *last {
            Some((at, free)) if at.elapsed() < SPACE_CHECK_EVERY => free,
            _ => {
                // Cannot tell (an exotic file system): do not refuse writes on a guess.
                let free = available_bytes(&self.path).unwrap_or(u64::MAX);
                *last = Some((Instant::now(), free));
                free
            }
        };
        if free < self.min_free {
            return Err(StorageError::DiskFull(format!(
                "{free} bytes free on the file system of {}, under min_free_disk_space ({} \
                 bytes): writes are refused until space returns",
                self.path.display(),
                self.min_free
            )));
        }
        Ok(())
    }
}

/// Bytes available to this process on the file system holding `path` (`statvfs`).
fn available_bytes(path: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `statvfs` only writes into the zero-initialised struct we pass, and `c_path` is a
    // valid NUL-terminated string for the duration of the call.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // Both are u64 on Linux, narrower elsewhere.
    #[allow(clippy::useless_conversion)]
    Ok(u64::from(stat.f_bavail).saturating_mul(u64::from(stat.f_frsize)))
}

impl std::fmt::Debug for SledEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledEngine").finish_non_exhaustive()
    }
}

/// Maps an I/O error, recognizing a full device.
pub(crate) fn map_io_error(e: &io::Error) -> StorageError {
    if e.kind() == io::ErrorKind::StorageFull || e.raw_os_error() == Some(ENOSPC) {
        StorageError::DiskFull(e.to_string())
    } else {
        StorageError::Io(e.to_string())
    }
}

/// Maps a sled error.
pub(crate) fn map_sled_error(e: sled::Error) -> StorageError {
    match e {
        sled::Error::Io(io) => map_io_error(&io),
        sled::Error::Corruption { .. } => StorageError::Corrupt(e.to_string()),
        other => StorageError::Io(other.to_string()),
    }
}

fn kind_mismatch() -> StorageError {
    StorageError::Corrupt("stored value of the wrong kind for its key".into())
}

impl SledEngine {
    /// Opens (or creates) the database in directory `path`, with a page cache of
    /// `cache_capacity_bytes`, and replays its commit log (`path/commitlog`).
    pub fn open(path: &Path, cache_capacity_bytes: u64) -> Result<SledEngine, StorageError> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(cache_capacity_bytes)
            .open()
            .map_err(map_sled_error)?;
        let data = db.open_tree("data").map_err(map_sled_error)?;
        let meta = db.open_tree("meta").map_err(map_sled_error)?;
        let stripes = (0..STRIPES).map(|_| RwLock::new(())).collect();
        let (log, old_segments) = CommitLog::open(&path.join(COMMITLOG_DIR))?;
        let mut engine = SledEngine {
            durability: Arc::new(Durability {
                db: db.clone(),
                log,
                gate: RwLock::new(()),
                checkpointing: Mutex::new(()),
            }),
            db,
            data,
            meta,
            stripes,
            space: SpaceGuard {
                path: path.to_path_buf(),
                min_free: 0,
                last: Mutex::new(None),
            },
            meta_order: Mutex::new(()),
            checkpointer: None,
        };
        engine.replay(&old_segments)?;
        let (stop, stopped) = std::sync::mpsc::channel();
        let durability = engine.durability.clone();
        let thread = std::thread::Builder::new()
            .name("commitlog-checkpoint".into())
            .spawn(move || checkpoint_loop(durability, stopped))
            .map_err(|e| StorageError::Io(format!("cannot start the checkpoint thread: {e}")))?;
        engine.checkpointer = Some((stop, thread));
        Ok(engine)
    }

    /// Replays the commit log segments left by the previous run, then makes their changes
    /// durable in sled and deletes them.
    fn replay(&self, segments: &[PathBuf]) -> Result<(), StorageError> {
        if segments.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let mut records = 0;
        let mut skipped_corrupt = 0;
        for path in segments {
            let report = replay_segment(path, |record| {
                match self.replay_record(record) {
                    // A damaged stored value is reported when it is read (the node refuses
                    // to serve it then); it must not keep the rest of the log from replaying.
                    Err(StorageError::Corrupt(e)) => {
                        skipped_corrupt += 1;
                        tracing::error!(error = %e, segment = %path.display(), "commit log replay met corrupt stored data; the record was not applied");
                        Ok(())
                    }
                    other => other,
                }
            })?;
            records += report.records;
            if let Some(reason) = report.stopped {
                tracing::warn!(
                    segment = %path.display(),
                    records = report.records,
                    skipped_bytes = report.skipped_bytes,
                    "commit log replay stopped before the end of the segment at {reason}: \
                     a write the process or the machine did not finish (never acknowledged \
                     unless its segment was damaged afterwards)"
                );
            }
        }
        self.db.flush().map_err(map_sled_error)?;
        let last = self.durability.log.active_number() - 1;
        self.durability.log.delete_sealed(last)?;
        tracing::info!(
            segments = segments.len(),
            records,
            skipped_corrupt,
            took_ms = started.elapsed().as_millis() as u64,
            "replayed the commit log"
        );
        Ok(())
    }

    fn replay_record(&self, record: Record) -> Result<(), StorageError> {
        match record {
            Record::Mutations(mutations) => self.apply_batch_of(&mutations, false),
            Record::MetaPut(key, value) => {
                self.meta.insert(key, value).map_err(map_sled_error)?;
                Ok(())
            }
            Record::MetaDelete(keys) => {
                for key in keys {
                    self.meta.remove(key).map_err(map_sled_error)?;
                }
                Ok(())
            }
            Record::Truncate(table) => self.truncate_unlogged(table),
            Record::RemoveData(keys) => {
                for key in keys {
                    self.data.remove(key).map_err(map_sled_error)?;
                }
                Ok(())
            }
        }
    }

    /// Removes a table's keys; the caller holds every stripe (or is the replay).
    fn truncate_unlogged(&self, table: TableId) -> Result<(), StorageError> {
        let prefix = table_prefix(table);
        loop {
            let mut batch = sled::Batch::default();
            let mut count = 0;
            for item in self.data.scan_prefix(&prefix).keys().take(TRUNCATE_BATCH) {
                batch.remove(item.map_err(map_sled_error)?);
                count += 1;
            }
            if count == 0 {
                return Ok(());
            }
            self.data.apply_batch(batch).map_err(map_sled_error)?;
        }
    }

    /// Bytes in the commit log (segments not yet checkpointed).
    pub fn commitlog_bytes(&self) -> u64 {
        self.durability.log.bytes()
    }

    /// Refuses writes ([`StorageError::DiskFull`]) while the file system holding the database
    /// has less than `bytes` available (`min_free_disk_space`; 0: never).
    pub fn with_min_free_space(mut self, bytes: u64) -> SledEngine {
        self.space.min_free = bytes;
        self
    }

    fn meta_order(&self) -> std::sync::MutexGuard<'_, ()> {
        self.meta_order
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn stripe(&self, table: TableId, partition: &PartitionKey) -> &RwLock<()> {
        &self.stripes[self.stripe_index(table, partition)]
    }

    fn stripe_index(&self, table: TableId, partition: &PartitionKey) -> usize {
        let mut h = DefaultHasher::new();
        table.hash(&mut h);
        partition.hash(&mut h);
        (h.finish() as usize) % self.stripes.len()
    }

    /// Applies `mutations` together: one winner per slot across all of them, then
    /// last-write-wins against what is stored; the winners go to the commit log (when `log`;
    /// replay does not log again) and then to sled. The stripes of every partition involved are
    /// held (taken in index order, so two such calls cannot deadlock) from the reads to the last
    /// insert, so concurrent reads see each mutation whole or not at all.
    fn apply_batch_of(&self, mutations: &[Mutation], log: bool) -> Result<(), StorageError> {
        self.space.check()?;
        let mut writes: BTreeMap<Vec<u8>, (AtomKey, AtomValue)> = BTreeMap::new();
        let mut stripes = Vec::with_capacity(mutations.len());
        for mutation in mutations {
            let prefix = partition_prefix(mutation.table, &mutation.partition);
            for (key, value) in mutation_atoms(mutation) {
                let k = atom_key(&prefix, &key);
                match writes.get_mut(&k) {
                    Some((_, existing)) => {
                        if let Some(winner) = existing.reconcile(&value) {
                            *existing = winner;
                        }
                    }
                    None => {
                        writes.insert(k, (key, value));
                    }
                }
            }
            stripes.push(self.stripe_index(mutation.table, &mutation.partition));
        }
        if writes.is_empty() {
            return Ok(());
        }
        stripes.sort_unstable();
        stripes.dedup();
        let _guards: Vec<_> = stripes
            .iter()
            .map(|&i| {
                self.stripes[i]
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
            })
            .collect();
        let mut inserts = Vec::with_capacity(writes.len());
        for (k, (key, value)) in writes {
            let winner = match self.data.get(&k).map_err(map_sled_error)? {
                Some(stored) => {
                    let stored = decode_value(&key, &stored)?;
                    let winner = stored.reconcile(&value).ok_or_else(kind_mismatch)?;
                    if winner == stored {
                        continue;
                    }
                    winner
                }
                None => value,
            };
            inserts.push((k, encode_value(&winner)));
        }
        if inserts.is_empty() {
            return Ok(());
        }
        let _gate = if log {
            Some(self.durability.append(&RecordRef::Mutations(mutations))?)
        } else {
            None
        };
        for (k, v) in inserts {
            self.data.insert(k, v).map_err(map_sled_error)?;
        }
        Ok(())
    }

    /// The first key in `[lower, upper)`, if any.
    fn first_key(
        &self,
        lower: &[u8],
        upper: Option<&[u8]>,
    ) -> Result<Option<sled::IVec>, StorageError> {
        if upper.is_some_and(|u| lower >= u) {
            return Ok(None);
        }
        let hi = match upper {
            Some(u) => Bound::Excluded(u),
            None => Bound::Unbounded,
        };
        match self
            .data
            .range::<&[u8], _>((Bound::Included(lower), hi))
            .next()
        {
            Some(item) => Ok(Some(item.map_err(map_sled_error)?.0)),
            None => Ok(None),
        }
    }

    /// Reads a slice of the partition with key prefix `prefix`; the caller holds its stripe.
    fn read_locked(
        &self,
        prefix: &[u8],
        partition: &PartitionKey,
        slice: &Slice,
        now: Seconds,
    ) -> Result<Option<PartitionData>, StorageError> {
        let partition_deletion = match self
            .data
            .get(partition_deletion_key(prefix))
            .map_err(map_sled_error)?
        {
            Some(bytes) => match decode_value(&AtomKey::PartitionDeletion, &bytes)? {
                AtomValue::Deletion(d) => Some(d),
                _ => return Err(kind_mismatch()),
            },
            None => None,
        };
        let mut ranges = Vec::new();
        for item in self.data.scan_prefix(ranges_section(prefix)) {
            let (k, v) = item.map_err(map_sled_error)?;
            let key = decode_atom_key(&k[prefix.len()..])?;
            match (decode_value(&key, &v)?, key) {
                (AtomValue::Deletion(d), AtomKey::RangeDeletion(s, e)) => ranges.push((s, e, d)),
                _ => return Err(kind_mismatch()),
            }
        }

        let plan = SlicePlan::new(slice);
        let mut asm = ReadAssembler::new(partition.clone(), partition_deletion, ranges, &plan, now);
        if plan.include_static {
            let mut atoms = RowAtoms::default();
            for item in self.data.scan_prefix(row_start(prefix, &[])) {
                let (k, v) = item.map_err(map_sled_error)?;
                let key = decode_atom_key(&k[prefix.len()..])?;
                let value = decode_value(&key, &v)?;
                atoms.merge_atom(key, value).map_err(|_| kind_mismatch())?;
            }
            if !atoms.is_empty() {
                asm.set_static(&atoms);
            }
        }

        let rows_end = {
            let mut end = rows_section(prefix);
            if let Some(last) = end.last_mut() {
                *last += 1;
            }
            end
        };
        'ranges: for (lo, hi) in plan.ordered_intervals() {
            if asm.is_done() {
                break;
            }
            let lo_key = match lo {
                Pos::Lowest => rows_section(prefix),
                Pos::Before(v) => row_start(prefix, v),
                Pos::After(v) => row_end(prefix, v),
                Pos::Highest => continue,
            };
            let hi_key = match hi {
                Pos::Highest => rows_end.clone(),
                Pos::Before(v) => row_start(prefix, v),
                Pos::After(v) => row_end(prefix, v),
                Pos::Lowest => continue,
            };
            if lo_key >= hi_key {
                continue;
            }
            let iter = self.data.range(lo_key..hi_key);
            let iter: Box<dyn Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>> =
                if plan.reversed {
                    Box::new(iter.rev())
                } else {
                    Box::new(iter)
                };
            let mut current: Option<(Vec<u8>, RowAtoms)> = None;
            for item in iter {
                let (k, v) = item.map_err(map_sled_error)?;
                let key = decode_atom_key(&k[prefix.len()..])?;
                let value = decode_value(&key, &v)?;
                let clustering = key.clustering().ok_or_else(kind_mismatch)?;
                if plan.include_static && clustering.is_empty() {
                    continue;
                }
                if current
                    .as_ref()
                    .is_none_or(|(c, _)| c.as_slice() != clustering)
                {
                    if let Some((c, atoms)) = current.take() {
                        if !asm.push_row(&c, &atoms) {
                            break 'ranges;
                        }
                    }
                    current = Some((clustering.to_vec(), RowAtoms::default()));
                }
                if let Some((_, atoms)) = current.as_mut() {
                    atoms.merge_atom(key, value).map_err(|_| kind_mismatch())?;
                }
            }
            if let Some((c, atoms)) = current.take() {
                if !asm.push_row(&c, &atoms) {
                    break 'ranges;
                }
            }
        }
        let data = asm.finish();
        // Only an answer with nothing in it needs to know whether the partition exists at all
        // (it may hold data outside the slice): one more seek, but not on the common path.
        if data.is_empty()
            && self
                .data
                .scan_prefix(prefix)
                .next()
                .transpose()
                .map_err(map_sled_error)?
                .is_none()
        {
            return Ok(None);
        }
        Ok(Some(data))
    }

    /// Purges one partition; the caller holds its stripe exclusively.
    fn purge_locked(
        &self,
        prefix: &[u8],
        now: Seconds,
        gc_grace: Seconds,
    ) -> Result<(PurgeStats, u64), StorageError> {
        let mut state = PartitionState::default();
        let mut bytes = 0u64;
        for item in self.data.scan_prefix(prefix) {
            let (k, v) = item.map_err(map_sled_error)?;
            bytes += (k.len() + v.len()) as u64;
            let key = decode_atom_key(&k[prefix.len()..])?;
            let value = decode_value(&key, &v)?;
            state.merge_atom(key, value).map_err(|_| kind_mismatch())?;
        }
        let (stats, removed) = state.plan_purge(now, gc_grace);
        if !removed.is_empty() {
            let keys: Vec<Vec<u8>> = removed.iter().map(|key| atom_key(prefix, key)).collect();
            // Logged, so that a replay after a crash does not bring back what the purge removed.
            let _gate = self.durability.append(&RecordRef::RemoveData(
                keys.iter().map(Vec::as_slice).collect(),
            ))?;
            for key in keys {
                self.data.remove(key).map_err(map_sled_error)?;
            }
        }
        Ok((stats, bytes))
    }
}

impl Engine for SledEngine {
    fn apply(&self, mutation: &Mutation) -> Result<(), StorageError> {
        self.apply_all(std::slice::from_ref(mutation))
    }

    fn apply_all(&self, mutations: &[Mutation]) -> Result<(), StorageError> {
        // Whole mutations per sled batch, up to APPLY_BATCH_BYTES of atoms each: one batch per
        // mutation costs a sled log reservation and a tree-wide lock each, which is what bounds
        // hint replay and streaming when mutations are small.
        let mut start = 0;
        while start < mutations.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < mutations.len() && (end == start || bytes < APPLY_BATCH_BYTES) {
                bytes += mutation_size(&mutations[end]);
                end += 1;
            }
            self.apply_batch_of(&mutations[start..end], true)?;
            start = end;
        }
        Ok(())
    }

    fn read_partition(
        &self,
        table: TableId,
        partition: &PartitionKey,
        slice: &Slice,
        now: Seconds,
    ) -> Result<Option<PartitionData>, StorageError> {
        let prefix = partition_prefix(table, partition);
        let _guard = self
            .stripe(table, partition)
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        self.read_locked(&prefix, partition, slice, now)
    }

    fn scan(
        &self,
        table: TableId,
        range: &ScanRange,
        slice: &Slice,
        max_partitions: usize,
        now: Seconds,
    ) -> Result<Vec<PartitionData>, StorageError> {
        let table_start = table_prefix(table);
        let mut lower = match &range.after {
            Some(after) => {
                let mut p = partition_prefix(table, after);
                p.push(0xFF);
                p
            }
            None => table_start.clone(),
        };
        let upper = match range.end_token {
            Some(end) => {
                let mut p = table_start.clone();
                p.extend_from_slice(&encode_token(end));
                prefix_successor(&p)
            }
            None => prefix_successor(&table_start),
        };
        let mut out = Vec::new();
        while out.len() < max_partitions {
            let Some(key) = self.first_key(&lower, upper.as_deref())? else {
                break;
            };
            let (_, partition, used) = decode_partition(&key)?;
            let prefix = &key[..used];
            {
                let _guard = self
                    .stripe(table, &partition)
                    .read()
                    .unwrap_or_else(PoisonError::into_inner);
                if let Some(data) = self.read_locked(prefix, &partition, slice, now)? {
                    out.push(data);
                }
            }
            lower = prefix.to_vec();
            lower.push(0xFF);
        }
        Ok(out)
    }

    fn truncate(&self, table: TableId) -> Result<(), StorageError> {
        // Every stripe, always in the same order: no read or write of any partition overlaps the
        // truncation, so none sees (or leaves) half a mutation. Logged first: a crash in the
        // middle, or before the next checkpoint, is finished by replay (which also keeps the
        // log's earlier writes to the table from coming back).
        let _guards: Vec<_> = self
            .stripes
            .iter()
            .map(|s| s.write().unwrap_or_else(PoisonError::into_inner))
            .collect();
        let _gate = self.durability.append(&RecordRef::Truncate(table))?;
        self.truncate_unlogged(table)
    }

    fn flush(&self) -> Result<(), StorageError> {
        self.durability.log.sync()
    }

    fn checkpoint(&self) -> Result<(), StorageError> {
        self.durability.checkpoint()
    }

    fn purge_page(
        &self,
        table: TableId,
        after: Option<&PartitionKey>,
        max_partitions: usize,
        now: Seconds,
        gc_grace: Seconds,
    ) -> Result<PurgePage, StorageError> {
        let table_start = table_prefix(table);
        let upper = prefix_successor(&table_start);
        let mut lower = match after {
            Some(after) => {
                let mut p = partition_prefix(table, after);
                p.push(0xFF);
                p
            }
            None => table_start,
        };
        let mut page = PurgePage::default();
        let mut visited = 0;
        while visited < max_partitions.max(1) {
            let Some(key) = self.first_key(&lower, upper.as_deref())? else {
                page.resume_after = None; // the end of the table
                return Ok(page);
            };
            let (_, partition, used) = decode_partition(&key)?;
            let prefix = &key[..used];
            let result = {
                let _guard = self
                    .stripe(table, &partition)
                    .write()
                    .unwrap_or_else(PoisonError::into_inner);
                self.purge_locked(prefix, now, gc_grace)
            };
            match result {
                Ok((stats, bytes)) => {
                    page.stats.add(stats);
                    page.bytes_read += bytes;
                }
                // A corrupt partition must not stop the purge of the others; report it at the end.
                Err(e @ StorageError::Corrupt(_)) => {
                    tracing::warn!(%table, token = partition.token, error = %e, "purge skipped a corrupt partition");
                    page.skipped.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
            lower = prefix.to_vec();
            lower.push(0xFF);
            visited += 1;
            page.resume_after = Some(partition);
        }
        Ok(page)
    }

    fn meta_put(&self, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        self.space.check()?;
        let _order = self.meta_order();
        let _gate = self.durability.append(&RecordRef::MetaPut(key, value))?;
        self.meta.insert(key, value).map_err(map_sled_error)?;
        Ok(())
    }

    fn meta_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self
            .meta
            .get(key)
            .map_err(map_sled_error)?
            .map(|v| v.to_vec()))
    }

    fn meta_delete(&self, key: &[u8]) -> Result<(), StorageError> {
        self.meta_delete_all(&[key])
    }

    fn meta_delete_all(&self, keys: &[&[u8]]) -> Result<(), StorageError> {
        let _order = self.meta_order();
        let _gate = self
            .durability
            .append(&RecordRef::MetaDelete(keys.to_vec()))?;
        for key in keys {
            self.meta.remove(*key).map_err(map_sled_error)?;
        }
        Ok(())
    }

    fn meta_scan_prefix(&self, prefix: &[u8]) -> Result<Vec<MetaEntry>, StorageError> {
        self.meta
            .scan_prefix(prefix)
            .map(|item| {
                item.map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .map_err(map_sled_error)
            })
            .collect()
    }

    fn meta_scan_prefix_after(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<MetaEntry>, StorageError> {
        let start = crate::storage::meta_page_start(prefix, after);
        let mut out = Vec::new();
        for item in self.meta.range((start, Bound::Unbounded)) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item.map_err(map_sled_error)?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    fn disk_size(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0) + self.durability.log.bytes()
    }
}

impl Drop for SledEngine {
    /// Stops the checkpoint thread and checkpoints once more, so that a clean close leaves
    /// nothing to replay.
    fn drop(&mut self) {
        if let Some((stop, thread)) = self.checkpointer.take() {
            drop(stop);
            let _ = thread.join();
        }
        if let Err(e) = self.durability.checkpoint() {
            tracing::error!(error = %e, "final commit log checkpoint failed; the log is replayed at the next start");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{Cell, CellKey, RowUpdate};

    fn engine() -> (tempfile::TempDir, SledEngine) {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = SledEngine::open(dir.path(), 8 << 20).expect("open");
        (dir, engine)
    }

    fn write_cell(engine: &SledEngine, table: TableId, pk: &PartitionKey) {
        let m = Mutation {
            table,
            partition: pk.clone(),
            partition_deletion: None,
            range_deletions: Vec::new(),
            rows: vec![RowUpdate {
                clustering: b"c".to_vec(),
                cells: vec![(
                    CellKey {
                        column: 1,
                        path: None,
                    },
                    Cell::live(1, b"v".to_vec()),
                )],
                ..RowUpdate::default()
            }],
        };
        engine.apply(&m).expect("apply");
    }

    #[test]
    fn writes_are_refused_below_min_free_space_and_reads_go_on() {
        let (dir, engine) = engine();
        let pk = PartitionKey {
            token: 7,
            key: b"k".to_vec(),
        };
        write_cell(&engine, TableId::from_u128(1), &pk);
        engine.meta_put(b"m", b"1").expect("meta_put");
        assert!(available_bytes(dir.path()).expect("statvfs") > 0);

        // No file system has this much free: every write is refused, with the reason.
        let engine = engine.with_min_free_space(u64::MAX);
        let m = Mutation {
            table: TableId::from_u128(1),
            partition: pk.clone(),
            partition_deletion: None,
            range_deletions: Vec::new(),
            rows: Vec::new(),
        };
        match engine.apply(&m) {
            Err(StorageError::DiskFull(why)) => {
                assert!(why.contains("min_free_disk_space"), "{why}")
            }
            other => panic!("expected DiskFull, got {other:?}"),
        }
        assert!(matches!(
            engine.meta_put(b"m", b"2"),
            Err(StorageError::DiskFull(_))
        ));
        // Reads and deletes (which free space) still work.
        let read = engine
            .read_partition(TableId::from_u128(1), &pk, &Slice::all(), 0)
            .expect("read");
        assert_eq!(read.map(|p| p.rows.len()), Some(1));
        assert_eq!(
            engine.meta_get(b"m").expect("meta_get"),
            Some(b"1".to_vec())
        );
        engine.meta_delete(b"m").expect("meta_delete");

        // Space back (here: the bound lifted): writes go through again.
        let engine = engine.with_min_free_space(0);
        write_cell(&engine, TableId::from_u128(1), &pk);
        engine.meta_put(b"m", b"3").expect("meta_put");
    }

    #[test]
    fn disk_full_is_recognized() {
        let e = sled::Error::Io(io::Error::from_raw_os_error(ENOSPC));
        assert!(matches!(map_sled_error(e), StorageError::DiskFull(_)));
        let e = sled::Error::Io(io::Error::new(io::ErrorKind::StorageFull, "full"));
        assert!(matches!(map_sled_error(e), StorageError::DiskFull(_)));
        let e = sled::Error::Io(io::Error::new(io::ErrorKind::PermissionDenied, "no"));
        assert!(matches!(map_sled_error(e), StorageError::Io(_)));
    }

    #[test]
    fn corrupt_values_are_errors_not_panics() {
        let (_dir, engine) = engine();
        let table = TableId::from_u128(7);
        let pk = PartitionKey {
            token: 3,
            key: b"k".to_vec(),
        };
        write_cell(&engine, table, &pk);
        let prefix = partition_prefix(table, &pk);
        let key = atom_key(
            &prefix,
            &AtomKey::Cell(
                b"c".to_vec(),
                CellKey {
                    column: 1,
                    path: None,
                },
            ),
        );
        engine.data.insert(key, &[9u8, 9, 9][..]).expect("insert");
        let read = engine.read_partition(table, &pk, &Slice::all(), 0);
        assert!(matches!(read, Err(StorageError::Corrupt(_))), "{read:?}");
        let write = engine.apply(&Mutation {
            table,
            partition: pk.clone(),
            partition_deletion: None,
            range_deletions: Vec::new(),
            rows: vec![RowUpdate {
                clustering: b"c".to_vec(),
                cells: vec![(
                    CellKey {
                        column: 1,
                        path: None,
                    },
                    Cell::live(2, b"w".to_vec()),
                )],
                ..RowUpdate::default()
            }],
        });
        assert!(matches!(write, Err(StorageError::Corrupt(_))));
        assert!(matches!(
            engine.purge(table, 0, 0),
            Err(StorageError::Corrupt(_))
        ));
    }

    #[test]
    fn corrupt_keys_are_errors_not_panics() {
        let (_dir, engine) = engine();
        let table = TableId::from_u128(7);
        let pk = PartitionKey {
            token: 3,
            key: b"k".to_vec(),
        };
        write_cell(&engine, table, &pk);
        let mut key = partition_prefix(table, &pk);
        key.extend_from_slice(&[0x02, b'c', 0x00, 0x01, 0x09]);
        engine.data.insert(key, &[1u8][..]).expect("insert");
        assert!(matches!(
            engine.read_partition(table, &pk, &Slice::all(), 0),
            Err(StorageError::Corrupt(_))
        ));
        // A key of the table too short to hold a partition.
        engine
            .data
            .insert(table_prefix(table), &[1u8][..])
            .expect("insert");
        let scan = engine.scan(
            table,
            &ScanRange {
                after: None,
                end_token: None,
            },
            &Slice::all(),
            10,
            0,
        );
        assert!(matches!(scan, Err(StorageError::Corrupt(_))));
    }

    #[test]
    fn replaying_a_mutation_writes_nothing() {
        let (_dir, engine) = engine();
        let table = TableId::from_u128(1);
        let pk = PartitionKey {
            token: 0,
            key: b"k".to_vec(),
        };
        write_cell(&engine, table, &pk);
        let before = engine.data.checksum().expect("checksum");
        write_cell(&engine, table, &pk);
        assert_eq!(engine.data.checksum().expect("checksum"), before);
        assert_eq!(engine.data.len(), 1);
    }

    fn read_cell(engine: &SledEngine, table: TableId, pk: &PartitionKey) -> Option<PartitionData> {
        engine
            .read_partition(table, pk, &Slice::all(), 0)
            .expect("read")
    }

    fn copy_log(from: &Path, to: &Path) {
        let (from, to) = (from.join(COMMITLOG_DIR), to.join(COMMITLOG_DIR));
        std::fs::create_dir_all(&to).expect("mkdir");
        for entry in std::fs::read_dir(&from).expect("read_dir") {
            let entry = entry.expect("entry");
            std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
        }
    }

    /// Everything the engine changes goes to the commit log first: a fresh database given only
    /// the log of another comes out with the same data, meta entries, truncations and purges,
    /// and a torn last record is left out without losing the ones before it.
    #[test]
    fn the_commit_log_alone_rebuilds_every_change() {
        let (dir, engine) = engine();
        let (t, u) = (TableId::from_u128(1), TableId::from_u128(2));
        let pk = |k: &[u8]| PartitionKey {
            token: k[0] as i64,
            key: k.to_vec(),
        };
        write_cell(&engine, t, &pk(b"a"));
        write_cell(&engine, u, &pk(b"b"));
        engine.meta_put(b"k1", b"v1").expect("put");
        engine.meta_put(b"k2", b"v2").expect("put");
        engine.meta_delete(b"k2").expect("delete");
        engine.truncate(u).expect("truncate");
        write_cell(&engine, u, &pk(b"c"));
        // A partition deletion, then a purge long after gc_grace: the purge removes the shadowed
        // cell and the deletion, and replay must not bring the cell back.
        write_cell(&engine, t, &pk(b"d"));
        engine
            .apply(&Mutation {
                table: t,
                partition: pk(b"d"),
                partition_deletion: Some(crate::storage::Deletion {
                    timestamp: 10,
                    local_deletion_time: 100,
                }),
                range_deletions: Vec::new(),
                rows: Vec::new(),
            })
            .expect("delete");
        let purged = engine.purge(t, 1_000_000, 10).expect("purge");
        assert!(
            purged.tombstones_purged >= 1 && purged.cells_purged >= 1,
            "{purged:?}"
        );
        engine.flush().expect("sync");
        assert!(engine.commitlog_bytes() > 0);

        let copy = tempfile::tempdir().expect("tempdir");
        copy_log(dir.path(), copy.path());
        let rebuilt = SledEngine::open(copy.path(), 8 << 20).expect("open the copy");
        assert!(read_cell(&rebuilt, t, &pk(b"a")).is_some());
        assert!(read_cell(&rebuilt, u, &pk(b"b")).is_none(), "truncated");
        assert!(
            read_cell(&rebuilt, u, &pk(b"c")).is_some(),
            "written after the truncation"
        );
        assert!(read_cell(&rebuilt, t, &pk(b"d")).is_none(), "purged");
        assert_eq!(rebuilt.data.len(), engine.data.len());
        assert_eq!(rebuilt.meta_get(b"k1").expect("get"), Some(b"v1".to_vec()));
        assert_eq!(rebuilt.meta_get(b"k2").expect("get"), None);
        assert_eq!(
            rebuilt.commitlog_bytes(),
            0,
            "replayed, made durable and dropped"
        );
        drop(rebuilt);

        // The same log with its last record cut short: all but that record.
        let torn = tempfile::tempdir().expect("tempdir");
        copy_log(dir.path(), torn.path());
        let segment = std::fs::read_dir(torn.path().join(COMMITLOG_DIR))
            .expect("read_dir")
            .map(|e| e.expect("entry").path())
            .max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
            .expect("a segment");
        let bytes = std::fs::read(&segment).expect("read");
        std::fs::write(&segment, &bytes[..bytes.len() - 3]).expect("write");
        let rebuilt = SledEngine::open(torn.path(), 8 << 20).expect("open the torn copy");
        assert!(read_cell(&rebuilt, u, &pk(b"c")).is_some());
        assert!(
            read_cell(&rebuilt, t, &pk(b"d")).is_some(),
            "the purge was the last record: without it the partition's deletion is there"
        );
    }

    /// A clean close checkpoints: the next open has nothing to replay and the data is there.
    #[test]
    fn a_clean_close_leaves_an_empty_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let table = TableId::from_u128(1);
        let pk = PartitionKey {
            token: 0,
            key: b"k".to_vec(),
        };
        {
            let engine = SledEngine::open(dir.path(), 8 << 20).expect("open");
            write_cell(&engine, table, &pk);
            assert!(engine.commitlog_bytes() > 0);
        }
        let logged: u64 = std::fs::read_dir(dir.path().join(COMMITLOG_DIR))
            .expect("read_dir")
            .map(|e| e.expect("entry").metadata().expect("metadata").len())
            .sum();
        assert_eq!(logged, 0);
        let engine = SledEngine::open(dir.path(), 8 << 20).expect("reopen");
        assert!(read_cell(&engine, table, &pk).is_some());
    }

    /// Checkpoints while writers run neither block them for good nor lose a write.
    #[test]
    fn checkpoints_during_writes_lose_nothing() {
        let (dir, engine) = engine();
        let engine = Arc::new(engine);
        let table = TableId::from_u128(1);
        let writers: Vec<_> = (0..4u8)
            .map(|w| {
                let engine = engine.clone();
                std::thread::spawn(move || {
                    for i in 0..500u32 {
                        let mut key = vec![w];
                        key.extend_from_slice(&i.to_be_bytes());
                        let pk = PartitionKey {
                            token: i as i64,
                            key,
                        };
                        write_cell(&engine, table, &pk);
                    }
                })
            })
            .collect();
        for _ in 0..20 {
            engine.checkpoint().expect("checkpoint");
        }
        for w in writers {
            w.join().expect("writer");
        }
        assert_eq!(engine.data.len(), 4 * 500);
        let engine = Arc::into_inner(engine).expect("the writers are done");
        drop(engine);
        let reopened = SledEngine::open(dir.path(), 8 << 20).expect("reopen");
        assert_eq!(reopened.data.len(), 4 * 500);
    }
}
