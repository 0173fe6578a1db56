//! Domain types: resources after validation, and the `Mesh` they form.

use crate::diagnostic::{Diagnostic, Location, Severity};
use crate::mode::{MtlsMode, TlsMode};
use crate::model::{
    ContainerPort, Located, MtlsSpec, PeerAuthenticationSpec, Resource, ServicePort, TlsSettings,
};
use crate::validate::{self, Lines};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Mesh-wide settings istiod takes from `MeshConfig`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshConfig {
    /// `meshConfig.rootNamespace`, default `istio-system`.
    pub root_namespace: String,
    /// `meshConfig.enableAutoMtls`, default true.
    pub auto_mtls: bool,
    /// Cluster DNS suffix, default `cluster.local`.
    pub cluster_domain: String,
}

impl Default for MeshConfig {
    fn default() -> Self {
        Self {
            root_namespace: "istio-system".into(),
            auto_mtls: true,
            cluster_domain: "cluster.local".into(),
        }
    }
}

/// A valid PeerAuthentication (modes parsed, ports numeric).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerAuthentication {
    pub name: String,
    pub namespace: String,
    pub creation_timestamp: Option<String>,
    /// `None` = no selector; `Some(empty)` = `selector: {}` (istiod: namespace-wide).
    pub selector: Option<BTreeMap<String, String>>,
    /// `Unset` when `mtls` or its mode is missing.
    pub mode: MtlsMode,
    pub port_level: BTreeMap<u32, MtlsMode>,
    pub location: Location,
}

impl PeerAuthentication {
    /// Build from a wire spec (used by the filter's pluginConfig). `Err` carries
    /// every validation diagnostic with severity error; warnings are dropped.
    /// An unset `mtls` (or mode) becomes `Unset`; a `portLevelMtls` entry
    /// without a mode becomes `Unset` (it inherits the workload's mode).
    pub fn from_spec(
        name: &str,
        namespace: &str,
        creation_timestamp: Option<&str>,
        spec: &PeerAuthenticationSpec,
    ) -> Result<Self, Vec<Diagnostic>> {
        let location = Location::default();
        let field_lines = BTreeMap::new();
        let at = Lines {
            location: &location,
            field_lines: &field_lines,
        };
        let errors: Vec<Diagnostic> = validate::peer_authentication(spec, &at)
            .into_iter()
            .filter(|d| d.severity == Severity::Error)
            .map(|d| d.on("PeerAuthentication", namespace, name))
            .collect();
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self::from_valid_spec(
            name,
            namespace,
            creation_timestamp,
            spec,
            location,
        ))
    }

    /// Conversion of a spec that passed validation (unknown modes read as `Unset`).
    fn from_valid_spec(
        name: &str,
        namespace: &str,
        creation_timestamp: Option<&str>,
        spec: &PeerAuthenticationSpec,
        location: Location,
    ) -> Self {
        let mode_of = |m: Option<&MtlsSpec>| {
            m.and_then(|m| m.mode.as_deref())
                .and_then(|m| m.parse().ok())
                .unwrap_or(MtlsMode::Unset)
        };
        Self {
            name: name.to_string(),
            namespace: namespace.to_string(),
            creation_timestamp: creation_timestamp.map(str::to_string),
            selector: spec.selector.as_ref().map(|s| s.match_labels.clone()),
            mode: mode_of(spec.mtls.as_ref()),
            port_level: spec
                .port_level_mtls
                .iter()
                .flatten()
                .filter_map(|(port, m)| Some((validate::parse_port(port)?, mode_of(Some(m)))))
                .collect(),
            location,
        }
    }

    /// `true` for a mesh- or namespace-wide policy: no selector, or an empty
    /// `matchLabels` (istiod's reading; Kiali's differs).
    pub fn is_namespace_wide(&self) -> bool {
        self.selector.as_ref().is_none_or(BTreeMap::is_empty)
    }

    /// Whether this policy's selector picks a pod with `labels` (subset match).
    /// Namespace-wide policies select every pod.
    pub fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        self.selector
            .iter()
            .flatten()
            .all(|(k, v)| labels.get(k) == Some(v))
    }

    /// istiod's ordering key: creationTimestamp (missing or unparsable = newest),
    /// then name, then namespace.
    pub fn age_key(&self) -> (i128, &str, &str) {
        let t = self
            .creation_timestamp
            .as_deref()
            .and_then(parse_timestamp)
            .unwrap_or(i128::MAX);
        (t, self.name.as_str(), self.namespace.as_str())
    }
}

