//! Framing and typed message encoding, as pure functions over bytes (no streams, no sockets), so
//! that they can be tested by encode → decode → compare and fuzzed.
//!
//! # Wire format
//!
//! Every QUIC stream carries exactly one frame in each direction that uses it:
//!
//! ```text
//! +----------------+---------------------------+----------------------+
//! | length: u32 BE | header: bincode FrameKind | body: length − |hdr| |
//! +----------------+---------------------------+----------------------+
//! ```
//!
//! `length` counts the header and the body. The header is a [`FrameKind`] encoded with bincode's
//! standard configuration (varint integers), so it is two or three bytes; it says whether the
//! frame is a one-way message, a request (both name their [`Channel`]), a response, or an error
//! answer to a request. The protocol version is negotiated by ALPN (`ringdb/1`), not carried in
//! each frame.
//!
//! A receiver checks the length against its limit *before* reading the body, so an oversized
//! frame costs four bytes of reading, not sixteen megabytes of buffering.

use bincode::{Decode, Encode};
use bytes::{BufMut, Bytes, BytesMut};

use super::Channel;

/// The bincode configuration of typed messages: standard (varint) encoding with a 16 MiB limit on
/// what one decode may allocate, which matches the default message size limit and keeps a
/// hostile length field from reserving gigabytes.
const MESSAGE_CONFIG: bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<16_777_216>,
> = bincode::config::standard().with_limit::<16_777_216>();

/// Upper bound on the encoded size of a frame header; a header longer than this is malformed.
pub(crate) const MAX_HEADER_BYTES: usize = 16;

/// Size of the length prefix that opens every frame.
pub(crate) const LENGTH_PREFIX_BYTES: usize = 4;

/// The configuration used for frame headers: tiny, with a tiny allocation limit.
const HEADER_CONFIG: bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<MAX_HEADER_BYTES>,
> = bincode::config::standard().with_limit::<MAX_HEADER_BYTES>();

/// A typed message could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The value could not be encoded (for example it exceeds the 16 MiB limit).
    #[error("cannot encode message: {0}")]
    Encode(#[from] bincode::error::EncodeError),
    /// The bytes are not a valid encoding of the expected type.
    #[error("cannot decode message: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    /// The bytes hold a valid value followed by bytes that belong to nothing.
    #[error("cannot decode message: {trailing} trailing bytes after a {consumed}-byte value")]
    TrailingBytes {
        /// Bytes the value used.
        consumed: usize,
        /// Bytes left over.
        trailing: usize,
    },
}

/// Encodes a typed message (e.g. a gossip SYN) into a body for [`super::Transport::send`] or
/// [`super::Transport::request`].
pub fn encode<M: Encode>(message: &M) -> Result<Bytes, CodecError> {
    Ok(Bytes::from(bincode::encode_to_vec(
        message,
        MESSAGE_CONFIG,
    )?))
}

/// Decodes a typed message from a body received from the network.
///
/// Never panics on hostile input: malformed bytes, absurd length fields (bounded by the 16 MiB
/// allocation limit) and trailing garbage are all reported as [`CodecError`].
pub fn decode<M: Decode<()>>(bytes: &[u8]) -> Result<M, CodecError> {
    let (message, consumed) = bincode::decode_from_slice(bytes, MESSAGE_CONFIG)?;
    if consumed != bytes.len() {
        return Err(CodecError::TrailingBytes {
            consumed,
            trailing: bytes.len() - consumed,
        });
    }
    Ok(message)
}

/// What a frame carries; the frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub enum FrameKind {
    /// A message that expects no answer (sent on a unidirectional stream).
    OneWay(Channel),
    /// A request; the answer comes back on the same bidirectional stream.
    Request(Channel),
    /// The successful answer to a request.
    Response,
    /// The answer to a request that could not be served.
    Error(RemoteError),
}

