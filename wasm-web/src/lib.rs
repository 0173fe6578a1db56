//! `peerauth-web`: the browser face of [`policy`].
//!
//! The page hands over the text the engineer pasted and gets back one JSON
//! document: every diagnostic, the effective mode of every workload and port
//! (the offline `istioctl x describe`), and the client × service reachability
//! matrix. All of it is computed by [`evaluate`], a pure function tested natively;
//! the wasm-bindgen layer (`wasm` module, only built for `wasm32`) just moves
//! strings across the boundary through one [`Evaluator`] (which keeps the last
//! evaluation, so the page's "Show more" is not a second one) and reports
//! panics to the page.
//!
//! # The JSON contract (version [`CONTRACT`])
//!
//! Input options (`evaluate(text, options)` in JavaScript), every field optional:
//! `{"source": "input", "rootNamespace": "istio-system", "autoMtls": true,
//! "clusterDomain": "cluster.local", "matrix": true, "explanations": false,
//! "limits": {"workloads": null, "groups": null}}`. An empty string means all
//! defaults. [`Limits`] sends only the first rows of `workloads` and of the
//! matrix's `groups` (`null`: all; the page asks for 500 and 1,000); the
//! counts of the whole stay in `summary` and `matrix.totals`. Unknown fields
//! or wrong types become a `web-invalid-options` error diagnostic and the
//! defaults are used, so the page still shows something.
//!
//! Output: `{version, contract, options, summary, diagnostics, workloads, matrix,
//! skipped}` where `diagnostics` are [`policy::Diagnostic`]s, `workloads` are
//! [`WorkloadEntry`]s, `matrix` is a [`MatrixView`] (or `null` when
//! `"matrix": false`) and `skipped` lists documents of kinds peerauth does not
//! model.
//!
//! A workload entry is [`policy::resolve::WorkloadReport`] (`namespace`, `name`,
//! `sidecar`, `workload`: a resolution, `ports`: container port → resolution) plus
//! `labels` and `location`. A port's resolution has no `ignored` list: it is
//! always the workload's (less the `port-not-a-container-port` entries).
//! A workload captured by ztunnel (ambient mode) also has `ambient`
//! ([`policy::resolve::AmbientReport`]: `workload` and `ports` as ztunnel
//! enforces them, STRICT or PERMISSIVE, `ztunnel_policies`, `use_waypoint`,
//! `notes`), and an ambient server in the matrix has `ambient: true` and its
//! `waypoint`; none of these appear for sidecar-only inputs.
//!
//! The matrix names each client and each Service port once, both sorted by
//! namespace, name (and port): `clients: [{namespace, name, sidecar}]` (plus
//! `ambient: true` when captured by ztunnel), `services:
//! [{namespace, name, port, target_port, server: {namespace, name, sidecar},
//! server_mode}]` — the server is the endpoint that decides, and its mode is the
//! same for every client. `cells` are arrays, in order of client then Service
//! port: `[client, service, client_tls, client_reason, outcome, mtls]`, the first
//! two indexing `clients` and `services`; with `"explanations": true` a seventh
//! element is [`policy::reach::Cell::explanation`]'s sentence (the page writes the
//! same sentence from the other fields). Cells the page cannot word from the
//! column's server carry it always: another endpoint of the Service answers
//! differently, the app serves TLS itself, or a sidecar calls an ambient pod.
//!
//! `groups` counts the cells per (client namespace, Service namespace) pair:
//! `[client_namespace, service_namespace, mtls, plaintext, reset, fail]`
//! (succeeds over mTLS, succeeds in plaintext, reset, fails), computed per kind
//! of client rather than per cell; the pairs with a reset or failing cell come
//! first, then the others, each part in namespace order. Above
//! [`MAX_MATRIX_CELLS`] cells `clients`, `services` and `cells` are empty and
//! `omitted` is true (groups are still given), so a pasted cluster stays within
//! the tab's memory. `totals` (a [`MatrixTotals`]) counts clients, services,
//! cells, groups and broken groups, also when `omitted` or `limits` left them out.
//!
//! Contract 1 repeated names, the server's mode and a sentence in every cell
//! object and every port's ignore list: 4.9 MiB for 1,000 policies × 100
//! workloads, against 1.3 MiB since contract 2. Contract 3 (issue 18) added
//! `limits`, `totals` and the clients' `sidecar`, ordered `groups` broken pairs
//! first and dropped an omitted matrix's axes: a pasted 5,000-workload cluster
//! gave the page 13 MB of JSON, mostly 250,000 namespace pairs and 10,000
//! Service ports it never drew, and now gives it 1.7 MB.
//!
//! # Example
//!
//! Natively, as the page's worker calls it (through [`Evaluator`]):
//!
//! ```
//! let text = "\
//! apiVersion: security.istio.io/v1
//! kind: PeerAuthentication
//! metadata: {name: default, namespace: istio-system}
//! spec: {mtls: {mode: STRICT}}
//! ";
//! let json = peerauth_web::evaluate_json(text, "");
//! let doc: serde_json::Value = serde_json::from_str(&json).expect("one JSON document");
//! assert_eq!(doc["contract"], peerauth_web::CONTRACT);
//! assert_eq!(doc["summary"]["peer_authentications"], 1);
//! assert_eq!(doc["summary"]["errors"], 0);
//! ```
#![forbid(unsafe_code)]

