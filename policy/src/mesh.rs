//! Domain types: resources after validation, and the `Mesh` they form.

pub use crate::config::MeshConfig;
use crate::diagnostic::{self as d, Diagnostic, Location, Severity};
use crate::mode::{MtlsMode, TlsMode};
use crate::model::{
    ContainerPort, Located, MtlsSpec, PeerAuthenticationSpec, Resource, ServicePort, TlsSettings,
};
use crate::timestamp::age_key;
use crate::validate::{self, Lines};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};

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
    /// Build from a wire spec (used by the filter's pluginConfig), checked like
    /// `check` checks an object. `Err` carries every diagnostic with severity
    /// error, and an unparsable creationTimestamp too: `check` predicts with it
    /// ordered as the newest and says so, but a caller that enforces the result
    /// must not guess the order (an older PERMISSIVE policy would win over it).
    /// Other warnings are dropped.
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
        let errors: Vec<Diagnostic> =
            validate::peer_authentication_metadata(name, namespace, creation_timestamp, &at)
                .into_iter()
                .chain(validate::peer_authentication(spec, &at))
                .filter(|diag| {
                    diag.severity == Severity::Error || diag.code == d::PA_INVALID_TIMESTAMP.code
                })
                .map(|diag| diag.on("PeerAuthentication", namespace, name))
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
            port_level: crate::order::map(
                spec.port_level_mtls
                    .iter()
                    .flatten()
                    .filter_map(|(port, m)| Some((validate::parse_port(port)?, mode_of(Some(m))))),
            ),
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
        age_key(
            self.creation_timestamp.as_deref(),
            &self.name,
            &self.namespace,
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestinationRule {
    pub name: String,
    pub namespace: String,
    /// Which of two rules for the same host wins: istiod keeps the oldest
    /// ([`DestinationRule::age_key`]). Left out of the JSON when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<String>,
    pub host: String,
    pub tls: Option<TlsMode>,
    /// Keyed by **Service** port.
    pub port_tls: BTreeMap<u32, TlsMode>,
    pub export_to: Vec<String>,
    pub location: Location,
}

impl DestinationRule {
    /// istiod's order between rules for the same host in one namespace: it
    /// sorts them by creationTimestamp, then name, then namespace, and merges
    /// them in that order keeping the first top-level traffic policy
    /// (`pilot/pkg/model/push_context.go` `setDestinationRules` after
    /// `sortConfigBySelectorAndCreationTime`, `config.go`
    /// `configCompareByCreationTime`). peerauth takes the oldest rule whole;
    /// an older rule with no trafficPolicy at all, which the merge would skip,
    /// is not told apart. A missing or unparsable timestamp sorts as the newest.
    pub fn age_key(&self) -> (i128, &str, &str) {
        age_key(
            self.creation_timestamp.as_deref(),
            &self.name,
            &self.namespace,
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workload {
    pub name: String,
    pub namespace: String,
    /// The live pod's labels, which istiod's selectors match: the pod
    /// template's, plus the injector's ([`crate::inject::labels`]) on a
    /// sidecar pod.
    pub labels: BTreeMap<String, String>,
    pub sidecar: bool,
    /// Captured by ztunnel ([`crate::ambient::data_plane`]); never with `sidecar`.
    /// Left out of the JSON when false, so sidecar-only meshes read as before.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ambient: bool,
    /// `istio.io/use-waypoint` of the pod, else of its namespace.
    /// `name`, or `namespace/name` with `istio.io/use-waypoint-namespace`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_waypoint: Option<String>,
    /// For an ambient pod: its `traffic.sidecar.istio.io/*` annotations,
    /// which only sidecar redirection reads (istio/istio
    /// `cni/pkg/plugin/sidecar_redirect.go`; the ambient node agent reads
    /// only `ambient.istio.io/*`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sidecar_only_annotations: Vec<String>,
    pub ports: Vec<ContainerPort>,
    pub location: Location,
}

impl Workload {
    /// Sidecar, ambient (ztunnel) or none.
    pub fn data_plane(&self) -> crate::ambient::DataPlane {
        use crate::ambient::DataPlane;
        if self.sidecar {
            DataPlane::Sidecar
        } else if self.ambient {
            DataPlane::Ambient
        } else {
            DataPlane::None
        }
    }
}

/// A Gateway API `Gateway` of class `istio-waypoint`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waypoint {
    pub name: String,
    pub namespace: String,
    pub location: Location,
}

/// Where a WasmPlugin attaches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WasmPluginAttachment {
    pub name: String,
    pub namespace: String,
    pub selector: Option<BTreeMap<String, String>>,
    pub target_refs: Vec<crate::model::TargetRef>,
    /// Some `match` entry lists `ports`.
    pub selects_ports: bool,
    pub location: Location,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub name: String,
    pub namespace: String,
    pub selector: BTreeMap<String, String>,
    pub ports: Vec<ServicePort>,
    /// `istio.io/use-waypoint` of the Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_waypoint: Option<String>,
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
    /// Namespaces labelled `istio.io/dataplane-mode: ambient`.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub ambient_namespaces: BTreeSet<String>,
    /// Namespace → its `istio.io/use-waypoint` label.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub namespace_waypoints: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waypoints: Vec<Waypoint>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wasm_plugins: Vec<WasmPluginAttachment>,
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
    /// does not inject. An injected workload's labels gain the injector's
    /// ([`crate::inject`]); an ambient one's do not.
    ///
    /// The same resource (kind, namespace, name) defined more than once is
    /// reported as `resource-duplicate` and only its last valid definition is
    /// used, as `kubectl apply` of the files in order would leave it (an
    /// invalid definition would be rejected, so it replaces nothing).
    pub fn build(resources: &[Located<Resource>], config: MeshConfig) -> (Mesh, Vec<Diagnostic>) {
        let mut mesh = Mesh {
            config,
            ..Mesh::default()
        };
        let mut diagnostics = Vec::new();
        let mut valid = Vec::with_capacity(resources.len());
        for r in resources {
            let found = validate::resource(r, &mesh.config);
            valid.push(!found.iter().any(|d| d.severity == Severity::Error));
            diagnostics.extend(found);
        }
        // Last-applied wins: a definition is used unless a later valid one has its identity.
        let mut used = valid.clone();
        let mut last: HashMap<Identity<'_>, usize> = HashMap::new();
        for (i, r) in resources.iter().enumerate() {
            if !valid.get(i).copied().unwrap_or(false) {
                continue;
            }
            let Some(id) = Identity::of(&r.value) else {
                continue;
            };
            if let Some(earlier) = last.insert(id, i) {
                if let (Some(flag), Some(e)) = (used.get_mut(earlier), resources.get(earlier)) {
                    *flag = false;
                    diagnostics.push(duplicate(&id, e, r));
                }
            }
        }
        let resources: Vec<&Located<Resource>> = resources
            .iter()
            .zip(&used)
            .filter_map(|(r, &used)| used.then_some(r))
            .collect();
        let mut disabled: BTreeSet<&str> = BTreeSet::new();
        let mut namespace_labels: HashMap<&str, &BTreeMap<String, String>> = HashMap::new();
        let no_labels = BTreeMap::new();
        for r in &resources {
            if let Resource::Namespace { meta } = &r.value {
                let labels = &meta.labels;
                let injection = labels.get("istio-injection").map(String::as_str);
                let enabled = injection != Some("disabled")
                    && (injection == Some("enabled") || labels.contains_key("istio.io/rev"));
                if injection == Some("disabled") {
                    disabled.insert(&meta.name);
                }
                mesh.namespaces.insert(meta.name.clone(), enabled);
                if labels
                    .get(crate::ambient::DATAPLANE_MODE)
                    .map(String::as_str)
                    == Some("ambient")
                {
                    mesh.ambient_namespaces.insert(meta.name.clone());
                }
                if let Some(w) = waypoint_of(labels) {
                    mesh.namespace_waypoints.insert(meta.name.clone(), w);
                }
                namespace_labels.insert(meta.name.as_str(), labels);
            }
        }
        for r in resources {
            let location = r.location.clone();
            match &r.value {
                Resource::Namespace { .. } => {}
                Resource::PeerAuthentication { meta, spec, .. } => {
                    let namespace = validate::namespace_of(meta);
                    mesh.peer_authentications
                        .push(PeerAuthentication::from_valid_spec(
                            &meta.name,
                            namespace,
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
                        namespace: validate::namespace_of(meta).to_string(),
                        creation_timestamp: meta.creation_timestamp.clone(),
                        host: spec.host.trim().to_string(),
                        tls: mode(policy.and_then(|p| p.tls.as_ref())),
                        port_tls: crate::order::map(
                            policy
                                .iter()
                                .flat_map(|p| &p.port_level_settings)
                                .filter_map(|s| {
                                    Some((s.port.as_ref()?.number?, mode(s.tls.as_ref())?))
                                }),
                        ),
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
                    let namespace = validate::namespace_of(meta).to_string();
                    let ns_injects = mesh.namespaces.get(&namespace).copied().unwrap_or(false);
                    let ns_disabled = disabled.contains(namespace.as_str());
                    let sidecar =
                        sidecar_injected(ns_injects, ns_disabled, pod_labels, pod_annotations);
                    let ns_labels = namespace_labels
                        .get(namespace.as_str())
                        .copied()
                        .unwrap_or(&no_labels);
                    let ambient = crate::ambient::data_plane(sidecar, ns_labels, pod_labels)
                        == crate::ambient::DataPlane::Ambient;
                    let use_waypoint = if pod_labels.contains_key(crate::ambient::USE_WAYPOINT) {
                        waypoint_of(pod_labels)
                    } else {
                        waypoint_of(ns_labels)
                    };
                    let sidecar_only_annotations = if ambient {
                        pod_annotations
                            .keys()
                            .filter(|k| k.starts_with("traffic.sidecar.istio.io/"))
                            .cloned()
                            .collect()
                    } else {
                        Vec::new()
                    };
                    let labels = if sidecar {
                        crate::inject::labels(&meta.name, pod_labels)
                    } else {
                        pod_labels.clone()
                    };
                    mesh.workloads.push(Workload {
                        name: meta.name.clone(),
                        namespace,
                        labels,
                        sidecar,
                        ambient,
                        use_waypoint,
                        sidecar_only_annotations,
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
                    namespace: validate::namespace_of(meta).to_string(),
                    selector: selector.clone(),
                    ports: ports.clone(),
                    use_waypoint: waypoint_of(&meta.labels),
                    location,
                }),
                Resource::Gateway { meta, class } => {
                    if class == "istio-waypoint" {
                        mesh.waypoints.push(Waypoint {
                            name: meta.name.clone(),
                            namespace: validate::namespace_of(meta).to_string(),
                            location,
                        });
                    }
                }
                Resource::WasmPlugin {
                    meta,
                    selector,
                    target_refs,
                    selects_ports,
                } => mesh.wasm_plugins.push(WasmPluginAttachment {
                    name: meta.name.clone(),
                    namespace: validate::namespace_of(meta).to_string(),
                    selector: selector.clone(),
                    target_refs: target_refs.clone(),
                    selects_ports: *selects_ports,
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

/// What `kubectl apply` tells resources apart by: kind, namespace (none for a
/// Namespace) and name. Every workload kind (`Deployment`, `Pod`, …) is its own kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Identity<'r> {
    kind: &'r str,
    namespace: Option<&'r str>,
    name: &'r str,
}

impl<'r> Identity<'r> {
    /// `None` for a resource without a name (nothing else can replace it).
    fn of(resource: &'r Resource) -> Option<Self> {
        let (kind, meta, namespaced) = match resource {
            Resource::PeerAuthentication { meta, .. } => ("PeerAuthentication", meta, true),
            Resource::DestinationRule { meta, .. } => ("DestinationRule", meta, true),
            Resource::Namespace { meta } => ("Namespace", meta, false),
            Resource::Workload {
                source_kind, meta, ..
            } => (source_kind.as_str(), meta, true),
            Resource::Service { meta, .. } => ("Service", meta, true),
            Resource::Gateway { meta, .. } => ("Gateway", meta, true),
            // Several files of one WasmPlugin are alternative plugins for the
            // seed lab's steps, not one cluster's state: never a duplicate.
            Resource::WasmPlugin { .. } => return None,
        };
        (!meta.name.is_empty()).then_some(Identity {
            kind,
            namespace: namespaced.then(|| validate::namespace_of(meta)),
            name: &meta.name,
        })
    }
}

/// `resource-duplicate` on the `later` definition of `id`, naming both places.
fn duplicate(
    id: &Identity<'_>,
    earlier: &Located<Resource>,
    later: &Located<Resource>,
) -> Diagnostic {
    let at = |l: &Location| format!("{}:{}", l.source, l.line);
    let what = match &id.namespace {
        Some(ns) => format!("{} {ns}/{}", id.kind, id.name),
        None => format!("{} {}", id.kind, id.name),
    };
    crate::diagnostic::RESOURCE_DUPLICATE
        .diagnostic(
            format!(
                "{what} is defined at {} and again at {}: the later definition replaces the earlier one, as `kubectl apply` of both would (only the last definition is checked)",
                at(&earlier.location),
                at(&later.location),
            ),
            "if the files are alternative states of one cluster (like the seed lab's steps), check one state at a time, one folder per run; if both resources should exist, give them different names",
        )
        .on(id.kind, id.namespace.unwrap_or(""), id.name)
        .at(later.location.clone())
}

/// The waypoint an object's labels ask for: `istio.io/use-waypoint`
/// (`none` opts out: `None`), as `namespace/name` when
/// `istio.io/use-waypoint-namespace` names the waypoint's namespace.
fn waypoint_of(labels: &BTreeMap<String, String>) -> Option<String> {
    let name = labels.get(crate::ambient::USE_WAYPOINT)?;
    if name == "none" || name.is_empty() {
        return None;
    }
    Some(match labels.get("istio.io/use-waypoint-namespace") {
        Some(ns) if !ns.is_empty() => format!("{ns}/{name}"),
        _ => name.clone(),
    })
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

    fn pa(name: &str, namespace: &str, spec: &str) -> String {
        format!(
            "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: {name}\n  namespace: {namespace}\nspec:\n{spec}"
        )
    }

    fn duplicates(report: &crate::Report) -> Vec<&Diagnostic> {
        report
            .diagnostics
            .iter()
            .filter(|d| d.code == "resource-duplicate")
            .collect()
    }

    #[test]
    fn a_later_definition_of_the_same_resource_replaces_the_earlier_one() {
        let step_a = pa(
            "httpbin",
            "bar",
            "  selector:\n    matchLabels:\n      app: httpbin\n  mtls:\n    mode: STRICT\n",
        );
        let step_b = pa(
            "httpbin",
            "bar",
            "  selector:\n    matchLabels:\n      app: httpbin\n  mtls:\n    mode: PERMISSIVE\n",
        );
        let report = crate::check(
            &[("a/pa.yaml", &step_a), ("b/pa.yaml", &step_b)],
            MeshConfig::default(),
        );
        let policies = &report.mesh.peer_authentications;
        assert_eq!(policies.len(), 1, "{policies:?}");
        assert_eq!(policies[0].mode, MtlsMode::Permissive);
        assert_eq!(policies[0].location.source, "b/pa.yaml");
        let found = duplicates(&report);
        assert_eq!(found.len(), 1, "{:#?}", report.diagnostics);
        let d = found[0];
        assert_eq!(d.severity, Severity::Warning);
        assert!(
            d.message.starts_with(
                "PeerAuthentication bar/httpbin is defined at a/pa.yaml:1 and again at b/pa.yaml:1"
            ),
            "{}",
            d.message
        );
        assert!(d.message.contains("kubectl apply"), "{}", d.message);
        assert!(d
            .hint
            .as_deref()
            .is_some_and(|h| h.contains("one state at a time")));
        let location = d.location.as_ref().unwrap();
        assert_eq!((location.source.as_str(), location.line), ("b/pa.yaml", 1));
        let resource = d.resource.as_ref().unwrap();
        assert_eq!(
            (
                resource.kind.as_str(),
                resource.namespace.as_str(),
                resource.name.as_str()
            ),
            ("PeerAuthentication", "bar", "httpbin")
        );
    }

    #[test]
    fn a_resource_is_no_longer_compared_with_its_own_earlier_definition() {
        let workload = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: httpbin, namespace: bar}\nspec: {template: {metadata: {labels: {app: httpbin}}}}\n";
        let step = pa(
            "httpbin",
            "bar",
            "  selector:\n    matchLabels:\n      app: httpbin\n  mtls:\n    mode: STRICT\n",
        );
        let wide = pa("default", "foo", "  mtls:\n    mode: STRICT\n");
        let report = crate::check(
            &[
                ("w.yaml", workload),
                ("4.yaml", &step),
                ("5.yaml", &step),
                ("3.yaml", &wide),
                ("6.yaml", &wide),
            ],
            MeshConfig::default(),
        );
        let codes: Vec<&str> = report.diagnostics.iter().map(|d| d.code.as_str()).collect();
        assert_eq!(
            codes,
            ["resource-duplicate", "resource-duplicate"],
            "{:#?}",
            report.diagnostics
        );
    }

    #[test]
    fn with_three_definitions_each_replaces_the_previous_and_the_last_wins() {
        let text: Vec<String> = ["STRICT", "DISABLE", "PERMISSIVE"]
            .iter()
            .map(|m| pa("default", "foo", &format!("  mtls:\n    mode: {m}\n")))
            .collect();
        let report = crate::check(
            &[
                ("1.yaml", &text[0]),
                ("2.yaml", &text[1]),
                ("3.yaml", &text[2]),
            ],
            MeshConfig::default(),
        );
        let found = duplicates(&report);
        let pairs: Vec<(&str, &str)> = found
            .iter()
            .map(|d| {
                let later = d.location.as_ref().unwrap().source.as_str();
                let earlier = if d.message.contains("at 1.yaml:1 and") {
                    "1.yaml"
                } else {
                    "2.yaml"
                };
                (earlier, later)
            })
            .collect();
        assert_eq!(pairs, [("1.yaml", "2.yaml"), ("2.yaml", "3.yaml")]);
        assert_eq!(report.mesh.peer_authentications.len(), 1);
        assert_eq!(
            report.mesh.peer_authentications[0].mode,
            MtlsMode::Permissive
        );
    }

    #[test]
    fn an_invalid_later_definition_replaces_nothing() {
        let good = pa("default", "foo", "  mtls:\n    mode: STRICT\n");
        let bad = pa("default", "foo", "  mtls:\n    mode: STRICTER\n");
        let report = crate::check(
            &[("1.yaml", &good), ("2.yaml", &bad)],
            MeshConfig::default(),
        );
        assert!(duplicates(&report).is_empty(), "{:#?}", report.diagnostics);
        assert!(report
            .diagnostics
            .iter()
            .any(|d| d.code == "pa-unknown-mode"));
        assert_eq!(report.mesh.peer_authentications.len(), 1);
        assert_eq!(report.mesh.peer_authentications[0].mode, MtlsMode::Strict);
    }

    #[test]
    fn same_names_in_other_namespaces_or_of_other_kinds_are_different_resources() {
        let text = [
            pa("httpbin", "foo", "  mtls:\n    mode: STRICT\n"),
            pa("httpbin", "bar", "  mtls:\n    mode: STRICT\n"),
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: httpbin, namespace: foo}\nspec: {host: httpbin}\n".to_string(),
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: httpbin, namespace: foo}\nspec: {template: {metadata: {labels: {app: httpbin}}}}\n".to_string(),
            "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: httpbin, namespace: foo}\nspec: {template: {metadata: {labels: {app: httpbin}}}}\n".to_string(),
            "apiVersion: v1\nkind: Service\nmetadata: {name: httpbin, namespace: foo}\nspec: {selector: {app: httpbin}, ports: [{port: 80}]}\n".to_string(),
        ]
        .join("---\n");
        let report = crate::check(&[("all.yaml", &text)], MeshConfig::default());
        assert!(duplicates(&report).is_empty(), "{:#?}", report.diagnostics);
        assert_eq!(report.mesh.peer_authentications.len(), 2);
        assert_eq!(report.mesh.workloads.len(), 2);
    }

    #[test]
    fn the_last_namespace_definition_decides_injection() {
        let on = "apiVersion: v1\nkind: Namespace\nmetadata: {name: foo, labels: {istio-injection: enabled}}\n";
        let off = "apiVersion: v1\nkind: Namespace\nmetadata: {name: foo, labels: {istio-injection: disabled}}\n";
        let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: foo, labels: {sidecar.istio.io/inject: \"true\"}}\n";
        for (first, second, sidecar) in [(on, off, false), (off, on, true)] {
            let report = crate::check(
                &[("1.yaml", first), ("2.yaml", second), ("pod.yaml", pod)],
                MeshConfig::default(),
            );
            assert_eq!(duplicates(&report).len(), 1);
            let d = duplicates(&report)[0];
            assert!(
                d.message
                    .starts_with("Namespace foo is defined at 1.yaml:1"),
                "{}",
                d.message
            );
            assert_eq!(report.mesh.workloads[0].sidecar, sidecar, "{second}");
        }
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
