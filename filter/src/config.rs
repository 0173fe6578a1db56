//! The WasmPlugin's `pluginConfig`: strict JSON parsing into a typed [`Config`].
//!
//! The vocabulary is PeerAuthentication's (`mtls.mode`, `portLevelMtls`, or whole
//! PeerAuthentication objects resolved like istiod does) plus the filter's own
//! expectations (action, XFCC handling, trusted forwarders, identity allow-lists).

use crate::facts::Pod;
use crate::json::Json;
use policy::mesh::PeerAuthentication;
use policy::model::{MtlsSpec, PeerAuthenticationSpec, WorkloadSelector};
use policy::spiffe::SpiffePattern;
use policy::MtlsMode;
use std::collections::BTreeMap;

/// What to do when a request breaks an expectation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Action {
    /// Reject (HTTP 403 or close the connection).
    #[default]
    Enforce,
    /// Let it through and record it as `would_reject` (safe migration).
    Audit,
}

impl Action {
    /// The pluginConfig spelling.
    pub fn label(self) -> &'static str {
        match self {
            Action::Enforce => "enforce",
            Action::Audit => "audit",
        }
    }
}

/// What to do with a forged or smuggled `x-forwarded-client-cert`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XfccPolicy {
    /// Reject the request.
    #[default]
    Verify,
    /// Remove the untrustworthy part and let the request through.
    Strip,
    /// Leave the header alone (still recorded).
    Ignore,
}

impl XfccPolicy {
    /// The pluginConfig spelling.
    pub fn label(self) -> &'static str {
        match self {
            XfccPolicy::Verify => "verify",
            XfccPolicy::Strip => "strip",
            XfccPolicy::Ignore => "ignore",
        }
    }
}

/// Which kind of Envoy filter the plugin runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// `envoy.filters.http.wasm`: one decision per request.
    #[default]
    Http,
    /// `envoy.filters.network.wasm`: one decision per connection.
    Tcp,
}

impl Protocol {
    /// The pluginConfig spelling.
    pub fn label(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Tcp => "tcp",
        }
    }
}

/// The rules a decision applies on one destination port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRules {
    /// The effective mode (never `Unset`).
    pub mode: MtlsMode,
    /// `false` when the configuration has port-level entries but the port could
    /// not be read or is not one of them: then `mode` is the strictest mode the
    /// configuration gives any port, and every identity list must admit the peer.
    pub known: bool,
}

/// A validated plugin configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The mode of every port the configuration names (`portLevelMtls` keys, of
    /// the direct modes or of any PeerAuthentication, and `allowedIdentities`
    /// port keys), resolved once at parse time.
    pub port_modes: Vec<(u32, MtlsMode)>,
    /// The workload-level mode, which every other port has (never `Unset`).
    pub workload_mode: MtlsMode,
    pub action: Action,
    pub xfcc: XfccPolicy,
    pub protocol: Protocol,
    /// `forwardClientCertDetails` was given: the HTTP connection manager in
    /// front of the filter uses `APPEND_FORWARD` or `SANITIZE_SET`, so Envoy
    /// removes a client's XFCC on every connection without a client
    /// certificate and appends its own element last on every one with, and the
    /// peer's facts are read from that element instead of the connection.
    pub xfcc_from_envoy: bool,
    /// Peers allowed to put XFCC elements before Envoy's own (ingress gateways).
    pub trusted_forwarders: Vec<SpiffePattern>,
    /// Empty: any trust domain.
    pub allowed_trust_domains: Vec<String>,
    /// Port → patterns, `None` (the `"*"` entry, used for ports without their
    /// own) first, then by port. A Vec rather than a BTreeMap: each map type
    /// adds its own tree code to the module, which the server Envoy pays for in
    /// memory (BENCHMARKS.md, "Memory by code"), for the handful of entries a
    /// config has.
    pub allowed_identities: Vec<(Option<u32>, Vec<SpiffePattern>)>,
    /// `counterFlushMs`: 0 increments Envoy's counters as each decision is made;
    /// otherwise counts wait in the VM and the root's timer adds them this often.
    pub counter_flush_ms: u64,
    /// `xfccLookalikes: check`: every request header is read (one host call
    /// that returns them all, instead of the XFCC header alone) to find
    /// `x_forwarded_client_cert` and other spellings with `_`.
    pub xfcc_lookalikes: bool,
    /// The modes were resolved from `peerAuthentications` (for a workload or a pod).
    pub from_policies: bool,
    /// How the pod differs from the `workload` the pluginConfig declares, for
    /// a warning.
    pub pod_differs: Option<String>,
}

/// `{a=b, c=d}`, for messages.
fn label_text(labels: &BTreeMap<String, String>) -> String {
    let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{{{}}}", pairs.join(", "))
}

/// The longest `counterFlushMs`: the root's timer already runs this often for
/// the memory gauge (`engine::GAUGE_PERIOD_MS`), and it bounds the counts a VM
/// that Envoy tears down can take with it.
pub const MAX_COUNTER_FLUSH_MS: u64 = 10_000;

/// Why a `pluginConfig` was refused. Messages say what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("pluginConfig is not valid JSON for this filter: {0}")]
    Json(String),
    #[error("{field}: {source}")]
    Mode {
        field: String,
        source: policy::mode::ModeError,
    },
    #[error("{field}: unknown variant `{value}`: use one of {expected}")]
    Choice {
        field: &'static str,
        value: String,
        expected: String,
    },
    #[error("{field}: port {key:?} is not a number between 1 and 65535 written as plain decimal digits (no sign, spaces or leading zeros)")]
    Port { field: String, key: String },
    #[error("give either mtls/portLevelMtls or workload+peerAuthentications, not both")]
    BothModeSources,
    #[error("peerAuthentications needs \"workload\": {{\"namespace\": ..., \"labels\": {{...}}}} outside an Istio sidecar (whose node metadata names its pod)")]
    MissingWorkload,
    #[error("\"workload\" is only meaningful with \"peerAuthentications\"")]
    WorkloadWithoutPolicies,
    #[error("peerAuthentications[{index}] ({name}): {messages}")]
    Policy {
        index: usize,
        name: String,
        messages: String,
    },
    #[error("{field}: {value:?} is not a SPIFFE pattern: {reason}")]
    Pattern {
        field: String,
        value: String,
        reason: String,
    },
    #[error("allowedTrustDomains: {value:?} is not a trust domain: {reason}")]
    TrustDomain { value: String, reason: String },
    #[error("peerAuthentications are resolved for the sidecar's pod, but {0}")]
    Pod(crate::facts::PodError),
    #[error("{field}: {value} is not a whole number of milliseconds from 0 to {max}")]
    Millis {
        field: &'static str,
        value: String,
        max: u64,
    },
}

/// The pluginConfig's fields, read from the JSON tree by `raw_config`.
#[derive(Default)]
struct RawConfig {
    mtls: Option<RawMtls>,
    port_level_mtls: Option<Vec<(String, RawMtls)>>,
    workload: Option<RawWorkload>,
    peer_authentications: Option<Vec<RawPeerAuthentication>>,
    root_namespace: Option<String>,
    action: Option<String>,
    xfcc: Option<String>,
    protocol: Option<String>,
    forward_client_cert_details: Option<String>,
    trusted_forwarders: Vec<String>,
    allowed_trust_domains: Vec<String>,
    allowed_identities: Vec<(String, Vec<String>)>,
    counter_flush_ms: Option<u64>,
    xfcc_lookalikes: Option<String>,
}

