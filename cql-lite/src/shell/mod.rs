//! The interactive shell behind `ringdb shell`: a cqlsh for ringdb (and for Cassandra).
//!
//! # Modes
//!
//! - **Interactive** (stdin is a terminal, no `-e`/`-f`): line editing and history with
//!   rustyline (saved to `~/.ringdb_history`), prompt `ringdb> ` or `ringdb:ks> `, continuation
//!   prompt `   ... ` until the statement's `;`, interactive paging with `---MORE---`.
//! - **Piped stdin**: the same input handling without prompts; all pages are fetched.
//! - **`-e STATEMENTS`** and **`-f FILE`**: run the statements and exit.
//!
//! In every mode, errors go to stderr and the shell carries on with the next statement (as
//! cqlsh does with a file); outside interactive mode the exit status is 2 if any statement
//! failed. A failed connection exits with status 1 and says why.
//!
//! # Layers
//!
//! - [`input`]: lines → complete statements and shell commands (pure).
//! - [`format`](mod@format): rows → the text cqlsh prints (pure).
//! - [`session`]: a [`Shell`] runs inputs against a [`Client`] and writes to a [`Console`].
//! - this module: command-line arguments, the real consoles (terminal and pipe), help text.
//!
//! The shell speaks only native protocol v4 and needs nothing ringdb-specific from the server:
//! `DESCRIBE` is sent to the server as Cassandra 4 does, and `system.local` is only read (best
//! effort) for the greeting.

pub mod format;
pub mod input;
pub mod session;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader, Lines, Stdin};

use crate::client::{Client, ClientOptions, Credentials, Rows};
use crate::message::ErrorBody;
use crate::types::CqlValue;
pub use session::{BoxFuture, Console, Flow, ReadLine, Settings, Shell};

/// Exit status when a statement failed in a script (`-e`, `-f`, piped stdin), as cqlsh.
pub const EXIT_STATEMENT_FAILED: i32 = 2;
/// Exit status when the shell could not connect.
pub const EXIT_CONNECTION_FAILED: i32 = 1;

/// Arguments of `ringdb shell [HOST[:PORT]] [-k KEYSPACE] [-e STATEMENT] [-f FILE] [-u USER -p PASS]`.
#[derive(Debug, Clone)]
pub struct ShellArgs {
    /// Host name or address of the server (default `127.0.0.1`).
    pub host: String,
    /// CQL port (default 9042).
    pub port: u16,
    /// Keyspace to `USE` after connecting.
    pub keyspace: Option<String>,
    /// Statements to run instead of reading input (`-e`).
    pub execute: Option<String>,
    /// File of statements to run instead of reading input (`-f`).
    pub file: Option<PathBuf>,
    /// User name for servers with authentication (`-u`).
    pub username: Option<String>,
    /// Password for servers with authentication (`-p`).
    pub password: Option<String>,
    /// Consistency level to start with (default ONE).
    pub consistency: Option<String>,
    /// Time allowed to connect.
    pub connect_timeout: Duration,
    /// Time allowed for each request.
    pub request_timeout: Duration,
    /// Where history is kept; `None` means `$HOME/.ringdb_history` when HOME is set.
    pub history_file: Option<PathBuf>,
}

impl Default for ShellArgs {
    fn default() -> Self {
        ShellArgs {
            host: "127.0.0.1".to_string(),
            port: 9042,
            keyspace: None,
            execute: None,
            file: None,
            username: None,
            password: None,
            consistency: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(12),
            history_file: None,
        }
    }
}

impl ShellArgs {
    /// Default arguments for a shell connected to `addr`.
    pub fn for_address(addr: std::net::SocketAddr) -> ShellArgs {
        ShellArgs {
            host: addr.ip().to_string(),
            port: addr.port(),
            ..ShellArgs::default()
        }
    }

    /// Sets host and port from `HOST`, `HOST:PORT`, `[V6]:PORT` or a bare IPv6 address.
    pub fn set_target(&mut self, target: &str) -> Result<(), String> {
        let (host, port) = parse_target(target, self.port)?;
        self.host = host;
        self.port = port;
        Ok(())
    }