use policy::diagnostic::{Diagnostic, Location, Severity};
use policy::mesh::Workload;
use policy::reach::{ClientTls, Outcome, Reach, Select};
use policy::resolve::{Level, Resolution, Step};
use policy::source::Skipped;
use policy::{MeshConfig, MtlsMode};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Serialize, Serializer};
use std::collections::BTreeMap;
use std::sync::Arc;

#[cfg(target_arch = "wasm32")]
mod wasm;

/// Version of the JSON document [`evaluate_json`] returns; bumped on any
/// incompatible change so a cached page and a new module can tell.
pub const CONTRACT: u32 = 3;

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
    /// Whether each matrix cell carries policy's one-sentence explanation.
    pub explanations: bool,
    /// How much of the long lists to send (everything when absent).
    pub limits: Limits,
}

/// The first rows of the long lists the page draws; `None` sends them all.
///
/// A pasted cluster has thousands of workloads and hundreds of thousands of
/// namespace pairs, but the page draws a few hundred of each until asked for
/// more: sending the rest cost it more than evaluating them (13 MB of JSON for
/// 5,000 workloads).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct Limits {
    /// The first this many of `workloads`.
    pub workloads: Option<usize>,
    /// The first this many of the matrix's `groups`.
    pub groups: Option<usize>,
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
            explanations: false,
            limits: Limits::default(),
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
        "options are not valid ({0}); pass a JSON object with any of source, rootNamespace, autoMtls, clusterDomain, matrix, explanations, limits"
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
    pub namespace: String,
    pub name: String,
    pub sidecar: bool,
    /// Captured by ztunnel (ambient mode); absent for sidecar and out-of-mesh workloads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ambient: Option<policy::resolve::AmbientReport>,
    /// The workload-level resolution, with every policy istiod ignores for it.
    pub workload: Resolution,
    /// Container port → resolution (see [`PortResolution`]).
    pub ports: BTreeMap<u32, PortResolution>,
    pub labels: BTreeMap<String, String>,
    pub location: Location,
}

/// A port's [`Resolution`] without its `ignored` list, which is the workload's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortResolution {
    pub mode: MtlsMode,
    pub decided_at: Level,
    pub steps: Vec<Step>,
}

impl WorkloadEntry {
    fn new(reach: &Reach<'_>, w: &Workload) -> Self {
        let report = reach.describe(w);
        Self {
            namespace: report.namespace,
            name: report.name,
            sidecar: report.sidecar,
            ambient: report.ambient,
            workload: report.workload,
            ports: policy::order::map(report.ports.into_iter().map(|(port, r)| {
                let port_resolution = PortResolution {
                    mode: r.mode,
                    decided_at: r.decided_at,
                    steps: r.steps,
                };
                (port, port_resolution)
            })),
            labels: w.labels.clone(),
            location: w.location.clone(),
        }
    }
}

/// A client workload of the matrix (a row).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientView {
    pub namespace: String,
    pub name: String,
    /// The row's badge: the page may have only the first workloads' entries.
    pub sidecar: bool,
    /// Captured by ztunnel (only written when true).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ambient: bool,
}

/// The workload behind a Service port that decides the outcome (its first endpoint).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerView {
    pub namespace: String,
    pub name: String,
    pub sidecar: bool,
    /// Captured by ztunnel (only written when true).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ambient: bool,
    /// For an ambient server: the waypoint of the Service (else of the pod).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waypoint: Option<String>,
}

/// A Service port of the matrix (a column) and the mode its endpoint enforces there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServicePortView {
    pub namespace: String,
    pub name: String,
    pub port: u16,
    /// The container port the Service forwards `port` to.
    pub target_port: u32,
    pub server: ServerView,
    /// The server's effective mode on `target_port` (DISABLE without a sidecar).
    pub server_mode: MtlsMode,
}

