//! Effective inbound mTLS mode per workload and port, as istiod computes it
//! (`pilot/pkg/security/authn/policy_applier.go`).

use crate::diagnostic::Location;
use crate::mesh::{Mesh, PeerAuthentication, Workload};
use crate::mode::MtlsMode;
use crate::model::TargetPort;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Which level of the hierarchy a policy sits at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Nothing applied: Istio's PERMISSIVE default.
    Default,
    Mesh,
    Namespace,
    Workload,
    Port,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PolicyRef {
    pub name: String,
    pub namespace: String,
    pub location: Location,
}

/// Why istiod does not use a policy that a reader might think applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IgnoreReason {
    /// An older policy at the same level wins.
    NewerThanWinner { winner: PolicyRef, level: Level },
    /// A policy with a selector in the root namespace is ignored by istiod (#61023).
    SelectorInRootNamespace,
    /// `portLevelMtls` on a mesh or namespace policy is never read.
    PortLevelOnNonWorkloadPolicy,
    /// A port-level entry keyed by a port the workload does not listen on (often a Service port).
    PortNotAContainerPort { port: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ignored {
    pub policy: PolicyRef,
    pub reason: IgnoreReason,
    /// Human sentence, e.g. "newer namespace-wide policy, ignored".
    pub message: String,
}

/// One step of the decision (mesh, namespace, workload, port), in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub level: Level,
    pub policy: Option<PolicyRef>,
    /// The mode as written at this level (may be `Unset`).
    pub declared: MtlsMode,
    /// The mode after inheritance.
    pub effective: MtlsMode,
}

/// The answer for one workload (and optionally one port).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    /// Never `Unset`.
    pub mode: MtlsMode,
    /// The level that decided `mode`.
    pub decided_at: Level,
    pub steps: Vec<Step>,
    pub ignored: Vec<Ignored>,
}

impl PolicyRef {
    /// A reference to `policy`.
    pub fn to(policy: &PeerAuthentication) -> Self {
        Self {
            name: policy.name.clone(),
            namespace: policy.namespace.clone(),
            location: policy.location.clone(),
        }
    }
}

impl std::fmt::Display for PolicyRef {
    /// `name.namespace`, as `istioctl x describe` prints it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.name, self.namespace)
    }
}

/// The policies istiod would pick for one workload, before modes are combined.
struct Picked<'p> {
    mesh: Option<&'p PeerAuthentication>,
    namespace: Option<&'p PeerAuthentication>,
    workload: Option<&'p PeerAuthentication>,
    ignored: Vec<Ignored>,
}

/// istiod's `getConfigsForWorkload` + the level split of `ComposePeerAuthentication`.
fn pick<'p>(
    policies: &'p [PeerAuthentication],
    root_namespace: &str,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> Picked<'p> {
    let mut mesh = Vec::new();
    let mut ns = Vec::new();
    let mut workload = Vec::new();
    let mut ignored = Vec::new();
    for p in policies {
        let in_root = p.namespace == root_namespace;
        if !(in_root || p.namespace == namespace) || !p.selects(labels) {
            continue;
        }
        if p.is_namespace_wide() {
            if in_root {
                mesh.push(p);
            } else {
                ns.push(p);
            }
        } else if in_root {
            ignored.push(Ignored {
                policy: PolicyRef::to(p),
                reason: IgnoreReason::SelectorInRootNamespace,
                message: format!(
                    "selector in root namespace {root_namespace}, ignored by istiod (it is not mesh-wide; istio/istio#61023)"
                ),
            });
        } else {
            workload.push(p);
        }
    }
    let mut oldest = |mut candidates: Vec<&'p PeerAuthentication>, level: Level, what: &str| {
        candidates.sort_by(|a, b| a.age_key().cmp(&b.age_key()));
        let mut it = candidates.into_iter();
        let winner = it.next();
        if let Some(w) = winner {
            for p in it {
                ignored.push(Ignored {
                    policy: PolicyRef::to(p),
                    reason: IgnoreReason::NewerThanWinner {
                        winner: PolicyRef::to(w),
                        level,
                    },
                    message: format!(
                        "newer {what} policy, ignored ({} is older and wins)",
                        PolicyRef::to(w)
                    ),
                });
            }
        }
        winner
    };
    let mesh = oldest(mesh, Level::Mesh, "mesh-wide");
    let namespace_winner = oldest(ns, Level::Namespace, "namespace-wide");
    let workload_winner = oldest(workload, Level::Workload, "workload");
    for p in [mesh, namespace_winner].into_iter().flatten() {
        if !p.port_level.is_empty() {
            ignored.push(Ignored {
                policy: PolicyRef::to(p),
                reason: IgnoreReason::PortLevelOnNonWorkloadPolicy,
                message: "portLevelMtls on a mesh/namespace-wide policy, ignored".to_string(),
            });
        }
    }
    Picked {
        mesh,
        namespace: namespace_winner,
        workload: workload_winner,
        ignored,
    }
}

