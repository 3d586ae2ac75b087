//! Authentication and authorization in-process: a real node with `authenticator: password`,
//! driven by the crate's own client (real drivers and cqlsh are exercised by tests/python).

use std::time::{Duration, Instant};

use ringdb_cql::client::{
    Client, ClientError, ClientOptions, Credentials, QueryOptions, QueryResult, NO_VALUES,
};
use ringdb_cql::types::CqlValue;
use ringdb_node::config::{Authenticator, Config, Secret};
use ringdb_node::server::{self, StartOptions};
use tokio::io::AsyncReadExt;

const UNAUTHORIZED: i32 = 0x2100;

async fn start_node(dir: &std::path::Path) -> server::RunningNode {
    let config = Config {
        data_dir: dir.join("data"),
        native_transport_port: 0,
        storage_port: 0,
        prometheus_port: 0,
        admin_port: 0,
        authenticator: Authenticator::Password,
        auth_superuser_password: Some(Secret("root-pw".into())),
        auth_max_failed_logins: 4,
        native_transport_idle_startup_timeout_ms: 700,
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

fn creds(user: &str, password: &str) -> ClientOptions {
    ClientOptions {
        credentials: Some(Credentials {
            username: user.into(),
            password: password.into(),
        }),
        ..ClientOptions::default()
    }
}

async fn login(
    node: &server::RunningNode,
    user: &str,
    password: &str,
) -> Result<Client, ClientError> {
    Client::connect(node.cql_addr(), creds(user, password)).await
}

async fn q(c: &Client, cql: &str) -> Result<QueryResult, ClientError> {
    c.query(cql, NO_VALUES, &QueryOptions::default()).await
}

fn code(r: Result<QueryResult, ClientError>) -> Option<i32> {
    r.err().and_then(|e| e.server_code())
}

fn first_column(r: QueryResult) -> Vec<String> {
    let QueryResult::Rows(rows) = r else {
        panic!("expected rows, got {r:?}")
    };
    rows.rows
        .iter()
        .map(|row| match &row[0] {
            Some(CqlValue::Text(s)) => s.clone(),
            other => panic!("expected text, got {other:?}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_logins_and_permissions() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(dir.path()).await;

    // The superuser is written in the background at start.
    let deadline = Instant::now() + Duration::from_secs(20);
    let admin = loop {
        match login(&node, "cassandra", "root-pw").await {
            Ok(c) => break c,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("superuser cannot log in: {e}"),
        }
    };

    // No credentials, a wrong password, an unknown role: refused.
    let err = Client::connect(node.cql_addr(), ClientOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Auth(_)), "{err}");
    let err = login(&node, "cassandra", "nope").await.unwrap_err();
    assert!(err.to_string().contains("incorrect"), "{err}");
    assert!(login(&node, "nobody", "x").await.is_err());

    q(&admin, "CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}").await.unwrap();
    q(&admin, "CREATE TABLE ks.t (k int PRIMARY KEY, v text)")
        .await
        .unwrap();
    q(&admin, "INSERT INTO ks.t (k, v) VALUES (1, 'one')")
        .await
        .unwrap();
    q(
        &admin,
        "CREATE ROLE alice WITH PASSWORD = 'a-pw' AND LOGIN = true",
    )
    .await
    .unwrap();
    q(
        &admin,
        "CREATE ROLE IF NOT EXISTS alice WITH PASSWORD = 'other'",
    )
    .await
    .unwrap();
    assert_eq!(code(q(&admin, "CREATE ROLE alice").await), Some(0x2200));
    q(&admin, "CREATE ROLE nologin WITH PASSWORD = 'n'")
        .await
        .unwrap();
    assert!(
        login(&node, "nologin", "n").await.is_err(),
        "LOGIN defaults to false"
    );

    let alice = login(&node, "alice", "a-pw").await.unwrap();
    // Nothing granted yet: data is refused, what drivers read on connect is not.
    assert_eq!(
        code(q(&alice, "SELECT * FROM ks.t").await),
        Some(UNAUTHORIZED)
    );
    q(&alice, "SELECT * FROM system.local").await.unwrap();
    q(&alice, "SELECT * FROM system_schema.tables")
        .await
        .unwrap();
    assert_eq!(
        code(q(&alice, "SELECT * FROM system_auth.roles").await),
        Some(UNAUTHORIZED)
    );
    assert_eq!(code(q(&alice, "CREATE ROLE eve").await), Some(UNAUTHORIZED));
    assert_eq!(
        code(q(&alice, "LIST ALL PERMISSIONS").await),
        Some(UNAUTHORIZED)
    );
    assert_eq!(
        code(q(&alice, "GRANT SELECT ON KEYSPACE ks TO alice").await),
        Some(UNAUTHORIZED)
    );

    q(&admin, "GRANT SELECT ON KEYSPACE ks TO alice")
        .await
        .unwrap();
    let r = q(&alice, "SELECT v FROM ks.t WHERE k = 1").await.unwrap();
    assert_eq!(first_column(r), vec!["one".to_string()]);
    assert_eq!(
        code(q(&alice, "INSERT INTO ks.t (k, v) VALUES (2, 'two')").await),
        Some(UNAUTHORIZED)
    );
    assert_eq!(
        code(
            q(
                &alice,
                "BEGIN BATCH INSERT INTO ks.t (k, v) VALUES (2, 'two'); APPLY BATCH"
            )
            .await
        ),
        Some(UNAUTHORIZED)
    );
    assert_eq!(code(q(&alice, "DROP TABLE ks.t").await), Some(UNAUTHORIZED));

    q(&admin, "GRANT MODIFY ON TABLE ks.t TO alice")
        .await
        .unwrap();
    q(&alice, "INSERT INTO ks.t (k, v) VALUES (2, 'two')")
        .await
        .unwrap();

    let roles = first_column(q(&admin, "LIST ROLES").await.unwrap());
    assert_eq!(roles, vec!["alice", "cassandra", "nologin"]);
    assert_eq!(
        first_column(q(&alice, "LIST ROLES").await.unwrap()),
        vec!["alice"]
    );
    let QueryResult::Rows(perms) = q(&admin, "LIST ALL PERMISSIONS OF alice").await.unwrap() else {
        panic!("rows expected")
    };
    let listed: Vec<(String, String)> = perms
        .rows
        .iter()
        .map(|r| match (&r[2], &r[3]) {
            (Some(CqlValue::Text(res)), Some(CqlValue::Text(p))) => (res.clone(), p.clone()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        listed,
        vec![
            ("<keyspace ks>".to_string(), "SELECT".to_string()),
            ("<table ks.t>".to_string(), "MODIFY".to_string()),
        ]
    );

    q(&admin, "REVOKE SELECT ON KEYSPACE ks FROM alice")
        .await
        .unwrap();
    assert_eq!(
        code(q(&alice, "SELECT * FROM ks.t").await),
        Some(UNAUTHORIZED)
    );

    // A role changes its own password, not its own status.
    q(&alice, "ALTER ROLE alice WITH PASSWORD = 'b-pw'")
        .await
        .unwrap();
    assert_eq!(
        code(q(&alice, "ALTER ROLE alice WITH SUPERUSER = true").await),
        Some(UNAUTHORIZED)
    );
    assert!(login(&node, "alice", "a-pw").await.is_err());
    let alice2 = login(&node, "alice", "b-pw").await.unwrap();
    q(&admin, "ALTER ROLE alice WITH SUPERUSER = true")
        .await
        .unwrap();
    q(&alice2, "SELECT * FROM ks.t").await.unwrap();

    // A dropped role can no longer log in, and its sessions lose their rights.
    q(&admin, "DROP ROLE alice").await.unwrap();
    q(&admin, "DROP ROLE IF EXISTS alice").await.unwrap();
    assert!(login(&node, "alice", "b-pw").await.is_err());
    assert_eq!(
        code(q(&alice2, "SELECT * FROM ks.t").await),
        Some(UNAUTHORIZED)
    );
    assert_eq!(
        code(q(&admin, "DROP ROLE cassandra").await),
        Some(0x2200),
        "a role cannot drop itself"
    );

    // An idle connection that never sends STARTUP is closed after the startup timeout.
    let mut idle = tokio::net::TcpStream::connect(node.cql_addr())
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(10), idle.read(&mut buf))
        .await
        .expect("the server closes an idle connection")
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without an answer");
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );

    // Repeated failures lock the address out, even for the right password.
    for _ in 0..4 {
        assert!(login(&node, "cassandra", "guess").await.is_err());
    }
    let err = login(&node, "cassandra", "root-pw").await.unwrap_err();
    assert!(
        err.to_string().contains("Too many failed login attempts"),
        "{err}"
    );

    node.shutdown().await;
}
