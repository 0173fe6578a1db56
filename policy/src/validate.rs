//! Istio's admission rules (webhook `ValidatePeerAuthentication` and CRD CEL rules)
//! plus schema-level checks of DestinationRules, per resource.

use crate::diagnostic::Diagnostic;
use crate::mesh::MeshConfig;
use crate::model::{Located, Resource};

/// Validate one resource; returns every finding (errors and warnings).
pub fn resource(resource: &Located<Resource>, config: &MeshConfig) -> Vec<Diagnostic> {
    let _ = (resource, config);
    todo!("policy implementation")
}
