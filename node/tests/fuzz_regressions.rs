//! Replays the `node_verb` fuzz target's kept inputs on stable `cargo test` (CI has no fuzzer),
//! through the very function the target runs: `fuzz/src/verbs.rs`, included here with `#[path]`.
//! Also handcrafted hostile verb bodies, so the harness runs even when no crash is kept. See
//! FUZZING.md.

#[path = "../../fuzz/src/verbs.rs"]
mod harness;

use ringdb_node::storage::{PartitionKey, Slice};
use ringdb_node::verbs::{encode, VerbRequest, VerbResponse};

#[path = "../../fuzz/src/regressions.rs"]
mod regressions;

/// Replays `fuzz/regressions/<target>/` through `body`; returns how many inputs.
fn replay(target: &str, body: fn(&[u8])) -> usize {
    regressions::replay(env!("CARGO_MANIFEST_DIR"), target, body)
}

#[test]
fn node_verb_regressions() {
    replay("node_verb", harness::verb);

    let read = VerbRequest::Read {
        table: uuid::Uuid::from_u128(1),
        partition: PartitionKey {
            token: i64::MIN,
            key: vec![0xff; 3],
        },
        slice: Slice::all(),
        now: u32::MAX as _,
        digest: false,
    };
    let valid: Vec<(&str, Vec<u8>)> = vec![
        ("READ", encode(&read).expect("encode").to_vec()),
        (
            "SCHEMA_PUSH of an empty schema",
            encode(&VerbRequest::SchemaPush(Box::default()))
                .expect("encode")
                .to_vec(),
        ),
        (
            "MERKLE_TREE of depth 255",
            encode(&VerbRequest::MerkleTree {
                table: uuid::Uuid::nil(),
                start: i64::MAX,
                end: i64::MIN,
                depth: Some(255),
            })
            .expect("encode")
            .to_vec(),
        ),
        (
            "DIGEST response",
            encode(&VerbResponse::Digest([0xaa; 16]))
                .expect("encode")
                .to_vec(),
        ),
    ];
    let mut cases = valid.clone();
    // Every truncation of the valid bodies, and each with a trailing byte.
    for (name, bytes) in &valid {
        for n in 0..bytes.len() {
            cases.push((*name, bytes[..n].to_vec()));
        }
        let mut longer = bytes.clone();
        longer.push(0);
        cases.push((*name, longer));
    }
    cases.extend([
        ("empty", vec![]),
        ("unknown variant", vec![0xfa]),
        ("variant u32::MAX", vec![0xfc, 0xff, 0xff, 0xff, 0xff]),
        (
            "MUTATE claiming 2^31 mutations",
            vec![0, 0xfc, 0xff, 0xff, 0xff, 0x7f],
        ),
        (
            "MUTATE claiming 2^60 mutations",
            vec![0, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0x10],
        ),
        ("SCHEMA_PUSH of garbage", {
            let mut v = vec![8];
            v.extend_from_slice(&[0xff; 64]);
            v
        }),
        ("256 bytes of 0xff", vec![0xff; 256]),
        ("256 zero bytes", vec![0; 256]),
    ]);
    for (name, bytes) in cases {
        println!("node_verb: {name} ({} bytes)", bytes.len());
        harness::verb(&bytes);
    }
}
