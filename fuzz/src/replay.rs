//! The corpus replay every crate's `tests/fuzz_corpus.rs` includes (`#[path]`), so the
//! three replays read `fuzz/corpus/<target>/` the same way. Not part of the fuzz
//! crate itself: only the replay tests, under stable `cargo test`, use it.

use std::path::Path;

/// Runs `check` on every file of the target's corpus, naming each file whose
/// input fails, and returns how many files there were.
pub fn replay(target: &str, check: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut failed = Vec::new();
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        // A corpus being fuzzed loses files as libFuzzer replaces them by
        // smaller ones: one gone since the listing is skipped, not an error.
        let bytes = match std::fs::read(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            read => read.unwrap(),
        };
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
