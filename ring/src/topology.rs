//! Who owns which part of the ring: endpoints, the [`Topology`] that holds them, and the
//! [`TokenRing`] built from it.
//!
//! A [`Topology`] is the membership picture the node learns from gossip: one [`Endpoint`] per
//! [`HostId`], each with its address, datacenter, rack and tokens. It enforces the one invariant
//! the ring needs, that no token has two owners, when an endpoint is inserted.
//!
//! A [`TokenRing`] is an immutable snapshot built from a topology: every vnode token sorted, each
//! mapped to its owner. It answers ring questions in `O(log n)` — which vnode owns a token, which
//! range contains it — and `O(n)` summaries such as the ranges a host owns and its share of the
//! ring. Replica placement (which hosts hold copies) builds on it in [`crate::strategy`].
//!
//! Only endpoints that own at least one token are on the ring. An endpoint without tokens (a node
//! still joining) stays in the topology but takes no part in placement, and does not count as a
//! host of its datacenter or rack, exactly as Cassandra's token metadata only counts normal
//! endpoints.
//!
//! Internally the ring numbers its hosts, datacenters and racks densely (the `Layout`) so that the
//! replica walks of the strategies compare small integers instead of strings.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use crate::token::{Token, TokenRange, RING_SIZE};

/// A node's permanent identity (Cassandra's host id, a UUID), stable across address changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HostId(pub [u8; 16]);

impl HostId {
    /// The host id whose 16 bytes are `value` in big-endian order.
    pub const fn from_u128(value: u128) -> HostId {
        HostId(value.to_be_bytes())
    }

    /// The 16 bytes as a big-endian integer.
    pub const fn as_u128(&self) -> u128 {
        u128::from_be_bytes(self.0)
    }
}

impl fmt::Display for HostId {
    /// Formats as a hyphenated UUID, the form `system.peers.host_id` shows.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, byte) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// Why a string is not a host id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseHostIdError {
    /// The text that failed to parse.
    pub input: String,
}

impl fmt::Display for ParseHostIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not a host id (expected a UUID): {:?}", self.input)
    }
}

impl std::error::Error for ParseHostIdError {}

impl FromStr for HostId {
    type Err = ParseHostIdError;

    /// Parses a UUID, hyphenated (`8-4-4-4-12`) or as 32 bare hex digits.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseHostIdError {
            input: s.to_string(),
        };
        let hyphens: Vec<usize> = s.match_indices('-').map(|(i, _)| i).collect();
        if !(hyphens.is_empty() || hyphens == [8, 13, 18, 23]) {
            return Err(err());
        }
        let digits: Vec<u8> = s.bytes().filter(|&b| b != b'-').collect();
        if digits.len() != 32 {
            return Err(err());
        }
        let mut bytes = [0u8; 16];
        for (i, pair) in digits.chunks_exact(2).enumerate() {
            let text = std::str::from_utf8(pair).map_err(|_| err())?;
            bytes[i] = u8::from_str_radix(text, 16).map_err(|_| err())?;
        }
        Ok(HostId(bytes))
    }
}

/// One node as placement sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The node's permanent identity.
    pub host_id: HostId,
    /// The internode address the node listens on.
    pub addr: SocketAddr,
    /// The datacenter the node belongs to.
    pub dc: String,
    /// The rack (failure domain) within its datacenter.
    pub rack: String,
    /// The node's vnode tokens. [`Topology::insert`] stores them sorted and without duplicates;
    /// empty for a node that has not joined the ring yet.
    pub tokens: Vec<Token>,
}

/// Why a [`Topology`] refused an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopologyError {
    /// The endpoint claims a token another host already owns.
    TokenConflict {
        /// The contested token.
        token: Token,
        /// The host that owns it.
        owner: HostId,
        /// The host that also claimed it.
        claimant: HostId,
    },
}

impl fmt::Display for TopologyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TopologyError::TokenConflict {
                token,
                owner,
                claimant,
            } => write!(
                f,
                "token {token} is owned by {owner} and cannot also be claimed by {claimant}"
            ),
        }
    }
}

impl std::error::Error for TopologyError {}

