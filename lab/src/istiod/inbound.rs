//! The sidecar's inbound side: `virtualInbound` on [`INBOUND_PORT`] and its clusters
//! (`pilot/pkg/networking/core/listener_inbound.go`, tag 1.29.6).

use super::tls::{self, ChainOption, ChainProtocol, Transport};
use super::wasmplugin::{self, ListenerClass, PluginType, WasmPlugin};
use super::{http_filter_tail, tcp_proxy, workload_of, IstiodError, Sidecar};
use super::{INBOUND_PASSTHROUGH_BIND, INBOUND_PORT};
use crate::topology::Protocol;
use policy::resolve::Level;
use policy::MtlsMode;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

/// `util.BlackHoleCluster`.
pub const BLACKHOLE_CLUSTER: &str = "BlackHoleCluster";
/// `util.InboundPassthroughCluster`.
pub const INBOUND_PASSTHROUGH_CLUSTER: &str = "InboundPassthroughCluster";
/// `model.VirtualInboundListenerName`; also the passthrough TCP chain's name.
pub const VIRTUAL_INBOUND: &str = "virtualInbound";
/// `model.VirtualInboundCatchAllHTTPFilterChainName`.
pub const CATCHALL_HTTP_CHAIN: &str = "virtualInbound-catchall-http";
/// `model.VirtualInboundBlackholeFilterChainName`.
pub const BLACKHOLE_CHAIN: &str = "virtualInbound-blackhole";
/// `constants.StatPrefixDelimiter`, which `util.DelimitedStatsPrefix` appends to HCM stat prefixes.
pub const STAT_PREFIX_DELIMITER: &str = ";";
/// Mesh `connectTimeout` default.
const CONNECT_TIMEOUT: &str = "10s";
/// `maxSecondsValue`: istiod never cleans up inbound ORIGINAL_DST hosts (`cluster_builder.go`).
const NEVER: &str = "9223372035s";

/// One port of the pod that a Service routes to: it gets its own filter chains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundPort {
    /// The container (target) port: what the chains match on.
    pub port: u16,
    /// The Service port that chose it, and its Service's name (telemetry and route names).
    pub service_port: u16,
    pub service_fqdn: String,
    pub protocol: Protocol,
    pub mode: MtlsMode,
}

/// The ports that get per-port chains: the target ports of the Services that select the
/// pod (`lb.node.ServiceTargets`, `getFilterChainsByServicePort`), one chain set per
/// target port with the protocol of the first Service port that reaches it (istiod
/// keeps the oldest Service on a conflict; the lab's order is manifest order), sorted
/// by port (`buildInboundChainConfigs`). A container port no Service selects gets no
/// chains of its own: the passthrough chains take it.
pub fn inbound_ports(sidecar: &Sidecar) -> Result<Vec<InboundPort>, IstiodError> {
    let workload = workload_of(sidecar.mesh, sidecar.pod)?;
    let resolver = sidecar.mesh.resolver();
    let topology = sidecar.topology;
    let mut by_port: BTreeMap<u16, InboundPort> = BTreeMap::new();
    for service in &topology.services {
        for sp in &service.ports {
            for ep in service.endpoints(topology, sp.port) {
                if ep.pod != sidecar.pod || by_port.contains_key(&ep.port) {
                    continue;
                }
                let mode = resolver.mode(
                    &workload.namespace,
                    &workload.labels,
                    Some(u32::from(ep.port)),
                );
                by_port.insert(
                    ep.port,
                    InboundPort {
                        port: ep.port,
                        service_port: sp.port,
                        service_fqdn: service.fqdn(&topology.cluster_domain),
                        protocol: sp.protocol,
                        mode,
                    },
                );
            }
        }
    }
    Ok(by_port.into_values().collect())
}

