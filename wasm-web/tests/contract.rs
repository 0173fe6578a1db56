//! The JSON contract between the wasm module and the page, checked natively on
//! the seed lab manifests (the same files the page's examples are built from).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use peerauth_web::{evaluate_json, parse_options, Options, CONTRACT, VERSION};
use serde_json::Value;
use std::collections::BTreeSet;

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

// A cell is `[client, service, client_tls, client_reason, outcome, mtls]`.
const CLIENT: usize = 0;
const SERVICE: usize = 1;
const CLIENT_TLS: usize = 2;
const CLIENT_REASON: usize = 3;
const OUTCOME: usize = 4;
const MTLS: usize = 5;
const EXPLANATION: usize = 6;

/// The matrix row (client) and column (Service port) a cell points at.
fn cell_ends<'a>(out: &'a Value, cell: &Value) -> (&'a Value, &'a Value) {
    let index = |v: &Value| usize::try_from(v.as_u64().expect("an index")).unwrap();
    let client = &out["matrix"]["clients"][index(&cell[CLIENT])];
    let service = &out["matrix"]["services"][index(&cell[SERVICE])];
    assert!(client.is_object() && service.is_object(), "{cell}");
    (client, service)
}

/// `sleep.<client> → httpbin.<server>:8000` as the page shows it.
fn cell_text(out: &Value, client: &str, server: &str) -> String {
    let cells = out["matrix"]["cells"]
        .as_array()
        .expect("matrix.cells is an array");
    let matching: Vec<&Value> = cells
        .iter()
        .filter(|c| {
            let (from, to) = cell_ends(out, c);
            from["namespace"] == client
                && from["name"] == "sleep"
                && to["namespace"] == server
                && to["name"] == "httpbin"
                && to["port"] == 8000
        })
        .collect();
    assert_eq!(
        matching.len(),
        1,
        "one cell for sleep.{client} → httpbin.{server}:8000"
    );
    let c = matching[0];
    match (c[OUTCOME].as_str().unwrap(), c[MTLS].as_bool().unwrap()) {
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
    with_severity(out, "error")
}

fn with_severity<'a>(out: &'a Value, severity: &str) -> Vec<&'a Value> {
    out["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["severity"] == severity)
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
        // Every step is a state Istio accepts and whose breakage is deliberate.
        assert!(errors(&out).is_empty(), "step {name}: {:?}", errors(&out));
        // The resets of sidecar-less clients are warnings naming the Service port.
        let warned: Vec<&str> = with_severity(&out, "warning")
            .into_iter()
            .filter(|d| d["code"] == "plaintext-client-to-strict")
            .map(|d| d["message"].as_str().unwrap())
            .collect();
        let reset: BTreeSet<String> = out["matrix"]["cells"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c[OUTCOME] == "reset")
            .map(|c| {
                let (_, to) = cell_ends(&out, c);
                let (name, ns) = (
                    to["name"].as_str().unwrap(),
                    to["namespace"].as_str().unwrap(),
                );
                format!("{name}.{ns}:{}", to["port"])
            })
            .collect();
        for target in &reset {
            assert!(
                warned
                    .iter()
                    .any(|m| m.contains(&format!(" to {target} are reset"))),
                "step {name}: no warning for resets at {target}: {warned:?}"
            );
        }
        assert_eq!(warned.len(), reset.len(), "step {name}: {warned:?}");
    }
}

