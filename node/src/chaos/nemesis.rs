//! The nemesis: injects faults into the cluster on a schedule drawn from the seed, one window at
//! a time — inject, hold a few seconds, heal, wait until the cluster has converged again, pause
//! — and records each window.
//!
//! The plan ([`Planner`]) is pure: the candidate faults come from the topology, the fault kinds
//! asked for and the consistency level; unless `--aggressive`, only faults that leave the level
//! satisfiable for every partition ([`survives`]) are candidates — at RF 3 and QUORUM one node
//! at a time, with LOCAL_QUORUM on two datacenters one node per datacenter or a partition
//! between the datacenters. The same seed gives the same sequence of faults.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use ringdb_cql::message::Consistency;

use super::history::FaultWindow;
use super::model::{survives, Topology};
use crate::cluster::Cluster;

/// The kinds of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// SIGKILL a node, later start it again.
    Kill,
    /// SIGSTOP a node, later SIGCONT it.
    Pause,
    /// Cut the internode traffic between groups of nodes, later heal.
    Partition,
    /// Stop a node gracefully (SIGTERM), later start it again.
    Restart,
}

impl FaultKind {
    /// Every kind, in the order `--faults` lists them by default.
    pub const ALL: [FaultKind; 4] = [
        FaultKind::Kill,
        FaultKind::Pause,
        FaultKind::Partition,
        FaultKind::Restart,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::Partition => "partition",
            FaultKind::Restart => "restart",
        }
    }

    /// Parses `kill,pause,partition,restart` (or `none`, or `all`).
    pub fn parse_list(list: &str) -> Result<Vec<FaultKind>, String> {
        let mut kinds = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match item.to_ascii_lowercase().as_str() {
                "none" => {}
                "all" => kinds.extend(FaultKind::ALL),
                other => match FaultKind::ALL.iter().find(|k| k.name() == other) {
                    Some(k) => kinds.push(*k),
                    None => {
                        return Err(format!(
                            "unknown fault `{other}` (expected kill, pause, partition, restart, \
                             all or none)"
                        ))
                    }
                },
            }
        }
        kinds.sort();
        kinds.dedup();
        Ok(kinds)
    }
}

/// One fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Kill, pause or restart these nodes.
    Nodes { kind: FaultKind, nodes: Vec<String> },
    /// Split the internode network into these groups (every node in exactly one).
    Partition { groups: Vec<Vec<String>> },
}

impl Fault {
    pub fn kind(&self) -> FaultKind {
        match self {
            Fault::Nodes { kind, .. } => *kind,
            Fault::Partition { .. } => FaultKind::Partition,
        }
    }

    /// The nodes affected: for a partition, every node outside the largest group.
    pub fn affected(&self) -> Vec<String> {
        match self {
            Fault::Nodes { nodes, .. } => nodes.clone(),
            Fault::Partition { groups } => {
                let largest = groups
                    .iter()
                    .enumerate()
                    .max_by_key(|(i, g)| (g.len(), std::cmp::Reverse(*i)))
                    .map(|(i, _)| i);
                groups
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| Some(*i) != largest)
                    .flat_map(|(_, g)| g.clone())
                    .collect()
            }
        }
    }

    /// `kill node2`, `partition node3 / node1,node2`.
    pub fn describe(&self) -> String {
        match self {
            Fault::Nodes { kind, nodes } => format!("{} {}", kind.name(), nodes.join(",")),
            Fault::Partition { groups } => {
                let sides: Vec<String> = groups.iter().map(|g| g.join(",")).collect();
                format!("partition {}", sides.join(" / "))
            }
        }
    }

    /// Whether the consistency level stays satisfiable through this fault.
    pub fn survivable(&self, cl: Consistency, topology: &Topology) -> bool {
        match self {
            Fault::Nodes { nodes, .. } => survives(cl, topology, nodes, &[]),
            Fault::Partition { groups } => survives(cl, topology, &[], groups),
        }
    }
}

/// One planned window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedWindow {
    pub fault: Fault,
    /// How long the fault is held once injected.
    pub hold: Duration,
    /// How long the cluster is left alone after it has recovered.
    pub rest: Duration,
}

/// Shortest and longest hold of a fault.
pub const HOLD: (Duration, Duration) = (Duration::from_secs(3), Duration::from_secs(8));
/// Shortest and longest rest after a window.
pub const REST: (Duration, Duration) = (Duration::from_secs(2), Duration::from_secs(5));

/// Draws fault windows from the seed.
pub struct Planner {
    rng: StdRng,
    /// Candidates by kind (kinds without any are left out).
    candidates: Vec<(FaultKind, Vec<Fault>)>,
    /// The kinds (indexes into `candidates`) still to come in this round.
    bag: Vec<usize>,
}

