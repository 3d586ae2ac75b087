//! INSERT, UPDATE, DELETE, BATCH and SELECT semantics against the in-memory engine.

mod executor_support;

use executor_support::*;
use ringdb_cql::types::CqlValue;
use ringdb_node::executor::{BatchItem, BatchKind, ExecError, QueryResult};

#[tokio::test]
async fn insert_select_roundtrip_and_column_order() {
    let mut db = Db::with_keyspace().await;
    db.q("CREATE TABLE t (k int, c text, b int, a text, s int static, PRIMARY KEY (k, c))")
        .await;
    db.q("INSERT INTO t (k, c, a, b, s) VALUES (1, 'x', 'aa', 2, 7)")
        .await;
    db.q("INSERT INTO t (k, c, a) VALUES (1, 'y', 'bb')").await;
    assert_eq!(
        db.columns("SELECT * FROM t").await,
        ["k", "c", "s", "a", "b"]
    );
    assert_eq!(
        db.rows("SELECT * FROM t").await,
        rows!["1", "x", "7", "aa", "2"; "1", "y", "7", "bb", "null"]
    );
    assert_eq!(
        db.rows("SELECT a, k AS key FROM t WHERE k = 1 AND c = 'y'")
            .await,
        rows!["bb", "1"]
    );
    assert_eq!(db.columns("SELECT a, k AS key FROM t").await, ["a", "key"]);
}

#[tokio::test]
async fn row_exists_with_only_key_columns_after_insert_but_not_update() {
    let mut db = Db::with_keyspace().await;
    db.q("CREATE TABLE t (k int PRIMARY KEY, v int)").await;
    db.q("INSERT INTO t (k) VALUES (1)").await;
    db.q("UPDATE t SET v = null WHERE k = 2").await;
    db.q("UPDATE t SET v = 3 WHERE k = 3").await;
    assert_eq!(
        db.rows("SELECT * FROM t WHERE k IN (1, 2, 3)").await,
        rows!["1", "null"; "3", "3"]
    );
    // Deleting the only cell of an UPDATEd row removes the row.
    db.q("DELETE v FROM t WHERE k = 3").await;
    assert_eq!(db.rows("SELECT * FROM t WHERE k = 3").await, rows![]);
    // An INSERTed row survives deleting its cells.
    db.q("INSERT INTO t (k, v) VALUES (4, 4)").await;
    db.q("DELETE v FROM t WHERE k = 4").await;
    assert_eq!(
        db.rows("SELECT * FROM t WHERE k = 4").await,
        rows!["4", "null"]
    );
}

#[tokio::test]
async fn null_insert_writes_tombstone_and_lww_with_explicit_timestamps() {
    let mut db = Db::with_keyspace().await;
    db.q("CREATE TABLE t (k int PRIMARY KEY, v text)").await;
    db.q("INSERT INTO t (k, v) VALUES (1, 'new') USING TIMESTAMP 2000")
        .await;
    db.q("INSERT INTO t (k, v) VALUES (1, 'old') USING TIMESTAMP 1000")
        .await;
    assert_eq!(
        db.rows("SELECT v, writetime(v) FROM t WHERE k = 1").await,
        rows!["new", "2000"]
    );
    db.q("INSERT INTO t (k, v) VALUES (1, null) USING TIMESTAMP 3000")
        .await;
    assert_eq!(db.rows("SELECT v FROM t WHERE k = 1").await, rows!["null"]);
    db.q("UPDATE t USING TIMESTAMP 2500 SET v = 'lost' WHERE k = 1")
        .await;
    assert_eq!(db.rows("SELECT v FROM t WHERE k = 1").await, rows!["null"]);
    // A delete with an older timestamp does not remove newer data.
    db.q("INSERT INTO t (k, v) VALUES (2, 'x') USING TIMESTAMP 5000")
        .await;
    db.q("DELETE FROM t USING TIMESTAMP 4000 WHERE k = 2").await;
    assert_eq!(db.rows("SELECT v FROM t WHERE k = 2").await, rows!["x"]);
    db.q("DELETE FROM t USING TIMESTAMP 5000 WHERE k = 2").await;
    assert_eq!(db.rows("SELECT v FROM t WHERE k = 2").await, rows![]);
}

#[tokio::test]
async fn client_default_timestamp_is_used() {
    let mut db = Db::with_keyspace().await;
    db.q("CREATE TABLE t (k int PRIMARY KEY, v int)").await;
    let mut o = opts(vec![]);
    o.timestamp = Some(777);
    db.try_opts("INSERT INTO t (k, v) VALUES (1, 1)", &o)
        .await
        .unwrap();
    assert_eq!(
        db.rows("SELECT writetime(v) FROM t WHERE k = 1").await,
        rows!["777"]
    );
}

