//! Cross-resource mTLS analysis (the retired `istioctl analyze` IST0113–IST0115
//! checks and Kiali's KIA0xxx mTLS validations).
//!
//! Config-only checks (several policies at one level, selectors that match
//! nothing, portLevelMtls keys that are Service ports, DestinationRules that
//! contradict the server's mode) look at the resources; the "who gets reset"
//! checks run the client × server matrix over the loaded workloads.

use crate::diagnostic::{self as d, Diagnostic, Location, Rule};
use crate::mesh::{DestinationRule, Mesh, PeerAuthentication, Service, Workload};
use crate::mode::{MtlsMode, TlsMode};
use crate::ports::target_port;
use crate::reach::{Reach, Reason};
use crate::resolve::{Level, Resolution};
use crate::validate::Lines;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Every cross-resource finding for the mesh.
pub fn run(mesh: &Mesh) -> Vec<Diagnostic> {
    findings(mesh).into_iter().map(|f| f.diag).collect()
}

/// [`run`], with each finding moved to the line of the field it is about when
/// `field_lines` knows the resource's field lines (as `check` does).
pub(crate) fn run_with_lines<'a>(
    mesh: &Mesh,
    field_lines: impl Fn(&Location) -> Option<&'a BTreeMap<String, u32>>,
) -> Vec<Diagnostic> {
    findings(mesh)
        .into_iter()
        .map(|f| {
            let Finding { mut diag, path } = f;
            if let (Some(path), Some(location)) = (path, diag.location.as_mut()) {
                if let Some(lines) = field_lines(location) {
                    location.line = Lines {
                        location,
                        field_lines: lines,
                    }
                    .line(&path);
                }
            }
            diag
        })
        .collect()
}

/// A diagnostic plus the JSON pointer of the field it concerns.
struct Finding {
    diag: Diagnostic,
    path: Option<String>,
}

/// The mesh with the lookups every rule repeats built once.
struct Ctx<'m> {
    mesh: &'m Mesh,
    reach: Reach<'m>,
    /// Workloads by namespace, in mesh order.
    workloads: HashMap<&'m str, Vec<&'m Workload>>,
    /// Services by namespace, in mesh order.
    services: HashMap<&'m str, Vec<&'m Service>>,
    /// The first policy of each namespace/name.
    policies: HashMap<(&'m str, &'m str), &'m PeerAuthentication>,
}

impl<'m> Ctx<'m> {
    fn new(mesh: &'m Mesh) -> Self {
        let mut workloads: HashMap<&str, Vec<&Workload>> = HashMap::new();
        for w in &mesh.workloads {
            workloads.entry(w.namespace.as_str()).or_default().push(w);
        }
        let mut services: HashMap<&str, Vec<&Service>> = HashMap::new();
        for s in &mesh.services {
            services.entry(s.namespace.as_str()).or_default().push(s);
        }
        let mut policies = HashMap::new();
        for p in &mesh.peer_authentications {
            policies
                .entry((p.namespace.as_str(), p.name.as_str()))
                .or_insert(p);
        }
        Self {
            mesh,
            reach: mesh.reach(),
            workloads,
            services,
            policies,
        }
    }

    fn workloads_in(&self, namespace: &str) -> &[&'m Workload] {
        self.workloads.get(namespace).map_or(&[], Vec::as_slice)
    }

    /// Services selecting `workload` (only its namespace's can), in mesh order.
    fn services_of<'a>(&'a self, workload: &'a Workload) -> impl Iterator<Item = &'m Service> + 'a {
        self.services
            .get(workload.namespace.as_str())
            .into_iter()
            .flatten()
            .copied()
            .filter(move |s| s.selects(workload))
    }

    /// [`Mesh::served_ports`], looking only at the workload's namespace's Services.
    fn served_ports(&self, workload: &Workload) -> BTreeSet<u32> {
        crate::ports::served_ports(workload, self.services_of(workload))
    }

    fn resolve_port(&self, server: &Workload, port: u32) -> Resolution {
        self.reach
            .resolver()
            .resolve_port(&server.namespace, &server.labels, port)
    }

    /// The policy that decided a resolution's mode (the last step declaring a mode).
    fn deciding_policy(&self, r: &Resolution) -> Option<&'m PeerAuthentication> {
        let step = r
            .steps
            .iter()
            .rev()
            .find(|s| s.declared != MtlsMode::Unset)?;
        let policy = step.policy.as_ref()?;
        self.policies
            .get(&(policy.namespace.as_str(), policy.name.as_str()))
            .copied()
    }
}

