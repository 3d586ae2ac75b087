//! An async CQL client over one native-protocol v4 connection.
//!
//! # How it works
//!
//! [`Client::connect`] opens a TCP connection and starts two tasks on it (see [`connection`]): a
//! writer that sends frames queued by callers, and a reader that routes each response to the
//! request that carries the same stream id. Protocol v4 allows 32768 stream ids per connection
//! and lets the server answer in any order, so one connection carries many concurrent requests:
//! `Client` is a cheap `Clone` handle (`Send + Sync`), and every clone shares the connection.
//!
//! The handshake is the one every driver does: `OPTIONS` → `SUPPORTED` (to learn the server's
//! `CQL_VERSION`), `STARTUP` → `READY` (or `AUTHENTICATE`, answered with SASL PLAIN when
//! credentials are given), then `USE` when a keyspace was asked for. A server that answers in
//! another protocol version, or with an error, fails [`Client::connect`] with a message saying so.
//!
//! # Bounds and failure
//!
//! - At most [`ClientOptions::max_in_flight`] requests are outstanding; more callers wait their
//!   turn on a semaphore (the wait counts toward their timeout).
//! - Each request has [`ClientOptions::request_timeout`]. A request that times out (or whose
//!   future is dropped) keeps its stream id until the late answer arrives, so that answer can
//!   never be mistaken for another request's; the id and its in-flight slot are then reused.
//! - Frames larger than [`ClientOptions::max_frame_len`] are refused in both directions.
//! - When the connection dies, every pending request fails with
//!   [`ClientError::ConnectionClosed`] and the reason; later requests fail at once. The client
//!   does not reconnect: a caller that wants that connects again.
//!
//! # Statements and results
//!
//! [`Client::query`] runs a statement with optional bound values; [`Client::prepare`] and
//! [`Client::execute`] use prepared statements (re-preparing once when the server has forgotten
//! the statement, as drivers do); [`Client::batch`] groups writes; [`Client::register`] asks for
//! pushed events, which arrive on [`Client::events`]. Rows come back decoded ([`Rows`]) with the
//! paging state to fetch the next page; [`Pager`] and [`Client::query_all`] follow it.

pub mod connection;
pub mod streams;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::net::{lookup_host, TcpStream, ToSocketAddrs};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::frame::{Frame, HEADER_LEN};
use crate::message::{
    decode_response_frame, BatchQuery, BatchStatement, BoundValue, ColumnSpec, Consistency,
    ErrorBody, Event, QueryParameters, Request, Response, ResultBody, SchemaChange,
};
use crate::types::{CqlType, CqlValue};
use connection::{Pending, Shared};
use streams::AllocError;

/// Everything that can go wrong talking to a server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The TCP connection could not be made (or timed out).
    #[error("cannot connect to {addr}: {message}")]
    Connect { addr: String, message: String },
    /// Reading or writing the socket failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The server sent something this client cannot make sense of, or speaks another protocol
    /// version.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The server answered with an ERROR message; `error` keeps every detail it sent.
    #[error("server error {code:#06x}: {message}")]
    Server {
        code: i32,
        message: String,
        error: ErrorBody,
    },
    /// No answer within the request timeout.
    #[error("request timed out after {0:?}")]
    Timeout(Duration),
    /// The connection is gone; the text says why.
    #[error("connection closed: {0}")]
    ConnectionClosed(String),
    /// Authentication was required and failed (or no credentials were given).
    #[error("authentication failed: {0}")]
    Auth(String),
    /// The request cannot be sent as given (too large, too many values, ...).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

impl ClientError {
    /// The protocol error code when the server answered with an error.
    pub fn server_code(&self) -> Option<i32> {
        match self {
            ClientError::Server { code, .. } => Some(*code),
            _ => None,
        }
    }

    fn server(error: ErrorBody) -> ClientError {
        ClientError::Server {
            code: error.code(),
            message: error.message.clone(),
            error,
        }
    }
}

/// Protocol error code of UNPREPARED: the server does not know the prepared statement id.
pub const UNPREPARED: i32 = 0x2500;

/// SASL PLAIN credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<hidden>")
            .finish()
    }
}

