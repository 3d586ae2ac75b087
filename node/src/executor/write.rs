//! INSERT, UPDATE and DELETE: from statements to mutations.
//!
//! Writes never read, with one exception Cassandra shares: setting or removing a list element
//! by index (`l[2] = x`, `DELETE l[2]`) or removing list elements by value needs the current list
//! to find the element's storage path.
//!
//! - INSERT writes the row's primary key liveness (so a row with only key columns exists), one
//!   cell per column given (`null` is a cell tombstone) and, for a non-frozen collection, a
//!   collection deletion just below the write timestamp followed by one cell per element.
//! - UPDATE writes cells only (no liveness): when all its cells are deleted the row is gone.
//! - DELETE writes a partition deletion, range deletions over clustering prefixes or slices, row
//!   deletions, cell tombstones or collection (element) deletions.
//!
//! Each statement gets one timestamp (`USING TIMESTAMP`, else the client's default timestamp,
//! else the hybrid logical clock) and one TTL (`USING TTL`, else the table's
//! `default_time_to_live`). Static columns live in the partition's static row (empty
//! clustering bytes).

use std::collections::HashMap;

use ringdb_cql::ast::{Assignment, Delete, Insert, Term, Update, Using};
use ringdb_cql::types::{self, CqlType, CqlValue};

use super::datapath::{DataPath, PartitionRead};
use super::error::{invalid, ExecError};
use super::keys;
use super::restrictions::{self, BoundWhere};
use super::values::{base, eval, eval_i64, eval_value, EvalCtx, Val};
use crate::schema::ddl::MAX_TTL_SECONDS;
use crate::schema::{ColumnDef, ColumnKind, TableDef};
use crate::storage::{
    Cell, CellKey, Deletion, Liveness, Mutation, PartitionKey, RangeDeletion, RowUpdate, Seconds,
    Slice,
};

/// What building a write needs from the executor.
pub(crate) struct WriteEnv<'a> {
    pub data: &'a dyn DataPath,
    pub eval: EvalCtx<'a>,
    /// Wall clock seconds: local deletion times and TTL expiry.
    pub now: Seconds,
    /// Timestamp for statements that do not set their own (batch-level or client default).
    pub default_timestamp: Option<i64>,
    pub consistency: u16,
    /// The node's own writes to `system_auth` (role management); never set for a client's
    /// statement, which may not modify a system keyspace.
    pub system_auth_writes: bool,
}

/// The timestamp and TTL of one statement.
#[derive(Debug, Clone, Copy)]
struct Attrs {
    timestamp: i64,
    ttl: i32,
    now: Seconds,
}

impl Attrs {
    fn cell(&self, value: Vec<u8>) -> Cell {
        if self.ttl > 0 {
            Cell::expiring(self.timestamp, self.ttl, self.now + self.ttl as i64, value)
        } else {
            Cell::live(self.timestamp, value)
        }
    }
    fn tombstone(&self) -> Cell {
        Cell::tombstone(self.timestamp, self.now)
    }
    fn deletion(&self) -> Deletion {
        Deletion::new(self.timestamp, self.now)
    }
    /// The deletion that clears a collection before it is overwritten at this timestamp.
    fn overwrite_deletion(&self) -> Deletion {
        Deletion::new(self.timestamp.saturating_sub(1), self.now)
    }
    fn liveness(&self) -> Liveness {
        if self.ttl > 0 {
            Liveness::expiring(self.timestamp, self.ttl, self.now + self.ttl as i64)
        } else {
            Liveness::new(self.timestamp)
        }
    }
}

fn attrs(
    env: &WriteEnv<'_>,
    table: &TableDef,
    using: &Using,
    allow_ttl: bool,
) -> Result<Attrs, ExecError> {
    let ctx = &env.eval;
    let timestamp = match &using.timestamp {
        Some(t) => eval_i64(t, &CqlType::BigInt, ctx, "[timestamp]")?,
        None => None,
    };
    let timestamp = match timestamp.or(env.default_timestamp) {
        Some(ts) => {
            if ts == i64::MIN {
                return invalid("Invalid timestamp: the minimum timestamp is reserved");
            }
            ts
        }
        None => ctx.clock.now(),
    };
    let ttl = match &using.ttl {
        Some(t) => {
            if !allow_ttl {
                return invalid("Cannot provide custom TTL for DELETE statement");
            }
            eval_i64(t, &CqlType::Int, ctx, "[ttl]")?
        }
        None => None,
    };
    let ttl = match ttl {
        Some(t) if t < 0 => {
            return invalid(format!("A TTL must be greater or equal to 0, but was {t}"))
        }
        Some(t) if t > MAX_TTL_SECONDS => {
            return invalid(format!(
                "ttl is too large. requested ({t}) maximum ({MAX_TTL_SECONDS})"
            ))
        }
        Some(t) => t as i32,
        None => table.options.default_time_to_live,
    };
    Ok(Attrs {
        timestamp,
        ttl,
        now: env.now,
    })
}

