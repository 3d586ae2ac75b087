//! Streaming token ranges into this node when it joins the ring (bootstrap).
//!
//! A node that starts with an empty data directory and `auto_bootstrap: true` picks its tokens
//! ([`crate::join`]), then gossips `JOINING` with them. From then on every coordinator sees it as
//! a *pending* replica of the ranges it is gaining ([`super::placement::KeyspacePlacement::pending`])
//! and sends it every new write there (counted on top of the level: nothing written during the
//! join is missed). Once the other nodes have had time to see that ([`crate::join`]'s settle
//! time), [`Coordinator::bootstrap`] fetches what was written before: for each keyspace, each
//! range the node will replicate and each table, it reads the range from the closest live
//! current replica with the scan verb, in pages of [`STREAM_PAGE`] partitions (full data:
//! tombstones and expiring cells included, so nothing deleted comes back), and applies it
//! locally. Only then does the node turn `NORMAL` and start serving reads.
//!
//! A source that fails is replaced by the next live replica of the range; when none is left, the
//! bootstrap fails and the node does not join (it says why and exits: starting it again retries).

use std::time::Duration;

use ringdb_ring::{HostId, TokenRange};

use super::Coordinator;
use crate::metrics as m;
use crate::storage::{PartitionKey, ScanRange, Slice, TableId};
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
    /// Streams to this node the data of every range it is gaining (it must be `JOINING` in the
    /// current view); see the module documentation.
    pub async fn bootstrap(&self) -> Result<StreamStats, String> {
        let state = self.state();
        let schema = self.schema.current();
        let local = self.config.local;
        let mut stats = StreamStats::default();
        for ks in schema.user_keyspaces() {
            let ksp = self.keyspace(&state, &ks.name).map_err(|e| e.to_string())?;
            let Some(future) = &ksp.future else {
                continue;
            };
            for (range, replicas) in future.ranges() {
                if !replicas.contains(&local) {
                    continue;
                }
                let sources: Vec<HostId> = state
                    .by_proximity(
                        ksp.map.replicas(range.end),
                        &self.config.dc,
                        &self.config.rack,
                    )
                    .into_iter()
                    .filter(|h| *h != local && state.is_alive(h))
                    .collect();
                for table in schema.tables(&ks.name) {
                    stats.partitions += self
                        .stream_range(table.id, range, &sources)
                        .await
                        .map_err(|e| format!("{}.{} range {range:?}: {e}", ks.name, table.name))?;
                }
                stats.ranges += 1;
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
            let mutations: Vec<_> = partitions.iter().map(|p| p.to_mutation(table)).collect();
            self.replica
                .apply(&mutations)
                .await
                .map_err(|e| format!("applying streamed data: {e}"))?;
            applied += mutations.len() as u64;
            metrics::counter!(m::STREAMED_PARTITIONS).increment(mutations.len() as u64);
            if !full {
                return Ok(applied);
            }
            range.after = Some(last);
        }
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
