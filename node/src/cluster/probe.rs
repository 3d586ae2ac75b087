//! What a node says about the cluster, read over CQL, and whether the cluster has converged.
//!
//! A node's [`NodeView`] is its `system.peers` (the other nodes it knows, with their tokens, dc,
//! rack and host id) and its `system_views.cluster_status` (one row per known node, itself
//! included, with gossip status and the failure detector's up/down). Nodes built before
//! `cluster_status` existed answer with an Invalid error for it; the view then has
//! `cluster_status: None` and only `system.peers` is checked.
//!
//! [`check_converged`] is a pure function of the views, so the rule is unit-tested: every running
//! node answers CQL, lists every other running node in `system.peers`, and its `cluster_status`
//! shows every running node up with status `NORMAL`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::status::{cell, inet, text, text_set, uuid};
use ringdb_cql::client::{
    Client, ClientError, ClientOptions, Credentials, QueryOptions, Rows, NO_VALUES,
};
use ringdb_cql::message::error_code;

/// One row of a node's `system.peers`.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerRow {
    pub peer: IpAddr,
    pub data_center: Option<String>,
    pub rack: Option<String>,
    pub host_id: Option<String>,
    pub tokens: Vec<String>,
}

/// One row of a node's `system_views.cluster_status`.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberRow {
    pub peer: IpAddr,
    pub status: String,
    pub up: bool,
    pub local: bool,
    pub generation: Option<i64>,
    pub heartbeat: Option<i64>,
    pub host_id: Option<String>,
    pub data_center: Option<String>,
    pub rack: Option<String>,
    pub tokens: Vec<String>,
}

impl MemberRow {
    /// Two letters as `nodetool status` shows them, the same as `ringdb status`
    /// ([`crate::status::state_code`]).
    pub fn code(&self) -> String {
        crate::status::state_code(self.up, &self.status.to_ascii_uppercase())
    }

    /// Up and NORMAL.
    pub fn is_up_normal(&self) -> bool {
        self.up && self.status.eq_ignore_ascii_case("NORMAL")
    }
}

/// What one node says about the cluster.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodeView {
    /// `system.peers`: the other nodes it knows.
    pub peers: Vec<PeerRow>,
    /// `system_views.cluster_status`, or `None` when the node has no such table.
    pub cluster_status: Option<Vec<MemberRow>>,
}

impl NodeView {
    /// Its `cluster_status` row about `ip`.
    pub fn member(&self, ip: IpAddr) -> Option<&MemberRow> {
        self.cluster_status
            .as_ref()
            .and_then(|rows| rows.iter().find(|r| r.peer == ip))
    }

    /// Its `system.peers` row about `ip`.
    pub fn peer(&self, ip: IpAddr) -> Option<&PeerRow> {
        self.peers.iter().find(|r| r.peer == ip)
    }
}

/// Time allowed for one node to answer both queries (connection included).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Connects to a node's CQL endpoint and reads its view.
pub async fn read_view(addr: SocketAddr) -> Result<NodeView, String> {
    read_view_as(addr, None).await
}

/// [`read_view`], logging in with `credentials` (a cluster with authentication on).
pub async fn read_view_as(
    addr: SocketAddr,
    credentials: Option<Credentials>,
) -> Result<NodeView, String> {
    let work = async {
        let options = ClientOptions {
            connect_timeout: PROBE_TIMEOUT,
            request_timeout: PROBE_TIMEOUT,
            credentials,
            ..ClientOptions::default()
        };
        let client = Client::connect(addr, options)
            .await
            .map_err(|e| e.to_string())?;
        let peers = select_all(&client, "SELECT * FROM system.peers")
            .await
            .map_err(|e| format!("reading system.peers: {e}"))?;
        let peers = peers.as_ref().map(peer_rows).unwrap_or_default();
        let cluster_status =
            match select_all(&client, "SELECT * FROM system_views.cluster_status").await {
                Ok(rows) => Some(rows.as_ref().map(member_rows).unwrap_or_default()),
                // The table does not exist on this node (built before gossip).
                Err(e) if e.server_code() == Some(error_code::INVALID) => None,
                Err(e) => return Err(format!("reading system_views.cluster_status: {e}")),
            };
        Ok(NodeView {
            peers,
            cluster_status,
        })
    };
    match tokio::time::timeout(PROBE_TIMEOUT * 2, work).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {:?}", PROBE_TIMEOUT * 2)),
    }
}

async fn select_all(client: &Client, cql: &str) -> Result<Option<Rows>, ClientError> {
    let options = QueryOptions {
        page_size: None,
        ..QueryOptions::default()
    };
    Ok(client
        .query_all(cql, NO_VALUES, &options)
        .await?
        .into_rows())
}

