//! The sidecar bootstraps `peerauth_tests::istiod` generates, checked two ways:
//! Envoy's own validation (`envoy --mode validate`) accepts every sidecar of the seed
//! lab in every step, and the structure istiod would generate is there, with expected
//! values written from istiod's source and shared/notes/istio-sidecar-dataplane.md
//! (the tables of chains, ALPN sets, SNI and cluster names), not from the generator.
//! Needs `envoy` and the built filter (`make build-filter`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use peerauth_tests::demo::crd;
use peerauth_tests::envoy::envoy_binary;
use peerauth_tests::istiod::{self, IstiodError, Sidecar, SidecarFiles, WasmPlugin};
use peerauth_tests::pki::MeshPki;
use peerauth_tests::topology::Topology;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn yaml_files(dir: &Path) -> Vec<(String, String)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p.display().to_string(), text)
        })
        .collect()
}

/// The step folders of the seed lab, in order.
fn steps() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(repo().join("manifests/steps"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 6, "{names:?}");
    names
}

/// The mesh and topology of the workloads plus one step, built as the lab builds them
/// (`policy::check` over the files, `Topology::from_mesh` over the same documents).
struct World {
    step: String,
    mesh: policy::Mesh,
    topology: Topology,
}

fn world(step_prefix: &str) -> World {
    let step = steps()
        .into_iter()
        .find(|s| s.starts_with(step_prefix))
        .unwrap();
    let mut files = yaml_files(&repo().join("manifests/workloads"));
    files.extend(yaml_files(&repo().join("manifests/steps").join(&step)));
    world_of(&step, files)
}

fn world_of(step: &str, files: Vec<(String, String)>) -> World {
    let sources: Vec<(&str, &str)> = files
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    let mesh = policy::check(&sources, policy::MeshConfig::default()).mesh;
    let documents: Vec<Value> = files
        .iter()
        .flat_map(|(_, t)| crd::yaml_documents(t).unwrap())
        .collect();
    let topology = Topology::from_mesh(&mesh, &documents).unwrap();
    World {
        step: step.to_string(),
        mesh,
        topology,
    }
}

/// The plugins a cluster would have in `step`: the audit plugins, plus the plugin whose
/// `peerauth.dev/lab-step` annotation names the step.
fn plugins_for_step(step: &str) -> Vec<WasmPlugin> {
    let mut out = Vec::new();
    for (name, text) in yaml_files(&repo().join("manifests/wasmplugin")) {
        let docs: Vec<Value> = crd::yaml_documents(&text)
            .unwrap()
            .into_iter()
            .filter(|d| d["kind"] == "WasmPlugin")
            .collect();
        let plugins = istiod::wasm_plugins(&name, &text).unwrap();
        assert_eq!(docs.len(), plugins.len());
        for (doc, plugin) in docs.iter().zip(plugins) {
            if plugin.name == "peerauth-audit"
                || doc["metadata"]["annotations"]["peerauth.dev/lab-step"] == step
            {
                out.push(plugin);
            }
        }
    }
    out
}

fn wasm_module() -> PathBuf {
    let wasm = std::env::var_os("PEERAUTH_FILTER_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("out/peerauth_filter.wasm"));
    assert!(
        wasm.is_file(),
        "{} is missing: run `make build-filter`",
        wasm.display()
    );
    wasm
}

/// Certificates for every pod, as the mesh CA issues them.
struct Certs {
    dir: PathBuf,
    pki: MeshPki,
}

fn issue_certs(name: &str, topology: &Topology) -> Certs {
    let dir = std::env::temp_dir().join(format!("istiod-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut pki = MeshPki::generate(&dir.join("pki")).unwrap();
    for pod in &topology.pods {
        pki.issue(&format!("{}.{}", pod.service_account, pod.namespace))
            .unwrap();
    }
    Certs { dir, pki }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn files_for(certs: &Certs, pod: &peerauth_tests::topology::Pod) -> SidecarFiles {
    let id = certs
        .pki
        .workload(&format!("{}.{}", pod.service_account, pod.namespace))
        .unwrap();
    SidecarFiles {
        cert_chain: id.cert_chain.clone(),
        private_key: id.key.clone(),
        root_cert: certs.pki.root.clone(),
        admin_socket: certs.dir.join(format!("{}.admin.sock", pod.key())),
    }
}

fn bootstrap_of(
    w: &World,
    certs: &Certs,
    pod: &str,
    plugins: &[WasmPlugin],
) -> Result<Value, IstiodError> {
    let (name, ns) = pod.split_once('.').unwrap();
    let pod = w.topology.pod(name, ns).unwrap();
    istiod::bootstrap(&Sidecar {
        mesh: &w.mesh,
        topology: &w.topology,
        pod,
        files: files_for(certs, pod),
        wasm_module: Some(wasm_module()),
        plugins,
        upstream_debug: false,
    })
}

fn listener<'a>(b: &'a Value, name: &str) -> &'a Value {
    b["static_resources"]["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == name)
        .unwrap_or_else(|| panic!("no listener {name}"))
}

fn cluster<'a>(b: &'a Value, name: &str) -> &'a Value {
    b["static_resources"]["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no cluster {name}"))
}

