//! CQL types and values.
//!
//! `CqlType` is a column's declared type; `CqlValue` is a non-null value of such a type. Null is
//! not a value: wherever a value may be absent (a bound variable, a cell in a result row) the code
//! uses `Option<CqlValue>` (on the wire, a `[bytes]` of length -1).
//!
//! This module owns, for every type:
//! - the native-protocol serialization of values (`serialize` / `deserialize`, protocol v4 §6),
//! - the text rendering used by shells (`render`, matching cqlsh's formatting) and the CQL literal
//!   text of a value (`to_cql_literal`, which parses back to the same value),
//! - the CQL text of types themselves (`Display for CqlType`, e.g. `frozen<map<text, int>>`) and
//!   the reverse (`parse_type_name`, `parse_type`),
//! - the conversion of a literal from a statement to a typed value (`from_literal`),
//! - Cassandra's sort order of values (`compare`) and an order-preserving byte encoding of it
//!   (`encode_comparable` / `decode_comparable`) used by storage for clustering keys.
//!
//! # Serialization
//! Values are encoded exactly as the protocol's §6 says: fixed-width big-endian numbers, raw
//! UTF-8 for text, two's-complement minimal bytes for varint, `[int] scale` + varint for decimal,
//! Cassandra's zig-zag "vint" triple for duration, and for collections an `[int]` count followed by
//! `[bytes]` elements (map entries are key then value). Decoding is strict because its input comes
//! from the network: a wrong length, invalid UTF-8, a non-ASCII byte in `ascii`, a truncated or
//! over-long collection, a null inside a list/set/map, a `timeuuid` that is not version 1 or a
//! `time` outside a day is an error, never a panic and never a silently repaired value. Two
//! leniencies are deliberate and match Cassandra: a tuple may carry fewer components than its
//! type (missing trailing components are null — this is how user-defined types, which this crate
//! decodes as tuples, are allowed to grow), and a varint may arrive in a non-minimal encoding (it
//! is normalized). The empty value that Cassandra tolerates for most fixed-width types (a
//! zero-length `int`) is rejected here; the layer that sees bound values can treat it as null.
//!
//! # Ordering and the comparable encoding
//! `compare` follows Cassandra's comparators: numbers by signed value (floats by Java's
//! `Float.compare`: `-0.0 < 0.0`, every NaN equal and above `+Infinity`), decimals numerically
//! (`1.0 == 1.00`), text/ascii/blob/inet bytewise, `uuid` as `UUIDType` (version, then time for
//! version 1 or the unsigned high half otherwise, then the unsigned low half), `timeuuid` as
//! `TimeUUIDType` (embedded timestamp, then the low half compared as *signed* bytes), `date` as
//! unsigned days, booleans `false < true`, collections and tuples lexicographically.
//!
//! `encode_comparable` turns a value into bytes whose unsigned lexicographic order is exactly that
//! order, and which are *prefix-free*: no value's encoding is a prefix of another's. That second
//! property is what makes a composite clustering key a plain concatenation of its components'
//! encodings: the concatenations then sort component by component, and the encoding of a prefix
//! of the key is a byte prefix of the full key's encoding, so a range scan over "all rows whose
//! first clustering column is X" is a scan over a byte prefix. A descending column inverts every
//! byte of its component, which reverses the order and keeps it prefix-free.
//!
//! Per type: fixed-width integers are big-endian with the sign bit flipped; floats use the IEEE
//! total-order trick (after folding every NaN into one, as Java does); variable-length bytes are
//! escaped (`0x00` → `0x00 0xFF`) and terminated by `0x00 0x01`; varints carry a sign byte and a
//! 4-byte length (inverted for negatives, so longer negatives sort first) ahead of their two's
//! complement bytes; decimals are normalized to sign, decimal exponent and digit string (two digits
//! per byte, `0x00`-terminated, all inverted for negatives); collections prefix each element with
//! a continuation byte and end with `0x00`. A decimal therefore decodes to a canonical form of the
//! same number (trailing fractional zeros dropped) — numerically equal values share one encoding,
//! as they must since `compare` calls them equal.

use std::cmp::Ordering;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use thiserror::Error;

use crate::ast::Literal;

/// A declared CQL type.
///
/// `Frozen` exists only in schema: on the wire a `frozen<list<int>>` is sent as `list<int>`.
/// Non-frozen collections are multi-cell (one storage cell per element); frozen ones are a single
/// cell holding the serialized collection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CqlType {
    /// US-ASCII text (bytes 0..=127).
    Ascii,
    /// UTF-8 text (`text` and its alias `varchar`).
    Text,
    /// `true` / `false`.
    Boolean,
    /// 8-bit signed integer.
    TinyInt,
    /// 16-bit signed integer.
    SmallInt,
    /// 32-bit signed integer.
    Int,
    /// 64-bit signed integer.
    BigInt,
    /// Arbitrary-precision integer.
    Varint,
    /// IEEE 754 binary32.
    Float,
    /// IEEE 754 binary64.
    Double,
    /// Arbitrary-precision decimal.
    Decimal,
    /// Any RFC 4122 UUID.
    Uuid,
    /// A version 1 (time-based) UUID, ordered by its timestamp.
    Timeuuid,
    /// Milliseconds since the Unix epoch.
    Timestamp,
    /// A day, without time of day.
    Date,
    /// A time of day with nanosecond precision.
    Time,
    /// Arbitrary bytes.
    Blob,
    /// An IPv4 or IPv6 address.
    Inet,
    /// A 64-bit distributed counter.
    Counter,
    /// Months, days and nanoseconds.
    Duration,
    /// `list<T>`.
    List(Box<CqlType>),
    /// `set<T>`.
    Set(Box<CqlType>),
    /// `map<K, V>`.
    Map(Box<CqlType>, Box<CqlType>),
    /// `tuple<T1, T2, ...>` (user-defined types received from a server are decoded as tuples).
    Tuple(Vec<CqlType>),
    /// `frozen<T>`: schema-only; transparent for serialization, ordering and rendering.
    Frozen(Box<CqlType>),
    /// A type the server named by its Java class (protocol option id 0x0000); carried, never built.
    Custom(String),
}

/// A non-null CQL value.
#[derive(Debug, Clone, PartialEq)]
pub enum CqlValue {
    /// An `ascii` value (every byte below 0x80).
    Ascii(String),
    /// A `text` / `varchar` value.
    Text(String),
    /// A `boolean`.
    Boolean(bool),
    /// A `tinyint`.
    TinyInt(i8),
    /// A `smallint`.
    SmallInt(i16),
    /// An `int`.
    Int(i32),
    /// A `bigint`.
    BigInt(i64),
    /// Two's-complement big-endian, minimal length (as on the wire).
    Varint(Vec<u8>),
    /// A `float`.
    Float(f32),
    /// A `double`.
    Double(f64),
    /// `unscaled * 10^-scale`; `unscaled` is a varint as above.
    Decimal {
        /// Power of ten to divide `unscaled` by (may be negative).
        scale: i32,
        /// Two's-complement big-endian, minimal length.
        unscaled: Vec<u8>,
    },
    /// A `uuid`, as its 16 bytes.
    Uuid([u8; 16]),
    /// A `timeuuid`, as its 16 bytes (version 1).
    Timeuuid([u8; 16]),
    /// Milliseconds since the Unix epoch.
    Timestamp(i64),
    /// Days since the epoch with the epoch at 2^31 (the wire's unsigned representation).
    Date(u32),
    /// Nanoseconds since midnight.
    Time(i64),
    /// A `blob`.
    Blob(Vec<u8>),
    /// An `inet`.
    Inet(IpAddr),
    /// A `counter` value.
    Counter(i64),
    /// A `duration`; the three parts never have different signs.
    Duration {
        /// Whole months.
        months: i32,
        /// Whole days.
        days: i32,
        /// Nanoseconds.
        nanos: i64,
    },
    /// A `list` value, in list order.
    List(Vec<CqlValue>),
    /// A `set` value, in the order given (a server sends sets sorted).
    Set(Vec<CqlValue>),
    /// A `map` value, in the order given (a server sends maps sorted by key).
    Map(Vec<(CqlValue, CqlValue)>),
    /// A `tuple` value; `None` is a null component.
    Tuple(Vec<Option<CqlValue>>),
}

impl fmt::Display for CqlType {
    /// CQL text of the type, as `system_schema.columns.type` shows it (`frozen<list<int>>`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CqlType::Ascii => f.write_str("ascii"),
            CqlType::Text => f.write_str("text"),
            CqlType::Boolean => f.write_str("boolean"),
            CqlType::TinyInt => f.write_str("tinyint"),
            CqlType::SmallInt => f.write_str("smallint"),
            CqlType::Int => f.write_str("int"),
            CqlType::BigInt => f.write_str("bigint"),
            CqlType::Varint => f.write_str("varint"),
            CqlType::Float => f.write_str("float"),
            CqlType::Double => f.write_str("double"),
            CqlType::Decimal => f.write_str("decimal"),
            CqlType::Uuid => f.write_str("uuid"),
            CqlType::Timeuuid => f.write_str("timeuuid"),
            CqlType::Timestamp => f.write_str("timestamp"),
            CqlType::Date => f.write_str("date"),
            CqlType::Time => f.write_str("time"),
            CqlType::Blob => f.write_str("blob"),
            CqlType::Inet => f.write_str("inet"),
            CqlType::Counter => f.write_str("counter"),
            CqlType::Duration => f.write_str("duration"),
            CqlType::List(t) => write!(f, "list<{t}>"),
            CqlType::Set(t) => write!(f, "set<{t}>"),
            CqlType::Map(k, v) => write!(f, "map<{k}, {v}>"),
            CqlType::Tuple(ts) => {
                f.write_str("tuple<")?;
                for (i, t) in ts.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{t}")?;
                }
                f.write_str(">")
            }
            CqlType::Frozen(t) => write!(f, "frozen<{t}>"),
            // Quoted as a CQL string (`'` doubled), so that the text parses back.
            CqlType::Custom(name) => write!(f, "'{}'", name.replace('\'', "''")),
        }
    }
}

impl CqlType {
    /// The type without any `frozen<>` wrappers at any depth: what goes on the wire.
    pub fn unfrozen(&self) -> CqlType {
        match self {
            CqlType::Frozen(t) => t.unfrozen(),
            CqlType::List(t) => CqlType::List(Box::new(t.unfrozen())),
            CqlType::Set(t) => CqlType::Set(Box::new(t.unfrozen())),
            CqlType::Map(k, v) => CqlType::Map(Box::new(k.unfrozen()), Box::new(v.unfrozen())),
            CqlType::Tuple(ts) => CqlType::Tuple(ts.iter().map(|t| t.unfrozen()).collect()),
            other => other.clone(),
        }
    }

    /// True for a non-frozen collection: stored as one cell per element.
    pub fn is_multi_cell(&self) -> bool {
        matches!(
            self,
            CqlType::List(_) | CqlType::Set(_) | CqlType::Map(_, _)
        )
    }

    /// True for list, set and map, frozen or not.
    pub fn is_collection(&self) -> bool {
        match self {
            CqlType::Frozen(t) => t.is_collection(),
            CqlType::List(_) | CqlType::Set(_) | CqlType::Map(_, _) => true,
            _ => false,
        }
    }

    /// The type with outer `frozen<>` wrappers removed (inner ones are kept).
    fn strip_frozen(&self) -> &CqlType {
        let mut t = self;
        while let CqlType::Frozen(inner) = t {
            t = inner;
        }
        t
    }
}

/// The type of a simple (non-parameterized) CQL type name, case-insensitively: `int`, `text`,
/// `varchar` (→ `Text`), `timeuuid`, ... `None` for anything else, including `list<int>`.
pub fn parse_type_name(name: &str) -> Option<CqlType> {
    let t = match name.trim().to_ascii_lowercase().as_str() {
        "ascii" => CqlType::Ascii,
        "text" | "varchar" => CqlType::Text,
        "boolean" => CqlType::Boolean,
        "tinyint" => CqlType::TinyInt,
        "smallint" => CqlType::SmallInt,
        "int" => CqlType::Int,
        "bigint" => CqlType::BigInt,
        "varint" => CqlType::Varint,
        "float" => CqlType::Float,
        "double" => CqlType::Double,
        "decimal" => CqlType::Decimal,
        "uuid" => CqlType::Uuid,
        "timeuuid" => CqlType::Timeuuid,
        "timestamp" => CqlType::Timestamp,
        "date" => CqlType::Date,
        "time" => CqlType::Time,
        "blob" => CqlType::Blob,
        "inet" => CqlType::Inet,
        "counter" => CqlType::Counter,
        "duration" => CqlType::Duration,
        _ => return None,
    };
    Some(t)
}

