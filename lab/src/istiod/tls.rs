//! Istio's TLS vocabulary: the ALPN sets its filter chains match on, which chains a
//! port gets for its mTLS mode and protocol, and the TLS contexts on both sides.

use super::{DEFAULT_SECRET, ROOT_SECRET};
use crate::topology::Protocol;
use policy::MtlsMode;
use serde_json::{json, Value};

// ALPN sets, `pilot/pkg/networking/core/listener.go`.
/// `mtlsHTTPALPNs`: what a client sidecar's `istio.alpn` offers for HTTP over mTLS.
pub const MTLS_HTTP_ALPNS: &[&str] = &["istio-http/1.0", "istio-http/1.1", "istio-h2"];
/// `allIstioMtlsALPNs`: any Istio mTLS client.
pub const ALL_ISTIO_MTLS_ALPNS: &[&str] = &[
    "istio",
    "istio-peer-exchange",
    "istio-http/1.0",
    "istio-http/1.1",
    "istio-h2",
];
/// `mtlsTCPWithMxcALPNs`: an Istio mTLS client whose traffic was not seen as HTTP.
pub const MTLS_TCP_WITH_MXC_ALPNS: &[&str] = &["istio-peer-exchange", "istio"];
/// `plaintextHTTPALPNs` (HTTP/1.0 off): what the HTTP inspector reports for plaintext HTTP.
pub const PLAINTEXT_HTTP_ALPNS: &[&str] = &["http/1.1", "h2c"];

// Server-side ALPN of the DownstreamTlsContext, `pilot/pkg/networking/util/util.go`
// (`ALPNHttp`, `ALPNDownstreamWithMxc`), chosen in `pilot/pkg/security/authn/utils/utils.go`.
/// HTTP chains: negotiate the real HTTP version, never `istio` (it would interfere with h2).
pub const DOWNSTREAM_HTTP_ALPNS: &[&str] = &["h2", "http/1.1"];
/// TCP chains (metadata exchange on): `istio-peer-exchange` first.
pub const DOWNSTREAM_TCP_ALPNS: &[&str] = &["istio-peer-exchange", "h2", "http/1.1"];

// Client-side ALPN, `pilot/pkg/networking/util/util.go` and `pilot/pkg/xds/filters/filters.go`.
/// `ALPNInMeshWithMxc`: an ISTIO_MUTUAL cluster's own list (TCP traffic).
pub const UPSTREAM_TCP_ALPNS: &[&str] = &["istio-peer-exchange", "istio"];
/// `istio.alpn`'s override for HTTP/1.1 upstreams (`mtlsHTTP11ALPN`); it stands in the
/// cluster's list here because upstream Envoy has no `istio.alpn` (module docs).
pub const UPSTREAM_HTTP11_ALPNS: &[&str] = &["istio-http/1.1", "istio", "http/1.1"];

/// `SupportedCiphers`, `pilot/pkg/security/authn/utils/utils.go`.
pub const SUPPORTED_CIPHERS: &[&str] = &[
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "AES256-GCM-SHA384",
    "AES128-GCM-SHA256",
];

/// What a filter chain ends in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainProtocol {
    /// An HTTP connection manager.
    Http,
    /// A `tcp_proxy`.
    Tcp,
}

/// The transport protocol a chain matches (set by the TLS inspector).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tls,
    RawBuffer,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tls => "tls",
            Transport::RawBuffer => "raw_buffer",
        }
    }
}

/// One filter chain of a port: istiod's `FilterChainMatchOptions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainOption {
    /// `application_protocols` to match (empty: any).
    pub alpns: &'static [&'static str],
    pub transport: Transport,
    pub protocol: ChainProtocol,
    /// Whether the chain terminates Istio mTLS (has a DownstreamTlsContext).
    pub terminates_mtls: bool,
}

