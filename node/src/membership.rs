//! The node's side of membership: starts the internode transport and gossip, and turns what
//! gossip knows into what users and drivers see.
//!
//! - **Transport**: one QUIC endpoint on `listen_address:storage_port` with mutual TLS. The
//!   certificates come from `internode_ca/cert/key`; without them the node makes a throw-away CA
//!   in its data dir (`internode-dev/`), so that a standalone node works out of the box but can
//!   join nobody — safe by default, and said loudly when seeds are configured.
//! - **Generation**: the last one used is kept in the engine's meta space; a new process takes
//!   `max(now in seconds, last + 1)`, so a restart always supersedes the old state in gossip even
//!   when the clock went backwards.
//! - **Application states** published: status `NORMAL`, host id, tokens, dc, rack, schema version
//!   (followed as it changes), load (measured right after start, then every [`LOAD_REFRESH`];
//!   the same figure feeds the `ringdb_storage_bytes` metric), CQL address, release.
//! - **System tables**: `system.peers(_v2)` lists the other nodes that own tokens;
//!   `system_views.cluster_status` every known node with liveness ([`cluster_info`]).
//! - **Client events**: `STATUS_CHANGE` `UP`/`DOWN` and `TOPOLOGY_CHANGE` `NEW_NODE`/`REMOVED_NODE`
//!   are pushed to clients that registered for them, with the node's CQL address, as drivers
//!   expect.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ringdb_cql::message::{Event, StatusChangeType, TopologyChangeType};
use ringdb_gossip::membership::{Membership, MembershipConfig};
use ringdb_gossip::protocol::{GossipConfig, MembershipEvent};
use ringdb_gossip::state::{encode_tokens, AppStateKey, ClusterView, Endpoint, NodeStatus};
use ringdb_gossip::transport::{TlsFiles, Transport, TransportConfig};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::executor::{ClusterInfo, EndpointStatus, Executor, PeerInfo};
use crate::storage::Engine;

/// How often the published load (bytes on disk) is refreshed.
pub const LOAD_REFRESH: Duration = Duration::from_secs(10);
/// How long shutdown waits for the SHUTDOWN announcement to leave.
pub const ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long start-up keeps trying to resolve seed host names before going on without them.
pub const SEED_RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);

const META_GENERATION: &[u8] = b"local/generation";

/// What the node publishes about itself at start.
pub struct LocalIdentity {
    /// Permanent host id.
    pub host_id: uuid::Uuid,
    /// Vnode tokens; `None` for a node that has not chosen them yet (first start): it gossips
    /// `BOOT` without tokens until [`NodeMembership::join`] picks them.
    pub tokens: Option<Vec<i64>>,
    /// With tokens: the node has not finished streaming its ranges in (a bootstrap cut short),
    /// so it starts `JOINING` rather than `NORMAL`.
    pub bootstrapping: bool,
    /// CQL address clients use.
    pub native_address: SocketAddr,
    /// Release version shown to clients.
    pub release_version: String,
}

/// Running membership: the handle, the transport, and the node's helper tasks.
pub struct NodeMembership {
    /// The gossip task's handle.
    pub membership: Membership,
    /// The internode transport (data verbs will use it too).
    pub transport: Transport,
    /// Tasks to await at shutdown.
    pub tasks: Vec<JoinHandle<()>>,
    /// The seeds as resolved at start (this node excluded).
    pub seeds: Vec<Endpoint>,
}

