//! Cassandra's Murmur3 partitioner: partition key bytes → [`Token`].
//!
//! Drivers route each request to a replica by hashing the partition key themselves, so this must
//! agree with Cassandra (and therefore with every driver) bit for bit, quirks included:
//!
//! * The hash is MurmurHash3 `x64_128` with seed 0, and the token is the first 64-bit half read as
//!   a signed integer.
//! * Cassandra's Java port reads the 1–15 trailing bytes ("tail") of the key as *signed* bytes and
//!   sign-extends them before mixing, where the reference C++ code reads them unsigned. Keys whose
//!   tail holds a byte ≥ `0x80` therefore hash differently from textbook Murmur3.
//! * [`Token::MIN`] is reserved (so that the range `(MIN, x]` can mean "everything up to `x`"):
//!   a hash equal to `i64::MIN` becomes `i64::MAX`, and the empty key, which Cassandra refuses to
//!   store, maps to `MIN` itself.
//!
//! A partition key of several columns is hashed in its composite serialized form, built by
//! [`serialize_partition_key`]. `tests/murmur3_vectors.rs` checks all of this against vectors
//! produced by the DataStax Python driver.

use std::fmt;

use crate::token::Token;

/// Cassandra's limit on the serialized length of a partition key (it is written with a 2-byte
/// length in SSTables and in composite keys).
pub const MAX_PARTITION_KEY_LEN: usize = 0xFFFF;

const C1: u64 = 0x87c3_7b91_1142_53d5;
const C2: u64 = 0x4cf5_ad43_2745_937f;

/// The token of a serialized partition key, as Cassandra's `Murmur3Partitioner.getToken` computes
/// it.
///
/// For a multi-column partition key, pass the output of [`serialize_partition_key`].
pub fn token_for_key(key: &[u8]) -> Token {
    if key.is_empty() {
        return Token::MIN;
    }
    let [h1, _] = hash3_x64_128(key, 0);
    normalize(h1 as i64)
}

/// Maps a raw hash to a token, moving the reserved [`Token::MIN`] to [`Token::MAX`].
pub fn normalize(hash: i64) -> Token {
    if hash == i64::MIN {
        Token::MAX
    } else {
        Token(hash)
    }
}

/// MurmurHash3 `x64_128` as Cassandra computes it (`org.apache.cassandra.utils.MurmurHash`),
/// including the sign extension of tail bytes. Returns the two 64-bit halves `[h1, h2]`.
pub fn hash3_x64_128(data: &[u8], seed: u64) -> [u64; 2] {
    let mut h1 = seed;
    let mut h2 = seed;

    let mut blocks = data.chunks_exact(16);
    for block in &mut blocks {
        let (lo, hi) = block.split_at(8);
        let k1 = u64::from_le_bytes(lo.try_into().unwrap_or([0; 8]));
        let k2 = u64::from_le_bytes(hi.try_into().unwrap_or([0; 8]));

        h1 ^= mix_k1(k1);
        h1 = h1.rotate_left(27).wrapping_add(h2);
        h1 = h1.wrapping_mul(5).wrapping_add(0x52dc_e729);

        h2 ^= mix_k2(k2);
        h2 = h2.rotate_left(31).wrapping_add(h1);
        h2 = h2.wrapping_mul(5).wrapping_add(0x3849_5ab5);
    }

    let tail = blocks.remainder();
    if tail.len() > 8 {
        h2 ^= mix_k2(signed_tail_word(&tail[8..]));
    }
    if !tail.is_empty() {
        h1 ^= mix_k1(signed_tail_word(&tail[..tail.len().min(8)]));
    }

    let len = data.len() as u64;
    h1 ^= len;
    h2 ^= len;
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    h1 = fmix(h1);
    h2 = fmix(h2);
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    [h1, h2]
}

/// Folds up to 8 tail bytes into a word the way Cassandra's Java does: each byte is a signed
/// `byte`, widened to `long` (sign-extended) before it is shifted into place and XORed in.
fn signed_tail_word(bytes: &[u8]) -> u64 {
    bytes.iter().enumerate().fold(0u64, |word, (i, &b)| {
        word ^ (((b as i8) as i64 as u64) << (8 * i))
    })
}

fn mix_k1(k1: u64) -> u64 {
    k1.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2)
}

