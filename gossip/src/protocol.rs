//! The gossip protocol: SYN/ACK/ACK2 anti-entropy as a sans-I/O state machine.
//!
//! Every node holds an [`EndpointState`] for every node it knows, its own included, and once per
//! round ([`GossipConfig::interval`]) it reconciles that table with one or two random peers.
//! Nothing here reads a clock or touches a socket: the driver (the `membership` task in a real
//! node, a simulated network in tests) feeds inputs and collects outputs, in the style of
//! `quinn-proto`:
//!
//! - inputs: [`Gossiper::handle_tick`] at [`Gossiper::next_timeout`],
//!   [`Gossiper::handle_message`] for every message received, [`Gossiper::set_app_state`] and
//!   [`Gossiper::announce_shutdown`] from the node;
//! - outputs: [`Gossiper::poll_transmit`] (messages to send) and [`Gossiper::poll_event`]
//!   ([`MembershipEvent`]s), to be drained after every input.
//!
//! ## A round
//!
//! 1. The local heartbeat takes the next version of the node's single version counter (shared
//!    with application states, so the highest version summarizes the whole state).
//! 2. A [`GossipMessage::Syn`] carrying one [`Digest`] per known endpoint — "I hold E at
//!    generation G up to version V", in random order — goes to one random **live** peer;
//! 3. then, with probability `unreachable / (live + 1)`, to one random **unreachable** peer, so
//!    that down nodes are probed, and the more of the cluster is up the less often;
//! 4. then to a random **seed**, always when no peer is live (a node whose seeds are all down
//!    retries every round), otherwise with probability `seeds / known` when the live peer chosen
//!    was not a seed or fewer peers are live than there are seeds — seeds are the hubs that
//!    heal a cluster split in two and make a new node known quickly.
//!
//! ## The exchange
//!
//! ```text
//!   A                                            B
//!   Syn { cluster_name, digests of A }  ───────▶  compare each digest with B's table:
//!                                                 A newer  → ask for it (Ack.digests),
//!                                                 B newer  → send the delta (Ack.states),
//!                                                 unknown to A → send it whole (Ack.states)
//!   apply Ack.states; answer what B asked  ◀───── Ack { digests, states }
//!   Ack2 { states }                        ─────▶ apply
//! ```
//!
//! Deltas are [`EndpointState::newer_than`] the version the other side holds **in the same
//! generation**; across generations the whole state is sent. Applying keeps this invariant:
//! holding E up to version V means holding every application state E set at or below V.
//!
//! ## Applying a remote state
//!
//! - a higher generation replaces the whole state ([`MembershipEvent::Restarted`]);
//! - the same generation merges the heartbeat and each application state, the higher version
//!   winning; a lower generation is ignored;
//! - state about ourselves is never accepted: only this node writes its own state.
//!
//! ## Liveness
//!
//! Every *newer* heartbeat of E (higher version in the same generation, or a higher
//! generation) feeds E's [`PhiAccrualDetector`], whichever peer relayed it. On each tick a live
//! peer whose phi exceeds the threshold is marked down; a down peer is marked up by its next
//! newer heartbeat. A peer learned about through a third party is not assumed alive: it is marked
//! up when it speaks to us directly or when a newer heartbeat shows that it is still running,
//! so a node joining a cluster does not briefly see long-dead members as up.
//!
//! A [`GossipMessage::Shutdown`] from E marks E down at once and sets its status to SHUTDOWN in
//! our copy, at the version just above what we hold so that older data cannot overwrite it; a
//! peer whose status is SHUTDOWN — told directly or learned through gossip — is never marked up
//! again until its status changes, normally when it restarts with a new generation. (That
//! fabricated version is the one place where two nodes may hold different values of E at the
//! same version; it only ever says SHUTDOWN, and E's next generation replaces it everywhere.)
//! A peer whose status is LEFT (decommissioned) is treated as stopped the same way, and a
//! Shutdown message does not turn LEFT into SHUTDOWN: it is gone from the ring for good.
//!
//! Events are emitted only on real transitions: one `Up` per down→up, one `Down` per up→down.
//!
//! ## Bounds
//!
//! - A SYN carries at most [`GossipConfig::max_digests_per_syn`] digests (a random subset when
//!   more are known: the shuffle makes every endpoint come up in turn), and an ACK or ACK2 at
//!   most [`GossipConfig::max_states_per_message`] states; what does not fit goes in a later
//!   round — anti-entropy needs no retransmission. A received SYN is read up to the same
//!   digest limit.
//! - The transmit queue holds at most `4 × (known endpoints + seeds) + 16` messages; when full,
//!   the oldest is dropped ([`Gossiper::dropped_transmits`]), which gossip tolerates like a lost
//!   datagram. A driver draining it after each input never comes near the limit.
//! - The event queue holds at most [`GossipConfig::max_pending_events`]; when full the oldest
//!   event is dropped and counted ([`Gossiper::dropped_events`]). Drivers must drain events
//!   after each input; one that finds the counter moved resynchronizes from
//!   [`Gossiper::view`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};

use crate::detector::{DetectorConfig, PhiAccrualDetector};
use crate::state::{
    AppStateKey, ClusterView, Digest, Endpoint, EndpointState, EndpointView, Generation,
    NodeStatus, Version, VersionedValue,
};

/// What gossiping nodes say to each other.
#[derive(Debug, Clone, PartialEq, bincode::Encode, bincode::Decode)]
pub enum GossipMessage {
    /// Opens an exchange: "this is what I hold".
    Syn {
        /// The sender's cluster name; a SYN from another cluster is ignored, so that two clusters
        /// sharing a seed by mistake never merge.
        cluster_name: String,
        /// One digest per endpoint the sender knows (possibly a random subset, see
        /// [`GossipConfig::max_digests_per_syn`]), in random order.
        digests: Vec<Digest>,
    },
    /// The SYN receiver's answer.
    Ack {
        /// What the SYN receiver wants from the SYN sender: for each endpoint, the generation the
        /// SYN announced and the version the receiver holds in that generation (0 for "all").
        digests: Vec<Digest>,
        /// What the SYN receiver holds that is newer than the SYN announced, or that the SYN did
        /// not mention at all.
        states: Vec<(Endpoint, EndpointState)>,
    },
    /// The SYN sender's answer to the [`GossipMessage::Ack`]: closes the exchange.
    Ack2 {
        /// The states the ACK asked for, newer than the versions it named.
        states: Vec<(Endpoint, EndpointState)>,
    },
    /// "I, the sender, am stopping gracefully": peers mark it down at once instead of waiting for
    /// the failure detector.
    Shutdown {
        /// The sender's generation, so that a late Shutdown cannot mark down its next incarnation.
        generation: Generation,
    },
}

/// A change in what this node knows about the cluster, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipEvent {
    /// The endpoint is known for the first time. Followed by a `StateChanged` listing the
    /// application states it came with (if any), and by `Up` when it is seen alive.
    Discovered(Endpoint),
    /// The endpoint is alive: its heartbeat advanced after it was discovered or marked down.
    Up(Endpoint),
    /// The endpoint is down: convicted by the failure detector, or announced its shutdown.
    Down(Endpoint),
    /// The endpoint restarted: a newer generation replaced its whole state. Followed by a
    /// `StateChanged` listing the keys of the new state, and by `Up` if it was down. Liveness is
    /// not changed by this event on its own.
    Restarted {
        /// The endpoint.
        endpoint: Endpoint,
        /// Its new generation.
        generation: Generation,
    },
    /// Application states of the endpoint changed value (the local endpoint included).
    StateChanged {
        /// The endpoint.
        endpoint: Endpoint,
        /// The keys whose values changed, in key order.
        keys: Vec<AppStateKey>,
    },
    /// The endpoint was forgotten. Not emitted yet: endpoints are kept until the process stops
    /// (forgetting LEFT nodes needs a quarantine, so that gossip does not bring them back).
    Removed(Endpoint),
}

/// How a [`Gossiper`] behaves. Defaults in one place: [`GossipConfig::default`].
#[derive(Debug, Clone, PartialEq)]
pub struct GossipConfig {
    /// Nodes with another cluster name are never merged with this one.
    pub cluster_name: String,
    /// Time between two gossip rounds (config key `gossip_interval_ms`). Default 150 ms: with
    /// the default detector, a dead node is marked down in 1.7–2.7 s (median; 5 to 50 nodes,
    /// LAN to 200 ms of random delay) and 50 nodes converge from a cold start in 0.5–1.2 s,
    /// for 1–8 KB/s per node. At 200 ms, detection on 50 nodes with 200 ms of jitter took
    /// over 3 s (see the `detector` module).
    pub interval: Duration,
    /// The seed nodes: contacted when nothing else is known, and regularly afterwards.
    pub seeds: Vec<Endpoint>,
    /// The failure detector's tuning.
    pub detector: DetectorConfig,
    /// Most digests in one SYN (a random subset is sent when more endpoints are known).
    pub max_digests_per_syn: usize,
    /// Most endpoint states in one ACK or ACK2 (the rest go in later rounds).
    pub max_states_per_message: usize,
    /// Most events held before the oldest is dropped (see the module documentation).
    pub max_pending_events: usize,
    /// A gap between two ticks longer than this means this node itself was paused (a stall, a
    /// suspended VM). Nobody is convicted for as long again after it, so that the messages that
    /// piled up meanwhile can be read first: the peers were silent because we were not
    /// listening, not because they died (Cassandra does the same).
    pub max_local_pause: Duration,
}

