//! What kind of write the executor hands the data path for each statement: the coordinator
//! relies on it to put logged batches over several partitions through the batchlog.

mod executor_support;

use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;

use executor_support::*;
use ringdb_node::clock::HybridClock;
use ringdb_node::commitlog::{CommitSync, SyncMode};
use ringdb_node::executor::datapath::{PartitionRead, RangeRead};
use ringdb_node::executor::{
    BatchItem, BatchKind, DataPath, ExecError, Executor, LocalDataPath, QueryOptions, Session,
    WriteKind, WriteRequest,
};
use ringdb_node::schema::SchemaStore;
use ringdb_node::storage::{Engine, MemoryEngine, PartitionData, TableId};

/// The local data path, remembering the kind and size of every write.
struct Recorder {
    local: LocalDataPath,
    writes: Mutex<Vec<(WriteKind, usize, Vec<String>)>>,
}

impl DataPath for Recorder {
    fn write(&self, write: WriteRequest) -> BoxFuture<'_, Result<(), ExecError>> {
        let keyspaces = write.mutations.iter().map(|(ks, _)| ks.clone()).collect();
        self.writes
            .lock()
            .unwrap()
            .push((write.kind, write.mutations.len(), keyspaces));
        self.local.write(write)
    }

    fn read<'a>(
        &'a self,
        read: PartitionRead<'a>,
    ) -> BoxFuture<'a, Result<Option<PartitionData>, ExecError>> {
        self.local.read(read)
    }

    fn scan<'a>(
        &'a self,
        read: RangeRead<'a>,
    ) -> BoxFuture<'a, Result<Vec<PartitionData>, ExecError>> {
        self.local.scan(read)
    }

    fn truncate<'a>(
        &'a self,
        keyspace: &'a str,
        table: TableId,
    ) -> BoxFuture<'a, Result<(), ExecError>> {
        self.local.truncate(keyspace, table)
    }
}

#[tokio::test]
async fn statements_and_batches_are_told_apart() {
    let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    let (commit, _flusher) = CommitSync::start(SyncMode::Batch, engine.clone(), stop_rx);
    let recorder = Arc::new(Recorder {
        local: LocalDataPath::new(engine.clone(), commit),
        writes: Mutex::new(Vec::new()),
    });
    let schema = SchemaStore::open(engine).expect("schema");
    let exec =
        Executor::with_data_path(recorder.clone(), schema, node_info(), HybridClock::system());
    let mut session = Session::default();
    let opts = QueryOptions::default();
    for ddl in [
        "CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
        "CREATE KEYSPACE ks2 WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
        "USE ks",
        "CREATE TABLE t (k int, c int, v text, PRIMARY KEY (k, c))",
        "CREATE TABLE u (k int PRIMARY KEY, v text)",
        "CREATE TABLE ks2.w (k int PRIMARY KEY, v text)",
    ] {
        exec.query(&mut session, ddl, &opts).await.expect(ddl);
    }
    recorder.writes.lock().unwrap().clear();

    let cases: &[(&str, WriteKind, usize)] = &[
        (
            "INSERT INTO t (k, c, v) VALUES (1, 1, 'a')",
            WriteKind::Simple,
            1,
        ),
        // One partition: atomic on its own, whatever the batch is called.
        (
            "BEGIN BATCH INSERT INTO t (k, c, v) VALUES (1, 1, 'a'); \
             INSERT INTO t (k, c, v) VALUES (1, 2, 'b'); APPLY BATCH",
            WriteKind::Simple,
            1,
        ),
        (
            "BEGIN BATCH INSERT INTO t (k, c, v) VALUES (1, 1, 'a'); \
             INSERT INTO t (k, c, v) VALUES (2, 1, 'b'); APPLY BATCH",
            WriteKind::LoggedBatch,
            2,
        ),
        (
            "BEGIN UNLOGGED BATCH INSERT INTO t (k, c, v) VALUES (1, 1, 'a'); \
             INSERT INTO t (k, c, v) VALUES (2, 1, 'b'); APPLY BATCH",
            WriteKind::UnloggedBatch,
            2,
        ),
        // Two tables of one partition key are two mutations: not atomic together without the
        // batchlog.
        (
            "BEGIN BATCH INSERT INTO t (k, c, v) VALUES (1, 1, 'a'); \
             INSERT INTO u (k, v) VALUES (1, 'b'); APPLY BATCH",
            WriteKind::LoggedBatch,
            2,
        ),
    ];
    for &(cql, kind, mutations) in cases {
        exec.query(&mut session, cql, &opts).await.expect(cql);
        let writes = std::mem::take(&mut *recorder.writes.lock().unwrap());
        assert_eq!(writes.len(), 1, "one write for {cql}");
        assert_eq!((writes[0].0, writes[0].1), (kind, mutations), "{cql}");
    }

    // A BATCH message over two keyspaces reaches the data path as one write, keyspaces kept.
    exec.batch(
        &mut session,
        BatchKind::Logged,
        vec![
            BatchItem::Query("INSERT INTO u (k, v) VALUES (?, 'x')".into(), vec![int(5)]),
            BatchItem::Query(
                "INSERT INTO ks2.w (k, v) VALUES (?, 'y')".into(),
                vec![int(5)],
            ),
        ],
        &opts,
    )
    .await
    .expect("batch message");
    let writes = std::mem::take(&mut *recorder.writes.lock().unwrap());
    assert_eq!(
        writes,
        vec![(
            WriteKind::LoggedBatch,
            2,
            vec!["ks".to_string(), "ks2".to_string()]
        )]
    );
}
