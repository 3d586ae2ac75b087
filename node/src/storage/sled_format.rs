//! The sled engine's on-disk format: how atoms become sled keys and values.
//!
//! The layout is described in the [`super::sled_engine`] module documentation.

use super::merge::Pos;
use super::partition::{AtomKey, AtomValue};
use super::{Cell, CellKey, Deletion, Liveness, PartitionKey, StorageError, TableId};

/// Version byte at the start of every value.
pub(crate) const FORMAT_VERSION: u8 = 1;

const SECTION_PARTITION_DELETION: u8 = 0x00;
const SECTION_RANGE_DELETION: u8 = 0x01;
const SECTION_ROWS: u8 = 0x02;

const PART_ROW_DELETION: u8 = 0x00;
const PART_LIVENESS: u8 = 0x01;
const PART_COLLECTION_DELETION: u8 = 0x02;
const PART_CELL: u8 = 0x03;

const TERMINATOR: [u8; 2] = [0x00, 0x01];

fn corrupt(what: impl Into<String>) -> StorageError {
    StorageError::Corrupt(what.into())
}

/// The 16-byte prefix of every key of a table.
pub(crate) fn table_prefix(table: TableId) -> Vec<u8> {
    table.as_bytes().to_vec()
}

/// Order-preserving encoding of a token.
pub(crate) fn encode_token(token: i64) -> [u8; 8] {
    ((token as u64) ^ (1 << 63)).to_be_bytes()
}

fn decode_token(bytes: [u8; 8]) -> i64 {
    (u64::from_be_bytes(bytes) ^ (1 << 63)) as i64
}

/// Appends `bytes` escaped and terminated.
pub(crate) fn escape_into(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
    out.extend_from_slice(&TERMINATOR);
}

/// Reads an escaped, terminated byte string at the start of `input`; returns it and the number
/// of bytes consumed.
pub(crate) fn unescape(input: &[u8]) -> Result<(Vec<u8>, usize), StorageError> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < input.len() {
        let b = input[i];
        if b != 0 {
            out.push(b);
            i += 1;
            continue;
        }
        match input.get(i + 1) {
            Some(0xFF) => {
                out.push(0);
                i += 2;
            }
            Some(0x01) => return Ok((out, i + 2)),
            _ => return Err(corrupt("bad escape sequence in key")),
        }
    }
    Err(corrupt("unterminated byte string in key"))
}

/// The prefix shared by every key of one partition.
pub(crate) fn partition_prefix(table: TableId, partition: &PartitionKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + 8 + partition.key.len() + 4);
    out.extend_from_slice(table.as_bytes());
    out.extend_from_slice(&encode_token(partition.token));
    escape_into(&mut out, &partition.key);
    out
}

/// Splits a data key into its table, partition, the length of the partition prefix, and the
/// rest.
pub(crate) fn decode_partition(key: &[u8]) -> Result<(TableId, PartitionKey, usize), StorageError> {
    if key.len() < 24 {
        return Err(corrupt("data key too short"));
    }
    let mut table = [0u8; 16];
    table.copy_from_slice(&key[..16]);
    let mut token = [0u8; 8];
    token.copy_from_slice(&key[16..24]);
    let (pk, used) = unescape(&key[24..])?;
    Ok((
        TableId::from_bytes(table),
        PartitionKey {
            token: decode_token(token),
            key: pk,
        },
        24 + used,
    ))
}

/// The key prefix of the row section of a partition.
pub(crate) fn rows_section(prefix: &[u8]) -> Vec<u8> {
    let mut out = prefix.to_vec();
    out.push(SECTION_ROWS);
    out
}

/// The key prefix of the range deletions of a partition.
pub(crate) fn ranges_section(prefix: &[u8]) -> Vec<u8> {
    let mut out = prefix.to_vec();
    out.push(SECTION_RANGE_DELETION);
    out
}

/// The key of the partition deletion.
pub(crate) fn partition_deletion_key(prefix: &[u8]) -> Vec<u8> {
    let mut out = prefix.to_vec();
    out.push(SECTION_PARTITION_DELETION);
    out
}

