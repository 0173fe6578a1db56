//! The demo's results: one [`CallReport`] per call (observed, documented by the lab,
//! predicted by `policy`), one [`StepReport`] per step, and their table.

pub use peerauth_lab::call::{CallResult, Observed, PortMode};
use peerauth_lab::stats::FilterCounter;
use std::fmt;

/// One call of a step.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CallReport {
    pub client: String,
    pub server: String,
    pub port: u16,
    /// The command run in the client pod.
    pub command: String,
    pub observed: Observed,
    pub expected_by_lab: CallResult,
    /// What the lab's page prints for this call (`code`, `mtls`); empty: our reading.
    pub lab_shows: Vec<String>,
    pub predicted_by_policy: CallResult,
    pub policy_explanation: String,
}

impl CallReport {
    pub fn agrees_with_lab(&self) -> bool {
        self.observed.result.same_as(&self.expected_by_lab)
    }

    pub fn agrees_with_policy(&self) -> bool {
        self.observed.result.same_as(&self.predicted_by_policy)
    }

    /// Observed, documented and predicted all say the same.
    pub fn agrees(&self) -> bool {
        self.agrees_with_lab() && self.agrees_with_policy()
    }

    /// `✓`, or which of the three disagree.
    pub fn verdict(&self) -> String {
        let lab_policy = self.expected_by_lab.same_as(&self.predicted_by_policy);
        match (self.agrees_with_lab(), self.agrees_with_policy()) {
            (true, true) => "✓".into(),
            (false, true) => "✗ observed and policy differ from the lab".into(),
            (true, false) => "✗ observed and the lab differ from policy".into(),
            (false, false) if lab_policy => "✗ observed differs from the lab and policy".into(),
            (false, false) => "✗ all three differ".into(),
        }
    }
}

/// One step's results.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StepReport {
    pub name: String,
    pub title: String,
    pub source: String,
    pub reading: String,
    pub modes: Vec<PortMode>,
    /// The WasmPlugins loaded, `<ns>/<name>`.
    pub plugins: Vec<String>,
    pub calls: Vec<CallReport>,
    /// Filter counters per sidecar pod after the calls.
    pub counters: Vec<(String, Vec<FilterCounter>)>,
    pub envoys: usize,
    pub seconds: f64,
}

impl StepReport {
    pub fn disagreements(&self) -> usize {
        self.calls.iter().filter(|c| !c.agrees()).count()
    }
}

impl fmt::Display for StepReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "  {:<44} {:<13} {:<13} {:<13} agreement",
            "call", "observed", "lab", "policy"
        )?;
        for c in &self.calls {
            let lab = if c.lab_shows.is_empty() {
                format!("{}*", c.expected_by_lab)
            } else {
                c.expected_by_lab.to_string()
            };
            writeln!(
                f,
                "  {:<44} {:<13} {:<13} {:<13} {}",
                format!("{} → {}:{}", c.client, c.server, c.port),
                c.observed.result.to_string(),
                lab,
                c.predicted_by_policy.to_string(),
                c.verdict()
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn call(observed: CallResult, lab: CallResult, policy: CallResult) -> CallReport {
        CallReport {
            client: "sleep.legacy".into(),
            server: "httpbin.foo".into(),
            port: 8000,
            command: String::new(),
            observed: Observed {
                result: observed,
                xfcc: None,
            },
            expected_by_lab: lab,
            lab_shows: vec!["code".into()],
            predicted_by_policy: policy,
            policy_explanation: String::new(),
        }
    }

    #[test]
    fn a_call_agrees_only_when_observed_lab_and_policy_say_the_same() {
        let r = CallResult::reset;
        assert!(call(r(), r(), r()).agrees());
        let c = call(CallResult::ok(false), r(), r());
        assert!(!c.agrees());
        assert_eq!(c.verdict(), "✗ observed differs from the lab and policy");
        let c = call(r(), r(), CallResult::ok(false));
        assert_eq!(c.verdict(), "✗ observed and the lab differ from policy");
        let c = call(r(), CallResult::ok(false), r());
        assert_eq!(c.verdict(), "✗ observed and policy differ from the lab");
        let c = call(
            CallResult::ok(true),
            CallResult::ok(false),
            CallResult::reset(),
        );
        assert_eq!(c.verdict(), "✗ all three differ");
    }

    #[test]
    fn plaintext_where_mtls_was_expected_is_a_disagreement() {
        let c = call(
            CallResult::ok(false),
            CallResult::ok(true),
            CallResult::ok(true),
        );
        assert!(!c.agrees());
    }
}
