//! The data path: the only way the executor reaches data.
//!
//! Statement logic turns CQL into mutations and slice reads and hands them to a [`DataPath`].
//! In a node that is the cluster coordinator (`crate::coordinator`), which sends them to the
//! replicas with a consistency level; [`LocalDataPath`] applies them to the local engine (unit
//! tests and tools). That is why every call carries the keyspace and the consistency and why
//! the interface is asynchronous and object-safe.
//!
//! A write also says what kind of write it is ([`WriteKind`]), because the coordinator treats
//! them differently: a logged batch over several partitions goes through a batchlog first, so
//! that once it is acknowledged it is applied completely or not at all; the kind is also the
//! `write_type` that WriteTimeout and WriteFailure errors report, as in Cassandra.

use futures::future::BoxFuture;
use std::sync::Arc;

use ringdb_cql::ast::BatchKind;
use ringdb_cql::message::WriteType;

use super::error::ExecError;
use crate::commitlog::CommitSync;
use crate::storage::{
    Engine, Mutation, PartitionData, PartitionKey, ScanRange, Seconds, Slice, TableId,
};

/// A read of one partition.
#[derive(Debug, Clone)]
pub struct PartitionRead<'a> {
    /// The table's keyspace (decides replication).
    pub keyspace: &'a str,
    /// The table.
    pub table: TableId,
    /// The partition to read.
    pub partition: &'a PartitionKey,
    /// Which rows of it.
    pub slice: &'a Slice,
    /// Expiry reference time (seconds since the epoch).
    pub now: Seconds,
    /// Protocol consistency code.
    pub consistency: u16,
}

/// A scan over partitions in ring order.
#[derive(Debug, Clone)]
pub struct RangeRead<'a> {
    /// The table's keyspace (decides replication).
    pub keyspace: &'a str,
    /// The table.
    pub table: TableId,
    /// Where the scan starts and stops on the ring.
    pub range: &'a ScanRange,
    /// Which rows of each partition.
    pub slice: &'a Slice,
    /// Most partitions to return.
    pub max_partitions: usize,
    /// Expiry reference time (seconds since the epoch).
    pub now: Seconds,
    /// Protocol consistency code.
    pub consistency: u16,
}

/// What kind of write a [`WriteRequest`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    /// One statement, or a batch (logged or not) that writes a single [`Mutation`]: one
    /// mutation is atomic on each replica, so there is nothing more to guarantee.
    Simple,
    /// An unlogged batch over several mutations: each partition is coordinated independently,
    /// and a failure may leave some applied and others not.
    UnloggedBatch,
    /// A logged batch over several mutations: once acknowledged, applied completely (a
    /// batchlog on other nodes replays it if its coordinator dies midway).
    LoggedBatch,
}

impl WriteKind {
    /// The kind of a batch of `kind` that produced `mutations` non-empty mutations. As in
    /// Cassandra, a batch of one mutation is a simple write whatever it was called; unlike
    /// Cassandra, where one mutation covers every table of a partition key, a ringdb
    /// [`Mutation`] is one table's partition, so a batch writing two tables of one partition key
    /// is a multi-mutation batch (it is not atomic without the batchlog here).
    pub fn of_batch(kind: BatchKind, mutations: usize) -> WriteKind {
        match kind {
            _ if mutations <= 1 => WriteKind::Simple,
            BatchKind::Logged => WriteKind::LoggedBatch,
            BatchKind::Unlogged | BatchKind::Counter => WriteKind::UnloggedBatch,
        }
    }

    /// The protocol's `write_type` for a timeout or failure while writing the mutations
    /// (`BATCH_LOG` is reported for the batchlog write itself).
    pub fn write_type(self) -> WriteType {
        match self {
            WriteKind::Simple => WriteType::Simple,
            WriteKind::UnloggedBatch => WriteType::UnloggedBatch,
            WriteKind::LoggedBatch => WriteType::Batch,
        }
    }
}

/// A write: mutations, the level they must reach and what kind of write they are.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteRequest {
    /// The mutations, each with its table's keyspace (which decides replication), at most one
    /// per table and partition.
    pub mutations: Vec<(String, Mutation)>,
    /// Protocol consistency code.
    pub consistency: u16,
    /// Simple write, unlogged or logged batch.
    pub kind: WriteKind,
}