/// How to connect, and the limits of the connection.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Keyspace to `USE` right after the handshake.
    pub keyspace: Option<String>,
    /// Time allowed for the TCP connection and the whole handshake.
    pub connect_timeout: Duration,
    /// Time allowed for each request, from the call (including any wait for an in-flight slot)
    /// to its answer.
    pub request_timeout: Duration,
    /// Largest frame body accepted from or sent to the server, in bytes.
    pub max_frame_len: usize,
    /// Most requests outstanding at once on the connection (at most 32768, the number of
    /// stream ids).
    pub max_in_flight: usize,
    /// Events buffered for a slow subscriber before newer ones are dropped.
    pub event_buffer: usize,
    /// Credentials for servers that require authentication.
    pub credentials: Option<Credentials>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            keyspace: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(12),
            max_frame_len: 256 * 1024 * 1024,
            max_in_flight: 2048,
            event_buffer: 1024,
            credentials: None,
        }
    }
}

/// Per-statement options.
#[derive(Debug, Clone)]
pub struct QueryOptions {
    pub consistency: Consistency,
    /// Consistency of the Paxos phase of conditional updates.
    pub serial_consistency: Option<Consistency>,
    /// Rows per page; `None` lets the server return everything at once.
    pub page_size: Option<i32>,
    /// Where to resume, from a previous page's [`Rows::paging_state`].
    pub paging_state: Option<Bytes>,
    /// Write timestamp in microseconds since the epoch; `None` lets the server choose.
    pub timestamp: Option<i64>,
}

impl Default for QueryOptions {
    fn default() -> Self {
        QueryOptions {
            consistency: Consistency::One,
            serial_consistency: None,
            page_size: Some(5000),
            paging_state: None,
            timestamp: None,
        }
    }
}

/// A value bound to a `?` marker.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// CQL `null`.
    Null,
    /// Leave the column as it is (protocol v4 "not set").
    Unset,
    /// Already serialized bytes.
    Bytes(Bytes),
    /// A typed value, serialized by the client.
    Typed(CqlValue),
}

impl From<Option<Vec<u8>>> for Value {
    fn from(v: Option<Vec<u8>>) -> Self {
        v.map_or(Value::Null, |b| Value::Bytes(Bytes::from(b)))
    }
}

impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Bytes(Bytes::from(v))
    }
}

impl From<Bytes> for Value {
    fn from(v: Bytes) -> Self {
        Value::Bytes(v)
    }
}

impl From<CqlValue> for Value {
    fn from(v: CqlValue) -> Self {
        Value::Typed(v)
    }
}

impl From<Option<CqlValue>> for Value {
    fn from(v: Option<CqlValue>) -> Self {
        v.map_or(Value::Null, Value::Typed)
    }
}

impl Value {
    fn into_bound(self) -> BoundValue {
        match self {
            Value::Null => BoundValue::Null,
            Value::Unset => BoundValue::Unset,
            Value::Bytes(b) => BoundValue::Value(b),
            Value::Typed(v) => BoundValue::Value(Bytes::from(v.serialize())),
        }
    }
}

/// Converts any list of values (`Vec<Option<Vec<u8>>>`, `[CqlValue]`, `Vec<Value>`, ...) for a
/// request.
fn bind<V: Into<Value>>(values: impl IntoIterator<Item = V>) -> Vec<BoundValue> {
    values.into_iter().map(|v| v.into().into_bound()).collect()
}

/// No bound values (`client.query(cql, NO_VALUES, &opts)`).
pub const NO_VALUES: [Value; 0] = [];

/// Decoded rows of one page.
#[derive(Debug, Clone, PartialEq)]
pub struct Rows {
    pub columns: Vec<ColumnSpec>,
    /// One entry per row, one cell per column; `None` is null.
    pub rows: Vec<Vec<Option<CqlValue>>>,
    /// Present when more rows follow: pass it back in [`QueryOptions::paging_state`].
    pub paging_state: Option<Bytes>,
}

impl Rows {
    /// The index of the column named `name`.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }
}

/// What a statement returned.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryResult {
    /// Nothing (writes, most DDL acknowledgements without schema change).
    Void,
    /// Rows, possibly one page of many.
    Rows(Rows),
    /// `USE` succeeded: the connection's keyspace is now this one.
    SetKeyspace(String),
    /// DDL changed the schema.
    SchemaChange(SchemaChange),
}

impl QueryResult {
    /// The rows, if this is a rows result.
    pub fn into_rows(self) -> Option<Rows> {
        match self {
            QueryResult::Rows(rows) => Some(rows),
            _ => None,
        }
    }
}

