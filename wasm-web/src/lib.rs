//! `peerauth-web`: the browser face of [`policy`].
//!
//! The page hands over the text the engineer pasted and gets back one JSON
//! document: every diagnostic, the effective mode of every workload and port
//! (the offline `istioctl x describe`), and the client × service reachability
//! matrix. All of it is computed by [`evaluate`], a pure function tested natively;
//! the wasm-bindgen layer (`wasm` module, only built for `wasm32`) just moves
//! strings across the boundary and reports panics to the page.
//!
//! # The JSON contract (version [`CONTRACT`])
//!
//! Input options (`evaluate(text, options)` in JavaScript), every field optional:
//! `{"source": "input", "rootNamespace": "istio-system", "autoMtls": true,
//! "clusterDomain": "cluster.local", "matrix": true}`. An empty string means all
//! defaults. Unknown fields or wrong types become a `web-invalid-options` error
//! diagnostic and the defaults are used, so the page still shows something.
//!
//! Output: `{version, contract, options, summary, diagnostics, workloads, matrix,
//! skipped}` where `diagnostics` are [`policy::Diagnostic`]s, `workloads` are
//! [`policy::resolve::WorkloadReport`]s plus `labels` and `location`, `matrix` is a
//! [`policy::reach::Matrix`] (or `null` when `"matrix": false`) and `skipped`
//! lists documents of kinds peerauth does not model.
#![forbid(unsafe_code)]

use policy::diagnostic::{Diagnostic, Location, Severity};
use policy::reach::Matrix;
use policy::resolve::WorkloadReport;
use policy::source::Skipped;
use policy::MeshConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[cfg(target_arch = "wasm32")]
mod wasm;

/// Version of the JSON document [`evaluate_json`] returns; bumped on any
/// incompatible change so a cached page and a new module can tell.
pub const CONTRACT: u32 = 1;

/// The crate version, shown in the page footer.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What the page may ask for. Field names follow Istio's `MeshConfig` spelling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct Options {
    /// Name used in diagnostic locations.
    pub source: String,
    pub root_namespace: String,
    pub auto_mtls: bool,
    pub cluster_domain: String,
    /// Whether to compute the reachability matrix (the costly part on big inputs).
    pub matrix: bool,
}

impl Default for Options {
    fn default() -> Self {
        let mesh = MeshConfig::default();
        Self {
            source: "input".into(),
            root_namespace: mesh.root_namespace,
            auto_mtls: mesh.auto_mtls,
            cluster_domain: mesh.cluster_domain,
            matrix: true,
        }
    }
}

impl Options {
    fn mesh_config(&self) -> MeshConfig {
        MeshConfig {
            root_namespace: self.root_namespace.clone(),
            auto_mtls: self.auto_mtls,
            cluster_domain: self.cluster_domain.clone(),
        }
    }
}

/// Problems of the browser layer itself (the input's problems are diagnostics).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WebError {
    /// The options string is not a JSON object of the known fields.
    #[error(
        "options are not valid ({0}); pass a JSON object with any of source, rootNamespace, autoMtls, clusterDomain, matrix"
    )]
    Options(String),
}

impl WebError {
    /// Stable kebab-case code, like [`policy`]'s.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Options(_) => "web-invalid-options",
        }
    }

    fn to_diagnostic(&self) -> Diagnostic {
        Diagnostic {
            code: self.code().into(),
            severity: Severity::Error,
            message: self.to_string(),
            hint: Some(
                "the page's settings were reset to Istio's defaults for this evaluation".into(),
            ),
            istio_code: None,
            resource: None,
            location: None,
        }
    }
}

