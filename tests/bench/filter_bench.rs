//! Benchmark (not a test): the same mTLS path with and without the peerauth filter.
//!
//! wrk → plaintext → client-side Envoy (the caller's sidecar, presenting
//! `sleep.foo`'s certificate) → mTLS → server-side Envoy (`httpbin.foo`, with or
//! without the filter) → `direct_response` (the proxy is all the work: the worst
//! case for the filter's share), or with `--upstream app` → a local HTTP/1.1 echo
//! app, as a sidecar sits in front of one. Both paths run side by side and are
//! measured alternately (interleaved rounds); the report gives medians of
//! p50/p99 latency and requests/s, and their ratios.
//!
//! By default the load is closed-loop at saturation (wrk: each connection sends
//! its next request as soon as the last is answered), which measures throughput
//! and the latency of a saturated proxy. `--rate R` instead offers a fixed R
//! requests/s in total (h2load `--rps` over HTTP/1.1, latencies from its
//! per-request log): the latency a request sees when the proxy is not the
//! bottleneck, which is how sidecars usually run.
//!
//! Usage: filter_bench [--rounds N] [--duration SECS] [--connections C] [--wrk-cpu CPU]
//!                     [--upstream direct|app] [--rate R]
//!
//! `$PEERAUTH_FILTER_WASM` replaces the filter: with the do-nothing
//! `peerauth-bench-noop` module (the SDK, no logic) or `peerauth-bench-bare` (the
//! ABI by hand, no SDK), to measure what running any proxy-wasm filter costs.
//! Run through `tests/bench/filter_bench.sh`, which builds everything first.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use peerauth_tests::app::EchoApp;
use peerauth_tests::envoy::{
    free_port, peerauth_stats_tags, Chains, ClientSidecar, Envoy, Sidecar, Upstream, WasmFilter,
};
use peerauth_tests::pki::MeshPki;
use std::path::PathBuf;
use std::process::Command;

struct Args {
    rounds: usize,
    duration: u32,
    connections: u32,
    wrk_cpu: Option<String>,
    app: bool,
    rate: Option<f64>,
}

fn args() -> Args {
    let mut a = Args {
        rounds: 5,
        duration: 10,
        connections: 16,
        wrk_cpu: None,
        app: false,
        rate: None,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--rounds" => a.rounds = v.parse().unwrap(),
            "--duration" => a.duration = v.parse().unwrap(),
            "--connections" => a.connections = v.parse().unwrap(),
            "--wrk-cpu" => a.wrk_cpu = Some(v.clone()),
            "--rate" => a.rate = Some(v.parse().unwrap()),
            "--upstream" => {
                a.app = match v.as_str() {
                    "app" => true,
                    "direct" => false,
                    _ => panic!("--upstream takes direct or app"),
                }
            }
            _ => panic!("unknown argument {k}"),
        }
    }
    a
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    p50_ms: f64,
    p99_ms: f64,
    rps: f64,
    requests: f64,
    /// CPU time the server-side Envoy spent per request, in microseconds: unlike
    /// latency and throughput, it barely moves when other processes compete for
    /// the cores.
    server_cpu_us: f64,
}

/// utime + stime of a process, in clock ticks (100 Hz on Linux).
fn cpu_ticks(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    n(11) + n(12)
}

fn to_ms(v: &str) -> f64 {
    let (num, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len()));
    let n: f64 = num.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        _ => f64::NAN,
    }
}

/// The load tool, pinned to `--wrk-cpu` when given.
fn load_tool(a: &Args, tool: &str) -> Command {
    match &a.wrk_cpu {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.args(["-c", cpu, tool]);
            c
        }
        None => Command::new(tool),
    }
}

fn measure(port: u16, server_pid: u32, a: &Args) -> Sample {
    match a.rate {
        Some(rate) => h2load(port, server_pid, a, rate),
        None => wrk(port, server_pid, a),
    }
}

/// Value at quantile `q` of sorted values (nearest rank).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn h2load(port: u16, server_pid: u32, a: &Args, rate: f64) -> Sample {
    let log =
        std::env::temp_dir().join(format!("peerauth-bench-h2load-{}.tsv", std::process::id()));
    let before = cpu_ticks(server_pid);
    let out = load_tool(a, "h2load")
        .args([
            "--h1",
            "-t1",
            &format!("-c{}", a.connections),
            &format!("--rps={}", rate / f64::from(a.connections)),
            &format!("-D{}", a.duration),
        ])
        .arg(format!("--log-file={}", log.display()))
        .arg(format!("http://127.0.0.1:{port}/"))
        .output()
        .expect("h2load (apt-get install nghttp2-client)");
    let ticks = cpu_ticks(server_pid) - before;
    let text = String::from_utf8_lossy(&out.stdout);
    let rows = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    // Columns: start (µs since epoch), status, µs until the end of the response.
    let mut ms = Vec::new();
    for row in rows.lines() {
        let cols: Vec<&str> = row.split('\t').collect();
        assert_eq!(cols.get(1), Some(&"200"), "a request failed: {row}\n{text}");
        ms.push(cols[2].parse::<f64>().unwrap() / 1000.0);
    }
    assert!(!ms.is_empty(), "h2load logged no requests:\n{text}");
    ms.sort_by(f64::total_cmp);
    let requests = ms.len() as f64;
    Sample {
        p50_ms: quantile(&ms, 0.50),
        p99_ms: quantile(&ms, 0.99),
        rps: requests / f64::from(a.duration),
        requests,
        server_cpu_us: ticks * 10_000.0 / requests,
    }
}

