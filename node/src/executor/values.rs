//! Turning the terms of a statement into typed values.
//!
//! A term is a literal, a bind marker, a collection or tuple of terms, a function call or a cast.
//! Its type comes from where it is used (the column it is assigned to or compared with), so
//! evaluation always takes the expected type. Bound values arrive as bytes from the network and
//! are decoded strictly; anything malformed is an `Invalid` error naming the receiver, never a
//! panic. `null` and `unset` are kept apart from values ([`Val`]) because they mean different
//! things to writes (tombstone vs. "leave alone").

use std::collections::HashMap;

use ringdb_cql::ast::{BindMarker, Literal, Term};
use ringdb_cql::types::{self, CqlType, CqlValue};

use super::error::{invalid, ExecError};
use super::BoundValue;
use crate::clock::HybridClock;

/// A term's value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val {
    Null,
    /// A bound value the client left unset: "do not touch".
    Unset,
    Value(CqlValue),
}

impl Val {
    /// The value, treating unset like null.
    pub(crate) fn into_option(self) -> Option<CqlValue> {
        match self {
            Val::Value(v) => Some(v),
            Val::Null | Val::Unset => None,
        }
    }
}

/// The values bound to a statement's markers, by position or by name.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bindings<'a> {
    values: &'a [BoundValue],
    names: Option<&'a HashMap<String, usize>>,
}

impl<'a> Bindings<'a> {
    /// Positional values; checks the count against the statement's markers.
    pub(crate) fn positional(
        values: &'a [BoundValue],
        markers: usize,
    ) -> Result<Bindings<'a>, ExecError> {
        if values.len() != markers {
            return invalid(format!(
                "There were {markers} markers(?) in CQL but {} bound variables",
                values.len()
            ));
        }
        Ok(Bindings {
            values,
            names: None,
        })
    }

    /// Values by name (`names[i]` names `values[i]`).
    pub(crate) fn named(
        values: &'a [BoundValue],
        names: &'a HashMap<String, usize>,
    ) -> Bindings<'a> {
        Bindings {
            values,
            names: Some(names),
        }
    }

    /// The value bound to a marker.
    pub(crate) fn get(&self, marker: &BindMarker) -> Result<&'a BoundValue, ExecError> {
        let idx = match (self.names, &marker.name) {
            (Some(names), Some(name)) => match names.get(name) {
                Some(i) => *i,
                None => match names.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
                    Some((_, i)) => *i,
                    None => return invalid(format!("No value bound for named variable :{name}")),
                },
            },
            (Some(_), None) => {
                return invalid(
                    "Named values were given but the statement uses positional markers (?)",
                )
            }
            (None, _) => marker.index,
        };
        self.values.get(idx).ok_or_else(|| {
            ExecError::Invalid(format!(
                "No value bound for variable {} (index {idx})",
                marker_label(marker)
            ))
        })
    }
}

fn marker_label(m: &BindMarker) -> String {
    match &m.name {
        Some(n) => format!(":{n}"),
        None => "?".to_string(),
    }
}

/// What term evaluation needs besides the bound values.
#[derive(Clone, Copy)]
pub(crate) struct EvalCtx<'a> {
    pub bindings: Bindings<'a>,
    pub clock: &'a HybridClock,
    /// Node part of the timeuuids this node generates.
    pub node: [u8; 6],
}

/// The type with `frozen<>` wrappers removed at the top.
pub(crate) fn base(ty: &CqlType) -> &CqlType {
    let mut t = ty;
    while let CqlType::Frozen(inner) = t {
        t = inner;
    }
    t
}

/// Decodes a bound value for a receiver of type `ty`.
pub(crate) fn decode_bound(
    ty: &CqlType,
    bytes: &[u8],
    receiver: &str,
) -> Result<CqlValue, ExecError> {
    CqlValue::deserialize(ty, bytes)
        .map_err(|e| ExecError::Invalid(format!("Exception while binding column {receiver}: {e}")))
}