/// Resolve the workload-level mode (no port) for a workload in `namespace` with
/// `labels`, from `policies` (any namespaces; only the relevant ones are used).
///
/// Exactly istiod's `ComposePeerAuthentication`: start PERMISSIVE; apply the
/// oldest selector-less root-namespace policy, then the oldest namespace-wide
/// policy of `namespace`, then the oldest matching workload policy; a missing
/// or UNSET level inherits. "Oldest" orders by creationTimestamp, then name,
/// then namespace; a missing timestamp sorts after every timestamp.
pub fn resolve_workload(
    policies: &[PeerAuthentication],
    root_namespace: &str,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> Resolution {
    let picked = pick(policies, root_namespace, namespace, labels);
    compose(&picked)
}

fn compose(picked: &Picked<'_>) -> Resolution {
    let mut mode = MtlsMode::Permissive;
    let mut decided_at = Level::Default;
    let mut steps = Vec::new();
    for (level, policy) in [
        (Level::Mesh, picked.mesh),
        (Level::Namespace, picked.namespace),
        (Level::Workload, picked.workload),
    ] {
        let Some(p) = policy else { continue };
        if p.mode != MtlsMode::Unset {
            mode = p.mode;
            decided_at = level;
        }
        steps.push(Step {
            level,
            policy: Some(PolicyRef::to(p)),
            declared: p.mode,
            effective: mode,
        });
    }
    Resolution {
        mode,
        decided_at,
        steps,
        ignored: picked.ignored.clone(),
    }
}

/// Resolve the mode for one container (target) port: the workload's mode,
/// overridden by the workload-level policy's `portLevelMtls` entry for `port`
/// (an UNSET entry takes the workload's mode). Port entries of mesh/namespace
/// policies are never read.
pub fn resolve_port(
    policies: &[PeerAuthentication],
    root_namespace: &str,
    namespace: &str,
    labels: &BTreeMap<String, String>,
    port: u32,
) -> Resolution {
    let picked = pick(policies, root_namespace, namespace, labels);
    let mut resolution = compose(&picked);
    if let Some(p) = picked.workload {
        if let Some(&declared) = p.port_level.get(&port) {
            if declared != MtlsMode::Unset {
                resolution.mode = declared;
                resolution.decided_at = Level::Port;
            }
            resolution.steps.push(Step {
                level: Level::Port,
                policy: Some(PolicyRef::to(p)),
                declared,
                effective: resolution.mode,
            });
        }
    }
    resolution
}

/// The offline `istioctl x describe pod`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadReport {
    pub namespace: String,
    pub name: String,
    pub sidecar: bool,
    pub workload: Resolution,
    /// Container port → resolution.
    pub ports: BTreeMap<u32, Resolution>,
}

impl Mesh {
    /// Describe one workload of this mesh: its workload-level mode and the mode
    /// of every port it serves (its container ports, the numeric target ports
    /// of Services selecting it, and the keys of its workload policy's
    /// `portLevelMtls`). Port keys that are neither container ports nor
    /// Service target ports are listed in `workload.ignored` as
    /// `PortNotAContainerPort` (istiod still builds a chain for them, but
    /// nothing a Service routes reaches it).
    pub fn describe(&self, workload: &Workload) -> WorkloadReport {
        let root = self.config.root_namespace.as_str();
        let policies = &self.peer_authentications;
        let mut resolution =
            resolve_workload(policies, root, &workload.namespace, &workload.labels);
        let served = self.served_ports(workload);
        let mut ports: BTreeSet<u32> = served.clone();
        let picked = pick(policies, root, &workload.namespace, &workload.labels);
        if let Some(p) = picked.workload {
            for &port in p.port_level.keys() {
                ports.insert(port);
                if !served.contains(&port) {
                    resolution.ignored.push(Ignored {
                        policy: PolicyRef::to(p),
                        reason: IgnoreReason::PortNotAContainerPort { port },
                        message: format!(
                            "portLevelMtls port {port} is not a container port of {}; portLevelMtls is keyed by the container (target) port",
                            workload.name
                        ),
                    });
                }
            }
        }
        WorkloadReport {
            namespace: workload.namespace.clone(),
            name: workload.name.clone(),
            sidecar: workload.sidecar,
            ports: ports
                .into_iter()
                .map(|port| {
                    (
                        port,
                        resolve_port(policies, root, &workload.namespace, &workload.labels, port),
                    )
                })
                .collect(),
            workload: resolution,
        }
    }

