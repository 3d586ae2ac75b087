//! Metrics, served in Prometheus format.
//!
//! Code records through the `metrics` crate's macros; [`install`] puts the Prometheus exporter
//! behind them with an HTTP listener serving `/metrics`. Without `install` (unit tests, the shell)
//! the macros are no-ops. The names are kept here in one place so that dashboards have one list
//! to read:
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `ringdb_cql_requests_total` | counter | `op` (query, prepare, execute, batch, options, startup, register) |
//! | `ringdb_cql_request_duration_seconds` | histogram | `op` |
//! | `ringdb_cql_errors_total` | counter | `code` (protocol error code, hex) |
//! | `ringdb_cql_connections` | gauge | — |
//! | `ringdb_cql_connections_total` | counter | — |
//! | `ringdb_cql_connections_rejected_total` | counter | — |
//! | `ringdb_cql_requests_overloaded_total` | counter | `limit` (node_requests: `native_transport_max_concurrent_requests`, node_bytes: `…_in_bytes`, connection_requests: `native_transport_max_requests_per_connection` with THROW_ON_OVERLOAD): requests answered Overloaded (0x1001) without being run |
//! | `ringdb_internode_requests_refused_total` | counter | — (requests to other nodes refused at once because `max_requests_in_flight` requests or `max_request_bytes_in_flight` bytes were already waiting for that node: the replica counts as not answering and gets a hint) |
//! | `ringdb_cql_bytes_received_total` | counter | — |
//! | `ringdb_cql_bytes_sent_total` | counter | — |
//! | `ringdb_storage_bytes` | gauge | — |
//! | `ringdb_gossip_nodes` | gauge | `state` (up, down): known nodes, this one included |
//! | `ringdb_gossip_messages_received_total` | counter | — |
//! | `ringdb_gossip_messages_sent_total` | counter | — |
//! | `ringdb_internode_bytes_sent_total` | counter | — |
//! | `ringdb_internode_bytes_received_total` | counter | — |
//! | `ringdb_internode_dropped_total` | counter | `reason` (queue_full, inbound_full, unsent, blocked) |
//! | `ringdb_internode_handshakes_refused_total` | counter | — |
//! | `ringdb_coordinator_requests_total` | counter | `op` (write, read: per partition; scan: per ring piece), `replica` (yes: this node is a replica of the partition, no, n/a) |
//! | `ringdb_coordinator_errors_total` | counter | `kind` (unavailable, write_timeout, write_failure, read_timeout, read_failure) |
//! | `ringdb_read_repairs_total` | counter | `phase` (mismatch: reads whose replicas disagreed, repaired: replicas written back) |
//! | `ringdb_repair_ranges_total` | counter | `outcome` (in_sync, repaired, failed): table ranges done by repair sessions this node coordinated |
//! | `ringdb_repair_partitions_streamed_total` | counter | — (merged partitions repair wrote to replicas whose copy differed) |
//! | `ringdb_repair_bytes_streamed_total` | counter | — (bytes of those writes) |
//! | `ringdb_replica_verbs_total` | counter | `verb` (mutate, read, digest, scan, truncate, batchlog_store, batchlog_remove, merkle_tree, repair_read, store_hint, mutate_forward, mutate_and_ack, forward_ack) received from other nodes |
//! | `ringdb_batchlog_replayed_total` | counter | — (logged batches this node replayed from its batchlog) |
//! | `ringdb_hints_stored_total` | counter | — (hints written for replicas that were down or did not answer) |
//! | `ringdb_hints_replayed_total` | counter | — (hints delivered to their target and deleted) |
//! | `ringdb_hints_dropped_total` | counter | `reason` (full, storage, corrupt, window: target down too long, disabled, expired: older than gc_grace_seconds, target_left) |
//! | `ringdb_hints_pending` | gauge | `target` (host id): hints this node holds for it |
//! | `ringdb_coordinator_forwarded_writes_total` | counter | — (writes sent to a remote datacenter through one of its nodes, which forwards to the others there) |
//! | `ringdb_streamed_partitions_total` | counter | `direction` (in: received while bootstrapping, out: sent while decommissioning, relay: copied between others by a removenode run here) |
//! | `ringdb_storage_failures_total` | counter | — (1 once the storage stopped on corruption or a failed write or flush; see `storage::failstop`) |