fn findings(mesh: &Mesh) -> Vec<Finding> {
    let ctx = Ctx::new(mesh);
    let mut out = Vec::new();
    several_namespace_wide(mesh, &mut out);
    several_workload_policies(&ctx, &mut out);
    selectors_matching_nothing(&ctx, &mut out);
    port_level_keys(&ctx, &mut out);
    destination_rules(&ctx, &mut out);
    resets(&ctx, &mut out);
    ambient_disable(&ctx, &mut out);
    ambient_selector_without_labels(&ctx, &mut out);
    ambient_sidecar_only_annotations(mesh, &mut out);
    wasmplugin_selector_on_ambient(&ctx, &mut out);
    waypoints_missing(mesh, &mut out);
    wasmplugin_ports_on_waypoint(mesh, &mut out);
    out
}

/// istiod builds a waypoint's HTTP filters per Service with a listener info
/// that has no port (istio/istio `pilot/pkg/networking/core/listener_waypoint.go`),
/// and `matchPorts` (`pilot/pkg/model/extensions.go`) never matches port 0.
fn wasmplugin_ports_on_waypoint(mesh: &Mesh, out: &mut Vec<Finding>) {
    for p in mesh.wasm_plugins.iter().filter(|p| p.selects_ports) {
        let waypoint = p.target_refs.iter().find(|r| {
            let ns = r.namespace.as_deref().unwrap_or(&p.namespace);
            // `kind: Service` targets are waypoint-only (istio/api wasm.proto);
            // a Gateway only when it is a known waypoint (ingress gateways match ports).
            r.kind == "Service"
                || (r.kind == "Gateway"
                    && mesh
                        .waypoints
                        .iter()
                        .any(|g| g.name == r.name && g.namespace == ns))
        });
        let Some(target) = waypoint else {
            continue;
        };
        let diag = d::WASMPLUGIN_PORTS_ON_WAYPOINT
            .diagnostic(
                format!(
                    "WasmPlugin {}/{} targets waypoint {} {} but its `match` selects ports: istiod matches waypoint plugins without a port, so the plugin is never applied",
                    p.namespace, p.name, target.kind, target.name
                ),
                "remove `ports` from `match` (a waypoint plugin applies to every port of its targets)",
            )
            .on("WasmPlugin", &p.namespace, &p.name)
            .at(p.location.clone());
        out.push(Finding {
            diag,
            path: Some("/spec/match".to_string()),
        });
    }
}

fn disable_path(p: &PeerAuthentication) -> Option<String> {
    if p.mode == MtlsMode::Disable {
        return Some("/spec/mtls/mode".to_string());
    }
    p.port_level
        .iter()
        .find(|(_, &m)| m == MtlsMode::Disable)
        .map(|(port, _)| format!("/spec/portLevelMtls/{port}/mode"))
}

/// DISABLE that reaches ambient workloads: istiod's ztunnel conversion
/// treats it as "not strict" (policy/src/ambient.rs); nothing turns HBONE off.
fn ambient_disable(ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
    let mesh = ctx.mesh;
    if mesh.ambient_namespaces.is_empty() && !mesh.workloads.iter().any(|w| w.ambient) {
        return;
    }
    let mut hit: Vec<&PeerAuthentication> = Vec::new();
    for w in mesh.workloads.iter().filter(|w| w.ambient) {
        for p in ctx
            .reach
            .resolver()
            .ambient_winners(&w.namespace, &w.labels)
            .into_iter()
            .flatten()
        {
            if disable_path(p).is_some() && !hit.contains(&p) {
                hit.push(p);
            }
        }
    }
    for p in &mesh.peer_authentications {
        if !mesh.ambient_namespaces.contains(&p.namespace) || disable_path(p).is_none() {
            continue;
        }
        // A selector policy that selects only sidecar workloads is theirs to keep.
        if !p.is_namespace_wide() {
            let selected: Vec<&&Workload> = ctx
                .workloads_in(&p.namespace)
                .iter()
                .filter(|w| p.selects(&w.labels))
                .collect();
            if !selected.is_empty() && !selected.iter().any(|w| w.ambient) {
                continue;
            }
        }
        if !hit.contains(&p) {
            hit.push(p);
        }
    }
    for p in hit {
        let diag = d::AMBIENT_DISABLE.diagnostic(
            format!(
                "{}/{} sets DISABLE for ambient workloads: ztunnel does not support DISABLE and treats it as PERMISSIVE (plaintext from outside the mesh is accepted; mesh traffic stays HBONE mTLS)",
                p.namespace, p.name
            ),
            "use PERMISSIVE to accept plaintext in ambient mode; mTLS between ambient workloads cannot be turned off",
        );
        out.push(on_policy(diag, p, disable_path(p)));
    }
}

