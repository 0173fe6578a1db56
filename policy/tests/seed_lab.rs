//! The seed lab: namespaces `foo` and `bar` (sidecars) and `legacy` (none),
//! each with `sleep` and `httpbin`, through the six policy steps of
//! `manifests/steps/`. The expected grids are written out by hand from each
//! step's description (which `curl` returns 200 and which is reset), not
//! computed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use policy::reach::{Cell, Outcome};
use policy::resolve::Level;
use policy::{check, MeshConfig, MtlsMode, Report, Severity};

const FOO: &str = include_str!("../../manifests/workloads/foo.yaml");
const BAR: &str = include_str!("../../manifests/workloads/bar.yaml");
const LEGACY: &str = include_str!("../../manifests/workloads/legacy.yaml");

const STEP2_PA: &str = include_str!("../../manifests/steps/2-mesh-strict/peer-authentication.yaml");
const STEP3_PA: &str =
    include_str!("../../manifests/steps/3-namespace-strict/peer-authentication.yaml");
const STEP4_PA: &str =
    include_str!("../../manifests/steps/4-workload-strict/peer-authentication.yaml");
const STEP4_DR: &str =
    include_str!("../../manifests/steps/4-workload-strict/destination-rule.yaml");
const STEP5_PA: &str =
    include_str!("../../manifests/steps/5-port-level-disable/peer-authentication.yaml");
const STEP5_DR: &str =
    include_str!("../../manifests/steps/5-port-level-disable/destination-rule.yaml");
const STEP6_PA: &str = include_str!("../../manifests/steps/6-precedence/peer-authentication.yaml");
const STEP6_DR: &str = include_str!("../../manifests/steps/6-precedence/destination-rule.yaml");

const NAMESPACES: [&str; 3] = ["foo", "bar", "legacy"];

/// One expected cell: `A` = 200 over mTLS, `P` = 200 in plaintext, `R` = reset.
/// Rows are `sleep.foo`, `sleep.bar`, `sleep.legacy`; columns `httpbin.foo`, `httpbin.bar`, `httpbin.legacy`.
type Grid = [[char; 3]; 3];

fn run_step(step: &[(&str, &str)]) -> Vec<Cell> {
    report(step).mesh.matrix().cells
}

fn report(step: &[(&str, &str)]) -> Report {
    let mut sources = vec![
        ("foo.yaml", FOO),
        ("bar.yaml", BAR),
        ("legacy.yaml", LEGACY),
    ];
    sources.extend_from_slice(step);
    let report = check(&sources, MeshConfig::default());
    let errors: Vec<_> = report
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error && d.code.starts_with("input-"))
        .collect();
    assert!(errors.is_empty(), "the manifests load cleanly: {errors:#?}");
    report
}

fn assert_grid(step: &str, cells: &[Cell], expected: Grid) {
    for (row, client_ns) in NAMESPACES.iter().enumerate() {
        for (col, server_ns) in NAMESPACES.iter().enumerate() {
            let cell = cells
                .iter()
                .find(|c| {
                    c.client == "sleep"
                        && c.client_namespace == *client_ns
                        && c.service == "httpbin"
                        && c.service_namespace == *server_ns
                        && c.service_port == 8000
                })
                .unwrap_or_else(|| {
                    panic!("{step}: no cell sleep.{client_ns} -> httpbin.{server_ns}:8000")
                });
            let got = match (cell.outcome, cell.mtls) {
                (Outcome::Allowed, true) => 'A',
                (Outcome::Allowed, false) => 'P',
                (Outcome::Reset, _) => 'R',
                (Outcome::Failed, _) => 'F',
            };
            assert_eq!(
                got, expected[row][col],
                "{step}: sleep.{client_ns} -> httpbin.{server_ns}: {}",
                cell.explanation
            );
            assert_eq!(
                cell.target_port, 80,
                "{step}: httpbin's Service port 8000 targets container port 80"
            );
        }
    }
}

#[test]
fn step_1_without_policy_everything_succeeds_and_only_sidecar_pairs_use_mtls() {
    let cells = run_step(&[]);
    assert_grid(
        "step 1",
        &cells,
        [['A', 'A', 'P'], ['A', 'A', 'P'], ['P', 'P', 'P']],
    );
}

#[test]
fn step_2_mesh_wide_strict_resets_the_legacy_client_towards_sidecars() {
    let cells = run_step(&[("2.yaml", STEP2_PA)]);
    assert_grid(
        "step 2",
        &cells,
        [['A', 'A', 'P'], ['A', 'A', 'P'], ['R', 'R', 'P']],
    );
}

#[test]
fn step_3_namespace_strict_in_foo_only_resets_legacy_to_foo() {
    let cells = run_step(&[("3.yaml", STEP3_PA)]);
    assert_grid(
        "step 3",
        &cells,
        [['A', 'A', 'P'], ['A', 'A', 'P'], ['R', 'P', 'P']],
    );
}

#[test]
fn step_4_workload_strict_in_bar_only_resets_legacy_to_bar() {
    let cells = run_step(&[("4-pa.yaml", STEP4_PA), ("4-dr.yaml", STEP4_DR)]);
    assert_grid(
        "step 4",
        &cells,
        [['A', 'A', 'P'], ['A', 'A', 'P'], ['P', 'R', 'P']],
    );
}