/// The modes of the passthrough chains (`Builder.ForPassthrough`,
/// `pilot/pkg/networking/plugin/authn/authentication.go`): first port 0, no port match,
/// in the workload's own mode (mesh → namespace → workload, without port-level
/// settings: `InboundMTLSSettings(0, …)`); then one per `portLevelMtls` port of the
/// workload's policy that no Service targets (`needPerPortPassthroughFilterChain`), in
/// that port's mode.
pub fn passthrough_modes(
    sidecar: &Sidecar,
    ports: &[InboundPort],
) -> Result<Vec<(u16, MtlsMode)>, IstiodError> {
    let mesh = sidecar.mesh;
    let workload = workload_of(mesh, sidecar.pod)?;
    let resolver = mesh.resolver();
    let mut out = vec![(
        0,
        resolver.mode(&workload.namespace, &workload.labels, None),
    )];
    let described = mesh.describe(workload);
    let winner = described
        .workload
        .steps
        .iter()
        .find(|s| s.level == Level::Workload)
        .and_then(|s| s.policy.as_ref());
    let port_level: BTreeSet<u32> = winner
        .and_then(|r| {
            mesh.peer_authentications
                .iter()
                .find(|p| p.name == r.name && p.namespace == r.namespace)
        })
        .map(|p| p.port_level.keys().copied().collect())
        .unwrap_or_default();
    for port in port_level {
        let Ok(port16) = u16::try_from(port) else {
            continue;
        };
        if ports.iter().any(|p| p.port == port16) {
            continue;
        }
        out.push((
            port16,
            resolver.mode(&workload.namespace, &workload.labels, Some(port)),
        ));
    }
    Ok(out)
}

/// What [`build`] returns: the listener and the clusters its chains name.
pub(super) struct Inbound {
    pub listener: Value,
    pub clusters: Vec<Value>,
}

/// One chain config (`inboundChainConfig`): a Service port's, or a passthrough one.
struct ChainConfig {
    /// Destination port to match; 0 for the full passthrough.
    port: u16,
    /// Service port for route/vhost names (0 for passthrough).
    service_port: u16,
    /// Service host for the trace operation ("" for passthrough).
    host: String,
    cluster: String,
    passthrough: bool,
}

impl ChainConfig {
    /// `inboundChainConfig.Name`.
    fn name(&self, protocol: ChainProtocol) -> String {
        match (self.passthrough, protocol) {
            (true, ChainProtocol::Http) => CATCHALL_HTTP_CHAIN.into(),
            (true, ChainProtocol::Tcp) => VIRTUAL_INBOUND.into(),
            (false, _) => format!("0.0.0.0_{}", self.port),
        }
    }

    /// `inboundChainConfig.StatPrefix`, for the HCM.
    fn http_stat_prefix(&self) -> String {
        if self.passthrough {
            format!("{}{STAT_PREFIX_DELIMITER}", self.cluster)
        } else {
            format!("inbound_0.0.0.0_{}{STAT_PREFIX_DELIMITER}", self.port)
        }
    }
}

/// `virtualInbound` and the clusters it sends to.
pub(super) fn build(sidecar: &Sidecar, plugins: &[&WasmPlugin]) -> Result<Inbound, IstiodError> {
    let ports = inbound_ports(sidecar)?;
    let passthrough = passthrough_modes(sidecar, &ports)?;
    let td = &sidecar.topology.trust_domain;

    // Chain order: blackhole, passthrough chains, per-port chains
    // (`inboundVirtualListener`, `buildInboundPassthroughChains`).
    let mut chains = vec![blackhole_chain()];
    for (port, mode) in &passthrough {
        let cc = ChainConfig {
            port: *port,
            service_port: 0,
            host: String::new(),
            cluster: INBOUND_PASSTHROUGH_CLUSTER.into(),
            passthrough: true,
        };
        // Passthrough traffic is of unknown protocol: the "auto" options.
        for opt in tls::chain_options(*mode, Protocol::Auto) {
            chains.push(filter_chain(sidecar, plugins, &cc, &opt, td));
        }
    }
    let mut clusters = vec![
        inbound_passthrough_cluster(),
        json!({
            // `buildBlackHoleCluster`: STATIC with no endpoints.
            "name": BLACKHOLE_CLUSTER,
            "type": "STATIC",
            "connect_timeout": CONNECT_TIMEOUT,
            "lb_policy": "ROUND_ROBIN",
        }),
    ];
    for p in &ports {
        let cc = ChainConfig {
            port: p.port,
            service_port: p.service_port,
            host: p.service_fqdn.clone(),
            cluster: format!("inbound|{}||", p.port),
            passthrough: false,
        };
        for opt in tls::chain_options(p.mode, p.protocol) {
            chains.push(filter_chain(sidecar, plugins, &cc, &opt, td));
        }
        clusters.push(inbound_cluster(&cc.cluster));
    }
    let listener_filters = listener_filters(&chains);
    let listener = json!({
        "name": VIRTUAL_INBOUND,
        "address": {"socket_address": {"address": "0.0.0.0", "port_value": INBOUND_PORT}},
        "traffic_direction": "INBOUND",
        "continue_on_listener_filters_timeout": true,
        // Mesh `protocolDetectionTimeout` (default 0s: no timeout).
        "listener_filters_timeout": "0s",
        "listener_filters": listener_filters,
        "filter_chains": chains,
    });
    Ok(Inbound { listener, clusters })
}

