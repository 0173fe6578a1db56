//! Harness for the end-to-end tests and the local mesh demo. The lab itself (topology,
//! node, istiod, pki, the running pods) is the `peerauth-lab` crate, re-exported here
//! under its old paths.
pub mod app;
pub mod demo;
pub mod envoy;
pub mod oci;

pub use peerauth_lab::{istiod, node, pki, topology};
