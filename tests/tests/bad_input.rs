//! Bad input on the native protocol port, sent byte for byte over raw TCP, and on the internode
//! port (QUIC over UDP).
//!
//! Each case must get a clean ERROR frame or a clean close — never a hang, a panic or a crash —
//! and afterwards the node must still serve a fresh connection, and a "bystander" connection
//! opened (and started up) before the bad one must keep working.
//!
//! - `bad_input_catalogue`: a table of named cases (wrong magic, huge lengths, negative sizes,
//!   deep nesting, invalid UTF-8, malformed messages, broken connections) run one after the other
//!   on one node; each prints its name and outcome.
//! - Slow-loris senders, clients that never read, and a flood of 2 000 connections against a
//!   `native_transport_max_connections` limit: one test each, bounded in time.
//! - `internode_port_survives_garbage_and_refuses_strangers`: a 2-node cluster; garbage and
//!   truncated datagrams, handshakes without a valid client certificate, malformed frames from a
//!   certified peer; after each, the node serves CQL and both nodes still see each other up.

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

// ---------------------------------------------------------------------------------------------
// The catalogue: one node, one table of named cases, each printed with its outcome.
// ---------------------------------------------------------------------------------------------

/// The stream id the catalogue's requests use.
const CASE_STREAM: i16 = 0x0142;
const OP_PREPARE: u8 = 0x09;
const OP_REGISTER: u8 = 0x0B;
const OP_BATCH: u8 = 0x0D;
const OP_AUTH_RESPONSE: u8 = 0x0F;
/// Depth of the catalogue table's nested-list column (the parser accepts 64).
const NESTED_COLUMN_DEPTH: usize = 16;

/// What a catalogue case must get back.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// An ERROR frame (any code) or a clean close.
    ErrorOrClose,
    /// An ERROR frame with one of these codes.
    Code(&'static [i32]),
    /// Any answer on the case's stream (well-formed but odd input that may be served), or a close.
    Answer,
    /// Nothing is read: the client goes away (only the node's health afterwards counts).
    NoRead,
}

const PROTOCOL: &[i32] = &[ERR_PROTOCOL];
const INVALID_OR_PROTOCOL: &[i32] = &[ERR_INVALID, ERR_PROTOCOL];
const SYNTAX_OR_INVALID: &[i32] = &[raw::ERR_SYNTAX, ERR_INVALID, ERR_PROTOCOL];

/// What the cases may refer to: prepared statements of the catalogue's table.
struct Ctx {
    /// `INSERT INTO ks_cat.t (k, l) VALUES (?, ?)`, `l list<int>`.
    insert_list: Vec<u8>,
    /// `INSERT INTO ks_cat.t (k, m) VALUES (?, ?)`, `m map<text, int>`.
    insert_map: Vec<u8>,
    /// `INSERT INTO ks_cat.t (k, n) VALUES (?, ?)`, `n` lists nested [`NESTED_COLUMN_DEPTH`] deep.
    insert_nested: Vec<u8>,
    /// `INSERT INTO ks_cat.t (k, s) VALUES (?, ?)`, `s text`.
    insert_text: Vec<u8>,
}

/// Builds a case's bytes (from the prepared statements it may refer to).
type CaseBytes = Box<dyn Fn(&Ctx) -> Vec<u8>>;

/// One named bad input.
struct Case {
    name: &'static str,
    /// Send STARTUP first (most requests are refused before it).
    ready: bool,
    bytes: CaseBytes,
    /// Close our sending half after the bytes (half-open connection).
    shutdown_write: bool,
    expect: Expect,
}

fn case(
    name: &'static str,
    ready: bool,
    expect: Expect,
    bytes: impl Fn(&Ctx) -> Vec<u8> + 'static,
) -> Case {
    Case {
        name,
        ready,
        bytes: Box::new(bytes),
        shutdown_write: false,
        expect,
    }
}

/// A v4 request frame on the catalogue's stream.
fn req(opcode: u8, body: &[u8]) -> Vec<u8> {
    encode_frame(0x04, 0, CASE_STREAM, opcode, body)
}

/// A v4 request frame with header flags.
fn req_flags(flags: u8, opcode: u8, body: &[u8]) -> Vec<u8> {
    encode_frame(0x04, flags, CASE_STREAM, opcode, body)
}

/// A QUERY body: the text, consistency ONE, no flags.
fn query_body(cql: &[u8]) -> Vec<u8> {
    Body::new()
        .long_string_bytes(cql)
        .short(raw::CONSISTENCY_ONE)
        .byte(0)
        .build()
}

/// An EXECUTE body: the prepared id, consistency ONE, the values as raw `[value]` bytes.
fn execute_body(id: &[u8], values: &[Vec<u8>]) -> Vec<u8> {
    let mut b = Body::new()
        .short_bytes(id)
        .short(raw::CONSISTENCY_ONE)
        .byte(0x01)
        .short(values.len() as u16)
        .build();
    for v in values {
        b.extend_from_slice(v);
    }
    b
}

/// A `[value]` holding `bytes`.
fn value(bytes: &[u8]) -> Vec<u8> {
    let mut v = (bytes.len() as i32).to_be_bytes().to_vec();
    v.extend_from_slice(bytes);
    v
}

/// A collection value: `[int]` count, then raw element bytes.
fn collection(count: i32, elements: &[u8]) -> Vec<u8> {
    let mut v = count.to_be_bytes().to_vec();
    v.extend_from_slice(elements);
    v
}

/// `[bytes]` element holding an int.
fn int_element(x: i32) -> Vec<u8> {
    let mut v = 4i32.to_be_bytes().to_vec();
    v.extend_from_slice(&x.to_be_bytes());
    v
}

