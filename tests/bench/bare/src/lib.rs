//! The floor under every proxy-wasm filter in this Envoy: the ABI's required
//! exports written by hand, without the SDK, and per request only the two
//! callbacks an HTTP filter cannot avoid (the stream's context is created, its
//! request headers are delivered) returning at once. No host call is made.
//! Envoy with this module minus Envoy without a filter is what Envoy's wasm
//! host and V8 charge per request before any SDK or filter code runs.
//!
//! Envoy only calls the callbacks a module exports, so this module exports no
//! others (no response, log, done or delete callbacks).

use std::alloc::{alloc, Layout};

#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

/// Envoy copies buffers it hands over (the plugin configuration) into memory
/// this returns; the module never frees them, and never asks for any per request.
#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    match Layout::from_size_align(size.max(1), 8) {
        // SAFETY: the layout's size is non-zero.
        Ok(layout) => unsafe { alloc(layout) },
        Err(_) => std::ptr::null_mut(),
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_vm_start(_root_context_id: u32, _vm_configuration_size: u32) -> u32 {
    1
}

#[no_mangle]
pub extern "C" fn proxy_on_configure(
    _root_context_id: u32,
    _plugin_configuration_size: u32,
) -> u32 {
    1
}

#[no_mangle]
pub extern "C" fn proxy_on_context_create(_context_id: u32, _parent_context_id: u32) {}

/// 0 is `Continue`.
#[no_mangle]
pub extern "C" fn proxy_on_request_headers(
    _context_id: u32,
    _num_headers: u32,
    _end_of_stream: u32,
) -> u32 {
    0
}