/// istiod's ambient index reads "namespace-wide" as "no `selector`" where
/// it fetches root policies for other namespaces and where it picks a
/// conversion's parents ([`crate::resolve::Resolver::ambient_winners`],
/// [`crate::ambient::ConversionParents`]), so `selector: {}` does less for
/// ambient workloads than the sidecar reading (`pa-selector-without-labels`)
/// suggests.
fn ambient_selector_without_labels(ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
    let mesh = ctx.mesh;
    let root = ctx.reach.resolver().root();
    let ambient_in = |ns: &str| {
        mesh.ambient_namespaces.contains(ns) || ctx.workloads_in(ns).iter().any(|w| w.ambient)
    };
    for p in &mesh.peer_authentications {
        if p.selector.as_ref().is_none_or(|s| !s.is_empty()) {
            continue;
        }
        let message = if p.namespace == root {
            let elsewhere = mesh.ambient_namespaces.iter().any(|n| n != root)
                || mesh
                    .workloads
                    .iter()
                    .any(|w| w.ambient && w.namespace != root);
            if !elsewhere {
                continue;
            }
            format!(
                "{}/{} has `selector` without labels: istiod's ambient index does not read it as mesh-wide, so ambient workloads outside {root} get nothing from it",
                p.namespace, p.name
            )
        } else {
            if !ambient_in(&p.namespace) {
                continue;
            }
            format!(
                "{}/{} has `selector` without labels: for ambient workloads istiod reads it as namespace-wide when it picks their policies but not when it converts a workload policy's portLevelMtls, which then ignores this policy's mode",
                p.namespace, p.name
            )
        };
        let diag = d::AMBIENT_SELECTOR_WITHOUT_LABELS.diagnostic(
            message,
            "delete the `selector` field: without it the policy is namespace-wide (mesh-wide in the root namespace) for ambient workloads too",
        );
        out.push(on_policy(diag, p, selector_path()));
    }
}

fn ambient_sidecar_only_annotations(mesh: &Mesh, out: &mut Vec<Finding>) {
    for w in mesh
        .workloads
        .iter()
        .filter(|w| !w.sidecar_only_annotations.is_empty())
    {
        let diag = d::AMBIENT_SIDECAR_ONLY_ANNOTATION
            .diagnostic(
                format!(
                    "{}.{} is ambient but sets {}: only sidecar traffic redirection reads these; ztunnel captures every port",
                    w.name,
                    w.namespace,
                    w.sidecar_only_annotations.join(", ")
                ),
                "remove them; to keep inbound traffic away from ztunnel use ambient.istio.io/bypass-inbound-capture, or opt the pod out with istio.io/dataplane-mode: none",
            )
            .on("Workload", &w.namespace, &w.name)
            .at(w.location.clone());
        out.push(Finding {
            diag,
            path: Some("/spec/template/metadata/annotations".to_string()),
        });
    }
}

/// istio/api `extensions/v1alpha1/wasm.proto`: waypoints ignore `selector`;
/// an ambient pod has no Envoy for the plugin to run in.
fn wasmplugin_selector_on_ambient(ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
    for p in &ctx.mesh.wasm_plugins {
        let Some(selector) = &p.selector else {
            continue;
        };
        let selected: Vec<&&Workload> = ctx
            .workloads_in(&p.namespace)
            .iter()
            .filter(|w| selector.iter().all(|(k, v)| w.labels.get(k) == Some(v)))
            .collect();
        if selected.is_empty() || selected.iter().any(|w| w.sidecar) {
            continue;
        }
        let Some(ambient) = selected.iter().find(|w| w.ambient) else {
            continue;
        };
        let waypoint = ambient
            .use_waypoint
            .as_deref()
            .unwrap_or("<waypoint>")
            .rsplit('/')
            .next()
            .unwrap_or("<waypoint>");
        let diag = d::WASMPLUGIN_SELECTOR_ON_AMBIENT
            .diagnostic(
                format!(
                    "WasmPlugin {}/{} selects {}.{} by `selector`, but it is ambient: no sidecar runs the plugin and waypoints ignore `selector`, so it runs nowhere",
                    p.namespace, p.name, ambient.name, ambient.namespace
                ),
                format!("attach it to the waypoint with targetRefs: [{{kind: Gateway, group: gateway.networking.k8s.io, name: {waypoint}}}] instead of selector"),
            )
            .on("WasmPlugin", &p.namespace, &p.name)
            .at(p.location.clone());
        out.push(Finding {
            diag,
            path: Some("/spec/selector".to_string()),
        });
    }
}

