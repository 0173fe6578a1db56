//! Which container ports a workload serves and what a Service port means
//! on it: the port numbers PeerAuthentication's `portLevelMtls` is keyed by
//! (container ports, never Service ports), and whether the app itself
//! speaks TLS there.

use crate::mesh::{Mesh, Service, Workload};
use crate::model::{ServicePort, TargetPort};
use std::collections::BTreeSet;

impl Mesh {
    /// Container ports plus numeric/named target ports of Services selecting `workload`.
    pub fn served_ports(&self, workload: &Workload) -> BTreeSet<u32> {
        served_ports(workload, &self.services)
    }
}

/// [`Mesh::served_ports`] among `services` (only those selecting `workload` count).
pub(crate) fn served_ports<'s>(
    workload: &Workload,
    services: impl IntoIterator<Item = &'s Service>,
) -> BTreeSet<u32> {
    let mut ports = crate::order::set(workload.ports.iter().map(|p| u32::from(p.port)));
    for service in services {
        if !service.selects(workload) {
            continue;
        }
        for sp in &service.ports {
            if let Some(port) = target_port(workload, &sp.target_port) {
                ports.insert(port);
            }
        }
    }
    ports
}

/// The container port a Service `targetPort` means for `workload`
/// (`None` for a name the workload does not declare).
pub fn target_port(workload: &Workload, target: &TargetPort) -> Option<u32> {
    match target {
        TargetPort::Number(n) => Some(u32::from(*n)),
        TargetPort::Name(name) => workload
            .ports
            .iter()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .map(|p| u32::from(p.port)),
    }
}

/// Whether the app behind Service port `port` serves TLS itself, as Istio's
/// explicit protocol selection reads the port's name: `https` or `tls`,
/// alone or before a `-suffix` (istio/istio `pkg/config/kube/conversion.go`
/// `ConvertProtocol`; istio.io "Protocol Selection"). Only such a port makes
/// a DestinationRule SIMPLE/MUTUAL origination reach an app that can read it.
pub fn serves_tls(port: &ServicePort) -> bool {
    port.name.as_deref().is_some_and(|name| {
        let protocol = name.split('-').next().unwrap_or(name);
        protocol.eq_ignore_ascii_case("https") || protocol.eq_ignore_ascii_case("tls")
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn port(name: Option<&str>) -> ServicePort {
        ServicePort {
            name: name.map(str::to_string),
            port: 443,
            target_port: TargetPort::Number(443),
        }
    }

    #[test]
    fn a_port_named_for_https_or_tls_before_any_suffix_serves_tls() {
        // istio.io "Protocol Selection": `<protocol>[-<suffix>]`.
        for name in ["https", "tls", "https-web", "TLS-admin", "Https"] {
            assert!(serves_tls(&port(Some(name))), "{name}");
        }
        for name in ["http", "http-tls", "httpsx", "tcp", "grpc-tls", ""] {
            assert!(!serves_tls(&port(Some(name))), "{name}");
        }
        assert!(!serves_tls(&port(None)));
    }
}