/// Evaluates a term for a receiver (column, collection element, option…) of type `ty`.
pub(crate) fn eval(
    term: &Term,
    ty: &CqlType,
    ctx: &EvalCtx<'_>,
    receiver: &str,
) -> Result<Val, ExecError> {
    let b = base(ty);
    match term {
        Term::Literal(Literal::Null) => Ok(Val::Null),
        Term::Literal(lit) => CqlValue::from_literal(ty, lit)
            .map(Val::Value)
            .map_err(|e| ExecError::Invalid(format!("Invalid value for {receiver}: {e}"))),
        Term::Bind(m) => match ctx.bindings.get(m)? {
            BoundValue::Null => Ok(Val::Null),
            BoundValue::Unset => Ok(Val::Unset),
            BoundValue::Bytes(bytes) => {
                // Cassandra's "empty value" for fixed-width types: treated as null here.
                if bytes.is_empty()
                    && !matches!(
                        b,
                        CqlType::Text | CqlType::Ascii | CqlType::Blob | CqlType::Custom(_)
                    )
                {
                    return Ok(Val::Null);
                }
                Ok(Val::Value(canonical(decode_bound(ty, bytes, receiver)?)))
            }
        },
        Term::List(items) => match b {
            CqlType::List(e) => Ok(Val::Value(CqlValue::List(elements(
                items, e, ctx, receiver,
            )?))),
            CqlType::Set(e) => Ok(Val::Value(set_of(elements(items, e, ctx, receiver)?))),
            _ => invalid(format!("Invalid list literal for {receiver} of type {ty}")),
        },
        Term::Set(items) => match b {
            CqlType::Set(e) => Ok(Val::Value(set_of(elements(items, e, ctx, receiver)?))),
            // `{k1, k2}` removing keys from a map is typed by the caller as set<K>.
            _ => invalid(format!("Invalid set literal for {receiver} of type {ty}")),
        },
        Term::Map(entries) => match b {
            CqlType::Map(kt, vt) => {
                let mut out = Vec::with_capacity(entries.len());
                for (k, v) in entries {
                    let k = element(k, kt, ctx, receiver)?;
                    let v = element(v, vt, ctx, receiver)?;
                    out.push((k, v));
                }
                Ok(Val::Value(map_of(out)))
            }
            // `{}` is parsed as an empty map.
            CqlType::Set(_) if entries.is_empty() => Ok(Val::Value(CqlValue::Set(Vec::new()))),
            CqlType::List(_) if entries.is_empty() => Ok(Val::Value(CqlValue::List(Vec::new()))),
            _ => invalid(format!("Invalid map literal for {receiver} of type {ty}")),
        },
        Term::Tuple(items) => match b {
            CqlType::Tuple(types) => {
                if items.len() > types.len() {
                    return invalid(format!(
                        "Invalid tuple literal for {receiver}: too many elements. Type {ty} expects {} but got {}",
                        types.len(),
                        items.len()
                    ));
                }
                let mut out = Vec::with_capacity(types.len());
                for (item, t) in items.iter().zip(types) {
                    match eval(item, t, ctx, receiver)? {
                        Val::Value(v) => out.push(Some(v)),
                        Val::Null => out.push(None),
                        Val::Unset => {
                            return invalid(format!("Invalid unset value in tuple for {receiver}"))
                        }
                    }
                }
                while out.len() < types.len() {
                    out.push(None);
                }
                Ok(Val::Value(CqlValue::Tuple(out)))
            }
            _ => invalid(format!("Invalid tuple literal for {receiver} of type {ty}")),
        },
        Term::FunctionCall { name, args } => {
            let v = call_function(name, args, Some(b), ctx, receiver)?;
            match v {
                Some(v) => coerce(v, ty, receiver).map(Val::Value),
                None => Ok(Val::Null),
            }
        }
        Term::Cast { ty: hint, term } => {
            if hint.unfrozen() != ty.unfrozen() && !compatible(hint, ty) {
                return invalid(format!(
                    "Type error: ({hint}) cannot be assigned to {receiver} of type {ty}"
                ));
            }
            eval(term, ty, ctx, receiver)
        }
    }
}

/// Whether values of `from` may be used where `to` is expected without conversion.
fn compatible(from: &CqlType, to: &CqlType) -> bool {
    let (f, t) = (base(from), base(to));
    f == t
        || matches!(
            (f, t),
            (CqlType::Timeuuid, CqlType::Uuid) | (CqlType::Ascii, CqlType::Text)
        )
}

fn element(
    term: &Term,
    ty: &CqlType,
    ctx: &EvalCtx<'_>,
    receiver: &str,
) -> Result<CqlValue, ExecError> {
    match eval(term, ty, ctx, receiver)? {
        Val::Value(v) => Ok(v),
        Val::Null => invalid("null is not supported inside collections"),
        Val::Unset => invalid("unset value is not supported inside collections"),
    }
}

