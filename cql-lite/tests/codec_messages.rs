//! Protocol v4 messages: golden frames derived by hand from the spec, and encode → decode round
//! trips for every request and response (hand-picked and random), with and without frame flags.

mod codec_common;

use bytes::Bytes;
use codec_common::messages::*;
use codec_common::*;
use proptest::prelude::*;
use ringdb_cql::frame::{Flags, Frame, FrameError, Opcode};
use ringdb_cql::message::*;
use ringdb_cql::types::{CqlType, CqlValue};
use std::collections::HashMap;

fn s(text: &str) -> String {
    text.to_string()
}

fn b(bytes: &[u8]) -> Bytes {
    Bytes::copy_from_slice(bytes)
}

fn col(name: &str, ty: CqlType) -> ColumnSpec {
    ColumnSpec {
        keyspace: s("ks"),
        table: s("t"),
        name: s(name),
        ty,
    }
}

/// Checks that `frame_bytes` is one whole request frame holding `req`, both ways.
fn assert_request_golden(stream: i16, req: &Request, frame_bytes: &[u8]) {
    assert_eq!(request_frame(stream, req), frame_bytes, "encode {req:?}");
    assert_eq!(Frame::check(frame_bytes, 1 << 20), Ok(frame_bytes.len()));
    let frame = Frame::parse(frame_bytes).unwrap();
    assert_eq!(frame.header.stream, stream);
    let decoded = decode_request_frame(&frame).unwrap();
    assert_eq!(&decoded.request, req);
}

/// Checks that `frame_bytes` is one whole response frame holding `resp`, both ways.
fn assert_response_golden(stream: i16, resp: &Response, frame_bytes: &[u8]) {
    assert_eq!(
        response_frame(stream, resp, &ResponseExtras::default()),
        frame_bytes,
        "encode {resp:?}"
    );
    let frame = Frame::parse(frame_bytes).unwrap();
    assert_eq!(frame.header.version, 0x84);
    assert_eq!(frame.header.stream, stream);
    assert_eq!(
        &Response::decode(frame.header.opcode, frame.body).unwrap(),
        resp
    );
}

// ---------------------------------------------------------------------------------------------
// Golden frames (hex laid out by field; header = version flags stream opcode length)
// ---------------------------------------------------------------------------------------------

#[test]
fn golden_options_request() {
    assert_request_golden(0, &Request::Options, &hex("04 00 0000 05 00000000"));
}

#[test]
fn golden_startup_with_cql_version() {
    // [string map] with one entry: n=1, "CQL_VERSION" (11 bytes), "3.0.0" (5 bytes) = 22 bytes.
    let frame = cat(&[
        &hex("04 00 0001 01 00000016"),
        &hex("0001"),
        &hex("000b"),
        b"CQL_VERSION",
        &hex("0005"),
        b"3.0.0",
    ]);
    assert_request_golden(
        1,
        &Request::Startup(vec![(s("CQL_VERSION"), s("3.0.0"))]),
        &frame,
    );
}

#[test]
fn golden_ready() {
    assert_response_golden(1, &Response::Ready, &hex("84 00 0001 02 00000000"));
}

#[test]
fn golden_supported() {
    // [string multimap], keys in sorted order: COMPRESSION -> [], CQL_VERSION -> ["3.4.5"].
    // Length: 2 + (2+11+2) + (2+11+2+2+5) = 39 = 0x27.
    let frame = cat(&[
        &hex("84 00 0000 06 00000027"),
        &hex("0002"),
        &hex("000b"),
        b"COMPRESSION",
        &hex("0000"),
        &hex("000b"),
        b"CQL_VERSION",
        &hex("0001 0005"),
        b"3.4.5",
    ]);
    let mut map = HashMap::new();
    map.insert(s("CQL_VERSION"), vec![s("3.4.5")]);
    map.insert(s("COMPRESSION"), vec![]);
    assert_response_golden(0, &Response::Supported(map), &frame);
}

