//! The CQL-lite parser: tokens → [`crate::ast::Statement`].
//!
//! A hand-written recursive-descent parser over the tokens of [`crate::lexer`], one method per
//! grammar rule (`select`, `relation`, `term`, `cql_type`...). It follows the shape of Cassandra's
//! `Parser.g` for the subset of CQL that ringdb speaks, and produces the structures of
//! [`crate::ast`] exactly as the executor expects them:
//!
//! - **Identifiers** are normalized here: unquoted names lower-cased, `"Quoted"` names kept. The
//!   words Cassandra *reserves* (`SELECT`, `FROM`, `TABLE`, `TOKEN`... see [`is_reserved`]) cannot be
//!   unquoted identifiers; every other keyword (`key`, `ttl`, `count`, `text`, `json`...) can, and
//!   the parser tells the two uses apart by what follows, as Cassandra does.
//! - **Bind markers** (`?` and `:name`) are numbered from 0 in order of appearance across the
//!   whole statement — USING and LIMIT values and every statement of a batch included. Since the
//!   parser reads strictly left to right, the order of numbering is the order of the text.
//! - **Function names** are identifiers too: `toTimestamp(now())` becomes `totimestamp(now())`,
//!   as in Cassandra.
//!
//! ## Errors
//!
//! A mistake becomes a [`ParseError`] naming the line (from 1), the column (in characters, from
//! 0), the offending token and what would have been accepted there, worded like Cassandra's
//! `SyntaxException`: `line 1:9 no viable alternative at input 'FORM' (expected FROM)`. To know
//! what "would have been accepted", every test the parser makes against the current token (is it
//! `WHERE`? is it `,`?) is remembered until the parser moves on; when it finally gives up, the
//! error lists all of them. Rules that are not about grammar (two primary keys, an unknown
//! keyspace option) use the same error with the offending token and a precise `expected`.
//!
//! ## Safety
//!
//! The input is untrusted network data. The parser never indexes past the end of its tokens (the
//! last token, `Eof` or a lexical error, is returned again for any position beyond it), never
//! unwraps anything derived from input, refuses statements longer than [`MAX_STATEMENT_LEN`]
//! before lexing them, and bounds recursion: collections, tuples, function calls, casts and types
//! nested more than [`MAX_NESTING_DEPTH`] levels deep are an error ("nesting too deep"), so a
//! hostile `[[[[...` cannot overflow the stack.

use std::fmt;

use thiserror::Error;

use crate::ast::{
    AlterTable, AlterTableAction, Assignment, Batch, BatchKind, BindMarker, ColumnDef,
    CreateKeyspace, CreateRole, CreateTable, Delete, DeleteTarget, Describe, Grant, Insert,
    ListPermissions, Literal, Operator, OptionValue, Order, Permission, QualifiedName, Relation,
    RelationLhs, Resource, RoleOptions, Select, SelectExpr, Selector, Statement, Term, Update,
    Using,
};
use crate::lexer::{self, is_iso_duration_word, Token, TokenKind};
use crate::types::CqlType;

/// The longest statement text accepted, in bytes (1 MiB). Longer input is refused before it is
/// lexed.
pub const MAX_STATEMENT_LEN: usize = 1 << 20;

/// How deeply collections, tuples, function calls, type hints and types may nest. One more level
/// is an error ("nesting too deep").
pub const MAX_NESTING_DEPTH: usize = 64;

/// A statement that could not be parsed: where, what was found, and what was expected instead.
///
/// `Display` reads like Cassandra's `SyntaxException`:
/// - `line 2:3 mismatched input 'x' expecting ')'` when exactly one token was expected,
/// - `line 1:9 no viable alternative at input 'FORM' (expected FROM)` otherwise,
/// - `line 1:70 nesting too deep: ... (at input '[')` when a limit was hit.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub struct ParseError {
    /// Line of the offending token, from 1.
    pub line: usize,
    /// Column of the offending token, in characters from 0 (Cassandra's convention).
    pub column: usize,
    /// The offending token as written (shortened if long), or `<EOF>` at the end of the input.
    pub found: String,
    /// What would have been accepted there, e.g. `FROM`, `')'`, `a column name`, or
    /// `WHERE, LIMIT or <EOF>`.
    pub expected: String,
}

/// Prefixes of `expected` for errors that are about a limit rather than about grammar.
const LIMIT_ERRORS: [&str; 2] = ["nesting too deep", "statement too long"];

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}:{} ", self.line, self.column)?;
        if LIMIT_ERRORS.iter().any(|p| self.expected.starts_with(p)) {
            if self.found.is_empty() {
                write!(f, "{}", self.expected)
            } else {
                write!(f, "{} (at input '{}')", self.expected, self.found)
            }
        } else if is_single_token(&self.expected) {
            write!(
                f,
                "mismatched input '{}' expecting {}",
                self.found, self.expected
            )
        } else {
            write!(
                f,
                "no viable alternative at input '{}' (expected {})",
                self.found, self.expected
            )
        }
    }
}

/// `')'`-like: one quoted punctuation token.
fn is_single_token(expected: &str) -> bool {
    expected.len() >= 3
        && expected.starts_with('\'')
        && expected.ends_with('\'')
        && expected
            .get(1..expected.len() - 1)
            .is_some_and(|inner| !inner.contains('\''))
}

/// Parses exactly one statement; a single trailing `;` is allowed.
///
/// ```
/// use ringdb_cql::parser::parse_statement;
/// let stmt = parse_statement("SELECT * FROM ks.t WHERE k = ?;").unwrap();
/// assert_eq!(stmt.bind_marker_count(), 1);
/// ```
pub fn parse_statement(text: &str) -> Result<Statement, ParseError> {
    check_length(text)?;
    let mut parser = Parser::new(text);
    let statement = parser.statement()?;
    parser.eat(TokenKind::Semicolon);
    parser.expect_end()?;
    Ok(statement)
}

/// Parses any number of `;`-separated statements (empty statements are skipped). The
/// [`MAX_STATEMENT_LEN`] limit applies to each statement, not to the whole text, which the caller
/// bounds (a file given to the shell's SOURCE, say); bind markers are numbered from 0 in each
/// statement.
pub fn parse_statements(text: &str) -> Result<Vec<Statement>, ParseError> {
    let mut parser = Parser::new(text);
    let mut statements = Vec::new();
    loop {
        while parser.eat(TokenKind::Semicolon) {}
        if parser.at_end() {
            return Ok(statements);
        }
        let first = parser.pos;
        parser.next_bind = 0;
        statements.push(parser.statement()?);
        let (start, end) = (parser.token_at(first).start, parser.cur().start);
        if end.saturating_sub(start) > MAX_STATEMENT_LEN {
            return Err(too_long(parser.token_at(first), end - start, text));
        }
        if !parser.eat(TokenKind::Semicolon) {
            parser.expect_end()?;
        }
    }
}

/// Parses a CQL type, e.g. `frozen<map<text, int>>` as found in `system_schema.columns.type`.
/// Type names are case-insensitive; `varchar` is `text`; a quoted `'class.Name'` is a
/// [`CqlType::Custom`]. `frozen<>` is accepted only around collections and tuples.
pub fn parse_type(text: &str) -> Result<CqlType, ParseError> {
    check_length(text)?;
    let mut parser = Parser::new(text);
    let ty = parser.cql_type()?;
    parser.expect_end()?;
    Ok(ty)
}

/// True for the words Cassandra reserves: they cannot be unquoted identifiers (`"from"` can).
/// `true` and `false` are included since they are always boolean literals.
pub fn is_reserved(word: &str) -> bool {
    const RESERVED: &str = "\
        add allow alter and apply asc authorize batch begin by columnfamily create delete desc \
        describe drop entries execute from full grant if in index infinity insert into is \
        keyspace limit materialized modify nan norecursive not null of on or order primary \
        rename revoke schema select set table to token truncate unlogged update use using view \
        where with true false";
    RESERVED
        .split_whitespace()
        .any(|r| r.eq_ignore_ascii_case(word))
}

fn check_length(text: &str) -> Result<(), ParseError> {
    if text.len() > MAX_STATEMENT_LEN {
        let first = lexer::Lexer::new(text).next_token();
        return Err(too_long(&first, text.len(), text));
    }
    Ok(())
}

fn too_long(first: &Token, len: usize, text: &str) -> ParseError {
    ParseError {
        line: first.line,
        column: first.column,
        found: shorten(first.text(text)),
        expected: format!(
            "statement too long: {len} bytes, at most {MAX_STATEMENT_LEN} are accepted"
        ),
    }
}

