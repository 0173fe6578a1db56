//! Every manifest in `manifests/` is what `kubectl apply -f` would accept: Istio kinds
//! against the real CRD schemas and CEL rules in `../shared/istio-crds/`, core kinds by
//! hand-written rules (see `peerauth_tests::demo::crd`), PeerAuthentications and
//! DestinationRules through `policy`'s Istio validation, and every WasmPlugin's
//! `pluginConfig` through the filter's own parser. Broken copies prove each checker fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use peerauth_filter::config::Config;
use peerauth_tests::demo::crd::{self, Crds, Violation};
use policy::{MeshConfig, MtlsMode, Severity};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Parsing the 400 KB DestinationRule CRD once, not per check.
fn crds() -> &'static Crds {
    static CRDS: std::sync::OnceLock<Crds> = std::sync::OnceLock::new();
    CRDS.get_or_init(|| Crds::load_shared().unwrap())
}

/// Every YAML file under `manifests/`, sorted (READMEs and scripts are not manifests).
fn manifest_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&repo().join("manifests"), &mut out);
    out.sort();
    out
}

fn rel(p: &Path) -> String {
    p.strip_prefix(repo()).unwrap_or(p).display().to_string()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

fn documents(p: &Path) -> Vec<Value> {
    crd::yaml_documents(&read(p)).unwrap()
}

fn wasmplugins() -> Vec<(String, Value)> {
    manifest_files()
        .iter()
        .flat_map(|p| documents(p).into_iter().map(move |d| (rel(p), d)))
        .filter(|(_, d)| d["kind"] == "WasmPlugin")
        .collect()
}

fn check_one(text: &str) -> Vec<Violation> {
    crds().check_text("broken.yaml", text)
}

fn assert_refused(text: &str, expected: &str) {
    let v = check_one(text);
    assert!(
        v.iter().any(|v| v.message.contains(expected)),
        "expected a violation containing {expected:?}, got {v:#?}"
    );
}

fn steps() -> Vec<PathBuf> {
    let mut s: Vec<PathBuf> = std::fs::read_dir(repo().join("manifests/steps"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    s.sort();
    s
}

/// `(name, text)` of the workloads plus one step, as `policy::check` takes them.
fn step_sources(step: &Path) -> Vec<(String, String)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("manifests/workloads"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.extend(
        std::fs::read_dir(step)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml")),
    );
    files.sort();
    files.iter().map(|p| (rel(p), read(p))).collect()
}

fn policy_check(sources: &[(String, String)]) -> policy::Report {
    let refs: Vec<(&str, &str)> = sources
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    policy::check(&refs, MeshConfig::default())
}

// ---- the committed manifests -------------------------------------------------------

#[test]
fn the_vendored_crds_give_schemas_for_every_istio_kind_we_ship() {
    let crds = crds();
    let kinds: Vec<String> = crds
        .kinds()
        .map(|(g, v, k)| format!("{g}/{v} {k}"))
        .collect();
    for want in [
        "security.istio.io/v1 PeerAuthentication",
        "security.istio.io/v1beta1 PeerAuthentication",
        "networking.istio.io/v1 DestinationRule",
        "extensions.istio.io/v1alpha1 WasmPlugin",
    ] {
        assert!(
            kinds.iter().any(|k| k == want),
            "{want} missing from {kinds:?}"
        );
    }
}

#[test]
fn every_committed_manifest_passes_the_crd_schemas_and_kubernetes_rules() {
    let crds = crds();
    let files = manifest_files();
    let mut kinds = std::collections::BTreeMap::<String, usize>::new();
    let mut violations = Vec::new();
    for f in &files {
        let text = read(f);
        violations.extend(crds.check_text(&rel(f), &text));
        for d in crd::yaml_documents(&text).unwrap() {
            *kinds
                .entry(d["kind"].as_str().unwrap_or("?").to_string())
                .or_default() += 1;
        }
    }
    let listing: Vec<String> = violations.iter().map(ToString::to_string).collect();
    assert!(violations.is_empty(), "{}", listing.join("\n"));
    // The walk really saw the lab: a silent empty walk must not pass.
    for (kind, at_least) in [
        ("WasmPlugin", 5),
        ("PeerAuthentication", 5),
        ("DestinationRule", 3),
        ("Deployment", 6),
        ("Service", 6),
        ("Namespace", 3),
    ] {
        assert!(
            kinds.get(kind).copied().unwrap_or(0) >= at_least,
            "expected at least {at_least} {kind} in manifests/, found {kinds:?}"
        );
    }
}

#[test]
fn the_legacy_namespace_has_no_sidecar_injection_and_foo_and_bar_do() {
    for (ns, injected) in [("foo", true), ("bar", true), ("legacy", false)] {
        let docs = documents(&repo().join(format!("manifests/workloads/{ns}.yaml")));
        let namespace = docs.iter().find(|d| d["kind"] == "Namespace").unwrap();
        assert_eq!(namespace["metadata"]["name"], ns);
        assert_eq!(
            namespace["metadata"]["labels"]["istio-injection"] == "enabled",
            injected,
            "{ns}"
        );
        for app in ["sleep", "httpbin"] {
            assert!(
                docs.iter()
                    .any(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == app),
                "{app}.{ns} missing"
            );
        }
    }
}

/// Istio's admission verdict on every resource of `sources`: load errors and the
/// validation findings of severity error (analysis findings are not admission errors).
fn admission_errors(sources: &[(String, String)]) -> Vec<String> {
    let config = MeshConfig::default();
    let mut errors = Vec::new();
    for (name, text) in sources {
        let loaded = policy::source::load(text, name);
        errors.extend(loaded.errors.iter().map(ToString::to_string));
        for r in &loaded.resources {
            errors.extend(
                policy::validate::resource(r, &config)
                    .into_iter()
                    .filter(|d| d.severity == Severity::Error)
                    .map(|d| format!("{name}: {}", d.message)),
            );
        }
    }
    errors
}

#[test]
fn workloads_plus_every_seed_step_pass_policy_validation_without_errors() {
    let steps = steps();
    assert_eq!(steps.len(), 6, "{steps:?}");
    for step in &steps {
        let sources = step_sources(step);
        let errors = admission_errors(&sources);
        assert!(errors.is_empty(), "{}: {errors:#?}", rel(step));
        let report = policy_check(&sources);
        assert_eq!(report.mesh.workloads.len(), 6, "{}", rel(step));
        assert!(report.mesh.peer_authentications.len() <= 2, "{}", rel(step));
    }
    // Step 1 has no policy at all: nothing for policy to complain about, analysis included.
    let report = policy_check(&step_sources(&repo().join("manifests/steps/1-no-policy")));
    let errors: Vec<_> = report
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn the_wasmplugin_manifests_use_authn_phase_a_url_variant_each_and_guard_port_80() {
    let plugins = wasmplugins();
    assert!(plugins.len() >= 5);
    let mut schemes = std::collections::BTreeSet::new();
    for (file, p) in &plugins {
        let spec = &p["spec"];
        assert_eq!(spec["phase"], "AUTHN", "{file}");
        assert!(spec["priority"].is_i64(), "{file}: priority");
        assert!(spec["failStrategy"].is_string(), "{file}: failStrategy");
        if spec["targetRefs"].is_array() {
            // A waypoint plugin: istiod matches waypoint plugins with no port
            // (listener_waypoint.go; extensions.go matchPorts never matches 0),
            // so port selectors would keep it from ever being applied.
            assert!(
                spec["match"].as_array().is_none_or(|m| m
                    .iter()
                    .all(|m| m["ports"].as_array().is_none_or(Vec::is_empty))),
                "{file}: a targetRefs plugin must not select ports"
            );
        } else {
            let ports = &spec["match"][0]["ports"];
            assert_eq!(
                ports[0]["number"], 80,
                "{file}: match the container port 80"
            );
        }
        schemes.insert(
            spec["url"]
                .as_str()
                .unwrap()
                .split("://")
                .next()
                .unwrap()
                .to_string(),
        );
        // Enforcing plugins must fail closed; only audit may fail open.
        let audit = spec["pluginConfig"]["action"] == "audit";
        assert_eq!(
            spec["failStrategy"] == "FAIL_OPEN",
            audit,
            "{file}: FAIL_OPEN skips the filter entirely, so only audit plugins may use it"
        );
    }
    assert!(
        schemes.contains("oci") && schemes.contains("file"),
        "{schemes:?}"
    );
}

#[test]
fn every_wasmplugin_plugin_config_is_accepted_by_the_filters_own_parser() {
    for (file, p) in wasmplugins() {
        // Istio hands pluginConfig to the filter as a JSON string.
        let json = serde_json::to_vec(&p["spec"]["pluginConfig"]).unwrap();
        if let Err(e) = Config::parse(&json) {
            panic!(
                "{file} {}: pluginConfig refused by the filter: {e}",
                p["metadata"]["name"]
            );
        }
    }
}

#[test]
fn a_step_plugin_resolves_the_same_port_mode_as_policy_does_for_that_step() {
    let mut compared = 0;
    for (file, p) in wasmplugins() {
        let Some(step) = p["metadata"]["annotations"]["peerauth.dev/lab-step"].as_str() else {
            continue;
        };
        let config =
            Config::parse(&serde_json::to_vec(&p["spec"]["pluginConfig"]).unwrap()).unwrap();
        let report = policy_check(&step_sources(&repo().join("manifests/steps").join(step)));
        let ns = p["metadata"]["namespace"].as_str().unwrap();
        let selector = p["spec"]["selector"]["matchLabels"].as_object().unwrap();
        let workload = report
            .mesh
            .workloads
            .iter()
            .find(|w| {
                w.namespace == ns
                    && selector
                        .iter()
                        .all(|(k, v)| w.labels.get(k).map(String::as_str) == v.as_str())
            })
            .unwrap_or_else(|| panic!("{file}: selector matches no workload in {ns}"));
        let described = report.mesh.describe(workload);
        for port in workload.ports.iter().map(|p| u32::from(p.port)) {
            let expected = described
                .ports
                .get(&port)
                .map_or(described.workload.mode, |r| r.mode);
            assert_eq!(
                config.mode_for(Some(port)),
                expected,
                "{file} vs step {step}, port {port}"
            );
        }
        compared += 1;
    }
    assert_eq!(compared, 3, "one plugin each for steps 4, 5 and 6");
}

#[test]
fn the_steps_resolve_to_the_modes_the_seed_lab_describes() {
    // The lab's own narrative, so a step file edited by mistake shows up here.
    let expect: [(&str, &[(&str, MtlsMode)]); 6] = [
        (
            "1-no-policy",
            &[("foo", MtlsMode::Permissive), ("bar", MtlsMode::Permissive)],
        ),
        (
            "2-mesh-strict",
            &[("foo", MtlsMode::Strict), ("bar", MtlsMode::Strict)],
        ),
        (
            "3-namespace-strict",
            &[("foo", MtlsMode::Strict), ("bar", MtlsMode::Permissive)],
        ),
        (
            "4-workload-strict",
            &[("foo", MtlsMode::Permissive), ("bar", MtlsMode::Strict)],
        ),
        (
            "5-port-level-disable",
            &[("foo", MtlsMode::Permissive), ("bar", MtlsMode::Disable)],
        ),
        (
            "6-precedence",
            &[("foo", MtlsMode::Disable), ("bar", MtlsMode::Permissive)],
        ),
    ];
    for (step, modes) in expect {
        let report = policy_check(&step_sources(&repo().join("manifests/steps").join(step)));
        for (ns, mode) in modes {
            let w = report
                .mesh
                .workloads
                .iter()
                .find(|w| w.namespace == *ns && w.name == "httpbin")
                .unwrap();
            let d = report.mesh.describe(w);
            assert_eq!(d.ports[&80].mode, *mode, "{step}: httpbin.{ns}:80");
        }
    }
}

// ---- the checkers can fail -----------------------------------------------------------

const PA: &str = r#"
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: httpbin
  namespace: bar
spec:
  selector:
    matchLabels:
      app: httpbin
  mtls:
    mode: STRICT
  portLevelMtls:
    80:
      mode: DISABLE
"#;

fn wasmplugin_text() -> String {
    read(&repo().join("manifests/wasmplugin/peerauth-strict-httpbin-bar.yaml"))
}

#[test]
fn the_unbroken_negative_test_bases_pass() {
    assert_eq!(check_one(PA), vec![]);
    assert_eq!(check_one(&wasmplugin_text()), vec![]);
}

#[test]
fn an_unknown_mtls_mode_is_refused_by_the_crd_and_by_policy() {
    let broken = PA.replace("mode: STRICT", "mode: STRIKT");
    assert_refused(&broken, "unsupported value \"STRIKT\"");
    let errors = admission_errors(&[("broken.yaml".into(), broken)]);
    assert!(errors.iter().any(|e| e.contains("STRIKT")), "{errors:#?}");
}

#[test]
fn port_level_mtls_without_a_selector_is_refused_by_the_crd_and_by_policy() {
    let broken = PA.replace("  selector:\n    matchLabels:\n      app: httpbin\n", "");
    assert_refused(&broken, "portLevelMtls requires selector");
    let errors = admission_errors(&[("broken.yaml".into(), broken)]);
    assert!(
        errors.iter().any(|e| e.contains("port level mTLS")),
        "{errors:#?}"
    );
}

#[test]
fn port_keys_out_of_range_or_not_numbers_are_refused() {
    assert_refused(
        &PA.replace("    80:", "    70000:"),
        "port must be between 1-65535",
    );
    assert_refused(
        &PA.replace("    80:", "    http:"),
        "port must be between 1-65535",
    );
}

#[test]
fn wildcards_and_overlong_values_in_selectors_are_refused() {
    assert_refused(
        &PA.replace("app: httpbin", "app: \"http*\""),
        "wildcard not allowed in label value match",
    );
    assert_refused(
        &PA.replace("app: httpbin", "\"ap*\": httpbin"),
        "wildcard not allowed in label key match",
    );
    assert_refused(
        &PA.replace("app: httpbin", &format!("app: {}", "x".repeat(64))),
        "at most 63 characters",
    );
}

#[test]
fn a_wasmplugin_with_both_selector_and_target_refs_is_refused() {
    let broken = wasmplugin_text().replace(
        "spec:\n  selector:",
        "spec:\n  targetRefs:\n    - kind: Service\n      name: httpbin\n  selector:",
    );
    assert_refused(&broken, "only one of targetRefs or selector can be set");
}

#[test]
fn a_wasmplugin_with_a_malformed_sha256_is_refused() {
    let text = wasmplugin_text();
    let add = |sha: &str| text.replace("  url: oci://", &format!("  sha256: {sha}\n  url: oci://"));
    assert_eq!(
        check_one(&add(&"a".repeat(64))),
        vec![],
        "a well-formed digest passes"
    );
    assert_refused(&add(&"A".repeat(64)), "does not match");
    assert_refused(&add("abc123"), "does not match");
}

#[test]
fn wasmplugin_enums_ranges_lists_and_url_schemes_are_checked() {
    let text = wasmplugin_text();
    assert_refused(
        &text.replace("phase: AUTHN", "phase: AUTHENTICATION"),
        "unsupported value",
    );
    assert_refused(
        &text.replace("failStrategy: FAIL_CLOSE", "failStrategy: FAIL_CLOSED"),
        "unsupported value",
    );
    assert_refused(
        &text.replace("- number: 80", "- number: 0"),
        "below the minimum",
    );
    assert_refused(
        &text.replace("- number: 80", "- number: 80\n        - number: 80"),
        "duplicate entry",
    );
    assert_refused(
        &text.replace("priority: 1000", "priority: 4294967296"),
        "integer format",
    );
    assert_refused(
        &text.replace("url: oci://", "url: ftp://"),
        "url must have schema one of",
    );
    let refs: String = (0..17)
        .map(|i| format!("    - kind: Gateway\n      name: gw{i}\n"))
        .collect();
    let many = text.replace(
        "  selector:\n    matchLabels:\n      app: httpbin\n",
        &format!("  targetRefs:\n{refs}"),
    );
    assert_refused(&many, "at most 16 items");
    let cross = text.replace(
        "  selector:\n    matchLabels:\n      app: httpbin\n",
        "  targetRefs:\n    - kind: Gateway\n      name: gw\n      namespace: other\n",
    );
    assert_refused(
        &cross,
        "cross namespace referencing is not currently supported",
    );
}

#[test]
fn unknown_fields_are_refused_except_inside_plugin_config() {
    let text = wasmplugin_text();
    assert_refused(
        &text.replace("  phase: AUTHN", "  phase: AUTHN\n  fase: AUTHN"),
        "unknown field \"fase\"",
    );
    // pluginConfig is x-kubernetes-preserve-unknown-fields: anything goes for the CRD…
    let odd = text.replace(
        "    action: enforce",
        "    action: enforce\n    acton: audit",
    );
    assert_eq!(check_one(&odd), vec![]);
    // …which is why the filter's own parser must catch the typo.
    let doc = &crd::yaml_documents(&odd).unwrap()[0];
    let err =
        Config::parse(&serde_json::to_vec(&doc["spec"]["pluginConfig"]).unwrap()).unwrap_err();
    assert!(err.to_string().contains("acton"), "{err}");
}

#[test]
fn destination_rule_durations_use_the_crds_cel_rule() {
    let dr = r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: httpbin
  namespace: bar
spec:
  host: httpbin.bar.svc.cluster.local
  trafficPolicy:
    connectionPool:
      tcp:
        connectTimeout: CT
    tls:
      mode: ISTIO_MUTUAL
"#;
    assert_eq!(check_one(&dr.replace("CT", "1.5s")), vec![]);
    assert_refused(
        &dr.replace("CT", "500us"),
        "must be a valid duration greater than 1ms",
    );
    assert_refused(
        &dr.replace("CT", "soon"),
        "must be a valid duration greater than 1ms",
    );
    assert_refused(&dr.replace("ISTIO_MUTUAL", "MTLS"), "unsupported value");
}

#[test]
fn core_kinds_are_checked_by_hand_for_the_fields_that_break_deploys() {
    let workloads = read(&repo().join("manifests/workloads/bar.yaml"));
    assert_refused(
        &workloads.replacen(
            "      version: v1\n  template:",
            "      version: v2\n  template:",
            1,
        ),
        "does not match the pod template's labels",
    );
    assert_refused(
        &workloads.replace("targetPort: 80", "targetPort: 0"),
        "not a port number",
    );
    assert_refused(
        &workloads.replace("  namespace: bar\n", ""),
        "missing \"namespace\"",
    );
    assert_refused(
        &workloads.replace("name: httpbin\n  namespace", "name: HttpBin\n  namespace"),
        "DNS-1123",
    );
    assert_refused(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\n  namespace: y\n",
        "no schema known",
    );
    assert_refused(
        &PA.replace("security.istio.io/v1", "security.istio.io/v1alpha1"),
        "is not a served version",
    );
}

#[test]
fn a_cel_rule_the_checker_does_not_know_is_a_violation_not_a_pass() {
    let dir = std::env::temp_dir().join(format!("peerauth-crd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let crd = read(&crd::shared_crd_dir().join("peerauthentication.crd.istio-istio.yaml")).replace(
        "rule: '!self.contains(\"*\")'",
        "rule: 'self.startsWith(\"x\")'",
    );
    std::fs::write(dir.join("pa.yaml"), crd).unwrap();
    let crds = Crds::load_dir(&dir).unwrap();
    let v = crds.check_text("pa.yaml", PA);
    assert!(
        v.iter()
            .any(|v| v.message.contains("unrecognised CEL rule")),
        "{v:#?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn go_durations_and_request_uris_parse_like_go() {
    assert_eq!(crd::go_duration_nanos("1ms"), Some(1_000_000));
    assert_eq!(crd::go_duration_nanos("1h2m0.5s"), Some(3_720_500_000_000));
    assert_eq!(crd::go_duration_nanos("0"), Some(0));
    assert_eq!(crd::go_duration_nanos("10"), None);
    assert_eq!(crd::go_duration_nanos(""), None);
    assert_eq!(
        crd::go_request_uri_scheme("oci://ghcr.io/a/b:1").as_deref(),
        Some("oci")
    );
    assert_eq!(
        crd::go_request_uri_scheme("FILE:///x.wasm").as_deref(),
        Some("file")
    );
    assert_eq!(crd::go_request_uri_scheme("/abs/path").as_deref(), Some(""));
    assert_eq!(crd::go_request_uri_scheme("ghcr.io/a/b:1"), None);
    assert_eq!(crd::go_request_uri_scheme("://x"), None);
}

#[test]
fn the_cacerts_secret_recipe_from_certgen_is_an_appliable_secret_with_the_four_files() {
    use certgen::{Ca, KeyAlgorithm};
    let root = Ca::new_root(
        "peerauth",
        "peerauth root CA",
        KeyAlgorithm::EcdsaP256,
        3650,
        None,
    )
    .unwrap();
    let ca = root
        .intermediate("cluster1", KeyAlgorithm::EcdsaP256, 730)
        .unwrap();
    let yaml = certgen::secret::cacerts_yaml(&ca, "istio-system");
    assert_eq!(check_one(&yaml), vec![]);
    let doc = &crd::yaml_documents(&yaml).unwrap()[0];
    assert_eq!(doc["metadata"]["name"], "cacerts");
    let mut keys: Vec<&String> = doc["data"].as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "ca-cert.pem",
            "ca-key.pem",
            "cert-chain.pem",
            "root-cert.pem"
        ]
    );
    // And the script that wraps it exists and is executable.
    let script = repo().join("manifests/cacerts/make-cacerts.sh");
    use std::os::unix::fs::PermissionsExt;
    assert!(std::fs::metadata(&script).unwrap().permissions().mode() & 0o111 != 0);
}