/// Parses a full CQL type text such as `frozen<map<text, list<int>>>` or `tuple<int, text>`, as
/// found in `system_schema.columns.type` (the inverse of `Display for CqlType`). Custom types
/// (`'org.apache...'`) are accepted quoted. `None` if the text is not a type.
pub fn parse_type(text: &str) -> Option<CqlType> {
    let text = text.trim();
    if text.len() >= 2 && text.starts_with('\'') && text.ends_with('\'') {
        return Some(CqlType::Custom(text[1..text.len() - 1].replace("''", "'")));
    }
    let Some(open) = text.find('<') else {
        return parse_type_name(text);
    };
    if !text.ends_with('>') {
        return None;
    }
    let name = text[..open].trim().to_ascii_lowercase();
    let args = split_type_args(&text[open + 1..text.len() - 1])?;
    let mut types = Vec::with_capacity(args.len());
    for a in args {
        types.push(parse_type(a)?);
    }
    let one = |mut types: Vec<CqlType>| (types.len() == 1).then(|| Box::new(types.remove(0)));
    match name.as_str() {
        "list" => Some(CqlType::List(one(types)?)),
        "set" => Some(CqlType::Set(one(types)?)),
        "frozen" => Some(CqlType::Frozen(one(types)?)),
        "map" if types.len() == 2 => {
            let v = types.pop()?;
            let k = types.pop()?;
            Some(CqlType::Map(Box::new(k), Box::new(v)))
        }
        "tuple" if !types.is_empty() => Some(CqlType::Tuple(types)),
        _ => None,
    }
}

/// Splits `a, map<b, c>, d` at the top-level commas.
fn split_type_args(s: &str) -> Option<Vec<&str>> {
    let mut depth = 0usize;
    let mut out = Vec::new();
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '<' => depth += 1,
            '>' => depth = depth.checked_sub(1)?,
            ',' if depth == 0 => {
                out.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return None;
    }
    out.push(s[start..].trim());
    if out.iter().any(|a| a.is_empty()) {
        return None;
    }
    Some(out)
}

/// Everything that can go wrong converting between values and bytes or text.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TypeError {
    /// Serialized bytes that are not a valid value of the type.
    #[error("invalid {ty} value: {reason}")]
    InvalidValue {
        /// The CQL type being decoded.
        ty: String,
        /// What was wrong, e.g. "expected 4 bytes, got 3".
        reason: String,
    },
    /// A statement literal that cannot be a value of the column's type.
    #[error("invalid literal {literal} for type {ty}: expected {expected}")]
    InvalidLiteral {
        /// The literal as written (`'foo'`, `42`, `0xcafe`).
        literal: String,
        /// The CQL type the literal was meant for.
        ty: String,
        /// What the type accepts.
        expected: String,
    },
    /// A numeric or temporal literal beyond the type's range.
    #[error("literal {literal} is out of range for type {ty} (must be between {min} and {max})")]
    OutOfRange {
        /// The literal as written.
        literal: String,
        /// The CQL type the literal was meant for.
        ty: String,
        /// Smallest accepted value.
        min: String,
        /// Largest accepted value.
        max: String,
    },
    /// Bytes given to `decode_comparable` that no `encode_comparable` call produced.
    #[error("invalid comparable encoding of {ty}: {reason}")]
    InvalidComparable {
        /// The CQL type being decoded.
        ty: String,
        /// What was wrong.
        reason: String,
    },
}

fn invalid(ty: &CqlType, reason: impl Into<String>) -> TypeError {
    TypeError::InvalidValue {
        ty: ty.to_string(),
        reason: reason.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Serialization (protocol v4 §6)
// ---------------------------------------------------------------------------------------------

impl CqlValue {
    /// The value's bytes as sent in a `[bytes]`/`[value]` on the wire, without the length prefix.
    ///
    /// Collections are an `[int]` element count followed by `[bytes]` elements (a map's entries
    /// are key then value), emitted in the order held; tuples are their components' `[bytes]`,
    /// with length -1 for a null component.
    pub fn serialize(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.serialize_into(&mut out);
        out
    }

    /// Like [`CqlValue::serialize`], appending to `out`.
    pub fn serialize_into(&self, out: &mut Vec<u8>) {
        match self {
            CqlValue::Ascii(s) | CqlValue::Text(s) => out.extend_from_slice(s.as_bytes()),
            CqlValue::Boolean(b) => out.push(u8::from(*b)),
            CqlValue::TinyInt(v) => out.extend_from_slice(&v.to_be_bytes()),
            CqlValue::SmallInt(v) => out.extend_from_slice(&v.to_be_bytes()),
            CqlValue::Int(v) => out.extend_from_slice(&v.to_be_bytes()),
            CqlValue::BigInt(v) | CqlValue::Counter(v) | CqlValue::Timestamp(v) => {
                out.extend_from_slice(&v.to_be_bytes())
            }
            CqlValue::Time(v) => out.extend_from_slice(&v.to_be_bytes()),
            CqlValue::Varint(b) => out.extend_from_slice(b),
            CqlValue::Float(v) => out.extend_from_slice(&v.to_bits().to_be_bytes()),
            CqlValue::Double(v) => out.extend_from_slice(&v.to_bits().to_be_bytes()),
            CqlValue::Decimal { scale, unscaled } => {
                out.extend_from_slice(&scale.to_be_bytes());
                out.extend_from_slice(unscaled);
            }
            CqlValue::Uuid(b) | CqlValue::Timeuuid(b) => out.extend_from_slice(b),
            CqlValue::Date(d) => out.extend_from_slice(&d.to_be_bytes()),
            CqlValue::Blob(b) => out.extend_from_slice(b),
            CqlValue::Inet(IpAddr::V4(a)) => out.extend_from_slice(&a.octets()),
            CqlValue::Inet(IpAddr::V6(a)) => out.extend_from_slice(&a.octets()),
            CqlValue::Duration {
                months,
                days,
                nanos,
            } => {
                write_signed_vint(i64::from(*months), out);
                write_signed_vint(i64::from(*days), out);
                write_signed_vint(*nanos, out);
            }
            CqlValue::List(items) | CqlValue::Set(items) => {
                out.extend_from_slice(&len_i32(items.len()).to_be_bytes());
                for item in items {
                    write_element(item, out);
                }
            }
            CqlValue::Map(entries) => {
                out.extend_from_slice(&len_i32(entries.len()).to_be_bytes());
                for (k, v) in entries {
                    write_element(k, out);
                    write_element(v, out);
                }
            }
            CqlValue::Tuple(items) => {
                for item in items {
                    match item {
                        Some(v) => write_element(v, out),
                        None => out.extend_from_slice(&(-1i32).to_be_bytes()),
                    }
                }
            }
        }
    }

    /// Decodes a value of type `ty` from its wire bytes (no length prefix).
    ///
    /// Strict: a wrong length, invalid UTF-8 for `text`, a non-ASCII byte for `ascii`, a
    /// truncated or over-long collection, a null element inside a list/set/map, a non-version-1
    /// `timeuuid`, a `time` outside `0..86_400_000_000_000`, a `duration` with mixed signs are all
    /// errors. `Frozen` is transparent; a tuple may have fewer components than its type (the
    /// missing trailing ones are `None`); a `Custom` type's bytes come back as a `Blob`.
    pub fn deserialize(ty: &CqlType, bytes: &[u8]) -> Result<CqlValue, TypeError> {
        let fixed = |n: usize| -> Result<&[u8], TypeError> {
            if bytes.len() == n {
                Ok(bytes)
            } else {
                Err(invalid(
                    ty,
                    format!("expected {n} bytes, got {}", bytes.len()),
                ))
            }
        };
        Ok(match ty {
            CqlType::Frozen(inner) => return CqlValue::deserialize(inner, bytes),
            CqlType::Ascii => {
                if let Some(pos) = bytes.iter().position(|b| !b.is_ascii()) {
                    return Err(invalid(
                        ty,
                        format!("non-ASCII byte 0x{:02x} at offset {pos}", bytes[pos]),
                    ));
                }
                CqlValue::Ascii(
                    String::from_utf8(bytes.to_vec()).map_err(|e| invalid(ty, e.to_string()))?,
                )
            }
            CqlType::Text => CqlValue::Text(
                std::str::from_utf8(bytes)
                    .map_err(|e| invalid(ty, format!("invalid UTF-8: {e}")))?
                    .to_string(),
            ),
            CqlType::Boolean => CqlValue::Boolean(fixed(1)?[0] != 0),
            CqlType::TinyInt => CqlValue::TinyInt(i8::from_be_bytes(arr(fixed(1)?))),
            CqlType::SmallInt => CqlValue::SmallInt(i16::from_be_bytes(arr(fixed(2)?))),
            CqlType::Int => CqlValue::Int(i32::from_be_bytes(arr(fixed(4)?))),
            CqlType::BigInt => CqlValue::BigInt(i64::from_be_bytes(arr(fixed(8)?))),
            CqlType::Counter => CqlValue::Counter(i64::from_be_bytes(arr(fixed(8)?))),
            CqlType::Timestamp => CqlValue::Timestamp(i64::from_be_bytes(arr(fixed(8)?))),
            CqlType::Time => {
                let v = i64::from_be_bytes(arr(fixed(8)?));
                if !(0..NANOS_PER_DAY).contains(&v) {
                    return Err(invalid(
                        ty,
                        format!("{v} nanoseconds is outside 0..{NANOS_PER_DAY}"),
                    ));
                }
                CqlValue::Time(v)
            }
            CqlType::Date => CqlValue::Date(u32::from_be_bytes(arr(fixed(4)?))),
            CqlType::Float => CqlValue::Float(f32::from_bits(u32::from_be_bytes(arr(fixed(4)?)))),
            CqlType::Double => CqlValue::Double(f64::from_bits(u64::from_be_bytes(arr(fixed(8)?)))),
            CqlType::Varint => {
                if bytes.is_empty() {
                    return Err(invalid(ty, "empty varint"));
                }
                CqlValue::Varint(varint_minimal(bytes))
            }
            CqlType::Decimal => {
                if bytes.len() < 5 {
                    return Err(invalid(
                        ty,
                        format!("expected at least 5 bytes, got {}", bytes.len()),
                    ));
                }
                CqlValue::Decimal {
                    scale: i32::from_be_bytes(arr(&bytes[..4])),
                    unscaled: varint_minimal(&bytes[4..]),
                }
            }
            CqlType::Uuid => CqlValue::Uuid(arr(fixed(16)?)),
            CqlType::Timeuuid => {
                let b: [u8; 16] = arr(fixed(16)?);
                if b[6] >> 4 != 1 {
                    return Err(invalid(
                        ty,
                        format!("version {} UUID where version 1 is required", b[6] >> 4),
                    ));
                }
                CqlValue::Timeuuid(b)
            }
            CqlType::Blob | CqlType::Custom(_) => CqlValue::Blob(bytes.to_vec()),
            CqlType::Inet => match bytes.len() {
                4 => CqlValue::Inet(IpAddr::V4(Ipv4Addr::from(arr::<4>(bytes)))),
                16 => CqlValue::Inet(IpAddr::V6(Ipv6Addr::from(arr::<16>(bytes)))),
                n => return Err(invalid(ty, format!("expected 4 or 16 bytes, got {n}"))),
            },
            CqlType::Duration => {
                let mut pos = 0;
                let months =
                    read_signed_vint(bytes, &mut pos).ok_or_else(|| invalid(ty, "truncated"))?;
                let days =
                    read_signed_vint(bytes, &mut pos).ok_or_else(|| invalid(ty, "truncated"))?;
                let nanos =
                    read_signed_vint(bytes, &mut pos).ok_or_else(|| invalid(ty, "truncated"))?;
                if pos != bytes.len() {
                    return Err(invalid(ty, format!("{} trailing bytes", bytes.len() - pos)));
                }
                let months =
                    i32::try_from(months).map_err(|_| invalid(ty, "months overflow an int"))?;
                let days = i32::try_from(days).map_err(|_| invalid(ty, "days overflow an int"))?;
                let signs = [
                    i64::from(months).signum(),
                    i64::from(days).signum(),
                    nanos.signum(),
                ];
                if signs.contains(&1) && signs.contains(&-1) {
                    return Err(invalid(
                        ty,
                        "months, days and nanoseconds have different signs",
                    ));
                }
                CqlValue::Duration {
                    months,
                    days,
                    nanos,
                }
            }
            CqlType::List(elem) | CqlType::Set(elem) => {
                let mut r = ElemReader::new(ty, bytes);
                let n = r.count()?;
                let mut items = Vec::with_capacity(n.min(bytes.len() / 4));
                for _ in 0..n {
                    items.push(CqlValue::deserialize(elem, r.element()?)?);
                }
                r.finish()?;
                if matches!(ty, CqlType::List(_)) {
                    CqlValue::List(items)
                } else {
                    CqlValue::Set(items)
                }
            }
            CqlType::Map(kt, vt) => {
                let mut r = ElemReader::new(ty, bytes);
                let n = r.count()?;
                let mut entries = Vec::with_capacity(n.min(bytes.len() / 8));
                for _ in 0..n {
                    let k = CqlValue::deserialize(kt, r.element()?)?;
                    let v = CqlValue::deserialize(vt, r.element()?)?;
                    entries.push((k, v));
                }
                r.finish()?;
                CqlValue::Map(entries)
            }
            CqlType::Tuple(types) => {
                let mut r = ElemReader::new(ty, bytes);
                let mut items = Vec::with_capacity(types.len());
                for t in types {
                    if r.at_end() {
                        items.push(None);
                        continue;
                    }
                    items.push(match r.nullable_element()? {
                        Some(b) => Some(CqlValue::deserialize(t, b)?),
                        None => None,
                    });
                }
                r.finish()?;
                CqlValue::Tuple(items)
            }
        })
    }
}

const NANOS_PER_DAY: i64 = 86_400_000_000_000;
const MILLIS_PER_DAY: i64 = 86_400_000;
/// `Date` value of 1970-01-01.
const DATE_EPOCH: i64 = 1 << 31;

fn arr<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[..N]);
    a
}