/// `(name, transport_protocol, application_protocols, terminal filter)` of every chain.
fn chain_table(inbound: &Value) -> Vec<(String, String, Vec<String>, String)> {
    inbound["filter_chains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let m = &c["filter_chain_match"];
            let alpns = m["application_protocols"]
                .as_array()
                .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
                .unwrap_or_default();
            let last = c["filters"].as_array().unwrap().last().unwrap()["name"]
                .as_str()
                .unwrap()
                .trim_start_matches("envoy.filters.network.")
                .to_string();
            (
                c["name"].as_str().unwrap().to_string(),
                m["transport_protocol"].as_str().unwrap_or("").to_string(),
                alpns,
                last,
            )
        })
        .collect()
}

fn row(
    name: &str,
    transport: &str,
    alpns: &[&str],
    last: &str,
) -> (String, String, Vec<String>, String) {
    (
        name.into(),
        transport.into(),
        alpns.iter().map(|s| s.to_string()).collect(),
        last.into(),
    )
}

// The note's ALPN sets (§2, from listener.go), written out.
const H: &[&str] = &["istio-http/1.0", "istio-http/1.1", "istio-h2"];
const A: &[&str] = &[
    "istio",
    "istio-peer-exchange",
    "istio-http/1.0",
    "istio-http/1.1",
    "istio-h2",
];
const X: &[&str] = &["istio-peer-exchange", "istio"];
const P: &[&str] = &["http/1.1", "h2c"];
const HCM: &str = "http_connection_manager";
const TCP: &str = "tcp_proxy";

