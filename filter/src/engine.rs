//! The filter's per-VM state and callbacks, behind the [`Proxy`] trait: the
//! connection cache, decision reuse, per-port rules, counter bookkeeping, the
//! XFCC rewrite and the TCP hold. `host.rs` only forwards Envoy's callbacks here
//! and implements [`Proxy`] with host calls, so all of this runs under plain
//! `cargo test`.

use crate::config::{Config, ConfigError, Protocol};
use crate::decide::{
    decide_with, is_xfcc_lookalike, Decision, Forgery, Handling, Outcome, Reason, XfccAction,
};
use crate::facts::{
    connection_id, destination_port, flag, source_address, ConnectionFacts, Facts, Host, PeerNames,
    Pod, Security,
};
use crate::metrics::{self, PortLabel, MAX_PORT_LABELS};
use policy::xfcc::{self, Key};
use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// The request header the filter checks.
pub const XFCC: &str = "x-forwarded-client-cert";

/// The host could not read a header it may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unreadable;

/// The XFCC value among all request headers (several, as one value joined
/// with `,` as Envoy joins them), and whether a lookalike name is among them;
/// only the XFCC value is copied out. A value that is not UTF-8 is read
/// lossily, as the single-header read does.
fn xfcc_and_lookalike(all: &[(&[u8], &[u8])]) -> (Option<String>, bool) {
    let mut xfcc: Option<String> = None;
    let mut lookalike = false;
    for (name, value) in all {
        if *name == XFCC.as_bytes() {
            let v = String::from_utf8_lossy(value);
            match xfcc.as_mut() {
                Some(x) => {
                    x.push(',');
                    x.push_str(&v);
                }
                None => xfcc = Some(v.into_owned()),
            }
        } else if is_xfcc_lookalike(name) {
            lookalike = true;
        }
    }
    (xfcc, lookalike)
}

/// What an XFCC header the host could not read is judged as: a value the
/// parser refuses (a control character), so it meets exactly the rules of a
/// header that does not parse (`xfcc_malformed`, or `xfcc_on_plaintext`):
/// rejected under `verify`, removed under `strip`. Never "absent", which would
/// let whatever Envoy still holds pass on unchecked.
const UNREADABLE_XFCC: &str = "\u{0}";

/// How often a TCP connection held for its handshake is looked at again.
pub const HANDSHAKE_POLL_MS: u64 = 10;

/// How often the root's timer refreshes [`metrics::VM_MEMORY`] while no TCP
/// connection is held: an entry into the VM every 10 s, none per request.
pub const GAUGE_PERIOD_MS: u64 = 10_000;

// A flush period the config accepts never slows the gauge's refresh.
const _: () = assert!(crate::config::MAX_COUNTER_FLUSH_MS <= GAUGE_PERIOD_MS);

/// Log levels the filter uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Critical,
}

/// What the callback tells Envoy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Continue,
    Pause,
}

/// The host services beyond attribute reads. Each call reports failure (`false`
/// or `None`) instead of panicking; the engine turns every failure into an
/// outcome on the closed side.
pub trait Proxy: Host {
    /// `Ok(None)` when the request has no such header; `Err` when the host
    /// failed to say (any status but not-found).
    fn request_header(&self, name: &str) -> Result<Option<String>, Unreadable>;
    /// Every request header in the ABI's pairs encoding ([`crate::facts::pairs`]),
    /// names lowercased as Envoy hands them over.
    fn request_headers(&self) -> Result<Vec<u8>, Unreadable>;
    /// Replace (`Some`) or remove (`None`) a request header.
    fn set_request_header(&self, name: &str, value: Option<&str>) -> bool;
    fn send_response(&self, status: u32, headers: &[(&str, &str)], body: &[u8]) -> bool;
    fn close_downstream(&self) -> bool;
    /// Make later host calls act on another context (a held connection).
    fn set_effective_context(&self, context_id: u32) -> bool;
    /// `0` stops the root context's timer.
    fn set_tick_period_ms(&self, ms: u64) -> bool;
    fn now_unix(&self) -> Option<i64>;
    fn define_counter(&self, name: &str) -> Option<u32>;
    fn increment_counter(&self, id: u32, by: u64);
    fn define_gauge(&self, name: &str) -> Option<u32>;
    fn set_gauge(&self, id: u32, value: u64);
    /// The size of the VM's linear memory, in bytes.
    fn vm_memory_bytes(&self) -> u64;
    fn log(&self, level: Level, message: &str);
}

/// Label values of one counter sample (all `&'static` except the port).
type DecisionKey = (
    PortLabel,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    bool,
);
type ForgeryKey = (PortLabel, &'static str, &'static str);

/// Slots of the connection cache. Envoy numbers connections with one counter per
/// process, so `id % SLOTS` spreads them evenly; a collision only evicts, and the
/// evicted connection's facts are read again on its next request. An HTTP filter
/// is never told that a connection closed, so this bound (with [`MAX_REUSED_XFCC`])
/// is what keeps the cache's memory bounded.
pub const SLOTS: usize = 1024;

/// Longest XFCC value whose decision is kept for reuse. Envoy's own element
/// without `Cert=` is a few hundred bytes; longer values are decided every time
/// rather than held in the cache.
pub const MAX_REUSED_XFCC: usize = 1024;

/// Decisions the XFCC fast path keeps. Under it the header is the whole of a
/// request's facts (with the port, when read), and every request from one
/// client workload carries the same value, so a few entries serve most
/// requests; parsing the header again costs more than the host call the fast
/// path saves (measured, BENCHMARKS.md). Bounded like the connection cache: at
/// most this many values of at most [`MAX_REUSED_XFCC`] bytes.
pub const HEADER_SLOTS: usize = 64;

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
    /// The certificate's subject and DNS SAN, read the first time a header on
    /// the connection claims one (most never do: Envoy writes `Subject=""`
    /// for an SVID, and no `DNS=` for a certificate without DNS SANs).
    names: RefCell<Option<PeerNames>>,
}

impl Conn {
    fn new(facts: ConnectionFacts) -> Rc<Conn> {
        Rc::new(Conn {
            facts,
            last: RefCell::new(None),
            names: RefCell::new(None),
        })
    }

    /// The peer's names, read once per connection (none without mTLS).
    fn names(&self, proxy: &dyn Proxy) -> Option<PeerNames> {
        if self.facts.security != Security::Mtls {
            return None;
        }
        let mut names = self.names.try_borrow_mut().ok()?;
        Some(
            names
                .get_or_insert_with(|| PeerNames::gather(proxy))
                .clone(),
        )
    }
}

/// Where a TCP connection stands. Each connection context keeps its own once it
/// is final, so a decided connection costs no lookup per read; the engine keeps
/// only held connections and those its timer decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tcp {
    /// Upstream bytes arrived during the TLS handshake and are held.
    Held,
    Allowed,
    Rejected,
}

#[derive(Default)]
struct State {
    decisions: Few<DecisionKey, u32>,
    forgeries: Few<ForgeryKey, u32>,
    connections: Vec<Option<(u64, Rc<Conn>)>>,
    /// The XFCC fast path's decisions by destination port and header value,
    /// oldest first, at most [`HEADER_SLOTS`].
    by_header: Vec<(Option<u32>, Option<String>, Rc<Decision>)>,
    tcp: Vec<(u32, Tcp)>,
    /// The timer runs at [`HANDSHAKE_POLL_MS`] (connections are held), not at
    /// the idle period.
    ticking: bool,
    /// Counts not yet added to Envoy's counters (`counterFlushMs`), by counter id.
    pending: Vec<(u32, u64)>,
    /// Ports the configuration does not name that have their own `port` label.
    labelled_ports: Vec<u32>,
}

/// One VM's filter: the configuration (`None` when it was refused, which fails
/// every request and connection closed) and the state shared by its contexts.
pub struct Engine {
    config: Option<Config>,
    state: RefCell<State>,
    /// [`metrics::VM_MEMORY`], when the host defined it.
    memory_gauge: Option<u32>,
    /// Counts wait in [`State::pending`] for the timer: `counterFlushMs` is set,
    /// the timer runs, and no newer configuration has replaced this engine.
    batch_counts: Cell<bool>,
}

impl Engine {
    /// Parse the pluginConfig and log the outcome, its warnings included.
    pub fn configure(proxy: &dyn Proxy, raw: &[u8]) -> Result<Engine, ConfigError> {
        let parsed = match Pod::from_node(proxy) {
            Ok(pod) => Config::parse_for(raw, pod.as_ref()),
            // Without the pod, policies would be resolved for the declared
            // workload, which may not be this pod: refused instead.
            Err(e) => match Config::parse(raw) {
                Ok(c) if !c.from_policies => Ok(c),
                // Policies without a `workload` need the pod: its error is
                // the one to fix.
                Ok(_) | Err(ConfigError::MissingWorkload) => Err(ConfigError::Pod(e)),
                Err(other) => Err(other),
            },
        };
        match parsed {
            Ok(c) => {
                proxy.log(
                    Level::Info,
                    &format!(
                        "peerauth: configured protocol={} action={} xfcc={} counterFlushMs={}",
                        c.protocol.label(),
                        c.action.label(),
                        c.xfcc.label(),
                        c.counter_flush_ms
                    ),
                );
                for w in c.warnings() {
                    proxy.log(Level::Warn, &format!("peerauth: pluginConfig: {w}"));
                }
                let flush_ms = c.counter_flush_ms;
                let engine = Engine {
                    config: Some(c),
                    state: RefCell::default(),
                    memory_gauge: proxy.define_gauge(metrics::VM_MEMORY),
                    batch_counts: Cell::new(false),
                };
                engine.refresh_gauge(proxy);
                // A failed timer leaves the gauge at its configure-time value,
                // and counts are then added at once: none may wait for a flush
                // that never comes.
                let timer = proxy.set_tick_period_ms(engine.idle_period_ms());
                engine.batch_counts.set(flush_ms > 0 && timer);
                if flush_ms > 0 && !timer {
                    proxy.log(
                        Level::Warn,
                        "peerauth: no timer: counterFlushMs ignored, counters are incremented at once",
                    );
                }
                Ok(engine)
            }
            Err(e) => {
                proxy.log(
                    Level::Critical,
                    &format!("peerauth: invalid pluginConfig: {e}"),
                );
                Err(e)
            }
        }
    }

