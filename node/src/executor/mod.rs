//! The executor: runs CQL statements against the schema and the data path.
//!
//! The CQL server hands the executor a statement — text for QUERY, an id for EXECUTE, a list for
//! BATCH — with its bound values and options, and gets back a [`QueryResult`] or an
//! [`ExecError`], which it maps to protocol messages. Everything between lives here:
//!
//! - parsing (`ringdb_cql::parser`) and name resolution against the current [`Schema`]
//!   snapshot, taken once per statement so a concurrent DDL never changes it midway;
//! - DDL through the [`SchemaStore`] (`ddl` in the schema module holds the rules);
//! - writes ([`write`]): statements become [`Mutation`](crate::storage::Mutation)s stamped by the
//!   hybrid logical clock, merged per partition, handed to the data path;
//! - reads ([`select`]): WHERE analysis ([`restrictions`]), bounded chunked reads, filtering,
//!   limits and paging ([`paging`]); rows are decoded by [`rows`] and projected by
//!   [`selection`];
//! - system tables ([`system_views`]) computed from node state and schema, and DESCRIBE
//!   ([`describe`]);
//! - prepared statements ([`prepared`]): bind variable metadata and a bounded LRU cache.
//!
//! All data access goes through one narrow interface, [`DataPath`]: today the local engine, next
//! a coordinator that talks to replicas. Nothing else in the executor touches the engine.
//!
//! Input from the network — statement text, bound values, paging states — is never trusted: every
//! malformed piece is an `Invalid`, `Syntax` or `Protocol` error, never a panic.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};

use ringdb_cql::ast::{self, QualifiedName, Statement};
use ringdb_cql::types::CqlType;

use crate::clock::HybridClock;
use crate::commitlog::CommitSync;
use crate::schema::store::SchemaEdit;
use crate::schema::{ddl, is_system_keyspace, Schema, SchemaStore, TableDef};
use crate::storage::Engine;

pub mod datapath;
pub mod describe;
mod error;
pub(crate) mod keys;
mod paging;
pub mod prepared;
mod restrictions;
mod rows;
mod select;
mod selection;
mod system_views;
mod values;
mod write;

pub use ast::BatchKind;
pub use datapath::{DataPath, LocalDataPath, WriteKind, WriteRequest};
pub use error::ExecError;

use error::invalid;
use values::{Bindings, EvalCtx};

/// The CQL version reported to clients.
pub const CQL_VERSION: &str = "3.4.6";
/// The Cassandra release ringdb reports being compatible with (drivers choose their schema
/// queries by it).
pub const RELEASE_VERSION: &str = "4.1.0";
/// The partitioner reported to clients.
pub const PARTITIONER: &str = "org.apache.cassandra.dht.Murmur3Partitioner";
/// Protocol code of consistency level ONE.
pub const CONSISTENCY_ONE: u16 = 0x0001;

/// Per-connection state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Session {
    /// The keyspace set by `USE`, used for unqualified table names.
    pub keyspace: Option<String>,
    /// The role the connection logged in as (`authenticator: password`); `None` without
    /// authentication.
    pub user: Option<String>,
}

/// A value bound to a marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BoundValue {
    Null,
    /// Protocol v4 "unset": leave the column alone.
    Unset,
    /// Serialized value (native protocol form).
    Bytes(Vec<u8>),
}

/// Options of a QUERY, EXECUTE or BATCH.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryOptions {
    /// Values for the statement's markers.
    pub values: Vec<BoundValue>,
    /// Names of `values` when sent by name (protocol flag 0x40).
    pub names: Option<Vec<String>>,
    /// Rows per page; `None` or non-positive: no paging.
    pub page_size: Option<i32>,
    /// Where to resume, from a previous result.
    pub paging_state: Option<Vec<u8>>,
    /// The client's default timestamp (microseconds) for writes without USING TIMESTAMP.
    pub timestamp: Option<i64>,
    /// Protocol consistency code.
    pub consistency: u16,
}

impl Default for QueryOptions {
    fn default() -> Self {
        QueryOptions {
            values: Vec::new(),
            names: None,
            page_size: None,
            paging_state: None,
            timestamp: None,
            consistency: CONSISTENCY_ONE,
        }
    }
}

/// A column of a result or a bind variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnSpec {
    /// Keyspace of the table the column belongs to (empty for computed results).
    pub keyspace: String,
    /// Table the column belongs to (empty for computed results).
    pub table: String,
    /// Column name as the client sees it (alias, `writetime(v)`, `[limit]`, ...).
    pub name: String,
    /// The wire type (no `frozen<>`).
    pub ty: CqlType,
}

/// What changed in a SCHEMA_CHANGE result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaChangeKind {
    Created,
    Updated,
    Dropped,
}

/// What kind of object changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaChangeTarget {
    Keyspace,
    Table,
}

/// A SCHEMA_CHANGE result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaChangeInfo {
    /// Created, updated or dropped.
    pub change: SchemaChangeKind,
    /// A keyspace or a table.
    pub target: SchemaChangeTarget,
    /// The keyspace changed, or holding the table changed.
    pub keyspace: String,
    /// The table, for a table change.
    pub name: Option<String>,
}

