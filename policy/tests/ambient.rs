//! Ambient mode as `check` reads it: who ztunnel captures, which waypoint
//! each workload and Service uses, and what istiod makes of PeerAuthentication
//! for captured workloads. Expected values restate Istio's CNI defaults
//! (istio/istio `manifests/charts/istio-cni/values.yaml`, `cni/pkg/util/enablement_selector.go`)
//! and the ambient PeerAuthentication conversion (`pilot/pkg/serviceregistry/ambient/authorization.go`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use policy::ambient::DataPlane;
use policy::reach::Outcome;
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

fn seed_004() -> policy::Report {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../manifests/lab/ambient");
    let read = |f: &str| std::fs::read_to_string(format!("{dir}/{f}")).unwrap();
    let (w, p) = (read("workloads.yaml"), read("peer-authentication.yaml"));
    check(
        &[("workloads.yaml", &w), ("peer-authentication.yaml", &p)],
        MeshConfig::default(),
    )
}

/// (outcome, mtls) of `client → service:port` in `report`'s matrix.
fn call(report: &policy::Report, client: &str, service: &str) -> (Outcome, bool, String) {
    let (cns, cname) = client.split_once('/').unwrap();
    let (sns, sname) = service.split_once('/').unwrap();
    let m = report.mesh.matrix();
    let c = m
        .cells
        .iter()
        .find(|c| {
            c.client_namespace == cns
                && c.client == cname
                && c.service_namespace == sns
                && c.service == sname
        })
        .unwrap();
    (c.outcome, c.mtls, c.explanation.clone())
}

#[test]
fn seed_004_ambient_callers_use_hbone_and_strict_resets_only_the_caller_outside_the_mesh() {
    let r = seed_004();
    for client in ["foo/sleep", "bar/sleep"] {
        for server in ["foo/httpbin", "bar/httpbin"] {
            let (o, mtls, why) = call(&r, client, server);
            assert_eq!(
                (o, mtls),
                (Outcome::Allowed, true),
                "{client} → {server}: {why}"
            );
            assert!(why.contains("HBONE"), "{why}");
        }
        // To a pod outside the mesh ztunnel passes plaintext through.
        assert_eq!(call(&r, client, "legacy/httpbin").0, Outcome::Allowed);
        assert!(!call(&r, client, "legacy/httpbin").1);
    }
    // Mesh STRICT: no peer identity from legacy, ztunnel rejects.
    let (o, _, why) = call(&r, "legacy/sleep", "foo/httpbin");
    assert_eq!(o, Outcome::Reset, "{why}");
    assert!(
        why.contains("rejects connections without a peer identity"),
        "{why}"
    );
    // bar's DISABLE means "not strict" in ambient: plaintext is accepted.
    let (o, mtls, why) = call(&r, "legacy/sleep", "bar/httpbin");
    assert_eq!((o, mtls), (Outcome::Allowed, false), "{why}");
    assert!(why.contains("DISABLE is not supported in ambient"), "{why}");
}

