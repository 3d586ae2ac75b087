//! Merkle trees over a token range, for anti-entropy repair.
//!
//! Repair asks every replica of a token range for a summary of what it holds there, compares the
//! summaries, and streams only the sub-ranges where they disagree. The summary is a
//! [`MerkleTree`]: the range `(start, end]` (a [`TokenRange`], so it may wrap past [`Token::MAX`],
//! and `start == end` is the whole ring) is cut into `2^depth` sub-ranges of equal width (to
//! within one token), the *leaves*. Each leaf hashes the partitions whose tokens fall in it;
//! each inner node hashes its two children; the root summarizes the whole range.
//!
//! # Building
//!
//! A replica walks its partitions of the table in the range and feeds each one, as its token and
//! a 16-byte digest of its content, to a [`MerkleTreeBuilder`]. The builder keeps one
//! accumulator per leaf, never the partitions, so memory is `O(leaves)` whatever the amount of
//! data (depth 16, the maximum, is 65 536 leaves: about 1.5 MiB while building, 2.5 MiB for the
//! finished tree).
//!
//! A leaf's accumulator is a *multiset hash*: the wrapping 128-bit sum of one hash per partition
//! (of its token and digest), plus the number of partitions. Addition commutes, so the tree does
//! not depend on the order partitions are fed in. That matters for partitions that share a token
//! (hash collisions of different keys): storage engines order them by key, and nothing forces two
//! engines, or two releases, to agree on that order. Feeding in token order is therefore *not*
//! required; the natural storage scan order simply works. Unlike the XOR Cassandra uses, a sum
//! does not cancel a partition that appears twice. A leaf with no partitions hashes to a fixed
//! value, so two empty replicas agree.
//!
//! # The hash
//!
//! The workspace has no cryptographic hash, so the tree uses the crate's MurmurHash3 `x64_128`
//! (see [`crate::murmur3`]) over fixed 32-byte blocks, with a different seed for partition
//! entries, leaves and inner nodes so that the three kinds cannot be confused. Its 128 bits make
//! an *accidental* collision (two different leaf contents with the same hash) vanishingly rare,
//! which is what repair needs: it detects replicas that diverged by bugs, lost writes or missed
//! hints. It does **not** resist an adversary who chooses partition contents to forge a
//! collision; a replica that lies can hide data from repair anyway.
//!
//! The hash is part of the wire protocol: nodes of different releases compare trees, so changing
//! any of it makes every range look different. Golden vectors in the tests pin it.
//!
//! # Comparing
//!
//! [`diff`] walks both trees from the root, skips equal subtrees and returns the differing leaves
//! as token ranges, adjacent leaves coalesced into one range, in ring order starting from the
//! tree's start. [`differences`] returns the same ranges with the number of leaves and of
//! partitions on each side, for the repair report. Trees of different ranges or depths cannot be
//! compared: an error, never a panic.
//!
//! # On the wire
//!
//! A tree serializes (serde) as its range, its depth, its leaf hashes and its per-leaf partition
//! counts; inner nodes are recomputed on arrival (cheap: `2^depth - 1` hashes), which halves the
//! size and means a peer cannot send inner nodes that disagree with its leaves. With bincode's
//! standard configuration a depth-16 tree takes 16 bytes per leaf hash plus a varint per count:
//! about 1.1 MiB, at most 1.6 MiB. Deserialization validates the tree (depth within
//! [`MAX_DEPTH`], leaf count matching the depth, range wide enough, counts that add up within
//! `u64`), so a decoded `MerkleTree` is always well formed. Bounding the allocation while
//! decoding is the transport's job (the node decodes verbs under a byte limit).

use std::fmt;

use serde::{Deserialize, Serialize, Serializer};

use crate::murmur3::hash3_x64_128;
use crate::token::{Token, TokenRange};

/// The deepest tree accepted: `2^16 = 65 536` leaves.
pub const MAX_DEPTH: u8 = 16;

/// A 128-bit node hash, as stored and sent.
pub type MerkleHash = [u8; 16];

