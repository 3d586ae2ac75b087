//! Native protocol v4 frames: the 9-byte header and the body bytes it delimits.
//!
//! Every request and response travels as one frame:
//!
//! ```text
//! 0         8        16        24        32         40
//! +---------+---------+---------+---------+---------+
//! | version |  flags  |      stream       | opcode  |
//! +---------+---------+---------+---------+---------+
//! |                length (u32)           |  body ...
//! +---------+---------+---------+---------+---------
//! ```
//!
//! The version byte is `0x04` for a request and `0x84` for a response (the top bit is the
//! direction). The stream id pairs a response with its request (a server's pushed EVENTs use -1),
//! which is what lets many requests share a connection. The body is decoded by
//! [`crate::message`] according to the opcode and flags.
//!
//! This module is pure: functions over byte slices, no I/O. A reader works like mini-redis: call
//! [`Frame::check`] on the bytes buffered so far; `Err(FrameError::Incomplete)` means "read
//! more", anything else is a malformed stream, and `Ok(n)` means the first `n` bytes are one whole
//! frame that [`Frame::parse`] (or [`Frame::split_from`], without copying) turns into a [`Frame`].
//! The size limit is checked from the header alone, before the body arrives, so a peer cannot
//! make us buffer 256 MB by announcing it.
//!
//! Version negotiation: drivers open connections with versions we do not speak (the Python
//! driver tries 0x42, 0x41, 5 and 4 in turn) and expect a Protocol error on the same stream id,
//! in a v4 response frame, saying "unsupported protocol version". `check` therefore reports
//! [`FrameError::UnsupportedVersion`] with the stream id read the way that version lays its header
//! out (an `i16` at bytes 2..4 from v3 on, one signed byte at offset 2 for v1 and v2), as soon as
//! those bytes are present and before anything else about the frame is trusted;
//! `message::unsupported_version_response` builds the answer.

use bytes::{Bytes, BytesMut};
use thiserror::Error;

/// Length of a v4 frame header.
pub const HEADER_LEN: usize = 9;
/// Version byte of a v4 request frame.
pub const REQUEST_VERSION: u8 = 0x04;
/// Version byte of a v4 response frame.
pub const RESPONSE_VERSION: u8 = 0x84;
/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u8 = 4;
/// The body size limit the protocol itself states (256 MB); deployments use smaller ones.
pub const MAX_FRAME_LEN: usize = 256 * 1024 * 1024;
/// Stream id of server-pushed EVENT frames.
pub const EVENT_STREAM: i16 = -1;

/// What a frame carries (protocol v4 §2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Opcode {
    /// 0x00: response, an error.
    Error = 0x00,
    /// 0x01: request, opens the connection.
    Startup = 0x01,
    /// 0x02: response, the connection is ready.
    Ready = 0x02,
    /// 0x03: response, authentication is required.
    Authenticate = 0x03,
    /// 0x05: request, which STARTUP options are supported.
    Options = 0x05,
    /// 0x06: response to OPTIONS.
    Supported = 0x06,
    /// 0x07: request, run a statement.
    Query = 0x07,
    /// 0x08: response to QUERY, PREPARE, EXECUTE, BATCH.
    Result = 0x08,
    /// 0x09: request, prepare a statement.
    Prepare = 0x09,
    /// 0x0A: request, run a prepared statement.
    Execute = 0x0A,
    /// 0x0B: request, subscribe to events.
    Register = 0x0B,
    /// 0x0C: response pushed by the server.
    Event = 0x0C,
    /// 0x0D: request, several writes at once.
    Batch = 0x0D,
    /// 0x0E: response, a SASL challenge.
    AuthChallenge = 0x0E,
    /// 0x0F: request, a SASL token.
    AuthResponse = 0x0F,
    /// 0x10: response, authentication done.
    AuthSuccess = 0x10,
}

