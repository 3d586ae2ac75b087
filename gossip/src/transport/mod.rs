//! The internode transport: how one ringdb node sends bytes to another.
//!
//! # Shape
//!
//! Each node owns **one QUIC endpoint** ([`Transport`]), bound on `listen_address:storage_port`
//! (UDP). It both accepts connections and dials them from that same socket, so the source address
//! a peer sees on our connections is our listen address: [`Inbound::from`] names the sender by
//! the address other nodes use to reach it. Between two nodes there are normally two connections,
//! one dialed by each side; a node writes only on the connections it dialed and reads only from
//! the ones it accepted, which keeps ownership simple (the dialer owns reconnection and back-off).
//!
//! A peer that dials us while its previous connection is still open has restarted (a live peer
//! keeps its connection). Our connection to its previous incarnation would swallow writes until
//! the idle timeout — the new process cannot reset it, not knowing the old endpoint's reset key —
//! so it is closed at once, and any dial back-off towards the peer is forgotten: a restarted node
//! hears back on its first exchange instead of seconds later.
//!
//! Every message travels on **its own QUIC stream**, so a large or slow message never blocks
//! another one (no head-of-line blocking) and a broken message affects only its stream:
//!
//! - a one-way message ([`Transport::send`]) goes on a unidirectional stream;
//! - a request ([`Transport::request`]) goes on a bidirectional stream and the answer (a response
//!   or an error frame) comes back on the same stream.
//!
//! Each stream carries one length-prefixed frame (see [Wire format](#wire-format) below): a small
//! bincode header naming the [`Channel`] and whether an answer is expected, then the body. Bodies
//! are opaque bytes; [`encode`] and [`decode`] turn typed messages into bodies and back. Messages
//! on different streams may be delivered out of order; gossip does not care (newer state
//! supersedes older) and verbs are request/response.
//!
//! # Security
//!
//! Mutual TLS 1.3 with the cluster CA as the only root: a node accepts a connection only from a
//! peer presenting a certificate issued by the cluster CA, and dials only peers that do. Names
//! are not checked, only the chain: nodes in containers or Kubernetes are dialed at IPs unknown
//! when their certificates were issued, and the CA is private to the cluster, so holding one of
//! its certificates is the credential (see [`crate::certs`]). Every node dials with the fixed
//! server name [`SERVER_NAME`] and the ALPN protocol [`ALPN`]. A refused handshake is logged
//! with `warn!` on the accepting side, naming the remote address and the reason, and counted in
//! [`TransportStats::handshakes_refused`]; the dialing side gets [`TransportError::Handshake`].
//!
//! ## Replacing the certificates
//!
//! The files can be replaced on disk and reloaded without a restart
//! ([`Transport::reload_tls`], or [`Transport::prepare_tls`] then [`Transport::install_tls`]
//! to check several things before changing any). A reload reads the three files again and runs
//! the very checks of [`Transport::bind`] — the key matches the certificate, the certificate
//! chains to a certificate of the CA file for both usages and is valid now — **before** it
//! changes anything: on any error the identity in use stays, and the error names the file and
//! the problem. On success both directions switch at once: the endpoint's server configuration
//! (quinn's `Endpoint::set_server_config`, for handshakes it accepts) and the client
//! configuration of the connections it dials.
//!
//! **Connections already established stay up** with the identity they were made with: TLS
//! authenticates a connection once, at its handshake, and cutting every link of a node to
//! rotate a certificate would be an outage of its own. New handshakes — a peer that restarts,
//! a connection lost and dialed again — use the new files. To rotate the CA, put the old and
//! the new CA certificate together in every node's CA file and reload everywhere first; then
//! issue certificates from the new CA and reload node by node; finally remove the old CA from
//! the CA files and reload again.
//!
//! # Bounded everything, and what happens at each bound
//!
//! | bound | default | when hit |
//! |---|---|---|
//! | message body ([`TransportConfig::max_message_bytes`]) | 16 MiB | outbound: [`TransportError::TooLarge`], nothing sent; inbound: the stream is stopped after reading 4 bytes of length (requests also get an error frame), counted |
//! | one-way messages waiting per peer ([`TransportConfig::peer_queue_len`]) | 1024 | **the oldest queued message is dropped** and counted in [`TransportStats::dropped_queue_full`]: gossip is idempotent and a newer message supersedes an older one |
//! | requests in flight per peer ([`TransportConfig::max_requests_in_flight`]) | 1024 | [`TransportError::InFlightLimit`] at once; requests are never queued; counted in [`TransportStats::requests_refused_in_flight`] |
//! | body bytes of requests in flight per peer ([`TransportConfig::max_request_bytes_in_flight`]) | 64 MiB | [`TransportError::InFlightBytesLimit`] at once, counted the same way |
//! | inbound queue per channel ([`TransportConfig::inbound_queue_len`]) | 4096 | the connection's reader never waits: a one-way message is dropped (counted in [`TransportStats::dropped_inbound_full`]), a request is answered with an "overloaded" error frame ([`TransportError::Overloaded`] at the requester) |
//! | concurrent inbound streams per connection ([`TransportConfig::max_inbound_streams`]) | 1024 each way | QUIC flow control: the peer cannot open more until ours finish |
//! | time to read one inbound frame, or to write one outbound one-way message ([`TransportConfig::stream_timeout`]) | 30 s | inbound: the stream is stopped; outbound: the write counts as failed (retried once, then dropped) |
//!
//! # Reachability
//!
//! A per-peer writer task, started when a message is queued and ended when the queue is empty,
//! dials the peer when needed (within [`TransportConfig::connect_timeout`]). When dialing fails,
//! the peer enters **exponential back-off with full jitter**: the n-th consecutive failure waits
//! a random time in `[0, min(backoff_max, backoff_initial · 2^(n-1))]`. While a peer is in
//! back-off, one-way messages wait in its queue (drop-oldest) and requests fail fast with
//! [`TransportError::Unreachable`] instead of piling up. A peer that is reachable but does not
//! answer (paused, overloaded) holds at most its in-flight bounds of requests, each until its
//! timeout; further requests fail at once, so a slow peer costs memory bounded in count and in
//! bytes, never a growing queue. Keep-alives ([`TransportConfig::keep_alive`])
//! and the idle timeout ([`TransportConfig::idle_timeout`]) notice a dead peer within a few
//! seconds; a peer that restarts answers our stale connection with a stateless reset, so the
//! next message redials at once (a request cut by such a reset is retried once, as it provably
//! never reached the peer's new incarnation). A one-way message whose write fails is retried once
//! on a new connection, then dropped and counted ([`TransportStats::dropped_unsent`]).
//!
//! # Fault injection
//!
//! [`Transport::block_peer`] simulates a partition from this node's point of view: connections
//! to and from the address are closed, its handshakes are ignored (the dialer times out, as across
//! a real partition), nothing is sent to it and nothing from it is delivered.
//! [`Transport::set_peer_delay`] emulates a slow link: whatever arrives from the address waits
//! the given time before it is delivered. `ringdb cluster` drives both through the node's fault
//! file (`fault_file`, test clusters only).
//!
//! # Shutdown
//!
//! [`Transport::shutdown`] stops accepting new messages, lets the writers flush their queues
//! and waits for the last stream to each peer to be acknowledged, for at most
//! [`TransportConfig::flush_timeout`] (1 s), then closes every connection and the endpoint.
//! Dropping the last [`Transport`] handle closes the endpoint without flushing.
//!
//! # Wire format
//!
//! ```text
//! +----------------+---------------------------+--------------+
//! | length: u32 BE | header: bincode FrameKind | body         |
//! +----------------+---------------------------+--------------+
//! ```
//!
//! `length` counts header and body. The header is bincode's standard (varint) encoding of the
//! frame kind: `[0, c]` one-way message and `[1, c]` request on channel `c` (0 = gossip,
//! 1 = verb), `[2]` response, `[3, e]` error answer (`e`: 0 overloaded, 1 no response, 2 too
//! large, 3 malformed). So `00 00 00 05 | 00 00 | 61 62 63` is the one-way gossip message
//! `abc`. One frame per stream and direction; the stream's end follows it. The version of this
//! format is negotiated by ALPN ([`ALPN`]); a receiver checks `length` against its limit before
//! reading further, and never panics on malformed input.

