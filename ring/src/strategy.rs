//! Replica placement: which hosts hold the copies of a token.
//!
//! A [`ReplicationStrategy`] turns a ring and a token into an ordered list of distinct hosts. Both
//! strategies Cassandra users rely on start at the vnode whose range contains the token and walk
//! the ring clockwise, vnode by vnode:
//!
//! * [`SimpleStrategy`] takes the first `rf` distinct hosts it meets, ignoring datacenters and
//!   racks.
//! * [`NetworkTopologyStrategy`] fills each datacenter separately up to that datacenter's factor.
//!   Within a datacenter it prefers hosts in racks it has not used yet and remembers the hosts it
//!   skipped because their rack was taken. Once every rack of the datacenter holds a replica, the
//!   skipped hosts are taken in the order they were met, then the walk continues taking any host.
//!   A datacenter with fewer hosts than its factor gets all of them.
//!
//! The result lists replicas in the order the walk first met them, so the first replica is the
//! primary owner whenever its datacenter is replicated. (Cassandra's own list orders the hosts
//! that were skipped and taken later by when they were taken; the set is the same.)
//!
//! A walk may visit many vnodes, so per-request lookups should not repeat it: [`ReplicaMap`]
//! computes the replica list of every vnode range once per (ring, strategy) and answers lookups
//! with a binary search.
//!
//! The walk itself is written once, over a stream of vnode owners (`Selector::select`), so that
//! [`crate::allocation`] can run it over hypothetical rings without building them.

use std::collections::BTreeMap;

use crate::token::{Token, TokenRange, RING_SIZE};
use crate::topology::{HostId, Layout, TokenRing};

/// A rule that places the replicas of a token.
pub trait ReplicationStrategy {
    /// The distinct hosts that hold replicas of `token`, primary first. Empty on an empty ring.
    fn replicas(&self, ring: &TokenRing, token: Token) -> Vec<HostId>;
}

/// `rf` replicas on the first `rf` distinct hosts clockwise from the token, whatever their
/// datacenter or rack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SimpleStrategy {
    /// The replication factor.
    pub rf: usize,
}

/// A replication factor per datacenter, with replicas spread over distinct racks where possible.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct NetworkTopologyStrategy {
    /// Datacenter name → number of replicas in it. Datacenters not listed hold no replicas.
    pub rf_per_dc: BTreeMap<String, usize>,
}

impl NetworkTopologyStrategy {
    /// `rf` replicas in one datacenter (what `allocate_tokens_for_local_replication_factor`
    /// balances for).
    pub fn single_dc(dc: impl Into<String>, rf: usize) -> NetworkTopologyStrategy {
        NetworkTopologyStrategy {
            rf_per_dc: BTreeMap::from([(dc.into(), rf)]),
        }
    }

    /// The sum of the factors of all datacenters.
    pub fn total_rf(&self) -> usize {
        self.rf_per_dc.values().sum()
    }
}

impl ReplicationStrategy for SimpleStrategy {
    fn replicas(&self, ring: &TokenRing, token: Token) -> Vec<HostId> {
        Selector::simple(self.rf, ring.layout()).replicas_of(ring, token)
    }
}

impl ReplicationStrategy for NetworkTopologyStrategy {
    fn replicas(&self, ring: &TokenRing, token: Token) -> Vec<HostId> {
        Selector::network_topology(self, ring.layout()).replicas_of(ring, token)
    }
}

/// What a walk did besides choosing hosts: how far it went and whether it found every replica it
/// looked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Walk {
    /// The number of vnodes visited, up to and including the one that completed the selection.
    pub visited: usize,
    /// Whether every datacenter got its (capped) factor; false only when the owners ran out.
    pub complete: bool,
}

