//! Table-driven parser cases: every statement form, checked against the exact syntax tree.

use ringdb_cql::ast::*;
use ringdb_cql::parser::{parse_statement, parse_statements, parse_type};
use ringdb_cql::types::CqlType;

// ---- builders ------------------------------------------------------------------------------

fn s(v: &str) -> String {
    v.to_string()
}

fn table(name: &str) -> QualifiedName {
    QualifiedName {
        keyspace: None,
        name: s(name),
    }
}

fn qtable(ks: &str, name: &str) -> QualifiedName {
    QualifiedName {
        keyspace: Some(s(ks)),
        name: s(name),
    }
}

fn lit(l: Literal) -> Term {
    Term::Literal(l)
}

fn int(v: &str) -> Term {
    lit(Literal::Integer(s(v)))
}

fn float(v: &str) -> Term {
    lit(Literal::Float(s(v)))
}

fn text(v: &str) -> Term {
    lit(Literal::String(s(v)))
}

fn bind(index: usize) -> Term {
    Term::Bind(BindMarker { index, name: None })
}

fn named(index: usize, name: &str) -> Term {
    Term::Bind(BindMarker {
        index,
        name: Some(s(name)),
    })
}

fn call(name: &str, args: Vec<Term>) -> Term {
    Term::FunctionCall {
        name: s(name),
        args,
    }
}

fn rel(column: &str, op: Operator, rhs: Term) -> Relation {
    Relation {
        lhs: RelationLhs::Column(s(column)),
        op,
        rhs,
    }
}

fn coldef(name: &str, ty: CqlType) -> ColumnDef {
    ColumnDef {
        name: s(name),
        ty,
        is_static: false,
    }
}

fn sel(expr: SelectExpr) -> Selector {
    Selector { expr, alias: None }
}

fn column(name: &str) -> SelectExpr {
    SelectExpr::Column(s(name))
}

fn select_from(name: &str) -> Select {
    Select {
        table: table(name),
        distinct: false,
        json: false,
        selectors: vec![],
        where_clause: vec![],
        order_by: vec![],
        per_partition_limit: None,
        limit: None,
        allow_filtering: false,
    }
}

fn list(t: CqlType) -> CqlType {
    CqlType::List(Box::new(t))
}

fn set(t: CqlType) -> CqlType {
    CqlType::Set(Box::new(t))
}

fn map(k: CqlType, v: CqlType) -> CqlType {
    CqlType::Map(Box::new(k), Box::new(v))
}

fn frozen(t: CqlType) -> CqlType {
    CqlType::Frozen(Box::new(t))
}

/// Parses each input and compares with the expected statement, naming the failing case.
fn check(cases: Vec<(&str, Statement)>) {
    for (input, expected) in cases {
        match parse_statement(input) {
            Ok(got) => assert_eq!(got, expected, "input: {input}"),
            Err(e) => panic!("input: {input}\nerror: {e}"),
        }
    }
}

// ---- keyspaces -----------------------------------------------------------------------------

#[test]
fn keyspace_statements() {
    let simple = vec![
        (s("class"), s("SimpleStrategy")),
        (s("replication_factor"), s("1")),
    ];
    check(vec![
        (
            "CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
            Statement::CreateKeyspace(CreateKeyspace {
                name: s("ks"),
                if_not_exists: false,
                replication: simple.clone(),
                durable_writes: None,
            }),
        ),
        (
            "create keyspace if not exists \"MyKs\" with REPLICATION = {'class': 'NetworkTopologyStrategy', 'dc1': '3', 'dc2': 2} and durable_writes = false;",
            Statement::CreateKeyspace(CreateKeyspace {
                name: s("MyKs"),
                if_not_exists: true,
                replication: vec![
                    (s("class"), s("NetworkTopologyStrategy")),
                    (s("dc1"), s("3")),
                    (s("dc2"), s("2")),
                ],
                durable_writes: Some(false),
            }),
        ),
        (
            "CREATE SCHEMA Ks WITH durable_writes = 'true' AND replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
            Statement::CreateKeyspace(CreateKeyspace {
                name: s("ks"),
                if_not_exists: false,
                replication: simple.clone(),
                durable_writes: Some(true),
            }),
        ),
        (
            "ALTER KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1} AND durable_writes = true",
            Statement::AlterKeyspace(CreateKeyspace {
                name: s("ks"),
                if_not_exists: false,
                replication: simple.clone(),
                durable_writes: Some(true),
            }),
        ),
        (
            "ALTER KEYSPACE ks WITH durable_writes = false",
            Statement::AlterKeyspace(CreateKeyspace {
                name: s("ks"),
                if_not_exists: false,
                replication: vec![],
                durable_writes: Some(false),
            }),
        ),
        (
            "DROP KEYSPACE ks",
            Statement::DropKeyspace {
                name: s("ks"),
                if_exists: false,
            },
        ),
        (
            "drop keyspace if exists KS;",
            Statement::DropKeyspace {
                name: s("ks"),
                if_exists: true,
            },
        ),
        ("USE ks", Statement::Use(s("ks"))),
        ("use MyKs;", Statement::Use(s("myks"))),
        ("USE \"MyKs\"", Statement::Use(s("MyKs"))),
        ("USE \"a\"\"b\"", Statement::Use(s("a\"b"))),
    ]);
}