/// One client → Service port, written as the array `[client, service,
/// client_tls, client_reason, outcome, mtls]` (plus the explanation when asked
/// for); `client` and `service` index [`MatrixView::clients`] and
/// [`MatrixView::services`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellView {
    pub client: usize,
    pub service: usize,
    pub client_tls: ClientTls,
    pub client_reason: policy::reach::ClientReason,
    pub outcome: Outcome,
    /// Encrypted with Istio mTLS end to end.
    pub mtls: bool,
    pub explanation: Option<String>,
}

impl Serialize for CellView {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq =
            serializer.serialize_seq(Some(6 + usize::from(self.explanation.is_some())))?;
        seq.serialize_element(&self.client)?;
        seq.serialize_element(&self.service)?;
        seq.serialize_element(&self.client_tls)?;
        seq.serialize_element(&self.client_reason)?;
        seq.serialize_element(&self.outcome)?;
        seq.serialize_element(&self.mtls)?;
        if let Some(explanation) = &self.explanation {
            seq.serialize_element(explanation)?;
        }
        seq.end()
    }
}

/// Above this many cells the matrix's `cells` are left out (`omitted`) and the
/// page shows `groups` instead: a pasted 5,000-workload cluster has 50 million
/// cells, more than a tab can hold, and the page draws 3,000 at a time anyway.
pub const MAX_MATRIX_CELLS: usize = 200_000;

/// The cells from one client namespace to one Service namespace, counted:
/// written as the array `[client_namespace, service_namespace, mtls,
/// plaintext, reset, fail]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupView {
    /// Shared by every pair of the namespace: a cluster of 500 namespaces has
    /// 250,000 pairs, and a string each cost the page 8 % of its evaluation.
    pub client_namespace: Arc<str>,
    pub service_namespace: Arc<str>,
    pub counts: policy::reach::Counts,
}

impl GroupView {
    /// Some of its cells are reset or fail: the pairs the page lists first.
    pub fn broken(&self) -> bool {
        self.counts.reset + self.counts.failed > 0
    }
}

impl Serialize for GroupView {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let c = &self.counts;
        let mut seq = serializer.serialize_seq(Some(6))?;
        seq.serialize_element(&*self.client_namespace)?;
        seq.serialize_element(&*self.service_namespace)?;
        for n in [c.mtls, c.plaintext, c.reset, c.failed] {
            seq.serialize_element(&n)?;
        }
        seq.end()
    }
}

/// [`policy::reach::Matrix`] with each client and Service port named once.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct MatrixView {
    /// Empty when `omitted` (`totals.clients` counts them).
    pub clients: Vec<ClientView>,
    /// Empty when `omitted` (`totals.services` counts them).
    pub services: Vec<ServicePortView>,
    /// In the matrix's order: by client, then Service port. Empty when `omitted`.
    pub cells: Vec<CellView>,
    /// Whether the axes and cells were left out (more than [`MAX_MATRIX_CELLS`]).
    pub omitted: bool,
    /// The cells counted per (client namespace, Service namespace) pair: the
    /// pairs with a reset or failing cell first, then the others, each part in
    /// namespace order; pairs without cells are left out.
    pub groups: Vec<GroupView>,
    /// The sizes, also of what `omitted` or [`Limits`] left out.
    pub totals: MatrixTotals,
}

/// How big the whole matrix is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct MatrixTotals {
    pub clients: usize,
    pub services: usize,
    /// `clients × services` (a `u64`: a cluster can pass 2³² cells).
    pub cells: u64,
    pub groups: usize,
    /// The groups with a reset or failing cell (the first ones of `groups`).
    pub broken_groups: usize,
}