/// The text of an offending token, cut to a readable length.
fn shorten(text: &str) -> String {
    const MAX_CHARS: usize = 40;
    if text.chars().count() <= MAX_CHARS {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(MAX_CHARS).collect();
        s.push_str("...");
        s
    }
}

/// Names of the types a `(type) term` hint may start with.
const TYPE_NAMES: &str = "\
    ascii text varchar boolean tinyint smallint int bigint varint float double decimal uuid \
    timeuuid timestamp date time blob inet counter duration list set map tuple frozen";

type Result<T, E = ParseError> = std::result::Result<T, E>;

/// The parser's state over one input.
struct Parser<'a> {
    src: &'a str,
    /// Never empty: ends with `Eof` or an `Invalid` token.
    tokens: Vec<Token>,
    /// The last token, returned for any position past the end.
    last: Token,
    pos: usize,
    /// Index of the next bind marker.
    next_bind: usize,
    /// Current nesting depth of terms, selectors and types.
    depth: usize,
    /// What was tested against the token at `tried_at` (for "expected ..." in errors).
    tried: Vec<&'static str>,
    tried_at: usize,
}

impl<'a> Parser<'a> {
    fn new(src: &'a str) -> Self {
        let tokens = lexer::tokenize(src);
        let last = tokens.last().cloned().unwrap_or(Token {
            kind: TokenKind::Eof,
            start: src.len(),
            end: src.len(),
            line: 1,
            column: 0,
        });
        Parser {
            src,
            tokens,
            last,
            pos: 0,
            next_bind: 0,
            depth: 0,
            tried: Vec::new(),
            tried_at: 0,
        }
    }

    // ---------------------------------------------------------------------------------------
    // Token access

    fn token_at(&self, index: usize) -> &Token {
        self.tokens.get(index).unwrap_or(&self.last)
    }

    fn cur(&self) -> &Token {
        self.token_at(self.pos)
    }

    /// The token `n` places after the current one.
    fn ahead(&self, n: usize) -> &Token {
        self.token_at(self.pos.saturating_add(n))
    }