fn len_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn write_element(v: &CqlValue, out: &mut Vec<u8>) {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    v.serialize_into(out);
    let n = len_i32(out.len() - at - 4);
    out[at..at + 4].copy_from_slice(&n.to_be_bytes());
}

/// Reads the `[int]`-counted, `[bytes]`-element layout of collections and tuples.
struct ElemReader<'a> {
    ty: &'a CqlType,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> ElemReader<'a> {
    fn new(ty: &'a CqlType, bytes: &'a [u8]) -> Self {
        ElemReader { ty, bytes, pos: 0 }
    }

    fn at_end(&self) -> bool {
        self.pos == self.bytes.len()
    }

    fn int(&mut self) -> Result<i32, TypeError> {
        let rest = &self.bytes[self.pos..];
        if rest.len() < 4 {
            return Err(invalid(self.ty, "truncated"));
        }
        self.pos += 4;
        Ok(i32::from_be_bytes(arr(rest)))
    }

    fn count(&mut self) -> Result<usize, TypeError> {
        let n = self.int()?;
        usize::try_from(n).map_err(|_| invalid(self.ty, format!("negative element count {n}")))
    }

    fn nullable_element(&mut self) -> Result<Option<&'a [u8]>, TypeError> {
        let n = self.int()?;
        if n < 0 {
            return Ok(None);
        }
        let n = n as usize;
        if self.bytes.len() - self.pos < n {
            return Err(invalid(self.ty, "truncated element"));
        }
        let b = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(Some(b))
    }

    fn element(&mut self) -> Result<&'a [u8], TypeError> {
        self.nullable_element()?
            .ok_or_else(|| invalid(self.ty, "null element in a collection"))
    }

    fn finish(&self) -> Result<(), TypeError> {
        if self.at_end() {
            Ok(())
        } else {
            Err(invalid(
                self.ty,
                format!("{} trailing bytes", self.bytes.len() - self.pos),
            ))
        }
    }
}

/// Cassandra's unsigned vint: the count of leading 1-bits of the first byte is the number of
/// extra bytes; the value is big-endian in the remaining bits.
fn write_unsigned_vint(v: u64, out: &mut Vec<u8>) {
    let magnitude = (v | 1).leading_zeros() as usize; // 0..=63
    let size = (639 - magnitude * 9) >> 6; // 1..=9
    if size == 1 {
        out.push(v as u8);
        return;
    }
    let extra = size - 1;
    let be = v.to_be_bytes();
    if size == 9 {
        out.push(0xFF);
        out.extend_from_slice(&be);
    } else {
        let first = be[8 - size] | !(0xFFu8 >> extra);
        out.push(first);
        out.extend_from_slice(&be[9 - size..]);
    }
}

fn read_unsigned_vint(b: &[u8], pos: &mut usize) -> Option<u64> {
    let first = *b.get(*pos)?;
    *pos += 1;
    let extra = first.leading_ones() as usize;
    if extra == 0 {
        return Some(u64::from(first));
    }
    if b.len() - *pos < extra {
        return None;
    }
    let mut v = u64::from(first) & (0xFFu64 >> extra);
    for &byte in &b[*pos..*pos + extra] {
        v = (v << 8) | u64::from(byte);
    }
    *pos += extra;
    Some(v)
}

fn write_signed_vint(v: i64, out: &mut Vec<u8>) {
    write_unsigned_vint(((v << 1) ^ (v >> 63)) as u64, out);
}

fn read_signed_vint(b: &[u8], pos: &mut usize) -> Option<i64> {
    let u = read_unsigned_vint(b, pos)?;
    Some((u >> 1) as i64 ^ -((u & 1) as i64))
}

// ---------------------------------------------------------------------------------------------
// Arbitrary-precision integers (varint) by hand: two's complement bytes <-> decimal text.
// ---------------------------------------------------------------------------------------------

/// The minimal two's-complement form of `b` (non-empty): redundant leading 0x00/0xFF dropped.
fn varint_minimal(b: &[u8]) -> Vec<u8> {
    let mut start = 0;
    while start + 1 < b.len() {
        let (x, next) = (b[start], b[start + 1]);
        if (x == 0x00 && next & 0x80 == 0) || (x == 0xFF && next & 0x80 != 0) {
            start += 1;
        } else {
            break;
        }
    }
    b[start..].to_vec()
}

/// Varint bytes (minimal two's complement) of an `i128`.
pub fn varint_from_i128(v: i128) -> Vec<u8> {
    varint_minimal(&v.to_be_bytes())
}

/// The value of varint bytes if it fits an `i128` (empty bytes → `None`).
pub fn varint_to_i128(b: &[u8]) -> Option<i128> {
    let b = varint_minimal_slice(b)?;
    if b.len() > 16 {
        return None;
    }
    let fill = if b[0] & 0x80 != 0 { 0xFF } else { 0x00 };
    let mut a = [fill; 16];
    a[16 - b.len()..].copy_from_slice(b);
    Some(i128::from_be_bytes(a))
}

fn varint_minimal_slice(b: &[u8]) -> Option<&[u8]> {
    if b.is_empty() {
        return None;
    }
    let mut start = 0;
    while start + 1 < b.len()
        && ((b[start] == 0 && b[start + 1] & 0x80 == 0)
            || (b[start] == 0xFF && b[start + 1] & 0x80 != 0))
    {
        start += 1;
    }
    Some(&b[start..])
}

/// Parses decimal text (`-?[0-9]+`, any length) into minimal two's-complement varint bytes.
pub fn varint_from_decimal_str(s: &str) -> Option<Vec<u8>> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    // Little-endian base-2^32 magnitude.
    let mut limbs: Vec<u32> = vec![0];
    for chunk in digits.as_bytes().chunks(9) {
        let mut mul = 1u64;
        let mut add = 0u64;
        for &c in chunk {
            mul *= 10;
            add = add * 10 + u64::from(c - b'0');
        }
        let mut carry = add;
        for l in limbs.iter_mut() {
            let x = u64::from(*l) * mul + carry;
            *l = x as u32;
            carry = x >> 32;
        }
        if carry > 0 {
            limbs.push(carry as u32);
        }
    }
    let mut be: Vec<u8> = Vec::with_capacity(limbs.len() * 4 + 1);
    be.push(0);
    for l in limbs.iter().rev() {
        be.extend_from_slice(&l.to_be_bytes());
    }
    if neg {
        negate_twos(&mut be);
    }
    Some(varint_minimal(&be))
}

/// In-place two's complement negation of big-endian bytes.
fn negate_twos(b: &mut [u8]) {
    let mut carry = true;
    for x in b.iter_mut().rev() {
        let (v, c) = (!*x).overflowing_add(u8::from(carry));
        *x = v;
        carry = c;
    }
}

/// Sign and unsigned big-endian magnitude of varint bytes.
fn varint_magnitude(b: &[u8]) -> (bool, Vec<u8>) {
    if b.first().is_some_and(|x| x & 0x80 != 0) {
        let mut m = Vec::with_capacity(b.len() + 1);
        m.push(0xFF);
        m.extend_from_slice(b);
        negate_twos(&mut m);
        (true, m)
    } else {
        (false, b.to_vec())
    }
}

/// Decimal digits of an unsigned big-endian magnitude ("0" for zero).
fn magnitude_to_decimal(mag: &[u8]) -> String {
    // Big-endian base-2^32 limbs, most significant first.
    let mut limbs: Vec<u32> = Vec::with_capacity(mag.len() / 4 + 1);
    let pad = (4 - mag.len() % 4) % 4;
    let mut padded = vec![0u8; pad];
    padded.extend_from_slice(mag);
    for c in padded.chunks(4) {
        limbs.push(u32::from_be_bytes(arr(c)));
    }
    let first_nonzero = limbs.iter().position(|&l| l != 0).unwrap_or(limbs.len());
    limbs.drain(..first_nonzero);
    let mut chunks: Vec<u32> = Vec::new(); // base 10^9, least significant first
    while !limbs.is_empty() {
        let mut rem = 0u64;
        for l in limbs.iter_mut() {
            let x = (rem << 32) | u64::from(*l);
            *l = (x / 1_000_000_000) as u32;
            rem = x % 1_000_000_000;
        }
        chunks.push(rem as u32);
        let first_nonzero = limbs.iter().position(|&l| l != 0).unwrap_or(limbs.len());
        limbs.drain(..first_nonzero);
    }
    let Some(last) = chunks.pop() else {
        return "0".to_string();
    };
    let mut s = last.to_string();
    for c in chunks.iter().rev() {
        s.push_str(&format!("{c:09}"));
    }
    s
}

/// Decimal text of varint bytes (`-123`, `0`).
pub fn varint_to_decimal_string(b: &[u8]) -> String {
    let (neg, mag) = varint_magnitude(b);
    let digits = magnitude_to_decimal(&mag);
    if neg {
        format!("-{digits}")
    } else {
        digits
    }
}

fn varint_cmp(a: &[u8], b: &[u8]) -> Ordering {
    let a = varint_minimal_slice(a).unwrap_or(&[0]);
    let b = varint_minimal_slice(b).unwrap_or(&[0]);
    let na = a[0] & 0x80 != 0;
    let nb = b[0] & 0x80 != 0;
    match (na, nb) {
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => a.len().cmp(&b.len()).then_with(|| a.cmp(b)),
        (true, true) => b.len().cmp(&a.len()).then_with(|| a.cmp(b)),
    }
}

/// Most trailing zeros `NormalDecimal::to_scaled` restores to fit a scale into an `i32`.
const MAX_RESTORED_ZEROS: i64 = 1 << 20;

/// A decimal as sign, exponent and digits: `sign * 0.d1d2d3... * 10^exp`, no leading or
/// trailing zero digits (zero has no digits and exponent 0). Equal numbers have equal forms.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NormalDecimal {
    sign: i8,
    exp: i64,
    digits: Vec<u8>,
}

impl NormalDecimal {
    fn new(scale: i32, unscaled: &[u8]) -> NormalDecimal {
        let (neg, mag) = varint_magnitude(unscaled);
        let text = magnitude_to_decimal(&mag);
        let mut digits: Vec<u8> = text.bytes().map(|c| c - b'0').collect();
        if digits == [0] {
            return NormalDecimal {
                sign: 0,
                exp: 0,
                digits: Vec::new(),
            };
        }
        let exp = digits.len() as i64 - i64::from(scale);
        while digits.last() == Some(&0) {
            digits.pop();
        }
        NormalDecimal {
            sign: if neg { -1 } else { 1 },
            exp,
            digits,
        }
    }

    /// Back to `(scale, unscaled)`: trailing fractional zeros are gone; an integer is written out
    /// in full (scale 0) when that takes at most 100 digits.
    fn to_scaled(&self) -> Option<(i32, Vec<u8>)> {
        if self.sign == 0 {
            return Some((0, vec![0]));
        }
        let mut text: String = self.digits.iter().map(|d| char::from(b'0' + d)).collect();
        let mut scale = (self.digits.len() as i64).checked_sub(self.exp)?;
        if scale < 0 && self.exp <= 100 {
            text.extend(std::iter::repeat_n('0', (-scale) as usize));
            scale = 0;
        }
        if scale < i64::from(i32::MIN) {
            // Only reachable when trailing zeros were stripped from a value whose scale was
            // near i32::MIN: put back as many as the scale needs (never more than the digits a
            // real value had; a hostile exponent is refused by the bound).
            let zeros = i64::from(i32::MIN) - scale;
            if zeros > MAX_RESTORED_ZEROS {
                return None;
            }
            text.extend(std::iter::repeat_n('0', zeros as usize));
            scale = i64::from(i32::MIN);
        }
        let scale = i32::try_from(scale).ok()?;
        if self.sign < 0 {
            text.insert(0, '-');
        }
        Some((scale, varint_from_decimal_str(&text)?))
    }

    fn cmp(&self, other: &NormalDecimal) -> Ordering {
        self.sign.cmp(&other.sign).then_with(|| {
            let mag = self
                .exp
                .cmp(&other.exp)
                .then_with(|| self.digits.cmp(&other.digits));
            if self.sign < 0 {
                mag.reverse()
            } else {
                mag
            }
        })
    }
}

