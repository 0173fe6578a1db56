//! The client side and the client × server matrix: does the caller send mTLS,
//! does the request succeed, is it encrypted (the seed lab's `sleep → httpbin`).

use crate::mesh::{DestinationRule, Mesh, Service, Workload};
use crate::mode::{MtlsMode, TlsMode};
use crate::resolve::{target_port, Resolver, WorkloadReport};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

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
        Rules::new(self).for_service(client_namespace, service, &self.service_fqdn(service))
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
    ///
    /// Indexes the mesh on every call: for many calls use [`Mesh::reach`] once.
    pub fn connect(&self, client: &Workload, service: &Service, service_port: u16) -> Option<Cell> {
        let server = self.endpoints(service).next()?;
        let resolver = Resolver::for_namespace(
            &self.peer_authentications,
            &self.config.root_namespace,
            &server.namespace,
        );
        let reach = Reach {
            mesh: self,
            resolver,
            rules: Rules::new(self),
        };
        reach.connect(client, service, service_port)
    }

    /// Every workload × every service port, in a stable order (namespace, name, port).
    pub fn matrix(&self) -> Matrix {
        self.reach().matrix()
    }

    /// This mesh with its policies and DestinationRules indexed once, for
    /// answering many `describe` / `connect` questions or building the matrix.
    pub fn reach(&self) -> Reach<'_> {
        Reach {
            mesh: self,
            resolver: self.resolver(),
            rules: Rules::new(self),
        }
    }
}

/// A [`Mesh`] with the lookups the matrix repeats built once: PeerAuthentications
/// grouped by namespace in istiod's order ([`Resolver`]) and DestinationRules
/// grouped by namespace with their hosts resolved. Borrowing the mesh keeps the
/// index from going stale.
#[derive(Debug, Clone)]
pub struct Reach<'m> {
    mesh: &'m Mesh,
    resolver: Resolver<'m>,
    rules: Rules<'m>,
}

/// DestinationRules by namespace, each with its host as istiod reads it, in mesh order.
#[derive(Debug, Clone)]
struct Rules<'m> {
    root: &'m str,
    by_namespace: HashMap<&'m str, Vec<(String, &'m DestinationRule)>>,
}

impl<'m> Rules<'m> {
    fn new(mesh: &'m Mesh) -> Self {
        let mut by_namespace: HashMap<&str, Vec<(String, &DestinationRule)>> = HashMap::new();
        for dr in &mesh.destination_rules {
            by_namespace
                .entry(dr.namespace.as_str())
                .or_default()
                .push((mesh.resolve_host(dr), dr));
        }
        Self {
            root: &mesh.config.root_namespace,
            by_namespace,
        }
    }

    /// [`Mesh::destination_rule_for`], with `fqdn` the service's name.
    fn for_service(
        &self,
        client_namespace: &str,
        service: &Service,
        fqdn: &str,
    ) -> Option<&'m DestinationRule> {
        self.best(client_namespace, fqdn, |dr| !exports_nowhere(dr))
            .or_else(|| {
                self.best(&service.namespace, fqdn, |dr| {
                    exported_to(dr, client_namespace)
                })
            })
            .or_else(|| self.best(self.root, fqdn, |dr| exported_to(dr, client_namespace)))
    }

    /// The most specific eligible rule of `namespace` for `fqdn` (then the first by name).
    fn best(
        &self,
        namespace: &str,
        fqdn: &str,
        eligible: impl Fn(&DestinationRule) -> bool,
    ) -> Option<&'m DestinationRule> {
        self.by_namespace
            .get(namespace)?
            .iter()
            .filter(|(_, dr)| eligible(dr))
            .filter_map(|(host, dr)| host_match_rank(host, fqdn).map(|rank| (rank, *dr)))
            .min_by(|(ra, a), (rb, b)| ra.cmp(rb).then_with(|| a.name.cmp(&b.name)))
            .map(|(_, dr)| dr)
    }
}

/// Why the client sends what it sends, borrowing the rule (see [`ClientReason`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason<'m> {
    NoSidecar,
    Rule(&'m DestinationRule, TlsMode),
    AutoMtls,
    AutoMtlsOff,
}

