//! `peerauth check` on the seed lab and on bad input, read back from `--json`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{json, peerauth, peerauth_with_stdin, scratch, snapshot};
use peerauth_cli::json::{CheckDocument, VERSION};
use policy::Severity;

fn check(args: &[&str]) -> (i32, CheckDocument) {
    let mut all = vec!["check"];
    all.extend(args);
    json(&all)
}

#[test]
fn the_seed_lab_workloads_alone_are_clean() {
    let (code, doc) = check(&["manifests/workloads"]);
    assert_eq!(code, 0, "{:?}", doc.diagnostics);
    assert_eq!(doc.version, VERSION);
    assert_eq!(doc.command, "check");
    assert_eq!(
        doc.inputs.files,
        vec![
            "manifests/workloads/bar.yaml",
            "manifests/workloads/foo.yaml",
            "manifests/workloads/legacy.yaml"
        ]
    );
    // 3 Namespaces, 6 Services, 6 Deployments; the 6 ServiceAccounts are skipped kinds.
    assert_eq!(doc.inputs.resources, 15);
    assert_eq!(doc.inputs.skipped_documents.len(), 6);
    assert!(doc
        .inputs
        .skipped_documents
        .iter()
        .all(|s| s.kind == "ServiceAccount" && s.line > 0));
}

#[test]
fn folders_are_read_recursively_in_sorted_order_and_other_files_are_counted() {
    let (_, doc) = check(&["manifests/"]);
    let files = &doc.inputs.files;
    let mut sorted = files.clone();
    sorted.sort();
    assert_eq!(files, &sorted);
    assert!(files
        .iter()
        .any(|f| f.ends_with("steps/6-precedence/peer-authentication.yaml")));
    // The lab's documented results (manifests/lab/seed-lab.json) are JSON.
    assert!(files
        .iter()
        .all(|f| f.ends_with(".yaml") || f.ends_with(".json")));
    assert!(
        doc.inputs
            .skipped_files
            .iter()
            .any(|f| f.ends_with("1-no-policy/README.md")),
        "{:?}",
        doc.inputs.skipped_files
    );
}

#[test]
fn every_step_of_the_seed_lab_passes_validation() {
    for step in [
        "2-mesh-strict",
        "3-namespace-strict",
        "4-workload-strict",
        "5-port-level-disable",
        "6-precedence",
    ] {
        let path = format!("manifests/steps/{step}");
        let (code, doc) = check(&["manifests/workloads", &path]);
        assert!(code <= 1, "{step}: {code}");
        assert_eq!(doc.summary.input_errors, 0, "{step}: {:?}", doc.diagnostics);
        // Istio accepts every step; anything reported is cross-resource analysis.
        for d in &doc.diagnostics {
            assert!(
                !d.code.starts_with("pa-port-level") && !d.code.starts_with("input-"),
                "{step}: {d:?}"
            );
        }
    }
}

#[test]
fn mesh_strict_warns_about_the_legacy_clients_and_fails_only_with_strict() {
    // Step 2 breaks legacy on purpose, and offline we cannot know legacy really
    // calls those ports: a warning, which fails the run only with --strict.
    let (code, doc) = check(&["manifests/workloads", "manifests/steps/2-mesh-strict"]);
    assert_eq!(code, 0, "{:#?}", doc.diagnostics);
    let resets: Vec<_> = doc
        .diagnostics
        .iter()
        .filter(|d| d.code == "plaintext-client-to-strict")
        .collect();
    assert_eq!(resets.len(), 4, "{:#?}", doc.diagnostics);
    for d in resets {
        assert_eq!(d.severity, Severity::Warning);
        assert!(!d.input_error);
        assert!(d.message.contains("sleep.legacy"), "{}", d.message);
    }
    assert_eq!((doc.summary.errors, doc.summary.warnings), (0, 4));
    let (code, doc) = check(&[
        "manifests/workloads",
        "manifests/steps/2-mesh-strict",
        "--strict",
    ]);
    assert_eq!(code, 1);
    assert!(doc.strict);
}

