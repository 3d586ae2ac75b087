//! Where each key lives, as this node currently sees the cluster.
//!
//! Gossip publishes a new [`ClusterView`] many times a second (every heartbeat), but the ring
//! changes rarely: only when a node joins, leaves or changes tokens, datacenter or rack. So the
//! view is split in two:
//!
//! - a [`Placement`]: the [`TokenRing`] of the nodes in the ring (status NORMAL, LEAVING or
//!   SHUTDOWN, with tokens) and, computed lazily and cached **once per ring and keyspace
//!   replication**, a [`ReplicaMap`] per replication setting; rebuilt only when the ring's
//!   membership actually changes ([`RingKey`]);
//! - the set of hosts alive right now, refreshed on every view.
//!
//! Both are immutable snapshots behind one `Arc` ([`ClusterState`]), swapped whole, so a request
//! takes one snapshot and uses it throughout.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use ringdb_gossip::state::{AppStateKey, ClusterView, NodeStatus};
use ringdb_ring::{Endpoint, HostId, ReplicaMap, Replication, Token, TokenRing, Topology};

/// A ring host id from a node's uuid.
pub fn host_id(id: uuid::Uuid) -> HostId {
    HostId(*id.as_bytes())
}

/// Whether a node with this status owns its tokens (a node shut down still does: it is down,
/// not gone).
pub fn in_ring(status: Option<NodeStatus>) -> bool {
    matches!(
        status,
        Some(NodeStatus::Normal | NodeStatus::Leaving | NodeStatus::Shutdown)
    )
}

/// One node as the ring sees it: identity, address, datacenter, rack, tokens.
type Member = (HostId, SocketAddr, String, String, Vec<i64>);

fn endpoint_of((host, addr, dc, rack, tokens): &Member) -> Endpoint {
    Endpoint {
        host_id: *host,
        addr: *addr,
        dc: dc.clone(),
        rack: rack.clone(),
        tokens: tokens.iter().map(|&t| Token(t)).collect(),
    }
}

/// What decides the ring: each ring member's identity, address, location and tokens, and the
/// nodes changing it (joining with their tokens, or leaving). Two views with equal keys give the
/// same placement.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RingKey {
    members: Vec<Member>,
    joining: Vec<Member>,
    leaving: Vec<HostId>,
}

impl RingKey {
    /// The ring members of a gossip view, and the nodes joining or leaving it.
    pub fn of(view: &ClusterView) -> RingKey {
        let mut members = Vec::new();
        let mut joining = Vec::new();
        let mut leaving = Vec::new();
        for (endpoint, ev) in &view.endpoints {
            let st = &ev.state;
            let status = st.status();
            let is_joining = status == Some(NodeStatus::Joining);
            if !in_ring(status) && !is_joining {
                continue;
            }
            let Some(id) = st
                .get(AppStateKey::HostId)
                .and_then(|h| uuid::Uuid::from_str(h).ok())
            else {
                continue;
            };
            let tokens = st.tokens();
            if tokens.is_empty() {
                continue;
            }
            let dc = st.get(AppStateKey::Dc).unwrap_or("unknown").to_string();
            let rack = st.get(AppStateKey::Rack).unwrap_or("unknown").to_string();
            let member = (host_id(id), endpoint.0, dc, rack, tokens);
            if is_joining {
                joining.push(member);
            } else {
                if status == Some(NodeStatus::Leaving) {
                    leaving.push(member.0);
                }
                members.push(member);
            }
        }
        members.sort();
        joining.sort();
        leaving.sort();
        RingKey {
            members,
            joining,
            leaving,
        }
    }

    /// Whether `host` is leaving the ring (decommission, or removal of a dead node).
    pub fn is_leaving(&self, host: &HostId) -> bool {
        self.leaving.contains(host)
    }

    /// Whether some node is joining or leaving (the ring is about to change).
    pub fn is_changing(&self) -> bool {
        !self.joining.is_empty() || !self.leaving.is_empty()
    }
}

/// The replication of one keyspace on one ring: its parsed strategy and replica map.
#[derive(Debug)]
pub struct KeyspacePlacement {
    /// The keyspace's replication.
    pub replication: Replication,
    /// Replicas of every vnode range.
    pub map: ReplicaMap,
    /// Replicas of every vnode range once the nodes joining and leaving are done, when some are.
    pub future: Option<ReplicaMap>,
}

impl KeyspacePlacement {
    /// The pending replicas of `token`: nodes that will replicate it once the ring change under
    /// way is done but do not yet (writes go to them too, so they miss nothing while data
    /// streams in).
    pub fn pending(&self, token: Token) -> Vec<HostId> {
        let Some(future) = &self.future else {
            return Vec::new();
        };
        let now = self.map.replicas(token);
        future
            .replicas(token)
            .iter()
            .filter(|h| !now.contains(h))
            .copied()
            .collect()
    }
}

