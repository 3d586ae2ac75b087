//! `ringdb decommission`: a node hands its ranges to the nodes that take them over, then leaves
//! the ring for good.
//!
//! Asked through its admin API ([`crate::admin`]), the node:
//!
//! 1. refuses when another topology change is under way (a node joining or leaving: one at a
//!    time), when it is not `NORMAL`, or when leaving would leave some keyspace with fewer
//!    replicas than its replication factor;
//! 2. gossips `LEAVING`; every coordinator now also sends writes for its ranges to the nodes
//!    gaining them (pending replicas, not counted toward the level), and it waits the join settle
//!    time so that they all have seen it;
//! 3. pushes its data to the gaining nodes, range by range
//!    ([`Coordinator::stream_leaving_ranges`]), and hands its hints over
//!    ([`Coordinator::hand_off_hints`]) — a failure here turns it back to `NORMAL` and reports
//!    why, nothing lost;
//! 4. gossips `LEFT`: the others take it off their ring (and stop keeping hints for it after a
//!    while); it records in its data directory that it was decommissioned, so that it never
//!    rejoins with stale data, waits for the news to spread, and asks the process to exit.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringdb_gossip::membership::Membership;
use ringdb_gossip::state::{AppStateKey, NodeStatus};
use serde::Serialize;
use tokio::sync::watch;

use crate::coordinator::placement::in_ring;
use crate::coordinator::Coordinator;
use crate::storage::Engine;

/// Meta key set once a node has left the ring.
pub const META_DECOMMISSIONED: &[u8] = b"local/decommissioned";

/// What a decommission did.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DecommissionReport {
    /// Ranges (per keyspace) pushed to new owners.
    pub ranges: usize,
    /// Partitions sent.
    pub partitions: u64,
    /// Hints handed over.
    pub hints: u64,
    /// How long it took, seconds.
    pub seconds: f64,
}

/// Why a decommission did not happen.
#[derive(Debug, thiserror::Error)]
pub enum DecommissionError {
    /// Another topology change (or decommission) is under way.
    #[error("{0}")]
    Busy(String),
    /// Leaving now would break something.
    #[error("{0}")]
    Refused(String),
    /// Streaming or handing over hints failed; the node is NORMAL again.
    #[error("decommission failed, the node stays in the ring: {0}")]
    Failed(String),
}

/// Runs a node's decommission (at most one at a time).
pub struct Decommission {
    coordinator: Arc<Coordinator>,
    membership: Membership,
    engine: Arc<dyn Engine>,
    settle: Duration,
    exit: watch::Sender<bool>,
    running: AtomicBool,
}

impl std::fmt::Debug for Decommission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decommission").finish_non_exhaustive()
    }
}

impl Decommission {
    /// A decommission service; `exit` turns true once the node has left and should stop.
    pub fn new(
        coordinator: Arc<Coordinator>,
        membership: Membership,
        engine: Arc<dyn Engine>,
        settle: Duration,
        exit: watch::Sender<bool>,
    ) -> Arc<Decommission> {
        Arc::new(Decommission {
            coordinator,
            membership,
            engine,
            settle,
            exit,
            running: AtomicBool::new(false),
        })
    }

    /// Leaves the ring; see the module documentation.
    pub async fn run(&self) -> Result<DecommissionReport, DecommissionError> {
        if self.running.swap(true, Ordering::SeqCst) {
            return Err(DecommissionError::Busy(
                "this node is already being decommissioned".into(),
            ));
        }
        let result = self.leave().await;
        if result.is_err() {
            self.running.store(false, Ordering::SeqCst);
        }
        result
    }

