//! Replays the checked-in fuzz corpus (`fuzz/corpus/<target>/`) under stable
//! `cargo test`, through the very properties the fuzz targets check
//! (`fuzz/src/certgen_checks.rs`, included below): every input must pass them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../fuzz/src/certgen_checks.rs"]
mod checks;

use std::path::Path;

/// Runs `check` on every file of the target's corpus, naming each file whose
/// input fails, and returns how many files there were.
fn replay(target: &str, check: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut failed = Vec::new();
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        seen += 1;
        if std::panic::catch_unwind(|| check(&bytes)).is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{target}: {} inputs fail: {failed:?}",
        failed.len()
    );
    seen
}

#[test]
fn the_proxy_dump_corpus_is_read_or_refused_without_panics() {
    let n = replay("proxy_dump", checks::proxy_dump);
    assert!(n >= 5, "only {n} inputs");
}