/// Where reads and writes go.
pub trait DataPath: Send + Sync + 'static {
    /// Applies the mutations of `write` (each atomic on its partition; all or nothing once
    /// acknowledged for a [`WriteKind::LoggedBatch`]) and returns once they are durable as the
    /// consistency level requires.
    fn write(&self, write: WriteRequest) -> BoxFuture<'_, Result<(), ExecError>>;

    /// Reads a slice of one partition; `None` when nothing at all is stored for it.
    fn read<'a>(
        &'a self,
        read: PartitionRead<'a>,
    ) -> BoxFuture<'a, Result<Option<PartitionData>, ExecError>>;

    /// Reads up to `max_partitions` partitions in ring order.
    fn scan<'a>(
        &'a self,
        read: RangeRead<'a>,
    ) -> BoxFuture<'a, Result<Vec<PartitionData>, ExecError>>;

    /// Removes all data of a table.
    fn truncate<'a>(
        &'a self,
        keyspace: &'a str,
        table: TableId,
    ) -> BoxFuture<'a, Result<(), ExecError>>;
}

/// The single-node data path: the local engine plus the commit policy.
///
/// Every kind of write is applied the same way, mutation after mutation, then made durable
/// together. Concurrent readers never see half a mutation, but a crash between two mutations of
/// a logged batch leaves it partly applied: this data path keeps no batchlog, because it only
/// serves unit tests and tools. A node always runs the coordinator, whose batchlog on a
/// single-node cluster is this node's own and is replayed after a restart.
pub struct LocalDataPath {
    engine: Arc<dyn Engine>,
    commit: Arc<CommitSync>,
}

impl LocalDataPath {
    /// A data path over `engine`, acknowledging writes as `commit` allows.
    pub fn new(engine: Arc<dyn Engine>, commit: Arc<CommitSync>) -> LocalDataPath {
        LocalDataPath { engine, commit }
    }
}

impl DataPath for LocalDataPath {
    fn write(&self, write: WriteRequest) -> BoxFuture<'_, Result<(), ExecError>> {
        Box::pin(async move {
            for (_, m) in &write.mutations {
                self.engine.apply(m)?;
            }
            self.commit.wait_durable().await?;
            Ok(())
        })
    }

    fn read<'a>(
        &'a self,
        read: PartitionRead<'a>,
    ) -> BoxFuture<'a, Result<Option<PartitionData>, ExecError>> {
        Box::pin(async move {
            Ok(self
                .engine
                .read_partition(read.table, read.partition, read.slice, read.now)?)
        })
    }

    fn scan<'a>(
        &'a self,
        read: RangeRead<'a>,
    ) -> BoxFuture<'a, Result<Vec<PartitionData>, ExecError>> {
        Box::pin(async move {
            Ok(self.engine.scan(
                read.table,
                read.range,
                read.slice,
                read.max_partitions,
                read.now,
            )?)
        })
    }

    fn truncate<'a>(
        &'a self,
        _keyspace: &'a str,
        table: TableId,
    ) -> BoxFuture<'a, Result<(), ExecError>> {
        Box::pin(async move {
            self.engine.truncate(table)?;
            self.commit.wait_durable().await?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_kinds() {
        use WriteKind::*;
        for (kind, mutations, want) in [
            (BatchKind::Logged, 0, Simple),
            (BatchKind::Logged, 1, Simple),
            (BatchKind::Logged, 2, LoggedBatch),
            (BatchKind::Unlogged, 1, Simple),
            (BatchKind::Unlogged, 5, UnloggedBatch),
        ] {
            assert_eq!(
                WriteKind::of_batch(kind, mutations),
                want,
                "{kind:?} {mutations}"
            );
        }
        assert_eq!(Simple.write_type().as_str(), "SIMPLE");
        assert_eq!(UnloggedBatch.write_type().as_str(), "UNLOGGED_BATCH");
        assert_eq!(LoggedBatch.write_type().as_str(), "BATCH");
    }
}
