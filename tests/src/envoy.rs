//! Real Envoy processes on loopback, for the filter's Envoy tests and the benchmark.
//!
//! [`Sidecar`] builds an Istio-like sidecar *inbound*: one listener per port
//! (on loopback there is no iptables redirect, so the listener port is the
//! destination port), a `tls_inspector`, an mTLS filter chain that requires a
//! client certificate from the mesh CA, a plaintext chain, Istio's XFCC
//! settings, optionally the peerauth wasm filter, and the app as upstream.
//! [`ClientSidecar`] is the caller's side: a plaintext listener whose cluster
//! connects to a server port with or without a workload certificate.
//!
//! What this harness does not show, and why it is kept anyway: there are no pods, no
//! pod IPs and no traffic capture, the listener port stands in for the container
//! port, and the chains are hand-made rather than istiod's `virtualInbound` /
//! `virtualOutbound` shape, so it says nothing about how a filter behaves in a real
//! sidecar's data plane. That is `peerauth-lab`'s job (network-namespace pods,
//! istio-iptables, istiod-shaped Envoys; `make demo`, `tests/tests/pod_lab.rs`). It
//! stays for what needs one Envoy and no root: the filter's behaviour in Envoy and
//! the benchmark, where every variant must run in the same simple topology.
//!
//! Every [`Envoy`] owns its child process (killed on drop), its admin port and
//! its log file.

use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::pki::WorkloadFiles;

/// `forward_client_cert_details` of the HTTP connection manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fcc {
    Sanitize,
    ForwardOnly,
    AppendForward,
    SanitizeSet,
    AlwaysForwardOnly,
}

impl Fcc {
    fn as_str(self) -> &'static str {
        match self {
            Fcc::Sanitize => "SANITIZE",
            Fcc::ForwardOnly => "FORWARD_ONLY",
            Fcc::AppendForward => "APPEND_FORWARD",
            Fcc::SanitizeSet => "SANITIZE_SET",
            Fcc::AlwaysForwardOnly => "ALWAYS_FORWARD_ONLY",
        }
    }
}

/// Which filter chains a port's listener has, as istiod would generate them
/// for the port's PeerAuthentication mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chains {
    /// STRICT: the mTLS chain only (plaintext is reset by Envoy itself).
    MtlsOnly,
    /// PERMISSIVE: both chains.
    Both,
    /// DISABLE: the plaintext chain only.
    PlaintextOnly,
}

/// Where a sidecar sends accepted traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upstream {
    /// A local app (the echo server).
    App(SocketAddr),
    /// Envoy answers `200 ok` itself (`direct_response`), for benchmarks.
    Direct,
}

/// The peerauth filter as a sidecar loads it.
#[derive(Debug, Clone)]
pub struct WasmFilter {
    pub wasm: PathBuf,
    /// The pluginConfig JSON handed to the filter.
    pub plugin_config: String,
    /// Network filter (before `tcp_proxy`) instead of HTTP filter.
    pub tcp: bool,
    /// Envoy `failure_policy`: `None` (Envoy's default), `FAIL_CLOSED`, `FAIL_OPEN`, `FAIL_RELOAD`.
    pub failure_policy: Option<String>,
}

impl WasmFilter {
    pub fn http(wasm: &Path, plugin_config: &str) -> WasmFilter {
        WasmFilter {
            wasm: wasm.to_path_buf(),
            plugin_config: plugin_config.to_string(),
            tcp: false,
            failure_policy: None,
        }
    }

    pub fn tcp(wasm: &Path, plugin_config: &str) -> WasmFilter {
        WasmFilter {
            tcp: true,
            ..WasmFilter::http(wasm, plugin_config)
        }
    }
}

/// Errors starting or talking to Envoy.
#[derive(Debug)]
pub enum EnvoyError {
    Io(io::Error),
    /// Envoy exited or never became ready; carries the log tail.
    NotReady {
        name: String,
        log: String,
    },
}

impl std::fmt::Display for EnvoyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EnvoyError::Io(e) => write!(f, "envoy: {e}"),
            EnvoyError::NotReady { name, log } => {
                write!(f, "envoy {name} did not become ready; log tail:\n{log}")
            }
        }
    }
}

impl std::error::Error for EnvoyError {}

impl From<io::Error> for EnvoyError {
    fn from(e: io::Error) -> Self {
        EnvoyError::Io(e)
    }
}

