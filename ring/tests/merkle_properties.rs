//! Merkle trees checked against naive references on random ranges and partition sets.
//!
//! The references are written for clarity, not speed: the leaf of a token is found by scanning
//! every leaf's range, and the differing leaves of two trees by comparing every leaf hash, where
//! the tree computes the index arithmetically and skips equal subtrees. Ranges are drawn so that
//! wrap-around, the full ring and the `i64::MIN`/`i64::MAX` boundary come up often, and token
//! offsets so that several partitions often share a token.

use proptest::prelude::*;
use ringdb_ring::merkle::{self, MerkleError, MerkleTree, MerkleTreeBuilder, MAX_DEPTH};
use ringdb_ring::{murmur3, Token, TokenRange};
use serde::Serialize;

/// The node decodes verbs under a byte limit; the tests do the same so that random input cannot
/// allocate without bound.
const WIRE: bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<{ 4 << 20 }>,
> = bincode::config::standard().with_limit::<{ 4 << 20 }>();

const DIGEST: [u8; 16] = [0xab; 16];

fn encode(tree: &MerkleTree) -> Vec<u8> {
    bincode::serde::encode_to_vec(tree, WIRE).expect("a tree encodes")
}

fn decode(bytes: &[u8]) -> Result<MerkleTree, String> {
    let (tree, used) = bincode::serde::decode_from_slice::<MerkleTree, _>(bytes, WIRE)
        .map_err(|e| e.to_string())?;
    if used != bytes.len() {
        return Err("trailing bytes".into());
    }
    Ok(tree)
}

/// Where a token lies inside a range, so that it can be drawn whatever the range.
#[derive(Debug, Clone, Copy)]
enum Pos {
    /// Just after the exclusive start.
    First,
    /// The inclusive end.
    Last,
    /// Halfway.
    Middle,
    /// `1 + n` tokens after the start: small values collide often.
    Near(u128),
    /// Anywhere.
    Any(u128),
}

fn pos() -> impl Strategy<Value = Pos> {
    prop_oneof![
        1 => Just(Pos::First),
        1 => Just(Pos::Last),
        1 => Just(Pos::Middle),
        3 => (0u128..4).prop_map(Pos::Near),
        3 => any::<u128>().prop_map(Pos::Any),
    ]
}

/// The token at `pos` in `range`: `start + offset` with `offset` in `1..=width`.
fn token_at(range: TokenRange, pos: Pos) -> Token {
    let width = range.width();
    let offset = match pos {
        Pos::First => 1,
        Pos::Last => width,
        Pos::Middle => width / 2 + 1,
        Pos::Near(n) | Pos::Any(n) => 1 + n % width,
    };
    // An offset of 2^64 (the end of a full ring) wraps to the start, as it should.
    range.start.wrapping_add(offset as u64)
}

fn digest() -> impl Strategy<Value = [u8; 16]> {
    prop_oneof![any::<[u8; 16]>(), (0u8..3).prop_map(|b| [b; 16])]
}

/// A range: often near the `i64` extremes or zero, sometimes tiny, sometimes the full ring.
fn token_range() -> impl Strategy<Value = TokenRange> {
    let token = prop_oneof![
        any::<i64>(),
        -40i64..40,
        Just(i64::MIN),
        Just(i64::MIN + 1),
        Just(i64::MAX),
        Just(i64::MAX - 1),
    ];
    (token.clone(), token, any::<bool>()).prop_map(|(start, end, full)| {
        let end = if full { start } else { end };
        TokenRange::new(Token(start), Token(end))
    })
}

/// A range and a depth it can hold (at most 8 so that the naive references stay fast).
fn shape() -> impl Strategy<Value = (TokenRange, u8)> {
    (token_range(), 0u8..=8)
        .prop_map(|(range, depth)| (range, MerkleTree::depth_for(range, 1 << depth)))
}

type Entries = Vec<(Pos, [u8; 16])>;

fn entries() -> impl Strategy<Value = Entries> {
    prop::collection::vec((pos(), digest()), 0..40)
}

fn resolve(range: TokenRange, entries: &Entries) -> Vec<(Token, [u8; 16])> {
    entries
        .iter()
        .map(|&(pos, digest)| (token_at(range, pos), digest))
        .collect()
}

fn build(range: TokenRange, depth: u8, partitions: &[(Token, [u8; 16])]) -> MerkleTree {
    MerkleTree::build(range, depth, partitions.iter().copied()).expect("tokens are in range")
}