/// Replica maps by a keyspace's normalized replication options.
type MapCache = HashMap<Vec<(String, String)>, Arc<KeyspacePlacement>>;

/// The ring as of some view, with replica maps computed on first use.
#[derive(Debug)]
pub struct Placement {
    key: RingKey,
    ring: TokenRing,
    /// The ring once the joining nodes are in and the leaving ones out, when any are.
    future: Option<TokenRing>,
    /// Nodes whose tokens conflicted with another's and were left out (logged once per ring).
    rejected: Vec<HostId>,
    by_addr: HashMap<SocketAddr, HostId>,
    maps: Mutex<MapCache>,
}

impl Placement {
    /// Builds the ring of `key`'s members.
    pub fn new(key: RingKey) -> Placement {
        let mut topology = Topology::new();
        let mut rejected = Vec::new();
        let mut by_addr = HashMap::new();
        for member in &key.members {
            match topology.insert(endpoint_of(member)) {
                Ok(_) => {
                    by_addr.insert(member.1, member.0);
                }
                Err(e) => {
                    tracing::error!(host = %member.0, addr = %member.1, error = ?e, "node left out of the ring");
                    rejected.push(member.0);
                }
            }
        }
        let future = key.is_changing().then(|| {
            let mut future = topology.clone();
            for host in &key.leaving {
                future.remove(host);
            }
            for member in &key.joining {
                match future.insert(endpoint_of(member)) {
                    Ok(_) => {
                        by_addr.insert(member.1, member.0);
                    }
                    Err(e) => {
                        tracing::error!(host = %member.0, addr = %member.1, error = ?e, "joining node left out of the future ring");
                    }
                }
            }
            TokenRing::new(future)
        });
        Placement {
            key,
            ring: TokenRing::new(topology),
            future,
            rejected,
            by_addr,
            maps: Mutex::new(HashMap::new()),
        }
    }

    /// The members this placement was built from.
    pub fn key(&self) -> &RingKey {
        &self.key
    }

    /// The token ring.
    pub fn ring(&self) -> &TokenRing {
        &self.ring
    }

    /// Nodes left out of the ring because their tokens conflict with another node's.
    pub fn rejected(&self) -> &[HostId] {
        &self.rejected
    }

    /// A ring member's description (or a joining node's).
    pub fn endpoint(&self, host: &HostId) -> Option<&Endpoint> {
        self.ring
            .endpoint(host)
            .or_else(|| self.future.as_ref().and_then(|f| f.endpoint(host)))
    }

    /// The ring member listening at `addr`.
    pub fn host_at(&self, addr: SocketAddr) -> Option<HostId> {
        self.by_addr.get(&addr).copied()
    }

    /// The replica map of a keyspace with these (normalized) replication options, computed once
    /// per ring.
    pub fn keyspace(
        &self,
        replication: &[(String, String)],
    ) -> Result<Arc<KeyspacePlacement>, ringdb_ring::ReplicationError> {
        let mut maps = self.maps.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = maps.get(replication) {
            return Ok(p.clone());
        }
        let parsed = Replication::from_options(
            replication.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            self.ring.datacenters(),
        )?;
        let map = ReplicaMap::new(&self.ring, &parsed);
        let future = self.future.as_ref().map(|f| ReplicaMap::new(f, &parsed));
        let placement = Arc::new(KeyspacePlacement {
            replication: parsed,
            map,
            future,
        });
        maps.insert(replication.to_vec(), placement.clone());
        Ok(placement)
    }
}

/// One consistent snapshot: the placement and who is alive.
#[derive(Debug)]
pub struct ClusterState {
    /// The ring.
    pub placement: Arc<Placement>,
    /// Hosts up right now (this node always is).
    pub alive: HashSet<HostId>,
    /// This node.
    pub local: HostId,
}

impl ClusterState {
    /// The state of `view`, reusing `previous`'s placement when the ring did not change.
    pub fn of(view: &ClusterView, local: HostId, previous: Option<&ClusterState>) -> ClusterState {
        let key = RingKey::of(view);
        let placement = match previous {
            Some(p) if *p.placement.key() == key => p.placement.clone(),
            _ => Arc::new(Placement::new(key)),
        };
        let mut alive: HashSet<HostId> = view
            .endpoints
            .iter()
            .filter(|(_, ev)| ev.alive)
            .filter_map(|(ep, _)| placement.host_at(ep.0))
            .collect();
        alive.insert(local);
        ClusterState {
            placement,
            alive,
            local,
        }
    }

    /// Whether `host` is up.
    pub fn is_alive(&self, host: &HostId) -> bool {
        self.alive.contains(host)
    }

    /// `host`'s datacenter ("" if it is not in the ring).
    pub fn dc_of(&self, host: &HostId) -> &str {
        self.placement
            .endpoint(host)
            .map(|e| e.dc.as_str())
            .unwrap_or("")
    }

