//! Istio's admission rules (webhook `ValidatePeerAuthentication` and CRD CEL rules)
//! plus schema-level checks of DestinationRules, per resource.
//!
//! Every finding carries the line of the offending field when the loader
//! recorded one (`Located::field_lines`), else the resource's line.

use crate::config::MeshConfig;
use crate::diagnostic::{self as d, Diagnostic, Location};
use crate::mode::{MtlsMode, TlsMode};
use crate::model::{DestinationRuleSpec, Located, ObjectMeta, PeerAuthenticationSpec, Resource};
use crate::yaml::pointer_segment;
use std::collections::BTreeMap;

/// API versions the PeerAuthentication CRD serves.
pub const PEER_AUTHENTICATION_VERSIONS: [&str; 2] =
    ["security.istio.io/v1", "security.istio.io/v1beta1"];
/// API versions the DestinationRule CRD serves.
pub const DESTINATION_RULE_VERSIONS: [&str; 3] = [
    "networking.istio.io/v1",
    "networking.istio.io/v1beta1",
    "networking.istio.io/v1alpha3",
];

/// Validate one resource; returns every finding (errors and warnings).
/// Kinds without rules (Namespace, Workload, Service) return nothing.
pub fn resource(resource: &Located<Resource>, config: &MeshConfig) -> Vec<Diagnostic> {
    let at = Lines {
        location: &resource.location,
        field_lines: &resource.field_lines,
    };
    match &resource.value {
        Resource::PeerAuthentication {
            api_version,
            meta,
            spec,
        } => {
            let namespace = namespace_of(meta);
            let mut out = Vec::new();
            if !PEER_AUTHENTICATION_VERSIONS.contains(&api_version.as_str()) {
                out.push(at.diag(
                    d::PA_API_VERSION.diagnostic(
                        format!(
                            "PeerAuthentication apiVersion {api_version:?} is not served by Istio"
                        ),
                        "use `apiVersion: security.istio.io/v1`",
                    ),
                    "/apiVersion",
                ));
            }
            out.extend(peer_authentication_metadata(
                &meta.name,
                namespace,
                meta.creation_timestamp.as_deref(),
                &at,
            ));
            out.extend(peer_authentication(spec, &at));
            if namespace == config.root_namespace
                && spec
                    .selector
                    .as_ref()
                    .is_some_and(|s| !s.match_labels.is_empty())
            {
                out.push(at.diag(
                    d::PA_SELECTOR_IN_ROOT_NAMESPACE.diagnostic(
                        format!(
                            "policy has a selector in the root namespace {namespace:?}: istiod ignores it entirely (istio/istio#61023)"
                        ),
                        "move it to the workload's namespace, or remove the selector to make it mesh-wide",
                    ),
                    "/spec/selector",
                ));
            }
            for diag in &mut out {
                diag.resource = Some(d::ResourceRef {
                    kind: "PeerAuthentication".into(),
                    namespace: namespace.to_string(),
                    name: meta.name.clone(),
                });
            }
            out
        }
        Resource::DestinationRule {
            api_version,
            meta,
            spec,
        } => {
            let mut out = Vec::new();
            if !DESTINATION_RULE_VERSIONS.contains(&api_version.as_str()) {
                out.push(at.diag(
                    d::DR_API_VERSION.diagnostic(
                        format!(
                            "DestinationRule apiVersion {api_version:?} is not served by Istio"
                        ),
                        "use `apiVersion: networking.istio.io/v1`",
                    ),
                    "/apiVersion",
                ));
            }
            if meta.name.is_empty() {
                out.push(
                    at.diag(
                        d::DR_MISSING_NAME
                            .diagnostic("DestinationRule has no name", "set `metadata.name`"),
                        "/metadata",
                    ),
                );
            }
            out.extend(destination_rule(spec, &at));
            for diag in &mut out {
                diag.resource = Some(d::ResourceRef {
                    kind: "DestinationRule".into(),
                    namespace: namespace_of(meta).to_string(),
                    name: meta.name.clone(),
                });
            }
            out
        }
        Resource::Namespace { .. }
        | Resource::Workload { .. }
        | Resource::Service { .. }
        | Resource::Gateway { .. }
        | Resource::WasmPlugin { .. } => Vec::new(),
    }
}

pub(crate) fn namespace_of(meta: &ObjectMeta) -> &str {
    match meta.namespace.as_deref() {
        Some(ns) if !ns.is_empty() => ns,
        _ => "default",
    }
}

/// Where findings point: the field's line when known, else the resource's.
pub(crate) struct Lines<'a> {
    pub location: &'a Location,
    pub field_lines: &'a BTreeMap<String, u32>,
}

impl Lines<'_> {
    /// The line of `path`, or of its nearest recorded parent.
    pub fn line(&self, path: &str) -> u32 {
        let mut p = path;
        loop {
            if let Some(line) = self.field_lines.get(p) {
                return *line;
            }
            match p.rfind('/') {
                Some(i) if i > 0 => p = p.get(..i).unwrap_or(""),
                _ => return self.location.line,
            }
        }
    }

    pub fn diag(&self, diag: Diagnostic, path: &str) -> Diagnostic {
        let location = Location {
            line: self.line(path),
            ..self.location.clone()
        };
        diag.at(location)
    }
}

