//! The outbound side: per-peer state, dialing with back-off, the writer task that drains a
//! peer's queue of one-way messages, requests, and the flush at shutdown.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::codec::{FrameKind, RemoteError};
use super::queue::DropOldestQueue;
use super::stream::{
    self, is_handshake_failure, ReadFailure, STREAM_BLOCKED, STREAM_MALFORMED, STREAM_TOO_LARGE,
};
use super::{bump, lock, Shared, TransportConfig, TransportError, CLOSE_SHUTDOWN, SERVER_NAME};

/// A one-way message waiting for its peer, already framed.
struct Outgoing {
    frame: Bytes,
    body_len: usize,
    failed_writes: u8,
}

/// Everything this node keeps about one peer it sends to.
pub(crate) struct Peer {
    /// The peer's listen address.
    pub(crate) addr: SocketAddr,
    state: Mutex<PeerState>,
    /// Held while dialing, so that concurrent senders share one dial.
    dial_lock: tokio::sync::Mutex<()>,
    /// Permits for requests in flight.
    pub(crate) in_flight: Arc<Semaphore>,
    /// Permits for the body bytes of requests in flight, one per byte.
    pub(crate) in_flight_bytes: Arc<Semaphore>,
    backoff_initial: Duration,
    backoff_max: Duration,
    /// Wakes a writer sleeping through back-off when the back-off is forgotten.
    wake: tokio::sync::Notify,
}

struct PeerState {
    queue: DropOldestQueue<Outgoing>,
    /// Whether a writer task is draining `queue`; only the task clears it, under this lock,
    /// when it finds the queue empty.
    writer_running: bool,
    /// The connection we dialed, if any.
    connection: Option<quinn::Connection>,
    /// Consecutive failed dials (reset once a connection has proved to work).
    failures: u32,
    /// While in back-off: when the next dial may happen.
    retry_at: Option<Instant>,
    /// The last one-way stream written, awaited at shutdown so that the flush means delivered.
    last_stream: Option<quinn::SendStream>,
}

impl Peer {
    pub(crate) fn new(addr: SocketAddr, config: &TransportConfig) -> Self {
        Peer {
            addr,
            state: Mutex::new(PeerState {
                queue: DropOldestQueue::new(config.peer_queue_len),
                writer_running: false,
                connection: None,
                failures: 0,
                retry_at: None,
                last_stream: None,
            }),
            dial_lock: tokio::sync::Mutex::new(()),
            in_flight: Arc::new(Semaphore::new(config.max_requests_in_flight)),
            in_flight_bytes: Arc::new(Semaphore::new(
                config
                    .max_request_bytes_in_flight
                    .min(Semaphore::MAX_PERMITS),
            )),
            backoff_initial: config.backoff_initial,
            backoff_max: config.backoff_max,
            wake: tokio::sync::Notify::new(),
        }
    }

    /// Closes our connection to the peer and discards its queue; returns how many messages were
    /// discarded.
    pub(crate) fn disconnect(&self, code: u32, reason: &[u8]) -> usize {
        let mut state = lock(&self.state);
        if let Some(connection) = state.connection.take() {
            connection.close(quinn::VarInt::from_u32(code), reason);
        }
        state.last_stream = None;
        state.queue.clear()
    }

    /// Closes the connection we dialed (if any) without touching the queue: the next message
    /// dials afresh. Used when the peer evidently restarted: a connection to its previous
    /// incarnation would otherwise swallow writes until the idle timeout (the new process cannot
    /// reset it, as it does not know the old endpoint's reset key).
    pub(crate) fn drop_connection(&self, code: u32, reason: &[u8]) {
        let mut state = lock(&self.state);
        if let Some(connection) = state.connection.take() {
            connection.close(quinn::VarInt::from_u32(code), reason);
        }
        state.last_stream = None;
    }

    /// Ends back-off: the next message dials at once, and a writer waiting out the back-off
    /// goes on now.
    pub(crate) fn forget_backoff(&self) {
        let was_backing_off = {
            let mut state = lock(&self.state);
            state.failures = 0;
            state.retry_at.take().is_some()
        };
        if was_backing_off {
            self.wake.notify_one();
        }
    }

