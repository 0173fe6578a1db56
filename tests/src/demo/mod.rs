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
pub mod readiness;
pub mod report;
pub mod steps;
pub mod upstream_log;
pub mod walk;
pub mod wire;

/// The loopback lab's step loading, under its old path (other modules and tests build
/// meshes with `demo::lab::mesh_for`).
pub mod lab {
    pub use super::steps::{load_steps, mesh_for, workload_sources, Step};
}

pub use peerauth_lab::LabError;
// The generic parts of the runner live in the lab crate, under their old paths here.
pub use peerauth_lab::{pods, predict, stats};