fn elements(
    items: &[Term],
    ty: &CqlType,
    ctx: &EvalCtx<'_>,
    receiver: &str,
) -> Result<Vec<CqlValue>, ExecError> {
    items
        .iter()
        .map(|t| element(t, ty, ctx, receiver))
        .collect()
}

/// A set value: elements sorted and deduplicated as Cassandra stores them.
pub(crate) fn set_of(mut items: Vec<CqlValue>) -> CqlValue {
    items.sort_by(types::compare);
    items.dedup_by(|a, b| types::compare(a, b).is_eq());
    CqlValue::Set(items)
}

/// A map value: entries sorted by key, the last of equal keys kept.
pub(crate) fn map_of(entries: Vec<(CqlValue, CqlValue)>) -> CqlValue {
    let mut out: Vec<(CqlValue, CqlValue)> = Vec::with_capacity(entries.len());
    for (k, v) in entries {
        match out.binary_search_by(|(x, _)| types::compare(x, &k)) {
            Ok(i) => out[i].1 = v,
            Err(i) => out.insert(i, (k, v)),
        }
    }
    CqlValue::Map(out)
}

/// Puts set and map values (at any depth) in canonical order, as a frozen value must be stored
/// for equal values to have equal bytes.
pub(crate) fn canonical(v: CqlValue) -> CqlValue {
    match v {
        CqlValue::Set(items) => set_of(items.into_iter().map(canonical).collect()),
        CqlValue::List(items) => CqlValue::List(items.into_iter().map(canonical).collect()),
        CqlValue::Map(entries) => map_of(
            entries
                .into_iter()
                .map(|(k, v)| (canonical(k), canonical(v)))
                .collect(),
        ),
        CqlValue::Tuple(items) => {
            CqlValue::Tuple(items.into_iter().map(|i| i.map(canonical)).collect())
        }
        other => other,
    }
}

/// Evaluates a term that must be a non-null value.
pub(crate) fn eval_value(
    term: &Term,
    ty: &CqlType,
    ctx: &EvalCtx<'_>,
    receiver: &str,
) -> Result<CqlValue, ExecError> {
    match eval(term, ty, ctx, receiver)? {
        Val::Value(v) => Ok(v),
        Val::Null => invalid(format!("Invalid null value for {receiver}")),
        Val::Unset => invalid(format!("Invalid unset value for {receiver}")),
    }
}

/// Evaluates the right side of `x IN ...`: a list of terms or one marker bound to a list.
/// Nulls are dropped (they match nothing).
pub(crate) fn eval_in_values(
    term: &Term,
    elem: &CqlType,
    ctx: &EvalCtx<'_>,
    receiver: &str,
) -> Result<Vec<CqlValue>, ExecError> {
    match term {
        Term::List(items) | Term::Tuple(items) => {
            let mut out = Vec::with_capacity(items.len());
            for t in items {
                match eval(t, elem, ctx, receiver)? {
                    Val::Value(v) => out.push(v),
                    Val::Null => {}
                    Val::Unset => return invalid(format!("Invalid unset value for {receiver}")),
                }
            }
            Ok(out)
        }
        Term::Bind(_) => {
            let list_ty = CqlType::List(Box::new(elem.clone()));
            match eval(term, &list_ty, ctx, receiver)? {
                Val::Value(CqlValue::List(items)) => Ok(items),
                Val::Value(_) => invalid(format!("Invalid IN value for {receiver}")),
                Val::Null => invalid(format!("Invalid null value for {receiver}")),
                Val::Unset => invalid(format!("Invalid unset value for {receiver}")),
            }
        }
        _ => invalid(format!(
            "Invalid IN value for {receiver}: expected a list of values"
        )),
    }
}

/// Evaluates an integer option such as TTL, TIMESTAMP or LIMIT: `Ok(None)` when unset.
pub(crate) fn eval_i64(
    term: &Term,
    ty: &CqlType,
    ctx: &EvalCtx<'_>,
    receiver: &str,
) -> Result<Option<i64>, ExecError> {
    match eval(term, ty, ctx, receiver)? {
        Val::Value(CqlValue::Int(v)) => Ok(Some(v.into())),
        Val::Value(CqlValue::BigInt(v)) => Ok(Some(v)),
        Val::Value(_) => invalid(format!("Invalid value for {receiver}")),
        Val::Null => invalid(format!("Invalid null value of {receiver}")),
        Val::Unset => Ok(None),
    }
}

