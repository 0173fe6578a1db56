//! The proxy-wasm glue: forwards Envoy's callbacks to the [`Engine`] and
//! implements [`Proxy`] with host calls. Every host call goes through
//! `hostcalls` and turns its `Err` into a failure the engine handles, because the
//! `Context` helpers of proxy-wasm 0.2.5 unwrap and a panic kills the VM.

use crate::config::Protocol;
use crate::engine::{Engine, Level, Proxy, Tcp, Verdict};
use crate::facts::Host;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext, StreamContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType};
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    // Replaces the SDK's hook (which unwraps inside the hook) with one that names us.
    std::panic::set_hook(Box::new(|info| {
        let _ = hostcalls::log(LogLevel::Critical, &format!("peerauth: panic: {info}"));
    }));
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(Root { engine: Rc::new(Engine::unconfigured()) })
    });
}}

struct Envoy;

impl Host for Envoy {
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        hostcalls::get_property(path.to_vec()).ok().flatten()
    }
}

impl Proxy for Envoy {
    fn request_header(&self, name: &str) -> Option<String> {
        hostcalls::get_map_value(MapType::HttpRequestHeaders, name)
            .ok()
            .flatten()
    }

    fn set_request_header(&self, name: &str, value: Option<&str>) -> bool {
        hostcalls::set_map_value(MapType::HttpRequestHeaders, name, value).is_ok()
    }

    fn send_response(&self, status: u32, headers: &[(&str, &str)], body: &[u8]) -> bool {
        hostcalls::send_http_response(status, headers.to_vec(), Some(body)).is_ok()
    }

    fn close_downstream(&self) -> bool {
        hostcalls::close_downstream().is_ok()
    }

    fn set_effective_context(&self, context_id: u32) -> bool {
        hostcalls::set_effective_context(context_id).is_ok()
    }

    fn set_tick_period_ms(&self, ms: u64) -> bool {
        hostcalls::set_tick_period(Duration::from_millis(ms)).is_ok()
    }

    fn now_unix(&self) -> Option<i64> {
        let t = hostcalls::get_current_time().ok()?;
        i64::try_from(t.duration_since(UNIX_EPOCH).ok()?.as_secs()).ok()
    }

    fn define_counter(&self, name: &str) -> Option<u32> {
        hostcalls::define_metric(MetricType::Counter, name).ok()
    }

    fn increment_counter(&self, id: u32) {
        let _ = hostcalls::increment_metric(id, 1);
    }

    fn log(&self, level: Level, message: &str) {
        let level = match level {
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Critical => LogLevel::Critical,
        };
        let _ = hostcalls::log(level, message);
    }
}

fn action(v: Verdict) -> Action {
    match v {
        Verdict::Continue => Action::Continue,
        Verdict::Pause => Action::Pause,
    }
}

struct Root {
    engine: Rc<Engine>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let raw = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        // A refused configuration leaves an engine that rejects everything.
        let (engine, ok) = match Engine::configure(&Envoy, &raw) {
            Ok(e) => (e, true),
            Err(_) => (Engine::unconfigured(), false),
        };
        self.engine = Rc::new(engine);
        ok
    }

    fn on_tick(&mut self) {
        self.engine.on_tick(&Envoy);
    }

    fn get_type(&self) -> Option<ContextType> {
        match self.engine.protocol() {
            Some(Protocol::Tcp) => Some(ContextType::StreamContext),
            _ => Some(ContextType::HttpContext),
        }
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Request {
            engine: Rc::clone(&self.engine),
        }))
    }

    fn create_stream_context(&self, id: u32) -> Option<Box<dyn StreamContext>> {
        Some(Box::new(Connection {
            engine: Rc::clone(&self.engine),
            id,
            known: None,
        }))
    }
}

struct Request {
    engine: Rc<Engine>,
}

impl Context for Request {}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _n: usize, _eos: bool) -> Action {
        action(self.engine.on_request_headers(&Envoy))
    }
}

struct Connection {
    engine: Rc<Engine>,
    id: u32,
    known: Option<Tcp>,
}

impl Context for Connection {}

impl StreamContext for Connection {
    fn on_upstream_data(&mut self, _size: usize, _eos: bool) -> Action {
        action(
            self.engine
                .on_upstream_data(&Envoy, self.id, &mut self.known),
        )
    }

    fn on_downstream_data(&mut self, _size: usize, _eos: bool) -> Action {
        action(
            self.engine
                .on_downstream_data(&Envoy, self.id, &mut self.known),
        )
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.engine.on_connection_deleted(self.id);
    }
}
