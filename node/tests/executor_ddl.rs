//! DDL round trips, Cassandra's rejections, persistence across reopen, DESCRIBE.

mod executor_support;

use std::sync::Arc;

use executor_support::*;
use ringdb_cql::ast::Statement;
use ringdb_cql::parser::parse_statement;
use ringdb_node::executor::{
    ExecError, QueryResult, SchemaChangeInfo, SchemaChangeKind, SchemaChangeTarget,
};
use ringdb_node::storage::SledEngine;

fn change(
    kind: SchemaChangeKind,
    target: SchemaChangeTarget,
    ks: &str,
    name: Option<&str>,
) -> QueryResult {
    QueryResult::SchemaChange(SchemaChangeInfo {
        change: kind,
        target,
        keyspace: ks.into(),
        name: name.map(|s| s.to_string()),
    })
}

#[tokio::test]
async fn keyspace_lifecycle() {
    let mut db = Db::new();
    let r = db.q("CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': '3'} AND durable_writes = false").await;
    assert_eq!(
        r,
        change(
            SchemaChangeKind::Created,
            SchemaChangeTarget::Keyspace,
            "ks",
            None
        )
    );
    let e = db.err("CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': '3'}").await;
    match &e {
        ExecError::AlreadyExists {
            keyspace,
            table,
            message,
        } => {
            assert_eq!(keyspace, "ks");
            assert!(table.is_empty());
            assert!(
                message.contains("Cannot add already existing keyspace \"ks\""),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(db.q("CREATE KEYSPACE IF NOT EXISTS ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': '3'}").await, QueryResult::Void);
    let r = db.q("ALTER KEYSPACE ks WITH replication = {'class': 'NetworkTopologyStrategy', 'datacenter1': 2}").await;
    assert_eq!(
        r,
        change(
            SchemaChangeKind::Updated,
            SchemaChangeTarget::Keyspace,
            "ks",
            None
        )
    );
    assert_eq!(
        db.rows("SELECT durable_writes, replication FROM system_schema.keyspaces WHERE keyspace_name = 'ks'").await,
        rows!["False", "{'class': 'org.apache.cassandra.locator.NetworkTopologyStrategy', 'datacenter1': '2'}"]
    );
    assert_eq!(db.q("USE ks").await, QueryResult::SetKeyspace("ks".into()));
    assert_eq!(db.session.keyspace.as_deref(), Some("ks"));
    let r = db.q("DROP KEYSPACE ks").await;
    assert_eq!(
        r,
        change(
            SchemaChangeKind::Dropped,
            SchemaChangeTarget::Keyspace,
            "ks",
            None
        )
    );
    assert_eq!(db.q("DROP KEYSPACE IF EXISTS ks").await, QueryResult::Void);
    assert_invalid(&db.err("DROP KEYSPACE ks").await, "ks");
    assert_invalid(&db.err("USE ks").await, "Keyspace 'ks' does not exist");
    assert_invalid(
        &db.err("CREATE KEYSPACE k2 WITH replication = {'class': 'Nope'}")
            .await,
        "Unable to find replication strategy class",
    );
    assert_invalid(
        &db.err("CREATE KEYSPACE k2 WITH replication = {'class': 'SimpleStrategy'}")
            .await,
        "replication",
    );
    assert!(matches!(
        db.err("ALTER KEYSPACE system WITH durable_writes = false")
            .await,
        ExecError::Unauthorized(_)
    ));
    assert!(matches!(
        db.err("DROP KEYSPACE system_schema").await,
        ExecError::Unauthorized(_)
    ));
    assert_invalid(
        &db.err("CREATE TABLE nope.t (k int PRIMARY KEY)").await,
        "Keyspace 'nope' does not exist",
    );
}

#[tokio::test]
async fn table_lifecycle_and_rejections() {
    let mut db = Db::with_keyspace().await;
    let r = db.q("CREATE TABLE t (k int PRIMARY KEY, v text)").await;
    assert_eq!(
        r,
        change(
            SchemaChangeKind::Created,
            SchemaChangeTarget::Table,
            "ks",
            Some("t")
        )
    );
    match db.err("CREATE TABLE ks.t (k int PRIMARY KEY)").await {
        ExecError::AlreadyExists {
            keyspace, table, ..
        } => assert_eq!((keyspace.as_str(), table.as_str()), ("ks", "t")),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        db.q("CREATE TABLE IF NOT EXISTS t (k int PRIMARY KEY)")
            .await,
        QueryResult::Void
    );
    assert_invalid(
        &db.err("CREATE TABLE u (k int, v int, PRIMARY KEY (x))")
            .await,
        "Unknown definition x referenced in PRIMARY KEY",
    );
    assert_invalid(
        &db.err("CREATE TABLE u (k int PRIMARY KEY, c counter)")
            .await,
        "counter",
    );
    assert_invalid(
        &db.err("CREATE TABLE u (k list<int> PRIMARY KEY)").await,
        "non-frozen collection",
    );
    assert_invalid(
        &db.err("CREATE TABLE u (k int, c set<int>, PRIMARY KEY (k, c))")
            .await,
        "non-frozen collection",
    );
    assert_invalid(
        &db.err("CREATE TABLE u (k int, v int, k text, PRIMARY KEY (k))")
            .await,
        "Multiple definition of identifier k",
    );
    assert_invalid(
        &db.err("CREATE TABLE u (k int PRIMARY KEY, v int) WITH nope = 1")
            .await,
        "Unknown property",
    );
    assert_invalid(
        &db.err(
            "CREATE TABLE u (k int, c int, PRIMARY KEY (k, c)) WITH CLUSTERING ORDER BY (k DESC)",
        )
        .await,
        "CLUSTERING ORDER",
    );
    assert_invalid(
        &db.err("CREATE TABLE u (k int PRIMARY KEY, l list<list<int>>)")
            .await,
        "Non-frozen collections are not allowed inside collections",
    );

    // ALTER TABLE ADD / DROP.
    db.q("INSERT INTO t (k, v) VALUES (1, 'a')").await;
    let r = db.q("ALTER TABLE t ADD w int").await;
    assert_eq!(
        r,
        change(
            SchemaChangeKind::Updated,
            SchemaChangeTarget::Table,
            "ks",
            Some("t")
        )
    );
    db.q("UPDATE t SET w = 5 WHERE k = 1").await;
    assert_eq!(db.rows("SELECT * FROM t").await, rows!["1", "a", "5"]);
    db.q("ALTER TABLE t DROP w").await;
    assert_eq!(db.rows("SELECT * FROM t").await, rows!["1", "a"]);
    // Re-adding a dropped column does not resurrect its data.
    db.q("ALTER TABLE t ADD w int").await;
    assert_eq!(db.rows("SELECT * FROM t").await, rows!["1", "a", "null"]);
    assert_invalid(
        &db.err("ALTER TABLE t DROP k").await,
        "Cannot drop PRIMARY KEY column k",
    );
    assert_invalid(&db.err("ALTER TABLE t DROP nope").await, "nope");
    assert_invalid(&db.err("ALTER TABLE t ADD v int").await, "already exists");
    db.q("ALTER TABLE t WITH comment = 'c' AND gc_grace_seconds = 10")
        .await;
    assert_eq!(
        db.rows("SELECT comment, gc_grace_seconds FROM system_schema.tables WHERE keyspace_name = 'ks' AND table_name = 't'").await,
        rows!["c", "10"]
    );

    // DROP TABLE truncates: a new table of the same name starts empty.
    let r = db.q("DROP TABLE t").await;
    assert_eq!(
        r,
        change(
            SchemaChangeKind::Dropped,
            SchemaChangeTarget::Table,
            "ks",
            Some("t")
        )
    );
    assert_invalid(&db.err("SELECT * FROM t").await, "unconfigured table t");
    db.q("CREATE TABLE t (k int PRIMARY KEY, v text)").await;
    assert_eq!(db.rows("SELECT * FROM t").await, rows![]);
    assert_eq!(db.q("DROP TABLE IF EXISTS nope").await, QueryResult::Void);
    // DROP KEYSPACE drops data too.
    db.q("INSERT INTO t (k, v) VALUES (1, 'a')").await;
    db.q("DROP KEYSPACE ks").await;
    db.q("CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}").await;
    db.q("CREATE TABLE ks.t (k int PRIMARY KEY, v text)").await;
    assert_eq!(db.rows("SELECT * FROM ks.t").await, rows![]);
}

#[tokio::test]
async fn schema_and_data_survive_reopen_with_sled() {
    let dir = tempfile::tempdir().unwrap();
    let version;
    let weak;
    {
        let engine = Arc::new(SledEngine::open(dir.path(), 8 << 20).unwrap());
        weak = Arc::downgrade(&engine);
        let mut db = Db::with_engine(engine);
        db.q("CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}").await;
        db.q("CREATE TABLE ks.t (k int, c int, m map<text, int>, PRIMARY KEY (k, c)) WITH CLUSTERING ORDER BY (c DESC) AND default_time_to_live = 1000").await;
        db.q("ALTER TABLE ks.t ADD extra text").await;
        db.q("ALTER TABLE ks.t DROP extra").await;
        db.q("INSERT INTO ks.t (k, c, m) VALUES (1, 2, {'a': 1})")
            .await;
        db.q("INSERT INTO ks.t (k, c, m) VALUES (1, 3, {'b': 2})")
            .await;
        version = db.exec.schema().version();
    }
    // The commit flusher task lets go of the engine once it sees its handles dropped.
    for _ in 0..500 {
        if weak.strong_count() == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let engine = Arc::new(SledEngine::open(dir.path(), 8 << 20).unwrap());
    let mut db = Db::with_engine(engine);
    assert_eq!(
        db.exec.schema().version(),
        version,
        "same schema after reopen, same version"
    );
    assert_eq!(
        db.rows("SELECT c, m FROM ks.t WHERE k = 1").await,
        rows!["3", "{'b': 2}"; "2", "{'a': 1}"]
    );
    assert_eq!(
        db.rows("SELECT default_time_to_live FROM system_schema.tables WHERE keyspace_name = 'ks'")
            .await,
        rows!["1000"]
    );
    assert_eq!(
        db.rows("SELECT column_name FROM system_schema.dropped_columns")
            .await,
        rows!["extra"]
    );
    db.q("ALTER TABLE ks.t ADD extra2 text").await;
    assert_eq!(
        db.columns("SELECT * FROM ks.t").await,
        ["k", "c", "extra2", "m"]
    );
}

/// DESCRIBE rows as raw text (no cqlsh escaping of newlines).
async fn describe_rows(db: &mut Db, text: &str) -> Vec<Vec<String>> {
    db.values(text)
        .await
        .into_iter()
        .map(|r| {
            r.into_iter()
                .map(|v| match v {
                    Some(ringdb_cql::types::CqlValue::Text(s)) => s,
                    other => panic!("{other:?}"),
                })
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn describe_output_parses_back_and_recreates() {
    let mut db = Db::with_keyspace().await;
    db.q(r#"CREATE TABLE "Weird" ("Key" int, "from" text, c2 timeuuid, s set<text> static, m frozen<map<int, list<text>>>, v tuple<int, text>, PRIMARY KEY (("Key", "from"), c2)) WITH CLUSTERING ORDER BY (c2 DESC) AND comment = 'it''s' AND default_time_to_live = 5"#).await;
    db.q("CREATE TABLE plain (k int PRIMARY KEY, v int)").await;
    let rows = describe_rows(&mut db, "DESCRIBE KEYSPACE ks").await;
    assert_eq!(rows.len(), 3);
    assert_eq!(
        rows[0][..3],
        ["ks".to_string(), "keyspace".into(), "ks".into()]
    );
    // Every statement parses, and executing them on a fresh node recreates an equal schema.
    let mut fresh = Db::new();
    for r in &rows {
        let stmt = parse_statement(&r[3]).unwrap_or_else(|e| panic!("{}\n{e}", r[3]));
        assert!(matches!(
            stmt,
            Statement::CreateKeyspace(_) | Statement::CreateTable(_)
        ));
        fresh.q(&r[3]).await;
    }
    let cols = "SELECT table_name, column_name, kind, position, clustering_order, type FROM system_schema.columns WHERE keyspace_name = 'ks'";
    assert_eq!(fresh.rows(cols).await, db.rows(cols).await);
    let opts = "SELECT table_name, comment, default_time_to_live, caching, compaction FROM system_schema.tables WHERE keyspace_name = 'ks'";
    assert_eq!(fresh.rows(opts).await, db.rows(opts).await);
    let ks = "SELECT * FROM system_schema.keyspaces WHERE keyspace_name = 'ks'";
    assert_eq!(fresh.rows(ks).await, db.rows(ks).await);

    let t = describe_rows(&mut db, "DESCRIBE TABLE plain").await;
    assert_eq!(t.len(), 1);
    assert!(
        t[0][3].starts_with("CREATE TABLE ks.plain (\n    k int PRIMARY KEY,\n    v int\n) WITH"),
        "{}",
        t[0][3]
    );
    let t = describe_rows(&mut db, "DESC ks.\"Weird\"").await;
    assert!(
        t[0][3].contains("PRIMARY KEY ((\"Key\", \"from\"), c2)"),
        "{}",
        t[0][3]
    );
    assert!(
        t[0][3].contains("CLUSTERING ORDER BY (c2 DESC)"),
        "{}",
        t[0][3]
    );
    assert!(t[0][3].contains("s set<text> static"), "{}", t[0][3]);
}

#[tokio::test]
async fn describe_listings_and_cluster() {
    let mut db = Db::with_keyspace().await;
    db.q("CREATE TABLE a (k int PRIMARY KEY)").await;
    db.q("CREATE TABLE b (k int PRIMARY KEY)").await;
    let r = db.q("DESCRIBE KEYSPACES").await;
    assert_eq!(
        specs(&r)
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["keyspace_name", "type", "name"]
    );
    let names: Vec<String> = render(&r).into_iter().map(|r| r[2].clone()).collect();
    assert!(names.contains(&"ks".to_string()) && names.contains(&"system".to_string()));
    assert_eq!(
        db.rows("DESCRIBE TABLES").await,
        rows!["ks", "table", "a"; "ks", "table", "b"]
    );
    let r = db.q("DESCRIBE CLUSTER").await;
    assert_eq!(
        specs(&r)
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["cluster", "partitioner", "snitch"]
    );
    assert_eq!(
        render(&r)[0][..2],
        [
            "Test Cluster".to_string(),
            "org.apache.cassandra.dht.Murmur3Partitioner".into()
        ]
    );
    let full = db.rows("DESCRIBE FULL SCHEMA").await;
    let partial = db.rows("DESCRIBE SCHEMA").await;
    assert_eq!(partial.len(), 3);
    assert!(full.len() > partial.len() + 10);
    assert_eq!(db.rows("DESCRIBE ks").await.len(), 3);
    assert_eq!(db.rows("DESCRIBE a").await.len(), 1);
    assert_invalid(&db.err("DESCRIBE TABLE nope").await, "nope");
    assert_invalid(&db.err("DESCRIBE KEYSPACE nope").await, "nope");
    let mut no_ks = Db::new();
    assert_invalid(&no_ks.err("DESCRIBE KEYSPACE").await, "keyspace");
    assert!(no_ks
        .rows("DESCRIBE TABLES")
        .await
        .iter()
        .any(|r| r[0] == "system_schema"));
}
