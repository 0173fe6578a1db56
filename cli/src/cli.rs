//! Command-line arguments (clap derive). Doc comments here are the `--help` text.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Check Istio PeerAuthentication and DestinationRule YAML offline, describe the
/// effective mTLS mode of a workload, and print the client × server matrix.
///
/// Exit codes: 0 fine, 1 findings, 2 bad input or usage.
#[derive(Debug, Parser)]
#[command(name = "peerauth", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate and analyse every YAML/JSON document; print diagnostics like a compiler.
    ///
    /// Exits 1 if any error is found (warnings too with --strict), 2 if a file
    /// cannot be read or a document is not a valid resource.
    Check(CheckArgs),
    /// Effective mTLS mode of a workload per port, what decided it, and what istiod ignores.
    ///
    /// The offline `istioctl x describe pod`, but listing the policies istiod does
    /// not use and why. Exits 1 if a policy that seems to apply is ignored, 2 if no workload matches.
    Describe(DescribeArgs),
    /// Every client × Service port: does the request succeed, and is it mTLS?
    ///
    /// Exits 1 if any shown request is reset or fails.
    Matrix(MatrixArgs),
    /// Run the manifests in a local mesh of real pods and Envoys (root); each call's
    /// observed result next to policy's prediction.
    ///
    /// One network namespace per workload with Istio's traffic capture, istiod-shaped
    /// sidecars, a stand-in app on every container port, the peerauth filter where its
    /// WasmPlugins put it. Exits 1 if a call disagrees with policy, 2 if the lab cannot run.
    Lab(crate::lab::LabArgs),
    /// Does this client reach this Service port over Istio mTLS? What the client sends
    /// and which resource decided it, what the server port accepts and why, the outcome.
    ///
    /// The retired `istioctl authn tls-check`, offline. Exits 0 when every port checked
    /// succeeds over mTLS, 1 when one succeeds in plaintext or fails, 2 on bad input.
    TlsCheck(crate::tls_check::TlsCheckArgs),
    /// Safe to go STRICT? Per workload and port, the mTLS and plaintext requests the
    /// peerauth filter saw, who sent the plaintext, and a migration plan.
    ///
    /// Reads the filter's counters (`/stats/prometheus` or a Prometheus query), its log
    /// lines and the cluster's objects. Exits 0 when every port seen is safe, 1 when one
    /// is not (or has no data), 2 on bad input.
    Readiness(crate::readiness::ReadinessArgs),
    /// The lab's stand-in app, run by `peerauth lab` inside each pod.
    #[command(name = "__lab-app", hide = true)]
    LabApp(crate::lab::LabAppArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Files or folders to read (folders are searched for *.yaml, *.yml, *.json); `-` reads stdin.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Fail (exit 1) on warnings as well as errors.
    #[arg(long)]
    pub strict: bool,
    #[command(flatten)]
    pub mesh: MeshArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// `namespace/name` of a workload (Deployment, Pod, …), or a namespace with `-l`.
    #[arg(value_name = "WORKLOAD")]
    pub workload: String,
    /// Select workloads of the namespace by pod labels, e.g. `-l app=httpbin` (repeat or comma-separate).
    #[arg(short = 'l', long = "selector", value_name = "KEY=VALUE", value_delimiter = ',', value_parser = parse_label)]
    pub selector: Vec<(String, String)>,
    #[command(flatten)]
    pub files: FileArgs,
    #[command(flatten)]
    pub mesh: MeshArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct MatrixArgs {
    #[command(flatten)]
    pub files: FileArgs,
    /// Only clients whose pod labels include these, e.g. `app=sleep`.
    #[arg(long, value_name = "KEY=VALUE", value_delimiter = ',', value_parser = parse_label, help_heading = "Filters")]
    pub client_label: Vec<(String, String)>,
    /// Only Services that select pods with these labels, e.g. `app=httpbin`.
    #[arg(long, value_name = "KEY=VALUE", value_delimiter = ',', value_parser = parse_label, help_heading = "Filters")]
    pub server_label: Vec<(String, String)>,
    /// List only the cells of these kinds, one line each, instead of a table
    /// (comma-separated): mtls (200 over Istio mTLS), plaintext (200 in
    /// plaintext), reset, fail. Above 1,000,000 cells (or with --grouped) the
    /// clients are listed once, in groups that send alike, and each Service
    /// port gets one line per answer it gives them, naming the groups
    /// (--full: each cell). With --json or --json-lines only those cells are written.
    #[arg(
        long,
        value_enum,
        value_name = "KINDS",
        value_delimiter = ',',
        help_heading = "Filters"
    )]
    pub only: Vec<Only>,
    /// Print the whole client × Service port table (with --only: each cell),
    /// however wide or large.
    #[arg(long, conflicts_with = "grouped", help_heading = "Output")]
    pub full: bool,
    /// Print the summary per namespace pair even when the table would fit
    /// (with --only: the cells by client group).
    #[arg(long, help_heading = "Output")]
    pub grouped: bool,
    /// The width the table must fit in, else the summary per namespace pair is
    /// printed [default: $COLUMNS; else 80 on a terminal; else no limit].
    #[arg(long, value_name = "CHARACTERS", help_heading = "Output")]
    pub width: Option<usize>,
    /// Write one JSON object per cell per line (JSON Lines), as they are computed.
    #[arg(long, conflicts_with = "json", help_heading = "Output")]
    pub json_lines: bool,
    #[command(flatten)]
    pub mesh: MeshArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// A kind of matrix cell, for `--only`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Only {
    /// Succeeds over Istio mTLS.
    Mtls,
    /// Succeeds in plaintext.
    Plaintext,
    /// The connection is reset.
    Reset,
    /// TLS reaches a plaintext app and the request fails.
    Fail,
}

#[derive(Debug, Args)]
pub struct FileArgs {
    /// File or folder to read (repeatable; folders are searched for *.yaml, *.yml, *.json); `-` reads stdin.
    #[arg(short = 'f', long = "filename", value_name = "PATH", required = true)]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct MeshArgs {
    /// The mesh root namespace (meshConfig.rootNamespace).
    #[arg(
        long,
        value_name = "NAMESPACE",
        default_value = "istio-system",
        help_heading = "Mesh"
    )]
    pub root_namespace: String,
    /// Assume auto mTLS is off (meshConfig.enableAutoMtls: false).
    #[arg(long, help_heading = "Mesh")]
    pub no_auto_mtls: bool,
}

#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Print one JSON document (`"version": "peerauth/v1"`, see the README) instead of text.
    #[arg(long, help_heading = "Output")]
    pub json: bool,
}

impl MeshArgs {
    pub fn config(&self) -> policy::MeshConfig {
        policy::MeshConfig {
            root_namespace: self.root_namespace.clone(),
            auto_mtls: !self.no_auto_mtls,
            ..policy::MeshConfig::default()
        }
    }
}

/// `key=value`, as in `kubectl -l`; an empty key is refused because no pod label has one.
fn parse_label(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))?;
    let k = k.trim();
    if k.is_empty() {
        return Err(format!("empty label key in {s:?}"));
    }
    Ok((k.to_string(), v.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::parse_label;

    #[test]
    fn labels_are_key_equals_value_with_a_non_empty_key() {
        assert_eq!(parse_label("app=sleep"), Ok(("app".into(), "sleep".into())));
        assert_eq!(parse_label("tier="), Ok(("tier".into(), String::new())));
        assert!(parse_label("app").is_err());
        assert!(parse_label("=sleep").is_err());
    }
}
