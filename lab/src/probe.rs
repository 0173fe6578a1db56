//! Calls as Istio's simulation tests make them (`pilot/pkg/simulation`: a call through
//! the client's sidecar, or an inbound call straight to a pod port with `Plaintext`,
//! `MTLS` or `TLS`), run for real in the lab, and their results named the way a user
//! sees them: success (and whether it was mTLS), reset, protocol error, rejected by
//! the filter.
//!
//! Inbound calls bypass every client sidecar: they run as uid 1337 in the calling pod,
//! which istio-iptables lets out uncaptured (`-m owner --uid-owner 1337 -j RETURN`),
//! and still reach the server pod's `virtualInbound` through its capture.

use crate::call::ServiceCall;
use crate::node::PROXY_UID;
use crate::pods::{xfcc_of, PodLab, CURL_MAX_TIME};
use crate::LabError;
use policy::reach::{ClientTls, Outcome};
use policy::MtlsMode;
use std::fmt;
use std::time::Duration;

/// What an inbound call sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Inbound {
    /// Plain HTTP/1.1.
    Plaintext,
    /// Istio mTLS: the calling pod's mesh certificate and Istio's ALPN.
    Mtls,
    /// TLS without a client certificate and without Istio's ALPN.
    Tls,
}

impl Inbound {
    pub fn as_str(self) -> &'static str {
        match self {
            Inbound::Plaintext => "plaintext",
            Inbound::Mtls => "mtls",
            Inbound::Tls => "tls",
        }
    }

    /// `policy`'s name for what the server's sidecar receives.
    pub fn client_tls(self) -> ClientTls {
        match self {
            Inbound::Plaintext => ClientTls::Plaintext,
            Inbound::Mtls => ClientTls::IstioMutual,
            Inbound::Tls => ClientTls::OtherTls,
        }
    }
}

/// A call's result, as a user sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Seen {
    /// The app answered 200.
    Success { mtls: bool },
    /// The connection was refused by a sidecar: no filter chain matched (STRICT and a
    /// plaintext call), the TLS handshake was ended by the server for want of a client
    /// certificate, or the client's sidecar reported the upstream reset.
    Reset,
    /// TLS reached a plaintext port, or plaintext a TLS one: the bytes did not parse.
    ProtocolError,
    /// The peerauth filter answered instead of the app, with its reason.
    Rejected { reason: String },
    /// Any other HTTP status.
    Status { code: u16 },
}

impl Seen {
    /// The same to a user: for a success, mTLS must match too.
    pub fn agrees(&self, other: &Seen) -> bool {
        match (self, other) {
            (Seen::Rejected { .. }, Seen::Rejected { .. }) => true,
            (a, b) => a == b,
        }
    }

    /// `policy`'s outcome in the same terms.
    pub fn from_outcome(outcome: Outcome, mtls: bool) -> Seen {
        match outcome {
            Outcome::Allowed => Seen::Success { mtls },
            Outcome::Reset => Seen::Reset,
            Outcome::Failed => Seen::ProtocolError,
        }
    }
}

impl fmt::Display for Seen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Seen::Success { mtls: true } => write!(f, "success (mTLS)"),
            Seen::Success { mtls: false } => write!(f, "success (plaintext)"),
            Seen::Reset => write!(f, "reset"),
            Seen::ProtocolError => write!(f, "protocol error"),
            Seen::Rejected { reason } => write!(f, "rejected by the filter: {reason}"),
            Seen::Status { code } => write!(f, "HTTP {code}"),
        }
    }
}

/// One call's observation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Observation {
    pub seen: Seen,
    /// The command run in the calling pod.
    pub command: String,
    /// What the tool printed that decided [`Observation::seen`] (curl's exit and status,
    /// openssl's last lines).
    pub detail: String,
}

fn status_and_body(stdout: &[u8]) -> (String, String) {
    let text = String::from_utf8_lossy(stdout).to_string();
    match text.rsplit_once('\n') {
        Some((body, code)) => (code.trim().to_string(), body.to_string()),
        None => (text.trim().to_string(), String::new()),
    }
}

fn rejection(body: &str) -> Option<String> {
    body.lines()
        .find_map(|l| l.strip_prefix("peerauth: rejected: "))
        .map(|r| r.trim().to_string())
}

/// Envoy's local reply when it could not reach the upstream names why
/// (`… reset reason: …, transport failure reason: TLS_error: …`): TLS that met
/// something that is not TLS is a protocol error, anything else a reset.
fn upstream_failure(body: &str) -> Seen {
    let lower = body.to_ascii_lowercase();
    if lower.contains("tls_error") || lower.contains("wrong_version") || lower.contains("protocol")
    {
        Seen::ProtocolError
    } else {
        Seen::Reset
    }
}

