#![no_main]
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run node_verb`: see FUZZING.md; the body is `ringdb_fuzz::verbs::verb`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ringdb_fuzz::verbs::verb(data));
