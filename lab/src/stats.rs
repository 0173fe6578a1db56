//! The filter's counters read back from a sidecar's `/stats`.

use std::fmt;

/// `stats_config.stats_tags` that turn the filter's Istio-style encoded metric
/// names (`key=.=value;.;…peerauth_requests_total`) into Prometheus labels.
pub fn peerauth_stats_tags() -> Vec<(String, String)> {
    [
        "port", "mode", "security", "outcome", "reason", "form", "handling",
    ]
    .iter()
    .map(|t| (t.to_string(), format!(r"({t}=\.=(.*?);\.;)")))
    .collect()
}

/// A filter counter read back from Envoy's `/stats`, its labels decoded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FilterCounter {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: u64,
}

impl FilterCounter {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

impl fmt::Display for FilterCounter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let labels: Vec<String> = self
            .labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect();
        write!(f, "{}{{{}}} {}", self.name, labels.join(","), self.value)
    }
}

/// Parse the filter's counters out of `/stats` (names carry their labels as
/// `key=.=value;.;` segments; see `filter/src/metrics.rs`).
pub fn parse_filter_counters(stats: &str) -> Vec<FilterCounter> {
    stats
        .lines()
        .filter_map(|line| {
            let (name, value) = line.split_once(": ")?;
            let name = name.strip_prefix("wasmcustom.").unwrap_or(name);
            let value = value.trim().parse().ok()?;
            let mut labels = Vec::new();
            let mut rest = name;
            while let Some((segment, tail)) = rest.split_once(";.;") {
                let (k, v) = segment.split_once("=.=")?;
                labels.push((k.to_string(), v.to_string()));
                rest = tail;
            }
            // Counters only (all end in `_total`): the filter's gauge
            // `peerauth_vm_memory_bytes` carries no labels and is not a count.
            (rest.starts_with("peerauth_") && rest.ends_with("_total")).then(|| FilterCounter {
                name: rest.to_string(),
                labels,
                value,
            })
        })
        .collect()
}

/// `after` minus `before`, counter by counter (a counter absent before counts from 0);
/// counters that did not move are left out.
pub fn delta(before: &[FilterCounter], after: &[FilterCounter]) -> Vec<FilterCounter> {
    after
        .iter()
        .filter_map(|a| {
            let was = before
                .iter()
                .find(|b| b.name == a.name && b.labels == a.labels)
                .map_or(0, |b| b.value);
            (a.value > was).then(|| FilterCounter {
                value: a.value - was,
                ..a.clone()
            })
        })
        .collect()
}

/// The sum of the counters named `name` whose labels satisfy `f`.
pub fn sum(counters: &[FilterCounter], name: &str, f: impl Fn(&FilterCounter) -> bool) -> u64 {
    counters
        .iter()
        .filter(|c| c.name == name && f(c))
        .map(|c| c.value)
        .sum()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn filter_counters_are_decoded_from_envoy_stat_names() {
        let stats = "cluster.app.upstream_cx_total: 3\n\
            wasmcustom.port=.=80;.;mode=.=STRICT;.;security=.=plaintext;.;outcome=.=would_reject;.;reason=.=plaintext_on_strict;.;peerauth_requests_total: 2\n\
            wasmcustom.port=.=80;.;form=.=smuggled;.;handling=.=rejected;.;peerauth_xfcc_forged_total: 1\n\
            wasmcustom.peerauth_vm_memory_bytes: 1114112\n";
        let counters = parse_filter_counters(stats);
        assert_eq!(counters.len(), 2);
        assert_eq!(counters[0].name, "peerauth_requests_total");
        assert_eq!(counters[0].label("port"), Some("80"));
        assert_eq!(counters[0].label("outcome"), Some("would_reject"));
        assert_eq!(counters[0].value, 2);
        assert_eq!(counters[1].label("form"), Some("smuggled"));
        assert_eq!(
            counters[1].to_string(),
            "peerauth_xfcc_forged_total{port=\"80\",form=\"smuggled\",handling=\"rejected\"} 1"
        );
    }

    #[test]
    fn a_delta_keeps_only_counters_that_moved_by_how_much_they_moved() {
        let before = parse_filter_counters(
            "wasmcustom.port=.=80;.;peerauth_requests_total: 2\nwasmcustom.port=.=81;.;peerauth_requests_total: 1\n",
        );
        let after = parse_filter_counters(
            "wasmcustom.port=.=80;.;peerauth_requests_total: 5\nwasmcustom.port=.=81;.;peerauth_requests_total: 1\nwasmcustom.port=.=82;.;peerauth_requests_total: 4\n",
        );
        let d = delta(&before, &after);
        let by_port: Vec<(Option<&str>, u64)> =
            d.iter().map(|c| (c.label("port"), c.value)).collect();
        assert_eq!(by_port, vec![(Some("80"), 3), (Some("82"), 4)]);
        assert_eq!(sum(&d, "peerauth_requests_total", |_| true), 7);
    }
}