struct RawMtls {
    mode: Option<String>,
}

struct RawWorkload {
    namespace: String,
    labels: BTreeMap<String, String>,
}

struct RawPeerAuthentication {
    metadata: RawMeta,
    spec: PeerAuthenticationSpec,
}

#[derive(Default)]
struct RawMeta {
    name: String,
    namespace: Option<String>,
    creation_timestamp: Option<String>,
}

type Members = [(String, Json)];

fn json_error(message: String) -> ConfigError {
    ConfigError::Json(message)
}

fn wrong_type(field: &str, expected: &str, got: &Json) -> ConfigError {
    json_error(format!(
        "{field}: expected {expected}, found {}",
        got.kind()
    ))
}

/// A member's value; `null` reads as absent, as serde reads it for an `Option`.
fn member<'j>(members: &'j Members, key: &str) -> Option<&'j Json> {
    members
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
        .filter(|v| **v != Json::Null)
}

fn object<'j>(field: &str, v: &'j Json) -> Result<&'j Members, ConfigError> {
    match v {
        Json::Object(m) => Ok(m),
        other => Err(wrong_type(field, "an object", other)),
    }
}

/// An object of the filter's own, whose unknown keys are mistakes (a typo
/// would otherwise silently turn a rule off).
fn strict_object<'j>(field: &str, v: &'j Json, known: &[&str]) -> Result<&'j Members, ConfigError> {
    let m = object(field, v)?;
    if let Some((k, _)) = m.iter().find(|(k, _)| !known.contains(&k.as_str())) {
        let place = if field.is_empty() {
            String::new()
        } else {
            format!(" in {field}")
        };
        return Err(json_error(format!(
            "unknown field `{k}`{place}: use one of {}",
            known.join(", ")
        )));
    }
    Ok(m)
}

fn text(field: &str, v: &Json) -> Result<String, ConfigError> {
    match v {
        Json::String(s) => Ok(s.clone()),
        other => Err(wrong_type(field, "a string", other)),
    }
}

fn opt_text(field: &str, v: Option<&Json>) -> Result<Option<String>, ConfigError> {
    v.map(|v| text(field, v)).transpose()
}

/// A duration in whole milliseconds, `0..=max` (`1e3`, `1000.0` and `-1` refused).
fn millis(field: &'static str, v: &Json, max: u64) -> Result<u64, ConfigError> {
    match v {
        Json::Number(literal) => literal
            .parse::<u64>()
            .ok()
            .filter(|ms| *ms <= max)
            .ok_or_else(|| ConfigError::Millis {
                field,
                value: literal.clone(),
                max,
            }),
        other => Err(wrong_type(field, "a number", other)),
    }
}

fn texts(field: &str, v: Option<&Json>) -> Result<Vec<String>, ConfigError> {
    match v {
        None => Ok(Vec::new()),
        Some(Json::Array(items)) => items.iter().map(|i| text(field, i)).collect(),
        Some(other) => Err(wrong_type(field, "an array of strings", other)),
    }
}

/// A JSON object's members in document order, each value read by `read` (with
/// the member's path). The JSON reader refuses a key given twice, so the keys
/// are distinct.
fn members<T>(
    field: &str,
    v: Option<&Json>,
    read: impl Fn(&str, &Json) -> Result<T, ConfigError>,
) -> Result<Vec<(String, T)>, ConfigError> {
    let mut out = Vec::new();
    if let Some(v) = v {
        for (k, item) in object(field, v)? {
            out.push((k.clone(), read(&format!("{field}.{k}"), item)?));
        }
    }
    Ok(out)
}

/// The members as the map policy's types hold them.
fn tree<T>(pairs: Vec<(String, T)>) -> BTreeMap<String, T> {
    let mut out = BTreeMap::new();
    for (k, v) in pairs {
        out.insert(k, v);
    }
    out
}

fn raw_mtls(field: &str, v: &Json) -> Result<RawMtls, ConfigError> {
    let m = strict_object(field, v, &["mode"])?;
    Ok(RawMtls {
        mode: opt_text(&format!("{field}.mode"), member(m, "mode"))?,
    })
}

/// `{mode}` inside a PeerAuthentication; any other field is refused (see
/// [`pa_spec`]).
fn mtls_spec(field: &str, v: &Json) -> Result<MtlsSpec, ConfigError> {
    let m = strict_object(field, v, &["mode"])?;
    Ok(MtlsSpec {
        mode: opt_text(&format!("{field}.mode"), member(m, "mode"))?,
    })
}

/// A PeerAuthentication `spec`, field for field as policy's wire type
/// (`policy::model::PeerAuthenticationSpec`) reads it; the rules applied to it
/// stay in `PeerAuthentication::from_spec`.
///
/// Unlike istiod, which ignores a spec field it does not know, an unknown one
/// is refused: a typo such as `mTLS` would otherwise leave the policy without
/// its mode (UNSET, inherited), which is how a STRICT intent silently becomes
/// PERMISSIVE.
fn pa_spec(field: &str, v: &Json) -> Result<PeerAuthenticationSpec, ConfigError> {
    let m = strict_object(field, v, &["selector", "mtls", "portLevelMtls"])?;
    let selector = member(m, "selector")
        .map(|s| {
            let f = format!("{field}.selector");
            let sm = strict_object(&f, s, &["matchLabels"])?;
            Ok(WorkloadSelector {
                match_labels: tree(members(
                    &format!("{f}.matchLabels"),
                    member(sm, "matchLabels"),
                    text,
                )?),
            })
        })
        .transpose()?;
    let mtls = member(m, "mtls")
        .map(|v| mtls_spec(&format!("{field}.mtls"), v))
        .transpose()?;
    let port_level_mtls = member(m, "portLevelMtls")
        .map(|v| members(&format!("{field}.portLevelMtls"), Some(v), mtls_spec).map(tree))
        .transpose()?;
    Ok(PeerAuthenticationSpec {
        selector,
        mtls,
        port_level_mtls,
    })
}

fn raw_peer_authentication(field: &str, v: &Json) -> Result<RawPeerAuthentication, ConfigError> {
    // apiVersion, status and the rest are accepted so users can paste a whole
    // object; another kind is not a PeerAuthentication to resolve.
    let m = object(field, v)?;
    if let Some(kind) = opt_text(&format!("{field}.kind"), member(m, "kind"))? {
        if kind != "PeerAuthentication" {
            return Err(json_error(format!(
                "{field}.kind: {kind:?} is not a PeerAuthentication: only PeerAuthentication objects go in peerAuthentications"
            )));
        }
    }
    let metadata = match member(m, "metadata") {
        None => RawMeta::default(),
        Some(v) => {
            let f = format!("{field}.metadata");
            let mm = object(&f, v)?;
            RawMeta {
                name: opt_text(&format!("{f}.name"), member(mm, "name"))?.unwrap_or_default(),
                namespace: opt_text(&format!("{f}.namespace"), member(mm, "namespace"))?,

                creation_timestamp: opt_text(
                    &format!("{f}.creationTimestamp"),
                    member(mm, "creationTimestamp"),
                )?,
            }
        }
    };
    // Where the object lives decides whether it is mesh-wide, namespace-wide or
    // another namespace's: guessing (the workload's, or kubectl's `default`)
    // could turn a mesh-wide STRICT into a namespace policy that loses to others.
    if metadata
        .namespace
        .as_deref()
        .is_none_or(|ns| ns.trim().is_empty())
    {
        return Err(json_error(format!(
            "{field}.metadata.namespace is missing: give the namespace the policy lives in (the root namespace, istio-system by default, for a mesh-wide one)"
        )));
    }
    // The name, the namespace's syntax and the creationTimestamp are
    // `PeerAuthentication::from_spec`'s to check, as `peerauth check` checks them.
    let spec = match member(m, "spec") {
        None => PeerAuthenticationSpec::default(),
        Some(v) => pa_spec(&format!("{field}.spec"), v)?,
    };
    Ok(RawPeerAuthentication { metadata, spec })
}

