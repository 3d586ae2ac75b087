//! Turning lines of shell input into work: CQL statements and shell commands.
//!
//! CQL statements may span lines and end with `;`; the lexer's `split_statements` finds where
//! they end (it knows about strings, quoted names and comments, so a `;` inside `'a;b'` does not
//! end anything). Shell commands (`CONSISTENCY`, `PAGING`, `EXPAND`, `SOURCE`, `SHOW`, `HELP`,
//! `EXIT`, ...) and `DESCRIBE` are different, as in cqlsh: they end at the end of their line, with
//! or without `;`. A command is only recognized at the start of a statement, never in the middle
//! of a pending multi-line one.
//!
//! Everything here is pure: [`StatementBuffer::push_line`] takes a line and returns the
//! [`Input`]s it completed; the shell decides what to do with them.

use crate::lexer::split_statements;

/// One complete unit of work found in the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A CQL statement to send to the server, as typed (trimmed, usually ending with `;`).
    Cql(String),
    /// A command the shell handles itself.
    Command(ShellCommand),
    /// A shell command with bad arguments; the text is the message to print.
    Invalid(String),
}

/// `PAGING` argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PagingSetting {
    On,
    Off,
    /// Enable paging with this page size.
    Size(i32),
}

/// A command handled by the shell, not the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShellCommand {
    /// `EXIT` or `QUIT`.
    Exit,
    /// `HELP [topic]` or `?`.
    Help(Option<String>),
    /// `CONSISTENCY` (show) or `CONSISTENCY level` (set); the level is checked by the shell.
    Consistency(Option<String>),
    /// `SERIAL CONSISTENCY [level]`.
    SerialConsistency(Option<String>),
    /// `PAGING` (show) or `PAGING ON|OFF|n`.
    Paging(Option<PagingSetting>),
    /// `EXPAND` (show) or `EXPAND ON|OFF`.
    Expand(Option<bool>),
    /// `SOURCE 'file'`: run the statements of a file.
    Source(String),
    /// `SHOW VERSION`.
    ShowVersion,
    /// `SHOW HOST`.
    ShowHost,
    /// `CLEAR` or `CLS`.
    Clear,
}

/// Words that start a line-terminated command.
const LINE_COMMANDS: &[&str] = &[
    "exit",
    "quit",
    "help",
    "?",
    "consistency",
    "serial",
    "paging",
    "expand",
    "source",
    "show",
    "clear",
    "cls",
    "describe",
    "desc",
];

fn first_word(text: &str) -> String {
    text.split(|c: char| c.is_whitespace() || c == ';')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// True if `text` (a fresh statement) starts with a command that ends at the end of its line.
fn is_line_command(text: &str) -> bool {
    let word = first_word(text);
    LINE_COMMANDS.contains(&word.as_str())
}

/// Byte index of the first `;` outside single- or double-quoted text.
fn find_terminator(text: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    for (i, c) in text.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c == ';' => return Some(i),
            None => {}
        }
    }
    None
}

/// Removes one level of matching single or double quotes (`'it''s'` → `it's`).
fn unquote(arg: &str) -> String {
    let arg = arg.trim();
    for q in ['\'', '"'] {
        if arg.len() >= 2 && arg.starts_with(q) && arg.ends_with(q) {
            let inner = &arg[1..arg.len() - 1];
            let doubled: String = [q, q].iter().collect();
            return inner.replace(&doubled, &q.to_string());
        }
    }
    arg.to_string()
}

fn on_off(word: &str) -> Option<bool> {
    match word.to_ascii_lowercase().as_str() {
        "on" => Some(true),
        "off" => Some(false),
        _ => None,
    }
}