fn waypoints_missing(mesh: &Mesh, out: &mut Vec<Finding>) {
    let exists = |from_ns: &str, wanted: &str| {
        let (ns, name) = wanted.split_once('/').unwrap_or((from_ns, wanted));
        mesh.waypoints
            .iter()
            .any(|g| g.namespace == ns && g.name == name)
    };
    let mut report = |kind: &str, ns: &str, name: &str, wanted: &str, at: Option<&Location>| {
        let what = if kind == "Namespace" {
            format!("Namespace {name}")
        } else {
            format!("{kind} {ns}/{name}")
        };
        let mut diag = d::WAYPOINT_MISSING
            .diagnostic(
                format!(
                    "{what} uses waypoint {wanted} (istio.io/use-waypoint), but no Gateway of class istio-waypoint named so is in the input: its traffic is not sent through a waypoint"
                ),
                "create the waypoint (istioctl waypoint apply, or a Gateway with gatewayClassName: istio-waypoint) or fix the label; give its file to peerauth too",
            )
            .on(kind, ns, name);
        if let Some(at) = at {
            diag = diag.at(at.clone());
        }
        out.push(Finding {
            diag,
            path: Some("/metadata/labels".to_string()),
        });
    };
    // A namespace's label is reported on the workloads that inherit it (the
    // Namespace's own location is not kept), and on the Namespace itself
    // when none does: an empty namespace is where the next pods will land.
    for (ns, wanted) in &mesh.namespace_waypoints {
        let inherited = mesh.workloads.iter().any(|w| {
            w.namespace == *ns
                && !w.labels.contains_key(crate::ambient::USE_WAYPOINT)
                && w.use_waypoint.as_ref() == Some(wanted)
        });
        if !inherited && !exists(ns, wanted) {
            report("Namespace", ns, ns, wanted, None);
        }
    }
    for w in &mesh.workloads {
        if let Some(wanted) = &w.use_waypoint {
            if !exists(&w.namespace, wanted) {
                report("Workload", &w.namespace, &w.name, wanted, Some(&w.location));
            }
        }
    }
    for s in &mesh.services {
        if let Some(wanted) = &s.use_waypoint {
            if !exists(&s.namespace, wanted) {
                report("Service", &s.namespace, &s.name, wanted, Some(&s.location));
            }
        }
    }
}

fn on_policy(diag: Diagnostic, p: &PeerAuthentication, path: Option<String>) -> Finding {
    let diag = diag
        .on("PeerAuthentication", &p.namespace, &p.name)
        .at(p.location.clone());
    Finding { diag, path }
}

fn on_rule(diag: Diagnostic, dr: &DestinationRule, path: Option<String>) -> Finding {
    let diag = diag
        .on("DestinationRule", &dr.namespace, &dr.name)
        .at(dr.location.clone());
    Finding { diag, path }
}

fn selector_path() -> Option<String> {
    Some("/spec/selector".to_string())
}

fn by_age(mut v: Vec<&PeerAuthentication>) -> Vec<&PeerAuthentication> {
    crate::order::sort_by(&mut v, |a, b| a.age_key().cmp(&b.age_key()));
    v
}

/// KIA0002: only the oldest selector-less (or empty-selector) policy of a namespace counts.
fn several_namespace_wide(mesh: &Mesh, out: &mut Vec<Finding>) {
    let mut by_ns: BTreeMap<&str, Vec<&PeerAuthentication>> = BTreeMap::new();
    for p in mesh
        .peer_authentications
        .iter()
        .filter(|p| p.is_namespace_wide())
    {
        by_ns.entry(p.namespace.as_str()).or_default().push(p);
    }
    for (ns, policies) in by_ns {
        let policies = by_age(policies);
        let Some((winner, newer)) = policies.split_first() else {
            continue;
        };
        let scope = if ns == mesh.config.root_namespace {
            "mesh-wide"
        } else {
            "namespace-wide"
        };
        for p in newer {
            out.push(on_policy(
                d::PA_SEVERAL_NAMESPACE_WIDE.diagnostic(
                    format!(
                        "{scope} policy {ns}/{} is ignored: {ns}/{} is older and istiod uses only the oldest {scope} policy",
                        p.name, winner.name
                    ),
                    format!("merge the two into {ns}/{} and delete {ns}/{}", winner.name, p.name),
                ),
                p,
                None,
            ));
        }
    }
}