    /// `host`'s internode address.
    pub fn addr_of(&self, host: &HostId) -> Option<SocketAddr> {
        self.placement.endpoint(host).map(|e| e.addr)
    }

    /// Replicas ordered by closeness to this node: itself, then its rack, then its datacenter,
    /// then the rest, keeping ring order within each class (so the primary replica is preferred
    /// among equals).
    pub fn by_proximity(&self, replicas: &[HostId], dc: &str, rack: &str) -> Vec<HostId> {
        let rank = |h: &HostId| -> u8 {
            if *h == self.local {
                return 0;
            }
            match self.placement.endpoint(h) {
                Some(e) if e.dc == dc && e.rack == rack => 1,
                Some(e) if e.dc == dc => 2,
                _ => 3,
            }
        };
        let mut out = replicas.to_vec();
        out.sort_by_key(rank);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringdb_gossip::state::{encode_tokens, Endpoint as GossipEndpoint, EndpointState};
    use ringdb_gossip::state::{EndpointView, VersionedValue};
    use std::collections::BTreeMap;

    fn state(id: u128, dc: &str, rack: &str, tokens: &[i64], status: &str) -> EndpointState {
        let mut st = EndpointState::new(1);
        let mut put = |k, v: String| {
            st.app_states.insert(
                k,
                VersionedValue {
                    value: v,
                    version: 1,
                },
            );
        };
        put(AppStateKey::HostId, uuid::Uuid::from_u128(id).to_string());
        put(AppStateKey::Dc, dc.into());
        put(AppStateKey::Rack, rack.into());
        put(AppStateKey::Tokens, encode_tokens(tokens));
        put(AppStateKey::Status, status.into());
        st
    }

    /// (id, dc, rack, tokens, status, alive)
    type Node<'a> = (u128, &'a str, &'a str, &'a [i64], &'a str, bool);

    fn view(nodes: &[Node<'_>]) -> ClusterView {
        let mut endpoints = BTreeMap::new();
        for &(id, dc, rack, tokens, status, alive) in nodes {
            endpoints.insert(
                GossipEndpoint(SocketAddr::from(([127, 0, 0, id as u8], 7000))),
                EndpointView {
                    state: state(id, dc, rack, tokens, status),
                    alive,
                },
            );
        }
        ClusterView {
            local: GossipEndpoint(SocketAddr::from(([127, 0, 0, 1], 7000))),
            endpoints,
        }
    }

    #[test]
    fn ring_members_and_liveness() {
        let v = view(&[
            (1, "dc1", "r1", &[-10, 10], "NORMAL", true),
            (2, "dc1", "r2", &[0], "SHUTDOWN", false),
            (3, "dc1", "r1", &[5], "BOOT", true),
            (4, "dc2", "r1", &[], "NORMAL", true),
        ]);
        let local = host_id(uuid::Uuid::from_u128(1));
        let s = ClusterState::of(&v, local, None);
        let hosts: Vec<HostId> = s.placement.ring().hosts().collect();
        assert_eq!(
            hosts.len(),
            2,
            "BOOT and token-less nodes are not in the ring"
        );
        assert!(s.is_alive(&local));
        assert!(!s.is_alive(&host_id(uuid::Uuid::from_u128(2))));
        assert_eq!(s.dc_of(&host_id(uuid::Uuid::from_u128(2))), "dc1");

        // A heartbeat-only change keeps the same placement (and its cached maps).
        let ks = vec![
            (
                "class".to_string(),
                "org.apache.cassandra.locator.SimpleStrategy".to_string(),
            ),
            ("replication_factor".to_string(), "2".to_string()),
        ];
        let a = s.placement.keyspace(&ks).unwrap();
        let s2 = ClusterState::of(&v, local, Some(&s));
        assert!(Arc::ptr_eq(&s.placement, &s2.placement));
        assert!(Arc::ptr_eq(&a, &s2.placement.keyspace(&ks).unwrap()));
        assert_eq!(a.map.replicas(Token(1)).len(), 2);
    }

    #[test]
    fn proximity_prefers_self_then_rack_then_dc() {
        let v = view(&[
            (1, "dc1", "r1", &[100], "NORMAL", true),
            (2, "dc2", "r1", &[200], "NORMAL", true),
            (3, "dc1", "r2", &[300], "NORMAL", true),
            (4, "dc1", "r1", &[400], "NORMAL", true),
        ]);
        let local = host_id(uuid::Uuid::from_u128(1));
        let s = ClusterState::of(&v, local, None);
        let h = |i| host_id(uuid::Uuid::from_u128(i));
        assert_eq!(
            s.by_proximity(&[h(2), h(3), h(4), h(1)], "dc1", "r1"),
            vec![h(1), h(4), h(3), h(2)]
        );
    }
}
