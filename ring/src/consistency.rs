//! Consistency levels: how many replica answers a request needs, whether enough replicas are
//! alive to try, and when the answers received are enough.
//!
//! A [`ConsistencyLevel`] names a requirement relative to a keyspace's [`Replication`]:
//!
//! | level | counts | needs |
//! |---|---|---|
//! | `ANY` | any replica, or a hint stored by the coordinator | 1 |
//! | `ONE`, `TWO`, `THREE` | any replica | 1, 2, 3 |
//! | `QUORUM`, `SERIAL` | any replica | `total_rf / 2 + 1` |
//! | `ALL` | any replica | `total_rf` |
//! | `LOCAL_ONE` | replicas in the coordinator's datacenter | 1 |
//! | `LOCAL_QUORUM`, `LOCAL_SERIAL` | replicas in the coordinator's datacenter | `local_rf / 2 + 1` |
//! | `EACH_QUORUM` | each datacenter separately | `rf_dc / 2 + 1` in every datacenter with `rf_dc > 0` |
//!
//! `total_rf` is the sum of all datacenters' factors. Under `SimpleStrategy`, which has no
//! per-datacenter factor, `local_rf` is the total factor (as in Cassandra) and `EACH_QUORUM`
//! behaves as `QUORUM`. Writes also wait for replicas that are gaining the range (pending
//! replicas, during bootstrap or moves): each one in a counted datacenter adds one to what is
//! needed.
//!
//! The math is captured once per request in a [`Requirement`]. Before sending anything the
//! coordinator calls [`Requirement::check_live`], which fails with [`Unavailable`] if too few
//! replicas are alive for the level to be possible. Then a [`QuorumTracker`], a sans-I/O state
//! machine fed with acknowledgements and failures as they arrive, says when the level is met (or
//! can no longer be met) and reports `received` / `block_for` for timeout errors.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::replication::Replication;
use crate::strategy::NetworkTopologyStrategy;
use crate::topology::HostId;

/// The consistency levels of the native protocol, with their protocol codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u16)]
pub enum ConsistencyLevel {
    /// One acknowledgement from any replica or a hint stored for one (writes only).
    Any = 0,
    /// One replica.
    One = 1,
    /// Two replicas.
    Two = 2,
    /// Three replicas.
    Three = 3,
    /// A majority of all replicas.
    Quorum = 4,
    /// Every replica.
    All = 5,
    /// A majority of the replicas in the coordinator's datacenter.
    LocalQuorum = 6,
    /// A majority of the replicas in every datacenter.
    EachQuorum = 7,
    /// Paxos over a majority of all replicas (conditional updates and serial reads).
    Serial = 8,
    /// Paxos over a majority of the coordinator's datacenter.
    LocalSerial = 9,
    /// One replica in the coordinator's datacenter.
    LocalOne = 10,
}

/// A protocol code that names no consistency level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownConsistencyCode(pub u16);

impl fmt::Display for UnknownConsistencyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Unknown code {} for a consistency level", self.0)
    }
}

impl std::error::Error for UnknownConsistencyCode {}

/// A consistency level name that names no level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownConsistencyName(pub String);

impl fmt::Display for UnknownConsistencyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Unknown consistency level: {}", self.0)
    }
}

impl std::error::Error for UnknownConsistencyName {}

/// A consistency level used where it has no meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidConsistency {
    /// `ANY` on a read.
    AnyForRead,
    /// `SERIAL` or `LOCAL_SERIAL` on a plain (non-conditional) write.
    SerialForWrite(ConsistencyLevel),
}

impl fmt::Display for InvalidConsistency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidConsistency::AnyForRead => {
                write!(f, "ANY ConsistencyLevel is only supported for writes")
            }
            InvalidConsistency::SerialForWrite(_) => {
                write!(
                    f,
                    "You must use conditional updates for serializable writes"
                )
            }
        }
    }
}

