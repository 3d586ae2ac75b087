//! DESCRIBE, executed server-side as Cassandra 4 does for cqlsh 6.
//!
//! cqlsh sends the DESCRIBE statement verbatim and prints the rows: listings (`DESCRIBE
//! KEYSPACES`, `DESCRIBE TABLES`) as columns `keyspace_name, type, name`; element descriptions
//! (`DESCRIBE KEYSPACE k`, `DESCRIBE TABLE t`, `DESCRIBE SCHEMA`) with a fourth column
//! `create_statement` holding CQL that recreates the object; `DESCRIBE CLUSTER` as `cluster,
//! partitioner, snitch`. The CREATE statements are valid CQL-lite: they parse back with our
//! parser and recreate an equal definition.

use ringdb_cql::ast::{Describe, QualifiedName};
use ringdb_cql::parser::is_reserved;
use ringdb_cql::types::CqlType;

use super::error::{invalid, ExecError};
use super::{ColumnSpec, LocalNodeInfo, QueryResult};
use crate::schema::{
    is_system_keyspace, ClusteringOrder, ColumnKind, KeyspaceDef, Schema, TableDef,
};

/// The snitch DESCRIBE CLUSTER reports: nodes take their datacenter and rack from configuration.
const SNITCH: &str = "org.apache.cassandra.locator.GossipingPropertyFileSnitch";

