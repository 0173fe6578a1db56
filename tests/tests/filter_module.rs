//! The built filter module exports exactly the callbacks `filter/src/host.rs`
//! implements. `filter/build.sh` keeps only the exports it lists, so Envoy
//! skips every other call; this catches a callback added to host.rs but not to
//! build.sh's list (Envoy would never call it) and a build that skipped the
//! trimming.
//!
//! Needs the built filter at `$PEERAUTH_FILTER_WASM` or `<repo>/out/peerauth_filter.wasm`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::PathBuf;

fn leb(b: &[u8], i: &mut usize) -> usize {
    let (mut v, mut shift) = (0usize, 0);
    loop {
        let byte = b[*i];
        *i += 1;
        v |= usize::from(byte & 0x7f) << shift;
        shift += 7;
        if byte < 0x80 {
            return v;
        }
    }
}

/// Export names of a wasm module (binary format: the export section, id 7).
fn exports(wasm: &[u8]) -> BTreeSet<String> {
    assert_eq!(&wasm[..4], b"\0asm", "not a wasm module");
    let mut i = 8;
    let mut names = BTreeSet::new();
    while i < wasm.len() {
        let id = wasm[i];
        i += 1;
        let len = leb(wasm, &mut i);
        let end = i + len;
        if id == 7 {
            let mut j = i;
            for _ in 0..leb(wasm, &mut j) {
                let n = leb(wasm, &mut j);
                names.insert(String::from_utf8(wasm[j..j + n].to_vec()).unwrap());
                j += n + 1; // name, then the export kind byte
                leb(wasm, &mut j); // and its index
            }
        }
        i = end;
    }
    names
}

/// Every function `host.rs` exports (`pub extern "C" fn name(`): the
/// proxy-wasm ABI is written there by hand, one export per callback.
fn implemented(host_rs: &str) -> BTreeSet<String> {
    host_rs
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("pub extern \"C\" fn "))
        .map(|rest| rest.split('(').next().unwrap().to_string())
        .collect()
}

#[test]
fn the_module_exports_exactly_the_callbacks_host_rs_implements() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let wasm = std::env::var_os("PEERAUTH_FILTER_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("out/peerauth_filter.wasm"));
    let module = std::fs::read(&wasm)
        .unwrap_or_else(|e| panic!("{}: {e} (run filter/build.sh)", wasm.display()));
    let host_rs = std::fs::read_to_string(root.join("filter/src/host.rs")).unwrap();

    let mut want = implemented(&host_rs);
    want.insert("memory".to_string());
    // What every proxy-wasm module needs, and the filter's own callbacks: it
    // configures itself, answers HTTP requests and TCP data, forgets connections.
    for e in [
        "_initialize",
        "proxy_abi_version_0_2_1",
        "proxy_on_memory_allocate",
        "proxy_on_vm_start",
        "proxy_on_context_create",
        "proxy_on_downstream_connection_close",
        "proxy_on_configure",
        "proxy_on_request_headers",
        "proxy_on_downstream_data",
    ] {
        assert!(want.contains(e), "host.rs no longer implements {e}?");
    }
    assert_eq!(
        exports(&module),
        want,
        "exports of {} differ from the callbacks host.rs implements; \
         update the `keep` list in filter/build.sh",
        wasm.display()
    );
}
