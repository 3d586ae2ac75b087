//! `ringdb removenode`: takes a dead node out of the ring and gives its ranges to the nodes that
//! replicate them next, copying the data from the replicas that survive.
//!
//! A live node (the one the command talks to) runs it, through the same one-at-a-time
//! [`RingChange`] service as decommission:
//!
//! 1. refuses unless the node named by its host id is known, in the ring, and down (a live node
//!    is decommissioned instead), unless this node is `NORMAL`, and while another topology change
//!    is under way — a dead node already `LEAVING` (a decommission or a removal that stopped
//!    halfway) may be removed;
//! 2. gossips `LEAVING` **on the dead node's behalf** (a status at a version above everything
//!    known of it, which the others accept as news about it:
//!    [`ringdb_gossip::protocol::Gossiper::set_peer_status`]); coordinators then send writes for
//!    its ranges to the nodes gaining them, and stop keeping hints for it; after the settle time
//!    it refuses (status put back) if the remaining nodes cannot hold every keyspace's
//!    replication factor;
//! 3. for each range the dead node replicated, copies every table from the closest live
//!    surviving replica to the gaining nodes ([`crate::coordinator::Coordinator::stream_removed_ranges`]) — a failure
//!    puts the status back and says why, and running the command again starts over;
//! 4. gossips `LEFT` for it: every node takes it off the ring, `ringdb status` stops listing it,
//!    and this node drops the hints it kept for it (the others drop theirs once it has been out
//!    of the ring for a while).
//!
//! As with Cassandra, a removed node must not come back with its old data directory: wipe it to
//! add the machine again as a new node.

use std::str::FromStr;
use std::sync::Arc;

use ringdb_gossip::state::{AppStateKey, NodeStatus};
use tokio::sync::watch;

use crate::coordinator::placement::{host_id, in_ring};
use crate::decommission::{
    check_local_normal, check_no_change, ChangeError, ChangeReport, Reporter, RingChange,
};

impl RingChange {
    /// Starts removing the dead node `target` (a host id) from the ring; see the module
    /// documentation. The receiver follows the progress until a finished report.
    pub fn start_removenode(
        self: &Arc<Self>,
        target: &str,
    ) -> Result<watch::Receiver<ChangeReport>, ChangeError> {
        let id = uuid::Uuid::from_str(target.trim()).map_err(|e| {
            ChangeError::Refused(format!("{target:?} is not a host id (a uuid): {e}"))
        })?;
        let view = self.membership.view();
        let Some((&endpoint, ev)) = view.endpoints.iter().find(|(_, ev)| {
            ev.state
                .get(AppStateKey::HostId)
                .and_then(|h| uuid::Uuid::from_str(h).ok())
                == Some(id)
        }) else {
            return Err(ChangeError::Refused(format!(
                "no node with host id {id} is known to this node (`ringdb status` lists them)"
            )));
        };
        if endpoint == view.local {
            return Err(ChangeError::Refused(
                "this is the node the command talks to: ask another node to remove it, or \
                 decommission it"
                    .into(),
            ));
        }
        let status = ev.state.status();
        if !in_ring(status) {
            return Err(ChangeError::Refused(format!(
                "{} ({id}) is not in the ring: its status is {}",
                endpoint.0,
                status.map_or("UNKNOWN", |s| s.as_str())
            )));
        }
        if ev.alive {
            return Err(ChangeError::Refused(format!(
                "{} ({id}) is up: removenode is for dead nodes; decommission a live one \
                 (`ringdb decommission --host {}`), or stop it first",
                endpoint.0,
                endpoint.0.ip()
            )));
        }
        check_local_normal(&view, "run a removenode")?;
        check_no_change(&view, &[endpoint])?;
        self.claim()?;
        let previous = status.unwrap_or(NodeStatus::Normal);
        let (reporter, progress) = Reporter::new("removenode", endpoint, &id.to_string());
        let this = self.clone();
        tokio::spawn(async move {
            let result = this.remove(endpoint, id, &reporter).await;
            if result.is_err() {
                if let Err(e) = this.membership.set_peer_status(endpoint, previous).await {
                    tracing::warn!(error = %e, "could not put the removed node's status back");
                }
            }
            this.release();
            reporter.finish(result);
        });
        Ok(progress)
    }

    async fn remove(
        &self,
        endpoint: ringdb_gossip::state::Endpoint,
        id: uuid::Uuid,
        reporter: &Reporter,
    ) -> Result<(), String> {
        let removed = host_id(id);
        self.membership
            .set_peer_status(endpoint, NodeStatus::Leaving)
            .await?;
        tracing::info!(node = %endpoint.0, host_id = %id, settle = ?self.settle,
            "removenode: LEAVING on its behalf; waiting for the cluster to see it");
        tokio::time::sleep(self.settle).await;
        self.coordinator.check_replication_kept()?;
        reporter.phase("streaming");
        let progress = reporter.streaming();
        self.coordinator
            .stream_removed_ranges(removed, &progress)
            .await?;
        reporter.phase("finishing");
        self.membership
            .set_peer_status(endpoint, NodeStatus::Left)
            .await
            .map_err(|e| format!("{e} (it came back during the removal: nothing was removed)"))?;
        let hints = self.coordinator.hints().clone();
        let dropped = tokio::task::spawn_blocking(move || hints.drop_target(&removed))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("dropping the hints kept for it: {e}"))?;
        reporter.update(|r| r.hints = dropped);
        tracing::info!(node = %endpoint.0, host_id = %id, "removenode: LEFT; it is out of the ring");
        Ok(())
    }
}

/// `ringdb removenode --host HOST[:PORT] HOST_ID [--json]`: asks the node at HOST's admin API
/// to remove the dead node HOST_ID, shows the streaming as it goes, and prints what it did.
pub async fn cli(host: &str, target: &str, json: bool) -> anyhow::Result<()> {
    use crate::admin::client;
    let target = uuid::Uuid::from_str(target.trim())
        .map_err(|e| anyhow::anyhow!("{target:?} is not a host id (a uuid): {e}"))?;
    let addr = client::resolve(host).await?;
    let response = client::request(
        addr,
        hyper::Method::POST,
        &format!("/removenode?host_id={target}"),
    )
    .await?;
    let report = crate::decommission::follow_cli(response, json).await?;
    if !json {
        println!(
            "{} ({}) removed from the ring: {} ranges re-replicated ({} partitions, {}), {} hints for it dropped, in {:.1}s",
            report.node,
            report.host_id,
            report.stream.ranges,
            report.stream.partitions,
            crate::repair::cli::human_bytes(report.stream.bytes),
            report.hints,
            report.seconds
        );
    }
    Ok(())
}
