//! Ambient mode as `check` reads it: who ztunnel captures, which waypoint
//! each workload and Service uses, and what istiod makes of PeerAuthentication
//! for captured workloads. Expected values restate Istio's CNI defaults
//! (istio/istio `manifests/charts/istio-cni/values.yaml`, `cni/pkg/util/enablement_selector.go`)
//! and the ambient PeerAuthentication conversion (`pilot/pkg/serviceregistry/ambient/authorization.go`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use policy::ambient::DataPlane;
use policy::{check, MeshConfig};

const MESH: &str = "
apiVersion: v1
kind: Namespace
metadata: {name: amb, labels: {istio.io/dataplane-mode: ambient, istio.io/use-waypoint: waypoint}}
---
apiVersion: v1
kind: Namespace
metadata: {name: side, labels: {istio-injection: enabled}}
---
apiVersion: v1
kind: Pod
metadata: {name: captured, namespace: amb, labels: {app: captured}}
spec: {containers: [{name: c, ports: [{containerPort: 8080}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: opted-out, namespace: amb, labels: {app: out, istio.io/dataplane-mode: none}}
spec: {containers: [{name: c}]}
---
apiVersion: v1
kind: Pod
metadata: {name: injected, namespace: amb, labels: {app: inj, sidecar.istio.io/inject: 'true', istio.io/use-waypoint: other}}
spec: {containers: [{name: c}]}
---
apiVersion: v1
kind: Pod
metadata: {name: own-label, namespace: default, labels: {app: own, istio.io/dataplane-mode: ambient}}
spec: {containers: [{name: c}]}
---
apiVersion: v1
kind: Pod
metadata: {name: classic, namespace: side, labels: {app: classic}}
spec: {containers: [{name: c}]}
---
apiVersion: v1
kind: Service
metadata: {name: captured, namespace: amb, labels: {istio.io/use-waypoint: svc-waypoint}}
spec: {selector: {app: captured}, ports: [{port: 80, targetPort: 8080}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: amb}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: ingress, namespace: amb}
spec: {selector: {istio: ingressgateway}}
---
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: {name: plugin, namespace: amb}
spec:
  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}]
  url: oci://example/plugin:1
";

#[test]
fn namespace_label_captures_pods_unless_they_opt_out_or_have_a_sidecar() {
    let report = check(&[("mesh.yaml", MESH)], MeshConfig::default());
    let plane = |name: &str| {
        report
            .mesh
            .workloads
            .iter()
            .find(|w| w.name == name)
            .unwrap()
            .data_plane()
    };
    assert_eq!(plane("captured"), DataPlane::Ambient);
    assert_eq!(plane("opted-out"), DataPlane::None);
    assert_eq!(plane("injected"), DataPlane::Sidecar);
    assert_eq!(plane("own-label"), DataPlane::Ambient);
    assert_eq!(plane("classic"), DataPlane::Sidecar);
}

#[test]
fn waypoints_come_from_pod_namespace_and_service_labels_and_waypoint_class_gateways() {
    let report = check(&[("mesh.yaml", MESH)], MeshConfig::default());
    let mesh = &report.mesh;
    let w = |name: &str| mesh.workloads.iter().find(|w| w.name == name).unwrap();
    assert_eq!(w("captured").use_waypoint.as_deref(), Some("waypoint"));
    assert_eq!(w("injected").use_waypoint.as_deref(), Some("other"));
    assert_eq!(w("classic").use_waypoint, None);
    assert_eq!(
        mesh.services[0].use_waypoint.as_deref(),
        Some("svc-waypoint")
    );
    // Only the Gateway API Gateway of class istio-waypoint is a waypoint.
    let names: Vec<_> = mesh.waypoints.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["waypoint"]);
    assert_eq!(mesh.wasm_plugins[0].target_refs[0].kind, "Gateway");
    // The WasmPlugin is read for its attachment but still reported as not checked.
    let skipped: Vec<_> = report.skipped.iter().map(|s| s.kind.as_str()).collect();
    assert_eq!(skipped, ["Gateway", "WasmPlugin"]);
}