/// KIA0003 / istio#48036: several workload policies on one workload are never merged.
fn several_workload_policies(ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
    let mesh = ctx.mesh;
    let mut reported: BTreeSet<(&str, &str, &str)> = BTreeSet::new();
    for w in &mesh.workloads {
        // The workload policies of its namespace that select it, oldest first.
        let mut policies = ctx
            .reach
            .resolver()
            .workload_candidates(&w.namespace, &w.labels);
        let Some(winner) = policies.next() else {
            continue;
        };
        for p in policies {
            if !reported.insert((&p.namespace, &p.name, &w.name)) {
                continue;
            }
            out.push(on_policy(
                d::PA_SEVERAL_WORKLOAD_POLICIES.diagnostic(
                    format!(
                        "{ns}/{} and {ns}/{} both select workload {}; istiod applies only the older {ns}/{} and never merges them (istio/istio#48036)",
                        winner.name, p.name, w.name, winner.name, ns = p.namespace
                    ),
                    format!("move the settings of {} into {} and delete {}", p.name, winner.name, p.name),
                ),
                p,
                selector_path(),
            ));
        }
    }
    // Without workloads, identical selectors are still a certain conflict.
    let mut groups: BTreeMap<(&str, &BTreeMap<String, String>), Vec<&PeerAuthentication>> =
        BTreeMap::new();
    for p in &mesh.peer_authentications {
        if p.is_namespace_wide() || p.namespace == mesh.config.root_namespace {
            continue;
        }
        if !ctx.workloads_in(&p.namespace).is_empty() {
            continue;
        }
        if let Some(selector) = &p.selector {
            groups
                .entry((p.namespace.as_str(), selector))
                .or_default()
                .push(p);
        }
    }
    for ((ns, _), policies) in groups {
        let policies = by_age(policies);
        let Some((winner, newer)) = policies.split_first() else {
            continue;
        };
        for p in newer {
            out.push(on_policy(
                d::PA_SEVERAL_WORKLOAD_POLICIES.diagnostic(
                    format!(
                        "{ns}/{} has the same selector as the older {ns}/{}; istiod applies only {} to those workloads (istio/istio#48036)",
                        p.name, winner.name, winner.name
                    ),
                    format!("move the settings of {} into {} and delete {}", p.name, winner.name, p.name),
                ),
                p,
                selector_path(),
            ));
        }
    }
}

/// KIA0004, only for namespaces whose workloads were given (else we cannot know).
fn selectors_matching_nothing(ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
    let mesh = ctx.mesh;
    for p in &mesh.peer_authentications {
        if p.is_namespace_wide() || p.namespace == mesh.config.root_namespace {
            continue;
        }
        let in_ns = ctx.workloads_in(&p.namespace);
        if in_ns.is_empty() {
            continue;
        }
        if !in_ns.iter().any(|w| p.selects(&w.labels)) {
            let labels: Vec<String> = p
                .selector
                .iter()
                .flatten()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let unmodelled: Vec<&str> = p
                .selector
                .iter()
                .flatten()
                .map(|(k, _)| k.as_str())
                .filter(|k| added_by_istiod(k))
                .collect();
            let caveat = if unmodelled.is_empty() {
                String::new()
            } else {
                format!(
                    " (but {} is added by istiod from the pod's cluster, network, locality or node, which peerauth does not model: a pod may still match)",
                    unmodelled.join(", ")
                )
            };
            out.push(on_policy(
                d::PA_SELECTOR_MATCHES_NO_WORKLOAD.diagnostic(
                    format!(
                        "selector {} of {}/{} matches no workload in namespace {}{caveat}",
                        labels.join(","),
                        p.namespace,
                        p.name,
                        p.namespace
                    ),
                    "fix the labels so they are a subset of the pod's labels (its template's, plus the sidecar injector's on an injected pod), or delete the policy",
                ),
                p,
                selector_path(),
            ));
        }
    }
}

/// Labels istiod adds to every proxy's own labels before matching selectors
/// (istio/istio `pilot/pkg/serviceregistry/util/label/label.go`
/// `AugmentLabels`), from facts no manifest carries.
fn added_by_istiod(key: &str) -> bool {
    key.starts_with("topology.istio.io/")
        || key.starts_with("topology.kubernetes.io/")
        || key == "kubernetes.io/hostname"
}

/// #49098: portLevelMtls is keyed by the container port.
fn port_level_keys(ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
    let mesh = ctx.mesh;
    for p in mesh
        .peer_authentications
        .iter()
        .filter(|p| !p.port_level.is_empty() && !p.is_namespace_wide())
    {
        if p.namespace == mesh.config.root_namespace {
            continue;
        }
        let selected: Vec<&Workload> = ctx
            .workloads_in(&p.namespace)
            .iter()
            .copied()
            .filter(|w| p.selects(&w.labels))
            .collect();
        if selected.is_empty() {
            continue;
        }
        let served = crate::order::set(selected.iter().flat_map(|w| ctx.served_ports(w)));
        for &port in p.port_level.keys() {
            if served.contains(&port) {
                continue;
            }
            let via_service = selected.iter().find_map(|w| {
                ctx.services_of(w).find_map(|s| {
                    let sp = s.ports.iter().find(|sp| u32::from(sp.port) == port)?;
                    Some((s, target_port(w, &sp.target_port)?))
                })
            });
            let diag = match via_service {
                Some((service, target)) => d::PA_PORT_IS_SERVICE_PORT.diagnostic(
                    format!(
                        "portLevelMtls key {port} is the port of Service {}/{}, which forwards to container port {target}; istiod keys portLevelMtls by the container port, so this entry does not apply to that Service's traffic (istio/istio#49098)",
                        service.namespace, service.name
                    ),
                    format!("use {target} (the Service's targetPort) instead of {port}"),
                ),
                None => {
                    let names: Vec<&str> = selected.iter().map(|w| w.name.as_str()).collect();
                    d::PA_PORT_NOT_TARGETED.diagnostic(
                        format!(
                            "portLevelMtls port {port} is not a container port of {} and no Service targets it",
                            names.join(", ")
                        ),
                        "key the entry by a port the workload listens on (a Service targetPort), or remove it",
                    )
                }
            };
            out.push(on_policy(
                diag,
                p,
                Some(format!("/spec/portLevelMtls/{port}")),
            ));
        }
    }
}

