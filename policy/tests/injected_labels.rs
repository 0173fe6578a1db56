//! Selectors match the live pod's labels, which on an injected pod include the
//! ones Istio's sidecar injector adds (istio/istio
//! `manifests/charts/istio-control/istio-discovery/files/injection-template.yaml`):
//! `security.istio.io/tlsMode: istio`, `service.istio.io/canonical-name`
//! (here `app`, `httpbin`) and `service.istio.io/canonical-revision`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use policy::mesh::Workload;
use policy::resolve::Level;
use policy::{check, MeshConfig, MtlsMode, Report};

const NO_MATCH: &str = "pa-selector-matches-no-workload";

fn mesh_with(namespace_labels: &str, selector: &str) -> String {
    format!(
        "\
apiVersion: v1
kind: Namespace
metadata:
  name: foo
  labels: {namespace_labels}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: httpbin
  namespace: foo
spec:
  template:
    metadata:
      labels:
        app: httpbin
    spec:
      containers:
      - name: httpbin
        ports:
        - containerPort: 8080
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: strict
  namespace: foo
spec:
  selector:
    matchLabels:
      {selector}
  mtls:
    mode: STRICT
"
    )
}

fn run(text: &str) -> Report {
    check(&[("mesh.yaml", text)], MeshConfig::default())
}

fn httpbin(report: &Report) -> &Workload {
    report
        .mesh
        .workloads
        .iter()
        .find(|w| w.name == "httpbin")
        .expect("httpbin is a workload")
}

fn warnings(report: &Report) -> Vec<&str> {
    report
        .diagnostics
        .iter()
        .filter(|d| d.code == NO_MATCH)
        .map(|d| d.message.as_str())
        .collect()
}

/// The workload mode and that of port 8080, as `describe` reports them.
fn described(report: &Report) -> (MtlsMode, Level, MtlsMode) {
    let d = report.mesh.describe(httpbin(report));
    (d.workload.mode, d.workload.decided_at, d.ports[&8080].mode)
}

#[test]
fn a_strict_policy_selecting_tls_mode_istio_applies_to_an_injected_pod() {
    let report = run(&mesh_with(
        "{istio-injection: enabled}",
        "security.istio.io/tlsMode: istio",
    ));
    assert_eq!(
        described(&report),
        (MtlsMode::Strict, Level::Workload, MtlsMode::Strict)
    );
    assert!(warnings(&report).is_empty(), "{:#?}", report.diagnostics);
}

#[test]
fn a_strict_policy_selecting_the_canonical_name_applies_to_an_injected_pod() {
    let report = run(&mesh_with(
        "{istio-injection: enabled}",
        "service.istio.io/canonical-name: httpbin",
    ));
    assert_eq!(
        described(&report),
        (MtlsMode::Strict, Level::Workload, MtlsMode::Strict)
    );
    assert!(warnings(&report).is_empty(), "{:#?}", report.diagnostics);
}

#[test]
fn an_injected_pod_carries_the_injectors_three_labels_besides_its_own() {
    let report = run(&mesh_with("{istio.io/rev: canary}", "app: httpbin"));
    let labels: Vec<(&str, &str)> = httpbin(&report)
        .labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        labels,
        [
            ("app", "httpbin"),
            ("security.istio.io/tlsMode", "istio"),
            ("service.istio.io/canonical-name", "httpbin"),
            ("service.istio.io/canonical-revision", "latest"),
        ]
    );
}

#[test]
fn without_injection_a_policy_selecting_tls_mode_istio_selects_nothing_and_is_reported() {
    let report = run(&mesh_with("{}", "security.istio.io/tlsMode: istio"));
    assert_eq!(
        described(&report),
        (MtlsMode::Permissive, Level::Default, MtlsMode::Permissive)
    );
    assert_eq!(
        warnings(&report),
        ["selector security.istio.io/tlsMode=istio of foo/strict matches no workload in namespace foo"]
    );
}

#[test]
fn a_pod_that_opts_out_of_injection_gets_no_injector_labels() {
    let text = mesh_with(
        "{istio-injection: enabled}",
        "security.istio.io/tlsMode: istio",
    )
    .replace(
        "        app: httpbin\n",
        "        app: httpbin\n        sidecar.istio.io/inject: \"false\"\n",
    );
    let report = run(&text);
    assert!(!httpbin(&report).sidecar);
    assert!(!httpbin(&report)
        .labels
        .contains_key("security.istio.io/tlsMode"));
    assert_eq!(warnings(&report).len(), 1, "{:#?}", report.diagnostics);
}

#[test]
fn an_ambient_pod_is_not_injected_so_it_has_no_tls_mode_label() {
    let report = run(&mesh_with(
        "{istio.io/dataplane-mode: ambient}",
        "security.istio.io/tlsMode: istio",
    ));
    let w = httpbin(&report);
    assert!(w.ambient && !w.sidecar);
    assert!(!w.labels.contains_key("security.istio.io/tlsMode"));
    assert!(!w.labels.contains_key("service.istio.io/canonical-name"));
    assert_eq!(warnings(&report).len(), 1, "{:#?}", report.diagnostics);
}

#[test]
fn a_selector_on_a_topology_label_that_matches_nothing_says_istiod_adds_it() {
    let report = run(&mesh_with(
        "{istio-injection: enabled}",
        "topology.istio.io/cluster: east",
    ));
    let found = warnings(&report);
    assert_eq!(found.len(), 1, "{:#?}", report.diagnostics);
    assert!(
        found[0].contains("topology.istio.io/cluster is added by istiod")
            && found[0].contains("not model"),
        "{}",
        found[0]
    );
    let zone = run(&mesh_with(
        "{istio-injection: enabled}",
        "topology.kubernetes.io/zone: a",
    ));
    assert!(
        warnings(&zone)[0].contains("topology.kubernetes.io/zone is added by istiod"),
        "{:#?}",
        zone.diagnostics
    );
}

#[test]
fn a_selector_without_topology_labels_gets_no_caveat() {
    let report = run(&mesh_with("{istio-injection: enabled}", "app: httbin"));
    assert_eq!(
        warnings(&report),
        ["selector app=httbin of foo/strict matches no workload in namespace foo"]
    );
}
