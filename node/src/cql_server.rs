//! The CQL native protocol v4 listener.
//!
//! One task accepts connections; each connection gets a reader task (this module's
//! [`Connection::serve`]) and a writer task. The reader cuts frames off the socket with
//! `Frame::split_from` — an incomplete frame just means "read more" — and spawns one task per
//! request, so requests on a connection run concurrently and their answers go out in the order
//! they finish, each on its request's stream id.
//!
//! # Overload
//!
//! Requests are admitted by the reader before they get a task ([`crate::admission`]):
//!
//! - per node, at most `native_transport_max_concurrent_requests` requests and
//!   `native_transport_max_concurrent_requests_in_bytes` bytes of request frames are in flight
//!   over all connections; a request past either is answered at once with Overloaded (0x1001)
//!   and a message naming the bound, and the connection goes on (STARTUP, OPTIONS and REGISTER
//!   are not counted);
//! - per connection, at most `native_transport_max_requests_per_connection`. Past it the reader
//!   stops reading (TCP back-pressure, as Cassandra does by default) and never drops a request —
//!   unless the client sent the STARTUP option `THROW_ON_OVERLOAD=1` or the node is configured
//!   with `native_transport_throw_on_overload`: then the request is answered Overloaded at once.
//! - connections: past `native_transport_max_connections` a new connection is closed on accept.
//!
//! Memory stays bounded either way: a request keeps its admission until its response is queued
//! for the writer, and the writer's queue holds at most one response per admitted request plus
//! a few; a client that sends but never reads fills its queue, then its admissions, then is no
//! longer read from (its Overloaded answers wait for room in the same queue). Every refusal is
//! counted in `ringdb_cql_requests_overloaded_total` by `limit`.
//!
//! Bad input never takes the node down: a frame of another protocol version gets the Protocol
//! error drivers expect for version negotiation, a frame over the size limit, an unknown opcode
//! or bytes that are not a frame get a Protocol error and the connection is closed (the stream
//! cannot be resynchronized); a body that does not decode gets a Protocol error on its stream and
//! the connection goes on. Every request is answered exactly once.
//!
//! Connection state is small: whether STARTUP happened, whether the connection is ready (STARTUP
//! done and, with `authenticator: password`, logged in with one SASL PLAIN AUTH_RESPONSE — see
//! [`crate::auth`]), the session's keyspace (`USE`) and role, and which events the client
//! registered for. Until it is ready a connection is served nothing but OPTIONS, STARTUP and
//! AUTH_RESPONSE, and one that is not ready within the startup timeout is closed, so idle or
//! half-open clients cannot hold connections. With `client_encryption` the socket is wrapped in
//! TLS first ([`crate::client_tls`]; the handshake counts against the same timeout). Schema changes made on any connection are broadcast to every
//! connection registered for `SCHEMA_CHANGE`.
//!
//! Shutdown: the acceptor stops, readers stop reading, in-flight requests get
//! [`crate::server::DRAIN_TIMEOUT`] to finish, then sockets close.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, watch, Semaphore};

use ringdb_cql::frame::{Frame, Opcode, HEADER_LEN};
use ringdb_cql::message::{
    decode_request_frame, frame_error_response, response_frame, BatchQuery, BatchType, BoundValue,
    ColumnSpec, Consistency, ErrorBody, ErrorKind, Event, PreparedMetadata, QueryParameters,
    Request, Response, ResponseExtras, ResultBody, ResultMetadata, Rows, SchemaChange,
    SchemaChangeTarget, SchemaChangeType, WriteType,
};

use crate::admission::{NodeLimiter, OverloadMode, Refusal};
use crate::client_tls::ClientTls;
use crate::executor::{self, ExecError, Executor, QueryResult, Session};
use crate::metrics as m;
use crate::server::DRAIN_TIMEOUT;

/// Limits of the listener, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// Largest frame body accepted, bytes.
    pub max_frame_len: usize,
    /// Requests in flight per connection before the reader pauses (or, with
    /// [`OverloadMode::Throw`], answers Overloaded).
    pub max_requests_per_connection: usize,
    /// What a connection does past `max_requests_per_connection` unless its client asks to be
    /// told (STARTUP `THROW_ON_OVERLOAD=1`).
    pub overload_mode: OverloadMode,
    /// Requests in flight over all connections; past it requests are answered Overloaded.
    pub max_concurrent_requests: usize,
    /// Bytes of request frames in flight over all connections; past it requests are answered
    /// Overloaded.
    pub max_concurrent_request_bytes: u64,
    /// Connections open at once; more are closed on accept.
    pub max_connections: usize,
    /// A connection not ready (STARTUP done and, with authentication, logged in) this long
    /// after it was accepted is closed; it also bounds a TLS handshake.
    pub startup_timeout: std::time::Duration,
}

/// CQL versions advertised in SUPPORTED; drivers echo the first in STARTUP.
const CQL_VERSION: &str = "3.4.6";
/// Events pushed to registered connections that have not been sent yet, per connection; a
/// connection that lags further loses the oldest (drivers treat events as hints and re-query).
const EVENT_QUEUE: usize = 256;
/// Bytes read from a socket at a time.
const READ_CHUNK: usize = 64 * 1024;

/// A bound CQL listener.
pub struct CqlServer {
    listener: TcpListener,
    executor: Executor,
    limits: ServerLimits,
    tls: Option<ClientTls>,
    events: broadcast::Sender<Event>,
    open_connections: Arc<AtomicUsize>,
    node_limiter: Arc<NodeLimiter>,
}

