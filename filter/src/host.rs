//! The proxy-wasm glue: the ABI (0.2.1) written against Envoy's imports and
//! exports directly, forwarding Envoy's callbacks to the [`Engine`] and
//! implementing [`Proxy`] with host calls.
//!
//! Why not the proxy-wasm SDK: its dispatcher keeps every context in hash maps
//! (two inserts, lookups and removals per request) behind boxed trait objects,
//! and was ~30 KB of the module; several of its host-call wrappers also panic
//! on an unexpected status or a non-UTF-8 header value, which would kill the VM.
//! Here every host call's status is checked and turned into a failure the
//! engine handles, and the only per-request bookkeeping is a scan of a short
//! list that is empty for HTTP with one plugin per VM.
//!
//! Only the callbacks exported here (and kept by `build.sh`) are ever called.

use crate::config::Protocol;
use crate::engine::{Engine, Level, Proxy, Tcp, Verdict};
use crate::facts::Host;
use std::cell::RefCell;
use std::ptr::{null, null_mut};
use std::rc::Rc;

/// Envoy's imports, with the ABI's integer encodings (`Status` 0 is `Ok`, 1 `NotFound`).
mod abi {
    extern "C" {
        pub fn proxy_log(level: u32, data: *const u8, size: usize) -> u32;
        pub fn proxy_get_property(
            path: *const u8,
            path_size: usize,
            value: *mut *mut u8,
            value_size: *mut usize,
        ) -> u32;
        pub fn proxy_get_header_map_value(
            map: u32,
            key: *const u8,
            key_size: usize,
            value: *mut *mut u8,
            value_size: *mut usize,
        ) -> u32;
        pub fn proxy_replace_header_map_value(
            map: u32,
            key: *const u8,
            key_size: usize,
            value: *const u8,
            value_size: usize,
        ) -> u32;
        pub fn proxy_remove_header_map_value(map: u32, key: *const u8, key_size: usize) -> u32;
        #[allow(clippy::too_many_arguments)]
        pub fn proxy_send_local_response(
            status: u32,
            details: *const u8,
            details_size: usize,
            body: *const u8,
            body_size: usize,
            headers: *const u8,
            headers_size: usize,
            grpc_status: i32,
        ) -> u32;
        pub fn proxy_close_stream(stream: u32) -> u32;
        pub fn proxy_set_effective_context(context_id: u32) -> u32;
        pub fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
        pub fn proxy_get_current_time_nanoseconds(time: *mut u64) -> u32;
        pub fn proxy_define_metric(
            kind: u32,
            name: *const u8,
            name_size: usize,
            id: *mut u32,
        ) -> u32;
        pub fn proxy_increment_metric(id: u32, offset: i64) -> u32;
        pub fn proxy_get_buffer_bytes(
            buffer: u32,
            start: usize,
            max_size: usize,
            data: *mut *mut u8,
            size: *mut usize,
        ) -> u32;
    }
    #[cfg(target_os = "wasi")]
    extern "C" {
        pub fn __wasm_call_ctors();
    }
}

const OK: u32 = 0;
const REQUEST_HEADERS: u32 = 0;
const PLUGIN_CONFIGURATION: u32 = 7;
const COUNTER: u32 = 0;
/// `StreamType::Downstream`: the client's connection.
const DOWNSTREAM: u32 = 2;

/// Bytes the host wrote into memory from [`proxy_on_memory_allocate`].
///
/// # Safety
/// `data` is null or was returned by `proxy_on_memory_allocate(size)`, and is
/// not owned by anything else.
unsafe fn take(data: *mut u8, size: usize) -> Option<Vec<u8>> {
    // SAFETY: by the contract above the allocation is a `Vec<u8>` of capacity `size`.
    (!data.is_null()).then(|| unsafe { Vec::from_raw_parts(data, size, size) })
}

/// The VM's one program entry: runs static constructors, installs a panic hook
/// that logs instead of the standard one.
#[no_mangle]
pub extern "C" fn _initialize() {
    #[cfg(target_os = "wasi")]
    // SAFETY: called once, by the host, before any other export.
    unsafe {
        abi::__wasm_call_ctors();
    }
    std::panic::set_hook(Box::new(|info| {
        Envoy.log(Level::Critical, &format!("peerauth: panic: {info}"));
    }));
}

#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

/// Envoy copies every value it returns into memory this gives; [`take`] hands
/// it back to the allocator.
#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    let mut v: Vec<u8> = Vec::with_capacity(size);
    let p = v.as_mut_ptr();
    std::mem::forget(v);
    p
}

struct Envoy;

fn status_ok(s: u32) -> bool {
    s == OK
}

impl Host for Envoy {
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        let joined = path.join("\0");
        let (mut data, mut size) = (null_mut(), 0);
        // SAFETY: the path is live for the call; the host writes `data`/`size`.
        let s =
            unsafe { abi::proxy_get_property(joined.as_ptr(), joined.len(), &mut data, &mut size) };
        // SAFETY: on `Ok` the value is in memory the host got from us.
        status_ok(s).then(|| unsafe { take(data, size) }).flatten()
    }
}

