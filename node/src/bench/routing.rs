//! Where each request goes: a pool of connections per node and token-aware routing.
//!
//! At start the [`Router`] opens a control connection to the first `--host` that answers,
//! creates the keyspace and table, waits (bounded) for the nodes to agree on the schema, and
//! reads the ring the way drivers do: `system.local` and `system.peers_v2` (or `system.peers`)
//! give every node's host id, CQL address, datacenter, rack and tokens, and
//! `system_schema.keyspaces` the keyspace's replication. With those the `ring` crate computes
//! the replicas of every token range ([`ReplicaMap`]), exactly as the nodes do.
//!
//! Each request's partition key (a `bigint`, serialized as 8 bytes big-endian) is hashed with the
//! Murmur3 partitioner, and the request goes to a connection of one of that token's replicas
//! (rotating among them so that every replica coordinates its share), or, when none of them has
//! a live connection, to any node that has one. With `--routing round-robin`, or when the ring
//! cannot be read (a server with no `tokens`, an unknown partitioner), requests go to the given
//! hosts in turn.
//!
//! # Failure
//!
//! A connection that breaks is dropped from its slot at the first request that sees it broken,
//! and one reconnect task per node tries again with a growing pause (250 ms doubling to 2 s),
//! until every slot is filled or the run ends; so a killed node shows as a burst of errors, its
//! traffic moves to the other replicas, and it takes its share back once it is up again. Every
//! prepared statement is prepared on every connection when it opens, so a restarted node is
//! never sent an id it does not know.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use bytes::Bytes;
use ringdb_cql::client::{
    Client, ClientError, ClientOptions, PreparedStatement, QueryOptions, QueryResult, Rows, Value,
    NO_VALUES,
};
use ringdb_cql::types::CqlValue;
use ringdb_ring::{murmur3, Endpoint, HostId, ReplicaMap, Replication, Token, TokenRing, Topology};

use super::workload::{self, Op};
use crate::status::{cell, inet, parse_keyspaces, text, text_set};

/// The longest pause between two reconnect attempts to one node.
const MAX_RECONNECT_PAUSE: Duration = Duration::from_secs(2);
/// The first pause after a connection broke.
const FIRST_RECONNECT_PAUSE: Duration = Duration::from_millis(250);
/// How long the setup waits for every node to report the same schema version.
const SCHEMA_AGREEMENT_TIMEOUT: Duration = Duration::from_secs(15);

/// How requests are spread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Routing {
    /// To a replica of each key's token (falls back to round robin without ring information).
    Token,
    /// To the given hosts in turn.
    RoundRobin,
}

/// What the router needs to set things up.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// `HOST:PORT` of the nodes to start from.
    pub seeds: Vec<String>,
    /// Connections per node.
    pub connections: usize,
    /// Token-aware or round robin.
    pub routing: Routing,
    /// Timeouts and limits of every connection.
    pub client: ClientOptions,
    /// The bench's keyspace.
    pub keyspace: String,
    /// Replication factor of the keyspace when the bench creates it.
    pub rf: u32,
    /// Drop the keyspace first.
    pub drop_first: bool,
    /// Seconds every written row lives, if it expires.
    pub ttl: Option<u32>,
}

/// One open connection with the bench's statements prepared on it.
pub struct Conn {
    client: Client,
    insert: PreparedStatement,
    select: PreparedStatement,
}

/// One node: its address and its connection slots (`None` while broken).
struct Host {
    addr: SocketAddr,
    slots: Vec<Mutex<Option<Arc<Conn>>>>,
    next_slot: AtomicUsize,
    reconnecting: AtomicBool,
}

impl Host {
    fn new(addr: SocketAddr, connections: usize) -> Host {
        Host {
            addr,
            slots: (0..connections.max(1)).map(|_| Mutex::new(None)).collect(),
            next_slot: AtomicUsize::new(0),
            reconnecting: AtomicBool::new(false),
        }
    }

    /// A live connection, the slots taken in turn.
    fn conn(&self) -> Option<Arc<Conn>> {
        let n = self.slots.len();
        let start = self.next_slot.fetch_add(1, Ordering::Relaxed);
        (0..n).find_map(|i| lock(&self.slots[(start + i) % n]).clone())
    }

