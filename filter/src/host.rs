//! The proxy-wasm glue: the ABI (0.2.1) written against Envoy's imports and
//! exports directly, forwarding Envoy's callbacks to the [`Engine`] and
//! implementing [`Proxy`] with host calls.
//!
//! Why not the proxy-wasm SDK: its dispatcher keeps every context in hash maps
//! (two inserts, lookups and removals per request) behind boxed trait objects,
//! and was ~30 KB of the module; several of its host-call wrappers also panic
//! on an unexpected status or a non-UTF-8 header value, which would kill the VM.
//! Here every host call's status is checked and turned into a failure the
//! engine handles, and the only per-request bookkeeping is a lookup in a list
//! of TCP connections sorted by context id (empty for HTTP with one plugin per
//! VM).
//!
//! Only the callbacks exported here (and kept by `build.sh`) are ever called.

use crate::config::Protocol;
use crate::engine::{Engine, Level, Proxy, Tcp, Unreadable, Verdict};
use crate::facts::{Host, Refused};
use std::cell::RefCell;
use std::ptr::{null, null_mut, NonNull};
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
        pub fn proxy_get_header_map_pairs(
            map: u32,
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
        pub fn proxy_record_metric(id: u32, value: u64) -> u32;
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
const NOT_FOUND: u32 = 1;
const REQUEST_HEADERS: u32 = 0;
const PLUGIN_CONFIGURATION: u32 = 7;
const COUNTER: u32 = 0;
const GAUGE: u32 = 1;
/// `StreamType::Downstream`: the client's connection.
const DOWNSTREAM: u32 = 2;

/// Bytes the host wrote into memory from [`proxy_on_memory_allocate`].
///
/// # Safety
/// `data` is null or was returned by `proxy_on_memory_allocate(size)`, and is
/// not owned by anything else.
unsafe fn take(data: *mut u8, size: usize) -> Option<Vec<u8>> {
    if size == 0 {
        // Envoy allocates nothing for an empty value (a null pointer): the
        // value is present and empty, not absent.
        return Some(Vec::new());
    }
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
    // Nothing to hold: a non-null pointer, as before (`take` hands back no
    // allocation for size 0), so the host never mistakes it for a failure.
    if size == 0 {
        return NonNull::<u8>::dangling().as_ptr();
    }
    let mut v: Vec<u8> = Vec::new();
    // A size the VM cannot hold is null (the host then fails the call that
    // wanted it, which the engine handles), not an abort that kills the VM.
    if v.try_reserve_exact(size).is_err() {
        return null_mut();
    }
    let p = v.as_mut_ptr();
    std::mem::forget(v);
    p
}

struct Envoy;

fn status_ok(s: u32) -> bool {
    s == OK
}

/// Longest attribute path the filter reads, joined (`connection.uri_san_local_certificate`).
const MAX_PATH: usize = 64;

/// `proxy_get_property`: the status, and the value on `Ok`; a path longer
/// than [`MAX_PATH`] is never asked for (`None`).
fn get_property(path: &[&str]) -> Option<(u32, Option<Vec<u8>>)> {
    // The ABI's path is the segments joined by NUL; joined on the stack, as
    // this runs per request (`connection.id`) and needs no allocation.
    let mut joined = [0u8; MAX_PATH];
    let mut len = 0;
    for (i, part) in path.iter().enumerate() {
        let start = len + usize::from(i > 0);
        let end = start + part.len();
        joined.get_mut(start..end)?.copy_from_slice(part.as_bytes());
        len = end;
    }
    let (mut data, mut size) = (null_mut(), 0);
    // SAFETY: the path is live for the call; the host writes `data`/`size`.
    let s = unsafe { abi::proxy_get_property(joined.as_ptr(), len, &mut data, &mut size) };
    // SAFETY: on `Ok` the value is in memory the host got from us.
    Some((
        s,
        status_ok(s).then(|| unsafe { take(data, size) }).flatten(),
    ))
}

impl Host for Envoy {
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        get_property(path)?.1
    }

    fn attribute(&self, path: &[&str]) -> Result<Option<Vec<u8>>, Refused> {
        match get_property(path) {
            Some((NOT_FOUND, _)) => Ok(None),
            Some((_, Some(value))) => Ok(Some(value)),
            _ => Err(Refused),
        }
    }
}