/// The first key of row `clustering` (and, as an exclusive end, the key just before it).
pub(crate) fn row_start(prefix: &[u8], clustering: &[u8]) -> Vec<u8> {
    let mut out = rows_section(prefix);
    escape_into(&mut out, clustering);
    out
}

/// A key just after every key of row `clustering` and before any later row.
pub(crate) fn row_end(prefix: &[u8], clustering: &[u8]) -> Vec<u8> {
    let mut out = row_start(prefix, clustering);
    if let Some(last) = out.last_mut() {
        *last = 0x02;
    }
    out
}

fn encode_pos(out: &mut Vec<u8>, pos: &Pos) {
    match pos {
        Pos::Lowest => out.push(0x00),
        Pos::Before(v) => {
            out.push(0x01);
            escape_into(out, v);
            out.push(0x00);
        }
        Pos::After(v) => {
            out.push(0x01);
            escape_into(out, v);
            out.push(0x02);
        }
        Pos::Highest => out.push(0x02),
    }
}

fn decode_pos(input: &[u8]) -> Result<(Pos, usize), StorageError> {
    match input.first() {
        Some(0x00) => Ok((Pos::Lowest, 1)),
        Some(0x02) => Ok((Pos::Highest, 1)),
        Some(0x01) => {
            let (v, used) = unescape(&input[1..])?;
            match input.get(1 + used) {
                Some(0x00) => Ok((Pos::Before(v), used + 2)),
                Some(0x02) => Ok((Pos::After(v), used + 2)),
                _ => Err(corrupt("bad range bound in key")),
            }
        }
        _ => Err(corrupt("bad range bound in key")),
    }
}

/// The full key of an atom of the partition with this prefix.
pub(crate) fn atom_key(prefix: &[u8], atom: &AtomKey) -> Vec<u8> {
    let mut out = prefix.to_vec();
    match atom {
        AtomKey::PartitionDeletion => out.push(SECTION_PARTITION_DELETION),
        AtomKey::RangeDeletion(s, e) => {
            out.push(SECTION_RANGE_DELETION);
            encode_pos(&mut out, s);
            encode_pos(&mut out, e);
        }
        AtomKey::RowDeletion(c) => {
            out.push(SECTION_ROWS);
            escape_into(&mut out, c);
            out.push(PART_ROW_DELETION);
        }
        AtomKey::Liveness(c) => {
            out.push(SECTION_ROWS);
            escape_into(&mut out, c);
            out.push(PART_LIVENESS);
        }
        AtomKey::CollectionDeletion(c, col) => {
            out.push(SECTION_ROWS);
            escape_into(&mut out, c);
            out.push(PART_COLLECTION_DELETION);
            out.extend_from_slice(&col.to_be_bytes());
        }
        AtomKey::Cell(c, k) => {
            out.push(SECTION_ROWS);
            escape_into(&mut out, c);
            out.push(PART_CELL);
            out.extend_from_slice(&k.column.to_be_bytes());
            match &k.path {
                None => out.push(0x00),
                Some(path) => {
                    out.push(0x01);
                    out.extend_from_slice(path);
                }
            }
        }
    }
    out
}

fn read_column(input: &[u8]) -> Result<u32, StorageError> {
    let bytes: [u8; 4] = input
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| corrupt("truncated column id"))?;
    Ok(u32::from_be_bytes(bytes))
}

