//! Exit classes against `cli/README.md`'s "Exit codes" section, not against the
//! code that computes them: every rule (`policy`'s and the CLI's) must be bad
//! input (exit 2) exactly when the README lists it as such, and each rule's
//! failing fixture must make `peerauth check --strict` exit as the README says.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{json, root};
use peerauth_cli::json::CheckDocument;
use peerauth_cli::rules::CLI_RULES;
use policy::diagnostic::RULES;
use std::collections::BTreeSet;

fn readme() -> String {
    std::fs::read_to_string(root().join("cli/README.md")).unwrap()
}

/// The "## Exit codes" section, up to the next section.
fn exit_section(readme: &str) -> &str {
    let start = readme
        .find("\n## Exit codes\n")
        .expect("README has ## Exit codes");
    let rest = &readme[start + 4..];
    let end = rest.find("\n## ").unwrap_or(rest.len());
    &rest[..end]
}

/// The backquoted words of `text`.
fn quoted(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// The schema codes the README names as bad input besides the `input-` prefix:
/// the list after "sees the resource:", up to the end of that sentence.
fn readme_schema_codes(section: &str) -> BTreeSet<String> {
    let bad = section
        .find("**Bad input**")
        .expect("the section defines **Bad input**");
    let list = &section[bad..];
    let list = &list[list.find("resource:").expect("`resource:` before the list") + 9..];
    let list = &list[..list.find('.').expect("the list ends with a full stop")];
    let codes: BTreeSet<String> = quoted(list).into_iter().map(str::to_string).collect();
    assert!(
        codes.len() >= 6,
        "the README lists the schema codes: {codes:?}"
    );
    codes
}

/// The README says: bad input is a code starting with `input-` or a listed one.
fn readme_says_input(code: &str, schema: &BTreeSet<String>) -> bool {
    code.starts_with("input-") || schema.contains(code)
}

/// The codes of the table "Codes the CLI adds to `policy`'s".
fn readme_cli_codes(section: &str) -> BTreeSet<String> {
    let table = &section[section
        .find("Codes the CLI adds")
        .expect("the section lists the CLI's codes")..];
    table
        .lines()
        .filter(|l| l.starts_with("| `"))
        .filter_map(|l| quoted(l).first().map(|c| c.to_string()))
        .collect()
}

#[test]
fn every_policy_rule_declares_the_exit_class_the_readme_documents() {
    let schema = readme_schema_codes(exit_section(&readme()));
    for code in &schema {
        assert!(
            RULES.iter().any(|r| r.code == code),
            "the README lists {code}, which is no policy rule"
        );
    }
    for rule in RULES {
        let want = readme_says_input(rule.code, &schema);
        assert_eq!(rule.is_input(), want, "{}: declared class", rule.code);
        assert_eq!(
            peerauth_cli::is_input_error(&rule.diagnostic("m", "h")),
            want,
            "{}: the CLI's exit class",
            rule.code
        );
    }
}

#[test]
fn the_readme_table_of_cli_codes_is_the_cli_rules_and_all_are_bad_input() {
    let documented = readme_cli_codes(exit_section(&readme()));
    let declared: BTreeSet<String> = CLI_RULES.iter().map(|r| r.code.to_string()).collect();
    assert_eq!(documented, declared);
    for rule in CLI_RULES {
        assert!(rule.code.starts_with("input-"), "{}", rule.code);
        assert!(rule.is_input(), "{}", rule.code);
        assert!(
            peerauth_cli::is_input_error(&rule.diagnostic("m", "h")),
            "{}",
            rule.code
        );
        assert!(
            RULES.iter().all(|r| r.code != rule.code),
            "{} is also a policy rule",
            rule.code
        );
    }
}

#[test]
fn each_rules_failing_fixture_makes_check_exit_as_the_readme_says() {
    let schema = readme_schema_codes(exit_section(&readme()));
    let dir = root().join("policy/tests/fixtures/rules");
    let mut ran = 0;
    for rule in RULES {
        let Some(file) = ["yaml", "json"]
            .iter()
            .map(|ext| format!("policy/tests/fixtures/rules/{}.bad.{ext}", rule.code))
            .find(|f| root().join(f).exists())
        else {
            continue;
        };
        // The fixtures' own switch (see policy/tests/rules.rs) as the CLI's flag.
        let text = std::fs::read_to_string(root().join(&file)).unwrap();
        let mut args = vec!["check", "--strict", file.as_str()];
        if text.starts_with("# peerauth-test: auto-mtls=off") {
            args.push("--no-auto-mtls");
        }
        let (code, doc): (i32, CheckDocument) = json(&args);
        let codes: Vec<&str> = doc.diagnostics.iter().map(|d| d.code.as_str()).collect();
        assert!(codes.contains(&rule.code), "{file}: {codes:?}");
        // "Bad input wins"; otherwise with --strict any error or warning is a finding.
        let want = if codes.iter().any(|c| readme_says_input(c, &schema)) {
            2
        } else if doc
            .diagnostics
            .iter()
            .any(|d| d.severity != policy::Severity::Info)
        {
            1
        } else {
            0
        };
        assert_eq!(code, want, "{file}: {codes:?}");
        assert_eq!(i32::from(doc.exit_code), code, "{file}");
        if readme_says_input(rule.code, &schema) {
            assert_eq!(code, 2, "{file}: {} is bad input", rule.code);
        }
        for d in &doc.diagnostics {
            assert_eq!(
                d.input_error,
                readme_says_input(&d.code, &schema),
                "{file}: {}",
                d.code
            );
        }
        ran += 1;
    }
    assert!(dir.is_dir());
    assert_eq!(ran, RULES.len(), "every policy rule has a failing fixture");
}
