//! The one error type of the transport.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Why a transport operation failed. Each variant carries what the caller acts on: the peer, and
/// for back-off how long until the next attempt.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// A TLS file is missing, unreadable, or does not fit with the others (key not matching the
    /// certificate, certificate not issued by the CA, expired, …).
    #[error("{}: {reason}", path.display())]
    Tls {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The UDP socket could not be bound (address in use, not local, …).
    #[error("cannot bind the internode endpoint on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's answer.
        #[source]
        source: std::io::Error,
    },
    /// A configuration value is unusable.
    #[error("invalid transport configuration: {0}")]
    Config(String),
    /// The peer failed recently and is in back-off: requests fail fast until `retry_in` passes.
    #[error("peer {peer} is unreachable (next attempt in {retry_in:?})")]
    Unreachable {
        /// The peer.
        peer: SocketAddr,
        /// Time left before the transport dials the peer again.
        retry_in: Duration,
    },
    /// Dialing the peer failed (no answer within the connect timeout, endpoint error, …).
    #[error("cannot connect to {peer}: {reason}")]
    Connect {
        /// The peer.
        peer: SocketAddr,
        /// What went wrong.
        reason: String,
    },
    /// The TLS handshake with the peer failed: one side refused the other's certificate (not
    /// from the cluster CA, missing, expired) or the protocol (ALPN).
    #[error("TLS handshake with {peer} failed: {reason}")]
    Handshake {
        /// The peer.
        peer: SocketAddr,
        /// The TLS error or alert.
        reason: String,
    },
    /// The connection broke while the message was in flight.
    #[error("connection to {peer} lost: {reason}")]
    ConnectionLost {
        /// The peer.
        peer: SocketAddr,
        /// What closed the connection.
        reason: String,
    },
    /// Traffic to or from this peer's address is blocked (fault injection, see
    /// [`super::Transport::block_peer`]).
    #[error("traffic to {peer} is blocked")]
    Blocked {
        /// The peer.
        peer: SocketAddr,
    },
    /// This node already has `limit` requests in flight to the peer.
    #[error("{limit} requests to {peer} are already in flight")]
    InFlightLimit {
        /// The peer.
        peer: SocketAddr,
        /// The configured limit.
        limit: usize,
    },
    /// The requests in flight to the peer already hold so many bytes that this one does not fit.
    #[error("requests to {peer} already hold up to the limit of {limit} bytes in flight")]
    InFlightBytesLimit {
        /// The peer.
        peer: SocketAddr,
        /// The configured limit, bytes.
        limit: usize,
    },
    /// The peer answered that its inbound queue is full.
    #[error("{peer} is overloaded")]
    Overloaded {
        /// The peer.
        peer: SocketAddr,
    },
    /// No response arrived within the request's timeout.
    #[error("no response from {peer} within {after:?}")]
    Timeout {
        /// The peer.
        peer: SocketAddr,
        /// The timeout that passed.
        after: Duration,
    },
    /// The peer's handler dropped the request without answering.
    #[error("{peer} dropped the request without answering")]
    NoResponse {
        /// The peer.
        peer: SocketAddr,
    },
    /// The message is larger than this node's `max_message_bytes`; nothing was sent.
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Size of the body.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The peer refused the request (or could not send its response) as larger than its limit.
    #[error("{peer} refused a message as larger than its size limit")]
    RefusedTooLarge {
        /// The peer.
        peer: SocketAddr,
    },
    /// The peer sent something that is not a valid frame, or refused ours as malformed.
    #[error("protocol error with {peer}: {reason}")]
    Protocol {
        /// The peer.
        peer: SocketAddr,
        /// What was wrong.
        reason: String,
    },
    /// The transport has been shut down.
    #[error("the transport is shut down")]
    ShutDown,
}
