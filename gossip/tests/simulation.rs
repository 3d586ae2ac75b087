//! Seeded simulations of whole clusters of gossipers: many state machines, one simulated clock,
//! one simulated network that delays, reorders, drops and partitions (see `sim/mod.rs`).
//!
//! Every test prints its seed when it fails; set `GOSSIP_SIM_SEED` to replay it (or to try
//! another one). The targets checked here are the ones `BENCHMARKS.md` reports: a killed node is
//! marked down everywhere in under 3 s (median), 50 nodes converge from a cold start in under
//! 2 s, and 30 simulated minutes with up to 200 ms of random delay produce no false down.

mod sim;

use std::time::Duration;

use ringdb_gossip::protocol::{GossipConfig, MembershipEvent};
use ringdb_gossip::state::{AppStateKey, Endpoint, NodeStatus};
use sim::{endpoint, median_max, seed_or, NetConfig, SeedGuard, Sim};

const MS: Duration = Duration::from_millis(1);
const SECOND: Duration = Duration::from_secs(1);

fn guard(name: &'static str, default_seed: u64) -> SeedGuard {
    SeedGuard {
        name,
        seed: seed_or(default_seed),
    }
}

fn jitter_200ms() -> NetConfig {
    NetConfig::jittery(Duration::from_millis(200))
}

/// A cluster of `n` nodes (3 seeds) that has converged and run `warm_up` more.
fn warm_cluster(seed: u64, n: usize, net: NetConfig, warm_up: Duration) -> Sim {
    let mut sim = Sim::cluster(seed, n, 3.min(n), net, GossipConfig::default());
    sim.run_until(10 * SECOND, 10 * MS, |s| s.converged() && s.all_alive())
        .expect("the cluster converges");
    sim.run_for(warm_up);
    sim
}

fn assert_no_down_since(sim: &Sim, since: Duration, context: &str) {
    let downs = sim.downs_since(since);
    assert!(downs.is_empty(), "{context}: false downs {downs:?}");
}

#[test]
fn fifty_nodes_converge_from_a_cold_start_within_two_seconds() {
    let g = guard(
        "fifty_nodes_converge_from_a_cold_start_within_two_seconds",
        1,
    );
    for (name, net) in [
        ("lan", NetConfig::lan()),
        ("0-200ms jitter", jitter_200ms()),
    ] {
        // Nodes start one after the other over one gossip interval, each knowing the 3 seeds.
        let mut sim = Sim::cluster(g.seed, 50, 3, net, GossipConfig::default());
        let limit = 2 * SECOND - sim.now;
        let took = sim.run_until(limit, 10 * MS, Sim::converged);
        assert!(
            took.is_some(),
            "{name}: not converged 2 s after the first node started"
        );
        println!(
            "{name}: 50 nodes converged {:?} after the first start",
            sim.now
        );
        sim.run_until(5 * SECOND, 10 * MS, Sim::all_alive)
            .unwrap_or_else(|| panic!("{name}: not everyone sees everyone alive"));
        sim.run_for(10 * SECOND);
        assert_no_down_since(&sim, Duration::ZERO, name);
    }
}

#[test]
fn converges_with_ten_percent_message_loss() {
    let g = guard("converges_with_ten_percent_message_loss", 2);
    let net = NetConfig {
        drop_probability: 0.1,
        ..NetConfig::lan()
    };
    let mut sim = Sim::cluster(g.seed, 50, 3, net, GossipConfig::default());
    let took = sim.run_until(5 * SECOND, 10 * MS, Sim::converged);
    assert!(took.is_some(), "not converged within 5 s with 10 % loss");
    println!("50 nodes, 10 % loss: converged at {:?}", sim.now);
    sim.run_until(5 * SECOND, 10 * MS, Sim::all_alive)
        .expect("everyone sees everyone alive");
    assert!(sim.messages_lost > 0);
}

