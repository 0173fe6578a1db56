//! Harness for the end-to-end tests and the local mesh demo.
pub mod app;
pub mod demo;
pub mod envoy;
pub mod istiod;
pub mod node;
pub mod oci;
pub mod pki;
pub mod topology;
