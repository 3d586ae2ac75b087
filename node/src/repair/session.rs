//! One repair session, on the repair coordinator: the plan (which keyspaces, tables and ranges),
//! and the repair of each range — trees, comparison, streaming of the differing sub-ranges.
//! See the module documentation of [`crate::repair`] for the protocol.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringdb_ring::merkle::differences;
use ringdb_ring::{HostId, MerkleTree, TokenRange};
use tokio::sync::watch;

use super::tree::scan_pieces;
use super::{
    KeyspaceReport, RangeFailure, RepairError, RepairOptions, RepairReport, SkippedKeyspace,
    MAX_REPORTED_FAILURES, PAGE_BYTES, PAGE_PARTITIONS, STREAM_TIMEOUT, TREE_TIMEOUT,
    WRITE_BATCH_BYTES,
};
use crate::coordinator::placement::ClusterState;
use crate::coordinator::Coordinator;
use crate::metrics as m;
use crate::schema::{is_system_keyspace, Schema, TableDef};
use crate::storage::{Mutation, PartitionData, PartitionKey, ScanRange};
use crate::verbs::{self, VerbRequest, VerbResponse};

/// One keyspace of the plan.
struct KeyspacePlan {
    name: String,
    tables: Vec<Arc<TableDef>>,
    /// The ranges to repair, each with its replicas (this node among them).
    ranges: Vec<(TokenRange, Vec<HostId>)>,
}

/// A planned session, ready to run.
pub struct Session {
    coordinator: Arc<Coordinator>,
    plan: Vec<KeyspacePlan>,
    report: RepairReport,
    shutdown: watch::Receiver<bool>,
}

/// What repairing one range did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RangeStats {
    /// Runs of differing leaves.
    pub subranges: u64,
    /// Partitions read from other replicas.
    pub partitions_fetched: u64,
    /// Their bytes.
    pub bytes_fetched: u64,
    /// Partitions written to replicas (one per replica written).
    pub partitions_streamed: u64,
    /// Their bytes.
    pub bytes_streamed: u64,
}

/// How repairing one range ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeOutcome {
    /// Every replica's tree equals this node's.
    InSync,
    /// Trees differed; the differing sub-ranges were streamed.
    Repaired(RangeStats),
    /// The range could not be compared, or not brought in sync.
    Failed {
        /// What went wrong.
        error: String,
        /// Whether trees were compared (and differed) before the failure.
        compared: bool,
        /// What was streamed before the failure.
        stats: RangeStats,
    },
}

/// Publishes reports; marks the session finished even if the task ends abnormally, so that the
/// node never stays "busy" with a session that is gone.
struct Publisher {
    tx: watch::Sender<RepairReport>,
    started: Instant,
}

impl Publisher {
    fn update(&self, f: impl FnOnce(&mut RepairReport)) {
        let elapsed = self.started.elapsed().as_millis() as u64;
        self.tx.send_modify(|r| {
            f(r);
            r.elapsed_ms = elapsed;
        });
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        if !self.tx.borrow().finished {
            let elapsed = self.started.elapsed().as_millis() as u64;
            self.tx.send_modify(|r| {
                let left = r.ranges_total.saturating_sub(r.ranges_done);
                r.ranges_failed += left.max(1);
                r.ranges_done = r.ranges_total;
                r.failures.push(RangeFailure {
                    keyspace: String::new(),
                    table: String::new(),
                    range: String::new(),
                    error: "the repair session ended abnormally".into(),
                });
                r.current = None;
                r.elapsed_ms = elapsed;
                r.finished = true;
            });
        }
    }
}