    fn is_busy(&self) -> bool {
        let state = lock(&self.state);
        state.writer_running || !state.queue.is_empty()
    }

    /// The next message for the writer; when there is none, the writer is marked stopped in the
    /// same critical section, so a concurrent `enqueue` either sees it running or starts a new one.
    fn next_message(&self) -> Option<Outgoing> {
        let mut state = lock(&self.state);
        let message = state.queue.pop();
        if message.is_none() {
            state.writer_running = false;
        }
        message
    }

    /// Puts a message back at the head of the queue; returns whether it had to be dropped
    /// instead (queue full: it is the oldest).
    fn requeue(&self, message: Outgoing) -> bool {
        lock(&self.state).queue.push_front(message).is_some()
    }

    /// Discards the queue and marks the writer stopped; returns how many messages were dropped.
    fn stop_writer(&self) -> usize {
        let mut state = lock(&self.state);
        state.writer_running = false;
        state.queue.clear()
    }

    fn record_failure(&self, state: &mut PeerState) {
        state.failures = state.failures.saturating_add(1);
        let delay = backoff_delay(self.backoff_initial, self.backoff_max, state.failures);
        state.retry_at = Some(Instant::now() + delay);
    }

    fn check_backoff(&self) -> Result<(), TransportError> {
        let state = lock(&self.state);
        match state.retry_at {
            Some(at) if at > Instant::now() => Err(TransportError::Unreachable {
                peer: self.addr,
                retry_in: at - Instant::now(),
            }),
            _ => Ok(()),
        }
    }
}

/// Full-jitter exponential back-off: a uniformly random delay in
/// `[0, min(max, initial · 2^(failures-1))]`. The randomness keeps nodes that lost the same
/// peer from redialing it in lockstep.
fn backoff_delay(initial: Duration, max: Duration, failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(31);
    let cap = initial.saturating_mul(1u32 << exponent).min(max);
    let cap_nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rand::rng().random_range(0..=cap_nanos))
}

/// Queues a framed one-way message for `addr` (dropping the oldest queued one if full) and makes
/// sure a writer task is draining the queue.
pub(crate) fn enqueue(shared: &Arc<Shared>, addr: SocketAddr, frame: Bytes, body_len: usize) {
    let peer = shared.peer(addr);
    let start_writer = {
        let mut state = lock(&peer.state);
        let message = Outgoing {
            frame,
            body_len,
            failed_writes: 0,
        };
        if state.queue.push(message).is_some() {
            bump(&shared.counters.dropped_queue_full, 1);
            tracing::trace!(peer = %addr, "peer queue full: dropped the oldest one-way message");
        }
        !std::mem::replace(&mut state.writer_running, true)
    };
    if start_writer {
        shared.runtime.spawn(run_writer(shared.clone(), peer));
    }
}