/// Parse an RFC 3339 timestamp (`2024-01-02T03:04:05Z`, with optional
/// fraction and `+hh:mm` offset) to nanoseconds since the Unix epoch.
/// `None` when it is not one.
pub fn parse_timestamp(s: &str) -> Option<i128> {
    let s = s.trim();
    let (date, rest) = s.split_once(['T', 't', ' '])?;
    let mut d = date.split('-');
    let year: i64 = d.next()?.parse().ok()?;
    let month: u32 = d.next()?.parse().ok()?;
    let day: u32 = d.next()?.parse().ok()?;
    if d.next().is_some()
        || !(0..=9999).contains(&year)
        || !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
    {
        return None;
    }
    let (time, offset_secs) = if let Some(t) = rest.strip_suffix(['Z', 'z']) {
        (t, 0i64)
    } else {
        let i = rest.rfind(['+', '-'])?;
        let (t, off) = rest.split_at(i);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let (h, m) = off.get(1..)?.split_once(':')?;
        let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
        if !(0..=23).contains(&h) || !(0..=59).contains(&m) {
            return None;
        }
        (t, sign * (h * 3600 + m * 60))
    };
    let (hms, frac) = match time.split_once('.') {
        Some((hms, frac)) => (hms, frac),
        None => (time, ""),
    };
    let mut t = hms.split(':');
    let h: i64 = t.next()?.parse().ok()?;
    let mi: i64 = t.next()?.parse().ok()?;
    let sec: i64 = t.next()?.parse().ok()?;
    if t.next().is_some()
        || !(0..=23).contains(&h)
        || !(0..=59).contains(&mi)
        || !(0..=60).contains(&sec)
    {
        return None;
    }
    let mut nanos: i128 = 0;
    if !frac.is_empty() {
        if !frac.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
        nanos = digits.parse().ok()?;
    }
    let days = days_from_civil(year, month, day);
    let secs =
        i128::from(days) * 86_400 + i128::from(h * 3600 + mi * 60 + sec) - i128::from(offset_secs);
    Some(secs * 1_000_000_000 + nanos)
}

/// Days since 1970-01-01 in the proleptic Gregorian calendar.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestinationRule {
    pub name: String,
    pub namespace: String,
    pub host: String,
    pub tls: Option<TlsMode>,
    /// Keyed by **Service** port.
    pub port_tls: BTreeMap<u32, TlsMode>,
    pub export_to: Vec<String>,
    pub location: Location,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workload {
    pub name: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub sidecar: bool,
    pub ports: Vec<ContainerPort>,
    pub location: Location,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub name: String,
    pub namespace: String,
    pub selector: BTreeMap<String, String>,
    pub ports: Vec<ServicePort>,
    pub location: Location,
}

/// Everything the rules look at.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Mesh {
    pub config: MeshConfig,
    pub peer_authentications: Vec<PeerAuthentication>,
    pub destination_rules: Vec<DestinationRule>,
    pub workloads: Vec<Workload>,
    pub services: Vec<Service>,
    /// Namespace name → whether sidecar injection is on (`istio-injection=enabled`
    /// or an `istio.io/rev` label).
    pub namespaces: BTreeMap<String, bool>,
}