/// The set of known endpoints, keyed by host id, with no token owned twice.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Topology {
    endpoints: BTreeMap<HostId, Endpoint>,
    token_owners: BTreeMap<Token, HostId>,
}

impl Topology {
    /// An empty topology.
    pub fn new() -> Topology {
        Topology::default()
    }

    /// A topology of `endpoints`, inserted in order (see [`Topology::insert`]).
    pub fn from_endpoints(
        endpoints: impl IntoIterator<Item = Endpoint>,
    ) -> Result<Topology, TopologyError> {
        let mut topology = Topology::new();
        for endpoint in endpoints {
            topology.insert(endpoint)?;
        }
        Ok(topology)
    }

    /// Adds `endpoint`, or replaces the endpoint with the same host id (its tokens, address,
    /// datacenter or rack may have changed), returning the replaced one.
    ///
    /// Fails, leaving the topology unchanged, if one of its tokens belongs to another host.
    pub fn insert(&mut self, mut endpoint: Endpoint) -> Result<Option<Endpoint>, TopologyError> {
        endpoint.tokens.sort_unstable();
        endpoint.tokens.dedup();
        for token in &endpoint.tokens {
            if let Some(&owner) = self.token_owners.get(token) {
                if owner != endpoint.host_id {
                    return Err(TopologyError::TokenConflict {
                        token: *token,
                        owner,
                        claimant: endpoint.host_id,
                    });
                }
            }
        }
        let previous = self.remove(&endpoint.host_id);
        for token in &endpoint.tokens {
            self.token_owners.insert(*token, endpoint.host_id);
        }
        self.endpoints.insert(endpoint.host_id, endpoint);
        Ok(previous)
    }

    /// Removes the endpoint with this host id, returning it.
    pub fn remove(&mut self, host_id: &HostId) -> Option<Endpoint> {
        let endpoint = self.endpoints.remove(host_id)?;
        for token in &endpoint.tokens {
            self.token_owners.remove(token);
        }
        Some(endpoint)
    }

    /// The endpoint with this host id.
    pub fn get(&self, host_id: &HostId) -> Option<&Endpoint> {
        self.endpoints.get(host_id)
    }

    /// All endpoints, in host id order.
    pub fn endpoints(&self) -> impl Iterator<Item = &Endpoint> {
        self.endpoints.values()
    }

    /// The number of endpoints, with or without tokens.
    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    /// Whether there are no endpoints.
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// The datacenters of all endpoints, sorted.
    pub fn datacenters(&self) -> BTreeSet<&str> {
        self.endpoints.values().map(|e| e.dc.as_str()).collect()
    }

    /// The host that owns exactly this token, if any.
    pub fn owner_of_token(&self, token: Token) -> Option<HostId> {
        self.token_owners.get(&token).copied()
    }
}

/// Dense numbering of the hosts on a ring and of their datacenters and racks, with the counts the
/// replica walks need. Host `i` of the layout is host `i` of the ring.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Layout {
    /// Host index → host id.
    pub host_ids: Vec<HostId>,
    /// Host index → datacenter index.
    pub host_dc: Vec<u32>,
    /// Host index → rack index (racks are numbered across all datacenters).
    pub host_rack: Vec<u32>,
    /// Datacenter index → name, sorted.
    pub dc_names: Vec<String>,
    /// Datacenter index → number of active hosts.
    pub dc_hosts: Vec<usize>,
    /// Datacenter index → number of racks with at least one active host.
    pub dc_racks: Vec<usize>,
}

impl Layout {
    /// Numbers `hosts` (host id, datacenter, rack) in the order given and counts the ones marked
    /// active: only those count as hosts and racks of their datacenter.
    pub fn build<'a>(hosts: impl IntoIterator<Item = (HostId, &'a str, &'a str, bool)>) -> Layout {
        let hosts: Vec<_> = hosts.into_iter().collect();
        let dc_names: Vec<String> = hosts
            .iter()
            .map(|h| h.1)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(str::to_string)
            .collect();
        let racks: BTreeMap<(&str, &str), u32> = hosts
            .iter()
            .map(|h| (h.1, h.2))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .enumerate()
            .map(|(i, key)| (key, i as u32))
            .collect();
        let dc_index = |dc: &str| {
            dc_names
                .binary_search_by(|n| n.as_str().cmp(dc))
                .unwrap_or(0)
        };

