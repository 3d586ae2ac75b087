//! Definitions of the system keyspaces and their tables.
//!
//! Drivers and cqlsh read `system.local`, `system.peers(_v2)` and `system_schema.*` on connect and
//! after every DDL, and cqlsh only prints a SELECT's result if the table is in the driver's
//! metadata — so every system table must itself be described in `system_schema`. The tables are
//! virtual: their rows are computed from the node's state and the schema when read (by the
//! executor); here they only get definitions with Cassandra 4's column names and types.
//! Their ids are name-based, identical on every node.

use ringdb_cql::types::CqlType;

use super::{digest, ClusteringOrder, ColumnDef, ColumnKind, KeyspaceDef, TableDef, TableOptions};

fn frozen(t: CqlType) -> CqlType {
    CqlType::Frozen(Box::new(t))
}

fn map_text_text() -> CqlType {
    frozen(CqlType::Map(
        Box::new(CqlType::Text),
        Box::new(CqlType::Text),
    ))
}

fn list_text() -> CqlType {
    frozen(CqlType::List(Box::new(CqlType::Text)))
}

/// Builds a system table definition: partition key columns, clustering columns (ascending),
/// then regular columns.
fn table(
    keyspace: &str,
    name: &str,
    comment: &str,
    pk: &[(&str, CqlType)],
    ck: &[(&str, CqlType)],
    regular: &[(&str, CqlType)],
) -> TableDef {
    let mut columns = Vec::new();
    let mut id = 0u32;
    for (i, (n, t)) in pk.iter().enumerate() {
        columns.push(ColumnDef {
            id,
            name: n.to_string(),
            ty: t.clone(),
            kind: ColumnKind::PartitionKey(i as u16),
        });
        id += 1;
    }
    for (i, (n, t)) in ck.iter().enumerate() {
        columns.push(ColumnDef {
            id,
            name: n.to_string(),
            ty: t.clone(),
            kind: ColumnKind::Clustering(i as u16, ClusteringOrder::Asc),
        });
        id += 1;
    }
    for (n, t) in regular {
        columns.push(ColumnDef {
            id,
            name: n.to_string(),
            ty: t.clone(),
            kind: ColumnKind::Regular,
        });
        id += 1;
    }
    TableDef {
        id: digest::name_uuid(format!("{keyspace}.{name}").as_bytes()),
        keyspace: keyspace.to_string(),
        name: name.to_string(),
        columns,
        next_column_id: id,
        options: TableOptions {
            comment: comment.to_string(),
            gc_grace_seconds: 0,
            ..TableOptions::default()
        },
        dropped_columns: Vec::new(),
        timestamp: 0,
        is_virtual: true,
    }
}

fn keyspace(name: &str, replication: Vec<(String, String)>, durable_writes: bool) -> KeyspaceDef {
    KeyspaceDef {
        name: name.to_string(),
        replication,
        durable_writes,
        timestamp: 0,
    }
}

fn local_strategy() -> Vec<(String, String)> {
    vec![("class".into(), super::replication::LOCAL_STRATEGY.into())]
}

fn simple(rf: u32) -> Vec<(String, String)> {
    vec![
        ("class".into(), super::replication::SIMPLE_STRATEGY.into()),
        ("replication_factor".into(), rf.to_string()),
    ]
}

/// Options columns shared by `system_schema.tables` and `system_schema.views`.
fn table_option_columns() -> Vec<(&'static str, CqlType)> {
    use CqlType::*;
    vec![
        ("additional_write_policy", Text),
        ("bloom_filter_fp_chance", Double),
        ("caching", map_text_text()),
        ("cdc", Boolean),
        ("comment", Text),
        ("compaction", map_text_text()),
        ("compression", map_text_text()),
        ("crc_check_chance", Double),
        ("dclocal_read_repair_chance", Double),
        ("default_time_to_live", Int),
        ("extensions", frozen(Map(Box::new(Text), Box::new(Blob)))),
        ("gc_grace_seconds", Int),
        ("id", Uuid),
        ("max_index_interval", Int),
        ("memtable_flush_period_in_ms", Int),
        ("min_index_interval", Int),
        ("read_repair", Text),
        ("read_repair_chance", Double),
        ("speculative_retry", Text),
    ]
}