impl Mesh {
    /// Build a mesh from loaded resources; invalid resources are left out and
    /// reported (validation errors and warnings are all returned).
    ///
    /// Sidecar rule (Istio's injection webhook, simplified): a namespace injects
    /// when it has `istio-injection=enabled` or an `istio.io/rev` label (and not
    /// `istio-injection=disabled`). The pod's `sidecar.istio.io/inject` *label*
    /// wins over the annotation of the same name. In an injecting namespace, a
    /// value other than y/yes/true/on turns injection off; in any other
    /// namespace only a truthy *label* turns it on (the webhook's object
    /// selector sees labels, not annotations). A namespace never declared
    /// does not inject.
    pub fn build(resources: &[Located<Resource>], config: MeshConfig) -> (Mesh, Vec<Diagnostic>) {
        let mut mesh = Mesh {
            config,
            ..Mesh::default()
        };
        let mut diagnostics = Vec::new();
        for r in resources {
            if let Resource::Namespace { meta } = &r.value {
                let labels = &meta.labels;
                let enabled = labels.get("istio-injection").map(String::as_str) != Some("disabled")
                    && (labels.get("istio-injection").map(String::as_str) == Some("enabled")
                        || labels.contains_key("istio.io/rev"));
                mesh.namespaces.insert(meta.name.clone(), enabled);
            }
        }
        for r in resources {
            let found = validate::resource(r, &mesh.config);
            let invalid = found.iter().any(|d| d.severity == Severity::Error);
            diagnostics.extend(found);
            if invalid {
                continue;
            }
            let location = r.location.clone();
            match &r.value {
                Resource::Namespace { .. } => {}
                Resource::PeerAuthentication { meta, spec, .. } => {
                    let namespace = validate::namespace_of(meta);
                    mesh.peer_authentications
                        .push(PeerAuthentication::from_valid_spec(
                            &meta.name,
                            &namespace,
                            meta.creation_timestamp.as_deref(),
                            spec,
                            location,
                        ));
                }
                Resource::DestinationRule { meta, spec, .. } => {
                    let mode = |t: Option<&TlsSettings>| {
                        t.and_then(|t| t.mode.as_deref())
                            .and_then(|m| m.parse().ok())
                    };
                    let policy = spec.traffic_policy.as_ref();
                    mesh.destination_rules.push(DestinationRule {
                        name: meta.name.clone(),
                        namespace: validate::namespace_of(meta),
                        host: spec.host.trim().to_string(),
                        tls: mode(policy.and_then(|p| p.tls.as_ref())),
                        port_tls: policy
                            .iter()
                            .flat_map(|p| &p.port_level_settings)
                            .filter_map(|s| Some((s.port.as_ref()?.number?, mode(s.tls.as_ref())?)))
                            .collect(),
                        export_to: spec.export_to.clone(),
                        location,
                    });
                }
                Resource::Workload {
                    meta,
                    pod_labels,
                    pod_annotations,
                    ports,
                    ..
                } => {
                    let namespace = validate::namespace_of(meta);
                    let ns_injects = mesh.namespaces.get(&namespace).copied().unwrap_or(false);
                    let ns_disabled = resources.iter().any(|r| {
                        matches!(&r.value, Resource::Namespace { meta } if meta.name == namespace
                            && meta.labels.get("istio-injection").map(String::as_str) == Some("disabled"))
                    });
                    mesh.workloads.push(Workload {
                        name: meta.name.clone(),
                        namespace,
                        labels: pod_labels.clone(),
                        sidecar: sidecar_injected(
                            ns_injects,
                            ns_disabled,
                            pod_labels,
                            pod_annotations,
                        ),
                        ports: ports.clone(),
                        location,
                    });
                }
                Resource::Service {
                    meta,
                    selector,
                    ports,
                } => mesh.services.push(Service {
                    name: meta.name.clone(),
                    namespace: validate::namespace_of(meta),
                    selector: selector.clone(),
                    ports: ports.clone(),
                    location,
                }),
            }
        }
        let used: Vec<String> = mesh
            .peer_authentications
            .iter()
            .map(|p| p.namespace.clone())
            .chain(mesh.destination_rules.iter().map(|d| d.namespace.clone()))
            .chain(mesh.workloads.iter().map(|w| w.namespace.clone()))
            .chain(mesh.services.iter().map(|s| s.namespace.clone()))
            .collect();
        for ns in used {
            mesh.namespaces.entry(ns).or_insert(false);
        }
        (mesh, diagnostics)
    }

    /// Workloads a service selects (see [`Service::selects`]), in mesh order.
    pub fn endpoints<'m>(
        &'m self,
        service: &'m Service,
    ) -> impl Iterator<Item = &'m Workload> + 'm {
        self.workloads.iter().filter(move |w| service.selects(w))
    }
}

impl Service {
    /// Whether this service routes to `workload`: same namespace and a
    /// non-empty selector whose labels are a subset of the pod's (a Service
    /// without selector has no endpoints Kubernetes manages).
    pub fn selects(&self, workload: &Workload) -> bool {
        workload.namespace == self.namespace
            && !self.selector.is_empty()
            && self
                .selector
                .iter()
                .all(|(k, v)| workload.labels.get(k) == Some(v))
    }
}

