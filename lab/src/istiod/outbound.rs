//! The sidecar's outbound side: `virtualOutbound` on [`OUTBOUND_PORT`], one
//! `bind_to_port: false` listener per Service port, and the `outbound|…` clusters with
//! auto mTLS or the DestinationRule's TLS (`pilot/pkg/networking/core/listener.go`,
//! `listener_builder.go`, `cluster_builder.go`, `cluster_tls.go`, `httproute.go`; tag 1.29.6).

use super::inbound::BLACKHOLE_CLUSTER;
use super::inbound::STAT_PREFIX_DELIMITER;
use super::tls::{self, PLAINTEXT_HTTP_ALPNS, UPSTREAM_HTTP11_ALPNS, UPSTREAM_TCP_ALPNS};
use super::wasmplugin::{self, ListenerClass, PluginType, WasmPlugin};
use super::{http_filter_tail, raw_buffer, tcp_proxy, IstiodError, Sidecar, OUTBOUND_PORT};
use crate::topology::{ClusterService, ClusterServicePort, Protocol, TLS_MODE_LABEL};
use policy::{MtlsMode, TlsMode};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// `util.PassthroughCluster`.
pub const PASSTHROUGH_CLUSTER: &str = "PassthroughCluster";
/// `model.VirtualOutboundListenerName`.
pub const VIRTUAL_OUTBOUND: &str = "virtualOutbound";
const CONNECT_TIMEOUT: &str = "10s";

/// `outbound|<port>||<fqdn>` (`model.BuildSubsetKey`).
pub fn cluster_name(port: u16, fqdn: &str) -> String {
    format!("outbound|{port}||{fqdn}")
}

/// The SNI of Istio mTLS to a Service port: `outbound_.<port>_._.<fqdn>`
/// (`model.BuildDNSSrvSubsetKey`, set as `istioMtlsSni` in `cluster_builder.go`).
pub fn istio_sni(port: u16, fqdn: &str) -> String {
    format!("outbound_.{port}_._.{fqdn}")
}

/// How one `outbound|…` cluster talks TLS, as `buildUpstreamTLSSettings` decides it
/// (`cluster_tls.go`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterTls {
    /// Auto mTLS: transport socket matches on the endpoint's `tlsMode` metadata.
    Auto,
    /// No transport socket at all: DR DISABLE, or auto mTLS off, or the Service's
    /// namespace (or the mesh) is DISABLE (`BestEffortInferServiceMTLSMode`).
    Plaintext,
    /// One Istio mTLS transport socket for every endpoint (DR ISTIO_MUTUAL).
    IstioMutual,
    /// One plain TLS transport socket (DR SIMPLE).
    Simple,
}

/// What [`build`] returns.
pub(super) struct Outbound {
    pub listeners: Vec<Value>,
    pub clusters: Vec<Value>,
    /// Some cluster validates against the system trust store (DR SIMPLE).
    pub system_roots: bool,
}

/// The outbound listeners and clusters of `sidecar`.
pub(super) fn build(sidecar: &Sidecar, plugins: &[&WasmPlugin]) -> Result<Outbound, IstiodError> {
    let topology = sidecar.topology;
    let domain = &topology.cluster_domain;
    let module = sidecar.wasm_module.as_deref();
    let mut listeners = vec![virtual_outbound()];
    let mut clusters = vec![passthrough_cluster()];
    let mut system_roots = false;
    // HTTP Service ports share one `0.0.0.0_<port>` listener, one vhost per Service
    // (`buildSidecarOutboundListener`, HTTP case: the key is the wildcard and the port).
    let mut http_ports: BTreeMap<u16, Vec<(&ClusterService, &ClusterServicePort)>> =
        BTreeMap::new();
    for service in &topology.services {
        let fqdn = service.fqdn(domain);
        for sp in &service.ports {
            let (cluster, tls) = outbound_cluster(sidecar, service, sp)?;
            system_roots |= tls == ClusterTls::Simple;
            clusters.push(cluster);
            match sp.protocol {
                Protocol::Http => http_ports.entry(sp.port).or_default().push((service, sp)),
                Protocol::Tcp => listeners.push(tcp_listener(plugins, module, service, sp, &fqdn)),
                Protocol::Auto => listeners.push(auto_listener(sidecar, plugins, service, sp)),
            }
        }
    }
    for (port, services) in &http_ports {
        listeners.push(http_listener(sidecar, plugins, *port, services));
    }
    Ok(Outbound {
        listeners,
        clusters,
        system_roots,
    })
}

