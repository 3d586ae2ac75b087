//! Replays kept fuzz inputs on stable `cargo test`: included with `#[path]` by
//! `cql-lite/tests/fuzz_regressions.rs`, `gossip/tests/fuzz_regressions.rs` and
//! `node/tests/fuzz_regressions.rs` (not part of the fuzz crate itself).

use std::path::{Path, PathBuf};

/// Feeds every file of `fuzz/regressions/<target>/` to `body`, in name order; returns how many.
/// `manifest_dir` is the calling crate's `CARGO_MANIFEST_DIR` (a sibling of `fuzz/`). Panics if
/// `fuzz/regressions` itself is missing, so a wrong path cannot pass by replaying nothing; a
/// target with no kept input has no folder and replays none.
pub fn replay(manifest_dir: &str, target: &str, body: fn(&[u8])) -> usize {
    let root = Path::new(manifest_dir).join("../fuzz/regressions");
    assert!(
        root.is_dir(),
        "{} is missing: the kept fuzz inputs cannot be replayed",
        root.display()
    );
    let Ok(entries) = std::fs::read_dir(root.join(target)) else {
        println!("{target}: no kept inputs");
        return 0;
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    let mut n = 0;
    for path in paths.iter().filter(|p| p.is_file()) {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        println!("{target}: replaying {}", path.display());
        body(&bytes);
        n += 1;
    }
    println!("{target}: {n} kept inputs replayed");
    n
}
