//! An in-process cluster for coordinator tests: real replicas over the in-memory engine and real
//! internode transports (QUIC with mutual TLS from a throw-away CA, on loopback ports), but no
//! gossip: the test decides the ring and who is alive, and every coordinator sees the same view.
//! A node is "killed" by closing its transport while the others still believe it alive, which
//! is exactly what a coordinator faces in the moments after a crash.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use ringdb_cql::ast::Statement;
use ringdb_gossip::state::{
    encode_tokens, AppStateKey, ClusterView, Endpoint as GossipEndpoint, EndpointState,
    EndpointView, VersionedValue,
};
use ringdb_gossip::transport::{Inbound, TlsFiles, Transport, TransportConfig};
use ringdb_ring::HostId;

use super::placement::host_id;
use super::{Coordinator, CoordinatorConfig};
use crate::clock::HybridClock;
use crate::commitlog::{CommitSync, SyncMode};
use crate::hints::{HintConfig, HintStore};
use crate::replica::{Replica, SchemaVerbs};
use crate::schema::store::SchemaEdit;
use crate::schema::{ddl, SchemaStore, TableDef};
use crate::storage::{
    Cell, CellKey, Engine, Liveness, MemoryEngine, Mutation, PartitionKey, RowUpdate, Slice,
};
use crate::verbs::{ReplicaError, VerbRequest, VerbResponse};

/// The datacenter every test node is in.
pub const DC: &str = "dc1";

/// Schema verbs are not what these tests are about.
struct NoSchemaVerbs;

impl SchemaVerbs for NoSchemaVerbs {
    fn handle<'a>(&'a self, _: VerbRequest) -> futures::future::BoxFuture<'a, VerbResponse> {
        Box::pin(async {
            VerbResponse::Error(ReplicaError::BadRequest("no schema verbs here".into()))
        })
    }
}

/// One node of a [`TestCluster`].
pub struct TestNode {
    /// Its host id.
    pub host: HostId,
    /// Its internode address.
    pub addr: SocketAddr,
    /// Its datacenter.
    pub dc: String,
    /// Its rack.
    pub rack: String,
    /// Its only token.
    pub token: i64,
    /// Its storage.
    pub engine: Arc<dyn Engine>,
    /// Its schema.
    pub schema: Arc<SchemaStore>,
    /// It as a replica.
    pub replica: Arc<Replica>,
    /// It as a coordinator.
    pub coordinator: Arc<Coordinator>,
    transport: Transport,
    _gossip: mpsc::Receiver<Inbound>,
}

/// Nodes in one datacenter, each with one token, all seeing the same ring.
pub struct TestCluster {
    /// The nodes, in the order of the racks given to [`TestCluster::start`].
    pub nodes: Vec<TestNode>,
    alive: Vec<bool>,
    statuses: Vec<&'static str>,
    _shutdown: watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

impl TestCluster {
    /// Starts one node per entry of `racks` (all alive; `"dc2:r1"` puts a node in another
    /// datacenter than [`DC`]), each coordinator waiting at most
    /// `write_timeout` for writes.
    pub async fn start(racks: &[&str], write_timeout: Duration) -> TestCluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = dir.path().join("ca");
        ringdb_gossip::certs::create_ca(&ca, "coordinator tests").expect("CA");
        let (shutdown, shutdown_rx) = watch::channel(false);
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let n = racks.len() as i64;
        let mut nodes = Vec::new();
        for (i, rack) in racks.iter().enumerate() {
            let (dc, rack) = rack.split_once(':').unwrap_or((DC, rack));
            let name = format!("node{i}");
            let files =
                ringdb_gossip::certs::issue(&ca, &name, &[loopback], &[], &dir.path().join(&name))
                    .expect("node certificate");
            let tls = TlsFiles {
                ca: files.ca,
                cert: files.cert,
                key: files.key,
            };
            let (transport, inbound) =
                Transport::bind(TransportConfig::new(SocketAddr::new(loopback, 0), tls))
                    .await
                    .expect("transport");
            let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
            let (commit, _flusher) =
                CommitSync::start(SyncMode::Batch, engine.clone(), shutdown_rx.clone());
            let schema = SchemaStore::open(engine.clone()).expect("schema");
            let clock = HybridClock::system();
            let hints = HintStore::open(
                engine.clone(),
                commit.clone(),
                HintConfig {
                    enabled: true,
                    window: Duration::from_secs(3600),
                    max_bytes: 1 << 30,
                },
            )
            .expect("hint store");
            let replica = Replica::new(engine.clone(), commit, schema.clone(), clock);
            replica.set_hints(hints.clone());
            let host = host_id(uuid::Uuid::from_u128(0x1000 + i as u128));
            let coordinator = Coordinator::new(
                replica.clone(),
                schema.clone(),
                hints,
                CoordinatorConfig {
                    local: host,
                    dc: dc.into(),
                    rack: rack.to_string(),
                    write_timeout,
                    read_timeout: write_timeout,
                    stream_throughput: 0,
                },
            );
            let _ = coordinator.transport.set(transport.clone());
            tokio::spawn(crate::replica::serve(
                replica.clone(),
                Arc::new(NoSchemaVerbs),
                Some(coordinator.clone()),
                inbound.verbs,
                shutdown_rx.clone(),
            ));
            nodes.push(TestNode {
                host,
                addr: transport.local_addr(),
                dc: dc.to_string(),
                rack: rack.to_string(),
                token: i64::MIN / 2 + (i as i64) * (i64::MAX / n),
                engine,
                schema,
                replica,
                coordinator,
                transport,
                _gossip: inbound.gossip,
            });
        }
        let cluster = TestCluster {
            alive: vec![true; nodes.len()],
            statuses: vec!["NORMAL"; nodes.len()],
            nodes,
            _shutdown: shutdown,
            _dir: dir,
        };
        cluster.publish();
        cluster
    }

