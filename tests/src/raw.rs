//! A deliberately small, independent CQL native protocol v4 client over a blocking `TcpStream`.
//!
//! The harness uses it to check readiness and the bad-input tests use it to send exactly the bytes
//! they mean to, malformed ones included. It is written from the protocol spec
//! (`native_protocol_v4.spec`), not from our own codec, so it also cross-checks that codec.
//!
//! Frame header (9 bytes): version (0x04 request, 0x84 response), flags, stream (i16), opcode,
//! body length (i32), all big-endian.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

pub const OP_ERROR: u8 = 0x00;
pub const OP_STARTUP: u8 = 0x01;
pub const OP_READY: u8 = 0x02;
pub const OP_OPTIONS: u8 = 0x05;
pub const OP_SUPPORTED: u8 = 0x06;
pub const OP_QUERY: u8 = 0x07;
pub const OP_RESULT: u8 = 0x08;
pub const OP_PREPARE: u8 = 0x09;
pub const OP_EXECUTE: u8 = 0x0A;
pub const OP_EVENT: u8 = 0x0C;

pub const ERR_SERVER: i32 = 0x0000;
pub const ERR_PROTOCOL: i32 = 0x000A;
pub const ERR_SYNTAX: i32 = 0x2000;
pub const ERR_INVALID: i32 = 0x2200;
pub const ERR_UNPREPARED: i32 = 0x2500;

pub const CONSISTENCY_ONE: u16 = 0x0001;

/// Largest body we are willing to read back (the server should never send more in these tests).
const MAX_RESPONSE_BODY: usize = 64 << 20;

/// One frame as read off the wire.
#[derive(Clone, Debug)]
pub struct Frame {
    pub version: u8,
    pub flags: u8,
    pub stream: i16,
    pub opcode: u8,
    pub body: Vec<u8>,
}

impl Frame {
    /// `(code, message)` when this is an ERROR frame.
    pub fn error(&self) -> Option<(i32, String)> {
        if self.opcode != OP_ERROR {
            return None;
        }
        let mut r = Reader::new(&self.body);
        let code = r.int().ok()?;
        let msg = r
            .string()
            .unwrap_or_else(|_| "<undecodable message>".into());
        Some((code, msg))
    }

    /// The RESULT kind (1 void, 2 rows, 3 set keyspace, 4 prepared, 5 schema change).
    pub fn result_kind(&self) -> Option<i32> {
        if self.opcode != OP_RESULT {
            return None;
        }
        Reader::new(&self.body).int().ok()
    }

    /// A one-line description for assertion messages.
    pub fn describe(&self) -> String {
        match self.error() {
            Some((code, msg)) => format!(
                "ERROR frame (version 0x{:02x}, stream {}): code 0x{code:04X}: {msg}",
                self.version, self.stream
            ),
            None => format!(
                "frame version 0x{:02x} stream {} opcode 0x{:02X} body {} bytes",
                self.version,
                self.stream,
                self.opcode,
                self.body.len()
            ),
        }
    }
}

/// What reading a response produced.
#[derive(Debug)]
pub enum Response {
    Frame(Frame),
    /// The server closed the connection (EOF or reset) cleanly before a full frame arrived.
    Closed,
}

impl Response {
    pub fn describe(&self) -> String {
        match self {
            Response::Frame(f) => f.describe(),
            Response::Closed => "connection closed by the server".into(),
        }
    }
}

