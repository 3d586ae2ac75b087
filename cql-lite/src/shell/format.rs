//! Pure text formatting for the shell: result tables, expanded records and error lines.
//!
//! Everything here turns already-rendered cells (`Vec<String>`, null already spelled `null`) into
//! the exact text cqlsh prints, so that people and scripts used to cqlsh read the same layout:
//!
//! ```text
//!  k | name  | score
//! ---+-------+-------
//!  1 | alice |    10
//! ```
//!
//! Column headers are left-aligned, every value is right-aligned (cqlsh does that for text too),
//! each line starts with one space, and the separator line has one `-` more at each end than the
//! cells. Widths count characters (not bytes), so non-ASCII text lines up as long as each
//! character takes one column.

/// The column width of a cell as a terminal shows it (characters, not bytes).
pub fn display_width(cell: &str) -> usize {
    cell.chars().count()
}

/// Makes a cell printable on one line: control characters become escapes so that a value
/// containing a newline cannot break the table.
pub fn escape_cell(cell: &str) -> String {
    if !cell.chars().any(char::is_control) {
        return cell.to_string();
    }
    let mut out = String::with_capacity(cell.len() + 4);
    for c in cell.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

fn pad_left(cell: &str, width: usize) -> String {
    let pad = width.saturating_sub(display_width(cell));
    let mut s = String::with_capacity(cell.len() + pad);
    s.extend(std::iter::repeat_n(' ', pad));
    s.push_str(cell);
    s
}

fn pad_right(cell: &str, width: usize) -> String {
    let pad = width.saturating_sub(display_width(cell));
    let mut s = String::with_capacity(cell.len() + pad);
    s.push_str(cell);
    s.extend(std::iter::repeat_n(' ', pad));
    s
}

/// The separator line for the given column widths: `-` + `-+-`-joined dashes + `-`.
fn separator(widths: &[usize]) -> String {
    let inner: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    format!("-{}-", inner.join("-+-"))
}

/// A table as cqlsh prints it: header line, separator line, then one line per row. Every line
/// ends with `\n`. Rows shorter than the header are padded with empty cells; extra cells are
/// ignored. With no rows only the header and separator are printed (as cqlsh does for an empty
/// result).
pub fn format_table(columns: &[String], rows: &[Vec<String>]) -> String {
    let columns: Vec<String> = columns.iter().map(|c| escape_cell(c)).collect();
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            (0..columns.len())
                .map(|i| row.get(i).map(|c| escape_cell(c)).unwrap_or_default())
                .collect()
        })
        .collect();
    let mut widths: Vec<usize> = columns.iter().map(|c| display_width(c)).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(display_width(cell));
        }
    }
    let mut out = String::new();
    let header: Vec<String> = columns
        .iter()
        .zip(&widths)
        .map(|(c, w)| pad_right(c, *w))
        .collect();
    out.push(' ');
    out.push_str(header.join(" | ").trim_end());
    out.push('\n');
    out.push_str(&separator(&widths));
    out.push('\n');
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| pad_left(c, *w))
            .collect();
        out.push(' ');
        out.push_str(&cells.join(" | "));
        out.push('\n');
    }
    out
}

/// Rows as vertical records (`EXPAND ON`), numbered from `first_row_number`:
///
/// ```text
/// @ Row 1
/// ------+-------
///  k    | 1
///  name | alice
/// ```
///
/// Each record is followed by an empty line, as in cqlsh.
pub fn format_expanded(
    columns: &[String],
    rows: &[Vec<String>],
    first_row_number: usize,
) -> String {
    let columns: Vec<String> = columns.iter().map(|c| escape_cell(c)).collect();
    let name_width = columns.iter().map(|c| display_width(c)).max().unwrap_or(0);
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            (0..columns.len())
                .map(|i| row.get(i).map(|c| escape_cell(c)).unwrap_or_default())
                .collect()
        })
        .collect();
    let value_width = rows
        .iter()
        .flat_map(|r| r.iter().map(|c| display_width(c)))
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        out.push_str(&format!("@ Row {}\n", first_row_number + i));
        out.push_str(&separator(&[name_width, value_width]));
        out.push('\n');
        for (name, value) in columns.iter().zip(row) {
            out.push(' ');
            out.push_str(&pad_right(name, name_width));
            out.push_str(" | ");
            out.push_str(value);
            out.push('\n');
        }
        out.push('\n');
    }
    out
}

/// The footer after a result: `(N rows)` (cqlsh says "rows" even for one).
pub fn format_row_count(n: usize) -> String {
    format!("({n} rows)")
}

