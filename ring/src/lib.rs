//! Placement math for ringdb: where data lives and how many copies a request needs.
//!
//! This crate is pure: no I/O, no async, no clock, and no dependency but `serde` (Merkle trees
//! travel between nodes). Everything it computes is a function of its inputs, so the node, the
//! simulator and the tests all get the same answers.
//!
//! The layers, each in its own module:
//!
//! * [`token`] and [`murmur3`]: a partition key hashes to a [`Token`] on a ring of `i64` values,
//!   bit-compatible with Cassandra's `Murmur3Partitioner` so that drivers' token-aware routing
//!   sends each request straight to a replica.
//! * [`topology`]: the endpoints (host id, address, datacenter, rack, tokens) and the
//!   [`TokenRing`] snapshot built from them: which vnode owns which range.
//! * [`strategy`] and [`replication`]: a keyspace's replication options parsed into a
//!   [`Replication`], whose strategy (`SimpleStrategy`, `NetworkTopologyStrategy`) walks the ring
//!   to pick replicas; a [`ReplicaMap`] precomputes them per range for `O(log n)` lookups.
//! * [`allocation`]: tokens for a joining node that keep replicated ownership balanced (drawing
//!   offsets from the deterministic [`rng`]).
//! * [`consistency`]: what a [`ConsistencyLevel`] requires, the `Unavailable` check before a
//!   request, and a sans-I/O [`QuorumTracker`] that counts answers after it.
//! * [`merkle`]: Merkle trees over a token range, built from partition digests, whose diff
//!   tells anti-entropy repair which sub-ranges replicas disagree on.
//!
//! A typical read of the placement for one request:
//!
//! ```
//! use ringdb_ring::*;
//! use std::net::SocketAddr;
//!
//! let mut topology = Topology::new();
//! for (i, token) in [-6_000_000_000_000_000_000i64, 0, 6_000_000_000_000_000_000].into_iter().enumerate() {
//!     topology.insert(Endpoint {
//!         host_id: HostId::from_u128(i as u128 + 1),
//!         addr: SocketAddr::from(([127, 0, 0, i as u8 + 1], 7000)),
//!         dc: "dc1".into(),
//!         rack: "rack1".into(),
//!         tokens: vec![Token(token)],
//!     }).unwrap();
//! }
//! let ring = TokenRing::new(topology);
//! let replication = Replication::from_options(
//!     [("class", "SimpleStrategy"), ("replication_factor", "2")],
//!     ring.datacenters(),
//! ).unwrap();
//! let replicas = ReplicaMap::new(&ring, &replication);
//!
//! let token = murmur3::token_for_key(&1i32.to_be_bytes());
//! assert_eq!(token, Token(-4069959284402364209));
//! let owners = replicas.replicas(token);
//! assert_eq!(owners, &[HostId::from_u128(2), HostId::from_u128(3)]);
//!
//! let requirement = Requirement::new(ConsistencyLevel::Quorum, &replication, "dc1");
//! assert_eq!(requirement.block_for(), 2);
//! assert!(requirement.check_live(["dc1"]).is_err());
//! ```

#![warn(missing_docs)]

pub mod allocation;
pub mod consistency;
pub mod merkle;
pub mod murmur3;
pub mod replication;
pub mod rng;
pub mod strategy;
pub mod token;
pub mod topology;

pub use allocation::{allocate_tokens, random_tokens, AllocationError, JoiningNode};
pub use consistency::{
    assure_sufficient_live, block_for, ConsistencyLevel, Progress, QuorumTracker, Requirement,
    Unavailable,
};
pub use merkle::{MerkleError, MerkleTree, MerkleTreeBuilder};
pub use replication::{Replication, ReplicationError};
pub use strategy::{NetworkTopologyStrategy, ReplicaMap, ReplicationStrategy, SimpleStrategy};
pub use token::{Token, TokenRange};
pub use topology::{Endpoint, HostId, TokenRing, Topology};