#[tokio::test]
async fn ttl_expiry_and_ttl_function() {
    let mut db = Db::with_keyspace().await;
    db.q("CREATE TABLE t (k int PRIMARY KEY, v int, w int)")
        .await;
    db.q("INSERT INTO t (k, v) VALUES (1, 1) USING TTL 100")
        .await;
    db.q("UPDATE t USING TTL 10 SET w = 5 WHERE k = 1").await;
    assert_eq!(
        db.rows("SELECT v, ttl(v), w, ttl(w) FROM t WHERE k = 1")
            .await,
        rows!["1", "100", "5", "10"]
    );
    db.wall.advance_secs(30);
    assert_eq!(
        db.rows("SELECT v, ttl(v), w, ttl(w) FROM t WHERE k = 1")
            .await,
        rows!["1", "70", "null", "null"]
    );
    db.wall.advance_secs(70);
    assert_eq!(db.rows("SELECT * FROM t").await, rows![]);
    // No TTL: ttl() is null. TTL 0 means none.
    db.q("INSERT INTO t (k, v) VALUES (2, 2) USING TTL 0").await;
    assert_eq!(
        db.rows("SELECT ttl(v) FROM t WHERE k = 2").await,
        rows!["null"]
    );
    let e = db
        .err("INSERT INTO t (k, v) VALUES (3, 3) USING TTL 630720001")
        .await;
    assert_invalid(&e, "ttl is too large");
    let e = db
        .err("INSERT INTO t (k, v) VALUES (3, 3) USING TTL -1")
        .await;
    assert_invalid(&e, "greater or equal to 0");
}

#[tokio::test]
async fn default_time_to_live_applies() {
    let mut db = Db::with_keyspace().await;
    db.q("CREATE TABLE t (k int PRIMARY KEY, v int) WITH default_time_to_live = 50")
        .await;
    db.q("INSERT INTO t (k, v) VALUES (1, 1)").await;
    db.q("INSERT INTO t (k, v) VALUES (2, 2) USING TTL 0").await;
    assert_eq!(db.rows("SELECT k, ttl(v) FROM t").await.len(), 2);
    db.wall.advance_secs(51);
    assert_eq!(db.rows("SELECT k FROM t").await, rows!["2"]);
}

#[tokio::test]
async fn static_columns() {
    let mut db = Db::with_keyspace().await;
    db.q("CREATE TABLE t (k int, c int, s text static, v int, PRIMARY KEY (k, c))")
        .await;
    // Static-only insert: a row with nulls for clustering and regular columns.
    db.q("INSERT INTO t (k, s) VALUES (1, 'st')").await;
    assert_eq!(
        db.rows("SELECT * FROM t").await,
        rows!["1", "null", "st", "null"]
    );
    db.q("INSERT INTO t (k, c, v) VALUES (1, 1, 10)").await;
    db.q("INSERT INTO t (k, c, v) VALUES (1, 2, 20)").await;
    assert_eq!(
        db.rows("SELECT * FROM t").await,
        rows!["1", "1", "st", "10"; "1", "2", "st", "20"]
    );
    db.q("UPDATE t SET s = 'changed' WHERE k = 1").await;
    assert_eq!(
        db.rows("SELECT s FROM t WHERE k = 1 AND c = 2").await,
        rows!["changed"]
    );
    assert_eq!(
        db.rows("SELECT DISTINCT k, s FROM t").await,
        rows!["1", "changed"]
    );
    // With a clustering restriction no static-only row appears.
    db.q("INSERT INTO t (k, s) VALUES (2, 'only')").await;
    assert_eq!(
        db.rows("SELECT * FROM t WHERE k = 2 AND c = 1").await,
        rows![]
    );
    assert_eq!(
        db.rows("SELECT * FROM t WHERE k = 2").await,
        rows!["2", "null", "only", "null"]
    );
    // Range deletions of rows never touch the static row, even once purged.
    db.q("DELETE FROM t WHERE k = 1 AND c < 5").await;
    db.q("DELETE FROM t WHERE k = 1 AND c >= 5").await;
    assert_eq!(
        db.rows("SELECT * FROM t WHERE k = 1").await,
        rows!["1", "null", "changed", "null"]
    );
    let id = db.exec.schema().table("ks", "t").unwrap().id;
    db.wall.advance_secs(10);
    db.engine.purge(id, START_SECS + 10, 0).unwrap();
    assert_eq!(
        db.rows("SELECT * FROM t WHERE k = 1").await,
        rows!["1", "null", "changed", "null"]
    );
    let e = db
        .err("CREATE TABLE bad (k int PRIMARY KEY, s int static)")
        .await;
    assert_invalid(&e, "static columns are only useful");
}