    /// Container ports plus numeric/named target ports of Services selecting `workload`.
    pub fn served_ports(&self, workload: &Workload) -> BTreeSet<u32> {
        let mut ports: BTreeSet<u32> = workload.ports.iter().map(|p| u32::from(p.port)).collect();
        for service in &self.services {
            if !service.selects(workload) {
                continue;
            }
            for sp in &service.ports {
                if let Some(port) = target_port(workload, &sp.target_port) {
                    ports.insert(port);
                }
            }
        }
        ports
    }
}

/// The container port a Service `targetPort` means for `workload`
/// (`None` for a name the workload does not declare).
pub fn target_port(workload: &Workload, target: &TargetPort) -> Option<u32> {
    match target {
        TargetPort::Number(n) => Some(u32::from(*n)),
        TargetPort::Name(name) => workload
            .ports
            .iter()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .map(|p| u32::from(p.port)),
    }
}

impl Resolution {
    /// The policies that produced the mode, as `name.namespace` (describe's
    /// "Applied PeerAuthentication" line, without the ignored ones).
    pub fn applied(&self) -> Vec<&PolicyRef> {
        let mut out: Vec<&PolicyRef> = Vec::new();
        for step in &self.steps {
            if let Some(p) = &step.policy {
                if !out.contains(&p) {
                    out.push(p);
                }
            }
        }
        out
    }
}