mod codec;
mod error;
mod inbound;
mod peer;
mod queue;
mod stream;
mod tls;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};

pub use codec::{decode, encode, CodecError};
pub use error::TransportError;
pub use queue::DropOldestQueue;
pub use tls::{ALPN, SERVER_NAME};

use crate::certs::CertInfo;

use codec::{FrameError, FrameKind};
use peer::Peer;
pub(crate) use tls::check_node_chain;

/// The internode frame layer (length prefix, header, body), public only so that the fuzz targets
/// in `fuzz/` and their regression tests can reach it: nothing outside this crate builds frames.
#[doc(hidden)]
pub mod wire {
    pub use super::codec::{
        decode_frame, decode_payload, encode_frame, payload_len, FrameError, FrameKind, RemoteError,
    };
}

/// Paths of the PEM files that make a node's TLS identity (as written by `ringdb certs issue`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The cluster CA certificate: the only root trusted for peers (two, old and new, while the
    /// CA is rotated: every certificate of the file is trusted).
    pub ca: PathBuf,
    /// This node's certificate (optionally followed by intermediates).
    pub cert: PathBuf,
    /// This node's private key.
    pub key: PathBuf,
}

impl From<crate::certs::NodeFiles> for TlsFiles {
    fn from(files: crate::certs::NodeFiles) -> Self {
        TlsFiles {
            ca: files.ca,
            cert: files.cert,
            key: files.key,
        }
    }
}