impl NodeMembership {
    /// First start: chooses this node's tokens against the ring gossip shows
    /// ([`crate::join::choose_tokens`]: joins are serialized, tokens balanced for
    /// `allocate_tokens_for_local_replication_factor`), persists them with `persist`, then
    /// publishes them, with `JOINING` when `bootstrap` says the node has data to stream first
    /// (it calls [`NodeMembership::become_normal`] after), else `NORMAL` at once. `None` when
    /// `shutdown` came first.
    pub async fn join(
        &self,
        config: &Config,
        host_id: uuid::Uuid,
        persist: impl FnOnce(&[i64], bool) -> anyhow::Result<()>,
        bootstrap: impl FnOnce(&ClusterView) -> bool,
        mut shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<Option<(Vec<i64>, bool)>> {
        let candidate = crate::join::JoinCandidate {
            host_id,
            dc: config.dc.clone(),
            rack: config.rack.clone(),
            seeds: self.seeds.clone(),
        };
        let settings = crate::join::JoinSettings::new(
            config.num_tokens as usize,
            config.allocate_tokens_for_local_replication_factor as usize,
            Duration::from_millis(config.gossip_interval_ms),
        );
        let tokens = tokio::select! {
            tokens = crate::join::choose_tokens(&self.membership, candidate, settings) => tokens,
            _ = crate::server::stopping(&mut shutdown) => return Ok(None),
        };
        let bootstrapping = bootstrap(&self.membership.view());
        persist(&tokens, bootstrapping)?;
        self.membership
            .set_app_state(AppStateKey::Tokens, encode_tokens(&tokens))
            .await;
        let status = if bootstrapping {
            NodeStatus::Joining
        } else {
            NodeStatus::Normal
        };
        self.membership
            .set_app_state(AppStateKey::Status, status.as_str())
            .await;
        Ok(Some((tokens, bootstrapping)))
    }

    /// Ends a bootstrap: the node serves its ranges.
    pub async fn become_normal(&self) {
        self.membership
            .set_app_state(AppStateKey::Status, NodeStatus::Normal.as_str())
            .await;
    }

    /// Waits (at most `timeout`) until every live node that owns tokens gossips the same schema
    /// version as this node; returns whether they agree.
    pub async fn wait_schema_agreement(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut views = self.membership.watch();
        loop {
            let view = views.borrow_and_update().clone();
            let local = view
                .endpoints
                .get(&view.local)
                .and_then(|ev| ev.state.get(AppStateKey::SchemaVersion).map(str::to_string));
            let agree = local.is_some()
                && view
                    .endpoints
                    .values()
                    .filter(|ev| ev.alive && in_ring(ev.state.status()))
                    .all(|ev| ev.state.get(AppStateKey::SchemaVersion) == local.as_deref());
            if agree {
                return true;
            }
            if tokio::time::timeout_at(deadline, views.changed())
                .await
                .is_err()
            {
                return false;
            }
        }
    }

    /// Announces SHUTDOWN, then closes the transport.
    pub async fn shutdown(self) {
        self.membership.shutdown(ANNOUNCE_TIMEOUT).await;
        self.transport.shutdown().await;
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(1), task).await;
        }
    }
}