/// A strategy compiled against a [`Layout`]: factors capped by the hosts available, indexed by
/// datacenter number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Selector {
    /// Take the first `target` distinct hosts.
    Simple { target: usize },
    /// Per datacenter index: how many hosts to take, and how many racks it has.
    NetworkTopology {
        targets: Vec<usize>,
        racks: Vec<usize>,
    },
}

/// Per-datacenter progress of a network-topology walk.
#[derive(Default)]
struct DcProgress {
    taken: usize,
    racks_used: Vec<u32>,
    /// Hosts passed over because their rack already held a replica, with where they were met.
    skipped: Vec<(usize, u32)>,
}

impl Selector {
    pub fn simple(rf: usize, layout: &Layout) -> Selector {
        Selector::Simple {
            target: rf.min(layout.active_hosts()),
        }
    }

    pub fn network_topology(nts: &NetworkTopologyStrategy, layout: &Layout) -> Selector {
        let targets = layout
            .dc_names
            .iter()
            .zip(&layout.dc_hosts)
            .map(|(dc, &hosts)| nts.rf_per_dc.get(dc).copied().unwrap_or(0).min(hosts))
            .collect();
        Selector::NetworkTopology {
            targets,
            racks: layout.dc_racks.clone(),
        }
    }

    /// The replicas of `token` on `ring`.
    fn replicas_of(&self, ring: &TokenRing, token: Token) -> Vec<HostId> {
        let Some(start) = ring.vnode_index(token) else {
            return Vec::new();
        };
        let mut chosen = Vec::new();
        self.select(ring.layout(), ring.owners_from(start), &mut chosen);
        let ids = &ring.layout().host_ids;
        chosen.into_iter().map(|h| ids[h as usize]).collect()
    }

    /// Runs the walk over `owners` (layout host indices of the vnodes met clockwise, starting with
    /// the vnode whose range holds the token) and writes the chosen hosts to `out` in the order
    /// they were first met.
    pub fn select(
        &self,
        layout: &Layout,
        owners: impl Iterator<Item = u32>,
        out: &mut Vec<u32>,
    ) -> Walk {
        out.clear();
        match self {
            Selector::Simple { target } => select_simple(*target, owners, out),
            Selector::NetworkTopology { targets, racks } => {
                select_network_topology(layout, targets, racks, owners, out)
            }
        }
    }
}

fn select_simple(target: usize, owners: impl Iterator<Item = u32>, out: &mut Vec<u32>) -> Walk {
    let mut visited = 0;
    if target == 0 {
        return Walk {
            visited,
            complete: true,
        };
    }
    for host in owners {
        visited += 1;
        if !out.contains(&host) {
            out.push(host);
            if out.len() == target {
                return Walk {
                    visited,
                    complete: true,
                };
            }
        }
    }
    Walk {
        visited,
        complete: false,
    }
}

fn select_network_topology(
    layout: &Layout,
    targets: &[usize],
    racks: &[usize],
    owners: impl Iterator<Item = u32>,
    out: &mut Vec<u32>,
) -> Walk {
    let mut dcs_left = targets.iter().filter(|&&t| t > 0).count();
    let mut visited = 0;
    // (position first met, host) of every chosen host, sorted by position at the end.
    let mut chosen: Vec<(usize, u32)> = Vec::new();
    let mut progress: Vec<DcProgress> = targets.iter().map(|_| DcProgress::default()).collect();

    if dcs_left > 0 {
        for (position, host) in owners.enumerate() {
            visited = position + 1;
            let dc = layout.host_dc[host as usize] as usize;
            let (target, dc_racks) = (targets[dc], racks[dc]);
            let p = &mut progress[dc];
            if p.taken >= target || chosen.iter().any(|&(_, h)| h == host) {
                continue;
            }
            let rack = layout.host_rack[host as usize];
            if p.racks_used.len() >= dc_racks {
                // Every rack already holds a replica: any host will do.
                chosen.push((position, host));
                p.taken += 1;
            } else if !p.racks_used.contains(&rack) {
                p.racks_used.push(rack);
                chosen.push((position, host));
                p.taken += 1;
                if p.racks_used.len() == dc_racks {
                    take_skipped(p, target, &mut chosen);
                }
            } else if !p.skipped.iter().any(|&(_, h)| h == host) {
                p.skipped.push((position, host));
            }
            if p.taken == target {
                dcs_left -= 1;
                if dcs_left == 0 {
                    break;
                }
            }
        }
    }
    if dcs_left > 0 {
        // The owners ran out before some rack appeared (impossible when the layout describes the
        // owners): fall back on the skipped hosts rather than return too few replicas.
        for (dc, p) in progress.iter_mut().enumerate() {
            take_skipped(p, targets[dc], &mut chosen);
        }
    }
    let complete = progress
        .iter()
        .zip(targets)
        .all(|(p, &target)| p.taken >= target);
    chosen.sort_unstable_by_key(|&(position, _)| position);
    out.extend(chosen.into_iter().map(|(_, host)| host));
    Walk { visited, complete }
}

