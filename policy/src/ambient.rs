//! Ambient mode: which pods ztunnel captures, and what a PeerAuthentication
//! means for them once istiod has turned it into ztunnel's L4 policy.
//!
//! ztunnel never reads PeerAuthentication. For each captured workload istiod
//! sends a list of `Authorization` resources with `action: DENY`; a plain
//! STRICT result is the static policy `<root>/istio_converted_static_strict`
//! ("deny when the peer has no identity"), and a workload policy with port
//! exceptions becomes `converted_peer_authentication_<name>` in its
//! namespace. Sources (read for facts, restated here):
//! istio/istio @86c9f01f `pilot/pkg/serviceregistry/ambient/authorization.go`
//! (`convertedSelectorPeerAuthentications`, `convertPeerAuthentication`) and
//! its golden files `testdata/peer-authn-*.yaml` (`TestRBACConvert`), which
//! the tests below restate; `cni/pkg/util/enablement_selector.go` and
//! `manifests/charts/istio-cni/values.yaml` (who is captured);
//! istio/ztunnel @62d82652 `src/rbac.rs` (how a DENY policy matches: any
//! group; in a group every rule; in a rule any match; in a match every field).
//!
//! Consequences a sidecar reader does not expect:
//! * DISABLE is treated exactly like PERMISSIVE ("not strict"): ztunnel
//!   still speaks HBONE mTLS to other mesh workloads and accepts plaintext
//!   from outside the mesh. Nothing turns mTLS off.
//! * Only STRICT-or-not matters per port; there is no DISABLE chain.
//! * Quirks of the conversion are kept as istiod has them (see
//!   [`ZtunnelPolicy::from_winners`]).

use crate::mesh::PeerAuthentication;
use crate::mode::MtlsMode;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `istio.io/dataplane-mode` (istio/api `label`): `ambient` captures the
/// namespace's pods (or one pod); `none` on a pod opts it out.
pub const DATAPLANE_MODE: &str = "istio.io/dataplane-mode";
/// `istio.io/use-waypoint` on a namespace, Service or pod: the waypoint
/// (a Gateway of class `istio-waypoint`) its traffic goes through.
pub const USE_WAYPOINT: &str = "istio.io/use-waypoint";
/// The name istiod gives the static "deny without identity" policy.
pub const STATIC_STRICT: &str = "istio_converted_static_strict";
/// Prefix of a converted workload policy (istio/istio `pilot/pkg/model/authentication.go`).
pub const CONVERTED_PREFIX: &str = "converted_peer_authentication_";

/// Which data plane carries a workload's inbound traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataPlane {
    /// An injected Envoy sidecar (PeerAuthentication as Envoy filter chains).
    Sidecar,
    /// Captured by ztunnel (HBONE; PeerAuthentication as DENY policies).
    Ambient,
    /// Outside the mesh: plaintext in and out.
    None,
}

impl DataPlane {
    /// `sidecar`, `ambient`, `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sidecar => "sidecar",
            Self::Ambient => "ambient",
            Self::None => "none",
        }
    }
}

/// Istio CNI's default enablement selectors: a pod labelled
/// `istio.io/dataplane-mode: ambient`, or any pod not labelled `none` in a
/// namespace labelled `ambient`. A pod with a sidecar is never captured
/// ("ztunnel and sidecar for a single pod is currently not supported; opt
/// out"), so sidecar injection takes precedence.
pub fn data_plane(
    sidecar: bool,
    namespace_labels: &BTreeMap<String, String>,
    pod_labels: &BTreeMap<String, String>,
) -> DataPlane {
    if sidecar {
        return DataPlane::Sidecar;
    }
    let pod = pod_labels.get(DATAPLANE_MODE).map(String::as_str);
    let namespace = namespace_labels.get(DATAPLANE_MODE).map(String::as_str);
    if pod == Some("ambient") || (namespace == Some("ambient") && pod != Some("none")) {
        DataPlane::Ambient
    } else {
        DataPlane::None
    }
}