#[test]
fn a_disabling_destination_rule_towards_strict_is_still_an_error() {
    let rule = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: plain\n  namespace: foo\nspec:\n  host: httpbin.bar.svc.cluster.local\n  trafficPolicy:\n    tls:\n      mode: DISABLE\n";
    let out = peerauth_with_stdin(
        &[
            "check",
            "manifests/workloads",
            "manifests/steps/2-mesh-strict",
            "-",
            "--json",
        ],
        rule,
    );
    let doc: CheckDocument = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(out.code, 1, "{:#?}", doc.diagnostics);
    let d = doc
        .diagnostics
        .iter()
        .find(|d| d.code == "dr-disable-to-strict")
        .expect("finding");
    assert_eq!(d.severity, Severity::Error);
    assert_eq!(d.file.as_deref(), Some("<stdin>"));
}

#[test]
fn checking_every_step_at_once_reports_redefined_resources_instead_of_self_conflicts() {
    // The seed lab's steps are alternative states of one cluster: together they
    // define bar/httpbin and foo/default more than once. (manifests/lab holds
    // more alternative states, the scenarios, so it is left out here.)
    let (code, doc) = check(&["manifests/steps/", "manifests/workloads/"]);
    let duplicates: Vec<_> = doc
        .diagnostics
        .iter()
        .filter(|d| d.code == "resource-duplicate")
        .collect();
    let named: Vec<String> = duplicates
        .iter()
        .map(|d| {
            let r = d.resource.as_ref().unwrap();
            format!("{} {}/{}", r.kind, r.namespace, r.name)
        })
        .collect();
    assert_eq!(
        named,
        [
            "DestinationRule bar/httpbin",
            "PeerAuthentication bar/httpbin",
            "PeerAuthentication foo/default"
        ],
        "{:#?}",
        doc.diagnostics
    );
    for d in &duplicates {
        assert_eq!(d.severity, Severity::Warning);
        // Both places, file:line, and what kubectl would do.
        let places = d.message.matches("manifests/steps/").count();
        assert_eq!(places, 2, "{}", d.message);
        assert!(d.message.contains("kubectl apply"), "{}", d.message);
        assert!(
            d.hint
                .as_deref()
                .is_some_and(|h| h.contains("one folder per run")),
            "{d:?}"
        );
    }
    let foo_default = duplicates[2];
    assert!(
        foo_default.message.contains(
            "at manifests/steps/3-namespace-strict/peer-authentication.yaml:2 and again at manifests/steps/6-precedence/peer-authentication.yaml:3"
        ),
        "{}",
        foo_default.message
    );
    assert_eq!(
        foo_default.file.as_deref(),
        Some("manifests/steps/6-precedence/peer-authentication.yaml")
    );
    // No finding compares a resource with another definition of itself.
    for d in &doc.diagnostics {
        assert!(!d.code.starts_with("pa-several-"), "{d:#?}");
    }
    assert_eq!(code, 0, "only warnings: {:#?}", doc.diagnostics);
}

#[test]
fn warnings_fail_only_with_strict() {
    // A root-namespace policy with a selector: accepted by Istio, ignored by istiod.
    let text = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: sel\n  namespace: istio-system\nspec:\n  selector:\n    matchLabels:\n      app: x\n  mtls:\n    mode: PERMISSIVE\n";
    let out = peerauth_with_stdin(&["check", "-", "--json"], text);
    let doc: CheckDocument = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(doc.inputs.files, vec!["<stdin>"]);
    assert!(
        doc.summary.warnings > 0 && doc.summary.errors == 0,
        "{:?}",
        doc.diagnostics
    );
    assert_eq!(out.code, 0);
    let strict = peerauth_with_stdin(&["check", "-", "--strict"], text);
    assert_eq!(strict.code, 1, "{}", strict.stdout);
    assert!(strict.stdout.contains("<stdin>:"), "{}", strict.stdout);
}

