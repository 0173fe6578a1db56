//! Effective inbound mTLS mode per workload and port, as istiod computes it
//! (`pilot/pkg/security/authn/policy_applier.go`).

use crate::diagnostic::Location;
use crate::mesh::{Mesh, PeerAuthentication, Workload};
use crate::mode::MtlsMode;
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
    /// Not produced any more: istiod does apply a `portLevelMtls` key no
    /// port declares, on a passthrough chain of its own (see
    /// [`WorkloadReport::undeclared_ports`]). Kept so that documents which
    /// carry it still read.
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

/// The policies of one namespace, split the way istiod's levels need them.
#[derive(Debug, Clone, Default)]
struct Group<'p> {
    /// Selector-less (or empty-`matchLabels`) policies, oldest first; ties keep input order.
    wide: Vec<&'p PeerAuthentication>,
    /// Policies with labels, oldest first; ties keep input order.
    selecting: Vec<&'p PeerAuthentication>,
    /// Policies with labels, in input order.
    selecting_in_order: Vec<&'p PeerAuthentication>,
}

/// The PeerAuthentications of a mesh indexed for resolution: grouped by
/// namespace and sorted by istiod's age order once, so resolving a workload
/// reads only its own namespace's and the root namespace's policies, and the
/// oldest candidate of each level is the first that matches.
///
/// Build one per set of policies and ask it many questions (`Mesh::reach`
/// keeps one for the matrix and `describe`); [`resolve_workload`] and
/// [`resolve_port`] build a throwaway one per call.
#[derive(Debug, Clone)]
pub struct Resolver<'p> {
    root: &'p str,
    // A BTreeMap rather than a HashMap: the proxy-wasm filter then needs no
    // randomly seeded hasher at all, and there are few namespaces to look up.
    groups: BTreeMap<&'p str, Group<'p>>,
    empty: Group<'p>,
}