/// Picks and persists this process's gossip generation.
pub fn next_generation(engine: &dyn Engine) -> anyhow::Result<u64> {
    let last = match engine.meta_get(META_GENERATION)? {
        Some(bytes) if bytes.len() == 8 => {
            u64::from_be_bytes(bytes.as_slice().try_into().expect("8 bytes"))
        }
        Some(bytes) => anyhow::bail!(
            "corrupt gossip generation in storage ({} bytes)",
            bytes.len()
        ),
        None => 0,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let generation = now.max(last + 1);
    engine.meta_put(META_GENERATION, &generation.to_be_bytes())?;
    engine.flush()?;
    Ok(generation)
}

/// The TLS files to use: the configured ones, or a throw-away identity in the data dir.
fn tls_files(config: &Config) -> anyhow::Result<TlsFiles> {
    match (
        &config.internode_ca,
        &config.internode_cert,
        &config.internode_key,
    ) {
        (Some(ca), Some(cert), Some(key)) => Ok(TlsFiles {
            ca: ca.clone(),
            cert: cert.clone(),
            key: key.clone(),
        }),
        _ => {
            let dir = config.data_dir.join("internode-dev");
            let name = "node";
            let files = if dir.join(format!("{name}.crt")).is_file()
                && dir.join(format!("{name}.key")).is_file()
                && dir.join("ca.crt").is_file()
            {
                ringdb_gossip::certs::NodeFiles {
                    ca: dir.join("ca.crt"),
                    cert: dir.join(format!("{name}.crt")),
                    key: dir.join(format!("{name}.key")),
                }
            } else {
                ringdb_gossip::certs::create_dev_identity(&dir, name, &[config.listen_address])
                    .with_context(|| format!("creating a node identity in {}", dir.display()))?
            };
            if config.seeds.is_empty() {
                tracing::info!(
                    "no internode certificates configured: using a throw-away CA in {} \
                     (this node can form a cluster with no other node)",
                    dir.display()
                );
            } else {
                tracing::warn!(
                    "seeds are configured but internode_ca/internode_cert/internode_key are not: \
                     this node uses a throw-away CA in {} and every peer will refuse it. \
                     Make certificates with `ringdb certs create-ca` and `ringdb certs issue`.",
                    dir.display()
                );
            }
            Ok(TlsFiles {
                ca: files.ca,
                cert: files.cert,
                key: files.key,
            })
        }
    }
}

/// Resolves the configured seeds to internode addresses (names retried for a bounded time).
async fn resolve_seeds(config: &Config, local: SocketAddr) -> Vec<Endpoint> {
    let mut out = Vec::new();
    for (host, port) in config.seed_hosts() {
        let deadline = tokio::time::Instant::now() + SEED_RESOLVE_TIMEOUT;
        loop {
            match tokio::net::lookup_host((host.as_str(), port)).await {
                Ok(addrs) => {
                    for addr in addrs {
                        if addr != local && !out.contains(&Endpoint(addr)) {
                            out.push(Endpoint(addr));
                        }
                    }
                    break;
                }
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!(seed = %host, error = %e, "seed not resolvable yet");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => {
                    tracing::warn!(seed = %host, error = %e, "ignoring a seed that does not resolve");
                    break;
                }
            }
        }
    }
    out
}

/// The node's data plane, served over the transport once it is up.
pub struct DataPlane {
    /// This node as a replica: answers verbs from coordinators.
    pub replica: Arc<crate::replica::Replica>,
    /// This node as a coordinator: follows the ring from gossip.
    pub coordinator: Arc<crate::coordinator::Coordinator>,
}

/// Starts the transport and gossip, wires the system tables and client events.
pub async fn start(
    config: &Config,
    engine: Arc<dyn Engine>,
    identity: LocalIdentity,
    executor: &Executor,
    data: DataPlane,
    cql_events: broadcast::Sender<Event>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<NodeMembership> {
    let generation = next_generation(engine.as_ref())?;
    let listen = SocketAddr::new(config.listen_address, config.storage_port);
    let tls = tls_files(config)?;
    let (transport, inbound) = Transport::bind(TransportConfig::new(listen, tls))
        .await
        .with_context(|| format!("binding the internode transport on {listen} (UDP)"))?;
    let local = Endpoint(transport.local_addr());
    let seeds = resolve_seeds(config, local.0).await;
    let resolved_seeds = seeds.clone();
    if seeds.is_empty() {
        tracing::info!("no seed other than this node: it starts a cluster and waits for others");
    }
    let gossip = GossipConfig {
        cluster_name: config.cluster_name.clone(),
        interval: Duration::from_millis(config.gossip_interval_ms),
        seeds,
        detector: ringdb_gossip::detector::DetectorConfig {
            phi_convict_threshold: config.phi_convict_threshold,
            ..Default::default()
        },
        ..GossipConfig::default()
    };
    let schema_version = executor.schema().version();
    let mut initial_states = vec![
        (AppStateKey::HostId, identity.host_id.to_string()),
        (AppStateKey::Dc, config.dc.clone()),
        (AppStateKey::Rack, config.rack.clone()),
        (AppStateKey::SchemaVersion, schema_version.to_string()),
        (
            AppStateKey::NativeAddress,
            identity.native_address.to_string(),
        ),
        (
            AppStateKey::ReleaseVersion,
            identity.release_version.clone(),
        ),
    ];
    match &identity.tokens {
        Some(tokens) => {
            initial_states.push((AppStateKey::Tokens, encode_tokens(tokens)));
            let status = if identity.bootstrapping {
                NodeStatus::Joining
            } else {
                NodeStatus::Normal
            };
            initial_states.push((AppStateKey::Status, status.as_str().to_string()));
        }
        None => initial_states.push((AppStateKey::Status, NodeStatus::Boot.as_str().to_string())),
    }
    let (membership, gossip_task) = Membership::start(
        MembershipConfig {
            gossip,
            local,
            generation,
            initial_states,
            rng_seed: rand::random(),
        },
        transport.clone(),
        inbound.gossip,
    );
    let schema_store = executor.schema_store().clone();
    let verbs_task = tokio::spawn(crate::replica::serve(
        data.replica.clone(),
        Arc::new(crate::schema_link::StoreSchemaVerbs(schema_store.clone())),
        Some(data.coordinator.clone()),
        inbound.verbs,
        shutdown.clone(),
    ));
    let schema_peers =
        crate::schema_link::GossipSchemaPeers::new(transport.clone(), membership.clone());
    let (schema_changes, schema_changes_task) =
        crate::schema_link::schema_view_changes(&membership, shutdown.clone());
    let schema_events_task = tokio::spawn(crate::schema_link::forward_merged_schema_changes(
        schema_store.clone(),
        cql_events.clone(),
        shutdown.clone(),
    ));
    let schema_sync_task = tokio::spawn(crate::schema::sync::run_schema_sync(
        schema_store.clone(),
        schema_peers.clone(),
        schema_changes,
        shutdown.clone(),
    ));
    executor.set_schema_announcer(move || {
        let store = schema_store.clone();
        let peers = schema_peers.clone();
        Box::pin(async move {
            crate::schema::sync::announce(&store, &*peers, crate::schema_link::SCHEMA_RPC_TIMEOUT)
                .await
        })
    });
    let ring_task = data
        .coordinator
        .attach(transport.clone(), &membership, shutdown.clone());

    {
        let m = membership.clone();
        let hints = data.coordinator.hints().clone();
        executor.set_cluster_info(move || {
            let mut info = cluster_info(&m.view(), m.generation());
            for e in &mut info.endpoints {
                if let Some(id) = e.host_id {
                    let pending = hints.pending(&crate::coordinator::placement::host_id(id));
                    e.pending_hints = pending.hints.min(i64::MAX as u64) as i64;
                }
            }
            info
        });
    }

    let mut tasks = vec![
        gossip_task,
        verbs_task,
        ring_task,
        schema_changes_task,
        schema_sync_task,
        schema_events_task,
    ];
    tasks.push(tokio::spawn(publish_local_changes(
        membership.clone(),
        executor.clone(),
        engine,
        shutdown.clone(),
    )));
    tasks.push(tokio::spawn(export_metrics(
        membership.clone(),
        transport.clone(),
        shutdown.clone(),
    )));
    tasks.push(tokio::spawn(push_client_events(
        membership.clone(),
        cql_events,
        shutdown,
    )));
    Ok(NodeMembership {
        membership,
        transport,
        tasks,
        seeds: resolved_seeds,
    })
}

/// Follows the schema version and the load (bytes on disk, measured at once and then every
/// [`LOAD_REFRESH`]) and publishes them in gossip; the load is also the storage-size metric.
async fn publish_local_changes(
    membership: Membership,
    executor: Executor,
    engine: Arc<dyn Engine>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut schema = executor.schema_store().subscribe();
    let mut load_ticker = tokio::time::interval(LOAD_REFRESH);
    loop {
        tokio::select! {
            changed = schema.changed() => {
                if changed.is_err() {
                    return;
                }
                let version = schema.borrow_and_update().version();
                membership.set_app_state(AppStateKey::SchemaVersion, version.to_string()).await;
            }
            _ = load_ticker.tick() => {
                let e = engine.clone();
                if let Ok(size) = tokio::task::spawn_blocking(move || e.disk_size()).await {
                    metrics::gauge!(crate::metrics::STORAGE_BYTES).set(size as f64);
                    membership.set_app_state(AppStateKey::Load, size.to_string()).await;
                }
            }
            _ = crate::server::stopping(&mut shutdown) => return,
        }
    }
}

/// How often membership and transport figures are exported to `/metrics`.
pub const METRICS_REFRESH: Duration = Duration::from_secs(5);

/// Copies membership and transport counters to the metrics registry.
async fn export_metrics(
    membership: Membership,
    transport: Transport,
    mut shutdown: watch::Receiver<bool>,
) {
    use crate::metrics as m;
    use std::sync::atomic::Ordering::Relaxed;
    let mut ticker = tokio::time::interval(METRICS_REFRESH);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = crate::server::stopping(&mut shutdown) => return,
        }
        let view = membership.view();
        let up = view.endpoints.values().filter(|e| e.alive).count();
        let down = view.endpoints.len() - up;
        metrics::gauge!(m::GOSSIP_NODES, "state" => "up").set(up as f64);
        metrics::gauge!(m::GOSSIP_NODES, "state" => "down").set(down as f64);
        let g = membership.stats();
        metrics::counter!(m::GOSSIP_MESSAGES_RECEIVED).absolute(g.messages_in.load(Relaxed));
        metrics::counter!(m::GOSSIP_MESSAGES_SENT).absolute(g.messages_out.load(Relaxed));
        let t = transport.stats();
        metrics::counter!(m::INTERNODE_BYTES_SENT).absolute(t.bytes_sent);
        metrics::counter!(m::INTERNODE_BYTES_RECEIVED).absolute(t.bytes_received);
        metrics::counter!(m::INTERNODE_HANDSHAKES_REFUSED).absolute(t.handshakes_refused);
        metrics::counter!(m::INTERNODE_REQUESTS_REFUSED).absolute(t.requests_refused_in_flight);
        for (reason, n) in [
            ("queue_full", t.dropped_queue_full),
            ("inbound_full", t.dropped_inbound_full),
            ("unsent", t.dropped_unsent),
            ("blocked", t.dropped_blocked),
        ] {
            metrics::counter!(m::INTERNODE_DROPPED, "reason" => reason).absolute(n);
        }
    }
}