impl CqlServer {
    /// Binds the listener.
    pub async fn bind(
        addr: SocketAddr,
        executor: Executor,
        limits: ServerLimits,
    ) -> std::io::Result<CqlServer> {
        let listener = TcpListener::bind(addr).await?;
        let (events, _) = broadcast::channel(EVENT_QUEUE);
        Ok(CqlServer {
            listener,
            executor,
            limits,
            tls: None,
            events,
            open_connections: Arc::new(AtomicUsize::new(0)),
            node_limiter: NodeLimiter::new(
                limits.max_concurrent_requests,
                limits.max_concurrent_request_bytes,
            ),
        })
    }

    /// Serves clients over TLS (see [`crate::client_tls`]).
    pub fn with_tls(mut self, tls: Option<ClientTls>) -> CqlServer {
        self.tls = tls;
        self
    }

    /// Where to send events for registered clients (topology and status changes come from
    /// membership; schema changes are sent by the connections themselves).
    pub fn event_sender(&self) -> broadcast::Sender<Event> {
        self.events.clone()
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Accepts connections until `shutdown` turns true, then waits (bounded) for connections to
    /// drain.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                accepted = self.listener.accept() => {
                    let (socket, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // Out of file descriptors and the like: back off instead of spinning.
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    if self.open_connections.load(Ordering::Relaxed) >= self.limits.max_connections {
                        metrics::counter!(m::CONNECTIONS_REJECTED).increment(1);
                        tracing::warn!(%peer, limit = self.limits.max_connections,
                            "refusing connection: native_transport_max_connections reached");
                        drop(socket);
                        continue;
                    }
                    let _ = socket.set_nodelay(true);
                    let conn = Connection {
                        executor: self.executor.clone(),
                        limits: self.limits,
                        events: self.events.clone(),
                        state: Arc::new(ConnState::new(self.limits.overload_mode)),
                        node_limiter: self.node_limiter.clone(),
                        peer,
                    };
                    let open = self.open_connections.clone();
                    open.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!(m::CONNECTIONS_TOTAL).increment(1);
                    metrics::gauge!(m::CONNECTIONS).increment(1.0);
                    let shutdown = shutdown.clone();
                    let tls = self.tls.clone();
                    connections.spawn(async move {
                        conn.accept(socket, tls, shutdown).await;
                        open.fetch_sub(1, Ordering::Relaxed);
                        metrics::gauge!(m::CONNECTIONS).decrement(1.0);
                    });
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                _ = crate::server::stopping(&mut shutdown) => break,
            }
        }
        drop(self.listener);
        let deadline = tokio::time::sleep(DRAIN_TIMEOUT);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                next = connections.join_next() => if next.is_none() { break },
                _ = &mut deadline => {
                    tracing::warn!(left = connections.len(), "closing connections still busy after the drain timeout");
                    connections.abort_all();
                    break;
                }
            }
        }
    }
}

/// What a connection remembers between requests.
#[derive(Default)]
struct ConnState {
    started: AtomicBool,
    /// STARTUP done and, with authentication, logged in: statements may run.
    ready: AtomicBool,
    /// Past its own bound, answer Overloaded instead of pausing ([`OverloadMode::Throw`]): the
    /// node's configuration, or the client's STARTUP option `THROW_ON_OVERLOAD`.
    throw_on_overload: AtomicBool,
    session: Mutex<Session>,
    /// Event types registered for (`SCHEMA_CHANGE`, ...).
    registered: Mutex<Vec<String>>,
}

impl ConnState {
    fn new(mode: OverloadMode) -> ConnState {
        ConnState {
            throw_on_overload: AtomicBool::new(mode == OverloadMode::Throw),
            ..ConnState::default()
        }
    }
}

struct Connection {
    executor: Executor,
    limits: ServerLimits,
    events: broadcast::Sender<Event>,
    state: Arc<ConnState>,
    node_limiter: Arc<NodeLimiter>,
    peer: SocketAddr,
}

/// Whether a request of this opcode counts against the node's bound: control messages that are
/// answered from memory do not, so a client can always connect.
fn counts_against_node_bound(opcode: Opcode) -> bool {
    !matches!(opcode, Opcode::Startup | Opcode::Options | Opcode::Register)
}

/// The answer to a request refused by admission, on its stream.
fn overloaded_frame(stream: i16, refusal: &Refusal) -> Vec<u8> {
    metrics::counter!(m::REQUESTS_OVERLOADED, "limit" => refusal.metric_label()).increment(1);
    metrics::counter!(m::ERRORS, "code" => "0x1001").increment(1);
    error_frame(
        stream,
        ErrorBody::new(ErrorKind::Overloaded, refusal.to_string()),
    )
}

impl Connection {
    /// Runs the TLS handshake if the listener has TLS (bounded by the startup timeout), then
    /// serves the connection.
    async fn accept(
        self,
        socket: TcpStream,
        tls: Option<ClientTls>,
        shutdown: watch::Receiver<bool>,
    ) {
        let Some(tls) = tls else {
            let (reader, writer) = socket.into_split();
            return self.serve(reader, writer, shutdown).await;
        };
        let timeout = self.limits.startup_timeout;
        if tls.optional {
            let mut first = [0u8; 1];
            match tokio::time::timeout(timeout, socket.peek(&mut first)).await {
                Ok(Ok(1)) if first[0] != crate::client_tls::TLS_HANDSHAKE_RECORD => {
                    let (reader, writer) = socket.into_split();
                    return self.serve(reader, writer, shutdown).await;
                }
                Ok(Ok(1)) => {}
                _ => return,
            }
        }
        match tokio::time::timeout(timeout, tls.acceptor().accept(socket)).await {
            Ok(Ok(stream)) => {
                let (reader, writer) = tokio::io::split(stream);
                self.serve(reader, writer, shutdown).await
            }
            Ok(Err(e)) => {
                tracing::debug!(peer = %self.peer, error = %e, "client TLS handshake failed; closing");
            }
            Err(_) => {
                tracing::debug!(peer = %self.peer, "client TLS handshake timed out; closing");
            }
        }
    }