/// One rule of a converted DENY group (a rule with a single match).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cond {
    /// `notPrincipals: [presence]`: the peer has no identity.
    NoPeerIdentity,
    /// `destinationPorts: [p]` and `notPrincipals: [presence]`.
    NoPeerIdentityOnPort(u32),
    /// `notDestinationPorts: [p]`.
    PortIsNot(u32),
}

impl Cond {
    fn holds(self, identity: bool, port: u32) -> bool {
        match self {
            Self::NoPeerIdentity => !identity,
            Self::NoPeerIdentityOnPort(p) => !identity && port == p,
            Self::PortIsNot(p) => port != p,
        }
    }
}

/// A converted workload policy: DENY when any group's rules all hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Converted {
    /// `converted_peer_authentication_<policy name>`.
    pub name: String,
    pub namespace: String,
    pub groups: Vec<Vec<Cond>>,
}

/// What istiod attaches to one captured workload.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ZtunnelPolicy {
    /// `<root>/istio_converted_static_strict` is attached.
    pub static_strict: bool,
    /// The workload policy's converted form, when istiod references it and
    /// the conversion produced rules.
    pub converted: Option<Converted>,
}

fn strict(p: Option<&PeerAuthentication>) -> bool {
    p.is_some_and(|p| p.mode == MtlsMode::Strict)
}

fn unset(p: Option<&PeerAuthentication>) -> bool {
    p.is_none_or(|p| p.mode == MtlsMode::Unset)
}

fn not_strict(m: MtlsMode) -> bool {
    matches!(m, MtlsMode::Permissive | MtlsMode::Disable)
}

/// The namespace and mesh policies istiod hands the conversion of a
/// workload policy (`PolicyCollections`' `nsPol` and `rootPol`): the oldest
/// policy without a `selector` field in the workload's namespace and in the
/// root namespace. Its index (`PeerAuthByNamespace`) holds no policy with
/// `selector: {}`, so these can differ from the namespace and mesh policies
/// that decide which policies the workload references.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConversionParents<'p> {
    pub namespace: Option<&'p PeerAuthentication>,
    pub mesh: Option<&'p PeerAuthentication>,
}

impl ZtunnelPolicy {
    /// From the mesh, namespace and workload policies istiod picked for the
    /// workload ([`crate::resolve::Resolver::winners`]), as
    /// `convertedSelectorPeerAuthentications` + `convertPeerAuthentication` do.
    ///
    /// Kept as istiod has them: with the workload mode UNSET under a STRICT
    /// mesh/namespace, only a PERMISSIVE port entry is an exception (a port
    /// entry DISABLE alone leaves the port STRICT); and a STRICT port entry
    /// is dropped as "already enforced" whenever the mesh policy is STRICT
    /// and the namespace has none or UNSET, even if the workload itself is
    /// PERMISSIVE (Go's `a || b && c || d` binds as `a || (b && c) || d`);
    /// and under a STRICT mesh policy with a namespace policy whose mode is
    /// UNSET, an UNSET workload policy with a PERMISSIVE port leaves the
    /// workload with no policy at all (every port accepts plaintext); and so
    /// does a STRICT namespace policy written with `selector: {}` (it makes
    /// the workload reference its converted policy, but the conversion's
    /// `parents` lack it, so the conversion has no rule left).
    pub fn from_winners(
        root: &str,
        mesh: Option<&PeerAuthentication>,
        namespace: Option<&PeerAuthentication>,
        workload: Option<&PeerAuthentication>,
        parents: ConversionParents<'_>,
    ) -> Self {
        let mut is_strict = strict(mesh);
        if let Some(ns) = namespace {
            if ns.mode != MtlsMode::Unset {
                is_strict = ns.mode == MtlsMode::Strict;
            }
        }
        let Some(w) = workload else {
            return Self {
                static_strict: is_strict,
                converted: None,
            };
        };
        match w.mode {
            MtlsMode::Strict => is_strict = true,
            MtlsMode::Permissive | MtlsMode::Disable => is_strict = false,
            MtlsMode::Unset => {}
        }
        let mut referenced = false;
        if !w.port_level.is_empty() {
            let any = |f: &dyn Fn(MtlsMode) -> bool| w.port_level.values().any(|&m| f(m));
            match w.mode {
                MtlsMode::Strict => {
                    if any(&not_strict) {
                        referenced = true;
                        is_strict = false;
                    }
                }
                MtlsMode::Permissive | MtlsMode::Disable => {
                    referenced = any(&|m| m == MtlsMode::Strict);
                }
                MtlsMode::Unset => {
                    if is_strict {
                        if any(&|m| m == MtlsMode::Permissive) {
                            referenced = true;
                            is_strict = false;
                        }
                    } else {
                        referenced = any(&|m| m == MtlsMode::Strict);
                    }
                }
            }
        }
        let converted = if referenced {
            convert(root, w, parents.namespace, parents.mesh)
        } else {
            None
        };
        Self {
            static_strict: is_strict,
            converted,
        }
    }

