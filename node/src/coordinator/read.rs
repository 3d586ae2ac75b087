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
        let targets = self.read_targets(&state, &requirement, replicas, consistency)?;
        let (data_host, digest_hosts) = (targets[0], &targets[1..]);
        let request = |digest| VerbRequest::Read {
            table: read.table,
            partition: read.partition.clone(),
            slice: read.slice.clone(),
            now: read.now,
            digest,
        };

        // Phase 1: one data answer and enough digests.
        let timeout = self.config.read_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let (tx, mut answers) = mpsc::channel::<Answer>(targets.len());
        self.send_to(&state, &[data_host], request(false), timeout, &tx);
        self.send_to(&state, digest_hosts, request(true), timeout, &tx);
        drop(tx);
        let mut tracker = QuorumTracker::new(
            requirement.clone(),
            targets.iter().map(|h| (*h, state.dc_of(h))),
        );
        let mut data: Option<Option<PartitionData>> = None;
        let mut digests: Vec<[u8; 16]> = Vec::new();
        loop {
            let progress = match tokio::time::timeout_at(deadline, answers.recv()).await {
                Ok(Some((host, Ok(VerbResponse::Data(d))))) if host == data_host => {
                    data = Some(d);
                    tracker.on_ack(host)
                }
                Ok(Some((host, Ok(VerbResponse::Digest(d))))) => {
                    digests.push(d);
                    tracker.on_ack(host)
                }
                Ok(Some((host, answer))) => {
                    tracing::debug!(%host, ?answer, "replica failed a read");
                    tracker.on_failure(host)
                }
                Ok(None) => Progress::Failed,
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
        let data = data.unwrap_or_default();
        let expected = verbs::digest_of(&data);
        if digests.iter().all(|d| *d == expected) {
            return Ok(data);
        }

        // Phase 2: the replicas disagree. Full data from the others, merge, repair.
        metrics::counter!(m::READ_REPAIRS, "phase" => "mismatch").increment(1);
        let deadline = tokio::time::Instant::now() + timeout;
        let mut answers = self.dispatch(&state, digest_hosts, request(false), timeout);
        let mut tracker = QuorumTracker::new(
            requirement.clone(),
            digest_hosts.iter().map(|h| (*h, state.dc_of(h))),
        );
        let mut versions: Vec<(HostId, Option<PartitionData>)> = vec![(data_host, data)];
        while versions.len() < targets.len() {
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
