//! What the pod-faithful lab builds, as plain data: one [`Pod`] per workload with its
//! own IP, one [`ClusterService`] per Service with its ClusterIP and the pods behind it.
//!
//! The network side (`node`: namespaces, links, iptables) and the control-plane side
//! (`istiod`: each sidecar's Envoy configuration) both read this one description, so
//! the addresses a sidecar is configured with are the addresses the lab created.
//!
//! Addresses come from the ranges a kind cluster uses (pods `10.244.0.0/16`, Services
//! `10.96.0.0/16`); they exist only inside the lab's own network namespaces.

use policy::mesh::{Mesh, Service, Workload};
use policy::model::TargetPort;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// The label Istio's injector puts on every injected pod; istiod copies it into the
/// endpoint's `envoy.transport_socket_match` metadata, which drives auto mTLS
/// (`pilot/pkg/networking/util/util.go`, see shared/notes/istio-sidecar-dataplane.md §3).
/// policy already puts it in an injected workload's labels.
pub use policy::inject::TLS_MODE as TLS_MODE_LABEL;

/// How istiod reads a port's protocol from its name or `appProtocol`
/// (`pkg/config/protocol/instance.go`: the name's prefix before the first `-`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Http,
    Tcp,
    /// Unnamed or unknown: istiod sniffs (protocol detection).
    Auto,
}

impl Protocol {
    /// `appProtocol` wins over the name, as in istiod's `kube.ConvertProtocol`.
    pub fn of_port(name: Option<&str>, app_protocol: Option<&str>) -> Protocol {
        let by = |s: &str| {
            let prefix = s.split('-').next().unwrap_or("").to_ascii_lowercase();
            match prefix.as_str() {
                "http" | "http2" | "grpc" | "grpc-web" | "h2c" => Some(Protocol::Http),
                "tcp" | "tls" | "https" | "mongo" | "mysql" | "redis" => Some(Protocol::Tcp),
                _ => None,
            }
        };
        app_protocol
            .and_then(by)
            .or_else(|| name.and_then(by))
            .unwrap_or(Protocol::Auto)
    }
}

/// One workload as a pod of the lab.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Pod {
    pub namespace: String,
    /// The workload (Deployment) name, e.g. `httpbin`.
    pub name: String,
    pub ip: Ipv4Addr,
    /// The workload's labels as policy builds them: the pod template's, plus
    /// the injector's (`security.istio.io/tlsMode` …) when injected.
    pub labels: BTreeMap<String, String>,
    pub service_account: String,
    pub sidecar: bool,
    /// Declared container ports.
    pub container_ports: Vec<u16>,
}

impl Pod {
    /// `spiffe://<trust domain>/ns/<ns>/sa/<sa>`, the identity istiod's CA gives it.
    pub fn spiffe_id(&self, trust_domain: &str) -> String {
        format!(
            "spiffe://{trust_domain}/ns/{}/sa/{}",
            self.namespace, self.service_account
        )
    }

    /// `name.namespace`, the lab's short name for the pod (`sleep.foo`).
    pub fn key(&self) -> String {
        format!("{}.{}", self.name, self.namespace)
    }
}

/// One Service port, with its target resolved per endpoint by [`ClusterService::endpoints`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ClusterServicePort {
    pub name: Option<String>,
    pub port: u16,
    pub target_port: TargetPort,
    pub protocol: Protocol,
}

/// One Service with the ClusterIP the lab gave it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ClusterService {
    pub namespace: String,
    pub name: String,
    pub cluster_ip: Ipv4Addr,
    pub selector: BTreeMap<String, String>,
    pub ports: Vec<ClusterServicePort>,
}

/// One endpoint of one Service port: the pod and the container port traffic goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint<'t> {
    pub pod: &'t Pod,
    pub port: u16,
}

impl ClusterService {
    /// `<name>.<ns>.svc.<cluster domain>`.
    pub fn fqdn(&self, cluster_domain: &str) -> String {
        format!("{}.{}.svc.{cluster_domain}", self.name, self.namespace)
    }

