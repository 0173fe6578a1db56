//! The client side and the client × server matrix: does the caller send mTLS,
//! does the request succeed, is it encrypted (the seed lab's `sleep → httpbin`).

use crate::ambient::DataPlane;
use crate::mesh::{DestinationRule, Mesh, Service, Workload};
use crate::mode::{MtlsMode, TlsMode};
use crate::ports::{serves_tls, target_port};
use crate::resolve::{Resolver, WorkloadReport};
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
    /// An ambient client: its node's ztunnel decides (HBONE to a destination
    /// that accepts it, plaintext passthrough otherwise).
    Ztunnel,
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

/// What carries the connection into the server's pod, whatever the client's
/// bytes inside it are ([`ClientTls`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// Istio mTLS into the server's sidecar: the sidecar terminates it and
    /// the app sees XFCC.
    IstioMtls,
    /// HBONE: mTLS (HTTP CONNECT to port 15008) into the server's ztunnel,
    /// or into a sidecar that listens for it. The peer identity is known
    /// there; the app sees no XFCC.
    Hbone,
    /// TLS that is not Istio's (DestinationRule SIMPLE/MUTUAL), straight to
    /// the pod.
    Tls,
    Plaintext,
}

impl Transport {
    /// `istio-mtls`, `hbone`, `tls`, `plaintext` (as in the JSON).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::IstioMtls => "istio-mtls",
            Self::Hbone => "hbone",
            Self::Tls => "tls",
            Self::Plaintext => "plaintext",
        }
    }
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
    /// The request succeeds over a mutually authenticated Istio connection:
    /// Istio mTLS into a sidecar (`transport` [`Transport::IstioMtls`], XFCC
    /// at the app) or HBONE into ztunnel ([`Transport::Hbone`], no XFCC).
    pub mtls: bool,
    /// What carries the connection into the server's pod.
    pub transport: Transport,
    /// An endpoint of the Service that answers this client differently from
    /// the one the cell describes (absent when every endpoint answers alike).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub other_endpoint: Option<EndpointCell>,
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
    /// or selects no workload (or its named targetPort names no container port of any).
    /// With endpoints that answer differently (a Service over a meshed and an
    /// unmeshed Deployment), the worst answer decides (a failure, else
    /// success without mTLS) and [`Cell::other_endpoint`] names an endpoint
    /// that answers otherwise.
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
            by_label: label_index(
                self.workloads
                    .iter()
                    .filter(|w| w.namespace == server.namespace),
            ),
            services: services_by_namespace(
                self.services
                    .iter()
                    .filter(|s| s.namespace == server.namespace),
            ),
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
            by_label: label_index(self.workloads.iter()),
            services: services_by_namespace(self.services.iter()),
        }
    }
}

type LabelIndex<'m> = HashMap<(&'m str, &'m str, &'m str), Vec<&'m Workload>>;

/// Services grouped by namespace, keeping their order.
fn services_by_namespace<'m>(
    services: impl Iterator<Item = &'m Service>,
) -> HashMap<&'m str, Vec<&'m Service>> {
    let mut by_namespace: HashMap<&'m str, Vec<&'m Service>> = HashMap::new();
    for s in services {
        by_namespace
            .entry(s.namespace.as_str())
            .or_default()
            .push(s);
    }
    by_namespace
}

/// [`Reach::by_label`] over `workloads`, keeping their order.
fn label_index<'m>(workloads: impl Iterator<Item = &'m Workload>) -> LabelIndex<'m> {
    let mut by_label: LabelIndex<'m> = HashMap::new();
    for w in workloads {
        for (k, v) in &w.labels {
            by_label
                .entry((w.namespace.as_str(), k.as_str(), v.as_str()))
                .or_default()
                .push(w);
        }
    }
    by_label
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
    /// Workloads by (namespace, label key, label value), in mesh order: a
    /// Service's endpoints are among those carrying its first selector label,
    /// so finding them does not walk every workload of the mesh.
    by_label: LabelIndex<'m>,
    /// Services by namespace, in mesh order.
    services: HashMap<&'m str, Vec<&'m Service>>,
}

/// DestinationRules by namespace, each with its host as istiod reads it, in mesh order.
#[derive(Debug, Clone)]
struct Rules<'m> {
    root: &'m str,
    by_namespace: HashMap<&'m str, Vec<(String, &'m DestinationRule)>>,
    /// Namespaces that hold a rule or are named in some rule's `exportTo`:
    /// every other client namespace gets the same rule for a given service.
    named: std::collections::HashSet<&'m str>,
    /// Exact hosts, and wildcard hosts without their `*`, to the namespaces
    /// holding rules for them.
    exact: HashMap<String, Vec<&'m str>>,
    wildcard: HashMap<String, Vec<&'m str>>,
}

/// A client namespace as DestinationRule lookup sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ClientNs<'a> {
    /// A namespace that holds rules or is named in an `exportTo`.
    Named(&'a str),
    /// Any other namespace: it has no rules of its own and only sees the
    /// rules exported to every namespace, so all of them behave alike.
    Other,
}

impl<'m> Rules<'m> {
    fn new(mesh: &'m Mesh) -> Self {
        let mut by_namespace: HashMap<&str, Vec<(String, &DestinationRule)>> = HashMap::new();
        let mut named = std::collections::HashSet::new();
        let mut exact: HashMap<String, Vec<&str>> = HashMap::new();
        let mut wildcard: HashMap<String, Vec<&str>> = HashMap::new();
        for dr in &mesh.destination_rules {
            let host = mesh.resolve_host(dr);
            let index = match host.strip_prefix('*') {
                Some(suffix) => wildcard.entry(suffix.to_string()).or_default(),
                None => exact.entry(host.clone()).or_default(),
            };
            if !index.contains(&dr.namespace.as_str()) {
                index.push(dr.namespace.as_str());
            }
            by_namespace
                .entry(dr.namespace.as_str())
                .or_default()
                .push((host, dr));
            named.insert(dr.namespace.as_str());
            named.extend(dr.export_to.iter().map(String::as_str));
        }
        Self {
            root: &mesh.config.root_namespace,
            by_namespace,
            named,
            exact,
            wildcard,
        }
    }

    /// The namespaces holding a rule whose host matches `fqdn` (as
    /// [`host_match_rank`] matches), each once.
    fn matching_namespaces(&self, fqdn: &str) -> Vec<&'m str> {
        let mut found: Vec<&'m str> = Vec::new();
        let suffixes = fqdn
            .char_indices()
            .skip(1)
            .map(|(i, _)| &fqdn[i..])
            .chain([""]);
        let hits = self
            .exact
            .get(fqdn)
            .into_iter()
            .chain(suffixes.filter_map(|suffix| self.wildcard.get(suffix)));
        for namespaces in hits {
            for ns in namespaces {
                if !found.contains(ns) {
                    found.push(ns);
                }
            }
        }
        found
    }

    /// How a client in `namespace` looks rules up.
    fn class<'a>(&self, namespace: &'a str) -> ClientNs<'a> {
        if self.named.contains(namespace) {
            ClientNs::Named(namespace)
        } else {
            ClientNs::Other
        }
    }

    /// [`Mesh::destination_rule_for`], with `fqdn` the service's name.
    fn for_service(
        &self,
        client_namespace: &str,
        service: &Service,
        fqdn: &str,
    ) -> Option<&'m DestinationRule> {
        self.for_class(self.class(client_namespace), service, fqdn)
    }

    /// [`Self::for_service`] for every client namespace of a class at once.
    fn for_class(
        &self,
        client: ClientNs<'_>,
        service: &Service,
        fqdn: &str,
    ) -> Option<&'m DestinationRule> {
        let own = match client {
            ClientNs::Named(ns) => self.best(ns, fqdn, |dr| !exports_nowhere(dr)),
            ClientNs::Other => None,
        };
        own.or_else(|| self.best(&service.namespace, fqdn, |dr| exported_to(dr, client)))
            .or_else(|| self.best(self.root, fqdn, |dr| exported_to(dr, client)))
    }

    /// The most specific eligible rule of `namespace` for `fqdn` (then the oldest,
    /// [`DestinationRule::age_key`]).
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
            .min_by(|(ra, a), (rb, b)| ra.cmp(rb).then_with(|| a.age_key().cmp(&b.age_key())))
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
    Ztunnel,
}

/// One client → service port as [`Reach::calls`] yields it: a [`Cell`] that
/// borrows the mesh instead of copying names, plus the deciding endpoint.
#[derive(Debug, Clone, Copy)]
pub struct Call<'m> {
    pub client: &'m Workload,
    pub service: &'m Service,
    pub service_port: u16,
    /// The endpoint that decides: of those the Service selects (mesh
    /// order), the first with the worst answer (a failure, else success
    /// without mTLS, else mTLS).
    pub server: &'m Workload,
    pub target_port: u32,
    pub server_mode: MtlsMode,
    pub client_tls: ClientTls,
    pub(crate) reason: Reason<'m>,
    pub outcome: Outcome,
    pub mtls: bool,
    pub transport: Transport,
    /// The app serves TLS itself on this port ([`crate::ports::serves_tls`]).
    pub app_tls: bool,
    /// An endpoint of the same Service that answers this client differently.
    pub other: Option<OtherEndpoint<'m>>,
}

/// An endpoint that answers a call differently from the one that decides
/// its cell: requests the Service balances to it get this answer instead.
#[derive(Debug, Clone, Copy)]
pub struct OtherEndpoint<'m> {
    pub server: &'m Workload,
    pub target_port: u32,
    pub server_mode: MtlsMode,
    pub client_tls: ClientTls,
    pub outcome: Outcome,
    pub mtls: bool,
    pub transport: Transport,
}

/// [`OtherEndpoint`], owned (in a [`Cell`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointCell {
    pub namespace: String,
    pub name: String,
    pub data_plane: DataPlane,
    pub target_port: u32,
    pub server_mode: MtlsMode,
    pub client_tls: ClientTls,
    pub outcome: Outcome,
    pub mtls: bool,
    pub transport: Transport,
}

impl OtherEndpoint<'_> {
    /// The owned form.
    pub fn cell(&self) -> EndpointCell {
        EndpointCell {
            namespace: self.server.namespace.clone(),
            name: self.server.name.clone(),
            data_plane: self.server.data_plane(),
            target_port: self.target_port,
            server_mode: self.server_mode,
            client_tls: self.client_tls,
            outcome: self.outcome,
            mtls: self.mtls,
            transport: self.transport,
        }
    }
}

/// One Service port on one endpoint: the container port it reaches, the
/// endpoint's mode there, and whether the app serves TLS on it itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PortAt {
    target: u32,
    mode: MtlsMode,
    app_tls: bool,
}

/// A service with its endpoints that may answer differently (the first of
/// each kind, in mesh order: endpoints of one data plane with the same port
/// answers are one kind) and, per Service port (sorted, once each), what
/// the port is on each of them.
struct Target<'m> {
    service: &'m Service,
    fqdn: String,
    /// Never empty.
    servers: Vec<&'m Workload>,
    /// The Service port and, per server, [`PortAt`] (`None`: a named
    /// targetPort that server does not declare). Ports no server has are left out.
    ports: Vec<(u16, Vec<Option<PortAt>>)>,
    /// Index of the service's namespace among the targets' namespaces.
    group: usize,
}

