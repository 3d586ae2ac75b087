//! The admin API: JSON over plain HTTP/1.1 for the operator tools (`ringdb repair`, and later
//! drain, decommission, hints), in the spirit of the REST API ScyllaDB's nodetool talks to.
//!
//! It listens on `admin_address:admin_port` (default `127.0.0.1:7199`, Cassandra's JMX port;
//! port 0 disables it). There is no authentication: anyone who reaches the port can start a
//! repair, so it binds loopback unless told otherwise. If the port cannot be bound (another node
//! with the default settings on the same machine, say) the node logs an error and runs without
//! the API: serving data matters more. `GET /health` tells which node answers, so a tool never
//! acts on the wrong node unknowingly.
//!
//! # Routes
//!
//! | method | path | what |
//! |---|---|---|
//! | `GET` | `/` | the routes, as JSON |
//! | `GET` | `/health` | `{"status": "ok", "host_id", "cluster_name", "listen_address", "native_address", "dc", "rack", "release_version", "certificates"}`; `certificates` is what new handshakes present ([`ActiveCerts`]: `internode` and `client`, each with subject, issuer, serial, `sha256`, `not_before`, `not_after`), absent on a node without a transport |
//! | `POST` | `/reload-certs` | reads the internode and client TLS files again and swaps them in if **all** are valid ([`crate::cert_reload`]); 200 with the [`ActiveCerts`] now presented, 422 naming the file and the problem when one is not (nothing changed), 503 on a node without a transport |
//! | `POST` | `/repair?keyspace=KS&table=T&pr=true` | starts a repair session (all parameters optional; see [`crate::repair`]) and streams its progress as newline-delimited JSON (`application/x-ndjson`): one [`RepairReport`] per line, after every range and at least every [`PROGRESS_INTERVAL`]; the last line has `"finished": true` and is the summary |
//! | `GET` | `/repair` | the running session's latest report, or the last session's summary (404 before the first) |
//!
//! A repair session runs on even if the client that started it goes away; `GET /repair` follows
//! it. Errors are JSON `{"error": "...", "status": N}` with a 4xx status for a bad request
//! (400: bad parameter; 404: unknown route, keyspace or table; 405: wrong method, with `Allow`;
//! 409: a repair is already running) and 5xx when the node fails. Nothing a client sends can
//! panic the node: every input is parsed into a typed request or refused.
//!
//! # Adding a route
//!
//! Write a handler — `fn(Arc<AdminContext>, AdminRequest) -> BoxFuture<'static, Response<Body>>`
//! — that validates its query with [`Query::only`] and answers with [`json`], [`error`] or a
//! streamed body, and add one line to [`ROUTES`]. Whatever state it needs goes in
//! [`AdminContext`].
//!
//! # Bounds
//!
//! At most [`MAX_CONNECTIONS`] connections at once (further ones are closed at once); a request
//! head must arrive within [`HEADER_TIMEOUT`]; request bodies are never read; query strings
//! longer than [`MAX_QUERY_LEN`] are refused.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::cert_reload::{ActiveCerts, CertReloader};
use crate::decommission::{ChangeError, ChangeReport, RingChange};
use crate::repair::{RepairError, RepairOptions, RepairReport, RepairService};

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 64;

/// How long a client may take to send a request head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest query string accepted.
pub const MAX_QUERY_LEN: usize = 4096;

/// How often a repair progress stream repeats the latest report when nothing changed (so that
/// a client sees the node is alive during a long range).
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(2);

/// A response body: a whole JSON document or a stream of lines.
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// What a handler gets besides its context: the parsed request line.
#[derive(Debug, Clone)]
pub struct AdminRequest {
    /// The method.
    pub method: Method,
    /// The path, without the query.
    pub path: String,
    /// The query parameters, decoded.
    pub query: Query,
}

/// A route's handler.
pub type Handler = fn(Arc<AdminContext>, AdminRequest) -> BoxFuture<'static, Response<Body>>;