    /// Tells every coordinator the ring with node `i` up (`true`) or down.
    pub fn set_alive(&mut self, i: usize, alive: bool) {
        self.alive[i] = alive;
        self.publish();
    }

    /// Tells every coordinator that node `i` gossips `status` (`NORMAL`, `LEAVING`, `LEFT`…).
    pub fn set_status(&mut self, i: usize, status: &'static str) {
        self.statuses[i] = status;
        self.publish();
    }

    /// Closes node `i`'s transport: nobody can reach it any more, though the others still see
    /// it alive until [`TestCluster::set_alive`] says otherwise.
    pub async fn cut_off(&self, i: usize) {
        self.nodes[i].transport.shutdown().await;
    }

    fn publish(&self) {
        for node in &self.nodes {
            node.coordinator.update_state(&self.view(node.addr));
        }
    }

    /// The gossip view every node would have.
    fn view(&self, local: SocketAddr) -> ClusterView {
        let nodes: Vec<ViewNode<'_>> = self
            .nodes
            .iter()
            .zip(&self.alive)
            .map(|(node, &alive)| ViewNode {
                host: node.host,
                addr: node.addr,
                dc: &node.dc,
                rack: &node.rack,
                token: node.token,
                alive,
            })
            .collect();
        let mut view = view_of(local, &nodes);
        for (node, status) in self.nodes.iter().zip(&self.statuses) {
            if let Some(ev) = view.endpoints.get_mut(&GossipEndpoint(node.addr)) {
                ev.state.app_states.insert(
                    AppStateKey::Status,
                    VersionedValue {
                        value: status.to_string(),
                        version: 2,
                    },
                );
            }
        }
        view
    }

    /// Creates keyspace `ks` with `replication` (a CQL map such as
    /// `{'class': 'NetworkTopologyStrategy', 'dc1': 3, 'dc2': 3}`) and the table of `table_cql`
    /// on every node.
    pub fn create_table_with(&self, replication: &str, table_cql: &str) -> Arc<TableDef> {
        let dcs: Vec<String> = self.nodes.iter().map(|n| n.dc.clone()).collect();
        let first = &self.nodes[0].schema;
        let table = create_table_in(first, replication, &dcs, table_cql);
        for node in &self.nodes[1..] {
            node.schema.merge(first.snapshot()).expect("merge schema");
        }
        table
    }

    /// Creates keyspace `ks` (SimpleStrategy, `rf`) and the table of `table_cql` on node 0
    /// and copies the schema to every other node, as schema sync would.
    pub fn create_table(&self, rf: usize, table_cql: &str) -> Arc<TableDef> {
        let first = &self.nodes[0].schema;
        let table = create_table(first, rf, table_cql);
        for node in &self.nodes[1..] {
            node.schema.merge(first.snapshot()).expect("merge schema");
        }
        table
    }
}

/// Runs `CREATE KEYSPACE ks ... {'replication_factor': rf}` and `table_cql` (a CREATE TABLE
/// in `ks`) on `store`. Returns the table.
pub fn create_table(store: &SchemaStore, rf: usize, table_cql: &str) -> Arc<TableDef> {
    let replication = format!("{{'class': 'SimpleStrategy', 'replication_factor': {rf}}}");
    create_table_in(store, &replication, &[DC.to_string()], table_cql)
}

