//! The executor's error type: one variant per CQL error the server can answer with.
//!
//! The CQL server maps each variant to a protocol error code in one place; variants carry what
//! that mapping (and a client) needs.

use crate::schema::SchemaError;
use crate::storage::StorageError;

/// Why a statement failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExecError {
    /// The statement does not parse (protocol code 0x2000).
    #[error("{0}")]
    Syntax(String),
    /// The statement is syntactically valid but not acceptable (0x2200).
    #[error("{0}")]
    Invalid(String),
    /// CREATE of an existing keyspace or table (0x2400). `table` is empty for a keyspace.
    #[error("{message}")]
    AlreadyExists {
        keyspace: String,
        table: String,
        message: String,
    },
    /// EXECUTE of an id this node does not know (0x2500): the driver re-prepares.
    #[error("Prepared query with ID {} not found (either the query was not prepared on this host (maybe the host has been restarted?) or you have prepared too many queries and it has been evicted from the internal cache)", hex(.id))]
    Unprepared { id: Vec<u8> },
    /// Not allowed (0x2100), e.g. modifying a system keyspace.
    #[error("{0}")]
    Unauthorized(String),
    /// Not enough live replicas to even try (0x1000).
    #[error("Cannot achieve consistency level: {required} required but only {alive} alive")]
    Unavailable {
        consistency: u16,
        required: i32,
        alive: i32,
    },
    /// Replicas did not acknowledge a write in time (0x1100).
    #[error("Operation timed out - received only {received} responses.")]
    WriteTimeout {
        consistency: u16,
        received: i32,
        block_for: i32,
        write_type: String,
    },
    /// Replicas did not answer a read in time (0x1200).
    #[error("Operation timed out - received only {received} responses.")]
    ReadTimeout {
        consistency: u16,
        received: i32,
        block_for: i32,
        data_present: bool,
    },
    /// Too many replicas failed a read for the level ever to be met (0x1300).
    #[error(
        "Operation failed - received {received} responses and {num_failures} failures{}",
        because(reasons)
    )]
    ReadFailure {
        consistency: u16,
        received: i32,
        block_for: i32,
        num_failures: i32,
        data_present: bool,
        /// Why replicas failed (the first ones), for the message as with `WriteFailure`.
        reasons: Vec<String>,
    },
    /// Too many replicas failed a write for the level ever to be met (0x1500).
    #[error(
        "Operation failed - received {received} responses and {num_failures} failures{}",
        because(reasons)
    )]
    WriteFailure {
        consistency: u16,
        received: i32,
        block_for: i32,
        num_failures: i32,
        write_type: String,
        /// Why replicas failed, as they said (`replica disk full: ...`), first ones only:
        /// protocol v4 has no field for it, so it goes in the message.
        reasons: Vec<String>,
    },
    /// The node is overloaded (0x1001).
    #[error("{0}")]
    Overloaded(String),
    /// The request is malformed at the protocol level, e.g. a bad paging state (0x000A).
    #[error("{0}")]
    Protocol(String),
    /// An internal failure (0x0000).
    #[error("{0}")]
    Server(String),
}

/// `": a; b"` for failure reasons, nothing without any.
fn because(reasons: &[String]) -> String {
    if reasons.is_empty() {
        String::new()
    } else {
        format!(": {}", reasons.join("; "))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl ExecError {
    /// Shorthand for an [`ExecError::Invalid`].
    pub fn invalid(msg: impl Into<String>) -> ExecError {
        ExecError::Invalid(msg.into())
    }
}

/// Shorthand for an `Err(ExecError::Invalid(..))`.
pub(crate) fn invalid<T>(msg: impl Into<String>) -> Result<T, ExecError> {
    Err(ExecError::Invalid(msg.into()))
}

impl From<SchemaError> for ExecError {
    fn from(e: SchemaError) -> Self {
        match e {
            SchemaError::Invalid(m) => ExecError::Invalid(m),
            SchemaError::AlreadyExists {
                keyspace,
                table,
                message,
            } => ExecError::AlreadyExists {
                keyspace,
                table,
                message,
            },
            SchemaError::Unauthorized(m) => ExecError::Unauthorized(m),
            SchemaError::Storage(e) => ExecError::from(e),
            SchemaError::Corrupt(m) => ExecError::Server(format!("corrupt schema: {m}")),
        }
    }
}

impl From<StorageError> for ExecError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::DiskFull(m) => ExecError::Overloaded(format!("disk full: {m}")),
            other => ExecError::Server(other.to_string()),
        }
    }
}