impl Default for GossipConfig {
    fn default() -> Self {
        GossipConfig {
            cluster_name: "ringdb".to_string(),
            interval: Duration::from_millis(150),
            seeds: Vec::new(),
            detector: DetectorConfig::default(),
            max_digests_per_syn: 1024,
            max_states_per_message: 128,
            max_pending_events: 4096,
            max_local_pause: Duration::from_secs(2),
        }
    }
}

/// What this node holds about one remote endpoint.
#[derive(Debug, Clone)]
struct Peer {
    /// Its latest known state.
    state: EndpointState,
    /// `state.max_version()`, kept up to date on every change: digests need it for every peer
    /// in every round.
    max_version: Version,
    /// Its failure detector, fed by newer heartbeats.
    detector: PhiAccrualDetector,
    /// Whether it is currently considered alive.
    alive: bool,
    /// The generation of its latest [`GossipMessage::Shutdown`], if that generation's state has
    /// not reached us yet: when it does, it is marked SHUTDOWN too.
    shutdown_generation: Option<Generation>,
}

/// The gossip state machine of one node. See the module documentation.
#[derive(Debug)]
pub struct Gossiper {
    local: Endpoint,
    config: GossipConfig,
    /// Our own state; only this node changes it.
    local_state: EndpointState,
    /// Every other endpoint we know (never `local`). A `BTreeMap` so that iteration, and so the
    /// whole machine, is deterministic for a given seed.
    peers: BTreeMap<Endpoint, Peer>,
    rng: StdRng,
    /// When the next round is due.
    next_round: Instant,
    /// When `handle_tick` last ran (local pause detection).
    last_tick: Option<Instant>,
    /// After a local pause, no conviction before this instant.
    no_conviction_until: Option<Instant>,
    transmits: VecDeque<(Endpoint, GossipMessage)>,
    events: VecDeque<MembershipEvent>,
    /// Set by `announce_shutdown`: the machine is stopped and ignores every input.
    shut_down: bool,
    counters: Counters,
}

#[derive(Debug, Default, Clone)]
struct Counters {
    rounds: u64,
    rejected_cluster_name: u64,
    dropped_transmits: u64,
    dropped_events: u64,
    local_pauses: u64,
}

/// What comparing a remote digest with the local table calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DigestAction {
    /// The remote side is newer: ask for its state newer than this version (0: everything).
    Request(Version),
    /// We are newer: send our state newer than this version (0: everything).
    Send(Version),
    /// Both sides hold the same thing.
    InSync,
}

/// Compares what we hold of an endpoint (`(generation, max_version)`, or nothing) with what a
/// remote digest announces.
fn compare_digest(local: Option<(Generation, Version)>, remote: &Digest) -> DigestAction {
    match local {
        None => DigestAction::Request(0),
        Some((generation, _)) if remote.generation > generation => DigestAction::Request(0),
        Some((generation, _)) if remote.generation < generation => DigestAction::Send(0),
        Some((_, version)) if remote.max_version > version => DigestAction::Request(version),
        Some((_, version)) if remote.max_version < version => {
            DigestAction::Send(remote.max_version)
        }
        Some(_) => DigestAction::InSync,
    }
}

/// Whether the endpoint says it is stopped: such a peer is never marked up.
/// Whether `state`'s status says the node is stopped: SHUTDOWN (expected back), or LEFT (gone
/// from the ring for good; a SHUTDOWN announced as it stops must not turn it back into a ring
/// member).
fn is_dead_status(state: &EndpointState) -> bool {
    matches!(
        state.get(AppStateKey::Status),
        Some(s) if s == NodeStatus::Shutdown.as_str() || s == NodeStatus::Left.as_str()
    )
}

impl Gossiper {
    /// A gossiper for `local`, in its incarnation `generation` (higher than any it used before),
    /// knowing only its seeds. Its first round is due at `now`; `rng_seed` makes its choices of
    /// peers reproducible.
    pub fn new(
        local: Endpoint,
        generation: Generation,
        config: GossipConfig,
        rng_seed: u64,
        now: Instant,
    ) -> Self {
        Gossiper {
            local,
            config,
            local_state: EndpointState::new(generation),
            peers: BTreeMap::new(),
            rng: StdRng::seed_from_u64(rng_seed),
            next_round: now,
            last_tick: None,
            no_conviction_until: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            shut_down: false,
            counters: Counters::default(),
        }
    }

    /// This node's endpoint.
    pub fn local(&self) -> Endpoint {
        self.local
    }

    /// This node's generation.
    pub fn generation(&self) -> Generation {
        self.local_state.heartbeat.generation
    }

    /// The configuration in use.
    pub fn config(&self) -> &GossipConfig {
        &self.config
    }

    /// Publishes `value` under `key` in the local state. The version is bumped, and a
    /// [`MembershipEvent::StateChanged`] emitted, only if the value changed.
    pub fn set_app_state(&mut self, key: AppStateKey, value: impl Into<String>) {
        let value = value.into();
        if self.local_state.get(key) == Some(value.as_str()) {
            return;
        }
        let version = self.next_version();
        self.local_state
            .app_states
            .insert(key, VersionedValue { value, version });
        self.push_event(MembershipEvent::StateChanged {
            endpoint: self.local,
            keys: vec![key],
        });
    }

    /// Publishes, on behalf of `endpoint` (a peer that is down), the status `status` — how a
    /// node removes a dead peer from the ring (`ringdb removenode`: `LEAVING` while its ranges
    /// are re-replicated, then `LEFT`). The status goes in at the version just above the highest
    /// one held of the peer, so it wins over what others hold of the same incarnation and
    /// spreads like any state; the peer's own next incarnation (a restart) supersedes it.
    pub fn set_peer_status(
        &mut self,
        endpoint: Endpoint,
        status: NodeStatus,
    ) -> Result<(), String> {
        if endpoint == self.local {
            return Err("a node cannot speak for itself as for a peer".into());
        }
        let Some(peer) = self.peers.get_mut(&endpoint) else {
            return Err(format!("{endpoint} is not known to gossip"));
        };
        if peer.alive {
            return Err(format!(
                "{endpoint} is alive: only a node that is down can be spoken for"
            ));
        }
        if peer.state.status() == Some(status) {
            return Ok(());
        }
        // A peer's versions come from the network: one at u64::MAX must not overflow.
        let version = peer.state.max_version().saturating_add(1);
        peer.state.app_states.insert(
            AppStateKey::Status,
            VersionedValue {
                value: status.as_str().to_string(),
                version,
            },
        );
        peer.max_version = version;
        self.push_event(MembershipEvent::StateChanged {
            endpoint,
            keys: vec![AppStateKey::Status],
        });
        Ok(())
    }

    /// Runs a gossip round if one is due (then schedules the next one) and the failure
    /// detector (convictions emit [`MembershipEvent::Down`]). Call it at
    /// [`Gossiper::next_timeout`]; calling it earlier or more often is harmless.
    pub fn handle_tick(&mut self, now: Instant) {
        if self.shut_down {
            return;
        }
        let paused = self
            .last_tick
            .is_some_and(|last| now.saturating_duration_since(last) > self.config.max_local_pause);
        self.last_tick = Some(now);
        if now >= self.next_round {
            self.run_round();
            let interval = self.config.interval.max(Duration::from_millis(1));
            self.next_round += interval;
            if self.next_round <= now {
                // Late by more than a round: skip the missed rounds rather than burst.
                self.next_round = now + interval;
            }
        }
        if paused {
            self.counters.local_pauses += 1;
            self.no_conviction_until = Some(now + self.config.max_local_pause);
            tracing::warn!(
                "this node was paused; not marking peers down for {:?}",
                self.config.max_local_pause
            );
        }
        if self.no_conviction_until.is_some_and(|until| now < until) {
            return;
        }
        self.convict(now);
    }

    /// When [`Gossiper::handle_tick`] should next be called.
    pub fn next_timeout(&self) -> Instant {
        self.next_round
    }