fn create_table_in(
    store: &SchemaStore,
    replication: &str,
    dcs: &[String],
    table_cql: &str,
) -> Arc<TableDef> {
    let ks_cql = format!("CREATE KEYSPACE ks WITH replication = {replication}");
    let Ok(Statement::CreateKeyspace(ks)) = ringdb_cql::parser::parse_statement(&ks_cql) else {
        panic!("not a CREATE KEYSPACE: {ks_cql}");
    };
    let def = ddl::create_keyspace(&store.current(), &ks, dcs, 1)
        .expect("keyspace")
        .expect("new keyspace");
    store
        .apply(SchemaEdit::PutKeyspace(def))
        .expect("put keyspace");
    let Ok(Statement::CreateTable(table)) = ringdb_cql::parser::parse_statement(table_cql) else {
        panic!("not a CREATE TABLE: {table_cql}");
    };
    let def = ddl::create_table(&store.current(), &table, "ks", 2)
        .expect("table")
        .expect("new table");
    let name = def.name.clone();
    store
        .apply(SchemaEdit::PutTable(Box::new(def)))
        .expect("put table");
    store.current().table("ks", &name).expect("created").clone()
}

/// One node of a gossip view made by a test.
#[derive(Debug, Clone, Copy)]
pub struct ViewNode<'a> {
    /// Its host id.
    pub host: HostId,
    /// Its internode address.
    pub addr: SocketAddr,
    /// Its datacenter.
    pub dc: &'a str,
    /// Its rack.
    pub rack: &'a str,
    /// Its only token.
    pub token: i64,
    /// Whether it is up.
    pub alive: bool,
}

/// The gossip view of `nodes` (all NORMAL) as seen from `local`.
pub fn view_of(local: SocketAddr, nodes: &[ViewNode<'_>]) -> ClusterView {
    let mut endpoints = BTreeMap::new();
    for node in nodes {
        let mut state = EndpointState::new(1);
        let id = uuid::Uuid::from_bytes(node.host.0);
        for (key, value) in [
            (AppStateKey::HostId, id.to_string()),
            (AppStateKey::Dc, node.dc.to_string()),
            (AppStateKey::Rack, node.rack.to_string()),
            (AppStateKey::Tokens, encode_tokens(&[node.token])),
            (AppStateKey::Status, "NORMAL".to_string()),
        ] {
            state
                .app_states
                .insert(key, VersionedValue { value, version: 1 });
        }
        endpoints.insert(
            GossipEndpoint(node.addr),
            EndpointView {
                state,
                alive: node.alive,
            },
        );
    }
    ClusterView {
        local: GossipEndpoint(local),
        endpoints,
    }
}

/// The partition of `k` in a table whose partition key is one `int`.
pub fn int_partition(k: i32) -> PartitionKey {
    let key = k.to_be_bytes().to_vec();
    PartitionKey {
        token: ringdb_ring::murmur3::token_for_key(&key).0,
        key,
    }
}

/// `INSERT INTO table (k, v) VALUES (k, value)` at `timestamp`, for a table `(k int PRIMARY
/// KEY, v text)`.
pub fn insert(table: &TableDef, k: i32, value: &str, timestamp: i64) -> Mutation {
    let v = table.column("v").expect("column v").id;
    Mutation {
        table: table.id,
        partition: int_partition(k),
        partition_deletion: None,
        range_deletions: vec![],
        rows: vec![RowUpdate {
            clustering: vec![],
            liveness: Some(Liveness {
                timestamp,
                ttl: 0,
                expires_at: 0,
            }),
            cells: vec![(
                CellKey {
                    column: v,
                    path: None,
                },
                Cell {
                    timestamp,
                    ttl: 0,
                    local_deletion_time: 0,
                    value: Some(value.as_bytes().to_vec()),
                },
            )],
            ..RowUpdate::default()
        }],
    }
}

/// The value of `v` for `k` in `engine`, if the row is there.
pub fn value_of(engine: &dyn Engine, table: &TableDef, k: i32) -> Option<String> {
    let v = table.column("v").expect("column v").id;
    let data = engine
        .read_partition(table.id, &int_partition(k), &Slice::all(), 0)
        .expect("read")?;
    let rows = data.static_row.iter().chain(data.rows.iter());
    rows.flat_map(|r| r.cells.iter())
        .find(|(key, _)| key.column == v)
        .and_then(|(_, cell)| cell.value.clone())
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
}
