//! Streaming token ranges into this node when it joins the ring (bootstrap), and out of it when
//! it leaves (decommission).
//!
//! A node that starts with an empty data directory and `auto_bootstrap: true` picks its tokens
//! ([`crate::join`]), then gossips `JOINING` with them. From then on every coordinator sees it as
//! a *pending* replica of the ranges it is gaining ([`super::placement::KeyspacePlacement::pending`])
//! and sends it every new write there (not counted toward the level, which today's replicas
//! meet; a write it does not take in time becomes a hint for it): nothing written during the
//! join is missed. Once the other nodes have had time to see that ([`crate::join`]'s settle
//! time), [`Coordinator::bootstrap`] fetches what was written before: for each keyspace, each
//! range the node will replicate and each table, it reads the range from the closest live
//! current replica with the scan verb, in pages of [`STREAM_PAGE`] partitions (full data:
//! tombstones and expiring cells included, so nothing deleted comes back), and applies it
//! locally. Only then does the node turn `NORMAL` and start serving reads.
//!
//! A source that fails is replaced by the next live replica of the range; when none is left, the
//! bootstrap fails and the node does not join (it says why and exits: starting it again retries).
//!
//! A node leaving (decommission, see [`crate::decommission`]) gossips `LEAVING`; coordinators
//! then send writes to the nodes taking over its ranges as pending replicas, and
//! [`Coordinator::stream_leaving_ranges`] pushes its data to them, range by range, from a local
//! scan. Its hints go to their targets, or to another live node that keeps them
//! ([`Coordinator::hand_off_hints`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use ringdb_ring::{HostId, TokenRange};

use super::placement::KeyspacePlacement;
use super::{ClusterState, Coordinator};
use crate::metrics as m;
use crate::storage::{Mutation, PartitionKey, ScanRange, Slice, TableId};
use crate::verbs::{VerbRequest, VerbResponse};

/// Partitions per scan page while streaming.
pub const STREAM_PAGE: u32 = 64;

/// How long one page may take to arrive.
pub const STREAM_PAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// What a bootstrap streamed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// Ranges (per keyspace) streamed.
    pub ranges: usize,
    /// Partitions received and applied.
    pub partitions: u64,
}

impl Coordinator {
    /// The user keyspaces whose replicas the ring change under way moves (those with a future
    /// replica map), by name.
    fn changing_keyspaces(
        &self,
        state: &ClusterState,
    ) -> Result<Vec<(String, Arc<KeyspacePlacement>)>, String> {
        let schema = self.schema.current();
        let mut changing = Vec::new();
        for ks in schema.user_keyspaces() {
            let ksp = self.keyspace(state, &ks.name).map_err(|e| e.to_string())?;
            if ksp.future.is_some() {
                changing.push((ks.name.clone(), ksp));
            }
        }
        Ok(changing)
    }

    /// Streams to this node the data of every range it is gaining (it must be `JOINING` in the
    /// current view); see the module documentation.
    pub async fn bootstrap(&self) -> Result<StreamStats, String> {
        let state = self.state();
        let schema = self.schema.current();
        let local = self.config.local;
        let mut stats = StreamStats::default();
        for (ks, ksp) in self.changing_keyspaces(&state)? {
            let Some(future) = &ksp.future else {
                continue;
            };
            let mine: Vec<TokenRange> = future
                .ranges()
                .filter(|(_, replicas)| replicas.contains(&local))
                .map(|(range, _)| range)
                .collect();
            for (done, range) in mine.iter().copied().enumerate() {
                let sources: Vec<HostId> = state
                    .by_proximity(
                        ksp.map.replicas(range.end),
                        &self.config.dc,
                        &self.config.rack,
                    )
                    .into_iter()
                    .filter(|h| *h != local && state.is_alive(h))
                    .collect();
                for table in schema.tables(&ks) {
                    stats.partitions += self
                        .stream_range(table.id, range, &sources)
                        .await
                        .map_err(|e| format!("{ks}.{} range {range:?}: {e}", table.name))?;
                }
                stats.ranges += 1;
                log_progress("bootstrap", &ks, done + 1, mine.len(), stats.partitions);
            }
        }
        Ok(stats)
    }