    /// Whether ztunnel rejects a connection to container port `port` whose
    /// peer has no identity (plaintext from outside the mesh).
    pub fn rejects_without_identity(&self, port: u32) -> bool {
        self.static_strict
            || self.converted.as_ref().is_some_and(|c| {
                c.groups
                    .iter()
                    .any(|g| !g.is_empty() && g.iter().all(|r| r.holds(false, port)))
            })
    }

    /// The port's effective mode as ztunnel enforces it: STRICT or PERMISSIVE.
    pub fn mode(&self, port: Option<u32>) -> MtlsMode {
        let strict = match port {
            Some(p) => self.rejects_without_identity(p),
            None => self.static_strict,
        };
        if strict {
            MtlsMode::Strict
        } else {
            MtlsMode::Permissive
        }
    }

    /// The policy names istiod lists on the workload (`<ns>/<name>`), sorted.
    pub fn names(&self, root: &str) -> Vec<String> {
        let mut out = Vec::new();
        if self.static_strict {
            out.push(format!("{root}/{STATIC_STRICT}"));
        }
        if let Some(c) = &self.converted {
            out.push(format!("{}/{}", c.namespace, c.name));
        }
        out.sort();
        out
    }
}

/// `convertPeerAuthentication` for the workload policy `w`.
fn convert(
    root: &str,
    w: &PeerAuthentication,
    namespace: Option<&PeerAuthentication>,
    mesh: Option<&PeerAuthentication>,
) -> Option<Converted> {
    if w.namespace == root
        || w.selector.as_ref().is_none_or(BTreeMap::is_empty)
        || w.port_level.is_empty()
    {
        return None;
    }
    let mode = w.mode;
    let mut rules = Vec::new();
    let mut groups = Vec::new();
    if mode == MtlsMode::Strict {
        rules.push(Cond::NoPeerIdentity);
    }
    let mut found_non_strict = false;
    for (&port, &port_mode) in &w.port_level {
        match port_mode {
            MtlsMode::Strict => {
                let enforced_by_parent = mode == MtlsMode::Strict
                    || (mode == MtlsMode::Unset && strict(namespace))
                    || (unset(namespace) && strict(mesh));
                if !enforced_by_parent {
                    groups.push(vec![Cond::NoPeerIdentityOnPort(port)]);
                }
            }
            MtlsMode::Permissive | MtlsMode::Disable => {
                if not_strict(mode) {
                    continue;
                }
                let parent_not_strict = match (namespace, mesh) {
                    (Some(ns), _) => ns.mode != MtlsMode::Strict,
                    (None, Some(m)) => m.mode != MtlsMode::Strict,
                    (None, None) => true,
                };
                if mode == MtlsMode::Unset && parent_not_strict {
                    continue;
                }
                found_non_strict = true;
                rules.push(Cond::PortIsNot(port));
            }
            MtlsMode::Unset => {}
        }
    }
    if mode == MtlsMode::Strict && !found_non_strict {
        return None;
    }
    if rules.is_empty() && groups.is_empty() {
        return None;
    }
    let merge_strict = (strict(mesh)
        && namespace.is_none_or(|ns| matches!(ns.mode, MtlsMode::Unset | MtlsMode::Strict)))
        || strict(namespace);
    if merge_strict && found_non_strict {
        rules.push(Cond::NoPeerIdentity);
    }
    if !rules.is_empty() {
        groups.push(rules);
    }
    Some(Converted {
        name: format!("{CONVERTED_PREFIX}{}", w.name),
        namespace: w.namespace.clone(),
        groups,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::diagnostic::Location;
    use Cond::{NoPeerIdentity, NoPeerIdentityOnPort, PortIsNot};
    use MtlsMode::{Disable, Permissive, Strict, Unset};

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn policy(
        name: &str,
        namespace: &str,
        selector: bool,
        mode: MtlsMode,
        ports: &[(u32, MtlsMode)],
    ) -> PeerAuthentication {
        PeerAuthentication {
            name: name.into(),
            namespace: namespace.into(),
            creation_timestamp: None,
            selector: selector.then(|| map(&[("app", "a")])),
            mode,
            port_level: ports.iter().copied().collect(),
            location: Location::default(),
        }
    }

    /// One of istiod's golden files: the workload policy converted alone
    /// (`convertPeerAuthentication(root, cfg, nil, nil)`) or with its parents.
    fn converted(
        mesh: Option<MtlsMode>,
        namespace: Option<MtlsMode>,
        workload: &PeerAuthentication,
    ) -> Option<Vec<Vec<Cond>>> {
        let m = mesh.map(|m| policy("default-mesh", "istio-system", false, m, &[]));
        let n = namespace.map(|m| policy("default-foo", "foo", false, m, &[]));
        convert("istio-system", workload, n.as_ref(), m.as_ref()).map(|c| c.groups)
    }

    #[test]
    fn a_namespace_or_mesh_policy_converts_to_nothing_whatever_its_mode() {
        // peer-authn-{strict,permissive,disable}.yaml are empty.
        for mode in [Strict, Permissive, Disable] {
            assert_eq!(
                converted(None, None, &policy("p", "foo", false, mode, &[])),
                None
            );
        }
        // peer-authn-strict-workload.yaml: a selector but no ports, nothing either.
        assert_eq!(
            converted(None, None, &policy("p", "foo", true, Strict, &[])),
            None
        );
    }

    #[test]
    fn strict_workload_with_a_permissive_or_disabled_port_denies_no_identity_except_on_that_port() {
        // peer-authn-strict-and-permissive-port-mtls.yaml, -strict-and-disable-port-mtls.yaml
        for port_mode in [Permissive, Disable] {
            let w = policy("w", "foo", true, Strict, &[(9090, port_mode)]);
            assert_eq!(
                converted(None, None, &w),
                Some(vec![vec![NoPeerIdentity, PortIsNot(9090)]])
            );
        }
        // peer-authn-strict-port-mtls-strict-and-permissive.yaml
        let w = policy(
            "w",
            "foo",
            true,
            Strict,
            &[(9090, Strict), (8080, Permissive)],
        );
        assert_eq!(
            converted(None, None, &w),
            Some(vec![vec![NoPeerIdentity, PortIsNot(8080)]])
        );
        // peer-authn-strict-and-strict-port-mtls.yaml: all strict, nothing to convert.
        let w = policy("w", "foo", true, Strict, &[(8080, Strict)]);
        assert_eq!(converted(None, None, &w), None);
    }

    #[test]
    fn a_strict_port_on_a_non_strict_workload_becomes_a_group_of_its_own() {
        // peer-authn-{permissive,disable}-port-mtls-strict.yaml, -unset-port-mtls-strict.yaml
        for (mode, port) in [(Permissive, 9090), (Disable, 9090), (Unset, 8080)] {
            let w = policy("w", "foo", true, mode, &[(port, Strict)]);
            assert_eq!(
                converted(None, None, &w),
                Some(vec![vec![NoPeerIdentityOnPort(port)]])
            );
        }
        // peer-authn-permissive-port-mtls-strict-and-permissive.yaml
        let w = policy(
            "w",
            "foo",
            true,
            Permissive,
            &[(9090, Strict), (8080, Permissive)],
        );
        assert_eq!(
            converted(None, None, &w),
            Some(vec![vec![NoPeerIdentityOnPort(9090)]])
        );
    }

    #[test]
    fn parents_decide_whether_ports_need_rules_and_whether_strictness_is_merged() {
        let ports = |p: &[(u32, MtlsMode)]| policy("workload", "foo", true, Unset, p);
        // peer-authn-permissive-root-permissive-namespace-strict-workload-ports.yaml
        assert_eq!(
            converted(
                Some(Permissive),
                Some(Permissive),
                &ports(&[(9090, Strict), (8080, Strict)])
            ),
            Some(vec![
                vec![NoPeerIdentityOnPort(8080)],
                vec![NoPeerIdentityOnPort(9090)]
            ])
        );
        // peer-authn-permissive-root-permissive-workload.yaml: nothing to exempt.
        assert_eq!(
            converted(Some(Permissive), None, &ports(&[(9090, Permissive)])),
            None
        );
        // peer-authn-permissive-root-strict-namespace-permissive-workload.yaml
        assert_eq!(
            converted(
                Some(Permissive),
                Some(Strict),
                &ports(&[(9090, Permissive)])
            ),
            Some(vec![vec![PortIsNot(9090), NoPeerIdentity]])
        );
        // peer-authn-permissive-root-unset-namespace-mixed-workload-ports.yaml
        assert_eq!(
            converted(
                Some(Permissive),
                Some(Unset),
                &ports(&[(9090, Strict), (8080, Permissive)])
            ),
            Some(vec![vec![NoPeerIdentityOnPort(9090)]])
        );
        // peer-authn-strict-root-permissive-namespace-strict-workload.yaml
        assert_eq!(
            converted(Some(Strict), Some(Permissive), &ports(&[(9090, Strict)])),
            Some(vec![vec![NoPeerIdentityOnPort(9090)]])
        );
        // peer-authn-strict-root-permissive-workload.yaml
        assert_eq!(
            converted(Some(Strict), None, &ports(&[(9090, Permissive)])),
            Some(vec![vec![PortIsNot(9090), NoPeerIdentity]])
        );
        // peer-authn-strict-root-unset-workload-port-mtls-strict-and-permissive.yaml
        assert_eq!(
            converted(
                Some(Strict),
                None,
                &ports(&[(9090, Permissive), (8080, Strict)])
            ),
            Some(vec![vec![PortIsNot(9090), NoPeerIdentity]])
        );
    }

    fn attached(
        mesh: Option<MtlsMode>,
        namespace: Option<MtlsMode>,
        workload: Option<&PeerAuthentication>,
    ) -> ZtunnelPolicy {
        let m = mesh.map(|m| policy("default", "istio-system", false, m, &[]));
        let n = namespace.map(|m| policy("namespace", "foo", false, m, &[]));
        // Selector-less parents, so the conversion reads the same ones.
        let parents = ConversionParents {
            namespace: n.as_ref(),
            mesh: m.as_ref(),
        };
        ZtunnelPolicy::from_winners("istio-system", m.as_ref(), n.as_ref(), workload, parents)
    }

    #[test]
    fn a_strict_result_at_any_level_attaches_the_static_strict_policy() {
        let strict_ws = policy("w", "foo", true, Strict, &[]);
        for p in [
            attached(Some(Strict), None, None),
            attached(None, Some(Strict), None),
            attached(Some(Permissive), None, Some(&strict_ws)),
        ] {
            assert_eq!(
                p.names("istio-system"),
                ["istio-system/istio_converted_static_strict"]
            );
            assert!(p.rejects_without_identity(8080));
        }
        // A namespace PERMISSIVE or DISABLE under a STRICT mesh: not strict (DISABLE = PERMISSIVE).
        for mode in [Permissive, Disable] {
            let p = attached(Some(Strict), Some(mode), None);
            assert!(p.names("istio-system").is_empty());
            assert_eq!(p.mode(Some(80)), Permissive);
        }
        // An UNSET namespace inherits the mesh.
        assert!(attached(Some(Strict), Some(Unset), None).static_strict);
    }

    #[test]
    fn a_permissive_port_under_a_strict_namespace_replaces_the_static_policy_with_the_converted_one(
    ) {
        // TestAmbientIndex_PeerAuthenticationNamespacePolicyChange: namespace STRICT,
        // workload "selector" (mode unset) with 9090 PERMISSIVE → only the converted policy.
        let w = policy("selector", "foo", true, Unset, &[(9090, Permissive)]);
        let p = attached(None, Some(Strict), Some(&w));
        assert_eq!(
            p.names("istio-system"),
            ["foo/converted_peer_authentication_selector"]
        );
        assert!(p.rejects_without_identity(8080));
        assert!(!p.rejects_without_identity(9090));
        // Relaxing the namespace to PERMISSIVE leaves nothing attached.
        let p = attached(None, Some(Permissive), Some(&w));
        assert!(p.names("istio-system").is_empty());
        assert!(!p.rejects_without_identity(8080));
    }

    #[test]
    fn port_exceptions_are_enforced_per_port_as_the_architecture_doc_describes() {
        // architecture/ambient/peer-authentication.md: STRICT with 9090 PERMISSIVE
        // rejects unauthenticated traffic except to 9090.
        let w = policy("w", "foo", true, Strict, &[(9090, Permissive)]);
        let p = attached(None, None, Some(&w));
        assert!(!p.static_strict);
        assert_eq!(p.mode(Some(8080)), Strict);
        assert_eq!(p.mode(Some(9090)), Permissive);
        // PERMISSIVE with 9090 STRICT: only 9090 rejects.
        let w = policy("w", "foo", true, Permissive, &[(9090, Strict)]);
        let p = attached(None, None, Some(&w));
        assert_eq!(p.mode(Some(8080)), Permissive);
        assert_eq!(p.mode(Some(9090)), Strict);
    }

    #[test]
    fn the_conversion_quirks_are_kept_as_istiod_has_them() {
        // UNSET workload under a STRICT namespace: a DISABLE port alone is no exception.
        let w = policy("w", "foo", true, Unset, &[(9090, Disable)]);
        let p = attached(None, Some(Strict), Some(&w));
        assert_eq!(p.mode(Some(9090)), Strict);
        // PERMISSIVE workload with a STRICT port under a STRICT mesh and no namespace
        // policy: the port rule is dropped as if the parent enforced it.
        let w = policy("w", "foo", true, Permissive, &[(9090, Strict)]);
        let p = attached(Some(Strict), None, Some(&w));
        assert_eq!(p.mode(Some(9090)), Permissive);
        // Mesh STRICT, a namespace policy with mode UNSET, an UNSET workload with
        // 9090 PERMISSIVE: the static policy is dropped for the converted one, and
        // the conversion skips the port (the namespace is "not STRICT"), so
        // nothing is attached and every port accepts plaintext.
        let w = policy("w", "foo", true, Unset, &[(9090, Permissive)]);
        let p = attached(Some(Strict), Some(Unset), Some(&w));
        assert!(p.names("istio-system").is_empty());
        assert_eq!(p.mode(Some(8080)), Permissive);
    }

    #[test]
    fn sidecar_wins_then_pod_label_then_namespace_label() {
        let ambient = map(&[(DATAPLANE_MODE, "ambient")]);
        let none = map(&[(DATAPLANE_MODE, "none")]);
        let empty = BTreeMap::new();
        assert_eq!(data_plane(true, &ambient, &ambient), DataPlane::Sidecar);
        assert_eq!(data_plane(false, &ambient, &empty), DataPlane::Ambient);
        assert_eq!(data_plane(false, &empty, &ambient), DataPlane::Ambient);
        assert_eq!(data_plane(false, &ambient, &none), DataPlane::None);
        assert_eq!(data_plane(false, &empty, &empty), DataPlane::None);
        assert_eq!(data_plane(false, &none, &empty), DataPlane::None);
    }
}