/// Sorts in ring order from the range's start, the order a storage scan yields.
fn ring_order(range: TokenRange, partitions: &mut [(Token, [u8; 16])]) {
    partitions.sort_by_key(|(t, d)| (range.start.wrapping_add(1).distance_to(*t), *d));
}

/// Whether `inner` lies entirely inside `outer`.
fn covers(outer: TokenRange, inner: TokenRange) -> bool {
    if outer.is_full_ring() {
        return true;
    }
    let skipped = u128::from(outer.start.distance_to(inner.start));
    skipped + inner.width() <= outer.width()
}

/// The reference leaf of a token: the leaves whose ranges contain it (exactly one, or none).
fn naive_leaves_of(tree: &MerkleTree, token: Token) -> Vec<usize> {
    (0..tree.leaf_count())
        .filter(|&i| tree.leaf_range(i).unwrap().contains(token))
        .collect()
}

/// Checks what the diff of `a` and `b` promises against a leaf-by-leaf comparison.
fn check_diff(a: &MerkleTree, b: &MerkleTree) -> Result<Vec<TokenRange>, TestCaseError> {
    let found = merkle::differences(a, b).expect("same shape");
    let ranges = merkle::diff(a, b).expect("same shape");
    prop_assert_eq!(&ranges, &found.iter().map(|d| d.range).collect::<Vec<_>>());
    prop_assert_eq!(&ranges, &merkle::diff(b, a).expect("same shape"));
    prop_assert_eq!(ranges.is_empty(), a.root_hash() == b.root_hash());

    for r in &ranges {
        prop_assert!(covers(a.range(), *r), "{} outside {}", r, a.range());
    }
    // Exactly the differing leaves are covered, each by one range.
    for i in 0..a.leaf_count() {
        let leaf = a.leaf_range(i).unwrap();
        let covering = ranges.iter().filter(|r| covers(**r, leaf)).count();
        let differs = a.leaf_hashes()[i] != b.leaf_hashes()[i];
        prop_assert_eq!(covering, usize::from(differs), "leaf {} {}", i, leaf);
    }
    // Sorted clockwise from the tree's start, and coalesced: no range ends where another starts.
    let offsets: Vec<u64> = ranges
        .iter()
        .map(|r| a.range().start.distance_to(r.start))
        .collect();
    prop_assert!(offsets.windows(2).all(|w| w[0] < w[1]), "{:?}", ranges);
    for (i, r) in ranges.iter().enumerate() {
        for (j, s) in ranges.iter().enumerate() {
            prop_assert!(i == j || r.end != s.start, "{} and {} touch", r, s);
        }
    }
    // Counts: the sums of the leaves each range spans.
    for d in &found {
        let leaves: Vec<usize> = (d.first_leaf..d.first_leaf + d.leaves)
            .map(|i| i % a.leaf_count())
            .collect();
        prop_assert_eq!(
            d.range,
            TokenRange::new(
                a.leaf_range(leaves[0]).unwrap().start,
                a.leaf_range(leaves[leaves.len() - 1]).unwrap().end
            )
        );
        let sum = |t: &MerkleTree| leaves.iter().map(|&i| t.leaf_partitions()[i]).sum::<u64>();
        prop_assert_eq!(d.local_partitions, sum(a));
        prop_assert_eq!(d.remote_partitions, sum(b));
    }
    Ok(ranges)
}

#[derive(Debug, Clone)]
enum Change {
    Modify(usize, [u8; 16]),
    Add(Pos, [u8; 16]),
    Remove(usize),
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        (any::<usize>(), digest()).prop_map(|(i, d)| Change::Modify(i, d)),
        (pos(), digest()).prop_map(|(p, d)| Change::Add(p, d)),
        any::<usize>().prop_map(Change::Remove),
    ]
}

/// A field-for-field copy of the wire form, to send malformed trees.
#[derive(Serialize)]
struct RawTree {
    start: i64,
    end: i64,
    depth: u8,
    leaf_hashes: Vec<[u8; 16]>,
    leaf_partitions: Vec<u64>,
}

impl RawTree {
    fn valid(depth: u8) -> RawTree {
        RawTree {
            start: 0,
            end: 0,
            depth,
            leaf_hashes: vec![[0; 16]; 1 << depth],
            leaf_partitions: vec![0; 1 << depth],
        }
    }