impl Proxy for Envoy {
    fn request_header(&self, name: &str) -> Result<Option<String>, Unreadable> {
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
        if s == NOT_FOUND {
            return Ok(None);
        }
        // SAFETY: as in `property`.
        let bytes = status_ok(s)
            .then(|| unsafe { take(data, size) })
            .flatten()
            .ok_or(Unreadable)?;
        // A header that is not UTF-8 is still checked (its structure is what
        // the XFCC rules look at), never dropped as if it were absent.
        Ok(Some(match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }))
    }

    fn request_headers(&self) -> Result<Vec<u8>, Unreadable> {
        let (mut data, mut size) = (null_mut(), 0);
        // SAFETY: the host writes `data`/`size`.
        let s = unsafe { abi::proxy_get_header_map_pairs(REQUEST_HEADERS, &mut data, &mut size) };
        // SAFETY: on `Ok` the value is in memory the host got from us.
        status_ok(s)
            .then(|| unsafe { take(data, size) })
            .flatten()
            .ok_or(Unreadable)
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

    fn increment_counter(&self, id: u32, by: u64) {
        // SAFETY: plain integer arguments. A lost increment is not a decision.
        let _ = unsafe { abi::proxy_increment_metric(id, i64::try_from(by).unwrap_or(i64::MAX)) };
    }

    fn define_gauge(&self, name: &str) -> Option<u32> {
        let mut id = 0u32;
        // SAFETY: as in `define_counter`.
        let s = unsafe { abi::proxy_define_metric(GAUGE, name.as_ptr(), name.len(), &mut id) };
        status_ok(s).then_some(id)
    }

    fn set_gauge(&self, id: u32, value: u64) {
        // SAFETY: plain integer arguments. A lost sample is not a decision.
        let _ = unsafe { abi::proxy_record_metric(id, value) };
    }

    fn vm_memory_bytes(&self) -> u64 {
        #[cfg(target_arch = "wasm32")]
        let pages = core::arch::wasm32::memory_size(0);
        #[cfg(not(target_arch = "wasm32"))]
        let pages = 0usize;
        (pages as u64) * 65536
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

/// A root context: one per filter configuration sharing this VM. Envoy keys
/// a plugin's root by its name *and* its configuration, so one `plugin_name`
/// may have several live roots with different configurations (two listeners,
/// or a listener draining after an update), each deciding for its own streams.
struct Root {
    id: u32,
    /// The `plugin_name` attribute, read at configure time.
    plugin: Option<Vec<u8>>,
    engine: Rc<Engine>,
}

/// Roots kept per plugin name. Without `proxy_on_delete` the module never
/// learns that Envoy deleted a root, so each update of a plugin's
/// configuration leaves one behind; beyond this many the oldest is forgotten,
/// and a stream still served by it (only if this many configurations of one
/// plugin are live at once) is rejected: closed, and logged.
const ROOTS_PER_PLUGIN: usize = 16;

/// Slots remembering an HTTP stream's root, by `context_id % STREAM_SLOTS`,
/// read only while several engines share the VM. A stream's request headers
/// follow its creation at once, so a slot is overwritten only long after
/// its stream was decided.
const STREAM_SLOTS: usize = 1024;

/// Why no `proxy_on_delete`: Envoy calls every callback a module exports, so
/// exporting it costs an entry into the VM per HTTP request (~1,900
/// instructions, BENCHMARKS.md), and HTTP streams leave nothing behind here.
/// TCP connections are forgotten when they close
/// (`proxy_on_downstream_connection_close`); roots are bounded per plugin
/// name ([`ROOTS_PER_PLUGIN`]).
#[derive(Default)]
struct Vm {
    roots: Vec<Root>,
    /// TCP connection contexts.
    streams: Vec<Stream>,
    /// `(stream, root)` per slot, empty while one engine serves every stream.
    http: Vec<(u32, u32)>,
    /// The misconfiguration of TCP data through an HTTP configuration was logged.
    warned_http_on_tcp: bool,
}

impl Vm {
    /// Where TCP stream `id` is, or would go: `streams` is kept sorted by id
    /// (Envoy numbers contexts upwards, so a new one lands at the end), so a
    /// data callback finds its connection in O(log n) among thousands.
    fn stream_at(&self, id: u32) -> Result<usize, usize> {
        self.streams.binary_search_by_key(&id, |s| s.id)
    }

    fn stream(&self, id: u32) -> Option<&Stream> {
        self.streams.get(self.stream_at(id).ok()?)
    }

    fn add_stream(&mut self, stream: Stream) {
        match self.stream_at(stream.id) {
            Ok(at) => {
                if let Some(s) = self.streams.get_mut(at) {
                    *s = stream;
                }
            }
            Err(at) => self.streams.insert(at, stream),
        }
    }

    fn take_stream(&mut self, id: u32) -> Option<Stream> {
        let at = self.stream_at(id).ok()?;
        Some(self.streams.remove(at))
    }

    fn root(&self, id: u32) -> Option<&Rc<Engine>> {
        self.roots.iter().find(|r| r.id == id).map(|r| &r.engine)
    }

    /// The engine when every root uses the same one (the usual single plugin).
    fn only_engine(&self) -> Option<&Rc<Engine>> {
        let first = &self.roots.first()?.engine;
        self.roots
            .iter()
            .all(|r| Rc::ptr_eq(&r.engine, first))
            .then_some(first)
    }
}

thread_local! {
    static VM: RefCell<Vm> = RefCell::default();
}

/// The engine serving `context_id` (a root, or one of its streams). An
/// unknown context gets an engine that rejects everything.
fn engine_for(vm: &Vm, context_id: u32) -> Rc<Engine> {
    let found = vm
        .stream(context_id)
        .map(|s| &s.engine)
        .or_else(|| vm.root(context_id))
        .or_else(|| vm.only_engine())
        .or_else(|| {
            let slot = vm.http.get(context_id as usize % STREAM_SLOTS)?;
            (slot.0 == context_id).then(|| vm.root(slot.1)).flatten()
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
            vm.roots.push(Root {
                id: context_id,
                plugin: None,
                engine: Rc::new(Engine::unconfigured()),
            });
            return;
        }
        let Some(engine) = vm.root(parent_id).map(Rc::clone) else {
            return;
        };
        if engine.protocol() == Some(Protocol::Tcp) {
            vm.add_stream(Stream {
                id: context_id,
                engine,
                known: None,
            });
        } else {
            // Recorded even while one engine serves every stream: a root
            // configured between this stream's creation and its request
            // headers (a filter before this one paused it) must not leave it
            // without its own.
            if vm.http.is_empty() {
                vm.http.resize(STREAM_SLOTS, (0, 0));
            }
            if let Some(slot) = vm.http.get_mut(context_id as usize % STREAM_SLOTS) {
                *slot = (context_id, parent_id);
            }
        }
    });
}

#[no_mangle]
pub extern "C" fn proxy_on_configure(root_id: u32, size: usize) -> u32 {
    let (mut data, mut len) = (null_mut(), 0);
    // SAFETY: the host writes `data`/`len`.
    let s =
        unsafe { abi::proxy_get_buffer_bytes(PLUGIN_CONFIGURATION, 0, size, &mut data, &mut len) };
    // SAFETY: on `Ok` the buffer is in memory the host got from us. No
    // configuration (size 0) is the empty one, all defaults, as Istio sends
    // none; one the host has but cannot hand over is refused, never read as
    // the defaults (a STRICT config would silently become record-only).
    let raw = if size == 0 {
        Some(Vec::new())
    } else {
        status_ok(s).then(|| unsafe { take(data, len) }).flatten()
    };
    // A refused configuration leaves an engine that rejects everything.
    let (engine, ok) = match raw.map(|raw| Engine::configure(&Envoy, &raw)) {
        Some(Ok(e)) => (e, true),
        Some(Err(_)) => (Engine::unconfigured(), false),
        None => {
            Envoy.log(
                Level::Critical,
                "peerauth: the pluginConfig could not be read from Envoy: refused",
            );
            (Engine::unconfigured(), false)
        }
    };
    let engine = Rc::new(engine);
    let plugin = Envoy.property(&["plugin_name"]).filter(|n| !n.is_empty());
    let forgotten = with_vm(|vm| {
        match vm.roots.iter_mut().find(|r| r.id == root_id) {
            Some(root) => {
                root.engine.hand_over_counts(&Envoy);
                root.engine = Rc::clone(&engine);
                root.plugin.clone_from(&plugin);
            }
            None => vm.roots.push(Root {
                id: root_id,
                plugin: plugin.clone(),
                engine: Rc::clone(&engine),
            }),
        }
        // A root whose name could not be read is matched with no other.
        plugin.as_ref()?;
        // The plugin's other roots keep their own configurations: another
        // listener's, or an updated listener's draining one. They may be
        // deleted before their next tick, so what they hold is counted now
        // (and from now on at once).
        for r in vm.roots.iter_mut() {
            if r.id != root_id && r.plugin == plugin {
                r.engine.hand_over_counts(&Envoy);
            }
        }
        let same = |r: &Root| r.id != root_id && r.plugin == plugin;
        // A refused configuration's root goes first: it serves nothing.
        let refused = |r: &Root| same(r) && r.engine.protocol().is_none();
        (vm.roots.iter().filter(|r| r.plugin == plugin).count() > ROOTS_PER_PLUGIN)
            .then(|| {
                let roots = &vm.roots;
                roots
                    .iter()
                    .position(refused)
                    .or_else(|| roots.iter().position(same))
            })
            .flatten()
            .map(|at| vm.roots.remove(at).id)
    })
    .flatten();
    if let Some(id) = forgotten {
        Envoy.log(
            Level::Info,
            &format!(
                "peerauth: more than {ROOTS_PER_PLUGIN} configurations of this plugin in one VM: forgot the oldest (root context {id}); a request it still served is rejected"
            ),
        );
    }
    u32::from(ok)
}

#[no_mangle]
pub extern "C" fn proxy_on_tick(root_id: u32) {
    let Some(engines) = with_vm(|vm| {
        let mut engines = vec![engine_for(vm, root_id)];
        for s in &vm.streams {
            if !engines.iter().any(|e| Rc::ptr_eq(e, &s.engine)) {
                engines.push(Rc::clone(&s.engine));
            }
        }
        engines
    }) else {
        return;
    };
    let engines: Vec<&Engine> = engines.iter().map(Rc::as_ref).collect();
    Engine::on_root_tick(&Envoy, root_id, &engines);
}

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(context_id: u32, _headers: usize, _end: u32) -> u32 {
    let engine = with_vm(|vm| {
        // A stream recorded as TCP (`"protocol": "tcp"` on an HTTP filter)
        // would never see a connection close that forgets it: forget it now.
        match vm.take_stream(context_id) {
            Some(s) => s.engine,
            None => engine_for(vm, context_id),
        }
    })
    .unwrap_or_else(|| Rc::new(Engine::unconfigured()));
    action(engine.on_request_headers(&Envoy))
}

/// A TCP callback: the engine decides with the connection's own record, which
/// is copied out so no borrow of the VM is held across host calls.
fn on_data(context_id: u32, call: impl FnOnce(&Engine, &mut Option<Tcp>) -> Verdict) -> u32 {
    let Some(found) = with_vm(|vm| {
        if let Some(s) = vm.stream(context_id) {
            return Some((Rc::clone(&s.engine), s.known));
        }
        // Not recorded at its creation (its root was not a TCP one then, or
        // was forgotten since): recorded now, so its verdict is kept and
        // counted once, and its close forgets it.
        let engine = engine_for(vm, context_id);
        match engine.protocol() {
            Some(Protocol::Http) => {
                if !vm.warned_http_on_tcp {
                    vm.warned_http_on_tcp = true;
                    Envoy.log(
                        Level::Critical,
                        "peerauth: a TCP connection reached a filter configured for HTTP (\"protocol\" is not \"tcp\"): every such connection is closed",
                    );
                }
                None
            }
            _ => {
                vm.add_stream(Stream {
                    id: context_id,
                    engine: Rc::clone(&engine),
                    known: None,
                });
                Some((engine, None))
            }
        }
    }) else {
        let _ = Envoy.close_downstream();
        return action(Verdict::Pause);
    };
    let Some((engine, mut known)) = found else {
        let _ = Envoy.close_downstream();
        return action(Verdict::Pause);
    };
    let v = call(&engine, &mut known);
    let _ = with_vm(|vm| {
        if let Some(s) = vm
            .stream_at(context_id)
            .ok()
            .and_then(|at| vm.streams.get_mut(at))
        {
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

/// A TCP connection closed (either side; Envoy's network filter reports
/// every close of the downstream connection): forget its context.
#[no_mangle]
pub extern "C" fn proxy_on_downstream_connection_close(context_id: u32, _peer: u32) {
    let gone = with_vm(|vm| match vm.take_stream(context_id) {
        Some(s) => s.engine,
        // Whatever engine would have served it drops anything it holds for it.
        None => engine_for(vm, context_id),
    });
    if let Some(engine) = gone {
        engine.on_connection_closed(context_id);
    }
}