/// `system.peers` rows (rows without a readable `peer` are skipped).
pub fn peer_rows(rows: &Rows) -> Vec<PeerRow> {
    rows.rows
        .iter()
        .filter_map(|row| {
            Some(PeerRow {
                peer: inet(cell(rows, row, "peer"))?,
                data_center: text(cell(rows, row, "data_center")),
                rack: text(cell(rows, row, "rack")),
                host_id: uuid(cell(rows, row, "host_id")),
                tokens: text_set(cell(rows, row, "tokens")),
            })
        })
        .collect()
}

/// `system_views.cluster_status` rows (rows without a readable `peer` are skipped), read the
/// way `ringdb status` reads them.
pub fn member_rows(rows: &Rows) -> Vec<MemberRow> {
    crate::status::parse_cluster_status(rows)
        .into_iter()
        .map(|r| MemberRow {
            peer: r.address,
            status: r.gossip_status,
            up: r.up,
            local: r.local,
            generation: Some(r.generation),
            heartbeat: Some(r.heartbeat),
            host_id: r.host_id,
            data_center: Some(r.dc).filter(|d| d != "?"),
            rack: Some(r.rack).filter(|r| r != "?"),
            tokens: r.tokens.iter().map(i64::to_string).collect(),
        })
        .collect()
}

/// Why the cluster has not converged yet: `observer` does not see `subject` as it should.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// The node whose view is lacking.
    pub observer: String,
    /// The node it is wrong about (the observer itself when it does not answer CQL).
    pub subject: String,
    /// What is wrong, in words.
    pub problem: String,
}

impl fmt::Display for Gap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.observer == self.subject {
            write!(f, "{}: {}", self.observer, self.problem)
        } else {
            write!(f, "{} {} {}", self.observer, self.problem, self.subject)
        }
    }
}

/// A running node as the convergence check sees it.
#[derive(Debug, Clone)]
pub struct Observed {
    pub name: String,
    pub ip: IpAddr,
    /// Its view, or why it could not be read.
    pub view: Result<NodeView, String>,
}

/// Every way in which the running nodes' views fall short of convergence (empty: converged).
///
/// Besides up and `NORMAL`, every observer must know each node by the generation that node
/// gives itself: right after a node restarts, the others may still show its previous process
/// as up.
pub fn check_converged(running: &[Observed]) -> Vec<Gap> {
    let mut gaps = Vec::new();
    // The generation each node gives itself (its local cluster_status row).
    let own_generation = |ip: IpAddr| -> Option<i64> {
        let o = running.iter().find(|o| o.ip == ip)?;
        o.view.as_ref().ok()?.member(ip)?.generation
    };
    for observer in running {
        let view = match &observer.view {
            Ok(v) => v,
            Err(e) => {
                gaps.push(Gap {
                    observer: observer.name.clone(),
                    subject: observer.name.clone(),
                    problem: format!("does not answer CQL ({e})"),
                });
                continue;
            }
        };
        for subject in running {
            let is_self = subject.ip == observer.ip;
            if !is_self && view.peer(subject.ip).is_none() {
                gaps.push(Gap {
                    observer: observer.name.clone(),
                    subject: subject.name.clone(),
                    problem: "has no system.peers row for".into(),
                });
            }
            if view.cluster_status.is_some() {
                match view.member(subject.ip) {
                    None => gaps.push(Gap {
                        observer: observer.name.clone(),
                        subject: subject.name.clone(),
                        problem: "has no cluster_status row for".into(),
                    }),
                    Some(m) if !m.is_up_normal() => gaps.push(Gap {
                        observer: observer.name.clone(),
                        subject: subject.name.clone(),
                        problem: format!(
                            "sees {} (up={}, status {}) for",
                            m.code(),
                            m.up,
                            m.status
                        ),
                    }),
                    Some(m) => {
                        let own = own_generation(subject.ip);
                        if !is_self && own.is_some() && m.generation != own {
                            gaps.push(Gap {
                                observer: observer.name.clone(),
                                subject: subject.name.clone(),
                                problem: format!(
                                    "knows generation {:?}, not the current {:?}, of",
                                    m.generation, own
                                ),
                            });
                        }
                    }
                }
            }
        }
    }
    gaps
}

