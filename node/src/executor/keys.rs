//! From CQL values to storage addresses and back.
//!
//! - A partition key is the native serialization of its values, composed Cassandra's way when
//!   there are several (`ringdb_ring::murmur3::serialize_partition_key`), and its token is
//!   Murmur3 of those bytes — bit-compatible with Cassandra so drivers route to true replicas.
//! - Clustering bytes are the concatenated order-preserving encodings of the clustering values
//!   (descending columns inverted), so a prefix of the key is a byte prefix and byte ranges are
//!   clustering ranges. "All rows whose clustering starts with prefix P" is the byte range
//!   `[P, successor(P))`.

use std::cmp::Ordering;
use std::ops::Bound;

use ringdb_cql::types::{self, CqlValue};
use ringdb_ring::murmur3;

use super::error::{invalid, ExecError};
use crate::schema::{ClusteringOrder, ColumnDef};
use crate::storage::PartitionKey;

/// A byte range of clustering keys.
pub(crate) type ByteRange = (Bound<Vec<u8>>, Bound<Vec<u8>>);

/// The token of serialized partition key bytes.
pub(crate) fn token_of(key: &[u8]) -> i64 {
    murmur3::token_for_key(key).0
}

/// The storage address of a partition from its key values (in key order, already serialized).
pub(crate) fn partition_key_from_serialized(
    components: &[Vec<u8>],
) -> Result<PartitionKey, ExecError> {
    for c in components {
        if c.is_empty() && components.len() == 1 {
            return invalid("Key may not be empty");
        }
    }
    let refs: Vec<&[u8]> = components.iter().map(|c| c.as_slice()).collect();
    let key =
        murmur3::serialize_partition_key(&refs).map_err(|e| ExecError::Invalid(e.to_string()))?;
    Ok(PartitionKey {
        token: token_of(&key),
        key,
    })
}

/// The storage address of a partition from its key values (in key order).
pub(crate) fn partition_key(values: &[CqlValue]) -> Result<PartitionKey, ExecError> {
    let serialized: Vec<Vec<u8>> = values.iter().map(|v| v.serialize()).collect();
    partition_key_from_serialized(&serialized)
}

/// Splits serialized partition key bytes back into per-column serialized values.
pub(crate) fn split_partition_key(
    key: &[u8],
    components: usize,
) -> Result<Vec<Vec<u8>>, ExecError> {
    if components <= 1 {
        return Ok(vec![key.to_vec()]);
    }
    let corrupt = || ExecError::Server("corrupt composite partition key in storage".into());
    let mut out = Vec::with_capacity(components);
    let mut rest = key;
    while !rest.is_empty() {
        if rest.len() < 2 {
            return Err(corrupt());
        }
        let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
        if rest.len() < 2 + len + 1 {
            return Err(corrupt());
        }
        out.push(rest[2..2 + len].to_vec());
        rest = &rest[2 + len + 1..];
    }
    if out.len() != components {
        return Err(corrupt());
    }
    Ok(out)
}

/// Appends the comparable encoding of one clustering value.
pub(crate) fn encode_clustering_value(col: &ColumnDef, v: &CqlValue, out: &mut Vec<u8>) {
    let desc = col.clustering_order() == Some(ClusteringOrder::Desc);
    types::encode_comparable(v, desc, out);
}

/// Clustering bytes of a (possibly partial) clustering key.
pub(crate) fn clustering_bytes(cols: &[&ColumnDef], values: &[CqlValue]) -> Vec<u8> {
    let mut out = Vec::new();
    for (c, v) in cols.iter().zip(values) {
        encode_clustering_value(c, v, &mut out);
    }
    out
}

/// Decodes full clustering bytes into values.
pub(crate) fn decode_clustering(
    cols: &[&ColumnDef],
    bytes: &[u8],
) -> Result<Vec<CqlValue>, ExecError> {
    let mut out = Vec::with_capacity(cols.len());
    let mut pos = 0;
    for c in cols {
        let desc = c.clustering_order() == Some(ClusteringOrder::Desc);
        let (v, n) = types::decode_comparable(&c.ty, desc, &bytes[pos..])
            .map_err(|e| ExecError::Server(format!("corrupt clustering key in storage: {e}")))?;
        pos += n;
        out.push(v);
    }
    if pos != bytes.len() {
        return Err(ExecError::Server(
            "corrupt clustering key in storage: trailing bytes".into(),
        ));
    }
    Ok(out)
}

