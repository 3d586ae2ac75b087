//! CQL values: serialization round trips and golden bytes, strict decoding, cqlsh rendering,
//! CQL literals (`to_cql_literal` ↔ `from_literal`) and type names.

mod codec_common;

use std::net::IpAddr;

use codec_common::*;
use proptest::prelude::*;
use ringdb_cql::ast::Literal;
use ringdb_cql::types::{
    parse_type, parse_type_name, varint_from_decimal_str, varint_from_i128, CqlType, CqlValue,
    TypeError,
};

fn list(t: CqlType) -> CqlType {
    CqlType::List(Box::new(t))
}
fn set(t: CqlType) -> CqlType {
    CqlType::Set(Box::new(t))
}
fn map(k: CqlType, v: CqlType) -> CqlType {
    CqlType::Map(Box::new(k), Box::new(v))
}
fn frozen(t: CqlType) -> CqlType {
    CqlType::Frozen(Box::new(t))
}
fn text(s: &str) -> CqlValue {
    CqlValue::Text(s.to_string())
}
fn uuid(s: &str) -> [u8; 16] {
    *uuid::Uuid::parse_str(s).unwrap().as_bytes()
}
fn dec(unscaled: i128, scale: i32) -> CqlValue {
    CqlValue::Decimal {
        scale,
        unscaled: varint_from_i128(unscaled),
    }
}
fn lit_int(s: &str) -> Literal {
    Literal::Integer(s.to_string())
}
fn lit_str(s: &str) -> Literal {
    Literal::String(s.to_string())
}
fn lit_float(s: &str) -> Literal {
    Literal::Float(s.to_string())
}

// ---------------------------------------------------------------------------------------------
// Golden bytes, derived by hand from protocol v4 §6
// ---------------------------------------------------------------------------------------------

