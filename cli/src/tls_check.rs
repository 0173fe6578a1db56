//! `peerauth tls-check <client> <server[:port]>`: the retired `istioctl authn
//! tls-check` (removed in Istio 1.5), offline. For one client and one Service
//! port it says what the client's side puts on the wire and which resource
//! decided it, what the server port accepts and which policy decided that, and
//! the outcome — all as `policy` computes them ([`policy::reach`]).

use crate::cli::{FileArgs, MeshArgs, OutputArgs};
use crate::json::{self, ClientReason, ClientTls, Outcome, PolicyRef, Resolution};
use crate::rules::{INPUT_NO_ENDPOINT, INPUT_NO_SUCH_CALL};
use crate::{convert, EXIT_FINDINGS, EXIT_INPUT, EXIT_OK};
use clap::Args;
use policy::mesh::{Mesh, Service, Workload};
use policy::{reach, MtlsMode};
use serde::{Deserialize, Serialize};
use std::io::{self, Read, Write};

#[derive(Debug, Args)]
pub struct TlsCheckArgs {
    /// The calling workload: `namespace/name` or `name.namespace` (as the seed lab writes `sleep.foo`).
    #[arg(value_name = "CLIENT")]
    pub client: String,
    /// The Service called: `namespace/name[:port]` or `name.namespace[:port]`; without
    /// a port, every port of the Service (the Service port, not the container port).
    #[arg(value_name = "SERVER[:PORT]")]
    pub server: String,
    #[command(flatten)]
    pub files: FileArgs,
    #[command(flatten)]
    pub mesh: MeshArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `peerauth tls-check --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsCheckDocument {
    pub version: String,
    /// Always `"tls-check"`.
    pub command: String,
    pub exit_code: u8,
    pub inputs: json::Inputs,
    pub summary: json::Summary,
    pub diagnostics: Vec<json::Diagnostic>,
    /// One per Service port checked, ascending.
    pub checks: Vec<TlsCheck>,
}

/// One client → Service port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsCheck {
    pub client: Side,
    pub service: json::ServicePortRef,
    /// The endpoint that decides (the first workload the Service selects).
    pub server: Side,
    /// What the client sends.
    pub client_tls: ClientTls,
    /// Which resource decided it (`destination-rule` names the rule).
    pub client_reason: ClientReason,
    /// The server's mode on the target (container) port, `DISABLE` without a sidecar.
    pub server_mode: MtlsMode,
    /// How the server port's mode was decided (as `describe` resolves it).
    pub server_resolution: Resolution,
    pub outcome: Outcome,
    /// Istio mTLS end to end.
    pub mtls: bool,
    /// One sentence (`policy`'s explanation of the call).
    pub explanation: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Side {
    pub namespace: String,
    pub name: String,
    pub sidecar: bool,
    /// Captured by ztunnel (ambient mode); absent for sidecar and out-of-mesh workloads.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ambient: bool,
}

/// `namespace/name` or `name.namespace`, with an optional `:port` when `port` is allowed.
fn parse_ref(s: &str, port: bool) -> Result<(String, String, Option<u16>), String> {
    let (name, p) = match s.rsplit_once(':') {
        Some((n, p)) if port => {
            let p: u16 = p.parse().map_err(|_| {
                format!("{s:?}: the port after ':' is not a number from 1 to 65535")
            })?;
            (n, Some(p))
        }
        _ => (s, None),
    };
    let (ns, n) = if let Some((ns, n)) = name.split_once('/') {
        (ns, n)
    } else if let Some((n, ns)) = name.split_once('.') {
        // `httpbin.bar.svc.cluster.local` names the same Service as `httpbin.bar`.
        (ns.split('.').next().unwrap_or(ns), n)
    } else {
        return Err(format!("{s:?}: expected namespace/name or name.namespace"));
    };
    if ns.is_empty() || n.is_empty() {
        return Err(format!("{s:?}: expected namespace/name or name.namespace"));
    }
    Ok((ns.to_string(), n.to_string(), p))
}

fn find<'m>(
    mesh: &'m Mesh,
    client: &str,
    server: &str,
) -> Result<(&'m Workload, &'m Service, Vec<u16>), String> {
    let (cns, cname, _) = parse_ref(client, false)?;
    let (sns, sname, port) = parse_ref(server, true)?;
    let w = mesh
        .workloads
        .iter()
        .find(|w| w.namespace == cns && w.name == cname)
        .ok_or_else(|| {
            let known: Vec<String> = mesh
                .workloads
                .iter()
                .map(|w| format!("{}/{}", w.namespace, w.name))
                .collect();
            format!(
                "no workload {cns}/{cname} in the files; workloads: {}",
                if known.is_empty() {
                    "(none)".into()
                } else {
                    known.join(", ")
                }
            )
        })?;
    let s = mesh
        .services
        .iter()
        .find(|s| s.namespace == sns && s.name == sname)
        .ok_or_else(|| {
            let known: Vec<String> = mesh
                .services
                .iter()
                .map(|s| format!("{}/{}", s.namespace, s.name))
                .collect();
            format!(
                "no Service {sns}/{sname} in the files; Services: {}",
                if known.is_empty() {
                    "(none)".into()
                } else {
                    known.join(", ")
                }
            )
        })?;
    let mut ports: Vec<u16> = s.ports.iter().map(|p| p.port).collect();
    ports.sort_unstable();
    ports.dedup();
    if let Some(p) = port {
        if !ports.contains(&p) {
            let list: Vec<String> = ports.iter().map(u16::to_string).collect();
            return Err(format!(
                "Service {sns}/{sname} has no port {p}; its ports: {}",
                list.join(", ")
            ));
        }
        ports = vec![p];
    }
    Ok((w, s, ports))
}

fn client_json(c: reach::ClientTls) -> ClientTls {
    match c {
        reach::ClientTls::Plaintext => ClientTls::Plaintext,
        reach::ClientTls::IstioMutual => ClientTls::IstioMutual,
        reach::ClientTls::OtherTls => ClientTls::OtherTls,
    }
}

fn reason_json(r: &reach::ClientReason) -> ClientReason {
    match r {
        reach::ClientReason::NoSidecar => ClientReason::NoSidecar,
        reach::ClientReason::DestinationRule {
            name,
            namespace,
            mode,
        } => ClientReason::DestinationRule {
            namespace: namespace.clone(),
            name: name.clone(),
            tls_mode: *mode,
        },
        reach::ClientReason::AutoMtls => ClientReason::AutoMtls,
        reach::ClientReason::AutoMtlsOff => ClientReason::AutoMtlsOff,
        reach::ClientReason::Ztunnel => ClientReason::Ztunnel,
    }
}

fn outcome_json(o: reach::Outcome) -> Outcome {
    match o {
        reach::Outcome::Allowed => Outcome::Allowed,
        reach::Outcome::Reset => Outcome::Reset,
        reach::Outcome::Failed => Outcome::Failed,
    }
}

pub fn run(
    args: &TlsCheckArgs,
    stdin: &mut dyn Read,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<u8> {
    let mut loaded = crate::load(&args.files.files, &args.mesh, stdin);
    let mesh = &loaded.report.mesh;
    let reach = mesh.reach();
    let mut checks = Vec::new();
    let mut unserved: Vec<String> = Vec::new();
    match find(mesh, &args.client, &args.server) {
        Err(message) => loaded.diagnostics.push(INPUT_NO_SUCH_CALL.diagnostic(
            message,
            "name the client as namespace/name and the Service as namespace/name[:port]",
        )),
        Ok((client, service, ports)) => {
            for port in ports {
                let (Some(cell), Some(server)) = (
                    reach.connect(client, service, port),
                    reach.endpoints(service).next(),
                ) else {
                    unserved.push(format!("{}/{}:{port}", service.namespace, service.name));
                    continue;
                };
                let description = convert::workload(server, &reach.describe(server));
                let server_resolution = description
                    .ports
                    .iter()
                    .find(|p| p.port == cell.target_port)
                    .map_or(description.workload.clone(), |p| p.resolution.clone());
                checks.push(TlsCheck {
                    client: Side {
                        namespace: client.namespace.clone(),
                        name: client.name.clone(),
                        sidecar: client.sidecar,
                        ambient: client.ambient,
                    },
                    service: json::ServicePortRef {
                        namespace: service.namespace.clone(),
                        name: service.name.clone(),
                        port,
                        target_port: cell.target_port,
                    },
                    server: Side {
                        namespace: server.namespace.clone(),
                        name: server.name.clone(),
                        sidecar: server.sidecar,
                        ambient: server.ambient,
                    },
                    client_tls: client_json(cell.client_tls),
                    client_reason: reason_json(&cell.client_reason),
                    server_mode: cell.server_mode,
                    server_resolution,
                    outcome: outcome_json(cell.outcome),
                    mtls: cell.mtls,
                    explanation: cell.explanation,
                });
            }
        }
    }
    if !unserved.is_empty() {
        loaded.diagnostics.push(INPUT_NO_ENDPOINT.diagnostic(
            format!(
                "no workload serves {} (the Service selects no pod, or its named targetPort names no container port)",
                unserved.join(", ")
            ),
            "check the Service's selector and targetPort against the workloads' labels and ports",
        ));
    }
    let summary = crate::summarize(&loaded.diagnostics);
    let code = if summary.input_errors > 0 {
        EXIT_INPUT
    } else if checks
        .iter()
        .all(|c| c.mtls && c.outcome == Outcome::Allowed)
    {
        EXIT_OK
    } else {
        EXIT_FINDINGS
    };
    if args.output.json {
        let doc = TlsCheckDocument {
            version: json::VERSION.into(),
            command: "tls-check".into(),
            exit_code: code,
            inputs: loaded.inputs,
            summary,
            diagnostics: loaded.diagnostics.iter().map(convert::diagnostic).collect(),
            checks,
        };
        crate::write_json(out, &doc)?;
    } else {
        human(out, &checks)?;
        crate::human::input_errors(err, &loaded.diagnostics)?;
    }
    Ok(code)
}

fn policy_name(p: &Option<PolicyRef>) -> String {
    p.as_ref()
        .map(|p| format!("{}/{} ({}:{})", p.namespace, p.name, p.file, p.line))
        .unwrap_or_default()
}

pub(crate) fn decided(r: &Resolution) -> String {
    let by = policy_name(&r.decided_by);
    match r.decided_at {
        json::Level::Default => "Istio's default: no PeerAuthentication applies".into(),
        json::Level::Mesh => format!("mesh-wide PeerAuthentication {by}"),
        json::Level::Namespace => format!("namespace-wide PeerAuthentication {by}"),
        json::Level::Workload => format!("workload PeerAuthentication {by}"),
        json::Level::Port => format!("portLevelMtls of PeerAuthentication {by}"),
    }
}

/// Shaped after seed 004's example of the retired command's answer
/// (`CLIENT → reviews-v1: mTLS is enabled` / `SERVER → productpage-v1: mTLS is required (STRICT)`).
fn human(out: &mut dyn Write, checks: &[TlsCheck]) -> io::Result<()> {
    for (i, c) in checks.iter().enumerate() {
        if i > 0 {
            writeln!(out)?;
        }
        let target = format!(
            "{}.{}:{}",
            c.service.name, c.service.namespace, c.service.port
        );
        writeln!(
            out,
            "{}.{} → {target} (container port {} of {}.{})",
            c.client.name,
            c.client.namespace,
            c.service.target_port,
            c.server.name,
            c.server.namespace
        )?;
        let what = match c.client_tls {
            ClientTls::IstioMutual => "mTLS is enabled (Istio mutual TLS)",
            ClientTls::Plaintext => "mTLS is disabled (plaintext)",
            ClientTls::OtherTls => {
                "mTLS is not Istio's (TLS without Istio's ALPN and certificates)"
            }
        };
        let why = match &c.client_reason {
            ClientReason::NoSidecar => {
                format!("{}.{} has no sidecar", c.client.name, c.client.namespace)
            }
            ClientReason::DestinationRule {
                namespace,
                name,
                tls_mode,
            } => format!(
                "DestinationRule {namespace}/{name} sets {}",
                tls_mode.as_str()
            ),
            ClientReason::AutoMtls if c.client_tls == ClientTls::IstioMutual => {
                "auto mTLS: the server has a sidecar and its port accepts mTLS".into()
            }
            ClientReason::AutoMtls if !c.server.sidecar => {
                "auto mTLS: the server has no sidecar".into()
            }
            ClientReason::AutoMtls => "auto mTLS: the server port is DISABLE".into(),
            ClientReason::AutoMtlsOff => "auto mTLS is off and no DestinationRule sets TLS".into(),
            ClientReason::Ztunnel if c.client_tls == ClientTls::IstioMutual => format!(
                "{}.{} is ambient: its ztunnel sends HBONE (mTLS)",
                c.client.name, c.client.namespace
            ),
            ClientReason::Ztunnel => format!(
                "{}.{} is ambient and the server does not take HBONE: ztunnel passes plaintext through",
                c.client.name, c.client.namespace
            ),
        };
        writeln!(out, "CLIENT → {target}: {what}")?;
        writeln!(out, "   decided by: {why}")?;
        let server = format!(
            "{}.{}:{}",
            c.server.name, c.server.namespace, c.service.target_port
        );
        if c.server.ambient {
            // ztunnel enforces only "reject without a peer identity" or not; istiod's
            // conversion turns DISABLE into PERMISSIVE (policy/src/ambient.rs).
            let what = match c.server_mode {
                MtlsMode::Strict => "ambient (ztunnel): mTLS (HBONE) is required (STRICT)",
                _ => "ambient (ztunnel): mTLS is optional (PERMISSIVE at ztunnel: HBONE and plaintext accepted)",
            };
            writeln!(out, "SERVER → {server}: {what}")?;
            writeln!(
                out,
                "   decided by: {} (as istiod converts it for ztunnel)",
                decided(&c.server_resolution)
            )?;
        } else if c.server.sidecar {
            let what = match c.server_mode {
                MtlsMode::Strict => "mTLS is required (STRICT)",
                MtlsMode::Permissive => {
                    "mTLS is optional (PERMISSIVE: mTLS and plaintext accepted)"
                }
                _ => "mTLS is disabled (DISABLE: plaintext only)",
            };
            writeln!(out, "SERVER → {server}: {what}")?;
            writeln!(out, "   decided by: {}", decided(&c.server_resolution))?;
        } else {
            writeln!(
                out,
                "SERVER → {server}: no sidecar (plaintext only; PeerAuthentication does not apply)"
            )?;
        }
        let result = match (c.outcome, c.mtls) {
            (Outcome::Allowed, true) => "OK: the request succeeds over Istio mTLS",
            (Outcome::Allowed, false) => "PLAINTEXT: the request succeeds unencrypted",
            (Outcome::Reset, _) => "CONFLICT: the connection is reset",
            (Outcome::Failed, _) => {
                "CONFLICT: TLS bytes reach a plaintext listener, the request fails"
            }
        };
        writeln!(out, "RESULT: {result}")?;
        writeln!(out, "   {}", c.explanation)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::parse_ref;

    #[test]
    fn references_are_namespace_slash_name_or_name_dot_namespace_with_an_optional_port() {
        assert_eq!(
            parse_ref("foo/sleep", false).unwrap(),
            ("foo".into(), "sleep".into(), None)
        );
        assert_eq!(
            parse_ref("sleep.foo", false).unwrap(),
            ("foo".into(), "sleep".into(), None)
        );
        assert_eq!(
            parse_ref("httpbin.bar.svc.cluster.local:8000", true).unwrap(),
            ("bar".into(), "httpbin".into(), Some(8000))
        );
        assert!(parse_ref("httpbin", true).is_err());
        assert!(parse_ref("bar/httpbin:http", true).is_err());
        assert!(parse_ref("/httpbin", true).is_err());
    }
}