    /// `host:port` (IPv6 addresses bracketed) for connecting and display.
    pub fn target(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    fn client_options(&self) -> ClientOptions {
        ClientOptions {
            keyspace: self.keyspace.clone(),
            connect_timeout: self.connect_timeout,
            request_timeout: self.request_timeout,
            credentials: self.username.as_ref().map(|u| Credentials {
                username: u.clone(),
                password: self.password.clone().unwrap_or_default(),
            }),
            ..ClientOptions::default()
        }
    }
}

/// Splits `HOST[:PORT]`; `default_port` applies when no port is given.
pub fn parse_target(target: &str, default_port: u16) -> Result<(String, u16), String> {
    let target = target.trim();
    if target.is_empty() {
        return Err("empty host".into());
    }
    let parse_port = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| format!("invalid port '{p}' in '{target}'"))
    };
    if let Some(rest) = target.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("missing ']' in '{target}'"))?;
        return match after.strip_prefix(':') {
            Some(p) => Ok((host.to_string(), parse_port(p)?)),
            None if after.is_empty() => Ok((host.to_string(), default_port)),
            None => Err(format!("unexpected text after ']' in '{target}'")),
        };
    }
    match target.matches(':').count() {
        0 => Ok((target.to_string(), default_port)),
        1 => {
            let (host, port) = target.split_once(':').unwrap_or((target, ""));
            Ok((host.to_string(), parse_port(port)?))
        }
        // A bare IPv6 address.
        _ => Ok((target.to_string(), default_port)),
    }
}

/// Runs the shell; returns the process exit status.
pub async fn run(args: ShellArgs) -> i32 {
    let target = args.target();
    let options = args.client_options();
    let client = match Client::connect(target.as_str(), options.clone()).await {
        Ok(client) => client,
        Err(e) => {
            eprintln!("Connection error: could not connect to {target}: {e}");
            return EXIT_CONNECTION_FAILED;
        }
    };
    let stdin_is_tty = std::io::stdin().is_terminal();
    let interactive = args.execute.is_none() && args.file.is_none() && stdin_is_tty;

    if interactive {
        let console = match TerminalConsole::new(history_path(&args)) {
            Ok(console) => console,
            Err(e) => {
                eprintln!("cannot start line editor: {e}");
                return EXIT_CONNECTION_FAILED;
            }
        };
        let mut shell = Shell::new(client, console, true, target, options);
        if !apply_consistency(&mut shell, &args) {
            return EXIT_STATEMENT_FAILED;
        }
        shell.load_server_info().await;
        let greeting = format!(
            "{}\n{}\nUse HELP for help.\n",
            shell.host_line(),
            shell.version_line()
        );
        shell.console_mut().print(&greeting);
        shell.run_console("<stdin>").await;
        shell.console_mut().save_history();
        return 0;
    }

    let mut shell = Shell::new(client, PipeConsole::new(), false, target, options);
    if !apply_consistency(&mut shell, &args) {
        return EXIT_STATEMENT_FAILED;
    }
    if let Some(statements) = &args.execute {
        shell.run_script("<stdin>", statements).await;
    } else if let Some(path) = &args.file {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                shell.run_script(&path.display().to_string(), &text).await;
            }
            Err(e) => {
                eprintln!("Could not open '{}': {e}", path.display());
                return EXIT_STATEMENT_FAILED;
            }
        }
    } else {
        shell.run_console("<stdin>").await;
    }
    if shell.failed() {
        EXIT_STATEMENT_FAILED
    } else {
        0
    }
}

fn apply_consistency<C: Console>(shell: &mut Shell<C>, args: &ShellArgs) -> bool {
    if let Some(level) = &args.consistency {
        match level.to_ascii_uppercase().parse() {
            Ok(c) => shell.settings_mut().consistency = c,
            Err(_) => {
                eprintln!("unknown consistency level: {level}");
                return false;
            }
        }
    }
    true
}

fn history_path(args: &ShellArgs) -> Option<PathBuf> {
    args.history_file.clone().or_else(|| {
        std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(|home| PathBuf::from(home).join(".ringdb_history"))
    })
}

/// The details an error carries, as `(name, value)` pairs for `info={...}`.
pub fn error_info(error: &ErrorBody) -> Vec<(String, String)> {
    error.info()
}