/// A statement prepared on the server.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedStatement {
    /// The server's id for the statement.
    pub id: Bytes,
    /// The statement text (kept to re-prepare it when the server forgot it).
    pub query: String,
    /// The bind variables, in order.
    pub variables: Vec<ColumnSpec>,
    /// The columns of its result (empty for writes).
    pub result_columns: Vec<ColumnSpec>,
}

/// One statement of a batch.
#[derive(Debug, Clone)]
pub enum BatchEntry {
    /// Statement text with its values.
    Query { query: String, values: Vec<Value> },
    /// A prepared statement with its values.
    Prepared {
        statement: PreparedStatement,
        values: Vec<Value>,
    },
}

/// The kind of a batch.
pub use crate::message::BatchType as BatchKind;

struct Inner {
    shared: Arc<Shared>,
    queue: mpsc::Sender<Vec<u8>>,
    permits: Arc<Semaphore>,
    options: ClientOptions,
    peer: SocketAddr,
    /// The server's SUPPORTED options, set once during the handshake.
    supported: OnceLock<HashMap<String, Vec<String>>>,
    keyspace: Mutex<Option<String>>,
}

/// A connection to one CQL server. Clones share the connection.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("peer", &self.inner.peer)
            .field("keyspace", &self.keyspace())
            .finish()
    }
}