    async fn leave(&self) -> Result<DecommissionReport, DecommissionError> {
        let started = Instant::now();
        let view = self.membership.view();
        let local = view
            .endpoints
            .get(&view.local)
            .and_then(|ev| ev.state.status());
        if local != Some(NodeStatus::Normal) {
            return Err(DecommissionError::Refused(format!(
                "only a NORMAL node can be decommissioned; this one is {}",
                local.map_or("UNKNOWN", |s| s.as_str())
            )));
        }
        for (endpoint, ev) in &view.endpoints {
            let status = ev.state.status();
            let changing = matches!(status, Some(NodeStatus::Joining | NodeStatus::Leaving))
                || (status == Some(NodeStatus::Boot) && ev.alive);
            if *endpoint != view.local && changing {
                return Err(DecommissionError::Busy(format!(
                    "one topology change at a time: {} is {}",
                    endpoint.0,
                    status.map_or("?", |s| s.as_str())
                )));
            }
        }
        let others = view
            .endpoints
            .iter()
            .filter(|(e, ev)| **e != view.local && in_ring(ev.state.status()))
            .count();
        if others == 0 {
            return Err(DecommissionError::Refused(
                "this is the only node of the ring: nobody could take its data".into(),
            ));
        }

        self.set_status(NodeStatus::Leaving).await;
        tracing::info!(settle = ?self.settle, "decommission: LEAVING; waiting for the cluster to see it");
        tokio::time::sleep(self.settle).await;
        let undo = |e: String| async move {
            self.set_status(NodeStatus::Normal).await;
            DecommissionError::Failed(e)
        };
        if let Err(e) = self.coordinator.check_replication_kept() {
            self.set_status(NodeStatus::Normal).await;
            return Err(DecommissionError::Refused(e));
        }
        let stats = match self.coordinator.stream_leaving_ranges().await {
            Ok(s) => s,
            Err(e) => return Err(undo(e).await),
        };
        let hints = match self.coordinator.hand_off_hints().await {
            Ok(n) => n,
            Err(e) => return Err(undo(e).await),
        };
        self.set_status(NodeStatus::Left).await;
        let engine = self.engine.clone();
        let marked = tokio::task::spawn_blocking(move || {
            engine.meta_put(META_DECOMMISSIONED, b"1")?;
            engine.flush()
        })
        .await;
        if !matches!(marked, Ok(Ok(()))) {
            tracing::error!(
                "could not record the decommission in the data directory: do not restart this node on it"
            );
        }
        tokio::time::sleep(self.settle).await;
        let report = DecommissionReport {
            ranges: stats.ranges,
            partitions: stats.partitions,
            hints,
            seconds: started.elapsed().as_secs_f64(),
        };
        tracing::info!(?report, "decommissioned: LEFT the ring; stopping");
        // Let the admin API answer before the process stops.
        let exit = self.exit.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let _ = exit.send(true);
        });
        Ok(report)
    }

    async fn set_status(&self, status: NodeStatus) {
        self.membership
            .set_app_state(AppStateKey::Status, status.as_str())
            .await;
    }
}

/// `ringdb decommission --host HOST[:PORT] [--json]`: asks the node's admin API to leave the
/// ring and prints what it did.
pub async fn cli(host: &str, json: bool) -> anyhow::Result<()> {
    use crate::admin::client;
    let addr = client::resolve(host).await?;
    let health = client::get_json(addr, "/health").await?;
    let node = health
        .get("listen_address")
        .and_then(|v| v.as_str())
        .unwrap_or("?")
        .to_string();
    if !json {
        eprintln!("decommissioning {node}: streaming its ranges to their new owners...");
    }
    let report = client::json_request(addr, hyper::Method::POST, "/decommission").await?;
    if json {
        println!("{report}");
        return Ok(());
    }
    let get = |k: &str| report.get(k).cloned().unwrap_or_default();
    println!(
        "{node} left the ring: {} ranges streamed ({} partitions), {} hints handed over, in {:.1}s; the node is stopping",
        get("ranges"),
        get("partitions"),
        get("hints"),
        get("seconds").as_f64().unwrap_or(0.0)
    );
    Ok(())
}
