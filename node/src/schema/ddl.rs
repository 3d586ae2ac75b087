//! From DDL statements to definitions.
//!
//! Each function takes the current [`Schema`] snapshot and a parsed statement and returns the new
//! definition (or `None` when `IF NOT EXISTS` found the object already there), or a
//! [`SchemaError`] carrying Cassandra's message for the same mistake. Nothing here persists or
//! publishes: [`super::SchemaStore`] does that with the result.

use std::collections::HashSet;

use ringdb_cql::ast::{self, Literal, OptionValue};
use ringdb_cql::types::CqlType;

use super::{
    is_system_keyspace, replication, ClusteringOrder, ColumnDef, ColumnKind, DroppedColumn,
    KeyspaceDef, Schema, SchemaError, TableDef, TableOptions,
};

/// Longest keyspace or table name Cassandra accepts.
pub const NAME_LENGTH: usize = 48;

/// Longest TTL Cassandra accepts: 20 years, in seconds.
pub const MAX_TTL_SECONDS: i64 = 20 * 365 * 24 * 60 * 60;

fn invalid<T>(msg: impl Into<String>) -> Result<T, SchemaError> {
    Err(SchemaError::Invalid(msg.into()))
}

/// The error for a keyspace that does not exist.
pub fn keyspace_not_found(name: &str) -> SchemaError {
    SchemaError::Invalid(format!("Keyspace '{name}' does not exist"))
}

/// The error for a change to a system keyspace.
pub fn not_user_modifiable(keyspace: &str) -> SchemaError {
    SchemaError::Unauthorized(format!("{keyspace} keyspace is not user-modifiable."))
}

/// True for a name DDL accepts: 1 to [`NAME_LENGTH`] characters of `[A-Za-z0-9_]`.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= NAME_LENGTH
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn check_name(what: &str, name: &str) -> Result<(), SchemaError> {
    if valid_name(name) {
        Ok(())
    } else {
        invalid(format!(
            "{what} name must not be empty, more than {NAME_LENGTH} characters long, or contain non-alphanumeric-underscore characters (got \"{name}\")"
        ))
    }
}

/// `CREATE KEYSPACE`. `Ok(None)`: it exists and `IF NOT EXISTS` was given.
/// `known_dcs`: datacenters a bare NetworkTopologyStrategy `replication_factor` expands to.
pub fn create_keyspace(
    schema: &Schema,
    stmt: &ast::CreateKeyspace,
    known_dcs: &[String],
    timestamp: i64,
) -> Result<Option<KeyspaceDef>, SchemaError> {
    if schema.keyspace(&stmt.name).is_some() {
        if stmt.if_not_exists {
            return Ok(None);
        }
        return Err(SchemaError::AlreadyExists {
            keyspace: stmt.name.clone(),
            table: String::new(),
            message: format!("Cannot add already existing keyspace \"{}\"", stmt.name),
        });
    }
    check_name("Keyspace", &stmt.name)?;
    let replication = replication::normalize(&stmt.name, &stmt.replication, known_dcs)?;
    Ok(Some(KeyspaceDef {
        name: stmt.name.clone(),
        replication,
        durable_writes: stmt.durable_writes.unwrap_or(true),
        timestamp,
    }))
}

/// `ALTER KEYSPACE`: replication and/or durable_writes.
pub fn alter_keyspace(
    schema: &Schema,
    stmt: &ast::CreateKeyspace,
    known_dcs: &[String],
    timestamp: i64,
) -> Result<KeyspaceDef, SchemaError> {
    if is_system_keyspace(&stmt.name) {
        return Err(not_user_modifiable(&stmt.name));
    }
    let old = schema
        .keyspace(&stmt.name)
        .ok_or_else(|| keyspace_not_found(&stmt.name))?;
    let replication = if stmt.replication.is_empty() {
        old.replication.clone()
    } else {
        replication::normalize(&stmt.name, &stmt.replication, known_dcs)?
    };
    Ok(KeyspaceDef {
        name: stmt.name.clone(),
        replication,
        durable_writes: stmt.durable_writes.unwrap_or(old.durable_writes),
        timestamp: timestamp.max(old.timestamp + 1),
    })
}

/// Checks a `DROP KEYSPACE`. `Ok(false)`: absent and `IF EXISTS` was given.
pub fn drop_keyspace(schema: &Schema, name: &str, if_exists: bool) -> Result<bool, SchemaError> {
    if is_system_keyspace(name) {
        return Err(not_user_modifiable(name));
    }
    match schema.keyspace(name) {
        Some(_) => Ok(true),
        None if if_exists => Ok(false),
        None => Err(SchemaError::Invalid(format!(
            "Cannot drop non existing keyspace '{name}'."
        ))),
    }
}

