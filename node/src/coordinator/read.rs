//! The read path for one partition: data from the closest replica, digests from the others the
//! level needs, and on a mismatch a full read, a last-write-wins merge and a blocking repair of
//! the replicas that were behind.
//!
//! Known limit: a read with a row limit that is resolved from several replicas can come back
//! short when replicas disagree about which rows are live (Cassandra's "short read protection"
//! fetches more in that case; ringdb does not yet).

use tokio::sync::mpsc;

use ringdb_ring::{HostId, Progress, QuorumTracker, Token};

use super::{expect_data, Answer, ClusterState, Coordinator};
use crate::executor::datapath::PartitionRead;
use crate::executor::ExecError;
use crate::metrics as m;
use crate::storage::PartitionData;
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
                    return Err(read_failure(consistency, &tracker, data.is_some()));
                }
            }
        }
        drop(tx);
        let data = data.unwrap_or_default();
        let expected = verbs::digest_of(&data);
        if digests.iter().all(|(_, d)| *d == expected) {
            return Ok(data);
        }

        // Phase 2: the replicas disagree. Full data from the others, merge, repair.
        metrics::counter!(m::READ_REPAIRS, "phase" => "mismatch").increment(1);
        let digest_hosts: Vec<HostId> = digests.iter().map(|(h, _)| *h).collect();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut answers = self.dispatch(&state, &digest_hosts, request(false), timeout);
        let mut tracker = QuorumTracker::new(
            requirement.clone(),
            digest_hosts.iter().map(|h| (*h, state.dc_of(h))),
        );
        let mut versions: Vec<(HostId, Option<PartitionData>)> = vec![(data_from, data)];
        while versions.len() < digest_hosts.len() + 1 {
            match tokio::time::timeout_at(deadline, answers.recv()).await {
                Ok(Some((host, answer))) => match expect_data(answer) {
                    Ok(d) => {
                        tracker.on_ack(host);
                        versions.push((host, d));
                    }
                    Err(e) => {
                        tracing::debug!(%host, error = %e, "replica failed a read repair read");
                        tracker.on_failure(host);
                        return Err(read_failure(consistency, &tracker, true));
                    }
                },
                Ok(None) => break,
                Err(_) => return Err(read_timeout(consistency, &tracker, true)),
            }
        }
        let merged = merge_versions(
            versions.iter().filter_map(|(_, d)| d.as_ref()),
            read.slice.reversed,
        );
        let Some(mut merged) = merged else {
            return Ok(None);
        };
        self.repair(
            &state,
            read.table,
            &merged,
            &versions,
            consistency,
            deadline,
        )
        .await?;
        if let Some(limit) = read.slice.limit {
            merged.truncate_to_live_rows(limit, read.now);
        }
        Ok(Some(merged))
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
            VerbRequest::Mutate {
                mutations: vec![merged.to_mutation(table)],
            },
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

fn read_failure(consistency: u16, tracker: &QuorumTracker, data_present: bool) -> ExecError {
    metrics::counter!(m::COORDINATOR_ERRORS, "kind" => "read_failure").increment(1);
    ExecError::ReadFailure {
        consistency,
        received: tracker.received() as i32,
        block_for: tracker.block_for() as i32,
        num_failures: tracker.failures().max(1) as i32,
        data_present,
    }
}