const FIELDS: [&str; 14] = [
    "mtls",
    "portLevelMtls",
    "workload",
    "peerAuthentications",
    "rootNamespace",
    "action",
    "xfcc",
    "protocol",
    "forwardClientCertDetails",
    "trustedForwarders",
    "allowedTrustDomains",
    "allowedIdentities",
    "counterFlushMs",
    "xfccLookalikes",
];

/// `name` as a namespace, or the error that names `field`.
fn namespace_name(field: &str, name: &str) -> Result<(), ConfigError> {
    if policy::validate::is_namespace_name(name) {
        return Ok(());
    }
    Err(json_error(format!(
        "{field}: {name:?} is not a Kubernetes namespace name (lowercase letters, digits and '-', at most 63): no pod can be in it"
    )))
}

#[inline(never)]
fn raw_config(json: &[u8]) -> Result<RawConfig, ConfigError> {
    if json.iter().all(u8::is_ascii_whitespace) {
        return Ok(RawConfig::default());
    }
    let doc = crate::json::parse(json).map_err(|e| json_error(e.to_string()))?;
    let m = strict_object("", &doc, &FIELDS)?;
    let get = |k| member(m, k);
    Ok(RawConfig {
        mtls: get("mtls").map(|v| raw_mtls("mtls", v)).transpose()?,
        port_level_mtls: get("portLevelMtls")
            .map(|v| members("portLevelMtls", Some(v), raw_mtls))
            .transpose()?,
        workload: get("workload")
            .map(|v| {
                let w = strict_object("workload", v, &["namespace", "labels"])?;
                let namespace = member(w, "namespace").ok_or_else(|| {
                    json_error("workload.namespace: missing: name the workload's namespace".into())
                })?;
                let namespace = text("workload.namespace", namespace)?;
                namespace_name("workload.namespace", &namespace)?;
                Ok(RawWorkload {
                    namespace,
                    labels: tree(members("workload.labels", member(w, "labels"), text)?),
                })
            })
            .transpose()?,
        peer_authentications: match get("peerAuthentications") {
            None => None,
            Some(Json::Array(items)) => Some(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| raw_peer_authentication(&format!("peerAuthentications[{i}]"), v))
                    .collect::<Result<_, _>>()?,
            ),
            Some(other) => return Err(wrong_type("peerAuthentications", "an array", other)),
        },
        root_namespace: match opt_text("rootNamespace", get("rootNamespace"))? {
            Some(ns) if ns.trim().is_empty() => {
                return Err(json_error(
                    "rootNamespace is empty: name the mesh's root namespace, or leave it out for istio-system".into(),
                ))
            }
            Some(ns) => {
                namespace_name("rootNamespace", &ns)?;
                Some(ns)
            }
            None => None,
        },
        action: opt_text("action", get("action"))?,
        xfcc: opt_text("xfcc", get("xfcc"))?,
        protocol: opt_text("protocol", get("protocol"))?,
        forward_client_cert_details: opt_text(
            "forwardClientCertDetails",
            get("forwardClientCertDetails"),
        )?,
        trusted_forwarders: texts("trustedForwarders", get("trustedForwarders"))?,
        allowed_trust_domains: texts("allowedTrustDomains", get("allowedTrustDomains"))?,
        allowed_identities: members("allowedIdentities", get("allowedIdentities"), |f, v| {
            texts(f, Some(v))
        })?,
        xfcc_lookalikes: opt_text("xfccLookalikes", get("xfccLookalikes"))?,
        counter_flush_ms: get("counterFlushMs")
            .map(|v| millis("counterFlushMs", v, MAX_COUNTER_FLUSH_MS))
            .transpose()?,
    })
}

#[inline(never)]
fn parse_mode(field: &str, raw: Option<&RawMtls>) -> Result<MtlsMode, ConfigError> {
    match raw.and_then(|m| m.mode.as_deref()) {
        None => Ok(MtlsMode::Unset),
        Some(s) => s.parse().map_err(|source| ConfigError::Mode {
            field: field.to_string(),
            source,
        }),
    }
}

/// One of `options` by its pluginConfig spelling; the first is the default.
fn choice<T: Copy, const N: usize>(
    field: &'static str,
    value: Option<&str>,
    options: [T; N],
    label: fn(T) -> &'static str,
) -> Result<T, ConfigError> {
    let Some(value) = value else {
        return options.first().copied().ok_or(ConfigError::Choice {
            field,
            value: String::new(),
            expected: String::new(),
        });
    };
    options
        .into_iter()
        .find(|o| label(*o) == value)
        .ok_or_else(|| ConfigError::Choice {
            field,
            value: value.to_string(),
            expected: options.map(label).join(", "),
        })
}

#[inline(never)]
fn parse_port(field: &str, key: &str) -> Result<u32, ConfigError> {
    policy::validate::parse_port(key).ok_or_else(|| ConfigError::Port {
        field: field.to_string(),
        key: key.to_string(),
    })
}

#[inline(never)]
fn parse_pattern(field: &str, value: &str) -> Result<SpiffePattern, ConfigError> {
    SpiffePattern::parse(value).map_err(|e| ConfigError::Pattern {
        field: field.to_string(),
        value: value.to_string(),
        reason: e.to_string(),
    })
}

impl Config {
    /// Parse and validate. An empty input means "all defaults" (PERMISSIVE, enforce,
    /// verify XFCC), because Istio hands an absent `pluginConfig` over as empty.
    pub fn parse(json: &[u8]) -> Result<Config, ConfigError> {
        Config::parse_for(json, None)
    }

