//! Why the lab could not run (as opposed to a call that disagrees).

use std::path::PathBuf;

/// Why the lab could not run (as opposed to a call that disagrees).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LabError {
    #[error("{path}: {message}")]
    Manifest { path: String, message: String },
    #[error("the peerauth filter is not built at {0}: run `make build-filter` first")]
    NoFilter(PathBuf),
    #[error("the lab's stand-in app is not built at {0}: run `cargo build --release -p peerauth-tests --bin lab-app` (or set PEERAUTH_LAB_APP)")]
    NoApp(PathBuf),
    #[error("{0}")]
    Node(#[from] crate::node::NodeError),
    #[error("{0}")]
    Istiod(#[from] crate::istiod::IstiodError),
    #[error("{0}")]
    Topology(#[from] crate::topology::TopologyError),
    #[error("{0}")]
    Pki(#[from] crate::pki::PkiError),
    #[error("{what}: {message}")]
    Io { what: String, message: String },
    #[error("policy rejects the lab's manifests: {0}")]
    Policy(String),
    #[error("the lab needs {0}, which its manifests do not define")]
    Missing(String),
    #[error("envoy in {pod} exited or did not become ready within {seconds}s; its log ends with:\n{log}")]
    EnvoyNotReady {
        pod: String,
        seconds: u64,
        log: String,
    },
    #[error(
        "envoy in {pod} is no longer running (it crashed or was killed); its log ends with:\n{log}"
    )]
    EnvoyDied { pod: String, log: String },
    #[error(
        "the app in {pod} did not answer on port {port} within 10s; its log ends with:\n{log}"
    )]
    AppNotReady { pod: String, port: u16, log: String },
    #[error("no step's name contains {0:?}: the steps are the folders of manifests/steps and manifests/lab/scenarios")]
    NoStep(String),
    #[error("no expected results for step {0} in manifests/lab/seed-lab.json: add them (from the page the step follows) before running it")]
    NoExpected(String),
}

impl LabError {
    pub fn io(what: impl std::fmt::Display, e: &std::io::Error) -> LabError {
        LabError::Io {
            what: what.to_string(),
            message: e.to_string(),
        }
    }
}