// Domain separation: one seed per kind of hashed block ("merkle" followed by a tag).
const ENTRY_SEED: u64 = 0x6d65_726b_6c65_0001;
const LEAF_SEED: u64 = 0x6d65_726b_6c65_0002;
const INNER_SEED: u64 = 0x6d65_726b_6c65_0003;

/// Hashes one 32-byte block. Always two full Murmur3 blocks, so the Java tail quirk of
/// [`hash3_x64_128`] never comes into play.
fn hash_block(block: &[u8; 32], seed: u64) -> u128 {
    let [h1, h2] = hash3_x64_128(block, seed);
    u128::from(h1) | (u128::from(h2) << 64)
}

/// The contribution of one partition to its leaf's sum.
fn entry_hash(token: Token, digest: &[u8; 16]) -> u128 {
    let mut block = [0u8; 32];
    block[..8].copy_from_slice(&token.0.to_le_bytes());
    block[8..24].copy_from_slice(digest);
    hash_block(&block, ENTRY_SEED)
}

/// A leaf's hash from its accumulator; `(0, 0)` is the empty leaf.
fn leaf_hash(sum: u128, partitions: u64) -> MerkleHash {
    let mut block = [0u8; 32];
    block[..16].copy_from_slice(&sum.to_le_bytes());
    block[16..24].copy_from_slice(&partitions.to_le_bytes());
    hash_block(&block, LEAF_SEED).to_le_bytes()
}

fn inner_hash(left: &MerkleHash, right: &MerkleHash) -> MerkleHash {
    let mut block = [0u8; 32];
    block[..16].copy_from_slice(left);
    block[16..].copy_from_slice(right);
    hash_block(&block, INNER_SEED).to_le_bytes()
}

/// Why a tree cannot be built, decoded or compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MerkleError {
    /// The depth exceeds [`MAX_DEPTH`].
    DepthTooLarge {
        /// The depth asked for or received.
        depth: u8,
    },
    /// The range has fewer tokens than the depth has leaves, so some leaf would be empty of
    /// tokens (pick a smaller depth, see [`MerkleTree::depth_for`]).
    RangeTooNarrow {
        /// The range.
        range: TokenRange,
        /// The depth asked for or received.
        depth: u8,
    },
    /// A partition was fed whose token lies outside the tree's range.
    TokenOutOfRange {
        /// The partition's token.
        token: Token,
        /// The tree's range.
        range: TokenRange,
    },
    /// A received tree does not have `2^depth` leaf hashes and partition counts.
    LeafCountMismatch {
        /// The tree's depth.
        depth: u8,
        /// `2^depth`.
        expected: usize,
        /// How many leaf hashes it had.
        hashes: usize,
        /// How many partition counts it had.
        partitions: usize,
    },
    /// The partition counts add up to more than `u64::MAX`.
    PartitionCountOverflow,
    /// Two trees cover different ranges or have different depths, so their leaves do not match.
    ShapeMismatch {
        /// The local tree's range.
        local_range: TokenRange,
        /// The local tree's depth.
        local_depth: u8,
        /// The remote tree's range.
        remote_range: TokenRange,
        /// The remote tree's depth.
        remote_depth: u8,
    },
}

impl fmt::Display for MerkleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MerkleError::DepthTooLarge { depth } => {
                write!(
                    f,
                    "Merkle tree depth {depth} exceeds the maximum {MAX_DEPTH}"
                )
            }
            MerkleError::RangeTooNarrow { range, depth } => write!(
                f,
                "range {range} has fewer tokens than a depth-{depth} Merkle tree has leaves"
            ),
            MerkleError::TokenOutOfRange { token, range } => {
                write!(f, "token {token} is outside the Merkle tree range {range}")
            }
            MerkleError::LeafCountMismatch {
                depth,
                expected,
                hashes,
                partitions,
            } => write!(
                f,
                "a depth-{depth} Merkle tree needs {expected} leaves, got {hashes} hashes and \
                 {partitions} partition counts"
            ),
            MerkleError::PartitionCountOverflow => {
                write!(f, "Merkle tree partition counts overflow u64")
            }
            MerkleError::ShapeMismatch {
                local_range,
                local_depth,
                remote_range,
                remote_depth,
            } => write!(
                f,
                "cannot compare Merkle trees: local covers {local_range} at depth {local_depth}, \
                 remote covers {remote_range} at depth {remote_depth}"
            ),
        }
    }
}

