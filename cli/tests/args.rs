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
