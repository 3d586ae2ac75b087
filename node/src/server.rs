//! Wires a node together and runs it until shutdown.
//!
//! Start-up order: open the storage engine in `data_dir`; load (or create, on first start) the
//! node's host id, and its vnode tokens once chosen, from the engine's meta space; start the
//! flusher that implements `commitlog_sync`; load the schema; build the coordinator, the batchlog
//! replay and the executor; install metrics; bind
//! the CQL listener; start the internode transport and gossip ([`crate::membership`]); on a first
//! start, choose tokens against the ring gossip shows ([`crate::join`]) and persist them; start
//! the admin API ([`crate::admin`]); then serve CQL. The node is ready when [`start`] returns.
//!
//! Shutdown is graceful and bounded: announce `SHUTDOWN` in gossip (peers mark the node down at
//! once), stop accepting connections, let in-flight requests finish (for at most
//! [`DRAIN_TIMEOUT`]), close the transport, then a final flush of the engine.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::commitlog::{CommitSync, SyncMode};
use crate::config::{CommitlogSync, Config};
use crate::cql_server::{CqlServer, ServerLimits};
use crate::executor::{Executor, LocalNodeInfo};
use crate::schema::{SchemaStore, TableDef};
use crate::storage::{
    Engine, FailStop, PurgeStats, PurgeWalk, Seconds, SledEngine, TableId, PURGE_PAGE,
};

/// How long shutdown waits for in-flight requests before closing connections anyway.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Release version reported to clients: drivers parse it as a Cassandra version and pick their
/// schema queries accordingly (4.x: `system_schema.*`, server-side DESCRIBE).
pub const RELEASE_VERSION: &str = "4.1.0";

/// Knobs for starting a node in-process.
#[derive(Debug, Clone, Copy)]
pub struct StartOptions {
    /// Install the process-global Prometheus recorder (only one per process: the daemon does,
    /// in-process test nodes and the demo don't).
    pub install_metrics: bool,
}

/// A running node.
pub struct RunningNode {
    cql_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    engine: Arc<dyn Engine>,
    membership: Option<crate::membership::NodeMembership>,
    /// Turns true when the node should stop on its own (it was decommissioned).
    exit: watch::Receiver<bool>,
    /// Turns to the reason once the storage failed ([`FailStop`]).
    storage_failure: watch::Receiver<Option<String>>,
    /// Reloads the node's certificates (`ringdb reload-certs`, SIGHUP).
    certs: Arc<crate::cert_reload::CertReloader>,
}

impl RunningNode {
    /// Resolves when the node asks to be stopped (it left the ring: `ringdb decommission`).
    pub async fn exit_requested(&self) {
        let mut exit = self.exit.clone();
        if exit.wait_for(|e| *e).await.is_err() {
            // Nothing can ask any more (no admin API): never.
            std::future::pending::<()>().await;
        }
    }

    /// Resolves with the reason when the storage failed (corrupt data, a failed write or
    /// flush): the node already refuses every read and write and must be stopped.
    pub async fn storage_failed(&self) -> String {
        let mut failure = self.storage_failure.clone();
        let reason = match failure.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone(),
            Err(_) => None,
        };
        match reason {
            Some(reason) => reason,
            // The storage is gone with the node: it cannot fail any more.
            None => std::future::pending().await,
        }
    }

    /// Where the CQL listener is bound (useful when the configured port was 0).
    pub fn cql_addr(&self) -> SocketAddr {
        self.cql_addr
    }

    /// Where gossip runs (the internode transport's address).
    pub fn storage_addr(&self) -> Option<SocketAddr> {
        self.membership.as_ref().map(|m| m.transport.local_addr())
    }

    /// Reloads the node's certificates without a restart ([`crate::cert_reload`]).
    pub fn cert_reloader(&self) -> Arc<crate::cert_reload::CertReloader> {
        self.certs.clone()
    }

    /// The membership handle.
    pub fn membership(&self) -> Option<&ringdb_gossip::membership::Membership> {
        self.membership.as_ref().map(|m| &m.membership)
    }

    /// Stops the node: SHUTDOWN announced, no new connections, in-flight requests drained
    /// (bounded), transport closed, engine flushed.
    pub async fn shutdown(mut self) {
        let membership = self.membership.take();
        if let Some(m) = &membership {
            m.membership
                .shutdown(crate::membership::ANNOUNCE_TIMEOUT)
                .await;
        }
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            if tokio::time::timeout(DRAIN_TIMEOUT + Duration::from_secs(1), task)
                .await
                .is_err()
            {
                tracing::warn!("a node task did not stop in time");
            }
        }
        if let Some(m) = membership {
            m.shutdown().await;
        }
        let engine = self.engine.clone();
        match tokio::task::spawn_blocking(move || engine.checkpoint()).await {
            Ok(Ok(())) => tracing::info!("storage flushed"),
            Ok(Err(e)) => tracing::error!(error = %e, "final flush failed"),
            Err(e) => tracing::error!(error = %e, "final flush task failed"),
        }
        // Request tasks finishing their last answer may still hold the engine for a moment; the
        // node is stopped (and its data directory free to reopen) once they let go.
        let deadline = std::time::Instant::now() + DRAIN_TIMEOUT;
        while Arc::strong_count(&self.engine) > 1 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if Arc::strong_count(&self.engine) > 1 {
            tracing::warn!("storage still referenced after shutdown; it closes when released");
        }
        tracing::info!("node stopped");
    }
}

