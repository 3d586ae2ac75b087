//! Schema synchronization over the cluster: the schema sync driver ([`crate::schema::sync`]) is
//! independent of the network; this module gives it its peers (from the gossip view, with the
//! schema version each one gossips) and its wire (the `SchemaPull`/`SchemaPush` verbs over the
//! internode transport), and answers those verbs for other nodes.

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::watch;

use ringdb_gossip::membership::Membership;
use ringdb_gossip::state::AppStateKey;
use ringdb_gossip::transport::{Channel, Transport};

use crate::replica::SchemaVerbs;
use crate::schema::sync::SchemaPeers;
use crate::schema::{SchemaSnapshot, SchemaStore};
use crate::verbs::{self, ReplicaError, VerbRequest, VerbResponse};

/// How long one schema pull or push may take.
pub const SCHEMA_RPC_TIMEOUT: Duration = Duration::from_secs(2);

/// The live peers of the gossip view, reached over the transport.
pub struct GossipSchemaPeers {
    transport: Transport,
    membership: Membership,
}

impl GossipSchemaPeers {
    /// Peers from `membership`'s view, reached through `transport`.
    pub fn new(transport: Transport, membership: Membership) -> Arc<GossipSchemaPeers> {
        Arc::new(GossipSchemaPeers {
            transport,
            membership,
        })
    }

    async fn call(&self, peer: SocketAddr, request: &VerbRequest) -> Result<VerbResponse, String> {
        let body = verbs::encode(request)?;
        let answer = self
            .transport
            .request(peer, Channel::Verb, body, SCHEMA_RPC_TIMEOUT)
            .await
            .map_err(|e| e.to_string())?;
        verbs::decode(&answer)
    }
}

impl SchemaPeers for GossipSchemaPeers {
    fn live_peers(&self) -> Vec<(SocketAddr, Option<uuid::Uuid>)> {
        self.membership
            .view()
            .peers()
            .filter(|(_, ev)| ev.alive)
            .map(|(ep, ev)| {
                let version = ev
                    .state
                    .get(AppStateKey::SchemaVersion)
                    .and_then(|v| uuid::Uuid::from_str(v).ok());
                (ep.0, version)
            })
            .collect()
    }

    fn fetch(&self, peer: SocketAddr) -> BoxFuture<'_, Result<SchemaSnapshot, String>> {
        Box::pin(async move {
            match self.call(peer, &VerbRequest::SchemaPull).await? {
                VerbResponse::Schema(s) => Ok(*s),
                VerbResponse::Error(e) => Err(e.to_string()),
                other => Err(format!("unexpected answer to a schema pull: {other:?}")),
            }
        })
    }

    fn push(
        &self,
        peer: SocketAddr,
        snapshot: Arc<SchemaSnapshot>,
    ) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let request = VerbRequest::SchemaPush(Box::new((*snapshot).clone()));
            match self.call(peer, &request).await? {
                VerbResponse::SchemaMerged => Ok(()),
                VerbResponse::Error(e) => Err(e.to_string()),
                other => Err(format!("unexpected answer to a schema push: {other:?}")),
            }
        })
    }
}

/// Answers `SchemaPull` with this node's schema and merges a `SchemaPush` into it.
pub struct StoreSchemaVerbs(pub Arc<SchemaStore>);

impl SchemaVerbs for StoreSchemaVerbs {
    fn handle<'a>(&'a self, request: VerbRequest) -> BoxFuture<'a, VerbResponse> {
        Box::pin(async move {
            match request {
                VerbRequest::SchemaPull => VerbResponse::Schema(Box::new(self.0.snapshot())),
                VerbRequest::SchemaPush(snapshot) => {
                    let store = self.0.clone();
                    // Merging persists and flushes: off the async threads.
                    match tokio::task::spawn_blocking(move || store.merge(*snapshot)).await {
                        Ok(Ok(outcome)) => {
                            if outcome.schema_changed() {
                                tracing::info!(
                                    changes = ?outcome.changes,
                                    "schema merged from a peer's push"
                                );
                            }
                            VerbResponse::SchemaMerged
                        }
                        Ok(Err(e)) => VerbResponse::Error(ReplicaError::BadRequest(e.to_string())),
                        Err(e) => VerbResponse::Error(ReplicaError::Storage(format!(
                            "schema merge task failed: {e}"
                        ))),
                    }
                }
                other => VerbResponse::Error(ReplicaError::BadRequest(format!(
                    "not a schema verb: {}",
                    other.name()
                ))),
            }
        })
    }
}

