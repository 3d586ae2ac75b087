//! The ringdb daemon.
//!
//! - [`config`]: the node's configuration (YAML file, `RINGDB_*` environment, `--set`).
//! - [`storage`]: the storage engine interface, sled and in-memory engines.
//! - [`commitlog`]: when a write counts as durable (`commitlog_sync: batch | periodic`).
//! - [`clock`]: the hybrid logical clock that stamps writes.
//! - [`schema`]: keyspaces and tables, persisted, versioned.
//! - [`executor`]: runs CQL-lite statements against the data path; system tables; DESCRIBE.
//! - [`coordinator`]: the cluster data path: replicas, consistency levels, read repair, scans.
//! - [`replica`]: what a node does with the verbs coordinators send it.
//! - [`verbs`]: the internode data and schema messages.
//! - [`schema_link`]: schema synchronization wired to gossip and the transport.
//! - [`cql_server`]: the native protocol v4 listener.
//! - [`join`]: a joining node chooses balanced tokens, one joiner at a time through gossip.
//! - [`membership`]: internode transport and gossip started for the node; peers and client events.
//! - [`metrics`]: Prometheus metrics.
//! - [`server`]: wires a node together and runs it until shutdown.
//! - [`cluster`]: the local cluster manager behind `ringdb cluster` and the end-to-end tests.
//! - [`chaos`]: `ringdb chaos`, fault injection against a local cluster with a checker.
//! - [`status`]: `ringdb status`, the cluster as one node sees it.
//! - [`repair`]: anti-entropy repair with Merkle trees (`ringdb repair`).
//! - [`admin`]: the admin HTTP API the operator tools talk to.
//! - [`cert_reload`]: replacing the node's certificates without a restart (`ringdb reload-certs`,
//!   SIGHUP).
//! - [`bench`]: `ringdb bench`, the load generator, and the null server it is measured against.

pub mod admin;
pub mod admission;
pub mod auth;
pub mod bench;
pub mod cert_reload;
pub mod chaos;
pub mod client_tls;
pub mod clock;
pub mod cluster;
pub mod commitlog;
pub mod config;
pub mod coordinator;
pub mod cql_server;
pub mod decommission;
pub mod demo;
pub mod executor;
pub mod faults;
pub mod hints;
pub mod join;
pub mod login;
pub mod membership;
pub mod metrics;
pub(crate) mod pace;
pub mod purge;
pub mod removenode;
pub mod repair;
pub mod replica;
pub mod schema;
pub mod schema_link;
pub mod server;
pub mod status;
pub mod storage;
pub mod verbs;