impl std::error::Error for InvalidConsistency {}

impl ConsistencyLevel {
    /// Every level, in code order.
    pub const ALL_LEVELS: [ConsistencyLevel; 11] = [
        ConsistencyLevel::Any,
        ConsistencyLevel::One,
        ConsistencyLevel::Two,
        ConsistencyLevel::Three,
        ConsistencyLevel::Quorum,
        ConsistencyLevel::All,
        ConsistencyLevel::LocalQuorum,
        ConsistencyLevel::EachQuorum,
        ConsistencyLevel::Serial,
        ConsistencyLevel::LocalSerial,
        ConsistencyLevel::LocalOne,
    ];

    /// The level with this native-protocol code.
    pub fn from_code(code: u16) -> Result<ConsistencyLevel, UnknownConsistencyCode> {
        Self::ALL_LEVELS
            .get(usize::from(code))
            .copied()
            .ok_or(UnknownConsistencyCode(code))
    }

    /// The native-protocol code.
    pub fn code(self) -> u16 {
        self as u16
    }

    /// The upper-case name drivers and cqlsh use (`LOCAL_QUORUM`).
    pub fn name(self) -> &'static str {
        match self {
            ConsistencyLevel::Any => "ANY",
            ConsistencyLevel::One => "ONE",
            ConsistencyLevel::Two => "TWO",
            ConsistencyLevel::Three => "THREE",
            ConsistencyLevel::Quorum => "QUORUM",
            ConsistencyLevel::All => "ALL",
            ConsistencyLevel::LocalQuorum => "LOCAL_QUORUM",
            ConsistencyLevel::EachQuorum => "EACH_QUORUM",
            ConsistencyLevel::Serial => "SERIAL",
            ConsistencyLevel::LocalSerial => "LOCAL_SERIAL",
            ConsistencyLevel::LocalOne => "LOCAL_ONE",
        }
    }

    /// Whether only replicas in the coordinator's datacenter count.
    pub fn is_dc_local(self) -> bool {
        matches!(
            self,
            ConsistencyLevel::LocalOne
                | ConsistencyLevel::LocalQuorum
                | ConsistencyLevel::LocalSerial
        )
    }

    /// Whether this is a Paxos level (`SERIAL`, `LOCAL_SERIAL`).
    pub fn is_serial(self) -> bool {
        matches!(
            self,
            ConsistencyLevel::Serial | ConsistencyLevel::LocalSerial
        )
    }

    /// Refuses levels that make no sense for a read (`ANY`).
    pub fn validate_for_read(self) -> Result<(), InvalidConsistency> {
        match self {
            ConsistencyLevel::Any => Err(InvalidConsistency::AnyForRead),
            _ => Ok(()),
        }
    }

    /// Refuses levels that make no sense for a plain write (`SERIAL`, `LOCAL_SERIAL`).
    pub fn validate_for_write(self) -> Result<(), InvalidConsistency> {
        if self.is_serial() {
            Err(InvalidConsistency::SerialForWrite(self))
        } else {
            Ok(())
        }
    }
}

impl fmt::Display for ConsistencyLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ConsistencyLevel {
    type Err = UnknownConsistencyName;

    /// Parses a level name, case-insensitively (`local_quorum`, `LOCAL_QUORUM`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL_LEVELS
            .iter()
            .copied()
            .find(|cl| cl.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownConsistencyName(s.to_string()))
    }
}

/// A majority of `rf` replicas: `rf / 2 + 1`.
pub fn quorum_for(rf: usize) -> usize {
    rf / 2 + 1
}

/// What `EACH_QUORUM` needs in each datacenter: a quorum of its factor, for every datacenter with
/// a non-zero factor.
pub fn each_quorum_per_dc(nts: &NetworkTopologyStrategy) -> BTreeMap<String, usize> {
    nts.rf_per_dc
        .iter()
        .filter(|(_, &rf)| rf > 0)
        .map(|(dc, &rf)| (dc.clone(), quorum_for(rf)))
        .collect()
}