/// The webhook and CRD rules for a PeerAuthentication spec (no namespace or
/// apiVersion checks). Used by `validate::resource` and `PeerAuthentication::from_spec`.
pub(crate) fn peer_authentication(
    spec: &PeerAuthenticationSpec,
    at: &Lines<'_>,
) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    if let Some(mode) = spec.mtls.as_ref().and_then(|m| m.mode.as_deref()) {
        if mode.parse::<MtlsMode>().is_err() {
            out.push(at.diag(
                d::PA_UNKNOWN_MODE.diagnostic(
                    format!("unknown mTLS mode {mode:?}"),
                    "use one of UNSET, DISABLE, PERMISSIVE, STRICT (upper case)",
                ),
                "/spec/mtls/mode",
            ));
        }
    }
    let labels = spec.selector.as_ref().map(|s| &s.match_labels);
    if let Some(labels) = labels {
        if labels.is_empty() {
            out.push(at.diag(
                d::PA_SELECTOR_WITHOUT_LABELS.diagnostic(
                    "workload selector specified without labels: istiod treats this policy as namespace-wide",
                    "add `matchLabels`, or remove `selector` to make the policy namespace-wide on purpose",
                ),
                "/spec/selector",
            ));
        }
        for (key, value) in labels {
            let path = format!("/spec/selector/matchLabels/{}", pointer_segment(key));
            if key.is_empty() {
                out.push(at.diag(
                    d::PA_SELECTOR_EMPTY_KEY.diagnostic(
                        format!("empty key is not supported in selector: \"{key}={value}\""),
                        "give the label a key",
                    ),
                    &path,
                ));
            }
            if key.contains('*') || value.contains('*') {
                out.push(at.diag(
                    d::PA_SELECTOR_WILDCARD.diagnostic(
                        format!("wildcard is not supported in selector: \"{key}={value}\""),
                        "list exact label values; selectors do not match patterns",
                    ),
                    &path,
                ));
            }
            if value.chars().count() > 63 {
                out.push(at.diag(
                    d::PA_SELECTOR_VALUE_TOO_LONG.diagnostic(
                        format!("label value for {key:?} is longer than 63 characters"),
                        "Kubernetes label values are at most 63 characters; shorten it",
                    ),
                    &path,
                ));
            }
        }
    }
    if let Some(ports) = &spec.port_level_mtls {
        if labels.is_none_or(|l| l.is_empty()) {
            out.push(at.diag(
                d::PA_PORT_LEVEL_WITHOUT_SELECTOR.diagnostic(
                    "mesh/namespace peer authentication cannot have port level mTLS (portLevelMtls requires selector)",
                    "add a `selector.matchLabels` for the workload, or move the port settings to a workload policy",
                ),
                "/spec/portLevelMtls",
            ));
        }
        if ports.is_empty() {
            out.push(at.diag(
                d::PA_PORT_LEVEL_EMPTY.diagnostic(
                    "port level mTLS, if defined, must have at least one element",
                    "add a port entry or remove `portLevelMtls`",
                ),
                "/spec/portLevelMtls",
            ));
        }
        for (port, mtls) in ports {
            let path = format!("/spec/portLevelMtls/{}", pointer_segment(port));
            if parse_port(port).is_none() {
                out.push(at.diag(
                    d::PA_PORT_OUT_OF_RANGE.diagnostic(
                        format!(
                            "port {port:?} must be a plain decimal number in range 1..65535 (no sign, spaces or leading zeros)"
                        ),
                        "key portLevelMtls by the container port number the workload listens on, written as digits only (\"8080\")",
                    ),
                    &path,
                ));
            }
            if let Some(mode) = mtls.mode.as_deref() {
                if mode.parse::<MtlsMode>().is_err() {
                    out.push(at.diag(
                        d::PA_UNKNOWN_MODE.diagnostic(
                            format!("unknown mTLS mode {mode:?} for port {port}"),
                            "use one of UNSET, DISABLE, PERMISSIVE, STRICT (upper case)",
                        ),
                        &format!("{path}/mode"),
                    ));
                }
            }
        }
    }
    out
}

/// A portLevelMtls key as a port number in 1..=65535, or `None` for a key
/// Kubernetes or istiod refuses. The CRD's CEL rule reads a key with Go's
/// `strconv.ParseInt` (so no blanks) and istiod's jsonpb reads it as a JSON
/// number (so no sign and no leading zero): only `[1-9][0-9]*` passes both.
/// Being that strict also means two distinct keys never name one port.
pub fn parse_port(key: &str) -> Option<u32> {
    let mut bytes = key.bytes();
    let plain = matches!(bytes.next(), Some(b'1'..=b'9')) && bytes.all(|b| b.is_ascii_digit());
    let port = key.parse::<u32>().ok().filter(|_| plain)?;
    (1..=65535).contains(&port).then_some(port)
}

