//! `policy` types → the CLI's JSON contract ([`crate::json`]). Kept apart so a
//! change inside `policy` shows up here as a compile error, not as a silent
//! change of the documented JSON.

use crate::json;
use policy::diagnostic::{Diagnostic, Location};
use policy::reach;
#[cfg(test)]
use policy::reach::Cell;
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
            undeclared: report.undeclared_ports.contains(port),
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
        ambient: report.ambient.clone(),
    }
}

/// The owned cell of the JSON contract (the oracle [`call`] is tested against).
#[cfg(test)]
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
            reach::ClientReason::Ztunnel => json::ClientReason::Ztunnel,
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

/// A [`json::Cell`] borrowing from the mesh, for writing many cells without
/// copying names: it serializes to exactly what `json::Cell` does.
#[derive(serde::Serialize)]
pub struct CellRef<'a> {
    client: WorkloadRef<'a>,
    service: ServicePortRef<'a>,
    client_tls: json::ClientTls,
    client_reason: ClientReasonRef<'a>,
    server_mode: policy::MtlsMode,
    outcome: json::Outcome,
    mtls: bool,
    explanation: &'a str,
}

#[derive(serde::Serialize)]
struct WorkloadRef<'a> {
    namespace: &'a str,
    name: &'a str,
}

#[derive(serde::Serialize)]
struct ServicePortRef<'a> {
    namespace: &'a str,
    name: &'a str,
    port: u16,
    target_port: u32,
}

#[derive(serde::Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
enum ClientReasonRef<'a> {
    NoSidecar,
    DestinationRule {
        namespace: &'a str,
        name: &'a str,
        tls_mode: policy::TlsMode,
    },
    AutoMtls,
    AutoMtlsOff,
    Ztunnel,
}

/// [`call`] serialized as one compact JSON line (with its newline) onto
/// `buf`: the same bytes `serde_json::to_writer` writes, without its
/// per-byte escaping of strings that need none (`--json-lines` writes
/// millions of these).
pub fn write_call_line(buf: &mut Vec<u8>, call: &reach::Call<'_>, explanation: &str) {
    fn text(buf: &mut Vec<u8>, s: &str) {
        if needs_no_escape(s.as_bytes()) {
            buf.push(b'"');
            buf.extend_from_slice(s.as_bytes());
            buf.push(b'"');
        } else {
            // Writing to a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *buf, s);
        }
    }
    fn raw(buf: &mut Vec<u8>, s: &str) {
        buf.extend_from_slice(s.as_bytes());
    }
    let (client, service) = (call.client, call.service);
    raw(buf, "{\"client\":{\"namespace\":");
    text(buf, &client.namespace);
    raw(buf, ",\"name\":");
    text(buf, &client.name);
    raw(buf, "},\"service\":{\"namespace\":");
    text(buf, &service.namespace);
    raw(buf, ",\"name\":");
    text(buf, &service.name);
    raw(buf, ",\"port\":");
    raw(buf, &call.service_port.to_string());
    raw(buf, ",\"target_port\":");
    raw(buf, &call.target_port.to_string());
    raw(buf, "},\"client_tls\":");
    raw(
        buf,
        match call.client_tls {
            reach::ClientTls::Plaintext => "\"plaintext\"",
            reach::ClientTls::IstioMutual => "\"istio-mutual\"",
            reach::ClientTls::OtherTls => "\"other-tls\"",
        },
    );
    raw(buf, ",\"client_reason\":");
    match call.destination_rule() {
        Some((dr, mode)) => {
            raw(buf, "{\"kind\":\"destination-rule\",\"namespace\":");
            text(buf, &dr.namespace);
            raw(buf, ",\"name\":");
            text(buf, &dr.name);
            raw(buf, ",\"tls_mode\":");
            text(buf, mode.as_str());
            raw(buf, "}");
        }
        None => raw(
            buf,
            match call.client_reason() {
                reach::ClientReason::NoSidecar => "{\"kind\":\"no-sidecar\"}",
                reach::ClientReason::AutoMtlsOff => "{\"kind\":\"auto-mtls-off\"}",
                reach::ClientReason::Ztunnel => "{\"kind\":\"ztunnel\"}",
                reach::ClientReason::AutoMtls | reach::ClientReason::DestinationRule { .. } => {
                    "{\"kind\":\"auto-mtls\"}"
                }
            },
        ),
    }
    raw(buf, ",\"server_mode\":");
    text(buf, call.server_mode.as_str());
    raw(buf, ",\"outcome\":");
    raw(
        buf,
        match call.outcome {
            reach::Outcome::Allowed => "\"allowed\"",
            reach::Outcome::Reset => "\"reset\"",
            reach::Outcome::Failed => "\"failed\"",
        },
    );
    raw(
        buf,
        if call.mtls {
            ",\"mtls\":true"
        } else {
            ",\"mtls\":false"
        },
    );
    raw(buf, ",\"explanation\":");
    text(buf, explanation);
    raw(buf, "}\n");
}

