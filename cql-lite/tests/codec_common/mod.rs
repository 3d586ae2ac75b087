//! Shared proptest strategies and helpers for the codec tests: random CQL types, random values
//! of a given type, and hex helpers for golden vectors.
#![allow(dead_code)]

pub mod messages;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use ringdb_cql::types::{varint_from_i128, CqlType, CqlValue};

/// Bytes from hex text; whitespace and `_` are ignored so vectors can be laid out by field.
pub fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'_')
        .collect();
    assert_eq!(digits.len() & 1, 0, "odd hex length in {s:?}");
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

/// Concatenates byte pieces.
pub fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Every type without parameters.
pub fn simple_types() -> Vec<CqlType> {
    vec![
        CqlType::Ascii,
        CqlType::Text,
        CqlType::Boolean,
        CqlType::TinyInt,
        CqlType::SmallInt,
        CqlType::Int,
        CqlType::BigInt,
        CqlType::Varint,
        CqlType::Float,
        CqlType::Double,
        CqlType::Decimal,
        CqlType::Uuid,
        CqlType::Timeuuid,
        CqlType::Timestamp,
        CqlType::Date,
        CqlType::Time,
        CqlType::Blob,
        CqlType::Inet,
        CqlType::Counter,
        CqlType::Duration,
    ]
}

/// A random type, nested up to `depth` levels (with `frozen<>` when `frozen` is true).
pub fn arb_type_with(depth: u32, frozen: bool) -> BoxedStrategy<CqlType> {
    let leaf = proptest::sample::select(simple_types()).boxed();
    leaf.prop_recursive(depth, 16, 3, move |inner| {
        let mut options = vec![
            inner
                .clone()
                .prop_map(|t| CqlType::List(Box::new(t)))
                .boxed(),
            inner
                .clone()
                .prop_map(|t| CqlType::Set(Box::new(t)))
                .boxed(),
            (inner.clone(), inner.clone())
                .prop_map(|(k, v)| CqlType::Map(Box::new(k), Box::new(v)))
                .boxed(),
            proptest::collection::vec(inner.clone(), 1..4)
                .prop_map(CqlType::Tuple)
                .boxed(),
        ];
        if frozen {
            options.push(inner.prop_map(|t| CqlType::Frozen(Box::new(t))).boxed());
        }
        proptest::strategy::Union::new(options)
    })
    .boxed()
}

/// A random type (frozen wrappers included).
pub fn arb_type() -> BoxedStrategy<CqlType> {
    arb_type_with(3, true)
}

/// Small text over an alphabet that exercises escaping and prefixes (NUL, quotes, non-ASCII).
pub fn arb_text() -> BoxedStrategy<String> {
    proptest::collection::vec(
        proptest::sample::select(vec!['a', 'b', '\0', '\'', 'é', '\u{ff}', '\\', '\n']),
        0..6,
    )
    .prop_map(|cs| cs.into_iter().collect())
    .boxed()
}

/// Small ASCII text including NUL.
pub fn arb_ascii() -> BoxedStrategy<String> {
    proptest::collection::vec(
        proptest::sample::select(vec!['a', 'b', '\0', '\x7f', ' ']),
        0..6,
    )
    .prop_map(|cs| cs.into_iter().collect())
    .boxed()
}

/// Small blobs over bytes that stress the escaping (0x00, 0x01, 0xFF).
pub fn arb_blob() -> BoxedStrategy<Vec<u8>> {
    proptest::collection::vec(
        proptest::sample::select(vec![0x00u8, 0x01, 0x7f, 0x80, 0xFF]),
        0..6,
    )
    .boxed()
}

/// Varint bytes: small numbers often (many equalities), big ones sometimes.
pub fn arb_varint() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        (-300i128..300).prop_map(varint_from_i128),
        any::<i128>().prop_map(varint_from_i128),
        proptest::collection::vec(any::<u8>(), 1..24).prop_map(|b| {
            match CqlValue::deserialize(&CqlType::Varint, &b).unwrap() {
                CqlValue::Varint(v) => v,
                _ => unreachable!(),
            }
        }),
    ]
    .boxed()
}

/// Floats, with the special values over-represented.
pub fn arb_f64() -> BoxedStrategy<f64> {
    prop_oneof![
        proptest::sample::select(vec![
            0.0,
            -0.0,
            1.0,
            -1.0,
            1.5,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            f64::MIN_POSITIVE,
            f64::MAX,
            f64::MIN,
        ]),
        any::<f64>(),
    ]
    .boxed()
}

/// Floats (32-bit), with the special values over-represented.
pub fn arb_f32() -> BoxedStrategy<f32> {
    prop_oneof![
        proptest::sample::select(vec![
            0.0f32,
            -0.0,
            1.0,
            -1.0,
            1.5,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            f32::MAX,
            f32::MIN
        ]),
        any::<f32>(),
    ]
    .boxed()
}

