//! The CQL-lite lexer: statement text → tokens.
//!
//! The lexer turns text into a flat list of [`Token`]s that remember where they came from (byte
//! span, 1-based line, 0-based character column — Cassandra's convention), so that the parser can
//! name the exact spot of a mistake. It follows Cassandra's `Lexer.g` in the places where a
//! naive tokenizer would go wrong:
//!
//! - **Longest match among number-like tokens.** A token starting with a digit may be an integer
//!   (`42`), a float (`1.5`, `1.`, `-2e10` once the parser has joined the sign), a UUID
//!   (`123e4567-e89b-12d3-a456-426614174000`, which starts like a float!), a blob (`0xCAFE`) or a
//!   duration (`1h30m`, `10ms`). Every candidate is measured and the longest wins, as ANTLR does.
//!   A UUID may also start with a letter (`a0eebc99-...`), so words that begin with a hex letter are
//!   tried as UUIDs first.
//! - **Signs are separate tokens.** `-` is always its own token and the parser glues it to the
//!   number that follows in a term. This keeps `SET c = c -1` (a counter decrement) unambiguous
//!   without the special rule Cassandra's grammar needs for it.
//! - **Words are not classified here.** Keywords are case-insensitive and most are *unreserved*
//!   (usable as column names: `key`, `ttl`, `count`, `text`...), so the lexer emits every unquoted
//!   identifier as a [`TokenKind::Word`] and the parser decides from context. ISO 8601 durations
//!   such as `P1DT2H` look like words too and are recognised by the parser where a term is
//!   expected; only the alternative ISO form `P0001-02-03T04:05:06` is lexed as a duration here.
//! - **Strings and quoted names are decoded.** `'it''s'` → `it's`, `$$raw$$` → `raw` (no escapes),
//!   `"My""Col"` → `My"Col`.
//! - **Comments** (`-- ...`, `// ...` to the end of the line, `/* ... */` not nested) and
//!   whitespace are skipped.
//!
//! The lexer never fails: a character it cannot use, or a string, quoted name or comment that is
//! never closed, becomes a [`TokenKind::Invalid`] token. The parser reports it like any other
//! unexpected token (so the *first* mistake in the text is the one reported), and
//! [`split_statements`] uses the "unterminated" kinds to know that the shell's input is not yet
//! complete.
//!
//! Everything here works on untrusted input: no indexing that can go out of bounds, no recursion,
//! and work linear in the length of the text.

/// What a token is. Tokens whose text matters as written (words, numbers) keep only their span;
/// the text is `&source[token.start..token.end]` (see [`Token::text`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenKind {
    /// An unquoted identifier or keyword (`SELECT`, `my_table`, `P1D`), as written.
    Word,
    /// A `"quoted"` identifier, with `""` already turned into `"`. Its case is kept.
    QuotedName(String),
    /// A `'string'` (with `''` unescaped) or `$$string$$` literal, decoded.
    String(String),
    /// Digits, without sign.
    Integer,
    /// A float such as `1.5`, `1.` or `3e-4`, without sign.
    Float,
    /// A UUID constant, `8-4-4-4-12` hex digits.
    Uuid,
    /// A blob constant `0x...` (possibly with an odd number of digits; the parser checks).
    Hex,
    /// A duration constant such as `1h30m`, `12µs` or `P0001-02-03T04:05:06`.
    Duration,
    /// `?`
    QMark,
    /// `:`
    Colon,
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `[`
    LBracket,
    /// `]`
    RBracket,
    /// `{`
    LBrace,
    /// `}`
    RBrace,
    /// `,`
    Comma,
    /// `;`
    Semicolon,
    /// `.`
    Dot,
    /// `=`
    Eq,
    /// `!=`
    Neq,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `+`
    Plus,
    /// `-`
    Minus,
    /// `*`
    Star,
    /// Text that is not a token; the span covers what was consumed (to the end of the input for
    /// the unterminated kinds).
    Invalid(LexErrorKind),
    /// The end of the input (an empty span at the end).
    Eof,
}