/// An identifier as CQL text: bare when it would read back the same, double-quoted otherwise.
pub fn quote_identifier(name: &str) -> String {
    let simple = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !is_reserved(name);
    if simple {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

fn quote_string(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn map_literal(entries: &[(String, String)]) -> String {
    let parts: Vec<String> = entries
        .iter()
        .map(|(k, v)| format!("{}: {}", quote_string(k), quote_string(v)))
        .collect();
    format!("{{{}}}", parts.join(", "))
}

fn f64_literal(f: f64) -> String {
    let s = format!("{f:?}");
    if s.contains('.') || s.contains('e') || s.contains("inf") || s.contains("NaN") {
        s
    } else {
        format!("{s}.0")
    }
}

/// `CREATE KEYSPACE ...;` for a keyspace.
pub fn keyspace_cql(ks: &KeyspaceDef) -> String {
    format!(
        "CREATE KEYSPACE {} WITH replication = {} AND durable_writes = {};",
        quote_identifier(&ks.name),
        map_literal(&ks.replication),
        ks.durable_writes
    )
}

fn type_cql(ty: &CqlType) -> String {
    ty.to_string()
}

/// `CREATE TABLE ...;` for a table, with every option.
pub fn table_cql(t: &TableDef) -> String {
    let pk = t.partition_key();
    let ck = t.clustering();
    let mut lines = Vec::new();
    let inline_pk = pk.len() == 1 && ck.is_empty();
    for c in pk.iter().chain(ck.iter()) {
        let mut l = format!("    {} {}", quote_identifier(&c.name), type_cql(&c.ty));
        if inline_pk {
            l.push_str(" PRIMARY KEY");
        }
        lines.push(l);
    }
    let mut others: Vec<_> = t
        .columns
        .iter()
        .filter(|c| !c.kind.is_primary_key())
        .collect();
    others.sort_by(|a, b| a.name.cmp(&b.name));
    for c in others {
        let mut l = format!("    {} {}", quote_identifier(&c.name), type_cql(&c.ty));
        if c.kind == ColumnKind::Static {
            l.push_str(" static");
        }
        lines.push(l);
    }
    if !inline_pk {
        let pk_names: Vec<String> = pk.iter().map(|c| quote_identifier(&c.name)).collect();
        let pk_part = if pk.len() == 1 {
            pk_names[0].clone()
        } else {
            format!("({})", pk_names.join(", "))
        };
        let mut parts = vec![pk_part];
        parts.extend(ck.iter().map(|c| quote_identifier(&c.name)));
        lines.push(format!("    PRIMARY KEY ({})", parts.join(", ")));
    }
    let o = &t.options;
    let mut options = Vec::new();
    if !ck.is_empty() {
        let order: Vec<String> = ck
            .iter()
            .map(|c| {
                let dir = if c.clustering_order() == Some(ClusteringOrder::Desc) {
                    "DESC"
                } else {
                    "ASC"
                };
                format!("{} {dir}", quote_identifier(&c.name))
            })
            .collect();
        options.push(format!("CLUSTERING ORDER BY ({})", order.join(", ")));
    }
    let extensions: Vec<(String, String)> = o
        .extensions
        .iter()
        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
        .collect();
    options.extend([
        format!(
            "additional_write_policy = {}",
            quote_string(&o.additional_write_policy)
        ),
        format!(
            "bloom_filter_fp_chance = {}",
            f64_literal(o.bloom_filter_fp_chance)
        ),
        format!("caching = {}", map_literal(&o.caching)),
        format!("cdc = {}", o.cdc),
        format!("comment = {}", quote_string(&o.comment)),
        format!("compaction = {}", map_literal(&o.compaction)),
        format!("compression = {}", map_literal(&o.compression)),
        format!("crc_check_chance = {}", f64_literal(o.crc_check_chance)),
        format!("default_time_to_live = {}", o.default_time_to_live),
        format!("extensions = {}", map_literal(&extensions)),
        format!("gc_grace_seconds = {}", o.gc_grace_seconds),
        format!("max_index_interval = {}", o.max_index_interval),
        format!(
            "memtable_flush_period_in_ms = {}",
            o.memtable_flush_period_in_ms
        ),
        format!("min_index_interval = {}", o.min_index_interval),
        format!("read_repair = {}", quote_string(&o.read_repair)),
        format!("speculative_retry = {}", quote_string(&o.speculative_retry)),
    ]);
    format!(
        "CREATE TABLE {}.{} (\n{}\n) WITH {};",
        quote_identifier(&t.keyspace),
        quote_identifier(&t.name),
        lines.join(",\n"),
        options.join("\n    AND ")
    )
}

fn spec(name: &str) -> ColumnSpec {
    ColumnSpec {
        keyspace: String::new(),
        table: String::new(),
        name: name.to_string(),
        ty: CqlType::Text,
    }
}

fn text(s: &str) -> Option<Vec<u8>> {
    Some(s.as_bytes().to_vec())
}

fn listing(rows: Vec<(String, &str, String)>) -> QueryResult {
    QueryResult::Rows {
        columns: vec![spec("keyspace_name"), spec("type"), spec("name")],
        rows: rows
            .into_iter()
            .map(|(k, t, n)| vec![text(&k), text(t), text(&n)])
            .collect(),
        paging_state: None,
    }
}

fn elements(rows: Vec<(String, &str, String, String)>) -> QueryResult {
    QueryResult::Rows {
        columns: vec![
            spec("keyspace_name"),
            spec("type"),
            spec("name"),
            spec("create_statement"),
        ],
        rows: rows
            .into_iter()
            .map(|(k, t, n, c)| vec![text(&k), text(t), text(&n), text(&c)])
            .collect(),
        paging_state: None,
    }
}

fn keyspace_rows(
    schema: &Schema,
    ks: &KeyspaceDef,
    out: &mut Vec<(String, &'static str, String, String)>,
) {
    out.push((
        ks.name.clone(),
        "keyspace",
        ks.name.clone(),
        keyspace_cql(ks),
    ));
    for t in schema.tables(&ks.name) {
        out.push((ks.name.clone(), "table", t.name.clone(), table_cql(t)));
    }
}

fn resolve_table<'s>(
    schema: &'s Schema,
    name: &QualifiedName,
    session: Option<&str>,
) -> Result<&'s TableDef, ExecError> {
    let ks = match (&name.keyspace, session) {
        (Some(k), _) => k.as_str(),
        (None, Some(s)) => s,
        (None, None) => {
            return invalid("No keyspace specified and no current keyspace");
        }
    };
    if schema.keyspace(ks).is_none() {
        return invalid(format!("Keyspace '{ks}' not found"));
    }
    schema
        .table(ks, &name.name)
        .map(|t| &**t)
        .ok_or_else(|| ExecError::Invalid(format!("Table '{ks}.{}' not found", name.name)))
}

/// Executes a DESCRIBE statement.
pub(crate) fn describe(
    d: &Describe,
    schema: &Schema,
    session: Option<&str>,
    node: &LocalNodeInfo,
) -> Result<QueryResult, ExecError> {
    Ok(match d {
        Describe::Keyspaces => listing(
            schema
                .keyspaces()
                .map(|k| (k.name.clone(), "keyspace", k.name.clone()))
                .collect(),
        ),
        Describe::Tables => {
            let mut rows = Vec::new();
            for ks in schema.keyspaces() {
                if session.is_some_and(|s| s != ks.name) {
                    continue;
                }
                for t in schema.tables(&ks.name) {
                    rows.push((ks.name.clone(), "table", t.name.clone()));
                }
            }
            listing(rows)
        }
        Describe::Keyspace(name) => {
            let name = match (name, session) {
                (Some(n), _) => n.as_str(),
                (None, Some(s)) => s,
                (None, None) => return invalid("No keyspace specified and no current keyspace"),
            };
            let ks = schema
                .keyspace(name)
                .ok_or_else(|| ExecError::Invalid(format!("Keyspace '{name}' not found")))?;
            let mut rows = Vec::new();
            keyspace_rows(schema, ks, &mut rows);
            elements(rows)
        }
        Describe::Table(name) => {
            let t = resolve_table(schema, name, session)?;
            elements(vec![(
                t.keyspace.clone(),
                "table",
                t.name.clone(),
                table_cql(t),
            )])
        }
        Describe::Schema { full } => {
            let mut rows = Vec::new();
            for ks in schema.keyspaces() {
                if !full && is_system_keyspace(&ks.name) {
                    continue;
                }
                keyspace_rows(schema, ks, &mut rows);
            }
            elements(rows)
        }
        Describe::Cluster => QueryResult::Rows {
            columns: vec![spec("cluster"), spec("partitioner"), spec("snitch")],
            rows: vec![vec![
                text(&node.cluster_name),
                text(&node.partitioner),
                text(SNITCH),
            ]],
            paging_state: None,
        },
        Describe::Name(name) => {
            if name.keyspace.is_none() {
                if let Some(ks) = schema.keyspace(&name.name) {
                    let mut rows = Vec::new();
                    keyspace_rows(schema, ks, &mut rows);
                    return Ok(elements(rows));
                }
            }
            match resolve_table(schema, name, session) {
                Ok(t) => elements(vec![(
                    t.keyspace.clone(),
                    "table",
                    t.name.clone(),
                    table_cql(t),
                )]),
                Err(_) => {
                    let full = match &name.keyspace {
                        Some(k) => format!("{k}.{}", name.name),
                        None => name.name.clone(),
                    };
                    return invalid(format!("'{full}' not found in keyspaces"));
                }
            }
        }
    })
}
