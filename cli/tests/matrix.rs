//! `peerauth matrix` on the seed lab: the `sleep.X → httpbin.Y` table of each step,
//! read back from `--json`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{json, peerauth, snapshot, step_files};
use peerauth_cli::json::{ClientReason, ClientTls, MatrixDocument, Outcome, VERSION};
use policy::MtlsMode;

/// `sleep.<client ns> → httpbin.<server ns>` → `200 mTLS` / `200 plain` / `reset` / `fail`.
fn table(step: &str) -> (i32, Vec<(String, String, &'static str)>, MatrixDocument) {
    let mut args: Vec<String> = vec!["matrix".into()];
    args.extend(step_files(step));
    args.extend([
        "--client-label".into(),
        "app=sleep".into(),
        "--server-label".into(),
        "app=httpbin".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, doc): (i32, MatrixDocument) = json(&args);
    let rows = doc
        .cells
        .iter()
        .map(|c| {
            assert_eq!(c.client.name, "sleep");
            assert_eq!(c.service.name, "httpbin");
            let text = match (c.outcome, c.mtls) {
                (Outcome::Allowed, true) => "200 mTLS",
                (Outcome::Allowed, false) => "200 plain",
                (Outcome::Reset, _) => "reset",
                (Outcome::Failed, _) => "fail",
            };
            (
                c.client.namespace.clone(),
                c.service.namespace.clone(),
                text,
            )
        })
        .collect();
    (code, rows, doc)
}

fn get<'a>(rows: &'a [(String, String, &'static str)], client: &str, server: &str) -> &'a str {
    rows.iter()
        .find(|(c, s, _)| c == client && s == server)
        .map(|(_, _, t)| *t)
        .unwrap_or_else(|| panic!("no cell sleep.{client} -> httpbin.{server} in {rows:?}"))
}

const NS: [&str; 3] = ["foo", "bar", "legacy"];

/// With no policy, sidecar pairs use auto mTLS and everything else is plaintext.
fn baseline(client: &str, server: &str) -> &'static str {
    if client != "legacy" && server != "legacy" {
        "200 mTLS"
    } else {
        "200 plain"
    }
}

fn assert_table(step: &str, expected: impl Fn(&str, &str) -> &'static str) -> MatrixDocument {
    let (code, rows, doc) = table(step);
    assert_eq!(
        rows.len(),
        9,
        "3 sleep clients × 3 httpbin services: {rows:?}"
    );
    for client in NS {
        for server in NS {
            assert_eq!(
                get(&rows, client, server),
                expected(client, server),
                "{step}: sleep.{client} -> httpbin.{server}"
            );
        }
    }
    let any_broken = rows.iter().any(|(_, _, t)| !t.starts_with("200"));
    assert_eq!(code, if any_broken { 1 } else { 0 }, "exit code of {step}");
    assert_eq!(doc.exit_code as i32, code);
    assert_eq!(doc.version, VERSION);
    doc
}

#[test]
fn with_no_policy_every_call_succeeds_and_only_sidecar_pairs_use_mtls() {
    let doc = assert_table("1-no-policy", baseline);
    let c = doc
        .cells
        .iter()
        .find(|c| c.client.namespace == "legacy")
        .unwrap();
    assert_eq!(c.client_tls, ClientTls::Plaintext);
    assert_eq!(c.client_reason, ClientReason::NoSidecar);
}

#[test]
fn mesh_strict_resets_the_legacy_client_towards_sidecar_servers() {
    assert_table("2-mesh-strict", |c, s| match (c, s) {
        ("legacy", "foo" | "bar") => "reset",
        _ => baseline(c, s),
    });
}

#[test]
fn namespace_strict_in_foo_resets_only_legacy_to_foo() {
    assert_table("3-namespace-strict", |c, s| match (c, s) {
        ("legacy", "foo") => "reset",
        _ => baseline(c, s),
    });
}

#[test]
fn workload_strict_on_httpbin_bar_resets_only_legacy_to_bar() {
    let doc = assert_table("4-workload-strict", |c, s| match (c, s) {
        ("legacy", "bar") => "reset",
        _ => baseline(c, s),
    });
    let to_bar = doc
        .cells
        .iter()
        .find(|c| c.client.namespace == "foo" && c.service.namespace == "bar")
        .unwrap();
    assert_eq!(to_bar.server_mode, MtlsMode::Strict);
    assert!(
        matches!(&to_bar.client_reason, ClientReason::DestinationRule { name, namespace, .. } if name == "httpbin" && namespace == "bar"),
        "the ISTIO_MUTUAL DestinationRule decides: {:?}",
        to_bar.client_reason
    );
}

#[test]
fn port_level_disable_on_the_container_port_lets_every_client_in_plaintext() {
    let doc = assert_table("5-port-level-disable", |c, s| match (c, s) {
        (_, "bar") => "200 plain",
        _ => baseline(c, s),
    });
    let to_bar = doc
        .cells
        .iter()
        .find(|c| c.client.namespace == "foo" && c.service.namespace == "bar")
        .unwrap();
    assert_eq!(
        (to_bar.service.port, to_bar.service.target_port),
        (8000, 80)
    );
    assert_eq!(to_bar.server_mode, MtlsMode::Disable);
}

#[test]
fn workload_disable_beats_namespace_strict_so_foo_takes_plaintext() {
    assert_table("6-precedence", |c, s| match (c, s) {
        (_, "foo") => "200 plain",
        _ => baseline(c, s),
    });
}

#[test]
fn without_filters_every_workload_calls_every_service_port() {
    let mut args = vec!["matrix".to_string()];
    args.extend(step_files("1-no-policy"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, doc): (i32, MatrixDocument) = json(&args);
    assert_eq!(code, 0);
    // 6 workloads (sleep, httpbin × 3 namespaces) × 6 Services with one port each.
    assert_eq!(doc.clients.len(), 6, "{:?}", doc.clients);
    assert_eq!(doc.services.len(), 6, "{:?}", doc.services);
    assert_eq!(doc.cells.len(), 36);
}

#[test]
fn a_label_filter_that_matches_nothing_is_bad_input() {
    let out = peerauth(&[
        "matrix",
        "-f",
        "manifests/workloads",
        "--client-label",
        "app=nope",
    ]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("input-empty-matrix") && out.stderr.contains("app=nope"),
        "{}",
        out.stderr
    );
}

#[test]
fn human_matrix_of_mesh_strict_matches_its_snapshot() {
    let mut args = vec!["matrix".to_string()];
    args.extend(step_files("2-mesh-strict"));
    args.extend([
        "--client-label".into(),
        "app=sleep".into(),
        "--server-label".into(),
        "app=httpbin".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = peerauth(&args);
    assert_eq!(out.code, 1, "{}", out.stderr);
    snapshot("matrix-2-mesh-strict.txt", &out.stdout);
}

#[test]
fn a_broken_file_is_reported_on_stderr_with_exit_2_while_the_matrix_is_still_printed() {
    let out = peerauth(&[
        "matrix",
        "-f",
        "manifests/workloads",
        "-f",
        "cli/tests/fixtures/bad/invalid-yaml.yaml",
        "--client-label",
        "app=sleep",
        "--server-label",
        "app=httpbin",
    ]);
    assert_eq!(out.code, 2);
    assert!(
        out.stdout.contains("sleep.legacy     200 plain"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr
            .contains("cli/tests/fixtures/bad/invalid-yaml.yaml:8: error[input-yaml]"),
        "{}",
        out.stderr
    );
}

#[test]
fn stdin_can_stand_in_for_a_file() {
    let policy = std::fs::read_to_string(
        common::root().join("manifests/steps/3-namespace-strict/peer-authentication.yaml"),
    )
    .unwrap();
    let out = common::peerauth_with_stdin(
        &[
            "matrix",
            "-f",
            "manifests/workloads",
            "-f",
            "-",
            "--client-label",
            "app=sleep",
            "--server-label",
            "app=httpbin",
            "--json",
        ],
        &policy,
    );
    let doc: MatrixDocument = serde_json::from_str(&out.stdout).unwrap();
    assert!(doc.inputs.files.contains(&"<stdin>".to_string()));
    let reset: Vec<_> = doc
        .cells
        .iter()
        .filter(|c| c.outcome == Outcome::Reset)
        .collect();
    assert_eq!(reset.len(), 1);
    assert_eq!(
        (
            reset[0].client.namespace.as_str(),
            reset[0].service.namespace.as_str()
        ),
        ("legacy", "foo")
    );
    assert_eq!(out.code, 1);
}

#[test]
fn the_root_namespace_option_decides_which_policy_is_mesh_wide() {
    let mut args = vec!["matrix".to_string()];
    args.extend(step_files("2-mesh-strict"));
    args.extend(
        [
            "--client-label",
            "app=sleep",
            "--server-label",
            "app=httpbin",
        ]
        .map(String::from),
    );
    args.extend(["--root-namespace".into(), "mesh-root".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, doc): (i32, MatrixDocument) = json(&args);
    // istio-system is no longer the root, so its `default` only covers istio-system.
    assert_eq!(code, 0);
    assert!(doc
        .cells
        .iter()
        .all(|c| c.outcome == Outcome::Allowed && c.server_mode != MtlsMode::Strict));
}

#[test]
fn with_auto_mtls_off_sidecar_clients_send_plaintext_and_strict_resets_them() {
    let mut args = vec!["matrix".to_string()];
    args.extend(step_files("3-namespace-strict"));
    args.extend(
        [
            "--client-label",
            "app=sleep",
            "--server-label",
            "app=httpbin",
            "--no-auto-mtls",
        ]
        .map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, doc): (i32, MatrixDocument) = json(&args);
    assert_eq!(code, 1);
    let to_foo: Vec<_> = doc
        .cells
        .iter()
        .filter(|c| c.service.namespace == "foo")
        .collect();
    assert_eq!(to_foo.len(), 3);
    for c in to_foo {
        assert_eq!(c.outcome, Outcome::Reset, "{c:?}");
        assert_eq!(c.client_tls, ClientTls::Plaintext);
    }
    let foo_to_bar = doc
        .cells
        .iter()
        .find(|c| c.client.namespace == "foo" && c.service.namespace == "bar")
        .unwrap();
    assert_eq!(foo_to_bar.client_reason, ClientReason::AutoMtlsOff);
    assert!(!foo_to_bar.mtls);
}
