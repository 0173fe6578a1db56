//! The local mesh demo's engine, in CI: real Envoys configured from the seed lab's
//! manifests the way istiod would, real requests, compared with `policy`.
//! Needs `envoy` and the built filter (`make build-filter`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use peerauth_tests::demo::lab::{self, CellReport, Lab, LabConfig, Step};
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn lab() -> Lab {
    let config = LabConfig::default_for(&repo());
    Lab::start(config)
        .unwrap_or_else(|e| panic!("{e} (the demo test needs envoy and `make build-filter`)"))
}

fn step(name: &str) -> Step {
    lab::load_steps(&repo())
        .unwrap()
        .into_iter()
        .find(|s| s.name.starts_with(name))
        .unwrap()
}

fn cell<'a>(cells: &'a [CellReport], client: &str, server: &str) -> &'a CellReport {
    cells
        .iter()
        .find(|c| c.client == client && c.server == server)
        .unwrap()
}

fn quiet(_: &str) {}

#[test]
fn mesh_strict_and_port_level_disable_through_real_envoys_match_policy_cell_by_cell() {
    let lab = lab();
    let strict = lab.run_step(&step("2-"), &mut quiet).unwrap();
    assert_eq!(strict.cells.len(), 9);
    let bad: Vec<_> = strict.cells.iter().filter(|c| !c.agrees()).collect();
    assert!(bad.is_empty(), "{strict}");
    // What really happened, not only that it matched.
    let legacy = cell(&strict.cells, "sleep.legacy", "httpbin.foo");
    assert_eq!(
        legacy.observed.status, 0,
        "plaintext to a STRICT port is reset"
    );
    let meshed = cell(&strict.cells, "sleep.foo", "httpbin.bar");
    assert_eq!(meshed.observed.status, 200);
    assert!(meshed.observed.mtls_seen, "{:?}", meshed.observed.xfcc);

    let port_level = lab.run_step(&step("5-"), &mut quiet).unwrap();
    assert!(
        port_level.cells.iter().all(CellReport::agrees),
        "{port_level}"
    );
    let plain = cell(&port_level.cells, "sleep.foo", "httpbin.bar");
    assert_eq!(plain.observed.status, 200);
    assert_eq!(
        plain.observed.xfcc, None,
        "DR DISABLE on 8000 + DISABLE on container port 80: plaintext"
    );
    assert_eq!(
        port_level
            .modes
            .iter()
            .find(|(ns, _)| ns == "bar")
            .unwrap()
            .1,
        Some(policy::MtlsMode::Disable)
    );
}

#[test]
fn a_smuggled_xfcc_element_is_rejected_by_the_filter_and_counted() {
    let lab = lab();
    let report = lab.forged_xfcc(&step("1-"), &mut quiet).unwrap();
    assert_eq!(report.honest_status, 200);
    assert_eq!(report.forged_status, 403);
    let smuggled: u64 = report
        .counters
        .iter()
        .filter(|c| c.name == "peerauth_xfcc_forged_total" && c.label("form") == Some("smuggled"))
        .map(|c| c.value)
        .sum();
    assert_eq!(smuggled, 1, "{:?}", report.counters);
}

#[test]
fn the_audit_counters_say_not_safe_while_a_plaintext_client_remains_and_safe_after() {
    let lab = lab();
    let first = step("1-");
    let before = lab
        .readiness(&first, &["foo", "bar", "legacy"], &mut quiet)
        .unwrap();
    assert_eq!(before.len(), 2, "httpbin.foo and httpbin.bar have sidecars");
    for r in &before {
        assert_eq!(
            r.plaintext_would_reject(),
            1,
            "{}: {:?}",
            r.workload,
            r.counters
        );
        assert_eq!(r.mtls(), 2, "{}", r.workload);
    }
    let after = lab.readiness(&first, &["foo", "bar"], &mut quiet).unwrap();
    for r in &after {
        assert_eq!(
            r.plaintext_would_reject(),
            0,
            "{}: {:?}",
            r.workload,
            r.counters
        );
        assert_eq!(r.mtls(), 2, "{}", r.workload);
    }
}

