//! peerauth proxy-wasm filter: records the mTLS every inbound request (HTTP) or
//! connection (TCP) arrived with, and enforces per-port expectations.
//!
//! Everything but the host calls ([`config`], [`facts`], [`decide`], [`metrics`],
//! and the per-VM state and callbacks in [`engine`]) is tested natively; `host`
//! only forwards Envoy's callbacks to the [`engine::Engine`] and implements
//! [`engine::Proxy`] with host calls.
//!
//! # Example
//!
//! The decision, natively (no Envoy): a plaintext request to a STRICT port is
//! rejected, one to a port the configuration sets PERMISSIVE is allowed.
//!
//! ```
//! use peerauth_filter::config::Config;
//! use peerauth_filter::decide::{decide, Outcome, Reason};
//! use peerauth_filter::facts::{ConnectionFacts, Facts, Security};
//! use std::borrow::Cow;
//!
//! let config = Config::parse(
//!     br#"{"mtls": {"mode": "PERMISSIVE"}, "action": "enforce",
//!          "portLevelMtls": {"8080": {"mode": "STRICT"}, "9090": {"mode": "PERMISSIVE"}}}"#,
//! )
//! .expect("a valid pluginConfig");
//! let plaintext_to = |port| Facts {
//!     conn: Cow::Owned(ConnectionFacts {
//!         security: Security::Plaintext,
//!         peer_uri: None,
//!         peer_sha256: None,
//!         destination_port: Some(port),
//!     }),
//!     xfcc: None,
//!     now_unix: None,
//!     peer_names: None,
//! };
//! let strict = decide(&config, &plaintext_to(8080));
//! assert_eq!(strict.outcome, Outcome::Rejected);
//! assert_eq!(strict.reason, Reason::PlaintextOnStrict);
//! assert_eq!(decide(&config, &plaintext_to(9090)).outcome, Outcome::Allowed);
//! ```

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
