//! The demo in CI: the whole seed lab and the scenarios in network-namespace pods,
//! every call compared with the lab's documented result and with policy; nothing left
//! behind afterwards, nor after a SIGINT mid-step. Needs root, envoy and the built
//! filter (`make build-filter`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use peerauth_tests::demo::expected::{CallResult, SeedLab};
use peerauth_tests::demo::pods::LabConfig;
use peerauth_tests::demo::report::StepReport;
use peerauth_tests::demo::walk::{self, Event};
use peerauth_tests::node;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn config() -> LabConfig {
    let mut c = LabConfig::default_for(&repo());
    c.app = PathBuf::from(env!("CARGO_BIN_EXE_lab-app"));
    c
}

fn call<'r>(
    step: &'r StepReport,
    client: &str,
    server: &str,
) -> &'r peerauth_tests::demo::report::CallReport {
    step.calls
        .iter()
        .find(|c| c.client == client && c.server == server)
        .unwrap_or_else(|| panic!("{}: no call {client} → {server}", step.name))
}

/// Lab entries (namespaces, files, processes) of labs owned by process `pid`.
fn leftovers_of_process(pid: u32) -> Vec<String> {
    let tag = format!("palab-{pid}-");
    node::leftovers()
        .into_iter()
        .filter(|l| l.contains(&tag))
        .collect()
}

#[test]
fn the_whole_seed_lab_and_the_scenarios_in_pods_agree_with_the_lab_and_with_policy_and_leave_nothing(
) {
    let mut log = String::new();
    let report = walk::walk(&config(), None, &mut |e: Event| match e {
        Event::Step(r) => log.push_str(&format!("{}\n{r}", r.name)),
        Event::Scene(t, lines) => log.push_str(&format!("[{t}]\n{}\n", lines.join("\n"))),
        _ => {}
    })
    .unwrap_or_else(|e| panic!("the lab could not run: {e}\n{log}"));
    let seed_lab = SeedLab::load(&repo()).unwrap();

    // Every step of the seed lab and both scenarios ran, and every call agrees.
    let names: Vec<&str> = report.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "1-no-policy",
            "2-mesh-strict",
            "3-namespace-strict",
            "4-workload-strict",
            "5-port-level-disable",
            "6-precedence",
            "catalog-strict",
            "hipster-shop-exception"
        ]
    );
    assert_eq!(report.calls(), 6 * 9 + 3 + 2);
    assert_eq!(report.agreeing(), report.calls(), "{log}");

    // What really happened, not only that three sources agreed.
    let step = |n: &str| report.steps.iter().find(|s| s.name == n).unwrap();
    let reset = call(step("2-mesh-strict"), "sleep.legacy", "httpbin.foo");
    assert_eq!(reset.observed.result, CallResult::reset(), "{log}");
    let meshed = call(step("1-no-policy"), "sleep.foo", "httpbin.bar");
    let xfcc = meshed.observed.xfcc.as_deref().unwrap_or_default();
    assert!(
        xfcc.contains("URI=spiffe://cluster.local/ns/foo/sa/sleep"),
        "auto mTLS carries sleep.foo's identity: {xfcc}"
    );
    let plain = call(step("5-port-level-disable"), "sleep.foo", "httpbin.bar");
    assert_eq!(plain.observed.result, CallResult::ok(false), "{log}");
    let catalog = call(step("catalog-strict"), "curl.curl", "frontend.workshop");
    assert_eq!(catalog.observed.result, CallResult::reset(), "{log}");
    let hipster = call(
        step("hipster-shop-exception"),
        "curl.noistio",
        "frontend.hipstershopv1v2",
    );
    assert_eq!(hipster.observed.result, CallResult::reset(), "{log}");

    // The filter's counters carry the container port.
    let counters = &step("4-workload-strict").counters;
    assert!(
        !counters.is_empty(),
        "step 4 loads the enforcing plugin on httpbin.bar"
    );
    for (_, cs) in counters {
        for c in cs {
            assert_eq!(c.label("port"), Some("80"), "{c}");
        }
    }

    // Data in motion: the plaintext call is readable on httpbin.foo's eth0, mTLS is not.
    assert_eq!(report.data_in_motion.len(), 2, "{log}");
    assert!(
        report.wire_as_expected(&seed_lab),
        "{:#?}",
        report.data_in_motion
    );
    let plain = report.data_in_motion.iter().find(|w| !w.mtls_seen).unwrap();
    assert!(plain.marker_readable && plain.request_line_readable);
    let mtls = report.data_in_motion.iter().find(|w| w.mtls_seen).unwrap();
    assert!(!mtls.marker_readable && !mtls.request_line_readable);

    // The seed's debug-log line, for a pod with a sidecar and one without.
    assert_eq!(report.socket_matches.len(), 2);
    assert!(
        report.socket_matches.iter().all(|c| c.ok()),
        "{:#?}",
        report.socket_matches
    );

    // The forged XFCC: stripped by the client's sidecar, refused when smuggled around it.
    let forged = report.forged_xfcc.as_ref().unwrap();
    assert!(!forged.via_sidecar_forwarded, "{forged:#?}");
    assert_eq!(
        (forged.honest_status, forged.forged_status),
        (200, 403),
        "{forged:#?}"
    );
    assert!(forged.caught(), "{forged:#?}");

    // Safe to go STRICT? Not while sleep.legacy calls, yes after.
    assert_eq!(report.strict_readout.len(), 2);
    for round in &report.strict_readout {
        assert!(round.as_expected(), "{round:#?}");
        for s in &round.servers {
            assert_eq!(s.ports(), ["80"], "{s:#?}");
            // sleep.foo and sleep.bar come over mTLS; sleep.legacy, while it still
            // calls, is the one plaintext request STRICT would refuse.
            assert_eq!(s.mtls(), 2, "{s:#?}");
            let plaintext = u64::from(round.expect_plaintext);
            assert_eq!(s.plaintext_would_reject(), plaintext, "{s:#?}");
        }
    }

    // peerauth check / describe for the scenarios.
    let explained = |n: &str| &report.explanations.iter().find(|(s, _)| s == n).unwrap().1;
    assert!(explained("catalog-strict").output.contains("STRICT"));
    assert!(explained("hipster-shop-exception")
        .output
        .contains("frontend"));

    assert!(report.all_agree(&seed_lab), "{log}");
    assert_eq!(
        leftovers_of_process(std::process::id()),
        Vec::<String>::new()
    );
}

