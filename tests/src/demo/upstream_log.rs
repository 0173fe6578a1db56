//! The seed's debug-log check (seed document 001): with the client sidecar's upstream
//! logger at debug, Envoy names the transport socket it picked for each endpoint
//! (`HostDescriptionImplBase::resolveTransportSocketFactory`,
//! `source/common/upstream/upstream_impl.cc`): `tlsMode-istio` for a pod with a
//! sidecar, `tlsMode-disabled` for one without. Static clusters resolve their hosts
//! when Envoy starts, so the lines are there before the first call.

/// One `transport socket match, socket <name> selected for host with address <addr>`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SocketMatch {
    pub socket: String,
    pub address: String,
    /// The whole log line.
    pub line: String,
}

const PREFIX: &str = "transport socket match, socket ";
const MIDDLE: &str = " selected for host with address ";

/// Every socket-match line of an Envoy log.
pub fn socket_matches(log: &str) -> Vec<SocketMatch> {
    log.lines()
        .filter_map(|line| {
            let at = line.find(PREFIX)?;
            let rest = &line[at + PREFIX.len()..];
            let (socket, address) = rest.split_once(MIDDLE)?;
            Some(SocketMatch {
                socket: socket.trim().to_string(),
                address: address.trim().to_string(),
                line: line.trim().to_string(),
            })
        })
        .collect()
}

/// The first match for an endpoint at `address` (`ip:port`).
pub fn for_address<'m>(matches: &'m [SocketMatch], address: &str) -> Option<&'m SocketMatch> {
    matches.iter().find(|m| m.address == address)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn socket_match_lines_are_read_from_an_envoy_debug_log() {
        let log = "[2026-12-01 17:00:00.000][12][debug][upstream] [source/common/upstream/upstream_impl.cc:450] transport socket match, socket tlsMode-istio selected for host with address 10.244.0.3:80\n\
            [2026-12-01 17:00:00.000][12][info][main] starting\n\
            [2026-12-01 17:00:00.001][12][debug][upstream] [source/common/upstream/upstream_impl.cc:450] transport socket match, socket tlsMode-disabled selected for host with address 10.244.0.7:80\n";
        let m = socket_matches(log);
        assert_eq!(m.len(), 2);
        assert_eq!(
            for_address(&m, "10.244.0.3:80").unwrap().socket,
            "tlsMode-istio"
        );
        assert_eq!(
            for_address(&m, "10.244.0.7:80").unwrap().socket,
            "tlsMode-disabled"
        );
        assert!(for_address(&m, "10.244.0.9:80").is_none());
    }
}