/// The result of a statement.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryResult {
    Void,
    Rows {
        columns: Vec<ColumnSpec>,
        /// One entry per column per row; `None` is null.
        rows: Vec<Vec<Option<Vec<u8>>>>,
        /// Present when more rows may follow.
        paging_state: Option<Vec<u8>>,
    },
    SetKeyspace(String),
    SchemaChange(SchemaChangeInfo),
}

/// A prepared statement.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// 16 bytes.
    pub id: Vec<u8>,
    /// The bind variables, in marker order.
    pub variables: Vec<ColumnSpec>,
    /// For each partition key column, the variable binding it (empty unless all are bound).
    pub pk_indices: Vec<u16>,
    /// Result columns of a SELECT (empty otherwise).
    pub result_columns: Vec<ColumnSpec>,
    /// The session keyspace at prepare time; unqualified names resolve in it.
    pub keyspace: Option<String>,
    /// The statement text.
    pub query: String,
    pub(crate) statement: Statement,
}

/// One statement of a BATCH message.
#[derive(Debug, Clone, PartialEq)]
pub enum BatchItem {
    /// Query text and its positional values.
    Query(String, Vec<BoundValue>),
    /// Prepared id and its values.
    Prepared(Vec<u8>, Vec<BoundValue>),
}

/// What `system.local` says about this node.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalNodeInfo {
    /// `cluster_name`, also shown by DESCRIBE CLUSTER.
    pub cluster_name: String,
    /// The node's permanent id.
    pub host_id: uuid::Uuid,
    /// Internode address (`listen_address`, `broadcast_address`).
    pub listen_address: IpAddr,
    /// Internode port (`listen_port`, `storage_port`).
    pub listen_port: u16,
    /// CQL address (`rpc_address`).
    pub rpc_address: IpAddr,
    /// CQL port (`rpc_port`).
    pub rpc_port: u16,
    /// Datacenter (`data_center`).
    pub dc: String,
    /// Rack.
    pub rack: String,
    /// The node's vnode tokens.
    pub tokens: Vec<i64>,
    /// Cassandra-compatible release (drivers choose schema queries by it), e.g. `4.1.0`.
    pub release_version: String,
    /// Partitioner class name.
    pub partitioner: String,
}

#[cfg(test)]
impl LocalNodeInfo {
    /// A single node on loopback with a fresh host id, for unit tests.
    pub(crate) fn for_tests() -> LocalNodeInfo {
        LocalNodeInfo {
            cluster_name: "Test Cluster".into(),
            host_id: uuid::Uuid::new_v4(),
            listen_address: std::net::Ipv4Addr::LOCALHOST.into(),
            listen_port: 7000,
            rpc_address: std::net::Ipv4Addr::LOCALHOST.into(),
            rpc_port: 9042,
            dc: "datacenter1".into(),
            rack: "rack1".into(),
            tokens: vec![0],
            release_version: "4.1.0".into(),
            partitioner: "org.apache.cassandra.dht.Murmur3Partitioner".into(),
        }
    }
}

/// What `system.peers` says about another node.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerInfo {
    /// Its internode (listen) address.
    pub peer: IpAddr,
    /// Its internode port.
    pub peer_port: u16,
    /// Its CQL address.
    pub rpc_address: IpAddr,
    /// Its CQL port.
    pub rpc_port: u16,
    /// Its permanent id.
    pub host_id: uuid::Uuid,
    /// Its datacenter.
    pub dc: String,
    /// Its rack.
    pub rack: String,
    /// Its vnode tokens (a peer with none is ignored by drivers).
    pub tokens: Vec<i64>,
    /// Its release version.
    pub release_version: String,
    /// Its schema version, if known.
    pub schema_version: Option<uuid::Uuid>,
}

/// What `system_views.cluster_status` says about one node (the local one included): its gossip
/// state and whether this node's failure detector holds it up.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointStatus {
    /// Its internode address.
    pub peer: IpAddr,
    /// Its internode port.
    pub storage_port: u16,
    /// Its permanent id, once known.
    pub host_id: Option<uuid::Uuid>,
    /// Its datacenter, once known.
    pub dc: Option<String>,
    /// Its rack, once known.
    pub rack: Option<String>,
    /// Gossip status: `BOOT`, `JOINING`, `NORMAL`, `LEAVING`, `LEFT`, `SHUTDOWN` or `UNKNOWN`.
    pub status: String,
    /// Whether the failure detector holds it alive.
    pub up: bool,
    /// Bytes on disk it reported.
    pub load: Option<i64>,
    /// Its vnode tokens.
    pub tokens: Vec<i64>,
    /// Its gossip generation (rises on every restart).
    pub generation: i64,
    /// Its latest heartbeat version.
    pub heartbeat: i64,
    /// Its schema version, once known.
    pub schema_version: Option<uuid::Uuid>,
    /// Its CQL address, once known.
    pub native_address: Option<std::net::SocketAddr>,
    /// Its release version, once known.
    pub release_version: Option<String>,
    /// True for the node answering the query.
    pub local: bool,
    /// Hints the answering node holds for it (writes it missed, to replay when it is up).
    pub pending_hints: i64,
}

