//! Token allocation keeps replicated ownership balanced as a cluster grows one node at a time.
//!
//! Each scenario starts from an empty ring and adds nodes with 16 tokens each, every node's
//! tokens chosen by `allocate_tokens` against the ring as it stands. At 3, 6 and 12 nodes the
//! replicated ownership of every node (the width of all ranges it holds a replica of, under
//! replication factor 3) is measured exactly with a `ReplicaMap`; the most loaded node may hold
//! at most 1.25× what the least loaded holds. Random tokens are measured alongside for scale.
//! Run with `--nocapture` to see the figures.

use std::net::SocketAddr;

use ringdb_ring::allocation::{allocate_tokens, random_tokens, JoiningNode};
use ringdb_ring::{
    Endpoint, HostId, NetworkTopologyStrategy, ReplicaMap, Replication, SimpleStrategy, Token,
    TokenRing, Topology,
};

const TOKENS_PER_NODE: usize = 16;
const RF: usize = 3;
const MAX_RATIO: f64 = 1.25;
const CHECKPOINTS: [usize; 3] = [3, 6, 12];

/// How a scenario places nodes.
struct Scenario {
    name: &'static str,
    replication: Replication,
    /// Rack of the `i`-th node.
    rack: fn(usize) -> String,
}

fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "SimpleStrategy rf=3",
            replication: Replication::Simple(SimpleStrategy { rf: RF }),
            rack: |_| "rack1".to_string(),
        },
        Scenario {
            name: "NTS dc1=3, one rack",
            replication: Replication::NetworkTopology(NetworkTopologyStrategy::single_dc(
                "dc1", RF,
            )),
            rack: |_| "rack1".to_string(),
        },
        Scenario {
            name: "NTS dc1=3, three racks",
            replication: Replication::NetworkTopology(NetworkTopologyStrategy::single_dc(
                "dc1", RF,
            )),
            rack: |i| format!("rack{}", i % 3 + 1),
        },
    ]
}

fn add_node(topology: &mut Topology, i: usize, rack: String, tokens: Vec<Token>) {
    topology
        .insert(Endpoint {
            host_id: HostId::from_u128(i as u128 + 1),
            addr: SocketAddr::from(([127, 0, 0, i as u8 + 1], 7000)),
            dc: "dc1".to_string(),
            rack,
            tokens,
        })
        .expect("allocated tokens are free");
}

/// Max / min replicated ownership over the ring's hosts.
fn balance(ring: &TokenRing, replication: &Replication) -> (f64, f64, f64) {
    let map = ReplicaMap::new(ring, replication);
    let loads: Vec<f64> = ring.hosts().map(|h| map.replicated_ownership(&h)).collect();
    let max = loads.iter().copied().fold(f64::MIN, f64::max);
    let min = loads.iter().copied().fold(f64::MAX, f64::min);
    (max / min, min, max)
}

/// Grows a cluster to 12 nodes and returns (nodes, ratio, min, max) at each checkpoint.
fn grow(scenario: &Scenario, allocate: bool, seed: u64) -> Vec<(usize, f64, f64, f64)> {
    let mut topology = Topology::new();
    let mut figures = Vec::new();
    for i in 0..*CHECKPOINTS.last().unwrap_or(&0) {
        let ring = TokenRing::new(topology.clone());
        let node = JoiningNode {
            host_id: HostId::from_u128(i as u128 + 1),
            dc: "dc1".to_string(),
            rack: (scenario.rack)(i),
        };
        let node_seed = seed.wrapping_add(i as u64);
        let tokens = if allocate {
            allocate_tokens(
                &ring,
                &node,
                TOKENS_PER_NODE,
                &scenario.replication,
                node_seed,
            )
        } else {
            random_tokens(&ring, TOKENS_PER_NODE, node_seed)
        }
        .expect("tokens");
        assert_eq!(tokens.len(), TOKENS_PER_NODE);
        add_node(&mut topology, i, node.rack, tokens);
        let size = i + 1;
        if CHECKPOINTS.contains(&size) {
            let (ratio, min, max) =
                balance(&TokenRing::new(topology.clone()), &scenario.replication);
            figures.push((size, ratio, min, max));
        }
    }
    figures
}

#[test]
fn allocated_tokens_balance_replicated_ownership() {
    let mut failures = Vec::new();
    for scenario in scenarios() {
        for seed in [1u64, 0xdead_beef] {
            let allocated = grow(&scenario, true, seed);
            let random = grow(&scenario, false, seed);
            for ((nodes, ratio, min, max), (_, random_ratio, _, _)) in allocated.iter().zip(&random)
            {
                println!(
                    "{:<24} seed {:>10} {:>2} nodes: max/min replicated ownership {:.3} \
                     (min {:.4}, max {:.4}); random tokens {:.3}",
                    scenario.name, seed, nodes, ratio, min, max, random_ratio
                );
                if *ratio > MAX_RATIO {
                    failures.push(format!(
                        "{} seed {seed} at {nodes} nodes: {ratio:.3}",
                        scenario.name
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "imbalanced: {failures:#?}");
}
