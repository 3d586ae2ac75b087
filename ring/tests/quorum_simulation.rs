//! Quorum tracking under message loss: a deterministic, seeded simulation of coordinators
//! counting replica answers with [`QuorumTracker`] while the network loses, delays and
//! duplicates messages.
//!
//! What is simulated. A small cluster of 3 to 6 replicas in one or two datacenters, under
//! `SimpleStrategy` or `NetworkTopologyStrategy`, every replica holding every key as a
//! last-write-wins register (value and timestamp). Coordinators work like the ones in
//! `node/src/coordinator/{write,read}.rs`, reduced to their counting: check the replicas believed
//! alive with [`Requirement::check_live`] (nothing is sent when it says `Unavailable`), send the
//! request to each of them, feed the tracker every answer that arrives, and answer success when
//! it reports `Satisfied`, failure when it reports `Failed`, and timeout when the deadline comes
//! first. An `ANY` write stores a hint for every replica believed down, as Cassandra does. A
//! read goes to every replica believed alive too (no data/digest split, speculative retry or read
//! repair: those are the node's business, the counting is the same) and answers the newest value
//! among the counted answers.
//!
//! Everything runs on a simulated clock: one event queue ordered by (time, sequence number), no
//! threads, no real time. The network loses requests and responses (each with its own
//! probability), delays them (now and then past the timeout) and duplicates some; replicas
//! answer with an error at some rate; some replicas are dead (they never answer), and the
//! coordinators' view of who is alive can be wrong both ways. Writes and reads on a few keys, at
//! random levels and from coordinators in either datacenter, start at random times and overlap.
//! Every random choice comes from one seeded splitmix64 generator, so a run is a function of its
//! seed.
//!
//! What is checked, against ground truth the coordinators never see (which replicas applied
//! each write, which answers the network delivered):
//!
//! 1. A write that succeeded had been applied by at least what the level needs, in every
//!    counting datacenter (`ANY`: by one replica, or a hint was stored). A read that succeeded had
//!    as many counted answers.
//! 2. A failure was final: in some counting group, the replicas sent the request minus those
//!    whose answer was an error are fewer than the group needs. `ANY` never fails.
//! 3. A timeout reports as `received` exactly the counted acknowledgements delivered before the
//!    deadline (each group capped at its need), and that is below `block_for`.
//! 4. With no loss, no delay past the timeout, no errors and every replica alive, every
//!    operation succeeds (or is `Unavailable` because the topology cannot meet its level at all).
//! 5. A read that succeeded, started after a write to its key succeeded, and whose counted
//!    replicas must intersect the write's (`W + R` above the replicas the two levels count, e.g.
//!    `QUORUM`/`QUORUM`, `LOCAL_QUORUM`/`LOCAL_QUORUM` from one datacenter, `ALL`/`ONE`), returns
//!    that write's value or a newer one.
//! 6. A read that succeeded returns nothing or a value some write to that key put on a replica.
//!
//! Also: `Unavailable` exactly when some counting group has fewer replicas believed alive than it
//! needs, and `failures()` equals the replicas whose answer was an error. The per-level numbers
//! come from [`Requirement`] (checked against a naive reference in `consistency_reference.rs`);
//! this file checks what the tracker, and a coordinator built on it, make of them when answers go
//! missing, arrive twice or arrive late. At the end each test checks its coverage (every outcome
//! for reads and writes, every level, intersections actually checked), so a simulation that
//! stopped exercising something fails instead of passing quietly.
//!
//! A failure names its seed; replay that seed alone with
//! `QUORUM_SIM_SEED=<seed> cargo test -p ringdb-ring --test quorum_simulation`.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::fmt::Write as _;

use ringdb_ring::consistency::Counting;
use ringdb_ring::rng::SplitMix64;
use ringdb_ring::{
    ConsistencyLevel, HostId, NetworkTopologyStrategy, Progress, QuorumTracker, Replication,
    Requirement, SimpleStrategy,
};

use ConsistencyLevel::*;

/// How many random scenarios the lossy test runs.
const LOSSY_SEEDS: u64 = 3000;
/// How many scenarios the fault-free test runs.
const CLEAN_SEEDS: u64 = 500;
/// Names the environment variable that replays one seed.
const REPLAY_VAR: &str = "QUORUM_SIM_SEED";

/// A coordinator's deadline for one request, in simulated ticks.
const TIMEOUT: u64 = 100;
/// The longest ordinary one-way delay: a round trip (`2 * MAX_DELAY`) fits in the timeout.
const MAX_DELAY: u64 = 20;
/// Operations start at random in `0..START_WINDOW`, so several are in flight at once.
const START_WINDOW: u64 = 4 * TIMEOUT;
/// Keys per scenario: few, so that reads often follow writes to the same key.
const KEYS: u64 = 3;

