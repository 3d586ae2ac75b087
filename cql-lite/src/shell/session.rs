//! One shell session: settings, the connection, and what each input does.
//!
//! A [`Shell`] owns a [`Client`] and a [`Console`]. Input reaches it line by line (from the
//! terminal, piped stdin, `-e`, `-f` or `SOURCE`); a [`StatementBuffer`] turns lines into complete
//! statements and shell commands, which are run in order. The console abstracts the terminal, so
//! that tests drive a whole session with scripted input and read back exactly what was printed.
//!
//! Output follows cqlsh: results go to the console's standard output, errors to its error
//! output; in a script (anything but the interactive terminal) errors are prefixed with
//! `source:line:` so that a failing line of a long file can be found.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::str::FromStr;

use super::format::{format_expanded, format_row_count, format_server_error, format_table};
use super::input::{Input, PagingSetting, ShellCommand, StatementBuffer};
use crate::client::{
    Client, ClientError, ClientOptions, Pager, QueryOptions, QueryResult, Rows, NO_VALUES,
};
use crate::message::Consistency;

/// Page size of interactive paging, as in cqlsh.
pub const DEFAULT_PAGE_SIZE: i32 = 100;
/// Page size used to fetch all pages when paging is off or output is not a terminal.
pub const FETCH_ALL_PAGE_SIZE: i32 = 5000;
/// How deep `SOURCE` may nest before the shell refuses (a file that sources itself).
const MAX_SOURCE_DEPTH: usize = 16;

/// The result of reading one line from a console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadLine {
    Line(String),
    /// Ctrl-C: drop the pending statement (or stop paging).
    Interrupted,
    /// Ctrl-D or end of input.
    Eof,
}

/// A boxed future, for the console's async methods.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where a shell reads lines and writes text.
pub trait Console: Send {
    /// Writes text to standard output (the text carries its own newlines).
    fn print(&mut self, text: &str);
    /// Writes one line (without newline) to the error output.
    fn print_error(&mut self, line: &str);
    /// Shows `prompt` (when interactive) and reads one line.
    fn read_line<'a>(&'a mut self, prompt: &'a str) -> BoxFuture<'a, ReadLine>;
    /// Records a complete entry in the history (interactive consoles only).
    fn add_history(&mut self, _entry: &str) {}
    /// Completes when the user asks to stop the running statement (Ctrl-C at a terminal);
    /// consoles without a person behind them never complete it.
    fn interrupted(&self) -> BoxFuture<'static, ()> {
        Box::pin(std::future::pending())
    }
}

/// What the server told us about itself, shown by `SHOW VERSION` / `SHOW HOST`.
#[derive(Debug, Clone, Default)]
pub struct ServerInfo {
    pub cluster_name: Option<String>,
    pub release_version: Option<String>,
    pub cql_version: Option<String>,
}

/// Settings changed by shell commands.
#[derive(Debug, Clone)]
pub struct Settings {
    pub consistency: Consistency,
    pub serial_consistency: Consistency,
    /// Page size when paging is on; `None` when off.
    pub paging: Option<i32>,
    pub expand: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            consistency: Consistency::One,
            serial_consistency: Consistency::Serial,
            paging: Some(DEFAULT_PAGE_SIZE),
            expand: false,
        }
    }
}

/// Whether to go on after an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Exit,
}

/// What to do after one input, inside the shell.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Continue,
    Exit,
    /// Run this file next.
    Source(String),
}

/// A script being run: its remaining lines, the statement being assembled, and inputs already
/// complete but not yet run.
struct Script {
    name: String,
    lines: std::vec::IntoIter<String>,
    /// Number of the last line read (1-based).
    line: usize,
    buffer: StatementBuffer,
    ready: std::collections::VecDeque<Input>,
}

impl Script {
    fn new(name: &str, text: &str) -> Script {
        Script {
            name: name.to_string(),
            lines: text
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
                .into_iter(),
            line: 0,
            buffer: StatementBuffer::new(),
            ready: Default::default(),
        }
    }