impl std::error::Error for MerkleError {}

/// A range cut into `2^depth` leaves: the geometry shared by the builder and the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shape {
    range: TokenRange,
    depth: u8,
}

impl Shape {
    fn new(range: TokenRange, depth: u8) -> Result<Shape, MerkleError> {
        if depth > MAX_DEPTH {
            return Err(MerkleError::DepthTooLarge { depth });
        }
        if (1u128 << depth) > range.width() {
            return Err(MerkleError::RangeTooNarrow { range, depth });
        }
        Ok(Shape { range, depth })
    }

    fn leaf_count(&self) -> usize {
        1 << self.depth
    }

    /// Where leaf `index` starts, in tokens clockwise from the range's start: `floor(index *
    /// width / 2^depth)`. Equal to `2^64`, which wraps to the start, for the end of a full ring.
    fn boundary(&self, index: usize) -> u64 {
        // At most 2^16 * 2^64: fits in u128.
        ((index as u128 * self.range.width()) >> self.depth) as u64
    }

    fn leaf_range(&self, index: usize) -> TokenRange {
        let start = self.range.start;
        TokenRange::new(
            start.wrapping_add(self.boundary(index)),
            start.wrapping_add(self.boundary(index + 1)),
        )
    }

    /// The leaf holding `token`: the last leaf whose start boundary lies before it, that is
    /// `ceil(offset * 2^depth / width) - 1` for the token's offset in `1..=width`.
    fn leaf_index(&self, token: Token) -> Option<usize> {
        let width = self.range.width();
        let offset = match u128::from(self.range.start.distance_to(token)) {
            // The start token itself ends a full ring and lies outside any other range.
            0 if self.range.is_full_ring() => width,
            0 => return None,
            offset if offset > width => return None,
            offset => offset,
        };
        Some((((offset << self.depth) - 1) / width) as usize)
    }

    /// The range from the start of leaf `first` to the end of leaf `first + leaves - 1`, leaf
    /// indices taken modulo the leaf count.
    fn span(&self, first: usize, leaves: usize) -> TokenRange {
        let last = (first + leaves - 1) % self.leaf_count();
        TokenRange::new(self.leaf_range(first).start, self.leaf_range(last).end)
    }
}

/// Builds a [`MerkleTree`] from a stream of partitions, in `O(leaves)` memory.
///
/// ```
/// use ringdb_ring::{merkle, Token, TokenRange};
/// use ringdb_ring::merkle::{MerkleTree, MerkleTreeBuilder};
///
/// let range = TokenRange::new(Token(-100), Token(100));
/// let depth = MerkleTree::depth_for(range, 3);
/// let mut local = MerkleTreeBuilder::new(range, depth).unwrap();
/// let mut remote = MerkleTreeBuilder::new(range, depth).unwrap();
/// for (token, digest) in [(-50, [1; 16]), (7, [2; 16]), (99, [3; 16])] {
///     local.add(Token(token), digest).unwrap();
///     remote.add(Token(token), if token == 7 { [9; 16] } else { digest }).unwrap();
/// }
/// let (local, remote) = (local.finish(), remote.finish());
/// let differing = merkle::diff(&local, &remote).unwrap();
/// assert_eq!(differing.len(), 1);
/// assert!(differing[0].contains(Token(7)));
/// ```
#[derive(Debug, Clone)]
pub struct MerkleTreeBuilder {
    shape: Shape,
    /// Per leaf: the wrapping sum of the entry hashes fed to it.
    sums: Vec<u128>,
    /// Per leaf: how many partitions were fed to it.
    partitions: Vec<u64>,
    total: u64,
}

impl MerkleTreeBuilder {
    /// An empty builder for `range` cut into `2^depth` leaves.
    ///
    /// Fails if `depth` exceeds [`MAX_DEPTH`] or the range has fewer than `2^depth` tokens.
    pub fn new(range: TokenRange, depth: u8) -> Result<MerkleTreeBuilder, MerkleError> {
        let shape = Shape::new(range, depth)?;
        Ok(MerkleTreeBuilder {
            shape,
            sums: vec![0; shape.leaf_count()],
            partitions: vec![0; shape.leaf_count()],
            total: 0,
        })
    }

