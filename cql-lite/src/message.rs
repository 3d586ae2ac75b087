//! Native protocol v4 messages: every request and response body, both directions.
//!
//! A frame's body is a message whose layout depends on the opcode (protocol v4 §4). The server
//! decodes [`Request`]s and encodes [`Response`]s; the client does the reverse; both directions
//! are implemented for both so that each side can be tested against the other and the tests can
//! play either role. Everything here is a pure function over bytes.
//!
//! # Layers
//! - [`wire`]: the spec's primitive notations (§3) — `[int]`, `[long]`, `[short]`, `[string]`,
//!   `[long string]`, `[uuid]`, `[string list]`, `[bytes]`, `[value]`, `[short bytes]`, `[inet]`,
//!   `[consistency]`, `[string map]`, `[string multimap]`, `[bytes map]` — as a bounds-checked
//!   [`wire::Reader`] and `put_*` writers.
//! - Type options (`[option]`, §4.2.5.2) ↔ [`CqlType`]. `frozen<>` is not on the wire; `duration`
//!   is sent as the custom class `org.apache.cassandra.db.marshal.DurationType` (v4 has no native
//!   id for it; the v5 id 0x0015 is accepted too). A user-defined type (0x0030) is decoded as a
//!   tuple of its field types, which deserializes its values correctly; the field names and type
//!   name are dropped because `CqlType` has no UDT variant, so re-encoding yields a tuple option.
//! - Messages: [`Request`] and [`Response`] with `decode(opcode, body)` and `encode()`.
//! - Frames: [`request_frame`], [`response_frame`], [`decode_request_frame`] and
//!   [`decode_response_frame`] add or strip what the header flags put before the message (a
//!   response's tracing id, warnings, custom payload; a request's custom payload).
//!
//! # Robustness
//! Decoding runs on bytes from the network, so every read checks that the bytes are there and
//! answers [`ProtocolError`] otherwise; nothing panics. A declared count never drives an
//! allocation by itself: pre-allocation is capped by what the remaining bytes could hold, and a
//! count that cannot fit in them is rejected up front. Type options nest at most
//! [`MAX_TYPE_DEPTH`] deep, so a hostile `list<list<list<...>>>` cannot exhaust the stack.
//! Trailing bytes after a message are ignored, as the spec asks of clients (it reserves them for
//! future extensions).
//!
//! # Encoding limits
//! Encoders cannot fail. Where the wire's counts are `[short]` (string lengths, value counts,
//! list sizes) the encoder writes at most 65 535 items/bytes: a `[string]` longer than that is
//! cut at a character boundary (only error messages realistically get there); Cassandra caps
//! bind variables at 65 535 too.
//!
//! # Flags chosen by the encoders
//! QUERY/EXECUTE parameters set exactly the flags their fields call for (0x01 values when any
//! value or a names list is present, 0x40 names, 0x02 skip metadata, 0x04 page size, 0x08 paging
//! state, 0x10 serial consistency, 0x20 default timestamp) — so the Python driver's usual request
//! carries 0x24 and cqlsh's 0x34. Result metadata uses the global-table-spec flag (0x0001) when
//! all columns share one keyspace and table, as Cassandra does, and per-column specs otherwise.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use bytes::Bytes;
use thiserror::Error;

use crate::frame::{Flags, Frame, FrameError, FrameHeader, Opcode};
use crate::types::CqlType;

/// Deepest nesting of type options accepted from the network.
pub const MAX_TYPE_DEPTH: usize = 64;

/// The Java class Cassandra names `duration` by in protocol v4.
pub const DURATION_CLASS: &str = "org.apache.cassandra.db.marshal.DurationType";

/// Why a message body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProtocolError {
    /// The body ended before a field did.
    #[error("truncated message: {what} needs {needed} bytes, {available} left")]
    Truncated {
        /// The field being read.
        what: &'static str,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes that were left.
        available: usize,
    },
    /// A field whose value is not allowed (bad UTF-8, unknown consistency, negative count...).
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// The field being read.
        what: &'static str,
        /// What was wrong with it.
        reason: String,
    },
    /// A response opcode where a request was expected.
    #[error("opcode {0:?} is not a request")]
    NotARequest(Opcode),
    /// A request opcode where a response was expected.
    #[error("opcode {0:?} is not a response")]
    NotAResponse(Opcode),
    /// The compression flag is set, but no compression was negotiated (none is implemented).
    #[error("compressed frame received, but no compression was negotiated")]
    Compressed,
    /// Type options nested deeper than [`MAX_TYPE_DEPTH`].
    #[error("type nesting deeper than {MAX_TYPE_DEPTH} levels")]
    TooDeep,
}

impl ProtocolError {
    /// The ERROR a server answers this with: a Protocol error (0x000A) carrying this message.
    pub fn to_error_body(&self) -> ErrorBody {
        ErrorBody::new(ErrorKind::Protocol, self.to_string())
    }
}