/// Converts a function result to the receiver's type where CQL allows it.
fn coerce(v: CqlValue, ty: &CqlType, receiver: &str) -> Result<CqlValue, ExecError> {
    let b = base(ty);
    Ok(match (v, b) {
        (CqlValue::Timeuuid(u), CqlType::Uuid) => CqlValue::Uuid(u),
        (CqlValue::Ascii(s), CqlType::Text) => CqlValue::Text(s),
        (v @ CqlValue::Blob(_), CqlType::Blob) => v,
        (CqlValue::Blob(bytes), other) => decode_bound(other, &bytes, receiver)?,
        (v, t) => {
            if value_fits(&v, t) {
                v
            } else {
                return invalid(format!(
                    "Type error: cannot assign result of function call to {receiver} of type {ty}"
                ));
            }
        }
    })
}

fn value_fits(v: &CqlValue, t: &CqlType) -> bool {
    matches!(
        (v, t),
        (CqlValue::Timeuuid(_), CqlType::Timeuuid)
            | (CqlValue::Uuid(_), CqlType::Uuid)
            | (CqlValue::Timestamp(_), CqlType::Timestamp)
            | (CqlValue::Date(_), CqlType::Date)
            | (CqlValue::Time(_), CqlType::Time)
            | (CqlValue::BigInt(_), CqlType::BigInt)
            | (CqlValue::Int(_), CqlType::Int)
            | (CqlValue::Text(_), CqlType::Text)
            | (CqlValue::Ascii(_), CqlType::Ascii)
            | (CqlValue::Boolean(_), CqlType::Boolean)
            | (CqlValue::Double(_), CqlType::Double)
            | (CqlValue::Float(_), CqlType::Float)
            | (CqlValue::Inet(_), CqlType::Inet)
            | (CqlValue::Varint(_), CqlType::Varint)
            | (CqlValue::Decimal { .. }, CqlType::Decimal)
            | (CqlValue::SmallInt(_), CqlType::SmallInt)
            | (CqlValue::TinyInt(_), CqlType::TinyInt)
    )
}

// ---------------------------------------------------------------------------------------------
// Time and uuid functions
// ---------------------------------------------------------------------------------------------

/// 100-nanosecond intervals between the UUID epoch (1582-10-15) and the Unix epoch.
const UUID_EPOCH_OFFSET: i64 = 0x01B2_1DD2_1381_4000;
const MICROS_PER_DAY: i64 = 86_400_000_000;
/// `date` values count days from 2^31 = the Unix epoch.
const DATE_EPOCH: i64 = 1 << 31;

/// A version-1 (time-based) UUID for `micros` since the Unix epoch.
pub(crate) fn timeuuid(micros: i64, clock_seq: u16, node: [u8; 6]) -> [u8; 16] {
    let ticks = (micros.saturating_mul(10)).saturating_add(UUID_EPOCH_OFFSET) as u64;
    let mut b = [0u8; 16];
    b[0..4].copy_from_slice(&((ticks & 0xFFFF_FFFF) as u32).to_be_bytes());
    b[4..6].copy_from_slice(&(((ticks >> 32) & 0xFFFF) as u16).to_be_bytes());
    b[6..8].copy_from_slice(&((((ticks >> 48) & 0x0FFF) as u16) | 0x1000).to_be_bytes());
    b[8] = 0x80 | ((clock_seq >> 8) as u8 & 0x3F);
    b[9] = clock_seq as u8;
    b[10..16].copy_from_slice(&node);
    b
}

/// Milliseconds since the Unix epoch of a version-1 UUID.
pub(crate) fn timeuuid_millis(u: &[u8; 16]) -> i64 {
    let low = u32::from_be_bytes([u[0], u[1], u[2], u[3]]) as i64;
    let mid = u16::from_be_bytes([u[4], u[5]]) as i64;
    let hi = (u16::from_be_bytes([u[6], u[7]]) & 0x0FFF) as i64;
    let ticks = (hi << 48) | (mid << 32) | low;
    (ticks - UUID_EPOCH_OFFSET).div_euclid(10_000)
}