    async fn serve<R, W>(self, mut reader: R, writer: W, mut shutdown: watch::Receiver<bool>)
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (out_tx, out_rx) =
            mpsc::channel::<Vec<u8>>(self.limits.max_requests_per_connection + 16);
        let writer_task = tokio::spawn(write_loop(writer, out_rx));
        let in_flight = Arc::new(Semaphore::new(self.limits.max_requests_per_connection));
        // Subscribed from the start: a REGISTER is processed by a request task, and events sent
        // before the reader could subscribe would be lost. Unregistered connections skip them.
        let mut events_rx: Option<broadcast::Receiver<Event>> = Some(self.events.subscribe());
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        let this = Arc::new(self);
        let startup_deadline = tokio::time::sleep(this.limits.startup_timeout);
        tokio::pin!(startup_deadline);

        'conn: loop {
            // Serve every whole frame already buffered.
            loop {
                match Frame::split_from(&mut buf, this.limits.max_frame_len) {
                    Ok(Some(frame)) => {
                        let stream = frame.header.stream;
                        let throw = this.state.throw_on_overload.load(Ordering::Relaxed);
                        let permit = match in_flight.clone().try_acquire_owned() {
                            Ok(p) => Ok(p),
                            Err(tokio::sync::TryAcquireError::Closed) => break 'conn,
                            Err(tokio::sync::TryAcquireError::NoPermits) if throw => {
                                Err(Refusal::ConnectionRequests {
                                    limit: this.limits.max_requests_per_connection,
                                })
                            }
                            // Back-pressure: nothing more is read until a request finishes.
                            Err(tokio::sync::TryAcquireError::NoPermits) => tokio::select! {
                                p = in_flight.clone().acquire_owned() => match p {
                                    Ok(p) => Ok(p),
                                    Err(_) => break 'conn,
                                },
                                _ = shutdown.changed() => break 'conn,
                            },
                        };
                        let admitted = permit.and_then(|permit| {
                            if !counts_against_node_bound(frame.header.opcode) {
                                return Ok((permit, None));
                            }
                            let size = (HEADER_LEN + frame.body.len()) as u64;
                            let node = this.node_limiter.try_admit(size)?;
                            Ok((permit, Some(node)))
                        });
                        let (permit, node_admission) = match admitted {
                            Ok(a) => a,
                            Err(refusal) => {
                                let bytes = overloaded_frame(stream, &refusal);
                                // Waits for room when the client does not read its answers:
                                // then the connection is not read from either.
                                tokio::select! {
                                    _ = out_tx.send(bytes) => {}
                                    _ = shutdown.changed() => break 'conn,
                                }
                                continue;
                            }
                        };
                        let conn = this.clone();
                        let out = out_tx.clone();
                        tokio::spawn(async move {
                            let bytes = conn.handle_frame(frame).await;
                            let _ = out.send(bytes).await;
                            drop(node_admission);
                            drop(permit);
                        });
                    }
                    Ok(None) => break,
                    Err(e) => {
                        // The byte stream cannot be trusted any more: answer and close.
                        tracing::debug!(peer = %this.peer, error = %e, "closing connection on a bad frame");
                        if let Some(bytes) = frame_error_response(&e) {
                            metrics::counter!(m::ERRORS, "code" => "0x000a").increment(1);
                            let _ = out_tx.send(bytes).await;
                        }
                        break 'conn;
                    }
                }
            }
            if buf.capacity() - buf.len() < READ_CHUNK / 4 {
                buf.reserve(READ_CHUNK);
            }
            tokio::select! {
                read = reader.read_buf(&mut buf) => match read {
                    Ok(0) => break 'conn,
                    Ok(n) => metrics::counter!(m::BYTES_RECEIVED).increment(n as u64),
                    Err(e) => {
                        tracing::debug!(peer = %this.peer, error = %e, "read failed");
                        break 'conn;
                    }
                },
                event = recv_event(&mut events_rx) => {
                    if let Some(event) = event {
                        if this.registered_events().iter().any(|t| t == event.type_name()) {
                            let bytes = response_frame(
                                ringdb_cql::frame::EVENT_STREAM,
                                &Response::Event(event),
                                &ResponseExtras::default(),
                            );
                            let _ = out_tx.send(bytes).await;
                        }
                    }
                }
                _ = &mut startup_deadline, if !this.state.ready.load(Ordering::Acquire) => {
                    tracing::debug!(peer = %this.peer, timeout = ?this.limits.startup_timeout,
                        "closing a connection that did not complete STARTUP/authentication in time");
                    break 'conn;
                }
                _ = crate::server::stopping(&mut shutdown) => break 'conn,
            }
        }

        // Let requests in flight finish and be written, then close.
        let all = this.limits.max_requests_per_connection as u32;
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, in_flight.acquire_many(all)).await;
        drop(out_tx);
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, writer_task).await;
    }

    fn registered_events(&self) -> Vec<String> {
        self.state
            .registered
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// Answers one frame; returns the response frame's bytes.
    async fn handle_frame(&self, frame: Frame) -> Vec<u8> {
        let stream = frame.header.stream;
        if frame.header.is_response() {
            return error_frame(
                stream,
                ErrorBody::protocol("a response frame was sent to the server"),
            );
        }
        let request = match decode_request_frame(&frame) {
            Ok(r) => r.request,
            Err(e) => return error_frame(stream, e.to_error_body()),
        };
        let op = op_name(&request);
        let started = Instant::now();
        let response = self.handle_request(request).await;
        metrics::counter!(m::REQUESTS, "op" => op).increment(1);
        metrics::histogram!(m::REQUEST_DURATION, "op" => op)
            .record(started.elapsed().as_secs_f64());
        if let Response::Error(body) = &response {
            metrics::counter!(m::ERRORS, "code" => format!("0x{:04x}", body.code())).increment(1);
        }
        response_frame(stream, &response, &ResponseExtras::default())
    }

    async fn handle_request(&self, request: Request) -> Response {
        let started = self.state.started.load(Ordering::Acquire);
        match request {
            Request::Options => Response::Supported(supported()),
            Request::Startup(options) => {
                if let Some((_, algo)) = options
                    .iter()
                    .find(|(k, v)| k.eq_ignore_ascii_case("COMPRESSION") && !v.is_empty())
                {
                    return error(ErrorBody::protocol(format!(
                        "Unsupported compression algorithm: {algo} (this server supports none)"
                    )));
                }
                if OverloadMode::startup_asks_to_throw(options.iter().map(|(k, v)| (k, v))) {
                    self.state.throw_on_overload.store(true, Ordering::Relaxed);
                }
                self.state.started.store(true, Ordering::Release);
                if self.executor.auth().is_some() && !self.state.ready.load(Ordering::Acquire) {
                    return Response::Authenticate(crate::auth::PASSWORD_AUTHENTICATOR.to_string());
                }
                self.state.ready.store(true, Ordering::Release);
                Response::Ready
            }
            _ if !started => error(ErrorBody::protocol(format!(
                "Unexpected message {}, expecting STARTUP or OPTIONS",
                request_name(&request)
            ))),
            Request::AuthResponse(token) => self.authenticate(token.as_deref()).await,
            _ if !self.state.ready.load(Ordering::Acquire) => error(ErrorBody::protocol(format!(
                "Unexpected message {}, expecting AUTH_RESPONSE: authentication is required",
                request_name(&request)
            ))),
            Request::Register { events } => {
                for e in &events {
                    if !matches!(
                        e.as_str(),
                        "TOPOLOGY_CHANGE" | "STATUS_CHANGE" | "SCHEMA_CHANGE"
                    ) {
                        return error(ErrorBody::protocol(format!("Invalid event type {e}")));
                    }
                }
                if let Ok(mut r) = self.state.registered.lock() {
                    for e in events {
                        if !r.contains(&e) {
                            r.push(e);
                        }
                    }
                }
                Response::Ready
            }
            Request::Query { query, params } => {
                let skip = params.skip_metadata;
                let opts = query_options(&params);
                let mut session = self.session();
                let result = self.executor.query(&mut session, &query, &opts).await;
                self.finish(session, result, skip)
            }
            Request::Prepare { query } => {
                let session = self.session();
                match self.executor.prepare(&session, &query) {
                    Ok(p) => Response::Result(ResultBody::Prepared {
                        id: Bytes::from(p.id.clone()),
                        metadata: PreparedMetadata {
                            columns: p.variables.iter().map(column_spec).collect(),
                            pk_indices: p.pk_indices.clone(),
                        },
                        result_metadata: if p.result_columns.is_empty() {
                            ResultMetadata::empty()
                        } else {
                            ResultMetadata::new(p.result_columns.iter().map(column_spec).collect())
                        },
                    }),
                    Err(e) => error(exec_error_body(e)),
                }
            }
            Request::Execute { id, params } => {
                let skip = params.skip_metadata;
                let opts = query_options(&params);
                let mut session = self.session();
                let result = self.executor.execute(&mut session, &id, &opts).await;
                self.finish(session, result, skip)
            }
            Request::Batch {
                batch_type,
                statements,
                consistency,
                serial_consistency: _,
                timestamp,
            } => {
                let kind = match batch_type {
                    BatchType::Logged => ringdb_cql::ast::BatchKind::Logged,
                    BatchType::Unlogged => ringdb_cql::ast::BatchKind::Unlogged,
                    BatchType::Counter => ringdb_cql::ast::BatchKind::Counter,
                };
                let items = statements
                    .into_iter()
                    .map(|s| {
                        let values = s.values.iter().map(bound_value).collect();
                        match s.query {
                            BatchQuery::Query(text) => executor::BatchItem::Query(text, values),
                            BatchQuery::Prepared(id) => {
                                executor::BatchItem::Prepared(id.to_vec(), values)
                            }
                        }
                    })
                    .collect();
                let opts = executor::QueryOptions {
                    values: Vec::new(),
                    names: None,
                    page_size: None,
                    paging_state: None,
                    timestamp,
                    consistency: consistency.code(),
                };
                let mut session = self.session();
                let result = self.executor.batch(&mut session, kind, items, &opts).await;
                self.finish(session, result, false)
            }
        }
    }

    /// Checks a SASL PLAIN token (`[authzid] \0 user \0 password`) and, if it is good, marks
    /// the connection ready for the role.
    async fn authenticate(&self, token: Option<&[u8]>) -> Response {
        let Some(auth) = self.executor.auth() else {
            return error(ErrorBody::protocol(
                "Unexpected AUTH_RESPONSE: authentication is not enabled",
            ));
        };
        if self.state.ready.load(Ordering::Acquire) {
            return error(ErrorBody::protocol(
                "Unexpected AUTH_RESPONSE: this connection is already authenticated",
            ));
        }
        let Some((user, password)) = token.and_then(parse_sasl_plain) else {
            return error(ErrorBody::new(
                ErrorKind::BadCredentials,
                "Authentication failed: the token is not SASL PLAIN (\\0user\\0password)",
            ));
        };
        match auth
            .login(&self.executor, &user, &password, self.peer.ip())
            .await
        {
            Ok(()) => {
                if let Ok(mut s) = self.state.session.lock() {
                    s.user = Some(user);
                }
                self.state.ready.store(true, Ordering::Release);
                Response::AuthSuccess(None)
            }
            Err(e) => error(ErrorBody::new(ErrorKind::BadCredentials, e.to_string())),
        }
    }

    fn session(&self) -> Session {
        self.state
            .session
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// Turns an executor outcome into a response, applying its effects on the connection
    /// (keyspace switch) and the node (schema change events).
    fn finish(
        &self,
        session: Session,
        result: Result<QueryResult, ExecError>,
        skip_metadata: bool,
    ) -> Response {
        match result {
            Ok(QueryResult::Void) => Response::Result(ResultBody::Void),
            Ok(QueryResult::SetKeyspace(ks)) => {
                if let Ok(mut s) = self.state.session.lock() {
                    *s = session;
                }
                Response::Result(ResultBody::SetKeyspace(ks))
            }
            Ok(QueryResult::Rows {
                columns,
                rows,
                paging_state,
            }) => {
                let mut metadata = if skip_metadata {
                    ResultMetadata::no_metadata(columns.len())
                } else {
                    ResultMetadata::new(columns.iter().map(column_spec).collect())
                };
                metadata.paging_state = paging_state.map(Bytes::from);
                let rows = rows
                    .into_iter()
                    .map(|r| r.into_iter().map(|c| c.map(Bytes::from)).collect())
                    .collect();
                Response::Result(ResultBody::Rows(Rows { metadata, rows }))
            }
            Ok(QueryResult::SchemaChange(info)) => {
                let change = schema_change(&info);
                // No receiver is fine: nobody registered.
                let _ = self.events.send(Event::SchemaChange(change.clone()));
                Response::Result(ResultBody::SchemaChange(change))
            }
            Err(e) => error(exec_error_body(e)),
        }
    }
}

async fn recv_event(rx: &mut Option<broadcast::Receiver<Event>>) -> Option<Event> {
    match rx {
        None => std::future::pending().await,
        Some(rx) => loop {
            match rx.recv().await {
                Ok(e) => return Some(e),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::debug!(lost = n, "a slow connection missed events");
                }
                Err(broadcast::error::RecvError::Closed) => return std::future::pending().await,
            }
        },
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(mut writer: W, mut rx: mpsc::Receiver<Vec<u8>>) {
    let mut batch = Vec::with_capacity(READ_CHUNK);
    while let Some(first) = rx.recv().await {
        batch.clear();
        batch.extend_from_slice(&first);
        // Coalesce whatever else is ready into one write.
        while batch.len() < READ_CHUNK {
            match rx.try_recv() {
                Ok(more) => batch.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        if writer.write_all(&batch).await.is_err() {
            return;
        }
        metrics::counter!(m::BYTES_SENT).increment(batch.len() as u64);
    }
    let _ = writer.shutdown().await;
}

/// Splits a SASL PLAIN message (RFC 4616: `[authzid] NUL authcid NUL passwd`) into user and
/// password; `None` if it is not one or is not UTF-8.
fn parse_sasl_plain(token: &[u8]) -> Option<(String, String)> {
    let mut parts = token.split(|b| *b == 0);
    let (_authzid, user, password) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || user.is_empty() {
        return None;
    }
    Some((
        String::from_utf8(user.to_vec()).ok()?,
        String::from_utf8(password.to_vec()).ok()?,
    ))
}

fn supported() -> HashMap<String, Vec<String>> {
    HashMap::from([
        ("CQL_VERSION".to_string(), vec![CQL_VERSION.to_string()]),
        ("COMPRESSION".to_string(), Vec::new()),
        ("PROTOCOL_VERSIONS".to_string(), vec!["4/v4".to_string()]),
    ])
}

fn error(body: ErrorBody) -> Response {
    Response::Error(body)
}

fn error_frame(stream: i16, body: ErrorBody) -> Vec<u8> {
    response_frame(stream, &Response::Error(body), &ResponseExtras::default())
}

fn op_name(request: &Request) -> &'static str {
    match request {
        Request::Startup(_) => "startup",
        Request::AuthResponse(_) => "auth_response",
        Request::Options => "options",
        Request::Query { .. } => "query",
        Request::Prepare { .. } => "prepare",
        Request::Execute { .. } => "execute",
        Request::Batch { .. } => "batch",
        Request::Register { .. } => "register",
    }
}

fn request_name(request: &Request) -> &'static str {
    match request {
        Request::Startup(_) => "STARTUP",
        Request::AuthResponse(_) => "AUTH_RESPONSE",
        Request::Options => "OPTIONS",
        Request::Query { .. } => "QUERY",
        Request::Prepare { .. } => "PREPARE",
        Request::Execute { .. } => "EXECUTE",
        Request::Batch { .. } => "BATCH",
        Request::Register { .. } => "REGISTER",
    }
}

fn bound_value(v: &BoundValue) -> executor::BoundValue {
    match v {
        BoundValue::Null => executor::BoundValue::Null,
        BoundValue::Unset => executor::BoundValue::Unset,
        BoundValue::Value(b) => executor::BoundValue::Bytes(b.to_vec()),
    }
}

fn query_options(p: &QueryParameters) -> executor::QueryOptions {
    executor::QueryOptions {
        values: p.values.iter().map(bound_value).collect(),
        names: p.names.clone(),
        page_size: p.page_size,
        paging_state: p.paging_state.as_ref().map(|b| b.to_vec()),
        timestamp: p.default_timestamp,
        consistency: p.consistency.code(),
    }
}

fn column_spec(c: &executor::ColumnSpec) -> ColumnSpec {
    ColumnSpec {
        keyspace: c.keyspace.clone(),
        table: c.table.clone(),
        name: c.name.clone(),
        ty: c.ty.unfrozen(),
    }
}

pub(crate) fn schema_change(info: &executor::SchemaChangeInfo) -> SchemaChange {
    SchemaChange {
        change_type: match info.change {
            executor::SchemaChangeKind::Created => SchemaChangeType::Created,
            executor::SchemaChangeKind::Updated => SchemaChangeType::Updated,
            executor::SchemaChangeKind::Dropped => SchemaChangeType::Dropped,
        },
        target: match info.target {
            executor::SchemaChangeTarget::Keyspace => SchemaChangeTarget::Keyspace,
            executor::SchemaChangeTarget::Table => SchemaChangeTarget::Table,
        },
        keyspace: info.keyspace.clone(),
        name: info.name.clone().unwrap_or_default(),
        args: Vec::new(),
    }
}

fn consistency(code: u16) -> Consistency {
    Consistency::from_code(code).unwrap_or_default()
}

/// The one place where executor errors become protocol errors.
pub fn exec_error_body(e: ExecError) -> ErrorBody {
    let message = e.to_string();
    let kind = match e {
        ExecError::Syntax(_) => ErrorKind::Syntax,
        ExecError::Invalid(_) => ErrorKind::Invalid,
        ExecError::AlreadyExists {
            keyspace, table, ..
        } => ErrorKind::AlreadyExists { keyspace, table },
        ExecError::Unprepared { id } => ErrorKind::Unprepared {
            id: Bytes::from(id),
        },
        ExecError::Unauthorized(_) => ErrorKind::Unauthorized,
        ExecError::Unavailable {
            consistency: cl,
            required,
            alive,
        } => ErrorKind::Unavailable {
            consistency: consistency(cl),
            required,
            alive,
        },
        ExecError::WriteTimeout {
            consistency: cl,
            received,
            block_for,
            write_type,
        } => ErrorKind::WriteTimeout {
            consistency: consistency(cl),
            received,
            block_for,
            write_type: WriteType::parse(&write_type),
        },
        ExecError::ReadTimeout {
            consistency: cl,
            received,
            block_for,
            data_present,
        } => ErrorKind::ReadTimeout {
            consistency: consistency(cl),
            received,
            block_for,
            data_present,
        },
        ExecError::ReadFailure {
            consistency: cl,
            received,
            block_for,
            num_failures,
            data_present,
            ..
        } => ErrorKind::ReadFailure {
            consistency: consistency(cl),
            received,
            block_for,
            num_failures,
            data_present,
        },
        ExecError::WriteFailure {
            consistency: cl,
            received,
            block_for,
            num_failures,
            write_type,
            ..
        } => ErrorKind::WriteFailure {
            consistency: consistency(cl),
            received,
            block_for,
            num_failures,
            write_type: WriteType::parse(&write_type),
        },
        ExecError::Overloaded(_) => ErrorKind::Overloaded,
        ExecError::Protocol(_) => ErrorKind::Protocol,
        ExecError::Server(_) => ErrorKind::Server,
    };
    ErrorBody::new(kind, message)
}

#[cfg(test)]
mod tests {
    use super::parse_sasl_plain;

    #[test]
    fn sasl_plain_tokens() {
        assert_eq!(
            parse_sasl_plain(b"\0alice\0pw"),
            Some(("alice".into(), "pw".into()))
        );
        assert_eq!(
            parse_sasl_plain(b"admin\0alice\0p\xc3\xa9"),
            Some(("alice".into(), "p\u{e9}".into()))
        );
        assert_eq!(
            parse_sasl_plain(b"\0alice\0"),
            Some(("alice".into(), String::new()))
        );
        for bad in [
            &b""[..],
            b"alice",
            b"\0alice",
            b"\0\0pw",
            b"\0a\0b\0c",
            b"\0\xff\0pw",
        ] {
            assert_eq!(parse_sasl_plain(bad), None, "{bad:?}");
        }
    }
}

/// The admission bounds end to end through a real listener, with a data path whose writes wait
/// at a gate the test opens: requests stay in flight exactly as long as the test wants.
#[cfg(test)]
mod overload_tests {
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::BytesMut;
    use futures::future::BoxFuture;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::sync::watch;

    use ringdb_cql::frame::Frame;
    use ringdb_cql::message::{
        decode_response_frame, request_frame, Consistency, ErrorKind, QueryParameters, Request,
        Response,
    };

    use super::{CqlServer, ServerLimits};
    use crate::admission::OverloadMode;
    use crate::executor::datapath::{PartitionRead, RangeRead};
    use crate::executor::{DataPath, ExecError, Executor, LocalDataPath, WriteRequest};
    use crate::storage::{PartitionData, TableId};

    const WAIT: Duration = Duration::from_secs(20);

    /// The local data path, except that writes wait while the gate is closed.
    struct GatedPath {
        inner: LocalDataPath,
        gate: watch::Receiver<bool>,
    }

    impl DataPath for GatedPath {
        fn write(&self, write: WriteRequest) -> BoxFuture<'_, Result<(), ExecError>> {
            let mut gate = self.gate.clone();
            Box::pin(async move {
                let _ = gate.wait_for(|open| *open).await;
                self.inner.write(write).await
            })
        }
        fn read<'a>(
            &'a self,
            read: PartitionRead<'a>,
        ) -> BoxFuture<'a, Result<Option<PartitionData>, ExecError>> {
            self.inner.read(read)
        }
        fn scan<'a>(
            &'a self,
            read: RangeRead<'a>,
        ) -> BoxFuture<'a, Result<Vec<PartitionData>, ExecError>> {
            self.inner.scan(read)
        }
        fn truncate<'a>(
            &'a self,
            keyspace: &'a str,
            table: TableId,
        ) -> BoxFuture<'a, Result<(), ExecError>> {
            self.inner.truncate(keyspace, table)
        }
    }

    struct Harness {
        addr: std::net::SocketAddr,
        gate: watch::Sender<bool>,
        limiter: Arc<crate::admission::NodeLimiter>,
        _shutdown: watch::Sender<bool>,
    }

    impl Harness {
        /// Waits until exactly `n` requests hold a place in the node bound (connections are
        /// read concurrently, and an answer reaches the client a moment before its request
        /// gives its place back).
        async fn in_flight(&self, n: usize) {
            for _ in 0..1000 {
                if self.limiter.in_flight().requests == n {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            panic!("not {n} requests in flight: {:?}", self.limiter.in_flight());
        }
    }

    async fn start(limits: ServerLimits) -> Harness {
        use crate::commitlog::{CommitSync, SyncMode};
        use crate::executor::LocalNodeInfo;
        use crate::schema::SchemaStore;
        use crate::storage::{Engine, MemoryEngine};
        let (shutdown, shutdown_rx) = watch::channel(false);
        let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
        let (commit, _flusher) =
            CommitSync::start(SyncMode::Batch, engine.clone(), shutdown_rx.clone());
        let schema = SchemaStore::open(engine.clone()).expect("schema store");
        let (gate, gate_rx) = watch::channel(true);
        let path = GatedPath {
            inner: LocalDataPath::new(engine, commit),
            gate: gate_rx,
        };
        let node = LocalNodeInfo::for_tests();
        let executor = Executor::with_data_path(
            Arc::new(path),
            schema,
            node,
            crate::clock::HybridClock::system(),
        );
        let server = CqlServer::bind("127.0.0.1:0".parse().unwrap(), executor, limits)
            .await
            .expect("bind");
        let addr = server.local_addr();
        let limiter = server.node_limiter.clone();
        tokio::spawn(server.run(shutdown_rx));
        let mut setup = Client::connect(addr, &[]).await;
        for cql in [
            "CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
            "CREATE TABLE ks.t (k int PRIMARY KEY, v int)",
        ] {
            let answer = setup.call(query(cql)).await;
            assert!(!matches!(answer, Response::Error(_)), "{cql}: {answer:?}");
        }
        let harness = Harness {
            addr,
            gate,
            limiter,
            _shutdown: shutdown,
        };
        harness.in_flight(0).await;
        harness
    }

    fn limits(per_connection: usize, node: usize, node_bytes: u64) -> ServerLimits {
        ServerLimits {
            max_frame_len: 1 << 20,
            max_requests_per_connection: per_connection,
            overload_mode: OverloadMode::BackPressure,
            max_concurrent_requests: node,
            max_concurrent_request_bytes: node_bytes,
            max_connections: 16,
            startup_timeout: WAIT,
        }
    }

    fn query(cql: &str) -> Request {
        Request::Query {
            query: cql.to_string(),
            params: QueryParameters {
                consistency: Consistency::One,
                ..QueryParameters::default()
            },
        }
    }

    fn insert(k: i32) -> Request {
        query(&format!("INSERT INTO ks.t (k, v) VALUES ({k}, {k})"))
    }

    struct Client {
        socket: TcpStream,
        buf: BytesMut,
        next_stream: i16,
    }

    impl Client {
        async fn connect(addr: std::net::SocketAddr, options: &[(&str, &str)]) -> Client {
            let socket = TcpStream::connect(addr).await.expect("connect");
            let mut client = Client {
                socket,
                buf: BytesMut::new(),
                next_stream: 0,
            };
            let mut startup = vec![("CQL_VERSION".to_string(), "3.0.0".to_string())];
            startup.extend(options.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            let ready = client.call(Request::Startup(startup)).await;
            assert!(matches!(ready, Response::Ready), "{ready:?}");
            client
        }

        /// Sends every request at once (one write), returns their stream ids.
        async fn send_all(&mut self, requests: Vec<Request>) -> Vec<i16> {
            let mut bytes = Vec::new();
            let mut streams = Vec::new();
            for request in requests {
                self.next_stream += 1;
                streams.push(self.next_stream);
                bytes.extend(request_frame(self.next_stream, &request));
            }
            self.socket.write_all(&bytes).await.expect("write");
            streams
        }

        async fn recv(&mut self) -> (i16, Response) {
            loop {
                if let Some(frame) = Frame::split_from(&mut self.buf, 1 << 24).expect("frame") {
                    let decoded = decode_response_frame(&frame).expect("response");
                    return (decoded.stream, decoded.response);
                }
                let read = tokio::time::timeout(WAIT, self.socket.read_buf(&mut self.buf))
                    .await
                    .expect("an answer in time")
                    .expect("read");
                assert!(read > 0, "the server closed the connection");
            }
        }

        /// Whether an answer arrives within `wait`.
        async fn answers_within(&mut self, wait: Duration) -> bool {
            if !self.buf.is_empty() {
                return true;
            }
            matches!(
                tokio::time::timeout(wait, self.socket.read_buf(&mut self.buf)).await,
                Ok(Ok(n)) if n > 0
            )
        }

        async fn call(&mut self, request: Request) -> Response {
            let stream = self.send_all(vec![request]).await[0];
            let (got, response) = self.recv().await;
            assert_eq!(got, stream);
            response
        }
    }

    fn overloaded_message(response: &Response) -> Option<&str> {
        match response {
            Response::Error(e) if matches!(e.kind, ErrorKind::Overloaded) => Some(&e.message),
            _ => None,
        }
    }

    /// Collects one answer per stream id; panics on a duplicate.
    async fn answers(client: &mut Client, streams: &[i16]) -> Vec<(i16, Response)> {
        let mut got = Vec::new();
        for _ in streams {
            let (stream, response) = client.recv().await;
            assert!(
                streams.contains(&stream),
                "unexpected stream {stream}: {response:?}"
            );
            assert!(
                !got.iter().any(|(s, _)| *s == stream),
                "stream {stream} answered twice"
            );
            got.push((stream, response));
        }
        got
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn past_the_node_bound_requests_are_answered_overloaded_at_once() {
        let h = start(limits(1024, 5, 1 << 20)).await;
        h.gate.send_replace(false);
        let mut a = Client::connect(h.addr, &[]).await;
        let mut b = Client::connect(h.addr, &[]).await;
        // Five writes hold the node's five places; everything past them is refused at once,
        // on this connection and on another one.
        let held = a.send_all((0..5).map(insert).collect()).await;
        h.in_flight(5).await;
        let refused = a.send_all((5..8).map(insert).collect()).await;
        let on_b = b.send_all((8..10).map(insert).collect()).await;
        let first = answers(&mut a, &refused).await;
        for (_, response) in first.iter() {
            let message = overloaded_message(response).expect("overloaded");
            assert!(
                message.contains("native_transport_max_concurrent_requests"),
                "{message}"
            );
        }
        for (_, response) in answers(&mut b, &on_b).await {
            assert!(overloaded_message(&response).is_some(), "{response:?}");
        }
        // The connections stay open; once the gate opens the held writes succeed, and the node
        // takes requests again.
        h.gate.send_replace(true);
        for (_, response) in answers(&mut a, &held).await {
            assert!(matches!(response, Response::Result(_)), "{response:?}");
        }
        h.in_flight(0).await;
        let again = b.call(insert(11)).await;
        assert!(matches!(again, Response::Result(_)), "{again:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn past_the_node_byte_bound_requests_are_answered_overloaded() {
        // Room for about two INSERT frames.
        let size = request_frame(1, &insert(100)).len() as u64;
        let h = start(limits(1024, 1000, 2 * size + size / 2)).await;
        h.gate.send_replace(false);
        let mut a = Client::connect(h.addr, &[]).await;
        let held = a.send_all(vec![insert(100), insert(101)]).await;
        let refused = a.send_all(vec![insert(102)]).await;
        let (stream, response) = a.recv().await;
        assert_eq!(stream, refused[0]);
        let message = overloaded_message(&response).expect("overloaded");
        assert!(
            message.contains("native_transport_max_concurrent_requests_in_bytes"),
            "{message}"
        );
        // OPTIONS is not counted: it is answered while the bound is full.
        let supported = a.call(Request::Options).await;
        assert!(matches!(supported, Response::Supported(_)), "{supported:?}");
        h.gate.send_replace(true);
        for (_, response) in answers(&mut a, &held).await {
            assert!(matches!(response, Response::Result(_)), "{response:?}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn past_the_connection_bound_a_connection_waits_unless_it_asked_to_be_told() {
        let h = start(limits(2, 1000, 1 << 20)).await;
        h.gate.send_replace(false);
        // Default: back-pressure. Four writes, two run, two wait unread; none is refused.
        let mut patient = Client::connect(h.addr, &[]).await;
        let waiting = patient.send_all((0..4).map(insert).collect()).await;
        assert!(
            !patient.answers_within(Duration::from_millis(300)).await,
            "nothing can be answered while the gate is closed"
        );
        // THROW_ON_OVERLOAD=1: the two past the bound are answered Overloaded at once.
        let mut eager = Client::connect(h.addr, &[("THROW_ON_OVERLOAD", "1")]).await;
        let held = eager.send_all(vec![insert(10), insert(11)]).await;
        let refused = eager.send_all(vec![insert(12), insert(13)]).await;
        for (_, response) in answers(&mut eager, &refused).await {
            let message = overloaded_message(&response).expect("overloaded");
            assert!(
                message.contains("native_transport_max_requests_per_connection"),
                "{message}"
            );
        }
        h.gate.send_replace(true);
        for (_, response) in answers(&mut patient, &waiting).await {
            assert!(matches!(response, Response::Result(_)), "{response:?}");
        }
        for (_, response) in answers(&mut eager, &held).await {
            assert!(matches!(response, Response::Result(_)), "{response:?}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_that_never_reads_is_paused_not_buffered_without_bound() {
        // Per connection 4: with answers unread, the writer queue holds at most those and the
        // reader stops reading; the node's other clients are served all along.
        let h = start(limits(4, 1000, 1 << 20)).await;
        let mut silent = TcpStream::connect(h.addr).await.expect("connect");
        let mut frames = request_frame(
            0,
            &Request::Startup(vec![("CQL_VERSION".into(), "3.0.0".into())]),
        );
        // Large enough answers that the socket buffers fill: SELECTs of system.local.
        for i in 1..=20_000i16 {
            frames.extend(request_frame(
                i,
                &query("SELECT * FROM system.local WHERE key = 'local'"),
            ));
        }
        // The write stalls once the server stops reading; that is the point.
        let _ = tokio::time::timeout(Duration::from_secs(2), silent.write_all(&frames)).await;
        let mut other = Client::connect(h.addr, &[]).await;
        let answer = other.call(insert(1)).await;
        assert!(matches!(answer, Response::Result(_)), "{answer:?}");
    }
}