impl MatrixView {
    /// The matrix of `reach`'s mesh; `explanations` adds each cell's sentence.
    pub fn new<'m>(reach: &Reach<'m>, explanations: bool) -> Self {
        let all = Select::all();
        let mut groups = Vec::new();
        reach.summary(&all, &mut |p| groups.push(p));
        // Every client has a cell per column, so the groups add up to the matrix.
        let cells: u64 = groups.iter().map(|p| p.counts.total()).sum();
        let mut view = MatrixView {
            omitted: cells > MAX_MATRIX_CELLS as u64,
            ..MatrixView::default()
        };
        view.totals.cells = cells;
        // Each namespace's name is copied once. The pairs come client namespace
        // by client namespace, each with the same run of Service namespaces, so
        // `run` (that run, as met so far) almost always has the name at hand;
        // a map lookup per pair cost more than the copies it saved.
        let mut names: BTreeMap<&'m str, Arc<str>> = BTreeMap::new();
        let mut name = |ns: &'m str| -> Arc<str> {
            Arc::clone(names.entry(ns).or_insert_with(|| Arc::from(ns)))
        };
        let mut client: Option<(&'m str, Arc<str>)> = None;
        let mut run: Vec<(&'m str, Arc<str>)> = Vec::new();
        let mut at = 0;
        let named: Vec<GroupView> = groups
            .into_iter()
            .map(|p| {
                let client_namespace = match &client {
                    Some((n, arc)) if *n == p.client_namespace => Arc::clone(arc),
                    _ => {
                        let arc = name(p.client_namespace);
                        client = Some((p.client_namespace, Arc::clone(&arc)));
                        at = 0;
                        arc
                    }
                };
                let service_namespace = match run.get(at) {
                    Some((n, arc)) if *n == p.service_namespace => Arc::clone(arc),
                    _ => {
                        let arc = name(p.service_namespace);
                        run.truncate(at);
                        run.push((p.service_namespace, Arc::clone(&arc)));
                        arc
                    }
                };
                at += 1;
                GroupView {
                    client_namespace,
                    service_namespace,
                    counts: p.counts,
                }
            })
            .collect();
        // Broken pairs first; a stable partition keeps namespace order in each part.
        let (broken, fine): (Vec<_>, Vec<_>) = named.into_iter().partition(GroupView::broken);
        view.totals.groups = broken.len() + fine.len();
        view.totals.broken_groups = broken.len();
        view.groups = broken;
        view.groups.extend(fine);
        if view.omitted {
            // The axes are not sent, only their sizes: every workload is a client
            // (`Select::all`), and the cells are clients × columns.
            view.totals.clients = reach.mesh().workloads.len();
            view.totals.services =
                usize::try_from(cells / view.totals.clients.max(1) as u64).unwrap_or(usize::MAX);
            return view;
        }
        let (clients, columns) = reach.axes(&all);
        view.totals.clients = clients.len();
        view.totals.services = columns.len();
        view.clients = clients
            .iter()
            .map(|w| ClientView {
                namespace: w.namespace.clone(),
                name: w.name.clone(),
                sidecar: w.sidecar,
                ambient: w.ambient,
            })
            .collect();
        // The first client's row names every column with its server.
        let first = clients.first().copied();
        let only_first = |w: &Workload| first.is_some_and(|f| std::ptr::eq(f, w));
        let row = Select {
            client: &only_first,
            service: all.service,
            cell: all.cell,
        };
        reach.calls_where(&row, &mut |call| {
            view.services.push(ServicePortView {
                namespace: call.service.namespace.clone(),
                name: call.service.name.clone(),
                port: call.service_port,
                target_port: call.target_port,
                server: ServerView {
                    namespace: call.server.namespace.clone(),
                    name: call.server.name.clone(),
                    sidecar: call.server.sidecar,
                    ambient: call.server.ambient,
                    waypoint: call
                        .server
                        .ambient
                        .then(|| {
                            call.service
                                .use_waypoint
                                .clone()
                                .or_else(|| call.server.use_waypoint.clone())
                        })
                        .flatten(),
                },
                server_mode: call.server_mode,
            });
        });
        let width = view.services.len();
        view.cells.reserve(clients.len() * width);
        // Calls come row by row, one per column.
        let mut at = 0usize;
        reach.calls(|call| {
            view.cells.push(CellView {
                client: at / width.max(1),
                service: at % width.max(1),
                client_tls: call.client_tls,
                client_reason: call.client_reason(),
                outcome: call.outcome,
                mtls: call.mtls,
                // The page words a cell itself from the column's server (app.js
                // `explain`); where that cannot be right — another endpoint answers
                // differently, the app serves TLS itself, or a sidecar reaches an
                // ambient pod, where a DestinationRule's TLS rides inside HBONE —
                // policy's sentence comes along.
                explanation: (explanations
                    || call.other.is_some()
                    || call.app_tls
                    || (call.client.sidecar && call.server.ambient))
                    .then(|| call.explain()),
            });
            at += 1;
        });
        view
    }
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
    pub matrix: Option<MatrixView>,
    pub skipped: Vec<Skipped>,
}