/// Decodes the part of a data key after the partition prefix.
pub(crate) fn decode_atom_key(rest: &[u8]) -> Result<AtomKey, StorageError> {
    let Some((&section, rest)) = rest.split_first() else {
        return Err(corrupt("data key without section"));
    };
    match section {
        SECTION_PARTITION_DELETION if rest.is_empty() => Ok(AtomKey::PartitionDeletion),
        SECTION_RANGE_DELETION => {
            let (s, used) = decode_pos(rest)?;
            let (e, used2) = decode_pos(&rest[used..])?;
            if used + used2 != rest.len() {
                return Err(corrupt("trailing bytes after range deletion bounds"));
            }
            Ok(AtomKey::RangeDeletion(s, e))
        }
        SECTION_ROWS => {
            let (c, used) = unescape(rest)?;
            let rest = &rest[used..];
            let Some((&part, rest)) = rest.split_first() else {
                return Err(corrupt("row key without part"));
            };
            match part {
                PART_ROW_DELETION if rest.is_empty() => Ok(AtomKey::RowDeletion(c)),
                PART_LIVENESS if rest.is_empty() => Ok(AtomKey::Liveness(c)),
                PART_COLLECTION_DELETION if rest.len() == 4 => {
                    Ok(AtomKey::CollectionDeletion(c, read_column(rest)?))
                }
                PART_CELL => {
                    let column = read_column(rest)?;
                    let path = match rest.get(4..) {
                        Some([0x00]) => None,
                        Some([0x01, path @ ..]) => Some(path.to_vec()),
                        _ => return Err(corrupt("bad cell path in key")),
                    };
                    Ok(AtomKey::Cell(c, CellKey { column, path }))
                }
                _ => Err(corrupt("unknown row part in key")),
            }
        }
        _ => Err(corrupt("unknown section in data key")),
    }
}

// ---------------------------------------------------------------------------------------------
// Values.
// ---------------------------------------------------------------------------------------------

fn put_varint(out: &mut Vec<u8>, value: i64) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

struct Reader<'a> {
    input: &'a [u8],
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, StorageError> {
        let (&b, rest) = self
            .input
            .split_first()
            .ok_or_else(|| corrupt("truncated value"))?;
        self.input = rest;
        Ok(b)
    }

    fn timestamp(&mut self) -> Result<i64, StorageError> {
        let bytes: [u8; 8] = self
            .input
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| corrupt("truncated timestamp"))?;
        self.input = &self.input[8..];
        Ok(i64::from_be_bytes(bytes))
    }

    fn varint(&mut self) -> Result<i64, StorageError> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            if shift == 63 && b > 1 {
                return Err(corrupt("varint overflow"));
            }
            v |= u64::from(b & 0x7F) << shift;
            if b & 0x80 == 0 {
                return Ok(((v >> 1) as i64) ^ -((v & 1) as i64));
            }
        }
        Err(corrupt("varint too long"))
    }

    fn ttl(&mut self) -> Result<i32, StorageError> {
        i32::try_from(self.varint()?).map_err(|_| corrupt("ttl out of range"))
    }

    fn finish(self) -> Result<(), StorageError> {
        if self.input.is_empty() {
            Ok(())
        } else {
            Err(corrupt("trailing bytes in value"))
        }
    }
}

/// Encodes an atom's value.
pub(crate) fn encode_value(value: &AtomValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(24);
    out.push(FORMAT_VERSION);
    match value {
        AtomValue::Deletion(d) => {
            out.extend_from_slice(&d.timestamp.to_be_bytes());
            put_varint(&mut out, d.local_deletion_time);
        }
        AtomValue::Liveness(l) => {
            out.extend_from_slice(&l.timestamp.to_be_bytes());
            put_varint(&mut out, i64::from(l.ttl));
            put_varint(&mut out, l.expires_at);
        }
        AtomValue::Cell(c) => {
            out.push(u8::from(c.value.is_some()));
            out.extend_from_slice(&c.timestamp.to_be_bytes());
            put_varint(&mut out, i64::from(c.ttl));
            put_varint(&mut out, c.local_deletion_time);
            if let Some(v) = &c.value {
                out.extend_from_slice(v);
            }
        }
    }
    out
}

