//! Wire types: serde structs that mirror the Kubernetes/Istio YAML exactly
//! (camelCase field names, unknown fields ignored), plus the located resource
//! envelope the loader produces. Domain decisions live in `mesh`/`resolve`.

use crate::diagnostic::Location;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `metadata` as far as peerauth needs it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    #[serde(default)]
    pub name: String,
    /// Missing namespace means `default` (as `kubectl apply` would do).
    pub namespace: Option<String>,
    /// RFC 3339, e.g. `2024-01-02T03:04:05Z`; missing sorts as newest.
    pub creation_timestamp: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// `spec.selector` of a PeerAuthentication.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadSelector {
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
}

/// `{mode: ...}`; the mode stays a string here so an unknown mode becomes a
/// diagnostic with a line number instead of a parse failure.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MtlsSpec {
    pub mode: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerAuthenticationSpec {
    pub selector: Option<WorkloadSelector>,
    pub mtls: Option<MtlsSpec>,
    /// Keys are port numbers as written (strings in YAML maps); validated later.
    pub port_level_mtls: Option<BTreeMap<String, MtlsSpec>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TlsSettings {
    pub mode: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PortSelector {
    pub number: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PortTrafficPolicy {
    pub port: Option<PortSelector>,
    pub tls: Option<TlsSettings>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrafficPolicy {
    pub tls: Option<TlsSettings>,
    #[serde(default)]
    pub port_level_settings: Vec<PortTrafficPolicy>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DestinationRuleSpec {
    #[serde(default)]
    pub host: String,
    pub traffic_policy: Option<TrafficPolicy>,
    #[serde(default)]
    pub export_to: Vec<String>,
}

/// One container port (`containerPort`, optional `name`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerPort {
    pub name: Option<String>,
    pub port: u16,
}

/// One Service port: `port` → `targetPort` (number, or a named container port).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    pub name: Option<String>,
    pub port: u16,
    pub target_port: TargetPort,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TargetPort {
    Number(u16),
    Name(String),
}

/// A resource kind peerauth understands, already reduced to what it needs.
/// Deployments, StatefulSets, DaemonSets, ReplicaSets and Pods all become `Workload`
/// (pod template labels, annotations and container ports).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum Resource {
    PeerAuthentication {
        api_version: String,
        meta: ObjectMeta,
        spec: PeerAuthenticationSpec,
    },
    DestinationRule {
        api_version: String,
        meta: ObjectMeta,
        spec: DestinationRuleSpec,
    },
    Namespace {
        meta: ObjectMeta,
    },
    Workload {
        /// The Kubernetes kind it came from (`Deployment`, `Pod`, …).
        source_kind: String,
        meta: ObjectMeta,
        /// Pod (template) labels — what selectors match against.
        pod_labels: BTreeMap<String, String>,
        /// Pod (template) annotations (`sidecar.istio.io/inject`).
        pod_annotations: BTreeMap<String, String>,
        ports: Vec<ContainerPort>,
    },
    Service {
        meta: ObjectMeta,
        selector: BTreeMap<String, String>,
        ports: Vec<ServicePort>,
    },
    /// A Kubernetes Gateway API `Gateway` (`gateway.networking.k8s.io`):
    /// with class `istio-waypoint` it is an ambient waypoint.
    Gateway {
        meta: ObjectMeta,
        class: String,
    },
    /// A WasmPlugin, reduced to where it attaches (`selector` or
    /// `targetRefs`). Only the ambient checks read it; it is not validated.
    WasmPlugin {
        meta: ObjectMeta,
        selector: Option<BTreeMap<String, String>>,
        target_refs: Vec<TargetRef>,
        /// Some `match` entry lists `ports`.
        selects_ports: bool,
    },
}

/// A WasmPlugin `targetRefs` entry (istio/api `type/v1beta1/selector.proto` PolicyTargetReference).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TargetRef {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
    pub namespace: Option<String>,
}

/// A resource plus where it was read, plus the line of each interesting field
/// (JSON-pointer-like paths such as `/spec/mtls/mode`, `/spec/portLevelMtls/80`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Located<T> {
    pub value: T,
    pub location: Location,
    #[serde(default)]
    pub field_lines: BTreeMap<String, u32>,
}
