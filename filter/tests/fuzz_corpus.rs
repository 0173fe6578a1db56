//! Replays the checked-in fuzz corpus (`fuzz/corpus/<target>/`) under stable
//! `cargo test`, through the very properties the fuzz targets check
//! (`fuzz/src/filter_checks.rs`, included below): every input must pass them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../fuzz/src/filter_checks.rs"]
mod checks;

#[path = "../../fuzz/src/replay.rs"]
mod replay;
use replay::replay;

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
