//! Bad input on the native protocol port, sent byte for byte over raw TCP.
//!
//! Each case must get a clean ERROR frame or a clean close — never a hang, a panic or a crash —
//! and afterwards the node must still serve a fresh connection, and a "bystander" connection
//! opened (and started up) before the bad one must keep working.

use std::net::SocketAddr;
use std::time::Duration;

use ringdb_tests::raw::{
    self, encode_frame, Body, Frame, RawConn, Response, ERR_INVALID, ERR_PROTOCOL, ERR_UNPREPARED,
    OP_ERROR, OP_EXECUTE, OP_OPTIONS, OP_QUERY, OP_RESULT, OP_STARTUP,
};
use ringdb_tests::TestNode;

const IO_TIMEOUT: Duration = Duration::from_secs(10);

struct Setup {
    node: TestNode,
    bystander: RawConn,
}

impl Setup {
    fn start(test: &str) -> Option<Setup> {
        let node = TestNode::start_or_skip(test)?;
        let mut bystander =
            RawConn::connect_ready(node.cql_addr(), IO_TIMEOUT).expect("bystander: STARTUP");
        bystander.options().expect("bystander: OPTIONS");
        Some(Setup { node, bystander })
    }

    fn addr(&self) -> SocketAddr {
        self.node.cql_addr()
    }

    fn fresh(&self) -> RawConn {
        RawConn::connect(self.addr(), IO_TIMEOUT).expect("connect")
    }

    fn fresh_ready(&self) -> RawConn {
        RawConn::connect_ready(self.addr(), IO_TIMEOUT).expect("connect + STARTUP")
    }

    /// The node still serves a fresh connection and the bystander still works.
    fn assert_still_serving(&mut self, case: &str) {
        assert!(
            self.node.is_running(),
            "after {case}: the node process exited; log tail:\n{}",
            self.node.log_tail(50)
        );
        if let Err(e) = raw::check_serving(self.addr(), IO_TIMEOUT) {
            panic!("after {case}: a fresh connection is not served: {e:#}");
        }
        if let Err(e) = self.bystander.options() {
            panic!("after {case}: the connection opened before it broke (OPTIONS): {e:#}");
        }
        if let Err(e) = self
            .bystander
            .query_ok("SELECT cluster_name FROM system.local WHERE key = 'local'")
        {
            panic!("after {case}: the connection opened before it broke (QUERY): {e:#}");
        }
    }
}

/// The response must be an ERROR frame or a clean close; returns the error code if any.
fn expect_error_or_close(case: &str, response: anyhow::Result<Response>) -> Option<(i32, String)> {
    match response {
        Err(e) => panic!("{case}: the server neither answered with an ERROR nor closed: {e:#}"),
        Ok(Response::Closed) => {
            println!("{case}: connection closed by the server");
            None
        }
        Ok(Response::Frame(f)) => match f.error() {
            Some((code, msg)) => {
                println!("{case}: ERROR 0x{code:04X}: {msg}");
                assert_eq!(
                    f.version, 0x84,
                    "{case}: ERROR frame with version byte 0x{:02x}",
                    f.version
                );
                Some((code, msg))
            }
            None => panic!("{case}: expected an ERROR or a close, got {}", f.describe()),
        },
    }
}

fn expect_error(case: &str, f: anyhow::Result<Frame>) -> (i32, String) {
    let f = f.unwrap_or_else(|e| panic!("{case}: no ERROR frame: {e:#}"));
    f.error()
        .unwrap_or_else(|| panic!("{case}: expected an ERROR frame, got {}", f.describe()))
}

/// Deterministic pseudo-random bytes.
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as u8
        })
        .collect()
}

#[test]
fn garbage_bytes_get_an_error_or_a_close() {
    let Some(mut s) = Setup::start("garbage_bytes_get_an_error_or_a_close") else {
        return;
    };
    let inputs: Vec<(&str, Vec<u8>)> = vec![
        (
            "an HTTP request",
            b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
        ),
        ("a TLS client hello", {
            let mut v = vec![0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc];
            v.extend(noise(508, 1));
            v
        }),
        ("4 KiB of noise", noise(4096, 7)),
    ];
    for (case, bytes) in inputs {
        let mut c = s.fresh();
        // The server may close while we are still writing: that is a clean close too.
        let response = match c.send_bytes(&bytes) {
            Ok(()) => c.read_response(),
            Err(_) => Ok(Response::Closed),
        };
        expect_error_or_close(case, response);
        drop(c);
        s.assert_still_serving(case);
    }
}