    /// [`Config::parse`] in a sidecar that knows its pod (Envoy's node
    /// metadata): PeerAuthentication objects are then resolved for that pod,
    /// as istiod resolves them for each pod, whatever `workload` says — one
    /// WasmPlugin often reaches more pods than the workload it was written
    /// for, and a pod carries labels its template does not (the injector's).
    /// A `workload` the pod does not match is a warning.
    pub fn parse_for(json: &[u8], pod: Option<&Pod>) -> Result<Config, ConfigError> {
        let raw = raw_config(json)?;
        let mut pod_differs = None;

        // Ports named by the allow-lists count as named too; parsed first, so
        // each mode source can resolve them with the rest.
        let mut allowed_identities: Vec<(Option<u32>, Vec<SpiffePattern>)> = Vec::new();
        for (key, patterns) in &raw.allowed_identities {
            let port = if key == "*" {
                None
            } else {
                Some(parse_port("allowedIdentities", key)?)
            };
            let field = format!("allowedIdentities.{key}");
            let parsed = patterns
                .iter()
                .map(|p| parse_pattern(&field, p))
                .collect::<Result<Vec<_>, _>>()?;
            // `None < Some(_)`: the "*" entry first, then by port. No two
            // entries share a port: the JSON reader refuses a repeated key and
            // `parse_port` accepts one spelling per port.
            let at = allowed_identities.partition_point(|(p, _)| *p < port);
            allowed_identities.insert(at, (port, parsed));
        }
        // A Vec and a scan: a BTreeSet would add its own tree and sort code to
        // the module for the handful of ports a config names.
        let mut named: Vec<u32> = allowed_identities.iter().filter_map(|(p, _)| *p).collect();
        let mut name = |p: u32| {
            if !named.contains(&p) {
                named.push(p);
            }
        };

        let (workload_mode, port_modes) = match (&raw.peer_authentications, &raw.workload) {
            (Some(_), _) if raw.mtls.is_some() || raw.port_level_mtls.is_some() => {
                return Err(ConfigError::BothModeSources)
            }
            (Some(pas), declared) => {
                let (namespace, labels) = match (pod, declared) {
                    (Some(p), _) => (&p.namespace, &p.labels),
                    (None, Some(w)) => (&w.namespace, &w.labels),
                    (None, None) => return Err(ConfigError::MissingWorkload),
                };
                if let (Some(p), Some(w)) = (pod, declared) {
                    let mismatch = w.namespace != p.namespace
                        || w.labels.iter().any(|(k, v)| p.labels.get(k) != Some(v));
                    pod_differs = mismatch.then(|| {
                        format!(
                            "workload names namespace {:?} with labels {}, but this sidecar's pod is in {:?} with labels {}: its modes are resolved for the pod, as istiod resolves them",
                            w.namespace,
                            label_text(&w.labels),
                            p.namespace,
                            label_text(&p.labels)
                        )
                    });
                }
                let mut policies = Vec::with_capacity(pas.len());
                for (index, pa) in pas.iter().enumerate() {
                    // Refused when missing (`raw_peer_authentication`).
                    let namespace = pa.metadata.namespace.as_deref().unwrap_or_default();
                    // Kubernetes holds one object per name: two would be a
                    // paste error, and which one counts a guess.
                    if let Some(first) = pas.iter().take(index).position(|o| {
                        o.metadata.name == pa.metadata.name
                            && o.metadata.namespace.as_deref() == Some(namespace)
                    }) {
                        return Err(json_error(format!(
                            "peerAuthentications[{index}]: {namespace}/{} is also peerAuthentications[{first}]: keep one of them",
                            pa.metadata.name
                        )));
                    }
                    let built = PeerAuthentication::from_spec(
                        &pa.metadata.name,
                        namespace,
                        pa.metadata.creation_timestamp.as_deref(),
                        &pa.spec,
                    )
                    .map_err(|diags| ConfigError::Policy {
                        index,
                        name: format!("{namespace}/{}", pa.metadata.name),
                        messages: diags
                            .iter()
                            .map(|d| d.message.clone())
                            .collect::<Vec<_>>()
                            .join("; "),
                    })?;
                    built.port_level.keys().for_each(|p| name(*p));
                    policies.push(built);
                }
                let root = raw.root_namespace.as_deref().unwrap_or("istio-system");
                let resolver = policy::resolve::Resolver::new(&policies, root);
                let mode = |port| resolver.mode(namespace, labels, port);
                let ports = named.iter().map(|p| (*p, mode(Some(*p)))).collect();
                (mode(None), ports)
            }
            (None, Some(_)) => return Err(ConfigError::WorkloadWithoutPolicies),
            (None, None) => {
                let workload =
                    MtlsMode::Permissive.overridden_by(parse_mode("mtls.mode", raw.mtls.as_ref())?);
                let mut declared = Vec::new();
                for (key, m) in raw.port_level_mtls.iter().flatten() {
                    let field = format!("portLevelMtls.{key}.mode");
                    let port = parse_port("portLevelMtls", key)?;
                    declared.push((port, parse_mode(&field, Some(m))?));
                    name(port);
                }
                let ports = named
                    .iter()
                    .map(|p| {
                        let own = declared.iter().find(|(q, _)| q == p).map(|(_, m)| *m);
                        (*p, workload.overridden_by(own.unwrap_or(MtlsMode::Unset)))
                    })
                    .collect();
                (workload, ports)
            }
        };

        let trusted_forwarders = raw
            .trusted_forwarders
            .iter()
            .map(|p| parse_pattern("trustedForwarders", p))
            .collect::<Result<Vec<_>, _>>()?;
        for td in &raw.allowed_trust_domains {
            policy::spiffe::validate_trust_domain(td).map_err(|e| ConfigError::TrustDomain {
                value: td.clone(),
                reason: e.to_string(),
            })?;
        }
        Ok(Config {
            port_modes,
            workload_mode,
            action: choice(
                "action",
                raw.action.as_deref(),
                [Action::Enforce, Action::Audit],
                Action::label,
            )?,
            xfcc: choice(
                "xfcc",
                raw.xfcc.as_deref(),
                [XfccPolicy::Verify, XfccPolicy::Strip, XfccPolicy::Ignore],
                XfccPolicy::label,
            )?,
            protocol: choice(
                "protocol",
                raw.protocol.as_deref(),
                [Protocol::Http, Protocol::Tcp],
                Protocol::label,
            )?,
            xfcc_from_envoy: match raw.forward_client_cert_details.as_deref() {
                None => false,
                Some("APPEND_FORWARD" | "SANITIZE_SET") => true,
                Some(other) => {
                    return Err(ConfigError::Choice {
                        field: "forwardClientCertDetails",
                        value: other.to_string(),
                        expected: "APPEND_FORWARD, SANITIZE_SET (under any other setting XFCC does not prove the peer: omit the field)".into(),
                    })
                }
            },
            trusted_forwarders,
            allowed_trust_domains: raw.allowed_trust_domains,
            allowed_identities,
            counter_flush_ms: raw.counter_flush_ms.unwrap_or(0),
            xfcc_lookalikes: choice(
                "xfccLookalikes",
                raw.xfcc_lookalikes.as_deref(),
                [false, true],
                |check| if check { "check" } else { "ignore" },
            )?,
            from_policies: raw.peer_authentications.is_some(),
            pod_differs,
        })
    }

    /// The effective mode for a destination port; never `Unset` (Istio's default is
    /// PERMISSIVE). A port the configuration does not name, and an unknown port
    /// (`None`), get the workload-level mode, as istiod gives them.
    pub fn mode_for(&self, port: Option<u32>) -> MtlsMode {
        port.and_then(|p| self.port_modes.iter().find(|(q, _)| *q == p))
            .map_or(self.workload_mode, |(_, m)| *m)
    }