/// Starts a node with `config` and returns once it serves CQL.
pub async fn start(config: Config, options: StartOptions) -> anyhow::Result<RunningNode> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data_dir {}", config.data_dir.display()))?;
    let db_path = config.data_dir.join("db");
    let cache = config.storage_cache_size_mb.saturating_mul(1 << 20);
    let sled: Arc<dyn Engine> = {
        let path = db_path.clone();
        Arc::new(
            tokio::task::spawn_blocking(move || SledEngine::open(&path, cache))
                .await?
                .with_context(|| format!("opening storage in {}", db_path.display()))?
                .with_min_free_space(config.min_free_disk_space),
        )
    };
    // Everything reaches storage through the fail-stop wrapper: after corruption or a failed
    // flush nothing is served any more, and the node stops (see `storage::failstop`).
    let failstop = Arc::new(FailStop::new(sled));
    let storage_failure = failstop.failure();
    let engine: Arc<dyn Engine> = failstop;

    if engine
        .meta_get(crate::decommission::META_DECOMMISSIONED)?
        .is_some()
    {
        anyhow::bail!(
            "this node was decommissioned and will not rejoin the ring with its old data: to add \
             it again as a new node, empty its data directory ({})",
            config.data_dir.display()
        );
    }
    let identity = load_or_create_identity(engine.as_ref())?;
    let resume_bootstrap =
        identity.tokens.is_some() && engine.meta_get(META_BOOTSTRAP_PENDING)?.is_some();
    tracing::info!(
        host_id = %identity.host_id,
        tokens = identity.tokens.as_ref().map_or(0, Vec::len),
        data_dir = %config.data_dir.display(),
        "node identity"
    );

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mode = match config.commitlog_sync {
        CommitlogSync::Batch => SyncMode::Batch,
        CommitlogSync::Periodic => SyncMode::Periodic {
            period_ms: config.commitlog_sync_period_ms,
        },
    };
    let (commit, flusher) = CommitSync::start(mode, engine.clone(), shutdown_rx.clone());

    let schema = SchemaStore::open(engine.clone()).context("loading the schema")?;
    let node_info = LocalNodeInfo {
        cluster_name: config.cluster_name.clone(),
        host_id: identity.host_id,
        listen_address: config.listen_address,
        listen_port: config.storage_port,
        rpc_address: config.native_transport_address,
        rpc_port: config.native_transport_port,
        dc: config.dc.clone(),
        rack: config.rack.clone(),
        tokens: identity.tokens.clone().unwrap_or_default(),
        release_version: RELEASE_VERSION.to_string(),
        partitioner: "org.apache.cassandra.dht.Murmur3Partitioner".to_string(),
    };
    let clock = crate::clock::HybridClock::system();
    let hints = crate::hints::HintStore::open(
        engine.clone(),
        commit.clone(),
        crate::hints::HintConfig {
            enabled: config.hinted_handoff_enabled,
            window: Duration::from_millis(config.max_hint_window_ms),
            max_bytes: config.max_hints_size,
        },
    )
    .context("opening the hint store")?;
    let replica =
        crate::replica::Replica::new(engine.clone(), commit, schema.clone(), clock.clone());
    replica.set_hints(hints.clone());
    let coordinator = crate::coordinator::Coordinator::new(
        replica.clone(),
        schema.clone(),
        hints,
        crate::coordinator::CoordinatorConfig {
            local: crate::coordinator::placement::host_id(identity.host_id),
            dc: config.dc.clone(),
            rack: config.rack.clone(),
            write_timeout: Duration::from_millis(config.write_request_timeout_ms),
            read_timeout: Duration::from_millis(config.read_request_timeout_ms),
            stream_throughput: config.stream_throughput_outbound,
        },
    );
    let executor = Executor::with_data_path(coordinator.clone(), schema, node_info, clock);
    let batchlog_replay = tokio::spawn(crate::coordinator::run_batchlog_replay(
        coordinator.clone(),
        shutdown_rx.clone(),
    ));

    if options.install_metrics && config.prometheus_port != 0 {
        let addr = SocketAddr::new(config.native_transport_address, config.prometheus_port);
        crate::metrics::install(addr)
            .with_context(|| format!("starting the Prometheus endpoint on {addr}"))?;
        tracing::info!(%addr, "metrics at http://{addr}/metrics");
    }

    let hint_replay = tokio::spawn(crate::coordinator::run_hint_replay(
        coordinator.clone(),
        config.hinted_handoff_throttle,
        shutdown_rx.clone(),
    ));

    let mut tasks = vec![flusher, batchlog_replay, hint_replay];
    tasks.push(tokio::spawn(crate::schema::sync::purge_dropped_tables(
        executor.schema_store().clone(),
        engine.clone(),
        shutdown_rx.clone(),
    )));
    tasks.push(tokio::spawn(purge_worker(
        engine.clone(),
        executor.clone(),
        replica.purge_queue(),
        config.compaction_throughput,
        shutdown_rx.clone(),
    )));

    let cql_addr = SocketAddr::new(
        config.native_transport_address,
        config.native_transport_port,
    );
    let limits = ServerLimits {
        max_frame_len: config.native_transport_max_frame_size as usize,
        max_requests_per_connection: config.native_transport_max_requests_per_connection as usize,
        max_connections: config.native_transport_max_connections as usize,
        overload_mode: crate::admission::OverloadMode::configured(
            config.native_transport_throw_on_overload,
        ),
        max_concurrent_requests: config.native_transport_max_concurrent_requests as usize,
        max_concurrent_request_bytes: config.native_transport_max_concurrent_requests_in_bytes,
        startup_timeout: Duration::from_millis(config.native_transport_idle_startup_timeout_ms),
    };
    let auth = auth_from_config(&config)?;
    if let Some(auth) = &auth {
        executor.enable_auth(auth.clone());
        tracing::info!(
            superuser = auth.superuser_name(),
            "authentication on (authenticator: password)"
        );
    }
    let client_tls = crate::client_tls::load(&config.client_encryption)?;
    if let Some(tls) = &client_tls {
        tracing::info!(optional = tls.optional, "client TLS on");
    }
    let server = CqlServer::bind(cql_addr, executor.clone(), limits)
        .await
        .with_context(|| format!("binding the CQL listener on {cql_addr}"))?
        .with_tls(client_tls.clone());
    let cql_addr = server.local_addr();
    let repair = crate::repair::RepairService::new(
        coordinator.clone(),
        executor.schema_store().clone(),
        shutdown_rx.clone(),
    );

    let membership = crate::membership::start(
        &config,
        engine.clone(),
        crate::membership::LocalIdentity {
            host_id: identity.host_id,
            tokens: identity.tokens.clone(),
            bootstrapping: resume_bootstrap,
            native_address: cql_addr,
            release_version: RELEASE_VERSION.to_string(),
        },
        &executor,
        crate::membership::DataPlane {
            replica,
            coordinator: coordinator.clone(),
        },
        server.event_sender(),
        shutdown_rx.clone(),
    )
    .await?;
    tracing::info!(
        storage = %membership.transport.local_addr(),
        generation = membership.membership.generation(),
        "internode transport and gossip started"
    );
    if let Some(path) = &config.fault_file {
        tasks.push(tokio::spawn(crate::faults::watch_file(
            path.clone(),
            membership.transport.clone(),
            coordinator.lose_writes(),
            shutdown_rx.clone(),
        )));
    }
    if identity.tokens.is_none() {
        let engine_for_tokens = engine.clone();
        let local = membership.membership.local();
        let auto_bootstrap = config.auto_bootstrap;
        let chosen = membership
            .join(
                &config,
                identity.host_id,
                move |tokens, bootstrapping| {
                    persist_tokens(engine_for_tokens.as_ref(), tokens, bootstrapping)
                },
                // Data to stream exists only where another node already owns tokens.
                move |view| {
                    auto_bootstrap
                        && view.endpoints.iter().any(|(e, ev)| {
                            *e != local
                                && crate::coordinator::placement::in_ring(ev.state.status())
                                && !ev.state.tokens().is_empty()
                        })
                },
                shutdown_rx.clone(),
            )
            .await?;
        match chosen {
            Some((tokens, false)) => tracing::info!(tokens = tokens.len(), "joined the ring"),
            Some((tokens, true)) => {
                bootstrap(&config, &membership, &coordinator, executor.schema_store()).await?;
                finish_bootstrap(engine.as_ref(), &membership).await?;
                tracing::info!(tokens = tokens.len(), "bootstrapped: joined the ring");
            }
            None => anyhow::bail!("stopped before joining the ring"),
        }
    } else if resume_bootstrap {
        tracing::info!("resuming a bootstrap that did not finish: streaming this node's ranges");
        bootstrap(&config, &membership, &coordinator, executor.schema_store()).await?;
        finish_bootstrap(engine.as_ref(), &membership).await?;
        tracing::info!("bootstrapped: joined the ring");
    }
    let certs = Arc::new(crate::cert_reload::CertReloader::new(
        membership.transport.clone(),
        client_tls.map(|tls| (config.client_encryption.clone(), tls)),
    ));
    let active = certs.active();
    tracing::info!(
        internode_sha256 = %active.internode.sha256,
        internode_not_after = %active.internode.not_after,
        client_sha256 = active.client.as_ref().map(|c| c.sha256.as_str()),
        client_not_after = active.client.as_ref().map(|c| c.not_after.as_str()),
        "certificates in use (`ringdb reload-certs` or SIGHUP reloads them)"
    );
    let (exit_tx, exit) = watch::channel(false);
    let ring_change = crate::decommission::RingChange::new(
        coordinator.clone(),
        membership.membership.clone(),
        engine.clone(),
        join_settle(&config),
        exit_tx,
    );
    let admin = crate::admin::start(
        &config,
        identity.host_id,
        cql_addr,
        repair,
        ring_change,
        certs.clone(),
        &shutdown_rx,
    );
    tasks.extend(admin.await);
    if let Some(auth) = auth {
        tasks.push(tokio::spawn(
            auth.keep_superuser(executor.clone(), shutdown_rx.clone()),
        ));
    }
    tasks.push(tokio::spawn(server.run(shutdown_rx)));
    tracing::info!(%cql_addr, cluster = %config.cluster_name, "ringdb node ready: serving CQL");

    Ok(RunningNode {
        cql_addr,
        shutdown: shutdown_tx,
        tasks,
        engine,
        membership: Some(membership),
        exit,
        storage_failure,
        certs,
    })
}