fn level_code(level: Level, mesh_code: &'static str, other: &'static str) -> Option<&'static str> {
    Some(if level == Level::Mesh {
        mesh_code
    } else {
        other
    })
}

/// DestinationRules whose TLS mode contradicts the server: IST0115 (mTLS to
/// no sidecar), KIA0505/0506 (mTLS to DISABLE), KIA0207/0208 (DISABLE to
/// STRICT), SIMPLE/MUTUAL to a sidecar (#14130) and to an ambient workload.
fn destination_rules(ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
    let mesh = ctx.mesh;
    if !mesh.destination_rules.is_empty() {
        for service in &mesh.services {
            // Only rules istiod actually picks for some client namespace.
            for dr in ctx.reach.chosen_rules(service) {
                for sp in &service.ports {
                    let Some(mode) = dr.port_tls.get(&u32::from(sp.port)).copied().or(dr.tls)
                    else {
                        continue;
                    };
                    for server in ctx.reach.endpoints(service) {
                        let Some(target) = target_port(server, &sp.target_port) else {
                            continue;
                        };
                        // An app serving TLS itself on the port reads SIMPLE/MUTUAL
                        // origination that a PERMISSIVE or DISABLE sidecar passes through.
                        let tls_app = crate::ports::serves_tls(sp);
                        if let Some(diag) =
                            dr_against_server(ctx, dr, service, sp.port, mode, server, target)
                                .filter(|_| {
                                    // Inside HBONE even a STRICT ambient port lets it through.
                                    !(tls_app
                                        && matches!(mode, TlsMode::Simple | TlsMode::Mutual)
                                        && (server.ambient
                                            || ctx.resolve_port(server, target).mode
                                                != MtlsMode::Strict))
                                })
                        {
                            let path = if dr.port_tls.contains_key(&u32::from(sp.port)) {
                                "/spec/trafficPolicy/portLevelSettings"
                            } else {
                                "/spec/trafficPolicy/tls/mode"
                            };
                            out.push(on_rule(diag, dr, Some(path.to_string())));
                        }
                    }
                }
            }
        }
    }
    dedup(out);
}

