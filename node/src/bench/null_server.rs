//! The null server: a CQL native protocol v4 server that stores nothing and answers at once.
//!
//! It is the reference every bench figure is divided by: the same client, the same machine, the
//! same protocol, and a server that does the least a server can do. Whatever the bench measures
//! beyond the null server's figures is the cost of the database itself.
//!
//! What it answers (enough for `ringdb bench`, and for drivers that accept a one-node cluster):
//!
//! - OPTIONS → SUPPORTED; STARTUP and REGISTER → READY.
//! - QUERY: `SELECT ... system.local` → one row describing this server as the only node (one
//!   token, 0; Murmur3Partitioner); `system.peers` / `system.peers_v2` → no rows, with the
//!   columns drivers read; other SELECTs → no rows; `USE ks` → SET_KEYSPACE; `CREATE`, `ALTER` and
//!   `DROP` → SCHEMA_CHANGE; anything else → VOID.
//! - PREPARE → a fixed id per statement kind: a SELECT gets the bench's read shape (binds
//!   `key bigint`, returns `key bigint, value blob`); anything else the bench's write shape
//!   (binds `key bigint` then `value blob` for each further marker).
//! - EXECUTE of the write id → VOID; of the read id → one precomputed row (`key` 0 and a value of
//!   `--value-size` bytes); of an unknown id → UNPREPARED, so clients prepare again.
//! - BATCH → VOID.
//!
//! The hot path (EXECUTE, and the handshake opcodes) never decodes a message: it reads the frame
//! header, compares the prepared id's bytes, copies a response frame encoded once at start-up and
//! patches the request's stream id into it. Every complete frame already read is answered before
//! one write, so a pipelining client costs one `read` and one `write` per batch of requests. Other
//! requests go through the `cql-lite` codec, like any server.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use ringdb_cql::frame::{Frame, FrameError, Opcode, HEADER_LEN};
use ringdb_cql::message::{
    decode_request_frame, frame_error_response, response_frame, ColumnSpec, ErrorBody, ErrorKind,
    PreparedMetadata, Request, Response, ResponseExtras, ResultBody, ResultMetadata, Rows,
    SchemaChange, SchemaChangeTarget, SchemaChangeType,
};
use ringdb_cql::types::{CqlType, CqlValue};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use super::workload::{value_for, TABLE};

/// Largest request body accepted (the bench's are tiny; drivers' schema queries too).
const MAX_FRAME_LEN: usize = 16 * 1024 * 1024;
/// Prepared id of every non-SELECT statement.
pub const WRITE_ID: &[u8] = b"ringdb-null-write";
/// Prepared id of every SELECT statement.
pub const READ_ID: &[u8] = b"ringdb-null-read";
/// The host id the server reports for itself.
const HOST_ID: [u8; 16] = *b"ringdb-null-node";
/// The schema version it reports (never changes: nothing is stored).
const SCHEMA_VERSION: [u8; 16] = *b"ringdb-null-schm";

/// Response frames encoded once, on stream 0; [`patch`] sets the stream id.
struct Canned {
    supported: Vec<u8>,
    ready: Vec<u8>,
    void: Vec<u8>,
    read_row: Vec<u8>,
}

impl Canned {
    fn new(value_size: usize) -> Canned {
        let frame = |r: Response| response_frame(0, &r, &ResponseExtras::default());
        let supported = [
            ("CQL_VERSION".to_string(), vec!["3.4.5".to_string()]),
            ("COMPRESSION".to_string(), Vec::new()),
            ("PROTOCOL_VERSIONS".to_string(), vec!["4/v4".to_string()]),
        ]
        .into_iter()
        .collect();
        let row = Rows {
            metadata: ResultMetadata::new(read_result_columns("null")),
            rows: vec![vec![
                Some(Bytes::copy_from_slice(&0i64.to_be_bytes())),
                Some(Bytes::from(value_for(0, value_size))),
            ]],
        };
        Canned {
            supported: frame(Response::Supported(supported)),
            ready: frame(Response::Ready),
            void: frame(Response::Result(ResultBody::Void)),
            read_row: frame(Response::Result(ResultBody::Rows(row))),
        }
    }
}

/// Appends `canned` to `out` with its stream id set to `stream` (the request's two raw bytes).
fn patch(out: &mut Vec<u8>, canned: &[u8], stream: [u8; 2]) {
    let at = out.len();
    out.extend_from_slice(canned);
    out[at + 2] = stream[0];
    out[at + 3] = stream[1];
}

/// A bound null server, not yet serving.
pub struct NullServer {
    listener: TcpListener,
    canned: Arc<Canned>,
}