/// Rejects writes to read-only tables, except the node's own writes to `system_auth`.
fn check_env_writable(env: &WriteEnv<'_>, table: &TableDef) -> Result<(), ExecError> {
    if env.system_auth_writes && table.keyspace == crate::auth::AUTH_KEYSPACE && !table.is_virtual {
        return Ok(());
    }
    check_writable(table)
}

/// Rejects writes to read-only tables.
pub(crate) fn check_writable(table: &TableDef) -> Result<(), ExecError> {
    if crate::schema::is_system_keyspace(&table.keyspace) || table.is_virtual {
        return Err(ExecError::Unauthorized(format!(
            "{} keyspace is not user-modifiable.",
            table.keyspace
        )));
    }
    Ok(())
}

const LWT_UNSUPPORTED: &str =
    "Conditional updates are not supported yet: ringdb has no lightweight transactions (IF NOT EXISTS / IF EXISTS / IF conditions)";

/// Mutations of one statement (or batch), merged per partition.
#[derive(Default)]
pub(crate) struct MutationSet {
    mutations: Vec<(String, Mutation)>,
    index: HashMap<(crate::storage::TableId, PartitionKey), usize>,
}

impl MutationSet {
    fn entry(&mut self, table: &TableDef, partition: &PartitionKey) -> &mut Mutation {
        let key = (table.id, partition.clone());
        let i = match self.index.get(&key) {
            Some(i) => *i,
            None => {
                self.mutations.push((
                    table.keyspace.clone(),
                    Mutation {
                        table: table.id,
                        partition: partition.clone(),
                        partition_deletion: None,
                        range_deletions: Vec::new(),
                        rows: Vec::new(),
                    },
                ));
                self.index.insert(key, self.mutations.len() - 1);
                self.mutations.len() - 1
            }
        };
        &mut self.mutations[i].1
    }

    fn row(
        &mut self,
        table: &TableDef,
        partition: &PartitionKey,
        clustering: &[u8],
    ) -> &mut RowUpdate {
        let m = self.entry(table, partition);
        let pos = match m.rows.iter().position(|r| r.clustering == clustering) {
            Some(p) => p,
            None => {
                m.rows.push(RowUpdate {
                    clustering: clustering.to_vec(),
                    ..RowUpdate::default()
                });
                m.rows.len() - 1
            }
        };
        &mut m.rows[pos]
    }

    /// The mutations that write something, each with its keyspace.
    pub(crate) fn into_mutations(self) -> Vec<(String, Mutation)> {
        self.mutations
            .into_iter()
            .filter(|(_, m)| {
                m.partition_deletion.is_some()
                    || !m.range_deletions.is_empty()
                    || !m.rows.is_empty()
            })
            .collect()
    }
}

fn key_value(col: &ColumnDef, v: Val) -> Result<CqlValue, ExecError> {
    match v {
        Val::Value(v) => Ok(v),
        Val::Null => invalid(format!(
            "Invalid null value in condition for column {}",
            col.name
        )),
        Val::Unset => invalid(format!("Invalid unset value for column {}", col.name)),
    }
}

