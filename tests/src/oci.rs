//! Writes the filter as an OCI image layout, no Docker needed.
//!
//! The image is the Wasm *OCI artifact* variant that Istio's `pkg/wasm/imagefetcher.go`
//! accepts (`extractOCIArtifactImage`): a manifest with **exactly two layers**, one of
//! which has media type [`WASM_LAYER`] and holds the raw module bytes (not a tarball),
//! the other the runtime config ([`WASM_CONFIG`], solo-io/wasm `spec/spec.md`). The
//! manifest's `config` descriptor points at the same runtime-config blob.
//!
//! Output is deterministic: no timestamps, fixed field order, so the same `.wasm` always
//! gives the same manifest digest. That digest is what Istio compares with a
//! WasmPlugin's `sha256` for `oci://` URLs (`pkg/wasm/cache.go`), and what an
//! `oci://…@sha256:` URL pins.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// The layer holding the raw Wasm module (what Istio looks for).
pub const WASM_LAYER: &str = "application/vnd.module.wasm.content.layer.v1+wasm";
/// The runtime config (image config, and the second layer).
pub const WASM_CONFIG: &str = "application/vnd.module.wasm.config.v1+json";
/// An OCI image manifest.
pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// An OCI image index (`index.json`).
pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// `oci-layout`'s version.
pub const LAYOUT_VERSION: &str = "1.0.0";
/// The annotation naming a tag in `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The annotation naming a layer's file.
pub const TITLE: &str = "org.opencontainers.image.title";

/// Why an image could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OciError {
    #[error("{0} bytes is not a Wasm module (it must start with \\0asm and a version); build the filter first")]
    NotWasm(usize),
    #[error("tag {0:?} is not a valid OCI tag (letters, digits, '_', '.', '-', at most 128, not starting with '.' or '-')")]
    Tag(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} exists and is not an OCI layout; choose an empty or new directory")]
    NotALayout(PathBuf),
}

/// An OCI content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    /// `sha256:<64 hex>`.
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    pub media_type: String,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    pub media_type: String,
    pub manifests: Vec<Descriptor>,
}

/// The runtime config of solo-io/wasm's spec, for Envoy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeConfig {
    /// Always `envoy_proxy`.
    #[serde(rename = "type")]
    pub kind: String,
    pub abi_versions: Vec<String>,
    pub config: RuntimeRootIds,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeRootIds {
    pub root_ids: Vec<String>,
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The image manifest's descriptor (as listed in `index.json`).
    pub manifest: Descriptor,
    pub manifest_json: Vec<u8>,
    pub wasm_layer: Descriptor,
}

impl Written {
    /// The manifest digest without `sha256:` — the value for a WasmPlugin's `sha256`.
    pub fn manifest_hex(&self) -> &str {
        self.manifest.digest.trim_start_matches("sha256:")
    }
}

/// `sha256:<hex>` of `bytes`.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `bytes` starts like a Wasm binary module (the check Istio applies after fetching).
pub fn is_wasm(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes.starts_with(b"\0asm")
}