/// One route of the API.
pub struct Route {
    /// `GET`, `POST`, ...
    pub method: &'static str,
    /// The exact path.
    pub path: &'static str,
    /// Who answers.
    pub handler: Handler,
    /// One line for the index (`GET /`).
    pub about: &'static str,
}

/// Every route of the API: add a line to add one.
pub const ROUTES: &[Route] = &[
    Route {
        method: "GET",
        path: "/",
        handler: index,
        about: "this list",
    },
    Route {
        method: "GET",
        path: "/health",
        handler: health,
        about: "which node this is, and that it answers",
    },
    Route {
        method: "POST",
        path: "/repair",
        handler: repair_start,
        about: "start a repair (?keyspace=KS&table=T&pr=true, all optional); streams \
                newline-delimited JSON reports, the last one with \"finished\": true",
    },
    Route {
        method: "GET",
        path: "/repair",
        handler: repair_status,
        about: "the running repair's latest report, or the last repair's summary",
    },
    Route {
        method: "POST",
        path: "/decommission",
        handler: decommission,
        about: "stream this node's ranges to their new owners, hand over its hints, leave the \
                ring and stop; streams newline-delimited JSON reports, the last one with \
                \"finished\": true",
    },
    Route {
        method: "POST",
        path: "/drain",
        handler: drain,
        about:
            "stop this node gracefully, as SIGTERM does: announce SHUTDOWN to the cluster, stop \
                serving CQL, finish requests in flight, flush storage, exit",
    },
    Route {
        method: "POST",
        path: "/reload-certs",
        handler: reload_certs,
        about: "read the internode and client TLS files again and use them for new handshakes \
                if all are valid (nothing changes otherwise); answers the certificates now \
                presented, or why not",
    },
    Route {
        method: "POST",
        path: "/removenode",
        handler: removenode,
        about: "re-replicate the ranges of a dead node from the surviving replicas and take it \
                off the ring (?host_id=UUID); streams newline-delimited JSON reports like \
                /decommission",
    },
];

/// Who this node is, for `/health`.
#[derive(Debug, Clone, Serialize)]
pub struct NodeInfo {
    /// Host id.
    pub host_id: String,
    /// Cluster name.
    pub cluster_name: String,
    /// Internode address.
    pub listen_address: String,
    /// CQL address and port.
    pub native_address: String,
    /// Datacenter.
    pub dc: String,
    /// Rack.
    pub rack: String,
    /// The release version clients see.
    pub release_version: String,
}

/// What handlers can reach.
#[derive(Debug)]
pub struct AdminContext {
    /// This node.
    pub node: NodeInfo,
    /// Repair sessions.
    pub repair: Arc<RepairService>,
    /// Decommission and removenode (`None`: a node without gossip, which has no ring to
    /// change).
    pub ring: Option<Arc<RingChange>>,
    /// Certificate reloads (`None`: a node without a transport of its own).
    pub certs: Option<Arc<CertReloader>>,
}

/// Decoded query parameters, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query(Vec<(String, String)>);

impl Query {
    /// Parses `a=1&b=x%20y` (`+` is a space; a key without `=` has an empty value).
    pub fn parse(raw: &str) -> Result<Query, String> {
        if raw.len() > MAX_QUERY_LEN {
            return Err(format!("query string longer than {MAX_QUERY_LEN} bytes"));
        }
        let mut pairs = Vec::new();
        for part in raw.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            pairs.push((percent_decode(k)?, percent_decode(v)?));
        }
        Ok(Query(pairs))
    }

    /// Refuses parameters other than `allowed`, and any given twice.
    pub fn only(&self, allowed: &[&str]) -> Result<(), String> {
        for (i, (k, _)) in self.0.iter().enumerate() {
            if !allowed.contains(&k.as_str()) {
                return Err(if allowed.is_empty() {
                    format!("unknown parameter '{k}': this route takes none")
                } else {
                    format!("unknown parameter '{k}' (known: {})", allowed.join(", "))
                });
            }
            if self.0[..i].iter().any(|(other, _)| other == k) {
                return Err(format!("parameter '{k}' given twice"));
            }
        }
        Ok(())
    }

    /// The value of `key`, if given.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A boolean parameter: absent is false; `true`/`1`/`yes`/empty are true, `false`/`0`/`no`
    /// false.
    pub fn flag(&self, key: &str) -> Result<bool, String> {
        match self.get(key) {
            None => Ok(false),
            Some("" | "true" | "1" | "yes") => Ok(true),
            Some("false" | "0" | "no") => Ok(false),
            Some(other) => Err(format!(
                "parameter '{key}' must be true or false, got '{other}'"
            )),
        }
    }
}