// ---- tables --------------------------------------------------------------------------------

#[test]
fn create_table_forms() {
    let base = |columns, pk: Vec<&str>, ck: Vec<&str>| CreateTable {
        table: table("t"),
        if_not_exists: false,
        columns,
        partition_key: pk.into_iter().map(s).collect(),
        clustering_key: ck.into_iter().map(s).collect(),
        clustering_order: vec![],
        options: vec![],
    };
    let abcd = || {
        vec![
            coldef("a", CqlType::Int),
            coldef("b", CqlType::Text),
            coldef("c", CqlType::Timestamp),
            coldef("d", CqlType::Uuid),
            coldef("v", CqlType::Blob),
        ]
    };
    let mut compound = base(abcd(), vec!["a", "b"], vec!["c", "d"]);
    compound.table = qtable("ks", "t");
    compound.if_not_exists = true;
    compound.clustering_order = vec![(s("c"), Order::Desc), (s("d"), Order::Asc)];
    compound.options = vec![
        (s("comment"), OptionValue::Literal(Literal::String(s("x")))),
        (
            s("default_time_to_live"),
            OptionValue::Literal(Literal::Integer(s("10"))),
        ),
        (
            s("gc_grace_seconds"),
            OptionValue::Literal(Literal::Integer(s("864000"))),
        ),
        (
            s("compaction"),
            OptionValue::Map(vec![(s("class"), s("SizeTieredCompactionStrategy"))]),
        ),
    ];
    let mut with_static = base(
        vec![
            coldef("k", CqlType::Int),
            coldef("c", CqlType::Int),
            ColumnDef {
                name: s("s"),
                ty: CqlType::Text,
                is_static: true,
            },
        ],
        vec!["k"],
        vec!["c"],
    );
    with_static.options = vec![(
        s("bloom_filter_fp_chance"),
        OptionValue::Literal(Literal::Float(s("0.01"))),
    )];
    check(vec![
        (
            "CREATE TABLE t (k int PRIMARY KEY, v text)",
            Statement::CreateTable(base(
                vec![coldef("k", CqlType::Int), coldef("v", CqlType::Text)],
                vec!["k"],
                vec![],
            )),
        ),
        (
            "CREATE TABLE IF NOT EXISTS ks.t (a int, b text, c timestamp, d uuid, v blob, \
             PRIMARY KEY ((a, b), c, d)) WITH CLUSTERING ORDER BY (c DESC, d ASC) \
             AND comment = 'x' AND default_time_to_live = 10 AND gc_grace_seconds = 864000 \
             AND compaction = {'class': 'SizeTieredCompactionStrategy'};",
            Statement::CreateTable(compound),
        ),
        (
            "CREATE TABLE t (a int, b text, c timestamp, d uuid, v blob, PRIMARY KEY (a, c))",
            Statement::CreateTable(base(abcd(), vec!["a"], vec!["c"])),
        ),
        (
            "CREATE TABLE t (a int, b text, c timestamp, d uuid, v blob, PRIMARY KEY (a))",
            Statement::CreateTable(base(abcd(), vec!["a"], vec![])),
        ),
        (
            "CREATE TABLE t (a int, b text, c timestamp, d uuid, v blob, PRIMARY KEY ((a)),)",
            Statement::CreateTable(base(abcd(), vec!["a"], vec![])),
        ),
        (
            "create columnfamily t (k int, c int, s text static, primary key (k, c)) \
             with bloom_filter_fp_chance = 0.01",
            Statement::CreateTable(with_static),
        ),
        (
            "CREATE TABLE t (\"Key\" int PRIMARY KEY, \"select\" text)",
            Statement::CreateTable({
                let mut t = base(
                    vec![coldef("Key", CqlType::Int), coldef("select", CqlType::Text)],
                    vec![],
                    vec![],
                );
                t.partition_key = vec![s("Key")];
                t
            }),
        ),
        (
            // Unreserved keywords are fine as column names.
            "CREATE TABLE t (key int PRIMARY KEY, ttl int, count int, text text, json int)",
            Statement::CreateTable(base(
                vec![
                    coldef("key", CqlType::Int),
                    coldef("ttl", CqlType::Int),
                    coldef("count", CqlType::Int),
                    coldef("text", CqlType::Text),
                    coldef("json", CqlType::Int),
                ],
                vec!["key"],
                vec![],
            )),
        ),
    ]);
}

