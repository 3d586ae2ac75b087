//! WHERE clauses: which partitions and which rows a statement touches.
//!
//! Analysis runs in two steps, as in Cassandra:
//!
//! 1. [`analyze`] looks at the *shape* of the relations against the table (no values needed, so
//!    PREPARE can reject a bad statement): partition key columns restricted by `=`/`IN` select
//!    partitions directly; `token(k) > x` selects a token range; nothing selects the whole ring.
//!    Clustering columns restricted by `=`/`IN` on a prefix, then at most one slice (`<`, `>=`,
//!    …, single- or multi-column), select byte ranges within each partition. Everything else —
//!    regular columns, a clustering column after an unrestricted one, `CONTAINS` — is a *filter*
//!    evaluated in memory, which Cassandra only accepts with `ALLOW FILTERING`.
//! 2. [`Where::bind`] evaluates the terms with the bound values into concrete partition keys,
//!    token bounds, clustering byte ranges and filters.

use std::ops::Bound;

use ringdb_cql::ast::{Operator, Relation, RelationLhs, Term};
use ringdb_cql::types::{self, CqlType, CqlValue};

use super::error::{invalid, ExecError};
use super::keys::{self, ByteRange, SliceOp};
use super::values::{base, eval, eval_in_values, eval_value, EvalCtx, Val};
use crate::schema::{ColumnKind, TableDef};

/// Cassandra's message for a query that needs `ALLOW FILTERING`.
pub(crate) const FILTERING_MESSAGE: &str = "Cannot execute this query as it might involve data filtering and thus may have unpredictable performance. If you want to execute this query despite the performance unpredictability, use ALLOW FILTERING";

/// Cartesian products of IN values larger than this are refused.
const MAX_CARTESIAN: usize = 10_000;

/// An `=` or `IN` restriction on one or several consecutive key columns.
#[derive(Debug, Clone)]
pub(crate) enum KeyRel<'a> {
    Eq(&'a Term),
    In(&'a Term),
}

/// How partitions are selected.
#[derive(Debug, Clone)]
pub(crate) enum PartitionShape<'a> {
    /// Every partition key column restricted by `=`/`IN` (in key order).
    Keys(Vec<KeyRel<'a>>),
    /// `token(...)` bounds.
    Token {
        lower: Option<(bool, &'a Term)>,
        upper: Option<(bool, &'a Term)>,
    },
    /// No usable restriction: every partition.
    All,
}

/// An `=`/`IN` restriction on clustering columns `start..start + width`.
#[derive(Debug, Clone)]
pub(crate) struct PrefixRel<'a> {
    pub start: usize,
    pub width: usize,
    pub rel: KeyRel<'a>,
}

/// A slice on clustering columns `start..start + width` (width > 1: a multi-column relation).
#[derive(Debug, Clone)]
pub(crate) struct SliceShape<'a> {
    pub start: usize,
    pub width: usize,
    pub lower: Option<(SliceOp, &'a Term)>,
    pub upper: Option<(SliceOp, &'a Term)>,
}

/// A relation evaluated in memory on each row.
#[derive(Debug, Clone)]
pub(crate) struct FilterShape<'a> {
    /// Index of the column in the table's columns.
    pub column: usize,
    pub op: Operator,
    pub rhs: &'a Term,
    /// `m[key] = v`: the map key.
    pub element: Option<&'a Term>,
}

/// The analyzed shape of a WHERE clause.
#[derive(Debug, Clone)]
pub(crate) struct Where<'a> {
    pub partition: PartitionShape<'a>,
    /// `=`/`IN` restrictions on a prefix of the clustering columns, in order.
    pub prefix: Vec<PrefixRel<'a>>,
    /// Number of clustering columns covered by `prefix`.
    pub prefix_len: usize,
    pub slice: Option<SliceShape<'a>>,
    pub filters: Vec<FilterShape<'a>>,
    /// Whether the query can only be answered by filtering (needs ALLOW FILTERING).
    pub needs_filtering: bool,
}

fn slice_op(op: Operator) -> Option<SliceOp> {
    Some(match op {
        Operator::Gt => SliceOp::Gt,
        Operator::Ge => SliceOp::Ge,
        Operator::Lt => SliceOp::Lt,
        Operator::Le => SliceOp::Le,
        _ => return None,
    })
}

fn is_lower(op: SliceOp) -> bool {
    matches!(op, SliceOp::Gt | SliceOp::Ge)
}

fn column_index(table: &TableDef, name: &str) -> Result<usize, ExecError> {
    table
        .column_index(name)
        .ok_or_else(|| ExecError::Invalid(format!("Undefined column name {name}")))
}

fn op_text(op: Operator) -> &'static str {
    match op {
        Operator::Eq => "=",
        Operator::Neq => "!=",
        Operator::Lt => "<",
        Operator::Le => "<=",
        Operator::Gt => ">",
        Operator::Ge => ">=",
        Operator::In => "IN",
        Operator::Contains => "CONTAINS",
        Operator::ContainsKey => "CONTAINS KEY",
    }
}