/// Authentication and authorization from the configuration; `None` with `authenticator:
/// allow_all`.
fn auth_from_config(config: &Config) -> anyhow::Result<Option<Arc<crate::auth::Auth>>> {
    if config.authenticator != crate::config::Authenticator::Password {
        return Ok(None);
    }
    let Some(password) = config.auth_superuser_password.as_ref() else {
        anyhow::bail!(
            "authenticator: password needs auth_superuser_password (or RINGDB_AUTH_SUPERUSER_PASSWORD)"
        );
    };
    Ok(Some(crate::auth::Auth::new(crate::auth::AuthSettings {
        superuser_name: config.auth_superuser_name.clone(),
        superuser_password: password.0.clone(),
        cache_validity: Duration::from_millis(config.auth_cache_validity_ms),
        max_failed_logins: config.auth_max_failed_logins,
        failed_login_lockout: Duration::from_millis(config.auth_failed_login_lockout_ms),
    })))
}

/// How long a node changing the ring waits for the others to notice (the join settle time).
fn join_settle(config: &Config) -> Duration {
    crate::join::JoinSettings::new(
        config.num_tokens as usize,
        config.allocate_tokens_for_local_replication_factor as usize,
        Duration::from_millis(config.gossip_interval_ms),
    )
    .settle
}

