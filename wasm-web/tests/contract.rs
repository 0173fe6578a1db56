//! The JSON contract between the wasm module and the page, checked natively on
//! the seed lab manifests (the same files the page's examples are built from).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use peerauth_web::{evaluate_json, parse_options, Options, CONTRACT, VERSION};
use serde_json::Value;

const WORKLOADS: [&str; 3] = [
    include_str!("../../manifests/workloads/foo.yaml"),
    include_str!("../../manifests/workloads/bar.yaml"),
    include_str!("../../manifests/workloads/legacy.yaml"),
];

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

/// The policy files of a step first, then the three namespaces, as the page's example does.
fn lab(step_files: &[&str]) -> String {
    step_files
        .iter()
        .chain(WORKLOADS.iter())
        .map(|t| t.trim_end())
        .collect::<Vec<_>>()
        .join("\n---\n")
}

fn run(text: &str) -> Value {
    serde_json::from_str(&evaluate_json(text, "")).expect("evaluate_json returns JSON")
}

/// `sleep.<client> → httpbin.<server>:8000` as the page shows it.
fn cell_text(out: &Value, client: &str, server: &str) -> String {
    let cells = out["matrix"]["cells"]
        .as_array()
        .expect("matrix.cells is an array");
    let matching: Vec<&Value> = cells
        .iter()
        .filter(|c| {
            c["client_namespace"] == client
                && c["client"] == "sleep"
                && c["service_namespace"] == server
                && c["service"] == "httpbin"
                && c["service_port"] == 8000
        })
        .collect();
    assert_eq!(
        matching.len(),
        1,
        "one cell for sleep.{client} → httpbin.{server}:8000"
    );
    let c = matching[0];
    match (c["outcome"].as_str().unwrap(), c["mtls"].as_bool().unwrap()) {
        ("allowed", true) => "mtls".into(),
        ("allowed", false) => "plain".into(),
        (other, _) => other.into(),
    }
}

fn grid(out: &Value) -> Vec<Vec<String>> {
    let ns = ["foo", "bar", "legacy"];
    ns.iter()
        .map(|c| ns.iter().map(|s| cell_text(out, c, s)).collect())
        .collect()
}

fn rows(rows: [[&str; 3]; 3]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|r| r.iter().map(|s| s.to_string()).collect())
        .collect()
}

fn workload<'a>(out: &'a Value, namespace: &str, name: &str) -> &'a Value {
    out["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["namespace"] == namespace && w["name"] == name)
        .unwrap_or_else(|| panic!("workload {namespace}/{name} is described"))
}

