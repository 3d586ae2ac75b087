//! The parser and lexer never panic, whatever the input: arbitrary strings, soups of real CQL
//! tokens, and truncations and mutations of valid statements.

use proptest::prelude::*;
use ringdb_cql::lexer::{split_statements, tokenize};
use ringdb_cql::parser::{parse_statement, parse_statements, parse_type};

/// Valid statements, used as seeds for truncation and as a round-trip anchor.
const SEEDS: &[&str] = &[
    "SELECT DISTINCT k, writetime(v) AS w FROM ks.t WHERE k IN (1, 2) AND (c1, c2) > (?, :x) ORDER BY c1 DESC LIMIT 10 ALLOW FILTERING",
    "INSERT INTO t (a, b, c) VALUES (-1.5e3, {'k': [1, 2]}, (int) ?) IF NOT EXISTS USING TTL 5 AND TIMESTAMP ?",
    "UPDATE t USING TIMESTAMP 1 SET l = [0] + l, m['k'] = 0xCAFE, c = c - 1 WHERE k = 123e4567-e89b-12d3-a456-426614174000 IF a = 'it''s'",
    "DELETE m['k'] FROM t WHERE token(k) > token(?) IF EXISTS",
    "BEGIN UNLOGGED BATCH INSERT INTO t (k) VALUES (1); DELETE FROM t WHERE k = 2 APPLY BATCH",
    "CREATE TABLE IF NOT EXISTS t (a int, b frozen<map<text, list<int>>>, s text static, PRIMARY KEY ((a), b)) WITH CLUSTERING ORDER BY (b DESC) AND comment = $$c$$",
    "CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1} AND durable_writes = true",
    "ALTER TABLE t ADD (x duration, y tuple<int, text>)",
    "DESCRIBE FULL SCHEMA",
    "SELECT toTimestamp(now()), count(*) FROM t WHERE d = 1h30m AND e = P1DT2H AND f = NaN",
];

/// Real CQL tokens and fragments (plus a few broken ones) to build soups from.
const TOKENS: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "AND",
    "INSERT",
    "INTO",
    "VALUES",
    "UPDATE",
    "SET",
    "DELETE",
    "BEGIN",
    "BATCH",
    "APPLY",
    "UNLOGGED",
    "COUNTER",
    "CREATE",
    "ALTER",
    "DROP",
    "TABLE",
    "KEYSPACE",
    "IF",
    "NOT",
    "EXISTS",
    "USING",
    "TTL",
    "TIMESTAMP",
    "PRIMARY",
    "KEY",
    "WITH",
    "CLUSTERING",
    "ORDER",
    "BY",
    "ASC",
    "DESC",
    "LIMIT",
    "PER",
    "PARTITION",
    "ALLOW",
    "FILTERING",
    "DISTINCT",
    "JSON",
    "AS",
    "IN",
    "CONTAINS",
    "TOKEN",
    "COUNT",
    "WRITETIME",
    "USE",
    "TRUNCATE",
    "DESCRIBE",
    "FULL",
    "SCHEMA",
    "STATIC",
    "frozen",
    "list",
    "set",
    "map",
    "tuple",
    "int",
    "text",
    "null",
    "true",
    "NaN",
    "-Infinity",
    "k",
    "v",
    "t",
    "ks",
    "\"Q\"",
    "'s'",
    "'it''s'",
    "$$d$$",
    "1",
    "-5",
    "1.5",
    "2e10",
    "0xCAFE",
    "0xABC",
    "1h30m",
    "P1D",
    "123e4567-e89b-12d3-a456-426614174000",
    "?",
    ":n",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    "<",
    ">",
    "<=",
    ">=",
    "=",
    "!=",
    ",",
    ";",
    ".",
    ":",
    "+",
    "-",
    "*",
    "--",
    "/*",
    "*/",
    "'",
    "\"",
    "$$",
    "#",
    "é",
    "\n",
];

fn never_panics(input: &str) {
    let _ = parse_statement(input);
    let _ = parse_statements(input);
    let _ = parse_type(input);
    let _ = split_statements(input);
    let tokens = tokenize(input);
    // Spans are in bounds and on character boundaries.
    for t in &tokens {
        assert!(t.start <= t.end && t.end <= input.len());
        assert!(input.is_char_boundary(t.start) && input.is_char_boundary(t.end));
    }
}

#[test]
fn seeds_parse() {
    for seed in SEEDS {
        parse_statement(seed).unwrap_or_else(|e| panic!("{seed}: {e}"));
    }
}

#[test]
fn every_prefix_of_every_seed() {
    for seed in SEEDS {
        for (i, _) in seed.char_indices() {
            never_panics(&seed[..i]);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_strings(input in "\\PC{0,200}") {
        never_panics(&input);
    }

    #[test]
    fn arbitrary_bytes_as_text(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        never_panics(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn token_soups(picks in proptest::collection::vec(0..TOKENS.len(), 0..60)) {
        let soup: Vec<&str> = picks.iter().filter_map(|&i| TOKENS.get(i).copied()).collect();
        never_panics(&soup.join(" "));
        never_panics(&soup.concat());
    }

    #[test]
    fn mutated_seeds(
        seed in 0..SEEDS.len(),
        at in any::<prop::sample::Index>(),
        insert in 0..TOKENS.len(),
        delete in 0usize..8,
    ) {
        let text = SEEDS[seed];
        let boundaries: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
        let pos = boundaries[at.index(boundaries.len())];
        let end = boundaries
            .iter()
            .copied()
            .find(|&b| b >= pos + delete)
            .unwrap_or(text.len());
        let mutated = format!("{}{}{}", &text[..pos], TOKENS[insert], &text[end..]);
        never_panics(&mutated);
    }
}