#[test]
fn killed_node_is_marked_down_by_all_within_three_seconds_median() {
    let g = guard(
        "killed_node_is_marked_down_by_all_within_three_seconds_median",
        3,
    );
    let mut latencies = Vec::new();
    for trial in 0..3u64 {
        let mut sim = warm_cluster(g.seed + trial, 20, jitter_200ms(), 20 * SECOND);
        let victim = endpoint(10 + trial as usize);
        let killed_at = sim.now;
        sim.kill(victim);
        sim.run_until(10 * SECOND, 10 * MS, |s| s.all_see_down(victim))
            .expect("everyone marks the killed node down");
        for observer in sim.running() {
            let at = sim
                .first_event(observer, killed_at, |e| *e == MembershipEvent::Down(victim))
                .expect("a Down event");
            latencies.push(at - killed_at);
        }
        let others: Vec<_> = sim
            .downs_since(Duration::ZERO)
            .into_iter()
            .filter(|(_, _, target)| *target != victim)
            .collect();
        assert!(others.is_empty(), "false downs {others:?}");
    }
    let (median, max) = median_max(&mut latencies);
    println!("killed node marked down: median {median:?}, max {max:?}");
    assert!(median <= 3 * SECOND, "median {median:?}");
    assert!(max <= 5 * SECOND, "max {max:?}");
}

#[test]
fn partitioned_node_is_marked_down_both_ways_and_up_after_heal() {
    let g = guard(
        "partitioned_node_is_marked_down_both_ways_and_up_after_heal",
        4,
    );
    let mut sim = warm_cluster(g.seed, 10, NetConfig::lan(), 10 * SECOND);
    let isolated = endpoint(7);
    let cut_at = sim.now;
    sim.partition([isolated]);
    sim.run_until(10 * SECOND, 10 * MS, |s| {
        let everyone_else: Vec<Endpoint> =
            s.running().into_iter().filter(|e| *e != isolated).collect();
        let isolated_sees_all_down = {
            let gi = s.gossiper(isolated).expect("running");
            everyone_else.iter().all(|e| !gi.is_alive(e))
        };
        s.all_see_down(isolated) && isolated_sees_all_down
    })
    .expect("both sides mark each other down");
    // The majority side did not mark each other down.
    let wrong: Vec<_> = sim
        .downs_since(cut_at)
        .into_iter()
        .filter(|(_, observer, target)| *observer != isolated && *target != isolated)
        .collect();
    assert!(
        wrong.is_empty(),
        "majority nodes marked each other down: {wrong:?}"
    );

    sim.run_for(30 * SECOND); // a long partition
    let healed_at = sim.now;
    sim.heal();
    let took = sim
        .run_until(10 * SECOND, 10 * MS, Sim::all_alive)
        .expect("everyone is up again after the heal");
    println!("partition healed: all up after {took:?}");
    for observer in sim.running() {
        let ups = sim.nodes[&observer]
            .events
            .iter()
            .filter(|(t, e)| *t >= healed_at && matches!(e, MembershipEvent::Up(_)))
            .count();
        let expected = if observer == isolated { 9 } else { 1 };
        assert_eq!(
            ups, expected,
            "{observer} saw {ups} Up events after the heal"
        );
    }
    sim.run_for(10 * SECOND);
    assert_no_down_since(&sim, healed_at, "after the heal");
}

#[test]
fn restarted_node_replaces_its_old_state_everywhere() {
    let g = guard("restarted_node_replaces_its_old_state_everywhere", 5);
    for wait_for_down in [true, false] {
        let mut sim = warm_cluster(g.seed, 10, NetConfig::lan(), 5 * SECOND);
        let node = endpoint(4);
        let old_generation = sim.gossiper(node).expect("running").generation();
        sim.kill(node);
        if wait_for_down {
            sim.run_until(10 * SECOND, 10 * MS, |s| s.all_see_down(node))
                .expect("marked down");
        } else {
            sim.run_for(300 * MS); // back before anyone notices
        }
        let restarted_at = sim.now;
        sim.set_app_state(node, AppStateKey::SchemaVersion, "new-schema");
        sim.start(node);
        let new_generation = sim.gossiper(node).expect("running").generation();
        assert!(new_generation > old_generation);
        sim.run_until(5 * SECOND, 10 * MS, |s| {
            s.running().into_iter().filter(|o| *o != node).all(|o| {
                let g = s.gossiper(o).expect("running");
                g.is_alive(&node)
                    && g.endpoint_state(&node).is_some_and(|st| {
                        st.heartbeat.generation == new_generation
                            && st.get(AppStateKey::SchemaVersion) == Some("new-schema")
                    })
            })
        })
        .unwrap_or_else(|| {
            panic!("restart not seen everywhere (waited for down: {wait_for_down})")
        });
        for observer in sim.running().into_iter().filter(|o| *o != node) {
            let restarted = sim.first_event(observer, restarted_at, |e| {
                *e == MembershipEvent::Restarted {
                    endpoint: node,
                    generation: new_generation,
                }
            });
            assert!(restarted.is_some(), "{observer} saw no Restarted event");
        }
        // Its fresh version counter (much lower than before) is not mistaken for old news.
        sim.set_app_state(node, AppStateKey::Load, "12345");
        sim.run_until(5 * SECOND, 10 * MS, Sim::converged)
            .expect("the restarted node's later changes spread too");
    }
}

