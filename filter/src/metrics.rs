//! Metric names in Istio's tag-encoding style.
//!
//! Envoy only knows flat stat names; Istio's own wasm stats encoded labels as
//! `key=.=value;.;` segments in front of the metric name and extracted them with
//! `stats_tags` regexes in the bootstrap. We do the same, so with the extraction
//! rules from [`stats_tags`] `/stats/prometheus` shows
//! `peerauth_requests_total{port="8080",mode="STRICT",...}`.

use crate::decide::{Decision, Forgery};

/// Requests (HTTP) seen by the filter.
pub const REQUESTS: &str = "peerauth_requests_total";
/// Connections (TCP mode) seen by the filter.
pub const CONNECTIONS: &str = "peerauth_connections_total";
/// Forged or smuggled `x-forwarded-client-cert` headers.
pub const XFCC_FORGED: &str = "peerauth_xfcc_forged_total";
/// Gauge: the wasm VM's linear memory in bytes (Envoy reports none for a VM).
pub const VM_MEMORY: &str = "peerauth_vm_memory_bytes";

/// Every label the filter emits, in emission order.
pub const TAGS: [&str; 7] = [
    "port", "mode", "security", "outcome", "reason", "form", "handling",
];

fn encode(name: &str, tags: &[(&str, &str)]) -> String {
    let mut s = String::with_capacity(name.len() + tags.len() * 24);
    for (k, v) in tags {
        s.push_str(k);
        s.push_str("=.=");
        // The separators must not appear in a value or extraction would go astray.
        s.extend(
            v.chars()
                .map(|c| if matches!(c, ';' | '=' | '.') { '_' } else { c }),
        );
        s.push_str(";.;");
    }
    s.push_str(name);
    s
}

/// The `port` label of a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortLabel {
    /// The port was not read (or could not be).
    Unknown,
    Port(u32),
    /// A port beyond the first [`MAX_PORT_LABELS`] the configuration does not name.
    Other,
}

/// Ports the configuration does not name that get a label of their own, per
/// VM. Each label combination is a stat Envoy keeps for the process's life, so
/// a client walking a workload's ports must not grow them without bound.
pub const MAX_PORT_LABELS: usize = 64;

impl PortLabel {
    fn text(self) -> String {
        match self {
            PortLabel::Unknown => "unknown".to_string(),
            PortLabel::Port(p) => p.to_string(),
            PortLabel::Other => "other".to_string(),
        }
    }
}

/// The counter name for one decision.
pub fn decision_metric(d: &Decision, port: PortLabel, tcp: bool) -> String {
    let port = port.text();
    encode(
        if tcp { CONNECTIONS } else { REQUESTS },
        &[
            ("port", &port),
            ("mode", d.mode.as_str()),
            ("security", d.security.label()),
            ("outcome", d.outcome.label()),
            ("reason", d.reason.label()),
        ],
    )
}

/// The forged-XFCC counter name.
pub fn forgery_metric(f: &Forgery, port: PortLabel) -> String {
    let port = port.text();
    encode(
        XFCC_FORGED,
        &[
            ("port", &port),
            ("form", f.form_label()),
            ("handling", f.handling.label()),
        ],
    )
}

/// Envoy `stats_config.stats_tags` entries (tag name, regex) that turn the encoded
/// names back into labels. Istio users add the same via a bootstrap override.
pub fn stats_tags() -> Vec<(&'static str, String)> {
    TAGS.iter()
        .map(|t| (*t, format!(r"({t}=\.=(.*?);\.;)")))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::config::Config;
    use crate::decide::decide;
    use crate::facts::{ConnectionFacts, Facts, Security};

    #[test]
    fn decision_names_carry_every_label_before_the_metric_name() {
        let c = Config::parse(br#"{"mtls":{"mode":"STRICT"}}"#).unwrap();
        let conn = ConnectionFacts {
            security: Security::Plaintext,
            peer_uri: None,
            peer_sha256: None,
            destination_port: Some(8080),
        };
        let f = Facts::new(&conn, None, None);
        let d = decide(&c, &f);
        assert_eq!(
            decision_metric(&d, PortLabel::Port(8080), false),
            "port=.=8080;.;mode=.=STRICT;.;security=.=plaintext;.;outcome=.=rejected;.;reason=.=plaintext_on_strict;.;peerauth_requests_total"
        );
        assert!(decision_metric(&d, PortLabel::Port(8080), true)
            .ends_with(";.;peerauth_connections_total"));
        assert!(decision_metric(&d, PortLabel::Other, false).starts_with("port=.=other;.;"));
    }

    #[test]
    fn separators_inside_values_cannot_forge_another_label() {
        assert_eq!(
            encode("m", &[("port", "1;.;mode=.=X")]),
            "port=.=1___mode___X;.;m"
        );
    }

    #[test]
    fn the_extraction_regexes_capture_the_whole_segment_and_the_value() {
        let tags = stats_tags();
        assert_eq!(tags.len(), TAGS.len());
        assert_eq!(tags[0], ("port", r"(port=\.=(.*?);\.;)".to_string()));
    }
}