/// Checks a `DROP TABLE`; returns the table. `Ok(None)`: absent and `IF EXISTS` was given.
pub fn drop_table(
    schema: &Schema,
    keyspace: &str,
    name: &str,
    if_exists: bool,
) -> Result<Option<TableDef>, SchemaError> {
    if is_system_keyspace(keyspace) {
        return Err(not_user_modifiable(keyspace));
    }
    if schema.keyspace(keyspace).is_none() {
        if if_exists {
            return Ok(None);
        }
        return Err(keyspace_not_found(keyspace));
    }
    match schema.table(keyspace, name) {
        Some(t) => Ok(Some((**t).clone())),
        None if if_exists => Ok(None),
        None => invalid(format!("Table '{keyspace}.{name}' doesn't exist")),
    }
}

/// Validates a column's type. `in_primary_key`: part of the partition key or clustering.
fn check_column_type(name: &str, ty: &CqlType, in_primary_key: bool) -> Result<(), SchemaError> {
    fn nested(ty: &CqlType, top: &CqlType, inside_collection: bool) -> Result<(), SchemaError> {
        match ty {
            CqlType::Counter => invalid("Counter columns are not supported by ringdb"),
            CqlType::Custom(c) => invalid(format!("Custom types are not supported ('{c}')")),
            CqlType::List(e) | CqlType::Set(e) => {
                if inside_collection {
                    return invalid(format!(
                        "Non-frozen collections are not allowed inside collections: {top}"
                    ));
                }
                nested(e, top, true)
            }
            CqlType::Map(k, v) => {
                if inside_collection {
                    return invalid(format!(
                        "Non-frozen collections are not allowed inside collections: {top}"
                    ));
                }
                nested(k, top, true)?;
                nested(v, top, true)
            }
            CqlType::Frozen(inner) => match &**inner {
                CqlType::List(e) | CqlType::Set(e) => frozen_inner(e, top),
                CqlType::Map(k, v) => {
                    frozen_inner(k, top)?;
                    frozen_inner(v, top)
                }
                CqlType::Tuple(ts) => ts.iter().try_for_each(|t| frozen_inner(t, top)),
                CqlType::Frozen(_) => nested(inner, top, inside_collection),
                _ => invalid(format!(
                    "frozen<> is only allowed on collections, tuples, and user-defined types (got {top})"
                )),
            },
            CqlType::Tuple(ts) => ts.iter().try_for_each(|t| frozen_inner(t, top)),
            _ => Ok(()),
        }
    }
    /// Inside a frozen value everything is frozen; only the leaf types matter.
    fn frozen_inner(ty: &CqlType, top: &CqlType) -> Result<(), SchemaError> {
        match ty {
            CqlType::Counter => invalid(format!(
                "Counters are not allowed inside collections: {top}"
            )),
            CqlType::Custom(c) => invalid(format!("Custom types are not supported ('{c}')")),
            CqlType::List(e) | CqlType::Set(e) => frozen_inner(e, top),
            CqlType::Map(k, v) => {
                frozen_inner(k, top)?;
                frozen_inner(v, top)
            }
            CqlType::Tuple(ts) => ts.iter().try_for_each(|t| frozen_inner(t, top)),
            CqlType::Frozen(t) => frozen_inner(t, top),
            _ => Ok(()),
        }
    }
    nested(ty, ty, false)?;
    if in_primary_key {
        if ty.is_multi_cell() {
            return invalid(format!(
                "Invalid non-frozen collection type {ty} for PRIMARY KEY component {name}"
            ));
        }
        if *ty == CqlType::Duration {
            return invalid(format!(
                "duration type is not supported for PRIMARY KEY column '{name}'"
            ));
        }
    }
    Ok(())
}

