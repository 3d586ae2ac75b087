//! `ringdb shell` as a user runs it: `-f script.cql` and `-e STATEMENT` against a real node, with
//! stdout checked for the rows and non-zero exits with readable errors when a statement fails.

use std::path::Path;
use std::time::Duration;

use ringdb_tests::{run_shell, write_file, CommandOutput, TestNode};

const SHELL_TIMEOUT: Duration = Duration::from_secs(60);

const SCRIPT: &str = "\
-- created by the ringdb end-to-end tests
CREATE KEYSPACE ks_shell WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1};
USE ks_shell;
CREATE TABLE people (id int PRIMARY KEY, name text, born int);
INSERT INTO people (id, name, born) VALUES (1, 'Ada Lovelace', 1815);
INSERT INTO people (id, name, born)
    VALUES (2, 'Alan Turing', 1912);
INSERT INTO people (id, name, born) VALUES (3, 'Grace Hopper', 1906);
SELECT id, name, born FROM people;
";

fn shell(bin: &Path, args: &[&str]) -> CommandOutput {
    run_shell(bin, args, SHELL_TIMEOUT).expect("run ringdb shell")
}

fn assert_not_a_crash(out: &CommandOutput) {
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(
        !all.contains("panicked at"),
        "ringdb shell panicked:\n{}",
        out.describe()
    );
    assert!(!out.timed_out(), "ringdb shell hung:\n{}", out.describe());
}

/// Runs the schema + data script with `-f`; returns the binary for further calls.
fn run_script(node: &TestNode, bin: &Path) -> CommandOutput {
    let script = write_file(node.dir(), "script.cql", SCRIPT).expect("write script");
    let host = node.cql_host_port();
    let out = shell(bin, &[&host, "-f", &script.to_string_lossy()]);
    assert_not_a_crash(&out);
    assert!(
        out.success(),
        "`ringdb shell {host} -f script.cql` failed:\n{}",
        out.describe()
    );
    out
}

#[test]
fn shell_f_runs_a_script_and_prints_the_rows() {
    let test = "shell_f_runs_a_script_and_prints_the_rows";
    let Some(bin) = ringdb_tests::ringdb_bin_or_skip(test) else {
        return;
    };
    let Some(node) = TestNode::start_or_skip(test) else {
        return;
    };
    let out = run_script(&node, &bin);
    for expected in [
        "Ada Lovelace",
        "Alan Turing",
        "Grace Hopper",
        "1815",
        "1912",
        "1906",
        "name",
        "born",
    ] {
        assert!(
            out.stdout.contains(expected),
            "stdout of the script lacks {expected:?}:\n{}",
            out.describe()
        );
    }
    drop(node);
}

#[test]
fn shell_e_selects_with_keyspace_and_describes() {
    let test = "shell_e_selects_with_keyspace_and_describes";
    let Some(bin) = ringdb_tests::ringdb_bin_or_skip(test) else {
        return;
    };
    let Some(node) = TestNode::start_or_skip(test) else {
        return;
    };
    run_script(&node, &bin);
    let host = node.cql_host_port();

    let out = shell(
        &bin,
        &[
            &host,
            "-k",
            "ks_shell",
            "-e",
            "SELECT name FROM people WHERE id = 2;",
        ],
    );
    assert_not_a_crash(&out);
    assert!(
        out.success(),
        "-k ks_shell -e SELECT failed:\n{}",
        out.describe()
    );
    assert!(
        out.stdout.contains("Alan Turing") && !out.stdout.contains("Ada Lovelace"),
        "-e SELECT ... WHERE id = 2 printed the wrong rows:\n{}",
        out.describe()
    );

    let out = shell(&bin, &[&host, "-e", "DESCRIBE TABLE ks_shell.people"]);
    assert_not_a_crash(&out);
    assert!(out.success(), "DESCRIBE TABLE failed:\n{}", out.describe());
    assert!(
        out.stdout.contains("CREATE TABLE") && out.stdout.contains("people"),
        "DESCRIBE TABLE printed no CREATE TABLE statement:\n{}",
        out.describe()
    );

    let out = shell(&bin, &[&host, "-e", "DESCRIBE KEYSPACES"]);
    assert_not_a_crash(&out);
    assert!(
        out.success(),
        "DESCRIBE KEYSPACES failed:\n{}",
        out.describe()
    );
    assert!(
        out.stdout.contains("ks_shell"),
        "DESCRIBE KEYSPACES does not list ks_shell:\n{}",
        out.describe()
    );
    drop(node);
}

#[test]
fn shell_e_bad_statement_exits_nonzero_with_a_readable_error() {
    let test = "shell_e_bad_statement_exits_nonzero_with_a_readable_error";
    let Some(bin) = ringdb_tests::ringdb_bin_or_skip(test) else {
        return;
    };
    let Some(node) = TestNode::start_or_skip(test) else {
        return;
    };
    let host = node.cql_host_port();

    // A syntax error: the message names the offending token.
    let out = shell(&bin, &[&host, "-e", "SELEC * FROM system.local"]);
    assert_not_a_crash(&out);
    assert!(
        !out.success(),
        "a syntax error exited 0:\n{}",
        out.describe()
    );
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(
        all.contains("SELEC"),
        "the syntax error message does not name the offending token `SELEC`:\n{}",
        out.describe()
    );

    // A missing table: the message names it.
    let out = shell(&bin, &[&host, "-e", "SELECT * FROM system.no_such_table"]);
    assert_not_a_crash(&out);
    assert!(
        !out.success(),
        "SELECT from a missing table exited 0:\n{}",
        out.describe()
    );
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(
        all.contains("no_such_table"),
        "the error does not name the missing table:\n{}",
        out.describe()
    );

    // An error in the middle of a -f script makes the exit status non-zero.
    let script = write_file(
        node.dir(),
        "bad.cql",
        "SELECT release_version FROM system.local;\nSELEC oops;\nSELECT key FROM system.local;\n",
    )
    .expect("write script");
    let out = shell(&bin, &[&host, "-f", &script.to_string_lossy()]);
    assert_not_a_crash(&out);
    assert!(
        !out.success(),
        "-f with a bad statement exited 0:\n{}",
        out.describe()
    );

    // A script that does not exist.
    let out = shell(&bin, &[&host, "-f", "/nonexistent/ringdb-test.cql"]);
    assert_not_a_crash(&out);
    assert!(
        !out.success(),
        "-f with a missing file exited 0:\n{}",
        out.describe()
    );
    drop(node);
}
