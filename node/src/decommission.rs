//! Shrinking the ring: `ringdb decommission` (a live node hands its ranges to the nodes that
//! take them over, then leaves for good) and `ringdb removenode` (a live node re-replicates the
//! ranges of a dead one, see [`crate::removenode`]).
//!
//! Both run through a node's admin API ([`crate::admin`]) and one [`RingChange`] service per
//! node, which runs at most one of them at a time. Asked to decommission, the node:
//!
//! 1. refuses when another topology change is under way (a node joining or leaving: one at a
//!    time), when it is not `NORMAL`, or when it is the last node of the ring;
//! 2. gossips `LEAVING`; every coordinator now also sends writes for its ranges to the nodes
//!    gaining them (pending replicas, not counted toward the level), and it waits the join settle
//!    time so that they all have seen it; then it refuses (back to `NORMAL`) if leaving would
//!    leave some keyspace with fewer replicas than its replication factor;
//! 3. pushes its data to the gaining nodes, range by range
//!    ([`Coordinator::stream_leaving_ranges`]), and hands its hints over
//!    ([`Coordinator::hand_off_hints`]) — a failure here turns it back to `NORMAL` and reports
//!    why, nothing lost;
//! 4. gossips `LEFT`: the others take it off their ring (and stop keeping hints for it after a
//!    while); it records in its data directory that it was decommissioned, so that it never
//!    rejoins with stale data, waits for the news to spread, and asks the process to exit.
//!
//! The admin API answers with [`ChangeReport`]s as they change (newline-delimited JSON), the
//! last one `finished`; `ringdb decommission` and `ringdb removenode` ([`cli`]) draw them as a
//! progress bar.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringdb_gossip::membership::Membership;
use ringdb_gossip::state::{AppStateKey, ClusterView, Endpoint, NodeStatus};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::coordinator::placement::in_ring;
use crate::coordinator::streaming::StreamStats;
use crate::coordinator::Coordinator;
use crate::repair::cli::human_bytes;
use crate::storage::Engine;

/// Meta key set once a node has left the ring.
pub const META_DECOMMISSIONED: &[u8] = b"local/decommissioned";

/// How a ring change is going, or how it ended.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ChangeReport {
    /// `decommission` or `removenode`.
    pub operation: String,
    /// The internode address of the node leaving the ring.
    pub node: String,
    /// Its host id.
    pub host_id: String,
    /// What is happening: `announcing`, `streaming`, `hints`, `finishing`, `done`, `failed`.
    pub phase: String,
    /// Ranges, partitions and bytes streamed so far.
    #[serde(flatten)]
    pub stream: StreamStats,
    /// Hints handed over (decommission) or dropped (removenode).
    pub hints: u64,
    /// Seconds since the change started.
    pub seconds: f64,
    /// Whether the change is over (then `error` says whether it failed).
    pub finished: bool,
    /// Why it failed, when it did.
    pub error: Option<String>,
}

/// Why a ring change was not started.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// Another topology change is under way.
    #[error("{0}")]
    Busy(String),
    /// The change does not apply (wrong node, wrong state, nobody to take the data).
    #[error("{0}")]
    Refused(String),
}

/// Runs this node's ring changes, one at a time.
pub struct RingChange {
    pub(crate) coordinator: Arc<Coordinator>,
    pub(crate) membership: Membership,
    engine: Arc<dyn Engine>,
    pub(crate) settle: Duration,
    exit: watch::Sender<bool>,
    running: AtomicBool,
}

impl std::fmt::Debug for RingChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingChange").finish_non_exhaustive()
    }
}

/// Publishes a change's progress.
pub(crate) struct Reporter {
    tx: watch::Sender<ChangeReport>,
    started: Instant,
}

impl Reporter {
    pub(crate) fn new(
        operation: &str,
        node: Endpoint,
        host_id: &str,
    ) -> (Reporter, watch::Receiver<ChangeReport>) {
        let (tx, rx) = watch::channel(ChangeReport {
            operation: operation.into(),
            node: node.0.to_string(),
            host_id: host_id.into(),
            phase: "announcing".into(),
            ..ChangeReport::default()
        });
        (
            Reporter {
                tx,
                started: Instant::now(),
            },
            rx,
        )
    }

