//! Findings about a set of resources: a stable code, a severity, a message that
//! says what to change, and where.

use serde::{Deserialize, Serialize};

/// How bad a finding is. `Error` = Istio would reject it or traffic breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Informational.
    Info,
    /// Accepted by Istio but probably not what the author meant.
    Warning,
    /// Rejected by Istio's webhook/CRD, or certain to break traffic.
    Error,
}

/// Where a resource or field came from: the source name given to the loader
/// (usually a file path), the 1-based line, and the 0-based document index.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Location {
    pub source: String,
    pub line: u32,
    pub document: u32,
}

/// Which resource a finding concerns.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ResourceRef {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

/// One finding. `code` is stable kebab-case (e.g. `pa-port-level-without-selector`);
/// `istio_code` carries the matching Istio/Kiali code (`IST0115`, `KIA0002`) when one exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    pub code: String,
    pub severity: Severity,
    pub message: String,
    /// What to change, one sentence.
    pub hint: Option<String>,
    pub istio_code: Option<String>,
    pub resource: Option<ResourceRef>,
    pub location: Option<Location>,
}
