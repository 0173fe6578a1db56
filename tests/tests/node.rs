//! The lab's node on the real kernel: pods as network namespaces, ClusterIP DNAT,
//! hosts-file DNS, Istio's nat rules with a real Envoy as uid 1337, tcpdump, and
//! teardown (drop, SIGINT, a dead owner). Needs root (CI runs as root).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use peerauth_tests::node::{self, Node, NodeError, PROXY_UID};
use peerauth_tests::topology::{ClusterService, ClusterServicePort, Pod, Protocol, Topology};
use policy::model::TargetPort;
use serde_json::Value;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const LAB_APP: &str = env!("CARGO_BIN_EXE_lab-app");
const T: Duration = Duration::from_secs(20);

/// Every `Node::create` also removes the labs of dead owners. The tests run in
/// parallel threads, so the dead-owner test holds this for writing while it looks at
/// the lab its killed child left, and every other create holds it for reading.
static CREATES: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn create(topology: &Topology) -> Result<Node, NodeError> {
    let _creating = CREATES.read().unwrap_or_else(|e| e.into_inner());
    Node::create(topology)
}

fn pod(name: &str, ns: &str, last: u8, app: &str) -> Pod {
    Pod {
        namespace: ns.into(),
        name: name.into(),
        ip: Ipv4Addr::new(10, 244, 0, last),
        labels: BTreeMap::from([("app".to_string(), app.to_string())]),
        service_account: name.into(),
        sidecar: true,
        container_ports: vec![80],
    }
}

/// httpbin.foo (10.244.0.2) behind Service httpbin.foo 10.96.0.10:8000 → 80, a
/// client sleep.foo (10.244.0.3), and `extra` more httpbin replicas.
fn topology(extra: u8) -> Topology {
    let mut pods = vec![
        pod("httpbin", "foo", 2, "httpbin"),
        pod("sleep", "foo", 3, "sleep"),
    ];
    for i in 0..extra {
        pods.push(pod(&format!("httpbin-{i}"), "foo", 4 + i, "httpbin"));
    }
    Topology {
        trust_domain: "cluster.local".into(),
        cluster_domain: "cluster.local".into(),
        pods,
        services: vec![ClusterService {
            namespace: "foo".into(),
            name: "httpbin".into(),
            cluster_ip: Ipv4Addr::new(10, 96, 0, 10),
            selector: BTreeMap::from([("app".to_string(), "httpbin".to_string())]),
            ports: vec![ClusterServicePort {
                name: Some("http".into()),
                port: 8000,
                target_port: TargetPort::Number(80),
                protocol: Protocol::Http,
            }],
        }],
        named_ports: BTreeMap::new(),
    }
}

fn start_app(node: &Node, pod_key: &str, args: &[&str]) -> u32 {
    let args: Vec<OsString> = args.iter().map(OsString::from).collect();
    let log = node.work_dir().join(format!("{pod_key}-app.log"));
    let pid = node
        .spawn(pod_key, false, Path::new(LAB_APP), &args, &log)
        .unwrap();
    let port: u16 = args[1].to_str().unwrap().parse().unwrap();
    node.wait_listening(pod_key, port, T).unwrap();
    pid
}

/// `curl -s -w '\n%{http_code}' url` in `pod_key`: (code, body, curl exit).
fn curl(node: &Node, pod_key: &str, url: &str) -> (String, String, i32) {
    let out = node
        .exec(
            pod_key,
            "curl",
            &["-s", "-m", "10", "-w", "\n%{http_code}", url],
            T,
        )
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (
        code.to_string(),
        body.to_string(),
        out.status.code().unwrap_or(-1),
    )
}

fn origin(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:?}"));
    v["origin"].as_str().unwrap().to_string()
}

