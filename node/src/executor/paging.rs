//! Paging states: where the next page of a SELECT starts.
//!
//! A paging state is opaque to clients, which echo it back for the next page. Ours records the
//! position of the last row returned — its partition (token and key bytes) and clustering bytes,
//! or "partition finished" when the last row was a partition's only row — plus the rows still
//! allowed by LIMIT and the rows already returned from the current partition (for PER PARTITION
//! LIMIT). System tables, computed in memory, page by row offset instead.
//!
//! Layout (all integers big-endian): `version u8 = 1`, `kind u8`, then for kind 0 (data):
//! `token i64`, `key_len u32`, key, `has_clustering u8`, [`len u32`, clustering],
//! `remaining i64` (-1: no limit), `partition_rows u64`; for kind 1 (offset): `offset u64`,
//! `remaining i64`. Decoding is strict: a state that is truncated, too long or of an unknown
//! version is a protocol error, never a panic.

use super::error::ExecError;
use crate::storage::PartitionKey;

const VERSION: u8 = 1;
const KIND_DATA: u8 = 0;
const KIND_OFFSET: u8 = 1;
/// Upper bound on clustering bytes in a paging state (clustering keys are far smaller).
const MAX_CLUSTERING_LEN: usize = 1 << 20;

/// Where to resume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PagingState {
    Data {
        partition: PartitionKey,
        /// Resume after this row; `None`: the partition is finished.
        clustering: Option<Vec<u8>>,
        /// Rows LIMIT still allows.
        remaining: Option<u64>,
        /// Rows already returned from `partition`.
        partition_rows: u64,
    },
    Offset {
        offset: u64,
        remaining: Option<u64>,
    },
}

fn bad() -> ExecError {
    ExecError::Protocol("Invalid value for the paging state".into())
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ExecError> {
        if self.b.len() < n {
            return Err(bad());
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    fn u8(&mut self) -> Result<u8, ExecError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, ExecError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, ExecError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
    fn i64(&mut self) -> Result<i64, ExecError> {
        Ok(self.u64()? as i64)
    }
}

fn remaining_to_i64(r: Option<u64>) -> i64 {
    r.map_or(-1, |v| v.min(i64::MAX as u64) as i64)
}

fn remaining_from_i64(v: i64) -> Result<Option<u64>, ExecError> {
    match v {
        -1 => Ok(None),
        v if v >= 0 => Ok(Some(v as u64)),
        _ => Err(bad()),
    }
}

impl PagingState {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = vec![VERSION];
        match self {
            PagingState::Data {
                partition,
                clustering,
                remaining,
                partition_rows,
            } => {
                out.push(KIND_DATA);
                out.extend_from_slice(&partition.token.to_be_bytes());
                out.extend_from_slice(&(partition.key.len() as u32).to_be_bytes());
                out.extend_from_slice(&partition.key);
                match clustering {
                    Some(c) => {
                        out.push(1);
                        out.extend_from_slice(&(c.len() as u32).to_be_bytes());
                        out.extend_from_slice(c);
                    }
                    None => out.push(0),
                }
                out.extend_from_slice(&remaining_to_i64(*remaining).to_be_bytes());
                out.extend_from_slice(&partition_rows.to_be_bytes());
            }
            PagingState::Offset { offset, remaining } => {
                out.push(KIND_OFFSET);
                out.extend_from_slice(&offset.to_be_bytes());
                out.extend_from_slice(&remaining_to_i64(*remaining).to_be_bytes());
            }
        }
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<PagingState, ExecError> {
        let mut r = Reader { b: bytes };
        if r.u8()? != VERSION {
            return Err(bad());
        }
        let state = match r.u8()? {
            KIND_DATA => {
                let token = r.i64()?;
                let key_len = r.u32()? as usize;
                if key_len > ringdb_ring::murmur3::MAX_PARTITION_KEY_LEN {
                    return Err(bad());
                }
                let key = r.take(key_len)?.to_vec();
                let clustering = match r.u8()? {
                    0 => None,
                    1 => {
                        let n = r.u32()? as usize;
                        if n > MAX_CLUSTERING_LEN {
                            return Err(bad());
                        }
                        Some(r.take(n)?.to_vec())
                    }
                    _ => return Err(bad()),
                };
                let remaining = remaining_from_i64(r.i64()?)?;
                let partition_rows = r.u64()?;
                PagingState::Data {
                    partition: PartitionKey { token, key },
                    clustering,
                    remaining,
                    partition_rows,
                }
            }
            KIND_OFFSET => {
                let offset = r.u64()?;
                let remaining = remaining_from_i64(r.i64()?)?;
                PagingState::Offset { offset, remaining }
            }
            _ => return Err(bad()),
        };
        if !r.b.is_empty() {
            return Err(bad());
        }
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trips() {
        let states = [
            PagingState::Data {
                partition: PartitionKey {
                    token: -5,
                    key: vec![1, 2, 3],
                },
                clustering: Some(vec![9, 9]),
                remaining: Some(10),
                partition_rows: 3,
            },
            PagingState::Data {
                partition: PartitionKey {
                    token: i64::MAX,
                    key: vec![],
                },
                clustering: None,
                remaining: None,
                partition_rows: 0,
            },
            PagingState::Offset {
                offset: 7,
                remaining: None,
            },
        ];
        for s in states {
            assert_eq!(PagingState::decode(&s.encode()).unwrap(), s);
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = PagingState::decode(&bytes);
        }

        #[test]
        fn truncations_are_rejected(cut in 0usize..40) {
            let s = PagingState::Data {
                partition: PartitionKey { token: 1, key: vec![7; 5] },
                clustering: Some(vec![1; 6]),
                remaining: Some(3),
                partition_rows: 1,
            };
            let e = s.encode();
            if cut < e.len() {
                prop_assert!(PagingState::decode(&e[..cut]).is_err());
            }
        }
    }
}