/// `CREATE TABLE` in `keyspace`. `Ok(None)`: it exists and `IF NOT EXISTS` was given.
pub fn create_table(
    schema: &Schema,
    stmt: &ast::CreateTable,
    keyspace: &str,
    timestamp: i64,
) -> Result<Option<TableDef>, SchemaError> {
    if is_system_keyspace(keyspace) {
        return Err(not_user_modifiable(keyspace));
    }
    if schema.keyspace(keyspace).is_none() {
        return Err(keyspace_not_found(keyspace));
    }
    let name = &stmt.table.name;
    if schema.table(keyspace, name).is_some() {
        if stmt.if_not_exists {
            return Ok(None);
        }
        return Err(SchemaError::AlreadyExists {
            keyspace: keyspace.to_string(),
            table: name.clone(),
            message: format!(
                "Cannot add already existing table \"{name}\" to keyspace \"{keyspace}\""
            ),
        });
    }
    check_name("Table", name)?;

    let mut seen = HashSet::new();
    for c in &stmt.columns {
        if !seen.insert(c.name.as_str()) {
            return invalid(format!("Multiple definition of identifier {}", c.name));
        }
    }
    let find = |n: &str| stmt.columns.iter().find(|c| c.name == n);
    let mut key_seen = HashSet::new();
    for k in stmt.partition_key.iter().chain(stmt.clustering_key.iter()) {
        if find(k).is_none() {
            return invalid(format!("Unknown definition {k} referenced in PRIMARY KEY"));
        }
        if !key_seen.insert(k.as_str()) {
            return invalid(format!("Multiple definition of identifier {k}"));
        }
    }
    if stmt.partition_key.is_empty() {
        return invalid("No PRIMARY KEY specifed for table (exactly one required)");
    }

    // Clustering order: only clustering columns, in clustering order.
    let mut orders = Vec::new();
    let mut last_pos: Option<usize> = None;
    for (n, o) in &stmt.clustering_order {
        let Some(pos) = stmt.clustering_key.iter().position(|c| c == n) else {
            return invalid(format!(
                "Only clustering key columns can be defined in CLUSTERING ORDER directive (got {n})"
            ));
        };
        if orders.iter().any(|(m, _): &(String, ast::Order)| m == n) {
            return invalid(format!(
                "Multiple definition of identifier {n} in CLUSTERING ORDER"
            ));
        }
        if let Some(prev) = last_pos {
            if pos < prev {
                return invalid(format!(
                    "The order of columns in the CLUSTERING ORDER directive must match that of the clustering columns ({} must appear before {})",
                    stmt.clustering_key[pos], stmt.clustering_key[prev]
                ));
            }
        }
        last_pos = Some(pos);
        orders.push((n.clone(), *o));
    }

    let mut columns = Vec::new();
    let mut next_id: u32 = 0;
    for (i, k) in stmt.partition_key.iter().enumerate() {
        let c = find(k).ok_or_else(|| {
            SchemaError::Invalid(format!("Unknown definition {k} referenced in PRIMARY KEY"))
        })?;
        if c.is_static {
            return invalid(format!(
                "Static column {k} cannot be part of the PRIMARY KEY"
            ));
        }
        check_column_type(k, &c.ty, true)?;
        columns.push(ColumnDef {
            id: next_id,
            name: k.clone(),
            ty: c.ty.clone(),
            kind: ColumnKind::PartitionKey(i as u16),
        });
        next_id += 1;
    }
    for (i, k) in stmt.clustering_key.iter().enumerate() {
        let c = find(k).ok_or_else(|| {
            SchemaError::Invalid(format!("Unknown definition {k} referenced in PRIMARY KEY"))
        })?;
        if c.is_static {
            return invalid(format!(
                "Static column {k} cannot be part of the PRIMARY KEY"
            ));
        }
        check_column_type(k, &c.ty, true)?;
        let order = match orders.iter().find(|(n, _)| n == k) {
            Some((_, ast::Order::Desc)) => ClusteringOrder::Desc,
            _ => ClusteringOrder::Asc,
        };
        columns.push(ColumnDef {
            id: next_id,
            name: k.clone(),
            ty: c.ty.clone(),
            kind: ColumnKind::Clustering(i as u16, order),
        });
        next_id += 1;
    }
    for c in &stmt.columns {
        if key_seen.contains(c.name.as_str()) {
            continue;
        }
        check_column_type(&c.name, &c.ty, false)?;
        if c.is_static && stmt.clustering_key.is_empty() {
            return invalid(
                "Static columns are only useful (and thus allowed) if the table has at least one clustering column",
            );
        }
        let kind = if c.is_static {
            ColumnKind::Static
        } else {
            ColumnKind::Regular
        };
        columns.push(ColumnDef {
            id: next_id,
            name: c.name.clone(),
            ty: c.ty.clone(),
            kind,
        });
        next_id += 1;
    }

    let mut options = TableOptions::default();
    apply_options(&mut options, &stmt.options)?;

    Ok(Some(TableDef {
        id: uuid::Uuid::new_v4(),
        keyspace: keyspace.to_string(),
        name: name.clone(),
        columns,
        next_column_id: next_id,
        options,
        dropped_columns: Vec::new(),
        timestamp,
        is_virtual: false,
    }))
}

