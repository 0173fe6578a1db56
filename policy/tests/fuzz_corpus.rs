//! Replays the checked-in fuzz corpus (`fuzz/corpus/<target>/`) under stable
//! `cargo test`, through the very properties the fuzz targets check
//! (`fuzz/src/policy_checks.rs`, included below): every input must pass them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../fuzz/src/policy_checks.rs"]
mod checks;

#[path = "../../fuzz/src/replay.rs"]
mod replay;
use replay::replay;

#[test]
fn the_xfcc_corpus_parses_without_panics_and_round_trips() {
    let n = replay("xfcc", checks::xfcc);
    assert!(n >= 10, "only {n} inputs");
}

#[test]
fn the_manifest_corpus_loads_and_analyzes_without_panics() {
    let n = replay("manifest", checks::manifest);
    assert!(n >= 10, "only {n} inputs");
}

#[test]
fn the_spiffe_corpus_parses_prints_back_and_matches_itself() {
    let n = replay("spiffe", checks::spiffe);
    assert!(n >= 5, "only {n} inputs");
}
