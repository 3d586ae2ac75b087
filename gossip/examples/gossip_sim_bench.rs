//! Gossip in simulation: how fast membership news spreads, how fast a dead node is noticed, and
//! what it costs on the wire, for clusters of 5, 20 and 50 nodes.
//!
//! Runs the real state machine (`ringdb_gossip::protocol::Gossiper`, default configuration) on
//! the simulated network of `tests/sim/mod.rs`: simulated time, messages encoded with bincode,
//! delayed, reordered. Every trial is seeded, so the figures are reproducible on any machine;
//! only the wall time printed at the end depends on the machine.
//!
//! ```text
//! cargo run --release -p ringdb-gossip --example gossip_sim_bench
//! ```
//!
//! For each network (a LAN with 1–5 ms one-way delay, and 1–201 ms of uniform random delay) and
//! each cluster size, over several seeds:
//!
//! - **cold start**: every node starts (one after the other over one gossip interval) knowing
//!   only the 3 seeds; time from the first start until every node holds every node's full state;
//! - **join**: in a warm cluster, a new node starts; time until every node knows it, and until
//!   every node holds its full state and sees it up;
//! - **kill**: a node stops without a word; time until each other node marks it down (median
//!   and maximum over all observers of all trials);
//! - **bytes**: encoded gossip bytes sent per node per second in steady state.
//!
//! Then, for 5 and 50 nodes, 30 simulated minutes with 1–201 ms of random delay and nothing
//! killed: the number of (false) downs, and the highest phi of any live peer seen by any node,
//! sampled every 100 ms — the margin left below the conviction threshold.

#[path = "../tests/sim/mod.rs"]
mod sim;

use std::time::{Duration, Instant};

use ringdb_gossip::protocol::{GossipConfig, MembershipEvent};
use sim::{endpoint, median_max, NetConfig, Sim};

const TRIALS: u64 = 5;
const SEEDS: usize = 3;
const MS: Duration = Duration::from_millis(1);
const SECOND: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Figures {
    cold_start: Vec<Duration>,
    join_known: Vec<Duration>,
    join_full_and_up: Vec<Duration>,
    kill_detection: Vec<Duration>,
    bytes_per_node_second: Vec<f64>,
    messages_per_node_second: Vec<f64>,
}

fn trial(seed: u64, n: usize, net: NetConfig, figures: &mut Figures) {
    let config = GossipConfig::default();
    let seeds = SEEDS.min(n);

    // Cold start.
    let mut sim = Sim::cluster(seed, n, seeds, net, config.clone());
    sim.run_until(30 * SECOND, MS, Sim::converged)
        .expect("cold start converges");
    figures.cold_start.push(sim.now);
    sim.run_until(30 * SECOND, 10 * MS, Sim::all_alive)
        .expect("everyone up");
    sim.run_for(10 * SECOND);

    // Steady-state cost.
    let bytes_before = sim.total_bytes_sent();
    let messages_before: u64 = sim.nodes.values().map(|n| n.messages_sent).sum();
    let window = 60 * SECOND;
    sim.run_for(window);
    let per_node_second = n as f64 * window.as_secs_f64();
    figures
        .bytes_per_node_second
        .push((sim.total_bytes_sent() - bytes_before) as f64 / per_node_second);
    let messages_after: u64 = sim.nodes.values().map(|n| n.messages_sent).sum();
    figures
        .messages_per_node_second
        .push((messages_after - messages_before) as f64 / per_node_second);

    // Join.
    let newcomer = endpoint(n);
    sim.add_node(
        newcomer,
        GossipConfig {
            seeds: (0..seeds).map(endpoint).collect(),
            ..config
        },
    );
    sim.start(newcomer);
    let known = sim
        .run_until(30 * SECOND, MS, |s| s.all_know(newcomer))
        .expect("the new node becomes known");
    figures.join_known.push(known);
    let full = sim
        .run_until(30 * SECOND, MS, |s| {
            s.running().into_iter().all(|o| {
                s.knows_full_state(o, newcomer)
                    && s.gossiper(o).is_some_and(|g| g.is_alive(&newcomer))
            })
        })
        .expect("the new node's state spreads");
    figures.join_full_and_up.push(known + full);
    sim.run_for(10 * SECOND);

    // Kill.
    let victim = endpoint(n - 1);
    let killed_at = sim.now;
    sim.kill(victim);
    sim.run_until(30 * SECOND, 10 * MS, |s| s.all_see_down(victim))
        .expect("the dead node is marked down");
    for observer in sim.running() {
        if let Some(at) =
            sim.first_event(observer, killed_at, |e| *e == MembershipEvent::Down(victim))
        {
            figures.kill_detection.push(at - killed_at);
        }
    }
    let false_downs: Vec<_> = sim
        .downs_since(Duration::ZERO)
        .into_iter()
        .filter(|(_, _, target)| *target != victim)
        .collect();
    assert!(
        false_downs.is_empty(),
        "seed {seed}: false downs {false_downs:?}"
    );
}