fn dr_against_server(
    ctx: &Ctx<'_>,
    dr: &DestinationRule,
    service: &Service,
    port: u16,
    mode: TlsMode,
    server: &Workload,
    target: u32,
) -> Option<Diagnostic> {
    let dest = format!("{}.{}:{port}", service.name, service.namespace);
    // A sidecar sends an ambient endpoint HBONE whatever the rule's mode
    // (istiod `cluster_tls.go` `applyHBONETransportSocketMatches`), and ztunnel
    // knows no DISABLE, so the sidecar-era conflicts below do not apply. What
    // remains is SIMPLE/MUTUAL: the client's own TLS travels inside the tunnel
    // and ztunnel hands those TLS bytes to an app that serves plaintext.
    if server.ambient {
        return matches!(mode, TlsMode::Simple | TlsMode::Mutual).then(|| {
            d::DR_OTHER_TLS_TO_AMBIENT.diagnostic(
                format!(
                    "DestinationRule {}/{} sends {mode} TLS (not Istio mTLS) to {dest}, served by ambient workload {}.{}: sidecar clients using it wrap their own TLS in HBONE, ztunnel delivers the TLS bytes to the app and the requests fail",
                    dr.namespace, dr.name, server.name, server.namespace
                ),
                "remove the tls setting (sidecars reach ambient workloads over HBONE mTLS), or name the Service port https/tls if the app serves TLS itself",
            )
        });
    }
    if !server.sidecar {
        return (mode == TlsMode::IstioMutual).then(|| {
            d::DR_MTLS_TO_NO_SIDECAR.diagnostic(
                format!(
                    "DestinationRule {}/{} makes clients send Istio mTLS to {dest}, but workload {}.{} has no sidecar: the requests fail",
                    dr.namespace, dr.name, server.name, server.namespace
                ),
                "inject a sidecar into the workload, or set the DestinationRule's tls mode to DISABLE for it",
            )
        });
    }
    let r = ctx.resolve_port(server, target);
    let by = ctx
        .deciding_policy(&r)
        .map(|p| format!(" by {}/{}", p.namespace, p.name))
        .unwrap_or_default();
    match (mode, r.mode) {
        (TlsMode::IstioMutual, MtlsMode::Disable) => Some(
            d::DR_MTLS_TO_DISABLED_PORT
                .diagnostic(
                    format!(
                        "DestinationRule {}/{} makes clients send Istio mTLS to {dest}, but container port {target} of {} is DISABLE{by}: TLS bytes reach the app and the requests fail",
                        dr.namespace, dr.name, server.name
                    ),
                    "set the DestinationRule's tls mode to DISABLE for this port, or make the policy PERMISSIVE",
                )
                .with_istio_code(level_code(r.decided_at, "KIA0506", "KIA0505")),
        ),
        (TlsMode::Disable, MtlsMode::Strict) => Some(
            d::DR_DISABLE_TO_STRICT
                .diagnostic(
                    format!(
                        "DestinationRule {}/{} disables TLS towards {dest}, but container port {target} of {} is STRICT{by}: clients using this rule are reset",
                        dr.namespace, dr.name, server.name
                    ),
                    "set the DestinationRule's tls mode to ISTIO_MUTUAL (or remove it), or make the policy PERMISSIVE",
                )
                .with_istio_code(level_code(r.decided_at, "KIA0208", "KIA0207")),
        ),
        (TlsMode::Simple | TlsMode::Mutual, server_mode) => {
            let result = if server_mode == MtlsMode::Strict {
                "STRICT has no filter chain for non-Istio TLS and resets the connection"
            } else {
                "the sidecar passes the TLS bytes to the app as opaque TCP and the requests fail"
            };
            Some(d::DR_OTHER_TLS_TO_SIDECAR.diagnostic(
                format!(
                    "DestinationRule {}/{} sends {mode} TLS (not Istio mTLS) to {dest}, served by sidecar workload {}: {result} (istio/istio#14130)",
                    dr.namespace, dr.name, server.name
                ),
                "use ISTIO_MUTUAL towards workloads with a sidecar",
            ))
        }
        _ => None,
    }
}

/// How many clients a reset finding names; the rest are counted. On a whole
/// cluster thousands of clients without a sidecar call every STRICT port, and
/// naming all of them on every port would make the report grow with the
/// square of the mesh (`peerauth matrix --only reset` lists every cell).
const NAMED_CLIENTS: usize = 20;

/// `a.ns, b.ns, …` for at most [`NAMED_CLIENTS`] clients, then `and N more`.
fn client_list(clients: &[&Workload]) -> String {
    let mut text = String::new();
    for (i, c) in clients.iter().take(NAMED_CLIENTS).enumerate() {
        if i > 0 {
            text.push_str(", ");
        }
        text.push_str(&c.name);
        text.push('.');
        text.push_str(&c.namespace);
    }
    if clients.len() > NAMED_CLIENTS {
        text.push_str(&format!(" and {} more", clients.len() - NAMED_CLIENTS));
    }
    text
}