    /// Handles a message received from `from` at `now`.
    pub fn handle_message(&mut self, now: Instant, from: Endpoint, msg: GossipMessage) {
        if self.shut_down || from == self.local {
            return;
        }
        match msg {
            GossipMessage::Syn {
                cluster_name,
                digests,
            } => {
                if cluster_name != self.config.cluster_name {
                    self.counters.rejected_cluster_name += 1;
                    tracing::debug!(%from, %cluster_name, "ignoring SYN from another cluster");
                    return;
                }
                self.handle_syn(from, digests);
            }
            GossipMessage::Ack { digests, states } => {
                for (endpoint, state) in states {
                    self.apply_remote(now, from, endpoint, state);
                }
                let states = self.states_requested(&digests);
                if !states.is_empty() {
                    self.push_transmit(from, GossipMessage::Ack2 { states });
                }
            }
            GossipMessage::Ack2 { states } => {
                for (endpoint, state) in states {
                    self.apply_remote(now, from, endpoint, state);
                }
            }
            GossipMessage::Shutdown { generation } => self.handle_shutdown(from, generation),
        }
    }

    /// The next message to send, if any.
    pub fn poll_transmit(&mut self) -> Option<(Endpoint, GossipMessage)> {
        self.transmits.pop_front()
    }

    /// The next membership event, if any.
    pub fn poll_event(&mut self) -> Option<MembershipEvent> {
        self.events.pop_front()
    }

    /// Announces a graceful stop: sets the local status to SHUTDOWN (unless it is LEFT) and queues a
    /// [`GossipMessage::Shutdown`] to every live peer. The machine then stops: later ticks and
    /// messages are ignored, and the driver should send what is queued and exit.
    pub fn announce_shutdown(&mut self, _now: Instant) {
        if self.shut_down {
            return;
        }
        // A node that left the ring (decommission) stays LEFT: SHUTDOWN would put its tokens
        // back on everyone's ring as a node expected to return.
        if self.local_state.status() != Some(NodeStatus::Left) {
            self.set_app_state(AppStateKey::Status, NodeStatus::Shutdown.as_str());
        }
        let generation = self.generation();
        let live: Vec<Endpoint> = self.live_peers().collect();
        for peer in live {
            self.push_transmit(peer, GossipMessage::Shutdown { generation });
        }
        self.shut_down = true;
    }

    /// What this node holds about `e` (its own state for the local endpoint).
    pub fn endpoint_state(&self, e: &Endpoint) -> Option<&EndpointState> {
        if *e == self.local {
            Some(&self.local_state)
        } else {
            self.peers.get(e).map(|p| &p.state)
        }
    }

    /// Whether `e` is considered alive (always true for the local endpoint, false for unknown
    /// ones).
    pub fn is_alive(&self, e: &Endpoint) -> bool {
        *e == self.local || self.peers.get(e).is_some_and(|p| p.alive)
    }

    /// The failure detector's current suspicion of `e` (`None` for the local endpoint and for
    /// unknown ones).
    pub fn phi(&self, e: &Endpoint, now: Instant) -> Option<f64> {
        self.peers.get(e).map(|p| p.detector.phi(now))
    }

    /// The failure detector of `e` (`None` for the local endpoint and for unknown ones), for
    /// diagnostics: its mean interval, deviation and last heartbeat.
    pub fn detector(&self, e: &Endpoint) -> Option<&PhiAccrualDetector> {
        self.peers.get(e).map(|p| &p.detector)
    }

    /// A snapshot of everything this node knows, the local endpoint included (alive).
    pub fn view(&self) -> ClusterView {
        let mut endpoints = BTreeMap::new();
        endpoints.insert(
            self.local,
            EndpointView {
                state: self.local_state.clone(),
                alive: true,
            },
        );
        let superseded = self.superseded();
        for (endpoint, peer) in &self.peers {
            if superseded.contains(endpoint) {
                continue;
            }
            endpoints.insert(
                *endpoint,
                EndpointView {
                    state: peer.state.clone(),
                    alive: peer.alive,
                },
            );
        }
        ClusterView {
            local: self.local,
            endpoints,
        }
    }

    /// Peers whose host id another endpoint now holds: a node that came back at another
    /// address (a container or pod gets a new IP when it is recreated) leaves its old address
    /// behind in gossip. The newest incarnation wins — this node itself, else the higher
    /// generation (ties: the higher address, so every node picks the same one) — and the others
    /// are left out of [`Gossiper::view`], so the ring, `system.peers` and `ringdb status` know
    /// the node once, at its new address.
    fn superseded(&self) -> std::collections::HashSet<Endpoint> {
        let mut newest: std::collections::HashMap<&str, (Generation, bool, Endpoint)> =
            std::collections::HashMap::new();
        let candidates = std::iter::once((self.local, &self.local_state, true)).chain(
            self.peers
                .iter()
                .map(|(endpoint, peer)| (*endpoint, &peer.state, false)),
        );
        let mut out = std::collections::HashSet::new();
        for (endpoint, state, local) in candidates {
            let Some(host) = state.get(AppStateKey::HostId) else {
                continue;
            };
            let rank = (state.heartbeat.generation, local, endpoint);
            match newest.get(host) {
                None => {
                    newest.insert(host, rank);
                }
                Some(held) => {
                    let (loser, winner) = if (rank.1, rank.0, rank.2) > (held.1, held.0, held.2) {
                        (held.2, rank)
                    } else {
                        (endpoint, *held)
                    };
                    out.insert(loser);
                    newest.insert(host, winner);
                }
            }
        }
        out.remove(&self.local);
        out
    }

