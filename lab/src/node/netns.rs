//! Namespaces, links and routes of one lab, its files (`/etc/netns/<ns>/`, the work
//! dir, the state file), finding what any lab left behind, and removing it.

use super::process::{self, kill_pid, LAB_ENV};
use super::{NodeError, PodNet, LAB_PREFIX, PROXY_UID};
use sha2::{Digest, Sha256};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Where each lab records its owner, so a later lab can tell a dead lab from a live one.
const STATE_DIR: &str = "/run/peerauth-lab";

/// The node side of every veth (Calico uses the same MAC on every host-side veth;
/// each veth is its own link, so they never meet).
const NODE_MAC: &str = "ee:ee:ee:ee:ee:ee";
/// The pods' default gateway: link-local, never an address of any interface.
const GATEWAY: &str = "169.254.1.1";

pub(super) fn is_root() -> bool {
    // The effective uid, the second field of `Uid:` in /proc/self/status.
    fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|v| v.split_whitespace().nth(1))
            == Some("0")
    })
}

fn ip(args: &[&str]) -> Result<(), NodeError> {
    process::run("ip", args).map(|_| ())
}

pub(super) fn add(netns: &str) -> Result<(), NodeError> {
    ip(&["netns", "add", netns])?;
    ip(&["-n", netns, "link", "set", "lo", "up"])
}

pub(super) fn node_setup(node: &str) -> Result<(), NodeError> {
    // Per-namespace sysctl: this sets forwarding for the node namespace only.
    process::run(
        "ip",
        &[
            "netns",
            "exec",
            node,
            "sysctl",
            "-q",
            "-w",
            "net.ipv4.ip_forward=1",
        ],
    )
    .map(|_| ())
}