/// The smallest byte string greater than every string with prefix `p` (`None`: no such string,
/// `p` is empty or all `0xFF`).
pub(crate) fn prefix_successor(p: &[u8]) -> Option<Vec<u8>> {
    let mut v = p.to_vec();
    while let Some(last) = v.last_mut() {
        if *last == 0xFF {
            v.pop();
        } else {
            *last += 1;
            return Some(v);
        }
    }
    None
}

/// Where the rows with prefix `p` start. For the empty prefix that is just after the empty
/// clustering key, which is the static row's: clustering ranges (and range deletions built from
/// them) must never cover the static row.
fn start_of(p: &[u8]) -> Bound<Vec<u8>> {
    if p.is_empty() {
        Bound::Excluded(Vec::new())
    } else {
        Bound::Included(p.to_vec())
    }
}

fn end_after(p: &[u8]) -> Bound<Vec<u8>> {
    match prefix_successor(p) {
        Some(s) => Bound::Excluded(s),
        None => Bound::Unbounded,
    }
}

fn start_after(p: &[u8]) -> Bound<Vec<u8>> {
    match prefix_successor(p) {
        Some(s) => Bound::Included(s),
        // Nothing sorts after every string with this prefix: an empty range.
        None => Bound::Excluded(vec![0xFF; p.len() + 1]),
    }
}

/// Every row whose clustering starts with `prefix`.
pub(crate) fn prefix_range(prefix: &[u8]) -> ByteRange {
    (start_of(prefix), end_after(prefix))
}

/// A comparison of a clustering column (or tuple of them) with a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SliceOp {
    Gt,
    Ge,
    Lt,
    Le,
}

/// Byte ranges, within the rows having clustering prefix `prefix`, of the rows whose next
/// clustering values `(c_i, ..)` (columns `cols`) compare to `values` by `op`, lexicographically
/// by each column's natural value order. Mixed ASC/DESC columns yield several ranges.
pub(crate) fn tuple_slice_ranges(
    prefix: &[u8],
    cols: &[&ColumnDef],
    values: &[CqlValue],
    op: SliceOp,
) -> Vec<ByteRange> {
    // (c1..cn) > (v1..vn)  ≡  OR_k (c1=v1 ∧ … ∧ c_{k-1}=v_{k-1} ∧ c_k > v_k), plus equality of
    // all for >=. Each disjunct is one byte range.
    let mut out = Vec::new();
    let mut q = prefix.to_vec();
    let n = values.len().min(cols.len());
    for k in 0..n {
        let col = cols[k];
        let desc = col.clustering_order() == Some(ClusteringOrder::Desc);
        let mut with_v = q.clone();
        encode_clustering_value(col, &values[k], &mut with_v);
        // Single-column comparison c_k (op) v_k, strict, within prefix q.
        let greater = matches!(op, SliceOp::Gt | SliceOp::Ge);
        // In byte order, "greater value" is "after" for ASC and "before" for DESC.
        let after_in_bytes = greater != desc;
        let r = if after_in_bytes {
            (start_after(&with_v), end_after(&q))
        } else {
            (start_of(&q), Bound::Excluded(with_v.clone()))
        };
        out.push(r);
        q = with_v;
    }
    if matches!(op, SliceOp::Ge | SliceOp::Le) {
        out.push(prefix_range(&q));
    }
    normalize_ranges(out)
}

fn cmp_start(a: &Bound<Vec<u8>>, b: &Bound<Vec<u8>>) -> Ordering {
    match (a, b) {
        (Bound::Unbounded, Bound::Unbounded) => Ordering::Equal,
        (Bound::Unbounded, _) => Ordering::Less,
        (_, Bound::Unbounded) => Ordering::Greater,
        (Bound::Included(x), Bound::Included(y)) | (Bound::Excluded(x), Bound::Excluded(y)) => {
            x.cmp(y)
        }
        (Bound::Included(x), Bound::Excluded(y)) => x.cmp(y).then(Ordering::Less),
        (Bound::Excluded(x), Bound::Included(y)) => x.cmp(y).then(Ordering::Greater),
    }
}

