//! Harness for the end-to-end tests and the local mesh demo: real Envoy
//! processes ([`envoy`]), the echo app behind them ([`app`]), the OCI image of
//! the filter ([`oci`]) and the demo's steps and report ([`demo`]). The lab
//! itself (topology, node, istiod, pki, the running pods) is the `peerauth-lab`
//! crate, re-exported here under its old paths.
//!
//! # Example
//!
//! The echo app shows a test exactly the headers the application received
//! (loopback only, no Envoy):
//!
//! ```
//! use peerauth_tests::{app::EchoApp, envoy::http_get};
//!
//! let app = EchoApp::start().expect("bind 127.0.0.1");
//! let (status, body) = http_get(app.addr(), "/headers").expect("an answer");
//! assert_eq!(status, 200);
//! let echo: serde_json::Value = serde_json::from_str(&body).expect("JSON");
//! assert!(echo.to_string().contains("/headers"), "{echo}");
//! ```
pub mod app;
pub mod demo;
pub mod envoy;
pub mod oci;

pub use peerauth_lab::{istiod, node, pki, topology};