/// Decodes `%XX` escapes and `+`; the result must be UTF-8.
fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("bad percent escape in '{s}'"))?;
                out.push(hex);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| format!("'{s}' is not UTF-8 once decoded"))
}

/// A JSON response.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(mut bytes) => {
            bytes.push(b'\n');
            respond(
                status,
                "application/json",
                Full::new(Bytes::from(bytes)).boxed_unsync(),
            )
        }
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot encode the answer: {e}"),
        ),
    }
}

/// A JSON error: `{"error": message, "status": code}`.
pub fn error(status: StatusCode, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "error": message, "status": status.as_u16() });
    let mut bytes = body.to_string().into_bytes();
    bytes.push(b'\n');
    respond(
        status,
        "application/json",
        Full::new(Bytes::from(bytes)).boxed_unsync(),
    )
}

fn respond(status: StatusCode, content_type: &'static str, body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Finds the route of a request and runs it; 404 or 405 when there is none.
pub async fn route(
    ctx: Arc<AdminContext>,
    method: Method,
    path: &str,
    query: Option<&str>,
) -> Response<Body> {
    let on_path: Vec<&Route> = ROUTES.iter().filter(|r| r.path == path).collect();
    let Some(found) = on_path.iter().find(|r| r.method == method.as_str()) else {
        if on_path.is_empty() {
            return error(
                StatusCode::NOT_FOUND,
                &format!("no route {path} (GET / lists them)"),
            );
        }
        let allow: Vec<&str> = on_path.iter().map(|r| r.method).collect();
        let mut response = error(
            StatusCode::METHOD_NOT_ALLOWED,
            &format!("{path} takes {}, not {method}", allow.join(", ")),
        );
        if let Ok(value) = HeaderValue::from_str(&allow.join(", ")) {
            response.headers_mut().insert(ALLOW, value);
        }
        return response;
    };
    let query = match Query::parse(query.unwrap_or("")) {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    let request = AdminRequest {
        method,
        path: path.to_string(),
        query,
    };
    (found.handler)(ctx, request).await
}

fn index(_: Arc<AdminContext>, request: AdminRequest) -> BoxFuture<'static, Response<Body>> {
    Box::pin(async move {
        if let Err(e) = request.query.only(&[]) {
            return error(StatusCode::BAD_REQUEST, &e);
        }
        let routes: Vec<serde_json::Value> = ROUTES
            .iter()
            .map(|r| serde_json::json!({ "method": r.method, "path": r.path, "about": r.about }))
            .collect();
        json(StatusCode::OK, &serde_json::json!({ "routes": routes }))
    })
}

fn health(ctx: Arc<AdminContext>, request: AdminRequest) -> BoxFuture<'static, Response<Body>> {
    Box::pin(async move {
        if let Err(e) = request.query.only(&[]) {
            return error(StatusCode::BAD_REQUEST, &e);
        }
        let mut value = serde_json::to_value(&ctx.node).unwrap_or_default();
        if let Some(map) = value.as_object_mut() {
            map.insert("status".into(), "ok".into());
            if let Some(certs) = &ctx.certs {
                let active: ActiveCerts = certs.active();
                map.insert(
                    "certificates".into(),
                    serde_json::to_value(active).unwrap_or_default(),
                );
            }
        }
        json(StatusCode::OK, &value)
    })
}

