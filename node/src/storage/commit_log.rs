//! The sled engine's commit log: an append-only log of every change, in segment files.
//!
//! sled 0.34 makes a multi-key batch atomic by writing its log buffer out twice, synchronously,
//! per batch (see BENCHMARKS.md, "Where a write's time goes"), which capped writes at a few
//! thousand per second. The engine instead appends each change here first, as one checksummed
//! record, and then writes its keys to sled with plain inserts, which sled buffers. A crash can
//! leave sled with part of a change, or without it; start-up replays the log into sled, which
//! completes or redoes it (replay is idempotent: writes are last-write-wins, and replaying a
//! record whose effect is already stored changes nothing).
//!
//! ## Durability
//!
//! A record is handed to the operating system (`pwrite`) before the engine touches sled, so a
//! killed process loses nothing it applied. [`CommitLog::sync`] (`fdatasync` of every segment
//! written since the last sync) makes every record appended before it durable against a machine
//! crash too; the node calls it per group of writes (`commitlog_sync: batch`) or per period
//! (`periodic`) through `Engine::flush`.
//!
//! ## Checkpoints
//!
//! The log only has to cover what sled may not have made durable. A checkpoint seals the active
//! segment (new records go to a fresh one), flushes sled — after which everything applied before
//! the seal is in sled's own files — and deletes the sealed segments. The engine checkpoints
//! every few megabytes of log, on a clean shutdown and when it is dropped, so a restart replays
//! at most a few megabytes.
//!
//! ## Format
//!
//! Segment files are named `commitlog-<n>.log`, `n` increasing; replay reads them in that order.
//! A segment is a sequence of records:
//!
//! ```text
//! record = length (u32 LE, of the payload) | crc32 (u32 LE, of the payload) | payload
//! ```
//!
//! The payload is a [`Record`] in bincode. Replay of a segment stops at its first record that is
//! cut short or fails its checksum: a write the process or the machine did not finish (a torn
//! tail), or a failed write (for example on a full disk) whose bytes the next record did not
//! overwrite. Every record before it is replayed; the bytes from there on are reported and
//! skipped, and replay goes on with the next segment.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use super::sled_engine::map_io_error;
use super::{Mutation, StorageError, TableId};

/// Bytes in front of each record's payload: length and checksum.
const HEADER: usize = 8;

/// A record longer than this is taken as damage, not read into memory.
const MAX_RECORD: usize = 256 << 20;

const PREFIX: &str = "commitlog-";
const SUFFIX: &str = ".log";

/// One change, as the engine applies it.
#[derive(Debug, Serialize)]
pub(crate) enum RecordRef<'a> {
    /// Mutations applied together (each atomic on its own).
    Mutations(&'a [Mutation]),
    /// A meta space key set to a value.
    MetaPut(&'a [u8], &'a [u8]),
    /// Meta space keys removed.
    MetaDelete(Vec<&'a [u8]>),
    /// A table's data removed.
    Truncate(TableId),
    /// Data keys removed by a purge (raw keys of the `data` tree).
    RemoveData(Vec<&'a [u8]>),
}

/// A record read back by replay; the owned twin of [`RecordRef`] (same variants, same order).
#[derive(Debug, Deserialize)]
pub(crate) enum Record {
    Mutations(Vec<Mutation>),
    MetaPut(Vec<u8>, Vec<u8>),
    MetaDelete(Vec<Vec<u8>>),
    Truncate(TableId),
    RemoveData(Vec<Vec<u8>>),
}

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_RECORD>()
}

/// The log. Appends are serialized by an internal lock; syncing and deleting segments do not
/// hold it while they wait for the disk.
pub(crate) struct CommitLog {
    dir: PathBuf,
    state: Mutex<State>,
}

struct State {
    /// The segment records are appended to.
    active: Segment,
    /// Sealed segments not yet synced since they were last written.
    unsynced: Vec<Arc<File>>,
    /// Sealed segments not yet deleted: (number, bytes).
    sealed: Vec<(u64, u64)>,
}

struct Segment {
    number: u64,
    file: Arc<File>,
    /// Bytes of whole records written: where the next record goes.
    len: u64,
    /// Written since the last sync.
    dirty: bool,
}

fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{PREFIX}{number:020}{SUFFIX}"))
}

fn io_error(what: &str, path: &Path, e: &io::Error) -> StorageError {
    match map_io_error(e) {
        StorageError::DiskFull(m) => {
            StorageError::DiskFull(format!("{what} {}: {m}", path.display()))
        }
        _ => StorageError::Io(format!("{what} {}: {e}", path.display())),
    }
}

