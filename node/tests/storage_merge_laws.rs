//! The laws that make replicas converge: reconciliation of cells, liveness and deletions, and
//! merging of rows and whole partitions, are commutative, associative and idempotent; and merging
//! two replicas' answers equals the answer of one replica holding both replicas' writes.
//!
//! Domains are deliberately tiny (few timestamps, values, expiries) so that ties, which is where
//! tie-break rules can go wrong, are frequent.

use std::ops::Bound;

use proptest::prelude::*;
use ringdb_node::storage::merge::{
    compare_cells, compare_deletions, compare_liveness, reconcile_cell, reconcile_deletion,
    reconcile_liveness,
};
use ringdb_node::storage::{
    Cell, CellKey, Deletion, Engine, Liveness, MemoryEngine, Mutation, PartitionData, PartitionKey,
    RangeDeletion, Row, RowUpdate, Slice, TableId,
};

const T: TableId = TableId::from_u128(7);

fn partition() -> PartitionKey {
    PartitionKey {
        token: 1,
        key: b"p".to_vec(),
    }
}

fn arb_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(vec![]),
        Just(vec![0x00]),
        Just(vec![0x01]),
        Just(vec![0x80]),
        Just(vec![0x01, 0x00])
    ]
}

fn arb_cell() -> impl Strategy<Value = Cell> {
    (
        0i64..3,
        prop_oneof![Just(0i32), Just(10)],
        0i64..3,
        proptest::option::weighted(0.7, arb_value()),
    )
        .prop_map(|(timestamp, ttl, ldt, value)| Cell {
            timestamp,
            ttl,
            local_deletion_time: ldt * 100,
            value,
        })
}

fn arb_liveness() -> impl Strategy<Value = Liveness> {
    (
        0i64..3,
        prop_oneof![Just(0i32), Just(10), Just(20)],
        0i64..3,
    )
        .prop_map(|(timestamp, ttl, exp)| Liveness {
            timestamp,
            ttl,
            expires_at: exp * 100,
        })
}