    /// An engine without configuration: it rejects everything.
    pub fn unconfigured() -> Engine {
        Engine {
            config: None,
            state: RefCell::default(),
            memory_gauge: None,
            batch_counts: Cell::new(false),
        }
    }

    pub fn protocol(&self) -> Option<Protocol> {
        self.config.as_ref().map(|c| c.protocol)
    }

    /// An HTTP request's headers: decide, record, and reject or rewrite XFCC.
    pub fn on_request_headers(&self, proxy: &dyn Proxy) -> Verdict {
        let Some(config) = self.config.as_ref() else {
            // No valid configuration: fail closed rather than guard nothing.
            if !proxy.send_response(
                503,
                &[("content-type", "text/plain")],
                b"peerauth: filter not configured\n",
            ) {
                proxy.log(Level::Warn, "peerauth: could not send the 503 reply");
            }
            return Verdict::Pause;
        };
        let (xfcc, lookalike) = if config.xfcc_lookalikes {
            let bytes = proxy.request_headers();
            match bytes.as_deref().ok().and_then(crate::facts::pairs) {
                Some(all) => xfcc_and_lookalike(&all),
                // Unknown is a lookalike too: under `strip` an unreadable
                // XFCC is only removed, which would pass a lookalike on.
                None => (Some(UNREADABLE_XFCC.to_string()), true),
            }
        } else {
            let xfcc = proxy
                .request_header(XFCC)
                .unwrap_or_else(|Unreadable| Some(UNREADABLE_XFCC.to_string()));
            (xfcc, false)
        };
        let Ok(mut state) = self.state.try_borrow_mut() else {
            // Unreachable in a single-threaded VM; still a defined outcome.
            return reject(proxy, 503, "busy");
        };
        let d = if config.xfcc_from_envoy {
            state.decide_from_header(config, proxy, xfcc)
        } else {
            let conn = state.connection(proxy);
            state.decide(config, proxy, &conn, xfcc)
        };
        let d = if lookalike {
            Rc::new(Decision::clone(&d).with_lookalike(config))
        } else {
            d
        };
        let applied = match &d.xfcc_action {
            XfccAction::Keep => true,
            XfccAction::Strip => proxy.set_request_header(XFCC, None),
            XfccAction::Replace(v) => proxy.set_request_header(XFCC, Some(v)),
        };
        let d = if applied { d } else { rewrite_failed(&d) };
        if state.record(config, proxy, &d, false, self.batch_counts.get()) {
            proxy.log(Level::Warn, &d.log_line(source_address(proxy).as_deref()));
        }
        if d.outcome == Outcome::Rejected {
            return reject(proxy, 403, d.reason.label());
        }
        Verdict::Continue
    }

    /// Bytes from the upstream on their way to the client. Until the connection
    /// is decided they are held (left in tcp_proxy's buffer, to go out with the
    /// next upstream read after an `allowed`), so no upstream byte reaches an
    /// unchecked client. The connection is decided here when its facts are
    /// final: it proved a client certificate (`connection.mtls`), or it has no
    /// TLS at all (no local certificate). A TLS connection mid-handshake waits
    /// for the timer or its first data. `known` is the connection's own record.
    pub fn on_upstream_data(
        &self,
        proxy: &dyn Proxy,
        context_id: u32,
        known: &mut Option<Tcp>,
    ) -> Verdict {
        match self.settled(context_id, known) {
            Some(Tcp::Allowed) => return Verdict::Continue,
            Some(Tcp::Rejected) => return Verdict::Pause,
            Some(Tcp::Held) | None => {}
        }
        if self.config.is_none() || flag(proxy, &["connection", "mtls"]) || !has_tls(proxy) {
            return self.decide_here(proxy, context_id, known);
        }
        if let Ok(mut state) = self.state.try_borrow_mut() {
            if !state.tcp.iter().any(|(id, _)| *id == context_id) {
                state.tcp.push((context_id, Tcp::Held));
            }
            if !state.ticking {
                state.ticking = proxy.set_tick_period_ms(HANDSHAKE_POLL_MS);
            }
        }
        *known = Some(Tcp::Held);
        Verdict::Pause
    }

    /// Data from the client. Over TLS it only arrives after the handshake, and a
    /// plaintext client has sent bytes before the filter chain even exists (the
    /// TLS inspector needs them), so the connection's facts are final here.
    pub fn on_downstream_data(
        &self,
        proxy: &dyn Proxy,
        context_id: u32,
        known: &mut Option<Tcp>,
    ) -> Verdict {
        match self.settled(context_id, known) {
            Some(Tcp::Allowed) => Verdict::Continue,
            Some(Tcp::Rejected) => Verdict::Pause,
            Some(Tcp::Held) | None => self.decide_here(proxy, context_id, known),
        }
    }

    /// The connection's state: its own record, or (when it was held) what the
    /// engine holds for it, which is then moved into its own record once final.
    fn settled(&self, context_id: u32, known: &mut Option<Tcp>) -> Option<Tcp> {
        if matches!(known, Some(Tcp::Allowed | Tcp::Rejected)) || known.is_none() {
            return *known;
        }
        let mut state = self.state.try_borrow_mut().ok()?;
        let at = state.tcp.iter().position(|(id, _)| *id == context_id)?;
        let (_, t) = state.tcp.get(at).copied()?;
        if t != Tcp::Held {
            state.tcp.swap_remove(at);
            *known = Some(t);
        }
        Some(t)
    }

    /// Decide from the connection's own callback and keep the result there.
    fn decide_here(&self, proxy: &dyn Proxy, context_id: u32, known: &mut Option<Tcp>) -> Verdict {
        let t = self.decide_tcp(proxy);
        if let Ok(mut state) = self.state.try_borrow_mut() {
            state.tcp.retain(|(id, _)| *id != context_id);
        }
        *known = Some(t);
        if t == Tcp::Allowed {
            Verdict::Continue
        } else {
            Verdict::Pause
        }
    }

    /// The root's timer: decide every held connection whose handshake has
    /// proved a client certificate (`connection.mtls`, which unlike
    /// `connection.tls_version` is safe to read before the handshake ends).
    /// A held connection that never shows one is decided by its first data.
    /// The timer of root `root_id` fired, and this engine is the only one.
    pub fn on_tick(&self, proxy: &dyn Proxy, root_id: u32) {
        Engine::on_root_tick(proxy, root_id, &[self]);
    }

    /// The timer of root `root_id` fired. `engines` are the root's own first,
    /// then every other engine a TCP connection still uses: a connection keeps
    /// the engine it was opened with, so after a newer configuration the one
    /// holding it is no longer its root's, and it must still be decided when
    /// its handshake ends (a server-first app's client never sends first).
    /// Once no engine holds a connection the root's timer goes back to the
    /// idle period, on every tick, so a root some engine sped up slows down
    /// again at its own next tick whichever engine that was.
    pub fn on_root_tick(proxy: &dyn Proxy, root_id: u32, engines: &[&Engine]) {
        if let Some(own) = engines.first() {
            own.refresh_gauge(proxy);
        }
        let mut moved = false;
        let mut holding = false;
        for e in engines {
            moved |= e.decide_held(proxy);
            holding |= e.holds_any();
        }
        // Envoy sets the period of the effective context's root: after acting
        // on held connections (perhaps of another root) the timer's own root
        // must be effective again.
        if !holding && (!moved || proxy.set_effective_context(root_id)) {
            let idle = engines
                .first()
                .map_or(GAUGE_PERIOD_MS, |e| e.idle_period_ms());
            if proxy.set_tick_period_ms(idle) {
                for e in engines {
                    if let Ok(mut state) = e.state.try_borrow_mut() {
                        state.ticking = false;
                    }
                }
            }
        }
        // Last, so the connections decided in this tick are counted now.
        for e in engines {
            e.flush_counts(proxy);
        }
    }