/// The smallest (`max == false`) or greatest timeuuid of a millisecond, as Cassandra's
/// `minTimeuuid`/`maxTimeuuid`.
fn bounding_timeuuid(millis: i64, max: bool) -> [u8; 16] {
    let micros = millis
        .saturating_mul(1000)
        .saturating_add(if max { 999 } else { 0 });
    let mut b = timeuuid(micros, 0, [0; 6]);
    if max {
        // The greatest tick of the millisecond, and the greatest low half as signed bytes.
        let ticks = millis
            .saturating_mul(10_000)
            .saturating_add(9_999)
            .saturating_add(UUID_EPOCH_OFFSET) as u64;
        b[0..4].copy_from_slice(&((ticks & 0xFFFF_FFFF) as u32).to_be_bytes());
        b[4..6].copy_from_slice(&(((ticks >> 32) & 0xFFFF) as u16).to_be_bytes());
        b[6..8].copy_from_slice(&((((ticks >> 48) & 0x0FFF) as u16) | 0x1000).to_be_bytes());
        b[8..16].copy_from_slice(&[0x7F; 8]);
    } else {
        b[8..16].copy_from_slice(&[0x80; 8]);
    }
    b
}

fn date_of_millis(ms: i64) -> CqlValue {
    let days = ms.div_euclid(86_400_000);
    CqlValue::Date((days + DATE_EPOCH).clamp(0, u32::MAX as i64) as u32)
}

fn millis_of(v: &CqlValue) -> Option<i64> {
    match v {
        CqlValue::Timeuuid(u) => Some(timeuuid_millis(u)),
        CqlValue::Timestamp(ms) => Some(*ms),
        CqlValue::Date(d) => Some((*d as i64 - DATE_EPOCH) * 86_400_000),
        _ => None,
    }
}

/// Calls a native function on terms. `target`: the receiver's type, used to type the arguments
/// of conversion functions. `Ok(None)` for a null result.
pub(crate) fn call_function(
    name: &str,
    args: &[Term],
    target: Option<&CqlType>,
    ctx: &EvalCtx<'_>,
    receiver: &str,
) -> Result<Option<CqlValue>, ExecError> {
    let lname = name.to_ascii_lowercase();
    let lname = lname.strip_prefix("system.").unwrap_or(&lname);
    let arity = |n: usize| -> Result<(), ExecError> {
        if args.len() != n {
            return invalid(format!("Invalid number of arguments in call to function system.{lname}: {n} required but {} provided", args.len()));
        }
        Ok(())
    };
    // Arguments of time conversion functions: a timeuuid, timestamp or date term.
    let time_arg = |ctx: &EvalCtx<'_>| -> Result<Option<CqlValue>, ExecError> {
        arity(1)?;
        let t = &args[0];
        let v = match t {
            Term::FunctionCall { name, args } => call_function(name, args, None, ctx, receiver)?,
            Term::Cast { ty, term } => eval(term, ty, ctx, receiver)?.into_option(),
            other => eval(other, &CqlType::Timeuuid, ctx, receiver)?.into_option(),
        };
        Ok(v)
    };
    let micros = || ctx.clock.now();
    Ok(match lname {
        "now" | "currenttimeuuid" => {
            arity(0)?;
            let m = micros();
            Some(CqlValue::Timeuuid(timeuuid(
                m,
                (m as u64 % 0x3FFF) as u16,
                ctx.node,
            )))
        }
        "uuid" => {
            arity(0)?;
            Some(CqlValue::Uuid(*uuid::Uuid::new_v4().as_bytes()))
        }
        "currenttimestamp" => {
            arity(0)?;
            Some(CqlValue::Timestamp(
                ctx.clock.wall_micros().div_euclid(1000),
            ))
        }
        "currentdate" => {
            arity(0)?;
            Some(date_of_millis(ctx.clock.wall_micros().div_euclid(1000)))
        }
        "currenttime" => {
            arity(0)?;
            Some(CqlValue::Time(
                ctx.clock.wall_micros().rem_euclid(MICROS_PER_DAY) * 1000,
            ))
        }
        "totimestamp" | "dateof" => time_arg(ctx)?
            .and_then(|v| millis_of(&v))
            .map(CqlValue::Timestamp),
        "todate" => time_arg(ctx)?
            .and_then(|v| millis_of(&v))
            .map(date_of_millis),
        "tounixtimestamp" | "unixtimestampof" => time_arg(ctx)?
            .and_then(|v| millis_of(&v))
            .map(CqlValue::BigInt),
        "mintimeuuid" | "maxtimeuuid" => {
            arity(1)?;
            let v = eval(&args[0], &CqlType::Timestamp, ctx, receiver)?.into_option();
            v.and_then(|v| millis_of(&v))
                .map(|ms| CqlValue::Timeuuid(bounding_timeuuid(ms, lname == "maxtimeuuid")))
        }
        other => {
            if let Some(from) = other.strip_suffix("asblob") {
                arity(1)?;
                let ty = types::parse_type_name(from)
                    .ok_or_else(|| ExecError::Invalid(format!("Unknown function '{name}'")))?;
                return Ok(eval(&args[0], &ty, ctx, receiver)?
                    .into_option()
                    .map(|v| CqlValue::Blob(v.serialize())));
            }
            if let Some(to) = other.strip_prefix("blobas") {
                arity(1)?;
                let ty = types::parse_type_name(to)
                    .ok_or_else(|| ExecError::Invalid(format!("Unknown function '{name}'")))?;
                let blob = eval(&args[0], &CqlType::Blob, ctx, receiver)?.into_option();
                return match blob {
                    Some(CqlValue::Blob(b)) => decode_bound(&ty, &b, receiver).map(Some),
                    _ => Ok(None),
                };
            }
            let _ = target;
            return invalid(format!("Unknown function '{name}'"));
        }
    })
}

