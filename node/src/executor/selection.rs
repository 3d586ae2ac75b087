//! Select lists: which values a SELECT returns for each row, and how its columns are named.
//!
//! `*` is every column in Cassandra's order. Otherwise each selector is a column, `writetime(c)`,
//! `ttl(c)`, `token(k, ...)`, a native function (`toTimestamp(now())`, `uuid()`, `blobAsText(c)`,
//! …) or an aggregate (`count(*)`, `count(c)`, `min`, `max`, `sum`, `avg`). Result columns are
//! named as Cassandra 4 names them (`writetime(v)`, `system.token(k)`, `count`,
//! `system.totimestamp(system.now())`) unless aliased. With an aggregate, the whole result is one
//! row; plain columns next to aggregates show the first row's value.

use ringdb_cql::ast::{SelectExpr, Selector, Term};
use ringdb_cql::types::{self, CqlType, CqlValue};

use super::error::{invalid, ExecError};
use super::rows::LogicalRow;
use super::values::{self, base, EvalCtx};
use super::ColumnSpec;
use crate::schema::{ColumnKind, TableDef};

/// One selector, resolved against the table.
#[derive(Debug, Clone)]
pub(crate) enum Sel {
    Column(usize),
    WriteTime(usize),
    Ttl(usize),
    Token,
    /// A native function of no row value (`now()`, `uuid()`, `currentTimestamp()`...).
    Generator {
        name: String,
        args: Vec<Term>,
    },
    /// A conversion function applied to another selector.
    Convert {
        name: String,
        arg: Box<Sel>,
        arg_type: CqlType,
    },
    CountAll,
    Count(Box<Sel>),
    Min(Box<Sel>, CqlType),
    Max(Box<Sel>, CqlType),
    Sum(Box<Sel>, CqlType),
    Avg(Box<Sel>, CqlType),
}

impl Sel {
    fn is_aggregate(&self) -> bool {
        matches!(
            self,
            Sel::CountAll
                | Sel::Count(_)
                | Sel::Min(..)
                | Sel::Max(..)
                | Sel::Sum(..)
                | Sel::Avg(..)
        )
    }
}

/// A result column.
#[derive(Debug, Clone)]
pub(crate) struct Output {
    pub spec: ColumnSpec,
    pub sel: Sel,
}

/// A resolved select list.
#[derive(Debug, Clone)]
pub(crate) struct Selection {
    pub outputs: Vec<Output>,
    pub aggregate: bool,
}

fn spec(table: &TableDef, name: String, ty: CqlType) -> ColumnSpec {
    ColumnSpec {
        keyspace: table.keyspace.clone(),
        table: table.name.clone(),
        name,
        ty: ty.unfrozen(),
    }
}

impl Selection {
    /// `SELECT *`.
    pub(crate) fn all(table: &TableDef) -> Selection {
        let outputs = table
            .select_star_order()
            .into_iter()
            .filter_map(|c| {
                let idx = table.column_index(&c.name)?;
                Some(Output {
                    spec: spec(table, c.name.clone(), c.ty.clone()),
                    sel: Sel::Column(idx),
                })
            })
            .collect();
        Selection {
            outputs,
            aggregate: false,
        }
    }

    /// Resolves a select list (empty: `*`).
    pub(crate) fn resolve(
        table: &TableDef,
        selectors: &[Selector],
    ) -> Result<Selection, ExecError> {
        if selectors.is_empty() {
            return Ok(Selection::all(table));
        }
        let mut outputs = Vec::with_capacity(selectors.len());
        for s in selectors {
            let (sel, name, ty) = resolve_expr(table, &s.expr, true)?;
            let name = s.alias.clone().unwrap_or(name);
            outputs.push(Output {
                spec: spec(table, name, ty),
                sel,
            });
        }
        let aggregate = outputs.iter().any(|o| o.sel.is_aggregate());
        Ok(Selection { outputs, aggregate })
    }