/// How the transport is set up. [`TransportConfig::new`] fills in the defaults of every limit.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// Where the UDP socket binds (`listen_address:storage_port`); port 0 picks a free port,
    /// reported by [`Transport::local_addr`].
    pub listen: SocketAddr,
    /// The node's TLS files.
    pub tls: TlsFiles,
    /// Largest message body sent or accepted, in bytes. Default 16 MiB.
    pub max_message_bytes: usize,
    /// One-way messages waiting per peer before the oldest is dropped. Default 1024.
    pub peer_queue_len: usize,
    /// Requests in flight to one peer before [`TransportError::InFlightLimit`]. Default 1024.
    pub max_requests_in_flight: usize,
    /// Body bytes of the requests in flight to one peer before
    /// [`TransportError::InFlightBytesLimit`]. At least `max_message_bytes`. Default 64 MiB.
    pub max_request_bytes_in_flight: usize,
    /// Capacity of each inbound queue ([`InboundQueues::gossip`], [`InboundQueues::verbs`]).
    /// Default 4096.
    pub inbound_queue_len: usize,
    /// Streams of each direction a peer may have open on one connection to us. Default 1024.
    pub max_inbound_streams: u32,
    /// Time allowed to dial a peer, TLS handshake included. Default 2 s.
    pub connect_timeout: Duration,
    /// Interval of QUIC keep-alive packets on idle connections. Default 1 s.
    pub keep_alive: Duration,
    /// A connection silent this long is considered dead. Default 5 s: with 1 s keep-alives a dead
    /// peer is noticed within 5 s, and four lost keep-alives in a row are tolerated.
    pub idle_timeout: Duration,
    /// Time allowed to receive one inbound frame, or to write one outbound one-way message (a
    /// peer that stops reading must not stall its writer forever). Default 30 s.
    pub stream_timeout: Duration,
    /// Upper bound of the first back-off delay after a failed dial. Default 100 ms.
    pub backoff_initial: Duration,
    /// Largest back-off delay. Default 5 s.
    pub backoff_max: Duration,
    /// How long [`Transport::shutdown`] waits for queued one-way messages to be delivered.
    /// Default 1 s.
    pub flush_timeout: Duration,
}

impl TransportConfig {
    /// A configuration with every limit at its default.
    pub fn new(listen: SocketAddr, tls: TlsFiles) -> Self {
        TransportConfig {
            listen,
            tls,
            max_message_bytes: 16 * 1024 * 1024,
            peer_queue_len: 1024,
            max_requests_in_flight: 1024,
            max_request_bytes_in_flight: 64 * 1024 * 1024,
            inbound_queue_len: 4096,
            max_inbound_streams: 1024,
            connect_timeout: Duration::from_secs(2),
            keep_alive: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(5),
            stream_timeout: Duration::from_secs(30),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            flush_timeout: Duration::from_secs(1),
        }
    }

    fn validate(&self) -> Result<(), TransportError> {
        let zero = |name: &str| {
            Err(TransportError::Config(format!(
                "{name} must be greater than zero"
            )))
        };
        if self.max_message_bytes == 0 {
            return zero("max_message_bytes");
        }
        if self.max_message_bytes > (u32::MAX as usize) / 2 {
            return Err(TransportError::Config(format!(
                "max_message_bytes {} is above the 2 GiB the frame format allows",
                self.max_message_bytes
            )));
        }
        if self.peer_queue_len == 0 {
            return zero("peer_queue_len");
        }
        if self.max_requests_in_flight == 0 {
            return zero("max_requests_in_flight");
        }
        if self.max_request_bytes_in_flight < self.max_message_bytes {
            return Err(TransportError::Config(format!(
                "max_request_bytes_in_flight ({}) must be at least max_message_bytes ({}), or \
                 the largest requests could never be sent",
                self.max_request_bytes_in_flight, self.max_message_bytes
            )));
        }
        if self.inbound_queue_len == 0 {
            return zero("inbound_queue_len");
        }
        if self.max_inbound_streams == 0 {
            return zero("max_inbound_streams");
        }
        if self.connect_timeout.is_zero()
            || self.idle_timeout.is_zero()
            || self.keep_alive.is_zero()
            || self.stream_timeout.is_zero()
            || self.flush_timeout.is_zero()
        {
            return zero(
                "connect_timeout, keep_alive, idle_timeout, stream_timeout and flush_timeout",
            );
        }
        if self.keep_alive >= self.idle_timeout {
            return Err(TransportError::Config(format!(
                "keep_alive ({:?}) must be shorter than idle_timeout ({:?}) or idle connections die",
                self.keep_alive, self.idle_timeout
            )));
        }
        if self.backoff_initial > self.backoff_max {
            return Err(TransportError::Config(
                "backoff_initial must not exceed backoff_max".into(),
            ));
        }
        Ok(())
    }
}