/// Takes skipped hosts, in the order they were met, until the datacenter has `target` replicas.
fn take_skipped(p: &mut DcProgress, target: usize, chosen: &mut Vec<(usize, u32)>) {
    for &(position, host) in &p.skipped {
        if p.taken >= target {
            break;
        }
        if !chosen.iter().any(|&(_, h)| h == host) {
            chosen.push((position, host));
            p.taken += 1;
        }
    }
    p.skipped.clear();
}

/// The replica list of every vnode range, computed once for a (ring, strategy) pair.
///
/// Lookups are a binary search over the vnode tokens, `O(log n)` with no allocation. Rebuild the
/// map whenever the ring or the keyspace's replication changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicaMap {
    /// The vnode tokens in ring order; range `i` is `(ends[i-1], ends[i]]`.
    ends: Vec<Token>,
    /// Range `i`'s replicas are `replicas[offsets[i]..offsets[i + 1]]`.
    offsets: Vec<usize>,
    replicas: Vec<HostId>,
}

impl ReplicaMap {
    /// Computes the replicas of every vnode range of `ring` under `strategy`.
    pub fn new<S: ReplicationStrategy + ?Sized>(ring: &TokenRing, strategy: &S) -> ReplicaMap {
        let ends: Vec<Token> = ring.tokens().collect();
        let mut offsets = Vec::with_capacity(ends.len() + 1);
        let mut replicas = Vec::new();
        offsets.push(0);
        for &end in &ends {
            replicas.extend(strategy.replicas(ring, end));
            offsets.push(replicas.len());
        }
        ReplicaMap {
            ends,
            offsets,
            replicas,
        }
    }

    /// The replicas of `token`, primary first; empty for an empty ring.
    pub fn replicas(&self, token: Token) -> &[HostId] {
        if self.ends.is_empty() {
            return &[];
        }
        let i = self.ends.partition_point(|&end| end < token);
        self.replicas_at(if i == self.ends.len() { 0 } else { i })
    }

    /// For a range scan walking the ring upward from `token`: the last token of the piece of
    /// ring that starts at `token` and has one replica set, and that replica set. The piece ends
    /// at the vnode token that closes `token`'s range, or at `Token(i64::MAX)` for the part of
    /// the wrapping range above the highest vnode token (which never wraps: a scan in token
    /// order continues from `i64::MIN`). `None` for an empty ring.
    pub fn segment_from(&self, token: Token) -> Option<(Token, &[HostId])> {
        if self.ends.is_empty() {
            return None;
        }
        let i = self.ends.partition_point(|&end| end < token);
        Some(if i == self.ends.len() {
            (Token(i64::MAX), self.replicas_at(0))
        } else {
            (self.ends[i], self.replicas_at(i))
        })
    }

    fn replicas_at(&self, index: usize) -> &[HostId] {
        &self.replicas[self.offsets[index]..self.offsets[index + 1]]
    }