use std::net::SocketAddr;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

pub const REQUESTS: &str = "ringdb_cql_requests_total";
pub const REQUEST_DURATION: &str = "ringdb_cql_request_duration_seconds";
pub const ERRORS: &str = "ringdb_cql_errors_total";
pub const CONNECTIONS: &str = "ringdb_cql_connections";
pub const CONNECTIONS_TOTAL: &str = "ringdb_cql_connections_total";
pub const CONNECTIONS_REJECTED: &str = "ringdb_cql_connections_rejected_total";
pub const REQUESTS_OVERLOADED: &str = "ringdb_cql_requests_overloaded_total";
pub const INTERNODE_REQUESTS_REFUSED: &str = "ringdb_internode_requests_refused_total";
pub const AUTH_FAILURES: &str = "ringdb_cql_auth_failures_total";
pub const BYTES_RECEIVED: &str = "ringdb_cql_bytes_received_total";
pub const BYTES_SENT: &str = "ringdb_cql_bytes_sent_total";
pub const STORAGE_BYTES: &str = "ringdb_storage_bytes";
pub const GOSSIP_NODES: &str = "ringdb_gossip_nodes";
pub const GOSSIP_MESSAGES_RECEIVED: &str = "ringdb_gossip_messages_received_total";
pub const GOSSIP_MESSAGES_SENT: &str = "ringdb_gossip_messages_sent_total";
pub const INTERNODE_BYTES_SENT: &str = "ringdb_internode_bytes_sent_total";
pub const INTERNODE_BYTES_RECEIVED: &str = "ringdb_internode_bytes_received_total";
pub const INTERNODE_DROPPED: &str = "ringdb_internode_dropped_total";
pub const INTERNODE_HANDSHAKES_REFUSED: &str = "ringdb_internode_handshakes_refused_total";
pub const COORDINATOR_REQUESTS: &str = "ringdb_coordinator_requests_total";
pub const COORDINATOR_ERRORS: &str = "ringdb_coordinator_errors_total";
pub const READ_REPAIRS: &str = "ringdb_read_repairs_total";
pub const REPAIR_RANGES: &str = "ringdb_repair_ranges_total";
pub const REPAIR_PARTITIONS_STREAMED: &str = "ringdb_repair_partitions_streamed_total";
pub const REPAIR_BYTES_STREAMED: &str = "ringdb_repair_bytes_streamed_total";
pub const REPLICA_VERBS: &str = "ringdb_replica_verbs_total";
pub const BATCHLOG_REPLAYED: &str = "ringdb_batchlog_replayed_total";
pub const HINTS_STORED: &str = "ringdb_hints_stored_total";
pub const HINTS_REPLAYED: &str = "ringdb_hints_replayed_total";
pub const HINTS_DROPPED: &str = "ringdb_hints_dropped_total";
pub const HINTS_PENDING: &str = "ringdb_hints_pending";
pub const FORWARDED_WRITES: &str = "ringdb_coordinator_forwarded_writes_total";
pub const STREAMED_PARTITIONS: &str = "ringdb_streamed_partitions_total";
pub const STORAGE_FAILURES: &str = "ringdb_storage_failures_total";

/// Latency buckets, seconds: 50 µs to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

