//! `policy` types → the CLI's JSON contract ([`crate::json`]). Kept apart so a
//! change inside `policy` shows up here as a compile error, not as a silent
//! change of the documented JSON.

use crate::json;
use policy::diagnostic::{Diagnostic, Location};
use policy::reach::{self, Cell};
use policy::resolve::{self, IgnoreReason, Resolution, WorkloadReport};

pub fn diagnostic(d: &Diagnostic) -> json::Diagnostic {
    let (file, line) = match &d.location {
        Some(l) => (Some(l.source.clone()), (l.line > 0).then_some(l.line)),
        None => (None, None),
    };
    json::Diagnostic {
        code: d.code.clone(),
        severity: d.severity,
        input_error: crate::is_input_error(d),
        message: d.message.clone(),
        hint: d.hint.clone(),
        istio_code: d.istio_code.clone(),
        resource: d.resource.as_ref().map(|r| json::ResourceRef {
            kind: r.kind.clone(),
            namespace: r.namespace.clone(),
            name: r.name.clone(),
        }),
        file,
        line,
    }
}

fn location(l: &Location) -> (String, u32) {
    (l.source.clone(), l.line)
}

pub fn policy_ref(p: &resolve::PolicyRef) -> json::PolicyRef {
    let (file, line) = location(&p.location);
    json::PolicyRef {
        namespace: p.namespace.clone(),
        name: p.name.clone(),
        file,
        line,
    }
}

fn level(l: resolve::Level) -> json::Level {
    match l {
        resolve::Level::Default => json::Level::Default,
        resolve::Level::Mesh => json::Level::Mesh,
        resolve::Level::Namespace => json::Level::Namespace,
        resolve::Level::Workload => json::Level::Workload,
        resolve::Level::Port => json::Level::Port,
    }
}

fn ignored(i: &resolve::Ignored) -> json::Ignored {
    let (reason, winner, port) = match &i.reason {
        IgnoreReason::NewerThanWinner { winner, .. } => (
            json::IgnoreReason::NewerThanWinner,
            Some(policy_ref(winner)),
            None,
        ),
        IgnoreReason::SelectorInRootNamespace => {
            (json::IgnoreReason::SelectorInRootNamespace, None, None)
        }
        IgnoreReason::PortLevelOnNonWorkloadPolicy => {
            (json::IgnoreReason::PortLevelOnNonWorkloadPolicy, None, None)
        }
        IgnoreReason::PortNotAContainerPort { port } => {
            (json::IgnoreReason::PortNotAContainerPort, None, Some(*port))
        }
    };
    json::Ignored {
        policy: policy_ref(&i.policy),
        reason,
        winner,
        port,
        message: i.message.clone(),
    }
}

fn resolution(r: &Resolution) -> json::Resolution {
    let decided_by = r
        .steps
        .iter()
        .rev()
        .find(|s| s.level == r.decided_at)
        .and_then(|s| s.policy.as_ref())
        .map(policy_ref);
    json::Resolution {
        mode: r.mode,
        decided_at: level(r.decided_at),
        decided_by,
        steps: r
            .steps
            .iter()
            .map(|s| json::Step {
                level: level(s.level),
                policy: s.policy.as_ref().map(policy_ref),
                declared: s.declared,
                effective: s.effective,
            })
            .collect(),
        ignored: r.ignored.iter().map(ignored).collect(),
    }
}

pub fn workload(w: &policy::mesh::Workload, report: &WorkloadReport) -> json::WorkloadDescription {
    let workload = resolution(&report.workload);
    let ports: Vec<json::PortResolution> = report
        .ports
        .iter()
        .map(|(port, r)| json::PortResolution {
            port: *port,
            resolution: resolution(r),
        })
        .collect();
    let all = std::iter::once(&workload).chain(ports.iter().map(|p| &p.resolution));
    let mut applied: Vec<(json::Level, json::PolicyRef)> = Vec::new();
    let mut ignored_all: Vec<json::Ignored> = Vec::new();
    for r in all {
        for s in &r.steps {
            if let Some(p) = &s.policy {
                if !applied.iter().any(|(_, q)| q == p) {
                    applied.push((s.level, p.clone()));
                }
            }
        }
        for i in &r.ignored {
            if !ignored_all.contains(i) {
                ignored_all.push(i.clone());
            }
        }
    }
    applied.sort();
    let (file, line) = location(&w.location);
    json::WorkloadDescription {
        namespace: report.namespace.clone(),
        name: report.name.clone(),
        file,
        line,
        labels: w.labels.clone(),
        sidecar: report.sidecar,
        workload,
        ports,
        applied: applied.into_iter().map(|(_, p)| p).collect(),
        ignored: ignored_all,
    }
}

pub fn cell(c: &Cell) -> json::Cell {
    json::Cell {
        client: json::WorkloadRef {
            namespace: c.client_namespace.clone(),
            name: c.client.clone(),
        },
        service: json::ServicePortRef {
            namespace: c.service_namespace.clone(),
            name: c.service.clone(),
            port: c.service_port,
            target_port: c.target_port,
        },
        client_tls: match c.client_tls {
            reach::ClientTls::Plaintext => json::ClientTls::Plaintext,
            reach::ClientTls::IstioMutual => json::ClientTls::IstioMutual,
            reach::ClientTls::OtherTls => json::ClientTls::OtherTls,
        },
        client_reason: match &c.client_reason {
            reach::ClientReason::NoSidecar => json::ClientReason::NoSidecar,
            reach::ClientReason::DestinationRule {
                name,
                namespace,
                mode,
            } => json::ClientReason::DestinationRule {
                namespace: namespace.clone(),
                name: name.clone(),
                tls_mode: *mode,
            },
            reach::ClientReason::AutoMtls => json::ClientReason::AutoMtls,
            reach::ClientReason::AutoMtlsOff => json::ClientReason::AutoMtlsOff,
        },
        server_mode: c.server_mode,
        outcome: match c.outcome {
            reach::Outcome::Allowed => json::Outcome::Allowed,
            reach::Outcome::Reset => json::Outcome::Reset,
            reach::Outcome::Failed => json::Outcome::Failed,
        },
        mtls: c.mtls,
        explanation: c.explanation.clone(),
    }
}