fn mix_k2(k2: u64) -> u64 {
    k2.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1)
}

fn fmix(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

/// Why a partition key cannot be serialized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartitionKeyError {
    /// A partition key needs at least one component.
    NoComponents,
    /// The serialized key would exceed [`MAX_PARTITION_KEY_LEN`] bytes.
    TooLong {
        /// The length the serialized key would have had.
        len: usize,
    },
}

impl fmt::Display for PartitionKeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PartitionKeyError::NoComponents => {
                write!(f, "a partition key needs at least one component")
            }
            PartitionKeyError::TooLong { len } => write!(
                f,
                "Key length of {len} is longer than maximum of {MAX_PARTITION_KEY_LEN}"
            ),
        }
    }
}

impl std::error::Error for PartitionKeyError {}

/// The bytes Cassandra hashes for a partition key made of `components` (each already serialized
/// in its column type's native-protocol form).
///
/// A single component is used as is. Several components are concatenated in `CompositeType` form:
/// for each, its length as 2 bytes big-endian, the bytes, then a 0 byte (the end-of-component
/// marker). Fails when the result would exceed [`MAX_PARTITION_KEY_LEN`], a limit Cassandra also
/// enforces, so that a 2-byte length can never silently truncate.
pub fn serialize_partition_key(components: &[&[u8]]) -> Result<Vec<u8>, PartitionKeyError> {
    let key = match components {
        [] => return Err(PartitionKeyError::NoComponents),
        [single] => single.to_vec(),
        many => {
            let len: usize = many.iter().map(|c| c.len() + 3).sum();
            if len > MAX_PARTITION_KEY_LEN {
                return Err(PartitionKeyError::TooLong { len });
            }
            let mut out = Vec::with_capacity(len);
            for component in many {
                // Cannot truncate: each component is shorter than the whole, checked above.
                out.extend_from_slice(&(component.len() as u16).to_be_bytes());
                out.extend_from_slice(component);
                out.push(0);
            }
            out
        }
    };
    if key.len() > MAX_PARTITION_KEY_LEN {
        return Err(PartitionKeyError::TooLong { len: key.len() });
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_key_is_min_token() {
        assert_eq!(token_for_key(b""), Token::MIN);
        assert_eq!(hash3_x64_128(b"", 0), [0, 0]);
    }

    #[test]
    fn normalize_moves_min_to_max() {
        assert_eq!(normalize(i64::MIN), Token::MAX);
        assert_eq!(normalize(i64::MIN + 1), Token(i64::MIN + 1));
        assert_eq!(normalize(0), Token(0));
    }

    #[test]
    fn tail_sign_extension() {
        // One byte 0x80 is -128: every bit above bit 7 is set after sign extension.
        assert_eq!(signed_tail_word(&[0x80]), 0xffff_ffff_ffff_ff80);
        assert_eq!(signed_tail_word(&[0x01, 0x02]), 0x0201);
        // A later negative byte flips the bits the earlier ones set.
        assert_eq!(signed_tail_word(&[0x01, 0xff]), 0xffff_ffff_ffff_ff01);
    }

    #[test]
    fn composite_layout() {
        let key = serialize_partition_key(&[b"ab", b""]).unwrap();
        assert_eq!(key, vec![0, 2, b'a', b'b', 0, 0, 0, 0]);
        assert_eq!(serialize_partition_key(&[b"raw"]).unwrap(), b"raw".to_vec());
        assert_eq!(
            serialize_partition_key(&[]),
            Err(PartitionKeyError::NoComponents)
        );
    }

    #[test]
    fn oversized_keys_are_rejected() {
        let big = vec![7u8; MAX_PARTITION_KEY_LEN];
        assert!(serialize_partition_key(&[&big]).is_ok());
        let too_big = vec![7u8; MAX_PARTITION_KEY_LEN + 1];
        assert_eq!(
            serialize_partition_key(&[&too_big]),
            Err(PartitionKeyError::TooLong {
                len: MAX_PARTITION_KEY_LEN + 1
            })
        );
        // Two components that each fit but whose composite does not.
        let half = vec![1u8; 40_000];
        assert!(matches!(
            serialize_partition_key(&[&half, &half]),
            Err(PartitionKeyError::TooLong { len: 80_006 })
        ));
    }
}