/// `buildVirtualOutboundListener` (`listener_builder.go`): every captured outbound
/// connection lands here and is handed to the listener of its original destination
/// (`use_original_dst`); nothing matched goes to PassthroughCluster (the default
/// `outboundTrafficPolicy` ALLOW_ANY), and traffic to 15001 itself to the black hole.
fn virtual_outbound() -> Value {
    json!({
        "name": VIRTUAL_OUTBOUND,
        "address": {"socket_address": {"address": "0.0.0.0", "port_value": OUTBOUND_PORT}},
        "use_original_dst": true,
        "traffic_direction": "OUTBOUND",
        "filter_chains": [
            {
                "name": "virtualOutbound-blackhole",
                "filter_chain_match": {"destination_port": OUTBOUND_PORT},
                "filters": [tcp_proxy(BLACKHOLE_CLUSTER, BLACKHOLE_CLUSTER)],
            },
            {
                "name": "virtualOutbound-catchall-tcp",
                "filters": [tcp_proxy(PASSTHROUGH_CLUSTER, PASSTHROUGH_CLUSTER)],
            }
        ]
    })
}

/// `buildDefaultPassthroughCluster`: the connection's own destination, HTTP/1 or 2 as
/// the downstream spoke.
fn passthrough_cluster() -> Value {
    json!({
        "name": PASSTHROUGH_CLUSTER,
        "type": "ORIGINAL_DST",
        "lb_policy": "CLUSTER_PROVIDED",
        "connect_timeout": CONNECT_TIMEOUT,
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "use_downstream_protocol_config": {"http_protocol_options": {}, "http2_protocol_options": {}}
            }
        }
    })
}

/// `PassthroughFilterChain`, the default chain of every per-port listener
/// (`buildListenerFromEntry`): whatever is not HTTP goes where it was addressed.
fn passthrough_chain() -> Value {
    json!({
        "name": "PassthroughFilterChain",
        "filter_chain_match": {},
        "filters": [tcp_proxy(PASSTHROUGH_CLUSTER, PASSTHROUGH_CLUSTER)],
    })
}

fn http_inspector() -> Value {
    json!({
        "name": "envoy.filters.listener.http_inspector",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.listener.http_inspector.v3.HttpInspector"}
    })
}

/// A per-Service-port listener's common fields (`buildListenerFromEntry`): it never
/// binds (`bind_to_port: false`), virtualOutbound hands it its connections.
fn port_listener(name: &str, address: &str, port: u16) -> serde_json::Map<String, Value> {
    let mut l = serde_json::Map::new();
    l.insert("name".into(), json!(name));
    l.insert(
        "address".into(),
        json!({"socket_address": {"address": address, "port_value": port}}),
    );
    l.insert("bind_to_port".into(), json!(false));
    l.insert("traffic_direction".into(), json!("OUTBOUND"));
    l.insert("continue_on_listener_filters_timeout".into(), json!(true));
    // Mesh `protocolDetectionTimeout` with an HTTP inspector, else 0 (both 0s by default).
    l.insert("listener_filters_timeout".into(), json!("0s"));
    l
}

/// An HTTP Service port: `0.0.0.0_<port>`, the HCM matched on plaintext HTTP ALPNs
/// (HTTP on the wildcard bind gets `plaintextHTTPALPNs`, `buildSidecarOutboundListener`)
/// and the passthrough default chain for anything else.
fn http_listener(
    sidecar: &Sidecar,
    plugins: &[&WasmPlugin],
    port: u16,
    services: &[(&ClusterService, &ClusterServicePort)],
) -> Value {
    let name = format!("0.0.0.0_{port}");
    let vhosts: Vec<Value> = services
        .iter()
        .map(|(s, sp)| virtual_host(sidecar, s, sp.port))
        .collect();
    let route = route_config(&port.to_string(), vhosts);
    let chain = http_chain(sidecar, plugins, port, &name, route);
    let mut l = port_listener(&name, "0.0.0.0", port);
    l.insert("listener_filters".into(), json!([http_inspector()]));
    l.insert("filter_chains".into(), json!([chain]));
    l.insert("default_filter_chain".into(), passthrough_chain());
    Value::Object(l)
}

