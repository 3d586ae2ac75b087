//! The arithmetic of consistency levels over the cluster's shape, pure and table-tested: which
//! replication the workload's keyspace gets, whether a fault leaves a consistency level
//! satisfiable, and whether a read is guaranteed to see an earlier acknowledged write.

use std::collections::BTreeMap;

use ringdb_cql::message::Consistency;

/// The replication factor the workload uses per datacenter (Cassandra's usual 3, fewer when
/// the datacenter has fewer nodes).
pub const TARGET_RF: usize = 3;

/// The nodes of the cluster by datacenter, as the nemesis and the checker need them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// `(name, dc)` of every node, in the manifest's order.
    pub nodes: Vec<(String, String)>,
}

impl Topology {
    /// A topology from `(name, dc)` pairs.
    pub fn new<N: Into<String>, D: Into<String>>(nodes: impl IntoIterator<Item = (N, D)>) -> Self {
        Topology {
            nodes: nodes
                .into_iter()
                .map(|(n, d)| (n.into(), d.into()))
                .collect(),
        }
    }

    /// The datacenters, in order of first appearance.
    pub fn dcs(&self) -> Vec<String> {
        let mut dcs: Vec<String> = Vec::new();
        for (_, dc) in &self.nodes {
            if !dcs.contains(dc) {
                dcs.push(dc.clone());
            }
        }
        dcs
    }

    /// The nodes of `dc`, in order.
    pub fn nodes_in(&self, dc: &str) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|(_, d)| d == dc)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Every node's name, in order.
    pub fn names(&self) -> Vec<String> {
        self.nodes.iter().map(|(n, _)| n.clone()).collect()
    }

    /// The datacenter of `node`.
    pub fn dc_of(&self, node: &str) -> Option<&str> {
        self.nodes
            .iter()
            .find(|(n, _)| n == node)
            .map(|(_, d)| d.as_str())
    }

    /// The replication factor of the workload's keyspace in `dc`.
    pub fn rf(&self, dc: &str) -> usize {
        self.nodes_in(dc).len().min(TARGET_RF)
    }

    /// The replication factor summed over every datacenter.
    pub fn total_rf(&self) -> usize {
        self.dcs().iter().map(|dc| self.rf(dc)).sum()
    }

    /// The `replication = {...}` map of the workload's keyspace: SimpleStrategy on one
    /// datacenter, NetworkTopologyStrategy with [`Topology::rf`] per datacenter on several.
    pub fn replication(&self) -> String {
        let dcs = self.dcs();
        if dcs.len() <= 1 {
            format!(
                "{{'class': 'SimpleStrategy', 'replication_factor': {}}}",
                self.total_rf().max(1)
            )
        } else {
            let per_dc: Vec<String> = dcs
                .iter()
                .map(|dc| format!("'{dc}': {}", self.rf(dc)))
                .collect();
            format!(
                "{{'class': 'NetworkTopologyStrategy', {}}}",
                per_dc.join(", ")
            )
        }
    }
}

/// True for the levels the workload can use for both its writes and its reads.
pub fn usable_level(cl: Consistency) -> bool {
    matches!(
        cl,
        Consistency::One
            | Consistency::Two
            | Consistency::Three
            | Consistency::Quorum
            | Consistency::All
            | Consistency::LocalQuorum
            | Consistency::LocalOne
    )
}

/// True for the levels that count only the coordinator's datacenter (clients then stay in
/// their own datacenter, as drivers configured for them do).
pub fn is_local(cl: Consistency) -> bool {
    matches!(cl, Consistency::LocalQuorum | Consistency::LocalOne)
}

/// Replicas a request at `cl` waits for: over every datacenter for the global levels, within
/// `dc` for the local ones.
pub fn block_for(cl: Consistency, topology: &Topology, dc: &str) -> usize {
    let total = topology.total_rf();
    match cl {
        Consistency::Any | Consistency::One | Consistency::LocalOne => 1,
        Consistency::Two => 2,
        Consistency::Three => 3,
        Consistency::Quorum | Consistency::Serial => total / 2 + 1,
        Consistency::All => total,
        Consistency::LocalQuorum | Consistency::LocalSerial | Consistency::EachQuorum => {
            topology.rf(dc) / 2 + 1
        }
    }
}