/// Quotes a keyspace or table name for CQL text unless it is a plain lower-case identifier.
pub fn quote_identifier(name: &str) -> String {
    let plain = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

impl Client {
    /// Connects, does the handshake, and `USE`s the keyspace of the options, if any. Every
    /// address `addr` resolves to is tried in turn; the whole takes at most
    /// [`ClientOptions::connect_timeout`].
    pub async fn connect(
        addr: impl ToSocketAddrs,
        options: ClientOptions,
    ) -> Result<Client, ClientError> {
        let timeout = options.connect_timeout;
        let timed_out = |addr: String| ClientError::Connect {
            addr,
            message: format!("no connection and handshake within {timeout:?}"),
        };
        let addrs: Vec<SocketAddr> = match tokio::time::timeout(timeout, lookup_host(addr)).await {
            Ok(Ok(addrs)) => addrs.collect(),
            Ok(Err(e)) => {
                return Err(ClientError::Connect {
                    addr: "<unresolved>".into(),
                    message: e.to_string(),
                })
            }
            Err(_) => return Err(timed_out("<unresolved>".into())),
        };
        let shown = addrs
            .first()
            .map_or_else(|| "<none>".to_string(), SocketAddr::to_string);
        match tokio::time::timeout(timeout, Self::connect_to(&addrs, options)).await {
            Ok(result) => result,
            Err(_) => Err(timed_out(shown)),
        }
    }

    async fn connect_to(
        addrs: &[SocketAddr],
        options: ClientOptions,
    ) -> Result<Client, ClientError> {
        let mut last_error = None;
        let mut socket = None;
        for a in addrs {
            match TcpStream::connect(a).await {
                Ok(s) => {
                    socket = Some((s, *a));
                    break;
                }
                Err(e) => last_error = Some((a.to_string(), e.to_string())),
            }
        }
        let Some((socket, peer)) = socket else {
            let (addr, message) =
                last_error.unwrap_or(("<none>".into(), "the address resolved to nothing".into()));
            return Err(ClientError::Connect { addr, message });
        };
        let _ = socket.set_nodelay(true);
        let client = Self::start(socket, peer, options);
        client.handshake().await?;
        if let Some(ks) = client.inner.options.keyspace.clone() {
            client
                .query(
                    &format!("USE {}", quote_identifier(&ks)),
                    NO_VALUES,
                    &QueryOptions::default(),
                )
                .await?;
        }
        Ok(client)
    }

    /// Starts the connection tasks on an open socket.
    fn start(socket: TcpStream, peer: SocketAddr, mut options: ClientOptions) -> Client {
        options.max_in_flight = options.max_in_flight.clamp(1, 32768);
        let shared = Shared::new(options.max_frame_len);
        let (read, write) = socket.into_split();
        let (queue_tx, queue_rx) = mpsc::channel(1024);
        tokio::spawn(connection::reader_task(read, shared.clone()));
        tokio::spawn(connection::writer_task(write, queue_rx, shared.clone()));
        Client {
            inner: Arc::new(Inner {
                shared,
                queue: queue_tx,
                permits: Arc::new(Semaphore::new(options.max_in_flight)),
                keyspace: Mutex::new(None),
                options,
                peer,
                supported: OnceLock::new(),
            }),
        }
    }

    /// OPTIONS → SUPPORTED, STARTUP → READY / AUTHENTICATE.
    async fn handshake(&self) -> Result<(), ClientError> {
        let supported = match self.request(&Request::Options).await? {
            Response::Supported(map) => map,
            other => return Err(unexpected("SUPPORTED", &other)),
        };
        let cql_version = supported
            .get("CQL_VERSION")
            .and_then(|v| v.first())
            .cloned()
            .unwrap_or_else(|| "3.0.0".to_string());
        let _ = self.inner.supported.set(supported);
        let startup = Request::Startup(vec![("CQL_VERSION".to_string(), cql_version)]);
        match self.request(&startup).await? {
            Response::Ready => Ok(()),
            Response::Authenticate(authenticator) => self.authenticate(&authenticator).await,
            other => Err(unexpected("READY", &other)),
        }
    }

    async fn authenticate(&self, authenticator: &str) -> Result<(), ClientError> {
        let Some(creds) = self.inner.options.credentials.clone() else {
            return Err(ClientError::Auth(format!(
                "the server requires authentication ({authenticator}); give a user name and password"
            )));
        };
        let mut token = Vec::with_capacity(creds.username.len() + creds.password.len() + 2);
        token.push(0);
        token.extend_from_slice(creds.username.as_bytes());
        token.push(0);
        token.extend_from_slice(creds.password.as_bytes());
        match self
            .send(&Request::AuthResponse(Some(Bytes::from(token))))
            .await
        {
            Ok(Response::AuthSuccess(_)) => Ok(()),
            Ok(Response::Error(error)) => Err(ClientError::Auth(error.message)),
            Ok(other) => Err(unexpected("AUTH_SUCCESS", &other)),
            Err(e) => Err(e),
        }
    }

    /// The server's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.inner.peer
    }

    /// The options of the server's SUPPORTED answer (`CQL_VERSION`, `COMPRESSION`, ...).
    pub fn supported(&self) -> &HashMap<String, Vec<String>> {
        static NONE: OnceLock<HashMap<String, Vec<String>>> = OnceLock::new();
        self.inner
            .supported
            .get()
            .unwrap_or_else(|| NONE.get_or_init(HashMap::new))
    }

    /// The keyspace set by the last successful `USE`, if any.
    pub fn keyspace(&self) -> Option<String> {
        self.inner
            .keyspace
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Requests sent and not yet answered on the connection (including given-up ones).
    pub fn outstanding_requests(&self) -> usize {
        self.inner.shared.table().outstanding()
    }

    /// Why the connection closed, or `None` while it is open.
    pub fn closed_reason(&self) -> Option<String> {
        self.inner
            .shared
            .table()
            .closed_reason()
            .map(str::to_string)
    }

    /// Subscribes to server-pushed events (after [`Client::register`]). A new call replaces the
    /// previous subscriber. Events that arrive while the subscriber's buffer is full are dropped.
    pub fn events(&self) -> mpsc::Receiver<Event> {
        self.inner.shared.subscribe(self.inner.options.event_buffer)
    }

    /// Sends one request and waits for its answer (ERROR answers become `Err`).
    pub async fn request(&self, request: &Request) -> Result<Response, ClientError> {
        match self.send(request).await? {
            Response::Error(error) => Err(ClientError::server(error)),
            response => Ok(response),
        }
    }

    /// Sends one request and returns its answer as it came, ERROR included.
    async fn send(&self, request: &Request) -> Result<Response, ClientError> {
        let timeout = self.inner.options.request_timeout;
        let frame = match tokio::time::timeout(timeout, self.roundtrip(request)).await {
            Ok(frame) => frame?,
            Err(_) => return Err(ClientError::Timeout(timeout)),
        };
        let decoded = decode_response_frame(&frame)
            .map_err(|e| ClientError::Protocol(format!("undecodable response: {e}")))?;
        for warning in &decoded.extras.warnings {
            tracing::warn!(server_warning = %warning);
        }
        Ok(decoded.response)
    }

    /// Takes a stream id, queues the frame and waits for the frame that answers it. Cancel-safe:
    /// if this future is dropped before the frame is queued the id is given back at once;
    /// after, it is given back when the answer arrives.
    async fn roundtrip(&self, request: &Request) -> Result<Frame, ClientError> {
        let inner = &self.inner;
        let permit = inner
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ClientError::ConnectionClosed("client shut down".into()))?;
        let (tx, rx) = oneshot::channel();
        let stream = inner
            .shared
            .table()
            .allocate(Pending {
                reply: tx,
                _permit: permit,
            })
            .map_err(|e| match e {
                AllocError::Closed(reason) => ClientError::ConnectionClosed(reason),
                AllocError::Exhausted => {
                    ClientError::Protocol("no free stream id on the connection".into())
                }
            })?;
        let mut guard = UnsentGuard {
            shared: &inner.shared,
            stream,
            queued: false,
        };
        let bytes = crate::message::request_frame(stream, request);
        let body_len = bytes.len().saturating_sub(HEADER_LEN);
        if body_len > inner.options.max_frame_len {
            return Err(ClientError::InvalidRequest(format!(
                "request body of {body_len} bytes exceeds the frame limit of {} bytes",
                inner.options.max_frame_len
            )));
        }
        inner.queue.send(bytes).await.map_err(|_| {
            ClientError::ConnectionClosed(
                self.closed_reason()
                    .unwrap_or_else(|| "connection writer stopped".into()),
            )
        })?;
        // From here the answer frees the id (or the connection's end does).
        guard.queued = true;
        match rx.await {
            Ok(reply) => reply,
            Err(_) => Err(ClientError::ConnectionClosed(
                self.closed_reason()
                    .unwrap_or_else(|| "connection reader stopped".into()),
            )),
        }
    }

    /// Runs a statement.
    pub async fn query<V: Into<Value>>(
        &self,
        cql: &str,
        values: impl IntoIterator<Item = V>,
        options: &QueryOptions,
    ) -> Result<QueryResult, ClientError> {
        let request = Request::Query {
            query: cql.to_string(),
            params: parameters(bind(values), options),
        };
        let response = self.request(&request).await?;
        self.read_result(response)
    }

    /// Runs a statement and follows paging until the last page; returns every row.
    pub async fn query_all<V: Into<Value>>(
        &self,
        cql: &str,
        values: impl IntoIterator<Item = V>,
        options: &QueryOptions,
    ) -> Result<QueryResult, ClientError> {
        let mut pager = self.pager(cql, values, options.clone());
        let mut all: Option<Rows> = None;
        loop {
            match pager.next_page().await? {
                None => break,
                Some(QueryResult::Rows(page)) => match &mut all {
                    None => all = Some(page),
                    Some(all) => {
                        all.rows.extend(page.rows);
                        all.paging_state = page.paging_state;
                    }
                },
                Some(other) => return Ok(other),
            }
        }
        Ok(all.map_or(QueryResult::Void, QueryResult::Rows))
    }

    /// A [`Pager`] over the pages of a statement.
    pub fn pager<V: Into<Value>>(
        &self,
        cql: &str,
        values: impl IntoIterator<Item = V>,
        options: QueryOptions,
    ) -> Pager {
        Pager {
            client: self.clone(),
            statement: PagedStatement::Query {
                query: cql.to_string(),
                values: values.into_iter().map(Into::into).collect(),
            },
            options,
            done: false,
        }
    }

    /// A [`Pager`] over the pages of a prepared statement.
    pub fn pager_prepared<V: Into<Value>>(
        &self,
        statement: &PreparedStatement,
        values: impl IntoIterator<Item = V>,
        options: QueryOptions,
    ) -> Pager {
        Pager {
            client: self.clone(),
            statement: PagedStatement::Prepared {
                statement: statement.clone(),
                values: values.into_iter().map(Into::into).collect(),
            },
            options,
            done: false,
        }
    }

    /// Prepares a statement.
    pub async fn prepare(&self, cql: &str) -> Result<PreparedStatement, ClientError> {
        let request = Request::Prepare {
            query: cql.to_string(),
        };
        match self.request(&request).await? {
            Response::Result(ResultBody::Prepared {
                id,
                metadata,
                result_metadata,
            }) => Ok(PreparedStatement {
                id,
                query: cql.to_string(),
                variables: metadata.columns,
                result_columns: result_metadata.columns,
            }),
            other => Err(unexpected("PREPARED", &other)),
        }
    }

    /// Executes a prepared statement. When the server answers UNPREPARED (it restarted, or
    /// evicted the statement), prepares it again once and retries.
    pub async fn execute<V: Into<Value>>(
        &self,
        statement: &PreparedStatement,
        values: impl IntoIterator<Item = V>,
        options: &QueryOptions,
    ) -> Result<QueryResult, ClientError> {
        let values = bind(values);
        let request = Request::Execute {
            id: statement.id.clone(),
            params: parameters(values.clone(), options),
        };
        match self.request(&request).await {
            Err(ClientError::Server { code, .. }) if code == UNPREPARED => {
                tracing::debug!(query = %statement.query, "statement unprepared on server; preparing again");
                let again = self.prepare(&statement.query).await?;
                let request = Request::Execute {
                    id: again.id.clone(),
                    params: parameters(values, options),
                };
                let response = self.request(&request).await?;
                self.read_result_with(response, Some(&again.result_columns))
            }
            result => self.read_result_with(result?, Some(&statement.result_columns)),
        }
    }

    /// Runs a batch of writes. Only consistency, serial consistency and timestamp of `options`
    /// apply. UNPREPARED answers re-prepare every prepared entry once and retry.
    pub async fn batch(
        &self,
        kind: BatchKind,
        entries: Vec<BatchEntry>,
        options: &QueryOptions,
    ) -> Result<QueryResult, ClientError> {
        let request = batch_request(kind, &entries, options);
        match self.request(&request).await {
            Err(ClientError::Server { code, .. }) if code == UNPREPARED => {
                let mut fresh = Vec::with_capacity(entries.len());
                for entry in entries {
                    fresh.push(match entry {
                        BatchEntry::Prepared { statement, values } => BatchEntry::Prepared {
                            statement: self.prepare(&statement.query).await?,
                            values,
                        },
                        query => query,
                    });
                }
                let response = self.request(&batch_request(kind, &fresh, options)).await?;
                self.read_result(response)
            }
            result => self.read_result(result?),
        }
    }

    /// Asks the server to push events of these types (`TOPOLOGY_CHANGE`, `STATUS_CHANGE`,
    /// `SCHEMA_CHANGE`); they arrive on [`Client::events`].
    pub async fn register(&self, events: &[&str]) -> Result<(), ClientError> {
        let request = Request::Register {
            events: events.iter().map(|e| e.to_string()).collect(),
        };
        match self.request(&request).await? {
            Response::Ready => Ok(()),
            other => Err(unexpected("READY", &other)),
        }
    }

    /// Turns a RESULT into a [`QueryResult`], decoding every cell by its column type.
    fn read_result(&self, response: Response) -> Result<QueryResult, ClientError> {
        self.read_result_with(response, None)
    }

    /// As [`Client::read_result`]; `known_columns` describe rows sent without metadata (the
    /// result columns of a prepared statement).
    fn read_result_with(
        &self,
        response: Response,
        known_columns: Option<&[ColumnSpec]>,
    ) -> Result<QueryResult, ClientError> {
        match response {
            Response::Result(ResultBody::Void) => Ok(QueryResult::Void),
            Response::Result(ResultBody::SetKeyspace(ks)) => {
                *self
                    .inner
                    .keyspace
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(ks.clone());
                Ok(QueryResult::SetKeyspace(ks))
            }
            Response::Result(ResultBody::SchemaChange(change)) => {
                Ok(QueryResult::SchemaChange(change))
            }
            Response::Result(ResultBody::Rows(rows)) => {
                decode_rows(rows, known_columns).map(QueryResult::Rows)
            }
            other => Err(unexpected("RESULT", &other)),
        }
    }
}