/// The plaintext-HTTP chain of an outbound listener: NETWORK plugins (CLIENT side),
/// then the HCM with `route` inline where istiod would name an RDS resource.
fn http_chain(
    sidecar: &Sidecar,
    plugins: &[&WasmPlugin],
    port: u16,
    listener_name: &str,
    route: Value,
) -> Value {
    let module = sidecar.wasm_module.as_deref();
    let mut filters = wasmplugin::phased(
        plugins,
        PluginType::Network,
        ListenerClass::SidecarOutbound,
        port,
        module,
    );
    let mut http_filters = wasmplugin::phased(
        plugins,
        PluginType::Http,
        ListenerClass::SidecarOutbound,
        port,
        module,
    );
    http_filters.extend(http_filter_tail());
    filters.push(json!({
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            // `outbound_<listener name>` + delimiter (`buildListenerFromEntry`).
            "stat_prefix": format!("outbound_{listener_name}{STAT_PREFIX_DELIMITER}"),
            "codec_type": "AUTO",
            "route_config": route,
            "http_filters": http_filters,
            "use_remote_address": false,
            "server_name": "istio-envoy",
            "normalize_path": true,
            "path_with_escaped_slashes_action": "KEEP_UNCHANGED",
            "upgrade_configs": [{"upgrade_type": "websocket"}],
            "stream_idle_timeout": "0s",
        }
    }));
    json!({
        "filter_chain_match": {"application_protocols": PLAINTEXT_HTTP_ALPNS, "transport_protocol": "raw_buffer"},
        "filters": filters,
    })
}

/// The route configuration RDS would send under `name`: the vhosts, then `allow_any`
/// to PassthroughCluster (ALLOW_ANY), ports ignored in host matching (sidecars:
/// `SidecarIgnorePort`, `IgnorePortInHostMatching`, `httproute.go`).
fn route_config(name: &str, mut vhosts: Vec<Value>) -> Value {
    vhosts.push(json!({
        "name": "allow_any",
        "domains": ["*"],
        "routes": [{
            "name": "allow_any",
            "match": {"prefix": "/"},
            "route": {"cluster": PASSTHROUGH_CLUSTER, "timeout": "0s", "max_grpc_timeout": "0s"},
        }],
        "include_request_attempt_count": true,
    }));
    json!({
        "name": name,
        "virtual_hosts": vhosts,
        "validate_clusters": false,
        "ignore_port_in_host_matching": true,
    })
}

/// One Service's vhost `<fqdn>:<port>` with the default route to its cluster and
/// Istio's default retry policy (`route.DefaultRetryPolicy`).
fn virtual_host(sidecar: &Sidecar, service: &ClusterService, port: u16) -> Value {
    let fqdn = service.fqdn(&sidecar.topology.cluster_domain);
    json!({
        "name": format!("{fqdn}:{port}"),
        "domains": vhost_domains(sidecar, service),
        "routes": [{
            "name": "default",
            "match": {"prefix": "/"},
            "decorator": {"operation": format!("{fqdn}:{port}/*")},
            "route": {
                "cluster": cluster_name(port, &fqdn),
                "timeout": "0s",
                "max_grpc_timeout": "0s",
                "retry_policy": {
                    "retry_on": "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
                    "num_retries": 2,
                    "retry_host_predicate": [{
                        "name": "envoy.retry_host_predicates.previous_hosts",
                        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"}
                    }],
                    "host_selection_retry_max_attempts": 5,
                    "retriable_status_codes": [503],
                }
            }
        }],
        "include_request_attempt_count": true,
    })
}

/// The Host values a vhost answers (`generateVirtualHostDomains`, ports dropped as
/// `SidecarIgnorePort` does for sidecars): the FQDN, its absolute form
/// (`EnableAbsoluteFqdnVhostDomain`, default on), the short forms the pod's DNS search
/// path allows (`generateAltVirtualHostsForKubernetesService`: plain `name` only from
/// the Service's own namespace), then the ClusterIP.
pub fn vhost_domains(sidecar: &Sidecar, service: &ClusterService) -> Vec<String> {
    let fqdn = service.fqdn(&sidecar.topology.cluster_domain);
    let name_ns = format!("{}.{}", service.name, service.namespace);
    let mut domains = vec![fqdn.clone(), format!("{fqdn}.")];
    if service.namespace == sidecar.pod.namespace {
        domains.push(service.name.clone());
        domains.push(format!("{name_ns}.svc"));
        domains.push(name_ns);
    } else {
        domains.push(name_ns.clone());
        domains.push(format!("{name_ns}.svc"));
    }
    domains.push(service.cluster_ip.to_string());
    domains
}

