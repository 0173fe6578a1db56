//! Any UTF-8 text through the YAML/JSON loader and the whole pipeline built on
//! it (mesh, validation, analysis, describe, matrix): none of it may panic.
//! Small limits keep each run fast while still reaching the limit paths.
#![no_main]

use libfuzzer_sys::fuzz_target;
use policy::source::{load_with, Limits};

fuzz_target!(|data: &[u8]| {
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
        let _ = error.to_diagnostic();
    }
    let (mesh, _) = policy::Mesh::build(&loaded.resources, policy::MeshConfig::default());
    let _ = policy::analyze::run(&mesh);
    for workload in &mesh.workloads {
        let _ = mesh.describe(workload).to_text();
    }
    let _ = mesh.matrix();
});
