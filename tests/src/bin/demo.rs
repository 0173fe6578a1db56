//! `demo`: the seed lab in a pod-faithful local mesh — one network namespace per
//! pod, istio-iptables' capture, Envoy as uid 1337 configured the way istiod would —
//! with every call compared with the seed lab's documented result and with `policy`'s
//! prediction. The README's main command (`make demo`); needs root.
//!
//! Exit code 0 when everything agrees, 1 on a disagreement, 2 when the lab cannot run.

use clap::Parser;
use peerauth_tests::demo::expected::SeedLab;
use peerauth_tests::demo::explain;
use peerauth_tests::demo::pods::LabConfig;
use peerauth_tests::demo::walk::{self, DemoReport, Event};
use peerauth_tests::node;
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

/// Walk the seed lab (no policy → mesh STRICT → namespace STRICT → workload STRICT →
/// port-level DISABLE → precedence) and the seed scenarios in network-namespace pods
/// with istiod-shaped sidecars; compare every call with the lab's documented result
/// and with policy.
#[derive(Debug, Parser)]
#[command(name = "demo", version)]
struct Cli {
    /// The built filter [default: out/peerauth_filter.wasm or $PEERAUTH_FILTER_WASM].
    #[arg(long)]
    wasm: Option<PathBuf>,
    /// Run only the steps whose name contains this (e.g. `5-port`, `catalog`).
    #[arg(long)]
    step: Option<String>,
    /// Print one JSON document instead of the tables (progress goes to stderr).
    #[arg(long)]
    json: bool,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Nothing is created before this passes: a machine that cannot host the lab gets
    // one line and exit 2.
    if let Err(e) = node::preflight() {
        eprintln!("demo: {e}");
        return ExitCode::from(2);
    }
    // Ctrl-C, SIGTERM or SIGHUP: remove every namespace, rule, file and process the
    // lab created, then leave.
    if let Err(e) = ctrlc::set_handler(|| {
        INTERRUPTED.store(true, Ordering::SeqCst);
        node::teardown_all();
        eprintln!(
            "\ndemo: interrupted; removed every pod, rule, file and process the lab had created"
        );
        std::process::exit(130);
    }) {
        eprintln!("demo: installing the signal handler: {e}");
        return ExitCode::from(2);
    }
    let repo = repo_root();
    let mut config = LabConfig::default_for(&repo);
    if let Some(w) = cli.wasm.clone() {
        config.wasm = w;
    }
    // The seed steps 4-6 load the filter: say so before building anything.
    if !config.wasm.is_file() {
        eprintln!(
            "demo: {}",
            peerauth_tests::demo::LabError::NoFilter(config.wasm.clone())
        );
        return ExitCode::from(2);
    }
    let outcome = run(&cli, &config);
    // A signal's teardown kills the Envoys under a running step, which then fails
    // with an ordinary lab error; that is the interruption, not a broken lab, so it
    // exits 130 however the race between the two threads goes.
    if INTERRUPTED.load(Ordering::SeqCst) {
        node::teardown_all();
        return ExitCode::from(130);
    }
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            node::teardown_all();
            eprintln!("demo: {e}");
            ExitCode::from(2)
        }
    }
}

/// Set by the signal handler before it tears the lab down.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