    fn decode(&self) -> Result<MerkleTree, String> {
        decode(&bincode::serde::encode_to_vec(self, WIRE).expect("encodes"))
    }
}

proptest! {
    #[test]
    fn leaves_tile_the_range((range, depth) in shape(), probes in prop::collection::vec(pos(), 0..20), others in prop::collection::vec(any::<i64>(), 0..10)) {
        let tree = MerkleTree::build(range, depth, []).unwrap();
        prop_assert_eq!(tree.leaf_count(), 1usize << depth);
        prop_assert_eq!(tree.leaf_range(tree.leaf_count()), None);
        let leaves: Vec<TokenRange> = (0..tree.leaf_count()).map(|i| tree.leaf_range(i).unwrap()).collect();
        prop_assert_eq!(leaves[0].start, range.start);
        prop_assert_eq!(leaves[leaves.len() - 1].end, range.end);
        prop_assert!(leaves.windows(2).all(|w| w[0].end == w[1].start));
        prop_assert!(leaves.iter().all(|l| l.width() >= 1 && covers(range, *l)));
        prop_assert_eq!(leaves.iter().map(|l| l.width()).sum::<u128>(), range.width());
        // Equal widths, to within one token.
        let (min, max) = leaves.iter().fold((u128::MAX, 0), |(lo, hi), l| (lo.min(l.width()), hi.max(l.width())));
        prop_assert!(max - min <= 1);

        let mut tokens: Vec<Token> = probes.iter().map(|p| token_at(range, *p)).collect();
        tokens.extend(others.into_iter().map(Token));
        tokens.extend([Token::MIN, Token::MAX, Token(0), range.start, range.end,
            range.start.wrapping_add(1), range.end.wrapping_add(1)]);
        for t in tokens {
            let naive = naive_leaves_of(&tree, t);
            prop_assert!(naive.len() <= 1);
            prop_assert_eq!(tree.leaf_index(t), naive.first().copied(), "token {}", t);
            prop_assert_eq!(naive.len() == 1, range.contains(t));
        }
    }

    #[test]
    fn identical_inputs_give_identical_trees((range, depth) in shape(), entries in entries()) {
        let partitions = resolve(range, &entries);
        let a = build(range, depth, &partitions);
        let b = build(range, depth, &partitions);
        prop_assert_eq!(a.root_hash(), b.root_hash());
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(merkle::diff(&a, &b).unwrap(), vec![]);
        prop_assert_eq!(merkle::differences(&a, &b).unwrap(), vec![]);
        prop_assert_eq!(a.partitions(), partitions.len() as u64);
        prop_assert_eq!(a.leaf_partitions().iter().sum::<u64>(), partitions.len() as u64);
        for (t, _) in &partitions {
            prop_assert!(a.leaf_partitions()[a.leaf_index(*t).unwrap()] > 0);
        }
    }

    #[test]
    fn feeding_order_does_not_matter((range, depth) in shape(), entries in entries(), seed in any::<u64>()) {
        let mut sorted = resolve(range, &entries);
        ring_order(range, &mut sorted);
        let reference = build(range, depth, &sorted);

        // Token order kept, equal-token partitions in the opposite order.
        let mut ties_reversed = sorted.clone();
        ties_reversed.sort_by_key(|(t, d)| (range.start.wrapping_add(1).distance_to(*t), std::cmp::Reverse(*d)));
        prop_assert_eq!(&build(range, depth, &ties_reversed), &reference);

        // Any order at all.
        let mut shuffled = sorted.clone();
        let mut state = seed | 1;
        for i in (1..shuffled.len()).rev() {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.swap(i, (state >> 33) as usize % (i + 1));
        }
        prop_assert_eq!(&build(range, depth, &shuffled), &reference);
        sorted.reverse();
        prop_assert_eq!(&build(range, depth, &sorted), &reference);
    }

    #[test]
    fn one_change_is_found_and_nothing_else((range, depth) in shape(), entries in entries(), change in change()) {
        let before = resolve(range, &entries);
        let mut after = before.clone();
        let token = match change {
            Change::Modify(i, digest) => {
                prop_assume!(!after.is_empty());
                let i = i % after.len();
                prop_assume!(after[i].1 != digest);
                after[i].1 = digest;
                after[i].0
            }
            Change::Add(pos, digest) => {
                let token = token_at(range, pos);
                after.push((token, digest));
                token
            }
            Change::Remove(i) => {
                prop_assume!(!after.is_empty());
                after.remove(i % before.len()).0
            }
        };
        let a = build(range, depth, &before);
        let b = build(range, depth, &after);
        let ranges = check_diff(&a, &b)?;
        let leaf = a.leaf_index(token).unwrap();
        // Exactly the changed partition's leaf, whatever else shares its token or leaf.
        prop_assert_eq!(ranges, vec![a.leaf_range(leaf).unwrap()]);
        prop_assert_ne!(a.root_hash(), b.root_hash());
        let found = merkle::differences(&a, &b).unwrap();
        let expected_remote = match change {
            Change::Modify(..) => a.leaf_partitions()[leaf],
            Change::Add(..) => a.leaf_partitions()[leaf] + 1,
            Change::Remove(_) => a.leaf_partitions()[leaf] - 1,
        };
        prop_assert_eq!((found[0].local_partitions, found[0].remote_partitions), (a.leaf_partitions()[leaf], expected_remote));
    }

    #[test]
    fn diff_matches_reference(
        (range, depth) in shape(),
        entries in entries(),
        kept in prop::collection::vec(any::<bool>(), 40),
        added in entries(),
    ) {
        let local = resolve(range, &entries);
        let mut remote: Vec<_> = local.iter().zip(&kept).filter(|(_, k)| **k).map(|(p, _)| *p).collect();
        remote.extend(resolve(range, &added));
        let a = build(range, depth, &local);
        let b = build(range, depth, &remote);
        check_diff(&a, &b)?;
    }

    #[test]
    fn depth_for_is_always_accepted(range in token_range(), estimate in prop_oneof![any::<u64>(), 0u64..100_000]) {
        let depth = MerkleTree::depth_for(range, estimate);
        prop_assert!(depth <= MAX_DEPTH);
        prop_assert!(MerkleTreeBuilder::new(range, depth).is_ok());
        if depth < MAX_DEPTH && (2u128 << depth) <= range.width() {
            // Not capped: at least one leaf per partition.
            prop_assert!(1u128 << depth >= u128::from(estimate));
        }
    }

    #[test]
    fn out_of_range_tokens_are_rejected((range, depth) in shape(), token in any::<i64>()) {
        prop_assume!(!range.contains(Token(token)));
        let mut builder = MerkleTreeBuilder::new(range, depth).unwrap();
        prop_assert_eq!(
            builder.add(Token(token), DIGEST),
            Err(MerkleError::TokenOutOfRange { token: Token(token), range })
        );
        prop_assert_eq!(builder.finish().partitions(), 0);
    }

    #[test]
    fn serde_round_trip((range, depth) in shape(), entries in entries()) {
        let tree = build(range, depth, &resolve(range, &entries));
        let decoded = decode(&encode(&tree)).unwrap();
        prop_assert_eq!(decoded.root_hash(), tree.root_hash());
        prop_assert_eq!(&decoded, &tree);
    }

    #[test]
    fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn corrupted_encodings_never_panic((range, depth) in shape(), entries in entries(), at in any::<usize>(), byte in any::<u8>(), cut in any::<usize>()) {
        let tree = build(range, depth, &resolve(range, &entries));
        let mut bytes = encode(&tree);
        let i = at % bytes.len();
        bytes[i] = byte;
        if let Ok(decoded) = decode(&bytes) {
            // Whatever decodes is a well-formed tree that can be compared.
            let _ = merkle::diff(&tree, &decoded);
        }
        let clean = encode(&tree);
        prop_assert!(decode(&clean[..cut % clean.len()]).is_err());
    }
}

