//! Anti-entropy repair: replicas that drifted apart are compared by Merkle trees, and only the
//! token sub-ranges where they differ are streamed, in both directions, merged last-write-wins.
//!
//! Hinted handoff and read repair converge replicas in the common cases; repair is the backstop
//! for everything they miss (a replica down longer than the hint window, a lost disk, a hint
//! dropped when its store was full). It is what `ringdb repair` (like `nodetool repair`) runs.
//!
//! # A session
//!
//! The node asked to repair (over its admin API: [`crate::admin`]) is the *repair coordinator*.
//! For each keyspace (system keyspaces are local or everywhere and never repaired; keyspaces
//! with a replication factor of 1 have nothing to compare and are reported as skipped), each
//! table, and each vnode range the node is a replica of (all of them, like `nodetool repair`
//! without `-pr`; only those whose primary replica it is with `--pr`), the coordinator
//! ([`session`]):
//!
//! 1. checks that every replica of the range is up; a range with a replica down is reported as
//!    failed, never as repaired, and the session goes on with the next range;
//! 2. asks every replica, itself included, for a Merkle tree of the table over the range
//!    ([`tree`]: built on the replica by a streaming scan in bounded pages, each partition
//!    summarized by the digest of its whole data, tombstones included). Replicas choose the
//!    depth from their partition count; when they choose differently, the coordinator asks
//!    again at the deepest choice, so that all trees have the same leaves;
//! 3. compares its own tree with each other replica's ([`ringdb_ring::merkle::differences`]).
//!    Equal trees: the range is in sync and nothing more is sent. Otherwise, for each run of
//!    adjacent differing leaves, it groups the replicas by their leaf hash (replicas in a group
//!    hold the same data there), reads the partitions of the run from one replica per group
//!    (itself for its own group) in bounded pages, merges each partition last-write-wins, and
//!    writes the merged partition to every replica of every group whose copy differed from the
//!    merge — so data flows in both directions, and a replica that already agreed with the
//!    merge receives nothing.
//!
//! Re-applying data is harmless (merge is idempotent), so writes that race with repair, or a
//! repair run twice, can never lose data; a second repair of a repaired cluster compares equal
//! trees and streams nothing.
//!
//! # Bounds
//!
//! - One session per node at a time: a second request is refused ([`RepairError::Busy`]).
//! - Ranges are repaired one after another; within a range, replicas are asked in parallel.
//! - Memory: a replica building a tree holds one scan page and `O(leaves)` accumulators (at most
//!   `2^16` leaves); the coordinator holds one tree per replica of the range being repaired and
//!   one page per replica group (at most [`tree::MAX_PAGE_PARTITIONS`] partitions or about
//!   [`PAGE_BYTES`] each), and writes back in batches of about [`WRITE_BATCH_BYTES`].
//! - Time: each tree request may take [`TREE_TIMEOUT`] (it reads a whole range of a table), each
//!   page read or write [`STREAM_TIMEOUT`]. A request that runs out fails its range.
//! - At most [`MAX_REPORTED_FAILURES`] failed ranges are listed in the report (all are counted).
//! - A single partition larger than a verb ([`crate::verbs::MAX_VERB_BYTES`]) cannot be streamed:
//!   its range fails, and says why.
//!
//! # Progress and report
//!
//! The session publishes a [`RepairReport`] on a `watch` channel after every range: ranges
//! done of the total, ranges compared, out of sync and failed, partitions and bytes fetched
//! from other replicas and streamed to replicas that differed, and at the end `finished` with
//! the duration. The admin API streams these reports as newline-delimited JSON; the session
//! runs on even if the client goes away, and the last report stays available
//! ([`RepairService::current`]).

pub mod cli;
pub mod session;
#[cfg(test)]
mod tests;
pub mod tree;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::coordinator::Coordinator;
use crate::schema::SchemaStore;

/// How long one replica may take to build and send one Merkle tree.
pub const TREE_TIMEOUT: Duration = Duration::from_secs(300);

/// How long one page read or one write-back batch may take.
pub const STREAM_TIMEOUT: Duration = Duration::from_secs(60);

/// Partitions asked for per page when streaming a differing sub-range.
pub const PAGE_PARTITIONS: u32 = 256;

/// Bytes of encoded partitions after which a replica cuts a page.
pub const PAGE_BYTES: u32 = 4 << 20;

/// Bytes of mutations per write-back verb.
pub const WRITE_BATCH_BYTES: usize = 4 << 20;

/// Failed ranges listed in a report (the count covers all of them).
pub const MAX_REPORTED_FAILURES: usize = 100;

/// What to repair.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepairOptions {
    /// Only this keyspace (default: every non-system keyspace).
    pub keyspace: Option<String>,
    /// Only this table of the keyspace (default: all its tables).
    pub table: Option<String>,
    /// Only the ranges this node is the primary replica of (`nodetool repair -pr`): repairing
    /// every node with it covers the ring once.
    pub primary_range_only: bool,
}

