//! One behaviour suite for every storage engine.
//!
//! Each test is a function over `&dyn Engine`; the `conformance!` macro instantiates all of them
//! for the in-memory engine and for the sled engine (in a temporary directory). Engine-specific
//! tests (sled reopen) and the cross-engine property test come after.

use std::ops::Bound;
use std::sync::Arc;

use proptest::prelude::*;
use ringdb_node::storage::{
    Cell, CellKey, ColumnId, Deletion, Engine, Liveness, MemoryEngine, Mutation, PartitionData,
    PartitionKey, PurgeStats, RangeDeletion, Row, RowUpdate, ScanRange, Seconds, SledEngine, Slice,
    TableId,
};

// ---------------------------------------------------------------------------------------------
// Fixtures and helpers.
// ---------------------------------------------------------------------------------------------

/// An engine under test, and whatever must outlive it.
struct Fixture {
    engine: Arc<dyn Engine>,
    _dir: Option<tempfile::TempDir>,
}

fn memory() -> Fixture {
    Fixture {
        engine: Arc::new(MemoryEngine::new()),
        _dir: None,
    }
}

fn sled() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = SledEngine::open(dir.path(), 16 << 20).expect("open sled");
    Fixture {
        engine: Arc::new(engine),
        _dir: Some(dir),
    }
}

const T1: TableId = TableId::from_u128(0x1111);
const T2: TableId = TableId::from_u128(0x2222);

fn pk(token: i64, key: &str) -> PartitionKey {
    PartitionKey {
        token,
        key: key.as_bytes().to_vec(),
    }
}

fn p() -> PartitionKey {
    pk(42, "p")
}

fn ck(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

fn simple(column: ColumnId) -> CellKey {
    CellKey { column, path: None }
}

fn element(column: ColumnId, path: &str) -> CellKey {
    CellKey {
        column,
        path: Some(path.as_bytes().to_vec()),
    }
}

fn del(ts: i64, ldt: Seconds) -> Deletion {
    Deletion::new(ts, ldt)
}

/// Builds a mutation of one partition.
struct M(Mutation);

impl M {
    fn new(table: TableId, partition: PartitionKey) -> M {
        M(Mutation {
            table,
            partition,
            partition_deletion: None,
            range_deletions: Vec::new(),
            rows: Vec::new(),
        })
    }

    fn row(&mut self, clustering: &str) -> &mut RowUpdate {
        let c = ck(clustering);
        if let Some(i) = self.0.rows.iter().position(|r| r.clustering == c) {
            return &mut self.0.rows[i];
        }
        self.0.rows.push(RowUpdate {
            clustering: c,
            ..RowUpdate::default()
        });
        self.0.rows.last_mut().expect("just pushed")
    }

    fn cell(mut self, clustering: &str, key: CellKey, cell: Cell) -> M {
        self.row(clustering).cells.push((key, cell));
        self
    }

    fn insert(mut self, clustering: &str, liveness: Liveness) -> M {
        self.row(clustering).liveness = Some(liveness);
        self
    }

    fn delete_row(mut self, clustering: &str, deletion: Deletion) -> M {
        self.row(clustering).deletion = Some(deletion);
        self
    }

    fn delete_collection(mut self, clustering: &str, column: ColumnId, deletion: Deletion) -> M {
        self.row(clustering)
            .collection_deletions
            .push((column, deletion));
        self
    }

    fn delete_range(mut self, start: Bound<&str>, end: Bound<&str>, deletion: Deletion) -> M {
        self.0.range_deletions.push(RangeDeletion {
            start: start.map(ck),
            end: end.map(ck),
            deletion,
        });
        self
    }

    fn delete_partition(mut self, deletion: Deletion) -> M {
        self.0.partition_deletion = Some(deletion);
        self
    }

    fn apply(self, e: &dyn Engine) {
        e.apply(&self.0).expect("apply");
    }
}

fn read(e: &dyn Engine, slice: &Slice, now: Seconds) -> Option<PartitionData> {
    e.read_partition(T1, &p(), slice, now).expect("read")
}

fn read_all(e: &dyn Engine, now: Seconds) -> Option<PartitionData> {
    read(e, &Slice::all(), now)
}

fn rows_only() -> Slice {
    Slice {
        ranges: Vec::new(),
        include_static: false,
        reversed: false,
        limit: None,
    }
}

fn slice(ranges: Vec<(Bound<&str>, Bound<&str>)>, reversed: bool, limit: Option<usize>) -> Slice {
    Slice {
        ranges: ranges
            .into_iter()
            .map(|(s, e)| (s.map(ck), e.map(ck)))
            .collect(),
        include_static: false,
        reversed,
        limit,
    }
}

fn find_row<'a>(data: &'a PartitionData, clustering: &str) -> Option<&'a Row> {
    data.rows
        .iter()
        .find(|r| r.clustering == clustering.as_bytes())
}

/// The live value of a simple column of a row (or of the static row for `""` with
/// `include_static`).
fn value(e: &dyn Engine, clustering: &str, column: ColumnId, now: Seconds) -> Option<Vec<u8>> {
    let data = read(e, &rows_only(), now)?;
    find_row(&data, clustering)?
        .live_value(column, now)
        .map(<[u8]>::to_vec)
}

/// Clustering bytes of the live rows, in answer order.
fn live_rows(data: &Option<PartitionData>, now: Seconds) -> Vec<String> {
    data.iter()
        .flat_map(|d| d.live_rows(now))
        .map(|r| String::from_utf8_lossy(&r.clustering).into_owned())
        .collect()
}