const MIXED: &str = "
apiVersion: v1
kind: Namespace
metadata: {name: amb, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Namespace
metadata: {name: side, labels: {istio-injection: enabled}}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: amb, labels: {app: a}}
spec: {containers: [{name: c, ports: [{containerPort: 8080}, {containerPort: 9090}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: a, namespace: amb}
spec: {selector: {app: a}, ports: [{name: web, port: 80, targetPort: 8080}, {name: metrics, port: 9090}]}
---
apiVersion: v1
kind: Pod
metadata: {name: s, namespace: side, labels: {app: s}}
spec: {containers: [{name: c, ports: [{containerPort: 8080}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: s, namespace: side}
spec: {selector: {app: s}, ports: [{name: web, port: 80, targetPort: 8080}]}
---
apiVersion: v1
kind: Pod
metadata: {name: t, namespace: side, labels: {app: t, networking.istio.io/tunnel: http}}
spec: {containers: [{name: c, ports: [{containerPort: 8080}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: t, namespace: side}
spec: {selector: {app: t}, ports: [{name: web, port: 80, targetPort: 8080}]}
---
apiVersion: v1
kind: Pod
metadata: {name: out, namespace: default, labels: {app: out}}
spec: {containers: [{name: c}]}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: strict, namespace: side}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: a, namespace: amb}
spec:
  selector: {matchLabels: {app: a}}
  mtls: {mode: STRICT}
  portLevelMtls: {9090: {mode: PERMISSIVE}}
";

#[test]
fn sidecar_and_ambient_interoperate_as_istiod_programs_them() {
    let r = check(&[("mixed.yaml", MIXED)], MeshConfig::default());
    // A sidecar sends HBONE (auto mTLS) to an ambient endpoint.
    assert_eq!(call(&r, "side/s", "amb/a").0, Outcome::Allowed);
    assert!(call(&r, "side/s", "amb/a").1);
    // ztunnel sends a sidecar plaintext unless the pod advertises HBONE
    // (networking.istio.io/tunnel: http): STRICT resets it.
    assert_eq!(call(&r, "amb/a", "side/s").0, Outcome::Reset);
    assert_eq!(
        (call(&r, "amb/a", "side/t").0, call(&r, "amb/a", "side/t").1),
        (Outcome::Allowed, true)
    );
}

#[test]
fn port_level_exceptions_apply_per_container_port_for_callers_outside_the_mesh() {
    let r = check(&[("mixed.yaml", MIXED)], MeshConfig::default());
    let m = r.mesh.matrix();
    let from_out: Vec<(u16, Outcome)> = m
        .cells
        .iter()
        .filter(|c| c.client == "out" && c.service == "a")
        .map(|c| (c.service_port, c.outcome))
        .collect();
    // 8080 (Service port 80) STRICT; 9090 exempted: PERMISSIVE.
    assert_eq!(from_out, [(80, Outcome::Reset), (9090, Outcome::Allowed)]);
}

#[test]
fn seed_004_check_flags_disable_in_bar_and_the_legacy_callers_reset_by_foo() {
    let r = seed_004();
    let codes: Vec<(&str, &str)> = r
        .diagnostics
        .iter()
        .map(|d| (d.code.as_str(), d.message.as_str()))
        .collect();
    assert!(
        codes
            .iter()
            .any(|(c, m)| *c == "ambient-disable" && m.starts_with("bar/default")),
        "{codes:#?}"
    );
    // STRICT from the mesh policy resets only legacy's callers at foo; bar is PERMISSIVE.
    let resets: Vec<&str> = codes
        .iter()
        .filter(|(c, _)| *c == "plaintext-client-to-strict")
        .map(|(_, m)| *m)
        .collect();
    assert_eq!(resets.len(), 2, "{resets:#?}");
    for m in &resets {
        assert!(m.contains(".foo:"), "{m}");
        // Only the callers outside the mesh: ambient callers use HBONE.
        assert!(
            m.starts_with("calls from httpbin.legacy, sleep.legacy (no sidecar) to "),
            "{m}"
        );
    }
}

#[test]
fn a_waypoint_is_named_in_the_explanation_of_mesh_calls_and_changes_no_outcome() {
    let with = MIXED.replace(
        "metadata: {name: a, namespace: amb}\nspec: {selector",
        "metadata: {name: a, namespace: amb, labels: {istio.io/use-waypoint: waypoint}}\nspec: {selector",
    );
    assert_ne!(with, MIXED);
    let r = check(&[("mixed.yaml", &with)], MeshConfig::default());
    let (o, mtls, why) = call(&r, "side/s", "amb/a");
    assert_eq!((o, mtls), (Outcome::Allowed, true));
    assert!(why.contains("through waypoint waypoint"), "{why}");
    // A caller outside the mesh gets the same answer as without the waypoint.
    let plain = check(&[("mixed.yaml", MIXED)], MeshConfig::default());
    assert_eq!(
        call(&r, "default/out", "amb/a").0,
        call(&plain, "default/out", "amb/a").0
    );
    // The waypoint Gateway is not in the input: check says so.
    assert!(r.diagnostics.iter().any(|d| d.code == "waypoint-missing"));
}

#[test]
fn an_istio_mutual_rule_towards_an_ambient_service_is_not_called_a_failure() {
    let dr = "
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: a, namespace: side}
spec:
  host: a.amb.svc.cluster.local
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
";
    let r = check(
        &[("mixed.yaml", &format!("{MIXED}{dr}"))],
        MeshConfig::default(),
    );
    assert_eq!(call(&r, "side/s", "amb/a").0, Outcome::Allowed);
    assert!(
        r.diagnostics
            .iter()
            .all(|d| d.code != "dr-mtls-to-workload-without-sidecar"),
        "{:#?}",
        r.diagnostics
    );
}

/// `MIXED` plus a DestinationRule in `side` for `a.amb` with `tls` (and a
/// top-level `auto_mtls`).
fn with_rule(tls: &str, auto_mtls: bool) -> policy::Report {
    let dr = format!(
        "
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: a, namespace: side}}
spec:
  host: a.amb.svc.cluster.local
  trafficPolicy: {{tls: {{mode: {tls}}}}}
"
    );
    check(
        &[("mixed.yaml", &format!("{MIXED}{dr}"))],
        MeshConfig {
            auto_mtls,
            ..MeshConfig::default()
        },
    )
}

/// The cell `client → service:port` of `m`.
fn cell<'m>(
    m: &'m policy::reach::Matrix,
    client: &str,
    service: &str,
    port: u16,
) -> &'m policy::reach::Cell {
    let (cns, cname) = client.split_once('/').unwrap();
    let (sns, sname) = service.split_once('/').unwrap();
    m.cells
        .iter()
        .find(|c| {
            c.client_namespace == cns
                && c.client == cname
                && c.service_namespace == sns
                && c.service == sname
                && c.service_port == port
        })
        .unwrap()
}

// istio/istio @86c9f01f pilot/pkg/networking/core/cluster_tls.go
// (applyHBONETransportSocketMatches; TestApplyUpstreamTLSSettingsHBONE): a
// sidecar's cluster matches endpoints with the tunnel label (every captured
// pod) to an `hbone` transport socket before anything the DestinationRule
// says. No TLS (DISABLE, or no rule with auto mTLS off) is sent as plain bytes
// inside HBONE; ISTIO_MUTUAL is replaced by HBONE; SIMPLE/MUTUAL is the user's
// TLS inside HBONE. ztunnel's inbound sees the sidecar's identity either way
// (istio/ztunnel @62d82652 src/proxy/inbound.rs, src/rbac.rs), so its STRICT
// DENY ("no peer identity") does not match.

#[test]
fn a_disable_rule_from_a_sidecar_to_a_strict_ambient_port_still_travels_over_hbone_and_succeeds() {
    let r = with_rule("DISABLE", true);
    let m = r.mesh.matrix();
    let c = cell(&m, "side/s", "amb/a", 80);
    assert_eq!(c.server_mode, policy::MtlsMode::Strict);
    assert_eq!(
        (c.client_tls, c.outcome, c.mtls, c.transport),
        (
            policy::reach::ClientTls::IstioMutual,
            Outcome::Allowed,
            true,
            policy::reach::Transport::Hbone
        ),
        "{}",
        c.explanation
    );
    assert!(
        c.explanation.contains("sends it HBONE anyway"),
        "{}",
        c.explanation
    );
    // The same call without the rule: the outcome does not change.
    let plain = check(&[("mixed.yaml", MIXED)], MeshConfig::default());
    let pm = plain.mesh.matrix();
    let p = cell(&pm, "side/s", "amb/a", 80);
    assert_eq!(
        (p.outcome, p.mtls, p.transport),
        (c.outcome, c.mtls, c.transport)
    );
    // And no sidecar-era "DISABLE to STRICT resets" finding.
    assert!(
        r.diagnostics
            .iter()
            .all(|d| d.code != "dr-disable-to-strict"),
        "{:#?}",
        r.diagnostics
    );
}

#[test]
fn with_auto_mtls_off_a_sidecar_still_sends_hbone_to_an_ambient_port() {
    let r = check(
        &[("mixed.yaml", MIXED)],
        MeshConfig {
            auto_mtls: false,
            ..MeshConfig::default()
        },
    );
    let m = r.mesh.matrix();
    let c = cell(&m, "side/s", "amb/a", 80);
    assert_eq!(
        (c.outcome, c.transport),
        (Outcome::Allowed, policy::reach::Transport::Hbone),
        "{}",
        c.explanation
    );
    // While a sidecar-to-sidecar STRICT call is reset as before.
    assert_eq!(cell(&m, "amb/a", "side/s", 80).outcome, Outcome::Reset);
}

#[test]
fn a_simple_rule_to_an_ambient_pod_is_tls_inside_hbone_which_a_plaintext_app_cannot_read() {
    for mode in ["SIMPLE", "MUTUAL"] {
        let r = with_rule(mode, true);
        let m = r.mesh.matrix();
        // STRICT (8080) does not reset it: ztunnel sees the sidecar's identity.
        for port in [80, 9090] {
            let c = cell(&m, "side/s", "amb/a", port);
            assert_eq!(
                (c.client_tls, c.outcome, c.mtls, c.transport),
                (
                    policy::reach::ClientTls::OtherTls,
                    Outcome::Failed,
                    false,
                    policy::reach::Transport::Hbone
                ),
                "{mode} :{port}: {}",
                c.explanation
            );
            assert!(c.explanation.contains("inside HBONE"), "{}", c.explanation);
        }
    }
}

#[test]
fn every_cell_says_which_transport_carries_it() {
    let r = check(&[("mixed.yaml", MIXED)], MeshConfig::default());
    let m = r.mesh.matrix();
    use policy::reach::Transport::{Hbone, IstioMtls, Plaintext};
    // ambient → ambient, sidecar → ambient, ambient → HBONE sidecar: HBONE.
    assert_eq!(cell(&m, "amb/a", "amb/a", 80).transport, Hbone);
    assert_eq!(cell(&m, "side/s", "amb/a", 80).transport, Hbone);
    assert_eq!(cell(&m, "amb/a", "side/t", 80).transport, Hbone);
    // sidecar → sidecar without the tunnel label: Istio mTLS into the sidecar.
    assert_eq!(cell(&m, "side/t", "side/s", 80).transport, IstioMtls);
    // outside the mesh → anything, and ambient → a sidecar without HBONE: plaintext.
    assert_eq!(cell(&m, "default/out", "amb/a", 9090).transport, Plaintext);
    assert_eq!(cell(&m, "amb/a", "side/s", 80).transport, Plaintext);
}

#[test]
fn the_namespace_summary_counts_ambient_callers_as_the_matrix_does() {
    use policy::reach::{Counts, Select};
    use std::collections::BTreeMap;
    let r = seed_004();
    let reach = r.mesh.reach();
    let mut counted: BTreeMap<(String, String), Counts> = BTreeMap::new();
    for c in reach.matrix().cells {
        counted
            .entry((c.client_namespace, c.service_namespace))
            .or_default()
            .add(c.outcome, c.mtls);
    }
    let mut summed: BTreeMap<(String, String), Counts> = BTreeMap::new();
    reach.summary(&Select::all(), &mut |p| {
        summed.insert(
            (
                p.client_namespace.to_string(),
                p.service_namespace.to_string(),
            ),
            p.counts,
        );
    });
    assert_eq!(summed, counted);
    // foo's ambient callers succeed over HBONE everywhere in the mesh.
    let foo_to_bar = summed[&("foo".to_string(), "bar".to_string())];
    assert_eq!(foo_to_bar.reset + foo_to_bar.failed, 0);
    assert!(foo_to_bar.mtls > 0);
}

const EMPTY_NAMESPACE: &str = "
apiVersion: v1
kind: Namespace
metadata: {name: amb, labels: {istio.io/dataplane-mode: ambient, istio.io/use-waypoint: wp}}
";

const WAYPOINT_WP: &str = "
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: wp, namespace: amb}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
";

fn waypoint_findings(yaml: &str) -> Vec<(String, String)> {
    check(&[("in.yaml", yaml)], MeshConfig::default())
        .diagnostics
        .into_iter()
        .filter(|d| d.code == "waypoint-missing")
        .map(|d| {
            let r = d.resource.unwrap();
            (r.kind, r.name)
        })
        .collect()
}

#[test]
fn a_namespace_without_workloads_asking_for_a_missing_waypoint_is_reported() {
    assert_eq!(
        waypoint_findings(EMPTY_NAMESPACE),
        [("Namespace".to_string(), "amb".to_string())]
    );
}

#[test]
fn a_namespace_asking_for_a_waypoint_that_exists_is_not_reported_with_or_without_workloads() {
    assert!(waypoint_findings(&format!("{EMPTY_NAMESPACE}{WAYPOINT_WP}")).is_empty());
    let pod = "---\napiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: amb, labels: {app: p}}\nspec: {containers: [{name: c}]}\n";
    assert!(waypoint_findings(&format!("{EMPTY_NAMESPACE}{WAYPOINT_WP}{pod}")).is_empty());
    // Without the Gateway the namespace's label is reported once, on the pod
    // that inherits it (where a file and line are known), not twice.
    assert_eq!(
        waypoint_findings(&format!("{EMPTY_NAMESPACE}{pod}")),
        [("Workload".to_string(), "p".to_string())]
    );
}

/// `amb` is ambient; `istio-system` is the root namespace. Each pod serves
/// 8080 and 9090.
fn ambient_report(policies: &str, pod: &str) -> policy::resolve::AmbientReport {
    let yaml = format!(
        "apiVersion: v1
kind: Namespace
metadata: {{name: amb, labels: {{istio.io/dataplane-mode: ambient}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: httpbin, namespace: amb, labels: {{app: httpbin}}}}
spec: {{containers: [{{name: c, ports: [{{containerPort: 8080}}, {{containerPort: 9090}}]}}]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: root-pod, namespace: istio-system, labels: {{app: root-pod, istio.io/dataplane-mode: ambient}}}}
spec: {{containers: [{{name: c, ports: [{{containerPort: 8080}}, {{containerPort: 9090}}]}}]}}
---
{policies}"
    );
    let report = check(&[("mesh.yaml", &yaml)], MeshConfig::default());
    let w = report
        .mesh
        .workloads
        .iter()
        .find(|w| w.name == pod)
        .unwrap();
    report.mesh.describe(w).ambient.unwrap()
}

fn modes(r: &policy::resolve::AmbientReport) -> Vec<(u32, policy::MtlsMode)> {
    r.ports.iter().map(|(p, m)| (*p, *m)).collect()
}

#[test]
fn a_strict_namespace_policy_with_empty_match_labels_and_a_permissive_port_leaves_every_port_open()
{
    // istiod: `fetchPeerAuthentications` returns both policies and
    // `convertedSelectorPeerAuthentications` reads amb/default as the STRICT
    // namespace policy, so the workload references only
    // amb/converted_peer_authentication_httpbin. `PeerAuthByNamespace` holds
    // only selector-less policies, so `convertPeerAuthentication` runs with no
    // parents, skips the PERMISSIVE port and returns nil: no DENY rule at all.
    let r = ambient_report(
        "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: amb}
spec:
  selector: {matchLabels: {}}
  mtls: {mode: STRICT}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: httpbin, namespace: amb}
spec:
  selector: {matchLabels: {app: httpbin}}
  portLevelMtls:
    \"8080\": {mode: PERMISSIVE}
",
        "httpbin",
    );
    assert!(r.ztunnel_policies.is_empty(), "{:?}", r.ztunnel_policies);
    assert_eq!(r.workload, policy::MtlsMode::Permissive);
    assert_eq!(
        modes(&r),
        [
            (8080, policy::MtlsMode::Permissive),
            (9090, policy::MtlsMode::Permissive)
        ]
    );
}

#[test]
fn the_same_exception_under_a_selector_less_strict_namespace_policy_keeps_9090_strict() {
    // TestAmbientIndex_PeerAuthenticationNamespacePolicyChange's shape: the
    // namespace policy is a conversion parent, so 9090 stays denied.
    let r = ambient_report(
        "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: amb}
spec:
  mtls: {mode: STRICT}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: httpbin, namespace: amb}
spec:
  selector: {matchLabels: {app: httpbin}}
  portLevelMtls:
    \"8080\": {mode: PERMISSIVE}
",
        "httpbin",
    );
    assert_eq!(
        r.ztunnel_policies,
        ["amb/converted_peer_authentication_httpbin"]
    );
    assert_eq!(
        modes(&r),
        [
            (8080, policy::MtlsMode::Permissive),
            (9090, policy::MtlsMode::Strict)
        ]
    );
}

