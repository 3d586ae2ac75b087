//! The ring and the replication strategies checked against naive reference implementations on
//! random topologies (several datacenters and racks, several vnodes per host).
//!
//! The references are written for clarity, not speed: they rebuild the sorted vnode list on every
//! call and walk the whole ring with plain `Vec`s, following the algorithm descriptions in
//! `src/strategy.rs` rather than its code. `NetworkTopologyStrategy` gets two references: the
//! "skip, then fill with skipped hosts" walk (Cassandra 2.x/3.x) compared as ordered lists, and
//! the one-pass "rack repeat budget" walk of Cassandra 4, compared as sets.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use proptest::prelude::*;
use ringdb_ring::{
    Endpoint, HostId, NetworkTopologyStrategy, ReplicaMap, ReplicationStrategy, SimpleStrategy,
    Token, TokenRange, TokenRing, Topology,
};

const DCS: [&str; 3] = ["dc1", "dc2", "dc3"];

/// A random topology: up to 10 hosts over up to 3 datacenters and 3 racks each, 1–4 tokens per
/// host, tokens drawn from a small range sometimes so that neighbours and wrap-around are common.
fn topology() -> impl Strategy<Value = Vec<Endpoint>> {
    let token = prop_oneof![any::<i64>(), -50i64..50, Just(i64::MIN), Just(i64::MAX)];
    let host = (0..DCS.len(), 0..3usize, prop::collection::vec(token, 1..=4));
    prop::collection::vec(host, 1..=10).prop_map(|hosts| {
        let mut used = BTreeSet::new();
        hosts
            .into_iter()
            .enumerate()
            .map(|(i, (dc, rack, tokens))| Endpoint {
                host_id: HostId::from_u128(i as u128 + 1),
                addr: SocketAddr::from(([10, 0, 0, i as u8 + 1], 7000)),
                dc: DCS[dc].to_string(),
                rack: format!("rack{rack}"),
                // Drop tokens another host already claimed.
                tokens: tokens
                    .into_iter()
                    .filter(|t| used.insert(*t))
                    .map(Token)
                    .collect(),
            })
            .collect()
    })
}

fn ring_of(endpoints: &[Endpoint]) -> TokenRing {
    TokenRing::new(Topology::from_endpoints(endpoints.iter().cloned()).expect("no conflicts"))
}

/// Tokens worth asking about: random ones, every vnode token, its neighbours, the extremes.
fn probes(endpoints: &[Endpoint], random: &[i64]) -> Vec<Token> {
    let mut probes: Vec<Token> = random.iter().map(|&t| Token(t)).collect();
    for e in endpoints {
        for t in &e.tokens {
            probes.extend([*t, Token(t.0.wrapping_sub(1)), Token(t.0.wrapping_add(1))]);
        }
    }
    probes.extend([Token::MIN, Token::MAX, Token(0)]);
    probes
}

/// Every vnode, sorted, and the index to start walking from for `token`.
fn naive_walk(endpoints: &[Endpoint], token: Token) -> Vec<&Endpoint> {
    let mut vnodes: Vec<(Token, &Endpoint)> = endpoints
        .iter()
        .flat_map(|e| e.tokens.iter().map(move |t| (*t, e)))
        .collect();
    vnodes.sort_by_key(|(t, _)| *t);
    let start = vnodes.iter().position(|(t, _)| *t >= token).unwrap_or(0);
    (0..vnodes.len())
        .map(|k| vnodes[(start + k) % vnodes.len()].1)
        .collect()
}

fn naive_primary(endpoints: &[Endpoint], token: Token) -> Option<HostId> {
    naive_walk(endpoints, token).first().map(|e| e.host_id)
}

fn naive_simple(endpoints: &[Endpoint], rf: usize, token: Token) -> Vec<HostId> {
    let mut replicas = Vec::new();
    for e in naive_walk(endpoints, token) {
        if replicas.len() == rf {
            break;
        }
        if !replicas.contains(&e.host_id) {
            replicas.push(e.host_id);
        }
    }
    replicas
}

