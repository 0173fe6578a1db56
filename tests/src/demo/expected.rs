//! What the seed lab documents, as data: `manifests/lab/seed-lab.json`, written by
//! hand from the istio.io pages it cites. Nothing here comes from `policy`; it is the
//! independent side of the demo's three-way comparison (observed, documented,
//! predicted).

use crate::demo::LabError;
pub use peerauth_lab::call::{CallResult, ServiceCall};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// Where the data file lives, relative to the repository.
pub const SEED_LAB_FILE: &str = "manifests/lab/seed-lab.json";

/// One documented call.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct ExpectedCall {
    /// Pod key of the caller, `sleep.foo`.
    pub client: String,
    /// `name.namespace` of the Service called, `httpbin.bar`.
    pub service: String,
    /// Service port.
    pub port: u16,
    pub code: String,
    #[serde(default)]
    pub curl_exit: i32,
    pub mtls: bool,
    /// What the page prints for this call in this step (`code`, `mtls`); empty: our
    /// reading, explained in the step's `reading`.
    #[serde(default)]
    pub shown: Vec<String>,
}

impl ExpectedCall {
    pub fn result(&self) -> CallResult {
        CallResult {
            code: self.code.clone(),
            curl_exit: self.curl_exit,
            mtls: self.mtls,
        }
    }

    /// The call itself, as the lab makes it.
    pub fn target(&self) -> ServiceCall {
        ServiceCall {
            client: self.client.clone(),
            service: self.service.clone(),
            port: self.port,
        }
    }

    /// `http://<service>:<port>`, the seed's URL base.
    pub fn base_url(&self) -> String {
        self.target().base_url()
    }
}

/// One step's documented results.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct ExpectedStep {
    pub step: String,
    /// A key of [`SeedLab::sources`].
    pub source: String,
    #[serde(default)]
    pub sections: Vec<String>,
    /// How we read the page where it is ambiguous.
    pub reading: String,
    pub calls: Vec<ExpectedCall>,
}

/// One cited page.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct Source {
    pub title: String,
    pub url: String,
    pub text: String,
}

/// What a capture on the server pod's interface shows, per the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct Readable {
    pub request_line_readable: bool,
    pub marker_readable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct DataInMotion {
    pub source: String,
    pub section: String,
    pub reading: String,
    pub plaintext: Readable,
    pub mtls: Readable,
}

/// The whole data file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct SeedLab {
    pub about: String,
    pub sources: BTreeMap<String, Source>,
    pub steps: Vec<ExpectedStep>,
    pub data_in_motion: DataInMotion,
}

impl SeedLab {
    /// Read and check [`SEED_LAB_FILE`] under `repo`.
    ///
    /// `Err` when it cannot be read or parsed, or a step cites a source it does not list.
    pub fn load(repo: &Path) -> Result<SeedLab, LabError> {
        let path = repo.join(SEED_LAB_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| LabError::Manifest {
            path: SEED_LAB_FILE.into(),
            message: e.to_string(),
        })?;
        SeedLab::parse(&text)
    }

    pub fn parse(text: &str) -> Result<SeedLab, LabError> {
        let lab: SeedLab = serde_json::from_str(text).map_err(|e| LabError::Manifest {
            path: SEED_LAB_FILE.into(),
            message: e.to_string(),
        })?;
        let cited =
            std::iter::once(&lab.data_in_motion.source).chain(lab.steps.iter().map(|s| &s.source));
        for source in cited {
            if !lab.sources.contains_key(source) {
                return Err(LabError::Manifest {
                    path: SEED_LAB_FILE.into(),
                    message: format!("cites source {source:?}, which `sources` does not list"),
                });
            }
        }
        Ok(lab)
    }

    pub fn step(&self, name: &str) -> Option<&ExpectedStep> {
        self.steps.iter().find(|s| s.step == name)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn committed() -> SeedLab {
        SeedLab::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("..")).unwrap()
    }

    /// The step's grid as the seed_lab test writes it: A = 200 mTLS, P = 200 plain,
    /// R = reset; rows sleep.foo/bar/legacy, columns httpbin.foo/bar/legacy.
    fn grid(lab: &SeedLab, step: &str) -> String {
        let s = lab.step(step).unwrap();
        let mut out = String::new();
        for c in ["foo", "bar", "legacy"] {
            for t in ["foo", "bar", "legacy"] {
                let call = s
                    .calls
                    .iter()
                    .find(|x| {
                        x.client == format!("sleep.{c}") && x.service == format!("httpbin.{t}")
                    })
                    .unwrap();
                out.push(match (call.code.as_str(), call.mtls) {
                    ("200", true) => 'A',
                    ("200", false) => 'P',
                    ("000", _) if call.curl_exit == 56 => 'R',
                    _ => '?',
                });
            }
            out.push(' ');
        }
        out.trim_end().to_string()
    }

    #[test]
    fn the_committed_data_lists_every_seed_step_with_all_nine_calls() {
        let lab = committed();
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for step in crate::demo::steps::load_steps(&repo).unwrap() {
            let s = lab
                .step(&step.name)
                .unwrap_or_else(|| panic!("{} missing", step.name));
            assert_eq!(s.calls.len(), 9, "{}", step.name);
            assert!(!s.reading.is_empty());
        }
    }

    #[test]
    fn the_documented_grids_are_the_seed_lab_grids_policy_s_tests_were_written_from() {
        // The same grids as policy/tests/seed_lab.rs, which were written by hand from
        // the step descriptions: two transcriptions of one source must agree.
        let lab = committed();
        assert_eq!(grid(&lab, "1-no-policy"), "AAP AAP PPP");
        assert_eq!(grid(&lab, "2-mesh-strict"), "AAP AAP RRP");
        assert_eq!(grid(&lab, "3-namespace-strict"), "AAP AAP RPP");
        assert_eq!(grid(&lab, "4-workload-strict"), "AAP AAP PRP");
        assert_eq!(grid(&lab, "5-port-level-disable"), "APP APP PPP");
        assert_eq!(grid(&lab, "6-precedence"), "PAP PAP PPP");
    }

    #[test]
    fn a_step_citing_an_unlisted_source_is_refused() {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(SEED_LAB_FILE),
        )
        .unwrap()
        .replacen("\"source\": \"authn-policy\"", "\"source\": \"nowhere\"", 1);
        let err = SeedLab::parse(&text).unwrap_err().to_string();
        assert!(err.contains("\"nowhere\""), "{err}");
    }

    #[test]
    fn results_compare_code_and_exit_and_mtls_only_for_a_200() {
        assert!(CallResult::ok(true).same_as(&CallResult::ok(true)));
        assert!(!CallResult::ok(true).same_as(&CallResult::ok(false)));
        assert!(CallResult::reset().same_as(&CallResult {
            code: "000".into(),
            curl_exit: 56,
            mtls: true
        }));
        assert!(!CallResult::reset().same_as(&CallResult {
            code: "000".into(),
            curl_exit: 52,
            mtls: false
        }));
        assert_eq!(CallResult::reset().to_string(), "000 exit 56");
        assert_eq!(CallResult::ok(false).to_string(), "200 plain");
    }
}