    /// Decide the held connections whose handshake has ended; `true` when the
    /// effective context was moved to one of them.
    fn decide_held(&self, proxy: &dyn Proxy) -> bool {
        let held: Vec<u32> = match self.state.try_borrow() {
            Ok(s) => s
                .tcp
                .iter()
                .filter(|(_, t)| *t == Tcp::Held)
                .map(|(id, _)| *id)
                .collect(),
            Err(_) => return false,
        };
        for id in &held {
            if !proxy.set_effective_context(*id) || !flag(proxy, &["connection", "mtls"]) {
                continue;
            }
            // An allowed connection's held bytes go out with its next upstream
            // read; a rejected one is closed now rather than at its first data.
            let t = self.decide_tcp(proxy);
            if let Ok(mut state) = self.state.try_borrow_mut() {
                if let Some(entry) = state.tcp.iter_mut().find(|(c, _)| c == id) {
                    entry.1 = t;
                }
            }
        }
        !held.is_empty()
    }

    /// Whether a connection is still held (or the state cannot be read, which
    /// keeps the timer fast rather than slowing it with a hold pending).
    fn holds_any(&self) -> bool {
        self.state
            .try_borrow()
            .map_or(true, |s| s.tcp.iter().any(|(_, t)| *t == Tcp::Held))
    }

    /// Add the counts waiting in the VM to Envoy's counters.
    fn flush_counts(&self, proxy: &dyn Proxy) {
        if let Ok(mut state) = self.state.try_borrow_mut() {
            for (id, n) in state.pending.drain(..) {
                proxy.increment_counter(id, n);
            }
        }
    }

    /// A newer configuration replaced this engine, whose root's timer now
    /// serves the new one: add what waits, and count at once from now on (a
    /// TCP connection may still decide with this engine).
    pub fn hand_over_counts(&self, proxy: &dyn Proxy) {
        self.batch_counts.set(false);
        self.flush_counts(proxy);
    }

    /// The timer's period while no TCP connection is held: `counterFlushMs`
    /// when set, else the gauge's.
    fn idle_period_ms(&self) -> u64 {
        match self.config.as_ref().map(|c| c.counter_flush_ms) {
            Some(ms) if ms > 0 => ms,
            _ => GAUGE_PERIOD_MS,
        }
    }

    /// Set [`metrics::VM_MEMORY`] to the VM's linear memory now.
    fn refresh_gauge(&self, proxy: &dyn Proxy) {
        if let Some(id) = self.memory_gauge {
            proxy.set_gauge(id, proxy.vm_memory_bytes());
        }
    }

    /// A TCP connection closed: forget it.
    pub fn on_connection_closed(&self, context_id: u32) {
        if let Ok(mut state) = self.state.try_borrow_mut() {
            state.tcp.retain(|(id, _)| *id != context_id);
        }
    }

    #[cfg(test)]
    fn header_cache_len(&self) -> usize {
        self.state.borrow().by_header.len()
    }

    #[cfg(test)]
    fn held_count(&self) -> usize {
        self.state.borrow().tcp.len()
    }

    /// Decide a TCP connection (once), record it, and close it when rejected.
    fn decide_tcp(&self, proxy: &dyn Proxy) -> Tcp {
        let Some(config) = self.config.as_ref() else {
            let _ = proxy.close_downstream();
            return Tcp::Rejected;
        };
        let Ok(mut state) = self.state.try_borrow_mut() else {
            let _ = proxy.close_downstream();
            return Tcp::Rejected;
        };
        let conn = Conn::new(ConnectionFacts::gather(proxy));
        let d = state.decide(config, proxy, &conn, None);
        if state.record(config, proxy, &d, true, self.batch_counts.get()) {
            proxy.log(Level::Warn, &d.log_line(source_address(proxy).as_deref()));
        }
        if d.outcome == Outcome::Rejected {
            let _ = proxy.close_downstream();
            Tcp::Rejected
        } else {
            Tcp::Allowed
        }
    }
}

/// Whether the connection has TLS: its local certificate is known as soon as
/// the filter chain exists (measured on Envoy 1.40), and reading it has no side
/// effect, unlike `connection.tls_version` before the handshake ends.
fn has_tls(proxy: &dyn Proxy) -> bool {
    [
        "uri_san_local_certificate",
        "subject_local_certificate",
        "dns_san_local_certificate",
    ]
    .iter()
    .any(|p| {
        proxy
            .property(&["connection", p])
            .is_some_and(|v| !v.is_empty())
    })
}

/// Answer the request with `status` and `reason` instead of forwarding it.
fn reject(proxy: &dyn Proxy, status: u32, reason: &str) -> Verdict {
    let body = format!("peerauth: rejected: {reason}\n");
    if !proxy.send_response(
        status,
        &[
            ("content-type", "text/plain"),
            ("x-peerauth-reason", reason),
        ],
        body.as_bytes(),
    ) {
        // The request stays paused: it never reaches the app.
        proxy.log(Level::Warn, "peerauth: could not send the rejection reply");
    }
    Verdict::Pause
}

/// The host refused to strip or replace XFCC: the untrusted header would pass
/// on, so the request is rejected instead.
fn rewrite_failed(d: &Decision) -> Rc<Decision> {
    let mut d = d.clone();
    d.outcome = Outcome::Rejected;
    d.reason = Reason::XfccRewriteFailed;
    d.xfcc_action = XfccAction::Keep;
    if let Some(f) = d.forgery.as_mut() {
        f.handling = Handling::Rejected;
    }
    Rc::new(d)
}

impl State {
    /// Connection facts, read once per connection: property reads dominate the
    /// filter's cost, and every request on a kept-alive or HTTP/2 connection
    /// would otherwise repeat them.
    fn connection(&mut self, proxy: &dyn Proxy) -> Rc<Conn> {
        let Some(id) = connection_id(proxy) else {
            return Conn::new(ConnectionFacts::gather(proxy));
        };
        if self.connections.is_empty() {
            self.connections.resize_with(SLOTS, || None);
        }
        let Some(slot) = usize::try_from(id % SLOTS as u64)
            .ok()
            .and_then(|i| self.connections.get_mut(i))
        else {
            return Conn::new(ConnectionFacts::gather(proxy));
        };
        match slot {
            Some((seen, c)) if *seen == id => Rc::clone(c),
            _ => {
                let c = Conn::new(ConnectionFacts::gather(proxy));
                *slot = Some((id, Rc::clone(&c)));
                c
            }
        }
    }

    /// The fast path's decision: the header is the peer's proof, so there is no
    /// connection lookup, and the port is read only when the configuration's
    /// rules differ by port. A value seen before (without `Cert=`) reuses its
    /// decision.
    fn decide_from_header(
        &mut self,
        config: &Config,
        proxy: &dyn Proxy,
        xfcc: Option<String>,
    ) -> Rc<Decision> {
        let port = if config.port_modes.is_empty() {
            None
        } else {
            destination_port(proxy)
        };
        // Only values without `Cert=` are kept, so a value found here needs no
        // scan for one (the scan costs more than the lookup: measured, BENCHMARKS.md).
        let seen = self
            .by_header
            .iter()
            .find(|(p, h, _)| *p == port && *h == xfcc)
            .map(|(_, _, d)| Rc::clone(d));
        if let Some(d) = seen {
            return d;
        }
        let Some((facts, names)) = ConnectionFacts::from_envoy_xfcc(xfcc.as_deref(), port) else {
            // Several elements, none that parses, or one not in Envoy's exact
            // SVID shape: which one Envoy wrote is not in the header alone (a
            // peer certificate's SAN with `,` or `;` splits or pads Envoy's own
            // element), so the connection decides, as on the default path.
            let conn = self.connection(proxy);
            return self.decide(config, proxy, &conn, xfcc);
        };
        let conn = Conn::new(facts);
        // The header's one element is Envoy's, so its names are the
        // certificate's: nothing to read.
        if let Ok(mut n) = conn.names.try_borrow_mut() {
            *n = names;
        }
        let d = self.decide(config, proxy, &conn, xfcc);
        // `decide` kept the value with its decision unless it is too long to
        // keep or carries `Cert=`.
        let kept = conn.last.try_borrow_mut().ok().and_then(|mut l| l.take());
        if let Some((value, _)) = kept {
            if self.by_header.len() >= HEADER_SLOTS {
                self.by_header.remove(0);
            }
            self.by_header.push((port, value, Rc::clone(&d)));
        }
        d
    }

    /// The decision for `xfcc` on `conn`: the connection's last one when the
    /// header is the same and carries no `Cert=` (whose validity depends on
    /// the time), else a new one. Only a decision for a value without `Cert=`
    /// is kept, so an equal value needs no scan for one.
    fn decide(
        &mut self,
        config: &Config,
        proxy: &dyn Proxy,
        conn: &Conn,
        xfcc: Option<String>,
    ) -> Rc<Decision> {
        let reused = match conn.last.try_borrow().ok().as_deref() {
            Some(Some((seen, d))) if *seen == xfcc => Some(Rc::clone(d)),
            _ => None,
        };
        if let Some(d) = reused {
            return d;
        }
        // The same case rule as the parser, so no `Cert=` it reads goes unchecked.
        let has_cert = xfcc
            .as_deref()
            .is_some_and(|h| xfcc::may_contain(h, Key::Cert));
        let now = if has_cert { proxy.now_unix() } else { None };
        let claims_names = xfcc.as_deref().is_some_and(|h| {
            xfcc::may_contain_value(h, Key::Subject) || xfcc::may_contain(h, Key::Dns)
        });
        let mut facts = Facts::new(&conn.facts, xfcc, now);
        if claims_names {
            facts.peer_names = conn.names(proxy);
        }
        let rules = config.port_rules(facts.destination_port);
        let d = Rc::new(decide_with(config, &facts, rules));
        let keep = !has_cert
            && facts
                .xfcc
                .as_ref()
                .is_none_or(|x| x.len() <= MAX_REUSED_XFCC);
        if let Ok(mut last) = conn.last.try_borrow_mut() {
            *last = keep.then(|| (facts.xfcc, Rc::clone(&d)));
        }
        d
    }