/// A list value nested `depth` deep, each level holding one element, around an int.
fn nested_list_value(depth: usize) -> Vec<u8> {
    let mut v = 7i32.to_be_bytes().to_vec();
    for _ in 0..depth {
        let mut outer = collection(1, &(v.len() as i32).to_be_bytes());
        outer.extend_from_slice(&v);
        v = outer;
    }
    v
}

fn nested_type(depth: usize) -> String {
    let mut t = String::new();
    for _ in 0..depth {
        t.push_str("frozen<list<");
    }
    t.push_str("int");
    for _ in 0..depth {
        t.push_str(">>");
    }
    t
}

fn key_value() -> Vec<u8> {
    value(&1i32.to_be_bytes())
}

fn catalogue() -> Vec<Case> {
    let startup_ok = Body::new().string_map(&[("CQL_VERSION", "3.0.0")]).build();
    let startup = startup_ok.clone();
    vec![
        // ---- wrong magic / version byte ----
        case("version byte 0x00", false, Expect::Code(PROTOCOL), |_| {
            encode_frame(0x00, 0, CASE_STREAM, OP_OPTIONS, &[])
        }),
        case("version byte 0xFF", false, Expect::Code(PROTOCOL), |_| {
            encode_frame(0xFF, 0, CASE_STREAM, OP_OPTIONS, &[])
        }),
        case(
            "response version 0x84 on a request",
            false,
            Expect::Code(PROTOCOL),
            |_| encode_frame(0x84, 0, CASE_STREAM, OP_OPTIONS, &[]),
        ),
        case(
            "ASCII text instead of a frame",
            false,
            Expect::ErrorOrClose,
            |_| b"PING\r\nPING\r\nPING\r\n".to_vec(),
        ),
        // ---- huge lengths ----
        case("body length 2 GiB", false, Expect::ErrorOrClose, |_| {
            let mut h = encode_frame(0x04, 0, CASE_STREAM, OP_QUERY, &[]);
            h[5..9].copy_from_slice(&i32::MAX.to_be_bytes());
            h.extend_from_slice(&[0; 32]);
            h
        }),
        case("body length 4 GiB - 1", false, Expect::ErrorOrClose, |_| {
            let mut h = encode_frame(0x04, 0, CASE_STREAM, OP_OPTIONS, &[]);
            h[5..9].copy_from_slice(&[0xff; 4]);
            h
        }),
        case(
            "QUERY [long string] of i32::MAX bytes in a small body",
            true,
            Expect::Code(PROTOCOL),
            |_| req(OP_QUERY, &Body::new().int(i32::MAX).byte(b'x').build()),
        ),
        case(
            "QUERY announcing 65535 values, sending none",
            true,
            Expect::Code(PROTOCOL),
            |_| {
                let b = Body::new()
                    .long_string_bytes(b"SELECT key FROM system.local")
                    .short(raw::CONSISTENCY_ONE)
                    .byte(0x01)
                    .short(0xFFFF)
                    .build();
                req(OP_QUERY, &b)
            },
        ),
        case(
            "STARTUP [string map] announcing 65535 entries",
            false,
            Expect::Code(PROTOCOL),
            |_| req(OP_STARTUP, &Body::new().short(0xFFFF).build()),
        ),
        case(
            "BATCH announcing 65535 statements",
            true,
            Expect::Code(PROTOCOL),
            |_| req(OP_BATCH, &Body::new().byte(0).short(0xFFFF).build()),
        ),
        case(
            "EXECUTE with a prepared id longer than the body",
            true,
            Expect::Code(PROTOCOL),
            |_| req(OP_EXECUTE, &Body::new().short(0xFFFF).byte(0xAA).build()),
        ),
        case(
            "custom payload announcing 65535 entries",
            true,
            Expect::Code(PROTOCOL),
            |_| req_flags(0x04, OP_OPTIONS, &Body::new().short(0xFFFF).build()),
        ),
        // ---- negative sizes ----
        case(
            "QUERY [long string] of length -1",
            true,
            Expect::Code(PROTOCOL),
            |_| req(OP_QUERY, &Body::new().int(-1).short(1).byte(0).build()),
        ),
        case(
            "PREPARE [long string] of length -2",
            true,
            Expect::Code(PROTOCOL),
            |_| req(OP_PREPARE, &Body::new().int(-2).build()),
        ),
        case(
            "QUERY [value] of length -3",
            true,
            Expect::Code(PROTOCOL),
            |_| {
                let b = Body::new()
                    .long_string_bytes(b"SELECT key FROM system.local WHERE key = ?")
                    .short(raw::CONSISTENCY_ONE)
                    .byte(0x01)
                    .short(1)
                    .int(-3)
                    .build();
                req(OP_QUERY, &b)
            },
        ),
        case(
            "AUTH_RESPONSE [bytes] of length -2",
            true,
            Expect::Code(PROTOCOL),
            |_| req(OP_AUTH_RESPONSE, &Body::new().int(-2).build()),
        ),
        case(
            "custom payload value of length -2",
            true,
            Expect::Answer,
            |_| {
                let b = Body::new().short(1).string_bytes(b"k").int(-2).build();
                req_flags(0x04, OP_OPTIONS, &b)
            },
        ),
        case(
            "list<int> value with element count -1",
            true,
            Expect::Code(INVALID_OR_PROTOCOL),
            |ctx| {
                let l = collection(-1, &[]);
                req(
                    OP_EXECUTE,
                    &execute_body(&ctx.insert_list, &[key_value(), value(&l)]),
                )
            },
        ),
        case(
            "list<int> value announcing i32::MAX elements",
            true,
            Expect::Code(INVALID_OR_PROTOCOL),
            |ctx| {
                let l = collection(i32::MAX, &int_element(1));
                req(
                    OP_EXECUTE,
                    &execute_body(&ctx.insert_list, &[key_value(), value(&l)]),
                )
            },
        ),
        case(
            "list<int> element of length -2",
            true,
            Expect::Code(INVALID_OR_PROTOCOL),
            |ctx| {
                let l = collection(1, &(-2i32).to_be_bytes());
                req(
                    OP_EXECUTE,
                    &execute_body(&ctx.insert_list, &[key_value(), value(&l)]),
                )
            },
        ),
        case(
            "map<text, int> key of length -7",
            true,
            Expect::Code(INVALID_OR_PROTOCOL),
            |ctx| {
                let mut e = (-7i32).to_be_bytes().to_vec();
                e.extend(int_element(1));
                let m = collection(1, &e);
                req(
                    OP_EXECUTE,
                    &execute_body(&ctx.insert_map, &[key_value(), value(&m)]),
                )
            },
        ),
        // ---- deep nesting ----
        case(
            "list value nested 10 000 deep for a 16-deep column",
            true,
            Expect::Code(INVALID_OR_PROTOCOL),
            |ctx| {
                let n = nested_list_value(10_000);
                req(
                    OP_EXECUTE,
                    &execute_body(&ctx.insert_nested, &[key_value(), value(&n)]),
                )
            },
        ),
        case(
            "CQL literal of 10 000 nested lists",
            true,
            Expect::Code(SYNTAX_OR_INVALID),
            |_| {
                let mut q = b"INSERT INTO ks_cat.t (k, l) VALUES (1, ".to_vec();
                q.extend(std::iter::repeat_n(b'[', 10_000));
                q.extend(std::iter::repeat_n(b']', 10_000));
                q.push(b')');
                req(OP_QUERY, &query_body(&q))
            },
        ),
        case(
            "column type nested 10 000 deep in CREATE TABLE",
            true,
            Expect::Code(SYNTAX_OR_INVALID),
            |_| {
                let q = format!(
                    "CREATE TABLE ks_cat.deep (k int PRIMARY KEY, v {})",
                    nested_type(10_000)
                );
                req(OP_QUERY, &query_body(q.as_bytes()))
            },
        ),
        // ---- invalid UTF-8 ----
        case(
            "invalid UTF-8 in a STARTUP option key",
            false,
            Expect::Code(PROTOCOL),
            |_| {
                let b = Body::new()
                    .short(1)
                    .string_bytes(&[0xC0, 0xAF])
                    .string_bytes(b"3.0.0")
                    .build();
                req(OP_STARTUP, &b)
            },
        ),
        case(
            "invalid UTF-8 in a PREPARE text",
            true,
            Expect::Code(PROTOCOL),
            |_| {
                let b = Body::new()
                    .long_string_bytes(b"SELECT \xff\xfe FROM system.local")
                    .build();
                req(OP_PREPARE, &b)
            },
        ),
        case(
            "invalid UTF-8 in a REGISTER event type",
            true,
            Expect::Code(PROTOCOL),
            |_| {
                let b = Body::new()
                    .short(1)
                    .string_bytes(b"SCHEMA\x80CHANGE")
                    .build();
                req(OP_REGISTER, &b)
            },
        ),
        case(
            "invalid UTF-8 in a BATCH statement",
            true,
            Expect::Code(PROTOCOL),
            |_| {
                let b = Body::new()
                    .byte(1)
                    .short(1)
                    .byte(0)
                    .long_string_bytes(b"INSERT INTO ks_cat.t (k) VALUES (\xed\xa0\x80)")
                    .short(0)
                    .short(raw::CONSISTENCY_ONE)
                    .byte(0)
                    .build();
                req(OP_BATCH, &b)
            },
        ),
        case(
            "invalid UTF-8 in a bound value name",
            true,
            Expect::Code(PROTOCOL),
            |_| {
                let b = Body::new()
                    .long_string_bytes(b"SELECT key FROM system.local WHERE key = :k")
                    .short(raw::CONSISTENCY_ONE)
                    .byte(0x41)
                    .short(1)
                    .string_bytes(&[0xF8, 0x88, 0x80])
                    .int(5)
                    .long_string_bytes(b"local")
                    .build();
                req(OP_QUERY, &b)
            },
        ),
        case(
            "invalid UTF-8 in a text bound value",
            true,
            Expect::Code(INVALID_OR_PROTOCOL),
            |ctx| {
                req(
                    OP_EXECUTE,
                    &execute_body(&ctx.insert_text, &[key_value(), value(&[0x61, 0xC3, 0x28])]),
                )
            },
        ),
        case(
            "overlong UTF-8 '/' in a QUERY",
            true,
            Expect::Code(PROTOCOL),
            |_| req(OP_QUERY, &query_body(b"SELECT * FROM system\xC0\xAFlocal")),
        ),
        // ---- malformed messages ----
        case(
            "compressed frame without negotiated compression",
            true,
            Expect::Code(PROTOCOL),
            |_| req_flags(0x01, OP_QUERY, &query_body(b"SELECT key FROM system.local")),
        ),
        case(
            "STARTUP asking for lz4 compression",
            false,
            Expect::Code(PROTOCOL),
            |_| {
                let b = Body::new()
                    .string_map(&[("CQL_VERSION", "3.0.0"), ("COMPRESSION", "lz4")])
                    .build();
                req(OP_STARTUP, &b)
            },
        ),
        case(
            "QUERY before STARTUP",
            false,
            Expect::Code(PROTOCOL),
            |_| req(OP_QUERY, &query_body(b"SELECT key FROM system.local")),
        ),
        case("empty QUERY body", true, Expect::Code(PROTOCOL), |_| {
            req(OP_QUERY, &[])
        }),
        case(
            "QUERY with unknown consistency 0x00FF",
            true,
            Expect::Code(PROTOCOL),
            |_| {
                let b = Body::new()
                    .long_string_bytes(b"SELECT key FROM system.local")
                    .short(0x00FF)
                    .byte(0)
                    .build();
                req(OP_QUERY, &b)
            },
        ),
        case("BATCH of type 9", true, Expect::Code(PROTOCOL), |_| {
            req(OP_BATCH, &Body::new().byte(9).short(0).build())
        }),
        case(
            "BATCH statement of kind 7",
            true,
            Expect::Code(PROTOCOL),
            |_| {
                let b = Body::new()
                    .byte(0)
                    .short(1)
                    .byte(7)
                    .long_string_bytes(b"SELECT key FROM system.local")
                    .short(0)
                    .short(raw::CONSISTENCY_ONE)
                    .byte(0)
                    .build();
                req(OP_BATCH, &b)
            },
        ),
        case(
            "REGISTER for an unknown event type",
            true,
            Expect::Code(PROTOCOL),
            |_| {
                req(
                    OP_REGISTER,
                    &Body::new().short(1).string_bytes(b"GOSSIP").build(),
                )
            },
        ),
        case("STARTUP twice", true, Expect::Answer, move |_| {
            req(OP_STARTUP, &startup)
        }),
        // ---- broken connections ----
        Case {
            name: "half a QUERY frame, then FIN (half-open)",
            ready: true,
            bytes: Box::new(|_| {
                let mut f = req(OP_QUERY, &query_body(b"SELECT key FROM system.local"));
                f.truncate(f.len() / 2);
                f
            }),
            shutdown_write: true,
            expect: Expect::ErrorOrClose,
        },
        Case {
            name: "5 header bytes, then FIN",
            ready: false,
            bytes: Box::new(|_| vec![0x04, 0x00, 0x00, 0x01, OP_OPTIONS]),
            shutdown_write: true,
            expect: Expect::ErrorOrClose,
        },
        case(
            "1 000 pipelined requests, then gone without reading",
            true,
            Expect::NoRead,
            |_| {
                let one = req(OP_QUERY, &query_body(b"SELECT * FROM system.local"));
                one.repeat(1000)
            },
        ),
        case(
            "a good frame followed by garbage in the same write",
            false,
            Expect::Answer,
            move |_| {
                let mut f = req(OP_STARTUP, &startup_ok);
                f.extend_from_slice(&noise(256, 99));
                f
            },
        ),
    ]
}