/// Why some text is not a valid token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LexErrorKind {
    /// `'...` without the closing quote.
    UnterminatedString,
    /// `$$...` without the closing `$$`.
    UnterminatedDollarString,
    /// `"...` without the closing quote.
    UnterminatedQuotedName,
    /// `""`: identifiers cannot be empty.
    EmptyQuotedName,
    /// `/* ...` without the closing `*/`.
    UnterminatedComment,
    /// A character that starts no token (`#`, `@`, a lone `!` or `$`...).
    UnexpectedChar,
}

impl LexErrorKind {
    /// What the parser should say it expected instead, e.g. for error messages.
    pub fn expected(self) -> &'static str {
        match self {
            LexErrorKind::UnterminatedString => "a closing ' to end the string literal",
            LexErrorKind::UnterminatedDollarString => "a closing $$ to end the string literal",
            LexErrorKind::UnterminatedQuotedName => "a closing \" to end the quoted identifier",
            LexErrorKind::EmptyQuotedName => "a non-empty quoted identifier",
            LexErrorKind::UnterminatedComment => "a closing */ to end the comment",
            LexErrorKind::UnexpectedChar => "a valid token",
        }
    }

    /// True when more input could complete the token (an open string, name or comment).
    pub fn is_incomplete(self) -> bool {
        matches!(
            self,
            LexErrorKind::UnterminatedString
                | LexErrorKind::UnterminatedDollarString
                | LexErrorKind::UnterminatedQuotedName
                | LexErrorKind::UnterminatedComment
        )
    }
}

/// One token and where it is in the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub kind: TokenKind,
    /// Byte offset of the first character.
    pub start: usize,
    /// Byte offset just past the last character.
    pub end: usize,
    /// Line of the first character, from 1.
    pub line: usize,
    /// Column of the first character, counted in characters from 0 (Cassandra's convention).
    pub column: usize,
}

impl Token {
    /// The token's text as written in `source` (the string it was lexed from); empty if the span
    /// does not fit `source`.
    pub fn text<'a>(&self, source: &'a str) -> &'a str {
        source.get(self.start..self.end).unwrap_or("")
    }
}

/// A cursor over the source that produces one token at a time.
#[derive(Debug, Clone)]
pub struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    line: usize,
    column: usize,
}

impl<'a> Lexer<'a> {
    /// A lexer at the start of `src`.
    pub fn new(src: &'a str) -> Self {
        Lexer {
            src,
            pos: 0,
            line: 1,
            column: 0,
        }
    }

