//! The replica side of repair: Merkle trees of a token range and pages of partitions to stream.
//!
//! Both walk the engine's partitions of one table in ring order with [`Engine::scan`] in pages
//! of bounded size, on a blocking thread, so memory stays bounded whatever the range holds: a
//! tree build keeps one page and the tree builders' accumulators (`O(leaves)`), never the range.
//!
//! A [`TokenRange`] `(start, end]` may wrap past the top of the ring, while a [`ScanRange`]
//! runs upward from a position to an end token; [`scan_pieces`] turns the first into one or two
//! of the second.
//!
//! # Choosing the depth
//!
//! Replicas compare trees leaf by leaf, so every replica of a range must build it at the same
//! depth. The repair coordinator first asks each replica to choose ([`VerbRequest::MerkleTree`]
//! with no depth): the replica builds the tree at every depth at once in its single pass (the
//! builders of depths `0..=16` together hold `2^17` leaf accumulators, about 3 MiB), then keeps
//! the one [`MerkleTree::depth_for`] its partition count calls for, about one partition per
//! leaf. Replicas holding the same data choose the same depth, so a consistent range costs one
//! pass per replica; when they differ, the coordinator asks again at the deepest choice (see
//! `session.rs`).
//!
//! At most [`MAX_CONCURRENT_TREE_BUILDS`] builds run at once on a node (others wait), since each
//! reads a whole range.
//!
//! [`VerbRequest::MerkleTree`]: crate::verbs::VerbRequest::MerkleTree

use std::sync::Arc;

use ringdb_ring::{MerkleError, MerkleTree, MerkleTreeBuilder, Token, TokenRange};
use tokio::sync::Semaphore;

use crate::storage::{Engine, PartitionData, PartitionKey, ScanRange, Slice, TableId};
use crate::verbs::{self, ReplicaError};

/// Partitions read from the engine at a time while building a tree.
pub const TREE_SCAN_PAGE: usize = 256;

/// Tree builds running at once on one node.
pub const MAX_CONCURRENT_TREE_BUILDS: usize = 2;

/// Most partitions one repair page holds, whatever is asked.
pub const MAX_PAGE_PARTITIONS: u32 = 1_000;

/// Most bytes one repair page gathers before it is cut, whatever is asked: a quarter of a verb,
/// so that one large partition past the budget still fits.
pub const MAX_PAGE_BYTES: u32 = (verbs::MAX_VERB_BYTES / 4) as u32;

/// Partitions read from the engine at a time while filling a repair page: small, so that
/// memory stays close to the page's byte budget even for large partitions.
const PAGE_SCAN_CHUNK: usize = 16;

static TREE_BUILDS: Semaphore = Semaphore::const_new(MAX_CONCURRENT_TREE_BUILDS);

/// The scan that starts just after every partition with token `token`: partition keys are never
/// empty, so the empty key at the next token sorts before every real partition there. `None`
/// when nothing comes after (`token` is the top of the ring).
fn after_token(token: i64) -> Option<ScanRange> {
    let next = token.checked_add(1)?;
    Some(ScanRange {
        after: Some(PartitionKey {
            token: next,
            key: Vec::new(),
        }),
        end_token: None,
    })
}

/// The engine scans that together cover `range` exactly, in ring order from its start: one for
/// a range that does not wrap, two for one that does (or the whole ring): from its start to the
/// top of the ring, then from the bottom to its end.
pub fn scan_pieces(range: TokenRange) -> Vec<ScanRange> {
    let (start, end) = (range.start.0, range.end.0);
    if start < end {
        let mut piece = after_token(start).expect("start < end <= MAX");
        piece.end_token = Some(end);
        return vec![piece];
    }
    // Wraps, or the whole ring (start == end).
    let mut pieces = Vec::with_capacity(2);
    if let Some(mut upper) = after_token(start) {
        upper.end_token = Some(i64::MAX);
        pieces.push(upper);
    }
    pieces.push(ScanRange {
        after: None,
        end_token: Some(end),
    });
    pieces
}