/// 30 simulated minutes of jitter on a healthy cluster: false downs and the peak phi.
fn long_run(n: usize) -> (usize, f64) {
    let net = NetConfig::jittery(Duration::from_millis(200));
    let mut sim = Sim::cluster(1, n, SEEDS, net, GossipConfig::default());
    sim.run_until(30 * SECOND, 10 * MS, |s| s.converged() && s.all_alive())
        .expect("converges");
    let end = 30 * 60 * SECOND;
    let mut peak: f64 = 0.0;
    let running = sim.running();
    while sim.now < end {
        sim.run_for(100 * MS);
        let now = sim.instant(sim.now);
        for observer in &running {
            let g = sim.gossiper(*observer).expect("running");
            for peer in &running {
                if let Some(phi) = g.phi(peer, now) {
                    peak = peak.max(phi);
                }
            }
        }
    }
    (sim.downs_since(Duration::ZERO).len(), peak)
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn pair(values: &mut [Duration]) -> String {
    let (median, max) = median_max(values);
    format!("{} / {}", secs(median), secs(max))
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

fn main() {
    let started = Instant::now();
    let config = GossipConfig::default();
    println!("## Gossip (simulated)");
    println!();
    println!(
        "machine: {} {}, {} threads available (figures are simulated time: they do not depend on the machine)",
        std::env::consts::ARCH,
        std::env::consts::OS,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "config: gossip interval {} ms, phi threshold {}, min std dev {} ms, acceptable pause {} ms, {} seeds, {} trials (seeds 1..={}) per row",
        config.interval.as_millis(),
        config.detector.phi_convict_threshold,
        config.detector.min_std_dev.as_millis(),
        config.detector.acceptable_pause.as_millis(),
        SEEDS,
        TRIALS,
        TRIALS
    );
    let networks = [
        ("LAN, 1-5 ms one-way delay", NetConfig::lan()),
        (
            "1-201 ms uniform random one-way delay",
            NetConfig::jittery(Duration::from_millis(200)),
        ),
    ];
    for (name, net) in networks {
        println!();
        println!("### {name}");
        println!();
        println!("| nodes | cold start: all hold all states (median / max) | new node known by all | new node's full state held and up everywhere | killed node marked down, per observer (median / max) | gossip bytes / node / s | messages / node / s |");
        println!("|---:|---:|---:|---:|---:|---:|---:|");
        for n in [5usize, 20, 50] {
            let mut figures = Figures::default();
            for seed in 1..=TRIALS {
                trial(seed, n, net, &mut figures);
            }
            println!(
                "| {n} | {} | {} | {} | {} | {:.0} | {:.1} |",
                pair(&mut figures.cold_start),
                pair(&mut figures.join_known),
                pair(&mut figures.join_full_and_up),
                pair(&mut figures.kill_detection),
                mean(&figures.bytes_per_node_second),
                mean(&figures.messages_per_node_second),
            );
        }
    }
    println!();
    println!("### 30 simulated minutes, 1-201 ms random delay, nobody killed");
    println!();
    println!(
        "| nodes | false downs | peak phi of a live peer (threshold {}) |",
        config.detector.phi_convict_threshold
    );
    println!("|---:|---:|---:|");
    for n in [5usize, 50] {
        let (downs, peak) = long_run(n);
        println!("| {n} | {downs} | {peak:.2} |");
    }
    println!();
    println!("wall time: {:.1} s", started.elapsed().as_secs_f64());
}
