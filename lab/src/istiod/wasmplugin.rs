//! WasmPlugins as istiod reads them: which sidecars a plugin selects, on which
//! listeners its `match` puts it, where its phase and priority place it, and the
//! Envoy filter it becomes (`pilot/pkg/model/extensions.go`, tag 1.29.6).

use super::IstiodError;
use crate::topology::Pod;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// `spec.phase`: where in the filter chain the plugin goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PluginPhase {
    /// `UNSPECIFIED_PHASE`: after every phase, just before Istio's stats and the router.
    Unspecified,
    Authn,
    Authz,
    Stats,
}

/// `spec.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginType {
    /// `HTTP`, or unset (`UNSPECIFIED_PLUGIN_TYPE` is HTTP, `fromPluginType`).
    Http,
    Network,
}

/// `spec.failStrategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailStrategy {
    /// `FAIL_CLOSE`, the API's default (enum value 0).
    FailClose,
    FailOpen,
    FailReload,
}

impl FailStrategy {
    /// Envoy's `failure_policy` for it (`buildPluginConfig`, `extensions.go`).
    pub fn envoy_failure_policy(self) -> &'static str {
        match self {
            FailStrategy::FailClose => "FAIL_CLOSED",
            FailStrategy::FailOpen => "FAIL_OPEN",
            FailStrategy::FailReload => "FAIL_RELOAD",
        }
    }
}

/// `match[].mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkloadMode {
    /// `UNDEFINED` (or unset): every listener, as `CLIENT_AND_SERVER`.
    Undefined,
    Client,
    Server,
    ClientAndServer,
}

/// One `match` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafficSelector {
    pub mode: WorkloadMode,
    /// `ports[].number`; empty: every port.
    pub ports: Vec<u16>,
}

/// One WasmPlugin document.
#[derive(Debug, Clone, PartialEq)]
pub struct WasmPlugin {
    pub name: String,
    pub namespace: String,
    /// `selector.matchLabels`; `None`: every workload of the namespace.
    pub selector: Option<BTreeMap<String, String>>,
    /// Whether it has `targetRef`/`targetRefs`: such a plugin never attaches to a
    /// sidecar (`ShouldAttachPolicy`, `pilot/pkg/model/policyattachment.go`).
    pub has_target_refs: bool,
    pub phase: PluginPhase,
    /// `None` sorts after every number (`math.MinInt32`, `push_context.go`).
    pub priority: Option<i32>,
    pub matches: Vec<TrafficSelector>,
    pub plugin_type: PluginType,
    pub fail_strategy: FailStrategy,
    /// `pluginName`, Envoy's `root_id`.
    pub plugin_name: Option<String>,
    pub url: String,
    /// `pluginConfig` exactly as written (`Value::Null` when absent).
    pub plugin_config: Value,
}

/// Which side of the proxy a listener serves (`ListenerClass`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerClass {
    SidecarInbound,
    SidecarOutbound,
}

impl WasmPlugin {
    /// `extensions.istio.io/wasmplugin/<ns>.<name>`, the ECDS resource and filter name.
    pub fn resource_name(&self) -> String {
        format!(
            "extensions.istio.io/wasmplugin/{}.{}",
            self.namespace, self.name
        )
    }

    /// Whether its `match` puts it on a listener of `class` for `port`
    /// (`matchTrafficSelectors`, `extensions.go`). `port` is the destination container
    /// port inbound and the Service port outbound; the passthrough chains have port 0,
    /// which only a selector without ports matches.
    pub fn matches_listener(&self, class: ListenerClass, port: u16) -> bool {
        if self.matches.is_empty() {
            return true;
        }
        self.matches.iter().any(|m| {
            let mode = match m.mode {
                WorkloadMode::Undefined | WorkloadMode::ClientAndServer => true,
                WorkloadMode::Server => class == ListenerClass::SidecarInbound,
                WorkloadMode::Client => class == ListenerClass::SidecarOutbound,
            };
            mode && (m.ports.is_empty() || m.ports.contains(&port))
        })
    }

