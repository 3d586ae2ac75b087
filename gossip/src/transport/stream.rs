//! Reading and writing one frame on a QUIC stream, and telling apart why a stream or a
//! connection failed.

use bytes::{Bytes, BytesMut};

use super::codec::{self, FrameError, FrameKind, LENGTH_PREFIX_BYTES};

/// Stream error codes (`STOP_SENDING` / `RESET_STREAM`) of the protocol.
pub(crate) const STREAM_TOO_LARGE: u32 = 1;
pub(crate) const STREAM_MALFORMED: u32 = 2;
pub(crate) const STREAM_TIMEOUT: u32 = 3;
pub(crate) const STREAM_BLOCKED: u32 = 4;

/// Why no frame could be read from a stream.
#[derive(Debug)]
pub(crate) enum ReadFailure {
    /// The length prefix (or the body) is over the limit; nothing more was read.
    TooLarge { size: usize, limit: usize },
    /// The bytes are not a frame, or the stream ended inside one.
    Malformed(String),
    /// The stream or its connection failed.
    Stream(quinn::ReadError),
}

impl From<FrameError> for ReadFailure {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::TooLarge { size, limit } => ReadFailure::TooLarge { size, limit },
            FrameError::Malformed(reason) => ReadFailure::Malformed(reason),
        }
    }
}

/// Reads one frame. The length prefix is checked before anything else is read, and the body
/// buffer grows only as data arrives, so a hostile length costs nothing.
pub(crate) async fn read_frame(
    recv: &mut quinn::RecvStream,
    max_body: usize,
) -> Result<(FrameKind, Bytes), ReadFailure> {
    let mut prefix = [0u8; LENGTH_PREFIX_BYTES];
    recv.read_exact(&mut prefix).await.map_err(|e| match e {
        quinn::ReadExactError::FinishedEarly(n) => {
            ReadFailure::Malformed(format!("stream ended after {n} bytes of length prefix"))
        }
        quinn::ReadExactError::ReadError(e) => ReadFailure::Stream(e),
    })?;
    let len = codec::payload_len(prefix, max_body)?;
    let mut payload = BytesMut::with_capacity(len.min(64 * 1024));
    while payload.len() < len {
        match recv.read_chunk(len - payload.len(), true).await {
            Ok(Some(chunk)) => payload.extend_from_slice(&chunk.bytes),
            Ok(None) => {
                return Err(ReadFailure::Malformed(format!(
                    "stream ended after {} of {len} announced bytes",
                    payload.len()
                )))
            }
            Err(e) => return Err(ReadFailure::Stream(e)),
        }
    }
    Ok(codec::decode_payload(payload.freeze(), max_body)?)
}

/// Writes a whole frame and finishes the stream.
pub(crate) async fn write_frame(
    send: &mut quinn::SendStream,
    frame: &[u8],
) -> Result<(), quinn::WriteError> {
    send.write_all(frame).await?;
    // Finishing fails only if the stream was already reset or finished: nothing left to do.
    let _ = send.finish();
    Ok(())
}

/// Whether a connection failed because a TLS handshake was refused (by either side): QUIC
/// carries TLS alerts as transport error codes 0x100–0x1ff.
pub(crate) fn is_handshake_failure(error: &quinn::ConnectionError) -> bool {
    let code = match error {
        quinn::ConnectionError::TransportError(e) => u64::from(e.code),
        quinn::ConnectionError::ConnectionClosed(close) => u64::from(close.error_code),
        _ => return false,
    };
    (0x100..=0x1ff).contains(&code)
}