/// When a read must see a write acknowledged before it began (the R + W > RF rule, with the
/// same level for both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadYourWrites {
    /// Always (QUORUM, ALL, … : R + W > RF over the whole cluster).
    Always,
    /// Only when the write and the read were coordinated in the same datacenter
    /// (LOCAL_QUORUM: R + W > RF within a datacenter).
    SameDc,
    /// Never guaranteed (ONE at RF 3): stale reads are not anomalies.
    Never,
}

/// Whether reads at `cl` must see writes at `cl` acknowledged before they began.
pub fn read_your_writes(cl: Consistency, topology: &Topology) -> ReadYourWrites {
    let dcs = topology.dcs();
    if is_local(cl) {
        let all_dcs_overlap = dcs
            .iter()
            .all(|dc| 2 * block_for(cl, topology, dc) > topology.rf(dc));
        if all_dcs_overlap && !dcs.is_empty() {
            ReadYourWrites::SameDc
        } else {
            ReadYourWrites::Never
        }
    } else {
        let any_dc = dcs.first().map(String::as_str).unwrap_or("");
        if 2 * block_for(cl, topology, any_dc) > topology.total_rf() {
            ReadYourWrites::Always
        } else {
            ReadYourWrites::Never
        }
    }
}

/// Whether requests at `cl` can still succeed for every partition while the nodes in `down`
/// are dead or paused and the internode network is split into `groups` (nodes talk only within
/// their group; a node in no group talks to every group; no groups: no split), provided the
/// client picks a coordinator on a good side (clients fail over, as drivers do; with a local
/// level they stay in their own datacenter).
///
/// The worst replica set is assumed: a datacenter with `n` nodes of which `u` are reachable
/// offers `max(0, rf - (n - u))` reachable replicas of some partition (with vnodes, almost any
/// set of `rf` nodes replicates something).
pub fn survives(
    cl: Consistency,
    topology: &Topology,
    down: &[String],
    groups: &[Vec<String>],
) -> bool {
    let dcs = topology.dcs();
    let grouped: Vec<&String> = groups.iter().flatten().collect();
    let sides: Vec<Vec<String>> = if groups.is_empty() {
        vec![topology.names()]
    } else {
        groups
            .iter()
            .map(|g| {
                let mut side = g.clone();
                side.extend(
                    topology
                        .names()
                        .into_iter()
                        .filter(|n| !grouped.contains(&n)),
                );
                side
            })
            .collect()
    };
    // Reachable replicas of the worst partition, per side and datacenter.
    let reachable: Vec<BTreeMap<&str, usize>> = sides
        .iter()
        .map(|side| {
            dcs.iter()
                .map(|dc| {
                    let in_dc = topology.nodes_in(dc);
                    let up = in_dc
                        .iter()
                        .filter(|n| side.contains(n) && !down.contains(n))
                        .count();
                    let unreachable = in_dc.len() - up;
                    (dc.as_str(), topology.rf(dc).saturating_sub(unreachable))
                })
                .collect()
        })
        .collect();
    match cl {
        Consistency::LocalQuorum | Consistency::LocalOne | Consistency::LocalSerial => {
            dcs.iter().all(|dc| {
                let need = block_for(cl, topology, dc);
                reachable.iter().any(|side| side[dc.as_str()] >= need)
            })
        }
        Consistency::EachQuorum => reachable.iter().any(|side| {
            dcs.iter()
                .all(|dc| side[dc.as_str()] >= block_for(cl, topology, dc))
        }),
        _ => {
            let need = block_for(cl, topology, "");
            reachable
                .iter()
                .any(|side| side.values().sum::<usize>() >= need)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_dc(n: usize) -> Topology {
        Topology::new((1..=n).map(|k| (format!("node{k}"), "dc1")))
    }

    fn two_dcs(a: usize, b: usize) -> Topology {
        Topology::new(
            (1..=a)
                .map(|k| (format!("node{k}"), "dc1"))
                .chain((a + 1..=a + b).map(|k| (format!("node{k}"), "dc2"))),
        )
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn replication_follows_the_datacenters() {
        assert_eq!(
            one_dc(3).replication(),
            "{'class': 'SimpleStrategy', 'replication_factor': 3}"
        );
        assert_eq!(
            one_dc(2).replication(),
            "{'class': 'SimpleStrategy', 'replication_factor': 2}"
        );
        assert_eq!(
            two_dcs(3, 2).replication(),
            "{'class': 'NetworkTopologyStrategy', 'dc1': 3, 'dc2': 2}"
        );
        assert_eq!(two_dcs(5, 3).total_rf(), 6);
    }

    #[test]
    fn read_your_writes_is_the_overlap_rule() {
        use Consistency::*;
        let cases = [
            (one_dc(3), Quorum, ReadYourWrites::Always),
            (one_dc(3), All, ReadYourWrites::Always),
            (one_dc(3), Two, ReadYourWrites::Always),
            (one_dc(3), One, ReadYourWrites::Never),
            (one_dc(3), LocalQuorum, ReadYourWrites::SameDc),
            (two_dcs(3, 3), Quorum, ReadYourWrites::Always),
            (two_dcs(3, 3), LocalQuorum, ReadYourWrites::SameDc),
            (two_dcs(3, 3), LocalOne, ReadYourWrites::Never),
            (two_dcs(3, 3), Two, ReadYourWrites::Never),
            (one_dc(1), One, ReadYourWrites::Always),
        ];
        for (topology, cl, want) in cases {
            assert_eq!(
                read_your_writes(cl, &topology),
                want,
                "{cl} on {:?}",
                topology.dcs()
            );
        }
    }

    #[test]
    fn what_each_fault_leaves_satisfiable() {
        use Consistency::*;
        let t3 = one_dc(3);
        let t33 = two_dcs(3, 3);
        let none: Vec<Vec<String>> = Vec::new();
        let split = |a: &[&str], b: &[&str]| vec![names(a), names(b)];
        // (topology, level, nodes down, partition groups, survives)
        type Case<'a> = (
            &'a Topology,
            Consistency,
            Vec<String>,
            Vec<Vec<String>>,
            bool,
        );
        let cases: Vec<Case> = vec![
            // RF 3, QUORUM: one node down is fine, two are not.
            (&t3, Quorum, names(&["node1"]), none.clone(), true),
            (&t3, Quorum, names(&["node1", "node2"]), none.clone(), false),
            (&t3, One, names(&["node1", "node2"]), none.clone(), true),
            (&t3, All, names(&["node3"]), none.clone(), false),
            // A minority cut off: the majority side still has a quorum.
            (
                &t3,
                Quorum,
                vec![],
                split(&["node3"], &["node1", "node2"]),
                true,
            ),
            // Every node alone: nobody has a quorum.
            (
                &t3,
                Quorum,
                vec![],
                vec![names(&["node1"]), names(&["node2"]), names(&["node3"])],
                false,
            ),
            // Partition plus a node down on the majority side.
            (
                &t3,
                Quorum,
                names(&["node1"]),
                split(&["node3"], &["node1", "node2"]),
                false,
            ),
            // Two datacenters: LOCAL_QUORUM survives one node per datacenter and a DC split.
            (
                &t33,
                LocalQuorum,
                names(&["node1", "node4"]),
                none.clone(),
                true,
            ),
            (
                &t33,
                LocalQuorum,
                names(&["node1", "node2"]),
                none.clone(),
                false,
            ),
            (
                &t33,
                LocalQuorum,
                vec![],
                split(&["node1", "node2", "node3"], &["node4", "node5", "node6"]),
                true,
            ),
            // QUORUM over 6 replicas needs 4: a DC split loses it, two nodes down do not.
            (
                &t33,
                Quorum,
                vec![],
                split(&["node1", "node2", "node3"], &["node4", "node5", "node6"]),
                false,
            ),
            (&t33, Quorum, names(&["node1", "node2"]), none.clone(), true),
            (
                &t33,
                Quorum,
                names(&["node1", "node2", "node4"]),
                none.clone(),
                false,
            ),
            (
                &t33,
                EachQuorum,
                vec![],
                split(&["node1", "node2", "node3"], &["node4", "node5", "node6"]),
                false,
            ),
        ];
        for (topology, cl, down, groups, want) in cases {
            assert_eq!(
                survives(cl, topology, &down, &groups),
                want,
                "{cl} down {down:?} groups {groups:?}"
            );
        }
    }

    #[test]
    fn usable_levels_exclude_write_only_and_serial_ones() {
        assert!(usable_level(Consistency::Quorum) && usable_level(Consistency::LocalOne));
        assert!(!usable_level(Consistency::Any));
        assert!(!usable_level(Consistency::Serial));
        assert!(!usable_level(Consistency::EachQuorum));
    }
}