/// Encodes a frame header + body.
pub fn encode_frame(version: u8, flags: u8, stream: i16, opcode: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + body.len());
    out.push(version);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.push(opcode);
    out.extend_from_slice(&(body.len() as i32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Body builders for the notations of the spec.
#[derive(Default)]
pub struct Body(pub Vec<u8>);

impl Body {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn byte(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }
    pub fn short(mut self, v: u16) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn int(mut self, v: i32) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    /// `[string]`: short length + bytes (raw bytes, so invalid UTF-8 can be sent on purpose).
    pub fn string_bytes(self, s: &[u8]) -> Self {
        let mut b = self.short(s.len() as u16);
        b.0.extend_from_slice(s);
        b
    }
    /// `[long string]`: int length + bytes.
    pub fn long_string_bytes(self, s: &[u8]) -> Self {
        let mut b = self.int(s.len() as i32);
        b.0.extend_from_slice(s);
        b
    }
    /// `[short bytes]`.
    pub fn short_bytes(self, s: &[u8]) -> Self {
        self.string_bytes(s)
    }
    /// `[bytes]`: int length (-1 for null) + bytes.
    pub fn bytes(self, v: Option<&[u8]>) -> Self {
        match v {
            None => self.int(-1),
            Some(v) => {
                let mut b = self.int(v.len() as i32);
                b.0.extend_from_slice(v);
                b
            }
        }
    }
    /// `[string map]`.
    pub fn string_map(self, entries: &[(&str, &str)]) -> Self {
        let mut b = self.short(entries.len() as u16);
        for (k, v) in entries {
            b = b.string_bytes(k.as_bytes()).string_bytes(v.as_bytes());
        }
        b
    }
    pub fn build(self) -> Vec<u8> {
        self.0
    }
}

/// A reader for the spec's notations.
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }
    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.buf.len() < n {
            bail!("body too short: need {n} bytes, have {}", self.buf.len());
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    pub fn short(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    pub fn int(&mut self) -> Result<i32> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub fn string(&mut self) -> Result<String> {
        let n = self.short()? as usize;
        Ok(String::from_utf8_lossy(self.take(n)?).into_owned())
    }
    pub fn short_bytes(&mut self) -> Result<Vec<u8>> {
        let n = self.short()? as usize;
        Ok(self.take(n)?.to_vec())
    }
    pub fn string_list(&mut self) -> Result<Vec<String>> {
        let n = self.short()?;
        (0..n).map(|_| self.string()).collect()
    }
    pub fn string_multimap(&mut self) -> Result<Vec<(String, Vec<String>)>> {
        let n = self.short()?;
        (0..n)
            .map(|_| Ok((self.string()?, self.string_list()?)))
            .collect()
    }
    pub fn rest(&self) -> &'a [u8] {
        self.buf
    }
}

/// A blocking protocol-v4 connection.
pub struct RawConn {
    stream: TcpStream,
    next_stream: i16,
    pub timeout: Duration,
}

impl RawConn {
    /// Connects (bounded by `timeout`, which also bounds every later read and write).
    pub fn connect(addr: SocketAddr, timeout: Duration) -> Result<RawConn> {
        let stream = TcpStream::connect_timeout(&addr, timeout)
            .with_context(|| format!("connect {addr}"))?;
        stream.set_nodelay(true).ok();
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(RawConn {
            stream,
            next_stream: 1,
            timeout,
        })
    }

    /// Connects and sends STARTUP, expecting READY.
    pub fn connect_ready(addr: SocketAddr, timeout: Duration) -> Result<RawConn> {
        let mut c = Self::connect(addr, timeout)?;
        c.startup()?;
        Ok(c)
    }

    fn stream_id(&mut self) -> i16 {
        let id = self.next_stream;
        self.next_stream = if self.next_stream >= 30000 {
            1
        } else {
            self.next_stream + 1
        };
        id
    }

    /// Writes raw bytes. A write error (the server already closed) is returned, not hidden.
    pub fn send_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream.write_all(bytes).context("write")?;
        self.stream.flush().context("flush")
    }

    /// Closes our sending half (the server sees EOF).
    pub fn shutdown_write(&mut self) -> Result<()> {
        self.stream
            .shutdown(Shutdown::Write)
            .context("shutdown write")
    }

    /// Reads one frame, or `Closed` on EOF/reset; errors on timeout or on a malformed header.
    pub fn read_response(&mut self) -> Result<Response> {
        let mut header = [0u8; 9];
        if !read_exact_or_closed(&mut self.stream, &mut header)? {
            return Ok(Response::Closed);
        }
        let len = i32::from_be_bytes([header[5], header[6], header[7], header[8]]);
        if len < 0 || len as usize > MAX_RESPONSE_BODY {
            bail!("response header announces an impossible body length {len}: {header:02x?}");
        }
        let mut body = vec![0u8; len as usize];
        if !read_exact_or_closed(&mut self.stream, &mut body)? {
            bail!("server closed the connection in the middle of a response body");
        }
        Ok(Response::Frame(Frame {
            version: header[0],
            flags: header[1],
            stream: i16::from_be_bytes([header[2], header[3]]),
            opcode: header[4],
            body,
        }))
    }

    /// Reads responses until one for `stream` arrives (skipping server-pushed EVENTs).
    pub fn read_for_stream(&mut self, stream: i16) -> Result<Response> {
        for _ in 0..1000 {
            match self.read_response()? {
                Response::Frame(f) if f.stream != stream && f.opcode == OP_EVENT => continue,
                other => return Ok(other),
            }
        }
        bail!("no response for stream {stream} among 1000 frames")
    }

    /// Sends a v4 request and returns the response on its stream id (or `Closed`).
    /// A write that fails because the server already closed counts as `Closed`.
    pub fn request_raw(&mut self, opcode: u8, body: &[u8]) -> Result<Response> {
        let stream = self.stream_id();
        let frame = encode_frame(0x04, 0, stream, opcode, body);
        if let Err(e) = self
            .stream
            .write_all(&frame)
            .and_then(|_| self.stream.flush())
        {
            if matches!(
                e.kind(),
                ErrorKind::BrokenPipe | ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
            ) {
                return Ok(Response::Closed);
            }
            return Err(e).context("write");
        }
        self.read_for_stream(stream)
    }

    /// QUERY (consistency ONE, no values) whose text is arbitrary bytes; a close is `Closed`.
    pub fn query_response(&mut self, cql: &[u8]) -> Result<Response> {
        let body = Body::new()
            .long_string_bytes(cql)
            .short(CONSISTENCY_ONE)
            .byte(0)
            .build();
        self.request_raw(OP_QUERY, &body)
    }

    /// Like [`RawConn::request_raw`] but a closed connection is an error and the response must be
    /// a v4 response frame on our stream.
    pub fn request(&mut self, opcode: u8, body: &[u8]) -> Result<Frame> {
        let stream = self.next_stream;
        match self.request_raw(opcode, body)? {
            Response::Closed => bail!("server closed the connection instead of answering"),
            Response::Frame(f) => {
                if f.version != 0x84 {
                    bail!("response version byte 0x{:02x}, expected 0x84", f.version);
                }
                if f.stream != stream {
                    bail!("response on stream {}, expected {stream}", f.stream);
                }
                Ok(f)
            }
        }
    }

    pub fn startup(&mut self) -> Result<()> {
        let body = Body::new().string_map(&[("CQL_VERSION", "3.0.0")]).build();
        let f = self.request(OP_STARTUP, &body)?;
        if f.opcode != OP_READY {
            bail!("STARTUP answered with {}", f.describe());
        }
        Ok(())
    }

    /// OPTIONS → SUPPORTED; returns the multimap.
    pub fn options(&mut self) -> Result<Vec<(String, Vec<String>)>> {
        let f = self.request(OP_OPTIONS, &[])?;
        if f.opcode != OP_SUPPORTED {
            bail!("OPTIONS answered with {}", f.describe());
        }
        Reader::new(&f.body).string_multimap()
    }

    /// QUERY with consistency ONE and no values.
    pub fn query(&mut self, cql: &str) -> Result<Frame> {
        self.query_bytes(cql.as_bytes())
    }

    /// QUERY whose text is arbitrary bytes.
    pub fn query_bytes(&mut self, cql: &[u8]) -> Result<Frame> {
        let body = Body::new()
            .long_string_bytes(cql)
            .short(CONSISTENCY_ONE)
            .byte(0)
            .build();
        self.request(OP_QUERY, &body)
    }

    /// QUERY that must not fail.
    pub fn query_ok(&mut self, cql: &str) -> Result<Frame> {
        let f = self.query(cql)?;
        if f.opcode != OP_RESULT {
            bail!("`{cql}` answered with {}", f.describe());
        }
        Ok(f)
    }

    /// PREPARE; returns the prepared id.
    pub fn prepare(&mut self, cql: &str) -> Result<Vec<u8>> {
        let body = Body::new().long_string_bytes(cql.as_bytes()).build();
        let f = self.request(OP_PREPARE, &body)?;
        if f.result_kind() != Some(4) {
            bail!("PREPARE `{cql}` answered with {}", f.describe());
        }
        let mut r = Reader::new(&f.body);
        r.int()?;
        r.short_bytes()
    }

    /// EXECUTE with consistency ONE and the given values.
    pub fn execute(&mut self, id: &[u8], values: &[Option<&[u8]>]) -> Result<Frame> {
        let mut body = Body::new().short_bytes(id).short(CONSISTENCY_ONE);
        if values.is_empty() {
            body = body.byte(0);
        } else {
            body = body.byte(0x01).short(values.len() as u16);
            for v in values {
                body = body.bytes(*v);
            }
        }
        self.request(OP_EXECUTE, &body.build())
    }
}