    /// Accounts for one partition: its token and a digest of its content.
    ///
    /// Partitions may come in any order (see the module documentation); feeding the same
    /// partition twice counts it twice. Fails, changing nothing, if `token` is outside the range.
    pub fn add(&mut self, token: Token, digest: [u8; 16]) -> Result<(), MerkleError> {
        let leaf = self
            .shape
            .leaf_index(token)
            .ok_or(MerkleError::TokenOutOfRange {
                token,
                range: self.shape.range,
            })?;
        self.total = self
            .total
            .checked_add(1)
            .ok_or(MerkleError::PartitionCountOverflow)?;
        self.sums[leaf] = self.sums[leaf].wrapping_add(entry_hash(token, &digest));
        self.partitions[leaf] += 1;
        Ok(())
    }

    /// The range the tree covers.
    pub fn range(&self) -> TokenRange {
        self.shape.range
    }

    /// The tree's depth.
    pub fn depth(&self) -> u8 {
        self.shape.depth
    }

    /// The finished tree: leaf hashes, then inner nodes up to the root.
    pub fn finish(self) -> MerkleTree {
        let leaf_hashes: Vec<MerkleHash> = self
            .sums
            .iter()
            .zip(&self.partitions)
            .map(|(&sum, &partitions)| leaf_hash(sum, partitions))
            .collect();
        MerkleTree::assemble(self.shape, leaf_hashes, self.partitions, self.total)
    }
}

/// A Merkle tree of one replica's partitions in a token range; see the module documentation.
///
/// Immutable once built; every instance is well formed, including those decoded from the network.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "WireTree")]
pub struct MerkleTree {
    shape: Shape,
    /// All `2^(depth + 1) - 1` node hashes in heap order: the root at 0, the children of node
    /// `k` at `2k + 1` and `2k + 2`, so the leaves are the last `2^depth`, in ring order.
    nodes: Vec<MerkleHash>,
    /// The number of partitions in each leaf.
    partitions: Vec<u64>,
    /// Their sum (checked not to overflow).
    total: u64,
}

impl MerkleTree {
    /// The depth to use for a range expected to hold about `partitions_estimate` partitions:
    /// about one partition per leaf (`ceil(log2(estimate))`), capped at [`MAX_DEPTH`] and at
    /// what the range's width allows, so the result is always accepted by
    /// [`MerkleTreeBuilder::new`].
    pub fn depth_for(range: TokenRange, partitions_estimate: u64) -> u8 {
        let wanted = match partitions_estimate {
            0 | 1 => 0,
            n => 64 - (n - 1).leading_zeros(),
        };
        let mut depth = wanted.min(u32::from(MAX_DEPTH)) as u8;
        while (1u128 << depth) > range.width() {
            depth -= 1;
        }
        depth
    }

    /// Builds a tree from an iterator of `(token, digest)` pairs, streaming it.
    pub fn build(
        range: TokenRange,
        depth: u8,
        partitions: impl IntoIterator<Item = (Token, [u8; 16])>,
    ) -> Result<MerkleTree, MerkleError> {
        let mut builder = MerkleTreeBuilder::new(range, depth)?;
        for (token, digest) in partitions {
            builder.add(token, digest)?;
        }
        Ok(builder.finish())
    }

    /// A tree from its parts as they travel (the leaf hashes and partition counts, in ring
    /// order), validated: the depth and range as for [`MerkleTreeBuilder::new`], exactly
    /// `2^depth` hashes and counts, and counts whose sum fits in `u64`. Inner nodes are
    /// recomputed.
    pub fn from_leaves(
        range: TokenRange,
        depth: u8,
        leaf_hashes: Vec<MerkleHash>,
        leaf_partitions: Vec<u64>,
    ) -> Result<MerkleTree, MerkleError> {
        let shape = Shape::new(range, depth)?;
        let expected = shape.leaf_count();
        if leaf_hashes.len() != expected || leaf_partitions.len() != expected {
            return Err(MerkleError::LeafCountMismatch {
                depth,
                expected,
                hashes: leaf_hashes.len(),
                partitions: leaf_partitions.len(),
            });
        }
        let total = leaf_partitions
            .iter()
            .try_fold(0u64, |sum, &n| sum.checked_add(n))
            .ok_or(MerkleError::PartitionCountOverflow)?;
        Ok(MerkleTree::assemble(
            shape,
            leaf_hashes,
            leaf_partitions,
            total,
        ))
    }