    fn location(&self) -> Location {
        Location {
            name: self.name.clone(),
            line: self.line,
        }
    }

    /// The next complete input; at the end, a last statement without `;`; then `None`.
    fn next_input(&mut self) -> Option<Input> {
        loop {
            if let Some(input) = self.ready.pop_front() {
                return Some(input);
            }
            match self.lines.next() {
                Some(line) => {
                    self.line += 1;
                    self.ready.extend(self.buffer.push_line(&line));
                }
                None => return self.buffer.take_pending().map(Input::Cql),
            }
        }
    }
}

/// Where the current input comes from, for error prefixes.
#[derive(Debug, Clone)]
struct Location {
    name: String,
    line: usize,
}

/// An interactive or scripted shell session over one connection.
pub struct Shell<C: Console> {
    client: Client,
    console: C,
    settings: Settings,
    /// True when a person is at a terminal: prompts, `---MORE---`, no error prefixes.
    interactive: bool,
    failed: bool,
    info: ServerInfo,
    /// How to reconnect when the connection is lost.
    target: String,
    options: ClientOptions,
    location: Vec<Location>,
}

impl<C: Console> Shell<C> {
    /// A shell over a connected client. `target` (`host:port`) is used to reconnect and is shown
    /// by `SHOW HOST`.
    pub fn new(
        client: Client,
        console: C,
        interactive: bool,
        target: String,
        options: ClientOptions,
    ) -> Self {
        Shell {
            client,
            console,
            settings: Settings::default(),
            interactive,
            failed: false,
            info: ServerInfo::default(),
            target,
            options,
            location: Vec::new(),
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Changes the settings (e.g. consistency given on the command line).
    pub fn settings_mut(&mut self) -> &mut Settings {
        &mut self.settings
    }

    /// True once any statement or command failed.
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// The console (tests read what was printed).
    pub fn console(&self) -> &C {
        &self.console
    }

    /// The console, mutably.
    pub fn console_mut(&mut self) -> &mut C {
        &mut self.console
    }

    /// The prompt for the next line: `ringdb> `, `ringdb:ks> `, or the continuation prompt.
    pub fn prompt(&self, continuation: bool) -> String {
        if continuation {
            return "   ... ".to_string();
        }
        match self.client.keyspace() {
            Some(ks) => format!("ringdb:{ks}> "),
            None => "ringdb> ".to_string(),
        }
    }

    /// Reads `cluster_name`, `release_version` and `cql_version` from `system.local` (best
    /// effort: a server without it still gets a working shell).
    pub async fn load_server_info(&mut self) {
        let query = "SELECT cluster_name, release_version, cql_version FROM system.local";
        let options = QueryOptions::default();
        if let Ok(QueryResult::Rows(rows)) = self.client.query(query, NO_VALUES, &options).await {
            let get = |name: &str| -> Option<String> {
                let i = rows.column_index(name)?;
                let cell = rows.rows.first()?.get(i)?.as_ref()?;
                Some(cell.render())
            };
            self.info = ServerInfo {
                cluster_name: get("cluster_name"),
                release_version: get("release_version"),
                cql_version: get("cql_version"),
            };
        }
        if self.info.cql_version.is_none() {
            self.info.cql_version = self
                .client
                .supported()
                .get("CQL_VERSION")
                .and_then(|v| v.first())
                .cloned();
        }
    }

    /// `Connected to X at host:port`, as cqlsh greets.
    pub fn host_line(&self) -> String {
        let cluster = self.info.cluster_name.as_deref().unwrap_or("ringdb");
        format!("Connected to {cluster} at {}.", self.target)
    }

    /// `[ringdb shell 0.1.0 | Server 4.0.11 | CQL spec 3.4.5 | Native protocol v4]`.
    pub fn version_line(&self) -> String {
        format!(
            "[ringdb shell {} | Server {} | CQL spec {} | Native protocol v4]",
            env!("CARGO_PKG_VERSION"),
            self.info.release_version.as_deref().unwrap_or("unknown"),
            self.info.cql_version.as_deref().unwrap_or("unknown"),
        )
    }

    /// Reads lines from the console until EOF or `EXIT`. Interactive Ctrl-C drops the pending
    /// statement; at end of piped input an unfinished statement is reported.
    pub async fn run_console(&mut self, source_name: &str) -> Flow {
        let mut buffer = StatementBuffer::new();
        self.location.push(Location {
            name: source_name.to_string(),
            line: 0,
        });
        let flow = loop {
            let prompt = if self.interactive {
                self.prompt(buffer.is_pending())
            } else {
                String::new()
            };
            let line = match self.console.read_line(&prompt).await {
                ReadLine::Line(line) => line,
                ReadLine::Interrupted => {
                    buffer.clear();
                    continue;
                }
                ReadLine::Eof => break Flow::Continue,
            };
            if let Some(loc) = self.location.last_mut() {
                loc.line += 1;
            }
            if self.interactive && !line.trim().is_empty() {
                self.console.add_history(&line);
            }
            if self.run_inputs(buffer.push_line(&line)).await == Flow::Exit {
                break Flow::Exit;
            }
        };
        if let Some(rest) = buffer.take_pending() {
            if !self.interactive {
                let first: String = rest.lines().next().unwrap_or("").chars().take(60).collect();
                self.error(&format!("Incomplete statement at end of input: {first}"));
            }
        }
        self.location.pop();
        flow
    }

    /// Runs every statement of `text` (from `-e`, `-f` or `SOURCE`), reporting errors as
    /// `source_name:line:...` and going on after them. A last statement without `;` is run too
    /// (`-e "SELECT * FROM t"`).
    pub async fn run_script(&mut self, source_name: &str, text: &str) -> Flow {
        self.run_scripts(Script::new(source_name, text)).await
    }

    /// Runs a script and every file it `SOURCE`s, in place. Nesting is an explicit stack of
    /// open scripts rather than recursion, and is bounded by [`MAX_SOURCE_DEPTH`].
    async fn run_scripts(&mut self, first: Script) -> Flow {
        let depth = self.location.len();
        self.location.push(first.location());
        let mut scripts = vec![first];
        let mut flow = Flow::Continue;
        while let Some(script) = scripts.last_mut() {
            let input = match script.next_input() {
                Some(input) => input,
                None => {
                    scripts.pop();
                    self.location.pop();
                    continue;
                }
            };
            if let Some(loc) = self.location.last_mut() {
                loc.line = script.line;
            }
            match self.run_cql_or_command(input).await {
                Step::Continue => {}
                Step::Exit => {
                    flow = Flow::Exit;
                    break;
                }
                Step::Source(file) => {
                    if scripts.len() >= MAX_SOURCE_DEPTH {
                        self.error(&format!("SOURCE nested too deeply at {file}"));
                    } else if let Some(script) = self.open_source(&file) {
                        self.location.push(script.location());
                        scripts.push(script);
                    }
                }
            }
        }
        self.location.truncate(depth);
        flow
    }

    /// Reads a file named by `SOURCE`; reports (and returns `None`) when it cannot be read.
    fn open_source(&mut self, file: &str) -> Option<Script> {
        let path = expand_home(file);
        match std::fs::read_to_string(&path) {
            Ok(text) => Some(Script::new(&path.display().to_string(), &text)),
            Err(e) => {
                self.error(&format!("Could not open '{}': {e}", path.display()));
                None
            }
        }
    }

    /// Runs inputs in order; stops at `EXIT`.
    pub async fn run_inputs(&mut self, inputs: Vec<Input>) -> Flow {
        for input in inputs {
            if self.run_input(input).await == Flow::Exit {
                return Flow::Exit;
            }
        }
        Flow::Continue
    }

    /// Runs one statement or command (`SOURCE` included).
    pub async fn run_input(&mut self, input: Input) -> Flow {
        match self.run_cql_or_command(input).await {
            Step::Continue => Flow::Continue,
            Step::Exit => Flow::Exit,
            Step::Source(file) => match self.open_source(&file) {
                Some(script) => self.run_scripts(script).await,
                None => Flow::Continue,
            },
        }
    }

    /// Runs one input; `SOURCE` is left to the caller, which owns the stack of open scripts.
    async fn run_cql_or_command(&mut self, input: Input) -> Step {
        match input {
            Input::Cql(statement) => {
                self.run_cql(&statement).await;
                Step::Continue
            }
            Input::Command(ShellCommand::Source(file)) => Step::Source(file),
            Input::Command(ShellCommand::Exit) => Step::Exit,
            Input::Command(command) => {
                self.run_command(command).await;
                Step::Continue
            }
            Input::Invalid(message) => {
                self.error(&message);
                Step::Continue
            }
        }
    }

    /// Prints an error line, prefixed with `source:line:` in scripts, and remembers the failure.
    fn error(&mut self, message: &str) {
        self.failed = true;
        let line = match (self.interactive, self.location.last()) {
            (false, Some(loc)) => format!("{}:{}:{message}", loc.name, loc.line),
            _ => message.to_string(),
        };
        self.console.print_error(&line);
    }

    fn client_error(&mut self, error: &ClientError) {
        let text = match error {
            ClientError::Server {
                code,
                message,
                error,
            } => format_server_error(*code, message, &super::error_info(error)),
            ClientError::Timeout(after) => format!(
                "OperationTimedOut: no answer from {} within {:.1}s",
                self.target,
                after.as_secs_f64()
            ),
            ClientError::ConnectionClosed(reason) => {
                format!(
                    "ConnectionError: connection to {} lost: {reason}",
                    self.target
                )
            }
            ClientError::Io(e) => format!("ConnectionError: {e}"),
            ClientError::Connect { addr, message } => {
                format!("ConnectionError: cannot connect to {addr}: {message}")
            }
            ClientError::Protocol(message) => format!("ProtocolError: {message}"),
            ClientError::Auth(message) => format!("AuthenticationFailed: {message}"),
            ClientError::InvalidRequest(message) => format!("InvalidRequest: {message}"),
        };
        self.error(&text);
    }

    /// Reconnects if the connection was lost (the server restarted, say), keeping the keyspace.
    async fn ensure_connected(&mut self) -> bool {
        if self.client.closed_reason().is_none() {
            return true;
        }
        let mut options = self.options.clone();
        options.keyspace = self.client.keyspace().or(options.keyspace);
        match Client::connect(self.target.as_str(), options).await {
            Ok(client) => {
                self.client = client;
                true
            }
            Err(e) => {
                self.client_error(&e);
                false
            }
        }
    }

    fn query_options(&self, page_size: i32) -> QueryOptions {
        QueryOptions {
            consistency: self.settings.consistency,
            serial_consistency: Some(self.settings.serial_consistency),
            page_size: Some(page_size),
            paging_state: None,
            timestamp: None,
        }
    }

    /// Sends a statement to the server and prints its result.
    pub async fn run_cql(&mut self, statement: &str) {
        if !self.ensure_connected().await {
            return;
        }
        if is_describe(statement) {
            return self.run_describe(statement).await;
        }
        let paged = self.interactive && self.settings.paging.is_some();
        let page_size = match self.settings.paging {
            Some(n) if paged => n,
            _ => FETCH_ALL_PAGE_SIZE,
        };
        let mut pager = self
            .client
            .pager(statement, NO_VALUES, self.query_options(page_size));
        // Rows shown so far, and rows gathered but not yet shown (when not paging).
        let mut shown = 0usize;
        let mut gathered: Option<Rows> = None;
        loop {
            let page = match self.next_page(&mut pager).await {
                Ok(Some(page)) => page,
                Ok(None) => break,
                Err(e) => {
                    if shown > 0 {
                        self.console
                            .print(&format!("{}\n", format_row_count(shown)));
                    }
                    if let Some(e) = e {
                        self.client_error(&e);
                    }
                    return;
                }
            };
            let rows = match page {
                QueryResult::Rows(rows) => rows,
                // Writes and DDL print nothing; USE changes the prompt through the client.
                QueryResult::Void | QueryResult::SetKeyspace(_) | QueryResult::SchemaChange(_) => {
                    return
                }
            };
            if !paged {
                // Gather every page, then print one table.
                match &mut gathered {
                    None => gathered = Some(rows),
                    Some(all) => all.rows.extend(rows.rows),
                }
                continue;
            }
            if shown == 0 || !rows.rows.is_empty() {
                self.print_page(&rows, shown);
            }
            shown += rows.rows.len();
            if pager.is_done() {
                break;
            }
            match self.console.read_line("---MORE---").await {
                ReadLine::Line(_) => {}
                ReadLine::Interrupted | ReadLine::Eof => break,
            }
        }
        if let Some(all) = gathered {
            self.print_page(&all, 0);
            shown = all.rows.len();
        }
        self.console
            .print(&format!("{}\n", format_row_count(shown)));
    }

    /// The next page, unless the user presses Ctrl-C first (`Err(None)`) or the request fails
    /// (`Err(Some(error))`). Abandoning the request is safe: the client keeps its stream id until
    /// the late answer arrives.
    async fn next_page(
        &mut self,
        pager: &mut Pager,
    ) -> Result<Option<QueryResult>, Option<ClientError>> {
        let interrupted = self.console.interrupted();
        tokio::select! {
            page = pager.next_page() => page.map_err(Some),
            _ = interrupted => {
                self.console.print_error("Interrupted.");
                Err(None)
            }
        }
    }

    /// Prints one page of rows with its header (or as records when expanded), with blank lines
    /// around it as cqlsh does. `first_row` numbers expanded records across pages.
    fn print_page(&mut self, rows: &Rows, first_row: usize) {
        let (names, cells) = render_rows(rows);
        let mut text = String::from("\n");
        if self.settings.expand && !cells.is_empty() {
            text.push_str(&format_expanded(&names, &cells, first_row + 1));
        } else {
            text.push_str(&format_table(&names, &cells));
            text.push('\n');
        }
        self.console.print(&text);
    }

    /// `DESCRIBE ...`: executed by the server (Cassandra 4 style); the shell prints the
    /// `create_statement` of each row, or the listed names for `DESCRIBE KEYSPACES/TABLES`.
    async fn run_describe(&mut self, statement: &str) {
        let options = self.query_options(FETCH_ALL_PAGE_SIZE);
        match self.client.query_all(statement, NO_VALUES, &options).await {
            Ok(QueryResult::Rows(rows)) => {
                let text = super::format_describe(&rows);
                self.console.print(&text);
            }
            Ok(_) => {}
            Err(e) => self.client_error(&e),
        }
    }

    /// Runs a shell command other than `EXIT` and `SOURCE` (see `run_cql_or_command`).
    async fn run_command(&mut self, command: ShellCommand) {
        match command {
            ShellCommand::Exit | ShellCommand::Source(_) => {}
            ShellCommand::Help(topic) => {
                let text = super::help_text(topic.as_deref());
                self.console.print(&text);
            }
            ShellCommand::Consistency(None) => {
                let text = format!("Current consistency level is {}.\n", self.settings.consistency);
                self.console.print(&text);
            }
            ShellCommand::Consistency(Some(level)) => match Consistency::from_str(&level) {
                Ok(c) => {
                    self.settings.consistency = c;
                    self.console.print(&format!("Consistency level set to {c}.\n"));
                }
                Err(_) => self.error(&format!(
                    "Improper CONSISTENCY command: unknown level {level}. Use one of ANY, ONE, TWO, THREE, QUORUM, ALL, LOCAL_QUORUM, EACH_QUORUM, SERIAL, LOCAL_SERIAL, LOCAL_ONE."
                )),
            },
            ShellCommand::SerialConsistency(None) => {
                let text = format!(
                    "Current serial consistency level is {}.\n",
                    self.settings.serial_consistency
                );
                self.console.print(&text);
            }
            ShellCommand::SerialConsistency(Some(level)) => {
                match Consistency::from_str(&level) {
                    Ok(c @ (Consistency::Serial | Consistency::LocalSerial)) => {
                        self.settings.serial_consistency = c;
                        self.console
                            .print(&format!("Serial consistency level set to {c}.\n"));
                    }
                    _ => self.error(&format!(
                        "Improper SERIAL CONSISTENCY command: {level}. Use SERIAL or LOCAL_SERIAL."
                    )),
                }
            }
            ShellCommand::Paging(None) => {
                let text = match self.settings.paging {
                    Some(n) => format!(
                        "Query paging is currently enabled. Use PAGING OFF to disable\nPage size: {n}\n"
                    ),
                    None => "Query paging is currently disabled. Use PAGING ON to enable.\n".into(),
                };
                self.console.print(&text);
            }
            ShellCommand::Paging(Some(setting)) => {
                let text = match setting {
                    PagingSetting::Off => {
                        self.settings.paging = None;
                        "Disabled Query paging.\n".to_string()
                    }
                    PagingSetting::On => {
                        let n = self.settings.paging.unwrap_or(DEFAULT_PAGE_SIZE);
                        self.settings.paging = Some(n);
                        format!("Now Query paging is enabled\nPage size: {n}\n")
                    }
                    PagingSetting::Size(n) => {
                        self.settings.paging = Some(n);
                        format!("Now Query paging is enabled\nPage size: {n}\n")
                    }
                };
                self.console.print(&text);
            }
            ShellCommand::Expand(None) => {
                let text = if self.settings.expand {
                    "Expanded output is currently enabled. Use EXPAND OFF to disable\n"
                } else {
                    "Expanded output is currently disabled. Use EXPAND ON to enable.\n"
                };
                self.console.print(text);
            }
            ShellCommand::Expand(Some(on)) => {
                self.settings.expand = on;
                self.console.print(if on {
                    "Now Expanded output is enabled\n"
                } else {
                    "Disabled Expanded output.\n"
                });
            }
            ShellCommand::ShowVersion => {
                let text = format!("{}\n", self.version_line());
                self.console.print(&text);
            }
            ShellCommand::ShowHost => {
                let text = format!("{}\n", self.host_line());
                self.console.print(&text);
            }
            ShellCommand::Clear => self.console.print("\x1b[2J\x1b[H"),
        }
    }
}

/// `~/x` → `$HOME/x`.
fn expand_home(path: &str) -> PathBuf {
    if let Some(rest) = path.strip_prefix("~/") {
        if let Some(home) = std::env::var_os("HOME") {
            return Path::new(&home).join(rest);
        }
    }
    PathBuf::from(path)
}

fn is_describe(statement: &str) -> bool {
    let word = statement
        .split(|c: char| c.is_whitespace() || c == ';')
        .next()
        .unwrap_or("");
    word.eq_ignore_ascii_case("describe") || word.eq_ignore_ascii_case("desc")
}

/// Column names and rendered cells (`null` for nulls).
pub fn render_rows(rows: &Rows) -> (Vec<String>, Vec<Vec<String>>) {
    let names = rows.columns.iter().map(|c| c.name.clone()).collect();
    let cells = rows
        .rows
        .iter()
        .map(|row| {
            row.iter()
                .map(|cell| match cell {
                    Some(v) => v.render(),
                    None => "null".to_string(),
                })
                .collect()
        })
        .collect();
    (names, cells)
}
