//! A simulated cluster for the gossip state machine: many [`Gossiper`]s in one process, a
//! simulated clock and a simulated network.
//!
//! Time is a `Duration` since `base` (a real `Instant` taken once, so the machines see ordinary
//! `Instant`s); nothing sleeps. The network is a priority queue of messages in flight, ordered
//! by delivery time: each message is encoded with bincode when sent and decoded when delivered
//! (so the codec is exercised), dropped with a per-link probability, delayed by
//! `min_delay + uniform(0, jitter)` (so messages reorder), and lost when a partition separates
//! sender and receiver at delivery time or the receiver is not running. Every random choice —
//! delays, drops, each node's own rng seed — comes from one seeded rng, so a run is a function
//! of its seed.
//!
//! Shared by `tests/simulation.rs` and `examples/gossip_sim_bench.rs` (through `#[path]`), so
//! each uses only part of it.
#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use ringdb_gossip::protocol::{GossipConfig, GossipMessage, Gossiper, MembershipEvent};
use ringdb_gossip::state::{encode_tokens, AppStateKey, Endpoint, Generation, NodeStatus};

/// How the simulated network behaves on every link.
#[derive(Debug, Clone, Copy)]
pub struct NetConfig {
    /// Smallest one-way delay.
    pub min_delay: Duration,
    /// Extra one-way delay, uniform in `[0, jitter]`.
    pub jitter: Duration,
    /// Probability that a message is lost (links without their own setting).
    pub drop_probability: f64,
}

impl NetConfig {
    /// A LAN: 1–5 ms, no loss.
    pub fn lan() -> Self {
        NetConfig {
            min_delay: Duration::from_millis(1),
            jitter: Duration::from_millis(4),
            drop_probability: 0.0,
        }
    }

    /// Up to `jitter` of random delay on top of 1 ms, no loss.
    pub fn jittery(jitter: Duration) -> Self {
        NetConfig {
            min_delay: Duration::from_millis(1),
            jitter,
            drop_probability: 0.0,
        }
    }
}

/// The address of the `i`-th simulated node: `10.0.(i / 250).(i % 250 + 1):7000`.
pub fn endpoint(i: usize) -> Endpoint {
    let ip = Ipv4Addr::new(10, 0, (i / 250) as u8, (i % 250 + 1) as u8);
    Endpoint(SocketAddr::new(IpAddr::V4(ip), 7000))
}

fn rack_of(e: Endpoint) -> u8 {
    match e.0.ip() {
        IpAddr::V4(v4) => v4.octets()[3] % 3 + 1,
        IpAddr::V6(_) => 1,
    }
}

/// One simulated node.
pub struct SimNode {
    /// Its state machine; `None` while the node is stopped (killed, shut down, not started).
    pub gossiper: Option<Gossiper>,
    /// The configuration it starts with.
    pub config: GossipConfig,
    /// Its current or last generation.
    pub generation: Generation,
    /// The application states it publishes when it starts (and after restarts).
    pub app_states: Vec<(AppStateKey, String)>,
    /// Every event it emitted, with the simulated time.
    pub events: Vec<(Duration, MembershipEvent)>,
    /// Encoded bytes it sent.
    pub bytes_sent: u64,
    /// Messages it sent.
    pub messages_sent: u64,
    /// Messages addressed to it (delivered or not).
    pub messages_addressed: u64,
    /// Bumped on every start, so that ticks scheduled for an earlier run are ignored.
    incarnation: u64,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Action {
    Tick {
        node: Endpoint,
        incarnation: u64,
    },
    Deliver {
        from: Endpoint,
        to: Endpoint,
        bytes: Vec<u8>,
    },
}

/// The simulation.
pub struct Sim {
    /// The seed everything random derives from.
    pub seed: u64,
    /// Simulated time zero.
    pub base: Instant,
    /// Simulated time now.
    pub now: Duration,
    /// The network's behaviour.
    pub net: NetConfig,
    /// The nodes, running or not.
    pub nodes: BTreeMap<Endpoint, SimNode>,
    rng: StdRng,
    link_drop: BTreeMap<(Endpoint, Endpoint), f64>,
    partitions: Vec<BTreeSet<Endpoint>>,
    queue: BinaryHeap<Reverse<(Duration, u64, Action)>>,
    sequence: u64,
    /// Messages lost to drops, partitions or stopped receivers.
    pub messages_lost: u64,
}

impl Sim {
    /// An empty simulation.
    pub fn new(seed: u64, net: NetConfig) -> Self {
        Sim {
            seed,
            base: Instant::now(),
            now: Duration::ZERO,
            net,
            nodes: BTreeMap::new(),
            rng: StdRng::seed_from_u64(seed),
            link_drop: BTreeMap::new(),
            partitions: Vec::new(),
            queue: BinaryHeap::new(),
            sequence: 0,
            messages_lost: 0,
        }
    }

