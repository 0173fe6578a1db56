//! The mesh-wide settings (istiod's `MeshConfig`) that every rule reads: the
//! root namespace, auto mTLS and the cluster domain.

use serde::{Deserialize, Serialize};

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