/// A free loopback port (bound then released) that this process has not handed
/// out before. The kernel picks each port at random and may pick one again as soon
/// as it is released; the demo and the tests plan a dozen or more ports before any
/// Envoy binds one, so without the record two Envoys of one round could be given
/// the same port and the second would fail with "Address already in use".
pub fn free_port() -> io::Result<u16> {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    for _ in 0..64 {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut given = GIVEN
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if given.insert(port) {
            return Ok(port);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        "the kernel kept offering loopback ports already handed out",
    ))
}

/// The `envoy` binary: `$ENVOY_BIN`, else `envoy` from PATH.
pub fn envoy_binary() -> String {
    std::env::var("ENVOY_BIN").unwrap_or_else(|_| "envoy".to_string())
}

/// Whether the Envoy binary can be run (`envoy --version`).
pub fn envoy_available() -> bool {
    Command::new(envoy_binary())
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub use peerauth_lab::stats::peerauth_stats_tags;

/// A running Envoy.
pub struct Envoy {
    pub name: String,
    pub admin: SocketAddr,
    pub log_path: PathBuf,
    child: Child,
}

static INSTANCE: AtomicU32 = AtomicU32::new(0);

impl Envoy {
    /// Start Envoy with `bootstrap` (admin already filled in) and wait until its
    /// admin reports LIVE and every port in `ports` accepts connections.
    pub fn start(
        name: &str,
        dir: &Path,
        bootstrap: &Value,
        admin_port: u16,
        ports: &[u16],
    ) -> Result<Envoy, EnvoyError> {
        let mut envoy = Envoy::spawn(name, dir, bootstrap, admin_port, "info")?;
        envoy.wait_ready(ports, Duration::from_secs(30))?;
        Ok(envoy)
    }

    /// Start Envoy without waiting for it (see [`Envoy::wait_ready`]). Every Envoy
    /// runs with `--disable-hot-restart`: with `--use-dynamic-base-id`, two Envoys
    /// starting together can pick the same base id, and the second then hot-restarts
    /// the first away (it logs `caught ENVOY_SIGTERM`).
    pub fn spawn(
        name: &str,
        dir: &Path,
        bootstrap: &Value,
        admin_port: u16,
        log_level: &str,
    ) -> Result<Envoy, EnvoyError> {
        let n = INSTANCE.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{name}-{}-{n}", std::process::id());
        std::fs::create_dir_all(dir)?;
        let config_path = dir.join(format!("{tag}.json"));
        let log_path = dir.join(format!("{tag}.log"));
        std::fs::write(
            &config_path,
            serde_json::to_vec_pretty(bootstrap).map_err(io::Error::other)?,
        )?;
        let child = Command::new(envoy_binary())
            .arg("-c")
            .arg(&config_path)
            .args([
                "--concurrency",
                "1",
                "--disable-hot-restart",
                "-l",
                log_level,
            ])
            // The log is read by tests while Envoy runs: flush it promptly.
            .args(["--file-flush-interval-msec", "50"])
            .arg("--log-path")
            .arg(&log_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        Ok(Envoy {
            name: name.to_string(),
            admin: SocketAddr::from(([127, 0, 0, 1], admin_port)),
            log_path,
            child,
        })
    }

    /// Wait until the admin reports LIVE and every port in `ports` accepts
    /// connections; an error (with the log tail) if Envoy exits or `timeout` passes.
    pub fn wait_ready(&mut self, ports: &[u16], timeout: Duration) -> Result<(), EnvoyError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            let live = http_get(self.admin, "/ready")
                .is_ok_and(|(code, body)| code == 200 && body.contains("LIVE"));
            if live
                && ports
                    .iter()
                    .all(|p| TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], *p))).is_ok())
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(EnvoyError::NotReady {
            name: self.name.clone(),
            log: self.log_tail(40),
        })
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Whether the log contains `needle`, waiting up to 5 s for Envoy to flush it.
    pub fn log_contains(&self, needle: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if self.log().contains(needle) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last `n` log lines.
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// `/stats` (text).
    pub fn stats(&self) -> io::Result<String> {
        Ok(http_get(self.admin, "/stats")?.1)
    }

    /// `/stats/prometheus`.
    pub fn prometheus(&self) -> io::Result<String> {
        Ok(http_get(self.admin, "/stats/prometheus")?.1)
    }

    /// The value of one `/stats` counter, `None` if absent.
    pub fn counter(&self, name: &str) -> io::Result<Option<u64>> {
        let stats = self.stats()?;
        Ok(stats.lines().find_map(|l| {
            let (k, v) = l.split_once(": ")?;
            (k == name).then(|| v.trim().parse().ok()).flatten()
        }))
    }

    /// Poll a `/stats` counter until it reaches `at_least` (up to 15 s).
    pub fn wait_counter(&self, name: &str, at_least: u64) -> io::Result<u64> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let v = self.counter(name)?.unwrap_or(0);
            if v >= at_least || Instant::now() > deadline {
                return Ok(v);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Resident set size in KiB (from /proc), for benchmarks.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.1 GET over plain TCP (for the admin interface).
pub fn http_get(addr: SocketAddr, path: &str) -> io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

/// One inbound port of a [`Sidecar`], with the settings that were current when
/// it was added.
#[derive(Debug, Clone)]
pub struct InboundPort {
    pub port: u16,
    pub chains: Chains,
    pub fcc: Fcc,
    pub fcc_cert: bool,
    pub wasm: Option<WasmFilter>,
}

/// Builder for an Istio-like server sidecar (inbound).
#[derive(Debug, Clone)]
pub struct Sidecar {
    name: String,
    identity: WorkloadFiles,
    root_ca: PathBuf,
    ports: Vec<InboundPort>,
    fcc: Fcc,
    fcc_cert: bool,
    wasm: Option<WasmFilter>,
    upstream: Upstream,
    stats_tags: Vec<(String, String)>,
    /// The node's `metadata` (Istio's `NAMESPACE`, `LABELS`), when set.
    node_metadata: Option<Value>,
}

impl Sidecar {
    /// A sidecar for `name` presenting `identity`, trusting `root_ca`, sending to `upstream`.
    /// Defaults: XFCC `APPEND_FORWARD` with Subject/URI/DNS (Istio's sidecar), no filter.
    pub fn new(
        name: &str,
        identity: &WorkloadFiles,
        root_ca: &Path,
        upstream: Upstream,
    ) -> Sidecar {
        Sidecar {
            name: name.to_string(),
            identity: identity.clone(),
            root_ca: root_ca.to_path_buf(),
            ports: Vec::new(),
            fcc: Fcc::AppendForward,
            fcc_cert: false,
            wasm: None,
            upstream,
            stats_tags: Vec::new(),
            node_metadata: None,
        }
    }

    /// The node metadata an Istio sidecar's bootstrap carries for its pod:
    /// `NAMESPACE` and `LABELS`.
    pub fn pod(self, namespace: &str, labels: &[(&str, &str)]) -> Sidecar {
        let labels: serde_json::Map<String, Value> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect();
        self.node_metadata(json!({"NAMESPACE": namespace, "LABELS": labels}))
    }

    /// Any node `metadata` (a hand-written bootstrap's, say).
    pub fn node_metadata(mut self, metadata: Value) -> Sidecar {
        self.node_metadata = Some(metadata);
        self
    }

    fn node(&self) -> Value {
        let mut node = json!({"id": self.name, "cluster": self.name});
        if let (Some(metadata), Some(obj)) = (&self.node_metadata, node.as_object_mut()) {
            obj.insert("metadata".into(), metadata.clone());
        }
        node
    }

    /// Add a port with the current XFCC and filter settings (set them first).
    pub fn port(mut self, port: u16, chains: Chains) -> Sidecar {
        self.ports.push(InboundPort {
            port,
            chains,
            fcc: self.fcc,
            fcc_cert: self.fcc_cert,
            wasm: self.wasm.clone(),
        });
        self
    }

    /// Settings for ports added after this call.
    pub fn fcc(mut self, fcc: Fcc) -> Sidecar {
        self.fcc = fcc;
        self
    }

    /// Also put the full peer certificate into XFCC (`Cert=`), as gateways do.
    pub fn fcc_cert(mut self, on: bool) -> Sidecar {
        self.fcc_cert = on;
        self
    }

    /// The filter for ports added after this call (`None`: no filter).
    pub fn wasm(mut self, filter: Option<WasmFilter>) -> Sidecar {
        self.wasm = filter;
        self
    }

    /// `stats_config.stats_tags` (tag name, regex) for the bootstrap.
    pub fn stats_tags(mut self, tags: Vec<(String, String)>) -> Sidecar {
        self.stats_tags = tags;
        self
    }

    fn tls_socket(&self) -> Value {
        json!({
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                "require_client_certificate": true,
                "common_tls_context": {
                    "alpn_protocols": ["h2", "http/1.1"],
                    "tls_certificates": [{
                        "certificate_chain": {"filename": self.identity.cert_chain},
                        "private_key": {"filename": self.identity.key}
                    }],
                    "validation_context": {"trusted_ca": {"filename": self.root_ca}}
                }
            }
        })
    }

    fn wasm_config(&self, w: &WasmFilter) -> Value {
        let mut config = json!({
            "name": "peerauth",
            "root_id": "peerauth",
            "configuration": {
                "@type": "type.googleapis.com/google.protobuf.StringValue",
                "value": w.plugin_config
            },
            // No `vm_id`, as istiod writes it: every port's filter shares one
            // VM per worker, with one root context per distinct pluginConfig
            // under the same plugin name.
            "vm_config": {
                "runtime": "envoy.wasm.runtime.v8",
                "code": {"local": {"filename": w.wasm}}
            }
        });
        if let (Some(p), Some(obj)) = (&w.failure_policy, config.as_object_mut()) {
            obj.insert("failure_policy".into(), Value::String(p.clone()));
        }
        config
    }

    fn filters(&self, p: &InboundPort) -> Value {
        let port = p.port;
        let mut filters = Vec::new();
        let cluster = "app";
        if let Some(w) = p.wasm.as_ref().filter(|w| w.tcp) {
            filters.push(json!({
                "name": "envoy.filters.network.wasm",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm",
                    "config": self.wasm_config(w)
                }
            }));
            filters.push(json!({
                "name": "envoy.filters.network.tcp_proxy",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                    "stat_prefix": format!("inbound_{port}"),
                    "cluster": cluster
                }
            }));
            return Value::Array(filters);
        }
        let mut http_filters = Vec::new();
        if let Some(w) = &p.wasm {
            http_filters.push(json!({
                "name": "envoy.filters.http.wasm",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                    "config": self.wasm_config(w)
                }
            }));
        }
        http_filters.push(json!({
            "name": "envoy.filters.http.router",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}
        }));
        let route = match self.upstream {
            Upstream::App(_) => json!({"match": {"prefix": "/"}, "route": {"cluster": cluster}}),
            Upstream::Direct => json!({
                "match": {"prefix": "/"},
                "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}}
            }),
        };
        filters.push(json!({
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": format!("inbound_{port}"),
                "codec_type": "AUTO",
                "forward_client_cert_details": p.fcc.as_str(),
                "set_current_client_cert_details": {
                    "subject": true, "uri": true, "dns": true, "cert": p.fcc_cert
                },
                "route_config": {
                    "name": "inbound",
                    "virtual_hosts": [{"name": "inbound", "domains": ["*"], "routes": [route]}]
                },
                "http_filters": http_filters
            }
        }));
        Value::Array(filters)
    }

    fn listener(&self, p: &InboundPort) -> Value {
        let mut chains = Vec::new();
        if p.chains != Chains::PlaintextOnly {
            chains.push(json!({
                "name": format!("inbound|{}|mtls", p.port),
                "filter_chain_match": {"transport_protocol": "tls"},
                "transport_socket": self.tls_socket(),
                "filters": self.filters(p)
            }));
        }
        if p.chains != Chains::MtlsOnly {
            chains.push(json!({
                "name": format!("inbound|{}|plaintext", p.port),
                "filter_chain_match": {"transport_protocol": "raw_buffer"},
                "filters": self.filters(p)
            }));
        }
        json!({
            "name": format!("inbound|{}", p.port),
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": p.port}},
            "listener_filters": [{
                "name": "envoy.filters.listener.tls_inspector",
                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"}
            }],
            "filter_chains": chains
        })
    }

    /// The bootstrap this builder describes, with `admin_port` for the admin interface.
    pub fn bootstrap(&self, admin_port: u16) -> Value {
        let listeners: Vec<Value> = self.ports.iter().map(|p| self.listener(p)).collect();
        let app_port = match self.upstream {
            Upstream::App(a) => a.port(),
            // Never used: routes answer directly; a cluster keeps the config uniform.
            Upstream::Direct => 9,
        };
        let tags: Vec<Value> = self
            .stats_tags
            .iter()
            .map(|(t, r)| json!({"tag_name": t, "regex": r}))
            .collect();
        json!({
            "node": self.node(),
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
            "stats_config": {"stats_tags": tags, "use_all_default_tags": true},
            "static_resources": {
                "listeners": listeners,
                "clusters": [static_cluster("app", app_port, None)]
            }
        })
    }

    /// The listeners as an LDS discovery response (for file-based dynamic config).
    pub fn lds_resources(&self, version: &str) -> Value {
        let listeners: Vec<Value> = self
            .ports
            .iter()
            .map(|p| {
                let mut l = self.listener(p);
                if let Some(obj) = l.as_object_mut() {
                    obj.insert(
                        "@type".into(),
                        Value::String(
                            "type.googleapis.com/envoy.config.listener.v3.Listener".into(),
                        ),
                    );
                }
                l
            })
            .collect();
        json!({"version_info": version, "resources": listeners})
    }

    /// Atomically replace the LDS file (Envoy watches it and applies or rejects
    /// the update, as it would an xDS push from istiod).
    pub fn write_lds(&self, path: &Path, version: &str) -> io::Result<()> {
        let tmp = path.with_extension("tmp");
        std::fs::write(
            &tmp,
            serde_json::to_vec_pretty(&self.lds_resources(version)).map_err(io::Error::other)?,
        )?;
        std::fs::rename(&tmp, path)
    }

    /// Start with the listeners delivered by file-based LDS instead of statically,
    /// so later [`Sidecar::write_lds`] calls update them. Returns the LDS file path.
    pub fn start_with_lds(&self, dir: &Path) -> Result<(Envoy, PathBuf), EnvoyError> {
        std::fs::create_dir_all(dir)?;
        let n = INSTANCE.fetch_add(1, Ordering::Relaxed);
        let lds = dir.join(format!("{}-{}-{n}-lds.json", self.name, std::process::id()));
        self.write_lds(&lds, "v1")?;
        let admin = free_port()?;
        let mut bootstrap = self.bootstrap(admin);
        if let Some(sr) = bootstrap
            .get_mut("static_resources")
            .and_then(Value::as_object_mut)
        {
            sr.remove("listeners");
        }
        if let Some(obj) = bootstrap.as_object_mut() {
            obj.insert(
                "dynamic_resources".into(),
                json!({"lds_config": {"path_config_source": {"path": lds}, "resource_api_version": "V3"}}),
            );
        }
        let ports: Vec<u16> = self.ports.iter().map(|p| p.port).collect();
        let envoy = Envoy::start(&self.name, dir, &bootstrap, admin, &ports)?;
        Ok((envoy, lds))
    }

    /// Start it; `dir` receives the config and the log.
    pub fn start(&self, dir: &Path) -> Result<Envoy, EnvoyError> {
        let admin = free_port()?;
        let ports: Vec<u16> = self.ports.iter().map(|p| p.port).collect();
        Envoy::start(&self.name, dir, &self.bootstrap(admin), admin, &ports)
    }
}