    /// Add one to a counter: at once, or (`batch`) in the VM until the timer.
    fn count(&mut self, proxy: &dyn Proxy, id: u32, batch: bool) {
        if !batch {
            proxy.increment_counter(id, 1);
        } else if let Some((_, n)) = self.pending.iter_mut().find(|(c, _)| *c == id) {
            *n += 1;
        } else {
            self.pending.push((id, 1));
        }
    }

    /// The `port` label for `port`: its number if the configuration names it
    /// or while few other ports have been seen, else `other`.
    fn port_label(&mut self, config: &Config, port: Option<u32>) -> PortLabel {
        let Some(p) = port else {
            return PortLabel::Unknown;
        };
        if config.port_modes.iter().any(|(q, _)| *q == p) || self.labelled_ports.contains(&p) {
            return PortLabel::Port(p);
        }
        if self.labelled_ports.len() < MAX_PORT_LABELS {
            self.labelled_ports.push(p);
            return PortLabel::Port(p);
        }
        PortLabel::Other
    }

    /// Count the decision; `true` when it also deserves a log line.
    fn record(
        &mut self,
        config: &Config,
        proxy: &dyn Proxy,
        d: &Decision,
        tcp: bool,
        batch: bool,
    ) -> bool {
        let port = self.port_label(config, d.port);
        let key = (
            port,
            d.mode.as_str(),
            d.security.label(),
            d.outcome.label(),
            d.reason.label(),
            tcp,
        );
        let id = match self.decisions.get(&key) {
            Some(id) => Some(id),
            None => proxy
                .define_counter(&metrics::decision_metric(d, port, tcp))
                .inspect(|id| self.decisions.insert(key, *id)),
        };
        if let Some(id) = id {
            self.count(proxy, id, batch);
        }
        let lookalike = d.lookalike.map(|handling| Forgery {
            form: Reason::XfccLookalike,
            handling,
        });
        for f in d.forgery.iter().chain(lookalike.iter()) {
            let key = (port, f.form_label(), f.handling.label());
            let id = match self.forgeries.get(&key) {
                Some(id) => Some(id),
                None => proxy
                    .define_counter(&metrics::forgery_metric(f, port))
                    .inspect(|id| self.forgeries.insert(key, *id)),
            };
            if let Some(id) = id {
                self.count(proxy, id, batch);
            }
        }
        d.outcome != Outcome::Allowed || d.forgery.is_some() || d.lookalike.is_some()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::facts::fake::encode_pairs;
    use crate::facts::{PodError, Refused};
    use std::cell::Cell;
    use std::collections::BTreeMap;

    const FOO: &str = "spiffe://cluster.local/ns/foo/sa/sleep";
    const BAR: &str = "spiffe://cluster.local/ns/bar/sa/sleep";
    const HASH: &str = "434b0000000000000000000000000000000000000000000000000000000000ff";
    /// The root context whose timer fires in the tests.
    const ROOT: u32 = 100;

    /// A host that answers from maps and records every effect, per context.
    #[derive(Default)]
    struct FakeProxy {
        /// Attributes by context id (0 = the current stream).
        props: RefCell<BTreeMap<u32, BTreeMap<String, Vec<u8>>>>,
        effective: Cell<u32>,
        reads: RefCell<Vec<String>>,
        headers: RefCell<BTreeMap<String, String>>,
        refuse_header_writes: bool,
        /// Reading a request header fails with a status other than not-found.
        unreadable_headers: bool,
        /// Attributes the host has but refuses to hand over.
        refused: Vec<&'static str>,
        /// `proxy_set_tick_period_milliseconds` fails, as on a host without timers.
        no_timer: bool,
        responses: RefCell<Vec<(u32, String)>>,
        closed: RefCell<Vec<u32>>,
        tick_ms: Cell<u64>,
        /// The effective context when the period was last set.
        tick_context: Cell<u32>,
        now: Option<i64>,
        defined: RefCell<Vec<String>>,
        counts: RefCell<BTreeMap<u32, u64>>,
        logs: RefCell<Vec<String>>,
    }

    impl FakeProxy {
        fn set(&self, context: u32, path: &str, value: &[u8]) {
            self.props
                .borrow_mut()
                .entry(context)
                .or_default()
                .insert(path.into(), value.to_vec());
        }

        /// An mTLS request from `peer` on connection 7 carrying `xfcc`.
        fn mtls_request(peer: &str, xfcc: &str) -> FakeProxy {
            let proxy = FakeProxy::default();
            proxy.mtls(0, peer, 7);
            proxy.headers.borrow_mut().insert(XFCC.into(), xfcc.into());
            proxy
        }

        fn mtls(&self, context: u32, peer: &str, connection_id: u64) {
            self.set(context, "connection.mtls", &[1]);
            self.set(context, "connection.tls_version", b"TLSv1.3");
            self.set(
                context,
                "connection.uri_san_peer_certificate",
                peer.as_bytes(),
            );
            self.set(
                context,
                "connection.sha256_peer_certificate_digest",
                HASH.as_bytes(),
            );
            self.set(context, "destination.port", &8080u64.to_le_bytes());
            self.set(context, "connection.id", &connection_id.to_le_bytes());
        }

        fn plaintext(&self, context: u32) {
            self.set(context, "connection.mtls", &[0]);
            self.set(context, "destination.port", &8080u64.to_le_bytes());
        }

        /// A TCP connection whose TLS handshake has not finished: the local
        /// certificate is there, `connection.mtls` does not say yes yet.
        fn mid_handshake(&self, context: u32) {
            self.set(context, "connection.mtls", &[0]);
            self.set(
                context,
                "connection.uri_san_local_certificate",
                b"spiffe://cluster.local/ns/foo/sa/httpbin",
            );
        }

        fn count(&self, needle: &str) -> u64 {
            let defined = self.defined.borrow();
            let counts = self.counts.borrow();
            defined
                .iter()
                .enumerate()
                .filter(|(_, n)| n.contains(needle))
                .map(|(i, _)| counts.get(&(i as u32)).copied().unwrap_or(0))
                .sum()
        }
    }

    impl Host for FakeProxy {
        fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
            self.reads.borrow_mut().push(path.join("."));
            if self.refused.contains(&path.join(".").as_str()) {
                return None;
            }
            self.props
                .borrow()
                .get(&self.effective.get())?
                .get(&path.join("."))
                .cloned()
        }

        fn attribute(&self, path: &[&str]) -> Result<Option<Vec<u8>>, Refused> {
            if self.refused.contains(&path.join(".").as_str()) {
                return Err(Refused);
            }
            Ok(self.property(path))
        }
    }