/// Storage path of a list element: an ordering key (appends grow, prepends shrink) and this
/// node's id, so paths from different writers never collide.
fn list_path(order: u64, seq: u32, node: &[u8; 6]) -> Vec<u8> {
    let mut p = Vec::with_capacity(18);
    p.extend_from_slice(&order.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(node);
    p
}

/// Element cells for a collection value being added (set/map add, list append or prepend).
fn collection_elements(
    env: &WriteEnv<'_>,
    col: &ColumnDef,
    value: &CqlValue,
    attrs: &Attrs,
    prepend: bool,
    out: &mut Vec<(CellKey, Cell)>,
) -> Result<(), ExecError> {
    match value {
        CqlValue::List(items) => {
            let micros = env.eval.clock.now().max(0) as u64;
            let order = if prepend {
                (1u64 << 63) - micros.min((1u64 << 63) - 1)
            } else {
                (1u64 << 63) + micros.min((1u64 << 63) - 1)
            };
            for (i, item) in items.iter().enumerate() {
                let path = list_path(order, i as u32, &env.eval.node);
                out.push((
                    CellKey {
                        column: col.id,
                        path: Some(path),
                    },
                    attrs.cell(item.serialize()),
                ));
            }
        }
        CqlValue::Set(items) => {
            for item in items {
                let mut path = Vec::new();
                types::encode_comparable(item, false, &mut path);
                out.push((
                    CellKey {
                        column: col.id,
                        path: Some(path),
                    },
                    attrs.cell(Vec::new()),
                ));
            }
        }
        CqlValue::Map(entries) => {
            for (k, v) in entries {
                let mut path = Vec::new();
                types::encode_comparable(k, false, &mut path);
                out.push((
                    CellKey {
                        column: col.id,
                        path: Some(path),
                    },
                    attrs.cell(v.serialize()),
                ));
            }
        }
        _ => return invalid(format!("Invalid value for collection column {}", col.name)),
    }
    Ok(())
}

/// Writes `col = value` into a row update.
fn set_column(
    env: &WriteEnv<'_>,
    row: &mut RowUpdate,
    col: &ColumnDef,
    v: Val,
    attrs: &Attrs,
) -> Result<(), ExecError> {
    if col.ty.is_multi_cell() {
        match v {
            Val::Unset => {}
            Val::Null => row.collection_deletions.push((col.id, attrs.deletion())),
            Val::Value(value) => {
                row.collection_deletions
                    .push((col.id, attrs.overwrite_deletion()));
                collection_elements(env, col, &value, attrs, false, &mut row.cells)?;
            }
        }
        return Ok(());
    }
    match v {
        Val::Unset => {}
        Val::Null => row.cells.push((
            CellKey {
                column: col.id,
                path: None,
            },
            attrs.tombstone(),
        )),
        Val::Value(value) => row.cells.push((
            CellKey {
                column: col.id,
                path: None,
            },
            attrs.cell(value.serialize()),
        )),
    }
    Ok(())
}

fn column<'t>(table: &'t TableDef, name: &str) -> Result<&'t ColumnDef, ExecError> {
    table
        .column(name)
        .ok_or_else(|| ExecError::Invalid(format!("Undefined column name {name}")))
}

/// INSERT.
pub(crate) fn insert(
    env: &WriteEnv<'_>,
    table: &TableDef,
    ins: &Insert,
    out: &mut MutationSet,
) -> Result<(), ExecError> {
    check_env_writable(env, table)?;
    if ins.if_not_exists {
        return invalid(LWT_UNSUPPORTED);
    }
    if ins.columns.len() != ins.values.len() {
        return invalid("Unmatched column names/values");
    }
    let mut seen = std::collections::HashSet::new();
    for c in &ins.columns {
        if !seen.insert(c.as_str()) {
            return invalid("The column names contains duplicates");
        }
        column(table, c)?;
    }
    let attrs = attrs(env, table, &ins.using, true)?;
    let given = |name: &str| ins.columns.iter().position(|c| c == name);

    let pk = table.partition_key();
    let missing: Vec<&str> = pk
        .iter()
        .filter(|c| given(&c.name).is_none())
        .map(|c| c.name.as_str())
        .collect();
    if !missing.is_empty() {
        return invalid(format!(
            "Some partition key parts are missing: {}",
            missing.join(", ")
        ));
    }
    let ck = table.clustering();
    let ck_missing: Vec<&str> = ck
        .iter()
        .filter(|c| given(&c.name).is_none())
        .map(|c| c.name.as_str())
        .collect();
    let only_statics = ins
        .columns
        .iter()
        .filter_map(|n| table.column(n))
        .filter(|c| !c.kind.is_primary_key())
        .all(|c| c.kind == ColumnKind::Static);
    let has_static_values = ins
        .columns
        .iter()
        .filter_map(|n| table.column(n))
        .any(|c| c.kind == ColumnKind::Static);
    if !ck_missing.is_empty()
        && (ck_missing.len() != ck.len() || !only_statics || !has_static_values)
    {
        return invalid(format!(
            "Some clustering keys are missing: {}",
            ck_missing.join(", ")
        ));
    }

    let value_of = |c: &ColumnDef| -> Result<Val, ExecError> {
        match given(&c.name) {
            Some(i) => eval(&ins.values[i], &c.ty, &env.eval, &c.name),
            None => Ok(Val::Unset),
        }
    };
    let mut pk_values = Vec::with_capacity(pk.len());
    for c in &pk {
        pk_values.push(key_value(c, value_of(c)?)?);
    }
    let partition = keys::partition_key(&pk_values)?;
    let clustering = if ck_missing.is_empty() {
        let mut values = Vec::with_capacity(ck.len());
        for c in &ck {
            values.push(key_value(c, value_of(c)?)?);
        }
        Some(keys::clustering_bytes(&ck, &values))
    } else {
        None
    };

    if let Some(clustering) = &clustering {
        let row = out.row(table, &partition, clustering);
        row.liveness = Some(attrs.liveness());
        for c in table
            .columns
            .iter()
            .filter(|c| c.kind == ColumnKind::Regular)
        {
            let v = value_of(c)?;
            set_column(env, row, c, v, &attrs)?;
        }
    }
    if has_static_values {
        let row = out.row(table, &partition, &[]);
        for c in table
            .columns
            .iter()
            .filter(|c| c.kind == ColumnKind::Static)
        {
            let v = value_of(c)?;
            set_column(env, row, c, v, &attrs)?;
        }
    }
    Ok(())
}

