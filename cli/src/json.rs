//! The `--json` documents. These types are the contract: keys are snake_case,
//! enum values kebab-case (Istio modes keep Istio's spelling, e.g. `"STRICT"`),
//! and every document starts with `"version": "peerauth/v1"`. Adding a key is
//! compatible; renaming or removing one needs a new version.

use policy::{MtlsMode, Severity, TlsMode};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The value of every document's `version` key.
pub const VERSION: &str = "peerauth/v1";

/// What was read.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Inputs {
    /// Every source read (file paths as given or found, `<stdin>`).
    pub files: Vec<String>,
    /// Files inside folders that were not read (other extensions).
    pub skipped_files: Vec<String>,
    /// Documents of kinds peerauth does not model (ServiceAccount, ConfigMap, …).
    pub skipped_documents: Vec<SkippedDocument>,
    /// Resources used: PeerAuthentications, DestinationRules, Namespaces, workloads, Services.
    pub resources: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedDocument {
    pub kind: String,
    pub file: String,
    pub line: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Summary {
    pub errors: usize,
    pub warnings: usize,
    pub infos: usize,
    /// Diagnostics that make the exit code 2 (see [`crate::is_input_error`]).
    pub input_errors: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    /// Stable kebab-case code, e.g. `input-invalid-yaml`.
    pub code: String,
    pub severity: Severity,
    /// True when this diagnostic alone makes the exit code 2.
    pub input_error: bool,
    pub message: String,
    pub hint: Option<String>,
    /// The matching `istioctl analyze` / Kiali code, e.g. `KIA0002`.
    pub istio_code: Option<String>,
    pub resource: Option<ResourceRef>,
    pub file: Option<String>,
    /// 1-based; `None` when the finding concerns a whole file or no file.
    pub line: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceRef {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

/// `peerauth check --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckDocument {
    pub version: String,
    /// Always `"check"`.
    pub command: String,
    pub exit_code: u8,
    pub strict: bool,
    pub inputs: Inputs,
    pub summary: Summary,
    pub diagnostics: Vec<Diagnostic>,
}

/// `peerauth describe --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DescribeDocument {
    pub version: String,
    /// Always `"describe"`.
    pub command: String,
    pub exit_code: u8,
    pub inputs: Inputs,
    pub summary: Summary,
    /// Every diagnostic of the files read (as `check` would print them).
    pub diagnostics: Vec<Diagnostic>,
    /// The matched workloads, sorted by namespace and name.
    pub workloads: Vec<WorkloadDescription>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadDescription {
    pub namespace: String,
    pub name: String,
    pub file: String,
    pub line: u32,
    pub labels: BTreeMap<String, String>,
    /// Whether an Envoy sidecar is injected. Without one, PeerAuthentication does
    /// not apply and the workload only speaks plaintext.
    pub sidecar: bool,
    /// The workload-level answer (no port).
    pub workload: Resolution,
    /// One entry per port the workload serves (container ports and the target
    /// ports of Services selecting it, plus `portLevelMtls` keys), ascending.
    pub ports: Vec<PortResolution>,
    /// Every policy that decided a mode for this workload or one of its ports.
    pub applied: Vec<PolicyRef>,
    /// Every policy a reader might think applies but istiod does not use, with why.
    pub ignored: Vec<Ignored>,
    /// Only for a workload captured by ztunnel (ambient): the modes ztunnel
    /// enforces (STRICT or PERMISSIVE) and the policies istiod gives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ambient: Option<policy::resolve::AmbientReport>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortResolution {
    pub port: u32,
    pub resolution: Resolution,
    /// A `portLevelMtls` key no container port or Service target port
    /// declares: istiod still builds a passthrough filter chain for it, so the
    /// mode applies to traffic sent to the pod's IP on that port. Left out
    /// when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub undeclared: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    /// Never `UNSET`.
    pub mode: MtlsMode,
    pub decided_at: Level,
    /// The policy at `decided_at`, `None` for Istio's PERMISSIVE default.
    pub decided_by: Option<PolicyRef>,
    /// mesh → namespace → workload → port, as policy resolved them.
    pub steps: Vec<Step>,
    pub ignored: Vec<Ignored>,
}

/// `default`, `mesh`, `namespace`, `workload`, `port`: policy's own type,
/// whose serialized form is this contract's.
pub use policy::resolve::Level;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PolicyRef {
    pub namespace: String,
    pub name: String,
    pub file: String,
    pub line: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub level: Level,
    pub policy: Option<PolicyRef>,
    /// As written (may be `UNSET`).
    pub declared: MtlsMode,
    /// After inheritance.
    pub effective: MtlsMode,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ignored {
    pub policy: PolicyRef,
    pub reason: IgnoreReason,
    /// For `newer-than-winner`: the older policy that is used instead.
    pub winner: Option<PolicyRef>,
    /// For `port-not-a-container-port`: the port key that matches nothing.
    pub port: Option<u32>,
    /// Human sentence, e.g. "newer namespace-wide policy, ignored".
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IgnoreReason {
    NewerThanWinner,
    SelectorInRootNamespace,
    PortLevelOnNonWorkloadPolicy,
    PortNotAContainerPort,
}

/// `peerauth matrix --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatrixDocument {
    pub version: String,
    /// Always `"matrix"`.
    pub command: String,
    pub exit_code: u8,
    pub inputs: Inputs,
    pub summary: Summary,
    pub diagnostics: Vec<Diagnostic>,
    /// Client workloads (rows), `namespace/name`, sorted.
    pub clients: Vec<String>,
    /// Service ports (columns), `namespace/name:port`, sorted.
    pub services: Vec<String>,
    /// Every workload of the input with its data plane, sorted by namespace
    /// and name (clients and servers alike; filters do not apply).
    pub data_planes: Vec<WorkloadDataPlane>,
    /// One per client × service port, in row then column order.
    pub cells: Vec<MatrixCell>,
}

/// A workload's data plane, as the matrix computed its calls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadDataPlane {
    pub namespace: String,
    pub name: String,
    /// `sidecar` (an injected Envoy), `ambient` (captured by ztunnel) or
    /// `none` (outside the mesh).
    pub data_plane: policy::ambient::DataPlane,
    /// The waypoint its traffic goes through (`istio.io/use-waypoint` of the
    /// pod, else of its namespace; `namespace/name` when the waypoint is in
    /// another namespace), `null` without one.
    pub waypoint: Option<String>,
}

/// One cell of `matrix --json` and `--json-lines`: the [`Cell`] keys, then
/// what carries the call and, for a Service whose endpoints answer
/// differently, one that does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatrixCell {
    #[serde(flatten)]
    pub cell: Cell,
    /// What carries the connection into the server's pod. `mtls` is true
    /// for a request that succeeds over `istio-mtls` (XFCC reaches the app)
    /// or over `hbone` (ztunnel knows the peer; no XFCC).
    pub transport: Transport,
    /// An endpoint of the Service that answers this client differently
    /// (absent when all answer alike). The cell itself is the worst answer:
    /// a failure, else success without mTLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub other_endpoint: Option<EndpointCell>,
}

impl std::ops::Deref for MatrixCell {
    type Target = Cell;

    fn deref(&self) -> &Cell {
        &self.cell
    }
}

/// What carries a call into the server's pod: `istio-mtls` (Istio mTLS into
/// its sidecar), `hbone` (HBONE into ztunnel or an HBONE-listening sidecar),
/// `tls` (non-Istio TLS straight to the pod), `plaintext`. An endpoint that
/// answers a cell's call differently is policy's [`EndpointCell`]
/// (`namespace`, `name`, `data_plane`, `target_port`, `server_mode`,
/// `client_tls`, `outcome`, `mtls`, `transport`). Both are policy's own
/// types, whose serialized forms are this contract's.
pub use policy::reach::{EndpointCell, Transport};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cell {
    pub client: WorkloadRef,
    pub service: ServicePortRef,
    pub client_tls: ClientTls,
    pub client_reason: ClientReason,
    /// The server's resolved mode on the target port.
    pub server_mode: MtlsMode,
    pub outcome: Outcome,
    /// The request succeeds over a mutually authenticated Istio connection:
    /// Istio mTLS into a sidecar (XFCC reaches the app) or HBONE into
    /// ztunnel (no XFCC); [`MatrixCell::transport`] says which.
    pub mtls: bool,
    pub explanation: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadRef {
    pub namespace: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServicePortRef {
    pub namespace: String,
    pub name: String,
    /// The Service port the client dials.
    pub port: u16,
    /// The container port behind it (what PeerAuthentication ports mean).
    pub target_port: u32,
}

/// `plaintext`, `istio-mutual`, `other-tls`: policy's own type, whose
/// serialized form is this contract's.
pub use policy::reach::ClientTls;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ClientReason {
    NoSidecar,
    DestinationRule {
        namespace: String,
        name: String,
        tls_mode: TlsMode,
    },
    AutoMtls,
    AutoMtlsOff,
    /// An ambient client: its ztunnel sends HBONE or passes the connection through.
    Ztunnel,
}

/// `allowed` (HTTP 200 in the seed lab), `reset` (plaintext to STRICT),
/// `failed` (TLS bytes reach a plaintext app): policy's own type, whose
/// serialized form is this contract's.
pub use policy::reach::Outcome;