/// Streams in the data of the ranges this node takes over (it gossips `JOINING`): once its
/// schema agrees with the cluster's and the other nodes have had time to see it joining (so they
/// send it new writes as a pending replica), see [`crate::coordinator::streaming`].
async fn bootstrap(
    config: &Config,
    membership: &crate::membership::NodeMembership,
    coordinator: &crate::coordinator::Coordinator,
    schema: &crate::schema::SchemaStore,
) -> anyhow::Result<()> {
    if !membership
        .wait_schema_agreement(BOOTSTRAP_SCHEMA_WAIT)
        .await
    {
        tracing::warn!(
            "schema not in agreement with the cluster after {BOOTSTRAP_SCHEMA_WAIT:?}: \
             streaming the keyspaces known so far"
        );
    }
    if schema.current().user_keyspaces().next().is_none() {
        return Ok(()); // nothing to stream
    }
    // One topology change at a time: joining while a node leaves would stream from replicas
    // that are about to hand their ranges elsewhere.
    let view = membership.membership.view();
    if let Some((leaving, _)) = view.endpoints.iter().find(|(e, ev)| {
        **e != view.local && ev.state.status() == Some(ringdb_gossip::state::NodeStatus::Leaving)
    }) {
        anyhow::bail!(
            "cannot bootstrap while {} is leaving the ring (one topology change at a time): start \
             this node again once the decommission is done",
            leaving.0
        );
    }
    let settle = join_settle(config);
    tracing::info!(
        ?settle,
        "bootstrapping: waiting for the cluster to see this node joining"
    );
    tokio::time::sleep(settle).await;
    let started = std::time::Instant::now();
    let stats = coordinator
        .bootstrap(&|_| {})
        .await
        .map_err(|e| anyhow::anyhow!("bootstrap failed: {e}"))?;
    let seconds = started.elapsed().as_secs_f64();
    tracing::info!(
        ranges = stats.ranges,
        partitions = stats.partitions,
        bytes = stats.bytes,
        seconds,
        mib_per_second = stats.bytes as f64 / (1u64 << 20) as f64 / seconds.max(1e-9),
        "bootstrap streaming done"
    );
    Ok(())
}

