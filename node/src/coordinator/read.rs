//! The read path for one partition: data from the closest replica, digests from the others the
//! level needs, and on a mismatch a full read, a last-write-wins merge and a blocking repair of
//! the replicas that were behind.
//!
//! A read with a row limit resolved from several replicas is protected against short reads:
//! see [`short_read_cut`].

use std::ops::Bound;

use tokio::sync::mpsc;

use ringdb_ring::{HostId, Progress, QuorumTracker, Requirement, Token};

use super::{expect_data, Answer, ClusterState, Coordinator};
use crate::executor::datapath::PartitionRead;
use crate::executor::keys::ranges_after;
use crate::executor::ExecError;
use crate::metrics as m;
use crate::storage::{PartitionData, Seconds, Slice};
use crate::verbs::{self, VerbRequest, VerbResponse};

impl Coordinator {
    pub(super) async fn read_partition(
        &self,
        read: PartitionRead<'_>,
    ) -> Result<Option<PartitionData>, ExecError> {
        let consistency = read.consistency;
        let (state, ksp, requirement) = self.plan_read(read.keyspace, consistency)?;
        let replicas = ksp.map.replicas(Token(read.partition.token));
        let is_replica = if replicas.contains(&self.config.local) {
            "yes"
        } else {
            "no"
        };
        metrics::counter!(m::COORDINATOR_REQUESTS, "op" => "read", "replica" => is_replica)
            .increment(1);
        let (targets, live) = self.read_targets(&state, &requirement, replicas, consistency)?;
        let request = |digest| VerbRequest::Read {
            table: read.table,
            partition: read.partition.clone(),
            slice: read.slice.clone(),
            now: read.now,
            digest,
        };

        // Phase 1: one data answer and enough digests. A target that fails is replaced by the
        // closest live replica not asked yet whose answer counts, and so is every target still
        // silent after SPECULATIVE_RETRY_AFTER (a replica that died before the failure
        // detector noticed never answers at all: without this the read would wait for its
        // timeout). The tracker follows every live replica; those never asked count as failed
        // once no spare is left.
        let timeout = self.config.read_timeout;
        let started = tokio::time::Instant::now();
        let deadline = started + timeout;
        let speculate_at = started + SPECULATIVE_RETRY_AFTER.min(timeout / 2);
        let (tx, mut answers) = mpsc::channel::<Answer>(live.len().max(1));
        self.send_to(&state, &targets[..1], request(false), timeout, &tx);
        self.send_to(&state, &targets[1..], request(true), timeout, &tx);
        let mut data_hosts: Vec<HostId> = vec![targets[0]];
        let mut asked: Vec<HostId> = targets.clone();
        let mut answered: Vec<HostId> = Vec::new();
        let mut speculated = false;
        let mut tracker = QuorumTracker::new(
            requirement.clone(),
            live.iter().map(|h| (*h, state.dc_of(h))),
        );
        let mut data: Option<Option<PartitionData>> = None;
        let mut data_from = targets[0];
        let mut digests: Vec<(HostId, [u8; 16])> = Vec::new();
        let mut failures: Vec<String> = Vec::new();
        loop {
            let wake = if speculated { deadline } else { speculate_at };
            let progress = match tokio::time::timeout_at(wake, answers.recv()).await {
                Ok(Some((host, Ok(VerbResponse::Data(d))))) if data_hosts.contains(&host) => {
                    answered.push(host);
                    match data {
                        None => {
                            data = Some(d);
                            data_from = host;
                        }
                        // A second data answer (a speculative one) serves as a digest.
                        Some(_) => digests.push((host, verbs::digest_of(&d))),
                    }
                    tracker.on_ack(host)
                }
                Ok(Some((host, Ok(VerbResponse::Digest(d))))) => {
                    answered.push(host);
                    digests.push((host, d));
                    tracker.on_ack(host)
                }
                Ok(Some((host, answer))) => {
                    tracing::debug!(%host, ?answer, "replica failed a read");
                    super::note_failure(&mut failures, || super::failure_reason(host, &answer));
                    answered.push(host);
                    tracker.on_failure(host);
                    let wants_data =
                        data.is_none() && data_hosts.iter().all(|h| answered.contains(h));
                    match pick_spare(&live, &asked, &requirement, &state, state.dc_of(&host)) {
                        Some(spare) => {
                            asked.push(spare);
                            if wants_data {
                                data_hosts.push(spare);
                            }
                            self.send_to(&state, &[spare], request(!wants_data), timeout, &tx);
                        }
                        None => {
                            for h in live.iter().filter(|h| !asked.contains(h)) {
                                tracker.on_failure(*h);
                            }
                            asked = live.clone();
                        }
                    }
                    tracker.progress()
                }
                Ok(None) => Progress::Failed,
                Err(_) if !speculated => {
                    speculated = true;
                    let silent: Vec<HostId> = asked
                        .iter()
                        .filter(|h| !answered.contains(h) && requirement.counts(state.dc_of(h)))
                        .copied()
                        .collect();
                    for host in silent {
                        let wants_data = data.is_none() && data_hosts.contains(&host);
                        let Some(spare) =
                            pick_spare(&live, &asked, &requirement, &state, state.dc_of(&host))
                        else {
                            break;
                        };
                        tracing::debug!(slow = %host, %spare, "speculative read");
                        asked.push(spare);
                        if wants_data {
                            data_hosts.push(spare);
                        }
                        self.send_to(&state, &[spare], request(!wants_data), timeout, &tx);
                    }
                    tracker.progress()
                }
                Err(_) => {
                    return Err(read_timeout(consistency, &tracker, data.is_some()));
                }
            };
            match progress {
                Progress::Satisfied if data.is_some() => break,
                Progress::Satisfied | Progress::Waiting => continue,
                Progress::Failed => {
                    return Err(read_failure(
                        consistency,
                        &tracker,
                        data.is_some(),
                        failures,
                    ));
                }
            }
        }
        drop(tx);
        let data = data.unwrap_or_default();
        // With nothing to compare (one replica asked, as at ONE), the data is not hashed.
        let agreed = digests.is_empty() || {
            let expected = verbs::digest_of(&data);
            digests.iter().all(|(_, d)| *d == expected)
        };
        if agreed {
            if let Some(d) = &data {
                self.replica.observe_read(d);
            }
            return Ok(data);
        }

        // Phase 2: the replicas disagree. Full data from the others, merge, repair.
        metrics::counter!(m::READ_REPAIRS, "phase" => "mismatch").increment(1);
        let digest_hosts: Vec<HostId> = digests.iter().map(|(h, _)| *h).collect();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut versions: Vec<(HostId, Option<PartitionData>)> = vec![(data_from, data)];
        versions.extend(
            self.full_reads(
                &state,
                &requirement,
                &digest_hosts,
                request(false),
                consistency,
                deadline,
            )
            .await?,
        );
        let hosts: Vec<HostId> = versions.iter().map(|(h, _)| *h).collect();

        // Short-read protection: with a row limit, each replica stopped after `limit` rows it
        // holds live, and its answer says nothing past its last row. Once merged, rows one
        // replica holds live may be dead on another, so the merge can come back with fewer
        // live rows than the limit although more exist. The merge is trusted only up to the
        // earliest last row of a replica that reached the limit; when that leaves it short,
        // the replicas are asked again for the rows after that point.
        let reversed = read.slice.reversed;
        let mut slice = read.slice.clone();
        let mut result: Option<PartitionData> = None;
        let mut live = 0usize;
        loop {
            let merged = merge_versions(versions.iter().filter_map(|(_, d)| d.as_ref()), reversed);
            if let Some(merged) = &merged {
                self.repair(&state, read.table, merged, &versions, consistency, deadline)
                    .await?;
            }
            let Some(limit) = slice.limit else {
                result = merge_versions(result.iter().chain(merged.iter()), reversed);
                break;
            };
            let cut = short_read_cut(
                versions.iter().filter_map(|(_, d)| d.as_ref()),
                limit,
                read.now,
                reversed,
            );
            let mut merged = merged;
            if let (Some(m), Some(cut)) = (&mut merged, &cut) {
                m.rows.retain(|r| !past(&r.clustering, cut, reversed));
            }
            live += merged
                .iter()
                .flat_map(|m| m.rows.iter())
                .filter(|r| r.is_live(read.now))
                .count();
            result = merge_versions(result.iter().chain(merged.iter()), reversed);
            let Some(cut) = cut else { break };
            if live >= limit {
                break;
            }
            let base = if slice.ranges.is_empty() {
                vec![(Bound::Unbounded, Bound::Unbounded)]
            } else {
                slice.ranges.clone()
            };
            let ranges = ranges_after(&base, &cut, reversed);
            if ranges.is_empty() {
                break;
            }
            metrics::counter!(m::READ_REPAIRS, "phase" => "short_read").increment(1);
            slice = Slice {
                ranges,
                include_static: false,
                reversed,
                limit: Some(limit),
            };
            versions = self
                .full_reads(
                    &state,
                    &requirement,
                    &hosts,
                    VerbRequest::Read {
                        table: read.table,
                        partition: read.partition.clone(),
                        slice: slice.clone(),
                        now: read.now,
                        digest: false,
                    },
                    consistency,
                    deadline,
                )
                .await?;
        }
        let Some(mut result) = result else {
            return Ok(None);
        };
        self.replica.observe_read(&result);
        if let Some(limit) = read.slice.limit {
            result.truncate_to_live_rows(limit, read.now);
        }
        Ok(Some(result))
    }

