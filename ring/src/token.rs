//! Tokens and token ranges: the coordinates of the ring.
//!
//! Every partition key hashes (see [`crate::murmur3`]) to a [`Token`], a signed 64-bit integer, and
//! the ring is the circle of all `i64` values in their natural order, wrapping from `i64::MAX` back
//! to `i64::MIN`. A node owns the tokens it announces; each of its tokens ("vnodes") closes a
//! [`TokenRange`] `(previous token, token]` that starts just after the previous vnode on the ring.
//!
//! Ranges are half-open on the left, as in Cassandra, so that a token belongs to exactly one range.
//! A range whose start equals its end is the whole ring (the case of a ring with a single vnode).
//! Widths are measured in tokens and need 65 bits for the full ring, hence `u128`.

use std::fmt;
use std::num::ParseIntError;
use std::str::FromStr;

/// The number of distinct tokens on the ring, 2^64, as a float for fractions of the ring.
pub(crate) const RING_SIZE: f64 = 18_446_744_073_709_551_616.0;

/// A position on the ring: the Murmur3 partitioner's token.
///
/// Ordering is the ring order of Cassandra's `LongToken` (plain signed comparison); the ring wraps
/// from [`Token::MAX`] to [`Token::MIN`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Token(pub i64);

impl Token {
    /// The smallest token. No key hashes to it (see [`crate::murmur3::token_for_key`]), which is
    /// what lets `(MIN, x]` mean "everything up to `x`".
    pub const MIN: Token = Token(i64::MIN);
    /// The largest token.
    pub const MAX: Token = Token(i64::MAX);

    /// The number of steps clockwise from `self` to `other`, wrapping; `0` when they are equal.
    ///
    /// This is the width of the range `(self, other]` unless the two are equal (then that range is
    /// the whole ring, see [`TokenRange::width`]).
    pub fn distance_to(self, other: Token) -> u64 {
        other.0.wrapping_sub(self.0) as u64
    }

    /// The token `steps` positions clockwise from `self`, wrapping around the ring.
    pub fn wrapping_add(self, steps: u64) -> Token {
        Token(self.0.wrapping_add(steps as i64))
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for Token {
    type Err = ParseIntError;

    /// Parses the decimal form Cassandra uses in `system.local.tokens` and `nodetool ring`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse::<i64>().map(Token)
    }
}

impl From<i64> for Token {
    fn from(value: i64) -> Self {
        Token(value)
    }
}

/// The ring range `(start, end]`: every token after `start` up to and including `end`, wrapping
/// past [`Token::MAX`] when `end <= start`.
///
/// `start == end` denotes the whole ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TokenRange {
    /// The exclusive left bound: the previous vnode's token.
    pub start: Token,
    /// The inclusive right bound: the token of the vnode that owns this range.
    pub end: Token,
}

impl TokenRange {
    /// The range `(start, end]`.
    pub fn new(start: Token, end: Token) -> TokenRange {
        TokenRange { start, end }
    }

    /// Whether this range is the whole ring (`start == end`).
    pub fn is_full_ring(&self) -> bool {
        self.start == self.end
    }

    /// Whether the range wraps past [`Token::MAX`] (and is not the whole ring).
    pub fn wraps(&self) -> bool {
        self.end < self.start
    }

    /// Whether `token` lies in `(start, end]`.
    pub fn contains(&self, token: Token) -> bool {
        if self.is_full_ring() {
            return true;
        }
        // Measuring clockwise from `start` turns the wrapping test into one comparison.
        let offset = self.start.distance_to(token);
        offset != 0 && offset <= self.start.distance_to(self.end)
    }

    /// The number of tokens in the range: `2^64` for the whole ring.
    pub fn width(&self) -> u128 {
        if self.is_full_ring() {
            1u128 << 64
        } else {
            u128::from(self.start.distance_to(self.end))
        }
    }

    /// The fraction of the ring this range covers, in `(0, 1]`.
    pub fn fraction(&self) -> f64 {
        self.width() as f64 / RING_SIZE
    }
}

impl fmt::Display for TokenRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({}, {}]", self.start, self.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_wraps() {
        assert_eq!(Token(5).distance_to(Token(7)), 2);
        assert_eq!(Token::MAX.distance_to(Token::MIN), 1);
        assert_eq!(Token(7).distance_to(Token(5)), u64::MAX - 1);
        assert_eq!(Token(3).wrapping_add(u64::MAX), Token(2));
    }

    #[test]
    fn range_contains_is_left_open_right_closed() {
        let r = TokenRange::new(Token(10), Token(20));
        assert!(!r.contains(Token(10)));
        assert!(r.contains(Token(11)));
        assert!(r.contains(Token(20)));
        assert!(!r.contains(Token(21)));
        assert_eq!(r.width(), 10);
    }

    #[test]
    fn wrapping_range() {
        let r = TokenRange::new(Token(100), Token(-100));
        assert!(r.wraps());
        assert!(r.contains(Token::MAX));
        assert!(r.contains(Token::MIN));
        assert!(r.contains(Token(-100)));
        assert!(!r.contains(Token(0)));
        assert!(!r.contains(Token(100)));
        assert_eq!(r.width(), (1u128 << 64) - 200);
    }

    #[test]
    fn full_ring() {
        let r = TokenRange::new(Token(4), Token(4));
        assert!(r.is_full_ring());
        assert!(r.contains(Token(4)) && r.contains(Token::MIN));
        assert_eq!(r.width(), 1u128 << 64);
        assert_eq!(r.fraction(), 1.0);
    }

    #[test]
    fn parse_and_display() {
        let t: Token = "-4069959284402364209".parse().unwrap();
        assert_eq!(t, Token(-4069959284402364209));
        assert_eq!(t.to_string(), "-4069959284402364209");
        assert!("x".parse::<Token>().is_err());
    }
}
