//! Domain types: resources after validation, and the `Mesh` they form.

use crate::diagnostic::{Diagnostic, Location};
use crate::model::{ContainerPort, Located, PeerAuthenticationSpec, Resource, ServicePort};
use crate::mode::{MtlsMode, TlsMode};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Mesh-wide settings istiod takes from `MeshConfig`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshConfig {
    /// `meshConfig.rootNamespace`, default `istio-system`.
    pub root_namespace: String,
    /// `meshConfig.enableAutoMtls`, default true.
    pub auto_mtls: bool,
    /// Cluster DNS suffix, default `cluster.local`.
    pub cluster_domain: String,
}

impl Default for MeshConfig {
    fn default() -> Self {
        Self {
            root_namespace: "istio-system".into(),
            auto_mtls: true,
            cluster_domain: "cluster.local".into(),
        }
    }
}

/// A valid PeerAuthentication (modes parsed, ports numeric).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerAuthentication {
    pub name: String,
    pub namespace: String,
    pub creation_timestamp: Option<String>,
    /// `None` = no selector; `Some(empty)` = `selector: {}` (istiod: namespace-wide).
    pub selector: Option<BTreeMap<String, String>>,
    /// `Unset` when `mtls` or its mode is missing.
    pub mode: MtlsMode,
    pub port_level: BTreeMap<u32, MtlsMode>,
    pub location: Location,
}

impl PeerAuthentication {
    /// Build from a wire spec (used by the filter's pluginConfig). `Err` carries
    /// every validation diagnostic with severity error.
    pub fn from_spec(
        name: &str,
        namespace: &str,
        creation_timestamp: Option<&str>,
        spec: &PeerAuthenticationSpec,
    ) -> Result<Self, Vec<Diagnostic>> {
        let _ = (name, namespace, creation_timestamp, spec);
        todo!("policy implementation")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestinationRule {
    pub name: String,
    pub namespace: String,
    pub host: String,
    pub tls: Option<TlsMode>,
    /// Keyed by **Service** port.
    pub port_tls: BTreeMap<u32, TlsMode>,
    pub export_to: Vec<String>,
    pub location: Location,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workload {
    pub name: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub sidecar: bool,
    pub ports: Vec<ContainerPort>,
    pub location: Location,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub name: String,
    pub namespace: String,
    pub selector: BTreeMap<String, String>,
    pub ports: Vec<ServicePort>,
    pub location: Location,
}

/// Everything the rules look at.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Mesh {
    pub config: MeshConfig,
    pub peer_authentications: Vec<PeerAuthentication>,
    pub destination_rules: Vec<DestinationRule>,
    pub workloads: Vec<Workload>,
    pub services: Vec<Service>,
    /// Namespace name → whether sidecar injection is on (`istio-injection=enabled`
    /// or an `istio.io/rev` label).
    pub namespaces: BTreeMap<String, bool>,
}

impl Mesh {
    /// Build a mesh from loaded resources; invalid resources are left out and
    /// reported (validation errors and warnings are all returned).
    pub fn build(resources: &[Located<Resource>], config: MeshConfig) -> (Mesh, Vec<Diagnostic>) {
        let _ = (resources, config);
        todo!("policy implementation")
    }
}
