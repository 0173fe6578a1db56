//! `peerauth lab`: the user's own manifests in the local pod-faithful mesh
//! ([`peerauth_lab`]): one network-namespace pod per workload with Istio's capture
//! and an istiod-shaped Envoy where injection puts one, a stand-in app on every
//! declared container port, the peerauth filter where its WasmPlugins put it; then
//! calls, each observed result printed next to `policy`'s prediction.
//!
//! The stand-in app is this same executable, run in each pod as the hidden
//! subcommand [`APP_SUBCOMMAND`] ([`std::env::current_exe`]): one binary to install,
//! no second program to find on `PATH` or next to it, and the app is always the
//! version the lab was built with.

use crate::{EXIT_FINDINGS, EXIT_INPUT, EXIT_OK};
use clap::Args;
use peerauth_lab::call::ServiceCall;
use peerauth_lab::istiod::{self, WasmPlugin};
use peerauth_lab::pods::{LabConfig, PodLab};
use peerauth_lab::probe::{self, Inbound, Observation, Seen};
use peerauth_lab::topology::{Protocol, Topology};
use peerauth_lab::{load, node, LabError};
use policy::mesh::Mesh;
use serde::Serialize;
use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Set by the Ctrl-C handler before it tears the lab down: the calls it cuts short
/// then fail, and the run must end as interrupted (130), not as a lab error (2).
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// The exit code after Ctrl-C, SIGTERM or SIGHUP (128 + SIGINT, as shells report it).
pub const EXIT_INTERRUPTED: u8 = 130;

/// The hidden subcommand that serves the stand-in app in a pod.
pub const APP_SUBCOMMAND: &str = "__lab-app";

/// At most this many pods with a sidecar. Each is a real Envoy that compiles the
/// filter with V8 on start and holds tens of MB; on a 2-core machine the lab waits
/// up to 90 s for all of them to be ready, and this many stay well inside it.
pub const MAX_SIDECARS: usize = 24;
/// At most this many calls in one run (the full matrix included): every call is one
/// or two curl processes in a pod with a 10 s cap each, so this bounds a run to
/// minutes even when many calls hang until their cap.
pub const MAX_CALLS: usize = 400;

#[derive(Debug, Args)]
pub struct LabArgs {
    /// Manifests to run: files or folders (searched for *.yaml, *.yml, *.json), as
    /// `kubectl apply -f` takes them: Namespaces with their injection labels,
    /// Deployments/Pods, Services, PeerAuthentications, DestinationRules, WasmPlugins.
    #[arg(short = 'f', long = "filename", required = true, value_name = "PATH")]
    pub files: Vec<PathBuf>,
    /// A call to run instead of the full client × Service-port matrix (repeatable):
    /// `NS/WORKLOAD -> SERVICE.NS:PORT` goes through the client's sidecar (if it has
    /// one); `plaintext|mtls|tls NS/WORKLOAD:PORT [from NS/WORKLOAD]` goes straight to
    /// the pod's container port, bypassing any client sidecar (mtls: the calling pod's
    /// mesh certificate and Istio's ALPN; tls: no client certificate).
    #[arg(long = "call", value_name = "CALL")]
    pub calls: Vec<String>,
    /// Print one JSON document instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Leave the lab running afterwards and print how to reach each pod and how to
    /// remove it.
    #[arg(long)]
    pub keep: bool,
    /// The peerauth filter module for the manifests' peerauth WasmPlugins
    /// [default: $PEERAUTH_FILTER_WASM, else out/peerauth_filter.wasm in the
    /// repository this binary was built from, else ./out/peerauth_filter.wasm].
    #[arg(long, value_name = "PATH")]
    pub wasm: Option<PathBuf>,
}

/// Arguments of the hidden app subcommand, passed to [`peerauth_lab::app::run`].
#[derive(Debug, Args)]
pub struct LabAppArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// One call to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum CallSpec {
    /// Through the client's sidecar.
    Service {
        client: String,
        service: String,
        port: u16,
    },
    /// Straight to a pod port.
    Inbound {
        tls: Inbound,
        from: Option<String>,
        pod: String,
        port: u16,
    },
}