#[test]
fn golden_query_as_python_driver_sends_it() {
    // Flags 0x24: page size (0x04) + default timestamp (0x20); consistency LOCAL_ONE (0x000A).
    let query = b"SELECT * FROM t";
    let body_len = 4 + query.len() + 2 + 1 + 4 + 8;
    assert_eq!(body_len, 34);
    let frame = cat(&[
        &hex("04 00 0005 07 00000022"),
        &hex("0000000f"),
        query,
        &hex("000a"),
        &hex("24"),
        &hex("00001388"),         // page size 5000
        &hex("0005f1b2c3d4e5f6"), // timestamp (µs)
    ]);
    let req = Request::Query {
        query: s("SELECT * FROM t"),
        params: QueryParameters {
            consistency: Consistency::LocalOne,
            page_size: Some(5000),
            default_timestamp: Some(0x0005_f1b2_c3d4_e5f6),
            ..QueryParameters::default()
        },
    };
    assert_request_golden(5, &req, &frame);
}

#[test]
fn golden_query_as_cqlsh_sends_it() {
    // Flags 0x34: page size + serial consistency (0x10) + default timestamp; ONE; page 100;
    // serial consistency SERIAL (0x0008); cqlsh ends statements with ';'.
    let query = b"SELECT * FROM system.local;";
    let frame = cat(&[
        &hex("04 00 0002 07 00000030"),
        &hex("0000001b"),
        query,
        &hex("0001"),
        &hex("34"),
        &hex("00000064"),
        &hex("0008"),
        &hex("0000000000000001"),
    ]);
    assert_eq!(frame.len() - 9, 0x30);
    let req = Request::Query {
        query: s("SELECT * FROM system.local;"),
        params: QueryParameters {
            consistency: Consistency::One,
            page_size: Some(100),
            serial_consistency: Some(Consistency::Serial),
            default_timestamp: Some(1),
            ..QueryParameters::default()
        },
    };
    assert_request_golden(2, &req, &frame);
}

#[test]
fn golden_query_with_values_names_and_paging_state() {
    // Flags 0x49 = values (0x01) + paging state (0x08) + names (0x40); values: "k" = int 1,
    // "v" = null; then paging state [bytes] 0xab.
    let frame = cat(&[
        &hex("04 00 0003 07 00000021"),
        &hex("00000001"),
        b"?",
        &hex("0004"),
        &hex("49"),
        &hex("0002"),
        &hex("0001"),
        b"k",
        &hex("00000004 00000001"),
        &hex("0001"),
        b"v",
        &hex("ffffffff"),
        &hex("00000001 ab"),
    ]);
    assert_eq!(frame.len() - 9, 5 + 2 + 1 + 2 + (3 + 8) + (3 + 4) + 5);
    let req = Request::Query {
        query: s("?"),
        params: QueryParameters {
            consistency: Consistency::Quorum,
            values: vec![BoundValue::Value(b(&[0, 0, 0, 1])), BoundValue::Null],
            names: Some(vec![s("k"), s("v")]),
            paging_state: Some(b(&[0xab])),
            ..QueryParameters::default()
        },
    };
    assert_request_golden(3, &req, &frame);
}

#[test]
fn golden_execute_with_unset_value() {
    // id [short bytes] 0xcafe; ONE; flags 0x03 = values + skip metadata; one unset value (-2).
    let frame = hex("04 00 0004 0a 0000000d  0002 cafe  0001  03  0001 fffffffe");
    let req = Request::Execute {
        id: b(&[0xca, 0xfe]),
        params: QueryParameters {
            consistency: Consistency::One,
            values: vec![BoundValue::Unset],
            skip_metadata: true,
            ..QueryParameters::default()
        },
    };
    assert_request_golden(4, &req, &frame);
}

#[test]
fn golden_error_for_unsupported_version() {
    // ERROR, code 0x000A, [string] message of 75 bytes; body 4 + 2 + 75 = 81 = 0x51.
    let message = b"Invalid or unsupported protocol version (66); supported versions are (4/v4)";
    assert_eq!(message.len(), 75);
    let frame = cat(&[
        &hex("84 00 0000 00 00000051"),
        &hex("0000000a"),
        &hex("004b"),
        message,
    ]);
    assert_eq!(unsupported_version_response(0x42, 0), frame);
    assert_response_golden(
        0,
        &Response::Error(ErrorBody::unsupported_version(0x42)),
        &frame,
    );
    // The whole exchange: the header of a v66 request yields the error to send back.
    let err = Frame::check(&hex("42 00 0000 05 00000000"), 1024).unwrap_err();
    assert_eq!(
        err,
        FrameError::UnsupportedVersion {
            version: 0x42,
            stream: 0
        }
    );
    assert_eq!(frame_error_response(&err), Some(frame));
}