/// Sends one case on its own connection and checks the answer; returns the outcome as text.
fn run_case(s: &Setup, ctx: &Ctx, c: &Case) -> String {
    let mut conn = if c.ready { s.fresh_ready() } else { s.fresh() };
    let bytes = (c.bytes)(ctx);
    if let Err(e) = conn.send_bytes(&bytes) {
        // The server may close while we are still writing: that is a clean close.
        return format!("closed while we were writing ({e:#})");
    }
    if c.shutdown_write {
        let _ = conn.shutdown_write();
    }
    match c.expect {
        Expect::NoRead => "client went away".to_string(),
        Expect::ErrorOrClose => match expect_error_or_close(c.name, conn.read_response()) {
            Some((code, msg)) => format!("ERROR 0x{code:04X}: {msg}"),
            None => "closed".to_string(),
        },
        Expect::Code(codes) => match conn.read_response() {
            Ok(Response::Frame(f)) => {
                let (code, msg) = f.error().unwrap_or_else(|| {
                    panic!("{}: expected an ERROR, got {}", c.name, f.describe())
                });
                assert!(
                    codes.contains(&code),
                    "{}: ERROR 0x{code:04X} ({msg}), expected one of {codes:04X?}",
                    c.name
                );
                assert_eq!(f.version, 0x84, "{}: ERROR frame version", c.name);
                format!("ERROR 0x{code:04X}: {msg}")
            }
            Ok(Response::Closed) => {
                panic!("{}: closed without the expected ERROR {codes:04X?}", c.name)
            }
            Err(e) => panic!("{}: no answer: {e:#}", c.name),
        },
        Expect::Answer => match conn.read_for_stream(CASE_STREAM) {
            Ok(r) => r.describe(),
            Err(e) => panic!("{}: no answer: {e:#}", c.name),
        },
    }
}

