//! `limits`: the page asks for the first rows of the long lists only, and the
//! rows it gets are exactly the first rows of the full answer, also when the
//! kept evaluation ([`Evaluator`]) answers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use peerauth_web::{evaluate_json, Evaluator};
use serde_json::{json, Value};

const WORKLOADS: [&str; 3] = [
    include_str!("../../manifests/workloads/foo.yaml"),
    include_str!("../../manifests/workloads/bar.yaml"),
    include_str!("../../manifests/workloads/legacy.yaml"),
];
const STEP2_PA: &str = include_str!("../../manifests/steps/2-mesh-strict/peer-authentication.yaml");
const STEP4_PA: &str =
    include_str!("../../manifests/steps/4-workload-strict/peer-authentication.yaml");
const STEP4_DR: &str =
    include_str!("../../manifests/steps/4-workload-strict/destination-rule.yaml");

fn lab(step_files: &[&str]) -> String {
    step_files
        .iter()
        .chain(WORKLOADS.iter())
        .map(|t| t.trim_end())
        .collect::<Vec<_>>()
        .join("\n---\n")
}

/// `namespaces` × 10 Deployments behind two-port Services; every third
/// namespace without injection, every fourth STRICT (the browser test's paste).
fn cluster(namespaces: usize) -> String {
    let mut docs = Vec::new();
    for i in 0..namespaces {
        let ns = format!("ns-{i:02}");
        let injection = if i % 3 == 0 { "disabled" } else { "enabled" };
        docs.push(format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}, labels: {{istio-injection: {injection}}}}}\n"));
        if i % 4 == 0 {
            docs.push(format!("apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: default, namespace: {ns}}}\nspec: {{mtls: {{mode: STRICT}}}}\n"));
        }
        for j in 0..10 {
            docs.push(format!("apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: app-{j}, namespace: {ns}}}\nspec: {{template: {{metadata: {{labels: {{app: app-{j}}}}}, spec: {{containers: [{{name: c, ports: [{{containerPort: 8080}}, {{containerPort: 9090}}]}}]}}}}}}\n"));
            docs.push(format!("apiVersion: v1\nkind: Service\nmetadata: {{name: app-{j}, namespace: {ns}}}\nspec: {{selector: {{app: app-{j}}}, ports: [{{port: 80, targetPort: 8080}}, {{port: 9090}}]}}\n"));
        }
    }
    docs.join("---\n")
}

fn parse(json: &str) -> Value {
    serde_json::from_str(json).expect("evaluate_json returns JSON")
}

/// `full` with `workloads` and `matrix.groups` cut as `limits` cuts them, and
/// `options.limits` as given.
fn cut(full: &Value, workloads: Option<usize>, groups: Option<usize>) -> Value {
    let mut out = full.clone();
    let first = |rows: &Value, n: Option<usize>| -> Value {
        let rows = rows.as_array().unwrap();
        Value::Array(rows[..n.unwrap_or(rows.len()).min(rows.len())].to_vec())
    };
    out["workloads"] = first(&full["workloads"], workloads);
    if full["matrix"].is_object() {
        out["matrix"]["groups"] = first(&full["matrix"]["groups"], groups);
    }
    out["options"]["limits"] = json!({"workloads": workloads, "groups": groups});
    out
}

fn limits(workloads: Option<usize>, groups: Option<usize>) -> String {
    json!({"limits": {"workloads": workloads, "groups": groups}}).to_string()
}

#[test]
fn limited_answers_are_the_first_rows_of_the_full_answer_on_the_seed_lab_and_a_pasted_cluster() {
    let texts = [
        lab(&[]),
        lab(&[STEP2_PA]),
        lab(&[STEP4_PA, STEP4_DR]),
        cluster(60),
    ];
    for (i, text) in texts.iter().enumerate() {
        let full = parse(&evaluate_json(text, ""));
        let workloads = full["workloads"].as_array().unwrap().len();
        let groups = full["matrix"]["groups"].as_array().unwrap().len();
        assert!(workloads > 1 && groups > 1, "text {i}");
        // The counts the page shows beside a cut list stay those of the whole.
        assert_eq!(full["summary"]["workloads"], workloads, "text {i}");
        assert_eq!(full["matrix"]["totals"]["groups"], groups, "text {i}");
        let totals = &full["matrix"]["totals"];
        if full["matrix"]["omitted"] == false {
            let clients = full["matrix"]["clients"].as_array().unwrap().len();
            let services = full["matrix"]["services"].as_array().unwrap().len();
            assert_eq!(totals["clients"], clients, "text {i}");
            assert_eq!(totals["services"], services, "text {i}");
            assert_eq!(totals["cells"], clients * services, "text {i}");
        } else {
            assert_eq!(
                (&totals["clients"], &totals["services"]),
                (&json!(600), &json!(1200))
            );
            assert_eq!(totals["cells"], 600 * 1200, "text {i}");
        }
        let mut evaluator = Evaluator::default();
        for (w, g) in [
            (Some(0), Some(0)),
            (Some(1), Some(1)),
            (Some(workloads - 1), Some(groups / 2)),
            (Some(500), Some(1000)),
            (None, Some(groups + 7)),
            (None, None),
        ] {
            let want = cut(&full, w, g);
            let fresh = parse(&evaluate_json(text, &limits(w, g)));
            assert_eq!(fresh, want, "text {i}, limits {w:?} {g:?}");
            // Asked again with other limits, the kept evaluation gives the same.
            let kept = parse(&evaluator.evaluate_json(text, &limits(w, g)));
            assert_eq!(kept, want, "text {i}, limits {w:?} {g:?}, kept evaluation");
        }
    }
}

#[test]
fn a_kept_evaluation_is_used_only_for_the_same_text_and_options() {
    let mut evaluator = Evaluator::default();
    let seed2 = lab(&[STEP2_PA]);
    let seed4 = lab(&[STEP4_PA, STEP4_DR]);
    for (text, options) in [
        (seed2.as_str(), limits(Some(1), Some(1))),
        (seed2.as_str(), limits(None, None)),
        (seed4.as_str(), limits(None, None)),
        (seed4.as_str(), r#"{"autoMtls": false}"#.to_string()),
        (
            seed4.as_str(),
            r#"{"autoMtls": false, "limits": {"groups": 2}}"#.to_string(),
        ),
        (seed4.as_str(), r#"{"explanations": true}"#.to_string()),
        (seed4.as_str(), r#"{"rootNamespace": "foo"}"#.to_string()),
        (
            seed4.as_str(),
            r#"{"limits": {"workloads": "all"}}"#.to_string(),
        ),
        (seed2.as_str(), String::new()),
    ] {
        assert_eq!(
            parse(&evaluator.evaluate_json(text, &options)),
            parse(&evaluate_json(text, &options)),
            "options {options}"
        );
    }
}

#[test]
fn limits_that_are_not_counts_are_refused() {
    for options in [
        r#"{"limits": {"workloads": -1}}"#,
        r#"{"limits": {"rows": 3}}"#,
        r#"{"limits": 500}"#,
    ] {
        let out = parse(&evaluate_json(&lab(&[]), options));
        let first = &out["diagnostics"][0];
        assert_eq!(first["code"], "web-invalid-options", "{options}");
        assert!(
            first["message"].as_str().unwrap().contains("limits"),
            "{first}"
        );
        // The defaults: everything is sent.
        assert_eq!(out["workloads"].as_array().unwrap().len(), 6, "{options}");
    }
}