/// Parses a shell command (without DESCRIBE, which goes to the server).
///
/// Returns `None` if `text` does not start with a shell command word, `Some(Err(message))` if
/// it does but the arguments are wrong.
pub fn parse_shell_command(text: &str) -> Option<Result<ShellCommand, String>> {
    let text = text.trim().trim_end_matches(';').trim();
    let word = first_word(text);
    let rest = text[text.len().min(word.len())..].trim();
    let args: Vec<&str> = rest.split_whitespace().collect();
    let result = match word.as_str() {
        "exit" | "quit" => Ok(ShellCommand::Exit),
        "help" | "?" => Ok(ShellCommand::Help(
            (!rest.is_empty()).then(|| rest.to_ascii_lowercase()),
        )),
        "consistency" => match args.as_slice() {
            [] => Ok(ShellCommand::Consistency(None)),
            [level] => Ok(ShellCommand::Consistency(Some(level.to_ascii_uppercase()))),
            _ => Err("Improper CONSISTENCY command.".to_string()),
        },
        "serial" => match args.as_slice() {
            [c] if c.eq_ignore_ascii_case("consistency") => {
                Ok(ShellCommand::SerialConsistency(None))
            }
            [c, level] if c.eq_ignore_ascii_case("consistency") => Ok(
                ShellCommand::SerialConsistency(Some(level.to_ascii_uppercase())),
            ),
            _ => Err("Improper SERIAL CONSISTENCY command.".to_string()),
        },
        "paging" => match args.as_slice() {
            [] => Ok(ShellCommand::Paging(None)),
            [arg] => match (on_off(arg), arg.parse::<i32>()) {
                (Some(true), _) => Ok(ShellCommand::Paging(Some(PagingSetting::On))),
                (Some(false), _) => Ok(ShellCommand::Paging(Some(PagingSetting::Off))),
                (None, Ok(n)) if n > 0 => Ok(ShellCommand::Paging(Some(PagingSetting::Size(n)))),
                _ => Err(format!(
                    "Improper PAGING command: {arg}. Use PAGING ON, PAGING OFF or PAGING <page size>."
                )),
            },
            _ => Err("Improper PAGING command.".to_string()),
        },
        "expand" => match args.as_slice() {
            [] => Ok(ShellCommand::Expand(None)),
            [arg] => match on_off(arg) {
                Some(on) => Ok(ShellCommand::Expand(Some(on))),
                None => Err(format!("Improper EXPAND command: {arg}. Use EXPAND ON or EXPAND OFF.")),
            },
            _ => Err("Improper EXPAND command.".to_string()),
        },
        "source" => {
            if rest.is_empty() {
                Err("SOURCE needs a file name: SOURCE 'file'".to_string())
            } else {
                Ok(ShellCommand::Source(unquote(rest)))
            }
        }
        "show" => match args.as_slice() {
            [what] if what.eq_ignore_ascii_case("version") => Ok(ShellCommand::ShowVersion),
            [what] if what.eq_ignore_ascii_case("host") => Ok(ShellCommand::ShowHost),
            _ => Err("Improper SHOW command. Use SHOW VERSION or SHOW HOST.".to_string()),
        },
        "clear" | "cls" if args.is_empty() => Ok(ShellCommand::Clear),
        _ => return None,
    };
    Some(result)
}

/// Accumulates lines until statements are complete.
#[derive(Debug, Default)]
pub struct StatementBuffer {
    pending: String,
}

impl StatementBuffer {
    pub fn new() -> Self {
        Self::default()
    }

    /// True while a statement has been started but not ended: the shell shows the
    /// continuation prompt.
    pub fn is_pending(&self) -> bool {
        !self.pending.trim().is_empty()
    }

    /// Forgets the pending, incomplete statement (Ctrl-C).
    pub fn clear(&mut self) {
        self.pending.clear();
    }

    /// Takes the pending incomplete statement, if any (end of input).
    pub fn take_pending(&mut self) -> Option<String> {
        let rest = std::mem::take(&mut self.pending);
        let rest = rest.trim();
        (!rest.is_empty()).then(|| rest.to_string())
    }

    /// Adds one line of input and returns what it completed, in order.
    pub fn push_line(&mut self, line: &str) -> Vec<Input> {
        let mut out = Vec::new();
        self.push_text(line, &mut out);
        out
    }

    fn push_text(&mut self, line: &str, out: &mut Vec<Input>) {
        if !self.is_pending() {
            let trimmed = line.trim_start();
            if trimmed.starts_with("--") || trimmed.starts_with("//") {
                return;
            }
            if is_line_command(trimmed) {
                let (command, rest) = match find_terminator(trimmed) {
                    Some(i) => (&trimmed[..i], &trimmed[i + 1..]),
                    None => (trimmed, ""),
                };
                out.push(classify(command));
                if !rest.trim().is_empty() {
                    self.push_text(rest, out);
                }
                return;
            }
        }
        self.pending.push_str(line);
        self.pending.push('\n');
        let (statements, rest) = split_statements(&self.pending);
        self.pending = rest;
        for statement in statements {
            let statement = statement.trim();
            if statement.trim_end_matches(';').trim().is_empty() {
                continue;
            }
            out.push(classify(statement));
        }
    }
}