    /// The result column specs.
    pub(crate) fn specs(&self) -> Vec<ColumnSpec> {
        self.outputs.iter().map(|o| o.spec.clone()).collect()
    }

    /// Table columns read by the selection (for DISTINCT checks).
    pub(crate) fn columns(&self) -> Vec<usize> {
        fn walk(s: &Sel, out: &mut Vec<usize>) {
            match s {
                Sel::Column(i) | Sel::WriteTime(i) | Sel::Ttl(i) => out.push(*i),
                Sel::Convert { arg, .. }
                | Sel::Count(arg)
                | Sel::Min(arg, _)
                | Sel::Max(arg, _)
                | Sel::Sum(arg, _)
                | Sel::Avg(arg, _) => walk(arg, out),
                _ => {}
            }
        }
        let mut out = Vec::new();
        for o in &self.outputs {
            walk(&o.sel, &mut out);
        }
        out
    }

    /// The values of one row.
    pub(crate) fn eval_row(
        &self,
        row: &LogicalRow,
        ctx: &EvalCtx<'_>,
        now: i64,
    ) -> Result<Vec<Option<Vec<u8>>>, ExecError> {
        self.outputs
            .iter()
            .map(|o| eval_sel(&o.sel, row, ctx, now))
            .collect()
    }
}

fn lname(name: &str) -> String {
    let l = name.to_ascii_lowercase();
    l.strip_prefix("system.")
        .map(|s| s.to_string())
        .unwrap_or(l)
}

fn column(table: &TableDef, name: &str) -> Result<usize, ExecError> {
    table
        .column_index(name)
        .ok_or_else(|| ExecError::Invalid(format!("Undefined column name {name}")))
}

