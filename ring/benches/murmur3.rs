//! Murmur3 partitioner cost per key: `cargo bench -p ringdb-ring --bench murmur3`.
//!
//! Every request routed by a token-aware client and every write a coordinator places hashes its
//! partition key once; these figures say what that costs for typical key sizes.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringdb_ring::murmur3::{serialize_partition_key, token_for_key};

fn tokens(c: &mut Criterion) {
    let mut group = c.benchmark_group("murmur3_token");
    for len in [4usize, 16, 36, 100, 1024] {
        let key: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_with_input(BenchmarkId::from_parameter(len), &key, |b, key| {
            b.iter(|| token_for_key(black_box(key)))
        });
    }
    group.finish();
}

fn composite_keys(c: &mut Criterion) {
    let a = 42i32.to_be_bytes();
    let b = b"user-0001".to_vec();
    c.bench_function("serialize_and_hash_two_component_key", |bench| {
        bench.iter(|| {
            let key = serialize_partition_key(&[black_box(&a[..]), black_box(&b[..])])
                .expect("two short components");
            token_for_key(&key)
        })
    });
}

criterion_group!(benches, tokens, composite_keys);
criterion_main!(benches);