/// The result type of a native function of no column argument, for select-list metadata.
pub(crate) fn function_result_type(name: &str, arg_type: Option<&CqlType>) -> Option<CqlType> {
    let lname = name.to_ascii_lowercase();
    let lname = lname.strip_prefix("system.").unwrap_or(&lname);
    Some(match lname {
        "now" | "currenttimeuuid" | "mintimeuuid" | "maxtimeuuid" => CqlType::Timeuuid,
        "uuid" => CqlType::Uuid,
        "currenttimestamp" | "totimestamp" | "dateof" => CqlType::Timestamp,
        "currentdate" | "todate" => CqlType::Date,
        "currenttime" => CqlType::Time,
        "tounixtimestamp" | "unixtimestampof" => CqlType::BigInt,
        other if other.ends_with("asblob") => CqlType::Blob,
        other if other.starts_with("blobas") => types::parse_type_name(&other["blobas".len()..])?,
        _ => {
            let _ = arg_type;
            return None;
        }
    })
}

/// Applies a time conversion function to a value (used by select lists on column values).
pub(crate) fn convert_time(name: &str, v: &CqlValue) -> Option<CqlValue> {
    let lname = name.to_ascii_lowercase();
    let lname = lname.strip_prefix("system.").unwrap_or(&lname);
    let ms = millis_of(v)?;
    Some(match lname {
        "totimestamp" | "dateof" => CqlValue::Timestamp(ms),
        "todate" => date_of_millis(ms),
        "tounixtimestamp" | "unixtimestampof" => CqlValue::BigInt(ms),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeuuid_round_trips_millis_and_orders() {
        let node = [1, 2, 3, 4, 5, 6];
        let a = timeuuid(1_700_000_000_123_456, 7, node);
        assert_eq!(uuid::Uuid::from_bytes(a).get_version_num(), 1);
        assert_eq!(timeuuid_millis(&a), 1_700_000_000_123);
        let b = timeuuid(1_700_000_000_123_457, 7, node);
        assert_eq!(
            types::compare(&CqlValue::Timeuuid(a), &CqlValue::Timeuuid(b)),
            std::cmp::Ordering::Less
        );
        let lo = bounding_timeuuid(1_700_000_000_123, false);
        let hi = bounding_timeuuid(1_700_000_000_123, true);
        for u in [a, b] {
            assert!(types::compare(&CqlValue::Timeuuid(lo), &CqlValue::Timeuuid(u)).is_le());
            assert!(types::compare(&CqlValue::Timeuuid(hi), &CqlValue::Timeuuid(u)).is_ge());
        }
    }

    #[test]
    fn sets_and_maps_are_canonical() {
        let s = set_of(vec![CqlValue::Int(3), CqlValue::Int(1), CqlValue::Int(3)]);
        assert_eq!(s, CqlValue::Set(vec![CqlValue::Int(1), CqlValue::Int(3)]));
        let m = map_of(vec![
            (CqlValue::Int(2), CqlValue::Int(0)),
            (CqlValue::Int(1), CqlValue::Int(0)),
            (CqlValue::Int(2), CqlValue::Int(9)),
        ]);
        assert_eq!(
            m,
            CqlValue::Map(vec![
                (CqlValue::Int(1), CqlValue::Int(0)),
                (CqlValue::Int(2), CqlValue::Int(9))
            ])
        );
    }
}
