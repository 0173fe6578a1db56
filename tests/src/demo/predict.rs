//! What `policy` predicts for one call, in the same terms as the lab's observations.

use crate::demo::expected::{CallResult, ExpectedCall};
use crate::demo::LabError;
use policy::mesh::Mesh;
use policy::reach::{ClientTls, Outcome};
use policy::MtlsMode;

/// `policy`'s answer for one call.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Prediction {
    pub result: CallResult,
    pub client_tls: ClientTls,
    pub server_mode: MtlsMode,
    /// Its one-sentence explanation.
    pub explanation: String,
}

/// `mesh.connect` for `call`, as curl in the client pod would see it: a reset is
/// `000` with exit 56 for a client without a sidecar, and `503` from the client's own
/// sidecar otherwise (Envoy answers for an upstream it could not reach); a request
/// whose TLS reaches a plaintext app fails the same way.
///
/// `Err` when the client workload, the Service or its port is not in the mesh.
pub fn predict(mesh: &Mesh, call: &ExpectedCall) -> Result<Prediction, LabError> {
    let (client_name, client_ns) = call
        .client
        .split_once('.')
        .unwrap_or((call.client.as_str(), "default"));
    let client = mesh
        .workloads
        .iter()
        .find(|w| w.name == client_name && w.namespace == client_ns)
        .ok_or_else(|| LabError::Missing(format!("workload {}", call.client)))?;
    let (name, ns) = call.service_name();
    let service = mesh
        .services
        .iter()
        .find(|s| s.name == name && s.namespace == ns)
        .ok_or_else(|| LabError::Missing(format!("Service {}", call.service)))?;
    let cell = mesh.connect(client, service, call.port).ok_or_else(|| {
        LabError::Missing(format!("{}:{} with an endpoint", call.service, call.port))
    })?;
    let failed = if client.sidecar {
        CallResult {
            code: "503".into(),
            curl_exit: 0,
            mtls: false,
        }
    } else {
        CallResult::reset()
    };
    let result = match cell.outcome {
        Outcome::Allowed => CallResult::ok(cell.mtls),
        Outcome::Reset | Outcome::Failed => failed,
    };
    Ok(Prediction {
        result,
        client_tls: cell.client_tls,
        server_mode: cell.server_mode,
        explanation: cell.explanation,
    })
}