pub(crate) fn destination_rule(spec: &DestinationRuleSpec, at: &Lines<'_>) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    if spec.host.trim().is_empty() {
        out.push(at.diag(
            d::DR_EMPTY_HOST.diagnostic(
                "DestinationRule has no host",
                "set `spec.host` to the service, e.g. httpbin.bar.svc.cluster.local",
            ),
            "/spec/host",
        ));
    }
    let Some(policy) = &spec.traffic_policy else {
        return out;
    };
    let unknown_tls = |mode: &str, path: &str| {
        at.diag(
            d::DR_UNKNOWN_TLS_MODE.diagnostic(
                format!("unknown TLS mode {mode:?}"),
                "use one of DISABLE, SIMPLE, MUTUAL, ISTIO_MUTUAL (upper case)",
            ),
            path,
        )
    };
    if let Some(mode) = policy.tls.as_ref().and_then(|t| t.mode.as_deref()) {
        if mode.parse::<TlsMode>().is_err() {
            out.push(unknown_tls(mode, "/spec/trafficPolicy/tls/mode"));
        }
    }
    for (i, setting) in policy.port_level_settings.iter().enumerate() {
        let path = format!("/spec/trafficPolicy/portLevelSettings/{i}");
        match setting.port.as_ref().and_then(|p| p.number) {
            None => out.push(at.diag(
                d::DR_PORT_MISSING.diagnostic(
                    "portTrafficPolicy must have valid port",
                    "add `port: {number: <Service port>}` to the entry",
                ),
                &path,
            )),
            Some(n) if !(1..=65535).contains(&n) => out.push(at.diag(
                d::DR_PORT_OUT_OF_RANGE.diagnostic(
                    format!("port number {n} must be in the range 1..65535"),
                    "use the Service port number",
                ),
                &format!("{path}/port/number"),
            )),
            Some(_) => {}
        }
        if let Some(mode) = setting.tls.as_ref().and_then(|t| t.mode.as_deref()) {
            if mode.parse::<TlsMode>().is_err() {
                out.push(unknown_tls(mode, &format!("{path}/tls/mode")));
            }
        }
    }
    out
}

/// What the API server requires of a PeerAuthentication's metadata, and how
/// istiod orders it: the CLI's `check` and the filter's `PeerAuthentication::from_spec`
/// both come here, so an object one refuses the other refuses too.
pub(crate) fn peer_authentication_metadata(
    name: &str,
    namespace: &str,
    creation_timestamp: Option<&str>,
    at: &Lines,
) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    if name.is_empty() {
        out.push(at.diag(
            d::PA_MISSING_NAME.diagnostic(
                "PeerAuthentication has no name: istiod orders competing policies by age, then name",
                "set `metadata.name`",
            ),
            "/metadata",
        ));
    }
    // No pod can be in such a namespace, so a STRICT policy there would
    // silently apply to nothing.
    if !is_namespace_name(namespace) {
        out.push(at.diag(
            d::PA_INVALID_NAMESPACE.diagnostic(
                format!("namespace {namespace:?} is not a Kubernetes namespace name (lowercase letters, digits and '-', at most 63)"),
                "use the namespace's name exactly as `kubectl get namespaces` prints it",
            ),
            "/metadata/namespace",
        ));
    }
    if let Some(t) = creation_timestamp.filter(|t| crate::timestamp::parse_timestamp(t).is_none()) {
        out.push(at.diag(
            d::PA_INVALID_TIMESTAMP.diagnostic(
                format!("creationTimestamp {t:?} is not an RFC 3339 time; the policy is ordered as the newest"),
                "write it like 2024-01-02T03:04:05Z, or remove it",
            ),
            "/metadata/creationTimestamp",
        ));
    }
    out
}

/// Whether `name` can name a Kubernetes namespace: an RFC 1123 label (at most
/// 63 lowercase letters, digits and `-`, starting and ending with a letter or
/// digit), as the API server requires of `metadata.namespace`.
pub fn is_namespace_name(name: &str) -> bool {
    let b = name.as_bytes();
    let edge = |c: Option<&u8>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    (1..=63).contains(&b.len())
        && edge(b.first())
        && edge(b.last())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// Whether `key` can be a Kubernetes label key: an optional DNS subdomain
/// prefix and `/`, then a name of at most 63 letters, digits, `-`, `_` and
/// `.` that starts and ends with a letter or digit (apimachinery's qualified
/// name).
pub fn is_label_key(key: &str) -> bool {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let prefix_ok =
        prefix.is_none_or(|p| (1..=253).contains(&p.len()) && p.split('.').all(is_namespace_name));
    prefix_ok && !name.is_empty() && is_label_value(name)
}

/// Whether `value` can be a Kubernetes label value: empty, or at most 63
/// letters, digits, `-`, `_` and `.` starting and ending with a letter or digit.
pub fn is_label_value(value: &str) -> bool {
    let b = value.as_bytes();
    let edge = |c: Option<&u8>| c.is_some_and(u8::is_ascii_alphanumeric);
    b.is_empty()
        || (b.len() <= 63
            && edge(b.first())
            && edge(b.last())
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.')))
}