/// Istio's `injectRequired`, reduced to labels and annotations.
fn sidecar_injected(
    namespace_injects: bool,
    namespace_disabled: bool,
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
) -> bool {
    const KEY: &str = "sidecar.istio.io/inject";
    if namespace_disabled {
        return false;
    }
    let truthy = |v: &str| matches!(v.to_ascii_lowercase().as_str(), "y" | "yes" | "true" | "on");
    let label = labels.get(KEY);
    let value = label.or_else(|| annotations.get(KEY)).map(String::as_str);
    if namespace_injects {
        value.is_none_or(|v| v.is_empty() || truthy(v))
    } else {
        label.is_some_and(|v| truthy(v))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn timestamps_parse_to_ordered_instants() {
        let a = parse_timestamp("2024-01-02T03:04:05Z").unwrap();
        let b = parse_timestamp("2024-01-02T03:04:06Z").unwrap();
        let c = parse_timestamp("2024-01-02T04:04:05.5+01:00").unwrap();
        assert!(a < b);
        assert_eq!(c - a, 500_000_000);
        assert_eq!(parse_timestamp("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_timestamp("yesterday"), None);
        assert_eq!(parse_timestamp("2024-13-01T00:00:00Z"), None);
    }

    proptest::proptest! {
        #[test]
        fn timestamp_parsing_never_panics(s in "\\PC{0,40}", n in proptest::num::i64::ANY) {
            let _ = parse_timestamp(&s);
            let _ = parse_timestamp(&format!("{n}-01-01T00:00:00Z"));
            let _ = parse_timestamp(&format!("2024-01-01T{n}:00:00+{n}:{n}"));
        }
    }

    #[test]
    fn injection_follows_namespace_label_and_pod_opt_out() {
        let none = BTreeMap::new();
        assert!(sidecar_injected(true, false, &none, &none));
        assert!(!sidecar_injected(false, false, &none, &none));
        let off = map(&[("sidecar.istio.io/inject", "false")]);
        assert!(!sidecar_injected(true, false, &none, &off));
        assert!(!sidecar_injected(true, false, &off, &none));
    }

    #[test]
    fn pod_label_true_injects_outside_injecting_namespaces_but_annotation_does_not() {
        let on = map(&[("sidecar.istio.io/inject", "true")]);
        let none = BTreeMap::new();
        assert!(sidecar_injected(false, false, &on, &none));
        assert!(!sidecar_injected(false, false, &none, &on));
        assert!(!sidecar_injected(false, true, &on, &none));
    }

    #[test]
    fn the_injection_label_wins_over_the_annotation() {
        let label_on = map(&[("sidecar.istio.io/inject", "true")]);
        let annotation_off = map(&[("sidecar.istio.io/inject", "false")]);
        assert!(sidecar_injected(true, false, &label_on, &annotation_off));
        assert!(!sidecar_injected(true, false, &annotation_off, &label_on));
    }

    #[test]
    fn from_spec_rejects_port_level_on_a_namespace_wide_policy() {
        let spec: PeerAuthenticationSpec = serde_json::from_value(
            serde_json::json!({"portLevelMtls": {"80": {"mode": "DISABLE"}}}),
        )
        .unwrap();
        let errors = PeerAuthentication::from_spec("p", "foo", None, &spec).unwrap_err();
        assert!(
            errors
                .iter()
                .any(|d| d.code == "pa-port-level-without-selector"),
            "{errors:?}"
        );
    }

    #[test]
    fn from_spec_reads_modes_and_ports() {
        let spec: PeerAuthenticationSpec = serde_json::from_value(serde_json::json!({
            "selector": {"matchLabels": {"app": "httpbin"}},
            "mtls": {"mode": "STRICT"},
            "portLevelMtls": {"80": {"mode": "DISABLE"}, "81": {}}
        }))
        .unwrap();
        let pa =
            PeerAuthentication::from_spec("p", "foo", Some("2024-01-01T00:00:00Z"), &spec).unwrap();
        assert_eq!(pa.mode, MtlsMode::Strict);
        assert_eq!(pa.port_level.get(&80), Some(&MtlsMode::Disable));
        assert_eq!(pa.port_level.get(&81), Some(&MtlsMode::Unset));
        assert!(!pa.is_namespace_wide());
        assert!(pa.selects(&map(&[("app", "httpbin"), ("version", "v1")])));
        assert!(!pa.selects(&map(&[("app", "sleep")])));
    }
}