fn invalid(what: &'static str, reason: impl Into<String>) -> ProtocolError {
    ProtocolError::Invalid {
        what,
        reason: reason.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Primitive notations (§3)
// ---------------------------------------------------------------------------------------------

/// The protocol's primitive notations (§3): a bounds-checked reader and matching writers.
pub mod wire {
    use super::*;

    /// Reads primitives off a message body, never past its end; byte fields are zero-copy
    /// slices of the body.
    #[derive(Debug, Clone)]
    pub struct Reader {
        buf: Bytes,
        pos: usize,
    }

    impl Reader {
        /// A reader at the start of `buf`.
        pub fn new(buf: Bytes) -> Reader {
            Reader { buf, pos: 0 }
        }

        /// Bytes not yet read.
        pub fn remaining(&self) -> usize {
            self.buf.len() - self.pos
        }

        /// True when everything was read.
        pub fn is_empty(&self) -> bool {
            self.remaining() == 0
        }

        fn need(&self, n: usize, what: &'static str) -> Result<(), ProtocolError> {
            if self.remaining() < n {
                Err(ProtocolError::Truncated {
                    what,
                    needed: n,
                    available: self.remaining(),
                })
            } else {
                Ok(())
            }
        }

        /// `n` raw bytes.
        pub fn raw(&mut self, n: usize, what: &'static str) -> Result<Bytes, ProtocolError> {
            self.need(n, what)?;
            let b = self.buf.slice(self.pos..self.pos + n);
            self.pos += n;
            Ok(b)
        }

        fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], ProtocolError> {
            self.need(N, what)?;
            let mut a = [0u8; N];
            a.copy_from_slice(&self.buf[self.pos..self.pos + N]);
            self.pos += N;
            Ok(a)
        }

        /// A `[byte]`.
        pub fn byte(&mut self, what: &'static str) -> Result<u8, ProtocolError> {
            Ok(self.array::<1>(what)?[0])
        }

        /// A `[short]` (unsigned 16 bits).
        pub fn short(&mut self, what: &'static str) -> Result<u16, ProtocolError> {
            Ok(u16::from_be_bytes(self.array(what)?))
        }

        /// An `[int]`.
        pub fn int(&mut self, what: &'static str) -> Result<i32, ProtocolError> {
            Ok(i32::from_be_bytes(self.array(what)?))
        }

        /// A `[long]`.
        pub fn long(&mut self, what: &'static str) -> Result<i64, ProtocolError> {
            Ok(i64::from_be_bytes(self.array(what)?))
        }

        /// A `[uuid]`.
        pub fn uuid(&mut self, what: &'static str) -> Result<[u8; 16], ProtocolError> {
            self.array(what)
        }

        fn utf8(&mut self, n: usize, what: &'static str) -> Result<String, ProtocolError> {
            let b = self.raw(n, what)?;
            String::from_utf8(b.to_vec()).map_err(|e| invalid(what, format!("invalid UTF-8: {e}")))
        }

        /// A `[string]`.
        pub fn string(&mut self, what: &'static str) -> Result<String, ProtocolError> {
            let n = self.short(what)?;
            self.utf8(n.into(), what)
        }

        /// A `[long string]`.
        pub fn long_string(&mut self, what: &'static str) -> Result<String, ProtocolError> {
            let n = self.int(what)?;
            let n =
                usize::try_from(n).map_err(|_| invalid(what, format!("negative length {n}")))?;
            self.utf8(n, what)
        }

        /// A `[short]` count of items that each take at least `min_item` bytes, checked against
        /// the bytes left so that a hostile count cannot drive an allocation.
        pub fn short_count(
            &mut self,
            min_item: usize,
            what: &'static str,
        ) -> Result<usize, ProtocolError> {
            let n = usize::from(self.short(what)?);
            self.need(n.saturating_mul(min_item), what)?;
            Ok(n)
        }

        /// An `[int]` count, as [`Reader::short_count`]; negative counts are invalid.
        pub fn int_count(
            &mut self,
            min_item: usize,
            what: &'static str,
        ) -> Result<usize, ProtocolError> {
            let n = self.int(what)?;
            let n = usize::try_from(n).map_err(|_| invalid(what, format!("negative count {n}")))?;
            self.need(n.saturating_mul(min_item), what)?;
            Ok(n)
        }

        /// A `[string list]`.
        pub fn string_list(&mut self, what: &'static str) -> Result<Vec<String>, ProtocolError> {
            let n = self.short_count(2, what)?;
            (0..n).map(|_| self.string(what)).collect()
        }

        /// A `[bytes]`: `None` for a negative length (null).
        pub fn bytes(&mut self, what: &'static str) -> Result<Option<Bytes>, ProtocolError> {
            let n = self.int(what)?;
            if n < 0 {
                return Ok(None);
            }
            self.raw(n as usize, what).map(Some)
        }

        /// A `[value]`: -1 is null, -2 is "not set", other negative lengths are invalid.
        pub fn value(&mut self, what: &'static str) -> Result<BoundValue, ProtocolError> {
            match self.int(what)? {
                -1 => Ok(BoundValue::Null),
                -2 => Ok(BoundValue::Unset),
                n if n < 0 => Err(invalid(what, format!("value length {n}"))),
                n => self.raw(n as usize, what).map(BoundValue::Value),
            }
        }

        /// A `[short bytes]`.
        pub fn short_bytes(&mut self, what: &'static str) -> Result<Bytes, ProtocolError> {
            let n = self.short(what)?;
            self.raw(n.into(), what)
        }

        /// An `[inet]`: address size byte (4 or 16), address, `[int]` port.
        pub fn inet(&mut self, what: &'static str) -> Result<SocketAddr, ProtocolError> {
            let ip = match self.byte(what)? {
                4 => IpAddr::V4(Ipv4Addr::from(self.array::<4>(what)?)),
                16 => IpAddr::V6(Ipv6Addr::from(self.array::<16>(what)?)),
                n => return Err(invalid(what, format!("address of {n} bytes"))),
            };
            let port = self.int(what)?;
            let port = u16::try_from(port).map_err(|_| invalid(what, format!("port {port}")))?;
            Ok(SocketAddr::new(ip, port))
        }

        /// A `[consistency]`.
        pub fn consistency(&mut self, what: &'static str) -> Result<Consistency, ProtocolError> {
            let code = self.short(what)?;
            Consistency::from_code(code)
                .ok_or_else(|| invalid(what, format!("unknown consistency 0x{code:04x}")))
        }

        /// A `[string map]`, in wire order.
        pub fn string_map(
            &mut self,
            what: &'static str,
        ) -> Result<Vec<(String, String)>, ProtocolError> {
            let n = self.short_count(4, what)?;
            (0..n)
                .map(|_| Ok((self.string(what)?, self.string(what)?)))
                .collect()
        }

        /// A `[string multimap]` (a repeated key keeps its last list).
        pub fn string_multimap(
            &mut self,
            what: &'static str,
        ) -> Result<HashMap<String, Vec<String>>, ProtocolError> {
            let n = self.short_count(4, what)?;
            let mut map = HashMap::with_capacity(n);
            for _ in 0..n {
                let k = self.string(what)?;
                let v = self.string_list(what)?;
                map.insert(k, v);
            }
            Ok(map)
        }

        /// A `[bytes map]`, in wire order.
        pub fn bytes_map(&mut self, what: &'static str) -> Result<BytesMap, ProtocolError> {
            let n = self.short_count(6, what)?;
            (0..n)
                .map(|_| Ok((self.string(what)?, self.bytes(what)?)))
                .collect()
        }
    }

    fn short_len(n: usize) -> u16 {
        u16::try_from(n).unwrap_or(u16::MAX)
    }

    fn int_len(n: usize) -> i32 {
        i32::try_from(n).unwrap_or(i32::MAX)
    }

    /// Writes a `[byte]`.
    pub fn put_byte(out: &mut Vec<u8>, v: u8) {
        out.push(v);
    }

    /// Writes a `[short]`.
    pub fn put_short(out: &mut Vec<u8>, v: u16) {
        out.extend_from_slice(&v.to_be_bytes());
    }

    /// Writes an `[int]`.
    pub fn put_int(out: &mut Vec<u8>, v: i32) {
        out.extend_from_slice(&v.to_be_bytes());
    }

    /// Writes a `[long]`.
    pub fn put_long(out: &mut Vec<u8>, v: i64) {
        out.extend_from_slice(&v.to_be_bytes());
    }

    /// Writes a `[uuid]`.
    pub fn put_uuid(out: &mut Vec<u8>, v: &[u8; 16]) {
        out.extend_from_slice(v);
    }

    /// Writes a `[string]`, cut at a character boundary if longer than 65 535 bytes.
    pub fn put_string(out: &mut Vec<u8>, s: &str) {
        let mut end = s.len().min(u16::MAX as usize);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        put_short(out, end as u16);
        out.extend_from_slice(&s.as_bytes()[..end]);
    }

    /// Writes a `[long string]`.
    pub fn put_long_string(out: &mut Vec<u8>, s: &str) {
        put_int(out, int_len(s.len()));
        out.extend_from_slice(s.as_bytes());
    }

    /// Writes a `[string list]` (at most 65 535 strings).
    pub fn put_string_list(out: &mut Vec<u8>, list: &[String]) {
        let n = short_len(list.len());
        put_short(out, n);
        for s in &list[..usize::from(n)] {
            put_string(out, s);
        }
    }

    /// Writes a `[bytes]`; `None` is null (length -1).
    pub fn put_bytes(out: &mut Vec<u8>, b: Option<&[u8]>) {
        match b {
            Some(b) => {
                put_int(out, int_len(b.len()));
                out.extend_from_slice(b);
            }
            None => put_int(out, -1),
        }
    }

    /// Writes a `[value]` (null is -1, unset is -2).
    pub fn put_value(out: &mut Vec<u8>, v: &BoundValue) {
        match v {
            BoundValue::Null => put_int(out, -1),
            BoundValue::Unset => put_int(out, -2),
            BoundValue::Value(b) => put_bytes(out, Some(b)),
        }
    }

    /// Writes a `[short bytes]` (at most 65 535 bytes).
    pub fn put_short_bytes(out: &mut Vec<u8>, b: &[u8]) {
        let n = short_len(b.len());
        put_short(out, n);
        out.extend_from_slice(&b[..usize::from(n)]);
    }

    /// Writes an `[inet]`.
    pub fn put_inet(out: &mut Vec<u8>, addr: &SocketAddr) {
        match addr.ip() {
            IpAddr::V4(a) => {
                out.push(4);
                out.extend_from_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                out.push(16);
                out.extend_from_slice(&a.octets());
            }
        }
        put_int(out, i32::from(addr.port()));
    }

    /// Writes a `[consistency]`.
    pub fn put_consistency(out: &mut Vec<u8>, c: Consistency) {
        put_short(out, c.code());
    }

    /// Writes a `[string map]` in the order given.
    pub fn put_string_map(out: &mut Vec<u8>, map: &[(String, String)]) {
        let n = short_len(map.len());
        put_short(out, n);
        for (k, v) in &map[..usize::from(n)] {
            put_string(out, k);
            put_string(out, v);
        }
    }

    /// Writes a `[string multimap]`, keys sorted so the bytes are deterministic.
    pub fn put_string_multimap(out: &mut Vec<u8>, map: &HashMap<String, Vec<String>>) {
        let mut keys: Vec<&String> = map.keys().collect();
        keys.sort();
        let n = short_len(keys.len());
        put_short(out, n);
        for k in &keys[..usize::from(n)] {
            put_string(out, k);
            put_string_list(out, &map[*k]);
        }
    }

    /// Writes a `[bytes map]` in the order given.
    pub fn put_bytes_map(out: &mut Vec<u8>, map: &[(String, Option<Bytes>)]) {
        let n = short_len(map.len());
        put_short(out, n);
        for (k, v) in &map[..usize::from(n)] {
            put_string(out, k);
            put_bytes(out, v.as_deref());
        }
    }
}

use wire::*;

/// A `[bytes map]`: custom payloads.
pub type BytesMap = Vec<(String, Option<Bytes>)>;

// ---------------------------------------------------------------------------------------------
// Consistency
// ---------------------------------------------------------------------------------------------

/// A consistency level, with its protocol code (§3 `[consistency]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Consistency {
    /// 0x0000: a write succeeds once any node (even a hint) has it.
    Any,
    /// 0x0001: one replica.
    #[default]
    One,
    /// 0x0002: two replicas.
    Two,
    /// 0x0003: three replicas.
    Three,
    /// 0x0004: a majority of all replicas.
    Quorum,
    /// 0x0005: every replica.
    All,
    /// 0x0006: a majority of the local datacenter's replicas.
    LocalQuorum,
    /// 0x0007: a majority in every datacenter.
    EachQuorum,
    /// 0x0008: the Paxos phase of lightweight transactions, cluster-wide.
    Serial,
    /// 0x0009: the Paxos phase, local datacenter.
    LocalSerial,
    /// 0x000A: one replica in the local datacenter.
    LocalOne,
}

impl Consistency {
    /// Every level, in code order.
    pub const ALL_LEVELS: [Consistency; 11] = [
        Consistency::Any,
        Consistency::One,
        Consistency::Two,
        Consistency::Three,
        Consistency::Quorum,
        Consistency::All,
        Consistency::LocalQuorum,
        Consistency::EachQuorum,
        Consistency::Serial,
        Consistency::LocalSerial,
        Consistency::LocalOne,
    ];

    /// The protocol code.
    pub fn code(self) -> u16 {
        self as u16
    }

    /// The level for a protocol code.
    pub fn from_code(code: u16) -> Option<Consistency> {
        Consistency::ALL_LEVELS.get(usize::from(code)).copied()
    }

    /// The upper-case name (`LOCAL_QUORUM`).
    pub fn as_str(self) -> &'static str {
        match self {
            Consistency::Any => "ANY",
            Consistency::One => "ONE",
            Consistency::Two => "TWO",
            Consistency::Three => "THREE",
            Consistency::Quorum => "QUORUM",
            Consistency::All => "ALL",
            Consistency::LocalQuorum => "LOCAL_QUORUM",
            Consistency::EachQuorum => "EACH_QUORUM",
            Consistency::Serial => "SERIAL",
            Consistency::LocalSerial => "LOCAL_SERIAL",
            Consistency::LocalOne => "LOCAL_ONE",
        }
    }

    /// True for SERIAL and LOCAL_SERIAL.
    pub fn is_serial(self) -> bool {
        matches!(self, Consistency::Serial | Consistency::LocalSerial)
    }
}

impl fmt::Display for Consistency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown consistency level name.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown consistency level '{0}' (expected one of ANY, ONE, TWO, THREE, QUORUM, ALL, LOCAL_QUORUM, EACH_QUORUM, SERIAL, LOCAL_SERIAL, LOCAL_ONE)")]
pub struct ParseConsistencyError(pub String);

impl FromStr for Consistency {
    type Err = ParseConsistencyError;

    /// Parses a level name case-insensitively (`quorum`, `LOCAL_ONE`).
    fn from_str(s: &str) -> Result<Consistency, ParseConsistencyError> {
        let t = s.trim();
        Consistency::ALL_LEVELS
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(t))
            .ok_or_else(|| ParseConsistencyError(s.to_string()))
    }
}

// ---------------------------------------------------------------------------------------------
// Type options
// ---------------------------------------------------------------------------------------------

