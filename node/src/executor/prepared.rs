//! Prepared statements: bind variable metadata, the partition key indices drivers route by, and
//! a bounded cache.
//!
//! A prepared id is a deterministic 16-byte digest of the keyspace in use at prepare time and the
//! query text, so every node gives the same id for the same statement and a driver can execute
//! it anywhere. The cache keeps at most [`PREPARED_CACHE_CAPACITY`] statements and evicts the
//! least recently used; a driver that executes an evicted id gets UNPREPARED and prepares again.
//!
//! Variables are described as Cassandra describes them: a column's own name and type for
//! `c = ?`, `in(c)` with `list<T>` for `c IN ?`, `[limit]`, `[per_partition_limit]`, `[ttl]`,
//! `[timestamp]`, `partition key token` for `token(k) > ?`, `key(m)`/`value(m)` for map elements,
//! `idx(l)` for list indices.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use ringdb_cql::ast::{Assignment, Operator, Relation, RelationLhs, Statement, Term, Using};
use ringdb_cql::types::CqlType;

use super::values::base;
use super::{ColumnSpec, Prepared};
use crate::schema::digest::Digest128;
use crate::schema::{ColumnKind, TableDef};

/// Most prepared statements kept per node.
pub const PREPARED_CACHE_CAPACITY: usize = 10_000;

/// The id of a prepared statement.
pub(crate) fn prepared_id(keyspace: Option<&str>, text: &str) -> Vec<u8> {
    let mut d = Digest128::new();
    d.update(b"ringdb-prepared-v1");
    d.update_framed(keyspace.unwrap_or("").as_bytes());
    d.update_framed(text.as_bytes());
    d.finish().to_vec()
}

/// A bounded LRU cache of prepared statements.
pub(crate) struct PreparedCache {
    capacity: usize,
    tick: u64,
    entries: HashMap<Vec<u8>, (Arc<Prepared>, u64)>,
    by_use: BTreeMap<u64, Vec<u8>>,
}

impl PreparedCache {
    pub(crate) fn new(capacity: usize) -> PreparedCache {
        PreparedCache {
            capacity: capacity.max(1),
            tick: 0,
            entries: HashMap::new(),
            by_use: BTreeMap::new(),
        }
    }

    /// Looks up an id, marking it used.
    pub(crate) fn get(&mut self, id: &[u8]) -> Option<Arc<Prepared>> {
        self.tick += 1;
        let tick = self.tick;
        let (p, used) = self.entries.get_mut(id)?;
        self.by_use.remove(used);
        *used = tick;
        self.by_use.insert(tick, id.to_vec());
        Some(p.clone())
    }