fn reload_certs(
    ctx: Arc<AdminContext>,
    request: AdminRequest,
) -> BoxFuture<'static, Response<Body>> {
    Box::pin(async move {
        if let Err(e) = request.query.only(&[]) {
            return error(StatusCode::BAD_REQUEST, &e);
        }
        let Some(certs) = &ctx.certs else {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "this node has no internode transport of its own to reload certificates for",
            );
        };
        match certs.reload_async().await {
            Ok(active) => json(StatusCode::OK, &active),
            // The files are at fault, not the request nor the node: nothing changed.
            Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string()),
        }
    })
}

fn decommission(
    ctx: Arc<AdminContext>,
    request: AdminRequest,
) -> BoxFuture<'static, Response<Body>> {
    Box::pin(async move {
        if let Err(e) = request.query.only(&[]) {
            return error(StatusCode::BAD_REQUEST, &e);
        }
        let Some(ring) = &ctx.ring else {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "this node is not part of a cluster it could leave",
            );
        };
        change_response(ring.start_decommission())
    })
}

fn drain(ctx: Arc<AdminContext>, request: AdminRequest) -> BoxFuture<'static, Response<Body>> {
    Box::pin(async move {
        if let Err(e) = request.query.only(&[]) {
            return error(StatusCode::BAD_REQUEST, &e);
        }
        let Some(ring) = &ctx.ring else {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "this node runs in-process; stop it with its owner",
            );
        };
        match ring.drain() {
            Ok(()) => json(
                StatusCode::ACCEPTED,
                &serde_json::json!({"draining": true, "host_id": ctx.node.host_id}),
            ),
            Err(e) => error(StatusCode::CONFLICT, &e.to_string()),
        }
    })
}

fn removenode(ctx: Arc<AdminContext>, request: AdminRequest) -> BoxFuture<'static, Response<Body>> {
    Box::pin(async move {
        if let Err(e) = request.query.only(&["host_id"]) {
            return error(StatusCode::BAD_REQUEST, &e);
        }
        let Some(target) = request.query.get("host_id") else {
            return error(
                StatusCode::BAD_REQUEST,
                "host_id=UUID names the dead node to remove",
            );
        };
        let Some(ring) = &ctx.ring else {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "this node is not part of a cluster: it has no ring to remove a node from",
            );
        };
        change_response(ring.start_removenode(target))
    })
}

/// The answer to a ring change: its reports as they come, or why it did not start.
fn change_response(started: Result<watch::Receiver<ChangeReport>, ChangeError>) -> Response<Body> {
    match started {
        Ok(reports) => {
            let body = StreamBody::new(progress_lines(reports)).boxed_unsync();
            respond(StatusCode::OK, "application/x-ndjson", body)
        }
        Err(e) => {
            let status = match &e {
                ChangeError::Busy(_) => StatusCode::CONFLICT,
                ChangeError::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            };
            error(status, &e.to_string())
        }
    }
}

fn repair_status(
    ctx: Arc<AdminContext>,
    request: AdminRequest,
) -> BoxFuture<'static, Response<Body>> {
    Box::pin(async move {
        if let Err(e) = request.query.only(&[]) {
            return error(StatusCode::BAD_REQUEST, &e);
        }
        match ctx.repair.current() {
            Some(report) => json(StatusCode::OK, &report),
            None => error(
                StatusCode::NOT_FOUND,
                "no repair has run on this node since it started",
            ),
        }
    })
}