fn errors(out: &Value) -> Vec<&Value> {
    out["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["severity"] == "error")
        .collect()
}

#[test]
fn output_carries_every_field_of_the_contract() {
    let out = run(&lab(&[STEP2_PA]));
    for key in [
        "version",
        "contract",
        "options",
        "summary",
        "diagnostics",
        "workloads",
        "matrix",
        "skipped",
    ] {
        assert!(out.get(key).is_some(), "missing {key} in {out}");
    }
    assert_eq!(out["version"], VERSION);
    assert_eq!(out["contract"], CONTRACT);
    assert_eq!(out["options"]["rootNamespace"], "istio-system");
    assert_eq!(out["summary"]["workloads"], 6);
    assert_eq!(out["summary"]["services"], 6);
    assert_eq!(out["summary"]["peer_authentications"], 1);
    // ServiceAccounts are not modelled: reported as skipped, not as errors.
    assert_eq!(out["skipped"].as_array().unwrap().len(), 6);
    let httpbin = workload(&out, "foo", "httpbin");
    assert_eq!(httpbin["sidecar"], true);
    assert_eq!(httpbin["labels"]["app"], "httpbin");
    assert!(httpbin["location"]["line"].as_u64().unwrap() > 1);
    assert_eq!(workload(&out, "legacy", "sleep")["sidecar"], false);
}

/// Rows: client namespace foo, bar, legacy; columns: server namespace, same order.
type Grid = [[&'static str; 3]; 3];

#[test]
fn seed_lab_steps_give_the_lab_matrices() {
    let cases: [(&str, Vec<&str>, Grid); 6] = [
        (
            "1 no policy",
            vec![],
            [
                ["mtls", "mtls", "plain"],
                ["mtls", "mtls", "plain"],
                ["plain"; 3],
            ],
        ),
        (
            "2 mesh strict",
            vec![STEP2_PA],
            [
                ["mtls", "mtls", "plain"],
                ["mtls", "mtls", "plain"],
                ["reset", "reset", "plain"],
            ],
        ),
        (
            "3 namespace strict",
            vec![STEP3_PA],
            [
                ["mtls", "mtls", "plain"],
                ["mtls", "mtls", "plain"],
                ["reset", "plain", "plain"],
            ],
        ),
        (
            "4 workload strict",
            vec![STEP4_PA, STEP4_DR],
            [
                ["mtls", "mtls", "plain"],
                ["mtls", "mtls", "plain"],
                ["plain", "reset", "plain"],
            ],
        ),
        (
            "5 port-level disable",
            vec![STEP5_PA, STEP5_DR],
            [
                ["mtls", "plain", "plain"],
                ["mtls", "plain", "plain"],
                ["plain"; 3],
            ],
        ),
        (
            "6 precedence",
            vec![STEP6_PA, STEP6_DR],
            [
                ["plain", "mtls", "plain"],
                ["plain", "mtls", "plain"],
                ["plain"; 3],
            ],
        ),
    ];
    for (name, files, expected) in cases {
        let out = run(&lab(&files));
        assert_eq!(grid(&out), rows(expected), "step {name}");
        // Resets are also reported by the analysis; nothing else is an error.
        let other: Vec<_> = errors(&out)
            .into_iter()
            .filter(|d| d["code"] != "plaintext-client-to-strict")
            .collect();
        assert!(other.is_empty(), "step {name}: unexpected errors {other:?}");
    }
}

#[test]
fn port_level_disable_is_decided_by_the_workload_policy_on_the_container_port() {
    let out = run(&lab(&[STEP5_PA, STEP5_DR]));
    let httpbin = workload(&out, "bar", "httpbin");
    assert_eq!(httpbin["workload"]["mode"], "STRICT");
    assert_eq!(httpbin["workload"]["decided_at"], "workload");
    let port = &httpbin["ports"]["80"];
    assert_eq!(port["mode"], "DISABLE");
    assert_eq!(port["decided_at"], "port");
    let decider = port["steps"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|s| s["level"] == "port")
        .expect("a port step");
    assert_eq!(decider["policy"]["name"], "httpbin");
    assert_eq!(decider["policy"]["namespace"], "bar");
    assert!(decider["policy"]["location"]["line"].as_u64().unwrap() >= 1);
}

#[test]
fn an_unknown_mode_is_an_error_on_its_line() {
    let text = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: default\n  namespace: foo\nspec:\n  mtls:\n    mode: STRICTT\n";
    let out = run(text);
    let errs = errors(&out);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0]["location"]["line"], 8);
    assert_eq!(errs[0]["location"]["source"], "input");
    assert!(errs[0]["message"].as_str().unwrap().contains("STRICTT"));
    assert_eq!(out["summary"]["errors"], 1);
}

#[test]
fn text_that_is_not_yaml_is_an_input_diagnostic_and_later_documents_still_count() {
    let out = run(&format!("kind: [unclosed\n---\n{}", lab(&[STEP2_PA])));
    let errs = errors(&out);
    assert!(!errs.is_empty());
    assert!(
        errs[0]["code"].as_str().unwrap().starts_with("input-"),
        "{errs:?}"
    );
    // The parser notices the unclosed sequence where the document ends.
    let line = errs[0]["location"]["line"].as_u64().unwrap();
    assert!((1..=2).contains(&line), "error at line {line}");
    assert_eq!(cell_text(&out, "legacy", "foo"), "reset");
}

#[test]
fn json_input_is_read_like_yaml() {
    let pa = r#"{"apiVersion":"security.istio.io/v1","kind":"PeerAuthentication",
        "metadata":{"name":"default","namespace":"istio-system"},"spec":{"mtls":{"mode":"STRICT"}}}"#;
    let out = run(pa);
    assert!(errors(&out).is_empty(), "{out}");
    assert_eq!(out["summary"]["peer_authentications"], 1);
}