/// Fires whenever a peer's liveness or gossiped schema version changes (not on every
/// heartbeat), for [`crate::schema::sync::run_schema_sync`]. Ends with `shutdown`.
pub fn schema_view_changes(
    membership: &Membership,
    mut shutdown: watch::Receiver<bool>,
) -> (watch::Receiver<()>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(());
    let mut views = membership.watch();
    let summary =
        |view: &ringdb_gossip::state::ClusterView| -> Vec<(SocketAddr, bool, Option<String>)> {
            view.peers()
                .map(|(ep, ev)| {
                    (
                        ep.0,
                        ev.alive,
                        ev.state.get(AppStateKey::SchemaVersion).map(str::to_string),
                    )
                })
                .collect()
        };
    let mut last = summary(&views.borrow_and_update());
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                changed = views.changed() => if changed.is_err() { return },
                _ = crate::server::stopping(&mut shutdown) => return,
            }
            let now = summary(&views.borrow_and_update());
            if now != last {
                last = now;
                if tx.send(()).is_err() {
                    return;
                }
            }
        }
    });
    (rx, task)
}

/// Tells registered CQL clients about schema changes merged from peers, as `SCHEMA_CHANGE`
/// events (a DDL run on this node is announced by the CQL server when it answers it). Drivers
/// refresh their schema metadata on these. Ends with `shutdown`.
pub async fn forward_merged_schema_changes(
    store: Arc<SchemaStore>,
    events: tokio::sync::broadcast::Sender<ringdb_cql::message::Event>,
    mut shutdown: watch::Receiver<bool>,
) {
    use crate::executor::{SchemaChangeInfo, SchemaChangeKind, SchemaChangeTarget};
    use crate::schema::SchemaChange;
    use tokio::sync::broadcast::error::RecvError;
    let mut merged = store.subscribe_merged();
    loop {
        let changes = tokio::select! {
            received = merged.recv() => match received {
                Ok(changes) => changes,
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "schema change events dropped (clients will see the schema on their next refresh)");
                    continue;
                }
                Err(RecvError::Closed) => return,
            },
            _ = crate::server::stopping(&mut shutdown) => return,
        };
        for change in changes {
            let (change, target, keyspace, name) = match change {
                SchemaChange::KeyspaceCreated(k) => (
                    SchemaChangeKind::Created,
                    SchemaChangeTarget::Keyspace,
                    k,
                    None,
                ),
                SchemaChange::KeyspaceUpdated(k) => (
                    SchemaChangeKind::Updated,
                    SchemaChangeTarget::Keyspace,
                    k,
                    None,
                ),
                SchemaChange::KeyspaceDropped(k) => (
                    SchemaChangeKind::Dropped,
                    SchemaChangeTarget::Keyspace,
                    k,
                    None,
                ),
                SchemaChange::TableCreated { keyspace, name } => (
                    SchemaChangeKind::Created,
                    SchemaChangeTarget::Table,
                    keyspace,
                    Some(name),
                ),
                SchemaChange::TableUpdated { keyspace, name } => (
                    SchemaChangeKind::Updated,
                    SchemaChangeTarget::Table,
                    keyspace,
                    Some(name),
                ),
                SchemaChange::TableDropped { keyspace, name } => (
                    SchemaChangeKind::Dropped,
                    SchemaChangeTarget::Table,
                    keyspace,
                    Some(name),
                ),
            };
            let info = SchemaChangeInfo {
                change,
                target,
                keyspace,
                name,
            };
            let _ = events.send(ringdb_cql::message::Event::SchemaChange(
                crate::cql_server::schema_change(&info),
            ));
        }
    }
}