    /// The pods behind `port`, as the Endpoints controller lists them: same namespace,
    /// selector labels a subset of the pod's, and a target port the pod resolves (a
    /// named target the pod does not declare leaves that pod out).
    pub fn endpoints<'t>(&self, topology: &'t Topology, port: u16) -> Vec<Endpoint<'t>> {
        let Some(sp) = self.ports.iter().find(|p| p.port == port) else {
            return Vec::new();
        };
        topology
            .pods
            .iter()
            .filter(|pod| {
                pod.namespace == self.namespace
                    && !self.selector.is_empty()
                    && self
                        .selector
                        .iter()
                        .all(|(k, v)| pod.labels.get(k) == Some(v))
            })
            .filter_map(|pod| {
                let port = match &sp.target_port {
                    TargetPort::Number(n) => Some(*n),
                    TargetPort::Name(name) => topology
                        .named_ports
                        .get(&(pod.key(), name.clone()))
                        .copied(),
                }?;
                Some(Endpoint { pod, port })
            })
            .collect()
    }
}

/// The whole lab: pods and Services, with the mesh's naming.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Topology {
    pub trust_domain: String,
    pub cluster_domain: String,
    pub pods: Vec<Pod>,
    pub services: Vec<ClusterService>,
    /// `(pod key, container port name)` → number, for named `targetPort`s.
    #[serde(skip)]
    pub named_ports: BTreeMap<(String, String), u16>,
}

/// Why a topology could not be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum TopologyError {
    #[error("the lab has room for {max} pods and {max} Services; these manifests have {pods} pods and {services} Services")]
    TooLarge {
        max: usize,
        pods: usize,
        services: usize,
    },
}

/// The most pods (and, separately, Services) one lab holds: addresses are
/// `10.244.0.2…` and `10.96.0.10…` within one /24 each, and every sidecar is an Envoy
/// process on a 2-core machine.
pub const MAX_PODS: usize = 200;

impl Topology {
    /// Number the workloads and Services of `mesh` in mesh order. `documents` are the
    /// raw manifests the mesh was built from, read for what `policy` does not keep
    /// (`serviceAccountName`, `appProtocol`).
    pub fn from_mesh(mesh: &Mesh, documents: &[Value]) -> Result<Topology, TopologyError> {
        let (pods_n, services_n) = (mesh.workloads.len(), mesh.services.len());
        if pods_n > MAX_PODS || services_n > MAX_PODS {
            return Err(TopologyError::TooLarge {
                max: MAX_PODS,
                pods: pods_n,
                services: services_n,
            });
        }
        let mut named_ports = BTreeMap::new();
        let pods: Vec<Pod> = mesh
            .workloads
            .iter()
            .zip(2u8..)
            .map(|(w, host)| {
                let pod = pod_of(w, Ipv4Addr::new(10, 244, 0, host), documents);
                for p in &w.ports {
                    if let Some(name) = &p.name {
                        named_ports.insert((pod.key(), name.clone()), p.port);
                    }
                }
                pod
            })
            .collect();
        let services = mesh
            .services
            .iter()
            .zip(10u8..)
            .map(|(s, host)| service_of(s, Ipv4Addr::new(10, 96, 0, host), documents))
            .collect();
        Ok(Topology {
            trust_domain: "cluster.local".into(),
            cluster_domain: mesh.config.cluster_domain.clone(),
            pods,
            services,
            named_ports,
        })
    }

    pub fn pod(&self, name: &str, namespace: &str) -> Option<&Pod> {
        self.pods
            .iter()
            .find(|p| p.name == name && p.namespace == namespace)
    }

    pub fn service(&self, name: &str, namespace: &str) -> Option<&ClusterService> {
        self.services
            .iter()
            .find(|s| s.name == name && s.namespace == namespace)
    }