/// How long a bootstrapping node waits for its schema to agree with the cluster's.
const BOOTSTRAP_SCHEMA_WAIT: Duration = Duration::from_secs(30);

/// The node's identity, created on first start and persisted.
struct Identity {
    host_id: uuid::Uuid,
    /// `None` until the node has chosen its tokens (first start).
    tokens: Option<Vec<i64>>,
}

/// Persists the tokens a node chose at its first start (they never change afterwards), and
/// whether it still has to stream its ranges in.
fn persist_tokens(engine: &dyn Engine, tokens: &[i64], bootstrapping: bool) -> anyhow::Result<()> {
    let bytes: Vec<u8> = tokens.iter().flat_map(|t| t.to_be_bytes()).collect();
    engine.meta_put(META_TOKENS, &bytes)?;
    if bootstrapping {
        engine.meta_put(META_BOOTSTRAP_PENDING, b"1")?;
    }
    engine.flush()?;
    Ok(())
}

/// Records that the bootstrap is done, then announces NORMAL.
async fn finish_bootstrap(
    engine: &dyn Engine,
    membership: &crate::membership::NodeMembership,
) -> anyhow::Result<()> {
    engine.meta_delete(META_BOOTSTRAP_PENDING)?;
    engine.flush()?;
    membership.become_normal().await;
    Ok(())
}

const META_HOST_ID: &[u8] = b"local/host_id";
const META_TOKENS: &[u8] = b"local/tokens";
/// Set from choosing tokens with data to stream until the streaming is done: a node restarted
/// in between resumes its bootstrap instead of serving ranges it never received.
const META_BOOTSTRAP_PENDING: &[u8] = b"local/bootstrap_pending";

fn load_or_create_identity(engine: &dyn Engine) -> anyhow::Result<Identity> {
    let host_id = match engine.meta_get(META_HOST_ID)? {
        Some(bytes) => uuid::Uuid::from_slice(&bytes).context("corrupt host id in storage")?,
        None => {
            let id = uuid::Uuid::new_v4();
            engine.meta_put(META_HOST_ID, id.as_bytes())?;
            id
        }
    };
    let tokens = match engine.meta_get(META_TOKENS)? {
        Some(bytes) => {
            if bytes.len() % 8 != 0 || bytes.is_empty() {
                anyhow::bail!("corrupt token list in storage ({} bytes)", bytes.len());
            }
            Some(
                bytes
                    .chunks_exact(8)
                    .map(|c| i64::from_be_bytes(c.try_into().expect("chunks of 8")))
                    .collect(),
            )
        }
        // First start: tokens are chosen against the ring once gossip runs (`join`).
        None => None,
    };
    engine.flush()?;
    Ok(Identity { host_id, tokens })
}

