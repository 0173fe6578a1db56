//! peerauth proxy-wasm filter (work in progress).