/// A TCP Service port: `<ClusterIP>_<port>` with one catch-all tcp_proxy chain.
fn tcp_listener(
    plugins: &[&WasmPlugin],
    module: Option<&Path>,
    service: &ClusterService,
    sp: &ClusterServicePort,
    fqdn: &str,
) -> Value {
    let vip = service.cluster_ip.to_string();
    let mut l = port_listener(&format!("{vip}_{}", sp.port), &vip, sp.port);
    l.insert(
        "filter_chains".into(),
        json!([tcp_chain(plugins, module, sp.port, fqdn)]),
    );
    Value::Object(l)
}

/// The tcp_proxy chain to a Service port's cluster, stat prefix the cluster name
/// (`buildOutboundNetworkFiltersWithSingleDestination`), after NETWORK plugins.
fn tcp_chain(plugins: &[&WasmPlugin], module: Option<&Path>, port: u16, fqdn: &str) -> Value {
    let cluster = cluster_name(port, fqdn);
    let mut filters = wasmplugin::phased(
        plugins,
        PluginType::Network,
        ListenerClass::SidecarOutbound,
        port,
        module,
    );
    filters.push(tcp_proxy(&cluster, &cluster));
    json!({"filters": filters})
}

/// An auto-detected Service port: `<ClusterIP>_<port>` with an HTTP chain for
/// plaintext HTTP (its own route `<fqdn>:<port>`) and the TCP chain as default
/// (`buildSidecarOutboundListener`, Auto case).
fn auto_listener(
    sidecar: &Sidecar,
    plugins: &[&WasmPlugin],
    service: &ClusterService,
    sp: &ClusterServicePort,
) -> Value {
    let fqdn = service.fqdn(&sidecar.topology.cluster_domain);
    let vip = service.cluster_ip.to_string();
    let name = format!("{vip}_{}", sp.port);
    let route = route_config(
        &format!("{fqdn}:{}", sp.port),
        vec![virtual_host(sidecar, service, sp.port)],
    );
    let module = sidecar.wasm_module.as_deref();
    let mut l = port_listener(&name, &vip, sp.port);
    l.insert("listener_filters".into(), json!([http_inspector()]));
    l.insert(
        "filter_chains".into(),
        json!([http_chain(sidecar, plugins, sp.port, &name, route)]),
    );
    l.insert(
        "default_filter_chain".into(),
        tcp_chain(plugins, module, sp.port, &fqdn),
    );
    Value::Object(l)
}

/// The TLS a cluster to `service:sp` gets from this sidecar (`buildUpstreamTLSSettings`,
/// `cluster_tls.go`). The DestinationRule is the one `policy` finds for the client's
/// namespace and host (istiod's lookup); its port-level TLS wins over its top level.
/// Without a DR TLS setting, auto mTLS applies unless the Service's namespace-level
/// (or mesh-level) PeerAuthentication is DISABLE (`BestEffortInferServiceMTLSMode`,
/// `push_context.go`) or auto mTLS is off in the mesh config.
pub fn cluster_tls(
    sidecar: &Sidecar,
    service: &ClusterService,
    service_port: u16,
) -> Result<ClusterTls, IstiodError> {
    let mesh = sidecar.mesh;
    let policy_service = mesh
        .services
        .iter()
        .find(|s| s.name == service.name && s.namespace == service.namespace);
    let rule = policy_service.and_then(|s| mesh.destination_rule_for(&sidecar.pod.namespace, s));
    let mode = rule.and_then(|dr| {
        dr.port_tls
            .get(&u32::from(service_port))
            .copied()
            .or(dr.tls)
            .map(|m| (dr, m))
    });
    Ok(match mode {
        Some((_, TlsMode::Disable)) => ClusterTls::Plaintext,
        Some((_, TlsMode::IstioMutual)) => ClusterTls::IstioMutual,
        Some((_, TlsMode::Simple)) => ClusterTls::Simple,
        Some((dr, TlsMode::Mutual)) => {
            return Err(IstiodError::MutualWithoutCertificates {
                rule: format!("{}.{}", dr.name, dr.namespace),
                host: service.fqdn(&sidecar.topology.cluster_domain),
            })
        }
        None => {
            let namespace_mode = mesh
                .resolver()
                .mode(&service.namespace, &BTreeMap::new(), None);
            if mesh.config.auto_mtls && namespace_mode != MtlsMode::Disable {
                ClusterTls::Auto
            } else {
                ClusterTls::Plaintext
            }
        }
    })
}

