//! The seed lab on one machine: real Envoys, real mTLS, real requests, compared cell by
//! cell with what `policy` predicts.
//!
//! For each step, `policy` builds the mesh from `manifests/workloads` plus the step's
//! files and answers what istiod would configure: the inbound mode of every httpbin
//! port ([`policy::Mesh::describe`]) and what each sleep's sidecar sends to each httpbin
//! ([`policy::Mesh::connect`]). The lab then configures Envoys exactly that way — a
//! server sidecar per injected httpbin with the chains of its mode and the filter loaded
//! as the step's WasmPlugin would load it, a client sidecar per injected sleep with one
//! outbound cluster per httpbin — and sends the requests.
//!
//! Loopback has no iptables redirect and no pod IPs, so each httpbin's container port 80
//! is served on its own free port P. The filter decides by `destination.port`, so the
//! port keys of the pluginConfig handed to it are renamed 80 → P: what the redirect
//! would have preserved.

use crate::app::EchoApp;
use crate::demo::crd;
use crate::envoy::{self, Chains, Sidecar, Upstream, WasmFilter};
use crate::pki::{MeshPki, PkiError, WorkloadFiles};
use peerauth_filter::config::Config;
use policy::mesh::{Mesh, Workload};
use policy::reach::{ClientTls, Outcome};
use policy::{MeshConfig, MtlsMode, Severity};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The namespaces of the seed lab, in display order.
pub const NAMESPACES: [&str; 3] = ["foo", "bar", "legacy"];
/// httpbin's container port, the one PeerAuthentication and WasmPlugin name.
pub const CONTAINER_PORT: u32 = 80;
/// httpbin's Service port, the one DestinationRules name.
pub const SERVICE_PORT: u16 = 8000;

/// Why the lab could not run (as opposed to a cell that disagrees).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LabError {
    #[error("{path}: {message}")]
    Manifest { path: String, message: String },
    #[error("the peerauth filter is not built at {0}: run `make build-filter` first")]
    NoFilter(PathBuf),
    #[error("envoy is not on PATH (or $ENVOY_BIN): run `make setup`")]
    NoEnvoy,
    #[error("envoy {name} did not start ({why}); its log ends with:\n{log}")]
    EnvoyNotReady {
        name: String,
        why: String,
        log: String,
    },
    #[error("a thread starting an Envoy panicked; see the message above")]
    StartPanicked,
    #[error("{0}")]
    Pki(#[from] PkiError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("policy rejects the lab's manifests: {0}")]
    Policy(String),
    #[error("the lab needs {0} in manifests/workloads")]
    Missing(String),
    #[error("the filter refuses the pluginConfig the lab built for {workload}: {message}")]
    PluginConfig { workload: String, message: String },
}

// ---- Envoy processes ------------------------------------------------------------------

static PIDS: Mutex<Vec<u32>> = Mutex::new(Vec::new());
static LABS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

