//! The two tasks behind one connection, and the state they share with callers.
//!
//! ```text
//!   callers ──(stream id from the table, bytes)──▶ mpsc ──▶ writer task ──▶ socket
//!   callers ◀──────── oneshot per request ◀──────────────── reader task ◀── socket
//! ```
//!
//! A caller takes a stream id and registers a oneshot sender in the [`StreamTable`] (under a
//! short `std::sync::Mutex`, never held across an `.await`), hands the encoded frame to the
//! writer task and waits on its oneshot. The reader task reads frames, looks the stream id up and
//! sends the frame to whoever waits; frames on stream -1 are server-pushed events and go to the
//! event subscriber, if any.
//!
//! The writer batches: it writes every frame already queued before flushing, so many concurrent
//! requests cost few system calls.
//!
//! When either task fails (I/O error, malformed frame, end of stream) or the last [`Client`]
//! handle is dropped, the table is closed: every waiter gets "connection closed" with the reason,
//! and no new request can start. Nothing read from the network can make these tasks panic:
//! frames are bounds-checked by the codec, unknown stream ids are logged and dropped.
//!
//! [`Client`]: super::Client

use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot, Notify, OwnedSemaphorePermit};

use super::streams::StreamTable;
use super::ClientError;
use crate::frame::{Frame, FrameError, Opcode, HEADER_LEN};
use crate::message::{decode_response_frame, Event, Response, ResponseFrame};

/// What the reader hands to a waiting caller.
pub type Reply = Result<Frame, ClientError>;

/// One outstanding request: where its answer goes, and its share of the in-flight bound (held
/// until the answer arrives, even if the caller gave up, so the bound counts stream ids truly in
/// use).
pub struct Pending {
    pub reply: oneshot::Sender<Reply>,
    pub _permit: OwnedSemaphorePermit,
}

/// State shared by the callers and the two tasks of one connection.
pub struct Shared {
    table: Mutex<StreamTable<Pending>>,
    /// Where server-pushed events go, once someone asked for them.
    events: Mutex<Option<mpsc::Sender<Event>>>,
    /// Tells the reader task to stop (writer failed, or the last client handle was dropped).
    pub closing: Notify,
    max_frame_len: usize,
}

/// Locks a mutex even if a thread panicked while holding it: the table stays consistent because
/// every operation on it is a single call.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    pub fn new(max_frame_len: usize) -> Arc<Shared> {
        Arc::new(Shared {
            table: Mutex::new(StreamTable::new()),
            events: Mutex::new(None),
            closing: Notify::new(),
            max_frame_len,
        })
    }

    pub fn table(&self) -> MutexGuard<'_, StreamTable<Pending>> {
        lock(&self.table)
    }

    /// Installs a new event subscriber (replacing any earlier one).
    pub fn subscribe(&self, capacity: usize) -> mpsc::Receiver<Event> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        *lock(&self.events) = Some(tx);
        rx
    }

    /// Closes the connection's table and tells every waiter why.
    pub fn fail_all(&self, reason: &str) {
        let drained = self.table().close(reason);
        if !drained.is_empty() {
            tracing::debug!(pending = drained.len(), reason, "failing pending requests");
        }
        for pending in drained {
            let _ = pending
                .reply
                .send(Err(ClientError::ConnectionClosed(reason.to_string())));
        }
        self.closing.notify_one();
    }

    fn dispatch(&self, frame: Frame) {
        let stream = frame.header.stream;
        if stream < 0 {
            self.dispatch_event(frame);
            return;
        }
        let pending = self.table().complete(stream);
        match pending {
            // The caller may have given up (timeout): then the send fails, and that is fine.
            Some(pending) => {
                let _ = pending.reply.send(Ok(frame));
            }
            None => tracing::warn!(stream, "response on a stream id with no request; dropped"),
        }
    }

    fn dispatch_event(&self, frame: Frame) {
        let event = match decode_response_frame(&frame) {
            Ok(ResponseFrame {
                response: Response::Event(event),
                ..
            }) => event,
            Ok(other) => {
                tracing::warn!(?other, "non-event message on stream -1; dropped");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "undecodable event; dropped");
                return;
            }
        };
        let mut events = lock(&self.events);
        if let Some(tx) = events.as_ref() {
            match tx.try_send(event) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::warn!("event subscriber is not keeping up; event dropped")
                }
                Err(mpsc::error::TrySendError::Closed(_)) => *events = None,
            }
        }
    }
}