fn all_rows(data: &Option<PartitionData>) -> Vec<String> {
    data.iter()
        .flat_map(|d| d.rows.iter())
        .map(|r| String::from_utf8_lossy(&r.clustering).into_owned())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The suite.
// ---------------------------------------------------------------------------------------------

fn absent_partition_reads_none(e: &dyn Engine) {
    assert_eq!(read_all(e, 0), None);
    // A mutation that writes nothing stores nothing.
    M::new(T1, p()).apply(e);
    assert_eq!(read_all(e, 0), None);
    // An empty range deletion (start after end) deletes nothing and stores nothing.
    M::new(T1, p())
        .delete_range(Bound::Included("z"), Bound::Included("a"), del(1, 1))
        .apply(e);
    assert_eq!(read_all(e, 0), None);
    let scan = e
        .scan(
            T1,
            &ScanRange {
                after: None,
                end_token: None,
            },
            &Slice::all(),
            10,
            0,
        )
        .expect("scan");
    assert!(scan.is_empty());
}

fn lww_higher_timestamp_wins_in_any_order(e: &dyn Engine) {
    M::new(T1, p())
        .cell("a", simple(1), Cell::live(20, "new"))
        .apply(e);
    M::new(T1, p())
        .cell("a", simple(1), Cell::live(10, "old"))
        .apply(e);
    assert_eq!(value(e, "a", 1, 0), Some(ck("new")));
    M::new(T1, p())
        .cell("a", simple(1), Cell::tombstone(15, 100))
        .apply(e);
    assert_eq!(value(e, "a", 1, 0), Some(ck("new")));
    M::new(T1, p())
        .cell("a", simple(1), Cell::tombstone(25, 100))
        .apply(e);
    assert_eq!(value(e, "a", 1, 0), None);
    M::new(T1, p())
        .cell("a", simple(1), Cell::live(30, "newest"))
        .apply(e);
    assert_eq!(value(e, "a", 1, 0), Some(ck("newest")));
}

fn lww_tie_breaks(e: &dyn Engine) {
    // Each pair is written in both orders into two rows; the winner must not depend on order.
    let cases: Vec<(&str, Cell, Cell, Option<&str>)> = vec![
        // Tombstone beats a live cell at equal timestamps.
        ("t1", Cell::live(5, "zz"), Cell::tombstone(5, 1), None),
        // An expiring cell beats a plain live cell at equal timestamps, whatever the values.
        (
            "t2",
            Cell::live(5, "zz"),
            Cell::expiring(5, 100, 1_000, "aa"),
            Some("aa"),
        ),
        // A tombstone beats an expiring cell.
        (
            "t3",
            Cell::expiring(5, 100, 1_000, "aa"),
            Cell::tombstone(5, 1),
            None,
        ),
        // Two live cells: greater value bytes, compared unsigned.
        (
            "t4",
            Cell::live(5, vec![0x7f, 0xff]),
            Cell::live(5, vec![0x80]),
            Some("\u{80}"),
        ),
        // Two expiring cells: later expiry first, before the value.
        (
            "t5",
            Cell::expiring(5, 100, 2_000, "aa"),
            Cell::expiring(5, 100, 1_000, "zz"),
            Some("aa"),
        ),
    ];
    for (name, a, b, want) in cases {
        let (r1, r2) = (format!("{name}-ab"), format!("{name}-ba"));
        M::new(T1, p()).cell(&r1, simple(1), a.clone()).apply(e);
        M::new(T1, p()).cell(&r1, simple(1), b.clone()).apply(e);
        M::new(T1, p()).cell(&r2, simple(1), b.clone()).apply(e);
        M::new(T1, p()).cell(&r2, simple(1), a.clone()).apply(e);
        let want = want.map(|w| if w == "\u{80}" { vec![0x80] } else { ck(w) });
        assert_eq!(value(e, &r1, 1, 0), want, "{name} a then b");
        assert_eq!(value(e, &r2, 1, 0), want, "{name} b then a");
        // The whole stored cell, not just its value, is the same.
        let data = read(e, &rows_only(), 0).expect("data");
        assert_eq!(
            find_row(&data, &r1).map(|r| &r.cells),
            find_row(&data, &r2).map(|r| &r.cells),
            "{name}"
        );
    }
    // Two tombstones at equal timestamps: the later local deletion time is kept.
    M::new(T1, p())
        .cell("t6", simple(1), Cell::tombstone(5, 10))
        .apply(e);
    M::new(T1, p())
        .cell("t6", simple(1), Cell::tombstone(5, 20))
        .apply(e);
    M::new(T1, p())
        .cell("t6", simple(1), Cell::tombstone(5, 15))
        .apply(e);
    let data = read(e, &rows_only(), 0).expect("data");
    assert_eq!(
        find_row(&data, "t6").expect("row").cells,
        vec![(simple(1), Cell::tombstone(5, 20))]
    );
}

fn cell_tombstones_are_returned(e: &dyn Engine) {
    M::new(T1, p())
        .insert("a", Liveness::new(1))
        .cell("a", simple(1), Cell::live(1, "v"))
        .apply(e);
    M::new(T1, p())
        .cell("a", simple(1), Cell::tombstone(2, 100))
        .apply(e);
    let data = read_all(e, 0).expect("data");
    let row = find_row(&data, "a").expect("row");
    assert_eq!(row.cells, vec![(simple(1), Cell::tombstone(2, 100))]);
    assert!(row.is_live(0), "liveness keeps the row");
    assert_eq!(row.live_cells(0).count(), 0);
}

fn row_deletion_shadows_older_data(e: &dyn Engine) {
    M::new(T1, p())
        .insert("a", Liveness::new(10))
        .cell("a", simple(1), Cell::live(10, "old"))
        .cell("a", simple(2), Cell::live(30, "newer"))
        .apply(e);
    M::new(T1, p()).delete_row("a", del(20, 100)).apply(e);
    let data = read_all(e, 0).expect("data");
    let row = find_row(&data, "a").expect("row survives through its newer cell");
    assert_eq!(row.liveness, None);
    assert_eq!(row.deletion, Some(del(20, 100)));
    assert_eq!(row.cells, vec![(simple(2), Cell::live(30, "newer"))]);
    assert!(row.is_live(0));
    // A deletion at the newer cell's timestamp (equal counts as deleted) kills the row.
    M::new(T1, p()).delete_row("a", del(30, 100)).apply(e);
    let data = read_all(e, 0).expect("data");
    let row = find_row(&data, "a").expect("the deletion itself is returned");
    assert!(row.cells.is_empty() && !row.is_live(0));
    assert!(live_rows(&Some(data), 0).is_empty());
    // Data written after the deletion lives again.
    M::new(T1, p()).insert("a", Liveness::new(31)).apply(e);
    assert_eq!(live_rows(&read_all(e, 0), 0), vec!["a"]);
}

fn range_deletions_respect_bounds(e: &dyn Engine) {
    for c in ["a", "b", "c", "d", "e", "f"] {
        M::new(T1, p()).insert(c, Liveness::new(10)).apply(e);
    }
    // (b, d]: deletes c and d.
    M::new(T1, p())
        .delete_range(Bound::Excluded("b"), Bound::Included("d"), del(20, 100))
        .apply(e);
    assert_eq!(live_rows(&read_all(e, 0), 0), vec!["a", "b", "e", "f"]);
    // [e, f): deletes e only.
    M::new(T1, p())
        .delete_range(Bound::Included("e"), Bound::Excluded("f"), del(20, 100))
        .apply(e);
    assert_eq!(live_rows(&read_all(e, 0), 0), vec!["a", "b", "f"]);
    // Newer data inside a deleted range lives.
    M::new(T1, p()).insert("c", Liveness::new(21)).apply(e);
    assert_eq!(live_rows(&read_all(e, 0), 0), vec!["a", "b", "c", "f"]);
    // The deletions are part of the answer, normalized.
    let data = read_all(e, 0).expect("data");
    assert_eq!(
        data.range_deletions,
        vec![
            RangeDeletion {
                start: Bound::Excluded(ck("b")),
                end: Bound::Included(ck("d")),
                deletion: del(20, 100)
            },
            RangeDeletion {
                start: Bound::Included(ck("e")),
                end: Bound::Excluded(ck("f")),
                deletion: del(20, 100)
            },
        ]
    );
}

fn open_ended_range_deletions(e: &dyn Engine) {
    M::new(T1, p())
        .cell("", simple(9), Cell::live(10, "static"))
        .apply(e);
    for c in ["a", "b", "c", "d"] {
        M::new(T1, p()).insert(c, Liveness::new(10)).apply(e);
    }
    // Everything up to b (inclusive): never the static row.
    M::new(T1, p())
        .delete_range(Bound::Unbounded, Bound::Included("b"), del(20, 100))
        .apply(e);
    let data = read_all(e, 0);
    assert_eq!(live_rows(&data, 0), vec!["c", "d"]);
    assert!(data.as_ref().and_then(|d| d.live_static_row(0)).is_some());
    // Everything from d on.
    M::new(T1, p())
        .delete_range(Bound::Included("d"), Bound::Unbounded, del(20, 100))
        .apply(e);
    assert_eq!(live_rows(&read_all(e, 0), 0), vec!["c"]);
    // Fully unbounded, newer: every clustered row, still not the static row.
    M::new(T1, p())
        .delete_range(Bound::Unbounded, Bound::Unbounded, del(30, 100))
        .apply(e);
    let data = read_all(e, 0).expect("data");
    assert!(data.live_rows(0).next().is_none());
    assert_eq!(
        data.live_static_row(0).and_then(|r| r.live_value(9, 0)),
        Some(&b"static"[..])
    );
    assert_eq!(
        data.range_deletions.len(),
        1,
        "runs shadowed by the newer range are merged away"
    );
}

fn partition_deletion_shadows_everything_older(e: &dyn Engine) {
    M::new(T1, p())
        .cell("", simple(9), Cell::live(10, "static"))
        .insert("a", Liveness::new(10))
        .insert("b", Liveness::new(30))
        .delete_row("c", del(15, 100))
        .delete_range(Bound::Included("x"), Bound::Included("y"), del(12, 100))
        .apply(e);
    M::new(T1, p()).delete_partition(del(20, 100)).apply(e);
    let data = read_all(e, 0).expect("partition still holds something");
    assert_eq!(data.partition_deletion, Some(del(20, 100)));
    assert_eq!(data.static_row, None);
    assert_eq!(
        all_rows(&Some(data.clone())),
        vec!["b"],
        "older rows and the older row deletion are gone"
    );
    assert!(
        data.range_deletions.is_empty(),
        "older range deletions are implied"
    );
    // A newer static cell lives.
    M::new(T1, p())
        .cell("", simple(9), Cell::live(21, "again"))
        .apply(e);
    let data = read_all(e, 0).expect("data");
    assert!(data.live_static_row(0).is_some());
}

fn collection_deletion_shadows_elements(e: &dyn Engine) {
    M::new(T1, p())
        .insert("a", Liveness::new(1))
        .cell("a", element(3, "k1"), Cell::live(10, "v1"))
        .cell("a", element(3, "k2"), Cell::live(30, "v2"))
        .cell("a", element(4, "k1"), Cell::live(10, "other column"))
        .cell("a", simple(1), Cell::live(10, "simple"))
        .apply(e);
    M::new(T1, p())
        .delete_collection("a", 3, del(20, 100))
        .apply(e);
    let data = read_all(e, 0).expect("data");
    let row = find_row(&data, "a").expect("row");
    let elements: Vec<(&[u8], &[u8])> = row.live_elements(3, 0).collect();
    assert_eq!(elements, vec![(&b"k2"[..], &b"v2"[..])]);
    assert_eq!(row.live_elements(4, 0).count(), 1);
    assert_eq!(row.live_value(1, 0), Some(&b"simple"[..]));
    assert_eq!(row.collection_deletions, vec![(3, del(20, 100))]);
}

fn ttl_expiry(e: &dyn Engine) {
    // An expiring cell over an older permanent one: after expiry the column is empty, the old
    // value does not come back.
    M::new(T1, p())
        .cell("a", simple(1), Cell::live(1, "permanent"))
        .apply(e);
    M::new(T1, p())
        .cell("a", simple(1), Cell::expiring(2, 100, 1_100, "temporary"))
        .apply(e);
    assert_eq!(value(e, "a", 1, 1_099), Some(ck("temporary")));
    assert_eq!(value(e, "a", 1, 1_100), None);
    assert_eq!(value(e, "a", 1, 5_000), None);
    // Expiring liveness: the row exists until expiry, then only through live cells.
    M::new(T1, p())
        .insert("b", Liveness::expiring(1, 100, 1_100))
        .apply(e);
    M::new(T1, p())
        .insert("c", Liveness::expiring(1, 100, 1_100))
        .cell("c", simple(1), Cell::live(1, "kept"))
        .apply(e);
    assert_eq!(
        live_rows(&read(e, &rows_only(), 1_099), 1_099),
        vec!["a", "b", "c"]
    );
    assert_eq!(live_rows(&read(e, &rows_only(), 1_100), 1_100), vec!["c"]);
    // An expired liveness still supersedes an older permanent one.
    M::new(T1, p()).insert("d", Liveness::new(1)).apply(e);
    M::new(T1, p())
        .insert("d", Liveness::expiring(2, 100, 1_100))
        .apply(e);
    assert_eq!(live_rows(&read(e, &rows_only(), 2_000), 2_000), vec!["c"]);
}

fn static_row(e: &dyn Engine) {
    M::new(T1, p())
        .cell("", simple(9), Cell::live(1, "s"))
        .insert("a", Liveness::new(1))
        .apply(e);
    let data = read_all(e, 0).expect("data");
    assert_eq!(
        data.static_row.as_ref().and_then(|r| r.live_value(9, 0)),
        Some(&b"s"[..])
    );
    assert_eq!(
        all_rows(&Some(data)),
        vec!["a"],
        "the static row is not a clustered row"
    );
    // Returned whatever the ranges when asked for.
    let mut s = slice(
        vec![(Bound::Included("x"), Bound::Unbounded)],
        false,
        Some(1),
    );
    s.include_static = true;
    let data = read(e, &s, 0).expect("data");
    assert!(data.static_row.is_some());
    assert!(data.rows.is_empty());
    // Without include_static, the empty-clustering row is an ordinary row (the only row of a
    // table without clustering columns).
    let data = read(e, &rows_only(), 0).expect("data");
    assert_eq!(data.static_row, None);
    assert_eq!(all_rows(&Some(data)), vec!["", "a"]);
}

fn slices_with_several_ranges(e: &dyn Engine) {
    for c in ["a", "b", "c", "d", "e", "f", "g", "h"] {
        M::new(T1, p()).insert(c, Liveness::new(1)).apply(e);
    }
    let s = slice(
        vec![
            (Bound::Included("a"), Bound::Included("b")),
            (Bound::Excluded("c"), Bound::Excluded("f")),
            (Bound::Included("h"), Bound::Unbounded),
        ],
        false,
        None,
    );
    assert_eq!(live_rows(&read(e, &s, 0), 0), vec!["a", "b", "d", "e", "h"]);
    // Unsorted and overlapping ranges are tolerated (unioned).
    let s = slice(
        vec![
            (Bound::Included("g"), Bound::Unbounded),
            (Bound::Unbounded, Bound::Excluded("b")),
            (Bound::Included("f"), Bound::Included("g")),
        ],
        false,
        None,
    );
    assert_eq!(live_rows(&read(e, &s, 0), 0), vec!["a", "f", "g", "h"]);
    // Range deletions in the answer are clipped to the slice.
    M::new(T1, p())
        .delete_range(Bound::Included("b"), Bound::Included("g"), del(0, 100))
        .apply(e);
    let s = slice(
        vec![(Bound::Included("c"), Bound::Included("d"))],
        false,
        None,
    );
    let data = read(e, &s, 0).expect("data");
    assert_eq!(
        data.range_deletions,
        vec![RangeDeletion {
            start: Bound::Included(ck("c")),
            end: Bound::Included(ck("d")),
            deletion: del(0, 100)
        }]
    );
}

fn reversed_reads(e: &dyn Engine) {
    for c in ["a", "b", "c", "d", "e", "f"] {
        M::new(T1, p())
            .insert(c, Liveness::new(1))
            .cell(c, simple(1), Cell::live(1, c))
            .apply(e);
    }
    let s = slice(
        vec![
            (Bound::Included("a"), Bound::Included("b")),
            (Bound::Included("d"), Bound::Unbounded),
        ],
        true,
        None,
    );
    assert_eq!(live_rows(&read(e, &s, 0), 0), vec!["f", "e", "d", "b", "a"]);
    let s = slice(vec![], true, Some(2));
    assert_eq!(live_rows(&read(e, &s, 0), 0), vec!["f", "e"]);
    let s = slice(
        vec![(Bound::Unbounded, Bound::Excluded("d"))],
        true,
        Some(2),
    );
    assert_eq!(live_rows(&read(e, &s, 0), 0), vec!["c", "b"]);
}

fn limit_counts_live_rows_only(e: &dyn Engine) {
    M::new(T1, p())
        .cell("", simple(9), Cell::live(1, "static"))
        .apply(e);
    M::new(T1, p()).insert("a", Liveness::new(1)).apply(e);
    M::new(T1, p()).delete_row("b", del(1, 100)).apply(e); // dead: a deletion only
    M::new(T1, p())
        .cell("c", simple(1), Cell::tombstone(1, 100))
        .apply(e); // dead: a tombstone only
    M::new(T1, p())
        .insert("d", Liveness::expiring(1, 10, 50))
        .apply(e); // dead at now=100
    M::new(T1, p()).insert("e", Liveness::new(1)).apply(e);
    M::new(T1, p()).insert("f", Liveness::new(1)).apply(e);
    let mut s = Slice::all();
    s.limit = Some(2);
    let data = read(e, &s, 100);
    assert!(
        data.as_ref().is_some_and(|d| d.static_row.is_some()),
        "the static row does not count"
    );
    assert_eq!(
        all_rows(&data),
        vec!["a", "b", "c", "d", "e"],
        "dead rows before the limit are returned"
    );
    assert_eq!(live_rows(&data, 100), vec!["a", "e"]);
    // At now=0 row d is live and counts.
    assert_eq!(live_rows(&read(e, &s, 0), 0), vec!["a", "d"]);
    s.limit = Some(0);
    assert_eq!(all_rows(&read(e, &s, 0)), Vec::<String>::new());
    s.reversed = true;
    s.limit = Some(1);
    assert_eq!(all_rows(&read(e, &s, 0)), vec!["f"]);
}

fn scans_in_ring_order_with_paging(e: &dyn Engine) {
    // Tokens spread over the whole ring, with collisions resolved by key bytes.
    let mut partitions: Vec<PartitionKey> = Vec::new();
    for i in 0..60i64 {
        let token = match i % 6 {
            0 => i64::MIN + i,
            1 => -1_000_000 * i,
            2 => 7, // collisions
            3 => 1_000_000 * i,
            4 => i64::MAX - i,
            _ => 0,
        };
        partitions.push(pk(token, &format!("k{i:02}")));
        partitions.push(PartitionKey {
            token,
            key: format!("k{i:02}\0").into_bytes(),
        });
    }
    for (i, partition) in partitions.iter().enumerate() {
        M::new(T1, partition.clone())
            .insert("a", Liveness::new(i as i64))
            .apply(e);
        M::new(T2, partition.clone())
            .insert("a", Liveness::new(i as i64))
            .apply(e);
    }
    let mut expected = partitions.clone();
    expected.sort();

    // Page through with `after`.
    let mut seen: Vec<PartitionKey> = Vec::new();
    let mut after = None;
    loop {
        let page = e
            .scan(
                T1,
                &ScanRange {
                    after: after.clone(),
                    end_token: None,
                },
                &Slice::all(),
                7,
                0,
            )
            .expect("scan");
        assert!(page.len() <= 7);
        if page.is_empty() {
            break;
        }
        after = page.last().map(|d| d.partition.clone());
        seen.extend(page.into_iter().map(|d| d.partition));
    }
    assert_eq!(seen, expected);

    // `end_token` is inclusive, `after` exclusive.
    let range = ScanRange {
        after: None,
        end_token: Some(7),
    };
    let got: Vec<PartitionKey> = e
        .scan(T1, &range, &Slice::all(), 1_000, 0)
        .expect("scan")
        .into_iter()
        .map(|d| d.partition)
        .collect();
    let want: Vec<PartitionKey> = expected.iter().filter(|k| k.token <= 7).cloned().collect();
    assert_eq!(got, want);
    let first_seven = expected.iter().position(|k| k.token == 7).expect("token 7");
    let range = ScanRange {
        after: Some(expected[first_seven].clone()),
        end_token: Some(7),
    };
    let got: Vec<PartitionKey> = e
        .scan(T1, &range, &Slice::all(), 1_000, 0)
        .expect("scan")
        .into_iter()
        .map(|d| d.partition)
        .collect();
    let want: Vec<PartitionKey> = expected
        .iter()
        .filter(|k| k.token == 7)
        .skip(1)
        .cloned()
        .collect();
    assert_eq!(got, want);
    // `after` beyond `end_token`: nothing.
    let range = ScanRange {
        after: Some(pk(100, "x")),
        end_token: Some(7),
    };
    assert!(e
        .scan(T1, &range, &Slice::all(), 10, 0)
        .expect("scan")
        .is_empty());
    assert!(e
        .scan(
            T1,
            &ScanRange {
                after: None,
                end_token: None
            },
            &Slice::all(),
            0,
            0
        )
        .expect("scan")
        .is_empty());
    // The whole ring, with the extreme tokens.
    let range = ScanRange {
        after: None,
        end_token: Some(i64::MAX),
    };
    assert_eq!(
        e.scan(T1, &range, &Slice::all(), 10_000, 0)
            .expect("scan")
            .len(),
        expected.len()
    );
    let range = ScanRange {
        after: None,
        end_token: Some(i64::MIN),
    };
    assert_eq!(
        e.scan(T1, &range, &Slice::all(), 10_000, 0)
            .expect("scan")
            .len(),
        2
    );
    // Each partition is read with the slice.
    let page = e
        .scan(
            T1,
            &ScanRange {
                after: None,
                end_token: None,
            },
            &slice(vec![(Bound::Included("b"), Bound::Unbounded)], false, None),
            3,
            0,
        )
        .expect("scan");
    assert_eq!(page.len(), 3);
    assert!(page.iter().all(|d| d.rows.is_empty()));
}

fn truncate_isolates_tables(e: &dyn Engine) {
    for i in 0..20 {
        M::new(T1, pk(i, "k"))
            .insert("a", Liveness::new(1))
            .apply(e);
        M::new(T2, pk(i, "k"))
            .insert("a", Liveness::new(1))
            .apply(e);
    }
    e.meta_put(b"keep", b"me").expect("meta");
    e.truncate(T1).expect("truncate");
    let all = ScanRange {
        after: None,
        end_token: None,
    };
    assert!(e
        .scan(T1, &all, &Slice::all(), 100, 0)
        .expect("scan")
        .is_empty());
    assert_eq!(
        e.scan(T2, &all, &Slice::all(), 100, 0).expect("scan").len(),
        20
    );
    assert_eq!(e.meta_get(b"keep").expect("meta"), Some(b"me".to_vec()));
    // The table is usable again.
    M::new(T1, pk(3, "k"))
        .insert("a", Liveness::new(1))
        .apply(e);
    assert_eq!(
        e.scan(T1, &all, &Slice::all(), 100, 0).expect("scan").len(),
        1
    );
}

fn purge_respects_gc_grace(e: &dyn Engine) {
    let gc_grace = 1_000;
    M::new(T1, p())
        .insert("a", Liveness::new(1))
        .cell("a", simple(1), Cell::live(1, "v"))
        .apply(e);
    M::new(T1, p()).delete_row("a", del(2, 10_000)).apply(e);
    M::new(T1, p())
        .cell("b", simple(1), Cell::live(1, "alive"))
        .apply(e);
    // Young tombstone: the shadowed liveness and cell go, the tombstone stays and still shadows.
    let stats = e.purge(T1, 10_500, gc_grace).expect("purge");
    assert_eq!(
        stats,
        PurgeStats {
            cells_purged: 2,
            tombstones_purged: 0,
            waiting: 1,
            next: Some(10_000),
        }
    );
    let data = read_all(e, 10_500).expect("data");
    assert_eq!(
        find_row(&data, "a").and_then(|r| r.deletion),
        Some(del(2, 10_000))
    );
    M::new(T1, p())
        .cell("a", simple(1), Cell::live(2, "late replica write"))
        .apply(e);
    assert_eq!(
        value(e, "a", 1, 10_500),
        None,
        "the surviving tombstone shadows a late older write"
    );
    // Exactly gc_grace old: still kept (purgeable only when strictly older).
    let stats = e.purge(T1, 11_000, gc_grace).expect("purge");
    assert_eq!(
        stats,
        PurgeStats {
            cells_purged: 1,
            tombstones_purged: 0,
            waiting: 1,
            next: Some(10_000),
        }
    );
    // Older than gc_grace: gone, and the partition keeps only row b.
    let stats = e.purge(T1, 11_001, gc_grace).expect("purge");
    assert_eq!(
        stats,
        PurgeStats {
            cells_purged: 0,
            tombstones_purged: 1,
            waiting: 0,
            next: None,
        }
    );
    assert_eq!(all_rows(&read_all(e, 11_001)), vec!["b"]);
    // Idempotent.
    assert_eq!(
        e.purge(T1, 11_001, gc_grace).expect("purge"),
        PurgeStats::default()
    );
}

fn purge_of_expired_and_deleted_data(e: &dyn Engine) {
    let gc_grace = 100;
    M::new(T1, p())
        .insert("a", Liveness::expiring(1, 10, 1_000))
        .cell("a", simple(1), Cell::expiring(1, 10, 1_000, "ttl"))
        .cell("a", simple(2), Cell::tombstone(1, 1_000))
        .delete_collection("a", 3, del(1, 1_000))
        .delete_range(Bound::Included("x"), Bound::Included("y"), del(1, 1_000))
        .apply(e);
    M::new(T1, pk(1, "other"))
        .delete_partition(del(1, 1_000))
        .apply(e);
    // Expired but within gc_grace: kept (they still shadow), and counted as waiting: the
    // liveness, the two cells, the collection, range and partition deletions.
    assert_eq!(
        e.purge(T1, 1_050, gc_grace).expect("purge"),
        PurgeStats {
            cells_purged: 0,
            tombstones_purged: 0,
            waiting: 6,
            next: Some(1_000),
        }
    );
    assert!(read_all(e, 1_050).is_some());
    let stats = e.purge(T1, 1_101, gc_grace).expect("purge");
    assert_eq!(
        stats,
        PurgeStats {
            cells_purged: 2,
            tombstones_purged: 4,
            waiting: 0,
            next: None,
        }
    );
    assert_eq!(read_all(e, 1_101), None, "nothing left of the partition");
    assert_eq!(
        e.read_partition(T1, &pk(1, "other"), &Slice::all(), 1_101)
            .expect("read"),
        None
    );
}

fn purge_keeps_live_view(e: &dyn Engine) {
    // Data shadowed by a partition deletion is purged at once; live data is untouched.
    M::new(T1, p())
        .insert("a", Liveness::new(1))
        .insert("b", Liveness::new(5))
        .apply(e);
    M::new(T1, p()).delete_partition(del(3, 10_000)).apply(e);
    let before = read_all(e, 10_001);
    let stats = e.purge(T1, 10_001, 1_000).expect("purge");
    assert_eq!(
        stats,
        PurgeStats {
            cells_purged: 1,
            tombstones_purged: 0,
            waiting: 1,
            next: Some(10_000),
        }
    );
    assert_eq!(read_all(e, 10_001), before);
}

fn purge_in_pages_visits_each_partition_once(e: &dyn Engine) {
    // Five partitions, each with a tombstone old enough to go and an expiring cell that is not.
    for i in 0..5 {
        M::new(T1, pk(i * 10, &format!("k{i}")))
            .cell("a", simple(1), Cell::tombstone(1, 1_000))
            .cell("a", simple(2), Cell::expiring(1, 10, 9_000 + i, "v"))
            .apply(e);
    }
    let mut after = None;
    let mut pages = 0;
    let mut total = PurgeStats::default();
    loop {
        let page = e
            .purge_page(T1, after.as_ref(), 2, 5_000, 100)
            .expect("page");
        assert!(page.skipped.is_none());
        total.add(page.stats);
        pages += 1;
        assert!(
            pages <= 4,
            "a page of 2 over 5 partitions ends by the fourth"
        );
        match page.resume_after {
            Some(last) => after = Some(last),
            None => break,
        }
    }
    assert!(pages >= 3, "{pages} pages");
    assert_eq!(
        total,
        PurgeStats {
            cells_purged: 0,
            tombstones_purged: 5,
            waiting: 5,
            next: Some(9_000),
        }
    );
    // Nothing left for a whole purge at the same time but what waits.
    assert_eq!(
        e.purge(T1, 5_000, 100).expect("purge"),
        PurgeStats {
            cells_purged: 0,
            tombstones_purged: 0,
            waiting: 5,
            next: Some(9_000),
        }
    );
}

fn meta_space(e: &dyn Engine) {
    assert_eq!(e.meta_get(b"a").expect("get"), None);
    e.meta_put(b"schema/1", b"one").expect("put");
    e.meta_put(b"schema/2", b"two").expect("put");
    e.meta_put(b"schema0", b"not under schema/").expect("put");
    e.meta_put(b"host_id", b"h").expect("put");
    e.meta_put(b"schema/1", b"uno").expect("overwrite");
    assert_eq!(e.meta_get(b"schema/1").expect("get"), Some(b"uno".to_vec()));
    assert_eq!(
        e.meta_scan_prefix(b"schema/").expect("scan"),
        vec![
            (b"schema/1".to_vec(), b"uno".to_vec()),
            (b"schema/2".to_vec(), b"two".to_vec())
        ]
    );
    assert_eq!(e.meta_scan_prefix(b"").expect("scan").len(), 4);
    // Bounded pages resume after the last key seen and never leave the prefix.
    let page = |after: Option<&[u8]>, limit| {
        e.meta_scan_prefix_after(b"schema/", after, limit)
            .expect("page")
            .into_iter()
            .map(|(k, _)| k)
            .collect::<Vec<_>>()
    };
    assert_eq!(page(None, 1), vec![b"schema/1".to_vec()]);
    assert_eq!(page(Some(b"schema/1"), 5), vec![b"schema/2".to_vec()]);
    assert_eq!(page(Some(b"schema/2"), 5), Vec::<Vec<u8>>::new());
    assert_eq!(
        page(Some(b"a"), 5).len(),
        2,
        "a cursor before the prefix starts at it"
    );
    assert_eq!(page(Some(b"zzz"), 5), Vec::<Vec<u8>>::new());
    assert_eq!(page(None, 0), Vec::<Vec<u8>>::new());
    e.meta_delete(b"schema/1").expect("delete");
    e.meta_delete(b"never there").expect("delete absent");
    assert_eq!(e.meta_get(b"schema/1").expect("get"), None);
    assert_eq!(e.meta_scan_prefix(b"schema/").expect("scan").len(), 1);
    // Meta and data do not see each other.
    M::new(T1, p()).insert("a", Liveness::new(1)).apply(e);
    assert_eq!(e.meta_scan_prefix(b"").expect("scan").len(), 3);
}

fn reapplying_changes_nothing(e: &dyn Engine) {
    let m = M::new(T1, p())
        .insert("a", Liveness::new(1))
        .cell("a", simple(1), Cell::live(1, "v"))
        .cell("a", simple(1), Cell::live(1, "w")) // the same slot twice in one mutation
        .delete_range(Bound::Included("x"), Bound::Unbounded, del(1, 1));
    e.apply(&m.0).expect("apply");
    let once = read_all(e, 0);
    e.apply(&m.0).expect("apply");
    e.apply(&m.0).expect("apply");
    assert_eq!(read_all(e, 0), once);
    assert_eq!(value(e, "a", 1, 0), Some(ck("w")));
}

fn concurrent_writers_and_readers_see_whole_mutations(e: &dyn Engine) {
    std::thread::scope(|s| {
        for w in 0..4i64 {
            s.spawn(move || {
                for i in 0..100i64 {
                    let ts = i * 4 + w;
                    let v = format!("{ts}");
                    M::new(T1, p())
                        .cell("r", simple(1), Cell::live(ts, v.as_str()))
                        .cell("r", simple(2), Cell::live(ts, v.as_str()))
                        .apply(e);
                }
            });
        }
        for _ in 0..2 {
            s.spawn(move || {
                for _ in 0..200 {
                    if let Some(data) = read_all(e, 0) {
                        let row = find_row(&data, "r").expect("row");
                        assert_eq!(row.cells[0].1, row.cells[1].1, "a read saw half a mutation");
                    }
                }
            });
        }
    });
    assert_eq!(value(e, "r", 1, 0), Some(ck("399")));
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod memory_engine {
            $( #[test] fn $name() { let f = super::memory(); super::$name(f.engine.as_ref()); } )*
        }
        mod sled_engine {
            $( #[test] fn $name() { let f = super::sled(); super::$name(f.engine.as_ref()); } )*
        }
    };
}

conformance!(
    absent_partition_reads_none,
    lww_higher_timestamp_wins_in_any_order,
    lww_tie_breaks,
    cell_tombstones_are_returned,
    row_deletion_shadows_older_data,
    range_deletions_respect_bounds,
    open_ended_range_deletions,
    partition_deletion_shadows_everything_older,
    collection_deletion_shadows_elements,
    ttl_expiry,
    static_row,
    slices_with_several_ranges,
    reversed_reads,
    limit_counts_live_rows_only,
    scans_in_ring_order_with_paging,
    truncate_isolates_tables,
    purge_respects_gc_grace,
    purge_of_expired_and_deleted_data,
    purge_keeps_live_view,
    purge_in_pages_visits_each_partition_once,
    meta_space,
    reapplying_changes_nothing,
    concurrent_writers_and_readers_see_whole_mutations,
);

// ---------------------------------------------------------------------------------------------
// sled only.
// ---------------------------------------------------------------------------------------------

#[test]
fn sled_reopen_keeps_data_and_meta() {
    let dir = tempfile::tempdir().expect("tempdir");
    let slices = [
        Slice::all(),
        rows_only(),
        slice(
            vec![(Bound::Included("b"), Bound::Unbounded)],
            true,
            Some(1),
        ),
    ];
    let before: Vec<Option<PartitionData>>;
    {
        let e = SledEngine::open(dir.path(), 1 << 20).expect("open");
        M::new(T1, p())
            .cell("", simple(9), Cell::live(1, "s"))
            .insert("a", Liveness::new(1))
            .cell("b", element(3, "k"), Cell::expiring(1, 10, 100, "v"))
            .delete_row("c", del(1, 5))
            .delete_range(Bound::Excluded("x"), Bound::Unbounded, del(1, 5))
            .apply(&e);
        M::new(T1, pk(-9, "q"))
            .delete_partition(del(3, 3))
            .apply(&e);
        e.meta_put(b"host_id", b"abc").expect("meta");
        before = slices.iter().map(|s| read(&e, s, 50)).collect();
        e.flush().expect("flush");
        assert!(e.disk_size() > 0);
    }
    let e = SledEngine::open(dir.path(), 1 << 20).expect("reopen");
    let after: Vec<Option<PartitionData>> = slices.iter().map(|s| read(&e, s, 50)).collect();
    assert_eq!(after, before);
    assert!(before[0].is_some());
    assert_eq!(e.meta_get(b"host_id").expect("meta"), Some(b"abc".to_vec()));
    let all = e
        .scan(
            T1,
            &ScanRange {
                after: None,
                end_token: None,
            },
            &Slice::all(),
            10,
            50,
        )
        .expect("scan");
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].partition, pk(-9, "q"));
}