impl Session {
    /// Works out what `options` asks to repair on the current ring and schema.
    pub fn plan(
        coordinator: Arc<Coordinator>,
        schema: &Schema,
        options: &RepairOptions,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Session, RepairError> {
        let state = coordinator.state();
        let local = state.local;
        let ring = state.placement.ring();
        if ring.endpoint(&local).is_none() {
            return Err(RepairError::NotInRing);
        }
        let keyspaces: Vec<_> = match &options.keyspace {
            Some(name) => {
                if is_system_keyspace(name) {
                    return Err(RepairError::Invalid(format!(
                        "'{name}' is a system keyspace: system keyspaces are local or on every \
                         node and are not repaired"
                    )));
                }
                let ks = schema
                    .keyspace(name)
                    .ok_or_else(|| RepairError::UnknownKeyspace(name.clone()))?;
                vec![ks.clone()]
            }
            None => {
                if options.table.is_some() {
                    return Err(RepairError::Invalid(
                        "a table needs its keyspace: KEYSPACE TABLE".into(),
                    ));
                }
                schema.user_keyspaces().cloned().collect()
            }
        };
        let mut plan = Vec::new();
        let mut report = RepairReport {
            id: uuid::Uuid::new_v4(),
            host_id: local.to_string(),
            address: state
                .addr_of(&local)
                .map(|a| a.ip().to_string())
                .unwrap_or_default(),
            primary_range_only: options.primary_range_only,
            ..RepairReport::default()
        };
        for ks in keyspaces {
            let tables: Vec<Arc<TableDef>> = match &options.table {
                Some(name) => {
                    let table =
                        schema
                            .table(&ks.name, name)
                            .ok_or_else(|| RepairError::UnknownTable {
                                keyspace: ks.name.clone(),
                                table: name.clone(),
                            })?;
                    vec![table.clone()]
                }
                None => schema
                    .tables(&ks.name)
                    .filter(|t| !t.is_virtual)
                    .cloned()
                    .collect(),
            };
            let placement = match state.placement.keyspace(&ks.replication) {
                Ok(p) => p,
                Err(e) => {
                    report.skipped.push(SkippedKeyspace {
                        keyspace: ks.name.clone(),
                        reason: format!("its replication cannot be placed on this ring: {e}"),
                    });
                    continue;
                }
            };
            let rf = placement.replication.total_rf();
            if rf <= 1 {
                report.skipped.push(SkippedKeyspace {
                    keyspace: ks.name.clone(),
                    reason: format!(
                        "replication factor {rf}: a single copy has nothing to compare"
                    ),
                });
                continue;
            }
            let primary: BTreeSet<TokenRange> = if options.primary_range_only {
                ring.ranges_for(&local).into_iter().collect()
            } else {
                BTreeSet::new()
            };
            let ranges: Vec<(TokenRange, Vec<HostId>)> = placement
                .map
                .ranges()
                .filter(|(range, replicas)| {
                    replicas.contains(&local)
                        && (!options.primary_range_only || primary.contains(range))
                })
                .filter(|(_, replicas)| replicas.len() > 1)
                .map(|(range, replicas)| (range, replicas.to_vec()))
                .collect();
            if ranges.is_empty() {
                report.skipped.push(SkippedKeyspace {
                    keyspace: ks.name.clone(),
                    reason: format!(
                        "no range of this node has another replica ({} node(s) in the ring for \
                         replication factor {rf})",
                        ring.topology().len()
                    ),
                });
                continue;
            }
            if tables.is_empty() {
                report.skipped.push(SkippedKeyspace {
                    keyspace: ks.name.clone(),
                    reason: "no tables".into(),
                });
                continue;
            }
            report.ranges_total += (tables.len() * ranges.len()) as u64;
            report.keyspaces.push(KeyspaceReport {
                name: ks.name.clone(),
                replication_factor: rf,
                tables: tables.iter().map(|t| t.name.clone()).collect(),
                ranges: ranges.len() as u64,
            });
            plan.push(KeyspacePlan {
                name: ks.name.clone(),
                tables,
                ranges,
            });
        }
        Ok(Session {
            coordinator,
            plan,
            report,
            shutdown,
        })
    }

    /// The report before the first range.
    pub fn initial_report(&self) -> RepairReport {
        self.report.clone()
    }

    /// Repairs every planned range in turn, publishing a report after each; ends with the
    /// summary (`finished`).
    pub async fn run(self, tx: watch::Sender<RepairReport>) {
        let publisher = Publisher {
            tx,
            started: Instant::now(),
        };
        let id = self.report.id;
        tracing::info!(%id, ranges = self.report.ranges_total, "repair started");
        let mut shutdown = self.shutdown.clone();
        let repairer = RangeRepairer {
            coordinator: &self.coordinator,
        };
        for ks in &self.plan {
            for table in &ks.tables {
                for (range, replicas) in &ks.ranges {
                    let label = format!("{}.{} {range}", ks.name, table.name);
                    publisher.update(|r| r.current = Some(label.clone()));
                    let outcome = if *shutdown.borrow() {
                        failed("the node is shutting down")
                    } else {
                        tokio::select! {
                            outcome = repairer.repair(table, *range, replicas) => outcome,
                            _ = crate::server::stopping(&mut shutdown) => {
                                failed("the node is shutting down")
                            }
                        }
                    };
                    record(&publisher, &ks.name, table, *range, outcome);
                }
            }
        }
        publisher.update(|r| {
            r.current = None;
            r.finished = true;
        });
        let report = publisher.tx.borrow().clone();
        tracing::info!(
            %id,
            compared = report.ranges_compared,
            out_of_sync = report.ranges_out_of_sync,
            failed = report.ranges_failed,
            partitions_streamed = report.partitions_streamed,
            bytes_streamed = report.bytes_streamed,
            elapsed_ms = report.elapsed_ms,
            "repair finished"
        );
    }
}

fn failed(error: &str) -> RangeOutcome {
    RangeOutcome::Failed {
        error: error.to_string(),
        compared: false,
        stats: RangeStats::default(),
    }
}

/// Adds one range's outcome to the report and the metrics.
fn record(
    publisher: &Publisher,
    keyspace: &str,
    table: &TableDef,
    range: TokenRange,
    outcome: RangeOutcome,
) {
    let (label, stats) = match &outcome {
        RangeOutcome::InSync => ("in_sync", RangeStats::default()),
        RangeOutcome::Repaired(stats) => ("repaired", *stats),
        RangeOutcome::Failed { stats, .. } => ("failed", *stats),
    };
    metrics::counter!(m::REPAIR_RANGES, "outcome" => label).increment(1);
    if let RangeOutcome::Failed { error, .. } = &outcome {
        tracing::warn!(%keyspace, table = %table.name, %range, %error, "repair of a range failed");
    }
    publisher.update(|r| {
        r.ranges_done += 1;
        match &outcome {
            RangeOutcome::InSync => r.ranges_compared += 1,
            RangeOutcome::Repaired(_) => {
                r.ranges_compared += 1;
                r.ranges_out_of_sync += 1;
            }
            RangeOutcome::Failed {
                error, compared, ..
            } => {
                if *compared {
                    r.ranges_compared += 1;
                    r.ranges_out_of_sync += 1;
                }
                r.ranges_failed += 1;
                if r.failures.len() < MAX_REPORTED_FAILURES {
                    r.failures.push(RangeFailure {
                        keyspace: keyspace.to_string(),
                        table: table.name.clone(),
                        range: range.to_string(),
                        error: error.clone(),
                    });
                }
            }
        }
        r.subranges_out_of_sync += stats.subranges;
        r.partitions_fetched += stats.partitions_fetched;
        r.bytes_fetched += stats.bytes_fetched;
        r.partitions_streamed += stats.partitions_streamed;
        r.bytes_streamed += stats.bytes_streamed;
    });
}

/// A run of adjacent differing leaves over which the replicas fall into the same groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafRun {
    /// Its first leaf.
    pub first: usize,
    /// Its last leaf (inclusive).
    pub last: usize,
    /// The replicas grouped by their leaf hashes (equal hashes: the same data), as indices
    /// into the trees given to [`leaf_runs`]; the group of tree 0 comes first.
    pub groups: Vec<Vec<usize>>,
}

