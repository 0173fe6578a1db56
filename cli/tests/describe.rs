//! `peerauth describe`: effective mode per container port, the deciding policies,
//! and the policies istiod ignores, read back from `--json`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{json, peerauth, snapshot, step_files};
use peerauth_cli::json::{DescribeDocument, IgnoreReason, Level, VERSION};
use policy::MtlsMode;

fn describe(workload: &str, extra: &[&str], files: &[String]) -> (i32, DescribeDocument) {
    let mut args: Vec<&str> = vec!["describe", workload];
    args.extend(extra);
    args.extend(files.iter().map(String::as_str));
    json(&args)
}

#[test]
fn port_level_disable_applies_to_the_container_port_of_httpbin_bar() {
    let (code, doc) = describe("bar/httpbin", &[], &step_files("5-port-level-disable"));
    assert_eq!(code, 0);
    assert_eq!(doc.version, VERSION);
    let [w] = doc.workloads.as_slice() else {
        panic!("one workload: {:?}", doc.workloads)
    };
    assert!(w.sidecar);
    assert_eq!(w.workload.mode, MtlsMode::Strict);
    assert_eq!(w.workload.decided_at, Level::Workload);
    assert_eq!(
        w.workload.decided_by.as_ref().map(|p| p.name.as_str()),
        Some("httpbin")
    );
    let ports: Vec<(u32, MtlsMode, Level)> = w
        .ports
        .iter()
        .map(|p| (p.port, p.resolution.mode, p.resolution.decided_at))
        .collect();
    assert_eq!(ports, vec![(80, MtlsMode::Disable, Level::Port)]);
    let applied = w
        .applied
        .iter()
        .map(|p| format!("{}.{}", p.name, p.namespace))
        .collect::<Vec<_>>();
    assert_eq!(applied, vec!["httpbin.bar"]);
    assert_eq!(
        w.applied[0].file,
        "manifests/steps/5-port-level-disable/peer-authentication.yaml"
    );
    assert!(w.ignored.is_empty(), "{:?}", w.ignored);
}

#[test]
fn a_namespace_and_label_selector_find_the_same_workload_as_its_name() {
    let (_, by_name) = describe("foo/httpbin", &[], &step_files("3-namespace-strict"));
    let (code, by_label) = describe(
        "foo",
        &["-l", "app=httpbin"],
        &step_files("3-namespace-strict"),
    );
    assert_eq!(code, 0);
    assert_eq!(by_label.workloads, by_name.workloads);
    let w = &by_label.workloads[0];
    assert_eq!(
        (w.workload.mode, w.workload.decided_at),
        (MtlsMode::Strict, Level::Namespace)
    );
}

#[test]
fn mesh_strict_is_inherited_through_empty_namespace_and_workload_levels() {
    let (code, doc) = describe("foo/sleep", &[], &step_files("2-mesh-strict"));
    assert_eq!(code, 0);
    let w = &doc.workloads[0];
    assert_eq!(
        (w.workload.mode, w.workload.decided_at),
        (MtlsMode::Strict, Level::Mesh)
    );
    let by = w.workload.decided_by.as_ref().unwrap();
    assert_eq!(
        (by.namespace.as_str(), by.name.as_str()),
        ("istio-system", "default")
    );
    // sleep declares no containerPort; its Service's target port 80 is still served.
    let ports: Vec<(u32, MtlsMode, Level)> = w
        .ports
        .iter()
        .map(|p| (p.port, p.resolution.mode, p.resolution.decided_at))
        .collect();
    assert_eq!(ports, vec![(80, MtlsMode::Strict, Level::Mesh)]);
}

#[test]
fn a_workload_without_policies_gets_istios_permissive_default() {
    let (code, doc) = describe("legacy/httpbin", &[], &step_files("1-no-policy"));
    assert_eq!(code, 0);
    let w = &doc.workloads[0];
    assert!(!w.sidecar, "namespace legacy has no istio-injection label");
    assert_eq!(
        (w.workload.mode, w.workload.decided_at),
        (MtlsMode::Permissive, Level::Default)
    );
    assert!(w.applied.is_empty());
}