    /// The Envoy filter for it, loading `module`: HTTP plugins as
    /// `envoy.filters.http.wasm`, NETWORK ones as `envoy.filters.network.wasm`, named
    /// as the ECDS resource istiod would send, configured as `buildPluginConfig` does
    /// (name `<ns>.<name>`, `root_id` = pluginName, the pluginConfig as a JSON string,
    /// runtime v8, `failure_policy` from failStrategy). `vm_id` is left unset, as istiod
    /// leaves it.
    pub fn envoy_filter(&self, module: &Path) -> Value {
        let mut config = json!({
            "name": format!("{}.{}", self.namespace, self.name),
            "vm_config": {
                "runtime": "envoy.wasm.runtime.v8",
                "code": {"local": {"filename": module}},
            },
            "failure_policy": self.fail_strategy.envoy_failure_policy(),
        });
        if let Some(obj) = config.as_object_mut() {
            if let Some(root) = &self.plugin_name {
                obj.insert("root_id".into(), Value::String(root.clone()));
            }
            // An empty pluginConfig leaves `configuration` an empty Any.
            if self
                .plugin_config
                .as_object()
                .is_some_and(|o| !o.is_empty())
            {
                obj.insert(
                    "configuration".into(),
                    json!({
                        "@type": "type.googleapis.com/google.protobuf.StringValue",
                        "value": self.plugin_config.to_string(),
                    }),
                );
            }
        }
        let kind = match self.plugin_type {
            PluginType::Http => "http",
            PluginType::Network => "network",
        };
        json!({
            "name": self.resource_name(),
            "typed_config": {
                "@type": format!("type.googleapis.com/envoy.extensions.filters.{kind}.wasm.v3.Wasm"),
                "config": config,
            }
        })
    }
}

/// Every WasmPlugin document in the YAML stream `text` (from file `source`), in order.
/// Other kinds are skipped. `Err` on a YAML error or a WasmPlugin field istiod would
/// refuse (an unknown enum value, a port out of range).
pub fn wasm_plugins(source: &str, text: &str) -> Result<Vec<WasmPlugin>, IstiodError> {
    let docs = crate::yaml::yaml_documents(text).map_err(|message| IstiodError::Manifest {
        file: source.to_string(),
        message,
    })?;
    docs.iter()
        .filter(|d| d["kind"] == "WasmPlugin")
        .map(|d| parse(source, d))
        .collect()
}

fn parse(source: &str, doc: &Value) -> Result<WasmPlugin, IstiodError> {
    let name = doc["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let bad = |message: String| IstiodError::WasmPlugin {
        file: source.to_string(),
        name: name.clone(),
        message,
    };
    let spec = &doc["spec"];
    let enum_field = |field: &str, default: &'static str| -> String {
        spec[field].as_str().unwrap_or(default).to_string()
    };
    let phase = match enum_field("phase", "UNSPECIFIED_PHASE").as_str() {
        "UNSPECIFIED_PHASE" => PluginPhase::Unspecified,
        "AUTHN" => PluginPhase::Authn,
        "AUTHZ" => PluginPhase::Authz,
        "STATS" => PluginPhase::Stats,
        other => return Err(bad(format!("unknown phase {other:?}"))),
    };
    let plugin_type = match enum_field("type", "UNSPECIFIED_PLUGIN_TYPE").as_str() {
        "UNSPECIFIED_PLUGIN_TYPE" | "HTTP" => PluginType::Http,
        "NETWORK" => PluginType::Network,
        other => return Err(bad(format!("unknown type {other:?}"))),
    };
    let fail_strategy = match enum_field("failStrategy", "FAIL_CLOSE").as_str() {
        "FAIL_CLOSE" => FailStrategy::FailClose,
        "FAIL_OPEN" => FailStrategy::FailOpen,
        "FAIL_RELOAD" => FailStrategy::FailReload,
        other => return Err(bad(format!("unknown failStrategy {other:?}"))),
    };
    let priority = match &spec["priority"] {
        Value::Null => None,
        v => Some(
            v.as_i64()
                .and_then(|p| i32::try_from(p).ok())
                .ok_or_else(|| bad(format!("priority {v} is not a 32-bit integer")))?,
        ),
    };
    let selector = spec["selector"]["matchLabels"].as_object().map(|m| {
        m.iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect()
    });
    let mut matches = Vec::new();
    for m in spec["match"].as_array().into_iter().flatten() {
        let mode = match m["mode"].as_str().unwrap_or("UNDEFINED") {
            "UNDEFINED" => WorkloadMode::Undefined,
            "CLIENT" => WorkloadMode::Client,
            "SERVER" => WorkloadMode::Server,
            "CLIENT_AND_SERVER" => WorkloadMode::ClientAndServer,
            other => return Err(bad(format!("unknown match mode {other:?}"))),
        };
        let mut ports = Vec::new();
        for p in m["ports"].as_array().into_iter().flatten() {
            let n = p["number"]
                .as_u64()
                .and_then(|n| u16::try_from(n).ok())
                .filter(|n| *n > 0)
                .ok_or_else(|| bad(format!("match port {p} is not a port number")))?;
            ports.push(n);
        }
        matches.push(TrafficSelector { mode, ports });
    }
    Ok(WasmPlugin {
        namespace: doc["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string(),
        selector,
        has_target_refs: !spec["targetRefs"].is_null() || !spec["targetRef"].is_null(),
        phase,
        priority,
        matches,
        plugin_type,
        fail_strategy,
        plugin_name: spec["pluginName"].as_str().map(str::to_string),
        url: spec["url"].as_str().unwrap_or_default().to_string(),
        plugin_config: spec["pluginConfig"].clone(),
        name,
    })
}