impl Planner {
    /// The candidate faults for `kinds` on `topology`: every node alone and every pair of
    /// nodes (kill, pause, restart); every node cut off from the rest, every datacenter cut
    /// off from the others, and with `aggressive` every node alone (partition). Unless
    /// `aggressive`, only the faults `cl` survives.
    pub fn new(
        seed: u64,
        topology: &Topology,
        kinds: &[FaultKind],
        cl: Consistency,
        aggressive: bool,
    ) -> Planner {
        let names = topology.names();
        let mut candidates = Vec::new();
        for &kind in kinds {
            let mut faults = Vec::new();
            if kind == FaultKind::Partition {
                if names.len() >= 2 {
                    for n in &names {
                        let rest: Vec<String> = names.iter().filter(|m| *m != n).cloned().collect();
                        faults.push(Fault::Partition {
                            groups: vec![vec![n.clone()], rest],
                        });
                    }
                }
                let dcs = topology.dcs();
                if dcs.len() == 2 {
                    faults.push(Fault::Partition {
                        groups: vec![topology.nodes_in(&dcs[0]), topology.nodes_in(&dcs[1])],
                    });
                } else if dcs.len() > 2 {
                    for dc in &dcs {
                        let rest: Vec<String> = names
                            .iter()
                            .filter(|n| topology.dc_of(n) != Some(dc.as_str()))
                            .cloned()
                            .collect();
                        faults.push(Fault::Partition {
                            groups: vec![topology.nodes_in(dc), rest],
                        });
                    }
                }
                if aggressive && names.len() >= 3 {
                    faults.push(Fault::Partition {
                        groups: names.iter().map(|n| vec![n.clone()]).collect(),
                    });
                }
            } else {
                for (i, a) in names.iter().enumerate() {
                    faults.push(Fault::Nodes {
                        kind,
                        nodes: vec![a.clone()],
                    });
                    // Never every node: clients need someone to talk to.
                    if names.len() >= 3 {
                        for b in &names[i + 1..] {
                            faults.push(Fault::Nodes {
                                kind,
                                nodes: vec![a.clone(), b.clone()],
                            });
                        }
                    }
                }
            }
            faults.retain(|f| aggressive || f.survivable(cl, topology));
            if !faults.is_empty() {
                candidates.push((kind, faults));
            }
        }
        Planner {
            rng: StdRng::seed_from_u64(seed ^ 0x6e65_6d65_7369_7321),
            candidates,
            bag: Vec::new(),
        }
    }

    /// The kinds that have at least one candidate.
    pub fn kinds(&self) -> Vec<FaultKind> {
        self.candidates.iter().map(|(k, _)| *k).collect()
    }

    /// The next window: kinds come in rounds, each kind once per round in a random order (so
    /// that any run of as many windows as kinds exercises every kind), then a random candidate
    /// of the kind.
    pub fn next_window(&mut self) -> Option<PlannedWindow> {
        if self.candidates.is_empty() {
            return None;
        }
        if self.bag.is_empty() {
            self.bag = (0..self.candidates.len()).collect();
            self.bag.shuffle(&mut self.rng);
        }
        let k = self.bag.pop()?;
        let faults = &self.candidates[k].1;
        let fault = faults[self.rng.random_range(0..faults.len())].clone();
        let hold = Duration::from_millis(
            self.rng
                .random_range(HOLD.0.as_millis() as u64..=HOLD.1.as_millis() as u64),
        );
        let rest = Duration::from_millis(
            self.rng
                .random_range(REST.0.as_millis() as u64..=REST.1.as_millis() as u64),
        );
        Some(PlannedWindow { fault, hold, rest })
    }
}

/// How long a node may take to come back (start and convergence) at the end of a window.
pub const RECOVERY_TIMEOUT: Duration = Duration::from_secs(90);

/// What the nemesis shares with the progress line and the report.
#[derive(Debug, Default)]
pub struct NemesisState {
    /// Windows closed so far, and the open one (with `end_us` 0) while a fault is in force.
    pub windows: Vec<FaultWindow>,
    /// The fault in force, for the progress line.
    pub current: Option<String>,
}

/// Runs faults against a cluster.
pub struct Nemesis {
    pub cluster: Arc<Cluster>,
    pub topology: Topology,
    pub consistency: Consistency,
    pub run_start: Instant,
    pub state: Arc<Mutex<NemesisState>>,
    /// Prints a line (the progress line stays intact).
    pub say: Arc<dyn Fn(&str) + Send + Sync>,
}

