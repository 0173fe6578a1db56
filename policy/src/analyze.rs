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
use crate::reach::{Cell, ClientReason, ClientTls, Outcome};
use crate::resolve::{resolve_port, target_port, Level, Resolution};
use crate::validate::Lines;
use std::collections::{BTreeMap, BTreeSet};

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

fn findings(mesh: &Mesh) -> Vec<Finding> {
    let mut out = Vec::new();
    several_namespace_wide(mesh, &mut out);
    several_workload_policies(mesh, &mut out);
    selectors_matching_nothing(mesh, &mut out);
    port_level_keys(mesh, &mut out);
    destination_rules(mesh, &mut out);
    resets(mesh, &mut out);
    out
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
    v.sort_by(|a, b| a.age_key().cmp(&b.age_key()));
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

fn workload_policies<'m>(mesh: &'m Mesh, w: &Workload) -> Vec<&'m PeerAuthentication> {
    by_age(
        mesh.peer_authentications
            .iter()
            .filter(|p| p.namespace == w.namespace && p.namespace != mesh.config.root_namespace)
            .filter(|p| !p.is_namespace_wide() && p.selects(&w.labels))
            .collect(),
    )
}

/// KIA0003 / istio#48036: several workload policies on one workload are never merged.
fn several_workload_policies(mesh: &Mesh, out: &mut Vec<Finding>) {
    let mut reported: BTreeSet<(String, String, String)> = BTreeSet::new();
    for w in &mesh.workloads {
        let policies = workload_policies(mesh, w);
        let Some((winner, newer)) = policies.split_first() else {
            continue;
        };
        for p in newer {
            if !reported.insert((p.namespace.clone(), p.name.clone(), w.name.clone())) {
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
        if mesh.workloads.iter().any(|w| w.namespace == p.namespace) {
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
fn selectors_matching_nothing(mesh: &Mesh, out: &mut Vec<Finding>) {
    for p in &mesh.peer_authentications {
        if p.is_namespace_wide() || p.namespace == mesh.config.root_namespace {
            continue;
        }
        let mut in_ns = mesh
            .workloads
            .iter()
            .filter(|w| w.namespace == p.namespace)
            .peekable();
        if in_ns.peek().is_none() {
            continue;
        }
        if !in_ns.any(|w| p.selects(&w.labels)) {
            let labels: Vec<String> = p
                .selector
                .iter()
                .flatten()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            out.push(on_policy(
                d::PA_SELECTOR_MATCHES_NO_WORKLOAD.diagnostic(
                    format!(
                        "selector {} of {}/{} matches no workload in namespace {}",
                        labels.join(","),
                        p.namespace,
                        p.name,
                        p.namespace
                    ),
                    "fix the labels so they are a subset of the pod template's labels, or delete the policy",
                ),
                p,
                selector_path(),
            ));
        }
    }
}

/// #49098: portLevelMtls is keyed by the container port.
fn port_level_keys(mesh: &Mesh, out: &mut Vec<Finding>) {
    for p in mesh
        .peer_authentications
        .iter()
        .filter(|p| !p.port_level.is_empty() && !p.is_namespace_wide())
    {
        if p.namespace == mesh.config.root_namespace {
            continue;
        }
        let selected: Vec<&Workload> = mesh
            .workloads
            .iter()
            .filter(|w| w.namespace == p.namespace && p.selects(&w.labels))
            .collect();
        if selected.is_empty() {
            continue;
        }
        let served: BTreeSet<u32> = selected.iter().flat_map(|w| mesh.served_ports(w)).collect();
        for &port in p.port_level.keys() {
            if served.contains(&port) {
                continue;
            }
            let via_service = selected.iter().find_map(|w| {
                mesh.services.iter().filter(|s| s.selects(w)).find_map(|s| {
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

/// The policy that decided a resolution's mode (the last step declaring a mode).
fn deciding_policy<'m>(mesh: &'m Mesh, r: &Resolution) -> Option<&'m PeerAuthentication> {
    let step = r
        .steps
        .iter()
        .rev()
        .find(|s| s.declared != MtlsMode::Unset)?;
    let policy = step.policy.as_ref()?;
    mesh.peer_authentications
        .iter()
        .find(|p| p.name == policy.name && p.namespace == policy.namespace)
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
/// STRICT) and SIMPLE/MUTUAL to a sidecar (#14130).
fn destination_rules(mesh: &Mesh, out: &mut Vec<Finding>) {
    let namespaces: Vec<&str> = mesh.namespaces.keys().map(String::as_str).collect();
    for dr in &mesh.destination_rules {
        for service in &mesh.services {
            // Only rules istiod actually picks for some client namespace.
            let used = namespaces.iter().any(|ns| {
                mesh.destination_rule_for(ns, service)
                    .is_some_and(|chosen| {
                        chosen.name == dr.name && chosen.namespace == dr.namespace
                    })
            });
            if !used {
                continue;
            }
            for sp in &service.ports {
                let Some(mode) = dr.port_tls.get(&u32::from(sp.port)).copied().or(dr.tls) else {
                    continue;
                };
                for server in mesh.endpoints(service) {
                    let Some(target) = target_port(server, &sp.target_port) else {
                        continue;
                    };
                    if let Some(diag) =
                        dr_against_server(mesh, dr, service, sp.port, mode, server, target)
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
    dedup(out);
}

fn dr_against_server(
    mesh: &Mesh,
    dr: &DestinationRule,
    service: &Service,
    port: u16,
    mode: TlsMode,
    server: &Workload,
    target: u32,
) -> Option<Diagnostic> {
    let dest = format!("{}.{}:{port}", service.name, service.namespace);
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
    let r = resolve_port(
        &mesh.peer_authentications,
        &mesh.config.root_namespace,
        &server.namespace,
        &server.labels,
        target,
    );
    let by = deciding_policy(mesh, &r)
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

/// Resets the matrix shows for clients without a sidecar or with auto mTLS off,
/// grouped per server port, naming the clients.
fn resets(mesh: &Mesh, out: &mut Vec<Finding>) {
    let matrix = mesh.matrix();
    let mut groups: BTreeMap<(&'static str, &str, &str, u16), Vec<&Cell>> = BTreeMap::new();
    for cell in &matrix.cells {
        if cell.outcome != Outcome::Reset || cell.client_tls != ClientTls::Plaintext {
            continue;
        }
        let code = match cell.client_reason {
            ClientReason::NoSidecar => d::PLAINTEXT_CLIENT_TO_STRICT.code,
            ClientReason::AutoMtlsOff => d::STRICT_WITHOUT_MTLS_CLIENTS.code,
            // DestinationRule-caused resets are reported on the rule.
            ClientReason::DestinationRule { .. } | ClientReason::AutoMtls => continue,
        };
        groups
            .entry((
                code,
                cell.service_namespace.as_str(),
                cell.service.as_str(),
                cell.service_port,
            ))
            .or_default()
            .push(cell);
    }
    for ((code, ns, name, port), cells) in groups {
        let Some(service) = mesh
            .services
            .iter()
            .find(|s| s.namespace == ns && s.name == name)
        else {
            continue;
        };
        let Some(server) = mesh.endpoints(service).next() else {
            continue;
        };
        let Some(first) = cells.first() else { continue };
        let r = resolve_port(
            &mesh.peer_authentications,
            &mesh.config.root_namespace,
            &server.namespace,
            &server.labels,
            first.target_port,
        );
        let clients: Vec<String> = cells
            .iter()
            .map(|c| format!("{}.{}", c.client, c.client_namespace))
            .collect();
        let policy = deciding_policy(mesh, &r);
        let by = policy
            .map(|p| format!(" by {}/{}", p.namespace, p.name))
            .unwrap_or_default();
        let rule: &Rule = if code == d::PLAINTEXT_CLIENT_TO_STRICT.code {
            &d::PLAINTEXT_CLIENT_TO_STRICT
        } else {
            &d::STRICT_WITHOUT_MTLS_CLIENTS
        };
        let (message, hint) = if code == d::PLAINTEXT_CLIENT_TO_STRICT.code {
            (
                format!(
                    "calls from {} (no sidecar) to {name}.{ns}:{port} are reset: container port {} is STRICT{by}",
                    clients.join(", "),
                    first.target_port
                ),
                "inject sidecars into those clients, or keep the port PERMISSIVE until they are migrated",
            )
        } else {
            (
                format!(
                    "calls from {} to {name}.{ns}:{port} are reset: auto mTLS is off, no DestinationRule sets ISTIO_MUTUAL, and container port {} is STRICT{by}",
                    clients.join(", "),
                    first.target_port
                ),
                "add a DestinationRule with tls mode ISTIO_MUTUAL for the service, or enable auto mTLS",
            )
        };
        let mut diag = rule.diagnostic(message, hint);
        if code == d::STRICT_WITHOUT_MTLS_CLIENTS.code {
            diag = diag.with_istio_code(level_code(r.decided_at, "KIA0401", "KIA0501"));
        }
        let finding = match policy {
            Some(p) => {
                let path = if r.decided_at == Level::Port {
                    format!("/spec/portLevelMtls/{}/mode", first.target_port)
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
        out.push(finding);
    }
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
