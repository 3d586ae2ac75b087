//! Cluster membership: who is in the cluster and how to reach them.
//!
//! This crate will hold the QUIC transport (quinn, mutual TLS with rustls), the sans-I/O
//! SYN/ACK/ACK2 gossip state machine, the phi-accrual failure detector and the membership task
//! (see `DESIGN.md`). It is empty until the membership work lands; a single ringdb node does
//! not need it.