    /// A cluster of `n` nodes (`endpoint(0..n)`), the first `seeds` of them seeds, started one
    /// after the other over one gossip interval, each knowing only the seeds.
    pub fn cluster(
        seed: u64,
        n: usize,
        seeds: usize,
        net: NetConfig,
        config: GossipConfig,
    ) -> Self {
        let mut sim = Sim::new(seed, net);
        let seed_list: Vec<Endpoint> = (0..seeds).map(endpoint).collect();
        for i in 0..n {
            sim.add_node(
                endpoint(i),
                GossipConfig {
                    seeds: seed_list.clone(),
                    ..config.clone()
                },
            );
        }
        let spacing = config.interval / n.max(1) as u32;
        for i in 0..n {
            sim.start(endpoint(i));
            sim.run_for(spacing);
        }
        sim
    }

    /// Registers a stopped node with typical application states.
    pub fn add_node(&mut self, e: Endpoint, config: GossipConfig) {
        let app_states = self.typical_app_states(e);
        self.nodes.insert(
            e,
            SimNode {
                gossiper: None,
                config,
                generation: 0,
                app_states,
                events: Vec::new(),
                bytes_sent: 0,
                messages_sent: 0,
                messages_addressed: 0,
                incarnation: 0,
            },
        );
    }

    fn typical_app_states(&mut self, e: Endpoint) -> Vec<(AppStateKey, String)> {
        let uuid = |rng: &mut StdRng| {
            let v: u128 = rng.random();
            let h = format!("{v:032x}");
            format!(
                "{}-{}-{}-{}-{}",
                &h[..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..]
            )
        };
        let tokens: Vec<i64> = (0..16).map(|_| self.rng.random()).collect();
        vec![
            (AppStateKey::HostId, uuid(&mut self.rng)),
            (AppStateKey::Dc, "dc1".to_string()),
            (AppStateKey::Rack, format!("rack{}", rack_of(e))),
            (AppStateKey::Tokens, encode_tokens(&tokens)),
            (AppStateKey::NativeAddress, format!("{}:9042", e.0.ip())),
            (AppStateKey::ReleaseVersion, "4.1.0".to_string()),
            (AppStateKey::SchemaVersion, uuid(&mut self.rng)),
            (AppStateKey::Load, "0".to_string()),
            (AppStateKey::Status, NodeStatus::Normal.as_str().to_string()),
        ]
    }

    /// The absolute `Instant` of simulated time `t`.
    pub fn instant(&self, t: Duration) -> Instant {
        self.base + t
    }

    /// Starts (or restarts) node `e` with the next generation and a fresh state machine knowing
    /// only its seeds.
    pub fn start(&mut self, e: Endpoint) {
        let now = self.instant(self.now);
        let rng_seed: u64 = self.rng.random();
        let node = self.nodes.get_mut(&e).expect("unknown node");
        node.generation += 1;
        node.incarnation += 1;
        let mut gossiper = Gossiper::new(e, node.generation, node.config.clone(), rng_seed, now);
        for (key, value) in &node.app_states {
            gossiper.set_app_state(*key, value.clone());
        }
        let first = gossiper.next_timeout();
        let incarnation = node.incarnation;
        node.gossiper = Some(gossiper);
        self.schedule_tick(e, incarnation, first);
        self.drain(e);
    }

    /// Stops node `e` at once, like `kill -9`: messages to it are lost from now on.
    pub fn kill(&mut self, e: Endpoint) {
        if let Some(node) = self.nodes.get_mut(&e) {
            node.gossiper = None;
        }
    }

    /// Stops node `e` gracefully: it announces its shutdown, its last messages leave, it stops.
    pub fn shutdown(&mut self, e: Endpoint) {
        let now = self.instant(self.now);
        if let Some(g) = self.gossiper_mut(e) {
            g.announce_shutdown(now);
        }
        self.drain(e);
        self.kill(e);
    }

    /// Changes an application state of running node `e` (and of what it publishes after restarts).
    pub fn set_app_state(&mut self, e: Endpoint, key: AppStateKey, value: &str) {
        let node = self.nodes.get_mut(&e).expect("unknown node");
        node.app_states.retain(|(k, _)| *k != key);
        node.app_states.push((key, value.to_string()));
        if let Some(g) = node.gossiper.as_mut() {
            g.set_app_state(key, value);
        }
        self.drain(e);
    }