/// Which inbound queue a message is delivered to. Gossip owns the wire; the node's data verbs
/// (mutations, reads, hints, repair, streaming) use [`Channel::Verb`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, bincode::Encode, bincode::Decode)]
pub enum Channel {
    /// Gossip's own messages (SYN/ACK/ACK2, …).
    Gossip,
    /// The node's verbs.
    Verb,
}

/// A message received from a peer: a one-way message, or a request to answer with
/// [`Inbound::respond`].
pub struct Inbound {
    /// The sender's listen address (the address other nodes dial it at).
    pub from: SocketAddr,
    /// The channel it arrived on.
    pub channel: Channel,
    /// The message body.
    pub body: Bytes,
    responder: Option<oneshot::Sender<Bytes>>,
}

impl Inbound {
    /// Whether the sender waits for an answer (it used [`Transport::request`]).
    pub fn expects_response(&self) -> bool {
        self.responder.is_some()
    }

    /// Answers the request with `body`; does nothing for a one-way message. Dropping a request
    /// without answering makes the requester get [`TransportError::NoResponse`]; a body larger
    /// than the size limit makes it get [`TransportError::RefusedTooLarge`].
    pub fn respond(self, body: Bytes) {
        if let Some(responder) = self.responder {
            // The requester may have given up already; then there is nobody to tell.
            let _ = responder.send(body);
        }
    }
}

impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbound")
            .field("from", &self.from)
            .field("channel", &self.channel)
            .field("body_len", &self.body.len())
            .field("expects_response", &self.expects_response())
            .finish()
    }
}

/// The receiving ends of the inbound queues, one per [`Channel`]. They close when the transport
/// is shut down and its connections are gone.
#[derive(Debug)]
pub struct InboundQueues {
    /// Messages on [`Channel::Gossip`].
    pub gossip: mpsc::Receiver<Inbound>,
    /// Messages on [`Channel::Verb`].
    pub verbs: mpsc::Receiver<Inbound>,
}

/// A snapshot of the transport's counters, all since [`Transport::bind`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Frames written: one-way messages, requests and responses.
    pub messages_sent: u64,
    /// Body bytes of the frames written.
    pub bytes_sent: u64,
    /// Frames received and accepted: one-way messages, requests and responses.
    pub messages_received: u64,
    /// Body bytes of the frames received.
    pub bytes_received: u64,
    /// Outbound one-way messages dropped because the peer's queue was full (oldest first).
    pub dropped_queue_full: u64,
    /// Inbound one-way messages dropped because the local inbound queue was full.
    pub dropped_inbound_full: u64,
    /// Inbound requests answered "overloaded" because the local inbound queue was full.
    pub requests_overloaded: u64,
    /// Outbound requests refused at once because the peer already had
    /// `max_requests_in_flight` requests or `max_request_bytes_in_flight` bytes in flight.
    pub requests_refused_in_flight: u64,
    /// Messages discarded because the peer is blocked ([`Transport::block_peer`]), both ways.
    pub dropped_blocked: u64,
    /// Outbound one-way messages given up: too large, written twice without success, or still
    /// queued for an unreachable peer at shutdown.
    pub dropped_unsent: u64,
    /// Inbound messages refused as larger than `max_message_bytes`.
    pub refused_too_large: u64,
    /// Inbound streams that did not hold a valid frame.
    pub malformed_frames: u64,
    /// Dials that failed (unreachable, timed out, handshake refused by either side).
    pub connect_failures: u64,
    /// Inbound handshakes that failed on TLS grounds (certificate not from the cluster CA, no
    /// client certificate, wrong protocol), each also logged with `warn!`.
    pub handshakes_refused: u64,
    /// Connections dialed successfully.
    pub connections_dialed: u64,
    /// Connections accepted (handshake completed).
    pub connections_accepted: u64,
}

/// The live counters behind [`TransportStats`].
#[derive(Debug, Default)]
struct Counters {
    messages_sent: AtomicU64,
    bytes_sent: AtomicU64,
    messages_received: AtomicU64,
    bytes_received: AtomicU64,
    dropped_queue_full: AtomicU64,
    dropped_inbound_full: AtomicU64,
    requests_overloaded: AtomicU64,
    requests_refused_in_flight: AtomicU64,
    dropped_blocked: AtomicU64,
    dropped_unsent: AtomicU64,
    refused_too_large: AtomicU64,
    malformed_frames: AtomicU64,
    connect_failures: AtomicU64,
    handshakes_refused: AtomicU64,
    connections_dialed: AtomicU64,
    connections_accepted: AtomicU64,
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

impl Counters {
    fn sent(&self, body_len: usize) {
        bump(&self.messages_sent, 1);
        bump(&self.bytes_sent, body_len as u64);
    }