const fn opt(
    alpns: &'static [&'static str],
    transport: Transport,
    protocol: ChainProtocol,
    terminates_mtls: bool,
) -> ChainOption {
    ChainOption {
        alpns,
        transport,
        protocol,
        terminates_mtls,
    }
}

use ChainProtocol::{Http, Tcp};
use Transport::{RawBuffer, Tls};

/// The chains of one inbound port, in istiod's order, for its mTLS mode and protocol
/// (`getFilterChainMatchOptions`, `pilot/pkg/networking/core/filterchain_options.go`).
/// `Unset` never reaches istiod's builder (the resolution starts PERMISSIVE); it is
/// treated as PERMISSIVE.
pub fn chain_options(mode: MtlsMode, protocol: Protocol) -> Vec<ChainOption> {
    let none: &'static [&'static str] = &[];
    match (protocol, mode) {
        // inboundStrictHTTPFilterChainMatchOptions
        (Protocol::Http, MtlsMode::Strict) => vec![opt(none, Tls, Http, true)],
        // inboundPermissiveHTTPFilterChainMatchWithMxcOptions
        (Protocol::Http, MtlsMode::Permissive | MtlsMode::Unset) => vec![
            opt(ALL_ISTIO_MTLS_ALPNS, Tls, Http, true),
            opt(none, RawBuffer, Http, false),
        ],
        // inboundPlainTextHTTPFilterChainMatchOptions
        (Protocol::Http, MtlsMode::Disable) => vec![opt(none, RawBuffer, Http, false)],
        // inboundStrictFilterChainMatchOptions
        (Protocol::Auto, MtlsMode::Strict) => vec![
            opt(MTLS_HTTP_ALPNS, Tls, Http, true),
            opt(none, Tls, Tcp, true),
        ],
        // inboundPermissiveFilterChainMatchWithMxcOptions
        (Protocol::Auto, MtlsMode::Permissive | MtlsMode::Unset) => vec![
            opt(MTLS_HTTP_ALPNS, Tls, Http, true),
            opt(PLAINTEXT_HTTP_ALPNS, RawBuffer, Http, false),
            opt(MTLS_TCP_WITH_MXC_ALPNS, Tls, Tcp, true),
            opt(none, RawBuffer, Tcp, false),
            opt(none, Tls, Tcp, false),
        ],
        // inboundPlainTextFilterChainMatchOptions
        (Protocol::Auto, MtlsMode::Disable) => vec![
            opt(PLAINTEXT_HTTP_ALPNS, RawBuffer, Http, false),
            opt(none, RawBuffer, Tcp, false),
        ],
        // inboundStrictTCPFilterChainMatchOptions
        (Protocol::Tcp, MtlsMode::Strict) => vec![opt(none, Tls, Tcp, true)],
        // inboundPermissiveTCPFilterChainMatchWithMxcOptions
        (Protocol::Tcp, MtlsMode::Permissive | MtlsMode::Unset) => vec![
            opt(ALL_ISTIO_MTLS_ALPNS, Tls, Tcp, true),
            opt(none, Tls, Tcp, false),
            opt(none, RawBuffer, Tcp, false),
        ],
        // inboundPlainTextTCPFilterChainMatchOptions
        (Protocol::Tcp, MtlsMode::Disable) => vec![opt(none, RawBuffer, Tcp, false)],
    }
}

/// The `tls` transport socket around a TLS context.
pub fn tls_socket(type_name: &str, context: Value) -> Value {
    let mut context = context;
    if let Some(obj) = context.as_object_mut() {
        obj.insert(
            "@type".into(),
            Value::String(format!(
                "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.{type_name}"
            )),
        );
    }
    json!({"name": "envoy.transport_sockets.tls", "typed_config": context})
}

