//! Envoy harness (work in progress).
