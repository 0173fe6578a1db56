//! The page's contract on the seed 004 ambient example: workloads carry what
//! ztunnel enforces, servers say they are ambient, and sidecar-only inputs
//! gain no field (their JSON is as before).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use peerauth_web::evaluate_json;
use serde_json::Value;

const AMBIENT: [&str; 2] = [
    include_str!("../../manifests/lab/ambient/workloads.yaml"),
    include_str!("../../manifests/lab/ambient/peer-authentication.yaml"),
];

fn run(text: &str) -> Value {
    serde_json::from_str(&evaluate_json(text, "")).expect("evaluate_json returns JSON")
}

#[test]
fn ambient_workloads_carry_ztunnels_modes_and_servers_say_they_are_ambient() {
    let out = run(&AMBIENT.join("\n---\n"));
    let workload = |ns: &str, name: &str| {
        out["workloads"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["namespace"] == ns && w["name"] == name)
            .unwrap()
            .clone()
    };
    let bar = workload("bar", "httpbin");
    assert_eq!(bar["workload"]["mode"], "DISABLE");
    assert_eq!(bar["ambient"]["workload"], "PERMISSIVE");
    assert_eq!(workload("foo", "httpbin")["ambient"]["workload"], "STRICT");
    assert!(workload("legacy", "httpbin").get("ambient").is_none());
    let services = out["matrix"]["services"].as_array().unwrap();
    let foo = services
        .iter()
        .find(|s| s["namespace"] == "foo" && s["name"] == "httpbin")
        .unwrap();
    assert_eq!(foo["server"]["ambient"], true);
    assert_eq!(foo["server_mode"], "STRICT");
}

#[test]
fn sidecar_only_inputs_get_no_ambient_fields() {
    let out = run(include_str!("../../manifests/workloads/foo.yaml"));
    let text = out.to_string();
    assert!(!text.contains("\"ambient\""), "{text}");
    assert!(!text.contains("\"waypoint\""), "{text}");
}

/// The page words a cell from the column's server, which cannot tell that a
/// sidecar's DestinationRule TLS rides inside HBONE to an ambient pod
/// (istiod `cluster_tls.go`): for such a cell policy's own sentence comes with
/// the cell, and a cell the page can word itself stays six elements long.
#[test]
fn a_sidecar_calling_an_ambient_pod_carries_policys_sentence_and_others_do_not() {
    let sidecar = "\
apiVersion: v1
kind: Namespace
metadata: {name: side, labels: {istio-injection: enabled}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: sleep, namespace: side}
spec: {template: {metadata: {labels: {app: sleep}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: simple, namespace: side}
spec: {host: httpbin.foo.svc.cluster.local, trafficPolicy: {tls: {mode: SIMPLE}}}
";
    let out = run(&[AMBIENT[0], AMBIENT[1], sidecar].join("\n---\n"));
    let matrix = &out["matrix"];
    let index = |list: &str, ns: &str, name: &str| {
        matrix[list]
            .as_array()
            .unwrap()
            .iter()
            .position(|e| e["namespace"] == ns && e["name"] == name)
            .unwrap()
    };
    let cell = |client: usize, service: usize| {
        matrix["cells"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c[0] == client && c[1] == service)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    };
    let foo = index("services", "foo", "httpbin");
    let from_side = cell(index("clients", "side", "sleep"), foo);
    assert_eq!(from_side.len(), 7, "{from_side:?}");
    let sentence = from_side[6].as_str().unwrap();
    assert!(sentence.contains("HBONE"), "{sentence}");
    let from_legacy = cell(index("clients", "legacy", "sleep"), foo);
    assert_eq!(from_legacy.len(), 6, "{from_legacy:?}");
}