        let mut layout = Layout {
            host_ids: Vec::with_capacity(hosts.len()),
            host_dc: Vec::with_capacity(hosts.len()),
            host_rack: Vec::with_capacity(hosts.len()),
            dc_hosts: vec![0; dc_names.len()],
            dc_racks: vec![0; dc_names.len()],
            dc_names: dc_names.clone(),
        };
        let mut active_racks = BTreeSet::new();
        for &(id, dc, rack, active) in &hosts {
            let d = dc_index(dc);
            let r = racks.get(&(dc, rack)).copied().unwrap_or(0);
            layout.host_ids.push(id);
            layout.host_dc.push(d as u32);
            layout.host_rack.push(r);
            if active {
                layout.dc_hosts[d] += 1;
                if active_racks.insert(r) {
                    layout.dc_racks[d] += 1;
                }
            }
        }
        layout
    }

    /// The number of active hosts.
    pub fn active_hosts(&self) -> usize {
        self.dc_hosts.iter().sum()
    }

    /// The index of the datacenter with this name.
    pub fn dc_index(&self, dc: &str) -> Option<usize> {
        self.dc_names.binary_search_by(|n| n.as_str().cmp(dc)).ok()
    }
}

/// One vnode: a token and the index (in the ring's layout) of the host that owns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct VNode {
    pub token: Token,
    pub host: u32,
}

/// An immutable snapshot of the ring: every vnode token, sorted, mapped to its owner.
///
/// Built from a [`Topology`] (which it keeps, see [`TokenRing::topology`]); rebuild it when the
/// topology changes and share it behind an `Arc`.
#[derive(Debug, Clone)]
pub struct TokenRing {
    topology: Topology,
    layout: Layout,
    vnodes: Vec<VNode>,
}

impl TokenRing {
    /// The ring of every endpoint in `topology` that owns tokens.
    pub fn new(topology: Topology) -> TokenRing {
        let on_ring: Vec<&Endpoint> = topology
            .endpoints()
            .filter(|e| !e.tokens.is_empty())
            .collect();
        let layout = Layout::build(
            on_ring
                .iter()
                .map(|e| (e.host_id, e.dc.as_str(), e.rack.as_str(), true)),
        );
        let mut vnodes: Vec<VNode> = on_ring
            .iter()
            .enumerate()
            .flat_map(|(host, e)| {
                e.tokens.iter().map(move |&token| VNode {
                    token,
                    host: host as u32,
                })
            })
            .collect();
        vnodes.sort_unstable_by_key(|v| v.token);
        TokenRing {
            topology,
            layout,
            vnodes,
        }
    }

    /// The topology this ring was built from, including endpoints without tokens.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The number of vnodes (tokens) on the ring.
    pub fn len(&self) -> usize {
        self.vnodes.len()
    }

    /// Whether no endpoint owns a token.
    pub fn is_empty(&self) -> bool {
        self.vnodes.is_empty()
    }