    /// Lays out validated leaves and hashes the inner nodes, bottom up.
    fn assemble(
        shape: Shape,
        leaf_hashes: impl IntoIterator<Item = MerkleHash>,
        partitions: Vec<u64>,
        total: u64,
    ) -> MerkleTree {
        let inner = shape.leaf_count() - 1;
        let mut nodes = Vec::with_capacity(2 * inner + 1);
        nodes.resize(inner, [0; 16]);
        nodes.extend(leaf_hashes);
        for k in (0..inner).rev() {
            nodes[k] = inner_hash(&nodes[2 * k + 1], &nodes[2 * k + 2]);
        }
        MerkleTree {
            shape,
            nodes,
            partitions,
            total,
        }
    }

    /// The range the tree covers.
    pub fn range(&self) -> TokenRange {
        self.shape.range
    }

    /// The depth: the tree has `2^depth` leaves.
    pub fn depth(&self) -> u8 {
        self.shape.depth
    }

    /// The number of leaves, `2^depth`.
    pub fn leaf_count(&self) -> usize {
        self.shape.leaf_count()
    }

    /// The root hash: equal roots mean (barring a 128-bit collision) equal contents.
    pub fn root_hash(&self) -> MerkleHash {
        self.nodes[0]
    }

    /// The leaf hashes, in ring order from the range's start.
    pub fn leaf_hashes(&self) -> &[MerkleHash] {
        &self.nodes[self.shape.leaf_count() - 1..]
    }

    /// The number of partitions in each leaf, in ring order from the range's start.
    pub fn leaf_partitions(&self) -> &[u64] {
        &self.partitions
    }

    /// The number of partitions in the whole tree.
    pub fn partitions(&self) -> u64 {
        self.total
    }

    /// The sub-range covered by leaf `index`, or `None` past the last leaf.
    pub fn leaf_range(&self, index: usize) -> Option<TokenRange> {
        (index < self.leaf_count()).then(|| self.shape.leaf_range(index))
    }

    /// The leaf whose sub-range contains `token`, or `None` if the tree's range does not.
    pub fn leaf_index(&self, token: Token) -> Option<usize> {
        self.shape.leaf_index(token)
    }

    /// Whether two trees can be compared: same range, same depth.
    fn check_comparable(&self, remote: &MerkleTree) -> Result<(), MerkleError> {
        if self.shape == remote.shape {
            Ok(())
        } else {
            Err(MerkleError::ShapeMismatch {
                local_range: self.shape.range,
                local_depth: self.shape.depth,
                remote_range: remote.shape.range,
                remote_depth: remote.shape.depth,
            })
        }
    }

    /// Appends the differing leaves under node `k` to `runs` as `[first, end)` runs of adjacent
    /// leaves, left to right. Equal subtrees are skipped without looking inside.
    fn collect_differing(&self, remote: &MerkleTree, k: usize, runs: &mut Vec<(usize, usize)>) {
        if self.nodes[k] == remote.nodes[k] {
            return;
        }
        let first_leaf_node = self.shape.leaf_count() - 1;
        if k < first_leaf_node {
            self.collect_differing(remote, 2 * k + 1, runs);
            self.collect_differing(remote, 2 * k + 2, runs);
            return;
        }
        let leaf = k - first_leaf_node;
        match runs.last_mut() {
            Some((_, end)) if *end == leaf => *end += 1,
            _ => runs.push((leaf, leaf + 1)),
        }
    }
}

impl fmt::Debug for MerkleTree {
    /// A summary: the leaves themselves would be tens of thousands of lines.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let root: String = self
            .root_hash()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        f.debug_struct("MerkleTree")
            .field("range", &self.shape.range)
            .field("depth", &self.shape.depth)
            .field("partitions", &self.total)
            .field("root", &root)
            .finish()
    }
}

