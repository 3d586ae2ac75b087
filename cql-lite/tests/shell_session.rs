//! Whole shell sessions against the fake server, with scripted input and captured output.

#[path = "client_support/mod.rs"]
mod client_support;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use client_support::{column, error, rows, Action, FakeServer};
use ringdb_cql::client::{Client, ClientOptions};
use ringdb_cql::message::{ErrorKind, Request};
use ringdb_cql::shell::{self, BoxFuture, Console, ReadLine, Shell, ShellArgs};
use ringdb_cql::types::{CqlType, CqlValue};

/// A console fed from a list of lines, recording everything printed and every prompt shown.
#[derive(Default, Clone)]
struct Scripted {
    input: Arc<Mutex<VecDeque<ReadLine>>>,
    out: Arc<Mutex<String>>,
    err: Arc<Mutex<Vec<String>>>,
    prompts: Arc<Mutex<Vec<String>>>,
    /// When set, a running statement is "interrupted" (Ctrl-C) after this long.
    interrupt_after: Option<std::time::Duration>,
}

impl Scripted {
    fn new(lines: &[&str]) -> Self {
        let s = Scripted::default();
        s.input
            .lock()
            .unwrap()
            .extend(lines.iter().map(|l| ReadLine::Line(l.to_string())));
        s
    }
    fn out(&self) -> String {
        self.out.lock().unwrap().clone()
    }
    fn err(&self) -> Vec<String> {
        self.err.lock().unwrap().clone()
    }
    fn prompts(&self) -> Vec<String> {
        self.prompts.lock().unwrap().clone()
    }
}

impl Console for Scripted {
    fn print(&mut self, text: &str) {
        self.out.lock().unwrap().push_str(text);
    }
    fn print_error(&mut self, line: &str) {
        self.err.lock().unwrap().push(line.to_string());
    }
    fn read_line<'a>(&'a mut self, prompt: &'a str) -> BoxFuture<'a, ReadLine> {
        self.prompts.lock().unwrap().push(prompt.to_string());
        let next = self
            .input
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(ReadLine::Eof);
        Box::pin(async move { next })
    }
    fn interrupted(&self) -> BoxFuture<'static, ()> {
        let after = self.interrupt_after;
        Box::pin(async move {
            match after {
                Some(after) => tokio::time::sleep(after).await,
                None => std::future::pending().await,
            }
        })
    }
}

