//! Choosing a new node's tokens from the ring it sees in gossip, one joining node at a time.
//!
//! A node that has no tokens yet (first start, empty data directory) must pick `num_tokens` of
//! them. Random tokens leave some nodes owning far more than others; [`allocate_tokens`] instead
//! places them so that *replicated* ownership stays even for a replication factor in the node's
//! datacenter (Cassandra's `allocate_tokens_for_local_replication_factor`). That needs the ring as
//! it stands, which the node only learns through gossip — and it needs the ring to stand still:
//! allocation beyond the first node is a deterministic function of the ring, so two nodes that
//! allocate against the same ring (both started by `ringdb cluster create -n 3 --start`, say)
//! would choose the same places, and a node that allocates without seeing a token chosen a moment
//! ago balances against the wrong ring. So joins are serialized through gossip.
//!
//! ## The protocol
//!
//! While it chooses, the node gossips `STATUS = BOOT` and no `TOKENS`. Its start-up calls
//! [`choose_tokens`], which re-evaluates the pure function [`decide`] on every new cluster view
//! and on a timer until it says [`JoinDecision::Allocate`]. `decide` waits while any of these
//! holds, in this order:
//!
//! 1. **No contact** ([`WaitReason::NoContact`]): the node has seeds other than itself and no
//!    peer has been seen alive yet, so it knows nothing of the ring.
//! 2. **Settling** ([`WaitReason::Settling`]): it has been in contact for less than
//!    [`JoinSettings::settle`]. Counted from first contact, not from start, so that a node whose
//!    seeds come up late still spends that long listening before it decides.
//! 3. **Earlier joiners** ([`WaitReason::EarlierJoiners`]): a peer that is *alive*, in BOOT
//!    without tokens, and ranks before this node is still choosing. It will publish its tokens
//!    and turn NORMAL; the next view shows them and this node balances against them.
//!
//! A node with no seeds other than itself (a single node, or the first node by configuration)
//! skips 1 and 2 and decides at once: a single node starts instantly. Once
//! [`JoinSettings::max_wait`] has passed since [`choose_tokens`] began, the node stops waiting
//! whatever the reason and allocates against what it sees ([`JoinDecision::Allocate`] then names
//! the reason it waited out, and the driver logs it).
//!
//! ### The order
//!
//! Joiners rank by **(gossip generation, internode address)**, lowest first. Both come from
//! gossip itself, so every node computes the same rank for every endpoint: for two joiners that
//! see each other, exactly one waits, and waits never form a cycle. The generation is the start
//! time in seconds (`membership::next_generation`), so the order is first come, first served: a
//! node that has been waiting is never overtaken by one that starts later, which a random key such
//! as the host id would allow over and over. Nodes started in the same second — `cluster create`
//! — are ordered by address, which is unique.
//!
//! ### The settle time
//!
//! [`JoinSettings::new`] takes 16 gossip rounds (2.4 s at the default 150 ms), and never less than
//! one second. It has to cover, after first contact: our state reaching the seed and from it the
//! other joiners (one round to the seed, then a few more rounds of random exchanges to spread);
//! a peer learned through a third party turning alive in our view (gossip marks it up only on its
//! next relayed heartbeat, one or two rounds later); and the tokens of a node that decided
//! without seeing us reaching us before we decide (it publishes them at once; a few rounds).
//! About eight rounds in all, so sixteen leave a factor of two for random peer choice and loss.
//! The floor is for transport handshakes, which do not shrink with the gossip interval. The
//! simulation test below agrees: with 3 to 12 nodes started within 300 ms of each other over a
//! lossy network, a settle of 2 rounds lets two nodes decide against the same ring; 7 rounds
//! (1 s) and 16 rounds showed no such race in 200 runs each.
//!
//! Why this is enough even for joiners that do not see each other when they decide: a joiner
//! ignores BOOT peers that are not alive (a crashed joiner must not block anyone), and it can
//! only miss a peer that reached the seeds shortly before or after it decided. Such a peer has
//! itself been in contact for a short time only, so it still has most of its settle time ahead:
//! the tokens just chosen reach it before it decides, and it balances against them.
//!
//! ### What is on the ring
//!
//! Every other endpoint whose `TOKENS` are non-empty and whose status is not LEFT: NORMAL,
//! JOINING and LEAVING as Cassandra counts them, and also SHUTDOWN (a stopped node keeps its
//! tokens and comes back), BOOT with tokens (a joiner that has chosen and is about to turn
//! NORMAL) and any unknown status — a token claimed by anyone must never be chosen again. An
//! endpoint without a parseable host id gets a stand-in id derived from its address, one without
//! a datacenter or rack the name `unknown`: its tokens are still avoided.
//!
//! ### Two nodes that allocate at once anyway
//!
//! It can still happen (views split by a partition, [`JoinSettings::max_wait`] running out on
//! two nodes together, seeds that never answer). Two such nodes must never claim the same
//! token, which would leave a ring no node can build. On an empty ring, [`allocate_tokens`]
//! spaces the tokens evenly from an offset drawn from its seed, and the seed is derived from the
//! host id. Beyond that, every chosen token is moved forward by a shift in `[1, 2^40]` derived
//! from the host id: at most 6·10⁻⁸ of the ring, far below any range a balanced ring has, so
//! balance does not change measurably, but identical choices become disjoint unless the two
//! host ids hash to the same 40 bits. Balance between such twins is poor — the point of the
//! protocol is that they do not happen.
//!
//! ## Wiring
//!
//! [`choose_tokens`] does not touch gossip state or storage. Start-up, for a node with no
//! persisted tokens: start membership publishing `STATUS = BOOT`, host id, dc, rack (and no
//! `TOKENS`); call [`choose_tokens`]; persist the tokens; then publish `TOKENS` and *after* it
//! `STATUS = NORMAL` (peers that see BOOT with tokens already count them).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringdb_gossip::membership::Membership;
use ringdb_gossip::state::{
    AppStateKey, ClusterView, Endpoint, EndpointState, Generation, NodeStatus,
};
use ringdb_ring::allocation::{allocate_tokens, random_tokens, JoiningNode, MAX_TOKENS_PER_NODE};
use ringdb_ring::{HostId, NetworkTopologyStrategy, Replication, Token, TokenRing, Topology};