/// One client → service port as [`Reach::calls`] yields it: a [`Cell`] that
/// borrows the mesh instead of copying names, plus the deciding endpoint.
#[derive(Debug, Clone, Copy)]
pub struct Call<'m> {
    pub client: &'m Workload,
    pub service: &'m Service,
    pub service_port: u16,
    /// The endpoint that decides (the first workload the service selects).
    pub server: &'m Workload,
    pub target_port: u32,
    pub server_mode: MtlsMode,
    pub client_tls: ClientTls,
    pub(crate) reason: Reason<'m>,
    pub outcome: Outcome,
    pub mtls: bool,
}

/// A service with its deciding endpoint and, per Service port (sorted, once
/// each), the target port and the server's mode there.
struct Target<'m> {
    service: &'m Service,
    fqdn: String,
    server: &'m Workload,
    ports: Vec<(u16, u32, MtlsMode)>,
}

impl<'m> Reach<'m> {
    /// The mesh this index was built from.
    pub fn mesh(&self) -> &'m Mesh {
        self.mesh
    }

    /// The mesh's PeerAuthentications, indexed.
    pub fn resolver(&self) -> &Resolver<'m> {
        &self.resolver
    }

    /// [`Mesh::describe`] without indexing the policies again.
    pub fn describe(&self, workload: &Workload) -> WorkloadReport {
        self.resolver.describe(self.mesh, workload)
    }

    /// [`Mesh::destination_rule_for`] without indexing the rules again.
    pub fn destination_rule_for(
        &self,
        client_namespace: &str,
        service: &Service,
    ) -> Option<&'m DestinationRule> {
        self.rules
            .for_service(client_namespace, service, &self.mesh.service_fqdn(service))
    }

    /// The inbound mode of `server` on container port `target`: its effective
    /// mode, or DISABLE (plaintext only) without a sidecar.
    fn server_mode(&self, server: &Workload, target: u32) -> MtlsMode {
        if server.sidecar {
            self.resolver
                .mode(&server.namespace, &server.labels, Some(target))
        } else {
            MtlsMode::Disable
        }
    }

    /// [`Mesh::connect`] without indexing the mesh again.
    pub fn connect(&self, client: &Workload, service: &Service, service_port: u16) -> Option<Cell> {
        let sp = service.ports.iter().find(|p| p.port == service_port)?;
        let server = self.mesh.endpoints(service).next()?;
        let target_port = target_port(server, &sp.target_port)?;
        let server_mode = self.server_mode(server, target_port);
        let rule = if client.sidecar {
            self.destination_rule_for(&client.namespace, service)
        } else {
            None
        };
        Some(
            self.call(
                client,
                rule,
                service,
                service_port,
                server,
                target_port,
                server_mode,
            )
            .cell(),
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn call<'c>(
        &self,
        client: &'c Workload,
        rule: Option<&'c DestinationRule>,
        service: &'c Service,
        service_port: u16,
        server: &'c Workload,
        target_port: u32,
        server_mode: MtlsMode,
    ) -> Call<'c> {
        let (client_tls, reason) =
            self.client_tls(client, rule, service_port, server.sidecar, server_mode);
        let (outcome, mtls) = outcome(client_tls, server.sidecar, server_mode);
        Call {
            client,
            service,
            service_port,
            server,
            target_port,
            server_mode,
            client_tls,
            reason,
            outcome,
            mtls,
        }
    }

    /// `rule` is the DestinationRule istiod picks for the client (only looked up for sidecars).
    fn client_tls<'c>(
        &self,
        client: &Workload,
        rule: Option<&'c DestinationRule>,
        service_port: u16,
        server_sidecar: bool,
        server_mode: MtlsMode,
    ) -> (ClientTls, Reason<'c>) {
        if !client.sidecar {
            return (ClientTls::Plaintext, Reason::NoSidecar);
        }
        if let Some(dr) = rule {
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
                return (tls, Reason::Rule(dr, mode));
            }
        }
        if !self.mesh.config.auto_mtls {
            return (ClientTls::Plaintext, Reason::AutoMtlsOff);
        }
        if server_sidecar && server_mode != MtlsMode::Disable {
            (ClientTls::IstioMutual, Reason::AutoMtls)
        } else {
            (ClientTls::Plaintext, Reason::AutoMtls)
        }
    }

    /// Every workload × every service port, in a stable order (namespace, name, port).
    pub fn matrix(&self) -> Matrix {
        let mut cells = Vec::new();
        self.calls(|call| cells.push(call.cell()));
        Matrix { cells }
    }

    /// The matrix's calls, in its order, without writing cells: each service's
    /// endpoint and port modes are resolved once, and each client namespace's
    /// DestinationRule once per service. `each` gets every call; [`Call::cell`]
    /// turns one into the matrix's [`Cell`].
    pub fn calls(&self, mut each: impl FnMut(Call<'m>)) {
        self.calls_dyn(&mut each);
    }

    // Not generic, so the sorting and target set-up below are compiled once
    // rather than once per caller's closure type.
    fn calls_dyn(&self, each: &mut dyn FnMut(Call<'m>)) {
        let mut clients: Vec<&Workload> = self.mesh.workloads.iter().collect();
        crate::order::sort_by(&mut clients, |a, b| {
            (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name))
        });
        let mut services: Vec<&Service> = self.mesh.services.iter().collect();
        crate::order::sort_by(&mut services, |a, b| {
            (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name))
        });
        let targets: Vec<Target<'m>> = services
            .into_iter()
            .filter_map(|service| {
                let server = self.mesh.endpoints(service).next()?;
                let mut numbers: Vec<u16> = service.ports.iter().map(|p| p.port).collect();
                crate::order::sort(&mut numbers);
                numbers.dedup();
                let ports = numbers
                    .into_iter()
                    .filter_map(|port| {
                        let sp = service.ports.iter().find(|p| p.port == port)?;
                        let target = target_port(server, &sp.target_port)?;
                        Some((port, target, self.server_mode(server, target)))
                    })
                    .collect();
                Some(Target {
                    service,
                    fqdn: self.mesh.service_fqdn(service),
                    server,
                    ports,
                })
            })
            .collect();
        // The rule a client gets depends only on its namespace, and clients
        // come sorted by namespace.
        let mut rules: Vec<Option<Option<&DestinationRule>>> = vec![None; targets.len()];
        let mut rules_for: Option<&str> = None;
        for client in clients {
            if rules_for != Some(client.namespace.as_str()) {
                rules_for = Some(client.namespace.as_str());
                rules.iter_mut().for_each(|r| *r = None);
            }
            for (t, cached) in targets.iter().zip(rules.iter_mut()) {
                let rule = if client.sidecar {
                    *cached.get_or_insert_with(|| {
                        self.rules
                            .for_service(&client.namespace, t.service, &t.fqdn)
                    })
                } else {
                    None
                };
                for &(port, target, server_mode) in &t.ports {
                    each(self.call(client, rule, t.service, port, t.server, target, server_mode));
                }
            }
        }
    }
}