// ---------------------------------------------------------------------------------------------
// Cross-engine, cross-order property.
// ---------------------------------------------------------------------------------------------

fn partitions() -> Vec<PartitionKey> {
    vec![pk(-5, "a"), pk(7, "b"), pk(7, "b\0"), pk(9, "")]
}

fn arb_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(vec![]),
        Just(b"a".to_vec()),
        Just(b"b".to_vec()),
        Just(vec![0xff]),
        Just(b"b\0".to_vec())
    ]
}

fn arb_clustering() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(vec![]),
        Just(b"a".to_vec()),
        Just(b"b".to_vec()),
        Just(b"b\0".to_vec()),
        Just(b"c".to_vec())
    ]
}

fn arb_deletion() -> impl Strategy<Value = Deletion> {
    (0i64..6, prop_oneof![Just(0i64), Just(100), Just(200)])
        .prop_map(|(ts, ldt)| Deletion::new(ts, ldt))
}

fn arb_cell() -> impl Strategy<Value = Cell> {
    let ts = 0i64..6;
    prop_oneof![
        (ts.clone(), arb_bytes()).prop_map(|(ts, v)| Cell::live(ts, v)),
        (ts.clone(), prop_oneof![Just(50i64), Just(150)], arb_bytes())
            .prop_map(|(ts, exp, v)| Cell::expiring(ts, 10, exp, v)),
        (ts, prop_oneof![Just(0i64), Just(100), Just(200)])
            .prop_map(|(ts, ldt)| Cell::tombstone(ts, ldt)),
    ]
}