/// Turns membership events into the native protocol's `STATUS_CHANGE` and `TOPOLOGY_CHANGE`.
async fn push_client_events(
    membership: Membership,
    cql_events: broadcast::Sender<Event>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut events = membership.subscribe();
    let mut announcer = EventAnnouncer::default();
    // Nodes known before the first event are in the ring already as far as clients go.
    announcer.seed(&membership.view());
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(event) => {
                    for e in announcer.translate(&event, &membership.view()) {
                        let _ = cql_events.send(e);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::debug!(lost = n, "client event pusher lagged behind membership");
                    announcer.seed(&membership.view());
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = crate::server::stopping(&mut shutdown) => return,
        }
    }
}

/// Decides which client events a membership event means.
#[derive(Default)]
pub struct EventAnnouncer {
    /// Endpoints announced as part of the ring (NEW_NODE sent, or known from the start).
    in_ring: HashSet<Endpoint>,
    /// Their CQL addresses, remembered for REMOVED_NODE after the state is gone.
    native: HashMap<Endpoint, SocketAddr>,
}

impl EventAnnouncer {
    /// Takes the ring members of `view` as already announced.
    pub fn seed(&mut self, view: &ClusterView) {
        for (endpoint, ev) in view.peers() {
            if let Some(addr) = native_address(&ev.state) {
                self.native.insert(*endpoint, addr);
                if in_ring(ev.state.status()) {
                    self.in_ring.insert(*endpoint);
                }
            }
        }
    }