impl WorkloadReport {
    /// Text in the shape of `istioctl x describe pod`, plus the policies istiod ignores and why.
    pub fn to_text(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = writeln!(s, "Workload: {}.{}", self.name, self.namespace);
        if !self.sidecar {
            let _ = writeln!(s, "   (no sidecar: PeerAuthentication does not apply; the workload accepts plaintext only)");
        }
        let _ = writeln!(s, "Effective PeerAuthentication:");
        let _ = writeln!(s, "   Workload mTLS mode: {}", self.workload.mode);
        let overridden: Vec<_> = self
            .ports
            .iter()
            .filter(|(_, r)| {
                r.decided_at == Level::Port || r.steps.iter().any(|s| s.level == Level::Port)
            })
            .collect();
        if !overridden.is_empty() {
            let _ = writeln!(s, "   Port Level mTLS mode:");
            for (port, r) in overridden {
                let _ = writeln!(s, "      {port}: {}", r.mode);
            }
        }
        let applied: Vec<String> = self
            .workload
            .applied()
            .iter()
            .map(|p| p.to_string())
            .collect();
        if !applied.is_empty() {
            let _ = writeln!(s, "Applied PeerAuthentication:");
            let _ = writeln!(s, "   {}", applied.join(", "));
        }
        if !self.workload.ignored.is_empty() {
            let _ = writeln!(s, "Ignored PeerAuthentication:");
            for i in &self.workload.ignored {
                let _ = writeln!(s, "   {}: {}", i.policy, i.message);
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    //! The cases of istiod's `TestComposePeerAuthentication`
    //! (`pilot/pkg/security/authn/policy_applier_test.go`), plus the ignore reasons.
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::diagnostic::Location;

    const ROOT: &str = "root-namespace";
    const NOW: &str = "2024-05-01T10:00:01Z";
    const SECOND_AGO: &str = "2024-05-01T10:00:00Z";

    fn pa(
        name: &str,
        ns: &str,
        ts: Option<&str>,
        selector: Option<&[(&str, &str)]>,
        mode: MtlsMode,
    ) -> PeerAuthentication {
        PeerAuthentication {
            name: name.into(),
            namespace: ns.into(),
            creation_timestamp: ts.map(Into::into),
            selector: selector.map(|s| {
                s.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            }),
            mode,
            port_level: BTreeMap::new(),
            location: Location::default(),
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn mode_of(policies: &[PeerAuthentication]) -> MtlsMode {
        resolve_workload(
            policies,
            ROOT,
            "my-ns",
            &labels(&[("app", "foo"), ("stage", "prod")]),
        )
        .mode
    }

    use MtlsMode::{Disable, Permissive, Strict, Unset};

    #[test]
    fn no_policy_means_permissive_decided_by_default() {
        let r = resolve_workload(&[], ROOT, "my-ns", &labels(&[]));
        assert_eq!((r.mode, r.decided_at), (Permissive, Level::Default));
        assert!(r.steps.is_empty());
    }

    #[test]
    fn a_mesh_policy_alone_decides() {
        let r = resolve_workload(
            &[pa("default", ROOT, None, None, Strict)],
            ROOT,
            "my-ns",
            &labels(&[]),
        );
        assert_eq!((r.mode, r.decided_at), (Strict, Level::Mesh));
    }

    #[test]
    fn an_empty_selector_in_the_root_namespace_is_mesh_wide_and_the_namespace_overrides_it() {
        let policies = [
            pa("default", ROOT, None, Some(&[]), Strict),
            pa("default", "my-ns", None, None, Permissive),
        ];
        let r = resolve_workload(&policies, ROOT, "my-ns", &labels(&[("app", "foo")]));
        assert_eq!((r.mode, r.decided_at), (Permissive, Level::Namespace));
        assert_eq!(r.steps.len(), 2);
        assert_eq!(r.steps[0].effective, Strict);
    }

    #[test]
    fn a_selector_in_the_root_namespace_is_ignored() {
        let policies = [pa("default", ROOT, None, Some(&[("app", "foo")]), Strict)];
        let r = resolve_workload(&policies, ROOT, "my-ns", &labels(&[("app", "foo")]));
        assert_eq!(r.mode, Permissive);
        assert_eq!(r.ignored.len(), 1);
        assert_eq!(r.ignored[0].reason, IgnoreReason::SelectorInRootNamespace);
        assert!(
            r.ignored[0].message.contains("selector in root namespace"),
            "{}",
            r.ignored[0].message
        );
    }

    #[test]
    fn unset_namespace_and_workload_policies_leave_permissive() {
        let policies = [
            pa("default", "my-ns", None, None, Unset),
            pa("foo", "my-ns", None, Some(&[("app", "foo")]), Unset),
        ];
        assert_eq!(mode_of(&policies), Permissive);
    }

    #[test]
    fn the_namespace_overrides_the_mesh() {
        let policies = [
            pa("default", "my-ns", None, None, Permissive),
            pa("default", ROOT, None, None, Disable),
        ];
        assert_eq!(mode_of(&policies), Permissive);
    }

    #[test]
    fn among_several_mesh_policies_the_oldest_wins_and_a_tie_goes_to_the_name() {
        let policies = [
            pa("now", ROOT, Some(NOW), None, Disable),
            pa("second later", ROOT, Some(SECOND_AGO), None, Strict),
            pa("second ago", ROOT, Some(SECOND_AGO), None, Permissive),
        ];
        let r = resolve_workload(&policies, ROOT, "my-ns", &labels(&[]));
        assert_eq!(r.mode, Permissive);
        assert_eq!(r.steps[0].policy.as_ref().unwrap().name, "second ago");
        let ignored: Vec<&str> = r.ignored.iter().map(|i| i.policy.name.as_str()).collect();
        assert_eq!(ignored, ["second later", "now"]);
        assert!(r
            .ignored
            .iter()
            .all(|i| i.message.starts_with("newer mesh-wide policy, ignored")));
    }

    #[test]
    fn among_several_namespace_policies_the_oldest_wins() {
        let policies = [
            pa("now", "my-ns", Some(NOW), None, Disable),
            pa("second ago", "my-ns", Some(SECOND_AGO), None, Permissive),
            pa("second later", "my-ns", Some(SECOND_AGO), None, Strict),
        ];
        assert_eq!(mode_of(&policies), Permissive);
        let r = resolve_workload(&policies, ROOT, "my-ns", &labels(&[]));
        assert!(r.ignored.iter().all(|i| matches!(
            &i.reason,
            IgnoreReason::NewerThanWinner { winner, level: Level::Namespace } if winner.name == "second ago"
        )));
        assert!(r.ignored[0]
            .message
            .starts_with("newer namespace-wide policy, ignored"));
    }

    #[test]
    fn among_several_workload_policies_only_the_oldest_applies_and_they_are_not_merged() {
        let policies = [
            pa("now", "my-ns", Some(NOW), Some(&[("app", "foo")]), Disable),
            pa(
                "second ago",
                "my-ns",
                Some(SECOND_AGO),
                Some(&[("app", "foo")]),
                Permissive,
            ),
            pa(
                "second later",
                "my-ns",
                Some(SECOND_AGO),
                Some(&[("stage", "prod")]),
                Strict,
            ),
        ];
        assert_eq!(mode_of(&policies), Permissive);
    }

    #[test]
    fn a_policy_without_timestamp_sorts_after_any_timestamp() {
        let policies = [
            pa("a", "my-ns", None, None, Strict),
            pa("z", "my-ns", Some(NOW), None, Disable),
        ];
        assert_eq!(mode_of(&policies), Disable);
    }

    #[test]
    fn an_unset_mesh_policy_keeps_the_permissive_default() {
        let r = resolve_workload(
            &[pa("default", ROOT, None, None, Unset)],
            ROOT,
            "my-ns",
            &labels(&[]),
        );
        assert_eq!((r.mode, r.decided_at), (Permissive, Level::Default));
        assert_eq!(r.steps.len(), 1);
    }

    #[test]
    fn an_unset_workload_policy_inherits_from_the_mesh() {
        let policies = [
            pa("default", ROOT, None, None, Strict),
            pa("foo", "my-ns", None, Some(&[("app", "foo")]), Unset),
        ];
        let r = resolve_workload(&policies, ROOT, "my-ns", &labels(&[("app", "foo")]));
        assert_eq!((r.mode, r.decided_at), (Strict, Level::Mesh));
    }

    #[test]
    fn an_unset_workload_policy_inherits_from_the_namespace() {
        let policies = [
            pa("default", "my-ns", None, None, Strict),
            pa("foo", "my-ns", None, Some(&[("app", "foo")]), Unset),
        ];
        assert_eq!(mode_of(&policies), Strict);
    }

    #[test]
    fn inheritance_runs_from_mesh_through_an_unset_namespace_to_the_workload() {
        let policies = [
            pa("default", ROOT, None, None, Strict),
            pa("default", "my-ns", None, None, Unset),
            pa("foo", "my-ns", None, Some(&[("app", "foo")]), Unset),
        ];
        let r = resolve_workload(&policies, ROOT, "my-ns", &labels(&[("app", "foo")]));
        assert_eq!(r.mode, Strict);
        assert_eq!(
            r.steps.iter().map(|s| s.effective).collect::<Vec<_>>(),
            [Strict, Strict, Strict]
        );
    }

    #[test]
    fn port_level_modes_override_and_unset_ports_take_the_workload_mode() {
        let mut workload = pa("foo", "my-ns", None, Some(&[("app", "foo")]), Unset);
        workload.port_level = [(80, Disable), (90, Unset)].into_iter().collect();
        let policies = [pa("default", ROOT, None, None, Strict), workload];
        let l = labels(&[("app", "foo")]);
        let r80 = resolve_port(&policies, ROOT, "my-ns", &l, 80);
        assert_eq!((r80.mode, r80.decided_at), (Disable, Level::Port));
        let r90 = resolve_port(&policies, ROOT, "my-ns", &l, 90);
        assert_eq!((r90.mode, r90.decided_at), (Strict, Level::Mesh));
        assert_eq!(
            r90.steps.last().map(|s| (s.level, s.declared)),
            Some((Level::Port, Unset))
        );
        let r100 = resolve_port(&policies, ROOT, "my-ns", &l, 100);
        assert_eq!(r100.mode, Strict);
        assert!(r100.steps.iter().all(|s| s.level != Level::Port));
    }

    #[test]
    fn port_level_entries_of_a_namespace_policy_are_never_read() {
        let mut ns = pa("default", "my-ns", None, None, Strict);
        ns.port_level = [(80, Disable)].into_iter().collect();
        let r = resolve_port(&[ns], ROOT, "my-ns", &labels(&[]), 80);
        assert_eq!(r.mode, Strict);
        assert_eq!(
            r.ignored[0].reason,
            IgnoreReason::PortLevelOnNonWorkloadPolicy
        );
    }

    #[test]
    fn policies_of_other_namespaces_and_non_matching_selectors_do_not_apply() {
        let policies = [
            pa("default", "other", None, None, Strict),
            pa("foo", "my-ns", None, Some(&[("app", "bar")]), Strict),
        ];
        assert_eq!(mode_of(&policies), Permissive);
    }

    #[test]
    fn a_workload_in_the_root_namespace_gets_only_the_mesh_policy() {
        let policies = [
            pa("default", ROOT, None, None, Disable),
            pa("w", ROOT, None, Some(&[("app", "foo")]), Strict),
        ];
        let r = resolve_workload(&policies, ROOT, ROOT, &labels(&[("app", "foo")]));
        assert_eq!((r.mode, r.decided_at), (Disable, Level::Mesh));
    }
}