impl Opcode {
    /// The opcode for a byte, `None` for an unknown one (including 0x04, unused in v4).
    pub fn from_u8(b: u8) -> Option<Opcode> {
        Some(match b {
            0x00 => Opcode::Error,
            0x01 => Opcode::Startup,
            0x02 => Opcode::Ready,
            0x03 => Opcode::Authenticate,
            0x05 => Opcode::Options,
            0x06 => Opcode::Supported,
            0x07 => Opcode::Query,
            0x08 => Opcode::Result,
            0x09 => Opcode::Prepare,
            0x0A => Opcode::Execute,
            0x0B => Opcode::Register,
            0x0C => Opcode::Event,
            0x0D => Opcode::Batch,
            0x0E => Opcode::AuthChallenge,
            0x0F => Opcode::AuthResponse,
            0x10 => Opcode::AuthSuccess,
            _ => return None,
        })
    }

    /// The opcode's byte.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// True for opcodes a client sends.
    pub fn is_request(self) -> bool {
        matches!(
            self,
            Opcode::Startup
                | Opcode::Options
                | Opcode::Query
                | Opcode::Prepare
                | Opcode::Execute
                | Opcode::Register
                | Opcode::Batch
                | Opcode::AuthResponse
        )
    }
}

/// The header's flag byte (§2.2). Unknown bits are carried, not rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(pub u8);

impl Flags {
    /// No flag set.
    pub const NONE: Flags = Flags(0);
    /// 0x01: the body is compressed (with the algorithm agreed in STARTUP).
    pub const COMPRESSION: Flags = Flags(0x01);
    /// 0x02: request: please trace; response: the body starts with the tracing session `[uuid]`.
    pub const TRACING: Flags = Flags(0x02);
    /// 0x04: a `[bytes map]` custom payload precedes the message.
    pub const CUSTOM_PAYLOAD: Flags = Flags(0x04);
    /// 0x08: response: a `[string list]` of warnings precedes the message.
    pub const WARNING: Flags = Flags(0x08);
    /// 0x10: the client opted in to a beta protocol version.
    pub const USE_BETA: Flags = Flags(0x10);

    /// True if every bit of `other` is set.
    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// `self` with the bits of `other` set too.
    pub fn with(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }

    /// `self` with the bits of `other` cleared.
    pub fn without(self, other: Flags) -> Flags {
        Flags(self.0 & !other.0)
    }
}

impl std::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        self.with(rhs)
    }
}

/// A decoded v4 frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The raw version byte: [`REQUEST_VERSION`] or [`RESPONSE_VERSION`].
    pub version: u8,
    /// The flag byte.
    pub flags: Flags,
    /// Pairs a response with its request; -1 for pushed events.
    pub stream: i16,
    /// What the body holds.
    pub opcode: Opcode,
    /// Length of the body in bytes.
    pub length: u32,
}

impl FrameHeader {
    /// A request header (version byte 0x04).
    pub fn request(stream: i16, opcode: Opcode, flags: Flags, length: u32) -> FrameHeader {
        FrameHeader {
            version: REQUEST_VERSION,
            flags,
            stream,
            opcode,
            length,
        }
    }

    /// A response header (version byte 0x84).
    pub fn response(stream: i16, opcode: Opcode, flags: Flags, length: u32) -> FrameHeader {
        FrameHeader {
            version: RESPONSE_VERSION,
            flags,
            stream,
            opcode,
            length,
        }
    }

    /// True when the direction bit says response.
    pub fn is_response(&self) -> bool {
        self.version & 0x80 != 0
    }

    /// The version number without the direction bit.
    pub fn protocol_version(&self) -> u8 {
        self.version & 0x7F
    }