/// A run of adjacent leaves whose hashes differ between two trees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Difference {
    /// The tokens the run covers.
    pub range: TokenRange,
    /// The index of the run's first leaf.
    pub first_leaf: usize,
    /// How many leaves the run spans. Leaf indices are taken modulo the leaf count: in a
    /// full-ring tree a run may continue from the last leaf to the first.
    pub leaves: usize,
    /// The partitions the local tree has in the run.
    pub local_partitions: u64,
    /// The partitions the remote tree has in the run.
    pub remote_partitions: u64,
}

/// The sub-ranges where `local` and `remote` differ, with leaf and partition counts.
///
/// Adjacent differing leaves form one [`Difference`]; the result is sorted in ring order from the
/// trees' start, the ranges are disjoint, never adjacent, and lie inside the trees' range. In a
/// full-ring tree, where the last leaf is adjacent to the first, a run through that boundary is
/// one wrapping range, listed last; if every leaf differs, it is the whole ring. Empty when the
/// trees agree. Fails if the trees have different ranges or depths.
pub fn differences(
    local: &MerkleTree,
    remote: &MerkleTree,
) -> Result<Vec<Difference>, MerkleError> {
    local.check_comparable(remote)?;
    let mut runs = Vec::new();
    local.collect_differing(remote, 0, &mut runs);

    let leaf_count = local.leaf_count();
    // (first leaf, number of leaves) per run.
    let mut spans: Vec<(usize, usize)> = runs
        .iter()
        .map(|&(first, end)| (first, end - first))
        .collect();
    // In a full ring the last leaf ends where the first begins: runs at both ends are one range.
    let joins_ends = local.range().is_full_ring()
        && runs.len() > 1
        && runs[0].0 == 0
        && runs[runs.len() - 1].1 == leaf_count;
    if joins_ends {
        let (_, head_leaves) = spans.remove(0);
        if let Some(last) = spans.last_mut() {
            last.1 += head_leaves;
        }
    }

    let count = |tree: &MerkleTree, first: usize, leaves: usize| -> u64 {
        // Cannot overflow: the tree's total fits in u64 (checked when it was built).
        (first..first + leaves)
            .map(|i| tree.partitions[i % leaf_count])
            .sum()
    };
    Ok(spans
        .into_iter()
        .map(|(first_leaf, leaves)| Difference {
            range: local.shape.span(first_leaf, leaves),
            first_leaf,
            leaves,
            local_partitions: count(local, first_leaf, leaves),
            remote_partitions: count(remote, first_leaf, leaves),
        })
        .collect())
}

/// The sub-ranges where `local` and `remote` differ: the ranges of [`differences`].
pub fn diff(local: &MerkleTree, remote: &MerkleTree) -> Result<Vec<TokenRange>, MerkleError> {
    Ok(differences(local, remote)?
        .into_iter()
        .map(|d| d.range)
        .collect())
}

/// The serialized form of a tree (its leaves; inner nodes are recomputed), as decoded.
#[derive(Deserialize)]
#[serde(rename = "MerkleTree")]
struct WireTree {
    start: i64,
    end: i64,
    depth: u8,
    leaf_hashes: Vec<MerkleHash>,
    leaf_partitions: Vec<u64>,
}

/// The serialized form borrowed from a tree, to encode without copying its leaves.
#[derive(Serialize)]
#[serde(rename = "MerkleTree")]
struct WireTreeRef<'a> {
    start: i64,
    end: i64,
    depth: u8,
    leaf_hashes: &'a [MerkleHash],
    leaf_partitions: &'a [u64],
}

impl TryFrom<WireTree> for MerkleTree {
    type Error = MerkleError;

    fn try_from(wire: WireTree) -> Result<MerkleTree, MerkleError> {
        MerkleTree::from_leaves(
            TokenRange::new(Token(wire.start), Token(wire.end)),
            wire.depth,
            wire.leaf_hashes,
            wire.leaf_partitions,
        )
    }
}