    /// The peers currently considered alive.
    pub fn live_peers(&self) -> impl Iterator<Item = Endpoint> + '_ {
        self.peers.iter().filter(|(_, p)| p.alive).map(|(e, _)| *e)
    }

    /// The known peers currently considered down (or not yet seen alive).
    pub fn unreachable_peers(&self) -> impl Iterator<Item = Endpoint> + '_ {
        self.peers.iter().filter(|(_, p)| !p.alive).map(|(e, _)| *e)
    }

    /// Whether [`Gossiper::announce_shutdown`] was called.
    pub fn is_shut_down(&self) -> bool {
        self.shut_down
    }

    /// Gossip rounds run so far.
    pub fn rounds(&self) -> u64 {
        self.counters.rounds
    }

    /// SYNs ignored because they came from another cluster.
    pub fn rejected_cluster_name(&self) -> u64 {
        self.counters.rejected_cluster_name
    }

    /// Messages dropped because the transmit queue was full.
    pub fn dropped_transmits(&self) -> u64 {
        self.counters.dropped_transmits
    }

    /// Events dropped because the event queue was full.
    pub fn dropped_events(&self) -> u64 {
        self.counters.dropped_events
    }

    /// How many times this node found itself paused (see [`GossipConfig::max_local_pause`]).
    pub fn local_pauses(&self) -> u64 {
        self.counters.local_pauses
    }

    // ---- rounds ----------------------------------------------------------------------------

    /// The node's single version counter: the highest version of the local state, plus one.
    fn next_version(&self) -> Version {
        self.local_state.max_version() + 1
    }

    fn run_round(&mut self) {
        self.counters.rounds += 1;
        self.local_state.heartbeat.version = self.next_version();

        let live: Vec<Endpoint> = self.live_peers().collect();
        let unreachable: Vec<Endpoint> = self.unreachable_peers().collect();
        let seeds: Vec<Endpoint> = self
            .config
            .seeds
            .iter()
            .copied()
            .filter(|s| *s != self.local)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut targets: Vec<Endpoint> = Vec::with_capacity(3);

        let mut gossiped_to_seed = false;
        if let Some(&peer) = live.choose(&mut self.rng) {
            gossiped_to_seed = seeds.contains(&peer);
            targets.push(peer);
        }
        if !unreachable.is_empty() {
            let probability = unreachable.len() as f64 / (live.len() + 1) as f64;
            if self.rng.random::<f64>() < probability {
                if let Some(&peer) = unreachable.choose(&mut self.rng) {
                    targets.push(peer);
                }
            }
        }
        if !seeds.is_empty() && (!gossiped_to_seed || live.len() < seeds.len()) {
            let probability = if live.is_empty() {
                1.0
            } else {
                seeds.len() as f64 / (live.len() + unreachable.len()) as f64
            };
            if self.rng.random::<f64>() < probability {
                if let Some(&seed) = seeds.choose(&mut self.rng) {
                    if !targets.contains(&seed) {
                        targets.push(seed);
                    }
                }
            }
        }

        if targets.is_empty() {
            return;
        }
        let digests = self.digests();
        for target in targets {
            self.push_transmit(
                target,
                GossipMessage::Syn {
                    cluster_name: self.config.cluster_name.clone(),
                    digests: digests.clone(),
                },
            );
        }
    }

    /// One digest per known endpoint, ours included, shuffled, capped.
    fn digests(&mut self) -> Vec<Digest> {
        let mut digests: Vec<Digest> = self
            .peers
            .iter()
            .map(|(endpoint, peer)| Digest {
                endpoint: *endpoint,
                generation: peer.state.heartbeat.generation,
                max_version: peer.max_version,
            })
            .collect();
        digests.shuffle(&mut self.rng);
        digests.truncate(self.config.max_digests_per_syn.saturating_sub(1));
        // Our own digest is always there: it is how peers learn our heartbeat.
        let position = self.rng.random_range(0..=digests.len());
        digests.insert(position, digest_of(self.local, &self.local_state));
        digests
    }

    /// The generation and highest version we hold of `e`, if we know it.
    fn held_version(&self, e: &Endpoint) -> Option<(Generation, Version)> {
        if *e == self.local {
            let s = &self.local_state;
            Some((s.heartbeat.generation, s.max_version()))
        } else {
            let peer = self.peers.get(e)?;
            Some((peer.state.heartbeat.generation, peer.max_version))
        }
    }

    fn convict(&mut self, now: Instant) {
        let threshold = self.config.detector.phi_convict_threshold;
        let convicted: Vec<Endpoint> = self
            .peers
            .iter()
            .filter(|(_, p)| p.alive && p.detector.suspects(now, threshold))
            .map(|(e, _)| *e)
            .collect();
        for endpoint in convicted {
            if let Some(peer) = self.peers.get(&endpoint) {
                tracing::info!(%endpoint, phi = peer.detector.phi(now), "convicted by the failure detector");
            }
            self.mark_down(endpoint);
        }
    }

    // ---- the exchange ----------------------------------------------------------------------

    fn handle_syn(&mut self, from: Endpoint, digests: Vec<Digest>) {
        let mut requests = Vec::new();
        let mut states = Vec::new();
        let mut mentioned = BTreeSet::new();
        // A SYN longer than ours could be is cut: what is left out comes in a later round.
        for digest in digests.into_iter().take(self.config.max_digests_per_syn) {
            if !mentioned.insert(digest.endpoint) {
                continue; // a duplicate digest: the first one counts
            }
            match compare_digest(self.held_version(&digest.endpoint), &digest) {
                DigestAction::Request(version) => {
                    // Only this node writes its own state: never ask anyone for it.
                    if digest.endpoint != self.local {
                        requests.push(Digest {
                            endpoint: digest.endpoint,
                            generation: digest.generation,
                            max_version: version,
                        });
                    }
                }
                DigestAction::Send(version) => {
                    if let Some(state) = self.endpoint_state(&digest.endpoint) {
                        states.push((digest.endpoint, state.newer_than(version)));
                    }
                }
                DigestAction::InSync => {}
            }
        }
        // Endpoints the sender did not mention: it may not know them at all.
        let mut unmentioned: Vec<Endpoint> = std::iter::once(self.local)
            .chain(self.peers.keys().copied())
            .filter(|e| !mentioned.contains(e) && *e != from)
            .collect();
        unmentioned.shuffle(&mut self.rng);
        for endpoint in unmentioned {
            if states.len() >= self.config.max_states_per_message {
                break;
            }
            if let Some(state) = self.endpoint_state(&endpoint) {
                states.push((endpoint, state.newer_than(0)));
            }
        }
        states.truncate(self.config.max_states_per_message);
        if !requests.is_empty() || !states.is_empty() {
            self.push_transmit(
                from,
                GossipMessage::Ack {
                    digests: requests,
                    states,
                },
            );
        }
    }

    /// The states an ACK asked for: newer than the version named when the generation is still
    /// the one the ACK named, whole otherwise.
    fn states_requested(&self, digests: &[Digest]) -> Vec<(Endpoint, EndpointState)> {
        let mut states = Vec::new();
        let mut seen = BTreeSet::new();
        for digest in digests {
            if states.len() >= self.config.max_states_per_message {
                break;
            }
            if !seen.insert(digest.endpoint) {
                continue;
            }
            if let Some(state) = self.endpoint_state(&digest.endpoint) {
                let since = if state.heartbeat.generation == digest.generation {
                    digest.max_version
                } else {
                    0
                };
                states.push((digest.endpoint, state.newer_than(since)));
            }
        }
        states
    }

    fn handle_shutdown(&mut self, from: Endpoint, generation: Generation) {
        let Some(peer) = self.peers.get_mut(&from) else {
            return; // unknown: nothing to mark down
        };
        if generation < peer.state.heartbeat.generation {
            return; // a late message from an earlier incarnation
        }
        if generation > peer.state.heartbeat.generation {
            peer.shutdown_generation = Some(generation);
        } else if mark_shutdown(&mut peer.state) {
            peer.max_version = peer.state.max_version();
            self.push_event(MembershipEvent::StateChanged {
                endpoint: from,
                keys: vec![AppStateKey::Status],
            });
        }
        tracing::info!(endpoint = %from, "peer announced its shutdown");
        self.mark_down(from);
    }

    // ---- applying remote state -------------------------------------------------------------

    /// Applies `remote`, a state of `endpoint` relayed by `from`.
    fn apply_remote(
        &mut self,
        now: Instant,
        from: Endpoint,
        endpoint: Endpoint,
        remote: EndpointState,
    ) {
        if endpoint == self.local {
            return; // only this node writes its own state
        }
        let Some(peer) = self.peers.get_mut(&endpoint) else {
            self.discover(now, from, endpoint, remote);
            return;
        };
        let local_generation = peer.state.heartbeat.generation;
        if remote.heartbeat.generation < local_generation {
            return;
        }
        if remote.heartbeat.generation > local_generation {
            let generation = remote.heartbeat.generation;
            peer.state = remote;
            match peer.shutdown_generation {
                Some(stopped) if stopped == generation => {
                    mark_shutdown(&mut peer.state);
                    peer.shutdown_generation = None;
                }
                Some(stopped) if stopped < generation => peer.shutdown_generation = None,
                _ => {}
            }
            peer.max_version = peer.state.max_version();
            let keys: Vec<AppStateKey> = peer.state.app_states.keys().copied().collect();
            peer.detector.heartbeat(now);
            self.push_event(MembershipEvent::Restarted {
                endpoint,
                generation,
            });
            if !keys.is_empty() {
                self.push_event(MembershipEvent::StateChanged { endpoint, keys });
            }
            self.after_heartbeat(endpoint);
            return;
        }

        // Same generation: the higher version wins, component by component.
        let newer_heartbeat = remote.heartbeat.version > peer.state.heartbeat.version;
        if newer_heartbeat {
            peer.state.heartbeat = remote.heartbeat;
            peer.max_version = peer.max_version.max(remote.heartbeat.version);
            peer.detector.heartbeat(now);
        }
        let mut changed = Vec::new();
        for (key, value) in remote.app_states {
            match peer.state.app_states.get(&key) {
                Some(held) if held.version >= value.version => {}
                held => {
                    if held.is_none_or(|h| h.value != value.value) {
                        changed.push(key);
                    }
                    peer.max_version = peer.max_version.max(value.version);
                    peer.state.app_states.insert(key, value);
                }
            }
        }
        // Liveness. A peer is never up while its status says SHUTDOWN or LEFT, so only a newer
        // heartbeat of a down peer, or a new status of a live one, can change it.
        let went_up = newer_heartbeat && !peer.alive && !is_dead_status(&peer.state);
        let went_down =
            peer.alive && changed.contains(&AppStateKey::Status) && is_dead_status(&peer.state);
        if went_up || went_down {
            peer.alive = went_up;
        }
        if !changed.is_empty() {
            self.push_event(MembershipEvent::StateChanged {
                endpoint,
                keys: changed,
            });
        }
        if went_up {
            tracing::info!(%endpoint, "peer is up");
            self.push_event(MembershipEvent::Up(endpoint));
        }
        if went_down {
            tracing::info!(%endpoint, "peer is down: it announced its shutdown");
            self.push_event(MembershipEvent::Down(endpoint));
        }
    }

    fn discover(&mut self, now: Instant, from: Endpoint, endpoint: Endpoint, state: EndpointState) {
        let keys: Vec<AppStateKey> = state.app_states.keys().copied().collect();
        self.peers.insert(
            endpoint,
            Peer {
                max_version: state.max_version(),
                state,
                detector: PhiAccrualDetector::new(&self.config.detector, now),
                alive: false,
                shutdown_generation: None,
            },
        );
        self.push_event(MembershipEvent::Discovered(endpoint));
        if !keys.is_empty() {
            self.push_event(MembershipEvent::StateChanged { endpoint, keys });
        }
        // Heard from itself: alive. Heard of through a third party: alive once its heartbeat
        // is seen to advance (it may have been dead for hours).
        if from == endpoint {
            self.after_heartbeat(endpoint);
        }
    }

    /// A newer heartbeat of `endpoint` arrived: up, unless its status says it is stopped; down
    /// if that status says so and it was up.
    fn after_heartbeat(&mut self, endpoint: Endpoint) {
        let Some(peer) = self.peers.get_mut(&endpoint) else {
            return;
        };
        if is_dead_status(&peer.state) {
            self.mark_down(endpoint);
        } else if !peer.alive {
            peer.alive = true;
            tracing::info!(%endpoint, "peer is up");
            self.push_event(MembershipEvent::Up(endpoint));
        }
    }

    fn mark_down(&mut self, endpoint: Endpoint) {
        if let Some(peer) = self.peers.get_mut(&endpoint) {
            if peer.alive {
                peer.alive = false;
                tracing::info!(%endpoint, "peer is down");
                self.push_event(MembershipEvent::Down(endpoint));
            }
        }
    }

    // ---- bounded outputs -------------------------------------------------------------------

    fn push_transmit(&mut self, to: Endpoint, msg: GossipMessage) {
        if to == self.local {
            return;
        }
        let limit = 4 * (self.peers.len() + 1 + self.config.seeds.len()) + 16;
        while self.transmits.len() >= limit {
            self.transmits.pop_front();
            self.counters.dropped_transmits += 1;
        }
        self.transmits.push_back((to, msg));
    }

    fn push_event(&mut self, event: MembershipEvent) {
        while self.events.len() >= self.config.max_pending_events.max(1) {
            self.events.pop_front();
            self.counters.dropped_events += 1;
        }
        self.events.push_back(event);
    }
}

