//! The local mesh demo (the README's main command): the seed lab in network-namespace
//! pods with Istio's traffic capture and istiod-shaped sidecars, every call compared
//! with the seed lab's documented result and with `policy`'s prediction; and the
//! manifest checks it shares with the tests.
//!
//! - [`steps`]: the seed steps and scenarios as read from `manifests/`, and the
//!   WasmPlugins each loads;
//! - [`expected`]: the seed lab's documented results (`manifests/lab/seed-lab.json`);
//! - [`predict`]: what `policy` says each call does;
//! - [`pods`]: the running lab — a [`crate::node::Node`], one Envoy per sidecar pod
//!   from [`crate::istiod::bootstrap`], the stand-in app in every pod, curl in the
//!   client pods;
//! - [`wire`], [`upstream_log`], [`forgery`], [`readiness`], [`explain`]: the extra
//!   scenes (data in motion, the debug-log line, a forged XFCC, "safe to go STRICT?",
//!   `peerauth check`/`describe`);
//! - [`walk`]: the whole demo, step by step; [`report`]: its results and output;
//!   [`stats`]: the filter's counters read back from a sidecar.

pub mod crd;
pub mod expected;
pub mod explain;
pub mod forgery;
pub mod pods;
pub mod predict;
pub mod readiness;
pub mod report;
pub mod stats;
pub mod steps;
pub mod upstream_log;
pub mod walk;
pub mod wire;

/// The loopback lab's step loading, under its old path (other modules and tests build
/// meshes with `demo::lab::mesh_for`).
pub mod lab {
    pub use super::steps::{load_steps, mesh_for, workload_sources, Step};
}

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
    pub(crate) fn io(what: impl std::fmt::Display, e: &std::io::Error) -> LabError {
        LabError::Io {
            what: what.to_string(),
            message: e.to_string(),
        }
    }
}