static STOPPING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Every Envoy the lab is running right now (the demo's signal handler stops them).
pub fn started_pids() -> Vec<u32> {
    PIDS.lock().map(|p| p.clone()).unwrap_or_default()
}

/// Stop every Envoy the lab started and refuse to start more: for a signal handler,
/// which runs while other threads may be starting Envoys. Signals twice, because a
/// start that raced the first pass registers its pid just after it.
pub fn stop_all() {
    STOPPING.store(true, std::sync::atomic::Ordering::SeqCst);
    for _ in 0..2 {
        for pid in started_pids() {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// An Envoy the lab started; killed when dropped. It wraps [`envoy::Envoy`] to keep its
/// pid in `PIDS` while it runs, so Ctrl-C can stop every Envoy the lab started.
pub struct LabEnvoy(envoy::Envoy);

impl std::ops::Deref for LabEnvoy {
    type Target = envoy::Envoy;
    fn deref(&self) -> &envoy::Envoy {
        &self.0
    }
}

impl LabEnvoy {
    /// Start Envoy with `bootstrap` and wait until its admin says LIVE and every port in
    /// `ports` accepts connections (30 s at most).
    pub fn start(
        name: &str,
        dir: &Path,
        bootstrap: &Value,
        admin_port: u16,
        ports: &[u16],
    ) -> Result<LabEnvoy, LabError> {
        let not_ready = |why: String| LabError::EnvoyNotReady {
            name: name.to_string(),
            why,
            log: String::new(),
        };
        let inner = envoy::Envoy::spawn(name, dir, bootstrap, admin_port, "warning")
            .map_err(|e| not_ready(e.to_string()))?;
        if let Ok(mut pids) = PIDS.lock() {
            pids.push(inner.pid());
        }
        let mut envoy = LabEnvoy(inner);
        if STOPPING.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(not_ready("the lab is stopping".into()));
        }
        match envoy.0.wait_ready(ports, Duration::from_secs(30)) {
            Ok(()) => Ok(envoy),
            Err(_) => Err(LabError::EnvoyNotReady {
                name: name.to_string(),
                why: "it exited or was not ready after 30 s".into(),
                log: envoy.log_tail(20),
            }),
        }
    }
}

impl Drop for LabEnvoy {
    fn drop(&mut self) {
        let pid = self.0.pid();
        if let Ok(mut pids) = PIDS.lock() {
            pids.retain(|p| *p != pid);
        }
    }
}

// ---- steps ---------------------------------------------------------------------------

/// One seed lab step as read from `manifests/steps/<name>/`.
#[derive(Debug, Clone)]
pub struct Step {
    /// Folder name, e.g. `2-mesh-strict`.
    pub name: String,
    /// The first comment line of its PeerAuthentication file (or README heading).
    pub title: String,
    /// `(path, text)` of its YAML files.
    pub files: Vec<(String, String)>,
    /// Its PeerAuthentications as JSON objects (what a WasmPlugin's pluginConfig embeds).
    pub peer_authentications: Vec<Value>,
}

fn read(path: &Path) -> Result<String, LabError> {
    std::fs::read_to_string(path).map_err(|e| LabError::Manifest {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

fn yaml_files(dir: &Path) -> Result<Vec<PathBuf>, LabError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| LabError::Manifest {
            path: dir.display().to_string(),
            message: e.to_string(),
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    Ok(files)
}

fn relative(repo: &Path, p: &Path) -> String {
    p.strip_prefix(repo).unwrap_or(p).display().to_string()
}

/// The steps under `<repo>/manifests/steps`, in order.
pub fn load_steps(repo: &Path) -> Result<Vec<Step>, LabError> {
    let root = repo.join("manifests/steps");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .map_err(|e| LabError::Manifest {
            path: root.display().to_string(),
            message: e.to_string(),
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs.iter().map(|d| load_step(repo, d)).collect()
}

fn load_step(repo: &Path, dir: &Path) -> Result<Step, LabError> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut files = Vec::new();
    let mut peer_authentications = Vec::new();
    let mut title = String::new();
    for p in yaml_files(dir)? {
        let text = read(&p)?;
        let docs = crd::yaml_documents(&text).map_err(|message| LabError::Manifest {
            path: relative(repo, &p),
            message,
        })?;
        for d in docs {
            if d["kind"] == "PeerAuthentication" {
                peer_authentications.push(d);
                if title.is_empty() {
                    title = first_comment(&text);
                }
            }
        }
        files.push((relative(repo, &p), text));
    }
    if title.is_empty() {
        let readme = dir.join("README.md");
        title = read(&readme)
            .map(|t| first_paragraph(&t))
            .unwrap_or_default();
    }
    Ok(Step {
        name,
        title,
        files,
        peer_authentications,
    })
}

/// The file's leading comment block, joined into one line.
fn first_comment(text: &str) -> String {
    text.lines()
        .map_while(|l| l.strip_prefix("# "))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The README's first paragraph after its heading, joined into one line.
fn first_paragraph(text: &str) -> String {
    text.lines()
        .skip_while(|l| l.starts_with('#') || l.trim().is_empty())
        .take_while(|l| !l.trim().is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `(path, text)` of `manifests/workloads/*.yaml`.
pub fn workload_sources(repo: &Path) -> Result<Vec<(String, String)>, LabError> {
    yaml_files(&repo.join("manifests/workloads"))?
        .iter()
        .map(|p| Ok((relative(repo, p), read(p)?)))
        .collect()
}

/// Build the mesh istiod would see for the workloads plus `step`, refusing manifests
/// that Istio's admission would refuse.
pub fn mesh_for(workloads: &[(String, String)], step: &Step) -> Result<Mesh, LabError> {
    let sources: Vec<(&str, &str)> = workloads
        .iter()
        .chain(&step.files)
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    let config = MeshConfig::default();
    let mut admission = Vec::new();
    for (name, text) in &sources {
        let loaded = policy::source::load(text, name);
        admission.extend(loaded.errors.iter().map(ToString::to_string));
        for r in &loaded.resources {
            admission.extend(
                policy::validate::resource(r, &config)
                    .into_iter()
                    .filter(|d| d.severity == Severity::Error)
                    .map(|d| format!("{name}: {}", d.message)),
            );
        }
    }
    if !admission.is_empty() {
        return Err(LabError::Policy(admission.join("; ")));
    }
    Ok(policy::check(&sources, config).mesh)
}

// ---- results -------------------------------------------------------------------------

/// What `policy` predicts for one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Predicted {
    pub outcome: Outcome,
    pub mtls: bool,
    pub client_tls: ClientTls,
    pub server_mode: MtlsMode,
}

/// What really happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// HTTP status the caller got; 0 = no response (connection reset).
    pub status: u16,
    /// The app received an XFCC whose URI is the caller's SPIFFE ID.
    pub mtls_seen: bool,
    /// The XFCC the app received, if any.
    pub xfcc: Option<String>,
}

/// One `sleep.X → httpbin.Y` cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellReport {
    pub client: String,
    pub server: String,
    /// The caller has a sidecar (its errors come back as 503 from it, not as resets).
    pub client_sidecar: bool,
    pub predicted: Predicted,
    pub observed: Observed,
}

impl CellReport {
    /// Whether the real request agrees with the prediction: 200 with (or without)
    /// mTLS as predicted; a reset as no response (or, through a client sidecar, its
    /// 503); a failure as anything but 200.
    pub fn agrees(&self) -> bool {
        let o = &self.observed;
        match self.predicted.outcome {
            Outcome::Allowed => o.status == 200 && o.mtls_seen == self.predicted.mtls,
            Outcome::Reset if self.client_sidecar => o.status == 503,
            Outcome::Reset => o.status == 0,
            Outcome::Failed => o.status != 200,
        }
    }

    pub fn observed_text(&self) -> String {
        match self.observed.status {
            200 if self.observed.mtls_seen => "200 mTLS".into(),
            200 if self.observed.xfcc.is_some() => "200 XFCC?".into(),
            200 => "200 plaintext".into(),
            0 => "000 reset".into(),
            s => format!("{s}"),
        }
    }

    pub fn predicted_text(&self) -> String {
        match (self.predicted.outcome, self.predicted.mtls) {
            (Outcome::Allowed, true) => "200 mTLS".into(),
            (Outcome::Allowed, false) => "200 plaintext".into(),
            (Outcome::Reset, _) if self.client_sidecar => "503 reset".into(),
            (Outcome::Reset, _) => "000 reset".into(),
            (Outcome::Failed, _) => "fails".into(),
        }
    }
}

/// One step's results.
#[derive(Debug, Clone)]
pub struct StepReport {
    pub name: String,
    pub title: String,
    /// httpbin namespace → the port-80 mode istiod would configure (`None`: no sidecar).
    pub modes: Vec<(String, Option<MtlsMode>)>,
    pub cells: Vec<CellReport>,
    pub envoys: usize,
    pub elapsed: Duration,
}

impl StepReport {
    pub fn disagreements(&self) -> usize {
        self.cells.iter().filter(|c| !c.agrees()).count()
    }
}

impl fmt::Display for StepReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "  {:<31} {:<15} (predicted by policy)",
            "call", "observed"
        )?;
        for c in &self.cells {
            writeln!(
                f,
                "  {:<31} {:<15} {:<26} {}",
                format!("{} → {}", c.client, c.server),
                c.observed_text(),
                format!("({})", c.predicted_text()),
                if c.agrees() { "✓" } else { "✗ DISAGREES" }
            )?;
        }
        Ok(())
    }
}

// ---- the lab -------------------------------------------------------------------------

/// Where things are.
#[derive(Debug, Clone)]
pub struct LabConfig {
    /// The repository root (holds `manifests/`).
    pub repo: PathBuf,
    /// The built filter.
    pub wasm: PathBuf,
    /// Scratch folder for certificates, Envoy configs and logs (deleted on drop).
    pub work_dir: PathBuf,
}

impl LabConfig {
    /// `<repo>/out/peerauth_filter.wasm` (or `$PEERAUTH_FILTER_WASM`), a scratch folder
    /// in the system temp dir.
    pub fn default_for(repo: &Path) -> LabConfig {
        let wasm = std::env::var_os("PEERAUTH_FILTER_WASM")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo.join("out/peerauth_filter.wasm"));
        LabConfig {
            repo: repo.to_path_buf(),
            wasm,
            work_dir: std::env::temp_dir().join(format!(
                "peerauth-demo-{}-{}",
                std::process::id(),
                LABS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            )),
        }
    }
}

/// The mesh CA, the three httpbin apps and the lab's manifests; Envoys come and go per step.
pub struct Lab {
    config: LabConfig,
    pki: MeshPki,
    apps: BTreeMap<String, EchoApp>,
    workloads: Vec<(String, String)>,
    envoy_dir: PathBuf,
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.config.work_dir);
    }
}

/// The filter's pluginConfig for one server sidecar, as the step's WasmPlugin gives it,
/// with container port 80 renamed to the local listener port (see the module docs).
pub fn plugin_config(
    action: &str,
    namespace: &str,
    labels: &BTreeMap<String, String>,
    root_namespace: &str,
    peer_authentications: &[Value],
    listen_port: u16,
) -> Value {
    let policies: Vec<Value> = peer_authentications
        .iter()
        .map(|pa| {
            let mut pa = pa.clone();
            if let Some(ports) = pa["spec"]["portLevelMtls"].as_object_mut() {
                if let Some(v) = ports.remove(&CONTAINER_PORT.to_string()) {
                    ports.insert(listen_port.to_string(), v);
                }
            }
            json!({"metadata": pa["metadata"], "spec": pa["spec"]})
        })
        .collect();
    json!({
        "action": action,
        "xfcc": "verify",
        "allowedTrustDomains": ["cluster.local"],
        "rootNamespace": root_namespace,
        "workload": {"namespace": namespace, "labels": labels},
        "peerAuthentications": policies,
    })
}

fn chains_for(mode: MtlsMode) -> Chains {
    match mode {
        MtlsMode::Strict => Chains::MtlsOnly,
        MtlsMode::Disable => Chains::PlaintextOnly,
        MtlsMode::Permissive | MtlsMode::Unset => Chains::Both,
    }
}

fn find<'m>(mesh: &'m Mesh, name: &str, ns: &str) -> Result<&'m Workload, LabError> {
    mesh.workloads
        .iter()
        .find(|w| w.name == name && w.namespace == ns)
        .ok_or_else(|| LabError::Missing(format!("{name}.{ns}")))
}