/// Writes a type as an `[option]`. `frozen<>` is dropped; `duration` is the custom DurationType.
pub fn put_type(out: &mut Vec<u8>, ty: &CqlType) {
    let id: u16 = match ty {
        CqlType::Frozen(inner) => return put_type(out, inner),
        CqlType::Custom(class) => {
            put_short(out, 0x0000);
            put_string(out, class);
            return;
        }
        CqlType::Duration => {
            put_short(out, 0x0000);
            put_string(out, DURATION_CLASS);
            return;
        }
        CqlType::Ascii => 0x0001,
        CqlType::BigInt => 0x0002,
        CqlType::Blob => 0x0003,
        CqlType::Boolean => 0x0004,
        CqlType::Counter => 0x0005,
        CqlType::Decimal => 0x0006,
        CqlType::Double => 0x0007,
        CqlType::Float => 0x0008,
        CqlType::Int => 0x0009,
        CqlType::Timestamp => 0x000B,
        CqlType::Uuid => 0x000C,
        CqlType::Text => 0x000D,
        CqlType::Varint => 0x000E,
        CqlType::Timeuuid => 0x000F,
        CqlType::Inet => 0x0010,
        CqlType::Date => 0x0011,
        CqlType::Time => 0x0012,
        CqlType::SmallInt => 0x0013,
        CqlType::TinyInt => 0x0014,
        CqlType::List(elem) => {
            put_short(out, 0x0020);
            return put_type(out, elem);
        }
        CqlType::Map(k, v) => {
            put_short(out, 0x0021);
            put_type(out, k);
            return put_type(out, v);
        }
        CqlType::Set(elem) => {
            put_short(out, 0x0022);
            return put_type(out, elem);
        }
        CqlType::Tuple(types) => {
            put_short(out, 0x0031);
            let n = u16::try_from(types.len()).unwrap_or(u16::MAX);
            put_short(out, n);
            for t in &types[..usize::from(n)] {
                put_type(out, t);
            }
            return;
        }
    };
    put_short(out, id);
}

/// Reads an `[option]` type. A UDT (0x0030) becomes a tuple of its field types.
pub fn read_type(r: &mut Reader) -> Result<CqlType, ProtocolError> {
    read_type_at(r, 0)
}

fn read_type_at(r: &mut Reader, depth: usize) -> Result<CqlType, ProtocolError> {
    if depth >= MAX_TYPE_DEPTH {
        return Err(ProtocolError::TooDeep);
    }
    let sub = |r: &mut Reader| read_type_at(r, depth + 1).map(Box::new);
    Ok(match r.short("type option")? {
        0x0000 => {
            let class = r.string("custom type class")?;
            if class == DURATION_CLASS {
                CqlType::Duration
            } else {
                CqlType::Custom(class)
            }
        }
        0x0001 => CqlType::Ascii,
        0x0002 => CqlType::BigInt,
        0x0003 => CqlType::Blob,
        0x0004 => CqlType::Boolean,
        0x0005 => CqlType::Counter,
        0x0006 => CqlType::Decimal,
        0x0007 => CqlType::Double,
        0x0008 => CqlType::Float,
        0x0009 => CqlType::Int,
        0x000A | 0x000D => CqlType::Text,
        0x000B => CqlType::Timestamp,
        0x000C => CqlType::Uuid,
        0x000E => CqlType::Varint,
        0x000F => CqlType::Timeuuid,
        0x0010 => CqlType::Inet,
        0x0011 => CqlType::Date,
        0x0012 => CqlType::Time,
        0x0013 => CqlType::SmallInt,
        0x0014 => CqlType::TinyInt,
        0x0015 => CqlType::Duration,
        0x0020 => CqlType::List(sub(r)?),
        0x0021 => {
            let k = sub(r)?;
            CqlType::Map(k, sub(r)?)
        }
        0x0022 => CqlType::Set(sub(r)?),
        0x0030 => {
            let _keyspace = r.string("UDT keyspace")?;
            let _name = r.string("UDT name")?;
            let n = r.short_count(4, "UDT fields")?;
            let mut fields = Vec::with_capacity(n);
            for _ in 0..n {
                let _field = r.string("UDT field name")?;
                fields.push(read_type_at(r, depth + 1)?);
            }
            CqlType::Tuple(fields)
        }
        0x0031 => {
            let n = r.short_count(2, "tuple types")?;
            let mut types = Vec::with_capacity(n);
            for _ in 0..n {
                types.push(read_type_at(r, depth + 1)?);
            }
            CqlType::Tuple(types)
        }
        id => return Err(invalid("type option", format!("unknown id 0x{id:04x}"))),
    })
}

// ---------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------

/// A bound variable's value in QUERY, EXECUTE and BATCH (a `[value]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BoundValue {
    /// Length -1: null (a write of null is a deletion).
    Null,
    /// Length -2 (new in v4): leave the column as it is.
    Unset,
    /// The serialized value (see `CqlValue::serialize`).
    Value(Bytes),
}

/// The `<query_parameters>` of QUERY and EXECUTE (§4.1.4).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueryParameters {
    /// Consistency level of the operation.
    pub consistency: Consistency,
    /// Bound values, in marker order (or in `names` order when names are given).
    pub values: Vec<BoundValue>,
    /// Names of the values (flag 0x40), one per value, for `:name` markers.
    pub names: Option<Vec<String>>,
    /// Flag 0x02: the client has the result metadata already; send rows without it.
    pub skip_metadata: bool,
    /// Flag 0x04: desired page size in rows (non-positive means no paging).
    pub page_size: Option<i32>,
    /// Flag 0x08: where to resume, from a previous page's result.
    pub paging_state: Option<Bytes>,
    /// Flag 0x10: consistency of the Paxos phase of conditional writes.
    pub serial_consistency: Option<Consistency>,
    /// Flag 0x20: write timestamp in microseconds, replacing the server's.
    pub default_timestamp: Option<i64>,
}

const QF_VALUES: u8 = 0x01;
const QF_SKIP_METADATA: u8 = 0x02;
const QF_PAGE_SIZE: u8 = 0x04;
const QF_PAGING_STATE: u8 = 0x08;
const QF_SERIAL: u8 = 0x10;
const QF_TIMESTAMP: u8 = 0x20;
const QF_NAMES: u8 = 0x40;

impl QueryParameters {
    /// Parameters with this consistency and nothing else.
    pub fn new(consistency: Consistency) -> QueryParameters {
        QueryParameters {
            consistency,
            ..QueryParameters::default()
        }
    }

    /// The flag byte these parameters encode with.
    pub fn flags(&self) -> u8 {
        let mut f = 0;
        if !self.values.is_empty() || self.names.is_some() {
            f |= QF_VALUES;
        }
        if self.names.is_some() {
            f |= QF_NAMES;
        }
        if self.skip_metadata {
            f |= QF_SKIP_METADATA;
        }
        if self.page_size.is_some() {
            f |= QF_PAGE_SIZE;
        }
        if self.paging_state.is_some() {
            f |= QF_PAGING_STATE;
        }
        if self.serial_consistency.is_some() {
            f |= QF_SERIAL;
        }
        if self.default_timestamp.is_some() {
            f |= QF_TIMESTAMP;
        }
        f
    }

    /// Appends the encoded parameters. With names, each value is preceded by its name (an
    /// empty name if `names` is shorter than `values`).
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_consistency(out, self.consistency);
        let flags = self.flags();
        out.push(flags);
        if flags & QF_VALUES != 0 {
            let n = u16::try_from(self.values.len()).unwrap_or(u16::MAX);
            put_short(out, n);
            for (i, v) in self.values[..usize::from(n)].iter().enumerate() {
                if let Some(names) = &self.names {
                    put_string(out, names.get(i).map_or("", String::as_str));
                }
                put_value(out, v);
            }
        }
        if let Some(n) = self.page_size {
            put_int(out, n);
        }
        if let Some(p) = &self.paging_state {
            put_bytes(out, Some(p));
        }
        if let Some(c) = self.serial_consistency {
            put_consistency(out, c);
        }
        if let Some(t) = self.default_timestamp {
            put_long(out, t);
        }
    }

    /// Reads parameters. Names are kept only when both 0x01 and 0x40 are set (the spec says
    /// 0x40 alone is ignored); a null paging state counts as none.
    pub fn decode(r: &mut Reader) -> Result<QueryParameters, ProtocolError> {
        let consistency = r.consistency("consistency")?;
        let flags = r.byte("query flags")?;
        let mut p = QueryParameters::new(consistency);
        if flags & QF_VALUES != 0 {
            let with_names = flags & QF_NAMES != 0;
            let n = r.short_count(if with_names { 6 } else { 4 }, "values")?;
            let mut names = Vec::new();
            p.values.reserve(n);
            for _ in 0..n {
                if with_names {
                    names.push(r.string("value name")?);
                }
                p.values.push(r.value("value")?);
            }
            if with_names {
                p.names = Some(names);
            }
        }
        p.skip_metadata = flags & QF_SKIP_METADATA != 0;
        if flags & QF_PAGE_SIZE != 0 {
            p.page_size = Some(r.int("page size")?);
        }
        if flags & QF_PAGING_STATE != 0 {
            p.paging_state = r.bytes("paging state")?;
        }
        if flags & QF_SERIAL != 0 {
            p.serial_consistency = Some(r.consistency("serial consistency")?);
        }
        if flags & QF_TIMESTAMP != 0 {
            p.default_timestamp = Some(r.long("default timestamp")?);
        }
        Ok(p)
    }
}

/// The kind of a BATCH (§4.1.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum BatchType {
    /// 0: atomic through the batch log.
    #[default]
    Logged = 0,
    /// 1: no batch log.
    Unlogged = 1,
    /// 2: counter updates only.
    Counter = 2,
}

impl BatchType {
    fn from_byte(b: u8) -> Option<BatchType> {
        match b {
            0 => Some(BatchType::Logged),
            1 => Some(BatchType::Unlogged),
            2 => Some(BatchType::Counter),
            _ => None,
        }
    }
}

/// What a batch entry runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchQuery {
    /// Kind 0: statement text.
    Query(String),
    /// Kind 1: a prepared statement's id.
    Prepared(Bytes),
}

/// One statement of a BATCH with its bound values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchStatement {
    /// The statement text or prepared id.
    pub query: BatchQuery,
    /// Its bound values, in marker order.
    pub values: Vec<BoundValue>,
}