    /// Cuts `side` from every other node, both ways, until [`Sim::heal`].
    pub fn partition(&mut self, side: impl IntoIterator<Item = Endpoint>) {
        self.partitions.push(side.into_iter().collect());
    }

    /// Removes every partition.
    pub fn heal(&mut self) {
        self.partitions.clear();
    }

    /// Sets the loss probability of the link `from → to`.
    pub fn set_link_drop(&mut self, from: Endpoint, to: Endpoint, probability: f64) {
        self.link_drop.insert((from, to), probability);
    }

    fn cut(&self, a: Endpoint, b: Endpoint) -> bool {
        self.partitions
            .iter()
            .any(|side| side.contains(&a) != side.contains(&b))
    }

    /// The running state machine of `e`.
    pub fn gossiper(&self, e: Endpoint) -> Option<&Gossiper> {
        self.nodes.get(&e).and_then(|n| n.gossiper.as_ref())
    }

    fn gossiper_mut(&mut self, e: Endpoint) -> Option<&mut Gossiper> {
        self.nodes.get_mut(&e).and_then(|n| n.gossiper.as_mut())
    }

    /// The running nodes.
    pub fn running(&self) -> Vec<Endpoint> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.gossiper.is_some())
            .map(|(e, _)| *e)
            .collect()
    }

    fn schedule_tick(&mut self, node: Endpoint, incarnation: u64, at: Instant) {
        let at = at.saturating_duration_since(self.base).max(self.now);
        self.push(at, Action::Tick { node, incarnation });
    }

    fn push(&mut self, at: Duration, action: Action) {
        self.sequence += 1;
        self.queue.push(Reverse((at, self.sequence, action)));
    }

    /// Sends what `e` queued and records what it emitted.
    fn drain(&mut self, e: Endpoint) {
        let now = self.now;
        let Some(node) = self.nodes.get_mut(&e) else {
            return;
        };
        let Some(g) = node.gossiper.as_mut() else {
            return;
        };
        let mut out = Vec::new();
        while let Some(t) = g.poll_transmit() {
            out.push(t);
        }
        while let Some(event) = g.poll_event() {
            node.events.push((now, event));
        }
        for (to, msg) in out {
            let bytes = bincode::encode_to_vec(&msg, bincode::config::standard())
                .expect("gossip messages always encode");
            let node = self.nodes.get_mut(&e).expect("sender exists");
            node.bytes_sent += bytes.len() as u64;
            node.messages_sent += 1;
            if let Some(receiver) = self.nodes.get_mut(&to) {
                receiver.messages_addressed += 1;
            }
            let p = self
                .link_drop
                .get(&(e, to))
                .copied()
                .unwrap_or(self.net.drop_probability);
            if p > 0.0 && self.rng.random::<f64>() < p {
                self.messages_lost += 1;
                continue;
            }
            let jitter = self.net.jitter.as_micros() as u64;
            let extra = if jitter == 0 {
                0
            } else {
                self.rng.random_range(0..=jitter)
            };
            let at = now + self.net.min_delay + Duration::from_micros(extra);
            self.push(at, Action::Deliver { from: e, to, bytes });
        }
    }

    /// Runs every action due up to `now + d`, then sets the clock to `now + d`.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while let Some(Reverse((at, _, _))) = self.queue.peek() {
            if *at > end {
                break;
            }
            let Some(Reverse((at, _, action))) = self.queue.pop() else {
                break;
            };
            self.now = at;
            self.perform(action);
        }
        self.now = end;
    }

    /// Runs until `done` holds (checked every `step`) or `limit` has passed; returns how long
    /// it took, or `None` on timeout.
    pub fn run_until(
        &mut self,
        limit: Duration,
        step: Duration,
        mut done: impl FnMut(&Sim) -> bool,
    ) -> Option<Duration> {
        let start = self.now;
        loop {
            if done(self) {
                return Some(self.now - start);
            }
            if self.now - start >= limit {
                return None;
            }
            self.run_for(step);
        }
    }

    fn perform(&mut self, action: Action) {
        let now = self.instant(self.now);
        match action {
            Action::Tick { node, incarnation } => {
                let Some(n) = self.nodes.get_mut(&node) else {
                    return;
                };
                if n.incarnation != incarnation {
                    return;
                }
                let Some(g) = n.gossiper.as_mut() else {
                    return;
                };
                g.handle_tick(now);
                let next = g.next_timeout();
                self.schedule_tick(node, incarnation, next);
                self.drain(node);
            }
            Action::Deliver { from, to, bytes } => {
                if self.cut(from, to) || self.gossiper(to).is_none() {
                    self.messages_lost += 1;
                    return;
                }
                let (msg, read): (GossipMessage, usize) =
                    bincode::decode_from_slice(&bytes, bincode::config::standard())
                        .expect("what was encoded decodes");
                assert_eq!(read, bytes.len(), "trailing bytes after a gossip message");
                if let Some(g) = self.gossiper_mut(to) {
                    g.handle_message(now, from, msg);
                }
                self.drain(to);
            }
        }
    }

    // ---- what the cluster knows ----------------------------------------------------------

    /// Whether `observer` holds `target`'s current generation and every application state it
    /// publishes, with the same values.
    pub fn knows_full_state(&self, observer: Endpoint, target: Endpoint) -> bool {
        let (Some(o), Some(t)) = (self.gossiper(observer), self.gossiper(target)) else {
            return false;
        };
        let (Some(held), Some(truth)) = (o.endpoint_state(&target), t.endpoint_state(&target))
        else {
            return false;
        };
        held.heartbeat.generation == truth.heartbeat.generation
            && held.app_states.len() == truth.app_states.len()
            && truth
                .app_states
                .iter()
                .all(|(k, v)| held.app_states.get(k).is_some_and(|h| h.value == v.value))
    }

    /// Whether every running node knows every running node's full state.
    pub fn converged(&self) -> bool {
        let running = self.running();
        running
            .iter()
            .all(|&o| running.iter().all(|&t| self.knows_full_state(o, t)))
    }

    /// Whether every running node sees every running node alive.
    pub fn all_alive(&self) -> bool {
        let running = self.running();
        running.iter().all(|&o| {
            let g = self.gossiper(o).expect("running");
            running.iter().all(|t| g.is_alive(t))
        })
    }

    /// Whether every running node other than `target` holds `target` down.
    pub fn all_see_down(&self, target: Endpoint) -> bool {
        self.running()
            .into_iter()
            .filter(|&o| o != target)
            .all(|o| !self.gossiper(o).expect("running").is_alive(&target))
    }

    /// Whether every running node other than `target` knows `target` (any state).
    pub fn all_know(&self, target: Endpoint) -> bool {
        self.running()
            .into_iter()
            .filter(|&o| o != target)
            .all(|o| {
                self.gossiper(o)
                    .expect("running")
                    .endpoint_state(&target)
                    .is_some()
            })
    }

    /// The first time at or after `since` when `observer` emitted an event matching `f`.
    pub fn first_event(
        &self,
        observer: Endpoint,
        since: Duration,
        f: impl Fn(&MembershipEvent) -> bool,
    ) -> Option<Duration> {
        self.nodes[&observer]
            .events
            .iter()
            .find(|(t, e)| *t >= since && f(e))
            .map(|(t, _)| *t)
    }

    /// Every `Down` event emitted by any node since `since`: `(time, observer, target)`.
    pub fn downs_since(&self, since: Duration) -> Vec<(Duration, Endpoint, Endpoint)> {
        let mut downs = Vec::new();
        for (observer, node) in &self.nodes {
            for (t, event) in &node.events {
                if let MembershipEvent::Down(target) = event {
                    if *t >= since {
                        downs.push((*t, *observer, *target));
                    }
                }
            }
        }
        downs
    }

    /// Encoded bytes sent by all nodes so far.
    pub fn total_bytes_sent(&self) -> u64 {
        self.nodes.values().map(|n| n.bytes_sent).sum()
    }
}

/// The seed of a simulation: `GOSSIP_SIM_SEED` if set, else `default`.
pub fn seed_or(default: u64) -> u64 {
    match std::env::var("GOSSIP_SIM_SEED") {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("GOSSIP_SIM_SEED must be an integer, got {s:?}")),
        Err(_) => default,
    }
}

/// Prints the seed if the test panics (so the run can be replayed).
pub struct SeedGuard {
    /// The test's name.
    pub name: &'static str,
    /// Its seed.
    pub seed: u64,
}

impl Drop for SeedGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "simulation {} failed with seed {} (replay: GOSSIP_SIM_SEED={} cargo test -p ringdb-gossip --test simulation {})",
                self.name, self.seed, self.seed, self.name
            );
        }
    }
}

/// The median and the maximum of `values` (which must not be empty).
pub fn median_max(values: &mut [Duration]) -> (Duration, Duration) {
    values.sort();
    (values[values.len() / 2], values[values.len() - 1])
}