#[test]
fn golden_rows_with_int_and_text_columns() {
    // kind 2; metadata flags 0x0001 (global table spec), 2 columns, "ks"."t",
    // k int (0x0009), v text (0x000D); 1 row: k = 1, v = 'a'.
    let body = cat(&[
        &hex("00000002"),
        &hex("00000001 00000002"),
        &hex("0002"),
        b"ks",
        &hex("0001"),
        b"t",
        &hex("0001"),
        b"k",
        &hex("0009"),
        &hex("0001"),
        b"v",
        &hex("000d"),
        &hex("00000001"),
        &hex("00000004 00000001"),
        &hex("00000001 61"),
    ]);
    let frame = cat(&[
        &hex("84 00 0007 08"),
        &(body.len() as u32).to_be_bytes(),
        &body,
    ]);
    let resp = Response::Result(ResultBody::Rows(Rows {
        metadata: ResultMetadata::new(vec![col("k", CqlType::Int), col("v", CqlType::Text)]),
        rows: vec![vec![
            Some(Bytes::from(CqlValue::Int(1).serialize())),
            Some(Bytes::from(CqlValue::Text(s("a")).serialize())),
        ]],
    }));
    assert_response_golden(7, &resp, &frame);
}

#[test]
fn golden_rows_with_paging_state_and_per_column_specs() {
    // flags 0x0002 (more pages), 2 columns from different tables, paging state 0x0102,
    // one row with a null cell.
    let body = cat(&[
        &hex("00000002"),
        &hex("00000002 00000002"),
        &hex("00000002 0102"),
        &hex("0001"),
        b"a",
        &hex("0001"),
        b"x",
        &hex("0001"),
        b"c",
        &hex("0002"),
        &hex("0001"),
        b"b",
        &hex("0001"),
        b"y",
        &hex("0001"),
        b"d",
        &hex("0020 0009"), // list<int>
        &hex("00000001"),
        &hex("00000001 01"),
        &hex("ffffffff"),
    ]);
    let columns = vec![
        ColumnSpec {
            keyspace: s("a"),
            table: s("x"),
            name: s("c"),
            ty: CqlType::BigInt,
        },
        ColumnSpec {
            keyspace: s("b"),
            table: s("y"),
            name: s("d"),
            ty: CqlType::List(Box::new(CqlType::Int)),
        },
    ];
    let mut metadata = ResultMetadata::new(columns);
    metadata.paging_state = Some(b(&[1, 2]));
    let resp = Response::Result(ResultBody::Rows(Rows {
        metadata,
        rows: vec![vec![Some(b(&[1])), None]],
    }));
    let frame = cat(&[
        &hex("84 00 0000 08"),
        &(body.len() as u32).to_be_bytes(),
        &body,
    ]);
    assert_response_golden(0, &resp, &frame);
}

#[test]
fn golden_prepared() {
    // kind 4; id 0xcafebabe; metadata: flags 1, 1 variable, 1 pk index (0), "ks"."t", k int;
    // result metadata: no metadata (0x0004), 0 columns.
    let body = cat(&[
        &hex("00000004"),
        &hex("0004 cafebabe"),
        &hex("00000001 00000001 00000001 0000"),
        &hex("0002"),
        b"ks",
        &hex("0001"),
        b"t",
        &hex("0001"),
        b"k",
        &hex("0009"),
        &hex("00000004 00000000"),
    ]);
    let frame = cat(&[
        &hex("84 00 0003 08"),
        &(body.len() as u32).to_be_bytes(),
        &body,
    ]);
    let resp = Response::Result(ResultBody::Prepared {
        id: b(&[0xca, 0xfe, 0xba, 0xbe]),
        metadata: PreparedMetadata {
            columns: vec![col("k", CqlType::Int)],
            pk_indices: vec![0],
        },
        result_metadata: ResultMetadata::empty(),
    });
    assert_response_golden(3, &resp, &frame);
}