    /// Full data of the partition from every one of `hosts`, all of which must answer before
    /// `deadline` (they are the replicas whose answers phase 1 counted).
    async fn full_reads(
        &self,
        state: &ClusterState,
        requirement: &Requirement,
        hosts: &[HostId],
        request: VerbRequest,
        consistency: u16,
        deadline: tokio::time::Instant,
    ) -> Result<Vec<(HostId, Option<PartitionData>)>, ExecError> {
        let timeout = deadline.saturating_duration_since(tokio::time::Instant::now());
        let mut answers = self.dispatch(state, hosts, request, timeout);
        let mut tracker = QuorumTracker::new(
            requirement.clone(),
            hosts.iter().map(|h| (*h, state.dc_of(h))),
        );
        let mut versions = Vec::with_capacity(hosts.len());
        while versions.len() < hosts.len() {
            match tokio::time::timeout_at(deadline, answers.recv()).await {
                Ok(Some((host, answer))) => match expect_data(answer) {
                    Ok(d) => {
                        tracker.on_ack(host);
                        versions.push((host, d));
                    }
                    Err(e) => {
                        tracing::debug!(%host, error = %e, "replica failed a read repair read");
                        tracker.on_failure(host);
                        let reason = format!("replica {host}: {e}");
                        return Err(read_failure(consistency, &tracker, true, vec![reason]));
                    }
                },
                Ok(None) => break,
                Err(_) => return Err(read_timeout(consistency, &tracker, true)),
            }
        }
        Ok(versions)
    }

