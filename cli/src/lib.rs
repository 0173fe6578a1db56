//! `peerauth`: an offline command-line interface over the [`policy`] crate.
//!
//! It adds no rules of its own: it reads files, hands them to [`policy::check`],
//! and prints what `policy` decided — as compiler-style diagnostics, an
//! `istioctl x describe pod`-like description, or a client × server matrix — or
//! as one JSON document per run (types in [`json`]).
//!
//! Exit codes ([`EXIT_OK`], [`EXIT_FINDINGS`], [`EXIT_INPUT`]) are documented in
//! `cli/README.md`; which diagnostics are bad input is declared by their rules
//! (`policy`'s, and the CLI's own in [`rules`]).
//!
//! # Example
//!
//! ```
//! use clap::Parser;
//! use peerauth_cli::{cli::Cli, run, EXIT_INPUT};
//!
//! // `peerauth check -` on a policy with a misspelt mode, read from stdin.
//! let cli = Cli::try_parse_from(["peerauth", "check", "-"]).expect("valid arguments");
//! let yaml = "\
//! apiVersion: security.istio.io/v1
//! kind: PeerAuthentication
//! metadata: {name: default, namespace: foo}
//! spec: {mtls: {mode: STRIKT}}
//! ";
//! let (mut out, mut err) = (Vec::new(), Vec::new());
//! let code = run(&cli, &mut yaml.as_bytes(), &mut out, &mut err).expect("writes to memory");
//! // The API server refuses an unknown enum value: bad input, exit 2.
//! assert_eq!(code, EXIT_INPUT);
//! assert!(String::from_utf8_lossy(&out).contains("pa-unknown-mode"));
//! ```
#![forbid(unsafe_code)]

pub mod cli;
mod convert;
pub mod generate;
mod human;
pub mod input;
pub mod json;
pub mod lab;
mod matrix;
pub mod readiness;
pub mod rules;
pub mod tls_check;

use cli::{CheckArgs, Cli, Command, DescribeArgs, MatrixArgs, MeshArgs};
use policy::diagnostic::{Diagnostic, Severity};
use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::path::PathBuf;

/// Nothing to report (or only what the command does not fail on).
pub const EXIT_OK: u8 = 0;
/// Findings: errors (`check`; warnings too with `--strict`), ignored policies
/// (`describe`), requests that are reset or fail (`matrix`).
pub const EXIT_FINDINGS: u8 = 1;
/// Bad input or usage: a file that cannot be read or parsed, a document that is
/// not a valid resource, a workload or label that matches nothing, bad arguments.
pub const EXIT_INPUT: u8 = 2;

/// Whether `d` is an input error (exit 2) rather than a finding. The class is
/// declared by the diagnostic's rule ([`policy::diagnostic::Class`]), in
/// `policy` for its codes and in [`rules`] for the CLI's.
pub fn is_input_error(d: &Diagnostic) -> bool {
    rules::is_input(d)
}

/// Run a parsed command line, writing the result to `out` and notes to `err`.
/// Returns the exit code; `Err` only when writing fails.
pub fn run(
    cli: &Cli,
    stdin: &mut dyn Read,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<u8> {
    match &cli.command {
        Command::Check(args) => check(args, stdin, out),
        Command::Describe(args) => describe(args, stdin, out, err),
        Command::Matrix(args) => matrix(args, stdin, out, err),
        Command::Lab(args) => lab::run(args, stdin, out, err),
        Command::TlsCheck(args) => tls_check::run(args, stdin, out, err),
        Command::Readiness(args) => readiness::run(args, stdin, out, err),
        Command::LabApp(args) => Ok(peerauth_lab::app::run(args.args.clone())),
    }
}

/// Files read and checked by `policy`, with the CLI's own read problems merged in.
struct Loaded {
    report: policy::Report,
    /// Report diagnostics plus read problems, sorted by file and line.
    diagnostics: Vec<Diagnostic>,
    inputs: json::Inputs,
}

fn load(paths: &[PathBuf], mesh: &MeshArgs, stdin: &mut dyn Read) -> Loaded {
    let read = input::collect(paths, stdin);
    let pairs: Vec<(&str, &str)> = read
        .sources
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    let report = policy::check(&pairs, mesh.config());
    let mut diagnostics = read.problems;
    // A green build from a mistyped folder would be worse than a red one.
    if read.sources.is_empty() && diagnostics.is_empty() {
        let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        diagnostics.push(rules::INPUT_NO_FILES.diagnostic(
            format!("no YAML or JSON files found in {}", names.join(", ")),
            "name files or folders that contain *.yaml, *.yml or *.json",
        ));
    }
    diagnostics.extend(report.diagnostics.iter().cloned());
    let order: BTreeMap<&str, usize> = read
        .sources
        .iter()
        .enumerate()
        .map(|(i, (n, _))| (n.as_str(), i))
        .collect();
    // Argument order first (so `check a.yaml b.yaml` reads top to bottom), then line.
    diagnostics.sort_by_key(|d| match &d.location {
        Some(l) => (
            0,
            order.get(l.source.as_str()).copied().unwrap_or(usize::MAX),
            l.source.clone(),
            l.line,
        ),
        None => (1, 0, String::new(), 0),
    });
    let m = &report.mesh;
    let inputs = json::Inputs {
        files: read.sources.iter().map(|(n, _)| n.clone()).collect(),
        skipped_files: read.skipped_files,
        skipped_documents: report
            .skipped
            .iter()
            .map(|s| json::SkippedDocument {
                kind: s.kind.clone(),
                file: s.location.source.clone(),
                line: s.location.line,
            })
            .collect(),
        resources: m.peer_authentications.len()
            + m.destination_rules.len()
            + m.namespaces.len()
            + m.workloads.len()
            + m.services.len(),
    };
    Loaded {
        report,
        diagnostics,
        inputs,
    }
}

fn summarize(diagnostics: &[Diagnostic]) -> json::Summary {
    let mut s = json::Summary::default();
    for d in diagnostics {
        match d.severity {
            Severity::Error => s.errors += 1,
            Severity::Warning => s.warnings += 1,
            Severity::Info => s.infos += 1,
        }
        if is_input_error(d) {
            s.input_errors += 1;
        }
    }
    s
}

fn write_json<T: serde::Serialize>(out: &mut dyn Write, doc: &T) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, doc).map_err(io::Error::other)?;
    writeln!(out)
}