/// A locally administered MAC derived from the pod IP, so captures are readable.
fn pod_mac(pod: &PodNet) -> String {
    let [a, b, c, d] = pod.ip.octets();
    format!("02:42:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
}

pub(super) fn pod_setup(node: &str, pod: &PodNet) -> Result<(), NodeError> {
    let (ns, eth, veth) = (&*pod.netns, &*pod.interface, &*pod.node_interface);
    let mac = pod_mac(pod);
    let addr = format!("{}/32", pod.ip);
    let ip_s = pod.ip.to_string();
    // Created inside the node namespace with the peer placed straight into the pod's,
    // so no interface ever exists in the machine's namespace.
    ip(&[
        "-n", node, "link", "add", veth, "address", NODE_MAC, "type", "veth", "peer", "name", eth,
        "address", &mac, "netns", ns,
    ])?;
    ip(&["-n", ns, "addr", "add", &addr, "dev", eth])?;
    ip(&["-n", ns, "link", "set", eth, "up"])?;
    ip(&[
        "-n", ns, "route", "add", GATEWAY, "dev", eth, "scope", "link",
    ])?;
    ip(&[
        "-n", ns, "route", "add", "default", "via", GATEWAY, "dev", eth,
    ])?;
    ip(&[
        "-n",
        ns,
        "neigh",
        "replace",
        GATEWAY,
        "lladdr",
        NODE_MAC,
        "dev",
        eth,
        "nud",
        "permanent",
    ])?;
    ip(&["-n", node, "link", "set", veth, "up"])?;
    ip(&["-n", node, "route", "add", &addr, "dev", veth])?;
    ip(&[
        "-n",
        node,
        "neigh",
        "replace",
        &ip_s,
        "lladdr",
        &mac,
        "dev",
        veth,
        "nud",
        "permanent",
    ])
}

/// `/etc/netns/<ns>/hosts` (the cluster DNS answers for Services) and a
/// `resolv.conf` with the pod's search path and a nameserver on the pod's own
/// loopback, where nothing listens: a name the hosts file lacks fails at once and no
/// query ever leaves the pod. `ip netns exec` bind-mounts both over `/etc`.
pub(super) fn write_etc(
    netns: &str,
    hosts: &str,
    namespace: &str,
    cluster_domain: &str,
) -> Result<(), NodeError> {
    let dir = Path::new("/etc/netns").join(netns);
    let write = |name: &str, text: &str| {
        fs::write(dir.join(name), text)
            .map_err(|e| NodeError::io(format!("write {}", dir.join(name).display()), &e))
    };
    fs::create_dir_all(&dir).map_err(|e| NodeError::io(format!("create {}", dir.display()), &e))?;
    write("hosts", hosts)?;
    write(
        "resolv.conf",
        &format!(
            "search {namespace}.svc.{cluster_domain} svc.{cluster_domain} {cluster_domain}\nnameserver 127.0.0.1\noptions ndots:5 attempts:1 timeout:1\n"
        ),
    )
}

pub(super) fn iptables_save(netns: &str) -> Result<String, NodeError> {
    let out = process::run("ip", &["netns", "exec", netns, "iptables-save"])?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `iptables-restore` of `rules` inside `netns` (only the tables `rules` names are
/// replaced, as istio-iptables does it).
pub(super) fn iptables_restore(netns: &str, rules: &str) -> Result<(), NodeError> {
    process::run_with_stdin(
        "ip",
        &["netns", "exec", netns, "iptables-restore"],
        Some(rules),
    )
    .map(|_| ())
}

fn set_mode(path: &Path, mode: u32) -> Result<(), NodeError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| NodeError::io(format!("chmod {mode:o} {}", path.display()), &e))
}

fn chown_proxy(path: &Path) -> Result<(), NodeError> {
    std::os::unix::fs::chown(path, Some(PROXY_UID), Some(PROXY_UID))
        .map_err(|e| NodeError::io(format!("chown {PROXY_UID} {}", path.display()), &e))
}

pub(super) fn make_work_dir(work: &Path, proxy: &Path) -> Result<(), NodeError> {
    if work.exists() {
        // A dead lab of a reused pid: nothing of it is alive (clean_dead_labs ran).
        let _ = fs::remove_dir_all(work);
    }
    fs::create_dir_all(proxy)
        .map_err(|e| NodeError::io(format!("create {}", proxy.display()), &e))?;
    set_mode(work, 0o755)?;
    set_mode(proxy, 0o755)?;
    chown_proxy(proxy)
}

pub(super) fn proxy_readable(file: &Path, dir: &Path, private: bool) -> Result<PathBuf, NodeError> {
    let name = file.file_name().ok_or_else(|| NodeError::Io {
        what: format!("make {} readable by uid {PROXY_UID}", file.display()),
        message: "not a file name".into(),
    })?;
    // One subdirectory per source directory, so two files of the same name (each
    // pod's `cert-chain.pem`) never replace each other.
    let source_dir = file
        .parent()
        .map(|p| fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf()))
        .unwrap_or_default();
    let digest = Sha256::digest(source_dir.as_os_str().as_encoded_bytes());
    let sub: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    let dir = dir.join(sub);
    for d in [dir.parent().unwrap_or(&dir), &dir] {
        if !d.exists() {
            fs::create_dir_all(d)
                .map_err(|e| NodeError::io(format!("create {}", d.display()), &e))?;
            set_mode(d, 0o755)?;
        }
    }
    let target = dir.join(name);
    let _ = fs::remove_file(&target);
    let meta =
        fs::metadata(file).map_err(|e| NodeError::io(format!("stat {}", file.display()), &e))?;
    let mode = meta.permissions().mode();
    let copy = || {
        fs::copy(file, &target).map(|_| ()).map_err(|e| {
            NodeError::io(
                format!("copy {} to {}", file.display(), target.display()),
                &e,
            )
        })
    };
    if private {
        copy()?;
        chown_proxy(&target)?;
        set_mode(&target, 0o600)?;
    } else if mode & 0o004 != 0 && fs::hard_link(file, &target).is_ok() {
        // Same inode, already world-readable: only the path was out of reach.
    } else {
        // A hard link would share the mode, so a private file is copied instead;
        // across filesystems a link is impossible anyway.
        copy()?;
        set_mode(&target, if mode & 0o111 != 0 { 0o755 } else { 0o644 })?;
    }
    Ok(target)
}

fn state_path(id: &str) -> PathBuf {
    Path::new(STATE_DIR).join(format!("{id}.state"))
}

/// The start time of `pid` in clock ticks since boot (`/proc/<pid>/stat` field 22),
/// which tells a live owner from a later process that reused its pid; `None` when
/// there is no such process or it is a zombie.
fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // fields[0] is field 3 (state).
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

