//! SPIFFE IDs (spiffe/spiffe `standards/SPIFFE-ID.md`) and Istio's
//! `ns/<namespace>/sa/<service-account>` identity form.

use serde::{Deserialize, Serialize};

/// A valid SPIFFE ID.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SpiffeId {
    trust_domain: String,
    /// Without the leading `/`; empty for a trust-domain ID.
    path: String,
}

/// Istio's identity inside a SPIFFE ID.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IstioIdentity {
    pub namespace: String,
    pub service_account: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpiffeError {
    // Variants per SPIFFE-ID.md rule, each message saying what to fix
    // (filled in by the implementation).
    #[error("SPIFFE ID is empty")]
    Empty,
}

impl SpiffeId {
    /// Parse and validate. `Err` names the broken rule.
    pub fn parse(s: &str) -> Result<Self, SpiffeError> {
        let _ = s;
        todo!("policy implementation")
    }
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }
    pub fn path(&self) -> &str {
        &self.path
    }
    /// `Some` when the path is exactly `ns/<ns>/sa/<sa>`.
    pub fn istio_identity(&self) -> Option<IstioIdentity> {
        todo!("policy implementation")
    }
}

/// An allow-list pattern such as `spiffe://cluster.local/ns/foo/sa/*` or
/// `spiffe://cluster.local/ns/*/sa/istio-ingressgateway-service-account`:
/// `*` matches exactly one path segment, a final `**` matches any rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpiffePattern {
    raw: String,
}

impl SpiffePattern {
    /// `Err` if the pattern is not a SPIFFE ID with `*`/`**` segments.
    pub fn parse(s: &str) -> Result<Self, SpiffeError> {
        let _ = s;
        todo!("policy implementation")
    }
    pub fn matches(&self, id: &SpiffeId) -> bool {
        let _ = id;
        todo!("policy implementation")
    }
}
