//! The proxy-wasm glue: root, HTTP and stream contexts. Every host call goes
//! through `hostcalls` and handles its `Err`, because the `Context` helpers of
//! proxy-wasm 0.2.5 unwrap and a panic kills the VM.

use crate::config::{Config, PortRules, Protocol};
use crate::decide::{decide_with, Decision, Outcome, XfccAction};
use crate::facts::{connection_id, ConnectionFacts, Facts, Host};
use crate::metrics;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext, StreamContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::UNIX_EPOCH;

const XFCC: &str = "x-forwarded-client-cert";

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    // Replaces the SDK's hook (which unwraps inside the hook) with one that names us.
    std::panic::set_hook(Box::new(|info| {
        let _ = hostcalls::log(LogLevel::Critical, &format!("peerauth: panic: {info}"));
    }));
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

struct Envoy;

impl Host for Envoy {
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        hostcalls::get_property(path.to_vec()).ok().flatten()
    }
}

fn log(level: LogLevel, msg: &str) {
    let _ = hostcalls::log(level, msg);
}

fn now_unix() -> Option<i64> {
    let t = hostcalls::get_current_time().ok()?;
    i64::try_from(t.duration_since(UNIX_EPOCH).ok()?.as_secs()).ok()
}

/// Label values of one counter sample (all `&'static` except the port).
type DecisionKey = (
    Option<u32>,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    bool,
);
type ForgeryKey = (Option<u32>, &'static str, &'static str);

/// Slots of the connection cache. Envoy numbers connections with one counter per
/// process, so `id % SLOTS` spreads them evenly; a collision only evicts, and the
/// evicted connection's facts are read again on its next request.
const SLOTS: usize = 4096;

/// State shared by all contexts of this VM (one VM per worker thread): metric
/// ids, connection facts by `connection.id`, resolved modes by port.
#[derive(Default)]
struct Shared {
    decisions: Few<DecisionKey, u32>,
    forgeries: Few<ForgeryKey, u32>,
    connections: Vec<Option<(u64, Rc<Conn>)>>,
    modes: Few<Option<u32>, PortRules>,
}

/// A handful of entries found by scanning: the label combinations and ports one
/// VM sees are few, so a scan costs no more than hashing, and each hash map key
/// type would add its own copy of the hash table code to the module.
struct Few<K, V>(Vec<(K, V)>);

impl<K, V> Default for Few<K, V> {
    fn default() -> Self {
        Few(Vec::new())
    }
}

impl<K: PartialEq, V: Copy> Few<K, V> {
    fn get(&self, key: &K) -> Option<V> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    fn insert(&mut self, key: K, value: V) {
        self.0.push((key, value));
    }
}

/// One downstream connection: its facts, and the last decision taken on it
/// with the XFCC value it was taken for (a decision is a pure function of both
/// when no `Cert=` validity date is involved, so a repeat can be reused; shared,
/// so reusing it copies nothing).
struct Conn {
    facts: ConnectionFacts,
    last: RefCell<Option<(Option<String>, Rc<Decision>)>>,
}

impl Conn {
    fn new(facts: ConnectionFacts) -> Rc<Conn> {
        Rc::new(Conn {
            facts,
            last: RefCell::new(None),
        })
    }
}

fn counter(name: &str) -> Option<u32> {
    hostcalls::define_metric(MetricType::Counter, name).ok()
}

impl Shared {
    /// Connection facts, read once per connection: property reads dominate the
    /// filter's cost, and every request on a kept-alive or HTTP/2 connection
    /// would otherwise repeat them.
    fn connection(&mut self) -> Rc<Conn> {
        let Some(id) = connection_id(&Envoy) else {
            return Conn::new(ConnectionFacts::gather(&Envoy));
        };
        if self.connections.is_empty() {
            self.connections.resize_with(SLOTS, || None);
        }
        let Some(slot) = usize::try_from(id % SLOTS as u64)
            .ok()
            .and_then(|i| self.connections.get_mut(i))
        else {
            return Conn::new(ConnectionFacts::gather(&Envoy));
        };
        match slot {
            Some((seen, c)) if *seen == id => Rc::clone(c),
            _ => {
                let c = Conn::new(ConnectionFacts::gather(&Envoy));
                *slot = Some((id, Rc::clone(&c)));
                c
            }
        }
    }

    fn rules(&mut self, config: &Config, port: Option<u32>) -> PortRules {
        if let Some(rules) = self.modes.get(&port) {
            return rules;
        }
        let rules = config.port_rules(port);
        self.modes.insert(port, rules);
        rules
    }

    /// Count the decision; `true` when it also deserves a log line.
    fn record(&mut self, d: &Decision, tcp: bool) -> bool {
        let key = (
            d.port,
            d.mode.as_str(),
            d.security.label(),
            d.outcome.label(),
            d.reason.label(),
            tcp,
        );
        let id = match self.decisions.get(&key) {
            Some(id) => Some(id),
            None => counter(&metrics::decision_metric(d, tcp)).inspect(|id| {
                self.decisions.insert(key, *id);
            }),
        };
        if let Some(id) = id {
            let _ = hostcalls::increment_metric(id, 1);
        }
        if let Some(f) = &d.forgery {
            let key = (d.port, f.form_label(), f.handling.label());
            let id = match self.forgeries.get(&key) {
                Some(id) => Some(id),
                None => counter(&metrics::forgery_metric(d, f)).inspect(|id| {
                    self.forgeries.insert(key, *id);
                }),
            };
            if let Some(id) = id {
                let _ = hostcalls::increment_metric(id, 1);
            }
        }
        d.outcome != Outcome::Allowed || d.forgery.is_some()
    }
}