/// The cluster as this node sees it, for the system views.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterInfo {
    /// Rows of `system.peers` / `peers_v2`: the other nodes that have joined the ring.
    pub peers: Vec<PeerInfo>,
    /// Rows of `system_views.cluster_status`: every known node, this one included.
    pub endpoints: Vec<EndpointStatus>,
    /// This node's gossip generation, once gossip runs.
    pub local_generation: Option<i64>,
}

type ClusterInfoFn = Arc<dyn Fn() -> ClusterInfo + Send + Sync>;

/// Spreads a local schema change to the other nodes (see [`Executor::set_schema_announcer`]).
type SchemaAnnouncerFn = Arc<dyn Fn() -> futures::future::BoxFuture<'static, ()> + Send + Sync>;

/// Runs statements. Cheap to clone; share one per node.
#[derive(Clone)]
pub struct Executor {
    inner: Arc<Inner>,
}

struct Inner {
    data: Arc<dyn DataPath>,
    schema: Arc<SchemaStore>,
    clock: Arc<HybridClock>,
    node: LocalNodeInfo,
    /// Node part of timeuuids and list element paths.
    uuid_node: [u8; 6],
    gossip_generation: i32,
    cluster: RwLock<ClusterInfoFn>,
    schema_announcer: RwLock<SchemaAnnouncerFn>,
    prepared: Mutex<prepared::PreparedCache>,
    /// Authentication and authorization, when `authenticator: password`.
    auth: std::sync::OnceLock<Arc<crate::auth::Auth>>,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("node", &self.inner.node.host_id)
            .finish()
    }
}

fn parse(text: &str) -> Result<Statement, ExecError> {
    ringdb_cql::parser::parse_statement(text).map_err(|e| ExecError::Syntax(e.to_string()))
}

fn names_map(opts: &QueryOptions) -> Option<HashMap<String, usize>> {
    opts.names
        .as_ref()
        .map(|n| n.iter().enumerate().map(|(i, s)| (s.clone(), i)).collect())
}

impl Executor {
    /// An executor over the local engine, with the system clock.
    pub fn new(
        engine: Arc<dyn Engine>,
        commit: Arc<CommitSync>,
        schema: Arc<SchemaStore>,
        node: LocalNodeInfo,
    ) -> Executor {
        Executor::with_clock(engine, commit, schema, node, HybridClock::system())
    }

    /// An executor over the local engine with a given clock (tests inject a manual one).
    pub fn with_clock(
        engine: Arc<dyn Engine>,
        commit: Arc<CommitSync>,
        schema: Arc<SchemaStore>,
        node: LocalNodeInfo,
        clock: Arc<HybridClock>,
    ) -> Executor {
        Executor::with_data_path(
            Arc::new(LocalDataPath::new(engine, commit)),
            schema,
            node,
            clock,
        )
    }

