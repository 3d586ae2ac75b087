//! System tables as drivers read them, through QUERY and PREPARE/EXECUTE.

mod executor_support;

use std::net::{IpAddr, Ipv4Addr};

use executor_support::*;
use ringdb_cql::types::{CqlType, CqlValue};
use ringdb_node::executor::{
    ClusterInfo, EndpointStatus, ExecError, PeerInfo, QueryOptions, QueryResult,
};

fn col<'a>(r: &'a QueryResult, name: &str) -> (usize, &'a CqlType) {
    let specs = specs(r);
    let i = specs
        .iter()
        .position(|c| c.name == name)
        .unwrap_or_else(|| panic!("no column {name}"));
    (i, &specs[i].ty)
}

#[tokio::test]
async fn system_local_has_one_row_with_driver_types() {
    let mut db = Db::new();
    for q in [
        "SELECT * FROM system.local WHERE key='local'",
        "SELECT * FROM system.local",
    ] {
        let r = db.q(q).await;
        let rows = decode(&r);
        assert_eq!(rows.len(), 1);
        let row = &rows[0];
        let expect = [
            ("key", CqlType::Text),
            ("bootstrapped", CqlType::Text),
            ("broadcast_address", CqlType::Inet),
            ("cluster_name", CqlType::Text),
            ("cql_version", CqlType::Text),
            ("data_center", CqlType::Text),
            ("gossip_generation", CqlType::Int),
            ("host_id", CqlType::Uuid),
            ("listen_address", CqlType::Inet),
            ("native_protocol_version", CqlType::Text),
            ("partitioner", CqlType::Text),
            ("rack", CqlType::Text),
            ("release_version", CqlType::Text),
            ("rpc_address", CqlType::Inet),
            ("rpc_port", CqlType::Int),
            ("schema_version", CqlType::Uuid),
            ("tokens", CqlType::Set(Box::new(CqlType::Text))),
        ];
        for (name, ty) in expect {
            let (i, t) = col(&r, name);
            assert_eq!(t, &ty, "{name}");
            assert!(row[i].is_some() || name == "truncated_at", "{name} is null");
        }
        assert_eq!(
            row[col(&r, "release_version").0],
            Some(CqlValue::Text("4.1.0".into()))
        );
        assert_eq!(
            row[col(&r, "cql_version").0],
            Some(CqlValue::Text("3.4.6".into()))
        );
        assert_eq!(
            row[col(&r, "bootstrapped").0],
            Some(CqlValue::Text("COMPLETED".into()))
        );
        match &row[col(&r, "tokens").0] {
            Some(CqlValue::Set(t)) => {
                assert_eq!(t.len(), 3);
                for tok in t {
                    let CqlValue::Text(s) = tok else { panic!() };
                    s.parse::<i64>().unwrap();
                }
            }
            other => panic!("{other:?}"),
        }
        assert!(specs(&r).iter().all(|c| c.name != "dse_version"));
    }
    assert_eq!(
        db.rows("SELECT cluster_name, release_version FROM system.local")
            .await,
        rows!["Test Cluster", "4.1.0"]
    );
    assert_eq!(
        db.rows("SELECT key FROM system.local WHERE key = 'other'")
            .await,
        rows![]
    );
}

#[tokio::test]
async fn schema_version_is_stable_and_changes_with_ddl() {
    let mut db = Db::new();
    let v = |r: Vec<Vec<Option<CqlValue>>>| r[0][0].clone().unwrap();
    let v1 = v(db
        .values("SELECT schema_version FROM system.local WHERE key='local'")
        .await);
    let v1b = v(db.values("SELECT schema_version FROM system.local").await);
    assert_eq!(v1, v1b);
    assert_ne!(v1, CqlValue::Uuid([0; 16]));
    db.q("CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}").await;
    let v2 = v(db.values("SELECT schema_version FROM system.local").await);
    assert_ne!(v1, v2);
    db.q("DROP KEYSPACE ks").await;
    let v3 = v(db.values("SELECT schema_version FROM system.local").await);
    assert_eq!(v1, v3, "same schema, same version");
    // Two nodes that never talked, with no user schema: same version.
    let mut other = Db::new();
    assert_eq!(
        v1,
        v(other
            .values("SELECT schema_version FROM system.local")
            .await)
    );
}

