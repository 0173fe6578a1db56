//! Replays the checked-in fuzz corpus (`fuzz/corpus/<target>/`) under stable
//! `cargo test`, through the very properties the fuzz targets check
//! (`fuzz/src/certgen_checks.rs`, included below): every input must pass them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../fuzz/src/certgen_checks.rs"]
mod checks;

#[path = "../../fuzz/src/replay.rs"]
mod replay;
use replay::replay;

#[test]
fn the_proxy_dump_corpus_is_read_or_refused_without_panics() {
    let n = replay("proxy_dump", checks::proxy_dump);
    assert!(n >= 5, "only {n} inputs");
}