pub(super) fn write_state(
    id: &str,
    netns: &[&str],
    work_dir: &Path,
    kept: bool,
) -> Result<(), NodeError> {
    let pid = std::process::id();
    let mut text = format!(
        "owner {pid} {}\nkept {}\nworkdir {}\n",
        start_time(pid).unwrap_or(0),
        if kept { "yes" } else { "no" },
        work_dir.display()
    );
    for ns in netns {
        text.push_str(&format!("netns {ns}\n"));
    }
    fs::create_dir_all(STATE_DIR).map_err(|e| NodeError::io(format!("create {STATE_DIR}"), &e))?;
    let path = state_path(id);
    fs::write(&path, text).map_err(|e| NodeError::io(format!("write {}", path.display()), &e))
}

struct State {
    owner: Option<(u32, u64)>,
    kept: bool,
    work_dir: Option<PathBuf>,
}

fn read_state(id: &str) -> Option<State> {
    let text = fs::read_to_string(state_path(id)).ok()?;
    let mut st = State {
        owner: None,
        kept: false,
        work_dir: None,
    };
    for line in text.lines() {
        let mut w = line.split_whitespace();
        match (w.next(), w.next(), w.next()) {
            (Some("owner"), Some(pid), Some(start)) => {
                st.owner = pid.parse().ok().zip(start.parse().ok());
            }
            (Some("kept"), Some(v), _) => st.kept = v == "yes",
            (Some("workdir"), Some(p), _) => st.work_dir = Some(PathBuf::from(p)),
            _ => {}
        }
    }
    Some(st)
}

/// The lab id (`palab-<pid>-<n>`) a lab-made name starts with.
fn lab_id(name: &str) -> Option<String> {
    let rest = name.strip_prefix(LAB_PREFIX)?;
    let mut parts = rest.splitn(3, ['-', '.']);
    let (pid, n) = (parts.next()?, parts.next()?);
    (pid.parse::<u32>().is_ok() && n.parse::<u32>().is_ok())
        .then(|| format!("{LAB_PREFIX}{pid}-{n}"))
}

fn lab_netns() -> Vec<String> {
    process::run("ip", &["netns", "list"])
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|l| l.split_whitespace().next())
                .filter(|n| n.starts_with(LAB_PREFIX))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn names_in(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.starts_with(LAB_PREFIX))
                .collect()
        })
        .unwrap_or_default()
}

/// Every live process whose environment tags it with a lab: `(pid, lab id, comm)`.
fn lab_processes() -> Vec<(u32, String, String)> {
    let needle = format!("{LAB_ENV}=");
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.filter_map(|e| e.ok()) {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(env) = fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let Some(lab) = env
            .split(|b| *b == 0)
            .find_map(|kv| kv.strip_prefix(needle.as_bytes()))
        else {
            continue;
        };
        if start_time(pid).is_none() {
            continue;
        }
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        out.push((
            pid,
            String::from_utf8_lossy(lab).into_owned(),
            comm.trim().to_string(),
        ));
    }
    out
}