#[tokio::test]
async fn collections_non_frozen() {
    let mut db = Db::with_keyspace().await;
    db.q("CREATE TABLE t (k int PRIMARY KEY, l list<int>, s set<text>, m map<text, int>)")
        .await;
    db.q("INSERT INTO t (k, l, s, m) VALUES (1, [1, 2], {'b', 'a'}, {'x': 1})")
        .await;
    assert_eq!(
        db.rows("SELECT l, s, m FROM t WHERE k = 1").await,
        rows!["[1, 2]", "{'a', 'b'}", "{'x': 1}"]
    );
    db.q("UPDATE t SET l = l + [3], s = s + {'c'}, m = m + {'y': 2} WHERE k = 1")
        .await;
    db.q("UPDATE t SET l = [0] + l WHERE k = 1").await;
    assert_eq!(
        db.rows("SELECT l, s, m FROM t WHERE k = 1").await,
        rows!["[0, 1, 2, 3]", "{'a', 'b', 'c'}", "{'x': 1, 'y': 2}"]
    );
    db.q("UPDATE t SET l[1] = 10, m['x'] = 100 WHERE k = 1")
        .await;
    assert_eq!(
        db.rows("SELECT l, m FROM t WHERE k = 1").await,
        rows!["[0, 10, 2, 3]", "{'x': 100, 'y': 2}"]
    );
    db.q("UPDATE t SET l = l - [2], s = s - {'a'}, m = m - {'y'} WHERE k = 1")
        .await;
    assert_eq!(
        db.rows("SELECT l, s, m FROM t WHERE k = 1").await,
        rows!["[0, 10, 3]", "{'b', 'c'}", "{'x': 100}"]
    );
    db.q("DELETE l[0], m['x'] FROM t WHERE k = 1").await;
    assert_eq!(
        db.rows("SELECT l, m FROM t WHERE k = 1").await,
        rows!["[10, 3]", "null"]
    );
    // Overwrite replaces the whole collection.
    db.q("UPDATE t SET s = {'z'} WHERE k = 1").await;
    assert_eq!(db.rows("SELECT s FROM t WHERE k = 1").await, rows!["{'z'}"]);
    db.q("DELETE s FROM t WHERE k = 1").await;
    assert_eq!(db.rows("SELECT s FROM t WHERE k = 1").await, rows!["null"]);
    // Empty collection reads as null.
    db.q("UPDATE t SET s = {} WHERE k = 1").await;
    assert_eq!(db.rows("SELECT s FROM t WHERE k = 1").await, rows!["null"]);
    let e = db.err("UPDATE t SET l[9] = 1 WHERE k = 1").await;
    assert_invalid(&e, "out of bound");
    let e = db.err("INSERT INTO t (k, l) VALUES (2, [1, null])").await;
    assert_invalid(&e, "null is not supported inside collections");
}

#[tokio::test]
async fn collections_frozen() {
    let mut db = Db::with_keyspace().await;
    db.q("CREATE TABLE t (k int PRIMARY KEY, l frozen<list<int>>, s frozen<set<int>>, m frozen<map<int, text>>, tu tuple<int, text>)").await;
    db.q(
        "INSERT INTO t (k, l, s, m, tu) VALUES (1, [3, 1], {3, 1, 3}, {2: 'b', 1: 'a'}, (1, 'x'))",
    )
    .await;
    assert_eq!(
        db.rows("SELECT l, s, m, tu, writetime(l) FROM t WHERE k = 1")
            .await[0][..4]
            .to_vec(),
        vec!["[3, 1]", "{1, 3}", "{1: 'a', 2: 'b'}", "(1, 'x')"]
    );
    let e = db.err("UPDATE t SET l = l + [1] WHERE k = 1").await;
    assert_invalid(&e, "frozen collection");
    // Frozen collections as clustering keys.
    db.q("CREATE TABLE f (k int, c frozen<set<int>>, v int, PRIMARY KEY (k, c))")
        .await;
    db.q("INSERT INTO f (k, c, v) VALUES (1, {2, 1}, 1)").await;
    db.q("INSERT INTO f (k, c, v) VALUES (1, {1}, 2)").await;
    assert_eq!(
        db.rows("SELECT c, v FROM f WHERE k = 1").await,
        rows!["{1}", "2"; "{1, 2}", "1"]
    );
    assert_eq!(
        db.rows("SELECT v FROM f WHERE k = 1 AND c = {1, 2}").await,
        rows!["1"]
    );
}

