//! The client side and the client × server matrix: does the caller send mTLS,
//! does the request succeed, is it encrypted (the seed lab's `sleep → httpbin`).

use crate::mesh::{DestinationRule, Mesh, Service, Workload};
use crate::mode::{MtlsMode, TlsMode};
use crate::resolve::{resolve_port, target_port};
use serde::{Deserialize, Serialize};

/// What the client's sidecar (or the bare client) puts on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientTls {
    /// No sidecar, DR DISABLE, or auto mTLS chose plaintext.
    Plaintext,
    /// Istio mTLS (ISTIO_MUTUAL or auto mTLS).
    IstioMutual,
    /// DR SIMPLE/MUTUAL: TLS that is not Istio's (no Istio ALPN).
    OtherTls,
}

/// Why the client sends what it sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientReason {
    NoSidecar,
    DestinationRule {
        name: String,
        namespace: String,
        mode: TlsMode,
    },
    AutoMtls,
    AutoMtlsOff,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// HTTP 200 in the seed lab.
    Allowed,
    /// Connection reset (curl exit 56, "000" status).
    Reset,
    /// TLS bytes reach a plaintext app: the request fails.
    Failed,
}

/// One client → service port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cell {
    pub client_namespace: String,
    pub client: String,
    pub service_namespace: String,
    pub service: String,
    pub service_port: u16,
    pub target_port: u32,
    pub client_tls: ClientTls,
    pub client_reason: ClientReason,
    pub server_mode: MtlsMode,
    pub outcome: Outcome,
    /// Encrypted with Istio mTLS end to end (XFCC present at the app).
    pub mtls: bool,
    /// One sentence.
    pub explanation: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Matrix {
    pub cells: Vec<Cell>,
}

impl Mesh {
    /// The fully qualified name of a service: `<name>.<namespace>.svc.<cluster domain>`.
    pub fn service_fqdn(&self, service: &Service) -> String {
        format!(
            "{}.{}.svc.{}",
            service.name, service.namespace, self.config.cluster_domain
        )
    }

    /// The DestinationRule a sidecar in `client_namespace` applies to `service`,
    /// as istiod picks it (`PushContext.destinationRule`): first rules in the
    /// client's own namespace, then rules in the service's namespace exported
    /// to the client, then rules in the root namespace exported to the client.
    /// Within one namespace the most specific host wins (exact, then the
    /// longest wildcard); several rules for the same host are merged by istiod
    /// with the oldest winning — we take the first by name.
    pub fn destination_rule_for(
        &self,
        client_namespace: &str,
        service: &Service,
    ) -> Option<&DestinationRule> {
        let fqdn = self.service_fqdn(service);
        let root = self.config.root_namespace.as_str();
        let local = self.best_rule(&fqdn, |dr| {
            dr.namespace == client_namespace && !exports_nowhere(dr)
        });
        local
            .or_else(|| {
                self.best_rule(&fqdn, |dr| {
                    dr.namespace == service.namespace && exported_to(dr, client_namespace)
                })
            })
            .or_else(|| {
                self.best_rule(&fqdn, |dr| {
                    dr.namespace == root && exported_to(dr, client_namespace)
                })
            })
    }

    fn best_rule(
        &self,
        fqdn: &str,
        eligible: impl Fn(&DestinationRule) -> bool,
    ) -> Option<&DestinationRule> {
        self.destination_rules
            .iter()
            .filter(|dr| eligible(dr))
            .filter_map(|dr| host_match_rank(&self.resolve_host(dr), fqdn).map(|rank| (rank, dr)))
            .min_by(|(ra, a), (rb, b)| ra.cmp(rb).then_with(|| a.name.cmp(&b.name)))
            .map(|(_, dr)| dr)
    }

    /// A DR host as istiod reads it: a name without dots is short for
    /// `<name>.<DR namespace>.svc.<cluster domain>`; anything else is taken as written.
    pub fn resolve_host(&self, dr: &DestinationRule) -> String {
        if dr.host.contains('.') || dr.host.starts_with('*') {
            dr.host.clone()
        } else {
            format!(
                "{}.{}.svc.{}",
                dr.host, dr.namespace, self.config.cluster_domain
            )
        }
    }