impl Lab {
    /// Check the tools, issue the mesh CA and the workload certificates with certgen,
    /// start the three httpbin apps.
    pub fn start(config: LabConfig) -> Result<Lab, LabError> {
        if !config.wasm.is_file() {
            return Err(LabError::NoFilter(config.wasm.clone()));
        }
        if !envoy::envoy_available() {
            return Err(LabError::NoEnvoy);
        }
        let _ = std::fs::remove_dir_all(&config.work_dir);
        let mut pki = MeshPki::generate(&config.work_dir.join("pki"))?;
        for w in ["httpbin.bar", "httpbin.legacy"] {
            pki.issue(w)?;
        }
        let mut apps = BTreeMap::new();
        for ns in NAMESPACES {
            apps.insert(ns.to_string(), EchoApp::start()?);
        }
        let workloads = workload_sources(&config.repo)?;
        let envoy_dir = config.work_dir.join("envoy");
        Ok(Lab {
            config,
            pki,
            apps,
            workloads,
            envoy_dir,
        })
    }

    /// The mesh root certificate the lab's CA issued under.
    pub fn root_cert(&self) -> &Path {
        &self.pki.root
    }

    fn app(&self, ns: &str) -> Result<SocketAddr, LabError> {
        self.apps
            .get(ns)
            .map(EchoApp::addr)
            .ok_or_else(|| LabError::Missing(format!("httpbin.{ns}")))
    }