/// The rows of a RESULT of kind Rows: each row a list of cells (`None` for null).
pub fn rows_of(f: &Frame) -> Result<Vec<Vec<Option<Vec<u8>>>>> {
    if f.result_kind() != Some(2) {
        bail!("not a ROWS result: {}", f.describe());
    }
    let mut r = Reader::new(&f.body);
    r.int()?;
    let flags = r.int()?;
    let columns = r.int()?;
    if columns < 0 {
        bail!("negative column count {columns}");
    }
    if flags & 0x0002 != 0 {
        // paging state
        let n = r.int()?;
        if n > 0 {
            r.take(n as usize)?;
        }
    }
    if flags & 0x0004 == 0 {
        // metadata present
        let global = flags & 0x0001 != 0;
        if global {
            r.string()?;
            r.string()?;
        }
        for _ in 0..columns {
            if !global {
                r.string()?;
                r.string()?;
            }
            r.string()?;
            skip_type_option(&mut r, 0)?;
        }
    }
    let count = r.int()?;
    let mut rows = Vec::new();
    for _ in 0..count.max(0) {
        let mut row = Vec::with_capacity(columns as usize);
        for _ in 0..columns {
            let n = r.int()?;
            row.push(if n < 0 {
                None
            } else {
                Some(r.take(n as usize)?.to_vec())
            });
        }
        rows.push(row);
    }
    Ok(rows)
}

