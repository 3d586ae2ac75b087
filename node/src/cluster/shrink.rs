//! Shrinking a local cluster: decommissioning a running node, or removing a dead one, through
//! the nodes' admin API ([`crate::decommission`], [`crate::removenode`]), then taking the node
//! out of the manifest so that `start`, `stop` and `status` no longer count it.
//!
//! A node that left keeps its files for inspection: its folder moves to
//! `DIR/gone/NAME-<unix seconds>`, so that the name (and its address) can be added again as a
//! new, empty node.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::process::ProcessState;
use super::{lock, Cluster, ClusterError};
use crate::admin::client;
use crate::decommission::{follow, ChangeReport};

/// How long a decommissioned node may take to exit once it left the ring.
pub const EXIT_AFTER_LEAVING: Duration = Duration::from_secs(60);

impl Cluster {
    /// Decommissions the running node `name`: it streams its ranges away and leaves the ring;
    /// once its process has exited, it is taken out of the cluster.
    pub async fn decommission_node(&self, name: &str) -> Result<ChangeReport, ClusterError> {
        let node = self.node(name)?;
        self.alive_pid(name, "only a running node can be decommissioned")?;
        self.say(&format!("{name}: decommissioning"));
        let report = self
            .ring_change(name, node.admin_addr, "/decommission".to_string())
            .await?;
        let deadline = Instant::now() + EXIT_AFTER_LEAVING;
        if !self
            .wait_state_async(name, |s| !s.is_alive(), deadline)
            .await
        {
            return Err(ClusterError::Stuck {
                node: name.to_string(),
                what: format!("left the ring but still runs {EXIT_AFTER_LEAVING:?} later"),
            });
        }
        let moved = self.retire(name)?;
        self.say(&format!(
            "{name}: left the ring and stopped; its files are in {}",
            moved.display()
        ));
        Ok(report)
    }

    /// Removes the node `name`, which must not be running (killed or stopped), from the ring:
    /// `via` (default: the first running node) copies its ranges from the surviving replicas to
    /// their new owners. Then it is taken out of the cluster.
    pub async fn removenode(
        &self,
        name: &str,
        via: Option<&str>,
    ) -> Result<ChangeReport, ClusterError> {
        let node = self.node(name)?;
        let state = self.process_state(name)?;
        if state.is_alive() {
            return Err(ClusterError::BadState {
                node: name.to_string(),
                state,
                hint: "removenode is for dead nodes: kill or stop it first, or decommission it"
                    .into(),
            });
        }
        let via = match via {
            Some(v) => self.node(v)?,
            None => self
                .nodes()
                .into_iter()
                .find(|n| {
                    n.name != name
                        && self
                            .process_state(&n.name)
                            .is_ok_and(|s| s == ProcessState::Running)
                })
                .ok_or_else(|| ClusterError::Spec("no running node to run the removal".into()))?,
        };
        let view = self.view(&via.name).await?;
        let host_id = view
            .member(std::net::IpAddr::V4(node.ip))
            .and_then(|m| m.host_id.clone())
            .ok_or_else(|| ClusterError::Stuck {
                node: via.name.clone(),
                what: format!("does not know {name} ({}) or its host id", node.ip),
            })?;
        self.say(&format!(
            "{name}: removing host {host_id} from the ring through {}",
            via.name
        ));
        let report = self
            .ring_change(
                &via.name,
                via.admin_addr,
                format!("/removenode?host_id={host_id}"),
            )
            .await?;
        let moved = self.retire(name)?;
        self.say(&format!(
            "{name}: removed from the ring; its files are in {}",
            moved.display()
        ));
        Ok(report)
    }

    /// Runs a ring change on `name`'s admin API and follows it to the end.
    async fn ring_change(
        &self,
        name: &str,
        admin: std::net::SocketAddr,
        path: String,
    ) -> Result<ChangeReport, ClusterError> {
        let failed = |e: anyhow::Error| ClusterError::Stuck {
            node: name.to_string(),
            what: format!("{e:#}"),
        };
        let response = client::request(admin, hyper::Method::POST, &path)
            .await
            .map_err(failed)?;
        let mut phase = String::new();
        let mut tenth = 0;
        follow(response, |r| {
            let now = (r.stream.ranges * 10)
                .checked_div(r.stream.ranges_total)
                .unwrap_or(0);
            if r.phase != phase || (r.phase == "streaming" && now != tenth) {
                self.say(&format!(
                    "{name}: {} {}: {} ({}/{} ranges, {} partitions)",
                    r.operation,
                    r.node,
                    r.phase,
                    r.stream.ranges,
                    r.stream.ranges_total,
                    r.stream.partitions
                ));
                phase = r.phase.clone();
                tenth = now;
            }
        })
        .await
        .map_err(failed)
    }

    /// Takes a node that left the ring out of the manifest and moves its folder aside; a seed
    /// that leaves is replaced, for nodes added later, by the first remaining node.
    fn retire(&self, name: &str) -> Result<PathBuf, ClusterError> {
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let from = self.dir.join(name);
        let gone = self.dir.join("gone");
        let to = gone.join(format!("{name}-{stamp}"));
        self.update(|m| {
            let Some(i) = m.nodes.iter().position(|n| n.name == name) else {
                return Err(ClusterError::UnknownNode {
                    cluster: m.name.clone(),
                    node: name.to_string(),
                    known: m.node_names(),
                });
            };
            let entry = m.nodes.remove(i);
            m.seeds.retain(|ip| *ip != std::net::IpAddr::V4(entry.ip));
            if m.seeds.is_empty() {
                if let Some(first) = m.nodes.first_mut() {
                    first.seed = true;
                    m.seeds.push(std::net::IpAddr::V4(first.ip));
                }
            }
            std::fs::create_dir_all(&gone).map_err(|e| ClusterError::io(&gone, e))?;
            std::fs::rename(&from, &to).map_err(|e| ClusterError::io(&from, e))?;
            Ok(())
        })?;
        lock(&self.children).remove(name);
        Ok(to)
    }
}