    /// The client events for one membership event, given the view after it.
    pub fn translate(&mut self, event: &MembershipEvent, view: &ClusterView) -> Vec<Event> {
        let mut out = Vec::new();
        let endpoint = match event {
            MembershipEvent::Discovered(e)
            | MembershipEvent::Up(e)
            | MembershipEvent::Down(e)
            | MembershipEvent::Removed(e) => *e,
            MembershipEvent::Restarted { endpoint, .. }
            | MembershipEvent::StateChanged { endpoint, .. } => *endpoint,
        };
        if endpoint == view.local {
            return out;
        }
        let ev = view.endpoints.get(&endpoint);
        if let Some(addr) = ev.and_then(|ev| native_address(&ev.state)) {
            self.native.insert(endpoint, addr);
        }
        let Some(addr) = self.native.get(&endpoint).copied() else {
            return out;
        };
        let status = ev.and_then(|ev| ev.state.status());
        match event {
            MembershipEvent::Removed(_) => {
                if self.in_ring.remove(&endpoint) {
                    out.push(Event::TopologyChange {
                        change: TopologyChangeType::RemovedNode,
                        addr,
                    });
                }
                self.native.remove(&endpoint);
                return out;
            }
            MembershipEvent::Up(_) => {
                self.announce_joined(endpoint, status, addr, &mut out);
                out.push(Event::StatusChange {
                    change: StatusChangeType::Up,
                    addr,
                });
                return out;
            }
            MembershipEvent::Down(_) => {
                if self.in_ring.contains(&endpoint) {
                    out.push(Event::StatusChange {
                        change: StatusChangeType::Down,
                        addr,
                    });
                }
                return out;
            }
            _ => {}
        }
        if status == Some(NodeStatus::Left) {
            if self.in_ring.remove(&endpoint) {
                out.push(Event::TopologyChange {
                    change: TopologyChangeType::RemovedNode,
                    addr,
                });
            }
        } else if ev.is_some_and(|ev| ev.alive) {
            self.announce_joined(endpoint, status, addr, &mut out);
        }
        out
    }