/// Sets the status in our copy of a peer's state to SHUTDOWN, at the version just above what we
/// hold so that older data relayed by others cannot overwrite it. Returns whether it changed.
fn mark_shutdown(state: &mut EndpointState) -> bool {
    if is_dead_status(state) {
        return false;
    }
    // The versions came from the network: a peer that announced u64::MAX must not make this
    // overflow (a panic with overflow checks, version 0 without them).
    let version = state.max_version().saturating_add(1);
    state.app_states.insert(
        AppStateKey::Status,
        VersionedValue {
            value: NodeStatus::Shutdown.as_str().to_string(),
            version,
        },
    );
    true
}

fn digest_of(endpoint: Endpoint, state: &EndpointState) -> Digest {
    Digest {
        endpoint,
        generation: state.heartbeat.generation,
        max_version: state.max_version(),
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};

    use super::*;

    fn ep(i: u8) -> Endpoint {
        Endpoint(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, i)),
            7000,
        ))
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn state(
        generation: Generation,
        heartbeat: Version,
        apps: &[(AppStateKey, &str, Version)],
    ) -> EndpointState {
        let mut s = EndpointState::new(generation);
        s.heartbeat.version = heartbeat;
        for (key, value, version) in apps {
            s.app_states.insert(
                *key,
                VersionedValue {
                    value: value.to_string(),
                    version: *version,
                },
            );
        }
        s
    }

    fn digest(endpoint: Endpoint, generation: Generation, max_version: Version) -> Digest {
        Digest {
            endpoint,
            generation,
            max_version,
        }
    }

    fn gossiper(i: u8, seeds: &[u8], now: Instant) -> Gossiper {
        let config = GossipConfig {
            seeds: seeds.iter().map(|s| ep(*s)).collect(),
            ..GossipConfig::default()
        };
        Gossiper::new(ep(i), 1, config, u64::from(i), now)
    }

    /// Checks the cached versions (called by the helpers below, so by every test).
    fn check_invariants(g: &Gossiper) {
        for (e, peer) in &g.peers {
            assert_eq!(
                peer.max_version,
                peer.state.max_version(),
                "cached version of {e}"
            );
        }
    }

    fn transmits(g: &mut Gossiper) -> Vec<(Endpoint, GossipMessage)> {
        check_invariants(g);
        std::iter::from_fn(|| g.poll_transmit()).collect()
    }

    fn events(g: &mut Gossiper) -> Vec<MembershipEvent> {
        check_invariants(g);
        std::iter::from_fn(|| g.poll_event()).collect()
    }

    /// Teaches `g` the state `s` of `e`, as if relayed by `via`.
    fn teach(g: &mut Gossiper, now: Instant, via: Endpoint, e: Endpoint, s: EndpointState) {
        g.handle_message(
            now,
            via,
            GossipMessage::Ack2 {
                states: vec![(e, s)],
            },
        );
    }

    fn syn(digests: Vec<Digest>) -> GossipMessage {
        GossipMessage::Syn {
            cluster_name: "ringdb".into(),
            digests,
        }
    }

    #[test]
    fn digest_comparison_table() {
        use DigestAction::*;
        let e = ep(9);
        type Held = Option<(Generation, Version)>;
        let cases: &[(Held, (Generation, Version), DigestAction)] = &[
            (None, (5, 10), Request(0)),
            (Some((4, 99)), (5, 10), Request(0)),
            (Some((6, 1)), (5, 10), Send(0)),
            (Some((5, 7)), (5, 10), Request(7)),
            (Some((5, 12)), (5, 10), Send(10)),
            (Some((5, 10)), (5, 10), InSync),
            (Some((5, 3)), (5, 0), Send(0)),
        ];
        for (local, (g, v), expected) in cases {
            assert_eq!(
                compare_digest(*local, &digest(e, *g, *v)),
                *expected,
                "local {local:?} remote {g}/{v}"
            );
        }
    }

    #[test]
    fn messages_round_trip_through_bincode() {
        let config = bincode::config::standard();
        let st = state(
            3,
            17,
            &[
                (AppStateKey::Status, "NORMAL", 2),
                (AppStateKey::Tokens, "-5,7", 1),
            ],
        );
        let messages = [
            syn(vec![digest(ep(1), 3, 17), digest(ep(2), 1, 0)]),
            GossipMessage::Ack {
                digests: vec![digest(ep(2), 1, 0)],
                states: vec![(ep(1), st.clone())],
            },
            GossipMessage::Ack2 {
                states: vec![(ep(1), st), (ep(2), EndpointState::new(1))],
            },
            GossipMessage::Shutdown {
                generation: u64::MAX,
            },
            syn(Vec::new()),
        ];
        for msg in messages {
            let bytes = bincode::encode_to_vec(&msg, config).expect("encode");
            let (back, read): (GossipMessage, usize) =
                bincode::decode_from_slice(&bytes, config).expect("decode");
            assert_eq!(back, msg);
            assert_eq!(read, bytes.len());
            // Every strict prefix is an error, never a panic.
            for cut in 0..bytes.len() {
                assert!(
                    bincode::decode_from_slice::<GossipMessage, _>(&bytes[..cut], config).is_err()
                );
            }
        }
    }

    #[test]
    fn three_way_handshake_between_two_nodes() {
        let t0 = Instant::now();
        let mut a = gossiper(1, &[2], t0);
        let mut b = gossiper(2, &[2], t0);
        a.set_app_state(AppStateKey::Dc, "dc1");
        b.set_app_state(AppStateKey::Dc, "dc2");
        assert_eq!(
            events(&mut a),
            vec![MembershipEvent::StateChanged {
                endpoint: ep(1),
                keys: vec![AppStateKey::Dc]
            }]
        );
        events(&mut b);

        a.handle_tick(t0);
        b.handle_tick(t0); // b's only seed is itself: nowhere to send
        assert!(transmits(&mut b).is_empty());
        let out = transmits(&mut a);
        assert_eq!(out.len(), 1);
        let (to, syn) = out.into_iter().next().expect("one SYN");
        assert_eq!(to, ep(2));
        assert_eq!(
            syn,
            GossipMessage::Syn {
                cluster_name: "ringdb".into(),
                digests: vec![digest(ep(1), 1, 2)]
            }
        );

        b.handle_message(t0 + ms(1), ep(1), syn);
        let (to, ack) = transmits(&mut b).pop().expect("an ACK");
        assert_eq!(to, ep(1));
        let GossipMessage::Ack { digests, states } = &ack else {
            panic!("expected an ACK, got {ack:?}");
        };
        assert_eq!(digests, &vec![digest(ep(1), 1, 0)]);
        assert_eq!(states.len(), 1);
        assert_eq!(states[0].0, ep(2));
        assert_eq!(states[0].1.get(AppStateKey::Dc), Some("dc2"));

        a.handle_message(t0 + ms(2), ep(2), ack);
        assert_eq!(
            events(&mut a),
            vec![
                MembershipEvent::Discovered(ep(2)),
                MembershipEvent::StateChanged {
                    endpoint: ep(2),
                    keys: vec![AppStateKey::Dc]
                },
                MembershipEvent::Up(ep(2)),
            ]
        );
        let (to, ack2) = transmits(&mut a).pop().expect("an ACK2");
        assert_eq!(to, ep(2));
        b.handle_message(t0 + ms(3), ep(1), ack2);
        assert_eq!(events(&mut b)[0], MembershipEvent::Discovered(ep(1)));
        assert!(b.is_alive(&ep(1)));
        assert_eq!(
            b.endpoint_state(&ep(1)),
            a.endpoint_state(&ep(1)),
            "b holds exactly a's state"
        );
        assert_eq!(a.endpoint_state(&ep(2)), b.endpoint_state(&ep(2)));
    }

    #[test]
    fn syn_handling_asks_for_newer_and_sends_newer() {
        let t0 = Instant::now();
        let mut b = gossiper(2, &[], t0);
        b.set_app_state(AppStateKey::Dc, "dc1"); // b is at version 1
        let older = state(5, 7, &[(AppStateKey::Load, "1", 3)]);
        let newer = state(
            5,
            12,
            &[(AppStateKey::Load, "1", 3), (AppStateKey::Rack, "r1", 11)],
        );
        let restarted = state(9, 2, &[(AppStateKey::Status, "NORMAL", 1)]);
        let in_sync = state(1, 4, &[]);
        let old_generation = state(2, 50, &[]);
        let unmentioned = state(1, 1, &[]);
        teach(&mut b, t0, ep(9), ep(10), older);
        teach(&mut b, t0, ep(9), ep(11), newer.clone());
        teach(&mut b, t0, ep(9), ep(12), restarted.clone());
        teach(&mut b, t0, ep(9), ep(13), in_sync);
        teach(&mut b, t0, ep(9), ep(14), old_generation);
        teach(&mut b, t0, ep(9), ep(15), unmentioned.clone());
        transmits(&mut b);

        b.handle_message(
            t0,
            ep(1),
            syn(vec![
                digest(ep(10), 5, 9),  // a is newer → ask from our version
                digest(ep(11), 5, 8),  // b is newer → send what is newer than 8
                digest(ep(12), 8, 40), // b has a newer generation → send all
                digest(ep(13), 1, 4),  // same → nothing
                digest(ep(14), 3, 1),  // a has a newer generation → ask for all
                digest(ep(16), 1, 6),  // unknown to b → ask for all
                digest(ep(2), 7, 99),  // "newer" state about b itself → never asked for
                digest(ep(1), 1, 3),   // the sender itself, unknown to b → ask for all
            ]),
        );
        let out = transmits(&mut b);
        assert_eq!(out.len(), 1);
        let (to, GossipMessage::Ack { digests, states }) = &out[0] else {
            panic!("expected one ACK, got {out:?}");
        };
        assert_eq!(*to, ep(1));
        assert_eq!(
            digests,
            &vec![
                digest(ep(10), 5, 7),
                digest(ep(14), 3, 0),
                digest(ep(16), 1, 0),
                digest(ep(1), 1, 0),
            ]
        );
        let states: BTreeMap<Endpoint, EndpointState> = states.iter().cloned().collect();
        assert_eq!(states.len(), 3, "{states:?}");
        assert_eq!(states[&ep(11)], newer.newer_than(8));
        assert_eq!(states[&ep(11)].app_states.len(), 1);
        assert_eq!(states[&ep(12)], restarted);
        assert_eq!(
            states[&ep(15)],
            unmentioned,
            "unmentioned endpoints are sent whole"
        );
        // b itself was mentioned (with a bogus newer digest): b's state is not sent unasked.
        assert!(!states.contains_key(&ep(2)));
    }

    #[test]
    fn ack_answers_requests_with_deltas_or_whole_states() {
        let t0 = Instant::now();
        let mut a = gossiper(1, &[], t0);
        let s = state(
            4,
            10,
            &[(AppStateKey::Dc, "dc1", 2), (AppStateKey::Load, "9", 8)],
        );
        teach(&mut a, t0, ep(9), ep(5), s.clone());
        transmits(&mut a);
        a.handle_message(
            t0,
            ep(2),
            GossipMessage::Ack {
                digests: vec![
                    digest(ep(5), 4, 5), // same generation: delta
                    digest(ep(5), 4, 0), // duplicate: ignored
                    digest(ep(6), 1, 0), // unknown to a: nothing
                ],
                states: vec![],
            },
        );
        assert_eq!(
            transmits(&mut a),
            vec![(
                ep(2),
                GossipMessage::Ack2 {
                    states: vec![(ep(5), s.newer_than(5))]
                }
            )]
        );
        a.handle_message(
            t0,
            ep(2),
            GossipMessage::Ack {
                digests: vec![digest(ep(5), 3, 5)], // generation changed since: whole state
                states: vec![],
            },
        );
        assert_eq!(
            transmits(&mut a),
            vec![(
                ep(2),
                GossipMessage::Ack2 {
                    states: vec![(ep(5), s)]
                }
            )]
        );
    }

    #[test]
    fn syn_from_another_cluster_is_ignored_and_counted() {
        let t0 = Instant::now();
        let mut b = gossiper(2, &[], t0);
        b.handle_message(
            t0,
            ep(1),
            GossipMessage::Syn {
                cluster_name: "other".into(),
                digests: vec![digest(ep(1), 1, 5)],
            },
        );
        assert!(transmits(&mut b).is_empty());
        assert_eq!(b.rejected_cluster_name(), 1);
        assert!(b.endpoint_state(&ep(1)).is_none());
    }

    #[test]
    fn merge_rules() {
        let t0 = Instant::now();
        let mut g = gossiper(1, &[], t0);
        let e = ep(5);
        teach(
            &mut g,
            t0,
            ep(9),
            e,
            state(
                3,
                5,
                &[(AppStateKey::Dc, "dc1", 2), (AppStateKey::Load, "1", 4)],
            ),
        );
        events(&mut g);

        // Same generation: per component, the higher version wins.
        teach(
            &mut g,
            t0,
            ep(9),
            e,
            state(
                3,
                6,
                &[(AppStateKey::Dc, "stale", 1), (AppStateKey::Load, "2", 6)],
            ),
        );
        let held = g.endpoint_state(&e).expect("known").clone();
        assert_eq!(held.heartbeat.version, 6);
        assert_eq!(held.get(AppStateKey::Dc), Some("dc1"));
        assert_eq!(held.get(AppStateKey::Load), Some("2"));
        assert_eq!(
            events(&mut g),
            vec![
                MembershipEvent::StateChanged {
                    endpoint: e,
                    keys: vec![AppStateKey::Load]
                },
                MembershipEvent::Up(e),
            ]
        );

        // An older heartbeat with a newer application state: only the application state.
        teach(
            &mut g,
            t0,
            ep(9),
            e,
            state(3, 2, &[(AppStateKey::Rack, "r1", 7)]),
        );
        let held = g.endpoint_state(&e).expect("known").clone();
        assert_eq!(held.heartbeat.version, 6);
        assert_eq!(held.get(AppStateKey::Rack), Some("r1"));
        assert_eq!(held.max_version(), 7);

        // A lower generation is ignored.
        teach(
            &mut g,
            t0,
            ep(9),
            e,
            state(2, 100, &[(AppStateKey::Dc, "old", 100)]),
        );
        assert_eq!(g.endpoint_state(&e), Some(&held));
        events(&mut g);

        // A higher generation replaces everything.
        let reborn = state(4, 1, &[(AppStateKey::Dc, "dc9", 1)]);
        teach(&mut g, t0, ep(9), e, reborn.clone());
        assert_eq!(g.endpoint_state(&e), Some(&reborn));
        assert_eq!(
            events(&mut g),
            vec![
                MembershipEvent::Restarted {
                    endpoint: e,
                    generation: 4
                },
                MembershipEvent::StateChanged {
                    endpoint: e,
                    keys: vec![AppStateKey::Dc]
                },
            ],
            "it was already up: no second Up"
        );
    }

    #[test]
    fn state_about_ourselves_is_never_accepted() {
        let t0 = Instant::now();
        let mut g = gossiper(1, &[], t0);
        g.set_app_state(AppStateKey::Dc, "dc1");
        let mine = g.endpoint_state(&ep(1)).expect("local").clone();
        teach(
            &mut g,
            t0,
            ep(9),
            ep(1),
            state(1, 50, &[(AppStateKey::Dc, "evil", 50)]),
        );
        teach(
            &mut g,
            t0,
            ep(9),
            ep(1),
            state(7, 1, &[(AppStateKey::Dc, "evil", 1)]),
        );
        assert_eq!(g.endpoint_state(&ep(1)), Some(&mine));
        assert!(g.view().peers().next().is_none());
    }

    #[test]
    fn set_app_state_bumps_version_only_on_change() {
        let t0 = Instant::now();
        let mut g = gossiper(1, &[], t0);
        g.set_app_state(AppStateKey::Load, "10");
        g.set_app_state(AppStateKey::Load, "10");
        assert_eq!(g.endpoint_state(&ep(1)).expect("local").max_version(), 1);
        g.handle_tick(t0); // heartbeat takes version 2
        g.set_app_state(AppStateKey::Load, "11");
        let s = g.endpoint_state(&ep(1)).expect("local");
        assert_eq!(s.heartbeat.version, 2);
        assert_eq!(s.app_states[&AppStateKey::Load].version, 3);
        assert_eq!(events(&mut g).len(), 2);
    }

    #[test]
    fn liveness_transitions_happen_once() {
        let t0 = Instant::now();
        let mut g = gossiper(1, &[], t0);
        let e = ep(5);
        // Learned through a third party: known, not yet up.
        teach(&mut g, t0, ep(9), e, state(1, 10, &[]));
        assert_eq!(events(&mut g), vec![MembershipEvent::Discovered(e)]);
        assert!(!g.is_alive(&e));
        // The same heartbeat again: still nothing.
        teach(&mut g, t0 + ms(100), ep(8), e, state(1, 10, &[]));
        assert!(events(&mut g).is_empty());
        // A newer heartbeat: up, once.
        let mut now = t0;
        for version in 11..40 {
            now += ms(150);
            teach(&mut g, now, ep(9), e, state(1, version, &[]));
            g.handle_tick(now);
        }
        assert_eq!(events(&mut g), vec![MembershipEvent::Up(e)]);
        // Silence: down, once.
        for _ in 0..100 {
            now += ms(150);
            g.handle_tick(now);
        }
        assert!(g.phi(&e, now).expect("known") > 8.0);
        assert_eq!(events(&mut g), vec![MembershipEvent::Down(e)]);
        // An old heartbeat does not revive it; a newer one does.
        teach(&mut g, now, ep(9), e, state(1, 20, &[]));
        assert!(!g.is_alive(&e));
        teach(&mut g, now, ep(9), e, state(1, 40, &[]));
        g.handle_tick(now);
        assert_eq!(events(&mut g), vec![MembershipEvent::Up(e)]);
        assert!(g.is_alive(&e));
    }

    #[test]
    fn shutdown_marks_down_at_once_and_sticks_until_restart() {
        let t0 = Instant::now();
        let mut g = gossiper(1, &[], t0);
        let e = ep(5);
        teach(
            &mut g,
            t0,
            e,
            e,
            state(3, 10, &[(AppStateKey::Status, "NORMAL", 1)]),
        );
        assert!(g.is_alive(&e));
        events(&mut g);

        // A Shutdown from an earlier incarnation is ignored.
        g.handle_message(t0, e, GossipMessage::Shutdown { generation: 2 });
        assert!(g.is_alive(&e));

        g.handle_message(t0, e, GossipMessage::Shutdown { generation: 3 });
        assert!(!g.is_alive(&e));
        let held = g.endpoint_state(&e).expect("known");
        assert_eq!(held.status(), Some(NodeStatus::Shutdown));
        assert_eq!(held.app_states[&AppStateKey::Status].version, 11);
        assert_eq!(
            events(&mut g),
            vec![
                MembershipEvent::StateChanged {
                    endpoint: e,
                    keys: vec![AppStateKey::Status]
                },
                MembershipEvent::Down(e)
            ]
        );

        // Its last heartbeats, still relayed by others, do not bring it back.
        teach(
            &mut g,
            t0 + ms(10),
            ep(9),
            e,
            state(3, 12, &[(AppStateKey::Status, "NORMAL", 1)]),
        );
        assert!(!g.is_alive(&e));
        assert_eq!(
            g.endpoint_state(&e).expect("known").status(),
            Some(NodeStatus::Shutdown)
        );
        assert!(events(&mut g).is_empty());

        // Its next generation does.
        teach(
            &mut g,
            t0 + ms(5000),
            ep(9),
            e,
            state(4, 1, &[(AppStateKey::Status, "NORMAL", 1)]),
        );
        assert!(g.is_alive(&e));
        assert_eq!(
            events(&mut g),
            vec![
                MembershipEvent::Restarted {
                    endpoint: e,
                    generation: 4
                },
                MembershipEvent::StateChanged {
                    endpoint: e,
                    keys: vec![AppStateKey::Status]
                },
                MembershipEvent::Up(e),
            ]
        );
    }

    #[test]
    fn shutdown_status_learned_through_gossip_marks_down() {
        let t0 = Instant::now();
        let mut g = gossiper(1, &[], t0);
        let e = ep(5);
        teach(
            &mut g,
            t0,
            e,
            e,
            state(3, 10, &[(AppStateKey::Status, "NORMAL", 1)]),
        );
        events(&mut g);
        teach(
            &mut g,
            t0,
            ep(9),
            e,
            state(3, 10, &[(AppStateKey::Status, "SHUTDOWN", 11)]),
        );
        assert!(!g.is_alive(&e));
        assert_eq!(
            events(&mut g),
            vec![
                MembershipEvent::StateChanged {
                    endpoint: e,
                    keys: vec![AppStateKey::Status]
                },
                MembershipEvent::Down(e)
            ]
        );
    }

    #[test]
    fn shutdown_of_a_generation_not_yet_seen_applies_when_it_arrives() {
        let t0 = Instant::now();
        let mut g = gossiper(1, &[], t0);
        let e = ep(5);
        teach(&mut g, t0, e, e, state(3, 10, &[]));
        g.handle_message(t0, e, GossipMessage::Shutdown { generation: 4 });
        assert!(!g.is_alive(&e));
        teach(
            &mut g,
            t0,
            ep(9),
            e,
            state(4, 2, &[(AppStateKey::Status, "NORMAL", 1)]),
        );
        assert!(!g.is_alive(&e));
        assert_eq!(
            g.endpoint_state(&e).expect("known").status(),
            Some(NodeStatus::Shutdown)
        );
    }

    #[test]
    fn a_node_that_left_stays_left_and_down() {
        let t0 = Instant::now();
        let mut g = gossiper(1, &[], t0);
        let e = ep(5);
        teach(
            &mut g,
            t0,
            e,
            e,
            state(3, 10, &[(AppStateKey::Status, "NORMAL", 1)]),
        );
        events(&mut g);
        teach(
            &mut g,
            t0,
            e,
            e,
            state(3, 12, &[(AppStateKey::Status, "LEFT", 11)]),
        );
        assert!(!g.is_alive(&e), "LEFT is down");
        // Its goodbye as it stops does not make it SHUTDOWN (a ring member expected back).
        g.handle_message(t0, e, GossipMessage::Shutdown { generation: 3 });
        assert_eq!(
            g.endpoint_state(&e).expect("known").status(),
            Some(NodeStatus::Left)
        );

        // The leaving node itself keeps LEFT when it announces its shutdown.
        let mut leaving = gossiper(2, &[], t0);
        leaving.set_app_state(AppStateKey::Status, "LEFT");
        leaving.announce_shutdown(t0);
        assert_eq!(
            leaving.endpoint_state(&ep(2)).expect("local").status(),
            Some(NodeStatus::Left)
        );
    }

    #[test]
    fn a_status_set_for_a_dead_peer_spreads_and_yields_to_its_restart() {
        let t0 = Instant::now();
        let dead = ep(5);
        let mut announcer = gossiper(1, &[], t0);
        let mut other = gossiper(2, &[], t0);
        let old = state(3, 10, &[(AppStateKey::Status, "NORMAL", 4)]);
        teach(&mut announcer, t0, ep(9), dead, old.clone());
        teach(&mut other, t0, ep(9), dead, old);
        assert!(
            !announcer.is_alive(&dead),
            "only heard of through a third party"
        );

        assert!(announcer.set_peer_status(ep(1), NodeStatus::Left).is_err());
        assert!(announcer.set_peer_status(ep(7), NodeStatus::Left).is_err());
        announcer
            .set_peer_status(dead, NodeStatus::Leaving)
            .expect("dead peer");
        announcer
            .set_peer_status(dead, NodeStatus::Left)
            .expect("dead peer");
        assert!(events(&mut announcer).iter().any(|e| matches!(
            e,
            MembershipEvent::StateChanged { endpoint, .. } if *endpoint == dead
        )));
        let held = announcer.endpoint_state(&dead).expect("known").clone();
        assert_eq!(held.status(), Some(NodeStatus::Left));
        assert!(held.max_version() > 10, "above everything held of it");

        // It reaches the others as gossip does, and wins over what they hold.
        teach(&mut other, t0, ep(1), dead, held.clone());
        assert_eq!(
            other.endpoint_state(&dead).expect("known").status(),
            Some(NodeStatus::Left)
        );
        // An older copy relayed late changes nothing.
        teach(
            &mut other,
            t0,
            ep(9),
            dead,
            state(3, 10, &[(AppStateKey::Status, "NORMAL", 4)]),
        );
        assert_eq!(
            other.endpoint_state(&dead).expect("known").status(),
            Some(NodeStatus::Left)
        );
        // Its next incarnation speaks for itself again.
        teach(
            &mut other,
            t0,
            dead,
            dead,
            state(4, 1, &[(AppStateKey::Status, "NORMAL", 1)]),
        );
        assert_eq!(
            other.endpoint_state(&dead).expect("known").status(),
            Some(NodeStatus::Normal)
        );
        assert!(other.is_alive(&dead));
        assert!(
            other.set_peer_status(dead, NodeStatus::Left).is_err(),
            "alive: refused"
        );
    }

    #[test]
    fn announce_shutdown_tells_live_peers_then_stops() {
        let t0 = Instant::now();
        let mut g = gossiper(1, &[], t0);
        teach(&mut g, t0, ep(5), ep(5), state(1, 1, &[]));
        teach(&mut g, t0, ep(6), ep(6), state(1, 1, &[]));
        teach(&mut g, t0, ep(6), ep(7), state(1, 1, &[])); // known, never seen alive
        transmits(&mut g);
        g.announce_shutdown(t0);
        assert_eq!(
            g.endpoint_state(&ep(1)).expect("local").status(),
            Some(NodeStatus::Shutdown)
        );
        assert_eq!(
            transmits(&mut g),
            vec![
                (ep(5), GossipMessage::Shutdown { generation: 1 }),
                (ep(6), GossipMessage::Shutdown { generation: 1 }),
            ]
        );
        g.handle_tick(t0 + ms(1000));
        g.handle_message(t0, ep(5), syn(vec![digest(ep(5), 1, 9)]));
        assert!(transmits(&mut g).is_empty());
        assert_eq!(g.rounds(), 0);
    }

    #[test]
    fn a_node_without_live_peers_always_tries_a_seed_and_never_itself() {
        let t0 = Instant::now();
        let mut g = gossiper(1, &[1, 2, 3], t0);
        let mut now = t0;
        for _ in 0..100 {
            g.handle_tick(now);
            let out = transmits(&mut g);
            assert_eq!(out.len(), 1, "exactly one seed per round: {out:?}");
            assert!(matches!(out[0].0, e if e == ep(2) || e == ep(3)));
            now = g.next_timeout();
        }
        assert_eq!(g.rounds(), 100);
        assert_eq!(
            g.endpoint_state(&ep(1)).expect("local").heartbeat.version,
            100
        );
    }

    #[test]
    fn down_peers_are_probed_less_often_than_live_ones() {
        let t0 = Instant::now();
        let mut g = gossiper(1, &[], t0);
        for i in 10..20 {
            teach(&mut g, t0, ep(i), ep(i), state(1, 1, &[])); // alive
        }
        teach(&mut g, t0, ep(9), ep(30), state(1, 1, &[])); // never seen alive
        let mut to_live = 0;
        let mut to_down = 0;
        let mut now = t0;
        for _ in 0..1000 {
            g.handle_tick(now);
            for (to, _) in transmits(&mut g) {
                if to == ep(30) {
                    to_down += 1;
                } else {
                    to_live += 1;
                }
            }
            now += ms(1); // early ticks: no round due, but the detector must not convict
            now = now.max(g.next_timeout());
            // Keep the live peers alive.
            for i in 10..20 {
                let version = g.endpoint_state(&ep(i)).expect("known").heartbeat.version + 1;
                teach(&mut g, now, ep(i), ep(i), state(1, version, &[]));
            }
        }
        assert_eq!(to_live, 1000, "one live peer every round");
        // Expected 1000 / 11 ≈ 91.
        assert!(
            (50..150).contains(&to_down),
            "{to_down} probes of the down peer"
        );
    }

    #[test]
    fn outputs_are_bounded() {
        let t0 = Instant::now();
        let config = GossipConfig {
            max_states_per_message: 3,
            max_digests_per_syn: 4,
            max_pending_events: 5,
            seeds: vec![ep(200)],
            ..GossipConfig::default()
        };
        let mut g = Gossiper::new(ep(1), 1, config, 7, t0);
        for i in 10..30 {
            teach(&mut g, t0, ep(9), ep(i), state(1, 1, &[]));
        }
        // 20 Discovered events (and more) through a queue of 5: the oldest were dropped.
        assert_eq!(events(&mut g).len(), 5);
        assert!(g.dropped_events() >= 15);

        // An ACK to a node that knows nothing carries at most 3 states.
        g.handle_message(t0, ep(2), syn(vec![]));
        let out = transmits(&mut g);
        let GossipMessage::Ack { states, .. } = &out[0].1 else {
            panic!("expected an ACK, got {out:?}");
        };
        assert_eq!(states.len(), 3);

        // A SYN carries at most 4 digests, ours always among them.
        for _ in 0..20 {
            g.handle_tick(g.next_timeout());
            for (_, msg) in transmits(&mut g) {
                let GossipMessage::Syn { digests, .. } = msg else {
                    panic!("expected a SYN");
                };
                assert_eq!(digests.len(), 4);
                assert!(digests.iter().any(|d| d.endpoint == ep(1)));
            }
        }

        // Nobody drains the transmit queue: it stays bounded.
        for _ in 0..10_000 {
            g.handle_message(t0, ep(2), syn(vec![]));
        }
        assert!(g.transmits.len() <= 4 * (20 + 1 + 1) + 16);
        assert!(g.dropped_transmits() > 0);
    }

    #[test]
    fn view_includes_the_local_node_alive() {
        let t0 = Instant::now();
        let mut g = gossiper(1, &[], t0);
        teach(&mut g, t0, ep(9), ep(5), state(1, 1, &[]));
        let view = g.view();
        assert_eq!(view.local, ep(1));
        assert!(view.endpoints[&ep(1)].alive);
        assert!(!view.endpoints[&ep(5)].alive);
        assert_eq!(view.peers().count(), 1);
    }

    #[test]
    fn a_node_back_at_a_new_address_replaces_its_old_one_in_the_view() {
        let t0 = Instant::now();
        let mut g = gossiper(1, &[], t0);
        g.set_app_state(AppStateKey::HostId, "host-1");
        let host = |h: &'static str| [(AppStateKey::HostId, h, 1)];
        teach(&mut g, t0, ep(9), ep(5), state(3, 1, &host("host-5")));
        teach(&mut g, t0, ep(9), ep(6), state(1, 1, &host("host-6")));
        // host-5 comes back at ep(7) with a newer generation: ep(5) leaves the view.
        teach(&mut g, t0, ep(9), ep(7), state(4, 1, &host("host-5")));
        let view = g.view();
        assert!(view.endpoints.contains_key(&ep(7)));
        assert!(
            !view.endpoints.contains_key(&ep(5)),
            "old address still in the view"
        );
        assert!(view.endpoints.contains_key(&ep(6)));
        // An older incarnation relayed later changes nothing, in either order of arrival.
        teach(&mut g, t0, ep(9), ep(8), state(2, 1, &host("host-5")));
        let view = g.view();
        assert!(view.endpoints.contains_key(&ep(7)));
        assert!(!view.endpoints.contains_key(&ep(8)));
        // Someone else's stale state with this node's own host id never hides this node.
        teach(&mut g, t0, ep(9), ep(4), state(9, 1, &host("host-1")));
        let view = g.view();
        assert!(view.endpoints.contains_key(&ep(1)));
        assert!(!view.endpoints.contains_key(&ep(4)));
        assert_eq!(view.peers().count(), 2);
    }

    #[test]
    fn a_local_pause_does_not_convict_everyone() {
        let t0 = Instant::now();
        let mut g = gossiper(1, &[], t0);
        let mut now = t0;
        for version in 1..30 {
            teach(&mut g, now, ep(5), ep(5), state(1, version, &[]));
            teach(&mut g, now, ep(6), ep(6), state(1, version, &[]));
            g.handle_tick(now);
            now += ms(150);
        }
        events(&mut g);
        now += ms(10_000); // this process was stopped for ten seconds
        g.handle_tick(now);
        assert_eq!(g.local_pauses(), 1);
        // What piled up while we were stopped is read: ep(5) is fine, ep(6) has died.
        teach(&mut g, now + ms(5), ep(5), ep(5), state(1, 100, &[]));
        let mut later = now;
        while later < now + ms(1900) {
            later += ms(150);
            g.handle_tick(later);
            if g.is_alive(&ep(6)) {
                assert!(events(&mut g).is_empty());
            }
            teach(
                &mut g,
                later,
                ep(5),
                ep(5),
                state(1, 100 + later.duration_since(now).as_millis() as u64, &[]),
            );
        }
        assert!(g.is_alive(&ep(6)), "convicted during the grace period");
        while later < now + ms(2500) {
            later += ms(150);
            g.handle_tick(later);
            teach(
                &mut g,
                later,
                ep(5),
                ep(5),
                state(1, 100 + later.duration_since(now).as_millis() as u64, &[]),
            );
        }
        assert!(g.is_alive(&ep(5)));
        assert!(!g.is_alive(&ep(6)));
        assert_eq!(events(&mut g), vec![MembershipEvent::Down(ep(6))]);
    }
}