/// What a modification's WHERE clause selects.
struct Targets {
    partitions: Vec<PartitionKey>,
    bound: BoundWhere,
    /// Clustering columns restricted by `=`/`IN`.
    prefix_len: usize,
    /// Whether a clustering slice (`<`, `>=`, ...) follows the prefix.
    has_slice: bool,
}

/// Analyzes, validates and evaluates a modification's WHERE clause.
fn write_targets(
    table: &TableDef,
    where_clause: &[ringdb_cql::ast::Relation],
    env: &WriteEnv<'_>,
    full_clustering: bool,
) -> Result<Targets, ExecError> {
    let shape = restrictions::analyze(table, where_clause)?;
    restrictions::check_write_where(table, &shape, full_clustering)?;
    let bound = shape.bind(table, &env.eval)?;
    let partitions = restrictions::write_partitions(&bound)?
        .iter()
        .map(|vals| keys::partition_key(vals))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Targets {
        partitions,
        bound,
        prefix_len: shape.prefix_len,
        has_slice: shape.slice.is_some(),
    })
}

/// Current list elements of a row: `(path, value)` in list order.
async fn read_list(
    env: &WriteEnv<'_>,
    table: &TableDef,
    partition: &PartitionKey,
    clustering: &[u8],
    col: &ColumnDef,
) -> Result<Vec<(Vec<u8>, Vec<u8>)>, ExecError> {
    let has_clustering = !table.clustering().is_empty();
    let static_read = col.kind == ColumnKind::Static;
    let slice = if static_read {
        Slice {
            ranges: Vec::new(),
            include_static: true,
            reversed: false,
            limit: Some(0),
        }
    } else if has_clustering {
        Slice {
            ranges: vec![(
                std::ops::Bound::Included(clustering.to_vec()),
                std::ops::Bound::Included(clustering.to_vec()),
            )],
            include_static: false,
            reversed: false,
            limit: None,
        }
    } else {
        Slice {
            ranges: Vec::new(),
            include_static: false,
            reversed: false,
            limit: None,
        }
    };
    let data = env
        .data
        .read(PartitionRead {
            keyspace: &table.keyspace,
            table: table.id,
            partition,
            slice: &slice,
            now: env.now,
            consistency: env.consistency,
        })
        .await?;
    let Some(data) = data else {
        return Ok(Vec::new());
    };
    let row = if static_read {
        data.static_row
    } else {
        data.rows.into_iter().find(|r| r.clustering == clustering)
    };
    let Some(row) = row else {
        return Ok(Vec::new());
    };
    Ok(row
        .live_elements(col.id, env.now)
        .map(|(p, v)| (p.to_vec(), v.to_vec()))
        .collect())
}