impl NullServer {
    /// Binds `addr` (port 0 for a free one). SELECTs of the read statement return a value of
    /// `value_size` bytes.
    pub async fn bind(addr: SocketAddr, value_size: usize) -> std::io::Result<NullServer> {
        Ok(NullServer {
            listener: TcpListener::bind(addr).await?,
            canned: Arc::new(Canned::new(value_size)),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts and serves connections until `shutdown` completes; then closes them all.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((socket, _)) => {
                        let canned = self.canned.clone();
                        connections.spawn(async move {
                            if let Err(e) = serve_connection(socket, canned).await {
                                tracing::debug!(error = %e, "null server connection ended");
                            }
                        });
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: wait a little, go on.
                        tracing::warn!(error = %e, "null server accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                },
                // Reap finished connections so the set does not grow without bound.
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        connections.shutdown().await;
    }
}

async fn serve_connection(mut socket: TcpStream, canned: Arc<Canned>) -> std::io::Result<()> {
    let _ = socket.set_nodelay(true);
    let local = socket.local_addr()?;
    let mut input = BytesMut::with_capacity(64 * 1024);
    let mut out: Vec<u8> = Vec::with_capacity(64 * 1024);
    loop {
        if socket.read_buf(&mut input).await? == 0 {
            return Ok(());
        }
        let mut close = false;
        loop {
            let total = match Frame::check(&input, MAX_FRAME_LEN) {
                Ok(total) => total,
                Err(FrameError::Incomplete) => break,
                Err(e) => {
                    if let Some(answer) = frame_error_response(&e) {
                        out.extend_from_slice(&answer);
                    }
                    close = true;
                    break;
                }
            };
            answer(&input[..total], &canned, local, &mut out);
            input.advance(total);
        }
        if !out.is_empty() {
            socket.write_all(&out).await?;
            out.clear();
        }
        if close {
            return Ok(());
        }
    }
}

/// Appends the answer to one whole request frame.
fn answer(frame: &[u8], canned: &Canned, local: SocketAddr, out: &mut Vec<u8>) {
    let stream = [frame[2], frame[3]];
    let flags = frame[1];
    let opcode = frame[4];
    let body = &frame[HEADER_LEN..];
    // The hot path: no flags (no custom payload before the body), a known opcode.
    if flags == 0 {
        if opcode == Opcode::Execute.as_u8() {
            if let Some(id) = prepared_id(body) {
                if id == WRITE_ID {
                    return patch(out, &canned.void, stream);
                }
                if id == READ_ID {
                    return patch(out, &canned.read_row, stream);
                }
            }
        } else if opcode == Opcode::Options.as_u8() {
            return patch(out, &canned.supported, stream);
        } else if opcode == Opcode::Startup.as_u8() || opcode == Opcode::Register.as_u8() {
            return patch(out, &canned.ready, stream);
        }
    }
    let stream_id = i16::from_be_bytes(stream);
    let response = match Frame::parse(frame)
        .map_err(|e| ErrorBody::protocol(e.to_string()))
        .and_then(|f| decode_request_frame(&f).map_err(|e| e.to_error_body()))
    {
        Ok(request) => respond(request.request, local),
        Err(error) => Response::Error(error),
    };
    out.extend_from_slice(&response_frame(
        stream_id,
        &response,
        &ResponseExtras::default(),
    ));
}

/// The `[short bytes]` prepared id at the start of an EXECUTE body.
fn prepared_id(body: &[u8]) -> Option<&[u8]> {
    let len = usize::from(u16::from_be_bytes([*body.first()?, *body.get(1)?]));
    body.get(2..2 + len)
}

/// The answer to a decoded request (every request but the hot path's).
fn respond(request: Request, local: SocketAddr) -> Response {
    match request {
        Request::Options => Response::Supported(
            [("CQL_VERSION".to_string(), vec!["3.4.5".to_string()])]
                .into_iter()
                .collect(),
        ),
        Request::Startup(_) | Request::Register { .. } => Response::Ready,
        Request::AuthResponse(_) => Response::Error(ErrorBody::new(
            ErrorKind::Protocol,
            "the null server does not authenticate",
        )),
        Request::Query { query, .. } => query_response(&query, local),
        Request::Prepare { query } => prepared(&query),
        Request::Execute { id, .. } => {
            if id.as_ref() == WRITE_ID {
                Response::Result(ResultBody::Void)
            } else if id.as_ref() == READ_ID {
                // Reached only with flags set (tracing, payload): rare, so built here.
                Response::Result(ResultBody::Rows(Rows {
                    metadata: ResultMetadata::new(read_result_columns("null")),
                    rows: vec![vec![
                        Some(Bytes::copy_from_slice(&0i64.to_be_bytes())),
                        Some(Bytes::new()),
                    ]],
                }))
            } else {
                Response::Error(ErrorBody::new(
                    ErrorKind::Unprepared { id },
                    "unknown prepared statement (the null server knows two)",
                ))
            }
        }
        Request::Batch { .. } => Response::Result(ResultBody::Void),
    }
}

/// Normalized words of a statement: upper-cased, quotes and punctuation as separators.
fn words(query: &str) -> Vec<String> {
    query
        .split(|c: char| c.is_whitespace() || matches!(c, '(' | ')' | ',' | ';' | '=' | '"'))
        .filter(|w| !w.is_empty())
        .map(|w| w.to_ascii_uppercase())
        .collect()
}

/// The `keyspace.table` (or bare name) that follows the word `after`, split in two.
fn object_after(words: &[String], original: &str, after: &str) -> (String, String) {
    let Some(i) = words.iter().position(|w| w == after) else {
        return (String::new(), String::new());
    };
    // Skip IF NOT EXISTS / IF EXISTS.
    let mut j = i + 1;
    while words
        .get(j)
        .is_some_and(|w| w == "IF" || w == "NOT" || w == "EXISTS")
    {
        j += 1;
    }
    let name = words.get(j).cloned().unwrap_or_default();
    // Keep the original case: find the word in the original text.
    let original_name = original
        .split(|c: char| c.is_whitespace() || matches!(c, '(' | ')' | ',' | ';' | '"'))
        .find(|w| w.eq_ignore_ascii_case(&name))
        .unwrap_or(&name)
        .to_string();
    match original_name.split_once('.') {
        Some((ks, t)) => (ks.to_string(), t.to_string()),
        None => (String::new(), original_name),
    }
}

fn query_response(query: &str, local: SocketAddr) -> Response {
    let w = words(query);
    let first = w.first().map(String::as_str).unwrap_or("");
    match first {
        "SELECT" => {
            let (ks, table) = object_after(&w, query, "FROM");
            let ks = ks.to_ascii_lowercase();
            let table = table.to_ascii_lowercase();
            let rows = match (ks.as_str(), table.as_str()) {
                ("system", "local") => local_row(local),
                ("system", "peers") => empty(peers_columns(false)),
                ("system", "peers_v2") => empty(peers_columns(true)),
                _ => empty(Vec::new()),
            };
            Response::Result(ResultBody::Rows(rows))
        }
        "USE" => {
            let ks = query
                .split_whitespace()
                .nth(1)
                .unwrap_or("")
                .trim_matches(|c| c == '"' || c == ';')
                .to_string();
            Response::Result(ResultBody::SetKeyspace(ks))
        }
        "CREATE" | "ALTER" | "DROP" => {
            let change_type = match first {
                "CREATE" => SchemaChangeType::Created,
                "ALTER" => SchemaChangeType::Updated,
                _ => SchemaChangeType::Dropped,
            };
            let keyspace_target = w.get(1).is_some_and(|t| t == "KEYSPACE");
            let (ks, name) = object_after(
                &w,
                query,
                if keyspace_target { "KEYSPACE" } else { "TABLE" },
            );
            let change = if keyspace_target {
                SchemaChange {
                    change_type,
                    target: SchemaChangeTarget::Keyspace,
                    keyspace: name,
                    name: String::new(),
                    args: Vec::new(),
                }
            } else {
                SchemaChange {
                    change_type,
                    target: SchemaChangeTarget::Table,
                    keyspace: ks,
                    name,
                    args: Vec::new(),
                }
            };
            Response::Result(ResultBody::SchemaChange(change))
        }
        _ => Response::Result(ResultBody::Void),
    }
}

fn prepared(query: &str) -> Response {
    let w = words(query);
    let is_select = w.first().is_some_and(|f| f == "SELECT");
    let (ks, _) = object_after(&w, query, if is_select { "FROM" } else { "INTO" });
    let ks = if ks.is_empty() {
        "null".to_string()
    } else {
        ks
    };
    let markers = query.matches('?').count();
    let key = column(&ks, "key", CqlType::BigInt);
    let (id, variables, result) = if is_select {
        (
            READ_ID,
            vec![key; markers.min(1)],
            ResultMetadata::new(read_result_columns(&ks)),
        )
    } else {
        let mut vars = Vec::with_capacity(markers);
        for i in 0..markers {
            vars.push(if i == 0 {
                key.clone()
            } else {
                column(&ks, "value", CqlType::Blob)
            });
        }
        (WRITE_ID, vars, ResultMetadata::no_metadata(0))
    };
    let pk_indices = if variables.is_empty() {
        vec![]
    } else {
        vec![0]
    };
    Response::Result(ResultBody::Prepared {
        id: Bytes::from_static(id),
        metadata: PreparedMetadata {
            columns: variables,
            pk_indices,
        },
        result_metadata: result,
    })
}

fn column(ks: &str, name: &str, ty: CqlType) -> ColumnSpec {
    ColumnSpec {
        keyspace: ks.to_string(),
        table: TABLE.to_string(),
        name: name.to_string(),
        ty,
    }
}

fn read_result_columns(ks: &str) -> Vec<ColumnSpec> {
    vec![
        column(ks, "key", CqlType::BigInt),
        column(ks, "value", CqlType::Blob),
    ]
}

fn system_column(table: &str, name: &str, ty: CqlType) -> ColumnSpec {
    ColumnSpec {
        keyspace: "system".to_string(),
        table: table.to_string(),
        name: name.to_string(),
        ty,
    }
}

fn empty(columns: Vec<ColumnSpec>) -> Rows {
    Rows {
        metadata: ResultMetadata::new(columns),
        rows: Vec::new(),
    }
}

fn peers_columns(v2: bool) -> Vec<ColumnSpec> {
    let t = if v2 { "peers_v2" } else { "peers" };
    let mut cols = vec![
        system_column(t, "peer", CqlType::Inet),
        system_column(t, "data_center", CqlType::Text),
        system_column(t, "host_id", CqlType::Uuid),
        system_column(t, "rack", CqlType::Text),
        system_column(t, "release_version", CqlType::Text),
        system_column(t, "schema_version", CqlType::Uuid),
        system_column(t, "tokens", CqlType::Set(Box::new(CqlType::Text))),
    ];
    if v2 {
        cols.push(system_column(t, "peer_port", CqlType::Int));
        cols.push(system_column(t, "native_address", CqlType::Inet));
        cols.push(system_column(t, "native_port", CqlType::Int));
    } else {
        cols.push(system_column(t, "rpc_address", CqlType::Inet));
    }
    cols
}

/// `system.local` for a one-node cluster at `local`, owning the whole ring with token 0.
fn local_row(local: SocketAddr) -> Rows {
    let t = "local";
    let text = |s: &str| Some(CqlValue::Text(s.to_string()));
    let cells: Vec<(ColumnSpec, Option<CqlValue>)> = vec![
        (system_column(t, "key", CqlType::Text), text("local")),
        (
            system_column(t, "bootstrapped", CqlType::Text),
            text("COMPLETED"),
        ),
        (
            system_column(t, "broadcast_address", CqlType::Inet),
            Some(CqlValue::Inet(local.ip())),
        ),
        (
            system_column(t, "cluster_name", CqlType::Text),
            text("ringdb null server"),
        ),
        (
            system_column(t, "cql_version", CqlType::Text),
            text("3.4.5"),
        ),
        (system_column(t, "data_center", CqlType::Text), text("dc1")),
        (
            system_column(t, "host_id", CqlType::Uuid),
            Some(CqlValue::Uuid(HOST_ID)),
        ),
        (
            system_column(t, "listen_address", CqlType::Inet),
            Some(CqlValue::Inet(local.ip())),
        ),
        (
            system_column(t, "native_protocol_version", CqlType::Text),
            text("4"),
        ),
        (
            system_column(t, "partitioner", CqlType::Text),
            text("org.apache.cassandra.dht.Murmur3Partitioner"),
        ),
        (system_column(t, "rack", CqlType::Text), text("rack1")),
        (
            system_column(t, "release_version", CqlType::Text),
            text("4.0.0-ringdb-null"),
        ),
        (
            system_column(t, "rpc_address", CqlType::Inet),
            Some(CqlValue::Inet(local.ip())),
        ),
        (
            system_column(t, "rpc_port", CqlType::Int),
            Some(CqlValue::Int(i32::from(local.port()))),
        ),
        (
            system_column(t, "schema_version", CqlType::Uuid),
            Some(CqlValue::Uuid(SCHEMA_VERSION)),
        ),
        (
            system_column(t, "tokens", CqlType::Set(Box::new(CqlType::Text))),
            Some(CqlValue::Set(vec![CqlValue::Text("0".to_string())])),
        ),
    ];
    let (columns, values): (Vec<_>, Vec<_>) = cells.into_iter().unzip();
    Rows {
        metadata: ResultMetadata::new(columns),
        rows: vec![values
            .into_iter()
            .map(|v| v.map(|v| Bytes::from(v.serialize())))
            .collect()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringdb_cql::message::{decode_response_frame, request_frame, QueryParameters};

    fn local() -> SocketAddr {
        "127.0.0.1:9999".parse().unwrap()
    }

    fn roundtrip(request: &Request, stream: i16) -> Response {
        let canned = Canned::new(10);
        let mut out = Vec::new();
        answer(&request_frame(stream, request), &canned, local(), &mut out);
        let frame = Frame::parse(&out).unwrap();
        assert_eq!(frame.header.stream, stream);
        assert_eq!(
            Frame::check(&out, 1 << 20),
            Ok(out.len()),
            "one whole frame"
        );
        decode_response_frame(&frame).unwrap().response
    }

    #[test]
    fn handshake_answers() {
        assert!(matches!(
            roundtrip(&Request::Options, 3),
            Response::Supported(_)
        ));
        assert_eq!(
            roundtrip(
                &Request::Startup(vec![("CQL_VERSION".into(), "3.0.0".into())]),
                300
            ),
            Response::Ready
        );
    }

    #[test]
    fn prepared_statements_execute_from_canned_frames() {
        let Response::Result(ResultBody::Prepared { id, metadata, .. }) = roundtrip(
            &Request::Prepare {
                query: "SELECT key, value FROM ks.kv WHERE key = ?".into(),
            },
            1,
        ) else {
            panic!("not PREPARED")
        };
        assert_eq!(id.as_ref(), READ_ID);
        assert_eq!(metadata.columns.len(), 1);
        let execute = |id: &[u8]| Request::Execute {
            id: Bytes::copy_from_slice(id),
            params: QueryParameters::default(),
        };
        let Response::Result(ResultBody::Rows(rows)) = roundtrip(&execute(READ_ID), 7) else {
            panic!("not ROWS")
        };
        assert_eq!(rows.rows.len(), 1);
        assert_eq!(rows.rows[0][1].as_ref().map(|v| v.len()), Some(10));
        assert_eq!(
            roundtrip(&execute(WRITE_ID), 32767),
            Response::Result(ResultBody::Void)
        );
        let Response::Error(e) = roundtrip(&execute(b"other"), 2) else {
            panic!("not an error")
        };
        assert!(matches!(e.kind, ErrorKind::Unprepared { .. }));
    }

    #[test]
    fn schema_and_system_queries() {
        let q = |s: &str| Request::Query {
            query: s.into(),
            params: QueryParameters::default(),
        };
        let Response::Result(ResultBody::SchemaChange(c)) = roundtrip(
            &q("CREATE KEYSPACE IF NOT EXISTS Bench WITH replication = {}"),
            1,
        ) else {
            panic!()
        };
        assert_eq!(
            (c.target, c.keyspace.as_str()),
            (SchemaChangeTarget::Keyspace, "Bench")
        );
        let Response::Result(ResultBody::SchemaChange(c)) = roundtrip(
            &q("CREATE TABLE IF NOT EXISTS b.kv (key bigint PRIMARY KEY)"),
            1,
        ) else {
            panic!()
        };
        assert_eq!((c.keyspace.as_str(), c.name.as_str()), ("b", "kv"));
        let Response::Result(ResultBody::Rows(local)) =
            roundtrip(&q("SELECT * FROM system.local WHERE key='local'"), 1)
        else {
            panic!()
        };
        assert_eq!(local.rows.len(), 1);
        let Response::Result(ResultBody::Rows(peers)) =
            roundtrip(&q("select peer, tokens from system.peers_v2"), 1)
        else {
            panic!()
        };
        assert!(peers.rows.is_empty());
        assert!(matches!(
            roundtrip(&q("USE b"), 1),
            Response::Result(ResultBody::SetKeyspace(ks)) if ks == "b"
        ));
    }

    #[test]
    fn pipelined_frames_are_answered_in_order_in_one_buffer() {
        let canned = Canned::new(4);
        let mut out = Vec::new();
        for stream in [5i16, 6, 7] {
            let req = Request::Execute {
                id: Bytes::from_static(WRITE_ID),
                params: QueryParameters::default(),
            };
            answer(&request_frame(stream, &req), &canned, local(), &mut out);
        }
        let mut buf = BytesMut::from(&out[..]);
        for stream in [5i16, 6, 7] {
            let f = Frame::split_from(&mut buf, 1024).unwrap().unwrap();
            assert_eq!(f.header.stream, stream);
        }
        assert!(buf.is_empty());
    }
}