fn run(cli: &Cli, config: &LabConfig) -> Result<bool, peerauth_tests::demo::LabError> {
    let json_mode = cli.json;
    let say = |line: &str| {
        if json_mode {
            eprintln!("{line}");
        } else {
            // A closed pipe (`demo | head`) must not panic mid-lab: the lab still
            // tears down on the way out.
            let mut out = std::io::stdout();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    };
    let seed_lab = SeedLab::load(&config.repo)?;
    say("peerauth local mesh demo: the seed lab in network-namespace pods with Istio's traffic capture, no cluster");
    say(&format!(
        "  filter {} · lab-app {} · every call: observed / documented by the lab (manifests/lab/seed-lab.json) / predicted by policy",
        config.wasm.display(),
        config.app.display()
    ));
    let mut emit = |e: Event| match e {
        Event::Begin(i, n, step) => {
            say("");
            say(&format!("[step {i}/{n}] {} — {}", step.name, step.title));
        }
        Event::Progress(m) => say(&format!("  … {m}")),
        Event::Step(r) => {
            let modes: Vec<String> = r
                .modes
                .iter()
                .map(|m| format!("{}:{} {}", m.pod, m.port, m.mode))
                .collect();
            say(&format!(
                "  inbound modes the sidecars were built with: {}",
                modes.join(" · ")
            ));
            if !r.plugins.is_empty() {
                say(&format!("  WasmPlugins: {}", r.plugins.join(", ")));
            }
            if !json_mode {
                let _ = write!(std::io::stdout(), "{r}");
            }
            let source = seed_lab
                .sources
                .get(&r.source)
                .map_or(r.source.clone(), |s| s.url.clone());
            let starred = r.calls.iter().any(|c| c.lab_shows.is_empty());
            say(&format!(
                "  {}/{} calls agree with the lab and with policy ({} Envoys, {:.1}s); lab: {source}{}",
                r.calls.len() - r.disagreements(),
                r.calls.len(),
                r.envoys,
                r.seconds,
                if starred {
                    "; * = a call the page does not print here, read as manifests/lab/seed-lab.json explains"
                } else {
                    ""
                }
            ));
            for (pod, counters) in &r.counters {
                for c in counters {
                    say(&format!("  filter counter in {pod}: {c}"));
                }
            }
        }
        Event::Scene(title, lines) => {
            say(&format!("  [{title}]"));
            for l in lines {
                say(&format!("    {l}"));
            }
        }
    };
    let report = walk::walk(config, cli.step.as_deref(), &mut emit)?;
    let ambient = if cli.step.is_none() {
        ambient_offline(&config.repo, &say)
    } else {
        Vec::new()
    };
    let ok = report.all_agree(&seed_lab);
    let summary = summary_line(&report, &seed_lab);
    if json_mode {
        eprintln!("{summary}");
        let mut doc = json_document(&report, &seed_lab, ok);
        doc["ambient_offline"] = json!(ambient
            .iter()
            .map(|e| json!({"command": e.command, "exit": e.exit, "output": e.output}))
            .collect::<Vec<_>>());
        println!("{doc}");
    } else {
        println!();
        println!("{summary}");
    }
    Ok(ok)
}

/// Seed 004's ambient example. The lab has no ztunnel, so this one is answered by
/// `policy` alone, and says so: it is the only part of the demo that is not observed.
fn ambient_offline(repo: &Path, say: &dyn Fn(&str)) -> Vec<explain::Explanation> {
    let dir = explain::path_for_cli(repo, "manifests/lab/ambient");
    say("");
    say(
        "[seed 004, ambient mode] computed offline by policy, NOT observed: the lab has no ztunnel",
    );
    say("  (istiod's PeerAuthentication → ztunnel conversion: STRICT rejects callers without a peer identity, DISABLE acts as PERMISSIVE)");
    let runs = [
        explain::peerauth(&["describe", "foo/httpbin", "-f", &dir]),
        explain::peerauth(&[
            "matrix",
            "-f",
            &dir,
            "--client-label",
            "app=sleep",
            "--server-label",
            "app=httpbin",
        ]),
    ];
    for e in &runs {
        say(&format!("  $ {}", e.command));
        for l in e.output.lines() {
            say(&format!("    {l}"));
        }
    }
    runs.to_vec()
}

fn summary_line(report: &DemoReport, seed_lab: &SeedLab) -> String {
    let mut scenes = Vec::new();
    if !report.data_in_motion.is_empty() {
        scenes.push(format!(
            "data in motion {}",
            if report.wire_as_expected(seed_lab) {
                "as documented"
            } else {
                "NOT as documented"
            }
        ));
    }
    if !report.socket_matches.is_empty() {
        scenes.push(format!(
            "debug-log socket matches {}",
            if report.socket_matches.iter().all(|c| c.ok()) {
                "shown"
            } else {
                "MISSING"
            }
        ));
    }
    if let Some(f) = &report.forged_xfcc {
        scenes.push(format!(
            "forged XFCC {}",
            if f.caught() { "caught" } else { "NOT caught" }
        ));
    }
    if !report.strict_readout.is_empty() {
        scenes.push(format!(
            "STRICT readout {}",
            if report.strict_readout.iter().all(|r| r.as_expected()) {
                "as expected"
            } else {
                "UNEXPECTED"
            }
        ));
    }
    format!(
        "summary: {}/{} calls agree with the seed lab and with policy; {} ({:.1}s)",
        report.agreeing(),
        report.calls(),
        if scenes.is_empty() {
            "no extra scenes".to_string()
        } else {
            scenes.join("; ")
        },
        report.seconds
    )
}

fn json_document(report: &DemoReport, seed_lab: &SeedLab, ok: bool) -> serde_json::Value {
    let steps: Vec<serde_json::Value> = report
        .steps
        .iter()
        .map(|s| {
            json!({
                "step": s.name,
                "title": s.title,
                "source": s.source,
                "reading": s.reading,
                "modes": s.modes,
                "plugins": s.plugins,
                "calls": s.calls.iter().map(|c| json!({
                    "client": c.client,
                    "server": c.server,
                    "port": c.port,
                    "command": c.command,
                    "observed": {"code": c.observed.result.code, "curl_exit": c.observed.result.curl_exit, "mtls_seen": c.observed.result.mtls, "xfcc": c.observed.xfcc},
                    "expected_by_lab": {"code": c.expected_by_lab.code, "curl_exit": c.expected_by_lab.curl_exit, "mtls": c.expected_by_lab.mtls, "shown": c.lab_shows},
                    "predicted_by_policy": {"code": c.predicted_by_policy.code, "curl_exit": c.predicted_by_policy.curl_exit, "mtls": c.predicted_by_policy.mtls, "explanation": c.policy_explanation},
                    "agrees_with_lab": c.agrees_with_lab(),
                    "agrees_with_policy": c.agrees_with_policy(),
                })).collect::<Vec<_>>(),
                "filter_counters": s.counters.iter().map(|(pod, cs)| json!({
                    "pod": pod,
                    "counters": cs.iter().map(|c| json!({"name": c.name, "labels": c.labels.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(), "value": c.value})).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
                "envoys": s.envoys,
                "seconds": s.seconds,
            })
        })
        .collect();
    json!({
        "version": "peerauth-demo/v1",
        "ok": ok,
        "calls": report.calls(),
        "agreeing": report.agreeing(),
        "steps": steps,
        "data_in_motion": report.data_in_motion,
        "data_in_motion_documented": seed_lab.data_in_motion,
        "socket_matches": report.socket_matches,
        "forged_xfcc": report.forged_xfcc,
        "strict_readout": report.strict_readout,
        "explanations": report.explanations.iter().map(|(step, e)| json!({"step": step, "command": e.command, "exit": e.exit, "output": e.output})).collect::<Vec<_>>(),
        "seconds": report.seconds,
    })
}
