//! The built filter module exports exactly the callbacks `filter/src/host.rs`
//! implements. `filter/build.sh` drops the SDK's other exports so Envoy skips
//! those calls; this catches a callback added to host.rs but not to build.sh's
//! list (Envoy would never call it) and a build that skipped the trimming.
//!
//! Needs the built filter at `$PEERAUTH_FILTER_WASM` or `<repo>/out/peerauth_filter.wasm`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::PathBuf;

/// proxy-wasm SDK trait method → the module export Envoy calls for it.
const CALLBACKS: &[(&str, &str)] = &[
    ("on_vm_start", "proxy_on_vm_start"),
    ("on_configure", "proxy_on_configure"),
    ("on_tick", "proxy_on_tick"),
    ("on_queue_ready", "proxy_on_queue_ready"),
    ("on_done", "proxy_on_done"),
    ("on_log", "proxy_on_log"),
    ("on_http_call_response", "proxy_on_http_call_response"),
    ("on_grpc_call_response", "proxy_on_grpc_receive"),
    ("on_grpc_stream_message", "proxy_on_grpc_receive"),
    (
        "on_grpc_call_response_headers",
        "proxy_on_grpc_receive_initial_metadata",
    ),
    (
        "on_grpc_stream_initial_metadata",
        "proxy_on_grpc_receive_initial_metadata",
    ),
    (
        "on_grpc_call_response_trailers",
        "proxy_on_grpc_receive_trailing_metadata",
    ),
    (
        "on_grpc_stream_trailing_metadata",
        "proxy_on_grpc_receive_trailing_metadata",
    ),
    ("on_grpc_stream_close", "proxy_on_grpc_close"),
    ("on_foreign_function", "proxy_on_foreign_function"),
    ("on_http_request_headers", "proxy_on_request_headers"),
    ("on_http_request_body", "proxy_on_request_body"),
    ("on_http_request_trailers", "proxy_on_request_trailers"),
    ("on_http_response_headers", "proxy_on_response_headers"),
    ("on_http_response_body", "proxy_on_response_body"),
    ("on_http_response_trailers", "proxy_on_response_trailers"),
    ("on_new_connection", "proxy_on_new_connection"),
    ("on_downstream_data", "proxy_on_downstream_data"),
    (
        "on_downstream_close",
        "proxy_on_downstream_connection_close",
    ),
    ("on_upstream_data", "proxy_on_upstream_data"),
    ("on_upstream_close", "proxy_on_upstream_connection_close"),
];

/// Exports every proxy-wasm module needs whatever it implements: the VM start,
/// context creation and deletion (the SDK frees a context there), and memory.
const ALWAYS: &[&str] = &[
    "memory",
    "_initialize",
    "proxy_abi_version_0_2_1",
    "proxy_on_memory_allocate",
    "proxy_on_vm_start",
    "proxy_on_context_create",
    "proxy_on_delete",
];

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

/// The export of every SDK callback `host.rs` implements (`fn on_…(&mut self`).
fn implemented(host_rs: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in host_rs.lines() {
        let Some(rest) = line.trim_start().strip_prefix("fn on_") else {
            continue;
        };
        let method = format!("on_{}", rest.split('(').next().unwrap());
        let export = CALLBACKS
            .iter()
            .find(|(m, _)| *m == method)
            .map(|(_, e)| *e)
            .unwrap_or_else(|| panic!("host.rs implements {method}; add it to CALLBACKS"));
        out.insert(export.to_string());
    }
    out
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

    let mut want: BTreeSet<String> = ALWAYS.iter().map(|s| s.to_string()).collect();
    want.extend(implemented(&host_rs));
    // The filter configures itself and answers HTTP requests and TCP data.
    for e in [
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