#[test]
fn golden_value_bytes() {
    let ts_2024 = 1_704_164_645_678i64; // 2024-01-02 03:04:05.678 UTC = 0x18cc820db2e
    let cases: Vec<(CqlType, CqlValue, Vec<u8>)> = vec![
        (CqlType::Int, CqlValue::Int(1), hex("00000001")),
        (CqlType::Int, CqlValue::Int(-2), hex("fffffffe")),
        (
            CqlType::BigInt,
            CqlValue::BigInt(1),
            hex("0000000000000001"),
        ),
        (
            CqlType::BigInt,
            CqlValue::BigInt(i64::MIN),
            hex("8000000000000000"),
        ),
        (CqlType::Text, text("hé"), hex("68 c3a9")),
        (CqlType::Text, text(""), vec![]),
        (
            CqlType::Uuid,
            CqlValue::Uuid(uuid("550e8400-e29b-41d4-a716-446655440000")),
            hex("550e8400 e29b 41d4 a716 446655440000"),
        ),
        (
            CqlType::Timestamp,
            CqlValue::Timestamp(ts_2024),
            hex("0000018cc820db2e"),
        ),
        (
            list(CqlType::Int),
            CqlValue::List(vec![CqlValue::Int(1), CqlValue::Int(2)]),
            hex("00000002  00000004 00000001  00000004 00000002"),
        ),
        (
            map(CqlType::Text, CqlType::Int),
            CqlValue::Map(vec![(text("a"), CqlValue::Int(1))]),
            hex("00000001  00000001 61  00000004 00000001"),
        ),
        (
            frozen(set(CqlType::Text)),
            CqlValue::Set(vec![]),
            hex("00000000"),
        ),
        // The spec's varint table.
        (CqlType::Varint, CqlValue::Varint(vec![0x00]), hex("00")),
        (
            CqlType::Varint,
            CqlValue::Varint(varint_from_i128(127)),
            hex("7f"),
        ),
        (
            CqlType::Varint,
            CqlValue::Varint(varint_from_i128(128)),
            hex("0080"),
        ),
        (
            CqlType::Varint,
            CqlValue::Varint(varint_from_i128(129)),
            hex("0081"),
        ),
        (
            CqlType::Varint,
            CqlValue::Varint(varint_from_i128(-1)),
            hex("ff"),
        ),
        (
            CqlType::Varint,
            CqlValue::Varint(varint_from_i128(-128)),
            hex("80"),
        ),
        (
            CqlType::Varint,
            CqlValue::Varint(varint_from_i128(-129)),
            hex("ff7f"),
        ),
        // decimal = [int] scale + varint unscaled: 1.50 is 150 * 10^-2.
        (CqlType::Decimal, dec(150, 2), hex("00000002 0096")),
        (CqlType::Decimal, dec(-5, 1), hex("00000001 fb")),
        (CqlType::Boolean, CqlValue::Boolean(true), hex("01")),
        (CqlType::TinyInt, CqlValue::TinyInt(-1), hex("ff")),
        (CqlType::SmallInt, CqlValue::SmallInt(258), hex("0102")),
        (CqlType::Float, CqlValue::Float(1.5), hex("3fc00000")),
        (
            CqlType::Double,
            CqlValue::Double(-2.0),
            hex("c000000000000000"),
        ),
        (CqlType::Date, CqlValue::Date(1 << 31), hex("80000000")),
        (CqlType::Time, CqlValue::Time(1), hex("0000000000000001")),
        (
            CqlType::Inet,
            CqlValue::Inet("127.0.0.1".parse().unwrap()),
            hex("7f000001"),
        ),
        (
            CqlType::Inet,
            CqlValue::Inet("::1".parse().unwrap()),
            hex("00000000000000000000000000000001"),
        ),
        // duration: three zig-zag vints; 1 month = 2, 2 days = 4, 1h = 3.6e12 ns = zigzag 7.2e12
        // = 0x68c_6171_4000, 43 bits need 7 bytes (7 * 7 >= 43): 6 leading 1-bits then the value.
        (
            CqlType::Duration,
            CqlValue::Duration {
                months: 1,
                days: 2,
                nanos: 3_600_000_000_000,
            },
            hex("02 04 fc068c61714000"),
        ),
        (
            CqlType::Duration,
            CqlValue::Duration {
                months: 0,
                days: -1,
                nanos: 0,
            },
            hex("00 01 00"),
        ),
        // Vectors from the Python driver's own vint encoder (cassandra/marshal.py vints_pack).
        (
            CqlType::Duration,
            CqlValue::Duration {
                months: 128,
                days: 0,
                nanos: 1 << 62,
            },
            hex("8100 00 ff8000000000000000"),
        ),
        (
            CqlType::Duration,
            CqlValue::Duration {
                months: 0,
                days: 0,
                nanos: i64::MIN,
            },
            hex("00 00 ffffffffffffffffff"),
        ),
        (
            CqlType::Duration,
            CqlValue::Duration {
                months: 0,
                days: 0,
                nanos: i64::MAX,
            },
            hex("00 00 fffffffffffffffffe"),
        ),
        (
            CqlType::Tuple(vec![CqlType::Int, CqlType::Text]),
            CqlValue::Tuple(vec![Some(CqlValue::Int(7)), None]),
            hex("00000004 00000007  ffffffff"),
        ),
    ];
    for (ty, value, bytes) in cases {
        assert_eq!(value.serialize(), bytes, "serialize {value:?}");
        let back = CqlValue::deserialize(&ty, &bytes).unwrap_or_else(|e| panic!("{ty}: {e}"));
        assert!(same_value(&back, &value), "{ty}: {back:?} != {value:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn serialize_deserialize_round_trip((ty, value) in arb_typed_value()) {
        let bytes = value.serialize();
        let back = CqlValue::deserialize(&ty, &bytes).map_err(|e| TestCaseError::fail(format!("{ty}: {e}")))?;
        prop_assert!(same_value(&back, &value), "{} {:?} -> {:?}", ty, value, back);
        // Frozen is transparent.
        let frozen_back = CqlValue::deserialize(&frozen(ty.clone()), &bytes).unwrap();
        prop_assert!(same_value(&frozen_back, &value));
    }

    #[test]
    fn type_text_round_trip(ty in arb_type()) {
        prop_assert_eq!(parse_type(&ty.to_string()), Some(ty.clone()));
    }

    #[test]
    fn varint_decimal_text_round_trip(v in any::<i128>()) {
        let bytes = varint_from_i128(v);
        prop_assert_eq!(ringdb_cql::types::varint_to_decimal_string(&bytes), v.to_string());
        prop_assert_eq!(varint_from_decimal_str(&v.to_string()), Some(bytes));
    }

    #[test]
    fn scalar_literals_round_trip(
        (ty, value) in proptest::sample::select(simple_types())
            .prop_filter("counter literals are increments", |t| *t != CqlType::Counter)
            .prop_flat_map(|t| { let v = arb_value(&t); (Just(t), v) })
    ) {
        let text = value.to_cql_literal();
        let lit = literal_from_text(&ty, &text);
        let back = CqlValue::from_literal(&ty, &lit)
            .map_err(|e| TestCaseError::fail(format!("{ty} {text}: {e}")))?;
        prop_assert!(same_value(&back, &value), "{} {} -> {:?} vs {:?}", ty, text, back, value);
    }
}

/// Test-only stand-in for the lexer: classifies literal text the way CQL's grammar would.
fn literal_from_text(ty: &CqlType, text: &str) -> Literal {
    if let Some(s) = text.strip_prefix('\'') {
        return Literal::String(s[..s.len() - 1].replace("''", "'"));
    }
    if let Some(h) = text.strip_prefix("0x") {
        return Literal::Blob(hex(h));
    }
    match text {
        "true" => return Literal::Boolean(true),
        "false" => return Literal::Boolean(false),
        _ => {}
    }
    match ty {
        CqlType::Duration => Literal::Duration(text.to_string()),
        CqlType::Uuid | CqlType::Timeuuid => Literal::Uuid(text.to_string()),
        _ if text.contains(['.', 'e', 'E', 'N', 'I']) => Literal::Float(text.to_string()),
        _ => Literal::Integer(text.to_string()),
    }
}

// ---------------------------------------------------------------------------------------------
// Strict decoding
// ---------------------------------------------------------------------------------------------

#[test]
fn deserialize_rejects_malformed_values() {
    let bad: Vec<(CqlType, Vec<u8>)> = vec![
        (CqlType::Int, hex("000001")),
        (CqlType::Int, hex("0000000001")),
        (CqlType::Int, vec![]),
        (CqlType::BigInt, hex("00")),
        (CqlType::Boolean, vec![]),
        (CqlType::Uuid, vec![0; 15]),
        (CqlType::Inet, vec![1, 2, 3]),
        (CqlType::Text, hex("ff fe")),
        (CqlType::Ascii, hex("61 e9")),
        (CqlType::Varint, vec![]),
        (CqlType::Decimal, hex("00000001")),
        // timeuuid must be version 1 (this is version 4)
        (CqlType::Timeuuid, hex("550e8400e29b41d4a716446655440000")),
        // time outside a day
        (CqlType::Time, hex("0000 4e94 914f 0000")),
        (CqlType::Time, hex("ffffffffffffffff")),
        // duration with mixed signs (1 month, -1 day) and truncated
        (CqlType::Duration, hex("02 01 00")),
        (CqlType::Duration, hex("02 04")),
        // list: truncated count, truncated element, null element, trailing bytes, negative count
        (list(CqlType::Int), hex("000000")),
        (list(CqlType::Int), hex("00000001 00000004 0000")),
        (list(CqlType::Int), hex("00000001 ffffffff")),
        (list(CqlType::Int), hex("00000000 00")),
        (list(CqlType::Int), hex("ffffffff")),
        (list(CqlType::Int), hex("7fffffff")),
        (
            map(CqlType::Int, CqlType::Int),
            hex("00000001 00000004 00000001"),
        ),
        (
            map(CqlType::Text, CqlType::Int),
            hex("00000001 00000001 61 ffffffff"),
        ),
        // tuple with more components than its type
        (
            CqlType::Tuple(vec![CqlType::Int]),
            hex("00000004 00000001 00000004 00000002"),
        ),
    ];
    for (ty, bytes) in bad {
        let r = CqlValue::deserialize(&ty, &bytes);
        assert!(
            matches!(r, Err(TypeError::InvalidValue { .. })),
            "{ty} {bytes:02x?} gave {r:?}"
        );
    }
}

#[test]
fn deserialize_leniencies() {
    // Missing trailing tuple components are null (how UDTs grow).
    let ty = CqlType::Tuple(vec![CqlType::Int, CqlType::Text]);
    assert_eq!(
        CqlValue::deserialize(&ty, &hex("00000004 00000001")).unwrap(),
        CqlValue::Tuple(vec![Some(CqlValue::Int(1)), None])
    );
    // A non-minimal varint is normalized.
    assert_eq!(
        CqlValue::deserialize(&CqlType::Varint, &hex("000001")).unwrap(),
        CqlValue::Varint(vec![1])
    );
    assert_eq!(
        CqlValue::deserialize(&CqlType::Varint, &hex("ffff80")).unwrap(),
        CqlValue::Varint(vec![0x80])
    );
    // Any non-zero boolean byte is true.
    assert_eq!(
        CqlValue::deserialize(&CqlType::Boolean, &[7]).unwrap(),
        CqlValue::Boolean(true)
    );
    // Custom types come back as their raw bytes.
    assert_eq!(
        CqlValue::deserialize(&CqlType::Custom("x.Y".into()), &[1, 2]).unwrap(),
        CqlValue::Blob(vec![1, 2])
    );
}

#[test]
fn deserialize_error_messages_name_the_type() {
    let err = CqlValue::deserialize(&CqlType::Int, &[0, 1]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid int value: expected 4 bytes, got 2"
    );
    let err = CqlValue::deserialize(&CqlType::Ascii, b"a\xe9").unwrap_err();
    assert!(err.to_string().contains("non-ASCII"), "{err}");
    let err = CqlValue::deserialize(&list(CqlType::Int), &hex("00000001 ffffffff")).unwrap_err();
    assert!(err.to_string().contains("null element"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Rendering (cqlsh)
// ---------------------------------------------------------------------------------------------

#[test]
fn render_like_cqlsh() {
    let ts = 1_704_164_645_678i64;
    let cases: Vec<(CqlValue, &str)> = vec![
        (text("it's"), "it's"),
        (text("a\\b"), "a\\\\b"),
        (text("tab\there"), "tab\\there"),
        (CqlValue::Ascii("x".into()), "x"),
        (CqlValue::Boolean(true), "True"),
        (CqlValue::Boolean(false), "False"),
        (CqlValue::Int(-42), "-42"),
        (CqlValue::TinyInt(5), "5"),
        (CqlValue::BigInt(i64::MAX), "9223372036854775807"),
        (CqlValue::Counter(3), "3"),
        (CqlValue::Timestamp(ts), "2024-01-02 03:04:05.678000+0000"),
        (CqlValue::Timestamp(0), "1970-01-01 00:00:00.000000+0000"),
        (CqlValue::Timestamp(-1), "1969-12-31 23:59:59.999000+0000"),
        // Beyond year 9999 cqlsh prints the milliseconds.
        (CqlValue::Timestamp(i64::MAX), "9223372036854775807"),
        (CqlValue::Date((1u32 << 31) + 19_724), "2024-01-02"),
        (CqlValue::Date(1 << 31), "1970-01-01"),
        (CqlValue::Date(0), "-2147483648"),
        (CqlValue::Time(11_045_000_000_000), "03:04:05.000000000"),
        (CqlValue::Time(1), "00:00:00.000000001"),
        (
            CqlValue::Uuid(uuid("550E8400-E29B-41D4-A716-446655440000")),
            "550e8400-e29b-41d4-a716-446655440000",
        ),
        (CqlValue::Blob(vec![0xca, 0xfe]), "0xcafe"),
        (CqlValue::Blob(vec![]), "0x"),
        (CqlValue::Float(1.5), "1.5"),
        (CqlValue::Float(0.1), "0.1"),
        (CqlValue::Double(1e20), "1e+20"),
        (CqlValue::Double(f64::NAN), "NaN"),
        (CqlValue::Double(f64::INFINITY), "Infinity"),
        (CqlValue::Float(f32::NEG_INFINITY), "-Infinity"),
        (CqlValue::Double(0.0), "0"),
        (CqlValue::Double(123456.789), "1.2346e+05"),
        (CqlValue::Double(3.0), "3"),
        (
            CqlValue::Varint(varint_from_decimal_str("-123456789012345678901234567890").unwrap()),
            "-123456789012345678901234567890",
        ),
        (dec(150, 2), "1.50"),
        (dec(1, -2), "1E+2"),
        (dec(-5, 3), "-0.005"),
        (dec(0, 0), "0"),
        (CqlValue::Inet("10.0.0.1".parse().unwrap()), "10.0.0.1"),
        (CqlValue::Inet("::1".parse().unwrap()), "::1"),
        (
            CqlValue::Duration {
                months: 14,
                days: 3,
                nanos: 5_400_000_000_000,
            },
            "1y2mo3d1h30m",
        ),
        (
            CqlValue::List(vec![CqlValue::Int(1), CqlValue::Int(2)]),
            "[1, 2]",
        ),
        (
            CqlValue::Set(vec![text("a"), text("it's")]),
            "{'a', 'it''s'}",
        ),
        (
            CqlValue::Map(vec![(text("a"), CqlValue::Int(1))]),
            "{'a': 1}",
        ),
        (CqlValue::List(vec![]), "[]"),
        (
            CqlValue::Tuple(vec![Some(CqlValue::Int(1)), None, Some(text("x"))]),
            "(1, null, 'x')",
        ),
        (
            CqlValue::List(vec![CqlValue::Timestamp(0)]),
            "['1970-01-01 00:00:00.000000+0000']",
        ),
        (
            CqlValue::Set(vec![CqlValue::Inet(IpAddr::from([127, 0, 0, 1]))]),
            "{'127.0.0.1'}",
        ),
        (
            CqlValue::Map(vec![(
                CqlValue::Int(1),
                CqlValue::List(vec![CqlValue::Blob(vec![1])]),
            )]),
            "{1: [0x01]}",
        ),
    ];
    for (value, expected) in cases {
        assert_eq!(value.render(), expected, "{value:?}");
    }
}

#[test]
fn cql_literals() {
    let cases: Vec<(CqlValue, &str)> = vec![
        (text("it's"), "'it''s'"),
        (CqlValue::Blob(vec![0xca, 0xfe]), "0xcafe"),
        (CqlValue::Timestamp(1_704_164_645_678), "1704164645678"),
        (CqlValue::Date((1u32 << 31) + 19_724), "'2024-01-02'"),
        (CqlValue::Time(11_045_000_000_001), "'03:04:05.000000001'"),
        (CqlValue::Inet("::1".parse().unwrap()), "'::1'"),
        (CqlValue::Double(1e20), "1e20"),
        (CqlValue::Float(1.5), "1.5"),
        (CqlValue::Double(f64::NEG_INFINITY), "-Infinity"),
        (dec(150, 2), "1.50"),
        (dec(15, -1), "15E+1"),
        (dec(-5, 3), "-0.005"),
        (CqlValue::Boolean(false), "false"),
        (
            CqlValue::Map(vec![(text("a"), CqlValue::List(vec![CqlValue::Int(1)]))]),
            "{'a': [1]}",
        ),
        (
            CqlValue::Tuple(vec![None, Some(CqlValue::Int(2))]),
            "(null, 2)",
        ),
        (
            CqlValue::Duration {
                months: 0,
                days: 0,
                nanos: 0,
            },
            "0s",
        ),
    ];
    for (value, expected) in cases {
        assert_eq!(value.to_cql_literal(), expected, "{value:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Literals from statements
// ---------------------------------------------------------------------------------------------

#[test]
fn integer_literals_with_range_checks() {
    let ok: Vec<(CqlType, &str, CqlValue)> = vec![
        (CqlType::TinyInt, "-128", CqlValue::TinyInt(-128)),
        (CqlType::SmallInt, "32767", CqlValue::SmallInt(32767)),
        (CqlType::Int, "-2147483648", CqlValue::Int(i32::MIN)),
        (
            CqlType::BigInt,
            "9223372036854775807",
            CqlValue::BigInt(i64::MAX),
        ),
        (CqlType::Counter, "5", CqlValue::Counter(5)),
        (CqlType::Timestamp, "1000", CqlValue::Timestamp(1000)),
        (CqlType::Double, "3", CqlValue::Double(3.0)),
        (CqlType::Float, "-3", CqlValue::Float(-3.0)),
        (CqlType::Decimal, "42", dec(42, 0)),
        (
            CqlType::Varint,
            "123456789012345678901234567890",
            CqlValue::Varint(varint_from_decimal_str("123456789012345678901234567890").unwrap()),
        ),
        (frozen(CqlType::Int), "7", CqlValue::Int(7)),
    ];
    for (ty, text, expected) in ok {
        assert_eq!(
            CqlValue::from_literal(&ty, &lit_int(text)),
            Ok(expected),
            "{ty} {text}"
        );
    }
    for (ty, text) in [
        (CqlType::TinyInt, "128"),
        (CqlType::TinyInt, "-129"),
        (CqlType::SmallInt, "32768"),
        (CqlType::Int, "2147483648"),
        (CqlType::BigInt, "9223372036854775808"),
        (CqlType::BigInt, "-99999999999999999999999"),
    ] {
        let err = CqlValue::from_literal(&ty, &lit_int(text)).unwrap_err();
        assert!(
            matches!(err, TypeError::OutOfRange { .. }),
            "{ty} {text}: {err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("out of range") && msg.contains(&ty.to_string()),
            "{msg}"
        );
    }
    assert_eq!(
        CqlValue::from_literal(&CqlType::TinyInt, &lit_int("300"))
            .unwrap_err()
            .to_string(),
        "literal 300 is out of range for type tinyint (must be between -128 and 127)"
    );
}

#[test]
fn wrong_kind_of_literal_names_what_was_expected() {
    let err = CqlValue::from_literal(&CqlType::Int, &lit_str("foo")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid literal 'foo' for type int: expected an integer"
    );
    let err = CqlValue::from_literal(&CqlType::Blob, &lit_str("cafe")).unwrap_err();
    assert!(err.to_string().contains("0xcafe"), "{err}");
    let err = CqlValue::from_literal(&CqlType::Ascii, &lit_str("é")).unwrap_err();
    assert!(err.to_string().contains("ASCII"), "{err}");
    for (ty, lit) in [
        (CqlType::Int, lit_float("1.5")),
        (CqlType::Text, lit_int("1")),
        (CqlType::Boolean, lit_str("true")),
        (CqlType::Decimal, lit_float("NaN")),
        (CqlType::Uuid, lit_str("not-a-uuid")),
        (CqlType::Inet, lit_str("300.1.1.1")),
        (CqlType::Date, lit_str("2024-02-30")),
        (CqlType::Time, lit_str("24:00:00")),
        (CqlType::Timestamp, lit_str("yesterday")),
        (list(CqlType::Int), lit_int("1")),
        (CqlType::Int, Literal::Null),
        (CqlType::Duration, Literal::Duration("1x".into())),
    ] {
        let r = CqlValue::from_literal(&ty, &lit);
        assert!(
            matches!(r, Err(TypeError::InvalidLiteral { .. })),
            "{ty} {lit:?}: {r:?}"
        );
    }
    // Out-of-range floats.
    assert!(matches!(
        CqlValue::from_literal(&CqlType::Float, &lit_float("1e39")),
        Err(TypeError::OutOfRange { .. })
    ));
    assert!(matches!(
        CqlValue::from_literal(&CqlType::Double, &lit_float("1e400")),
        Err(TypeError::OutOfRange { .. })
    ));
}

#[test]
fn string_literals_for_temporal_types() {
    let base = 1_704_164_645_000i64; // 2024-01-02 03:04:05 UTC
    let ts = |s: &str| CqlValue::from_literal(&CqlType::Timestamp, &lit_str(s));
    assert_eq!(ts("2024-01-02 03:04:05"), Ok(CqlValue::Timestamp(base)));
    assert_eq!(
        ts("2024-01-02T03:04:05.123Z"),
        Ok(CqlValue::Timestamp(base + 123))
    );
    assert_eq!(
        ts("2024-01-02 03:04:05+0000"),
        Ok(CqlValue::Timestamp(base))
    );
    assert_eq!(
        ts("2024-01-02 04:04:05+01:00"),
        Ok(CqlValue::Timestamp(base))
    );
    assert_eq!(ts("2024-01-02"), Ok(CqlValue::Timestamp(base - 11_045_000)));
    assert_eq!(ts("1704164645000"), Ok(CqlValue::Timestamp(base)));
    assert_eq!(ts("1969-12-31 23:59:59.999Z"), Ok(CqlValue::Timestamp(-1)));

    let date = |s: &str| CqlValue::from_literal(&CqlType::Date, &lit_str(s));
    assert_eq!(date("2024-01-02"), Ok(CqlValue::Date((1 << 31) + 19_724)));
    assert_eq!(date("1970-01-01"), Ok(CqlValue::Date(1 << 31)));
    assert_eq!(date("1969-12-31"), Ok(CqlValue::Date((1 << 31) - 1)));
    assert_eq!(date("2147483648"), Ok(CqlValue::Date(1 << 31)));
    assert_eq!(date("-5877641-06-23"), Ok(CqlValue::Date(0)));

    let time = |s: &str| CqlValue::from_literal(&CqlType::Time, &lit_str(s));
    assert_eq!(
        time("03:04:05.123456789"),
        Ok(CqlValue::Time(11_045_123_456_789))
    );
    assert_eq!(time("03:04:05.5"), Ok(CqlValue::Time(11_045_500_000_000)));
    assert_eq!(time("00:00:00"), Ok(CqlValue::Time(0)));
    assert!(time("3:04").is_err());
}

#[test]
fn other_literals() {
    let v1 = "5d2a6c10-a8c2-11ee-8c90-0242ac120002";
    let v4 = "550e8400-e29b-41d4-a716-446655440000";
    assert_eq!(
        CqlValue::from_literal(&CqlType::Uuid, &Literal::Uuid(v4.into())),
        Ok(CqlValue::Uuid(uuid(v4)))
    );
    assert_eq!(
        CqlValue::from_literal(&CqlType::Uuid, &lit_str(v4)),
        Ok(CqlValue::Uuid(uuid(v4)))
    );
    assert_eq!(
        CqlValue::from_literal(&CqlType::Timeuuid, &Literal::Uuid(v1.into())),
        Ok(CqlValue::Timeuuid(uuid(v1)))
    );
    assert!(CqlValue::from_literal(&CqlType::Timeuuid, &Literal::Uuid(v4.into())).is_err());
    assert_eq!(
        CqlValue::from_literal(&CqlType::Inet, &lit_str("::1")),
        Ok(CqlValue::Inet("::1".parse().unwrap()))
    );
    assert_eq!(
        CqlValue::from_literal(&CqlType::Blob, &Literal::Blob(vec![0xca, 0xfe])),
        Ok(CqlValue::Blob(vec![0xca, 0xfe]))
    );
    assert_eq!(
        CqlValue::from_literal(&CqlType::Boolean, &Literal::Boolean(true)),
        Ok(CqlValue::Boolean(true))
    );
    assert_eq!(
        CqlValue::from_literal(&CqlType::Decimal, &lit_float("1.50")),
        Ok(dec(150, 2))
    );
    assert_eq!(
        CqlValue::from_literal(&CqlType::Decimal, &lit_float("-1.5e3")),
        Ok(dec(-15, -2))
    );
    assert_eq!(
        CqlValue::from_literal(&CqlType::Double, &lit_float("-Infinity")),
        Ok(CqlValue::Double(f64::NEG_INFINITY))
    );
    assert!(matches!(
        CqlValue::from_literal(&CqlType::Float, &lit_float("NaN")),
        Ok(CqlValue::Float(f)) if f.is_nan()
    ));
    assert_eq!(
        CqlValue::from_literal(&CqlType::Float, &lit_float("0.1")),
        Ok(CqlValue::Float(0.1))
    );
    assert_eq!(
        CqlValue::from_literal(&CqlType::Duration, &Literal::Duration("1h30m".into())),
        Ok(CqlValue::Duration {
            months: 0,
            days: 0,
            nanos: 5_400_000_000_000
        })
    );
    assert_eq!(
        CqlValue::from_literal(&CqlType::Duration, &Literal::Duration("P1Y2M".into())),
        Ok(CqlValue::Duration {
            months: 14,
            days: 0,
            nanos: 0
        })
    );
}

#[test]
fn type_names() {
    assert_eq!(parse_type_name("int"), Some(CqlType::Int));
    assert_eq!(parse_type_name("VARCHAR"), Some(CqlType::Text));
    assert_eq!(parse_type_name("text"), Some(CqlType::Text));
    assert_eq!(parse_type_name("timeuuid"), Some(CqlType::Timeuuid));
    assert_eq!(parse_type_name("list<int>"), None);
    assert_eq!(parse_type_name("integer"), None);
    for t in simple_types() {
        assert_eq!(parse_type_name(&t.to_string()), Some(t));
    }
    assert_eq!(
        parse_type("frozen<map<text, list<int>>>"),
        Some(frozen(map(CqlType::Text, list(CqlType::Int))))
    );
}