/// The exception name and summary cqlsh (through the Python driver) uses for a protocol error
/// code, e.g. `0x2200` → `("InvalidRequest", "Invalid query")`.
pub fn error_class(code: i32) -> (&'static str, &'static str) {
    match code {
        0x0000 => ("ServerError", "Server error"),
        0x000A => ("ProtocolException", "Protocol error"),
        0x0100 => ("AuthenticationFailed", "Bad credentials"),
        0x1000 => ("Unavailable", "Unavailable exception"),
        0x1001 => ("OverloadedErrorMessage", "Coordinator node overloaded"),
        0x1002 => (
            "IsBootstrappingErrorMessage",
            "Coordinator node is bootstrapping",
        ),
        0x1003 => ("TruncateError", "Error during truncate"),
        0x1100 => (
            "WriteTimeout",
            "Coordinator node timed out waiting for replica nodes' responses",
        ),
        0x1200 => (
            "ReadTimeout",
            "Coordinator node timed out waiting for replica nodes' responses",
        ),
        0x1300 => ("ReadFailure", "Replica(s) failed to execute read"),
        0x1400 => ("FunctionFailure", "User Defined Function failure"),
        0x1500 => ("WriteFailure", "Replica(s) failed to execute write"),
        0x2000 => ("SyntaxException", "Syntax error in CQL query"),
        0x2100 => ("Unauthorized", "Unauthorized"),
        0x2200 => ("InvalidRequest", "Invalid query"),
        0x2300 => (
            "ConfigurationException",
            "Query invalid because of configuration issue",
        ),
        0x2400 => ("AlreadyExists", "Already exists"),
        0x2500 => ("Unprepared", "Unprepared query"),
        _ => ("ServerError", "Unknown error"),
    }
}

/// An error returned by the server, worded as cqlsh words it.
///
/// Syntax errors show the server's message alone (`SyntaxException: line 1:7 ...`); every other
/// error shows the code, summary and message
/// (`InvalidRequest: Error from server: code=2200 [Invalid query] message="..."`), followed by
/// `info={...}` when the error carries details (required and alive replicas, ...).
pub fn format_server_error(code: i32, message: &str, info: &[(String, String)]) -> String {
    let (class, summary) = error_class(code);
    if code == 0x2000 {
        return format!("{class}: {message}");
    }
    let mut s =
        format!("{class}: Error from server: code={code:04x} [{summary}] message=\"{message}\"");
    if !info.is_empty() {
        let parts: Vec<String> = info.iter().map(|(k, v)| format!("'{k}': {v}")).collect();
        s.push_str(&format!(" info={{{}}}", parts.join(", ")));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn table_matches_cqlsh_layout() {
        let out = format_table(
            &s(&["k", "name", "score"]),
            &[s(&["1", "alice", "10"]), s(&["22", "bob", "null"])],
        );
        let expected = concat!(
            " k  | name  | score\n",
            "----+-------+-------\n",
            "  1 | alice |    10\n",
            " 22 |   bob |  null\n",
        );
        assert_eq!(out, expected);
    }

    #[test]
    fn empty_table_has_header_and_separator_only() {
        let out = format_table(&s(&["key", "v"]), &[]);
        assert_eq!(out, " key | v\n-----+---\n");
    }

    #[test]
    fn header_is_trimmed_on_the_right() {
        let out = format_table(&s(&["a", "b"]), &[s(&["1", "long value"])]);
        assert_eq!(out.lines().next(), Some(" a | b"));
        assert_eq!(out.lines().nth(2), Some(" 1 | long value"));
    }

    #[test]
    fn short_rows_are_padded_and_newlines_escaped() {
        let out = format_table(&s(&["a", "b"]), &[s(&["x\ny"])]);
        assert_eq!(out, " a    | b\n------+---\n x\\ny |  \n");
    }

    #[test]
    fn width_counts_characters_not_bytes() {
        let out = format_table(&s(&["name"]), &[s(&["héé"]), s(&["abcdef"])]);
        assert_eq!(out, " name\n--------\n    héé\n abcdef\n");
    }

    #[test]
    fn expanded_records() {
        let out = format_expanded(
            &s(&["k", "name"]),
            &[s(&["1", "alice"]), s(&["2", "bo"])],
            1,
        );
        let expected = concat!(
            "@ Row 1\n",
            "------+-------\n",
            " k    | 1\n",
            " name | alice\n",
            "\n",
            "@ Row 2\n",
            "------+-------\n",
            " k    | 2\n",
            " name | bo\n",
            "\n",
        );
        assert_eq!(out, expected);
    }

    #[test]
    fn expanded_numbering_continues_across_pages() {
        let out = format_expanded(&s(&["k"]), &[s(&["7"])], 101);
        assert!(out.starts_with("@ Row 101\n"));
    }

    #[test]
    fn row_count_footer() {
        assert_eq!(format_row_count(1), "(1 rows)");
        assert_eq!(format_row_count(0), "(0 rows)");
    }

    #[test]
    fn errors_read_like_cqlsh() {
        assert_eq!(
            format_server_error(0x2200, "Keyspace 'x' does not exist", &[]),
            "InvalidRequest: Error from server: code=2200 [Invalid query] message=\"Keyspace 'x' does not exist\""
        );
        assert_eq!(
            format_server_error(0x2000, "line 1:7 no viable alternative at input 'x'", &[]),
            "SyntaxException: line 1:7 no viable alternative at input 'x'"
        );
        assert_eq!(
            format_server_error(
                0x1000,
                "Cannot achieve consistency level QUORUM",
                &[
                    ("consistency".into(), "'QUORUM'".into()),
                    ("required_replicas".into(), "2".into()),
                    ("alive_replicas".into(), "1".into())
                ]
            ),
            "Unavailable: Error from server: code=1000 [Unavailable exception] message=\"Cannot achieve consistency level QUORUM\" info={'consistency': 'QUORUM', 'required_replicas': 2, 'alive_replicas': 1}"
        );
    }
}