#[test]
fn golden_schema_change_result_and_event() {
    let change = SchemaChange {
        change_type: SchemaChangeType::Created,
        target: SchemaChangeTarget::Table,
        keyspace: s("ks"),
        name: s("t"),
        args: vec![],
    };
    let body = cat(&[
        &hex("00000005"),
        &hex("0007"),
        b"CREATED",
        &hex("0005"),
        b"TABLE",
        &hex("0002"),
        b"ks",
        &hex("0001"),
        b"t",
    ]);
    let frame = cat(&[
        &hex("84 00 0009 08"),
        &(body.len() as u32).to_be_bytes(),
        &body,
    ]);
    assert_response_golden(
        9,
        &Response::Result(ResultBody::SchemaChange(change.clone())),
        &frame,
    );

    let body = cat(&[&hex("000d"), b"SCHEMA_CHANGE", &body[4..]]);
    let frame = cat(&[
        &hex("84 00 ffff 0c"),
        &(body.len() as u32).to_be_bytes(),
        &body,
    ]);
    assert_response_golden(-1, &Response::Event(Event::SchemaChange(change)), &frame);
}

#[test]
fn golden_status_change_event() {
    // STATUS_CHANGE UP 127.0.0.2:9042 — [inet] = size 4, address, [int] port.
    let body = cat(&[
        &hex("000d"),
        b"STATUS_CHANGE",
        &hex("0002"),
        b"UP",
        &hex("04 7f000002 00002352"),
    ]);
    let frame = cat(&[
        &hex("84 00 ffff 0c"),
        &(body.len() as u32).to_be_bytes(),
        &body,
    ]);
    let event = Event::StatusChange {
        change: StatusChangeType::Up,
        addr: "127.0.0.2:9042".parse().unwrap(),
    };
    assert_response_golden(-1, &Response::Event(event), &frame);
}

#[test]
fn golden_errors_with_extra_fields() {
    // Unavailable: code, message "no", consistency QUORUM, required 2, alive 1.
    let frame = hex("84 00 0001 00 00000012  00001000 0002 6e6f 0004 00000002 00000001");
    let err = ErrorBody::new(
        ErrorKind::Unavailable {
            consistency: Consistency::Quorum,
            required: 2,
            alive: 1,
        },
        "no",
    );
    assert_eq!(err.code(), 0x1000);
    assert_response_golden(1, &Response::Error(err), &frame);
    // Unprepared: [short bytes] id.
    let frame = hex("84 00 0001 00 0000000a  00002500 0000 0002 cafe");
    let err = ErrorBody::new(
        ErrorKind::Unprepared {
            id: b(&[0xca, 0xfe]),
        },
        "",
    );
    assert_response_golden(1, &Response::Error(err), &frame);
    // ReadTimeout: ONE, received 0, block_for 1, data_present 0.
    let frame = hex("84 00 0001 00 00000011  00001200 0000 0001 00000000 00000001 00");
    let err = ErrorBody::new(
        ErrorKind::ReadTimeout {
            consistency: Consistency::One,
            received: 0,
            block_for: 1,
            data_present: false,
        },
        "",
    );
    assert_response_golden(1, &Response::Error(err), &frame);
}

#[test]
fn golden_batch() {
    // Unlogged batch of one query string with one int value and one prepared id with no values;
    // consistency ONE; flags 0x20 with timestamp 7.
    let frame = cat(&[
        &hex("04 00 0001 0d 00000025"),
        &hex("01 0002"),
        &hex("00 00000001"),
        b"q",
        &hex("0001 00000004 00000005"),
        &hex("01 0002 abcd 0000"),
        &hex("0001 20 0000000000000007"),
    ]);
    let req = Request::Batch {
        batch_type: BatchType::Unlogged,
        statements: vec![
            BatchStatement {
                query: BatchQuery::Query(s("q")),
                values: vec![BoundValue::Value(b(&[0, 0, 0, 5]))],
            },
            BatchStatement {
                query: BatchQuery::Prepared(b(&[0xab, 0xcd])),
                values: vec![],
            },
        ],
        consistency: Consistency::One,
        serial_consistency: None,
        timestamp: Some(7),
    };
    assert_eq!(
        frame.len() - 9,
        3 + (1 + 5 + 2 + 8) + (1 + 4 + 2) + 2 + 1 + 8
    );
    assert_request_golden(1, &req, &frame);
}

#[test]
fn golden_register_and_auth() {
    let frame = cat(&[
        &hex("04 00 0000 0b 00000013"),
        &hex("0001 000f"),
        b"TOPOLOGY_CHANGE",
    ]);
    assert_request_golden(
        0,
        &Request::Register {
            events: vec![s("TOPOLOGY_CHANGE")],
        },
        &frame,
    );
    // SASL PLAIN: \0user\0pass.
    let frame = hex("04 00 0002 0f 0000000e  0000000a 00 75736572 00 70617373");
    assert_request_golden(2, &Request::AuthResponse(Some(b(b"\0user\0pass"))), &frame);
    let frame = hex("84 00 0002 10 00000004 ffffffff");
    assert_response_golden(2, &Response::AuthSuccess(None), &frame);
}

