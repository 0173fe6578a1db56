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
