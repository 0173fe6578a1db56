//! Ambient mode through the real binary: `describe` and `matrix` on the seed
//! 004 ambient example (manifests/lab/ambient), read back from `--json`.
//! Expected values restate Istio's rules (policy/src/ambient.rs cites them):
//! DISABLE is PERMISSIVE for ztunnel, mesh STRICT rejects callers outside
//! the mesh, ambient callers use HBONE.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{json, peerauth};
use peerauth_cli::json::{ClientReason, DescribeDocument, MatrixDocument, Outcome};
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
    assert_eq!((c.outcome, c.mtls), (Outcome::Allowed, true));
    assert_eq!(c.client_reason, ClientReason::Ztunnel);
    assert_eq!(cell("legacy/sleep", "foo/httpbin").outcome, Outcome::Reset);
    let c = cell("legacy/sleep", "bar/httpbin");
    assert_eq!((c.outcome, c.mtls), (Outcome::Allowed, false));
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
