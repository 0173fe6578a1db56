//! `cargo run -p policy --example check -- FILE...`: load the files, print the
//! diagnostics, every workload's effective modes and the client × server matrix.
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut texts = Vec::new();
    for path in std::env::args().skip(1) {
        match std::fs::read_to_string(&path) {
            Ok(text) => texts.push((path, text)),
            Err(e) => {
                eprintln!("{path}: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let sources: Vec<(&str, &str)> = texts
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    let report = policy::check(&sources, policy::MeshConfig::default());
    for d in &report.diagnostics {
        let at = d
            .location
            .as_ref()
            .map(|l| format!("{}:{}", l.source, l.line))
            .unwrap_or_default();
        let istio = d
            .istio_code
            .as_deref()
            .map(|c| format!(" [{c}]"))
            .unwrap_or_default();
        println!("{at}: {:?} {}{istio}: {}", d.severity, d.code, d.message);
        if let Some(hint) = &d.hint {
            println!("    hint: {hint}");
        }
    }
    // The describe answer as data: the CLI (`peerauth describe`) is where it is rendered as text.
    for w in &report.mesh.workloads {
        let d = report.mesh.describe(w);
        println!(
            "{}.{}: workload {} ({:?}), ports {:?}",
            d.name,
            d.namespace,
            d.workload.mode,
            d.workload.decided_at,
            d.ports
                .iter()
                .map(|(p, r)| (*p, r.mode.as_str()))
                .collect::<Vec<_>>()
        );
    }
    for cell in report.mesh.matrix().cells {
        println!("{:?} mtls={} {}", cell.outcome, cell.mtls, cell.explanation);
    }
    if report
        .diagnostics
        .iter()
        .any(|d| d.severity == policy::Severity::Error)
    {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