/// Resets the matrix shows for clients without a sidecar or with auto mTLS off,
/// grouped per server port, naming the clients.
fn resets(ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
    // (code, service namespace, service name, port) → the finding, so they come
    // out in that order as they did when they were collected from the matrix.
    let mut found: BTreeMap<(&'static str, &str, &str, u16), Finding> = BTreeMap::new();
    // Without a sidecar every client's list is one of at most two (with or
    // without the ambient clients, which differ in length): write each once.
    let mut bare_lists: BTreeMap<usize, String> = BTreeMap::new();
    ctx.reach.plaintext_resets(&mut |at, clients| {
        let no_sidecar = at.reason == Reason::NoSidecar;
        let rule: &Rule = if no_sidecar {
            &d::PLAINTEXT_CLIENT_TO_STRICT
        } else {
            &d::STRICT_WITHOUT_MTLS_CLIENTS
        };
        let (service, port) = (at.service, at.service_port);
        let key = (rule.code, service.namespace.as_str(), service.name.as_str(), port);
        if found.contains_key(&key) {
            return;
        }
        let (name, ns) = (&service.name, &service.namespace);
        let r = ctx.resolve_port(at.server, at.target_port);
        let names = if no_sidecar {
            bare_lists
                .entry(clients.len())
                .or_insert_with(|| client_list(clients))
                .clone()
        } else {
            client_list(clients)
        };
        let policy = ctx.deciding_policy(&r);
        let by = policy
            .map(|p| format!(" by {}/{}", p.namespace, p.name))
            .unwrap_or_default();
        let (message, hint) = if no_sidecar {
            (
                format!(
                    "calls from {names} (no sidecar) to {name}.{ns}:{port} are reset: container port {} is STRICT{by}",
                    at.target_port
                ),
                if at.server.ambient {
                    "add those clients to the mesh (istio.io/dataplane-mode: ambient, or a sidecar), or keep the port PERMISSIVE until they are migrated"
                } else {
                    "inject sidecars into those clients, or keep the port PERMISSIVE until they are migrated"
                },
            )
        } else {
            (
                format!(
                    "calls from {names} to {name}.{ns}:{port} are reset: auto mTLS is off, no DestinationRule sets ISTIO_MUTUAL, and container port {} is STRICT{by}",
                    at.target_port
                ),
                "add a DestinationRule with tls mode ISTIO_MUTUAL for the service, or enable auto mTLS",
            )
        };
        let mut diag = rule.diagnostic(message, hint);
        if !no_sidecar {
            diag = diag.with_istio_code(level_code(r.decided_at, "KIA0401", "KIA0501"));
        }
        let finding = match policy {
            Some(p) => {
                let path = if r.decided_at == Level::Port {
                    format!("/spec/portLevelMtls/{}/mode", at.target_port)
                } else {
                    "/spec/mtls/mode".to_string()
                };
                on_policy(diag, p, Some(path))
            }
            None => Finding {
                diag: diag
                    .on("Service", &service.namespace, &service.name)
                    .at(service.location.clone()),
                path: None,
            },
        };
        found.insert(key, finding);
    });
    out.extend(found.into_values());
}

fn dedup(out: &mut Vec<Finding>) {
    let mut seen = BTreeSet::new();
    out.retain(|f| {
        let d = &f.diag;
        seen.insert((
            d.code.clone(),
            d.message.clone(),
            d.resource.as_ref().map(|r| r.name.clone()),
        ))
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use crate::{check, MeshConfig};

    /// `bare` workloads without a sidecar in `legacy`, `sidecars` with one in
    /// `foo`, and a STRICT `httpbin` in `bar`.
    fn mesh(bare: usize, sidecars: usize) -> String {
        let mut text = String::from(
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: foo, labels: {istio-injection: enabled}}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: bar, labels: {istio-injection: enabled}}\n---\nkind: Deployment\nmetadata: {name: httpbin, namespace: bar}\nspec: {template: {metadata: {labels: {app: httpbin}}}}\n---\nkind: Service\nmetadata: {name: httpbin, namespace: bar}\nspec: {selector: {app: httpbin}, ports: [{port: 8000, targetPort: 80}]}\n---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: bar}\nspec: {mtls: {mode: STRICT}}\n",
        );
        for (ns, n) in [("legacy", bare), ("foo", sidecars)] {
            for i in 0..n {
                text += &format!("---\nkind: Deployment\nmetadata: {{name: c{i:02}, namespace: {ns}}}\nspec: {{template: {{metadata: {{labels: {{app: c{i:02}}}}}}}}}\n");
            }
        }
        text
    }

    fn reset_messages(text: &str, auto_mtls: bool) -> Vec<String> {
        let config = MeshConfig {
            auto_mtls,
            ..MeshConfig::default()
        };
        check(&[("m.yaml", text)], config)
            .diagnostics
            .into_iter()
            .filter(|d| {
                d.code == "plaintext-client-to-strict" || d.code == "strict-without-mtls-clients"
            })
            .map(|d| d.message)
            .collect()
    }

    #[test]
    fn a_reset_finding_names_twenty_clients_and_counts_the_rest() {
        let names = |ns: &str, n: usize| -> String {
            (0..n)
                .map(|i| format!("c{i:02}.{ns}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        assert_eq!(
            reset_messages(&mesh(20, 0), true),
            [format!("calls from {} (no sidecar) to httpbin.bar:8000 are reset: container port 80 is STRICT by bar/default", names("legacy", 20))]
        );
        assert_eq!(
            reset_messages(&mesh(25, 0), true),
            [format!("calls from {} and 5 more (no sidecar) to httpbin.bar:8000 are reset: container port 80 is STRICT by bar/default", names("legacy", 20))]
        );
        // With auto mTLS off the sidecar clients are listed the same way (httpbin itself is one).
        let messages = reset_messages(&mesh(0, 22), false);
        assert_eq!(messages.len(), 1, "{messages:?}");
        assert!(
            messages[0].starts_with(&format!(
                "calls from httpbin.bar, {} and 3 more to httpbin.bar:8000",
                names("foo", 19)
            )),
            "{}",
            messages[0]
        );
    }
}