const READ_LEVELS: [ConsistencyLevel; 8] = [
    One,
    Two,
    Three,
    Quorum,
    All,
    LocalOne,
    LocalQuorum,
    EachQuorum,
];
const WRITE_LEVELS: [ConsistencyLevel; 9] = [
    Any,
    One,
    Two,
    Three,
    Quorum,
    All,
    LocalOne,
    LocalQuorum,
    EachQuorum,
];

/// A random element of `items`.
fn pick<T: Copy>(rng: &mut SplitMix64, items: &[T]) -> T {
    items[rng.between(0, items.len() as u64 - 1) as usize]
}

/// What goes wrong in a scenario; every field is a probability.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Faults {
    /// A request is lost on its way to a replica.
    drop_request: f64,
    /// A response is lost on its way back.
    drop_response: f64,
    /// A message that is not lost is delivered twice.
    duplicate: f64,
    /// A message takes between half the timeout and three timeouts instead of a few ticks.
    slow: f64,
    /// A replica answers a request with an error (a write answered so is not applied).
    replica_error: f64,
    /// A replica is dead for the whole scenario: it never answers.
    dead: f64,
    /// The coordinators are wrong about a replica: believe a dead one alive, or a live one dead.
    wrong_view: f64,
}

impl Faults {
    const NONE: Faults = Faults {
        drop_request: 0.0,
        drop_response: 0.0,
        duplicate: 0.0,
        slow: 0.0,
        replica_error: 0.0,
        dead: 0.0,
        wrong_view: 0.0,
    };

    fn random(rng: &mut SplitMix64) -> Faults {
        Faults {
            drop_request: pick(rng, &[0.0, 0.05, 0.2, 0.5]),
            drop_response: pick(rng, &[0.0, 0.05, 0.2, 0.5]),
            duplicate: pick(rng, &[0.0, 0.1]),
            slow: pick(rng, &[0.0, 0.05, 0.2]),
            replica_error: pick(rng, &[0.0, 0.05, 0.3]),
            dead: pick(rng, &[0.0, 0.15, 0.3]),
            wrong_view: pick(rng, &[0.0, 0.1, 0.25]),
        }
    }
}

/// A register's content. Ordered by timestamp first, so the newest cell is the largest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Cell {
    ts: u64,
    value: u64,
}

struct Replica {
    host: HostId,
    dc: &'static str,
    /// Never answers anything.
    dead: bool,
    /// What the coordinators think: the replicas they send to and `check_live` counts.
    believed_alive: bool,
    registers: BTreeMap<u64, Cell>,
}

/// One counting group of a requirement: the replicas whose answers count toward it and how many
/// it needs.
#[derive(Debug, Clone)]
struct Scope {
    members: BTreeSet<usize>,
    need: usize,
}

/// The counting groups of `requirement` among `replicas` (one group unless it is `EACH_QUORUM`).
fn scopes(requirement: &Requirement, replicas: &[Replica]) -> Vec<Scope> {
    let members = |dc: Option<&str>| -> BTreeSet<usize> {
        (0..replicas.len())
            .filter(|&i| dc.is_none_or(|dc| dc == replicas[i].dc))
            .collect()
    };
    match requirement.counting() {
        Counting::Anywhere { block_for } => vec![Scope {
            members: members(None),
            need: *block_for,
        }],
        Counting::InDc { dc, block_for } => vec![Scope {
            members: members(Some(dc)),
            need: *block_for,
        }],
        Counting::PerDc(per_dc) => per_dc
            .iter()
            .map(|(dc, &need)| Scope {
                members: members(Some(dc)),
                need,
            })
            .collect(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Request {
    Write(Cell),
    Read,
}

/// A replica's answer to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Applied,
    Value(Option<Cell>),
    Error,
}

/// What the client was told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Unavailable,
    Written,
    Read(Option<Cell>),
    Failure,
    Timeout,
}

impl Outcome {
    fn name(self) -> &'static str {
        match self {
            Outcome::Unavailable => "unavailable",
            Outcome::Written | Outcome::Read(_) => "success",
            Outcome::Failure => "failure",
            Outcome::Timeout => "timeout",
        }
    }
}

/// The coordinator's memory of one request in flight.
struct Coordinator {
    tracker: QuorumTracker,
    /// Replicas whose (first) answer was seen: later ones from them are not read.
    answered: BTreeSet<usize>,
    /// The newest value among counted read answers.
    newest: Option<Cell>,
}