/// Decimal text of a decimal, as Python's `str(Decimal)` writes it (which is what cqlsh shows):
/// plain notation when the exponent is not positive and the number is not tiny, otherwise
/// scientific (`1E+2`, `1.5E-7`).
fn decimal_to_string(scale: i32, unscaled: &[u8]) -> String {
    let (neg, mag) = varint_magnitude(unscaled);
    let digits = magnitude_to_decimal(&mag);
    let exp = -i64::from(scale);
    let n = digits.len() as i64;
    let left = exp + n;
    let mut s = String::new();
    if neg {
        s.push('-');
    }
    let dot = if exp <= 0 && left > -6 { left } else { 1 };
    if dot <= 0 {
        s.push_str("0.");
        s.extend(std::iter::repeat_n('0', (-dot) as usize));
        s.push_str(&digits);
    } else if dot >= n {
        s.push_str(&digits);
        s.extend(std::iter::repeat_n('0', (dot - n) as usize));
    } else {
        s.push_str(&digits[..dot as usize]);
        s.push('.');
        s.push_str(&digits[dot as usize..]);
    }
    if left != dot {
        s.push_str(&format!("E{:+}", left - dot));
    }
    s
}

/// A decimal as a CQL literal that `from_literal` reads back with the same unscaled value and
/// scale (`1.50`, `0.005`, `15E+1`).
fn decimal_to_literal(scale: i32, unscaled: &[u8]) -> String {
    let (neg, mag) = varint_magnitude(unscaled);
    let digits = magnitude_to_decimal(&mag);
    let sign = if neg { "-" } else { "" };
    if scale < 0 {
        return format!("{sign}{digits}E+{}", -i64::from(scale));
    }
    let scale = scale as usize;
    if scale == 0 {
        return format!("{sign}{digits}");
    }
    if digits.len() > scale {
        let (i, f) = digits.split_at(digits.len() - scale);
        format!("{sign}{i}.{f}")
    } else if scale - digits.len() <= 64 {
        format!("{sign}0.{}{digits}", "0".repeat(scale - digits.len()))
    } else {
        format!("{sign}{digits}E-{scale}")
    }
}

/// Parses a number in Java `BigDecimal` text form (`-1.50`, `15e+1`, `2E-3`) to `(scale,
/// unscaled)`: the scale is the count of fraction digits minus the exponent.
fn decimal_from_str(s: &str) -> Option<(i32, Vec<u8>)> {
    let (mantissa, exp) = match s.find(['e', 'E']) {
        Some(i) => {
            let e = &s[i + 1..];
            let e = e.strip_prefix('+').unwrap_or(e);
            (&s[..i], e.parse::<i64>().ok()?)
        }
        None => (s, 0),
    };
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa.strip_prefix('+').unwrap_or(mantissa)),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.bytes().chain(frac.bytes()).all(|c| c.is_ascii_digit()) {
        return None;
    }
    let scale = i32::try_from(frac.len() as i64 - exp).ok()?;
    let unscaled = varint_from_decimal_str(&format!("{sign}{int}{frac}"))?;
    Some((scale, unscaled))
}

// ---------------------------------------------------------------------------------------------
// Calendar arithmetic (proleptic Gregorian, as Cassandra and Python use)
// ---------------------------------------------------------------------------------------------

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// `2024-01-02 03:04:05.678000+0000`, or the milliseconds when the year is outside 1..=9999
/// (what cqlsh prints for dates Python cannot represent).
fn render_timestamp(ms: i64) -> String {
    let days = ms.div_euclid(MILLIS_PER_DAY);
    let in_day = ms.rem_euclid(MILLIS_PER_DAY);
    let (y, mo, d) = civil_from_days(days);
    if !(1..=9999).contains(&y) {
        return ms.to_string();
    }
    let (h, mi, s, milli) = (
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000,
    );
    format!(
        "{y}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{:06}+0000",
        milli * 1000
    )
}

/// `2024-01-02`, or the signed days since the epoch outside years 1..=9999.
fn render_date(d: u32) -> String {
    let days = i64::from(d) - DATE_EPOCH;
    let (y, m, day) = civil_from_days(days);
    if (1..=9999).contains(&y) {
        format!("{y:04}-{m:02}-{day:02}")
    } else {
        days.to_string()
    }
}

fn render_time(nanos: i64) -> String {
    let n = nanos.rem_euclid(NANOS_PER_DAY);
    format!(
        "{:02}:{:02}:{:02}.{:09}",
        n / 3_600_000_000_000,
        n / 60_000_000_000 % 60,
        n / 1_000_000_000 % 60,
        n % 1_000_000_000
    )
}

/// cqlsh's duration text: `1y2mo3d4h5m6s7ms8us9ns`, with a leading `-` if any part is negative.
fn render_duration(months: i32, days: i32, nanos: i64) -> String {
    let mut s = String::new();
    if months < 0 || days < 0 || nanos < 0 {
        s.push('-');
    }
    fn part(s: &mut String, v: u64, div: u64, unit: &str) -> u64 {
        if v == 0 || v < div {
            return v;
        }
        s.push_str(&(v / div).to_string());
        s.push_str(unit);
        v % div
    }
    let m = part(&mut s, u64::from(months.unsigned_abs()), 12, "y");
    part(&mut s, m, 1, "mo");
    part(&mut s, u64::from(days.unsigned_abs()), 1, "d");
    if nanos != 0 {
        let mut r = nanos.unsigned_abs();
        for (div, unit) in [
            (3_600_000_000_000, "h"),
            (60_000_000_000, "m"),
            (1_000_000_000, "s"),
            (1_000_000, "ms"),
            (1_000, "us"),
            (1, "ns"),
        ] {
            r = part(&mut s, r, div, unit);
        }
    }
    s
}

// ---------------------------------------------------------------------------------------------
// Text rendering (cqlsh) and CQL literals
// ---------------------------------------------------------------------------------------------

/// C's `%.<p>g`.
fn format_g(v: f64, p: usize) -> String {
    let p = p.max(1);
    let sci = format!("{:.*e}", p - 1, v);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i64 = exp.parse().unwrap_or(0);
    fn trim(s: &str) -> &str {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.')
        } else {
            s
        }
    }
    if exp < -4 || exp >= p as i64 {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim(mantissa), exp.abs())
    } else {
        let fixed = format!("{:.*}", (p as i64 - 1 - exp) as usize, v);
        trim(&fixed).to_string()
    }
}

/// cqlsh's float formatting with its default precision of 5 significant digits (more for
/// numbers between 1e-4 and 1e5, whose integer digits are all kept).
fn render_float(v: f64) -> String {
    const PRECISION: i64 = 5;
    if v.is_nan() {
        return "NaN".to_string();
    }
    if v.is_infinite() {
        return if v > 0.0 { "Infinity" } else { "-Infinity" }.to_string();
    }
    let exponent = if v.abs() > f64::EPSILON {
        v.abs().log10().trunc() as i64
    } else {
        i64::MIN
    };
    let precision = if (-4..PRECISION).contains(&exponent) {
        PRECISION + exponent + 1
    } else {
        PRECISION
    };
    format_g(v, precision as usize)
}

/// cqlsh's text escaping: backslashes doubled, control characters shown as Python escapes, and
/// inside collections quotes doubled and the whole string quoted.
fn render_text(s: &str, quote: bool) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    if quote {
        out.push('\'');
    }
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' if quote => out.push_str("''"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{a0}' => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    if quote {
        out.push('\'');
    }
    out
}

fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(2 + b.len() * 2);
    s.push_str("0x");
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    s
}

fn uuid_text(b: &[u8; 16]) -> String {
    uuid::Uuid::from_bytes(*b).hyphenated().to_string()
}

fn quote_cql(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

impl CqlValue {
    /// The value as cqlsh prints it in a result table.
    ///
    /// Top-level text is shown as is (backslashes doubled, control characters escaped); inside
    /// collections, tuples and maps text, timestamps and inets are quoted (`'a'`). Timestamps are
    /// `2024-01-02 03:04:05.678000+0000`, dates `2024-01-02`, times `03:04:05.000000000`, uuids
    /// lower-case, blobs `0xcafe`, booleans `True`/`False`, floats and doubles with cqlsh's default
    /// precision (`1.5`, `1e+20`, `NaN`, `Infinity`), varints and decimals exactly (decimals as
    /// Python prints them: `1.50`, `1E+2`), lists `[1, 2]`, sets `{1, 2}`, maps `{'a': 1}`, tuples
    /// `(1, 'a')` with `null` for a null component, durations `1h30m`.
    pub fn render(&self) -> String {
        self.render_inner(false)
    }

    fn render_inner(&self, quote: bool) -> String {
        match self {
            CqlValue::Ascii(s) | CqlValue::Text(s) => render_text(s, quote),
            CqlValue::Boolean(b) => if *b { "True" } else { "False" }.to_string(),
            CqlValue::TinyInt(v) => v.to_string(),
            CqlValue::SmallInt(v) => v.to_string(),
            CqlValue::Int(v) => v.to_string(),
            CqlValue::BigInt(v) | CqlValue::Counter(v) => v.to_string(),
            CqlValue::Varint(b) => varint_to_decimal_string(b),
            CqlValue::Float(v) => render_float(f64::from(*v)),
            CqlValue::Double(v) => render_float(*v),
            CqlValue::Decimal { scale, unscaled } => decimal_to_string(*scale, unscaled),
            CqlValue::Uuid(b) | CqlValue::Timeuuid(b) => uuid_text(b),
            CqlValue::Timestamp(ms) => {
                let s = render_timestamp(*ms);
                if quote {
                    format!("'{s}'")
                } else {
                    s
                }
            }
            CqlValue::Date(d) => render_date(*d),
            CqlValue::Time(n) => render_time(*n),
            CqlValue::Blob(b) => hex(b),
            CqlValue::Inet(a) => {
                if quote {
                    format!("'{a}'")
                } else {
                    a.to_string()
                }
            }
            CqlValue::Duration {
                months,
                days,
                nanos,
            } => render_duration(*months, *days, *nanos),
            CqlValue::List(items) => render_seq("[", "]", items.iter().map(Some)),
            CqlValue::Set(items) => render_seq("{", "}", items.iter().map(Some)),
            CqlValue::Tuple(items) => render_seq("(", ")", items.iter().map(Option::as_ref)),
            CqlValue::Map(entries) => {
                let parts: Vec<String> = entries
                    .iter()
                    .map(|(k, v)| format!("{}: {}", k.render_inner(true), v.render_inner(true)))
                    .collect();
                format!("{{{}}}", parts.join(", "))
            }
        }
    }

    /// The value as CQL literal text that parses back to an equal value for its column type:
    /// strings quoted with `''` escaping, blobs `0x...`, timestamps as integer milliseconds,
    /// dates `'2024-01-02'`, times `'03:04:05.000000000'`, inets quoted, uuids bare, floats in
    /// shortest round-trip form (`1.5`, `1e20`, `NaN`, `-Infinity`), decimals keeping their scale
    /// (`1.50`, `15E+1`), durations `1h30m`, collections `[..]`, `{..}`, `{k: v}`, tuples `(.., null)`.
    pub fn to_cql_literal(&self) -> String {
        match self {
            CqlValue::Ascii(s) | CqlValue::Text(s) => quote_cql(s),
            CqlValue::Boolean(b) => b.to_string(),
            CqlValue::TinyInt(v) => v.to_string(),
            CqlValue::SmallInt(v) => v.to_string(),
            CqlValue::Int(v) => v.to_string(),
            CqlValue::BigInt(v) | CqlValue::Counter(v) | CqlValue::Timestamp(v) => v.to_string(),
            CqlValue::Varint(b) => varint_to_decimal_string(b),
            CqlValue::Float(v) => float_literal(f64::from(*v), format!("{v:?}")),
            CqlValue::Double(v) => float_literal(*v, format!("{v:?}")),
            CqlValue::Decimal { scale, unscaled } => decimal_to_literal(*scale, unscaled),
            CqlValue::Uuid(b) | CqlValue::Timeuuid(b) => uuid_text(b),
            CqlValue::Date(d) => {
                let days = i64::from(*d) - DATE_EPOCH;
                let (y, _, _) = civil_from_days(days);
                if (0..=9999).contains(&y) {
                    format!("'{}'", render_date_plain(days))
                } else {
                    format!("'{d}'")
                }
            }
            CqlValue::Time(n) => format!("'{}'", render_time(*n)),
            CqlValue::Blob(b) => hex(b),
            CqlValue::Inet(a) => format!("'{a}'"),
            CqlValue::Duration {
                months,
                days,
                nanos,
            } => {
                let s = render_duration(*months, *days, *nanos);
                if s.is_empty() {
                    "0s".to_string()
                } else {
                    s
                }
            }
            CqlValue::List(items) => literal_seq("[", "]", items.iter().map(Some)),
            CqlValue::Set(items) => literal_seq("{", "}", items.iter().map(Some)),
            CqlValue::Tuple(items) => literal_seq("(", ")", items.iter().map(Option::as_ref)),
            CqlValue::Map(entries) => {
                let parts: Vec<String> = entries
                    .iter()
                    .map(|(k, v)| format!("{}: {}", k.to_cql_literal(), v.to_cql_literal()))
                    .collect();
                format!("{{{}}}", parts.join(", "))
            }
        }
    }
}

fn render_date_plain(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

fn float_literal(v: f64, shortest: String) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v.is_infinite() {
        if v > 0.0 { "Infinity" } else { "-Infinity" }.to_string()
    } else {
        shortest
    }
}

fn render_seq<'a>(
    open: &str,
    close: &str,
    items: impl Iterator<Item = Option<&'a CqlValue>>,
) -> String {
    let parts: Vec<String> = items
        .map(|v| v.map_or_else(|| "null".to_string(), |v| v.render_inner(true)))
        .collect();
    format!("{open}{}{close}", parts.join(", "))
}

