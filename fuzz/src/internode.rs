//! Fuzz target bodies for `ringdb-gossip`: the internode frame layer as a QUIC stream delivers
//! it, and gossip messages (SYN, ACK, ACK2, SHUTDOWN) as the membership task decodes and applies
//! them.
//!
//! Shared by the `gossip_message` fuzz target and by the stable regression test
//! `gossip/tests/fuzz_regressions.rs`, which includes this file with `#[path]` and replays
//! `fuzz/regressions/gossip_message/*`; so it uses only `ringdb-gossip` and `bytes`.
//!
//! The transport accepts no QUIC datagrams (its endpoint sets no datagram receive buffer): every
//! internode byte ringdb itself parses arrives on a stream, as one frame per stream. Raw UDP
//! packets are parsed by quinn, before any of our code runs.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ringdb_gossip::protocol::{GossipConfig, GossipMessage, Gossiper};
use ringdb_gossip::state::Endpoint;
use ringdb_gossip::transport::wire::{
    decode_frame, decode_payload, encode_frame, payload_len, FrameKind,
};
use ringdb_gossip::transport::{decode, encode, Channel};

/// The transport's default body limit (`TransportConfig::max_message_bytes`).
const MAX_BODY: usize = 16 << 20;

/// What a frame on a stream turned out to carry, for callers that decode the body further.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivered {
    /// Nothing: the stream was malformed, too large or cut short.
    Nothing,
    /// A body for a channel (one-way or request).
    Message(Channel, Bytes),
    /// A response or error answer to one of our requests.
    Answer,
}

/// One stream's bytes, read the way `transport::stream::read_frame` reads them: a 4-byte length
/// prefix checked against the limit first, then that many bytes (fewer means the stream ended
/// early), then the header and body. A frame that parses re-encodes to a frame that parses the
/// same. Returns what was delivered and how many bytes the frame took (0: none).
pub fn stream(data: &[u8], max_body: usize) -> (Delivered, usize) {
    let Some(prefix) = data.get(..4) else {
        return (Delivered::Nothing, 0);
    };
    let prefix: [u8; 4] = [prefix[0], prefix[1], prefix[2], prefix[3]];
    let Ok(len) = payload_len(prefix, max_body) else {
        return (Delivered::Nothing, 0);
    };
    let Some(payload) = data.get(4..4 + len) else {
        return (Delivered::Nothing, 0);
    };
    let used = 4 + len;
    let from_whole = decode_frame(Bytes::copy_from_slice(&data[..used]), max_body);
    let Ok((kind, body)) = decode_payload(Bytes::copy_from_slice(payload), max_body) else {
        assert!(
            from_whole.is_err(),
            "decode_frame and decode_payload disagree"
        );
        return (Delivered::Nothing, used);
    };
    assert_eq!(from_whole, Ok((kind, body.clone())));
    let frame = encode_frame(kind, &body, max_body).expect("a decoded frame re-encodes");
    assert_eq!(
        decode_frame(frame, max_body),
        Ok((kind, body.clone())),
        "frame round trip"
    );
    let delivered = match kind {
        FrameKind::OneWay(channel) | FrameKind::Request(channel) => {
            Delivered::Message(channel, body)
        }
        FrameKind::Response | FrameKind::Error(_) => Delivered::Answer,
    };
    (delivered, used)
}

/// Arbitrary bytes as one gossip message body, and as a connection's successive streams (each a
/// length-prefixed frame) whose gossip messages are applied in turn to one gossiper, from two
/// senders, with gossip rounds in between: so sequences (a state, then a SHUTDOWN...) are
/// reachable.
pub fn gossip(data: &[u8]) {
    if let Some(msg) = gossip_body(data) {
        let mut session = Session::new();
        session.deliver(endpoint(2), msg);
        session.finish();
    }
    let mut session = Session::new();
    let mut rest = data;
    for i in 0..16u8 {
        let limit = if i % 4 == 3 { 64 } else { MAX_BODY };
        let (delivered, used) = stream(rest, limit);
        if used == 0 {
            break;
        }
        rest = &rest[used..];
        if let Delivered::Message(Channel::Gossip, body) = delivered {
            if let Some(msg) = gossip_body(&body) {
                session.deliver(endpoint(2 + i % 2), msg);
            }
        }
    }
    session.finish();
}

/// A gossip message body, decoded as the membership task does; what decodes round-trips.
pub fn gossip_body(data: &[u8]) -> Option<GossipMessage> {
    let msg = decode::<GossipMessage>(data).ok()?;
    let bytes = encode(&msg).expect("a decoded message re-encodes");
    let back: GossipMessage = decode(&bytes).expect("a re-encoded message decodes");
    assert_eq!(back, msg, "gossip message round trip");
    Some(msg)
}

fn endpoint(last: u8) -> Endpoint {
    Endpoint(SocketAddr::V4(SocketAddrV4::new(
        Ipv4Addr::new(127, 0, 0, last),
        7000,
    )))
}

/// A gossiper (127.0.0.1, seed 127.0.0.2) fed messages as the membership task feeds it; all it
/// sends must encode and decode.
struct Session {
    g: Gossiper,
    now: Instant,
    cluster_name: String,
}

impl Session {
    fn new() -> Session {
        let config = GossipConfig {
            seeds: vec![endpoint(2)],
            ..GossipConfig::default()
        };
        let cluster_name = config.cluster_name.clone();
        let now = Instant::now();
        let mut g = Gossiper::new(endpoint(1), 1_000, config, 7, now);
        g.handle_tick(now);
        drain(&mut g);
        Session {
            g,
            now,
            cluster_name,
        }
    }

    fn deliver(&mut self, from: Endpoint, msg: GossipMessage) {
        // A SYN from another cluster is ignored; deliver it as from ours as well.
        let ours = match &msg {
            GossipMessage::Syn {
                cluster_name,
                digests,
            } if *cluster_name != self.cluster_name => Some(GossipMessage::Syn {
                cluster_name: self.cluster_name.clone(),
                digests: digests.clone(),
            }),
            _ => None,
        };
        for m in std::iter::once(msg).chain(ours) {
            self.now += Duration::from_millis(10);
            self.g.handle_message(self.now, from, m);
            drain(&mut self.g);
        }
        self.now += Duration::from_millis(150);
        self.g.handle_tick(self.now);
        drain(&mut self.g);
    }

    /// Reads what the node reads from the table, waits past the failure detector's patience,
    /// and shuts down.
    fn finish(mut self) {
        let view = self.g.view();
        let _ = format!("{view:?}");
        for e in [endpoint(1), endpoint(2), endpoint(3)] {
            if let Some(state) = self.g.endpoint_state(&e) {
                let _ = state.status();
                let _ = state.tokens();
            }
            let _ = self.g.phi(&e, self.now);
        }
        self.now += Duration::from_secs(30);
        self.g.handle_tick(self.now);
        drain(&mut self.g);
        self.g.announce_shutdown(self.now);
        drain(&mut self.g);
    }
}

fn drain(g: &mut Gossiper) {
    while let Some((_, out)) = g.poll_transmit() {
        let bytes = encode(&out).expect("an outgoing message encodes");
        let back: GossipMessage = decode(&bytes).expect("an outgoing message decodes");
        assert_eq!(back, out);
    }
    while g.poll_event().is_some() {}
}
