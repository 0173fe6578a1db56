//! The command line itself: clap's own consistency checks and usage errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use clap::CommandFactory;
use common::peerauth;
use peerauth_cli::cli::Cli;

#[test]
fn the_clap_definition_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["describe", "foo/httpbin"][..],
        &["check"],
        &[
            "matrix",
            "-f",
            "manifests",
            "--client-label",
            "no-equals-sign",
        ],
        &["frobnicate"],
    ] {
        let out = peerauth(args);
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(out.stderr.starts_with("error:"), "{args:?}: {}", out.stderr);
    }
}

#[test]
fn help_mentions_every_command_and_the_exit_codes() {
    let out = peerauth(&["--help"]);
    assert_eq!(out.code, 0);
    for word in ["check", "describe", "matrix", "Exit codes"] {
        assert!(out.stdout.contains(word), "{word}: {}", out.stdout);
    }
}

#[test]
fn every_schema_code_is_an_error_rule_and_every_input_rule_exits_2() {
    // Exit 2 is for documents the API server refuses by their structure (unknown
    // enum values, wrong apiVersion, no name); Istio's semantic admission rules
    // (also IST0106) are findings a pipeline reports with exit 1.
    for code in peerauth_cli::SCHEMA_CODES {
        let rule = policy::diagnostic::Rule::find(code)
            .unwrap_or_else(|| panic!("{code} is not a policy rule"));
        assert_eq!(rule.severity, policy::Severity::Error, "{code}");
        assert_ne!(
            rule.istio_code,
            Some("IST0133"),
            "{code} is only a warning in istioctl"
        );
    }
    for rule in policy::diagnostic::RULES {
        if rule.code.starts_with("input-") {
            assert!(
                peerauth_cli::is_input_error(&rule.diagnostic("x", "y")),
                "{} should exit 2",
                rule.code
            );
        }
    }
}
