//! `oci-image`: package the built filter as a Wasm OCI image layout Istio can pull
//! (after pushing it to a registry with `oras` or `skopeo`; see manifests/README.md).

use anyhow::{bail, Context, Result};
use clap::Parser;
use peerauth_tests::oci;
use std::path::PathBuf;

/// Write the filter as an OCI image layout (Wasm OCI artifact variant).
#[derive(Debug, Parser)]
#[command(name = "oci-image", version)]
struct Cli {
    /// The built filter module.
    #[arg(long, default_value = "out/peerauth_filter.wasm")]
    wasm: PathBuf,
    /// The layout directory to write (replaced if it already is an OCI layout).
    #[arg(long, default_value = "out/oci")]
    out: PathBuf,
    /// The image tag, recorded in index.json.
    #[arg(long, default_value = "0.1.0")]
    tag: String,
    /// A WasmPlugin YAML to copy with a `sha256:` line pinning this image.
    #[arg(long, requires = "pinned_out")]
    pin_template: Option<PathBuf>,
    /// Where to write the pinned WasmPlugin.
    #[arg(long, requires = "pin_template")]
    pinned_out: Option<PathBuf>,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let wasm = std::fs::read(&cli.wasm).with_context(|| {
        format!(
            "reading {} (run `make build-filter` first)",
            cli.wasm.display()
        )
    })?;
    let written = oci::write_layout(&cli.out, &wasm, &cli.tag)?;
    println!(
        "wrote {} ({} bytes of wasm, tag {})",
        cli.out.display(),
        written.wasm_layer.size,
        cli.tag
    );
    println!("manifest digest: {}", written.manifest.digest);
    println!("WasmPlugin pin:  sha256: {}", written.manifest_hex());
    println!(
        "           or:  url: oci://ghcr.io/peerauth/peerauth-filter@{}",
        written.manifest.digest
    );
    if let (Some(template), Some(out)) = (cli.pin_template, cli.pinned_out) {
        let text = std::fs::read_to_string(&template)
            .with_context(|| format!("reading {}", template.display()))?;
        let Some(pinned) = oci::pin_wasmplugin(&text, &written) else {
            bail!("{} has no `url: oci://` line to pin", template.display());
        };
        std::fs::write(&out, pinned).with_context(|| format!("writing {}", out.display()))?;
        println!("pinned WasmPlugin: {}", out.display());
    }
    Ok(())
}