#[tokio::test]
async fn clustering_slices_and_order() {
    let mut db = Db::with_keyspace().await;
    db.q("CREATE TABLE t (k int, c1 int, c2 int, v int, PRIMARY KEY (k, c1, c2)) WITH CLUSTERING ORDER BY (c1 ASC, c2 DESC)").await;
    for c1 in 0..3 {
        for c2 in 0..3 {
            db.q(&format!(
                "INSERT INTO t (k, c1, c2, v) VALUES (1, {c1}, {c2}, {})",
                c1 * 10 + c2
            ))
            .await;
        }
    }
    let v = |rows: Vec<Vec<String>>| rows.into_iter().map(|r| r[0].clone()).collect::<Vec<_>>();
    assert_eq!(
        v(db.rows("SELECT v FROM t WHERE k = 1").await),
        ["2", "1", "0", "12", "11", "10", "22", "21", "20"]
    );
    assert_eq!(
        v(db.rows("SELECT v FROM t WHERE k = 1 AND c1 = 1").await),
        ["12", "11", "10"]
    );
    assert_eq!(
        v(db.rows("SELECT v FROM t WHERE k = 1 AND c1 = 1 AND c2 > 0")
            .await),
        ["12", "11"]
    );
    assert_eq!(
        v(
            db.rows("SELECT v FROM t WHERE k = 1 AND c1 = 1 AND c2 >= 1 AND c2 < 2")
                .await
        ),
        ["11"]
    );
    assert_eq!(
        v(
            db.rows("SELECT v FROM t WHERE k = 1 AND c1 > 0 AND c1 <= 1")
                .await
        ),
        ["12", "11", "10"]
    );
    assert_eq!(
        v(
            db.rows("SELECT v FROM t WHERE k = 1 AND c1 IN (2, 0) AND c2 = 1")
                .await
        ),
        ["1", "21"]
    );
    // Tuple comparisons follow the values' natural order, whatever the clustering order
    // (CASSANDRA-7281); rows still come back in clustering order.
    assert_eq!(
        v(db.rows("SELECT v FROM t WHERE k = 1 AND (c1, c2) > (1, 1)")
            .await),
        ["12", "22", "21", "20"]
    );
    assert_eq!(
        v(
            db.rows("SELECT v FROM t WHERE k = 1 AND (c1, c2) >= (1, 1) AND (c1, c2) < (2, 1)")
                .await
        ),
        ["12", "11", "20"]
    );
    assert_eq!(
        v(
            db.rows("SELECT v FROM t WHERE k = 1 AND (c1, c2) IN ((0, 0), (2, 2))")
                .await
        ),
        ["0", "22"]
    );
    assert_eq!(
        v(
            db.rows("SELECT v FROM t WHERE k = 1 ORDER BY c1 DESC, c2 ASC")
                .await
        ),
        ["20", "21", "22", "10", "11", "12", "0", "1", "2"]
    );
    assert_eq!(
        v(
            db.rows("SELECT v FROM t WHERE k = 1 AND c1 = 0 ORDER BY c1 DESC LIMIT 2")
                .await
        ),
        ["0", "1"]
    );
    assert_eq!(
        v(db.rows("SELECT v FROM t WHERE k = 1 LIMIT 4").await),
        ["2", "1", "0", "12"]
    );
    let e = db
        .err("SELECT v FROM t WHERE k = 1 ORDER BY c1 DESC, c2 DESC")
        .await;
    assert_invalid(&e, "order by");
    let e = db.err("SELECT v FROM t ORDER BY c1 DESC").await;
    assert_invalid(
        &e,
        "ORDER BY is only supported when the partition key is restricted",
    );
    let e = db.err("SELECT v FROM t WHERE k = 1 ORDER BY v").await;
    assert_invalid(
        &e,
        "Order by is currently only supported on the clustered columns",
    );
}