    fn empty_slots(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|&i| lock(&self.slots[i]).is_none())
            .collect()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The token → replicas map, and each replica's index in [`Router::hosts`].
struct Placement {
    replicas: ReplicaMap,
    index: HashMap<HostId, usize>,
}

/// Why an operation failed.
#[derive(Debug)]
pub enum OpError {
    /// No node had a live connection.
    NoHost,
    /// The request failed.
    Client(ClientError),
}

/// Connections to every node and the routing of each request.
pub struct Router {
    hosts: Vec<Host>,
    placement: Option<Placement>,
    round_robin: AtomicUsize,
    client_options: ClientOptions,
    keyspace: String,
    insert: String,
    stopped: AtomicBool,
    /// Why token-aware routing is off, when it was asked for and is.
    pub fallback_reason: Option<String>,
}

impl Router {
    /// Connects, creates the schema, reads the ring and opens the connections (see the module
    /// documentation). Fails when no seed can be reached or the schema cannot be created.
    pub async fn connect(config: &RouterConfig) -> anyhow::Result<Arc<Router>> {
        let (control, control_addr) = connect_any(&config.seeds, &config.client).await?;
        create_schema(&control, config).await?;
        wait_for_schema_agreement(&control).await;

        let mut fallback_reason = None;
        let mut hosts: Vec<Host> = Vec::new();
        let mut placement = None;
        if config.routing == Routing::Token {
            match read_ring(&control, control_addr, &config.keyspace, config.rf).await {
                Ok((nodes, replicas)) => {
                    let mut index = HashMap::new();
                    for (host_id, addr) in nodes {
                        index.insert(host_id, hosts.len());
                        hosts.push(Host::new(addr, config.connections));
                    }
                    placement = Some(Placement { replicas, index });
                }
                Err(e) => fallback_reason = Some(format!("{e:#}")),
            }
        }
        if placement.is_none() {
            for seed in &config.seeds {
                let addr = resolve(seed).await?;
                if !hosts.iter().any(|h| h.addr == addr) {
                    hosts.push(Host::new(addr, config.connections));
                }
            }
        }
        drop(control);

        let router = Arc::new(Router {
            hosts,
            placement,
            round_robin: AtomicUsize::new(0),
            client_options: config.client.clone(),
            keyspace: config.keyspace.clone(),
            insert: workload::insert_statement(&config.keyspace, config.ttl),
            stopped: AtomicBool::new(false),
            fallback_reason,
        });
        let mut opened = 0;
        let mut first_error = None;
        for (h, host) in router.hosts.iter().enumerate() {
            for slot in &host.slots {
                match router.open(host.addr).await {
                    Ok(conn) => {
                        *lock(slot) = Some(Arc::new(conn));
                        opened += 1;
                    }
                    Err(e) => {
                        eprintln!("bench: cannot open a connection to {}: {e:#}", host.addr);
                        first_error.get_or_insert(e);
                        router.ensure_reconnecting(h);
                        break;
                    }
                }
            }
        }
        if opened == 0 {
            router.stop();
            return Err(first_error
                .unwrap_or_else(|| anyhow!("no host to connect to"))
                .context("no connection could be opened"));
        }
        Ok(router)
    }

    /// Opens one connection and prepares the statements on it.
    async fn open(&self, addr: SocketAddr) -> anyhow::Result<Conn> {
        let client = Client::connect(addr, self.client_options.clone())
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        let insert = client
            .prepare(&self.insert)
            .await
            .with_context(|| format!("preparing the INSERT on {addr}"))?;
        let select = client
            .prepare(&workload::select_statement(&self.keyspace))
            .await
            .with_context(|| format!("preparing the SELECT on {addr}"))?;
        Ok(Conn {
            client,
            insert,
            select,
        })
    }

    /// The nodes requests go to, as `HOST:PORT`.
    pub fn host_addrs(&self) -> Vec<String> {
        self.hosts.iter().map(|h| h.addr.to_string()).collect()
    }