/// A small "database": `users` (two rows), `numbers` (250 rows, paged), `system.local`,
/// DESCRIBE, and errors.
async fn server() -> FakeServer {
    FakeServer::start(|req| {
        let (query, params) = match req {
            Request::Query { query, params } => (
                query.split_whitespace().collect::<Vec<_>>().join(" "),
                params,
            ),
            _ => return None,
        };
        let action = match query.as_str() {
            "SELECT cluster_name, release_version, cql_version FROM system.local" => {
                Action::Reply(rows(
                    vec![
                        column("cluster_name", CqlType::Text),
                        column("release_version", CqlType::Text),
                        column("cql_version", CqlType::Text),
                    ],
                    vec![vec![
                        Some(CqlValue::Text("Test Cluster".into())),
                        Some(CqlValue::Text("4.1.0".into())),
                        Some(CqlValue::Text("3.4.6".into())),
                    ]],
                    None,
                ))
            }
            "SELECT * FROM users" => Action::Reply(rows(
                vec![
                    column("id", CqlType::Int),
                    column("name", CqlType::Text),
                    column("score", CqlType::BigInt),
                ],
                vec![
                    vec![
                        Some(CqlValue::Int(1)),
                        Some(CqlValue::Text("alice".into())),
                        Some(CqlValue::BigInt(1200)),
                    ],
                    vec![
                        Some(CqlValue::Int(22)),
                        Some(CqlValue::Text("bob".into())),
                        None,
                    ],
                ],
                None,
            )),
            "SELECT * FROM empty" => {
                Action::Reply(rows(vec![column("id", CqlType::Int)], vec![], None))
            }
            "SELECT * FROM numbers" => {
                let start = params
                    .paging_state
                    .as_ref()
                    .map(|p| u32::from_be_bytes([p[0], p[1], p[2], p[3]]))
                    .unwrap_or(0);
                let size = params.page_size.unwrap_or(i32::MAX).max(1) as u32;
                let end = (start + size).min(250);
                let data = (start..end)
                    .map(|n| vec![Some(CqlValue::Int(n as i32))])
                    .collect();
                let next = (end < 250).then(|| Bytes::copy_from_slice(&end.to_be_bytes()));
                Action::Reply(rows(vec![column("n", CqlType::Int)], data, next))
            }
            "DESCRIBE KEYSPACES" => Action::Reply(rows(
                vec![
                    column("keyspace_name", CqlType::Text),
                    column("type", CqlType::Text),
                    column("name", CqlType::Text),
                ],
                ["ks", "system", "system_schema"]
                    .iter()
                    .map(|k| {
                        vec![
                            Some(CqlValue::Text(k.to_string())),
                            Some(CqlValue::Text("keyspace".into())),
                            Some(CqlValue::Text(k.to_string())),
                        ]
                    })
                    .collect(),
                None,
            )),
            "DESC TABLE ks.users" => Action::Reply(rows(
                vec![
                    column("keyspace_name", CqlType::Text),
                    column("type", CqlType::Text),
                    column("name", CqlType::Text),
                    column("create_statement", CqlType::Text),
                ],
                vec![vec![
                    Some(CqlValue::Text("ks".into())),
                    Some(CqlValue::Text("table".into())),
                    Some(CqlValue::Text("users".into())),
                    Some(CqlValue::Text(
                        "CREATE TABLE ks.users (\n    id int PRIMARY KEY\n);".into(),
                    )),
                ]],
                None,
            )),
            "SELECT * FROM nope" => {
                Action::Reply(error(ErrorKind::Invalid, "table nope does not exist"))
            }
            "SELEC 1" => Action::Reply(error(
                ErrorKind::Syntax,
                "line 1:0 no viable alternative at input 'SELEC'",
            )),
            "SELECT forever" => Action::Ignore,
            "SELECT die" => Action::Close,
            "SELECT consistency" => Action::Reply(rows(
                vec![column("level", CqlType::Text)],
                vec![vec![Some(CqlValue::Text(params.consistency.to_string()))]],
                None,
            )),
            _ => return None,
        };
        Some(action)
    })
    .await
}

async fn shell_with(server: &FakeServer, console: Scripted, interactive: bool) -> Shell<Scripted> {
    let client = Client::connect(server.addr, ClientOptions::default())
        .await
        .unwrap();
    let mut shell = Shell::new(
        client,
        console,
        interactive,
        server.addr.to_string(),
        ClientOptions::default(),
    );
    shell.load_server_info().await;
    shell
}

#[tokio::test]
async fn a_select_prints_a_cqlsh_table() {
    let server = server().await;
    let console = Scripted::new(&["SELECT * FROM users;"]);
    let mut shell = shell_with(&server, console.clone(), false).await;
    shell.run_console("<stdin>").await;
    let expected = concat!(
        "\n",
        " id | name  | score\n",
        "----+-------+-------\n",
        "  1 | alice |  1200\n",
        " 22 |   bob |  null\n",
        "\n",
        "(2 rows)\n",
    );
    assert_eq!(console.out(), expected);
    assert!(console.err().is_empty());
    assert!(!shell.failed());
}

#[tokio::test]
async fn multi_line_statements_and_continuation_prompts() {
    let server = server().await;
    let console = Scripted::new(&["SELECT *", "FROM", "users", ";", "exit"]);
    let mut shell = shell_with(&server, console.clone(), true).await;
    shell.run_console("<stdin>").await;
    assert!(console.out().contains("(2 rows)"));
    assert_eq!(
        console.prompts(),
        vec!["ringdb> ", "   ... ", "   ... ", "   ... ", "ringdb> "]
    );
}

#[tokio::test]
async fn use_changes_the_prompt() {
    let server = server().await;
    let console = Scripted::new(&["USE ks;", "SHOW HOST"]);
    let mut shell = shell_with(&server, console.clone(), true).await;
    shell.run_console("<stdin>").await;
    assert_eq!(console.prompts()[1], "ringdb:ks> ");
    assert!(console
        .out()
        .contains(&format!("Connected to Test Cluster at {}.", server.addr)));
}

