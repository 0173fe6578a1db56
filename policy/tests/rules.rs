//! Every rule in `policy::diagnostic::RULES` has a failing and a passing
//! fixture in `tests/fixtures/rules/<code>.{bad,good}.{yaml,json}`: the bad one
//! must produce the code (at the line named by an `# expect-line: N` comment,
//! when there is one), the good one must not. Both are run through
//! `policy::check`, exactly as the CLI does.
//!
//! A first-line comment `# peerauth-test: auto-mtls=off` runs the fixture with
//! `meshConfig.enableAutoMtls: false`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use policy::diagnostic::{Rule, RULES};
use policy::{check, Diagnostic, MeshConfig};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn fixture(code: &str, kind: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rules");
    ["yaml", "json"]
        .iter()
        .map(|ext| dir.join(format!("{code}.{kind}.{ext}")))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("missing fixture tests/fixtures/rules/{code}.{kind}.yaml"))
}

fn run(path: &Path) -> (String, Vec<Diagnostic>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut config = MeshConfig::default();
    if text.starts_with("# peerauth-test: auto-mtls=off") {
        config.auto_mtls = false;
    }
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let report = check(&[(&name, &text)], config);
    (text, report.diagnostics)
}

fn expected_line(text: &str) -> Option<u32> {
    text.lines()
        .find_map(|l| l.strip_prefix("# expect-line: "))
        .map(|n| n.trim().parse().unwrap())
}

#[test]
fn every_rule_fires_on_its_bad_fixture_and_not_on_its_good_one() {
    for rule in RULES {
        let (text, found) = run(&fixture(rule.code, "bad"));
        let hits: Vec<&Diagnostic> = found.iter().filter(|d| d.code == rule.code).collect();
        assert!(
            !hits.is_empty(),
            "{}: bad fixture did not produce it; got {found:#?}",
            rule.code
        );
        for d in &hits {
            assert_eq!(d.severity, rule.severity, "{}", rule.code);
            assert_eq!(
                d.istio_code.is_some(),
                rule.istio_code.is_some(),
                "{}: {d:?}",
                rule.code
            );
            let line = d.location.as_ref().map(|l| l.line).unwrap_or(0);
            assert!(
                line >= 1 && line as usize <= text.lines().count().max(1),
                "{}: line {line}",
                rule.code
            );
            assert!(
                !d.message.is_empty() && d.hint.as_deref().is_some_and(|h| !h.is_empty()),
                "{}",
                rule.code
            );
        }
        if let Some(line) = expected_line(&text) {
            assert!(
                hits.iter()
                    .any(|d| d.location.as_ref().map(|l| l.line) == Some(line)),
                "{}: expected line {line}, got {hits:#?}",
                rule.code
            );
        }
        let (_, found) = run(&fixture(rule.code, "good"));
        assert!(
            found.iter().all(|d| d.code != rule.code),
            "{}: good fixture produced it: {found:#?}",
            rule.code
        );
    }
}

#[test]
fn good_fixtures_of_validation_rules_are_clean() {
    for rule in RULES.iter().filter(|r| {
        r.code.starts_with("input-") || r.code.starts_with("pa-api") || r.code.starts_with("dr-api")
    }) {
        let (_, found) = run(&fixture(rule.code, "good"));
        assert!(found.is_empty(), "{}: {found:#?}", rule.code);
    }
}

#[test]
fn every_code_any_fixture_produces_is_a_documented_rule() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rules");
    let mut seen = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let (_, found) = run(&entry.unwrap().path());
        for d in found {
            assert!(
                Rule::find(&d.code).is_some(),
                "undocumented code {}",
                d.code
            );
            seen.insert(d.code);
        }
    }
    assert_eq!(seen.len(), RULES.len(), "every rule is exercised");
}

#[test]
fn the_readme_documents_every_rule() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    for rule in RULES {
        assert!(
            readme.contains(&format!("`{}`", rule.code)),
            "README.md lacks `{}`",
            rule.code
        );
    }
}