/// `envoy --mode validate` accepts `bootstrap` (Envoy's own checks: every field, every
/// typed config, every cluster a route or filter names, every file it reads).
fn envoy_validates(certs: &Certs, what: &str, bootstrap: &Value) {
    let path = certs
        .dir
        .join(format!("{}.json", what.replace([' ', '/'], "_")));
    std::fs::write(&path, serde_json::to_vec_pretty(bootstrap).unwrap()).unwrap();
    let out = Command::new(envoy_binary())
        .args([
            "--mode",
            "validate",
            "--disable-hot-restart",
            "-l",
            "warning",
            "-c",
        ])
        .arg(&path)
        .output()
        .expect("envoy on PATH (make setup)");
    assert!(
        out.status.success(),
        "{what}: envoy refused the bootstrap:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn envoy_validates_every_sidecar_bootstrap_of_every_seed_lab_step() {
    let module = wasm_module();
    let mut checked = 0;
    for step in steps() {
        let w = world(&step);
        let plugins = plugins_for_step(&step);
        let certs = issue_certs(&format!("validate-{step}"), &w.topology);
        for pod in w.topology.pods.iter().filter(|p| p.sidecar) {
            let b = istiod::bootstrap(&Sidecar {
                mesh: &w.mesh,
                topology: &w.topology,
                pod,
                files: files_for(&certs, pod),
                wasm_module: Some(module.clone()),
                plugins: &plugins,
                upstream_debug: false,
            })
            .unwrap();
            envoy_validates(&certs, &format!("{step} {}", pod.key()), &b);
            checked += 1;
        }
    }
    // Four sidecars (sleep and httpbin in foo and bar) in six steps.
    assert_eq!(checked, 24);
}

#[test]
fn a_pod_without_sidecar_gets_no_bootstrap() {
    let w = world("1-");
    let certs = issue_certs("nosidecar", &w.topology);
    let err = bootstrap_of(&w, &certs, "httpbin.legacy", &[]).unwrap_err();
    assert_eq!(err, IstiodError::NoSidecar("httpbin.legacy".into()));
}

#[test]
fn permissive_http_port_gets_istios_permissive_chains_after_the_auto_passthrough_chains() {
    let w = world("1-");
    let certs = issue_certs("permissive", &w.topology);
    let b = bootstrap_of(&w, &certs, "httpbin.foo", &[]).unwrap();
    let inbound = listener(&b, "virtualInbound");
    assert_eq!(inbound["address"]["socket_address"]["port_value"], 15006);
    assert_eq!(
        chain_table(inbound),
        vec![
            row("virtualInbound-blackhole", "", &[], TCP),
            // Passthrough = the "auto" row of the note's table, PERMISSIVE.
            row("virtualInbound-catchall-http", "tls", H, HCM),
            row("virtualInbound-catchall-http", "raw_buffer", P, HCM),
            row("virtualInbound", "tls", X, TCP),
            row("virtualInbound", "raw_buffer", &[], TCP),
            row("virtualInbound", "tls", &[], TCP),
            // Port 80 (Service port `http` → HTTP), PERMISSIVE: tls+A T HCM · raw HCM.
            row("0.0.0.0_80", "tls", A, HCM),
            row("0.0.0.0_80", "raw_buffer", &[], HCM),
        ]
    );
    let chains = inbound["filter_chains"].as_array().unwrap();
    assert_eq!(chains[0]["filter_chain_match"]["destination_port"], 15006);
    assert!(chains[1]["filter_chain_match"]["destination_port"].is_null());
    assert_eq!(chains[6]["filter_chain_match"]["destination_port"], 80);
    assert_eq!(chains[7]["filter_chain_match"]["destination_port"], 80);
    // Only the terminating chains have a TLS context; the plain-TLS TCP chain does not.
    let has_tls: Vec<bool> = chains
        .iter()
        .map(|c| !c["transport_socket"].is_null())
        .collect();
    assert_eq!(
        has_tls,
        [false, true, false, true, false, false, true, false]
    );
    // Listener filters in order; inspectors switched off where no chain needs them:
    // TLS everywhere but 15006, HTTP on neither 15006 nor 80.
    let lf: Vec<&str> = inbound["listener_filters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        lf,
        [
            "envoy.filters.listener.original_dst",
            "envoy.filters.listener.tls_inspector",
            "envoy.filters.listener.http_inspector"
        ]
    );
    assert_eq!(
        inbound["listener_filters"][1]["filter_disabled"],
        json!({"destination_port_range": {"start": 15006, "end": 15007}})
    );
    assert_eq!(
        inbound["listener_filters"][2]["filter_disabled"],
        json!({"or_match": {"rules": [
            {"destination_port_range": {"start": 80, "end": 81}},
            {"destination_port_range": {"start": 15006, "end": 15007}}
        ]}})
    );
    assert!(inbound["use_original_dst"].is_null());
}

#[test]
fn downstream_tls_requires_a_client_certificate_from_the_trust_domain_with_alpn_per_chain_type() {
    let w = world("1-");
    let certs = issue_certs("downstream", &w.topology);
    let b = bootstrap_of(&w, &certs, "httpbin.foo", &[]).unwrap();
    let chains = listener(&b, "virtualInbound")["filter_chains"]
        .as_array()
        .unwrap()
        .clone();
    let ctx = |i: usize| chains[i]["transport_socket"]["typed_config"].clone();
    let http = ctx(6);
    assert_eq!(
        http["@type"],
        "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
    );
    assert_eq!(http["require_client_certificate"], true);
    let common = &http["common_tls_context"];
    assert_eq!(common["alpn_protocols"], json!(["h2", "http/1.1"]));
    assert_eq!(
        common["tls_params"]["tls_minimum_protocol_version"],
        "TLSv1_2"
    );
    assert_eq!(
        common["tls_params"]["tls_maximum_protocol_version"],
        "TLSv1_3"
    );
    assert_eq!(
        common["combined_validation_context"]["default_validation_context"]
            ["match_subject_alt_names"],
        json!([{"prefix": "spiffe://cluster.local/"}])
    );
    assert_eq!(
        common["tls_certificate_sds_secret_configs"],
        json!([{"name": "default"}])
    );
    assert_eq!(
        common["combined_validation_context"]["validation_context_sds_secret_config"],
        json!({"name": "ROOTCA"})
    );
    // The TCP chain (passthrough, ALPN X) advertises istio-peer-exchange first.
    assert_eq!(
        ctx(3)["common_tls_context"]["alpn_protocols"],
        json!(["istio-peer-exchange", "h2", "http/1.1"])
    );
    // HCM settings of Istio's inbound.
    let hcm = &chains[6]["filters"].as_array().unwrap().last().unwrap()["typed_config"];
    assert_eq!(hcm["stat_prefix"], "inbound_0.0.0.0_80;");
    assert_eq!(hcm["forward_client_cert_details"], "APPEND_FORWARD");
    assert_eq!(
        hcm["set_current_client_cert_details"],
        json!({"subject": true, "uri": true, "dns": true})
    );
    assert_eq!(hcm["server_name"], "istio-envoy");
    assert_eq!(hcm["normalize_path"], true);
    let route = &hcm["route_config"];
    assert_eq!(route["name"], "inbound|80||");
    assert_eq!(
        route["virtual_hosts"][0]["routes"][0]["route"]["cluster"],
        "inbound|80||"
    );
    let inbound_cluster = cluster(&b, "inbound|80||");
    assert_eq!(inbound_cluster["type"], "ORIGINAL_DST");
    assert_eq!(
        inbound_cluster["upstream_bind_config"]["source_address"]["address"],
        "127.0.0.6"
    );
    assert_eq!(
        cluster(&b, "InboundPassthroughCluster")["type"],
        "ORIGINAL_DST"
    );
    // The static secrets the contexts name.
    let secrets: Vec<&str> = b["static_resources"]["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(secrets, ["default", "ROOTCA"]);
    assert!(b["admin"]["address"]["pipe"]["path"]
        .as_str()
        .unwrap()
        .ends_with("httpbin.foo.admin.sock"));
}

#[test]
fn strict_keeps_only_mtls_chains_and_port_level_disable_keeps_only_plaintext() {
    // Step 2: mesh STRICT. HTTP port: tls T HCM; passthrough ("auto" STRICT): tls+H HCM · tls T tcp.
    let w = world("2-");
    let certs = issue_certs("strict", &w.topology);
    let b = bootstrap_of(&w, &certs, "httpbin.foo", &[]).unwrap();
    assert_eq!(
        chain_table(listener(&b, "virtualInbound")),
        vec![
            row("virtualInbound-blackhole", "", &[], TCP),
            row("virtualInbound-catchall-http", "tls", H, HCM),
            row("virtualInbound", "tls", &[], TCP),
            row("0.0.0.0_80", "tls", &[], HCM),
        ]
    );
    // Step 5: httpbin.bar STRICT with port 80 DISABLE: raw HCM on 80; the passthrough
    // chains keep the workload's STRICT.
    let w = world("5-");
    let certs = issue_certs("portlevel", &w.topology);
    let b = bootstrap_of(&w, &certs, "httpbin.bar", &[]).unwrap();
    assert_eq!(
        chain_table(listener(&b, "virtualInbound")),
        vec![
            row("virtualInbound-blackhole", "", &[], TCP),
            row("virtualInbound-catchall-http", "tls", H, HCM),
            row("virtualInbound", "tls", &[], TCP),
            row("0.0.0.0_80", "raw_buffer", &[], HCM),
        ]
    );
}

#[test]
fn the_client_cluster_for_httpbin_foo_uses_auto_mtls_with_istios_sni_alpn_and_san() {
    let w = world("1-");
    let certs = issue_certs("client", &w.topology);
    let b = bootstrap_of(&w, &certs, "sleep.foo", &[]).unwrap();
    let c = cluster(&b, "outbound|8000||httpbin.foo.svc.cluster.local");
    assert_eq!(c["type"], "STATIC");
    assert!(c["transport_socket"].is_null());
    let matches = c["transport_socket_matches"].as_array().unwrap();
    let names: Vec<&str> = matches
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["tlsMode-istio", "tlsMode-disabled"]);
    assert_eq!(matches[0]["match"], json!({"tlsMode": "istio"}));
    assert_eq!(matches[1]["match"], json!({}));
    assert_eq!(
        matches[1]["transport_socket"]["name"],
        "envoy.transport_sockets.raw_buffer"
    );
    let up = &matches[0]["transport_socket"]["typed_config"];
    assert_eq!(up["sni"], "outbound_.8000_._.httpbin.foo.svc.cluster.local");
    assert_eq!(
        up["common_tls_context"]["alpn_protocols"],
        json!(["istio-http/1.1", "istio", "http/1.1"])
    );
    assert_eq!(
        up["common_tls_context"]["combined_validation_context"]["default_validation_context"]
            ["match_subject_alt_names"],
        json!([{"exact": "spiffe://cluster.local/ns/foo/sa/httpbin"}])
    );
    // The endpoint is the pod's IP and container port 80, marked tlsMode istio.
    let httpbin = w.topology.pod("httpbin", "foo").unwrap();
    let ep = &c["load_assignment"]["endpoints"][0]["lb_endpoints"][0];
    assert_eq!(
        ep["endpoint"]["address"]["socket_address"],
        json!({"address": httpbin.ip.to_string(), "port_value": 80})
    );
    assert_eq!(
        ep["metadata"]["filter_metadata"]["envoy.transport_socket_match"],
        json!({"tlsMode": "istio"})
    );
    // A pod without a sidecar has no tlsMode: it falls to tlsMode-disabled.
    let legacy = cluster(&b, "outbound|8000||httpbin.legacy.svc.cluster.local");
    assert!(legacy["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["metadata"].is_null());
}

#[test]
fn destination_rule_istio_mutual_gives_one_tls_socket_and_disable_gives_none() {
    // Step 4: DR httpbin.bar ISTIO_MUTUAL.
    let w = world("4-");
    let certs = issue_certs("dr4", &w.topology);
    let b = bootstrap_of(&w, &certs, "sleep.foo", &[]).unwrap();
    let c = cluster(&b, "outbound|8000||httpbin.bar.svc.cluster.local");
    assert!(c["transport_socket_matches"].is_null());
    assert_eq!(c["transport_socket"]["name"], "envoy.transport_sockets.tls");
    assert_eq!(
        c["transport_socket"]["typed_config"]["sni"],
        "outbound_.8000_._.httpbin.bar.svc.cluster.local"
    );
    // Step 5: the same DR with port 8000 DISABLE.
    let w = world("5-");
    let certs = issue_certs("dr5", &w.topology);
    let b = bootstrap_of(&w, &certs, "sleep.foo", &[]).unwrap();
    let c = cluster(&b, "outbound|8000||httpbin.bar.svc.cluster.local");
    assert!(c["transport_socket"].is_null());
    assert!(c["transport_socket_matches"].is_null());
    // Step 6: DR httpbin.foo DISABLE.
    let w = world("6-");
    let certs = issue_certs("dr6", &w.topology);
    let b = bootstrap_of(&w, &certs, "sleep.bar", &[]).unwrap();
    let c = cluster(&b, "outbound|8000||httpbin.foo.svc.cluster.local");
    assert!(c["transport_socket"].is_null());
    assert!(c["transport_socket_matches"].is_null());
}

#[test]
fn outbound_listeners_are_virtual_outbound_and_unbound_per_port_listeners_with_istios_domains() {
    let w = world("1-");
    let certs = issue_certs("outbound", &w.topology);
    let b = bootstrap_of(&w, &certs, "sleep.bar", &[]).unwrap();
    let vo = listener(&b, "virtualOutbound");
    assert_eq!(vo["address"]["socket_address"]["port_value"], 15001);
    assert_eq!(vo["use_original_dst"], true);
    let names: Vec<&str> = vo["filter_chains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["virtualOutbound-blackhole", "virtualOutbound-catchall-tcp"]
    );
    let l = listener(&b, "0.0.0.0_8000");
    assert_eq!(l["bind_to_port"], false);
    assert_eq!(l["default_filter_chain"]["name"], "PassthroughFilterChain");
    let hcm = &l["filter_chains"][0]["filters"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()["typed_config"];
    assert_eq!(hcm["route_config"]["name"], "8000");
    let vhosts = hcm["route_config"]["virtual_hosts"].as_array().unwrap();
    let foo = vhosts
        .iter()
        .find(|v| v["name"] == "httpbin.foo.svc.cluster.local:8000")
        .unwrap();
    let foo_ip = w
        .topology
        .service("httpbin", "foo")
        .unwrap()
        .cluster_ip
        .to_string();
    // From bar: no bare `httpbin` for foo's Service (that one is bar's own).
    assert_eq!(
        foo["domains"],
        json!([
            "httpbin.foo.svc.cluster.local",
            "httpbin.foo.svc.cluster.local.",
            "httpbin.foo",
            "httpbin.foo.svc",
            foo_ip
        ])
    );
    let bar = vhosts
        .iter()
        .find(|v| v["name"] == "httpbin.bar.svc.cluster.local:8000")
        .unwrap();
    assert!(bar["domains"]
        .as_array()
        .unwrap()
        .contains(&json!("httpbin")));
    assert_eq!(
        foo["routes"][0]["route"]["cluster"],
        "outbound|8000||httpbin.foo.svc.cluster.local"
    );
}

#[test]
fn the_wasm_filter_goes_before_the_router_only_on_port_80_chains_in_priority_order() {
    let w = world("4-");
    let plugins = plugins_for_step(&w.step);
    let certs = issue_certs("wasm", &w.topology);
    let b = bootstrap_of(&w, &certs, "httpbin.bar", &plugins).unwrap();
    let manifest: Vec<Value> = yaml_files(&repo().join("manifests/wasmplugin"))
        .iter()
        .flat_map(|(_, t)| crd::yaml_documents(t).unwrap())
        .collect();
    let committed = |ns: &str, name: &str, step: Option<&str>| {
        manifest
            .iter()
            .find(|d| {
                d["metadata"]["namespace"] == ns
                    && d["metadata"]["name"] == name
                    && step
                        .is_none_or(|s| d["metadata"]["annotations"]["peerauth.dev/lab-step"] == s)
            })
            .unwrap()["spec"]["pluginConfig"]
            .clone()
    };
    for chain in listener(&b, "virtualInbound")["filter_chains"]
        .as_array()
        .unwrap()
    {
        let Some(hcm) = chain["filters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == "envoy.filters.network.http_connection_manager")
        else {
            continue;
        };
        let filters = hcm["typed_config"]["http_filters"].as_array().unwrap();
        let names: Vec<&str> = filters
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect();
        if chain["name"] == "0.0.0.0_80" {
            assert_eq!(
                names,
                [
                    "extensions.istio.io/wasmplugin/bar.peerauth-strict",
                    "extensions.istio.io/wasmplugin/bar.peerauth-audit",
                    "envoy.filters.http.grpc_stats",
                    "envoy.filters.http.fault",
                    "envoy.filters.http.cors",
                    "envoy.filters.http.router"
                ]
            );
            let strict = &filters[0]["typed_config"];
            assert_eq!(
                strict["@type"],
                "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
            );
            assert_eq!(strict["config"]["failure_policy"], "FAIL_CLOSED");
            assert_eq!(
                strict["config"]["vm_config"]["runtime"],
                "envoy.wasm.runtime.v8"
            );
            assert_eq!(
                strict["config"]["vm_config"]["code"]["local"]["filename"],
                wasm_module().display().to_string()
            );
            let config: Value =
                serde_json::from_str(strict["config"]["configuration"]["value"].as_str().unwrap())
                    .unwrap();
            assert_eq!(
                config,
                committed("bar", "peerauth-strict", Some("4-workload-strict"))
            );
            let audit = &filters[1]["typed_config"]["config"];
            assert_eq!(audit["failure_policy"], "FAIL_OPEN");
            let config: Value =
                serde_json::from_str(audit["configuration"]["value"].as_str().unwrap()).unwrap();
            assert_eq!(config, committed("bar", "peerauth-audit", None));
        } else {
            // Passthrough chains have no destination port: `match.ports: [80]` leaves them out.
            assert!(
                !names.iter().any(|n| n.contains("wasmplugin")),
                "{}: {names:?}",
                chain["name"]
            );
        }
    }
    // sleep.bar is selected by the audit plugin, but its match is SERVER on 80 only:
    // the outbound HCM has no wasm filter.
    let b = bootstrap_of(&w, &certs, "sleep.bar", &plugins).unwrap();
    let out = listener(&b, "0.0.0.0_8000");
    let hcm = out["filter_chains"][0]["filters"]
        .as_array()
        .unwrap()
        .last()
        .unwrap();
    assert!(!hcm.to_string().contains("wasmplugin"));
}

#[test]
fn a_selected_plugin_without_a_module_is_refused() {
    let w = world("4-");
    let plugins = plugins_for_step(&w.step);
    let certs = issue_certs("nomodule", &w.topology);
    let pod = w.topology.pod("httpbin", "bar").unwrap();
    let err = istiod::bootstrap(&Sidecar {
        mesh: &w.mesh,
        topology: &w.topology,
        pod,
        files: files_for(&certs, pod),
        wasm_module: None,
        plugins: &plugins,
        upstream_debug: false,
    })
    .unwrap_err();
    assert!(matches!(err, IstiodError::NoWasmModule { .. }), "{err}");
}

#[test]
fn envoy_validates_every_sidecar_of_the_seed_scenarios() {
    let mut checked = 0;
    for scenario in ["catalog-strict", "hipster-shop-exception"] {
        let files = yaml_files(&repo().join("manifests/lab/scenarios").join(scenario));
        let w = world_of(scenario, files);
        let plugins = all_audit_plugins();
        let certs = issue_certs(&format!("scenario-{scenario}"), &w.topology);
        for pod in w.topology.pods.iter().filter(|p| p.sidecar) {
            let b = istiod::bootstrap(&Sidecar {
                mesh: &w.mesh,
                topology: &w.topology,
                pod,
                files: files_for(&certs, pod),
                wasm_module: Some(wasm_module()),
                plugins: &plugins,
                upstream_debug: false,
            })
            .unwrap();
            envoy_validates(&certs, &format!("{scenario} {}", pod.key()), &b);
            checked += 1;
        }
    }
    assert!(checked >= 4, "{checked}");
}

fn all_audit_plugins() -> Vec<WasmPlugin> {
    let (name, text) = yaml_files(&repo().join("manifests/wasmplugin"))
        .into_iter()
        .find(|(n, _)| n.ends_with("peerauth-audit.yaml"))
        .unwrap();
    istiod::wasm_plugins(&name, &text).unwrap()
}

/// A namespace `shop` with a `db` pod serving a TCP port (`tcp-db`, 3306), an
/// unnamed (auto-detected) port 9090, and container port 7070 no Service targets,
/// its workload policy STRICT with port 7070 DISABLE; plus a client whose
/// DestinationRule to `db` is SIMPLE.
const SHOP: &str = "
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio-injection: enabled}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: db, namespace: shop}
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec:
  selector: {app: db}
  ports:
    - {name: tcp-db, port: 3306, targetPort: 3306}
    - {port: 9090, targetPort: 9090}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: db, namespace: shop}
spec:
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      serviceAccountName: db
      containers:
        - name: db
          image: db
          ports: [{containerPort: 3306}, {containerPort: 9090}, {containerPort: 7070}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: client, namespace: shop}
spec:
  selector: {matchLabels: {app: client}}
  template:
    metadata: {labels: {app: client}}
    spec:
      containers: [{name: client, image: curl}]
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: db, namespace: shop}
spec:
  selector: {matchLabels: {app: db}}
  mtls: {mode: PERMISSIVE}
  portLevelMtls:
    7070: {mode: DISABLE}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: db, namespace: shop}