fn literal_seq<'a>(
    open: &str,
    close: &str,
    items: impl Iterator<Item = Option<&'a CqlValue>>,
) -> String {
    let parts: Vec<String> = items
        .map(|v| v.map_or_else(|| "null".to_string(), CqlValue::to_cql_literal))
        .collect();
    format!("{open}{}{close}", parts.join(", "))
}

// ---------------------------------------------------------------------------------------------
// Literals from statements
// ---------------------------------------------------------------------------------------------

/// The literal as the user wrote it, for error messages.
fn literal_text(lit: &Literal) -> String {
    match lit {
        Literal::Null => "null".to_string(),
        Literal::String(s) => quote_cql(s),
        Literal::Integer(s) | Literal::Float(s) | Literal::Uuid(s) | Literal::Duration(s) => {
            s.clone()
        }
        Literal::Boolean(b) => b.to_string(),
        Literal::Blob(b) => hex(b),
    }
}

/// What a type accepts, for error messages.
fn expected_for(ty: &CqlType) -> &'static str {
    match ty {
        CqlType::TinyInt | CqlType::SmallInt | CqlType::Int | CqlType::BigInt => "an integer",
        CqlType::Counter | CqlType::Varint => "an integer",
        CqlType::Float | CqlType::Double | CqlType::Decimal => "a number",
        CqlType::Text => "a string",
        CqlType::Ascii => "an ASCII string",
        CqlType::Boolean => "true or false",
        CqlType::Uuid => "a uuid",
        CqlType::Timeuuid => "a version 1 uuid",
        CqlType::Timestamp => {
            "an integer (milliseconds since the epoch) or a date-time string such as '2024-01-02 03:04:05+0000'"
        }
        CqlType::Date => "a date string such as '2024-01-02'",
        CqlType::Time => "a time string such as '03:04:05.123456789'",
        CqlType::Inet => "an IP address string such as '127.0.0.1' or '::1'",
        CqlType::Blob => "a blob constant such as 0xcafe",
        CqlType::Duration => "a duration such as 1h30m or P1DT2H",
        CqlType::List(_) | CqlType::Set(_) | CqlType::Map(_, _) | CqlType::Tuple(_) => {
            "a collection or tuple literal, not a single constant"
        }
        CqlType::Frozen(t) => expected_for(t),
        CqlType::Custom(_) => "a value of a known type (custom types take no literals)",
    }
}

fn bad_literal(ty: &CqlType, lit: &Literal) -> TypeError {
    TypeError::InvalidLiteral {
        literal: literal_text(lit),
        ty: ty.to_string(),
        expected: expected_for(ty.strip_frozen()).to_string(),
    }
}

fn out_of_range(ty: &CqlType, lit: &Literal, min: impl ToString, max: impl ToString) -> TypeError {
    TypeError::OutOfRange {
        literal: literal_text(lit),
        ty: ty.to_string(),
        min: min.to_string(),
        max: max.to_string(),
    }
}

/// Parses an integer literal into `[min, max]` with a range error that names the type.
fn int_in_range(
    ty: &CqlType,
    lit: &Literal,
    text: &str,
    min: i64,
    max: i64,
) -> Result<i64, TypeError> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return Err(bad_literal(ty, lit));
    }
    match text.parse::<i64>() {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(out_of_range(ty, lit, min, max)),
    }
}

/// Parses `YYYY-MM-DD` (year: optional sign, at least one digit) into days since the epoch.
fn parse_date_days(s: &str) -> Option<i64> {
    let (neg, rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let mut parts = rest.splitn(3, '-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if y.is_empty() || y.len() > 9 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    if !(y.bytes().chain(m.bytes()).chain(d.bytes())).all(|c| c.is_ascii_digit()) {
        return None;
    }
    let y: i64 = y.parse().ok()?;
    let y = if neg { -y } else { y };
    let m: u32 = m.parse().ok()?;
    let d: u32 = d.parse().ok()?;
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return None;
    }
    Some(days_from_civil(y, m, d))
}

/// Parses `HH:MM:SS[.fffffffff]` into nanoseconds since midnight.
fn parse_time_nanos(s: &str) -> Option<i64> {
    let (hms, frac) = match s.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    };
    let mut it = hms.split(':');
    let (h, m, sec) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() {
        return None;
    }
    let num = |t: &str, max: i64| -> Option<i64> {
        if t.is_empty() || t.len() > 2 || !t.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let v: i64 = t.parse().ok()?;
        (v <= max).then_some(v)
    };
    let (h, m, sec) = (num(h, 23)?, num(m, 59)?, num(sec, 59)?);
    let mut nanos = ((h * 60 + m) * 60 + sec) * 1_000_000_000;
    if let Some(f) = frac {
        if f.is_empty() || f.len() > 9 || !f.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let v: i64 = f.parse().ok()?;
        nanos += v * 10i64.pow(9 - f.len() as u32);
    }
    Some(nanos)
}

/// Parses a zone suffix: `Z`, `+HHMM`, `+HH:MM`, `+HH` (or `-`), into seconds east of UTC.
fn parse_zone(z: &str) -> Option<i64> {
    if z == "Z" || z == "z" {
        return Some(0);
    }
    let sign = match z.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let body = z[1..].replace(':', "");
    if !body.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let (h, m) = match body.len() {
        2 => (body.parse::<i64>().ok()?, 0),
        4 => (
            body[..2].parse::<i64>().ok()?,
            body[2..].parse::<i64>().ok()?,
        ),
        _ => return None,
    };
    if h > 23 || m > 59 {
        return None;
    }
    Some(sign * (h * 3600 + m * 60))
}

/// Parses the ISO-8601 forms Cassandra accepts for timestamps — `2024-01-02`,
/// `2024-01-02 03:04`, `2024-01-02 03:04:05`, `2024-01-02T03:04:05.123`, each optionally
/// followed by `Z`, `+0000`, `+01:00` or `-05` — into milliseconds since the epoch. Without a
/// zone the time is UTC. Fractions beyond milliseconds are truncated.
fn parse_timestamp_ms(s: &str) -> Option<i64> {
    let s = s.trim();
    // Split off the zone: a trailing Z, or a +/- after the time part (not the date's dashes).
    let date_end = s.find([' ', 'T', 't']).unwrap_or(s.len());
    let (main, zone) = {
        let tail = &s[date_end..];
        if let Some(i) = tail.rfind(['+', '-', 'Z', 'z']) {
            (&s[..date_end + i], Some(&tail[i..]))
        } else if date_end == s.len() {
            // Date only: a zone may follow the day directly (`2024-01-02+0000`, `2024-01-02Z`).
            match split_date_zone(s) {
                Some((d, z)) => (d, Some(z)),
                None => (s, None),
            }
        } else {
            (s, None)
        }
    };
    let offset = match zone {
        Some(z) => parse_zone(z.trim())?,
        None => 0,
    };
    let (date, time) = match main.find([' ', 'T', 't']) {
        Some(i) => (&main[..i], Some(main[i + 1..].trim())),
        None => (main, None),
    };
    let days = parse_date_days(date)?;
    let mut ms = days.checked_mul(MILLIS_PER_DAY)?;
    if let Some(t) = time {
        let t = if t.matches(':').count() == 1 && !t.contains('.') {
            format!("{t}:00")
        } else {
            t.to_string()
        };
        let nanos = parse_time_nanos(&t)?;
        ms = ms.checked_add(nanos / 1_000_000)?;
    }
    ms.checked_sub(offset * 1000)
}

/// `2024-01-02+0000` → (`2024-01-02`, `+0000`).
fn split_date_zone(s: &str) -> Option<(&str, &str)> {
    // The date is `[sign]Y+-MM-DD`: find the day's two digits after the second date dash.
    let start = usize::from(s.starts_with(['-', '+']));
    let mut dashes = s[start..].match_indices('-').map(|(i, _)| i + start);
    let _first = dashes.next()?;
    let second = dashes.next()?;
    let day_end = second + 3;
    if s.len() > day_end && s.is_char_boundary(day_end) {
        Some((&s[..day_end], &s[day_end..]))
    } else {
        None
    }
}

/// Parses a CQL duration constant: `1y2mo3w4d5h6m7s8ms9us10ns` (case-insensitive, `µs` too,
/// optional leading `-`), ISO 8601 `P1Y2M3DT4H5M6S` / `P2W`, or `P0001-02-03T04:05:06`.
fn parse_duration(s: &str) -> Option<(i32, i32, i64)> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s),
    };
    let (months, days, nanos) = if body.starts_with(['P', 'p']) {
        let (m, d, n) = parse_iso_duration(&body[1..])?;
        (i128::from(m), i128::from(d), i128::from(n))
    } else {
        parse_unit_duration(body)?
    };
    // The sign applies before narrowing: i32::MIN months and i64::MIN nanoseconds are values a
    // duration holds (and `to_cql_literal` writes), though their magnitudes do not fit.
    let sign = if neg { -1 } else { 1 };
    Some((
        i32::try_from(sign * months).ok()?,
        i32::try_from(sign * days).ok()?,
        i64::try_from(sign * nanos).ok()?,
    ))
}

fn unit_scale(unit: &str) -> Option<(u8, i64)> {
    // (0 = months, 1 = days, 2 = nanos, multiplier)
    Some(match unit {
        "y" => (0, 12),
        "mo" => (0, 1),
        "w" => (1, 7),
        "d" => (1, 1),
        "h" => (2, 3_600_000_000_000),
        "m" => (2, 60_000_000_000),
        "s" => (2, 1_000_000_000),
        "ms" => (2, 1_000_000),
        "us" | "µs" => (2, 1_000),
        "ns" => (2, 1),
        _ => return None,
    })
}

fn parse_unit_duration(s: &str) -> Option<(i128, i128, i128)> {
    let lower = s.to_lowercase();
    let mut acc = [0i128; 3];
    let mut rest = lower.as_str();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits_end == 0 {
            return None;
        }
        let n: i128 = rest[..digits_end].parse().ok()?;
        rest = &rest[digits_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (slot, mul) = unit_scale(&rest[..unit_end])?;
        rest = &rest[unit_end..];
        acc[slot as usize] = acc[slot as usize].checked_add(n.checked_mul(i128::from(mul))?)?;
    }
    Some((acc[0], acc[1], acc[2]))
}

fn parse_iso_duration(s: &str) -> Option<(i64, i64, i64)> {
    let upper = s.to_ascii_uppercase();
    // Alternative form: YYYY-MM-DDTHH:MM:SS
    if upper.len() == 19 && upper.as_bytes()[4] == b'-' && upper.as_bytes()[10] == b'T' {
        let n = |r: std::ops::Range<usize>| upper.get(r)?.parse::<i64>().ok();
        let months = n(0..4)? * 12 + n(5..7)?;
        let days = n(8..10)?;
        let nanos = (n(11..13)? * 3600 + n(14..16)? * 60 + n(17..19)?) * 1_000_000_000;
        return Some((months, days, nanos));
    }
    let (date, time) = match upper.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (upper.as_str(), None),
    };
    let mut acc = [0i64; 3];
    let mut any = false;
    let mut scan = |part: &str, units: &[(char, u8, i64)]| -> Option<()> {
        let mut rest = part;
        while !rest.is_empty() {
            let end = rest.find(|c: char| !c.is_ascii_digit())?;
            if end == 0 {
                return None;
            }
            let n: i64 = rest[..end].parse().ok()?;
            let unit = rest[end..].chars().next()?;
            let &(_, slot, mul) = units.iter().find(|(u, _, _)| *u == unit)?;
            acc[slot as usize] = acc[slot as usize].checked_add(n.checked_mul(mul)?)?;
            rest = &rest[end + unit.len_utf8()..];
            any = true;
        }
        Some(())
    };
    scan(date, &[('Y', 0, 12), ('M', 0, 1), ('W', 1, 7), ('D', 1, 1)])?;
    if let Some(t) = time {
        if t.is_empty() {
            return None;
        }
        scan(
            t,
            &[
                ('H', 2, 3_600_000_000_000),
                ('M', 2, 60_000_000_000),
                ('S', 2, 1_000_000_000),
            ],
        )?;
    }
    any.then_some((acc[0], acc[1], acc[2]))
}

