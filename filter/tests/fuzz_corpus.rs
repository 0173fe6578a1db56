//! Replays the checked-in fuzz corpus (`fuzz/corpus/<target>/`) under stable
//! `cargo test`, through the very properties the fuzz targets check
//! (`fuzz/src/filter_checks.rs`, included below): every input must pass them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../fuzz/src/filter_checks.rs"]
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
fn the_plugin_config_corpus_is_read_without_panics() {
    let n = replay("plugin_config", checks::plugin_config);
    assert!(n >= 5, "only {n} inputs");
}

#[test]
fn the_filter_json_corpus_is_read_like_serde_json_reads_it() {
    let n = replay("filter_json", checks::filter_json);
    assert!(n >= 5, "only {n} inputs");
}

#[test]
fn the_cert_der_corpus_is_read_like_x509_parser_reads_it() {
    let n = replay("cert_der", checks::cert_der);
    assert!(n >= 5, "only {n} inputs");
}

#[test]
fn the_cert_valid_corpus_generates_certificates_read_with_their_dates() {
    let n = replay("cert_valid", checks::cert_valid);
    assert!(n >= 3, "only {n} inputs");
}

#[test]
fn the_decide_corpus_never_takes_the_peer_from_xfcc_or_admits_plaintext_to_strict() {
    let n = replay("decide", checks::decide_request);
    assert!(n >= 5, "only {n} inputs");
}