    pub(crate) fn update(&self, change: impl FnOnce(&mut ChangeReport)) {
        let seconds = self.started.elapsed().as_secs_f64();
        self.tx.send_modify(|r| {
            change(r);
            r.seconds = seconds;
        });
    }

    pub(crate) fn phase(&self, phase: &str) {
        self.update(|r| r.phase = phase.into());
    }

    /// A callback for [`Coordinator`]'s streaming progress.
    pub(crate) fn streaming(&self) -> impl Fn(&StreamStats) + Send + Sync + '_ {
        move |stats: &StreamStats| self.update(|r| r.stream = *stats)
    }

    pub(crate) fn finish(&self, result: Result<(), String>) {
        self.update(|r| {
            r.finished = true;
            match result {
                Ok(()) => r.phase = "done".into(),
                Err(e) => {
                    r.phase = "failed".into();
                    r.error = Some(e);
                }
            }
        });
        let report = self.tx.borrow().clone();
        match &report.error {
            None => tracing::info!(?report, "{} done", report.operation),
            Some(e) => tracing::error!(error = %e, ?report, "{} failed", report.operation),
        }
    }
}

/// Refuses unless this node is `NORMAL` (only such a node can `what`).
pub(crate) fn check_local_normal(view: &ClusterView, what: &str) -> Result<(), ChangeError> {
    let local = view
        .endpoints
        .get(&view.local)
        .and_then(|ev| ev.state.status());
    if local == Some(NodeStatus::Normal) {
        return Ok(());
    }
    Err(ChangeError::Refused(format!(
        "only a NORMAL node can {what}; this one is {}",
        local.map_or("UNKNOWN", |s| s.as_str())
    )))
}

/// Refuses when some node other than `except` is joining or leaving the ring (one topology
/// change at a time).
pub(crate) fn check_no_change(view: &ClusterView, except: &[Endpoint]) -> Result<(), ChangeError> {
    for (endpoint, ev) in &view.endpoints {
        let status = ev.state.status();
        let changing = matches!(status, Some(NodeStatus::Joining | NodeStatus::Leaving))
            || (status == Some(NodeStatus::Boot) && ev.alive);
        if changing && !except.contains(endpoint) {
            return Err(ChangeError::Busy(format!(
                "one topology change at a time: {} is {}",
                endpoint.0,
                status.map_or("?", |s| s.as_str())
            )));
        }
    }
    Ok(())
}

impl RingChange {
    /// The ring-change service; `exit` turns true once this node has left and should stop.
    pub fn new(
        coordinator: Arc<Coordinator>,
        membership: Membership,
        engine: Arc<dyn Engine>,
        settle: Duration,
        exit: watch::Sender<bool>,
    ) -> Arc<RingChange> {
        Arc::new(RingChange {
            coordinator,
            membership,
            engine,
            settle,
            exit,
            running: AtomicBool::new(false),
        })
    }

    /// `ringdb drain`: asks the process to stop gracefully, as SIGTERM does (SHUTDOWN announced
    /// by gossip so peers mark it down and hint its writes, no new CQL connections, requests in
    /// flight finished, storage flushed). Refused while this node runs a ring change (it holds
    /// the one-at-a-time slot until the end, so the drain cannot cut a stream in half).
    pub fn drain(&self) -> Result<(), ChangeError> {
        if *self.exit.borrow() {
            return Ok(()); // already stopping: draining twice is fine
        }
        self.claim()?;
        let _ = self.exit.send(true);
        // The slot stays taken: nothing else starts on a node that is stopping.
        Ok(())
    }

    /// Takes the one ring-change slot of this node; see [`RingChange::release`].
    pub(crate) fn claim(&self) -> Result<(), ChangeError> {
        if self.running.swap(true, Ordering::SeqCst) {
            return Err(ChangeError::Busy(
                "this node is already running a decommission or a removenode".into(),
            ));
        }
        Ok(())
    }

    /// Gives the slot back once a change is over (or failed).
    pub(crate) fn release(&self) {
        self.running.store(false, Ordering::SeqCst);
    }