/// Seconds since the epoch (only the `limit` of a slice depends on it; repair reads have none).
fn now_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn storage_error(e: crate::storage::StorageError) -> ReplicaError {
    match e {
        crate::storage::StorageError::DiskFull(m) => ReplicaError::DiskFull(m),
        other => ReplicaError::Storage(other.to_string()),
    }
}

fn merkle_error(e: MerkleError) -> ReplicaError {
    match e {
        MerkleError::TokenOutOfRange { .. } => {
            ReplicaError::Storage(format!("the engine scanned outside the range: {e}"))
        }
        other => ReplicaError::BadRequest(other.to_string()),
    }
}

/// Builders at every depth at once, or at one fixed depth.
struct Builders {
    /// Builders in increasing depth; `builders[i]` has depth `first_depth + i`.
    builders: Vec<MerkleTreeBuilder>,
    first_depth: u8,
    range: TokenRange,
    partitions: u64,
}

impl Builders {
    fn new(range: TokenRange, depth: Option<u8>) -> Result<Builders, MerkleError> {
        let (first, last) = match depth {
            Some(d) => (d, d),
            None => (0, MerkleTree::depth_for(range, u64::MAX)),
        };
        let builders = (first..=last)
            .map(|d| MerkleTreeBuilder::new(range, d))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Builders {
            builders,
            first_depth: first,
            range,
            partitions: 0,
        })
    }

    fn add(&mut self, token: Token, digest: [u8; 16]) -> Result<(), MerkleError> {
        for builder in &mut self.builders {
            builder.add(token, digest)?;
        }
        self.partitions += 1;
        Ok(())
    }

    /// The tree at the fixed depth, or at the depth the partition count calls for.
    fn finish(mut self) -> MerkleTree {
        let wanted = MerkleTree::depth_for(self.range, self.partitions);
        let index = usize::from(wanted.saturating_sub(self.first_depth))
            .min(self.builders.len().saturating_sub(1));
        self.builders.swap_remove(index).finish()
    }
}

/// Builds this replica's tree of `table` over `range`: see the module documentation.
pub async fn build(
    engine: Arc<dyn Engine>,
    table: TableId,
    range: TokenRange,
    depth: Option<u8>,
) -> Result<MerkleTree, ReplicaError> {
    // Validated before waiting for a turn: a bad request fails at once.
    if let Some(d) = depth {
        MerkleTreeBuilder::new(range, d).map_err(merkle_error)?;
    }
    let _permit = TREE_BUILDS
        .acquire()
        .await
        .map_err(|e| ReplicaError::Storage(format!("tree builds closed: {e}")))?;
    tokio::task::spawn_blocking(move || build_blocking(engine.as_ref(), table, range, depth))
        .await
        .map_err(|e| ReplicaError::Storage(format!("tree build task failed: {e}")))?
}

/// [`build`] on the calling thread.
pub fn build_blocking(
    engine: &dyn Engine,
    table: TableId,
    range: TokenRange,
    depth: Option<u8>,
) -> Result<MerkleTree, ReplicaError> {
    let mut builders = Builders::new(range, depth).map_err(merkle_error)?;
    let now = now_seconds();
    let slice = Slice::all();
    for mut piece in scan_pieces(range) {
        loop {
            let page = engine
                .scan(table, &piece, &slice, TREE_SCAN_PAGE, now)
                .map_err(storage_error)?;
            let full = page.len() >= TREE_SCAN_PAGE;
            let last = page.last().map(|p| p.partition.clone());
            for partition in page {
                let token = Token(partition.partition.token);
                let digest = verbs::digest_of(&Some(partition));
                builders.add(token, digest).map_err(merkle_error)?;
            }
            match last {
                Some(last) if full => piece.after = Some(last),
                _ => break,
            }
        }
    }
    Ok(builders.finish())
}