#[test]
fn bad_input_catalogue() {
    let Some(mut s) = Setup::start("bad_input_catalogue") else {
        return;
    };
    let mut c = s.fresh_ready();
    c.query_ok(
        "CREATE KEYSPACE ks_cat WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
    )
    .expect("CREATE KEYSPACE");
    c.query_ok(&format!(
        "CREATE TABLE ks_cat.t (k int PRIMARY KEY, l list<int>, m map<text, int>, n {}, s text)",
        nested_type(NESTED_COLUMN_DEPTH)
    ))
    .expect("CREATE TABLE");
    let ctx = Ctx {
        insert_list: c
            .prepare("INSERT INTO ks_cat.t (k, l) VALUES (?, ?)")
            .expect("PREPARE"),
        insert_map: c
            .prepare("INSERT INTO ks_cat.t (k, m) VALUES (?, ?)")
            .expect("PREPARE"),
        insert_nested: c
            .prepare("INSERT INTO ks_cat.t (k, n) VALUES (?, ?)")
            .expect("PREPARE"),
        insert_text: c
            .prepare("INSERT INTO ks_cat.t (k, s) VALUES (?, ?)")
            .expect("PREPARE"),
    };
    // The nested column takes a well-formed value of its depth.
    let ok = c
        .execute(
            &ctx.insert_nested,
            &[
                Some(&1i32.to_be_bytes()),
                Some(&nested_list_value(NESTED_COLUMN_DEPTH)),
            ],
        )
        .expect("EXECUTE nested");
    assert_eq!(ok.result_kind(), Some(1), "nested value: {}", ok.describe());
    drop(c);

    let cases = catalogue();
    let total = cases.len();
    println!("bad-input catalogue: {total} cases on the CQL port");
    for (i, c) in cases.iter().enumerate() {
        let outcome = run_case(&s, &ctx, c);
        s.assert_still_serving(c.name);
        println!("case {:2}/{total} {:<55} -> {outcome}", i + 1, c.name);
    }
    assert!(total >= 30, "the catalogue has {total} cases");
    println!("bad-input catalogue: {total} cases passed, node still serving");
}

