//! Replays the `gossip_message` fuzz target's kept inputs on stable `cargo test` (CI has no
//! fuzzer), through the very function the target runs: `fuzz/src/internode.rs`, included here
//! with `#[path]`. Also handcrafted hostile streams and gossip messages, so the harness runs even
//! when no crash is kept. See FUZZING.md.

#[path = "../../fuzz/src/internode.rs"]
mod harness;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use ringdb_gossip::protocol::GossipMessage;
use ringdb_gossip::state::{
    AppStateKey, Digest, Endpoint, EndpointState, HeartbeatState, VersionedValue,
};
use ringdb_gossip::transport::wire::{encode_frame, FrameKind, RemoteError};
use ringdb_gossip::transport::{encode, Channel};

#[path = "../../fuzz/src/regressions.rs"]
mod regressions;

/// Replays `fuzz/regressions/<target>/` through `body`; returns how many inputs.
fn replay(target: &str, body: fn(&[u8])) -> usize {
    regressions::replay(env!("CARGO_MANIFEST_DIR"), target, body)
}

fn ep(last: u8) -> Endpoint {
    Endpoint(SocketAddr::from(([127, 0, 0, last], 7000)))
}

fn gossip_frame(msg: &GossipMessage) -> Vec<u8> {
    let body = encode(msg).expect("encode");
    encode_frame(FrameKind::OneWay(Channel::Gossip), &body, 16 << 20)
        .expect("frame")
        .to_vec()
}

fn state(generation: u64, version: u64, status: &str) -> EndpointState {
    let mut app_states = BTreeMap::new();
    app_states.insert(
        AppStateKey::Status,
        VersionedValue {
            value: status.to_string(),
            version,
        },
    );
    app_states.insert(
        AppStateKey::Tokens,
        VersionedValue {
            value: "not,a,token,list".to_string(),
            version,
        },
    );
    EndpointState {
        heartbeat: HeartbeatState {
            generation,
            version,
        },
        app_states,
    }
}

#[test]
fn gossip_message_regressions() {
    assert!(
        replay("gossip_message", harness::gossip) >= 1,
        "the kept gossip_message input was not replayed"
    );

    let syn = GossipMessage::Syn {
        cluster_name: "ringdb".into(),
        digests: vec![
            Digest {
                endpoint: ep(2),
                generation: u64::MAX,
                max_version: u64::MAX,
            },
            Digest {
                endpoint: ep(1),
                generation: 0,
                max_version: u64::MAX,
            },
        ],
    };
    // Versions at the top of the range, then a SHUTDOWN from the same node: marking it down
    // sets its status "at the version just above what we hold".
    let max_state = GossipMessage::Ack2 {
        states: vec![(ep(2), state(5, u64::MAX, "NORMAL"))],
    };
    let shutdown = GossipMessage::Shutdown { generation: 5 };
    let about_us = GossipMessage::Ack {
        digests: vec![],
        states: vec![(ep(1), state(u64::MAX, u64::MAX, "LEFT"))],
    };

    let mut streams: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("length u32::MAX", vec![0xff, 0xff, 0xff, 0xff, 0, 0]),
        ("length 0", vec![0, 0, 0, 0]),
        ("length past the end", vec![0, 0, 0, 9, 0, 0, 1]),
        ("unknown frame kind", vec![0, 0, 0, 2, 9, 9]),
        ("unknown channel", vec![0, 0, 0, 2, 0, 7]),
        ("header varint of 9 bytes", {
            let mut v = vec![0, 0, 0, 10, 0xff];
            v.extend_from_slice(&[0xff; 8]);
            v.push(0);
            v
        }),
        ("error answer", {
            encode_frame(FrameKind::Error(RemoteError::Malformed), b"", 64)
                .expect("frame")
                .to_vec()
        }),
        ("a verb on a gossip connection", {
            encode_frame(FrameKind::Request(Channel::Verb), b"\x00", 64)
                .expect("frame")
                .to_vec()
        }),
        ("SYN with extreme digests", gossip_frame(&syn)),
        ("state at u64::MAX then SHUTDOWN from the same sender", {
            // Frames alternate between two senders: the verb frame in between makes the
            // SHUTDOWN come from the node whose state was just applied.
            let mut v = gossip_frame(&max_state);
            v.extend(
                encode_frame(FrameKind::OneWay(Channel::Verb), b"", 64)
                    .expect("frame")
                    .to_vec(),
            );
            v.extend(gossip_frame(&shutdown));
            v
        }),
        ("a state about ourselves", gossip_frame(&about_us)),
        ("gossip body with trailing bytes", {
            let mut body = encode(&shutdown).expect("encode").to_vec();
            body.push(0);
            encode_frame(FrameKind::OneWay(Channel::Gossip), &body, 64)
                .expect("frame")
                .to_vec()
        }),
        (
            "a SYN claiming 2^60 digests",
            vec![0, 0, 0, 13, 0, 0, 0, 0, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0x10],
        ),
    ];
    // Bare gossip bodies too (the second half of the target).
    streams.push(("bare SYN", encode(&syn).expect("encode").to_vec()));
    streams.push(("bare SHUTDOWN", encode(&shutdown).expect("encode").to_vec()));
    streams.push(("bare invalid UTF-8 cluster name", vec![0, 2, 0xff, 0xfe, 0]));
    for (name, bytes) in streams {
        println!("gossip_message: {name}");
        harness::gossip(&bytes);
    }
}
