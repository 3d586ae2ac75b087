//! Cluster membership: who is in the cluster and how to reach them.
//!
//! - [`state`]: what gossip spreads — one versioned [`state::EndpointState`] per node.
//! - [`protocol`]: the SYN/ACK/ACK2 anti-entropy exchange as a sans-I/O state machine.
//! - [`detector`]: the phi-accrual failure detector.
//! - [`transport`]: one QUIC endpoint per node, mutual TLS, typed messages, bounded per-peer
//!   queues. The node's data verbs ride the same transport ([`transport::Channel::Verb`]).
//! - [`certs`]: the cluster CA and node certificates (`ringdb certs`).
//! - [`membership`]: the task that drives the protocol from the transport and a ticker and
//!   publishes membership to the rest of the node.

pub mod certs;
pub mod detector;
pub mod membership;
pub mod protocol;
pub mod state;
pub mod transport;