/// What `DESCRIBE` prints for the server's rows: every `create_statement` followed by a blank
/// line; for listings (`DESCRIBE KEYSPACES`, `DESCRIBE TABLES`) the names, grouped by keyspace;
/// for `DESCRIBE CLUSTER` the cluster facts; otherwise a plain table.
pub fn format_describe(rows: &Rows) -> String {
    // Text cells are taken as they are: a create statement spans lines, which rendering for a
    // table would escape.
    let names: Vec<String> = rows.columns.iter().map(|c| c.name.clone()).collect();
    let cells: Vec<Vec<String>> = rows
        .rows
        .iter()
        .map(|row| {
            row.iter()
                .map(|cell| match cell {
                    Some(CqlValue::Text(s)) | Some(CqlValue::Ascii(s)) => s.clone(),
                    Some(other) => other.render(),
                    None => "null".to_string(),
                })
                .collect()
        })
        .collect();
    let column = |name: &str| names.iter().position(|n| n == name);
    let mut out = String::from("\n");
    if let Some(i) = column("create_statement") {
        for row in &cells {
            if let Some(stmt) = row.get(i) {
                out.push_str(stmt.trim_end());
                out.push_str("\n\n");
            }
        }
        return out;
    }
    if let Some(cluster) = column("cluster") {
        let row = cells.first();
        let get = |i: Option<usize>| {
            i.and_then(|i| row.and_then(|r| r.get(i)))
                .cloned()
                .unwrap_or_default()
        };
        out.push_str(&format!("Cluster: {}\n", get(Some(cluster))));
        out.push_str(&format!("Partitioner: {}\n", get(column("partitioner"))));
        if column("snitch").is_some() {
            out.push_str(&format!("Snitch: {}\n", get(column("snitch"))));
        }
        out.push('\n');
        return out;
    }
    if let Some(name) = column("name") {
        let keyspace = column("keyspace_name");
        let kind = column("type");
        let all_keyspaces = kind.is_some_and(|k| {
            cells
                .iter()
                .all(|r| r.get(k).is_some_and(|t| t == "keyspace"))
        });
        if all_keyspaces || keyspace.is_none() {
            let list: Vec<&str> = cells
                .iter()
                .filter_map(|r| r.get(name).map(String::as_str))
                .collect();
            out.push_str(&list.join("  "));
            out.push_str("\n\n");
            return out;
        }
        // Group the names by keyspace, keeping the server's order.
        let mut groups: Vec<(String, Vec<String>)> = Vec::new();
        for row in &cells {
            let ks = keyspace
                .and_then(|k| row.get(k))
                .cloned()
                .unwrap_or_default();
            let n = row.get(name).cloned().unwrap_or_default();
            match groups.last_mut() {
                Some((last, names)) if *last == ks => names.push(n),
                _ => groups.push((ks, vec![n])),
            }
        }
        for (ks, names) in groups {
            let title = format!("Keyspace {ks}");
            out.push_str(&format!("{title}\n{}\n", "-".repeat(title.chars().count())));
            out.push_str(&names.join("  "));
            out.push_str("\n\n");
        }
        return out;
    }
    out.push_str(&format::format_table(&names, &cells));
    out.push('\n');
    out
}

/// Text of `HELP` and `HELP topic`.
pub fn help_text(topic: Option<&str>) -> String {
    const COMMANDS: &[(&str, &str)] = &[
        ("CONSISTENCY", "CONSISTENCY [level]\n    Shows or sets the consistency level of later statements\n    (ANY, ONE, TWO, THREE, QUORUM, ALL, LOCAL_QUORUM, EACH_QUORUM, LOCAL_ONE)."),
        ("SERIAL", "SERIAL CONSISTENCY [SERIAL|LOCAL_SERIAL]\n    Shows or sets the serial consistency of conditional updates."),
        ("PAGING", "PAGING [ON|OFF|<page size>]\n    Shows or sets interactive paging: ON shows one page at a time with ---MORE---,\n    OFF fetches every page before printing."),
        ("EXPAND", "EXPAND [ON|OFF]\n    Shows or sets expanded output: one record per row, one line per column."),
        ("SOURCE", "SOURCE 'file'\n    Runs the statements of a file."),
        ("DESCRIBE", "DESCRIBE KEYSPACES | KEYSPACE ks | TABLES | TABLE t | CLUSTER | SCHEMA\n    Shows schema, as CQL statements (executed by the server). DESC is short for it."),
        ("SHOW", "SHOW VERSION | SHOW HOST\n    Shows the versions of shell, server and protocol, or where the shell is connected."),
        ("CLEAR", "CLEAR (or CLS)\n    Clears the screen."),
        ("EXIT", "EXIT (or QUIT, or Ctrl-D)\n    Leaves the shell."),
        ("HELP", "HELP [topic]\n    Lists the shell commands, or explains one."),
    ];
    match topic.map(|t| t.trim().to_ascii_uppercase()) {
        None => {
            let names: Vec<&str> = COMMANDS.iter().map(|(n, _)| *n).collect();
            format!(
                "\nShell commands (end at the end of the line; CQL statements end with ';'):\n\
                 =========================================================================\n\
                 {}\n\nCQL statements are sent to the server: CREATE/ALTER/DROP KEYSPACE, \
                 CREATE/ALTER/DROP TABLE, TRUNCATE,\nUSE, INSERT, UPDATE, DELETE, SELECT, BEGIN BATCH ... APPLY BATCH.\n\
                 Use HELP <command> for details.\n\n",
                names.join("  ")
            )
        }
        Some(topic) => {
            let topic = match topic.as_str() {
                "DESC" => "DESCRIBE",
                "QUIT" => "EXIT",
                "CLS" => "CLEAR",
                t => t,
            };
            match COMMANDS.iter().find(|(n, _)| *n == topic) {
                Some((_, text)) => format!("{text}\n"),
                None => format!("No help on '{topic}'. Use HELP for the list of commands.\n"),
            }
        }
    }
}