    /// Copies `table`'s partitions in `range` from the first of `sources` that serves them all;
    /// returns how many were applied.
    async fn stream_range(
        &self,
        table: TableId,
        range: TokenRange,
        sources: &[HostId],
    ) -> Result<u64, String> {
        let mut last_error = "no live replica to stream from".to_string();
        for source in sources {
            let mut applied = 0;
            let mut failed = None;
            for piece in scan_pieces(range) {
                match self.stream_piece(table, piece, *source).await {
                    Ok(n) => applied += n,
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            match failed {
                None => return Ok(applied),
                Some(e) => {
                    tracing::warn!(%source, error = %e, "streaming from a replica failed; trying another");
                    last_error = e;
                }
            }
        }
        Err(last_error)
    }

    async fn stream_piece(
        &self,
        table: TableId,
        mut range: ScanRange,
        source: HostId,
    ) -> Result<u64, String> {
        let mut applied = 0;
        loop {
            let state = self.state();
            let request = VerbRequest::Scan {
                table,
                range: range.clone(),
                slice: Slice::all(),
                max_partitions: STREAM_PAGE,
                now: self.replica.clock().wall_seconds(),
            };
            let mut answers = self.dispatch(&state, &[source], request, STREAM_PAGE_TIMEOUT);
            let partitions = match answers.recv().await {
                Some((_, Ok(VerbResponse::Partitions(p)))) => p,
                Some((_, Ok(other))) => return Err(format!("source answered {other:?}")),
                Some((_, Err(e))) => return Err(e),
                None => return Err("no answer".into()),
            };
            let full = partitions.len() >= STREAM_PAGE as usize;
            let Some(last) = partitions.last().map(|p| p.partition.clone()) else {
                return Ok(applied);
            };
            let page_started = Instant::now();
            let mutations: Vec<_> = partitions.iter().map(|p| p.to_mutation(table)).collect();
            self.replica
                .apply(&mutations)
                .await
                .map_err(|e| format!("applying streamed data: {e}"))?;
            self.throttle_stream(&mutations, page_started).await;
            applied += mutations.len() as u64;
            metrics::counter!(m::STREAMED_PARTITIONS, "direction" => "in")
                .increment(mutations.len() as u64);
            if !full {
                return Ok(applied);
            }
            range.after = Some(last);
        }
    }
}

impl Coordinator {
    /// Decommission: pushes this node's data to the nodes that take over its ranges (it must be
    /// `LEAVING` in the current view). For each keyspace and each range this node replicates,
    /// the replicas gaining the range once it is gone get every partition of every table there,
    /// read locally in pages and sent as mutations.
    pub async fn stream_leaving_ranges(&self) -> Result<StreamStats, String> {
        let state = self.state();
        let schema = self.schema.current();
        let local = self.config.local;
        let mut stats = StreamStats::default();
        for (ks, ksp) in self.changing_keyspaces(&state)? {
            let Some(future) = &ksp.future else {
                continue;
            };
            let mine: Vec<(TokenRange, &[HostId])> = ksp
                .map
                .ranges()
                .filter(|(_, replicas)| replicas.contains(&local))
                .collect();
            for (done, &(range, replicas)) in mine.iter().enumerate() {
                // The future ring has a subset of today's tokens: each range of today lies in
                // one range of the future ring.
                let gaining: Vec<HostId> = future
                    .replicas(range.end)
                    .iter()
                    .filter(|h| !replicas.contains(h))
                    .copied()
                    .collect();
                if gaining.is_empty() {
                    continue;
                }
                if let Some(down) = gaining.iter().find(|h| !state.is_alive(h)) {
                    return Err(format!(
                        "{down} takes over range {range:?} of {ks} but is down"
                    ));
                }
                for table in schema.tables(&ks) {
                    for piece in scan_pieces(range) {
                        stats.partitions += self
                            .push_piece(table.id, piece, &gaining)
                            .await
                            .map_err(|e| format!("{ks}.{} range {range:?}: {e}", table.name))?;
                    }
                }
                stats.ranges += 1;
                log_progress("decommission", &ks, done + 1, mine.len(), stats.partitions);
            }
        }
        Ok(stats)
    }

    /// Holds a streaming page back so that pages go at most `stream_throughput_outbound` bytes
    /// per second: a page that took less than its share of a second waits for the rest.
    async fn throttle_stream(&self, page: &[Mutation], started: Instant) {
        let rate = self.config.stream_throughput;
        if rate == 0 {
            return;
        }
        let bytes = crate::verbs::encoded_len(&page).unwrap_or(0) as f64;
        let budget = Duration::from_secs_f64(bytes / rate as f64);
        tokio::time::sleep(budget.saturating_sub(started.elapsed())).await;
    }

    /// Whether the ring change under way keeps every keyspace at its replication factor: no
    /// range has fewer replicas once it is done than now.
    pub fn check_replication_kept(&self) -> Result<(), String> {
        let state = self.state();
        for (ks, ksp) in self.changing_keyspaces(&state)? {
            let Some(future) = &ksp.future else {
                continue;
            };
            for (range, replicas) in ksp.map.ranges() {
                let after = future.replicas(range.end).len();
                if after < replicas.len() {
                    return Err(format!(
                        "keyspace {ks} would keep {after} of its {} replicas of some ranges: \
                         its replication factor needs more nodes than would remain",
                        replicas.len()
                    ));
                }
            }
        }
        Ok(())
    }

    /// Sends every local partition of `table` in `range` to each of `targets`.
    async fn push_piece(
        &self,
        table: TableId,
        mut range: ScanRange,
        targets: &[HostId],
    ) -> Result<u64, String> {
        let mut sent = 0;
        loop {
            let partitions = self
                .replica
                .scan(
                    table,
                    range.clone(),
                    Slice::all(),
                    STREAM_PAGE,
                    self.replica.clock().wall_seconds(),
                )
                .await
                .map_err(|e| format!("reading local data: {e}"))?;
            let full = partitions.len() >= STREAM_PAGE as usize;
            let Some(last) = partitions.last().map(|p| p.partition.clone()) else {
                return Ok(sent);
            };
            let page_started = Instant::now();
            let mutations: Vec<_> = partitions.iter().map(|p| p.to_mutation(table)).collect();
            let n = mutations.len() as u64;
            self.throttle_stream(&mutations, page_started).await;
            let state = self.state();
            let mut answers = self.dispatch(
                &state,
                targets,
                VerbRequest::Mutate { mutations },
                STREAM_PAGE_TIMEOUT,
            );
            for _ in targets {
                match answers.recv().await {
                    Some((_, Ok(VerbResponse::Applied))) => {}
                    Some((host, Ok(other))) => return Err(format!("{host} answered {other:?}")),
                    Some((host, Err(e))) => return Err(format!("{host}: {e}")),
                    None => return Err("no answer".into()),
                }
            }
            sent += n;
            metrics::counter!(m::STREAMED_PARTITIONS, "direction" => "out").increment(n);
            if !full {
                return Ok(sent);
            }
            range.after = Some(last);
        }
    }

    /// Decommission: hands every hint this node holds to where it can still be delivered — to
    /// its target directly when that is up, else to another live node, which keeps it as its
    /// own hint. Returns how many hints were handed over.
    pub async fn hand_off_hints(&self) -> Result<u64, String> {
        let mut handed = 0;
        for (target, _) in self.hints.targets() {
            loop {
                let page = self
                    .hints
                    .page(&target, None, 16)
                    .map_err(|e| e.to_string())?;
                if page.is_empty() {
                    break;
                }
                for hint in page {
                    let state = self.state();
                    let (to, request) = if state.is_alive(&target) {
                        (
                            target,
                            VerbRequest::Mutate {
                                mutations: hint.mutations.clone(),
                            },
                        )
                    } else {
                        let Some(peer) = state
                            .by_proximity(
                                &state.alive.iter().copied().collect::<Vec<_>>(),
                                &self.config.dc,
                                &self.config.rack,
                            )
                            .into_iter()
                            .find(|h| *h != self.config.local && *h != target)
                        else {
                            return Err("no live node to hand hints to".into());
                        };
                        (
                            peer,
                            VerbRequest::StoreHint {
                                target: target.0,
                                mutations: hint.mutations.clone(),
                            },
                        )
                    };
                    let mut answers =
                        self.dispatch(&state, &[to], request, self.config.write_timeout);
                    match answers.recv().await {
                        Some((_, Ok(VerbResponse::Applied | VerbResponse::HintStored))) => {
                            self.hints
                                .remove(&target, &hint)
                                .map_err(|e| e.to_string())?;
                            handed += 1;
                        }
                        Some((_, Ok(other))) => return Err(format!("{to} answered {other:?}")),
                        Some((_, Err(e))) => return Err(format!("{to}: {e}")),
                        None => return Err("no answer".into()),
                    }
                }
            }
        }
        Ok(handed)
    }
}

/// Logs how far streaming a keyspace got, at each tenth of its ranges.
fn log_progress(what: &str, keyspace: &str, done: usize, total: usize, partitions: u64) {
    if total > 0 && (done * 10 / total != (done - 1) * 10 / total || done == total) {
        tracing::info!(
            keyspace,
            ranges = format!("{done}/{total}"),
            partitions,
            "{what}: streaming"
        );
    }
}

/// The scans covering `range` (`(start, end]`, possibly wrapping or the whole ring).
fn scan_pieces(range: TokenRange) -> Vec<ScanRange> {
    // Partitions strictly after the empty key at token `t + 1`: every partition whose token is
    // greater than `t` (real partition keys are never empty).
    let after = |t: i64| {
        t.checked_add(1).map(|next| PartitionKey {
            token: next,
            key: Vec::new(),
        })
    };
    let (start, end) = (range.start.0, range.end.0);
    if range.is_full_ring() {
        return vec![ScanRange {
            after: None,
            end_token: None,
        }];
    }
    if !range.wraps() {
        return vec![ScanRange {
            after: after(start),
            end_token: Some(end),
        }];
    }
    let mut pieces = Vec::new();
    if let Some(after) = after(start) {
        pieces.push(ScanRange {
            after: Some(after),
            end_token: None,
        });
    }
    pieces.push(ScanRange {
        after: None,
        end_token: Some(end),
    });
    pieces
}

#[cfg(test)]
mod tests {
    use ringdb_ring::Token;

    use super::*;

    #[test]
    fn scan_pieces_cover_plain_wrapping_and_full_ranges() {
        let plain = scan_pieces(TokenRange::new(Token(-5), Token(7)));
        assert_eq!(plain.len(), 1);
        assert_eq!(plain[0].after.as_ref().map(|p| p.token), Some(-4));
        assert_eq!(plain[0].end_token, Some(7));

        let wrapping = scan_pieces(TokenRange::new(Token(7), Token(-5)));
        assert_eq!(wrapping.len(), 2);
        assert_eq!(wrapping[0].after.as_ref().map(|p| p.token), Some(8));
        assert_eq!(wrapping[0].end_token, None);
        assert_eq!(wrapping[1].after, None);
        assert_eq!(wrapping[1].end_token, Some(-5));

        let from_max = scan_pieces(TokenRange::new(Token(i64::MAX), Token(3)));
        assert_eq!(from_max.len(), 1, "nothing lies after the largest token");
        assert_eq!(from_max[0].end_token, Some(3));

        let full = scan_pieces(TokenRange::new(Token(3), Token(3)));
        assert_eq!(
            full,
            vec![ScanRange {
                after: None,
                end_token: None
            }]
        );
    }
}