#[test]
fn ignored_policies_are_listed_with_their_reason_and_exit_1() {
    let files = [
        "-f".to_string(),
        "manifests/workloads".into(),
        "-f".into(),
        "cli/tests/fixtures/ignored".into(),
    ];
    let (code, doc) = describe("foo/httpbin", &[], &files);
    assert_eq!(code, 1, "ignored policies are findings");
    let w = &doc.workloads[0];
    assert_eq!(
        w.workload.mode,
        MtlsMode::Strict,
        "the older namespace-wide STRICT wins"
    );
    assert_eq!(
        w.workload.decided_by.as_ref().map(|p| p.name.as_str()),
        Some("default")
    );
    let mut reasons: Vec<(String, IgnoreReason)> = w
        .ignored
        .iter()
        .map(|i| {
            (
                format!("{}.{}", i.policy.name, i.policy.namespace),
                i.reason,
            )
        })
        .collect();
    reasons.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        reasons,
        vec![
            (
                "httpbin-everywhere.istio-system".to_string(),
                IgnoreReason::SelectorInRootNamespace
            ),
            ("permissive.foo".to_string(), IgnoreReason::NewerThanWinner),
        ]
    );
    let newer = w
        .ignored
        .iter()
        .find(|i| i.reason == IgnoreReason::NewerThanWinner)
        .unwrap();
    assert_eq!(
        newer.winner.as_ref().map(|p| p.name.as_str()),
        Some("default")
    );
    assert!(newer.policy.line > 0, "the ignored policy's line is known");
}

#[test]
fn an_unknown_workload_is_bad_input_and_the_known_ones_are_listed() {
    let out = peerauth(&["describe", "foo/nope", "-f", "manifests/workloads"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("foo/nope"), "{}", out.stderr);
    assert!(
        out.stderr.contains("httpbin, sleep") || out.stderr.contains("sleep, httpbin"),
        "{}",
        out.stderr
    );
    let (code, doc) = describe(
        "foo/nope",
        &[],
        &["-f".into(), "manifests/workloads".into()],
    );
    assert_eq!(code, 2);
    assert!(doc.workloads.is_empty());
    assert!(doc
        .diagnostics
        .iter()
        .any(|d| d.code == "input-no-such-workload" && d.input_error));
}

#[test]
fn human_describe_of_the_ignored_fixture_matches_its_snapshot() {
    let out = peerauth(&[
        "describe",
        "foo",
        "-l",
        "app=httpbin",
        "-f",
        "manifests/workloads",
        "-f",
        "cli/tests/fixtures/ignored",
    ]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    snapshot("describe-ignored.txt", &out.stdout);
}

#[test]
fn a_bare_namespace_describes_each_of_its_workloads_in_name_order() {
    let (code, doc) = describe("bar", &[], &step_files("4-workload-strict"));
    assert_eq!(code, 0);
    let found: Vec<(&str, MtlsMode)> = doc
        .workloads
        .iter()
        .map(|w| (w.name.as_str(), w.workload.mode))
        .collect();
    assert_eq!(
        found,
        vec![
            ("httpbin", MtlsMode::Strict),
            ("sleep", MtlsMode::Permissive)
        ]
    );
}

#[test]
fn a_port_level_key_no_port_declares_is_applied_as_istiod_does_and_exits_0() {
    // Step 5 keyed by the Service port (8000) instead of the container port (80).
    let dir = common::scratch("describe-undeclared");
    let wrong = std::fs::read_to_string(
        common::root().join("manifests/steps/5-port-level-disable/peer-authentication.yaml"),
    )
    .unwrap()
    .replace("    80:\n", "    8000:\n");
    let path = dir.join("peer-authentication.yaml");
    std::fs::write(&path, wrong).unwrap();
    let files: Vec<String> = vec![
        "-f".into(),
        "manifests/workloads".into(),
        "-f".into(),
        path.display().to_string(),
    ];
    let (code, doc) = describe("bar/httpbin", &[], &files);
    // istiod builds a passthrough chain for 8000 with DISABLE
    // (authentication.go ForPassthrough): nothing is ignored.
    assert_eq!(code, 0);
    let w = &doc.workloads[0];
    assert!(w.ignored.is_empty(), "{:#?}", w.ignored);
    let ports: Vec<(u32, MtlsMode, Level)> = w
        .ports
        .iter()
        .map(|p| (p.port, p.resolution.mode, p.resolution.decided_at))
        .collect();
    assert_eq!(
        ports,
        [
            (80, MtlsMode::Strict, Level::Workload),
            (8000, MtlsMode::Disable, Level::Port)
        ]
    );
    let undeclared: Vec<(u32, bool)> = w.ports.iter().map(|p| (p.port, p.undeclared)).collect();
    assert_eq!(undeclared, [(80, false), (8000, true)]);
    let mut args = vec!["describe", "bar/httpbin"];
    args.extend(files.iter().map(String::as_str));
    let text = common::peerauth(&args).stdout;
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("8000:"))
        .unwrap_or_else(|| panic!("no port 8000 line in:\n{text}"));
    assert!(line.contains("DISABLE"), "{line}");
    assert!(
        line.contains("no container or Service port declares it"),
        "{line}"
    );
    let line80 = text
        .lines()
        .find(|l| l.trim_start().starts_with("80:"))
        .unwrap();
    assert!(!line80.contains("declares"), "{line80}");
}