/// The replication factor tokens are balanced for when the configuration says nothing
/// (`allocate_tokens_for_local_replication_factor`, Cassandra's default too).
pub const DEFAULT_REPLICATION_FACTOR: usize = 3;
/// Gossip rounds a node stays in contact with the cluster before deciding (see the module
/// documentation for why sixteen).
pub const SETTLE_ROUNDS: u32 = 16;
/// The settle time is never shorter than this: transport handshakes do not shrink with the
/// gossip interval.
pub const MIN_SETTLE: Duration = Duration::from_secs(1);
/// Gossip rounds after which a node stops waiting, whatever for.
pub const MAX_WAIT_ROUNDS: u32 = 400;
/// The overall wait is never shorter than this (a dozen joiners in a row take ~10 s).
pub const MIN_MAX_WAIT: Duration = Duration::from_secs(60);
/// Chosen tokens are shifted by at most `2^TWIN_GUARD_BITS` (see "Two nodes that allocate at
/// once anyway" in the module documentation).
const TWIN_GUARD_BITS: u32 = 40;
/// Datacenter and rack of a ring member that did not publish them.
const UNKNOWN: &str = "unknown";

/// The node that is choosing its tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinCandidate {
    /// Its permanent host id (also what seeds its choices, see the module documentation).
    pub host_id: uuid::Uuid,
    /// Its datacenter: tokens are balanced among the nodes of this datacenter.
    pub dc: String,
    /// Its rack.
    pub rack: String,
    /// Its seeds, as given to gossip. Empty, or only this node's own address: the node is the
    /// first of its cluster by configuration and decides at once.
    pub seeds: Vec<Endpoint>,
}

/// How a node chooses its tokens. Defaults derived in one place: [`JoinSettings::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinSettings {
    /// How many tokens to choose (config `num_tokens`).
    pub num_tokens: usize,
    /// The replication factor, in the node's datacenter, that tokens balance ownership for
    /// (config `allocate_tokens_for_local_replication_factor`). 0 is taken as 1.
    pub replication_factor: usize,
    /// How long a node with seeds stays in contact with the cluster before deciding.
    pub settle: Duration,
    /// How long [`choose_tokens`] waits at most, for whatever reason, before allocating against
    /// the ring it sees.
    pub max_wait: Duration,
    /// How often [`choose_tokens`] re-evaluates when no new view arrives.
    pub recheck: Duration,
}

impl JoinSettings {
    /// Settings for `num_tokens` tokens balanced for `replication_factor`, with times derived
    /// from the gossip interval: [`SETTLE_ROUNDS`] rounds of settle (at least [`MIN_SETTLE`]),
    /// [`MAX_WAIT_ROUNDS`] rounds at most (at least [`MIN_MAX_WAIT`]), one round between
    /// re-evaluations.
    pub fn new(
        num_tokens: usize,
        replication_factor: usize,
        gossip_interval: Duration,
    ) -> JoinSettings {
        JoinSettings {
            num_tokens,
            replication_factor,
            settle: gossip_interval
                .saturating_mul(SETTLE_ROUNDS)
                .max(MIN_SETTLE),
            max_wait: gossip_interval
                .saturating_mul(MAX_WAIT_ROUNDS)
                .max(MIN_MAX_WAIT),
            recheck: gossip_interval.max(Duration::from_millis(10)),
        }
    }
}

/// The times [`decide`] needs, measured by the caller ([`JoinClock`] does it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinProgress {
    /// Time since the node began choosing.
    pub waited: Duration,
    /// Time since a peer was first seen alive; `None` before that.
    pub in_contact_for: Option<Duration>,
}

/// Measures [`JoinProgress`] from the instants and views it is shown: sans-I/O, so the driver
/// and simulations share it.
#[derive(Debug, Clone)]
pub struct JoinClock {
    started: Instant,
    first_contact: Option<Instant>,
}

impl JoinClock {
    /// A clock for a node that begins choosing at `now`.
    pub fn new(now: Instant) -> JoinClock {
        JoinClock {
            started: now,
            first_contact: None,
        }
    }

    /// The progress at `now`, given the latest view: contact begins the first time any peer is
    /// alive in a view.
    pub fn observe(&mut self, now: Instant, view: &ClusterView) -> JoinProgress {
        if self.first_contact.is_none() && view.peers().any(|(_, p)| p.alive) {
            self.first_contact = Some(now);
        }
        JoinProgress {
            waited: now.saturating_duration_since(self.started),
            in_contact_for: self.first_contact.map(|t| now.saturating_duration_since(t)),
        }
    }
}

/// Why a node does not choose its tokens yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitReason {
    /// It has seeds and no peer has been seen alive yet.
    NoContact {
        /// The seeds it is trying.
        seeds: Vec<Endpoint>,
    },
    /// It has been in contact for less than the settle time.
    Settling {
        /// How much of the settle time is left.
        remaining: Duration,
    },
    /// Live peers ranking before it are still choosing their tokens.
    EarlierJoiners {
        /// Those peers, in rank order.
        peers: Vec<Endpoint>,
    },
}

impl WaitReason {
    /// Whether `other` is the same reason, durations aside: what the driver logs once.
    fn same_kind(&self, other: &WaitReason) -> bool {
        match (self, other) {
            (WaitReason::Settling { .. }, WaitReason::Settling { .. }) => true,
            _ => self == other,
        }
    }
}