/// Up to `max_partitions` whole partitions of `table` in `range` (clamped to
/// [`MAX_PAGE_PARTITIONS`]), cut after the one that brings the encoded total to `max_bytes`
/// (clamped to [`MAX_PAGE_BYTES`]); and whether the range holds nothing after them.
pub async fn read_page(
    engine: Arc<dyn Engine>,
    table: TableId,
    range: ScanRange,
    max_partitions: u32,
    max_bytes: u32,
) -> Result<(Vec<PartitionData>, bool), ReplicaError> {
    tokio::task::spawn_blocking(move || {
        read_page_blocking(engine.as_ref(), table, range, max_partitions, max_bytes)
    })
    .await
    .map_err(|e| ReplicaError::Storage(format!("repair read task failed: {e}")))?
}

/// [`read_page`] on the calling thread.
pub fn read_page_blocking(
    engine: &dyn Engine,
    table: TableId,
    mut range: ScanRange,
    max_partitions: u32,
    max_bytes: u32,
) -> Result<(Vec<PartitionData>, bool), ReplicaError> {
    let max_partitions = max_partitions.clamp(1, MAX_PAGE_PARTITIONS) as usize;
    let max_bytes = max_bytes.clamp(1, MAX_PAGE_BYTES) as usize;
    let now = now_seconds();
    let slice = Slice::all();
    let mut out: Vec<PartitionData> = Vec::new();
    let mut bytes = 0usize;
    loop {
        // One more than the room left: finding it tells that the range goes on.
        let want = (max_partitions - out.len() + 1).min(PAGE_SCAN_CHUNK);
        let chunk = engine
            .scan(table, &range, &slice, want, now)
            .map_err(storage_error)?;
        let exhausted = chunk.len() < want;
        for partition in chunk {
            if out.len() == max_partitions || bytes >= max_bytes {
                return Ok((out, false));
            }
            bytes += verbs::encoded_len(&partition).map_err(ReplicaError::Storage)?;
            range.after = Some(partition.partition.clone());
            out.push(partition);
        }
        if exhausted {
            return Ok((out, true));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordinator::testing::{create_table, insert, int_partition};
    use crate::schema::SchemaStore;
    use crate::storage::MemoryEngine;

    fn range(start: i64, end: i64) -> TokenRange {
        TokenRange::new(Token(start), Token(end))
    }

    /// Every token a scan piece covers contains, checked at the interesting points.
    fn covered(pieces: &[ScanRange], token: i64) -> usize {
        pieces
            .iter()
            .filter(|p| {
                let after = p.after.as_ref().map_or(i64::MIN, |a| a.token);
                // `after` = (t, []): covers t and up (keys are never empty); None: from MIN.
                token >= after && token <= p.end_token.unwrap_or(i64::MAX)
            })
            .count()
    }

    #[test]
    fn scan_pieces_cover_each_token_of_the_range_once() {
        let cases = [
            range(-10, 10),
            range(10, -10),
            range(0, 0),
            range(i64::MIN, i64::MIN),
            range(i64::MAX, i64::MAX),
            range(i64::MIN, 5),
            range(5, i64::MAX),
            range(i64::MAX, 5),
            range(5, i64::MIN),
        ];
        let probes = [
            i64::MIN,
            i64::MIN + 1,
            -11,
            -10,
            -9,
            0,
            1,
            4,
            5,
            6,
            9,
            10,
            11,
            i64::MAX - 1,
            i64::MAX,
        ];
        for r in cases {
            let pieces = scan_pieces(r);
            for t in probes {
                let want = usize::from(r.contains(Token(t)));
                assert_eq!(covered(&pieces, t), want, "{r} token {t}: {pieces:?}");
            }
        }
    }

    /// The table `(k int PRIMARY KEY, v text)` (engines need no schema to store it).
    fn table() -> Arc<crate::schema::TableDef> {
        let schema = SchemaStore::open(Arc::new(MemoryEngine::new())).expect("schema");
        create_table(&schema, 3, "CREATE TABLE t (k int PRIMARY KEY, v text)")
    }

    fn engine_with(table: &crate::schema::TableDef, rows: &[(i32, String)]) -> Arc<dyn Engine> {
        let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
        for (k, v) in rows {
            engine.apply(&insert(table, *k, v, 10)).expect("apply");
        }
        engine
    }

    #[test]
    fn trees_agree_on_equal_data_and_locate_differences() {
        let table = table();
        let rows: Vec<(i32, String)> = (0..2000).map(|k| (k, format!("v{k}"))).collect();
        let a = engine_with(&table, &rows);
        let b = engine_with(&table, &rows);
        for r in [
            range(0, 0),
            range(-1 << 62, 1 << 62),
            range(1 << 62, -1 << 62),
        ] {
            let ta = build_blocking(a.as_ref(), table.id, r, None).unwrap();
            let tb = build_blocking(b.as_ref(), table.id, r, None).unwrap();
            assert_eq!(ta, tb, "{r}");
            assert!(ta.depth() >= 9, "about one partition per leaf: {ta:?}");
            let in_range = (0..2000)
                .filter(|k| r.contains(Token(int_partition(*k).token)))
                .count() as u64;
            assert_eq!(ta.partitions(), in_range);
        }
        // One newer write on b: one leaf differs, and it holds the partition.
        b.apply(&insert(&table, 7, "new", 11)).unwrap();
        let r = range(0, 0);
        let ta = build_blocking(a.as_ref(), table.id, r, None).unwrap();
        let tb = build_blocking(b.as_ref(), table.id, r, Some(ta.depth())).unwrap();
        let diff = ringdb_ring::merkle::diff(&ta, &tb).unwrap();
        assert_eq!(diff.len(), 1);
        assert!(diff[0].contains(Token(int_partition(7).token)));
    }

    #[test]
    fn bad_depths_are_refused() {
        let table = table();
        let a = engine_with(&table, &[]);
        let err = build_blocking(a.as_ref(), table.id, range(0, 3), Some(5)).unwrap_err();
        assert!(matches!(err, ReplicaError::BadRequest(_)), "{err:?}");
        let tree = build_blocking(a.as_ref(), table.id, range(0, 3), None).unwrap();
        assert_eq!((tree.depth(), tree.partitions()), (0, 0));
    }

    #[test]
    fn pages_are_bounded_and_resume() {
        let table = table();
        let rows: Vec<(i32, String)> = (0..300).map(|k| (k, "x".repeat(100))).collect();
        let a = engine_with(&table, &rows);
        let mut seen = Vec::new();
        for piece in scan_pieces(range(0, 0)) {
            let mut piece = piece;
            loop {
                let (page, complete) =
                    read_page_blocking(a.as_ref(), table.id, piece.clone(), 50, 1000).unwrap();
                assert!(!page.is_empty() || complete);
                assert!(page.len() <= 50);
                let bytes: usize = page.iter().map(|p| verbs::encoded_len(p).unwrap()).sum();
                // Cut once past the budget: at most one partition beyond it.
                assert!(page.len() <= 1 || bytes < 1000 + 200, "{bytes} bytes");
                seen.extend(page.iter().map(|p| p.partition.clone()));
                if complete {
                    break;
                }
                piece.after = page.last().map(|p| p.partition.clone());
            }
        }
        // In ring order from the range's start (token 0), so two sorted runs.
        let split = seen.iter().position(|p| p.token <= 0).unwrap_or(seen.len());
        assert!(seen[..split].windows(2).all(|w| w[0] < w[1]));
        assert!(seen[split..].windows(2).all(|w| w[0] < w[1]));
        seen.sort();
        let mut want: Vec<PartitionKey> = (0..300).map(int_partition).collect();
        want.sort();
        assert!(seen == want, "every partition once");

        let (page, complete) = read_page_blocking(
            a.as_ref(),
            table.id,
            ScanRange {
                after: None,
                end_token: None,
            },
            300,
            u32::MAX,
        )
        .unwrap();
        assert_eq!((page.len(), complete), (300, true));
    }
}