/// Cassandra 2.x/3.x: per datacenter, take hosts in racks not seen yet and skip the others; when
/// every rack of the datacenter has been seen, take the skipped hosts in order, then any host.
/// Output in order of first appearance on the walk.
fn naive_nts(endpoints: &[Endpoint], rf: &BTreeMap<String, usize>, token: Token) -> Vec<HostId> {
    let walk = naive_walk(endpoints, token);
    let on_ring: Vec<&Endpoint> = endpoints.iter().filter(|e| !e.tokens.is_empty()).collect();
    let racks_in = |dc: &str| -> usize {
        on_ring
            .iter()
            .filter(|e| e.dc == dc)
            .map(|e| &e.rack)
            .collect::<BTreeSet<_>>()
            .len()
    };
    let mut taken: BTreeMap<&str, Vec<HostId>> = BTreeMap::new();
    let mut seen_racks: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut skipped: BTreeMap<&str, Vec<HostId>> = BTreeMap::new();
    for e in &walk {
        let want = rf.get(&e.dc).copied().unwrap_or(0);
        let dc_taken = taken.entry(&e.dc).or_default();
        if dc_taken.len() >= want || dc_taken.contains(&e.host_id) {
            continue;
        }
        let racks = seen_racks.entry(&e.dc).or_default();
        if racks.len() == racks_in(&e.dc) {
            dc_taken.push(e.host_id);
        } else if racks.contains(&e.rack.as_str()) {
            skipped.entry(&e.dc).or_default().push(e.host_id);
        } else {
            racks.push(&e.rack);
            dc_taken.push(e.host_id);
            if racks.len() == racks_in(&e.dc) {
                for host in skipped.remove(e.dc.as_str()).unwrap_or_default() {
                    if dc_taken.len() < want && !dc_taken.contains(&host) {
                        dc_taken.push(host);
                    }
                }
            }
        }
    }
    let chosen: BTreeSet<HostId> = taken.into_values().flatten().collect();
    let mut ordered: Vec<HostId> = Vec::new();
    for e in walk {
        if chosen.contains(&e.host_id) && !ordered.contains(&e.host_id) {
            ordered.push(e.host_id);
        }
    }
    ordered
}

/// Cassandra 4: one pass; a host in a new rack is always taken; a host in a rack already used is
/// taken only while the datacenter's budget of `rf - racks` repeats lasts.
fn naive_nts_budget(
    endpoints: &[Endpoint],
    rf: &BTreeMap<String, usize>,
    token: Token,
) -> BTreeSet<HostId> {
    let on_ring: Vec<&Endpoint> = endpoints.iter().filter(|e| !e.tokens.is_empty()).collect();
    let mut left: BTreeMap<&str, (usize, i64)> = BTreeMap::new();
    for dc in DCS {
        let hosts = on_ring.iter().filter(|e| e.dc == dc).count();
        let racks = on_ring
            .iter()
            .filter(|e| e.dc == dc)
            .map(|e| &e.rack)
            .collect::<BTreeSet<_>>()
            .len();
        let want = rf.get(dc).copied().unwrap_or(0);
        left.insert(dc, (want.min(hosts), want as i64 - racks as i64));
    }
    let mut chosen = BTreeSet::new();
    let mut racks_used: BTreeSet<(&str, &str)> = BTreeSet::new();
    for e in naive_walk(endpoints, token) {
        let Some((rf_left, repeats)) = left.get_mut(e.dc.as_str()) else {
            continue;
        };
        if *rf_left == 0 {
            continue;
        }
        if racks_used.insert((&e.dc, &e.rack)) {
            chosen.insert(e.host_id);
            *rf_left -= 1;
        } else if *repeats > 0 && chosen.insert(e.host_id) {
            *repeats -= 1;
            *rf_left -= 1;
        }
    }
    chosen
}

