//! `peerauth tls-check` on every call of the seed lab's steps and scenarios, the
//! expected results taken from the pages as `manifests/lab/seed-lab.json` writes
//! them down (not from policy), and on bad input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{json, peerauth, root};
use peerauth_cli::json::{ClientReason, ClientTls, Outcome};
use peerauth_cli::tls_check::TlsCheckDocument;
use policy::MtlsMode;

/// The files of a seed step (on the seed workloads) or of a scenario (on its own).
fn step_files(step: &str) -> Vec<String> {
    let scenario = format!("manifests/lab/scenarios/{step}");
    if root().join(&scenario).is_dir() {
        return vec![scenario];
    }
    vec![
        "manifests/workloads".into(),
        format!("manifests/steps/{step}"),
    ]
}

fn tls_check(client: &str, server: &str, files: &[String]) -> (i32, TlsCheckDocument) {
    let mut args = vec!["tls-check", client, server];
    for f in files {
        args.push("-f");
        args.push(f);
    }
    json(&args)
}

#[test]
fn every_seed_call_gets_the_pages_code_and_mtls_and_exits_0_only_for_mtls() {
    let seed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("manifests/lab/seed-lab.json")).unwrap(),
    )
    .unwrap();
    let mut checked = 0;
    for step in seed["steps"].as_array().unwrap() {
        let name = step["step"].as_str().unwrap();
        let files = step_files(name);
        for call in step["calls"].as_array().unwrap() {
            let client = call["client"].as_str().unwrap();
            let server = format!(
                "{}:{}",
                call["service"].as_str().unwrap(),
                call["port"].as_u64().unwrap()
            );
            let (code, doc) = tls_check(client, &server, &files);
            let what = format!("{name}: {client} -> {server}");
            assert_eq!(doc.command, "tls-check", "{what}");
            assert_eq!(doc.checks.len(), 1, "{what}: {:?}", doc.diagnostics);
            let c = &doc.checks[0];
            let want_ok = call["code"] == "200";
            let want_mtls = call["mtls"].as_bool().unwrap();
            assert_eq!(c.outcome == Outcome::Allowed, want_ok, "{what}: {c:?}");
            if !want_ok {
                // The pages' 000 with curl exit 56 is a reset, not a failed TLS request.
                assert_eq!(c.outcome, Outcome::Reset, "{what}");
            }
            assert_eq!(c.mtls, want_mtls, "{what}");
            assert_eq!(code, if want_ok && want_mtls { 0 } else { 1 }, "{what}");
            assert_eq!(doc.exit_code as i32, code, "{what}");
            checked += 1;
        }
    }
    assert_eq!(checked, 59, "seed-lab.json documents 59 calls");
}

#[test]
fn the_human_answer_names_the_client_side_the_server_side_and_what_decided_each() {
    // Step 2: mesh-wide STRICT; sleep.legacy has no sidecar and is reset (the page: 000).
    let out = peerauth(&[
        "tls-check",
        "legacy/sleep",
        "foo/httpbin:8000",
        "-f",
        "manifests/workloads",
        "-f",
        "manifests/steps/2-mesh-strict",
    ]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines[1],
        "CLIENT → httpbin.foo:8000: mTLS is disabled (plaintext)"
    );
    assert_eq!(lines[2], "   decided by: sleep.legacy has no sidecar");
    assert_eq!(
        lines[3],
        "SERVER → httpbin.foo:80: mTLS is required (STRICT)"
    );
    assert_eq!(
        lines[4],
        "   decided by: mesh-wide PeerAuthentication istio-system/default (manifests/steps/2-mesh-strict/peer-authentication.yaml:3)"
    );
    assert_eq!(lines[5], "RESULT: CONFLICT: the connection is reset");
}

#[test]
fn a_destination_rule_and_a_port_level_policy_are_named_as_what_decided() {
    // Step 5: DestinationRule httpbin (bar) DISABLE on Service port 8000, portLevelMtls 80 DISABLE.
    let (code, doc) = tls_check(
        "foo/sleep",
        "bar/httpbin",
        &step_files("5-port-level-disable"),
    );
    assert_eq!(code, 1);
    let c = &doc.checks[0];
    assert_eq!(c.client_tls, ClientTls::Plaintext);
    assert!(matches!(
        &c.client_reason,
        ClientReason::DestinationRule { namespace, name, tls_mode: policy::TlsMode::Disable }
            if namespace == "bar" && name == "httpbin"
    ));
    assert_eq!((c.service.port, c.service.target_port), (8000, 80));
    assert_eq!(c.server_mode, MtlsMode::Disable);
    assert_eq!(
        c.server_resolution.decided_at,
        peerauth_cli::json::Level::Port
    );
    let by = c.server_resolution.decided_by.as_ref().unwrap();
    assert_eq!(
        (by.namespace.as_str(), by.name.as_str()),
        ("bar", "httpbin")
    );
}

