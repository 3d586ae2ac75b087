//! Streaming token ranges into this node when it joins the ring (bootstrap), out of it when it
//! leaves (decommission), and from the survivors to the new replicas of a dead node's ranges
//! (removenode).
//!
//! Every case is a list of transfers — a range of a keyspace, the replicas to read it from in
//! order of preference, and the nodes to give it to — run [`STREAM_LANES`] ranges at a time,
//! each range one table at a time: a page of whole partitions (at most [`STREAM_PAGE`], cut at
//! [`STREAM_PAGE_BYTES`]) is read from the source with the repair-read verb and written to every
//! target with the mutate verb while the next page is read (a node that is both goes
//! in-process). Pages of one range follow each other (each starts after the last partition of
//! the one before), so one range moves at the pace of one round trip per page; several ranges
//! at once keep both ends busy. All the lanes together are throttled to
//! `stream_throughput_outbound`; what moved is counted in [`StreamStats`] and reported on a
//! watch channel for progress displays.
//!
//! A node that starts with an empty data directory and `auto_bootstrap: true` picks its tokens
//! ([`crate::join`]), then gossips `JOINING` with them. From then on every coordinator sees it as
//! a *pending* replica of the ranges it is gaining ([`super::placement::KeyspacePlacement::pending`])
//! and sends it every new write there (not counted toward the level, which today's replicas
//! meet; a write it does not take in time becomes a hint for it): nothing written during the
//! join is missed. Once the other nodes have had time to see that ([`crate::join`]'s settle
//! time), [`Coordinator::bootstrap`] fetches what was written before: for each keyspace, each
//! range the node will replicate and each table, it reads the range from the closest live
//! current replica, page by page (full data:
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
//!
//! Removing a dead node (see [`crate::removenode`]) gossips `LEAVING` on its behalf; the node
//! running the removal then copies each of its ranges from the closest live surviving replica
//! to the replicas gaining it ([`Coordinator::stream_removed_ranges`]), relaying the pages.

use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, StreamExt};

use ringdb_ring::{HostId, TokenRange};
use serde::{Deserialize, Serialize};

use super::placement::KeyspacePlacement;
use super::{ClusterState, Coordinator};
use crate::metrics as m;
use crate::pace::Pacer;
use crate::storage::{PartitionKey, ScanRange, TableId};
use crate::verbs::{VerbRequest, VerbResponse};

/// Most partitions per page while streaming.
pub const STREAM_PAGE: u32 = 1_000;

/// Encoded bytes after which a streaming page is cut (a page holds whole partitions, so one
/// wide partition can make it larger, up to the verb size limit).
pub const STREAM_PAGE_BYTES: u32 = 4 << 20;

/// Ranges a streaming run copies at the same time.
pub const STREAM_LANES: usize = 4;

/// How long one page may take to arrive.
pub const STREAM_PAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// How far a stream got, and what it moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamStats {
    /// Ranges (per keyspace) streamed so far.
    pub ranges: usize,
    /// Ranges (per keyspace) to stream in all.
    pub ranges_total: usize,
    /// Partitions copied.
    pub partitions: u64,
    /// Bytes of data copied (as sent between nodes).
    pub bytes: u64,
}

/// One range of one keyspace to copy: from the first of `sources` that serves it all, to every
/// one of `targets` (this node included, in-process).
#[derive(Debug, Clone)]
struct Transfer {
    keyspace: String,
    range: TokenRange,
    sources: Vec<HostId>,
    targets: Vec<HostId>,
}