/// `buildInboundBlackhole`: traffic addressed to 15006 itself would loop.
fn blackhole_chain() -> Value {
    json!({
        "name": BLACKHOLE_CHAIN,
        "filter_chain_match": {"destination_port": INBOUND_PORT},
        "filters": [tcp_proxy(BLACKHOLE_CLUSTER, BLACKHOLE_CLUSTER)],
    })
}

/// One filter chain for one option (`inboundChainForOpts`).
fn filter_chain(
    sidecar: &Sidecar,
    plugins: &[&WasmPlugin],
    cc: &ChainConfig,
    opt: &ChainOption,
    trust_domain: &str,
) -> Value {
    let mut m = serde_json::Map::new();
    if cc.port > 0 {
        m.insert("destination_port".into(), json!(cc.port));
    }
    m.insert("transport_protocol".into(), json!(opt.transport.as_str()));
    if !opt.alpns.is_empty() {
        m.insert("application_protocols".into(), json!(opt.alpns));
    }
    let module = sidecar.wasm_module.as_deref();
    // NETWORK plugins sit before the HCM too (`buildInboundNetworkFiltersForHTTP`) and
    // before tcp_proxy (`buildCompleteNetworkFilters`, `networkfilter.go`), phase by phase.
    let mut filters = wasmplugin::phased(
        plugins,
        PluginType::Network,
        ListenerClass::SidecarInbound,
        cc.port,
        module,
    );
    match opt.protocol {
        ChainProtocol::Http => filters.push(hcm(plugins, cc, module)),
        // `buildInboundNetworkFilters`: stat prefix is the cluster name.
        ChainProtocol::Tcp => filters.push(tcp_proxy(&cc.cluster, &cc.cluster)),
    }
    let mut chain = json!({
        "name": cc.name(opt.protocol),
        "filter_chain_match": Value::Object(m),
        "filters": filters,
    });
    if opt.terminates_mtls {
        if let Some(obj) = chain.as_object_mut() {
            obj.insert(
                "transport_socket".into(),
                tls::downstream_mtls(opt.protocol, trust_domain),
            );
        }
    }
    chain
}

/// The inbound HTTP connection manager (`buildSidecarInboundHTTPOpts`,
/// `buildHTTPConnectionManager`; headers from `util/proxy_headers.go` defaults).
fn hcm(plugins: &[&WasmPlugin], cc: &ChainConfig, module: Option<&std::path::Path>) -> Value {
    let mut http_filters = wasmplugin::phased(
        plugins,
        PluginType::Http,
        ListenerClass::SidecarInbound,
        cc.port,
        module,
    );
    http_filters.extend(http_filter_tail());
    json!({
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": cc.http_stat_prefix(),
            "codec_type": "AUTO",
            "route_config": inbound_route(cc),
            "http_filters": http_filters,
            "use_remote_address": false,
            "forward_client_cert_details": "APPEND_FORWARD",
            "set_current_client_cert_details": {"subject": true, "uri": true, "dns": true},
            "server_name": "istio-envoy",
            "normalize_path": true,
            "path_with_escaped_slashes_action": "KEEP_UNCHANGED",
            "upgrade_configs": [{"upgrade_type": "websocket"}],
            "stream_idle_timeout": "0s",
        }
    })
}

/// `buildSidecarInboundHTTPRouteConfig` with `BuildDefaultHTTPInboundRoute`
/// (`httproute.go`, `route/route.go`): one vhost `inbound|http|<service port>` for `*`,
/// one route to the chain's cluster, no timeouts, retried only before the request was sent.
fn inbound_route(cc: &ChainConfig) -> Value {
    json!({
        "name": cc.cluster,
        "validate_clusters": false,
        "virtual_hosts": [{
            "name": format!("inbound|http|{}", cc.service_port),
            "domains": ["*"],
            "routes": [{
                "name": "default",
                "match": {"prefix": "/"},
                "decorator": {"operation": format!("{}:{}/*", cc.host, cc.service_port)},
                "route": {
                    "cluster": cc.cluster,
                    "timeout": "0s",
                    "max_stream_duration": {"max_stream_duration": "0s", "grpc_timeout_header_max": "0s"},
                    "retry_policy": {"retry_on": "reset-before-request", "num_retries": 2},
                }
            }]
        }]
    })
}