/// The node most likely at fault for a set of gaps: one that does not answer CQL, else the
/// subject that most observers miss or see down, else the first observer.
pub fn culprit(gaps: &[Gap]) -> Option<String> {
    if let Some(g) = gaps.iter().find(|g| g.observer == g.subject) {
        return Some(g.observer.clone());
    }
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for g in gaps {
        *counts.entry(g.subject.as_str()).or_default() += 1;
    }
    counts
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .map(|(name, _)| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
    }

    fn member(n: u8, up: bool, status: &str) -> MemberRow {
        MemberRow {
            peer: ip(n),
            status: status.into(),
            up,
            local: false,
            generation: Some(1),
            heartbeat: Some(1),
            host_id: None,
            data_center: None,
            rack: None,
            tokens: Vec::new(),
        }
    }

    fn peer(n: u8) -> PeerRow {
        PeerRow {
            peer: ip(n),
            data_center: Some("dc1".into()),
            rack: Some("rack1".into()),
            host_id: None,
            tokens: vec!["1".into()],
        }
    }

    fn node(n: u8, view: Result<NodeView, String>) -> Observed {
        Observed {
            name: format!("node{n}"),
            ip: ip(n),
            view,
        }
    }

    fn full_view(me: u8, all: &[u8]) -> NodeView {
        NodeView {
            peers: all.iter().filter(|&&n| n != me).map(|&n| peer(n)).collect(),
            cluster_status: Some(all.iter().map(|&n| member(n, true, "NORMAL")).collect()),
        }
    }

    #[test]
    fn converged_when_everyone_sees_everyone_up_normal() {
        let all = [1, 2, 3];
        let nodes: Vec<Observed> = all
            .iter()
            .map(|&n| node(n, Ok(full_view(n, &all))))
            .collect();
        assert!(check_converged(&nodes).is_empty());
    }

    #[test]
    fn gaps_name_observer_and_subject() {
        let all = [1, 2, 3];
        let mut v1 = full_view(1, &all);
        v1.cluster_status.as_mut().unwrap()[2] = member(3, false, "NORMAL");
        let mut v2 = full_view(2, &all);
        v2.peers.retain(|p| p.peer != ip(3));
        v2.cluster_status.as_mut().unwrap()[2] = member(3, true, "JOINING");
        let nodes = vec![
            node(1, Ok(v1)),
            node(2, Ok(v2)),
            node(3, Ok(full_view(3, &all))),
        ];
        let gaps = check_converged(&nodes);
        let text: Vec<String> = gaps.iter().map(|g| g.to_string()).collect();
        assert_eq!(
            text,
            [
                "node1 sees DN (up=false, status NORMAL) for node3",
                "node2 has no system.peers row for node3",
                "node2 sees UJ (up=true, status JOINING) for node3",
            ]
        );
        assert_eq!(culprit(&gaps).as_deref(), Some("node3"));
    }

    #[test]
    fn a_stale_generation_is_a_gap() {
        let all = [1, 2];
        let mut v2 = full_view(2, &all);
        v2.cluster_status.as_mut().unwrap()[1].generation = Some(7);
        let nodes = vec![node(1, Ok(full_view(1, &all))), node(2, Ok(v2))];
        let text: Vec<String> = check_converged(&nodes)
            .iter()
            .map(|g| g.to_string())
            .collect();
        assert_eq!(
            text,
            ["node1 knows generation Some(1), not the current Some(7), of node2"]
        );
    }

    #[test]
    fn an_unreachable_node_is_the_culprit() {
        let all = [1, 2];
        let nodes = vec![
            node(1, Ok(full_view(1, &all))),
            node(2, Err("connection refused".into())),
        ];
        let gaps = check_converged(&nodes);
        assert_eq!(gaps.len(), 1);
        assert_eq!(culprit(&gaps).as_deref(), Some("node2"));
        assert!(gaps[0].to_string().contains("does not answer CQL"));
    }

    #[test]
    fn without_cluster_status_only_peers_count() {
        let nodes = vec![node(
            1,
            Ok(NodeView {
                peers: Vec::new(),
                cluster_status: None,
            }),
        )];
        assert!(check_converged(&nodes).is_empty());
        let nodes = vec![
            node(1, Ok(NodeView::default())),
            node(2, Ok(NodeView::default())),
        ];
        assert_eq!(check_converged(&nodes).len(), 2);
    }

    #[test]
    fn codes() {
        assert_eq!(member(1, true, "NORMAL").code(), "UN");
        assert_eq!(member(1, false, "NORMAL").code(), "DN");
        assert_eq!(member(1, true, "JOINING").code(), "UJ");
        assert_eq!(member(1, false, "SHUTDOWN").code(), "DN");
        assert_eq!(member(1, false, "weird").code(), "D?");
    }
}