fn arb_liveness() -> impl Strategy<Value = Liveness> {
    prop_oneof![
        (0i64..6).prop_map(Liveness::new),
        (0i64..6, prop_oneof![Just(50i64), Just(150)])
            .prop_map(|(ts, exp)| Liveness::expiring(ts, 10, exp)),
    ]
}

fn arb_cell_key() -> impl Strategy<Value = CellKey> {
    prop_oneof![
        (0u32..3).prop_map(|column| CellKey { column, path: None }),
        prop_oneof![Just(b"x".to_vec()), Just(b"y".to_vec())].prop_map(|p| CellKey {
            column: 3,
            path: Some(p)
        }),
    ]
}

fn arb_bound() -> impl Strategy<Value = Bound<Vec<u8>>> {
    prop_oneof![
        Just(Bound::Unbounded),
        arb_clustering().prop_map(Bound::Included),
        arb_clustering().prop_map(Bound::Excluded),
    ]
}

fn arb_row() -> impl Strategy<Value = RowUpdate> {
    (
        arb_clustering(),
        proptest::option::weighted(0.3, arb_liveness()),
        proptest::option::weighted(0.15, arb_deletion()),
        proptest::collection::vec((arb_cell_key(), arb_cell()), 0..3),
        proptest::collection::vec((Just(3u32), arb_deletion()), 0..2),
    )
        .prop_map(
            |(clustering, liveness, deletion, cells, collection_deletions)| RowUpdate {
                clustering,
                liveness,
                deletion,
                cells,
                collection_deletions,
            },
        )
}