/// `inbound|<port>||`: with the default `inboundTrafficPolicy` (PASSTHROUGH) an
/// ORIGINAL_DST cluster with no endpoints, so Envoy connects to the connection's own
/// destination (pod IP, container port) from 127.0.0.6, which iptables lets through
/// (`buildInboundCluster`, `cluster_builder.go`).
fn inbound_cluster(name: &str) -> Value {
    json!({
        "name": name,
        "type": "ORIGINAL_DST",
        "lb_policy": "CLUSTER_PROVIDED",
        "connect_timeout": CONNECT_TIMEOUT,
        "cleanup_interval": NEVER,
        "upstream_bind_config": {"source_address": {"address": INBOUND_PASSTHROUGH_BIND, "port_value": 0}},
    })
}

/// `buildInboundPassthroughCluster`: the default passthrough cluster bound to 127.0.0.6.
fn inbound_passthrough_cluster() -> Value {
    json!({
        "name": INBOUND_PASSTHROUGH_CLUSTER,
        "type": "ORIGINAL_DST",
        "lb_policy": "CLUSTER_PROVIDED",
        "connect_timeout": CONNECT_TIMEOUT,
        "upstream_bind_config": {"source_address": {"address": INBOUND_PASSTHROUGH_BIND, "port_value": 0}},
    })
}

/// Which inspectors one destination port needs (`enabledInspector`).
#[derive(Default, Clone, Copy)]
struct Inspectors {
    tls: bool,
    http: bool,
}

/// `populateListenerFilters` (`listener_inbound.go`): original_dst always; the TLS
/// inspector if any chain matches `tls`, the HTTP inspector if any chain matches
/// `http/1.1` or `h2c`, each switched off (`filter_disabled`) on the ports whose
/// chains do not need it.
fn listener_filters(chains: &[Value]) -> Vec<Value> {
    let mut by_port: BTreeMap<u16, Inspectors> = BTreeMap::new();
    for c in chains {
        let m = &c["filter_chain_match"];
        let port = m["destination_port"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or(0);
        let i = by_port.entry(port).or_default();
        i.tls |= m["transport_protocol"] == Transport::Tls.as_str();
        i.http |= m["application_protocols"]
            .as_array()
            .is_some_and(|a| a.iter().any(|p| p == "http/1.1" || p == "h2c"));
    }
    let mut out = vec![json!({
        "name": "envoy.filters.listener.original_dst",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst"}
    })];
    if by_port.values().any(|i| i.tls) {
        let mut f = json!({
            "name": "envoy.filters.listener.tls_inspector",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector",
                "initial_read_buffer_size": 512
            }
        });
        // `buildTLSInspector`: when the passthrough (port 0) needs it, list the ports
        // that do not; otherwise enable it only on the ports that do.
        let default_on = by_port.get(&0).is_some_and(|i| i.tls);
        let listed: Vec<u16> = by_port
            .iter()
            .filter(|(p, i)| **p != 0 && i.tls != default_on)
            .map(|(p, _)| *p)
            .collect();
        if !listed.is_empty() {
            let rule = exclude_ports(&listed);
            let disabled = if default_on {
                rule
            } else {
                json!({"not_match": rule})
            };
            insert(&mut f, "filter_disabled", disabled);
        }
        out.push(f);
    }
    if by_port.values().any(|i| i.http) {
        let mut f = json!({
            "name": "envoy.filters.listener.http_inspector",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.listener.http_inspector.v3.HttpInspector"}
        });
        // `buildHTTPInspector`: every port (port 0 included) that does not need it.
        let off: Vec<u16> = by_port
            .iter()
            .filter(|(_, i)| !i.http)
            .map(|(p, _)| *p)
            .collect();
        if !off.is_empty() {
            insert(&mut f, "filter_disabled", exclude_ports(&off));
        }
        out.push(f);
    }
    out
}

/// `listenerPredicateExcludePorts`: a predicate true on exactly these ports.
fn exclude_ports(ports: &[u16]) -> Value {
    let rules: Vec<Value> = ports
        .iter()
        .map(|p| json!({"destination_port_range": {"start": p, "end": u32::from(*p) + 1}}))
        .collect();
    match rules.as_slice() {
        [one] => one.clone(),
        _ => json!({"or_match": {"rules": rules}}),
    }
}

fn insert(v: &mut Value, key: &str, value: Value) {
    if let Some(obj) = v.as_object_mut() {
        obj.insert(key.into(), value);
    }
}
