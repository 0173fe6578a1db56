//! Ambient mode through the real binary: `describe` and `matrix` on the seed
//! 004 ambient example (manifests/lab/ambient), read back from `--json`.
//! Expected values restate Istio's rules (policy/src/ambient.rs cites them):
//! DISABLE is PERMISSIVE for ztunnel, mesh STRICT rejects callers outside
//! the mesh, ambient callers use HBONE.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{json, peerauth};
use peerauth_cli::json::{
    ClientReason, DescribeDocument, MatrixDocument, Outcome, Transport, WorkloadDataPlane,
};
use policy::ambient::DataPlane;
use policy::MtlsMode;

const DIR: &str = "manifests/lab/ambient";

#[test]
fn describe_shows_the_ambient_data_plane_and_disable_as_permissive_at_ztunnel() {
    let (code, doc): (i32, DescribeDocument) = json(&["describe", "bar/httpbin", "-f", DIR]);
    assert_eq!(code, 0);
    let [w] = doc.workloads.as_slice() else {
        panic!("one workload: {:?}", doc.workloads)
    };
    assert!(!w.sidecar);
    // istiod's composition says DISABLE; ztunnel enforces PERMISSIVE.
    assert_eq!(w.workload.mode, MtlsMode::Disable);
    let a = w.ambient.as_ref().unwrap();
    assert_eq!(a.workload, MtlsMode::Permissive);
    assert_eq!(a.ports.get(&80), Some(&MtlsMode::Permissive));
    assert!(a.ztunnel_policies.is_empty());
    assert!(a
        .notes
        .iter()
        .any(|n| n.contains("DISABLE is not supported")));

    let (_, doc): (i32, DescribeDocument) = json(&["describe", "foo/httpbin", "-f", DIR]);
    let a = doc.workloads[0].ambient.clone().unwrap();
    assert_eq!(a.workload, MtlsMode::Strict);
    assert_eq!(
        a.ztunnel_policies,
        ["istio-system/istio_converted_static_strict"]
    );

    let text = peerauth(&["describe", "foo/httpbin", "-f", DIR]).stdout;
    assert!(text.contains("Data plane: ambient"), "{text}");
    assert!(!text.contains("Sidecar: no"), "{text}");
}

#[test]
fn matrix_gives_hbone_inside_the_mesh_and_resets_plaintext_to_strict() {
    let (_, doc): (i32, MatrixDocument) = json(&["matrix", "-f", DIR]);
    let cell = |client: &str, service: &str| {
        doc.cells
            .iter()
            .find(|c| {
                format!("{}/{}", c.client.namespace, c.client.name) == client
                    && format!("{}/{}", c.service.namespace, c.service.name) == service
            })
            .unwrap()
            .clone()
    };
    let c = cell("foo/sleep", "bar/httpbin");
    assert_eq!(
        (c.outcome, c.mtls, c.transport),
        (Outcome::Allowed, true, Transport::Hbone)
    );
    assert_eq!(c.client_reason, ClientReason::Ztunnel);
    let c = cell("legacy/sleep", "foo/httpbin");
    assert_eq!(
        (c.outcome, c.transport),
        (Outcome::Reset, Transport::Plaintext)
    );
    let c = cell("legacy/sleep", "bar/httpbin");
    assert_eq!((c.outcome, c.mtls), (Outcome::Allowed, false));
}

#[test]
fn matrix_json_lists_every_workloads_data_plane_and_waypoint() {
    let (_, doc): (i32, MatrixDocument) = json(&["matrix", "-f", DIR]);
    let plane = |ns: &str, name: &str, data_plane| WorkloadDataPlane {
        namespace: ns.into(),
        name: name.into(),
        data_plane,
        waypoint: None,
    };
    assert_eq!(
        doc.data_planes,
        [
            plane("bar", "httpbin", DataPlane::Ambient),
            plane("bar", "sleep", DataPlane::Ambient),
            plane("foo", "httpbin", DataPlane::Ambient),
            plane("foo", "sleep", DataPlane::Ambient),
            plane("legacy", "httpbin", DataPlane::None),
            plane("legacy", "sleep", DataPlane::None),
        ]
    );
    // A namespace's waypoint is each of its pods' unless the pod names its
    // own; a client filter leaves the list whole.
    let yaml = "
apiVersion: v1
kind: Namespace
metadata: {name: amb, labels: {istio.io/dataplane-mode: ambient, istio.io/use-waypoint: wp}}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: amb, labels: {app: a}}
spec: {containers: [{name: c, ports: [{containerPort: 80}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: amb, labels: {app: b, istio.io/use-waypoint: other, istio.io/use-waypoint-namespace: infra}}
spec: {containers: [{name: c}]}
---
apiVersion: v1
kind: Service
metadata: {name: a, namespace: amb}
spec: {selector: {app: a}, ports: [{port: 80}]}
";
    let out = common::peerauth_with_stdin(
        &["matrix", "-f", "-", "--client-label", "app=a", "--json"],
        yaml,
    );
    let doc: MatrixDocument = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(doc.clients, ["amb/a"]);
    let waypoints: Vec<(&str, DataPlane, Option<&str>)> = doc
        .data_planes
        .iter()
        .map(|p| (p.name.as_str(), p.data_plane, p.waypoint.as_deref()))
        .collect();
    assert_eq!(
        waypoints,
        [
            ("a", DataPlane::Ambient, Some("wp")),
            ("b", DataPlane::Ambient, Some("infra/other"))
        ]
    );
}

#[test]
fn the_matrix_table_names_each_workloads_data_plane_when_the_mesh_has_ambient_workloads() {
    let text = peerauth(&["matrix", "-f", DIR]).stdout;
    assert!(
        text.contains("(data plane: ambient (ztunnel, HBONE): httpbin.bar, httpbin.foo, sleep.bar, sleep.foo; outside the mesh: httpbin.legacy, sleep.legacy)"),
        "{text}"
    );
    let sidecar_only = peerauth(&["matrix", "-f", "manifests/workloads"]).stdout;
    assert!(!sidecar_only.contains("data plane"), "{sidecar_only}");
}
