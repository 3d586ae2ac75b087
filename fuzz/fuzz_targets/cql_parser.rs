#![no_main]
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run cql_parser`: see FUZZING.md; the body is `ringdb_fuzz::cql::parser`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ringdb_fuzz::cql::parser(data));