/// Decodes the value stored under an atom key.
pub(crate) fn decode_value(key: &AtomKey, bytes: &[u8]) -> Result<AtomValue, StorageError> {
    let mut r = Reader { input: bytes };
    let version = r.byte()?;
    if version != FORMAT_VERSION {
        return Err(corrupt(format!("unknown value format version {version}")));
    }
    match key {
        AtomKey::PartitionDeletion
        | AtomKey::RangeDeletion(..)
        | AtomKey::RowDeletion(_)
        | AtomKey::CollectionDeletion(..) => {
            let timestamp = r.timestamp()?;
            let local_deletion_time = r.varint()?;
            r.finish()?;
            Ok(AtomValue::Deletion(Deletion {
                timestamp,
                local_deletion_time,
            }))
        }
        AtomKey::Liveness(_) => {
            let timestamp = r.timestamp()?;
            let ttl = r.ttl()?;
            let expires_at = r.varint()?;
            r.finish()?;
            Ok(AtomValue::Liveness(Liveness {
                timestamp,
                ttl,
                expires_at,
            }))
        }
        AtomKey::Cell(..) => {
            let flags = r.byte()?;
            if flags > 1 {
                return Err(corrupt("unknown cell flags"));
            }
            let timestamp = r.timestamp()?;
            let ttl = r.ttl()?;
            let local_deletion_time = r.varint()?;
            let value = if flags & 1 == 1 {
                Some(r.input.to_vec())
            } else {
                r.finish()?;
                None
            };
            Ok(AtomValue::Cell(Cell {
                timestamp,
                ttl,
                local_deletion_time,
                value,
            }))
        }
    }
}