/// Frees the stream id of a request that was never queued (its future was dropped, or it failed
/// before the writer got it): no answer will come for it.
struct UnsentGuard<'a> {
    shared: &'a Shared,
    stream: i16,
    /// Set once the frame is in the writer's queue: an answer will come (or the connection
    /// will close), and that frees the id.
    queued: bool,
}

impl Drop for UnsentGuard<'_> {
    fn drop(&mut self) {
        if !self.queued {
            self.shared.table().complete(self.stream);
        }
    }
}

fn unexpected(expected: &str, got: &Response) -> ClientError {
    let name = format!("{got:?}");
    let name: String = name.chars().take(120).collect();
    ClientError::Protocol(format!("expected {expected}, server sent {name}"))
}

fn parameters(values: Vec<BoundValue>, options: &QueryOptions) -> QueryParameters {
    QueryParameters {
        consistency: options.consistency,
        values,
        names: None,
        skip_metadata: false,
        page_size: options.page_size,
        paging_state: options.paging_state.clone(),
        serial_consistency: options.serial_consistency,
        default_timestamp: options.timestamp,
    }
}

fn batch_request(kind: BatchKind, entries: &[BatchEntry], options: &QueryOptions) -> Request {
    let statements = entries
        .iter()
        .map(|entry| match entry {
            BatchEntry::Query { query, values } => BatchStatement {
                query: BatchQuery::Query(query.clone()),
                values: values.iter().cloned().map(Value::into_bound).collect(),
            },
            BatchEntry::Prepared { statement, values } => BatchStatement {
                query: BatchQuery::Prepared(statement.id.clone()),
                values: values.iter().cloned().map(Value::into_bound).collect(),
            },
        })
        .collect();
    Request::Batch {
        batch_type: kind,
        statements,
        consistency: options.consistency,
        serial_consistency: options.serial_consistency,
        timestamp: options.timestamp,
    }
}

