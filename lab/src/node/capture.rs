//! The nat rules istio-iptables installs for a default sidecar, inside one pod's
//! namespace.
//!
//! Source: `tools/istio-iptables/pkg/capture/run.go` (istio/istio master `86c9f01fd735`,
//! checked against tag 1.29.6) run with the injector's arguments from
//! `manifests/charts/istio-control/istio-discovery/files/injection-template.yaml`:
//! `-p 15001 -z 15006 -u 1337 -m REDIRECT -i '*' -x "" -b '*' -d 15090,15021,15020`
//! (gid defaults to the uid, `tools/common/config/config.go`). Rule order as in
//! shared/notes/istio-sidecar-dataplane.md §1 and the goldens
//! `testdata/inbound-ports-wildcard.golden` (the inbound and loopback rules) and
//! `testdata/kube-virt-interfaces.golden` (the final `-j ISTIO_REDIRECT` that
//! `-i '*'` adds).

use super::netns;
use super::NodeError;

/// The `iptables-restore` input. Why each rule is there:
/// - PREROUTING sends every inbound TCP connection to ISTIO_INBOUND (run.go's
///   `handleInboundPortsInclude` with `-b '*'`);
/// - ISTIO_INBOUND first lets through 15008 (HBONE, always excluded) and the
///   injector's `-d` ports 15090 (Prometheus), 15021 (health), 15020 (merged metrics),
///   then redirects the rest to 15006, `virtualInbound`;
/// - OUTPUT sends everything to ISTIO_OUTPUT (≤1.24 matched `-p tcp` only);
/// - ISTIO_OUTPUT, in order: Envoy's inbound upstream connections (source 127.0.0.6 on
///   lo) return; Envoy (uid, then gid 1337) talking to its own pod IP over lo
///   other than to 127.0.0.1 or 15008 is inbound traffic and goes to 15006; the app
///   talking to its own pod over lo stays direct; anything else from uid/gid 1337 is
///   Envoy's own upstream traffic and returns; traffic to 127.0.0.1 returns; and
///   everything else (the app's outbound, `-i '*'`) goes to ISTIO_REDIRECT, 15001.
pub const ISTIO_NAT: &str = "\
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:ISTIO_INBOUND - [0:0]
:ISTIO_REDIRECT - [0:0]
:ISTIO_IN_REDIRECT - [0:0]
:ISTIO_OUTPUT - [0:0]
-A ISTIO_INBOUND -p tcp --dport 15008 -j RETURN
-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001
-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
-A PREROUTING -p tcp -j ISTIO_INBOUND
-A ISTIO_INBOUND -p tcp --dport 15090 -j RETURN
-A ISTIO_INBOUND -p tcp --dport 15021 -j RETURN
-A ISTIO_INBOUND -p tcp --dport 15020 -j RETURN
-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT
-A OUTPUT -j ISTIO_OUTPUT
-A ISTIO_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN
-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --uid-owner 1337 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --gid-owner 1337 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --gid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN
-A ISTIO_OUTPUT -j ISTIO_REDIRECT
COMMIT
";

/// Install [`ISTIO_NAT`] in `netns`, replacing its nat table (istio-iptables also
/// applies its rules with `iptables-restore`).
pub(super) fn install(netns: &str) -> Result<(), NodeError> {
    netns::iptables_restore(netns, ISTIO_NAT)
}