    fn received(&self, body_len: usize) {
        bump(&self.messages_received, 1);
        bump(&self.bytes_received, body_len as u64);
    }

    fn snapshot(&self) -> TransportStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        TransportStats {
            messages_sent: get(&self.messages_sent),
            bytes_sent: get(&self.bytes_sent),
            messages_received: get(&self.messages_received),
            bytes_received: get(&self.bytes_received),
            dropped_queue_full: get(&self.dropped_queue_full),
            dropped_inbound_full: get(&self.dropped_inbound_full),
            requests_overloaded: get(&self.requests_overloaded),
            requests_refused_in_flight: get(&self.requests_refused_in_flight),
            dropped_blocked: get(&self.dropped_blocked),
            dropped_unsent: get(&self.dropped_unsent),
            refused_too_large: get(&self.refused_too_large),
            malformed_frames: get(&self.malformed_frames),
            connect_failures: get(&self.connect_failures),
            handshakes_refused: get(&self.handshakes_refused),
            connections_dialed: get(&self.connections_dialed),
            connections_accepted: get(&self.connections_accepted),
        }
    }
}

/// Application close codes of our connections.
const CLOSE_SHUTDOWN: u32 = 0;
const CLOSE_BLOCKED: u32 = 1;
/// Close code: the peer restarted; this connection led to its previous incarnation.
const CLOSE_PEER_RESTARTED: u32 = 2;

/// Locks a std mutex, recovering from poisoning: every critical section here leaves the data
/// consistent, so a panic elsewhere must not take the transport down with it.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The state shared by the handles and the tasks of one transport.
struct Shared {
    config: TransportConfig,
    endpoint: quinn::Endpoint,
    /// The TLS identity in use: the client side of new dials and what it is; replaced whole by
    /// [`Transport::install_tls`] (the server side lives in the endpoint).
    tls: Mutex<ActiveTls>,
    local_addr: SocketAddr,
    runtime: tokio::runtime::Handle,
    peers: Mutex<HashMap<SocketAddr, Arc<Peer>>>,
    blocked: Mutex<HashSet<IpAddr>>,
    /// Fault injection: extra latency on arrival of messages from these addresses.
    delays: Mutex<HashMap<IpAddr, Duration>>,
    /// Accepted connections by `stable_id`, so that blocking a peer can close them.
    accepted: Mutex<HashMap<usize, quinn::Connection>>,
    counters: Counters,
    /// Becomes `true` once shutdown starts (or the last handle is dropped).
    shutting_down: watch::Sender<bool>,
}

/// The TLS configuration new outgoing connections use, and the certificate it presents.
struct ActiveTls {
    client_config: quinn::ClientConfig,
    info: CertInfo,
}

impl Shared {
    /// The client configuration for a new dial.
    fn client_config(&self) -> quinn::ClientConfig {
        lock(&self.tls).client_config.clone()
    }

    fn is_shutting_down(&self) -> bool {
        *self.shutting_down.borrow()
    }

    fn is_blocked(&self, ip: IpAddr) -> bool {
        lock(&self.blocked).contains(&ip.to_canonical())
    }

    /// Waits out the injected latency for messages from `ip`, if any.
    async fn delay_from(&self, ip: IpAddr) {
        let delay = lock(&self.delays).get(&ip.to_canonical()).copied();
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
    }

    /// The peer's state, created on first use.
    fn peer(&self, addr: SocketAddr) -> Arc<Peer> {
        lock(&self.peers)
            .entry(addr)
            .or_insert_with(|| Arc::new(Peer::new(addr, &self.config)))
            .clone()
    }

    /// The peer's state if this node ever sent to it.
    fn known_peer(&self, addr: SocketAddr) -> Option<Arc<Peer>> {
        lock(&self.peers).get(&addr).cloned()
    }

    fn peers_at(&self, ip: IpAddr) -> Vec<Arc<Peer>> {
        lock(&self.peers)
            .values()
            .filter(|p| p.addr.ip().to_canonical() == ip)
            .cloned()
            .collect()
    }
}

/// Closes the endpoint when the last user handle goes away (tasks hold [`Shared`], not this).
struct LastHandle(Arc<Shared>);

impl Drop for LastHandle {
    fn drop(&mut self) {
        self.0.shutting_down.send_replace(true);
        self.0
            .endpoint
            .close(quinn::VarInt::from_u32(CLOSE_SHUTDOWN), b"shutdown");
    }
}

/// The internode transport of one node: a QUIC endpoint with mutual TLS, per-peer queues and
/// connections, and two inbound queues. Cheap to clone; every clone is the same endpoint.
#[derive(Clone)]
pub struct Transport {
    shared: Arc<Shared>,
    _last_handle: Arc<LastHandle>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("local_addr", &self.shared.local_addr)
            .finish()
    }
}

