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

use std::sync::Arc;

use tokio::sync::{mpsc, watch, Semaphore};

use ringdb_gossip::transport::Inbound;

use crate::clock::HybridClock;
use crate::commitlog::CommitSync;
use crate::schema::SchemaStore;
use crate::storage::{
    Engine, Mutation, PartitionData, PartitionKey, ScanRange, Seconds, Slice, StorageError, TableId,
};
use crate::verbs::{self, ReplicaError, VerbRequest, VerbResponse};

/// Verbs executing at once on one node.
pub const MAX_CONCURRENT_VERBS: usize = 512;

/// Most partitions one scan verb returns, whatever the coordinator asks.
pub const MAX_SCAN_PARTITIONS: u32 = 10_000;

/// Answers schema verbs; implemented by schema synchronization.
pub trait SchemaVerbs: Send + Sync + 'static {
    /// Answers a schema verb (`SchemaPull`, `SchemaPush`).
    fn handle<'a>(&'a self, request: VerbRequest) -> futures::future::BoxFuture<'a, VerbResponse>;
}

/// This node as a replica: its engine, commit policy, schema and clock.
pub struct Replica {
    engine: Arc<dyn Engine>,
    commit: Arc<CommitSync>,
    schema: Arc<SchemaStore>,
    clock: Arc<HybridClock>,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica").finish_non_exhaustive()
    }
}

fn storage_error(e: StorageError) -> ReplicaError {
    match e {
        StorageError::DiskFull(m) => ReplicaError::DiskFull(m),
        other => ReplicaError::Storage(other.to_string()),
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
        })
    }

    fn check_table(&self, table: TableId) -> Result<(), ReplicaError> {
        let schema = self.schema.current();
        let known = schema
            .user_keyspaces()
            .any(|ks| schema.tables(&ks.name).any(|t| t.id == table));
        if known {
            Ok(())
        } else {
            Err(ReplicaError::UnknownTable(table))
        }
    }

    /// Applies mutations and waits until they are durable.
    pub async fn apply(&self, mutations: &[Mutation]) -> Result<(), ReplicaError> {
        for m in mutations {
            self.check_table(m.table)?;
        }
        for m in mutations {
            if let Some(ts) = max_timestamp(m) {
                self.clock.observe(ts);
            }
            self.engine.apply(m).map_err(storage_error)?;
        }
        self.commit
            .wait_durable()
            .await
            .map_err(|e| ReplicaError::Storage(e.to_string()))
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
            VerbRequest::SchemaPull | VerbRequest::SchemaPush(_) => Err(ReplicaError::BadRequest(
                "schema verbs are answered by schema synchronization".into(),
            )),
        };
        result.unwrap_or_else(VerbResponse::Error)
    }
}

/// The newest timestamp a mutation carries.
fn max_timestamp(m: &Mutation) -> Option<i64> {
    let deletions = m
        .partition_deletion
        .iter()
        .chain(m.range_deletions.iter().map(|r| &r.deletion))
        .map(|d| d.timestamp);
    let rows = m.rows.iter().flat_map(|r| {
        r.liveness
            .iter()
            .map(|l| l.timestamp)
            .chain(r.deletion.iter().map(|d| d.timestamp))
            .chain(r.cells.iter().map(|(_, c)| c.timestamp))
            .chain(r.collection_deletions.iter().map(|(_, d)| d.timestamp))
    });
    deletions.chain(rows).max()
}

/// Drains the transport's verb queue until it closes or the node stops: each request is decoded,
/// run (data verbs on `replica`, schema verbs on `schema`) and answered. A request that does not
/// decode is answered with [`ReplicaError::BadRequest`]; one-way verb messages are not used and
/// are dropped.
pub async fn serve(
    replica: Arc<Replica>,
    schema: Arc<dyn SchemaVerbs>,
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
        tokio::spawn(async move {
            let response = match verbs::decode::<VerbRequest>(&message.body) {
                Ok(request @ (VerbRequest::SchemaPull | VerbRequest::SchemaPush(_))) => {
                    schema.handle(request).await
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
