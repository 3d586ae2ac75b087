//! The inbound side: accepting connections (and refusing handshakes), reading each stream's
//! frame, and handing messages to the inbound queues without ever blocking a connection's reader.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};

use super::codec::{self, FrameKind, RemoteError};
use super::stream::{
    self, is_handshake_failure, ReadFailure, STREAM_BLOCKED, STREAM_MALFORMED, STREAM_TIMEOUT,
    STREAM_TOO_LARGE,
};
use super::{bump, lock, Channel, Inbound, Shared, CLOSE_BLOCKED, CLOSE_PEER_RESTARTED};

/// The sending ends of the inbound queues, held by the accept loop and its connection tasks
/// (not by [`Shared`]), so that the queues close once the endpoint is closed.
#[derive(Clone)]
pub(crate) struct InboundSenders {
    pub(crate) gossip: mpsc::Sender<Inbound>,
    pub(crate) verbs: mpsc::Sender<Inbound>,
}

impl InboundSenders {
    fn for_channel(&self, channel: Channel) -> &mpsc::Sender<Inbound> {
        match channel {
            Channel::Gossip => &self.gossip,
            Channel::Verb => &self.verbs,
        }
    }
}

/// Accepts connections until the endpoint closes. Handshakes from blocked addresses are ignored
/// (as if the packets were lost); the others run in their own tasks.
pub(crate) async fn accept_loop(shared: Arc<Shared>, senders: InboundSenders) {
    while let Some(incoming) = shared.endpoint.accept().await {
        if shared.is_blocked(incoming.remote_address().ip()) {
            incoming.ignore();
            continue;
        }
        shared
            .runtime
            .spawn(handshake(shared.clone(), senders.clone(), incoming));
    }
    tracing::debug!(local_addr = %shared.local_addr, "accept loop ended");
}

/// Completes (or refuses) one inbound handshake, then serves the connection.
async fn handshake(shared: Arc<Shared>, senders: InboundSenders, incoming: quinn::Incoming) {
    let remote = incoming.remote_address();
    let connecting = match incoming.accept() {
        Ok(connecting) => connecting,
        Err(e) => {
            tracing::debug!(%remote, "inbound connection not accepted: {e}");
            return;
        }
    };
    let connection = match tokio::time::timeout(shared.config.connect_timeout, connecting).await {
        Ok(Ok(connection)) => connection,
        Ok(Err(e)) if is_handshake_failure(&e) => {
            bump(&shared.counters.handshakes_refused, 1);
            tracing::warn!(%remote, reason = %e, "refused internode TLS handshake");
            return;
        }
        Ok(Err(e)) => {
            tracing::debug!(%remote, "inbound handshake failed: {e}");
            return;
        }
        Err(_) => {
            tracing::debug!(%remote, "inbound handshake timed out");
            return;
        }
    };
    if shared.is_blocked(remote.ip()) {
        connection.close(quinn::VarInt::from_u32(CLOSE_BLOCKED), b"blocked");
        return;
    }
    bump(&shared.counters.connections_accepted, 1);
    tracing::debug!(%remote, "accepted internode connection");
    // The peer just proved it is up (a restarted node dialing us, typically): stop waiting out
    // the back-off towards it, so that our answers reach it now rather than seconds later.
    if let Some(peer) = shared.known_peer(remote) {
        peer.forget_backoff();
    }
    serve_connection(shared, senders, connection).await;
}

/// Hands every stream of an accepted connection to its own task until the connection closes.
/// The number of such tasks is bounded by the streams the peer may have open
/// (`max_inbound_streams`).
async fn serve_connection(
    shared: Arc<Shared>,
    senders: InboundSenders,
    connection: quinn::Connection,
) {
    let from = connection.remote_address();
    let id = connection.stable_id();
    let older: Vec<quinn::Connection> = {
        let mut accepted = lock(&shared.accepted);
        let older = accepted
            .values()
            .filter(|c| c.remote_address() == from)
            .cloned()
            .collect();
        accepted.insert(id, connection.clone());
        older
    };
    // A peer dials us again while its previous connection is still open: it restarted (a live
    // peer keeps using the connection it has). Its old connections, ours to it included, lead
    // to a process that is gone.
    if !older.is_empty() {
        tracing::debug!(peer = %from, "peer dialed again: dropping connections to its previous incarnation");
        for old in older {
            old.close(
                quinn::VarInt::from_u32(CLOSE_PEER_RESTARTED),
                b"peer restarted",
            );
        }
        if let Some(peer) = shared.known_peer(from) {
            peer.drop_connection(CLOSE_PEER_RESTARTED, b"peer restarted");
        }
    }
    let reason = loop {
        tokio::select! {
            stream = connection.accept_uni() => match stream {
                Ok(recv) => {
                    shared.runtime.spawn(serve_one_way(shared.clone(), senders.clone(), from, recv));
                }
                Err(e) => break e,
            },
            stream = connection.accept_bi() => match stream {
                Ok((send, recv)) => {
                    shared.runtime.spawn(serve_request(shared.clone(), senders.clone(), from, send, recv));
                }
                Err(e) => break e,
            },
        }
    };
    lock(&shared.accepted).remove(&id);
    tracing::debug!(%from, %reason, "internode connection closed");
}