/// The interactive terminal: rustyline for input (line editing, history), stdout/stderr for
/// output. rustyline blocks, so each read runs on the blocking pool with the editor moved there
/// and back.
pub struct TerminalConsole {
    editor: Option<rustyline::DefaultEditor>,
    history: Option<PathBuf>,
}

impl TerminalConsole {
    /// A terminal console; history is loaded from `history` if the file exists.
    pub fn new(history: Option<PathBuf>) -> Result<Self, rustyline::error::ReadlineError> {
        let mut editor = rustyline::DefaultEditor::new()?;
        if let Some(path) = &history {
            // A missing or unreadable history file is not an error worth stopping for.
            let _ = editor.load_history(path);
        }
        Ok(TerminalConsole {
            editor: Some(editor),
            history,
        })
    }

    /// Writes the history file (best effort).
    pub fn save_history(&mut self) {
        if let (Some(editor), Some(path)) = (self.editor.as_mut(), self.history.as_ref()) {
            if let Err(e) = editor.save_history(path) {
                eprintln!("could not save history to {}: {e}", path.display());
            }
        }
    }
}

impl Console for TerminalConsole {
    fn print(&mut self, text: &str) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }

    fn print_error(&mut self, line: &str) {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{line}");
    }

    fn read_line<'a>(&'a mut self, prompt: &'a str) -> BoxFuture<'a, ReadLine> {
        Box::pin(async move {
            let Some(mut editor) = self.editor.take() else {
                return ReadLine::Eof;
            };
            let prompt = prompt.to_string();
            let joined = tokio::task::spawn_blocking(move || {
                let result = editor.readline(&prompt);
                (editor, result)
            })
            .await;
            let (editor, result) = match joined {
                Ok(pair) => pair,
                Err(_) => return ReadLine::Eof,
            };
            self.editor = Some(editor);
            match result {
                Ok(line) => ReadLine::Line(line),
                Err(rustyline::error::ReadlineError::Interrupted) => ReadLine::Interrupted,
                Err(_) => ReadLine::Eof,
            }
        })
    }

    fn add_history(&mut self, entry: &str) {
        if let Some(editor) = self.editor.as_mut() {
            let _ = editor.add_history_entry(entry);
        }
    }

    /// Ctrl-C while a statement runs. (At the prompt the terminal is in raw mode and rustyline
    /// reads Ctrl-C as a key, so this only fires between prompts.)
    fn interrupted(&self) -> BoxFuture<'static, ()> {
        Box::pin(async {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }
}

/// Non-interactive input (piped stdin) and plain stdout/stderr output.
pub struct PipeConsole {
    lines: Option<Lines<BufReader<Stdin>>>,
}

impl PipeConsole {
    pub fn new() -> Self {
        PipeConsole { lines: None }
    }
}

impl Default for PipeConsole {
    fn default() -> Self {
        Self::new()
    }
}

impl Console for PipeConsole {
    fn print(&mut self, text: &str) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }

    fn print_error(&mut self, line: &str) {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{line}");
    }

    fn read_line<'a>(&'a mut self, _prompt: &'a str) -> BoxFuture<'a, ReadLine> {
        Box::pin(async move {
            let lines = self
                .lines
                .get_or_insert_with(|| BufReader::new(tokio::io::stdin()).lines());
            match lines.next_line().await {
                Ok(Some(line)) => ReadLine::Line(line),
                Ok(None) => ReadLine::Eof,
                Err(e) => {
                    eprintln!("error reading stdin: {e}");
                    ReadLine::Eof
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(
            parse_target("10.0.0.1", 9042),
            Ok(("10.0.0.1".into(), 9042))
        );
        assert_eq!(parse_target("db:9142", 9042), Ok(("db".into(), 9142)));
        assert_eq!(parse_target("[::1]:9043", 9042), Ok(("::1".into(), 9043)));
        assert_eq!(parse_target("[::1]", 9042), Ok(("::1".into(), 9042)));
        assert_eq!(parse_target("::1", 9042), Ok(("::1".into(), 9042)));
        assert!(parse_target("db:port", 9042).is_err());
        assert!(parse_target("", 9042).is_err());
        let mut args = ShellArgs::default();
        args.set_target("::1").unwrap();
        assert_eq!(args.target(), "[::1]:9042");
        let args = ShellArgs::for_address("127.0.0.5:9142".parse().unwrap());
        assert_eq!(args.target(), "127.0.0.5:9142");
    }

    #[test]
    fn help_topics() {
        assert!(help_text(None).contains("CONSISTENCY"));
        assert!(help_text(Some("desc")).starts_with("DESCRIBE"));
        assert!(help_text(Some("nope")).contains("No help"));
    }
}