    /// Writes `merged` to every replica whose answer differed from it, and waits for all of
    /// them (blocking read repair). A repair that fails or times out fails the read: answering
    /// anyway could let a later read at the same level see older data.
    pub(super) async fn repair(
        &self,
        state: &ClusterState,
        table: crate::storage::TableId,
        merged: &PartitionData,
        versions: &[(HostId, Option<PartitionData>)],
        consistency: u16,
        deadline: tokio::time::Instant,
    ) -> Result<(), ExecError> {
        let expected = verbs::digest_of(&Some(merged.clone()));
        let stale: Vec<HostId> = versions
            .iter()
            .filter(|(_, d)| verbs::digest_of(d) != expected)
            .map(|(h, _)| *h)
            .collect();
        if stale.is_empty() {
            return Ok(());
        }
        metrics::counter!(m::READ_REPAIRS, "phase" => "repaired").increment(stale.len() as u64);
        tracing::debug!(replicas = stale.len(), "read repair");
        let timeout = deadline.saturating_duration_since(tokio::time::Instant::now());
        let mut answers = self.dispatch(
            state,
            &stale,
            VerbRequest::mutate(vec![merged.to_mutation(table)]),
            timeout,
        );
        let mut repaired = 0;
        while repaired < stale.len() {
            match tokio::time::timeout_at(deadline, answers.recv()).await {
                Ok(Some((_, Ok(VerbResponse::Applied)))) => repaired += 1,
                Ok(Some((host, answer))) => {
                    tracing::debug!(%host, ?answer, "read repair write failed");
                    break;
                }
                Ok(None) | Err(_) => break,
            }
        }
        if repaired < stale.len() {
            metrics::counter!(m::COORDINATOR_ERRORS, "kind" => "read_timeout").increment(1);
            return Err(ExecError::ReadTimeout {
                consistency,
                received: (versions.len() - stale.len() + repaired) as i32,
                block_for: versions.len() as i32,
                data_present: true,
            });
        }
        Ok(())
    }
}

/// How long a read waits for its targets before also asking spare replicas in place of those
/// still silent (Cassandra's speculative retry, with a fixed delay).
pub const SPECULATIVE_RETRY_AFTER: std::time::Duration = std::time::Duration::from_millis(100);