fn static_cluster(name: &str, port: u16, transport_socket: Option<Value>) -> Value {
    let mut c = json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "2s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                "socket_address": {"address": "127.0.0.1", "port_value": port}
            }}}]}]
        }
    });
    if let (Some(ts), Some(obj)) = (transport_socket, c.as_object_mut()) {
        obj.insert("transport_socket".into(), ts);
    }
    c
}

/// The caller's sidecar (outbound): plaintext HTTP in on `listen`, out to
/// `server_port` with mTLS using `identity` (or plaintext when `None`).
#[derive(Debug, Clone)]
pub struct ClientSidecar {
    pub name: String,
    pub listen: u16,
    pub server_port: u16,
    pub identity: Option<WorkloadFiles>,
    pub root_ca: PathBuf,
}

impl ClientSidecar {
    pub fn bootstrap(&self, admin_port: u16) -> Value {
        let ts = self.identity.as_ref().map(|id| {
            json!({
                "name": "envoy.transport_sockets.tls",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                    "common_tls_context": {
                        "tls_certificates": [{
                            "certificate_chain": {"filename": id.cert_chain},
                            "private_key": {"filename": id.key}
                        }],
                        "validation_context": {"trusted_ca": {"filename": self.root_ca}}
                    }
                }
            })
        });
        json!({
            "node": {"id": self.name, "cluster": self.name},
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
            "static_resources": {
                "listeners": [{
                    "name": "outbound",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": self.listen}},
                    "filter_chains": [{"filters": [{
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                            "stat_prefix": "outbound",
                            "route_config": {"name": "outbound", "virtual_hosts": [{
                                "name": "server", "domains": ["*"],
                                "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "server"}}]
                            }]},
                            "http_filters": [{
                                "name": "envoy.filters.http.router",
                                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}
                            }]
                        }
                    }]}]
                }],
                "clusters": [static_cluster("server", self.server_port, ts)]
            }
        })
    }

    pub fn start(&self, dir: &Path) -> Result<Envoy, EnvoyError> {
        let admin = free_port()?;
        Envoy::start(
            &self.name,
            dir,
            &self.bootstrap(admin),
            admin,
            &[self.listen],
        )
    }
}