/// The server side of Istio mTLS on an inbound chain (`BuildInboundTLS`,
/// `pilot/pkg/security/authn/utils/utils.go`; `ApplyToCommonTLSContext`,
/// `pilot/pkg/security/model/authentication.go`): a client certificate is required and
/// must chain to `ROOTCA` with a URI SAN in the trust domain
/// (`TrustDomainsForValidation`, `pilot/pkg/networking/plugin/authn/util.go`); the
/// peer's identity itself is not checked here.
pub fn downstream_mtls(protocol: ChainProtocol, trust_domain: &str) -> Value {
    let alpns = match protocol {
        ChainProtocol::Http => DOWNSTREAM_HTTP_ALPNS,
        ChainProtocol::Tcp => DOWNSTREAM_TCP_ALPNS,
    };
    tls_socket(
        "DownstreamTlsContext",
        json!({
            "require_client_certificate": true,
            "common_tls_context": {
                "alpn_protocols": alpns,
                "tls_params": {
                    "tls_minimum_protocol_version": "TLSv1_2",
                    "tls_maximum_protocol_version": "TLSv1_3",
                    "cipher_suites": SUPPORTED_CIPHERS,
                },
                "tls_certificate_sds_secret_configs": [{"name": DEFAULT_SECRET}],
                "combined_validation_context": {
                    "default_validation_context": {
                        "match_subject_alt_names": [{"prefix": format!("spiffe://{trust_domain}/")}]
                    },
                    "validation_context_sds_secret_config": {"name": ROOT_SECRET},
                }
            }
        }),
    )
}

/// The client side of Istio mTLS (`buildUpstreamClusterTLSContext`, ISTIO_MUTUAL case,
/// `pilot/pkg/networking/core/cluster_tls.go`): the workload certificate `default`,
/// the root `ROOTCA`, the server's SPIFFE IDs as exact SANs, the given SNI and ALPN,
/// TLS 1.2–1.3 (`defaultUpstreamCommonTLSContext`).
pub fn upstream_istio_mutual(sni: &str, sans: &[String], alpns: &[&str]) -> Value {
    let sans: Vec<Value> = sans.iter().map(|s| json!({"exact": s})).collect();
    tls_socket(
        "UpstreamTlsContext",
        json!({
            "sni": sni,
            "common_tls_context": {
                "alpn_protocols": alpns,
                "tls_params": {
                    "tls_minimum_protocol_version": "TLSv1_2",
                    "tls_maximum_protocol_version": "TLSv1_3",
                },
                "tls_certificate_sds_secret_configs": [{"name": DEFAULT_SECRET}],
                "combined_validation_context": {
                    "default_validation_context": {"match_subject_alt_names": sans},
                    "validation_context_sds_secret_config": {"name": ROOT_SECRET},
                }
            }
        }),
    )
}

/// DestinationRule SIMPLE without `caCertificates` (the only SIMPLE `policy`'s model can
/// express): `constructUpstreamTLS` in `cluster_tls.go` validates against the SDS
/// resource `file-root:system`, which istio-agent serves from the system trust store;
/// here the static secret of that name reads the same store (Debian's bundle). No
/// client certificate, no ALPN for HTTP/1.1 clusters, and the SNI and SAN come from
/// the request (`auto_sni`/`auto_san_validation`, set on the cluster).
pub fn upstream_simple() -> Value {
    tls_socket(
        "UpstreamTlsContext",
        json!({
            "common_tls_context": {
                "tls_params": {
                    "tls_minimum_protocol_version": "TLSv1_2",
                    "tls_maximum_protocol_version": "TLSv1_3",
                },
                "combined_validation_context": {
                    "default_validation_context": {},
                    "validation_context_sds_secret_config": {"name": SYSTEM_ROOT_SECRET},
                }
            }
        }),
    )
}

/// istio-agent's SDS name for the system trust store (`security.SdsCertificateConfig`
/// with `CaCertificatePath: "system"`, `pkg/security/security.go`).
pub const SYSTEM_ROOT_SECRET: &str = "file-root:system";
/// The system trust store the `file-root:system` secret reads.
pub const SYSTEM_TRUST_STORE: &str = "/etc/ssl/certs/ca-certificates.crt";