/// [`plugins_for_in`] with Istio's default root namespace, `istio-system`.
pub fn plugins_for<'p>(pod: &Pod, plugins: &'p [WasmPlugin]) -> Vec<&'p WasmPlugin> {
    plugins_for_in(pod, plugins, &policy::MeshConfig::default().root_namespace)
}

/// The plugins istiod attaches to `pod`'s sidecar, in the order it inserts them within
/// one phase (`WasmPluginsByListenerInfo`, `pilot/pkg/model/push_context.go`): the
/// pod's namespace first, then the root namespace (whose plugins apply everywhere);
/// a plugin without selector takes every workload, one with a selector those whose
/// labels include it (`isSelected`, `policyattachment.go`), one with targetRefs none;
/// then a stable sort by priority, higher first, unset last.
pub fn plugins_for_in<'p>(
    pod: &Pod,
    plugins: &'p [WasmPlugin],
    root_namespace: &str,
) -> Vec<&'p WasmPlugin> {
    let selects = |p: &WasmPlugin| {
        !p.has_target_refs
            && p.selector
                .as_ref()
                .is_none_or(|s| s.iter().all(|(k, v)| pod.labels.get(k) == Some(v)))
    };
    let mut namespaces = vec![pod.namespace.as_str()];
    if root_namespace != pod.namespace {
        namespaces.push(root_namespace);
    }
    let mut out: Vec<&WasmPlugin> = namespaces
        .iter()
        .flat_map(|ns| plugins.iter().filter(move |p| p.namespace == *ns))
        .filter(|p| selects(p))
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.priority.unwrap_or(i32::MIN)));
    out
}

/// The filters of `plugins` of `plugin_type` that go on a listener of `class` for `port`,
/// in phase `phase`.
pub(crate) fn phase_filters(
    plugins: &[&WasmPlugin],
    plugin_type: PluginType,
    class: ListenerClass,
    port: u16,
    phase: PluginPhase,
    module: Option<&Path>,
) -> Vec<Value> {
    let Some(module) = module else {
        return Vec::new();
    };
    plugins
        .iter()
        .filter(|p| p.plugin_type == plugin_type && p.phase == phase)
        .filter(|p| p.matches_listener(class, port))
        .map(|p| p.envoy_filter(module))
        .collect()
}

