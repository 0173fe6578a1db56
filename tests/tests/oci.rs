//! The OCI image layout of the filter: re-read what `oci::write_layout` wrote, straight
//! from the files, and check it is the Wasm OCI artifact image Istio's fetcher accepts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use peerauth_tests::oci;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// The smallest valid module: magic + version 1.
const TINY_WASM: &[u8] = b"\0asm\x01\0\0\0";

fn scratch(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "peerauth-oci-{}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&dir);
    dir
}

/// The built filter when `make build-filter` ran, else the tiny module: the test stands
/// on its own either way.
fn module() -> Vec<u8> {
    let built = std::env::var_os("PEERAUTH_FILTER_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../out/peerauth_filter.wasm")
        });
    fs::read(built).unwrap_or_else(|_| TINY_WASM.to_vec())
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn read_json(path: &Path) -> (Vec<u8>, Value) {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let value = serde_json::from_slice(&bytes).unwrap();
    (bytes, value)
}

/// Resolve a descriptor to its blob, checking the digest names the content and the
/// size matches. Returns the blob bytes.
fn blob(dir: &Path, desc: &Value) -> Vec<u8> {
    let digest = desc["digest"].as_str().unwrap();
    let hex = digest.strip_prefix("sha256:").expect("sha256 digests only");
    assert_eq!(hex.len(), 64);
    assert!(hex
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    let bytes = fs::read(dir.join("blobs/sha256").join(hex)).unwrap();
    assert_eq!(
        sha256_hex(&bytes),
        hex,
        "blob content does not match its digest"
    );
    assert_eq!(
        desc["size"].as_u64().unwrap(),
        bytes.len() as u64,
        "size of {digest}"
    );
    bytes
}

#[test]
fn layout_digests_sizes_and_media_types_are_what_istio_expects() {
    let dir = scratch("layout");
    let wasm = module();
    let written = oci::write_layout(&dir, &wasm, "0.1.0").unwrap();

    let (_, layout) = read_json(&dir.join("oci-layout"));
    assert_eq!(layout["imageLayoutVersion"], "1.0.0");

    let (_, index) = read_json(&dir.join("index.json"));
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1);
    let mdesc = &manifests[0];
    assert_eq!(
        mdesc["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        mdesc["annotations"]["org.opencontainers.image.ref.name"],
        "0.1.0"
    );
    assert_eq!(mdesc["digest"], written.manifest.digest.as_str());

    let manifest_bytes = blob(&dir, mdesc);
    let manifest: Value = serde_json::from_slice(&manifest_bytes).unwrap();
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.module.wasm.config.v1+json"
    );
    let config: Value = serde_json::from_slice(&blob(&dir, &manifest["config"])).unwrap();
    assert_eq!(config["type"], "envoy_proxy");

    // imagefetcher.go extractOCIArtifactImage: exactly two layers, and the one with the
    // wasm media type is the raw module.
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2);
    let wasm_layers: Vec<&Value> = layers
        .iter()
        .filter(|l| l["mediaType"] == "application/vnd.module.wasm.content.layer.v1+wasm")
        .collect();
    assert_eq!(wasm_layers.len(), 1);
    assert_eq!(blob(&dir, wasm_layers[0]), wasm);
    let other = layers
        .iter()
        .find(|l| l["mediaType"] != oci::WASM_LAYER)
        .unwrap();
    assert_eq!(
        other["mediaType"],
        "application/vnd.module.wasm.config.v1+json"
    );
    blob(&dir, other);

    // Nothing in blobs/ that no descriptor reaches.
    let referenced: BTreeSet<String> = [mdesc, &manifest["config"], &layers[0], &layers[1]]
        .iter()
        .map(|d| {
            d["digest"]
                .as_str()
                .unwrap()
                .trim_start_matches("sha256:")
                .to_string()
        })
        .collect();
    let on_disk: BTreeSet<String> = fs::read_dir(dir.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(on_disk, referenced);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_same_module_always_gives_the_same_manifest_digest_and_another_module_does_not() {
    let (a, b, c) = (scratch("a"), scratch("b"), scratch("c"));
    let wasm = module();
    let first = oci::write_layout(&a, &wasm, "0.1.0").unwrap();
    let second = oci::write_layout(&b, &wasm, "0.1.0").unwrap();
    assert_eq!(first.manifest.digest, second.manifest.digest);
    assert_eq!(
        fs::read(a.join("index.json")).unwrap(),
        fs::read(b.join("index.json")).unwrap()
    );
    let mut changed = wasm.clone();
    changed.extend_from_slice(&[0, 1, 2]);
    let third = oci::write_layout(&c, &changed, "0.1.0").unwrap();
    assert_ne!(first.manifest.digest, third.manifest.digest);
    for d in [a, b, c] {
        fs::remove_dir_all(d).unwrap();
    }
}

#[test]
fn rewriting_a_layout_leaves_no_blob_of_the_previous_image() {
    let dir = scratch("rewrite");
    let old = oci::write_layout(&dir, TINY_WASM, "old").unwrap();
    let mut bigger = TINY_WASM.to_vec();
    bigger.extend_from_slice(b"\x00\x01\x00");
    let new = oci::write_layout(&dir, &bigger, "new").unwrap();
    let old_hex = old
        .wasm_layer
        .digest
        .trim_start_matches("sha256:")
        .to_string();
    assert!(!dir.join("blobs/sha256").join(old_hex).exists());
    assert!(dir.join("blobs/sha256").join(new.manifest_hex()).is_file());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn non_wasm_input_bad_tags_and_foreign_directories_are_refused() {
    let dir = scratch("refuse");
    assert!(matches!(
        oci::write_layout(&dir, b"#!/bin/sh\necho hi\n", "0.1.0"),
        Err(oci::OciError::NotWasm(_))
    ));
    for tag in ["", "-x", ".x", "a/b", "a:b", &"x".repeat(129)] {
        assert!(
            matches!(
                oci::write_layout(&dir, TINY_WASM, tag),
                Err(oci::OciError::Tag(_))
            ),
            "tag {tag:?} accepted"
        );
    }
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("precious.txt"), "keep me").unwrap();
    assert!(matches!(
        oci::write_layout(&dir, TINY_WASM, "0.1.0"),
        Err(oci::OciError::NotALayout(_))
    ));
    assert_eq!(
        fs::read_to_string(dir.join("precious.txt")).unwrap(),
        "keep me"
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_pinned_wasmplugin_carries_the_manifest_digest_after_its_oci_url() {
    let dir = scratch("pin");
    let written = oci::write_layout(&dir, TINY_WASM, "0.1.0").unwrap();
    let template = fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../manifests/wasmplugin/peerauth-strict-httpbin-bar.yaml"),
    )
    .unwrap();
    let pinned = oci::pin_wasmplugin(&template, &written).unwrap();
    let url_line = pinned
        .lines()
        .position(|l| l.trim_start().starts_with("url: oci://"))
        .unwrap();
    let next = pinned.lines().nth(url_line + 1).unwrap();
    assert_eq!(next.trim(), format!("sha256: {}", written.manifest_hex()));
    // The pinned copy is still a valid WasmPlugin for the real CRD.
    let errors = peerauth_tests::demo::crd::Crds::load_shared()
        .unwrap()
        .check_text("pinned.yaml", &pinned);
    assert!(errors.is_empty(), "{errors:#?}");
    assert!(
        oci::pin_wasmplugin("kind: WasmPlugin\nspec:\n  url: file:///x.wasm\n", &written).is_none()
    );
    fs::remove_dir_all(&dir).unwrap();
}
