//! The migration plan: PeerAuthentications that switch what was seen safe to
//! STRICT — namespace-wide where every sidecar workload of the namespace is safe,
//! a workload policy where all of a workload's ports are, `portLevelMtls` where
//! only some are — then read back by `policy` and checked: every planned port
//! resolves to STRICT and every other port keeps the mode it has now.

use super::{Plan, PlannedPolicy, Verdict, WorkloadReadiness};
use crate::convert;
use policy::diagnostic::Severity;
use policy::mesh::{Mesh, PeerAuthentication, Workload};
use policy::reach::Reach;
use policy::MtlsMode;
use std::collections::{BTreeMap, BTreeSet};

/// The source name the plan is checked under.
const PLAN: &str = "<migration plan>";

struct Draft {
    namespace: String,
    name: String,
    level: &'static str,
    replaces_existing: bool,
    selector: Option<BTreeMap<String, String>>,
    mode: Option<MtlsMode>,
    port_level: BTreeMap<u32, MtlsMode>,
    ports: Vec<String>,
    why: String,
}

/// A YAML scalar: plain when it cannot be read as anything but that string.
fn quote(s: &str) -> String {
    let plain = s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n"
        );
    if plain {
        s.to_string()
    } else {
        serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
    }
}

fn yaml(d: &Draft) -> String {
    let mut y = String::new();
    y.push_str("---\n");
    for line in d.why.lines() {
        y.push_str(&format!("# {line}\n"));
    }
    y.push_str("apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n");
    y.push_str(&format!(
        "  name: {}\n  namespace: {}\nspec:\n",
        quote(&d.name),
        quote(&d.namespace)
    ));
    if let Some(sel) = &d.selector {
        y.push_str("  selector:\n    matchLabels:\n");
        for (k, v) in sel {
            y.push_str(&format!("      {}: {}\n", quote(k), quote(v)));
        }
    }
    if let Some(m) = d.mode {
        y.push_str(&format!("  mtls:\n    mode: {}\n", m.as_str()));
    }
    if !d.port_level.is_empty() {
        y.push_str("  portLevelMtls:\n");
        for (p, m) in &d.port_level {
            y.push_str(&format!("    {p}:\n      mode: {}\n", m.as_str()));
        }
    }
    y
}

/// What decides `ports` of `w` now, as `describe` resolves it.
fn now(reach: &Reach<'_>, w: &Workload, ports: &[u32]) -> String {
    let desc = convert::workload(w, &reach.describe(w));
    let each: Vec<String> = ports
        .iter()
        .map(|p| {
            let r = desc
                .ports
                .iter()
                .find(|q| q.port == *p)
                .map_or(&desc.workload, |q| &q.resolution);
            format!(
                "{}/{}:{p} is {} ({})",
                w.namespace,
                w.name,
                r.mode.as_str(),
                crate::tls_check::decided(r)
            )
        })
        .collect();
    format!("now: {}", each.join("; "))
}

fn all_safe(r: &WorkloadReadiness) -> bool {
    !r.ports.is_empty() && r.ports.iter().all(|p| p.verdict == Verdict::Safe)
}

/// Ports seen safe that are not STRICT yet.
fn to_switch(r: &WorkloadReadiness) -> Vec<u32> {
    r.ports
        .iter()
        .filter(|p| p.verdict == Verdict::Safe && p.current_mode != Some(MtlsMode::Strict))
        .map(|p| p.port)
        .collect()
}

/// The workload-level policy deciding `w` now, if any.
fn workload_policy<'m>(
    mesh: &'m Mesh,
    reach: &Reach<'_>,
    w: &Workload,
) -> Option<&'m PeerAuthentication> {
    let desc = convert::workload(w, &reach.describe(w));
    let p = desc
        .workload
        .steps
        .iter()
        .find(|s| s.level == crate::json::Level::Workload)?
        .policy
        .clone()?;
    mesh.peer_authentications
        .iter()
        .find(|pa| pa.namespace == p.namespace && pa.name == p.name)
}