/// A request message (client → server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// STARTUP: options as a `[string map]` in wire order (`CQL_VERSION`, `COMPRESSION`,
    /// `DRIVER_NAME`...).
    Startup(Vec<(String, String)>),
    /// AUTH_RESPONSE: a SASL token (may be null).
    AuthResponse(Option<Bytes>),
    /// OPTIONS: which STARTUP options are supported.
    Options,
    /// QUERY: run a statement.
    Query {
        /// The statement text.
        query: String,
        /// Consistency, values, paging...
        params: QueryParameters,
    },
    /// PREPARE: prepare a statement.
    Prepare {
        /// The statement text.
        query: String,
    },
    /// EXECUTE: run a prepared statement.
    Execute {
        /// The prepared id.
        id: Bytes,
        /// Consistency, values, paging...
        params: QueryParameters,
    },
    /// BATCH: several writes at once.
    Batch {
        /// Logged, unlogged or counter.
        batch_type: BatchType,
        /// The statements, in order.
        statements: Vec<BatchStatement>,
        /// Consistency level of the whole batch.
        consistency: Consistency,
        /// Consistency of the Paxos phase of conditional writes (flag 0x10).
        serial_consistency: Option<Consistency>,
        /// Write timestamp in microseconds (flag 0x20).
        timestamp: Option<i64>,
    },
    /// REGISTER: event types to push (`TOPOLOGY_CHANGE`, `STATUS_CHANGE`, `SCHEMA_CHANGE`).
    Register {
        /// The event type names, as sent.
        events: Vec<String>,
    },
}

impl Request {
    /// The opcode this request travels under.
    pub fn opcode(&self) -> Opcode {
        match self {
            Request::Startup(_) => Opcode::Startup,
            Request::AuthResponse(_) => Opcode::AuthResponse,
            Request::Options => Opcode::Options,
            Request::Query { .. } => Opcode::Query,
            Request::Prepare { .. } => Opcode::Prepare,
            Request::Execute { .. } => Opcode::Execute,
            Request::Batch { .. } => Opcode::Batch,
            Request::Register { .. } => Opcode::Register,
        }
    }

    /// The opcode and body bytes of this request.
    pub fn encode(&self) -> (Opcode, Vec<u8>) {
        let mut out = Vec::new();
        match self {
            Request::Startup(options) => put_string_map(&mut out, options),
            Request::AuthResponse(token) => put_bytes(&mut out, token.as_deref()),
            Request::Options => {}
            Request::Query { query, params } => {
                put_long_string(&mut out, query);
                params.encode(&mut out);
            }
            Request::Prepare { query } => put_long_string(&mut out, query),
            Request::Execute { id, params } => {
                put_short_bytes(&mut out, id);
                params.encode(&mut out);
            }
            Request::Batch {
                batch_type,
                statements,
                consistency,
                serial_consistency,
                timestamp,
            } => {
                out.push(*batch_type as u8);
                let n = u16::try_from(statements.len()).unwrap_or(u16::MAX);
                put_short(&mut out, n);
                for s in &statements[..usize::from(n)] {
                    match &s.query {
                        BatchQuery::Query(q) => {
                            out.push(0);
                            put_long_string(&mut out, q);
                        }
                        BatchQuery::Prepared(id) => {
                            out.push(1);
                            put_short_bytes(&mut out, id);
                        }
                    }
                    let m = u16::try_from(s.values.len()).unwrap_or(u16::MAX);
                    put_short(&mut out, m);
                    for v in &s.values[..usize::from(m)] {
                        put_value(&mut out, v);
                    }
                }
                put_consistency(&mut out, *consistency);
                let mut flags = 0u8;
                if serial_consistency.is_some() {
                    flags |= QF_SERIAL;
                }
                if timestamp.is_some() {
                    flags |= QF_TIMESTAMP;
                }
                out.push(flags);
                if let Some(c) = serial_consistency {
                    put_consistency(&mut out, *c);
                }
                if let Some(t) = timestamp {
                    put_long(&mut out, *t);
                }
            }
            Request::Register { events } => put_string_list(&mut out, events),
        }
        (self.opcode(), out)
    }

    /// Decodes a request body. Response opcodes are an error. BATCH's names flag (0x40), which
    /// the spec itself calls unimplementable, is not supported: values are read without names.
    pub fn decode(opcode: Opcode, body: Bytes) -> Result<Request, ProtocolError> {
        let mut r = Reader::new(body);
        Ok(match opcode {
            Opcode::Startup => Request::Startup(r.string_map("STARTUP options")?),
            Opcode::AuthResponse => Request::AuthResponse(r.bytes("auth token")?),
            Opcode::Options => Request::Options,
            Opcode::Query => Request::Query {
                query: r.long_string("query")?,
                params: QueryParameters::decode(&mut r)?,
            },
            Opcode::Prepare => Request::Prepare {
                query: r.long_string("query")?,
            },
            Opcode::Execute => Request::Execute {
                id: r.short_bytes("prepared id")?,
                params: QueryParameters::decode(&mut r)?,
            },
            Opcode::Batch => {
                let kind = r.byte("batch type")?;
                let batch_type = BatchType::from_byte(kind)
                    .ok_or_else(|| invalid("batch type", format!("{kind}")))?;
                let n = r.short_count(5, "batch statements")?;
                let mut statements = Vec::with_capacity(n);
                for _ in 0..n {
                    let query = match r.byte("batch statement kind")? {
                        0 => BatchQuery::Query(r.long_string("batch query")?),
                        1 => BatchQuery::Prepared(r.short_bytes("batch prepared id")?),
                        k => return Err(invalid("batch statement kind", format!("{k}"))),
                    };
                    let m = r.short_count(4, "batch values")?;
                    let mut values = Vec::with_capacity(m);
                    for _ in 0..m {
                        values.push(r.value("batch value")?);
                    }
                    statements.push(BatchStatement { query, values });
                }
                let consistency = r.consistency("batch consistency")?;
                let flags = r.byte("batch flags")?;
                let serial_consistency = if flags & QF_SERIAL != 0 {
                    Some(r.consistency("batch serial consistency")?)
                } else {
                    None
                };
                let timestamp = if flags & QF_TIMESTAMP != 0 {
                    Some(r.long("batch timestamp")?)
                } else {
                    None
                };
                Request::Batch {
                    batch_type,
                    statements,
                    consistency,
                    serial_consistency,
                    timestamp,
                }
            }
            Opcode::Register => Request::Register {
                events: r.string_list("event types")?,
            },
            other => return Err(ProtocolError::NotARequest(other)),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Errors (§9)
// ---------------------------------------------------------------------------------------------

/// The ERROR codes of §9, as constants.
pub mod error_code {
    /// Server error: a bug on the server.
    pub const SERVER: i32 = 0x0000;
    /// Protocol error: the client broke the protocol.
    pub const PROTOCOL: i32 = 0x000A;
    /// Authentication failed.
    pub const BAD_CREDENTIALS: i32 = 0x0100;
    /// Not enough live replicas for the consistency level.
    pub const UNAVAILABLE: i32 = 0x1000;
    /// The coordinator is overloaded.
    pub const OVERLOADED: i32 = 0x1001;
    /// The coordinator is bootstrapping.
    pub const IS_BOOTSTRAPPING: i32 = 0x1002;
    /// TRUNCATE failed.
    pub const TRUNCATE: i32 = 0x1003;
    /// Replicas did not acknowledge a write in time.
    pub const WRITE_TIMEOUT: i32 = 0x1100;
    /// Replicas did not answer a read in time.
    pub const READ_TIMEOUT: i32 = 0x1200;
    /// Replicas failed a read.
    pub const READ_FAILURE: i32 = 0x1300;
    /// A user-defined function failed.
    pub const FUNCTION_FAILURE: i32 = 0x1400;
    /// Replicas failed a write.
    pub const WRITE_FAILURE: i32 = 0x1500;
    /// Syntax error in the statement.
    pub const SYNTAX: i32 = 0x2000;
    /// The user may not do this.
    pub const UNAUTHORIZED: i32 = 0x2100;
    /// The statement is invalid.
    pub const INVALID: i32 = 0x2200;
    /// Configuration problem.
    pub const CONFIG: i32 = 0x2300;
    /// The keyspace or table exists already.
    pub const ALREADY_EXISTS: i32 = 0x2400;
    /// The prepared id is unknown to this node.
    pub const UNPREPARED: i32 = 0x2500;
}

/// The `writeType` of write timeouts and failures.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum WriteType {
    /// A non-batched, non-counter write.
    Simple,
    /// A logged batch (the batch log was written).
    Batch,
    /// An unlogged batch.
    UnloggedBatch,
    /// A counter write.
    Counter,
    /// The write to the batch log itself.
    BatchLog,
    /// A lightweight transaction.
    Cas,
    /// A materialized view update.
    View,
    /// A CDC write.
    Cdc,
    /// A name this crate does not know, kept as sent.
    Other(String),
}

impl WriteType {
    /// The wire name.
    pub fn as_str(&self) -> &str {
        match self {
            WriteType::Simple => "SIMPLE",
            WriteType::Batch => "BATCH",
            WriteType::UnloggedBatch => "UNLOGGED_BATCH",
            WriteType::Counter => "COUNTER",
            WriteType::BatchLog => "BATCH_LOG",
            WriteType::Cas => "CAS",
            WriteType::View => "VIEW",
            WriteType::Cdc => "CDC",
            WriteType::Other(s) => s,
        }
    }

    /// The write type for a wire name (unknown names become `Other`).
    pub fn parse(s: &str) -> WriteType {
        match s {
            "SIMPLE" => WriteType::Simple,
            "BATCH" => WriteType::Batch,
            "UNLOGGED_BATCH" => WriteType::UnloggedBatch,
            "COUNTER" => WriteType::Counter,
            "BATCH_LOG" => WriteType::BatchLog,
            "CAS" => WriteType::Cas,
            "VIEW" => WriteType::View,
            "CDC" => WriteType::Cdc,
            other => WriteType::Other(other.to_string()),
        }
    }
}

/// The code of an ERROR and the fields that code carries after the message (§9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// 0x0000
    Server,
    /// 0x000A
    Protocol,
    /// 0x0100
    BadCredentials,
    /// 0x1000: not enough live replicas.
    Unavailable {
        /// Level of the failed request.
        consistency: Consistency,
        /// Replicas the level needs.
        required: i32,
        /// Replicas known alive.
        alive: i32,
    },
    /// 0x1001
    Overloaded,
    /// 0x1002
    IsBootstrapping,
    /// 0x1003
    Truncate,
    /// 0x1100: a write was not acknowledged in time.
    WriteTimeout {
        /// Level of the failed request.
        consistency: Consistency,
        /// Replicas that acknowledged.
        received: i32,
        /// Acknowledgements the level needs.
        block_for: i32,
        /// What kind of write.
        write_type: WriteType,
    },
    /// 0x1200: a read was not answered in time.
    ReadTimeout {
        /// Level of the failed request.
        consistency: Consistency,
        /// Replicas that answered.
        received: i32,
        /// Answers the level needs.
        block_for: i32,
        /// Whether the replica asked for data answered.
        data_present: bool,
    },
    /// 0x1300: replicas failed a read.
    ReadFailure {
        /// Level of the failed request.
        consistency: Consistency,
        /// Replicas that answered.
        received: i32,
        /// Answers the level needs.
        block_for: i32,
        /// Replicas that failed.
        num_failures: i32,
        /// Whether the replica asked for data answered.
        data_present: bool,
    },
    /// 0x1400: a user-defined function failed.
    FunctionFailure {
        /// The function's keyspace.
        keyspace: String,
        /// The function's name.
        function: String,
        /// Its argument types as CQL text.
        arg_types: Vec<String>,
    },
    /// 0x1500: replicas failed a write.
    WriteFailure {
        /// Level of the failed request.
        consistency: Consistency,
        /// Replicas that acknowledged.
        received: i32,
        /// Acknowledgements the level needs.
        block_for: i32,
        /// Replicas that failed.
        num_failures: i32,
        /// What kind of write.
        write_type: WriteType,
    },
    /// 0x2000
    Syntax,
    /// 0x2100
    Unauthorized,
    /// 0x2200
    Invalid,
    /// 0x2300
    Config,
    /// 0x2400: the keyspace or table exists (`table` empty for a keyspace).
    AlreadyExists {
        /// The keyspace (or the table's keyspace).
        keyspace: String,
        /// The table, or "" for a keyspace.
        table: String,
    },
    /// 0x2500: the prepared id is unknown; prepare again.
    Unprepared {
        /// The unknown id.
        id: Bytes,
    },
    /// A code this crate does not know (its extra fields, if any, are not decoded).
    Unknown {
        /// The code as sent.
        code: i32,
    },
}

impl ErrorKind {
    /// The error code.
    pub fn code(&self) -> i32 {
        use error_code::*;
        match self {
            ErrorKind::Server => SERVER,
            ErrorKind::Protocol => PROTOCOL,
            ErrorKind::BadCredentials => BAD_CREDENTIALS,
            ErrorKind::Unavailable { .. } => UNAVAILABLE,
            ErrorKind::Overloaded => OVERLOADED,
            ErrorKind::IsBootstrapping => IS_BOOTSTRAPPING,
            ErrorKind::Truncate => TRUNCATE,
            ErrorKind::WriteTimeout { .. } => WRITE_TIMEOUT,
            ErrorKind::ReadTimeout { .. } => READ_TIMEOUT,
            ErrorKind::ReadFailure { .. } => READ_FAILURE,
            ErrorKind::FunctionFailure { .. } => FUNCTION_FAILURE,
            ErrorKind::WriteFailure { .. } => WRITE_FAILURE,
            ErrorKind::Syntax => SYNTAX,
            ErrorKind::Unauthorized => UNAUTHORIZED,
            ErrorKind::Invalid => INVALID,
            ErrorKind::Config => CONFIG,
            ErrorKind::AlreadyExists { .. } => ALREADY_EXISTS,
            ErrorKind::Unprepared { .. } => UNPREPARED,
            ErrorKind::Unknown { code } => *code,
        }
    }
}

/// The body of an ERROR response: a code with its extra fields, and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorBody {
    /// The code and its code-specific fields.
    pub kind: ErrorKind,
    /// Human-readable explanation.
    pub message: String,
}

impl ErrorBody {
    /// An error of this kind with this message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ErrorBody {
        ErrorBody {
            kind,
            message: message.into(),
        }
    }