/// The closest live replica not asked yet whose answer counts, preferably in `dc`.
fn pick_spare(
    live: &[HostId],
    asked: &[HostId],
    requirement: &ringdb_ring::Requirement,
    state: &ClusterState,
    dc: &str,
) -> Option<HostId> {
    live.iter()
        .filter(|h| !asked.contains(h) && requirement.counts(state.dc_of(h)))
        .min_by_key(|h| state.dc_of(h) != dc)
        .copied()
}

/// Where a merge of replica answers read with a row `limit` stops being trustworthy: the
/// earliest (in slice order) last row of any answer that reached the limit, which therefore may
/// have more rows past it that the merge does not know about. `None` when no answer reached its
/// limit: then every answer was complete and so is their merge.
pub(super) fn short_read_cut<'a>(
    versions: impl Iterator<Item = &'a PartitionData>,
    limit: usize,
    now: Seconds,
    reversed: bool,
) -> Option<Vec<u8>> {
    versions
        .filter(|d| d.rows.iter().filter(|r| r.is_live(now)).count() >= limit)
        .filter_map(|d| d.rows.last().map(|r| r.clustering.clone()))
        .reduce(|a, b| if past(&a, &b, reversed) { b } else { a })
}

/// Whether `clustering` comes after `cut` in slice order.
fn past(clustering: &[u8], cut: &[u8], reversed: bool) -> bool {
    if reversed {
        clustering < cut
    } else {
        clustering > cut
    }
}

/// Merges replica answers for the same partition and slice; `None` if none holds anything.
pub(super) fn merge_versions<'a>(
    versions: impl Iterator<Item = &'a PartitionData>,
    reversed: bool,
) -> Option<PartitionData> {
    versions.fold(None, |acc: Option<PartitionData>, d| match acc {
        None => Some(d.clone()),
        Some(a) => Some(PartitionData::merge_in_order(&a, d, reversed)),
    })
}

fn read_timeout(consistency: u16, tracker: &QuorumTracker, data_present: bool) -> ExecError {
    metrics::counter!(m::COORDINATOR_ERRORS, "kind" => "read_timeout").increment(1);
    ExecError::ReadTimeout {
        consistency,
        received: tracker.received() as i32,
        block_for: tracker.block_for() as i32,
        data_present,
    }
}

fn read_failure(
    consistency: u16,
    tracker: &QuorumTracker,
    data_present: bool,
    reasons: Vec<String>,
) -> ExecError {
    metrics::counter!(m::COORDINATOR_ERRORS, "kind" => "read_failure").increment(1);
    ExecError::ReadFailure {
        consistency,
        received: tracker.received() as i32,
        block_for: tracker.block_for() as i32,
        num_failures: tracker.failures().max(1) as i32,
        data_present,
        reasons,
    }
}

#[cfg(test)]
mod tests {
    use std::ops::Bound;
    use std::time::Duration;

    use ringdb_ring::ConsistencyLevel;

    use super::super::testing::{int_partition, TestCluster};
    use crate::executor::datapath::{PartitionRead, RangeRead};
    use crate::schema::TableDef;
    use crate::storage::{
        Cell, CellKey, Deletion, Liveness, Mutation, PartitionData, RangeDeletion, RowUpdate,
        ScanRange, Slice,
    };

    const TABLE: &str = "CREATE TABLE ks.t (k int, c int, v text, PRIMARY KEY (k, c))";
    const NOW: i64 = 1_000;

    fn clustering(c: u8) -> Vec<u8> {
        vec![0, c]
    }

    /// Rows `cs` of partition 1, written at `timestamp`.
    fn rows(table: &TableDef, cs: impl Iterator<Item = u8>, timestamp: i64) -> Mutation {
        let v = table.column("v").expect("column v").id;
        Mutation {
            table: table.id,
            partition: int_partition(1),
            partition_deletion: None,
            range_deletions: vec![],
            rows: cs
                .map(|c| RowUpdate {
                    clustering: clustering(c),
                    liveness: Some(Liveness::new(timestamp)),
                    cells: vec![(
                        CellKey {
                            column: v,
                            path: None,
                        },
                        Cell::live(timestamp, vec![c]),
                    )],
                    ..RowUpdate::default()
                })
                .collect(),
        }
    }