#[test]
fn wrapping_range_coalesces_across_max() {
    // (100, -100] wraps; with 8 leaves, leaf 3 ends at MIN (holding MAX) and leaf 4 follows.
    let range = TokenRange::new(Token(100), Token(-100));
    let base = MerkleTree::build(range, 3, []).unwrap();
    assert_eq!(base.leaf_range(3).unwrap().end, Token::MIN);
    assert_eq!(base.leaf_index(Token::MAX), Some(3));
    assert_eq!(base.leaf_index(Token(i64::MIN + 1)), Some(4));
    let changed = MerkleTree::build(
        range,
        3,
        [(Token::MAX, DIGEST), (Token(i64::MIN + 1), DIGEST)],
    )
    .unwrap();
    let ranges = merkle::diff(&base, &changed).unwrap();
    assert_eq!(ranges.len(), 1);
    let r = ranges[0];
    assert!(r.wraps());
    assert!(r.contains(Token::MAX) && r.contains(Token::MIN) && r.contains(Token(i64::MIN + 1)));
    assert_eq!(
        r,
        TokenRange::new(
            base.leaf_range(3).unwrap().start,
            base.leaf_range(4).unwrap().end
        )
    );
}

#[test]
fn min_token_edges() {
    // (MIN, x]: MIN itself is outside (the start is exclusive), MIN + 1 is the first token.
    let up_to_zero = TokenRange::new(Token::MIN, Token(0));
    let mut builder = MerkleTreeBuilder::new(up_to_zero, 4).unwrap();
    assert!(builder.add(Token::MIN, DIGEST).is_err());
    builder.add(Token(i64::MIN + 1), DIGEST).unwrap();
    builder.add(Token(0), DIGEST).unwrap();
    let tree = builder.finish();
    assert_eq!(tree.leaf_partitions()[0], 1);
    assert_eq!(tree.leaf_partitions()[15], 1);

    // (x, MIN] wraps and ends at MIN, which it contains.
    let to_min = TokenRange::new(Token(0), Token::MIN);
    let tree = MerkleTree::build(to_min, 2, [(Token::MIN, DIGEST), (Token::MAX, DIGEST)]).unwrap();
    assert_eq!(tree.leaf_partitions(), &[0, 0, 0, 2]);
    assert_eq!(tree.leaf_range(3).unwrap().end, Token::MIN);

    // The full ring (MIN, MIN]: every token the partitioner produces, MAX in the last leaf.
    let ring = TokenRange::new(Token::MIN, Token::MIN);
    let depth = MerkleTree::depth_for(ring, 1 << 20);
    assert_eq!(depth, MAX_DEPTH);
    let keys = (0u32..2000).map(|k| murmur3::token_for_key(&k.to_be_bytes()));
    assert!(keys.clone().all(|t| t != Token::MIN));
    let tree = MerkleTree::build(ring, depth, keys.map(|t| (t, DIGEST))).unwrap();
    assert_eq!(tree.partitions(), 2000);
    assert_eq!(tree.leaf_index(Token::MAX), Some(tree.leaf_count() - 1));
    assert_eq!(tree.leaf_index(Token(i64::MIN + 1)), Some(0));
    // The partitioner maps a hash of MIN to MAX, so MIN only arrives from a caller's bug; the
    // full ring still accepts it, as the token that closes the ring.
    assert_eq!(tree.leaf_index(Token::MIN), Some(tree.leaf_count() - 1));
}