    /// The 9 header bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let s = self.stream.to_be_bytes();
        let l = self.length.to_be_bytes();
        [
            self.version,
            self.flags.0,
            s[0],
            s[1],
            self.opcode.as_u8(),
            l[0],
            l[1],
            l[2],
            l[3],
        ]
    }

    /// Decodes the header at the start of `buf`: `Incomplete` if fewer than 9 bytes (or, for
    /// another protocol version, too few to read its stream id), `UnsupportedVersion` for a
    /// version other than 4, `UnknownOpcode` for an opcode v4 does not define. The length is not
    /// checked against any limit here (see [`Frame::check`]).
    pub fn parse(buf: &[u8]) -> Result<FrameHeader, FrameError> {
        let Some(&version) = buf.first() else {
            return Err(FrameError::Incomplete);
        };
        let proto = version & 0x7F;
        if proto != PROTOCOL_VERSION {
            // v3 and later put an i16 stream id at bytes 2..4; v1/v2 one signed byte at 2.
            let stream = if proto >= 3 {
                match buf.get(2..4) {
                    Some(s) => i16::from_be_bytes([s[0], s[1]]),
                    None => return Err(FrameError::Incomplete),
                }
            } else {
                match buf.get(2) {
                    Some(&s) => i16::from(s as i8),
                    None => return Err(FrameError::Incomplete),
                }
            };
            return Err(FrameError::UnsupportedVersion { version, stream });
        }
        if buf.len() < HEADER_LEN {
            return Err(FrameError::Incomplete);
        }
        let stream = i16::from_be_bytes([buf[2], buf[3]]);
        let opcode = Opcode::from_u8(buf[4]).ok_or(FrameError::UnknownOpcode {
            opcode: buf[4],
            stream,
        })?;
        Ok(FrameHeader {
            version,
            flags: Flags(buf[1]),
            stream,
            opcode,
            length: u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]),
        })
    }
}

/// A whole frame: header and (still encoded) body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The header; `header.length` equals `body.len()` for frames built by this module.
    pub header: FrameHeader,
    /// The body bytes, as sent (possibly compressed, per `header.flags`).
    pub body: Bytes,
}

/// Why bytes are not (yet) a frame.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    /// Not an error: the buffer holds only the beginning of a frame; read more bytes.
    #[error("incomplete frame")]
    Incomplete,
    /// The header announces a body larger than the configured limit.
    #[error("frame body of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The announced body length.
        len: u64,
        /// The limit in force.
        max: usize,
    },
    /// An opcode protocol v4 does not define.
    #[error("unknown opcode 0x{opcode:02x} on stream {stream}")]
    UnknownOpcode {
        /// The opcode byte.
        opcode: u8,
        /// The frame's stream id, to answer on.
        stream: i16,
    },
    /// A protocol version other than 4. A server answers with a Protocol error (0x000A) on the
    /// same stream, in a 0x84 frame, whose message contains "unsupported protocol version".
    #[error("unsupported protocol version {} (0x{version:02x}) on stream {stream}", version & 0x7f)]
    UnsupportedVersion {
        /// The raw version byte (direction bit included).
        version: u8,
        /// The stream id, read as that version lays it out.
        stream: i16,
    },
}

impl Frame {
    /// A request frame (version 0x04, no flags).
    pub fn request(stream: i16, opcode: Opcode, body: impl Into<Bytes>) -> Frame {
        let body = body.into();
        Frame {
            header: FrameHeader::request(stream, opcode, Flags::NONE, body_len(&body)),
            body,
        }
    }

    /// A response frame (version 0x84, no flags).
    pub fn response(stream: i16, opcode: Opcode, body: impl Into<Bytes>) -> Frame {
        let body = body.into();
        Frame {
            header: FrameHeader::response(stream, opcode, Flags::NONE, body_len(&body)),
            body,
        }
    }

    /// Checks whether `buf` starts with a whole frame no larger than `max_frame_len` (body
    /// bytes) and returns that frame's total length (header included). `Incomplete` means read
    /// more; every other error means the stream is malformed (or speaks another version) and the
    /// connection should be answered and closed.
    pub fn check(buf: &[u8], max_frame_len: usize) -> Result<usize, FrameError> {
        let header = FrameHeader::parse(buf)?;
        let len = header.length as usize;
        if u64::from(header.length) > max_frame_len as u64 {
            return Err(FrameError::TooLarge {
                len: u64::from(header.length),
                max: max_frame_len,
            });
        }
        let total = HEADER_LEN + len;
        if buf.len() < total {
            return Err(FrameError::Incomplete);
        }
        Ok(total)
    }