/// Why a peer could not answer a request; carried in an error frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub enum RemoteError {
    /// The peer's inbound queue for the channel was full.
    Overloaded,
    /// The peer's handler dropped the request without answering.
    NoResponse,
    /// The request or its response exceeded the peer's message size limit.
    TooLarge,
    /// The peer could not parse the request frame.
    Malformed,
}

/// A frame could not be built or parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The body is larger than the configured limit.
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Body size (or, when parsing, the announced payload size).
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The bytes are not a frame.
    #[error("malformed frame: {0}")]
    Malformed(String),
}

/// Builds a complete frame (length prefix, header, body), refusing bodies over `max_body`.
pub fn encode_frame(kind: FrameKind, body: &[u8], max_body: usize) -> Result<Bytes, FrameError> {
    if body.len() > max_body {
        return Err(FrameError::TooLarge {
            size: body.len(),
            limit: max_body,
        });
    }
    let header = bincode::encode_to_vec(kind, HEADER_CONFIG)
        .map_err(|e| FrameError::Malformed(format!("header does not encode: {e}")))?;
    let payload_len = header.len() + body.len();
    let length = u32::try_from(payload_len).map_err(|_| FrameError::TooLarge {
        size: body.len(),
        limit: max_body.min(u32::MAX as usize - MAX_HEADER_BYTES),
    })?;
    let mut frame = BytesMut::with_capacity(LENGTH_PREFIX_BYTES + payload_len);
    frame.put_u32(length);
    frame.put_slice(&header);
    frame.put_slice(body);
    Ok(frame.freeze())
}

/// Reads the length prefix and checks it against the limit: returns how many payload bytes
/// (header + body) follow.
pub fn payload_len(
    prefix: [u8; LENGTH_PREFIX_BYTES],
    max_body: usize,
) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > max_body.saturating_add(MAX_HEADER_BYTES) {
        return Err(FrameError::TooLarge {
            size: len,
            limit: max_body,
        });
    }
    if len == 0 {
        return Err(FrameError::Malformed("empty frame".into()));
    }
    Ok(len)
}

/// Splits a payload (everything after the length prefix) into its header and body. The body is
/// a zero-copy slice of `payload`.
pub fn decode_payload(payload: Bytes, max_body: usize) -> Result<(FrameKind, Bytes), FrameError> {
    let header_window = &payload[..payload.len().min(MAX_HEADER_BYTES)];
    let (kind, consumed): (FrameKind, usize) =
        bincode::decode_from_slice(header_window, HEADER_CONFIG)
            .map_err(|e| FrameError::Malformed(format!("bad header: {e}")))?;
    let body = payload.slice(consumed..);
    if body.len() > max_body {
        return Err(FrameError::TooLarge {
            size: body.len(),
            limit: max_body,
        });
    }
    Ok((kind, body))
}

