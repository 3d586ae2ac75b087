//! `split_statements`: how the shell cuts its input into complete statements.

use ringdb_cql::lexer::split_statements;
use ringdb_cql::parser::parse_statement;

fn split(input: &str) -> (Vec<&'static str>, &'static str) {
    let (stmts, rest) = split_statements(input);
    (stmts.into_iter().map(|s| &*s.leak()).collect(), rest.leak())
}

#[test]
fn split_cases() {
    let cases: Vec<(&str, Vec<&str>, &str)> = vec![
        ("", vec![], ""),
        ("   \n ", vec![], ""),
        ("SELECT * FROM t", vec![], "SELECT * FROM t"),
        ("SELECT * FROM t;", vec!["SELECT * FROM t"], ""),
        ("  USE ks ;  SELECT 1", vec!["USE ks"], "SELECT 1"),
        ("USE a; USE b;\nUSE c", vec!["USE a", "USE b"], "USE c"),
        (";;; USE a;;", vec!["USE a"], ""),
        // Semicolons inside strings, quoted names, $$ strings and comments do not count.
        (
            "INSERT INTO t (a) VALUES ('x;y');",
            vec!["INSERT INTO t (a) VALUES ('x;y')"],
            "",
        ),
        (
            "INSERT INTO t (a) VALUES ('it''s; ok');",
            vec!["INSERT INTO t (a) VALUES ('it''s; ok')"],
            "",
        ),
        (
            "SELECT \"a;b\" FROM t;",
            vec!["SELECT \"a;b\" FROM t"],
            "",
        ),
        (
            "INSERT INTO t (a) VALUES ($$;;$$);",
            vec!["INSERT INTO t (a) VALUES ($$;;$$)"],
            "",
        ),
        (
            "SELECT * -- not here;\nFROM t; // nor here;\n",
            vec!["SELECT * -- not here;\nFROM t"],
            "",
        ),
        (
            "SELECT /* ; */ * FROM t;",
            vec!["SELECT /* ; */ * FROM t"],
            "",
        ),
        // Unterminated strings, names and comments leave the input incomplete.
        (
            "USE a; INSERT INTO t (a) VALUES ('x;",
            vec!["USE a"],
            "INSERT INTO t (a) VALUES ('x;",
        ),
        ("SELECT \"a;", vec![], "SELECT \"a;"),
        ("SELECT $$a;", vec![], "SELECT $$a;"),
        ("SELECT /* ; ", vec![], "SELECT /* ; "),
        ("USE a; /* open", vec!["USE a"], "/* open"),
        // Only whitespace and complete comments left: nothing pending.
        ("USE a; -- done", vec!["USE a"], ""),
        ("USE a; /* done */  ", vec!["USE a"], ""),
        ("-- just a comment;\n", vec![], ""),
        // Batches end only at the `;` after APPLY BATCH.
        (
            "BEGIN BATCH INSERT INTO t (a) VALUES (1); UPDATE t SET a = 2 WHERE k = 1; APPLY BATCH; USE ks;",
            vec![
                "BEGIN BATCH INSERT INTO t (a) VALUES (1); UPDATE t SET a = 2 WHERE k = 1; APPLY BATCH",
                "USE ks",
            ],
            "",
        ),
        (
            "begin unlogged batch\n  insert into t (a) values (1);\n",
            vec![],
            "begin unlogged batch\n  insert into t (a) values (1);\n",
        ),
        (
            "BEGIN BATCH INSERT INTO t (a) VALUES ('apply batch;'); apply\n-- comment\nBATCH ; x",
            vec!["BEGIN BATCH INSERT INTO t (a) VALUES ('apply batch;'); apply\n-- comment\nBATCH"],
            "x",
        ),
        // A statement that merely mentions BEGIN later is not a batch.
        ("SELECT begin FROM t; x", vec!["SELECT begin FROM t"], "x"),
        // Characters that are not tokens do not stop the split (the parser reports them).
        ("SELECT # FROM t; x", vec!["SELECT # FROM t"], "x"),
    ];
    for (input, statements, rest) in cases {
        assert_eq!(split(input), (statements, rest), "input: {input:?}");
    }
}

#[test]
fn line_by_line_accumulation() {
    // What a shell does: append each line, split, keep the rest.
    let lines = [
        "CREATE TABLE t (",
        "  k int PRIMARY KEY, -- the key; really",
        "  v text",
        ");  SELECT * FROM t",
        "WHERE k = 1; BEGIN BATCH",
        "INSERT INTO t (k, v) VALUES (1, 'a;b');",
        "APPLY BATCH;",
    ];
    let mut pending = String::new();
    let mut complete = Vec::new();
    for line in lines {
        if !pending.is_empty() {
            pending.push('\n');
        }
        pending.push_str(line);
        let (stmts, rest) = split_statements(&pending);
        complete.extend(stmts);
        pending = rest;
    }
    assert_eq!(pending, "");
    assert_eq!(complete.len(), 3);
    for stmt in &complete {
        parse_statement(stmt).unwrap_or_else(|e| panic!("{stmt:?}: {e}"));
    }
}