#[test]
fn shutdown_marks_the_node_down_everywhere_within_one_message_delay() {
    let g = guard(
        "shutdown_marks_the_node_down_everywhere_within_one_message_delay",
        6,
    );
    let net = NetConfig::lan();
    let mut sim = warm_cluster(g.seed, 10, net, 5 * SECOND);
    let node = endpoint(3);
    sim.shutdown(node);
    sim.run_for(net.min_delay + net.jitter);
    assert!(
        sim.all_see_down(node),
        "not everyone saw the shutdown at once"
    );
    for observer in sim.running() {
        let status = sim
            .gossiper(observer)
            .and_then(|g| g.endpoint_state(&node))
            .and_then(|s| s.status());
        assert_eq!(status, Some(NodeStatus::Shutdown), "as seen by {observer}");
    }
    // It stays down, with no flapping from heartbeats still in flight.
    let since = sim.now;
    sim.run_for(20 * SECOND);
    for observer in sim.running() {
        let ups = sim.first_event(observer, since, |e| *e == MembershipEvent::Up(node));
        assert!(ups.is_none(), "{observer} saw the stopped node come back");
    }
    // And comes back when it restarts.
    sim.start(node);
    sim.run_until(5 * SECOND, 10 * MS, Sim::all_alive)
        .expect("the restarted node is up everywhere");
}

fn no_false_down(name: &'static str, seed: u64, nodes: usize, duration: Duration) {
    let g = guard(name, seed);
    let mut sim = warm_cluster(g.seed, nodes, jitter_200ms(), Duration::ZERO);
    let mut elapsed = Duration::ZERO;
    while elapsed < duration {
        sim.run_for(60 * SECOND);
        elapsed += 60 * SECOND;
        assert_no_down_since(&sim, Duration::ZERO, &format!("{nodes} nodes, {elapsed:?}"));
    }
    assert!(sim.all_alive());
    println!(
        "{nodes} nodes, {:?} simulated with 0-200 ms jitter: no false down",
        duration
    );
}

#[test]
fn no_false_down_in_thirty_minutes_of_jitter_five_nodes() {
    no_false_down(
        "no_false_down_in_thirty_minutes_of_jitter_five_nodes",
        7,
        5,
        30 * 60 * SECOND,
    );
}

/// 30 simulated minutes in release builds; 3 in debug builds, where the full run would take
/// minutes of wall time (the bench and `cargo test --release` run the full 30).
#[test]
fn no_false_down_in_thirty_minutes_of_jitter_fifty_nodes() {
    let minutes = if cfg!(debug_assertions) { 3 } else { 30 };
    no_false_down(
        "no_false_down_in_thirty_minutes_of_jitter_fifty_nodes",
        8,
        50,
        minutes * 60 * SECOND,
    );
}

