//! The properties the `policy` fuzz targets check, shared with the corpus replay
//! in `policy/tests/fuzz_corpus.rs` (included there with `#[path]`) so that
//! `cargo test` on stable checks exactly what the fuzzer checked.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use policy::source::{load_with, Limits};
use policy::spiffe::{SpiffeId, SpiffePattern};
use policy::xfcc;

/// Parsing any header must not panic; what parses serializes to a header that
/// parses back to the same value, and the last element's text kept by
/// `parse_keeping_last` is that element on its own.
pub fn xfcc(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok((parsed, last)) = xfcc::parse_keeping_last(text, &xfcc::Limits::default()) else {
        return;
    };
    let header = parsed.to_header();
    assert_eq!(
        xfcc::parse(&header).as_ref(),
        Ok(&parsed),
        "re-serialized: {header:?}"
    );
    let alone = xfcc::parse(last).expect("the kept last element parses on its own");
    assert_eq!(alone.elements.len(), 1, "kept text {last:?} is one element");
    assert_eq!(alone.last(), parsed.last(), "kept text {last:?}");
}

/// Any text through the YAML/JSON loader and what is built on it (mesh,
/// validation, analysis, describe, matrix): none of it may panic. Small limits
/// keep each run fast while still reaching the limit paths.
pub fn manifest(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let limits = Limits {
        max_bytes: 1 << 16,
        max_documents: 64,
        max_depth: 32,
        max_nodes: 20_000,
    };
    let loaded = load_with(text, "fuzz", &limits);
    for error in &loaded.errors {
        let d = error.to_diagnostic();
        assert!(
            !d.message.is_empty(),
            "an error without a message: {error:?}"
        );
    }
    let (mesh, _) = policy::Mesh::build(&loaded.resources, policy::MeshConfig::default());
    let _ = policy::analyze::run(&mesh);
    for workload in &mesh.workloads {
        std::hint::black_box(mesh.describe(workload));
    }
    let _ = mesh.matrix();
}

/// SPIFFE IDs and allow-list patterns: parsing never panics; a parsed ID prints
/// as what was parsed and parses back; an ID is a pattern matching itself; a
/// pattern's text parses back to the same pattern; a `*` trust domain pattern
/// built from an ID matches it too.
pub fn spiffe(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The input may hold an ID and a pattern separated by a newline.
    let (a, b) = text.split_once('\n').unwrap_or((text, text));
    for s in [a, b] {
        if let Ok(id) = SpiffeId::parse(s) {
            assert_eq!(id.to_string(), s);
            assert_eq!(SpiffeId::parse(&id.to_string()).as_ref(), Ok(&id));
            let _ = id.istio_identity();
            let _ = id.segments().count();
            let exact = SpiffePattern::parse(s).expect("an ID is a valid pattern");
            assert!(exact.matches(&id), "{s} does not match itself");
            let any_td = format!(
                "spiffe://*{}",
                &s["spiffe://".len() + id.trust_domain().len()..]
            );
            let any_td = SpiffePattern::parse(&any_td).expect("a * trust domain pattern");
            assert!(any_td.matches(&id), "{any_td} does not match {s}");
        }
        if let Ok(p) = SpiffePattern::parse(s) {
            assert_eq!(SpiffePattern::parse(p.as_str()).as_ref(), Ok(&p));
        }
    }
    if let (Ok(p), Ok(id)) = (SpiffePattern::parse(a), SpiffeId::parse(b)) {
        let _ = p.matches(&id);
    }
}