/// The `system` keyspace's tables.
fn system_tables() -> Vec<TableDef> {
    use CqlType::*;
    let tokens = Set(Box::new(Text));
    vec![
        table(
            "system",
            "local",
            "information about the local node",
            &[("key", Text)],
            &[],
            &[
                ("bootstrapped", Text),
                ("broadcast_address", Inet),
                ("broadcast_port", Int),
                ("cluster_name", Text),
                ("cql_version", Text),
                ("data_center", Text),
                ("gossip_generation", Int),
                ("host_id", Uuid),
                ("listen_address", Inet),
                ("listen_port", Int),
                ("native_protocol_version", Text),
                ("partitioner", Text),
                ("rack", Text),
                ("release_version", Text),
                ("rpc_address", Inet),
                ("rpc_port", Int),
                ("schema_version", Uuid),
                ("tokens", tokens.clone()),
                ("truncated_at", Map(Box::new(Uuid), Box::new(Blob))),
            ],
        ),
        table(
            "system",
            "peers",
            "information about known peers in the cluster",
            &[("peer", Inet)],
            &[],
            &[
                ("data_center", Text),
                ("host_id", Uuid),
                ("preferred_ip", Inet),
                ("rack", Text),
                ("release_version", Text),
                ("rpc_address", Inet),
                ("schema_version", Uuid),
                ("tokens", tokens.clone()),
            ],
        ),
        table(
            "system",
            "peers_v2",
            "information about known peers in the cluster",
            &[("peer", Inet)],
            &[("peer_port", Int)],
            &[
                ("data_center", Text),
                ("host_id", Uuid),
                ("native_address", Inet),
                ("native_port", Int),
                ("preferred_ip", Inet),
                ("preferred_port", Int),
                ("rack", Text),
                ("release_version", Text),
                ("schema_version", Uuid),
                ("tokens", tokens),
            ],
        ),
    ]
}

/// The `system_schema` keyspace's tables (Cassandra 4.0 layout).
fn system_schema_tables() -> Vec<TableDef> {
    use CqlType::*;
    let ks = "system_schema";
    let mut tables_regular = table_option_columns();
    tables_regular.push(("flags", frozen(Set(Box::new(Text)))));
    let mut views_regular = table_option_columns();
    views_regular.extend([
        ("base_table_id", Uuid),
        ("base_table_name", Text),
        ("include_all_columns", Boolean),
        ("where_clause", Text),
    ]);
    vec![
        table(
            ks,
            "keyspaces",
            "keyspace definitions",
            &[("keyspace_name", Text)],
            &[],
            &[
                ("durable_writes", Boolean),
                ("replication", map_text_text()),
            ],
        ),
        table(
            ks,
            "tables",
            "table definitions",
            &[("keyspace_name", Text)],
            &[("table_name", Text)],
            &tables_regular,
        ),
        table(
            ks,
            "columns",
            "column definitions",
            &[("keyspace_name", Text)],
            &[("table_name", Text), ("column_name", Text)],
            &[
                ("clustering_order", Text),
                ("column_name_bytes", Blob),
                ("kind", Text),
                ("position", Int),
                ("type", Text),
            ],
        ),
        table(
            ks,
            "dropped_columns",
            "dropped column registry",
            &[("keyspace_name", Text)],
            &[("table_name", Text), ("column_name", Text)],
            &[("dropped_time", Timestamp), ("kind", Text), ("type", Text)],
        ),
        table(
            ks,
            "triggers",
            "trigger definitions",
            &[("keyspace_name", Text)],
            &[("table_name", Text), ("trigger_name", Text)],
            &[("options", map_text_text())],
        ),
        table(
            ks,
            "views",
            "view definitions",
            &[("keyspace_name", Text)],
            &[("view_name", Text)],
            &views_regular,
        ),
        table(
            ks,
            "types",
            "user defined type definitions",
            &[("keyspace_name", Text)],
            &[("type_name", Text)],
            &[("field_names", list_text()), ("field_types", list_text())],
        ),
        table(
            ks,
            "functions",
            "user defined function definitions",
            &[("keyspace_name", Text)],
            &[("function_name", Text), ("argument_types", list_text())],
            &[
                ("argument_names", list_text()),
                ("body", Text),
                ("called_on_null_input", Boolean),
                ("language", Text),
                ("return_type", Text),
            ],
        ),
        table(
            ks,
            "aggregates",
            "user defined aggregate definitions",
            &[("keyspace_name", Text)],
            &[("aggregate_name", Text), ("argument_types", list_text())],
            &[
                ("final_func", Text),
                ("initcond", Text),
                ("return_type", Text),
                ("state_func", Text),
                ("state_type", Text),
            ],
        ),
        table(
            ks,
            "indexes",
            "secondary index definitions",
            &[("keyspace_name", Text)],
            &[("table_name", Text), ("index_name", Text)],
            &[("kind", Text), ("options", map_text_text())],
        ),
    ]
}

/// Replication factor of `system_auth` (SimpleStrategy): every node of a cluster of up to three
/// holds every role, so that logins work with nodes down; roles are few and small.
pub const AUTH_REPLICATION_FACTOR: u32 = 3;

/// `roles` and `role_permissions` are real, replicated tables (authentication reads and writes
/// them, see `crate::auth`); the other tables are there for tools that look for them.
fn system_auth_tables() -> Vec<TableDef> {
    let mut tables = system_auth_table_defs();
    for t in &mut tables {
        if t.name == "roles" || t.name == "role_permissions" {
            t.is_virtual = false;
        }
    }
    tables
}