impl Nemesis {
    fn now_us(&self) -> u64 {
        self.run_start.elapsed().as_micros() as u64
    }

    fn state(&self) -> std::sync::MutexGuard<'_, NemesisState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs windows from `planner` until `deadline` leaves no room for the next one, or `stop`
    /// turns true. Starts after `lead_in`, so that the run has a stretch without faults.
    pub async fn run(
        &self,
        mut planner: Planner,
        lead_in: Duration,
        deadline: Instant,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        if !sleep_or_stop(lead_in, &stop).await {
            return Ok(());
        }
        while let Some(window) = planner.next_window() {
            // Room for the hold and a little recovery before the workload ends.
            if Instant::now() + window.hold + Duration::from_secs(2) > deadline || *stop.borrow() {
                break;
            }
            self.run_window(&window, &stop).await?;
            let rest = window
                .rest
                .min(deadline.saturating_duration_since(Instant::now()));
            if !sleep_or_stop(rest, &stop).await {
                break;
            }
        }
        Ok(())
    }

    async fn run_window(
        &self,
        window: &PlannedWindow,
        stop: &tokio::sync::watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let fault = &window.fault;
        let index = self.state().windows.len() + 1;
        let description = fault.describe();
        let quorum_lost = !fault.survivable(self.consistency, &self.topology);
        let start_us = self.now_us();
        {
            let mut st = self.state();
            st.windows.push(FaultWindow {
                index,
                kind: fault.kind().name().to_string(),
                nodes: fault.affected(),
                description: description.clone(),
                start_us,
                end_us: 0,
                quorum_lost,
            });
            st.current = Some(description.clone());
        }
        (self.say)(&format!(
            "fault {index}: {description} for {:.1} s{}",
            window.hold.as_secs_f64(),
            if quorum_lost {
                " (more than the consistency level tolerates)"
            } else {
                ""
            }
        ));
        let injected = self.inject(fault).await;
        if injected.is_ok() {
            sleep_or_stop(window.hold, stop).await;
        }
        // Heal even when injecting failed halfway.
        let healed = self.heal(fault).await;
        let end_us = self.now_us();
        {
            let mut st = self.state();
            if let Some(w) = st.windows.last_mut() {
                w.end_us = end_us;
            }
            st.current = None;
        }
        injected.with_context(|| format!("injecting fault {index} ({description})"))?;
        healed.with_context(|| format!("healing fault {index} ({description})"))?;
        (self.say)(&format!(
            "fault {index}: healed; the cluster converged {:.1} s after the fault began",
            (end_us - start_us) as f64 / 1e6
        ));
        Ok(())
    }

    async fn inject(&self, fault: &Fault) -> anyhow::Result<()> {
        match fault {
            Fault::Nodes { kind, nodes } => {
                for node in nodes {
                    match kind {
                        FaultKind::Kill => self.cluster.kill_node(node).await?,
                        FaultKind::Pause => self.cluster.pause_node(node).await?,
                        FaultKind::Restart => self.cluster.stop_node(node).await?,
                        FaultKind::Partition => unreachable!("partitions are Fault::Partition"),
                    }
                }
            }
            Fault::Partition { groups } => {
                let cluster = self.cluster.clone();
                let groups = groups.clone();
                tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
                    for (i, a) in groups.iter().enumerate() {
                        for b in &groups[i + 1..] {
                            cluster.partition(a, b)?;
                        }
                    }
                    Ok(())
                })
                .await
                .context("the partition task failed")??;
            }
        }
        Ok(())
    }

    /// Undoes a fault whatever state it was left in, then waits for convergence.
    async fn heal(&self, fault: &Fault) -> anyhow::Result<()> {
        match fault {
            Fault::Nodes { nodes, .. } => {
                for node in nodes {
                    use crate::cluster::ProcessState;
                    match self.cluster.process_state(node)? {
                        ProcessState::Paused => self.cluster.resume_node(node).await?,
                        ProcessState::Stopped | ProcessState::Dead => {
                            self.cluster.start_node(node, RECOVERY_TIMEOUT).await?
                        }
                        ProcessState::Running => {}
                    }
                }
            }
            Fault::Partition { .. } => {
                let cluster = self.cluster.clone();
                tokio::task::spawn_blocking(move || cluster.heal())
                    .await
                    .context("the heal task failed")??;
            }
        }
        self.cluster.wait_converged(RECOVERY_TIMEOUT).await?;
        Ok(())
    }
}