/// What curl got back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurlResult {
    /// HTTP status, 0 when there was no response.
    pub status: u16,
    /// curl's exit code (0 = success; 35/56/52 = TLS or connection failures).
    pub exit: i32,
    pub body: String,
}

/// A curl request to `https://127.0.0.1:<port>/` (when `client` or `tls` is set)
/// or `http://…`, with extra headers.
pub fn curl(
    port: u16,
    tls: bool,
    client: Option<&WorkloadFiles>,
    root_ca: &Path,
    headers: &[(&str, &str)],
) -> io::Result<CurlResult> {
    curl_with(port, tls, client, root_ca, headers, &[])
}

/// [`curl`] with extra curl arguments (e.g. `--http1.1`).
pub fn curl_with(
    port: u16,
    tls: bool,
    client: Option<&WorkloadFiles>,
    root_ca: &Path,
    headers: &[(&str, &str)],
    extra: &[&str],
) -> io::Result<CurlResult> {
    let scheme = if tls || client.is_some() {
        "https"
    } else {
        "http"
    };
    let mut cmd = Command::new("curl");
    cmd.args(extra);
    cmd.args(["-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}"]);
    if scheme == "https" {
        cmd.arg("--cacert").arg(root_ca);
        // Server certs are SPIFFE SVIDs without DNS names, like Istio's.
        cmd.arg("--insecure");
    }
    if let Some(c) = client {
        cmd.arg("--cert")
            .arg(&c.cert_chain)
            .arg("--key")
            .arg(&c.key);
    }
    for (k, v) in headers {
        cmd.arg("-H").arg(format!("{k}: {v}"));
    }
    cmd.arg(format!("{scheme}://127.0.0.1:{port}/anything"));
    let out = cmd.output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = stdout.rsplit_once('\n').unwrap_or(("", stdout.as_str()));
    Ok(CurlResult {
        status: code.trim().parse().unwrap_or(0),
        exit: out.status.code().unwrap_or(-1),
        body: body.to_string(),
    })
}