impl fmt::Display for WaitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitReason::NoContact { seeds } => {
                write!(f, "no peer has answered yet (seeds: ")?;
                write_endpoints(f, seeds)?;
                write!(f, ")")
            }
            WaitReason::Settling { remaining } => write!(
                f,
                "listening to gossip for {remaining:?} more before choosing"
            ),
            WaitReason::EarlierJoiners { peers } => {
                write!(f, "nodes ahead of this one are still choosing tokens: ")?;
                write_endpoints(f, peers)
            }
        }
    }
}

fn write_endpoints(f: &mut fmt::Formatter<'_>, endpoints: &[Endpoint]) -> fmt::Result {
    for (i, e) in endpoints.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{e}")?;
    }
    Ok(())
}

/// How the tokens were chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllocationMethod {
    /// By [`allocate_tokens`], balancing replicated ownership in the node's datacenter.
    Balanced {
        /// The replication factor balanced for.
        replication_factor: usize,
    },
    /// Random tokens no one owns: balanced allocation failed.
    Random {
        /// Why balanced allocation failed.
        reason: String,
    },
}

/// What a joining node should do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinDecision {
    /// Not yet: look again when the view changes or a little later.
    Wait {
        /// Why.
        reason: WaitReason,
    },
    /// Use these tokens.
    Allocate {
        /// The tokens, sorted, distinct, owned by no one on the ring seen.
        tokens: Vec<i64>,
        /// How they were chosen.
        method: AllocationMethod,
        /// How many hosts with tokens the ring seen had.
        ring_hosts: usize,
        /// The reason to wait that [`JoinSettings::max_wait`] cut short, if any.
        waited_out: Option<WaitReason>,
    },
}

/// Decides whether the local node of `view` chooses its tokens now, and which (see the module
/// documentation for the rules). Pure: the same inputs give the same answer.
pub fn decide(
    view: &ClusterView,
    candidate: &JoinCandidate,
    progress: JoinProgress,
    settings: &JoinSettings,
) -> JoinDecision {
    let reason = wait_reason(view, candidate, progress, settings);
    match reason {
        Some(reason) if progress.waited < settings.max_wait => JoinDecision::Wait { reason },
        waited_out => {
            let (tokens, method, ring_hosts) = allocate(view, candidate, settings);
            JoinDecision::Allocate {
                tokens,
                method,
                ring_hosts,
                waited_out,
            }
        }
    }
}

fn wait_reason(
    view: &ClusterView,
    candidate: &JoinCandidate,
    progress: JoinProgress,
    settings: &JoinSettings,
) -> Option<WaitReason> {
    let seeds: Vec<Endpoint> = candidate
        .seeds
        .iter()
        .copied()
        .filter(|s| *s != view.local)
        .collect();
    if !seeds.is_empty() {
        match progress.in_contact_for {
            None => return Some(WaitReason::NoContact { seeds }),
            Some(t) if t < settings.settle => {
                return Some(WaitReason::Settling {
                    remaining: settings.settle - t,
                })
            }
            Some(_) => {}
        }
    }
    let local_generation = view
        .endpoints
        .get(&view.local)
        .map_or(0, |e| e.state.heartbeat.generation);
    let local_rank = (local_generation, view.local);
    let mut earlier: Vec<(Generation, Endpoint)> = view
        .peers()
        .filter(|(_, p)| p.alive && is_choosing(&p.state))
        .map(|(e, p)| (p.state.heartbeat.generation, *e))
        .filter(|rank| *rank < local_rank)
        .collect();
    earlier.sort_unstable();
    if earlier.is_empty() {
        None
    } else {
        Some(WaitReason::EarlierJoiners {
            peers: earlier.into_iter().map(|(_, e)| e).collect(),
        })
    }
}

/// In BOOT and without tokens: still choosing.
fn is_choosing(state: &EndpointState) -> bool {
    state.status() == Some(NodeStatus::Boot) && state.tokens().is_empty()
}

/// The tokens for the candidate against the ring of `view`, how they were chosen, and how many
/// hosts that ring had.
fn allocate(
    view: &ClusterView,
    candidate: &JoinCandidate,
    settings: &JoinSettings,
) -> (Vec<i64>, AllocationMethod, usize) {
    let ring = ring_of(view);
    let ring_hosts = ring.hosts().count();
    let host_id = HostId::from_u128(candidate.host_id.as_u128());
    let seed = seed_of(host_id);
    let node = JoiningNode {
        host_id,
        dc: candidate.dc.clone(),
        rack: candidate.rack.clone(),
    };
    let rf = settings.replication_factor.max(1);
    let replication =
        Replication::NetworkTopology(NetworkTopologyStrategy::single_dc(candidate.dc.clone(), rf));
    match allocate_tokens(&ring, &node, settings.num_tokens, &replication, seed) {
        Ok(tokens) => (
            guard_against_twins(&ring, tokens, seed),
            AllocationMethod::Balanced {
                replication_factor: rf,
            },
            ring_hosts,
        ),
        Err(e) => {
            let count = settings.num_tokens.min(MAX_TOKENS_PER_NODE);
            // Only `TooManyTokens` can fail, and the count was just capped.
            let tokens = random_tokens(&ring, count, seed).unwrap_or_default();
            (
                tokens.into_iter().map(|t| t.0).collect(),
                AllocationMethod::Random {
                    reason: e.to_string(),
                },
                ring_hosts,
            )
        }
    }
}