/// Drains one peer's queue: dials when needed, sleeps through back-off, writes each message on
/// its own unidirectional stream. Ends when the queue is empty, or at shutdown once the peer
/// cannot be reached, or when the peer is blocked.
async fn run_writer(shared: Arc<Shared>, peer: Arc<Peer>) {
    let mut shutdown = shared.shutting_down.subscribe();
    loop {
        if shared.is_blocked(peer.addr.ip()) {
            bump(&shared.counters.dropped_blocked, peer.stop_writer() as u64);
            return;
        }
        let Some(mut message) = peer.next_message() else {
            return;
        };
        let connection = match connection(&shared, &peer).await {
            Ok(connection) => connection,
            Err(TransportError::Blocked { .. }) => {
                bump(&shared.counters.dropped_blocked, 1);
                continue;
            }
            Err(error) => {
                if shared.is_shutting_down() {
                    let dropped = 1 + peer.stop_writer();
                    bump(&shared.counters.dropped_unsent, dropped as u64);
                    tracing::debug!(peer = %peer.addr, dropped, "shutting down: undeliverable one-way messages dropped");
                    return;
                }
                if peer.requeue(message) {
                    bump(&shared.counters.dropped_queue_full, 1);
                }
                if let TransportError::Unreachable { retry_in, .. } = error {
                    tokio::select! {
                        _ = tokio::time::sleep(retry_in) => {}
                        _ = peer.wake.notified() => {}
                        _ = shutdown.changed() => {}
                    }
                } else {
                    tracing::debug!(peer = %peer.addr, "cannot deliver one-way messages: {error}");
                }
                continue;
            }
        };
        let write = tokio::time::timeout(
            shared.config.stream_timeout,
            write_one_way(&connection, &message.frame),
        );
        let written = match write.await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "write not done within {:?}",
                shared.config.stream_timeout
            )),
        };
        match written {
            Ok(stream) => {
                shared.counters.sent(message.body_len);
                lock(&peer.state).last_stream = Some(stream);
            }
            Err(reason) => {
                // Forget the broken connection (and note a refused handshake) before retrying.
                let _ = check_connection(&shared, &peer);
                message.failed_writes += 1;
                if message.failed_writes < 2 {
                    if peer.requeue(message) {
                        bump(&shared.counters.dropped_queue_full, 1);
                    }
                } else {
                    bump(&shared.counters.dropped_unsent, 1);
                    tracing::debug!(peer = %peer.addr, "one-way message dropped after two failed writes: {reason}");
                }
            }
        }
    }
}

async fn write_one_way(
    connection: &quinn::Connection,
    frame: &[u8],
) -> Result<quinn::SendStream, String> {
    let mut send = connection.open_uni().await.map_err(|e| e.to_string())?;
    stream::write_frame(&mut send, frame)
        .await
        .map_err(|e| e.to_string())?;
    Ok(send)
}

/// Our live connection to the peer, if any. A connection found closed is forgotten; if it was
/// closed by a refused TLS handshake (the peer accepted our dial, then rejected our certificate)
/// that counts as a failed dial and is returned as [`TransportError::Handshake`].
fn check_connection(
    shared: &Shared,
    peer: &Peer,
) -> Result<Option<quinn::Connection>, TransportError> {
    let mut state = lock(&peer.state);
    let Some(connection) = &state.connection else {
        return Ok(None);
    };
    let Some(reason) = connection.close_reason() else {
        return Ok(Some(connection.clone()));
    };
    state.connection = None;
    state.last_stream = None;
    if is_handshake_failure(&reason) {
        bump(&shared.counters.connect_failures, 1);
        peer.record_failure(&mut state);
        drop(state);
        tracing::warn!(peer = %peer.addr, %reason, "peer refused the TLS handshake");
        return Err(TransportError::Handshake {
            peer: peer.addr,
            reason: reason.to_string(),
        });
    }
    // The connection worked until now (peer restarted, idle timeout, …): redial at once.
    state.failures = 0;
    state.retry_at = None;
    tracing::debug!(peer = %peer.addr, %reason, "connection closed; will redial");
    Ok(None)
}

/// A live connection to the peer: the cached one, or a new dial. Fails fast while the peer is
/// in back-off.
async fn connection(shared: &Shared, peer: &Peer) -> Result<quinn::Connection, TransportError> {
    if let Some(connection) = check_connection(shared, peer)? {
        return Ok(connection);
    }
    peer.check_backoff()?;
    let _dialing = peer.dial_lock.lock().await;
    if let Some(connection) = check_connection(shared, peer)? {
        return Ok(connection);
    }
    peer.check_backoff()?;
    // Dialing stays allowed while shutting down: flushing the queues may need a connection.
    // Once the endpoint is closed, dials fail by themselves.
    let result = dial(shared, peer.addr).await;
    let mut state = lock(&peer.state);
    match result {
        Ok(connection) => {
            if shared.is_blocked(peer.addr.ip()) {
                connection.close(quinn::VarInt::from_u32(super::CLOSE_BLOCKED), b"blocked");
                return Err(TransportError::Blocked { peer: peer.addr });
            }
            bump(&shared.counters.connections_dialed, 1);
            state.connection = Some(connection.clone());
            Ok(connection)
        }
        Err(error) => {
            bump(&shared.counters.connect_failures, 1);
            peer.record_failure(&mut state);
            Err(error)
        }
    }
}

