//! Ordering: `compare` against independent reference orders, and the comparable encoding's
//! laws — order-preserving, reversed when descending, prefix-free (so composite keys sort
//! component-wise and key prefixes are byte prefixes), and decodable.

mod codec_common;

use std::cmp::Ordering;

use codec_common::*;
use proptest::prelude::*;
use ringdb_cql::types::{
    compare, decode_comparable, encode_comparable, varint_from_i128, varint_to_i128, CqlType,
    CqlValue,
};

fn enc(v: &CqlValue, desc: bool) -> Vec<u8> {
    let mut out = Vec::new();
    encode_comparable(v, desc, &mut out);
    out
}

fn check_pair(ty: &CqlType, a: &CqlValue, b: &CqlValue) -> Result<(), TestCaseError> {
    let c = compare(a, b);
    prop_assert_eq!(compare(b, a), c.reverse(), "antisymmetry");
    let (ea, eb) = (enc(a, false), enc(b, false));
    prop_assert_eq!(ea.cmp(&eb), c, "ascending {} {:?} {:?}", ty, a, b);
    let (da, db) = (enc(a, true), enc(b, true));
    prop_assert_eq!(
        da.cmp(&db),
        c.reverse(),
        "descending {} {:?} {:?}",
        ty,
        a,
        b
    );
    if c != Ordering::Equal {
        // Prefix-free: neither encoding starts with the other.
        prop_assert!(
            !ea.starts_with(&eb) && !eb.starts_with(&ea),
            "prefix {:?} {:?}",
            ea,
            eb
        );
        prop_assert!(!da.starts_with(&db) && !db.starts_with(&da));
    }
    Ok(())
}

fn check_decode(ty: &CqlType, v: &CqlValue, desc: bool) -> Result<(), TestCaseError> {
    let mut bytes = enc(v, desc);
    let n = bytes.len();
    bytes.extend_from_slice(&[0x00, 0x42, 0xFF]); // whatever follows must not be consumed
    let (back, used) = decode_comparable(ty, desc, &bytes)
        .map_err(|e| TestCaseError::fail(format!("{ty} {v:?}: {e}")))?;
    prop_assert_eq!(used, n);
    prop_assert_eq!(
        compare(&back, v),
        Ordering::Equal,
        "{} {:?} -> {:?}",
        ty,
        v,
        back
    );
    if !contains_decimal(ty) {
        prop_assert!(same_value(&back, v) || has_nan(v), "{:?} -> {:?}", v, back);
    }
    // Re-encoding the decoded value gives the same bytes (canonical form).
    prop_assert_eq!(enc(&back, desc), &bytes[..n]);
    Ok(())
}

fn contains_decimal(ty: &CqlType) -> bool {
    match ty {
        CqlType::Decimal => true,
        CqlType::Frozen(t) | CqlType::List(t) | CqlType::Set(t) => contains_decimal(t),
        CqlType::Map(k, v) => contains_decimal(k) || contains_decimal(v),
        CqlType::Tuple(ts) => ts.iter().any(contains_decimal),
        _ => false,
    }
}

