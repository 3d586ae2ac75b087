//! The storage engine's own ceiling: how fast sled 0.34 ingests rows shaped like ringdb's, with
//! no network, no decoding, no read-before-write and no other process — the most any path that
//! writes through sled (bootstrap streaming, hint replay, client writes) can reach here.
//!
//! ```text
//! cargo bench -p ringdb-tests --bench sled_ceiling            # 400 MiB per shape
//! cargo bench -p ringdb-tests --bench sled_ceiling -- --mb 1024
//! ```
//!
//! Keys are inserted in ascending order (as streaming a token range does) into a fresh database
//! with ringdb's default page cache (256 MiB), then `flush` is awaited. Shapes, each first in
//! batches applied with `Tree::apply_batch` (as `SledEngine` did before its commit log), then
//! as plain inserts (as it does now, the commit log giving atomicity):
//! - 1 KiB rows as ringdb stores them: two sled keys per row (the row marker, ~12 bytes, and the
//!   cell), 500 rows per batch — the bootstrap bench's rows;
//! - 1 KiB rows as one key each (what a one-value-per-row layout would cost);
//! - 100-byte rows as ringdb stores them (two keys per row), 128 rows per batch — the hint
//!   replay bench's rows.

use std::time::Instant;

use anyhow::{Context, Result};

struct Shape {
    what: &'static str,
    value: usize,
    keys_per_row: usize,
    batch_rows: usize,
    /// `Tree::apply_batch` per `batch_rows` rows; else one plain `insert` per key (what the
    /// engine does since the commit log took over atomicity).
    batched: bool,
}

fn main() -> Result<()> {
    let mut mb: usize = 400;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--mb" {
            mb = args.next().context("--mb N")?.parse().context("--mb N")?;
        }
    }
    println!("sled ceiling bench; machine: {}", ringdb_tests::machine());
    let shapes = [
        Shape {
            what: "1 KiB rows, 2 keys per row (ringdb's layout)",
            value: 1024,
            keys_per_row: 2,
            batch_rows: 500,
            batched: true,
        },
        Shape {
            what: "1 KiB rows, 1 key per row",
            value: 1024,
            keys_per_row: 1,
            batch_rows: 500,
            batched: true,
        },
        Shape {
            what: "100 B rows, 2 keys per row (ringdb's layout)",
            value: 100,
            keys_per_row: 2,
            batch_rows: 128,
            batched: true,
        },
        Shape {
            what: "1 KiB rows, 2 keys per row, plain inserts",
            value: 1024,
            keys_per_row: 2,
            batch_rows: 500,
            batched: false,
        },
        Shape {
            what: "1 KiB rows, 1 key per row, plain inserts",
            value: 1024,
            keys_per_row: 1,
            batch_rows: 500,
            batched: false,
        },
        Shape {
            what: "100 B rows, 2 keys per row, plain inserts",
            value: 100,
            keys_per_row: 2,
            batch_rows: 128,
            batched: false,
        },
    ];
    for shape in &shapes {
        let dir = tempfile::tempdir()?;
        let db = sled::Config::new()
            .path(dir.path())
            .cache_capacity(256 << 20)
            .open()?;
        let tree = db.open_tree("data")?;
        let rows = mb * (1 << 20) / shape.value;
        let value = vec![7u8; shape.value];
        let started = Instant::now();
        let mut row = 0usize;
        while row < rows {
            let mut batch = sled::Batch::default();
            for _ in 0..shape.batch_rows.min(rows - row) {
                // table id, token, partition key: 40 bytes, ascending.
                let mut key = Vec::with_capacity(41);
                key.extend_from_slice(&[1u8; 8]);
                key.extend_from_slice(&(row as u64).to_be_bytes());
                key.extend_from_slice(&[2u8; 24]);
                if shape.keys_per_row == 2 {
                    if shape.batched {
                        batch.insert(key.clone(), vec![1u8; 12]);
                    } else {
                        tree.insert(key.clone(), vec![1u8; 12])?;
                    }
                    key.push(9);
                }
                if shape.batched {
                    batch.insert(key, value.clone());
                } else {
                    tree.insert(key, value.clone())?;
                }
                row += 1;
            }
            if shape.batched {
                tree.apply_batch(batch)?;
            }
        }
        db.flush()?;
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "{:<48} {rows} rows, {mb} MiB of values in {seconds:.1} s: {:.1} MB/s, {:.0} rows/s",
            shape.what,
            (rows * shape.value) as f64 / seconds / 1e6,
            rows as f64 / seconds
        );
    }
    Ok(())
}
