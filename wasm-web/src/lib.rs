//! wasm-bindgen glue (work in progress).
