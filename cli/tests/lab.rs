//! `peerauth lab` end to end, the real binary as root: Istio's peer-authentication
//! simulation cases (`cli/tests/lab/expected.json`, written from
//! istio/istio `pilot/pkg/networking/core/peer_authentication_simulation_test.go`),
//! the seed lab's step 2 against `manifests/lab/seed-lab.json`, seed 003's
//! hipster-shop exception, `--keep`, and bad input. Every run must leave nothing of
//! its lab behind. Needs root, envoy, iptables and tcpdump (`make setup`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn peerauth(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_peerauth"))
        .current_dir(repo())
        .args(args)
        .output()
        .unwrap()
}

/// [`peerauth`], and whatever the run left of a lab it named after its pid.
fn peerauth_leaving(args: &[&str]) -> (Output, Vec<String>) {
    let child = Command::new(env!("CARGO_BIN_EXE_peerauth"))
        .current_dir(repo())
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let id = format!("palab-{}-0", child.id());
    let out = child.wait_with_output().unwrap();
    (out, peerauth_lab::node::leftovers_of(&id))
}

/// Run `peerauth lab … --json`; the exit code and the document.
fn lab(files: &[String], calls: &[&str], extra: &[&str]) -> (i32, Value) {
    let mut args: Vec<String> = vec!["lab".into(), "--json".into()];
    for f in files {
        args.push("-f".into());
        args.push(f.clone());
    }
    for c in calls {
        args.push(format!("--call={c}"));
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = peerauth(&refs);
    let code = out.status.code().unwrap_or(-1);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "peerauth {refs:?} exited {code} without a JSON document ({e}); stderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    if extra.is_empty() {
        let id = doc["lab"].as_str().unwrap();
        let left = peerauth_lab::node::leftovers_of(id);
        assert!(left.is_empty(), "lab {id} left {left:?}");
    }
    (code, doc)
}

/// A result as the data files spell it.
fn spelled(observed: &Value) -> String {
    match observed["result"].as_str().unwrap() {
        "success" if observed["mtls"] == true => "success-mtls".into(),
        "success" => "success-plaintext".into(),
        other => other.into(),
    }
}