    /// What happens when `client` calls `service:port`. `None` if the service has no such port
    /// or selects no workload (or its named targetPort names no container port).
    /// With several endpoints, the first workload (in mesh order) decides.
    pub fn connect(&self, client: &Workload, service: &Service, service_port: u16) -> Option<Cell> {
        let sp = service.ports.iter().find(|p| p.port == service_port)?;
        let server = self.endpoints(service).next()?;
        let target = target_port(server, &sp.target_port)?;
        let server_mode = if server.sidecar {
            resolve_port(
                &self.peer_authentications,
                &self.config.root_namespace,
                &server.namespace,
                &server.labels,
                target,
            )
            .mode
        } else {
            MtlsMode::Disable
        };
        let (client_tls, client_reason) =
            self.client_tls(client, service, service_port, server.sidecar, server_mode);
        let (outcome, mtls) = outcome(client_tls, server.sidecar, server_mode);
        let explanation = explain(
            client,
            service,
            service_port,
            server,
            &client_reason,
            client_tls,
            server_mode,
            outcome,
        );
        Some(Cell {
            client_namespace: client.namespace.clone(),
            client: client.name.clone(),
            service_namespace: service.namespace.clone(),
            service: service.name.clone(),
            service_port,
            target_port: target,
            client_tls,
            client_reason,
            server_mode,
            outcome,
            mtls,
            explanation,
        })
    }

    fn client_tls(
        &self,
        client: &Workload,
        service: &Service,
        service_port: u16,
        server_sidecar: bool,
        server_mode: MtlsMode,
    ) -> (ClientTls, ClientReason) {
        if !client.sidecar {
            return (ClientTls::Plaintext, ClientReason::NoSidecar);
        }
        if let Some(dr) = self.destination_rule_for(&client.namespace, service) {
            // Port-level settings replace the top-level TLS settings for that (Service) port.
            if let Some(mode) = dr
                .port_tls
                .get(&u32::from(service_port))
                .copied()
                .or(dr.tls)
            {
                let tls = match mode {
                    TlsMode::IstioMutual => ClientTls::IstioMutual,
                    TlsMode::Disable => ClientTls::Plaintext,
                    TlsMode::Simple | TlsMode::Mutual => ClientTls::OtherTls,
                };
                return (
                    tls,
                    ClientReason::DestinationRule {
                        name: dr.name.clone(),
                        namespace: dr.namespace.clone(),
                        mode,
                    },
                );
            }
        }
        if !self.config.auto_mtls {
            return (ClientTls::Plaintext, ClientReason::AutoMtlsOff);
        }
        if server_sidecar && server_mode != MtlsMode::Disable {
            (ClientTls::IstioMutual, ClientReason::AutoMtls)
        } else {
            (ClientTls::Plaintext, ClientReason::AutoMtls)
        }
    }

    /// Every workload × every service port, in a stable order (namespace, name, port).
    pub fn matrix(&self) -> Matrix {
        let mut clients: Vec<&Workload> = self.workloads.iter().collect();
        clients.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        let mut services: Vec<&Service> = self.services.iter().collect();
        services.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        let mut cells = Vec::new();
        for client in &clients {
            for service in &services {
                let mut ports: Vec<u16> = service.ports.iter().map(|p| p.port).collect();
                ports.sort_unstable();
                ports.dedup();
                for port in ports {
                    if let Some(cell) = self.connect(client, service, port) {
                        cells.push(cell);
                    }
                }
            }
        }
        Matrix { cells }
    }
}

fn exports_nowhere(dr: &DestinationRule) -> bool {
    !dr.export_to.is_empty() && dr.export_to.iter().all(|e| e == "~")
}

/// `exportTo`: empty or `*` = everywhere, `.` = own namespace, else listed namespaces.
fn exported_to(dr: &DestinationRule, namespace: &str) -> bool {
    dr.export_to.is_empty()
        || dr
            .export_to
            .iter()
            .any(|e| e == "*" || e == namespace || (e == "." && dr.namespace == namespace))
}