fn list_index(env: &WriteEnv<'_>, t: &Term, col: &ColumnDef) -> Result<i64, ExecError> {
    match eval(t, &CqlType::Int, &env.eval, &format!("idx({})", col.name))? {
        Val::Value(CqlValue::Int(i)) => Ok(i.into()),
        _ => invalid(format!("Invalid null value for list index of {}", col.name)),
    }
}

/// UPDATE.
pub(crate) async fn update(
    env: &WriteEnv<'_>,
    table: &TableDef,
    upd: &Update,
    out: &mut MutationSet,
) -> Result<(), ExecError> {
    check_env_writable(env, table)?;
    if upd.if_exists || !upd.conditions.is_empty() {
        return invalid(LWT_UNSUPPORTED);
    }
    let attrs = attrs(env, table, &upd.using, true)?;
    let mut only_statics = true;
    for a in &upd.assignments {
        let name = assignment_column(a);
        let c = column(table, name)?;
        if c.kind.is_primary_key() {
            return invalid(format!("PRIMARY KEY part {name} found in SET part"));
        }
        if c.kind != ColumnKind::Static {
            only_statics = false;
        }
    }
    // Static-only updates may leave clustering columns out entirely.
    let full_clustering = !only_statics
        || upd
            .where_clause
            .iter()
            .any(|r| relation_on_clustering(table, r));
    let Targets {
        partitions, bound, ..
    } = write_targets(
        table,
        &upd.where_clause,
        env,
        full_clustering && !table.clustering().is_empty(),
    )?;
    let clusterings: Vec<Vec<u8>> = if table.clustering().is_empty() {
        vec![Vec::new()]
    } else if full_clustering {
        restrictions::full_clusterings(table, &bound)
    } else {
        Vec::new()
    };

    for partition in &partitions {
        for a in &upd.assignments {
            let c = column(table, assignment_column(a))?;
            let targets: Vec<Vec<u8>> = if c.kind == ColumnKind::Static {
                vec![Vec::new()]
            } else {
                clusterings.clone()
            };
            for clustering in &targets {
                apply_assignment(env, table, partition, clustering, c, a, &attrs, out).await?;
            }
        }
    }
    Ok(())
}

fn relation_on_clustering(table: &TableDef, r: &ringdb_cql::ast::Relation) -> bool {
    use ringdb_cql::ast::RelationLhs;
    match &r.lhs {
        RelationLhs::Column(n) => table
            .column(n)
            .is_some_and(|c| matches!(c.kind, ColumnKind::Clustering(..))),
        RelationLhs::Tuple(_) => true,
        _ => false,
    }
}

fn assignment_column(a: &Assignment) -> &str {
    match a {
        Assignment::Set { column, .. }
        | Assignment::SetElement { column, .. }
        | Assignment::Append { column, .. }
        | Assignment::Prepend { column, .. }
        | Assignment::Remove { column, .. } => column,
    }
}