#[test]
fn istios_peer_authentication_simulation_cases_hold_in_the_lab_and_in_policy() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lab");
    let data: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let mut wrong = Vec::new();
    for case in data["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let files: Vec<String> = case["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| dir.join(f.as_str().unwrap()).display().to_string())
            .collect();
        let calls: Vec<&str> = case["calls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["call"].as_str().unwrap())
            .collect();
        let (code, doc) = lab(&files, &calls, &[]);
        let got = doc["calls"].as_array().unwrap();
        assert_eq!(got.len(), calls.len(), "{name}");
        for (want, got) in case["calls"].as_array().unwrap().iter().zip(got) {
            let seen = spelled(&got["observed"]);
            if seen != want["expect"].as_str().unwrap() {
                wrong.push(format!(
                    "{name}: {} observed {seen}, Istio's case says {} ({}); {}",
                    want["call"], want["expect"], want["simulation"], got["detail"]
                ));
            }
            if got["agrees"] != true {
                wrong.push(format!(
                    "{name}: {} observed {seen}, policy predicts {}",
                    want["call"], got["predicted"]
                ));
            }
        }
        let agree = got.iter().all(|c| c["agrees"] == true);
        assert_eq!(code, if agree { 0 } else { 1 }, "{name}: exit code");
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_seed_labs_step_2_matrix_agrees_with_policy_and_with_the_pages_results() {
    let (code, doc) = lab(
        &[
            "manifests/workloads".into(),
            "manifests/steps/2-mesh-strict".into(),
        ],
        &[],
        &[],
    );
    assert_eq!(code, 0, "{doc:#}");
    assert_eq!(doc["agree"], doc["total"]);
    // The page's own table for this step (independent of policy): 200 is a success
    // (mTLS as documented), 000 a reset.
    let seed: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("manifests/lab/seed-lab.json")).unwrap(),
    )
    .unwrap();
    let step = seed["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "2-mesh-strict")
        .unwrap();
    let mut compared = 0;
    for want in step["calls"].as_array().unwrap() {
        let (name, ns) = want["client"].as_str().unwrap().split_once('.').unwrap();
        let call = format!(
            "{ns}/{name} -> {}:{}",
            want["service"].as_str().unwrap(),
            want["port"]
        );
        let got = doc["calls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["call"] == call.as_str())
            .unwrap_or_else(|| panic!("{call} is not in the matrix"));
        let expected = match (want["code"].as_str().unwrap(), want["mtls"] == true) {
            ("200", true) => "success-mtls",
            ("200", false) => "success-plaintext",
            _ => "reset",
        };
        assert_eq!(spelled(&got["observed"]), expected, "{call}: {got:#}");
        compared += 1;
    }
    assert!(
        compared >= 9,
        "only {compared} of the page's calls compared"
    );
}

#[test]
fn seed_003s_hipster_shop_exception_still_resets_the_call_from_noistio() {
    let (code, doc) = lab(
        &["manifests/lab/scenarios/hipster-shop-exception".into()],
        &[],
        &[],
    );
    assert_eq!(code, 0, "{doc:#}");
    let call = doc["calls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["call"] == "noistio/curl -> frontend.hipstershopv1v2:80")
        .unwrap();
    assert_eq!(spelled(&call["observed"]), "reset", "{call:#}");
}

#[test]
fn keep_leaves_the_pods_reachable_until_the_printed_teardown_runs() {
    let (code, doc) = lab(
        &["manifests/lab/scenarios/hipster-shop-exception".into()],
        &["hipstershopv1v2/loadgenerator -> frontend.hipstershopv1v2:80"],
        &["--keep"],
    );
    let id = doc["lab"].as_str().unwrap().to_string();
    let kept = &doc["kept"];
    let teardown = kept["teardown"].as_str().unwrap().to_string();
    let reach = kept["reach"].as_array().unwrap();
    let still_there = peerauth_lab::node::leftovers_of(&id);
    let loadgen = reach
        .iter()
        .find(|r| r[0] == "hipstershopv1v2/loadgenerator")
        .map(|r| r[1].as_str().unwrap().to_string());
    let answered = loadgen.as_ref().map(|cmd| {
        let words: Vec<&str> = cmd.split_whitespace().collect();
        Command::new(words[0]).args(&words[1..]).output().unwrap()
    });
    let removed = Command::new("sh")
        .args(teardown.split_whitespace().skip(1))
        .status()
        .unwrap();
    assert_eq!(code, 0, "{doc:#}");
    assert!(!still_there.is_empty(), "nothing of lab {id} was kept");
    let answered = answered.expect("no command to reach the loadgenerator pod");
    assert!(
        String::from_utf8_lossy(&answered.stdout).contains("origin"),
        "{answered:?}"
    );
    assert!(removed.success());
    let left = peerauth_lab::node::leftovers_of(&id);
    assert!(left.is_empty(), "the teardown left {left:?}");
}

#[test]
fn a_bad_call_or_a_missing_file_is_one_line_and_exit_2() {
    for args in [
        vec![
            "lab",
            "-f",
            "manifests/workloads",
            "--call",
            "sleep -> httpbin.foo:8000",
        ],
        vec![
            "lab",
            "-f",
            "manifests/workloads",
            "--call",
            "ssl foo/httpbin:80",
        ],
        vec!["lab", "-f", "no/such/folder"],
        vec![
            "lab",
            "-f",
            "manifests/workloads",
            "--call",
            "foo/sleep -> nothing.foo:8000",
        ],
    ] {
        let out = peerauth(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().last().unwrap_or_default();
        assert!(last.starts_with("peerauth lab: "), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn a_client_sidecar_sends_plaintext_to_an_endpoint_port_its_own_policy_disables() {
    // istiod's EDS clears an endpoint's tlsMode when the endpoint's PeerAuthentication
    // resolves its port to DISABLE (`checkMtlsEnabled`,
    // pilot/pkg/xds/endpoints/mtls_checker.go), so auto mTLS sends plaintext to 9090
    // and mTLS to the STRICT 8080 of the same pod.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lab");
    let files: Vec<String> = [
        "tcp/workloads.yaml",
        "tcp/service-8080-9090.yaml",
        "pa/strict-9090-disable.yaml",
    ]
    .iter()
    .map(|f| dir.join(f).display().to_string())
    .collect();
    let (code, doc) = lab(
        &files,
        &["sim/client -> foo.sim:8080", "sim/client -> foo.sim:9090"],
        &[],
    );
    assert_eq!(code, 0, "{doc:#}");
    let seen: Vec<String> = doc["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| spelled(&c["observed"]))
        .collect();
    assert_eq!(seen, ["success-mtls", "success-plaintext"], "{doc:#}");
}

#[test]
fn the_filter_rejecting_what_policy_allows_shows_its_reason_and_exits_1() {
    // No PeerAuthentication (PERMISSIVE everywhere: policy lets plaintext in), but the
    // step-4 WasmPlugin enforces httpbin.bar's STRICT policy from its own pluginConfig.
    let (code, doc) = lab(
        &[
            "manifests/workloads".into(),
            "manifests/wasmplugin/peerauth-strict-httpbin-bar.yaml".into(),
        ],
        &[
            "legacy/sleep -> httpbin.bar:8000",
            "foo/sleep -> httpbin.bar:8000",
        ],
        &[],
    );
    assert_eq!(code, 1, "{doc:#}");
    let calls = doc["calls"].as_array().unwrap();
    assert_eq!(calls[0]["observed"]["result"], "rejected", "{doc:#}");
    assert_eq!(
        calls[0]["observed"]["reason"], "plaintext_on_strict",
        "{doc:#}"
    );
    assert_eq!(spelled(&calls[0]["predicted"]), "success-plaintext");
    assert_eq!(calls[0]["agrees"], false);
    assert_eq!(spelled(&calls[1]["observed"]), "success-mtls", "{doc:#}");
    assert_eq!(calls[1]["agrees"], true);
}

#[test]
fn ctrl_c_during_a_run_removes_everything_the_lab_created_and_exits_130() {
    // A pod calling its own ClusterIP without a sidecar hangs until curl's 10 s cap
    // (the lab's node does not masquerade hairpin traffic): time to interrupt.
    let child = Command::new(env!("CARGO_BIN_EXE_peerauth"))
        .current_dir(repo())
        .args([
            "lab",
            "-f",
            "manifests/workloads",
            "--call",
            "legacy/httpbin -> httpbin.legacy:8000",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let id = format!("palab-{}-0", child.id());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    // Wait for the three apps and four Envoys (the lab exists and is about to call).
    while peerauth_lab::node::leftovers_of(&id)
        .iter()
        .filter(|l| l.contains("process"))
        .count()
        < 7
    {
        assert!(
            std::time::Instant::now() < deadline,
            "lab {id} never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::thread::sleep(std::time::Duration::from_millis(1500));
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    let left = peerauth_lab::node::leftovers_of(&id);
    assert!(left.is_empty(), "lab {id} left {left:?}");
}

/// The files `peerauth lab` reads for a seed step or scenario of
/// `manifests/lab/seed-lab.json`: a seed step on top of the seed workloads with the
/// WasmPlugins `manifests/README.md` assigns it (`peerauth.dev/lab-step`); a scenario
/// on its own.
fn step_files(step: &str) -> Vec<String> {
    let scenario = format!("manifests/lab/scenarios/{step}");
    if repo().join(&scenario).is_dir() {
        return vec![scenario];
    }
    let mut files = vec![
        "manifests/workloads".into(),
        format!("manifests/steps/{step}"),
    ];
    let mut plugins: Vec<String> = std::fs::read_dir(repo().join("manifests/wasmplugin"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .contains(&format!("peerauth.dev/lab-step: {step}"))
        })
        .map(|p| p.display().to_string())
        .collect();
    plugins.sort();
    files.extend(plugins);
    files
}

#[test]
fn every_seed_step_and_scenario_shows_the_pages_results_and_agrees_with_policy() {
    let seed: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("manifests/lab/seed-lab.json")).unwrap(),
    )
    .unwrap();
    let mut wrong = Vec::new();
    for step in seed["steps"].as_array().unwrap() {
        let name = step["step"].as_str().unwrap();
        let calls: Vec<String> = step["calls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let (client, ns) = c["client"].as_str().unwrap().split_once('.').unwrap();
                format!(
                    "{ns}/{client} -> {}:{}",
                    c["service"].as_str().unwrap(),
                    c["port"]
                )
            })
            .collect();
        let refs: Vec<&str> = calls.iter().map(String::as_str).collect();
        let (code, doc) = lab(&step_files(name), &refs, &[]);
        for (want, got) in step["calls"]
            .as_array()
            .unwrap()
            .iter()
            .zip(doc["calls"].as_array().unwrap())
        {
            let expected = match (want["code"].as_str().unwrap(), want["mtls"] == true) {
                ("200", true) => "success-mtls",
                ("200", false) => "success-plaintext",
                _ => "reset",
            };
            let seen = spelled(&got["observed"]);
            if seen != expected || got["agrees"] != true {
                wrong.push(format!(
                    "{name}: {} observed {seen}, the page {expected}, policy {}",
                    got["call"], got["predicted"]
                ));
            }
        }
        if code != 0 {
            wrong.push(format!("{name}: exit {code}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn a_mesh_over_the_sidecar_limit_or_a_plugin_without_its_module_is_refused_before_anything_is_created(
) {
    let dir = std::env::temp_dir().join(format!("peerauth-lab-limit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut big = String::from(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: big\n  labels:\n    istio-injection: enabled\n",
    );
    for i in 0..25 {
        big.push_str(&format!(
            "---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: w{i}\n  namespace: big\nspec:\n  selector:\n    matchLabels:\n      app: w{i}\n  template:\n    metadata:\n      labels:\n        app: w{i}\n    spec:\n      containers:\n        - name: app\n          image: stand-in\n"
        ));
    }
    let big_file = dir.join("big.yaml");
    std::fs::write(&big_file, big).unwrap();
    let (out, left) = peerauth_leaving(&["lab", "-f", big_file.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("25 pods with a sidecar") && err.contains("at most 24"),
        "{err}"
    );
    assert!(left.is_empty(), "{left:?}");
    let (out, left) = peerauth_leaving(&[
        "lab",
        "-f",
        "manifests/workloads",
        "-f",
        "manifests/wasmplugin/peerauth-strict-httpbin-bar.yaml",
        "--wasm",
        "/nonexistent/peerauth_filter.wasm",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("no filter module at /nonexistent/peerauth_filter.wasm"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(left.is_empty(), "{left:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}