/// Sleeps `d`, or less if `stop` turns true; returns false when stopped.
pub async fn sleep_or_stop(d: Duration, stop: &tokio::sync::watch::Receiver<bool>) -> bool {
    let mut stop = stop.clone();
    if *stop.borrow() {
        return false;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = stop.wait_for(|s| *s) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_dc(n: usize) -> Topology {
        Topology::new((1..=n).map(|k| (format!("node{k}"), "dc1")))
    }

    fn two_dcs() -> Topology {
        Topology::new((1..=6).map(|k| (format!("node{k}"), if k <= 3 { "dc1" } else { "dc2" })))
    }

    fn all_windows(p: &mut Planner, n: usize) -> Vec<PlannedWindow> {
        (0..n).filter_map(|_| p.next_window()).collect()
    }

    #[test]
    fn fault_lists_parse() {
        assert_eq!(
            FaultKind::parse_list("kill, pause,partition,restart").unwrap(),
            FaultKind::ALL.to_vec()
        );
        assert_eq!(
            FaultKind::parse_list("all").unwrap(),
            FaultKind::ALL.to_vec()
        );
        assert!(FaultKind::parse_list("none").unwrap().is_empty());
        assert!(FaultKind::parse_list("kill,nuke").is_err());
    }

    #[test]
    fn quorum_at_rf3_gets_one_node_at_a_time() {
        let t = one_dc(3);
        let mut p = Planner::new(7, &t, &FaultKind::ALL, Consistency::Quorum, false);
        assert_eq!(p.kinds(), FaultKind::ALL.to_vec());
        for w in all_windows(&mut p, 200) {
            assert_eq!(w.fault.affected().len(), 1, "{:?}", w.fault);
            assert!(w.fault.survivable(Consistency::Quorum, &t));
            assert!(w.hold >= HOLD.0 && w.hold <= HOLD.1);
            assert!(w.rest >= REST.0 && w.rest <= REST.1);
        }
    }

    #[test]
    fn local_quorum_on_two_dcs_gets_one_node_per_dc_or_a_dc_split() {
        let t = two_dcs();
        let mut p = Planner::new(11, &t, &FaultKind::ALL, Consistency::LocalQuorum, false);
        let windows = all_windows(&mut p, 400);
        let mut saw_dc_split = false;
        let mut saw_two_nodes = false;
        for w in &windows {
            let affected = w.fault.affected();
            let in_dc1 = affected
                .iter()
                .filter(|n| t.dc_of(n) == Some("dc1"))
                .count();
            let in_dc2 = affected.len() - in_dc1;
            match &w.fault {
                Fault::Partition { groups } if groups[0].len() == 3 && groups.len() == 2 => {
                    saw_dc_split = true
                }
                _ => {
                    assert!(in_dc1 <= 1 && in_dc2 <= 1, "{:?}", w.fault);
                    saw_two_nodes |= affected.len() == 2;
                }
            }
        }
        assert!(saw_dc_split && saw_two_nodes);
    }

    #[test]
    fn every_round_of_windows_exercises_every_kind() {
        let t = one_dc(3);
        let mut p = Planner::new(99, &t, &FaultKind::ALL, Consistency::Quorum, false);
        for _ in 0..5 {
            let mut kinds: Vec<FaultKind> = all_windows(&mut p, 4)
                .iter()
                .map(|w| w.fault.kind())
                .collect();
            kinds.sort();
            assert_eq!(kinds, FaultKind::ALL.to_vec());
        }
    }

    #[test]
    fn aggressive_may_break_the_quorum_and_the_same_seed_replays() {
        let t = one_dc(3);
        let mut a = Planner::new(3, &t, &FaultKind::ALL, Consistency::Quorum, true);
        let mut b = Planner::new(3, &t, &FaultKind::ALL, Consistency::Quorum, true);
        let wa = all_windows(&mut a, 100);
        assert_eq!(wa, all_windows(&mut b, 100));
        assert!(wa
            .iter()
            .any(|w| !w.fault.survivable(Consistency::Quorum, &t)));
    }

    #[test]
    fn a_single_node_cluster_has_nothing_quorum_survives() {
        let t = one_dc(1);
        let mut p = Planner::new(1, &t, &FaultKind::ALL, Consistency::Quorum, false);
        assert!(p.kinds().is_empty());
        assert!(p.next_window().is_none());
    }

    #[test]
    fn descriptions_and_affected_nodes() {
        let f = Fault::Partition {
            groups: vec![vec!["node3".into()], vec!["node1".into(), "node2".into()]],
        };
        assert_eq!(f.describe(), "partition node3 / node1,node2");
        assert_eq!(f.affected(), vec!["node3".to_string()]);
        let k = Fault::Nodes {
            kind: FaultKind::Kill,
            nodes: vec!["node1".into(), "node4".into()],
        };
        assert_eq!(k.describe(), "kill node1,node4");
    }
}