    /// `token-aware` or `round-robin`.
    pub fn routing_name(&self) -> &'static str {
        if self.placement.is_some() {
            "token-aware"
        } else {
            "round-robin"
        }
    }

    /// Stops reconnecting (the run is over).
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }

    /// Runs one operation on `key`; for a read, `Ok(true)` when the row was found. `spin`
    /// chooses among the replicas (pass something that changes per request).
    pub async fn execute(
        self: &Arc<Self>,
        op: Op,
        key: i64,
        value_size: usize,
        options: &QueryOptions,
        spin: usize,
    ) -> Result<bool, OpError> {
        let key_bytes = workload::key_bytes(key);
        let token = murmur3::token_for_key(&key_bytes);
        let Some((host, conn)) = self.pick(token, spin) else {
            return Err(OpError::NoHost);
        };
        let key_value = Value::Bytes(Bytes::copy_from_slice(&key_bytes));
        let result = match op {
            Op::Write => {
                let value = Value::Bytes(Bytes::from(workload::value_for(key, value_size)));
                conn.client
                    .execute(&conn.insert, [key_value, value], options)
                    .await
                    .map(|_| true)
            }
            Op::Read => conn
                .client
                .execute(&conn.select, [key_value], options)
                .await
                .map(|r| matches!(r, QueryResult::Rows(rows) if !rows.rows.is_empty())),
        };
        result.map_err(|e| {
            if matches!(e, ClientError::ConnectionClosed(_) | ClientError::Io(_)) {
                self.connection_lost(host, &conn, &e);
            }
            OpError::Client(e)
        })
    }

    /// A connection for `token`: a replica's (rotated by `spin`), else any node's in turn.
    fn pick(self: &Arc<Self>, token: Token, spin: usize) -> Option<(usize, Arc<Conn>)> {
        if let Some(p) = &self.placement {
            let replicas = p.replicas.replicas(token);
            let n = replicas.len();
            for i in 0..n {
                if let Some(&h) = p.index.get(&replicas[(spin + i) % n]) {
                    if let Some(conn) = self.hosts[h].conn() {
                        return Some((h, conn));
                    }
                }
            }
        }
        let n = self.hosts.len();
        let start = self.round_robin.fetch_add(1, Ordering::Relaxed);
        for i in 0..n {
            let h = (start + i) % n;
            if let Some(conn) = self.hosts[h].conn() {
                return Some((h, conn));
            }
        }
        for h in 0..n {
            self.ensure_reconnecting(h);
        }
        None
    }

    /// Empties the slot that held `conn` and makes sure a reconnect task runs for its node.
    fn connection_lost(self: &Arc<Self>, host: usize, conn: &Arc<Conn>, error: &ClientError) {
        let mut emptied = false;
        for slot in &self.hosts[host].slots {
            let mut s = lock(slot);
            if s.as_ref().is_some_and(|c| Arc::ptr_eq(c, conn)) {
                *s = None;
                emptied = true;
            }
        }
        if emptied && !self.hosts[host].reconnecting.load(Ordering::Relaxed) {
            eprintln!(
                "bench: connection to {} lost ({error}); reconnecting",
                self.hosts[host].addr
            );
        }
        self.ensure_reconnecting(host);
    }

    /// Starts the reconnect task of node `h` unless it runs already or the run is over.
    fn ensure_reconnecting(self: &Arc<Self>, h: usize) {
        if self.stopped.load(Ordering::Relaxed)
            || self.hosts[h].empty_slots().is_empty()
            || self.hosts[h].reconnecting.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let router = self.clone();
        tokio::spawn(async move {
            let host = &router.hosts[h];
            let mut pause = FIRST_RECONNECT_PAUSE;
            let mut attempts = 0u32;
            'retry: while !router.stopped.load(Ordering::Relaxed) {
                tokio::time::sleep(pause).await;
                if router.stopped.load(Ordering::Relaxed) {
                    break;
                }
                for slot in host.empty_slots() {
                    attempts += 1;
                    match router.open(host.addr).await {
                        Ok(conn) => *lock(&host.slots[slot]) = Some(Arc::new(conn)),
                        Err(e) => {
                            tracing::debug!(addr = %host.addr, error = %format!("{e:#}"), "reconnect failed");
                            pause = (pause * 2).min(MAX_RECONNECT_PAUSE);
                            continue 'retry;
                        }
                    }
                }
                eprintln!(
                    "bench: reconnected to {} (after {attempts} attempt{})",
                    host.addr,
                    if attempts == 1 { "" } else { "s" }
                );
                break;
            }
            host.reconnecting.store(false, Ordering::Release);
        });
    }
}