/// `call` from its client pod through that pod's sidecar (if any), as the seed lab
/// makes it: `curl http://<service>:<port>/ip`; on 200, `/headers` for the XFCC the
/// server's sidecar adds over mTLS on an HTTP port. `tcp`: the port is TCP, where no
/// XFCC is added, so mTLS is read from the server sidecars' TLS handshake counters
/// instead (`listener.*.ssl.handshake` before and after the call).
///
/// `Err` when the client pod does not exist or curl cannot run.
pub fn service_call(
    lab: &PodLab,
    call: &ServiceCall,
    tcp_servers: Option<&[String]>,
) -> Result<Observation, LabError> {
    let url = format!("{}/ip", call.base_url());
    let command = format!("curl -s {url}");
    let before = tcp_servers.map(|s| handshakes(lab, s));
    let out = lab.node().exec(
        &call.client,
        "curl",
        &[
            "-s",
            "-w",
            "\n%{http_code}",
            "--max-time",
            CURL_MAX_TIME,
            &url,
        ],
        Duration::from_secs(20),
    )?;
    let exit = out.status.code().unwrap_or(-1);
    let (code, body) = status_and_body(&out.stdout);
    let detail = format!("curl exit {exit}, status {code}");
    let seen = match code.as_str() {
        "200" => {
            let mtls = match (tcp_servers, before) {
                (Some(servers), Some(before)) => handshakes(lab, servers) > before,
                _ => {
                    let headers_url = format!("{}/headers", call.base_url());
                    let out = lab.node().exec(
                        &call.client,
                        "curl",
                        &["-s", "--max-time", CURL_MAX_TIME, &headers_url],
                        Duration::from_secs(20),
                    )?;
                    let xfcc = xfcc_of(&String::from_utf8_lossy(&out.stdout));
                    match (xfcc, lab.identity(&call.client)) {
                        (Some(x), Some(id)) => x.contains(&format!("URI={}", id.spiffe_id)),
                        _ => false,
                    }
                }
            };
            Seen::Success { mtls }
        }
        "000" | "" => Seen::Reset,
        "503" => match rejection(&body) {
            Some(reason) => Seen::Rejected { reason },
            None => upstream_failure(&body),
        },
        other => match rejection(&body) {
            Some(reason) => Seen::Rejected { reason },
            None => Seen::Status {
                code: other.parse().unwrap_or(0),
            },
        },
    };
    Ok(Observation {
        seen,
        command,
        detail,
    })
}