/// Parse the page's options. An empty (or all-blank) string means the defaults.
///
/// `Err(WebError::Options)` when the text is not a JSON object of known fields
/// with the right types.
pub fn parse_options(options_json: &str) -> Result<Options, WebError> {
    if options_json.trim().is_empty() {
        return Ok(Options::default());
    }
    let value: serde_json::Value =
        serde_json::from_str(options_json).map_err(|e| WebError::Options(e.to_string()))?;
    // serde would also accept an array as a struct; only an object is meant.
    if !value.is_object() {
        return Err(WebError::Options("expected a JSON object".into()));
    }
    serde_json::from_value(value).map_err(|e| WebError::Options(e.to_string()))
}

/// One workload's effective modes, plus what the page needs to point at it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkloadEntry {
    #[serde(flatten)]
    pub report: WorkloadReport,
    pub labels: BTreeMap<String, String>,
    pub location: Location,
}

/// Counts for the page's headline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Summary {
    pub errors: usize,
    pub warnings: usize,
    pub infos: usize,
    pub peer_authentications: usize,
    pub destination_rules: usize,
    pub workloads: usize,
    pub services: usize,
}

/// Everything the page shows for one text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    pub version: &'static str,
    pub contract: u32,
    /// The options actually used (the defaults when the given ones were invalid).
    pub options: Options,
    pub summary: Summary,
    pub diagnostics: Vec<Diagnostic>,
    pub workloads: Vec<WorkloadEntry>,
    /// `None` when the options turned the matrix off.
    pub matrix: Option<Matrix>,
    pub skipped: Vec<Skipped>,
}

/// Check `text` (multi-document YAML or JSON) under `options`: load, validate,
/// analyse, describe every workload and, unless turned off, build the matrix.
/// Never fails; bad input shows up in `diagnostics`.
pub fn evaluate(text: &str, options: &Options) -> Evaluation {
    let report = policy::check(&[(options.source.as_str(), text)], options.mesh_config());
    let mesh = &report.mesh;
    let workloads = mesh
        .workloads
        .iter()
        .map(|w| WorkloadEntry {
            report: mesh.describe(w),
            labels: w.labels.clone(),
            location: w.location.clone(),
        })
        .collect();
    let matrix = options.matrix.then(|| mesh.matrix());
    let count = |s: Severity| {
        report
            .diagnostics
            .iter()
            .filter(|d| d.severity == s)
            .count()
    };
    let summary = Summary {
        errors: count(Severity::Error),
        warnings: count(Severity::Warning),
        infos: count(Severity::Info),
        peer_authentications: mesh.peer_authentications.len(),
        destination_rules: mesh.destination_rules.len(),
        workloads: mesh.workloads.len(),
        services: mesh.services.len(),
    };
    Evaluation {
        version: VERSION,
        contract: CONTRACT,
        options: options.clone(),
        summary,
        diagnostics: report.diagnostics,
        workloads,
        matrix,
        skipped: report.skipped,
    }
}

/// The whole round trip the page makes: options as JSON in, [`Evaluation`] as
/// JSON out. Invalid options are reported as a diagnostic (first in the list)
/// and the defaults are used instead.
pub fn evaluate_json(text: &str, options_json: &str) -> String {
    let (options, option_error) = match parse_options(options_json) {
        Ok(o) => (o, None),
        Err(e) => (Options::default(), Some(e.to_diagnostic())),
    };
    let mut evaluation = evaluate(text, &options);
    if let Some(d) = option_error {
        evaluation.diagnostics.insert(0, d);
        evaluation.summary.errors += 1;
    }
    match serde_json::to_string(&evaluation) {
        Ok(json) => json,
        // Only reachable if a policy type stops being serialisable as JSON; the page
        // still gets a document it can render instead of an exception.
        Err(e) => serde_json::json!({
            "version": VERSION,
            "contract": CONTRACT,
            "summary": {"errors": 1, "warnings": 0, "infos": 0},
            "diagnostics": [{
                "code": "web-internal",
                "severity": "error",
                "message": format!("could not encode the result as JSON: {e}; please report this"),
            }],
            "workloads": [],
            "matrix": null,
            "skipped": [],
        })
        .to_string(),
    }
}