    /// The error code (e.g. 0x2200 for Invalid).
    pub fn code(&self) -> i32 {
        self.kind.code()
    }

    /// A Server error (0x0000).
    pub fn server(message: impl Into<String>) -> ErrorBody {
        ErrorBody::new(ErrorKind::Server, message)
    }

    /// A Protocol error (0x000A).
    pub fn protocol(message: impl Into<String>) -> ErrorBody {
        ErrorBody::new(ErrorKind::Protocol, message)
    }

    /// A Syntax error (0x2000).
    pub fn syntax(message: impl Into<String>) -> ErrorBody {
        ErrorBody::new(ErrorKind::Syntax, message)
    }

    /// An Invalid request error (0x2200).
    pub fn invalid(message: impl Into<String>) -> ErrorBody {
        ErrorBody::new(ErrorKind::Invalid, message)
    }

    /// The Protocol error a server sends for a frame of another protocol version; its message
    /// contains "unsupported protocol version", which drivers look for to try an older one.
    pub fn unsupported_version(version: u8) -> ErrorBody {
        ErrorBody::protocol(format!(
            "Invalid or unsupported protocol version ({}); supported versions are (4/v4)",
            version & 0x7F
        ))
    }

    /// The code-specific fields as `(name, value)` pairs, named as the Python driver names them
    /// (`consistency`, `required_replicas`, `alive_replicas`, `received_responses`,
    /// `required_responses`, `write_type`, `data_retrieved`, `failures`, `keyspace`, `table`,
    /// `function`, `arg_types`, `id`) with values written as cqlsh shows them in `info={...}`:
    /// Python literals (`'QUORUM'`, `2`, `True`, `['int']`). Empty for codes without fields.
    pub fn info(&self) -> Vec<(String, String)> {
        fn q(s: &str) -> String {
            format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
        }
        fn b(v: bool) -> String {
            if v { "True" } else { "False" }.to_string()
        }
        let kv = |pairs: Vec<(&str, String)>| -> Vec<(String, String)> {
            pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
        };
        match &self.kind {
            ErrorKind::Unavailable {
                consistency,
                required,
                alive,
            } => kv(vec![
                ("consistency", q(consistency.as_str())),
                ("required_replicas", required.to_string()),
                ("alive_replicas", alive.to_string()),
            ]),
            ErrorKind::WriteTimeout {
                consistency,
                received,
                block_for,
                write_type,
            } => kv(vec![
                ("consistency", q(consistency.as_str())),
                ("received_responses", received.to_string()),
                ("required_responses", block_for.to_string()),
                ("write_type", q(write_type.as_str())),
            ]),
            ErrorKind::ReadTimeout {
                consistency,
                received,
                block_for,
                data_present,
            } => kv(vec![
                ("consistency", q(consistency.as_str())),
                ("received_responses", received.to_string()),
                ("required_responses", block_for.to_string()),
                ("data_retrieved", b(*data_present)),
            ]),
            ErrorKind::ReadFailure {
                consistency,
                received,
                block_for,
                num_failures,
                data_present,
            } => kv(vec![
                ("consistency", q(consistency.as_str())),
                ("received_responses", received.to_string()),
                ("required_responses", block_for.to_string()),
                ("failures", num_failures.to_string()),
                ("data_retrieved", b(*data_present)),
            ]),
            ErrorKind::WriteFailure {
                consistency,
                received,
                block_for,
                num_failures,
                write_type,
            } => kv(vec![
                ("consistency", q(consistency.as_str())),
                ("received_responses", received.to_string()),
                ("required_responses", block_for.to_string()),
                ("failures", num_failures.to_string()),
                ("write_type", q(write_type.as_str())),
            ]),
            ErrorKind::FunctionFailure {
                keyspace,
                function,
                arg_types,
            } => {
                let args: Vec<String> = arg_types.iter().map(|a| q(a)).collect();
                kv(vec![
                    ("keyspace", q(keyspace)),
                    ("function", q(function)),
                    ("arg_types", format!("[{}]", args.join(", "))),
                ])
            }
            ErrorKind::AlreadyExists { keyspace, table } => {
                kv(vec![("keyspace", q(keyspace)), ("table", q(table))])
            }
            ErrorKind::Unprepared { id } => {
                let hex: String = id.iter().map(|x| format!("{x:02x}")).collect();
                kv(vec![("id", format!("0x{hex}"))])
            }
            _ => Vec::new(),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        put_int(out, self.code());
        put_string(out, &self.message);
        match &self.kind {
            ErrorKind::Unavailable {
                consistency,
                required,
                alive,
            } => {
                put_consistency(out, *consistency);
                put_int(out, *required);
                put_int(out, *alive);
            }
            ErrorKind::WriteTimeout {
                consistency,
                received,
                block_for,
                write_type,
            } => {
                put_consistency(out, *consistency);
                put_int(out, *received);
                put_int(out, *block_for);
                put_string(out, write_type.as_str());
            }
            ErrorKind::ReadTimeout {
                consistency,
                received,
                block_for,
                data_present,
            } => {
                put_consistency(out, *consistency);
                put_int(out, *received);
                put_int(out, *block_for);
                out.push(u8::from(*data_present));
            }
            ErrorKind::ReadFailure {
                consistency,
                received,
                block_for,
                num_failures,
                data_present,
            } => {
                put_consistency(out, *consistency);
                put_int(out, *received);
                put_int(out, *block_for);
                put_int(out, *num_failures);
                out.push(u8::from(*data_present));
            }
            ErrorKind::FunctionFailure {
                keyspace,
                function,
                arg_types,
            } => {
                put_string(out, keyspace);
                put_string(out, function);
                put_string_list(out, arg_types);
            }
            ErrorKind::WriteFailure {
                consistency,
                received,
                block_for,
                num_failures,
                write_type,
            } => {
                put_consistency(out, *consistency);
                put_int(out, *received);
                put_int(out, *block_for);
                put_int(out, *num_failures);
                put_string(out, write_type.as_str());
            }
            ErrorKind::AlreadyExists { keyspace, table } => {
                put_string(out, keyspace);
                put_string(out, table);
            }
            ErrorKind::Unprepared { id } => put_short_bytes(out, id),
            _ => {}
        }
    }

    fn decode(r: &mut Reader) -> Result<ErrorBody, ProtocolError> {
        use error_code::*;
        let code = r.int("error code")?;
        let message = r.string("error message")?;
        let kind = match code {
            SERVER => ErrorKind::Server,
            PROTOCOL => ErrorKind::Protocol,
            BAD_CREDENTIALS => ErrorKind::BadCredentials,
            UNAVAILABLE => ErrorKind::Unavailable {
                consistency: r.consistency("consistency")?,
                required: r.int("required")?,
                alive: r.int("alive")?,
            },
            OVERLOADED => ErrorKind::Overloaded,
            IS_BOOTSTRAPPING => ErrorKind::IsBootstrapping,
            TRUNCATE => ErrorKind::Truncate,
            WRITE_TIMEOUT => ErrorKind::WriteTimeout {
                consistency: r.consistency("consistency")?,
                received: r.int("received")?,
                block_for: r.int("block_for")?,
                write_type: WriteType::parse(&r.string("write type")?),
            },
            READ_TIMEOUT => ErrorKind::ReadTimeout {
                consistency: r.consistency("consistency")?,
                received: r.int("received")?,
                block_for: r.int("block_for")?,
                data_present: r.byte("data_present")? != 0,
            },
            READ_FAILURE => ErrorKind::ReadFailure {
                consistency: r.consistency("consistency")?,
                received: r.int("received")?,
                block_for: r.int("block_for")?,
                num_failures: r.int("num_failures")?,
                data_present: r.byte("data_present")? != 0,
            },
            FUNCTION_FAILURE => ErrorKind::FunctionFailure {
                keyspace: r.string("keyspace")?,
                function: r.string("function")?,
                arg_types: r.string_list("arg types")?,
            },
            WRITE_FAILURE => ErrorKind::WriteFailure {
                consistency: r.consistency("consistency")?,
                received: r.int("received")?,
                block_for: r.int("block_for")?,
                num_failures: r.int("num_failures")?,
                write_type: WriteType::parse(&r.string("write type")?),
            },
            SYNTAX => ErrorKind::Syntax,
            UNAUTHORIZED => ErrorKind::Unauthorized,
            INVALID => ErrorKind::Invalid,
            CONFIG => ErrorKind::Config,
            ALREADY_EXISTS => ErrorKind::AlreadyExists {
                keyspace: r.string("keyspace")?,
                table: r.string("table")?,
            },
            UNPREPARED => ErrorKind::Unprepared {
                id: r.short_bytes("unprepared id")?,
            },
            code => ErrorKind::Unknown { code },
        };
        Ok(ErrorBody { kind, message })
    }
}

impl fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error 0x{:04x}: {}", self.code(), self.message)
    }
}