/// Decodes every cell of a ROWS result by its column's type.
fn decode_rows(
    rows: crate::message::Rows,
    known_columns: Option<&[ColumnSpec]>,
) -> Result<Rows, ClientError> {
    let columns = if rows.metadata.no_metadata {
        match known_columns {
            Some(known) if known.len() == rows.metadata.column_count => known.to_vec(),
            _ => {
                return Err(ClientError::Protocol(format!(
                    "rows without metadata ({} columns) and no prepared metadata to read them with",
                    rows.metadata.column_count
                )))
            }
        }
    } else {
        rows.metadata.columns
    };
    let mut decoded = Vec::with_capacity(rows.rows.len());
    for (r, row) in rows.rows.into_iter().enumerate() {
        if row.len() != columns.len() {
            return Err(ClientError::Protocol(format!(
                "row {r} has {} cells for {} columns",
                row.len(),
                columns.len()
            )));
        }
        let mut cells = Vec::with_capacity(row.len());
        for (cell, column) in row.into_iter().zip(&columns) {
            cells.push(match cell {
                None => None,
                Some(bytes) => Some(decode_cell(&column.ty, &bytes).map_err(|e| {
                    ClientError::Protocol(format!(
                        "row {r}, column {}: cannot decode {}: {e}",
                        column.name, column.ty
                    ))
                })?),
            });
        }
        decoded.push(cells);
    }
    Ok(Rows {
        columns,
        rows: decoded,
        paging_state: rows.metadata.paging_state,
    })
}