/// `Some(rank)` when `pattern` matches `host`; lower is more specific
/// (0 exact; wildcards rank by how little they leave to the `*`).
fn host_match_rank(pattern: &str, host: &str) -> Option<usize> {
    if pattern == host {
        return Some(0);
    }
    let suffix = pattern.strip_prefix('*')?;
    if host.ends_with(suffix) && host.len() > suffix.len() {
        Some(1 + host.len() - suffix.len())
    } else {
        None
    }
}

/// The outcome and whether it is Istio mTLS end to end.
pub fn outcome(client: ClientTls, server_sidecar: bool, server_mode: MtlsMode) -> (Outcome, bool) {
    if !server_sidecar {
        return match client {
            ClientTls::Plaintext => (Outcome::Allowed, false),
            ClientTls::IstioMutual | ClientTls::OtherTls => (Outcome::Failed, false),
        };
    }
    match (client, server_mode) {
        (ClientTls::IstioMutual, MtlsMode::Disable) => (Outcome::Failed, false),
        (ClientTls::IstioMutual, _) => (Outcome::Allowed, true),
        (ClientTls::Plaintext, MtlsMode::Strict) => (Outcome::Reset, false),
        (ClientTls::Plaintext, _) => (Outcome::Allowed, false),
        // Non-Istio TLS has no Istio ALPN: STRICT has no chain for it, and
        // PERMISSIVE/DISABLE pass the TLS bytes to a plaintext app.
        (ClientTls::OtherTls, MtlsMode::Strict) => (Outcome::Reset, false),
        (ClientTls::OtherTls, _) => (Outcome::Failed, false),
    }
}