/// The smallest byte string greater than every string starting with `prefix`; `None` if there is
/// none (the prefix is all `FF`).
pub(crate) fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut out = prefix.to_vec();
    while let Some(last) = out.pop() {
        if last < 0xFF {
            out.push(last + 1);
            return Some(out);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn token_order_is_signed_order() {
        let tokens = [i64::MIN, -5, -1, 0, 1, 7, i64::MAX];
        for w in tokens.windows(2) {
            assert!(encode_token(w[0]) < encode_token(w[1]));
        }
        for t in tokens {
            assert_eq!(decode_token(encode_token(t)), t);
        }
        assert_eq!(hex(&encode_token(0)), "8000000000000000");
        assert_eq!(hex(&encode_token(-1)), "7fffffffffffffff");
    }

    #[test]
    fn escaping_preserves_order_and_is_prefix_free() {
        let keys: [&[u8]; 7] = [b"", b"\0", b"\0\0", b"\0\x01", b"a", b"a\0", b"ab"];
        let enc: Vec<Vec<u8>> = keys
            .iter()
            .map(|k| {
                let mut v = Vec::new();
                escape_into(&mut v, k);
                v
            })
            .collect();
        for w in enc.windows(2) {
            assert!(w[0] < w[1], "{:?} !< {:?}", w[0], w[1]);
            assert!(!w[1].starts_with(&w[0]));
        }
        for (k, e) in keys.iter().zip(&enc) {
            assert_eq!(unescape(e).expect("unescape"), (k.to_vec(), e.len()));
        }
        assert!(unescape(b"ab").is_err());
        assert!(unescape(b"a\0\x05").is_err());
    }

    #[test]
    fn golden_keys() {
        let table = TableId::from_u128(0x0102030405060708090a0b0c0d0e0f10);
        let pk = PartitionKey {
            token: 1,
            key: vec![b'k', 0],
        };
        let prefix = partition_prefix(table, &pk);
        assert_eq!(
            hex(&prefix),
            "0102030405060708090a0b0c0d0e0f10".to_owned() + "8000000000000001" + "6b00ff0001"
        );
        let key = atom_key(
            &prefix,
            &AtomKey::Cell(
                b"c".to_vec(),
                CellKey {
                    column: 7,
                    path: Some(b"p".to_vec()),
                },
            ),
        );
        assert_eq!(hex(&key[prefix.len()..]), "0263000103000000070170");
        let key = atom_key(
            &prefix,
            &AtomKey::RangeDeletion(Pos::Lowest, Pos::After(b"x".to_vec())),
        );
        assert_eq!(hex(&key[prefix.len()..]), "01000178000102");
    }

    #[test]
    fn keys_round_trip() {
        let table = TableId::from_u128(42);
        let pk = PartitionKey {
            token: -3,
            key: b"p\0q".to_vec(),
        };
        let prefix = partition_prefix(table, &pk);
        let atoms = [
            AtomKey::PartitionDeletion,
            AtomKey::RangeDeletion(Pos::Lowest, Pos::Before(vec![])),
            AtomKey::RangeDeletion(Pos::Before(b"a\0".to_vec()), Pos::Highest),
            AtomKey::RowDeletion(vec![]),
            AtomKey::Liveness(b"c".to_vec()),
            AtomKey::CollectionDeletion(b"c".to_vec(), u32::MAX),
            AtomKey::Cell(
                b"c".to_vec(),
                CellKey {
                    column: 1,
                    path: None,
                },
            ),
            AtomKey::Cell(
                b"c".to_vec(),
                CellKey {
                    column: 1,
                    path: Some(vec![]),
                },
            ),
            AtomKey::Cell(
                b"c".to_vec(),
                CellKey {
                    column: 1,
                    path: Some(vec![0, 0xFF]),
                },
            ),
        ];
        let mut previous: Option<Vec<u8>> = None;
        for atom in &atoms {
            let key = atom_key(&prefix, atom);
            let (t, p, used) = decode_partition(&key).expect("partition");
            assert_eq!((t, &p, used), (table, &pk, prefix.len()));
            assert_eq!(&decode_atom_key(&key[used..]).expect("atom"), atom);
            if let Some(prev) = previous {
                assert!(prev < key, "keys out of order at {atom:?}");
            }
            previous = Some(key);
        }
    }

    #[test]
    fn values_round_trip_and_reject_garbage() {
        let cases = [
            (
                AtomKey::PartitionDeletion,
                AtomValue::Deletion(Deletion::new(-7, 1_700_000_000)),
            ),
            (
                AtomKey::Liveness(vec![]),
                AtomValue::Liveness(Liveness::expiring(i64::MAX, i32::MAX, i64::MIN)),
            ),
            (
                AtomKey::Cell(
                    vec![],
                    CellKey {
                        column: 0,
                        path: None,
                    },
                ),
                AtomValue::Cell(Cell::live(1, b"v".to_vec())),
            ),
            (
                AtomKey::Cell(
                    vec![],
                    CellKey {
                        column: 0,
                        path: None,
                    },
                ),
                AtomValue::Cell(Cell::live(1, Vec::new())),
            ),
            (
                AtomKey::Cell(
                    vec![],
                    CellKey {
                        column: 0,
                        path: None,
                    },
                ),
                AtomValue::Cell(Cell::tombstone(1, 5)),
            ),
        ];
        for (key, value) in &cases {
            let bytes = encode_value(value);
            assert_eq!(&decode_value(key, &bytes).expect("decode"), value);
            for cut in 0..bytes.len() {
                // Truncations never panic; they are errors except where the value is open-ended.
                let _ = decode_value(key, &bytes[..cut]);
            }
        }
        assert_eq!(
            hex(&encode_value(&AtomValue::Deletion(Deletion::new(1, -1)))),
            "01000000000000000101"
        );
        assert!(matches!(
            decode_value(&AtomKey::PartitionDeletion, &[2, 0]),
            Err(StorageError::Corrupt(_))
        ));
        assert!(matches!(
            decode_value(&AtomKey::PartitionDeletion, &[]),
            Err(StorageError::Corrupt(_))
        ));
        let mut long = vec![1u8; 9];
        long.extend_from_slice(&[0xFF; 11]);
        assert!(decode_value(&AtomKey::PartitionDeletion, &long).is_err());
    }

    #[test]
    fn successor() {
        assert_eq!(prefix_successor(&[1, 2]), Some(vec![1, 3]));
        assert_eq!(prefix_successor(&[1, 0xFF]), Some(vec![2]));
        assert_eq!(prefix_successor(&[0xFF, 0xFF]), None);
    }
}