fn arb_deletion() -> impl Strategy<Value = Deletion> {
    (0i64..4, 0i64..3).prop_map(|(ts, ldt)| Deletion::new(ts, ldt * 100))
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

fn arb_bound() -> impl Strategy<Value = Bound<Vec<u8>>> {
    prop_oneof![
        Just(Bound::Unbounded),
        arb_clustering().prop_map(Bound::Included),
        arb_clustering().prop_map(Bound::Excluded),
    ]
}

fn arb_cell_key() -> impl Strategy<Value = CellKey> {
    prop_oneof![
        (0u32..2).prop_map(|column| CellKey { column, path: None }),
        prop_oneof![Just(b"x".to_vec()), Just(b"y".to_vec())].prop_map(|p| CellKey {
            column: 2,
            path: Some(p)
        }),
    ]
}

fn arb_row_update() -> impl Strategy<Value = RowUpdate> {
    (
        arb_clustering(),
        proptest::option::weighted(0.4, arb_liveness()),
        proptest::option::weighted(0.2, arb_deletion()),
        proptest::collection::vec((arb_cell_key(), arb_cell()), 0..4),
        proptest::collection::vec((Just(2u32), arb_deletion()), 0..2),
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
        proptest::option::weighted(0.15, arb_deletion()),
        proptest::collection::vec(
            (arb_bound(), arb_bound(), arb_deletion()).prop_map(|(start, end, deletion)| {
                RangeDeletion {
                    start,
                    end,
                    deletion,
                }
            }),
            0..3,
        ),
        proptest::collection::vec(arb_row_update(), 0..4),
    )
        .prop_map(|(partition_deletion, range_deletions, rows)| Mutation {
            table: T,
            partition: partition(),
            partition_deletion,
            range_deletions,
            rows,
        })
}

fn arb_replica() -> impl Strategy<Value = Vec<Mutation>> {
    proptest::collection::vec(arb_mutation(), 0..5)
}

/// A row in canonical form: the rows of a replica's answer.
fn arb_canonical_row() -> impl Strategy<Value = Row> {
    arb_replica().prop_map(|ms| {
        let mut row = Row {
            clustering: b"r".to_vec(),
            ..Row::default()
        };
        for m in ms {
            for u in m.rows {
                let r = Row {
                    clustering: b"r".to_vec(),
                    liveness: u.liveness,
                    deletion: u.deletion,
                    cells: sorted(u.cells),
                    collection_deletions: u.collection_deletions,
                };
                row = Row::merge(&row, &r);
            }
        }
        row
    })
}

/// Cells sorted and with one version per key, as a `Row` holds them.
fn sorted(cells: Vec<(CellKey, Cell)>) -> Vec<(CellKey, Cell)> {
    let mut out: Vec<(CellKey, Cell)> = Vec::new();
    for (k, c) in cells {
        match out.iter_mut().find(|(k2, _)| *k2 == k) {
            Some((_, existing)) => *existing = reconcile_cell(existing, &c).clone(),
            None => out.push((k, c)),
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn slices() -> Vec<(Slice, bool)> {
    vec![
        (Slice::all(), false),
        (
            Slice {
                ranges: Vec::new(),
                include_static: false,
                reversed: true,
                limit: None,
            },
            true,
        ),
        (
            Slice {
                ranges: vec![
                    (
                        Bound::Excluded(b"a".to_vec()),
                        Bound::Included(b"b".to_vec()),
                    ),
                    (Bound::Included(b"c".to_vec()), Bound::Unbounded),
                ],
                include_static: true,
                reversed: false,
                limit: None,
            },
            false,
        ),
    ]
}

/// What one replica holding `mutations` answers, or an empty answer.
fn answer(mutations: &[Mutation], slice: &Slice) -> PartitionData {
    let engine = MemoryEngine::new();
    for m in mutations {
        engine.apply(m).expect("apply");
    }
    engine
        .read_partition(T, &partition(), slice, 0)
        .expect("read")
        .unwrap_or(PartitionData {
            partition: partition(),
            partition_deletion: None,
            range_deletions: Vec::new(),
            static_row: None,
            rows: Vec::new(),
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn cell_reconcile_laws(a in arb_cell(), b in arb_cell(), c in arb_cell()) {
        prop_assert_eq!(reconcile_cell(&a, &b), reconcile_cell(&b, &a));
        prop_assert_eq!(
            reconcile_cell(reconcile_cell(&a, &b), &c),
            reconcile_cell(&a, reconcile_cell(&b, &c))
        );
        prop_assert_eq!(reconcile_cell(&a, &a), &a);
        // A total order: equal only when identical.
        prop_assert_eq!(compare_cells(&a, &b) == std::cmp::Ordering::Equal, a == b);
        // The higher timestamp always wins.
        if a.timestamp != b.timestamp {
            let newer = if a.timestamp > b.timestamp { &a } else { &b };
            prop_assert_eq!(reconcile_cell(&a, &b), newer);
        }
    }

    #[test]
    fn liveness_reconcile_laws(a in arb_liveness(), b in arb_liveness(), c in arb_liveness()) {
        prop_assert_eq!(reconcile_liveness(a, b), reconcile_liveness(b, a));
        prop_assert_eq!(reconcile_liveness(reconcile_liveness(a, b), c), reconcile_liveness(a, reconcile_liveness(b, c)));
        prop_assert_eq!(reconcile_liveness(a, a), a);
        prop_assert_eq!(compare_liveness(&a, &b) == std::cmp::Ordering::Equal, a == b);
    }

    #[test]
    fn deletion_reconcile_laws(a in arb_deletion(), b in arb_deletion(), c in arb_deletion()) {
        prop_assert_eq!(reconcile_deletion(a, b), reconcile_deletion(b, a));
        prop_assert_eq!(reconcile_deletion(reconcile_deletion(a, b), c), reconcile_deletion(a, reconcile_deletion(b, c)));
        prop_assert_eq!(reconcile_deletion(a, a), a);
        prop_assert_eq!(compare_deletions(&a, &b) == std::cmp::Ordering::Equal, a == b);
    }

    #[test]
    fn row_merge_laws(a in arb_canonical_row(), b in arb_canonical_row(), c in arb_canonical_row()) {
        prop_assert_eq!(Row::merge(&a, &b), Row::merge(&b, &a));
        prop_assert_eq!(Row::merge(&Row::merge(&a, &b), &c), Row::merge(&a, &Row::merge(&b, &c)));
        prop_assert_eq!(Row::merge(&a, &a), a);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn partition_merge_laws(a in arb_replica(), b in arb_replica(), c in arb_replica()) {
        for (slice, reversed) in slices() {
            let (pa, pb, pc) = (answer(&a, &slice), answer(&b, &slice), answer(&c, &slice));
            let merge = |x: &PartitionData, y: &PartitionData| PartitionData::merge_in_order(x, y, reversed);
            prop_assert_eq!(merge(&pa, &pb), merge(&pb, &pa));
            prop_assert_eq!(merge(&merge(&pa, &pb), &pc), merge(&pa, &merge(&pb, &pc)));
            prop_assert_eq!(&merge(&pa, &pa), &pa);
        }
    }

    /// Merging two replicas' answers gives what one replica with both replicas' writes answers.
    #[test]
    fn merge_of_answers_is_answer_of_union(a in arb_replica(), b in arb_replica()) {
        let union: Vec<Mutation> = a.iter().chain(b.iter()).cloned().collect();
        for (slice, reversed) in slices() {
            let merged = PartitionData::merge_in_order(&answer(&a, &slice), &answer(&b, &slice), reversed);
            prop_assert_eq!(merged, answer(&union, &slice), "slice {:?}", slice);
        }
    }
}