#[test]
fn node_whose_seeds_are_down_keeps_retrying_and_joins_when_a_seed_comes_up() {
    let g = guard(
        "node_whose_seeds_are_down_keeps_retrying_and_joins_when_a_seed_comes_up",
        9,
    );
    let mut sim = sim::Sim::new(g.seed, NetConfig::lan());
    let seed = endpoint(0);
    for i in 0..5 {
        sim.add_node(
            endpoint(i),
            GossipConfig {
                seeds: vec![seed],
                ..GossipConfig::default()
            },
        );
    }
    for i in 1..5 {
        sim.start(endpoint(i));
        sim.run_for(37 * MS);
    }
    sim.run_for(10 * SECOND);
    // With no live peer, every round of every node went to the (down) seed.
    let rounds: u64 = (1..5)
        .map(|i| sim.gossiper(endpoint(i)).expect("running").rounds())
        .sum();
    assert!(rounds >= 4 * 60, "{rounds} rounds");
    assert_eq!(sim.nodes[&seed].messages_addressed, rounds);
    assert!(sim.messages_lost >= rounds);

    sim.start(seed);
    let took = sim
        .run_until(5 * SECOND, 10 * MS, |s| s.converged() && s.all_alive())
        .expect("the cluster forms once the seed is up");
    println!("seed came up: cluster formed in {took:?}");
}

#[test]
fn clusters_with_different_names_never_merge() {
    let g = guard("clusters_with_different_names_never_merge", 10);
    let mut sim = sim::Sim::new(g.seed, NetConfig::lan());
    let a: Vec<Endpoint> = (0..4).map(endpoint).collect();
    let b: Vec<Endpoint> = (4..8).map(endpoint).collect();
    for e in &a {
        sim.add_node(
            *e,
            GossipConfig {
                cluster_name: "alpha".into(),
                seeds: vec![a[0]],
                ..GossipConfig::default()
            },
        );
    }
    for e in &b {
        sim.add_node(
            *e,
            GossipConfig {
                cluster_name: "beta".into(),
                // Misconfigured: one of alpha's nodes is listed as a seed.
                seeds: vec![b[0], a[0]],
                ..GossipConfig::default()
            },
        );
    }
    for e in a.iter().chain(&b) {
        sim.start(*e);
        sim.run_for(20 * MS);
    }
    sim.run_for(30 * SECOND);
    for (mine, theirs) in [(&a, &b), (&b, &a)] {
        for o in mine.iter() {
            let g = sim.gossiper(*o).expect("running");
            for e in mine.iter() {
                assert!(g.is_alive(e), "{o} does not see {e} of its own cluster");
            }
            for e in theirs.iter() {
                assert!(
                    g.endpoint_state(e).is_none(),
                    "{o} knows {e} of the other cluster"
                );
            }
        }
    }
    assert!(sim.gossiper(a[0]).expect("running").rejected_cluster_name() > 0);
}

#[test]
fn application_state_changes_reach_everyone() {
    let g = guard("application_state_changes_reach_everyone", 11);
    let mut sim = warm_cluster(g.seed, 50, NetConfig::lan(), 2 * SECOND);
    let node = endpoint(17);
    let changed_at = sim.now;
    sim.set_app_state(node, AppStateKey::Status, NodeStatus::Leaving.as_str());
    let took = sim
        .run_until(5 * SECOND, 10 * MS, Sim::converged)
        .expect("the change spreads");
    println!("a state change reached 50 nodes in {took:?}");
    for observer in sim.running().into_iter().filter(|o| *o != node) {
        let seen = sim.first_event(observer, changed_at, |e| {
            *e == MembershipEvent::StateChanged {
                endpoint: node,
                keys: vec![AppStateKey::Status],
            }
        });
        assert!(seen.is_some(), "{observer} saw no StateChanged");
    }
}

#[test]
fn a_run_is_a_function_of_its_seed() {
    let g = guard("a_run_is_a_function_of_its_seed", 12);
    let run = || {
        let net = NetConfig {
            drop_probability: 0.05,
            ..jitter_200ms()
        };
        let mut sim = Sim::cluster(g.seed, 8, 2, net, GossipConfig::default());
        sim.run_for(5 * SECOND);
        sim.kill(endpoint(5));
        sim.run_for(5 * SECOND);
        sim.nodes
            .values()
            .map(|n| (n.events.clone(), n.bytes_sent))
            .collect::<Vec<_>>()
    };
    assert_eq!(run(), run());
}