#[tokio::test]
async fn expanded_output() {
    let server = server().await;
    let console = Scripted::new(&["EXPAND ON", "SELECT * FROM users;", "EXPAND"]);
    let mut shell = shell_with(&server, console.clone(), false).await;
    shell.run_console("<stdin>").await;
    let expected = concat!(
        "Now Expanded output is enabled\n",
        "\n",
        "@ Row 1\n",
        "-------+-------\n",
        " id    | 1\n",
        " name  | alice\n",
        " score | 1200\n",
        "\n",
        "@ Row 2\n",
        "-------+-------\n",
        " id    | 22\n",
        " name  | bob\n",
        " score | null\n",
        "\n",
        "(2 rows)\n",
        "Expanded output is currently enabled. Use EXPAND OFF to disable\n",
    );
    assert_eq!(console.out(), expected);
}

#[tokio::test]
async fn empty_results_show_the_header() {
    let server = server().await;
    let console = Scripted::new(&["SELECT * FROM empty;"]);
    let mut shell = shell_with(&server, console.clone(), false).await;
    shell.run_console("<stdin>").await;
    assert_eq!(console.out(), "\n id\n----\n\n(0 rows)\n");
}

#[tokio::test]
async fn interactive_paging_stops_at_more_prompts() {
    let server = server().await;
    // Page 1, MORE → page 2, then Ctrl-C at the second MORE.
    let console = Scripted::new(&["SELECT * FROM numbers;", ""]);
    console
        .input
        .lock()
        .unwrap()
        .push_back(ReadLine::Interrupted);
    let mut shell = shell_with(&server, console.clone(), true).await;
    shell.run_console("<stdin>").await;
    let prompts = console.prompts();
    assert_eq!(prompts[1], "---MORE---");
    assert_eq!(prompts[2], "---MORE---");
    let out = console.out();
    assert!(out.ends_with("(200 rows)\n"), "{out}");
    assert_eq!(out.matches("\n n\n").count(), 2, "a header per page");
}

#[tokio::test]
async fn paging_size_and_off() {
    let server = server().await;
    let console = Scripted::new(&[
        "PAGING 120",
        "SELECT * FROM numbers;",
        "",
        "",
        "PAGING OFF",
        "SELECT * FROM numbers;",
    ]);
    let mut shell = shell_with(&server, console.clone(), true).await;
    shell.run_console("<stdin>").await;
    let out = console.out();
    assert!(out.contains("Now Query paging is enabled\nPage size: 120\n"));
    assert!(out.contains("(250 rows)\nDisabled Query paging.\n"));
    // Paging on: MORE shown twice (after 120 and 240 rows); paging off: none.
    assert_eq!(
        console
            .prompts()
            .iter()
            .filter(|p| *p == "---MORE---")
            .count(),
        2
    );
    assert!(
        out.ends_with(" 249\n\n(250 rows)\n"),
        "{}",
        &out[out.len() - 60..]
    );
}

#[tokio::test]
async fn non_interactive_fetches_every_page_into_one_table() {
    let server = server().await;
    let console = Scripted::new(&["SELECT * FROM numbers;"]);
    let mut shell = shell_with(&server, console.clone(), false).await;
    shell.run_console("<stdin>").await;
    let out = console.out();
    assert_eq!(out.matches(" n\n").count(), 1);
    assert!(out.ends_with("(250 rows)\n"));
    assert!(!console.prompts().iter().any(|p| p == "---MORE---"));
}

#[tokio::test]
async fn consistency_is_shown_set_and_sent() {
    let server = server().await;
    let console = Scripted::new(&[
        "CONSISTENCY",
        "CONSISTENCY local_quorum",
        "SELECT consistency;",
        "CONSISTENCY bogus",
    ]);
    let mut shell = shell_with(&server, console.clone(), false).await;
    shell.run_console("<stdin>").await;
    let out = console.out();
    assert!(out.starts_with(
        "Current consistency level is ONE.\nConsistency level set to LOCAL_QUORUM.\n"
    ));
    assert!(out.contains(" LOCAL_QUORUM\n"));
    assert_eq!(console.err().len(), 1);
    assert!(console.err()[0].starts_with("<stdin>:4:Improper CONSISTENCY command"));
    assert!(shell.failed());
}

