//! The filter in the pod topology: requests that go through `virtualInbound` with
//! their original destination, so the filter's counters carry the container port and
//! its log lines the client pod's IP; and two labs side by side. Needs root, envoy and
//! the built filter (`make build-filter`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use peerauth_tests::demo::expected::{CallResult, ServiceCall};
use peerauth_tests::demo::pods::{LabConfig, PodLab};
use peerauth_tests::demo::steps::{self, Step};
use peerauth_tests::node;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn config() -> LabConfig {
    let mut c = LabConfig::default_for(&repo());
    c.app = PathBuf::from(env!("CARGO_BIN_EXE_lab-app"));
    c
}

fn step(prefix: &str) -> Step {
    steps::load_steps(&repo())
        .unwrap()
        .into_iter()
        .find(|s| s.name.starts_with(prefix))
        .unwrap()
}

/// The seed pods with `prefix`'s policies.
fn seed_lab(prefix: &str) -> (PodLab, policy::Mesh) {
    let workloads = steps::workload_sources(&repo()).unwrap();
    let sources = steps::sources_for(&workloads, &step(prefix));
    let mesh = steps::mesh_of(&sources).unwrap();
    let lab = PodLab::create(config(), &mesh, &steps::documents(&sources).unwrap())
        .unwrap_or_else(|e| panic!("{e} (the pod lab needs root, envoy and `make build-filter`)"));
    (lab, mesh)
}

fn call(client: &str, service: &str) -> ServiceCall {
    ServiceCall {
        client: client.into(),
        service: service.into(),
        port: 8000,
    }
}

#[test]
fn a_plaintext_request_the_filter_rejects_is_counted_on_container_port_80_from_the_client_pod_ip() {
    // No PeerAuthentication (step 1): httpbin.bar's listener is PERMISSIVE and lets
    // plaintext in, but step 4's WasmPlugin stays, so the filter still expects STRICT
    // on port 80 — the "second lock" of manifests/wasmplugin/peerauth-strict-httpbin-bar.yaml.
    let (mut lab, mesh) = seed_lab("1-");
    let plugins = steps::wasm_plugin_file(&repo(), "peerauth-strict-httpbin-bar.yaml").unwrap();
    lab.configure(&mesh, &plugins, &["sleep.foo".into()])
        .unwrap();

    let (_, plain) = lab.call(&call("sleep.legacy", "httpbin.bar"), &[]).unwrap();
    assert_eq!(plain.result.code, "403", "{plain:?}");
    let (_, meshed) = lab.call(&call("sleep.foo", "httpbin.bar"), &[]).unwrap();
    assert_eq!(meshed.result, CallResult::ok(true), "{meshed:?}");

    let counters = lab.filter_counters("httpbin.bar").unwrap();
    let rejected: Vec<_> = counters
        .iter()
        .filter(|c| c.name == "peerauth_requests_total" && c.label("outcome") == Some("rejected"))
        .collect();
    assert_eq!(rejected.len(), 1, "{counters:#?}");
    assert_eq!(
        rejected[0].label("port"),
        Some("80"),
        "the container port, not a listener port"
    );
    assert_eq!(rejected[0].label("security"), Some("plaintext"));
    assert_eq!(rejected[0].value, 1);

    let legacy_ip = lab.pod("sleep.legacy").unwrap().ip.to_string();
    let log = lab.sidecar_log("httpbin.bar");
    let line = log
        .lines()
        .find(|l| l.contains("peerauth: outcome=rejected"))
        .unwrap_or_else(|| panic!("no rejection line in:\n{log}"));
    assert!(line.contains("port=80 "), "{line}");
    assert!(
        line.contains(&format!("source=\"{legacy_ip}:")),
        "the source is sleep.legacy's pod IP {legacy_ip}: {line}"
    );
}

