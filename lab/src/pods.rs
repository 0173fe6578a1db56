//! The running lab: a [`Node`] for one [`Topology`], the mesh CA with one SVID per
//! sidecar pod, the stand-in app on every pod's container ports, and one Envoy per
//! sidecar pod started from [`istiod::bootstrap`] as uid 1337 behind istio-iptables'
//! capture.
//!
//! A [`PodLab`] is built once per set of workloads and reconfigured per step: the
//! six seed steps share their pods (only policies change between them), so only the
//! Envoys restart with the new configuration — which is what istiod pushing new xDS
//! amounts to — while namespaces, links, DNAT rules, certificates and apps stay. That
//! saves rebuilding the network and keeps each step's time to the Envoys' start.

use crate::call::{CallResult, Observed, PortMode, ServiceCall};
use crate::istiod::{self, SidecarFiles, WasmPlugin};
use crate::node::{self, Node};
use crate::pki::MeshPki;
use crate::stats::{parse_filter_counters, FilterCounter};
use crate::topology::{Pod, Topology};
use crate::LabError;
use policy::mesh::Mesh;
use serde_json::Value;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long one Envoy may take to become ready (V8 compiles the filter on start, and
/// every sidecar of a step starts at once on a 2-core machine).
const ENVOY_READY: Duration = Duration::from_secs(90);
/// curl's own limit per call; a reset or a refusal is immediate, so this only bounds
/// a hang.
pub const CURL_MAX_TIME: &str = "10";

/// Where things are.
#[derive(Debug, Clone)]
pub struct LabConfig {
    /// The repository root (holds `manifests/`).
    pub repo: PathBuf,
    /// The built filter.
    pub wasm: PathBuf,
    /// The stand-in app: this program, run with [`LabConfig::app_args`] then
    /// `--port N`… in each pod (the `lab-app` binary, or an executable that serves
    /// [`crate::app::serve`] behind a subcommand).
    pub app: PathBuf,
    /// Arguments before the ports (`["__lab-app"]` for `peerauth`'s hidden
    /// subcommand; none for `lab-app`).
    pub app_args: Vec<OsString>,
}

impl LabConfig {
    /// `<repo>/out/peerauth_filter.wasm` (or `$PEERAUTH_FILTER_WASM`); `lab-app` from
    /// `$PEERAUTH_LAB_APP`, else next to the running executable (or its parent folder,
    /// for test binaries under `target/<profile>/deps`).
    pub fn default_for(repo: &Path) -> LabConfig {
        let wasm = std::env::var_os("PEERAUTH_FILTER_WASM")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo.join("out/peerauth_filter.wasm"));
        let app = std::env::var_os("PEERAUTH_LAB_APP")
            .map(PathBuf::from)
            .unwrap_or_else(sibling_app);
        LabConfig {
            repo: repo.to_path_buf(),
            wasm,
            app,
            app_args: Vec::new(),
        }
    }
}

fn sibling_app() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    let here = dir.join("lab-app");
    if here.is_file() {
        return here;
    }
    dir.parent().map(|p| p.join("lab-app")).unwrap_or(here)
}

/// One sidecar pod's identity, as files uid 1337 can read.
#[derive(Debug, Clone)]
pub struct Identity {
    pub spiffe_id: String,
    pub cert_chain: PathBuf,
    pub leaf: PathBuf,
    /// Owned by uid 1337, mode 0600.
    pub key: PathBuf,
}

/// One running Envoy.
#[derive(Debug, Clone)]
pub struct RunningSidecar {
    pub pid: u32,
    pub admin_socket: PathBuf,
    pub log: PathBuf,
    pub config: PathBuf,
    pub upstream_debug: bool,
}

/// The lab for one topology.
pub struct PodLab {
    config: LabConfig,
    // Declared first so it is dropped first: every process dies before the files go.
    node: Node,
    topology: Topology,
    identities: BTreeMap<String, Identity>,
    root_cert: PathBuf,
    envoy: PathBuf,
    /// The filter, readable by uid 1337; `None` when [`LabConfig::wasm`] is not built.
    wasm: Option<PathBuf>,
    sidecars: BTreeMap<String, RunningSidecar>,
    apps: BTreeMap<String, u32>,
    generation: u32,
    _pki: MeshPki,
}

fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl PodLab {
    /// Build the network for `mesh`'s workloads (`documents`: the raw manifests it came
    /// from), issue every sidecar pod's certificate, install istio-iptables' capture in
    /// the sidecar pods and start the app on every declared container port. No Envoy
    /// runs until [`PodLab::configure`].
    ///
    /// The filter module is needed only by a step with WasmPlugins
    /// ([`PodLab::configure`]), so a mesh without them runs without it.
    ///
    /// `Err` when the app is not built, the machine cannot host the lab
    /// ([`crate::node::preflight`]), or any part fails to start; whatever was created is
    /// removed again.
    pub fn create(config: LabConfig, mesh: &Mesh, documents: &[Value]) -> Result<PodLab, LabError> {
        if !config.app.is_file() {
            return Err(LabError::NoApp(config.app.clone()));
        }
        node::preflight()?;
        let envoy_bin = node::envoy_executable()?;
        let topology = Topology::from_mesh(mesh, documents)?;
        let node = Node::create(&topology)?;
        for dir in ["logs", "config"] {
            std::fs::create_dir_all(node.work_dir().join(dir))
                .map_err(|e| LabError::io(format!("create {dir} in the lab's work dir"), &e))?;
        }
        let mut pki = MeshPki::generate(&node.work_dir().join("pki"))?;
        let root_cert = node.proxy_readable(&pki.root)?;
        let mut identities = BTreeMap::new();
        for pod in topology.pods.iter().filter(|p| p.sidecar) {
            let spiffe_id = pod.spiffe_id(&topology.trust_domain);
            let files = pki.issue_spiffe(&format!("pod-{}", pod.key()), &spiffe_id)?;
            identities.insert(
                pod.key(),
                Identity {
                    spiffe_id,
                    cert_chain: node.proxy_readable(&files.cert_chain)?,
                    leaf: node.proxy_readable(&files.leaf)?,
                    key: node.proxy_private(&files.key)?,
                },
            );
            node.capture_traffic(&pod.key())?;
        }
        let envoy = node.proxy_readable(&envoy_bin)?;
        let wasm = if config.wasm.is_file() {
            Some(node.proxy_readable(&config.wasm)?)
        } else {
            None
        };
        let mut lab = PodLab {
            config,
            node,
            topology,
            identities,
            root_cert,
            envoy,
            wasm,
            sidecars: BTreeMap::new(),
            apps: BTreeMap::new(),
            generation: 0,
            _pki: pki,
        };
        lab.start_apps()?;
        Ok(lab)
    }

    fn start_apps(&mut self) -> Result<(), LabError> {
        let pods: Vec<Pod> = self
            .topology
            .pods
            .iter()
            .filter(|p| !p.container_ports.is_empty())
            .cloned()
            .collect();
        for pod in &pods {
            let mut args: Vec<OsString> = self.config.app_args.clone();
            for port in &pod.container_ports {
                args.push("--port".into());
                args.push(port.to_string().into());
            }
            let log = self
                .node
                .work_dir()
                .join(format!("logs/app-{}.log", pod.key()));
            let pid = self
                .node
                .spawn(&pod.key(), false, &self.config.app, &args, &log)?;
            self.apps.insert(pod.key(), pid);
        }
        for pod in &pods {
            for port in &pod.container_ports {
                self.wait_app(pod, *port)?;
            }
        }
        Ok(())
    }

    /// Ask the app on its own loopback (which istio-iptables never captures:
    /// `-d 127.0.0.1/32 -j RETURN`) until it answers.
    fn wait_app(&self, pod: &Pod, port: u16) -> Result<(), LabError> {
        let url = format!("http://127.0.0.1:{port}/");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = self.node.exec(
                &pod.key(),
                "curl",
                &[
                    "-s",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "--max-time",
                    "2",
                    &url,
                ],
                Duration::from_secs(5),
            )?;
            if String::from_utf8_lossy(&out.stdout) == "200" {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(LabError::AppNotReady {
                    pod: pod.key(),
                    port,
                    log: log_tail(
                        &self
                            .node
                            .work_dir()
                            .join(format!("logs/app-{}.log", pod.key())),
                        10,
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn node(&self) -> &Node {
        &self.node
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    pub fn config(&self) -> &LabConfig {
        &self.config
    }

    /// The mesh root certificate, readable by uid 1337.
    pub fn root_cert(&self) -> &Path {
        &self.root_cert
    }

    pub fn identity(&self, pod_key: &str) -> Option<&Identity> {
        self.identities.get(pod_key)
    }

    pub fn sidecar(&self, pod_key: &str) -> Option<&RunningSidecar> {
        self.sidecars.get(pod_key)
    }

    pub fn sidecars(&self) -> &BTreeMap<String, RunningSidecar> {
        &self.sidecars
    }

    pub fn pod(&self, pod_key: &str) -> Result<&Pod, LabError> {
        self.topology
            .pods
            .iter()
            .find(|p| p.key() == pod_key)
            .ok_or_else(|| LabError::Missing(format!("pod {pod_key}")))
    }

    /// Stop every Envoy (istiod's next push is a restart here).
    pub fn stop_sidecars(&mut self) {
        for (_, s) in std::mem::take(&mut self.sidecars) {
            self.node.kill(s.pid);
        }
    }

    /// Give every sidecar pod the configuration istiod would generate for `mesh` with
    /// `plugins` in the cluster, and (re)start its Envoy; the sidecars of `clients`
    /// log the upstream component at debug level. Returns once every Envoy is ready.
    ///
    /// `Err` when `plugins` is not empty and the filter is not built
    /// ([`LabError::NoFilter`]), a configuration cannot be generated, or an Envoy exits
    /// or is not ready in time (the others are stopped).
    pub fn configure(
        &mut self,
        mesh: &Mesh,
        plugins: &[WasmPlugin],
        clients: &[String],
    ) -> Result<(), LabError> {
        if !plugins.is_empty() && self.wasm.is_none() {
            return Err(LabError::NoFilter(self.config.wasm.clone()));
        }
        self.stop_sidecars();
        self.generation += 1;
        let generation = self.generation;
        let pods: Vec<Pod> = self
            .topology
            .pods
            .iter()
            .filter(|p| p.sidecar)
            .cloned()
            .collect();
        for pod in &pods {
            let key = pod.key();
            let dir = self.node.proxy_dir().join(&key);
            std::fs::create_dir_all(&dir)
                .map_err(|e| LabError::io(format!("create {}", dir.display()), &e))?;
            // Envoy, as uid 1337, creates its admin socket here.
            std::os::unix::fs::chown(&dir, Some(node::PROXY_UID), Some(node::PROXY_UID))
                .map_err(|e| LabError::io(format!("chown {}", dir.display()), &e))?;
            let identity = self
                .identities
                .get(&key)
                .ok_or_else(|| LabError::Missing(format!("certificate for {key}")))?;
            let admin_socket = dir.join(format!("admin-{generation}.sock"));
            let upstream_debug = clients.contains(&key);
            let sidecar = istiod::Sidecar {
                mesh,
                topology: &self.topology,
                pod,
                files: SidecarFiles {
                    cert_chain: identity.cert_chain.clone(),
                    private_key: identity.key.clone(),
                    root_cert: self.root_cert.clone(),
                    admin_socket: admin_socket.clone(),
                },
                wasm_module: self.wasm.clone(),
                plugins,
                upstream_debug,
            };
            let bootstrap = istiod::bootstrap(&sidecar)?;
            let config = dir.join(format!("envoy-{generation}.json"));
            std::fs::write(&config, bootstrap.to_string())
                .map_err(|e| LabError::io(format!("write {}", config.display()), &e))?;
            let log = self
                .node
                .work_dir()
                .join(format!("logs/envoy-{key}-{generation}.log"));
            let mut args: Vec<OsString> = vec![
                "-c".into(),
                config.clone().into(),
                // One Envoy per pod, each in its own network namespace but sharing the
                // machine's /dev/shm: hot restart would make them collide on base id 0.
                "--disable-hot-restart".into(),
                "--concurrency".into(),
                "1".into(),
                "--log-level".into(),
                "warning".into(),
            ];
            if upstream_debug {
                args.push("--component-log-level".into());
                args.push("upstream:debug".into());
            }
            let pid = self.node.spawn(&key, true, &self.envoy, &args, &log)?;
            self.sidecars.insert(
                key,
                RunningSidecar {
                    pid,
                    admin_socket,
                    log,
                    config,
                    upstream_debug,
                },
            );
        }
        let waited = self.wait_ready();
        if waited.is_err() {
            self.stop_sidecars();
        }
        waited
    }

    fn wait_ready(&self) -> Result<(), LabError> {
        let started = Instant::now();
        let mut pending: Vec<&String> = self.sidecars.keys().collect();
        while !pending.is_empty() {
            let mut still = Vec::new();
            for key in pending {
                let s = &self.sidecars[key];
                if !self.node.alive(s.pid) {
                    return Err(LabError::EnvoyNotReady {
                        pod: key.clone(),
                        seconds: started.elapsed().as_secs(),
                        log: log_tail(&s.log, 20),
                    });
                }
                let ready = node::admin_get(&s.admin_socket, "/ready")
                    .is_ok_and(|body| body.contains("LIVE"));
                if !ready {
                    still.push(key);
                }
            }
            pending = still;
            if pending.is_empty() {
                break;
            }
            if started.elapsed() > ENVOY_READY {
                let key = pending[0];
                return Err(LabError::EnvoyNotReady {
                    pod: key.clone(),
                    seconds: ENVOY_READY.as_secs(),
                    log: log_tail(&self.sidecars[key].log, 20),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// Every Envoy still running; `Err` names the first that is not (a crash fails the
    /// step cleanly instead of showing up as resets).
    pub fn check_alive(&self) -> Result<(), LabError> {
        for (key, s) in &self.sidecars {
            if !self.node.alive(s.pid) {
                return Err(LabError::EnvoyDied {
                    pod: key.clone(),
                    log: log_tail(&s.log, 20),
                });
            }
        }
        Ok(())
    }

    /// The inbound mode of every declared port of every sidecar pod, as policy resolves
    /// it for istiod's chains.
    pub fn modes(&self, mesh: &Mesh) -> Vec<PortMode> {
        let reach = mesh.reach();
        let mut out = Vec::new();
        for pod in self.topology.pods.iter().filter(|p| p.sidecar) {
            let Some(w) = mesh
                .workloads
                .iter()
                .find(|w| w.name == pod.name && w.namespace == pod.namespace)
            else {
                continue;
            };
            let d = reach.describe(w);
            for port in &pod.container_ports {
                let mode = d
                    .ports
                    .get(&u32::from(*port))
                    .map_or(d.workload.mode, |r| r.mode);
                out.push(PortMode {
                    pod: pod.key(),
                    port: *port,
                    mode: mode.to_string(),
                });
            }
        }
        out
    }

    /// Only the seed's `/ip` call (no `/headers` follow-up): what the STRICT readout
    /// sends, so the filter counts one request per call.
    pub fn call_code_only(&self, call: &ServiceCall) -> Result<String, LabError> {
        let url = format!("{}/ip", call.base_url());
        let out = self.node.exec(
            &call.client,
            "curl",
            &[
                &url,
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                CURL_MAX_TIME,
            ],
            Duration::from_secs(20),
        )?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Run the seed's call in the client pod: `curl http://<service>:<port>/ip -s -o
    /// /dev/null -w "%{http_code}"` (plus `extra` headers), and, when it returns 200,
    /// `curl …/headers` for the XFCC the server's sidecar adds only over mTLS.
    pub fn call(
        &self,
        call: &ServiceCall,
        extra: &[(&str, &str)],
    ) -> Result<(String, Observed), LabError> {
        let url = format!("{}/ip", call.base_url());
        let headers: Vec<String> = extra.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        let mut args: Vec<&str> = vec![
            url.as_str(),
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            CURL_MAX_TIME,
        ];
        for h in &headers {
            args.push("-H");
            args.push(h);
        }
        let command = format!("curl {url} -s -o /dev/null -w \"%{{http_code}}\"");
        let out = self
            .node
            .exec(&call.client, "curl", &args, Duration::from_secs(20))?;
        let code = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let curl_exit = out.status.code().unwrap_or(-1);
        let mut xfcc = None;
        if code == "200" {
            let headers_url = format!("{}/headers", call.base_url());
            let out = self.node.exec(
                &call.client,
                "curl",
                &["-s", "--max-time", CURL_MAX_TIME, &headers_url],
                Duration::from_secs(20),
            )?;
            xfcc = xfcc_of(&String::from_utf8_lossy(&out.stdout));
        }
        // mTLS is the XFCC the server's sidecar adds naming the caller's own SVID (the
        // page's evidence: `URI=spiffe://cluster.local/ns/foo/sa/sleep`); an XFCC naming
        // anyone else, or a client without a certificate, is not.
        let mtls = match (&xfcc, self.identities.get(&call.client)) {
            (Some(x), Some(id)) => x.contains(&format!("URI={}", id.spiffe_id)),
            _ => false,
        };
        Ok((
            command,
            Observed {
                result: CallResult {
                    code,
                    curl_exit,
                    mtls,
                },
                xfcc,
            },
        ))
    }

    /// The filter's counters in `pod_key`'s sidecar right now.
    pub fn filter_counters(&self, pod_key: &str) -> Result<Vec<FilterCounter>, LabError> {
        let s = self
            .sidecars
            .get(pod_key)
            .ok_or_else(|| LabError::Missing(format!("a running sidecar in {pod_key}")))?;
        let stats = node::admin_get(&s.admin_socket, "/stats")
            .map_err(|e| LabError::io(format!("GET /stats from {pod_key}'s sidecar"), &e))?;
        Ok(parse_filter_counters(&stats))
    }

    /// Leave every pod, Envoy and app running (see [`Node::keep`]) and return how to
    /// remove them later.
    pub fn keep(self) -> node::KeptNode {
        self.node.keep()
    }

    /// `pod_key`'s sidecar log so far.
    pub fn sidecar_log(&self, pod_key: &str) -> String {
        self.sidecars
            .get(pod_key)
            .and_then(|s| std::fs::read_to_string(&s.log).ok())
            .unwrap_or_default()
    }
}

/// The X-Forwarded-Client-Cert header in lab-app's (or httpbin's) `/headers` answer,
/// whatever the case of its name.
pub fn xfcc_of(body: &str) -> Option<String> {
    let v: Value = serde_json::from_str(body).ok()?;
    v["headers"].as_object()?.iter().find_map(|(k, v)| {
        k.eq_ignore_ascii_case("x-forwarded-client-cert")
            .then(|| v.as_str().map(str::to_string))
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn the_xfcc_header_is_found_in_headers_whatever_its_case() {
        let body =
            r#"{"headers": {"Host": "httpbin.foo:8000", "X-Forwarded-Client-Cert": "By=a;URI=b"}}"#;
        assert_eq!(xfcc_of(body).as_deref(), Some("By=a;URI=b"));
        let body = r#"{"headers": {"x-forwarded-client-cert": "By=a;URI=b"}}"#;
        assert_eq!(xfcc_of(body).as_deref(), Some("By=a;URI=b"));
        assert_eq!(xfcc_of(r#"{"headers": {"host": "x"}}"#), None);
        assert_eq!(xfcc_of("not json"), None);
    }
}