#[tokio::test]
async fn errors_read_like_cqlsh_and_the_session_goes_on() {
    let server = server().await;
    let console = Scripted::new(&["SELECT * FROM nope;", "SELEC 1;", "SELECT * FROM users;"]);
    let mut shell = shell_with(&server, console.clone(), false).await;
    shell.run_console("<stdin>").await;
    assert_eq!(
        console.err(),
        vec![
            "<stdin>:1:InvalidRequest: Error from server: code=2200 [Invalid query] message=\"table nope does not exist\"",
            "<stdin>:2:SyntaxException: line 1:0 no viable alternative at input 'SELEC'",
        ]
    );
    assert!(console.out().contains("(2 rows)"));
    assert!(shell.failed());
}

#[tokio::test]
async fn interactive_errors_have_no_location_prefix() {
    let server = server().await;
    let console = Scripted::new(&["SELECT * FROM nope;"]);
    let mut shell = shell_with(&server, console.clone(), true).await;
    shell.run_console("<stdin>").await;
    assert!(console.err()[0].starts_with("InvalidRequest: Error from server"));
}

#[tokio::test]
async fn describe_prints_create_statements_and_listings() {
    let server = server().await;
    let console = Scripted::new(&["DESCRIBE KEYSPACES", "DESC TABLE ks.users;"]);
    let mut shell = shell_with(&server, console.clone(), false).await;
    shell.run_console("<stdin>").await;
    assert_eq!(
        console.out(),
        "\nks  system  system_schema\n\n\nCREATE TABLE ks.users (\n    id int PRIMARY KEY\n);\n\n"
    );
}

