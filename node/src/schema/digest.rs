//! A small, stable 128-bit digest (FNV-1a 128).
//!
//! Used where a hash is persisted or compared across nodes and releases: the schema version and
//! prepared statement ids. `std`'s `DefaultHasher` is explicitly not stable across Rust releases,
//! so it cannot serve. FNV-1a is not cryptographic; nothing here needs it to be (ids are not
//! secrets, and a client that forges a collision only confuses itself).

/// FNV-1a 128-bit offset basis.
const OFFSET_BASIS: u128 = 0x6c62272e07bb014262b821756295c58d;
/// FNV-1a 128-bit prime (2^88 + 2^8 + 0x3b).
const PRIME: u128 = 0x0000000001000000000000000000013B;

/// An incremental FNV-1a 128 hasher.
#[derive(Debug, Clone, Copy)]
pub struct Digest128 {
    state: u128,
}

impl Default for Digest128 {
    fn default() -> Self {
        Digest128 {
            state: OFFSET_BASIS,
        }
    }
}

impl Digest128 {
    /// A fresh hasher.
    pub fn new() -> Digest128 {
        Digest128::default()
    }

    /// Feeds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.state ^= u128::from(b);
            self.state = self.state.wrapping_mul(PRIME);
        }
    }

    /// Feeds a length-prefixed byte string, so that `("ab","c")` and `("a","bc")` differ.
    pub fn update_framed(&mut self, bytes: &[u8]) {
        self.update(&(bytes.len() as u64).to_be_bytes());
        self.update(bytes);
    }

    /// The digest, big-endian.
    pub fn finish(&self) -> [u8; 16] {
        self.state.to_be_bytes()
    }
}

/// FNV-1a 128 of `bytes`, big-endian.
pub fn digest128(bytes: &[u8]) -> [u8; 16] {
    let mut d = Digest128::new();
    d.update(bytes);
    d.finish()
}

/// A name-based UUID (version 3 layout, as Cassandra's `UUID.nameUUIDFromBytes` produces) from
/// the digest of `bytes`. Never the nil UUID.
pub fn name_uuid(bytes: &[u8]) -> uuid::Uuid {
    let mut b = digest128(bytes);
    b[6] = (b[6] & 0x0f) | 0x30;
    b[8] = (b[8] & 0x3f) | 0x80;
    uuid::Uuid::from_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        // FNV-1a 128 of the empty string is the offset basis; of "a" a published test vector.
        assert_eq!(u128::from_be_bytes(digest128(b"")), OFFSET_BASIS);
        assert_eq!(
            u128::from_be_bytes(digest128(b"a")),
            0xd228cb696f1a8caf78912b704e4a8964
        );
    }

    #[test]
    fn name_uuid_has_version_3_and_is_not_nil() {
        let u = name_uuid(b"");
        assert_eq!(u.get_version_num(), 3);
        assert!(!u.is_nil());
    }
}
