//! `policy`: the pure core of peerauth — every Istio rule it knows, once.
//!
//! Everything here is a function over plain data — no I/O, no host calls — so the
//! same rules run in the CLI, in the proxy-wasm filter and in the browser.
//!
//! * [`source`] reads multi-document YAML / JSON into located [`model`] resources
//!   (which kinds become which resources is the private `kinds` module).
//! * [`mesh`] turns resources into a [`mesh::Mesh`] (policies, destination rules,
//!   workloads) under the mesh-wide [`config::MeshConfig`]; [`timestamp`] orders
//!   policies by age as istiod does; [`inject`] adds the labels Istio's sidecar
//!   injector puts on a pod, which selectors see.
//! * [`diagnostic`] + [`validate`] + [`analyze`] produce Istio's admission errors and
//!   the `istioctl analyze` / Kiali style mTLS findings; each rule declares there
//!   whether it is bad input or a finding ([`diagnostic::Class`]).
//! * [`resolve`] computes the effective inbound mode per workload and port, like istiod.
//! * [`reach`] computes the client side and the client × server matrix; [`ambient`]
//!   what ztunnel and waypoints do.
//! * [`xfcc`] and [`spiffe`] parse Envoy's `x-forwarded-client-cert` header and SPIFFE IDs.
//!
//! # Example
//!
//! ```
//! use policy::{check, MeshConfig, Severity};
//!
//! // portLevelMtls without a workload selector: Istio's webhook refuses it.
//! let yaml = "\
//! apiVersion: security.istio.io/v1
//! kind: PeerAuthentication
//! metadata: {name: default, namespace: foo}
//! spec:
//!   mtls: {mode: STRICT}
//!   portLevelMtls:
//!     8080: {mode: DISABLE}
//! ";
//! let report = check(&[("pa.yaml", yaml)], MeshConfig::default());
//! let d = &report.diagnostics[0];
//! assert_eq!(d.code, "pa-port-level-without-selector");
//! assert_eq!(d.severity, Severity::Error);
//! assert_eq!(d.location.as_ref().map(|l| l.line), Some(6));
//! // A finding about a resource the API server accepts, not bad input.
//! let rule = policy::diagnostic::Rule::find(&d.code).expect("a documented rule");
//! assert!(!rule.is_input());
//! ```
#![forbid(unsafe_code)]
// Library code never indexes: a panic in the filter or the page would be a
// failure the host cannot recover from. Tests may index (a panic is a failure).
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

pub mod ambient;
pub mod analyze;
pub mod config;
pub mod diagnostic;
pub mod documents;
pub mod inject;
mod kinds;
pub mod mesh;
pub mod mode;
pub mod model;
pub mod order;
pub mod ports;
pub mod reach;
pub mod resolve;
pub mod source;
pub mod spiffe;
pub mod timestamp;
pub mod validate;
pub mod xfcc;
mod yaml;

pub use config::MeshConfig;
pub use diagnostic::{Diagnostic, Severity};
pub use mesh::Mesh;
pub use mode::{MtlsMode, TlsMode};

/// The result of reading and checking a set of sources (files, pasted text).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Report {
    pub mesh: Mesh,
    /// Load errors (as diagnostics), validation and analysis, sorted by source and line.
    pub diagnostics: Vec<Diagnostic>,
    pub skipped: Vec<source::Skipped>,
}

/// Load every `(source name, text)`, build the mesh, validate and analyse.
/// Never fails: bad input becomes diagnostics (codes `input-*`).
pub fn check(sources: &[(&str, &str)], config: MeshConfig) -> Report {
    let mut resources = Vec::new();
    let mut diagnostics = Vec::new();
    let mut skipped = Vec::new();
    for (name, text) in sources {
        let loaded = source::load(text, name);
        diagnostics.extend(loaded.errors.iter().map(source::LoadError::to_diagnostic));
        resources.extend(loaded.resources);
        skipped.extend(loaded.skipped);
    }
    let (mesh, found) = Mesh::build(&resources, config);
    diagnostics.extend(found);
    // Analysis findings point at the field they concern when we know its line.
    let by_location: std::collections::HashMap<&diagnostic::Location, _> = resources
        .iter()
        .map(|r| (&r.location, &r.field_lines))
        .collect();
    let field_lines = |at: &diagnostic::Location| by_location.get(at).copied();
    diagnostics.extend(analyze::run_with_lines(&mesh, field_lines));
    order::sort_by(&mut diagnostics, |a, b| sort_key(a).cmp(&sort_key(b)));
    Report {
        mesh,
        diagnostics,
        skipped,
    }
}

fn sort_key(d: &Diagnostic) -> (&str, u32, &str, &str) {
    let (source, line) = d
        .location
        .as_ref()
        .map_or(("", 0), |l| (l.source.as_str(), l.line));
    (source, line, d.code.as_str(), d.message.as_str())
}