fn arb_mutation() -> impl Strategy<Value = Mutation> {
    (
        proptest::sample::select(partitions()),
        proptest::option::weighted(0.1, arb_deletion()),
        proptest::collection::vec(
            (arb_bound(), arb_bound(), arb_deletion()).prop_map(|(start, end, deletion)| {
                RangeDeletion {
                    start,
                    end,
                    deletion,
                }
            }),
            0..2,
        ),
        proptest::collection::vec(arb_row(), 0..3),
    )
        .prop_map(
            |(partition, partition_deletion, range_deletions, rows)| Mutation {
                table: T1,
                partition,
                partition_deletion,
                range_deletions,
                rows,
            },
        )
}

fn probe_slices() -> Vec<Slice> {
    vec![
        Slice::all(),
        rows_only(),
        Slice {
            ranges: Vec::new(),
            include_static: true,
            reversed: true,
            limit: Some(2),
        },
        Slice {
            ranges: vec![
                (
                    Bound::Excluded(b"a".to_vec()),
                    Bound::Included(b"b\0".to_vec()),
                ),
                (Bound::Included(b"c".to_vec()), Bound::Unbounded),
            ],
            include_static: false,
            reversed: false,
            limit: Some(1),
        },
    ]
}

/// Everything observable through reads and scans.
fn observe(e: &dyn Engine) -> Vec<String> {
    let mut out = Vec::new();
    for now in [0, 100, 160] {
        for s in probe_slices() {
            for partition in partitions() {
                out.push(format!(
                    "{:?}",
                    e.read_partition(T1, &partition, &s, now).expect("read")
                ));
            }
            let scan = e
                .scan(
                    T1,
                    &ScanRange {
                        after: None,
                        end_token: Some(7),
                    },
                    &s,
                    10,
                    now,
                )
                .expect("scan");
            out.push(format!("{scan:?}"));
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn engines_agree_in_any_order(
        (mutations, shuffled) in proptest::collection::vec(arb_mutation(), 1..12)
            .prop_flat_map(|m| (Just(m.clone()), Just(m).prop_shuffle())),
        purge_now in prop_oneof![Just(0i64), Just(120), Just(300)],
    ) {
        let mem = MemoryEngine::new();
        let mem_shuffled = MemoryEngine::new();
        let sled = sled();
        for m in &mutations {
            mem.apply(m).expect("apply");
            sled.engine.apply(m).expect("apply");
        }
        for m in &shuffled {
            mem_shuffled.apply(m).expect("apply");
        }
        // All at once (one storage batch: several mutations may write the same slot).
        let sled_all = self::sled();
        sled_all.engine.apply_all(&shuffled).expect("apply_all");
        let want = observe(&mem);
        prop_assert_eq!(&observe(&mem_shuffled), &want);
        prop_assert_eq!(&observe(sled.engine.as_ref()), &want);
        prop_assert_eq!(&observe(sled_all.engine.as_ref()), &want);

        // Purges agree too, and keep the live view at the purge time.
        let live_before: Vec<Vec<String>> = partitions()
            .iter()
            .map(|pk| live_view(&mem.read_partition(T1, pk, &Slice::all(), purge_now).expect("read"), purge_now))
            .collect();
        let a = mem.purge(T1, purge_now, 50).expect("purge");
        let b = sled.engine.purge(T1, purge_now, 50).expect("purge");
        prop_assert_eq!(a, b);
        prop_assert_eq!(observe(sled.engine.as_ref()), observe(&mem));
        let live_after: Vec<Vec<String>> = partitions()
            .iter()
            .map(|pk| live_view(&mem.read_partition(T1, pk, &Slice::all(), purge_now).expect("read"), purge_now))
            .collect();
        prop_assert_eq!(live_after, live_before);
    }
}

/// The live rows and cells of an answer at `now`, as text.
fn live_view(data: &Option<PartitionData>, now: Seconds) -> Vec<String> {
    let Some(data) = data else { return Vec::new() };
    data.static_row
        .iter()
        .chain(data.rows.iter())
        .filter(|r| r.is_live(now))
        .map(|r| {
            format!(
                "{:?} {:?}",
                r.clustering,
                r.live_cells(now).collect::<Vec<_>>()
            )
        })
        .collect()
}