/// What really happened to one request, kept by the simulator behind the coordinator's back.
#[derive(Default)]
struct Truth {
    /// Replicas the coordinator sent the request to.
    sent_to: BTreeSet<usize>,
    /// Answers delivered to the coordinator while the request was pending, in order.
    delivered: Vec<(usize, Answer)>,
    /// Replicas that applied this write.
    applied: BTreeSet<usize>,
    /// The coordinator stored a hint (`ANY` only).
    hint_stored: bool,
}

impl Truth {
    /// The first answer delivered from each replica, the one a correct coordinator counts,
    /// sorted by kind.
    fn counted(&self) -> Counted {
        let mut counted = Counted::default();
        let mut seen = BTreeSet::new();
        for &(replica, answer) in &self.delivered {
            if seen.insert(replica) {
                match answer {
                    Answer::Error => counted.errors.insert(replica),
                    Answer::Applied | Answer::Value(_) => counted.acks.insert(replica),
                };
            }
        }
        counted
    }
}

/// Replicas by the kind of their first delivered answer to one request.
#[derive(Default)]
struct Counted {
    acks: BTreeSet<usize>,
    errors: BTreeSet<usize>,
}

/// How many of `replicas` belong to `scope`.
fn count_in(replicas: &BTreeSet<usize>, scope: &Scope) -> usize {
    replicas.intersection(&scope.members).count()
}

struct Finished {
    outcome: Outcome,
    /// Position in the processing order of events, to tell "before" from "after".
    order: u64,
}

/// One client request: what it asks, the coordinator's state, and what really happened.
struct Op {
    key: u64,
    request: Request,
    level: ConsistencyLevel,
    coordinator_dc: &'static str,
    /// Simulated time at which the client sends it.
    start: u64,
    requirement: Requirement,
    /// The requirement's counting groups, as sets of replicas.
    scopes: Vec<Scope>,
    /// Position in the processing order of events at which the coordinator received it.
    started_order: u64,
    /// `None` until sent, and for good if it was `Unavailable`.
    coordinator: Option<Coordinator>,
    truth: Truth,
    finished: Option<Finished>,
}