impl std::fmt::Display for CallSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallSpec::Service {
                client,
                service,
                port,
            } => write!(f, "{} -> {service}:{port}", slash(client)),
            CallSpec::Inbound {
                tls,
                from,
                pod,
                port,
            } => {
                write!(f, "{} {}:{port}", tls.as_str(), slash(pod))?;
                if let Some(from) = from {
                    write!(f, " from {}", slash(from))?;
                }
                Ok(())
            }
        }
    }
}

/// `name.ns` (a pod key) as `ns/name`.
fn slash(key: &str) -> String {
    match key.split_once('.') {
        Some((name, ns)) => format!("{ns}/{name}"),
        None => key.to_string(),
    }
}

/// `ns/name` to the pod key `name.ns`.
fn pod_key(spec: &str) -> Result<String, String> {
    match spec.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok(format!("{name}.{ns}"))
        }
        _ => Err(format!("{spec:?}: name a workload as NAMESPACE/NAME")),
    }
}

fn port_of(text: &str, what: &str) -> Result<u16, String> {
    text.parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("{what}: {text:?} is not a port number"))
}

/// Parse one `--call`. `Err` is a one-line message saying what is wrong.
pub fn parse_call(text: &str) -> Result<CallSpec, String> {
    let bad = |why: String| format!("--call {text:?}: {why}");
    if let Some((client, target)) = text.split_once("->") {
        let client = pod_key(client.trim()).map_err(bad)?;
        let (host, port) = target
            .trim()
            .rsplit_once(':')
            .ok_or_else(|| bad("the target needs a port: SERVICE.NAMESPACE:PORT".into()))?;
        let port = port_of(port, "the Service port").map_err(bad)?;
        let host = host
            .trim_end_matches(".cluster.local")
            .trim_end_matches(".svc");
        let (name, ns) = host
            .split_once('.')
            .filter(|(n, ns)| !n.is_empty() && !ns.is_empty() && !ns.contains('.'))
            .ok_or_else(|| bad("name the Service as SERVICE.NAMESPACE".into()))?;
        return Ok(CallSpec::Service {
            client,
            service: format!("{name}.{ns}"),
            port,
        });
    }
    let words: Vec<&str> = text.split_whitespace().collect();
    let (kind, rest) = words
        .split_first()
        .ok_or_else(|| bad("empty; see `peerauth lab --help`".into()))?;
    let tls = match *kind {
        "plaintext" => Inbound::Plaintext,
        "mtls" => Inbound::Mtls,
        "tls" => Inbound::Tls,
        other => {
            return Err(bad(format!(
                "{other:?} is neither CLIENT -> SERVICE:PORT nor plaintext, mtls or tls"
            )))
        }
    };
    let (target, from) = match rest {
        [target] => (*target, None),
        [target, "from", from] => (*target, Some(pod_key(from).map_err(bad)?)),
        _ => {
            return Err(bad(
                "write plaintext|mtls|tls NAMESPACE/WORKLOAD:PORT [from NAMESPACE/WORKLOAD]".into(),
            ))
        }
    };
    let (pod, port) = target
        .rsplit_once(':')
        .ok_or_else(|| bad("the pod needs a port: NAMESPACE/WORKLOAD:PORT".into()))?;
    Ok(CallSpec::Inbound {
        tls,
        from,
        pod: pod_key(pod).map_err(bad)?,
        port: port_of(port, "the container port").map_err(bad)?,
    })
}

/// What one call did and what `policy` says it does.
#[derive(Debug, Clone, Serialize)]
pub struct CallReport {
    pub call: String,
    pub spec: CallSpec,
    /// The pod the call ran in.
    pub from: String,
    pub observed: Seen,
    pub command: String,
    pub detail: String,
    pub predicted: Seen,
    pub explanation: String,
    pub agrees: bool,
}

/// The whole run, as `--json` prints it.
#[derive(Debug, Serialize)]
pub struct LabReport {
    /// The lab's id (`palab-<pid>-<n>`): every name it created starts with it.
    pub lab: String,
    pub pods: Vec<PodInfo>,
    pub plugins: Vec<String>,
    pub calls: Vec<CallReport>,
    pub agree: usize,
    pub total: usize,
    /// With `--keep`: how to reach the pods and remove the lab.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kept: Option<Kept>,
}

#[derive(Debug, Serialize)]
pub struct PodInfo {
    pub pod: String,
    pub ip: String,
    pub sidecar: bool,
    pub ports: Vec<u16>,
}