#[tokio::test]
async fn peers_are_empty_then_supplied() {
    let mut db = Db::new();
    assert_eq!(db.rows("SELECT * FROM system.peers").await, rows![]);
    assert_eq!(db.rows("SELECT * FROM system.peers_v2").await, rows![]);
    db.exec.set_cluster_info(|| ClusterInfo {
        peers: vec![PeerInfo {
            peer: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
            peer_port: 7001,
            rpc_address: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
            rpc_port: 9042,
            host_id: uuid::Uuid::from_u128(7),
            dc: "dc1".into(),
            rack: "r1".into(),
            tokens: vec![5, -5],
            release_version: "4.1.0".into(),
            schema_version: Some(uuid::Uuid::from_u128(9)),
        }],
        endpoints: vec![EndpointStatus {
            peer: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
            storage_port: 7001,
            host_id: Some(uuid::Uuid::from_u128(7)),
            dc: Some("dc1".into()),
            rack: Some("r1".into()),
            status: "NORMAL".into(),
            up: false,
            load: Some(1234),
            tokens: vec![5, -5],
            generation: 17,
            heartbeat: 99,
            schema_version: None,
            native_address: Some("127.0.0.2:9042".parse().unwrap()),
            release_version: Some("4.1.0".into()),
            local: false,
            pending_hints: 3,
        }],
        local_generation: Some(1_800_000_000),
    });
    assert_eq!(
        db.rows("SELECT peer, data_center, rack, tokens, host_id FROM system.peers")
            .await,
        rows![
            "127.0.0.2",
            "dc1",
            "r1",
            "{'-5', '5'}",
            "00000000-0000-0000-0000-000000000007"
        ]
    );
    assert_eq!(
        db.rows("SELECT native_port, peer_port FROM system.peers_v2")
            .await,
        rows!["9042", "7001"]
    );
    assert_eq!(
        db.rows("SELECT gossip_generation FROM system.local").await,
        rows!["1800000000"]
    );
    // The local row is synthesized when gossip supplies none; the peer's comes from gossip.
    assert_eq!(
        db.rows("SELECT peer, storage_port, status, up, load, generation, local, pending_hints FROM system_views.cluster_status")
            .await,
        rows![
            "127.0.0.1", "7000", "NORMAL", "True", "null", "1800000000", "True", "0";
            "127.0.0.2", "7001", "NORMAL", "False", "1234", "17", "False", "3"
        ]
    );
}

#[tokio::test]
async fn system_schema_lists_user_and_system_objects_and_honours_filters() {
    let mut db = Db::with_keyspace().await;
    db.q("CREATE TABLE t (k int, c text, s int static, v list<int>, PRIMARY KEY (k, c)) WITH CLUSTERING ORDER BY (c DESC) AND comment = 'hi'").await;
    let ks = db.rows("SELECT keyspace_name, durable_writes, replication FROM system_schema.keyspaces WHERE keyspace_name = 'ks'").await;
    assert_eq!(
        ks,
        rows![
            "ks",
            "True",
            "{'class': 'org.apache.cassandra.locator.SimpleStrategy', 'replication_factor': '1'}"
        ]
    );
    let names: Vec<String> = db
        .rows("SELECT keyspace_name FROM system_schema.keyspaces")
        .await
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    for k in [
        "ks",
        "system",
        "system_schema",
        "system_auth",
        "system_distributed",
        "system_traces",
    ] {
        assert!(names.contains(&k.to_string()), "{k} missing");
    }
    let t = db.rows("SELECT table_name, flags, comment, gc_grace_seconds, default_time_to_live FROM system_schema.tables WHERE keyspace_name = 'ks' AND table_name = 't'").await;
    assert_eq!(t, rows!["t", "{'compound'}", "hi", "864000", "0"]);
    // Types of the options columns, as Cassandra 4 declares them.
    let r = db
        .q("SELECT * FROM system_schema.tables WHERE keyspace_name = 'ks'")
        .await;
    assert_eq!(
        col(&r, "caching").1,
        &CqlType::Map(Box::new(CqlType::Text), Box::new(CqlType::Text))
    );
    assert_eq!(col(&r, "flags").1, &CqlType::Set(Box::new(CqlType::Text)));
    assert_eq!(col(&r, "id").1, &CqlType::Uuid);
    assert_eq!(col(&r, "bloom_filter_fp_chance").1, &CqlType::Double);
    assert_eq!(
        col(&r, "extensions").1,
        &CqlType::Map(Box::new(CqlType::Text), Box::new(CqlType::Blob))
    );
    let cols = db
        .rows("SELECT column_name, kind, position, clustering_order, type FROM system_schema.columns WHERE keyspace_name = 'ks' AND table_name = 't'")
        .await;
    assert_eq!(
        cols,
        rows![
            "c", "clustering", "0", "desc", "text";
            "k", "partition_key", "0", "none", "int";
            "s", "static", "-1", "none", "int";
            "v", "regular", "-1", "none", "list<int>"
        ]
    );
    // System tables describe themselves.
    let sys = db
        .rows("SELECT table_name FROM system_schema.tables WHERE keyspace_name = 'system'")
        .await;
    assert_eq!(sys, rows!["local"; "peers"; "peers_v2"]);
    assert!(!db.rows("SELECT * FROM system_schema.columns WHERE keyspace_name = 'system_schema' AND table_name = 'columns'").await.is_empty());
    for empty in [
        "types",
        "functions",
        "aggregates",
        "triggers",
        "indexes",
        "views",
        "dropped_columns",
    ] {
        assert_eq!(
            db.rows(&format!("SELECT * FROM system_schema.{empty}"))
                .await,
            rows![],
            "{empty}"
        );
    }
    db.q("ALTER TABLE t DROP s").await;
    let d = db.rows("SELECT column_name, kind, type FROM system_schema.dropped_columns WHERE keyspace_name = 'ks'").await;
    assert_eq!(d, rows!["s", "static", "int"]);
    assert_eq!(
        db.rows(
            "SELECT count(*) FROM system_schema.keyspaces WHERE keyspace_name IN ('ks', 'system')"
        )
        .await,
        rows!["2"]
    );
}

