//! The CQL server in-process: a real node started with `server::start` on an ephemeral port,
//! driven by the crate's own client. (Real drivers are exercised by the `tests/` tier.)

use std::time::Duration;

use ringdb_cql::client::{Client, ClientOptions, QueryOptions, QueryResult, NO_VALUES};
use ringdb_cql::message::{Event, SchemaChangeTarget, SchemaChangeType};
use ringdb_node::config::Config;
use ringdb_node::server::{self, StartOptions};

async fn start_node(dir: &std::path::Path) -> server::RunningNode {
    let config = Config {
        data_dir: dir.join("data"),
        native_transport_port: 0,
        storage_port: 0,
        prometheus_port: 0,
        ..Config::default()
    };
    server::start(
        config,
        StartOptions {
            install_metrics: false,
        },
    )
    .await
    .expect("node starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_connections_get_schema_change_events_from_other_connections() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(dir.path()).await;
    let listener = Client::connect(node.cql_addr(), ClientOptions::default())
        .await
        .unwrap();
    let mut events = listener.events();
    listener.register(&["SCHEMA_CHANGE"]).await.unwrap();
    let unregistered = Client::connect(node.cql_addr(), ClientOptions::default())
        .await
        .unwrap();
    let mut quiet = unregistered.events();

    let writer = Client::connect(node.cql_addr(), ClientOptions::default())
        .await
        .unwrap();
    let opts = QueryOptions::default();
    writer
        .query(
            "CREATE KEYSPACE ev WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
            NO_VALUES,
            &opts,
        )
        .await
        .unwrap();
    writer
        .query("CREATE TABLE ev.t (k int PRIMARY KEY)", NO_VALUES, &opts)
        .await
        .unwrap();

    let mut seen = Vec::new();
    while seen.len() < 2 {
        match tokio::time::timeout(Duration::from_secs(5), events.recv()).await {
            Ok(Some(Event::SchemaChange(c))) => {
                seen.push((c.change_type, c.target, c.keyspace, c.name))
            }
            Ok(Some(other)) => panic!("unexpected event {other:?}"),
            Ok(None) | Err(_) => panic!("expected two schema events, got {seen:?}"),
        }
    }
    assert_eq!(
        seen,
        vec![
            (
                SchemaChangeType::Created,
                SchemaChangeTarget::Keyspace,
                "ev".to_string(),
                String::new()
            ),
            (
                SchemaChangeType::Created,
                SchemaChangeTarget::Table,
                "ev".to_string(),
                "t".to_string()
            ),
        ]
    );
    // A connection that did not REGISTER gets nothing.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), quiet.recv())
            .await
            .is_err()
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_and_schema_survive_a_graceful_restart() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(dir.path()).await;
    let c = Client::connect(node.cql_addr(), ClientOptions::default())
        .await
        .unwrap();
    let opts = QueryOptions::default();
    for q in [
        "CREATE KEYSPACE r WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
        "CREATE TABLE r.t (k int PRIMARY KEY, v text)",
        "INSERT INTO r.t (k, v) VALUES (1, 'one')",
    ] {
        c.query(q, NO_VALUES, &opts).await.unwrap();
    }
    drop(c);
    node.shutdown().await;

    let node = start_node(dir.path()).await;
    let c = Client::connect(node.cql_addr(), ClientOptions::default())
        .await
        .unwrap();
    match c
        .query("SELECT v FROM r.t WHERE k = 1", NO_VALUES, &opts)
        .await
        .unwrap()
    {
        QueryResult::Rows(rows) => {
            assert_eq!(rows.rows.len(), 1);
            assert_eq!(
                rows.rows[0][0].as_ref().map(|v| v.render()),
                Some("one".to_string())
            );
        }
        other => panic!("expected rows, got {other:?}"),
    }
    node.shutdown().await;
}