/// A complete statement or command text → [`Input`].
fn classify(text: &str) -> Input {
    let text = text.trim();
    match parse_shell_command(text) {
        Some(Ok(command)) => Input::Command(command),
        Some(Err(message)) => Input::Invalid(message),
        None => Input::Cql(text.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cql(s: &str) -> Input {
        Input::Cql(s.to_string())
    }

    #[test]
    fn multi_line_statement_completes_on_semicolon() {
        let mut b = StatementBuffer::new();
        assert!(b.push_line("SELECT *").is_empty());
        assert!(b.is_pending());
        let got = b.push_line("FROM t;");
        assert_eq!(got.len(), 1);
        match &got[0] {
            Input::Cql(s) => {
                assert!(s.starts_with("SELECT *"));
                assert!(s.contains("FROM t"));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(!b.is_pending());
    }

    #[test]
    fn several_statements_on_one_line() {
        let mut b = StatementBuffer::new();
        let got = b.push_line("INSERT INTO t (k) VALUES (1); SELECT * FROM t; SELECT");
        assert_eq!(got.len(), 2);
        assert!(b.is_pending());
        assert_eq!(b.take_pending().as_deref(), Some("SELECT"));
    }

    #[test]
    fn shell_commands_end_at_end_of_line() {
        let mut b = StatementBuffer::new();
        assert_eq!(
            b.push_line("exit"),
            vec![Input::Command(ShellCommand::Exit)]
        );
        assert_eq!(
            b.push_line("CONSISTENCY quorum"),
            vec![Input::Command(ShellCommand::Consistency(Some(
                "QUORUM".into()
            )))]
        );
        assert_eq!(
            b.push_line("consistency;"),
            vec![Input::Command(ShellCommand::Consistency(None))]
        );
        assert_eq!(
            b.push_line("DESCRIBE KEYSPACES"),
            vec![cql("DESCRIBE KEYSPACES")]
        );
        assert!(!b.is_pending());
    }

    #[test]
    fn command_followed_by_statement_on_same_line() {
        let mut b = StatementBuffer::new();
        let got = b.push_line("PAGING OFF; SELECT * FROM t;");
        assert_eq!(
            got[0],
            Input::Command(ShellCommand::Paging(Some(PagingSetting::Off)))
        );
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn command_words_inside_a_pending_statement_are_cql() {
        let mut b = StatementBuffer::new();
        assert!(b.push_line("SELECT").is_empty());
        let got = b.push_line("source FROM t;");
        assert_eq!(got.len(), 1);
        assert!(matches!(&got[0], Input::Cql(_)));
    }

    #[test]
    fn comments_and_blank_lines_are_skipped() {
        let mut b = StatementBuffer::new();
        assert!(b.push_line("-- a comment").is_empty());
        assert!(b.push_line("   ").is_empty());
        assert!(!b.is_pending());
    }

    #[test]
    fn command_arguments() {
        use ShellCommand::*;
        let p = |s: &str| parse_shell_command(s);
        assert_eq!(
            p("PAGING 50"),
            Some(Ok(Paging(Some(PagingSetting::Size(50)))))
        );
        assert_eq!(p("paging on"), Some(Ok(Paging(Some(PagingSetting::On)))));
        assert!(matches!(p("paging 0"), Some(Err(_))));
        assert_eq!(p("EXPAND ON;"), Some(Ok(Expand(Some(true)))));
        assert!(matches!(p("expand maybe"), Some(Err(_))));
        assert_eq!(
            p("SOURCE 'my file.cql'"),
            Some(Ok(Source("my file.cql".into())))
        );
        assert_eq!(
            p("source /tmp/x.cql"),
            Some(Ok(Source("/tmp/x.cql".into())))
        );
        assert_eq!(p("SHOW VERSION"), Some(Ok(ShowVersion)));
        assert_eq!(p("show host"), Some(Ok(ShowHost)));
        assert_eq!(
            p("SERIAL CONSISTENCY local_serial"),
            Some(Ok(SerialConsistency(Some("LOCAL_SERIAL".into()))))
        );
        assert_eq!(p("help select"), Some(Ok(Help(Some("select".into())))));
        assert_eq!(p("SELECT 1"), None);
        assert_eq!(p("exit;"), Some(Ok(Exit)));
    }

    #[test]
    fn semicolon_in_quoted_source_name() {
        let mut b = StatementBuffer::new();
        assert_eq!(
            b.push_line("SOURCE 'a;b.cql'"),
            vec![Input::Command(ShellCommand::Source("a;b.cql".into()))]
        );
    }
}