/// Resolves `HOST:PORT` to its first address.
async fn resolve(target: &str) -> anyhow::Result<SocketAddr> {
    tokio::net::lookup_host(target)
        .await
        .with_context(|| format!("resolving {target}"))?
        .next()
        .ok_or_else(|| anyhow!("{target} resolves to no address"))
}

/// The first seed that accepts a connection, with its address.
async fn connect_any(
    seeds: &[String],
    options: &ClientOptions,
) -> anyhow::Result<(Client, SocketAddr)> {
    let mut errors = Vec::new();
    for seed in seeds {
        match Client::connect(seed.as_str(), options.clone()).await {
            Ok(client) => {
                let addr = client.peer_addr();
                return Ok((client, addr));
            }
            Err(e) => errors.push(format!("{seed}: {e}")),
        }
    }
    Err(anyhow!(
        "cannot connect to any host ({})",
        errors.join("; ")
    ))
}

async fn create_schema(control: &Client, config: &RouterConfig) -> anyhow::Result<()> {
    let opts = QueryOptions::default();
    let ks = &config.keyspace;
    if config.drop_first {
        control
            .query(&format!("DROP KEYSPACE IF EXISTS {ks}"), NO_VALUES, &opts)
            .await
            .with_context(|| format!("dropping keyspace {ks}"))?;
    }
    control
        .query(&workload::create_keyspace(ks, config.rf), NO_VALUES, &opts)
        .await
        .with_context(|| format!("creating keyspace {ks}"))?;
    control
        .query(&workload::create_table(ks), NO_VALUES, &opts)
        .await
        .with_context(|| format!("creating table {ks}.{}", workload::TABLE))?;
    Ok(())
}

async fn select_all(control: &Client, cql: &str) -> anyhow::Result<Rows> {
    control
        .query_all(cql, NO_VALUES, &QueryOptions::default())
        .await
        .with_context(|| format!("running {cql:?}"))?
        .into_rows()
        .ok_or_else(|| anyhow!("{cql:?} returned no rows result"))
}