#[test]
fn a_second_lab_started_while_one_runs_gets_its_own_names_and_leaves_the_first_alone() {
    let (mut first, mesh) = seed_lab("1-");
    first.configure(&mesh, &[], &[]).unwrap();
    let probe = call("sleep.foo", "httpbin.foo");
    let (_, before) = first.call(&probe, &[]).unwrap();
    assert_eq!(before.result, CallResult::ok(true));

    let (mut second, _) = seed_lab("1-");
    second.configure(&mesh, &[], &[]).unwrap();
    let first_ns = first.node().netns("sleep.foo").unwrap().to_string();
    let second_ns = second.node().netns("sleep.foo").unwrap().to_string();
    assert_ne!(first_ns, second_ns);
    let (_, other) = second.call(&probe, &[]).unwrap();
    assert_eq!(other.result, CallResult::ok(true));
    let second_id = second.node().id().to_string();
    drop(second);
    assert_eq!(node::leftovers_of(&second_id), Vec::<String>::new());

    // The first lab still answers, with the same pods and Envoys.
    let (_, after) = first.call(&probe, &[]).unwrap();
    assert_eq!(after.result, CallResult::ok(true));
    first.check_alive().unwrap();
    let first_id = first.node().id().to_string();
    assert!(!node::leftovers_of(&first_id).is_empty());
    drop(first);
    assert_eq!(node::leftovers_of(&first_id), Vec::<String>::new());
}

#[test]
fn a_crashed_envoy_fails_the_check_instead_of_passing_as_resets() {
    let (mut lab, mesh) = seed_lab("1-");
    lab.configure(&mesh, &[], &[]).unwrap();
    let pid = lab.sidecar("httpbin.foo").unwrap().pid;
    lab.node().kill(pid);
    let err = lab.check_alive().unwrap_err().to_string();
    assert!(
        err.contains("envoy in httpbin.foo is no longer running"),
        "{err}"
    );
}

#[test]
fn tcpdump_on_the_server_pod_reads_plaintext_and_not_mtls() {
    let (mut lab, mesh) = seed_lab("1-");
    lab.configure(&mesh, &[], &[]).unwrap();
    let plain = peerauth_tests::demo::wire::capture(
        &lab,
        "1-no-policy",
        &call("sleep.legacy", "httpbin.foo"),
    )
    .unwrap();
    assert!(!plain.mtls_seen);
    assert!(
        plain.request_line_readable && plain.marker_readable,
        "{plain:#?}"
    );
    let mtls =
        peerauth_tests::demo::wire::capture(&lab, "1-no-policy", &call("sleep.foo", "httpbin.foo"))
            .unwrap();
    assert!(mtls.mtls_seen);
    assert!(mtls.pcap_bytes > 1000, "packets were captured: {mtls:#?}");
    assert!(
        !mtls.request_line_readable && !mtls.marker_readable,
        "{mtls:#?}"
    );
}

#[test]
fn a_sidecar_sending_plaintext_to_a_strict_port_gets_503_from_its_own_sidecar_as_policy_predicts() {
    // Mesh STRICT (step 2) plus a DestinationRule that turns mTLS off towards
    // httpbin.foo: sleep.bar's sidecar sends plaintext, httpbin.foo's STRICT listener
    // resets it, and sleep.bar's own Envoy answers curl with 503.
    let dr = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: httpbin\n  namespace: foo\nspec:\n  host: httpbin.foo.svc.cluster.local\n  trafficPolicy:\n    tls:\n      mode: DISABLE\n";
    let workloads = steps::workload_sources(&repo()).unwrap();
    let mut sources = steps::sources_for(&workloads, &step("2-"));
    sources.push(("dr.yaml".into(), dr.into()));
    let mesh = steps::mesh_of(&sources).unwrap();
    let mut lab = PodLab::create(config(), &mesh, &steps::documents(&sources).unwrap()).unwrap();
    lab.configure(&mesh, &[], &[]).unwrap();
    let c = call("sleep.bar", "httpbin.foo");
    let predicted = peerauth_tests::demo::predict::predict(&mesh, &c).unwrap();
    let (_, observed) = lab.call(&c, &[]).unwrap();
    assert_eq!(observed.result.code, "503", "{observed:?}");
    assert!(
        observed.result.same_as(&predicted.result),
        "{observed:?} vs {predicted:?}"
    );
}