fn resolve_expr(
    table: &TableDef,
    e: &SelectExpr,
    top: bool,
) -> Result<(Sel, String, CqlType), ExecError> {
    Ok(match e {
        SelectExpr::Column(n) => {
            let i = column(table, n)?;
            (Sel::Column(i), n.clone(), table.columns[i].ty.clone())
        }
        SelectExpr::CountAll => {
            if !top {
                return invalid("Aggregates cannot be nested in other functions");
            }
            (Sel::CountAll, "count".into(), CqlType::BigInt)
        }
        SelectExpr::WriteTime(n) | SelectExpr::Ttl(n) => {
            let is_wt = matches!(e, SelectExpr::WriteTime(_));
            let fname = if is_wt { "writeTime" } else { "ttl" };
            let i = column(table, n)?;
            let c = &table.columns[i];
            if c.kind.is_primary_key() {
                return invalid(format!(
                    "Cannot use selection function {fname} on PRIMARY KEY part {n}"
                ));
            }
            if c.ty.is_multi_cell() {
                return invalid(format!(
                    "Cannot use selection function {fname} on non-frozen collection {n}"
                ));
            }
            if is_wt {
                (
                    Sel::WriteTime(i),
                    format!("writetime({n})"),
                    CqlType::BigInt,
                )
            } else {
                (Sel::Ttl(i), format!("ttl({n})"), CqlType::Int)
            }
        }
        SelectExpr::Term(_) => return invalid("Literal terms in select clauses are not supported"),
        SelectExpr::Function { name, args } => {
            let f = lname(name);
            match f.as_str() {
                "token" => {
                    let pk = table.partition_key();
                    let names: Vec<String> = args
                        .iter()
                        .map(|a| match a {
                            SelectExpr::Column(c) => Ok(c.clone()),
                            _ => invalid("token() takes partition key columns"),
                        })
                        .collect::<Result<_, _>>()?;
                    let want: Vec<String> = pk.iter().map(|c| c.name.clone()).collect();
                    if names != want {
                        return invalid(format!(
                            "Type error: token() takes the partition key columns ({}) in order",
                            want.join(", ")
                        ));
                    }
                    (
                        Sel::Token,
                        format!("system.token({})", names.join(", ")),
                        CqlType::BigInt,
                    )
                }
                "count" | "min" | "max" | "sum" | "avg" => {
                    if !top {
                        return invalid("Aggregates cannot be nested in other functions");
                    }
                    if args.len() != 1 {
                        return invalid(format!("Invalid number of arguments in call to function system.{f}: 1 required but {} provided", args.len()));
                    }
                    let (inner, iname, ity) = resolve_expr(table, &args[0], false)?;
                    let name = format!("system.{f}({iname})");
                    let ty = ity.unfrozen();
                    match f.as_str() {
                        "count" => (Sel::Count(Box::new(inner)), name, CqlType::BigInt),
                        "min" => (Sel::Min(Box::new(inner), ty.clone()), name, ty),
                        "max" => (Sel::Max(Box::new(inner), ty.clone()), name, ty),
                        _ => {
                            if !matches!(
                                ty,
                                CqlType::TinyInt
                                    | CqlType::SmallInt
                                    | CqlType::Int
                                    | CqlType::BigInt
                                    | CqlType::Float
                                    | CqlType::Double
                                    | CqlType::Counter
                            ) {
                                return invalid(format!("Invalid call to function system.{f}: argument of type {ty} is not numeric"));
                            }
                            if f == "sum" {
                                (Sel::Sum(Box::new(inner), ty.clone()), name, ty)
                            } else {
                                (Sel::Avg(Box::new(inner), ty.clone()), name, ty)
                            }
                        }
                    }
                }
                _ => {
                    let column_arg = args.iter().any(|a| !matches!(a, SelectExpr::Term(_)));
                    if !column_arg {
                        let terms: Vec<Term> = args
                            .iter()
                            .filter_map(|a| match a {
                                SelectExpr::Term(t) => Some(t.clone()),
                                _ => None,
                            })
                            .collect();
                        let ty = values::function_result_type(&f, None).ok_or_else(|| {
                            ExecError::Invalid(format!("Unknown function '{name}'"))
                        })?;
                        let arg_names: Vec<String> = terms.iter().map(term_name).collect();
                        (
                            Sel::Generator {
                                name: f.clone(),
                                args: terms,
                            },
                            format!("system.{f}({})", arg_names.join(", ")),
                            ty,
                        )
                    } else {
                        if args.len() != 1 {
                            return invalid(format!(
                                "Invalid number of arguments in call to function system.{f}"
                            ));
                        }
                        let (inner, iname, ity) = resolve_expr(table, &args[0], false)?;
                        let ty = values::function_result_type(&f, Some(&ity)).ok_or_else(|| {
                            ExecError::Invalid(format!("Unknown function '{name}'"))
                        })?;
                        if f.starts_with("blobas") && base(&ity) != &CqlType::Blob {
                            return invalid(format!("Type error: {iname} cannot be passed as argument 0 of function system.{f} of type blob"));
                        }
                        if matches!(
                            f.as_str(),
                            "totimestamp"
                                | "todate"
                                | "tounixtimestamp"
                                | "dateof"
                                | "unixtimestampof"
                        ) && !matches!(
                            base(&ity),
                            CqlType::Timeuuid | CqlType::Timestamp | CqlType::Date
                        ) {
                            return invalid(format!("Type error: {iname} cannot be passed as argument 0 of function system.{f}"));
                        }
                        (
                            Sel::Convert {
                                name: f.clone(),
                                arg: Box::new(inner),
                                arg_type: ity.clone(),
                            },
                            format!("system.{f}({iname})"),
                            ty,
                        )
                    }
                }
            }
        }
    })
}

fn term_name(t: &Term) -> String {
    match t {
        Term::FunctionCall { name, args } => {
            format!(
                "system.{}({})",
                lname(name),
                args.iter().map(term_name).collect::<Vec<_>>().join(", ")
            )
        }
        Term::Literal(l) => format!("{l:?}"),
        _ => "?".into(),
    }
}

