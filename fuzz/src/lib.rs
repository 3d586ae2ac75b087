//! The bodies of ringdb's fuzz targets, one module per crate under test.
//!
//! Each module is also compiled into that crate's stable regression test (with `#[path]`), so
//! that the inputs kept under `fuzz/regressions/<target>/` replay in CI, where there is no
//! fuzzer. See FUZZING.md at the repo root.

pub mod cql;
pub mod internode;
pub mod verbs;
