//! An in-process fake CQL server for the client and shell tests.
//!
//! It speaks the real codec (frames and messages of this crate) on a TCP listener on
//! 127.0.0.1:0. Each request goes to a handler that decides what to answer and when: answering
//! after a delay, not at all, or closing the connection is how the tests provoke out-of-order
//! responses, timeouts and connection loss. Every request is answered on its own task, so
//! answers with shorter delays overtake earlier requests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ringdb_cql::frame::{Frame, MAX_FRAME_LEN};
use ringdb_cql::message::{
    response_frame, ColumnSpec, ErrorBody, ErrorKind, Event, Request, Response, ResponseExtras,
    ResultBody, ResultMetadata, Rows,
};
use ringdb_cql::types::{CqlType, CqlValue};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// What the fake server does with one request.
pub enum Action {
    /// Answer at once.
    Reply(Response),
    /// Answer after a delay (other requests may be answered first).
    ReplyAfter(Duration, Response),
    /// Never answer.
    Ignore,
    /// Close the connection.
    Close,
    /// Write these raw bytes (for malformed or wrong-version answers, or pushed events).
    Raw(Vec<u8>),
    /// Do each of these, in order.
    Many(Vec<Action>),
}

/// Decides the answer to a request.
pub type Handler = Arc<dyn Fn(&Request) -> Action + Send + Sync>;

/// A running fake server.
pub struct FakeServer {
    pub addr: SocketAddr,
    /// Requests received, over all connections.
    pub requests: Arc<AtomicUsize>,
    /// Connections accepted.
    pub connections: Arc<AtomicUsize>,
    /// Every QUERY text received, in order.
    pub queries: Arc<Mutex<Vec<String>>>,
}

impl FakeServer {
    /// Starts a server whose handler falls back to [`default_answer`] when it returns `None`.
    pub async fn start<F>(handler: F) -> FakeServer
    where
        F: Fn(&Request) -> Option<Action> + Send + Sync + 'static,
    {
        let handler: Handler =
            Arc::new(move |req: &Request| handler(req).unwrap_or_else(|| default_answer(req)));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let requests = Arc::new(AtomicUsize::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        let queries = Arc::new(Mutex::new(Vec::new()));
        let (r, c, q) = (requests.clone(), connections.clone(), queries.clone());
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(socket, handler.clone(), r.clone(), q.clone()));
            }
        });
        FakeServer {
            addr,
            requests,
            connections,
            queries,
        }
    }
}

async fn serve(
    socket: TcpStream,
    handler: Handler,
    requests: Arc<AtomicUsize>,
    queries: Arc<Mutex<Vec<String>>>,
) {
    let (mut read, mut write) = socket.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Option<Vec<u8>>>();
    tokio::spawn(async move {
        while let Some(Some(bytes)) = rx.recv().await {
            if write.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = write.shutdown().await;
    });
    let mut buf = BytesMut::new();
    loop {
        let frame = match Frame::split_from(&mut buf, MAX_FRAME_LEN) {
            Ok(Some(frame)) => frame,
            Ok(None) => match read.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            },
            Err(_) => return,
        };
        requests.fetch_add(1, Ordering::SeqCst);
        let stream = frame.header.stream;
        let request = match Request::decode(frame.header.opcode, frame.body) {
            Ok(r) => r,
            Err(e) => {
                let err = Response::Error(ErrorBody::protocol(format!("bad request: {e}")));
                let _ = tx.send(Some(response_frame(
                    stream,
                    &err,
                    &ResponseExtras::default(),
                )));
                continue;
            }
        };
        if let Request::Query { query, .. } = &request {
            queries.lock().unwrap().push(query.clone());
        }
        if !perform(handler(&request), stream, &tx) {
            return;
        }
    }
}

/// Carries out one action; false when the connection is to be closed.
fn perform(action: Action, stream: i16, tx: &mpsc::UnboundedSender<Option<Vec<u8>>>) -> bool {
    {
        match action {
            Action::Reply(resp) => {
                let _ = tx.send(Some(response_frame(
                    stream,
                    &resp,
                    &ResponseExtras::default(),
                )));
            }
            Action::ReplyAfter(delay, resp) => {
                let tx = tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = tx.send(Some(response_frame(
                        stream,
                        &resp,
                        &ResponseExtras::default(),
                    )));
                });
            }
            Action::Ignore => {}
            Action::Raw(bytes) => {
                let _ = tx.send(Some(bytes));
            }
            Action::Close => {
                let _ = tx.send(None);
                return false;
            }
            Action::Many(actions) => {
                for action in actions {
                    if !perform(action, stream, tx) {
                        return false;
                    }
                }
            }
        }
    }
    true
}

/// The answers every test server gives unless told otherwise: SUPPORTED, READY, `USE`.
pub fn default_answer(request: &Request) -> Action {
    match request {
        Request::Options => {
            let mut map = HashMap::new();
            map.insert("CQL_VERSION".to_string(), vec!["3.4.5".to_string()]);
            map.insert("COMPRESSION".to_string(), vec![]);
            Action::Reply(Response::Supported(map))
        }
        Request::Startup(_) | Request::Register { .. } => Action::Reply(Response::Ready),
        Request::Query { query, .. } => {
            let q = query.trim().trim_end_matches(';');
            if let Some(ks) = q.strip_prefix("USE ").or_else(|| q.strip_prefix("use ")) {
                Action::Reply(Response::Result(ResultBody::SetKeyspace(
                    ks.trim().trim_matches('"').to_string(),
                )))
            } else {
                Action::Reply(Response::Result(ResultBody::Void))
            }
        }
        _ => Action::Reply(Response::Error(ErrorBody::protocol(
            "not supported by the fake server",
        ))),
    }
}

/// An ERROR response.
pub fn error(kind: ErrorKind, message: &str) -> Response {
    Response::Error(ErrorBody::new(kind, message))
}

/// The bytes of an EVENT frame (stream -1).
pub fn event_frame(event: Event) -> Vec<u8> {
    response_frame(-1, &Response::Event(event), &ResponseExtras::default())
}

/// A column of table `ks.t`.
pub fn column(name: &str, ty: CqlType) -> ColumnSpec {
    ColumnSpec {
        keyspace: "ks".into(),
        table: "t".into(),
        name: name.into(),
        ty,
    }
}

/// A ROWS result from typed cells.
pub fn rows(
    columns: Vec<ColumnSpec>,
    data: Vec<Vec<Option<CqlValue>>>,
    paging_state: Option<Bytes>,
) -> Response {
    let rows = data
        .into_iter()
        .map(|row| {
            row.into_iter()
                .map(|cell| cell.map(|v| Bytes::from(v.serialize())))
                .collect()
        })
        .collect();
    let mut metadata = ResultMetadata::new(columns);
    metadata.paging_state = paging_state;
    Response::Result(ResultBody::Rows(Rows { metadata, rows }))
}