    fn identity(&self, workload: &Workload) -> Result<&WorkloadFiles, LabError> {
        Ok(self
            .pki
            .workload(&format!("{}.{}", workload.name, workload.namespace))?)
    }

    /// Plan the server side of `mesh`: a sidecar per injected httpbin, with the filter
    /// configured by `plugin` (workload, listen port → pluginConfig JSON). Nothing runs yet.
    fn plan_servers(
        &self,
        mesh: &Mesh,
        plugin: &dyn Fn(&Workload, u16) -> Value,
    ) -> Result<ServerPlan, LabError> {
        let mut plan = ServerPlan::default();
        for ns in NAMESPACES {
            let w = find(mesh, "httpbin", ns)?;
            let app = self.app(ns)?;
            if !w.sidecar {
                plan.endpoints.insert(ns.to_string(), app.port());
                plan.modes.push((ns.to_string(), None));
                continue;
            }
            let described = mesh.describe(w);
            let mode = described
                .ports
                .get(&CONTAINER_PORT)
                .map_or(described.workload.mode, |r| r.mode);
            let port = envoy::free_port()?;
            let config = plugin(w, port);
            let config_text = config.to_string();
            // The filter must resolve the same mode as policy: a lab built wrong should
            // stop here, not show up later as a confusing disagreement.
            let parsed =
                Config::parse(config_text.as_bytes()).map_err(|e| LabError::PluginConfig {
                    workload: format!("httpbin.{ns}"),
                    message: e.to_string(),
                })?;
            let resolved = parsed.mode_for(Some(u32::from(port)));
            if config["action"] == "enforce" && resolved != mode {
                return Err(LabError::PluginConfig {
                    workload: format!("httpbin.{ns}"),
                    message: format!("it resolves port 80 to {resolved} but policy says {mode}"),
                });
            }
            let mut filter = WasmFilter::http(&self.config.wasm, &config_text);
            filter.failure_policy = Some("FAIL_CLOSED".into());
            let sidecar = Sidecar::new(
                &format!("httpbin.{ns}"),
                self.identity(w)?,
                &self.pki.root,
                Upstream::App(app),
            )
            .wasm(Some(filter))
            .port(port, chains_for(mode));
            plan.endpoints.insert(ns.to_string(), port);
            plan.sidecars.push((ns.to_string(), sidecar, port));
            plan.modes.push((ns.to_string(), Some(mode)));
        }
        Ok(plan)
    }

