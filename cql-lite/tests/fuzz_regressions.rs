//! Replays the fuzz targets' kept inputs on stable `cargo test` (CI has no fuzzer), through the
//! very functions the targets run: `fuzz/src/cql.rs`, included here with `#[path]`.
//!
//! - every file under `fuzz/regressions/cql_{frame,request,parser,value}/` (inputs that once
//!   crashed a target, kept when the bug was fixed);
//! - handcrafted hostile inputs for each target, so the harness runs even when no crash is kept.
//!
//! Adding a crash: copy `fuzz/artifacts/<target>/crash-*` to `fuzz/regressions/<target>/` (see
//! FUZZING.md). Only the absence of a panic (or of a failed round-trip assertion) counts.

#[path = "../../fuzz/src/cql.rs"]
mod harness;

#[path = "../../fuzz/src/regressions.rs"]
mod regressions;

/// Replays `fuzz/regressions/<target>/` through `body`; returns how many inputs.
fn replay(target: &str, body: fn(&[u8])) -> usize {
    regressions::replay(env!("CARGO_MANIFEST_DIR"), target, body)
}

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// A v4 request frame header followed by `body`, with `flags`.
fn frame(flags: u8, opcode: u8, body: &[u8]) -> Vec<u8> {
    let mut f = vec![0x04, flags, 0x00, 0x01, opcode];
    f.extend_from_slice(&(body.len() as u32).to_be_bytes());
    f.extend_from_slice(body);
    f
}

/// `[option]` type ids nested `depth` deep (`list<list<...<int>>>`), then `tail`.
fn nested_list_type(depth: usize, tail: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(depth * 2 + 2 + tail.len());
    for _ in 0..depth {
        v.extend_from_slice(&[0x00, 0x20]);
    }
    v.extend_from_slice(&[0x00, 0x09]);
    v.extend_from_slice(tail);
    v
}

#[test]
fn cql_frame_regressions() {
    replay("cql_frame", harness::frame);
    let startup = hex("0001 000b 43514c5f56455253494f4e 0005 332e302e30");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("half a header", hex("04 00 00")),
        ("wrong version 0x05", hex("05 00 0001 05 00000000")),
        ("v1 with a signed stream", hex("01 00 ff")),
        (
            "response version on a request",
            hex("84 00 0001 05 00000000"),
        ),
        ("unknown opcode", hex("04 00 0001 04 00000000")),
        ("body length u32::MAX", hex("04 00 0001 07 ffffffff")),
        ("body length 300 MiB", hex("04 00 0001 07 12c00000 00")),
        ("compressed STARTUP", frame(0x01, 0x01, &startup)),
        ("all flags STARTUP", frame(0xff, 0x01, &startup)),
        (
            "custom payload of -2 entries",
            frame(0x04, 0x05, &hex("fffe")),
        ),
        (
            "custom payload with a negative value length",
            frame(0x04, 0x05, &hex("0001 0001 6b fffffffe")),
        ),
        (
            "warnings flag on a request",
            frame(0x08, 0x05, &hex("ffff")),
        ),
        ("tracing flag on an ERROR", {
            let mut f = frame(0x02, 0x00, &hex("00 00000000 0000"));
            f[0] = 0x84;
            f
        }),
        ("two frames back to back", {
            let mut f = frame(0, 0x05, &[]);
            f.extend(frame(0, 0x01, &startup));
            f
        }),
    ];
    for (name, bytes) in cases {
        println!("cql_frame: {name}");
        harness::frame(&bytes);
    }
}