impl Serialize for MerkleTree {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        WireTreeRef {
            start: self.shape.range.start.0,
            end: self.shape.range.end.0,
            depth: self.shape.depth,
            leaf_hashes: self.leaf_hashes(),
            leaf_partitions: &self.partitions,
        }
        .serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(hash: &MerkleHash) -> String {
        hash.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn range(start: i64, end: i64) -> TokenRange {
        TokenRange::new(Token(start), Token(end))
    }

    /// The hash is part of the wire protocol: these must never change within `ringdb/1`.
    #[test]
    fn golden_hashes() {
        assert_eq!(hex(&leaf_hash(0, 0)), "c48988940b159f66f935fd65da73dbdd");
        let tree = MerkleTree::build(
            range(i64::MIN, i64::MIN),
            2,
            [
                (Token(-5), [1; 16]),
                (Token(0), [2; 16]),
                (Token(i64::MAX), [3; 16]),
            ],
        )
        .unwrap();
        assert_eq!(hex(&tree.root_hash()), "62613f56bd9a449e07c30632e690cece");
    }

    #[test]
    fn empty_trees_agree() {
        let a = MerkleTreeBuilder::new(range(3, 3), 4).unwrap().finish();
        let b = MerkleTree::build(range(3, 3), 4, []).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.partitions(), 0);
        assert!(a.leaf_hashes().iter().all(|h| *h == leaf_hash(0, 0)));
        assert_eq!(diff(&a, &b).unwrap(), vec![]);
    }

    #[test]
    fn leaves_split_the_range_evenly() {
        let shape = Shape::new(range(0, 10), 2).unwrap();
        let leaves: Vec<TokenRange> = (0..4).map(|i| shape.leaf_range(i)).collect();
        assert_eq!(
            leaves,
            vec![range(0, 2), range(2, 5), range(5, 7), range(7, 10)]
        );
        assert_eq!(shape.leaf_index(Token(0)), None);
        assert_eq!(shape.leaf_index(Token(1)), Some(0));
        assert_eq!(shape.leaf_index(Token(2)), Some(0));
        assert_eq!(shape.leaf_index(Token(3)), Some(1));
        assert_eq!(shape.leaf_index(Token(10)), Some(3));
        assert_eq!(shape.leaf_index(Token(11)), None);
    }

    #[test]
    fn full_ring_leaves() {
        let shape = Shape::new(range(i64::MIN, i64::MIN), 1).unwrap();
        assert_eq!(shape.leaf_range(0), range(i64::MIN, 0));
        assert_eq!(shape.leaf_range(1), range(0, i64::MIN));
        assert_eq!(shape.leaf_index(Token(i64::MIN + 1)), Some(0));
        assert_eq!(shape.leaf_index(Token(0)), Some(0));
        assert_eq!(shape.leaf_index(Token(1)), Some(1));
        assert_eq!(shape.leaf_index(Token(i64::MAX)), Some(1));
        // MIN closes the full ring (MIN, MIN]: it belongs to the last leaf.
        assert_eq!(shape.leaf_index(Token::MIN), Some(1));

        let single = Shape::new(range(7, 7), 0).unwrap();
        assert_eq!(single.leaf_range(0), range(7, 7));
        assert_eq!(single.leaf_index(Token(7)), Some(0));
    }

    #[test]
    fn depth_for_estimates() {
        let ring = range(0, 0);
        assert_eq!(MerkleTree::depth_for(ring, 0), 0);
        assert_eq!(MerkleTree::depth_for(ring, 1), 0);
        assert_eq!(MerkleTree::depth_for(ring, 2), 1);
        assert_eq!(MerkleTree::depth_for(ring, 3), 2);
        assert_eq!(MerkleTree::depth_for(ring, 1024), 10);
        assert_eq!(MerkleTree::depth_for(ring, 1025), 11);
        assert_eq!(MerkleTree::depth_for(ring, u64::MAX), MAX_DEPTH);
        // Narrow ranges: no more leaves than tokens.
        assert_eq!(MerkleTree::depth_for(range(0, 5), 1000), 2);
        assert_eq!(MerkleTree::depth_for(range(0, 1), 1000), 0);
    }