#[test]
fn a_sigint_mid_step_leaves_no_namespace_link_file_or_process_behind() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_demo"))
        .args(["--step", "2-mesh"])
        .env("PEERAUTH_LAB_APP", env!("CARGO_BIN_EXE_lab-app"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let stdout = child.stdout.take().unwrap();
    // Keep reading to the end in a thread: a closed pipe would kill the demo with
    // EPIPE on its next line instead of letting the signal handler do the work.
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    // Interrupt once the pods exist and the Envoys are being started.
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|e| panic!("{e}: {seen:#?}"));
        let go = line.contains("starting their Envoys");
        seen.push(line);
        if go {
            break;
        }
    }
    assert!(
        !leftovers_of_process(pid).is_empty(),
        "the lab exists mid-step: {seen:#?}"
    );
    std::thread::sleep(Duration::from_millis(300));
    let status = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    reader.join().unwrap();
    seen.extend(rx.try_iter());
    assert_eq!(exit.code(), Some(130), "{seen:#?}");
    assert_eq!(leftovers_of_process(pid), Vec::<String>::new());
}

#[test]
fn the_demo_prints_one_json_document_and_exits_zero_when_everything_agrees() {
    let out = Command::new(env!("CARGO_BIN_EXE_demo"))
        .args(["--step", "4-workload", "--json"])
        .env("PEERAUTH_LAB_APP", env!("CARGO_BIN_EXE_lab-app"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("summary: 9/9 calls agree with the seed lab and with policy"),
        "{stderr}"
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["ok"], true);
    let calls = doc["steps"][0]["calls"].as_array().unwrap();
    assert_eq!(calls.len(), 9);
    let legacy_bar = calls
        .iter()
        .find(|c| c["client"] == "sleep.legacy" && c["server"] == "httpbin.bar")
        .unwrap();
    assert_eq!(legacy_bar["observed"]["code"], "000");
    assert_eq!(legacy_bar["observed"]["curl_exit"], 56);
    assert_eq!(legacy_bar["expected_by_lab"]["code"], "000");
    assert_eq!(legacy_bar["predicted_by_policy"]["code"], "000");
    assert_eq!(doc["forged_xfcc"]["forged_status"], 403);
    assert_eq!(doc["strict_readout"].as_array().unwrap().len(), 2);
    let counters = doc["steps"][0]["filter_counters"][0]["counters"]
        .as_array()
        .unwrap();
    assert!(
        counters.iter().all(|c| c["labels"]["port"] == "80"),
        "{counters:#?}"
    );
}

#[test]
fn without_the_tools_it_needs_the_demo_says_what_is_missing_in_one_line_and_exits_2() {
    let child = Command::new(env!("CARGO_BIN_EXE_demo"))
        .env("PATH", "/nonexistent")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("not found") && stderr.contains("apt-get install"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
    assert_eq!(
        leftovers_of_process(pid),
        Vec::<String>::new(),
        "nothing was created"
    );
}

#[test]
fn a_step_filter_that_matches_nothing_is_refused_with_exit_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_demo"))
        .args(["--step", "no-such-step"])
        .env("PEERAUTH_LAB_APP", env!("CARGO_BIN_EXE_lab-app"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no step's name contains \"no-such-step\""),
        "{stderr}"
    );
}

#[test]
fn the_whole_demo_ends_with_seed_004s_ambient_answer_marked_as_computed_not_observed() {
    let out = Command::new(env!("CARGO_BIN_EXE_demo"))
        .arg("--json")
        .env("PEERAUTH_LAB_APP", env!("CARGO_BIN_EXE_lab-app"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("computed offline by policy, NOT observed: the lab has no ztunnel"),
        "{stderr}"
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let runs = doc["ambient_offline"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "describe and matrix");
    let matrix = runs[1]["output"].as_str().unwrap();
    // Seed 004 in ambient mode (manifests/lab/ambient/README.md, istio.io's ambient
    // PeerAuthentication docs): mesh STRICT resets the caller outside the mesh at
    // httpbin.foo; bar's DISABLE is not supported by ztunnel and lets it in.
    let legacy = matrix
        .lines()
        .find(|l| l.starts_with("sleep.legacy"))
        .unwrap();
    assert_eq!(
        legacy.split_whitespace().collect::<Vec<_>>(),
        ["sleep.legacy", "200", "plain", "reset", "200", "plain"],
        "{matrix}"
    );
    assert!(runs[0]["output"]
        .as_str()
        .unwrap()
        .contains("Data plane: ambient"));
}
