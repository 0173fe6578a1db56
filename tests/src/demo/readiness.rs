//! "Safe to go STRICT?": a step's traffic through the audit WasmPlugin
//! (`manifests/wasmplugin/peerauth-audit.yaml`: action audit against STRICT, every
//! sidecar in foo and bar), then the filter's counters per server sidecar.

use crate::demo::stats::{self, FilterCounter};

/// One server sidecar's audit counters for one round of calls.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Readiness {
    pub workload: String,
    pub counters: Vec<FilterCounter>,
}

impl Readiness {
    /// Requests the audit filter counted as `would_reject` because they were plaintext.
    pub fn plaintext_would_reject(&self) -> u64 {
        stats::sum(&self.counters, peerauth_filter::metrics::REQUESTS, |c| {
            c.label("outcome") == Some("would_reject") && c.label("security") == Some("plaintext")
        })
    }

    pub fn mtls(&self) -> u64 {
        stats::sum(&self.counters, peerauth_filter::metrics::REQUESTS, |c| {
            c.label("security") == Some("mutual_tls")
        })
    }

    /// The container ports the counters carry.
    pub fn ports(&self) -> Vec<String> {
        let mut p: Vec<String> = self
            .counters
            .iter()
            .filter_map(|c| c.label("port").map(str::to_string))
            .collect();
        p.sort();
        p.dedup();
        p
    }

    pub fn verdict(&self) -> String {
        match self.plaintext_would_reject() {
            0 => "0 plaintext — safe to go STRICT".into(),
            n => format!("{n} plaintext request(s) STRICT would refuse — not safe yet"),
        }
    }
}

/// One round of the readout.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReadinessRound {
    pub label: String,
    pub clients: Vec<String>,
    pub servers: Vec<Readiness>,
    /// What the round should show: plaintext is left exactly when a client without a
    /// sidecar still calls.
    pub expect_plaintext: bool,
}

impl ReadinessRound {
    pub fn as_expected(&self) -> bool {
        let any_plain = self.servers.iter().any(|r| r.plaintext_would_reject() > 0);
        any_plain == self.expect_plaintext && self.servers.iter().all(|r| r.mtls() > 0)
    }
}
