//! The abstract syntax of CQL-lite statements.
//!
//! The parser produces these; the node's executor consumes them. Identifiers are already
//! normalized: unquoted names are lower-cased, `"Quoted"` names keep their case. Bind markers are
//! numbered by the parser in order of appearance (0-based), which is the order of the variables in
//! a PREPARED result and of the values in an EXECUTE.

use crate::types::CqlType;

/// One CQL statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    CreateKeyspace(CreateKeyspace),
    AlterKeyspace(CreateKeyspace),
    DropKeyspace {
        name: String,
        if_exists: bool,
    },
    Use(String),
    CreateTable(CreateTable),
    AlterTable(AlterTable),
    DropTable {
        table: QualifiedName,
        if_exists: bool,
    },
    Truncate(QualifiedName),
    Insert(Insert),
    Update(Update),
    Delete(Delete),
    Select(Select),
    Batch(Batch),
    Describe(Describe),
    /// `CREATE ROLE [IF NOT EXISTS] r [WITH ...]`
    CreateRole(CreateRole),
    /// `ALTER ROLE r WITH ...`
    AlterRole {
        name: String,
        options: RoleOptions,
    },
    /// `DROP ROLE [IF EXISTS] r`
    DropRole {
        name: String,
        if_exists: bool,
    },
    /// `LIST ROLES [OF r]`
    ListRoles {
        of: Option<String>,
    },
    /// `GRANT <permissions> ON <resource> TO r`
    Grant(Grant),
    /// `REVOKE <permissions> ON <resource> FROM r`
    Revoke(Grant),
    /// `LIST <permissions> [ON <resource>] [OF r]`
    ListPermissions(ListPermissions),
}

/// The `WITH` options of `CREATE ROLE` / `ALTER ROLE`; `None` is "not given".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RoleOptions {
    pub password: Option<String>,
    pub login: Option<bool>,
    pub superuser: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateRole {
    pub name: String,
    pub if_not_exists: bool,
    pub options: RoleOptions,
}

/// A permission on data resources, as CQL names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    Create,
    Alter,
    Drop,
    Select,
    Modify,
    Authorize,
}

impl Permission {
    /// Every permission, in Cassandra's listing order (what `ALL PERMISSIONS` means on data).
    pub const ALL: [Permission; 6] = [
        Permission::Create,
        Permission::Alter,
        Permission::Drop,
        Permission::Select,
        Permission::Modify,
        Permission::Authorize,
    ];

    /// The upper-case CQL name (also how it is stored in `system_auth.role_permissions`).
    pub fn name(self) -> &'static str {
        match self {
            Permission::Create => "CREATE",
            Permission::Alter => "ALTER",
            Permission::Drop => "DROP",
            Permission::Select => "SELECT",
            Permission::Modify => "MODIFY",
            Permission::Authorize => "AUTHORIZE",
        }
    }

    /// The permission named `name` (any case).
    pub fn from_name(name: &str) -> Option<Permission> {
        Permission::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(name))
    }
}

/// The data resources permissions are granted on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Resource {
    /// `ALL KEYSPACES`
    AllKeyspaces,
    /// `KEYSPACE k`
    Keyspace(String),
    /// `[TABLE] [k.]t` (the session keyspace applies when `k` is missing)
    Table(QualifiedName),
}

/// `GRANT` / `REVOKE`: which permissions, on what, to or from whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// `ALL [PERMISSIONS]` is every permission.
    pub permissions: Vec<Permission>,
    pub resource: Resource,
    pub role: String,
}

/// `LIST ALL PERMISSIONS | LIST <perm> [PERMISSION]`, optionally `ON <resource>`, `OF <role>`,
/// `NORECURSIVE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPermissions {
    /// The permissions asked about (all of them for `ALL`).
    pub permissions: Vec<Permission>,
    pub resource: Option<Resource>,
    pub role: Option<String>,
    /// Only permissions granted on the resource itself, not on the resources containing it.
    pub norecursive: bool,
}

/// `keyspace.name` or just `name` (the session's keyspace applies).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QualifiedName {
    pub keyspace: Option<String>,
    pub name: String,
}