/// Reads frames until the socket ends, a frame is malformed, or the connection is closed by the
/// client; then fails every pending request.
pub async fn reader_task(mut socket: OwnedReadHalf, shared: Arc<Shared>) {
    let reason = match read_frames(&mut socket, &shared).await {
        Ok(()) => "connection closed by the client".to_string(),
        Err(reason) => {
            tracing::debug!(%reason, "connection reader stopped");
            reason
        }
    };
    shared.fail_all(&reason);
}

async fn read_frames(socket: &mut OwnedReadHalf, shared: &Shared) -> Result<(), String> {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        // Hand out every complete frame already buffered.
        loop {
            match Frame::split_from(&mut buf, shared.max_frame_len) {
                Ok(Some(frame)) if frame.header.is_response() => shared.dispatch(frame),
                Ok(Some(frame)) => {
                    return Err(format!(
                        "server sent a request frame (opcode {:?}) instead of a response",
                        frame.header.opcode
                    ))
                }
                Ok(None) => break,
                Err(FrameError::UnsupportedVersion { version, .. }) => {
                    return Err(version_mismatch(version, &buf))
                }
                Err(e) => return Err(format!("malformed frame from server: {e}")),
            }
        }
        tokio::select! {
            read = socket.read_buf(&mut buf) => match read {
                Ok(0) if buf.is_empty() => return Err("server closed the connection".into()),
                Ok(0) => return Err("server closed the connection in the middle of a frame".into()),
                Ok(_) => {}
                Err(e) => return Err(format!("read error: {e}")),
            },
            _ = shared.closing.notified() => return Ok(()),
        }
    }
}

/// The reason given when the server answers in another protocol version. Servers answer a
/// version they do not speak with an ERROR in their own version; v3 and later lay the header out
/// as v4 does, so its message can be read and shown.
fn version_mismatch(version: u8, buf: &[u8]) -> String {
    let proto = version & 0x7f;
    let mut detail = String::new();
    if proto >= 3 && buf.len() >= HEADER_LEN && buf[4] == Opcode::Error.as_u8() {
        let len = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) as usize;
        if let Some(body) = buf.get(HEADER_LEN..HEADER_LEN.saturating_add(len)) {
            if let Ok(Response::Error(err)) =
                Response::decode(Opcode::Error, Bytes::copy_from_slice(body))
            {
                detail = format!(" (server said: {})", err.message);
            }
        }
    }
    format!("server answered with protocol version {proto}; this client speaks only v4{detail}")
}

/// Writes queued frames, flushing when the queue is momentarily empty. Ends when every sender is
/// gone (all client handles dropped) or on a write error, which closes the connection.
pub async fn writer_task(
    socket: OwnedWriteHalf,
    mut queue: mpsc::Receiver<Vec<u8>>,
    shared: Arc<Shared>,
) {
    let mut out = BufWriter::with_capacity(64 * 1024, socket);
    let result: std::io::Result<()> = async {
        while let Some(frame) = queue.recv().await {
            out.write_all(&frame).await?;
            while let Ok(frame) = queue.try_recv() {
                out.write_all(&frame).await?;
            }
            out.flush().await?;
        }
        Ok(())
    }
    .await;
    match result {
        Ok(()) => {
            let _ = out.shutdown().await;
            shared.fail_all("connection closed by the client");
        }
        Err(e) => shared.fail_all(&format!("write error: {e}")),
    }
}
