//! Kubernetes and Istio kinds as peerauth models them: which kinds are read,
//! which of their fields matter, and how each becomes a [`Resource`]. The
//! loader (`source`) finds the documents; this module maps one
//! document's mapping to a resource, or names the field of the wrong type.

use crate::model::{ContainerPort, ObjectMeta, Resource, ServicePort, TargetPort};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct PodTemplateWire {
    #[serde(default)]
    metadata: ObjectMeta,
    #[serde(default)]
    spec: PodSpecWire,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct PodSpecWire {
    #[serde(default)]
    containers: Vec<ContainerWire>,
}

#[derive(Deserialize)]
struct ContainerWire {
    #[serde(default)]
    ports: Vec<ContainerPortWire>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContainerPortWire {
    container_port: u16,
    name: Option<String>,
}

/// `map[key]` as `T`, or `T::default()` when it is missing or has another
/// shape: kinds read only for the ambient checks never become input errors
/// (their own CRD validation is elsewhere).
fn lenient<T: serde::de::DeserializeOwned + Default>(
    map: &mut serde_json::Map<String, Value>,
    key: &str,
) -> T {
    map.remove(key)
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default()
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct GatewaySpecWire {
    #[serde(default)]
    gateway_class_name: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct WasmPluginSpecWire {
    selector: Option<crate::model::WorkloadSelector>,
    #[serde(default)]
    target_refs: Vec<crate::model::TargetRef>,
    #[serde(default, rename = "match")]
    matches: Vec<WasmMatchWire>,
}

#[derive(Deserialize, Default)]
struct WasmMatchWire {
    #[serde(default)]
    ports: Vec<Value>,
}

#[derive(Deserialize, Default)]
struct ServiceSpecWire {
    #[serde(default)]
    selector: BTreeMap<String, String>,
    #[serde(default)]
    ports: Vec<ServicePortWire>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServicePortWire {
    name: Option<String>,
    port: u16,
    target_port: Option<TargetPort>,
}

/// A field of the wrong type: its JSON pointer (for the line) and serde's message.
pub(crate) struct ShapeError {
    pub(crate) path: &'static str,
    pub(crate) message: String,
}

fn field<T: serde::de::DeserializeOwned + Default>(
    map: &mut serde_json::Map<String, Value>,
    key: &'static str,
    path: &'static str,
) -> Result<T, ShapeError> {
    match map.remove(key) {
        None => Ok(T::default()),
        Some(v) => serde_json::from_value(v).map_err(|e| ShapeError {
            path,
            message: format!("`{key}`: {e}"),
        }),
    }
}

/// The resource a document of `kind` describes; `Ok(None)` for kinds peerauth
/// does not model (the loader counts them as skipped).
pub(crate) fn resource(
    kind: &str,
    api_version: String,
    mut map: serde_json::Map<String, Value>,
) -> Result<Option<Resource>, ShapeError> {
    let resource = match kind {
        "PeerAuthentication" => {
            let meta = field(&mut map, "metadata", "/metadata")?;
            let spec = field(&mut map, "spec", "/spec")?;
            Resource::PeerAuthentication {
                api_version,
                meta,
                spec,
            }
        }
        "DestinationRule" => {
            let meta = field(&mut map, "metadata", "/metadata")?;
            let spec = field(&mut map, "spec", "/spec")?;
            Resource::DestinationRule {
                api_version,
                meta,
                spec,
            }
        }
        "Namespace" => Resource::Namespace {
            meta: field(&mut map, "metadata", "/metadata")?,
        },
        "Pod" => {
            let meta: ObjectMeta = field(&mut map, "metadata", "/metadata")?;
            let spec: PodSpecWire = field(&mut map, "spec", "/spec")?;
            Resource::Workload {
                source_kind: kind.to_string(),
                pod_labels: meta.labels.clone(),
                pod_annotations: meta.annotations.clone(),
                meta,
                ports: container_ports(spec),
            }
        }
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" => {
            let meta: ObjectMeta = field(&mut map, "metadata", "/metadata")?;
            let mut spec = match map.remove("spec") {
                Some(Value::Object(spec)) => spec,
                None => serde_json::Map::new(),
                Some(_) => {
                    return Err(ShapeError {
                        path: "/spec",
                        message: "`spec` must be a mapping".into(),
                    })
                }
            };
            let template: PodTemplateWire = field(&mut spec, "template", "/spec/template")
                .map_err(|e| ShapeError {
                    message: format!("`spec.{}", e.message.trim_start_matches('`')),
                    ..e
                })?;
            Resource::Workload {
                source_kind: kind.to_string(),
                meta,
                pod_labels: template.metadata.labels,
                pod_annotations: template.metadata.annotations,
                ports: container_ports(template.spec),
            }
        }
        "Service" => {
            let meta = field(&mut map, "metadata", "/metadata")?;
            let spec: ServiceSpecWire = field(&mut map, "spec", "/spec")?;
            let ports = spec
                .ports
                .into_iter()
                .map(|p| ServicePort {
                    name: p.name,
                    port: p.port,
                    target_port: match p.target_port {
                        None => TargetPort::Number(p.port),
                        Some(TargetPort::Name(n)) => match n.parse::<u16>() {
                            Ok(num) => TargetPort::Number(num),
                            Err(_) => TargetPort::Name(n),
                        },
                        Some(t) => t,
                    },
                })
                .collect();
            Resource::Service {
                meta,
                selector: spec.selector,
                ports,
            }
        }
        // Only the Gateway API kind: Istio's own `networking.istio.io`
        // Gateway configures ingress/egress gateways, never a waypoint.
        "Gateway" if api_version.starts_with("gateway.networking.k8s.io/") => {
            let meta = field(&mut map, "metadata", "/metadata")?;
            let spec: GatewaySpecWire = lenient(&mut map, "spec");
            Resource::Gateway {
                meta,
                class: spec.gateway_class_name,
            }
        }
        "WasmPlugin" => {
            let meta = field(&mut map, "metadata", "/metadata")?;
            let spec: WasmPluginSpecWire = lenient(&mut map, "spec");
            Resource::WasmPlugin {
                meta,
                selector: spec.selector.map(|s| s.match_labels),
                target_refs: spec.target_refs,
                selects_ports: spec.matches.iter().any(|m| !m.ports.is_empty()),
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(resource))
}

fn container_ports(spec: PodSpecWire) -> Vec<ContainerPort> {
    spec.containers
        .into_iter()
        .flat_map(|c| c.ports)
        .map(|p| ContainerPort {
            name: p.name,
            port: p.container_port,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::source::load;

    #[test]
    fn workloads_take_pod_template_labels_annotations_and_ports() {
        let text = "\
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
  labels:
    team: x
spec:
  template:
    metadata:
      labels:
        app: db
      annotations:
        sidecar.istio.io/inject: \"false\"
    spec:
      containers:
      - name: a
        ports:
        - containerPort: 5432
          name: pg
      - name: b
---
apiVersion: v1
kind: Pod
metadata:
  name: p
  namespace: n
  labels:
    app: p
spec:
  containers:
  - ports:
    - containerPort: 8080
";
        let loaded = load(text, "w.yaml");
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        match &loaded.resources[0].value {
            Resource::Workload {
                source_kind,
                pod_labels,
                pod_annotations,
                ports,
                meta,
            } => {
                assert_eq!(source_kind, "StatefulSet");
                assert_eq!(meta.labels["team"], "x");
                assert_eq!(pod_labels["app"], "db");
                assert!(!pod_labels.contains_key("team"));
                assert_eq!(pod_annotations["sidecar.istio.io/inject"], "false");
                assert_eq!(
                    ports,
                    &[ContainerPort {
                        name: Some("pg".into()),
                        port: 5432
                    }]
                );
            }
            other => panic!("{other:?}"),
        }
        match &loaded.resources[1].value {
            Resource::Workload {
                pod_labels, ports, ..
            } => {
                assert_eq!(pod_labels["app"], "p");
                assert_eq!(ports[0].port, 8080);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn service_target_ports_default_to_the_port_and_may_be_names() {
        let text = "kind: Service\nmetadata: {name: s}\nspec:\n  selector: {app: s}\n  ports:\n  - port: 80\n  - port: 8000\n    targetPort: 8080\n  - port: 9000\n    targetPort: metrics\n";
        let loaded = load(text, "s.yaml");
        match &loaded.resources[0].value {
            Resource::Service {
                ports, selector, ..
            } => {
                assert_eq!(selector["app"], "s");
                let targets: Vec<&TargetPort> = ports.iter().map(|p| &p.target_port).collect();
                assert_eq!(
                    targets,
                    [
                        &TargetPort::Number(80),
                        &TargetPort::Number(8080),
                        &TargetPort::Name("metrics".into())
                    ]
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