/// Raw TCP exchange: send `request`, read until EOF or timeout. `Ok(empty)` when
/// the peer closed without answering.
pub fn tcp_exchange(port: u16, request: &[u8]) -> io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port)))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(request)?;
    let mut buf = Vec::new();
    match s.read_to_end(&mut buf) {
        Ok(_) => Ok(buf),
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Ok(buf),
        Err(e) => Err(e),
    }
}

/// What a raw client read from a connection within its time limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub bytes: Vec<u8>,
    /// The peer closed (EOF or reset) before the time limit.
    pub closed: bool,
}

/// Connect over plain TCP, send `request` (may be empty), and read for up to
/// `wait`: unlike [`tcp_exchange`], a connection that stays open without
/// answering is an answer too (`closed: false`).
pub fn tcp_read_for(port: u16, request: &[u8], wait: Duration) -> io::Result<Received> {
    let mut s = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port)))?;
    s.write_all(request)?;
    let deadline = Instant::now() + wait;
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(Received {
                bytes,
                closed: false,
            });
        }
        s.set_read_timeout(Some(left))?;
        match s.read(&mut buf) {
            Ok(0) => {
                return Ok(Received {
                    bytes,
                    closed: true,
                })
            }
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                return Ok(Received {
                    bytes,
                    closed: true,
                })
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(Received {
                    bytes,
                    closed: false,
                })
            }
            Err(e) => return Err(e),
        }
    }
}