fn quic_transport_config(
    config: &TransportConfig,
    accepts_streams: bool,
) -> Result<quinn::TransportConfig, TransportError> {
    let mut transport = quinn::TransportConfig::default();
    // Only accepted connections carry inbound streams; on the connections we dial, the peer
    // may open none (it writes on the connections it dials itself).
    let streams = if accepts_streams {
        config.max_inbound_streams
    } else {
        0
    };
    transport
        .max_concurrent_bidi_streams(quinn::VarInt::from_u32(streams))
        .max_concurrent_uni_streams(quinn::VarInt::from_u32(streams))
        .keep_alive_interval(Some(config.keep_alive))
        .max_idle_timeout(Some(
            quinn::IdleTimeout::try_from(config.idle_timeout).map_err(|_| {
                TransportError::Config(format!(
                    "idle_timeout {:?} is too large for QUIC",
                    config.idle_timeout
                ))
            })?,
        ))
        .datagram_receive_buffer_size(None);
    // Unread data a peer may have in flight on one connection: room for two maximal messages,
    // instead of quinn's unlimited default.
    let window = (config.max_message_bytes as u64)
        .saturating_mul(2)
        .max(8 * 1024 * 1024);
    transport
        .receive_window(quinn::VarInt::from_u64(window).unwrap_or(quinn::VarInt::MAX))
        .send_window(window);
    Ok(transport)
}

/// A TLS identity read from the files and checked, ready to be installed with
/// [`Transport::install_tls`]; dropping it changes nothing.
pub struct PreparedTls {
    server_config: quinn::ServerConfig,
    client_config: quinn::ClientConfig,
    info: CertInfo,
}

impl PreparedTls {
    /// Loads and checks the files of `config.tls` and builds both sides' configurations.
    fn load(config: &TransportConfig) -> Result<PreparedTls, TransportError> {
        let identity = tls::load_identity(&config.tls)?;
        let mut server_config =
            quinn::ServerConfig::with_crypto(Arc::new(tls::server_crypto(&config.tls, &identity)?));
        server_config
            .transport_config(Arc::new(quic_transport_config(config, true)?))
            // A peer is known by its address: it must not move its connection elsewhere.
            .migration(false);
        let mut client_config =
            quinn::ClientConfig::new(Arc::new(tls::client_crypto(&config.tls, &identity)?));
        client_config.transport_config(Arc::new(quic_transport_config(config, false)?));
        Ok(PreparedTls {
            server_config,
            client_config,
            info: identity.info,
        })
    }

    /// The node certificate this identity presents.
    pub fn certificate(&self) -> &CertInfo {
        &self.info
    }
}

impl std::fmt::Debug for PreparedTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedTls")
            .field("certificate", &self.info)
            .finish()
    }
}

