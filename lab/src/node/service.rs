//! kube-proxy's iptables mode, reduced to what a ClusterIP needs, in the node
//! namespace: `KUBE-SERVICES` matches each ClusterIP:port and jumps to the port's
//! `KUBE-SVC-…` chain, which picks one endpoint's `KUBE-SEP-…` chain with
//! `statistic --mode random` (probability `1/(n-i)` for endpoint `i` of `n`, the last
//! unconditional), and the SEP chain DNATs to `podIP:targetPort`. Shape from
//! kubernetes `pkg/proxy/iptables/proxier.go` (`writeServiceToEndpointRules`;
//! `probability` → `computeProbability`, printed with `%0.10f`); a port without
//! endpoints is rejected in the filter table, as kube-proxy does (`KUBE-SERVICES` …
//! `has no endpoints` `-j REJECT`).
//!
//! Differences from kube-proxy: chain names hash with hex instead of base32; no
//! masquerade, so a pod calling its own Service without a sidecar (hairpin) is not
//! supported (a sidecar's outbound capture sends it to Envoy first anyway); no
//! NodePorts, no session affinity.

use super::netns;
use super::NodeError;
use crate::topology::Topology;
use sha2::{Digest, Sha256};

fn chain(kind: &str, key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02X}")).collect();
    format!("KUBE-{kind}-{hex}")
}

/// The `iptables-restore` input for every Service port of `topology`.
pub fn rules(topology: &Topology) -> String {
    let mut chains = vec![":KUBE-SERVICES - [0:0]".to_string()];
    let mut nat = vec![
        "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES"
            .to_string(),
        "-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES"
            .to_string(),
    ];
    let mut filter = Vec::new();
    for s in &topology.services {
        for p in &s.ports {
            let port_name = format!(
                "{}/{}:{}",
                s.namespace,
                s.name,
                p.name.as_deref().unwrap_or("")
            );
            let endpoints = s.endpoints(topology, p.port);
            if endpoints.is_empty() {
                filter.push(format!(
                    "-A KUBE-SERVICES -d {}/32 -p tcp -m comment --comment \"{port_name} has no endpoints\" -m tcp --dport {} -j REJECT --reject-with icmp-port-unreachable",
                    s.cluster_ip, p.port
                ));
                continue;
            }
            let svc = chain("SVC", &format!("{port_name}tcp"));
            chains.push(format!(":{svc} - [0:0]"));
            nat.push(format!(
                "-A KUBE-SERVICES -d {}/32 -p tcp -m comment --comment \"{port_name} cluster IP\" -m tcp --dport {} -j {svc}",
                s.cluster_ip, p.port
            ));
            let n = endpoints.len();
            for (i, ep) in endpoints.iter().enumerate() {
                let target = format!("{}:{}", ep.pod.ip, ep.port);
                let sep = chain("SEP", &format!("{port_name}tcp{target}"));
                chains.push(format!(":{sep} - [0:0]"));
                let pick = if i + 1 < n {
                    format!(
                        " -m statistic --mode random --probability {:.10}",
                        1.0 / (n - i) as f64
                    )
                } else {
                    String::new()
                };
                nat.push(format!(
                    "-A {svc} -m comment --comment \"{port_name} -> {target}\"{pick} -j {sep}"
                ));
                nat.push(format!(
                    "-A {sep} -p tcp -m comment --comment \"{port_name}\" -m tcp -j DNAT --to-destination {target}"
                ));
            }
        }
    }
    let mut out = String::from(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n",
    );
    for c in &chains {
        out.push_str(c);
        out.push('\n');
    }
    for r in &nat {
        out.push_str(r);
        out.push('\n');
    }
    out.push_str("COMMIT\n");
    if !filter.is_empty() {
        out.push_str("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n");
        out.push_str("-A FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n");
        for r in &filter {
            out.push_str(r);
            out.push('\n');
        }
        out.push_str("COMMIT\n");
    }
    out
}

pub(super) fn install(node: &str, topology: &Topology) -> Result<(), NodeError> {
    netns::iptables_restore(node, &rules(topology))
}
