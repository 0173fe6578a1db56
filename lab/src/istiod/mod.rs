//! "istiod" for the pod-faithful lab: the static Envoy bootstrap of one sidecar pod,
//! in the shape istiod generates for that pod (issue 12, control-plane side).
//!
//! [`bootstrap`] turns one [`Pod`] of a [`Topology`] into what istiod would push to its
//! istio-proxy over xDS, written as one static bootstrap: `virtualInbound` on
//! [`INBOUND_PORT`] (original destination, TLS and HTTP inspectors, passthrough chains,
//! per-port chains matched on destination port, transport protocol and Istio's ALPN
//! values), `virtualOutbound` on [`OUTBOUND_PORT`] with one `bind_to_port: false`
//! listener per Service port, `outbound|<port>||<fqdn>` clusters with auto mTLS or the
//! DestinationRule's TLS, and every selected WasmPlugin where istiod puts it. The
//! network side (namespaces, istio-iptables rules for [`PROXY_UID`]) is `crate::node`.
//!
//! Where the decisions come from:
//! - **PeerAuthentication resolution** (the mTLS mode of each port and of the
//!   passthrough chains) is `policy`'s ([`policy::Mesh::describe`], its resolver): in
//!   this lab `policy` plays istiod's PeerAuthentication resolution. The independent
//!   oracle for the lab as a whole is the seed lab's documented results, which the lab
//!   runner compares with what the sidecars built here really do.
//! - **DestinationRule lookup** (which rule applies to a host and Service port, as
//!   istiod's host matching and export rules pick it) is `policy`'s
//!   [`policy::Mesh::destination_rule_for`].
//! - **Everything else** is this module's restatement of istiod's rules, each cited
//!   where the generator makes it (istio/istio at tag 1.29.6 and master `86c9f01f`):
//!   which chains a mode and protocol get, their ALPN sets, the TLS contexts, the
//!   transport socket matches, what a DestinationRule TLS mode does to a cluster, and
//!   the filter order. None of it is read from `policy`'s reachability answers
//!   (`connect`, `matrix`), so the lab compares two independent things.
//!
//! What stands in for istio-proxy-only pieces, which upstream Envoy 1.40 does not have
//! (shared/notes/istio-sidecar-dataplane.md §5):
//! - `istio.metadata_exchange` (HTTP filter, network filter, cluster filter): dropped.
//!   The ALPN values it relies on (`istio-peer-exchange`) stay in every ALPN list, so
//!   the filter chain matches are exactly istiod's.
//! - `istio.stats`: dropped; the filter's own counters (tagged by
//!   [`crate::stats::peerauth_stats_tags`]) are what the lab reads.
//! - `istio.alpn` (outbound HTTP filter that rewrites the upstream ALPN to
//!   `istio-http/1.1, istio, http/1.1` etc.): the cluster's `UpstreamTlsContext` carries
//!   that list itself (see [`outbound`]).
//! - SDS from istio-agent (`sds-grpc`): the secrets `default` (certificate chain and key)
//!   and `ROOTCA` are static bootstrap secrets with the same names, so every TLS context
//!   references them by name exactly as istiod's do.
//! - EDS: each `outbound|…` cluster is STATIC with the endpoints EDS would send (pod IP,
//!   target port, `tlsMode` metadata). RDS: each outbound HTTP listener carries the
//!   route configuration RDS would send inline, under the same name.
//! - ECDS: each WasmPlugin's filter is inlined under the name istiod gives the ECDS
//!   resource, with the configuration ECDS would send.
//!
//! Known simplifications, each a place where this differs from a real istiod:
//! - Ports are HTTP, TCP or auto ([`crate::topology::Protocol`]): HTTP/2 and gRPC ports
//!   are treated as HTTP/1.1, so no cluster offers `istio-h2`/`h2`.
//! - An auto-detected Service port's cluster offers the TCP ALPN (`istio-peer-exchange,
//!   istio`): without `istio.alpn` one cluster cannot offer `istio-http/1.1` only for
//!   the requests its HCM sends. HTTP over such a port therefore lands in the server's
//!   TLS `tcp_proxy` chain, where no HTTP filter runs (note §2's caveat).
//! - A DestinationRule's MUTUAL mode is refused ([`IstiodError::MutualWithoutCertificates`]),
//!   and SIMPLE always validates against the system roots: `policy`'s DestinationRule
//!   keeps only the TLS mode.