    #[test]
    fn bad_shapes_are_rejected() {
        assert_eq!(
            MerkleTreeBuilder::new(range(0, 0), 17).unwrap_err(),
            MerkleError::DepthTooLarge { depth: 17 }
        );
        assert_eq!(
            MerkleTreeBuilder::new(range(0, 3), 2).unwrap_err(),
            MerkleError::RangeTooNarrow {
                range: range(0, 3),
                depth: 2
            }
        );
        assert!(MerkleTreeBuilder::new(range(0, 4), 2).is_ok());
    }

    #[test]
    fn out_of_range_tokens_are_rejected() {
        let mut builder = MerkleTreeBuilder::new(range(10, 20), 1).unwrap();
        assert_eq!(
            builder.add(Token(10), [0; 16]),
            Err(MerkleError::TokenOutOfRange {
                token: Token(10),
                range: range(10, 20)
            })
        );
        assert!(builder.add(Token(21), [0; 16]).is_err());
        builder.add(Token(20), [0; 16]).unwrap();
        assert_eq!(builder.finish().leaf_partitions(), &[0, 1]);
    }

    #[test]
    fn full_ring_runs_wrap_through_the_start() {
        let ring = range(0, 0);
        let base = MerkleTree::build(ring, 2, []).unwrap();
        let ends = MerkleTree::build(ring, 2, [(Token(1), [1; 16]), (Token(0), [1; 16])]).unwrap();
        let found = differences(&base, &ends).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].first_leaf, 3);
        assert_eq!(found[0].leaves, 2);
        assert_eq!(found[0].remote_partitions, 2);
        assert!(found[0].range.contains(Token(0)) && found[0].range.contains(Token(1)));
        assert_eq!(found[0].range.width(), 1u128 << 63);

        // Every leaf differs: the whole ring, once.
        let all = MerkleTree::build(
            ring,
            2,
            [
                (Token(1), [1; 16]),
                (Token(i64::MAX / 2 + 2), [1; 16]),
                (Token(i64::MIN + 1), [1; 16]),
                (Token(i64::MIN / 2 + 1), [1; 16]),
            ],
        )
        .unwrap();
        assert_eq!(diff(&base, &all).unwrap(), vec![ring]);
    }

    #[test]
    fn non_full_ranges_do_not_join_their_ends() {
        let r = range(0, 100);
        let base = MerkleTree::build(r, 2, []).unwrap();
        let ends = MerkleTree::build(r, 2, [(Token(1), [1; 16]), (Token(100), [1; 16])]).unwrap();
        assert_eq!(
            diff(&base, &ends).unwrap(),
            vec![range(0, 25), range(75, 100)]
        );
    }

    #[test]
    fn mismatched_shapes_are_errors() {
        let a = MerkleTree::build(range(0, 100), 2, []).unwrap();
        let b = MerkleTree::build(range(0, 100), 3, []).unwrap();
        let c = MerkleTree::build(range(0, 101), 2, []).unwrap();
        assert!(matches!(
            diff(&a, &b),
            Err(MerkleError::ShapeMismatch {
                local_depth: 2,
                remote_depth: 3,
                ..
            })
        ));
        assert!(diff(&a, &c).is_err());
    }

    #[test]
    fn from_leaves_validates() {
        let r = range(0, 0);
        assert!(matches!(
            MerkleTree::from_leaves(r, 2, vec![[0; 16]; 3], vec![0; 4]),
            Err(MerkleError::LeafCountMismatch {
                expected: 4,
                hashes: 3,
                partitions: 4,
                ..
            })
        ));
        assert_eq!(
            MerkleTree::from_leaves(r, 1, vec![[0; 16]; 2], vec![u64::MAX, 1]),
            Err(MerkleError::PartitionCountOverflow)
        );
        let tree = MerkleTree::build(r, 3, [(Token(5), [5; 16])]).unwrap();
        let rebuilt = MerkleTree::from_leaves(
            r,
            3,
            tree.leaf_hashes().to_vec(),
            tree.leaf_partitions().to_vec(),
        )
        .unwrap();
        assert_eq!(rebuilt, tree);
    }
}
