#![no_main]
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run gossip_message`: see FUZZING.md; the body is `ringdb_fuzz::internode::gossip`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ringdb_fuzz::internode::gossip(data));
