//! `cargo run --release -p policy --example timing -- [FILE] [--runs N]`: time
//! each phase of `policy` on one big input and print the medians.
//!
//! Without `FILE` it generates the web page benchmark's input
//! (`tests/browser/bench.mjs`: 1,000 PeerAuthentications over 100 workloads
//! and Services in 10 namespaces), so native and Chromium numbers are about the
//! same text; `node tests/browser/bench.mjs --print-input > /tmp/big.yaml`
//! writes that text for a run with `FILE` (`--print-input` prints the
//! generated text instead of timing anything).
use policy::{Mesh, MeshConfig};
use std::process::ExitCode;
use std::time::{Duration, Instant};

const POLICIES: usize = 1000;
const WORKLOADS: usize = 100;
const NAMESPACES: usize = 10;

/// The same YAML `bench.mjs` generates, byte for byte.
fn generate() -> String {
    let mut docs = Vec::new();
    for n in 0..NAMESPACES {
        let injection = if n == 0 { "disabled" } else { "enabled" };
        docs.push(format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ns{n}\n  labels:\n    istio-injection: {injection}\n"
        ));
    }
    for w in 0..WORKLOADS {
        let ns = w % NAMESPACES;
        let tier = w % 4;
        docs.push(format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app{w}\n  namespace: ns{ns}\nspec:\n  selector:\n    matchLabels:\n      app: app{w}\n  template:\n    metadata:\n      labels:\n        app: app{w}\n        tier: t{tier}\n    spec:\n      containers:\n        - name: main\n          image: example/app\n          ports:\n            - containerPort: 8080\n            - containerPort: 9090\n"
        ));
        docs.push(format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: app{w}\n  namespace: ns{ns}\nspec:\n  selector:\n    app: app{w}\n  ports:\n    - name: http\n      port: 80\n      targetPort: 8080\n"
        ));
    }
    let modes = ["STRICT", "PERMISSIVE", "DISABLE"];
    docs.push("apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: default\n  namespace: istio-system\nspec:\n  mtls:\n    mode: STRICT\n".to_string());
    for n in 0..NAMESPACES {
        docs.push(format!(
            "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: default\n  namespace: ns{n}\nspec:\n  mtls:\n    mode: {}\n",
            modes[n % 2]
        ));
    }
    for p in 0..POLICIES - NAMESPACES - 1 {
        let w = p % WORKLOADS;
        docs.push(format!(
            "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: p{p}\n  namespace: ns{}\n  creationTimestamp: \"2026-01-01T00:{:02}:{:02}Z\"\nspec:\n  selector:\n    matchLabels:\n      app: app{w}\n  mtls:\n    mode: {}\n  portLevelMtls:\n    9090:\n      mode: {}\n",
            w % NAMESPACES,
            (p / 60) % 60,
            p % 60,
            modes[p % 3],
            modes[(p + 1) % 3]
        ));
    }
    docs.join("---\n")
}

/// `median (min)` of the runs, in milliseconds.
fn stats(mut xs: Vec<Duration>) -> String {
    xs.sort_unstable();
    let ms = |d: Option<&Duration>| d.map_or(0.0, |d| d.as_secs_f64() * 1000.0);
    format!(
        "{:8.2} ms  (min {:.2} ms)",
        ms(xs.get(xs.len() / 2)),
        ms(xs.first())
    )
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut path = None;
    let mut runs = 9usize;
    while let Some(arg) = args.next() {
        if arg == "--print-input" {
            print!("{}", generate());
            return ExitCode::SUCCESS;
        } else if arg == "--runs" {
            match args.next().and_then(|n| n.parse().ok()) {
                Some(n) if n > 0 => runs = n,
                _ => {
                    eprintln!("--runs needs a positive number");
                    return ExitCode::from(2);
                }
            }
        } else {
            path = Some(arg);
        }
    }
    let (name, text) = match path {
        Some(path) => match std::fs::read_to_string(&path) {
            Ok(text) => (path, text),
            Err(e) => {
                eprintln!("{path}: {e}");
                return ExitCode::from(2);
            }
        },
        None => ("generated.yaml".to_string(), generate()),
    };
    let config = MeshConfig::default();

    let mut load = Vec::new();
    let mut build = Vec::new();
    let mut check = Vec::new();
    let mut describe = Vec::new();
    let mut reach_describe = Vec::new();
    let mut matrix = Vec::new();
    let mut sizes = (0, 0, 0, 0, 0);
    for _ in 0..runs {
        let t = Instant::now();
        let loaded = policy::source::load(&text, &name);
        load.push(t.elapsed());

        let t = Instant::now();
        let (mesh, _) = Mesh::build(&loaded.resources, config.clone());
        build.push(t.elapsed());
        drop(mesh);

        let t = Instant::now();
        let report = policy::check(&[(name.as_str(), text.as_str())], config.clone());
        check.push(t.elapsed());

        let mesh = &report.mesh;
        let t = Instant::now();
        let reports: Vec<_> = mesh.workloads.iter().map(|w| mesh.describe(w)).collect();
        describe.push(t.elapsed());

        let t = Instant::now();
        let reach = mesh.reach();
        let again: Vec<_> = mesh.workloads.iter().map(|w| reach.describe(w)).collect();
        reach_describe.push(t.elapsed());
        if reports != again {
            eprintln!("Reach::describe and Mesh::describe disagree");
            return ExitCode::from(1);
        }

        let t = Instant::now();
        let cells = mesh.matrix().cells.len();
        matrix.push(t.elapsed());

        sizes = (
            loaded.resources.len(),
            mesh.peer_authentications.len(),
            reports.len(),
            cells,
            report.diagnostics.len(),
        );
    }
    let (resources, policies, workloads, cells, diagnostics) = sizes;
    println!(
        "input: {name}, {} KiB, {resources} resources, {policies} PeerAuthentications, {workloads} workloads; {diagnostics} diagnostics, {cells} matrix cells",
        text.len() / 1024
    );
    println!("median (and min) of {runs} runs:");
    println!("  source::load            {}", stats(load));
    println!("  Mesh::build             {}", stats(build));
    println!("  policy::check (all)     {}", stats(check));
    println!("  Mesh::describe × {workloads:<4}   {}", stats(describe));
    println!(
        "  Reach::describe × {workloads:<4}  {}",
        stats(reach_describe)
    );
    println!("  Mesh::matrix            {}", stats(matrix));
    ExitCode::SUCCESS
}