    /// Starts this node's decommission (see the module documentation); the receiver follows
    /// its progress until a finished report.
    pub fn start_decommission(
        self: &Arc<Self>,
    ) -> Result<watch::Receiver<ChangeReport>, ChangeError> {
        let view = self.membership.view();
        check_local_normal(&view, "be decommissioned")?;
        check_no_change(&view, &[view.local])?;
        let others = view
            .endpoints
            .iter()
            .filter(|(e, ev)| **e != view.local && in_ring(ev.state.status()))
            .count();
        if others == 0 {
            return Err(ChangeError::Refused(
                "this is the only node of the ring: nobody could take its data".into(),
            ));
        }
        self.claim()?;
        let host_id = view
            .endpoints
            .get(&view.local)
            .and_then(|ev| ev.state.get(AppStateKey::HostId))
            .unwrap_or("?")
            .to_string();
        let (reporter, progress) = Reporter::new("decommission", view.local, &host_id);
        let this = self.clone();
        tokio::spawn(async move {
            let result = this.leave(&reporter).await;
            if result.is_err() {
                this.set_status(NodeStatus::Normal).await;
                this.release();
            }
            let done = result.is_ok();
            reporter.finish(result);
            if done {
                // Let the admin API send the last report before the process stops.
                tokio::time::sleep(Duration::from_millis(500)).await;
                let _ = this.exit.send(true);
            }
        });
        Ok(progress)
    }

    async fn leave(&self, reporter: &Reporter) -> Result<(), String> {
        self.set_status(NodeStatus::Leaving).await;
        tracing::info!(settle = ?self.settle, "decommission: LEAVING; waiting for the cluster to see it");
        tokio::time::sleep(self.settle).await;
        self.coordinator.check_replication_kept()?;
        reporter.phase("streaming");
        let progress = reporter.streaming();
        self.coordinator.stream_leaving_ranges(&progress).await?;
        reporter.phase("hints");
        let hints = self.coordinator.hand_off_hints().await?;
        reporter.update(|r| r.hints = hints);
        reporter.phase("finishing");
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
        tracing::info!("decommissioned: LEFT the ring; stopping");
        Ok(())
    }

    async fn set_status(&self, status: NodeStatus) {
        self.membership
            .set_app_state(AppStateKey::Status, status.as_str())
            .await;
    }
}

/// Follows a ring change's reports from an admin API response, handing each to `on_report`;
/// returns the last one, or fails when the change did (or the node stopped answering first).
pub async fn follow(
    response: hyper::Response<hyper::body::Incoming>,
    mut on_report: impl FnMut(&ChangeReport),
) -> anyhow::Result<ChangeReport> {
    let mut lines = crate::admin::client::Lines::new(response);
    let mut last: Option<ChangeReport> = None;
    while let Some(line) = lines.next_line().await? {
        if line.trim().is_empty() {
            continue;
        }
        let report: ChangeReport = serde_json::from_str(&line)
            .map_err(|e| anyhow::anyhow!("unexpected answer from the node ({e}): {line}"))?;
        on_report(&report);
        let finished = report.finished;
        last = Some(report);
        if finished {
            break;
        }
    }
    let report = last.ok_or_else(|| anyhow::anyhow!("the node sent no report"))?;
    if !report.finished {
        anyhow::bail!(
            "the connection to the node ended before the {} did (phase {}); see the node's log",
            report.operation,
            report.phase
        );
    }
    if let Some(e) = &report.error {
        anyhow::bail!("{} of {} failed: {e}", report.operation, report.node);
    }
    Ok(report)
}

/// Follows a ring change for the command line: a progress bar on stderr (none with `json`,
/// which prints the final report as JSON on stdout instead).
pub async fn follow_cli(
    response: hyper::Response<hyper::body::Incoming>,
    json: bool,
) -> anyhow::Result<ChangeReport> {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    let bar = if json {
        ProgressBar::hidden()
    } else {
        ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} ranges")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let result = follow(response, |report| {
        bar.set_length(report.stream.ranges_total as u64);
        bar.set_position(report.stream.ranges as u64);
        bar.set_message(format!(
            "{} {}: {} ({} partitions, {})",
            report.operation,
            report.node,
            report.phase,
            report.stream.partitions,
            human_bytes(report.stream.bytes)
        ));
    })
    .await;
    bar.finish_and_clear();
    let report = result?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(report)
}