#[tokio::test]
async fn per_partition_limit_and_limit() {
    let mut db = Db::with_keyspace().await;
    db.q("CREATE TABLE t (k int, c int, PRIMARY KEY (k, c))")
        .await;
    for k in 0..3 {
        for c in 0..4 {
            db.q(&format!("INSERT INTO t (k, c) VALUES ({k}, {c})"))
                .await;
        }
    }
    let r = db.rows("SELECT k, c FROM t PER PARTITION LIMIT 2").await;
    assert_eq!(r.len(), 6);
    assert!(r.chunks(2).all(|p| p[0][1] == "0" && p[1][1] == "1"));
    assert_eq!(
        db.rows("SELECT k, c FROM t PER PARTITION LIMIT 1 LIMIT 2")
            .await
            .len(),
        2
    );
    let e = db.err("SELECT * FROM t LIMIT 0").await;
    assert_invalid(&e, "LIMIT must be strictly positive");
}

#[tokio::test]
async fn deletes_of_every_kind() {
    let mut db = Db::with_keyspace().await;
    db.q("CREATE TABLE t (k int, c1 int, c2 int, v int, PRIMARY KEY (k, c1, c2))")
        .await;
    let fill: Vec<String> = (0..3)
        .flat_map(|c1| {
            (0..3).map(move |c2| format!("INSERT INTO t (k, c1, c2, v) VALUES (1, {c1}, {c2}, 1)"))
        })
        .collect();
    for s in fill {
        db.q(&s).await;
    }
    let count = |r: Vec<Vec<String>>| r[0][0].clone();
    // Row deletion.
    db.q("DELETE FROM t WHERE k = 1 AND c1 = 0 AND c2 = 0")
        .await;
    assert_eq!(
        count(db.rows("SELECT count(*) FROM t WHERE k = 1").await),
        "8"
    );
    // Clustering prefix (range deletion).
    db.q("DELETE FROM t WHERE k = 1 AND c1 = 1").await;
    assert_eq!(
        count(db.rows("SELECT count(*) FROM t WHERE k = 1").await),
        "5"
    );
    // Slice range deletion.
    db.q("DELETE FROM t WHERE k = 1 AND c1 = 2 AND c2 >= 1")
        .await;
    assert_eq!(
        db.rows("SELECT c1, c2 FROM t WHERE k = 1").await,
        rows!["0", "1"; "0", "2"; "2", "0"]
    );
    db.q("DELETE FROM t WHERE k = 1 AND c1 < 1").await;
    assert_eq!(
        db.rows("SELECT c1, c2 FROM t WHERE k = 1").await,
        rows!["2", "0"]
    );
    // Cell tombstone.
    db.q("DELETE v FROM t WHERE k = 1 AND c1 = 2 AND c2 = 0")
        .await;
    assert_eq!(db.rows("SELECT v FROM t WHERE k = 1").await, rows!["null"]);
    // Partition deletion, then re-insert is visible again.
    db.q("DELETE FROM t WHERE k = 1").await;
    assert_eq!(db.rows("SELECT * FROM t").await, rows![]);
    db.q("INSERT INTO t (k, c1, c2, v) VALUES (1, 0, 0, 5)")
        .await;
    assert_eq!(db.rows("SELECT v FROM t").await, rows!["5"]);
    // IN on the partition key deletes each.
    db.q("INSERT INTO t (k, c1, c2, v) VALUES (2, 0, 0, 5)")
        .await;
    db.q("DELETE FROM t WHERE k IN (1, 2)").await;
    assert_eq!(db.rows("SELECT * FROM t").await, rows![]);
    let e = db.err("DELETE v FROM t WHERE k = 1 AND c1 = 1").await;
    assert_invalid(&e, "Some clustering keys are missing: c2");
    let e = db.err("DELETE FROM t WHERE c1 = 1").await;
    assert_invalid(&e, "partition key parts are missing: k");
    let e = db.err("DELETE FROM t WHERE k = 1 AND v = 1").await;
    assert_invalid(&e, "Non PRIMARY KEY columns found in where clause: v");
}