/// Installs the global recorder and starts the HTTP listener on `addr`. Must run inside a tokio
/// runtime. Fails if the port cannot be bound or a recorder is already installed.
pub fn install(addr: SocketAddr) -> anyhow::Result<()> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(Matcher::Full(REQUEST_DURATION.to_string()), LATENCY_BUCKETS)?
        .upkeep_timeout(Duration::from_secs(5))
        .install()?;
    describe();
    Ok(())
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(REQUESTS, "CQL requests received, by operation");
    describe_histogram!(
        REQUEST_DURATION,
        Unit::Seconds,
        "CQL request latency, by operation"
    );
    describe_counter!(ERRORS, "CQL error responses sent, by protocol error code");
    describe_gauge!(CONNECTIONS, "Open CQL client connections");
    describe_counter!(CONNECTIONS_TOTAL, "CQL client connections accepted");
    describe_counter!(
        CONNECTIONS_REJECTED,
        "CQL client connections refused (limit reached)"
    );
    describe_counter!(
        REQUESTS_OVERLOADED,
        "CQL requests answered Overloaded without being run, by the limit they were past"
    );
    describe_counter!(
        INTERNODE_REQUESTS_REFUSED,
        "Requests to other nodes refused at once: too many requests or bytes already in flight to that node"
    );
    describe_counter!(
        AUTH_FAILURES,
        "Failed CQL logins (wrong password, unknown role, locked-out address)"
    );
    describe_counter!(BYTES_RECEIVED, Unit::Bytes, "Bytes read from CQL clients");
    describe_counter!(BYTES_SENT, Unit::Bytes, "Bytes written to CQL clients");
    describe_gauge!(
        STORAGE_BYTES,
        Unit::Bytes,
        "Bytes the storage engine uses on disk"
    );
    describe_gauge!(GOSSIP_NODES, "Known nodes by liveness, this one included");
    describe_counter!(GOSSIP_MESSAGES_RECEIVED, "Gossip messages received");
    describe_counter!(GOSSIP_MESSAGES_SENT, "Gossip messages sent");
    describe_counter!(
        INTERNODE_BYTES_SENT,
        Unit::Bytes,
        "Bytes sent to other nodes"
    );
    describe_counter!(
        INTERNODE_BYTES_RECEIVED,
        Unit::Bytes,
        "Bytes received from other nodes"
    );
    describe_counter!(INTERNODE_DROPPED, "Internode messages dropped, by reason");
    describe_counter!(
        INTERNODE_HANDSHAKES_REFUSED,
        "Internode connections refused (certificate not from the cluster CA, or none)"
    );
    describe_counter!(
        COORDINATOR_REQUESTS,
        "Requests this node coordinated, by operation and whether it is a replica of the key"
    );
    describe_counter!(
        COORDINATOR_ERRORS,
        "Coordinated requests that failed, by kind"
    );
    // Exported from the start (at zero), so that a scrape before the first request already
    // shows them and rates need no special case.
    for op in ["write", "read"] {
        for replica in ["yes", "no"] {
            metrics::counter!(COORDINATOR_REQUESTS, "op" => op, "replica" => replica).absolute(0);
        }
    }
    describe_counter!(
        READ_REPAIRS,
        "Read repair: mismatched reads and replicas repaired"
    );
    describe_counter!(
        REPAIR_RANGES,
        "Table ranges done by repair sessions this node coordinated, by outcome"
    );
    for outcome in ["in_sync", "repaired", "failed"] {
        metrics::counter!(REPAIR_RANGES, "outcome" => outcome).absolute(0);
    }
    describe_counter!(
        REPAIR_PARTITIONS_STREAMED,
        "Merged partitions repair wrote to replicas whose copy differed"
    );
    metrics::counter!(REPAIR_PARTITIONS_STREAMED).absolute(0);
    describe_counter!(
        REPAIR_BYTES_STREAMED,
        Unit::Bytes,
        "Bytes of the partitions repair wrote to replicas whose copy differed"
    );
    metrics::counter!(REPAIR_BYTES_STREAMED).absolute(0);
    describe_counter!(
        REPLICA_VERBS,
        "Data verbs received from other nodes, by verb"
    );
    describe_counter!(
        BATCHLOG_REPLAYED,
        "Logged batches replayed from this node's batchlog (their coordinator did not finish them)"
    );
    metrics::counter!(BATCHLOG_REPLAYED).absolute(0);
    describe_counter!(
        HINTS_STORED,
        "Hints written for replicas that were down or did not answer a write in time"
    );
    metrics::counter!(HINTS_STORED).absolute(0);
    describe_counter!(
        HINTS_REPLAYED,
        "Hints delivered to their target and deleted"
    );
    metrics::counter!(HINTS_REPLAYED).absolute(0);
    describe_counter!(
        HINTS_DROPPED,
        "Hints not written or deleted unreplayed, by reason"
    );
    describe_gauge!(HINTS_PENDING, "Hints this node holds, by target host id");
    describe_counter!(
        FORWARDED_WRITES,
        "Writes this coordinator sent to a remote datacenter through one of its nodes"
    );
    describe_counter!(
        STREAMED_PARTITIONS,
        "Partitions streamed while joining (in), leaving (out) or removing a dead node (relay)"
    );
}