/// The number of acknowledgements a request at `cl` waits for (with no pending replicas): for
/// `EACH_QUORUM` the sum over datacenters.
pub fn block_for(cl: ConsistencyLevel, replication: &Replication, local_dc: &str) -> usize {
    Requirement::new(cl, replication, local_dc).block_for()
}

/// Fails with [`Unavailable`] if the live replicas, given by the datacenter of each one, are too
/// few for `cl` to be met.
pub fn assure_sufficient_live<'a>(
    cl: ConsistencyLevel,
    replication: &Replication,
    local_dc: &str,
    live_replica_dcs: impl IntoIterator<Item = &'a str>,
) -> Result<(), Unavailable> {
    Requirement::new(cl, replication, local_dc).check_live(live_replica_dcs)
}

/// Not enough replicas are alive to meet a consistency level: the request is refused before it
/// is sent (the protocol's `Unavailable` error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable {
    /// The level asked for.
    pub consistency: ConsistencyLevel,
    /// How many live replicas the level needs (in `dc`, if set).
    pub required: usize,
    /// How many were alive (in `dc`, if set).
    pub alive: usize,
    /// The datacenter that fell short, for `EACH_QUORUM` and the `LOCAL_*` levels.
    pub dc: Option<String>,
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Cannot achieve consistency level {}: {} replicas required, {} alive",
            self.consistency, self.required, self.alive
        )?;
        if let Some(dc) = &self.dc {
            write!(f, " in datacenter {dc}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Unavailable {}

/// Which acknowledgements count toward a [`Requirement`], and how many are needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Counting {
    /// Any replica counts (and, under `ANY`, a stored hint).
    Anywhere {
        /// The number needed.
        block_for: usize,
    },
    /// Only replicas in one datacenter count.
    InDc {
        /// The datacenter (the coordinator's).
        dc: String,
        /// The number needed there.
        block_for: usize,
    },
    /// Each listed datacenter must reach its own number; other datacenters do not count.
    PerDc(BTreeMap<String, usize>),
}

/// What a request at some consistency level needs, worked out for one keyspace and coordinator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    consistency: ConsistencyLevel,
    counting: Counting,
}

impl Requirement {
    /// The requirement of a read, or of a write with no pending replicas.
    pub fn new(cl: ConsistencyLevel, replication: &Replication, local_dc: &str) -> Requirement {
        use ConsistencyLevel::*;
        let total = replication.total_rf();
        let local_rf = || replication.rf_in_dc(local_dc).unwrap_or(total);
        let in_local_dc = |block_for| Counting::InDc {
            dc: local_dc.to_string(),
            block_for,
        };
        let counting = match cl {
            Any | One => Counting::Anywhere { block_for: 1 },
            Two => Counting::Anywhere { block_for: 2 },
            Three => Counting::Anywhere { block_for: 3 },
            Quorum | Serial => Counting::Anywhere {
                block_for: quorum_for(total),
            },
            All => Counting::Anywhere { block_for: total },
            LocalOne => in_local_dc(1),
            LocalQuorum | LocalSerial => in_local_dc(quorum_for(local_rf())),
            EachQuorum => match replication {
                Replication::NetworkTopology(nts) => {
                    let per_dc = each_quorum_per_dc(nts);
                    if per_dc.is_empty() {
                        // No datacenter holds replicas: as unmeetable as QUORUM of nothing.
                        Counting::Anywhere {
                            block_for: quorum_for(0),
                        }
                    } else {
                        Counting::PerDc(per_dc)
                    }
                }
                Replication::Simple(_) => Counting::Anywhere {
                    block_for: quorum_for(total),
                },
            },
        };
        Requirement {
            consistency: cl,
            counting,
        }
    }