async fn dial(shared: &Shared, peer: SocketAddr) -> Result<quinn::Connection, TransportError> {
    let connecting = shared
        .endpoint
        .connect_with(shared.client_config(), peer, SERVER_NAME)
        .map_err(|e| TransportError::Connect {
            peer,
            reason: e.to_string(),
        })?;
    let timeout = shared.config.connect_timeout;
    match tokio::time::timeout(timeout, connecting).await {
        Err(_) => Err(TransportError::Connect {
            peer,
            reason: format!("no handshake within {timeout:?}"),
        }),
        Ok(Err(e)) if is_handshake_failure(&e) => {
            tracing::warn!(%peer, reason = %e, "TLS handshake with peer failed");
            Err(TransportError::Handshake {
                peer,
                reason: e.to_string(),
            })
        }
        Ok(Err(e)) => Err(TransportError::Connect {
            peer,
            reason: e.to_string(),
        }),
        Ok(Ok(connection)) => {
            tracing::debug!(%peer, "connected");
            Ok(connection)
        }
    }
}

/// A failed request attempt, and whether it provably never reached the peer (so it may be
/// retried on a new connection).
struct Failed {
    error: TransportError,
    retry_safe: bool,
}

/// Sends a framed request and reads its answer; one retry on a new connection when the first
/// attempt provably never reached the peer (the cached connection was closed, or the peer
/// answered with a stateless reset because it restarted).
pub(crate) async fn exchange(
    shared: &Shared,
    peer: &Peer,
    frame: &Bytes,
    body_len: usize,
) -> Result<Bytes, TransportError> {
    let mut retried = false;
    loop {
        let connection = connection(shared, peer).await?;
        match exchange_on(shared, &connection, peer.addr, frame, body_len).await {
            Ok(body) => return Ok(body),
            Err(failed) => {
                check_connection(shared, peer)?;
                if failed.retry_safe && !retried {
                    retried = true;
                    continue;
                }
                return Err(failed.error);
            }
        }
    }
}

async fn exchange_on(
    shared: &Shared,
    connection: &quinn::Connection,
    peer: SocketAddr,
    frame: &[u8],
    body_len: usize,
) -> Result<Bytes, Failed> {
    let (mut send, mut recv) = connection.open_bi().await.map_err(|e| Failed {
        error: connection_lost(peer, &e),
        retry_safe: true,
    })?;
    stream::write_frame(&mut send, frame)
        .await
        .map_err(|e| match e {
            quinn::WriteError::Stopped(code) => Failed {
                error: stream_refused(peer, code),
                retry_safe: false,
            },
            quinn::WriteError::ConnectionLost(e) => Failed {
                retry_safe: matches!(e, quinn::ConnectionError::Reset),
                error: connection_lost(peer, &e),
            },
            other => Failed {
                error: TransportError::ConnectionLost {
                    peer,
                    reason: other.to_string(),
                },
                retry_safe: false,
            },
        })?;
    shared.counters.sent(body_len);
    let (kind, body) = stream::read_frame(&mut recv, shared.config.max_message_bytes)
        .await
        .map_err(|e| match e {
            ReadFailure::Stream(quinn::ReadError::ConnectionLost(e)) => Failed {
                retry_safe: matches!(e, quinn::ConnectionError::Reset),
                error: connection_lost(peer, &e),
            },
            ReadFailure::Stream(quinn::ReadError::Reset(code)) => Failed {
                error: stream_refused(peer, code),
                retry_safe: false,
            },
            ReadFailure::Stream(other) => Failed {
                error: TransportError::ConnectionLost {
                    peer,
                    reason: other.to_string(),
                },
                retry_safe: false,
            },
            ReadFailure::TooLarge { size, limit } => Failed {
                error: TransportError::Protocol {
                    peer,
                    reason: format!("response of {size} bytes exceeds the limit of {limit} bytes"),
                },
                retry_safe: false,
            },
            ReadFailure::Malformed(reason) => Failed {
                error: TransportError::Protocol { peer, reason },
                retry_safe: false,
            },
        })?;
    let error = match kind {
        FrameKind::Response => {
            shared.counters.received(body.len());
            return Ok(body);
        }
        FrameKind::Error(RemoteError::Overloaded) => TransportError::Overloaded { peer },
        FrameKind::Error(RemoteError::NoResponse) => TransportError::NoResponse { peer },
        FrameKind::Error(RemoteError::TooLarge) => TransportError::RefusedTooLarge { peer },
        FrameKind::Error(RemoteError::Malformed) => TransportError::Protocol {
            peer,
            reason: "the peer could not parse our request".into(),
        },
        other => TransportError::Protocol {
            peer,
            reason: format!("expected a response, got {other:?}"),
        },
    };
    Err(Failed {
        error,
        retry_safe: false,
    })
}