/// A TLS client (`openssl s_client`, presenting `client` when given) that sends
/// `request` after the handshake and collects what it reads for `wait`.
pub fn tls_read_for(
    port: u16,
    client: Option<&WorkloadFiles>,
    root_ca: &Path,
    request: &[u8],
    wait: Duration,
) -> io::Result<Vec<u8>> {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-quiet", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-CAfile")
        .arg(root_ca);
    if let Some(c) = client {
        // `-cert` sends only the file's first certificate; the intermediate
        // that links it to the mesh root needs `-cert_chain`.
        cmd.arg("-cert")
            .arg(&c.cert_chain)
            .arg("-cert_chain")
            .arg(&c.cert_chain)
            .arg("-key")
            .arg(&c.key);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    // stdin stays open until the child is killed, so s_client does not hang up early.
    let mut stdin = child.stdin.take();
    if let Some(i) = stdin.as_mut() {
        i.write_all(request)?;
        i.flush()?;
    }
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| io::Error::other("openssl s_client without stdout"))?;
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout.read_to_end(&mut out);
        out
    });
    std::thread::sleep(wait);
    let _ = child.kill();
    let _ = child.wait();
    drop(stdin);
    reader
        .join()
        .map_err(|_| io::Error::other("s_client reader thread panicked"))
}

