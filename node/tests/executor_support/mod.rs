//! Shared harness for the executor tests: an executor over the in-memory engine with a manual
//! clock, and helpers that run statements and decode results.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use ringdb_cql::types::CqlValue;
use ringdb_node::clock::{HybridClock, ManualClock};
use ringdb_node::commitlog::{CommitSync, SyncMode};
use ringdb_node::executor::{
    BoundValue, ColumnSpec, ExecError, Executor, LocalNodeInfo, QueryOptions, QueryResult, Session,
};
use ringdb_node::schema::SchemaStore;
use ringdb_node::storage::{Engine, MemoryEngine};

/// Wall time the tests start at (seconds since the epoch).
pub const START_SECS: i64 = 1_700_000_000;

pub fn node_info() -> LocalNodeInfo {
    LocalNodeInfo {
        cluster_name: "Test Cluster".into(),
        host_id: uuid::Uuid::from_u128(0x1234_5678_9abc_def0_1234_5678_9abc_def0),
        listen_address: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)),
        listen_port: 7000,
        rpc_address: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)),
        rpc_port: 9042,
        dc: "datacenter1".into(),
        rack: "rack1".into(),
        tokens: vec![-3_000_000_000_000_000_000, 42, 3_000_000_000_000_000_000],
        release_version: "4.1.0".into(),
        partitioner: "org.apache.cassandra.dht.Murmur3Partitioner".into(),
    }
}

pub struct Db {
    pub exec: Executor,
    pub session: Session,
    pub wall: Arc<ManualClock>,
    pub engine: Arc<dyn Engine>,
    _shutdown: tokio::sync::watch::Sender<bool>,
}

impl Db {
    pub fn new() -> Db {
        Db::with_engine(Arc::new(MemoryEngine::new()))
    }

    pub fn with_engine(engine: Arc<dyn Engine>) -> Db {
        let wall = ManualClock::new(START_SECS * 1_000_000);
        let clock = HybridClock::new(wall.clone());
        let (shutdown, rx) = tokio::sync::watch::channel(false);
        let (commit, _flusher) = CommitSync::start(SyncMode::Batch, engine.clone(), rx);
        let schema = SchemaStore::open(engine.clone()).expect("open schema");
        let exec = Executor::with_clock(engine.clone(), commit, schema, node_info(), clock);
        Db {
            exec,
            session: Session::default(),
            wall,
            engine,
            _shutdown: shutdown,
        }
    }

    /// A Db with keyspace `ks` created and in use.
    pub async fn with_keyspace() -> Db {
        let mut db = Db::new();
        db.q("CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}").await;
        db.q("USE ks").await;
        db
    }

    pub async fn try_q(&mut self, text: &str) -> Result<QueryResult, ExecError> {
        self.exec
            .query(&mut self.session, text, &QueryOptions::default())
            .await
    }

    pub async fn try_opts(
        &mut self,
        text: &str,
        opts: &QueryOptions,
    ) -> Result<QueryResult, ExecError> {
        self.exec.query(&mut self.session, text, opts).await
    }

    pub async fn q(&mut self, text: &str) -> QueryResult {
        match self.try_q(text).await {
            Ok(r) => r,
            Err(e) => panic!("{text}\n  failed: {e:?}"),
        }
    }

    pub async fn err(&mut self, text: &str) -> ExecError {
        match self.try_q(text).await {
            Ok(r) => panic!("{text}\n  should have failed but returned {r:?}"),
            Err(e) => e,
        }
    }

    /// Rows decoded, rendered as cqlsh would (`null` for null).
    pub async fn rows(&mut self, text: &str) -> Vec<Vec<String>> {
        let r = self.q(text).await;
        render(&r)
    }

    /// Rows decoded to values.
    pub async fn values(&mut self, text: &str) -> Vec<Vec<Option<CqlValue>>> {
        let r = self.q(text).await;
        decode(&r)
    }

    /// Column names of a result.
    pub async fn columns(&mut self, text: &str) -> Vec<String> {
        match self.q(text).await {
            QueryResult::Rows { columns, .. } => columns.into_iter().map(|c| c.name).collect(),
            other => panic!("not rows: {other:?}"),
        }
    }
}

pub fn specs(r: &QueryResult) -> &[ColumnSpec] {
    match r {
        QueryResult::Rows { columns, .. } => columns,
        other => panic!("not rows: {other:?}"),
    }
}

pub fn decode(r: &QueryResult) -> Vec<Vec<Option<CqlValue>>> {
    match r {
        QueryResult::Rows { columns, rows, .. } => rows
            .iter()
            .map(|row| {
                assert_eq!(row.len(), columns.len(), "row width");
                row.iter()
                    .zip(columns)
                    .map(|(cell, spec)| {
                        cell.as_ref().map(|b| {
                            CqlValue::deserialize(&spec.ty, b).unwrap_or_else(|e| {
                                panic!("column {} of type {}: {e}", spec.name, spec.ty)
                            })
                        })
                    })
                    .collect()
            })
            .collect(),
        other => panic!("not rows: {other:?}"),
    }
}

pub fn render(r: &QueryResult) -> Vec<Vec<String>> {
    decode(r)
        .into_iter()
        .map(|row| {
            row.into_iter()
                .map(|v| v.map_or("null".to_string(), |v| v.render()))
                .collect()
        })
        .collect()
}

/// `rows!["1", "a"; "2", "b"]` → `Vec<Vec<String>>`.
#[macro_export]
macro_rules! rows {
    () => { Vec::<Vec<String>>::new() };
    ($($($v:expr),+);+ $(;)?) => { vec![$(vec![$($v.to_string()),+]),+] };
}

pub fn int(v: i32) -> BoundValue {
    BoundValue::Bytes(v.to_be_bytes().to_vec())
}

pub fn bigint(v: i64) -> BoundValue {
    BoundValue::Bytes(v.to_be_bytes().to_vec())
}

pub fn text(v: &str) -> BoundValue {
    BoundValue::Bytes(v.as_bytes().to_vec())
}

pub fn opts(values: Vec<BoundValue>) -> QueryOptions {
    QueryOptions {
        values,
        ..QueryOptions::default()
    }
}

pub fn assert_msg(e: &ExecError, needle: &str) {
    let s = e.to_string();
    assert!(
        s.to_lowercase().contains(&needle.to_lowercase()),
        "error {e:?} does not mention {needle:?}"
    );
}

pub fn assert_invalid(e: &ExecError, needle: &str) {
    assert!(
        matches!(e, ExecError::Invalid(_)),
        "expected Invalid, got {e:?}"
    );
    assert_msg(e, needle);
}
