//! The client side and the client × server matrix: does the caller send mTLS,
//! does the request succeed, is it encrypted (the seed lab's `sleep → httpbin`).

use crate::mesh::{Mesh, Service, Workload};
use crate::mode::{MtlsMode, TlsMode};
use serde::{Deserialize, Serialize};

/// What the client's sidecar (or the bare client) puts on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientTls {
    /// No sidecar, DR DISABLE, or auto mTLS chose plaintext.
    Plaintext,
    /// Istio mTLS (ISTIO_MUTUAL or auto mTLS).
    IstioMutual,
    /// DR SIMPLE/MUTUAL: TLS that is not Istio's (no Istio ALPN).
    OtherTls,
}

/// Why the client sends what it sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientReason {
    NoSidecar,
    DestinationRule { name: String, namespace: String, mode: TlsMode },
    AutoMtls,
    AutoMtlsOff,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// HTTP 200 in the seed lab.
    Allowed,
    /// Connection reset (curl exit 56, "000" status).
    Reset,
    /// TLS bytes reach a plaintext app: the request fails.
    Failed,
}

/// One client → service port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cell {
    pub client_namespace: String,
    pub client: String,
    pub service_namespace: String,
    pub service: String,
    pub service_port: u16,
    pub target_port: u32,
    pub client_tls: ClientTls,
    pub client_reason: ClientReason,
    pub server_mode: MtlsMode,
    pub outcome: Outcome,
    /// Encrypted with Istio mTLS end to end (XFCC present at the app).
    pub mtls: bool,
    /// One sentence.
    pub explanation: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Matrix {
    pub cells: Vec<Cell>,
}

impl Mesh {
    /// What happens when `client` calls `service:port`. `None` if the service has no such port
    /// or selects no workload.
    pub fn connect(&self, client: &Workload, service: &Service, service_port: u16) -> Option<Cell> {
        let _ = (client, service, service_port);
        todo!("policy implementation")
    }

    /// Every workload × every service port, in a stable order (namespace, name, port).
    pub fn matrix(&self) -> Matrix {
        todo!("policy implementation")
    }
}