// ---------------------------------------------------------------------------------------------
// Slow senders, clients that never read, floods of connections: one test each, bounded in time.
// ---------------------------------------------------------------------------------------------

/// Asserts that a fresh connection is served within `limit` (while something else is going on).
fn assert_served_within(s: &Setup, limit: Duration, during: &str) -> Duration {
    let started = std::time::Instant::now();
    if let Err(e) = raw::check_serving(s.addr(), limit) {
        panic!("during {during}: a fresh connection is not served: {e:#}");
    }
    let took = started.elapsed();
    assert!(
        took <= limit,
        "during {during}: a fresh connection took {took:?} to be served (limit {limit:?})"
    );
    took
}

#[test]
fn slow_loris_senders_do_not_starve_other_clients() {
    let Some(mut s) = Setup::start("slow_loris_senders_do_not_starve_other_clients") else {
        return;
    };
    const SENDERS: usize = 16;
    const BYTE_EVERY: Duration = Duration::from_millis(100);
    let frame = req(OP_QUERY, &query_body(b"SELECT key FROM system.local"));
    println!(
        "slow loris: {SENDERS} connections sending a {}-byte QUERY one byte per {BYTE_EVERY:?}",
        frame.len()
    );
    let mut senders = Vec::new();
    for i in 0..SENDERS {
        let mut c = s.fresh_ready();
        let frame = frame.clone();
        senders.push(std::thread::spawn(move || -> Result<String, String> {
            std::thread::sleep(Duration::from_millis(7 * i as u64));
            for b in &frame {
                c.send_bytes(&[*b]).map_err(|e| format!("write: {e:#}"))?;
                std::thread::sleep(BYTE_EVERY);
            }
            // The frame, once whole, is answered.
            match c.read_for_stream(CASE_STREAM) {
                Ok(Response::Frame(f)) if f.opcode == OP_RESULT => Ok("answered".into()),
                Ok(other) => Err(format!("answered with {}", other.describe())),
                Err(e) => Err(format!("no answer: {e:#}")),
            }
        }));
    }
    // While they trickle, others are served promptly, over and over.
    let trickle = BYTE_EVERY * frame.len() as u32;
    let deadline = std::time::Instant::now() + trickle;
    let mut checks = 0;
    let mut slowest = Duration::ZERO;
    while std::time::Instant::now() < deadline {
        slowest = slowest.max(assert_served_within(
            &s,
            Duration::from_secs(2),
            "slow-loris senders",
        ));
        checks += 1;
        std::thread::sleep(Duration::from_millis(300));
    }
    for (i, t) in senders.into_iter().enumerate() {
        match t.join().expect("sender thread") {
            Ok(_) => {}
            Err(e) => panic!("slow sender {i}: {e}"),
        }
    }
    println!(
        "slow loris: {checks} fresh connections served meanwhile (slowest {slowest:?}); \
         every slow frame was answered once whole"
    );
    s.assert_still_serving("slow-loris senders");
}

#[test]
fn clients_that_never_read_or_never_send_do_not_block_others() {
    let Some(mut s) = Setup::start("clients_that_never_read_or_never_send_do_not_block_others")
    else {
        return;
    };
    // Idle connections that never send a byte, held open throughout.
    let idle: Vec<RawConn> = (0..50).map(|_| s.fresh()).collect();
    // A client that pipelines thousands of requests and never reads: its answers back up into
    // its socket, the node stops reading from it (back-pressure), and must still serve others.
    let mut hog = s.fresh_ready();
    hog.timeout = Duration::from_secs(2);
    let one = req(OP_QUERY, &query_body(b"SELECT * FROM system.local"));
    let mut sent = 0usize;
    let started = std::time::Instant::now();
    while sent < 200_000 && started.elapsed() < Duration::from_secs(15) {
        if hog.send_bytes(&one.repeat(100)).is_err() {
            // Our send buffer is full too (the node stopped reading): that is the back-pressure.
            break;
        }
        sent += 100;
    }
    println!(
        "never-reading client: {sent} requests written in {:?} before its socket filled",
        started.elapsed()
    );
    assert_served_within(&s, Duration::from_secs(3), "a never-reading client");
    s.assert_still_serving("a never-reading client (still connected)");
    drop(hog);
    // Half-open: a client sends half a frame, closes its sending half, and never reads.
    let mut half = s.fresh_ready();
    let mut f = one.clone();
    f.truncate(10);
    half.send_bytes(&f).expect("half a frame");
    half.shutdown_write().expect("shutdown write");
    assert_served_within(&s, Duration::from_secs(3), "a half-open client");
    drop(half);
    drop(idle);
    s.assert_still_serving("never-reading, half-open and idle clients");
}