/// How often expired data and old tombstones are purged.
pub const PURGE_INTERVAL: Duration = Duration::from_secs(600);

/// The background compaction of expired data: every [`PURGE_INTERVAL`], each user table that
/// holds something old enough to purge ([`crate::purge`]) drops cells whose TTL ran out and
/// tombstones older than its `gc_grace_seconds` (never younger, so that repair cannot
/// resurrect deleted data within the grace period). The walk goes in pages of
/// [`crate::storage::PURGE_PAGE`] partitions, held to `throughput` bytes read per second
/// (`compaction_throughput`; 0: unthrottled), so that it leaves the cores and the disk to the
/// clients.
async fn purge_worker(
    engine: Arc<dyn Engine>,
    executor: Executor,
    queue: Arc<crate::purge::PurgeQueue>,
    throughput: u64,
    mut shutdown: watch::Receiver<bool>,
) {
    // What the node opened may hold anything: its first pass walks every table it has now.
    let schema = executor.schema();
    for ks in schema.user_keyspaces() {
        for table in schema.tables(&ks.name) {
            queue.mark(table.id, Seconds::MIN);
        }
    }
    let pacer = crate::pace::Pacer::new(throughput);
    let mut ticker = tokio::time::interval(PURGE_INTERVAL);
    // A paced walk may outlast the interval: the next pass then starts one interval after it
    // ends, not at once for every tick it missed.
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await; // the first tick is immediate; start one interval after boot
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = crate::server::stopping(&mut shutdown) => return,
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let schema = executor.schema();
        let mut tables: HashMap<TableId, Arc<TableDef>> = schema
            .user_keyspaces()
            .flat_map(|ks| schema.tables(&ks.name).cloned().collect::<Vec<_>>())
            .map(|t| (t.id, t))
            .collect();
        let candidates: Vec<(TableId, Seconds)> =
            tables.values().map(|t| (t.id, gc_grace(t))).collect();
        let due = queue.take(&candidates, now);
        if due.is_empty() {
            continue;
        }
        for table in due.iter().filter_map(|id| tables.remove(id)) {
            let id = table.id;
            let walk = purge_table(&engine, &pacer, id, now, gc_grace(&table));
            let result = tokio::select! {
                result = walk => result,
                // The table is queued again when the node starts.
                _ = crate::server::stopping(&mut shutdown) => return,
            };
            match result {
                Ok((stats, bytes)) => {
                    if stats.cells_purged + stats.tombstones_purged > 0 {
                        tracing::info!(
                            table = %format!("{}.{}", table.keyspace, table.name),
                            cells = stats.cells_purged,
                            tombstones = stats.tombstones_purged,
                            waiting = stats.waiting,
                            read_mb = bytes >> 20,
                            "purged expired data"
                        );
                    }
                    if let Some(next) = stats.next {
                        queue.mark(id, next);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, table = %table.name, "purge failed");
                    queue.mark(id, Seconds::MIN);
                }
            }
        }
        let trim = tokio::time::Instant::now();
        let _ = tokio::task::spawn_blocking(release_freed_memory).await;
        tracing::info!(
            tables = due.len(),
            trim_ms = trim.elapsed().as_millis() as u64,
            "purge pass done"
        );
    }
}

/// Purges one table page by page on the blocking pool, each page paced by `pacer`: what it
/// removed and kept, and the bytes it read. A page that skipped a corrupt partition does not
/// stop the walk; the first such error is the result once the rest of the table is done.
async fn purge_table(
    engine: &Arc<dyn Engine>,
    pacer: &crate::pace::Pacer,
    table: TableId,
    now: Seconds,
    gc_grace: Seconds,
) -> Result<(PurgeStats, u64), String> {
    let mut walk = PurgeWalk::default();
    let mut after = None;
    loop {
        let started = tokio::time::Instant::now();
        let engine = engine.clone();
        let page = tokio::task::spawn_blocking(move || {
            engine.purge_page(table, after.as_ref(), PURGE_PAGE, now, gc_grace)
        })
        .await
        .map_err(|e| format!("purge task failed: {e}"))?
        .map_err(|e| e.to_string())?;
        let bytes = page.bytes_read;
        after = walk.add(page);
        pacer.pace(bytes, started).await;
        if after.is_none() {
            return walk.finish().map_err(|e| e.to_string());
        }
    }
}