#[test]
fn truncated_frame_then_close_is_harmless() {
    let Some(mut s) = Setup::start("truncated_frame_then_close_is_harmless") else {
        return;
    };
    // A header announcing 100 bytes of QUERY body, 20 bytes of it, then EOF.
    let mut c = s.fresh_ready();
    let mut bytes = encode_frame(0x04, 0, 9, OP_QUERY, &[0u8; 100]);
    bytes.truncate(9 + 20);
    c.send_bytes(&bytes).expect("send truncated frame");
    c.shutdown_write().expect("shutdown write");
    expect_error_or_close("truncated frame then EOF", c.read_response());
    drop(c);
    s.assert_still_serving("truncated frame then EOF");

    // Half a header, then the socket is dropped.
    let mut c = s.fresh();
    c.send_bytes(&[0x04, 0x00, 0x00]).expect("send half header");
    drop(c);
    s.assert_still_serving("half a header then close");
}

#[test]
fn body_length_over_the_limit_is_refused() {
    let Some(mut s) = Setup::start("body_length_over_the_limit_is_refused") else {
        return;
    };
    for (case, len) in [
        ("body length 300 MiB (limit 256 MiB)", 300i32 << 20),
        ("body length i32::MAX", i32::MAX),
        ("negative body length", -1i32),
    ] {
        let mut c = s.fresh();
        let mut header = vec![0x04, 0x00, 0x00, 0x03, OP_QUERY];
        header.extend_from_slice(&len.to_be_bytes());
        c.send_bytes(&header).expect("send header");
        // A few body bytes, but nowhere near the announced length: the server must not wait for
        // (or allocate) the whole body before refusing.
        let _ = c.send_bytes(&[0u8; 64]);
        expect_error_or_close(case, c.read_response());
        drop(c);
        s.assert_still_serving(case);
    }
}

#[test]
fn unknown_and_response_only_opcodes_are_refused() {
    let Some(mut s) = Setup::start("unknown_and_response_only_opcodes_are_refused") else {
        return;
    };
    for (case, opcode) in [
        ("unknown opcode 0x42", 0x42u8),
        ("unknown opcode 0xFF", 0xFF),
        ("response-only opcode RESULT", OP_RESULT),
        ("response-only opcode ERROR", OP_ERROR),
    ] {
        let mut c = s.fresh_ready();
        let stream = 5i16;
        c.send_bytes(&encode_frame(0x04, 0, stream, opcode, &[]))
            .expect("send");
        let response = c.read_for_stream(stream);
        if let Some((code, _)) = expect_error_or_close(case, response) {
            assert_eq!(
                code, ERR_PROTOCOL,
                "{case}: expected Protocol error 0x000A, got 0x{code:04X}"
            );
        }
        drop(c);
        s.assert_still_serving(case);
    }
}

#[test]
fn unsupported_protocol_versions_get_a_v4_protocol_error_on_the_same_stream() {
    let Some(mut s) =
        Setup::start("unsupported_protocol_versions_get_a_v4_protocol_error_on_the_same_stream")
    else {
        return;
    };
    for (case, version, opcode) in [
        ("v5 OPTIONS", 0x05u8, OP_OPTIONS),
        ("v5 STARTUP", 0x05, OP_STARTUP),
        ("v3 OPTIONS", 0x03, OP_OPTIONS),
        ("v66 (0x42, DSE v2) OPTIONS", 0x42, OP_OPTIONS),
        ("v65 (0x41, DSE v1) OPTIONS", 0x41, OP_OPTIONS),
    ] {
        let mut c = s.fresh();
        let stream = 7i16;
        let body = if opcode == OP_STARTUP {
            Body::new().string_map(&[("CQL_VERSION", "3.0.0")]).build()
        } else {
            Vec::new()
        };
        c.send_bytes(&encode_frame(version, 0, stream, opcode, &body))
            .expect("send");
        let f = match c.read_response() {
            Ok(Response::Frame(f)) => f,
            Ok(Response::Closed) => panic!(
                "{case}: the server closed the connection; drivers need an ERROR frame \
                 (code 0x000A, version byte 0x84) to negotiate down to v4"
            ),
            Err(e) => panic!("{case}: no answer: {e:#}"),
        };
        assert_eq!(
            f.version,
            0x84,
            "{case}: response version byte 0x{:02x}, expected 0x84 ({})",
            f.version,
            f.describe()
        );
        assert_eq!(f.stream, stream, "{case}: response on another stream");
        let (code, msg) = f
            .error()
            .unwrap_or_else(|| panic!("{case}: expected an ERROR frame, got {}", f.describe()));
        assert_eq!(
            code, ERR_PROTOCOL,
            "{case}: expected code 0x000A, got 0x{code:04X}: {msg}"
        );
        assert!(
            msg.to_ascii_lowercase()
                .contains("unsupported protocol version"),
            "{case}: message {msg:?} lacks \"unsupported protocol version\""
        );
        drop(c);
        s.assert_still_serving(case);
    }
}