/// A UUID whose version nibble is `version`.
pub fn with_version(mut b: [u8; 16], version: u8) -> [u8; 16] {
    b[6] = (b[6] & 0x0F) | (version << 4);
    b
}

/// A random value of type `ty`.
pub fn arb_value(ty: &CqlType) -> BoxedStrategy<CqlValue> {
    match ty {
        CqlType::Frozen(inner) => arb_value(inner),
        CqlType::Ascii => arb_ascii().prop_map(CqlValue::Ascii).boxed(),
        CqlType::Text => arb_text().prop_map(CqlValue::Text).boxed(),
        CqlType::Boolean => any::<bool>().prop_map(CqlValue::Boolean).boxed(),
        CqlType::TinyInt => any::<i8>().prop_map(CqlValue::TinyInt).boxed(),
        CqlType::SmallInt => any::<i16>().prop_map(CqlValue::SmallInt).boxed(),
        CqlType::Int => prop_oneof![-3i32..3, any::<i32>()]
            .prop_map(CqlValue::Int)
            .boxed(),
        CqlType::BigInt => any::<i64>().prop_map(CqlValue::BigInt).boxed(),
        CqlType::Counter => any::<i64>().prop_map(CqlValue::Counter).boxed(),
        CqlType::Timestamp => any::<i64>().prop_map(CqlValue::Timestamp).boxed(),
        CqlType::Varint => arb_varint().prop_map(CqlValue::Varint).boxed(),
        CqlType::Float => arb_f32().prop_map(CqlValue::Float).boxed(),
        CqlType::Double => arb_f64().prop_map(CqlValue::Double).boxed(),
        CqlType::Decimal => (
            prop_oneof![-5i32..5, any::<i32>(), Just(i32::MIN), Just(i32::MAX)],
            prop_oneof![
                arb_varint(),
                (-300i128..300).prop_map(|u| varint_from_i128(u * 1000)),
            ],
        )
            .prop_map(|(scale, unscaled)| CqlValue::Decimal { scale, unscaled })
            .boxed(),
        CqlType::Uuid => (any::<[u8; 16]>(), 0u8..16)
            .prop_map(|(b, v)| CqlValue::Uuid(with_version(b, v)))
            .boxed(),
        CqlType::Timeuuid => any::<[u8; 16]>()
            .prop_map(|b| CqlValue::Timeuuid(with_version(b, 1)))
            .boxed(),
        CqlType::Date => any::<u32>().prop_map(CqlValue::Date).boxed(),
        CqlType::Time => (0i64..86_400_000_000_000).prop_map(CqlValue::Time).boxed(),
        CqlType::Blob => arb_blob().prop_map(CqlValue::Blob).boxed(),
        CqlType::Inet => prop_oneof![
            any::<[u8; 4]>().prop_map(|b| IpAddr::V4(Ipv4Addr::from(b))),
            any::<[u8; 16]>().prop_map(|b| IpAddr::V6(Ipv6Addr::from(b))),
        ]
        .prop_map(CqlValue::Inet)
        .boxed(),
        CqlType::Duration => (any::<bool>(), 0..=i32::MAX, 0..=i32::MAX, 0..=i64::MAX)
            .prop_map(|(neg, m, d, n)| {
                let s = if neg { -1 } else { 1 };
                CqlValue::Duration {
                    months: s * m,
                    days: s * d,
                    nanos: s as i64 * n,
                }
            })
            .boxed(),
        CqlType::List(t) => proptest::collection::vec(arb_value(t), 0..4)
            .prop_map(CqlValue::List)
            .boxed(),
        CqlType::Set(t) => proptest::collection::vec(arb_value(t), 0..4)
            .prop_map(CqlValue::Set)
            .boxed(),
        CqlType::Map(k, v) => proptest::collection::vec((arb_value(k), arb_value(v)), 0..4)
            .prop_map(CqlValue::Map)
            .boxed(),
        CqlType::Tuple(ts) => ts
            .iter()
            .map(|t| proptest::option::of(arb_value(t)).boxed())
            .collect::<Vec<_>>()
            .prop_map(CqlValue::Tuple)
            .boxed(),
        CqlType::Custom(_) => arb_blob().prop_map(CqlValue::Blob).boxed(),
    }
}

/// A random type together with a random value of it.
pub fn arb_typed_value() -> BoxedStrategy<(CqlType, CqlValue)> {
    arb_type()
        .prop_flat_map(|t| {
            let v = arb_value(&t);
            (Just(t), v)
        })
        .boxed()
}

/// Two values of one random type.
pub fn arb_typed_pair() -> BoxedStrategy<(CqlType, CqlValue, CqlValue)> {
    arb_type_with(2, true)
        .prop_flat_map(|t| {
            let a = arb_value(&t);
            let b = arb_value(&t);
            (Just(t), a, b)
        })
        .boxed()
}

/// Value equality that treats NaNs with equal bits as equal (through the serialized bytes).
pub fn same_value(a: &CqlValue, b: &CqlValue) -> bool {
    a.serialize() == b.serialize()
}