fn check(args: &CheckArgs, stdin: &mut dyn Read, out: &mut dyn Write) -> io::Result<u8> {
    let loaded = load(&args.paths, &args.mesh, stdin);
    let summary = summarize(&loaded.diagnostics);
    let code = if summary.input_errors > 0 {
        EXIT_INPUT
    } else if summary.errors > 0 || (args.strict && summary.warnings > 0) {
        EXIT_FINDINGS
    } else {
        EXIT_OK
    };
    if args.output.json {
        let doc = json::CheckDocument {
            version: json::VERSION.into(),
            command: "check".into(),
            exit_code: code,
            strict: args.strict,
            inputs: loaded.inputs,
            summary,
            diagnostics: loaded.diagnostics.iter().map(convert::diagnostic).collect(),
        };
        write_json(out, &doc)?;
    } else {
        human::check(
            out,
            &loaded.diagnostics,
            &loaded.inputs,
            &summary,
            args.strict,
        )?;
    }
    Ok(code)
}

fn describe(
    args: &DescribeArgs,
    stdin: &mut dyn Read,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<u8> {
    let mut loaded = load(&args.files.files, &args.mesh, stdin);
    let mesh = &loaded.report.mesh;
    let (namespace, name) = match args.workload.split_once('/') {
        Some((ns, name)) => (ns, Some(name)),
        None => (args.workload.as_str(), None),
    };
    let mut matched: Vec<&policy::mesh::Workload> = mesh
        .workloads
        .iter()
        .filter(|w| w.namespace == namespace)
        .filter(|w| name.is_none_or(|n| w.name == n))
        .filter(|w| has_labels(&w.labels, pairs(&args.selector)))
        .collect();
    matched.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let reach = mesh.reach();
    let workloads: Vec<json::WorkloadDescription> = matched
        .iter()
        .map(|w| convert::workload(w, &reach.describe(w)))
        .collect();
    if workloads.is_empty() {
        let known: Vec<&str> = mesh
            .workloads
            .iter()
            .filter(|w| w.namespace == namespace)
            .map(|w| w.name.as_str())
            .collect();
        let wanted = match (name, args.selector.is_empty()) {
            (Some(n), _) => format!("{namespace}/{n}"),
            (None, true) => format!("in namespace {namespace}"),
            (None, false) => format!(
                "in namespace {namespace} with labels {}",
                labels_text(&args.selector)
            ),
        };
        let message = if known.is_empty() {
            format!("no workload {wanted}: the files define no workload in namespace {namespace}")
        } else {
            format!(
                "no workload {wanted}; workloads in {namespace}: {}",
                known.join(", ")
            )
        };
        loaded
            .diagnostics
            .push(rules::INPUT_NO_SUCH_WORKLOAD.diagnostic(
                message,
                "name a workload as namespace/name, or a namespace with -l key=value",
            ));
    }
    let summary = summarize(&loaded.diagnostics);
    let code = if summary.input_errors > 0 {
        EXIT_INPUT
    } else if workloads.iter().any(|w| !w.ignored.is_empty()) {
        EXIT_FINDINGS
    } else {
        EXIT_OK
    };
    if args.output.json {
        let doc = json::DescribeDocument {
            version: json::VERSION.into(),
            command: "describe".into(),
            exit_code: code,
            inputs: loaded.inputs,
            summary,
            diagnostics: loaded.diagnostics.iter().map(convert::diagnostic).collect(),
            workloads,
        };
        write_json(out, &doc)?;
    } else {
        human::describe(out, &workloads)?;
        human::input_errors(err, &loaded.diagnostics)?;
    }
    Ok(code)
}

fn matrix(
    args: &MatrixArgs,
    stdin: &mut dyn Read,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<u8> {
    let loaded = load(&args.files.files, &args.mesh, stdin);
    matrix::run(args, loaded, out, err)
}

/// Whether `labels` contain every `want` pair (a Kubernetes label selector match).
fn has_labels<'a>(
    labels: &BTreeMap<String, String>,
    want: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> bool {
    want.into_iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn pairs(labels: &[(String, String)]) -> impl Iterator<Item = (&String, &String)> {
    labels.iter().map(|(k, v)| (k, v))
}

fn labels_text(labels: &[(String, String)]) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}