// ---------------------------------------------------------------------------------------------
// Results (§4.2.5)
// ---------------------------------------------------------------------------------------------

/// One column of a result, or one bind variable of a prepared statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnSpec {
    /// Keyspace of the column's table.
    pub keyspace: String,
    /// The column's table.
    pub table: String,
    /// Column name, alias, or bind variable name.
    pub name: String,
    /// The column's type.
    pub ty: CqlType,
}

const RF_GLOBAL_TABLES_SPEC: i32 = 0x0001;
const RF_HAS_MORE_PAGES: i32 = 0x0002;
const RF_NO_METADATA: i32 = 0x0004;

/// The `<metadata>` of a Rows result (and the result metadata of a Prepared result).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResultMetadata {
    /// Column specs (empty when `no_metadata`).
    pub columns: Vec<ColumnSpec>,
    /// Number of columns: `columns.len()`, or the count sent without specs when `no_metadata`.
    pub column_count: usize,
    /// Present when more pages follow (flag 0x0002): pass it back to get the next page.
    pub paging_state: Option<Bytes>,
    /// Flag 0x0004: specs omitted because the client asked to skip them.
    pub no_metadata: bool,
}

impl ResultMetadata {
    /// Metadata with these column specs.
    pub fn new(columns: Vec<ColumnSpec>) -> ResultMetadata {
        ResultMetadata {
            column_count: columns.len(),
            columns,
            paging_state: None,
            no_metadata: false,
        }
    }

    /// Metadata that only counts columns (flag 0x0004).
    pub fn no_metadata(column_count: usize) -> ResultMetadata {
        ResultMetadata {
            columns: Vec::new(),
            column_count,
            paging_state: None,
            no_metadata: true,
        }
    }

    /// What a Prepared result carries for a statement that returns no rows: no metadata, zero
    /// columns.
    pub fn empty() -> ResultMetadata {
        ResultMetadata::no_metadata(0)
    }

    /// Appends the encoded metadata.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let global = !self.no_metadata && shared_table(&self.columns).is_some();
        let mut flags = 0;
        if global {
            flags |= RF_GLOBAL_TABLES_SPEC;
        }
        if self.paging_state.is_some() {
            flags |= RF_HAS_MORE_PAGES;
        }
        if self.no_metadata {
            flags |= RF_NO_METADATA;
        }
        put_int(out, flags);
        let count = if self.no_metadata {
            self.column_count
        } else {
            self.columns.len()
        };
        put_int(out, i32::try_from(count).unwrap_or(i32::MAX));
        if let Some(p) = &self.paging_state {
            put_bytes(out, Some(p));
        }
        if !self.no_metadata {
            put_column_specs(out, &self.columns, global);
        }
    }

    /// Reads metadata.
    pub fn decode(r: &mut Reader) -> Result<ResultMetadata, ProtocolError> {
        let flags = r.int("metadata flags")?;
        let no_metadata = flags & RF_NO_METADATA != 0;
        // Without specs a column costs nothing here; with them each needs at least 4 bytes.
        let count = r.int_count(if no_metadata { 0 } else { 4 }, "column count")?;
        let paging_state = if flags & RF_HAS_MORE_PAGES != 0 {
            r.bytes("paging state")?
        } else {
            None
        };
        let columns = if no_metadata {
            Vec::new()
        } else {
            read_column_specs(r, count, flags & RF_GLOBAL_TABLES_SPEC != 0)?
        };
        Ok(ResultMetadata {
            columns,
            column_count: count,
            paging_state,
            no_metadata,
        })
    }
}

/// The (keyspace, table) every column shares, if any column exists and they all do.
fn shared_table(columns: &[ColumnSpec]) -> Option<(&str, &str)> {
    let first = columns.first()?;
    columns
        .iter()
        .all(|c| c.keyspace == first.keyspace && c.table == first.table)
        .then_some((first.keyspace.as_str(), first.table.as_str()))
}

fn put_column_specs(out: &mut Vec<u8>, columns: &[ColumnSpec], global: bool) {
    if global {
        if let Some(first) = columns.first() {
            put_string(out, &first.keyspace);
            put_string(out, &first.table);
        }
    }
    for c in columns {
        if !global {
            put_string(out, &c.keyspace);
            put_string(out, &c.table);
        }
        put_string(out, &c.name);
        put_type(out, &c.ty);
    }
}

fn read_column_specs(
    r: &mut Reader,
    count: usize,
    global: bool,
) -> Result<Vec<ColumnSpec>, ProtocolError> {
    let shared = if global {
        Some((r.string("keyspace")?, r.string("table")?))
    } else {
        None
    };
    let mut columns = Vec::with_capacity(count.min(r.remaining() / 4));
    for _ in 0..count {
        let (keyspace, table) = match &shared {
            Some((k, t)) => (k.clone(), t.clone()),
            None => (r.string("keyspace")?, r.string("table")?),
        };
        let name = r.string("column name")?;
        let ty = read_type(r)?;
        columns.push(ColumnSpec {
            keyspace,
            table,
            name,
            ty,
        });
    }
    Ok(columns)
}

/// A Rows result: metadata and cells (`None` is a null cell).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rows {
    /// Columns and paging state.
    pub metadata: ResultMetadata,
    /// Each row holds `metadata.column_count` cells (the encoder writes rows as given).
    pub rows: Vec<Vec<Option<Bytes>>>,
}

/// The bind variables of a Prepared result.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PreparedMetadata {
    /// One spec per bind marker, in marker order.
    pub columns: Vec<ColumnSpec>,
    /// For each partition key column in order, the index of the bind marker giving it (empty
    /// when some partition key column has no plain marker); drivers route by it.
    pub pk_indices: Vec<u16>,
}

impl PreparedMetadata {
    fn encode(&self, out: &mut Vec<u8>) {
        let global = shared_table(&self.columns).is_some();
        put_int(out, if global { RF_GLOBAL_TABLES_SPEC } else { 0 });
        put_int(out, i32::try_from(self.columns.len()).unwrap_or(i32::MAX));
        put_int(
            out,
            i32::try_from(self.pk_indices.len()).unwrap_or(i32::MAX),
        );
        for i in &self.pk_indices {
            put_short(out, *i);
        }
        put_column_specs(out, &self.columns, global);
    }

    fn decode(r: &mut Reader) -> Result<PreparedMetadata, ProtocolError> {
        let flags = r.int("prepared flags")?;
        let count = r.int_count(4, "bind variable count")?;
        let pk_count = r.int_count(2, "partition key count")?;
        let mut pk_indices = Vec::with_capacity(pk_count);
        for _ in 0..pk_count {
            pk_indices.push(r.short("partition key index")?);
        }
        let columns = read_column_specs(r, count, flags & RF_GLOBAL_TABLES_SPEC != 0)?;
        Ok(PreparedMetadata {
            columns,
            pk_indices,
        })
    }
}

/// What a schema change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchemaChangeType {
    /// `CREATED`
    Created,
    /// `UPDATED`
    Updated,
    /// `DROPPED`
    Dropped,
}

impl SchemaChangeType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            SchemaChangeType::Created => "CREATED",
            SchemaChangeType::Updated => "UPDATED",
            SchemaChangeType::Dropped => "DROPPED",
        }
    }

    fn parse(s: &str) -> Option<SchemaChangeType> {
        Some(match s {
            "CREATED" => SchemaChangeType::Created,
            "UPDATED" => SchemaChangeType::Updated,
            "DROPPED" => SchemaChangeType::Dropped,
            _ => return None,
        })
    }
}

/// What kind of schema object changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchemaChangeTarget {
    /// `KEYSPACE`: only the keyspace is named.
    Keyspace,
    /// `TABLE` (also for index changes).
    Table,
    /// `TYPE`: a user-defined type.
    Type,
    /// `FUNCTION`: named with argument types.
    Function,
    /// `AGGREGATE`: named with argument types.
    Aggregate,
}