/// Decide for the current request or connection and record the decision.
fn judge(
    config: &Config,
    shared: &RefCell<Shared>,
    xfcc: Option<String>,
    tcp: bool,
) -> Rc<Decision> {
    let Ok(mut shared) = shared.try_borrow_mut() else {
        // Unreachable in a single-threaded VM; still a defined outcome.
        let facts = Facts::gather(&Envoy, xfcc, now_unix());
        return Rc::new(decide_with(
            config,
            &facts,
            config.port_rules(facts.destination_port),
        ));
    };
    let conn = if tcp {
        Conn::new(ConnectionFacts::gather(&Envoy))
    } else {
        shared.connection()
    };
    // The clock is only needed to check a `Cert=` element's validity dates.
    let has_cert = xfcc.as_deref().is_some_and(|h| h.contains("Cert="));
    let reused = match conn.last.try_borrow().ok().as_deref() {
        Some(Some((seen, d))) if !has_cert && *seen == xfcc => Some(Rc::clone(d)),
        _ => None,
    };
    let d = match reused {
        Some(d) => d,
        None => {
            let now = if has_cert { now_unix() } else { None };
            let facts = Facts::new(&conn.facts, xfcc, now);
            let rules = shared.rules(config, facts.destination_port);
            let d = Rc::new(decide_with(config, &facts, rules));
            if let Ok(mut last) = conn.last.try_borrow_mut() {
                *last = Some((facts.xfcc, Rc::clone(&d)));
            }
            d
        }
    };
    if shared.record(&d, tcp) {
        log(LogLevel::Warn, &d.log_line(&conn.facts));
    }
    d
}

#[derive(Default)]
struct Root {
    config: Option<Rc<Config>>,
    shared: Rc<RefCell<Shared>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let raw = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        match Config::parse(&raw) {
            Ok(c) => {
                log(
                    LogLevel::Info,
                    &format!(
                        "peerauth: configured protocol={:?} action={:?} xfcc={:?}",
                        c.protocol, c.action, c.xfcc
                    ),
                );
                for w in c.warnings() {
                    log(LogLevel::Warn, &format!("peerauth: pluginConfig: {w}"));
                }
                self.config = Some(Rc::new(c));
                // Memoised modes belong to the previous configuration.
                self.shared = Rc::new(RefCell::new(Shared::default()));
                true
            }
            Err(e) => {
                log(
                    LogLevel::Critical,
                    &format!("peerauth: invalid pluginConfig: {e}"),
                );
                self.config = None;
                false
            }
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        match self.config.as_deref().map(|c| c.protocol) {
            Some(Protocol::Tcp) => Some(ContextType::StreamContext),
            _ => Some(ContextType::HttpContext),
        }
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Request {
            config: self.config.clone(),
            shared: Rc::clone(&self.shared),
        }))
    }

    fn create_stream_context(&self, _id: u32) -> Option<Box<dyn StreamContext>> {
        Some(Box::new(Connection {
            config: self.config.clone(),
            shared: Rc::clone(&self.shared),
            decided: false,
        }))
    }
}

struct Request {
    config: Option<Rc<Config>>,
    shared: Rc<RefCell<Shared>>,
}

impl Context for Request {}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _n: usize, _eos: bool) -> Action {
        let Some(config) = self.config.as_deref() else {
            // No valid configuration: fail closed rather than guard nothing.
            let _ = hostcalls::send_http_response(
                503,
                vec![("content-type", "text/plain")],
                Some(b"peerauth: filter not configured\n"),
            );
            return Action::Pause;
        };
        let xfcc = hostcalls::get_map_value(MapType::HttpRequestHeaders, XFCC)
            .ok()
            .flatten();
        let d = judge(config, &self.shared, xfcc, false);
        if d.outcome == Outcome::Rejected {
            let body = format!("peerauth: rejected: {}\n", d.reason.label());
            let _ = hostcalls::send_http_response(
                403,
                vec![
                    ("content-type", "text/plain"),
                    ("x-peerauth-reason", d.reason.label()),
                ],
                Some(body.as_bytes()),
            );
            return Action::Pause;
        }
        match &d.xfcc_action {
            XfccAction::Keep => {}
            XfccAction::Strip => {
                let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, XFCC, None);
            }
            XfccAction::Replace(v) => {
                let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, XFCC, Some(v));
            }
        }
        Action::Continue
    }
}

struct Connection {
    config: Option<Rc<Config>>,
    shared: Rc<RefCell<Shared>>,
    decided: bool,
}

impl Context for Connection {}

impl StreamContext for Connection {
    // The handshake is not finished in `on_new_connection` (and reading TLS
    // attributes there caches wrong values), so the decision waits for data.
    fn on_downstream_data(&mut self, _size: usize, _eos: bool) -> Action {
        if self.decided {
            return Action::Continue;
        }
        self.decided = true;
        let Some(config) = self.config.as_deref() else {
            let _ = hostcalls::close_downstream();
            return Action::Pause;
        };
        let d = judge(config, &self.shared, None, true);
        if d.outcome == Outcome::Rejected {
            let _ = hostcalls::close_downstream();
            return Action::Pause;
        }
        Action::Continue
    }
}