/// Reads one frame, within `stream_timeout`; refuses (and counts) oversized and malformed
/// ones by stopping the stream.
async fn read_inbound(
    shared: &Shared,
    from: SocketAddr,
    recv: &mut quinn::RecvStream,
) -> Result<(FrameKind, Bytes), RemoteError> {
    let result = tokio::time::timeout(
        shared.config.stream_timeout,
        stream::read_frame(recv, shared.config.max_message_bytes),
    )
    .await;
    let failure = match result {
        Ok(Ok(frame)) => return Ok(frame),
        Ok(Err(failure)) => failure,
        Err(_) => {
            let _ = recv.stop(quinn::VarInt::from_u32(STREAM_TIMEOUT));
            tracing::debug!(%from, "inbound frame not received in time");
            return Err(RemoteError::Malformed);
        }
    };
    match failure {
        ReadFailure::TooLarge { size, limit } => {
            let _ = recv.stop(quinn::VarInt::from_u32(STREAM_TOO_LARGE));
            bump(&shared.counters.refused_too_large, 1);
            tracing::warn!(%from, size, limit, "refused an inbound message larger than the limit");
            Err(RemoteError::TooLarge)
        }
        ReadFailure::Malformed(reason) => {
            let _ = recv.stop(quinn::VarInt::from_u32(STREAM_MALFORMED));
            bump(&shared.counters.malformed_frames, 1);
            tracing::debug!(%from, "malformed inbound frame: {reason}");
            Err(RemoteError::Malformed)
        }
        ReadFailure::Stream(e) => {
            tracing::debug!(%from, "inbound stream failed: {e}");
            Err(RemoteError::Malformed)
        }
    }
}

async fn serve_one_way(
    shared: Arc<Shared>,
    senders: InboundSenders,
    from: SocketAddr,
    mut recv: quinn::RecvStream,
) {
    let Ok((kind, body)) = read_inbound(&shared, from, &mut recv).await else {
        return;
    };
    let FrameKind::OneWay(channel) = kind else {
        bump(&shared.counters.malformed_frames, 1);
        tracing::debug!(%from, ?kind, "unexpected frame on a unidirectional stream");
        return;
    };
    shared.delay_from(from.ip()).await;
    if shared.is_blocked(from.ip()) {
        bump(&shared.counters.dropped_blocked, 1);
        return;
    }
    shared.counters.received(body.len());
    let message = Inbound {
        from,
        channel,
        body,
        responder: None,
    };
    match senders.for_channel(channel).try_send(message) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => {
            bump(&shared.counters.dropped_inbound_full, 1);
            tracing::trace!(%from, ?channel, "inbound queue full: one-way message dropped");
        }
        // Nobody reads this channel (the node is shutting down): nothing to do.
        Err(TrySendError::Closed(_)) => {}
    }
}

async fn serve_request(
    shared: Arc<Shared>,
    senders: InboundSenders,
    from: SocketAddr,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let answer = match read_inbound(&shared, from, &mut recv).await {
        Err(error) => Err(error),
        Ok((FrameKind::Request(channel), body)) => {
            shared.delay_from(from.ip()).await;
            if shared.is_blocked(from.ip()) {
                bump(&shared.counters.dropped_blocked, 1);
                let _ = send.reset(quinn::VarInt::from_u32(STREAM_BLOCKED));
                return;
            }
            shared.counters.received(body.len());
            let (responder, response) = oneshot::channel();
            let message = Inbound {
                from,
                channel,
                body,
                responder: Some(responder),
            };
            match senders.for_channel(channel).try_send(message) {
                Ok(()) => {
                    // Wait for the handler, unless the requester gives up first (its timeout
                    // stops the stream) or the connection dies.
                    tokio::select! {
                        response = response => response.map_err(|_| RemoteError::NoResponse),
                        _ = send.stopped() => return,
                    }
                }
                Err(TrySendError::Full(_)) => {
                    bump(&shared.counters.requests_overloaded, 1);
                    tracing::trace!(%from, ?channel, "inbound queue full: request refused as overloaded");
                    Err(RemoteError::Overloaded)
                }
                Err(TrySendError::Closed(_)) => Err(RemoteError::NoResponse),
            }
        }
        Ok((kind, _)) => {
            bump(&shared.counters.malformed_frames, 1);
            tracing::debug!(%from, ?kind, "unexpected frame on a bidirectional stream");
            Err(RemoteError::Malformed)
        }
    };
    let max = shared.config.max_message_bytes;
    let frame = match answer {
        Ok(body) => match codec::encode_frame(FrameKind::Response, &body, max) {
            Ok(frame) => {
                shared.counters.sent(body.len());
                frame
            }
            Err(e) => {
                tracing::warn!(%from, "response not sent: {e}");
                error_frame(RemoteError::TooLarge, max)
            }
        },
        Err(error) => error_frame(error, max),
    };
    if let Err(e) = stream::write_frame(&mut send, &frame).await {
        tracing::debug!(%from, "answer not delivered: {e}");
    }
}

fn error_frame(error: RemoteError, max: usize) -> Bytes {
    // An empty body always fits.
    codec::encode_frame(FrameKind::Error(error), &[], max).unwrap_or_default()
}
