#![no_main]
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run cql_frame`: see FUZZING.md; the body is `ringdb_fuzz::cql::frame`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ringdb_fuzz::cql::frame(data));