#[allow(clippy::too_many_arguments)]
fn explain(
    client: &Workload,
    service: &Service,
    port: u16,
    server: &Workload,
    reason: &ClientReason,
    tls: ClientTls,
    server_mode: MtlsMode,
    outcome: Outcome,
) -> String {
    let sends = match tls {
        ClientTls::Plaintext => "plaintext",
        ClientTls::IstioMutual => "Istio mTLS",
        ClientTls::OtherTls => "non-Istio TLS",
    };
    let why = match reason {
        ClientReason::NoSidecar => "it has no sidecar".to_string(),
        ClientReason::DestinationRule {
            name,
            namespace,
            mode,
        } => {
            format!("DestinationRule {namespace}/{name} sets {mode}")
        }
        ClientReason::AutoMtls => "of auto mTLS".to_string(),
        ClientReason::AutoMtlsOff => "auto mTLS is off and no DestinationRule sets TLS".to_string(),
    };
    let server_text = if server.sidecar {
        format!("{}.{} is {server_mode}", server.name, server.namespace)
    } else {
        format!("{}.{} has no sidecar", server.name, server.namespace)
    };
    let result = match outcome {
        Outcome::Allowed => "the request succeeds",
        Outcome::Reset => "the connection is reset",
        Outcome::Failed => "TLS bytes reach a plaintext listener and the request fails",
    };
    format!(
        "{}.{} sends {sends} to {}.{}:{port} because {why}; {server_text}, so {result}",
        client.name, client.namespace, service.name, service.namespace
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::{check, MeshConfig};

    const LAB: &str = "
apiVersion: v1
kind: Namespace
metadata: {name: foo, labels: {istio-injection: enabled}}
---
apiVersion: v1
kind: Namespace
metadata: {name: bar, labels: {istio-injection: enabled}}
---
apiVersion: v1
kind: Namespace
metadata: {name: legacy}
---
kind: Deployment
metadata: {name: sleep, namespace: foo}
spec: {template: {metadata: {labels: {app: sleep}}}}
---
kind: Deployment
metadata: {name: sleep, namespace: legacy}
spec: {template: {metadata: {labels: {app: sleep}}}}
---
kind: Deployment
metadata: {name: httpbin, namespace: bar}
spec:
  template:
    metadata: {labels: {app: httpbin}}
    spec: {containers: [{name: c, ports: [{containerPort: 80, name: http-web}]}]}
---
kind: Service
metadata: {name: httpbin, namespace: bar}
spec:
  selector: {app: httpbin}
  ports: [{port: 8000, targetPort: http-web}, {port: 9000, targetPort: 80}]
---
kind: Deployment
metadata: {name: httpbin, namespace: legacy}
spec: {template: {metadata: {labels: {app: httpbin}}}}
---
kind: Service
metadata: {name: httpbin, namespace: legacy}
spec: {selector: {app: httpbin}, ports: [{port: 8000, targetPort: 80}]}
---
kind: Service
metadata: {name: nobody, namespace: bar}
spec: {selector: {app: nothing}, ports: [{port: 80}]}
";

    fn mesh_with(extra: &str, config: MeshConfig) -> Mesh {
        check(&[("lab.yaml", LAB), ("extra.yaml", extra)], config).mesh
    }

    fn call(mesh: &Mesh, client_ns: &str, server_ns: &str, port: u16) -> Cell {
        let client = mesh
            .workloads
            .iter()
            .find(|w| w.name == "sleep" && w.namespace == client_ns)
            .unwrap();
        let service = mesh
            .services
            .iter()
            .find(|s| s.name == "httpbin" && s.namespace == server_ns)
            .unwrap();
        mesh.connect(client, service, port).unwrap()
    }

    fn dr(name: &str, ns: &str, host: &str, mode: &str, extra: &str) -> String {
        format!(
            "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  host: \"{host}\"\n  trafficPolicy: {{tls: {{mode: {mode}}}}}\n{extra}"
        )
    }

    fn reason_rule(cell: &Cell) -> Option<(&str, &str)> {
        match &cell.client_reason {
            ClientReason::DestinationRule {
                name, namespace, ..
            } => Some((namespace.as_str(), name.as_str())),
            _ => None,
        }
    }

    #[test]
    fn auto_mtls_encrypts_between_sidecars_and_named_target_ports_resolve() {
        let mesh = mesh_with("", MeshConfig::default());
        let cell = call(&mesh, "foo", "bar", 8000);
        assert_eq!(
            (cell.client_tls, cell.outcome, cell.mtls),
            (ClientTls::IstioMutual, Outcome::Allowed, true)
        );
        assert_eq!(cell.client_reason, ClientReason::AutoMtls);
        assert_eq!(cell.target_port, 80);
        assert_eq!(cell.server_mode, MtlsMode::Permissive);
    }

    #[test]
    fn auto_mtls_sends_plaintext_to_a_workload_without_sidecar() {
        let mesh = mesh_with("", MeshConfig::default());
        let cell = call(&mesh, "foo", "legacy", 8000);
        assert_eq!(
            (cell.client_tls, cell.outcome, cell.mtls),
            (ClientTls::Plaintext, Outcome::Allowed, false)
        );
    }

    #[test]
    fn without_auto_mtls_a_sidecar_sends_plaintext_and_strict_resets_it() {
        let pa = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: bar}\nspec: {mtls: {mode: STRICT}}\n";
        let mesh = mesh_with(
            pa,
            MeshConfig {
                auto_mtls: false,
                ..MeshConfig::default()
            },
        );
        let cell = call(&mesh, "foo", "bar", 8000);
        assert_eq!(cell.client_reason, ClientReason::AutoMtlsOff);
        assert_eq!(cell.outcome, Outcome::Reset);
    }

    #[test]
    fn the_client_namespace_rule_beats_the_service_namespace_rule() {
        let extra = dr(
            "in-bar",
            "bar",
            "httpbin.bar.svc.cluster.local",
            "ISTIO_MUTUAL",
            "",
        ) + &dr(
            "in-foo",
            "foo",
            "httpbin.bar.svc.cluster.local",
            "DISABLE",
            "",
        );
        let mesh = mesh_with(&extra, MeshConfig::default());
        let cell = call(&mesh, "foo", "bar", 8000);
        assert_eq!(reason_rule(&cell), Some(("foo", "in-foo")));
        assert_eq!((cell.client_tls, cell.mtls), (ClientTls::Plaintext, false));
    }

    #[test]
    fn a_rule_exported_only_to_its_own_namespace_is_invisible_to_other_clients() {
        let extra = dr(
            "private",
            "bar",
            "httpbin",
            "DISABLE",
            "  exportTo: [\".\"]\n",
        );
        let mesh = mesh_with(&extra, MeshConfig::default());
        assert_eq!(
            call(&mesh, "foo", "bar", 8000).client_reason,
            ClientReason::AutoMtls
        );
        let extra = dr("shared", "bar", "httpbin", "DISABLE", "  exportTo: [foo]\n");
        let mesh = mesh_with(&extra, MeshConfig::default());
        assert_eq!(
            reason_rule(&call(&mesh, "foo", "bar", 8000)),
            Some(("bar", "shared"))
        );
    }

    #[test]
    fn a_root_namespace_rule_applies_last() {
        let extra = dr("mesh", "istio-system", "*.local", "DISABLE", "");
        let mesh = mesh_with(&extra, MeshConfig::default());
        assert_eq!(
            reason_rule(&call(&mesh, "foo", "bar", 8000)),
            Some(("istio-system", "mesh"))
        );
        let extra = extra + &dr("svc", "bar", "httpbin", "ISTIO_MUTUAL", "");
        let mesh = mesh_with(&extra, MeshConfig::default());
        assert_eq!(
            reason_rule(&call(&mesh, "foo", "bar", 8000)),
            Some(("bar", "svc"))
        );
    }

    #[test]
    fn the_most_specific_host_wins_within_a_namespace() {
        let extra = dr("wild", "bar", "*.bar.svc.cluster.local", "DISABLE", "")
            + &dr(
                "exact",
                "bar",
                "httpbin.bar.svc.cluster.local",
                "ISTIO_MUTUAL",
                "",
            )
            + &dr("wider", "bar", "*.svc.cluster.local", "DISABLE", "");
        let mesh = mesh_with(&extra, MeshConfig::default());
        assert_eq!(
            reason_rule(&call(&mesh, "foo", "bar", 8000)),
            Some(("bar", "exact"))
        );
        let extra = dr("wild", "bar", "*.bar.svc.cluster.local", "SIMPLE", "")
            + &dr("wider", "bar", "*.svc.cluster.local", "DISABLE", "");
        let mesh = mesh_with(&extra, MeshConfig::default());
        assert_eq!(
            reason_rule(&call(&mesh, "foo", "bar", 8000)),
            Some(("bar", "wild"))
        );
    }

    #[test]
    fn a_short_host_is_relative_to_the_rules_namespace() {
        // `httpbin` in foo means httpbin.foo.svc.cluster.local, not httpbin.bar.
        let extra = dr("short", "foo", "httpbin", "DISABLE", "");
        let mesh = mesh_with(&extra, MeshConfig::default());
        assert_eq!(
            call(&mesh, "foo", "bar", 8000).client_reason,
            ClientReason::AutoMtls
        );
        // A dotted name is taken as written, so `httpbin.bar` matches nothing.
        let extra = dr("dotted", "bar", "httpbin.bar", "DISABLE", "");
        let mesh = mesh_with(&extra, MeshConfig::default());
        assert_eq!(
            call(&mesh, "foo", "bar", 8000).client_reason,
            ClientReason::AutoMtls
        );
    }

    #[test]
    fn port_level_settings_are_keyed_by_the_service_port() {
        let ports =
            "    portLevelSettings:\n    - port: {number: 8000}\n      tls: {mode: DISABLE}\n";
        let text = format!(
            "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: d, namespace: bar}}\nspec:\n  host: httpbin\n  trafficPolicy:\n    tls: {{mode: ISTIO_MUTUAL}}\n{ports}"
        );
        let mesh = mesh_with(&text, MeshConfig::default());
        assert_eq!(
            call(&mesh, "foo", "bar", 8000).client_tls,
            ClientTls::Plaintext
        );
        // Port 9000 also targets container port 80 but keeps the top-level ISTIO_MUTUAL.
        assert_eq!(
            call(&mesh, "foo", "bar", 9000).client_tls,
            ClientTls::IstioMutual
        );
    }

    #[test]
    fn non_istio_tls_fails_against_permissive_and_is_reset_by_strict() {
        let extra = dr("simple", "bar", "httpbin", "SIMPLE", "");
        let mesh = mesh_with(&extra, MeshConfig::default());
        let cell = call(&mesh, "foo", "bar", 8000);
        assert_eq!(
            (cell.client_tls, cell.outcome),
            (ClientTls::OtherTls, Outcome::Failed)
        );
        let strict = "---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: bar}\nspec: {mtls: {mode: STRICT}}\n";
        let mesh = mesh_with(&(extra + strict), MeshConfig::default());
        assert_eq!(call(&mesh, "foo", "bar", 8000).outcome, Outcome::Reset);
    }

    #[test]
    fn istio_mtls_to_a_workload_without_sidecar_or_with_disable_fails() {
        let extra = dr("m", "foo", "*.local", "ISTIO_MUTUAL", "");
        let mesh = mesh_with(&extra, MeshConfig::default());
        let cell = call(&mesh, "foo", "legacy", 8000);
        assert_eq!((cell.outcome, cell.mtls), (Outcome::Failed, false));
        let disable = "---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: bar}\nspec: {mtls: {mode: DISABLE}}\n";
        let mesh = mesh_with(&(extra + disable), MeshConfig::default());
        let cell = call(&mesh, "foo", "bar", 8000);
        assert_eq!(
            (cell.server_mode, cell.outcome),
            (MtlsMode::Disable, Outcome::Failed)
        );
        assert!(cell.explanation.contains("fails"), "{}", cell.explanation);
    }

    #[test]
    fn connect_is_none_for_an_unknown_port_or_a_service_without_endpoints() {
        let mesh = mesh_with("", MeshConfig::default());
        let client = mesh
            .workloads
            .iter()
            .find(|w| w.name == "sleep" && w.namespace == "foo")
            .unwrap();
        let httpbin = mesh
            .services
            .iter()
            .find(|s| s.name == "httpbin" && s.namespace == "bar")
            .unwrap();
        assert!(mesh.connect(client, httpbin, 1234).is_none());
        let nobody = mesh.services.iter().find(|s| s.name == "nobody").unwrap();
        assert!(mesh.connect(client, nobody, 80).is_none());
    }

    #[test]
    fn the_matrix_is_sorted_by_client_then_service_then_port() {
        let mesh = mesh_with("", MeshConfig::default());
        let keys: Vec<_> = mesh
            .matrix()
            .cells
            .iter()
            .map(|c| {
                (
                    c.client_namespace.clone(),
                    c.client.clone(),
                    c.service_namespace.clone(),
                    c.service.clone(),
                    c.service_port,
                )
            })
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        // 4 workloads × (httpbin.bar:8000, :9000, httpbin.legacy:8000).
        assert_eq!(keys.len(), 12);
    }

    #[test]
    fn the_outcome_table_matches_istio_semantics() {
        use ClientTls::*;
        use MtlsMode::*;
        let table = [
            (IstioMutual, true, Strict, Outcome::Allowed, true),
            (IstioMutual, true, Permissive, Outcome::Allowed, true),
            (IstioMutual, true, Disable, Outcome::Failed, false),
            (Plaintext, true, Strict, Outcome::Reset, false),
            (Plaintext, true, Permissive, Outcome::Allowed, false),
            (Plaintext, true, Disable, Outcome::Allowed, false),
            (OtherTls, true, Strict, Outcome::Reset, false),
            (OtherTls, true, Permissive, Outcome::Failed, false),
            (Plaintext, false, Disable, Outcome::Allowed, false),
            (IstioMutual, false, Disable, Outcome::Failed, false),
        ];
        for (client, sidecar, mode, expected, mtls) in table {
            assert_eq!(
                outcome(client, sidecar, mode),
                (expected, mtls),
                "{client:?} → {mode:?} (sidecar {sidecar})"
            );
        }
    }
}