#[test]
fn the_matrix_names_every_client_and_service_port_once_and_cells_point_at_them() {
    let out = run(&lab(&[STEP5_PA, STEP5_DR]));
    let matrix = &out["matrix"];
    let clients = matrix["clients"].as_array().unwrap();
    let services = matrix["services"].as_array().unwrap();
    let cells = matrix["cells"].as_array().unwrap();
    // 6 workloads call each of the 6 Services' ports (httpbin 8000, sleep 80).
    assert_eq!((clients.len(), services.len(), cells.len()), (6, 6, 36));
    let key = |v: &Value, fields: &[&str]| -> Vec<String> {
        fields.iter().map(|f| v[*f].to_string()).collect()
    };
    let client_keys: Vec<_> = clients
        .iter()
        .map(|c| key(c, &["namespace", "name"]))
        .collect();
    let service_keys: Vec<_> = services
        .iter()
        .map(|s| key(s, &["namespace", "name", "port"]))
        .collect();
    // A row carries its client's data plane, so the page needs no workload entry to draw it.
    let sidecar = |namespace: &str| {
        clients
            .iter()
            .find(|c| c["namespace"] == namespace && c["name"] == "sleep")
            .map(|c| c["sidecar"].clone())
    };
    assert_eq!(sidecar("foo"), Some(Value::Bool(true)));
    assert_eq!(sidecar("legacy"), Some(Value::Bool(false)));
    for keys in [&client_keys, &service_keys] {
        let mut sorted = keys.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(&sorted, keys, "sorted, each once");
    }
    let mut pairs: Vec<(u64, u64)> = cells
        .iter()
        .map(|c| {
            assert_eq!(
                c.as_array().unwrap().len(),
                6,
                "no explanation unless asked: {c}"
            );
            (c[CLIENT].as_u64().unwrap(), c[SERVICE].as_u64().unwrap())
        })
        .collect();
    let in_order = pairs.clone();
    pairs.sort();
    pairs.dedup();
    assert_eq!(
        pairs, in_order,
        "one cell per pair, by client then Service port"
    );
    // The server and its mode sit on the column: port 80 of httpbin.bar is DISABLE.
    let httpbin_bar = services
        .iter()
        .find(|s| s["namespace"] == "bar" && s["name"] == "httpbin")
        .unwrap();
    assert_eq!(httpbin_bar["port"], 8000);
    assert_eq!(httpbin_bar["target_port"], 80);
    assert_eq!(httpbin_bar["server_mode"], "DISABLE");
    assert_eq!(httpbin_bar["server"]["name"], "httpbin");
    assert_eq!(httpbin_bar["server"]["sidecar"], true);
    let legacy_to_bar = cells
        .iter()
        .find(|c| {
            let (from, to) = cell_ends(&out, c);
            from["namespace"] == "legacy" && from["name"] == "sleep" && to == httpbin_bar
        })
        .unwrap();
    assert_eq!(legacy_to_bar[CLIENT_REASON], "no-sidecar");
    assert_eq!(legacy_to_bar[CLIENT_TLS], "plaintext");
    let rule = cells
        .iter()
        .find(|c| c[CLIENT_REASON].is_object())
        .expect("the step's DestinationRule decides some client");
    assert_eq!(
        rule[CLIENT_REASON]["destination-rule"]["name"], "httpbin",
        "{rule}"
    );
}