#[test]
fn invalid_utf8_in_a_query_string_is_refused() {
    let Some(mut s) = Setup::start("invalid_utf8_in_a_query_string_is_refused") else {
        return;
    };
    let mut c = s.fresh_ready();
    let mut cql = b"SELECT * FROM system.local WHERE key = '".to_vec();
    cql.extend_from_slice(&[0xff, 0xfe, 0xc3, 0x28, 0x80]);
    cql.extend_from_slice(b"'");
    let response = c.query_response(&cql);
    expect_error_or_close("invalid UTF-8 in QUERY", response);
    drop(c);
    s.assert_still_serving("invalid UTF-8 in QUERY");

    // Invalid UTF-8 in a STARTUP option value.
    let mut c = s.fresh();
    let body = Body::new()
        .short(1)
        .string_bytes(b"CQL_VERSION")
        .string_bytes(&[0xff, 0xff])
        .build();
    c.send_bytes(&encode_frame(0x04, 0, 1, OP_STARTUP, &body))
        .expect("send");
    let response = c.read_response();
    match response {
        // Accepting it (any CQL_VERSION is accepted) is fine too.
        Ok(Response::Frame(f)) if f.opcode == raw::OP_READY => {}
        other => {
            expect_error_or_close("invalid UTF-8 in STARTUP", other);
        }
    }
    drop(c);
    s.assert_still_serving("invalid UTF-8 in STARTUP");
}

#[test]
fn execute_with_wrong_bind_values_gets_invalid_and_the_connection_survives() {
    let Some(mut s) =
        Setup::start("execute_with_wrong_bind_values_gets_invalid_and_the_connection_survives")
    else {
        return;
    };
    let mut c = s.fresh_ready();
    c.query_ok(
        "CREATE KEYSPACE ks_bad WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
    )
    .expect("CREATE KEYSPACE");
    c.query_ok("CREATE TABLE ks_bad.t (k int PRIMARY KEY, v text)")
        .expect("CREATE TABLE");
    let id = c
        .prepare("INSERT INTO ks_bad.t (k, v) VALUES (?, ?)")
        .expect("PREPARE");
    let one = 1i32.to_be_bytes();

    let (code, msg) = expect_error("EXECUTE with 1 of 2 values", c.execute(&id, &[Some(&one)]));
    println!("1 of 2 values: 0x{code:04X}: {msg}");
    assert_eq!(code, ERR_INVALID, "1 of 2 values: 0x{code:04X}: {msg}");

    let (code, msg) = expect_error(
        "EXECUTE with 3 values for 2 markers",
        c.execute(&id, &[Some(&one), Some(b"x"), Some(b"y")]),
    );
    println!("3 of 2 values: 0x{code:04X}: {msg}");
    assert_eq!(code, ERR_INVALID, "3 values for 2: 0x{code:04X}: {msg}");

    let (code, msg) = expect_error(
        "EXECUTE with a 3-byte int",
        c.execute(&id, &[Some(&[0, 0, 1]), Some(b"x")]),
    );
    println!("3-byte int: 0x{code:04X}: {msg}");
    assert!(
        code == ERR_INVALID || code == ERR_PROTOCOL,
        "3-byte int: expected Invalid 0x2200 (or Protocol 0x000A), got 0x{code:04X}: {msg}"
    );

    let (code, msg) = expect_error(
        "EXECUTE with invalid UTF-8 for a text value",
        c.execute(&id, &[Some(&one), Some(&[0xff, 0xfe])]),
    );
    println!("invalid UTF-8 text value: 0x{code:04X}: {msg}");
    assert!(
        code == ERR_INVALID || code == ERR_PROTOCOL,
        "invalid UTF-8 text: expected Invalid 0x2200 (or Protocol 0x000A), got 0x{code:04X}: {msg}"
    );

    // A body cut short inside the values: an ERROR, the connection may stay or close.
    let truncated = Body::new()
        .short_bytes(&id)
        .short(1)
        .byte(0x01)
        .short(2)
        .int(4)
        .build();
    let response = c.request_raw(OP_EXECUTE, &truncated);
    let closed = matches!(response, Ok(Response::Closed));
    expect_error_or_close("EXECUTE body cut short", response);

    // The same connection still works after the errors (unless it was closed above).
    let mut c = if closed { s.fresh_ready() } else { c };
    let f = c
        .execute(&id, &[Some(&one), Some(b"ok")])
        .expect("EXECUTE with correct values");
    assert_eq!(
        f.result_kind(),
        Some(1),
        "correct EXECUTE answered {}",
        f.describe()
    );
    drop(c);
    s.assert_still_serving("wrong bind values");
}