impl Transport {
    /// Loads and checks the TLS files (errors name the file at fault), binds the UDP socket and
    /// starts accepting connections. Returns the transport and the receiving ends of its inbound
    /// queues. Must be called within a tokio runtime.
    pub async fn bind(
        config: TransportConfig,
    ) -> Result<(Transport, InboundQueues), TransportError> {
        config.validate()?;
        let PreparedTls {
            server_config,
            client_config,
            info,
        } = PreparedTls::load(&config)?;

        let endpoint = quinn::Endpoint::server(server_config, config.listen).map_err(|source| {
            TransportError::Bind {
                addr: config.listen,
                source,
            }
        })?;
        let local_addr = endpoint
            .local_addr()
            .map_err(|source| TransportError::Bind {
                addr: config.listen,
                source,
            })?;

        let (gossip_tx, gossip_rx) = mpsc::channel(config.inbound_queue_len);
        let (verbs_tx, verbs_rx) = mpsc::channel(config.inbound_queue_len);
        let (shutting_down, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            config,
            endpoint,
            tls: Mutex::new(ActiveTls {
                client_config,
                info,
            }),
            local_addr,
            runtime: tokio::runtime::Handle::current(),
            peers: Mutex::new(HashMap::new()),
            blocked: Mutex::new(HashSet::new()),
            delays: Mutex::new(HashMap::new()),
            accepted: Mutex::new(HashMap::new()),
            counters: Counters::default(),
            shutting_down,
        });
        let senders = inbound::InboundSenders {
            gossip: gossip_tx,
            verbs: verbs_tx,
        };
        shared
            .runtime
            .spawn(inbound::accept_loop(shared.clone(), senders));
        tracing::info!(%local_addr, "internode transport listening");
        let transport = Transport {
            _last_handle: Arc::new(LastHandle(shared.clone())),
            shared,
        };
        Ok((
            transport,
            InboundQueues {
                gossip: gossip_rx,
                verbs: verbs_rx,
            },
        ))
    }

    /// The address the endpoint is bound to (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// Reads the TLS files again (the paths given to [`Transport::bind`]) and, if they make a
    /// valid identity, makes new handshakes in both directions use it; connections already
    /// established stay up (see [Replacing the certificates](self#replacing-the-certificates)).
    /// On error nothing changes and the error names the file at fault. Returns the certificate
    /// now presented.
    pub fn reload_tls(&self) -> Result<CertInfo, TransportError> {
        let prepared = self.prepare_tls()?;
        Ok(self.install_tls(prepared))
    }

    /// The checking half of [`Transport::reload_tls`]: reads and checks the files and builds the
    /// configurations, changing nothing. Blocking file I/O, small.
    pub fn prepare_tls(&self) -> Result<PreparedTls, TransportError> {
        PreparedTls::load(&self.shared.config)
    }

    /// The swapping half of [`Transport::reload_tls`]: from now on, accepted and dialed
    /// handshakes use `prepared`. Returns the certificate now presented. Callers that may reload
    /// concurrently serialize prepare-and-install themselves, or an older read could be
    /// installed last.
    pub fn install_tls(&self, prepared: PreparedTls) -> CertInfo {
        let PreparedTls {
            server_config,
            client_config,
            info,
        } = prepared;
        let mut active = lock(&self.shared.tls);
        self.shared.endpoint.set_server_config(Some(server_config));
        *active = ActiveTls {
            client_config,
            info: info.clone(),
        };
        info
    }

    /// The node certificate new handshakes present.
    pub fn tls_certificate(&self) -> CertInfo {
        lock(&self.shared.tls).info.clone()
    }

    /// Queues a one-way message for `peer` and returns at once; never blocks. A per-peer task
    /// connects (with back-off while the peer is unreachable) and writes each message on its own
    /// stream. When the peer's queue is full the **oldest** queued message is dropped and
    /// counted. Messages that cannot be queued at all (too large, peer blocked, transport shut
    /// down) are dropped, logged and counted; use [`Transport::try_send`] to see why.
    pub fn send(&self, peer: SocketAddr, channel: Channel, body: Bytes) {
        if let Err(e) = self.try_send(peer, channel, body) {
            match e {
                TransportError::TooLarge { .. } => {
                    tracing::warn!(%peer, ?channel, "one-way message dropped: {e}")
                }
                _ => tracing::debug!(%peer, ?channel, "one-way message dropped: {e}"),
            }
        }
    }

    /// Like [`Transport::send`], but says why a message could not be queued:
    /// [`TransportError::TooLarge`], [`TransportError::Blocked`] or [`TransportError::ShutDown`].
    /// `Ok` means queued (possibly at the cost of the oldest queued message), not delivered.
    pub fn try_send(
        &self,
        peer: SocketAddr,
        channel: Channel,
        body: Bytes,
    ) -> Result<(), TransportError> {
        let shared = &self.shared;
        if shared.is_shutting_down() {
            bump(&shared.counters.dropped_unsent, 1);
            return Err(TransportError::ShutDown);
        }
        if shared.is_blocked(peer.ip()) {
            bump(&shared.counters.dropped_blocked, 1);
            return Err(TransportError::Blocked { peer });
        }
        let frame = codec::encode_frame(
            FrameKind::OneWay(channel),
            &body,
            shared.config.max_message_bytes,
        )
        .map_err(|e| {
            bump(&shared.counters.dropped_unsent, 1);
            frame_error(peer, e)
        })?;
        peer::enqueue(shared, peer, frame, body.len());
        Ok(())
    }

    /// Sends a request on its own bidirectional stream and waits for the answer, for at most
    /// `timeout` (dialing included).
    ///
    /// Fails fast with [`TransportError::Unreachable`] while the peer is in back-off, with
    /// [`TransportError::InFlightLimit`] when `max_requests_in_flight` requests to the peer are
    /// already waiting, with [`TransportError::InFlightBytesLimit`] when this one's body does
    /// not fit in what is left of `max_request_bytes_in_flight`, with [`TransportError::Overloaded`] when the peer's inbound queue is
    /// full, and with [`TransportError::Timeout`] when no answer comes in time.
    pub async fn request(
        &self,
        peer: SocketAddr,
        channel: Channel,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, TransportError> {
        let shared = &self.shared;
        if shared.is_shutting_down() {
            return Err(TransportError::ShutDown);
        }
        if shared.is_blocked(peer.ip()) {
            bump(&shared.counters.dropped_blocked, 1);
            return Err(TransportError::Blocked { peer });
        }
        let frame = codec::encode_frame(
            FrameKind::Request(channel),
            &body,
            shared.config.max_message_bytes,
        )
        .map_err(|e| frame_error(peer, e))?;
        let state = shared.peer(peer);
        let _permit = state.in_flight.clone().try_acquire_owned().map_err(|_| {
            bump(&shared.counters.requests_refused_in_flight, 1);
            TransportError::InFlightLimit {
                peer,
                limit: shared.config.max_requests_in_flight,
            }
        })?;
        // `validate` keeps the budget at least `max_message_bytes`, so any body that could be
        // framed fits alone.
        let bytes = u32::try_from(body.len()).unwrap_or(u32::MAX);
        let _bytes_permit = state
            .in_flight_bytes
            .clone()
            .try_acquire_many_owned(bytes)
            .map_err(|_| {
                bump(&shared.counters.requests_refused_in_flight, 1);
                TransportError::InFlightBytesLimit {
                    peer,
                    limit: shared.config.max_request_bytes_in_flight,
                }
            })?;
        let exchange = async {
            let answer = peer::exchange(shared, &state, &frame, body.len()).await;
            shared.delay_from(peer.ip()).await;
            answer
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(TransportError::Timeout {
                peer,
                after: timeout,
            }),
        }
    }

    /// Fault injection (partition tests): drops all traffic to and from `peer` (every port at
    /// that address). Its connections are closed, its handshakes ignored, messages queued for it
    /// discarded, new ones refused with [`TransportError::Blocked`], and anything it still
    /// manages to deliver is discarded; all counted in [`TransportStats::dropped_blocked`].
    pub fn block_peer(&self, peer: IpAddr) {
        let shared = &self.shared;
        let ip = peer.to_canonical();
        lock(&shared.blocked).insert(ip);
        for state in shared.peers_at(ip) {
            let discarded = state.disconnect(CLOSE_BLOCKED, b"blocked");
            bump(&shared.counters.dropped_blocked, discarded as u64);
        }
        for connection in lock(&shared.accepted).values() {
            if connection.remote_address().ip().to_canonical() == ip {
                connection.close(quinn::VarInt::from_u32(CLOSE_BLOCKED), b"blocked");
            }
        }
        tracing::info!(%peer, "internode traffic with peer blocked");
    }

    /// Undoes [`Transport::block_peer`]; traffic resumes at once (back-off towards that address
    /// is forgotten).
    pub fn unblock_peer(&self, peer: IpAddr) {
        let ip = peer.to_canonical();
        lock(&self.shared.blocked).remove(&ip);
        for state in self.shared.peers_at(ip) {
            state.forget_backoff();
        }
        tracing::info!(%peer, "internode traffic with peer unblocked");
    }

    /// Fault injection (WAN emulation): every message that arrives from `peer` (any port at that
    /// address) — one-way message, request or answer to our request — is held `delay` before it
    /// is delivered; `None` or zero removes the delay. With the same delay set on both sides, a
    /// request and its answer each take `delay` longer, so a round trip takes `2 × delay` more.
    pub fn set_peer_delay(&self, peer: IpAddr, delay: Option<Duration>) {
        let ip = peer.to_canonical();
        let mut delays = lock(&self.shared.delays);
        match delay.filter(|d| !d.is_zero()) {
            Some(d) => {
                if delays.insert(ip, d) != Some(d) {
                    tracing::info!(%peer, delay_ms = d.as_millis() as u64, "internode messages from peer delayed");
                }
            }
            None => {
                if delays.remove(&ip).is_some() {
                    tracing::info!(%peer, "internode delay from peer removed");
                }
            }
        }
    }

    /// The injected delays, by peer address.
    pub fn peer_delays(&self) -> Vec<(IpAddr, Duration)> {
        lock(&self.shared.delays)
            .iter()
            .map(|(ip, d)| (*ip, *d))
            .collect()
    }

    /// Forgets the back-off towards `peer`, so that the next message or request dials at once:
    /// for when something else (the failure detector, hearing of the peer through others) says
    /// it is back, before it happened to dial this node itself.
    pub fn reset_backoff(&self, peer: SocketAddr) {
        if let Some(state) = self.shared.known_peer(peer) {
            state.forget_backoff();
        }
    }

    /// The addresses currently blocked, in no particular order.
    pub fn blocked_peers(&self) -> Vec<IpAddr> {
        lock(&self.shared.blocked).iter().copied().collect()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> TransportStats {
        self.shared.counters.snapshot()
    }

    /// Stops taking new messages, flushes the queued one-way messages for at most
    /// `flush_timeout` (≈1 s), then closes every connection and the endpoint. The inbound queues
    /// close once the accepted connections are gone. Calling it again is harmless.
    pub async fn shutdown(&self) {
        peer::flush_and_close(&self.shared).await;
    }
}

/// The CA file as a root store (for `certs`, which checks what it issues as the transport will).
pub(crate) fn tls_root_store(
    ca: &std::path::Path,
) -> Result<rustls::RootCertStore, TransportError> {
    tls::root_store(ca, tls::read_certificates(ca)?)
}

/// Maps a frame encoding failure to the caller's error.
fn frame_error(peer: SocketAddr, error: FrameError) -> TransportError {
    match error {
        FrameError::TooLarge { size, limit } => TransportError::TooLarge { size, limit },
        FrameError::Malformed(reason) => TransportError::Protocol { peer, reason },
    }
}
