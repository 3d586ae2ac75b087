//! Paging: every way of reading, fetched page by page with many page sizes, returns exactly the
//! rows of one unpaged read, in the same order; pages never exceed the page size.

mod executor_support;

use executor_support::*;
use proptest::prelude::*;
use ringdb_node::executor::{ExecError, QueryOptions, QueryResult};

/// A table of 60 partitions of 0..=150 rows (about 4 000 rows), some with static values only,
/// some rows deleted, some expired.
async fn populated() -> Db {
    let mut db = Db::with_keyspace().await;
    db.q("CREATE TABLE t (k int, c1 int, c2 text, s int static, v int, PRIMARY KEY (k, c1, c2)) WITH CLUSTERING ORDER BY (c1 DESC, c2 ASC)").await;
    let ins = db
        .exec
        .prepare(
            &db.session,
            "INSERT INTO t (k, c1, c2, v) VALUES (?, ?, ?, ?)",
        )
        .unwrap();
    let ins_ttl = db
        .exec
        .prepare(
            &db.session,
            "INSERT INTO t (k, c1, c2, v) VALUES (?, ?, ?, ?) USING TTL 10",
        )
        .unwrap();
    for k in 0..60i32 {
        let n = (k * 37) % 151;
        for i in 0..n {
            let p = if i % 13 == 5 { &ins_ttl } else { &ins };
            let o = opts(vec![
                int(k),
                int(i / 4),
                text(&format!("r{}", i % 4)),
                int(k * 1000 + i),
            ]);
            db.exec.execute(&mut db.session, &p.id, &o).await.unwrap();
        }
        if k % 5 == 0 {
            db.q(&format!("UPDATE t SET s = {k} WHERE k = {k}")).await;
        }
        if k % 7 == 3 {
            db.q(&format!("DELETE FROM t WHERE k = {k} AND c1 = 2"))
                .await;
        }
    }
    // Expire the TTL'd rows: reads must skip them across page boundaries.
    db.wall.advance_secs(11);
    db
}

async fn fetch_all(db: &mut Db, text: &str, page_size: i32) -> (Vec<Vec<Option<Vec<u8>>>>, usize) {
    let mut out = Vec::new();
    let mut state: Option<Vec<u8>> = None;
    let mut pages = 0;
    loop {
        let o = QueryOptions {
            page_size: Some(page_size),
            paging_state: state.take(),
            ..QueryOptions::default()
        };
        let r = db
            .try_opts(text, &o)
            .await
            .unwrap_or_else(|e| panic!("{text} (page {pages}): {e:?}"));
        pages += 1;
        match r {
            QueryResult::Rows {
                rows, paging_state, ..
            } => {
                assert!(
                    rows.len() <= page_size as usize,
                    "{text}: page of {} rows > {page_size}",
                    rows.len()
                );
                out.extend(rows);
                match paging_state {
                    Some(s) => state = Some(s),
                    None => return (out, pages),
                }
            }
            other => panic!("{other:?}"),
        }
        assert!(pages < 100_000, "paging does not terminate");
    }
}

async fn unpaged(db: &mut Db, text: &str) -> Vec<Vec<Option<Vec<u8>>>> {
    match db.q(text).await {
        QueryResult::Rows {
            rows, paging_state, ..
        } => {
            assert!(paging_state.is_none());
            rows
        }
        other => panic!("{other:?}"),
    }
}

const QUERIES: &[&str] = &[
    "SELECT * FROM t",
    "SELECT k, c1, c2, v FROM t WHERE k = 37",
    "SELECT k, c1, c2, v FROM t WHERE k = 37 AND c1 >= 3 AND c1 < 20",
    "SELECT k, c1, c2, v FROM t WHERE k = 37 AND c1 = 5 AND c2 > 'r1'",
    "SELECT k, c1, c2, v FROM t WHERE k = 37 ORDER BY c1 ASC, c2 DESC",
    "SELECT * FROM t WHERE k IN (1, 5, 10, 37, 59, 0, 3, 99)",
    "SELECT k, v FROM t WHERE k IN (2, 4, 6) AND c1 IN (1, 7, 30)",
    "SELECT k, c1, v FROM t WHERE token(k) > -3000000000000000000 AND token(k) <= 4000000000000000000",
    "SELECT k, c1, v FROM t WHERE token(k) >= 0",
    "SELECT k, c1, v FROM t LIMIT 777",
    "SELECT k, c1, v FROM t WHERE k IN (1, 5, 10, 37) LIMIT 90",
    "SELECT k, c1, v FROM t PER PARTITION LIMIT 3",
    "SELECT k, c1, v FROM t PER PARTITION LIMIT 5 LIMIT 100",
    "SELECT k, v FROM t WHERE v > 20000 AND v < 40000 ALLOW FILTERING",
    "SELECT k, v FROM t WHERE c1 = 3 ALLOW FILTERING",
    "SELECT DISTINCT k, s FROM t",
    "SELECT DISTINCT k FROM t WHERE token(k) < 0",
    "SELECT k, s FROM t WHERE s > 10 ALLOW FILTERING",
];