#[test]
fn an_unknown_client_service_or_port_is_bad_input_with_what_exists() {
    let files = step_files("1-no-policy");
    for (client, server, says) in [
        ("foo/nobody", "foo/httpbin", "no workload foo/nobody"),
        ("foo/sleep", "foo/nothing", "no Service foo/nothing"),
        (
            "foo/sleep",
            "foo/httpbin:9",
            "has no port 9; its ports: 8000",
        ),
        ("sleep", "foo/httpbin", "expected namespace/name"),
    ] {
        let mut args = vec!["tls-check", client, server];
        for f in &files {
            args.extend(["-f", f.as_str()]);
        }
        let out = peerauth(&args);
        assert_eq!(out.code, 2, "{client} {server}: {}", out.stdout);
        assert!(
            out.stderr.contains(says),
            "{client} {server}: {}",
            out.stderr
        );
    }
}

#[test]
fn the_readmes_tls_check_example_is_a_valid_document_of_the_seed_step_3_call() {
    let readme = std::fs::read_to_string(root().join("cli/README.md")).unwrap();
    let block = readme
        .split("```json tls-check\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("a ```json tls-check block in cli/README.md");
    let doc: TlsCheckDocument = serde_json::from_str(block).unwrap();
    let (code, real) = tls_check(
        "foo/sleep",
        "foo/httpbin:8000",
        &step_files("3-namespace-strict"),
    );
    assert_eq!(code, 0);
    // The example is trimmed of diagnostics and skipped documents only.
    assert_eq!(doc.checks, real.checks);
}

#[test]
fn a_destination_rule_with_simple_tls_is_reported_as_tls_that_is_not_istios() {
    // DestinationRule SIMPLE: TLS without Istio's certificates and ALPN
    // (/work/shared/notes/istio-semantics.md), so the client side is not Istio mTLS.
    let dr = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: httpbin-simple, namespace: foo}\nspec:\n  host: httpbin.bar.svc.cluster.local\n  trafficPolicy: {tls: {mode: SIMPLE}}\n";
    let out = common::peerauth_with_stdin(
        &[
            "tls-check",
            "sleep.foo",
            "httpbin.bar:8000",
            "-f",
            "manifests/workloads",
            "-f",
            "-",
        ],
        dr,
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("CLIENT → httpbin.bar:8000: mTLS is not Istio's"),
        "{}",
        out.stdout
    );
    assert!(out
        .stdout
        .contains("decided by: DestinationRule foo/httpbin-simple sets SIMPLE"));
    assert!(out.stdout.contains("RESULT: CONFLICT"), "{}", out.stdout);
}

#[test]
fn an_ambient_server_is_answered_as_ztunnel_enforces_it_with_disable_acting_as_permissive() {
    // Seed 004 in ambient mode (manifests/lab/ambient/README.md, from istio.io's ambient
    // PeerAuthentication docs): mesh STRICT resets a caller outside the mesh; bar's
    // namespace DISABLE is not supported by ztunnel and accepts plaintext like PERMISSIVE.
    let files = vec!["manifests/lab/ambient".to_string()];
    let out = peerauth(&[
        "tls-check",
        "legacy/sleep",
        "foo/httpbin:8000",
        "-f",
        "manifests/lab/ambient",
    ]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines[3],
        "SERVER → httpbin.foo:80: ambient (ztunnel): mTLS (HBONE) is required (STRICT)"
    );
    assert_eq!(lines[5], "RESULT: CONFLICT: the connection is reset");

    let (code, doc) = tls_check("legacy/sleep", "bar/httpbin:8000", &files);
    assert_eq!(code, 1, "plaintext success exits 1");
    let check = &doc.checks[0];
    assert!(check.server.ambient && !check.server.sidecar);
    assert_eq!(check.outcome, Outcome::Allowed);
    assert!(!check.mtls);

    let (code, doc) = tls_check("foo/sleep", "bar/httpbin:8000", &files);
    assert_eq!(code, 0, "ambient to ambient is HBONE mTLS");
    assert!(doc.checks[0].mtls);
    assert!(doc.checks[0].client.ambient);
}
