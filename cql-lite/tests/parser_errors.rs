//! Parser error cases: the line, column, offending token and expectation of each error, and the
//! Cassandra-like wording of its message.

use ringdb_cql::parser::{
    parse_statement, parse_statements, parse_type, ParseError, MAX_NESTING_DEPTH, MAX_STATEMENT_LEN,
};

fn err(input: &str) -> ParseError {
    match parse_statement(input) {
        Ok(stmt) => panic!("expected an error for {input:?}, parsed {stmt:?}"),
        Err(e) => e,
    }
}

/// (input, line, column, found, expected)
type Case = (&'static str, usize, usize, &'static str, &'static str);

#[test]
fn syntax_errors_name_position_token_and_expectation() {
    let cases: Vec<Case> = vec![
        ("SELECT * FORM t", 1, 9, "FORM", "FROM"),
        ("SELECT a b FROM t", 1, 9, "b", "AS, ',' or FROM"),
        ("SELECT * FROM t\nWHERE k IN (1, 2 x", 2, 17, "x", "',' or ')'"),
        (
            "SELECT * FROM t WHERE k = 1 foo",
            1,
            28,
            "foo",
            "AND, ORDER, PER, LIMIT, ALLOW, ';' or <EOF>",
        ),
        (
            "SELECT * FROM t WHERE",
            1,
            21,
            "<EOF>",
            "a column name, token(...) or '('",
        ),
        ("SELECT * FROM select", 1, 14, "select", "a table name"),
        ("SELECT * FROM t LIMIT 'x'", 1, 22, "'x'", "an integer or a bind marker"),
        ("SELECT * FROM t WHERE k = .5", 1, 26, ".", "a term"),
        ("INSERT INTO t (a) VALUES (1", 1, 27, "<EOF>", "',' or ')'"),
        ("INSERT INTO t (a) VALUES (1) USING", 1, 34, "<EOF>", "TTL or TIMESTAMP"),
        (
            "INSERT INTO t (a) VALUES (1) x",
            1,
            29,
            "x",
            "IF, USING, ';' or <EOF>",
        ),
        ("UPDATE t SET a = 1", 1, 18, "<EOF>", "'+', ',' or WHERE"),
        ("DELETE FROM t", 1, 13, "<EOF>", "'.', USING or WHERE"),
        ("CREATE INDEX ON t (v)", 1, 7, "INDEX", "KEYSPACE, TABLE or ROLE"),
        ("ALTER TABLE t RENAME a TO b", 1, 14, "RENAME", "'.', ADD, DROP or WITH"),
        ("DROP VIEW v", 1, 5, "VIEW", "KEYSPACE, TABLE or ROLE"),
        ("CREATE TABLE t (k int PRIMARY KEY", 1, 33, "<EOF>", "',' or ')'"),
        ("CREATE TABLE t (k in)", 1, 18, "in", "a type (a native type, list, set, map, tuple or frozen; user-defined types are not supported)"),
        ("CREATE TABLE t (k map<int>)", 1, 25, ">", "','"),
        ("BEGIN BATCH SELECT * FROM t APPLY BATCH", 1, 12, "SELECT", "USING, INSERT, UPDATE, DELETE or APPLY"),
        ("BEGIN BATCH INSERT INTO t (k) VALUES (1)", 1, 40, "<EOF>", "IF, USING, ';', INSERT, UPDATE, DELETE or APPLY"),
        ("USE ?", 1, 4, "?", "a keyspace name"),
        ("SELECT * FROM t;;", 1, 16, ";", "<EOF>"),
        ("SELECT * FROM t; SELECT * FROM u", 1, 17, "SELECT", "<EOF>"),
    ];
    for (input, line, column, found, expected) in cases {
        let e = err(input);
        assert_eq!(
            (e.line, e.column, e.found.as_str(), e.expected.as_str()),
            (line, column, found, expected),
            "input: {input:?}"
        );
    }
}

#[test]
fn statement_level_errors() {
    let cases: Vec<Case> = vec![
        ("", 1, 0, "<EOF>", "a statement (SELECT, INSERT, UPDATE, DELETE, BEGIN BATCH, CREATE, ALTER, DROP, TRUNCATE, USE, DESCRIBE, GRANT, REVOKE or LIST)"),
        ("  -- only a comment\n", 2, 0, "<EOF>", "a statement (SELECT, INSERT, UPDATE, DELETE, BEGIN BATCH, CREATE, ALTER, DROP, TRUNCATE, USE, DESCRIBE, GRANT, REVOKE or LIST)"),
        ("COMMIT", 1, 0, "COMMIT", "a statement (SELECT, INSERT, UPDATE, DELETE, BEGIN BATCH, CREATE, ALTER, DROP, TRUNCATE, USE, DESCRIBE, GRANT, REVOKE or LIST)"),
    ];
    for (input, line, column, found, expected) in cases {
        let e = err(input);
        assert_eq!(
            (e.line, e.column, e.found.as_str(), e.expected.as_str()),
            (line, column, found, expected),
            "input: {input:?}"
        );
    }
}

#[test]
fn semantic_errors_point_at_the_culprit() {
    let cases: Vec<Case> = vec![
        (
            "CREATE TABLE t (k int, v int)",
            1,
            28,
            ")",
            "a PRIMARY KEY definition (exactly one is required)",
        ),
        (
            "CREATE TABLE t (k int PRIMARY KEY, v int PRIMARY KEY)",
            1,
            41,
            "PRIMARY",
            "',' or ')' (only one PRIMARY KEY)",
        ),
        (
            "CREATE TABLE t (k int PRIMARY KEY, v int, PRIMARY KEY (v))",
            1,
            42,
            "PRIMARY",
            "a column definition (only one PRIMARY KEY)",
        ),
        (
            "CREATE TABLE t (k int PRIMARY KEY) WITH COMPACT STORAGE",
            1,
            40,
            "COMPACT",
            "a table option (COMPACT STORAGE is not supported)",
        ),
        (
            "CREATE TABLE t (k int PRIMARY KEY) WITH comment = 'a' AND comment = 'b'",
            1,
            58,
            "comment",
            "a table option not given before (each may appear once)",
        ),
        (
            "CREATE TABLE t (k int PRIMARY KEY) WITH comment = ?",
            1,
            50,
            "?",
            "'{' or a constant (string, number or boolean)",
        ),
        (
            "ALTER TABLE t WITH CLUSTERING ORDER BY (c DESC)",
            1,
            19,
            "CLUSTERING",
            "a table option (the clustering order cannot be altered)",
        ),
        (
            "CREATE TABLE t (k int PRIMARY KEY, v frozen<int>)",
            1,
            44,
            "int",
            "a collection or tuple type (frozen<> applies only to those)",
        ),
        (
            "CREATE KEYSPACE ks WITH durable_writes = true",
            1,
            45,
            "<EOF>",
            "AND replication = {...} (the replication option is mandatory)",
        ),
        (
            "CREATE KEYSPACE ks WITH replication = 3",
            1,
            38,
            "3",
            "a map such as {'class': 'SimpleStrategy', 'replication_factor': 1}",
        ),
        (
            "CREATE KEYSPACE ks WITH foo = 3",
            1,
            24,
            "foo",
            "replication or durable_writes (the only keyspace options)",
        ),
        (
            "ALTER KEYSPACE ks WITH durable_writes = 'maybe'",
            1,
            40,
            "'maybe'",
            "true or false",
        ),
        (
            "INSERT INTO t (a, b) VALUES (1)",
            1,
            28,
            "(",
            "as many values as columns (2 columns, 1 values)",
        ),
        (
            "INSERT INTO t JSON '{}'",
            1,
            14,
            "JSON",
            "'(' (INSERT ... JSON is not supported)",
        ),
        (
            "UPDATE t SET a = b + 1 WHERE k = 1",
            1,
            17,
            "b",
            "a (only expressions of the form a = a + <value> are supported)",
        ),
        (
            "UPDATE t SET a = 1 + b WHERE k = 1",
            1,
            21,
            "b",
            "a (only expressions of the form a = <value> + a are supported)",
        ),
        (
            "UPDATE t USING TTL 1 AND TTL 2 SET a = 1 WHERE k = 1",
            1,
            25,
            "TTL",
            "TIMESTAMP (TTL was already given)",
        ),
        (
            "DELETE FROM t USING TTL 5 WHERE k = 1",
            1,
            20,
            "TTL",
            "TIMESTAMP (a TTL is not allowed in DELETE or on a whole BATCH)",
        ),
        (
            "BEGIN BATCH USING TTL 5 APPLY BATCH",
            1,
            18,
            "TTL",
            "TIMESTAMP (a TTL is not allowed in DELETE or on a whole BATCH)",
        ),
        (
            "SELECT * FROM t GROUP BY k",
            1,
            16,
            "GROUP",
            "ORDER BY, LIMIT or ALLOW FILTERING (GROUP BY is not supported)",
        ),
        (
            "SELECT * FROM t WHERE k = 0xABC",
            1,
            26,
            "0xABC",
            "a blob with an even number of hex digits",
        ),
    ];
    for (input, line, column, found, expected) in cases {
        let e = err(input);
        assert_eq!(
            (e.line, e.column, e.found.as_str(), e.expected.as_str()),
            (line, column, found, expected),
            "input: {input:?}"
        );
    }
}

#[test]
fn lexical_errors() {
    let cases: Vec<Case> = vec![
        (
            "INSERT INTO t (a) VALUES ('abc",
            1,
            26,
            "'abc",
            "a closing ' to end the string literal",
        ),
        (
            "SELECT * FROM t WHERE k = $$abc",
            1,
            26,
            "$$abc",
            "a closing $$ to end the string literal",
        ),
        (
            "SELECT * FROM \"abc",
            1,
            14,
            "\"abc",
            "a closing \" to end the quoted identifier",
        ),
        (
            "SELECT * FROM t /* never closed",
            1,
            16,
            "/* never closed",
            "a closing */ to end the comment",
        ),
        ("SELECT * FROM t WHERE k = #", 1, 26, "#", "a valid token"),
        (
            "SELECT \"\" FROM t",
            1,
            7,
            "\"\"",
            "a non-empty quoted identifier",
        ),
        ("SELECT * FROM t WHERE k ! 1", 1, 24, "!", "a valid token"),
        // The first mistake wins: here the grammar error comes before the bad character.
        ("SELECT * FORM t WHERE k = #", 1, 9, "FORM", "FROM"),
        // Long tokens are shortened in messages.
        (
            "SELECT * FROM t WHERE k = 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            1,
            26,
            "'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...",
            "a closing ' to end the string literal",
        ),
    ];
    for (input, line, column, found, expected) in cases {
        let e = err(input);
        assert_eq!(
            (e.line, e.column, e.found.as_str(), e.expected.as_str()),
            (line, column, found, expected),
            "input: {input:?}"
        );
    }
}

#[test]
fn columns_count_characters_not_bytes() {
    let e = err("INSERT INTO t (a) VALUES ('é☃', x)");
    assert_eq!((e.line, e.column, e.found.as_str()), (1, 32, "x"));
    let e = err("SELECT *\n\tFROM t\n  WHERE k = 1 AND");
    assert_eq!((e.line, e.column, e.found.as_str()), (3, 17, "<EOF>"));
}

#[test]
fn messages_read_like_cassandra() {
    assert_eq!(
        err("SELECT * FORM t").to_string(),
        "line 1:9 no viable alternative at input 'FORM' (expected FROM)"
    );
    assert_eq!(
        err("SELECT * FROM t\nWHERE k IN (1 x").to_string(),
        "line 2:14 no viable alternative at input 'x' (expected ',' or ')')"
    );
    assert_eq!(
        err("CREATE TABLE t (k int PRIMARY KEY, m map<int x").to_string(),
        "line 1:45 mismatched input 'x' expecting ','"
    );
    assert_eq!(
        err("SELECT * FROM t WHERE k = (1, 2").to_string(),
        "line 1:31 no viable alternative at input '<EOF>' (expected ',' or ')')"
    );
    assert_eq!(
        err("INSERT INTO t (a) VALUES (1").to_string(),
        "line 1:27 no viable alternative at input '<EOF>' (expected ',' or ')')"
    );
    assert_eq!(
        parse_type("map<int, text").unwrap_err().to_string(),
        "line 1:13 mismatched input '<EOF>' expecting '>'"
    );
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    for (open, close) in [("[", "]"), ("{", "}"), ("(", ")"), ("f(", ")")] {
        let ok = format!(
            "INSERT INTO t (a) VALUES ({}1{})",
            open.repeat(MAX_NESTING_DEPTH - 1),
            close.repeat(MAX_NESTING_DEPTH - 1)
        );
        assert!(
            parse_statement(&ok).is_ok(),
            "{open} nested {MAX_NESTING_DEPTH} deep"
        );
        for depth in [MAX_NESTING_DEPTH + 1, 10_000, 200_000] {
            let deep = format!(
                "INSERT INTO t (a) VALUES ({}1{})",
                open.repeat(depth),
                close.repeat(depth)
            );
            let e = parse_statement(&deep).unwrap_err();
            assert!(
                e.to_string().contains("nesting too deep"),
                "{open} x{depth}: {e}"
            );
        }
    }
    // Unclosed nesting is caught the same way.
    let e = parse_statement(&format!(
        "SELECT * FROM t WHERE k = {}",
        "[".repeat(100_000)
    ))
    .unwrap_err();
    assert!(e.expected.starts_with("nesting too deep"), "{e}");
    assert_eq!((e.line, e.column), (1, 26 + MAX_NESTING_DEPTH));

    // Types and select-list function calls too.
    let e = parse_type(&format!("{}int{}", "list<".repeat(1000), ">".repeat(1000))).unwrap_err();
    assert!(e.to_string().contains("nesting too deep"), "{e}");
    let e = parse_statement(&format!(
        "SELECT {}k{} FROM t",
        "f(".repeat(1000),
        ")".repeat(1000)
    ))
    .unwrap_err();
    assert!(e.to_string().contains("nesting too deep"), "{e}");
    let e = parse_statement(&format!(
        "INSERT INTO t (a) VALUES ({}?)",
        "(int) ".repeat(1000)
    ))
    .unwrap_err();
    assert!(e.to_string().contains("nesting too deep"), "{e}");
}

#[test]
fn oversized_statements_are_refused() {
    let big = format!(
        "INSERT INTO t (a) VALUES ('{}')",
        "x".repeat(MAX_STATEMENT_LEN)
    );
    let e = parse_statement(&big).unwrap_err();
    assert_eq!((e.line, e.column, e.found.as_str()), (1, 0, "INSERT"));
    assert!(e.expected.starts_with("statement too long"), "{e}");
    assert!(
        e.to_string().starts_with("line 1:0 statement too long"),
        "{e}"
    );
    assert!(parse_type(&"x".repeat(MAX_STATEMENT_LEN + 1)).is_err());

    // parse_statements applies the limit to each statement.
    let many = format!("USE a; {big}; USE b");
    let e = parse_statements(&many).unwrap_err();
    assert_eq!((e.line, e.column, e.found.as_str()), (1, 7, "INSERT"));
    assert!(e.expected.starts_with("statement too long"), "{e}");

    // Just under the limit is fine.
    let fits = format!(
        "INSERT INTO t (a) VALUES ('{}')",
        "x".repeat(MAX_STATEMENT_LEN - 40)
    );
    assert!(parse_statement(&fits).is_ok());
}