    /// An executor over any data path (the cluster coordinator, later).
    pub fn with_data_path(
        data: Arc<dyn DataPath>,
        schema: Arc<SchemaStore>,
        node: LocalNodeInfo,
        clock: Arc<HybridClock>,
    ) -> Executor {
        let h = node.host_id.as_bytes();
        let uuid_node = [h[10], h[11], h[12], h[13], h[14], h[15]];
        let gossip_generation = clock.wall_seconds().clamp(0, i32::MAX as i64) as i32;
        let empty: ClusterInfoFn = Arc::new(ClusterInfo::default);
        let no_announcer: SchemaAnnouncerFn = Arc::new(|| Box::pin(async {}));
        Executor {
            inner: Arc::new(Inner {
                data,
                schema,
                clock,
                node,
                uuid_node,
                gossip_generation,
                cluster: RwLock::new(empty),
                schema_announcer: RwLock::new(no_announcer),
                prepared: Mutex::new(prepared::PreparedCache::new(
                    prepared::PREPARED_CACHE_CAPACITY,
                )),
                auth: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Sets where `system.peers` and `system_views.cluster_status` take their rows from (called
    /// on every read of them).
    pub fn set_cluster_info(&self, info: impl Fn() -> ClusterInfo + Send + Sync + 'static) {
        let mut slot = self
            .inner
            .cluster
            .write()
            .unwrap_or_else(|e| e.into_inner());
        *slot = Arc::new(info);
    }

    /// Sets what runs at the end of every DDL that changed the schema, before the client gets
    /// its answer: the cluster pushes the new schema to the live nodes with it
    /// ([`crate::schema::sync::announce`]), so that the DDL is visible cluster-wide when the
    /// client proceeds. It should not fail nor take long (its own timeout); the default does
    /// nothing.
    pub fn set_schema_announcer(
        &self,
        f: impl Fn() -> futures::future::BoxFuture<'static, ()> + Send + Sync + 'static,
    ) {
        let mut slot = self
            .inner
            .schema_announcer
            .write()
            .unwrap_or_else(|e| e.into_inner());
        *slot = Arc::new(f);
    }

    /// Runs the schema announcer (see [`Executor::set_schema_announcer`]).
    async fn announce_schema(&self) {
        let announcer = self
            .inner
            .schema_announcer
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        announcer().await;
    }

    /// Turns authorization on: from now on every statement is checked against the session's
    /// role (see [`crate::auth`]). Set once, at start; later calls are ignored.
    pub fn enable_auth(&self, auth: Arc<crate::auth::Auth>) {
        let _ = self.inner.auth.set(auth);
    }

    /// Authentication and authorization, if enabled.
    pub fn auth(&self) -> Option<&Arc<crate::auth::Auth>> {
        self.inner.auth.get()
    }

    /// Runs a statement for the node itself (role management reads and writes `system_auth`
    /// with it): no permission checks, and writes to `system_auth` allowed.
    pub(crate) async fn run_internal(
        &self,
        text: &str,
        values: &[ringdb_cql::types::CqlValue],
        consistency: u16,
    ) -> Result<QueryResult, ExecError> {
        let stmt = parse(text)?;
        let values: Vec<BoundValue> = values
            .iter()
            .map(|v| BoundValue::Bytes(v.serialize()))
            .collect();
        let bindings = Bindings::positional(&values, stmt.bind_marker_count())?;
        let opts = QueryOptions {
            consistency,
            ..QueryOptions::default()
        };
        let mut session = Session::default();
        // Boxed: role statements run internal statements, which could be role statements.
        Box::pin(self.run_statement(&mut session, &stmt, None, bindings, &opts, true)).await
    }

    /// Fails with Unauthorized unless the session's role may run `stmt` (always passes without
    /// authentication).
    async fn authorize(
        &self,
        session: &Session,
        stmt: &Statement,
        keyspace: Option<&str>,
    ) -> Result<(), ExecError> {
        let Some(auth) = self.auth() else {
            return Ok(());
        };
        let Some(role) = session.user.as_deref() else {
            return Err(ExecError::Unauthorized(
                "You have not logged in: authentication is required".into(),
            ));
        };
        auth.authorize(self, role, stmt, keyspace).await
    }

    /// The current schema snapshot.
    pub fn schema(&self) -> Arc<Schema> {
        self.inner.schema.current()
    }

    /// The schema store.
    pub fn schema_store(&self) -> &Arc<SchemaStore> {
        &self.inner.schema
    }

    /// The clock stamping writes.
    pub fn clock(&self) -> &Arc<HybridClock> {
        &self.inner.clock
    }

    /// This node's description.
    pub fn node_info(&self) -> &LocalNodeInfo {
        &self.inner.node
    }

    fn cluster_info(&self) -> ClusterInfo {
        let f = self
            .inner
            .cluster
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        f()
    }

    fn peers(&self) -> Vec<PeerInfo> {
        self.cluster_info().peers
    }

    fn eval_ctx<'a>(&'a self, bindings: Bindings<'a>) -> EvalCtx<'a> {
        EvalCtx {
            bindings,
            clock: &self.inner.clock,
            node: self.inner.uuid_node,
        }
    }

    /// Runs a statement given as text (QUERY).
    pub async fn query(
        &self,
        session: &mut Session,
        text: &str,
        opts: &QueryOptions,
    ) -> Result<QueryResult, ExecError> {
        let stmt = parse(text)?;
        let keyspace = session.keyspace.clone();
        let names = names_map(opts);
        let bindings = match &names {
            Some(m) => Bindings::named(&opts.values, m),
            None => Bindings::positional(&opts.values, stmt.bind_marker_count())?,
        };
        self.run(session, &stmt, keyspace.as_deref(), bindings, opts)
            .await
    }

    /// Prepares a statement (PREPARE): validates it against the current schema and caches it.
    pub fn prepare(&self, session: &Session, text: &str) -> Result<Arc<Prepared>, ExecError> {
        let statement = parse(text)?;
        let keyspace = session.keyspace.clone();
        let schema = self.schema();
        let ks = keyspace.as_deref();
        let mut result_columns = Vec::new();
        let mut pk_indices = Vec::new();
        match &statement {
            Statement::Select(s) => {
                let table = resolve_table(&schema, &s.table, ks)?;
                let plan = select::plan(table.clone(), s)?;
                result_columns = plan.selection.specs();
                pk_indices = prepared::pk_indices(&statement, &table);
            }
            Statement::Insert(i) => {
                let table = resolve_table(&schema, &i.table, ks)?;
                write::check_writable(&table)?;
                pk_indices = prepared::pk_indices(&statement, &table);
            }
            Statement::Update(u) => {
                let table = resolve_table(&schema, &u.table, ks)?;
                write::check_writable(&table)?;
                restrictions::analyze(&table, &u.where_clause)?;
                pk_indices = prepared::pk_indices(&statement, &table);
            }
            Statement::Delete(d) => {
                let table = resolve_table(&schema, &d.table, ks)?;
                write::check_writable(&table)?;
                restrictions::analyze(&table, &d.where_clause)?;
                pk_indices = prepared::pk_indices(&statement, &table);
            }
            Statement::Batch(b) => {
                for s in &b.statements {
                    let name = match s {
                        Statement::Insert(i) => &i.table,
                        Statement::Update(u) => &u.table,
                        Statement::Delete(d) => &d.table,
                        _ => return invalid("Invalid statement in batch: only UPDATE, INSERT and DELETE statements are allowed."),
                    };
                    let table = resolve_table(&schema, name, ks)?;
                    write::check_writable(&table)?;
                }
            }
            _ => {}
        }
        let mut collector = prepared::SpecCollector::new(statement.bind_marker_count());
        let resolve = |name: &QualifiedName| -> Option<&TableDef> {
            let k = name.keyspace.as_deref().or(ks)?;
            schema.table(k, &name.name).map(|t| &**t)
        };
        collector.statement(&statement, &resolve);
        let variables = collector.finish();
        let p = Arc::new(Prepared {
            id: prepared::prepared_id(ks, text),
            variables,
            pk_indices,
            result_columns,
            keyspace,
            query: text.to_string(),
            statement,
        });
        self.inner
            .prepared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(p.clone());
        Ok(p)
    }

    fn lookup_prepared(&self, id: &[u8]) -> Result<Arc<Prepared>, ExecError> {
        self.inner
            .prepared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .ok_or_else(|| ExecError::Unprepared { id: id.to_vec() })
    }

    /// Runs a prepared statement (EXECUTE).
    pub async fn execute(
        &self,
        session: &mut Session,
        id: &[u8],
        opts: &QueryOptions,
    ) -> Result<QueryResult, ExecError> {
        let p = self.lookup_prepared(id)?;
        let names = names_map(opts);
        let bindings = match &names {
            Some(m) => Bindings::named(&opts.values, m),
            None => Bindings::positional(&opts.values, p.statement.bind_marker_count())?,
        };
        self.run(session, &p.statement, p.keyspace.as_deref(), bindings, opts)
            .await
    }

    /// Runs a BATCH message: all its mutations are applied, merged per partition, with one
    /// timestamp unless statements set their own.
    pub async fn batch(
        &self,
        session: &mut Session,
        kind: BatchKind,
        items: Vec<BatchItem>,
        opts: &QueryOptions,
    ) -> Result<QueryResult, ExecError> {
        if kind == BatchKind::Counter {
            return invalid("Counter batches are not supported: ringdb has no counter columns");
        }
        let mut statements: Vec<(Statement, Option<String>, Vec<BoundValue>)> =
            Vec::with_capacity(items.len());
        for item in items {
            match item {
                BatchItem::Query(text, values) => {
                    statements.push((parse(&text)?, session.keyspace.clone(), values))
                }
                BatchItem::Prepared(id, values) => {
                    let p = self.lookup_prepared(&id)?;
                    statements.push((p.statement.clone(), p.keyspace.clone(), values));
                }
            }
        }
        for (stmt, ks, _) in &statements {
            self.authorize(session, stmt, ks.as_deref()).await?;
        }
        let schema = self.schema();
        let timestamp = opts.timestamp.unwrap_or_else(|| self.inner.clock.now());
        let now = self.inner.clock.wall_seconds();
        let mut set = write::MutationSet::default();
        for (stmt, ks, values) in &statements {
            let bindings = Bindings::positional(values, stmt.bind_marker_count())?;
            let env = write::WriteEnv {
                data: &*self.inner.data,
                eval: self.eval_ctx(bindings),
                now,
                default_timestamp: Some(timestamp),
                consistency: opts.consistency,
                system_auth_writes: false,
            };
            self.add_modification(&schema, stmt, ks.as_deref(), &env, &mut set)
                .await?;
        }
        self.apply(set, opts.consistency, Some(kind)).await?;
        Ok(QueryResult::Void)
    }

    async fn add_modification(
        &self,
        schema: &Schema,
        stmt: &Statement,
        ks: Option<&str>,
        env: &write::WriteEnv<'_>,
        set: &mut write::MutationSet,
    ) -> Result<(), ExecError> {
        match stmt {
            Statement::Insert(i) => {
                let table = resolve_table(schema, &i.table, ks)?;
                write::insert(env, &table, i, set)
            }
            Statement::Update(u) => {
                let table = resolve_table(schema, &u.table, ks)?;
                write::update(env, &table, u, set).await
            }
            Statement::Delete(d) => {
                let table = resolve_table(schema, &d.table, ks)?;
                write::delete(env, &table, d, set).await
            }
            _ => invalid("Invalid statement in batch: only UPDATE, INSERT and DELETE statements are allowed."),
        }
    }

    /// Hands the mutations of a statement (`batch: None`) or of a batch to the data path, as one
    /// write: a logged batch must reach the coordinator whole, over all its keyspaces, for its
    /// batchlog to cover every mutation.
    async fn apply(
        &self,
        set: write::MutationSet,
        consistency: u16,
        batch: Option<BatchKind>,
    ) -> Result<(), ExecError> {
        let mutations = set.into_mutations();
        if mutations.is_empty() {
            return Ok(());
        }
        let kind = match batch {
            Some(kind) => datapath::WriteKind::of_batch(kind, mutations.len()),
            None => datapath::WriteKind::Simple,
        };
        self.inner
            .data
            .write(datapath::WriteRequest {
                mutations,
                consistency,
                kind,
            })
            .await
    }

    /// Runs a client's statement: checks its permissions first.
    async fn run(
        &self,
        session: &mut Session,
        stmt: &Statement,
        keyspace: Option<&str>,
        bindings: Bindings<'_>,
        opts: &QueryOptions,
    ) -> Result<QueryResult, ExecError> {
        self.authorize(session, stmt, keyspace).await?;
        self.run_statement(session, stmt, keyspace, bindings, opts, false)
            .await
    }

    /// Runs a statement; `privileged` (the node's own statements) may write `system_auth`.
    async fn run_statement(
        &self,
        session: &mut Session,
        stmt: &Statement,
        keyspace: Option<&str>,
        bindings: Bindings<'_>,
        opts: &QueryOptions,
        privileged: bool,
    ) -> Result<QueryResult, ExecError> {
        let schema = self.schema();
        match stmt {
            Statement::Use(name) => {
                if schema.keyspace(name).is_none() {
                    return Err(ddl::keyspace_not_found(name).into());
                }
                session.keyspace = Some(name.clone());
                Ok(QueryResult::SetKeyspace(name.clone()))
            }
            Statement::Select(s) => {
                let table = resolve_table(&schema, &s.table, keyspace)?;
                let plan = select::plan(table.clone(), s)?;
                let ctx = self.eval_ctx(bindings);
                if table.is_virtual {
                    self.select_virtual(&schema, &plan, ctx, opts)
                } else {
                    select::execute(
                        &plan,
                        &*self.inner.data,
                        ctx,
                        self.inner.clock.wall_seconds(),
                        opts,
                    )
                    .await
                }
            }
            Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_) => {
                let env = write::WriteEnv {
                    data: &*self.inner.data,
                    eval: self.eval_ctx(bindings),
                    now: self.inner.clock.wall_seconds(),
                    default_timestamp: opts.timestamp,
                    consistency: opts.consistency,
                    system_auth_writes: privileged,
                };
                let mut set = write::MutationSet::default();
                self.add_modification(&schema, stmt, keyspace, &env, &mut set)
                    .await?;
                self.apply(set, opts.consistency, None).await?;
                Ok(QueryResult::Void)
            }
            Statement::Batch(b) => {
                if b.kind == BatchKind::Counter {
                    return invalid(
                        "Counter batches are not supported: ringdb has no counter columns",
                    );
                }
                if b.using.ttl.is_some() {
                    return invalid("Only TIMESTAMP is allowed in the USING clause of a BATCH");
                }
                let ctx = self.eval_ctx(bindings);
                let batch_ts = match &b.using.timestamp {
                    Some(t) => values::eval_i64(t, &CqlType::BigInt, &ctx, "[timestamp]")?,
                    None => None,
                };
                let timestamp = batch_ts
                    .or(opts.timestamp)
                    .unwrap_or_else(|| self.inner.clock.now());
                let env = write::WriteEnv {
                    data: &*self.inner.data,
                    eval: ctx,
                    now: self.inner.clock.wall_seconds(),
                    default_timestamp: Some(timestamp),
                    consistency: opts.consistency,
                    system_auth_writes: privileged,
                };
                let mut set = write::MutationSet::default();
                for s in &b.statements {
                    if batch_ts.is_some() {
                        let own = match s {
                            Statement::Insert(i) => i.using.timestamp.is_some(),
                            Statement::Update(u) => u.using.timestamp.is_some(),
                            Statement::Delete(d) => d.using.timestamp.is_some(),
                            _ => false,
                        };
                        if own {
                            return invalid(
                                "Timestamp must be set either on BATCH or individual statements",
                            );
                        }
                    }
                    self.add_modification(&schema, s, keyspace, &env, &mut set)
                        .await?;
                }
                self.apply(set, opts.consistency, Some(b.kind)).await?;
                Ok(QueryResult::Void)
            }
            Statement::Describe(d) => describe::describe(d, &schema, keyspace, &self.inner.node),
            Statement::CreateKeyspace(_)
            | Statement::AlterKeyspace(_)
            | Statement::DropKeyspace { .. }
            | Statement::CreateTable(_)
            | Statement::AlterTable(_)
            | Statement::DropTable { .. }
            | Statement::Truncate(_) => self.run_ddl(stmt, keyspace, opts).await,
            Statement::CreateRole(_)
            | Statement::AlterRole { .. }
            | Statement::DropRole { .. }
            | Statement::ListRoles { .. }
            | Statement::Grant(_)
            | Statement::Revoke(_)
            | Statement::ListPermissions(_) => {
                let Some(auth) = self.auth() else {
                    return invalid(
                        "Role management needs authentication: this node runs with \
                         `authenticator: allow_all` (set `authenticator: password`)",
                    );
                };
                let caller = crate::auth::statements::Caller {
                    role: if privileged {
                        None
                    } else {
                        session.user.as_deref()
                    },
                    session_keyspace: keyspace,
                };
                auth.run_statement(self, stmt, &caller).await
            }
        }
    }

    fn known_dcs(&self) -> Vec<String> {
        let mut dcs = vec![self.inner.node.dc.clone()];
        for p in self.peers() {
            if !dcs.contains(&p.dc) {
                dcs.push(p.dc);
            }
        }
        dcs
    }

    async fn run_ddl(
        &self,
        stmt: &Statement,
        keyspace: Option<&str>,
        opts: &QueryOptions,
    ) -> Result<QueryResult, ExecError> {
        let store = &self.inner.schema;
        let ts = self.inner.clock.now();
        let change = |change, target, keyspace: &str, name: Option<&str>| {
            QueryResult::SchemaChange(SchemaChangeInfo {
                change,
                target,
                keyspace: keyspace.to_string(),
                name: name.map(|n| n.to_string()),
            })
        };
        match stmt {
            Statement::CreateKeyspace(c) => {
                let dcs = self.known_dcs();
                let created = store.update(|s| {
                    let def = ddl::create_keyspace(s, c, &dcs, ts)?;
                    let created = def.is_some();
                    Ok((def.map(SchemaEdit::PutKeyspace), created))
                })?;
                if !created {
                    return Ok(QueryResult::Void);
                }
                self.announce_schema().await;
                Ok(change(
                    SchemaChangeKind::Created,
                    SchemaChangeTarget::Keyspace,
                    &c.name,
                    None,
                ))
            }
            Statement::AlterKeyspace(c) => {
                let dcs = self.known_dcs();
                store.update(|s| {
                    Ok((
                        Some(SchemaEdit::PutKeyspace(ddl::alter_keyspace(
                            s, c, &dcs, ts,
                        )?)),
                        (),
                    ))
                })?;
                self.announce_schema().await;
                Ok(change(
                    SchemaChangeKind::Updated,
                    SchemaChangeTarget::Keyspace,
                    &c.name,
                    None,
                ))
            }
            // Each node deletes the data of the dropped tables itself once it learns of the drop
            // (`schema::sync::purge_dropped_tables`); the data is unreachable from now on, as
            // tables are addressed by id.
            Statement::DropKeyspace { name, if_exists } => {
                let dropped = store.update(|s| {
                    if !ddl::drop_keyspace(s, name, *if_exists)? {
                        return Ok((None, false));
                    }
                    let edit = SchemaEdit::DropKeyspace {
                        name: name.clone(),
                        timestamp: ts,
                    };
                    Ok((Some(edit), true))
                })?;
                if !dropped {
                    return Ok(QueryResult::Void);
                }
                self.announce_schema().await;
                Ok(change(
                    SchemaChangeKind::Dropped,
                    SchemaChangeTarget::Keyspace,
                    name,
                    None,
                ))
            }
            Statement::CreateTable(c) => {
                let ks = table_keyspace(&c.table, keyspace)?;
                let created = store.update(|s| {
                    let def = ddl::create_table(s, c, &ks, ts)?;
                    let created = def.is_some();
                    Ok((def.map(|d| SchemaEdit::PutTable(Box::new(d))), created))
                })?;
                if !created {
                    return Ok(QueryResult::Void);
                }
                self.announce_schema().await;
                Ok(change(
                    SchemaChangeKind::Created,
                    SchemaChangeTarget::Table,
                    &ks,
                    Some(&c.table.name),
                ))
            }
            Statement::AlterTable(a) => {
                let ks = table_keyspace(&a.table, keyspace)?;
                store.update(|s| {
                    let table = resolve_table(s, &a.table, Some(&ks)).map_err(to_schema_error)?;
                    let def = ddl::alter_table(&table, &a.action, ts)?;
                    Ok((Some(SchemaEdit::PutTable(Box::new(def))), ()))
                })?;
                self.announce_schema().await;
                Ok(change(
                    SchemaChangeKind::Updated,
                    SchemaChangeTarget::Table,
                    &ks,
                    Some(&a.table.name),
                ))
            }
            Statement::DropTable { table, if_exists } => {
                let ks = table_keyspace(table, keyspace)?;
                let dropped = store.update(|s| {
                    if ddl::drop_table(s, &ks, &table.name, *if_exists)?.is_none() {
                        return Ok((None, false));
                    }
                    let edit = SchemaEdit::DropTable {
                        keyspace: ks.clone(),
                        name: table.name.clone(),
                        timestamp: ts,
                    };
                    Ok((Some(edit), true))
                })?;
                if !dropped {
                    return Ok(QueryResult::Void);
                }
                self.announce_schema().await;
                Ok(change(
                    SchemaChangeKind::Dropped,
                    SchemaChangeTarget::Table,
                    &ks,
                    Some(&table.name),
                ))
            }
            Statement::Truncate(name) => {
                let schema = self.schema();
                let table = resolve_table(&schema, name, keyspace)?;
                write::check_writable(&table)?;
                let _ = opts;
                self.inner.data.truncate(&table.keyspace, table.id).await?;
                Ok(QueryResult::Void)
            }
            _ => invalid("not a schema statement"),
        }
    }

    fn select_virtual(
        &self,
        schema: &Schema,
        plan: &select::SelectPlan<'_>,
        ctx: EvalCtx<'_>,
        opts: &QueryOptions,
    ) -> Result<QueryResult, ExecError> {
        let table = &plan.table;
        let cluster = self.cluster_info();
        let gossip_generation = cluster
            .local_generation
            .map(|g| g.clamp(0, i32::MAX as i64) as i32)
            .unwrap_or(self.inner.gossip_generation);
        let src = system_views::ViewSource {
            schema,
            node: &self.inner.node,
            peers: &cluster.peers,
            endpoints: &cluster.endpoints,
            gossip_generation,
        };
        let all = system_views::rows(table, &src)?;
        let bound = plan.restrictions.bind(table, &ctx)?;
        let mut matching: Vec<rows::LogicalRow> = Vec::new();
        let ck = table.clustering();
        let pk = table.partition_key();
        for row in all {
            if !virtual_row_matches(table, &bound, &row, &pk, &ck) {
                continue;
            }
            matching.push(row);
        }
        if plan.stmt.distinct {
            let pk_idx: Vec<usize> = pk
                .iter()
                .filter_map(|c| table.column_index(&c.name))
                .collect();
            let mut seen = std::collections::HashSet::new();
            matching.retain(|r| {
                seen.insert(
                    pk_idx
                        .iter()
                        .map(|i| r.cells[*i].as_ref().map(|c| c.value.clone()))
                        .collect::<Vec<_>>(),
                )
            });
        }
        if plan.reversed {
            matching.reverse();
        }
        let limit = match &plan.stmt.limit {
            Some(t) => values::eval_i64(t, &CqlType::Int, &ctx, "[limit]")?,
            None => None,
        };
        if limit.is_some_and(|l| l <= 0) {
            return invalid("LIMIT must be strictly positive");
        }
        let now = self.inner.clock.wall_seconds();
        let columns = plan.selection.specs();
        if plan.selection.aggregate {
            let mut agg = selection::Aggregator::new(&plan.selection);
            for r in &matching {
                agg.add(&plan.selection, r, &ctx, now)?;
            }
            return Ok(QueryResult::Rows {
                columns,
                rows: vec![agg.finish(&plan.selection)],
                paging_state: None,
            });
        }
        let (offset, mut remaining) = match &opts.paging_state {
            Some(bytes) => match paging::PagingState::decode(bytes)? {
                paging::PagingState::Offset { offset, remaining } => (offset as usize, remaining),
                _ => {
                    return Err(ExecError::Protocol(
                        "Invalid value for the paging state".into(),
                    ))
                }
            },
            None => (0, limit.map(|l| l as u64)),
        };
        let page = opts.page_size.filter(|p| *p > 0).map(|p| p as usize);
        let mut rows = Vec::new();
        let mut next = offset;
        for r in matching.iter().skip(offset) {
            if remaining == Some(0) || page.is_some_and(|p| rows.len() >= p) {
                break;
            }
            rows.push(plan.selection.eval_row(r, &ctx, now)?);
            next += 1;
            if let Some(rem) = &mut remaining {
                *rem -= 1;
            }
        }
        let more = next < matching.len() && remaining != Some(0);
        let paging_state = more.then(|| {
            paging::PagingState::Offset {
                offset: next as u64,
                remaining,
            }
            .encode()
        });
        Ok(QueryResult::Rows {
            columns,
            rows,
            paging_state,
        })
    }
}

fn virtual_row_matches(
    table: &TableDef,
    bound: &restrictions::BoundWhere,
    row: &rows::LogicalRow,
    pk: &[&crate::schema::ColumnDef],
    ck: &[&crate::schema::ColumnDef],
) -> bool {
    match &bound.partitions {
        restrictions::PartitionSel::Keys(keys) => {
            let row_key: Vec<Option<Vec<u8>>> = pk
                .iter()
                .map(|c| {
                    table
                        .column_index(&c.name)
                        .and_then(|i| row.cells[i].as_ref())
                        .map(|c| c.value.clone())
                })
                .collect();
            let any = keys.iter().any(|k| {
                k.iter()
                    .zip(&row_key)
                    .all(|(v, r)| r.as_ref().is_some_and(|r| *r == v.serialize()))
            });
            if !any {
                return false;
            }
        }
        restrictions::PartitionSel::Range(bounds) => {
            if !bounds.contains(row.token) {
                return false;
            }
        }
    }
    if let Some(ranges) = &bound.ranges {
        let values: Option<Vec<ringdb_cql::types::CqlValue>> = ck
            .iter()
            .map(|c| {
                table
                    .column_index(&c.name)
                    .and_then(|i| row.typed(table, i))
            })
            .collect();
        let Some(values) = values else { return false };
        let bytes = keys::clustering_bytes(ck, &values);
        if !keys::ranges_contain(ranges, &bytes) {
            return false;
        }
    }
    bound
        .filters
        .iter()
        .all(|f| f.matches(row.typed(table, f.column).as_ref()))
}

fn to_schema_error(e: ExecError) -> crate::schema::SchemaError {
    match e {
        ExecError::Unauthorized(m) => crate::schema::SchemaError::Unauthorized(m),
        other => crate::schema::SchemaError::Invalid(other.to_string()),
    }
}

fn table_keyspace(name: &QualifiedName, session: Option<&str>) -> Result<String, ExecError> {
    match (&name.keyspace, session) {
        (Some(k), _) => Ok(k.clone()),
        (None, Some(s)) => Ok(s.to_string()),
        (None, None) => invalid("No keyspace has been specified. USE a keyspace, or explicitly specify keyspace.tablename"),
    }
}

/// Finds a table by (possibly unqualified) name.
fn resolve_table(
    schema: &Schema,
    name: &QualifiedName,
    session: Option<&str>,
) -> Result<Arc<TableDef>, ExecError> {
    let ks = table_keyspace(name, session)?;
    if schema.keyspace(&ks).is_none() {
        return Err(ddl::keyspace_not_found(&ks).into());
    }
    schema
        .table(&ks, &name.name)
        .cloned()
        .ok_or_else(|| ExecError::Invalid(format!("unconfigured table {}", name.name)))
}

/// Whether a keyspace is read-only for users.
pub fn is_read_only_keyspace(name: &str) -> bool {
    is_system_keyspace(name)
}