    /// Plan a sleep's sidecar: one plaintext listener per httpbin, each forwarding to
    /// that httpbin's endpoint the way `connect` says istiod configures the cluster.
    fn plan_client(
        &self,
        mesh: &Mesh,
        sleep: &Workload,
        endpoints: &BTreeMap<String, u16>,
    ) -> Result<ClientPlan, LabError> {
        let identity = self.identity(sleep)?;
        let mut listeners = Vec::new();
        let mut clusters = Vec::new();
        let mut ports = BTreeMap::new();
        for ns in NAMESPACES {
            let cell = connect(mesh, sleep, ns)?;
            let listen = envoy::free_port()?;
            let endpoint = endpoints.get(ns).copied().unwrap_or_default();
            let server_id = crate::pki::spiffe_id_for(&format!("httpbin.{ns}"));
            listeners.push(outbound_listener(ns, listen));
            clusters.push(outbound_cluster(
                ns,
                endpoint,
                cell.client_tls,
                identity,
                &self.pki.root,
                &server_id,
            ));
            ports.insert(ns.to_string(), listen);
        }
        let admin = envoy::free_port()?;
        let name = format!("sleep.{}", sleep.namespace);
        let bootstrap = json!({
            "node": {"id": name, "cluster": name},
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
            "static_resources": {"listeners": listeners, "clusters": clusters}
        });
        Ok(ClientPlan {
            namespace: sleep.namespace.clone(),
            name,
            bootstrap,
            admin,
            ports,
        })
    }

    /// Start every planned Envoy at once (each start waits for V8 to compile the filter;
    /// in parallel the step takes the time of one) and return them running.
    fn start_all(
        &self,
        servers: ServerPlan,
        clients: Vec<ClientPlan>,
    ) -> Result<Running, LabError> {
        let dir = &self.envoy_dir;
        std::thread::scope(|scope| {
            let server_handles: Vec<_> = servers
                .sidecars
                .into_iter()
                .map(|(ns, sidecar, port)| {
                    scope.spawn(move || {
                        let started =
                            envoy::free_port()
                                .map_err(LabError::from)
                                .and_then(|admin| {
                                    LabEnvoy::start(
                                        &format!("httpbin.{ns}"),
                                        dir,
                                        &sidecar.bootstrap(admin),
                                        admin,
                                        &[port],
                                    )
                                });
                        (ns, started)
                    })
                })
                .collect();
            let client_handles: Vec<_> = clients
                .into_iter()
                .map(|c| {
                    scope.spawn(move || {
                        let listen: Vec<u16> = c.ports.values().copied().collect();
                        let started = LabEnvoy::start(&c.name, dir, &c.bootstrap, c.admin, &listen);
                        (c.namespace, c.ports, started)
                    })
                })
                .collect();
            // Join every thread before reporting an error, so no Envoy is left untracked.
            let mut running = Running {
                endpoints: servers.endpoints,
                modes: servers.modes,
                ..Running::default()
            };
            let mut first_error = None;
            for h in server_handles {
                match h.join() {
                    Ok((ns, Ok(e))) => {
                        running.sidecars.insert(ns, e);
                    }
                    Ok((_, Err(e))) => {
                        first_error.get_or_insert(e);
                    }
                    Err(_) => {
                        first_error.get_or_insert(LabError::StartPanicked);
                    }
                }
            }
            for h in client_handles {
                match h.join() {
                    Ok((ns, ports, Ok(e))) => {
                        running.clients.insert(ns, (e, ports));
                    }
                    Ok((_, _, Err(e))) => {
                        first_error.get_or_insert(e);
                    }
                    Err(_) => {
                        first_error.get_or_insert(LabError::StartPanicked);
                    }
                }
            }
            match first_error {
                Some(e) => Err(e),
                None => Ok(running),
            }
        })
    }