fn repair_start(
    ctx: Arc<AdminContext>,
    request: AdminRequest,
) -> BoxFuture<'static, Response<Body>> {
    Box::pin(async move {
        let q = &request.query;
        let options = q.only(&["keyspace", "table", "pr"]).and_then(|()| {
            Ok(RepairOptions {
                keyspace: q.get("keyspace").map(str::to_string),
                table: q.get("table").map(str::to_string),
                primary_range_only: q.flag("pr")?,
            })
        });
        let options = match options {
            Ok(o) => o,
            Err(e) => return error(StatusCode::BAD_REQUEST, &e),
        };
        match ctx.repair.start(options) {
            Ok(reports) => {
                let body = StreamBody::new(progress_lines(reports)).boxed_unsync();
                respond(StatusCode::OK, "application/x-ndjson", body)
            }
            Err(e) => {
                let status = match &e {
                    RepairError::Busy { .. } => StatusCode::CONFLICT,
                    RepairError::UnknownKeyspace(_) | RepairError::UnknownTable { .. } => {
                        StatusCode::NOT_FOUND
                    }
                    RepairError::Invalid(_) => StatusCode::BAD_REQUEST,
                    RepairError::NotInRing => StatusCode::SERVICE_UNAVAILABLE,
                };
                error(status, &e.to_string())
            }
        }
    })
}

/// A report that says when the work it follows is over.
pub trait Finished: Serialize + Clone + Send + Sync + 'static {
    /// Whether this is the last report.
    fn finished(&self) -> bool;
}

impl Finished for RepairReport {
    fn finished(&self) -> bool {
        self.finished
    }
}

impl Finished for ChangeReport {
    fn finished(&self) -> bool {
        self.finished
    }
}

/// The reports of a session as JSON lines: the current one at once, then one per change (or
/// every [`PROGRESS_INTERVAL`]), ending after the finished one.
fn progress_lines<R: Finished>(
    reports: watch::Receiver<R>,
) -> impl futures::Stream<Item = Result<Frame<Bytes>, Infallible>> + Send + 'static {
    futures::stream::unfold(
        (reports, true, false),
        |(mut reports, first, done)| async move {
            if done {
                return None;
            }
            if !first {
                // A closed channel (the session is over) shows its final report below.
                let _ = tokio::time::timeout(PROGRESS_INTERVAL, reports.changed()).await;
            }
            let report = reports.borrow_and_update().clone();
            let mut line = serde_json::to_vec(&report).unwrap_or_else(|e| {
                serde_json::json!({ "error": format!("cannot encode the report: {e}") })
                    .to_string()
                    .into_bytes()
            });
            line.push(b'\n');
            // A closed channel with an unfinished report cannot happen (the session marks its
            // report finished however it ends), but must not make the stream spin.
            let finished = report.finished() || reports.has_changed().is_err();
            Some((
                Ok(Frame::data(Bytes::from(line))),
                (reports, false, finished),
            ))
        },
    )
}

/// Starts the admin API of a node as `config` says, returning its task; `None` when
/// `admin_port` is 0 or the address cannot be bound (logged: the node runs on without it).
pub async fn start(
    config: &crate::config::Config,
    host_id: uuid::Uuid,
    native_address: SocketAddr,
    repair: Arc<RepairService>,
    ring: Arc<RingChange>,
    certs: Arc<CertReloader>,
    shutdown: &watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    if config.admin_port == 0 {
        tracing::info!("admin API disabled (admin_port: 0)");
        return None;
    }
    let addr = SocketAddr::new(config.admin_address, config.admin_port);
    let listener = match TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(
                %addr,
                error = %e,
                "admin API not started: cannot bind its address (set admin_address/admin_port \
                 apart for each node on one machine); `ringdb repair` cannot reach this node"
            );
            return None;
        }
    };
    let ctx = Arc::new(AdminContext {
        node: NodeInfo {
            host_id: host_id.to_string(),
            cluster_name: config.cluster_name.clone(),
            listen_address: config.listen_address.to_string(),
            native_address: native_address.to_string(),
            dc: config.dc.clone(),
            rack: config.rack.clone(),
            release_version: crate::server::RELEASE_VERSION.to_string(),
        },
        repair,
        ring: Some(ring),
        certs: Some(certs),
    });
    tracing::info!(%addr, "admin API at http://{addr}/");
    Some(tokio::spawn(serve(listener, ctx, shutdown.clone())))
}