    /// One line per port (and one for the ports the config does not name) where
    /// an allow-list applies and the mode accepts plaintext (PERMISSIVE or
    /// DISABLE): there the list rejects every plaintext request, which the mode
    /// alone would not suggest.
    pub fn warnings(&self) -> Vec<String> {
        let mut out: Vec<String> = self.pod_differs.iter().cloned().collect();
        let named = self.port_modes.iter().map(|(p, _)| Some(*p));
        for port in named.chain([None]) {
            let mode = self.mode_for(port);
            let own = port.filter(|p| self.identities_named(Some(*p)).is_some());
            let field = match own {
                Some(p) => format!("allowedIdentities.{p}"),
                None if self.identities_named(None).is_some() => "allowedIdentities.*".into(),
                None if !self.allowed_trust_domains.is_empty() => "allowedTrustDomains".into(),
                None => continue,
            };
            if mode == MtlsMode::Strict {
                continue;
            }
            let scope = port.map_or_else(
                || "ports the config does not name".into(),
                |p| format!("port {p}"),
            );
            out.push(format!(
                "{field} applies to {scope}, whose mode is {mode}: plaintext requests there are rejected (plaintext_not_allowed), since only mutual TLS proves an identity"
            ));
        }
        // Accepted (each is a valid SPIFFE pattern or trust domain) but admits
        // no workload Istio issues an identity to: closed, and an outage.
        let lists = self.allowed_identities.iter().map(|(port, patterns)| {
            let field = port.map_or_else(
                || "allowedIdentities.*".to_string(),
                |p| format!("allowedIdentities.{p}"),
            );
            (field, patterns)
        });
        for (field, patterns) in
            lists.chain([("trustedForwarders".to_string(), &self.trusted_forwarders)])
        {
            for p in patterns.iter().filter(|p| !p.can_match_istio_identity()) {
                out.push(format!(
                    "{field}: {:?} can match no Istio identity (spiffe://<trust domain>/ns/<namespace>/sa/<service account>): no peer is admitted by it",
                    p.as_str()
                ));
            }
        }
        for td in self
            .allowed_trust_domains
            .iter()
            .filter(|td| td.ends_with('.'))
        {
            out.push(format!(
                "allowedTrustDomains: {td:?} ends with '.', as no Istio trust domain does (cluster.local): no peer is admitted by it"
            ));
        }
        out
    }

    /// The rules for a destination port (`None`: unreadable). A port only
    /// matters when the configuration has port-level entries; then a port it
    /// does not name may be a port number the filter sees differently from the
    /// one the user wrote (a Service port instead of the container port, say), so
    /// it gets the strictest rules rather than the workload's.
    pub fn port_rules(&self, port: Option<u32>) -> PortRules {
        let named = port.and_then(|p| self.port_modes.iter().find(|(q, _)| *q == p));
        match named {
            Some((_, mode)) => PortRules {
                mode: *mode,
                known: true,
            },
            None if self.port_modes.is_empty() => PortRules {
                mode: self.workload_mode,
                known: true,
            },
            // STRICT > PERMISSIVE > DISABLE: the order of `MtlsMode`.
            None => PortRules {
                mode: self
                    .port_modes
                    .iter()
                    .fold(self.workload_mode, |m, (_, p)| m.max(*p)),
                known: false,
            },
        }
    }

    /// The identity allow-list for a port, if any applies.
    pub fn identities_for(&self, port: Option<u32>) -> Option<&[SpiffePattern]> {
        port.and_then(|p| self.identities_named(Some(p)))
            .or_else(|| self.identities_named(None))
    }