impl<'p> Resolver<'p> {
    /// The root namespace this index was built for.
    pub fn root(&self) -> &'p str {
        self.root
    }

    /// What istiod sends ztunnel for a captured workload of `namespace`
    /// with `labels` ([`crate::ambient::ZtunnelPolicy::from_winners`]).
    pub fn ztunnel_policy(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
    ) -> crate::ambient::ZtunnelPolicy {
        let [mesh, ns, workload] = self.ambient_winners(namespace, labels);
        let parents = crate::ambient::ConversionParents {
            namespace: self.oldest_without_selector(namespace),
            mesh: self.oldest_without_selector(self.root),
        };
        crate::ambient::ZtunnelPolicy::from_winners(self.root, mesh, ns, workload, parents)
    }

    /// [`Self::winners`] as istiod's ambient index picks them
    /// (`fetchPeerAuthentications`): outside the root namespace it fetches
    /// only root policies with no `selector` at all, so one with
    /// `selector: {}` is no mesh policy there (in the workload's own
    /// namespace, and for root-namespace workloads, an empty selector still
    /// reads as namespace-wide).
    pub fn ambient_winners(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
    ) -> [Option<&'p PeerAuthentication>; 3] {
        let [mesh, ns, workload] = self.winners(namespace, labels);
        if namespace == self.root {
            return [mesh, ns, workload];
        }
        [self.oldest_without_selector(self.root), ns, workload]
    }

    /// The oldest policy of `namespace` without a `selector` field: the
    /// only kind istiod's ambient indexes treat as mesh-wide elsewhere and
    /// hand the conversion as its parents (`PeerAuthByNamespace`).
    fn oldest_without_selector(&self, namespace: &str) -> Option<&'p PeerAuthentication> {
        self.group(namespace)
            .wide
            .iter()
            .copied()
            .find(|p| p.selector.is_none())
    }

    /// Index `policies` (any namespaces) for a mesh whose root namespace is `root_namespace`.
    pub fn new(policies: &'p [PeerAuthentication], root_namespace: &'p str) -> Self {
        Self::build(policies, root_namespace, |_| true)
    }

    /// An index of only the root namespace's and `namespace`'s policies: enough
    /// to resolve workloads of `namespace`, for one-off questions.
    pub(crate) fn for_namespace(
        policies: &'p [PeerAuthentication],
        root_namespace: &'p str,
        namespace: &str,
    ) -> Self {
        Self::build(policies, root_namespace, |p| {
            p.namespace == root_namespace || p.namespace == namespace
        })
    }

    fn build(
        policies: &'p [PeerAuthentication],
        root_namespace: &'p str,
        keep: impl Fn(&PeerAuthentication) -> bool,
    ) -> Self {
        // istiod's order (creationTimestamp, name, namespace), computed once per
        // policy; the sort is stable, so exact ties keep the input order.
        let mut by_age: Vec<((i128, &str, &str), &PeerAuthentication)> = policies
            .iter()
            .filter(|p| keep(p))
            .map(|p| (p.age_key(), p))
            .collect();
        crate::order::sort_by(&mut by_age, |a, b| a.0.cmp(&b.0));
        let mut groups: BTreeMap<&str, Group<'_>> = BTreeMap::new();
        for (_, p) in by_age {
            let group = groups.entry(p.namespace.as_str()).or_default();
            if p.is_namespace_wide() {
                group.wide.push(p);
            } else {
                group.selecting.push(p);
            }
        }
        for p in policies
            .iter()
            .filter(|p| !p.is_namespace_wide() && keep(p))
        {
            groups
                .entry(p.namespace.as_str())
                .or_default()
                .selecting_in_order
                .push(p);
        }
        Self {
            root: root_namespace,
            groups,
            empty: Group::default(),
        }
    }

    fn group(&self, namespace: &str) -> &Group<'p> {
        self.groups.get(namespace).unwrap_or(&self.empty)
    }

    /// The workload policies of `namespace` whose selector picks `labels`,
    /// oldest first (none in the root namespace: istiod ignores those).
    pub(crate) fn workload_candidates<'a>(
        &'a self,
        namespace: &str,
        labels: &'a BTreeMap<String, String>,
    ) -> impl Iterator<Item = &'p PeerAuthentication> + 'a {
        let group = if namespace == self.root {
            &self.empty
        } else {
            self.group(namespace)
        };
        group
            .selecting
            .iter()
            .copied()
            .filter(move |p| p.selects(labels))
    }

    /// The winner of each level, without the bookkeeping of what was ignored.
    /// The mesh, namespace and workload policies istiod uses for a workload
    /// of `namespace` with `labels` (oldest of each level; root-namespace
    /// selector policies never win), before modes are combined.
    pub fn winners(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
    ) -> [Option<&'p PeerAuthentication>; 3] {
        let mesh = self.group(self.root).wide.first().copied();
        if namespace == self.root {
            return [mesh, None, None];
        }
        let namespace_winner = self.group(namespace).wide.first().copied();
        let workload = self.workload_candidates(namespace, labels).next();
        [mesh, namespace_winner, workload]
    }

    /// istiod's `getConfigsForWorkload` + the level split of `ComposePeerAuthentication`.
    fn pick(&self, namespace: &str, labels: &BTreeMap<String, String>) -> Picked<'p> {
        let root = self.group(self.root);
        let mut ignored = Vec::new();
        for p in root.selecting_in_order.iter().filter(|p| p.selects(labels)) {
            ignored.push(Ignored {
                policy: PolicyRef::to(p),
                reason: IgnoreReason::SelectorInRootNamespace,
                message: format!(
                    "selector in root namespace {}, ignored by istiod (it is not mesh-wide; istio/istio#61023)",
                    self.root
                ),
            });
        }
        let mut oldest = |candidates: &mut dyn Iterator<Item = &'p PeerAuthentication>,
                          level: Level,
                          what: &str| {
            let winner = candidates.next();
            if let Some(w) = winner {
                for p in candidates {
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
        let mesh = oldest(&mut root.wide.iter().copied(), Level::Mesh, "mesh-wide");
        let (namespace_winner, workload_winner) = if namespace == self.root {
            (None, None)
        } else {
            let namespace_winner = oldest(
                &mut self.group(namespace).wide.iter().copied(),
                Level::Namespace,
                "namespace-wide",
            );
            let workload_winner = oldest(
                &mut self.workload_candidates(namespace, labels),
                Level::Workload,
                "workload",
            );
            (namespace_winner, workload_winner)
        };
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

    /// [`resolve_workload`] over this index.
    pub fn resolve_workload(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
    ) -> Resolution {
        compose(&self.pick(namespace, labels))
    }

    /// [`resolve_port`] over this index.
    pub fn resolve_port(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
        port: u32,
    ) -> Resolution {
        let picked = self.pick(namespace, labels);
        with_port(compose(&picked), picked.workload, port)
    }

    /// Only the effective mode (never `Unset`) of the workload (`port: None`) or
    /// of one container port: the `mode` of [`Self::resolve_workload`] /
    /// [`Self::resolve_port`], without building the steps and ignore list.
    pub fn mode(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
        port: Option<u32>,
    ) -> MtlsMode {
        let [mesh, namespace_winner, workload] = self.winners(namespace, labels);
        let mode = [mesh, namespace_winner, workload]
            .into_iter()
            .flatten()
            .fold(MtlsMode::Permissive, |m, p| m.overridden_by(p.mode));
        let port_mode = port
            .zip(workload)
            .and_then(|(port, w)| w.port_level.get(&port).copied());
        mode.overridden_by(port_mode.unwrap_or(MtlsMode::Unset))
    }

    /// [`Mesh::describe`] with this index; `mesh` must hold the indexed policies.
    pub(crate) fn describe(&self, mesh: &Mesh, workload: &Workload) -> WorkloadReport {
        self.describe_serving(workload, mesh.served_ports(workload))
    }

    /// [`Self::describe`] with the workload's served ports already known.
    pub(crate) fn describe_serving(
        &self,
        workload: &Workload,
        served: BTreeSet<u32>,
    ) -> WorkloadReport {
        let picked = self.pick(&workload.namespace, &workload.labels);
        let base = compose(&picked);
        let resolution = base.clone();
        let mut ports: BTreeSet<u32> = served.clone();
        // A key no container port or Service target port declares is not
        // ignored: istiod adds a passthrough filter chain for each such
        // port with its own mode (istio/istio @86c9f01f
        // pilot/pkg/networking/plugin/authn/authentication.go ForPassthrough,
        // needPerPortPassthroughFilterChain; listener_inbound.go
        // buildInboundPassthroughChains), so traffic sent to the pod's IP on
        // that port gets it. `check` warns when the key looks like a
        // Service port (pa-port-is-service-port, pa-port-not-targeted).
        let mut undeclared = BTreeSet::new();
        if let Some(p) = picked.workload {
            for &port in p.port_level.keys() {
                if ports.insert(port) {
                    undeclared.insert(port);
                }
            }
        }
        let ports: BTreeMap<u32, Resolution> = crate::order::map(
            ports
                .into_iter()
                .map(|port| (port, with_port(base.clone(), picked.workload, port))),
        );
        let ambient = workload
            .ambient
            .then(|| self.ambient_report(workload, &resolution, &ports));
        WorkloadReport {
            namespace: workload.namespace.clone(),
            name: workload.name.clone(),
            sidecar: workload.sidecar,
            ports,
            undeclared_ports: undeclared,
            workload: resolution,
            ambient,
        }
    }

    /// What ztunnel enforces for a captured workload, next to the
    /// sidecar-style composition (`workload`, `ports`) it is derived from.
    fn ambient_report(
        &self,
        workload: &Workload,
        resolution: &Resolution,
        ports: &BTreeMap<u32, Resolution>,
    ) -> AmbientReport {
        let z = self.ztunnel_policy(&workload.namespace, &workload.labels);
        let disabled = resolution
            .steps
            .iter()
            .chain(ports.values().flat_map(|r| r.steps.iter()))
            .any(|s| s.declared == MtlsMode::Disable);
        let mut notes = Vec::new();
        if disabled {
            notes.push(
                "DISABLE is not supported in ambient mode: istiod treats it as PERMISSIVE, so ztunnel accepts plaintext from outside the mesh and still uses HBONE mTLS with mesh peers".to_string(),
            );
        }
        AmbientReport {
            ztunnel_policies: z.names(self.root),
            workload: z.mode(None),
            ports: ports.keys().map(|&p| (p, z.mode(Some(p)))).collect(),
            use_waypoint: workload.use_waypoint.clone(),
            notes,
        }
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
///
/// Indexes `policies` on every call: to resolve many workloads, build one
/// [`Resolver`] and ask it.
pub fn resolve_workload(
    policies: &[PeerAuthentication],
    root_namespace: &str,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> Resolution {
    Resolver::for_namespace(policies, root_namespace, namespace).resolve_workload(namespace, labels)
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

/// Apply the workload policy's `portLevelMtls` entry for `port`, if any.
fn with_port(
    mut resolution: Resolution,
    workload: Option<&PeerAuthentication>,
    port: u32,
) -> Resolution {
    if let Some(p) = workload {
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

/// Resolve the mode for one container (target) port: the workload's mode,
/// overridden by the workload-level policy's `portLevelMtls` entry for `port`
/// (an UNSET entry takes the workload's mode). Port entries of mesh/namespace
/// policies are never read.
///
/// Indexes `policies` on every call: to resolve many ports, build one
/// [`Resolver`] and ask it.
pub fn resolve_port(
    policies: &[PeerAuthentication],
    root_namespace: &str,
    namespace: &str,
    labels: &BTreeMap<String, String>,
    port: u32,
) -> Resolution {
    Resolver::for_namespace(policies, root_namespace, namespace)
        .resolve_port(namespace, labels, port)
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
    /// Keys of the workload policy's `portLevelMtls` (in `ports`) that no
    /// container port or Service target port declares. istiod still applies
    /// them, on a passthrough filter chain of their own: they decide traffic
    /// sent to the pod's IP on that port, and nothing a Service routes.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub undeclared_ports: BTreeSet<u32>,
    /// For a workload captured by ztunnel: what ztunnel enforces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ambient: Option<AmbientReport>,
}

/// A captured workload as ztunnel sees it (`istioctl ztunnel-config
/// workload` lists the same policy names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AmbientReport {
    /// The policies istiod attaches, `<namespace>/<name>`.
    pub ztunnel_policies: Vec<String>,
    /// STRICT (rejects connections without a peer identity) or PERMISSIVE.
    pub workload: MtlsMode,
    /// The same per served container port.
    pub ports: BTreeMap<u32, MtlsMode>,
    /// `istio.io/use-waypoint` of the pod or its namespace.
    pub use_waypoint: Option<String>,
    /// What a reader used to sidecars would not expect, one sentence each.
    pub notes: Vec<String>,
}

impl Mesh {
    /// Describe one workload of this mesh: its workload-level mode and the mode
    /// of every port it serves (its container ports, the numeric target ports
    /// of Services selecting it, and the keys of its workload policy's
    /// `portLevelMtls`). Port keys that are neither container ports nor
    /// Service target ports are in `ports` and `undeclared_ports`: istiod
    /// builds a passthrough chain with their mode, which only traffic to the
    /// pod's IP on that port reaches.
    ///
    /// Indexes the policies on every call: to describe many workloads, use
    /// [`Mesh::reach`] (or a [`Resolver`]) once.
    pub fn describe(&self, workload: &Workload) -> WorkloadReport {
        Resolver::for_namespace(
            &self.peer_authentications,
            &self.config.root_namespace,
            &workload.namespace,
        )
        .describe(self, workload)
    }

    /// The mesh's PeerAuthentications indexed for resolution.
    pub fn resolver(&self) -> Resolver<'_> {
        Resolver::new(&self.peer_authentications, &self.config.root_namespace)
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

    #[test]
    fn one_resolver_answers_like_the_one_off_functions_for_every_workload_and_port() {
        let mut workload = pa("w", "my-ns", Some(NOW), Some(&[("app", "foo")]), Unset);
        workload.port_level = [(80, Disable), (90, Unset), (100, Strict)]
            .into_iter()
            .collect();
        let policies = [
            pa("default", ROOT, Some(NOW), None, Strict),
            pa("older", ROOT, Some(SECOND_AGO), None, Permissive),
            pa("sel", ROOT, None, Some(&[("app", "foo")]), Disable),
            pa("default", "my-ns", None, None, Disable),
            pa(
                "z",
                "my-ns",
                Some(SECOND_AGO),
                Some(&[("stage", "prod")]),
                Permissive,
            ),
            workload,
            pa("default", "other", None, None, Unset),
        ];
        let resolver = Resolver::new(&policies, ROOT);
        for namespace in [ROOT, "my-ns", "other", "nowhere"] {
            for pairs in [
                &[][..],
                &[("app", "foo")],
                &[("app", "foo"), ("stage", "prod")],
            ] {
                let l = labels(pairs);
                let workload = resolve_workload(&policies, ROOT, namespace, &l);
                assert_eq!(resolver.resolve_workload(namespace, &l), workload);
                assert_eq!(resolver.mode(namespace, &l, None), workload.mode);
                for port in [80, 90, 100, 8080] {
                    let one_off = resolve_port(&policies, ROOT, namespace, &l, port);
                    assert_eq!(resolver.resolve_port(namespace, &l, port), one_off);
                    assert_eq!(
                        resolver.mode(namespace, &l, Some(port)),
                        one_off.mode,
                        "{namespace} {pairs:?} port {port}"
                    );
                }
            }
        }
        // The oldest mesh policy wins, the selector one in the root is ignored, and
        // the namespace's oldest workload policy (z, by timestamp) beats w.
        let r = resolver.resolve_port("my-ns", &labels(&[("app", "foo"), ("stage", "prod")]), 80);
        assert_eq!(r.steps[0].policy.as_ref().unwrap().name, "older");
        assert_eq!((r.mode, r.decided_at), (Permissive, Level::Workload));
        assert_eq!(r.steps[2].policy.as_ref().unwrap().name, "z");
    }

    /// istiod's selection written the plain way (every policy scanned, each
    /// level's candidates sorted), as `resolve` did before the index: the
    /// indexed `Resolver` must pick exactly the same.
    mod reference {
        use super::*;

        pub fn resolve<'p>(
            policies: &'p [PeerAuthentication],
            root: &str,
            namespace: &str,
            labels: &BTreeMap<String, String>,
            port: Option<u32>,
        ) -> (MtlsMode, Level, Vec<String>, Vec<String>) {
            let (mut mesh, mut ns, mut workload, mut ignored) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for p in policies {
                let in_root = p.namespace == root;
                if !(in_root || p.namespace == namespace) || !p.selects(labels) {
                    continue;
                }
                match (p.is_namespace_wide(), in_root) {
                    (true, true) => mesh.push(p),
                    (true, false) => ns.push(p),
                    (false, true) => ignored.push(format!("root {}", p.name)),
                    (false, false) => workload.push(p),
                }
            }
            let mut oldest = |mut c: Vec<&'p PeerAuthentication>| {
                c.sort_by(|a, b| a.age_key().cmp(&b.age_key()));
                let winner = c.first().copied();
                for p in c.iter().skip(1) {
                    ignored.push(format!("newer {}.{}", p.name, p.namespace));
                }
                winner
            };
            let winners = [oldest(mesh), oldest(ns), oldest(workload)];
            let (mut mode, mut level) = (MtlsMode::Permissive, Level::Default);
            let mut applied = Vec::new();
            for (p, l) in winners
                .iter()
                .zip([Level::Mesh, Level::Namespace, Level::Workload])
            {
                let Some(p) = p else { continue };
                applied.push(format!("{}.{}", p.name, p.namespace));
                if p.mode != MtlsMode::Unset {
                    (mode, level) = (p.mode, l);
                }
            }
            if let (Some(port), Some(w)) = (port, winners[2]) {
                if let Some(&m) = w.port_level.get(&port) {
                    applied.push(format!("{}.{} port", w.name, w.namespace));
                    if m != MtlsMode::Unset {
                        (mode, level) = (m, Level::Port);
                    }
                }
            }
            (mode, level, applied, ignored)
        }
    }

    fn summary(r: &Resolution, with_port: bool) -> (MtlsMode, Level, Vec<String>, Vec<String>) {
        let applied = r
            .steps
            .iter()
            .map(|s| {
                let p = s.policy.as_ref().unwrap();
                if s.level == Level::Port && with_port {
                    format!("{} port", p)
                } else {
                    p.to_string()
                }
            })
            .collect();
        let ignored = r
            .ignored
            .iter()
            .filter_map(|i| match &i.reason {
                IgnoreReason::SelectorInRootNamespace => Some(format!("root {}", i.policy.name)),
                IgnoreReason::NewerThanWinner { .. } => Some(format!("newer {}", i.policy)),
                _ => None,
            })
            .collect();
        (r.mode, r.decided_at, applied, ignored)
    }

    fn any_policy() -> impl proptest::strategy::Strategy<Value = PeerAuthentication> {
        use proptest::prelude::*;
        let namespace = prop::sample::select(vec![ROOT, "a", "b"]);
        let name = prop::sample::select(vec!["p", "q", "r", "default"]);
        let stamp = prop::option::of(prop::sample::select(vec![NOW, SECOND_AGO]));
        let selector = prop::option::of(prop::collection::btree_map(
            prop::sample::select(vec!["app", "tier"]),
            prop::sample::select(vec!["x", "y"]),
            0..=2,
        ));
        let mode = prop::sample::select(vec![Unset, Disable, Permissive, Strict]);
        let ports = prop::collection::btree_map(
            prop::sample::select(vec![80u32, 90]),
            prop::sample::select(vec![Unset, Disable, Permissive, Strict]),
            0..=2,
        );
        (namespace, name, stamp, selector, mode, ports).prop_map(
            |(namespace, name, stamp, selector, mode, port_level)| {
                let selector: Option<Vec<(&str, &str)>> = selector.map(|s| s.into_iter().collect());
                PeerAuthentication {
                    port_level,
                    ..pa(name, namespace, stamp, selector.as_deref(), mode)
                }
            },
        )
    }

    proptest::proptest! {
        #[test]
        fn the_index_picks_what_a_scan_of_every_policy_picks(
            policies in proptest::collection::vec(any_policy(), 0..12),
            namespace in proptest::sample::select(vec![ROOT, "a", "b"]),
            app in proptest::option::of(proptest::sample::select(vec!["x", "y"])),
            tier in proptest::option::of(proptest::sample::select(vec!["x", "y"])),
        ) {
            let mut l = BTreeMap::new();
            if let Some(v) = app { l.insert("app".to_string(), v.to_string()); }
            if let Some(v) = tier { l.insert("tier".to_string(), v.to_string()); }
            let resolver = Resolver::new(&policies, ROOT);
            let r = resolver.resolve_workload(namespace, &l);
            proptest::prop_assert_eq!(summary(&r, false), reference::resolve(&policies, ROOT, namespace, &l, None));
            proptest::prop_assert_eq!(resolver.mode(namespace, &l, None), r.mode);
            for port in [80, 90, 100] {
                let r = resolver.resolve_port(namespace, &l, port);
                proptest::prop_assert_eq!(summary(&r, true), reference::resolve(&policies, ROOT, namespace, &l, Some(port)));
                proptest::prop_assert_eq!(resolver.mode(namespace, &l, Some(port)), r.mode);
            }
        }
    }
}
