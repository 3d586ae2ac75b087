//! Storage hot paths: `cargo bench -p ringdb-node --bench storage`.
//!
//! - `merge`: a coordinator reconciling two replicas' answers of one partition (read repair,
//!   QUORUM reads), rows half overlapping, newer on either side;
//! - `apply`: writing small mutations into sled one at a time versus as one `apply_all` (what
//!   hint replay, streaming and repair do with a verb's mutations).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ringdb_node::storage::{
    Cell, CellKey, ColumnId, Engine, Liveness, Mutation, PartitionData, PartitionKey, Row,
    RowUpdate, SledEngine, TableId,
};

const T: TableId = TableId::from_u128(0xbe9c);
const V: ColumnId = 1;

fn row(clustering: u32, timestamp: i64) -> Row {
    Row {
        clustering: clustering.to_be_bytes().to_vec(),
        liveness: Some(Liveness::new(timestamp)),
        deletion: None,
        cells: vec![(
            CellKey {
                column: V,
                path: None,
            },
            Cell::live(timestamp, vec![0x5a; 100]),
        )],
        collection_deletions: Vec::new(),
    }
}

fn answer(rows: impl Iterator<Item = Row>) -> PartitionData {
    PartitionData {
        partition: PartitionKey {
            token: 1,
            key: b"p".to_vec(),
        },
        partition_deletion: None,
        range_deletions: Vec::new(),
        static_row: None,
        rows: rows.collect(),
    }
}

fn merge(c: &mut Criterion) {
    // Replica a: rows 0..100 at ts 10; replica b: rows 50..150, even ones newer.
    let a = answer((0..100).map(|k| row(k, 10)));
    let b = answer((50..150).map(|k| row(k, if k % 2 == 0 { 20 } else { 5 })));
    let mut group = c.benchmark_group("merge");
    group.throughput(Throughput::Elements(200));
    group.bench_function("two_answers_100_rows_each", |bench| {
        bench.iter(|| PartitionData::merge(black_box(&a), black_box(&b)))
    });
    group.finish();
}

fn mutation(k: u32) -> Mutation {
    Mutation {
        table: T,
        partition: PartitionKey {
            token: ringdb_ring::murmur3::token_for_key(&k.to_be_bytes()).0,
            key: k.to_be_bytes().to_vec(),
        },
        partition_deletion: None,
        range_deletions: Vec::new(),
        rows: vec![RowUpdate {
            clustering: Vec::new(),
            liveness: Some(Liveness::new(1)),
            deletion: None,
            cells: vec![(
                CellKey {
                    column: V,
                    path: None,
                },
                Cell::live(1, vec![0x5a; 100]),
            )],
            collection_deletions: Vec::new(),
        }],
    }
}

fn apply(c: &mut Criterion) {
    const N: u32 = 1024;
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = SledEngine::open(dir.path(), 64 << 20).expect("open sled");
    let mut next = 0u32;
    let mut batch = || {
        next += N;
        (next - N..next).map(mutation).collect::<Vec<_>>()
    };
    let mut group = c.benchmark_group("apply_1024_mutations_of_100_bytes");
    group.throughput(Throughput::Elements(u64::from(N)));
    group.sample_size(20);
    group.bench_function("one_at_a_time", |b| {
        b.iter_batched(
            &mut batch,
            |ms| ms.iter().try_for_each(|m| engine.apply(m)).expect("apply"),
            BatchSize::LargeInput,
        )
    });
    group.bench_function("apply_all", |b| {
        b.iter_batched(
            &mut batch,
            |ms| engine.apply_all(&ms).expect("apply_all"),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, merge, apply);
criterion_main!(benches);