fn selector_for(
    mesh: &Mesh,
    w: &Workload,
    same_plan: &dyn Fn(&Workload) -> bool,
) -> BTreeMap<String, String> {
    // `app` when it selects only workloads getting this same change; else every
    // pod label but the ReplicaSet's hash (which changes on every rollout).
    if let Some(app) = w.labels.get("app") {
        let selected = mesh
            .workloads
            .iter()
            .filter(|o| o.namespace == w.namespace && o.labels.get("app") == Some(app));
        if selected.clone().all(same_plan) {
            return BTreeMap::from([("app".to_string(), app.clone())]);
        }
    }
    w.labels
        .iter()
        .filter(|(k, _)| k.as_str() != "pod-template-hash")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

pub fn propose(mesh: &Mesh, config: policy::MeshConfig, rows: &[WorkloadReadiness]) -> Plan {
    let by_name: BTreeMap<(&str, &str), &WorkloadReadiness> = rows
        .iter()
        .map(|r| ((r.namespace.as_str(), r.name.as_str()), r))
        .collect();
    let row = |w: &Workload| {
        by_name
            .get(&(w.namespace.as_str(), w.name.as_str()))
            .copied()
    };
    // Indexed once: describing every workload with a fresh index would be quadratic.
    let reach = mesh.reach();
    let mut drafts: Vec<Draft> = Vec::new();
    let namespaces: BTreeSet<&str> = mesh
        .workloads
        .iter()
        .filter(|w| w.sidecar)
        .map(|w| w.namespace.as_str())
        .collect();
    for ns in namespaces {
        let sidecars: Vec<&Workload> = mesh
            .workloads
            .iter()
            .filter(|w| w.sidecar && w.namespace == ns)
            .collect();
        let every_safe = sidecars.iter().all(|w| row(w).is_some_and(all_safe));
        let switching: Vec<String> = sidecars
            .iter()
            .filter_map(|w| row(w).map(|r| (w, to_switch(r))))
            .flat_map(|(w, ports)| {
                ports
                    .into_iter()
                    .map(move |p| format!("{}/{}:{p}", w.namespace, w.name))
            })
            .collect();
        if switching.is_empty() {
            continue;
        }
        if every_safe {
            let existing = mesh
                .peer_authentications
                .iter()
                .find(|p| p.namespace == ns && p.selector.is_none());
            drafts.push(Draft {
                namespace: ns.to_string(),
                name: existing.map_or("default".to_string(), |p| p.name.clone()),
                level: "namespace",
                replaces_existing: existing.is_some(),
                selector: None,
                mode: Some(MtlsMode::Strict),
                port_level: BTreeMap::new(),
                why: format!(
                    "namespace {ns}: every workload with a sidecar received only mTLS ({} ports: {})\n{}",
                    switching.len(),
                    switching.join(", "),
                    sidecars
                        .iter()
                        .filter_map(|w| row(w).map(|r| now(&reach, w, &to_switch(r))))
                        .collect::<Vec<_>>()
                        .join("\n")
                ),
                ports: switching,
            });
            continue;
        }
        // Why not namespace-wide: the sidecar workloads that are not all safe.
        let blockers: Vec<String> = sidecars
            .iter()
            .filter(|w| !row(w).is_some_and(all_safe))
            .map(|w| {
                let state = match row(w) {
                    None => "no data",
                    Some(r) if r.ports.iter().any(|p| p.verdict == Verdict::NotSafe) => "not safe",
                    Some(_) => "no data on some port",
                };
                format!("{}/{} {state}", w.namespace, w.name)
            })
            .collect();
        let not_namespace = format!("not namespace-wide: {}", blockers.join(", "));
        for w in &sidecars {
            let Some(r) = row(w) else { continue };
            let ports = to_switch(r);
            if ports.is_empty() {
                continue;
            }
            let whole = all_safe(r);
            let names: Vec<String> = ports
                .iter()
                .map(|p| format!("{}/{}:{p}", w.namespace, w.name))
                .collect();
            let unsafe_ports: Vec<String> = r
                .ports
                .iter()
                .filter(|p| p.verdict != Verdict::Safe)
                .map(|p| p.port.to_string())
                .collect();
            let why = if whole {
                format!(
                    "{}/{}: every port received only mTLS\n{}\n{not_namespace}",
                    w.namespace,
                    w.name,
                    now(&reach, w, &ports)
                )
            } else {
                format!(
                    "{}/{}: ports {} received only mTLS; port(s) {} stay as they are (not safe or no data)\n{}\n{not_namespace}",
                    w.namespace,
                    w.name,
                    ports.iter().map(u32::to_string).collect::<Vec<_>>().join(", "),
                    unsafe_ports.join(", "),
                    now(&reach, w, &ports)
                )
            };
            let draft = if let Some(existing) = workload_policy(mesh, &reach, w) {
                let mut port_level = existing.port_level.clone();
                let mode = if whole {
                    port_level.retain(|_, m| *m == MtlsMode::Strict);
                    Some(MtlsMode::Strict)
                } else {
                    for p in &ports {
                        port_level.insert(*p, MtlsMode::Strict);
                    }
                    (existing.mode != MtlsMode::Unset).then_some(existing.mode)
                };
                Draft {
                    namespace: existing.namespace.clone(),
                    name: existing.name.clone(),
                    level: if whole { "workload" } else { "port" },
                    replaces_existing: true,
                    selector: existing.selector.clone(),
                    mode,
                    port_level,
                    ports: names,
                    why,
                }
            } else {
                let plan_of = |o: &Workload| {
                    row(o).is_some_and(|ro| all_safe(ro) == whole && to_switch(ro) == ports)
                };
                let selector = selector_for(mesh, w, &plan_of);
                let base = selector
                    .get("app")
                    .filter(|_| selector.len() == 1)
                    .cloned()
                    .unwrap_or_else(|| w.name.clone());
                Draft {
                    namespace: w.namespace.clone(),
                    name: format!("{base}-strict"),
                    level: if whole { "workload" } else { "port" },
                    replaces_existing: false,
                    selector: Some(selector),
                    mode: whole.then_some(MtlsMode::Strict),
                    port_level: if whole {
                        BTreeMap::new()
                    } else {
                        ports.iter().map(|p| (*p, MtlsMode::Strict)).collect()
                    },
                    ports: names,
                    why,
                }
            };
            match drafts
                .iter_mut()
                .find(|d| d.namespace == draft.namespace && d.name == draft.name)
            {
                Some(d) => d.ports.extend(draft.ports),
                None => drafts.push(draft),
            }
        }
    }
    let text: String = drafts.iter().map(yaml).collect();
    let validation_problems = validate(mesh, config, &text, &drafts, rows);
    Plan {
        yaml: text,
        validated: validation_problems.is_empty(),
        validation_problems,
        policies: drafts
            .into_iter()
            .map(|d| PlannedPolicy {
                namespace: d.namespace,
                name: d.name,
                level: d.level.to_string(),
                replaces_existing: d.replaces_existing,
                ports: d.ports,
                why: d.why,
            })
            .collect(),
    }
}

/// Read the plan with `policy`, put its policies in place of the ones of the same
/// name, and compare every port's mode before and after.
fn validate(
    mesh: &Mesh,
    config: policy::MeshConfig,
    text: &str,
    drafts: &[Draft],
    rows: &[WorkloadReadiness],
) -> Vec<String> {
    let mut problems = Vec::new();
    if drafts.is_empty() {
        return problems;
    }
    let read = policy::check(&[(PLAN, text)], config);
    for d in read
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
    {
        problems.push(format!("{}: {}", d.code, d.message));
    }
    if read.mesh.peer_authentications.len() != drafts.len() {
        problems.push(format!(
            "policy read {} PeerAuthentications from the plan, not {}",
            read.mesh.peer_authentications.len(),
            drafts.len()
        ));
    }
    let mut after = mesh.clone();
    after.peer_authentications.retain(|p| {
        !read
            .mesh
            .peer_authentications
            .iter()
            .any(|q| q.namespace == p.namespace && q.name == p.name)
    });
    after
        .peer_authentications
        .extend(read.mesh.peer_authentications.iter().cloned());
    let planned: BTreeSet<&str> = drafts
        .iter()
        .flat_map(|d| d.ports.iter().map(String::as_str))
        .collect();
    let reach = after.reach();
    let workloads: BTreeMap<(&str, &str), &Workload> = after
        .workloads
        .iter()
        .map(|w| ((w.namespace.as_str(), w.name.as_str()), w))
        .collect();
    for r in rows {
        let Some(w) = workloads.get(&(r.namespace.as_str(), r.name.as_str())) else {
            continue;
        };
        let desc = convert::workload(w, &reach.describe(w));
        for p in &r.ports {
            let Some(before) = p.current_mode else {
                continue;
            };
            let now = desc
                .ports
                .iter()
                .find(|q| q.port == p.port)
                .map_or(desc.workload.mode, |q| q.resolution.mode);
            let key = format!("{}/{}:{}", r.namespace, r.name, p.port);
            if planned.contains(key.as_str()) {
                if now != MtlsMode::Strict {
                    problems.push(format!(
                        "{key} would be {} with the plan, not STRICT (another policy overrides it)",
                        now.as_str()
                    ));
                }
            } else if now != before {
                problems.push(format!(
                    "{key} would change from {} to {} though it is not safe",
                    before.as_str(),
                    now.as_str()
                ));
            }
        }
    }
    problems
}
