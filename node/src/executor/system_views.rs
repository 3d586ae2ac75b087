//! Rows of the system tables, computed on read.
//!
//! `system.local` describes this node (exactly one row), `system.peers` and `system.peers_v2` the
//! other nodes (from the peers snapshot the server supplies; empty on a single node), and
//! `system_schema.*` the current schema snapshot — the system keyspaces included, so that drivers
//! and cqlsh find every table they query in their metadata. Rows are produced in memory and then
//! go through the same WHERE, selection, LIMIT and paging logic as stored rows (paging by
//! offset).

use ringdb_cql::types::{CqlType, CqlValue};

use super::error::ExecError;
use super::keys;
use super::rows::{CellView, LogicalRow};
use super::{EndpointStatus, LocalNodeInfo, PeerInfo};
use crate::schema::{ColumnKind, Schema, TableDef};

/// What the system views are computed from.
pub(crate) struct ViewSource<'a> {
    pub schema: &'a Schema,
    pub node: &'a LocalNodeInfo,
    pub peers: &'a [PeerInfo],
    pub endpoints: &'a [EndpointStatus],
    pub gossip_generation: i32,
}

fn text(s: &str) -> CqlValue {
    CqlValue::Text(s.to_string())
}

fn text_map(entries: &[(String, String)]) -> CqlValue {
    let mut e: Vec<(CqlValue, CqlValue)> =
        entries.iter().map(|(k, v)| (text(k), text(v))).collect();
    e.sort_by(|a, b| ringdb_cql::types::compare(&a.0, &b.0));
    CqlValue::Map(e)
}

fn tokens(tokens: &[i64]) -> CqlValue {
    let mut t: Vec<String> = tokens.iter().map(|t| t.to_string()).collect();
    t.sort();
    t.dedup();
    CqlValue::Set(t.into_iter().map(CqlValue::Text).collect())
}

fn uuid(u: &uuid::Uuid) -> CqlValue {
    CqlValue::Uuid(*u.as_bytes())
}

/// Builds a logical row of `table` from named values (missing columns are null).
fn row(table: &TableDef, values: Vec<(&str, Option<CqlValue>)>) -> Result<LogicalRow, ExecError> {
    let mut cells = vec![None; table.columns.len()];
    for (name, v) in values {
        if let (Some(idx), Some(v)) = (table.column_index(name), v) {
            cells[idx] = Some(CellView {
                value: v.serialize(),
                timestamp: 0,
                ttl: 0,
                expires_at: 0,
            });
        }
    }
    let pk: Vec<Vec<u8>> = table
        .partition_key()
        .iter()
        .map(|c| {
            table
                .column_index(&c.name)
                .and_then(|i| cells[i].as_ref())
                .map(|c| c.value.clone())
                .unwrap_or_default()
        })
        .collect();
    let token = keys::partition_key_from_serialized(&pk)
        .map(|p| p.token)
        .unwrap_or(0);
    Ok(LogicalRow { token, cells })
}

fn type_text(ty: &CqlType) -> String {
    ty.to_string()
}

/// The local node's row when gossip does not supply one (a node without membership).
fn local_endpoint_status(src: &ViewSource<'_>) -> EndpointStatus {
    let node = src.node;
    EndpointStatus {
        peer: node.listen_address,
        storage_port: node.listen_port,
        host_id: Some(node.host_id),
        dc: Some(node.dc.clone()),
        rack: Some(node.rack.clone()),
        status: "NORMAL".to_string(),
        up: true,
        load: None,
        tokens: node.tokens.clone(),
        generation: i64::from(src.gossip_generation),
        heartbeat: 0,
        schema_version: Some(src.schema.version()),
        native_address: Some(std::net::SocketAddr::new(node.rpc_address, node.rpc_port)),
        release_version: Some(node.release_version.clone()),
        local: true,
        pending_hints: 0,
    }
}

/// This node's tokens: as gossip publishes them once the node has joined (a node choosing its
/// tokens at first start has none yet), else as configured at start.
fn local_tokens<'a>(src: &'a ViewSource<'_>) -> &'a [i64] {
    src.endpoints
        .iter()
        .find(|e| e.local)
        .map(|e| e.tokens.as_slice())
        .unwrap_or(&src.node.tokens)
}