#[tokio::test]
async fn update_rejections_and_in() {
    let mut db = Db::with_keyspace().await;
    db.q("CREATE TABLE t (k1 int, k2 int, c int, v int, PRIMARY KEY ((k1, k2), c))")
        .await;
    let e = db.err("UPDATE t SET v = 1 WHERE k1 = 1 AND c = 1").await;
    assert_invalid(&e, "Some partition key parts are missing: k2");
    let e = db.err("UPDATE t SET v = 1 WHERE k1 = 1 AND k2 = 1").await;
    assert_invalid(&e, "Some clustering keys are missing: c");
    let e = db
        .err("UPDATE t SET k1 = 1 WHERE k1 = 1 AND k2 = 1 AND c = 1")
        .await;
    assert_invalid(&e, "PRIMARY KEY part k1 found in SET part");
    let e = db.err("INSERT INTO t (k1, c, v) VALUES (1, 1, 1)").await;
    assert_invalid(&e, "Some partition key parts are missing: k2");
    let e = db.err("INSERT INTO t (k1, k2, v) VALUES (1, 1, 1)").await;
    assert_invalid(&e, "Some clustering keys are missing: c");
    let e = db
        .err("INSERT INTO t (k1, k2, c, nope) VALUES (1, 1, 1, 1)")
        .await;
    assert_invalid(&e, "Undefined column name nope");
    let e = db
        .err("INSERT INTO t (k1, k2, c, v) VALUES (1, 1, 1, 'text')")
        .await;
    assert_invalid(&e, "v");
    let e = db
        .err("INSERT INTO t (k1, k2, c, v) VALUES (1, 1, 1, 1) IF NOT EXISTS")
        .await;
    assert_invalid(&e, "Conditional updates are not supported");
    db.q("UPDATE t SET v = 9 WHERE k1 IN (1, 2) AND k2 = 1 AND c IN (1, 2)")
        .await;
    assert_eq!(db.rows("SELECT count(*) FROM t").await, rows!["4"]);
    assert_eq!(
        db.rows("SELECT k1, c, v FROM t WHERE k1 = 2 AND k2 = 1")
            .await,
        rows!["2", "1", "9"; "2", "2", "9"]
    );
}

#[tokio::test]
async fn filtering_requires_allow_filtering() {
    let mut db = Db::with_keyspace().await;
    db.q("CREATE TABLE t (k int, c1 int, c2 int, v int, l list<int>, PRIMARY KEY (k, c1, c2))")
        .await;
    for i in 0..10 {
        db.q(&format!(
            "INSERT INTO t (k, c1, c2, v, l) VALUES ({}, {}, {i}, {i}, [{i}])",
            i % 3,
            i % 2
        ))
        .await;
    }
    let e = db.err("SELECT * FROM t WHERE v = 1").await;
    assert_invalid(&e, "ALLOW FILTERING");
    let e = db.err("SELECT * FROM t WHERE c1 = 1").await;
    assert_invalid(&e, "ALLOW FILTERING");
    let e = db.err("SELECT * FROM t WHERE k = 1 AND c2 = 1").await;
    assert_invalid(
        &e,
        "cannot be restricted as preceding column \"c1\" is not restricted",
    );
    assert_eq!(
        db.rows("SELECT v FROM t WHERE v > 6 ALLOW FILTERING")
            .await
            .len(),
        3
    );
    assert_eq!(
        db.rows("SELECT v FROM t WHERE k = 1 AND c2 = 4 ALLOW FILTERING")
            .await,
        rows!["4"]
    );
    assert_eq!(
        db.rows("SELECT v FROM t WHERE c1 = 1 AND v < 5 ALLOW FILTERING")
            .await
            .len(),
        2
    );
    assert_eq!(
        db.rows("SELECT v FROM t WHERE l CONTAINS 3 ALLOW FILTERING")
            .await,
        rows!["3"]
    );
    assert_eq!(
        db.rows("SELECT v FROM t WHERE v IN (1, 2, 99) ALLOW FILTERING")
            .await
            .len(),
        2
    );
    let e = db.err("SELECT * FROM t WHERE v != 1 ALLOW FILTERING").await;
    assert_invalid(&e, "!=");
    let e = db.err("SELECT * FROM t WHERE nope = 1").await;
    assert_invalid(&e, "Undefined column name nope");
    let e = db
        .err("SELECT * FROM t WHERE v CONTAINS 1 ALLOW FILTERING")
        .await;
    assert_invalid(&e, "CONTAINS on non-collection");
}