fn netns_names() -> String {
    String::from_utf8(
        Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
}

fn process_gone(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

#[test]
fn a_pod_reaches_a_service_by_name_and_by_pod_ip_and_the_app_sees_the_client_pod_ip() {
    let node = create(&topology(0)).unwrap();
    start_app(&node, "httpbin.foo", &["--port", "80"]);
    for url in [
        "http://httpbin.foo:8000/ip",
        "http://httpbin.foo.svc:8000/ip",
        "http://httpbin.foo.svc.cluster.local:8000/ip",
        "http://httpbin:8000/ip",
        "http://10.96.0.10:8000/ip",
        "http://10.244.0.2/ip",
    ] {
        let (code, body, exit) = curl(&node, "sleep.foo", url);
        assert_eq!((code.as_str(), exit), ("200", 0), "{url}: {body}");
        assert_eq!(origin(&body), "10.244.0.3", "{url}");
    }
    // The hosts file the pod sees is the topology's, through `ip netns exec`'s bind mount.
    let hosts = node.exec("sleep.foo", "cat", &["/etc/hosts"], T).unwrap();
    assert!(String::from_utf8_lossy(&hosts.stdout)
        .contains("10.96.0.10 httpbin.foo.svc.cluster.local httpbin.foo.svc httpbin.foo httpbin"));
    // A name cluster DNS would not know fails at once inside the pod (exit 6).
    let (_, _, exit) = curl(&node, "sleep.foo", "http://nothing.example:80/");
    assert_eq!(exit, 6);
}

#[test]
fn a_service_with_three_endpoints_spreads_connections_over_all_of_them() {
    let node = create(&topology(2)).unwrap();
    for pod in ["httpbin.foo", "httpbin-0.foo", "httpbin-1.foo"] {
        start_app(&node, pod, &["--port", "80"]);
    }
    let nat = node.node_iptables_save().unwrap();
    assert!(
        nat.contains("--mode random --probability 0.33333333349"),
        "{nat}"
    );
    assert!(
        nat.contains("--mode random --probability 0.50000000000"),
        "{nat}"
    );
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let (code, body, _) = curl(&node, "sleep.foo", "http://httpbin.foo:8000/where");
        assert_eq!(code, "200", "{body}");
        // "lab-app on <local ip>:80: …" names the endpoint that answered.
        let local = body
            .split_whitespace()
            .nth(2)
            .unwrap()
            .trim_end_matches(':')
            .to_string();
        seen.insert(local);
    }
    let expected: std::collections::BTreeSet<String> =
        ["10.244.0.2:80", "10.244.0.4:80", "10.244.0.5:80"]
            .map(String::from)
            .into();
    assert_eq!(seen, expected);
}

/// A minimal inbound sidecar: `virtualInbound`-like listener on 15006 that takes the
/// original destination and proxies TCP to it from 127.0.0.6, as istiod's
/// `InboundPassthroughCluster` does; admin on a unix socket.
fn inbound_envoy(node: &Node, pod_key: &str) -> (u32, PathBuf) {
    let envoy = node
        .proxy_readable(&node::envoy_executable().unwrap())
        .unwrap();
    let admin = node.proxy_dir().join("admin.sock");
    let config = serde_json::json!({
        "admin": {"address": {"pipe": {"path": admin}}},
        "static_resources": {
            "listeners": [{
                "name": "virtualInbound",
                "address": {"socket_address": {"address": "0.0.0.0", "port_value": 15006}},
                "listener_filters": [{
                    "name": "envoy.filters.listener.original_dst",
                    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst"}
                }],
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.tcp_proxy",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                        "stat_prefix": "inbound_passthrough",
                        "cluster": "InboundPassthroughCluster"
                    }
                }]}]
            }],
            "clusters": [{
                "name": "InboundPassthroughCluster",
                "type": "ORIGINAL_DST",
                "lb_policy": "CLUSTER_PROVIDED",
                "connect_timeout": "5s",
                "upstream_bind_config": {"source_address": {"address": "127.0.0.6", "port_value": 0}}
            }]
        }
    });
    let path = node.work_dir().join(format!("{pod_key}-envoy.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    let args: Vec<OsString> = [
        "-c",
        path.to_str().unwrap(),
        "--disable-hot-restart",
        "--concurrency",
        "1",
        "-l",
        "info",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    let log = node.work_dir().join(format!("{pod_key}-envoy.log"));
    let pid = node.spawn(pod_key, true, &envoy, &args, &log).unwrap();
    if let Err(e) = node.wait_listening(pod_key, 15006, T) {
        panic!(
            "{e}; envoy log: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    (pid, admin)
}

fn counter(admin: &Path, name: &str) -> u64 {
    let stats = node::admin_get(admin, "/stats").unwrap();
    stats
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no {name} in {stats}"))
        .trim()
        .parse()
        .unwrap()
}

fn process_uid(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap()
        .to_string()
}

#[test]
fn inbound_capture_sends_a_curl_through_envoy_on_15006_and_the_app_sees_127_0_0_6() {
    let node = create(&topology(0)).unwrap();
    node.capture_traffic("httpbin.foo").unwrap();
    start_app(&node, "httpbin.foo", &["--port", "80"]);
    let (pid, admin) = inbound_envoy(&node, "httpbin.foo");
    let uid = PROXY_UID.to_string();
    assert_eq!(
        process_uid(pid).split_whitespace().collect::<Vec<_>>(),
        ["Uid:", &uid, &uid, &uid, &uid],
        "Envoy runs as uid 1337"
    );
    for url in ["http://10.244.0.2/ip", "http://httpbin.foo:8000/ip"] {
        let (code, body, exit) = curl(&node, "sleep.foo", url);
        assert_eq!((code.as_str(), exit), ("200", 0), "{url}: {body}");
        assert_eq!(
            origin(&body),
            "127.0.0.6",
            "{url}: the app's peer is Envoy's bind address"
        );
    }
    assert_eq!(
        counter(&admin, "listener.0.0.0.0_15006.downstream_cx_total"),
        2
    );
    assert_eq!(
        counter(
            &admin,
            "cluster.InboundPassthroughCluster.upstream_cx_total"
        ),
        2
    );
    // An excluded port is not captured: with nothing on 15021, the connection is
    // refused by the pod itself (curl exit 7) instead of reaching Envoy.
    let (_, _, exit) = curl(&node, "sleep.foo", "http://10.244.0.2:15021/");
    assert_eq!(exit, 7);
    assert_eq!(
        counter(&admin, "listener.0.0.0.0_15006.downstream_cx_total"),
        2
    );
    // A crashed Envoy: the pod's port 80 is then unreachable (everything is still
    // redirected to 15006), as in a real pod whose istio-proxy died.
    node.kill(pid);
    assert!(!node.alive(pid));
    let (code, _, exit) = curl(&node, "sleep.foo", "http://10.244.0.2/ip");
    assert_eq!((code.as_str(), exit), ("000", 7));
}

#[test]
fn istio_nat_rules_appear_in_the_pod_in_istio_iptables_order() {
    let node = create(&topology(0)).unwrap();
    node.capture_traffic("sleep.foo").unwrap();
    let saved = node.iptables_save("sleep.foo").unwrap();
    let rules: Vec<&str> = saved.lines().filter(|l| l.starts_with("-A ")).collect();
    // Expected from shared/notes/istio-sidecar-dataplane.md §1 (istio-iptables run.go),
    // in iptables-save's rendering.
    let expected = [
        "-A PREROUTING -p tcp -j ISTIO_INBOUND",
        "-A OUTPUT -j ISTIO_OUTPUT",
        "-A ISTIO_INBOUND -p tcp -m tcp --dport 15008 -j RETURN",
        "-A ISTIO_INBOUND -p tcp -m tcp --dport 15090 -j RETURN",
        "-A ISTIO_INBOUND -p tcp -m tcp --dport 15021 -j RETURN",
        "-A ISTIO_INBOUND -p tcp -m tcp --dport 15020 -j RETURN",
        "-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT",
        "-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006",
        "-A ISTIO_OUTPUT -s 127.0.0.6/32 -o lo -j RETURN",
        "-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -o lo -p tcp -m tcp ! --dport 15008 -m owner --uid-owner 1337 -j ISTIO_IN_REDIRECT",
        "-A ISTIO_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN",
        "-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN",
        "-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -o lo -p tcp -m tcp ! --dport 15008 -m owner --gid-owner 1337 -j ISTIO_IN_REDIRECT",
        "-A ISTIO_OUTPUT -o lo -m owner ! --gid-owner 1337 -j RETURN",
        "-A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN",
        "-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN",
        "-A ISTIO_OUTPUT -j ISTIO_REDIRECT",
        "-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001",
    ];
    // iptables-save groups rules by chain; the order within each chain is what counts.
    let mut rules_sorted: Vec<&str> = rules.clone();
    let mut expected_sorted: Vec<&str> = expected.to_vec();
    let chain = |r: &&str| r.split_whitespace().nth(1).unwrap_or("").to_string();
    rules_sorted.sort_by_key(chain);
    expected_sorted.sort_by_key(chain);
    assert_eq!(rules_sorted, expected_sorted, "{saved}");
}

#[test]
fn outbound_capture_lands_on_15001_except_for_uid_1337() {
    let node = create(&topology(0)).unwrap();
    start_app(&node, "httpbin.foo", &["--port", "80"]);
    node.capture_traffic("sleep.foo").unwrap();
    // The tiny listener standing in for virtualOutbound.
    start_app(&node, "sleep.foo", &["--port", "15001"]);
    let (code, body, _) = curl(&node, "sleep.foo", "http://10.244.0.2/where");
    assert_eq!(code, "200");
    assert!(body.starts_with("lab-app on 127.0.0.1:15001:"), "{body}");
    // The same call as uid 1337 (Envoy's own upstream traffic) is not redirected.
    let uid = PROXY_UID.to_string();
    let out = node
        .exec(
            "sleep.foo",
            "setpriv",
            &[
                "--reuid",
                &uid,
                "--regid",
                &uid,
                "--clear-groups",
                "--",
                "curl",
                "-s",
                "-m",
                "10",
                "http://10.244.0.2/where",
            ],
            T,
        )
        .unwrap();
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(body.starts_with("lab-app on 10.244.0.2:80:"), "{body}");
    assert!(body.contains("from 10.244.0.3:"), "{body}");
    // The pod's own loopback stays direct for the app.
    start_app(&node, "sleep.foo", &["--port", "8080"]);
    let (code, body, _) = curl(&node, "sleep.foo", "http://127.0.0.1:8080/where");
    assert_eq!(code, "200");
    assert!(body.starts_with("lab-app on 127.0.0.1:8080:"), "{body}");
}

#[test]
fn tcpdump_on_the_server_pod_shows_a_plaintext_request_and_its_marker() {
    let node = create(&topology(0)).unwrap();
    start_app(&node, "httpbin.foo", &["--port", "80"]);
    let (netns, ifname) = node.interface("httpbin.foo").unwrap();
    assert_eq!(
        (netns.as_str(), ifname.as_str()),
        (node.netns("httpbin.foo").unwrap(), "eth0")
    );
    let capture = node.tcpdump("httpbin.foo").unwrap();
    let out = node
        .exec(
            "sleep.foo",
            "curl",
            &[
                "-s",
                "-H",
                "x-marker: peerauth-marker-7f3a",
                "http://httpbin.foo:8000/headers",
            ],
            T,
        )
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("peerauth-marker-7f3a"));
    let pcap = capture.stop().unwrap();
    let frames = node::frames(&pcap);
    assert!(
        frames.len() >= 6,
        "a TCP exchange has at least 6 frames: {} in {} bytes",
        frames.len(),
        pcap.len()
    );
    assert!(node::payload_contains(&pcap, b"GET /headers HTTP/1.1"));
    assert!(node::payload_contains(&pcap, b"peerauth-marker-7f3a"));
    assert!(!node::payload_contains(
        &pcap,
        b"peerauth-marker-never-sent"
    ));
}

#[test]
fn a_dropped_node_leaves_no_namespace_link_dir_or_process() {
    let node = create(&topology(0)).unwrap();
    let id = node.id().to_string();
    let pid = start_app(&node, "httpbin.foo", &["--port", "80"]);
    let _capture = node.tcpdump("sleep.foo").unwrap();
    let work = node.work_dir().to_path_buf();
    let before = node::leftovers_of(&id);
    // What the lab made is visible to leftovers(), so "empty" below means something.
    assert!(
        before
            .iter()
            .any(|l| l.starts_with("netns ") && l.contains("-node")),
        "{before:?}"
    );
    assert!(
        before
            .iter()
            .any(|l| l.starts_with(&format!("process {pid} "))),
        "{before:?}"
    );
    assert!(
        before.iter().any(|l| l.contains("/etc/netns/")),
        "{before:?}"
    );
    assert!(netns_names().contains(&id));
    drop(node);
    assert_eq!(node::leftovers_of(&id), Vec::<String>::new());
    assert!(!netns_names().contains(&id));
    assert!(process_gone(pid));
    assert!(!work.exists());
}

#[test]
fn two_labs_at_once_get_their_own_names_and_dropping_one_leaves_the_other_working() {
    let a = create(&topology(0)).unwrap();
    let b = create(&topology(0)).unwrap();
    assert_ne!(a.id(), b.id());
    assert_ne!(a.netns("httpbin.foo"), b.netns("httpbin.foo"));
    start_app(&a, "httpbin.foo", &["--port", "80"]);
    start_app(&b, "httpbin.foo", &["--port", "80"]);
    drop(a);
    let (code, body, _) = curl(&b, "sleep.foo", "http://httpbin.foo:8000/ip");
    assert_eq!(code, "200", "{body}");
    assert_eq!(origin(&body), "10.244.0.3");
}

#[test]
fn a_kept_node_survives_and_its_teardown_command_removes_it() {
    let node = create(&topology(0)).unwrap();
    let pid = start_app(&node, "httpbin.foo", &["--port", "80"]);
    let kept = node.keep();
    assert!(netns_names().contains(&kept.id));
    assert!(!process_gone(pid));
    // A later lab must not clean up a kept one.
    drop(create(&topology(0)).unwrap());
    assert!(netns_names().contains(&kept.id));
    let status = Command::new("sh")
        .arg(&kept.teardown_script)
        .status()
        .unwrap();
    assert!(status.success(), "{}", kept.teardown);
    // The killed app is our child: reap it before looking.
    let deadline = Instant::now() + T;
    while !process_gone(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(node::leftovers_of(&kept.id), Vec::<String>::new());
}

const CHILD_ENV: &str = "PEERAUTH_NODE_TEST_CHILD";

/// Not a test on its own: run by the two tests below as a child process that holds
/// a lab (with a running app) until it is signalled.
#[test]
fn child_holds_a_lab_until_signalled() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let node = create(&topology(0)).unwrap();
    let pid = start_app(&node, "httpbin.foo", &["--port", "80"]);
    ctrlc::set_handler(|| {
        node::teardown_all();
        std::process::exit(130);
    })
    .unwrap();
    println!("LAB {} {pid}", node.id());
    std::thread::sleep(Duration::from_secs(120));
}

/// Start the holder child; `(child, lab id, app pid)`.
fn start_holder() -> (std::process::Child, String, u32) {
    // The child's own create removes dead owners' labs too.
    let _creating = CREATES.read().unwrap_or_else(|e| e.into_inner());
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_holds_a_lab_until_signalled",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines
        .find_map(|l| {
            l.ok()
                .and_then(|l| l.split_once("LAB ").map(|(_, v)| v.to_string()))
        })
        .expect("the child prints its lab");
    // The harness prints `test <name> ... ` on the same line first.
    let mut w = line.split_whitespace();
    let id = w.next().unwrap().to_string();
    let pid = w.next().unwrap().parse().unwrap();
    (child, id, pid)
}

fn wait_exit(child: &mut std::process::Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + T;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(Instant::now() < deadline, "the child did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_lab_holder_interrupted_by_sigint_leaves_nothing_behind() {
    let (mut child, id, app) = start_holder();
    assert!(!node::leftovers_of(&id).is_empty());
    assert!(!process_gone(app));
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let status = wait_exit(&mut child);
    assert_eq!(status.code(), Some(130));
    assert_eq!(node::leftovers_of(&id), Vec::<String>::new());
    assert!(process_gone(app));
}

#[test]
fn a_lab_whose_owner_was_killed_is_removed_by_the_next_create() {
    let (mut child, id, app) = start_holder();
    let _alone = CREATES.write().unwrap_or_else(|e| e.into_inner());
    Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status()
        .unwrap();
    wait_exit(&mut child);
    // SIGKILL runs no handler: the lab, and its app in its own process group, remain.
    assert!(!node::leftovers_of(&id).is_empty());
    assert!(!process_gone(app));
    drop(Node::create(&topology(0)).unwrap());
    assert_eq!(node::leftovers_of(&id), Vec::<String>::new());
    assert!(process_gone(app));
}

#[test]
fn preflight_names_the_missing_iptables_and_how_to_install_it() {
    let real = std::env::var_os("PATH").unwrap();
    let dir = std::env::temp_dir().join(format!("node-preflight-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for tool in [
        "ip",
        "iptables-restore",
        "iptables-save",
        "setpriv",
        "tcpdump",
        "kill",
        "sysctl",
    ] {
        let target = node::find_on_path(tool, &real).unwrap();
        let link = dir.join(tool);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(target, link).unwrap();
    }
    let err = node::preflight_in(dir.as_os_str()).unwrap_err();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(matches!(err, NodeError::Missing { .. }));
    assert_eq!(
        err.to_string(),
        "iptables not found: apt-get install iptables"
    );
    // With the machine's own PATH (CI installs every tool), nothing is missing.
    node::preflight().unwrap();
}

/// `cat path` as uid 1337 inside a pod: what Envoy could read.
fn cat_as_proxy(node: &Node, path: &Path) -> Option<String> {
    let uid = PROXY_UID.to_string();
    let out = node
        .exec(
            "sleep.foo",
            "setpriv",
            &[
                "--reuid",
                &uid,
                "--regid",
                &uid,
                "--clear-groups",
                "--",
                "cat",
                path.to_str().unwrap(),
            ],
            T,
        )
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn files_made_proxy_readable_stay_apart_by_source_and_keys_belong_to_uid_1337() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let node = create(&topology(0)).unwrap();
    // Sources in a root-only directory, as /root is here.
    let src = std::env::temp_dir().join(format!("node-private-{}", std::process::id()));
    for pod in ["a", "b"] {
        std::fs::create_dir_all(src.join(pod)).unwrap();
        std::fs::write(
            src.join(pod).join("cert-chain.pem"),
            format!("chain of {pod}"),
        )
        .unwrap();
        std::fs::set_permissions(
            src.join(pod).join("cert-chain.pem"),
            PermissionsExt::from_mode(0o644),
        )
        .unwrap();
    }
    std::fs::write(src.join("a").join("key.pem"), "secret of a").unwrap();
    std::fs::set_permissions(
        src.join("a").join("key.pem"),
        PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    std::fs::set_permissions(&src, PermissionsExt::from_mode(0o700)).unwrap();
    assert_eq!(
        cat_as_proxy(&node, &src.join("a").join("cert-chain.pem")),
        None
    );

    let a = node
        .proxy_readable(&src.join("a").join("cert-chain.pem"))
        .unwrap();
    let b = node
        .proxy_readable(&src.join("b").join("cert-chain.pem"))
        .unwrap();
    assert_ne!(a, b);
    assert_eq!(cat_as_proxy(&node, &a).as_deref(), Some("chain of a"));
    assert_eq!(cat_as_proxy(&node, &b).as_deref(), Some("chain of b"));
    let not_world = node.proxy_readable(&src.join("a").join("key.pem")).unwrap();
    assert_eq!(
        cat_as_proxy(&node, &not_world).as_deref(),
        Some("secret of a")
    );
    // The source keeps its mode: a copy, not a link, was made readable.
    let source_mode = std::fs::metadata(src.join("a").join("key.pem"))
        .unwrap()
        .mode();
    assert_eq!(source_mode & 0o777, 0o600);

    let key = node.proxy_private(&src.join("a").join("key.pem")).unwrap();
    let meta = std::fs::metadata(&key).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o777),
        (PROXY_UID, PROXY_UID, 0o600)
    );
    assert_eq!(cat_as_proxy(&node, &key).as_deref(), Some("secret of a"));
    std::fs::remove_dir_all(&src).unwrap();
}

/// The machine's own network state, as the commands that show it print it.
fn host_network() -> Vec<String> {
    let run = |args: &[&str]| {
        String::from_utf8_lossy(
            &Command::new(args[0])
                .args(&args[1..])
                .output()
                .unwrap()
                .stdout,
        )
        .into_owned()
    };
    vec![
        // Link names and addresses, without counters or states that change on their own.
        run(&["ip", "-o", "link", "show"])
            .lines()
            .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
            .collect::<Vec<_>>()
            .join(" "),
        run(&["ip", "-o", "addr", "show"]),
        run(&["ip", "route", "show", "table", "all"]),
        run(&["ip", "rule", "show"]),
        run(&["sysctl", "net.ipv4.ip_forward"]),
        run(&["iptables", "-t", "nat", "-S"]),
        run(&["iptables", "-t", "filter", "-S"]),
    ]
}

#[test]
fn the_machines_own_namespace_gets_no_link_address_route_rule_or_sysctl() {
    let before = host_network();
    let node = create(&topology(0)).unwrap();
    node.capture_traffic("httpbin.foo").unwrap();
    start_app(&node, "httpbin.foo", &["--port", "15006"]);
    let (code, _, _) = curl(&node, "sleep.foo", "http://httpbin.foo:8000/ip");
    assert_eq!(code, "200");
    assert_eq!(host_network(), before);
    drop(node);
    assert_eq!(host_network(), before);
}

/// The seed lab's workloads (`manifests/workloads/*.yaml`) as `policy` reads them.
fn seed_topology() -> Topology {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/workloads");
    let mut resources = Vec::new();
    let mut documents = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let loaded = policy::source::load(&text, &file.display().to_string());
        assert!(loaded.errors.is_empty(), "{file:?}: {:?}", loaded.errors);
        resources.extend(loaded.resources);
        documents.extend(peerauth_tests::demo::crd::yaml_documents(&text).unwrap());
    }
    let (mesh, _) = policy::mesh::Mesh::build(&resources, policy::MeshConfig::default());
    Topology::from_mesh(&mesh, &documents).unwrap()
}

#[test]
fn the_seed_labs_pods_reach_httpbin_across_namespaces_by_cluster_dns_names() {
    let topology = seed_topology();
    let node = create(&topology).unwrap();
    for pod in &topology.pods {
        assert!(node.netns(&pod.key()).is_some(), "{}", pod.key());
    }
    for ns in ["foo", "bar", "legacy"] {
        start_app(&node, &format!("httpbin.{ns}"), &["--port", "80"]);
    }
    let ip_of = |key: &str| {
        topology
            .pods
            .iter()
            .find(|p| p.key() == key)
            .unwrap()
            .ip
            .to_string()
    };
    for client in ["sleep.foo", "sleep.bar", "sleep.legacy"] {
        for server in ["foo", "bar", "legacy"] {
            let url = format!("http://httpbin.{server}:8000/where");
            let (code, body, _) = curl(&node, client, &url);
            assert_eq!(code, "200", "{client} → {url}: {body}");
            let expected = format!(
                "lab-app on {}:80: GET /where from {}:",
                ip_of(&format!("httpbin.{server}")),
                ip_of(client)
            );
            assert!(body.starts_with(&expected), "{client} → {url}: {body}");
        }
    }
    // The short name is the client's own namespace's Service, as with cluster DNS.
    let (_, body, _) = curl(&node, "sleep.bar", "http://httpbin:8000/where");
    assert!(
        body.starts_with(&format!("lab-app on {}:80:", ip_of("httpbin.bar"))),
        "{body}"
    );
}

const PREFLIGHT_CHILD_ENV: &str = "PEERAUTH_NODE_TEST_PREFLIGHT";

/// Not a test on its own: run by the test below as uid 1337, it prints what
/// preflight says.
#[test]
fn child_reports_preflight() {
    if std::env::var_os(PREFLIGHT_CHILD_ENV).is_none() {
        return;
    }
    match node::preflight() {
        Ok(()) => println!("PREFLIGHT ok"),
        Err(e) => println!("PREFLIGHT {e}"),
    }
}

#[test]
fn preflight_as_a_user_without_sudo_says_the_lab_needs_root_in_one_line() {
    let uid = PROXY_UID.to_string();
    let out = Command::new("setpriv")
        .args(["--reuid", &uid, "--regid", &uid, "--clear-groups", "--"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_reports_preflight",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(PREFLIGHT_CHILD_ENV, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let said = stdout
        .lines()
        .find_map(|l| l.split_once("PREFLIGHT ").map(|(_, v)| v.to_string()))
        .unwrap_or_else(|| panic!("{stdout}{}", String::from_utf8_lossy(&out.stderr)));
    // uid 1337 has no sudo rights here (and Debian's CI image has no sudo at all).
    assert_eq!(
        said,
        "not root and no working sudo: the lab needs root to create network namespaces; run it as root"
    );
}

#[test]
fn a_service_without_endpoints_is_refused_at_once_as_kube_proxy_rejects_it() {
    let mut topology = topology(0);
    let mut nobody = topology.services[0].clone();
    nobody.name = "nobody".into();
    nobody.cluster_ip = Ipv4Addr::new(10, 96, 0, 11);
    nobody.selector = BTreeMap::from([("app".to_string(), "nobody".to_string())]);
    topology.services.push(nobody);
    let node = create(&topology).unwrap();
    let started = Instant::now();
    let (code, _, exit) = curl(&node, "sleep.foo", "http://nobody.foo:8000/ip");
    // curl exit 7: connection refused (the node's ICMP port unreachable), not a timeout.
    assert_eq!((code.as_str(), exit), ("000", 7));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(node
        .node_iptables_save()
        .unwrap()
        .contains("foo/nobody:http has no endpoints"));
}