    impl Proxy for FakeProxy {
        fn request_header(&self, name: &str) -> Result<Option<String>, Unreadable> {
            if self.unreadable_headers {
                return Err(Unreadable);
            }
            Ok(self.headers.borrow().get(name).cloned())
        }
        fn request_headers(&self) -> Result<Vec<u8>, Unreadable> {
            if self.unreadable_headers {
                return Err(Unreadable);
            }
            let h = self.headers.borrow();
            Ok(encode_pairs(
                h.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())),
            ))
        }
        fn set_request_header(&self, name: &str, value: Option<&str>) -> bool {
            if self.refuse_header_writes {
                return false;
            }
            let mut h = self.headers.borrow_mut();
            match value {
                Some(v) => h.insert(name.into(), v.into()),
                None => h.remove(name),
            };
            true
        }
        fn send_response(&self, status: u32, headers: &[(&str, &str)], _body: &[u8]) -> bool {
            let reason = headers
                .iter()
                .find(|(k, _)| *k == "x-peerauth-reason")
                .map_or("", |(_, v)| v);
            self.responses.borrow_mut().push((status, reason.into()));
            true
        }
        fn close_downstream(&self) -> bool {
            self.closed.borrow_mut().push(self.effective.get());
            true
        }
        fn set_effective_context(&self, context_id: u32) -> bool {
            self.effective.set(context_id);
            true
        }
        fn set_tick_period_ms(&self, ms: u64) -> bool {
            if self.no_timer {
                return false;
            }
            self.tick_ms.set(ms);
            self.tick_context.set(self.effective.get());
            true
        }
        fn now_unix(&self) -> Option<i64> {
            self.now
        }
        fn define_counter(&self, name: &str) -> Option<u32> {
            let mut d = self.defined.borrow_mut();
            d.push(name.into());
            Some(d.len() as u32 - 1)
        }
        fn increment_counter(&self, id: u32, by: u64) {
            *self.counts.borrow_mut().entry(id).or_default() += by;
        }
        fn define_gauge(&self, name: &str) -> Option<u32> {
            self.define_counter(name)
        }
        fn set_gauge(&self, id: u32, value: u64) {
            self.counts.borrow_mut().insert(id, value);
        }
        fn vm_memory_bytes(&self) -> u64 {
            17 * 65536
        }
        fn log(&self, _level: Level, message: &str) {
            self.logs.borrow_mut().push(message.into());
        }
    }

    fn engine(proxy: &FakeProxy, json: &str) -> Engine {
        Engine::configure(proxy, json.as_bytes()).unwrap()
    }

    fn element(peer: &str) -> String {
        format!("By=spiffe://cluster.local/ns/foo/sa/httpbin;Hash={HASH};Subject=\"\";URI={peer}")
    }

    /// `x_forwarded_client_cert` is no header Envoy's XFCC handling touches,
    /// and a CGI-style server reads it as XFCC: with `xfccLookalikes: check`
    /// it is rejected under `verify` and `strip` (`would_reject` in audit),
    /// counted under `ignore`; without the field it is not looked for.
    #[test]
    fn with_xfcc_lookalikes_checked_an_underscore_spelling_is_rejected_and_counted() {
        const ADMIN: &str = "URI=spiffe://cluster.local/ns/admin/sa/admin";
        for (extra, want, outcome, handling) in [
            (
                r#""xfccLookalikes":"check""#,
                Verdict::Pause,
                "rejected",
                "rejected",
            ),
            (
                r#""xfccLookalikes":"check","xfcc":"strip""#,
                Verdict::Pause,
                "rejected",
                "rejected",
            ),
            (
                r#""xfccLookalikes":"check","action":"audit""#,
                Verdict::Continue,
                "would_reject",
                "would_reject",
            ),
            (
                r#""xfccLookalikes":"check","xfcc":"ignore""#,
                Verdict::Continue,
                "allowed",
                "ignored",
            ),
        ] {
            let proxy = FakeProxy::mtls_request(FOO, &element(FOO));
            proxy
                .headers
                .borrow_mut()
                .insert("x_forwarded_client_cert".into(), ADMIN.into());
            let e = engine(&proxy, &format!("{{{extra}}}"));
            assert_eq!(e.on_request_headers(&proxy), want, "{extra}");
            assert_eq!(
                proxy.count(&format!("form=.=lookalike;.;handling=.={handling}")),
                1,
                "{extra}"
            );
            assert_eq!(proxy.count(&format!("outcome=.={outcome}")), 1, "{extra}");
            if want == Verdict::Pause {
                let r = proxy.responses.borrow();
                assert_eq!(r[0], (403, "xfcc_lookalike".into()));
            }
        }
        // Beside another forgery each is counted: before, one hid the other
        // (audit counted only `smuggled`; under `strip` the lookalike's
        // rejection took the smuggled element's count).
        let smuggled = format!(
            "Hash={HASH};URI=spiffe://cluster.local/ns/x/sa/y,{}",
            element(FOO)
        );
        for (extra, handling) in [
            (
                r#""xfccLookalikes":"check","action":"audit""#,
                "would_reject",
            ),
            (r#""xfccLookalikes":"check","xfcc":"strip""#, "rejected"),
        ] {
            let proxy = FakeProxy::mtls_request(FOO, &smuggled);
            proxy
                .headers
                .borrow_mut()
                .insert("x_forwarded_client_cert".into(), ADMIN.into());
            let e = engine(&proxy, &format!("{{{extra}}}"));
            e.on_request_headers(&proxy);
            for form in ["smuggled", "lookalike"] {
                assert_eq!(
                    proxy.count(&format!("form=.={form};.;handling=.={handling}")),
                    1,
                    "{extra}: {form}"
                );
            }
        }
        // Headers that cannot be read may hide one: rejected under `strip`
        // too (an unreadable XFCC alone would only be removed there).
        let proxy = FakeProxy {
            unreadable_headers: true,
            ..FakeProxy::default()
        };
        proxy.mtls(0, FOO, 7);
        let e = engine(&proxy, r#"{"xfccLookalikes":"check","xfcc":"strip"}"#);
        assert_eq!(e.on_request_headers(&proxy), Verdict::Pause);
        assert_eq!(proxy.responses.borrow()[0].0, 403);
        // Not asked for: the header alone is read, and the request passes.
        let proxy = FakeProxy::mtls_request(FOO, &element(FOO));
        proxy
            .headers
            .borrow_mut()
            .insert("x-forwarded_client-cert".into(), ADMIN.into());
        let e = engine(&proxy, "{}");
        assert_eq!(e.on_request_headers(&proxy), Verdict::Continue);
        assert_eq!(proxy.count("lookalike"), 0);
        // Spellings: `_` for any `-`, and only those.
        assert!(is_xfcc_lookalike(b"x_forwarded_client_cert"));
        assert!(is_xfcc_lookalike(b"x-forwarded_client-cert"));
        assert!(!is_xfcc_lookalike(b"x-forwarded-client-cert"));
        assert!(!is_xfcc_lookalike(b"x-forwarded-client-certs"));
        assert!(!is_xfcc_lookalike(b"x.forwarded.client.cert"));
    }

    #[test]
    fn a_connection_is_read_once_and_each_changed_xfcc_on_it_is_decided_again() {
        let proxy = FakeProxy::default();
        proxy.mtls(0, FOO, 7);
        let e = engine(&proxy, r#"{"mtls":{"mode":"STRICT"}}"#);
        let clean = element(FOO);
        let smuggled = format!("Hash={HASH};URI=spiffe://cluster.local/ns/x/sa/y,{clean}");
        for (i, (xfcc, want)) in [
            (&clean, Verdict::Continue),
            (&smuggled, Verdict::Pause),
            (&clean, Verdict::Continue),
            (&smuggled, Verdict::Pause),
            (&clean, Verdict::Continue),
        ]
        .into_iter()
        .enumerate()
        {
            proxy.headers.borrow_mut().insert(XFCC.into(), xfcc.clone());
            proxy.reads.borrow_mut().clear();
            assert_eq!(e.on_request_headers(&proxy), want, "request {i}");
            let reads = proxy.reads.borrow().clone();
            // After the first request only `connection.id` (to find the cached
            // connection), and `source.address` for a rejection's log line.
            let mut expected = vec!["connection.id"];
            if i == 0 {
                expected.extend([
                    "connection.mtls",
                    "connection.uri_san_peer_certificate",
                    "connection.sha256_peer_certificate_digest",
                    "destination.port",
                ]);
            }
            if want == Verdict::Pause {
                expected.push("source.address");
            }
            assert_eq!(reads, expected, "request {i}");
        }
        assert_eq!(proxy.count("outcome=.=allowed;.;reason=.=ok"), 3);
        assert_eq!(proxy.count("reason=.=xfcc_smuggled"), 2);
        assert_eq!(proxy.count("form=.=smuggled;.;handling=.=rejected"), 2);
        // One counter per label set, defined once however often it counts
        // (and the memory gauge, defined at configure time).
        assert_eq!(
            proxy.defined.borrow().len(),
            4,
            "{:?}",
            proxy.defined.borrow()
        );
        assert_eq!(
            proxy.responses.borrow().as_slice(),
            [(403, "xfcc_smuggled".into()), (403, "xfcc_smuggled".into())]
        );
    }

    /// With `forwardClientCertDetails` the header is the proof: no property is
    /// read unless the config's rules differ by port, and every outcome is the
    /// one the connection's own facts would give under `APPEND_FORWARD`.
    #[test]
    fn with_forward_client_cert_details_the_peer_comes_from_envoys_element_alone() {
        let proxy = FakeProxy::default();
        // The connection's attributes exist but must not be needed.
        proxy.mtls(0, FOO, 7);
        let e = engine(
            &proxy,
            r#"{"mtls":{"mode":"STRICT"},"allowedTrustDomains":["cluster.local"],"forwardClientCertDetails":"APPEND_FORWARD"}"#,
        );
        let evil = "spiffe://evil.example/ns/foo/sa/sleep";
        let smuggled = format!("Hash={HASH};URI={BAR},{}", element(FOO));
        const LOG: &[&str] = &["source.address"];
        // Several elements, or none that parses: the connection decides (read
        // once, then found by its id).
        const CONNECTION: &[&str] = &[
            "connection.id",
            "connection.mtls",
            "connection.uri_san_peer_certificate",
            "connection.sha256_peer_certificate_digest",
            "destination.port",
            "source.address",
        ];
        const CACHED: &[&str] = &["connection.id", "source.address"];
        for (xfcc, want, reason, reads) in [
            (Some(element(FOO)), Verdict::Continue, "ok", &[][..]),
            (None, Verdict::Pause, "plaintext_on_strict", LOG),
            (
                Some(element(evil)),
                Verdict::Pause,
                "trust_domain_not_allowed",
                LOG,
            ),
            (Some(smuggled), Verdict::Pause, "xfcc_smuggled", CONNECTION),
            (
                Some("Hash=\"unterminated".into()),
                Verdict::Pause,
                "xfcc_malformed",
                CACHED,
            ),
            (
                Some(format!("By=x;URI={FOO}")),
                Verdict::Pause,
                "xfcc_mismatch",
                LOG,
            ),
        ] {
            match &xfcc {
                Some(v) => proxy.headers.borrow_mut().insert(XFCC.into(), v.clone()),
                None => proxy.headers.borrow_mut().remove(XFCC),
            };
            proxy.reads.borrow_mut().clear();
            assert_eq!(e.on_request_headers(&proxy), want, "{xfcc:?}");
            assert_eq!(proxy.reads.borrow().as_slice(), reads, "{xfcc:?}");
            assert!(proxy.count("mode=.=STRICT") > 0);
            assert!(
                proxy.count(&format!("reason=.={reason};")) > 0,
                "{xfcc:?}: {:?}",
                proxy.defined.borrow()
            );
        }
        assert_eq!(proxy.count("form=.=malformed;.;handling=.=rejected"), 1);
        // A value seen before is answered from the cache, with the same outcome;
        // the cache stays bounded whatever the values.
        proxy
            .headers
            .borrow_mut()
            .insert(XFCC.into(), element(evil));
        proxy.reads.borrow_mut().clear();
        assert_eq!(e.on_request_headers(&proxy), Verdict::Pause);
        assert_eq!(proxy.count("reason=.=trust_domain_not_allowed;"), 2);
        assert_eq!(proxy.reads.borrow().as_slice(), ["source.address"]);
        for i in 0..3 * HEADER_SLOTS {
            let v = element(&format!("spiffe://cluster.local/ns/n{i}/sa/s"));
            proxy.headers.borrow_mut().insert(XFCC.into(), v);
            assert_eq!(e.on_request_headers(&proxy), Verdict::Continue);
        }
        assert_eq!(e.header_cache_len(), HEADER_SLOTS);
        // Rules that differ by port need the port, and only the port.
        let ported = engine(
            &proxy,
            r#"{"mtls":{"mode":"STRICT"},"portLevelMtls":{"8080":{"mode":"PERMISSIVE"}},"forwardClientCertDetails":"SANITIZE_SET"}"#,
        );
        proxy.headers.borrow_mut().remove(XFCC);
        proxy.reads.borrow_mut().clear();
        assert_eq!(ported.on_request_headers(&proxy), Verdict::Continue);
        assert_eq!(proxy.reads.borrow().as_slice(), ["destination.port"]);
        let e = Engine::configure(&proxy, br#"{"forwardClientCertDetails":"FORWARD_ONLY"}"#);
        assert!(e.is_err());
    }

    /// Envoy writes `DNS=` unquoted, so a peer certificate (from a CA that
    /// does not vet SANs) whose DNS SAN is `a,Hash=…;URI=<gateway>` ends the
    /// header with a made-up element naming the gateway. Before, the fast path
    /// took that element as Envoy's: under `strip` it kept only it and allowed
    /// the request as the gateway. Now the connection decides.
    #[test]
    fn on_the_fast_path_a_san_that_splits_envoys_element_cannot_name_the_peer() {
        const GW: &str = "spiffe://cluster.local/ns/istio-system/sa/gw";
        let zeros = "0".repeat(64);
        let header = format!(
            "By=spiffe://cluster.local/ns/foo/sa/httpbin;Hash={HASH};Subject=\"\";URI={FOO};DNS=a,Hash={zeros};URI={GW}"
        );
        // Checked against the connection (FOO), the list rejects; the forgery
        // is counted either way.
        for xfcc in ["strip", "verify"] {
            let reason = "identity_not_allowed";
            let proxy = FakeProxy::mtls_request(FOO, &header);
            let e = engine(
                &proxy,
                &format!(
                    r#"{{"forwardClientCertDetails":"APPEND_FORWARD","xfcc":"{xfcc}","allowedIdentities":{{"*":["spiffe://cluster.local/ns/istio-system/sa/*"]}}}}"#
                ),
            );
            assert_eq!(e.on_request_headers(&proxy), Verdict::Pause, "{xfcc}");
            assert_eq!(
                proxy.responses.borrow().as_slice(),
                [(403, reason.into())],
                "{xfcc}"
            );
            assert_eq!(proxy.count("form=.=mismatch;"), 1, "{xfcc}");
        }
        // Without a list, `strip` lets the request through without the header.
        let proxy = FakeProxy::mtls_request(FOO, &header);
        let e = engine(
            &proxy,
            r#"{"forwardClientCertDetails":"APPEND_FORWARD","xfcc":"strip"}"#,
        );
        assert_eq!(e.on_request_headers(&proxy), Verdict::Continue);
        assert_eq!(proxy.request_header(XFCC), Ok(None));
        assert_eq!(proxy.count("form=.=mismatch;.;handling=.=stripped"), 1);
    }

    /// The subject and DNS SAN cost a read only on a connection whose header
    /// claims one, and only once there.
    #[test]
    fn the_peers_names_are_read_once_per_connection_and_only_when_a_header_claims_one() {
        let proxy = FakeProxy::default();
        proxy.mtls(0, FOO, 7);
        proxy.set(0, "connection.subject_peer_certificate", b"CN=sleep.foo");
        let e = engine(&proxy, "{}");
        let with = |subject: &str| {
            format!("By=spiffe://cluster.local/ns/foo/sa/httpbin;Hash={HASH};Subject=\"{subject}\";URI={FOO}")
        };
        for (header, want, reads) in [
            (
                with(""),
                Verdict::Continue,
                &[
                    "connection.id",
                    "connection.mtls",
                    "connection.uri_san_peer_certificate",
                    "connection.sha256_peer_certificate_digest",
                    "destination.port",
                ][..],
            ),
            (
                with("CN=sleep.foo"),
                Verdict::Continue,
                &[
                    "connection.id",
                    "connection.subject_peer_certificate",
                    "connection.dns_san_peer_certificate",
                ][..],
            ),
            (
                with("CN=admin"),
                Verdict::Pause,
                &["connection.id", "source.address"][..],
            ),
        ] {
            proxy
                .headers
                .borrow_mut()
                .insert(XFCC.into(), header.clone());
            proxy.reads.borrow_mut().clear();
            assert_eq!(e.on_request_headers(&proxy), want, "{header}");
            assert_eq!(proxy.reads.borrow().as_slice(), reads, "{header}");
        }
        assert_eq!(proxy.count("reason=.=xfcc_mismatch;.;"), 1);
    }

    /// A connection keeps the engine it was opened with. Before, a newer
    /// configuration's root timer ticked only the new engine, so a connection
    /// the old one held stayed held after its handshake (a server-first app's
    /// client waits for the banner and never sends first) and the timer stayed
    /// fast.
    #[test]
    fn a_connection_held_by_an_older_configuration_is_decided_on_the_newer_ones_tick() {
        let proxy = FakeProxy::default();
        let cfg = r#"{"protocol":"tcp","mtls":{"mode":"STRICT"},"allowedTrustDomains":["cluster.local"]}"#;
        let old = engine(&proxy, cfg);
        let mut known = [None, None];
        for id in [1u32, 2] {
            proxy.mid_handshake(id);
            proxy.set_effective_context(id);
            assert_eq!(
                old.on_upstream_data(&proxy, id, &mut known[id as usize - 1]),
                Verdict::Pause
            );
        }
        assert_eq!(proxy.tick_ms.get(), HANDSHAKE_POLL_MS);
        let new = engine(&proxy, cfg);
        proxy.mtls(1, "spiffe://evil.example/ns/foo/sa/sleep", 1);
        proxy.mtls(2, FOO, 2);
        Engine::on_root_tick(&proxy, ROOT, &[&new, &old]);
        assert_eq!(proxy.closed.borrow().as_slice(), [1], "the foreign peer");
        assert_eq!(proxy.count("outcome=.=allowed;"), 1);
        assert_eq!(
            old.held_count(),
            2,
            "decided, waiting for their own callbacks"
        );
        assert_eq!(proxy.tick_ms.get(), GAUGE_PERIOD_MS);
        assert_eq!(proxy.tick_context.get(), ROOT);
        proxy.set_effective_context(2);
        assert_eq!(
            old.on_upstream_data(&proxy, 2, &mut known[1]),
            Verdict::Continue
        );
    }

    /// A client walking a workload's ports used to define a new stat per port
    /// for the life of the process (and make every count scan them all).
    #[test]
    fn ports_the_config_does_not_name_get_their_own_label_only_up_to_a_bound() {
        let proxy = FakeProxy::default();
        proxy.plaintext(0);
        let e = engine(
            &proxy,
            r#"{"mtls":{"mode":"PERMISSIVE"},"portLevelMtls":{"9":{"mode":"PERMISSIVE"}}}"#,
        );
        let walk = 10_000..10_000 + 3 * MAX_PORT_LABELS as u64;
        for port in walk.clone().chain([9]) {
            proxy.set(0, "destination.port", &port.to_le_bytes());
            assert_eq!(e.on_request_headers(&proxy), Verdict::Continue);
        }
        let defined = proxy.defined.borrow();
        let requests = defined
            .iter()
            .filter(|n| n.ends_with("peerauth_requests_total"));
        // Each labelled port, one `other`, and the named port (seen last).
        assert_eq!(requests.count(), MAX_PORT_LABELS + 2, "{defined:?}");
        assert_eq!(proxy.count("port=.=other;.;"), 2 * MAX_PORT_LABELS as u64);
        assert_eq!(proxy.count("port=.=9;.;"), 1);
        assert_eq!(proxy.count("port=.=10000;.;"), 1);
    }

    /// Under `APPEND_FORWARD` Envoy adds `,<its element>` after the peer's own
    /// header: a peer value ending in an open quote swallows the comma and the
    /// start of Envoy's element, and a `"` in the peer's URI SAN closes it. The
    /// result re-composes exactly, so it passed the shape check (third review).
    #[test]
    fn on_the_fast_path_a_quote_that_swallows_envoys_element_cannot_name_the_peer() {
        const GW: &str = "spiffe://cluster.local/ns/istio-system/sa/gw";
        let san = format!("x\";URI={GW}");
        let header = format!(
            "Hash={HASH};Subject=\",By=spiffe://cluster.local/ns/foo/sa/httpbin;Hash={HASH};URI={san}"
        );
        let proxy = FakeProxy::mtls_request(&san, &header);
        let e = engine(
            &proxy,
            r#"{"forwardClientCertDetails":"APPEND_FORWARD","allowedIdentities":{"*":["spiffe://cluster.local/ns/istio-system/sa/*"]}}"#,
        );
        assert_eq!(e.on_request_headers(&proxy), Verdict::Pause);
        assert_eq!(
            proxy.responses.borrow().as_slice(),
            [(403, "peer_identity_missing".into())]
        );
    }

    /// A SAN with `;` adds pairs to Envoy's element instead of splitting it:
    /// the URI SAN `<gateway>;DNS=x` is written `URI=<gateway>;DNS=x`, a
    /// one-element header that parses and names the gateway. Before, the fast
    /// path took it; an element not in Envoy's exact SVID shape now goes to
    /// the connection, whose URI SAN is no SPIFFE ID.
    #[test]
    fn on_the_fast_path_a_san_that_adds_pairs_to_envoys_element_cannot_name_the_peer() {
        const GW: &str = "spiffe://cluster.local/ns/istio-system/sa/gw";
        let own = "By=spiffe://cluster.local/ns/foo/sa/httpbin";
        for san in [
            format!("{GW};DNS=x"),
            format!("{GW};By=x"),
            format!("{GW};URI={FOO}"),
        ] {
            let proxy = FakeProxy::default();
            proxy.mtls(0, &san, 7);
            let header = format!("{own};Hash={HASH};Subject=\"\";URI={san}");
            proxy
                .headers
                .borrow_mut()
                .insert(XFCC.into(), header.clone());
            let e = engine(
                &proxy,
                r#"{"forwardClientCertDetails":"APPEND_FORWARD","xfcc":"strip","allowedIdentities":{"*":["spiffe://cluster.local/ns/istio-system/sa/*"]}}"#,
            );
            assert_eq!(e.on_request_headers(&proxy), Verdict::Pause, "{header}");
            assert_eq!(
                proxy.responses.borrow().as_slice(),
                [(403, "peer_identity_missing".into())],
                "{header}"
            );
        }
    }

    /// Before, any failed read was "no header", so no XFCC rule ran and the
    /// header still in Envoy's map went on to the app.
    #[test]
    fn an_xfcc_header_the_host_cannot_read_is_judged_as_a_malformed_one_never_as_absent() {
        for (config, want, reason, form) in [
            (
                r#"{}"#,
                Verdict::Pause,
                "xfcc_malformed",
                "form=.=malformed;.;handling=.=rejected",
            ),
            (
                r#"{"xfcc":"strip"}"#,
                Verdict::Continue,
                "ok",
                "form=.=malformed;.;handling=.=stripped",
            ),
            (
                r#"{"forwardClientCertDetails":"APPEND_FORWARD"}"#,
                Verdict::Pause,
                "xfcc_malformed",
                "form=.=malformed;.;handling=.=rejected",
            ),
        ] {
            let proxy = FakeProxy {
                unreadable_headers: true,
                ..FakeProxy::default()
            };
            proxy.mtls(0, FOO, 7);
            let e = engine(&proxy, config);
            assert_eq!(e.on_request_headers(&proxy), want, "{config}");
            assert_eq!(proxy.count(&format!("reason=.={reason};.;")), 1, "{config}");
            assert_eq!(proxy.count(form), 1, "{config}");
        }
        // On a plaintext connection it is a header the client sent.
        let proxy = FakeProxy {
            unreadable_headers: true,
            ..FakeProxy::default()
        };
        proxy.plaintext(0);
        let e = engine(&proxy, "{}");
        assert_eq!(e.on_request_headers(&proxy), Verdict::Pause);
        assert_eq!(proxy.count("reason=.=xfcc_on_plaintext;.;"), 1);
    }

    #[test]
    fn a_failed_xfcc_strip_rejects_the_request_instead_of_passing_the_header_on() {
        let header = format!("URI={FOO}");
        for refuse in [false, true] {
            let proxy = FakeProxy {
                refuse_header_writes: refuse,
                ..FakeProxy::default()
            };
            proxy.plaintext(0);
            proxy
                .headers
                .borrow_mut()
                .insert(XFCC.into(), header.clone());
            let e = engine(&proxy, r#"{"xfcc":"strip"}"#);
            let v = e.on_request_headers(&proxy);
            if refuse {
                assert_eq!(v, Verdict::Pause);
                assert_eq!(
                    proxy.responses.borrow().as_slice(),
                    [(403, "xfcc_rewrite_failed".into())]
                );
                assert_eq!(
                    proxy.count("outcome=.=rejected;.;reason=.=xfcc_rewrite_failed"),
                    1
                );
                assert_eq!(proxy.count("form=.=plaintext;.;handling=.=rejected"), 1);
            } else {
                assert_eq!(v, Verdict::Continue);
                assert_eq!(proxy.request_header(XFCC), Ok(None), "stripped");
                assert_eq!(proxy.count("form=.=plaintext;.;handling=.=stripped"), 1);
            }
        }
    }

    #[test]
    fn a_cert_element_in_any_case_is_checked_against_the_clock_and_no_clock_is_invalid() {
        use sha2::{Digest, Sha256};
        let (not_before, not_after) = (1_700_000_000, 1_800_000_000);
        let (der, pem) = crate::cert::testing::generate(not_before, not_after);
        let digest: String = Sha256::digest(&der)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        for (key, now, want) in [
            ("Cert", Some(1_750_000_000), Verdict::Continue),
            ("cert", Some(not_after + 1), Verdict::Pause),
            ("CERT", None, Verdict::Pause),
            ("Cert", None, Verdict::Pause),
        ] {
            let proxy = FakeProxy {
                now,
                ..FakeProxy::default()
            };
            proxy.mtls(0, FOO, 9);
            proxy.set(
                0,
                "connection.sha256_peer_certificate_digest",
                digest.as_bytes(),
            );
            let header = format!(
                "Hash={digest};{key}=\"{}\";URI={FOO}",
                policy::xfcc::percent_encode(&pem)
            );
            proxy.headers.borrow_mut().insert(XFCC.into(), header);
            let e = engine(&proxy, "{}");
            // Twice on one connection: a `Cert=` decision is never reused.
            for _ in 0..2 {
                assert_eq!(e.on_request_headers(&proxy), want, "{key} at {now:?}");
            }
            if want == Verdict::Pause {
                assert_eq!(
                    proxy.count("reason=.=xfcc_cert_invalid"),
                    2,
                    "{key} at {now:?}"
                );
            }
        }
    }

    #[test]
    fn upstream_bytes_wait_until_the_connection_is_decided() {
        let proxy = FakeProxy::default();
        let e = engine(
            &proxy,
            r#"{"protocol":"tcp","mtls":{"mode":"STRICT"},"allowedTrustDomains":["cluster.local"]}"#,
        );
        let mut known: [Option<Tcp>; 4] = [None; 4];
        // Plaintext (no local certificate): its facts are final, so it is
        // decided by the first upstream bytes and closed before they go out.
        proxy.plaintext(1);
        proxy.set_effective_context(1);
        assert_eq!(e.on_upstream_data(&proxy, 1, &mut known[1]), Verdict::Pause);
        assert_eq!(proxy.closed.borrow().as_slice(), [1]);
        assert_eq!(
            e.on_downstream_data(&proxy, 1, &mut known[1]),
            Verdict::Pause
        );
        assert_eq!(
            proxy.count("reason=.=plaintext_on_strict"),
            1,
            "counted once"
        );

        // TLS mid-handshake: held, and the timer starts.
        for id in [2, 3] {
            proxy.mid_handshake(id);
            proxy.set_effective_context(id);
            let k = &mut known[id as usize];
            assert_eq!(e.on_upstream_data(&proxy, id, k), Verdict::Pause);
        }
        assert_eq!(e.held_count(), 2);
        assert_eq!(proxy.tick_ms.get(), HANDSHAKE_POLL_MS);
        e.on_tick(&proxy, ROOT);
        assert_eq!(
            proxy.closed.borrow().len(),
            1,
            "nothing decided mid-handshake"
        );
        // The handshakes finish: one peer from another trust domain, one allowed.
        proxy.mtls(2, "spiffe://evil.example/ns/foo/sa/sleep", 2);
        proxy.mtls(3, FOO, 3);
        e.on_tick(&proxy, ROOT);
        assert_eq!(proxy.closed.borrow().as_slice(), [1, 2]);
        assert_eq!(
            proxy.tick_ms.get(),
            GAUGE_PERIOD_MS,
            "the timer slows down to the gauge's period with nothing held"
        );
        // On the timer's own root, not on the last connection it acted on.
        assert_eq!(proxy.tick_context.get(), ROOT);
        proxy.set_effective_context(3);
        assert_eq!(
            e.on_upstream_data(&proxy, 3, &mut known[3]),
            Verdict::Continue
        );
        assert_eq!(
            e.on_downstream_data(&proxy, 3, &mut known[3]),
            Verdict::Continue
        );
        proxy.set_effective_context(2);
        assert_eq!(e.on_upstream_data(&proxy, 2, &mut known[2]), Verdict::Pause);
        assert_eq!(proxy.count("reason=.=trust_domain_not_allowed"), 1);
        assert_eq!(proxy.count("outcome=.=allowed"), 1);
        assert_eq!(
            known,
            [
                None,
                Some(Tcp::Rejected),
                Some(Tcp::Rejected),
                Some(Tcp::Allowed)
            ]
        );
        assert_eq!(e.held_count(), 0, "final states moved to their connections");
        e.on_connection_closed(3);
    }

    /// Envoy reports every close of a TCP connection (host.rs exports
    /// `proxy_on_downstream_connection_close`, not `proxy_on_delete`): a
    /// connection closed while held leaves nothing behind.
    #[test]
    fn a_connection_closed_while_held_is_forgotten() {
        let proxy = FakeProxy::default();
        let e = engine(&proxy, r#"{"protocol":"tcp","mtls":{"mode":"STRICT"}}"#);
        for id in [5, 6] {
            proxy.mid_handshake(id);
            proxy.set_effective_context(id);
            assert_eq!(e.on_upstream_data(&proxy, id, &mut None), Verdict::Pause);
        }
        assert_eq!(e.held_count(), 2);
        e.on_connection_closed(5);
        assert_eq!(e.held_count(), 1);
        e.on_connection_closed(6);
        assert_eq!(e.held_count(), 0);
        e.on_tick(&proxy, ROOT);
        assert_eq!(
            proxy.tick_ms.get(),
            GAUGE_PERIOD_MS,
            "nothing left to poll for"
        );
    }

    #[test]
    fn the_vm_memory_gauge_is_set_at_configure_time_and_on_every_tick_with_no_request_cost() {
        let proxy = FakeProxy::default();
        let e = engine(&proxy, "{}");
        assert_eq!(proxy.count(metrics::VM_MEMORY), 17 * 65536);
        assert_eq!(proxy.tick_ms.get(), GAUGE_PERIOD_MS);
        proxy.counts.borrow_mut().clear();
        proxy.mtls(0, FOO, 7);
        proxy.headers.borrow_mut().insert(XFCC.into(), element(FOO));
        assert_eq!(e.on_request_headers(&proxy), Verdict::Continue);
        assert_eq!(proxy.count(metrics::VM_MEMORY), 0, "not set per request");
        e.on_tick(&proxy, ROOT);
        assert_eq!(proxy.count(metrics::VM_MEMORY), 17 * 65536);
    }

    #[test]
    fn with_counter_flush_ms_counts_wait_in_the_vm_and_the_timer_adds_each_exactly_once() {
        let proxy = FakeProxy::default();
        let e = engine(
            &proxy,
            r#"{"mtls":{"mode":"STRICT"},"allowedTrustDomains":["cluster.local"],"counterFlushMs":1000}"#,
        );
        assert_eq!(
            proxy.tick_ms.get(),
            1000,
            "the timer runs at the flush period"
        );
        proxy.mtls(0, FOO, 7);
        let clean = element(FOO);
        let smuggled = format!("{},{clean}", element(BAR));
        for xfcc in [&clean, &smuggled, &clean, &clean, &smuggled] {
            proxy.headers.borrow_mut().insert(XFCC.into(), xfcc.clone());
            e.on_request_headers(&proxy);
        }
        assert_eq!(
            proxy.count("outcome=.=allowed;.;reason=.=ok"),
            0,
            "nothing added yet"
        );
        assert_eq!(proxy.count("reason=.=xfcc_smuggled"), 0);
        e.on_tick(&proxy, ROOT);
        assert_eq!(proxy.count("outcome=.=allowed;.;reason=.=ok"), 3);
        assert_eq!(proxy.count("reason=.=xfcc_smuggled"), 2);
        assert_eq!(proxy.count("form=.=smuggled;.;handling=.=rejected"), 2);
        e.on_tick(&proxy, ROOT);
        assert_eq!(
            proxy.count("outcome=.=allowed;.;reason=.=ok"),
            3,
            "added once"
        );
        assert_eq!(
            proxy.responses.borrow().len(),
            2,
            "the rejections themselves were not delayed"
        );

        // Held TCP connections poll at their own period and are counted at that tick.
        let proxy = FakeProxy::default();
        let e = engine(
            &proxy,
            r#"{"protocol":"tcp","mtls":{"mode":"STRICT"},"counterFlushMs":10000}"#,
        );
        assert_eq!(proxy.tick_ms.get(), 10000);
        proxy.mid_handshake(4);
        proxy.set_effective_context(4);
        assert_eq!(e.on_upstream_data(&proxy, 4, &mut None), Verdict::Pause);
        proxy.mtls(4, FOO, 4);
        e.on_tick(&proxy, ROOT);
        assert_eq!(
            proxy.count("outcome=.=allowed"),
            1,
            "decided and counted in the same tick"
        );
        assert_eq!(
            proxy.tick_ms.get(),
            10000,
            "back to the flush period with nothing held"
        );
    }

    #[test]
    fn an_engine_a_newer_configuration_replaced_hands_its_counts_over_and_then_counts_at_once() {
        let proxy = FakeProxy::default();
        let e = engine(&proxy, r#"{"counterFlushMs":1000}"#);
        proxy.mtls(0, FOO, 7);
        proxy.headers.borrow_mut().insert(XFCC.into(), element(FOO));
        e.on_request_headers(&proxy);
        assert_eq!(proxy.count("outcome=.=allowed"), 0);
        e.hand_over_counts(&proxy);
        assert_eq!(proxy.count("outcome=.=allowed"), 1, "nothing left waiting");
        // Its root's timer now serves the new engine: a connection still held
        // by this one must not count into a batch that no timer flushes.
        e.on_request_headers(&proxy);
        assert_eq!(proxy.count("outcome=.=allowed"), 2);
    }

    #[test]
    fn without_a_timer_counter_flush_ms_is_ignored_and_counts_are_added_at_once() {
        let proxy = FakeProxy {
            no_timer: true,
            ..FakeProxy::default()
        };
        let e = engine(&proxy, r#"{"counterFlushMs":1000}"#);
        assert!(proxy
            .logs
            .borrow()
            .iter()
            .any(|l| l
                == "peerauth: no timer: counterFlushMs ignored, counters are incremented at once"));
        proxy.mtls(0, FOO, 7);
        proxy.headers.borrow_mut().insert(XFCC.into(), element(FOO));
        assert_eq!(e.on_request_headers(&proxy), Verdict::Continue);
        assert_eq!(proxy.count("outcome=.=allowed"), 1);
    }

    #[test]
    fn an_unconfigured_filter_answers_503_and_closes_connections() {
        let proxy = FakeProxy::default();
        let e = Engine::unconfigured();
        assert_eq!(e.on_request_headers(&proxy), Verdict::Pause);
        assert_eq!(proxy.responses.borrow()[0].0, 503);
        let mut known = None;
        assert_eq!(e.on_upstream_data(&proxy, 3, &mut known), Verdict::Pause);
        assert_eq!(e.on_downstream_data(&proxy, 3, &mut known), Verdict::Pause);
        assert!(!proxy.closed.borrow().is_empty());
        let bad = Engine::configure(&proxy, br#"{"mtls":{"mode":"strict"}}"#);
        assert!(bad.is_err());
        assert!(proxy
            .logs
            .borrow()
            .iter()
            .any(|l| l.starts_with("peerauth: invalid pluginConfig: mtls.mode")));
    }

    /// Policies are resolved for the pod Envoy's node names; when the node
    /// has a namespace Envoy will not hand over, they would be resolved for
    /// the declared workload, which may be another pod's: refused. A config
    /// without policies does not need the pod.
    #[test]
    fn policies_are_refused_when_the_pod_cannot_be_read() {
        let with_policies = br#"{"workload":{"namespace":"foo","labels":{}},"peerAuthentications":[{"metadata":{"name":"default","namespace":"foo"},"spec":{"mtls":{"mode":"STRICT"}}}]}"#;
        let proxy = FakeProxy {
            refused: vec!["xds.node.metadata.NAMESPACE"],
            ..FakeProxy::default()
        };
        let e = Engine::configure(&proxy, with_policies).err();
        assert_eq!(e, Some(ConfigError::Pod(PodError::Refused("NAMESPACE"))));
        assert!(Engine::configure(&proxy, br#"{"mtls":{"mode":"STRICT"}}"#).is_ok());
        let log = proxy.logs.borrow().join("\n");
        assert!(
            log.contains("peerauth: invalid pluginConfig: peerAuthentications are resolved for the sidecar's pod, but Envoy refused to hand over the node metadata's NAMESPACE"),
            "{log}"
        );
        // Without a node namespace (not an Istio sidecar) the declared workload is used.
        let plain = FakeProxy::default();
        assert!(Engine::configure(&plain, with_policies).is_ok());
    }
}
