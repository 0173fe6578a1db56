//! The property the certgen fuzz target checks, shared with the corpus replay
//! in `certgen/tests/fuzz_corpus.rs` (included there with `#[path]`).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

/// Any bytes as an Envoy `/config_dump`, `istioctl proxy-config secret`
/// output, ztunnel certificates dump, PEM or DER: no panic, an error has a
/// message, and what is read can be summarized and listed.
pub fn proxy_dump(data: &[u8]) {
    match certgen::proxy::read(data, "fuzz") {
        Err(e) => assert!(!e.to_string().is_empty()),
        Ok(input) => {
            let _ = input.secret_names();
            let _ = input.trust_roots();
            let _ = input.secret(certgen::proxy::ROOT_SECRET);
        }
    }
}
