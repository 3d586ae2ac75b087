//! Internode verbs: what one node asks another about data.
//!
//! The internode transport (`ringdb_gossip::transport`) owns the wire: QUIC connections with
//! mutual TLS, one bidirectional stream per request, length-prefixed frames. The node owns what
//! travels in them on [`Channel::Verb`](ringdb_gossip::transport::Channel::Verb): a
//! [`VerbRequest`] and the [`VerbResponse`] that answers it, encoded here with bincode (serde)
//! under a hard allocation limit, so a hostile or corrupt body is an error, never a panic or an
//! unbounded allocation.
//!
//! The storage types ([`Mutation`], [`PartitionData`], [`Slice`], …) travel as they are: a replica
//! applies exactly the mutation the coordinator built, and answers with exactly what its engine
//! read, so that answers from several replicas merge with the same last-write-wins rules as data
//! inside one engine.
//!
//! Versioning: the transport negotiates `ringdb/1` (ALPN) at the handshake; a change to these
//! enums that old nodes cannot decode needs a new protocol name.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::schema::SchemaSnapshot;
use crate::storage::{Mutation, PartitionData, PartitionKey, ScanRange, Seconds, Slice, TableId};

/// The largest verb body accepted or produced (the transport's own frame limit is the same).
pub const MAX_VERB_BYTES: usize = 16 << 20;

const CONFIG: bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<MAX_VERB_BYTES>,
> = bincode::config::standard().with_limit::<MAX_VERB_BYTES>();

/// A request from a coordinator (or a peer syncing schema) to a replica.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum VerbRequest {
    /// Apply these mutations (each atomic on its partition) and answer once they are durable as
    /// the replica's `commitlog_sync` promises.
    Mutate {
        /// The mutations, all for partitions this replica owns; shared, so that the coordinator
        /// keeps them for hints and the replica hands them to its blocking pool without a copy.
        #[serde(with = "shared")]
        mutations: Arc<Vec<Mutation>>,
    },
    /// Read a slice of one partition: the data, or only its digest.
    Read {
        /// The table.
        table: TableId,
        /// The partition.
        partition: PartitionKey,
        /// Which rows.
        slice: Slice,
        /// Expiry reference time, the coordinator's, so that every replica judges TTLs alike.
        now: Seconds,
        /// Answer with [`VerbResponse::Digest`] instead of the data.
        digest: bool,
    },
    /// Read partitions in ring order within a range.
    Scan {
        /// The table.
        table: TableId,
        /// Where to start and stop.
        range: ScanRange,
        /// Which rows of each partition.
        slice: Slice,
        /// Most partitions to return.
        max_partitions: u32,
        /// Expiry reference time.
        now: Seconds,
    },
    /// Remove every partition of a table on this replica.
    Truncate {
        /// The table.
        table: TableId,
    },
    /// Keep this logged batch in your batchlog until it is removed, and answer once it is
    /// durable. A node that holds a batch replays it when it is still there after a grace
    /// period (its coordinator died or lost track of it): see `coordinator::batchlog`.
    BatchlogStore {
        /// The batch's id: a time-based (version 1) UUID made by the coordinator; its time
        /// orders the batchlog and tells its age.
        id: uuid::Uuid,
        /// Every mutation of the batch, over all its partitions and tables.
        mutations: Vec<Mutation>,
        /// When the coordinator wrote the batchlog, microseconds since the epoch (its wall
        /// clock): replay drops mutations older than their table's `gc_grace_seconds`.
        written_at: i64,
    },
    /// The batch is applied: forget it (answered even when it is not there).
    BatchlogRemove {
        /// The batch's id.
        id: uuid::Uuid,
    },
    /// Send your whole schema.
    SchemaPull,
    /// Merge this schema into yours.
    SchemaPush(Box<SchemaSnapshot>),
    /// Build a Merkle tree of your partitions of `table` in the token range `(start, end]`
    /// (anti-entropy repair: see `crate::repair`). Built with a streaming scan in bounded pages,
    /// each partition summarized by [`digest_of`] its whole data, tombstones included.
    MerkleTree {
        /// The table.
        table: TableId,
        /// The range's exclusive start token.
        start: i64,
        /// The range's inclusive end token (`start == end`: the whole ring).
        end: i64,
        /// The tree's depth; `None`: choose it from your partition count in the range
        /// ([`ringdb_ring::MerkleTree::depth_for`]), so that replicas with the same data pick
        /// the same depth without a round trip.
        depth: Option<u8>,
    },
    /// Read whole partitions of `table` in ring order within `range`, for repair streaming:
    /// at most `max_partitions`, and no more once `max_bytes` of encoded partitions are
    /// gathered (but always at least one), so that a page fits in a verb whatever the data.
    RepairRead {
        /// The table.
        table: TableId,
        /// Where to start and stop.
        range: ScanRange,
        /// Most partitions to return.
        max_partitions: u32,
        /// Encoded bytes after which the page is cut.
        max_bytes: u32,
    },
    /// Keep these mutations as a hint for `target` and replay them when it is up (a node
    /// leaving the ring hands its hints over this way), answering once the hint is durable.
    StoreHint {
        /// The host id of the replica the mutations are for.
        target: [u8; 16],
        /// The mutations it missed.
        mutations: Vec<Mutation>,
    },
    /// Cross-datacenter forwarding (the coordinator's write reaches a remote datacenter once):
    /// apply these mutations, and have each replica of `forward_to` (in this node's datacenter)
    /// apply them and acknowledge straight to `reply_to` with [`VerbRequest::ForwardAck`]. The
    /// answer is this node's own acknowledgement.
    MutateForward {
        /// The mutations.
        #[serde(with = "shared")]
        mutations: Arc<Vec<Mutation>>,
        /// The other replicas of the write in this datacenter.
        forward_to: Vec<std::net::SocketAddr>,
        /// The coordinator's internode address.
        reply_to: std::net::SocketAddr,
        /// The coordinator's id for this write.
        id: u64,
    },
    /// From a forwarding node: apply these mutations and acknowledge to `reply_to` with
    /// [`VerbRequest::ForwardAck`] (the answer to this request only tells the forwarder).
    MutateAndAck {
        /// The mutations.
        #[serde(with = "shared")]
        mutations: Arc<Vec<Mutation>>,
        /// The coordinator's internode address.
        reply_to: std::net::SocketAddr,
        /// The coordinator's id for the write.
        id: u64,
    },
    /// A replica's acknowledgement of a forwarded write, sent straight to its coordinator.
    ForwardAck {
        /// The coordinator's id for the write.
        id: u64,
        /// `None` when applied, else why not.
        error: Option<ReplicaError>,
    },
}