/// `outbound|<port>||<fqdn>`: STATIC with the endpoints EDS would send (standing in for
/// EDS, module docs), LEAST_REQUEST (istiod's default LB), and the TLS of [`cluster_tls`].
fn outbound_cluster(
    sidecar: &Sidecar,
    service: &ClusterService,
    sp: &ClusterServicePort,
) -> Result<(Value, ClusterTls), IstiodError> {
    let topology = sidecar.topology;
    let fqdn = service.fqdn(&topology.cluster_domain);
    let name = cluster_name(sp.port, &fqdn);
    let endpoints = service.endpoints(topology, sp.port);
    let lb_endpoints: Vec<Value> = endpoints
        .iter()
        .map(|ep| {
            let mut e = json!({"endpoint": {"address": {"socket_address": {
                "address": ep.pod.ip.to_string(), "port_value": ep.port
            }}}});
            // The pod's `security.istio.io/tlsMode` label becomes the endpoint's
            // transport socket match metadata, unless absent or "disabled"
            // (`pilot/pkg/networking/util/util.go`), or unless the endpoint's own
            // PeerAuthentication resolves its port to DISABLE: EDS then clears the
            // tlsMode so auto mTLS sends plaintext (`checkMtlsEnabled`,
            // `pilot/pkg/xds/endpoints/mtls_checker.go`, applied in
            // `buildEnvoyLbEndpoint`). A DestinationRule TLS mode fixes the cluster's
            // transport socket instead ([`cluster_tls`]), so the metadata is moot there.
            let port_disabled = sidecar.mesh.resolver().mode(
                &ep.pod.namespace,
                &ep.pod.labels,
                Some(u32::from(ep.port)),
            ) == MtlsMode::Disable;
            if let Some(mode) = ep
                .pod
                .labels
                .get(TLS_MODE_LABEL)
                .filter(|m| m.as_str() != "disabled" && !port_disabled)
            {
                if let Some(obj) = e.as_object_mut() {
                    obj.insert(
                        "metadata".into(),
                        json!({"filter_metadata": {"envoy.transport_socket_match": {"tlsMode": mode}}}),
                    );
                }
            }
            e
        })
        .collect();
    // The server identities istiod expects: the endpoints' service accounts.
    let sans: Vec<String> = endpoints
        .iter()
        .map(|ep| ep.pod.spiffe_id(&topology.trust_domain))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let alpns: &[&str] = match sp.protocol {
        Protocol::Http => UPSTREAM_HTTP11_ALPNS,
        Protocol::Tcp | Protocol::Auto => UPSTREAM_TCP_ALPNS,
    };
    let mut cluster = json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": CONNECT_TIMEOUT,
        "lb_policy": "LEAST_REQUEST",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": lb_endpoints}]},
    });
    let tls_kind = cluster_tls(sidecar, service, sp.port)?;
    let sni = istio_sni(sp.port, &fqdn);
    if let Some(obj) = cluster.as_object_mut() {
        match tls_kind {
            ClusterTls::Plaintext => {}
            ClusterTls::IstioMutual => {
                obj.insert(
                    "transport_socket".into(),
                    tls::upstream_istio_mutual(&sni, &sans, alpns),
                );
            }
            ClusterTls::Auto => {
                // `applyUpstreamTLSSettings`: auto-detected Istio mTLS moves the socket into
                // a `tlsMode-istio` match, then `tlsMode-disabled` plaintext for the rest.
                obj.insert(
                    "transport_socket_matches".into(),
                    json!([
                        {
                            "name": "tlsMode-istio",
                            "match": {"tlsMode": "istio"},
                            "transport_socket": tls::upstream_istio_mutual(&sni, &sans, alpns),
                        },
                        {"name": "tlsMode-disabled", "match": {}, "transport_socket": raw_buffer()}
                    ]),
                );
            }
            ClusterTls::Simple => {
                obj.insert("transport_socket".into(), tls::upstream_simple());
                // `setAutoSniAndAutoSanValidation`: no SNI or SANs in the rule.
                obj.insert(
                    "typed_extension_protocol_options".into(),
                    json!({"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                        "upstream_http_protocol_options": {"auto_sni": true, "auto_san_validation": true},
                        "explicit_http_config": {"http_protocol_options": {}}
                    }}),
                );
            }
        }
    }
    Ok((cluster, tls_kind))
}