fn skip_type_option(r: &mut Reader<'_>, depth: usize) -> Result<()> {
    if depth > 32 {
        bail!("type options nested too deep");
    }
    match r.short()? {
        0x0000 => {
            r.string()?;
        }
        0x0020 | 0x0022 => skip_type_option(r, depth + 1)?,
        0x0021 => {
            skip_type_option(r, depth + 1)?;
            skip_type_option(r, depth + 1)?;
        }
        0x0030 => {
            r.string()?;
            r.string()?;
            for _ in 0..r.short()? {
                r.string()?;
                skip_type_option(r, depth + 1)?;
            }
        }
        0x0031 => {
            for _ in 0..r.short()? {
                skip_type_option(r, depth + 1)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// The first cell of every row, as text (lossy).
pub fn first_column_texts(f: &Frame) -> Result<Vec<Option<String>>> {
    Ok(rows_of(f)?
        .into_iter()
        .map(|row| {
            row.into_iter()
                .next()
                .flatten()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
        })
        .collect())
}

/// `read_exact` that tells a clean close (EOF before the first byte, or a reset) apart.
/// Returns `Ok(false)` when closed, `Ok(true)` when `buf` was filled; errors on timeout or EOF in
/// the middle of `buf`.
fn read_exact_or_closed(stream: &mut TcpStream, buf: &mut [u8]) -> Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match stream.read(&mut buf[filled..]) {
            Ok(0) => {
                if filled == 0 {
                    return Ok(false);
                }
                bail!("connection closed after {filled} of {} bytes", buf.len());
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ConnectionReset
                        | ErrorKind::ConnectionAborted
                        | ErrorKind::BrokenPipe
                ) =>
            {
                return Ok(false);
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(anyhow!(
                    "timed out waiting for the server ({filled} of {} bytes read)",
                    buf.len()
                ));
            }
            Err(e) => return Err(e).context("read"),
        }
    }
    Ok(true)
}

/// One OPTIONS round trip on a fresh connection: the readiness probe.
pub fn options_ping(addr: SocketAddr, timeout: Duration) -> Result<()> {
    let mut c = RawConn::connect(addr, timeout)?;
    // 04 00 00 00 05 00 00 00 00: v4 request, no flags, stream 0, OPTIONS, empty body.
    c.send_bytes(&[0x04, 0, 0, 0, OP_OPTIONS, 0, 0, 0, 0])?;
    match c.read_response()? {
        Response::Closed => bail!("closed without answering OPTIONS"),
        Response::Frame(f) => {
            if f.version != 0x84 || f.opcode != OP_SUPPORTED {
                bail!("OPTIONS answered with {}", f.describe());
            }
            Ok(())
        }
    }
}

/// A fresh connection: STARTUP, then a query of `system.local` must return rows.
pub fn check_serving(addr: SocketAddr, timeout: Duration) -> Result<()> {
    let mut c = RawConn::connect_ready(addr, timeout).context("fresh connection: STARTUP")?;
    c.options().context("fresh connection: OPTIONS")?;
    let f = c
        .query_ok("SELECT release_version FROM system.local WHERE key = 'local'")
        .context("fresh connection: SELECT from system.local")?;
    if f.result_kind() != Some(2) {
        bail!(
            "SELECT answered with a RESULT of kind {:?}",
            f.result_kind()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_frame_matches_the_spec_bytes() {
        assert_eq!(
            encode_frame(0x04, 0, 0, OP_OPTIONS, &[]),
            vec![0x04, 0, 0, 0, 0x05, 0, 0, 0, 0]
        );
    }

    #[test]
    fn error_body_decodes() {
        let body = Body::new()
            .int(0x2500)
            .string_bytes(b"unprepared")
            .short_bytes(&[1, 2])
            .build();
        let f = Frame {
            version: 0x84,
            flags: 0,
            stream: 3,
            opcode: OP_ERROR,
            body,
        };
        assert_eq!(f.error(), Some((0x2500, "unprepared".to_string())));
    }

    #[test]
    fn rows_decode() {
        // kind 2, flags global spec, 1 column ks.t.c varchar, 2 rows: "a", null
        let body = Body::new()
            .int(2)
            .int(1)
            .int(1)
            .string_bytes(b"ks")
            .string_bytes(b"t")
            .string_bytes(b"c")
            .short(0x000D)
            .int(2)
            .bytes(Some(b"a"))
            .bytes(None)
            .build();
        let f = Frame {
            version: 0x84,
            flags: 0,
            stream: 1,
            opcode: OP_RESULT,
            body,
        };
        assert_eq!(
            first_column_texts(&f).unwrap(),
            vec![Some("a".to_string()), None]
        );
    }

    #[test]
    fn query_body_layout() {
        let b = Body::new()
            .long_string_bytes(b"x")
            .short(CONSISTENCY_ONE)
            .byte(0)
            .build();
        assert_eq!(b, vec![0, 0, 0, 1, b'x', 0, 1, 0]);
    }
}