impl VerbRequest {
    /// A short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            VerbRequest::Mutate { .. } => "mutate",
            VerbRequest::Read { digest: false, .. } => "read",
            VerbRequest::Read { digest: true, .. } => "digest",
            VerbRequest::Scan { .. } => "scan",
            VerbRequest::Truncate { .. } => "truncate",
            VerbRequest::BatchlogStore { .. } => "batchlog_store",
            VerbRequest::BatchlogRemove { .. } => "batchlog_remove",
            VerbRequest::SchemaPull => "schema_pull",
            VerbRequest::SchemaPush(_) => "schema_push",
            VerbRequest::MerkleTree { .. } => "merkle_tree",
            VerbRequest::RepairRead { .. } => "repair_read",
            VerbRequest::StoreHint { .. } => "store_hint",
            VerbRequest::MutateForward { .. } => "mutate_forward",
            VerbRequest::MutateAndAck { .. } => "mutate_and_ack",
            VerbRequest::ForwardAck { .. } => "forward_ack",
        }
    }
}

/// A replica's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum VerbResponse {
    /// The mutations are applied and durable.
    Applied,
    /// The partition as read; `None` when the replica holds nothing for it.
    Data(Option<PartitionData>),
    /// The digest of what [`VerbResponse::Data`] would have carried.
    Digest([u8; 16]),
    /// Partitions of a scan, in ring order.
    Partitions(Vec<PartitionData>),
    /// The table is truncated on this replica.
    Truncated,
    /// The batch is durable in this node's batchlog.
    BatchlogStored,
    /// The batch is no longer in this node's batchlog.
    BatchlogRemoved,
    /// The replica's schema.
    Schema(Box<SchemaSnapshot>),
    /// The pushed schema is merged.
    SchemaMerged,
    /// The replica could not do it.
    Error(ReplicaError),
    /// The Merkle tree asked for by [`VerbRequest::MerkleTree`].
    MerkleTree(Box<ringdb_ring::MerkleTree>),
    /// A page of [`VerbRequest::RepairRead`], in ring order.
    RepairPage {
        /// The partitions.
        partitions: Vec<PartitionData>,
        /// True when the range holds nothing after the last partition (or the page is empty).
        complete: bool,
    },
    /// The hint is durable in this node's hint store.
    HintStored,
}