#[test]
fn step_5_port_level_disable_lets_everyone_in_without_mtls_to_bar() {
    let cells = run_step(&[("5-pa.yaml", STEP5_PA), ("5-dr.yaml", STEP5_DR)]);
    assert_grid(
        "step 5",
        &cells,
        [['A', 'P', 'P'], ['A', 'P', 'P'], ['P', 'P', 'P']],
    );
}

#[test]
fn step_6_workload_disable_overrides_namespace_strict() {
    let cells = run_step(&[("6-pa.yaml", STEP6_PA), ("6-dr.yaml", STEP6_DR)]);
    assert_grid(
        "step 6",
        &cells,
        [['P', 'A', 'P'], ['P', 'A', 'P'], ['P', 'P', 'P']],
    );
}

#[test]
fn step_1_has_no_findings_and_every_workload_is_permissive_by_default() {
    let report = report(&[]);
    assert!(report.diagnostics.is_empty(), "{:#?}", report.diagnostics);
    for w in &report.mesh.workloads {
        let d = report.mesh.describe(w);
        assert_eq!(
            (d.workload.mode, d.workload.decided_at),
            (MtlsMode::Permissive, Level::Default)
        );
        assert_eq!(
            d.sidecar,
            w.namespace != "legacy",
            "{}.{}",
            w.name,
            w.namespace
        );
    }
    // ServiceAccounts are read and skipped, not errors.
    assert_eq!(
        report
            .skipped
            .iter()
            .filter(|s| s.kind == "ServiceAccount")
            .count(),
        6
    );
}

#[test]
fn step_2_names_the_legacy_clients_that_will_be_reset_at_the_mode_line() {
    let report = report(&[("2.yaml", STEP2_PA)]);
    let resets: Vec<_> = report
        .diagnostics
        .iter()
        .filter(|d| d.code == "plaintext-client-to-strict")
        .collect();
    let to_httpbin_foo = resets
        .iter()
        .find(|d| d.message.contains("httpbin.foo:8000"))
        .unwrap();
    assert!(
        to_httpbin_foo.message.contains("sleep.legacy"),
        "{}",
        to_httpbin_foo.message
    );
    assert!(
        !to_httpbin_foo.message.contains("sleep.foo"),
        "{}",
        to_httpbin_foo.message
    );
    // Offline we cannot know legacy really calls these ports, and step 2 breaks
    // legacy on purpose: a warning, so the step itself has no error.
    assert!(resets.iter().all(|d| d.severity == Severity::Warning));
    assert!(
        report
            .diagnostics
            .iter()
            .all(|d| d.severity != Severity::Error),
        "{:#?}",
        report.diagnostics
    );
    let location = to_httpbin_foo.location.as_ref().unwrap();
    assert_eq!(
        (location.source.as_str(), location.line),
        ("2.yaml", 10),
        "the `mode: STRICT` line"
    );
    assert_eq!(
        to_httpbin_foo.resource.as_ref().unwrap().namespace,
        "istio-system"
    );
}

#[test]
fn step_4_describe_shows_the_workload_policy() {
    let report = report(&[("4-pa.yaml", STEP4_PA), ("4-dr.yaml", STEP4_DR)]);
    let httpbin = report
        .mesh
        .workloads
        .iter()
        .find(|w| w.name == "httpbin" && w.namespace == "bar")
        .unwrap();
    let d = report.mesh.describe(httpbin);
    assert_eq!(
        (d.workload.mode, d.workload.decided_at),
        (MtlsMode::Strict, Level::Workload)
    );
    // The applied policy is bar/httpbin (the step's workload policy), decided at workload level.
    let applied: Vec<String> = d.workload.applied().iter().map(|p| p.to_string()).collect();
    assert!(applied.contains(&"httpbin.bar".to_string()), "{applied:?}");
    let last = d.workload.steps.last().unwrap();
    assert_eq!(
        (last.level, last.policy.as_ref().map(|p| p.name.as_str())),
        (Level::Workload, Some("httpbin"))
    );
    assert!(
        !report.diagnostics.iter().any(|d| d.code.starts_with("dr-")),
        "{:#?}",
        report.diagnostics
    );
}

#[test]
fn step_5_describe_shows_port_80_disabled_under_a_strict_workload() {
    let report = report(&[("5-pa.yaml", STEP5_PA), ("5-dr.yaml", STEP5_DR)]);
    let httpbin = report
        .mesh
        .workloads
        .iter()
        .find(|w| w.name == "httpbin" && w.namespace == "bar")
        .unwrap();
    let d = report.mesh.describe(httpbin);
    assert_eq!(d.workload.mode, MtlsMode::Strict);
    let port80 = &d.ports[&80];
    assert_eq!(
        (port80.mode, port80.decided_at),
        (MtlsMode::Disable, Level::Port)
    );
    let step = port80.steps.last().unwrap();
    assert_eq!(
        (step.level, step.declared, step.effective),
        (Level::Port, MtlsMode::Disable, MtlsMode::Disable)
    );
    assert!(report.diagnostics.is_empty(), "{:#?}", report.diagnostics);
}