fn rf_map() -> impl Strategy<Value = BTreeMap<String, usize>> {
    prop::collection::btree_map(
        prop::sample::select(vec!["dc1", "dc2", "dc3", "dc9"]),
        0..=4usize,
        0..=4,
    )
    .prop_map(|m| m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

proptest! {
    #[test]
    fn ring_lookups_match_reference(endpoints in topology(), random in prop::collection::vec(any::<i64>(), 8)) {
        let ring = ring_of(&endpoints);
        for token in probes(&endpoints, &random) {
            prop_assert_eq!(ring.primary_owner(token), naive_primary(&endpoints, token));
            if let Some(range) = ring.range_containing(token) {
                prop_assert!(range.contains(token));
                prop_assert_eq!(ring.primary_owner(range.end), ring.primary_owner(token));
            }
        }
        // Every host's ranges, together, cover the ring exactly once.
        let mut total: u128 = 0;
        let mut ownership = 0.0;
        for host in ring.hosts() {
            let ranges = ring.ranges_for(&host);
            prop_assert_eq!(ranges.len(), ring.endpoint(&host).map_or(0, |e| e.tokens.len()));
            total += ranges.iter().map(TokenRange::width).sum::<u128>();
            ownership += ring.ownership(&host);
        }
        if !ring.is_empty() {
            prop_assert_eq!(total, 1u128 << 64);
            prop_assert!((ownership - 1.0).abs() < 1e-9);
        }
    }

    #[test]
    fn simple_strategy_matches_reference(
        endpoints in topology(),
        rf in 0usize..=6,
        random in prop::collection::vec(any::<i64>(), 8),
    ) {
        let ring = ring_of(&endpoints);
        let strategy = SimpleStrategy { rf };
        let map = ReplicaMap::new(&ring, &strategy);
        let hosts = ring.hosts().count();
        for token in probes(&endpoints, &random) {
            let replicas = strategy.replicas(&ring, token);
            prop_assert_eq!(&replicas, &naive_simple(&endpoints, rf, token));
            prop_assert_eq!(map.replicas(token), replicas.as_slice());
            prop_assert_eq!(replicas.len(), rf.min(hosts));
        }
    }

    #[test]
    fn network_topology_strategy_matches_references(
        endpoints in topology(),
        rf in rf_map(),
        random in prop::collection::vec(any::<i64>(), 8),
    ) {
        let ring = ring_of(&endpoints);
        let strategy = NetworkTopologyStrategy { rf_per_dc: rf.clone() };
        let map = ReplicaMap::new(&ring, &strategy);
        for token in probes(&endpoints, &random) {
            let replicas = strategy.replicas(&ring, token);
            prop_assert_eq!(&replicas, &naive_nts(&endpoints, &rf, token));
            prop_assert_eq!(
                replicas.iter().copied().collect::<BTreeSet<_>>(),
                naive_nts_budget(&endpoints, &rf, token)
            );
            prop_assert_eq!(map.replicas(token), replicas.as_slice());

            // Per datacenter: min(rf, hosts) replicas, spread over min(that, racks) racks.
            for dc in DCS {
                let in_dc: Vec<&Endpoint> = endpoints.iter().filter(|e| e.dc == dc && !e.tokens.is_empty()).collect();
                let chosen: Vec<&&Endpoint> = in_dc.iter().filter(|e| replicas.contains(&e.host_id)).collect();
                let want = rf.get(dc).copied().unwrap_or(0).min(in_dc.len());
                prop_assert_eq!(chosen.len(), want);
                let racks = in_dc.iter().map(|e| &e.rack).collect::<BTreeSet<_>>().len();
                let chosen_racks = chosen.iter().map(|e| &e.rack).collect::<BTreeSet<_>>().len();
                prop_assert_eq!(chosen_racks, want.min(racks));
            }
        }
    }

    #[test]
    fn replica_map_ranges_partition_the_ring(endpoints in topology(), rf in 1usize..=4) {
        let ring = ring_of(&endpoints);
        let map = ReplicaMap::new(&ring, &SimpleStrategy { rf });
        let total: u128 = map.ranges().map(|(range, _)| range.width()).sum();
        prop_assert_eq!(total, 1u128 << 64);
        let replicated: f64 = map.replicated_ownership_by_host().values().sum();
        prop_assert!((replicated - rf.min(ring.hosts().count()) as f64).abs() < 1e-9);
        for (range, replicas) in map.ranges() {
            prop_assert_eq!(map.replicas(range.end), replicas);
        }
    }
}