fn has_nan(v: &CqlValue) -> bool {
    match v {
        CqlValue::Float(f) => f.is_nan(),
        CqlValue::Double(f) => f.is_nan(),
        CqlValue::List(xs) | CqlValue::Set(xs) => xs.iter().any(has_nan),
        CqlValue::Map(kv) => kv.iter().any(|(k, v)| has_nan(k) || has_nan(v)),
        CqlValue::Tuple(xs) => xs.iter().flatten().any(has_nan),
        _ => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn encoding_preserves_order((ty, a, b) in arb_typed_pair()) {
        check_pair(&ty, &a, &b)?;
        check_pair(&ty, &a, &a)?;
    }

    #[test]
    fn encoding_decodes((ty, v) in arb_typed_value(), desc in any::<bool>()) {
        check_decode(&ty, &v, desc)?;
    }

    #[test]
    fn composite_keys_sort_componentwise_and_prefixes_are_byte_prefixes(
        (t1, a1, b1) in arb_typed_pair(),
        (t2, a2, b2) in arb_typed_pair(),
        d1 in any::<bool>(),
        d2 in any::<bool>(),
    ) {
        let key = |x1: &CqlValue, x2: &CqlValue| {
            let mut out = Vec::new();
            encode_comparable(x1, d1, &mut out);
            encode_comparable(x2, d2, &mut out);
            out
        };
        let dir = |o: Ordering, d: bool| if d { o.reverse() } else { o };
        let expected = dir(compare(&a1, &b1), d1).then(dir(compare(&a2, &b2), d2));
        let (ka, kb) = (key(&a1, &a2), key(&b1, &b2));
        prop_assert_eq!(ka.cmp(&kb), expected);
        // The encoding of the prefix (a1) is a byte prefix of the whole key, and a range scan
        // over that prefix finds exactly the keys whose first component equals a1.
        let prefix = enc(&a1, d1);
        prop_assert!(ka.starts_with(&prefix));
        prop_assert_eq!(kb.starts_with(&prefix), compare(&a1, &b1) == Ordering::Equal);
        // And the key decodes component by component.
        let (x1, n1) = decode_comparable(&t1, d1, &ka).unwrap();
        let (x2, n2) = decode_comparable(&t2, d2, &ka[n1..]).unwrap();
        prop_assert_eq!(n1 + n2, ka.len());
        prop_assert_eq!(compare(&x1, &a1), Ordering::Equal);
        prop_assert_eq!(compare(&x2, &a2), Ordering::Equal);
    }

    // ---- compare against independent reference orders ----

    #[test]
    fn varints_order_numerically(a in any::<i128>(), b in any::<i128>()) {
        let (x, y) = (CqlValue::Varint(varint_from_i128(a)), CqlValue::Varint(varint_from_i128(b)));
        prop_assert_eq!(compare(&x, &y), a.cmp(&b));
        check_pair(&CqlType::Varint, &x, &y)?;
    }

    #[test]
    fn decimals_order_numerically(
        ua in -100_000i64..100_000, sa in -6i32..6,
        ub in -100_000i64..100_000, sb in -6i32..6,
    ) {
        // Reference: bring both to scale 12 in i128.
        let at = |u: i64, s: i32| i128::from(u) * 10i128.pow((12 - s) as u32);
        let x = CqlValue::Decimal { scale: sa, unscaled: varint_from_i128(ua.into()) };
        let y = CqlValue::Decimal { scale: sb, unscaled: varint_from_i128(ub.into()) };
        prop_assert_eq!(compare(&x, &y), at(ua, sa).cmp(&at(ub, sb)));
        check_pair(&CqlType::Decimal, &x, &y)?;
    }

    #[test]
    fn doubles_order_like_java(a in arb_f64(), b in arb_f64()) {
        // Java's Double.compare: every NaN equal and greatest, -0.0 < 0.0.
        let canon = |v: f64| if v.is_nan() { f64::NAN } else { v };
        let expected = canon(a).total_cmp(&canon(b));
        prop_assert_eq!(compare(&CqlValue::Double(a), &CqlValue::Double(b)), expected);
        check_pair(&CqlType::Double, &CqlValue::Double(a), &CqlValue::Double(b))?;
    }

    #[test]
    fn floats_order_like_java(a in arb_f32(), b in arb_f32()) {
        let canon = |v: f32| if v.is_nan() { f32::NAN } else { v };
        prop_assert_eq!(
            compare(&CqlValue::Float(a), &CqlValue::Float(b)),
            canon(a).total_cmp(&canon(b))
        );
    }

    #[test]
    fn timeuuids_order_by_time_then_signed_bytes(a in any::<[u8; 16]>(), b in any::<[u8; 16]>(), same_time in any::<bool>()) {
        let a = with_version(a, 1);
        let mut b = with_version(b, 1);
        if same_time {
            b[..8].copy_from_slice(&a[..8]);
        }
        let reference = |u: &[u8; 16]| {
            let t = uuid::Uuid::from_bytes(*u).get_timestamp().unwrap().to_gregorian().0;
            let low: Vec<i8> = u[8..].iter().map(|&x| x as i8).collect();
            (t, low)
        };
        let (x, y) = (CqlValue::Timeuuid(a), CqlValue::Timeuuid(b));
        prop_assert_eq!(compare(&x, &y), reference(&a).cmp(&reference(&b)));
        check_pair(&CqlType::Timeuuid, &x, &y)?;
    }

    #[test]
    fn uuids_order_like_uuidtype(a in any::<[u8; 16]>(), b in any::<[u8; 16]>(), va in 0u8..6, vb in 0u8..6) {
        let (a, b) = (with_version(a, va), with_version(b, vb));
        let reference = |u: &[u8; 16]| {
            let version = u[6] >> 4;
            let hi = if version == 1 {
                uuid::Uuid::from_bytes(*u).get_timestamp().unwrap().to_gregorian().0
            } else {
                u64::from_be_bytes(u[..8].try_into().unwrap())
            };
            (version, hi, u64::from_be_bytes(u[8..].try_into().unwrap()))
        };
        let (x, y) = (CqlValue::Uuid(a), CqlValue::Uuid(b));
        prop_assert_eq!(compare(&x, &y), reference(&a).cmp(&reference(&b)));
        check_pair(&CqlType::Uuid, &x, &y)?;
    }

    #[test]
    fn texts_and_blobs_order_bytewise(a in arb_blob(), b in arb_blob()) {
        let (x, y) = (CqlValue::Blob(a.clone()), CqlValue::Blob(b.clone()));
        prop_assert_eq!(compare(&x, &y), a.cmp(&b));
        check_pair(&CqlType::Blob, &x, &y)?;
    }

    #[test]
    fn ints_order_signed(a in any::<i64>(), b in any::<i64>()) {
        prop_assert_eq!(compare(&CqlValue::BigInt(a), &CqlValue::BigInt(b)), a.cmp(&b));
        let (x, y) = (a as i32, b as i32);
        prop_assert_eq!(compare(&CqlValue::Int(x), &CqlValue::Int(y)), x.cmp(&y));
        let (x, y) = (a as i8, b as i8);
        check_pair(&CqlType::TinyInt, &CqlValue::TinyInt(x), &CqlValue::TinyInt(y))?;
    }
}

#[test]
fn fixed_orders() {
    use CqlValue as V;
    let lt = |a: V, b: V| assert_eq!(compare(&a, &b), Ordering::Less, "{a:?} < {b:?}");
    lt(V::Boolean(false), V::Boolean(true));
    lt(V::Int(-1), V::Int(0));
    lt(V::Date(5), V::Date(u32::MAX)); // unsigned days
    lt(V::Double(-0.0), V::Double(0.0));
    lt(V::Double(f64::INFINITY), V::Double(f64::NAN));
    lt(V::Text("a".into()), V::Text("ab".into()));
    lt(V::Text("Z".into()), V::Text("a".into()));
    lt(V::Blob(vec![0x7f]), V::Blob(vec![0x80]));
    lt(
        V::Inet("10.0.0.1".parse().unwrap()),
        V::Inet("10.0.0.2".parse().unwrap()),
    );
    lt(
        V::List(vec![V::Int(1)]),
        V::List(vec![V::Int(1), V::Int(0)]),
    );
    lt(
        V::List(vec![V::Int(1), V::Int(9)]),
        V::List(vec![V::Int(2)]),
    );
    lt(
        V::Tuple(vec![None, Some(V::Int(0))]),
        V::Tuple(vec![Some(V::Int(0)), None]),
    );
    lt(
        V::Map(vec![(V::Int(1), V::Int(5))]),
        V::Map(vec![(V::Int(1), V::Int(6))]),
    );
    // Decimals compare numerically: 1.0 == 1.00, 1E+2 == 100.
    let d = |u: i128, s: i32| V::Decimal {
        scale: s,
        unscaled: varint_from_i128(u),
    };
    assert_eq!(compare(&d(10, 1), &d(100, 2)), Ordering::Equal);
    assert_eq!(compare(&d(1, -2), &d(100, 0)), Ordering::Equal);
    lt(d(-15, 1), d(-1, 0));
    lt(d(1, 3), d(1, 2));
}

#[test]
fn decimals_decode_canonically() {
    let d = |u: i128, s: i32| CqlValue::Decimal {
        scale: s,
        unscaled: varint_from_i128(u),
    };
    for (value, canonical) in [
        (d(150, 2), d(15, 1)),    // 1.50 -> 1.5
        (d(1, -2), d(100, 0)),    // 1E+2 -> 100
        (d(0, 7), d(0, 0)),       // 0E-7 -> 0
        (d(-1200, 3), d(-12, 1)), // -1.200 -> -1.2
    ] {
        let (back, _) = decode_comparable(&CqlType::Decimal, false, &enc(&value, false)).unwrap();
        assert_eq!(back, canonical);
    }
    // Huge exponents stay in exponent form instead of being written out.
    let huge = CqlValue::Decimal {
        scale: i32::MIN,
        unscaled: vec![7],
    };
    let (back, _) = decode_comparable(&CqlType::Decimal, true, &enc(&huge, true)).unwrap();
    assert_eq!(back, huge);
    // ... and trailing zeros come back when the scale would not fit an i32 without them.
    for (value, canonical) in [
        (d(10, i32::MIN), d(10, i32::MIN)),
        (d(-1000, i32::MIN + 1), d(-100, i32::MIN)),
        (d(7, i32::MAX), d(7, i32::MAX)),
    ] {
        let (back, _) = decode_comparable(&CqlType::Decimal, false, &enc(&value, false)).unwrap();
        assert_eq!(back, canonical);
    }
}

#[test]
fn text_encoding_is_escaped_and_terminated() {
    assert_eq!(
        enc(&CqlValue::Text("a\0b".into()), false),
        [b'a', 0x00, 0xFF, b'b', 0x00, 0x01]
    );
    assert_eq!(enc(&CqlValue::Int(0), false), [0x80, 0, 0, 0]);
    assert_eq!(enc(&CqlValue::Int(-1), false), [0x7F, 0xFF, 0xFF, 0xFF]);
    assert_eq!(enc(&CqlValue::Int(0), true), [0x7F, 0xFF, 0xFF, 0xFF]);
    assert_eq!(
        varint_to_i128(&varint_from_i128(-129)),
        Some(-129),
        "sanity"
    );
}

#[test]
fn decode_comparable_rejects_garbage() {
    for (ty, bytes) in [
        (CqlType::Text, vec![b'a']),
        (CqlType::Text, vec![b'a', 0x00, 0x05]),
        (CqlType::Int, vec![0x80, 0]),
        (CqlType::Boolean, vec![7]),
        (CqlType::Varint, vec![0x80, 0, 0, 0, 9, 1]),
        (CqlType::Varint, vec![0x55]),
        (
            CqlType::Decimal,
            vec![0x03, 0x80, 0, 0, 0, 0, 0, 0, 1, 0xEE],
        ),
        (
            CqlType::List(Box::new(CqlType::Int)),
            vec![0x01, 0x80, 0, 0, 0],
        ),
        (CqlType::Inet, vec![1, 2, 0x00, 0x01]),
        (
            CqlType::Tuple(vec![CqlType::Int]),
            vec![0x02, 0x80, 0, 0, 1, 0x02],
        ),
    ] {
        let r = decode_comparable(&ty, false, &bytes);
        assert!(r.is_err(), "{ty} {bytes:02x?} gave {r:?}");
    }
}
