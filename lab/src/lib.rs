//! The local pod-faithful mesh, as a library: the machinery under the seed-lab demo
//! (`tests/`) and `peerauth lab` (`cli/`).
//!
//! - [`topology`]: pods with IPs and Services with ClusterIPs, from a `policy` mesh;
//! - [`node`]: one network namespace per pod, routes, ClusterIP DNAT, hosts files,
//!   istio-iptables' capture, processes as uid 1337, tcpdump, teardown;
//! - [`istiod`]: each sidecar's Envoy bootstrap in istiod's shape, WasmPlugin placement;
//! - [`pki`]: the mesh CA and one SVID per sidecar pod;
//! - [`pods`]: the running lab ([`pods::PodLab`]): network, certificates, the stand-in
//!   [`app`] on every container port, one Envoy per sidecar pod;
//! - [`call`]: a call and its result as curl in a client pod shows it; [`predict`]:
//!   what `policy` says the same call does; [`probe`]: calls as Istio's simulation
//!   tests make them and their results as a user sees them; [`stats`]: the filter's counters;
//! - [`load`]: manifests to the mesh istiod would see (policy's loader) and the raw
//!   documents the topology reads; [`yaml`]: YAML to JSON as kubectl converts it.
//!
//! # Example
//!
//! What the lab predicts for a call, natively (running the lab needs root and
//! Envoy): the seed's sleep without a sidecar calling httpbin in `bar` after a
//! mesh-wide STRICT policy is reset, as curl in its pod would show.
//!
//! ```
//! use peerauth_lab::call::ServiceCall;
//! use peerauth_lab::{load, predict, topology::Topology};
//!
//! let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../manifests");
//! let sources: Vec<(String, String)> = [
//!     "workloads/foo.yaml",
//!     "workloads/bar.yaml",
//!     "workloads/legacy.yaml",
//!     "steps/2-mesh-strict/peer-authentication.yaml",
//! ]
//! .iter()
//! .map(|f| {
//!     let path = format!("{root}/{f}");
//!     let text = std::fs::read_to_string(&path).expect("the seed manifests");
//!     (path, text)
//! })
//! .collect();
//! let mesh = load::mesh_of(&sources).expect("the seed loads cleanly");
//! let topology = Topology::from_mesh(&mesh, &load::documents(&sources).expect("YAML"))
//!     .expect("a topology");
//! assert!(topology.pod("sleep", "legacy").is_some());
//!
//! let call = ServiceCall { client: "sleep.legacy".into(), service: "httpbin.bar".into(), port: 8000 };
//! let prediction = predict::predict(&mesh, &call).expect("both ends exist");
//! assert_eq!((prediction.result.code.as_str(), prediction.result.curl_exit), ("000", 56));
//! ```

pub mod app;
pub mod call;
pub mod error;
pub mod istiod;
pub mod load;
pub mod node;
pub mod pki;
pub mod pods;
pub mod predict;
pub mod probe;
pub mod stats;
pub mod topology;
pub mod yaml;

pub use error::LabError;