    /// A deletion of rows `first..=last` of partition 1 at `timestamp`.
    fn delete_range(table: &TableDef, first: u8, last: u8, timestamp: i64) -> Mutation {
        Mutation {
            table: table.id,
            partition: int_partition(1),
            partition_deletion: None,
            range_deletions: vec![RangeDeletion {
                start: Bound::Included(clustering(first)),
                end: Bound::Included(clustering(last)),
                deletion: Deletion::new(timestamp, NOW),
            }],
            rows: vec![],
        }
    }

    async fn read(
        cluster: &TestCluster,
        table: &TableDef,
        limit: usize,
        reversed: bool,
    ) -> Option<PartitionData> {
        let slice = Slice {
            ranges: vec![],
            include_static: true,
            reversed,
            limit: Some(limit),
        };
        cluster.nodes[0]
            .coordinator
            .read_partition(PartitionRead {
                keyspace: "ks",
                table: table.id,
                partition: &int_partition(1),
                slice: &slice,
                now: NOW,
                consistency: ConsistencyLevel::All.code(),
            })
            .await
            .expect("read at ALL")
    }

    fn live_clusterings(data: &Option<PartitionData>) -> Vec<u8> {
        data.iter()
            .flat_map(|d| d.rows.iter())
            .filter(|r| r.is_live(NOW))
            .map(|r| r.clustering[1])
            .collect()
    }

    /// One replica holds rows 1..=20; the other missed them but holds a newer deletion of
    /// `deleted`. Every row the first returns under the limit is dead once merged: the read must
    /// go on past them rather than answer short.
    async fn diverged(deleted: (u8, u8)) -> (TestCluster, std::sync::Arc<TableDef>) {
        let cluster = TestCluster::start(&["r1", "r2"], Duration::from_secs(2)).await;
        let table = cluster.create_table(2, TABLE);
        cluster.nodes[0]
            .engine
            .apply(&rows(&table, 1..=20, 1))
            .expect("apply rows");
        cluster.nodes[1]
            .engine
            .apply(&delete_range(&table, deleted.0, deleted.1, 2))
            .expect("apply deletion");
        (cluster, table)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn limited_read_is_not_short_when_replicas_disagree_on_live_rows() {
        let (cluster, table) = diverged((1, 12)).await;
        let data = read(&cluster, &table, 5, false).await;
        assert_eq!(live_clusterings(&data), vec![13, 14, 15, 16, 17]);
        // Both replicas now agree: the deletion and the rows read reached both.
        let again = read(&cluster, &table, 5, false).await;
        assert_eq!(live_clusterings(&again), vec![13, 14, 15, 16, 17]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reversed_limited_read_is_not_short_either() {
        let (cluster, table) = diverged((9, 20)).await;
        let data = read(&cluster, &table, 3, true).await;
        assert_eq!(live_clusterings(&data), vec![8, 7, 6]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn everything_deleted_reads_as_no_live_rows() {
        let (cluster, table) = diverged((1, 20)).await;
        let data = read(&cluster, &table, 4, false).await;
        assert_eq!(live_clusterings(&data), Vec::<u8>::new());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn scans_with_a_row_limit_are_not_short_either() {
        let (cluster, table) = diverged((1, 12)).await;
        let slice = Slice {
            ranges: vec![],
            include_static: true,
            reversed: false,
            limit: Some(5),
        };
        let partitions = cluster.nodes[0]
            .coordinator
            .scan_range(RangeRead {
                keyspace: "ks",
                table: table.id,
                range: &ScanRange {
                    after: None,
                    end_token: None,
                },
                slice: &slice,
                max_partitions: 10,
                now: NOW,
                consistency: ConsistencyLevel::All.code(),
            })
            .await
            .expect("scan at ALL");
        assert_eq!(partitions.len(), 1);
        let data = partitions.into_iter().next();
        assert_eq!(live_clusterings(&data), vec![13, 14, 15, 16, 17]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reading_shows_the_coordinator_clock_newer_timestamps() {
        let cluster = TestCluster::start(&["r1", "r2"], Duration::from_secs(2)).await;
        let table = cluster.create_table(2, TABLE);
        let ahead = cluster.nodes[0].replica.clock().wall_micros() + 30_000_000;
        for node in &cluster.nodes[1..] {
            node.engine
                .apply(&rows(&table, 1..=1, ahead))
                .expect("apply");
        }
        let data = read(&cluster, &table, 5, false).await;
        assert_eq!(live_clusterings(&data), vec![1]);
        assert!(
            cluster.nodes[0].replica.clock().now() > ahead,
            "a write stamped after the read must be newer than what it saw"
        );
    }
}