#[tokio::test]
async fn virtual_schema_and_scylla_tables_are_invalid_on_query_and_prepare() {
    let mut db = Db::new();
    for q in [
        "SELECT * FROM system_virtual_schema.keyspaces",
        "SELECT * FROM system_virtual_schema.tables",
        "SELECT * FROM system_schema.scylla_keyspaces",
        "SELECT keyspace_name, table_name FROM system_schema.scylla_tables WHERE keyspace_name = ?",
    ] {
        let e = db.err(q.replace('?', "'x'").as_str()).await;
        assert!(matches!(e, ExecError::Invalid(_)), "{q}: {e:?}");
        let e = db.exec.prepare(&db.session, q).unwrap_err();
        assert!(matches!(e, ExecError::Invalid(_)), "{q}: {e:?}");
    }
}

#[tokio::test]
async fn system_tables_through_prepare_and_execute() {
    let mut db = Db::with_keyspace().await;
    db.q("CREATE TABLE t (k int PRIMARY KEY, v int)").await;
    let p = db
        .exec
        .prepare(
            &db.session,
            "SELECT * FROM system_schema.tables WHERE keyspace_name = ? AND table_name = ?",
        )
        .unwrap();
    assert_eq!(p.variables.len(), 2);
    assert_eq!(p.variables[0].name, "keyspace_name");
    assert_eq!(p.variables[0].ty, CqlType::Text);
    assert_eq!(p.variables[1].name, "table_name");
    assert_eq!(p.pk_indices, vec![0]);
    assert!(p.result_columns.iter().any(|c| c.name == "flags"));
    let r = db
        .exec
        .execute(&mut db.session, &p.id, &opts(vec![text("ks"), text("t")]))
        .await
        .unwrap();
    assert_eq!(decode(&r).len(), 1);
    let p = db
        .exec
        .prepare(
            &db.session,
            "SELECT schema_version FROM system.local WHERE key='local'",
        )
        .unwrap();
    let o = QueryOptions {
        page_size: Some(1024),
        ..QueryOptions::default()
    };
    let r = db.exec.execute(&mut db.session, &p.id, &o).await.unwrap();
    assert!(matches!(decode(&r)[0][0], Some(CqlValue::Uuid(_))));
    let p = db
        .exec
        .prepare(
            &db.session,
            "SELECT peer, rpc_address, host_id, tokens FROM system.peers",
        )
        .unwrap();
    assert_eq!(p.result_columns[2].ty, CqlType::Uuid);
    assert_eq!(
        p.result_columns[3].ty,
        CqlType::Set(Box::new(CqlType::Text))
    );
}