/// All filters of `plugins` of `plugin_type` for a listener, phase by phase in istiod's
/// order AUTHN, AUTHZ, STATS, unspecified (`buildHTTPConnectionManager`,
/// `listener_builder.go`; `buildInboundNetworkFiltersForHTTP`, `listener_inbound.go`).
/// Istio's own filters between the phases (`jwt_authn` after AUTHN, `rbac` after
/// AUTHZ) exist only with a RequestAuthentication or AuthorizationPolicy, which the
/// lab has none of.
pub(crate) fn phased(
    plugins: &[&WasmPlugin],
    plugin_type: PluginType,
    class: ListenerClass,
    port: u16,
    module: Option<&Path>,
) -> Vec<Value> {
    [
        PluginPhase::Authn,
        PluginPhase::Authz,
        PluginPhase::Stats,
        PluginPhase::Unspecified,
    ]
    .into_iter()
    .flat_map(|phase| phase_filters(plugins, plugin_type, class, port, phase, module))
    .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use std::net::Ipv4Addr;

    fn pod(ns: &str, labels: &[(&str, &str)]) -> Pod {
        Pod {
            namespace: ns.into(),
            name: "httpbin".into(),
            ip: Ipv4Addr::new(10, 244, 0, 2),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            service_account: "httpbin".into(),
            sidecar: true,
            container_ports: vec![80],
        }
    }

    const PLUGINS: &str = "
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: {name: low, namespace: bar}
spec:
  url: file:///x.wasm
  phase: AUTHN
  priority: 10
---
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: {name: mesh-wide, namespace: istio-system}
spec:
  url: file:///x.wasm
  selector: {matchLabels: {app: httpbin}}
---
apiVersion: v1
kind: Service
metadata: {name: not-a-plugin, namespace: bar}
---
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: {name: high, namespace: bar}
spec:
  url: file:///x.wasm
  priority: 1000
  type: NETWORK
  failStrategy: FAIL_OPEN
  match: [{mode: SERVER, ports: [{number: 80}]}]
---
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: {name: other-app, namespace: bar}
spec:
  url: file:///x.wasm
  selector: {matchLabels: {app: sleep}}
---
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: {name: gateway-only, namespace: bar}
spec:
  url: file:///x.wasm
  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: gw}]
";

    #[test]
    fn a_pod_gets_its_namespace_and_root_namespace_plugins_ordered_by_priority() {
        let plugins = wasm_plugins("t.yaml", PLUGINS).unwrap();
        assert_eq!(plugins.len(), 5);
        let picked: Vec<&str> = plugins_for(&pod("bar", &[("app", "httpbin")]), &plugins)
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        // 1000, then 10, then the unset priority (MinInt32) of the root-namespace plugin.
        assert_eq!(picked, ["high", "low", "mesh-wide"]);
        let elsewhere: Vec<&str> = plugins_for(&pod("foo", &[("app", "sleep")]), &plugins)
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert!(elsewhere.is_empty(), "{elsewhere:?}");
    }

    #[test]
    fn match_mode_and_ports_decide_the_listener() {
        let plugins = wasm_plugins("t.yaml", PLUGINS).unwrap();
        let high = plugins.iter().find(|p| p.name == "high").unwrap();
        assert!(high.matches_listener(ListenerClass::SidecarInbound, 80));
        assert!(!high.matches_listener(ListenerClass::SidecarInbound, 8080));
        assert!(!high.matches_listener(ListenerClass::SidecarInbound, 0));
        assert!(!high.matches_listener(ListenerClass::SidecarOutbound, 80));
        let low = plugins.iter().find(|p| p.name == "low").unwrap();
        assert!(low.matches_listener(ListenerClass::SidecarOutbound, 8000));
        assert!(low.matches_listener(ListenerClass::SidecarInbound, 0));
    }

    #[test]
    fn the_envoy_filter_carries_the_plugin_config_and_failure_policy() {
        let plugins = wasm_plugins(
            "t.yaml",
            "kind: WasmPlugin\nmetadata: {name: p, namespace: bar}\nspec:\n  pluginName: root\n  failStrategy: FAIL_OPEN\n  pluginConfig: {action: audit, mtls: {mode: STRICT}}\n",
        )
        .unwrap();
        let f = plugins[0].envoy_filter(Path::new("/m.wasm"));
        assert_eq!(f["name"], "extensions.istio.io/wasmplugin/bar.p");
        let c = &f["typed_config"]["config"];
        assert_eq!(c["name"], "bar.p");
        assert_eq!(c["root_id"], "root");
        assert_eq!(c["failure_policy"], "FAIL_OPEN");
        let config: Value =
            serde_json::from_str(c["configuration"]["value"].as_str().unwrap()).unwrap();
        assert_eq!(
            config,
            json!({"action": "audit", "mtls": {"mode": "STRICT"}})
        );
    }

    #[test]
    fn an_unknown_phase_is_refused_with_the_file_and_plugin_named() {
        let err = wasm_plugins(
            "bad.yaml",
            "kind: WasmPlugin\nmetadata: {name: p, namespace: bar}\nspec: {phase: FIRST}\n",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "bad.yaml: WasmPlugin p: unknown phase \"FIRST\""
        );
    }
}