fn system_auth_table_defs() -> Vec<TableDef> {
    use CqlType::*;
    let ks = "system_auth";
    vec![
        table(
            ks,
            "roles",
            "role definitions",
            &[("role", Text)],
            &[],
            &[
                ("can_login", Boolean),
                ("is_superuser", Boolean),
                ("member_of", Set(Box::new(Text))),
                ("salted_hash", Text),
            ],
        ),
        table(
            ks,
            "role_members",
            "role memberships lookup table",
            &[("role", Text)],
            &[("member", Text)],
            &[],
        ),
        table(
            ks,
            "role_permissions",
            "permissions granted to db roles",
            &[("role", Text)],
            &[("resource", Text)],
            &[("permissions", Set(Box::new(Text)))],
        ),
        table(
            ks,
            "resource_role_permissons_index",
            "index of db roles with permissions granted on a resource",
            &[("resource", Text)],
            &[("role", Text)],
            &[],
        ),
        table(
            ks,
            "network_permissions",
            "user network permissions",
            &[("role", Text)],
            &[],
            &[("dcs", frozen(Set(Box::new(Text))))],
        ),
    ]
}

fn system_distributed_tables() -> Vec<TableDef> {
    use CqlType::*;
    let ks = "system_distributed";
    vec![
        table(
            ks,
            "repair_history",
            "Repair history",
            &[("keyspace_name", Text), ("columnfamily_name", Text)],
            &[("id", Timeuuid)],
            &[
                ("coordinator", Inet),
                ("exception_message", Text),
                ("exception_stacktrace", Text),
                ("finished_at", Timestamp),
                ("parent_id", Timeuuid),
                ("participants", Set(Box::new(Inet))),
                ("range_begin", Text),
                ("range_end", Text),
                ("started_at", Timestamp),
                ("status", Text),
            ],
        ),
        table(
            ks,
            "parent_repair_history",
            "Repair history",
            &[("parent_id", Timeuuid)],
            &[],
            &[
                ("columnfamily_names", Set(Box::new(Text))),
                ("exception_message", Text),
                ("exception_stacktrace", Text),
                ("finished_at", Timestamp),
                ("keyspace_name", Text),
                ("options", Map(Box::new(Text), Box::new(Text))),
                ("requested_ranges", Set(Box::new(Text))),
                ("started_at", Timestamp),
                ("successful_ranges", Set(Box::new(Text))),
            ],
        ),
        table(
            ks,
            "view_build_status",
            "Materialized View build status",
            &[("keyspace_name", Text), ("view_name", Text)],
            &[("host_id", Uuid)],
            &[("status", Text)],
        ),
    ]
}

/// The `system_views` keyspace: ringdb's view of the cluster (Cassandra keeps its own virtual
/// tables here too). `cluster_status` is what `ringdb status` reads.
fn system_views_tables() -> Vec<TableDef> {
    use CqlType::*;
    vec![table(
        "system_views",
        "cluster_status",
        "every node this node knows, with its gossip state and liveness",
        &[("peer", Inet)],
        &[("storage_port", Int)],
        &[
            ("data_center", Text),
            ("generation", BigInt),
            ("heartbeat", BigInt),
            ("host_id", Uuid),
            ("load", BigInt),
            ("local", Boolean),
            ("native_address", Inet),
            ("native_port", Int),
            ("pending_hints", BigInt),
            ("rack", Text),
            ("release_version", Text),
            ("schema_version", Uuid),
            ("status", Text),
            ("tokens", Set(Box::new(Text))),
            ("up", Boolean),
        ],
    )]
}

fn system_traces_tables() -> Vec<TableDef> {
    use CqlType::*;
    let ks = "system_traces";
    vec![
        table(
            ks,
            "sessions",
            "tracing sessions",
            &[("session_id", Uuid)],
            &[],
            &[
                ("client", Inet),
                ("command", Text),
                ("coordinator", Inet),
                ("coordinator_port", Int),
                ("duration", Int),
                ("parameters", Map(Box::new(Text), Box::new(Text))),
                ("request", Text),
                ("started_at", Timestamp),
            ],
        ),
        table(
            ks,
            "events",
            "tracing events",
            &[("session_id", Uuid)],
            &[("event_id", Timeuuid)],
            &[
                ("activity", Text),
                ("source", Inet),
                ("source_elapsed", Int),
                ("source_port", Int),
                ("thread", Text),
            ],
        ),
    ]
}

/// Every system keyspace with its tables.
pub fn definitions() -> Vec<(KeyspaceDef, Vec<TableDef>)> {
    vec![
        (keyspace("system", local_strategy(), true), system_tables()),
        (
            keyspace("system_schema", local_strategy(), true),
            system_schema_tables(),
        ),
        (
            keyspace("system_views", local_strategy(), true),
            system_views_tables(),
        ),
        (
            keyspace("system_auth", simple(AUTH_REPLICATION_FACTOR), true),
            system_auth_tables(),
        ),
        (
            keyspace("system_distributed", simple(3), true),
            system_distributed_tables(),
        ),
        (
            keyspace("system_traces", simple(2), true),
            system_traces_tables(),
        ),
    ]
}