/// The OCI distribution spec's tag grammar: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub fn valid_tag(tag: &str) -> bool {
    let mut bytes = tag.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphanumeric() || b == b'_' => {}
        _ => return false,
    }
    tag.len() <= 128 && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn descriptor(media_type: &str, bytes: &[u8], title: Option<&str>) -> Descriptor {
    Descriptor {
        media_type: media_type.to_string(),
        digest: digest(bytes),
        size: bytes.len() as u64,
        annotations: title
            .map(|t| BTreeMap::from([(TITLE.to_string(), t.to_string())]))
            .unwrap_or_default(),
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OciError + '_ {
    move |source| OciError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn json(value: &impl Serialize) -> Vec<u8> {
    // Serializing these plain structs cannot fail; an empty blob would be caught by the
    // digest checks anyway.
    serde_json::to_vec(value).unwrap_or_default()
}

/// Write `wasm` as a Wasm OCI artifact image tagged `tag` into the layout directory `dir`
/// (created if missing). A directory that already is an OCI layout is replaced; any other
/// non-empty directory is refused rather than mixed with.
///
/// `Ok` gives the descriptors written; `Err` if `wasm` is not a Wasm module, the tag is
/// invalid, `dir` holds something else, or a file cannot be written.
pub fn write_layout(dir: &Path, wasm: &[u8], tag: &str) -> Result<Written, OciError> {
    if !is_wasm(wasm) {
        return Err(OciError::NotWasm(wasm.len()));
    }
    if !valid_tag(tag) {
        return Err(OciError::Tag(tag.to_string()));
    }
    prepare_dir(dir)?;

    let runtime = RuntimeConfig {
        kind: "envoy_proxy".into(),
        // proxy-wasm-rust-sdk 0.2.x exports the 0.2.1 ABI.
        abi_versions: vec!["proxy_abi_version_0_2_1".into()],
        // The filter uses the default (empty) root id: WasmPlugin.pluginName stays unset.
        config: RuntimeRootIds { root_ids: vec![] },
    };
    let runtime_json = json(&runtime);
    let config = descriptor(WASM_CONFIG, &runtime_json, None);
    let runtime_layer = descriptor(WASM_CONFIG, &runtime_json, Some("runtime-config.json"));
    let wasm_layer = descriptor(WASM_LAYER, wasm, Some("plugin.wasm"));
    let manifest = Manifest {
        schema_version: 2,
        media_type: MANIFEST.into(),
        config,
        layers: vec![runtime_layer, wasm_layer.clone()],
    };
    let manifest_json = json(&manifest);
    let mut manifest_desc = descriptor(MANIFEST, &manifest_json, None);
    manifest_desc
        .annotations
        .insert(REF_NAME.to_string(), tag.to_string());
    let index = Index {
        schema_version: 2,
        media_type: INDEX.into(),
        manifests: vec![manifest_desc.clone()],
    };

    write_blob(dir, &runtime_json)?;
    write_blob(dir, wasm)?;
    write_blob(dir, &manifest_json)?;
    let layout = dir.join("oci-layout");
    fs::write(
        &layout,
        json(&serde_json::json!({ "imageLayoutVersion": LAYOUT_VERSION })),
    )
    .map_err(io(&layout))?;
    let index_path = dir.join("index.json");
    fs::write(&index_path, json(&index)).map_err(io(&index_path))?;

    Ok(Written {
        manifest: manifest_desc,
        manifest_json,
        wasm_layer,
    })
}

fn prepare_dir(dir: &Path) -> Result<(), OciError> {
    if dir.join("oci-layout").is_file() {
        // A previous build: drop its blobs so none of them outlive the new image.
        let blobs = dir.join("blobs");
        if blobs.exists() {
            fs::remove_dir_all(&blobs).map_err(io(&blobs))?;
        }
    } else if dir.exists() {
        let mut entries = fs::read_dir(dir).map_err(io(dir))?;
        if entries.next().is_some() {
            return Err(OciError::NotALayout(dir.to_path_buf()));
        }
    }
    let blobs = dir.join("blobs").join("sha256");
    fs::create_dir_all(&blobs).map_err(io(&blobs))
}

fn write_blob(dir: &Path, bytes: &[u8]) -> Result<(), OciError> {
    let name = hex(&Sha256::digest(bytes));
    let path = dir.join("blobs").join("sha256").join(name);
    fs::write(&path, bytes).map_err(io(&path))
}

/// A copy of a WasmPlugin YAML `template` pinned to this image: after every
/// `url: oci://…` line a `sha256:` line with the manifest digest is added (any existing
/// `sha256:` line is dropped), so Istio refuses an image that is not this one while the
/// URL keeps its readable tag. `None` if the template has no `url: oci://` line.
pub fn pin_wasmplugin(template: &str, written: &Written) -> Option<String> {
    let mut out = String::with_capacity(template.len() + 80);
    let mut pinned = 0;
    for line in template.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("sha256:") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
        if trimmed.starts_with("url: oci://") {
            let indent = &line[..line.len() - trimmed.len()];
            out.push_str(&format!("{indent}sha256: {}\n", written.manifest_hex()));
            pinned += 1;
        }
    }
    (pinned > 0).then_some(out)
}