#[derive(Debug, Serialize)]
pub struct Kept {
    pub id: String,
    /// `ns/name` → a command that runs curl inside that pod.
    pub reach: Vec<(String, String)>,
    pub teardown: String,
}

#[derive(Debug, thiserror::Error)]
enum Problem {
    #[error("{0}")]
    Input(String),
    #[error("{0}")]
    Lab(#[from] LabError),
}

/// The module for the manifests' peerauth WasmPlugins: `--wasm`, else
/// `$PEERAUTH_FILTER_WASM`, else `out/peerauth_filter.wasm` of the repository this
/// binary was built in, else of the current folder.
fn filter_module(args: &LabArgs) -> PathBuf {
    if let Some(w) = &args.wasm {
        return w.clone();
    }
    if let Some(w) = std::env::var_os("PEERAUTH_FILTER_WASM") {
        return PathBuf::from(w);
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../out/peerauth_filter.wasm");
    if repo.is_file() {
        return repo;
    }
    PathBuf::from("out/peerauth_filter.wasm")
}

/// Run `peerauth lab`: exit 0 when every call agrees with `policy`, 1 on a
/// disagreement, 2 when the lab cannot run or the input is bad.
pub fn run(
    args: &LabArgs,
    stdin: &mut dyn Read,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<u8> {
    let calls = match args
        .calls
        .iter()
        .map(|c| parse_call(c))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(c) => c,
        Err(e) => {
            writeln!(err, "peerauth lab: {e}")?;
            return Ok(EXIT_INPUT);
        }
    };
    let read = crate::input::collect(&args.files, stdin);
    if let Some(p) = read.problems.first() {
        writeln!(err, "peerauth lab: {}", p.message)?;
        return Ok(EXIT_INPUT);
    }
    if read.sources.is_empty() {
        writeln!(err, "peerauth lab: no manifests in {:?}", args.files)?;
        return Ok(EXIT_INPUT);
    }
    // Nothing is created before this passes.
    if let Err(e) = node::preflight() {
        writeln!(err, "peerauth lab: {e}")?;
        return Ok(EXIT_INPUT);
    }
    let direct_tls = calls
        .iter()
        .any(|c| matches!(c, CallSpec::Inbound { tls, .. } if *tls != Inbound::Plaintext));
    let path = std::env::var_os("PATH").unwrap_or_default();
    // node::preflight checks what the network needs; the calls need curl too.
    if node::find_on_path("curl", &path).is_none() {
        writeln!(
            err,
            "peerauth lab: curl not found: every call runs curl in a pod; apt-get install curl"
        )?;
        return Ok(EXIT_INPUT);
    }
    if direct_tls && node::find_on_path("openssl", &path).is_none() {
        writeln!(
            err,
            "peerauth lab: openssl not found: mtls and tls calls use openssl s_client; apt-get install openssl"
        )?;
        return Ok(EXIT_INPUT);
    }
    // The handler only tears down: this thread holds the stderr lock for the whole run
    // (`main`), so it says so and exits with 130 once the cut-short calls return.
    // Should this thread be stuck, the handler exits on its own after a grace period.
    if let Err(e) = ctrlc::set_handler(|| {
        INTERRUPTED.store(true, Ordering::SeqCst);
        node::teardown_all();
        std::thread::sleep(Duration::from_secs(5));
        std::process::exit(i32::from(EXIT_INTERRUPTED));
    }) {
        writeln!(err, "peerauth lab: installing the signal handler: {e}")?;
        return Ok(EXIT_INPUT);
    }
    let result = lab(args, &read.sources, calls, err);
    if INTERRUPTED.load(Ordering::SeqCst) {
        // Waits for the handler's teardown to finish.
        node::teardown_all();
        writeln!(
            err,
            "\npeerauth lab: interrupted; removed every pod, rule, file and process the lab had created"
        )?;
        return Ok(EXIT_INTERRUPTED);
    }
    match result {
        Ok(report) => {
            if args.json {
                serde_json::to_writer_pretty(&mut *out, &report).map_err(io::Error::other)?;
                writeln!(out)?;
            } else {
                human(&report, out)?;
            }
            Ok(if report.agree == report.total {
                EXIT_OK
            } else {
                EXIT_FINDINGS
            })
        }
        Err(e) => {
            node::teardown_all();
            writeln!(err, "peerauth lab: {e}")?;
            Ok(EXIT_INPUT)
        }
    }
}

fn peerauth_plugins(
    sources: &[(String, String)],
    err: &mut dyn Write,
) -> Result<Vec<WasmPlugin>, Problem> {
    let mut out = Vec::new();
    for (name, text) in sources {
        if !text.contains("WasmPlugin") {
            continue;
        }
        let plugins = istiod::wasm_plugins(name, text).map_err(LabError::from)?;
        for p in plugins {
            if p.url.contains("peerauth") {
                out.push(p);
            } else {
                let _ = writeln!(
                    err,
                    "peerauth lab: WasmPlugin {}/{} ({}) is not the peerauth filter; the lab runs only that one and leaves this out",
                    p.namespace, p.name, p.url
                );
            }
        }
    }
    Ok(out)
}

fn progress(err: &mut dyn Write, json: bool, text: &str) {
    if !json {
        let _ = writeln!(err, "{text}");
    }
}

fn lab(
    args: &LabArgs,
    sources: &[(String, String)],
    calls: Vec<CallSpec>,
    err: &mut dyn Write,
) -> Result<LabReport, Problem> {
    let mesh = load::mesh_of(sources)?;
    let documents = load::documents(sources)?;
    let plugins = peerauth_plugins(sources, err)?;
    let topology = Topology::from_mesh(&mesh, &documents).map_err(LabError::from)?;
    let sidecars = topology.pods.iter().filter(|p| p.sidecar).count();
    if sidecars > MAX_SIDECARS {
        return Err(Problem::Input(format!(
            "the manifests describe {sidecars} pods with a sidecar; the lab runs at most {MAX_SIDECARS} (each is a real Envoy on this machine): pass a smaller folder or fewer files"
        )));
    }
    let calls = if calls.is_empty() {
        matrix(&topology)
    } else {
        calls
    };
    if calls.len() > MAX_CALLS {
        return Err(Problem::Input(format!(
            "{} calls; the lab runs at most {MAX_CALLS} in one run (each is a curl in a pod with a 10 s cap): use --call, or fewer workloads",
            calls.len()
        )));
    }
    if calls.is_empty() {
        return Err(Problem::Input(
            "nothing to call: the manifests have no Service port with an endpoint pod; add Services or pass --call".into(),
        ));
    }
    // Every call names things the manifests have, before anything is created.
    for spec in &calls {
        check_call(&topology, spec)?;
        if let CallSpec::Inbound { pod, port, .. } = spec {
            let declared = topology
                .pods
                .iter()
                .any(|p| p.key() == *pod && p.container_ports.contains(port));
            if !declared {
                let _ = writeln!(
                    err,
                    "peerauth lab: note: {} declares no container port {port}, so no app listens there; policy does not know that",
                    slash(pod)
                );
            }
        }
    }
    let wasm = filter_module(args);
    if !plugins.is_empty() && !wasm.is_file() {
        return Err(Problem::Input(format!(
            "the manifests have peerauth WasmPlugins but there is no filter module at {}: run `make build-filter`, or pass --wasm PATH",
            wasm.display()
        )));
    }
    let exe = std::env::current_exe().map_err(|e| {
        Problem::Input(format!(
            "cannot find this executable to run the stand-in app: {e}"
        ))
    })?;
    let config = LabConfig {
        repo: std::env::current_dir().unwrap_or_default(),
        wasm,
        app: exe,
        app_args: vec![OsString::from(APP_SUBCOMMAND)],
    };
    progress(
        err,
        args.json,
        &format!(
            "peerauth lab: {} pods ({sidecars} with a sidecar), {} Services, {} peerauth WasmPlugins; creating the pods…",
            topology.pods.len(),
            topology.services.len(),
            plugins.len()
        ),
    );
    let mut pod_lab = PodLab::create(config, &mesh, &documents)?;
    progress(err, args.json, "starting the sidecars…");
    pod_lab.configure(&mesh, &plugins, &[])?;
    progress(err, args.json, &format!("running {} calls…", calls.len()));
    let mut reports = Vec::new();
    for spec in calls {
        let report = run_call(&pod_lab, &mesh, spec)?;
        reports.push(report);
    }
    pod_lab.check_alive()?;
    let pods = pod_lab
        .topology()
        .pods
        .iter()
        .map(|p| PodInfo {
            pod: slash(&p.key()),
            ip: p.ip.to_string(),
            sidecar: p.sidecar,
            ports: p.container_ports.clone(),
        })
        .collect();
    let lab_id = pod_lab.node().id().to_string();
    let kept = if args.keep {
        let reach = reach_commands(&pod_lab);
        let k = pod_lab.keep();
        Some(Kept {
            id: k.id,
            reach,
            teardown: k.teardown,
        })
    } else {
        None
    };
    let agree = reports.iter().filter(|r| r.agrees).count();
    Ok(LabReport {
        lab: lab_id,
        pods,
        plugins: plugins
            .iter()
            .map(|p| format!("{}/{}", p.namespace, p.name))
            .collect(),
        total: reports.len(),
        agree,
        calls: reports,
        kept,
    })
}

/// `ip netns exec <netns> curl …` for each pod: towards a Service port it is not
/// itself behind, else another pod's first port, else its own app on loopback.
fn reach_commands(lab: &PodLab) -> Vec<(String, String)> {
    let topology = lab.topology();
    topology
        .pods
        .iter()
        .filter_map(|p| {
            let netns = lab.node().netns(&p.key())?;
            let service = topology.services.iter().find_map(|s| {
                s.ports.iter().find_map(|sp| {
                    let e = s.endpoints(topology, sp.port);
                    (!e.is_empty() && e.iter().all(|e| e.pod.key() != p.key()))
                        .then(|| format!("http://{}.{}:{}/ip", s.name, s.namespace, sp.port))
                })
            });
            let other = || {
                topology.pods.iter().find_map(|o| {
                    (o.key() != p.key())
                        .then(|| {
                            o.container_ports
                                .first()
                                .map(|port| format!("http://{}:{port}/ip", o.ip))
                        })
                        .flatten()
                })
            };
            let own = || {
                p.container_ports
                    .first()
                    .map(|port| format!("http://127.0.0.1:{port}/ip"))
            };
            let url = service.or_else(other).or_else(own)?;
            Some((
                slash(&p.key()),
                format!("ip netns exec {netns} curl -s {url}"),
            ))
        })
        .collect()
}

/// Every pod × every Service port that has an endpoint pod declaring the target port,
/// through the caller's sidecar. Left out: ports whose endpoints declare no such
/// container port (no app listens there, in the lab as in a cluster where nothing
/// binds it, so the call says nothing about policy), and a pod calling a Service it
/// is itself behind (kube-proxy masquerades that hairpin; the lab's node does not).
fn matrix(topology: &Topology) -> Vec<CallSpec> {
    let mut out = Vec::new();
    for client in &topology.pods {
        for s in &topology.services {
            for p in &s.ports {
                let endpoints = s.endpoints(topology, p.port);
                let listening = endpoints
                    .iter()
                    .any(|e| e.pod.container_ports.contains(&e.port));
                let hairpin = endpoints.iter().any(|e| e.pod.key() == client.key());
                if !listening || hairpin {
                    continue;
                }
                out.push(CallSpec::Service {
                    client: client.key(),
                    service: format!("{}.{}", s.name, s.namespace),
                    port: p.port,
                });
            }
        }
    }
    out
}

fn run_call(lab: &PodLab, mesh: &Mesh, spec: CallSpec) -> Result<CallReport, Problem> {
    let topology = lab.topology();
    let (from, observation, predicted, explanation): (String, Observation, Seen, String) =
        match &spec {
            CallSpec::Service {
                client,
                service,
                port,
            } => {
                lab.pod(client)?;
                let (name, ns) = service.split_once('.').unwrap_or((service, "default"));
                let cs = topology.service(name, ns).ok_or_else(|| {
                    Problem::Input(format!(
                        "no Service {name} in namespace {ns} in the manifests"
                    ))
                })?;
                let sp = cs.ports.iter().find(|p| p.port == *port).ok_or_else(|| {
                    Problem::Input(format!("Service {service} has no port {port}"))
                })?;
                let endpoints: Vec<String> = cs
                    .endpoints(topology, *port)
                    .iter()
                    .filter(|e| e.pod.sidecar)
                    .map(|e| e.pod.key())
                    .collect();
                let tcp = (sp.protocol == Protocol::Tcp).then_some(endpoints.as_slice());
                let call = ServiceCall {
                    client: client.clone(),
                    service: service.clone(),
                    port: *port,
                };
                let observed = probe::service_call(lab, &call, tcp)?;
                let (predicted, explanation) = predict_service(mesh, &call)?;
                (client.clone(), observed, predicted, explanation)
            }
            CallSpec::Inbound {
                tls,
                from,
                pod,
                port,
            } => {
                let target = lab.pod(pod)?.clone();
                let from = match from {
                    Some(f) => {
                        lab.pod(f)?;
                        f.clone()
                    }
                    None => default_caller(topology, pod, *tls)?,
                };
                let alpn = match port_protocol(topology, pod, *port) {
                    Protocol::Tcp => "istio",
                    _ => "istio-http/1.1",
                };
                let observed = probe::inbound_call(lab, &from, *tls, pod, *port, alpn)?;
                let mode = port_mode(mesh, &target.name, &target.namespace, *port)?;
                let predicted = probe::predict_inbound(*tls, target.sidecar, mode);
                let explanation = if target.sidecar {
                    format!(
                        "{} port {port} resolves to {mode}; a {} call there: {predicted}",
                        slash(pod),
                        tls.as_str()
                    )
                } else {
                    format!(
                        "{} has no sidecar: the app answers plaintext only",
                        slash(pod)
                    )
                };
                (from, observed, predicted, explanation)
            }
        };
    let agrees = observation.seen.agrees(&predicted);
    Ok(CallReport {
        call: spec.to_string(),
        spec,
        from: slash(&from),
        observed: observation.seen,
        command: observation.command,
        detail: observation.detail,
        predicted,
        explanation,
        agrees,
    })
}

/// `Err` when `spec` names a pod, Service or port the topology lacks, or an inbound
/// call has no pod to run in.
fn check_call(topology: &Topology, spec: &CallSpec) -> Result<(), Problem> {
    let pod = |key: &str| {
        topology
            .pods
            .iter()
            .find(|p| p.key() == key)
            .map(|_| ())
            .ok_or_else(|| Problem::Input(format!("no workload {} in the manifests", slash(key))))
    };
    match spec {
        CallSpec::Service {
            client,
            service,
            port,
        } => {
            pod(client)?;
            let (name, ns) = service.split_once('.').unwrap_or((service, "default"));
            let s = topology.service(name, ns).ok_or_else(|| {
                Problem::Input(format!(
                    "no Service {name} in namespace {ns} in the manifests"
                ))
            })?;
            if !s.ports.iter().any(|p| p.port == *port) {
                return Err(Problem::Input(format!(
                    "Service {service} has no port {port}"
                )));
            }
        }
        CallSpec::Inbound {
            tls,
            from,
            pod: target,
            ..
        } => {
            pod(target)?;
            match from {
                Some(f) => pod(f)?,
                None => drop(default_caller(topology, target, *tls)?),
            }
        }
    }
    Ok(())
}

/// `policy`'s cell for a call through the client's sidecar, in the same terms.
fn predict_service(mesh: &Mesh, call: &ServiceCall) -> Result<(Seen, String), Problem> {
    let p = peerauth_lab::predict::predict(mesh, call)?;
    let (name, ns) = call.service_name();
    let client = call
        .client
        .split_once('.')
        .unwrap_or((&call.client, "default"));
    let w = mesh
        .workloads
        .iter()
        .find(|w| w.name == client.0 && w.namespace == client.1);
    let s = mesh
        .services
        .iter()
        .find(|s| s.name == name && s.namespace == ns);
    let cell = match (w, s) {
        (Some(w), Some(s)) => mesh.connect(w, s, call.port),
        _ => None,
    };
    let seen = match cell {
        Some(c) => Seen::from_outcome(c.outcome, c.mtls),
        None => Seen::Reset,
    };
    Ok((seen, p.explanation))
}

/// The caller of an inbound call: the first other pod with a sidecar (it has a mesh
/// certificate for `mtls`), else, for plaintext and tls, the first other pod.
fn default_caller(topology: &Topology, target: &str, tls: Inbound) -> Result<String, Problem> {
    let others = || topology.pods.iter().filter(|p| p.key() != target);
    others()
        .find(|p| p.sidecar)
        .or_else(|| (tls != Inbound::Mtls).then(|| others().next()).flatten())
        .map(|p| p.key())
        .ok_or_else(|| {
            Problem::Input(format!(
                "no pod to call {} from: an inbound call runs in another pod ({}); add a client Deployment",
                slash(target),
                if tls == Inbound::Mtls {
                    "one with a sidecar, for its mesh certificate"
                } else {
                    "any"
                }
            ))
        })
}

/// The protocol of the Service port that targets `pod`'s container `port` (auto when
/// no Service does).
fn port_protocol(topology: &Topology, pod: &str, port: u16) -> Protocol {
    for s in &topology.services {
        for p in &s.ports {
            if s.endpoints(topology, p.port)
                .iter()
                .any(|e| e.pod.key() == pod && e.port == port)
            {
                return p.protocol;
            }
        }
    }
    Protocol::Auto
}

/// The mode `policy` resolves for `port` of a workload (its workload-level mode for a
/// port no policy names).
fn port_mode(mesh: &Mesh, name: &str, ns: &str, port: u16) -> Result<policy::MtlsMode, Problem> {
    let w = mesh
        .workloads
        .iter()
        .find(|w| w.name == name && w.namespace == ns)
        .ok_or_else(|| Problem::Input(format!("no workload {ns}/{name} in the manifests")))?;
    let d = mesh.reach().describe(w);
    Ok(d.ports
        .get(&u32::from(port))
        .map_or(d.workload.mode, |r| r.mode))
}

fn human(report: &LabReport, out: &mut dyn Write) -> io::Result<()> {
    let width = report
        .calls
        .iter()
        .map(|c| c.call.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let seen_width = report
        .calls
        .iter()
        .map(|c| c.observed.to_string().len())
        .max()
        .unwrap_or(8)
        .max(8);
    let policy_width = report
        .calls
        .iter()
        .map(|c| c.predicted.to_string().len())
        .max()
        .unwrap_or(6)
        .max(6);
    writeln!(
        out,
        "{:width$}  {:seen_width$}  {:policy_width$}",
        "CALL", "OBSERVED", "POLICY"
    )?;
    for c in &report.calls {
        let mark = if c.agrees {
            "✓"
        } else {
            "✗ differs from policy"
        };
        writeln!(
            out,
            "{:width$}  {:seen_width$}  {:policy_width$}  {mark}",
            c.call,
            c.observed.to_string(),
            c.predicted.to_string()
        )?;
        if !c.agrees {
            writeln!(out, "    ran in {}: {} ({})", c.from, c.command, c.detail)?;
            writeln!(out, "    policy: {}", c.explanation)?;
        }
    }
    writeln!(
        out,
        "summary: {}/{} calls agree with policy",
        report.agree, report.total
    )?;
    if let Some(k) = &report.kept {
        writeln!(
            out,
            "\nthe lab {} is still running; reach a pod with:",
            k.id
        )?;
        for (pod, cmd) in &k.reach {
            writeln!(out, "  {pod}: {cmd}")?;
        }
        writeln!(out, "remove it with: {}", k.teardown)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn calls_are_read_as_istios_simulation_names_them() {
        assert_eq!(
            parse_call("foo/sleep -> httpbin.bar:8000").unwrap(),
            CallSpec::Service {
                client: "sleep.foo".into(),
                service: "httpbin.bar".into(),
                port: 8000
            }
        );
        assert_eq!(
            parse_call("foo/sleep->httpbin.bar.svc.cluster.local:8000").unwrap(),
            parse_call("foo/sleep -> httpbin.bar:8000").unwrap()
        );
        assert_eq!(
            parse_call("mtls foo/httpbin:80 from bar/sleep").unwrap(),
            CallSpec::Inbound {
                tls: Inbound::Mtls,
                from: Some("sleep.bar".into()),
                pod: "httpbin.foo".into(),
                port: 80
            }
        );
        assert_eq!(
            parse_call("plaintext foo/httpbin:80").unwrap().to_string(),
            "plaintext foo/httpbin:80"
        );
        for bad in [
            "",
            "foo/sleep -> httpbin:8000",
            "foo/sleep -> httpbin.bar",
            "sleep -> httpbin.bar:80",
            "ssl foo/httpbin:80",
            "tls foo/httpbin",
            "tls foo/httpbin:http",
            "tls foo/httpbin:80 via bar/sleep",
        ] {
            let e = parse_call(bad).unwrap_err();
            assert!(e.starts_with("--call"), "{e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }
}