#[test]
fn full_ring_with_any_start() {
    let ring = TokenRange::new(Token(42), Token(42));
    let base = MerkleTree::build(ring, 3, []).unwrap();
    let all: Vec<(Token, [u8; 16])> = (0..8)
        .map(|i| (base.leaf_range(i).unwrap().end, DIGEST))
        .collect();
    assert_eq!(all[7].0, Token(42));
    let changed = MerkleTree::build(ring, 3, all.iter().copied()).unwrap();
    assert_eq!(changed.leaf_partitions(), &[1; 8]);
    // Every leaf differs: the whole ring, once, expressed as the tree's own range.
    assert_eq!(merkle::diff(&base, &changed).unwrap(), vec![ring]);
    // A full ring starting elsewhere is a different tree: not comparable.
    let other = MerkleTree::build(TokenRange::new(Token::MIN, Token::MIN), 3, []).unwrap();
    assert!(matches!(
        merkle::diff(&base, &other),
        Err(MerkleError::ShapeMismatch { .. })
    ));
}

#[test]
fn empty_replicas_agree() {
    let range = TokenRange::new(Token(-7), Token(1 << 40));
    let a = MerkleTreeBuilder::new(range, 10).unwrap().finish();
    let b = MerkleTree::build(range, 10, []).unwrap();
    assert_eq!(a.root_hash(), b.root_hash());
    assert!(merkle::diff(&a, &b).unwrap().is_empty());
    let leaf = a.leaf_hashes()[0];
    assert!(a.leaf_hashes().iter().all(|h| *h == leaf));
    // The empty leaf hash does not depend on the range: two empty trees of different ranges
    // share their root (they are still not comparable, see diff).
    let other = MerkleTree::build(TokenRange::new(Token(5), Token(5)), 10, []).unwrap();
    assert_eq!(other.root_hash(), a.root_hash());
}

