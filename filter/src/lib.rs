//! peerauth proxy-wasm filter: records the mTLS every inbound request (HTTP) or
//! connection (TCP) arrived with, and enforces per-port expectations.
//!
//! The pure part ([`config`], [`facts`], [`decide`], [`metrics`]) is tested natively;
//! [`host`] only gathers facts from Envoy and applies verdicts.

pub mod cert;
pub mod config;
pub mod decide;
pub mod facts;
pub mod metrics;

#[cfg(target_family = "wasm")]
mod host;