/// `ALTER TABLE`: the new definition.
pub fn alter_table(
    table: &TableDef,
    action: &ast::AlterTableAction,
    timestamp: i64,
) -> Result<TableDef, SchemaError> {
    if is_system_keyspace(&table.keyspace) {
        return Err(not_user_modifiable(&table.keyspace));
    }
    let mut t = table.clone();
    t.timestamp = timestamp.max(table.timestamp + 1);
    match action {
        ast::AlterTableAction::Add(cols) => {
            let has_clustering = !t.clustering().is_empty();
            for c in cols {
                if t.column(&c.name).is_some() {
                    return invalid(format!("Column with name '{}' already exists", c.name));
                }
                check_column_type(&c.name, &c.ty, false)?;
                if c.is_static && !has_clustering {
                    return invalid(
                        "Static columns are only useful (and thus allowed) if the table has at least one clustering column",
                    );
                }
                let kind = if c.is_static {
                    ColumnKind::Static
                } else {
                    ColumnKind::Regular
                };
                t.columns.push(ColumnDef {
                    id: t.next_column_id,
                    name: c.name.clone(),
                    ty: c.ty.clone(),
                    kind,
                });
                t.next_column_id += 1;
            }
        }
        ast::AlterTableAction::Drop(names) => {
            for n in names {
                let Some(idx) = t.column_index(n) else {
                    return invalid(format!("Column {n} was not found in table {}", t.name));
                };
                if t.columns[idx].kind.is_primary_key() {
                    return invalid(format!("Cannot drop PRIMARY KEY column {n}"));
                }
                let c = t.columns.remove(idx);
                t.dropped_columns.retain(|d| d.name != c.name);
                t.dropped_columns.push(DroppedColumn {
                    id: c.id,
                    name: c.name,
                    ty: c.ty,
                    kind: c.kind,
                    dropped_at: timestamp,
                });
            }
        }
        ast::AlterTableAction::With(options) => apply_options(&mut t.options, options)?,
    }
    Ok(t)
}

fn literal_text(v: &OptionValue) -> Option<String> {
    match v {
        OptionValue::Literal(Literal::String(s))
        | OptionValue::Literal(Literal::Integer(s))
        | OptionValue::Literal(Literal::Float(s)) => Some(s.clone()),
        OptionValue::Literal(Literal::Boolean(b)) => Some(b.to_string()),
        _ => None,
    }
}

fn opt_int(name: &str, v: &OptionValue) -> Result<i64, SchemaError> {
    literal_text(v)
        .and_then(|s| s.trim().parse::<i64>().ok())
        .ok_or_else(|| {
            SchemaError::Invalid(format!(
                "Invalid value for property '{name}': expected an integer"
            ))
        })
}

fn opt_i32(name: &str, v: &OptionValue, min: i64, max: i64) -> Result<i32, SchemaError> {
    let n = opt_int(name, v)?;
    if n < min || n > max {
        return invalid(format!(
            "Invalid value {n} for property '{name}': must be between {min} and {max}"
        ));
    }
    Ok(n as i32)
}

fn opt_f64(name: &str, v: &OptionValue) -> Result<f64, SchemaError> {
    literal_text(v)
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|f| f.is_finite())
        .ok_or_else(|| {
            SchemaError::Invalid(format!(
                "Invalid value for property '{name}': expected a number"
            ))
        })
}

fn opt_string(name: &str, v: &OptionValue) -> Result<String, SchemaError> {
    literal_text(v).ok_or_else(|| {
        SchemaError::Invalid(format!(
            "Invalid value for property '{name}': expected a string"
        ))
    })
}

fn opt_bool(name: &str, v: &OptionValue) -> Result<bool, SchemaError> {
    match literal_text(v).map(|s| s.to_ascii_lowercase()) {
        Some(s) if s == "true" => Ok(true),
        Some(s) if s == "false" => Ok(false),
        _ => invalid(format!(
            "Invalid value for property '{name}': expected a boolean"
        )),
    }
}

fn opt_map(name: &str, v: &OptionValue) -> Result<Vec<(String, String)>, SchemaError> {
    match v {
        OptionValue::Map(m) => {
            let mut m = m.clone();
            m.sort();
            m.dedup_by(|a, b| a.0 == b.0);
            Ok(m)
        }
        _ => invalid(format!(
            "Invalid value for property '{name}': expected a map"
        )),
    }
}