#[test]
fn a_namespace_policy_with_an_empty_selector_alone_is_namespace_wide_for_ambient_workloads() {
    // `convertedSelectorPeerAuthentications` reads an empty `matchLabels` as
    // namespace-level: STRICT attaches the static STRICT policy.
    for selector in ["{}", "{matchLabels: {}}"] {
        let r = ambient_report(
            &format!(
                "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: default, namespace: amb}}
spec:
  selector: {selector}
  mtls: {{mode: STRICT}}
"
            ),
            "httpbin",
        );
        assert_eq!(
            r.ztunnel_policies,
            ["istio-system/istio_converted_static_strict"],
            "{selector}"
        );
        assert_eq!(r.workload, policy::MtlsMode::Strict, "{selector}");
    }
}

#[test]
fn a_root_namespace_policy_with_an_empty_selector_is_no_mesh_policy_for_ambient_workloads_elsewhere(
) {
    // `fetchPeerAuthentications` fetches root-namespace policies for another
    // namespace's workload only when `selector` is nil.
    for selector in ["{}", "{matchLabels: {}}"] {
        let policies = format!(
            "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: default, namespace: istio-system}}
spec:
  selector: {selector}
  mtls: {{mode: STRICT}}
"
        );
        let r = ambient_report(&policies, "httpbin");
        assert!(r.ztunnel_policies.is_empty(), "{selector}");
        assert_eq!(r.workload, policy::MtlsMode::Permissive, "{selector}");
        // A workload of the root namespace fetches it with its own
        // namespace's policies, where an empty selector matches and reads as
        // mesh-level.
        let r = ambient_report(&policies, "root-pod");
        assert_eq!(
            r.ztunnel_policies,
            ["istio-system/istio_converted_static_strict"],
            "{selector}"
        );
    }
}

