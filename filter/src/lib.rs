//! peerauth proxy-wasm filter: records the mTLS every inbound request (HTTP) or
//! connection (TCP) arrived with, and enforces per-port expectations.
//!
//! Everything but the host calls ([`config`], [`facts`], [`decide`], [`metrics`],
//! and the per-VM state and callbacks in [`engine`]) is tested natively; `host`
//! only forwards Envoy's callbacks to the [`engine::Engine`] and implements
//! [`engine::Proxy`] with host calls.

// An index out of range panics, and the filter must never panic (issue 17):
// slices are read with `get`. Tests index freely.
#![cfg_attr(not(test), warn(clippy::indexing_slicing))]

pub mod cert;
pub mod config;
pub mod decide;
pub mod engine;
pub mod facts;
pub mod json;
pub mod metrics;

#[cfg(target_family = "wasm")]
mod host;