fn connection_lost(peer: SocketAddr, error: &quinn::ConnectionError) -> TransportError {
    if is_handshake_failure(error) {
        TransportError::Handshake {
            peer,
            reason: error.to_string(),
        }
    } else {
        TransportError::ConnectionLost {
            peer,
            reason: error.to_string(),
        }
    }
}

/// The peer stopped or reset our stream with one of the protocol's codes.
fn stream_refused(peer: SocketAddr, code: quinn::VarInt) -> TransportError {
    match u32::try_from(code.into_inner()) {
        Ok(STREAM_TOO_LARGE) => TransportError::RefusedTooLarge { peer },
        Ok(STREAM_BLOCKED) => TransportError::ConnectionLost {
            peer,
            reason: "the peer blocks traffic from this node".into(),
        },
        Ok(STREAM_MALFORMED) => TransportError::Protocol {
            peer,
            reason: "the peer could not parse our request".into(),
        },
        _ => TransportError::ConnectionLost {
            peer,
            reason: format!("stream closed by the peer with code {code}"),
        },
    }
}

/// Shutdown: no new messages, writers flush for at most `flush_timeout`, the last stream to each
/// peer is awaited until acknowledged (within the same deadline), then the endpoint closes.
pub(crate) async fn flush_and_close(shared: &Shared) {
    shared.shutting_down.send_replace(true);
    let deadline = Instant::now() + shared.config.flush_timeout;
    loop {
        let busy = lock(&shared.peers).values().any(|peer| peer.is_busy());
        if !busy || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let streams: Vec<quinn::SendStream> = lock(&shared.peers)
        .values()
        .filter_map(|peer| lock(&peer.state).last_stream.take())
        .collect();
    let acknowledged = futures::future::join_all(streams.iter().map(|s| s.stopped()));
    let _ = tokio::time::timeout_at(deadline, acknowledged).await;
    shared
        .endpoint
        .close(quinn::VarInt::from_u32(CLOSE_SHUTDOWN), b"shutdown");
    let _ = tokio::time::timeout(Duration::from_millis(500), shared.endpoint.wait_idle()).await;
    tracing::info!(local_addr = %shared.local_addr, "internode transport shut down");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded_and_grows() {
        let initial = Duration::from_millis(100);
        let max = Duration::from_secs(5);
        for failures in 0..100u32 {
            let cap = initial
                .saturating_mul(1u32 << failures.saturating_sub(1).min(31))
                .min(max);
            for _ in 0..20 {
                assert!(backoff_delay(initial, max, failures) <= cap);
            }
        }
        // With 30 failures the cap is max; the average of many draws is near max / 2.
        let total: Duration = (0..2000).map(|_| backoff_delay(initial, max, 30)).sum();
        let mean = total / 2000;
        assert!(
            mean > Duration::from_millis(2000) && mean < Duration::from_millis(3000),
            "{mean:?}"
        );
    }
}