/// One answer of [`curl_transfers`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    pub status: u16,
    pub body: String,
    /// New connections curl opened for this transfer (0 = it reused one).
    pub new_connections: u32,
}

/// Several requests to `https://127.0.0.1:<port>/` in one curl run, each with its
/// own headers, so curl keeps them on one connection: one after another on a
/// kept-alive HTTP/1.1 connection, or (`parallel`, with `--http2` in `extra`)
/// multiplexed as streams of one HTTP/2 connection. `dir` receives the bodies.
pub fn curl_transfers(
    port: u16,
    client: &WorkloadFiles,
    root_ca: &Path,
    requests: &[Vec<(&str, &str)>],
    extra: &[&str],
    parallel: bool,
    dir: &Path,
) -> io::Result<Vec<Transfer>> {
    std::fs::create_dir_all(dir)?;
    let mut cmd = Command::new("curl");
    if parallel {
        // Without --parallel-immediate curl waits for the first connection and
        // multiplexes the rest over it.
        cmd.args(["--parallel", "--parallel-max", "16"]);
    }
    for (i, headers) in requests.iter().enumerate() {
        if i > 0 {
            cmd.arg("--next");
        }
        cmd.args(extra);
        cmd.args(["-sS", "--max-time", "10", "--insecure", "--cacert"])
            .arg(root_ca)
            .arg("--cert")
            .arg(&client.cert_chain)
            .arg("--key")
            .arg(&client.key)
            .arg("-o")
            .arg(dir.join(format!("transfer-{i}")))
            .args(["-w", "%{http_code} %{num_connects} %{url}\\n"]);
        for (k, v) in headers {
            cmd.arg("-H").arg(format!("{k}: {v}"));
        }
        cmd.arg(format!("https://127.0.0.1:{port}/anything?transfer={i}"));
    }
    let out = cmd.output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut transfers: Vec<Option<Transfer>> = vec![None; requests.len()];
    for line in stdout.lines() {
        let mut parts = line.split_whitespace();
        let (Some(code), Some(connects), Some(url)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let Some(i) = url
            .rsplit_once("transfer=")
            .and_then(|(_, n)| n.parse::<usize>().ok())
        else {
            continue;
        };
        let body = std::fs::read_to_string(dir.join(format!("transfer-{i}"))).unwrap_or_default();
        if let Some(slot) = transfers.get_mut(i) {
            *slot = Some(Transfer {
                status: code.parse().unwrap_or(0),
                body,
                new_connections: connects.parse().unwrap_or(0),
            });
        }
    }
    transfers
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            t.ok_or_else(|| {
                io::Error::other(format!(
                    "curl reported nothing for transfer {i} (exit {:?}): {}",
                    out.status.code(),
                    String::from_utf8_lossy(&out.stderr)
                ))
            })
        })
        .collect()
}