/// Sum of every listener's `ssl.handshake` counter in these pods' sidecars.
fn handshakes(lab: &PodLab, pods: &[String]) -> u64 {
    pods.iter()
        .filter_map(|p| lab.sidecar(p))
        .filter_map(|s| crate::node::admin_get(&s.admin_socket, "/stats").ok())
        .flat_map(|stats| {
            stats
                .lines()
                .filter_map(|l| {
                    let (name, value) = l.split_once(": ")?;
                    (name.starts_with("listener.") && name.ends_with(".ssl.handshake"))
                        .then(|| value.trim().parse::<u64>().ok())
                        .flatten()
                })
                .collect::<Vec<_>>()
        })
        .sum()
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// An inbound call from `from` (any pod; uid 1337 so no sidecar of its own takes it)
/// straight to `to`'s IP and container `port`. `alpn`: what an Istio client would
/// offer for this port (`istio-http/1.1` for HTTP, `istio` for TCP) — used by `mtls`
/// only; `tls` offers `http/1.1`.
///
/// `Err` when a pod does not exist, `mtls` is asked from a pod without a mesh
/// certificate, or the tool cannot run.
pub fn inbound_call(
    lab: &PodLab,
    from: &str,
    kind: Inbound,
    to: &str,
    port: u16,
    alpn: &str,
) -> Result<Observation, LabError> {
    let target = lab.pod(to)?;
    let addr = format!("{}:{port}", target.ip);
    let setpriv = format!("setpriv --reuid {PROXY_UID} --regid {PROXY_UID} --clear-groups");
    match kind {
        Inbound::Plaintext => {
            let url = format!("http://{addr}/ip");
            let script = format!(
                "{setpriv} curl -s -w '\\n%{{http_code}}' --max-time {CURL_MAX_TIME} {url}"
            );
            let out = lab
                .node()
                .exec(from, "sh", &["-c", &script], Duration::from_secs(20))?;
            let exit = out.status.code().unwrap_or(-1);
            let (code, body) = status_and_body(&out.stdout);
            let seen = match (code.as_str(), exit) {
                ("200", _) => Seen::Success { mtls: false },
                // 52 "empty reply", 56 "recv failure": the sidecar closed the
                // connection without answering (no filter chain).
                ("000" | "", 52 | 56) => Seen::Reset,
                ("000" | "", _) => Seen::ProtocolError,
                (other, _) => match rejection(&body) {
                    Some(reason) => Seen::Rejected { reason },
                    None => Seen::Status {
                        code: other.parse().unwrap_or(0),
                    },
                },
            };
            Ok(Observation {
                seen,
                command: format!("curl -s {url}"),
                detail: format!("curl exit {exit}, status {code}"),
            })
        }
        Inbound::Mtls | Inbound::Tls => {
            let mut tls = format!(
                "openssl s_client -quiet -connect {addr} -servername {} -CAfile {}",
                target.name,
                lab.root_cert().display()
            );
            if kind == Inbound::Mtls {
                let id = lab.identity(from).ok_or_else(|| {
                    LabError::Missing(format!(
                        "a mesh certificate in {from} for an mtls call (call from a pod with a sidecar)"
                    ))
                })?;
                tls.push_str(&format!(
                    " -alpn {alpn} -cert {} -cert_chain {} -key {}",
                    id.leaf.display(),
                    id.cert_chain.display(),
                    id.key.display()
                ));
            } else {
                tls.push_str(" -alpn http/1.1");
            }
            let request = format!("GET /ip HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
            // A plaintext app never answers a ClientHello, so the handshake is bounded.
            let script = format!(
                "printf %s {} | timeout 8 {setpriv} {tls} 2>&1",
                shell_quote(&request)
            );
            let out = lab
                .node()
                .exec(from, "sh", &["-c", &script], Duration::from_secs(20))?;
            let exit = out.status.code().unwrap_or(-1);
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            let seen = classify_tls(&text, exit, kind == Inbound::Mtls);
            let detail = text
                .lines()
                .filter(|l| {
                    l.starts_with("HTTP/")
                        || l.contains("error")
                        || l.contains("alert")
                        || l.contains("errno")
                })
                .take(3)
                .collect::<Vec<_>>()
                .join(" | ");
            Ok(Observation {
                seen,
                command: tls,
                detail: format!("openssl exit {exit}: {detail}"),
            })
        }
    }
}

/// openssl s_client's output (stdout and stderr) to a result.
fn classify_tls(text: &str, exit: i32, mtls: bool) -> Seen {
    let status = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("HTTP/1.1 ")
                .or_else(|| l.strip_prefix("HTTP/1.0 "))
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|c| c.parse::<u16>().ok());
    if let Some(code) = status {
        return match code {
            200 => Seen::Success { mtls },
            c => match rejection(text) {
                Some(reason) => Seen::Rejected { reason },
                None => Seen::Status { code: c },
            },
        };
    }
    let lower = text.to_ascii_lowercase();
    // The server answered the ClientHello with bytes that are not TLS (an app's HTTP
    // error), or never answered it (exit 124 from `timeout`): TLS reached plaintext.
    if exit == 124
        || lower.contains("wrong version number")
        || lower.contains("packet length too long")
        || lower.contains("record layer failure")
        || lower.contains("http request")
    {
        return Seen::ProtocolError;
    }
    Seen::Reset
}

/// `policy`'s prediction for an inbound call of `kind` to a pod (`sidecar`) whose
/// port resolves to `mode`.
pub fn predict_inbound(kind: Inbound, sidecar: bool, mode: MtlsMode) -> Seen {
    let (outcome, mtls) = policy::reach::outcome(kind.client_tls(), sidecar, mode);
    Seen::from_outcome(outcome, mtls)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn openssl_output_names_success_reset_and_protocol_error() {
        assert_eq!(
            classify_tls("CONNECTED(00000003)\nHTTP/1.1 200 OK\n", 0, true),
            Seen::Success { mtls: true }
        );
        assert_eq!(
            classify_tls(
                "CONNECTED(00000003)\nerror:0A00010B:SSL routines::wrong version number\n",
                1,
                true
            ),
            Seen::ProtocolError
        );
        assert_eq!(
            classify_tls("CONNECTED(00000003)\n", 124, true),
            Seen::ProtocolError
        );
        assert_eq!(
            classify_tls(
                "CONNECTED(00000003)\nwrite:errno=104\nSSL handshake has read 0 bytes\n",
                1,
                true
            ),
            Seen::Reset
        );
        assert_eq!(
            classify_tls(
                "HTTP/1.1 403 Forbidden\r\n\r\npeerauth: rejected: plaintext\n",
                0,
                true
            ),
            Seen::Rejected {
                reason: "plaintext".into()
            }
        );
    }

    #[test]
    fn envoys_upstream_tls_error_is_a_protocol_error_and_a_termination_a_reset() {
        assert_eq!(
            upstream_failure("upstream connect error or disconnect/reset before headers. reset reason: remote connection failure, transport failure reason: TLS_error:|268435703:SSL routines:OPENSSL_internal:WRONG_VERSION_NUMBER"),
            Seen::ProtocolError
        );
        assert_eq!(
            upstream_failure("upstream connect error or disconnect/reset before headers. reset reason: connection termination"),
            Seen::Reset
        );
    }
}