/// What a client sends to one endpoint's port and what happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Answer<'m> {
    client_tls: ClientTls,
    reason: Reason<'m>,
    outcome: Outcome,
    mtls: bool,
    transport: Transport,
}

impl Answer<'_> {
    /// What the client sees, leaving out why.
    fn seen(&self) -> (ClientTls, Outcome, bool, Transport) {
        (self.client_tls, self.outcome, self.mtls, self.transport)
    }
}

/// What one kind of client sends to one target port and what happens: every
/// client without a sidecar behaves alike, and so does every sidecar client of
/// one rule-lookup class ([`ClientNs`]), so the matrix is computed per kind of
/// client and only copied per client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Plan<'m> {
    target: usize,
    /// The Service port and what it is on the deciding server (kept here so
    /// that writing a cell reads no per-port list).
    service_port: u16,
    at: PortAt,
    /// Index into the target's servers of the one that decides.
    server: usize,
    answer: Answer<'m>,
    /// A server (index) that answers differently, with its port and answer.
    other: Option<(usize, PortAt, Answer<'m>)>,
}

impl Plan<'_> {
    fn outcome(&self) -> Outcome {
        self.answer.outcome
    }

    fn mtls(&self) -> bool {
        self.answer.mtls
    }
}

/// Which part of the matrix to visit. Filters apply before any cell is
/// computed: a client or Service they leave out costs nothing.
pub struct Select<'a> {
    /// Clients (rows) to include.
    pub client: &'a dyn Fn(&Workload) -> bool,
    /// Services (columns) to include.
    pub service: &'a dyn Fn(&Service) -> bool,
    /// Cells to yield, by outcome and whether they are Istio mTLS.
    pub cell: &'a dyn Fn(Outcome, bool) -> bool,
}

impl Select<'_> {
    /// The whole matrix.
    pub fn all() -> Select<'static> {
        Select {
            client: &|_| true,
            service: &|_| true,
            cell: &|_, _| true,
        }
    }
}

/// How many cells of a group succeed over mTLS, succeed in plaintext, are
/// reset, or fail.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub mtls: u64,
    pub plaintext: u64,
    pub reset: u64,
    pub failed: u64,
}

impl Counts {
    /// Count one cell.
    pub fn add(&mut self, outcome: Outcome, mtls: bool) {
        self.add_times(outcome, mtls, 1);
    }

    /// Count `n` cells of one kind.
    pub fn add_times(&mut self, outcome: Outcome, mtls: bool, n: u64) {
        let slot = match (outcome, mtls) {
            (Outcome::Allowed, true) => &mut self.mtls,
            (Outcome::Allowed, false) => &mut self.plaintext,
            (Outcome::Reset, _) => &mut self.reset,
            (Outcome::Failed, _) => &mut self.failed,
        };
        *slot += n;
    }

    fn remove(&mut self, outcome: Outcome, mtls: bool) {
        let slot = match (outcome, mtls) {
            (Outcome::Allowed, true) => &mut self.mtls,
            (Outcome::Allowed, false) => &mut self.plaintext,
            (Outcome::Reset, _) => &mut self.reset,
            (Outcome::Failed, _) => &mut self.failed,
        };
        *slot = slot.saturating_sub(1);
    }

    fn add_scaled(&mut self, other: &Counts, n: u64) {
        self.mtls += other.mtls * n;
        self.plaintext += other.plaintext * n;
        self.reset += other.reset * n;
        self.failed += other.failed * n;
    }

    /// Add another group's counts.
    pub fn add_counts(&mut self, other: &Counts) {
        self.add_scaled(other, 1);
    }

    /// Every cell counted.
    pub fn total(&self) -> u64 {
        self.mtls + self.plaintext + self.reset + self.failed
    }
}

/// The matrix cells from the clients of one namespace to the Service ports of
/// another, counted ([`Reach::summary`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PairCounts<'m> {
    pub client_namespace: &'m str,
    pub service_namespace: &'m str,
    pub counts: Counts,
}

/// A Service port that resets plaintext ([`Reach::plaintext_resets`]).
pub(crate) struct PlainReset<'m> {
    pub service: &'m Service,
    pub service_port: u16,
    pub server: &'m Workload,
    pub target_port: u32,
    /// [`Reason::NoSidecar`] or [`Reason::AutoMtlsOff`].
    pub reason: Reason<'m>,
}

/// How a selected client sends, which decides the plans it gets: the one
/// place [`Reach::calls_while`], [`Reach::summary`] and [`Reach::groups`]
/// sort clients into classes.
#[derive(Debug, Clone, Copy)]
enum Sends<'m, 'd> {
    /// No sidecar and not ambient: it sends what the app sends.
    Plain,
    /// Ambient: its ztunnel sends, reading no DestinationRule.
    Ambient,
    /// A sidecar with the rules a namespace without rules of its own sees.
    Other,
    /// A sidecar in this namespace, whose own rules (or an `exportTo` naming
    /// it) may change what it sends to these targets ([`Reach::differing`]).
    Own(&'m str, &'d [usize]),
}

/// The class of `client` ([`Sends`]); `differing` is [`Reach::differing`]'s.
fn sends<'m, 'd>(
    rules: &Rules<'m>,
    client: &'m Workload,
    differing: &'d HashMap<&'m str, Vec<usize>>,
) -> Sends<'m, 'd> {
    if client.ambient {
        Sends::Ambient
    } else if !client.sidecar {
        Sends::Plain
    } else {
        match rules.class(&client.namespace) {
            ClientNs::Named(ns) => match differing.get(ns) {
                Some(diff) => Sends::Own(ns, diff),
                None => Sends::Other,
            },
            ClientNs::Other => Sends::Other,
        }
    }
}

/// How the members of a [`ClientGroup`] send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupSends<'m> {
    /// No sidecar, not ambient.
    NoSidecar,
    /// Ambient (ztunnel).
    Ambient,
    /// A sidecar, with the DestinationRules a client in a namespace without
    /// rules of its own sees (namespaces whose own rules change nothing are here too).
    Sidecar,
    /// A sidecar in this namespace, whose own DestinationRules (or an
    /// `exportTo` naming it) change what it sends to some Service port.
    OwnRules(&'m str),
}

impl GroupSends<'_> {
    /// `no sidecar, so …`, `sidecar in ns-1, whose own DestinationRules …`:
    /// the group's heading, as every view words it.
    pub fn describe_into(&self, s: &mut String) {
        match self {
            GroupSends::NoSidecar => s.push_str("no sidecar, so they send what the app sends"),
            GroupSends::Ambient => {
                s.push_str("ambient, so their ztunnel sends (it reads no DestinationRule)")
            }
            GroupSends::Sidecar => s.push_str(
                "sidecar, with the DestinationRules a namespace without rules of its own sees",
            ),
            GroupSends::OwnRules(ns) => {
                s.push_str("sidecar in ");
                s.push_str(ns);
                s.push_str(", whose own DestinationRules change what they send to some ports");
            }
        }
    }
}

/// Clients that send alike ([`Reach::groups`]): every member gets the same
/// answer from every Service port, so the matrix is one row per group.
#[derive(Debug, Clone)]
pub struct ClientGroup<'m> {
    pub sends: GroupSends<'m>,
    /// In the matrix's order (namespace, name); never empty.
    pub clients: Vec<&'m Workload>,
}

/// One Service port's answer to one or more [`ClientGroup`]s
/// ([`Grouped::calls_while`]).
#[derive(Debug, Clone, Copy)]
pub struct GroupCall<'m, 'g> {
    /// The call from the first member of the first group: each member's
    /// call is this one with itself as `client`
    /// ([`Call::explain_group_into`] words it for all of them).
    pub call: Call<'m>,
    /// The groups answered so (indexes into [`Grouped::groups`]), in order.
    pub groups: &'g [usize],
    /// Their members, counted.
    pub clients: u64,
}

/// Where one group's kept plans come from.
enum GroupPlans<'m> {
    /// Its own, in the matrix's order.
    Own(Vec<Plan<'m>>),
    /// [`Grouped::other`].
    Other,
    /// [`Grouped::other`], except at the `diff` targets (sorted), where
    /// its own, `own` (in order), answer instead.
    Patched {
        diff: Vec<usize>,
        own: Vec<Plan<'m>>,
    },
}

/// The part of the matrix a [`Select`] picks, as client groups × Service
/// ports ([`Reach::groups`]).
pub struct Grouped<'m> {
    targets: Vec<Target<'m>>,
    groups: Vec<ClientGroup<'m>>,
    /// One per group.
    plans: Vec<GroupPlans<'m>>,
    /// The kept plans of a sidecar client of [`ClientNs::Other`].
    other: Vec<Plan<'m>>,
}

/// The plans of target `ti` among `plans` (sorted by target).
fn at_target<'p, 'm>(plans: &'p [Plan<'m>], ti: usize) -> &'p [Plan<'m>] {
    let from = plans.partition_point(|p| p.target < ti);
    let to = plans.partition_point(|p| p.target <= ti);
    plans.get(from..to).unwrap_or_default()
}

impl<'m> Grouped<'m> {
    /// The groups, in order: no sidecar, ambient, sidecar, then each
    /// namespace whose own rules change what its sidecars send. Groups
    /// without members are left out.
    pub fn groups(&self) -> &[ClientGroup<'m>] {
        &self.groups
    }

    /// The kept plans of group `g` at target `ti`.
    fn plans_at(&self, g: usize, ti: usize) -> &[Plan<'m>] {
        match self.plans.get(g) {
            Some(GroupPlans::Own(plans)) => at_target(plans, ti),
            Some(GroupPlans::Patched { diff, own }) if diff.binary_search(&ti).is_ok() => {
                at_target(own, ti)
            }
            Some(GroupPlans::Other | GroupPlans::Patched { .. }) => at_target(&self.other, ti),
            None => &[],
        }
    }