#[tokio::test]
async fn paged_reads_equal_unpaged_reads() {
    let mut db = populated().await;
    let total = unpaged(&mut db, "SELECT * FROM t").await.len();
    assert!(total > 3000, "only {total} rows");
    for q in QUERIES {
        let want = unpaged(&mut db, q).await;
        for page in [1, 2, 3, 7, 64, 100, 101, 999, 5000] {
            if page == 1 && want.len() > 1500 {
                continue; // Covered by the other sizes; keeps the test fast.
            }
            let (got, pages) = fetch_all(&mut db, q, page).await;
            assert_eq!(got.len(), want.len(), "{q} with pages of {page}");
            assert!(got == want, "{q} with pages of {page}: rows differ");
            assert!(pages >= want.len() / page as usize, "{q}: too few pages");
        }
    }
}

#[tokio::test]
async fn count_star_counts_everything_and_is_not_paged() {
    let mut db = populated().await;
    let total = unpaged(&mut db, "SELECT * FROM t").await.len();
    let o = QueryOptions {
        page_size: Some(10),
        ..QueryOptions::default()
    };
    let r = db.try_opts("SELECT count(*) FROM t", &o).await.unwrap();
    match &r {
        QueryResult::Rows { paging_state, .. } => assert!(paging_state.is_none()),
        other => panic!("{other:?}"),
    }
    assert_eq!(render(&r), rows![total.to_string()]);
    // Statics-only partitions count as one row each, like Cassandra.
    let r = db.rows("SELECT count(*) FROM t WHERE k = 0").await;
    assert_eq!(r, rows!["1"]);
}

#[tokio::test]
async fn malformed_paging_states_are_rejected_cleanly() {
    let mut db = populated().await;
    for bad in [
        vec![],
        vec![9],
        vec![1, 0, 1],
        vec![1, 7, 0, 0],
        vec![0xFF; 40],
    ] {
        let o = QueryOptions {
            page_size: Some(10),
            paging_state: Some(bad.clone()),
            ..QueryOptions::default()
        };
        let e = db.try_opts("SELECT * FROM t", &o).await.unwrap_err();
        assert!(matches!(e, ExecError::Protocol(_)), "{bad:?}: {e:?}");
    }
    // A valid state of another query: a clean error or a valid page, never a panic.
    let o = QueryOptions {
        page_size: Some(5),
        ..QueryOptions::default()
    };
    let state = match db.try_opts("SELECT * FROM t", &o).await.unwrap() {
        QueryResult::Rows { paging_state, .. } => paging_state.unwrap(),
        other => panic!("{other:?}"),
    };
    let o = QueryOptions {
        page_size: Some(5),
        paging_state: Some(state.clone()),
        ..QueryOptions::default()
    };
    let r = db.try_opts("SELECT * FROM t WHERE k IN (1, 2)", &o).await;
    assert!(
        matches!(r, Err(ExecError::Protocol(_))) || r.is_ok(),
        "{r:?}"
    );
    let r = db.try_opts("SELECT * FROM system_schema.tables", &o).await;
    assert!(matches!(r, Err(ExecError::Protocol(_))), "{r:?}");
}

#[tokio::test]
async fn system_tables_page_too() {
    let mut db = populated().await;
    let want = unpaged(&mut db, "SELECT * FROM system_schema.columns").await;
    assert!(want.len() > 50);
    for page in [1, 7, 100] {
        let (got, _) = fetch_all(&mut db, "SELECT * FROM system_schema.columns", page).await;
        assert!(got == want, "page {page}");
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random data, random page sizes, random query shapes: paged equals unpaged.
    #[test]
    fn random_paging(
        rows in proptest::collection::vec((0i32..8, 0i32..30, any::<bool>()), 0..300),
        page in 1i32..40,
        q in 0usize..6,
    ) {
        let rt = runtime();
        rt.block_on(async move {
            let mut db = Db::with_keyspace().await;
            db.q("CREATE TABLE p (k int, c int, v int, PRIMARY KEY (k, c))").await;
            for (k, c, del) in &rows {
                if *del {
                    db.q(&format!("DELETE FROM p WHERE k = {k} AND c = {c}")).await;
                } else {
                    db.q(&format!("INSERT INTO p (k, c, v) VALUES ({k}, {c}, {})", k * 100 + c)).await;
                }
            }
            let queries = [
                "SELECT * FROM p",
                "SELECT * FROM p WHERE k IN (0, 3, 5, 7)",
                "SELECT * FROM p WHERE k = 3 AND c > 4 AND c <= 25",
                "SELECT * FROM p WHERE k = 2 ORDER BY c DESC",
                "SELECT * FROM p WHERE token(k) > 0 LIMIT 17",
                "SELECT * FROM p PER PARTITION LIMIT 2",
            ];
            let text = queries[q];
            let want = unpaged(&mut db, text).await;
            let (got, _) = fetch_all(&mut db, text, page).await;
            assert!(got == want, "{text} page {page}");
        });
    }
}