    /// Parses the frame at the start of `buf` (copying its body). Call [`Frame::check`] first
    /// to enforce a size limit; this only requires the whole frame to be present.
    pub fn parse(buf: &[u8]) -> Result<Frame, FrameError> {
        let header = FrameHeader::parse(buf)?;
        let end = HEADER_LEN
            .checked_add(header.length as usize)
            .ok_or(FrameError::Incomplete)?;
        let body = buf.get(HEADER_LEN..end).ok_or(FrameError::Incomplete)?;
        Ok(Frame {
            header,
            body: Bytes::copy_from_slice(body),
        })
    }

    /// Takes one whole frame off the front of `buf` without copying its body: `Ok(None)` when
    /// more bytes are needed, an error when the stream is malformed or the frame too large.
    pub fn split_from(
        buf: &mut BytesMut,
        max_frame_len: usize,
    ) -> Result<Option<Frame>, FrameError> {
        let total = match Frame::check(buf, max_frame_len) {
            Ok(total) => total,
            Err(FrameError::Incomplete) => return Ok(None),
            Err(e) => return Err(e),
        };
        let header = FrameHeader::parse(buf)?;
        let mut frame = buf.split_to(total);
        let body = frame.split_off(HEADER_LEN).freeze();
        Ok(Some(Frame { header, body }))
    }

    /// The frame's bytes: header (with `length` set from the body) then body.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.body.len());
        self.encode_into(&mut out);
        out
    }

    /// Appends the frame's bytes to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let header = FrameHeader {
            length: body_len(&self.body),
            ..self.header
        };
        out.extend_from_slice(&header.to_bytes());
        out.extend_from_slice(&self.body);
    }
}

fn body_len(body: &[u8]) -> u32 {
    u32::try_from(body.len()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_request_header() {
        let f = Frame::request(0, Opcode::Options, Bytes::new());
        assert_eq!(f.encode(), [0x04, 0, 0, 0, 0x05, 0, 0, 0, 0]);
        assert_eq!(Frame::check(&f.encode(), 1024), Ok(9));
        assert_eq!(Frame::parse(&f.encode()), Ok(f));
    }

    #[test]
    fn incomplete_versus_malformed() {
        let bytes = Frame::response(7, Opcode::Ready, Bytes::new()).encode();
        for n in 0..bytes.len() {
            assert_eq!(Frame::check(&bytes[..n], 1024), Err(FrameError::Incomplete));
        }
        let big = [0x04, 0, 0, 1, 0x07, 0, 0x10, 0, 0];
        assert_eq!(
            Frame::check(&big, 1024),
            Err(FrameError::TooLarge {
                len: 0x0010_0000,
                max: 1024
            })
        );
        let bad_op = [0x04, 0, 0, 3, 0x04, 0, 0, 0, 0];
        assert_eq!(
            Frame::check(&bad_op, 1024),
            Err(FrameError::UnknownOpcode {
                opcode: 4,
                stream: 3
            })
        );
    }

    #[test]
    fn unsupported_versions_report_their_stream() {
        // v5 and DSE versions: i16 stream at 2..4.
        for v in [0x05u8, 0x41, 0x42, 0x03] {
            assert_eq!(
                Frame::check(&[v, 0, 0x01, 0x02], 1024),
                Err(FrameError::UnsupportedVersion {
                    version: v,
                    stream: 0x0102
                })
            );
            assert_eq!(
                Frame::check(&[v, 0, 0x01], 1024),
                Err(FrameError::Incomplete)
            );
        }
        // v1/v2: one signed byte at offset 2.
        assert_eq!(
            Frame::check(&[0x02, 0, 0xFF], 1024),
            Err(FrameError::UnsupportedVersion {
                version: 2,
                stream: -1
            })
        );
    }

    #[test]
    fn split_from_is_zero_copy_and_leaves_the_rest() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&Frame::request(1, Opcode::Prepare, &b"abc"[..]).encode());
        buf.extend_from_slice(&[0x04, 0]);
        let f = Frame::split_from(&mut buf, 1024).unwrap().unwrap();
        assert_eq!(&f.body[..], b"abc");
        assert_eq!(f.header.stream, 1);
        assert_eq!(&buf[..], &[0x04, 0]);
        assert_eq!(Frame::split_from(&mut buf, 1024), Ok(None));
    }
}