/// The ring the local node of `view` joins: see "What is on the ring" in the module
/// documentation.
fn ring_of(view: &ClusterView) -> TokenRing {
    let mut members: BTreeMap<HostId, ringdb_ring::Endpoint> = BTreeMap::new();
    for (endpoint, ev) in view.peers() {
        let state = &ev.state;
        if state.status() == Some(NodeStatus::Left) {
            continue;
        }
        let tokens = state.tokens();
        if tokens.is_empty() {
            continue;
        }
        let host_id = state
            .get(AppStateKey::HostId)
            .and_then(|h| HostId::from_str(h).ok())
            .unwrap_or_else(|| stand_in_host_id(*endpoint));
        // Two addresses with one host id (a node that moved): keep every token claimed.
        let member = members
            .entry(host_id)
            .or_insert_with(|| ringdb_ring::Endpoint {
                host_id,
                addr: endpoint.0,
                dc: state.get(AppStateKey::Dc).unwrap_or(UNKNOWN).to_string(),
                rack: state.get(AppStateKey::Rack).unwrap_or(UNKNOWN).to_string(),
                tokens: Vec::new(),
            });
        member.tokens.extend(tokens.into_iter().map(Token));
    }
    let mut topology = Topology::new();
    for (_, mut member) in members {
        // A token two hosts claim stays with the first; it is avoided either way.
        member
            .tokens
            .retain(|t| topology.owner_of_token(*t).is_none());
        if member.tokens.is_empty() {
            continue;
        }
        if let Err(e) = topology.insert(member) {
            // Unreachable: the tokens other hosts own were just removed.
            tracing::debug!(error = %e, "leaving a conflicting endpoint off the joining ring");
        }
    }
    TokenRing::new(topology)
}

/// A host id for a ring member that did not publish a valid one, derived from its address
/// (the top bits set, so that it does not look like a random v4 uuid of a real node).
fn stand_in_host_id(endpoint: Endpoint) -> HostId {
    let ip = match endpoint.0.ip() {
        std::net::IpAddr::V4(v4) => u128::from(u32::from(v4)),
        std::net::IpAddr::V6(v6) => u128::from(v6),
    };
    let mixed = ip.rotate_left(16) ^ u128::from(endpoint.0.port());
    HostId::from_u128(mixed | (0xffff_u128 << 112))
}

/// The seed of the node's allocation: a hash of its host id.
fn seed_of(host: HostId) -> u64 {
    let v = host.as_u128();
    mix64((v as u64) ^ mix64((v >> 64) as u64))
}

/// splitmix64's finalizer: a bijection of `u64` that spreads every input bit.
fn mix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Moves every token forward by the node's own shift in `[1, 2^TWIN_GUARD_BITS]`, keeping them
/// free (see the module documentation), sorted.
fn guard_against_twins(ring: &TokenRing, tokens: Vec<Token>, seed: u64) -> Vec<i64> {
    let shift = 1 + (mix64(seed) >> (64 - TWIN_GUARD_BITS));
    let mut out: Vec<Token> = Vec::with_capacity(tokens.len());
    for token in tokens {
        let mut t = token.wrapping_add(shift);
        while t == Token::MIN || ring.topology().owner_of_token(t).is_some() || out.contains(&t) {
            t = t.wrapping_add(1);
        }
        out.push(t);
    }
    out.sort_unstable();
    out.into_iter().map(|t| t.0).collect()
}