/// Why a replica refused or failed a verb. Carried over the wire, so plain data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ReplicaError {
    /// The replica does not know the table (its schema is behind, or the table was dropped).
    #[error("unknown table {0} on the replica (schema not yet propagated, or table dropped)")]
    UnknownTable(TableId),
    /// The replica's storage failed.
    #[error("replica storage error: {0}")]
    Storage(String),
    /// The replica's disk is full; the write was not applied.
    #[error("replica disk full: {0}")]
    DiskFull(String),
    /// The request could not be decoded or makes no sense.
    #[error("bad request: {0}")]
    BadRequest(String),
}

impl VerbRequest {
    /// [`VerbRequest::Mutate`] of `mutations`.
    pub fn mutate(mutations: Vec<Mutation>) -> VerbRequest {
        VerbRequest::Mutate {
            mutations: Arc::new(mutations),
        }
    }
}

/// Encodes a shared vector as the vector itself (the wire format of `Vec<T>`), so that the
/// encoding does not depend on how the sender held it.
mod shared {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(
        value: &Arc<Vec<T>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        value.as_slice().serialize(serializer)
    }

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Arc<Vec<T>>, D::Error> {
        Vec::deserialize(deserializer).map(Arc::new)
    }
}

/// Encodes a verb message.
pub fn encode<T: Serialize>(message: &T) -> Result<bytes::Bytes, String> {
    bincode::serde::encode_to_vec(message, CONFIG)
        .map(bytes::Bytes::from)
        .map_err(|e| format!("cannot encode verb: {e}"))
}

/// The size of a verb message once encoded, computed without building it (to refuse what would
/// not fit in [`MAX_VERB_BYTES`] before doing anything).
pub fn encoded_len<T: Serialize>(message: &T) -> Result<usize, String> {
    let mut size = bincode::enc::write::SizeWriter { bytes_written: 0 };
    bincode::serde::encode_into_writer(message, &mut size, CONFIG)
        .map_err(|e| format!("cannot encode verb: {e}"))?;
    Ok(size.bytes_written)
}

/// Decodes a verb message received from the network; never panics and never allocates more than
/// [`MAX_VERB_BYTES`], whatever the input.
pub fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, String> {
    let (value, used) = bincode::serde::decode_from_slice(bytes, CONFIG)
        .map_err(|e| format!("cannot decode verb: {e}"))?;
    if used != bytes.len() {
        return Err(format!(
            "cannot decode verb: {} trailing bytes",
            bytes.len() - used
        ));
    }
    Ok(value)
}