fn eval_sel(
    sel: &Sel,
    row: &LogicalRow,
    ctx: &EvalCtx<'_>,
    now: i64,
) -> Result<Option<Vec<u8>>, ExecError> {
    Ok(match sel {
        Sel::Column(i) => row
            .cells
            .get(*i)
            .and_then(|c| c.as_ref())
            .map(|c| c.value.clone()),
        Sel::WriteTime(i) => row
            .cells
            .get(*i)
            .and_then(|c| c.as_ref())
            .map(|c| c.timestamp.to_be_bytes().to_vec()),
        Sel::Ttl(i) => row
            .cells
            .get(*i)
            .and_then(|c| c.as_ref())
            .filter(|c| c.ttl > 0)
            .map(|c| {
                ((c.expires_at - now).clamp(0, i32::MAX as i64) as i32)
                    .to_be_bytes()
                    .to_vec()
            }),
        Sel::Token => Some(row.token.to_be_bytes().to_vec()),
        Sel::Generator { name, args } => {
            values::call_function(name, args, None, ctx, name)?.map(|v| v.serialize())
        }
        Sel::Convert {
            name,
            arg,
            arg_type,
        } => {
            let Some(bytes) = eval_sel(arg, row, ctx, now)? else {
                return Ok(None);
            };
            if let Some(to) = name.strip_prefix("blobas") {
                let ty = types::parse_type_name(to)
                    .ok_or_else(|| ExecError::Invalid(format!("Unknown function '{name}'")))?;
                Some(values::decode_bound(&ty, &bytes, name)?.serialize())
            } else if name.ends_with("asblob") {
                Some(bytes)
            } else {
                let v = CqlValue::deserialize(arg_type, &bytes)
                    .map_err(|e| ExecError::Server(format!("corrupt value: {e}")))?;
                values::convert_time(name, &v).map(|v| v.serialize())
            }
        }
        // Aggregates are evaluated by `Aggregator`.
        Sel::CountAll
        | Sel::Count(_)
        | Sel::Min(..)
        | Sel::Max(..)
        | Sel::Sum(..)
        | Sel::Avg(..) => None,
    })
}

/// Running state of an aggregate select list.
pub(crate) struct Aggregator {
    states: Vec<AggState>,
}

enum AggState {
    Count(i64),
    CountNonNull(i64),
    Extreme {
        best: Option<CqlValue>,
        max: bool,
    },
    Sum {
        sum: Num,
        count: i64,
        avg: bool,
    },
    /// A non-aggregate selector: the first row's value.
    First(Option<Option<Vec<u8>>>),
}

#[derive(Clone, Copy)]
enum Num {
    Int(i128),
    Float(f64),
}

impl Aggregator {
    pub(crate) fn new(sel: &Selection) -> Aggregator {
        let states = sel
            .outputs
            .iter()
            .map(|o| match &o.sel {
                Sel::CountAll => AggState::Count(0),
                Sel::Count(_) => AggState::CountNonNull(0),
                Sel::Min(..) => AggState::Extreme {
                    best: None,
                    max: false,
                },
                Sel::Max(..) => AggState::Extreme {
                    best: None,
                    max: true,
                },
                Sel::Sum(_, t) | Sel::Avg(_, t) => AggState::Sum {
                    sum: if matches!(t, CqlType::Float | CqlType::Double) {
                        Num::Float(0.0)
                    } else {
                        Num::Int(0)
                    },
                    count: 0,
                    avg: matches!(o.sel, Sel::Avg(..)),
                },
                _ => AggState::First(None),
            })
            .collect();
        Aggregator { states }
    }

