//! Effective inbound mTLS mode per workload and port, as istiod computes it
//! (`pilot/pkg/security/authn/policy_applier.go`).

use crate::diagnostic::Location;
use crate::mesh::{Mesh, PeerAuthentication, Workload};
use crate::mode::MtlsMode;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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

/// Resolve the workload-level mode (no port) for a workload in `namespace` with
/// `labels`, from `policies` (any namespaces; only the relevant ones are used).
pub fn resolve_workload(
    policies: &[PeerAuthentication],
    root_namespace: &str,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> Resolution {
    let _ = (policies, root_namespace, namespace, labels);
    todo!("policy implementation")
}

/// Resolve the mode for one container (target) port.
pub fn resolve_port(
    policies: &[PeerAuthentication],
    root_namespace: &str,
    namespace: &str,
    labels: &BTreeMap<String, String>,
    port: u32,
) -> Resolution {
    let _ = (policies, root_namespace, namespace, labels, port);
    todo!("policy implementation")
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
    /// Describe one workload of this mesh.
    pub fn describe(&self, workload: &Workload) -> WorkloadReport {
        let _ = workload;
        todo!("policy implementation")
    }
}