    fn text(&self, token: &Token) -> &'a str {
        token.text(self.src)
    }

    fn advance(&mut self) -> Token {
        let token = self.cur().clone();
        if !matches!(token.kind, TokenKind::Eof | TokenKind::Invalid(_)) {
            self.pos += 1;
        }
        token
    }

    fn at_end(&self) -> bool {
        matches!(self.cur().kind, TokenKind::Eof)
    }

    /// Is `token` the (case-insensitive) keyword `kw`?
    fn is_kw(&self, token: &Token, kw: &str) -> bool {
        token.kind == TokenKind::Word && self.text(token).eq_ignore_ascii_case(kw)
    }

    /// Is the current token the keyword `kw`? Does not record the test (for lookahead that is not
    /// an alternative of the grammar).
    fn peek_kw(&self, kw: &str) -> bool {
        self.is_kw(self.cur(), kw)
    }

    /// Records that `what` would have been accepted at the current token.
    fn note(&mut self, what: &'static str) {
        if self.tried_at != self.pos {
            self.tried.clear();
            self.tried_at = self.pos;
        }
        if !self.tried.contains(&what) {
            self.tried.push(what);
        }
    }

    /// Is the current token the keyword `kw` (given in upper case)? Records the test.
    fn at_kw(&mut self, kw: &'static str) -> bool {
        let yes = self.peek_kw(kw);
        if !yes {
            self.note(kw);
        }
        yes
    }

    fn eat_kw(&mut self, kw: &'static str) -> bool {
        let yes = self.at_kw(kw);
        if yes {
            self.advance();
        }
        yes
    }

    /// Consumes the keyword `kw` if it is the current token, without recording the test (for
    /// synonyms that need not be listed in errors, like `COLUMNFAMILY` for `TABLE`).
    fn eat_synonym(&mut self, kw: &str) -> bool {
        let yes = self.peek_kw(kw);
        if yes {
            self.advance();
        }
        yes
    }

    fn expect_kw(&mut self, kw: &'static str) -> Result<()> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            Err(self.unexpected(kw))
        }
    }

    /// Is the current token of `kind` (a punctuation kind)? Records the test.
    fn at(&mut self, kind: TokenKind) -> bool {
        let yes = self.cur().kind == kind;
        if !yes {
            self.note(punct_name(&kind));
        }
        yes
    }

    fn eat(&mut self, kind: TokenKind) -> bool {
        let yes = self.at(kind);
        if yes {
            self.advance();
        }
        yes
    }

    fn expect(&mut self, kind: TokenKind) -> Result<()> {
        let name = punct_name(&kind);
        if self.eat(kind) {
            Ok(())
        } else {
            Err(self.unexpected(name))
        }
    }

    fn expect_end(&mut self) -> Result<()> {
        if self.at_end() {
            Ok(())
        } else {
            Err(self.unexpected("<EOF>"))
        }
    }

    // ---------------------------------------------------------------------------------------
    // Errors

    /// The error for the current token, listing everything tested against it plus `what`.
    fn unexpected(&mut self, what: &'static str) -> ParseError {
        self.note(what);
        let expected = join_alternatives(&self.tried);
        self.error_at(&self.cur().clone(), expected)
    }

    /// An error at `token` with exactly this `expected` (lexical errors take precedence: if the
    /// token is not a token at all, that is what gets reported).
    fn error_at(&self, token: &Token, expected: impl Into<String>) -> ParseError {
        let (found, expected) = match token.kind {
            TokenKind::Eof => ("<EOF>".to_string(), expected.into()),
            TokenKind::Invalid(kind) => (shorten(self.text(token)), kind.expected().to_string()),
            _ => (shorten(self.text(token)), expected.into()),
        };
        ParseError {
            line: token.line,
            column: token.column,
            found,
            expected,
        }
    }

    /// Enters one nesting level; fails past [`MAX_NESTING_DEPTH`].
    fn enter(&mut self) -> Result<()> {
        if self.depth >= MAX_NESTING_DEPTH {
            let token = self.cur().clone();
            return Err(self.error_at(
                &token,
                format!("nesting too deep: at most {MAX_NESTING_DEPTH} levels are accepted"),
            ));
        }
        self.depth += 1;
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    /// Runs `f` one nesting level deeper.
    fn nested<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        self.enter()?;
        let result = f(self);
        self.leave();
        result
    }

    // ---------------------------------------------------------------------------------------
    // Names

    /// Is the current token usable as an identifier (a non-reserved word or a quoted name)?
    fn at_ident(&self) -> bool {
        self.is_ident(self.cur())
    }

    fn is_ident(&self, token: &Token) -> bool {
        match token.kind {
            TokenKind::Word => !is_reserved(self.text(token)),
            TokenKind::QuotedName(_) => true,
            _ => false,
        }
    }

    /// An identifier, normalized: unquoted lower-cased, quoted kept.
    fn ident(&mut self, what: &'static str) -> Result<String> {
        let token = self.cur().clone();
        match &token.kind {
            TokenKind::Word if !is_reserved(self.text(&token)) => {
                self.advance();
                Ok(self.text(&token).to_ascii_lowercase())
            }
            TokenKind::QuotedName(name) => {
                self.advance();
                Ok(name.clone())
            }
            _ => Err(self.unexpected(what)),
        }
    }

    /// `[keyspace.]name`
    fn qualified_name(&mut self, what: &'static str) -> Result<QualifiedName> {
        let first = self.ident(what)?;
        if self.eat(TokenKind::Dot) {
            let name = self.ident(what)?;
            Ok(QualifiedName {
                keyspace: Some(first),
                name,
            })
        } else {
            Ok(QualifiedName {
                keyspace: None,
                name: first,
            })
        }
    }

    /// `ident (, ident)*`
    fn ident_list(&mut self, what: &'static str) -> Result<Vec<String>> {
        let mut names = vec![self.ident(what)?];
        while self.eat(TokenKind::Comma) {
            names.push(self.ident(what)?);
        }
        Ok(names)
    }

    // ---------------------------------------------------------------------------------------
    // Statements

    fn statement(&mut self) -> Result<Statement> {
        let token = self.cur().clone();
        let word = if token.kind == TokenKind::Word {
            self.text(&token).to_ascii_lowercase()
        } else {
            String::new()
        };
        match word.as_str() {
            "select" => self.select().map(Statement::Select),
            "insert" => self.insert().map(Statement::Insert),
            "update" => self.update().map(Statement::Update),
            "delete" => self.delete().map(Statement::Delete),
            "begin" => self.batch().map(Statement::Batch),
            "use" => {
                self.advance();
                Ok(Statement::Use(self.ident("a keyspace name")?))
            }
            "truncate" => {
                self.advance();
                let _ = self.eat_kw("TABLE") || self.eat_synonym("COLUMNFAMILY");
                Ok(Statement::Truncate(self.qualified_name("a table name")?))
            }
            "create" => self.create(),
            "alter" => self.alter(),
            "drop" => self.drop(),
            "describe" | "desc" => self.describe().map(Statement::Describe),
            "grant" => {
                self.advance();
                self.grant("TO").map(Statement::Grant)
            }
            "revoke" => {
                self.advance();
                self.grant("FROM").map(Statement::Revoke)
            }
            "list" => self.list(),
            _ => Err(self.error_at(
                &token,
                "a statement (SELECT, INSERT, UPDATE, DELETE, BEGIN BATCH, CREATE, ALTER, DROP, \
                 TRUNCATE, USE, DESCRIBE, GRANT, REVOKE or LIST)",
            )),
        }
    }

    /// `CREATE KEYSPACE ...` or `CREATE TABLE ...`
    fn create(&mut self) -> Result<Statement> {
        self.advance();
        if self.eat_kw("KEYSPACE") || self.eat_synonym("SCHEMA") {
            let if_not_exists = self.if_not_exists()?;
            let name = self.ident("a keyspace name")?;
            let ks = self.keyspace_properties(name, if_not_exists)?;
            if ks.replication.is_empty() {
                let token = self.cur().clone();
                return Err(self.error_at(
                    &token,
                    "AND replication = {...} (the replication option is mandatory)",
                ));
            }
            Ok(Statement::CreateKeyspace(ks))
        } else if self.eat_kw("TABLE") || self.eat_synonym("COLUMNFAMILY") {
            self.create_table().map(Statement::CreateTable)
        } else if self.eat_kw("ROLE") || self.eat_synonym("USER") {
            let if_not_exists = self.if_not_exists()?;
            let name = self.role_name()?;
            let options = if self.eat_kw("WITH") {
                self.role_options()?
            } else {
                RoleOptions::default()
            };
            Ok(Statement::CreateRole(CreateRole {
                name,
                if_not_exists,
                options,
            }))
        } else {
            Err(self.unexpected("TABLE"))
        }
    }

    /// `ALTER KEYSPACE ...` or `ALTER TABLE ...`
    fn alter(&mut self) -> Result<Statement> {
        self.advance();
        if self.eat_kw("KEYSPACE") || self.eat_synonym("SCHEMA") {
            let name = self.ident("a keyspace name")?;
            Ok(Statement::AlterKeyspace(
                self.keyspace_properties(name, false)?,
            ))
        } else if self.eat_kw("TABLE") || self.eat_synonym("COLUMNFAMILY") {
            self.alter_table().map(Statement::AlterTable)
        } else if self.eat_kw("ROLE") || self.eat_synonym("USER") {
            let name = self.role_name()?;
            self.expect_kw("WITH")?;
            let options = self.role_options()?;
            Ok(Statement::AlterRole { name, options })
        } else {
            Err(self.unexpected("TABLE"))
        }
    }

    /// `DROP KEYSPACE [IF EXISTS] ks` or `DROP TABLE [IF EXISTS] [ks.]t`
    fn drop(&mut self) -> Result<Statement> {
        self.advance();
        if self.eat_kw("KEYSPACE") || self.eat_synonym("SCHEMA") {
            let if_exists = self.if_exists_prefix()?;
            let name = self.ident("a keyspace name")?;
            Ok(Statement::DropKeyspace { name, if_exists })
        } else if self.eat_kw("TABLE") || self.eat_synonym("COLUMNFAMILY") {
            let if_exists = self.if_exists_prefix()?;
            let table = self.qualified_name("a table name")?;
            Ok(Statement::DropTable { table, if_exists })
        } else if self.eat_kw("ROLE") || self.eat_synonym("USER") {
            let if_exists = self.if_exists_prefix()?;
            let name = self.role_name()?;
            Ok(Statement::DropRole { name, if_exists })
        } else {
            Err(self.unexpected("TABLE"))
        }
    }

    /// A role name: an identifier or a string literal (`'Alice'` keeps its case).
    fn role_name(&mut self) -> Result<String> {
        if let TokenKind::String(name) = &self.cur().kind {
            let name = name.clone();
            self.advance();
            return Ok(name);
        }
        self.ident("a role name")
    }

    /// `PASSWORD = 'p' AND LOGIN = true AND SUPERUSER = false`, each at most once.
    fn role_options(&mut self) -> Result<RoleOptions> {
        let mut options = RoleOptions::default();
        loop {
            let token = self.cur().clone();
            let name = self.ident("PASSWORD, LOGIN or SUPERUSER")?;
            self.expect(TokenKind::Eq)?;
            let duplicate = match name.as_str() {
                "password" => {
                    let value = self.cur().clone();
                    let TokenKind::String(p) = &value.kind else {
                        return Err(self.error_at(&value, "a password as a 'string'"));
                    };
                    self.advance();
                    options.password.replace(p.clone()).is_some()
                }
                "login" => {
                    let b = self.bool_literal()?;
                    options.login.replace(b).is_some()
                }
                "superuser" => {
                    let b = self.bool_literal()?;
                    options.superuser.replace(b).is_some()
                }
                _ => return Err(self.error_at(&token, "PASSWORD, LOGIN or SUPERUSER")),
            };
            if duplicate {
                return Err(self.error_at(&token, "each role option at most once"));
            }
            if !self.eat_kw("AND") {
                return Ok(options);
            }
        }
    }

    /// `true` or `false` (bare or quoted).
    fn bool_literal(&mut self) -> Result<bool> {
        let token = self.cur().clone();
        let text = match &token.kind {
            TokenKind::Word => self.text(&token).to_string(),
            TokenKind::String(s) => s.clone(),
            _ => String::new(),
        };
        let value = if text.eq_ignore_ascii_case("true") {
            true
        } else if text.eq_ignore_ascii_case("false") {
            false
        } else {
            return Err(self.error_at(&token, "true or false"));
        };
        self.advance();
        Ok(value)
    }

    /// `ALL [PERMISSIONS]` or one permission name followed by an optional `PERMISSION`.
    fn permissions(&mut self) -> Result<Vec<Permission>> {
        if self.eat_kw("ALL") {
            let _ = self.eat_synonym("PERMISSIONS");
            return Ok(Permission::ALL.to_vec());
        }
        let token = self.cur().clone();
        let found = match token.kind {
            TokenKind::Word => Permission::from_name(self.text(&token)),
            _ => None,
        };
        let Some(p) = found else {
            return Err(self.error_at(
                &token,
                "a permission (ALL, CREATE, ALTER, DROP, SELECT, MODIFY or AUTHORIZE)",
            ));
        };
        self.advance();
        let _ = self.eat_synonym("PERMISSION");
        Ok(vec![p])
    }

    /// `ALL KEYSPACES | KEYSPACE k | [TABLE] [k.]t`
    fn resource(&mut self) -> Result<Resource> {
        if self.peek_kw("ALL") {
            self.advance();
            self.expect_kw("KEYSPACES")?;
            return Ok(Resource::AllKeyspaces);
        }
        if self.eat_kw("KEYSPACE") {
            return Ok(Resource::Keyspace(self.ident("a keyspace name")?));
        }
        let _ = self.eat_kw("TABLE") || self.eat_synonym("COLUMNFAMILY");
        Ok(Resource::Table(self.qualified_name("a table name")?))
    }

    /// After GRANT / REVOKE: `<permissions> ON <resource> TO|FROM role`.
    fn grant(&mut self, preposition: &'static str) -> Result<Grant> {
        let permissions = self.permissions()?;
        self.expect_kw("ON")?;
        let resource = self.resource()?;
        self.expect_kw(preposition)?;
        let role = self.role_name()?;
        Ok(Grant {
            permissions,
            resource,
            role,
        })
    }

    /// `LIST ROLES [OF r]`, `LIST USERS`, or `LIST <permissions> [ON res] [OF r] [NORECURSIVE]`.
    fn list(&mut self) -> Result<Statement> {
        self.advance();
        if self.eat_kw("ROLES") || self.eat_synonym("USERS") {
            let of = if self.eat_kw("OF") {
                Some(self.role_name()?)
            } else {
                None
            };
            let _ = self.eat_synonym("NORECURSIVE");
            return Ok(Statement::ListRoles { of });
        }
        let permissions = self.permissions()?;
        let resource = if self.eat_kw("ON") {
            Some(self.resource()?)
        } else {
            None
        };
        let role = if self.eat_kw("OF") {
            Some(self.role_name()?)
        } else {
            None
        };
        let norecursive = self.eat_kw("NORECURSIVE");
        Ok(Statement::ListPermissions(ListPermissions {
            permissions,
            resource,
            role,
            norecursive,
        }))
    }

    /// `[IF NOT EXISTS]` before a name.
    fn if_not_exists(&mut self) -> Result<bool> {
        if self.eat_kw("IF") {
            self.expect_kw("NOT")?;
            self.expect_kw("EXISTS")?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// `[IF EXISTS]` before a name.
    fn if_exists_prefix(&mut self) -> Result<bool> {
        if self.eat_kw("IF") {
            self.expect_kw("EXISTS")?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// `WITH replication = {...} [AND durable_writes = bool]` (in any order).
    fn keyspace_properties(&mut self, name: String, if_not_exists: bool) -> Result<CreateKeyspace> {
        self.expect_kw("WITH")?;
        let mut ks = CreateKeyspace {
            name,
            if_not_exists,
            replication: Vec::new(),
            durable_writes: None,
        };
        let mut seen_replication = false;
        loop {
            let name_token = self.cur().clone();
            let property = self.ident("replication or durable_writes")?;
            self.expect(TokenKind::Eq)?;
            match property.as_str() {
                "replication" if !seen_replication => {
                    let value_token = self.cur().clone();
                    match self.option_value()? {
                        OptionValue::Map(map) => ks.replication = map,
                        OptionValue::Literal(_) => return Err(self.error_at(
                            &value_token,
                            "a map such as {'class': 'SimpleStrategy', 'replication_factor': 1}",
                        )),
                    }
                    seen_replication = true;
                }
                "durable_writes" if ks.durable_writes.is_none() => {
                    let value_token = self.cur().clone();
                    let value = match self.option_value()? {
                        OptionValue::Literal(Literal::Boolean(b)) => Some(b),
                        OptionValue::Literal(Literal::String(s)) => {
                            if s.eq_ignore_ascii_case("true") {
                                Some(true)
                            } else if s.eq_ignore_ascii_case("false") {
                                Some(false)
                            } else {
                                None
                            }
                        }
                        _ => None,
                    };
                    match value {
                        Some(b) => ks.durable_writes = Some(b),
                        None => return Err(self.error_at(&value_token, "true or false")),
                    }
                }
                "replication" | "durable_writes" => {
                    return Err(self.error_at(
                        &name_token,
                        "a keyspace option not given before (each may appear once)",
                    ))
                }
                _ => {
                    return Err(self.error_at(
                        &name_token,
                        "replication or durable_writes (the only keyspace options)",
                    ))
                }
            }
            if !self.eat_kw("AND") {
                return Ok(ks);
            }
        }
    }

    /// `CREATE TABLE` after the keyword.
    fn create_table(&mut self) -> Result<CreateTable> {
        let if_not_exists = self.if_not_exists()?;
        let table = self.qualified_name("a table name")?;
        self.expect(TokenKind::LParen)?;
        let mut columns = Vec::new();
        let mut key: Option<(Vec<String>, Vec<String>)> = None;
        loop {
            // Cassandra accepts empty items: `(a int, b int,)`.
            if self.cur().kind == TokenKind::RParen || self.cur().kind == TokenKind::Comma {
                if !self.eat(TokenKind::Comma) {
                    break;
                }
                continue;
            }
            let item = self.cur().clone();
            if self.peek_kw("PRIMARY") {
                self.advance();
                self.expect_kw("KEY")?;
                self.expect(TokenKind::LParen)?;
                let partition = if self.eat(TokenKind::LParen) {
                    let names = self.ident_list("a partition key column")?;
                    self.expect(TokenKind::RParen)?;
                    names
                } else {
                    vec![self.ident("a partition key column or '('")?]
                };
                let mut clustering = Vec::new();
                while self.eat(TokenKind::Comma) {
                    clustering.push(self.ident("a clustering column")?);
                }
                self.expect(TokenKind::RParen)?;
                if key.is_some() {
                    return Err(self.error_at(&item, "a column definition (only one PRIMARY KEY)"));
                }
                key = Some((partition, clustering));
            } else {
                let name = self.ident("a column name or PRIMARY KEY")?;
                let ty = self.cql_type()?;
                let is_static = self.eat_kw("STATIC");
                let pk_token = self.cur().clone();
                if self.eat_kw("PRIMARY") {
                    self.expect_kw("KEY")?;
                    if key.is_some() {
                        return Err(self.error_at(&pk_token, "',' or ')' (only one PRIMARY KEY)"));
                    }
                    key = Some((vec![name.clone()], Vec::new()));
                }
                columns.push(ColumnDef {
                    name,
                    ty,
                    is_static,
                });
            }
            if !self.eat(TokenKind::Comma) {
                break;
            }
        }
        let close = self.cur().clone();
        self.expect(TokenKind::RParen)?;
        let Some((partition_key, clustering_key)) = key else {
            return Err(self.error_at(&close, "a PRIMARY KEY definition (exactly one is required)"));
        };
        let mut create = CreateTable {
            table,
            if_not_exists,
            columns,
            partition_key,
            clustering_key,
            clustering_order: Vec::new(),
            options: Vec::new(),
        };
        if self.eat_kw("WITH") {
            let (order, options) = self.table_options(true)?;
            create.clustering_order = order;
            create.options = options;
        }
        Ok(create)
    }

    /// `option = value [AND ...]`, including `CLUSTERING ORDER BY (...)` when `allow_order`.
    /// `COMPACT STORAGE` is refused.
    #[allow(clippy::type_complexity)]
    fn table_options(
        &mut self,
        allow_order: bool,
    ) -> Result<(Vec<(String, Order)>, Vec<(String, OptionValue)>)> {
        let mut order = Vec::new();
        let mut options: Vec<(String, OptionValue)> = Vec::new();
        let mut seen_order = false;
        loop {
            let token = self.cur().clone();
            if self.peek_kw("CLUSTERING") {
                if !allow_order || seen_order {
                    return Err(self.error_at(
                        &token,
                        if allow_order {
                            "a table option (CLUSTERING ORDER may be given once)"
                        } else {
                            "a table option (the clustering order cannot be altered)"
                        },
                    ));
                }
                self.advance();
                self.expect_kw("ORDER")?;
                self.expect_kw("BY")?;
                self.expect(TokenKind::LParen)?;
                loop {
                    let column = self.ident("a clustering column")?;
                    let direction = if self.eat_kw("DESC") {
                        Order::Desc
                    } else {
                        let _ = self.eat_kw("ASC");
                        Order::Asc
                    };
                    order.push((column, direction));
                    if !self.eat(TokenKind::Comma) {
                        break;
                    }
                }
                self.expect(TokenKind::RParen)?;
                seen_order = true;
            } else if self.peek_kw("COMPACT") {
                return Err(
                    self.error_at(&token, "a table option (COMPACT STORAGE is not supported)")
                );
            } else {
                let name = self.ident("a table option")?;
                if options.iter().any(|(n, _)| *n == name) {
                    return Err(self.error_at(
                        &token,
                        "a table option not given before (each may appear once)",
                    ));
                }
                self.expect(TokenKind::Eq)?;
                let value = self.option_value()?;
                options.push((name, value));
            }
            if !self.eat_kw("AND") {
                return Ok((order, options));
            }
        }
    }

    /// A constant, or a `{'key': constant, ...}` map whose entries are kept as text.
    fn option_value(&mut self) -> Result<OptionValue> {
        if self.eat(TokenKind::LBrace) {
            let mut entries = Vec::new();
            if !self.eat(TokenKind::RBrace) {
                loop {
                    let key = self.constant_text()?;
                    self.expect(TokenKind::Colon)?;
                    let value = self.constant_text()?;
                    entries.push((key, value));
                    if !self.eat(TokenKind::Comma) {
                        break;
                    }
                }
                self.expect(TokenKind::RBrace)?;
            }
            Ok(OptionValue::Map(entries))
        } else {
            Ok(OptionValue::Literal(self.constant()?))
        }
    }

    /// A literal constant (no bind markers, collections or functions: DDL takes constants).
    fn constant(&mut self) -> Result<Literal> {
        const WHAT: &str = "a constant (string, number or boolean)";
        let token = self.cur().clone();
        let simple = match token.kind {
            TokenKind::String(_)
            | TokenKind::Integer
            | TokenKind::Float
            | TokenKind::Uuid
            | TokenKind::Hex
            | TokenKind::Duration
            | TokenKind::Minus => true,
            TokenKind::Word => {
                self.is_literal_word(&token) && self.ahead(1).kind != TokenKind::LParen
            }
            _ => false,
        };
        if !simple {
            return Err(self.unexpected(WHAT));
        }
        match self.term()? {
            Term::Literal(literal) if literal != Literal::Null => Ok(literal),
            _ => Err(self.error_at(&token, WHAT)),
        }
    }

    /// A constant as text: strings decoded, numbers as written, booleans `true`/`false`.
    fn constant_text(&mut self) -> Result<String> {
        Ok(match self.constant()? {
            Literal::String(s)
            | Literal::Integer(s)
            | Literal::Float(s)
            | Literal::Uuid(s)
            | Literal::Duration(s) => s,
            Literal::Boolean(b) => b.to_string(),
            Literal::Blob(bytes) => {
                let mut s = String::from("0x");
                for b in bytes {
                    s.push_str(&format!("{b:02x}"));
                }
                s
            }
            Literal::Null => "null".to_string(),
        })
    }

    /// `ALTER TABLE` after the keyword.
    fn alter_table(&mut self) -> Result<AlterTable> {
        let table = self.qualified_name("a table name")?;
        let action = if self.eat_kw("ADD") {
            let mut columns = Vec::new();
            let parenthesized = self.eat(TokenKind::LParen);
            loop {
                let name = self.ident("a column name")?;
                let ty = self.cql_type()?;
                let is_static = self.eat_kw("STATIC");
                columns.push(ColumnDef {
                    name,
                    ty,
                    is_static,
                });
                if !parenthesized || !self.eat(TokenKind::Comma) {
                    break;
                }
            }
            if parenthesized {
                self.expect(TokenKind::RParen)?;
            }
            AlterTableAction::Add(columns)
        } else if self.eat_kw("DROP") {
            if self.eat(TokenKind::LParen) {
                let names = self.ident_list("a column name")?;
                self.expect(TokenKind::RParen)?;
                AlterTableAction::Drop(names)
            } else {
                AlterTableAction::Drop(vec![self.ident("a column name or '('")?])
            }
        } else if self.eat_kw("WITH") {
            let (_, options) = self.table_options(false)?;
            AlterTableAction::With(options)
        } else {
            return Err(self.unexpected("WITH"));
        };
        Ok(AlterTable { table, action })
    }

    /// `INSERT INTO t (cols) VALUES (terms) [IF NOT EXISTS] [USING ...]`
    fn insert(&mut self) -> Result<Insert> {
        self.advance();
        self.expect_kw("INTO")?;
        let table = self.qualified_name("a table name")?;
        if self.peek_kw("JSON") {
            let token = self.cur().clone();
            return Err(self.error_at(&token, "'(' (INSERT ... JSON is not supported)"));
        }
        self.expect(TokenKind::LParen)?;
        let columns = self.ident_list("a column name")?;
        self.expect(TokenKind::RParen)?;
        self.expect_kw("VALUES")?;
        let open = self.cur().clone();
        self.expect(TokenKind::LParen)?;
        let mut values = vec![self.term()?];
        while self.eat(TokenKind::Comma) {
            values.push(self.term()?);
        }
        self.expect(TokenKind::RParen)?;
        if values.len() != columns.len() {
            return Err(self.error_at(
                &open,
                format!(
                    "as many values as columns ({} columns, {} values)",
                    columns.len(),
                    values.len()
                ),
            ));
        }
        let if_not_exists = self.if_not_exists()?;
        let using = if self.at_kw("USING") {
            self.using(true)?
        } else {
            Using::default()
        };
        Ok(Insert {
            table,
            columns,
            values,
            if_not_exists,
            using,
        })
    }

    /// `USING TTL n [AND TIMESTAMP t]` in either order (the current token is USING).
    fn using(&mut self, allow_ttl: bool) -> Result<Using> {
        self.advance();
        let mut using = Using::default();
        loop {
            let token = self.cur().clone();
            if self.eat_kw("TTL") {
                if !allow_ttl {
                    return Err(self.error_at(
                        &token,
                        "TIMESTAMP (a TTL is not allowed in DELETE or on a whole BATCH)",
                    ));
                }
                if using.ttl.is_some() {
                    return Err(self.error_at(&token, "TIMESTAMP (TTL was already given)"));
                }
                using.ttl = Some(self.int_value()?);
            } else if self.eat_kw("TIMESTAMP") {
                if using.timestamp.is_some() {
                    return Err(self.error_at(&token, "TTL (TIMESTAMP was already given)"));
                }
                using.timestamp = Some(self.int_value()?);
            } else {
                return Err(self.unexpected("TIMESTAMP"));
            }
            if !self.eat_kw("AND") {
                return Ok(using);
            }
        }
    }

    /// An integer (optionally negative) or a bind marker: USING values and LIMITs.
    fn int_value(&mut self) -> Result<Term> {
        let token = self.cur().clone();
        match token.kind {
            TokenKind::Integer => {
                self.advance();
                Ok(Term::Literal(Literal::Integer(
                    self.text(&token).to_string(),
                )))
            }
            TokenKind::Minus if self.ahead(1).kind == TokenKind::Integer => {
                self.advance();
                let digits = self.advance();
                Ok(Term::Literal(Literal::Integer(format!(
                    "-{}",
                    self.text(&digits)
                ))))
            }
            TokenKind::QMark | TokenKind::Colon => self.bind_marker(),
            _ => Err(self.unexpected("an integer or a bind marker")),
        }
    }

    /// `UPDATE t [USING ...] SET ... WHERE ... [IF ...]`
    fn update(&mut self) -> Result<Update> {
        self.advance();
        let table = self.qualified_name("a table name")?;
        let using = if self.at_kw("USING") {
            self.using(true)?
        } else {
            Using::default()
        };
        self.expect_kw("SET")?;
        let mut assignments = vec![self.assignment()?];
        while self.eat(TokenKind::Comma) {
            assignments.push(self.assignment()?);
        }
        self.expect_kw("WHERE")?;
        let where_clause = self.relations(false)?;
        let (if_exists, conditions) = self.conditions()?;
        Ok(Update {
            table,
            using,
            assignments,
            where_clause,
            if_exists,
            conditions,
        })
    }

    /// One SET item: `c = v`, `c[k] = v`, `c = c + v`, `c = v + c`, `c = c - v`, `c += v`,
    /// `c -= v`.
    fn assignment(&mut self) -> Result<Assignment> {
        let column = self.ident("a column name")?;
        if self.eat(TokenKind::LBracket) {
            let key = self.term()?;
            self.expect(TokenKind::RBracket)?;
            self.expect(TokenKind::Eq)?;
            let value = self.term()?;
            return Ok(Assignment::SetElement { column, key, value });
        }
        // Shorthands `c += v` and `c -= v` (lexed as two tokens).
        let shorthand = self.cur().kind.clone();
        if matches!(shorthand, TokenKind::Plus | TokenKind::Minus)
            && self.ahead(1).kind == TokenKind::Eq
        {
            self.advance();
            self.advance();
            let value = self.term()?;
            return Ok(if shorthand == TokenKind::Plus {
                Assignment::Append { column, value }
            } else {
                Assignment::Remove { column, value }
            });
        }
        self.expect(TokenKind::Eq)?;
        // `c = c + v` / `c = c - v`: a column name followed by a sign.
        let first = self.cur().clone();
        let sign = self.ahead(1).kind.clone();
        if self.is_column_reference(&first) && matches!(sign, TokenKind::Plus | TokenKind::Minus) {
            let other = self.ident("a column name")?;
            if other != column {
                let op = if sign == TokenKind::Plus { '+' } else { '-' };
                return Err(self.error_at(
                    &first,
                    format!(
                        "{column} (only expressions of the form {column} = {column} {op} <value> \
                         are supported)"
                    ),
                ));
            }
            self.advance();
            let value = self.term()?;
            return Ok(if sign == TokenKind::Plus {
                Assignment::Append { column, value }
            } else {
                Assignment::Remove { column, value }
            });
        }
        let value = self.term()?;
        if self.eat(TokenKind::Plus) {
            let other_token = self.cur().clone();
            let other = self.ident("a column name")?;
            if other != column {
                return Err(self.error_at(
                    &other_token,
                    format!(
                        "{column} (only expressions of the form {column} = <value> + {column} \
                         are supported)"
                    ),
                ));
            }
            return Ok(Assignment::Prepend { column, value });
        }
        Ok(Assignment::Set { column, value })
    }

    /// Could `token`, where a term may also start, only be a column name? (A word that is not a
    /// literal keyword and not a function call; a quoted name not followed by `(`.)
    fn is_column_reference(&self, token: &Token) -> bool {
        if !self.is_ident(token) || self.ahead(1).kind == TokenKind::LParen {
            return false;
        }
        match token.kind {
            TokenKind::Word => {
                let text = self.text(token);
                !is_iso_duration_word(text)
            }
            _ => true,
        }
    }

    /// `DELETE [targets] FROM t [USING TIMESTAMP t] WHERE ... [IF ...]`
    fn delete(&mut self) -> Result<Delete> {
        self.advance();
        let mut columns = Vec::new();
        if !self.at_kw("FROM") {
            loop {
                let column = self.ident("a column name or FROM")?;
                let element = if self.eat(TokenKind::LBracket) {
                    let key = self.term()?;
                    self.expect(TokenKind::RBracket)?;
                    Some(key)
                } else {
                    None
                };
                columns.push(DeleteTarget { column, element });
                if !self.eat(TokenKind::Comma) {
                    break;
                }
            }
        }
        self.expect_kw("FROM")?;
        let table = self.qualified_name("a table name")?;
        let using = if self.at_kw("USING") {
            self.using(false)?
        } else {
            Using::default()
        };
        self.expect_kw("WHERE")?;
        let where_clause = self.relations(false)?;
        let (if_exists, conditions) = self.conditions()?;
        Ok(Delete {
            table,
            columns,
            using,
            where_clause,
            if_exists,
            conditions,
        })
    }

    /// `[IF EXISTS | IF cond AND ...]` at the end of UPDATE and DELETE.
    fn conditions(&mut self) -> Result<(bool, Vec<Relation>)> {
        if !self.eat_kw("IF") {
            return Ok((false, Vec::new()));
        }
        // `IF EXISTS`, unless `exists` is a column being compared (`IF exists = true`).
        if self.at_kw("EXISTS") && !self.starts_relation_rest(self.ahead(1)) {
            self.advance();
            return Ok((true, Vec::new()));
        }
        Ok((false, self.relations(true)?))
    }

    /// Can `token` follow a column name in a relation?
    fn starts_relation_rest(&self, token: &Token) -> bool {
        matches!(
            token.kind,
            TokenKind::Eq
                | TokenKind::Neq
                | TokenKind::Lt
                | TokenKind::Le
                | TokenKind::Gt
                | TokenKind::Ge
                | TokenKind::LBracket
        ) || self.is_kw(token, "IN")
            || self.is_kw(token, "CONTAINS")
    }

    /// `BEGIN [UNLOGGED | COUNTER] BATCH [USING TIMESTAMP t] stmt [;] ... APPLY BATCH`
    fn batch(&mut self) -> Result<Batch> {
        self.advance();
        let kind = if self.eat_kw("UNLOGGED") {
            BatchKind::Unlogged
        } else if self.eat_kw("COUNTER") {
            BatchKind::Counter
        } else {
            BatchKind::Logged
        };
        self.expect_kw("BATCH")?;
        let using = if self.at_kw("USING") {
            self.using(false)?
        } else {
            Using::default()
        };
        let mut statements = Vec::new();
        loop {
            if self.at_kw("INSERT") {
                statements.push(Statement::Insert(self.insert()?));
            } else if self.at_kw("UPDATE") {
                statements.push(Statement::Update(self.update()?));
            } else if self.at_kw("DELETE") {
                statements.push(Statement::Delete(self.delete()?));
            } else if self.eat_kw("APPLY") {
                self.expect_kw("BATCH")?;
                return Ok(Batch {
                    kind,
                    using,
                    statements,
                });
            } else {
                return Err(self.unexpected("APPLY"));
            }
            let _ = self.eat(TokenKind::Semicolon);
        }
    }

    /// `SELECT [DISTINCT] [JSON] selectors FROM t [WHERE ...] [ORDER BY ...]
    /// [PER PARTITION LIMIT n] [LIMIT n] [ALLOW FILTERING]`
    fn select(&mut self) -> Result<Select> {
        self.advance();
        let mut distinct = false;
        let mut json = false;
        // `distinct` and `json` are also valid column names: they are flags only when a select
        // clause follows them.
        for _ in 0..2 {
            if !distinct && self.peek_kw("DISTINCT") && self.flag_applies() {
                self.advance();
                distinct = true;
            } else if !json && self.peek_kw("JSON") && self.flag_applies() {
                self.advance();
                json = true;
            }
        }
        let selectors = if self.eat(TokenKind::Star) {
            Vec::new()
        } else {
            let mut selectors = vec![self.selector()?];
            while self.eat(TokenKind::Comma) {
                selectors.push(self.selector()?);
            }
            selectors
        };
        self.expect_kw("FROM")?;
        let table = self.qualified_name("a table name")?;
        let where_clause = if self.eat_kw("WHERE") {
            self.relations(false)?
        } else {
            Vec::new()
        };
        if self.peek_kw("GROUP") {
            let token = self.cur().clone();
            return Err(self.error_at(
                &token,
                "ORDER BY, LIMIT or ALLOW FILTERING (GROUP BY is not supported)",
            ));
        }
        let mut order_by = Vec::new();
        if self.eat_kw("ORDER") {
            self.expect_kw("BY")?;
            loop {
                let column = self.ident("a column name")?;
                let direction = if self.eat_kw("DESC") {
                    Order::Desc
                } else {
                    let _ = self.eat_kw("ASC");
                    Order::Asc
                };
                order_by.push((column, direction));
                if !self.eat(TokenKind::Comma) {
                    break;
                }
            }
        }
        let per_partition_limit = if self.eat_kw("PER") {
            self.expect_kw("PARTITION")?;
            self.expect_kw("LIMIT")?;
            Some(self.int_value()?)
        } else {
            None
        };
        let limit = if self.eat_kw("LIMIT") {
            Some(self.int_value()?)
        } else {
            None
        };
        let allow_filtering = if self.eat_kw("ALLOW") {
            self.expect_kw("FILTERING")?;
            true
        } else {
            false
        };
        Ok(Select {
            table,
            distinct,
            json,
            selectors,
            where_clause,
            order_by,
            per_partition_limit,
            limit,
            allow_filtering,
        })
    }

    /// Does the word at the current position act as a DISTINCT/JSON flag, i.e. does a select
    /// clause (and not `FROM`, `,`, `AS` or a call) follow it?
    fn flag_applies(&self) -> bool {
        let next = self.ahead(1);
        match next.kind {
            TokenKind::Star | TokenKind::QuotedName(_) => true,
            TokenKind::Word => !self.is_kw(next, "FROM") && !self.is_kw(next, "AS"),
            _ => false,
        }
    }

    /// A select item with its optional `AS alias`.
    fn selector(&mut self) -> Result<Selector> {
        let expr = self.select_expr()?;
        let alias = if self.eat_kw("AS") {
            Some(self.ident("an alias")?)
        } else {
            None
        };
        Ok(Selector { expr, alias })
    }

    /// A column, a function call (`count(*)`, `writetime(c)`, `f(args)`) or a term.
    fn select_expr(&mut self) -> Result<SelectExpr> {
        let token = self.cur().clone();
        let function_name = match &token.kind {
            TokenKind::Word if self.ahead(1).kind == TokenKind::LParen => {
                Some(self.text(&token).to_ascii_lowercase())
            }
            TokenKind::QuotedName(name) if self.ahead(1).kind == TokenKind::LParen => {
                Some(name.clone())
            }
            _ => None,
        };
        if let Some(name) = function_name {
            self.advance();
            self.advance();
            return self.nested(|p| p.select_function(name));
        }
        match &token.kind {
            TokenKind::Word if !self.is_literal_word(&token) => Ok(SelectExpr::Column(
                self.ident("a column name, a function call or '*'")?,
            )),
            TokenKind::QuotedName(_) => Ok(SelectExpr::Column(self.ident("a column name")?)),
            _ if self.starts_term(&token) => Ok(SelectExpr::Term(self.term()?)),
            _ => Err(self.unexpected("a column name, a function call or '*'")),
        }
    }

    /// The arguments of a function call in a select list and its `)` (the name and `(` are
    /// consumed).
    fn select_function(&mut self, name: String) -> Result<SelectExpr> {
        match name.as_str() {
            "count" => {
                let count_all = self.cur().kind == TokenKind::Star
                    || (self.cur().kind == TokenKind::Integer
                        && self.text(self.cur()) == "1"
                        && self.ahead(1).kind == TokenKind::RParen);
                if count_all {
                    self.advance();
                    self.expect(TokenKind::RParen)?;
                    return Ok(SelectExpr::CountAll);
                }
            }
            "writetime" | "ttl" => {
                let column = self.ident("a column name")?;
                self.expect(TokenKind::RParen)?;
                return Ok(if name == "ttl" {
                    SelectExpr::Ttl(column)
                } else {
                    SelectExpr::WriteTime(column)
                });
            }
            _ => {}
        }
        let mut args = Vec::new();
        if !self.eat(TokenKind::RParen) {
            args.push(self.select_expr()?);
            while self.eat(TokenKind::Comma) {
                args.push(self.select_expr()?);
            }
            self.expect(TokenKind::RParen)?;
        }
        Ok(SelectExpr::Function { name, args })
    }

    /// `null`, `true`, `false`, `NaN`, `Infinity` or an ISO duration: words that are terms.
    fn is_literal_word(&self, token: &Token) -> bool {
        let text = self.text(token);
        ["null", "true", "false", "nan", "infinity"]
            .iter()
            .any(|w| w.eq_ignore_ascii_case(text))
            || is_iso_duration_word(text)
    }

    /// Can a term start at `token`?
    fn starts_term(&self, token: &Token) -> bool {
        match token.kind {
            TokenKind::String(_)
            | TokenKind::Integer
            | TokenKind::Float
            | TokenKind::Uuid
            | TokenKind::Hex
            | TokenKind::Duration
            | TokenKind::Minus
            | TokenKind::QMark
            | TokenKind::Colon
            | TokenKind::LBracket
            | TokenKind::LBrace
            | TokenKind::LParen => true,
            TokenKind::Word => self.is_literal_word(token),
            _ => false,
        }
    }

    // ---------------------------------------------------------------------------------------
    // Relations

    /// `relation (AND relation)*`. Conditions (`IF ...`) take only column and element left sides.
    fn relations(&mut self, conditions: bool) -> Result<Vec<Relation>> {
        let mut relations = vec![self.relation(conditions)?];
        while self.eat_kw("AND") {
            relations.push(self.relation(conditions)?);
        }
        Ok(relations)
    }

    fn relation(&mut self, condition: bool) -> Result<Relation> {
        let lhs = if !condition && self.peek_kw("TOKEN") && self.ahead(1).kind == TokenKind::LParen
        {
            self.advance();
            self.advance();
            let columns = self.ident_list("a partition key column")?;
            self.expect(TokenKind::RParen)?;
            RelationLhs::Token(columns)
        } else if !condition && self.cur().kind == TokenKind::LParen {
            self.advance();
            let columns = self.ident_list("a clustering column")?;
            self.expect(TokenKind::RParen)?;
            RelationLhs::Tuple(columns)
        } else {
            let column = self.ident(if condition {
                "a column name"
            } else {
                "a column name, token(...) or '('"
            })?;
            if self.eat(TokenKind::LBracket) {
                let key = self.term()?;
                self.expect(TokenKind::RBracket)?;
                RelationLhs::Element { column, key }
            } else {
                RelationLhs::Column(column)
            }
        };
        let op = self.operator()?;
        let rhs = if op == Operator::In {
            self.in_values()?
        } else {
            self.term()?
        };
        Ok(Relation { lhs, op, rhs })
    }

    fn operator(&mut self) -> Result<Operator> {
        let op = match self.cur().kind {
            TokenKind::Eq => Operator::Eq,
            TokenKind::Neq => Operator::Neq,
            TokenKind::Lt => Operator::Lt,
            TokenKind::Le => Operator::Le,
            TokenKind::Gt => Operator::Gt,
            TokenKind::Ge => Operator::Ge,
            _ => {
                if self.eat_kw("IN") {
                    return Ok(Operator::In);
                }
                if self.eat_kw("CONTAINS") {
                    return Ok(if self.eat_kw("KEY") {
                        Operator::ContainsKey
                    } else {
                        Operator::Contains
                    });
                }
                return Err(self.unexpected("an operator (=, <, <=, >, >=, !=, IN, CONTAINS)"));
            }
        };
        self.advance();
        Ok(op)
    }

    /// The right side of IN: a bind marker for the whole list, or `(term, ...)` as a list.
    fn in_values(&mut self) -> Result<Term> {
        match self.cur().kind {
            TokenKind::QMark | TokenKind::Colon => self.bind_marker(),
            _ => {
                self.expect(TokenKind::LParen)?;
                let mut values = Vec::new();
                if !self.eat(TokenKind::RParen) {
                    values.push(self.term()?);
                    while self.eat(TokenKind::Comma) {
                        values.push(self.term()?);
                    }
                    self.expect(TokenKind::RParen)?;
                }
                Ok(Term::List(values))
            }
        }
    }

    // ---------------------------------------------------------------------------------------
    // Terms

    /// A value: literal, bind marker, collection, tuple, function call or type hint.
    fn term(&mut self) -> Result<Term> {
        let token = self.cur().clone();
        let text = self.text(&token);
        match &token.kind {
            TokenKind::String(s) => {
                self.advance();
                Ok(Term::Literal(Literal::String(s.clone())))
            }
            TokenKind::Integer => {
                self.advance();
                Ok(Term::Literal(Literal::Integer(text.to_string())))
            }
            TokenKind::Float => {
                self.advance();
                Ok(Term::Literal(Literal::Float(text.to_string())))
            }
            TokenKind::Duration => {
                self.advance();
                Ok(Term::Literal(Literal::Duration(text.to_string())))
            }
            TokenKind::Uuid => {
                self.advance();
                Ok(Term::Literal(Literal::Uuid(text.to_ascii_lowercase())))
            }
            TokenKind::Hex => {
                let bytes = decode_hex(text.get(2..).unwrap_or("")).ok_or_else(|| {
                    self.error_at(&token, "a blob with an even number of hex digits")
                })?;
                self.advance();
                Ok(Term::Literal(Literal::Blob(bytes)))
            }
            TokenKind::Minus => self.negative(),
            TokenKind::QMark | TokenKind::Colon => self.bind_marker(),
            TokenKind::LBracket => self.nested(|p| {
                p.advance();
                let mut items = Vec::new();
                if !p.eat(TokenKind::RBracket) {
                    items.push(p.term()?);
                    while p.eat(TokenKind::Comma) {
                        items.push(p.term()?);
                    }
                    p.expect(TokenKind::RBracket)?;
                }
                Ok(Term::List(items))
            }),
            TokenKind::LBrace => self.nested(|p| p.set_or_map()),
            TokenKind::LParen => self.nested(|p| p.tuple_or_cast()),
            TokenKind::Word => {
                if self.ahead(1).kind == TokenKind::LParen
                    || (self.ahead(1).kind == TokenKind::Dot
                        && self.ahead(3).kind == TokenKind::LParen)
                {
                    return self.nested(|p| p.function_call());
                }
                let literal = match text.to_ascii_lowercase().as_str() {
                    "null" => Literal::Null,
                    "true" => Literal::Boolean(true),
                    "false" => Literal::Boolean(false),
                    "nan" => Literal::Float("NaN".to_string()),
                    "infinity" => Literal::Float("Infinity".to_string()),
                    _ if is_iso_duration_word(text) => Literal::Duration(text.to_string()),
                    _ => return Err(self.unexpected("a term")),
                };
                self.advance();
                Ok(Term::Literal(literal))
            }
            TokenKind::QuotedName(_) if self.ahead(1).kind == TokenKind::LParen => {
                self.nested(|p| p.function_call())
            }
            _ => Err(self.unexpected("a term")),
        }
    }

    /// `-` followed by a number, a duration, `NaN` or `Infinity`.
    fn negative(&mut self) -> Result<Term> {
        self.advance();
        let token = self.cur().clone();
        let text = self.text(&token);
        let literal = match token.kind {
            TokenKind::Integer => Literal::Integer(format!("-{text}")),
            TokenKind::Float => Literal::Float(format!("-{text}")),
            TokenKind::Duration => Literal::Duration(format!("-{text}")),
            TokenKind::Word if text.eq_ignore_ascii_case("nan") => Literal::Float("NaN".into()),
            TokenKind::Word if text.eq_ignore_ascii_case("infinity") => {
                Literal::Float("-Infinity".into())
            }
            TokenKind::Word if is_iso_duration_word(text) => Literal::Duration(format!("-{text}")),
            _ => return Err(self.unexpected("a number after '-'")),
        };
        self.advance();
        Ok(Term::Literal(literal))
    }

    /// `?` or `:name`, numbered in order of appearance.
    fn bind_marker(&mut self) -> Result<Term> {
        let name = if self.eat(TokenKind::Colon) {
            Some(self.ident("a bind variable name")?)
        } else {
            self.expect(TokenKind::QMark)?;
            None
        };
        let index = self.next_bind;
        self.next_bind += 1;
        Ok(Term::Bind(BindMarker { index, name }))
    }

    /// `{}` (an empty map), `{k: v, ...}` or `{a, b}`; the current token is `{`.
    fn set_or_map(&mut self) -> Result<Term> {
        self.advance();
        if self.eat(TokenKind::RBrace) {
            return Ok(Term::Map(Vec::new()));
        }
        let first = self.term()?;
        let term = if self.eat(TokenKind::Colon) {
            let mut entries = vec![(first, self.term()?)];
            while self.eat(TokenKind::Comma) {
                let key = self.term()?;
                self.expect(TokenKind::Colon)?;
                entries.push((key, self.term()?));
            }
            Term::Map(entries)
        } else {
            let mut items = vec![first];
            while self.eat(TokenKind::Comma) {
                items.push(self.term()?);
            }
            Term::Set(items)
        };
        self.expect(TokenKind::RBrace)?;
        Ok(term)
    }

    /// `(type) term` or `(a, b, ...)`; the current token is `(`.
    fn tuple_or_cast(&mut self) -> Result<Term> {
        let type_word = self.ahead(1);
        let is_cast = type_word.kind == TokenKind::Word
            && TYPE_NAMES
                .split_whitespace()
                .any(|t| t.eq_ignore_ascii_case(self.text(type_word)))
            && matches!(self.ahead(2).kind, TokenKind::RParen | TokenKind::Lt);
        self.advance();
        if is_cast {
            let ty = self.cql_type()?;
            self.expect(TokenKind::RParen)?;
            let term = self.term()?;
            return Ok(Term::Cast {
                ty,
                term: Box::new(term),
            });
        }
        let mut items = vec![self.term()?];
        while self.eat(TokenKind::Comma) {
            items.push(self.term()?);
        }
        self.expect(TokenKind::RParen)?;
        Ok(Term::Tuple(items))
    }

    /// `name(args)` or `ks.name(args)` in a term.
    fn function_call(&mut self) -> Result<Term> {
        let mut name = self.function_name()?;
        if self.eat(TokenKind::Dot) {
            name = format!("{name}.{}", self.function_name()?);
        }
        self.expect(TokenKind::LParen)?;
        let mut args = Vec::new();
        if !self.eat(TokenKind::RParen) {
            args.push(self.term()?);
            while self.eat(TokenKind::Comma) {
                args.push(self.term()?);
            }
            self.expect(TokenKind::RParen)?;
        }
        Ok(Term::FunctionCall { name, args })
    }

    /// A function name: any word (reserved ones like `token` included) lower-cased, or a quoted
    /// name.
    fn function_name(&mut self) -> Result<String> {
        let token = self.cur().clone();
        match &token.kind {
            TokenKind::Word => {
                self.advance();
                Ok(self.text(&token).to_ascii_lowercase())
            }
            TokenKind::QuotedName(name) => {
                self.advance();
                Ok(name.clone())
            }
            _ => Err(self.unexpected("a function name")),
        }
    }

    // ---------------------------------------------------------------------------------------
    // Types

    /// A CQL type: a native name, `list<T>`, `set<T>`, `map<K, V>`, `tuple<T, ...>`,
    /// `frozen<T>` or a quoted custom class name.
    fn cql_type(&mut self) -> Result<CqlType> {
        let token = self.cur().clone();
        if let TokenKind::String(class) = &token.kind {
            self.advance();
            return Ok(CqlType::Custom(class.clone()));
        }
        if token.kind != TokenKind::Word {
            return Err(self.unexpected("a type"));
        }
        let name = self.text(&token).to_ascii_lowercase();
        let native = match name.as_str() {
            "ascii" => Some(CqlType::Ascii),
            "text" | "varchar" => Some(CqlType::Text),
            "boolean" => Some(CqlType::Boolean),
            "tinyint" => Some(CqlType::TinyInt),
            "smallint" => Some(CqlType::SmallInt),
            "int" => Some(CqlType::Int),
            "bigint" => Some(CqlType::BigInt),
            "varint" => Some(CqlType::Varint),
            "float" => Some(CqlType::Float),
            "double" => Some(CqlType::Double),
            "decimal" => Some(CqlType::Decimal),
            "uuid" => Some(CqlType::Uuid),
            "timeuuid" => Some(CqlType::Timeuuid),
            "timestamp" => Some(CqlType::Timestamp),
            "date" => Some(CqlType::Date),
            "time" => Some(CqlType::Time),
            "blob" => Some(CqlType::Blob),
            "inet" => Some(CqlType::Inet),
            "counter" => Some(CqlType::Counter),
            "duration" => Some(CqlType::Duration),
            _ => None,
        };
        if let Some(ty) = native {
            self.advance();
            return Ok(ty);
        }
        match name.as_str() {
            "list" | "set" | "map" | "tuple" | "frozen" => {}
            _ => {
                return Err(self.unexpected(
                    "a type (a native type, list, set, map, tuple or frozen; user-defined types \
                     are not supported)",
                ))
            }
        }
        self.advance();
        self.nested(|p| {
            p.expect(TokenKind::Lt)?;
            let ty = match name.as_str() {
                "list" => CqlType::List(Box::new(p.cql_type()?)),
                "set" => CqlType::Set(Box::new(p.cql_type()?)),
                "map" => {
                    let key = p.cql_type()?;
                    p.expect(TokenKind::Comma)?;
                    CqlType::Map(Box::new(key), Box::new(p.cql_type()?))
                }
                "tuple" => {
                    let mut items = vec![p.cql_type()?];
                    while p.eat(TokenKind::Comma) {
                        items.push(p.cql_type()?);
                    }
                    CqlType::Tuple(items)
                }
                _ => {
                    let inner_token = p.cur().clone();
                    let inner = p.cql_type()?;
                    let freezable = matches!(
                        inner,
                        CqlType::List(_)
                            | CqlType::Set(_)
                            | CqlType::Map(_, _)
                            | CqlType::Tuple(_)
                            | CqlType::Frozen(_)
                    );
                    if !freezable {
                        return Err(p.error_at(
                            &inner_token,
                            "a collection or tuple type (frozen<> applies only to those)",
                        ));
                    }
                    CqlType::Frozen(Box::new(inner))
                }
            };
            p.expect(TokenKind::Gt)?;
            Ok(ty)
        })
    }

    // ---------------------------------------------------------------------------------------
    // DESCRIBE

    fn describe(&mut self) -> Result<Describe> {
        self.advance();
        if self.eat_kw("FULL") {
            self.expect_kw("SCHEMA")?;
            return Ok(Describe::Schema { full: true });
        }
        if self.eat_kw("SCHEMA") {
            return Ok(Describe::Schema { full: false });
        }
        if self.eat_kw("KEYSPACES") {
            return Ok(Describe::Keyspaces);
        }
        if self.eat_kw("KEYSPACE") {
            let name = if self.at_ident() {
                Some(self.ident("a keyspace name")?)
            } else {
                None
            };
            return Ok(Describe::Keyspace(name));
        }
        if self.eat_kw("TABLES") || self.eat_synonym("COLUMNFAMILIES") {
            return Ok(Describe::Tables);
        }
        if self.eat_kw("TABLE") || self.eat_synonym("COLUMNFAMILY") {
            return Ok(Describe::Table(self.qualified_name("a table name")?));
        }
        if self.eat_kw("CLUSTER") {
            return Ok(Describe::Cluster);
        }
        Ok(Describe::Name(
            self.qualified_name("a keyspace or table name")?,
        ))
    }
}

/// How a punctuation kind is named in errors.
fn punct_name(kind: &TokenKind) -> &'static str {
    match kind {
        TokenKind::QMark => "'?'",
        TokenKind::Colon => "':'",
        TokenKind::LParen => "'('",
        TokenKind::RParen => "')'",
        TokenKind::LBracket => "'['",
        TokenKind::RBracket => "']'",
        TokenKind::LBrace => "'{'",
        TokenKind::RBrace => "'}'",
        TokenKind::Comma => "','",
        TokenKind::Semicolon => "';'",
        TokenKind::Dot => "'.'",
        TokenKind::Eq => "'='",
        TokenKind::Neq => "'!='",
        TokenKind::Lt => "'<'",
        TokenKind::Le => "'<='",
        TokenKind::Gt => "'>'",
        TokenKind::Ge => "'>='",
        TokenKind::Plus => "'+'",
        TokenKind::Minus => "'-'",
        TokenKind::Star => "'*'",
        TokenKind::Eof => "<EOF>",
        _ => "a token",
    }
}

/// `a`, `a or b`, `a, b or c`.
fn join_alternatives(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// Hex digits (without `0x`) to bytes; `None` for an odd count.
fn decode_hex(digits: &str) -> Option<Vec<u8>> {
    let pairs = digits.as_bytes().chunks_exact(2);
    if !pairs.remainder().is_empty() {
        return None;
    }
    pairs
        .map(|pair| {
            let text = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(text, 16).ok()
        })
        .collect()
}