impl CommitLog {
    /// Opens the log in `dir` (created if missing). Returns it, with a new empty active segment,
    /// and the paths of the segments already there, oldest first: the caller replays them and
    /// then calls [`CommitLog::delete_sealed`] once what they hold is durable elsewhere.
    pub(crate) fn open(dir: &Path) -> Result<(CommitLog, Vec<PathBuf>), StorageError> {
        std::fs::create_dir_all(dir).map_err(|e| io_error("creating", dir, &e))?;
        let mut existing = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| io_error("listing", dir, &e))? {
            let entry = entry.map_err(|e| io_error("listing", dir, &e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(number) = name
                .strip_prefix(PREFIX)
                .and_then(|n| n.strip_suffix(SUFFIX))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
            existing.push((number, len));
        }
        existing.sort_unstable();
        let next = existing.last().map_or(1, |(n, _)| n + 1);
        let active = Segment::create(dir, next)?;
        let paths = existing
            .iter()
            .map(|(n, _)| segment_path(dir, *n))
            .collect();
        Ok((
            CommitLog {
                dir: dir.to_path_buf(),
                state: Mutex::new(State {
                    active,
                    unsynced: Vec::new(),
                    sealed: existing,
                }),
            },
            paths,
        ))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends one record and hands it to the operating system. On failure nothing counts as
    /// written: the next record goes where this one started.
    pub(crate) fn append(&self, record: &RecordRef<'_>) -> Result<(), StorageError> {
        let mut frame = vec![0u8; HEADER];
        bincode::serde::encode_into_std_write(record, &mut frame, bincode_config())
            .map_err(|e| StorageError::Io(format!("cannot encode a commit log record: {e}")))?;
        let payload_len = frame.len() - HEADER;
        let len = u32::try_from(payload_len)
            .ok()
            .filter(|_| payload_len <= MAX_RECORD)
            .ok_or_else(|| {
                StorageError::Io(format!(
                    "a commit log record of {payload_len} bytes is over the {MAX_RECORD} limit"
                ))
            })?;
        let crc = crc32fast::hash(&frame[HEADER..]);
        frame[0..4].copy_from_slice(&len.to_le_bytes());
        frame[4..8].copy_from_slice(&crc.to_le_bytes());

        let mut state = self.state();
        let segment = &mut state.active;
        if let Err(e) = segment.file.write_all_at(&frame, segment.len) {
            // Drop the partial bytes where possible; if they stay, the next record overwrites
            // them, and replay stops at whatever is left past the last whole record.
            let _ = segment.file.set_len(segment.len);
            return Err(io_error(
                "writing the commit log",
                &segment_path(&self.dir, segment.number),
                &e,
            ));
        }
        segment.len += frame.len() as u64;
        segment.dirty = true;
        Ok(())
    }

    /// Makes every record appended before this call durable (`fdatasync`).
    pub(crate) fn sync(&self) -> Result<(), StorageError> {
        let (files, active) = {
            let mut state = self.state();
            let files = std::mem::take(&mut state.unsynced);
            let active = if state.active.dirty {
                state.active.dirty = false;
                Some((state.active.number, state.active.file.clone()))
            } else {
                None
            };
            (files, active)
        };
        for file in &files {
            file.sync_data()
                .map_err(|e| io_error("syncing the commit log in", &self.dir, &e))?;
        }
        if let Some((number, file)) = active {
            if let Err(e) = file.sync_data() {
                // Leave it dirty so a later sync tries again.
                let mut state = self.state();
                if state.active.number == number {
                    state.active.dirty = true;
                }
                return Err(io_error(
                    "syncing the commit log",
                    &segment_path(&self.dir, number),
                    &e,
                ));
            }
        }
        Ok(())
    }

    /// Seals the active segment and starts a new one; returns the number of the sealed one.
    /// The caller must make sure no change appended to the sealed segment is still being
    /// applied (the engine's checkpoint gate).
    pub(crate) fn seal(&self) -> Result<u64, StorageError> {
        let mut state = self.state();
        let next = Segment::create(&self.dir, state.active.number + 1)?;
        let old = std::mem::replace(&mut state.active, next);
        if old.dirty {
            state.unsynced.push(old.file.clone());
        }
        state.sealed.push((old.number, old.len));
        Ok(old.number)
    }

    /// Deletes the sealed segments numbered `through` or lower: their changes are durable in
    /// sled.
    pub(crate) fn delete_sealed(&self, through: u64) -> Result<(), StorageError> {
        let doomed: Vec<u64> = {
            let state = self.state();
            state
                .sealed
                .iter()
                .map(|(n, _)| *n)
                .filter(|n| *n <= through)
                .collect()
        };
        for number in &doomed {
            let path = segment_path(&self.dir, *number);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error("deleting", &path, &e)),
            }
            self.state().sealed.retain(|(n, _)| n != number);
        }
        Ok(())
    }