pub mod inbound;
pub mod outbound;
pub mod tls;
pub mod wasmplugin;

pub use wasmplugin::{
    plugins_for, plugins_for_in, wasm_plugins, FailStrategy, PluginPhase, PluginType,
    TrafficSelector, WasmPlugin, WorkloadMode,
};

use crate::topology::{Pod, Topology};
use serde_json::{json, Value};
use std::path::PathBuf;

/// Where iptables sends every inbound TCP connection (istio-iptables `-z 15006`).
pub const INBOUND_PORT: u16 = 15006;
/// Where iptables sends every outbound TCP connection (istio-iptables `-p 15001`).
pub const OUTBOUND_PORT: u16 = 15001;
/// The proxy's uid (and gid); its own traffic is not captured again (istio-iptables `-u 1337`).
pub const PROXY_UID: u32 = 1337;
/// The source address of inbound traffic Envoy forwards to the app; iptables lets it
/// through (`-o lo -s 127.0.0.6/32 -j RETURN`). `InboundPassthroughBindIpv4` in
/// `pilot/pkg/networking/core/cluster_builder.go`.
pub const INBOUND_PASSTHROUGH_BIND: &str = "127.0.0.6";
/// The SDS resource name of the workload certificate (`SDSDefaultResourceName`,
/// `pilot/pkg/security/model/authentication.go`).
pub const DEFAULT_SECRET: &str = "default";
/// The SDS resource name of the mesh root (`SDSRootResourceName`).
pub const ROOT_SECRET: &str = "ROOTCA";

/// The files one sidecar is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SidecarFiles {
    /// The workload certificate followed by its intermediates (what the sidecar presents).
    pub cert_chain: PathBuf,
    pub private_key: PathBuf,
    /// The mesh root certificate.
    pub root_cert: PathBuf,
    /// The admin interface's unix socket (a pod's loopback is its own; a socket path
    /// is reachable from the node without entering the pod's network namespace).
    pub admin_socket: PathBuf,
}

/// Everything istiod knows when it generates one sidecar's configuration.
#[derive(Debug, Clone)]
pub struct Sidecar<'a> {
    pub mesh: &'a policy::Mesh,
    pub topology: &'a Topology,
    pub pod: &'a Pod,
    pub files: SidecarFiles,
    /// The built filter every selected WasmPlugin loads (istiod would hand Envoy the
    /// module istio-agent fetched from the plugin's `url`).
    pub wasm_module: Option<PathBuf>,
    /// The WasmPlugins in the cluster; [`plugins_for`] picks the ones for this pod.
    pub plugins: &'a [WasmPlugin],
    /// Only for the runner: start this Envoy with `--component-log-level upstream:debug`.
    pub upstream_debug: bool,
}

/// Why a sidecar's configuration could not be generated.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum IstiodError {
    #[error("{file}: {message}")]
    Manifest { file: String, message: String },
    #[error("{file}: WasmPlugin {name}: {message}")]
    WasmPlugin {
        file: String,
        name: String,
        message: String,
    },
    #[error("{0} has no sidecar: istiod generates no proxy configuration for it")]
    NoSidecar(String),
    #[error("{0} is in the topology but not in the mesh it was built from: build both from the same manifests")]
    NotInMesh(String),
    #[error("WasmPlugin {plugin} selects {pod} but no wasm module was given: run `make build-filter` and pass out/peerauth_filter.wasm")]
    NoWasmModule { plugin: String, pod: String },
    #[error("DestinationRule {rule} sets tls mode MUTUAL for {host}, but policy's DestinationRule keeps no client certificate paths: the lab cannot build that cluster")]
    MutualWithoutCertificates { rule: String, host: String },
}