    /// The hosts-file lines a pod in `namespace` sees, as cluster DNS answers with the
    /// pod's search path (`<ns>.svc.<domain> svc.<domain> <domain>`): every Service
    /// as `name.ns.svc.<domain>`, `name.ns.svc`, `name.ns`, and plain `name` from its
    /// own namespace.
    pub fn hosts_for(&self, namespace: &str) -> String {
        let mut out = String::from("127.0.0.1 localhost\n");
        for s in &self.services {
            let mut names = vec![
                s.fqdn(&self.cluster_domain),
                format!("{}.{}.svc", s.name, s.namespace),
                format!("{}.{}", s.name, s.namespace),
            ];
            if s.namespace == namespace {
                names.push(s.name.clone());
            }
            out.push_str(&format!("{} {}\n", s.cluster_ip, names.join(" ")));
        }
        out
    }
}

/// The raw document of kind `kinds` named `name` in `namespace`.
fn document<'d>(documents: &'d [Value], kinds: &[&str], name: &str, ns: &str) -> Option<&'d Value> {
    documents.iter().find(|d| {
        d["kind"].as_str().is_some_and(|k| kinds.contains(&k))
            && d["metadata"]["name"].as_str() == Some(name)
            && d["metadata"]["namespace"].as_str().unwrap_or("default") == ns
    })
}

fn pod_of(w: &Workload, ip: Ipv4Addr, documents: &[Value]) -> Pod {
    let doc = document(
        documents,
        &[
            "Deployment",
            "StatefulSet",
            "DaemonSet",
            "ReplicaSet",
            "Pod",
        ],
        &w.name,
        &w.namespace,
    );
    let spec = doc.map(|d| {
        if d["kind"] == "Pod" {
            &d["spec"]
        } else {
            &d["spec"]["template"]["spec"]
        }
    });
    // Kubernetes' own default when a pod names no service account.
    let service_account = spec
        .and_then(|s| s["serviceAccountName"].as_str())
        .unwrap_or("default")
        .to_string();
    Pod {
        namespace: w.namespace.clone(),
        name: w.name.clone(),
        ip,
        labels: w.labels.clone(),
        service_account,
        sidecar: w.sidecar,
        container_ports: w.ports.iter().map(|p| p.port).collect(),
    }
}

fn service_of(s: &Service, cluster_ip: Ipv4Addr, documents: &[Value]) -> ClusterService {
    let doc = document(documents, &["Service"], &s.name, &s.namespace);
    let ports = s
        .ports
        .iter()
        .map(|p| {
            let app_protocol = doc.and_then(|d| {
                d["spec"]["ports"].as_array()?.iter().find_map(|raw| {
                    (raw["port"].as_u64() == Some(u64::from(p.port)))
                        .then(|| raw["appProtocol"].as_str())
                        .flatten()
                })
            });
            ClusterServicePort {
                name: p.name.clone(),
                port: p.port,
                target_port: p.target_port.clone(),
                protocol: Protocol::of_port(p.name.as_deref(), app_protocol),
            }
        })
        .collect();
    ClusterService {
        namespace: s.namespace.clone(),
        name: s.name.clone(),
        cluster_ip,
        selector: s.selector.clone(),
        ports,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn port_names_map_to_protocols_as_istio_documents_them() {
        // istio.io "Protocol Selection": name `<protocol>[-<suffix>]`, appProtocol wins.
        assert_eq!(Protocol::of_port(Some("http"), None), Protocol::Http);
        assert_eq!(Protocol::of_port(Some("http-web"), None), Protocol::Http);
        assert_eq!(Protocol::of_port(Some("tcp-db"), None), Protocol::Tcp);
        assert_eq!(Protocol::of_port(Some("web"), None), Protocol::Auto);
        assert_eq!(Protocol::of_port(None, None), Protocol::Auto);
        assert_eq!(Protocol::of_port(Some("web"), Some("http")), Protocol::Http);
    }
}
