//! A forged X-Forwarded-Client-Cert, in the pod topology.
//!
//! An app cannot smuggle XFCC through its own sidecar: istiod sets
//! `forward_client_cert_details` only on inbound and gateway connection managers
//! (`pilot/pkg/networking/util/proxy_headers.go`, used by `listener_inbound.go` and
//! `gateway.go`); the sidecar's outbound HTTP listener
//! (`buildSidecarOutboundHTTPListenerOpts`, `pilot/pkg/networking/core/listener.go`)
//! leaves it unset, and Envoy's default for it is SANITIZE, which drops the header.
//! The lab shows that first. The forger therefore bypasses its sidecar: a process as
//! uid 1337 in the client pod (istio-iptables lets that uid's traffic out uncaptured:
//! `-m owner --uid-owner 1337 -j RETURN`) speaks mTLS itself, with the pod's own
//! certificate and Istio's ALPN `istio-http/1.1`, straight to the server pod's IP and
//! container port — which the server pod's capture still sends to `virtualInbound`,
//! whose connection manager appends the real element after the forged one
//! (APPEND_FORWARD). The filter must see through that.

use crate::demo::pods::{xfcc_of, PodLab, CURL_MAX_TIME};
use crate::demo::stats::FilterCounter;
use crate::demo::LabError;
use crate::node::PROXY_UID;
use std::time::Duration;

/// The identity the forged XFCC element claims.
pub const FORGED_IDENTITY: &str = "spiffe://cluster.local/ns/foo/sa/admin";

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ForgeryReport {
    pub client: String,
    pub server: String,
    /// The element the forger adds: `By=<server id>;URI=<FORGED_IDENTITY>`.
    pub forged_header: String,
    /// Through the client's own sidecar: the status, and the XFCC the app received.
    pub via_sidecar_status: String,
    pub via_sidecar_xfcc: Option<String>,
    /// The forged element reached the app through the client's sidecar.
    pub via_sidecar_forwarded: bool,
    /// Bypassing the sidecar (uid 1337, own mTLS): the command, without and with the
    /// forged header.
    pub bypass_command: String,
    pub honest_status: u16,
    pub forged_status: u16,
    /// The filter's `peerauth_xfcc_forged_total` in the server's sidecar.
    pub counters: Vec<FilterCounter>,
}

impl ForgeryReport {
    /// Stripped on the way out, refused on the way in, counted.
    pub fn caught(&self) -> bool {
        !self.via_sidecar_forwarded
            && self.honest_status == 200
            && self.forged_status == 403
            && self
                .counters
                .iter()
                .any(|c| c.label("form") == Some("smuggled") && c.value > 0)
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `client` (a sidecar pod) forges an XFCC element towards `server` (a sidecar pod
/// behind `service_host:service_port`, its container port `port`).
pub fn forge(
    lab: &PodLab,
    client: &str,
    server: &str,
    service_host: &str,
    service_port: u16,
    port: u16,
) -> Result<ForgeryReport, LabError> {
    let server_pod = lab.pod(server)?;
    let server_id = server_pod.spiffe_id(&lab.topology().trust_domain);
    let forged_header = format!("By={server_id};URI={FORGED_IDENTITY}");

    // 1. Through the client's own sidecar, as an app would try.
    let url = format!("http://{service_host}:{service_port}/headers");
    let xfcc_arg = format!("x-forwarded-client-cert: {forged_header}");
    let out = lab.node().exec(
        client,
        "curl",
        &[
            "-s",
            "--max-time",
            CURL_MAX_TIME,
            "-w",
            "\n%{http_code}",
            "-H",
            &xfcc_arg,
            &url,
        ],
        Duration::from_secs(20),
    )?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, status) = text.rsplit_once('\n').unwrap_or((text.as_str(), ""));
    let via_sidecar_xfcc = xfcc_of(body);
    let via_sidecar_forwarded = via_sidecar_xfcc
        .as_deref()
        .is_some_and(|x| x.contains(FORGED_IDENTITY));

    // 2. Around it: uid 1337 with the pod's certificate and Istio's ALPN.
    let identity = lab
        .identity(client)
        .ok_or_else(|| LabError::Missing(format!("certificate for {client}")))?;
    let target = format!("{}:{port}", server_pod.ip);
    let s_client = format!(
        "setpriv --reuid {PROXY_UID} --regid {PROXY_UID} --clear-groups openssl s_client -quiet -verify_quiet -connect {target} -alpn istio-http/1.1 -cert {} -cert_chain {} -key {} -CAfile {}",
        identity.leaf.display(),
        identity.cert_chain.display(),
        identity.key.display(),
        lab.root_cert().display()
    );
    let request = |extra: &str| {
        format!("GET /headers HTTP/1.1\r\nHost: {service_host}:{service_port}\r\n{extra}Connection: close\r\n\r\n")
    };
    let send = |req: String| -> Result<u16, LabError> {
        let script = format!("printf %s {} | {s_client}", shell_quote(&req));
        let out = lab
            .node()
            .exec(client, "sh", &["-c", &script], Duration::from_secs(20))?;
        Ok(status_of(&String::from_utf8_lossy(&out.stdout)))
    };
    let honest_status = send(request(""))?;
    let forged_status = send(request(&format!(
        "x-forwarded-client-cert: {forged_header}\r\n"
    )))?;
    let counters: Vec<FilterCounter> = lab
        .filter_counters(server)?
        .into_iter()
        .filter(|c| c.name == peerauth_filter::metrics::XFCC_FORGED)
        .collect();
    Ok(ForgeryReport {
        client: client.to_string(),
        server: server.to_string(),
        forged_header,
        via_sidecar_status: status.trim().to_string(),
        via_sidecar_xfcc,
        via_sidecar_forwarded,
        bypass_command: format!("printf 'GET /headers HTTP/1.1\\r\\n…' | {s_client}"),
        honest_status,
        forged_status,
        counters,
    })
}

/// The status of the first `HTTP/1.x NNN` line (0: none, i.e. no response).
pub fn status_of(response: &str) -> u16 {
    response
        .lines()
        .find_map(|l| {
            let rest = l.strip_prefix("HTTP/1.")?;
            rest.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn the_status_is_read_from_the_first_status_line_and_is_zero_without_one() {
        assert_eq!(
            status_of("HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n"),
            403
        );
        assert_eq!(status_of("depth=1\nHTTP/1.1 200 OK\r\n"), 200);
        assert_eq!(status_of(""), 0);
    }

    #[test]
    fn shell_quoting_survives_a_quote() {
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
    }
}
