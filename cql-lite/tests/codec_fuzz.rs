//! Robustness of every decoder that reads network (or storage) bytes: random bytes, every
//! truncation and random corruptions of valid input, and hostile declared lengths. Decoders must
//! answer with an error — never panic, never allocate by a declared count alone.

mod codec_common;

use bytes::{Bytes, BytesMut};
use codec_common::messages::*;
use codec_common::*;
use proptest::prelude::*;
use ringdb_cql::frame::{Frame, FrameError, Opcode};
use ringdb_cql::message::*;
use ringdb_cql::types::{decode_comparable, encode_comparable, CqlType, CqlValue};

const ALL_OPCODES: [Opcode; 16] = [
    Opcode::Error,
    Opcode::Startup,
    Opcode::Ready,
    Opcode::Authenticate,
    Opcode::Options,
    Opcode::Supported,
    Opcode::Query,
    Opcode::Result,
    Opcode::Prepare,
    Opcode::Execute,
    Opcode::Register,
    Opcode::Event,
    Opcode::Batch,
    Opcode::AuthChallenge,
    Opcode::AuthResponse,
    Opcode::AuthSuccess,
];

/// Feeds `body` to every message decoder under every opcode; only the absence of a panic counts.
fn decode_everything(body: &[u8]) {
    let body = Bytes::copy_from_slice(body);
    for op in ALL_OPCODES {
        let _ = Request::decode(op, body.clone());
        let _ = Response::decode(op, body.clone());
    }
}

/// Feeds `bytes` to the frame layer and, when it yields frames, to the frame-level decoders.
fn frame_everything(bytes: &[u8]) {
    let _ = Frame::check(bytes, 1 << 16);
    if let Ok(frame) = Frame::parse(bytes) {
        let _ = decode_request_frame(&frame);
        let _ = decode_response_frame(&frame);
        // Whatever the flags claim, the frame-level decoders stay in bounds.
        for flags in [0x02u8, 0x04, 0x08, 0x0e, 0xff] {
            let mut f = frame.clone();
            f.header.flags = ringdb_cql::frame::Flags(flags);
            let _ = decode_request_frame(&f);
            let _ = decode_response_frame(&f);
        }
    }
    let mut buf = BytesMut::from(bytes);
    while let Ok(Some(_)) = Frame::split_from(&mut buf, 1 << 16) {}
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn random_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..96)) {
        decode_everything(&body);
    }

    #[test]
    fn random_frames_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..64), valid_header in any::<bool>()) {
        if valid_header && bytes.len() >= 9 {
            bytes[0] = 0x04;
            let len = (bytes.len() - 9) as u32;
            bytes[5..9].copy_from_slice(&len.to_be_bytes());
            bytes[4] %= 0x11;
        }
        frame_everything(&bytes);
    }

    #[test]
    fn truncated_requests_are_errors(req in arb_request(), cut in any::<proptest::sample::Index>()) {
        let (opcode, body) = req.encode();
        let n = cut.index(body.len() + 1);
        // Any prefix decodes or fails, without panicking; the whole body decodes to the request.
        let _ = Request::decode(opcode, Bytes::copy_from_slice(&body[..n]));
        prop_assert_eq!(Request::decode(opcode, Bytes::from(body.clone())).unwrap(), req);
        let frame = request_frame(1, &Request::decode(opcode, Bytes::from(body)).unwrap());
        for k in 0..frame.len() {
            prop_assert_eq!(Frame::check(&frame[..k], 1 << 20), Err(FrameError::Incomplete));
        }
    }

    #[test]
    fn every_truncation_of_a_response_is_handled(resp in arb_response()) {
        let (opcode, body) = resp.encode();
        for n in 0..body.len() {
            let _ = Response::decode(opcode, Bytes::copy_from_slice(&body[..n]));
        }
    }

    #[test]
    fn corrupted_messages_never_panic(
        req in arb_request(),
        resp in arb_response(),
        flips in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>()), 1..6),
    ) {
        for (opcode, mut body) in [req.encode(), resp.encode()] {
            if body.is_empty() {
                continue;
            }
            for (i, x) in &flips {
                let at = i.index(body.len());
                body[at] ^= x;
            }
            decode_everything(&body);
            let _ = Request::decode(opcode, Bytes::from(body.clone()));
            let _ = Response::decode(opcode, Bytes::from(body));
        }
    }

    #[test]
    fn random_values_never_panic(ty in arb_type(), bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = CqlValue::deserialize(&ty, &bytes);
        let _ = decode_comparable(&ty, false, &bytes);
        let _ = decode_comparable(&ty, true, &bytes);
    }

    #[test]
    fn truncated_collections_are_errors((ty, value) in arb_typed_value()) {
        let bytes = value.serialize();
        for n in 0..bytes.len() {
            let r = CqlValue::deserialize(&ty, &bytes[..n]);
            if matches!(ty.unfrozen(), CqlType::List(_) | CqlType::Set(_) | CqlType::Map(_, _)) {
                prop_assert!(r.is_err(), "{} prefix {} of {:02x?} decoded to {:?}", ty, n, bytes, r);
            }
        }
        let mut comparable = Vec::new();
        encode_comparable(&value, false, &mut comparable);
        for n in 0..comparable.len() {
            prop_assert!(decode_comparable(&ty, false, &comparable[..n]).is_err());
        }
    }

    #[test]
    fn corrupted_values_never_panic(
        (ty, value) in arb_typed_value(),
        flips in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = value.serialize();
        let mut comparable = Vec::new();
        encode_comparable(&value, true, &mut comparable);
        for buf in [&mut bytes, &mut comparable] {
            if buf.is_empty() {
                continue;
            }
            for (i, x) in &flips {
                let at = i.index(buf.len());
                buf[at] ^= x;
            }
        }
        let _ = CqlValue::deserialize(&ty, &bytes);
        let _ = decode_comparable(&ty, true, &comparable);
    }
}