    /// Adds (or refreshes) a statement, evicting the least recently used beyond capacity.
    pub(crate) fn insert(&mut self, p: Arc<Prepared>) {
        self.tick += 1;
        let tick = self.tick;
        if let Some((_, used)) = self.entries.insert(p.id.clone(), (p.clone(), tick)) {
            self.by_use.remove(&used);
        }
        self.by_use.insert(tick, p.id.clone());
        while self.entries.len() > self.capacity {
            let Some((&oldest, _)) = self.by_use.iter().next() else {
                break;
            };
            if let Some(id) = self.by_use.remove(&oldest) {
                self.entries.remove(&id);
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Collects variable specs of one statement.
pub(crate) struct SpecCollector<'a> {
    pub specs: Vec<Option<ColumnSpec>>,
    table: Option<&'a TableDef>,
}

impl<'a> SpecCollector<'a> {
    pub(crate) fn new(markers: usize) -> SpecCollector<'a> {
        SpecCollector {
            specs: vec![None; markers],
            table: None,
        }
    }

    fn spec(&self, name: &str, ty: &CqlType) -> ColumnSpec {
        let (keyspace, table) = self.table.map_or((String::new(), String::new()), |t| {
            (t.keyspace.clone(), t.name.clone())
        });
        ColumnSpec {
            keyspace,
            table,
            name: name.to_string(),
            ty: ty.unfrozen(),
        }
    }

    /// Records every marker inside `term`, whose value has type `ty` and is called `name`.
    fn term(&mut self, term: &Term, name: &str, ty: &CqlType) {
        match term {
            Term::Bind(m) => {
                // Cassandra names a `:name` marker's variable after the marker, not the column:
                // drivers bind named values by these names.
                let spec = self.spec(m.name.as_deref().unwrap_or(name), ty);
                if let Some(slot) = self.specs.get_mut(m.index) {
                    *slot = Some(spec);
                }
            }
            Term::List(items) | Term::Set(items) => {
                if let CqlType::List(e) | CqlType::Set(e) = base(ty) {
                    for i in items {
                        self.term(i, name, e);
                    }
                }
            }
            Term::Map(entries) => {
                if let CqlType::Map(k, v) = base(ty) {
                    for (kt, vt) in entries {
                        self.term(kt, name, k);
                        self.term(vt, name, v);
                    }
                }
            }
            Term::Tuple(items) => {
                if let CqlType::Tuple(ts) = base(ty) {
                    for (i, t) in items.iter().zip(ts) {
                        self.term(i, name, t);
                    }
                }
            }
            Term::Cast { ty: hint, term } => self.term(term, name, hint),
            Term::FunctionCall { name: f, args } => {
                // Arguments of time functions are timestamps; of xAsBlob their type x.
                let lf = f.to_ascii_lowercase();
                let arg_ty = if lf == "mintimeuuid" || lf == "maxtimeuuid" {
                    CqlType::Timestamp
                } else if let Some(t) = lf
                    .strip_suffix("asblob")
                    .and_then(ringdb_cql::types::parse_type_name)
                {
                    t
                } else if lf.starts_with("blobas") {
                    CqlType::Blob
                } else {
                    CqlType::Timeuuid
                };
                for a in args {
                    self.term(a, &format!("arg({f})"), &arg_ty);
                }
            }
            Term::Literal(_) => {}
        }
    }

    fn using(&mut self, u: &Using) {
        if let Some(t) = &u.ttl {
            self.term(t, "[ttl]", &CqlType::Int);
        }
        if let Some(t) = &u.timestamp {
            self.term(t, "[timestamp]", &CqlType::BigInt);
        }
    }

    fn relations(&mut self, table: &TableDef, rels: &[Relation]) {
        for r in rels {
            match &r.lhs {
                RelationLhs::Column(n) => {
                    let Some(c) = table.column(n) else { continue };
                    match r.op {
                        Operator::In => match &r.rhs {
                            Term::Bind(_) => self.term(
                                &r.rhs,
                                &format!("in({n})"),
                                &CqlType::List(Box::new(c.ty.clone())),
                            ),
                            Term::List(items) | Term::Tuple(items) => {
                                for i in items {
                                    self.term(i, n, &c.ty);
                                }
                            }
                            other => self.term(other, n, &c.ty),
                        },
                        Operator::Contains => {
                            let e = match base(&c.ty) {
                                CqlType::List(e) | CqlType::Set(e) => (**e).clone(),
                                CqlType::Map(_, v) => (**v).clone(),
                                t => t.clone(),
                            };
                            self.term(&r.rhs, n, &e);
                        }
                        Operator::ContainsKey => {
                            let k = match base(&c.ty) {
                                CqlType::Map(k, _) => (**k).clone(),
                                t => t.clone(),
                            };
                            self.term(&r.rhs, n, &k);
                        }
                        _ => self.term(&r.rhs, n, &c.ty),
                    }
                }
                RelationLhs::Token(_) => self.term(&r.rhs, "partition key token", &CqlType::BigInt),
                RelationLhs::Tuple(names) => {
                    let types: Vec<CqlType> = names
                        .iter()
                        .map(|n| table.column(n).map_or(CqlType::Blob, |c| c.ty.clone()))
                        .collect();
                    let label = format!("({})", names.join(","));
                    let tuple = CqlType::Tuple(types.clone());
                    match (&r.op, &r.rhs) {
                        (Operator::In, Term::Bind(_)) => self.term(
                            &r.rhs,
                            &format!("in({label})"),
                            &CqlType::List(Box::new(tuple)),
                        ),
                        (Operator::In, Term::List(items) | Term::Tuple(items)) => {
                            for i in items {
                                self.tuple_term(i, names, &types, &label);
                            }
                        }
                        (_, t) => self.tuple_term(t, names, &types, &label),
                    }
                }
                RelationLhs::Element { column, key } => {
                    if let Some(c) = table.column(column) {
                        if let CqlType::Map(k, v) = base(&c.ty) {
                            self.term(key, &format!("key({column})"), k);
                            self.term(&r.rhs, &format!("value({column})"), v);
                        }
                    }
                }
            }
        }
    }

    fn tuple_term(&mut self, t: &Term, names: &[String], types: &[CqlType], label: &str) {
        match t {
            Term::Tuple(items) => {
                for ((i, n), ty) in items.iter().zip(names).zip(types) {
                    self.term(i, n, ty);
                }
            }
            other => self.term(other, label, &CqlType::Tuple(types.to_vec())),
        }
    }

    /// Records the markers of a statement; `resolve` finds a statement's table.
    pub(crate) fn statement(
        &mut self,
        stmt: &Statement,
        resolve: &dyn Fn(&ringdb_cql::ast::QualifiedName) -> Option<&'a TableDef>,
    ) {
        match stmt {
            Statement::Insert(i) => {
                self.table = resolve(&i.table);
                let Some(t) = self.table else { return };
                for (name, v) in i.columns.iter().zip(&i.values) {
                    if let Some(c) = t.column(name) {
                        self.term(v, name, &c.ty);
                    }
                }
                self.using(&i.using);
            }
            Statement::Update(u) => {
                self.table = resolve(&u.table);
                let Some(t) = self.table else { return };
                self.using(&u.using);
                for a in &u.assignments {
                    match a {
                        Assignment::Set { column, value }
                        | Assignment::Append { column, value }
                        | Assignment::Prepend { column, value } => {
                            if let Some(c) = t.column(column) {
                                self.term(value, column, &c.ty);
                            }
                        }
                        Assignment::Remove { column, value } => {
                            if let Some(c) = t.column(column) {
                                let ty = match base(&c.ty) {
                                    CqlType::Map(k, _) => CqlType::Set(k.clone()),
                                    _ => c.ty.clone(),
                                };
                                self.term(value, column, &ty);
                            }
                        }
                        Assignment::SetElement { column, key, value } => {
                            if let Some(c) = t.column(column) {
                                match base(&c.ty) {
                                    CqlType::Map(k, v) => {
                                        self.term(key, &format!("key({column})"), k);
                                        self.term(value, &format!("value({column})"), v);
                                    }
                                    CqlType::List(e) => {
                                        self.term(key, &format!("idx({column})"), &CqlType::Int);
                                        self.term(value, &format!("value({column})"), e);
                                    }
                                    _ => {}
                                }
                            }
                        }
                    }
                }
                self.relations(t, &u.where_clause);
                self.relations(t, &u.conditions);
            }
            Statement::Delete(d) => {
                self.table = resolve(&d.table);
                let Some(t) = self.table else { return };
                for target in &d.columns {
                    if let (Some(c), Some(e)) = (t.column(&target.column), &target.element) {
                        match base(&c.ty) {
                            CqlType::Map(k, _) => {
                                self.term(e, &format!("key({})", target.column), k)
                            }
                            CqlType::List(_) => {
                                self.term(e, &format!("idx({})", target.column), &CqlType::Int)
                            }
                            _ => {}
                        }
                    }
                }
                self.using(&d.using);
                self.relations(t, &d.where_clause);
                self.relations(t, &d.conditions);
            }
            Statement::Select(s) => {
                self.table = resolve(&s.table);
                let Some(t) = self.table else { return };
                self.relations(t, &s.where_clause);
                if let Some(l) = &s.per_partition_limit {
                    self.term(l, "[per_partition_limit]", &CqlType::Int);
                }
                if let Some(l) = &s.limit {
                    self.term(l, "[limit]", &CqlType::Int);
                }
            }
            Statement::Batch(b) => {
                for s in &b.statements {
                    self.statement(s, resolve);
                }
                self.table = None;
                self.using(&b.using);
            }
            _ => {}
        }
    }

    /// The specs, with a blob placeholder for markers whose type could not be inferred.
    pub(crate) fn finish(self) -> Vec<ColumnSpec> {
        self.specs
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                s.unwrap_or(ColumnSpec {
                    keyspace: String::new(),
                    table: String::new(),
                    name: format!("[{i}]"),
                    ty: CqlType::Blob,
                })
            })
            .collect()
    }
}