    /// Every vnode token in ring order.
    pub fn tokens(&self) -> impl Iterator<Item = Token> + '_ {
        self.vnodes.iter().map(|v| v.token)
    }

    /// Every vnode in ring order, as (token, owner).
    pub fn vnodes(&self) -> impl Iterator<Item = (Token, HostId)> + '_ {
        self.vnodes
            .iter()
            .map(|v| (v.token, self.layout.host_ids[v.host as usize]))
    }

    /// The hosts that own at least one token, in host id order.
    pub fn hosts(&self) -> impl Iterator<Item = HostId> + '_ {
        self.layout.host_ids.iter().copied()
    }

    /// The datacenters with at least one host on the ring, sorted.
    pub fn datacenters(&self) -> impl Iterator<Item = &str> {
        self.layout.dc_names.iter().map(String::as_str)
    }

    /// The endpoint record of a host (on the ring or not).
    pub fn endpoint(&self, host: &HostId) -> Option<&Endpoint> {
        self.topology.get(host)
    }

    /// The index of the vnode whose range contains `token`: the first vnode at or after it,
    /// wrapping to the first vnode. `None` on an empty ring.
    pub(crate) fn vnode_index(&self, token: Token) -> Option<usize> {
        if self.vnodes.is_empty() {
            return None;
        }
        let i = self.vnodes.partition_point(|v| v.token < token);
        Some(if i == self.vnodes.len() { 0 } else { i })
    }

    /// The range `(previous token, token]` closed by the vnode at `index`.
    pub(crate) fn range_at(&self, index: usize) -> TokenRange {
        let n = self.vnodes.len();
        let previous = self.vnodes[(index + n - 1) % n].token;
        TokenRange::new(previous, self.vnodes[index].token)
    }

    /// The owners of the vnodes met walking clockwise from the vnode at `start`, once round the
    /// ring, as layout indices.
    pub(crate) fn owners_from(&self, start: usize) -> impl Iterator<Item = u32> + '_ {
        let (tail, head) = self.vnodes.split_at(start.min(self.vnodes.len()));
        head.iter().chain(tail).map(|v| v.host)
    }

    pub(crate) fn layout(&self) -> &Layout {
        &self.layout
    }

    pub(crate) fn raw_vnodes(&self) -> &[VNode] {
        &self.vnodes
    }

    /// The host whose vnode range contains `token` (the first vnode clockwise from it, inclusive).
    pub fn primary_owner(&self, token: Token) -> Option<HostId> {
        let i = self.vnode_index(token)?;
        Some(self.layout.host_ids[self.vnodes[i].host as usize])
    }

    /// The vnode range `(previous token, vnode token]` that contains `token`.
    pub fn range_containing(&self, token: Token) -> Option<TokenRange> {
        self.vnode_index(token).map(|i| self.range_at(i))
    }

    /// The ranges a host owns as primary owner (one per vnode), in ring order.
    pub fn ranges_for(&self, host: &HostId) -> Vec<TokenRange> {
        let Some(h) = self.host_index(host) else {
            return Vec::new();
        };
        (0..self.vnodes.len())
            .filter(|&i| self.vnodes[i].host == h)
            .map(|i| self.range_at(i))
            .collect()
    }

    /// The fraction of the ring, in `[0, 1]`, that a host owns as primary owner.
    pub fn ownership(&self, host: &HostId) -> f64 {
        let width: u128 = self.ranges_for(host).iter().map(TokenRange::width).sum();
        width as f64 / RING_SIZE
    }

    /// The layout index of a host on the ring.
    pub(crate) fn host_index(&self, host: &HostId) -> Option<u32> {
        self.layout
            .host_ids
            .binary_search(host)
            .ok()
            .map(|i| i as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(id: u128, dc: &str, rack: &str, tokens: &[i64]) -> Endpoint {
        Endpoint {
            host_id: HostId::from_u128(id),
            addr: SocketAddr::from(([127, 0, 0, id as u8], 7000)),
            dc: dc.into(),
            rack: rack.into(),
            tokens: tokens.iter().map(|&t| Token(t)).collect(),
        }
    }

    fn ring(endpoints: Vec<Endpoint>) -> TokenRing {
        TokenRing::new(Topology::from_endpoints(endpoints).unwrap())
    }

    #[test]
    fn host_id_text_round_trip() {
        let id = HostId::from_u128(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        let text = id.to_string();
        assert_eq!(text, "01234567-89ab-cdef-0011-223344556677");
        assert_eq!(text.parse::<HostId>().unwrap(), id);
        assert_eq!(
            "0123456789abcdef0011223344556677"
                .parse::<HostId>()
                .unwrap(),
            id
        );
        for bad in [
            "",
            "xyz",
            "01234567-89ab-cdef-0011-22334455667",
            "0123-4567-89ab-cdef-0011223344556677",
            "0123456789abcdef001122334455667g",
        ] {
            assert!(bad.parse::<HostId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn token_conflicts_are_rejected() {
        let mut topology = Topology::new();
        topology.insert(ep(1, "dc1", "r1", &[10, 20])).unwrap();
        let err = topology.insert(ep(2, "dc1", "r1", &[20])).unwrap_err();
        assert_eq!(
            err,
            TopologyError::TokenConflict {
                token: Token(20),
                owner: HostId::from_u128(1),
                claimant: HostId::from_u128(2)
            }
        );
        assert_eq!(topology.len(), 1);
        // Re-inserting the same host with moved tokens frees the old ones.
        topology.insert(ep(1, "dc1", "r1", &[30])).unwrap();
        topology.insert(ep(2, "dc1", "r1", &[20, 20])).unwrap();
        assert_eq!(topology.owner_of_token(Token(10)), None);
        assert_eq!(
            topology.get(&HostId::from_u128(2)).unwrap().tokens,
            vec![Token(20)]
        );
    }

    #[test]
    fn primary_owner_and_ranges() {
        let ring = ring(vec![
            ep(1, "dc1", "r1", &[-100, 100]),
            ep(2, "dc1", "r1", &[0]),
        ]);
        let (a, b) = (HostId::from_u128(1), HostId::from_u128(2));
        assert_eq!(ring.primary_owner(Token(-100)), Some(a));
        assert_eq!(ring.primary_owner(Token(-99)), Some(b));
        assert_eq!(ring.primary_owner(Token(0)), Some(b));
        assert_eq!(ring.primary_owner(Token(1)), Some(a));
        assert_eq!(ring.primary_owner(Token(101)), Some(a)); // wraps to -100
        assert_eq!(ring.primary_owner(Token::MIN), Some(a));
        assert_eq!(
            ring.range_containing(Token(500)),
            Some(TokenRange::new(Token(100), Token(-100)))
        );
        assert_eq!(
            ring.ranges_for(&a),
            vec![
                TokenRange::new(Token(100), Token(-100)),
                TokenRange::new(Token(0), Token(100))
            ]
        );
        let total = ring.ownership(&a) + ring.ownership(&b);
        assert!((total - 1.0).abs() < 1e-12);
        assert!((ring.ownership(&b) - 100.0 / RING_SIZE).abs() < 1e-18);
    }

    #[test]
    fn single_token_owns_everything() {
        let ring = ring(vec![ep(1, "dc1", "r1", &[42])]);
        let a = HostId::from_u128(1);
        assert_eq!(
            ring.ranges_for(&a),
            vec![TokenRange::new(Token(42), Token(42))]
        );
        assert_eq!(ring.ownership(&a), 1.0);
    }

    #[test]
    fn endpoints_without_tokens_are_off_the_ring() {
        let ring = ring(vec![ep(1, "dc1", "r1", &[5]), ep(2, "dc2", "r9", &[])]);
        assert_eq!(ring.hosts().collect::<Vec<_>>(), vec![HostId::from_u128(1)]);
        assert_eq!(ring.datacenters().collect::<Vec<_>>(), vec!["dc1"]);
        assert_eq!(ring.topology().len(), 2);
        assert_eq!(ring.ownership(&HostId::from_u128(2)), 0.0);
    }

    #[test]
    fn empty_ring() {
        let ring = TokenRing::new(Topology::new());
        assert!(ring.is_empty());
        assert_eq!(ring.primary_owner(Token(0)), None);
        assert_eq!(ring.range_containing(Token(0)), None);
    }

    #[test]
    fn layout_counts_active_hosts_and_racks() {
        let ids: Vec<HostId> = (0..4).map(HostId::from_u128).collect();
        let layout = Layout::build([
            (ids[0], "b", "r1", true),
            (ids[1], "a", "r1", true),
            (ids[2], "a", "r2", false),
            (ids[3], "a", "r1", true),
        ]);
        assert_eq!(layout.dc_names, vec!["a", "b"]);
        assert_eq!(layout.dc_hosts, vec![2, 1]);
        assert_eq!(layout.dc_racks, vec![1, 1]);
        assert_eq!(layout.host_dc, vec![1, 0, 0, 0]);
        // "a/r1" and "b/r1" are different racks.
        assert_ne!(layout.host_rack[0], layout.host_rack[1]);
        assert_eq!(layout.host_rack[1], layout.host_rack[3]);
    }
}