/// Parses a complete frame held in memory (length prefix included); the prefix must match the
/// number of bytes that follow it.
pub fn decode_frame(frame: Bytes, max_body: usize) -> Result<(FrameKind, Bytes), FrameError> {
    if frame.len() < LENGTH_PREFIX_BYTES {
        return Err(FrameError::Malformed(
            "shorter than its length prefix".into(),
        ));
    }
    let mut prefix = [0u8; LENGTH_PREFIX_BYTES];
    prefix.copy_from_slice(&frame[..LENGTH_PREFIX_BYTES]);
    let len = payload_len(prefix, max_body)?;
    if len != frame.len() - LENGTH_PREFIX_BYTES {
        return Err(FrameError::Malformed(format!(
            "length prefix says {len} bytes, {} follow",
            frame.len() - LENGTH_PREFIX_BYTES
        )));
    }
    decode_payload(frame.slice(LENGTH_PREFIX_BYTES..), max_body)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: usize = 1024;

    #[test]
    fn frames_round_trip() {
        let kinds = [
            FrameKind::OneWay(Channel::Gossip),
            FrameKind::OneWay(Channel::Verb),
            FrameKind::Request(Channel::Gossip),
            FrameKind::Request(Channel::Verb),
            FrameKind::Response,
            FrameKind::Error(RemoteError::Overloaded),
            FrameKind::Error(RemoteError::NoResponse),
            FrameKind::Error(RemoteError::TooLarge),
            FrameKind::Error(RemoteError::Malformed),
        ];
        for kind in kinds {
            for body in [&b""[..], b"x", &[7u8; LIMIT]] {
                let frame = encode_frame(kind, body, LIMIT).expect("encodes");
                let (k, b) = decode_frame(frame, LIMIT).expect("decodes");
                assert_eq!(k, kind);
                assert_eq!(&b[..], body);
            }
        }
    }

    #[test]
    fn golden_frames() {
        // length 5 = header [0, 0] (OneWay, Gossip) + "abc"
        let frame =
            encode_frame(FrameKind::OneWay(Channel::Gossip), b"abc", LIMIT).expect("encodes");
        assert_eq!(&frame[..], &[0, 0, 0, 5, 0, 0, b'a', b'b', b'c']);
        let frame = encode_frame(FrameKind::Request(Channel::Verb), b"", LIMIT).expect("encodes");
        assert_eq!(&frame[..], &[0, 0, 0, 2, 1, 1]);
        let frame = encode_frame(FrameKind::Response, b"ok", LIMIT).expect("encodes");
        assert_eq!(&frame[..], &[0, 0, 0, 3, 2, b'o', b'k']);
        let frame =
            encode_frame(FrameKind::Error(RemoteError::Overloaded), b"", LIMIT).expect("encodes");
        assert_eq!(&frame[..], &[0, 0, 0, 2, 3, 0]);
    }

    #[test]
    fn oversized_frames_are_refused_both_ways() {
        assert!(matches!(
            encode_frame(FrameKind::Response, &[0; LIMIT + 1], LIMIT),
            Err(FrameError::TooLarge { .. })
        ));
        let prefix = ((LIMIT + MAX_HEADER_BYTES + 1) as u32).to_be_bytes();
        assert!(matches!(
            payload_len(prefix, LIMIT),
            Err(FrameError::TooLarge { .. })
        ));
        assert!(matches!(
            payload_len(u32::MAX.to_be_bytes(), LIMIT),
            Err(FrameError::TooLarge { .. })
        ));
        // A header-sized overshoot passes the prefix check but not the body check.
        let mut payload = vec![2u8];
        payload.extend_from_slice(&[0; LIMIT + 1]);
        assert!(matches!(
            decode_payload(Bytes::from(payload), LIMIT),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..300usize {
            let mut junk = Vec::with_capacity(len);
            for _ in 0..len {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                junk.push(seed as u8);
            }
            let _ = decode_frame(Bytes::from(junk.clone()), LIMIT);
            let _ = decode_payload(Bytes::from(junk.clone()), LIMIT);
            let _ = decode::<(u64, String, Vec<u8>)>(&junk);
        }
        assert!(matches!(
            payload_len([0; 4], LIMIT),
            Err(FrameError::Malformed(_))
        ));
        assert!(decode_payload(Bytes::from_static(&[9, 9]), LIMIT).is_err());
        assert!(decode_payload(Bytes::new(), LIMIT).is_err());
    }

    #[test]
    fn typed_messages_round_trip_and_reject_trailing_bytes() {
        let message = (
            42u64,
            String::from("node-1"),
            vec![1u8, 2, 3],
            Channel::Verb,
        );
        let bytes = encode(&message).expect("encodes");
        let back: (u64, String, Vec<u8>, Channel) = decode(&bytes).expect("decodes");
        assert_eq!(back, message);
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert!(matches!(
            decode::<(u64, String, Vec<u8>, Channel)>(&longer),
            Err(CodecError::TrailingBytes { trailing: 1, .. })
        ));
        // A length field announcing 2^60 bytes must not allocate.
        let hostile = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0x10];
        assert!(decode::<Vec<u8>>(&hostile).is_err());
    }
}