#[test]
fn cql_request_regressions() {
    replay("cql_request", harness::request);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("STARTUP valid", hex("01 0001 000b 43514c5f56455253494f4e 0005 332e302e30")),
        ("STARTUP 65535 entries", hex("01 ffff")),
        ("STARTUP invalid UTF-8 key", hex("01 0001 0002 fffe 0001 61")),
        ("OPTIONS with trailing bytes", hex("05 deadbeef")),
        ("QUERY negative long string", hex("07 ffffffff 0001 00")),
        ("QUERY i32::MAX long string", hex("07 7fffffff 61")),
        ("QUERY invalid UTF-8", hex("07 00000002 c328 0001 00")),
        ("QUERY unknown consistency", hex("07 00000001 61 00ff 00")),
        (
            "QUERY value of length -2 (unset)",
            hex("07 00000001 61 0001 01 0001 fffffffe"),
        ),
        (
            "QUERY value of length -3",
            hex("07 00000001 61 0001 01 0001 fffffffd"),
        ),
        (
            "QUERY names flag with an invalid UTF-8 name",
            hex("07 00000001 61 0001 41 0001 0001 ff 00000000"),
        ),
        (
            "QUERY every flag",
            hex("07 00000001 61 0001 7f 0001 0001 6e 00000001 2a 00001388 fffffffe 0008 0000000000000001"),
        ),
        ("QUERY 65535 values", hex("07 00000001 61 0001 01 ffff")),
        ("QUERY negative paging state", hex("07 00000001 61 0001 08 ffffff00")),
        ("PREPARE negative length", hex("09 80000000")),
        ("EXECUTE empty id", hex("0a 0000 0001 00")),
        ("EXECUTE id longer than the body", hex("0a ffff 00")),
        ("BATCH unknown type", hex("0d 07 0000 0001 00")),
        ("BATCH 65535 statements", hex("0d 00 ffff")),
        ("BATCH statement kind 2", hex("0d 00 0001 02")),
        (
            "BATCH prepared with a negative value",
            hex("0d 01 0001 01 0001 aa 0001 fffffff0 0001 00"),
        ),
        ("BATCH every flag", hex("0d 02 0000 0004 ff 0009 0000000000000007")),
        ("REGISTER invalid UTF-8", hex("0b 0001 0001 80")),
        ("AUTH_RESPONSE null token", hex("0f ffffffff")),
        ("AUTH_RESPONSE i32::MIN token", hex("0f 80000000")),
        ("RESULT rows of i32::MAX columns", hex("08 00000002 00000004 7fffffff 7fffffff")),
        ("RESULT type nested 10 000 deep", {
            let mut v = hex("08 00000002 00000001 00000001 0001 6b 0001 74 0001 63");
            v.extend(nested_list_type(10_000, &hex("00000000")));
            v
        }),
        ("ERROR with a huge string", hex("00 00000000 ffff 61")),
        ("EVENT unknown type", hex("0c 0003 464f4f")),
        ("SUPPORTED 65535 entries", hex("06 ffff")),
    ];
    for (name, bytes) in cases {
        println!("cql_request: {name}");
        harness::request(&bytes);
    }
}

#[test]
fn cql_parser_regressions() {
    assert!(
        replay("cql_parser", harness::parser) >= 1,
        "the kept cql_parser input was not replayed"
    );
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("invalid UTF-8", vec![0xff, 0xfe, 0xc3, 0x28]),
        (
            "invalid UTF-8 inside a string literal",
            b"SELECT * FROM t WHERE k = '\xc3\x28'".to_vec(),
        ),
        ("unterminated string", b"SELECT 'abc".to_vec()),
        ("unterminated comment", b"SELECT /* abc".to_vec()),
        ("unterminated dollar string", b"SELECT $$abc".to_vec()),
        ("lone surrogate-like bytes", b"\xed\xa0\x80".to_vec()),
        ("NUL bytes", b"SELECT\0*\0FROM t".to_vec()),
        ("10 000 nested list literals", {
            let mut v = b"INSERT INTO t (k) VALUES (".to_vec();
            v.extend(std::iter::repeat_n(b'[', 10_000));
            v
        }),
        ("10 000 nested frozen<list<", {
            let mut v = b"CREATE TABLE t (k int PRIMARY KEY, v ".to_vec();
            for _ in 0..10_000 {
                v.extend_from_slice(b"frozen<list<");
            }
            v
        }),
        ("a type nested 10 000 deep", {
            let mut v = Vec::new();
            for _ in 0..10_000 {
                v.extend_from_slice(b"list<");
            }
            v.extend_from_slice(b"int");
            v.extend(std::iter::repeat_n(b'>', 10_000));
            v
        }),
        (
            "a type",
            b"frozen<map<text, tuple<int, list<blob>>>>".to_vec(),
        ),
        (
            "a custom type",
            b"'org.apache.cassandra.db.marshal.DurationType'".to_vec(),
        ),
        // Found by the fuzzer: the type's text did not quote the `'` and did not parse back.
        ("a custom type named with a quote", b"'it''s'".to_vec()),
        ("10 000 nested parentheses", {
            let mut v = b"SELECT * FROM t WHERE k = ".to_vec();
            v.extend(std::iter::repeat_n(b'(', 10_000));
            v
        }),
        ("many semicolons", b";;;;;;;;;;;;;;;;;;;;".repeat(100)),
    ];
    for (name, bytes) in cases {
        println!("cql_parser: {name}");
        harness::parser(&bytes);
    }
}