/// Which direction a stream goes, for metrics and logs.
#[derive(Debug, Clone, Copy)]
enum Direction {
    /// Into this node (bootstrap).
    In,
    /// Out of this node (decommission).
    Out,
    /// Between other nodes, through this one (removenode).
    Relay,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
            Direction::Relay => "relay",
        }
    }
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
    pub async fn bootstrap(
        &self,
        progress: &(dyn Fn(&StreamStats) + Send + Sync),
    ) -> Result<StreamStats, String> {
        let state = self.state();
        let local = self.config.local;
        let mut transfers = Vec::new();
        for (keyspace, ksp) in self.changing_keyspaces(&state)? {
            let Some(future) = &ksp.future else {
                continue;
            };
            for (range, replicas) in future.ranges() {
                if !replicas.contains(&local) {
                    continue;
                }
                // The future ring has every token of today's and more: each of its ranges lies
                // in one range of today's ring.
                let sources: Vec<HostId> = state
                    .by_proximity(
                        ksp.map.replicas(range.end),
                        &self.config.dc,
                        &self.config.rack,
                    )
                    .into_iter()
                    .filter(|h| *h != local && state.is_alive(h))
                    .collect();
                transfers.push(Transfer {
                    keyspace: keyspace.clone(),
                    range,
                    sources,
                    targets: vec![local],
                });
            }
        }
        self.run_transfers("bootstrap", Direction::In, transfers, progress)
            .await
    }

    /// Decommission: pushes this node's data to the nodes that take over its ranges (it must be
    /// `LEAVING` in the current view). For each keyspace and each range this node replicates,
    /// the replicas gaining the range once it is gone get every partition of every table there,
    /// read locally in pages and sent as mutations.
    pub async fn stream_leaving_ranges(
        &self,
        progress: &(dyn Fn(&StreamStats) + Send + Sync),
    ) -> Result<StreamStats, String> {
        let local = self.config.local;
        let transfers = self.replace_replica(local, |_| vec![local])?;
        self.run_transfers("decommission", Direction::Out, transfers, progress)
            .await
    }

    /// Removenode: copies the data of every range `removed` (a dead node, `LEAVING` in the view)
    /// replicated to the nodes that take it over, from the closest live surviving replica of
    /// each range, through this node.
    pub async fn stream_removed_ranges(
        &self,
        removed: HostId,
        progress: &(dyn Fn(&StreamStats) + Send + Sync),
    ) -> Result<StreamStats, String> {
        let state = self.state();
        let transfers = self.replace_replica(removed, |replicas| {
            state
                .by_proximity(replicas, &self.config.dc, &self.config.rack)
                .into_iter()
                .filter(|h| *h != removed && state.is_alive(h))
                .collect()
        })?;
        if let Some(t) = transfers.iter().find(|t| t.sources.is_empty()) {
            return Err(format!(
                "no live replica is left of range {:?} of {}: bring one back (or restore it) first",
                t.range, t.keyspace
            ));
        }
        self.run_transfers("removenode", Direction::Relay, transfers, progress)
            .await
    }

    /// The transfers that give the ranges of `leaving` (a node gossiped `LEAVING`) to the nodes
    /// gaining them, each from the `sources` of its current replicas.
    fn replace_replica(
        &self,
        leaving: HostId,
        sources: impl Fn(&[HostId]) -> Vec<HostId>,
    ) -> Result<Vec<Transfer>, String> {
        let state = self.state();
        let mut transfers = Vec::new();
        for (keyspace, ksp) in self.changing_keyspaces(&state)? {
            let Some(future) = &ksp.future else {
                continue;
            };
            for (range, replicas) in ksp.map.ranges() {
                if !replicas.contains(&leaving) {
                    continue;
                }
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
                        "{down} takes over range {range:?} of {keyspace} but is down"
                    ));
                }
                transfers.push(Transfer {
                    keyspace: keyspace.clone(),
                    range,
                    sources: sources(replicas),
                    targets: gaining,
                });
            }
        }
        Ok(transfers)
    }

    /// Copies every table of every transfer, [`STREAM_LANES`] transfers at a time, reporting on
    /// `progress` after each range. The first failure stops the run.
    async fn run_transfers(
        &self,
        what: &str,
        direction: Direction,
        transfers: Vec<Transfer>,
        progress: &(dyn Fn(&StreamStats) + Send + Sync),
    ) -> Result<StreamStats, String> {
        let schema = self.schema.current();
        let mut stats = StreamStats {
            ranges_total: transfers.len(),
            ..StreamStats::default()
        };
        progress(&stats);
        let run = Run {
            direction,
            pacer: Pacer::new(self.config.stream_throughput),
        };
        let (schema, run) = (&schema, &run);
        let mut copies = stream::iter(transfers)
            .map(|transfer: Transfer| async move {
                let mut moved = StreamStats::default();
                for table in schema.tables(&transfer.keyspace) {
                    self.copy_range(table.id, &transfer, run, &mut moved)
                        .await
                        .map_err(|e| {
                            format!(
                                "{}.{} range {:?}: {e}",
                                transfer.keyspace, table.name, transfer.range
                            )
                        })?;
                }
                Ok::<_, String>(moved)
            })
            .buffer_unordered(STREAM_LANES);
        while let Some(moved) = copies.next().await {
            let moved = moved?;
            stats.partitions += moved.partitions;
            stats.bytes += moved.bytes;
            stats.ranges += 1;
            progress(&stats);
            log_progress(what, &stats);
        }
        Ok(stats)
    }

    /// Copies `table`'s partitions in the transfer's range from the first of its sources that
    /// serves them all.
    async fn copy_range(
        &self,
        table: TableId,
        transfer: &Transfer,
        run: &Run,
        stats: &mut StreamStats,
    ) -> Result<(), String> {
        let mut last_error = "no live replica to stream from".to_string();
        for &source in &transfer.sources {
            let mut attempt = *stats;
            let mut failed = None;
            for piece in scan_pieces(transfer.range) {
                if let Err(e) = self
                    .copy_piece(table, piece, source, &transfer.targets, run, &mut attempt)
                    .await
                {
                    failed = Some(e);
                    break;
                }
            }
            match failed {
                None => {
                    *stats = attempt;
                    return Ok(());
                }
                Some(e) => {
                    tracing::warn!(%source, error = %e, "streaming from a replica failed; trying another");
                    last_error = e;
                }
            }
        }
        Err(last_error)
    }

    /// Copies one scan range, page by page, from `source` to every one of `targets`; the next
    /// page is read while the current one is written.
    async fn copy_piece(
        &self,
        table: TableId,
        mut range: ScanRange,
        source: HostId,
        targets: &[HostId],
        run: &Run,
        stats: &mut StreamStats,
    ) -> Result<(), String> {
        let mut page = self.fetch_page(table, range.clone(), source).await?;
        loop {
            let (partitions, complete) = std::mem::take(&mut page);
            let Some(last) = partitions.last().map(|p| p.partition.clone()) else {
                return Ok(());
            };
            range.after = Some(last);
            let mutations: Vec<_> = partitions
                .into_iter()
                .map(|p| p.into_mutation(table))
                .collect();
            let n = mutations.len() as u64;
            let bytes = crate::verbs::encoded_len(&mutations).unwrap_or(0) as u64;
            let deliver = self.deliver_page(mutations, bytes, targets, &run.pacer);
            if complete {
                deliver.await?;
            } else {
                let (delivered, next) =
                    tokio::join!(deliver, self.fetch_page(table, range.clone(), source));
                delivered?;
                page = next?;
            }
            stats.partitions += n;
            stats.bytes += bytes;
            metrics::counter!(m::STREAMED_PARTITIONS, "direction" => run.direction.as_str())
                .increment(n);
            if complete {
                return Ok(());
            }
        }
    }

    /// A page of whole partitions (tombstones and expiring cells included) of `range` from
    /// `source`, bounded by [`STREAM_PAGE`] partitions and [`STREAM_PAGE_BYTES`], and whether the
    /// range ends there.
    async fn fetch_page(
        &self,
        table: TableId,
        range: ScanRange,
        source: HostId,
    ) -> Result<(Vec<crate::storage::PartitionData>, bool), String> {
        let state = self.state();
        let request = VerbRequest::RepairRead {
            table,
            range,
            max_partitions: STREAM_PAGE,
            max_bytes: STREAM_PAGE_BYTES,
        };
        let mut answers = self.dispatch(&state, &[source], request, STREAM_PAGE_TIMEOUT);
        match answers.recv().await {
            Some((
                _,
                Ok(VerbResponse::RepairPage {
                    partitions,
                    complete,
                }),
            )) => Ok((partitions, complete)),
            Some((_, Ok(other))) => Err(format!("{source} answered {other:?}")),
            Some((_, Err(e))) => Err(format!("{source}: {e}")),
            None => Err(format!("{source}: no answer")),
        }
    }

    /// Writes a page to every target, then waits out the throttle's share of its `bytes`.
    async fn deliver_page(
        &self,
        mutations: Vec<crate::storage::Mutation>,
        bytes: u64,
        targets: &[HostId],
        pacer: &Pacer,
    ) -> Result<(), String> {
        let started = tokio::time::Instant::now();
        let state = self.state();
        let mut answers = self.dispatch(
            &state,
            targets,
            VerbRequest::mutate(mutations),
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
        pacer.pace(bytes, started).await;
        Ok(())
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
                        (target, VerbRequest::mutate(hint.mutations.clone()))
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

/// What the lanes of one streaming run share.
struct Run {
    /// Which way it goes, for metrics.
    direction: Direction,
    /// Its throttle.
    pacer: Pacer,
}

/// Logs how far a stream got, at each tenth of its ranges.
fn log_progress(what: &str, stats: &StreamStats) {
    let (done, total) = (stats.ranges, stats.ranges_total);
    if total > 0 && done > 0 && (done * 10 / total != (done - 1) * 10 / total || done == total) {
        tracing::info!(
            ranges = format!("{done}/{total}"),
            partitions = stats.partitions,
            bytes = stats.bytes,
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
    use ringdb_ring::{ConsistencyLevel, Token};

    use super::*;
    use crate::coordinator::testing::{insert, int_partition, TestCluster};
    use crate::executor::{WriteKind, WriteRequest};
    use crate::storage::Slice;

    /// On how many of `nodes` key `k` of `table` is stored.
    fn copies(cluster: &TestCluster, nodes: &[usize], table: TableId, k: i32) -> usize {
        nodes
            .iter()
            .filter(|&&i| {
                cluster.nodes[i]
                    .engine
                    .read_partition(table, &int_partition(k), &Slice::all(), 0)
                    .expect("read")
                    .is_some()
            })
            .count()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn removing_a_dead_node_gives_its_ranges_to_the_next_replicas_from_the_survivors() {
        let mut cluster =
            TestCluster::start(&["r1", "r2", "r3", "r4"], Duration::from_secs(5)).await;
        let table = cluster.create_table(2, "CREATE TABLE t (k int PRIMARY KEY, v text)");
        let keys: Vec<i32> = (0..200).collect();
        for &k in &keys {
            cluster.nodes[0]
                .coordinator
                .coordinate_write(WriteRequest {
                    mutations: vec![("ks".into(), insert(&table, k, "v", 10))],
                    consistency: ConsistencyLevel::All.code(),
                    kind: WriteKind::Simple,
                })
                .await
                .expect("write at ALL");
        }
        // Node 3 dies for good: the keys it held have one copy left among the others.
        cluster.cut_off(3).await;
        cluster.set_alive(3, false);
        let survivors = [0, 1, 2];
        let thin = keys
            .iter()
            .filter(|&&k| copies(&cluster, &survivors, table.id, k) < 2)
            .count();
        assert!(
            thin > 0,
            "node 3 replicated nothing: the test would prove nothing"
        );

        // Removal: LEAVING on its behalf, stream, then LEFT.
        cluster.set_status(3, "LEAVING");
        let removed = cluster.nodes[3].host;
        let stats = cluster.nodes[0]
            .coordinator
            .stream_removed_ranges(removed, &|_| {})
            .await
            .expect("removal streaming");
        assert!(
            stats.ranges > 0 && stats.ranges == stats.ranges_total,
            "{stats:?}"
        );
        assert!(
            stats.partitions >= thin as u64 && stats.bytes > 0,
            "{stats:?}"
        );
        cluster.set_status(3, "LEFT");
        for &k in &keys {
            assert_eq!(
                copies(&cluster, &survivors, table.id, k),
                2,
                "key {k} is not on both of its replicas once node 3 is removed"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn removal_streaming_refuses_when_a_gaining_node_is_down() {
        let mut cluster = TestCluster::start(&["r1", "r2", "r3"], Duration::from_secs(2)).await;
        cluster.create_table(2, "CREATE TABLE t (k int PRIMARY KEY, v text)");
        cluster.cut_off(2).await;
        cluster.set_alive(2, false);
        cluster.set_alive(1, false);
        cluster.set_status(2, "LEAVING");
        let error = cluster.nodes[0]
            .coordinator
            .stream_removed_ranges(cluster.nodes[2].host, &|_| {})
            .await
            .expect_err("a node taking over ranges is down");
        assert!(error.contains("is down"), "{error}");
    }

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
