//! The benchmark's baseline filter, built with the same SDK and profile as
//! peerauth's. By default every request only passes through: the difference
//! between Envoy with this module and Envoy without any filter is the cost of
//! running a proxy-wasm filter at all (context creation and the SDK's callbacks
//! in V8), which no filter logic can go below.
//!
//! A `pluginConfig` that is not JSON is a comma-separated list of host calls to
//! make on every request, to measure each one (`tests/bench/hostcalls.py`):
//! `metric`, `time`, `header` (`:path`), `xfcc`, `connection.id`, `source.port`,
//! `connection.mtls`. Anything else, including a JSON config meant for the real
//! filter, means no calls.
//!
//! `expr=<CEL>` (the whole config) instead creates the expression once, through
//! Envoy's `expr_create` foreign function, and evaluates it on every request
//! with `expr_evaluate` (one host call returning one value); `exprlog=<CEL>` also
//! logs each result as hex, to read its encoding. A failed `expr_create` is
//! logged and the module then makes no calls.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType};
use std::rc::Rc;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Probe::default()) });
}}

#[derive(Clone, Copy)]
enum Call {
    Metric,
    Time,
    Header(&'static str),
    /// Every request header in one call (`proxy_get_header_map_pairs`).
    Pairs,
    Property(&'static [&'static str]),
}

#[derive(Default)]
struct Probe {
    calls: Rc<Vec<Call>>,
    metric: u32,
    /// The `expr_create` token, and whether to log each result.
    expr: Option<([u8; 4], bool)>,
}

impl Context for Probe {}

impl RootContext for Probe {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        let config = String::from_utf8_lossy(&config);
        for (prefix, log) in [("expr=", false), ("exprlog=", true)] {
            if let Some(expression) = config.strip_prefix(prefix) {
                match hostcalls::call_foreign_function("expr_create", Some(expression.as_bytes())) {
                    Ok(Some(token)) if token.len() == 4 => {
                        self.expr = Some(([token[0], token[1], token[2], token[3]], log));
                    }
                    other => {
                        let message = format!("bench probe: expr_create failed: {other:?}");
                        let _ = hostcalls::log(LogLevel::Warn, &message);
                    }
                }
                return true;
            }
        }
        let calls = if config.trim_start().starts_with('{') {
            Vec::new()
        } else {
            config
                .split(',')
                .filter_map(|step| match step.trim() {
                    "metric" => Some(Call::Metric),
                    "time" => Some(Call::Time),
                    "header" => Some(Call::Header(":path")),
                    "xfcc" => Some(Call::Header("x-forwarded-client-cert")),
                    "pairs" => Some(Call::Pairs),
                    "connection.id" => Some(Call::Property(&["connection", "id"])),
                    "source.port" => Some(Call::Property(&["source", "port"])),
                    "connection.mtls" => Some(Call::Property(&["connection", "mtls"])),
                    _ => None,
                })
                .collect()
        };
        self.calls = Rc::new(calls);
        self.metric = hostcalls::define_metric(MetricType::Counter, "bench_probe_requests")
            .unwrap_or_default();
        true
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Request {
            calls: Rc::clone(&self.calls),
            metric: self.metric,
            expr: self.expr,
        }))
    }
}

struct Request {
    calls: Rc<Vec<Call>>,
    metric: u32,
    expr: Option<([u8; 4], bool)>,
}

impl Context for Request {}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        if let Some((token, log)) = self.expr {
            let result = hostcalls::call_foreign_function("expr_evaluate", Some(&token));
            if log {
                let text = match result {
                    Ok(Some(v)) => v.iter().map(|b| format!("{b:02x}")).collect::<String>(),
                    other => format!("{other:?}"),
                };
                let _ = hostcalls::log(LogLevel::Warn, &format!("bench probe: expr {text}"));
            }
        }
        for call in self.calls.iter() {
            match *call {
                Call::Metric => {
                    let _ = hostcalls::increment_metric(self.metric, 1);
                }
                Call::Time => {
                    let _ = hostcalls::get_current_time();
                }
                Call::Header(name) => {
                    let _ = hostcalls::get_map_value(MapType::HttpRequestHeaders, name);
                }
                Call::Pairs => {
                    let _ = hostcalls::get_map_bytes(MapType::HttpRequestHeaders);
                }
                Call::Property(path) => {
                    let _ = hostcalls::get_property(path.to_vec());
                }
            }
        }
        Action::Continue
    }
}