/// A table's `gc_grace_seconds`, as the purge counts it.
fn gc_grace(table: &TableDef) -> Seconds {
    Seconds::from(table.options.gc_grace_seconds.max(0))
}

/// Gives the pages the allocator holds free back to the kernel. A purge pass reads every
/// partition of a table on one blocking thread; glibc keeps what that thread allocated and
/// freed in its own arena, so without this the node's resident memory steps up by the walk's
/// working set (80-90 MB over 1 M rows of 1 KiB in `bench/run`'s memory part) and stays there.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointer and only returns free pages of the allocator's own
    // arenas to the kernel; it is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Resolves once the node's shutdown signal turns true, or when its sender is gone (the node
/// was dropped without a graceful stop): background loops end either way instead of spinning on
/// a closed channel.
pub(crate) async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// A background worker's loop: runs `round` every `interval` (the first one interval after the
/// call), until `shutdown` turns true or its sender is gone — also in the middle of a round,
/// which is then dropped where it stands (workers keep their state durable between rounds).
pub(crate) async fn every<F, Fut>(
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
    mut round: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await; // the first tick is immediate
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stopping(&mut shutdown) => return,
        }
        tokio::select! {
            () = round() => {}
            _ = stopping(&mut shutdown) => return,
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{Cell, CellKey, Liveness, Mutation, PartitionKey, RowUpdate, Slice};

    /// A row of `table` in partition `n`, expiring at `expires_at`.
    fn expiring_row(table: TableId, n: u32, expires_at: Seconds) -> Mutation {
        Mutation {
            table,
            partition: PartitionKey {
                token: i64::from(n) * 7_919,
                key: n.to_be_bytes().to_vec(),
            },
            partition_deletion: None,
            range_deletions: Vec::new(),
            rows: vec![RowUpdate {
                liveness: Some(Liveness::expiring(1, 60, expires_at)),
                cells: vec![(
                    CellKey {
                        column: 1,
                        path: None,
                    },
                    Cell::expiring(1, 60, expires_at, vec![7u8; 200]),
                )],
                ..RowUpdate::default()
            }],
        }
    }

    #[tokio::test]
    async fn the_purge_walks_every_page_at_most_at_the_throughput() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine: Arc<dyn Engine> =
            Arc::new(SledEngine::open(dir.path(), 8 << 20).expect("open"));
        let table = TableId::from_u128(9);
        // Three pages and a bit: rows 0..400 expired at 100, rows 400..700 expire at 5 000.
        let rows: Vec<Mutation> = (0..700)
            .map(|n| expiring_row(table, n, if n < 400 { 100 } else { 5_000 }))
            .collect();
        engine.apply_all(&rows).expect("apply");
        let unthrottled = crate::pace::Pacer::new(0);
        let (_, bytes) = purge_table(&engine, &unthrottled, table, 150, 1_000)
            .await
            .expect("dry walk");
        assert!(bytes > 700 * 200, "every row read: {bytes} bytes");

        // Throttled to the table's bytes in one second: the walk takes at least that, and
        // removes what is old enough, nothing else.
        let pacer = crate::pace::Pacer::new(bytes);
        let started = tokio::time::Instant::now();
        let (stats, read) = purge_table(&engine, &pacer, table, 1_101, 1_000)
            .await
            .expect("purge");
        let took = started.elapsed();
        assert_eq!(read, bytes, "the same walk");
        assert!(
            took >= Duration::from_millis(990),
            "paced walk took {took:?}"
        );
        assert_eq!(
            stats.cells_purged,
            400 * 2,
            "liveness and cell of each expired row"
        );
        assert_eq!(stats.waiting, 300 * 2);
        assert_eq!(stats.next, Some(5_000));
        let left = engine
            .scan(
                table,
                &crate::storage::ScanRange {
                    after: None,
                    end_token: None,
                },
                &Slice::all(),
                usize::MAX,
                0,
            )
            .expect("scan");
        assert_eq!(
            left.len(),
            300,
            "the partitions not expired long enough stay"
        );
    }
}
