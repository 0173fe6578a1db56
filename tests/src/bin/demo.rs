//! `demo`: the seed lab on one machine — real Envoys, real mTLS, real requests —
//! compared cell by cell with `policy`'s predictions. The README's main command
//! (`make demo`). Exit code 0 when every cell agrees, 1 when one does not, 2 when the
//! lab could not run.

use anyhow::{Context, Result};
use clap::Parser;
use peerauth_tests::demo::lab::{self, Lab, LabConfig, FORGED_IDENTITY};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

/// Walk the seed lab (no policy → mesh STRICT → namespace STRICT → workload STRICT →
/// port-level DISABLE → precedence) with real Envoys and compare with policy.
#[derive(Debug, Parser)]
#[command(name = "demo", version)]
struct Cli {
    /// The built filter [default: out/peerauth_filter.wasm or $PEERAUTH_FILTER_WASM].
    #[arg(long)]
    wasm: Option<PathBuf>,
    /// Run only the steps whose folder name contains this (e.g. `5-port`).
    #[arg(long)]
    step: Option<String>,
}

fn say(line: &str) {
    println!("{line}");
    let _ = std::io::stdout().flush();
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("demo: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn run() -> Result<bool> {
    let cli = Cli::parse();
    let repo = repo_root();
    let mut config = LabConfig::default_for(&repo);
    if let Some(w) = cli.wasm {
        config.wasm = w;
    }
    let work_dir = config.work_dir.clone();
    // Ctrl-C, SIGTERM or SIGHUP: stop every Envoy this process started, then leave.
    ctrlc::set_handler(move || {
        lab::stop_all();
        let _ = std::fs::remove_dir_all(&work_dir);
        eprintln!("\ndemo: interrupted; stopped every Envoy it had started");
        std::process::exit(130);
    })
    .context("installing the signal handler")?;

    let started = Instant::now();
    say("peerauth local mesh demo: the seed lab on one machine, no cluster");
    let wasm_size = std::fs::metadata(&config.wasm)
        .map(|m| m.len())
        .unwrap_or(0);
    say(&format!(
        "  filter {} ({} KiB) · {}",
        config.wasm.display(),
        wasm_size / 1024,
        envoy_version()
    ));
    say("[setup] issuing the mesh CA (root → cluster1 intermediate) and SPIFFE workload certificates with certgen…");
    let lab = Lab::start(config.clone())?;
    say(&format!(
        "[setup] CA and certificates in {}; starting httpbin apps in foo, bar, legacy",
        config.work_dir.join("pki").display()
    ));

    let steps = lab::load_steps(&repo)?;
    let chosen: Vec<&lab::Step> = steps
        .iter()
        .filter(|s| cli.step.as_deref().is_none_or(|f| s.name.contains(f)))
        .collect();
    let total = chosen.len();
    let (mut cells, mut agree) = (0, 0);
    for (i, step) in chosen.iter().enumerate() {
        say("");
        say(&format!(
            "[step {}/{total}] {} — {}",
            i + 1,
            step.name,
            step.title
        ));
        let mut progress = |m: &str| say(&format!("  … {m}"));
        let report = lab.run_step(step, &mut progress)?;
        let modes: Vec<String> = report
            .modes
            .iter()
            .map(|(ns, m)| match m {
                Some(m) => format!("httpbin.{ns}:80 {m}"),
                None => format!("httpbin.{ns}:80 no sidecar"),
            })
            .collect();
        say(&format!(
            "  inbound modes istiod would set: {}",
            modes.join(" · ")
        ));
        print!("{report}");
        let bad = report.disagreements();
        cells += report.cells.len();
        agree += report.cells.len() - bad;
        say(&format!(
            "  {}/{} agree with policy ({} Envoys, {:.1}s)",
            report.cells.len() - bad,
            report.cells.len(),
            report.envoys,
            report.elapsed.as_secs_f64()
        ));
    }

    let first = steps.first().context("manifests/steps is empty")?;
    say("");
    say("[forged XFCC] sleep.bar, with its own valid certificate, sends httpbin.foo an XFCC element");
    say(&format!(
        "  claiming {FORGED_IDENTITY} (sidecar XFCC mode APPEND_FORWARD, Istio's default)…"
    ));
    let mut progress = |m: &str| say(&format!("  … {m}"));
    let forgery = lab.forged_xfcc(first, &mut progress)?;
    say(&format!(
        "  without the forged header: {}",
        forgery.honest_status
    ));
    say(&format!(
        "  with `x-forwarded-client-cert: {}`: {}{}",
        forgery.forged_header,
        forgery.forged_status,
        if forgery.forged_status == 403 {
            " — rejected by the filter"
        } else {
            " — NOT rejected"
        }
    ));
    for c in forgery
        .counters
        .iter()
        .filter(|c| c.name == peerauth_filter::metrics::XFCC_FORGED)
    {
        say(&format!(
            "  filter counter: {c}   (port: the local listener standing in for container port 80)"
        ));
    }
    let forgery_caught = forgery.honest_status == 200 && forgery.forged_status == 403;

    say("");
    say(&format!(
        "[safe to go STRICT?] {}'s traffic through the audit WasmPlugin (action: audit, target STRICT)",
        first.name
    ));
    let mut progress = |m: &str| say(&format!("  … {m}"));
    let rounds: [(&str, &[&str]); 2] = [
        (
            "every client, sleep.legacy included",
            &["foo", "bar", "legacy"],
        ),
        (
            "after sleep.legacy is migrated into the mesh",
            &["foo", "bar"],
        ),
    ];
    let mut readout_ok = true;
    for (label, clients) in rounds {
        say(&format!("  round: {label}"));
        let readiness = lab.readiness(first, clients, &mut progress)?;
        for r in &readiness {
            let plain = r.plaintext_would_reject();
            let verdict = if plain == 0 {
                "0 plaintext — safe to go STRICT".to_string()
            } else {
                format!("{plain} plaintext request(s) STRICT would refuse — not safe yet")
            };
            say(&format!(
                "    {}:80 received {} mTLS request(s); {verdict}",
                r.workload,
                r.mtls()
            ));
        }
        let any_plain = readiness.iter().any(|r| r.plaintext_would_reject() > 0);
        readout_ok &= any_plain == clients.contains(&"legacy");
    }

    drop(lab);
    say("");
    say(&format!(
        "summary: {agree}/{cells} calls agree with policy's predictions; forged XFCC {}; STRICT readout {} ({:.1}s)",
        if forgery_caught { "caught" } else { "NOT caught" },
        if readout_ok { "as expected" } else { "UNEXPECTED" },
        started.elapsed().as_secs_f64()
    ));
    Ok(agree == cells && forgery_caught && readout_ok)
}

fn envoy_version() -> String {
    Command::new(peerauth_tests::envoy::envoy_binary())
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .find(|w| w.contains("/1.") || w.starts_with("1."))
                .map(|w| format!("envoy {}", w.split('/').nth(1).unwrap_or(w)))
        })
        .unwrap_or_else(|| "envoy (version unknown)".into())
}