impl Proxy for Envoy {
    fn request_header(&self, name: &str) -> Option<String> {
        let (mut data, mut size) = (null_mut(), 0);
        // SAFETY: as in `property`.
        let s = unsafe {
            abi::proxy_get_header_map_value(
                REQUEST_HEADERS,
                name.as_ptr(),
                name.len(),
                &mut data,
                &mut size,
            )
        };
        // SAFETY: as in `property`.
        let bytes = status_ok(s)
            .then(|| unsafe { take(data, size) })
            .flatten()?;
        // A header that is not UTF-8 is still checked (its structure is what
        // the XFCC rules look at), never dropped as if it were absent.
        Some(match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }

    fn set_request_header(&self, name: &str, value: Option<&str>) -> bool {
        // SAFETY: the name and value are live for the call.
        let s = unsafe {
            match value {
                Some(v) => abi::proxy_replace_header_map_value(
                    REQUEST_HEADERS,
                    name.as_ptr(),
                    name.len(),
                    v.as_ptr(),
                    v.len(),
                ),
                None => {
                    abi::proxy_remove_header_map_value(REQUEST_HEADERS, name.as_ptr(), name.len())
                }
            }
        };
        status_ok(s)
    }

    fn send_response(&self, status: u32, headers: &[(&str, &str)], body: &[u8]) -> bool {
        // The ABI's map encoding: the count, each key and value length
        // (u32 little-endian), then each key and value followed by a NUL.
        let mut map = Vec::new();
        map.extend_from_slice(&(headers.len() as u32).to_le_bytes());
        for (k, v) in headers {
            map.extend_from_slice(&(k.len() as u32).to_le_bytes());
            map.extend_from_slice(&(v.len() as u32).to_le_bytes());
        }
        for (k, v) in headers {
            for part in [k, v] {
                map.extend_from_slice(part.as_bytes());
                map.push(0);
            }
        }
        // SAFETY: every buffer is live for the call; -1 is "no gRPC status".
        let s = unsafe {
            abi::proxy_send_local_response(
                status,
                null(),
                0,
                body.as_ptr(),
                body.len(),
                map.as_ptr(),
                map.len(),
                -1,
            )
        };
        status_ok(s)
    }

    fn close_downstream(&self) -> bool {
        // SAFETY: plain integer argument.
        status_ok(unsafe { abi::proxy_close_stream(DOWNSTREAM) })
    }

    fn set_effective_context(&self, context_id: u32) -> bool {
        // SAFETY: plain integer argument.
        status_ok(unsafe { abi::proxy_set_effective_context(context_id) })
    }

    fn set_tick_period_ms(&self, ms: u64) -> bool {
        let Ok(ms) = u32::try_from(ms) else {
            return false;
        };
        // SAFETY: plain integer argument.
        status_ok(unsafe { abi::proxy_set_tick_period_milliseconds(ms) })
    }

    fn now_unix(&self) -> Option<i64> {
        let mut ns = 0u64;
        // SAFETY: the host writes one u64.
        let s = unsafe { abi::proxy_get_current_time_nanoseconds(&mut ns) };
        status_ok(s)
            .then(|| i64::try_from(ns / 1_000_000_000).ok())
            .flatten()
    }

    fn define_counter(&self, name: &str) -> Option<u32> {
        let mut id = 0u32;
        // SAFETY: the name is live for the call; the host writes one u32.
        let s = unsafe { abi::proxy_define_metric(COUNTER, name.as_ptr(), name.len(), &mut id) };
        status_ok(s).then_some(id)
    }

    fn increment_counter(&self, id: u32) {
        // SAFETY: plain integer arguments. A lost increment is not a decision.
        let _ = unsafe { abi::proxy_increment_metric(id, 1) };
    }

    fn log(&self, level: Level, message: &str) {
        let level = match level {
            Level::Info => 2,
            Level::Warn => 3,
            Level::Critical => 5,
        };
        // SAFETY: the message is live for the call.
        let _ = unsafe { abi::proxy_log(level, message.as_ptr(), message.len()) };
    }
}

/// A TCP connection's context: its root's engine and its own verdict.
struct Stream {
    id: u32,
    engine: Rc<Engine>,
    known: Option<Tcp>,
}

#[derive(Default)]
struct Vm {
    /// One per plugin sharing this VM (usually one).
    roots: Vec<(u32, Rc<Engine>)>,
    /// TCP connection contexts, and HTTP stream contexts only while several
    /// plugins share the VM (with one, every stream belongs to it).
    streams: Vec<Stream>,
}

thread_local! {
    static VM: RefCell<Vm> = RefCell::default();
}

/// The engine serving `context_id` (a root, or one of its streams). An
/// unknown context gets an engine that rejects everything.
fn engine_for(vm: &Vm, context_id: u32) -> Rc<Engine> {
    let found = vm
        .streams
        .iter()
        .find(|s| s.id == context_id)
        .map(|s| &s.engine)
        .or_else(|| {
            vm.roots
                .iter()
                .find(|(id, _)| *id == context_id)
                .map(|(_, e)| e)
        })
        .or(match vm.roots.as_slice() {
            [(_, only)] => Some(only),
            _ => None,
        });
    found.map_or_else(|| Rc::new(Engine::unconfigured()), Rc::clone)
}

/// Borrow the VM's state for `f`; `None` if it is already borrowed (a host
/// call re-entering the module, not expected).
fn with_vm<T>(f: impl FnOnce(&mut Vm) -> T) -> Option<T> {
    VM.with(|vm| vm.try_borrow_mut().ok().map(|mut vm| f(&mut vm)))
}

fn action(v: Verdict) -> u32 {
    match v {
        Verdict::Continue => 0,
        Verdict::Pause => 1,
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_vm_start(_root_id: u32, _vm_configuration_size: usize) -> u32 {
    1
}

#[no_mangle]
pub extern "C" fn proxy_on_context_create(context_id: u32, parent_id: u32) {
    let _ = with_vm(|vm| {
        if parent_id == 0 {
            vm.roots.push((context_id, Rc::new(Engine::unconfigured())));
            return;
        }
        let Some(engine) = vm
            .roots
            .iter()
            .find(|(id, _)| *id == parent_id)
            .map(|(_, e)| Rc::clone(e))
        else {
            return;
        };
        if engine.protocol() == Some(Protocol::Tcp) || vm.roots.len() > 1 {
            vm.streams.push(Stream {
                id: context_id,
                engine,
                known: None,
            });
        }
    });
}

#[no_mangle]
pub extern "C" fn proxy_on_configure(root_id: u32, size: usize) -> u32 {
    let (mut data, mut len) = (null_mut(), 0);
    // SAFETY: the host writes `data`/`len`.
    let s =
        unsafe { abi::proxy_get_buffer_bytes(PLUGIN_CONFIGURATION, 0, size, &mut data, &mut len) };
    // SAFETY: on `Ok` the buffer is in memory the host got from us. An absent
    // configuration is the empty one (all defaults), as Istio sends none.
    let raw = status_ok(s)
        .then(|| unsafe { take(data, len) })
        .flatten()
        .unwrap_or_default();
    // A refused configuration leaves an engine that rejects everything.
    let (engine, ok) = match Engine::configure(&Envoy, &raw) {
        Ok(e) => (e, true),
        Err(_) => (Engine::unconfigured(), false),
    };
    let engine = Rc::new(engine);
    let _ = with_vm(
        |vm| match vm.roots.iter_mut().find(|(id, _)| *id == root_id) {
            Some(root) => root.1 = engine,
            None => vm.roots.push((root_id, engine)),
        },
    );
    u32::from(ok)
}

#[no_mangle]
pub extern "C" fn proxy_on_tick(root_id: u32) {
    if let Some(engine) = with_vm(|vm| engine_for(vm, root_id)) {
        engine.on_tick(&Envoy);
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(context_id: u32, _headers: usize, _end: u32) -> u32 {
    let engine =
        with_vm(|vm| engine_for(vm, context_id)).unwrap_or_else(|| Rc::new(Engine::unconfigured()));
    action(engine.on_request_headers(&Envoy))
}

/// A TCP callback: the engine decides with the connection's own record, which
/// is copied out so no borrow of the VM is held across host calls.
fn on_data(context_id: u32, call: impl FnOnce(&Engine, &mut Option<Tcp>) -> Verdict) -> u32 {
    let Some((engine, mut known)) = with_vm(|vm| {
        let known = vm
            .streams
            .iter()
            .find(|s| s.id == context_id)
            .and_then(|s| s.known);
        (engine_for(vm, context_id), known)
    }) else {
        let _ = Envoy.close_downstream();
        return action(Verdict::Pause);
    };
    let v = call(&engine, &mut known);
    let _ = with_vm(|vm| {
        if let Some(s) = vm.streams.iter_mut().find(|s| s.id == context_id) {
            s.known = known;
        }
    });
    action(v)
}

#[no_mangle]
pub extern "C" fn proxy_on_downstream_data(context_id: u32, _size: usize, _end: u32) -> u32 {
    on_data(context_id, |e, known| {
        e.on_downstream_data(&Envoy, context_id, known)
    })
}

#[no_mangle]
pub extern "C" fn proxy_on_upstream_data(context_id: u32, _size: usize, _end: u32) -> u32 {
    on_data(context_id, |e, known| {
        e.on_upstream_data(&Envoy, context_id, known)
    })
}

#[no_mangle]
pub extern "C" fn proxy_on_delete(context_id: u32) {
    let gone = with_vm(|vm| {
        vm.roots.retain(|(id, _)| *id != context_id);
        let at = vm.streams.iter().position(|s| s.id == context_id)?;
        Some(vm.streams.swap_remove(at).engine)
    })
    .flatten();
    if let Some(engine) = gone {
        engine.on_connection_deleted(context_id);
    }
}