fn qualify_class(map: &mut [(String, String)], package: &str) {
    for (k, v) in map.iter_mut() {
        if k == "class" && !v.contains('.') {
            *v = format!("{package}.{v}");
        }
    }
}

/// Applies `WITH name = value AND ...` table options.
pub fn apply_options(
    options: &mut TableOptions,
    given: &[(String, OptionValue)],
) -> Result<(), SchemaError> {
    for (name, value) in given {
        let name = name.to_ascii_lowercase();
        match name.as_str() {
            "comment" => options.comment = opt_string(&name, value)?,
            "default_time_to_live" => {
                options.default_time_to_live = opt_i32(&name, value, 0, MAX_TTL_SECONDS)?
            }
            "gc_grace_seconds" => {
                options.gc_grace_seconds = opt_i32(&name, value, 0, i32::MAX as i64)?
            }
            "bloom_filter_fp_chance" => {
                let f = opt_f64(&name, value)?;
                if f <= 0.0 || f > 1.0 {
                    return invalid(format!(
                        "bloom_filter_fp_chance must be larger than 0 and less than or equal to 1.0 (got {f})"
                    ));
                }
                options.bloom_filter_fp_chance = f;
            }
            "crc_check_chance" => {
                let f = opt_f64(&name, value)?;
                if !(0.0..=1.0).contains(&f) {
                    return invalid("crc_check_chance should be between 0.0 and 1.0");
                }
                options.crc_check_chance = f;
            }
            "caching" => {
                let m = opt_map(&name, value)?;
                for (k, _) in &m {
                    if k != "keys" && k != "rows_per_partition" {
                        return invalid(format!("Invalid caching sub-options {{{k}}}: only \"keys\" and \"rows_per_partition\" are allowed"));
                    }
                }
                let mut caching = TableOptions::default().caching;
                for (k, v) in m {
                    if let Some(e) = caching.iter_mut().find(|(n, _)| *n == k) {
                        e.1 = v;
                    }
                }
                options.caching = caching;
            }
            "compaction" => {
                let mut m = opt_map(&name, value)?;
                if !m.iter().any(|(k, _)| k == "class") {
                    return invalid("Missing sub-option 'class' for the 'compaction' option.");
                }
                qualify_class(&mut m, "org.apache.cassandra.db.compaction");
                options.compaction = m;
            }
            "compression" => {
                let mut m = opt_map(&name, value)?;
                qualify_class(&mut m, "org.apache.cassandra.io.compress");
                options.compression = m;
            }
            "speculative_retry" => options.speculative_retry = opt_string(&name, value)?,
            "additional_write_policy" => {
                options.additional_write_policy = opt_string(&name, value)?
            }
            "memtable_flush_period_in_ms" => {
                options.memtable_flush_period_in_ms = opt_i32(&name, value, 0, i32::MAX as i64)?
            }
            "min_index_interval" => {
                options.min_index_interval = opt_i32(&name, value, 1, i32::MAX as i64)?
            }
            "max_index_interval" => {
                options.max_index_interval = opt_i32(&name, value, 1, i32::MAX as i64)?
            }
            "read_repair" => {
                let s = opt_string(&name, value)?.to_ascii_uppercase();
                if s != "BLOCKING" && s != "NONE" {
                    return invalid(format!(
                        "Invalid value '{s}' for property 'read_repair': expected BLOCKING or NONE"
                    ));
                }
                options.read_repair = s;
            }
            "cdc" => options.cdc = opt_bool(&name, value)?,
            "extensions" => {
                options.extensions = opt_map(&name, value)?
                    .into_iter()
                    .map(|(k, v)| (k, v.into_bytes()))
                    .collect()
            }
            // Accepted for compatibility with schemas dumped by other Cassandra versions; they
            // have no effect here.
            "read_repair_chance" | "dclocal_read_repair_chance" => {
                opt_f64(&name, value)?;
            }
            "memtable" => {
                opt_string(&name, value)?;
            }
            "allow_auto_snapshot" | "incremental_backups" => {
                opt_bool(&name, value)?;
            }
            _ => return invalid(format!("Unknown property '{name}'")),
        }
    }
    if options.min_index_interval > options.max_index_interval {
        return invalid("max_index_interval must be greater than or equal to min_index_interval");
    }
    Ok(())
}