#[test]
fn execute_of_an_unknown_prepared_id_gets_unprepared() {
    let Some(mut s) = Setup::start("execute_of_an_unknown_prepared_id_gets_unprepared") else {
        return;
    };
    let mut c = s.fresh_ready();
    let id: Vec<u8> = (0u8..16).map(|i| 0xA0 ^ i).collect();
    let f = c.execute(&id, &[]).expect("EXECUTE unknown id");
    let (code, msg) = f
        .error()
        .unwrap_or_else(|| panic!("expected ERROR 0x2500, got {}", f.describe()));
    assert_eq!(
        code, ERR_UNPREPARED,
        "expected Unprepared 0x2500, got 0x{code:04X}: {msg}"
    );
    let mut r = raw::Reader::new(&f.body);
    r.int().unwrap();
    r.string().unwrap();
    let echoed = r
        .short_bytes()
        .expect("Unprepared error body must end with the unknown id");
    assert_eq!(echoed, id, "Unprepared error echoes another id");
    // The connection is still usable.
    c.options().expect("OPTIONS after Unprepared");
    drop(c);
    s.assert_still_serving("unknown prepared id");
}

#[test]
fn statements_of_megabytes_are_answered_or_refused_cleanly() {
    let Some(mut s) = Setup::start("statements_of_megabytes_are_answered_or_refused_cleanly")
    else {
        return;
    };
    const MIB2: usize = 2 << 20;
    let cases: Vec<(&str, String)> = vec![
        ("a 2 MiB string literal", {
            let mut q = String::from("SELECT * FROM system.local WHERE key = '");
            q.push_str(&"x".repeat(MIB2));
            q.push('\'');
            q
        }),
        ("a 2 MiB select list", {
            let mut q = String::from("SELECT ");
            q.push_str(&"key, ".repeat(MIB2 / 5));
            q.push_str("key FROM system.local");
            q
        }),
        ("2 MiB of garbage tokens", "@#! ".repeat(MIB2 / 4)),
        // Under the 1 MiB statement limit, so these reach the parser: deep nesting must not
        // overflow its stack.
        ("500 Ki nested list brackets", {
            let mut q = String::from("SELECT * FROM system.local WHERE key = ");
            q.push_str(&"[".repeat(500 << 10));
            q
        }),
        ("100 Ki nested function calls", {
            let mut q = String::from("SELECT * FROM system.local WHERE token(key) = ");
            q.push_str(&"token(".repeat(100 << 10));
            q
        }),
        ("100 Ki nested map literals", {
            let mut q = String::from("INSERT INTO system.local (key) VALUES (");
            q.push_str(&"{1: ".repeat(100 << 10));
            q
        }),
        ("a statement just under the limit", {
            let mut q = String::from("SELECT * FROM system.local WHERE key = '");
            q.push_str(&"x".repeat((1 << 20) - 100));
            q.push('\'');
            q
        }),
    ];
    for (case, cql) in cases {
        let mut c = s.fresh_ready();
        let response = c.query_response(cql.as_bytes());
        match response {
            // A statement that is merely long and valid may well be answered.
            Ok(Response::Frame(f)) if f.opcode == OP_RESULT => println!("{case}: answered"),
            other => {
                expect_error_or_close(case, other);
            }
        }
        drop(c);
        s.assert_still_serving(case);
    }
}