impl SchemaChangeTarget {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            SchemaChangeTarget::Keyspace => "KEYSPACE",
            SchemaChangeTarget::Table => "TABLE",
            SchemaChangeTarget::Type => "TYPE",
            SchemaChangeTarget::Function => "FUNCTION",
            SchemaChangeTarget::Aggregate => "AGGREGATE",
        }
    }

    fn parse(s: &str) -> Option<SchemaChangeTarget> {
        Some(match s {
            "KEYSPACE" => SchemaChangeTarget::Keyspace,
            "TABLE" => SchemaChangeTarget::Table,
            "TYPE" => SchemaChangeTarget::Type,
            "FUNCTION" => SchemaChangeTarget::Function,
            "AGGREGATE" => SchemaChangeTarget::Aggregate,
            _ => return None,
        })
    }
}

/// A schema change, as a RESULT (kind 0x0005) or a `SCHEMA_CHANGE` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaChange {
    /// Created, updated or dropped.
    pub change_type: SchemaChangeType,
    /// What kind of object.
    pub target: SchemaChangeTarget,
    /// The keyspace (the object itself for `KEYSPACE`).
    pub keyspace: String,
    /// The object's name; empty for `KEYSPACE` (and not sent).
    pub name: String,
    /// Argument types of a function or aggregate; empty otherwise (and not sent).
    pub args: Vec<String>,
}

impl SchemaChange {
    fn encode(&self, out: &mut Vec<u8>) {
        put_string(out, self.change_type.as_str());
        put_string(out, self.target.as_str());
        put_string(out, &self.keyspace);
        match self.target {
            SchemaChangeTarget::Keyspace => {}
            SchemaChangeTarget::Table | SchemaChangeTarget::Type => put_string(out, &self.name),
            SchemaChangeTarget::Function | SchemaChangeTarget::Aggregate => {
                put_string(out, &self.name);
                put_string_list(out, &self.args);
            }
        }
    }

    fn decode(r: &mut Reader) -> Result<SchemaChange, ProtocolError> {
        let change = r.string("schema change type")?;
        let change_type = SchemaChangeType::parse(&change)
            .ok_or_else(|| invalid("schema change type", change))?;
        let target = r.string("schema change target")?;
        let target = SchemaChangeTarget::parse(&target)
            .ok_or_else(|| invalid("schema change target", target))?;
        let keyspace = r.string("keyspace")?;
        let (name, args) = match target {
            SchemaChangeTarget::Keyspace => (String::new(), Vec::new()),
            SchemaChangeTarget::Table | SchemaChangeTarget::Type => {
                (r.string("object name")?, Vec::new())
            }
            SchemaChangeTarget::Function | SchemaChangeTarget::Aggregate => {
                (r.string("function name")?, r.string_list("argument types")?)
            }
        };
        Ok(SchemaChange {
            change_type,
            target,
            keyspace,
            name,
            args,
        })
    }
}

/// The body of a RESULT response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResultBody {
    /// 0x0001: success, nothing to say.
    Void,
    /// 0x0002: rows of a SELECT.
    Rows(Rows),
    /// 0x0003: the keyspace a `USE` switched to.
    SetKeyspace(String),
    /// 0x0004: a prepared statement.
    Prepared {
        /// The id to EXECUTE it by.
        id: Bytes,
        /// Its bind variables.
        metadata: PreparedMetadata,
        /// The columns it returns (empty, no-metadata, for non-SELECTs).
        result_metadata: ResultMetadata,
    },
    /// 0x0005: DDL succeeded.
    SchemaChange(SchemaChange),
}

impl ResultBody {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            ResultBody::Void => put_int(out, 0x0001),
            ResultBody::Rows(rows) => {
                put_int(out, 0x0002);
                rows.metadata.encode(out);
                put_int(out, i32::try_from(rows.rows.len()).unwrap_or(i32::MAX));
                for row in &rows.rows {
                    for cell in row {
                        put_bytes(out, cell.as_deref());
                    }
                }
            }
            ResultBody::SetKeyspace(ks) => {
                put_int(out, 0x0003);
                put_string(out, ks);
            }
            ResultBody::Prepared {
                id,
                metadata,
                result_metadata,
            } => {
                put_int(out, 0x0004);
                put_short_bytes(out, id);
                metadata.encode(out);
                result_metadata.encode(out);
            }
            ResultBody::SchemaChange(change) => {
                put_int(out, 0x0005);
                change.encode(out);
            }
        }
    }

    fn decode(r: &mut Reader) -> Result<ResultBody, ProtocolError> {
        Ok(match r.int("result kind")? {
            0x0001 => ResultBody::Void,
            0x0002 => {
                let metadata = ResultMetadata::decode(r)?;
                let row_count = r.int("row count")?;
                let row_count = usize::try_from(row_count)
                    .map_err(|_| invalid("row count", format!("{row_count}")))?;
                let columns = metadata.column_count;
                if columns == 0 && row_count > 0 {
                    return Err(invalid("rows", format!("{row_count} rows of zero columns")));
                }
                // Every cell takes at least its 4-byte length.
                let cells = (row_count as u64) * (columns as u64);
                if cells.saturating_mul(4) > r.remaining() as u64 {
                    return Err(ProtocolError::Truncated {
                        what: "rows",
                        needed: usize::try_from(cells.saturating_mul(4)).unwrap_or(usize::MAX),
                        available: r.remaining(),
                    });
                }
                let mut rows = Vec::with_capacity(row_count);
                for _ in 0..row_count {
                    let mut row = Vec::with_capacity(columns);
                    for _ in 0..columns {
                        row.push(r.bytes("cell")?);
                    }
                    rows.push(row);
                }
                ResultBody::Rows(Rows { metadata, rows })
            }
            0x0003 => ResultBody::SetKeyspace(r.string("keyspace")?),
            0x0004 => ResultBody::Prepared {
                id: r.short_bytes("prepared id")?,
                metadata: PreparedMetadata::decode(r)?,
                result_metadata: ResultMetadata::decode(r)?,
            },
            0x0005 => ResultBody::SchemaChange(SchemaChange::decode(r)?),
            kind => return Err(invalid("result kind", format!("0x{kind:04x}"))),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Events (§4.2.6)
// ---------------------------------------------------------------------------------------------

/// A `TOPOLOGY_CHANGE` kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TopologyChangeType {
    /// `NEW_NODE`
    NewNode,
    /// `REMOVED_NODE`
    RemovedNode,
    /// `MOVED_NODE` (sent by Cassandra though not in the v4 text)
    MovedNode,
}

impl TopologyChangeType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            TopologyChangeType::NewNode => "NEW_NODE",
            TopologyChangeType::RemovedNode => "REMOVED_NODE",
            TopologyChangeType::MovedNode => "MOVED_NODE",
        }
    }
}

/// A `STATUS_CHANGE` kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusChangeType {
    /// `UP`
    Up,
    /// `DOWN`
    Down,
}

impl StatusChangeType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            StatusChangeType::Up => "UP",
            StatusChangeType::Down => "DOWN",
        }
    }
}

/// A server-pushed event (always on stream -1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A node joined, left or moved.
    TopologyChange {
        /// What happened.
        change: TopologyChangeType,
        /// The node's native-protocol address.
        addr: SocketAddr,
    },
    /// A node went up or down.
    StatusChange {
        /// What happened.
        change: StatusChangeType,
        /// The node's native-protocol address.
        addr: SocketAddr,
    },
    /// The schema changed.
    SchemaChange(SchemaChange),
}

impl Event {
    /// The event type name, as REGISTER names it.
    pub fn type_name(&self) -> &'static str {
        match self {
            Event::TopologyChange { .. } => "TOPOLOGY_CHANGE",
            Event::StatusChange { .. } => "STATUS_CHANGE",
            Event::SchemaChange(_) => "SCHEMA_CHANGE",
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        put_string(out, self.type_name());
        match self {
            Event::TopologyChange { change, addr } => {
                put_string(out, change.as_str());
                put_inet(out, addr);
            }
            Event::StatusChange { change, addr } => {
                put_string(out, change.as_str());
                put_inet(out, addr);
            }
            Event::SchemaChange(c) => c.encode(out),
        }
    }