#[test]
fn golden_prepare() {
    // PREPARE (0x09): <query: long string>.
    let frame = cat(&[&hex("04 00 0003 09 00000013  0000000f"), b"SELECT k FROM t"]);
    assert_request_golden(
        3,
        &Request::Prepare {
            query: s("SELECT k FROM t"),
        },
        &frame,
    );
}

#[test]
fn golden_void_and_set_keyspace_results() {
    // RESULT (0x08) kind Void (0x0001): nothing follows.
    let frame = hex("84 00 0003 08 00000004  00000001");
    assert_response_golden(3, &Response::Result(ResultBody::Void), &frame);
    // RESULT kind SetKeyspace (0x0003): <keyspace: string>.
    let frame = hex("84 00 0004 08 00000008  00000003 0002 6b73");
    assert_response_golden(
        4,
        &Response::Result(ResultBody::SetKeyspace(s("ks"))),
        &frame,
    );
}

#[test]
fn golden_authenticate_and_challenge() {
    // AUTHENTICATE (0x03): <authenticator class: string>.
    let class = "org.apache.cassandra.auth.PasswordAuthenticator";
    let frame = cat(&[&hex("84 00 0000 03 00000031  002f"), class.as_bytes()]);
    assert_response_golden(0, &Response::Authenticate(s(class)), &frame);
    // AUTH_CHALLENGE (0x0e): <token: bytes>.
    let frame = hex("84 00 0001 0e 00000006  00000002 cafe");
    assert_response_golden(1, &Response::AuthChallenge(Some(b(&[0xca, 0xfe]))), &frame);
}

// ---------------------------------------------------------------------------------------------
// Frame flags: tracing id, warnings, custom payload
// ---------------------------------------------------------------------------------------------

#[test]
fn response_extras_come_before_the_message_in_spec_order() {
    let extras = ResponseExtras {
        tracing_id: Some([0x11; 16]),
        warnings: vec![s("w")],
        custom_payload: Some(vec![(s("k"), Some(b(&[9])))]),
    };
    let bytes = response_frame(4, &Response::Ready, &extras);
    let expected = cat(&[
        &hex("84 0e 0004 02 0000001f"),
        &[0x11; 16],
        &hex("0001 0001"),
        b"w",
        &hex("0001 0001"),
        b"k",
        &hex("00000001 09"),
    ]);
    assert_eq!(bytes, expected);
    let frame = Frame::parse(&bytes).unwrap();
    assert!(frame.header.flags.contains(Flags::TRACING | Flags::WARNING));
    let decoded = decode_response_frame(&frame).unwrap();
    assert_eq!(decoded.extras, extras);
    assert_eq!(decoded.response, Response::Ready);
    assert_eq!(decoded.stream, 4);
}

#[test]
fn request_extras_round_trip_and_compression_is_refused() {
    let extras = RequestExtras {
        tracing: true,
        custom_payload: Some(vec![(s("a"), None)]),
    };
    let req = Request::Prepare {
        query: s("SELECT 1"),
    };
    let bytes = request_frame_with(9, &req, &extras);
    assert_eq!(bytes[1], 0x06);
    let decoded = decode_request_frame(&Frame::parse(&bytes).unwrap()).unwrap();
    assert_eq!(decoded.extras, extras);
    assert_eq!(decoded.request, req);

    let mut compressed = request_frame(1, &req);
    compressed[1] = 0x01;
    assert_eq!(
        decode_request_frame(&Frame::parse(&compressed).unwrap()),
        Err(ProtocolError::Compressed)
    );
}

#[test]
fn direction_is_checked() {
    assert_eq!(
        Request::decode(Opcode::Ready, Bytes::new()),
        Err(ProtocolError::NotARequest(Opcode::Ready))
    );
    assert_eq!(
        Response::decode(Opcode::Query, Bytes::new()),
        Err(ProtocolError::NotAResponse(Opcode::Query))
    );
}