fn wrk(port: u16, server_pid: u32, a: &Args) -> Sample {
    let before = cpu_ticks(server_pid);
    let mut cmd = load_tool(a, "wrk");
    let out = cmd
        .args([
            "-t1",
            &format!("-c{}", a.connections),
            &format!("-d{}s", a.duration),
            "--latency",
        ])
        .arg(format!("http://127.0.0.1:{port}/"))
        .output()
        .expect("wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("no {prefix:?} in wrk output:\n{text}"))
    };
    let ticks = cpu_ticks(server_pid) - before;
    assert!(!text.contains("Non-2xx"), "errors during the run:\n{text}");
    let requests: f64 = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(f64::NAN);
    Sample {
        p50_ms: to_ms(&field("50%")),
        p99_ms: to_ms(&field("99%")),
        rps: field("Requests/sec:").parse().unwrap(),
        requests,
        server_cpu_us: ticks * 10_000.0 / requests,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let a = args();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let wasm = std::env::var_os("PEERAUTH_FILTER_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("out/peerauth_filter.wasm"));
    assert!(
        wasm.is_file(),
        "{} missing: run filter/build.sh",
        wasm.display()
    );
    let dir = std::env::temp_dir().join(format!("peerauth-bench-{}", std::process::id()));
    let pki = MeshPki::generate(&dir.join("pki")).unwrap();
    let server_id = pki.workload("httpbin.foo").unwrap();
    let client_id = pki.workload("sleep.foo").unwrap();
    let config = r#"{"mtls":{"mode":"STRICT"},"allowedTrustDomains":["cluster.local"]}"#;
    let app = a.app.then(|| EchoApp::start().unwrap());
    let upstream = || match &app {
        Some(app) => Upstream::App(app.addr()),
        None => Upstream::Direct,
    };

    let start_pair = |with_filter: bool| -> (Envoy, Envoy, u16) {
        let server_port = free_port().unwrap();
        let server = Sidecar::new("httpbin.foo", server_id, &pki.root, upstream())
            .stats_tags(peerauth_stats_tags())
            .wasm(with_filter.then(|| WasmFilter::http(&wasm, config)))
            .port(server_port, Chains::Both)
            .start(&dir)
            .unwrap();
        let listen = free_port().unwrap();
        let client = ClientSidecar {
            name: "sleep.foo".into(),
            listen,
            server_port,
            identity: Some(client_id.clone()),
            root_ca: pki.root.clone(),
        }
        .start(&dir)
        .unwrap();
        (server, client, listen)
    };
    let (server_without, _client_without, port_without) = start_pair(false);
    let (server_with, _client_with, port_with) = start_pair(true);

    // Warm up both paths (connection pools, VM).
    let warm = Args {
        duration: 2,
        wrk_cpu: a.wrk_cpu.clone(),
        rate: None,
        ..a
    };
    wrk(port_without, server_without.pid(), &warm);
    wrk(port_with, server_with.pid(), &warm);

    let mut without = Vec::new();
    let mut with = Vec::new();
    for round in 0..a.rounds {
        // Alternate which path goes first so drift affects both equally.
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for f in order {
            let s = if f {
                measure(port_with, server_with.pid(), &a)
            } else {
                measure(port_without, server_without.pid(), &a)
            };
            eprintln!("round {round} filter={f}: {s:?}");
            if f {
                with.push(s)
            } else {
                without.push(s)
            }
        }
    }
    let m = |v: &[Sample], f: fn(&Sample) -> f64| median(v.iter().map(f).collect());
    let (p50a, p50b) = (m(&without, |s| s.p50_ms), m(&with, |s| s.p50_ms));
    let (p99a, p99b) = (m(&without, |s| s.p99_ms), m(&with, |s| s.p99_ms));
    let (rpsa, rpsb) = (m(&without, |s| s.rps), m(&with, |s| s.rps));
    let (cpua, cpub) = (
        m(&without, |s| s.server_cpu_us),
        m(&with, |s| s.server_cpu_us),
    );
    let total: f64 = with.iter().chain(&without).map(|s| s.requests).sum();
    let ok = server_with.prometheus().unwrap_or_default();
    let counted = ok
        .lines()
        .filter(|l| l.starts_with("peerauth_requests_total"))
        .collect::<Vec<_>>()
        .join("\n");
    println!("| | without filter | with filter | ratio |");
    println!("|---|---:|---:|---:|");
    println!(
        "| p50 latency (ms) | {p50a:.3} | {p50b:.3} | {:.3} |",
        p50b / p50a
    );
    println!(
        "| p99 latency (ms) | {p99a:.3} | {p99b:.3} | {:.3} |",
        p99b / p99a
    );
    println!(
        "| requests/s{} | {rpsa:.0} | {rpsb:.0} | {:.3} |",
        if a.rate.is_some() { " (offered)" } else { "" },
        rpsb / rpsa
    );
    println!(
        "| server Envoy CPU per request (µs) | {cpua:.1} | {cpub:.1} | {:.3} |",
        cpub / cpua
    );
    println!(
        "| server Envoy RSS (MiB) | {:.1} | {:.1} | |",
        server_without.rss_kib().unwrap_or(0) as f64 / 1024.0,
        server_with.rss_kib().unwrap_or(0) as f64 / 1024.0
    );
    println!(
        "\nmedians of {} interleaved rounds, {} s each, {}; {total:.0} requests measured; upstream: {}; module: {}",
        a.rounds,
        a.duration,
        match a.rate {
            Some(r) => format!("h2load --h1 -t1 -c{} at {r} requests/s in total", a.connections),
            None => format!("wrk -t1 -c{}", a.connections),
        },
        if a.app { "echo app" } else { "direct_response" },
        wasm.display()
    );
    println!("filter counters on the server with the filter:\n{counted}");
    drop((server_with, server_without));
    let _ = std::fs::remove_dir_all(&dir);
}