    /// The next token, skipping whitespace and comments. Returns [`TokenKind::Eof`] at the end
    /// (and again on every later call). After an [`TokenKind::Invalid`] token the lexer has moved
    /// past the offending text, so a tolerant caller may go on.
    pub fn next_token(&mut self) -> Token {
        if let Some(comment) = self.skip_trivia() {
            return comment;
        }
        let (start, line, column) = (self.pos, self.line, self.column);
        let rest = self.rest().as_bytes();
        let Some(c) = self.rest().chars().next() else {
            return self.token(TokenKind::Eof, start, line, column);
        };
        let second = rest.get(1).copied();
        let kind = match c {
            '0'..='9' => {
                let (len, kind) = number_like(rest);
                self.advance_to(start + len);
                kind
            }
            'a'..='z' | 'A'..='Z' => {
                if c.is_ascii_hexdigit() && uuid_len(rest).is_some() {
                    self.advance_to(start + 36);
                    TokenKind::Uuid
                } else if let Some(len) = iso_alternative_duration_len(rest) {
                    self.advance_to(start + len);
                    TokenKind::Duration
                } else {
                    let len = rest
                        .iter()
                        .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
                        .count();
                    self.advance_to(start + len);
                    TokenKind::Word
                }
            }
            '\'' => self.quoted_string(),
            '"' => self.quoted_name(),
            '$' if second == Some(b'$') => self.dollar_string(),
            _ => {
                let (len, kind) = match (c, second) {
                    ('!', Some(b'=')) => (2, TokenKind::Neq),
                    ('<', Some(b'=')) => (2, TokenKind::Le),
                    ('>', Some(b'=')) => (2, TokenKind::Ge),
                    ('?', _) => (1, TokenKind::QMark),
                    (':', _) => (1, TokenKind::Colon),
                    ('(', _) => (1, TokenKind::LParen),
                    (')', _) => (1, TokenKind::RParen),
                    ('[', _) => (1, TokenKind::LBracket),
                    (']', _) => (1, TokenKind::RBracket),
                    ('{', _) => (1, TokenKind::LBrace),
                    ('}', _) => (1, TokenKind::RBrace),
                    (',', _) => (1, TokenKind::Comma),
                    (';', _) => (1, TokenKind::Semicolon),
                    ('.', _) => (1, TokenKind::Dot),
                    ('=', _) => (1, TokenKind::Eq),
                    ('<', _) => (1, TokenKind::Lt),
                    ('>', _) => (1, TokenKind::Gt),
                    ('+', _) => (1, TokenKind::Plus),
                    ('-', _) => (1, TokenKind::Minus),
                    ('*', _) => (1, TokenKind::Star),
                    _ => (
                        c.len_utf8(),
                        TokenKind::Invalid(LexErrorKind::UnexpectedChar),
                    ),
                };
                self.advance_to(start + len);
                kind
            }
        };
        self.token(kind, start, line, column)
    }