#[allow(clippy::too_many_arguments)]
async fn apply_assignment(
    env: &WriteEnv<'_>,
    table: &TableDef,
    partition: &PartitionKey,
    clustering: &[u8],
    c: &ColumnDef,
    a: &Assignment,
    attrs: &Attrs,
    out: &mut MutationSet,
) -> Result<(), ExecError> {
    let frozen_or_scalar = |op: &str| -> ExecError {
        if c.ty.is_collection() {
            ExecError::Invalid(format!(
                "Invalid operation ({op}) for frozen collection column {}",
                c.name
            ))
        } else {
            ExecError::Invalid(format!(
                "Invalid operation ({op}) for non counter column {}",
                c.name
            ))
        }
    };
    match a {
        Assignment::Set { value, .. } => {
            let v = eval(value, &c.ty, &env.eval, &c.name)?;
            let row = out.row(table, partition, clustering);
            set_column(env, row, c, v, attrs)?;
        }
        Assignment::SetElement { key, value, .. } => {
            if !c.ty.is_multi_cell() {
                return Err(if c.ty.is_collection() {
                    ExecError::Invalid(format!(
                        "Invalid operation ({}[?] = ?) for frozen collection column {}",
                        c.name, c.name
                    ))
                } else {
                    ExecError::Invalid(format!("Column {} is not a map or list", c.name))
                });
            }
            match base(&c.ty) {
                CqlType::Map(kt, vt) => {
                    let k = eval_value(key, kt, &env.eval, &format!("key({})", c.name))?;
                    let mut path = Vec::new();
                    types::encode_comparable(&k, false, &mut path);
                    let cell = match eval(value, vt, &env.eval, &format!("value({})", c.name))? {
                        Val::Unset => return Ok(()),
                        Val::Null => attrs.tombstone(),
                        Val::Value(v) => attrs.cell(v.serialize()),
                    };
                    out.row(table, partition, clustering).cells.push((
                        CellKey {
                            column: c.id,
                            path: Some(path),
                        },
                        cell,
                    ));
                }
                CqlType::List(et) => {
                    let idx = list_index(env, key, c)?;
                    let cell = match eval(value, et, &env.eval, &format!("value({})", c.name))? {
                        Val::Unset => return Ok(()),
                        Val::Null => attrs.tombstone(),
                        Val::Value(v) => attrs.cell(v.serialize()),
                    };
                    let current = read_list(env, table, partition, clustering, c).await?;
                    let Some((path, _)) = usize::try_from(idx).ok().and_then(|i| current.get(i))
                    else {
                        return invalid(format!(
                            "List index {idx} out of bound, list has size {}",
                            current.len()
                        ));
                    };
                    out.row(table, partition, clustering).cells.push((
                        CellKey {
                            column: c.id,
                            path: Some(path.clone()),
                        },
                        cell,
                    ));
                }
                _ => {
                    return invalid(format!(
                        "Invalid operation ({}[?] = ?) for set column {}",
                        c.name, c.name
                    ))
                }
            }
        }
        Assignment::Append { value, .. } | Assignment::Prepend { value, .. } => {
            let prepend = matches!(a, Assignment::Prepend { .. });
            let op = if prepend {
                format!("{0} = ? + {0}", c.name)
            } else {
                format!("{0} = {0} + ?", c.name)
            };
            if !c.ty.is_multi_cell() {
                return Err(frozen_or_scalar(&op));
            }
            if prepend && !matches!(base(&c.ty), CqlType::List(_)) {
                return invalid(format!(
                    "Invalid operation ({op}) for non list column {}",
                    c.name
                ));
            }
            match eval(value, &c.ty, &env.eval, &c.name)? {
                Val::Value(v) => {
                    let row = out.row(table, partition, clustering);
                    collection_elements(env, c, &v, attrs, prepend, &mut row.cells)?;
                }
                Val::Null | Val::Unset => {}
            }
        }
        Assignment::Remove { value, .. } => {
            let op = format!("{0} = {0} - ?", c.name);
            if !c.ty.is_multi_cell() {
                return Err(frozen_or_scalar(&op));
            }
            match base(&c.ty) {
                CqlType::List(_) => {
                    let Val::Value(CqlValue::List(remove)) =
                        eval(value, &c.ty, &env.eval, &c.name)?
                    else {
                        return Ok(());
                    };
                    let remove: Vec<Vec<u8>> = remove.iter().map(|v| v.serialize()).collect();
                    let current = read_list(env, table, partition, clustering, c).await?;
                    let row = out.row(table, partition, clustering);
                    for (path, v) in current {
                        if remove.contains(&v) {
                            row.cells.push((
                                CellKey {
                                    column: c.id,
                                    path: Some(path),
                                },
                                attrs.tombstone(),
                            ));
                        }
                    }
                }
                CqlType::Set(_) => {
                    if let Val::Value(CqlValue::Set(items)) =
                        eval(value, &c.ty, &env.eval, &c.name)?
                    {
                        let row = out.row(table, partition, clustering);
                        for item in items {
                            let mut path = Vec::new();
                            types::encode_comparable(&item, false, &mut path);
                            row.cells.push((
                                CellKey {
                                    column: c.id,
                                    path: Some(path),
                                },
                                attrs.tombstone(),
                            ));
                        }
                    }
                }
                CqlType::Map(kt, _) => {
                    let keys_ty = CqlType::Set(kt.clone());
                    if let Val::Value(CqlValue::Set(items)) =
                        eval(value, &keys_ty, &env.eval, &c.name)?
                    {
                        let row = out.row(table, partition, clustering);
                        for item in items {
                            let mut path = Vec::new();
                            types::encode_comparable(&item, false, &mut path);
                            row.cells.push((
                                CellKey {
                                    column: c.id,
                                    path: Some(path),
                                },
                                attrs.tombstone(),
                            ));
                        }
                    }
                }
                _ => return Err(frozen_or_scalar(&op)),
            }
        }
    }
    Ok(())
}