    /// Bytes in the log: the active segment and the sealed ones not yet deleted.
    pub(crate) fn bytes(&self) -> u64 {
        let state = self.state();
        state.active.len + state.sealed.iter().map(|(_, b)| b).sum::<u64>()
    }

    /// Bytes in the active segment.
    pub(crate) fn active_bytes(&self) -> u64 {
        self.state().active.len
    }

    /// The number of the active segment.
    pub(crate) fn active_number(&self) -> u64 {
        self.state().active.number
    }
}

impl Segment {
    fn create(dir: &Path, number: u64) -> Result<Segment, StorageError> {
        let path = segment_path(dir, number);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| io_error("creating", &path, &e))?;
        // The new name must survive a crash before records in it count as durable.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(Segment {
            number,
            file: Arc::new(file),
            len: 0,
            dirty: false,
        })
    }
}

/// What replaying one segment found.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct SegmentReplay {
    /// Records read and handed to the caller.
    pub records: u64,
    /// Bytes after the last whole record that were not replayed (a torn or failed write).
    pub skipped_bytes: u64,
    /// Why replay stopped before the end of the file, if it did.
    pub stopped: Option<String>,
}

/// Reads the records of the segment at `path`, in order, and hands each to `apply`. Stops at
/// the first damaged or cut-short record (see the module documentation); an error of `apply`
/// stops the replay and is returned.
pub(crate) fn replay_segment(
    path: &Path,
    mut apply: impl FnMut(Record) -> Result<(), StorageError>,
) -> Result<SegmentReplay, StorageError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| io_error("reading", path, &e))?;
    let mut out = SegmentReplay::default();
    let mut at = 0usize;
    while at < bytes.len() {
        let rest = &bytes[at..];
        let stop = |reason: String, out: &mut SegmentReplay| {
            out.skipped_bytes = rest.len() as u64;
            out.stopped = Some(reason);
        };
        if rest.len() < HEADER {
            stop(
                format!("{} bytes, less than a record header", rest.len()),
                &mut out,
            );
            break;
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        if len == 0 && crc == 0 && rest.iter().all(|b| *b == 0) {
            // Zeros past the end of the last record (space the file system allocated).
            out.skipped_bytes = rest.len() as u64;
            break;
        }
        if len > MAX_RECORD || len > rest.len() - HEADER {
            stop(
                format!(
                    "a record of {len} bytes where {} remain",
                    rest.len() - HEADER
                ),
                &mut out,
            );
            break;
        }
        let payload = &rest[HEADER..HEADER + len];
        if crc32fast::hash(payload) != crc {
            stop(
                "a record whose checksum does not match".to_string(),
                &mut out,
            );
            break;
        }
        let record: Record = match bincode::serde::decode_from_slice(payload, bincode_config()) {
            Ok((record, used)) if used == len => record,
            Ok((_, used)) => {
                stop(
                    format!("a record with {} trailing bytes", len - used),
                    &mut out,
                );
                break;
            }
            Err(e) => {
                stop(format!("a record that does not decode: {e}"), &mut out);
                break;
            }
        };
        apply(record)?;
        out.records += 1;
        at += HEADER + len;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{Cell, CellKey, PartitionKey, RowUpdate};

    fn mutation(key: &[u8], value: &[u8]) -> Mutation {
        Mutation {
            table: TableId::from_u128(7),
            partition: PartitionKey {
                token: 42,
                key: key.to_vec(),
            },
            partition_deletion: None,
            range_deletions: Vec::new(),
            rows: vec![RowUpdate {
                clustering: Vec::new(),
                liveness: None,
                deletion: None,
                cells: vec![(
                    CellKey {
                        column: 1,
                        path: None,
                    },
                    Cell {
                        timestamp: 1,
                        ttl: 0,
                        local_deletion_time: 0,
                        value: Some(value.to_vec()),
                    },
                )],
                collection_deletions: Vec::new(),
            }],
        }
    }

    fn replay_all(paths: &[PathBuf]) -> (Vec<Record>, Vec<SegmentReplay>) {
        let mut records = Vec::new();
        let mut reports = Vec::new();
        for p in paths {
            reports.push(
                replay_segment(p, |r| {
                    records.push(r);
                    Ok(())
                })
                .expect("replay"),
            );
        }
        (records, reports)
    }

    #[test]
    fn records_come_back_in_order_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (log, old) = CommitLog::open(dir.path()).unwrap();
            assert!(old.is_empty());
            log.append(&RecordRef::Mutations(&[mutation(b"a", b"1")]))
                .unwrap();
            log.append(&RecordRef::MetaPut(b"k", b"v")).unwrap();
            let sealed = log.seal().unwrap();
            assert_eq!(sealed, 1);
            log.append(&RecordRef::MetaDelete(vec![b"k".as_slice()]))
                .unwrap();
            log.append(&RecordRef::Truncate(TableId::from_u128(7)))
                .unwrap();
            log.append(&RecordRef::RemoveData(vec![b"x".as_slice()]))
                .unwrap();
            log.sync().unwrap();
            assert!(log.bytes() > 0);
        }
        let (log, old) = CommitLog::open(dir.path()).unwrap();
        assert_eq!(old.len(), 2, "{old:?}");
        assert_eq!(log.active_number(), 3);
        let (records, reports) = replay_all(&old);
        assert!(reports.iter().all(|r| r.stopped.is_none()), "{reports:?}");
        assert_eq!(records.len(), 5);
        assert!(matches!(&records[0], Record::Mutations(m) if m == &[mutation(b"a", b"1")]));
        assert!(matches!(&records[1], Record::MetaPut(k, v) if k == b"k" && v == b"v"));
        assert!(matches!(&records[2], Record::MetaDelete(k) if k == &[b"k".to_vec()]));
        assert!(matches!(&records[3], Record::Truncate(t) if *t == TableId::from_u128(7)));
        assert!(matches!(&records[4], Record::RemoveData(k) if k == &[b"x".to_vec()]));
        // Sealed segments go once deleted; the active one stays.
        log.delete_sealed(2).unwrap();
        let (_, old) = CommitLog::open(dir.path()).unwrap();
        assert_eq!(old.len(), 1, "only the then-active, empty segment: {old:?}");
    }

    #[test]
    fn a_torn_tail_ends_the_segment_and_keeps_what_came_before() {
        let dir = tempfile::tempdir().unwrap();
        let path;
        {
            let (log, _) = CommitLog::open(dir.path()).unwrap();
            for i in 0..10u8 {
                log.append(&RecordRef::MetaPut(&[i], &[i; 100])).unwrap();
            }
            path = segment_path(dir.path(), log.active_number());
        }
        let full = std::fs::read(&path).unwrap();
        // Cut the file in the middle of the last record.
        std::fs::write(&path, &full[..full.len() - 30]).unwrap();
        let (records, reports) = replay_all(std::slice::from_ref(&path));
        assert_eq!(records.len(), 9);
        assert!(reports[0].stopped.is_some());
        assert!(reports[0].skipped_bytes > 0);

        // A flipped byte inside the fifth record: the first four replay.
        let mut damaged = full.clone();
        let record = full.len() / 10;
        damaged[4 * record + HEADER + 3] ^= 0xFF;
        std::fs::write(&path, &damaged).unwrap();
        let (records, reports) = replay_all(std::slice::from_ref(&path));
        assert_eq!(records.len(), 4);
        assert!(reports[0].stopped.as_deref().unwrap().contains("checksum"));

        // Zeros after the last record (preallocated space) are not damage.
        let mut padded = full.clone();
        padded.extend_from_slice(&[0; 4096]);
        std::fs::write(&path, &padded).unwrap();
        let (records, reports) = replay_all(std::slice::from_ref(&path));
        assert_eq!(records.len(), 10);
        assert_eq!(reports[0].stopped, None);

        // A huge length is damage, not an allocation.
        let mut huge = full.clone();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        huge.extend_from_slice(&[1, 2, 3, 4, 5]);
        std::fs::write(&path, &huge).unwrap();
        let (records, reports) = replay_all(std::slice::from_ref(&path));
        assert_eq!(records.len(), 10);
        assert!(reports[0].stopped.is_some());
    }

    #[test]
    fn sync_covers_sealed_segments() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = CommitLog::open(dir.path()).unwrap();
        log.append(&RecordRef::MetaPut(b"a", b"1")).unwrap();
        log.seal().unwrap();
        assert_eq!(log.state().unsynced.len(), 1);
        log.sync().unwrap();
        assert!(log.state().unsynced.is_empty());
        assert!(!log.state().active.dirty);
        assert_eq!(log.active_bytes(), 0);
    }
}