/// For each partition key column in order, the index of the variable binding it by `=`; empty
/// unless every one is bound that way.
pub(crate) fn pk_indices(stmt: &Statement, table: &TableDef) -> Vec<u16> {
    let pk = table.partition_key();
    let mut out = Vec::with_capacity(pk.len());
    for c in pk {
        let idx =
            match stmt {
                Statement::Insert(i) => i.columns.iter().position(|n| *n == c.name).and_then(|p| {
                    match i.values.get(p) {
                        Some(Term::Bind(m)) => Some(m.index),
                        _ => None,
                    }
                }),
                Statement::Select(s) => eq_marker(&s.where_clause, &c.name),
                Statement::Update(u) => eq_marker(&u.where_clause, &c.name),
                Statement::Delete(d) => eq_marker(&d.where_clause, &c.name),
                _ => None,
            };
        match idx.and_then(|i| u16::try_from(i).ok()) {
            Some(i) if matches!(c.kind, ColumnKind::PartitionKey(_)) => out.push(i),
            _ => return Vec::new(),
        }
    }
    out
}

fn eq_marker(rels: &[Relation], column: &str) -> Option<usize> {
    rels.iter().find_map(|r| match (&r.lhs, r.op, &r.rhs) {
        (RelationLhs::Column(n), Operator::Eq, Term::Bind(m)) if n == column => Some(m.index),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepared(id: u8) -> Arc<Prepared> {
        Arc::new(Prepared {
            id: vec![id],
            variables: Vec::new(),
            pk_indices: Vec::new(),
            result_columns: Vec::new(),
            keyspace: None,
            query: String::new(),
            statement: Statement::Use("ks".into()),
        })
    }

    #[test]
    fn lru_eviction() {
        let mut c = PreparedCache::new(2);
        c.insert(prepared(1));
        c.insert(prepared(2));
        assert!(c.get(&[1]).is_some());
        c.insert(prepared(3));
        assert!(c.get(&[2]).is_none(), "least recently used is evicted");
        assert!(c.get(&[1]).is_some());
        assert!(c.get(&[3]).is_some());
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn ids_are_deterministic() {
        assert_eq!(
            prepared_id(Some("ks"), "SELECT 1"),
            prepared_id(Some("ks"), "SELECT 1")
        );
        assert_ne!(
            prepared_id(Some("ks"), "SELECT 1"),
            prepared_id(None, "SELECT 1")
        );
        assert_ne!(
            prepared_id(Some("k"), "sSELECT 1"),
            prepared_id(Some("ks"), "SELECT 1")
        );
        assert_eq!(prepared_id(None, "x").len(), 16);
    }
}
