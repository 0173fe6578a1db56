//! What `policy` predicts for one call, in the same terms as the lab's observations.

use crate::call::{CallResult, ServiceCall};
use crate::LabError;
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
pub fn predict(mesh: &Mesh, call: &ServiceCall) -> Result<Prediction, LabError> {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::load::mesh_of;
    use std::path::Path;

    const DR_DISABLE_FOO: &str = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: httpbin\n  namespace: foo\nspec:\n  host: httpbin.foo.svc.cluster.local\n  trafficPolicy:\n    tls:\n      mode: DISABLE\n";

    fn call(client: &str, service: &str) -> ServiceCall {
        ServiceCall {
            client: client.into(),
            service: service.into(),
            port: 8000,
        }
    }

    #[test]
    fn a_reset_is_000_exit_56_without_a_sidecar_and_503_from_the_callers_own_sidecar() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut sources: Vec<(String, String)> = [
            "manifests/workloads/foo.yaml",
            "manifests/workloads/bar.yaml",
            "manifests/workloads/legacy.yaml",
            "manifests/steps/2-mesh-strict/peer-authentication.yaml",
        ]
        .iter()
        .map(|f| {
            (
                f.to_string(),
                std::fs::read_to_string(repo.join(f)).unwrap(),
            )
        })
        .collect();
        sources.push(("dr.yaml".into(), DR_DISABLE_FOO.into()));
        let mesh = mesh_of(&sources).unwrap();
        let legacy = predict(&mesh, &call("sleep.legacy", "httpbin.foo")).unwrap();
        assert_eq!(legacy.result, CallResult::reset());
        let meshed = predict(&mesh, &call("sleep.bar", "httpbin.foo")).unwrap();
        assert_eq!(meshed.result.code, "503", "{}", meshed.explanation);
        assert_eq!(meshed.result.curl_exit, 0);
        let fine = predict(&mesh, &call("sleep.bar", "httpbin.bar")).unwrap();
        assert_eq!(fine.result, CallResult::ok(true));
        assert!(predict(&mesh, &call("sleep.nowhere", "httpbin.bar")).is_err());
    }
}