#[test]
fn hostile_counts_fail_fast() {
    // Rows claiming i32::MAX rows of i32::MAX columns (no metadata) in a tiny body.
    let body = hex("00000002  00000004 7fffffff  7fffffff  00000001");
    assert!(matches!(
        Response::decode(Opcode::Result, Bytes::from(body)),
        Err(ProtocolError::Truncated { .. })
    ));
    // Rows of zero columns.
    let body = hex("00000002  00000004 00000000  7fffffff");
    assert!(Response::decode(Opcode::Result, Bytes::from(body)).is_err());
    // Column specs claiming i32::MAX columns.
    let body = hex("00000002  00000001 7fffffff 0000 0000");
    assert!(Response::decode(Opcode::Result, Bytes::from(body)).is_err());
    // A string list of 65535 strings, a multimap of 65535 entries, no bytes behind them.
    assert!(Request::decode(Opcode::Register, Bytes::from(hex("ffff"))).is_err());
    assert!(Response::decode(Opcode::Supported, Bytes::from(hex("ffff"))).is_err());
    // 65535 values, 65535 batch statements.
    assert!(Request::decode(Opcode::Query, Bytes::from(hex("00000000 0001 01 ffff"))).is_err());
    assert!(Request::decode(Opcode::Batch, Bytes::from(hex("00 ffff"))).is_err());
    // Negative lengths.
    assert!(Request::decode(Opcode::Prepare, Bytes::from(hex("ffffffff"))).is_err());
    assert!(Request::decode(
        Opcode::Query,
        Bytes::from(hex("00000000 0001 01 0001 fffffffd"))
    )
    .is_err());
    // A list value claiming i32::MAX elements.
    assert!(
        CqlValue::deserialize(&CqlType::List(Box::new(CqlType::Int)), &hex("7fffffff")).is_err()
    );
    // A prepared result claiming i32::MAX partition key indices.
    let body = hex("00000004 0000 00000000 00000000 7fffffff");
    assert!(Response::decode(Opcode::Result, Bytes::from(body)).is_err());
    // Deeply nested type options.
    let mut body = hex("00000002 00000001 00000001 0001 6b 0001 74 0001 63");
    for _ in 0..100_000 {
        body.extend_from_slice(&hex("0020"));
    }
    body.extend_from_slice(&hex("0009 00000000"));
    assert_eq!(
        Response::decode(Opcode::Result, Bytes::from(body)),
        Err(ProtocolError::TooDeep)
    );
    // A frame announcing 4 GiB.
    assert_eq!(
        Frame::check(&hex("04 00 0000 07 ffffffff"), 256 << 20),
        Err(FrameError::TooLarge {
            len: u32::MAX as u64,
            max: 256 << 20
        })
    );
    // Comparable varint announcing 4 GiB.
    assert!(decode_comparable(&CqlType::Varint, false, &hex("80 ffffffff 01")).is_err());
}