#[tokio::test]
async fn source_runs_a_file_and_reports_its_lines() {
    let server = server().await;
    let dir = std::env::temp_dir().join(format!("ringdb-shell-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let inner = dir.join("inner.cql");
    std::fs::write(&inner, "SELECT * FROM users;\n\nSELECT * FROM nope;\n").unwrap();
    let outer = dir.join("outer.cql");
    std::fs::write(
        &outer,
        format!("EXPAND ON\nSOURCE '{}'\nEXPAND OFF\n", inner.display()),
    )
    .unwrap();
    let console = Scripted::new(&[
        &format!("SOURCE '{}'", outer.display()),
        "SOURCE 'missing.cql'",
    ]);
    let mut shell = shell_with(&server, console.clone(), false).await;
    shell.run_console("<stdin>").await;
    let out = console.out();
    assert!(out.contains("@ Row 2"));
    assert!(out.ends_with("Disabled Expanded output.\n"));
    let err = console.err();
    assert_eq!(err.len(), 2, "{err:?}");
    assert!(
        err[0].starts_with(&format!("{}:3:InvalidRequest", inner.display())),
        "{err:?}"
    );
    assert!(
        err[1].starts_with("<stdin>:2:Could not open 'missing.cql'"),
        "{err:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_source_loop_is_cut() {
    let server = server().await;
    let dir = std::env::temp_dir().join(format!("ringdb-shell-loop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("self.cql");
    std::fs::write(&file, format!("SOURCE '{}'\n", file.display())).unwrap();
    let console = Scripted::new(&[&format!("SOURCE '{}'", file.display())]);
    let mut shell = shell_with(&server, console.clone(), false).await;
    shell.run_console("<stdin>").await;
    assert!(
        console.err()[0].contains("nested too deeply"),
        "{:?}",
        console.err()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn scripts_run_a_last_statement_without_semicolon() {
    let server = server().await;
    let console = Scripted::new(&[]);
    let mut shell = shell_with(&server, console.clone(), false).await;
    shell
        .run_script("<stdin>", "CONSISTENCY QUORUM; SELECT * FROM users")
        .await;
    assert!(console.out().contains("Consistency level set to QUORUM.\n"));
    assert!(console.out().contains("(2 rows)"));
}

#[tokio::test]
async fn show_version_help_and_exit() {
    let server = server().await;
    let console = Scripted::new(&["SHOW VERSION", "HELP", "exit", "SELECT * FROM users;"]);
    let mut shell = shell_with(&server, console.clone(), true).await;
    shell.run_console("<stdin>").await;
    let out = console.out();
    assert!(out.starts_with("[ringdb shell "), "{out}");
    assert!(out.contains("| Server 4.1.0 | CQL spec 3.4.6 | Native protocol v4]\n"));
    assert!(out.contains("CONSISTENCY"));
    assert!(!out.contains("rows)"), "nothing runs after EXIT");
}

#[tokio::test]
async fn ctrl_c_drops_the_pending_statement() {
    let server = server().await;
    let console = Scripted::new(&["SELECT * FROM"]);
    console
        .input
        .lock()
        .unwrap()
        .push_back(ReadLine::Interrupted);
    console
        .input
        .lock()
        .unwrap()
        .push_back(ReadLine::Line("SELECT * FROM users;".into()));
    let mut shell = shell_with(&server, console.clone(), true).await;
    shell.run_console("<stdin>").await;
    assert!(console.err().is_empty(), "{:?}", console.err());
    assert!(console.out().contains("(2 rows)"));
}

#[tokio::test]
async fn run_exits_1_when_it_cannot_connect() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let args = ShellArgs {
        port,
        execute: Some("SELECT * FROM users;".into()),
        ..ShellArgs::default()
    };
    assert_eq!(shell::run(args).await, 1);
}

#[tokio::test]
async fn run_with_execute_reports_failures_in_its_status() {
    let server = server().await;
    let ok = ShellArgs {
        port: server.addr.port(),
        execute: Some("SELECT * FROM users;".into()),
        ..ShellArgs::default()
    };
    assert_eq!(shell::run(ok).await, 0);
    let failing = ShellArgs {
        port: server.addr.port(),
        execute: Some("SELECT * FROM nope; SELECT * FROM users;".into()),
        ..ShellArgs::default()
    };
    assert_eq!(shell::run(failing).await, 2);
}

#[tokio::test]
async fn run_with_a_file() {
    let server = server().await;
    let path = std::env::temp_dir().join(format!("ringdb-shell-f-{}.cql", std::process::id()));
    std::fs::write(&path, "USE ks;\nSELECT * FROM users;\n").unwrap();
    let args = ShellArgs {
        port: server.addr.port(),
        file: Some(path.clone()),
        ..ShellArgs::default()
    };
    assert_eq!(shell::run(args).await, 0);
    let missing = ShellArgs {
        port: server.addr.port(),
        file: Some(path.with_extension("missing")),
        ..ShellArgs::default()
    };
    assert_eq!(shell::run(missing).await, 2);
    std::fs::remove_file(&path).unwrap();
}

#[tokio::test]
async fn ctrl_c_abandons_a_running_statement() {
    let server = server().await;
    let mut console = Scripted::new(&["SELECT forever;", "SELECT * FROM users;"]);
    console.interrupt_after = Some(std::time::Duration::from_millis(50));
    let mut shell = shell_with(&server, console.clone(), true).await;
    shell.run_console("<stdin>").await;
    assert_eq!(console.err(), vec!["Interrupted."]);
    assert!(console.out().contains("(2 rows)"));
}

#[tokio::test]
async fn the_shell_reconnects_after_losing_the_connection() {
    let server = server().await;
    let console = Scripted::new(&["USE ks;", "SELECT die;", "SELECT * FROM users;"]);
    let mut shell = shell_with(&server, console.clone(), false).await;
    shell.run_console("<stdin>").await;
    let err = console.err();
    assert_eq!(err.len(), 1, "{err:?}");
    assert!(
        err[0].starts_with("<stdin>:2:ConnectionError: connection to"),
        "{err:?}"
    );
    assert!(console.out().contains("(2 rows)"));
    assert_eq!(
        server.connections.load(std::sync::atomic::Ordering::SeqCst),
        2
    );
    // The keyspace was restored on the new connection.
    let queries = server.queries.lock().unwrap().clone();
    assert_eq!(
        queries.iter().filter(|q| q.starts_with("USE ")).count(),
        2,
        "{queries:?}"
    );
}