#[tokio::test]
async fn select_functions() {
    let mut db = Db::with_keyspace().await;
    db.q("CREATE TABLE t (k int PRIMARY KEY, u timeuuid, id uuid, ts timestamp, b blob)")
        .await;
    db.q("INSERT INTO t (k, u, id, ts, b) VALUES (1, now(), uuid(), toTimestamp(now()), textAsBlob('hi'))").await;
    let cols = db
        .columns("SELECT token(k), toTimestamp(u), now(), count(*) FROM t")
        .await;
    assert_eq!(
        cols,
        [
            "system.token(k)",
            "system.totimestamp(u)",
            "system.now()",
            "count"
        ]
    );
    let v = db.values("SELECT token(k), toTimestamp(u), ts, blobAsText(b), toUnixTimestamp(u) FROM t WHERE k = 1").await;
    assert_eq!(v[0][0], Some(CqlValue::BigInt(-4069959284402364209)));
    let wall_ms = START_SECS * 1000;
    match (&v[0][1], &v[0][2]) {
        (Some(CqlValue::Timestamp(a)), Some(CqlValue::Timestamp(b))) => {
            assert!((*a - wall_ms).abs() < 1000, "{a} vs {wall_ms}");
            assert!((*b - wall_ms).abs() < 1000);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(v[0][3], Some(CqlValue::Text("hi".into())));
    assert_eq!(v[0][4], Some(CqlValue::BigInt(wall_ms)));
    let e = db.err("SELECT writetime(k) FROM t").await;
    assert_invalid(&e, "PRIMARY KEY part k");
    let e = db.err("SELECT token(id) FROM t").await;
    assert_invalid(&e, "token");
    let e = db.err("SELECT nope(k) FROM t").await;
    assert_invalid(&e, "Unknown function");
}

#[tokio::test]
async fn aggregates() {
    let mut db = Db::with_keyspace().await;
    db.q("CREATE TABLE t (k int, c int, v int, d double, PRIMARY KEY (k, c))")
        .await;
    for i in 1..=4 {
        db.q(&format!(
            "INSERT INTO t (k, c, v, d) VALUES (1, {i}, {}, {i}.5)",
            i * 10
        ))
        .await;
    }
    db.q("INSERT INTO t (k, c) VALUES (1, 5)").await;
    assert_eq!(
        db.rows("SELECT count(*), count(1), count(v), min(v), max(v), sum(v), avg(v), sum(d) FROM t WHERE k = 1").await,
        rows!["5", "5", "4", "10", "40", "100", "25", "12"]
    );
    assert_eq!(
        db.columns("SELECT count(v), max(v) FROM t").await,
        ["system.count(v)", "system.max(v)"]
    );
    assert_eq!(
        db.rows("SELECT count(*) FROM t WHERE k = 99").await,
        rows!["0"]
    );
}

#[tokio::test]
async fn batches() {
    let mut db = Db::with_keyspace().await;
    db.q("CREATE TABLE t (k int, c int, v int, PRIMARY KEY (k, c))")
        .await;
    db.q("CREATE TABLE u (k int PRIMARY KEY, v int)").await;
    db.q("BEGIN BATCH INSERT INTO t (k, c, v) VALUES (1, 1, 1); INSERT INTO t (k, c, v) VALUES (1, 2, 2); UPDATE u SET v = 3 WHERE k = 1; DELETE FROM t WHERE k = 1 AND c = 2 APPLY BATCH").await;
    // All statements share one timestamp: the delete at the same timestamp wins over the insert.
    assert_eq!(
        db.rows("SELECT c, v FROM t WHERE k = 1").await,
        rows!["1", "1"]
    );
    assert_eq!(db.rows("SELECT v FROM u").await, rows!["3"]);
    db.q("BEGIN UNLOGGED BATCH USING TIMESTAMP 10 INSERT INTO u (k, v) VALUES (2, 2) APPLY BATCH")
        .await;
    assert_eq!(
        db.rows("SELECT writetime(v) FROM u WHERE k = 2").await,
        rows!["10"]
    );
    let e = db.err("BEGIN BATCH USING TIMESTAMP 10 INSERT INTO u (k, v) VALUES (2, 2) USING TIMESTAMP 11 APPLY BATCH").await;
    assert_invalid(
        &e,
        "Timestamp must be set either on BATCH or individual statements",
    );
    let e = db
        .err("BEGIN COUNTER BATCH UPDATE u SET v = v + 1 WHERE k = 1 APPLY BATCH")
        .await;
    assert!(matches!(e, ExecError::Invalid(_)), "{e:?}");

    // The protocol's BATCH message, mixing text and prepared statements.
    let p = db
        .exec
        .prepare(&db.session, "INSERT INTO u (k, v) VALUES (?, ?)")
        .unwrap();
    let items = vec![
        BatchItem::Query("INSERT INTO u (k, v) VALUES (10, 10)".into(), vec![]),
        BatchItem::Prepared(p.id.clone(), vec![int(11), int(11)]),
        BatchItem::Query(
            "UPDATE u SET v = ? WHERE k = ?".into(),
            vec![int(12), int(12)],
        ),
    ];
    let r = db
        .exec
        .batch(&mut db.session, BatchKind::Logged, items, &opts(vec![]))
        .await
        .unwrap();
    assert_eq!(r, QueryResult::Void);
    assert_eq!(
        db.rows("SELECT k, v FROM u WHERE k IN (10, 11, 12)").await,
        rows!["10", "10"; "11", "11"; "12", "12"]
    );
    let e = db
        .exec
        .batch(
            &mut db.session,
            BatchKind::Logged,
            vec![BatchItem::Query("SELECT * FROM u".into(), vec![])],
            &opts(vec![]),
        )
        .await
        .unwrap_err();
    assert_invalid(&e, "only UPDATE, INSERT and DELETE");
    let e = db
        .exec
        .batch(
            &mut db.session,
            BatchKind::Logged,
            vec![BatchItem::Prepared(vec![0; 16], vec![])],
            &opts(vec![]),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, ExecError::Unprepared { .. }));
}

#[tokio::test]
async fn writes_to_system_keyspaces_are_refused() {
    let mut db = Db::with_keyspace().await;
    let e = db.err("INSERT INTO system.local (key) VALUES ('x')").await;
    assert!(matches!(e, ExecError::Unauthorized(_)), "{e:?}");
    let e = db.err("TRUNCATE system_schema.tables").await;
    assert!(matches!(e, ExecError::Unauthorized(_)), "{e:?}");
    let e = db.err("DROP TABLE system.peers").await;
    assert!(matches!(e, ExecError::Unauthorized(_)), "{e:?}");
}

#[tokio::test]
async fn truncate_removes_data() {
    let mut db = Db::with_keyspace().await;
    db.q("CREATE TABLE t (k int PRIMARY KEY, v int)").await;
    for i in 0..5 {
        db.q(&format!("INSERT INTO t (k, v) VALUES ({i}, {i})"))
            .await;
    }
    db.q("TRUNCATE t").await;
    assert_eq!(db.rows("SELECT * FROM t").await, rows![]);
    db.q("INSERT INTO t (k, v) VALUES (1, 1)").await;
    assert_eq!(db.rows("SELECT * FROM t").await, rows!["1", "1"]);
}

#[tokio::test]
async fn composite_partition_keys_and_tokens() {
    let mut db = Db::with_keyspace().await;
    db.q("CREATE TABLE t (a int, b text, v int, PRIMARY KEY ((a, b)))")
        .await;
    db.q("INSERT INTO t (a, b, v) VALUES (1, 'x', 1)").await;
    db.q("INSERT INTO t (a, b, v) VALUES (2, 'y', 2)").await;
    assert_eq!(
        db.rows("SELECT v FROM t WHERE a = 2 AND b = 'y'").await,
        rows!["2"]
    );
    assert_eq!(
        db.rows("SELECT a, b FROM t WHERE a IN (1, 2) AND b IN ('x', 'y')")
            .await
            .len(),
        2
    );
    let toks = db.values("SELECT token(a, b) FROM t").await;
    let mut sorted = toks.clone();
    sorted.sort_by_key(|r| match r[0] {
        Some(CqlValue::BigInt(t)) => t,
        _ => 0,
    });
    assert_eq!(toks, sorted, "full scans return partitions in token order");
    let e = db.err("SELECT * FROM t WHERE a = 1").await;
    assert_invalid(&e, "ALLOW FILTERING");
    assert_eq!(
        db.rows("SELECT v FROM t WHERE a = 1 ALLOW FILTERING").await,
        rows!["1"]
    );
}

#[tokio::test]
async fn value_validation() {
    let mut db = Db::with_keyspace().await;
    db.q("CREATE TABLE t (k text PRIMARY KEY, v int)").await;
    let e = db.err("INSERT INTO t (k, v) VALUES ('', 1)").await;
    assert_invalid(&e, "Key may not be empty");
    let e = db.err("INSERT INTO t (k, v) VALUES (null, 1)").await;
    assert_invalid(&e, "null");
    let e = db
        .err("INSERT INTO t (k, v) VALUES ('a', 99999999999)")
        .await;
    assert_invalid(&e, "v");
    let e = db.err("SELECT * FROM nope").await;
    assert_invalid(&e, "unconfigured table nope");
    let e = db.err("SELECT * FROM nope.t").await;
    assert_invalid(&e, "Keyspace 'nope' does not exist");
    let e = db.err("SELEC * FROM t").await;
    assert!(matches!(e, ExecError::Syntax(_)), "{e:?}");
    let mut fresh = Db::new();
    let e = fresh.err("SELECT * FROM t").await;
    assert_invalid(&e, "No keyspace has been specified");
}