    fn decode(r: &mut Reader) -> Result<Event, ProtocolError> {
        let kind = r.string("event type")?;
        Ok(match kind.as_str() {
            "TOPOLOGY_CHANGE" => {
                let change = r.string("topology change")?;
                let change = match change.as_str() {
                    "NEW_NODE" => TopologyChangeType::NewNode,
                    "REMOVED_NODE" => TopologyChangeType::RemovedNode,
                    "MOVED_NODE" => TopologyChangeType::MovedNode,
                    _ => return Err(invalid("topology change", change)),
                };
                Event::TopologyChange {
                    change,
                    addr: r.inet("node address")?,
                }
            }
            "STATUS_CHANGE" => {
                let change = r.string("status change")?;
                let change = match change.as_str() {
                    "UP" => StatusChangeType::Up,
                    "DOWN" => StatusChangeType::Down,
                    _ => return Err(invalid("status change", change)),
                };
                Event::StatusChange {
                    change,
                    addr: r.inet("node address")?,
                }
            }
            "SCHEMA_CHANGE" => Event::SchemaChange(SchemaChange::decode(r)?),
            _ => return Err(invalid("event type", kind)),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------------

/// A response message (server → client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// ERROR: the request failed.
    Error(ErrorBody),
    /// READY: the connection is ready (after STARTUP or REGISTER).
    Ready,
    /// AUTHENTICATE: the full class name of the authenticator in use.
    Authenticate(String),
    /// SUPPORTED: each STARTUP option with its supported values.
    Supported(HashMap<String, Vec<String>>),
    /// RESULT: the outcome of QUERY, PREPARE, EXECUTE or BATCH.
    Result(ResultBody),
    /// EVENT: pushed by the server.
    Event(Event),
    /// AUTH_CHALLENGE: a SASL challenge token.
    AuthChallenge(Option<Bytes>),
    /// AUTH_SUCCESS: final SASL token.
    AuthSuccess(Option<Bytes>),
}

impl Response {
    /// The opcode this response travels under.
    pub fn opcode(&self) -> Opcode {
        match self {
            Response::Error(_) => Opcode::Error,
            Response::Ready => Opcode::Ready,
            Response::Authenticate(_) => Opcode::Authenticate,
            Response::Supported(_) => Opcode::Supported,
            Response::Result(_) => Opcode::Result,
            Response::Event(_) => Opcode::Event,
            Response::AuthChallenge(_) => Opcode::AuthChallenge,
            Response::AuthSuccess(_) => Opcode::AuthSuccess,
        }
    }

    /// The opcode and body bytes of this response.
    pub fn encode(&self) -> (Opcode, Vec<u8>) {
        let mut out = Vec::new();
        match self {
            Response::Error(e) => e.encode(&mut out),
            Response::Ready => {}
            Response::Authenticate(class) => put_string(&mut out, class),
            Response::Supported(map) => put_string_multimap(&mut out, map),
            Response::Result(result) => result.encode(&mut out),
            Response::Event(event) => event.encode(&mut out),
            Response::AuthChallenge(token) | Response::AuthSuccess(token) => {
                put_bytes(&mut out, token.as_deref())
            }
        }
        (self.opcode(), out)
    }

    /// Decodes a response body (without the tracing id, warnings or custom payload that header
    /// flags may put first; see [`decode_response_frame`]). Request opcodes are an error.
    pub fn decode(opcode: Opcode, body: Bytes) -> Result<Response, ProtocolError> {
        let mut r = Reader::new(body);
        Ok(match opcode {
            Opcode::Error => Response::Error(ErrorBody::decode(&mut r)?),
            Opcode::Ready => Response::Ready,
            Opcode::Authenticate => Response::Authenticate(r.string("authenticator")?),
            Opcode::Supported => Response::Supported(r.string_multimap("supported options")?),
            Opcode::Result => Response::Result(ResultBody::decode(&mut r)?),
            Opcode::Event => Response::Event(Event::decode(&mut r)?),
            Opcode::AuthChallenge => Response::AuthChallenge(r.bytes("auth token")?),
            Opcode::AuthSuccess => Response::AuthSuccess(r.bytes("auth token")?),
            other => return Err(ProtocolError::NotAResponse(other)),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------------------------

/// What a response frame may carry ahead of its message, each announced by a header flag.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResponseExtras {
    /// Tracing session id (flag 0x02), sent when the request asked for tracing.
    pub tracing_id: Option<[u8; 16]>,
    /// Warnings for the client (flag 0x08); none when empty.
    pub warnings: Vec<String>,
    /// Custom payload (flag 0x04).
    pub custom_payload: Option<BytesMap>,
}

impl ResponseExtras {
    /// The header flags these extras call for.
    pub fn flags(&self) -> Flags {
        let mut f = Flags::NONE;
        if self.tracing_id.is_some() {
            f = f | Flags::TRACING;
        }
        if !self.warnings.is_empty() {
            f = f | Flags::WARNING;
        }
        if self.custom_payload.is_some() {
            f = f | Flags::CUSTOM_PAYLOAD;
        }
        f
    }
}

/// What a request frame may carry besides its message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestExtras {
    /// Flag 0x02: the client asks for the request to be traced.
    pub tracing: bool,
    /// Flag 0x04: custom payload before the message.
    pub custom_payload: Option<BytesMap>,
}

/// A decoded request frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestFrame {
    /// The stream id to answer on.
    pub stream: i16,
    /// Tracing flag and custom payload.
    pub extras: RequestExtras,
    /// The request.
    pub request: Request,
}

/// A decoded response frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseFrame {
    /// The stream id of the request answered (-1 for events).
    pub stream: i16,
    /// Tracing id, warnings and custom payload.
    pub extras: ResponseExtras,
    /// The response.
    pub response: Response,
}

/// The bytes of a request frame (version 0x04, no flags) carrying `req`.
pub fn request_frame(stream: i16, req: &Request) -> Vec<u8> {
    request_frame_with(stream, req, &RequestExtras::default())
}

/// The bytes of a request frame with a tracing flag and/or custom payload.
pub fn request_frame_with(stream: i16, req: &Request, extras: &RequestExtras) -> Vec<u8> {
    let (opcode, body) = req.encode();
    let mut flags = Flags::NONE;
    let mut full = Vec::with_capacity(body.len());
    if extras.tracing {
        flags = flags | Flags::TRACING;
    }
    if let Some(payload) = &extras.custom_payload {
        flags = flags | Flags::CUSTOM_PAYLOAD;
        put_bytes_map(&mut full, payload);
    }
    full.extend_from_slice(&body);
    let header = FrameHeader::request(stream, opcode, flags, body_len(&full));
    frame_bytes(header, &full)
}

/// The bytes of a response frame (version 0x84) carrying `resp`, with the tracing id, warnings
/// and custom payload of `extras` (use `&ResponseExtras::default()` for none); the header flags
/// follow from them. Events go on stream -1.
pub fn response_frame(stream: i16, resp: &Response, extras: &ResponseExtras) -> Vec<u8> {
    let (opcode, body) = resp.encode();
    let mut full = Vec::with_capacity(body.len() + 16);
    if let Some(id) = &extras.tracing_id {
        put_uuid(&mut full, id);
    }
    if !extras.warnings.is_empty() {
        put_string_list(&mut full, &extras.warnings);
    }
    if let Some(payload) = &extras.custom_payload {
        put_bytes_map(&mut full, payload);
    }
    full.extend_from_slice(&body);
    let header = FrameHeader::response(stream, opcode, extras.flags(), body_len(&full));
    frame_bytes(header, &full)
}

/// The ERROR frame a server answers a frame of another protocol version with: a Protocol error
/// on the same stream, version byte 0x84, message "Invalid or unsupported protocol version (N);
/// supported versions are (4/v4)".
pub fn unsupported_version_response(version: u8, stream: i16) -> Vec<u8> {
    response_frame(
        stream,
        &Response::Error(ErrorBody::unsupported_version(version)),
        &ResponseExtras::default(),
    )
}

/// The ERROR frame a server answers a malformed frame with, before closing the connection:
/// unsupported version as above, an unknown opcode or an oversized frame as a Protocol error
/// (on stream 0 for an oversized frame, whose stream the error does not carry). `None` for
/// `Incomplete`, which is not an error.
pub fn frame_error_response(err: &FrameError) -> Option<Vec<u8>> {
    let (stream, body) = match err {
        FrameError::Incomplete => return None,
        FrameError::UnsupportedVersion { version, stream } => {
            return Some(unsupported_version_response(*version, *stream))
        }
        FrameError::UnknownOpcode { stream, .. } => (*stream, ErrorBody::protocol(err.to_string())),
        FrameError::TooLarge { .. } => (0, ErrorBody::protocol(err.to_string())),
    };
    Some(response_frame(
        stream,
        &Response::Error(body),
        &ResponseExtras::default(),
    ))
}

/// Decodes a request frame: reads the custom payload its flags announce, then the request.
pub fn decode_request_frame(frame: &Frame) -> Result<RequestFrame, ProtocolError> {
    let flags = frame.header.flags;
    if flags.contains(Flags::COMPRESSION) {
        return Err(ProtocolError::Compressed);
    }
    let mut r = Reader::new(frame.body.clone());
    let custom_payload = if flags.contains(Flags::CUSTOM_PAYLOAD) {
        Some(r.bytes_map("custom payload")?)
    } else {
        None
    };
    let rest = r.raw(r.remaining(), "body")?;
    Ok(RequestFrame {
        stream: frame.header.stream,
        extras: RequestExtras {
            tracing: flags.contains(Flags::TRACING),
            custom_payload,
        },
        request: Request::decode(frame.header.opcode, rest)?,
    })
}

/// Decodes a response frame: reads the tracing id, warnings and custom payload its flags
/// announce (in that order), then the response.
pub fn decode_response_frame(frame: &Frame) -> Result<ResponseFrame, ProtocolError> {
    let flags = frame.header.flags;
    if flags.contains(Flags::COMPRESSION) {
        return Err(ProtocolError::Compressed);
    }
    let mut r = Reader::new(frame.body.clone());
    let tracing_id = if flags.contains(Flags::TRACING) {
        Some(r.uuid("tracing id")?)
    } else {
        None
    };
    let warnings = if flags.contains(Flags::WARNING) {
        r.string_list("warnings")?
    } else {
        Vec::new()
    };
    let custom_payload = if flags.contains(Flags::CUSTOM_PAYLOAD) {
        Some(r.bytes_map("custom payload")?)
    } else {
        None
    };
    let rest = r.raw(r.remaining(), "body")?;
    Ok(ResponseFrame {
        stream: frame.header.stream,
        extras: ResponseExtras {
            tracing_id,
            warnings,
            custom_payload,
        },
        response: Response::decode(frame.header.opcode, rest)?,
    })
}

fn body_len(body: &[u8]) -> u32 {
    u32::try_from(body.len()).unwrap_or(u32::MAX)
}

fn frame_bytes(header: FrameHeader, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(crate::frame::HEADER_LEN + body.len());
    out.extend_from_slice(&header.to_bytes());
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consistency_names_and_codes() {
        for c in Consistency::ALL_LEVELS {
            assert_eq!(Consistency::from_code(c.code()), Some(c));
            assert_eq!(c.to_string().parse::<Consistency>(), Ok(c));
            assert_eq!(c.to_string().to_lowercase().parse::<Consistency>(), Ok(c));
        }
        assert_eq!(Consistency::LocalOne.code(), 10);
        assert_eq!(Consistency::from_code(11), None);
        assert!("most".parse::<Consistency>().is_err());
    }

    #[test]
    fn query_flags_as_drivers_send() {
        let mut p = QueryParameters::new(Consistency::One);
        p.page_size = Some(5000);
        p.default_timestamp = Some(1);
        assert_eq!(p.flags(), 0x24);
        p.serial_consistency = Some(Consistency::Serial);
        assert_eq!(p.flags(), 0x34);
    }

    #[test]
    fn type_depth_is_bounded() {
        let mut body = Vec::new();
        for _ in 0..(MAX_TYPE_DEPTH + 1) {
            put_short(&mut body, 0x0020);
        }
        put_short(&mut body, 0x0009);
        assert_eq!(
            read_type(&mut Reader::new(Bytes::from(body))),
            Err(ProtocolError::TooDeep)
        );
    }

    #[test]
    fn udt_decodes_as_tuple() {
        let mut body = Vec::new();
        put_short(&mut body, 0x0030);
        put_string(&mut body, "ks");
        put_string(&mut body, "address");
        put_short(&mut body, 2);
        put_string(&mut body, "street");
        put_short(&mut body, 0x000D);
        put_string(&mut body, "zip");
        put_short(&mut body, 0x0009);
        assert_eq!(
            read_type(&mut Reader::new(Bytes::from(body))),
            Ok(CqlType::Tuple(vec![CqlType::Text, CqlType::Int]))
        );
    }
}