    /// Folds one row in.
    pub(crate) fn add(
        &mut self,
        sel: &Selection,
        row: &LogicalRow,
        ctx: &EvalCtx<'_>,
        now: i64,
    ) -> Result<(), ExecError> {
        for (state, out) in self.states.iter_mut().zip(&sel.outputs) {
            match (state, &out.sel) {
                (AggState::Count(n), _) => *n += 1,
                (AggState::CountNonNull(n), Sel::Count(arg)) => {
                    *n += i64::from(eval_sel(arg, row, ctx, now)?.is_some())
                }
                (AggState::Extreme { best, max }, Sel::Min(arg, ty) | Sel::Max(arg, ty)) => {
                    if let Some(bytes) = eval_sel(arg, row, ctx, now)? {
                        let v = CqlValue::deserialize(ty, &bytes)
                            .map_err(|e| ExecError::Server(e.to_string()))?;
                        let better = match best {
                            None => true,
                            Some(b) => {
                                let o = types::compare(&v, b);
                                if *max {
                                    o.is_gt()
                                } else {
                                    o.is_lt()
                                }
                            }
                        };
                        if better {
                            *best = Some(v);
                        }
                    }
                }
                (AggState::Sum { sum, count, .. }, Sel::Sum(arg, ty) | Sel::Avg(arg, ty)) => {
                    if let Some(bytes) = eval_sel(arg, row, ctx, now)? {
                        let v = CqlValue::deserialize(ty, &bytes)
                            .map_err(|e| ExecError::Server(e.to_string()))?;
                        *count += 1;
                        *sum = match (*sum, v) {
                            (Num::Int(s), CqlValue::TinyInt(x)) => Num::Int(s + x as i128),
                            (Num::Int(s), CqlValue::SmallInt(x)) => Num::Int(s + x as i128),
                            (Num::Int(s), CqlValue::Int(x)) => Num::Int(s + x as i128),
                            (Num::Int(s), CqlValue::BigInt(x) | CqlValue::Counter(x)) => {
                                Num::Int(s.saturating_add(x as i128))
                            }
                            (Num::Float(s), CqlValue::Float(x)) => Num::Float(s + x as f64),
                            (Num::Float(s), CqlValue::Double(x)) => Num::Float(s + x),
                            (s, _) => s,
                        };
                    }
                }
                (AggState::First(first @ None), other) => {
                    *first = Some(eval_sel(other, row, ctx, now)?)
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The single result row.
    pub(crate) fn finish(self, sel: &Selection) -> Vec<Option<Vec<u8>>> {
        self.states
            .into_iter()
            .zip(&sel.outputs)
            .map(|(state, out)| match state {
                AggState::Count(n) | AggState::CountNonNull(n) => Some(n.to_be_bytes().to_vec()),
                AggState::Extreme { best, .. } => best.map(|v| v.serialize()),
                AggState::Sum { sum, count, avg } => {
                    let ty = match &out.sel {
                        Sel::Sum(_, t) | Sel::Avg(_, t) => t.clone(),
                        _ => CqlType::BigInt,
                    };
                    let v = match sum {
                        Num::Int(s) => {
                            let s = if avg {
                                if count == 0 {
                                    0
                                } else {
                                    s / count as i128
                                }
                            } else {
                                s
                            };
                            match ty {
                                CqlType::TinyInt => CqlValue::TinyInt(s as i8),
                                CqlType::SmallInt => CqlValue::SmallInt(s as i16),
                                CqlType::Int => CqlValue::Int(s as i32),
                                CqlType::Counter => CqlValue::Counter(s as i64),
                                _ => CqlValue::BigInt(s as i64),
                            }
                        }
                        Num::Float(s) => {
                            let s = if avg {
                                if count == 0 {
                                    0.0
                                } else {
                                    s / count as f64
                                }
                            } else {
                                s
                            };
                            match ty {
                                CqlType::Float => CqlValue::Float(s as f32),
                                _ => CqlValue::Double(s),
                            }
                        }
                    };
                    Some(v.serialize())
                }
                AggState::First(v) => v.flatten(),
            })
            .collect()
    }
}

/// Whether a column may appear in a `SELECT DISTINCT` list.
pub(crate) fn distinct_allowed(table: &TableDef, column: usize) -> bool {
    matches!(
        table.columns[column].kind,
        ColumnKind::PartitionKey(_) | ColumnKind::Static
    )
}