fn parse_uuid_text(s: &str) -> Option<[u8; 16]> {
    let b = s.as_bytes();
    if b.len() != 36 || [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
        return None;
    }
    uuid::Uuid::parse_str(s).ok().map(|u| *u.as_bytes())
}

impl CqlValue {
    /// Converts a literal from a statement into a value of `ty`, as Cassandra accepts them.
    ///
    /// - integer literal: tinyint, smallint, int, bigint, counter (range-checked), varint (any
    ///   size), decimal, float, double, timestamp (milliseconds), date (raw unsigned days, as
    ///   Cassandra), time (nanoseconds);
    /// - float literal (including `NaN`, `Infinity`): float, double, decimal (finite only);
    /// - string literal: text, ascii (ASCII only), timestamp (`'2024-01-02'`,
    ///   `'2024-01-02 03:04:05'`, `'2024-01-02T03:04:05.123Z'`, zones `Z`/`+0000`/`+01:00`, or
    ///   digits), date (`'2024-01-02'` or raw days), time (`'03:04:05.123456789'` or digits),
    ///   inet (`'127.0.0.1'`, `'::1'`), uuid/timeuuid;
    /// - uuid literal: uuid, timeuuid (version 1 required); blob literal: blob;
    ///   boolean: boolean; duration literal: duration.
    ///
    /// `Frozen` is transparent. `Literal::Null` is the caller's business and is rejected here.
    pub fn from_literal(ty: &CqlType, lit: &Literal) -> Result<CqlValue, TypeError> {
        let bad = || bad_literal(ty, lit);
        let base = ty.strip_frozen();
        match (base, lit) {
            (_, Literal::Null) => Err(bad()),
            (CqlType::TinyInt, Literal::Integer(s)) => {
                int_in_range(ty, lit, s, i8::MIN.into(), i8::MAX.into())
                    .map(|v| CqlValue::TinyInt(v as i8))
            }
            (CqlType::SmallInt, Literal::Integer(s)) => {
                int_in_range(ty, lit, s, i16::MIN.into(), i16::MAX.into())
                    .map(|v| CqlValue::SmallInt(v as i16))
            }
            (CqlType::Int, Literal::Integer(s)) => {
                int_in_range(ty, lit, s, i32::MIN.into(), i32::MAX.into())
                    .map(|v| CqlValue::Int(v as i32))
            }
            (CqlType::BigInt, Literal::Integer(s)) => {
                int_in_range(ty, lit, s, i64::MIN, i64::MAX).map(CqlValue::BigInt)
            }
            (CqlType::Counter, Literal::Integer(s)) => {
                int_in_range(ty, lit, s, i64::MIN, i64::MAX).map(CqlValue::Counter)
            }
            (CqlType::Timestamp, Literal::Integer(s)) => {
                int_in_range(ty, lit, s, i64::MIN, i64::MAX).map(CqlValue::Timestamp)
            }
            (CqlType::Date, Literal::Integer(s)) => {
                int_in_range(ty, lit, s, 0, u32::MAX.into()).map(|v| CqlValue::Date(v as u32))
            }
            (CqlType::Time, Literal::Integer(s)) => {
                int_in_range(ty, lit, s, 0, NANOS_PER_DAY - 1).map(CqlValue::Time)
            }
            (CqlType::Varint, Literal::Integer(s)) => varint_from_decimal_str(s)
                .map(CqlValue::Varint)
                .ok_or_else(bad),
            (CqlType::Decimal, Literal::Integer(s) | Literal::Float(s)) => {
                let (scale, unscaled) = decimal_from_str(s).ok_or_else(bad)?;
                Ok(CqlValue::Decimal { scale, unscaled })
            }
            (CqlType::Float, Literal::Integer(s) | Literal::Float(s)) => {
                let wide = parse_float_text(s).ok_or_else(bad)?;
                if !wide.is_finite() {
                    if is_special_float(s) {
                        return Ok(CqlValue::Float(wide as f32));
                    }
                    return Err(out_of_range(ty, lit, f32::MIN, f32::MAX));
                }
                // Parse the text again as f32: rounding once, directly, is exact.
                match s.parse::<f32>() {
                    Ok(v) if v.is_finite() => Ok(CqlValue::Float(v)),
                    _ => Err(out_of_range(ty, lit, f32::MIN, f32::MAX)),
                }
            }
            (CqlType::Double, Literal::Integer(s) | Literal::Float(s)) => {
                let v = parse_float_text(s).ok_or_else(bad)?;
                if v.is_infinite() && !is_special_float(s) {
                    return Err(out_of_range(ty, lit, f64::MIN, f64::MAX));
                }
                Ok(CqlValue::Double(v))
            }
            (CqlType::Text, Literal::String(s)) => Ok(CqlValue::Text(s.clone())),
            (CqlType::Ascii, Literal::String(s)) => {
                if s.is_ascii() {
                    Ok(CqlValue::Ascii(s.clone()))
                } else {
                    Err(bad())
                }
            }
            (CqlType::Timestamp, Literal::String(s)) => {
                let t = s.trim();
                let digits = t.strip_prefix('-').unwrap_or(t);
                if !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit()) {
                    return t
                        .parse::<i64>()
                        .map(CqlValue::Timestamp)
                        .map_err(|_| out_of_range(ty, lit, i64::MIN, i64::MAX));
                }
                parse_timestamp_ms(t)
                    .map(CqlValue::Timestamp)
                    .ok_or_else(bad)
            }
            (CqlType::Date, Literal::String(s)) => {
                let t = s.trim();
                if !t.is_empty() && t.bytes().all(|c| c.is_ascii_digit()) {
                    return t
                        .parse::<u32>()
                        .map(CqlValue::Date)
                        .map_err(|_| out_of_range(ty, lit, 0, u32::MAX));
                }
                let days = parse_date_days(t).ok_or_else(bad)?;
                u32::try_from(days + DATE_EPOCH)
                    .map(CqlValue::Date)
                    .map_err(|_| out_of_range(ty, lit, "-5877641-06-23", "5881580-07-11"))
            }
            (CqlType::Time, Literal::String(s)) => {
                let t = s.trim();
                if !t.is_empty() && t.bytes().all(|c| c.is_ascii_digit()) {
                    return match t.parse::<i64>() {
                        Ok(v) if (0..NANOS_PER_DAY).contains(&v) => Ok(CqlValue::Time(v)),
                        _ => Err(out_of_range(ty, lit, 0, NANOS_PER_DAY - 1)),
                    };
                }
                parse_time_nanos(t).map(CqlValue::Time).ok_or_else(bad)
            }
            (CqlType::Inet, Literal::String(s)) => s
                .trim()
                .parse::<IpAddr>()
                .map(CqlValue::Inet)
                .map_err(|_| bad()),
            (CqlType::Uuid, Literal::Uuid(s) | Literal::String(s)) => parse_uuid_text(s.trim())
                .map(CqlValue::Uuid)
                .ok_or_else(bad),
            (CqlType::Timeuuid, Literal::Uuid(s) | Literal::String(s)) => {
                match parse_uuid_text(s.trim()) {
                    Some(b) if b[6] >> 4 == 1 => Ok(CqlValue::Timeuuid(b)),
                    _ => Err(bad()),
                }
            }
            (CqlType::Blob, Literal::Blob(b)) => Ok(CqlValue::Blob(b.clone())),
            (CqlType::Boolean, Literal::Boolean(b)) => Ok(CqlValue::Boolean(*b)),
            (CqlType::Duration, Literal::Duration(s)) => {
                let (months, days, nanos) = parse_duration(s.trim()).ok_or_else(bad)?;
                Ok(CqlValue::Duration {
                    months,
                    days,
                    nanos,
                })
            }
            _ => Err(bad()),
        }
    }
}

fn is_special_float(s: &str) -> bool {
    matches!(
        s.trim_start_matches(['-', '+']),
        "NaN" | "Infinity" | "inf" | "infinity"
    )
}

/// A CQL float literal's value: digits/exponent text, `NaN`, `Infinity`, `-Infinity`.
fn parse_float_text(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "Infinity" | "+Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        _ => {
            let body = s.trim_start_matches(['-', '+']);
            if body.is_empty()
                || !body
                    .bytes()
                    .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-'))
            {
                return None;
            }
            s.parse::<f64>().ok()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Ordering
// ---------------------------------------------------------------------------------------------

/// Float bits mapped so that unsigned order is Java's `Float.compare` order: all NaNs folded into
/// one value above `+Infinity`, `-0.0` below `0.0`.
fn f32_key(v: f32) -> u32 {
    let bits = if v.is_nan() { 0x7fc0_0000 } else { v.to_bits() };
    if bits & 0x8000_0000 != 0 {
        !bits
    } else {
        bits | 0x8000_0000
    }
}

fn f64_key(v: f64) -> u64 {
    let bits = if v.is_nan() {
        0x7ff8_0000_0000_0000
    } else {
        v.to_bits()
    };
    if bits & (1 << 63) != 0 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

/// A version 1 UUID's 60-bit timestamp with the version nibble on top: `time_hi`, `time_mid`,
/// `time_low` (bytes 6-7, 4-5, 0-3).
fn uuid_time_key(b: &[u8; 16]) -> u64 {
    let msb = u64::from_be_bytes(arr(&b[..8]));
    (msb << 48) | ((msb << 16) & 0xFFFF_0000_0000) | (msb >> 32)
}

fn uuid_time_key_inverse(k: u64) -> u64 {
    // k = [hi16 | mid16 | low32] where msb = [low32 | mid16 | hi16]
    (k << 32) | ((k >> 16) & 0xFFFF_0000) | (k >> 48)
}

/// `UUIDType`'s order as 16 bytes: version, then the time (v1) or the high half with the
/// version bits moved out of the way, then the low half unsigned.
fn uuid_key(b: &[u8; 16]) -> [u8; 16] {
    let msb = u64::from_be_bytes(arr(&b[..8]));
    let version = (msb >> 12) & 0xF;
    let hi = if version == 1 {
        uuid_time_key(b)
    } else {
        (version << 60) | ((msb >> 4) & 0x0FFF_FFFF_FFFF_F000) | (msb & 0xFFF)
    };
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&hi.to_be_bytes());
    k[8..].copy_from_slice(&b[8..]);
    k
}

fn uuid_from_key(k: &[u8; 16]) -> [u8; 16] {
    let hi = u64::from_be_bytes(arr(&k[..8]));
    let version = hi >> 60;
    let msb = if version == 1 {
        uuid_time_key_inverse(hi)
    } else {
        ((hi << 4) & 0xFFFF_FFFF_FFFF_0000) | (version << 12) | (hi & 0xFFF)
    };
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&msb.to_be_bytes());
    b[8..].copy_from_slice(&k[8..]);
    b
}

/// `TimeUUIDType`'s order as 16 bytes: the timestamp (as a signed long), then the low half
/// compared byte by byte as signed bytes.
fn timeuuid_key(b: &[u8; 16]) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&(uuid_time_key(b) ^ (1 << 63)).to_be_bytes());
    for (k, b) in k[8..].iter_mut().zip(&b[8..]) {
        *k = b ^ 0x80;
    }
    k
}

fn timeuuid_from_key(k: &[u8; 16]) -> [u8; 16] {
    let t = u64::from_be_bytes(arr(&k[..8])) ^ (1 << 63);
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&uuid_time_key_inverse(t).to_be_bytes());
    for (b, k) in b[8..].iter_mut().zip(&k[8..]) {
        *b = k ^ 0x80;
    }
    b
}

