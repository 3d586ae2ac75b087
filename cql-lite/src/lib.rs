//! CQL-lite: the language and the wire.
//!
//! - [`lexer`], [`parser`], [`ast`]: CQL-lite statements as text → syntax tree, with errors that
//!   name the line, column, offending token and what was expected.
//! - [`types`]: CQL types and values, their native-protocol serialization and text rendering.
//! - [`frame`], [`message`]: native protocol v4 frames and messages as pure encode/decode over bytes.
//! - [`client`]: an async client (used by the shell, the benchmark and the tests).
//! - [`shell`]: the interactive shell behind `ringdb shell`.
//!
//! This crate knows nothing of the cluster: it is equally a client library for Cassandra.

pub mod ast;
pub mod client;
pub mod frame;
pub mod lexer;
pub mod message;
pub mod parser;
pub mod shell;
pub mod types;