    /// Every kept answer, in the matrix's order (Service, port), then in
    /// group order; the groups a port answers alike share one
    /// [`GroupCall`]. Stops as soon as `each` returns `false`. Work is
    /// proportional to the groups × the Service ports.
    pub fn calls_while(&self, each: &mut dyn FnMut(&GroupCall<'m, '_>) -> bool) {
        let mut answers: Vec<(&Plan<'m>, Vec<usize>)> = Vec::new();
        for (ti, t) in self.targets.iter().enumerate() {
            answers.clear();
            for g in 0..self.groups.len() {
                for p in self.plans_at(g, ti) {
                    match answers.iter_mut().find(|(q, _)| *q == p) {
                        Some((_, groups)) => groups.push(g),
                        None => answers.push((p, vec![g])),
                    }
                }
            }
            // Stable: within a port, in the order of the first group answered.
            answers.sort_by_key(|(p, _)| p.service_port);
            for (p, groups) in &answers {
                let members = || groups.iter().filter_map(|&g| self.groups.get(g));
                let Some(first) = members().find_map(|g| g.clients.first().copied()) else {
                    continue;
                };
                let Some(call) = call_of(first, t, p) else {
                    continue;
                };
                let clients = members().map(|g| g.clients.len() as u64).sum();
                if !each(&GroupCall {
                    call,
                    groups,
                    clients,
                }) {
                    return;
                }
            }
        }
    }
}

/// The selected clients and targets of a matrix, in its order.
struct Prepared<'m> {
    clients: Vec<&'m Workload>,
    targets: Vec<Target<'m>>,
    /// The targets' namespaces, in order (`Target::group` indexes this).
    groups: Vec<&'m str>,
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
        // Only the workload's own namespace's Services can select it.
        let services = self
            .services
            .get(workload.namespace.as_str())
            .into_iter()
            .flatten()
            .copied();
        let served = crate::ports::served_ports(workload, services);
        self.resolver.describe_serving(workload, served)
    }

    /// [`Mesh::endpoints`] from the label index: the workloads `service`
    /// selects, in mesh order.
    pub fn endpoints<'a>(
        &'a self,
        service: &'a Service,
    ) -> impl Iterator<Item = &'m Workload> + 'a {
        service
            .selector
            .iter()
            .next()
            .and_then(|(k, v)| {
                self.by_label
                    .get(&(service.namespace.as_str(), k.as_str(), v.as_str()))
            })
            .into_iter()
            .flatten()
            .copied()
            .filter(move |w| service.selects(w))
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
        if server.ambient {
            // ztunnel knows only "reject without identity" or not (DISABLE = PERMISSIVE).
            return self
                .resolver
                .ztunnel_policy(&server.namespace, &server.labels)
                .mode(Some(target));
        }
        if server.sidecar {
            self.resolver
                .mode(&server.namespace, &server.labels, Some(target))
        } else {
            MtlsMode::Disable
        }
    }

    /// [`Mesh::connect`] without indexing the mesh again.
    pub fn connect(&self, client: &Workload, service: &Service, service_port: u16) -> Option<Cell> {
        let t = self.target(service, 0)?;
        let pi = t.ports.iter().position(|(p, _)| *p == service_port)?;
        let class = client
            .sidecar
            .then(|| self.rules.class(client.namespace.as_str()));
        let rule = class.and_then(|c| self.rules.for_class(c, t.service, &t.fqdn));
        let plan = self.plan(0, &t, pi, client.data_plane(), rule)?;
        Some(call_of(client, &t, &plan)?.cell())
    }

    /// `rule` is the DestinationRule istiod picks for the client (only looked up for sidecars).
    fn client_tls<'c>(
        &self,
        client: DataPlane,
        rule: Option<&'c DestinationRule>,
        service_port: u16,
        server: &Workload,
        server_mode: MtlsMode,
    ) -> (ClientTls, Reason<'c>) {
        match client {
            DataPlane::None => return (ClientTls::Plaintext, Reason::NoSidecar),
            DataPlane::Ambient => {
                // istiod gives ztunnel HBONE for captured pods and for
                // sidecars labelled `networking.istio.io/tunnel: http`
                // (injected only with ISTIO_META_ENABLE_HBONE); any other
                // destination gets plaintext passthrough (istio/istio
                // pilot/pkg/serviceregistry/ambient/workloads.go setTunnelProtocol).
                let tls = if takes_hbone(server) {
                    ClientTls::IstioMutual
                } else {
                    ClientTls::Plaintext
                };
                return (tls, Reason::Ztunnel);
            }
            DataPlane::Sidecar => {}
        }
        // Port-level settings replace the top-level TLS settings for that (Service) port.
        let set = rule.and_then(|dr| {
            dr.port_tls
                .get(&u32::from(service_port))
                .copied()
                .or(dr.tls)
                .map(|mode| (dr, mode))
        });
        if server.ambient {
            // With ambient on, istiod (PILOT_ENABLE_SENDING_HBONE) puts an
            // `hbone` transport socket match first on a sidecar's clusters,
            // for endpoints carrying the tunnel label, as every captured pod
            // does: no TLS (no rule, auto mTLS off, or DISABLE) and
            // ISTIO_MUTUAL both become HBONE, and SIMPLE/MUTUAL become the
            // user's TLS inside HBONE (istio/istio @86c9f01f
            // pilot/pkg/networking/core/cluster_tls.go
            // applyHBONETransportSocketMatches, TestApplyUpstreamTLSSettingsHBONE).
            return match set {
                Some((dr, mode @ (TlsMode::Simple | TlsMode::Mutual))) => {
                    (ClientTls::OtherTls, Reason::Rule(dr, mode))
                }
                Some((dr, mode)) => (ClientTls::IstioMutual, Reason::Rule(dr, mode)),
                None if !self.mesh.config.auto_mtls => {
                    (ClientTls::IstioMutual, Reason::AutoMtlsOff)
                }
                None => (ClientTls::IstioMutual, Reason::AutoMtls),
            };
        }
        if let Some((dr, mode)) = set {
            let tls = match mode {
                TlsMode::IstioMutual => ClientTls::IstioMutual,
                TlsMode::Disable => ClientTls::Plaintext,
                TlsMode::Simple | TlsMode::Mutual => ClientTls::OtherTls,
            };
            return (tls, Reason::Rule(dr, mode));
        }
        if !self.mesh.config.auto_mtls {
            return (ClientTls::Plaintext, Reason::AutoMtlsOff);
        }
        if server.sidecar && server_mode != MtlsMode::Disable {
            (ClientTls::IstioMutual, Reason::AutoMtls)
        } else {
            (ClientTls::Plaintext, Reason::AutoMtls)
        }
    }

    /// What a client of data plane `plane` (with `rule`, for a sidecar) sends
    /// to `server`'s port `at` behind Service port `service_port`, and what happens.
    fn answer<'c>(
        &self,
        plane: DataPlane,
        rule: Option<&'c DestinationRule>,
        service_port: u16,
        server: &Workload,
        at: PortAt,
    ) -> Answer<'c> {
        let (client_tls, reason) = self.client_tls(plane, rule, service_port, server, at.mode);
        let (outcome, mtls) = outcome_at(client_tls, server.data_plane(), at.mode, at.app_tls);
        Answer {
            client_tls,
            reason,
            outcome,
            mtls,
            transport: transport(plane, client_tls, server),
        }
    }

    /// The plan of target `t` (number `ti`) port `pi` for a client of data
    /// plane `plane` with `rule`: every kind of endpoint answered, the worst
    /// answer deciding (a failure, else success without mTLS, else mTLS; the
    /// first of equals), and one that answers differently kept beside it.
    fn plan<'c>(
        &self,
        ti: usize,
        t: &Target<'m>,
        pi: usize,
        plane: DataPlane,
        rule: Option<&'c DestinationRule>,
    ) -> Option<Plan<'c>> {
        let (port, at) = t.ports.get(pi)?;
        let mut answers = t
            .servers
            .iter()
            .zip(at)
            .enumerate()
            .filter_map(|(i, (server, at))| {
                let at = (*at)?;
                Some((i, at, self.answer(plane, rule, *port, server, at)))
            });
        let first = answers.next()?;
        let (mut decided, mut other) = (first, None);
        // Requests are balanced across the endpoints: the cell must not
        // promise what only some of them give.
        let rank = |a: &Answer<'_>| match (a.outcome, a.mtls) {
            (Outcome::Allowed, true) => 0,
            (Outcome::Allowed, false) => 1,
            (Outcome::Reset | Outcome::Failed, _) => 2,
        };
        for (i, here, a) in answers {
            if rank(&a) > rank(&decided.2) {
                other = Some(decided);
                decided = (i, here, a);
            } else if other.is_none() && a.seen() != decided.2.seen() {
                other = Some((i, here, a));
            }
        }
        let other = other.filter(|(_, _, a)| a.seen() != decided.2.seen());
        Some(Plan {
            target: ti,
            service_port: *port,
            at: decided.1,
            server: decided.0,
            answer: decided.2,
            other,
        })
    }

    /// Every workload × every service port, in a stable order (namespace, name, port).
    pub fn matrix(&self) -> Matrix {
        let mut cells = Vec::new();
        self.calls(|call| cells.push(call.cell()));
        Matrix { cells }
    }

    /// The matrix's calls, in its order, without writing cells. `each` gets
    /// every call; [`Call::cell`] turns one into the matrix's [`Cell`].
    pub fn calls(&self, mut each: impl FnMut(Call<'m>)) {
        self.calls_where(&Select::all(), &mut each);
    }

    /// The calls of the part of the matrix `select` picks, in the matrix's
    /// order. Work is proportional to the selected clients and targets plus
    /// the calls yielded, not to the whole matrix.
    pub fn calls_where(&self, select: &Select<'_>, each: &mut dyn FnMut(Call<'m>)) {
        self.calls_while(select, &mut |call| {
            each(call);
            true
        });
    }

    /// [`Self::calls_where`], stopping as soon as `each` returns `false`
    /// (a writer whose reader went away need not walk the rest of the matrix).
    pub fn calls_while(&self, select: &Select<'_>, each: &mut dyn FnMut(Call<'m>) -> bool) {
        let prepared = self.prepare(select);
        let keep = |p: &Plan<'m>| (select.cell)(p.outcome(), p.mtls());
        let kept =
            |plans: Vec<Plan<'m>>| -> Vec<Plan<'m>> { plans.into_iter().filter(keep).collect() };
        let plain = kept(self.plans(&prepared.targets, None));
        // Ambient clients all behave alike (ztunnel reads no DestinationRule);
        // computed only when there is one.
        let ambient = if prepared.clients.iter().any(|c| c.ambient) {
            kept(self.ambient_plans(&prepared.targets))
        } else {
            Vec::new()
        };
        let other = kept(self.plans(&prepared.targets, Some(ClientNs::Other)));
        let differing = self.differing(&prepared.targets);
        let mut named: Option<(&str, Vec<Plan<'m>>)> = None;
        for &client in &prepared.clients {
            let plans: &[Plan<'m>] = match sends(&self.rules, client, &differing) {
                Sends::Ambient => &ambient,
                Sends::Plain => &plain,
                Sends::Other => &other,
                Sends::Own(ns, diff) => {
                    if named.as_ref().is_none_or(|(n, _)| *n != ns) {
                        let plans = self.patched(
                            &prepared.targets,
                            &other,
                            diff,
                            ClientNs::Named(ns),
                            &keep,
                        );
                        named = Some((ns, plans));
                    }
                    named.as_ref().map_or(&[], |(_, p)| p.as_slice())
                }
            };
            for p in plans {
                let Some(call) = prepared
                    .targets
                    .get(p.target)
                    .and_then(|t| call_of(client, t, p))
                else {
                    continue;
                };
                if !each(call) {
                    return;
                }
            }
        }
    }

    /// For each named client namespace ([`ClientNs::Named`]), the targets
    /// (sorted, once each) where its rule may differ from the one every
    /// other namespace gets: those its own rules' hosts match, and those whose
    /// namespace's or the root namespace's rules name it in `exportTo` (or
    /// export to `.` from it). Everywhere else it sends what they send.
    fn differing(&self, targets: &[Target<'m>]) -> HashMap<&'m str, Vec<usize>> {
        let mut map: HashMap<&'m str, Vec<usize>> = HashMap::new();
        if self.rules.by_namespace.is_empty() {
            return map;
        }
        for (ti, t) in targets.iter().enumerate() {
            for ns in self.rules.matching_namespaces(&t.fqdn) {
                map.entry(ns).or_default().push(ti);
            }
            for from in [t.service.namespace.as_str(), self.rules.root] {
                for (_, dr) in self.rules.by_namespace.get(from).into_iter().flatten() {
                    for e in &dr.export_to {
                        let ns = match e.as_str() {
                            "*" | "~" => continue,
                            "." => dr.namespace.as_str(),
                            ns => ns,
                        };
                        map.entry(ns).or_default().push(ti);
                    }
                }
            }
        }
        for v in map.values_mut() {
            v.sort_unstable();
            v.dedup();
        }
        map
    }

    /// `base` (the kept plans of [`ClientNs::Other`], in order) with the
    /// plans of the `diff` targets replaced by those of `class`.
    fn patched(
        &self,
        targets: &[Target<'m>],
        base: &[Plan<'m>],
        diff: &[usize],
        class: ClientNs<'_>,
        keep: &dyn Fn(&Plan<'m>) -> bool,
    ) -> Vec<Plan<'m>> {
        let mut out = Vec::with_capacity(base.len());
        let mut base = base.iter().peekable();
        let mut own = Vec::new();
        for &ti in diff {
            while let Some(p) = base.next_if(|p| p.target < ti) {
                out.push(*p);
            }
            while base.next_if(|p| p.target == ti).is_some() {}
            if let Some(t) = targets.get(ti) {
                own.clear();
                self.push_plans(ti, t, Some(class), &mut own);
                out.extend(own.iter().filter(|p| keep(p)).copied());
            }
        }
        out.extend(base.copied());
        out
    }

    /// The rows (clients) and columns (Service ports) of the part of the
    /// matrix `select` picks, in its order; each row has one cell per column
    /// (so with no columns there are no rows, and the other way round).
    pub fn axes(&self, select: &Select<'_>) -> (Vec<&'m Workload>, Vec<(&'m Service, u16)>) {
        let prepared = self.prepare(select);
        let columns: Vec<(&'m Service, u16)> = prepared
            .targets
            .iter()
            .flat_map(|t| t.ports.iter().map(|p| (t.service, p.0)))
            .collect();
        if columns.is_empty() || prepared.clients.is_empty() {
            return (Vec::new(), Vec::new());
        }
        (prepared.clients, columns)
    }

    /// The matrix `select` picks, counted per (client namespace, Service
    /// namespace) pair, in namespace order; pairs without cells are left out.
    /// `select.cell` is not consulted: every cell counts. Work is proportional
    /// to the client namespaces × the Service namespaces, not to the cells.
    pub fn summary(&self, select: &Select<'_>, each: &mut dyn FnMut(PairCounts<'m>)) {
        let prepared = self.prepare(select);
        let groups = prepared.groups.len();
        let group_of = |ti: usize| prepared.targets.get(ti).map_or(0, |t| t.group);
        let row = |plans: &[Plan<'m>]| -> Vec<Counts> {
            let mut row = vec![Counts::default(); groups];
            for p in plans {
                if let Some(c) = row.get_mut(group_of(p.target)) {
                    c.add(p.outcome(), p.mtls());
                }
            }
            row
        };
        let plain = row(&self.plans(&prepared.targets, None));
        // Ambient clients all behave alike (ztunnel reads no DestinationRule).
        let ambient = if prepared.clients.iter().any(|c| c.ambient) {
            row(&self.ambient_plans(&prepared.targets))
        } else {
            Vec::new()
        };
        let other_plans = self.plans(&prepared.targets, Some(ClientNs::Other));
        let other = row(&other_plans);
        // Where each target's plans start in `other_plans`.
        let mut starts = Vec::with_capacity(prepared.targets.len() + 1);
        let mut at = 0usize;
        for t in &prepared.targets {
            starts.push(at);
            at += t.ports.len();
        }
        starts.push(at);
        let differing = self.differing(&prepared.targets);
        let mut own = Vec::new();
        let mut clients = prepared.clients.as_slice();
        while let Some(first) = clients.first() {
            let ns = first.namespace.as_str();
            let end = clients
                .iter()
                .position(|c| c.namespace != ns)
                .unwrap_or(clients.len());
            let (these, rest) = clients.split_at(end);
            clients = rest;
            let (mut bare, mut ambients, mut sidecars) = (0u64, 0u64, 0u64);
            // The namespace's sidecar clients all send alike: `Sends::Own`
            // depends on the namespace only.
            let mut own_rules = None;
            for &c in these {
                match sends(&self.rules, c, &differing) {
                    Sends::Plain => bare += 1,
                    Sends::Ambient => ambients += 1,
                    Sends::Other => sidecars += 1,
                    Sends::Own(ns, diff) => {
                        sidecars += 1;
                        own_rules = Some((ns, diff));
                    }
                }
            }
            let mut patched;
            let with_sidecar: &[Counts] = match own_rules {
                Some((ns, diff)) => {
                    patched = other.clone();
                    for &ti in diff {
                        let (Some(t), Some(&from), Some(&to)) =
                            (prepared.targets.get(ti), starts.get(ti), starts.get(ti + 1))
                        else {
                            continue;
                        };
                        let Some(c) = patched.get_mut(t.group) else {
                            continue;
                        };
                        for p in other_plans.get(from..to).into_iter().flatten() {
                            c.remove(p.outcome(), p.mtls());
                        }
                        own.clear();
                        self.push_plans(ti, t, Some(ClientNs::Named(ns)), &mut own);
                        for p in &own {
                            c.add(p.outcome(), p.mtls());
                        }
                    }
                    &patched
                }
                None => &other,
            };
            for (i, service_namespace) in prepared.groups.iter().enumerate() {
                let mut counts = Counts::default();
                if let Some(c) = plain.get(i) {
                    counts.add_scaled(c, bare);
                }
                if let Some(c) = with_sidecar.get(i) {
                    counts.add_scaled(c, sidecars);
                }
                if let Some(c) = ambient.get(i) {
                    counts.add_scaled(c, ambients);
                }
                if counts.total() > 0 {
                    each(PairCounts {
                        client_namespace: ns,
                        service_namespace,
                        counts,
                    });
                }
            }
        }
    }

    /// The part of the matrix `select` picks, as groups of clients that
    /// send alike ([`ClientGroup`], by the classes the matrix computes
    /// plans for) and one answer per kept cell of each Service port and
    /// group ([`Grouped::calls_while`]). Work is proportional to the groups
    /// × the Service ports plus the clients, not to the cells. A namespace
    /// whose own DestinationRules leave its sidecars' plans as everywhere
    /// else joins the sidecar group.
    pub fn groups(&self, select: &Select<'_>) -> Grouped<'m> {
        let prepared = self.prepare(select);
        let keep = |p: &Plan<'m>| (select.cell)(p.outcome(), p.mtls());
        let kept =
            |plans: Vec<Plan<'m>>| -> Vec<Plan<'m>> { plans.into_iter().filter(keep).collect() };
        let differing = self.differing(&prepared.targets);
        let other = self.plans(&prepared.targets, Some(ClientNs::Other));
        let (mut plain, mut ambient, mut sidecar) = (Vec::new(), Vec::new(), Vec::new());
        // Namespaces with their own rules: the index of their group in `own`,
        // or `None` when their plans are `other`'s.
        let mut own_index: HashMap<&'m str, Option<usize>> = HashMap::new();
        let mut own: Vec<(ClientGroup<'m>, GroupPlans<'m>)> = Vec::new();
        for &client in &prepared.clients {
            match sends(&self.rules, client, &differing) {
                Sends::Plain => plain.push(client),
                Sends::Ambient => ambient.push(client),
                Sends::Other => sidecar.push(client),
                Sends::Own(ns, diff) => {
                    let index = *own_index.entry(ns).or_insert_with(|| {
                        let mut plans = Vec::new();
                        let mut same = true;
                        for &ti in diff {
                            let Some(t) = prepared.targets.get(ti) else {
                                continue;
                            };
                            let start = plans.len();
                            self.push_plans(ti, t, Some(ClientNs::Named(ns)), &mut plans);
                            same &= plans.get(start..) == Some(at_target(&other, ti));
                        }
                        if same {
                            return None;
                        }
                        plans.retain(keep);
                        let group = ClientGroup {
                            sends: GroupSends::OwnRules(ns),
                            clients: Vec::new(),
                        };
                        let diff = diff.to_vec();
                        own.push((group, GroupPlans::Patched { diff, own: plans }));
                        Some(own.len() - 1)
                    });
                    match index.and_then(|i| own.get_mut(i)) {
                        Some((group, _)) => group.clients.push(client),
                        None => sidecar.push(client),
                    }
                }
            }
        }
        let mut groups = Vec::new();
        let mut plans = Vec::new();
        if !plain.is_empty() {
            groups.push(ClientGroup {
                sends: GroupSends::NoSidecar,
                clients: plain,
            });
            plans.push(GroupPlans::Own(kept(self.plans(&prepared.targets, None))));
        }
        if !ambient.is_empty() {
            groups.push(ClientGroup {
                sends: GroupSends::Ambient,
                clients: ambient,
            });
            plans.push(GroupPlans::Own(kept(self.ambient_plans(&prepared.targets))));
        }
        if !sidecar.is_empty() {
            groups.push(ClientGroup {
                sends: GroupSends::Sidecar,
                clients: sidecar,
            });
            plans.push(GroupPlans::Other);
        }
        for (group, group_plans) in own {
            groups.push(group);
            plans.push(group_plans);
        }
        Grouped {
            targets: prepared.targets,
            groups,
            plans,
            other: kept(other),
        }
    }

    /// The DestinationRules istiod picks for `service` from a client in any
    /// namespace of the mesh, each once. Only namespaces whose own rules'
    /// hosts match the service, and those named by the service's and the root
    /// namespace's rules, are looked at one by one: every other client
    /// namespace gets the same rule, so the work does not grow with the
    /// number of namespaces.
    pub(crate) fn chosen_rules(&self, service: &Service) -> Vec<&'m DestinationRule> {
        let rules = &self.rules;
        let namespaces = &self.mesh.namespaces;
        let fqdn = self.mesh.service_fqdn(service);
        let mut found: Vec<&'m DestinationRule> = Vec::new();
        let mut add = |dr: Option<&'m DestinationRule>| {
            if let Some(dr) = dr {
                if !found.iter().any(|f| std::ptr::eq(*f, dr)) {
                    found.push(dr);
                }
            }
        };
        // Client namespaces whose own rules decide.
        let mut decided: std::collections::HashSet<&str> = std::collections::HashSet::new();
        for ns in rules.matching_namespaces(&fqdn) {
            if let Some(dr) = rules.best(ns, &fqdn, |dr| !exports_nowhere(dr)) {
                decided.insert(ns);
                add(Some(dr));
            }
        }
        let fallback = [service.namespace.as_str(), rules.root];
        if fallback
            .iter()
            .all(|ns| rules.by_namespace.get(ns).is_none_or(Vec::is_empty))
        {
            return found;
        }
        // The namespaces the fallback rules single out; all others look alike.
        let mut special: std::collections::HashSet<&str> = fallback.into_iter().collect();
        for ns in fallback {
            for (_, dr) in rules.by_namespace.get(ns).into_iter().flatten() {
                special.extend(dr.export_to.iter().map(String::as_str));
            }
        }
        let mut seen = 0usize;
        for &ns in &special {
            if namespaces.contains_key(ns) {
                seen += 1;
                if !decided.contains(ns) {
                    add(rules.for_class(rules.class(ns), service, &fqdn));
                }
            }
        }
        let decided_elsewhere = decided.iter().filter(|ns| !special.contains(*ns)).count();
        if namespaces.len() > seen + decided_elsewhere {
            add(rules.for_class(ClientNs::Other, service, &fqdn));
        }
        found
    }

    /// Every Service port (first endpoint deciding) whose plaintext callers
    /// are reset, with those callers: clients without a sidecar, and, with
    /// auto mTLS off, sidecar clients no DestinationRule gives a TLS mode for
    /// the port. Each call of `each` gets one port, the reason and the
    /// clients in matrix order. Work per port is proportional to the clients
    /// named, never to the whole matrix.
    pub(crate) fn plaintext_resets(&self, each: &mut dyn FnMut(&PlainReset<'m>, &[&'m Workload])) {
        let prepared = self.prepare(&Select::all());
        // Clients outside the mesh always send plaintext; ambient clients do
        // too towards a sidecar that does not take HBONE (`client_tls`).
        let bare: Vec<&'m Workload> = prepared
            .clients
            .iter()
            .copied()
            .filter(|c| !c.sidecar)
            .collect();
        let outside: Vec<&'m Workload> = if bare.iter().any(|c| c.ambient) {
            bare.iter().copied().filter(|c| !c.ambient).collect()
        } else {
            bare.clone()
        };
        let auto_off = !self.mesh.config.auto_mtls;
        // Sidecar clients with the index of their rule-lookup class.
        let mut classes: Vec<ClientNs<'m>> = Vec::new();
        let mut sidecars: Vec<(&'m Workload, usize)> = Vec::new();
        if auto_off {
            let mut index: HashMap<ClientNs<'m>, usize> = HashMap::new();
            for &c in prepared.clients.iter().filter(|c| c.sidecar) {
                let class = self.rules.class(c.namespace.as_str());
                let i = *index.entry(class).or_insert_with(|| {
                    classes.push(class);
                    classes.len() - 1
                });
                sidecars.push((c, i));
            }
        }
        let mut unset: Vec<&'m Workload> = Vec::new();
        for t in &prepared.targets {
            let mut rules: Option<Vec<Option<&'m DestinationRule>>> = None;
            for (service_port, at) in &t.ports {
                let service_port = *service_port;
                // Each kind of endpoint on its own: a migration Service over a
                // STRICT sidecar and a pod outside the mesh resets plaintext
                // on the first only.
                for (server, at) in t.servers.iter().zip(at) {
                    let Some(at) = at.filter(|at| at.mode == MtlsMode::Strict) else {
                        continue;
                    };
                    let here = |reason| PlainReset {
                        service: t.service,
                        service_port,
                        server,
                        target_port: at.target,
                        reason,
                    };
                    if !server.sidecar {
                        // An ambient STRICT port rejects only clients outside the mesh.
                        if server.ambient && !outside.is_empty() {
                            each(&here(Reason::NoSidecar), &outside);
                        }
                        continue;
                    }
                    let plain: &[&'m Workload] = if takes_hbone(server) { &outside } else { &bare };
                    if !plain.is_empty() {
                        each(&here(Reason::NoSidecar), plain);
                    }
                    if !auto_off {
                        continue;
                    }
                    let rules = rules.get_or_insert_with(|| {
                        classes
                            .iter()
                            .map(|&class| self.rules.for_class(class, t.service, &t.fqdn))
                            .collect()
                    });
                    let sets_tls: Vec<bool> = rules
                        .iter()
                        .map(|rule| {
                            rule.is_some_and(|dr| {
                                dr.port_tls.contains_key(&u32::from(service_port))
                                    || dr.tls.is_some()
                            })
                        })
                        .collect();
                    unset.clear();
                    unset.extend(
                        sidecars
                            .iter()
                            .filter(|(_, i)| !sets_tls.get(*i).copied().unwrap_or(false))
                            .map(|(c, _)| *c),
                    );
                    if !unset.is_empty() {
                        each(&here(Reason::AutoMtlsOff), &unset);
                    }
                }
            }
        }
    }

    /// The selected clients and Services in the matrix's order, each service
    /// with its endpoint and port modes resolved once.
    fn prepare(&self, select: &Select<'_>) -> Prepared<'m> {
        let mut clients: Vec<&Workload> = self
            .mesh
            .workloads
            .iter()
            .filter(|w| (select.client)(w))
            .collect();
        crate::order::sort_by(&mut clients, |a, b| {
            (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name))
        });
        let mut services: Vec<&Service> = self
            .mesh
            .services
            .iter()
            .filter(|s| (select.service)(s))
            .collect();
        crate::order::sort_by(&mut services, |a, b| {
            (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name))
        });
        let mut groups: Vec<&'m str> = Vec::new();
        let targets = services
            .into_iter()
            .filter_map(|service| {
                let group = match groups.last() {
                    Some(last) if *last == service.namespace.as_str() => groups.len() - 1,
                    _ => groups.len(),
                };
                let target = self.target(service, group)?;
                if group == groups.len() {
                    groups.push(service.namespace.as_str());
                }
                Some(target)
            })
            .collect();
        Prepared {
            clients,
            targets,
            groups,
        }
    }

    /// `service` as the matrix sees it (its namespace being group number
    /// `group`): `None` when it selects no workload or no port reaches one.
    fn target(&self, service: &'m Service, group: usize) -> Option<Target<'m>> {
        let mut numbers: Vec<u16> = service.ports.iter().map(|p| p.port).collect();
        crate::order::sort(&mut numbers);
        numbers.dedup();
        let specs: Vec<Option<&'m crate::model::ServicePort>> = numbers
            .iter()
            .map(|&port| service.ports.iter().find(|p| p.port == port))
            .collect();
        let mut servers: Vec<&'m Workload> = Vec::new();
        let mut columns: Vec<Vec<Option<PortAt>>> = vec![Vec::new(); numbers.len()];
        let mut row: Vec<Option<PortAt>> = Vec::with_capacity(numbers.len());
        for server in self.endpoints(service) {
            row.clear();
            row.extend(specs.iter().map(|sp| {
                let sp = (*sp)?;
                let target = target_port(server, &sp.target_port)?;
                Some(PortAt {
                    target,
                    mode: self.server_mode(server, target),
                    app_tls: serves_tls(sp),
                })
            }));
            let kind = |w: &Workload| (w.data_plane(), takes_hbone(w));
            let known = (0..servers.len()).any(|i| {
                servers.get(i).is_some_and(|s| kind(s) == kind(server))
                    && columns
                        .iter()
                        .zip(&row)
                        .all(|(column, at)| column.get(i) == Some(at))
            });
            if !known {
                servers.push(server);
                for (column, at) in columns.iter_mut().zip(&row) {
                    column.push(*at);
                }
            }
        }
        if servers.is_empty() {
            return None;
        }
        let ports = numbers
            .into_iter()
            .zip(columns)
            .filter(|(_, at)| at.iter().any(Option::is_some))
            .collect();
        Some(Target {
            service,
            fqdn: self.mesh.service_fqdn(service),
            servers,
            ports,
            group,
        })
    }

    /// What an ambient client sends to every target port.
    fn ambient_plans(&self, targets: &[Target<'m>]) -> Vec<Plan<'m>> {
        let mut plans = Vec::new();
        for (ti, t) in targets.iter().enumerate() {
            self.push_plans_of(ti, t, DataPlane::Ambient, None, &mut plans);
        }
        plans
    }

    /// What a client of `class` sends to every target port (`None`: a client
    /// without a sidecar, which looks no rule up).
    fn plans(&self, targets: &[Target<'m>], class: Option<ClientNs<'_>>) -> Vec<Plan<'m>> {
        let mut plans = Vec::new();
        for (ti, t) in targets.iter().enumerate() {
            self.push_plans(ti, t, class, &mut plans);
        }
        plans
    }

    /// [`Self::plans`] for the one target `t`, number `ti`.
    fn push_plans(
        &self,
        ti: usize,
        t: &Target<'m>,
        class: Option<ClientNs<'_>>,
        plans: &mut Vec<Plan<'m>>,
    ) {
        let plane = if class.is_some() {
            DataPlane::Sidecar
        } else {
            DataPlane::None
        };
        self.push_plans_of(ti, t, plane, class, plans);
    }

    /// [`Self::push_plans`] for a client of data plane `plane` (`class` only for sidecars).
    fn push_plans_of(
        &self,
        ti: usize,
        t: &Target<'m>,
        plane: DataPlane,
        class: Option<ClientNs<'_>>,
        plans: &mut Vec<Plan<'m>>,
    ) {
        let rule = class.and_then(|c| self.rules.for_class(c, t.service, &t.fqdn));
        plans.extend((0..t.ports.len()).filter_map(|pi| self.plan(ti, t, pi, plane, rule)));
    }
}

/// The call `p` plans from `client` to target `t`.
fn call_of<'m>(client: &'m Workload, t: &Target<'m>, p: &Plan<'m>) -> Option<Call<'m>> {
    let server = *t.servers.get(p.server)?;
    let here = p.at;
    let other = p.other.and_then(|(i, there, a)| {
        Some(OtherEndpoint {
            server: *t.servers.get(i)?,
            target_port: there.target,
            server_mode: there.mode,
            client_tls: a.client_tls,
            outcome: a.outcome,
            mtls: a.mtls,
            transport: a.transport,
        })
    });
    let a = p.answer;
    Some(Call {
        client,
        service: t.service,
        service_port: p.service_port,
        server,
        target_port: here.target,
        server_mode: here.mode,
        client_tls: a.client_tls,
        reason: a.reason,
        outcome: a.outcome,
        mtls: a.mtls,
        transport: a.transport,
        app_tls: here.app_tls,
        other,
    })
}

impl<'m> Call<'m> {
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
            Reason::Ztunnel => ClientReason::Ztunnel,
        }
    }

    /// The DestinationRule the client applies and the TLS mode it takes from
    /// it, when a rule decides ([`ClientReason::DestinationRule`] without copying).
    pub fn destination_rule(&self) -> Option<(&'m DestinationRule, TlsMode)> {
        match self.reason {
            Reason::Rule(dr, mode) => Some((dr, mode)),
            _ => None,
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
            transport: self.transport,
            other_endpoint: self.other.as_ref().map(OtherEndpoint::cell),
            explanation: self.explain(),
        }
    }

    /// One sentence: what the client sends and why, what the server is, and
    /// the result ([`Cell::explanation`]).
    pub fn explain(&self) -> String {
        let mut s = String::with_capacity(160);
        self.explain_into(&mut s);
        s
    }

    /// [`Self::explain`], appended to `s` (so a caller writing many cells
    /// reuses one buffer).
    pub fn explain_into(&self, s: &mut String) {
        for part in [&self.client.name, ".", &self.client.namespace] {
            s.push_str(part);
        }
        self.explain_sending_into(s);
    }

    /// [`Self::explain_into`] for every member of the groups of a
    /// [`GroupCall`] at once: `each client sends …`, the rest as each
    /// member's sentence says it (nothing after the client's name depends
    /// on which member it is).
    pub fn explain_group_into(&self, s: &mut String) {
        s.push_str("each client");
        self.explain_sending_into(s);
    }

    /// The sentence after the client's name: ` sends …`.
    fn explain_sending_into(&self, s: &mut String) {
        // Pieces pushed one by one: the matrix streams millions of these, and
        // `write!` costs more than the rest of a cell.
        let sends = match (self.client_tls, self.transport) {
            (ClientTls::Plaintext, _) => "plaintext",
            (ClientTls::IstioMutual, _) => "Istio mTLS",
            (ClientTls::OtherTls, Transport::Hbone) => "non-Istio TLS inside HBONE (mTLS)",
            (ClientTls::OtherTls, _) => "non-Istio TLS",
        };
        let (client, service, server) = (self.client, self.service, self.server);
        for part in [
            " sends ",
            sends,
            " to ",
            &service.name,
            ".",
            &service.namespace,
            ":",
        ] {
            s.push_str(part);
        }
        push_number(s, u64::from(self.service_port));
        s.push_str(" because ");
        // A sidecar calling an ambient pod: istiod tunnels HBONE whatever
        // TLS the client was told to use (`Reach::client_tls`).
        let to_ambient = server.ambient && client.sidecar;
        match self.reason {
            Reason::NoSidecar => s.push_str("it has no sidecar"),
            Reason::Rule(dr, mode) => {
                for part in [
                    "DestinationRule ",
                    &dr.namespace,
                    "/",
                    &dr.name,
                    " sets ",
                    mode.as_str(),
                ] {
                    s.push_str(part);
                }
                if to_ambient {
                    s.push_str(match mode {
                        TlsMode::Disable => {
                            ", but the destination is ambient: the sidecar sends it HBONE anyway (DISABLE only leaves the tunnelled bytes unencrypted inside)"
                        }
                        TlsMode::Simple | TlsMode::Mutual => {
                            " and the destination is ambient: the sidecar sends that TLS inside HBONE"
                        }
                        TlsMode::IstioMutual => {
                            " and the destination is ambient: HBONE replaces Istio mTLS"
                        }
                    });
                }
            }
            Reason::AutoMtls => s.push_str("of auto mTLS"),
            Reason::AutoMtlsOff if to_ambient => s.push_str(
                "the destination is ambient: with auto mTLS off and no DestinationRule setting TLS, the sidecar still sends it HBONE",
            ),
            Reason::AutoMtlsOff => s.push_str("auto mTLS is off and no DestinationRule sets TLS"),
            Reason::Ztunnel => s.push_str(if self.client_tls == ClientTls::IstioMutual {
                "it is ambient: its ztunnel sends HBONE (mTLS) to a destination that accepts it"
            } else {
                "it is ambient and the destination does not take HBONE: its ztunnel passes the connection through"
            }),
        }
        for part in ["; ", &server.name, ".", &server.namespace] {
            s.push_str(part);
        }
        push_server(s, self, server);
        let tls_app = self.app_tls && self.client_tls == ClientTls::OtherTls;
        if tls_app && self.outcome == Outcome::Allowed {
            s.push_str(", and the app serves TLS itself on this port (its Service port is named https or tls)");
        }
        s.push_str(match self.outcome {
            Outcome::Allowed => ", so the request succeeds",
            Outcome::Reset => ", so the connection is reset",
            Outcome::Failed => ", so TLS bytes reach a plaintext listener and the request fails",
        });
        if let Some(o) = &self.other {
            for part in [
                "; but the Service's endpoints differ: through ",
                &o.server.name,
                ".",
                &o.server.namespace,
                match o.server.data_plane() {
                    DataPlane::Sidecar => " (sidecar) ",
                    DataPlane::Ambient => " (ambient) ",
                    DataPlane::None => " (outside the mesh) ",
                },
            ] {
                s.push_str(part);
            }
            s.push_str(match (o.outcome, o.mtls) {
                (Outcome::Allowed, true) => "it succeeds over mTLS",
                (Outcome::Allowed, false) => "it succeeds without mTLS",
                (Outcome::Reset, _) => "the connection is reset",
                (Outcome::Failed, _) => "the request fails",
            });
            s.push_str(", so requests balanced across them get both answers");
        }
    }
}

/// What the server is, as [`Call::explain_into`] says it: `" is STRICT"`, `" is ambient, …"`.
fn push_server(s: &mut String, call: &Call<'_>, server: &Workload) {
    if server.ambient {
        s.push_str(" is ambient, ztunnel ");
        s.push_str(if call.server_mode == MtlsMode::Strict {
            "rejects connections without a peer identity (STRICT)"
        } else {
            "accepts plaintext (not STRICT; DISABLE is not supported in ambient)"
        });
        // Traffic to the Service goes through its waypoint (the Service's
        // label, else the namespace's as the pod inherited it); the
        // outcome at ztunnel is the same, the pod sees the waypoint's identity.
        let waypoint = call
            .service
            .use_waypoint
            .as_deref()
            .or(server.use_waypoint.as_deref());
        if let (Some(w), Transport::Hbone) = (waypoint, call.transport) {
            s.push_str(", through waypoint ");
            s.push_str(w);
            s.push_str(" (L7 policy and WasmPlugins run there; the pod's ztunnel sees the waypoint as the peer)");
        }
    } else if server.sidecar {
        s.push_str(" is ");
        s.push_str(call.server_mode.as_str());
    } else {
        s.push_str(" has no sidecar");
    }
}

/// `n` in decimal, appended to `s`, without `write!` (the matrix's writers
/// append millions of numbers).
pub fn push_number(s: &mut String, n: u64) {
    let mut buf = [0u8; 20];
    s.extend(digits(n, &mut buf).iter().map(|&b| char::from(b)));
}

/// The decimal digits of `n`, written into the end of `buf` (a `u64` has at
/// most 20): what [`push_number`] appends, for writers of bytes.
pub fn digits(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut start = buf.len();
    loop {
        start -= 1;
        if let Some(d) = buf.get_mut(start) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || start == 0 {
            break;
        }
    }
    buf.get(start..).unwrap_or_default()
}

fn exports_nowhere(dr: &DestinationRule) -> bool {
    !dr.export_to.is_empty() && dr.export_to.iter().all(|e| e == "~")
}

/// `exportTo`: empty or `*` = everywhere, `.` = own namespace, else listed namespaces.
fn exported_to(dr: &DestinationRule, client: ClientNs<'_>) -> bool {
    dr.export_to.is_empty()
        || dr.export_to.iter().any(|e| match client {
            ClientNs::Named(ns) => e == "*" || e == ns || (e == "." && dr.namespace == ns),
            ClientNs::Other => e == "*",
        })
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

/// Whether a mesh client reaches `server` over HBONE: a pod captured by
/// ztunnel, or a sidecar labelled `networking.istio.io/tunnel: http` (it
/// listens for HBONE; istiod gives the label's endpoints an `hbone`
/// transport socket match).
pub fn takes_hbone(server: &Workload) -> bool {
    server.ambient
        || (server.sidecar
            && server
                .labels
                .get("networking.istio.io/tunnel")
                .map(String::as_str)
                == Some("http"))
}

/// What carries a call of a `client` data plane sending `client_tls` into
/// `server`'s pod.
pub fn transport(client: DataPlane, client_tls: ClientTls, server: &Workload) -> Transport {
    let tunnels = client != DataPlane::None && takes_hbone(server);
    match client_tls {
        ClientTls::Plaintext => Transport::Plaintext,
        ClientTls::IstioMutual if tunnels => Transport::Hbone,
        ClientTls::IstioMutual => Transport::IstioMtls,
        // Only a sidecar originates non-Istio TLS; towards an ambient pod
        // it goes inside HBONE (`Reach::client_tls`).
        ClientTls::OtherTls if client == DataPlane::Sidecar && server.ambient => Transport::Hbone,
        ClientTls::OtherTls => Transport::Tls,
    }
}

/// [`outcome_at`] for an app that does not serve TLS itself.
pub fn outcome_for(client: ClientTls, server: DataPlane, server_mode: MtlsMode) -> (Outcome, bool) {
    outcome_at(client, server, server_mode, false)
}

/// [`outcome`] for a server of any data plane, whose app serves TLS itself
/// on the port when `app_tls`. An ambient server's ztunnel takes HBONE from
/// any mesh client (DISABLE does not exist there: `server_mode` is STRICT or
/// PERMISSIVE) and, for a connection without a peer identity, closes it
/// when STRICT (istio/ztunnel `src/rbac.rs`: the static strict policy
/// denies) or passes it to the app when not. Non-Istio TLS reaches an
/// ambient pod only from a sidecar, inside HBONE: ztunnel sees the
/// sidecar's identity, so STRICT lets it in, and hands the app the TLS.
/// Non-Istio TLS that reaches an app serving TLS itself succeeds.
pub fn outcome_at(
    client: ClientTls,
    server: DataPlane,
    server_mode: MtlsMode,
    app_tls: bool,
) -> (Outcome, bool) {
    let (outcome, mtls) = match server {
        DataPlane::Sidecar => outcome(client, true, server_mode),
        DataPlane::None => outcome(client, false, server_mode),
        DataPlane::Ambient => match (client, server_mode) {
            (ClientTls::IstioMutual, _) => (Outcome::Allowed, true),
            (ClientTls::OtherTls, _) if app_tls => return (Outcome::Allowed, true),
            (ClientTls::OtherTls, _) => (Outcome::Failed, false),
            (ClientTls::Plaintext, MtlsMode::Strict) => (Outcome::Reset, false),
            (ClientTls::Plaintext, _) => (Outcome::Allowed, false),
        },
    };
    if app_tls && client == ClientTls::OtherTls && outcome == Outcome::Failed {
        // The TLS the sidecar passed through (or no sidecar saw) is the app's own.
        return (Outcome::Allowed, false);
    }
    (outcome, mtls)
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
    use std::collections::BTreeMap;

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

    /// Two rules for the same host in one namespace: istiod sorts them by
    /// creationTimestamp before merging and keeps the first one's traffic
    /// policy (push_context.go `setDestinationRules`: "if two destination
    /// rule have top level traffic policies we take the first one"), so the
    /// older rule decides whatever the names say.
    #[test]
    fn of_two_destination_rules_for_one_host_the_older_decides_not_the_first_by_name() {
        let rule = |name: &str, created: &str, mode: &str| {
            format!(
                "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: {name}, namespace: foo, creationTimestamp: \"{created}\"}}\nspec:\n  host: httpbin.bar.svc.cluster.local\n  trafficPolicy: {{tls: {{mode: {mode}}}}}\n"
            )
        };
        let older_disable = rule("z-old", "2023-01-01T00:00:00Z", "DISABLE")
            + &rule("a-new", "2024-06-01T00:00:00Z", "ISTIO_MUTUAL");
        let cell = call(
            &mesh_with(&older_disable, MeshConfig::default()),
            "foo",
            "bar",
            8000,
        );
        assert_eq!(reason_rule(&cell), Some(("foo", "z-old")));
        assert_eq!(cell.client_tls, ClientTls::Plaintext);
        assert!(!cell.mtls);

        let older_mutual = rule("z-old", "2024-06-01T00:00:00Z", "DISABLE")
            + &rule("a-new", "2023-01-01T00:00:00Z", "ISTIO_MUTUAL");
        let cell = call(
            &mesh_with(&older_mutual, MeshConfig::default()),
            "foo",
            "bar",
            8000,
        );
        assert_eq!(reason_rule(&cell), Some(("foo", "a-new")));
        assert!(cell.mtls);
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
            let mesh = lab_with(&extra, auto_mtls);
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

    /// The YAML files of `dir`, sorted, as `(path, text)`.
    fn yaml_files(dir: &std::path::Path) -> Vec<(String, String)> {
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        paths.sort();
        paths
            .into_iter()
            .map(|p| {
                let text = std::fs::read_to_string(&p).unwrap();
                (p.display().to_string(), text)
            })
            .collect()
    }

    /// The expected values come from outside the code: the seed lab's
    /// results as the Istio pages print them (manifests/lab/seed-lab.json,
    /// written down by hand from istio.io's authn-policy and mtls-migration
    /// tasks and seed document 003), for every step and scenario.
    #[test]
    fn every_call_the_seed_lab_documents_is_what_the_matrix_answers() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let lab: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(root.join("manifests/lab/seed-lab.json")).unwrap(),
        )
        .unwrap();
        let steps = lab["steps"].as_array().unwrap();
        assert_eq!(steps.len(), 8, "six steps and two scenarios");
        let mut checked = 0;
        for step in steps {
            let name = step["step"].as_str().unwrap();
            let dir = root.join("manifests/steps").join(name);
            let mut files = Vec::new();
            if dir.is_dir() {
                files.extend(yaml_files(&root.join("manifests/workloads")));
                files.extend(yaml_files(&dir));
            } else {
                files.extend(yaml_files(&root.join("manifests/lab/scenarios").join(name)));
            }
            let sources: Vec<(&str, &str)> = files
                .iter()
                .map(|(p, t)| (p.as_str(), t.as_str()))
                .collect();
            let report = check(&sources, MeshConfig::default());
            assert!(
                report
                    .diagnostics
                    .iter()
                    .all(|d| !d.code.starts_with("input-")),
                "{name}: {:#?}",
                report.diagnostics
            );
            let matrix = report.mesh.matrix();
            for call in step["calls"].as_array().unwrap() {
                let (client, client_ns) = call["client"].as_str().unwrap().split_once('.').unwrap();
                let (service, service_ns) =
                    call["service"].as_str().unwrap().split_once('.').unwrap();
                let port = u16::try_from(call["port"].as_u64().unwrap()).unwrap();
                let cell = matrix
                    .cells
                    .iter()
                    .find(|c| {
                        (c.client.as_str(), c.client_namespace.as_str()) == (client, client_ns)
                            && (c.service.as_str(), c.service_namespace.as_str())
                                == (service, service_ns)
                            && c.service_port == port
                    })
                    .unwrap_or_else(|| panic!("{name}: no cell for {call}"));
                let expected = match (
                    call["code"].as_str().unwrap(),
                    call["mtls"].as_bool().unwrap(),
                ) {
                    ("200", mtls) => (Outcome::Allowed, mtls),
                    ("000", false) => (Outcome::Reset, false),
                    other => panic!("{name}: a result the seed lab never shows: {other:?}"),
                };
                assert_eq!(
                    (cell.outcome, cell.mtls),
                    expected,
                    "{name}: {call}: {}",
                    cell.explanation
                );
                // The seed lab's mTLS is XFCC at the app: Istio mTLS into a sidecar.
                if cell.mtls {
                    assert_eq!(cell.transport, Transport::IstioMtls, "{name}: {call}");
                }
                checked += 1;
            }
        }
        assert_eq!(checked, 6 * 9 + 2 + 3);
    }

    #[test]
    fn outcomes_the_seed_lab_does_not_show_follow_istios_documented_behaviour() {
        // Not in the seed lab's pages, so taken from the Istio analyzers and
        // issue that name them (the codes `check` cites): IST0115 (Istio mTLS
        // to an app without a sidecar fails), KIA0505 (ISTIO_MUTUAL to a
        // DISABLE port: TLS bytes reach the app), istio/istio#14130 (SIMPLE
        // to a sidecar: STRICT has no chain for non-Istio TLS, PERMISSIVE
        // passes the bytes to a plaintext app).
        use ClientTls::{IstioMutual, OtherTls};
        use MtlsMode::{Disable, Permissive, Strict};
        for (client, plane, mode, want) in [
            (IstioMutual, DataPlane::None, Disable, Outcome::Failed),
            (IstioMutual, DataPlane::Sidecar, Disable, Outcome::Failed),
            (OtherTls, DataPlane::Sidecar, Strict, Outcome::Reset),
            (OtherTls, DataPlane::Sidecar, Permissive, Outcome::Failed),
            (OtherTls, DataPlane::None, Disable, Outcome::Failed),
        ] {
            assert_eq!(
                outcome_for(client, plane, mode),
                (want, false),
                "{client:?} → {plane:?} {mode:?}"
            );
        }
    }

    /// A second httpbin Deployment in bar without a sidecar behind the same
    /// Service: the mtls-migration task's half-migrated Service.
    const SECOND_ENDPOINT: &str = "---\nkind: Deployment\nmetadata: {name: httpbin-v2, namespace: bar}\nspec:\n  template:\n    metadata: {labels: {app: httpbin, sidecar.istio.io/inject: 'false'}}\n    spec: {containers: [{name: c, ports: [{containerPort: 80, name: http-web}]}]}\n";

    #[test]
    fn a_service_over_a_meshed_and_an_unmeshed_endpoint_is_answered_per_endpoint() {
        let mesh = lab_with(SECOND_ENDPOINT, true);
        // PERMISSIVE: auto mTLS gives the sidecar endpoint mTLS and the other
        // plaintext; the cell must not promise mTLS for every request.
        let cell = call(&mesh, "foo", "bar", 8000);
        assert_eq!(
            (cell.outcome, cell.mtls),
            (Outcome::Allowed, false),
            "{}",
            cell.explanation
        );
        let other = cell.other_endpoint.as_ref().unwrap();
        assert_eq!(
            (
                other.name.as_str(),
                other.data_plane,
                other.outcome,
                other.mtls
            ),
            ("httpbin", DataPlane::Sidecar, Outcome::Allowed, true)
        );
        assert!(
            cell.explanation
                .contains("endpoints differ: through httpbin.bar (sidecar) it succeeds over mTLS"),
            "{}",
            cell.explanation
        );
        // A bare client: plaintext to both, one answer, nothing to name.
        assert_eq!(call(&mesh, "legacy", "bar", 8000).other_endpoint, None);
        // STRICT in bar: the sidecar endpoint resets the legacy client, the
        // other serves it; the reset decides and the other endpoint is named.
        let strict = "---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: bar}\nspec: {mtls: {mode: STRICT}}\n";
        let mesh = lab_with(&format!("{SECOND_ENDPOINT}{strict}"), true);
        let cell = call(&mesh, "legacy", "bar", 8000);
        assert_eq!(cell.outcome, Outcome::Reset, "{}", cell.explanation);
        let other = cell.other_endpoint.as_ref().unwrap();
        assert_eq!(
            (other.name.as_str(), other.outcome),
            ("httpbin-v2", Outcome::Allowed)
        );
        // The matrix and connect agree, and check still reports the reset.
        let reach = mesh.reach();
        let client = mesh
            .workloads
            .iter()
            .find(|w| w.name == "sleep" && w.namespace == "legacy")
            .unwrap();
        let service = mesh
            .services
            .iter()
            .find(|s| s.name == "httpbin" && s.namespace == "bar")
            .unwrap();
        let in_matrix = reach.matrix().cells.into_iter().find(|c| {
            c.client_namespace == "legacy"
                && c.client == "sleep"
                && c.service_namespace == "bar"
                && c.service == "httpbin"
                && c.service_port == 8000
        });
        assert_eq!(reach.connect(client, service, 8000), in_matrix);
        let report = check(
            &[
                ("lab.yaml", LAB),
                ("extra.yaml", &format!("{SECOND_ENDPOINT}{strict}")),
            ],
            MeshConfig::default(),
        );
        assert!(
            report
                .diagnostics
                .iter()
                .any(|d| d.code == "plaintext-client-to-strict"
                    && d.message.contains("httpbin.bar:8000")),
            "{:#?}",
            report.diagnostics
        );
    }

    #[test]
    fn endpoints_that_answer_alike_are_one_answer_with_nothing_else_named() {
        // Two sidecar Deployments behind one Service answer alike.
        let twin = SECOND_ENDPOINT.replace("sidecar.istio.io/inject: 'false'", "version: v2");
        let mesh = lab_with(&twin, true);
        let cell = call(&mesh, "foo", "bar", 8000);
        assert_eq!(
            (cell.outcome, cell.mtls, cell.other_endpoint.as_ref()),
            (Outcome::Allowed, true, None)
        );
        assert!(
            !cell.explanation.contains("endpoints differ"),
            "{}",
            cell.explanation
        );
    }

    /// A TLS port on legacy's httpbin (no sidecar), named `name`, and a
    /// SIMPLE DestinationRule from foo for it.
    fn tls_app(name: &str) -> String {
        format!("---\nkind: Service\nmetadata: {{name: secure, namespace: legacy}}\nspec: {{selector: {{app: httpbin}}, ports: [{{name: {name}, port: 8443, targetPort: 443}}]}}\n") + &dr("origin", "foo", "secure.legacy.svc.cluster.local", "SIMPLE", "")
    }

    fn secure_cell(mesh: &Mesh, client_ns: &str) -> Cell {
        let client = mesh
            .workloads
            .iter()
            .find(|w| w.name == "sleep" && w.namespace == client_ns)
            .unwrap();
        let service = mesh.services.iter().find(|s| s.name == "secure").unwrap();
        mesh.connect(client, service, 8443).unwrap()
    }

    #[test]
    fn tls_originated_by_a_sidecar_succeeds_at_an_app_that_serves_tls_itself() {
        for name in ["https", "tls", "https-admin", "TLS-x"] {
            let mesh = lab_with(&tls_app(name), true);
            let cell = secure_cell(&mesh, "foo");
            assert_eq!(
                (cell.client_tls, cell.outcome, cell.mtls, cell.transport),
                (ClientTls::OtherTls, Outcome::Allowed, false, Transport::Tls),
                "{name}: {}",
                cell.explanation
            );
            assert!(
                cell.explanation.contains("serves TLS itself"),
                "{}",
                cell.explanation
            );
        }
    }

    #[test]
    fn tls_to_a_port_not_named_for_tls_still_reaches_a_plaintext_app_and_fails() {
        for name in ["http", "web", "httpsx", "grpc-tls"] {
            let mesh = lab_with(&tls_app(name), true);
            let cell = secure_cell(&mesh, "foo");
            assert_eq!(
                (cell.outcome, cell.transport),
                (Outcome::Failed, Transport::Tls),
                "{name}: {}",
                cell.explanation
            );
        }
    }

    #[test]
    fn an_app_serving_tls_behind_a_sidecar_gets_the_tls_through_permissive_but_strict_resets_it() {
        let svc = "---\nkind: Service\nmetadata: {name: secure, namespace: bar}\nspec: {selector: {app: httpbin}, ports: [{name: https, port: 8443, targetPort: 443}]}\n".to_string()
            + &dr("origin", "foo", "secure.bar.svc.cluster.local", "SIMPLE", "");
        let mesh = lab_with(&svc, true);
        let cell = secure_cell(&mesh, "foo");
        assert_eq!(
            (cell.server_mode, cell.outcome),
            (MtlsMode::Permissive, Outcome::Allowed),
            "{}",
            cell.explanation
        );
        let strict = "---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: bar}\nspec: {mtls: {mode: STRICT}}\n";
        let mesh = lab_with(&(svc.clone() + strict), true);
        assert_eq!(secure_cell(&mesh, "foo").outcome, Outcome::Reset);
        // check agrees: no "non-Istio TLS to a sidecar fails" finding for the
        // TLS port while PERMISSIVE, the finding once STRICT resets it.
        let codes = |extra: &str| -> Vec<String> {
            check(
                &[("lab.yaml", LAB), ("extra.yaml", extra)],
                MeshConfig::default(),
            )
            .diagnostics
            .into_iter()
            .filter(|d| d.code.starts_with("dr-") && d.message.contains("secure.bar:8443"))
            .map(|d| d.code)
            .collect()
        };
        assert_eq!(codes(&svc), Vec::<String>::new());
        assert_eq!(
            codes(&(svc.clone() + strict)),
            ["dr-non-istio-tls-to-sidecar"]
        );
        // A port not named for TLS is still reported while PERMISSIVE.
        assert_eq!(
            codes(&svc.replace("name: https", "name: web")),
            ["dr-non-istio-tls-to-sidecar"]
        );
    }

    /// istiod's DestinationRule choice written out directly from the mesh's
    /// rules, without any index: the oracle for the indexed lookups.
    fn istiod_rule<'m>(
        mesh: &'m Mesh,
        client: &str,
        service: &Service,
    ) -> Option<&'m DestinationRule> {
        let fqdn = mesh.service_fqdn(service);
        let best = |ns: &str, eligible: &dyn Fn(&DestinationRule) -> bool| {
            mesh.destination_rules
                .iter()
                .filter(|d| d.namespace == ns && eligible(d))
                .filter_map(|d| host_match_rank(&mesh.resolve_host(d), &fqdn).map(|r| (r, d)))
                .min_by(|(ra, a), (rb, b)| ra.cmp(rb).then_with(|| a.age_key().cmp(&b.age_key())))
                .map(|(_, d)| d)
        };
        let exported = |d: &DestinationRule| {
            d.export_to.is_empty()
                || d.export_to
                    .iter()
                    .any(|e| e == "*" || e == client || (e == "." && d.namespace == client))
        };
        best(client, &|d| {
            d.export_to.is_empty() || !d.export_to.iter().all(|e| e == "~")
        })
        .or_else(|| best(&service.namespace, &exported))
        .or_else(|| best(&mesh.config.root_namespace, &exported))
    }

    /// The seed-lab-like mesh plus `rules` (namespace, host, exportTo, mode)
    /// and a namespace `qux` that only holds a client.
    fn mesh_with_rules(rules: &[(usize, usize, usize, bool)], auto_mtls: bool) -> Mesh {
        const NAMESPACES: [&str; 4] = ["foo", "bar", "legacy", "istio-system"];
        const HOSTS: [&str; 7] = [
            "httpbin",
            "httpbin.bar.svc.cluster.local",
            "*.bar.svc.cluster.local",
            "*.local",
            "*",
            "sleep.legacy.svc.cluster.local",
            "*.svc.cluster.local",
        ];
        const EXPORTS: [&str; 7] = [
            "",
            "  exportTo: [\".\"]\n",
            "  exportTo: [\"*\"]\n",
            "  exportTo: [\"~\"]\n",
            "  exportTo: [foo]\n",
            "  exportTo: [qux]\n",
            "  exportTo: [bar, \".\"]\n",
        ];
        let mut extra = String::from(
            "---\nkind: Deployment\nmetadata: {name: sleep, namespace: qux}\nspec: {template: {metadata: {labels: {app: sleep}}}}\n---\nkind: Service\nmetadata: {name: sleep, namespace: legacy}\nspec: {selector: {app: sleep}, ports: [{port: 80}]}\n---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: bar}\nspec: {mtls: {mode: STRICT}}\n",
        );
        for (i, &(ns, host, export, mutual)) in rules.iter().enumerate() {
            let mode = if mutual { "ISTIO_MUTUAL" } else { "DISABLE" };
            extra += &dr(
                &format!("d{i}"),
                NAMESPACES[ns % 4],
                HOSTS[host % 7],
                mode,
                EXPORTS[export % 7],
            );
        }
        lab_with(&extra, auto_mtls)
    }

    /// The lab plus `extra`, which must load without input errors.
    fn lab_with(extra: &str, auto_mtls: bool) -> Mesh {
        let report = check(
            &[("lab.yaml", LAB), ("extra.yaml", extra)],
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
        report.mesh
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]
        #[test]
        fn indexed_rule_lookups_agree_with_istiods_choice_from_every_namespace(
            rules in proptest::collection::vec((0usize..4, 0usize..7, 0usize..7, proptest::bool::ANY), 0..6),
        ) {
            let mesh = mesh_with_rules(&rules, true);
            let reach = mesh.reach();
            for service in &mesh.services {
                let mut expected: Vec<(&str, &str)> = Vec::new();
                for ns in mesh.namespaces.keys() {
                    let want = istiod_rule(&mesh, ns, service);
                    let got = reach.destination_rule_for(ns, service);
                    proptest::prop_assert_eq!(got, want, "{} from {}", service.name, ns);
                    expected.extend(want.map(|d| (d.namespace.as_str(), d.name.as_str())));
                }
                expected.sort_unstable();
                expected.dedup();
                let mut chosen: Vec<(&str, &str)> = reach
                    .chosen_rules(service)
                    .iter()
                    .map(|d| (d.namespace.as_str(), d.name.as_str()))
                    .collect();
                chosen.sort_unstable();
                proptest::prop_assert_eq!(chosen, expected, "{}.{}", service.name, service.namespace);
            }
        }

        #[test]
        fn filtered_kept_and_grouped_matrices_agree_with_the_full_matrix(
            rules in proptest::collection::vec((0usize..4, 0usize..7, 0usize..7, proptest::bool::ANY), 0..6),
            auto_mtls in proptest::bool::ANY,
            client_ns in 0usize..5,
            only_broken in proptest::bool::ANY,
        ) {
            let mesh = mesh_with_rules(&rules, auto_mtls);
            let reach = mesh.reach();
            let full = reach.matrix().cells;
            // Every cell is what connect answers on its own, with istiod's rule
            // (every generated rule sets a mode, so a sidecar client that has
            // one names it).
            for c in &full {
                let service = mesh.services.iter().find(|s| s.name == c.service && s.namespace == c.service_namespace).unwrap();
                let client = mesh.workloads.iter().find(|w| w.name == c.client && w.namespace == c.client_namespace).unwrap();
                let alone = reach.connect(client, service, c.service_port);
                proptest::prop_assert_eq!(alone.as_ref(), Some(c));
                let rule = istiod_rule(&mesh, &c.client_namespace, service);
                let named = match &c.client_reason {
                    ClientReason::DestinationRule { name, namespace, .. } => Some((namespace, name)),
                    _ => None,
                };
                if client.sidecar {
                    proptest::prop_assert_eq!(rule.map(|d| (&d.namespace, &d.name)), named);
                }
            }
            let namespaces = ["foo", "bar", "legacy", "qux", "nowhere"];
            let wanted_ns = namespaces[client_ns];
            let client = |w: &Workload| w.namespace != wanted_ns;
            let service = |s: &Service| s.name == "httpbin";
            let cell = |o: Outcome, _mtls: bool| !only_broken || o != Outcome::Allowed;
            let select = Select { client: &client, service: &service, cell: &cell };
            let mut got = Vec::new();
            reach.calls_where(&select, &mut |call| got.push(call.cell()));
            let want: Vec<Cell> = full
                .iter()
                .filter(|c| c.client_namespace != wanted_ns && c.service == "httpbin")
                .filter(|c| !only_broken || c.outcome != Outcome::Allowed)
                .cloned()
                .collect();
            proptest::prop_assert_eq!(&got, &want);
            let mut grouped: Vec<(String, String, Counts)> = Vec::new();
            reach.summary(&select, &mut |p| grouped.push((p.client_namespace.to_string(), p.service_namespace.to_string(), p.counts)));
            let mut counted: BTreeMap<(String, String), Counts> = BTreeMap::new();
            for c in full.iter().filter(|c| c.client_namespace != wanted_ns && c.service == "httpbin") {
                counted
                    .entry((c.client_namespace.clone(), c.service_namespace.clone()))
                    .or_default()
                    .add(c.outcome, c.mtls);
            }
            let counted: Vec<(String, String, Counts)> = counted.into_iter().map(|((a, b), c)| (a, b, c)).collect();
            proptest::prop_assert_eq!(grouped, counted);
            // The client groups, each answer expanded to the groups' members,
            // are the kept cells, each once, and the group's sentence is each
            // member's without its name.
            let groups = reach.groups(&select);
            let mut expanded: Vec<(Cell, String)> = Vec::new();
            groups.calls_while(&mut |g| {
                let mut sentence = String::new();
                g.call.explain_group_into(&mut sentence);
                for &i in g.groups {
                    for &client in &groups.groups()[i].clients {
                        expanded.push((Call { client, ..g.call }.cell(), sentence.clone()));
                    }
                }
                true
            });
            for (cell, sentence) in &expanded {
                let rest = sentence.strip_prefix("each client").unwrap();
                proptest::prop_assert_eq!(&cell.explanation, &format!("{}.{}{rest}", cell.client, cell.client_namespace));
            }
            let key = |c: &Cell| (c.client_namespace.clone(), c.client.clone(), c.service_namespace.clone(), c.service.clone(), c.service_port);
            let mut expanded: Vec<Cell> = expanded.into_iter().map(|(c, _)| c).collect();
            expanded.sort_by_key(key);
            let mut want = want;
            want.sort_by_key(key);
            proptest::prop_assert_eq!(expanded, want);
            // Every selected client is in one group.
            let mut members: Vec<(&str, &str)> = groups.groups().iter().flat_map(|g| g.clients.iter().map(|c| (c.namespace.as_str(), c.name.as_str()))).collect();
            members.sort_unstable();
            let mut selected: Vec<(&str, &str)> = mesh.workloads.iter().filter(|w| client(w)).map(|c| (c.namespace.as_str(), c.name.as_str())).collect();
            selected.sort_unstable();
            proptest::prop_assert_eq!(members, selected);
        }
    }
}