fn cmp_end(a: &Bound<Vec<u8>>, b: &Bound<Vec<u8>>) -> Ordering {
    match (a, b) {
        (Bound::Unbounded, Bound::Unbounded) => Ordering::Equal,
        (Bound::Unbounded, _) => Ordering::Greater,
        (_, Bound::Unbounded) => Ordering::Less,
        (Bound::Included(x), Bound::Included(y)) | (Bound::Excluded(x), Bound::Excluded(y)) => {
            x.cmp(y)
        }
        (Bound::Included(x), Bound::Excluded(y)) => x.cmp(y).then(Ordering::Greater),
        (Bound::Excluded(x), Bound::Included(y)) => x.cmp(y).then(Ordering::Less),
    }
}

/// Whether a range contains no byte string.
pub(crate) fn range_is_empty(r: &ByteRange) -> bool {
    match (&r.0, &r.1) {
        (Bound::Unbounded, _) | (_, Bound::Unbounded) => false,
        (Bound::Included(s), Bound::Included(e)) => s > e,
        (Bound::Included(s), Bound::Excluded(e)) | (Bound::Excluded(s), Bound::Included(e)) => {
            s >= e
        }
        (Bound::Excluded(s), Bound::Excluded(e)) => {
            // (s, e) is empty when nothing lies strictly between: e == s or e == s ++ [0].
            s >= e || (e.len() == s.len() + 1 && e.starts_with(s) && e[s.len()] == 0)
        }
    }
}

/// Whether two ranges overlap or touch so that their union is one range.
fn mergeable(a: &ByteRange, b: &ByteRange) -> bool {
    // Assumes cmp_start(a.0, b.0) <= Equal. They merge when b starts before (or right at) a's end.
    match (&a.1, &b.0) {
        (Bound::Unbounded, _) | (_, Bound::Unbounded) => true,
        (Bound::Included(e), Bound::Included(s)) => s <= e,
        (Bound::Included(e), Bound::Excluded(s)) => s < e,
        (Bound::Excluded(e), Bound::Included(s)) => s <= e,
        (Bound::Excluded(e), Bound::Excluded(s)) => s < e,
    }
}

/// Sorts ranges, drops empty ones and unions overlapping ones.
pub(crate) fn normalize_ranges(mut ranges: Vec<ByteRange>) -> Vec<ByteRange> {
    ranges.retain(|r| !range_is_empty(r));
    ranges.sort_by(|a, b| cmp_start(&a.0, &b.0));
    let mut out: Vec<ByteRange> = Vec::with_capacity(ranges.len());
    for r in ranges {
        if let Some(last) = out.last_mut() {
            if mergeable(last, &r) {
                if cmp_end(&r.1, &last.1) == Ordering::Greater {
                    last.1 = r.1;
                }
                continue;
            }
        }
        out.push(r);
    }
    out
}

/// Intersection of two normalized range sets.
pub(crate) fn intersect_ranges(a: &[ByteRange], b: &[ByteRange]) -> Vec<ByteRange> {
    let mut out = Vec::new();
    for x in a {
        for y in b {
            let start = if cmp_start(&x.0, &y.0) == Ordering::Greater {
                x.0.clone()
            } else {
                y.0.clone()
            };
            let end = if cmp_end(&x.1, &y.1) == Ordering::Less {
                x.1.clone()
            } else {
                y.1.clone()
            };
            let r = (start, end);
            if !range_is_empty(&r) {
                out.push(r);
            }
        }
    }
    normalize_ranges(out)
}

/// The part of `ranges` strictly after (or, reversed, strictly before) `clustering`.
pub(crate) fn ranges_after(
    ranges: &[ByteRange],
    clustering: &[u8],
    reversed: bool,
) -> Vec<ByteRange> {
    let cut: ByteRange = if reversed {
        (
            Bound::Excluded(Vec::new()),
            Bound::Excluded(clustering.to_vec()),
        )
    } else {
        (Bound::Excluded(clustering.to_vec()), Bound::Unbounded)
    };
    intersect_ranges(ranges, &[cut])
}