    fn range_at(&self, index: usize) -> TokenRange {
        let n = self.ends.len();
        TokenRange::new(self.ends[(index + n - 1) % n], self.ends[index])
    }

    /// The number of vnode ranges.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether the ring was empty.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Every vnode range in ring order with its replicas.
    pub fn ranges(&self) -> impl Iterator<Item = (TokenRange, &[HostId])> + '_ {
        (0..self.ends.len()).map(|i| (self.range_at(i), self.replicas_at(i)))
    }

    /// The vnode ranges `host` holds a replica of, in ring order (what it must stream, repair or
    /// hand over).
    pub fn ranges_for(&self, host: &HostId) -> Vec<TokenRange> {
        self.ranges()
            .filter(|(_, replicas)| replicas.contains(host))
            .map(|(range, _)| range)
            .collect()
    }

    /// The fraction of the ring `host` holds replicas of, in `[0, 1]`: the sum of the widths of
    /// the ranges it replicates.
    pub fn replicated_ownership(&self, host: &HostId) -> f64 {
        let width: u128 = self.ranges_for(host).iter().map(TokenRange::width).sum();
        width as f64 / RING_SIZE
    }

    /// [`ReplicaMap::replicated_ownership`] of every host that replicates anything.
    pub fn replicated_ownership_by_host(&self) -> BTreeMap<HostId, f64> {
        let mut widths: BTreeMap<HostId, u128> = BTreeMap::new();
        for (range, replicas) in self.ranges() {
            for host in replicas {
                *widths.entry(*host).or_default() += range.width();
            }
        }
        widths
            .into_iter()
            .map(|(host, width)| (host, width as f64 / RING_SIZE))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::{Endpoint, Topology};
    use std::net::SocketAddr;

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

    fn ids(ids: &[u128]) -> Vec<HostId> {
        ids.iter().map(|&i| HostId::from_u128(i)).collect()
    }

    fn nts(pairs: &[(&str, usize)]) -> NetworkTopologyStrategy {
        NetworkTopologyStrategy {
            rf_per_dc: pairs.iter().map(|&(d, r)| (d.to_string(), r)).collect(),
        }
    }

    #[test]
    fn simple_strategy_walks_distinct_hosts() {
        // Ring order: 10→1, 20→2, 30→1, 40→3, 50→4
        let ring = ring(vec![
            ep(1, "dc1", "r1", &[10, 30]),
            ep(2, "dc1", "r1", &[20]),
            ep(3, "dc1", "r1", &[40]),
            ep(4, "dc1", "r1", &[50]),
        ]);
        let s = SimpleStrategy { rf: 3 };
        assert_eq!(s.replicas(&ring, Token(5)), ids(&[1, 2, 3]));
        assert_eq!(s.replicas(&ring, Token(15)), ids(&[2, 1, 3]));
        assert_eq!(s.replicas(&ring, Token(41)), ids(&[4, 1, 2]));
        assert_eq!(s.replicas(&ring, Token(51)), ids(&[1, 2, 3])); // wraps
        assert_eq!(SimpleStrategy { rf: 9 }.replicas(&ring, Token(0)).len(), 4);
        assert!(SimpleStrategy { rf: 0 }
            .replicas(&ring, Token(0))
            .is_empty());
    }

    #[test]
    fn nts_prefers_new_racks_then_fills_with_skipped_in_ring_order() {
        // dc1 ring order: 1(a) 2(a) 3(b) 4(a) 5(b); racks a, b.
        let ring = ring(vec![
            ep(1, "dc1", "a", &[10]),
            ep(2, "dc1", "a", &[20]),
            ep(3, "dc1", "b", &[30]),
            ep(4, "dc1", "a", &[40]),
            ep(5, "dc1", "b", &[50]),
        ]);
        // rf 2: one per rack, skipping host 2.
        assert_eq!(nts(&[("dc1", 2)]).replicas(&ring, Token(10)), ids(&[1, 3]));
        // rf 3: racks a, b used after host 3; then the skipped host 2 comes first.
        assert_eq!(
            nts(&[("dc1", 3)]).replicas(&ring, Token(10)),
            ids(&[1, 2, 3])
        );
        // rf 4: after the skipped host 2, any host: 4.
        assert_eq!(
            nts(&[("dc1", 4)]).replicas(&ring, Token(10)),
            ids(&[1, 2, 3, 4])
        );
        // Starting at host 4 (rack a): 5 (b) completes the racks.
        assert_eq!(nts(&[("dc1", 2)]).replicas(&ring, Token(35)), ids(&[4, 5]));
        // More than the dc holds: everyone.
        assert_eq!(nts(&[("dc1", 7)]).replicas(&ring, Token(35)).len(), 5);
    }

    #[test]
    fn nts_fills_each_dc_independently() {
        let ring = ring(vec![
            ep(1, "dc1", "a", &[10]),
            ep(2, "dc2", "x", &[20]),
            ep(3, "dc1", "b", &[30]),
            ep(4, "dc2", "x", &[40]),
            ep(5, "dc2", "y", &[50]),
            ep(6, "dc3", "z", &[60]),
        ]);
        let s = nts(&[("dc1", 1), ("dc2", 2), ("unknown", 3)]);
        assert_eq!(s.replicas(&ring, Token(10)), ids(&[1, 2, 5]));
        assert_eq!(s.replicas(&ring, Token(25)), ids(&[3, 4, 5]));
        // dc3 has no factor: never a replica.
        assert_eq!(s.replicas(&ring, Token(55)), ids(&[1, 2, 5]));
    }

    #[test]
    fn segments_walk_the_ring_in_token_order() {
        let ring = ring(vec![ep(1, "dc1", "r1", &[-100, 0, 100])]);
        let map = ReplicaMap::new(&ring, &SimpleStrategy { rf: 1 });
        let h = HostId::from_u128(1);
        assert_eq!(
            map.segment_from(Token(i64::MIN)),
            Some((Token(-100), &[h][..]))
        );
        assert_eq!(map.segment_from(Token(-100)), Some((Token(-100), &[h][..])));
        assert_eq!(map.segment_from(Token(-99)), Some((Token(0), &[h][..])));
        assert_eq!(
            map.segment_from(Token(101)),
            Some((Token(i64::MAX), &[h][..]))
        );
        assert_eq!(ReplicaMap::default().segment_from(Token(0)), None);
    }

    #[test]
    fn replica_map_matches_strategy_and_measures_ownership() {
        let ring = ring(vec![
            ep(1, "dc1", "a", &[-1000, 3000]),
            ep(2, "dc1", "b", &[0]),
            ep(3, "dc1", "a", &[1000]),
        ]);
        let s = SimpleStrategy { rf: 2 };
        let map = ReplicaMap::new(&ring, &s);
        assert_eq!(map.len(), 4);
        for t in [
            -5000,
            -1000,
            -999,
            0,
            1,
            1000,
            2999,
            3000,
            3001,
            i64::MAX,
            i64::MIN,
        ] {
            assert_eq!(
                map.replicas(Token(t)),
                s.replicas(&ring, Token(t)).as_slice(),
                "{t}"
            );
        }
        // rf 2 of 3 hosts: total replicated ownership is 2.
        let total: f64 = map.replicated_ownership_by_host().values().sum();
        assert!((total - 2.0).abs() < 1e-9);
        let host1 = HostId::from_u128(1);
        assert!(
            (map.replicated_ownership(&host1) - map.replicated_ownership_by_host()[&host1]).abs()
                < 1e-12
        );
        assert!(ReplicaMap::new(&TokenRing::new(Topology::new()), &s)
            .replicas(Token(0))
            .is_empty());
    }
}