impl Op {
    fn kind(&self) -> &'static str {
        match self.request {
            Request::Write(_) => "write",
            Request::Read => "read",
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Event {
    Start(usize),
    Request {
        op: usize,
        replica: usize,
    },
    Response {
        op: usize,
        replica: usize,
        answer: Answer,
    },
    Deadline(usize),
}

/// An event in the queue, ordered by time then by when it was scheduled.
struct Scheduled {
    at: u64,
    seq: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Scheduled {}

impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// What a run exercised, summed over seeds to check that the simulation tests something.
#[derive(Default)]
struct Coverage {
    /// (operation kind, outcome name) → count.
    outcomes: BTreeMap<(&'static str, &'static str), u64>,
    /// Levels that reached a success, per operation kind.
    succeeded_at: BTreeSet<(&'static str, ConsistencyLevel)>,
    /// Read/write pairs checked for quorum intersection (invariant 5).
    intersections: u64,
    /// Of those, the pairs of levels known to intersect, by (write level, read level).
    textbook: BTreeMap<(ConsistencyLevel, ConsistencyLevel), u64>,
    /// Successful reads that returned a value (invariant 6).
    values_read: u64,
}

impl Coverage {
    fn add(&mut self, other: Coverage) {
        for (k, n) in other.outcomes {
            *self.outcomes.entry(k).or_default() += n;
        }
        self.succeeded_at.extend(other.succeeded_at);
        self.intersections += other.intersections;
        for (k, n) in other.textbook {
            *self.textbook.entry(k).or_default() += n;
        }
        self.values_read += other.values_read;
    }

    fn count(&self, kind: &'static str, outcome: &'static str) -> u64 {
        self.outcomes.get(&(kind, outcome)).copied().unwrap_or(0)
    }
}

/// One scenario: cluster, operations, network, and the checks.
struct Sim {
    /// The test running it, for the replay command.
    test: &'static str,
    seed: u64,
    rng: SplitMix64,
    faults: Faults,
    replication: Replication,
    replicas: Vec<Replica>,
    ops: Vec<Op>,
    /// The write op that wrote each value.
    writer_of: BTreeMap<u64, usize>,
    queue: BinaryHeap<Reverse<Scheduled>>,
    now: u64,
    next_seq: u64,
    /// Events processed so far.
    order: u64,
}

impl Sim {
    /// Builds the scenario of `seed` for `test`, with random faults unless `clean`.
    fn new(test: &'static str, seed: u64, clean: bool) -> Sim {
        let mut rng = SplitMix64::new(seed);
        let faults = if clean {
            Faults::NONE
        } else {
            Faults::random(&mut rng)
        };
        let (replication, dcs) = random_cluster(&mut rng);
        let replicas: Vec<Replica> = dcs
            .iter()
            .enumerate()
            .map(|(i, &dc)| {
                let dead = rng.chance(faults.dead);
                let believed_alive = if rng.chance(faults.wrong_view) {
                    dead
                } else {
                    !dead
                };
                Replica {
                    host: HostId::from_u128(i as u128 + 1),
                    dc,
                    dead,
                    believed_alive,
                    registers: BTreeMap::new(),
                }
            })
            .collect();
        let coordinator_dcs: Vec<&'static str> = dcs
            .iter()
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();

        let mut sim = Sim {
            test,
            seed,
            rng,
            faults,
            replication,
            replicas,
            ops: Vec::new(),
            writer_of: BTreeMap::new(),
            queue: BinaryHeap::new(),
            now: 0,
            next_seq: 0,
            order: 0,
        };
        let op_count = sim.rng.between(5, 40) as usize;
        for id in 0..op_count {
            let start = sim.rng.between(0, START_WINDOW);
            let key = sim.rng.between(0, KEYS - 1);
            // Now and then a coordinator in a datacenter that holds no replica.
            let coordinator_dc = if sim.rng.chance(0.05) {
                "dc3"
            } else {
                pick(&mut sim.rng, &coordinator_dcs)
            };
            let (request, level) = if sim.rng.chance(0.55) {
                // Timestamps grow with the start time and are unique; values name their write.
                let cell = Cell {
                    ts: start * 1_000 + id as u64,
                    value: id as u64,
                };
                sim.writer_of.insert(cell.value, id);
                (Request::Write(cell), pick(&mut sim.rng, &WRITE_LEVELS))
            } else {
                (Request::Read, pick(&mut sim.rng, &READ_LEVELS))
            };
            let requirement = match request {
                Request::Write(_) => {
                    assert_eq!(level.validate_for_write(), Ok(()), "seed {seed}");
                    Requirement::for_write(level, &sim.replication, coordinator_dc, [])
                }
                Request::Read => {
                    assert_eq!(level.validate_for_read(), Ok(()), "seed {seed}");
                    Requirement::new(level, &sim.replication, coordinator_dc)
                }
            };
            let scopes = scopes(&requirement, &sim.replicas);
            sim.ops.push(Op {
                key,
                request,
                level,
                coordinator_dc,
                start,
                requirement,
                scopes,
                started_order: 0,
                coordinator: None,
                truth: Truth::default(),
                finished: None,
            });
            sim.schedule(start, Event::Start(id));
        }
        sim
    }

    fn schedule(&mut self, at: u64, event: Event) {
        self.queue.push(Reverse(Scheduled {
            at,
            seq: self.next_seq,
            event,
        }));
        self.next_seq += 1;
    }

    fn delay(&mut self) -> u64 {
        if self.rng.chance(self.faults.slow) {
            self.rng.between(TIMEOUT / 2, 3 * TIMEOUT)
        } else {
            self.rng.between(1, MAX_DELAY)
        }
    }

    /// Puts `event` on the wire: lost with probability `drop`, else delivered after a random
    /// delay, and maybe a second time.
    fn send(&mut self, drop: f64, event: Event) {
        if self.rng.chance(drop) {
            return;
        }
        let at = self.now + self.delay();
        self.schedule(at, event);
        if self.rng.chance(self.faults.duplicate) {
            let at = self.now + self.delay();
            self.schedule(at, event);
        }
    }

    /// Runs every event, then the checks that look at the whole history.
    fn run(mut self) -> Coverage {
        while let Some(Reverse(Scheduled { at, event, .. })) = self.queue.pop() {
            self.now = at;
            self.order += 1;
            match event {
                Event::Start(op) => self.start(op),
                Event::Request { op, replica } => self.on_request(op, replica),
                Event::Response {
                    op,
                    replica,
                    answer,
                } => self.on_response(op, replica, answer),
                Event::Deadline(op) => {
                    if self.ops[op].finished.is_none() {
                        self.finish(op, Outcome::Timeout);
                    }
                }
            }
        }
        self.check_history()
    }

    /// The coordinator receives the client's request.
    fn start(&mut self, id: usize) {
        self.ops[id].started_order = self.order;
        let op = &self.ops[id];
        let targets: Vec<usize> = (0..self.replicas.len())
            .filter(|&i| self.replicas[i].believed_alive)
            .collect();
        let live = op
            .requirement
            .check_live(targets.iter().map(|&i| self.replicas[i].dc));
        // Unavailable exactly when some counting group has too few replicas believed alive.
        let short = op.level != Any
            && op
                .scopes
                .iter()
                .any(|s| targets.iter().filter(|i| s.members.contains(i)).count() < s.need);
        assert_eq!(
            live.is_err(),
            short,
            "check_live said {live:?} but the counting groups {:?} say short={short}; {}",
            op.scopes,
            self.context(id)
        );
        if live.is_err() {
            self.finish(id, Outcome::Unavailable);
            return;
        }

        let mut tracker = QuorumTracker::new(
            op.requirement.clone(),
            targets
                .iter()
                .map(|&i| (self.replicas[i].host, self.replicas[i].dc)),
        );
        // ANY: a hint for every replica believed down, each enough to meet the level.
        let hint_stored = op.level == Any && targets.len() < self.replicas.len();
        let progress = if hint_stored {
            tracker.on_hint_stored()
        } else {
            tracker.progress()
        };
        let op = &mut self.ops[id];
        op.truth.hint_stored = hint_stored;
        op.truth.sent_to = targets.iter().copied().collect();
        op.coordinator = Some(Coordinator {
            tracker,
            answered: BTreeSet::new(),
            newest: None,
        });
        for &replica in &targets {
            self.send(self.faults.drop_request, Event::Request { op: id, replica });
        }
        self.schedule(self.now + TIMEOUT, Event::Deadline(id));
        if progress == Progress::Satisfied {
            self.finish(id, Outcome::Written);
        }
    }

    /// A replica receives a request (after the coordinator may have given up on it).
    fn on_request(&mut self, op: usize, replica: usize) {
        if self.replicas[replica].dead {
            return;
        }
        let answer = if self.rng.chance(self.faults.replica_error) {
            Answer::Error
        } else {
            let key = self.ops[op].key;
            let registers = &mut self.replicas[replica].registers;
            match self.ops[op].request {
                Request::Write(cell) => {
                    // Last write wins: an older write arriving late changes nothing, but the
                    // replica still holds something at least as new, which is what counts.
                    let current = registers.entry(key).or_insert(cell);
                    *current = (*current).max(cell);
                    self.ops[op].truth.applied.insert(replica);
                    Answer::Applied
                }
                Request::Read => Answer::Value(registers.get(&key).copied()),
            }
        };
        self.send(
            self.faults.drop_response,
            Event::Response {
                op,
                replica,
                answer,
            },
        );
    }

    /// The coordinator receives a replica's answer.
    fn on_response(&mut self, id: usize, replica: usize, answer: Answer) {
        let host = self.replicas[replica].host;
        let dc = self.replicas[replica].dc;
        let op = &mut self.ops[id];
        if op.finished.is_some() {
            return; // the coordinator has answered and forgotten the request
        }
        let Some(coordinator) = op.coordinator.as_mut() else {
            panic!(
                "an answer to a request that was never sent; {}",
                self.context(id)
            );
        };
        op.truth.delivered.push((replica, answer));
        // Duplicates go to the tracker too: it must ignore them.
        let progress = match answer {
            Answer::Applied | Answer::Value(_) => coordinator.tracker.on_ack(host),
            Answer::Error => coordinator.tracker.on_failure(host),
        };
        let first = coordinator.answered.insert(replica);
        if let Answer::Value(Some(cell)) = answer {
            if first && op.requirement.counts(dc) {
                coordinator.newest = coordinator.newest.max(Some(cell));
            }
        }
        let outcome = match (progress, op.request) {
            (Progress::Waiting, _) => return,
            (Progress::Satisfied, Request::Write(_)) => Outcome::Written,
            (Progress::Satisfied, Request::Read) => Outcome::Read(coordinator.newest),
            (Progress::Failed, _) => Outcome::Failure,
        };
        self.finish(id, outcome);
    }

    /// The coordinator answers the client; checks invariants 1, 2, 3, 4 and 6 at this instant.
    fn finish(&mut self, id: usize, outcome: Outcome) {
        self.ops[id].finished = Some(Finished {
            outcome,
            order: self.order,
        });
        let op = &self.ops[id];

        // 4. Nothing went wrong: success, unless the topology cannot meet the level at all.
        if self.faults == Faults::NONE {
            let impossible = op.scopes.iter().any(|s| s.members.len() < s.need);
            let expected = if impossible { "unavailable" } else { "success" };
            assert_eq!(
                outcome.name(),
                expected,
                "invariant 4 (a fault-free run succeeds): got {outcome:?}; {}",
                self.context(id)
            );
        }
        let Some(coordinator) = &op.coordinator else {
            assert_eq!(outcome, Outcome::Unavailable, "{}", self.context(id));
            return;
        };
        let tracker = &coordinator.tracker;
        let counted = op.truth.counted();
        assert_eq!(
            tracker.failures(),
            counted.errors.len(),
            "failures() should count the replicas that answered with an error {:?}; {}",
            counted.errors,
            self.context(id)
        );
        match outcome {
            Outcome::Unavailable => panic!("unavailable after sending; {}", self.context(id)),
            Outcome::Written => self.check_written(id, tracker),
            Outcome::Read(value) => self.check_read(id, tracker, &counted, value),
            Outcome::Failure => self.check_failure(id, &counted),
            Outcome::Timeout => self.check_timeout(id, tracker, &counted),
        }
    }

    /// Invariant 1 for writes: applied by enough replicas in every counting group.
    fn check_written(&self, id: usize, tracker: &QuorumTracker) {
        let op = &self.ops[id];
        if op.level == Any {
            assert!(
                !op.truth.applied.is_empty() || op.truth.hint_stored,
                "invariant 1: ANY write acknowledged with no replica applying it and no hint; {}",
                self.context(id)
            );
        } else {
            for scope in &op.scopes {
                assert!(
                    count_in(&op.truth.applied, scope) >= scope.need,
                    "invariant 1: write acknowledged but applied only by {:?}, and group \
                     {scope:?} needs {}; answers delivered {:?}; {}",
                    op.truth.applied,
                    scope.need,
                    op.truth.delivered,
                    self.context(id)
                );
            }
        }
        assert_eq!(
            tracker.received(),
            tracker.block_for(),
            "{}",
            self.context(id)
        );
    }

    /// Invariant 1 for reads (enough counted answers in every counting group) and invariant 6
    /// (only values some write to this key put on a replica).
    fn check_read(
        &self,
        id: usize,
        tracker: &QuorumTracker,
        counted: &Counted,
        value: Option<Cell>,
    ) {
        let op = &self.ops[id];
        for scope in &op.scopes {
            assert!(
                count_in(&counted.acks, scope) >= scope.need,
                "invariant 1: read answered with answers from {:?}, and group {scope:?} needs \
                 {}; answers delivered {:?}; {}",
                counted.acks,
                scope.need,
                op.truth.delivered,
                self.context(id)
            );
        }
        assert_eq!(
            tracker.received(),
            tracker.block_for(),
            "{}",
            self.context(id)
        );
        if let Some(cell) = value {
            let genuine = self.writer_of.get(&cell.value).is_some_and(|&w| {
                let write = &self.ops[w];
                write.key == op.key
                    && write.request == Request::Write(cell)
                    && !write.truth.applied.is_empty()
            });
            assert!(
                genuine,
                "invariant 6: read returned {cell:?}, which no write to key {} put on a replica; \
                 {}",
                op.key,
                self.context(id)
            );
        }
    }

    /// Invariant 2: a failure is final, some counting group can no longer reach its need.
    fn check_failure(&self, id: usize, counted: &Counted) {
        let op = &self.ops[id];
        assert_ne!(
            op.level,
            Any,
            "invariant 2: ANY never fails; {}",
            self.context(id)
        );
        let hopeless = op.scopes.iter().any(|s| {
            let reachable = op
                .truth
                .sent_to
                .iter()
                .filter(|r| s.members.contains(r) && !counted.errors.contains(r))
                .count();
            reachable < s.need
        });
        assert!(
            hopeless,
            "invariant 2: failure reported while every group could still be met: sent to {:?}, \
             errors from {:?}, groups {:?}; {}",
            op.truth.sent_to,
            counted.errors,
            op.scopes,
            self.context(id)
        );
    }

    /// Invariant 3: `received` is what was delivered before the deadline, below `block_for`.
    fn check_timeout(&self, id: usize, tracker: &QuorumTracker, counted: &Counted) {
        let op = &self.ops[id];
        let acks: usize = op
            .scopes
            .iter()
            .map(|s| count_in(&counted.acks, s).min(s.need))
            .sum();
        let hint = usize::from(op.level == Any && op.truth.hint_stored);
        let expected = (acks + hint).min(tracker.block_for());
        assert_eq!(
            tracker.received(),
            expected,
            "invariant 3: timeout reports received={} but the acknowledgements delivered before \
             the deadline ({:?}) count {expected}; {}",
            tracker.received(),
            op.truth.delivered,
            self.context(id)
        );
        assert!(
            tracker.received() < tracker.block_for(),
            "invariant 3: timed out with received={} >= block_for={}; {}",
            tracker.received(),
            tracker.block_for(),
            self.context(id)
        );
    }

    /// Invariant 5 (quorum intersection), over every pair of a successful write and a later
    /// successful read of the same key; and the coverage of this run.
    fn check_history(&self) -> Coverage {
        let mut coverage = Coverage::default();
        for (id, op) in self.ops.iter().enumerate() {
            let Some(finished) = &op.finished else {
                panic!("an operation never finished; {}", self.context(id));
            };
            *coverage
                .outcomes
                .entry((op.kind(), finished.outcome.name()))
                .or_default() += 1;
            match finished.outcome {
                Outcome::Written | Outcome::Read(_) => {
                    coverage.succeeded_at.insert((op.kind(), op.level));
                }
                _ => {}
            }
            let Outcome::Read(value) = finished.outcome else {
                continue;
            };
            coverage.values_read += u64::from(value.is_some());
            for write in &self.ops {
                let (Request::Write(written), Some(w)) = (write.request, &write.finished) else {
                    continue;
                };
                if write.key != op.key
                    || write.level == Any // a hint is not a replica
                    || w.outcome != Outcome::Written
                    || w.order >= op.started_order
                {
                    continue;
                }
                let intersect = must_intersect(&write.scopes, &op.scopes);
                let textbook = textbook_intersection(write, op);
                assert!(
                    intersect || !textbook,
                    "invariant 5: {} write from {} then {} read must share a replica, but the \
                     counting groups {:?} and {:?} need not; {}",
                    write.level,
                    write.coordinator_dc,
                    op.level,
                    write.scopes,
                    op.scopes,
                    self.context(id)
                );
                if !intersect {
                    continue;
                }
                coverage.intersections += 1;
                if textbook {
                    *coverage
                        .textbook
                        .entry((write.level, op.level))
                        .or_default() += 1;
                }
                assert!(
                    value.is_some_and(|v| v.ts >= written.ts),
                    "invariant 5: read returned {value:?} after {} {} wrote {written:?} \
                     successfully (write groups {:?}, read groups {:?}); {}",
                    write.level,
                    write.coordinator_dc,
                    write.scopes,
                    op.scopes,
                    self.context(id)
                );
            }
        }
        coverage
    }

    /// The seed, the cluster, the faults and the operation, for assertion messages.
    fn context(&self, id: usize) -> String {
        let op = &self.ops[id];
        let mut replicas = String::new();
        for (i, r) in self.replicas.iter().enumerate() {
            let state = match (r.dead, r.believed_alive) {
                (false, true) => "up",
                (true, false) => "down",
                (true, true) => "dead but believed up",
                (false, false) => "up but believed down",
            };
            let _ = write!(replicas, " r{i}={}:{state}", r.dc);
        }
        format!(
            "seed {seed}: op {id} {} key {} at {} from {} started t={} (requirement {:?}); \
             replication {:?}; replicas{replicas}; faults {:?}. Replay: {REPLAY_VAR}={seed} \
             cargo test -p ringdb-ring --test quorum_simulation {}",
            op.kind(),
            op.key,
            op.level,
            op.coordinator_dc,
            op.start,
            op.requirement.counting(),
            self.replication,
            self.faults,
            self.test,
            seed = self.seed,
        )
    }
}

/// Whether any replica set meeting the write's groups must share a replica with any set meeting
/// the read's. If a write group needs `w` of the set `A` and a read group `r` of the set `B`, the
/// two can avoid each other only if `w + r <= |A ∪ B|`; one forced overlap is enough, since
/// every group of a request is met when it succeeds.
fn must_intersect(write: &[Scope], read: &[Scope]) -> bool {
    write.iter().any(|w| {
        read.iter()
            .any(|r| w.need + r.need > w.members.union(&r.members).count())
    })
}

/// Pairs of levels that intersect whatever the replication, so that a requirement that counted
/// too few for them shows up as a failure of invariant 5 instead of fewer pairs being checked:
/// `QUORUM`/`QUORUM`, `LOCAL_QUORUM`/`LOCAL_QUORUM` from one datacenter, and `ALL` on either side.
fn textbook_intersection(write: &Op, read: &Op) -> bool {
    match (write.level, read.level) {
        (All, _) | (_, All) | (Quorum, Quorum) => true,
        (LocalQuorum, LocalQuorum) => write.coordinator_dc == read.coordinator_dc,
        _ => false,
    }
}

/// Fails unless the textbook pairs of levels were each checked for intersection at least
/// `min` times.
fn assert_textbook_pairs_checked(coverage: &Coverage, min: u64) {
    for pair in [
        (Quorum, Quorum),
        (LocalQuorum, LocalQuorum),
        (All, One),
        (One, All),
    ] {
        let checked = coverage.textbook.get(&pair).copied().unwrap_or(0);
        assert!(
            checked >= min,
            "coverage: only {checked} {}/{} write/read pairs checked for intersection",
            pair.0,
            pair.1
        );
    }
}

/// A cluster in which every replica holds every key: the replication and each replica's
/// datacenter. `SimpleStrategy` with replicas in one or two datacenters, or
/// `NetworkTopologyStrategy` over one or two (sometimes listing a third with factor 0).
fn random_cluster(rng: &mut SplitMix64) -> (Replication, Vec<&'static str>) {
    match rng.between(0, 2) {
        0 => {
            let rf = rng.between(3, 6) as usize;
            let in_dc1 = if rng.chance(0.5) {
                rf
            } else {
                rng.between(1, rf as u64 - 1) as usize
            };
            let dcs = (0..rf)
                .map(|i| if i < in_dc1 { "dc1" } else { "dc2" })
                .collect();
            (Replication::Simple(SimpleStrategy { rf }), dcs)
        }
        shape => {
            let mut rf_per_dc = BTreeMap::new();
            if shape == 1 {
                rf_per_dc.insert("dc1".to_string(), rng.between(3, 6) as usize);
            } else {
                let dc1 = rng.between(1, 4);
                let dc2 = rng.between(3u64.saturating_sub(dc1).max(1), (6 - dc1).min(3));
                rf_per_dc.insert("dc1".to_string(), dc1 as usize);
                rf_per_dc.insert("dc2".to_string(), dc2 as usize);
            }
            if rng.chance(0.3) {
                rf_per_dc.insert("dc3".to_string(), 0);
            }
            let mut dcs = Vec::new();
            for (dc, &rf) in &rf_per_dc {
                let name: &'static str = match dc.as_str() {
                    "dc1" => "dc1",
                    "dc2" => "dc2",
                    _ => "dc3",
                };
                dcs.extend(std::iter::repeat_n(name, rf));
            }
            let replication = Replication::NetworkTopology(NetworkTopologyStrategy { rf_per_dc });
            (replication, dcs)
        }
    }
}

/// The seeds to run: `0..count`, or only the one named by `QUORUM_SIM_SEED` (then `false`: a
/// single seed proves no coverage).
fn seeds(count: u64) -> (Vec<u64>, bool) {
    match std::env::var(REPLAY_VAR) {
        Ok(seed) => {
            let seed = seed
                .trim()
                .parse()
                .unwrap_or_else(|e| panic!("{REPLAY_VAR}={seed:?} is not a seed: {e}"));
            (vec![seed], false)
        }
        Err(_) => ((0..count).collect(), true),
    }
}

#[test]
fn lossy_network_keeps_quorum_promises() {
    let (seeds, full) = seeds(LOSSY_SEEDS);
    let mut coverage = Coverage::default();
    for seed in seeds {
        coverage.add(Sim::new("lossy_network_keeps_quorum_promises", seed, false).run());
    }
    if !full {
        return;
    }
    for kind in ["write", "read"] {
        for outcome in ["success", "failure", "timeout", "unavailable"] {
            assert!(
                coverage.count(kind, outcome) >= 20,
                "coverage: only {} {kind}s ended in {outcome} over {LOSSY_SEEDS} seeds",
                coverage.count(kind, outcome)
            );
        }
    }
    for level in WRITE_LEVELS {
        assert!(
            coverage.succeeded_at.contains(&("write", level)),
            "coverage: no write at {level} succeeded"
        );
    }
    for level in READ_LEVELS {
        assert!(
            coverage.succeeded_at.contains(&("read", level)),
            "coverage: no read at {level} succeeded"
        );
    }
    assert!(
        coverage.intersections >= 1_000,
        "coverage: only {} read/write pairs checked for intersection",
        coverage.intersections
    );
    assert_textbook_pairs_checked(&coverage, 20);
    assert!(
        coverage.values_read >= 1_000,
        "coverage: only {} reads returned a value",
        coverage.values_read
    );
}

#[test]
fn fault_free_network_answers_every_request() {
    let (seeds, full) = seeds(CLEAN_SEEDS);
    let mut coverage = Coverage::default();
    for seed in seeds {
        coverage.add(Sim::new("fault_free_network_answers_every_request", seed, true).run());
    }
    if !full {
        return;
    }
    for kind in ["write", "read"] {
        assert!(
            coverage.count(kind, "success") >= 1_000,
            "coverage: only {} {kind}s succeeded over {CLEAN_SEEDS} fault-free seeds",
            coverage.count(kind, "success")
        );
        for outcome in ["failure", "timeout"] {
            assert_eq!(coverage.count(kind, outcome), 0, "{kind} {outcome}");
        }
    }
    assert!(
        coverage.intersections >= 1_000,
        "coverage: only {} read/write pairs checked for intersection",
        coverage.intersections
    );
    assert_textbook_pairs_checked(&coverage, 20);
}