fn pids_in_netns(netns: &str) -> Vec<u32> {
    process::run("ip", &["netns", "pids", netns])
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Remove lab `id`: kill every process in its namespaces or tagged with it, delete
/// the namespaces (their links and iptables rules go with them), their `/etc/netns`
/// directories, `work_dir` when given, the state file and teardown script. Best
/// effort; what fails is reported on stderr.
pub(super) fn remove_lab(id: &str, netns: &[String], work_dir: Option<&Path>) {
    let existing = lab_netns();
    // Twice: a process killed in the first pass may have had a child that was
    // between fork and exec.
    for _ in 0..2 {
        for ns in netns.iter().filter(|n| existing.contains(n)) {
            for pid in pids_in_netns(ns) {
                kill_pid(pid);
            }
        }
        for (pid, lab, _) in lab_processes() {
            if lab == id {
                kill_pid(pid);
            }
        }
    }
    for ns in netns.iter().filter(|n| existing.contains(n)) {
        if let Err(e) = ip(&["netns", "del", ns]) {
            eprintln!("peerauth lab {id}: {e}");
        }
    }
    for ns in netns {
        let dir = Path::new("/etc/netns").join(ns);
        if dir.exists() {
            if let Err(e) = fs::remove_dir_all(&dir) {
                eprintln!("peerauth lab {id}: remove {}: {e}", dir.display());
            }
        }
    }
    if let Some(w) = work_dir.filter(|w| w.exists()) {
        if let Err(e) = fs::remove_dir_all(w) {
            eprintln!("peerauth lab {id}: remove {}: {e}", w.display());
        }
    }
    let _ = fs::remove_file(state_path(id));
    let _ = fs::remove_file(script_path(id));
}

/// Remove every lab whose owner process is gone, unless it was kept on purpose.
/// A lab without a state file (its owner died before writing one, or it predates
/// them) counts as dead when no process has the pid in its name.
pub(super) fn clean_dead_labs() {
    let tmp = std::env::temp_dir();
    let netns = lab_netns();
    let mut ids: Vec<String> = netns
        .iter()
        .cloned()
        .chain(names_in(Path::new("/etc/netns")))
        .chain(names_in(Path::new(STATE_DIR)))
        .chain(names_in(&tmp))
        .filter_map(|n| lab_id(&n))
        .collect();
    ids.extend(lab_processes().into_iter().map(|(_, lab, _)| lab));
    ids.sort();
    ids.dedup();
    for id in ids {
        let state = read_state(&id);
        let alive = match &state {
            Some(State { kept: true, .. }) => true,
            Some(State {
                owner: Some((pid, start)),
                ..
            }) => start_time(*pid) == Some(*start),
            _ => lab_id_pid(&id).is_some_and(|pid| start_time(pid).is_some()),
        };
        if alive {
            continue;
        }
        let mine: Vec<String> = netns
            .iter()
            .filter(|n| lab_id(n).as_deref() == Some(&id))
            .cloned()
            .chain(
                names_in(Path::new("/etc/netns"))
                    .into_iter()
                    .filter(|n| lab_id(n).as_deref() == Some(&id)),
            )
            .collect();
        let work = state
            .and_then(|s| s.work_dir)
            .unwrap_or_else(|| tmp.join(&id));
        remove_lab(&id, &mine, Some(&work));
    }
}

fn lab_id_pid(id: &str) -> Option<u32> {
    id.strip_prefix(LAB_PREFIX)?.split('-').next()?.parse().ok()
}

fn script_path(id: &str) -> PathBuf {
    Path::new(STATE_DIR).join(format!("{id}.teardown.sh"))
}

/// A shell script that removes a kept lab; it lives beside the state file, outside
/// the work dir it removes. Written best effort: the path is returned either way.
pub(super) fn write_teardown_script(id: &str, netns: &[String], work_dir: &Path) -> PathBuf {
    let path = script_path(id);
    let list = netns.join(" ");
    let text = format!(
        "#!/bin/sh\n# Removes peerauth lab {id}: its processes, network namespaces and files.\n\
         for ns in {list}; do\n  for p in $(ip netns pids \"$ns\" 2>/dev/null); do kill -KILL \"$p\"; done\n\
         done\n\
         for ns in {list}; do\n  ip netns del \"$ns\" 2>/dev/null\n  rm -rf \"/etc/netns/$ns\"\ndone\n\
         rm -rf '{work}'\nrm -f '{state}' '{script}'\n",
        work = work_dir.display(),
        state = state_path(id).display(),
        script = path.display(),
    );
    if let Err(e) = fs::create_dir_all(STATE_DIR).and_then(|_| fs::write(&path, text)) {
        eprintln!("peerauth lab {id}: write {}: {e}", path.display());
    }
    path
}

fn tag(name: &str) -> String {
    lab_id(name).unwrap_or_else(|| "any".into())
}

pub(super) fn leftovers() -> Vec<String> {
    let mut out = Vec::new();
    for ns in lab_netns() {
        out.push(format!("netns {ns} (lab {})", tag(&ns)));
    }
    for d in names_in(Path::new("/etc/netns")) {
        out.push(format!("dir /etc/netns/{d} (lab {})", tag(&d)));
    }
    for f in names_in(Path::new(STATE_DIR)) {
        out.push(format!("file {STATE_DIR}/{f} (lab {})", tag(&f)));
    }
    let tmp = std::env::temp_dir();
    for d in names_in(&tmp) {
        out.push(format!("dir {} (lab {})", tmp.join(&d).display(), tag(&d)));
    }
    // Lab links live only in lab namespaces; one in the machine's namespace would be
    // a bug, listed for every lab.
    if let Ok(o) = process::run("ip", &["-o", "link", "show"]) {
        for line in String::from_utf8_lossy(&o.stdout).lines() {
            let name = line.split(':').nth(1).map(str::trim).unwrap_or("");
            let name = name.split('@').next().unwrap_or(name);
            if name.starts_with("palab") {
                out.push(format!("link {name} in the machine's namespace (lab any)"));
            }
        }
    }
    for (pid, lab, comm) in lab_processes() {
        out.push(format!("process {pid} {comm} (lab {lab})"));
    }
    out
}