fn inet_bytes(a: &IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn variant_rank(v: &CqlValue) -> u8 {
    match v {
        CqlValue::Ascii(_) => 0,
        CqlValue::Text(_) => 1,
        CqlValue::Boolean(_) => 2,
        CqlValue::TinyInt(_) => 3,
        CqlValue::SmallInt(_) => 4,
        CqlValue::Int(_) => 5,
        CqlValue::BigInt(_) => 6,
        CqlValue::Varint(_) => 7,
        CqlValue::Float(_) => 8,
        CqlValue::Double(_) => 9,
        CqlValue::Decimal { .. } => 10,
        CqlValue::Uuid(_) => 11,
        CqlValue::Timeuuid(_) => 12,
        CqlValue::Timestamp(_) => 13,
        CqlValue::Date(_) => 14,
        CqlValue::Time(_) => 15,
        CqlValue::Blob(_) => 16,
        CqlValue::Inet(_) => 17,
        CqlValue::Counter(_) => 18,
        CqlValue::Duration { .. } => 19,
        CqlValue::List(_) => 20,
        CqlValue::Set(_) => 21,
        CqlValue::Map(_) => 22,
        CqlValue::Tuple(_) => 23,
    }
}

/// Orders two values as Cassandra orders values of their type (see the module docs): signed
/// numbers, floats by Java's `compare`, decimals numerically, text/ascii/blob/inet bytewise,
/// `uuid` as `UUIDType`, `timeuuid` by timestamp then signed low bytes, `date` unsigned,
/// `false < true`, collections and tuples lexicographically (a null tuple component first).
/// Values of different types are ordered by type, arbitrarily but consistently.
pub fn compare(a: &CqlValue, b: &CqlValue) -> Ordering {
    use CqlValue as V;
    match (a, b) {
        (V::Ascii(x), V::Ascii(y)) | (V::Text(x), V::Text(y)) => x.as_bytes().cmp(y.as_bytes()),
        (V::Boolean(x), V::Boolean(y)) => x.cmp(y),
        (V::TinyInt(x), V::TinyInt(y)) => x.cmp(y),
        (V::SmallInt(x), V::SmallInt(y)) => x.cmp(y),
        (V::Int(x), V::Int(y)) => x.cmp(y),
        (V::BigInt(x), V::BigInt(y))
        | (V::Counter(x), V::Counter(y))
        | (V::Timestamp(x), V::Timestamp(y))
        | (V::Time(x), V::Time(y)) => x.cmp(y),
        (V::Varint(x), V::Varint(y)) => varint_cmp(x, y),
        (V::Float(x), V::Float(y)) => f32_key(*x).cmp(&f32_key(*y)),
        (V::Double(x), V::Double(y)) => f64_key(*x).cmp(&f64_key(*y)),
        (
            V::Decimal {
                scale: sx,
                unscaled: ux,
            },
            V::Decimal {
                scale: sy,
                unscaled: uy,
            },
        ) => {
            if sx == sy {
                varint_cmp(ux, uy)
            } else {
                NormalDecimal::new(*sx, ux).cmp(&NormalDecimal::new(*sy, uy))
            }
        }
        (V::Uuid(x), V::Uuid(y)) => uuid_key(x).cmp(&uuid_key(y)),
        (V::Timeuuid(x), V::Timeuuid(y)) => timeuuid_key(x).cmp(&timeuuid_key(y)),
        (V::Date(x), V::Date(y)) => x.cmp(y),
        (V::Blob(x), V::Blob(y)) => x.cmp(y),
        (V::Inet(x), V::Inet(y)) => inet_bytes(x).cmp(&inet_bytes(y)),
        (
            V::Duration {
                months: m1,
                days: d1,
                nanos: n1,
            },
            V::Duration {
                months: m2,
                days: d2,
                nanos: n2,
            },
        ) => (m1, d1, n1).cmp(&(m2, d2, n2)),
        (V::List(x), V::List(y)) | (V::Set(x), V::Set(y)) => cmp_seq(x.iter(), y.iter(), compare),
        (V::Map(x), V::Map(y)) => cmp_seq(x.iter(), y.iter(), |(k1, v1), (k2, v2)| {
            compare(k1, k2).then_with(|| compare(v1, v2))
        }),
        (V::Tuple(x), V::Tuple(y)) => cmp_seq(x.iter(), y.iter(), |p, q| match (p, q) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Less,
            (Some(_), None) => Ordering::Greater,
            (Some(p), Some(q)) => compare(p, q),
        }),
        _ => variant_rank(a).cmp(&variant_rank(b)),
    }
}

fn cmp_seq<'a, T: 'a>(
    mut x: impl Iterator<Item = &'a T>,
    mut y: impl Iterator<Item = &'a T>,
    f: impl Fn(&T, &T) -> Ordering,
) -> Ordering {
    loop {
        match (x.next(), y.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(a), Some(b)) => match f(a, b) {
                Ordering::Equal => continue,
                o => return o,
            },
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Order-preserving, prefix-free byte encoding
// ---------------------------------------------------------------------------------------------

const DEC_NEGATIVE: u8 = 0x01;
const DEC_ZERO: u8 = 0x02;
const DEC_POSITIVE: u8 = 0x03;

/// Appends the order-preserving, prefix-free encoding of `v` to `out` (see the module docs).
///
/// For two values `a`, `b` of the same type, `compare(a, b)` equals the unsigned byte order of
/// their encodings (reversed when `descending`), and no encoding is a prefix of another, so the
/// concatenated encodings of a composite key's components sort component-wise and a key prefix
/// encodes to a byte prefix.
pub fn encode_comparable(v: &CqlValue, descending: bool, out: &mut Vec<u8>) {
    let start = out.len();
    encode_asc(v, out);
    if descending {
        for b in &mut out[start..] {
            *b = !*b;
        }
    }
}

fn encode_escaped(b: &[u8], out: &mut Vec<u8>) {
    for &x in b {
        if x == 0 {
            out.extend_from_slice(&[0x00, 0xFF]);
        } else {
            out.push(x);
        }
    }
    out.extend_from_slice(&[0x00, 0x01]);
}

fn encode_asc(v: &CqlValue, out: &mut Vec<u8>) {
    match v {
        CqlValue::Ascii(s) | CqlValue::Text(s) => encode_escaped(s.as_bytes(), out),
        CqlValue::Blob(b) => encode_escaped(b, out),
        CqlValue::Inet(a) => encode_escaped(&inet_bytes(a), out),
        CqlValue::Boolean(b) => out.push(u8::from(*b)),
        CqlValue::TinyInt(x) => out.push((*x as u8) ^ 0x80),
        CqlValue::SmallInt(x) => out.extend_from_slice(&((*x as u16) ^ 0x8000).to_be_bytes()),
        CqlValue::Int(x) => out.extend_from_slice(&((*x as u32) ^ 0x8000_0000).to_be_bytes()),
        CqlValue::BigInt(x) | CqlValue::Counter(x) | CqlValue::Timestamp(x) | CqlValue::Time(x) => {
            out.extend_from_slice(&((*x as u64) ^ (1 << 63)).to_be_bytes())
        }
        CqlValue::Date(d) => out.extend_from_slice(&d.to_be_bytes()),
        CqlValue::Float(x) => out.extend_from_slice(&f32_key(*x).to_be_bytes()),
        CqlValue::Double(x) => out.extend_from_slice(&f64_key(*x).to_be_bytes()),
        CqlValue::Uuid(b) => out.extend_from_slice(&uuid_key(b)),
        CqlValue::Timeuuid(b) => out.extend_from_slice(&timeuuid_key(b)),
        CqlValue::Varint(b) => {
            let b = varint_minimal_slice(b).unwrap_or(&[0]);
            let len = u32::try_from(b.len()).unwrap_or(u32::MAX);
            if b[0] & 0x80 != 0 {
                out.push(0x7F);
                out.extend_from_slice(&(!len).to_be_bytes());
            } else {
                out.push(0x80);
                out.extend_from_slice(&len.to_be_bytes());
            }
            out.extend_from_slice(b);
        }
        CqlValue::Decimal { scale, unscaled } => {
            let d = NormalDecimal::new(*scale, unscaled);
            match d.sign {
                0 => out.push(DEC_ZERO),
                s => {
                    let start = out.len();
                    out.push(if s < 0 { DEC_NEGATIVE } else { DEC_POSITIVE });
                    out.extend_from_slice(&((d.exp as u64) ^ (1 << 63)).to_be_bytes());
                    for pair in d.digits.chunks(2) {
                        let lo = pair.get(1).copied().unwrap_or(0);
                        out.push(pair[0] * 10 + lo + 1);
                    }
                    out.push(0x00);
                    if s < 0 {
                        for b in &mut out[start + 1..] {
                            *b = !*b;
                        }
                    }
                }
            }
        }
        CqlValue::Duration {
            months,
            days,
            nanos,
        } => {
            out.extend_from_slice(&((*months as u32) ^ 0x8000_0000).to_be_bytes());
            out.extend_from_slice(&((*days as u32) ^ 0x8000_0000).to_be_bytes());
            out.extend_from_slice(&((*nanos as u64) ^ (1 << 63)).to_be_bytes());
        }
        CqlValue::List(items) | CqlValue::Set(items) => {
            for item in items {
                out.push(0x01);
                encode_asc(item, out);
            }
            out.push(0x00);
        }
        CqlValue::Map(entries) => {
            for (k, v) in entries {
                out.push(0x01);
                encode_asc(k, out);
                encode_asc(v, out);
            }
            out.push(0x00);
        }
        CqlValue::Tuple(items) => {
            for item in items {
                match item {
                    None => out.push(0x01),
                    Some(v) => {
                        out.push(0x02);
                        encode_asc(v, out);
                    }
                }
            }
            out.push(0x00);
        }
    }
}

/// Reads comparable bytes, undoing a descending column's inversion on the fly.
struct ComparableReader<'a> {
    input: &'a [u8],
    pos: usize,
    mask: u8,
}

impl ComparableReader<'_> {
    fn byte(&mut self, ty: &CqlType) -> Result<u8, TypeError> {
        let b = *self
            .input
            .get(self.pos)
            .ok_or_else(|| comparable_err(ty, "truncated"))?;
        self.pos += 1;
        Ok(b ^ self.mask)
    }

    fn take<const N: usize>(&mut self, ty: &CqlType) -> Result<[u8; N], TypeError> {
        if self.input.len() - self.pos < N {
            return Err(comparable_err(ty, "truncated"));
        }
        let mut a = [0u8; N];
        for (i, x) in a.iter_mut().enumerate() {
            *x = self.input[self.pos + i] ^ self.mask;
        }
        self.pos += N;
        Ok(a)
    }

    fn take_vec(&mut self, ty: &CqlType, n: usize) -> Result<Vec<u8>, TypeError> {
        if self.input.len() - self.pos < n {
            return Err(comparable_err(ty, "truncated"));
        }
        let v = self.input[self.pos..self.pos + n]
            .iter()
            .map(|b| b ^ self.mask)
            .collect();
        self.pos += n;
        Ok(v)
    }

    fn escaped(&mut self, ty: &CqlType) -> Result<Vec<u8>, TypeError> {
        let mut out = Vec::new();
        loop {
            match self.byte(ty)? {
                0x00 => match self.byte(ty)? {
                    0xFF => out.push(0),
                    0x01 => return Ok(out),
                    b => return Err(comparable_err(ty, format!("invalid escape 0x00 0x{b:02x}"))),
                },
                b => out.push(b),
            }
        }
    }
}

fn comparable_err(ty: &CqlType, reason: impl Into<String>) -> TypeError {
    TypeError::InvalidComparable {
        ty: ty.to_string(),
        reason: reason.into(),
    }
}

/// Decodes one value of type `ty` from the start of `input` (written by `encode_comparable`
/// with the same `descending`), returning it with the number of bytes consumed. A decimal comes
/// back in canonical form (see the module docs); a NaN float as the canonical NaN.
pub fn decode_comparable(
    ty: &CqlType,
    descending: bool,
    input: &[u8],
) -> Result<(CqlValue, usize), TypeError> {
    let mut r = ComparableReader {
        input,
        pos: 0,
        mask: if descending { 0xFF } else { 0x00 },
    };
    let v = decode_asc(ty, &mut r)?;
    Ok((v, r.pos))
}