/// DELETE.
pub(crate) async fn delete(
    env: &WriteEnv<'_>,
    table: &TableDef,
    del: &Delete,
    out: &mut MutationSet,
) -> Result<(), ExecError> {
    check_env_writable(env, table)?;
    if del.if_exists || !del.conditions.is_empty() {
        return invalid(LWT_UNSUPPORTED);
    }
    let attrs = attrs(env, table, &del.using, false)?;
    let mut targets = Vec::with_capacity(del.columns.len());
    for t in &del.columns {
        let c = column(table, &t.column)?;
        if c.kind.is_primary_key() {
            return invalid(format!(
                "Invalid identifier {} for deletion (should not be a PRIMARY KEY part)",
                c.name
            ));
        }
        targets.push((c, t.element.as_ref()));
    }
    let has_clustering = !table.clustering().is_empty();
    let only_statics =
        !targets.is_empty() && targets.iter().all(|(c, _)| c.kind == ColumnKind::Static);
    let needs_full = !targets.is_empty() && !only_statics && has_clustering;
    let Targets {
        partitions,
        bound,
        prefix_len,
        has_slice,
    } = write_targets(table, &del.where_clause, env, needs_full)?;
    let ck_len = table.clustering().len();
    let full = !has_slice && prefix_len == ck_len;

    for partition in &partitions {
        if targets.is_empty() {
            if !has_clustering || (prefix_len == 0 && !has_slice) {
                let m = out.entry(table, partition);
                m.partition_deletion = Some(attrs.deletion());
            } else if full {
                for clustering in restrictions::full_clusterings(table, &bound) {
                    out.row(table, partition, &clustering).deletion = Some(attrs.deletion());
                }
            } else {
                let m = out.entry(table, partition);
                for (start, end) in bound.ranges.iter().flatten() {
                    m.range_deletions.push(RangeDeletion {
                        start: start.clone(),
                        end: end.clone(),
                        deletion: attrs.deletion(),
                    });
                }
            }
            continue;
        }
        for (c, element) in &targets {
            let clusterings: Vec<Vec<u8>> = if c.kind == ColumnKind::Static || !has_clustering {
                vec![Vec::new()]
            } else {
                restrictions::full_clusterings(table, &bound)
            };
            for clustering in clusterings {
                match element {
                    None => {
                        let row = out.row(table, partition, &clustering);
                        if c.ty.is_multi_cell() {
                            row.collection_deletions.push((c.id, attrs.deletion()));
                        } else {
                            row.cells.push((
                                CellKey {
                                    column: c.id,
                                    path: None,
                                },
                                attrs.tombstone(),
                            ));
                        }
                    }
                    Some(key) => {
                        if !c.ty.is_multi_cell() {
                            return invalid(format!(
                                "Invalid deletion operation for non collection or frozen column {}",
                                c.name
                            ));
                        }
                        match base(&c.ty) {
                            CqlType::Map(kt, _) => {
                                let k =
                                    eval_value(key, kt, &env.eval, &format!("key({})", c.name))?;
                                let mut path = Vec::new();
                                types::encode_comparable(&k, false, &mut path);
                                out.row(table, partition, &clustering).cells.push((
                                    CellKey {
                                        column: c.id,
                                        path: Some(path),
                                    },
                                    attrs.tombstone(),
                                ));
                            }
                            CqlType::List(_) => {
                                let idx = list_index(env, key, c)?;
                                let current =
                                    read_list(env, table, partition, &clustering, c).await?;
                                let Some((path, _)) =
                                    usize::try_from(idx).ok().and_then(|i| current.get(i))
                                else {
                                    return invalid(format!(
                                        "List index {idx} out of bound, list has size {}",
                                        current.len()
                                    ));
                                };
                                out.row(table, partition, &clustering).cells.push((
                                    CellKey {
                                        column: c.id,
                                        path: Some(path.clone()),
                                    },
                                    attrs.tombstone(),
                                ));
                            }
                            _ => {
                                return invalid(format!(
                                    "Invalid deletion operation for set column {}",
                                    c.name
                                ))
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(())
}