/// Whether `clustering` lies in one of `ranges`.
pub(crate) fn ranges_contain(ranges: &[ByteRange], clustering: &[u8]) -> bool {
    ranges.iter().any(|(s, e)| {
        let after_start = match s {
            Bound::Unbounded => true,
            Bound::Included(s) => clustering >= s.as_slice(),
            Bound::Excluded(s) => clustering > s.as_slice(),
        };
        let before_end = match e {
            Bound::Unbounded => true,
            Bound::Included(e) => clustering <= e.as_slice(),
            Bound::Excluded(e) => clustering < e.as_slice(),
        };
        after_start && before_end
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::ColumnKind;
    use ringdb_cql::types::CqlType;

    fn col(order: ClusteringOrder, pos: u16) -> ColumnDef {
        ColumnDef {
            id: pos as u32,
            name: format!("c{pos}"),
            ty: CqlType::Int,
            kind: ColumnKind::Clustering(pos, order),
        }
    }

    fn enc(cols: &[&ColumnDef], vals: &[i32]) -> Vec<u8> {
        let v: Vec<CqlValue> = vals.iter().map(|x| CqlValue::Int(*x)).collect();
        clustering_bytes(cols, &v)
    }

    /// Checks tuple slices against brute force over a grid of two-column keys, for every mix of
    /// orders and operators.
    #[test]
    fn tuple_slices_match_brute_force() {
        for o1 in [ClusteringOrder::Asc, ClusteringOrder::Desc] {
            for o2 in [ClusteringOrder::Asc, ClusteringOrder::Desc] {
                let (c1, c2) = (col(o1, 0), col(o2, 1));
                let cols = [&c1, &c2];
                for op in [SliceOp::Gt, SliceOp::Ge, SliceOp::Lt, SliceOp::Le] {
                    for width in [1usize, 2] {
                        let bound = [2, 3];
                        let ranges = tuple_slice_ranges(
                            &[],
                            &cols[..width],
                            &[CqlValue::Int(2), CqlValue::Int(3)][..width],
                            op,
                        );
                        for a in 0..5 {
                            for b in 0..5 {
                                let key = enc(&cols, &[a, b]);
                                let ord = [a, b][..width].cmp(&bound[..width]);
                                let want = match op {
                                    SliceOp::Gt => ord == Ordering::Greater,
                                    SliceOp::Ge => ord != Ordering::Less,
                                    SliceOp::Lt => ord == Ordering::Less,
                                    SliceOp::Le => ord != Ordering::Greater,
                                };
                                assert_eq!(
                                    ranges_contain(&ranges, &key),
                                    want,
                                    "{o1:?} {o2:?} {op:?} w{width} ({a},{b})"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn ranges_never_cover_the_static_row() {
        let c1 = col(ClusteringOrder::Asc, 0);
        for op in [SliceOp::Gt, SliceOp::Ge, SliceOp::Lt, SliceOp::Le] {
            let r = tuple_slice_ranges(&[], &[&c1], &[CqlValue::Int(0)], op);
            assert!(!ranges_contain(&r, &[]), "{op:?}");
        }
        assert!(!ranges_contain(&[prefix_range(&[])], &[]));
    }

    #[test]
    fn ranges_after_cuts() {
        let c1 = col(ClusteringOrder::Asc, 0);
        let all = vec![(Bound::Unbounded, Bound::Unbounded)];
        let k = enc(&[&c1], &[5]);
        let after = ranges_after(&all, &k, false);
        assert!(!ranges_contain(&after, &k));
        assert!(ranges_contain(&after, &enc(&[&c1], &[6])));
        assert!(!ranges_contain(&after, &enc(&[&c1], &[4])));
        let before = ranges_after(&all, &k, true);
        assert!(ranges_contain(&before, &enc(&[&c1], &[4])));
        assert!(!ranges_contain(&before, &k));
    }

    #[test]
    fn composite_partition_keys_split_back() {
        let pk = partition_key(&[CqlValue::Int(1), CqlValue::Text("a".into())]).unwrap();
        let parts = split_partition_key(&pk.key, 2).unwrap();
        assert_eq!(parts, vec![1i32.to_be_bytes().to_vec(), b"a".to_vec()]);
        let single = partition_key(&[CqlValue::Int(1)]).unwrap();
        assert_eq!(single.token, -4069959284402364209);
        assert!(partition_key(&[CqlValue::Text(String::new())]).is_err());
    }
}