    /// Plan and start the whole step: server sidecars configured by `plugin`, and the
    /// sidecars of the sleeps in `clients` that have one.
    fn bring_up(
        &self,
        mesh: &Mesh,
        plugin: &dyn Fn(&Workload, u16) -> Value,
        clients: &[&str],
        progress: &mut dyn FnMut(&str),
    ) -> Result<Running, LabError> {
        let servers = self.plan_servers(mesh, plugin)?;
        let mut client_plans = Vec::new();
        for ns in clients {
            let sleep = find(mesh, "sleep", ns)?;
            if sleep.sidecar {
                client_plans.push(self.plan_client(mesh, sleep, &servers.endpoints)?);
            }
        }
        progress(&format!(
            "starting {} Envoys: {} httpbin sidecar(s) with the filter, {} sleep sidecar(s)…",
            servers.sidecars.len() + client_plans.len(),
            servers.sidecars.len(),
            client_plans.len()
        ));
        self.start_all(servers, client_plans)
    }

    /// Send every `sleep.X → httpbin.Y` call for the sleeps in `clients` and compare.
    fn traffic(
        &self,
        mesh: &Mesh,
        running: &Running,
        clients: &[&str],
    ) -> Result<Vec<CellReport>, LabError> {
        let mut cells = Vec::new();
        for client_ns in NAMESPACES {
            if !clients.contains(&client_ns) {
                continue;
            }
            let sleep = find(mesh, "sleep", client_ns)?;
            for ns in NAMESPACES {
                let cell = connect(mesh, sleep, ns)?;
                let (status, body) = match running.clients.get(client_ns) {
                    Some((_, ports)) => {
                        let port = ports.get(ns).copied().unwrap_or_default();
                        envoy::http_get(SocketAddr::from(([127, 0, 0, 1], port)), "/headers")
                            .unwrap_or((0, String::new()))
                    }
                    None => {
                        // No sidecar: curl straight at the server's port, like the lab's sleep.legacy.
                        let port = running.endpoints.get(ns).copied().unwrap_or_default();
                        let r = envoy::curl(port, false, None, &self.pki.root, &[])?;
                        (r.status, r.body)
                    }
                };
                let xfcc = serde_json::from_str::<Value>(&body).ok().and_then(|v| {
                    v["headers"]["x-forwarded-client-cert"]
                        .as_str()
                        .map(str::to_string)
                });
                let own_uri = format!(
                    "URI={}",
                    crate::pki::spiffe_id_for(&format!("sleep.{client_ns}"))
                );
                let mtls_seen = xfcc.as_deref().is_some_and(|x| x.contains(&own_uri));
                cells.push(CellReport {
                    client: format!("sleep.{client_ns}"),
                    server: format!("httpbin.{ns}"),
                    client_sidecar: sleep.sidecar,
                    predicted: Predicted {
                        outcome: cell.outcome,
                        mtls: cell.mtls,
                        client_tls: cell.client_tls,
                        server_mode: cell.server_mode,
                    },
                    observed: Observed {
                        status,
                        mtls_seen,
                        xfcc,
                    },
                });
            }
        }
        Ok(cells)
    }

    /// Run one step: configure every proxy as istiod would for it, send all nine calls.
    pub fn run_step(
        &self,
        step: &Step,
        progress: &mut dyn FnMut(&str),
    ) -> Result<StepReport, LabError> {
        let started = Instant::now();
        let mesh = mesh_for(&self.workloads, step)?;
        let root_ns = mesh.config.root_namespace.clone();
        let plugin = |w: &Workload, port: u16| {
            plugin_config(
                "enforce",
                &w.namespace,
                &w.labels,
                &root_ns,
                &step.peer_authentications,
                port,
            )
        };
        let running = self.bring_up(&mesh, &plugin, &NAMESPACES, progress)?;
        progress("sending the nine sleep → httpbin requests…");
        let cells = self.traffic(&mesh, &running, &NAMESPACES)?;
        Ok(StepReport {
            name: step.name.clone(),
            title: step.title.clone(),
            modes: running.modes.clone(),
            cells,
            envoys: running.sidecars.len() + running.clients.len(),
            elapsed: started.elapsed(),
        })
    }