/// Groups the differing leaves (`differing`, sorted) of `trees` (all of one shape) into runs
/// of adjacent leaves where the replicas fall into the same groups.
pub fn leaf_runs(trees: &[&MerkleTree], differing: &BTreeSet<usize>) -> Vec<LeafRun> {
    let mut runs: Vec<LeafRun> = Vec::new();
    for &leaf in differing {
        // Each tree's group is the index of the first tree with the same leaf hash.
        let group_of: Vec<usize> = (0..trees.len())
            .map(|i| {
                let hash = trees[i].leaf_hashes()[leaf];
                (0..=i)
                    .find(|&j| trees[j].leaf_hashes()[leaf] == hash)
                    .unwrap_or(i)
            })
            .collect();
        let mut groups: Vec<Vec<usize>> = Vec::new();
        let mut leaders: Vec<usize> = Vec::new();
        for (i, &leader) in group_of.iter().enumerate() {
            match leaders.iter().position(|&l| l == leader) {
                Some(g) => groups[g].push(i),
                None => {
                    leaders.push(leader);
                    groups.push(vec![i]);
                }
            }
        }
        match runs.last_mut() {
            Some(run) if run.last + 1 == leaf && run.groups == groups => run.last = leaf,
            _ => runs.push(LeafRun {
                first: leaf,
                last: leaf,
                groups,
            }),
        }
    }
    runs
}

