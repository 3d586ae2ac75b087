//! Fuzz target bodies for `ringdb-cql`: frames, request and response messages, CQL text, and
//! values of every type.
//!
//! Shared by the `cql_*` fuzz targets (`fuzz/fuzz_targets/`) and by the stable regression test
//! `cql-lite/tests/fuzz_regressions.rs`, which includes this file with `#[path]` and replays
//! `fuzz/regressions/cql_*/*`. So it may use only what `ringdb-cql`'s own tests can: the crate
//! itself and `bytes`.
//!
//! Every function takes arbitrary bytes and must return normally: decoders answer with errors,
//! never panic; and where a decode succeeds, what it decoded re-encodes to bytes that decode to
//! the same thing (a failed `assert!` is a crash the fuzzer reports).

use bytes::{Bytes, BytesMut};
use ringdb_cql::ast::{Literal, Statement, Term};
use ringdb_cql::frame::{Flags, Frame, FrameError, FrameHeader, Opcode, HEADER_LEN, MAX_FRAME_LEN};
use ringdb_cql::lexer::{split_statements, tokenize};
use ringdb_cql::message::wire::Reader;
use ringdb_cql::message::{
    decode_request_frame, decode_response_frame, frame_error_response, put_type, read_type,
    request_frame_with, response_frame, ProtocolError, Request, Response,
};
use ringdb_cql::parser::{parse_statement, parse_statements, parse_type};
use ringdb_cql::types::{self, compare, decode_comparable, encode_comparable, CqlType, CqlValue};

/// The frame layer: `Frame::check` / `parse` / `split_from` agree with each other, a whole frame
/// re-encodes to its own bytes, and its body decodes (as a request and as a response, with the
/// header's flags: compression, tracing, custom payload, warnings) to messages that round-trip.
pub fn frame(data: &[u8]) {
    for limit in [MAX_FRAME_LEN, 1024, 0] {
        let checked = Frame::check(data, limit);
        let mut buf = BytesMut::from(data);
        let split = Frame::split_from(&mut buf, limit);
        match &checked {
            Ok(total) => {
                let header = FrameHeader::parse(data).expect("check accepted the header");
                assert_eq!(*total, HEADER_LEN + header.length as usize);
                assert!(*total <= data.len());
                let parsed = Frame::parse(data).expect("check accepted the frame");
                assert_eq!(
                    parsed.encode(),
                    &data[..*total],
                    "frame re-encodes to its bytes"
                );
                assert_eq!(split.as_ref().ok().and_then(|f| f.as_ref()), Some(&parsed));
                assert_eq!(
                    buf.len(),
                    data.len() - total,
                    "split_from took exactly one frame"
                );
            }
            Err(FrameError::Incomplete) => {
                assert_eq!(split, Ok(None));
                assert!(frame_error_response(&FrameError::Incomplete).is_none());
            }
            Err(e) => {
                assert_eq!(split.as_ref().err(), Some(e));
                // The ERROR a server answers with is a well-formed v4 response frame.
                let answer = frame_error_response(e).expect("a malformed frame gets an answer");
                let answer = Frame::parse(&answer).expect("the answer is a frame");
                assert_eq!(answer.header.version, 0x84);
                match decode_response_frame(&answer).map(|r| r.response) {
                    Ok(Response::Error(_)) => {}
                    other => panic!("the answer to {e:?} decodes as {other:?}"),
                }
            }
        }
    }
    // A stream of several frames, as a connection reads them.
    let mut buf = BytesMut::from(data);
    for _ in 0..64 {
        match Frame::split_from(&mut buf, 1 << 16) {
            Ok(Some(f)) => frame_body(&f),
            _ => break,
        }
    }
}

/// Decodes a whole frame's body as both directions and checks the round trips.
fn frame_body(frame: &Frame) {
    let compressed = frame.header.flags.contains(Flags::COMPRESSION);
    match decode_request_frame(frame) {
        Ok(decoded) => {
            assert!(!compressed, "a compressed frame was decoded");
            assert_eq!(decoded.stream, frame.header.stream);
            let bytes = request_frame_with(decoded.stream, &decoded.request, &decoded.extras);
            let again = Frame::parse(&bytes).expect("an encoded request is a frame");
            assert_eq!(Frame::check(&bytes, MAX_FRAME_LEN), Ok(bytes.len()));
            let back = decode_request_frame(&again).expect("an encoded request decodes");
            assert_eq!(back, decoded, "request frame round trip");
        }
        Err(e) => {
            if compressed {
                assert_eq!(e, ProtocolError::Compressed);
            }
            let _ = e.to_error_body();
        }
    }
    match decode_response_frame(frame) {
        Ok(decoded) => {
            assert!(!compressed, "a compressed frame was decoded");
            let bytes = response_frame(decoded.stream, &decoded.response, &decoded.extras);
            let again = Frame::parse(&bytes).expect("an encoded response is a frame");
            let back = decode_response_frame(&again).expect("an encoded response decodes");
            assert_eq!(back, decoded, "response frame round trip");
        }
        Err(e) => {
            if compressed {
                assert_eq!(e, ProtocolError::Compressed);
            }
        }
    }
}