    /// The allow-list the config gives under exactly this key (`None`: `"*"`).
    fn identities_named(&self, key: Option<u32>) -> Option<&[SpiffePattern]> {
        self.allowed_identities
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_slice())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// The hand-written mapping reads a PeerAuthentication `spec` exactly as
    /// policy's serde wire type does, or refuses what it refuses.
    #[test]
    fn a_peer_authentication_spec_reads_as_policys_own_deserializer_reads_it() {
        for text in [
            r#"{}"#,
            r#"{"mtls":{"mode":"STRICT"}}"#,
            r#"{"mtls":{}}"#,
            r#"{"mtls":null,"selector":null,"portLevelMtls":null}"#,
            r#"{"selector":{"matchLabels":{"app":"httpbin","v":"1"}},"portLevelMtls":{"8080":{"mode":"DISABLE"},"9090":{}}}"#,
            r#"{"selector":{},"mtls":{"mode":"BOGUS"},"extra":[1,{"x":2}]}"#,
            r#"{"mtls":{"mode":"PERMISSIVE","other":true},"selector":{"matchLabels":{}}}"#,
            r#"{"mtls":{"mode":3}}"#,
            r#"{"mtls":"STRICT"}"#,
            r#"{"selector":{"matchLabels":{"app":1}}}"#,
            r#"{"portLevelMtls":[]}"#,
            r#"{"portLevelMtls":{"80":"STRICT"}}"#,
            r#"[]"#,
        ] {
            let theirs = serde_json::from_str::<PeerAuthenticationSpec>(text);
            let ours = crate::json::parse(text.as_bytes())
                .map_err(|e| json_error(e.to_string()))
                .and_then(|v| pa_spec("spec", &v));
            match (&ours, &theirs) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{text}"),
                (Err(_), Err(_)) => {}
                // serde reads a struct from an array too; a spec never is one.
                (Err(_), Ok(b)) if text.starts_with('[') => {
                    assert_eq!(*b, PeerAuthenticationSpec::default())
                }
                // Policy ignores unknown fields, as istiod does; the filter
                // refuses them (a typo must not drop a mode), and nothing else.
                (Err(e), Ok(_)) if e.to_string().contains("unknown field") => {}
                _ => panic!("{text}: ours {ours:?}, policy's {theirs:?}"),
            }
        }
    }

    /// Accepted, since each is a valid SPIFFE pattern or trust domain, but
    /// admitting no workload Istio issues an identity to: a warning says so.
    #[test]
    fn lists_that_can_admit_no_istio_workload_are_warned_about() {
        let c = Config::parse(
            br#"{"mtls":{"mode":"STRICT"},"allowedIdentities":{"*":["spiffe://cluster.local/ns/*"],"8080":["spiffe://cluster.local/ns/foo/sa/*"]},"trustedForwarders":["spiffe://cluster.local"],"allowedTrustDomains":["cluster.local."]}"#,
        )
        .unwrap();
        let w = c.warnings();
        assert_eq!(w.len(), 3, "{w:#?}");
        assert!(
            w[0].starts_with(
                r#"allowedIdentities.*: "spiffe://cluster.local/ns/*" can match no Istio identity"#
            ),
            "{w:#?}"
        );
        assert!(
            w[1].starts_with(
                r#"trustedForwarders: "spiffe://cluster.local" can match no Istio identity"#
            ),
            "{w:#?}"
        );
        assert!(
            w[2].starts_with(r#"allowedTrustDomains: "cluster.local." ends with '.'"#),
            "{w:#?}"
        );
    }

    /// Each used to resolve to PERMISSIVE without a word: a typo'd `mtls`
    /// (the policy read as UNSET), an object without a namespace (put in the
    /// workload's, where a pasted mesh-wide STRICT lost to a namespace
    /// PERMISSIVE by name order), an empty namespace or root namespace (the
    /// policy matched nothing), and another kind read as a PeerAuthentication.
    #[test]
    fn a_peer_authentication_object_that_does_not_say_what_it_means_is_refused() {
        let with = |pa: &str, extra: &str| {
            format!(
                r#"{{"workload":{{"namespace":"foo","labels":{{"app":"httpbin"}}}},"peerAuthentications":[{pa}]{extra}}}"#
            )
        };
        for (config, says) in [
            (
                with(r#"{"metadata":{"name":"p","namespace":"foo"},"spec":{"mTLS":{"mode":"STRICT"}}}"#, ""),
                "unknown field `mTLS` in peerAuthentications[0].spec: use one of selector, mtls, portLevelMtls",
            ),
            (
                with(r#"{"metadata":{"name":"p","namespace":"foo"},"spec":{"mtls":{"mdoe":"STRICT"}}}"#, ""),
                "unknown field `mdoe` in peerAuthentications[0].spec.mtls: use one of mode",
            ),
            (
                with(r#"{"metadata":{"name":"default"},"spec":{"mtls":{"mode":"STRICT"}}}"#, ""),
                "peerAuthentications[0].metadata.namespace is missing",
            ),
            (
                with(r#"{"metadata":{"name":"default","namespace":""},"spec":{"mtls":{"mode":"STRICT"}}}"#, ""),
                "peerAuthentications[0].metadata.namespace is missing",
            ),
            (
                with(r#"{"metadata":{"name":"default","namespace":" "},"spec":{"mtls":{"mode":"STRICT"}}}"#, ""),
                "peerAuthentications[0].metadata.namespace is missing",
            ),
            (
                with(r#"{"metadata":{"name":"default","namespace":"istio-system"},"spec":{"mtls":{"mode":"STRICT"}}}"#, r#","rootNamespace":"""#),
                "rootNamespace is empty",
            ),
            (
                with(r#"{"kind":"AuthorizationPolicy","metadata":{"name":"p","namespace":"foo"},"spec":{}}"#, ""),
                "peerAuthentications[0].kind: \"AuthorizationPolicy\" is not a PeerAuthentication",
            ),
        ] {
            let e = Config::parse(config.as_bytes()).unwrap_err();
            assert!(e.to_string().contains(says), "{config}: {e}");
        }
        // The same objects, written out, resolve as istiod does.
        let c = Config::parse(
            with(
                r#"{"kind":"PeerAuthentication","metadata":{"name":"default","namespace":"istio-system"},"spec":{"mtls":{"mode":"STRICT"}}}"#,
                "",
            )
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(c.workload_mode, MtlsMode::Strict);
    }

    #[test]
    fn type_errors_and_unknown_fields_name_the_field_and_what_to_write() {
        let e = Config::parse(br#"{"actoin":"audit"}"#).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("pluginConfig is not valid JSON for this filter: unknown field `actoin`: use one of mtls, portLevelMtls,"),
            "{e}"
        );
        let e = Config::parse(br#"{"trustedForwarders":"spiffe://x/y"}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "pluginConfig is not valid JSON for this filter: trustedForwarders: expected an array of strings, found a string"
        );
        let e = Config::parse(br#"{"portLevelMtls":{"80":{"mod":"STRICT"}}}"#).unwrap_err();
        assert!(
            e.to_string()
                .contains("unknown field `mod` in portLevelMtls.80: use one of mode"),
            "{e}"
        );
        let e =
            Config::parse(br#"{"workload":{"labels":{}},"peerAuthentications":[]}"#).unwrap_err();
        assert!(e.to_string().contains("workload.namespace: missing"), "{e}");
        let e = Config::parse(br#"{"peerAuthentications":[{"metadata":{"name":"p","namespace":"a"},"spec":{"mtls":{"mode":1}}}],"workload":{"namespace":"a"}}"#).unwrap_err();
        assert!(
            e.to_string().contains(
                "peerAuthentications[0].spec.mtls.mode: expected a string, found a number"
            ),
            "{e}"
        );
        let e = Config::parse(br#"{"action":"audit","action":"enforce"}"#).unwrap_err();
        assert!(e.to_string().contains("duplicate key at byte 18"), "{e}");
        let e = Config::parse(b"[]").unwrap_err();
        assert!(
            e.to_string()
                .ends_with("expected an object, found an array"),
            "{e}"
        );
    }

    #[test]
    fn an_empty_config_means_permissive_enforce_and_verify() {
        let c = Config::parse(b"").unwrap();
        assert_eq!(c.mode_for(Some(8080)), MtlsMode::Permissive);
        assert_eq!(c.action, Action::Enforce);
        assert_eq!(c.xfcc, XfccPolicy::Verify);
        assert_eq!(c.protocol, Protocol::Http);
        assert_eq!(
            c.counter_flush_ms, 0,
            "counters are incremented at once by default"
        );
    }

    #[test]
    fn counter_flush_ms_is_a_whole_number_of_milliseconds_up_to_ten_seconds() {
        for (text, ms) in [("0", 0), ("1000", 1000), ("10000", 10000), ("null", 0)] {
            let c = Config::parse(format!(r#"{{"counterFlushMs":{text}}}"#).as_bytes()).unwrap();
            assert_eq!(c.counter_flush_ms, ms, "{text}");
        }
        for text in [
            "10001",
            "-1",
            "1.5",
            "1e3",
            "1000.0",
            "18446744073709551616",
        ] {
            let e =
                Config::parse(format!(r#"{{"counterFlushMs":{text}}}"#).as_bytes()).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!(
                    "counterFlushMs: {text} is not a whole number of milliseconds from 0 to 10000"
                )
            );
        }
        let e = Config::parse(br#"{"counterFlushMs":"1000"}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "pluginConfig is not valid JSON for this filter: counterFlushMs: expected a number, found a string"
        );
    }

    #[test]
    fn port_level_mtls_overrides_the_default_and_unset_inherits_it() {
        let c = Config::parse(
            br#"{"mtls":{"mode":"STRICT"},"portLevelMtls":{"8080":{"mode":"DISABLE"},"9090":{}}}"#,
        )
        .unwrap();
        assert_eq!(c.mode_for(Some(8080)), MtlsMode::Disable);
        assert_eq!(c.mode_for(Some(9090)), MtlsMode::Strict);
        assert_eq!(c.mode_for(Some(80)), MtlsMode::Strict);
        assert_eq!(c.mode_for(None), MtlsMode::Strict);
    }

    #[test]
    fn unknown_fields_and_modes_are_refused_with_the_field_named() {
        let e = Config::parse(br#"{"mtls":{"mode":"STRICT"},"mode":"x"}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `mode`"), "{e}");
        let e = Config::parse(br#"{"mtls":{"mode":"strict"}}"#).unwrap_err();
        assert!(
            e.to_string().starts_with("mtls.mode: unknown mTLS mode"),
            "{e}"
        );
        let e = Config::parse(br#"{"portLevelMtls":{"http":{"mode":"STRICT"}}}"#).unwrap_err();
        assert!(e.to_string().contains("\"http\" is not a number"), "{e}");
        let e = Config::parse(br#"{"action":"block"}"#).unwrap_err();
        assert!(e.to_string().contains("unknown variant `block`"), "{e}");
        let e = Config::parse(b"{not json").unwrap_err();
        assert!(matches!(e, ConfigError::Json(_)));
    }

    #[test]
    fn policies_need_a_workload_and_exclude_direct_modes() {
        let e = Config::parse(br#"{"peerAuthentications":[]}"#).unwrap_err();
        assert_eq!(e, ConfigError::MissingWorkload);
        let e = Config::parse(
            br#"{"mtls":{"mode":"STRICT"},"peerAuthentications":[],"workload":{"namespace":"foo"}}"#,
        )
        .unwrap_err();
        assert_eq!(e, ConfigError::BothModeSources);
        let e = Config::parse(br#"{"workload":{"namespace":"foo"}}"#).unwrap_err();
        assert_eq!(e, ConfigError::WorkloadWithoutPolicies);
    }

    /// istiod resolves PeerAuthentication for each pod with the pod's own
    /// labels (the injector's `security.istio.io/tlsMode: istio` among them),
    /// and one WasmPlugin may reach pods the declared workload is not: in a
    /// sidecar that knows its pod, the pod decides. Before, a `version: v2`
    /// pod under a pluginConfig written for v1 was PERMISSIVE where istiod
    /// makes it STRICT.
    #[test]
    fn in_a_sidecar_that_knows_its_pod_policies_are_resolved_for_the_pod() {
        let pas = r#"[
            {"metadata":{"name":"default","namespace":"foo"},"spec":{"mtls":{"mode":"PERMISSIVE"}}},
            {"metadata":{"name":"httpbin-v2","namespace":"foo"},"spec":{"selector":{"matchLabels":{"version":"v2"}},"mtls":{"mode":"STRICT"}}},
            {"metadata":{"name":"injected","namespace":"foo"},"spec":{"selector":{"matchLabels":{"security.istio.io/tlsMode":"istio","app":"reviews"}},"mtls":{"mode":"STRICT"}}}
        ]"#;
        let declared = format!(
            r#"{{"workload":{{"namespace":"foo","labels":{{"app":"httpbin","version":"v1"}}}},"peerAuthentications":{pas}}}"#
        );
        let pod = |labels: &[(&str, &str)]| Pod {
            namespace: "foo".into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        let alone = Config::parse(declared.as_bytes()).unwrap();
        assert_eq!(alone.workload_mode, MtlsMode::Permissive);
        assert!(alone.warnings().is_empty());

        let v2 = pod(&[("app", "httpbin"), ("version", "v2")]);
        let c = Config::parse_for(declared.as_bytes(), Some(&v2)).unwrap();
        assert_eq!(c.workload_mode, MtlsMode::Strict);
        let w = c.warnings();
        assert!(
            w.len() == 1 && w[0].contains("version=v2") && w[0].contains("resolved for the pod"),
            "{w:?}"
        );
        // The pod the config was written for: same answer, no warning.
        let v1 = pod(&[("app", "httpbin"), ("version", "v1"), ("pod-x", "y")]);
        let c = Config::parse_for(declared.as_bytes(), Some(&v1)).unwrap();
        assert_eq!(
            (c.workload_mode, c.warnings().len()),
            (MtlsMode::Permissive, 0)
        );

        // No `workload` needed in a sidecar; a label only the injector adds counts.
        let bare = format!(r#"{{"peerAuthentications":{pas}}}"#);
        assert_eq!(
            Config::parse(bare.as_bytes()).unwrap_err(),
            ConfigError::MissingWorkload
        );
        let reviews = pod(&[("app", "reviews"), ("security.istio.io/tlsMode", "istio")]);
        let c = Config::parse_for(bare.as_bytes(), Some(&reviews)).unwrap();
        assert_eq!(c.workload_mode, MtlsMode::Strict);
        assert!(c.from_policies && c.warnings().is_empty());
    }

    /// Inputs Kubernetes could never produce used to resolve quietly to a
    /// weaker mode: a namespace no pod can be in (`"istio-system "`, `Foo`)
    /// dropped a mesh-wide STRICT, an unparsable creationTimestamp sorted as
    /// the newest and lost to an older PERMISSIVE policy, and a second copy of
    /// one object was a silent tie. Each is now refused, naming the field.
    #[test]
    fn names_and_times_kubernetes_could_not_hold_are_refused() {
        let pa = |meta: &str| {
            format!(r#"{{"metadata":{{{meta}}},"spec":{{"mtls":{{"mode":"STRICT"}}}}}}"#)
        };
        let with = |workload_ns: &str, root: &str, pas: &[String]| {
            format!(
                r#"{{"workload":{{"namespace":"{workload_ns}","labels":{{}}}}{root},"peerAuthentications":[{}]}}"#,
                pas.join(",")
            )
        };
        let good = pa(r#""name":"default","namespace":"istio-system""#);
        assert!(Config::parse(with("foo", "", std::slice::from_ref(&good)).as_bytes()).is_ok());
        for (config, says) in [
            (
                with("foo", "", &[pa(r#""name":"default","namespace":"istio-system ""#)]),
                r#"peerAuthentications[0] (istio-system /default): namespace "istio-system " is not a Kubernetes namespace name"#,
            ),
            (
                with("Foo", "", std::slice::from_ref(&good)),
                r#"workload.namespace: "Foo" is not a Kubernetes namespace name"#,
            ),
            (
                with("foo", r#","rootNamespace":"Istio-System""#, std::slice::from_ref(&good)),
                r#"rootNamespace: "Istio-System" is not a Kubernetes namespace name"#,
            ),
            (
                with("foo", "", &[pa(r#""namespace":"foo""#)]),
                "peerAuthentications[0] (foo/): PeerAuthentication has no name",
            ),
            (
                with(
                    "foo",
                    "",
                    &[pa(r#""name":"a","namespace":"foo","creationTimestamp":"garbage""#)],
                ),
                r#"peerAuthentications[0] (foo/a): creationTimestamp "garbage" is not an RFC 3339 time"#,
            ),
            (
                with("foo", "", &[good.clone(), good.clone()]),
                "peerAuthentications[1]: istio-system/default is also peerAuthentications[0]: keep one of them",
            ),
        ] {
            let e = Config::parse(config.as_bytes()).unwrap_err().to_string();
            assert!(e.contains(says), "{config}: {e}");
        }
        let stamped =
            pa(r#""name":"a","namespace":"foo","creationTimestamp":"2024-01-02T03:04:05Z""#);
        assert!(Config::parse(with("foo", "", &[stamped]).as_bytes()).is_ok());
    }

    #[test]
    fn bad_trust_domains_are_refused() {
        let e = Config::parse(br#"{"allowedTrustDomains":["Cluster.Local"]}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "allowedTrustDomains: \"Cluster.Local\" is not a trust domain: trust domain must be lowercase: write `cluster.local`"
        );
        let e = Config::parse(br#"{"allowedTrustDomains":["cluster.local:443"]}"#).unwrap_err();
        assert!(matches!(e, ConfigError::TrustDomain { .. }), "{e}");
    }

    #[test]
    fn ports_and_trust_domains_are_accepted_exactly_where_policy_accepts_them() {
        let long = "a".repeat(256);
        for key in [
            "8080", " 8080", "8080 ", "+8080", "08080", "0", "65536", "http", "-1", "65535",
        ] {
            let json = format!(r#"{{"portLevelMtls":{{"{key}":{{"mode":"STRICT"}}}}}}"#);
            assert_eq!(
                Config::parse(json.as_bytes()).is_ok(),
                policy::validate::parse_port(key).is_some(),
                "port {key:?}"
            );
        }
        for td in [
            "cluster.local",
            "Cluster.Local",
            "a:1",
            "u@td",
            "",
            long.as_str(),
        ] {
            let json = format!(r#"{{"allowedTrustDomains":["{td}"]}}"#);
            assert_eq!(
                Config::parse(json.as_bytes()).is_ok(),
                policy::spiffe::validate_trust_domain(td).is_ok(),
                "trust domain {td:?}"
            );
        }
    }

    #[test]
    fn a_port_key_kubernetes_or_istiod_would_refuse_is_refused_with_a_one_line_error() {
        // The CRD's CEL rule refuses blanks; istiod's jsonpb refuses a sign and
        // a leading zero. Before, each of these was read as port 8080.
        for key in [" 8080", "8080 ", "+8080", "08080"] {
            for (json, field) in [
                (
                    format!(r#"{{"portLevelMtls":{{"{key}":{{"mode":"STRICT"}}}}}}"#),
                    "portLevelMtls",
                ),
                (
                    format!(r#"{{"allowedIdentities":{{"{key}":["spiffe://cluster.local/**"]}}}}"#),
                    "allowedIdentities",
                ),
            ] {
                let e = Config::parse(json.as_bytes()).unwrap_err();
                assert_eq!(
                    e.to_string(),
                    format!(
                        "{field}: port {key:?} is not a number between 1 and 65535 written as plain decimal digits (no sign, spaces or leading zeros)"
                    )
                );
                assert_eq!(e.to_string().lines().count(), 1, "{e}");
            }
            // Inside a PeerAuthentication object it is policy's own rule.
            let json = format!(
                r#"{{"workload":{{"namespace":"foo","labels":{{"app":"httpbin"}}}},"peerAuthentications":[{{"apiVersion":"security.istio.io/v1","kind":"PeerAuthentication","metadata":{{"name":"p","namespace":"foo"}},"spec":{{"selector":{{"matchLabels":{{"app":"httpbin"}}}},"portLevelMtls":{{"{key}":{{"mode":"DISABLE"}}}}}}}}]}}"#
            );
            let e = Config::parse(json.as_bytes()).unwrap_err();
            assert!(matches!(e, ConfigError::Policy { index: 0, .. }), "{e:?}");
            assert!(
                e.to_string().contains(&format!(
                    "port {key:?} must be a plain decimal number in range 1..65535"
                )),
                "{e}"
            );
            assert_eq!(e.to_string().lines().count(), 1, "{e}");
        }
        // Different ports stay accepted, in any order, with the "*" entry anywhere.
        let c = Config::parse(
            br#"{"allowedIdentities":{"9090":["spiffe://b/**"],"*":["spiffe://s/**"],"80":["spiffe://a/**"]}}"#,
        )
        .unwrap();
        let keys: Vec<Option<u32>> = c.allowed_identities.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, [None, Some(80), Some(9090)]);
        assert_eq!(
            c.identities_for(Some(80)).unwrap()[0].to_string(),
            "spiffe://a/**"
        );
        assert_eq!(
            c.identities_for(Some(9090)).unwrap()[0].to_string(),
            "spiffe://b/**"
        );
        assert_eq!(
            c.identities_for(Some(81)).unwrap()[0].to_string(),
            "spiffe://s/**"
        );
    }

    #[test]
    fn a_port_specific_identity_list_wins_over_the_star_entry() {
        let c = Config::parse(
            br#"{"allowedIdentities":{"*":["spiffe://cluster.local/ns/foo/sa/*"],"9090":["spiffe://cluster.local/**"]}}"#,
        )
        .unwrap();
        assert_eq!(c.identities_for(Some(9090)).unwrap().len(), 1);
        assert!(c.identities_for(Some(80)).is_some());
        let none = Config::parse(b"{}").unwrap();
        assert!(none.identities_for(Some(80)).is_none());
    }

    #[test]
    fn an_allow_list_on_a_port_that_accepts_plaintext_is_warned_about() {
        let c = Config::parse(
            br#"{"mtls":{"mode":"STRICT"},"portLevelMtls":{"8080":{"mode":"PERMISSIVE"},"9090":{"mode":"DISABLE"}},
                 "allowedIdentities":{"8080":["spiffe://cluster.local/ns/foo/sa/*"]}}"#,
        )
        .unwrap();
        assert_eq!(
            c.warnings(),
            ["allowedIdentities.8080 applies to port 8080, whose mode is PERMISSIVE: plaintext requests there are rejected (plaintext_not_allowed), since only mutual TLS proves an identity"]
        );
        let td = Config::parse(
            br#"{"mtls":{"mode":"PERMISSIVE"},"portLevelMtls":{"9090":{"mode":"STRICT"}},"allowedTrustDomains":["cluster.local"]}"#,
        )
        .unwrap();
        let w = td.warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("allowedTrustDomains applies to ports the config does not name, whose mode is PERMISSIVE"),
            "{w:?}"
        );
        let strict = Config::parse(
            br#"{"mtls":{"mode":"STRICT"},"allowedIdentities":{"*":["spiffe://cluster.local/**"]}}"#,
        )
        .unwrap();
        assert!(strict.warnings().is_empty());
    }

    #[test]
    fn a_port_the_config_does_not_name_gets_its_strictest_mode_once_it_names_any() {
        let c = Config::parse(
            br#"{"mtls":{"mode":"DISABLE"},"portLevelMtls":{"8080":{"mode":"STRICT"},"9090":{}}}"#,
        )
        .unwrap();
        let known = |mode| PortRules { mode, known: true };
        assert_eq!(c.port_rules(Some(8080)), known(MtlsMode::Strict));
        assert_eq!(c.port_rules(Some(9090)), known(MtlsMode::Disable));
        let strictest = PortRules {
            mode: MtlsMode::Strict,
            known: false,
        };
        assert_eq!(c.port_rules(Some(80)), strictest);
        assert_eq!(c.port_rules(None), strictest);
        let lax = Config::parse(
            br#"{"mtls":{"mode":"DISABLE"},"allowedIdentities":{"8080":["spiffe://cluster.local/**"]}}"#,
        )
        .unwrap();
        assert_eq!(
            lax.port_rules(None),
            PortRules {
                mode: MtlsMode::Disable,
                known: false
            }
        );
        // Without port-level entries every port is alike, so none is unknown.
        let flat = Config::parse(br#"{"mtls":{"mode":"PERMISSIVE"}}"#).unwrap();
        assert_eq!(flat.port_rules(None), known(MtlsMode::Permissive));
    }

    #[test]
    fn peer_authentication_objects_resolve_per_port_like_istiod() {
        let c = Config::parse(
            br#"{"workload":{"namespace":"foo","labels":{"app":"httpbin"}},
                 "peerAuthentications":[
                   {"apiVersion":"security.istio.io/v1","kind":"PeerAuthentication",
                    "metadata":{"name":"default","namespace":"istio-system"},
                    "spec":{"mtls":{"mode":"STRICT"}}},
                   {"metadata":{"name":"httpbin","namespace":"foo"},
                    "spec":{"selector":{"matchLabels":{"app":"httpbin"}},
                            "mtls":{"mode":"PERMISSIVE"},
                            "portLevelMtls":{"8080":{"mode":"DISABLE"}}}}]}"#,
        )
        .unwrap();
        assert_eq!(c.mode_for(Some(8080)), MtlsMode::Disable);
        assert_eq!(c.mode_for(Some(80)), MtlsMode::Permissive);
    }
}