/// Why a repair cannot start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RepairError {
    /// A repair is already running on this node.
    #[error("a repair is already running on this node (session {id}, {done} of {total} ranges done); wait for it to finish")]
    Busy {
        /// The running session.
        id: uuid::Uuid,
        /// Its ranges done.
        done: u64,
        /// Its ranges in all.
        total: u64,
    },
    /// No such keyspace.
    #[error("keyspace '{0}' does not exist")]
    UnknownKeyspace(String),
    /// No such table.
    #[error("table '{keyspace}.{table}' does not exist")]
    UnknownTable {
        /// The keyspace.
        keyspace: String,
        /// The table.
        table: String,
    },
    /// The request makes no sense (a system keyspace, a table without its keyspace).
    #[error("{0}")]
    Invalid(String),
    /// This node owns no ranges yet (it is not in the ring).
    #[error("this node is not in the ring yet (still joining?): it owns no ranges to repair")]
    NotInRing,
}

/// A keyspace the session repairs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyspaceReport {
    /// Its name.
    pub name: String,
    /// Replicas of each token.
    pub replication_factor: usize,
    /// The tables repaired.
    pub tables: Vec<String>,
    /// The vnode ranges repaired per table.
    pub ranges: u64,
}

/// A keyspace the session leaves out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedKeyspace {
    /// Its name.
    pub keyspace: String,
    /// Why it is not repaired.
    pub reason: String,
}

/// A range that could not be repaired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeFailure {
    /// The keyspace.
    pub keyspace: String,
    /// The table.
    pub table: String,
    /// The range, `(start, end]`.
    pub range: String,
    /// What went wrong.
    pub error: String,
}

/// The state of a repair session: progress while it runs, the summary once `finished`.
///
/// A *range* here is one vnode range of one table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairReport {
    /// The session.
    pub id: uuid::Uuid,
    /// The repair coordinator's host id.
    pub host_id: String,
    /// The repair coordinator's internode address.
    pub address: String,
    /// Only primary ranges (`--pr`).
    pub primary_range_only: bool,
    /// Keyspaces repaired.
    pub keyspaces: Vec<KeyspaceReport>,
    /// Keyspaces left out, and why.
    pub skipped: Vec<SkippedKeyspace>,
    /// Ranges to repair.
    pub ranges_total: u64,
    /// Ranges done (compared, or failed).
    pub ranges_done: u64,
    /// Ranges whose trees were compared.
    pub ranges_compared: u64,
    /// Compared ranges where some replicas differed.
    pub ranges_out_of_sync: u64,
    /// Ranges that could not be compared or brought in sync (a replica down, a timeout...).
    pub ranges_failed: u64,
    /// Runs of differing Merkle leaves streamed, over all ranges.
    pub subranges_out_of_sync: u64,
    /// Partitions read from other replicas in differing sub-ranges.
    pub partitions_fetched: u64,
    /// Bytes of those partitions.
    pub bytes_fetched: u64,
    /// Merged partitions written to replicas whose copy differed (one per replica written).
    pub partitions_streamed: u64,
    /// Bytes of those writes.
    pub bytes_streamed: u64,
    /// The first failed ranges (at most [`MAX_REPORTED_FAILURES`]).
    pub failures: Vec<RangeFailure>,
    /// The range being repaired, `keyspace.table (start, end]`.
    pub current: Option<String>,
    /// Milliseconds since the session started (its duration once finished).
    pub elapsed_ms: u64,
    /// The session is over; the report is its summary.
    pub finished: bool,
}

impl RepairReport {
    /// True when every range was compared and, where needed, brought in sync.
    pub fn succeeded(&self) -> bool {
        self.finished && self.ranges_failed == 0
    }
}

/// Runs repair sessions on this node, one at a time.
pub struct RepairService {
    coordinator: Arc<Coordinator>,
    schema: Arc<SchemaStore>,
    shutdown: watch::Receiver<bool>,
    /// The running session's reports, or the last session's.
    current: Mutex<Option<watch::Receiver<RepairReport>>>,
}

impl std::fmt::Debug for RepairService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepairService").finish_non_exhaustive()
    }
}

impl RepairService {
    /// A service over this node's coordinator and schema; sessions stop when `shutdown` turns
    /// true.
    pub fn new(
        coordinator: Arc<Coordinator>,
        schema: Arc<SchemaStore>,
        shutdown: watch::Receiver<bool>,
    ) -> Arc<RepairService> {
        Arc::new(RepairService {
            coordinator,
            schema,
            shutdown,
            current: Mutex::new(None),
        })
    }

    /// Starts a session and returns its reports, or refuses at once (busy, unknown keyspace or
    /// table, not in the ring). The session runs as its own task until done, whoever listens.
    pub fn start(
        self: &Arc<Self>,
        options: RepairOptions,
    ) -> Result<watch::Receiver<RepairReport>, RepairError> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(running) = current.as_ref() {
            let report = running.borrow();
            if !report.finished {
                return Err(RepairError::Busy {
                    id: report.id,
                    done: report.ranges_done,
                    total: report.ranges_total,
                });
            }
        }
        let session = session::Session::plan(
            self.coordinator.clone(),
            &self.schema.current(),
            &options,
            self.shutdown.clone(),
        )?;
        let (tx, rx) = watch::channel(session.initial_report());
        *current = Some(rx.clone());
        drop(current);
        tokio::spawn(session.run(tx));
        Ok(rx)
    }

    /// The running session's latest report, or the last session's summary; `None` before the
    /// first session.
    pub fn current(&self) -> Option<RepairReport> {
        let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        current.as_ref().map(|rx| rx.borrow().clone())
    }
}