/// Analyzes a WHERE clause against a table. Errors for relations Cassandra rejects whatever the
/// filtering setting (unknown columns, `!=`, conflicting restrictions); whether filtering is
/// needed is reported in [`Where::needs_filtering`] and checked by the caller.
pub(crate) fn analyze<'a>(
    table: &TableDef,
    relations: &'a [Relation],
) -> Result<Where<'a>, ExecError> {
    let pk = table.partition_key();
    let ck = table.clustering();
    let mut pk_rels: Vec<Vec<(Operator, &'a Term)>> = vec![Vec::new(); pk.len()];
    let mut ck_rels: Vec<Vec<(Operator, &'a Term)>> = vec![Vec::new(); ck.len()];
    let mut multi: Vec<(usize, usize, Operator, &'a Term)> = Vec::new();
    let mut token: [Option<(bool, &'a Term)>; 2] = [None, None];
    let mut has_token = false;
    let mut filters = Vec::new();

    for r in relations {
        if r.op == Operator::Neq {
            return invalid(format!(
                "Unsupported \"!=\" relation: {}",
                describe_lhs(&r.lhs)
            ));
        }
        match &r.lhs {
            RelationLhs::Token(cols) => {
                let names: Vec<&str> = pk.iter().map(|c| c.name.as_str()).collect();
                if cols.iter().map(|s| s.as_str()).collect::<Vec<_>>() != names {
                    for c in cols {
                        column_index(table, c)?;
                    }
                    return invalid(format!(
                        "The token function arguments must be in the partition key order: {}",
                        names.join(", ")
                    ));
                }
                has_token = true;
                let set = |slot: &mut Option<(bool, &'a Term)>,
                           incl: bool|
                 -> Result<(), ExecError> {
                    if slot.is_some() {
                        return invalid("More than one restriction was found for the start bound on partition key token");
                    }
                    *slot = Some((incl, &r.rhs));
                    Ok(())
                };
                match r.op {
                    Operator::Eq => {
                        set(&mut token[0], true)?;
                        set(&mut token[1], true)?;
                    }
                    Operator::Gt => set(&mut token[0], false)?,
                    Operator::Ge => set(&mut token[0], true)?,
                    Operator::Lt => set(&mut token[1], false)?,
                    Operator::Le => set(&mut token[1], true)?,
                    op => {
                        return invalid(format!(
                            "{} is not a supported relation on partition key token",
                            op_text(op)
                        ))
                    }
                }
            }
            RelationLhs::Column(name) => {
                let idx = column_index(table, name)?;
                let col = &table.columns[idx];
                match col.kind {
                    ColumnKind::PartitionKey(pos)
                        if matches!(r.op, Operator::Eq | Operator::In) =>
                    {
                        pk_rels[pos as usize].push((r.op, &r.rhs))
                    }
                    ColumnKind::Clustering(pos, _) if is_key_restriction_op(r.op) => {
                        ck_rels[pos as usize].push((r.op, &r.rhs))
                    }
                    _ => {
                        check_filter_op(col.name.as_str(), &col.ty, r.op)?;
                        filters.push(FilterShape {
                            column: idx,
                            op: r.op,
                            rhs: &r.rhs,
                            element: None,
                        });
                    }
                }
            }
            RelationLhs::Tuple(names) => {
                let mut positions = Vec::with_capacity(names.len());
                for n in names {
                    let idx = column_index(table, n)?;
                    match table.columns[idx].kind {
                        ColumnKind::Clustering(pos, _) => positions.push(pos as usize),
                        _ => {
                            return invalid(format!(
                                "Multi-column relations can only be applied to clustering columns but was applied to: {n}"
                            ))
                        }
                    }
                }
                let start = positions.first().copied().unwrap_or(0);
                if positions.iter().enumerate().any(|(i, p)| *p != start + i) {
                    return invalid("Clustering columns must appear in the PRIMARY KEY order in multi-column relations");
                }
                if !is_key_restriction_op(r.op) {
                    return invalid(format!(
                        "Unsupported multi-column relation operator {}",
                        op_text(r.op)
                    ));
                }
                multi.push((start, names.len(), r.op, &r.rhs));
            }
            RelationLhs::Element { column, key } => {
                let idx = column_index(table, column)?;
                let col = &table.columns[idx];
                if !matches!(base(&col.ty), CqlType::Map(..)) {
                    return invalid(format!("Column {column} cannot be used as a map"));
                }
                if r.op != Operator::Eq {
                    return invalid(format!(
                        "Unsupported operator {} on map element {column}",
                        op_text(r.op)
                    ));
                }
                filters.push(FilterShape {
                    column: idx,
                    op: r.op,
                    rhs: &r.rhs,
                    element: Some(key),
                });
            }
        }
    }

    // Partition key.
    let mut needs_filtering = false;
    let restricted: Vec<bool> = pk_rels.iter().map(|v| !v.is_empty()).collect();
    for (i, rels) in pk_rels.iter().enumerate() {
        if rels.len() > 1 {
            return invalid(format!(
                "{} cannot be restricted by more than one relation if it includes an Equal",
                pk[i].name
            ));
        }
    }
    let partition = if has_token {
        if restricted.iter().any(|r| *r) {
            let names: Vec<&str> = pk.iter().map(|c| c.name.as_str()).collect();
            return invalid(format!(
                "Columns \"{}\" cannot be restricted by both a normal relation and a token relation",
                names.join(", ")
            ));
        }
        PartitionShape::Token {
            lower: token[0],
            upper: token[1],
        }
    } else if !pk.is_empty() && restricted.iter().all(|r| *r) {
        PartitionShape::Keys(
            pk_rels
                .iter()
                .map(|rels| match rels[0] {
                    (Operator::In, t) => KeyRel::In(t),
                    (_, t) => KeyRel::Eq(t),
                })
                .collect(),
        )
    } else {
        if restricted.iter().any(|r| *r) {
            needs_filtering = true;
            for (i, rels) in pk_rels.iter().enumerate() {
                for (op, t) in rels {
                    let idx = column_index(table, &pk[i].name)?;
                    filters.push(FilterShape {
                        column: idx,
                        op: *op,
                        rhs: t,
                        element: None,
                    });
                }
            }
        }
        PartitionShape::All
    };

    // Clustering columns.
    let mut prefix = Vec::new();
    let mut slice: Option<SliceShape<'a>> = None;
    let mut pos = 0;
    let mut any_clustering = false;
    while pos < ck.len() {
        if let Some(&(start, width, op, rhs)) = multi.iter().find(|m| m.0 == pos) {
            any_clustering = true;
            if !ck_rels[pos..pos + width].iter().all(|r| r.is_empty()) {
                return invalid(format!(
                    "Column \"{}\" cannot be restricted by both a tuple notation inequality and a single column inequality",
                    ck[pos].name
                ));
            }
            match op {
                Operator::Eq | Operator::In => {
                    if multi.iter().filter(|m| m.0 == pos).count() > 1 {
                        return invalid(format!("{} cannot be restricted by more than one relation if it includes an Equal", ck[pos].name));
                    }
                    let rel = if op == Operator::In {
                        KeyRel::In(rhs)
                    } else {
                        KeyRel::Eq(rhs)
                    };
                    prefix.push(PrefixRel { start, width, rel });
                    pos += width;
                    continue;
                }
                _ => {
                    let mut s = SliceShape {
                        start,
                        width,
                        lower: None,
                        upper: None,
                    };
                    for &(st, w, op, rhs) in multi.iter().filter(|m| m.0 == pos) {
                        if st != start || w != width {
                            return invalid("Mixed width multi-column slices are not supported");
                        }
                        let Some(sop) = slice_op(op) else {
                            return invalid(format!("{} cannot be restricted by more than one relation if it includes an Equal", ck[pos].name));
                        };
                        let slot = if is_lower(sop) {
                            &mut s.lower
                        } else {
                            &mut s.upper
                        };
                        if slot.is_some() {
                            return invalid(format!(
                                "More than one restriction was found for the {} bound on {}",
                                if is_lower(sop) { "start" } else { "end" },
                                ck[pos].name
                            ));
                        }
                        *slot = Some((sop, rhs));
                    }
                    slice = Some(s);
                    break;
                }
            }
        }
        let rels = &ck_rels[pos];
        if rels.is_empty() {
            break;
        }
        any_clustering = true;
        if rels
            .iter()
            .any(|(op, _)| matches!(op, Operator::Eq | Operator::In))
        {
            if rels.len() > 1 {
                return invalid(format!(
                    "{} cannot be restricted by more than one relation if it includes an Equal",
                    ck[pos].name
                ));
            }
            let rel = if rels[0].0 == Operator::In {
                KeyRel::In(rels[0].1)
            } else {
                KeyRel::Eq(rels[0].1)
            };
            prefix.push(PrefixRel {
                start: pos,
                width: 1,
                rel,
            });
            pos += 1;
            continue;
        }
        let mut s = SliceShape {
            start: pos,
            width: 1,
            lower: None,
            upper: None,
        };
        for &(op, rhs) in rels {
            let Some(sop) = slice_op(op) else { continue };
            let slot = if is_lower(sop) {
                &mut s.lower
            } else {
                &mut s.upper
            };
            if slot.is_some() {
                return invalid(format!(
                    "More than one restriction was found for the {} bound on {}",
                    if is_lower(sop) { "start" } else { "end" },
                    ck[pos].name
                ));
            }
            *slot = Some((sop, rhs));
        }
        slice = Some(s);
        break;
    }
    let prefix_len = prefix.iter().map(|p| p.width).sum();
    // Restrictions after the usable part become filters.
    let usable_end = slice.as_ref().map_or(prefix_len, |s| s.start + s.width);
    for (p, rels) in ck_rels.iter().enumerate() {
        if p < usable_end || rels.is_empty() {
            continue;
        }
        needs_filtering = true;
        let idx = column_index(table, &ck[p].name)?;
        for (op, t) in rels {
            filters.push(FilterShape {
                column: idx,
                op: *op,
                rhs: t,
                element: None,
            });
        }
        any_clustering = true;
    }
    for m in &multi {
        if m.0 >= usable_end {
            return invalid(FILTERING_MESSAGE);
        }
    }
    if !filters.is_empty() {
        needs_filtering = true;
    }
    if any_clustering && !matches!(partition, PartitionShape::Keys(_)) {
        needs_filtering = true;
    }
    Ok(Where {
        partition,
        prefix,
        prefix_len,
        slice,
        filters,
        needs_filtering,
    })
}

fn describe_lhs(lhs: &RelationLhs) -> String {
    match lhs {
        RelationLhs::Column(c) => c.clone(),
        RelationLhs::Token(cs) => format!("token({})", cs.join(", ")),
        RelationLhs::Tuple(cs) => format!("({})", cs.join(", ")),
        RelationLhs::Element { column, .. } => format!("{column}[...]"),
    }
}

fn check_filter_op(name: &str, ty: &CqlType, op: Operator) -> Result<(), ExecError> {
    match op {
        Operator::Contains => match base(ty) {
            CqlType::List(_) | CqlType::Set(_) | CqlType::Map(..) => Ok(()),
            _ => invalid(format!(
                "Cannot use CONTAINS on non-collection column {name}"
            )),
        },
        Operator::ContainsKey => match base(ty) {
            CqlType::Map(..) => Ok(()),
            _ => invalid(format!("Cannot use CONTAINS KEY on non-map column {name}")),
        },
        Operator::Neq => invalid(format!("Unsupported \"!=\" relation: {name}")),
        _ => {
            if ty.is_multi_cell() && op != Operator::Eq && op != Operator::In {
                return invalid(format!(
                    "Slice restrictions are not supported on collections ({name})"
                ));
            }
            Ok(())
        }
    }
}

/// Token bounds of a range query: `(token, inclusive)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct TokenBounds {
    pub lower: Option<(i64, bool)>,
    pub upper: Option<(i64, bool)>,
}

impl TokenBounds {
    /// Whether a token is within the bounds.
    pub(crate) fn contains(&self, t: i64) -> bool {
        let lo = self
            .lower
            .is_none_or(|(b, incl)| if incl { t >= b } else { t > b });
        let hi = self
            .upper
            .is_none_or(|(b, incl)| if incl { t <= b } else { t < b });
        lo && hi
    }

    /// The last token to scan (inclusive), `None` for the end of the ring; `Err(())` when the
    /// range is empty.
    pub(crate) fn end_token(&self) -> Result<Option<i64>, ()> {
        match self.upper {
            None => Ok(None),
            Some((t, true)) => Ok(Some(t)),
            Some((t, false)) => t.checked_sub(1).map(Some).ok_or(()),
        }
    }
}

/// Partitions selected, with values.
#[derive(Debug, Clone)]
pub(crate) enum PartitionSel {
    /// Partition key value tuples, sorted and deduplicated.
    Keys(Vec<Vec<CqlValue>>),
    Range(TokenBounds),
}

/// An in-memory filter with its value(s).
#[derive(Debug, Clone)]
pub(crate) struct Filter {
    pub column: usize,
    pub op: Operator,
    pub values: Vec<CqlValue>,
    pub element: Option<CqlValue>,
    /// A `= null` or `IN (null)`: matches nothing.
    pub matches_nothing: bool,
}

/// A WHERE clause with values.
#[derive(Debug, Clone)]
pub(crate) struct BoundWhere {
    pub partitions: PartitionSel,
    /// Values of the restricted clustering prefix (cartesian product of `=`/`IN`), each of
    /// `prefix_len` values; one empty tuple when there is no prefix.
    pub prefixes: Vec<Vec<CqlValue>>,
    /// Clustering byte ranges to read, sorted and disjoint; `None` for the whole partition.
    pub ranges: Option<Vec<ByteRange>>,
    pub filters: Vec<Filter>,
}

fn product(
    acc: Vec<Vec<CqlValue>>,
    options: Vec<Vec<CqlValue>>,
) -> Result<Vec<Vec<CqlValue>>, ExecError> {
    if acc.len().saturating_mul(options.len()) > MAX_CARTESIAN {
        return invalid(format!(
            "IN restrictions would select more than {MAX_CARTESIAN} combinations of keys; split the query"
        ));
    }
    let mut out = Vec::with_capacity(acc.len() * options.len());
    for a in &acc {
        for o in &options {
            let mut v = a.clone();
            v.extend(o.iter().cloned());
            out.push(v);
        }
    }
    Ok(out)
}

fn eval_key_rel(
    rel: &KeyRel<'_>,
    cols: &[&crate::schema::ColumnDef],
    ctx: &EvalCtx<'_>,
) -> Result<Vec<Vec<CqlValue>>, ExecError> {
    let names: Vec<&str> = cols.iter().map(|c| c.name.as_str()).collect();
    if cols.len() == 1 {
        let c = cols[0];
        return Ok(match rel {
            KeyRel::Eq(t) => match eval(t, &c.ty, ctx, &c.name)? {
                Val::Value(v) => vec![vec![v]],
                Val::Null => {
                    return invalid(format!(
                        "Invalid null value in condition for column {}",
                        c.name
                    ))
                }
                Val::Unset => return invalid(format!("Invalid unset value for column {}", c.name)),
            },
            KeyRel::In(t) => eval_in_values(t, &c.ty, ctx, &format!("in({})", c.name))?
                .into_iter()
                .map(|v| vec![v])
                .collect(),
        });
    }
    let tuple_ty = CqlType::Tuple(cols.iter().map(|c| c.ty.clone()).collect());
    let label = format!("({})", names.join(","));
    let to_vec = |v: CqlValue| -> Result<Vec<CqlValue>, ExecError> {
        match v {
            CqlValue::Tuple(items) => items
                .into_iter()
                .map(|i| {
                    i.ok_or_else(|| {
                        ExecError::Invalid(format!(
                            "Invalid null value in condition for columns {label}"
                        ))
                    })
                })
                .collect(),
            _ => invalid(format!("Invalid value for {label}")),
        }
    };
    Ok(match rel {
        KeyRel::Eq(t) => vec![to_vec(eval_value(t, &tuple_ty, ctx, &label)?)?],
        KeyRel::In(t) => eval_in_values(t, &tuple_ty, ctx, &format!("in({label})"))?
            .into_iter()
            .map(to_vec)
            .collect::<Result<_, _>>()?,
    })
}

fn dedup_sorted(mut v: Vec<Vec<CqlValue>>) -> Vec<Vec<CqlValue>> {
    let cmp = |a: &Vec<CqlValue>, b: &Vec<CqlValue>| {
        a.iter()
            .zip(b.iter())
            .map(|(x, y)| types::compare(x, y))
            .find(|o| o.is_ne())
            .unwrap_or(a.len().cmp(&b.len()))
    };
    v.sort_by(cmp);
    v.dedup_by(|a, b| cmp(a, b).is_eq());
    v
}

impl<'a> Where<'a> {
    /// Evaluates the terms.
    pub(crate) fn bind(
        &self,
        table: &TableDef,
        ctx: &EvalCtx<'_>,
    ) -> Result<BoundWhere, ExecError> {
        let pk = table.partition_key();
        let ck = table.clustering();
        let partitions = match &self.partition {
            PartitionShape::Keys(rels) => {
                let mut acc = vec![Vec::new()];
                for (rel, col) in rels.iter().zip(&pk) {
                    let opts = eval_key_rel(rel, &[*col], ctx)?;
                    acc = product(acc, opts)?;
                }
                PartitionSel::Keys(dedup_sorted(acc))
            }
            PartitionShape::Token { lower, upper } => {
                let tok = |t: &Term| -> Result<i64, ExecError> {
                    match eval(t, &CqlType::BigInt, ctx, "partition key token")? {
                        Val::Value(CqlValue::BigInt(v)) => Ok(v),
                        Val::Value(_) => invalid("Invalid token value"),
                        _ => invalid("Invalid null value for partition key token"),
                    }
                };
                let lower = match lower {
                    Some((incl, t)) => Some((tok(t)?, *incl)),
                    None => None,
                };
                let upper = match upper {
                    Some((incl, t)) => Some((tok(t)?, *incl)),
                    None => None,
                };
                PartitionSel::Range(TokenBounds { lower, upper })
            }
            PartitionShape::All => PartitionSel::Range(TokenBounds::default()),
        };

        let mut prefixes = vec![Vec::new()];
        for p in &self.prefix {
            let cols: Vec<&crate::schema::ColumnDef> = ck[p.start..p.start + p.width].to_vec();
            let opts = eval_key_rel(&p.rel, &cols, ctx)?;
            prefixes = product(prefixes, opts)?;
        }
        let prefixes = dedup_sorted(prefixes);

        let ranges = if self.prefix.is_empty() && self.slice.is_none() {
            None
        } else {
            let mut all = Vec::new();
            for values in &prefixes {
                let prefix_cols: Vec<&crate::schema::ColumnDef> = ck[..self.prefix_len].to_vec();
                let bytes = keys::clustering_bytes(&prefix_cols, values);
                match &self.slice {
                    None => all.push(keys::prefix_range(&bytes)),
                    Some(s) => {
                        let cols: Vec<&crate::schema::ColumnDef> =
                            ck[s.start..s.start + s.width].to_vec();
                        let mut r = vec![keys::prefix_range(&bytes)];
                        for (op, t) in s.lower.iter().chain(s.upper.iter()) {
                            let vals = if s.width == 1 {
                                match eval(t, &cols[0].ty, ctx, &cols[0].name)? {
                                    Val::Value(v) => vec![v],
                                    Val::Null => {
                                        return invalid(format!(
                                            "Invalid null value in condition for column {}",
                                            cols[0].name
                                        ))
                                    }
                                    Val::Unset => {
                                        return invalid(format!(
                                            "Invalid unset value for column {}",
                                            cols[0].name
                                        ))
                                    }
                                }
                            } else {
                                let ks = eval_key_rel(&KeyRel::Eq(t), &cols, ctx)?;
                                ks.into_iter().next().unwrap_or_default()
                            };
                            let part = keys::tuple_slice_ranges(&bytes, &cols, &vals, *op);
                            r = keys::intersect_ranges(&r, &part);
                        }
                        all.extend(r);
                    }
                }
            }
            Some(keys::normalize_ranges(all))
        };

        let mut filters = Vec::with_capacity(self.filters.len());
        for f in &self.filters {
            filters.push(bind_filter(table, f, ctx)?);
        }
        Ok(BoundWhere {
            partitions,
            prefixes,
            ranges,
            filters,
        })
    }
}

fn bind_filter(
    table: &TableDef,
    f: &FilterShape<'_>,
    ctx: &EvalCtx<'_>,
) -> Result<Filter, ExecError> {
    let col = &table.columns[f.column];
    let name = col.name.as_str();
    let mut matches_nothing = false;
    let mut one = |ty: &CqlType, t: &Term| -> Result<Vec<CqlValue>, ExecError> {
        match eval(t, ty, ctx, name)? {
            Val::Value(v) => Ok(vec![v]),
            Val::Null => {
                matches_nothing = true;
                Ok(Vec::new())
            }
            Val::Unset => invalid(format!("Invalid unset value for column {name}")),
        }
    };
    let (values, element) = match (f.element, base(&col.ty)) {
        (Some(key), CqlType::Map(kt, vt)) => {
            let k = eval_value(key, kt, ctx, name)?;
            (one(vt, f.rhs)?, Some(k))
        }
        _ => match f.op {
            Operator::In => (eval_in_values(f.rhs, &col.ty, ctx, name)?, None),
            Operator::Contains => {
                let elem = match base(&col.ty) {
                    CqlType::List(e) | CqlType::Set(e) => (**e).clone(),
                    CqlType::Map(_, v) => (**v).clone(),
                    _ => {
                        return invalid(format!(
                            "Cannot use CONTAINS on non-collection column {name}"
                        ))
                    }
                };
                (one(&elem, f.rhs)?, None)
            }
            Operator::ContainsKey => {
                let key = match base(&col.ty) {
                    CqlType::Map(k, _) => (**k).clone(),
                    _ => {
                        return invalid(format!("Cannot use CONTAINS KEY on non-map column {name}"))
                    }
                };
                (one(&key, f.rhs)?, None)
            }
            _ => (one(&col.ty, f.rhs)?, None),
        },
    };
    Ok(Filter {
        column: f.column,
        op: f.op,
        values,
        element,
        matches_nothing,
    })
}

impl Filter {
    /// Whether a column value passes the filter (null never does).
    pub(crate) fn matches(&self, value: Option<&CqlValue>) -> bool {
        if self.matches_nothing {
            return false;
        }
        let Some(v) = value else { return false };
        if let Some(k) = &self.element {
            let CqlValue::Map(entries) = v else {
                return false;
            };
            return entries
                .iter()
                .find(|(ek, _)| types::compare(ek, k).is_eq())
                .is_some_and(|(_, ev)| {
                    self.values
                        .first()
                        .is_some_and(|x| types::compare(ev, x).is_eq())
                });
        }
        let first = self.values.first();
        match self.op {
            Operator::Eq => first.is_some_and(|x| types::compare(v, x).is_eq()),
            Operator::Lt => first.is_some_and(|x| types::compare(v, x).is_lt()),
            Operator::Le => first.is_some_and(|x| types::compare(v, x).is_le()),
            Operator::Gt => first.is_some_and(|x| types::compare(v, x).is_gt()),
            Operator::Ge => first.is_some_and(|x| types::compare(v, x).is_ge()),
            Operator::In => self.values.iter().any(|x| types::compare(v, x).is_eq()),
            Operator::Contains => first.is_some_and(|x| match v {
                CqlValue::List(items) | CqlValue::Set(items) => {
                    items.iter().any(|i| types::compare(i, x).is_eq())
                }
                CqlValue::Map(entries) => {
                    entries.iter().any(|(_, ev)| types::compare(ev, x).is_eq())
                }
                _ => false,
            }),
            Operator::ContainsKey => first.is_some_and(|x| match v {
                CqlValue::Map(entries) => {
                    entries.iter().any(|(ek, _)| types::compare(ek, x).is_eq())
                }
                _ => false,
            }),
            Operator::Neq => false,
        }
    }
}

/// For writes: the partition keys, as storage addresses with their values.
pub(crate) fn write_partitions(bound: &BoundWhere) -> Result<&[Vec<CqlValue>], ExecError> {
    match &bound.partitions {
        PartitionSel::Keys(k) => Ok(k),
        PartitionSel::Range(_) => invalid(
            "The token function cannot be used in WHERE clauses for UPDATE and DELETE statements",
        ),
    }
}

/// Validates a WHERE clause of an UPDATE or DELETE: every partition key column by `=`/`IN`, no
/// token, no filtering. `full_clustering`: every clustering column must be restricted by `=`/`IN`.
pub(crate) fn check_write_where(
    table: &TableDef,
    w: &Where<'_>,
    full_clustering: bool,
) -> Result<(), ExecError> {
    if let Some(f) = w
        .filters
        .iter()
        .find(|f| !table.columns[f.column].kind.is_primary_key())
    {
        return invalid(format!(
            "Non PRIMARY KEY columns found in where clause: {}",
            table.columns[f.column].name
        ));
    }
    match &w.partition {
        PartitionShape::Keys(_) => {}
        PartitionShape::Token { .. } => return invalid(
            "The token function cannot be used in WHERE clauses for UPDATE and DELETE statements",
        ),
        PartitionShape::All => {
            let restricted: Vec<usize> = w.filters.iter().map(|f| f.column).collect();
            let missing: Vec<&str> = table
                .partition_key()
                .iter()
                .filter(|c| !restricted.iter().any(|i| table.columns[*i].name == c.name))
                .map(|c| c.name.as_str())
                .collect();
            if missing.is_empty() {
                return invalid("Only EQ and IN relation are supported on the partition key (unless you use the token() function)");
            }
            return invalid(format!(
                "Some partition key parts are missing: {}",
                missing.join(", ")
            ));
        }
    }
    if let Some(f) = w.filters.first() {
        let c = &table.columns[f.column];
        if let ColumnKind::Clustering(..) = c.kind {
            let ck = table.clustering();
            let prev = ck.get(w.prefix_len).map_or("", |p| p.name.as_str());
            return invalid(format!(
                "PRIMARY KEY column \"{}\" cannot be restricted as preceding column \"{}\" is not restricted",
                c.name, prev
            ));
        }
        return invalid(format!(
            "Invalid restriction on {} in a modification statement",
            c.name
        ));
    }
    if full_clustering {
        let ck = table.clustering();
        if w.slice.is_some() || w.prefix_len < ck.len() {
            let missing: Vec<&str> = ck[w.prefix_len.min(ck.len())..]
                .iter()
                .map(|c| c.name.as_str())
                .collect();
            if w.slice.is_some() {
                return invalid(format!("Slice restrictions are not supported on the clustering columns in UPDATE statements ({})", missing.join(", ")));
            }
            return invalid(format!(
                "Some clustering keys are missing: {}",
                missing.join(", ")
            ));
        }
    }
    Ok(())
}

/// The full clustering byte keys of a write (every clustering column bound).
pub(crate) fn full_clusterings(table: &TableDef, bound: &BoundWhere) -> Vec<Vec<u8>> {
    let ck = table.clustering();
    bound
        .prefixes
        .iter()
        .map(|p| keys::clustering_bytes(&ck, p))
        .collect()
}

/// `Bound` helper for callers that build ranges.
pub(crate) fn unbounded_range() -> ByteRange {
    (Bound::Unbounded, Bound::Unbounded)
}

/// The operators a primary-key column can be restricted by without filtering: equality, `IN`
/// and the four slice bounds.
pub(crate) fn is_key_restriction_op(op: Operator) -> bool {
    matches!(
        op,
        Operator::Eq | Operator::In | Operator::Lt | Operator::Le | Operator::Gt | Operator::Ge
    )
}