fn decode_asc(ty: &CqlType, r: &mut ComparableReader<'_>) -> Result<CqlValue, TypeError> {
    let sign64 = |a: [u8; 8]| (u64::from_be_bytes(a) ^ (1 << 63)) as i64;
    Ok(match ty {
        CqlType::Frozen(inner) => return decode_asc(inner, r),
        CqlType::Ascii => {
            let b = r.escaped(ty)?;
            if !b.is_ascii() {
                return Err(comparable_err(ty, "non-ASCII byte"));
            }
            CqlValue::Ascii(String::from_utf8(b).map_err(|e| comparable_err(ty, e.to_string()))?)
        }
        CqlType::Text => CqlValue::Text(
            String::from_utf8(r.escaped(ty)?).map_err(|e| comparable_err(ty, e.to_string()))?,
        ),
        CqlType::Blob | CqlType::Custom(_) => CqlValue::Blob(r.escaped(ty)?),
        CqlType::Inet => {
            let b = r.escaped(ty)?;
            match b.len() {
                4 => CqlValue::Inet(IpAddr::V4(Ipv4Addr::from(arr::<4>(&b)))),
                16 => CqlValue::Inet(IpAddr::V6(Ipv6Addr::from(arr::<16>(&b)))),
                n => return Err(comparable_err(ty, format!("{n}-byte address"))),
            }
        }
        CqlType::Boolean => match r.byte(ty)? {
            0 => CqlValue::Boolean(false),
            1 => CqlValue::Boolean(true),
            b => return Err(comparable_err(ty, format!("byte 0x{b:02x}"))),
        },
        CqlType::TinyInt => CqlValue::TinyInt((r.byte(ty)? ^ 0x80) as i8),
        CqlType::SmallInt => CqlValue::SmallInt((u16::from_be_bytes(r.take(ty)?) ^ 0x8000) as i16),
        CqlType::Int => CqlValue::Int((u32::from_be_bytes(r.take(ty)?) ^ 0x8000_0000) as i32),
        CqlType::BigInt => CqlValue::BigInt(sign64(r.take(ty)?)),
        CqlType::Counter => CqlValue::Counter(sign64(r.take(ty)?)),
        CqlType::Timestamp => CqlValue::Timestamp(sign64(r.take(ty)?)),
        CqlType::Time => CqlValue::Time(sign64(r.take(ty)?)),
        CqlType::Date => CqlValue::Date(u32::from_be_bytes(r.take(ty)?)),
        CqlType::Float => {
            let k = u32::from_be_bytes(r.take(ty)?);
            let bits = if k & 0x8000_0000 != 0 {
                k & 0x7FFF_FFFF
            } else {
                !k
            };
            CqlValue::Float(f32::from_bits(bits))
        }
        CqlType::Double => {
            let k = u64::from_be_bytes(r.take(ty)?);
            let bits = if k & (1 << 63) != 0 {
                k & !(1 << 63)
            } else {
                !k
            };
            CqlValue::Double(f64::from_bits(bits))
        }
        CqlType::Uuid => CqlValue::Uuid(uuid_from_key(&r.take(ty)?)),
        CqlType::Timeuuid => CqlValue::Timeuuid(timeuuid_from_key(&r.take(ty)?)),
        CqlType::Varint => {
            let neg = match r.byte(ty)? {
                0x7F => true,
                0x80 => false,
                b => return Err(comparable_err(ty, format!("sign byte 0x{b:02x}"))),
            };
            let len = u32::from_be_bytes(r.take(ty)?);
            let len = if neg { !len } else { len } as usize;
            if len == 0 {
                return Err(comparable_err(ty, "zero length"));
            }
            let b = r.take_vec(ty, len)?;
            if (b[0] & 0x80 != 0) != neg {
                return Err(comparable_err(ty, "sign mismatch"));
            }
            CqlValue::Varint(b)
        }
        CqlType::Decimal => {
            let sign = match r.byte(ty)? {
                DEC_ZERO => {
                    return Ok(CqlValue::Decimal {
                        scale: 0,
                        unscaled: vec![0],
                    })
                }
                DEC_NEGATIVE => -1i8,
                DEC_POSITIVE => 1,
                b => return Err(comparable_err(ty, format!("sign byte 0x{b:02x}"))),
            };
            // Negative decimals are inverted after the sign byte: flip the mask for the rest.
            let saved = r.mask;
            if sign < 0 {
                r.mask = !r.mask;
            }
            let exp = sign64(r.take(ty)?);
            let mut digits = Vec::new();
            let result = loop {
                match r.byte(ty) {
                    Err(e) => break Err(e),
                    Ok(0) => break Ok(()),
                    Ok(b @ 1..=100) => {
                        digits.push((b - 1) / 10);
                        digits.push((b - 1) % 10);
                    }
                    Ok(b) => break Err(comparable_err(ty, format!("digit byte 0x{b:02x}"))),
                }
            };
            r.mask = saved;
            result?;
            while digits.last() == Some(&0) {
                digits.pop();
            }
            if digits.first().is_none_or(|&d| d == 0) {
                return Err(comparable_err(ty, "digits not normalized"));
            }
            let (scale, unscaled) = NormalDecimal { sign, exp, digits }
                .to_scaled()
                .ok_or_else(|| comparable_err(ty, "scale out of range"))?;
            CqlValue::Decimal { scale, unscaled }
        }
        CqlType::Duration => {
            let months = (u32::from_be_bytes(r.take(ty)?) ^ 0x8000_0000) as i32;
            let days = (u32::from_be_bytes(r.take(ty)?) ^ 0x8000_0000) as i32;
            let nanos = sign64(r.take(ty)?);
            CqlValue::Duration {
                months,
                days,
                nanos,
            }
        }
        CqlType::List(elem) | CqlType::Set(elem) => {
            let mut items = Vec::new();
            loop {
                match r.byte(ty)? {
                    0x00 => break,
                    0x01 => items.push(decode_asc(elem, r)?),
                    b => return Err(comparable_err(ty, format!("marker 0x{b:02x}"))),
                }
            }
            if matches!(ty, CqlType::List(_)) {
                CqlValue::List(items)
            } else {
                CqlValue::Set(items)
            }
        }
        CqlType::Map(kt, vt) => {
            let mut entries = Vec::new();
            loop {
                match r.byte(ty)? {
                    0x00 => break,
                    0x01 => {
                        let k = decode_asc(kt, r)?;
                        let v = decode_asc(vt, r)?;
                        entries.push((k, v));
                    }
                    b => return Err(comparable_err(ty, format!("marker 0x{b:02x}"))),
                }
            }
            CqlValue::Map(entries)
        }
        CqlType::Tuple(types) => {
            let mut items = Vec::new();
            for t in types {
                match r.byte(ty)? {
                    0x00 => {
                        r.pos -= 1;
                        break;
                    }
                    0x01 => items.push(None),
                    0x02 => items.push(Some(decode_asc(t, r)?)),
                    b => return Err(comparable_err(ty, format!("marker 0x{b:02x}"))),
                }
            }
            match r.byte(ty)? {
                0x00 => {}
                b => {
                    return Err(comparable_err(
                        ty,
                        format!("marker 0x{b:02x} after last component"),
                    ))
                }
            }
            CqlValue::Tuple(items)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int_lit(s: &str) -> Literal {
        Literal::Integer(s.to_string())
    }

    #[test]
    fn vint_sizes_and_round_trip() {
        for v in [
            0u64,
            1,
            0x7F,
            0x80,
            0x3FFF,
            0x4000,
            u64::from(u32::MAX),
            u64::MAX >> 8,
            u64::MAX,
        ] {
            let mut out = Vec::new();
            write_unsigned_vint(v, &mut out);
            let mut pos = 0;
            assert_eq!(read_unsigned_vint(&out, &mut pos), Some(v), "{v:#x}");
            assert_eq!(pos, out.len());
        }
        let mut out = Vec::new();
        write_unsigned_vint(0x80, &mut out);
        assert_eq!(out, [0x80, 0x80]);
        for v in [0i64, -1, 1, i64::MIN, i64::MAX, -300] {
            let mut out = Vec::new();
            write_signed_vint(v, &mut out);
            let mut pos = 0;
            assert_eq!(read_signed_vint(&out, &mut pos), Some(v));
        }
    }

    #[test]
    fn varint_spec_examples() {
        let cases: [(i128, &[u8]); 8] = [
            (0, &[0x00]),
            (1, &[0x01]),
            (127, &[0x7F]),
            (128, &[0x00, 0x80]),
            (129, &[0x00, 0x81]),
            (-1, &[0xFF]),
            (-128, &[0x80]),
            (-129, &[0xFF, 0x7F]),
        ];
        for (v, bytes) in cases {
            assert_eq!(varint_from_i128(v), bytes);
            assert_eq!(varint_from_decimal_str(&v.to_string()).unwrap(), bytes);
            assert_eq!(varint_to_decimal_string(bytes), v.to_string());
            assert_eq!(varint_to_i128(bytes), Some(v));
        }
        let big = "-123456789012345678901234567890123456789012345678901234567890";
        let b = varint_from_decimal_str(big).unwrap();
        assert_eq!(varint_to_decimal_string(&b), big);
    }

    #[test]
    fn decimal_text_like_python() {
        let d = |unscaled: i128, scale: i32| decimal_to_string(scale, &varint_from_i128(unscaled));
        assert_eq!(d(150, 2), "1.50");
        assert_eq!(d(1, -2), "1E+2");
        assert_eq!(d(0, 2), "0.00");
        assert_eq!(d(-150, 2), "-1.50");
        assert_eq!(d(5, 3), "0.005");
        assert_eq!(d(15, 8), "1.5E-7");
        assert_eq!(d(123, 0), "123");
    }

    #[test]
    fn float_rendering_like_cqlsh() {
        assert_eq!(render_float(1.5), "1.5");
        assert_eq!(render_float(1e20), "1e+20");
        assert_eq!(render_float(0.0), "0");
        assert_eq!(render_float(-2.25), "-2.25");
        assert_eq!(render_float(123456.789), "1.2346e+05");
        assert_eq!(render_float(12345.678), "12345.678");
        assert_eq!(render_float(0.001), "0.001");
        assert_eq!(render_float(1e-5), "1e-05");
        assert_eq!(render_float(f64::from(1.1f32)), "1.1");
        assert_eq!(render_float(std::f64::consts::PI), "3.14159");
    }

    #[test]
    fn calendar_round_trip() {
        for days in [-719_468i64, -1, 0, 1, 19_724, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(19_724), (2024, 1, 2));
    }

    #[test]
    fn timestamp_forms() {
        let base = 1_704_164_645_000i64; // 2024-01-02 03:04:05 UTC
        assert_eq!(parse_timestamp_ms("2024-01-02 03:04:05"), Some(base));
        assert_eq!(parse_timestamp_ms("2024-01-02T03:04:05Z"), Some(base));
        assert_eq!(
            parse_timestamp_ms("2024-01-02T03:04:05.123Z"),
            Some(base + 123)
        );
        assert_eq!(parse_timestamp_ms("2024-01-02 03:04:05+0000"), Some(base));
        assert_eq!(parse_timestamp_ms("2024-01-02 04:04:05+01:00"), Some(base));
        assert_eq!(parse_timestamp_ms("2024-01-02 02:04:05-0100"), Some(base));
        assert_eq!(parse_timestamp_ms("2024-01-02 03:04"), Some(base - 5000));
        assert_eq!(parse_timestamp_ms("2024-01-02"), Some(base - 11_045_000));
        assert_eq!(parse_timestamp_ms("2024-01-02Z"), Some(base - 11_045_000));
        assert_eq!(
            parse_timestamp_ms("2024-01-02+0000"),
            Some(base - 11_045_000)
        );
        assert_eq!(parse_timestamp_ms("2024-13-02"), None);
        assert_eq!(parse_timestamp_ms("2024-02-30"), None);
        assert_eq!(parse_timestamp_ms("yesterday"), None);
        assert_eq!(
            render_timestamp(base + 678),
            "2024-01-02 03:04:05.678000+0000"
        );
        assert_eq!(render_timestamp(-1), "1969-12-31 23:59:59.999000+0000");
    }

    #[test]
    fn literal_ranges() {
        assert_eq!(
            CqlValue::from_literal(&CqlType::TinyInt, &int_lit("127")),
            Ok(CqlValue::TinyInt(127))
        );
        let err = CqlValue::from_literal(&CqlType::TinyInt, &int_lit("128")).unwrap_err();
        assert!(err.to_string().contains("out of range"), "{err}");
        assert!(err.to_string().contains("tinyint"), "{err}");
        let err =
            CqlValue::from_literal(&CqlType::Int, &int_lit("99999999999999999999")).unwrap_err();
        assert!(err.to_string().contains("out of range"), "{err}");
        let err =
            CqlValue::from_literal(&CqlType::Int, &Literal::String("foo".into())).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid literal 'foo' for type int: expected an integer"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1h30m"), Some((0, 0, 5_400_000_000_000)));
        assert_eq!(parse_duration("1y2mo3w4d"), Some((14, 25, 0)));
        assert_eq!(parse_duration("-2d"), Some((0, -2, 0)));
        assert_eq!(parse_duration("P1DT2H"), Some((0, 1, 7_200_000_000_000)));
        assert_eq!(parse_duration("P2W"), Some((0, 14, 0)));
        assert_eq!(
            parse_duration("P0001-02-03T04:05:06"),
            Some((14, 3, 14_706_000_000_000))
        );
        assert_eq!(parse_duration("1x"), None);
        assert_eq!(render_duration(14, 3, 5_400_000_000_000), "1y2mo3d1h30m");
        assert_eq!(render_duration(0, -2, 0), "-2d");
    }

    #[test]
    fn uuid_keys_invert() {
        let v1 = parse_uuid_text("5d2a6c10-a8c2-11ee-8c90-0242ac120002").unwrap();
        let v4 = parse_uuid_text("9f1c0a2e-3b4d-4e5f-8a6b-7c8d9e0f1a2b").unwrap();
        for u in [v1, v4] {
            assert_eq!(uuid_from_key(&uuid_key(&u)), u);
        }
        assert_eq!(timeuuid_from_key(&timeuuid_key(&v1)), v1);
    }

    #[test]
    fn type_text_round_trip() {
        for text in [
            "int",
            "frozen<map<text, list<int>>>",
            "tuple<int, text, set<uuid>>",
            "'org.Foo'",
        ] {
            let t = parse_type(text).unwrap();
            assert_eq!(t.to_string(), text);
        }
        assert_eq!(parse_type("VARCHAR"), Some(CqlType::Text));
        assert_eq!(parse_type("map<int>"), None);
        assert_eq!(parse_type("list<int"), None);
    }
}
