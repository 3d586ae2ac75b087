//! Range scans: the ring walked in token order, one piece with one replica set at a time.
//!
//! A scan page asks for up to `max_partitions` partitions after a position. The coordinator
//! finds the piece of ring holding that position ([`ringdb_ring::ReplicaMap::segment_from`]),
//! reads it from as many replicas as the level needs (full data: there is no digest for a list
//! of partitions), merges their answers partition by partition, repairs replicas that were
//! behind, and moves on to the next piece until the page is full or the range ends.
//!
//! When several replicas answer a piece and one of them filled the page, the others may hold
//! partitions beyond its last one that it did not get to: the merged page is cut at the smallest
//! "last partition" of any full answer, and the next round resumes there. The executor can rely
//! on a short page meaning the range is exhausted.

use std::collections::BTreeMap;

use ringdb_ring::{HostId, Progress, QuorumTracker, Token};

use super::read::{merge_versions, short_read_cut};
use super::{nobody_to_ask, Coordinator};
use crate::executor::datapath::{PartitionRead, RangeRead};
use crate::executor::ExecError;
use crate::metrics as m;
use crate::storage::{PartitionData, PartitionKey, ScanRange, Seconds};
use crate::verbs::{VerbRequest, VerbResponse};

impl Coordinator {
    pub(super) async fn scan_range(
        &self,
        read: RangeRead<'_>,
    ) -> Result<Vec<PartitionData>, ExecError> {
        let consistency = read.consistency;
        let (state, ksp, requirement) = self.plan_read(read.keyspace, consistency)?;
        let end = read.range.end_token.unwrap_or(i64::MAX);
        let max = read.max_partitions.max(1);
        let mut after = read.range.after.clone();
        let mut out: Vec<PartitionData> = Vec::new();
        while out.len() < max {
            let start = after.as_ref().map_or(i64::MIN, |p| p.token);
            if start > end {
                break;
            }
            let Some((segment_end, replicas)) = ksp.map.segment_from(Token(start)) else {
                return Err(nobody_to_ask(consistency, &requirement));
            };
            let segment_end = segment_end.0.min(end);
            metrics::counter!(m::COORDINATOR_REQUESTS, "op" => "scan", "replica" => "n/a")
                .increment(1);
            let (targets, _) = self.read_targets(&state, &requirement, replicas, consistency)?;
            let want = max - out.len();
            let request = VerbRequest::Scan {
                table: read.table,
                range: ScanRange {
                    after: after.clone(),
                    end_token: Some(segment_end),
                },
                slice: read.slice.clone(),
                max_partitions: want.min(u32::MAX as usize) as u32,
                now: read.now,
            };
            let timeout = self.config.read_timeout;
            let deadline = tokio::time::Instant::now() + timeout;
            let mut answers = self.dispatch(&state, &targets, request, timeout);
            let mut tracker = QuorumTracker::new(
                requirement.clone(),
                targets.iter().map(|h| (*h, state.dc_of(h))),
            );
            let mut versions: Vec<(HostId, Vec<PartitionData>)> = Vec::new();
            let mut failures: Vec<String> = Vec::new();
            while versions.len() < targets.len() {
                let progress = match tokio::time::timeout_at(deadline, answers.recv()).await {
                    Ok(Some((host, Ok(VerbResponse::Partitions(p))))) => {
                        versions.push((host, p));
                        tracker.on_ack(host)
                    }
                    Ok(Some((host, answer))) => {
                        tracing::debug!(%host, ?answer, "replica failed a scan");
                        super::note_failure(&mut failures, || super::failure_reason(host, &answer));
                        tracker.on_failure(host)
                    }
                    Ok(None) => Progress::Failed,
                    Err(_) => {
                        metrics::counter!(m::COORDINATOR_ERRORS, "kind" => "read_timeout")
                            .increment(1);
                        return Err(ExecError::ReadTimeout {
                            consistency,
                            received: tracker.received() as i32,
                            block_for: tracker.block_for() as i32,
                            data_present: !versions.is_empty(),
                        });
                    }
                };
                if progress == Progress::Failed {
                    metrics::counter!(m::COORDINATOR_ERRORS, "kind" => "read_failure").increment(1);
                    return Err(ExecError::ReadFailure {
                        consistency,
                        received: tracker.received() as i32,
                        block_for: tracker.block_for() as i32,
                        num_failures: tracker.failures().max(1) as i32,
                        data_present: !versions.is_empty(),
                        reasons: failures,
                    });
                }
            }

            // Where the answers are complete: up to the last partition of any full answer.
            let complete_until: Option<PartitionKey> = versions
                .iter()
                .filter(|(_, parts)| parts.len() >= want)
                .filter_map(|(_, parts)| parts.last().map(|p| p.partition.clone()))
                .min();
            let mut by_key: BTreeMap<PartitionKey, Vec<(HostId, PartitionData)>> = BTreeMap::new();
            for (host, parts) in versions {
                for p in parts {
                    if complete_until.as_ref().is_some_and(|c| p.partition > *c) {
                        continue;
                    }
                    by_key
                        .entry(p.partition.clone())
                        .or_default()
                        .push((host, p));
                }
            }
            for (_, answers) in by_key {
                let Some(mut merged) =
                    merge_versions(answers.iter().map(|(_, p)| p), read.slice.reversed)
                else {
                    continue;
                };
                if targets.len() > 1 {
                    let per_host: Vec<(HostId, Option<PartitionData>)> = targets
                        .iter()
                        .map(|h| {
                            let mine = answers.iter().find(|(a, _)| a == h).map(|(_, p)| p.clone());
                            (*h, mine)
                        })
                        .collect();
                    self.repair(
                        &state,
                        read.table,
                        &merged,
                        &per_host,
                        consistency,
                        deadline,
                    )
                    .await?;
                }
                if let Some(limit) = read.slice.limit {
                    let cut = short_read_cut(
                        answers.iter().map(|(_, p)| p),
                        limit,
                        read.now,
                        read.slice.reversed,
                    );
                    if answers.len() > 1 && cut.is_some() && live_rows(&merged, read.now) < limit {
                        // The replicas disagree about which rows are live and at least one
                        // stopped at the limit: the single-partition read resolves it.
                        let reread = self
                            .read_partition(PartitionRead {
                                keyspace: read.keyspace,
                                table: read.table,
                                partition: &merged.partition,
                                slice: read.slice,
                                now: read.now,
                                consistency,
                            })
                            .await?;
                        match reread {
                            Some(d) => merged = d,
                            None => continue,
                        }
                    }
                    merged.truncate_to_live_rows(limit, read.now);
                }
                self.replica.observe_read(&merged);
                out.push(merged);
            }
            match complete_until {
                Some(last) => after = Some(last),
                None if segment_end >= end => break,
                // Everything up to the piece's end is read; continue strictly after its tokens
                // (partition keys are never empty, so the empty key at the next token sorts
                // before every real partition there).
                None => {
                    after = Some(PartitionKey {
                        token: segment_end + 1,
                        key: Vec::new(),
                    })
                }
            }
        }
        Ok(out)
    }
}

/// Rows of `data` live at `now`.
fn live_rows(data: &PartitionData, now: Seconds) -> usize {
    data.rows.iter().filter(|r| r.is_live(now)).count()
}