/// Serves the admin API on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    ctx: Arc<AdminContext>,
    mut shutdown: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "admin API: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = crate::server::stopping(&mut shutdown) => return,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "admin API: too many connections, closing one");
            continue;
        };
        let ctx = ctx.clone();
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let ctx = ctx.clone();
                async move {
                    let method = req.method().clone();
                    let path = req.uri().path().to_string();
                    let query = req.uri().query().map(str::to_string);
                    tracing::debug!(%peer, %method, %path, "admin request");
                    Ok::<_, Infallible>(route(ctx, method, &path, query.as_deref()).await)
                }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                result = connection => {
                    if let Err(e) = result {
                        tracing::debug!(%peer, error = %e, "admin connection ended");
                    }
                }
                _ = crate::server::stopping(&mut shutdown) => {}
            }
            drop(permit);
        });
    }
}

/// Client side, for the `ringdb` tools.
pub mod client {
    use std::net::SocketAddr;

    use anyhow::{anyhow, bail, Context};
    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty};
    use hyper::body::Incoming;
    use hyper::{Method, Request, Response, StatusCode};
    use hyper_util::rt::TokioIo;

    /// The admin port when a target names none.
    pub const DEFAULT_PORT: u16 = 7199;

    /// Resolves `HOST[:PORT]` (`[v6]:PORT` or a bare IPv6 address too); the port defaults to
    /// [`DEFAULT_PORT`].
    pub async fn resolve(target: &str) -> anyhow::Result<SocketAddr> {
        let t = target.trim();
        if let Ok(addr) = t.parse::<SocketAddr>() {
            return Ok(addr);
        }
        if let Ok(ip) = t.parse::<std::net::IpAddr>() {
            return Ok(SocketAddr::new(ip, DEFAULT_PORT));
        }
        let (host, port) = match t.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .map_err(|_| anyhow!("bad port in `{t}` (HOST[:PORT])"))?,
            ),
            None => (t, DEFAULT_PORT),
        };
        if host.is_empty() {
            bail!("`{t}` is not HOST[:PORT]");
        }
        tokio::net::lookup_host((host, port))
            .await
            .with_context(|| format!("resolving {host}"))?
            .next()
            .ok_or_else(|| anyhow!("{host} has no address"))
    }

    /// Sends one request (no body) and returns the response once its head arrived; the body
    /// streams. A non-2xx status is an error carrying the API's message.
    pub async fn request(
        addr: SocketAddr,
        method: Method,
        path_and_query: &str,
    ) -> anyhow::Result<Response<Incoming>> {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| {
                format!("connecting to the admin API at {addr} (is the node running, with admin_port set?)")
            })?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .with_context(|| format!("HTTP handshake with {addr}"))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "admin client connection ended");
            }
        });
        let request = Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(hyper::header::HOST, addr.to_string())
            .body(Empty::<Bytes>::new())
            .context("building the request")?;
        let response = sender
            .send_request(request)
            .await
            .with_context(|| format!("sending the request to {addr}"))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.into_body().collect().await.map(|b| b.to_bytes());
        let message = body
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_string());
        Err(anyhow!(ApiError { status, message }))
    }

    /// A refusal from the API: its status and message.
    #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
    #[error("{message} (HTTP {status})")]
    pub struct ApiError {
        /// The HTTP status.
        pub status: StatusCode,
        /// The API's message.
        pub message: String,
    }

    /// `GET path` and its JSON answer.
    pub async fn get_json(addr: SocketAddr, path: &str) -> anyhow::Result<serde_json::Value> {
        json_request(addr, Method::GET, path).await
    }

    /// `METHOD path` (no body) and its JSON answer.
    pub async fn json_request(
        addr: SocketAddr,
        method: Method,
        path: &str,
    ) -> anyhow::Result<serde_json::Value> {
        let response = request(addr, method, path).await?;
        let body = response
            .into_body()
            .collect()
            .await
            .context("reading the answer")?
            .to_bytes();
        serde_json::from_slice(&body).context("the answer is not JSON")
    }

    /// Reads a newline-delimited body one line at a time.
    pub struct Lines {
        body: Incoming,
        buffer: Vec<u8>,
        done: bool,
    }

    /// Longest line accepted from the API.
    const MAX_LINE: usize = 16 << 20;

    impl Lines {
        /// The lines of a response body.
        pub fn new(response: Response<Incoming>) -> Lines {
            Lines {
                body: response.into_body(),
                buffer: Vec::new(),
                done: false,
            }
        }

        /// The next line (without its newline), or `None` at the end of the body.
        pub async fn next_line(&mut self) -> anyhow::Result<Option<String>> {
            loop {
                if let Some(i) = self.buffer.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = self.buffer.drain(..=i).collect();
                    return Ok(Some(String::from_utf8_lossy(&line[..i]).into_owned()));
                }
                if self.done {
                    if self.buffer.is_empty() {
                        return Ok(None);
                    }
                    let rest = std::mem::take(&mut self.buffer);
                    return Ok(Some(String::from_utf8_lossy(&rest).into_owned()));
                }
                match self.body.frame().await {
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            self.buffer.extend_from_slice(&data);
                            if self.buffer.len() > MAX_LINE {
                                bail!("a line of the answer is longer than {MAX_LINE} bytes");
                            }
                        }
                    }
                    Some(Err(e)) => return Err(anyhow!(e).context("reading the answer")),
                    None => self.done = true,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_decode_and_validate() {
        let q = Query::parse("keyspace=my%20ks&table=t+1&pr").unwrap();
        assert_eq!(q.get("keyspace"), Some("my ks"));
        assert_eq!(q.get("table"), Some("t 1"));
        assert_eq!(q.flag("pr"), Ok(true));
        assert_eq!(q.flag("nope"), Ok(false));
        assert!(q.only(&["keyspace", "table", "pr"]).is_ok());
        assert!(q.only(&["keyspace"]).unwrap_err().contains("'table'"));
        assert!(Query::parse("a=%zz").is_err());
        assert!(Query::parse("a=%4").is_err());
        assert!(Query::parse("a=%ff").is_err(), "not UTF-8");
        assert!(Query::parse(&"a".repeat(MAX_QUERY_LEN + 1)).is_err());
        let twice = Query::parse("pr=1&pr=0").unwrap();
        assert!(twice.only(&["pr"]).unwrap_err().contains("twice"));
        assert!(Query::parse("pr=maybe").unwrap().flag("pr").is_err());
        assert_eq!(Query::parse("").unwrap(), Query::default());
    }

    /// The API of node 0 of an in-process cluster with table `ks.t` (RF 2), on a free port.
    async fn serve_test_api() -> (
        crate::coordinator::testing::TestCluster,
        SocketAddr,
        watch::Sender<bool>,
    ) {
        let cluster =
            crate::coordinator::testing::TestCluster::start(&["r1", "r1"], Duration::from_secs(5))
                .await;
        cluster.create_table(2, "CREATE TABLE t (k int PRIMARY KEY, v text)");
        let (stop, stop_rx) = watch::channel(false);
        let node = &cluster.nodes[0];
        let repair = RepairService::new(
            node.coordinator.clone(),
            node.schema.clone(),
            stop_rx.clone(),
        );
        let ctx = Arc::new(AdminContext {
            node: NodeInfo {
                host_id: node.host.to_string(),
                cluster_name: "test".into(),
                listen_address: node.addr.ip().to_string(),
                native_address: "127.0.0.1:9042".into(),
                dc: "dc1".into(),
                rack: "r1".into(),
                release_version: crate::server::RELEASE_VERSION.into(),
            },
            repair,
            ring: None,
            certs: None,
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(serve(listener, ctx, stop_rx));
        (cluster, addr, stop)
    }

    async fn status_of(addr: SocketAddr, method: Method, path: &str) -> (u16, String) {
        match client::request(addr, method, path).await {
            Ok(response) => (response.status().as_u16(), String::new()),
            Err(e) => {
                let api = e.downcast::<client::ApiError>().expect("an API error");
                (api.status.as_u16(), api.message)
            }
        }
    }

    #[tokio::test]
    async fn the_api_answers_and_refuses_with_json() {
        let (cluster, addr, _stop) = serve_test_api().await;
        let health = client::get_json(addr, "/health").await.expect("health");
        assert_eq!(health["status"], "ok");
        assert_eq!(health["host_id"], cluster.nodes[0].host.to_string());
        let index = client::get_json(addr, "/").await.expect("index");
        assert_eq!(index["routes"].as_array().map(Vec::len), Some(ROUTES.len()));

        for (method, path, want, says) in [
            (Method::GET, "/nope", 404, "no route"),
            (Method::DELETE, "/repair", 405, "takes POST, GET"),
            (Method::POST, "/health", 405, "takes GET"),
            (Method::GET, "/health?x=1", 400, "unknown parameter"),
            (
                Method::POST,
                "/repair?bogus=1",
                400,
                "unknown parameter 'bogus'",
            ),
            (Method::POST, "/repair?pr=perhaps", 400, "true or false"),
            (Method::POST, "/repair?keyspace=%zz", 400, "percent"),
            (Method::POST, "/repair?keyspace=nope", 404, "does not exist"),
            (
                Method::POST,
                "/repair?keyspace=ks&table=nope",
                404,
                "does not exist",
            ),
            (Method::POST, "/repair?table=t", 400, "needs its keyspace"),
            (
                Method::POST,
                "/repair?keyspace=system",
                400,
                "system keyspace",
            ),
            (Method::GET, "/repair", 404, "no repair"),
        ] {
            let (status, message) = status_of(addr, method.clone(), path).await;
            assert_eq!(status, want, "{method} {path}: {message}");
            assert!(message.contains(says), "{method} {path}: {message}");
        }

        // Garbage instead of HTTP: that connection is dropped, the API goes on.
        {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut raw = tokio::net::TcpStream::connect(addr).await.expect("connect");
            raw.write_all(b"\x00\xff garbage\r\n\r\n")
                .await
                .expect("write");
            let mut answer = Vec::new();
            let _ =
                tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut answer)).await;
            assert!(answer.is_empty() || answer.starts_with(b"HTTP/1.1 4"));
        }

        let response = client::request(addr, Method::POST, "/repair?keyspace=ks&pr")
            .await
            .expect("repair starts");
        assert_eq!(
            response.headers().get(CONTENT_TYPE).map(|v| v.as_bytes()),
            Some(&b"application/x-ndjson"[..])
        );
        let mut lines = client::Lines::new(response);
        let mut last = None;
        while let Some(line) = lines.next_line().await.expect("line") {
            let report: RepairReport = serde_json::from_str(&line).expect("a report per line");
            last = Some(report);
        }
        let last = last.expect("at least one report");
        assert!(last.finished && last.succeeded(), "{last:?}");
        assert!(last.primary_range_only);
        assert_eq!(last.ranges_total, 1);
        let status = client::get_json(addr, "/repair").await.expect("status");
        assert_eq!(status["id"], last.id.to_string());
        assert_eq!(status["finished"], true);
    }

    #[test]
    fn every_route_is_unique() {
        for (i, a) in ROUTES.iter().enumerate() {
            for b in &ROUTES[i + 1..] {
                assert!(
                    (a.method, a.path) != (b.method, b.path),
                    "{} {}",
                    a.method,
                    a.path
                );
            }
        }
    }
}