/// One message body: the first byte is the opcode, the rest the body. Every request opcode
/// (STARTUP, OPTIONS, QUERY, PREPARE, EXECUTE, BATCH, REGISTER, AUTH_RESPONSE) and every
/// response opcode is decoded; what decodes re-encodes to a body that decodes equal.
pub fn request(data: &[u8]) {
    let Some((&op, body)) = data.split_first() else {
        return;
    };
    let Some(opcode) = Opcode::from_u8(op) else {
        return;
    };
    let body = Bytes::copy_from_slice(body);
    match Request::decode(opcode, body.clone()) {
        Ok(req) => {
            assert!(opcode.is_request(), "{opcode:?} decoded as a request");
            assert_eq!(req.opcode(), opcode);
            let (op2, encoded) = req.encode();
            assert_eq!(op2, opcode);
            let back = Request::decode(op2, Bytes::from(encoded)).expect("re-encoded request");
            assert_eq!(back, req, "request round trip");
        }
        Err(e) => {
            let _ = e.to_error_body();
        }
    }
    if let Ok(resp) = Response::decode(opcode, body) {
        assert!(!opcode.is_request(), "{opcode:?} decoded as a response");
        assert_eq!(resp.opcode(), opcode);
        let (op2, encoded) = resp.encode();
        let back = Response::decode(op2, Bytes::from(encoded)).expect("re-encoded response");
        assert_eq!(back, resp, "response round trip");
    }
}

/// CQL text: the lexer, the statement splitter and the parser on the bytes as UTF-8 (when they
/// are) and as lossy UTF-8 (always).
pub fn parser(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        parse_text(text);
    } else {
        parse_text(&String::from_utf8_lossy(data));
    }
}

fn parse_text(text: &str) {
    for t in tokenize(text) {
        assert!(
            t.start <= t.end && t.end <= text.len(),
            "token span out of bounds"
        );
        assert!(text.is_char_boundary(t.start) && text.is_char_boundary(t.end));
    }
    let _ = split_statements(text);
    let _ = parse_statements(text);
    let _ = parse_statement(text);
    if let Ok(ty) = parse_type(text) {
        // A type's text (as `system_schema` stores it) parses back to the same type, by both
        // the CQL parser and the schema's type-text reader.
        let shown = ty.to_string();
        assert_eq!(
            parse_type(&shown).ok(),
            Some(ty.clone()),
            "type text {shown}"
        );
        assert_eq!(
            types::parse_type(&shown),
            Some(ty),
            "schema type text {shown}"
        );
    }
}

/// A value of any type: a type descriptor (`[option]`, nested as deep as the decoder allows)
/// read from the front of the input, then the rest as that type's serialized value. A value that
/// decodes re-serializes to bytes that decode to the same bytes again, renders, and round-trips
/// through the order-preserving storage encoding; scalar values also through CQL literal text.
pub fn value(data: &[u8]) {
    let mut r = Reader::new(Bytes::copy_from_slice(data));
    let Ok(ty) = read_type(&mut r) else {
        return;
    };
    let mut option = Vec::new();
    put_type(&mut option, &ty);
    let again = read_type(&mut Reader::new(Bytes::from(option))).expect("re-encoded type");
    assert_eq!(again, ty, "type option round trip");
    let rest = r.raw(r.remaining(), "value").expect("the rest is there");

    // Hostile storage bytes too: the comparable decoder reads sled keys.
    let _ = decode_comparable(&ty, false, &rest);
    let _ = decode_comparable(&ty, true, &rest);

    let Ok(v) = CqlValue::deserialize(&ty, &rest) else {
        return;
    };
    let bytes = v.serialize();
    let v2 = CqlValue::deserialize(&ty, &bytes).expect("a serialized value deserializes");
    assert_eq!(v2.serialize(), bytes, "value round trip for {ty}");
    assert_eq!(compare(&v, &v2), std::cmp::Ordering::Equal);
    let _ = v.render();
    let literal = v.to_cql_literal();

    for descending in [false, true] {
        let mut key = Vec::new();
        encode_comparable(&v, descending, &mut key);
        let (v3, used) = decode_comparable(&ty, descending, &key)
            .unwrap_or_else(|e| panic!("comparable {ty} {v:?} does not decode: {e}"));
        assert_eq!(used, key.len(), "comparable {ty}: prefix-free");
        let mut key3 = Vec::new();
        encode_comparable(&v3, descending, &mut key3);
        assert_eq!(key3, key, "comparable round trip for {ty}");
    }

    if is_scalar_with_literal(&ty) {
        literal_round_trip(&ty, &v, &literal);
    }
}

fn is_scalar_with_literal(ty: &CqlType) -> bool {
    !matches!(
        ty,
        CqlType::List(_)
            | CqlType::Set(_)
            | CqlType::Map(..)
            | CqlType::Tuple(_)
            | CqlType::Frozen(_)
            | CqlType::Custom(_)
            // A counter literal is an increment, not a value.
            | CqlType::Counter
    )
}

/// `to_cql_literal` text parses (in an INSERT) to a literal that `from_literal` turns back into
/// the same value.
fn literal_round_trip(ty: &CqlType, v: &CqlValue, literal: &str) {
    let cql = format!("INSERT INTO t (a) VALUES ({literal})");
    let stmt = parse_statement(&cql).unwrap_or_else(|e| panic!("{ty} literal {literal}: {e}"));
    let Statement::Insert(insert) = stmt else {
        panic!("{cql} is not an INSERT");
    };
    let lit: Literal = match insert.values.first() {
        Some(Term::Literal(lit)) => lit.clone(),
        other => panic!("{ty} literal {literal} parsed as {other:?}"),
    };
    let back = CqlValue::from_literal(ty, &lit)
        .unwrap_or_else(|e| panic!("{ty} literal {literal} is refused: {e}"));
    let same = match (v, &back) {
        (CqlValue::Float(a), CqlValue::Float(b)) => a.is_nan() && b.is_nan() || a == b,
        (CqlValue::Double(a), CqlValue::Double(b)) => a.is_nan() && b.is_nan() || a == b,
        _ => back.serialize() == v.serialize(),
    };
    assert!(same, "{ty} literal {literal}: {v:?} came back as {back:?}");
}
