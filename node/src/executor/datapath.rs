//! The data path: the only way the executor reaches data.
//!
//! Statement logic turns CQL into mutations and slice reads and hands them to a [`DataPath`].
//! Today's implementation, [`LocalDataPath`], applies them to the local engine and waits for
//! durability; the next milestone swaps in a coordinator that sends them to replicas with a
//! consistency level, which is why every call carries the keyspace and the consistency and why
//! the interface is asynchronous and object-safe.

use futures::future::BoxFuture;
use std::sync::Arc;

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

/// Where reads and writes go.
pub trait DataPath: Send + Sync + 'static {
    /// Applies mutations (each atomic per partition) and returns once they are durable as the
    /// consistency level requires.
    fn write<'a>(
        &'a self,
        keyspace: &'a str,
        mutations: Vec<Mutation>,
        consistency: u16,
    ) -> BoxFuture<'a, Result<(), ExecError>>;

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
    fn write<'a>(
        &'a self,
        _keyspace: &'a str,
        mutations: Vec<Mutation>,
        _consistency: u16,
    ) -> BoxFuture<'a, Result<(), ExecError>> {
        Box::pin(async move {
            for m in &mutations {
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