#[test]
fn cql_value_regressions() {
    assert!(
        replay("cql_value", harness::value) >= 1,
        "the kept cql_value input was not replayed"
    );
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("int", hex("0009 0000002a")),
        ("int of 3 bytes", hex("0009 000001")),
        ("text invalid UTF-8", hex("000d c328")),
        ("ascii with a high byte", hex("0001 61ff")),
        ("list count -1", hex("0020 0009 ffffffff")),
        ("list count i32::MAX", hex("0020 0009 7fffffff")),
        ("list with a null element", hex("0020 0009 00000001 ffffffff")),
        ("list with a -2 element", hex("0020 0009 00000001 fffffffe")),
        ("map count -2", hex("0021 000d 0009 fffffffe")),
        ("map key without value", hex("0021 0009 0009 00000001 00000004 00000001")),
        ("set of lists", hex("0022 0020 0009 00000001 00000008 00000001 00000004 00000007")),
        ("tuple with a null and a missing component", hex("0031 0003 0009 000d 0004 ffffffff 00000001 61")),
        ("tuple component of length -7", hex("0031 0001 0009 fffffff9")),
        ("UDT with a field", hex("0030 0002 6b73 0001 75 0001 0001 66 0009 00000004 00000001")),
        ("UDT of 65535 fields", hex("0030 0002 6b73 0001 75 ffff")),
        ("custom type", hex("0000 0003 666f6f 0102")),
        ("duration mixed signs", hex("0000 002c 6f72672e6170616368652e63617373616e6472612e64622e6d61727368616c2e4475726174696f6e54797065 02 01 00")),
        ("duration v5 id", hex("0015 02 02 02")),
        // Found by the fuzzer: the literal of i64::MIN nanoseconds / i32::MIN months did not
        // parse back (the magnitude was parsed before the sign).
        ("duration of i64::MIN nanoseconds", hex("0015 00 00 ffffffffffffffffff")),
        ("duration of i32::MIN months", hex("0015 f0ffffffff 00 00")),
        ("varint empty", hex("000e")),
        ("varint long", hex("000e ff00000000000000000000000000000001")),
        ("decimal huge scale", hex("0006 7fffffff 01")),
        ("decimal negative scale", hex("0006 80000000 ff")),
        ("timestamp min", hex("000b 8000000000000000")),
        ("date max", hex("0011 ffffffff")),
        ("date min", hex("0011 00000000")),
        ("time out of range", hex("0012 7fffffffffffffff")),
        ("timeuuid version 4", hex("000f 00000000000040000000000000000000")),
        ("inet of 5 bytes", hex("0010 7f00000100")),
        ("float NaN", hex("0008 7fc00001")),
        ("double -0", hex("0007 8000000000000000")),
        ("unknown type id", hex("0099 00")),
        ("type nested 10 000 deep", nested_list_type(10_000, &hex("00000000"))),
        ("type nested 63 deep with a value", {
            let mut v = nested_list_type(63, &[]);
            // 63 lists, each holding one element, around an int.
            let mut value = 7i32.to_be_bytes().to_vec();
            for _ in 0..63 {
                let mut outer = 1i32.to_be_bytes().to_vec();
                outer.extend_from_slice(&(value.len() as i32).to_be_bytes());
                outer.extend_from_slice(&value);
                value = outer;
            }
            v.extend(value);
            v
        }),
    ];
    for (name, bytes) in cases {
        println!("cql_value: {name}");
        harness::value(&bytes);
    }
}