impl Call<'_> {
    /// The reason as the public, owned [`ClientReason`].
    pub fn client_reason(&self) -> ClientReason {
        match self.reason {
            Reason::NoSidecar => ClientReason::NoSidecar,
            Reason::Rule(dr, mode) => ClientReason::DestinationRule {
                name: dr.name.clone(),
                namespace: dr.namespace.clone(),
                mode,
            },
            Reason::AutoMtls => ClientReason::AutoMtls,
            Reason::AutoMtlsOff => ClientReason::AutoMtlsOff,
        }
    }

    /// The cell, with its explanation.
    pub fn cell(&self) -> Cell {
        Cell {
            client_namespace: self.client.namespace.clone(),
            client: self.client.name.clone(),
            service_namespace: self.service.namespace.clone(),
            service: self.service.name.clone(),
            service_port: self.service_port,
            target_port: self.target_port,
            client_tls: self.client_tls,
            client_reason: self.client_reason(),
            server_mode: self.server_mode,
            outcome: self.outcome,
            mtls: self.mtls,
            explanation: self.explain(),
        }
    }

    /// One sentence: what the client sends and why, what the server is, and
    /// the result ([`Cell::explanation`]).
    pub fn explain(&self) -> String {
        use std::fmt::Write as _;
        let sends = match self.client_tls {
            ClientTls::Plaintext => "plaintext",
            ClientTls::IstioMutual => "Istio mTLS",
            ClientTls::OtherTls => "non-Istio TLS",
        };
        let (client, service, server) = (self.client, self.service, self.server);
        let mut s = String::with_capacity(160);
        let _ = write!(
            s,
            "{}.{} sends {sends} to {}.{}:{} because ",
            client.name, client.namespace, service.name, service.namespace, self.service_port
        );
        let _ = match self.reason {
            Reason::NoSidecar => s.write_str("it has no sidecar"),
            Reason::Rule(dr, mode) => {
                write!(
                    s,
                    "DestinationRule {}/{} sets {mode}",
                    dr.namespace, dr.name
                )
            }
            Reason::AutoMtls => s.write_str("of auto mTLS"),
            Reason::AutoMtlsOff => s.write_str("auto mTLS is off and no DestinationRule sets TLS"),
        };
        let _ = if server.sidecar {
            write!(
                s,
                "; {}.{} is {}",
                server.name, server.namespace, self.server_mode
            )
        } else {
            write!(s, "; {}.{} has no sidecar", server.name, server.namespace)
        };
        s.push_str(match self.outcome {
            Outcome::Allowed => ", so the request succeeds",
            Outcome::Reset => ", so the connection is reset",
            Outcome::Failed => ", so TLS bytes reach a plaintext listener and the request fails",
        });
        s
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
    fn the_matrix_holds_exactly_what_connect_answers_for_each_pair() {
        let extra = dr("wild", "foo", "*.local", "ISTIO_MUTUAL", "")
            + "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: ports, namespace: bar}\nspec:\n  host: httpbin\n  trafficPolicy:\n    tls: {mode: SIMPLE}\n    portLevelSettings:\n    - port: {number: 9000}\n      tls: {mode: DISABLE}\n"
            + "---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: bar}\nspec: {mtls: {mode: STRICT}}\n";
        for auto_mtls in [true, false] {
            let report = check(
                &[("lab.yaml", LAB), ("extra.yaml", &extra)],
                MeshConfig {
                    auto_mtls,
                    ..MeshConfig::default()
                },
            );
            assert!(
                report
                    .diagnostics
                    .iter()
                    .all(|d| !d.code.starts_with("input-")),
                "{:#?}",
                report.diagnostics
            );
            let mesh = report.mesh;
            let reach = mesh.reach();
            let mut expected = Vec::new();
            let mut clients: Vec<&Workload> = mesh.workloads.iter().collect();
            clients.sort_by_key(|w| (&w.namespace, &w.name));
            let mut services: Vec<&Service> = mesh.services.iter().collect();
            services.sort_by_key(|s| (&s.namespace, &s.name));
            for client in &clients {
                for service in &services {
                    let mut ports: Vec<u16> = service.ports.iter().map(|p| p.port).collect();
                    ports.sort_unstable();
                    for port in ports {
                        let cell = mesh.connect(client, service, port);
                        assert_eq!(reach.connect(client, service, port), cell);
                        expected.extend(cell);
                    }
                }
            }
            let matrix = reach.matrix();
            assert_eq!(matrix.cells, expected);
            assert_eq!(mesh.matrix(), matrix);
            // Both rule kinds and the reset by STRICT show up, so the index was exercised.
            assert!(matrix
                .cells
                .iter()
                .any(|c| reason_rule(c) == Some(("foo", "wild"))));
            assert!(matrix
                .cells
                .iter()
                .any(|c| reason_rule(c) == Some(("bar", "ports"))));
            // Port 9000's own setting replaces the rule's top-level SIMPLE.
            assert!(matrix.cells.iter().any(|c| c.service_port == 9000
                && c.client_namespace == "bar"
                && c.client_tls == ClientTls::Plaintext
                && c.outcome == Outcome::Reset));
            assert!(matrix.cells.iter().any(|c| c.outcome == Outcome::Reset));
            for w in &mesh.workloads {
                assert_eq!(reach.describe(w), mesh.describe(w));
            }
        }
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