#[test]
fn the_compact_matrix_holds_exactly_policys_cells_and_explanations_on_request() {
    for files in [
        vec![STEP2_PA],
        vec![STEP5_PA, STEP5_DR],
        vec![STEP6_PA, STEP6_DR],
    ] {
        let text = lab(&files);
        let out: Value =
            serde_json::from_str(&evaluate_json(&text, r#"{"explanations":true}"#)).unwrap();
        assert_eq!(out["options"]["explanations"], true);
        let policy_cells = policy::check(&[("input", &text)], policy::MeshConfig::default())
            .mesh
            .matrix()
            .cells;
        let cells = out["matrix"]["cells"].as_array().unwrap();
        assert_eq!(cells.len(), policy_cells.len());
        for (c, p) in cells.iter().zip(&policy_cells) {
            let (from, to) = cell_ends(&out, c);
            let expected = serde_json::json!({
                "client": [p.client_namespace, p.client],
                "service": [p.service_namespace, p.service, p.service_port, p.target_port],
                "server_mode": p.server_mode,
                "client_tls": p.client_tls,
                "client_reason": p.client_reason,
                "outcome": p.outcome,
                "mtls": p.mtls,
                "explanation": p.explanation,
            });
            let got = serde_json::json!({
                "client": [from["namespace"], from["name"]],
                "service": [to["namespace"], to["name"], to["port"], to["target_port"]],
                "server_mode": to["server_mode"],
                "client_tls": c[CLIENT_TLS],
                "client_reason": c[CLIENT_REASON],
                "outcome": c[OUTCOME],
                "mtls": c[MTLS],
                "explanation": c[EXPLANATION],
            });
            assert_eq!(got, expected);
            // The explanation names the deciding server, which the column carries.
            let server = &to["server"];
            let named = format!(
                "; {}.{} ",
                server["name"].as_str().unwrap(),
                server["namespace"].as_str().unwrap()
            );
            assert!(
                p.explanation.contains(&named),
                "{named} in {}",
                p.explanation
            );
        }
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

/// The matrix's cells counted per (client namespace, Service namespace), as
/// `groups` writes them: pairs with a reset or failing cell first, each part in
/// namespace order.
fn counted(out: &Value) -> Vec<Value> {
    let mut pairs: std::collections::BTreeMap<(String, String), [u64; 4]> = Default::default();
    for cell in out["matrix"]["cells"].as_array().unwrap() {
        let (client, service) = cell_ends(out, cell);
        let kind = match (
            cell[OUTCOME].as_str().unwrap(),
            cell[MTLS].as_bool().unwrap(),
        ) {
            ("allowed", true) => 0,
            ("allowed", false) => 1,
            ("reset", _) => 2,
            _ => 3,
        };
        let key = (
            client["namespace"].as_str().unwrap().to_string(),
            service["namespace"].as_str().unwrap().to_string(),
        );
        pairs.entry(key).or_default()[kind] += 1;
    }
    let (broken, fine): (Vec<_>, Vec<_>) = pairs.into_iter().partition(|(_, n)| n[2] + n[3] > 0);
    broken
        .into_iter()
        .chain(fine)
        .map(|((c, s), n)| serde_json::json!([c, s, n[0], n[1], n[2], n[3]]))
        .collect()
}

#[test]
fn groups_count_the_cells_of_every_namespace_pair() {
    for step in [
        vec![],
        vec![STEP2_PA],
        vec![STEP3_PA],
        vec![STEP4_PA, STEP4_DR],
        vec![STEP5_PA, STEP5_DR],
        vec![STEP6_PA, STEP6_DR],
    ] {
        let out = run(&lab(&step));
        assert_eq!(out["matrix"]["omitted"], false);
        let groups = out["matrix"]["groups"].as_array().unwrap();
        assert_eq!(groups, &counted(&out));
        assert!(groups.len() == 9, "{groups:?}");
    }
}

#[test]
fn a_pasted_cluster_gets_groups_and_no_cells() {
    // 500 namespaces × 10 workloads, each behind a two-port Service, one
    // namespace in five without injection and every fourth one STRICT.
    let mut text = String::new();
    for i in 0..500 {
        let injection = if i % 5 == 4 { "disabled" } else { "enabled" };
        text += &format!("---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: ns-{i:03}, labels: {{istio-injection: {injection}}}}}\n");
        if i % 4 == 0 {
            text += &format!("---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: default, namespace: ns-{i:03}}}\nspec: {{mtls: {{mode: STRICT}}}}\n");
        }
        for j in 0..10 {
            text += &format!("---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: app-{j}, namespace: ns-{i:03}}}\nspec: {{template: {{metadata: {{labels: {{app: app-{j}}}}}, spec: {{containers: [{{name: c, ports: [{{containerPort: 8080}}, {{containerPort: 9090}}]}}]}}}}}}\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: app-{j}, namespace: ns-{i:03}}}\nspec: {{selector: {{app: app-{j}}}, ports: [{{port: 80, targetPort: 8080}}, {{port: 9090}}]}}\n");
        }
    }
    let started = std::time::Instant::now();
    let json = evaluate_json(&text, "");
    let elapsed = started.elapsed();
    let out: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(out["summary"]["workloads"], 5000);
    assert!(errors(&out).is_empty(), "{:?}", errors(&out));
    let matrix = &out["matrix"];
    assert_eq!(matrix["omitted"], true);
    assert!(matrix["cells"].as_array().unwrap().is_empty());
    assert!(matrix["clients"].as_array().unwrap().is_empty());
    assert!(matrix["services"].as_array().unwrap().is_empty());
    assert_eq!(matrix["totals"]["clients"], 5000);
    assert_eq!(matrix["totals"]["services"], 10_000);
    assert_eq!(matrix["totals"]["cells"], 50_000_000u64);
    let groups = matrix["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 500 * 500);
    assert_eq!(matrix["totals"]["groups"], 500 * 500);
    // Pairs with resets come first: towards every STRICT namespace with sidecars
    // from each of the 100 namespaces without.
    let broken = (0..500).filter(|i| i % 4 == 0 && i % 5 != 4).count() * 100;
    assert_eq!(matrix["totals"]["broken_groups"], broken);
    assert!(groups[..broken].iter().all(|g| g[4].as_u64().unwrap() > 0));
    assert!(groups[broken..].iter().all(|g| g[4] == 0 && g[5] == 0));
    let total: u64 = groups
        .iter()
        .map(|g| (2..6).map(|i| g[i].as_u64().unwrap()).sum::<u64>())
        .sum();
    assert_eq!(total, 5000 * 10_000);
    // Clients without a sidecar (10 per fifth namespace) are reset by every
    // STRICT port with a sidecar (20 per fourth namespace, less those without one).
    let reset: u64 = groups.iter().map(|g| g[4].as_u64().unwrap()).sum();
    let strict_ports = (0..500).filter(|i| i % 4 == 0 && i % 5 != 4).count() as u64 * 20;
    assert_eq!(reset, 100 * 10 * strict_ports);
    // The document stays small enough for a tab: no per-cell data.
    assert!(json.len() < 64 << 20, "{} bytes", json.len());
    eprintln!(
        "5,000 workloads: evaluate_json {elapsed:?}, {} bytes",
        json.len()
    );
}