#[test]
fn filter_counters_are_decoded_from_envoy_stat_names() {
    let stats = "cluster.app.upstream_cx_total: 3\n\
        wasmcustom.port=.=80;.;mode=.=STRICT;.;security=.=plaintext;.;outcome=.=would_reject;.;reason=.=plaintext_on_strict;.;peerauth_requests_total: 2\n\
        wasmcustom.port=.=80;.;form=.=smuggled;.;handling=.=rejected;.;peerauth_xfcc_forged_total: 1\n";
    let counters = lab::parse_filter_counters(stats);
    assert_eq!(counters.len(), 2);
    assert_eq!(counters[0].name, "peerauth_requests_total");
    assert_eq!(counters[0].label("outcome"), Some("would_reject"));
    assert_eq!(counters[0].value, 2);
    assert_eq!(counters[1].label("form"), Some("smuggled"));
}

#[test]
fn the_plugin_config_renames_container_port_80_to_the_local_listener_port() {
    let pa = serde_json::json!({
        "apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
        "metadata": {"name": "httpbin", "namespace": "bar"},
        "spec": {"selector": {"matchLabels": {"app": "httpbin"}}, "mtls": {"mode": "STRICT"},
                 "portLevelMtls": {"80": {"mode": "DISABLE"}}}
    });
    let labels = [("app".to_string(), "httpbin".to_string())]
        .into_iter()
        .collect();
    let config = lab::plugin_config("enforce", "bar", &labels, "istio-system", &[pa], 31080);
    assert_eq!(
        config["peerAuthentications"][0]["spec"]["portLevelMtls"]["31080"]["mode"],
        "DISABLE"
    );
    assert!(config["peerAuthentications"][0]["spec"]["portLevelMtls"]
        .get("80")
        .is_none());
    let parsed = peerauth_filter::config::Config::parse(config.to_string().as_bytes()).unwrap();
    assert_eq!(parsed.mode_for(Some(31080)), policy::MtlsMode::Disable);
    assert_eq!(parsed.mode_for(Some(9090)), policy::MtlsMode::Strict);
}

#[test]
fn a_cell_whose_real_result_differs_from_the_prediction_is_flagged() {
    use lab::{Observed, Predicted};
    use policy::reach::{ClientTls, Outcome};
    let make = |outcome, mtls, status, mtls_seen, client_sidecar| CellReport {
        client: "sleep.foo".into(),
        server: "httpbin.bar".into(),
        client_sidecar,
        predicted: Predicted {
            outcome,
            mtls,
            client_tls: ClientTls::IstioMutual,
            server_mode: policy::MtlsMode::Strict,
        },
        observed: Observed {
            status,
            mtls_seen,
            xfcc: None,
        },
    };
    assert!(make(Outcome::Allowed, true, 200, true, true).agrees());
    assert!(
        !make(Outcome::Allowed, true, 200, false, true).agrees(),
        "mTLS predicted, plaintext seen"
    );
    assert!(
        !make(Outcome::Allowed, false, 0, false, false).agrees(),
        "200 predicted, reset seen"
    );
    assert!(make(Outcome::Reset, false, 0, false, false).agrees());
    assert!(
        !make(Outcome::Reset, false, 200, false, false).agrees(),
        "reset predicted, 200 seen"
    );
    assert!(
        make(Outcome::Reset, false, 503, false, true).agrees(),
        "a client sidecar turns a reset into 503"
    );
    assert!(!make(Outcome::Failed, false, 200, false, true).agrees());
}

#[test]
fn the_demo_command_runs_a_step_end_to_end_and_exits_zero_when_everything_agrees() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_demo"))
        .args(["--step", "4-workload"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("[step 1/1] 4-workload-strict"), "{stdout}");
    assert!(
        stdout.contains("sleep.legacy → httpbin.bar      000 reset"),
        "{stdout}"
    );
    assert!(stdout.contains("9/9 agree with policy"), "{stdout}");
    assert!(stdout.contains("403 — rejected by the filter"), "{stdout}");
    assert!(
        stdout.contains("0 plaintext — safe to go STRICT"),
        "{stdout}"
    );
    assert!(stdout.contains("summary: 9/9 calls agree"), "{stdout}");
}