/// The rows of a system table, in key order.
pub(crate) fn rows(table: &TableDef, src: &ViewSource<'_>) -> Result<Vec<LogicalRow>, ExecError> {
    let node = src.node;
    match (table.keyspace.as_str(), table.name.as_str()) {
        ("system", "local") => Ok(vec![row(
            table,
            vec![
                ("key", Some(text("local"))),
                ("bootstrapped", Some(text("COMPLETED"))),
                (
                    "broadcast_address",
                    Some(CqlValue::Inet(node.listen_address)),
                ),
                (
                    "broadcast_port",
                    Some(CqlValue::Int(node.listen_port as i32)),
                ),
                ("cluster_name", Some(text(&node.cluster_name))),
                ("cql_version", Some(text(super::CQL_VERSION))),
                ("data_center", Some(text(&node.dc))),
                (
                    "gossip_generation",
                    Some(CqlValue::Int(src.gossip_generation)),
                ),
                ("host_id", Some(uuid(&node.host_id))),
                ("listen_address", Some(CqlValue::Inet(node.listen_address))),
                ("listen_port", Some(CqlValue::Int(node.listen_port as i32))),
                ("native_protocol_version", Some(text("4"))),
                ("partitioner", Some(text(&node.partitioner))),
                ("rack", Some(text(&node.rack))),
                ("release_version", Some(text(&node.release_version))),
                ("rpc_address", Some(CqlValue::Inet(node.rpc_address))),
                ("rpc_port", Some(CqlValue::Int(node.rpc_port as i32))),
                ("schema_version", Some(uuid(&src.schema.version()))),
                ("tokens", Some(tokens(local_tokens(src)))),
            ],
        )?]),
        ("system", "peers") => src
            .peers
            .iter()
            .map(|p| {
                row(
                    table,
                    vec![
                        ("peer", Some(CqlValue::Inet(p.peer))),
                        ("data_center", Some(text(&p.dc))),
                        ("host_id", Some(uuid(&p.host_id))),
                        ("rack", Some(text(&p.rack))),
                        ("release_version", Some(text(&p.release_version))),
                        ("rpc_address", Some(CqlValue::Inet(p.rpc_address))),
                        ("schema_version", p.schema_version.as_ref().map(uuid)),
                        ("tokens", Some(tokens(&p.tokens))),
                    ],
                )
            })
            .collect(),
        ("system", "peers_v2") => src
            .peers
            .iter()
            .map(|p| {
                row(
                    table,
                    vec![
                        ("peer", Some(CqlValue::Inet(p.peer))),
                        ("peer_port", Some(CqlValue::Int(p.peer_port as i32))),
                        ("data_center", Some(text(&p.dc))),
                        ("host_id", Some(uuid(&p.host_id))),
                        ("native_address", Some(CqlValue::Inet(p.rpc_address))),
                        ("native_port", Some(CqlValue::Int(p.rpc_port as i32))),
                        ("rack", Some(text(&p.rack))),
                        ("release_version", Some(text(&p.release_version))),
                        ("schema_version", p.schema_version.as_ref().map(uuid)),
                        ("tokens", Some(tokens(&p.tokens))),
                    ],
                )
            })
            .collect(),
        ("system_views", "cluster_status") => {
            let mut endpoints: Vec<EndpointStatus> = src.endpoints.to_vec();
            if !endpoints.iter().any(|e| e.local) {
                endpoints.push(local_endpoint_status(src));
            }
            endpoints.sort_by_key(|e| (e.peer, e.storage_port));
            endpoints
                .iter()
                .map(|e| {
                    row(
                        table,
                        vec![
                            ("peer", Some(CqlValue::Inet(e.peer))),
                            ("storage_port", Some(CqlValue::Int(e.storage_port as i32))),
                            ("host_id", e.host_id.as_ref().map(uuid)),
                            ("data_center", e.dc.as_deref().map(text)),
                            ("rack", e.rack.as_deref().map(text)),
                            ("status", Some(text(&e.status))),
                            ("up", Some(CqlValue::Boolean(e.up))),
                            ("load", e.load.map(CqlValue::BigInt)),
                            ("tokens", Some(tokens(&e.tokens))),
                            ("generation", Some(CqlValue::BigInt(e.generation))),
                            ("heartbeat", Some(CqlValue::BigInt(e.heartbeat))),
                            ("schema_version", e.schema_version.as_ref().map(uuid)),
                            (
                                "native_address",
                                e.native_address.map(|a| CqlValue::Inet(a.ip())),
                            ),
                            (
                                "native_port",
                                e.native_address.map(|a| CqlValue::Int(a.port() as i32)),
                            ),
                            ("release_version", e.release_version.as_deref().map(text)),
                            ("local", Some(CqlValue::Boolean(e.local))),
                            ("pending_hints", Some(CqlValue::BigInt(e.pending_hints))),
                        ],
                    )
                })
                .collect()
        }
        ("system_schema", "keyspaces") => src
            .schema
            .keyspaces()
            .map(|ks| {
                row(
                    table,
                    vec![
                        ("keyspace_name", Some(text(&ks.name))),
                        ("durable_writes", Some(CqlValue::Boolean(ks.durable_writes))),
                        ("replication", Some(text_map(&ks.replication))),
                    ],
                )
            })
            .collect(),
        ("system_schema", "tables") => {
            let mut out = Vec::new();
            for ks in src.schema.keyspaces() {
                for t in src.schema.tables(&ks.name) {
                    let o = &t.options;
                    out.push(row(
                        table,
                        vec![
                            ("keyspace_name", Some(text(&t.keyspace))),
                            ("table_name", Some(text(&t.name))),
                            (
                                "additional_write_policy",
                                Some(text(&o.additional_write_policy)),
                            ),
                            (
                                "bloom_filter_fp_chance",
                                Some(CqlValue::Double(o.bloom_filter_fp_chance)),
                            ),
                            ("caching", Some(text_map(&o.caching))),
                            ("cdc", Some(CqlValue::Boolean(o.cdc))),
                            ("comment", Some(text(&o.comment))),
                            ("compaction", Some(text_map(&o.compaction))),
                            ("compression", Some(text_map(&o.compression))),
                            (
                                "crc_check_chance",
                                Some(CqlValue::Double(o.crc_check_chance)),
                            ),
                            ("dclocal_read_repair_chance", Some(CqlValue::Double(0.0))),
                            (
                                "default_time_to_live",
                                Some(CqlValue::Int(o.default_time_to_live)),
                            ),
                            (
                                "extensions",
                                Some(CqlValue::Map(
                                    o.extensions
                                        .iter()
                                        .map(|(k, v)| (text(k), CqlValue::Blob(v.clone())))
                                        .collect(),
                                )),
                            ),
                            ("flags", Some(CqlValue::Set(vec![text("compound")]))),
                            ("gc_grace_seconds", Some(CqlValue::Int(o.gc_grace_seconds))),
                            ("id", Some(uuid(&t.id))),
                            (
                                "max_index_interval",
                                Some(CqlValue::Int(o.max_index_interval)),
                            ),
                            (
                                "memtable_flush_period_in_ms",
                                Some(CqlValue::Int(o.memtable_flush_period_in_ms)),
                            ),
                            (
                                "min_index_interval",
                                Some(CqlValue::Int(o.min_index_interval)),
                            ),
                            ("read_repair", Some(text(&o.read_repair))),
                            ("read_repair_chance", Some(CqlValue::Double(0.0))),
                            ("speculative_retry", Some(text(&o.speculative_retry))),
                        ],
                    )?);
                }
            }
            Ok(out)
        }
        ("system_schema", "columns") => {
            let mut out = Vec::new();
            for ks in src.schema.keyspaces() {
                for t in src.schema.tables(&ks.name) {
                    let mut cols: Vec<_> = t.columns.iter().collect();
                    cols.sort_by(|a, b| a.name.cmp(&b.name));
                    for c in cols {
                        let (order, position) = match c.kind {
                            ColumnKind::PartitionKey(p) => ("none", p as i32),
                            ColumnKind::Clustering(p, crate::schema::ClusteringOrder::Asc) => {
                                ("asc", p as i32)
                            }
                            ColumnKind::Clustering(p, crate::schema::ClusteringOrder::Desc) => {
                                ("desc", p as i32)
                            }
                            ColumnKind::Regular | ColumnKind::Static => ("none", -1),
                        };
                        out.push(row(
                            table,
                            vec![
                                ("keyspace_name", Some(text(&t.keyspace))),
                                ("table_name", Some(text(&t.name))),
                                ("column_name", Some(text(&c.name))),
                                ("clustering_order", Some(text(order))),
                                (
                                    "column_name_bytes",
                                    Some(CqlValue::Blob(c.name.as_bytes().to_vec())),
                                ),
                                ("kind", Some(text(c.kind.schema_name()))),
                                ("position", Some(CqlValue::Int(position))),
                                ("type", Some(text(&type_text(&c.ty)))),
                            ],
                        )?);
                    }
                }
            }
            Ok(out)
        }
        ("system_schema", "dropped_columns") => {
            let mut out = Vec::new();
            for ks in src.schema.keyspaces() {
                for t in src.schema.tables(&ks.name) {
                    let mut dropped: Vec<_> = t.dropped_columns.iter().collect();
                    dropped.sort_by(|a, b| a.name.cmp(&b.name));
                    for d in dropped {
                        out.push(row(
                            table,
                            vec![
                                ("keyspace_name", Some(text(&t.keyspace))),
                                ("table_name", Some(text(&t.name))),
                                ("column_name", Some(text(&d.name))),
                                (
                                    "dropped_time",
                                    Some(CqlValue::Timestamp(d.dropped_at.div_euclid(1000))),
                                ),
                                ("kind", Some(text(d.kind.schema_name()))),
                                ("type", Some(text(&type_text(&d.ty)))),
                            ],
                        )?);
                    }
                }
            }
            Ok(out)
        }
        // Every other system table is empty: no types, functions, aggregates, triggers,
        // indexes, views, roles, repair history or traces.
        _ => Ok(Vec::new()),
    }
}