#[test]
fn a_flood_of_connections_is_bounded_and_the_node_recovers() {
    const MAX_CONNECTIONS: usize = 200;
    let Some(node) = TestNode::start_with_or_skip(
        "a_flood_of_connections_is_bounded_and_the_node_recovers",
        ringdb_tests::NodeOptions::new().set("native_transport_max_connections", MAX_CONNECTIONS),
    ) else {
        return;
    };
    let addr = node.cql_addr();
    let mut node = node;
    let started = std::time::Instant::now();
    let short = Duration::from_secs(5);
    // Hold more connections than the limit: the first ones are served, the rest closed at once.
    let mut held = Vec::new();
    let (mut served, mut refused) = (0usize, 0usize);
    for _ in 0..(MAX_CONNECTIONS + 100) {
        let mut c = match RawConn::connect(addr, short) {
            Ok(c) => c,
            Err(_) => {
                refused += 1;
                continue;
            }
        };
        match c.request_raw(OP_OPTIONS, &[]) {
            Ok(Response::Frame(_)) => {
                served += 1;
                held.push(c);
            }
            Ok(Response::Closed) | Err(_) => refused += 1,
        }
    }
    println!(
        "flood: {} connections tried with a limit of {MAX_CONNECTIONS}: {served} served and held, {refused} refused",
        MAX_CONNECTIONS + 100
    );
    assert!(
        served <= MAX_CONNECTIONS,
        "{served} connections served with native_transport_max_connections = {MAX_CONNECTIONS}"
    );
    assert!(
        refused >= 100,
        "only {refused} connections refused past the limit"
    );
    assert!(node.is_running(), "the node exited during the flood");
    // Let go of them all; then 1 700 connections opened and closed as fast as we can, every
    // tenth one sending half a frame first.
    drop(held);
    let mut churned = 0;
    for i in 0..1_700 {
        if started.elapsed() > Duration::from_secs(90) {
            break;
        }
        if let Ok(mut c) = RawConn::connect(addr, short) {
            if i % 10 == 0 {
                let _ = c.send_bytes(&[0x04, 0x00, 0x00]);
            }
            churned += 1;
        }
    }
    println!(
        "flood: {churned} more connections opened and closed, {} in all, in {:?}",
        churned + MAX_CONNECTIONS + 100,
        started.elapsed()
    );
    assert!(node.is_running(), "the node exited during the flood");
    // The node recovers: a normal client is served again (closed connections are counted out
    // as the node notices them; allow it a few seconds).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        match raw::check_serving(addr, short) {
            Ok(()) => break,
            Err(e) if std::time::Instant::now() > deadline => {
                panic!(
                    "after the flood, a fresh connection is not served: {e:#}\n{}",
                    node.log_tail(30)
                )
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
    let mut c = RawConn::connect_ready(addr, IO_TIMEOUT).expect("STARTUP after the flood");
    c.query_ok("SELECT cluster_name FROM system.local WHERE key = 'local'")
        .expect("QUERY after the flood");
}

// ---------------------------------------------------------------------------------------------
// The internode port (QUIC over UDP, mutual TLS): garbage datagrams, handshakes without a valid
// client certificate, and malformed frames from a peer that does hold one. After each case the
// node still serves CQL and the two nodes still see each other up through gossip.
// ---------------------------------------------------------------------------------------------

mod internode {
    use std::net::{SocketAddr, UdpSocket};
    use std::path::Path;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::CryptoProvider;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
    use rustls::{DigitallySignedStruct, SignatureScheme};

    use super::noise;

    /// Accepts any server certificate: the tests attack the server, not the other way round.
    #[derive(Debug)]
    struct AnyServer(Arc<CryptoProvider>);

    impl ServerCertVerifier for AnyServer {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    /// A client identity: a certificate chain and its key.
    pub type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

    /// A node's own identity, read from its certificate files.
    pub fn identity_from(cert: &Path, key: &Path) -> Identity {
        let chain = CertificateDer::pem_file_iter(cert)
            .expect("read certificate")
            .collect::<Result<Vec<_>, _>>()
            .expect("parse certificate");
        let key = PrivateKeyDer::from_pem_file(key).expect("read key");
        (chain, key)
    }

    /// A self-signed identity no cluster CA issued.
    pub fn stranger() -> Identity {
        let ck = rcgen::generate_simple_self_signed(vec!["ringdb-node".to_string()])
            .expect("self-signed certificate");
        let key = PrivateKeyDer::try_from(ck.signing_key.serialize_der()).expect("key");
        (vec![ck.cert.der().clone()], key)
    }

    /// A QUIC client endpoint on loopback presenting `identity` (or no certificate), offering
    /// `alpn`.
    pub fn client(identity: Option<Identity>, alpn: &[u8]) -> quinn::Endpoint {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("TLS 1.3")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServer(provider)));
        let mut crypto = match identity {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain, key)
                .expect("client certificate"),
            None => builder.with_no_client_auth(),
        };
        crypto.alpn_protocols = vec![alpn.to_vec()];
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(crypto).expect("QUIC config");
        let mut endpoint =
            quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind client");
        endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));
        endpoint
    }

    /// Tries a handshake and one stream; returns how the node treated us: `Err` when the
    /// connection was refused or closed by the node within `limit`, `Ok` when it stayed usable.
    pub async fn try_session(
        endpoint: &quinn::Endpoint,
        server: SocketAddr,
        limit: Duration,
    ) -> Result<String, String> {
        let attempt = async {
            let conn = endpoint
                .connect(server, ringdb_gossip::transport::SERVER_NAME)
                .map_err(|e| format!("connect: {e}"))?
                .await
                .map_err(|e| format!("handshake refused: {e}"))?;
            // In TLS 1.3 the server judges our certificate after our side has finished: a refusal
            // shows up as the connection closing right after.
            let mut send = conn
                .open_uni()
                .await
                .map_err(|e| format!("closed by the node: {e}"))?;
            let _ = send.write_all(&[0, 0, 0, 3, 0, 0, 0xff]).await;
            let _ = send.finish();
            match tokio::time::timeout(Duration::from_secs(3), conn.closed()).await {
                Ok(reason) => Err(format!("closed by the node: {reason}")),
                Err(_) => {
                    conn.close(0u32.into(), b"bye");
                    Ok("connection stayed open".to_string())
                }
            }
        };
        match tokio::time::timeout(limit, attempt).await {
            Ok(r) => r,
            Err(_) => Err(format!("no handshake within {limit:?}")),
        }
    }

    /// A connection as `identity`, for sending malformed streams.
    pub async fn connect(
        endpoint: &quinn::Endpoint,
        server: SocketAddr,
    ) -> Result<quinn::Connection, String> {
        let conn = tokio::time::timeout(
            Duration::from_secs(10),
            endpoint
                .connect(server, ringdb_gossip::transport::SERVER_NAME)
                .map_err(|e| format!("connect: {e}"))?,
        )
        .await
        .map_err(|_| "handshake timed out".to_string())?
        .map_err(|e| format!("handshake: {e}"))?;
        Ok(conn)
    }

    /// Sends each of `streams` on its own unidirectional stream (bounded in time).
    pub async fn send_streams(conn: &quinn::Connection, streams: &[Vec<u8>]) -> usize {
        let mut sent = 0;
        for bytes in streams {
            let one = async {
                let mut s = conn.open_uni().await.ok()?;
                s.write_all(bytes).await.ok()?;
                s.finish().ok()
            };
            if tokio::time::timeout(Duration::from_secs(5), one)
                .await
                .ok()
                .flatten()
                .is_some()
            {
                sent += 1;
            }
        }
        sent
    }

    /// Sends requests on bidirectional streams and reads whatever comes back (bounded).
    pub async fn send_requests(conn: &quinn::Connection, requests: &[Vec<u8>]) -> Vec<String> {
        let mut out = Vec::new();
        for bytes in requests {
            let one = async {
                let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
                send.write_all(bytes).await.map_err(|e| e.to_string())?;
                let _ = send.finish();
                let answer = recv.read_to_end(1 << 20).await.map_err(|e| e.to_string())?;
                Ok::<_, String>(format!("{} bytes back", answer.len()))
            };
            out.push(
                match tokio::time::timeout(Duration::from_secs(5), one).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => format!("stream refused: {e}"),
                    Err(_) => "no answer within 5 s".to_string(),
                },
            );
        }
        out
    }

    /// `count` UDP datagrams from `make(i)`, sent from a loopback socket; returns how many.
    pub fn datagrams(server: SocketAddr, count: usize, make: impl Fn(usize) -> Vec<u8>) -> usize {
        let socket = UdpSocket::bind(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind udp");
        let started = Instant::now();
        let mut sent = 0;
        for i in 0..count {
            if started.elapsed() > Duration::from_secs(20) {
                break;
            }
            if socket.send_to(&make(i), server).is_ok() {
                sent += 1;
            }
            if i % 200 == 199 {
                // Do not overrun the node's receive buffer faster than a real attacker on
                // loopback would need to: the point is parsing, not packet loss.
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        sent
    }

    /// A QUIC v1 long-header Initial packet with random connection ids and a garbage payload,
    /// padded to 1200 bytes as clients must.
    pub fn fake_initial(seed: u64, version: u32) -> Vec<u8> {
        let mut p = vec![0xC3];
        p.extend_from_slice(&version.to_be_bytes());
        p.push(8);
        p.extend(noise(8, seed));
        p.push(8);
        p.extend(noise(8, seed ^ 0x5555));
        p.push(0); // token length
        p.extend_from_slice(&[0x44, 0x9E]); // payload length 1182 (2-byte varint)
        let rest = 1200 - p.len();
        p.extend(noise(rest, seed ^ 0xAAAA));
        p
    }
}

#[test]
fn internode_port_survives_garbage_and_refuses_strangers() {
    use ringdb_gossip::certs::NodeFiles;
    use ringdb_tests::{ringdb_bin_or_skip, TestCluster};

    let test = "internode_port_survives_garbage_and_refuses_strangers";
    let Some(bin) = ringdb_bin_or_skip(test) else {
        return;
    };
    let cluster = TestCluster::create(test, &bin, &[2], &[]).expect("create cluster");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(cluster.start(Duration::from_secs(120)))
        .unwrap_or_else(|e| panic!("{e}"));
    let nodes = cluster.nodes();
    let target = nodes[0].clone();
    let other = nodes[1].clone();
    let storage = target.storage_addr;
    println!(
        "internode cases against {} ({storage}); {} is the other node",
        target.name, other.name
    );

    let mut outcomes: Vec<(String, String)> = Vec::new();
    let check = |case: &str, outcome: String, outcomes: &mut Vec<(String, String)>| {
        assert_eq!(
            cluster.process_state(&target.name).ok(),
            Some(ringdb_node::cluster::ProcessState::Running),
            "after {case}: {} is not running; log:\n{}",
            target.name,
            cluster.log_tail(&target.name, 40).unwrap_or_default()
        );
        if let Err(e) = raw::check_serving(target.cql_addr, IO_TIMEOUT) {
            panic!("after {case}: {} does not serve CQL: {e:#}", target.name);
        }
        rt.block_on(cluster.wait_converged(Duration::from_secs(30)))
            .unwrap_or_else(|e| panic!("after {case}: the nodes no longer see each other up: {e}"));
        println!(
            "internode case {:2}: {case:<60} -> {outcome}",
            outcomes.len() + 1
        );
        outcomes.push((case.to_string(), outcome));
    };

    // ---- raw datagrams (parsed by quinn before any ringdb code) ----
    let n = internode::datagrams(storage, 2_000, |i| noise(1 + (i * 37) % 1500, i as u64));
    check(
        "2 000 random UDP datagrams of 1..1500 bytes",
        format!("{n} sent"),
        &mut outcomes,
    );
    let n = internode::datagrams(storage, 300, |i| internode::fake_initial(i as u64, 1));
    check(
        "300 QUIC v1 Initial packets with garbage payloads",
        format!("{n} sent"),
        &mut outcomes,
    );
    let n = internode::datagrams(storage, 100, |i| {
        internode::fake_initial(i as u64, 0x1a2a_3a4a)
    });
    check(
        "100 Initial packets of an unknown QUIC version",
        format!("{n} sent"),
        &mut outcomes,
    );
    let n = internode::datagrams(storage, 300, |i| {
        let mut p = internode::fake_initial(i as u64, 1);
        p.truncate(1 + i % 40);
        p
    });
    check(
        "300 truncated QUIC headers (1..40 bytes)",
        format!("{n} sent"),
        &mut outcomes,
    );
    let n = internode::datagrams(storage, 300, |i| {
        let mut p = vec![0x40 | (i as u8 & 0x3f)];
        p.extend(noise(20 + i % 60, i as u64));
        p
    });
    check(
        "300 short-header packets for unknown connections",
        format!("{n} sent"),
        &mut outcomes,
    );
    let n = internode::datagrams(storage, 50, |_| Vec::new());
    check("50 empty datagrams", format!("{n} sent"), &mut outcomes);

    // ---- handshakes without a valid client certificate ----
    let files = NodeFiles {
        ca: other.certs_dir.join("ca.crt"),
        cert: other.certs_dir.join(format!("{}.crt", other.name)),
        key: other.certs_dir.join(format!("{}.key", other.name)),
    };
    let alpn = ringdb_gossip::transport::ALPN;
    for (case, identity, proto) in [
        (
            "QUIC handshake presenting no client certificate",
            None,
            alpn,
        ),
        (
            "QUIC handshake with a self-signed client certificate",
            Some(internode::stranger()),
            alpn,
        ),
        (
            "QUIC handshake offering the wrong ALPN",
            Some(internode::identity_from(&files.cert, &files.key)),
            &b"h3"[..],
        ),
    ] {
        let outcome = rt.block_on(async {
            let endpoint = internode::client(identity, proto);
            let r = internode::try_session(&endpoint, storage, Duration::from_secs(15)).await;
            endpoint.close(0u32.into(), b"");
            r
        });
        let outcome = match outcome {
            Err(refused) => refused,
            Ok(open) => panic!("{case}: the node accepted the connection ({open})"),
        };
        check(case, outcome, &mut outcomes);
    }

    // ---- malformed frames from a peer holding a valid certificate ----
    let frames_outcome = rt.block_on(async {
        let endpoint = internode::client(
            Some(internode::identity_from(&files.cert, &files.key)),
            alpn,
        );
        let conn = internode::connect(&endpoint, storage)
            .await
            .unwrap_or_else(|e| panic!("a valid certificate is refused: {e}"));
        let gossip_frame = |body: &[u8]| {
            let mut f = ((body.len() + 2) as u32).to_be_bytes().to_vec();
            f.extend_from_slice(&[0, 0]);
            f.extend_from_slice(body);
            f
        };
        let verb_request = |body: &[u8]| {
            let mut f = ((body.len() + 2) as u32).to_be_bytes().to_vec();
            f.extend_from_slice(&[1, 1]);
            f.extend_from_slice(body);
            f
        };
        let uni: Vec<Vec<u8>> = vec![
            vec![0xff, 0xff, 0xff, 0xff, 0, 0],
            vec![0, 0, 0, 0],
            vec![0, 0, 0, 9, 0, 0],
            vec![0, 0, 0, 3, 9, 9, 9],
            gossip_frame(&noise(300, 1)),
            gossip_frame(&[0, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0x10]),
            gossip_frame(&[3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            noise(5000, 2),
        ];
        let sent = internode::send_streams(&conn, &uni).await;
        let answers = internode::send_requests(
            &conn,
            &[
                verb_request(&noise(200, 3)),
                verb_request(&[0, 0xfc, 0xff, 0xff, 0xff, 0x7f]),
                verb_request(&[]),
                vec![0, 0, 0, 2, 1, 7],
            ],
        )
        .await;
        // Many streams at once, each a truncated frame.
        let burst: Vec<Vec<u8>> = (0..200).map(|i| vec![0, 0, 1, 0, 0, 0, i as u8]).collect();
        let burst_sent = internode::send_streams(&conn, &burst).await;
        conn.close(0u32.into(), b"done");
        endpoint.wait_idle().await;
        format!(
            "{sent}/{} malformed one-way streams and {burst_sent}/200 truncated ones sent; \
             garbage verb requests answered: {answers:?}",
            uni.len()
        )
    });
    check(
        "malformed frames and garbage bodies from a certified peer",
        frames_outcome,
        &mut outcomes,
    );

    // Gossip still runs: past the failure detector's patience, the nodes still see each other.
    std::thread::sleep(Duration::from_secs(6));
    rt.block_on(cluster.wait_converged(Duration::from_secs(30)))
        .unwrap_or_else(|e| panic!("the nodes stopped gossiping: {e}"));
    println!(
        "internode: {} cases passed; {} and {} still see each other up",
        outcomes.len(),
        target.name,
        other.name
    );
}