#[test]
fn every_type_name() {
    let cases = [
        ("ascii", CqlType::Ascii),
        ("text", CqlType::Text),
        ("varchar", CqlType::Text),
        ("boolean", CqlType::Boolean),
        ("tinyint", CqlType::TinyInt),
        ("smallint", CqlType::SmallInt),
        ("int", CqlType::Int),
        ("bigint", CqlType::BigInt),
        ("varint", CqlType::Varint),
        ("float", CqlType::Float),
        ("double", CqlType::Double),
        ("decimal", CqlType::Decimal),
        ("uuid", CqlType::Uuid),
        ("timeuuid", CqlType::Timeuuid),
        ("timestamp", CqlType::Timestamp),
        ("date", CqlType::Date),
        ("time", CqlType::Time),
        ("blob", CqlType::Blob),
        ("inet", CqlType::Inet),
        ("counter", CqlType::Counter),
        ("duration", CqlType::Duration),
        ("INT", CqlType::Int),
        ("list<int>", list(CqlType::Int)),
        ("set<text>", set(CqlType::Text)),
        ("map<text, int>", map(CqlType::Text, CqlType::Int)),
        (
            "tuple<int, text, double>",
            CqlType::Tuple(vec![CqlType::Int, CqlType::Text, CqlType::Double]),
        ),
        (
            "frozen<map<text, int>>",
            frozen(map(CqlType::Text, CqlType::Int)),
        ),
        (
            "map<text,frozen<list<frozen<set<int>>>>>",
            map(CqlType::Text, frozen(list(frozen(set(CqlType::Int))))),
        ),
        (
            "frozen<tuple<int>>",
            frozen(CqlType::Tuple(vec![CqlType::Int])),
        ),
        (
            "'org.apache.cassandra.db.marshal.BytesType'",
            CqlType::Custom(s("org.apache.cassandra.db.marshal.BytesType")),
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(parse_type(input), Ok(expected.clone()), "type: {input}");
        // The type's own rendering parses back to itself.
        if !matches!(expected, CqlType::Custom(_)) {
            assert_eq!(parse_type(&expected.to_string()), Ok(expected.clone()));
        }
        // And the same type works as a column type.
        let stmt = parse_statement(&format!("CREATE TABLE t (k int PRIMARY KEY, v {input})"))
            .unwrap_or_else(|e| panic!("column of type {input}: {e}"));
        let Statement::CreateTable(t) = stmt else {
            panic!("not a CREATE TABLE")
        };
        assert_eq!(t.columns[1].ty, expected, "column of type {input}");
    }
}

#[test]
fn alter_drop_truncate_table() {
    check(vec![
        (
            "ALTER TABLE t ADD c int",
            Statement::AlterTable(AlterTable {
                table: table("t"),
                action: AlterTableAction::Add(vec![coldef("c", CqlType::Int)]),
            }),
        ),
        (
            "ALTER TABLE ks.t ADD (c1 int, c2 map<text, int>, s3 text static)",
            Statement::AlterTable(AlterTable {
                table: qtable("ks", "t"),
                action: AlterTableAction::Add(vec![
                    coldef("c1", CqlType::Int),
                    coldef("c2", map(CqlType::Text, CqlType::Int)),
                    ColumnDef {
                        name: s("s3"),
                        ty: CqlType::Text,
                        is_static: true,
                    },
                ]),
            }),
        ),
        (
            "ALTER TABLE t DROP c",
            Statement::AlterTable(AlterTable {
                table: table("t"),
                action: AlterTableAction::Drop(vec![s("c")]),
            }),
        ),
        (
            "alter table t drop (c1, \"C2\")",
            Statement::AlterTable(AlterTable {
                table: table("t"),
                action: AlterTableAction::Drop(vec![s("c1"), s("C2")]),
            }),
        ),
        (
            "ALTER TABLE t WITH default_time_to_live = 0 AND caching = {'keys': 'ALL', 'rows_per_partition': 'NONE'}",
            Statement::AlterTable(AlterTable {
                table: table("t"),
                action: AlterTableAction::With(vec![
                    (
                        s("default_time_to_live"),
                        OptionValue::Literal(Literal::Integer(s("0"))),
                    ),
                    (
                        s("caching"),
                        OptionValue::Map(vec![
                            (s("keys"), s("ALL")),
                            (s("rows_per_partition"), s("NONE")),
                        ]),
                    ),
                ]),
            }),
        ),
        (
            "DROP TABLE t",
            Statement::DropTable {
                table: table("t"),
                if_exists: false,
            },
        ),
        (
            "DROP TABLE IF EXISTS ks.\"T\"",
            Statement::DropTable {
                table: qtable("ks", "T"),
                if_exists: true,
            },
        ),
        ("TRUNCATE t", Statement::Truncate(table("t"))),
        ("TRUNCATE TABLE ks.t;", Statement::Truncate(qtable("ks", "t"))),
    ]);
}

// ---- INSERT --------------------------------------------------------------------------------

#[test]
fn insert_forms() {
    let insert = |values: Vec<Term>, if_not_exists, using| {
        Statement::Insert(Insert {
            table: table("t"),
            columns: vec![s("a"), s("b")],
            values,
            if_not_exists,
            using,
        })
    };
    check(vec![
        (
            "INSERT INTO t (a, b) VALUES (1, 'x')",
            insert(vec![int("1"), text("x")], false, Using::default()),
        ),
        (
            "insert into t (A, b) values (?, ?) IF NOT EXISTS",
            insert(vec![bind(0), bind(1)], true, Using::default()),
        ),
        (
            "INSERT INTO t (a, b) VALUES (1, 'x') USING TTL 86400 AND TIMESTAMP 123",
            insert(
                vec![int("1"), text("x")],
                false,
                Using {
                    ttl: Some(int("86400")),
                    timestamp: Some(int("123")),
                },
            ),
        ),
        (
            "INSERT INTO t (a, b) VALUES (?, ?) IF NOT EXISTS USING TIMESTAMP ? AND TTL ?",
            insert(
                vec![bind(0), bind(1)],
                true,
                Using {
                    ttl: Some(bind(3)),
                    timestamp: Some(bind(2)),
                },
            ),
        ),
        (
            "INSERT INTO t (a, b) VALUES (:a, :\"B\") USING TTL :ttl",
            insert(
                vec![named(0, "a"), named(1, "B")],
                false,
                Using {
                    ttl: Some(named(2, "ttl")),
                    timestamp: None,
                },
            ),
        ),
        (
            "INSERT INTO t (a, b) VALUES (-5, toTimestamp(now()))",
            insert(
                vec![int("-5"), call("totimestamp", vec![call("now", vec![])])],
                false,
                Using::default(),
            ),
        ),
    ]);
}

// ---- terms ---------------------------------------------------------------------------------

/// Parses `INSERT INTO t (v) VALUES (<term>)` and returns the term.
fn term_of(term: &str) -> Term {
    let input = format!("INSERT INTO t (v) VALUES ({term})");
    match parse_statement(&input) {
        Ok(Statement::Insert(mut i)) => i.values.remove(0),
        other => panic!("term {term}: {other:?}"),
    }
}

#[test]
fn literal_terms() {
    let cases = vec![
        ("'it''s'", text("it's")),
        ("''", text("")),
        ("$$raw 'quoted' $ text$$", text("raw 'quoted' $ text")),
        ("$$$$", text("")),
        ("'multi\nline'", text("multi\nline")),
        ("'héllo ☃'", text("héllo ☃")),
        ("42", int("42")),
        ("-42", int("-42")),
        ("- 42", int("-42")),
        (
            "123456789012345678901234567890",
            int("123456789012345678901234567890"),
        ),
        ("1.5", float("1.5")),
        ("-2e10", float("-2e10")),
        ("1E-3", float("1E-3")),
        ("3.", float("3.")),
        ("NaN", float("NaN")),
        ("nan", float("NaN")),
        ("-NaN", float("NaN")),
        ("Infinity", float("Infinity")),
        ("-Infinity", float("-Infinity")),
        ("true", lit(Literal::Boolean(true))),
        ("FALSE", lit(Literal::Boolean(false))),
        ("null", lit(Literal::Null)),
        ("NULL", lit(Literal::Null)),
        (
            "123e4567-e89b-12d3-a456-426614174000",
            lit(Literal::Uuid(s("123e4567-e89b-12d3-a456-426614174000"))),
        ),
        (
            "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
            lit(Literal::Uuid(s("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"))),
        ),
        ("0xCAFE", lit(Literal::Blob(vec![0xca, 0xfe]))),
        ("0x", lit(Literal::Blob(vec![]))),
        ("0X00ff", lit(Literal::Blob(vec![0x00, 0xff]))),
        ("1h30m", lit(Literal::Duration(s("1h30m")))),
        ("-10ms", lit(Literal::Duration(s("-10ms")))),
        ("2mo3d4us", lit(Literal::Duration(s("2mo3d4us")))),
        ("12µs", lit(Literal::Duration(s("12µs")))),
        ("P1D", lit(Literal::Duration(s("P1D")))),
        ("PT1H30M", lit(Literal::Duration(s("PT1H30M")))),
        ("-P2W", lit(Literal::Duration(s("-P2W")))),
        (
            "P0001-02-03T04:05:06",
            lit(Literal::Duration(s("P0001-02-03T04:05:06"))),
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(term_of(input), expected, "term: {input}");
    }
}

#[test]
fn composite_terms() {
    let cases = vec![
        ("[]", Term::List(vec![])),
        ("[1, 2]", Term::List(vec![int("1"), int("2")])),
        ("{}", Term::Map(vec![])),
        ("{'a', 'b'}", Term::Set(vec![text("a"), text("b")])),
        (
            "{'k': 1, 'l': -2}",
            Term::Map(vec![(text("k"), int("1")), (text("l"), int("-2"))]),
        ),
        ("(1, 'x')", Term::Tuple(vec![int("1"), text("x")])),
        ("(1)", Term::Tuple(vec![int("1")])),
        (
            "{1: [1, 2], 2: []}",
            Term::Map(vec![
                (int("1"), Term::List(vec![int("1"), int("2")])),
                (int("2"), Term::List(vec![])),
            ]),
        ),
        ("now()", call("now", vec![])),
        ("uuid()", call("uuid", vec![])),
        (
            "toTimestamp(now())",
            call("totimestamp", vec![call("now", vec![])]),
        ),
        ("system.now()", call("system.now", vec![])),
        ("\"MyFn\"(1)", call("MyFn", vec![int("1")])),
        ("token(?)", call("token", vec![bind(0)])),
        (
            "(int) ?",
            Term::Cast {
                ty: CqlType::Int,
                term: Box::new(bind(0)),
            },
        ),
        (
            "(frozen<list<int>>) [1]",
            Term::Cast {
                ty: frozen(list(CqlType::Int)),
                term: Box::new(Term::List(vec![int("1")])),
            },
        ),
        ("?", bind(0)),
        (":v", named(0, "v")),
        (
            "[?, :x, ?]",
            Term::List(vec![bind(0), named(1, "x"), bind(2)]),
        ),
        ("{?: :v}", Term::Map(vec![(bind(0), named(1, "v"))])),
    ];
    for (input, expected) in cases {
        assert_eq!(term_of(input), expected, "term: {input}");
    }
}

// ---- UPDATE --------------------------------------------------------------------------------

#[test]
fn update_forms() {
    let stmt = parse_statement(
        "UPDATE ks.t USING TTL 10 AND TIMESTAMP ? SET a = 1, m['k'] = 2, l = l + [1], l = [0] + l, \
         s = s - {'x'}, c = c + 1, d = d -1, e += 3, f -= ?, \"Q\" = \"Q\" + {'a': 1} \
         WHERE k = ? AND c IN (1, 2) IF EXISTS",
    )
    .unwrap();
    let expected = Statement::Update(Update {
        table: qtable("ks", "t"),
        using: Using {
            ttl: Some(int("10")),
            timestamp: Some(bind(0)),
        },
        assignments: vec![
            Assignment::Set {
                column: s("a"),
                value: int("1"),
            },
            Assignment::SetElement {
                column: s("m"),
                key: text("k"),
                value: int("2"),
            },
            Assignment::Append {
                column: s("l"),
                value: Term::List(vec![int("1")]),
            },
            Assignment::Prepend {
                column: s("l"),
                value: Term::List(vec![int("0")]),
            },
            Assignment::Remove {
                column: s("s"),
                value: Term::Set(vec![text("x")]),
            },
            Assignment::Append {
                column: s("c"),
                value: int("1"),
            },
            Assignment::Remove {
                column: s("d"),
                value: int("1"),
            },
            Assignment::Append {
                column: s("e"),
                value: int("3"),
            },
            Assignment::Remove {
                column: s("f"),
                value: bind(1),
            },
            Assignment::Append {
                column: s("Q"),
                value: Term::Map(vec![(text("a"), int("1"))]),
            },
        ],
        where_clause: vec![
            rel("k", Operator::Eq, bind(2)),
            rel("c", Operator::In, Term::List(vec![int("1"), int("2")])),
        ],
        if_exists: true,
        conditions: vec![],
    });
    assert_eq!(stmt, expected);
    assert_eq!(stmt.bind_marker_count(), 3);

    check(vec![
        (
            "UPDATE t SET v = -1 WHERE k = 0 IF v = 1 AND m['x'] != null AND w IN (1, 2)",
            Statement::Update(Update {
                table: table("t"),
                using: Using::default(),
                assignments: vec![Assignment::Set {
                    column: s("v"),
                    value: int("-1"),
                }],
                where_clause: vec![rel("k", Operator::Eq, int("0"))],
                if_exists: false,
                conditions: vec![
                    rel("v", Operator::Eq, int("1")),
                    Relation {
                        lhs: RelationLhs::Element {
                            column: s("m"),
                            key: text("x"),
                        },
                        op: Operator::Neq,
                        rhs: lit(Literal::Null),
                    },
                    rel("w", Operator::In, Term::List(vec![int("1"), int("2")])),
                ],
            }),
        ),
        (
            // A column named `exists` in a condition is not IF EXISTS.
            "UPDATE t SET v = 1 WHERE k = 0 IF exists = true",
            Statement::Update(Update {
                table: table("t"),
                using: Using::default(),
                assignments: vec![Assignment::Set {
                    column: s("v"),
                    value: int("1"),
                }],
                where_clause: vec![rel("k", Operator::Eq, int("0"))],
                if_exists: false,
                conditions: vec![rel("exists", Operator::Eq, lit(Literal::Boolean(true)))],
            }),
        ),
    ]);
}

// ---- DELETE --------------------------------------------------------------------------------

#[test]
fn delete_forms() {
    check(vec![
        (
            "DELETE FROM t WHERE k = 1",
            Statement::Delete(Delete {
                table: table("t"),
                columns: vec![],
                using: Using::default(),
                where_clause: vec![rel("k", Operator::Eq, int("1"))],
                if_exists: false,
                conditions: vec![],
            }),
        ),
        (
            "DELETE a, m['k'], l[?] FROM ks.t USING TIMESTAMP 5 WHERE k = ? AND c > 2 IF EXISTS",
            Statement::Delete(Delete {
                table: qtable("ks", "t"),
                columns: vec![
                    DeleteTarget {
                        column: s("a"),
                        element: None,
                    },
                    DeleteTarget {
                        column: s("m"),
                        element: Some(text("k")),
                    },
                    DeleteTarget {
                        column: s("l"),
                        element: Some(bind(0)),
                    },
                ],
                using: Using {
                    ttl: None,
                    timestamp: Some(int("5")),
                },
                where_clause: vec![
                    rel("k", Operator::Eq, bind(1)),
                    rel("c", Operator::Gt, int("2")),
                ],
                if_exists: true,
                conditions: vec![],
            }),
        ),
        (
            "DELETE v FROM t WHERE k = 1 IF v = 'x'",
            Statement::Delete(Delete {
                table: table("t"),
                columns: vec![DeleteTarget {
                    column: s("v"),
                    element: None,
                }],
                using: Using::default(),
                where_clause: vec![rel("k", Operator::Eq, int("1"))],
                if_exists: false,
                conditions: vec![rel("v", Operator::Eq, text("x"))],
            }),
        ),
    ]);
}

// ---- SELECT --------------------------------------------------------------------------------

#[test]
fn select_forms() {
    let mut full = select_from("t");
    full.table = qtable("ks", "t");
    full.distinct = true;
    full.selectors = vec![sel(column("k"))];
    full.where_clause = vec![
        rel("k", Operator::Eq, int("1")),
        rel("c", Operator::Ge, int("2")),
    ];
    full.order_by = vec![
        (s("c"), Order::Desc),
        (s("d"), Order::Asc),
        (s("e"), Order::Asc),
    ];
    full.per_partition_limit = Some(int("3"));
    full.limit = Some(int("10"));
    full.allow_filtering = true;

    let mut selectors = select_from("t");
    selectors.selectors = vec![
        sel(SelectExpr::CountAll),
        Selector {
            expr: SelectExpr::CountAll,
            alias: Some(s("n")),
        },
        sel(SelectExpr::WriteTime(s("v"))),
        sel(SelectExpr::Ttl(s("v"))),
        sel(SelectExpr::Function {
            name: s("token"),
            args: vec![column("a"), column("b")],
        }),
        Selector {
            expr: SelectExpr::Function {
                name: s("totimestamp"),
                args: vec![SelectExpr::Function {
                    name: s("now"),
                    args: vec![],
                }],
            },
            alias: Some(s("Now")),
        },
        sel(SelectExpr::Function {
            name: s("max"),
            args: vec![column("c")],
        }),
        sel(SelectExpr::Function {
            name: s("count"),
            args: vec![column("c")],
        }),
        sel(SelectExpr::Function {
            name: s("blobasint"),
            args: vec![SelectExpr::Term(lit(Literal::Blob(vec![0, 0, 0, 1])))],
        }),
        Selector {
            expr: column("Quoted"),
            alias: Some(s("q")),
        },
    ];

    let mut json = select_from("t");
    json.json = true;
    let mut json_col = select_from("t");
    json_col.selectors = vec![sel(column("json")), sel(column("distinct"))];
    let mut both = select_from("t");
    both.distinct = true;
    both.json = true;
    both.selectors = vec![sel(column("k"))];
    let mut ttl_col = select_from("t");
    ttl_col.selectors = vec![
        sel(column("ttl")),
        sel(column("writetime")),
        sel(column("key")),
    ];

    let mut binds = select_from("t");
    binds.where_clause = vec![rel("k", Operator::Eq, bind(0))];
    binds.per_partition_limit = Some(bind(1));
    binds.limit = Some(named(2, "lim"));

    check(vec![
        ("SELECT * FROM t", Statement::Select(select_from("t"))),
        ("select * from t;", Statement::Select(select_from("t"))),
        (
            "SELECT DISTINCT k FROM ks.t WHERE k = 1 AND c >= 2 ORDER BY c DESC, d ASC, e \
             PER PARTITION LIMIT 3 LIMIT 10 ALLOW FILTERING",
            Statement::Select(full),
        ),
        (
            "SELECT COUNT(*), count(1) AS n, writetime(v), TTL(v), token(a, b), \
             toTimestamp(now()) AS \"Now\", max(c), count(c), blobAsInt(0x00000001), \
             \"Quoted\" AS q FROM t",
            Statement::Select(selectors),
        ),
        ("SELECT JSON * FROM t", Statement::Select(json)),
        ("SELECT json, distinct FROM t", Statement::Select(json_col)),
        (
            "SELECT DISTINCT JSON k FROM t",
            Statement::Select(both.clone()),
        ),
        ("SELECT JSON DISTINCT k FROM t", Statement::Select(both)),
        (
            "SELECT ttl, writetime, key FROM t",
            Statement::Select(ttl_col),
        ),
        (
            "SELECT * FROM t WHERE k = ? PER PARTITION LIMIT ? LIMIT :lim",
            Statement::Select(binds),
        ),
    ]);
}

#[test]
fn relations() {
    let where_of = |clause: &str| -> Vec<Relation> {
        match parse_statement(&format!("SELECT * FROM t WHERE {clause}")) {
            Ok(Statement::Select(s)) => s.where_clause,
            other => panic!("{clause}: {other:?}"),
        }
    };
    let cases: Vec<(&str, Vec<Relation>)> = vec![
        ("a = 1", vec![rel("a", Operator::Eq, int("1"))]),
        ("a < 1", vec![rel("a", Operator::Lt, int("1"))]),
        ("a <= 1", vec![rel("a", Operator::Le, int("1"))]),
        ("a > 1", vec![rel("a", Operator::Gt, int("1"))]),
        ("a >= 1", vec![rel("a", Operator::Ge, int("1"))]),
        ("a != 1", vec![rel("a", Operator::Neq, int("1"))]),
        ("a IN ()", vec![rel("a", Operator::In, Term::List(vec![]))]),
        ("a in ?", vec![rel("a", Operator::In, bind(0))]),
        ("a IN :xs", vec![rel("a", Operator::In, named(0, "xs"))]),
        (
            "a IN (?, ?)",
            vec![rel("a", Operator::In, Term::List(vec![bind(0), bind(1)]))],
        ),
        (
            "s CONTAINS 'x'",
            vec![rel("s", Operator::Contains, text("x"))],
        ),
        (
            "m contains key 'k'",
            vec![rel("m", Operator::ContainsKey, text("k"))],
        ),
        (
            "m['k'] = 1",
            vec![Relation {
                lhs: RelationLhs::Element {
                    column: s("m"),
                    key: text("k"),
                },
                op: Operator::Eq,
                rhs: int("1"),
            }],
        ),
        (
            "token(a, b) > token(?, ?) AND TOKEN(a, b) <= -100",
            vec![
                Relation {
                    lhs: RelationLhs::Token(vec![s("a"), s("b")]),
                    op: Operator::Gt,
                    rhs: call("token", vec![bind(0), bind(1)]),
                },
                Relation {
                    lhs: RelationLhs::Token(vec![s("a"), s("b")]),
                    op: Operator::Le,
                    rhs: int("-100"),
                },
            ],
        ),
        (
            "k = 0 AND (c1, c2) > (1, 2)",
            vec![
                rel("k", Operator::Eq, int("0")),
                Relation {
                    lhs: RelationLhs::Tuple(vec![s("c1"), s("c2")]),
                    op: Operator::Gt,
                    rhs: Term::Tuple(vec![int("1"), int("2")]),
                },
            ],
        ),
        (
            "(c1, c2) IN ((1, 2), (3, 4))",
            vec![Relation {
                lhs: RelationLhs::Tuple(vec![s("c1"), s("c2")]),
                op: Operator::In,
                rhs: Term::List(vec![
                    Term::Tuple(vec![int("1"), int("2")]),
                    Term::Tuple(vec![int("3"), int("4")]),
                ]),
            }],
        ),
        (
            "(c1, c2) IN ?",
            vec![Relation {
                lhs: RelationLhs::Tuple(vec![s("c1"), s("c2")]),
                op: Operator::In,
                rhs: bind(0),
            }],
        ),
        (
            "(c1, c2) = ?",
            vec![Relation {
                lhs: RelationLhs::Tuple(vec![s("c1"), s("c2")]),
                op: Operator::Eq,
                rhs: bind(0),
            }],
        ),
        (
            "\"Col\" = 'x' AND key = 1",
            vec![
                rel("Col", Operator::Eq, text("x")),
                rel("key", Operator::Eq, int("1")),
            ],
        ),
    ];
    for (clause, expected) in cases {
        assert_eq!(where_of(clause), expected, "WHERE {clause}");
    }
}

// ---- BATCH ---------------------------------------------------------------------------------

#[test]
fn batches() {
    let insert = |v: Term| {
        Statement::Insert(Insert {
            table: table("t"),
            columns: vec![s("k"), s("v")],
            values: vec![int("1"), v],
            if_not_exists: false,
            using: Using::default(),
        })
    };
    let update = Statement::Update(Update {
        table: table("c"),
        using: Using::default(),
        assignments: vec![Assignment::Append {
            column: s("n"),
            value: int("1"),
        }],
        where_clause: vec![rel("k", Operator::Eq, bind(2))],
        if_exists: false,
        conditions: vec![],
    });
    let delete = Statement::Delete(Delete {
        table: table("t"),
        columns: vec![],
        using: Using::default(),
        where_clause: vec![rel("k", Operator::Eq, bind(3))],
        if_exists: false,
        conditions: vec![],
    });
    let stmt = parse_statement(
        "BEGIN BATCH USING TIMESTAMP ? \
           INSERT INTO t (k, v) VALUES (1, ?); \
           UPDATE c SET n = n + 1 WHERE k = ? \
           DELETE FROM t WHERE k = ?; \
         APPLY BATCH;",
    )
    .unwrap();
    assert_eq!(
        stmt,
        Statement::Batch(Batch {
            kind: BatchKind::Logged,
            using: Using {
                ttl: None,
                timestamp: Some(bind(0)),
            },
            statements: vec![insert(bind(1)), update, delete],
        })
    );
    assert_eq!(stmt.bind_marker_count(), 4);

    check(vec![
        (
            "begin unlogged batch insert into t (k, v) values (1, 2) apply batch",
            Statement::Batch(Batch {
                kind: BatchKind::Unlogged,
                using: Using::default(),
                statements: vec![insert(int("2"))],
            }),
        ),
        (
            "BEGIN COUNTER BATCH APPLY BATCH",
            Statement::Batch(Batch {
                kind: BatchKind::Counter,
                using: Using::default(),
                statements: vec![],
            }),
        ),
    ]);
}

// ---- DESCRIBE ------------------------------------------------------------------------------

#[test]
fn describe_forms() {
    check(vec![
        (
            "DESCRIBE KEYSPACES",
            Statement::Describe(Describe::Keyspaces),
        ),
        ("desc keyspaces;", Statement::Describe(Describe::Keyspaces)),
        (
            "DESCRIBE KEYSPACE",
            Statement::Describe(Describe::Keyspace(None)),
        ),
        (
            "DESCRIBE KEYSPACE ks",
            Statement::Describe(Describe::Keyspace(Some(s("ks")))),
        ),
        ("DESC TABLES", Statement::Describe(Describe::Tables)),
        (
            "DESCRIBE TABLE ks.t",
            Statement::Describe(Describe::Table(qtable("ks", "t"))),
        ),
        (
            "DESCRIBE TABLE t",
            Statement::Describe(Describe::Table(table("t"))),
        ),
        ("DESCRIBE CLUSTER", Statement::Describe(Describe::Cluster)),
        (
            "DESCRIBE SCHEMA",
            Statement::Describe(Describe::Schema { full: false }),
        ),
        (
            "DESCRIBE FULL SCHEMA",
            Statement::Describe(Describe::Schema { full: true }),
        ),
        (
            "DESCRIBE users",
            Statement::Describe(Describe::Name(table("users"))),
        ),
        (
            "DESC ks.t",
            Statement::Describe(Describe::Name(qtable("ks", "t"))),
        ),
        (
            "DESCRIBE \"keyspaces\"",
            Statement::Describe(Describe::Name(table("keyspaces"))),
        ),
    ]);
}

// ---- lexical matters -----------------------------------------------------------------------

#[test]
fn comments_whitespace_and_case() {
    let expected = {
        let mut s = select_from("t");
        s.where_clause = vec![rel("k", Operator::Eq, int("1"))];
        Statement::Select(s)
    };
    for input in [
        "SELECT * FROM t WHERE k = 1",
        "  select\t*\r\nfrom T where K=1 ;  ",
        "-- leading comment\nSELECT * FROM t WHERE k = 1; -- trailing",
        "// slashes\nSELECT * /* inline; with semicolon */ FROM t\nWHERE k = 1 // end",
        "/* multi\nline */ SeLeCt * FrOm t WhErE k=1",
    ] {
        assert_eq!(
            parse_statement(input),
            Ok(expected.clone()),
            "input: {input:?}"
        );
    }
}

#[test]
fn several_statements() {
    let stmts = parse_statements(
        "USE ks; SELECT * FROM t WHERE k = ?;; \
         BEGIN BATCH INSERT INTO t (k) VALUES (?); APPLY BATCH; DROP TABLE t",
    )
    .unwrap();
    assert_eq!(stmts.len(), 4);
    assert_eq!(stmts[0], Statement::Use(s("ks")));
    // Bind markers are numbered per statement.
    assert_eq!(stmts[1].bind_marker_count(), 1);
    assert_eq!(stmts[2].bind_marker_count(), 1);
    assert_eq!(parse_statements("").unwrap(), vec![]);
    assert_eq!(parse_statements(" ; -- nothing\n ;").unwrap(), vec![]);
    assert!(parse_statements("USE a USE b").is_err());
}

#[test]
fn bind_markers_are_numbered_in_order_of_appearance() {
    let stmt = parse_statement(
        "UPDATE t USING TTL ? SET a = ?, m[?] = :v WHERE k IN (?, ?) AND (c1, c2) > (?, ?) IF b = ?",
    )
    .unwrap();
    let mut seen = Vec::new();
    visit_terms(&stmt, &mut |t| {
        if let Term::Bind(b) = t {
            seen.push(b.index);
        }
    });
    seen.sort_unstable();
    assert_eq!(seen, (0..9).collect::<Vec<_>>());
    assert_eq!(stmt.bind_marker_count(), 9);
    let Statement::Update(u) = stmt else { panic!() };
    assert_eq!(u.using.ttl, Some(bind(0)));
    assert_eq!(
        u.assignments[1],
        Assignment::SetElement {
            column: s("m"),
            key: bind(2),
            value: named(3, "v"),
        }
    );
    assert_eq!(u.conditions[0].rhs, bind(8));
}