/// Check `text` (multi-document YAML or JSON) under `options`: load, validate,
/// analyse, describe every workload and, unless turned off, build the matrix.
/// Never fails; bad input shows up in `diagnostics`. `options.limits` does not
/// apply here: it cuts only the JSON ([`Evaluator::evaluate_json`]).
pub fn evaluate(text: &str, options: &Options) -> Evaluation {
    let report = policy::check(&[(options.source.as_str(), text)], options.mesh_config());
    let mesh = &report.mesh;
    // One index of the policies and rules for every question below.
    let reach = mesh.reach();
    let workloads = mesh
        .workloads
        .iter()
        .map(|w| WorkloadEntry::new(&reach, w))
        .collect();
    let matrix = options
        .matrix
        .then(|| MatrixView::new(&reach, options.explanations));
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

/// The JSON the page gets: an [`Evaluation`] less the rows `limits` leaves out.
#[derive(Serialize)]
struct Shown<'a> {
    version: &'static str,
    contract: u32,
    options: &'a Options,
    summary: &'a Summary,
    diagnostics: &'a [Diagnostic],
    workloads: &'a [WorkloadEntry],
    matrix: Option<MatrixShown<'a>>,
    skipped: &'a [Skipped],
}

#[derive(Serialize)]
struct MatrixShown<'a> {
    clients: &'a [ClientView],
    services: &'a [ServicePortView],
    cells: &'a [CellView],
    omitted: bool,
    groups: &'a [GroupView],
    totals: &'a MatrixTotals,
}

fn first<T>(rows: &[T], limit: Option<usize>) -> &[T] {
    rows.get(..limit.unwrap_or(rows.len()).min(rows.len()))
        .unwrap_or(rows)
}

impl Evaluation {
    /// This evaluation as JSON, as `options` asks for it: only the first rows
    /// of `options.limits`, and `options` written as given.
    fn to_json(&self, options: &Options) -> String {
        let limits = options.limits;
        let shown = Shown {
            version: self.version,
            contract: self.contract,
            options,
            summary: &self.summary,
            diagnostics: &self.diagnostics,
            workloads: first(&self.workloads, limits.workloads),
            matrix: self.matrix.as_ref().map(|m| MatrixShown {
                clients: &m.clients,
                services: &m.services,
                cells: &m.cells,
                omitted: m.omitted,
                groups: first(&m.groups, limits.groups),
                totals: &m.totals,
            }),
            skipped: &self.skipped,
        };
        match serde_json::to_string(&shown) {
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
}

/// The whole round trip the page makes: options as JSON in, [`Evaluation`] as
/// JSON out. Invalid options are reported as a diagnostic (first in the list)
/// and the defaults are used instead.
pub fn evaluate_json(text: &str, options_json: &str) -> String {
    Evaluator::default().evaluate_json(text, options_json)
}

/// [`evaluate_json`] that keeps its last evaluation, so asking again for the
/// same text and options with other [`Limits`] (the page's "Show more") only
/// writes JSON: on a pasted cluster evaluating takes half a second, writing a
/// page of rows milliseconds. The answer is always what [`evaluate_json`] gives.
#[derive(Debug, Default)]
pub struct Evaluator {
    last: Option<Last>,
}

#[derive(Debug)]
struct Last {
    text: String,
    /// The options it was evaluated with, limits cleared (they change only the JSON).
    options: Options,
    evaluation: Evaluation,
}

impl Evaluator {
    /// See [`evaluate_json`].
    pub fn evaluate_json(&mut self, text: &str, options_json: &str) -> String {
        let options = match parse_options(options_json) {
            Ok(o) => o,
            Err(e) => {
                // Not kept: the page sends options it built itself, so this is rare.
                let options = Options::default();
                let mut evaluation = evaluate(text, &options);
                evaluation.diagnostics.insert(0, e.to_diagnostic());
                evaluation.summary.errors += 1;
                return evaluation.to_json(&options);
            }
        };
        let key = Options {
            limits: Limits::default(),
            ..options.clone()
        };
        let kept = self
            .last
            .as_ref()
            .is_some_and(|last| last.options == key && last.text == text);
        if !kept {
            // Drop the old evaluation before building the new one: both at once
            // would double the worker's memory on a large paste.
            self.last = None;
            let evaluation = evaluate(text, &key);
            self.last = Some(Last {
                text: text.to_string(),
                options: key,
                evaluation,
            });
        }
        match &self.last {
            Some(last) => last.evaluation.to_json(&options),
            None => evaluate(text, &options).to_json(&options),
        }
    }
}