#[test]
fn keying_step_5_by_the_service_port_is_flagged_and_changes_nothing() {
    let wrong = STEP5_PA.replace("    80:\n", "    8000:\n");
    assert_ne!(wrong, STEP5_PA);
    let report = report(&[("5-pa.yaml", &wrong), ("5-dr.yaml", STEP5_DR)]);
    let finding = report
        .diagnostics
        .iter()
        .find(|d| d.code == "pa-port-is-service-port")
        .unwrap();
    assert!(
        finding.hint.as_deref().unwrap().contains("use 80"),
        "{finding:?}"
    );
    let httpbin = report
        .mesh
        .workloads
        .iter()
        .find(|w| w.name == "httpbin" && w.namespace == "bar")
        .unwrap();
    let d = report.mesh.describe(httpbin);
    assert_eq!(d.ports[&80].mode, MtlsMode::Strict);
    // istiod does not ignore the 8000 key: it builds a passthrough chain for
    // container port 8000 with DISABLE (authentication.go ForPassthrough),
    // which only traffic to the pod's IP on 8000 would reach. So describe
    // lists it as an undeclared port with its mode, not as ignored.
    assert_eq!(
        d.undeclared_ports.iter().copied().collect::<Vec<_>>(),
        [8000]
    );
    assert_eq!(d.ports[&8000].mode, MtlsMode::Disable);
    assert_eq!(d.ports[&8000].decided_at, Level::Port);
    assert!(d.workload.ignored.is_empty(), "{:#?}", d.workload.ignored);
    // Sidecar clients now send plaintext (DR DISABLE on 8000) into a STRICT port 80.
    assert!(report
        .diagnostics
        .iter()
        .any(|d| d.code == "dr-disable-to-strict"));
}

#[test]
fn step_6_describe_lists_both_policies_and_the_workload_decides() {
    let report = report(&[("6-pa.yaml", STEP6_PA), ("6-dr.yaml", STEP6_DR)]);
    let httpbin = report
        .mesh
        .workloads
        .iter()
        .find(|w| w.name == "httpbin" && w.namespace == "foo")
        .unwrap();
    let d = report.mesh.describe(httpbin);
    assert_eq!(
        (d.workload.mode, d.workload.decided_at),
        (MtlsMode::Disable, Level::Workload)
    );
    let applied: Vec<String> = d.workload.applied().iter().map(|p| p.to_string()).collect();
    assert_eq!(applied, ["default.foo", "httpbin.foo"]);
}

#[test]
fn diagnostics_are_sorted_by_source_then_line() {
    let report = report(&[("2.yaml", STEP2_PA), ("3.yaml", STEP3_PA)]);
    let keys: Vec<_> = report
        .diagnostics
        .iter()
        .map(|d| {
            let l = d.location.clone().unwrap_or_default();
            (l.source, l.line, d.code.clone())
        })
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    assert!(keys.len() >= 2);
}

#[test]
fn all_steps_at_once_report_each_redefined_resource_and_keep_the_last_definition() {
    let report = report(&[
        ("2/pa.yaml", STEP2_PA),
        ("3/pa.yaml", STEP3_PA),
        ("4/pa.yaml", STEP4_PA),
        ("4/dr.yaml", STEP4_DR),
        ("5/pa.yaml", STEP5_PA),
        ("5/dr.yaml", STEP5_DR),
        ("6/pa.yaml", STEP6_PA),
        ("6/dr.yaml", STEP6_DR),
    ]);
    let mut duplicates: Vec<(String, &str)> = report
        .diagnostics
        .iter()
        .filter(|d| d.code == "resource-duplicate")
        .map(|d| {
            let r = d.resource.as_ref().unwrap();
            let at = d.location.as_ref().unwrap().source.as_str();
            (format!("{} {}/{}", r.kind, r.namespace, r.name), at)
        })
        .collect();
    duplicates.sort();
    assert_eq!(
        duplicates,
        [
            ("DestinationRule bar/httpbin".to_string(), "5/dr.yaml"),
            ("PeerAuthentication bar/httpbin".to_string(), "5/pa.yaml"),
            ("PeerAuthentication foo/default".to_string(), "6/pa.yaml"),
        ]
    );
    // No rule compares a resource with its own other definition any more.
    for d in &report.diagnostics {
        assert!(
            !d.code.starts_with("pa-several-"),
            "a resource compared with itself: {d:#?}"
        );
    }
    let pa = |ns: &str, name: &str| {
        let found: Vec<_> = report
            .mesh
            .peer_authentications
            .iter()
            .filter(|p| p.namespace == ns && p.name == name)
            .collect();
        assert_eq!(found.len(), 1, "{ns}/{name}");
        found[0].location.source.clone()
    };
    assert_eq!(pa("bar", "httpbin"), "5/pa.yaml");
    assert_eq!(pa("foo", "default"), "6/pa.yaml");
    assert_eq!(pa("istio-system", "default"), "2/pa.yaml");
}