    /// sleep.bar, with its own valid certificate, smuggles an XFCC element claiming
    /// [`FORGED_IDENTITY`] to httpbin.foo, whose sidecar uses APPEND_FORWARD (Istio's
    /// default), with `step`'s policies. Returns the status without and with the forged
    /// header, and the filter's counters.
    pub fn forged_xfcc(
        &self,
        step: &Step,
        progress: &mut dyn FnMut(&str),
    ) -> Result<ForgeryReport, LabError> {
        let mesh = mesh_for(&self.workloads, step)?;
        let root_ns = mesh.config.root_namespace.clone();
        let plugin = |w: &Workload, port: u16| {
            plugin_config(
                "enforce",
                &w.namespace,
                &w.labels,
                &root_ns,
                &step.peer_authentications,
                port,
            )
        };
        let running = self.bring_up(&mesh, &plugin, &[], progress)?;
        let port = running.endpoints.get("foo").copied().unwrap_or_default();
        let sleep_bar = self.pki.workload("sleep.bar")?;
        let honest = envoy::curl(port, true, Some(sleep_bar), &self.pki.root, &[])?;
        let forged_header = format!(
            "By={};URI={FORGED_IDENTITY}",
            crate::pki::spiffe_id_for("httpbin.foo")
        );
        let forged = envoy::curl(
            port,
            true,
            Some(sleep_bar),
            &self.pki.root,
            &[("x-forwarded-client-cert", forged_header.as_str())],
        )?;
        let counters = match running.sidecars.get("foo") {
            Some(s) => filter_counters(s)?,
            None => Vec::new(),
        };
        Ok(ForgeryReport {
            honest_status: honest.status,
            forged_status: forged.status,
            forged_header,
            counters,
        })
    }

    /// The migration readout: `step`'s traffic from the sleeps in `clients` through
    /// httpbin sidecars running the audit WasmPlugin
    /// (`manifests/wasmplugin/peerauth-audit.yaml`), then the filter's counters per httpbin.
    pub fn readiness(
        &self,
        step: &Step,
        clients: &[&str],
        progress: &mut dyn FnMut(&str),
    ) -> Result<Vec<Readiness>, LabError> {
        let mesh = mesh_for(&self.workloads, step)?;
        let audit_path = self
            .config
            .repo
            .join("manifests/wasmplugin/peerauth-audit.yaml");
        let audit_docs =
            crd::yaml_documents(&read(&audit_path)?).map_err(|message| LabError::Manifest {
                path: relative(&self.config.repo, &audit_path),
                message,
            })?;
        let audit_for = |w: &Workload, _port: u16| {
            audit_docs
                .iter()
                .find(|d| {
                    d["kind"] == "WasmPlugin" && d["metadata"]["namespace"] == w.namespace.as_str()
                })
                .map(|d| d["spec"]["pluginConfig"].clone())
                .unwrap_or(Value::Null)
        };
        let running = self.bring_up(&mesh, &audit_for, clients, progress)?;
        self.traffic(&mesh, &running, clients)?;
        let mut out = Vec::new();
        for (ns, sidecar) in &running.sidecars {
            out.push(Readiness {
                workload: format!("httpbin.{ns}"),
                counters: filter_counters(sidecar)?,
            });
        }
        Ok(out)
    }
}

/// The server side as planned (nothing running yet).
#[derive(Default)]
struct ServerPlan {
    /// httpbin namespace → the port its container port 80 is reached at.
    endpoints: BTreeMap<String, u16>,
    /// (namespace, sidecar, its listener port).
    sidecars: Vec<(String, Sidecar, u16)>,
    modes: Vec<(String, Option<MtlsMode>)>,
}

/// A sleep's sidecar as planned.
struct ClientPlan {
    namespace: String,
    name: String,
    bootstrap: Value,
    admin: u16,
    /// httpbin namespace → the outbound listener port for it.
    ports: BTreeMap<String, u16>,
}

/// One step's Envoys, running.
#[derive(Default)]
struct Running {
    endpoints: BTreeMap<String, u16>,
    modes: Vec<(String, Option<MtlsMode>)>,
    sidecars: BTreeMap<String, LabEnvoy>,
    clients: BTreeMap<String, (LabEnvoy, BTreeMap<String, u16>)>,
}

fn connect(mesh: &Mesh, sleep: &Workload, ns: &str) -> Result<policy::reach::Cell, LabError> {
    let service = mesh
        .services
        .iter()
        .find(|s| s.name == "httpbin" && s.namespace == ns)
        .ok_or_else(|| LabError::Missing(format!("Service httpbin.{ns}")))?;
    mesh.connect(sleep, service, SERVICE_PORT)
        .ok_or_else(|| LabError::Missing(format!("httpbin.{ns}:{SERVICE_PORT}")))
}

/// The identity the forged XFCC element claims.
pub const FORGED_IDENTITY: &str = "spiffe://cluster.local/ns/foo/sa/admin";

/// The forged-XFCC scene.
#[derive(Debug, Clone)]
pub struct ForgeryReport {
    pub honest_status: u16,
    pub forged_status: u16,
    pub forged_header: String,
    pub counters: Vec<FilterCounter>,
}