#[test]
fn bad_inputs_exit_2_with_file_and_line_and_the_other_files_are_still_checked() {
    let (code, doc) = check(&[
        "cli/tests/fixtures/bad",
        "cli/tests/fixtures/does-not-exist.yaml",
    ]);
    assert_eq!(code, 2, "{:#?}", doc.diagnostics);
    let find = |file: &str| {
        doc.diagnostics
            .iter()
            .find(|d| {
                d.file.as_deref().is_some_and(|f| f.ends_with(file))
                    && d.severity == Severity::Error
            })
            .unwrap_or_else(|| panic!("no error for {file}: {:#?}", doc.diagnostics))
    };
    for (file, line) in [
        ("invalid-yaml.yaml", None),
        ("yaml-bomb.yaml", None),
        ("unknown-mode.yaml", Some(9)),
        ("no-kind.yaml", Some(7)),
    ] {
        let d = find(file);
        assert!(d.input_error, "{file}: {d:?}");
        assert!(d.line.is_some_and(|l| l > 0), "{file} has a line: {d:?}");
        if let Some(line) = line {
            assert_eq!(d.line, Some(line), "{file}: {d:?}");
        }
    }
    assert_eq!(find("unknown-mode.yaml").code, "pa-unknown-mode");
    assert!(find("unknown-mode.yaml").message.contains("STRICTER"));
    assert_eq!(find("no-kind.yaml").code, "input-missing-kind");
    let missing = find("does-not-exist.yaml");
    assert_eq!(missing.code, "input-unreadable");
    assert!(missing.message.contains("no such file"), "{missing:?}");
    // The valid file next to the broken ones is still validated.
    let other = find("valid-with-error.yaml");
    assert_eq!(other.code, "pa-port-level-without-selector");
    assert!(!other.input_error);
    // The Namespace before the kind-less document is still read.
    assert!(doc.inputs.resources >= 1);
}

#[test]
fn a_file_that_is_not_utf8_is_reported_with_its_line() {
    let dir = scratch("not-utf8");
    let path = dir.join("latin1.yaml");
    std::fs::write(
        &path,
        b"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: caf\xe9\n",
    )
    .unwrap();
    let (code, doc) = check(&[path.to_str().unwrap(), "manifests/workloads/foo.yaml"]);
    assert_eq!(code, 2);
    let d = &doc.diagnostics[0];
    assert_eq!((d.code.as_str(), d.line), ("input-not-utf8", Some(4)));
    assert_eq!(doc.inputs.files, vec!["manifests/workloads/foo.yaml"]);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn human_output_names_file_line_and_code_like_a_compiler() {
    let out = peerauth(&["check", "cli/tests/fixtures/bad/unknown-mode.yaml"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stdout
            .contains("cli/tests/fixtures/bad/unknown-mode.yaml:9: error[pa-unknown-mode]:"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("  = hint: "), "{}", out.stdout);
}

#[test]
fn human_check_of_the_bad_fixtures_matches_its_snapshot() {
    let out = peerauth(&["check", "cli/tests/fixtures/bad"]);
    assert_eq!(out.code, 2);
    snapshot("check-bad.txt", &out.stdout);
}

#[test]
fn human_check_of_the_mesh_strict_step_matches_its_snapshot() {
    let out = peerauth(&[
        "check",
        "manifests/workloads",
        "manifests/steps/2-mesh-strict",
    ]);
    snapshot(
        "check-2-mesh-strict.txt",
        &format!("exit {}\n{}", out.code, out.stdout),
    );
}

#[test]
fn a_folder_without_manifests_is_bad_input_not_a_green_build() {
    let dir = scratch("empty");
    std::fs::write(dir.join("notes.txt"), "not a manifest").unwrap();
    let (code, doc) = check(&[dir.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert_eq!(doc.inputs.skipped_files.len(), 1);
    assert_eq!(doc.diagnostics[0].code, "input-no-files");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_port_key_with_blanks_a_sign_or_a_leading_zero_is_an_error_naming_its_line() {
    // The API server's CEL rule refuses " 8080"; istiod cannot decode "+8080"
    // or "08080". Before, each was read as port 8080.
    for key in [" 8080", "+8080", "08080"] {
        let text = format!(
            "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: p\n  namespace: foo\nspec:\n  selector:\n    matchLabels:\n      app: x\n  portLevelMtls:\n    \"{key}\":\n      mode: DISABLE\n"
        );
        let out = peerauth_with_stdin(&["check", "-", "--json"], &text);
        let doc: CheckDocument = serde_json::from_str(&out.stdout).unwrap();
        let d = doc
            .diagnostics
            .iter()
            .find(|d| d.code == "pa-port-out-of-range")
            .unwrap_or_else(|| panic!("{key:?}: {:#?}", doc.diagnostics));
        assert_eq!(d.severity, Severity::Error);
        assert_eq!(d.line, Some(11), "{key:?}");
        assert!(d.message.contains("plain decimal number"), "{}", d.message);
        assert_eq!(out.code, 1, "{key:?}: {}", out.stdout);
    }
}