#[test]
fn empty_input_gives_a_complete_empty_document() {
    let out = run("");
    assert_eq!(out["diagnostics"], Value::Array(vec![]));
    assert_eq!(out["workloads"], Value::Array(vec![]));
    assert_eq!(out["matrix"]["cells"], Value::Array(vec![]));
    assert_eq!(out["summary"]["errors"], 0);
}

#[test]
fn options_choose_the_root_namespace_and_can_turn_the_matrix_off() {
    let text = lab(&[STEP2_PA]);
    let moved: Value =
        serde_json::from_str(&evaluate_json(&text, r#"{"rootNamespace":"mesh-root"}"#)).unwrap();
    // istio-system is now an ordinary namespace, so its policy no longer covers foo.
    assert_eq!(cell_text(&moved, "legacy", "foo"), "plain");
    assert_eq!(
        workload(&moved, "foo", "httpbin")["workload"]["mode"],
        "PERMISSIVE"
    );

    let no_matrix: Value =
        serde_json::from_str(&evaluate_json(&text, r#"{"matrix":false}"#)).unwrap();
    assert_eq!(no_matrix["matrix"], Value::Null);
    assert_eq!(no_matrix["workloads"].as_array().unwrap().len(), 6);
}

#[test]
fn invalid_options_are_reported_and_the_defaults_used() {
    let text = lab(&[STEP2_PA]);
    let plain = run(&text);
    let out: Value =
        serde_json::from_str(&evaluate_json(&text, r#"{"rootNamspace":"x"}"#)).unwrap();
    let first = &out["diagnostics"][0];
    assert_eq!(first["code"], "web-invalid-options");
    assert_eq!(first["severity"], "error");
    assert!(first["message"].as_str().unwrap().contains("rootNamspace"));
    assert_eq!(out["options"]["rootNamespace"], "istio-system");
    assert_eq!(cell_text(&out, "legacy", "foo"), "reset");
    assert_eq!(
        out["summary"]["errors"].as_u64().unwrap(),
        plain["summary"]["errors"].as_u64().unwrap() + 1
    );
    assert_eq!(
        out["diagnostics"].as_array().unwrap()[1..],
        plain["diagnostics"].as_array().unwrap()[..]
    );
}

#[test]
fn blank_options_mean_the_defaults_and_wrong_types_are_refused() {
    assert_eq!(parse_options("  ").unwrap(), Options::default());
    assert_eq!(parse_options("{}").unwrap(), Options::default());
    assert!(parse_options(r#"{"autoMtls":"yes"}"#).is_err());
    assert!(parse_options("[]").is_err());
    let o = parse_options(r#"{"autoMtls":false,"source":"mesh.yaml"}"#).unwrap();
    assert!(!o.auto_mtls);
    assert_eq!(o.source, "mesh.yaml");
    assert_eq!(o.root_namespace, "istio-system");
}

#[test]
fn the_source_name_option_appears_in_locations() {
    let out: Value = serde_json::from_str(&evaluate_json(
        "kind: PeerAuthentication\napiVersion: security.istio.io/v1\nmetadata: {name: x}\nspec: {mtls: {mode: NOPE}}\n",
        r#"{"source":"pasted.yaml"}"#,
    ))
    .unwrap();
    assert_eq!(errors(&out)[0]["location"]["source"], "pasted.yaml");
}