/// The range covered by leaves `first..=last` of `tree`.
fn run_range(tree: &MerkleTree, first: usize, last: usize) -> Option<TokenRange> {
    let start = tree.leaf_range(first)?.start;
    let end = tree.leaf_range(last)?.end;
    Some(TokenRange::new(start, end))
}

/// Repairs ranges through a coordinator.
struct RangeRepairer<'a> {
    coordinator: &'a Coordinator,
}

impl RangeRepairer<'_> {
    fn local(&self) -> HostId {
        self.coordinator.config().local
    }

    /// Sends `request` to `hosts` and waits for every answer (each bounded by `timeout`), in
    /// the order of `hosts`.
    async fn ask_all(
        &self,
        state: &ClusterState,
        hosts: &[HostId],
        request: VerbRequest,
        timeout: Duration,
    ) -> Vec<(HostId, Result<VerbResponse, String>)> {
        let mut answers = self.coordinator.dispatch(state, hosts, request, timeout);
        let mut got = Vec::with_capacity(hosts.len());
        while got.len() < hosts.len() {
            match answers.recv().await {
                Some(answer) => got.push(answer),
                None => break,
            }
        }
        let mut ordered = Vec::with_capacity(hosts.len());
        for host in hosts {
            let answer = match got.iter().position(|(h, _)| h == host) {
                Some(i) => got.swap_remove(i).1,
                None => Err("no answer".to_string()),
            };
            ordered.push((*host, answer));
        }
        ordered
    }

    fn describe(&self, state: &ClusterState, host: &HostId) -> String {
        match state.addr_of(host) {
            Some(addr) => addr.ip().to_string(),
            None => host.to_string(),
        }
    }

    /// Merkle trees of `table` over `range` from `hosts`, at `depth` or their own choice.
    async fn trees(
        &self,
        state: &ClusterState,
        table: &TableDef,
        range: TokenRange,
        hosts: &[HostId],
        depth: Option<u8>,
    ) -> Result<Vec<(HostId, MerkleTree)>, String> {
        let request = VerbRequest::MerkleTree {
            table: table.id,
            start: range.start.0,
            end: range.end.0,
            depth,
        };
        let mut trees = Vec::with_capacity(hosts.len());
        for (host, answer) in self.ask_all(state, hosts, request, TREE_TIMEOUT).await {
            let who = self.describe(state, &host);
            match answer {
                Ok(VerbResponse::MerkleTree(tree)) => {
                    if tree.range() != range || depth.is_some_and(|d| d != tree.depth()) {
                        return Err(format!(
                            "{who} sent a Merkle tree of the wrong shape ({:?})",
                            tree
                        ));
                    }
                    trees.push((host, *tree));
                }
                Ok(VerbResponse::Error(e)) => return Err(format!("Merkle tree from {who}: {e}")),
                Ok(other) => {
                    return Err(format!(
                        "Merkle tree from {who}: unexpected answer {}",
                        short(&other)
                    ))
                }
                Err(e) => return Err(format!("Merkle tree from {who}: {e}")),
            }
        }
        Ok(trees)
    }

    /// Repairs one range of one table: see the module documentation of [`crate::repair`].
    async fn repair(
        &self,
        table: &TableDef,
        range: TokenRange,
        replicas: &[HostId],
    ) -> RangeOutcome {
        let state = self.coordinator.state();
        let local = self.local();
        let down: Vec<String> = replicas
            .iter()
            .filter(|h| !state.is_alive(h))
            .map(|h| self.describe(&state, h))
            .collect();
        if !down.is_empty() {
            return failed(&format!(
                "replica {} down: the range cannot be compared",
                down.join(", ")
            ));
        }
        // This node first: its tree is the one the others are compared with.
        let mut hosts: Vec<HostId> = vec![local];
        hosts.extend(replicas.iter().filter(|h| **h != local));

        let mut trees = match self.trees(&state, table, range, &hosts, None).await {
            Ok(t) => t,
            Err(e) => return failed(&e),
        };
        let depth = trees.iter().map(|(_, t)| t.depth()).max().unwrap_or(0);
        let shallow: Vec<HostId> = trees
            .iter()
            .filter(|(_, t)| t.depth() != depth)
            .map(|(h, _)| *h)
            .collect();
        if !shallow.is_empty() {
            let again = match self
                .trees(&state, table, range, &shallow, Some(depth))
                .await
            {
                Ok(t) => t,
                Err(e) => return failed(&e),
            };
            for (host, tree) in again {
                if let Some(slot) = trees.iter_mut().find(|(h, _)| *h == host) {
                    slot.1 = tree;
                }
            }
        }

        let (_, mine) = &trees[0];
        let leaf_count = mine.leaf_count();
        let mut differing: BTreeSet<usize> = BTreeSet::new();
        for (host, theirs) in &trees[1..] {
            let found = match differences(mine, theirs) {
                Ok(d) => d,
                Err(e) => return failed(&format!("cannot compare trees: {e}")),
            };
            for d in &found {
                tracing::debug!(
                    table = %table.name,
                    range = %d.range,
                    peer = %self.describe(&state, host),
                    local_partitions = d.local_partitions,
                    remote_partitions = d.remote_partitions,
                    "replicas differ"
                );
                differing.extend((d.first_leaf..d.first_leaf + d.leaves).map(|i| i % leaf_count));
            }
        }
        if differing.is_empty() {
            return RangeOutcome::InSync;
        }

        let tree_refs: Vec<&MerkleTree> = trees.iter().map(|(_, t)| t).collect();
        let runs = leaf_runs(&tree_refs, &differing);
        let mut stats = RangeStats {
            subranges: runs.len() as u64,
            ..RangeStats::default()
        };
        for run in &runs {
            let Some(sub) = run_range(mine, run.first, run.last) else {
                continue;
            };
            let groups: Vec<Vec<HostId>> = run
                .groups
                .iter()
                .map(|g| g.iter().map(|&i| trees[i].0).collect())
                .collect();
            if let Err(error) = self
                .stream_subrange(&state, table, sub, &groups, &mut stats)
                .await
            {
                return RangeOutcome::Failed {
                    error,
                    compared: true,
                    stats,
                };
            }
        }
        RangeOutcome::Repaired(stats)
    }

    /// Brings the replicas of `groups` in sync over `sub`: pages of partitions from one replica
    /// per group (this node for its own), merged, and written to every replica of each group
    /// whose copy differs from the merge.
    async fn stream_subrange(
        &self,
        state: &ClusterState,
        table: &TableDef,
        sub: TokenRange,
        groups: &[Vec<HostId>],
        stats: &mut RangeStats,
    ) -> Result<(), String> {
        let local = self.local();
        let readers: Vec<HostId> = groups
            .iter()
            .map(|g| if g.contains(&local) { local } else { g[0] })
            .collect();
        for piece in scan_pieces(sub) {
            let mut after = piece.after.clone();
            loop {
                let request = VerbRequest::RepairRead {
                    table: table.id,
                    range: ScanRange {
                        after: after.clone(),
                        end_token: piece.end_token,
                    },
                    max_partitions: PAGE_PARTITIONS,
                    max_bytes: PAGE_BYTES,
                };
                let mut pages: Vec<(Vec<PartitionData>, bool)> = Vec::with_capacity(groups.len());
                for (host, answer) in self.ask_all(state, &readers, request, STREAM_TIMEOUT).await {
                    let who = self.describe(state, &host);
                    match answer {
                        Ok(VerbResponse::RepairPage {
                            partitions,
                            complete,
                        }) => {
                            if host != local {
                                stats.partitions_fetched += partitions.len() as u64;
                                stats.bytes_fetched += partitions
                                    .iter()
                                    .map(|p| verbs::encoded_len(p).unwrap_or(0) as u64)
                                    .sum::<u64>();
                            }
                            pages.push((partitions, complete));
                        }
                        Ok(VerbResponse::Error(e)) => return Err(format!("reading {who}: {e}")),
                        Ok(other) => {
                            return Err(format!(
                                "reading {who}: unexpected answer {}",
                                short(&other)
                            ))
                        }
                        Err(e) => return Err(format!("reading {who}: {e}")),
                    }
                }
                // Every page is complete up to the last partition of any page that was cut.
                let complete_until: Option<PartitionKey> = pages
                    .iter()
                    .filter(|(parts, complete)| !complete && !parts.is_empty())
                    .filter_map(|(parts, _)| parts.last().map(|p| p.partition.clone()))
                    .min();
                let outboxes = reconcile(table, &pages, complete_until.as_ref());
                self.write_back(state, groups, outboxes, stats).await?;
                match complete_until {
                    Some(last) => after = Some(last),
                    None => break,
                }
            }
        }
        Ok(())
    }

    /// Writes each group's mutations to every replica of the group, in bounded batches.
    async fn write_back(
        &self,
        state: &ClusterState,
        groups: &[Vec<HostId>],
        outboxes: Vec<Vec<Mutation>>,
        stats: &mut RangeStats,
    ) -> Result<(), String> {
        for (group, mutations) in groups.iter().zip(outboxes) {
            let mut batch: Vec<Mutation> = Vec::new();
            let mut batch_bytes = 0usize;
            let mut pending = mutations.into_iter().peekable();
            while let Some(mutation) = pending.next() {
                let size = verbs::encoded_len(&mutation)?;
                batch_bytes += size;
                batch.push(mutation);
                let last = pending.peek().is_none();
                if batch_bytes < WRITE_BATCH_BYTES && !last {
                    continue;
                }
                let count = batch.len() as u64;
                let bytes = batch_bytes as u64;
                let request = VerbRequest::mutate(std::mem::take(&mut batch));
                batch_bytes = 0;
                for (host, answer) in self.ask_all(state, group, request, STREAM_TIMEOUT).await {
                    let who = self.describe(state, &host);
                    match answer {
                        Ok(VerbResponse::Applied) => {
                            stats.partitions_streamed += count;
                            stats.bytes_streamed += bytes;
                            metrics::counter!(m::REPAIR_PARTITIONS_STREAMED).increment(count);
                            metrics::counter!(m::REPAIR_BYTES_STREAMED).increment(bytes);
                        }
                        Ok(VerbResponse::Error(e)) => return Err(format!("writing to {who}: {e}")),
                        Ok(other) => {
                            return Err(format!(
                                "writing to {who}: unexpected answer {}",
                                short(&other)
                            ))
                        }
                        Err(e) => return Err(format!("writing to {who}: {e}")),
                    }
                }
            }
        }
        Ok(())
    }
}