fn decode_cell(ty: &CqlType, bytes: &[u8]) -> Result<CqlValue, String> {
    CqlValue::deserialize(ty, bytes).map_err(|e| e.to_string())
}

enum PagedStatement {
    Query {
        query: String,
        values: Vec<Value>,
    },
    Prepared {
        statement: PreparedStatement,
        values: Vec<Value>,
    },
}

/// Fetches the pages of one statement, one at a time, following the paging state.
pub struct Pager {
    client: Client,
    statement: PagedStatement,
    options: QueryOptions,
    done: bool,
}

impl Pager {
    /// The next page, or `None` after the last one. A statement that returns something other
    /// than rows yields that once.
    pub async fn next_page(&mut self) -> Result<Option<QueryResult>, ClientError> {
        if self.done {
            return Ok(None);
        }
        let result = match &self.statement {
            PagedStatement::Query { query, values } => {
                self.client
                    .query(query, values.iter().cloned(), &self.options)
                    .await
            }
            PagedStatement::Prepared { statement, values } => {
                self.client
                    .execute(statement, values.iter().cloned(), &self.options)
                    .await
            }
        };
        let result = match result {
            Ok(r) => r,
            Err(e) => {
                self.done = true;
                return Err(e);
            }
        };
        match &result {
            QueryResult::Rows(rows) if rows.paging_state.is_some() => {
                if rows.paging_state == self.options.paging_state {
                    self.done = true;
                    return Err(ClientError::Protocol(
                        "server returned the same paging state twice".into(),
                    ));
                }
                self.options.paging_state = rows.paging_state.clone();
            }
            _ => self.done = true,
        }
        Ok(Some(result))
    }

    /// True once the last page has been returned.
    pub fn is_done(&self) -> bool {
        self.done
    }
}