    /// The requirement of a write that also goes to `pending_replica_dcs` (the datacenter of each
    /// replica gaining the range): every pending replica that would count raises the number
    /// needed by one, so the write reaches the level on the new owners too. `ANY` is unchanged.
    pub fn for_write<'a>(
        cl: ConsistencyLevel,
        replication: &Replication,
        local_dc: &str,
        pending_replica_dcs: impl IntoIterator<Item = &'a str>,
    ) -> Requirement {
        let mut requirement = Requirement::new(cl, replication, local_dc);
        if cl == ConsistencyLevel::Any {
            return requirement;
        }
        for dc in pending_replica_dcs {
            match &mut requirement.counting {
                Counting::Anywhere { block_for } => *block_for += 1,
                Counting::InDc {
                    dc: local,
                    block_for,
                } if local == dc => *block_for += 1,
                Counting::InDc { .. } => {}
                Counting::PerDc(per_dc) => {
                    if let Some(block_for) = per_dc.get_mut(dc) {
                        *block_for += 1;
                    }
                }
            }
        }
        requirement
    }

    /// The level this requirement was computed for.
    pub fn consistency(&self) -> ConsistencyLevel {
        self.consistency
    }

    /// Which acknowledgements count and how many are needed.
    pub fn counting(&self) -> &Counting {
        &self.counting
    }

    /// The total number of acknowledgements needed (summed over datacenters for `EACH_QUORUM`).
    pub fn block_for(&self) -> usize {
        match &self.counting {
            Counting::Anywhere { block_for } | Counting::InDc { block_for, .. } => *block_for,
            Counting::PerDc(per_dc) => per_dc.values().sum(),
        }
    }

    /// Whether an acknowledgement from a replica in `dc` counts.
    pub fn counts(&self, dc: &str) -> bool {
        match &self.counting {
            Counting::Anywhere { .. } => true,
            Counting::InDc { dc: local, .. } => local == dc,
            Counting::PerDc(per_dc) => per_dc.contains_key(dc),
        }
    }

    /// Checks that the live replicas (given by the datacenter of each one, pending replicas
    /// included for writes) can meet the requirement. `ANY` always can: the coordinator stores a
    /// hint if no replica is up.
    pub fn check_live<'a>(
        &self,
        live_replica_dcs: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), Unavailable> {
        if self.consistency == ConsistencyLevel::Any {
            return Ok(());
        }
        let unavailable = |required, alive, dc: Option<&str>| Unavailable {
            consistency: self.consistency,
            required,
            alive,
            dc: dc.map(str::to_string),
        };
        match &self.counting {
            Counting::Anywhere { block_for } => {
                let alive = live_replica_dcs.into_iter().count();
                if alive < *block_for {
                    return Err(unavailable(*block_for, alive, None));
                }
            }
            Counting::InDc { dc, block_for } => {
                let alive = live_replica_dcs.into_iter().filter(|d| d == dc).count();
                if alive < *block_for {
                    return Err(unavailable(*block_for, alive, Some(dc)));
                }
            }
            Counting::PerDc(per_dc) => {
                let mut alive: BTreeMap<&str, usize> = BTreeMap::new();
                for dc in live_replica_dcs {
                    *alive.entry(dc).or_default() += 1;
                }
                for (dc, &required) in per_dc {
                    let alive = alive.get(dc.as_str()).copied().unwrap_or(0);
                    if alive < required {
                        return Err(unavailable(required, alive, Some(dc)));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Where a request stands, from the acknowledgements and failures a [`QuorumTracker`] has seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Not met yet, still possible.
    Waiting,
    /// The consistency level is met: answer the client.
    Satisfied,
    /// Too many counted replicas failed for the level ever to be met (the protocol's
    /// `WriteFailure`/`ReadFailure`). Never reported under `ANY`, where a hint can always be
    /// stored instead.
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reply {
    Outstanding,
    Acked,
    Failed,
}

#[derive(Debug, Clone)]
struct Target {
    host: HostId,
    /// The counting group this replica belongs to; `None` if its acknowledgement does not count.
    group: Option<usize>,
    reply: Reply,
}

#[derive(Debug, Clone)]
struct Group {
    need: usize,
    acked: usize,
    outstanding: usize,
}

/// Counts the answers to one request until its [`Requirement`] is met.
///
/// Sans-I/O: the coordinator tells it which replicas the request was sent to, then feeds it each
/// acknowledgement or failure as it arrives, and reads [`Progress`] back. It never looks at a clock:
/// on timeout, the coordinator reports [`QuorumTracker::received`] and
/// [`QuorumTracker::block_for`]. Answers from hosts the request was not sent to, and repeated
/// answers, are ignored, so a replica is never counted twice.
#[derive(Debug, Clone)]
pub struct QuorumTracker {
    requirement: Requirement,
    targets: Vec<Target>,
    groups: Vec<Group>,
    group_dcs: Vec<Option<String>>,
    hint_stored: bool,
    failures: usize,
}

impl QuorumTracker {
    /// A tracker for a request sent to `targets`, each given by host and datacenter.
    pub fn new<'a>(
        requirement: Requirement,
        targets: impl IntoIterator<Item = (HostId, &'a str)>,
    ) -> QuorumTracker {
        let (group_dcs, needs): (Vec<Option<String>>, Vec<usize>) = match &requirement.counting {
            Counting::Anywhere { block_for } => (vec![None], vec![*block_for]),
            Counting::InDc { dc, block_for } => (vec![Some(dc.clone())], vec![*block_for]),
            Counting::PerDc(per_dc) => per_dc
                .iter()
                .map(|(dc, &need)| (Some(dc.clone()), need))
                .unzip(),
        };
        let mut groups: Vec<Group> = needs
            .into_iter()
            .map(|need| Group {
                need,
                acked: 0,
                outstanding: 0,
            })
            .collect();
        let mut tracker_targets: Vec<Target> = Vec::new();
        for (host, dc) in targets {
            if tracker_targets.iter().any(|t| t.host == host) {
                continue;
            }
            let group = group_dcs
                .iter()
                .position(|g| g.as_deref().is_none_or(|g| g == dc));
            if let Some(g) = group {
                groups[g].outstanding += 1;
            }
            tracker_targets.push(Target {
                host,
                group,
                reply: Reply::Outstanding,
            });
        }
        QuorumTracker {
            requirement,
            targets: tracker_targets,
            groups,
            group_dcs,
            hint_stored: false,
            failures: 0,
        }
    }

    /// Records that `host` acknowledged.
    pub fn on_ack(&mut self, host: HostId) -> Progress {
        self.record(host, Reply::Acked)
    }

    /// Records that `host` answered with a failure.
    pub fn on_failure(&mut self, host: HostId) -> Progress {
        self.record(host, Reply::Failed)
    }

    /// Records that the coordinator stored a hint; this satisfies `ANY` and nothing else.
    pub fn on_hint_stored(&mut self) -> Progress {
        self.hint_stored = true;
        self.progress()
    }

    fn record(&mut self, host: HostId, reply: Reply) -> Progress {
        if let Some(target) = self
            .targets
            .iter_mut()
            .find(|t| t.host == host && t.reply == Reply::Outstanding)
        {
            target.reply = reply;
            if reply == Reply::Failed {
                self.failures += 1;
            }
            if let Some(g) = target.group {
                let group = &mut self.groups[g];
                group.outstanding -= 1;
                if reply == Reply::Acked {
                    group.acked += 1;
                }
            }
        }
        self.progress()
    }

    /// Where the request stands.
    pub fn progress(&self) -> Progress {
        let any = self.requirement.consistency == ConsistencyLevel::Any;
        if any && self.hint_stored {
            return Progress::Satisfied;
        }
        if self.groups.iter().all(|g| g.acked >= g.need) {
            return Progress::Satisfied;
        }
        if !any && self.groups.iter().any(|g| g.acked + g.outstanding < g.need) {
            return Progress::Failed;
        }
        Progress::Waiting
    }

    /// The counted acknowledgements so far, each datacenter's capped at what it needs (so it is
    /// below [`QuorumTracker::block_for`] until the level is met). A stored hint counts under
    /// `ANY`.
    pub fn received(&self) -> usize {
        let acked: usize = self.groups.iter().map(|g| g.acked.min(g.need)).sum();
        let hint =
            usize::from(self.requirement.consistency == ConsistencyLevel::Any && self.hint_stored);
        (acked + hint).min(self.block_for())
    }

    /// The acknowledgements needed in total.
    pub fn block_for(&self) -> usize {
        self.requirement.block_for()
    }

    /// The number of targets that answered with a failure.
    pub fn failures(&self) -> usize {
        self.failures
    }

    /// The requirement being tracked.
    pub fn requirement(&self) -> &Requirement {
        &self.requirement
    }

    /// For each counting datacenter (`None` when any datacenter counts): acknowledgements counted
    /// and needed. Names the datacenter that fell short in an `EACH_QUORUM` timeout.
    pub fn received_by_dc(&self) -> Vec<(Option<&str>, usize, usize)> {
        self.group_dcs
            .iter()
            .zip(&self.groups)
            .map(|(dc, g)| (dc.as_deref(), g.acked, g.need))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::SimpleStrategy;
    use ConsistencyLevel::*;

    fn nts(pairs: &[(&str, usize)]) -> Replication {
        Replication::NetworkTopology(NetworkTopologyStrategy {
            rf_per_dc: pairs.iter().map(|&(d, r)| (d.to_string(), r)).collect(),
        })
    }

    fn simple(rf: usize) -> Replication {
        Replication::Simple(SimpleStrategy { rf })
    }

    #[test]
    fn codes_round_trip() {
        for (code, cl) in ConsistencyLevel::ALL_LEVELS.iter().enumerate() {
            assert_eq!(cl.code(), code as u16);
            assert_eq!(ConsistencyLevel::from_code(code as u16), Ok(*cl));
            assert_eq!(cl.name().parse::<ConsistencyLevel>(), Ok(*cl));
            assert_eq!(
                cl.name().to_lowercase().parse::<ConsistencyLevel>(),
                Ok(*cl)
            );
        }
        assert_eq!(
            ConsistencyLevel::from_code(11),
            Err(UnknownConsistencyCode(11))
        );
        assert_eq!(
            ConsistencyLevel::from_code(u16::MAX),
            Err(UnknownConsistencyCode(u16::MAX))
        );
        assert!("QUORUMS".parse::<ConsistencyLevel>().is_err());
        assert_eq!(LocalQuorum.to_string(), "LOCAL_QUORUM");
    }

    #[test]
    fn validity() {
        assert_eq!(Any.validate_for_read(), Err(InvalidConsistency::AnyForRead));
        assert_eq!(Serial.validate_for_read(), Ok(()));
        assert_eq!(
            LocalSerial.validate_for_write(),
            Err(InvalidConsistency::SerialForWrite(LocalSerial))
        );
        assert_eq!(Any.validate_for_write(), Ok(()));
    }

    #[test]
    fn block_for_table() {
        let two_dcs = nts(&[("dc1", 3), ("dc2", 2), ("dc3", 0)]);
        // (level, replication, local dc, expected)
        let cases: Vec<(ConsistencyLevel, &Replication, &str, usize)> = vec![
            (Any, &two_dcs, "dc1", 1),
            (One, &two_dcs, "dc1", 1),
            (Two, &two_dcs, "dc1", 2),
            (Three, &two_dcs, "dc1", 3),
            (Quorum, &two_dcs, "dc1", 3), // 5/2+1
            (Serial, &two_dcs, "dc1", 3),
            (All, &two_dcs, "dc1", 5),
            (LocalOne, &two_dcs, "dc2", 1),
            (LocalQuorum, &two_dcs, "dc1", 2), // 3/2+1
            (LocalQuorum, &two_dcs, "dc2", 2), // 2/2+1
            (LocalSerial, &two_dcs, "dc2", 2),
            (LocalQuorum, &two_dcs, "dc3", 1), // rf 0: unmeetable
            (EachQuorum, &two_dcs, "dc1", 4),  // 2 + 2, dc3 needs nothing
        ];
        let s = simple(3);
        let simple_cases: Vec<(ConsistencyLevel, &Replication, &str, usize)> = vec![
            (Quorum, &s, "dc1", 2),
            (All, &s, "dc1", 3),
            (LocalQuorum, &s, "any", 2), // SimpleStrategy: local rf is the total
            (EachQuorum, &s, "dc1", 2),
            (LocalOne, &s, "dc1", 1),
        ];
        for (cl, replication, dc, expected) in cases.into_iter().chain(simple_cases) {
            assert_eq!(
                block_for(cl, replication, dc),
                expected,
                "{cl} {replication:?} {dc}"
            );
        }
        assert_eq!(block_for(Quorum, &simple(0), "dc1"), 1);
        assert_eq!(block_for(EachQuorum, &nts(&[("dc1", 0)]), "dc1"), 1);
        assert_eq!(
            Requirement::new(EachQuorum, &two_dcs, "dc1").counting(),
            &Counting::PerDc(BTreeMap::from([
                ("dc1".to_string(), 2),
                ("dc2".to_string(), 2)
            ]))
        );
    }

    #[test]
    fn pending_replicas_raise_writes() {
        let r = nts(&[("dc1", 3), ("dc2", 3)]);
        let pending = ["dc1", "dc2", "dc2"];
        let cases = [
            (Any, 1),
            (One, 4),
            (Quorum, 7),
            (All, 9),
            (LocalQuorum, 3), // only the dc1 pending replica counts
            (LocalOne, 2),
            (EachQuorum, 2 + 1 + 2 + 2),
        ];
        for (cl, expected) in cases {
            let req = Requirement::for_write(cl, &r, "dc1", pending);
            assert_eq!(req.block_for(), expected, "{cl}");
        }
    }

    #[test]
    fn unavailable_table() {
        let r = nts(&[("dc1", 3), ("dc2", 3)]);
        // (level, live replica dcs, Ok or (required, alive, dc))
        type Expect = Result<(), (usize, usize, Option<&'static str>)>;
        let cases: Vec<(ConsistencyLevel, Vec<&str>, Expect)> = vec![
            (Any, vec![], Ok(())),
            (One, vec![], Err((1, 0, None))),
            (One, vec!["dc2"], Ok(())),
            (LocalOne, vec!["dc2"], Err((1, 0, Some("dc1")))),
            (Quorum, vec!["dc1", "dc2", "dc2"], Err((4, 3, None))),
            (Quorum, vec!["dc2", "dc2", "dc2", "dc1"], Ok(())),
            (
                LocalQuorum,
                vec!["dc1", "dc2", "dc2"],
                Err((2, 1, Some("dc1"))),
            ),
            (LocalQuorum, vec!["dc1", "dc1"], Ok(())),
            (
                EachQuorum,
                vec!["dc1", "dc1", "dc2"],
                Err((2, 1, Some("dc2"))),
            ),
            (EachQuorum, vec!["dc1", "dc1", "dc2", "dc2"], Ok(())),
            (
                All,
                vec!["dc1", "dc1", "dc1", "dc2", "dc2"],
                Err((6, 5, None)),
            ),
            (Three, vec!["dc1", "dc2", "dc2"], Ok(())),
        ];
        for (cl, live, expected) in cases {
            let got = assure_sufficient_live(cl, &r, "dc1", live.iter().copied());
            let expected = expected.map_err(|(required, alive, dc)| Unavailable {
                consistency: cl,
                required,
                alive,
                dc: dc.map(str::to_string),
            });
            assert_eq!(got, expected, "{cl} {live:?}");
        }
        let err = assure_sufficient_live(LocalQuorum, &r, "dc1", ["dc2"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Cannot achieve consistency level LOCAL_QUORUM: 2 replicas required, 0 alive in datacenter dc1"
        );
    }

    fn host(i: u128) -> HostId {
        HostId::from_u128(i)
    }

    #[test]
    fn tracker_local_quorum_ignores_remote_acks() {
        let r = nts(&[("dc1", 3), ("dc2", 3)]);
        let req = Requirement::new(LocalQuorum, &r, "dc1");
        let targets = [
            (host(1), "dc1"),
            (host(2), "dc1"),
            (host(3), "dc1"),
            (host(4), "dc2"),
        ];
        let mut t = QuorumTracker::new(req, targets);
        assert_eq!(t.block_for(), 2);
        assert_eq!(t.on_ack(host(4)), Progress::Waiting);
        assert_eq!(t.received(), 0);
        assert_eq!(t.on_ack(host(1)), Progress::Waiting);
        assert_eq!(t.on_ack(host(1)), Progress::Waiting); // duplicate
        assert_eq!(t.on_ack(host(99)), Progress::Waiting); // stranger
        assert_eq!(t.received(), 1);
        assert_eq!(t.on_ack(host(3)), Progress::Satisfied);
        assert_eq!(t.received(), 2);
    }

    #[test]
    fn tracker_each_quorum_needs_every_dc() {
        let r = nts(&[("dc1", 3), ("dc2", 1)]);
        let req = Requirement::new(EachQuorum, &r, "dc1");
        let targets = [
            (host(1), "dc1"),
            (host(2), "dc1"),
            (host(3), "dc1"),
            (host(4), "dc2"),
        ];
        let mut t = QuorumTracker::new(req, targets);
        assert_eq!(t.block_for(), 3);
        t.on_ack(host(1));
        t.on_ack(host(2));
        assert_eq!(t.on_ack(host(3)), Progress::Waiting);
        assert_eq!(t.received(), 2); // dc1 capped at its 2
        assert_eq!(
            t.received_by_dc(),
            vec![(Some("dc1"), 3, 2), (Some("dc2"), 0, 1)]
        );
        assert_eq!(t.on_failure(host(4)), Progress::Failed);
        assert_eq!(t.failures(), 1);
    }

    #[test]
    fn tracker_fails_when_too_many_fail() {
        let req = Requirement::new(Quorum, &simple(3), "dc1");
        let mut t = QuorumTracker::new(req, [(host(1), "dc1"), (host(2), "dc1"), (host(3), "dc1")]);
        assert_eq!(t.on_failure(host(1)), Progress::Waiting);
        assert_eq!(t.on_ack(host(2)), Progress::Waiting);
        assert_eq!(t.on_failure(host(3)), Progress::Failed);
        assert_eq!((t.received(), t.block_for(), t.failures()), (1, 2, 2));
    }

    #[test]
    fn tracker_any_accepts_a_hint() {
        let req = Requirement::new(Any, &simple(3), "dc1");
        let mut t = QuorumTracker::new(req, [(host(1), "dc1")]);
        assert_eq!(t.on_failure(host(1)), Progress::Waiting);
        assert_eq!(t.received(), 0);
        assert_eq!(t.on_hint_stored(), Progress::Satisfied);
        assert_eq!(t.received(), 1);
        // A hint does nothing for ONE.
        let mut t =
            QuorumTracker::new(Requirement::new(One, &simple(3), "dc1"), [(host(1), "dc1")]);
        assert_eq!(t.on_hint_stored(), Progress::Waiting);
        assert_eq!(t.on_ack(host(1)), Progress::Satisfied);
    }
}