spec:
  host: db
  trafficPolicy:
    tls: {mode: SIMPLE}
";

#[test]
fn tcp_and_auto_ports_get_their_rows_of_the_table_and_an_undeclared_port_level_port_its_own_passthrough(
) {
    let w = world_of("shop", vec![("shop.yaml".into(), SHOP.into())]);
    let certs = issue_certs("shop", &w.topology);
    let b = bootstrap_of(&w, &certs, "db.shop", &[]).unwrap();
    envoy_validates(&certs, "shop db", &b);
    let inbound = listener(&b, "virtualInbound");
    let table = chain_table(inbound);
    // Passthrough PERMISSIVE (5 auto chains), then the per-port passthrough for 7070
    // (portLevelMtls DISABLE, no Service: "auto" DISABLE, raw+P HCM · raw tcp), then
    // 3306 TCP PERMISSIVE and 9090 auto PERMISSIVE.
    assert_eq!(
        table,
        vec![
            row("virtualInbound-blackhole", "", &[], TCP),
            row("virtualInbound-catchall-http", "tls", H, HCM),
            row("virtualInbound-catchall-http", "raw_buffer", P, HCM),
            row("virtualInbound", "tls", X, TCP),
            row("virtualInbound", "raw_buffer", &[], TCP),
            row("virtualInbound", "tls", &[], TCP),
            row("virtualInbound-catchall-http", "raw_buffer", P, HCM),
            row("virtualInbound", "raw_buffer", &[], TCP),
            row("0.0.0.0_3306", "tls", A, TCP),
            row("0.0.0.0_3306", "tls", &[], TCP),
            row("0.0.0.0_3306", "raw_buffer", &[], TCP),
            row("0.0.0.0_9090", "tls", H, HCM),
            row("0.0.0.0_9090", "raw_buffer", P, HCM),
            row("0.0.0.0_9090", "tls", X, TCP),
            row("0.0.0.0_9090", "raw_buffer", &[], TCP),
            row("0.0.0.0_9090", "tls", &[], TCP),
        ]
    );
    let ports: Vec<Value> = inbound["filter_chains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["filter_chain_match"]["destination_port"].clone())
        .collect();
    assert_eq!(ports[6], 7070);
    assert_eq!(ports[7], 7070);
    // The per-port passthrough chains still go to InboundPassthroughCluster.
    let tcp7070 = &inbound["filter_chains"][7]["filters"][0]["typed_config"];
    assert_eq!(tcp7070["cluster"], "InboundPassthroughCluster");
    // TCP chains: tcp_proxy to inbound|3306||.
    let tcp = &inbound["filter_chains"][8]["filters"][0]["typed_config"];
    assert_eq!(tcp["cluster"], "inbound|3306||");

    // The client's outbound side: TCP and auto ports get `<ClusterIP>_<port>` listeners.
    let b = bootstrap_of(&w, &certs, "client.shop", &[]).unwrap();
    envoy_validates(&certs, "shop client", &b);
    let vip = w
        .topology
        .service("db", "shop")
        .unwrap()
        .cluster_ip
        .to_string();
    let tcp = listener(&b, &format!("{vip}_3306"));
    assert_eq!(tcp["bind_to_port"], false);
    assert_eq!(
        tcp["filter_chains"][0]["filters"][0]["typed_config"]["cluster"],
        "outbound|3306||db.shop.svc.cluster.local"
    );
    let auto = listener(&b, &format!("{vip}_9090"));
    assert_eq!(
        auto["filter_chains"][0]["filter_chain_match"]["application_protocols"],
        json!(P)
    );
    assert_eq!(
        auto["default_filter_chain"]["filters"][0]["typed_config"]["cluster"],
        "outbound|9090||db.shop.svc.cluster.local"
    );
    // DR SIMPLE: one TLS socket with no client certificate, validated against the
    // system trust store istio-agent serves as `file-root:system`.
    let c = cluster(&b, "outbound|3306||db.shop.svc.cluster.local");
    assert!(c["transport_socket_matches"].is_null());
    let common = &c["transport_socket"]["typed_config"]["common_tls_context"];
    assert!(common["tls_certificate_sds_secret_configs"].is_null());
    assert_eq!(
        common["combined_validation_context"]["validation_context_sds_secret_config"]["name"],
        "file-root:system"
    );
}

#[test]
fn a_workload_disable_policy_leaves_no_tls_chain_and_no_tls_inspector() {
    // Step 6: namespace foo STRICT, httpbin's workload policy DISABLE. The passthrough
    // chains take the workload's mode too ("auto" DISABLE: raw+P HCM · raw tcp).
    let w = world("6-");
    let certs = issue_certs("disable", &w.topology);
    let b = bootstrap_of(&w, &certs, "httpbin.foo", &[]).unwrap();
    let inbound = listener(&b, "virtualInbound");
    assert_eq!(
        chain_table(inbound),
        vec![
            row("virtualInbound-blackhole", "", &[], TCP),
            row("virtualInbound-catchall-http", "raw_buffer", P, HCM),
            row("virtualInbound", "raw_buffer", &[], TCP),
            row("0.0.0.0_80", "raw_buffer", &[], HCM),
        ]
    );
    let lf = inbound["listener_filters"].as_array().unwrap();
    let names: Vec<&str> = lf.iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "envoy.filters.listener.original_dst",
            "envoy.filters.listener.http_inspector"
        ]
    );
    assert_eq!(
        lf[1]["filter_disabled"],
        json!({"or_match": {"rules": [
            {"destination_port_range": {"start": 80, "end": 81}},
            {"destination_port_range": {"start": 15006, "end": 15007}}
        ]}})
    );
    // sleep.foo in the STRICT namespace still gets mTLS chains.
    let b = bootstrap_of(&w, &certs, "sleep.foo", &[]).unwrap();
    let table = chain_table(listener(&b, "virtualInbound"));
    assert_eq!(table.last().unwrap(), &row("0.0.0.0_80", "tls", &[], HCM));
}
