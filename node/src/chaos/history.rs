//! The history of a run: every operation the clients attempted, with what came of it, and every
//! fault window the nemesis opened. The checker and the report read only this.

use serde::Serialize;

use ringdb_cql::client::ClientError;
use ringdb_cql::message::error_code;

/// What an operation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    /// `INSERT INTO t (k, v) VALUES (key, value)`.
    Write,
    /// `SELECT v FROM t WHERE k = key`.
    Read,
}

/// How an operation ended, as far as the client can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The coordinator acknowledged it (a read returned rows).
    Ok,
    /// It certainly did not happen: refused before anything was sent to a replica
    /// (`Unavailable`, an invalid request) or never sent (no coordinator reachable).
    Failed,
    /// Unknown: a timeout, a lost connection, a replica failure — a write may or may not have
    /// been applied.
    Indeterminate,
}

/// One operation of one client.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Op {
    /// Its index in the history (sorted by start).
    pub id: usize,
    /// The client that ran it (0-based).
    pub client: usize,
    pub kind: OpKind,
    pub key: i64,
    /// Writes: the value written. Reads that succeeded: the value seen (`None`: no row).
    pub value: Option<i64>,
    /// When the client started it, microseconds since the run began (connecting included).
    #[serde(rename = "start_ms", serialize_with = "micros_as_ms")]
    pub start_us: u64,
    /// When the answer (or the error) arrived, microseconds since the run began.
    #[serde(rename = "end_ms", serialize_with = "micros_as_ms")]
    pub end_us: u64,
    pub outcome: Outcome,
    /// The error, for failed and indeterminate operations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The node that coordinated it (`None`: no node could be reached).
    pub coordinator: Option<String>,
    /// The coordinator's datacenter.
    pub dc: Option<String>,
    /// 1 for a first attempt; a write retried after an indeterminate outcome (same key, same
    /// value) counts up.
    pub attempt: u32,
}

fn micros_as_ms<S: serde::Serializer>(us: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(*us as f64 / 1000.0)
}

/// Whether an error means the operation certainly did not happen.
pub fn classify(error: &ClientError) -> Outcome {
    match error {
        // Refused before any replica was asked (a coordinator checks liveness first), or the
        // statement never made sense.
        ClientError::Server { code, .. }
            if matches!(
                *code,
                error_code::UNAVAILABLE
                    | error_code::IS_BOOTSTRAPPING
                    | error_code::SYNTAX
                    | error_code::INVALID
                    | error_code::UNAUTHORIZED
                    | error_code::CONFIG
                    | error_code::UNPREPARED
                    | error_code::BAD_CREDENTIALS
            ) =>
        {
            Outcome::Failed
        }
        ClientError::Connect { .. } | ClientError::InvalidRequest(_) | ClientError::Auth(_) => {
            Outcome::Failed
        }
        // Timeouts, replica failures, server errors, lost connections: the request may have
        // reached replicas.
        _ => Outcome::Indeterminate,
    }
}

/// Whether an error is the coordinator's trouble (down, paused, cut off, overloaded), after
/// which a client moves to another node, as drivers do.
pub fn coordinator_trouble(error: &ClientError) -> bool {
    match error {
        ClientError::Server { code, .. } => !matches!(
            *code,
            error_code::SYNTAX
                | error_code::INVALID
                | error_code::UNAUTHORIZED
                | error_code::CONFIG
                | error_code::ALREADY_EXISTS
        ),
        _ => true,
    }
}

/// Longest error text kept per operation.
pub const MAX_ERROR_LEN: usize = 300;

/// An error's text, shortened to [`MAX_ERROR_LEN`].
pub fn error_text(error: &impl std::fmt::Display) -> String {
    let mut text = error.to_string();
    if text.len() > MAX_ERROR_LEN {
        let mut cut = MAX_ERROR_LEN;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// A fault the nemesis injected, from injection to recovery.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultWindow {
    /// 1-based, in order.
    pub index: usize,
    /// `kill`, `pause`, `partition` or `restart`.
    pub kind: String,
    /// The nodes affected (for a partition: the nodes cut off from the largest group).
    pub nodes: Vec<String>,
    /// What was done, e.g. `partition node3 / node1,node2`.
    pub description: String,
    /// When the nemesis began injecting it (µs since the run began).
    #[serde(rename = "start_ms", serialize_with = "micros_as_ms")]
    pub start_us: u64,
    /// When the fault was healed and the cluster had converged again.
    #[serde(rename = "end_ms", serialize_with = "micros_as_ms")]
    pub end_us: u64,
    /// True when, for the workload's consistency level, some partition's replicas could not
    /// reach the number the level needs from any side (only with `--aggressive`): failures
    /// there are expected.
    pub quorum_lost: bool,
}

impl FaultWindow {
    /// True when an operation that ran from `start_us` to `end_us` overlaps the window (an
    /// operation in flight when the fault struck counts for the window).
    pub fn overlaps(&self, start_us: u64, end_us: u64) -> bool {
        start_us <= self.end_us && end_us >= self.start_us
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringdb_cql::message::{Consistency, ErrorBody, ErrorKind, WriteType};

    fn server(kind: ErrorKind) -> ClientError {
        let body = ErrorBody::new(kind, "x");
        ClientError::Server {
            code: body.code(),
            message: "x".into(),
            error: body,
        }
    }

    #[test]
    fn only_refusals_are_certain_failures() {
        let unavailable = server(ErrorKind::Unavailable {
            consistency: Consistency::Quorum,
            required: 2,
            alive: 1,
        });
        assert_eq!(classify(&unavailable), Outcome::Failed);
        let timeout = server(ErrorKind::WriteTimeout {
            consistency: Consistency::Quorum,
            received: 1,
            block_for: 2,
            write_type: WriteType::Simple,
        });
        assert_eq!(classify(&timeout), Outcome::Indeterminate);
        assert_eq!(
            classify(&ClientError::Timeout(std::time::Duration::from_secs(1))),
            Outcome::Indeterminate
        );
        assert_eq!(
            classify(&ClientError::ConnectionClosed("reset".into())),
            Outcome::Indeterminate
        );
        assert_eq!(
            classify(&server(ErrorKind::Overloaded)),
            Outcome::Indeterminate
        );
        assert_eq!(classify(&server(ErrorKind::Server)), Outcome::Indeterminate);
        assert!(coordinator_trouble(&unavailable) && coordinator_trouble(&timeout));
        assert!(!coordinator_trouble(&server(ErrorKind::Invalid)));
    }

    #[test]
    fn long_errors_are_cut_on_a_char_boundary() {
        let long = "é".repeat(MAX_ERROR_LEN);
        let cut = error_text(&long);
        assert!(cut.len() <= MAX_ERROR_LEN + '…'.len_utf8());
        assert!(cut.ends_with('…'));
        assert_eq!(error_text(&"short"), "short");
    }

    #[test]
    fn ops_serialize_times_in_milliseconds() {
        let op = Op {
            id: 0,
            client: 1,
            kind: OpKind::Write,
            key: 7,
            value: Some(9),
            start_us: 1500,
            end_us: 2750,
            outcome: Outcome::Ok,
            error: None,
            coordinator: Some("node1".into()),
            dc: Some("dc1".into()),
            attempt: 1,
        };
        let v = serde_json::to_value(&op).unwrap();
        assert_eq!(v["start_ms"], 1.5);
        assert_eq!(v["end_ms"], 2.75);
        assert_eq!(v["kind"], "write");
        assert_eq!(v["outcome"], "ok");
        assert!(v.get("error").is_none());
    }
}