/// Waits until `system.local` and every row of `system.peers` report one schema version, or
/// [`SCHEMA_AGREEMENT_TIMEOUT`] passes (then warns and goes on).
async fn wait_for_schema_agreement(control: &Client) {
    let deadline = Instant::now() + SCHEMA_AGREEMENT_TIMEOUT;
    loop {
        let versions = async {
            let mut versions = Vec::new();
            for table in ["system.local", "system.peers"] {
                let rows =
                    select_all(control, &format!("SELECT schema_version FROM {table}")).await?;
                for row in &rows.rows {
                    versions.push(crate::status::uuid(cell(&rows, row, "schema_version")));
                }
            }
            anyhow::Ok(versions)
        }
        .await;
        match versions {
            Ok(v) if v.windows(2).all(|w| w[0] == w[1]) => return,
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %format!("{e:#}"), "cannot read schema versions");
                return;
            }
        }
        if Instant::now() >= deadline {
            eprintln!(
                "bench: warning: the nodes do not agree on the schema after {SCHEMA_AGREEMENT_TIMEOUT:?}; going on"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One node of the ring as the system tables describe it.
struct RingNode {
    host_id: HostId,
    addr: SocketAddr,
    dc: String,
    rack: String,
    tokens: Vec<Token>,
}

fn ring_node(rows: &Rows, row: &[Option<CqlValue>], addr: SocketAddr) -> anyhow::Result<RingNode> {
    let host_id = crate::status::uuid(cell(rows, row, "host_id"))
        .ok_or_else(|| anyhow!("a node has no host_id"))?
        .parse::<HostId>()
        .map_err(|e| anyhow!("{e}"))?;
    let tokens = text_set(cell(rows, row, "tokens"))
        .iter()
        .map(|t| t.parse::<i64>().map(Token))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("node {addr} has a token that is not a Murmur3 token: {e}"))?;
    Ok(RingNode {
        host_id,
        addr,
        dc: text(cell(rows, row, "data_center")).unwrap_or_else(|| "dc1".into()),
        rack: text(cell(rows, row, "rack")).unwrap_or_else(|| "rack1".into()),
        tokens,
    })
}

/// Reads the nodes and the keyspace's replication, and computes the replicas of every range.
/// Returns each node's host id with its CQL address.
async fn read_ring(
    control: &Client,
    control_addr: SocketAddr,
    keyspace: &str,
    rf: u32,
) -> anyhow::Result<(Vec<(HostId, SocketAddr)>, ReplicaMap)> {
    let local = select_all(control, "SELECT * FROM system.local").await?;
    let local_row = local
        .rows
        .first()
        .ok_or_else(|| anyhow!("system.local is empty"))?;
    if let Some(p) = text(cell(&local, local_row, "partitioner")) {
        if !p.ends_with("Murmur3Partitioner") {
            anyhow::bail!("the partitioner is {p}, not Murmur3Partitioner");
        }
    }
    let mut nodes = vec![ring_node(&local, local_row, control_addr)?];
    let port = control_addr.port();
    match select_all(control, "SELECT * FROM system.peers_v2").await {
        Ok(peers) => {
            for row in &peers.rows {
                let ip = inet(cell(&peers, row, "native_address"))
                    .filter(|ip| !ip.is_unspecified())
                    .or_else(|| inet(cell(&peers, row, "peer")));
                let port = crate::status::bigint(cell(&peers, row, "native_port"))
                    .and_then(|p| u16::try_from(p).ok())
                    .unwrap_or(port);
                if let Some(ip) = ip {
                    nodes.push(ring_node(&peers, row, SocketAddr::new(ip, port))?);
                }
            }
        }
        Err(_) => {
            let peers = select_all(control, "SELECT * FROM system.peers").await?;
            for row in &peers.rows {
                let ip = inet(cell(&peers, row, "rpc_address"))
                    .filter(|ip| !ip.is_unspecified())
                    .or_else(|| inet(cell(&peers, row, "peer")));
                if let Some(ip) = ip {
                    nodes.push(ring_node(&peers, row, SocketAddr::new(ip, port))?);
                }
            }
        }
    }
    if nodes.iter().all(|n| n.tokens.is_empty()) {
        anyhow::bail!("no node reports tokens");
    }
    let topology = Topology::from_endpoints(nodes.iter().map(|n| Endpoint {
        host_id: n.host_id,
        addr: n.addr,
        dc: n.dc.clone(),
        rack: n.rack.clone(),
        tokens: n.tokens.clone(),
    }))
    .map_err(|e| anyhow!("inconsistent ring: {e}"))?;
    let ring = TokenRing::new(topology);
    let dcs: Vec<String> = ring.datacenters().map(str::to_string).collect();
    let keyspaces = select_all(
        control,
        "SELECT keyspace_name, replication FROM system_schema.keyspaces",
    )
    .await
    .map(|rows| parse_keyspaces(&rows))
    .unwrap_or_default();
    let options = keyspaces
        .into_iter()
        .find(|k| k.name == keyspace)
        .map(|k| k.options)
        .filter(|o| !o.is_empty())
        .unwrap_or_else(|| {
            [
                ("class".to_string(), "SimpleStrategy".to_string()),
                ("replication_factor".to_string(), rf.to_string()),
            ]
            .into_iter()
            .collect()
        });
    let replication = Replication::from_options(options.iter(), dcs.iter())
        .map_err(|e| anyhow!("cannot place keyspace {keyspace}: {e}"))?;
    let replicas = ReplicaMap::new(&ring, &replication);
    Ok((
        nodes.into_iter().map(|n| (n.host_id, n.addr)).collect(),
        replicas,
    ))
}