/// Chooses this node's tokens: evaluates [`decide`] on every new view of `membership` and every
/// [`JoinSettings::recheck`] until it allocates (at the latest after [`JoinSettings::max_wait`]),
/// logging why it waits and what it chose. Call it after membership started with
/// `STATUS = BOOT` and no `TOKENS`; it reads gossip and changes nothing. Allocation runs on the
/// blocking pool (it takes milliseconds for 16 tokens, about a second for 256 on a large ring).
pub async fn choose_tokens(
    membership: &Membership,
    candidate: JoinCandidate,
    settings: JoinSettings,
) -> Vec<i64> {
    let candidate = Arc::new(candidate);
    let settings = Arc::new(settings);
    let mut clock = JoinClock::new(Instant::now());
    let mut views = membership.watch();
    let mut views_open = true;
    let mut logged: Option<WaitReason> = None;
    tracing::info!(
        num_tokens = settings.num_tokens,
        replication_factor = settings.replication_factor,
        settle = ?settings.settle,
        "choosing tokens"
    );
    loop {
        let view = views.borrow_and_update().clone();
        let mut progress = clock.observe(Instant::now(), &view);
        if !views_open {
            // Gossip stopped: nothing more will be learned.
            progress.waited = progress.waited.max(settings.max_wait);
        }
        let decision = {
            let inputs = (view.clone(), candidate.clone(), settings.clone());
            let task = tokio::task::spawn_blocking(move || {
                let (view, candidate, settings) = inputs;
                decide(&view, &candidate, progress, &settings)
            });
            match task.await {
                Ok(decision) => decision,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                // The runtime is shutting down: decide here.
                Err(_) => decide(&view, &candidate, progress, &settings),
            }
        };
        match decision {
            JoinDecision::Allocate {
                tokens,
                method,
                ring_hosts,
                waited_out,
            } => {
                if let Some(reason) = waited_out {
                    tracing::warn!(
                        waited = ?progress.waited,
                        %reason,
                        "stopped waiting to choose tokens"
                    );
                }
                match method {
                    AllocationMethod::Balanced { replication_factor } => tracing::info!(
                        tokens = tokens.len(),
                        ring_hosts,
                        replication_factor,
                        waited = ?progress.waited,
                        "chose balanced tokens"
                    ),
                    AllocationMethod::Random { reason } => tracing::warn!(
                        tokens = tokens.len(),
                        ring_hosts,
                        %reason,
                        "balanced allocation failed; chose random tokens"
                    ),
                }
                return tokens;
            }
            JoinDecision::Wait { reason } => {
                if !logged.as_ref().is_some_and(|l| l.same_kind(&reason)) {
                    tracing::info!(%reason, "waiting to choose tokens");
                    logged = Some(reason);
                }
            }
        }
        if views_open {
            tokio::select! {
                changed = views.changed() => views_open = changed.is_ok(),
                _ = tokio::time::sleep(settings.recheck) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringdb_gossip::protocol::{GossipConfig, GossipMessage, Gossiper};
    use ringdb_gossip::state::{encode_tokens, EndpointView, VersionedValue};
    use ringdb_ring::ReplicaMap;
    use std::collections::BTreeSet;
    use std::net::SocketAddr;

    const GENERATION: Generation = 1_700_000_000;
    const NUM_TOKENS: usize = 16;
    const MAX_RATIO: f64 = 1.25;

    fn ep(i: usize) -> Endpoint {
        Endpoint(SocketAddr::from(([127, 0, 0, i as u8], 7000)))
    }

    fn host(i: usize) -> uuid::Uuid {
        uuid::Uuid::from_u128(0x5eed_0000_0000_0000_0000_0000_0000_0000 + i as u128 * 7919)
    }

    fn settings() -> JoinSettings {
        JoinSettings::new(NUM_TOKENS, 3, Duration::from_millis(150))
    }

    fn candidate(i: usize, rack: &str, seeds: &[usize]) -> JoinCandidate {
        JoinCandidate {
            host_id: host(i),
            dc: "dc1".into(),
            rack: rack.into(),
            seeds: seeds.iter().map(|&s| ep(s)).collect(),
        }
    }

    /// The state node `i` gossips: BOOT without tokens, or the given status with tokens.
    fn state(
        i: usize,
        generation: Generation,
        status: NodeStatus,
        tokens: &[i64],
    ) -> EndpointState {
        state_of(
            generation,
            &[
                (AppStateKey::Status, status.as_str().to_string()),
                (AppStateKey::HostId, host(i).to_string()),
                (AppStateKey::Dc, "dc1".into()),
                (AppStateKey::Rack, "rack1".into()),
                (AppStateKey::Tokens, encode_tokens(tokens)),
            ],
        )
    }

    fn state_of(generation: Generation, values: &[(AppStateKey, String)]) -> EndpointState {
        let mut st = EndpointState::new(generation);
        for (version, (key, value)) in values.iter().enumerate() {
            st.app_states.insert(
                *key,
                VersionedValue {
                    value: value.clone(),
                    version: version as u64 + 1,
                },
            );
        }
        st
    }

    /// A view held by node `local` (BOOT, choosing) with these peers: (endpoint, state, alive).
    fn view(local: usize, peers: Vec<(Endpoint, EndpointState, bool)>) -> ClusterView {
        let mut endpoints = BTreeMap::new();
        endpoints.insert(
            ep(local),
            EndpointView {
                state: state(local, GENERATION, NodeStatus::Boot, &[]),
                alive: true,
            },
        );
        for (e, state, alive) in peers {
            endpoints.insert(e, EndpointView { state, alive });
        }
        ClusterView {
            local: ep(local),
            endpoints,
        }
    }

    fn settled() -> JoinProgress {
        JoinProgress {
            waited: Duration::from_secs(5),
            in_contact_for: Some(Duration::from_secs(5)),
        }
    }

    fn allocated(decision: JoinDecision) -> (Vec<i64>, usize) {
        match decision {
            JoinDecision::Allocate {
                tokens,
                method,
                ring_hosts,
                waited_out,
            } => {
                assert_eq!(
                    method,
                    AllocationMethod::Balanced {
                        replication_factor: 3
                    }
                );
                assert_eq!(waited_out, None);
                (tokens, ring_hosts)
            }
            other => panic!("expected an allocation, got {other:?}"),
        }
    }

    fn assert_valid(tokens: &[i64], count: usize) {
        assert_eq!(tokens.len(), count);
        assert!(tokens.windows(2).all(|w| w[0] < w[1]), "sorted, distinct");
        assert!(!tokens.contains(&i64::MIN));
    }

    /// Max / min replicated ownership under NTS dc1 = 3 of the nodes with these tokens.
    fn balance(nodes: &[(usize, String, Vec<i64>)]) -> f64 {
        let topology =
            Topology::from_endpoints(nodes.iter().map(|(i, rack, tokens)| ringdb_ring::Endpoint {
                host_id: HostId::from_u128(host(*i).as_u128()),
                addr: ep(*i).0,
                dc: "dc1".into(),
                rack: rack.clone(),
                tokens: tokens.iter().map(|&t| Token(t)).collect(),
            }))
            .expect("no token has two owners");
        let ring = TokenRing::new(topology);
        let replication =
            Replication::NetworkTopology(NetworkTopologyStrategy::single_dc("dc1", 3));
        let map = ReplicaMap::new(&ring, &replication);
        let loads: Vec<f64> = ring.hosts().map(|h| map.replicated_ownership(&h)).collect();
        let max = loads.iter().copied().fold(f64::MIN, f64::max);
        let min = loads.iter().copied().fold(f64::MAX, f64::min);
        max / min
    }

    #[test]
    fn a_single_node_without_seeds_allocates_at_once() {
        let just_started = JoinProgress {
            waited: Duration::ZERO,
            in_contact_for: None,
        };
        for seeds in [vec![], vec![1]] {
            // Listing only itself as a seed is the same as listing none.
            let decision = decide(
                &view(1, vec![]),
                &candidate(1, "rack1", &seeds),
                just_started,
                &settings(),
            );
            let (tokens, ring_hosts) = allocated(decision);
            assert_valid(&tokens, NUM_TOKENS);
            assert_eq!(ring_hosts, 0);
        }
    }

    #[test]
    fn a_node_with_seeds_waits_for_contact_then_settles() {
        let s = settings();
        assert_eq!(s.settle, Duration::from_millis(2400));
        let v = view(2, vec![]);
        let c = candidate(2, "rack1", &[1]);
        let at = |waited: u64, contact: Option<u64>| JoinProgress {
            waited: Duration::from_millis(waited),
            in_contact_for: contact.map(Duration::from_millis),
        };
        assert_eq!(
            decide(&v, &c, at(500, None), &s),
            JoinDecision::Wait {
                reason: WaitReason::NoContact { seeds: vec![ep(1)] }
            }
        );
        assert_eq!(
            decide(&v, &c, at(10_000, Some(400)), &s),
            JoinDecision::Wait {
                reason: WaitReason::Settling {
                    remaining: Duration::from_millis(2000)
                }
            }
        );
        allocated(decide(&v, &c, at(10_000, Some(2400)), &s));
        // Seeds that never answer hold the node back for max_wait at most.
        match decide(&v, &c, at(60_000, None), &s) {
            JoinDecision::Allocate { waited_out, .. } => assert_eq!(
                waited_out,
                Some(WaitReason::NoContact { seeds: vec![ep(1)] })
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_live_joiner_ranked_earlier_blocks_until_it_has_tokens() {
        let s = settings();
        let c = candidate(3, "rack1", &[1]);
        let boot = |i, generation| (ep(i), state(i, generation, NodeStatus::Boot, &[]), true);
        // Same generation, lower address: earlier. Higher address or later generation: not.
        let v = view(
            3,
            vec![
                boot(2, GENERATION),
                boot(4, GENERATION),
                boot(1, GENERATION + 1),
            ],
        );
        assert_eq!(
            decide(&v, &c, settled(), &s),
            JoinDecision::Wait {
                reason: WaitReason::EarlierJoiners { peers: vec![ep(2)] }
            }
        );
        // An earlier generation wins over a lower address.
        let v = view(3, vec![boot(5, GENERATION - 1)]);
        assert!(matches!(
            decide(&v, &c, settled(), &s),
            JoinDecision::Wait { reason: WaitReason::EarlierJoiners { peers } } if peers == vec![ep(5)]
        ));

        // Node 2 chose: BOOT with tokens already counts, NORMAL of course too.
        let theirs: Vec<i64> = (0..16)
            .map(|k| (k as i64 - 8) * (1 << 59) + 12345)
            .collect();
        for status in [NodeStatus::Boot, NodeStatus::Normal] {
            let v = view(
                3,
                vec![
                    (ep(2), state(2, GENERATION, status, &theirs), true),
                    boot(4, GENERATION),
                ],
            );
            let (tokens, ring_hosts) = allocated(decide(&v, &c, settled(), &s));
            assert_valid(&tokens, NUM_TOKENS);
            assert_eq!(ring_hosts, 1);
            assert!(tokens.iter().all(|t| !theirs.contains(t)));
        }
    }

    #[test]
    fn a_dead_joiner_does_not_block_and_a_live_one_only_until_max_wait() {
        let s = settings();
        let c = candidate(3, "rack1", &[1]);
        let dead = view(
            3,
            vec![(ep(2), state(2, GENERATION, NodeStatus::Boot, &[]), false)],
        );
        allocated(decide(&dead, &c, settled(), &s));

        let stuck = view(
            3,
            vec![(ep(2), state(2, GENERATION, NodeStatus::Boot, &[]), true)],
        );
        let late = JoinProgress {
            waited: s.max_wait,
            in_contact_for: Some(s.max_wait),
        };
        match decide(&stuck, &c, late, &s) {
            JoinDecision::Allocate {
                tokens, waited_out, ..
            } => {
                assert_valid(&tokens, NUM_TOKENS);
                assert_eq!(
                    waited_out,
                    Some(WaitReason::EarlierJoiners { peers: vec![ep(2)] })
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_claimed_token_is_avoided_and_left_nodes_are_not_on_the_ring() {
        let s = settings();
        let c = candidate(9, "rack1", &[1]);
        let a: Vec<i64> = (0..16).map(|k| k * (1 << 58)).collect();
        let b: Vec<i64> = (0..16).map(|k| -(k + 1) * (1 << 58)).collect();
        let d: Vec<i64> = vec![7, 8, 9];
        let mut no_host_id = state(5, GENERATION, NodeStatus::Normal, &[42, 43]);
        no_host_id.app_states.remove(&AppStateKey::HostId);
        no_host_id.app_states.remove(&AppStateKey::Dc);
        let v = view(
            9,
            vec![
                (ep(1), state(1, GENERATION, NodeStatus::Shutdown, &a), false),
                (ep(2), state(2, GENERATION, NodeStatus::Leaving, &b), true),
                (
                    ep(3),
                    state(3, GENERATION, NodeStatus::Left, &[1, 2, 3]),
                    false,
                ),
                // Claims a token node 1 owns, and a host id node 2 has: both survive.
                (
                    ep(4),
                    state(2, GENERATION, NodeStatus::Normal, &[a[0], 99]),
                    true,
                ),
                (ep(5), no_host_id, true),
                (ep(6), state(6, GENERATION, NodeStatus::Joining, &d), true),
                (
                    ep(7),
                    state_of(GENERATION, &[(AppStateKey::Tokens, "1,zzz".into())]),
                    true,
                ),
            ],
        );
        let ring = ring_of(&v);
        assert_eq!(ring.hosts().count(), 4, "1, 2 (two addresses), 5, 6");
        assert_eq!(ring.len(), 16 + 16 + 1 + 2 + 3);
        let (tokens, ring_hosts) = allocated(decide(&v, &c, settled(), &s));
        assert_eq!(ring_hosts, 4);
        assert_valid(&tokens, NUM_TOKENS);
        let claimed: BTreeSet<i64> = a
            .iter()
            .chain(&b)
            .chain(&d)
            .chain(&[99, 42, 43])
            .copied()
            .collect();
        assert!(tokens.iter().all(|t| !claimed.contains(t)));
    }

    #[test]
    fn nodes_joining_one_after_another_stay_balanced() {
        let s = settings();
        for racks in [1usize, 3] {
            let mut nodes: Vec<(usize, String, Vec<i64>)> = Vec::new();
            for i in 1..=12 {
                let rack = format!("rack{}", i % racks + 1);
                let peers = nodes
                    .iter()
                    .map(|(j, r, tokens)| {
                        let mut st = state(*j, GENERATION, NodeStatus::Normal, tokens);
                        st.app_states.insert(
                            AppStateKey::Rack,
                            VersionedValue {
                                value: r.clone(),
                                version: 9,
                            },
                        );
                        (ep(*j), st, true)
                    })
                    .collect();
                let (tokens, ring_hosts) = allocated(decide(
                    &view(i, peers),
                    &candidate(i, &rack, &[1]),
                    settled(),
                    &s,
                ));
                assert_valid(&tokens, NUM_TOKENS);
                assert_eq!(ring_hosts, i - 1);
                nodes.push((i, rack, tokens));
                if [3, 6, 12].contains(&i) {
                    let ratio = balance(&nodes);
                    println!("{racks} rack(s), {i} nodes: max/min replicated ownership {ratio:.3}");
                    assert!(ratio <= MAX_RATIO, "{racks} rack(s), {i} nodes: {ratio:.3}");
                }
            }
        }
    }

    #[test]
    fn nodes_that_allocate_against_the_same_ring_never_share_a_token() {
        let s = settings();
        let progress = JoinProgress {
            waited: Duration::ZERO,
            in_contact_for: None,
        };
        // Two "first" nodes (empty ring), and twins against rings of 1, 2 (fewer hosts than the
        // replication factor: interleaved placement) and 4 nodes (greedy placement).
        let mut ring_nodes: Vec<(Endpoint, EndpointState, bool)> = Vec::new();
        for size in [0usize, 1, 2, 4] {
            while ring_nodes.len() < size {
                let i = ring_nodes.len() + 100;
                let peers = ring_nodes.clone();
                let (tokens, _) = allocated(decide(
                    &view(i, peers),
                    &candidate(i, "rack1", &[]),
                    progress,
                    &s,
                ));
                ring_nodes.push((
                    ep(i),
                    state(i, GENERATION, NodeStatus::Normal, &tokens),
                    true,
                ));
            }
            for pair in 0..20 {
                let (a, b) = (10 + 2 * pair, 11 + 2 * pair);
                let choose = |i| {
                    allocated(decide(
                        &view(i, ring_nodes.clone()),
                        &candidate(i, "rack1", &[]),
                        progress,
                        &s,
                    ))
                    .0
                };
                let (ta, tb) = (choose(a), choose(b));
                assert_valid(&ta, NUM_TOKENS);
                assert_valid(&tb, NUM_TOKENS);
                assert!(
                    ta.iter().all(|t| !tb.contains(t)),
                    "ring of {size}: nodes {a} and {b} share a token"
                );
            }
        }
    }

    #[test]
    fn the_clock_counts_contact_from_the_first_live_peer() {
        let t0 = Instant::now();
        let mut clock = JoinClock::new(t0);
        let alone = view(2, vec![]);
        let learned = view(
            2,
            vec![(ep(1), state(1, GENERATION, NodeStatus::Normal, &[5]), false)],
        );
        let alive = view(
            2,
            vec![(ep(1), state(1, GENERATION, NodeStatus::Normal, &[5]), true)],
        );
        let at = |ms| t0 + Duration::from_millis(ms);
        assert_eq!(clock.observe(at(100), &alone).in_contact_for, None);
        assert_eq!(clock.observe(at(200), &learned).in_contact_for, None);
        assert_eq!(
            clock.observe(at(300), &alive).in_contact_for,
            Some(Duration::ZERO)
        );
        // Losing the peer again does not restart the count.
        let p = clock.observe(at(1300), &alone);
        assert_eq!(p.in_contact_for, Some(Duration::from_millis(1000)));
        assert_eq!(p.waited, Duration::from_millis(1300));
    }

    // ---- simulation --------------------------------------------------------------------------

    /// One simulated node: a real gossip state machine, the join clock, and what it chose.
    struct SimNode {
        gossiper: Gossiper,
        candidate: JoinCandidate,
        clock: JoinClock,
        /// (when, tokens, hosts on the ring it saw) once chosen.
        chose: Option<(Instant, Vec<i64>, usize)>,
    }

    /// What a simulated cluster start produced.
    struct SimResult {
        /// Per node, in endpoint order: when it chose (from the start), its tokens, the hosts on
        /// the ring it saw.
        chosen: Vec<(Duration, Vec<i64>, usize)>,
    }

    /// Starts `n` nodes within `skew_ms` of each other, all of the same generation (as
    /// `ringdb cluster create --start` does), seeded by `seeds`, over a network that delays
    /// messages 1–30 ms and loses 2%. Every node runs the join protocol with the real gossiper;
    /// a node that chooses publishes TOKENS then NORMAL at once, as start-up does.
    fn simulate(n: usize, seeds: &[usize], skew_ms: u64, rng_seed: u64) -> SimResult {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(rng_seed);
        let settings = settings();
        let interval = Duration::from_millis(150);
        let t0 = Instant::now();
        let starts: Vec<Instant> = (0..n)
            .map(|_| t0 + Duration::from_millis(rng.random_range(0..=skew_ms)))
            .collect();
        let index_of: BTreeMap<Endpoint, usize> = (0..n).map(|i| (ep(i + 1), i)).collect();
        let mut nodes: Vec<Option<SimNode>> = (0..n).map(|_| None).collect();
        let mut in_flight: Vec<(Instant, Endpoint, Endpoint, GossipMessage)> = Vec::new();
        let step = Duration::from_millis(5);
        let mut now = t0;
        let deadline = t0 + settings.max_wait;
        while now < deadline {
            now += step;
            // Start the nodes that are due.
            for i in 0..n {
                if nodes[i].is_none() && starts[i] <= now {
                    let me = ep(i + 1);
                    let config = GossipConfig {
                        interval,
                        seeds: seeds.iter().map(|&s| ep(s)).filter(|s| *s != me).collect(),
                        ..GossipConfig::default()
                    };
                    let mut gossiper =
                        Gossiper::new(me, GENERATION, config, rng_seed ^ i as u64, now);
                    for (key, value) in [
                        (AppStateKey::HostId, host(i + 1).to_string()),
                        (AppStateKey::Dc, "dc1".to_string()),
                        (AppStateKey::Rack, "rack1".to_string()),
                        (AppStateKey::Status, NodeStatus::Boot.as_str().to_string()),
                    ] {
                        gossiper.set_app_state(key, value);
                    }
                    nodes[i] = Some(SimNode {
                        gossiper,
                        candidate: candidate(i + 1, "rack1", seeds),
                        clock: JoinClock::new(now),
                        chose: None,
                    });
                }
            }
            // Deliver what is due (to nodes that are running).
            let (due, later): (Vec<_>, Vec<_>) =
                in_flight.drain(..).partition(|(at, ..)| *at <= now);
            in_flight = later;
            for (_, from, to, msg) in due {
                let Some(&index) = index_of.get(&to) else {
                    continue;
                };
                if let Some(node) = nodes[index].as_mut() {
                    node.gossiper.handle_message(now, from, msg);
                }
            }
            for node in nodes.iter_mut().flatten() {
                if node.gossiper.next_timeout() <= now {
                    node.gossiper.handle_tick(now);
                }
                let from = node.gossiper.local();
                while let Some((to, msg)) = node.gossiper.poll_transmit() {
                    if rng.random::<f64>() >= 0.02 {
                        let at = now + Duration::from_millis(rng.random_range(1..=30));
                        in_flight.push((at, from, to, msg));
                    }
                }
                while node.gossiper.poll_event().is_some() {}
                if node.chose.is_some() {
                    continue;
                }
                let view = node.gossiper.view();
                let progress = node.clock.observe(now, &view);
                if let JoinDecision::Allocate {
                    tokens,
                    ring_hosts,
                    waited_out,
                    ..
                } = decide(&view, &node.candidate, progress, &settings)
                {
                    assert_eq!(waited_out, None, "{from} waited out its wait");
                    node.gossiper
                        .set_app_state(AppStateKey::Tokens, encode_tokens(&tokens));
                    node.gossiper
                        .set_app_state(AppStateKey::Status, NodeStatus::Normal.as_str());
                    node.chose = Some((now, tokens, ring_hosts));
                }
            }
            if nodes
                .iter()
                .all(|n| n.as_ref().is_some_and(|n| n.chose.is_some()))
            {
                break;
            }
        }
        let chosen = nodes
            .into_iter()
            .enumerate()
            .map(|(i, node)| {
                let Some(SimNode {
                    chose: Some((at, tokens, ring_hosts)),
                    ..
                }) = node
                else {
                    panic!("seed {rng_seed}: node {} never chose its tokens", i + 1);
                };
                (at.duration_since(t0), tokens, ring_hosts)
            })
            .collect();
        SimResult { chosen }
    }

    /// Nodes started together choose one at a time: each saw every node that chose before it,
    /// no token is shared, and the ring is balanced.
    #[test]
    fn nodes_started_together_join_one_at_a_time_through_gossip() {
        // (nodes, seeds): the first node its own only seed (what `cluster create` does), or
        // every node listing the same three seeds.
        let layouts: [(usize, &[usize]); 5] = [
            (3, &[1]),
            (6, &[1]),
            (12, &[1]),
            (6, &[1, 2, 3]),
            (12, &[1, 2, 3]),
        ];
        for (n, seeds) in layouts {
            for rng_seed in [1u64, 2, 3] {
                let result = simulate(n, seeds, 300, rng_seed);
                let mut order: Vec<(Duration, usize)> = result
                    .chosen
                    .iter()
                    .enumerate()
                    .map(|(i, (at, ..))| (*at, i))
                    .collect();
                order.sort_unstable();
                for (position, (at, i)) in order.iter().enumerate() {
                    let ring_hosts = result.chosen[*i].2;
                    let before = order.iter().filter(|(other, _)| other < at).count();
                    assert_eq!(
                        ring_hosts,
                        before,
                        "{n} nodes, seeds {seeds:?}, seed {rng_seed}: node {} chose {position}th \
                         but saw {ring_hosts} on the ring",
                        i + 1
                    );
                }
                let nodes: Vec<(usize, String, Vec<i64>)> = result
                    .chosen
                    .iter()
                    .enumerate()
                    .map(|(i, (_, tokens, _))| (i + 1, "rack1".to_string(), tokens.clone()))
                    .collect();
                let all: BTreeSet<i64> = nodes.iter().flat_map(|n| n.2.iter().copied()).collect();
                assert_eq!(all.len(), n * NUM_TOKENS, "a token is shared");
                let ratio = balance(&nodes);
                let last = order.last().map_or(Duration::ZERO, |(at, _)| *at);
                println!(
                    "{n:>2} nodes, seeds {seeds:?}, seed {rng_seed}: all chose within {last:?}; \
                     max/min replicated ownership {ratio:.3}"
                );
                assert!(ratio <= MAX_RATIO, "{n} nodes seed {rng_seed}: {ratio:.3}");
            }
        }
    }
}