#[test]
fn error_info_uses_python_driver_names() {
    let err = ErrorBody::new(
        ErrorKind::WriteTimeout {
            consistency: Consistency::LocalQuorum,
            received: 1,
            block_for: 2,
            write_type: WriteType::Simple,
        },
        "timeout",
    );
    assert_eq!(
        err.info(),
        vec![
            (s("consistency"), s("'LOCAL_QUORUM'")),
            (s("received_responses"), s("1")),
            (s("required_responses"), s("2")),
            (s("write_type"), s("'SIMPLE'")),
        ]
    );
    assert!(ErrorBody::invalid("x").info().is_empty());
}

#[test]
fn duration_and_udt_type_options() {
    // v4 has no duration id: it is the custom DurationType class both ways; v5's 0x0015 decodes.
    let rows = |ty_bytes: &[u8]| {
        let body = cat(&[
            &hex("00000002 00000001 00000001 0001"),
            b"k",
            &hex("0001"),
            b"t",
            &hex("0001"),
            b"d",
            ty_bytes,
            &hex("00000000"),
        ]);
        match Response::decode(Opcode::Result, Bytes::from(body)).unwrap() {
            Response::Result(ResultBody::Rows(r)) => r.metadata.columns[0].ty.clone(),
            other => panic!("{other:?}"),
        }
    };
    let class = cat(&[&hex("0000 002c"), DURATION_CLASS.as_bytes()]);
    assert_eq!(rows(&class), CqlType::Duration);
    assert_eq!(rows(&hex("0015")), CqlType::Duration);
    let mut out = Vec::new();
    put_type(&mut out, &CqlType::Duration);
    assert_eq!(out, class);
    // Frozen is not on the wire.
    let mut out = Vec::new();
    put_type(
        &mut out,
        &CqlType::Frozen(Box::new(CqlType::Set(Box::new(CqlType::Text)))),
    );
    assert_eq!(out, hex("0022 000d"));
}

// ---------------------------------------------------------------------------------------------
// Random round trips
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn requests_round_trip(req in arb_request(), stream in 0i16..=i16::MAX) {
        let (opcode, body) = req.encode();
        prop_assert_eq!(opcode, req.opcode());
        prop_assert_eq!(Request::decode(opcode, Bytes::from(body)).unwrap(), req.clone());
        let bytes = request_frame(stream, &req);
        prop_assert_eq!(Frame::check(&bytes, 1 << 20), Ok(bytes.len()));
        let frame = Frame::parse(&bytes).unwrap();
        prop_assert_eq!(frame.header.version, 0x04);
        prop_assert_eq!(frame.encode(), bytes);
        let decoded = decode_request_frame(&frame).unwrap();
        prop_assert_eq!(decoded.stream, stream);
        prop_assert_eq!(decoded.request, req);
    }

    #[test]
    fn responses_round_trip(resp in arb_response(), extras in arb_response_extras(), stream in any::<i16>()) {
        let (opcode, body) = resp.encode();
        prop_assert_eq!(Response::decode(opcode, Bytes::from(body)).unwrap(), resp.clone());
        let bytes = response_frame(stream, &resp, &extras);
        let frame = Frame::parse(&bytes).unwrap();
        prop_assert_eq!(frame.header.version, 0x84);
        let decoded = decode_response_frame(&frame).unwrap();
        prop_assert_eq!(decoded.stream, stream);
        prop_assert_eq!(decoded.extras, extras);
        prop_assert_eq!(decoded.response, resp);
    }

    /// A server's Rows carry serialized values that a client decodes by the column types.
    #[test]
    fn rows_carry_typed_values((ty, value) in arb_typed_value()) {
        let wire_ty = ty.unfrozen();
        let resp = Response::Result(ResultBody::Rows(Rows {
            metadata: ResultMetadata::new(vec![col("c", ty.clone())]),
            rows: vec![vec![Some(Bytes::from(value.serialize()))], vec![None]],
        }));
        let (opcode, body) = resp.encode();
        let Response::Result(ResultBody::Rows(rows)) = Response::decode(opcode, Bytes::from(body)).unwrap() else {
            panic!("not rows");
        };
        prop_assert_eq!(&rows.metadata.columns[0].ty, &wire_ty);
        prop_assert_eq!(rows.rows.len(), 2);
        let cell = rows.rows[0][0].as_ref().unwrap();
        let back = CqlValue::deserialize(&rows.metadata.columns[0].ty, cell).unwrap();
        prop_assert!(same_value(&back, &value));
        prop_assert_eq!(&rows.rows[1][0], &None);
    }
}