/// One httpbin's audit counters.
#[derive(Debug, Clone)]
pub struct Readiness {
    pub workload: String,
    pub counters: Vec<FilterCounter>,
}

impl Readiness {
    /// Requests the audit filter counted as `would_reject` because they were plaintext.
    pub fn plaintext_would_reject(&self) -> u64 {
        self.sum(|c| {
            c.label("outcome") == Some("would_reject") && c.label("security") == Some("plaintext")
        })
    }

    pub fn mtls(&self) -> u64 {
        self.sum(|c| c.label("security") == Some("mutual_tls"))
    }

    fn sum(&self, f: impl Fn(&FilterCounter) -> bool) -> u64 {
        self.counters
            .iter()
            .filter(|c| c.name == peerauth_filter::metrics::REQUESTS && f(c))
            .map(|c| c.value)
            .sum()
    }
}

/// A filter counter read back from Envoy's `/stats`, its labels decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterCounter {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: u64,
}

impl FilterCounter {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

impl fmt::Display for FilterCounter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let labels: Vec<String> = self
            .labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect();
        write!(f, "{}{{{}}} {}", self.name, labels.join(","), self.value)
    }
}

/// Parse the filter's counters out of `/stats` (names carry their labels as
/// `key=.=value;.;` segments; see `filter/src/metrics.rs`).
pub fn parse_filter_counters(stats: &str) -> Vec<FilterCounter> {
    stats
        .lines()
        .filter_map(|line| {
            let (name, value) = line.split_once(": ")?;
            let name = name.strip_prefix("wasmcustom.").unwrap_or(name);
            let value = value.trim().parse().ok()?;
            let mut labels = Vec::new();
            let mut rest = name;
            while let Some((segment, tail)) = rest.split_once(";.;") {
                let (k, v) = segment.split_once("=.=")?;
                labels.push((k.to_string(), v.to_string()));
                rest = tail;
            }
            rest.starts_with("peerauth_").then(|| FilterCounter {
                name: rest.to_string(),
                labels,
                value,
            })
        })
        .collect()
}

fn filter_counters(envoy: &LabEnvoy) -> Result<Vec<FilterCounter>, LabError> {
    Ok(parse_filter_counters(&envoy.stats()?))
}

fn outbound_listener(ns: &str, port: u16) -> Value {
    json!({
        "name": format!("outbound|{SERVICE_PORT}||httpbin.{ns}.svc.cluster.local"),
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": format!("outbound_httpbin_{ns}"),
                "route_config": {"name": "outbound", "virtual_hosts": [{
                    "name": "httpbin", "domains": ["*"],
                    "routes": [{"match": {"prefix": "/"}, "route": {"cluster": format!("httpbin.{ns}")}}]
                }]},
                "http_filters": [{
                    "name": "envoy.filters.http.router",
                    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}
                }]
            }
        }]}]
    })
}

/// The outbound cluster istiod would give a sidecar for `httpbin.<ns>`: Istio mTLS with
/// the caller's SVID, verifying the server's SPIFFE ID; plaintext; or TLS without a
/// client certificate for DestinationRule SIMPLE/MUTUAL (not Istio's mTLS).
fn outbound_cluster(
    ns: &str,
    endpoint: u16,
    tls: ClientTls,
    identity: &WorkloadFiles,
    root: &Path,
    server_id: &str,
) -> Value {
    let sni = format!("outbound_.{SERVICE_PORT}_._.httpbin.{ns}.svc.cluster.local");
    let transport = match tls {
        ClientTls::Plaintext => None,
        ClientTls::IstioMutual => Some(json!({
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "sni": sni,
                "common_tls_context": {
                    "tls_certificates": [{
                        "certificate_chain": {"filename": identity.cert_chain},
                        "private_key": {"filename": identity.key}
                    }],
                    "validation_context": {
                        "trusted_ca": {"filename": root},
                        "match_typed_subject_alt_names": [{"san_type": "URI", "matcher": {"exact": server_id}}]
                    }
                }
            }
        })),
        ClientTls::OtherTls => Some(json!({
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "sni": sni,
                "common_tls_context": {"validation_context": {"trusted_ca": {"filename": root}}}
            }
        })),
    };
    let mut cluster = json!({
        "name": format!("httpbin.{ns}"),
        "type": "STATIC",
        "connect_timeout": "2s",
        "load_assignment": {
            "cluster_name": format!("httpbin.{ns}"),
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                "socket_address": {"address": "127.0.0.1", "port_value": endpoint}
            }}}]}]
        }
    });
    if let (Some(t), Some(obj)) = (transport, cluster.as_object_mut()) {
        obj.insert("transport_socket".into(), t);
    }
    cluster
}