/// Merges one page per replica group partition by partition (up to `until`, or all when `None`)
/// and returns, per group, the merged partitions its copy lacks or differs from.
pub fn reconcile(
    table: &TableDef,
    pages: &[(Vec<PartitionData>, bool)],
    until: Option<&PartitionKey>,
) -> Vec<Vec<Mutation>> {
    let mut by_key: BTreeMap<&PartitionKey, Vec<Option<&PartitionData>>> = BTreeMap::new();
    for (group, (parts, _)) in pages.iter().enumerate() {
        for p in parts {
            if until.is_some_and(|u| p.partition > *u) {
                continue;
            }
            by_key
                .entry(&p.partition)
                .or_insert_with(|| vec![None; pages.len()])[group] = Some(p);
        }
    }
    let mut outboxes: Vec<Vec<Mutation>> = vec![Vec::new(); pages.len()];
    for versions in by_key.into_values() {
        let merged =
            versions
                .iter()
                .flatten()
                .fold(None, |acc: Option<PartitionData>, p| match acc {
                    None => Some((*p).clone()),
                    Some(a) => Some(PartitionData::merge(&a, p)),
                });
        let Some(merged) = merged else { continue };
        let mut mutation: Option<Mutation> = None;
        for (group, version) in versions.iter().enumerate() {
            if version.is_some_and(|v| *v == merged) {
                continue;
            }
            let m = mutation.get_or_insert_with(|| merged.to_mutation(table.id));
            outboxes[group].push(m.clone());
        }
    }
    outboxes
}

/// A short description of an unexpected answer (not a whole tree or page).
fn short(answer: &VerbResponse) -> String {
    let text = format!("{answer:?}");
    match text.char_indices().nth(120) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text,
    }
}