/// `CREATE KEYSPACE` (and `ALTER KEYSPACE`, which has the same shape; `if_not_exists` is then
/// always false).
#[derive(Debug, Clone, PartialEq)]
pub struct CreateKeyspace {
    pub name: String,
    pub if_not_exists: bool,
    /// The `replication` map as written, e.g. `{'class': 'SimpleStrategy', 'replication_factor': '1'}`;
    /// numeric values are kept as their text.
    pub replication: Vec<(String, String)>,
    pub durable_writes: Option<bool>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ColumnDef {
    pub name: String,
    pub ty: CqlType,
    pub is_static: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Asc,
    Desc,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreateTable {
    pub table: QualifiedName,
    pub if_not_exists: bool,
    pub columns: Vec<ColumnDef>,
    /// Partition key column names, in order (one for a simple key).
    pub partition_key: Vec<String>,
    /// Clustering column names, in order.
    pub clustering_key: Vec<String>,
    /// From `WITH CLUSTERING ORDER BY (c1 DESC, ...)`; columns not named are ascending.
    pub clustering_order: Vec<(String, Order)>,
    /// Other `WITH name = value` options (e.g. `default_time_to_live`, `comment`, `gc_grace_seconds`).
    pub options: Vec<(String, OptionValue)>,
}

/// The value of a table option.
#[derive(Debug, Clone, PartialEq)]
pub enum OptionValue {
    Literal(Literal),
    Map(Vec<(String, String)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct AlterTable {
    pub table: QualifiedName,
    pub action: AlterTableAction,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AlterTableAction {
    Add(Vec<ColumnDef>),
    Drop(Vec<String>),
    With(Vec<(String, OptionValue)>),
}

/// `USING TTL t AND TIMESTAMP ts`; each may be a literal or a bind marker.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Using {
    pub ttl: Option<Term>,
    pub timestamp: Option<Term>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Insert {
    pub table: QualifiedName,
    pub columns: Vec<String>,
    pub values: Vec<Term>,
    pub if_not_exists: bool,
    pub using: Using,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    pub table: QualifiedName,
    pub using: Using,
    pub assignments: Vec<Assignment>,
    pub where_clause: Vec<Relation>,
    pub if_exists: bool,
    /// `IF col = v AND ...` (lightweight transactions; the executor may reject them).
    pub conditions: Vec<Relation>,
}

/// One `SET` item of an UPDATE.
#[derive(Debug, Clone, PartialEq)]
pub enum Assignment {
    /// `c = v`
    Set { column: String, value: Term },
    /// `c[k] = v` (map key or list index)
    SetElement {
        column: String,
        key: Term,
        value: Term,
    },
    /// `c = c + v` (collections; counters)
    Append { column: String, value: Term },
    /// `c = v + c` (lists)
    Prepend { column: String, value: Term },
    /// `c = c - v`
    Remove { column: String, value: Term },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Delete {
    pub table: QualifiedName,
    /// Empty means the whole row (or partition, or range) selected by the WHERE clause.
    pub columns: Vec<DeleteTarget>,
    pub using: Using,
    pub where_clause: Vec<Relation>,
    pub if_exists: bool,
    pub conditions: Vec<Relation>,
}

/// `c` or `c[k]` in `DELETE c, m['k'] FROM ...`.
#[derive(Debug, Clone, PartialEq)]
pub struct DeleteTarget {
    pub column: String,
    pub element: Option<Term>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Select {
    pub table: QualifiedName,
    pub distinct: bool,
    pub json: bool,
    /// Empty means `*`.
    pub selectors: Vec<Selector>,
    pub where_clause: Vec<Relation>,
    pub order_by: Vec<(String, Order)>,
    pub per_partition_limit: Option<Term>,
    pub limit: Option<Term>,
    pub allow_filtering: bool,
}

/// One item of a select list, with its optional `AS alias`.
#[derive(Debug, Clone, PartialEq)]
pub struct Selector {
    pub expr: SelectExpr,
    pub alias: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SelectExpr {
    Column(String),
    /// `COUNT(*)` or `COUNT(1)`
    CountAll,
    /// `writetime(c)`
    WriteTime(String),
    /// `ttl(c)`
    Ttl(String),
    /// `token(k1, k2, ...)` or any other function, e.g. `toTimestamp(now())`, `count(c)`.
    Function {
        name: String,
        args: Vec<SelectExpr>,
    },
    /// A literal term in a select list (rare; e.g. inside a function call).
    Term(Term),
}

/// `lhs op rhs` in a WHERE (or IF) clause.
#[derive(Debug, Clone, PartialEq)]
pub struct Relation {
    pub lhs: RelationLhs,
    pub op: Operator,
    pub rhs: Term,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RelationLhs {
    Column(String),
    /// `token(k1, k2)`
    Token(Vec<String>),
    /// `(c1, c2)` multi-column relation on clustering columns.
    Tuple(Vec<String>),
    /// `m['key']` in a condition.
    Element {
        column: String,
        key: Term,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Eq,
    Neq,
    Lt,
    Le,
    Gt,
    Ge,
    /// The rhs is a `Term::List` of values, or a single bind marker for the whole list.
    In,
    Contains,
    ContainsKey,
}

/// A value expression in a statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Term {
    Literal(Literal),
    /// `?` or `:name`.
    Bind(BindMarker),
    /// `[a, b]`
    List(Vec<Term>),
    /// `{a, b}`
    Set(Vec<Term>),
    /// `{k: v, ...}`; `{}` parses as an empty map (the executor coerces it to an empty set when the
    /// column is a set).
    Map(Vec<(Term, Term)>),
    /// `(a, b)` — a tuple value or the right side of a multi-column relation.
    Tuple(Vec<Term>),
    /// `now()`, `uuid()`, `toTimestamp(now())`, `token(?)`...
    FunctionCall {
        name: String,
        args: Vec<Term>,
    },
    /// `(int) ?` — a type hint.
    Cast {
        ty: CqlType,
        term: Box<Term>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMarker {
    /// Position among all bind markers of the statement, from 0.
    pub index: usize,
    /// `Some("name")` for `:name`.
    pub name: Option<String>,
}

/// A literal constant as written; typed only when the executor knows the column's type.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Null,
    /// `'text'` with `''` unescaped, or `$$text$$`.
    String(String),
    /// Integer digits as written, with an optional leading `-` (may exceed i64 for varint).
    Integer(String),
    /// Float as written (`1.5`, `-2e10`), or `NaN` / `Infinity` / `-Infinity`.
    Float(String),
    Boolean(bool),
    /// A UUID constant, canonical lower-case text.
    Uuid(String),
    /// `0xCAFE` decoded to bytes.
    Blob(Vec<u8>),
    /// A duration constant such as `1h30m` or `P1D`, as written.
    Duration(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchKind {
    Logged,
    Unlogged,
    Counter,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub kind: BatchKind,
    pub using: Using,
    /// Only `Statement::Insert`, `Statement::Update` and `Statement::Delete`.
    pub statements: Vec<Statement>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Describe {
    Keyspaces,
    /// `DESCRIBE KEYSPACE k` (`None`: the session's keyspace).
    Keyspace(Option<String>),
    Tables,
    Table(QualifiedName),
    Cluster,
    /// `DESCRIBE SCHEMA` / `DESCRIBE FULL SCHEMA`.
    Schema {
        full: bool,
    },
    /// `DESCRIBE name`: a keyspace or a table, whichever exists.
    Name(QualifiedName),
}

impl Statement {
    /// Number of bind markers in the statement (for PREPARE's variable metadata).
    /// The parser fills indices 0..n; this counts them back.
    pub fn bind_marker_count(&self) -> usize {
        let mut max: Option<usize> = None;
        visit_terms(self, &mut |t| {
            if let Term::Bind(b) = t {
                max = Some(max.map_or(b.index, |m| m.max(b.index)));
            }
        });
        max.map_or(0, |m| m + 1)
    }
}

/// Calls `f` on every term of a statement, depth-first, including nested terms.
pub fn visit_terms(stmt: &Statement, f: &mut dyn FnMut(&Term)) {
    fn term(t: &Term, f: &mut dyn FnMut(&Term)) {
        f(t);
        match t {
            Term::List(ts) | Term::Set(ts) | Term::Tuple(ts) => ts.iter().for_each(|t| term(t, f)),
            Term::Map(kvs) => kvs.iter().for_each(|(k, v)| {
                term(k, f);
                term(v, f)
            }),
            Term::FunctionCall { args, .. } => args.iter().for_each(|t| term(t, f)),
            Term::Cast { term: t, .. } => term(t, f),
            Term::Literal(_) | Term::Bind(_) => {}
        }
    }
    fn using(u: &Using, f: &mut dyn FnMut(&Term)) {
        u.ttl
            .iter()
            .chain(u.timestamp.iter())
            .for_each(|t| term(t, f));
    }
    fn relations(rs: &[Relation], f: &mut dyn FnMut(&Term)) {
        for r in rs {
            if let RelationLhs::Element { key, .. } = &r.lhs {
                term(key, f);
            }
            term(&r.rhs, f);
        }
    }
    fn select_expr(e: &SelectExpr, f: &mut dyn FnMut(&Term)) {
        match e {
            SelectExpr::Term(t) => term(t, f),
            SelectExpr::Function { args, .. } => args.iter().for_each(|a| select_expr(a, f)),
            _ => {}
        }
    }
    match stmt {
        Statement::Insert(i) => {
            i.values.iter().for_each(|t| term(t, f));
            using(&i.using, f);
        }
        Statement::Update(u) => {
            using(&u.using, f);
            for a in &u.assignments {
                match a {
                    Assignment::Set { value, .. }
                    | Assignment::Append { value, .. }
                    | Assignment::Prepend { value, .. }
                    | Assignment::Remove { value, .. } => term(value, f),
                    Assignment::SetElement { key, value, .. } => {
                        term(key, f);
                        term(value, f)
                    }
                }
            }
            relations(&u.where_clause, f);
            relations(&u.conditions, f);
        }
        Statement::Delete(d) => {
            d.columns
                .iter()
                .filter_map(|c| c.element.as_ref())
                .for_each(|t| term(t, f));
            using(&d.using, f);
            relations(&d.where_clause, f);
            relations(&d.conditions, f);
        }
        Statement::Select(s) => {
            s.selectors.iter().for_each(|sel| select_expr(&sel.expr, f));
            relations(&s.where_clause, f);
            s.per_partition_limit
                .iter()
                .chain(s.limit.iter())
                .for_each(|t| term(t, f));
        }
        Statement::Batch(b) => {
            using(&b.using, f);
            b.statements.iter().for_each(|s| visit_terms(s, f));
        }
        _ => {}
    }
}