/// The full static bootstrap of `sidecar.pod`'s istio-proxy: admin on the unix socket
/// `admin_socket`, `stats_config` with [`crate::stats::peerauth_stats_tags`], the static
/// secrets `default` and `ROOTCA`, the inbound and outbound listeners and all clusters.
///
/// `Err` when the pod has no sidecar, is not in the mesh, a selected WasmPlugin has no
/// module to load, or a DestinationRule asks for MUTUAL TLS.
pub fn bootstrap(sidecar: &Sidecar) -> Result<Value, IstiodError> {
    let pod = sidecar.pod;
    if !pod.sidecar {
        return Err(IstiodError::NoSidecar(pod.key()));
    }
    let plugins = plugins_for_in(pod, sidecar.plugins, &sidecar.mesh.config.root_namespace);
    if let (Some(p), None) = (plugins.first(), &sidecar.wasm_module) {
        return Err(IstiodError::NoWasmModule {
            plugin: p.resource_name(),
            pod: pod.key(),
        });
    }
    let inbound = inbound::build(sidecar, &plugins)?;
    let outbound = outbound::build(sidecar, &plugins)?;

    let mut listeners = vec![inbound.listener];
    listeners.extend(outbound.listeners);
    let mut clusters = inbound.clusters;
    clusters.extend(outbound.clusters);
    let mut secrets = vec![
        json!({
            "name": DEFAULT_SECRET,
            "tls_certificate": {
                "certificate_chain": {"filename": sidecar.files.cert_chain},
                "private_key": {"filename": sidecar.files.private_key},
            }
        }),
        json!({
            "name": ROOT_SECRET,
            "validation_context": {"trusted_ca": {"filename": sidecar.files.root_cert}},
        }),
    ];
    if outbound.system_roots {
        // The static stand-in for istio-agent's `file-root:system` SDS resource.
        secrets.push(json!({
            "name": tls::SYSTEM_ROOT_SECRET,
            "validation_context": {"trusted_ca": {"filename": tls::SYSTEM_TRUST_STORE}},
        }));
    }

    let tags: Vec<Value> = crate::stats::peerauth_stats_tags()
        .into_iter()
        .map(|(tag, regex)| json!({"tag_name": tag, "regex": regex}))
        .collect();
    let files = &sidecar.files;
    // istio-agent's node id: `sidecar~<pod IP>~<pod name>.<ns>~<ns>.svc.<domain>`
    // (`pkg/istio-agent/agent.go`); the cluster is `<app>.<ns>`.
    let domain = &sidecar.topology.cluster_domain;
    Ok(json!({
        // istio-agent's node metadata (`pkg/model` NodeMetadata): the pod's
        // namespace and its labels as the downward API shows them, the
        // injector's among them; the filter resolves policies for this pod.
        "node": {
            "id": format!("sidecar~{}~{}.{}~{}.svc.{domain}", pod.ip, pod.name, pod.namespace, pod.namespace),
            "cluster": pod.key(),
            "metadata": {
                "NAMESPACE": pod.namespace,
                "LABELS": pod.labels,
                "NAME": pod.name,
                "WORKLOAD_NAME": pod.name,
            },
        },
        "admin": {"address": {"pipe": {"path": files.admin_socket}}},
        "stats_config": {"stats_tags": tags, "use_all_default_tags": true},
        "static_resources": {
            "listeners": listeners,
            "clusters": clusters,
            "secrets": secrets,
        }
    }))
}

/// The mesh workload that `pod` was made from.
fn workload_of<'m>(
    mesh: &'m policy::Mesh,
    pod: &Pod,
) -> Result<&'m policy::mesh::Workload, IstiodError> {
    mesh.workloads
        .iter()
        .find(|w| w.name == pod.name && w.namespace == pod.namespace)
        .ok_or_else(|| IstiodError::NotInMesh(pod.key()))
}

/// A `tcp_proxy` network filter to `cluster`.
fn tcp_proxy(stat_prefix: &str, cluster: &str) -> Value {
    json!({
        "name": "envoy.filters.network.tcp_proxy",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
            "stat_prefix": stat_prefix,
            "cluster": cluster,
        }
    })
}

/// `raw_buffer`, Envoy's plaintext transport socket (`xdsfilters.RawBufferTransportSocket`).
fn raw_buffer() -> Value {
    json!({
        "name": "envoy.transport_sockets.raw_buffer",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"}
    })
}

/// The HTTP filters istiod ends every HCM with, after the Wasm phases
/// (`listener_builder.go` `buildHTTPConnectionManager`): `grpc_stats`, `fault`, `cors`,
/// then the router. `istio.alpn` (outbound) and `istio.stats` come in between there;
/// upstream Envoy has neither (module docs).
fn http_filter_tail() -> Vec<Value> {
    vec![
        json!({
            "name": "envoy.filters.http.grpc_stats",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.grpc_stats.v3.FilterConfig",
                "emit_filter_state": true,
                "stats_for_all_methods": false
            }
        }),
        json!({
            "name": "envoy.filters.http.fault",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"}
        }),
        json!({
            "name": "envoy.filters.http.cors",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"}
        }),
        json!({
            "name": "envoy.filters.http.router",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}
        }),
    ]
}
