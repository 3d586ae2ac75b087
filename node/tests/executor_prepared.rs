//! Prepared statements: variable metadata as Cassandra names it, routing indices, named values,
//! validation of bound values, UNPREPARED.

mod executor_support;

use executor_support::*;
use ringdb_cql::types::{CqlType, CqlValue};
use ringdb_node::executor::{BoundValue, ExecError, QueryOptions, QueryResult};

fn names_types(p: &ringdb_node::executor::Prepared) -> Vec<(String, String)> {
    p.variables
        .iter()
        .map(|v| (v.name.clone(), v.ty.to_string()))
        .collect()
}

fn nt(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[tokio::test]
async fn variable_specs_and_pk_indices() {
    let mut db = Db::with_keyspace().await;
    db.q("CREATE TABLE t (k1 int, k2 text, c int, v int, l list<int>, m map<text, int>, PRIMARY KEY ((k1, k2), c))").await;
    let p = db
        .exec
        .prepare(
            &db.session,
            "INSERT INTO t (v, k2, c, k1) VALUES (?, ?, ?, ?) USING TTL ? AND TIMESTAMP ?",
        )
        .unwrap();
    assert_eq!(
        names_types(&p),
        nt(&[
            ("v", "int"),
            ("k2", "text"),
            ("c", "int"),
            ("k1", "int"),
            ("[ttl]", "int"),
            ("[timestamp]", "bigint")
        ])
    );
    assert_eq!(p.pk_indices, vec![3, 1]);
    assert!(p.result_columns.is_empty());
    assert_eq!(p.id.len(), 16);
    assert_eq!(p.variables[0].keyspace, "ks");
    assert_eq!(p.variables[0].table, "t");

    let p = db
        .exec
        .prepare(
            &db.session,
            "SELECT v FROM t WHERE k1 = ? AND k2 IN ? AND c > ? LIMIT ?",
        )
        .unwrap();
    assert_eq!(
        names_types(&p),
        nt(&[
            ("k1", "int"),
            ("in(k2)", "list<text>"),
            ("c", "int"),
            ("[limit]", "int")
        ])
    );
    assert!(p.pk_indices.is_empty(), "k2 is bound by IN");
    assert_eq!(p.result_columns.len(), 1);
    assert_eq!(p.result_columns[0].ty, CqlType::Int);

    let p = db
        .exec
        .prepare(
            &db.session,
            "SELECT * FROM t WHERE token(k1, k2) > ? PER PARTITION LIMIT ?",
        )
        .unwrap();
    assert_eq!(
        names_types(&p),
        nt(&[
            ("partition key token", "bigint"),
            ("[per_partition_limit]", "int")
        ])
    );

    let p = db
        .exec
        .prepare(
            &db.session,
            "UPDATE t SET l[?] = ?, m[?] = ?, v = ? WHERE k1 = ? AND k2 = ? AND c = ?",
        )
        .unwrap();
    assert_eq!(
        names_types(&p),
        nt(&[
            ("idx(l)", "int"),
            ("value(l)", "int"),
            ("key(m)", "text"),
            ("value(m)", "int"),
            ("v", "int"),
            ("k1", "int"),
            ("k2", "text"),
            ("c", "int")
        ])
    );
    assert_eq!(p.pk_indices, vec![5, 6]);

    let p = db
        .exec
        .prepare(
            &db.session,
            "DELETE m[?] FROM t WHERE k1 = ? AND k2 = ? AND c IN (?, ?)",
        )
        .unwrap();
    assert_eq!(
        names_types(&p),
        nt(&[
            ("key(m)", "text"),
            ("k1", "int"),
            ("k2", "text"),
            ("c", "int"),
            ("c", "int")
        ])
    );

    let p = db
        .exec
        .prepare(
            &db.session,
            "UPDATE t SET l = l + ?, m = m - ? WHERE k1 = 1 AND k2 = 'a' AND c = 1",
        )
        .unwrap();
    assert_eq!(
        names_types(&p),
        nt(&[("l", "list<int>"), ("m", "set<text>")])
    );

    let p = db
        .exec
        .prepare(
            &db.session,
            "SELECT * FROM t WHERE k1 = 1 AND k2 = 'a' AND (c) IN ?",
        )
        .unwrap();
    assert_eq!(p.variables.len(), 1);
}

#[tokio::test]
async fn execute_with_positional_and_named_values() {
    let mut db = Db::with_keyspace().await;
    db.q("CREATE TABLE t (k int, c int, v text, PRIMARY KEY (k, c))")
        .await;
    let ins = db
        .exec
        .prepare(&db.session, "INSERT INTO t (k, c, v) VALUES (?, ?, ?)")
        .unwrap();
    for c in 0..5 {
        db.exec
            .execute(
                &mut db.session,
                &ins.id,
                &opts(vec![int(1), int(c), text(&format!("v{c}"))]),
            )
            .await
            .unwrap();
    }
    let named = db
        .exec
        .prepare(
            &db.session,
            "SELECT v FROM t WHERE k = :key AND c >= :lo LIMIT :n",
        )
        .unwrap();
    assert_eq!(
        named
            .variables
            .iter()
            .map(|v| v.name.as_str())
            .collect::<Vec<_>>(),
        ["key", "lo", "n"]
    );
    let o = QueryOptions {
        values: vec![int(2), int(1), int(3)],
        names: Some(vec!["n".into(), "key".into(), "lo".into()]),
        ..QueryOptions::default()
    };
    let r = db
        .exec
        .execute(&mut db.session, &named.id, &o)
        .await
        .unwrap();
    assert_eq!(render(&r), rows!["v3"; "v4"]);
    // Named values on QUERY too.
    let r = db
        .try_opts("SELECT v FROM t WHERE k = :key AND c >= :lo LIMIT :n", &o)
        .await
        .unwrap();
    assert_eq!(render(&r), rows!["v3"; "v4"]);
    let sel_in = db
        .exec
        .prepare(&db.session, "SELECT c FROM t WHERE k = ? AND c IN ?")
        .unwrap();
    let list = BoundValue::Bytes(
        CqlValue::List(vec![CqlValue::Int(4), CqlValue::Int(0), CqlValue::Int(9)]).serialize(),
    );
    let r = db
        .exec
        .execute(&mut db.session, &sel_in.id, &opts(vec![int(1), list]))
        .await
        .unwrap();
    assert_eq!(render(&r), rows!["0"; "4"]);
}

#[tokio::test]
async fn bound_value_validation() {
    let mut db = Db::with_keyspace().await;
    db.q("CREATE TABLE t (k int PRIMARY KEY, v int, w text)")
        .await;
    let ins = db
        .exec
        .prepare(&db.session, "INSERT INTO t (k, v, w) VALUES (?, ?, ?)")
        .unwrap();
    let e = db
        .exec
        .execute(&mut db.session, &ins.id, &opts(vec![int(1), int(2)]))
        .await
        .unwrap_err();
    assert_invalid(&e, "markers");
    let e = db
        .exec
        .execute(
            &mut db.session,
            &ins.id,
            &opts(vec![int(1), BoundValue::Bytes(vec![1, 2, 3]), text("x")]),
        )
        .await
        .unwrap_err();
    assert_invalid(&e, "v");
    let e = db
        .exec
        .execute(
            &mut db.session,
            &ins.id,
            &opts(vec![BoundValue::Unset, int(1), text("x")]),
        )
        .await
        .unwrap_err();
    assert_invalid(&e, "unset");
    let e = db
        .exec
        .execute(
            &mut db.session,
            &ins.id,
            &opts(vec![BoundValue::Null, int(1), text("x")]),
        )
        .await
        .unwrap_err();
    assert_invalid(&e, "null");
    let e = db
        .exec
        .execute(
            &mut db.session,
            &ins.id,
            &opts(vec![int(1), int(1), BoundValue::Bytes(vec![0xFF, 0xFE])]),
        )
        .await
        .unwrap_err();
    assert_invalid(&e, "w");
    // Unset leaves a column alone; null deletes it.
    db.exec
        .execute(
            &mut db.session,
            &ins.id,
            &opts(vec![int(1), int(1), text("x")]),
        )
        .await
        .unwrap();
    db.exec
        .execute(
            &mut db.session,
            &ins.id,
            &opts(vec![int(1), BoundValue::Unset, BoundValue::Null]),
        )
        .await
        .unwrap();
    assert_eq!(
        db.rows("SELECT v, w FROM t WHERE k = 1").await,
        rows!["1", "null"]
    );
    let e = db
        .try_opts("SELECT * FROM t WHERE k = ?", &opts(vec![]))
        .await
        .unwrap_err();
    assert_invalid(&e, "markers");
    let named = QueryOptions {
        values: vec![int(1)],
        names: Some(vec!["other".into()]),
        ..QueryOptions::default()
    };
    let e = db
        .try_opts("SELECT * FROM t WHERE k = :key", &named)
        .await
        .unwrap_err();
    assert_invalid(&e, "key");
    let e = db
        .try_opts("SELECT * FROM t LIMIT ?", &opts(vec![BoundValue::Null]))
        .await
        .unwrap_err();
    assert_invalid(&e, "limit");
}

#[tokio::test]
async fn unprepared_and_deterministic_ids() {
    let mut db = Db::with_keyspace().await;
    db.q("CREATE TABLE t (k int PRIMARY KEY, v int)").await;
    let e = db
        .exec
        .execute(&mut db.session, &[7; 16], &opts(vec![]))
        .await
        .unwrap_err();
    assert_eq!(e, ExecError::Unprepared { id: vec![7; 16] });
    let a = db.exec.prepare(&db.session, "SELECT * FROM t").unwrap();
    let b = db.exec.prepare(&db.session, "SELECT * FROM t").unwrap();
    assert_eq!(a.id, b.id);
    let mut other = Db::with_keyspace().await;
    other.q("CREATE TABLE t (k int PRIMARY KEY, v int)").await;
    assert_eq!(
        other
            .exec
            .prepare(&other.session, "SELECT * FROM t")
            .unwrap()
            .id,
        a.id,
        "same id on every node"
    );
    let qualified = db
        .exec
        .prepare(&Default::default(), "SELECT * FROM ks.t")
        .unwrap();
    assert_ne!(qualified.id, a.id);
    // The keyspace of prepare time stays, whatever the session uses later.
    db.q("INSERT INTO t (k, v) VALUES (1, 1)").await;
    db.q("CREATE KEYSPACE other WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}").await;
    db.q("USE other").await;
    let r = db
        .exec
        .execute(&mut db.session, &a.id, &opts(vec![]))
        .await
        .unwrap();
    assert_eq!(render(&r), rows!["1", "1"]);
    // Preparing a statement on a missing table fails like Cassandra.
    assert_invalid(
        &db.exec.prepare(&db.session, "SELECT * FROM t").unwrap_err(),
        "unconfigured table t",
    );
    // USE through EXECUTE changes the session.
    let use_ks = db.exec.prepare(&db.session, "USE ks").unwrap();
    let r = db
        .exec
        .execute(&mut db.session, &use_ks.id, &opts(vec![]))
        .await
        .unwrap();
    assert_eq!(r, QueryResult::SetKeyspace("ks".into()));
    assert_eq!(db.session.keyspace.as_deref(), Some("ks"));
}

#[tokio::test]
async fn paging_through_prepared_in_query() {
    let mut db = Db::with_keyspace().await;
    db.q("CREATE TABLE t (k int, c int, PRIMARY KEY (k, c))")
        .await;
    let ins = db
        .exec
        .prepare(&db.session, "INSERT INTO t (k, c) VALUES (?, ?)")
        .unwrap();
    for k in 0..5 {
        for c in 0..30 {
            db.exec
                .execute(&mut db.session, &ins.id, &opts(vec![int(k), int(c)]))
                .await
                .unwrap();
        }
    }
    let sel = db
        .exec
        .prepare(&db.session, "SELECT k, c FROM t WHERE k IN ?")
        .unwrap();
    let list = BoundValue::Bytes(
        CqlValue::List(vec![CqlValue::Int(3), CqlValue::Int(1), CqlValue::Int(4)]).serialize(),
    );
    let mut all = Vec::new();
    let mut state = None;
    loop {
        let o = QueryOptions {
            values: vec![list.clone()],
            page_size: Some(7),
            paging_state: state.take(),
            ..QueryOptions::default()
        };
        let r = db.exec.execute(&mut db.session, &sel.id, &o).await.unwrap();
        let QueryResult::Rows { paging_state, .. } = &r else {
            panic!()
        };
        all.extend(render(&r));
        match paging_state {
            Some(s) => state = Some(s.clone()),
            None => break,
        }
    }
    assert_eq!(all.len(), 90);
    let ks: Vec<&str> = all.iter().map(|r| r[0].as_str()).collect();
    assert!(
        ks[..30].iter().all(|k| *k == "1")
            && ks[30..60].iter().all(|k| *k == "3")
            && ks[60..].iter().all(|k| *k == "4")
    );
}

mod fuzz {
    use super::executor_support::*;
    use proptest::prelude::*;
    use ringdb_node::executor::{BoundValue, QueryOptions};

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    fn value() -> impl Strategy<Value = BoundValue> {
        prop_oneof![
            Just(BoundValue::Null),
            Just(BoundValue::Unset),
            proptest::collection::vec(any::<u8>(), 0..24).prop_map(BoundValue::Bytes),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Arbitrary bound bytes, paging states and page sizes never panic the executor.
        #[test]
        fn arbitrary_bound_values_never_panic(
            values in proptest::collection::vec(value(), 0..12),
            paging in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
            page in proptest::option::of(-2i32..5),
            which in 0usize..8,
            exact in any::<bool>(),
        ) {
            runtime().block_on(async move {
                let mut db = Db::with_keyspace().await;
                db.q("CREATE TABLE t (k int, c text, s set<int> static, l list<frozen<map<int, text>>>, m map<text, blob>, tu tuple<int, varint, decimal>, d date, ts timestamp, PRIMARY KEY (k, c))").await;
                db.q("INSERT INTO t (k, c, l) VALUES (1, 'a', [{1: 'x'}])").await;
                let stmts = [
                    "INSERT INTO t (k, c, s, l, m, tu, d, ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?",
                    "UPDATE t SET l[?] = ?, m[?] = ?, s = s + ? WHERE k = ? AND c IN ?",
                    "DELETE m[?], l[?] FROM t USING TIMESTAMP ? WHERE k = ? AND c = ?",
                    "SELECT * FROM t WHERE k IN ? AND c > ? LIMIT ?",
                    "SELECT * FROM t WHERE token(k) > ? AND token(k) < ? PER PARTITION LIMIT ?",
                    "SELECT * FROM t WHERE k = ? AND (c) IN ? ORDER BY c DESC",
                    "SELECT count(*) FROM t WHERE s CONTAINS ? AND m CONTAINS KEY ? ALLOW FILTERING",
                    "SELECT * FROM system_schema.columns WHERE keyspace_name = ? AND table_name IN ?",
                ];
                let text = stmts[which];
                let mut values = values;
                if exact {
                    // Right number of values: exercise decoding, not just the count check.
                    let n = db.exec.prepare(&db.session, text).map(|p| p.variables.len()).unwrap_or(0);
                    values.resize(n, BoundValue::Null);
                }
                let o = QueryOptions { values, page_size: page, paging_state: paging.clone(), ..QueryOptions::default() };
                let _ = db.try_opts(text, &o).await;
                if let Ok(p) = db.exec.prepare(&db.session, text) {
                    let _ = db.exec.execute(&mut db.session, &p.id, &o).await;
                }
            });
        }
    }
}

#[tokio::test]
async fn named_markers_name_their_variables() {
    // Drivers bind a dict of named values by the variable names of the PREPARED result, so a
    // `:key` marker must be called `key`, not after the column it binds.
    let mut db = Db::with_keyspace().await;
    db.q("CREATE TABLE t (k int PRIMARY KEY, v text)").await;
    let p = db
        .exec
        .prepare(&db.session, "SELECT v FROM t WHERE k = :key")
        .unwrap();
    assert_eq!(names_types(&p), nt(&[("key", "int")]));
    assert_eq!(p.pk_indices, vec![0]);
    let p = db
        .exec
        .prepare(&db.session, "UPDATE t SET v = :val WHERE k = :k")
        .unwrap();
    assert_eq!(names_types(&p), nt(&[("val", "text"), ("k", "int")]));
}