/// `ringdb decommission --host HOST[:PORT] [--json]`: asks the node's admin API to leave the
/// ring, shows the streaming as it goes, and prints what it did.
pub async fn cli(host: &str, json: bool) -> anyhow::Result<()> {
    use crate::admin::client;
    let addr = client::resolve(host).await?;
    let response = client::request(addr, hyper::Method::POST, "/decommission").await?;
    let report = follow_cli(response, json).await?;
    if !json {
        println!(
            "{} left the ring: {} ranges streamed ({} partitions, {}), {} hints handed over, in {:.1}s; the node is stopping",
            report.node,
            report.stream.ranges,
            report.stream.partitions,
            human_bytes(report.stream.bytes),
            report.hints,
            report.seconds
        );
    }
    Ok(())
}

/// How long `ringdb drain` waits for the node to stop answering.
const DRAIN_WAIT: Duration = Duration::from_secs(120);

/// `ringdb drain --host HOST`: asks the node to stop gracefully and waits (bounded) until its
/// admin API no longer answers, i.e. it announced SHUTDOWN, stopped serving CQL and finished
/// its requests; it then flushes its storage and exits.
pub async fn drain_cli(host: &str) -> anyhow::Result<()> {
    use crate::admin::client;
    let addr = client::resolve(host).await?;
    let response = client::request(addr, hyper::Method::POST, "/drain").await?;
    drop(response);
    eprintln!("ringdb drain: {addr} is stopping (SHUTDOWN announced to the cluster)");
    let deadline = Instant::now() + DRAIN_WAIT;
    while Instant::now() < deadline {
        if client::get_json(addr, "/health").await.is_err() {
            println!(
                "node at {addr} drained: peers see it down and hint its writes, no client is \
                 served; it flushes its storage and exits"
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::bail!("the node at {addr} still answers {DRAIN_WAIT:?} after it was asked to drain")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use ringdb_gossip::state::{EndpointState, EndpointView, VersionedValue};

    use super::*;

    fn view(nodes: &[(u8, &str, bool)]) -> ClusterView {
        let mut endpoints = BTreeMap::new();
        for (i, status, alive) in nodes {
            let mut state = EndpointState::new(1);
            state.app_states.insert(
                AppStateKey::Status,
                VersionedValue {
                    value: status.to_string(),
                    version: 1,
                },
            );
            endpoints.insert(
                endpoint(*i),
                EndpointView {
                    state,
                    alive: *alive,
                },
            );
        }
        ClusterView {
            local: endpoint(1),
            endpoints,
        }
    }

    fn endpoint(i: u8) -> Endpoint {
        Endpoint(std::net::SocketAddr::from(([127, 0, 0, i], 7000)))
    }

    #[test]
    fn one_topology_change_at_a_time() {
        let quiet = view(&[
            (1, "NORMAL", true),
            (2, "NORMAL", true),
            (3, "SHUTDOWN", false),
        ]);
        assert!(check_no_change(&quiet, &[]).is_ok());
        // A node that booted and died before choosing tokens changes nothing.
        let dead_boot = view(&[(1, "NORMAL", true), (2, "BOOT", false)]);
        assert!(check_no_change(&dead_boot, &[]).is_ok());
        for (status, alive) in [("JOINING", true), ("LEAVING", false), ("BOOT", true)] {
            let busy = view(&[(1, "NORMAL", true), (2, status, alive)]);
            match check_no_change(&busy, &[]) {
                Err(ChangeError::Busy(message)) => {
                    assert!(message.contains("127.0.0.2:7000"), "{message}");
                    assert!(message.contains(status), "{message}");
                }
                other => panic!("{status}: {other:?}"),
            }
            // ...unless it is the very node the change is about.
            assert!(check_no_change(&busy, &[endpoint(2)]).is_ok());
        }
    }

    #[test]
    fn reports_round_trip_through_json() {
        let report = ChangeReport {
            operation: "removenode".into(),
            node: "127.0.0.4:7000".into(),
            host_id: "x".into(),
            phase: "streaming".into(),
            stream: StreamStats {
                ranges: 3,
                ranges_total: 9,
                partitions: 100,
                bytes: 4096,
            },
            hints: 2,
            seconds: 1.5,
            finished: false,
            error: None,
        };
        let text = serde_json::to_string(&report).expect("encode");
        assert!(text.contains("\"ranges_total\":9"), "{text}");
        let back: ChangeReport = serde_json::from_str(&text).expect("decode");
        assert_eq!(back, report);
    }
}