/// The digest of a read answer: equal answers have equal digests on every node and release
/// (the bincode layout of canonical [`PartitionData`] hashed with the stable FNV-1a 128).
pub fn digest_of(data: &Option<PartitionData>) -> [u8; 16] {
    match bincode::serde::encode_to_vec(data, bincode::config::standard()) {
        Ok(bytes) => crate::schema::digest::digest128(&bytes),
        // Encoding plain data into a Vec cannot fail; an all-zero digest would only force a
        // full read (a mismatch), never a wrong answer.
        Err(_) => [0; 16],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{Cell, CellKey, Deletion, RowUpdate};

    fn sample_mutation() -> Mutation {
        Mutation {
            table: uuid::Uuid::from_u128(7),
            partition: PartitionKey {
                token: -42,
                key: b"k".to_vec(),
            },
            partition_deletion: Some(Deletion {
                timestamp: 5,
                local_deletion_time: 6,
            }),
            range_deletions: vec![],
            rows: vec![RowUpdate {
                clustering: vec![1, 2],
                cells: vec![(
                    CellKey {
                        column: 3,
                        path: None,
                    },
                    Cell {
                        timestamp: 9,
                        ttl: 0,
                        local_deletion_time: 0,
                        value: Some(vec![0xab]),
                    },
                )],
                ..RowUpdate::default()
            }],
        }
    }

    #[test]
    fn shared_mutations_encode_as_a_plain_vector() {
        let mutations = vec![sample_mutation(), sample_mutation()];
        let encoded = encode(&VerbRequest::mutate(mutations.clone())).unwrap();
        // Variant 0 (one varint byte), then the vector exactly as `Vec<Mutation>` encodes.
        let mut expected = vec![0u8];
        expected.extend_from_slice(&encode(&mutations).unwrap());
        assert_eq!(&encoded[..], &expected[..]);
    }

    #[test]
    fn requests_round_trip() {
        let requests = vec![
            VerbRequest::mutate(vec![sample_mutation()]),
            VerbRequest::Read {
                table: uuid::Uuid::from_u128(1),
                partition: PartitionKey {
                    token: 1,
                    key: vec![0],
                },
                slice: Slice::all(),
                now: 100,
                digest: true,
            },
            VerbRequest::Scan {
                table: uuid::Uuid::from_u128(1),
                range: ScanRange {
                    after: None,
                    end_token: Some(7),
                },
                slice: Slice::all(),
                max_partitions: 10,
                now: 100,
            },
            VerbRequest::Truncate {
                table: uuid::Uuid::from_u128(2),
            },
            VerbRequest::BatchlogStore {
                id: uuid::Uuid::now_v1(&[1, 2, 3, 4, 5, 6]),
                mutations: vec![sample_mutation(), sample_mutation()],
                written_at: 1_700_000_000_000_000,
            },
            VerbRequest::BatchlogRemove {
                id: uuid::Uuid::from_u128(3),
            },
            VerbRequest::SchemaPull,
            VerbRequest::SchemaPush(Box::default()),
        ];
        for r in requests {
            let bytes = encode(&r).unwrap();
            assert_eq!(encoded_len(&r).unwrap(), bytes.len());
            assert_eq!(decode::<VerbRequest>(&bytes).unwrap(), r);
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode::<VerbRequest>(&[]).is_err());
        assert!(decode::<VerbRequest>(&[0xff; 64]).is_err());
        // A Mutate claiming a huge vector length.
        assert!(decode::<VerbRequest>(&[0, 0xfc, 0xff, 0xff, 0xff, 0x7f]).is_err());
        let mut ok = encode(&VerbRequest::Truncate {
            table: uuid::Uuid::nil(),
        })
        .unwrap()
        .to_vec();
        ok.push(0);
        assert!(decode::<VerbRequest>(&ok).unwrap_err().contains("trailing"));
    }

    #[test]
    fn digests_distinguish_answers() {
        assert_eq!(digest_of(&None), digest_of(&None));
        let a = Some(PartitionData {
            partition: PartitionKey {
                token: 1,
                key: vec![1],
            },
            partition_deletion: None,
            range_deletions: vec![],
            static_row: None,
            rows: vec![],
        });
        let mut b = a.clone();
        if let Some(b) = &mut b {
            b.partition_deletion = Some(Deletion {
                timestamp: 1,
                local_deletion_time: 1,
            });
        }
        assert_ne!(digest_of(&a), digest_of(&None));
        assert_ne!(digest_of(&a), digest_of(&b));
        assert_eq!(digest_of(&a), digest_of(&a.clone()));
    }

    #[test]
    fn repair_verbs_round_trip() {
        use ringdb_ring::{MerkleTree, Token, TokenRange};
        let requests = vec![
            VerbRequest::MerkleTree {
                table: uuid::Uuid::from_u128(1),
                start: -5,
                end: i64::MIN,
                depth: Some(3),
            },
            VerbRequest::MerkleTree {
                table: uuid::Uuid::from_u128(1),
                start: 0,
                end: 0,
                depth: None,
            },
            VerbRequest::RepairRead {
                table: uuid::Uuid::from_u128(2),
                range: ScanRange {
                    after: Some(PartitionKey {
                        token: 3,
                        key: vec![],
                    }),
                    end_token: Some(9),
                },
                max_partitions: 100,
                max_bytes: 1 << 20,
            },
        ];
        for r in requests {
            let bytes = encode(&r).unwrap();
            assert_eq!(decode::<VerbRequest>(&bytes).unwrap(), r);
        }
        let range = TokenRange::new(Token(-100), Token(100));
        let tree =
            MerkleTree::build(range, 4, [(Token(7), [1; 16]), (Token(-99), [2; 16])]).unwrap();
        let responses = vec![
            VerbResponse::MerkleTree(Box::new(tree)),
            VerbResponse::RepairPage {
                partitions: vec![],
                complete: true,
            },
        ];
        for r in responses {
            let bytes = encode(&r).unwrap();
            assert_eq!(decode::<VerbResponse>(&bytes).unwrap(), r);
        }
    }
}