    fn announce_joined(
        &mut self,
        endpoint: Endpoint,
        status: Option<NodeStatus>,
        addr: SocketAddr,
        out: &mut Vec<Event>,
    ) {
        if in_ring(status) && self.in_ring.insert(endpoint) {
            out.push(Event::TopologyChange {
                change: TopologyChangeType::NewNode,
                addr,
            });
        }
    }
}

fn in_ring(status: Option<NodeStatus>) -> bool {
    matches!(
        status,
        Some(NodeStatus::Normal | NodeStatus::Leaving | NodeStatus::Shutdown)
    )
}

fn native_address(state: &ringdb_gossip::state::EndpointState) -> Option<SocketAddr> {
    state.get(AppStateKey::NativeAddress)?.parse().ok()
}

/// The system tables' picture of a cluster view.
pub fn cluster_info(view: &ClusterView, local_generation: u64) -> ClusterInfo {
    let mut info = ClusterInfo {
        local_generation: Some(local_generation.min(i64::MAX as u64) as i64),
        ..ClusterInfo::default()
    };
    for (endpoint, ev) in &view.endpoints {
        let st = &ev.state;
        let host_id = st
            .get(AppStateKey::HostId)
            .and_then(|h| uuid::Uuid::from_str(h).ok());
        let schema_version = st
            .get(AppStateKey::SchemaVersion)
            .and_then(|h| uuid::Uuid::from_str(h).ok());
        let native = native_address(st);
        let status = st.status();
        let tokens = st.tokens();
        info.endpoints.push(EndpointStatus {
            peer: endpoint.0.ip(),
            storage_port: endpoint.0.port(),
            host_id,
            dc: st.get(AppStateKey::Dc).map(str::to_string),
            rack: st.get(AppStateKey::Rack).map(str::to_string),
            status: status
                .map(|s| s.as_str().to_string())
                .unwrap_or_else(|| "UNKNOWN".to_string()),
            up: ev.alive,
            load: st.get(AppStateKey::Load).and_then(|l| l.parse().ok()),
            tokens: tokens.clone(),
            generation: st.heartbeat.generation.min(i64::MAX as u64) as i64,
            heartbeat: st.heartbeat.version.min(i64::MAX as u64) as i64,
            schema_version,
            native_address: native,
            release_version: st.get(AppStateKey::ReleaseVersion).map(str::to_string),
            local: *endpoint == view.local,
            pending_hints: 0,
        });
        // system.peers: the other nodes that are part of the ring and fully described (drivers
        // skip rows without host id, tokens or address).
        if *endpoint == view.local || !in_ring(status) || tokens.is_empty() {
            continue;
        }
        let (Some(host_id), Some(native)) = (host_id, native) else {
            continue;
        };
        info.peers.push(PeerInfo {
            peer: endpoint.0.ip(),
            peer_port: endpoint.0.port(),
            rpc_address: native.ip(),
            rpc_port: native.port(),
            host_id,
            dc: st.get(AppStateKey::Dc).unwrap_or("unknown").to_string(),
            rack: st.get(AppStateKey::Rack).unwrap_or("unknown").to_string(),
            tokens,
            release_version: st
                .get(AppStateKey::ReleaseVersion)
                .unwrap_or("")
                .to_string(),
            schema_version,
        });
    }
    info
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringdb_gossip::state::{EndpointState, EndpointView, VersionedValue};
    use std::collections::BTreeMap;

    fn ep(i: u8) -> Endpoint {
        Endpoint(SocketAddr::from(([127, 0, 0, i], 7000)))
    }

    fn state(i: u8, status: &str) -> EndpointState {
        let mut st = EndpointState::new(100 + i as u64);
        let mut v = 0;
        let mut set = |k, val: String| {
            v += 1;
            st.app_states.insert(
                k,
                VersionedValue {
                    value: val,
                    version: v,
                },
            );
        };
        set(AppStateKey::Status, status.to_string());
        set(
            AppStateKey::HostId,
            uuid::Uuid::from_u128(i as u128).to_string(),
        );
        set(AppStateKey::Tokens, encode_tokens(&[i as i64 * 10]));
        set(AppStateKey::Dc, "dc1".into());
        set(AppStateKey::Rack, format!("rack{i}"));
        set(AppStateKey::NativeAddress, format!("127.0.0.{i}:9042"));
        st
    }

    fn view(entries: &[(u8, &str, bool)]) -> ClusterView {
        let mut endpoints = BTreeMap::new();
        for (i, status, alive) in entries {
            endpoints.insert(
                ep(*i),
                EndpointView {
                    state: state(*i, status),
                    alive: *alive,
                },
            );
        }
        ClusterView {
            local: ep(1),
            endpoints,
        }
    }

    #[test]
    fn peers_list_ring_members_other_than_self() {
        let v = view(&[
            (1, "NORMAL", true),
            (2, "NORMAL", false),
            (3, "JOINING", true),
            (4, "SHUTDOWN", false),
        ]);
        let info = cluster_info(&v, 77);
        let peers: Vec<_> = info.peers.iter().map(|p| p.peer.to_string()).collect();
        assert_eq!(peers, vec!["127.0.0.2", "127.0.0.4"]);
        assert_eq!(info.endpoints.len(), 4);
        assert!(info.endpoints[0].local && info.endpoints[0].up);
        assert!(!info.endpoints[1].up);
        assert_eq!(info.endpoints[2].status, "JOINING");
        assert_eq!(info.local_generation, Some(77));
        assert_eq!(info.peers[0].rack, "rack2");
        assert_eq!(info.peers[0].tokens, vec![20]);
    }

    #[test]
    fn client_events_follow_membership() {
        let mut a = EventAnnouncer::default();
        let v0 = view(&[(1, "NORMAL", true)]);
        a.seed(&v0);
        let addr2: SocketAddr = "127.0.0.2:9042".parse().unwrap();
        // A new node: discovered (no event yet), then up → NEW_NODE + UP.
        let v1 = view(&[(1, "NORMAL", true), (2, "NORMAL", false)]);
        assert!(a
            .translate(&MembershipEvent::Discovered(ep(2)), &v1)
            .is_empty());
        let v2 = view(&[(1, "NORMAL", true), (2, "NORMAL", true)]);
        assert_eq!(
            a.translate(&MembershipEvent::Up(ep(2)), &v2),
            vec![
                Event::TopologyChange {
                    change: TopologyChangeType::NewNode,
                    addr: addr2
                },
                Event::StatusChange {
                    change: StatusChangeType::Up,
                    addr: addr2
                }
            ]
        );
        // Down, then up again: status changes only.
        assert_eq!(
            a.translate(&MembershipEvent::Down(ep(2)), &v1),
            vec![Event::StatusChange {
                change: StatusChangeType::Down,
                addr: addr2
            }]
        );
        // A joining node is announced when it turns NORMAL.
        let v3 = view(&[(1, "NORMAL", true), (3, "JOINING", true)]);
        assert_eq!(
            a.translate(&MembershipEvent::Up(ep(3)), &v3),
            vec![Event::StatusChange {
                change: StatusChangeType::Up,
                addr: "127.0.0.3:9042".parse().unwrap()
            }]
        );
        let v4 = view(&[(1, "NORMAL", true), (3, "NORMAL", true)]);
        let changed = MembershipEvent::StateChanged {
            endpoint: ep(3),
            keys: vec![AppStateKey::Status],
        };
        assert_eq!(
            a.translate(&changed, &v4),
            vec![Event::TopologyChange {
                change: TopologyChangeType::NewNode,
                addr: "127.0.0.3:9042".parse().unwrap()
            }]
        );
        // Leaving the ring for good.
        let v5 = view(&[(1, "NORMAL", true), (3, "LEFT", true)]);
        assert_eq!(
            a.translate(&changed, &v5),
            vec![Event::TopologyChange {
                change: TopologyChangeType::RemovedNode,
                addr: "127.0.0.3:9042".parse().unwrap()
            }]
        );
        // Nothing about ourselves.
        assert!(a.translate(&MembershipEvent::Down(ep(1)), &v5).is_empty());
    }
}