/// Whether JSON writes `bytes` as they are: no control character, quote or
/// backslash. Eight bytes at a time (the "has a zero byte" bit trick), as
/// this runs over every explanation `--json-lines` writes.
fn needs_no_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS != 0;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        // A byte below 0x20 (exact for a bound up to 0x80), a `"`, a `\`.
        let below = x.wrapping_sub(ONES * 0x20) & !x & HIGHS != 0;
        if below || has_zero(x ^ (ONES * 0x22)) || has_zero(x ^ (ONES * 0x5c)) {
            return false;
        }
    }
    chunks
        .remainder()
        .iter()
        .all(|&b| b >= 0x20 && b != b'"' && b != b'\\')
}

/// `call` as a cell of the JSON contract, with `explanation` its [`reach::Call::explain`].
pub fn call<'a>(call: &reach::Call<'a>, explanation: &'a str) -> CellRef<'a> {
    let client_reason = match call.destination_rule() {
        Some((dr, mode)) => ClientReasonRef::DestinationRule {
            namespace: &dr.namespace,
            name: &dr.name,
            tls_mode: mode,
        },
        None => match call.client_reason() {
            reach::ClientReason::NoSidecar => ClientReasonRef::NoSidecar,
            reach::ClientReason::AutoMtlsOff => ClientReasonRef::AutoMtlsOff,
            reach::ClientReason::Ztunnel => ClientReasonRef::Ztunnel,
            reach::ClientReason::AutoMtls | reach::ClientReason::DestinationRule { .. } => {
                ClientReasonRef::AutoMtls
            }
        },
    };
    CellRef {
        client: WorkloadRef {
            namespace: &call.client.namespace,
            name: &call.client.name,
        },
        service: ServicePortRef {
            namespace: &call.service.namespace,
            name: &call.service.name,
            port: call.service_port,
            target_port: call.target_port,
        },
        client_tls: match call.client_tls {
            reach::ClientTls::Plaintext => json::ClientTls::Plaintext,
            reach::ClientTls::IstioMutual => json::ClientTls::IstioMutual,
            reach::ClientTls::OtherTls => json::ClientTls::OtherTls,
        },
        client_reason,
        server_mode: call.server_mode,
        outcome: match call.outcome {
            reach::Outcome::Allowed => json::Outcome::Allowed,
            reach::Outcome::Reset => json::Outcome::Reset,
            reach::Outcome::Failed => json::Outcome::Failed,
        },
        mtls: call.mtls,
        explanation,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    #[test]
    fn the_fast_escape_check_agrees_with_serde_json_on_every_byte_in_every_position() {
        for len in 0..20 {
            for pos in 0..len.max(1) {
                for b in 0u8..=0x7f {
                    let mut bytes = vec![b'a'; len];
                    if let Some(slot) = bytes.get_mut(pos) {
                        *slot = b;
                    }
                    let text = String::from_utf8(bytes.clone()).unwrap();
                    let plain = format!("\"{text}\"") == serde_json::to_string(&text).unwrap();
                    assert_eq!(super::needs_no_escape(&bytes), plain, "{bytes:?}");
                }
            }
        }
        assert!(super::needs_no_escape("é ünïcode".as_bytes()));
    }

    #[test]
    fn a_borrowed_cell_serializes_exactly_like_the_contracts_cell() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../manifests");
        let mut texts = Vec::new();
        for dir in [
            "workloads",
            "steps/6-precedence",
            "steps/5-port-level-disable",
        ] {
            for entry in std::fs::read_dir(format!("{root}/{dir}")).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "yaml") {
                    texts.push((
                        path.display().to_string(),
                        std::fs::read_to_string(&path).unwrap(),
                    ));
                }
            }
        }
        let sources: Vec<(&str, &str)> = texts
            .iter()
            .map(|(n, t)| (n.as_str(), t.as_str()))
            .collect();
        for auto_mtls in [true, false] {
            let config = policy::MeshConfig {
                auto_mtls,
                ..policy::MeshConfig::default()
            };
            let mesh = policy::check(&sources, config).mesh;
            let reach = mesh.reach();
            let mut seen = 0;
            let mut rules = 0;
            reach.calls(|call| {
                let explanation = call.explain();
                let borrowed = serde_json::to_string(&super::call(&call, &explanation)).unwrap();
                let owned = serde_json::to_string(&super::cell(&call.cell())).unwrap();
                assert_eq!(borrowed, owned);
                let mut line = Vec::new();
                super::write_call_line(&mut line, &call, &explanation);
                assert_eq!(String::from_utf8(line).unwrap(), owned + "\n");
                seen += 1;
                rules += usize::from(call.destination_rule().is_some());
            });
            assert!(seen > 20 && rules > 0, "{seen} cells, {rules} with a rule");
        }
    }
}
