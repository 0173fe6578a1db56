//! `peerauth readiness` on real filter output from the pod lab (cli/tests/readiness/,
//! how it was produced in its README) and on generated edge cases.
//!
//! Expected values come from the lab run, not from the code: the matrix the lab
//! ran had sleep.legacy and httpbin.legacy (no sidecar, 10.244.0.6 and .7) call
//! httpbin.foo and httpbin.bar twice each in plaintext, sidecar clients 6 times in
//! mTLS; between the two scrapes only sidecar clients called, 3 times each, plus
//! one plaintext request from sleep.legacy to httpbin.foo.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{json, peerauth, peerauth_with_stdin};
use peerauth_cli::readiness::{ReadinessDocument, Verdict};
use policy::MtlsMode;

const F: &str = "cli/tests/readiness";

fn fx(name: &str) -> String {
    format!("{F}/{name}")
}

fn readiness(args: &[String]) -> (i32, ReadinessDocument) {
    let mut all = vec!["readiness".to_string()];
    all.extend(args.iter().cloned());
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    json(&refs)
}

fn args(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

#[test]
fn the_labs_scrape_shows_who_still_sends_plaintext_resolved_to_workloads_without_sidecars() {
    let (code, doc) = readiness(&args(&[
        "--metrics",
        &format!("foo/httpbin={}", fx("httpbin.foo.1.prom")),
        &format!("bar/httpbin={}", fx("httpbin.bar.1.prom")),
        "--logs",
        &format!("bar/httpbin={}", fx("httpbin.bar.log")),
        "-f",
        &fx("cluster.yaml"),
    ]));
    assert_eq!(code, 1, "{:?}", doc.problems);
    assert!(doc.problems.is_empty(), "{:?}", doc.problems);
    assert_eq!(doc.workloads.len(), 2);
    for w in &doc.workloads {
        assert_eq!(w.sidecar, Some(true));
        assert_eq!(w.ports.len(), 1);
        let p = &w.ports[0];
        assert_eq!(p.port, 80);
        assert_eq!(p.current_mode, Some(MtlsMode::Permissive));
        assert_eq!(
            (p.mtls, p.plaintext, p.would_reject),
            (6, 4, 4),
            "{}",
            w.name
        );
        assert_eq!(p.verdict, Verdict::NotSafe);
    }
    let bar = doc.workloads.iter().find(|w| w.namespace == "bar").unwrap();
    let sources: Vec<(String, u64, bool)> = bar.ports[0]
        .plaintext_sources
        .iter()
        .map(|s| {
            let w = s.workload.as_ref().unwrap();
            (format!("{}/{}", w.namespace, w.name), s.requests, w.sidecar)
        })
        .collect();
    assert_eq!(
        sources,
        [
            ("legacy/sleep".to_string(), 2, false),
            ("legacy/httpbin".to_string(), 2, false)
        ]
    );
    // foo has no log given: the verdict says its sources are unknown.
    let foo = doc.workloads.iter().find(|w| w.namespace == "foo").unwrap();
    assert!(foo.ports[0].plaintext_sources.is_empty());
    assert!(foo.ports[0].why.contains("sources unknown"));
    let plan = doc.plan.unwrap();
    assert!(plan.policies.is_empty(), "{plan:?}");
}

#[test]
fn two_scrapes_count_the_window_between_them_and_the_plan_switches_only_the_safe_workload() {
    let out = peerauth(&[
        "readiness",
        "--metrics",
        &format!("foo/httpbin={}", fx("httpbin.foo.1.prom")),
        &format!("bar/httpbin={}", fx("httpbin.bar.1.prom")),
        &format!("foo/httpbin={}", fx("httpbin.foo.2.prom")),
        &format!("bar/httpbin={}", fx("httpbin.bar.2.prom")),
        "--logs",
        &format!("foo/httpbin={}", fx("httpbin.foo.log")),
        "-f",
        &fx("cluster.yaml"),
    ]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(out
        .stdout
        .contains("bar/httpbin (sidecar)\n   port 80 [PERMISSIVE]: 3 mTLS, 0 plaintext, 0 forged XFCC: safe\n"));
    assert!(out
        .stdout
        .contains("foo/httpbin (sidecar)\n   port 80 [PERMISSIVE]: 3 mTLS, 1 plaintext, 0 forged XFCC: not safe\n"));
    assert!(out.stdout.contains("legacy/sleep (no sidecar, 10.244.0.6)"));
    // The plan, read back by peerauth itself: bar's httpbin alone becomes STRICT.
    let yaml = out
        .stdout
        .split("modes):\n")
        .nth(1)
        .expect("a validated plan");
    let dir = std::env::temp_dir().join(format!("readiness-plan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("plan.yaml"), yaml).unwrap();
    let described = peerauth(&[
        "describe",
        "bar/httpbin",
        "-f",
        &fx("cluster.yaml"),
        "-f",
        dir.join("plan.yaml").to_str().unwrap(),
    ]);
    assert!(
        described.stdout.contains("Workload mTLS mode: STRICT"),
        "{}",
        described.stdout
    );
    let foo = peerauth(&[
        "describe",
        "foo/httpbin",
        "-f",
        &fx("cluster.yaml"),
        "-f",
        dir.join("plan.yaml").to_str().unwrap(),
    ]);
    assert!(
        foo.stdout.contains("Workload mTLS mode: PERMISSIVE"),
        "{}",
        foo.stdout
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_namespace_where_every_sidecar_workload_is_safe_gets_one_namespace_wide_policy() {
    // Only bar's httpbin has a sidecar in this namespace: the objects drop bar/sleep.
    let objects = std::fs::read_to_string(common::root().join(fx("cluster.yaml"))).unwrap();
    let objects = objects.replace(
        "namespace: bar\n    labels:\n      app: sleep",
        "namespace: elsewhere\n    labels:\n      app: sleep",
    );
    let out = peerauth_with_stdin(
        &[
            "readiness",
            "--metrics",
            &format!("bar/httpbin={}", fx("httpbin.bar.1.prom")),
            &format!("bar/httpbin={}", fx("httpbin.bar.2.prom")),
            "-f",
            "-",
            "--json",
        ],
        &objects,
    );
    let doc: ReadinessDocument = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let plan = doc.plan.unwrap();
    assert!(plan.validated, "{:?}", plan.validation_problems);
    assert_eq!(plan.policies.len(), 1);
    assert_eq!(plan.policies[0].level, "namespace");
    assert_eq!(
        (
            plan.policies[0].namespace.as_str(),
            plan.policies[0].name.as_str()
        ),
        ("bar", "default")
    );
    assert!(plan.yaml.contains("kind: PeerAuthentication\nmetadata:\n  name: default\n  namespace: bar\nspec:\n  mtls:\n    mode: STRICT\n"), "{}", plan.yaml);
}

#[test]
fn a_prometheus_query_answer_with_pod_labels_needs_no_pod_names() {
    let answer = r#"{"status":"success","data":{"resultType":"vector","result":[
      {"metric":{"__name__":"peerauth_requests_total","namespace":"bar","pod":"httpbin","port":"80","mode":"STRICT","security":"mutual_tls","outcome":"allowed","reason":"ok"},"value":[1764614000,"12"]},
      {"metric":{"__name__":"peerauth_xfcc_forged_total","namespace":"bar","pod":"httpbin","port":"80","form":"smuggled","handling":"would_reject"},"value":[1764614000,"2"]}
    ]}}"#;
    let out = peerauth_with_stdin(&["readiness", "--metrics", "-", "--json"], answer);
    let doc: ReadinessDocument = serde_json::from_str(&out.stdout).unwrap();
    // No objects: no plan, and the forged XFCC are counted by form.
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(doc.plan.is_none());
    let p = &doc.workloads[0].ports[0];
    assert_eq!((doc.workloads[0].name.as_str(), p.mtls), ("httpbin", 12));
    assert_eq!(p.forged_xfcc.get("smuggled"), Some(&2));
    assert_eq!(p.verdict, Verdict::Safe);
}

#[test]
fn counters_going_backwards_a_scrape_without_the_filter_and_a_shared_ip_are_reported() {
    let dir = std::env::temp_dir().join(format!("readiness-edge-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let m = |n: u64| {
        format!("peerauth_requests_total{{port=\"80\",mode=\"STRICT\",security=\"mutual_tls\",outcome=\"allowed\",reason=\"ok\"}} {n}\n")
    };
    std::fs::write(dir.join("a.prom"), m(9)).unwrap();
    std::fs::write(dir.join("b.prom"), m(2)).unwrap();
    std::fs::write(dir.join("none.prom"), "envoy_server_live{} 1\n").unwrap();
    let objects = std::fs::read_to_string(common::root().join(fx("cluster.yaml")))
        .unwrap()
        .replace("podIP: 10.244.0.7", "podIP: 10.244.0.6")
        .replace("- ip: 10.244.0.7", "- ip: 10.244.0.6");
    std::fs::write(dir.join("objects.yaml"), objects).unwrap();
    std::fs::write(
        dir.join("foo.log"),
        "peerauth: outcome=would_reject reason=plaintext_on_strict port=80 mode=STRICT security=plaintext peer=\"-\" source=\"10.244.0.6:5000\"\n",
    )
    .unwrap();
    let p = |f: &str| dir.join(f).display().to_string();
    let (code, doc) = readiness(&args(&[
        "--metrics",
        &format!("bar/httpbin={}", p("a.prom")),
        &format!("bar/httpbin={}", p("b.prom")),
        // A scrape before the filter's first request has no counter: a zero baseline.
        &format!("foo/httpbin={}", p("none.prom")),
        &format!("foo/httpbin={}", p("a.prom")),
        // A pod that never shows one is reported.
        &format!("legacy/httpbin={}", p("none.prom")),
        "--logs",
        &format!("foo/httpbin={}", p("foo.log")),
        "-f",
        &p("objects.yaml"),
    ]));
    std::fs::remove_dir_all(&dir).unwrap();
    let codes: Vec<&str> = doc.problems.iter().map(|p| p.code.as_str()).collect();
    assert!(codes.contains(&"counter-went-backwards"), "{codes:?}");
    assert!(codes.contains(&"no-peerauth-metrics"), "{codes:?}");
    assert!(codes.contains(&"pod-ip-conflict"), "{codes:?}");
    assert_eq!(code, 1);
    let bar = doc.workloads.iter().find(|w| w.namespace == "bar").unwrap();
    assert_eq!(bar.ports[0].verdict, Verdict::NoData);
    let foo = doc.workloads.iter().find(|w| w.namespace == "foo").unwrap();
    assert_eq!(foo.ports[0].mtls, 9);
    let none: Vec<&str> = doc
        .problems
        .iter()
        .filter(|p| p.code == "no-peerauth-metrics")
        .map(|p| p.message.as_str())
        .collect();
    assert_eq!(none.len(), 1, "{none:?}");
    // The log's plaintext source is claimed by two pods: listed, not resolved.
    let s = &foo.ports[0].plaintext_sources[0];
    assert_eq!(
        (s.address.as_str(), s.workload.is_none()),
        ("10.244.0.6", true)
    );
}

#[test]
fn unreadable_or_malformed_metrics_and_series_without_a_pod_are_bad_input() {
    for (stdin, says) in [
        ("peerauth_requests_total{port=\"80\" 1\n", "input-metrics"),
        (
            "{\"status\":\"error\",\"error\":\"parse error\"}",
            "input-metrics",
        ),
        (
            "peerauth_requests_total{port=\"80\",security=\"mutual_tls\"} 1\n",
            "pod-unknown",
        ),
    ] {
        let out = peerauth_with_stdin(&["readiness", "--metrics", "-"], stdin);
        assert_eq!(out.code, 2, "{stdin}: {}", out.stdout);
        assert!(out.stderr.contains(says), "{stdin}: {}", out.stderr);
    }
    let out = peerauth(&[
        "readiness",
        "--metrics",
        "no/such=cli/tests/readiness/missing.prom",
    ]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("cannot read"), "{}", out.stderr);
}

#[test]
fn a_workload_with_one_safe_port_gets_port_level_strict_and_an_existing_workload_policy_is_edited()
{
    let objects = "apiVersion: v1\nkind: List\nitems:\n\
- {apiVersion: v1, kind: Namespace, metadata: {name: shop, labels: {istio-injection: enabled}}}\n\
- apiVersion: v1\n  kind: Pod\n  metadata: {name: web-1, namespace: shop, labels: {app: web}}\n  spec: {containers: [{name: web, ports: [{containerPort: 80}, {containerPort: 9000}]}]}\n  status: {podIP: 10.1.0.2}\n\
- apiVersion: v1\n  kind: Pod\n  metadata: {name: api-1, namespace: shop, labels: {app: api}}\n  spec: {containers: [{name: api, ports: [{containerPort: 8080}]}]}\n  status: {podIP: 10.1.0.3}\n\
- apiVersion: security.istio.io/v1\n  kind: PeerAuthentication\n  metadata: {name: api, namespace: shop}\n  spec: {selector: {matchLabels: {app: api}}, mtls: {mode: PERMISSIVE}}\n";
    let series = |pod: &str, port: u32, security: &str, n: u32| {
        format!("peerauth_requests_total{{namespace=\"shop\",pod=\"{pod}\",port=\"{port}\",mode=\"STRICT\",security=\"{security}\",outcome=\"{}\",reason=\"x\"}} {n}\n",
            if security == "plaintext" { "would_reject" } else { "allowed" })
    };
    let metrics = [
        series("web-1", 80, "mutual_tls", 7),
        series("web-1", 9000, "plaintext", 3),
        series("api-1", 8080, "mutual_tls", 5),
    ]
    .concat();
    let dir = std::env::temp_dir().join(format!("readiness-port-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("objects.yaml"), objects).unwrap();
    let objects_path = dir.join("objects.yaml").display().to_string();
    let out = peerauth_with_stdin(
        &["readiness", "--metrics", "-", "-f", &objects_path, "--json"],
        &metrics,
    );
    let doc: ReadinessDocument = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(out.code, 1, "{}", out.stderr);
    let plan = doc.plan.unwrap();
    assert!(
        plan.validated,
        "{:?}\n{}",
        plan.validation_problems, plan.yaml
    );
    let mut levels: Vec<(&str, &str, bool)> = plan
        .policies
        .iter()
        .map(|p| (p.name.as_str(), p.level.as_str(), p.replaces_existing))
        .collect();
    levels.sort();
    assert_eq!(
        levels,
        [("api", "workload", true), ("web-strict", "port", false)]
    );
    // Read back by describe: web's port 80 is STRICT, 9000 keeps PERMISSIVE; api is STRICT.
    std::fs::write(dir.join("plan.yaml"), &plan.yaml).unwrap();
    let plan_path = dir.join("plan.yaml").display().to_string();
    let (_, web): (i32, peerauth_cli::json::DescribeDocument) = json(&[
        "describe",
        "shop/web-1",
        "-f",
        &objects_path,
        "-f",
        &plan_path,
    ]);
    let modes: Vec<(u32, MtlsMode)> = web.workloads[0]
        .ports
        .iter()
        .map(|p| (p.port, p.resolution.mode))
        .collect();
    assert_eq!(
        modes,
        [(80, MtlsMode::Strict), (9000, MtlsMode::Permissive)]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn kubectl_logs_with_prefix_name_their_pod_and_istios_log_format_is_read() {
    // `kubectl logs -l app=httpbin -c istio-proxy --prefix` over Istio's proxy log
    // format (tab-separated, the filter's line inside Envoy's `wasm log` message).
    let logs = "[pod/httpbin/istio-proxy] 2026-12-01T18:32:07.551180Z\twarning\tenvoy wasm external/envoy/source/extensions/common/wasm/context.cc:1192\twasm log bar.peerauth-audit: peerauth: outcome=would_reject reason=plaintext_on_strict port=80 mode=STRICT security=plaintext peer=\"-\" source=\"10.244.0.7:36930\"\tthread=20\n\
        [pod/httpbin/istio-proxy] 2026-12-01T18:32:07.560000Z\tinfo\tenvoy main\tsomething else\n";
    let out = peerauth_with_stdin(
        &[
            "readiness",
            "--metrics",
            &format!("bar/httpbin={}", fx("httpbin.bar.1.prom")),
            "--logs",
            "-",
            "-f",
            &fx("cluster.yaml"),
            "--json",
        ],
        logs,
    );
    let doc: ReadinessDocument = serde_json::from_str(&out.stdout).unwrap();
    assert!(doc.problems.is_empty(), "{:?}", doc.problems);
    let s = &doc.workloads[0].ports[0].plaintext_sources;
    assert_eq!(s.len(), 1);
    let w = s[0].workload.as_ref().unwrap();
    assert_eq!(
        (w.namespace.as_str(), w.name.as_str(), s[0].requests),
        ("legacy", "httpbin", 1)
    );
}