#[test]
fn a_selector_less_root_namespace_strict_policy_stays_mesh_wide_for_ambient_workloads() {
    let r = ambient_report(
        "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec:
  mtls: {mode: STRICT}
",
        "httpbin",
    );
    assert_eq!(
        r.ztunnel_policies,
        ["istio-system/istio_converted_static_strict"]
    );
    assert_eq!(r.workload, policy::MtlsMode::Strict);
}

fn warned(yaml: &str) -> Vec<(String, u32)> {
    let report = check(&[("mesh.yaml", yaml)], MeshConfig::default());
    report
        .diagnostics
        .iter()
        .filter(|d| d.code == "ambient-selector-without-labels")
        .map(|d| (d.message.clone(), d.location.as_ref().map_or(0, |l| l.line)))
        .collect()
}

#[test]
fn an_empty_selector_is_warned_about_where_it_reaches_ambient_workloads_and_nowhere_else() {
    let root_policy = "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec:
  selector: {}
  mtls: {mode: STRICT}
";
    let ambient_ns = "apiVersion: v1
kind: Namespace
metadata: {name: amb, labels: {istio.io/dataplane-mode: ambient}}
---
";
    // Root namespace, ambient namespaces elsewhere: no mesh policy for them.
    let found = warned(&format!("{ambient_ns}{root_policy}"));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].0.contains("does not read it as mesh-wide"),
        "{found:?}"
    );
    assert_eq!(found[0].1, 9);
    // No ambient workload anywhere: sidecars read it as mesh-wide, nothing to say.
    assert!(warned(root_policy).is_empty());
    // A sidecar namespace's `selector: {}` is not ambient's business.
    let side = "apiVersion: v1
kind: Namespace
metadata: {name: side, labels: {istio-injection: enabled}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: side}
spec:
  selector: {}
  mtls: {mode: STRICT}
";
    assert!(warned(&format!("{ambient_ns}{side}")).is_empty());
    // A selector-less policy is never warned about.
    let plain = "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: amb}
spec:
  mtls: {mode: STRICT}
";
    assert!(warned(&format!("{ambient_ns}{plain}")).is_empty());
}