#[test]
fn golden_encoding() {
    // The wire layout (bincode standard): zigzag varint start and end, depth, leaf-hash count
    // and hashes, partition-count count and varint counts.
    let range = TokenRange::new(Token(-1), Token(1));
    let tree = MerkleTree::build(range, 1, [(Token(1), [7; 16])]).unwrap();
    let bytes = encode(&tree);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let hashes: String = tree
        .leaf_hashes()
        .iter()
        .flatten()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(hex, format!("01020102{hashes}020001"));
    assert_eq!(
        hashes,
        "c48988940b159f66f935fd65da73dbdd\
         5924ca45b3853d5945d5819ca2ffc093"
    );
    assert_eq!(decode(&bytes).unwrap(), tree);
}

#[test]
fn depth_16_tree_stays_small() {
    let ring = TokenRange::new(Token::MIN, Token::MIN);
    // A realistic tree: 300 000 partitions spread over the ring.
    let tree = MerkleTree::build(
        ring,
        MAX_DEPTH,
        (0u32..300_000).map(|k| (murmur3::token_for_key(&k.to_le_bytes()), DIGEST)),
    )
    .unwrap();
    let typical = encode(&tree).len();
    // The worst case: every count needs a 9-byte varint.
    let leaves = 1usize << MAX_DEPTH;
    let worst = MerkleTree::from_leaves(
        ring,
        MAX_DEPTH,
        vec![[0xff; 16]; leaves],
        vec![u64::MAX / leaves as u64; leaves],
    )
    .unwrap();
    let worst = encode(&worst).len();
    println!("depth-16 tree encoded: {typical} bytes typical, {worst} bytes worst case");
    assert!(typical < 2 << 20 && worst < 2 << 20);
    assert_eq!(decode(&encode(&tree)).unwrap(), tree);
}

#[test]
fn malformed_trees_are_rejected() {
    assert!(RawTree::valid(3).decode().is_ok());

    let mut deep = RawTree::valid(MAX_DEPTH);
    deep.depth = MAX_DEPTH + 1;
    assert!(deep.decode().unwrap_err().contains("depth 17"));
    assert!(RawTree::valid(MAX_DEPTH + 1).decode().is_err());

    let mut short = RawTree::valid(4);
    short.leaf_hashes.pop();
    assert!(short.decode().unwrap_err().contains("needs 16 leaves"));

    let mut long = RawTree::valid(4);
    long.leaf_partitions.push(0);
    assert!(long.decode().is_err());

    let mut narrow = RawTree::valid(4);
    narrow.end = 15;
    assert!(narrow.decode().unwrap_err().contains("fewer tokens"));
    narrow.end = 16;
    assert!(narrow.decode().is_ok());

    let mut overflow = RawTree::valid(1);
    overflow.leaf_partitions = vec![u64::MAX, 1];
    assert!(overflow.decode().unwrap_err().contains("overflow"));

    // The same errors from the constructor.
    let ring = TokenRange::new(Token(0), Token(0));
    assert_eq!(
        MerkleTree::from_leaves(ring, 17, vec![], vec![]),
        Err(MerkleError::DepthTooLarge { depth: 17 })
    );
    assert!(matches!(
        MerkleTree::from_leaves(ring, 2, vec![[0; 16]; 4], vec![0; 2]),
        Err(MerkleError::LeafCountMismatch {
            expected: 4,
            hashes: 4,
            partitions: 2,
            ..
        })
    ));
}

#[test]
fn inner_nodes_are_recomputed_on_arrival() {
    let ring = TokenRange::new(Token(0), Token(0));
    let tree = MerkleTree::build(ring, 4, [(Token(3), DIGEST)]).unwrap();
    let mut raw = RawTree::valid(4);
    raw.leaf_hashes = tree.leaf_hashes().to_vec();
    raw.leaf_partitions = tree.leaf_partitions().to_vec();
    assert_eq!(raw.decode().unwrap().root_hash(), tree.root_hash());
    raw.leaf_hashes[9][0] ^= 1;
    let tampered = raw.decode().unwrap();
    assert_ne!(tampered.root_hash(), tree.root_hash());
    assert_eq!(
        merkle::diff(&tree, &tampered).unwrap(),
        vec![tree.leaf_range(9).unwrap()]
    );
}