    fn rest(&self) -> &'a str {
        self.src.get(self.pos..).unwrap_or("")
    }

    fn token(&self, kind: TokenKind, start: usize, line: usize, column: usize) -> Token {
        Token {
            kind,
            start,
            end: self.pos,
            line,
            column,
        }
    }

    /// Moves one character forward, keeping line and column up to date.
    fn bump(&mut self) -> Option<char> {
        let c = self.rest().chars().next()?;
        self.pos += c.len_utf8();
        if c == '\n' {
            self.line += 1;
            self.column = 0;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    /// Moves forward to byte offset `end` (which must be at or past a character boundary; a
    /// span ending inside a character stops just past that character).
    fn advance_to(&mut self, end: usize) {
        while self.pos < end {
            if self.bump().is_none() {
                break;
            }
        }
    }

    /// Skips whitespace and comments. Returns an Invalid token for a comment never closed.
    fn skip_trivia(&mut self) -> Option<Token> {
        loop {
            let rest = self.rest();
            if rest.starts_with("--") || rest.starts_with("//") {
                let len = rest.find('\n').map_or(rest.len(), |i| i + 1);
                self.advance_to(self.pos + len);
            } else if rest.starts_with("/*") {
                let (start, line, column) = (self.pos, self.line, self.column);
                match rest.get(2..).and_then(|r| r.find("*/")) {
                    Some(i) => self.advance_to(self.pos + 2 + i + 2),
                    None => {
                        self.advance_to(self.src.len());
                        let kind = TokenKind::Invalid(LexErrorKind::UnterminatedComment);
                        return Some(self.token(kind, start, line, column));
                    }
                }
            } else if rest.chars().next().is_some_and(char::is_whitespace) {
                self.bump();
            } else {
                return None;
            }
        }
    }

    /// `'...'` with `''` standing for one quote. The lexer is on the opening quote.
    fn quoted_string(&mut self) -> TokenKind {
        self.bump();
        let mut value = String::new();
        loop {
            match self.bump() {
                None => return TokenKind::Invalid(LexErrorKind::UnterminatedString),
                Some('\'') => {
                    if self.rest().starts_with('\'') {
                        self.bump();
                        value.push('\'');
                    } else {
                        return TokenKind::String(value);
                    }
                }
                Some(c) => value.push(c),
            }
        }
    }

    /// `"..."` with `""` standing for one quote; `""` alone is an error. The lexer is on the
    /// opening quote.
    fn quoted_name(&mut self) -> TokenKind {
        let rest = self.rest();
        if rest.starts_with("\"\"") && !rest.starts_with("\"\"\"") {
            self.advance_to(self.pos + 2);
            return TokenKind::Invalid(LexErrorKind::EmptyQuotedName);
        }
        self.bump();
        let mut value = String::new();
        loop {
            match self.bump() {
                None => return TokenKind::Invalid(LexErrorKind::UnterminatedQuotedName),
                Some('"') => {
                    if self.rest().starts_with('"') {
                        self.bump();
                        value.push('"');
                    } else {
                        return TokenKind::QuotedName(value);
                    }
                }
                Some(c) => value.push(c),
            }
        }
    }

    /// `$$...$$`, no escapes. The lexer is on the first `$`.
    fn dollar_string(&mut self) -> TokenKind {
        let body = self.rest().get(2..).unwrap_or("");
        match body.find("$$") {
            Some(i) => {
                let value = body.get(..i).unwrap_or("").to_string();
                self.advance_to(self.pos + 2 + i + 2);
                TokenKind::String(value)
            }
            None => {
                self.advance_to(self.src.len());
                TokenKind::Invalid(LexErrorKind::UnterminatedDollarString)
            }
        }
    }
}

/// Lexes the whole of `src`. The list always ends with exactly one [`TokenKind::Eof`] or
/// [`TokenKind::Invalid`] token: lexing stops at the first invalid text, since the parser will
/// stop there anyway.
pub fn tokenize(src: &str) -> Vec<Token> {
    let mut lexer = Lexer::new(src);
    let mut tokens = Vec::new();
    loop {
        let token = lexer.next_token();
        let last = matches!(token.kind, TokenKind::Eof | TokenKind::Invalid(_));
        tokens.push(token);
        if last {
            return tokens;
        }
    }
}

/// Splits shell input into complete statements and the incomplete rest.
///
/// A statement ends at a `;` that is not inside a string, a quoted identifier, a `$$` string or a
/// comment. A statement that starts with `BEGIN` (a batch) ends only at a `;` right after
/// `APPLY BATCH`, so the `;`s between its inner statements do not cut it.
///
/// Returns the complete statements, each trimmed and **without** its terminating `;` (statements
/// that hold nothing but whitespace and comments are dropped), and the rest of the input after the
/// last terminator, with leading whitespace trimmed. The rest is empty when it holds only
/// whitespace and complete comments, so a shell can show its continuation prompt exactly when the
/// rest is not empty. A shell that feeds lines one by one must join them with `\n`, since a `--`
/// comment runs to the end of its line.
pub fn split_statements(input: &str) -> (Vec<String>, String) {
    let mut statements = Vec::new();
    let mut lexer = Lexer::new(input);
    let mut segment_start = 0;
    // State of the statement being read.
    let mut has_tokens = false;
    let mut is_batch = false;
    // The two tokens before the current one, as "is it the word APPLY / BATCH".
    let mut prev_apply = false;
    let mut last_apply = false;
    let mut last_batch = false;
    loop {
        let token = lexer.next_token();
        match token.kind {
            TokenKind::Eof => break,
            TokenKind::Invalid(kind) if kind.is_incomplete() => {
                let rest = input.get(segment_start..).unwrap_or("");
                return (statements, rest.trim_start().to_string());
            }
            TokenKind::Semicolon if !is_batch || (prev_apply && last_batch) => {
                if has_tokens {
                    let text = input.get(segment_start..token.start).unwrap_or("");
                    statements.push(text.trim().to_string());
                }
                segment_start = token.end;
                has_tokens = false;
                is_batch = false;
                prev_apply = false;
                last_apply = false;
                last_batch = false;
            }
            _ => {
                let word = (token.kind == TokenKind::Word).then(|| token.text(input));
                if !has_tokens {
                    is_batch = word.is_some_and(|w| w.eq_ignore_ascii_case("begin"));
                }
                has_tokens = true;
                prev_apply = last_apply;
                last_apply = word.is_some_and(|w| w.eq_ignore_ascii_case("apply"));
                last_batch = word.is_some_and(|w| w.eq_ignore_ascii_case("batch"));
            }
        }
    }
    let rest = if has_tokens {
        input
            .get(segment_start..)
            .unwrap_or("")
            .trim_start()
            .to_string()
    } else {
        String::new()
    };
    (statements, rest)
}

/// Measures the token at the start of `b` (which starts with a digit) as every number-like kind
/// and returns the longest, as ANTLR's lexer would.
fn number_like(b: &[u8]) -> (usize, TokenKind) {
    let mut best = (digits(b, 0), TokenKind::Integer);
    let candidates = [
        (float_len(b), TokenKind::Float),
        (duration_len(b), TokenKind::Duration),
        (hex_len(b), TokenKind::Hex),
        (uuid_len(b), TokenKind::Uuid),
    ];
    for (len, kind) in candidates {
        if let Some(len) = len {
            if len >= best.0 {
                best = (len, kind);
            }
        }
    }
    best
}

/// Number of ASCII digits in `b` from `at`.
fn digits(b: &[u8], at: usize) -> usize {
    b.get(at..)
        .unwrap_or(&[])
        .iter()
        .take_while(|c| c.is_ascii_digit())
        .count()
}

/// `DIGIT+ ('.' DIGIT*)? EXPONENT?` with at least a fraction or an exponent.
fn float_len(b: &[u8]) -> Option<usize> {
    let int = digits(b, 0);
    if int == 0 {
        return None;
    }
    let mut i = int;
    let mut is_float = false;
    if b.get(i) == Some(&b'.') {
        i += 1;
        i += digits(b, i);
        is_float = true;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        let mut j = i + 1;
        if matches!(b.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        let exp = digits(b, j);
        if exp > 0 {
            i = j + exp;
            is_float = true;
        }
    }
    is_float.then_some(i)
}

/// `(DIGIT+ UNIT)+` where UNIT is one of y, mo, w, d, h, m, s, ms, us, µs, ns (any case).
fn duration_len(b: &[u8]) -> Option<usize> {
    const UNITS: [&[u8]; 11] = [
        b"mo",
        b"ms",
        b"us",
        "µs".as_bytes(),
        b"ns",
        b"y",
        b"w",
        b"d",
        b"h",
        b"m",
        b"s",
    ];
    let mut i = 0;
    loop {
        let n = digits(b, i);
        if n == 0 {
            break;
        }
        let after = b.get(i + n..).unwrap_or(&[]);
        let unit = UNITS.iter().find(|u| {
            after.len() >= u.len()
                && after
                    .iter()
                    .zip(u.iter())
                    .all(|(a, u)| a.to_ascii_lowercase() == *u)
        });
        match unit {
            Some(u) => i += n + u.len(),
            None => break,
        }
    }
    (i > 0).then_some(i)
}

/// `0x` or `0X` followed by any number of hex digits.
fn hex_len(b: &[u8]) -> Option<usize> {
    match b {
        [b'0', b'x' | b'X', rest @ ..] => {
            Some(2 + rest.iter().take_while(|c| c.is_ascii_hexdigit()).count())
        }
        _ => None,
    }
}

/// `8-4-4-4-12` hex digits.
fn uuid_len(b: &[u8]) -> Option<usize> {
    let candidate = b.get(..36)?;
    let ok = candidate.iter().enumerate().all(|(i, c)| match i {
        8 | 13 | 18 | 23 => *c == b'-',
        _ => c.is_ascii_hexdigit(),
    });
    ok.then_some(36)
}

/// ISO 8601 "alternative format" duration `P0001-02-03T04:05:06` (the only duration form that
/// cannot be lexed as a word).
fn iso_alternative_duration_len(b: &[u8]) -> Option<usize> {
    const PATTERN: &[u8] = b"P0000-00-00T00:00:00";
    let candidate = b.get(..PATTERN.len())?;
    let ok = candidate.iter().zip(PATTERN).all(|(c, p)| match p {
        b'0' => c.is_ascii_digit(),
        _ => c == p,
    });
    ok.then_some(PATTERN.len())
}

/// True if `word` is an ISO 8601 duration with designators, as Cassandra writes them
/// (case-sensitive): `P1Y2M3D`, `PT1H30M`, `P1DT2H`, `P2W`.
pub fn is_iso_duration_word(word: &str) -> bool {
    let b = word.as_bytes();
    if b.first() != Some(&b'P') {
        return false;
    }
    let mut i = 1;
    let n = digits(b, i);
    if n > 0 && b.get(i + n) == Some(&b'W') && i + n + 1 == b.len() {
        return true;
    }
    let mut any = false;
    // Reads `(DIGIT+ UNIT)*` with units in the order given, each at most once.
    let components = |units: &[u8], i: &mut usize, any: &mut bool| -> bool {
        let mut next_unit = 0;
        loop {
            let n = digits(b, *i);
            if n == 0 {
                return true;
            }
            let Some(unit) = b.get(*i + n) else {
                return false;
            };
            match units
                .get(next_unit..)
                .and_then(|rest| rest.iter().position(|u| u == unit))
            {
                Some(p) => next_unit += p + 1,
                None => return false,
            }
            *i += n + 1;
            *any = true;
        }
    };
    if !components(b"YMD", &mut i, &mut any) {
        return false;
    }
    if b.get(i) == Some(&b'T') {
        i += 1;
        let mut any_time = false;
        if !components(b"HMS", &mut i, &mut any_time) || !any_time {
            return false;
        }
        any = true;
    }
    any && i == b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<(TokenKind, String)> {
        tokenize(src)
            .into_iter()
            .map(|t| {
                let text = t.text(src).to_string();
                (t.kind, text)
            })
            .collect()
    }

    #[test]
    fn numbers_take_the_longest_match() {
        let k =
            kinds("1 1.5 1. 2e10 123e4567-e89b-12d3-a456-426614174000 0xCAFE 1h30m 10ms 3mo 1e");
        let got: Vec<_> = k.iter().map(|(k, t)| (k.clone(), t.as_str())).collect();
        assert_eq!(
            got,
            vec![
                (TokenKind::Integer, "1"),
                (TokenKind::Float, "1.5"),
                (TokenKind::Float, "1."),
                (TokenKind::Float, "2e10"),
                (TokenKind::Uuid, "123e4567-e89b-12d3-a456-426614174000"),
                (TokenKind::Hex, "0xCAFE"),
                (TokenKind::Duration, "1h30m"),
                (TokenKind::Duration, "10ms"),
                (TokenKind::Duration, "3mo"),
                (TokenKind::Integer, "1"),
                (TokenKind::Word, "e"),
                (TokenKind::Eof, ""),
            ]
        );
    }

    #[test]
    fn positions_are_line_and_char_column() {
        let toks = tokenize("a\n  'é' b");
        assert_eq!((toks[0].line, toks[0].column), (1, 0));
        assert_eq!((toks[1].line, toks[1].column), (2, 2));
        assert_eq!((toks[2].line, toks[2].column), (2, 6));
    }

    #[test]
    fn iso_durations() {
        for ok in ["P1D", "P1Y2M3D", "PT1H30M", "P1DT2H", "P2W", "PT5S", "P1M"] {
            assert!(is_iso_duration_word(ok), "{ok}");
        }
        for bad in [
            "P", "PT", "P1", "P1DT", "P1D2Y", "p1d", "P1H", "P1W2D", "Pa",
        ] {
            assert!(!is_iso_duration_word(bad), "{bad}");
        }
    }
}
