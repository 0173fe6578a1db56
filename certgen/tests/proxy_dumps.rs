//! `inspect` and `verify` on certificates as running proxies report them:
//! `istioctl proxy-config secret -o json`, Envoy's `/config_dump` (whole and
//! `?resource=`), ztunnel's certificates, and a real Envoy's own output.
//! Every fixture is built here from certificates certgen has just issued;
//! expected values (fingerprints, SPIFFE IDs) come from openssl or from the
//! files themselves, never from the code under test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use base64::Engine;
use common::*;
use serde_json::{json, Value};
use tempfile::tempdir;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A mesh root, cluster `c1`'s intermediate and `foo/httpbin`'s workload
/// certificate in `dir/wl` (cert.pem, chain.pem = intermediate + root, key.pem).
fn mesh(dir: &Path) {
    mesh_ca(dir);
    ok(
        dir,
        &[
            "workload",
            "--ca",
            "certs/c1",
            "--namespace",
            "foo",
            "--service-account",
            "httpbin",
            "--out",
            "wl",
        ],
    );
}

/// What an Istio sidecar's `default` secret holds: leaf, intermediate, root.
fn presented_chain(dir: &Path, wl: &str) -> String {
    format!(
        "{}{}",
        read(dir.join(wl).join("cert.pem")),
        read(dir.join(wl).join("chain.pem"))
    )
}

fn fingerprint(dir: &Path, pem: &str) -> String {
    let (ok, fp) = openssl(
        dir,
        &["x509", "-in", pem, "-noout", "-fingerprint", "-sha256"],
    );
    assert!(ok, "{fp}");
    fp.trim().split_once('=').unwrap().1.to_string()
}

/// The `SecretsConfigDump` `istioctl proxy-config secret <pod> -o json`
/// prints: camelCase JSON names, bytes as base64, private key redacted.
fn istioctl_secrets(chain_pem: &str, root_pem: &str) -> Value {
    json!({
        "dynamicActiveSecrets": [
            {
                "name": "default",
                "versionInfo": "2026-12-01 17:00:00.1 +0000 UTC m=+0.1",
                "lastUpdated": "2026-12-01T17:00:00.100Z",
                "secret": {
                    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
                    "name": "default",
                    "tlsCertificate": {
                        "certificateChain": {"inlineBytes": B64.encode(chain_pem)},
                        "privateKey": {"inlineBytes": B64.encode("[redacted]")}
                    }
                }
            },
            {
                "name": "ROOTCA",
                "lastUpdated": "2026-12-01T17:00:00.050Z",
                "secret": {
                    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
                    "name": "ROOTCA",
                    "validationContext": {
                        "trustedCa": {"inlineBytes": B64.encode(root_pem)}
                    }
                }
            }
        ]
    })
}

/// The same secrets as Envoy's admin `/config_dump` prints them: proto
/// names, wrapped in `configs` next to the other dumps.
fn envoy_config_dump(chain_pem: &str, root_pem: &str) -> Value {
    json!({
        "configs": [
            {"@type": "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump", "bootstrap": {}},
            {"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump"},
            {
                "@type": "type.googleapis.com/envoy.admin.v3.SecretsConfigDump",
                "dynamic_active_secrets": [
                    {
                        "name": "default",
                        "secret": {
                            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
                            "name": "default",
                            "tls_certificate": {
                                "certificate_chain": {"inline_bytes": B64.encode(chain_pem)},
                                "private_key": {"inline_bytes": B64.encode("[redacted]")}
                            }
                        }
                    },
                    {
                        "name": "ROOTCA",
                        "secret": {
                            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
                            "name": "ROOTCA",
                            "validation_context": {"trusted_ca": {"inline_bytes": B64.encode(root_pem)}}
                        }
                    }
                ],
                "dynamic_warming_secrets": [
                    {"name": "kubernetes://pending", "secret": {"name": "kubernetes://pending"}}
                ]
            }
        ]
    })
}

/// `/config_dump?resource=dynamic_active_secrets`: one `configs` entry per secret.
fn envoy_resource_dump(chain_pem: &str, root_pem: &str) -> Value {
    let full = envoy_config_dump(chain_pem, root_pem);
    let list = full["configs"][2]["dynamic_active_secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let mut s = s.clone();
            s["@type"] =
                json!("type.googleapis.com/envoy.admin.v3.SecretsConfigDump.DynamicSecret");
            s
        })
        .collect::<Vec<_>>();
    json!({ "configs": list })
}

fn ztunnel_cert(pem: &str) -> Value {
    json!({"pem": pem, "serialNumber": "1", "validFrom": "2026-12-01T00:00:00Z", "expirationTime": "2026-12-02T00:00:00Z"})
}

fn write_json(dir: &Path, name: &str, v: &Value) {
    std::fs::write(dir.join(name), serde_json::to_string_pretty(v).unwrap()).unwrap();
}

fn verify_json(dir: &Path, args: &[&str], code: i32) -> Value {
    let mut a = vec!["verify"];
    a.extend_from_slice(args);
    a.push("--json");
    let out = certgen(dir).args(&a).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(code),
        "certgen {a:?}: {} {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn check<'a>(workload: &'a Value, code: &str) -> &'a Value {
    workload["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["code"] == code)
        .unwrap_or_else(|| panic!("no check {code} in {workload}"))
}

/// Asserts `certgen args` exits 2 with one line on stderr containing `want`.
fn one_line_error(dir: &Path, args: &[&str], want: &str) {
    let err = fails(dir, args, 2);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains(want), "wanted `{want}` in: {err}");
}

#[test]
fn istioctl_proxy_config_secret_json_is_inspected_secret_by_secret() {
    let t = tempdir().unwrap();
    let d = t.path();
    mesh(d);
    let chain = presented_chain(d, "wl");
    write_json(
        d,
        "secrets.json",
        &istioctl_secrets(&chain, &read(d.join("certs/root-cert.pem"))),
    );
    let v = json(d, &["inspect", "secrets.json"]);
    let entries = v.as_array().unwrap();
    assert_eq!(entries.len(), 4, "{v}");
    assert_eq!(entries[0]["source"]["secret"], "default");
    assert_eq!(entries[0]["source"]["role"], "chain");
    assert_eq!(entries[0]["source"]["format"], "envoy-secrets");
    assert_eq!(entries[0]["source"]["private_key"], "redacted");
    assert_eq!(
        entries[0]["sha256_fingerprint"],
        fingerprint(d, "wl/cert.pem")
    );
    assert_eq!(
        entries[0]["spiffe_id"],
        "spiffe://cluster.local/ns/foo/sa/httpbin"
    );
    assert_eq!(
        entries[1]["sha256_fingerprint"],
        fingerprint(d, "certs/c1/ca-cert.pem")
    );
    assert_eq!(entries[3]["source"]["secret"], "ROOTCA");
    assert_eq!(entries[3]["source"]["role"], "root");
    assert_eq!(
        entries[3]["sha256_fingerprint"],
        fingerprint(d, "certs/root-cert.pem")
    );
    let text = ok(d, &["inspect", "secrets.json"]);
    assert!(
        text.contains(
            "secret `default` (active), workload certificate, private key redacted by the proxy"
        ),
        "{text}"
    );
    // A plain PEM keeps its old JSON shape: no `source`.
    let pem = json(d, &["inspect", "wl/cert.pem"]);
    assert!(pem[0].get("source").is_none(), "{pem}");
}

#[test]
fn verify_checks_a_sidecar_dump_against_its_own_rootca_with_time_left_and_identity() {
    let t = tempdir().unwrap();
    let d = t.path();
    mesh(d);
    let chain = presented_chain(d, "wl");
    let root = read(d.join("certs/root-cert.pem"));
    write_json(d, "secrets.json", &istioctl_secrets(&chain, &root));
    let r = verify_json(d, &["secrets.json", "--expect-identity", "foo/httpbin"], 0);
    assert_eq!(r["ok"], true);
    assert_eq!(r["format"], "envoy-secrets");
    assert_eq!(r["roots_from"], "the dump's ROOTCA secret");
    let w = &r["workloads"][0];
    assert_eq!(w["secret"], "default");
    assert_eq!(w["spiffe_id"], "spiffe://cluster.local/ns/foo/sa/httpbin");
    assert_eq!(w["path"].as_array().unwrap().len(), 3);
    for code in [
        "chain-signatures",
        "trust-anchor",
        "expiry",
        "spiffe-id",
        "private-key",
        "expect-identity",
        "svid-san-critical",
    ] {
        assert_eq!(check(w, code)["status"], "pass", "{code}: {w}");
    }
    // A 24 h certificate issued just now has 23 h and some minutes left.
    let expiry = check(w, "expiry")["message"].as_str().unwrap().to_string();
    assert!(expiry.starts_with("23h "), "{expiry}");
    assert!(expiry.contains("left of 1d 0h"), "{expiry}");

    // The pod runs as another service account than its manifests say.
    let r = verify_json(d, &["secrets.json", "--expect-identity", "foo/sleep"], 1);
    let e = check(&r["workloads"][0], "expect-identity");
    assert_eq!(e["status"], "fail");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("runs as `spiffe://cluster.local/ns/foo/sa/httpbin`, not foo/sleep"),
        "{e}"
    );
    verify_json(
        d,
        &[
            "secrets.json",
            "--expect-identity",
            "spiffe://cluster.local/ns/foo/sa/httpbin",
        ],
        0,
    );
    one_line_error(
        d,
        &["verify", "secrets.json", "--expect-identity", "httpbin"],
        "use <namespace>/<serviceaccount>",
    );

    // 13 h on, more than half the lifetime is gone: Istio's agent should have renewed it.
    let s = json(d, &["inspect", "wl/cert.pem"]);
    let not_before = time::OffsetDateTime::parse(
        s[0]["not_before"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let late = (not_before + time::Duration::hours(14))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let r = verify_json(d, &["secrets.json", "--at", &late], 0);
    assert_eq!(check(&r["workloads"][0], "expiry")["status"], "warn", "{r}");
    let expired = (not_before + time::Duration::hours(25))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let r = verify_json(d, &["secrets.json", "--at", &expired], 1);
    let e = check(&r["workloads"][0], "expiry");
    assert_eq!(e["status"], "fail");
    assert!(e["message"].as_str().unwrap().contains("expired"), "{e}");
}

#[test]
fn envoy_config_dump_whole_and_filtered_to_dynamic_active_secrets_both_verify() {
    let t = tempdir().unwrap();
    let d = t.path();
    mesh(d);
    let chain = presented_chain(d, "wl");
    let root = read(d.join("certs/root-cert.pem"));
    write_json(d, "config_dump.json", &envoy_config_dump(&chain, &root));
    write_json(d, "active.json", &envoy_resource_dump(&chain, &root));
    for f in ["config_dump.json", "active.json"] {
        let r = verify_json(d, &[f, "--expect-identity", "foo/httpbin"], 0);
        assert_eq!(r["format"], "envoy-config-dump");
        assert_eq!(check(&r["workloads"][0], "private-key")["status"], "pass");
        let v = json(d, &["inspect", f]);
        assert_eq!(
            v[0]["sha256_fingerprint"],
            fingerprint(d, "wl/cert.pem"),
            "{f}"
        );
    }
    let text = ok(d, &["verify", "config_dump.json"]);
    assert!(
        text.contains(
            "config_dump.json (envoy-config-dump), trust anchors from the dump's ROOTCA secret"
        ),
        "{text}"
    );
    assert!(text.contains("verdict: OK"), "{text}");
}

#[test]
fn root_flag_replaces_the_dumps_rootca_and_a_foreign_root_fails_the_trust_anchor() {
    let t = tempdir().unwrap();
    let d = t.path();
    mesh(d);
    ok(d, &["root", "--out", "other"]);
    let chain = presented_chain(d, "wl");
    write_json(
        d,
        "secrets.json",
        &istioctl_secrets(&chain, &read(d.join("certs/root-cert.pem"))),
    );
    let r = verify_json(d, &["secrets.json", "--root", "other/root-cert.pem"], 1);
    assert_eq!(r["roots_from"], "--root other/root-cert.pem");
    assert_eq!(check(&r["workloads"][0], "trust-anchor")["status"], "fail");
    verify_json(d, &["secrets.json", "--root", "certs/root-cert.pem"], 0);
    let r = verify_json(d, &["secrets.json", "--ca", "certs/c1"], 0);
    assert_eq!(r["roots_from"], "--root certs/c1/root-cert.pem");
    one_line_error(
        d,
        &["verify", "secrets.json", "--ca", "nowhere"],
        "CA folder nowhere does not exist",
    );
    // A dump whose ROOTCA is not the root that signed its chain (a mis-plugged CA).
    write_json(
        d,
        "mixed.json",
        &istioctl_secrets(&chain, &read(d.join("other/root-cert.pem"))),
    );
    let r = verify_json(d, &["mixed.json"], 1);
    assert_eq!(check(&r["workloads"][0], "trust-anchor")["status"], "fail");
}

#[test]
fn a_private_key_left_in_the_dump_is_reported_and_a_redacted_one_is_recognised() {
    let t = tempdir().unwrap();
    let d = t.path();
    mesh(d);
    let chain = presented_chain(d, "wl");
    let mut v = istioctl_secrets(&chain, &read(d.join("certs/root-cert.pem")));
    v["dynamicActiveSecrets"][0]["secret"]["tlsCertificate"]["privateKey"] =
        json!({"inlineBytes": B64.encode(read(d.join("wl/key.pem")))});
    write_json(d, "clear.json", &v);
    let r = verify_json(d, &["clear.json"], 0);
    let k = check(&r["workloads"][0], "private-key");
    assert_eq!(k["status"], "warn");
    assert!(
        k["message"]
            .as_str()
            .unwrap()
            .contains("private key itself"),
        "{k}"
    );
    assert_eq!(
        json(d, &["inspect", "clear.json"])[0]["source"]["private_key"],
        "in-clear"
    );
    // Envoy writes a redacted string key as the string `[redacted]`.
    v["dynamicActiveSecrets"][0]["secret"]["tlsCertificate"]["privateKey"] =
        json!({"inlineString": "[redacted]"});
    write_json(d, "string.json", &v);
    assert_eq!(
        json(d, &["inspect", "string.json"])[0]["source"]["private_key"],
        "redacted"
    );
}

#[test]
fn ztunnel_certificates_are_verified_per_identity_against_their_root_certs() {
    let t = tempdir().unwrap();
    let d = t.path();
    mesh(d);
    ok(
        d,
        &[
            "workload",
            "--ca",
            "certs/c1",
            "--namespace",
            "bar",
            "--service-account",
            "sleep",
            "--out",
            "sleep",
        ],
    );
    let inter = read(d.join("certs/c1/ca-cert.pem"));
    let root = read(d.join("certs/root-cert.pem"));
    let dump = json!([
        {
            "identity": "spiffe://cluster.local/ns/foo/sa/httpbin",
            "state": "Available",
            "certChain": [ztunnel_cert(&read(d.join("wl/cert.pem"))), ztunnel_cert(&inter)],
            "rootCerts": [ztunnel_cert(&root)]
        },
        {
            "identity": "spiffe://cluster.local/ns/bar/sa/sleep",
            "state": "Available",
            "certChain": [ztunnel_cert(&read(d.join("sleep/cert.pem"))), ztunnel_cert(&inter)],
            "rootCerts": [ztunnel_cert(&root)]
        },
        {"identity": "spiffe://cluster.local/ns/baz/sa/new", "state": "Initializing", "certChain": []}
    ]);
    write_json(d, "zt.json", &dump);
    let r = verify_json(d, &["zt.json"], 0);
    assert_eq!(r["format"], "ztunnel-certificates");
    let ws = r["workloads"].as_array().unwrap();
    assert_eq!(ws.len(), 3);
    assert_eq!(ws[1]["spiffe_id"], "spiffe://cluster.local/ns/bar/sa/sleep");
    assert_eq!(check(&ws[1], "trust-anchor")["status"], "pass");
    assert_eq!(check(&ws[2], "certificate-state")["status"], "warn");
    let r = verify_json(d, &["zt.json", "--expect-identity", "bar/sleep"], 0);
    assert_eq!(r["workloads"].as_array().unwrap().len(), 1);
    assert_eq!(
        check(&r["workloads"][0], "expect-identity")["status"],
        "pass"
    );
    let r = verify_json(d, &["zt.json", "--expect-identity", "bar/other"], 1);
    let e = check(&r["workloads"][0], "expect-identity");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("ztunnel holds no certificate for bar/other"),
        "{e}"
    );
    let v = json(d, &["inspect", "zt.json"]);
    assert_eq!(v.as_array().unwrap().len(), 6);
    assert_eq!(
        v[2]["sha256_fingerprint"],
        fingerprint(d, "certs/root-cert.pem")
    );
    assert_eq!(v[2]["source"]["role"], "root");

    // Older ztunnels put the root last in certChain and had no rootCerts.
    let legacy = json!([{
        "identity": "spiffe://cluster.local/ns/foo/sa/httpbin",
        "state": "Available",
        "certChain": [ztunnel_cert(&read(d.join("wl/cert.pem"))), ztunnel_cert(&inter), ztunnel_cert(&root)]
    }]);
    write_json(d, "legacy.json", &legacy);
    let r = verify_json(d, &["legacy.json"], 0);
    assert_eq!(check(&r["workloads"][0], "trust-anchor")["status"], "pass");

    // An identity ztunnel could not get a certificate for fails.
    let unavailable = json!([
        dump[0].clone(),
        {"identity": "spiffe://cluster.local/ns/x/sa/y", "state": "Unavailable: signing gRPC error", "certChain": []}
    ]);
    write_json(d, "unavail.json", &unavailable);
    let r = verify_json(d, &["unavail.json"], 1);
    assert_eq!(
        check(&r["workloads"][1], "certificate-state")["status"],
        "fail"
    );
}

#[test]
fn same_root_passes_for_clusters_under_one_root_and_fails_for_separate_self_signed_cas() {
    let t = tempdir().unwrap();
    let d = t.path();
    mesh(d);
    ok(d, &["intermediate", "--cluster", "c2"]);
    ok(
        d,
        &[
            "workload",
            "--ca",
            "certs/c2",
            "--namespace",
            "bar",
            "--service-account",
            "sleep",
            "--out",
            "wl2",
        ],
    );
    // A third cluster left with its own self-signed CA: the multi-cluster plug-in mistake.
    ok(d, &["root", "--out", "lone"]);
    ok(d, &["intermediate", "--root", "lone", "--cluster", "c3"]);
    ok(
        d,
        &[
            "workload",
            "--ca",
            "lone/c3",
            "--namespace",
            "bar",
            "--service-account",
            "sleep",
            "--out",
            "wl3",
        ],
    );
    let root = read(d.join("certs/root-cert.pem"));
    write_json(
        d,
        "a.json",
        &istioctl_secrets(&presented_chain(d, "wl"), &root),
    );
    write_json(
        d,
        "b.json",
        &envoy_config_dump(&presented_chain(d, "wl2"), &root),
    );
    write_json(
        d,
        "c.json",
        &istioctl_secrets(
            &presented_chain(d, "wl3"),
            &read(d.join("lone/root-cert.pem")),
        ),
    );

    let r = verify_json(d, &["--same-root", "a.json", "b.json"], 0);
    assert_eq!(r["ok"], true);
    let fp = fingerprint(d, "certs/root-cert.pem");
    assert_eq!(r["proxies"][0]["roots"][0]["sha256_fingerprint"], fp);
    assert_eq!(r["proxies"][1]["roots"][0]["sha256_fingerprint"], fp);
    let checks = r["checks"].as_array().unwrap();
    assert_eq!(
        checks.iter().filter(|c| c["code"] == "cross-trust").count(),
        2
    );
    assert!(checks.iter().all(|c| c["status"] == "pass"), "{r}");

    let r = verify_json(d, &["--same-root", "a.json", "b.json", "c.json"], 1);
    let same = r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["code"] == "same-root")
        .unwrap();
    assert_eq!(same["status"], "fail");
    assert!(
        same["message"]
            .as_str()
            .unwrap()
            .contains("plug in intermediates from one root"),
        "{same}"
    );
    let failed_cross = r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["code"] == "cross-trust" && c["status"] == "fail")
        .count();
    // c cannot verify a or b, and neither a nor b can verify c.
    assert_eq!(failed_cross, 4, "{r}");
    let text = fails(d, &["verify", "--same-root", "a.json", "c.json"], 1);
    assert!(text.is_empty(), "{text}");
    // PEM roots count too: the mesh root file and a's dump agree.
    verify_json(d, &["--same-root", "a.json", "certs/root-cert.pem"], 0);
    one_line_error(d, &["verify", "--same-root", "a.json"], "--same-root");
}

#[test]
fn spire_style_rootca_bundles_are_read_from_the_spiffe_validator() {
    let t = tempdir().unwrap();
    let d = t.path();
    mesh(d);
    let mut v = envoy_config_dump(&presented_chain(d, "wl"), "");
    v["configs"][2]["dynamic_active_secrets"][1]["secret"]["validation_context"] = json!({
        "trusted_ca": {},
        "custom_validator_config": {
            "name": "envoy.tls.cert_validator.spiffe",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.SPIFFECertValidatorConfig",
                "trust_domains": [
                    {"name": "cluster.local", "trust_bundle": {"inline_bytes": B64.encode(read(d.join("certs/root-cert.pem")))}}
                ]
            }
        }
    });
    write_json(d, "spire.json", &v);
    let r = verify_json(d, &["spire.json"], 0);
    assert_eq!(check(&r["workloads"][0], "trust-anchor")["status"], "pass");
}

#[test]
fn malformed_dumps_get_one_line_errors_and_exit_2() {
    let t = tempdir().unwrap();
    let d = t.path();
    mesh(d);
    let chain = presented_chain(d, "wl");
    let root = read(d.join("certs/root-cert.pem"));
    let good = serde_json::to_string_pretty(&istioctl_secrets(&chain, &root)).unwrap();

    // Truncated: the copy stopped half way.
    std::fs::write(d.join("cut.json"), &good[..good.len() / 2]).unwrap();
    one_line_error(d, &["inspect", "cut.json"], "the JSON is truncated");
    one_line_error(d, &["verify", "cut.json"], "the JSON is truncated");

    // No `default` secret: only ROOTCA.
    let mut v = istioctl_secrets(&chain, &root);
    v["dynamicActiveSecrets"].as_array_mut().unwrap().remove(0);
    write_json(d, "noleaf.json", &v);
    one_line_error(
        d,
        &["verify", "noleaf.json"],
        "no `default` secret (secrets: ROOTCA (active))",
    );

    // No ROOTCA and no --root.
    let mut v = istioctl_secrets(&chain, &root);
    v["dynamicActiveSecrets"].as_array_mut().unwrap().remove(1);
    write_json(d, "noroot.json", &v);
    one_line_error(
        d,
        &["verify", "noroot.json"],
        "pass the mesh root with --root",
    );
    verify_json(d, &["noroot.json", "--root", "certs/root-cert.pem"], 0);

    // Bad base64 in the chain.
    let mut v = istioctl_secrets(&chain, &root);
    v["dynamicActiveSecrets"][0]["secret"]["tlsCertificate"]["certificateChain"]["inlineBytes"] =
        json!("LS0t!!not base64");
    write_json(d, "b64.json", &v);
    one_line_error(
        d,
        &["inspect", "b64.json"],
        "secret `default` certificate_chain: inline_bytes is not valid base64",
    );

    // Base64 of something that is not a certificate.
    let mut v = istioctl_secrets(&chain, &root);
    v["dynamicActiveSecrets"][1]["secret"]["validationContext"]["trustedCa"]["inlineBytes"] =
        json!(B64.encode("hello"));
    write_json(d, "notpem.json", &v);
    one_line_error(
        d,
        &["verify", "notpem.json"],
        "secret `ROOTCA` trusted_ca does not hold PEM certificates",
    );

    // A chain out of order: the intermediate before the leaf.
    let reordered = format!(
        "{}{}{}",
        read(d.join("certs/c1/ca-cert.pem")),
        read(d.join("wl/cert.pem")),
        root
    );
    write_json(d, "order.json", &istioctl_secrets(&reordered, &root));
    one_line_error(
        d,
        &["verify", "order.json"],
        "secret `default`: certificate chain out of order: certificate 2",
    );
    one_line_error(
        d,
        &["inspect", "order.json"],
        "certificate chain out of order",
    );

    // JSON that is no dump at all, and a dump with no secret yet.
    std::fs::write(d.join("other.json"), r#"{"kind": "Pod"}"#).unwrap();
    one_line_error(
        d,
        &["inspect", "other.json"],
        "JSON that is none of the known dumps",
    );
    write_json(
        d,
        "warming.json",
        &json!({"dynamicWarmingSecrets": [{"name": "default"}]}),
    );
    one_line_error(
        d,
        &["verify", "warming.json"],
        "holds no certificate secret yet",
    );
    write_json(d, "ztempty.json", &json!([]));
    one_line_error(
        d,
        &["verify", "ztempty.json"],
        "ztunnel holds no certificate yet",
    );
    // Not JSON, not PEM, not DER: the old message still names what to pass.
    std::fs::write(d.join("junk.bin"), b"\x01\x02junk").unwrap();
    one_line_error(
        d,
        &["inspect", "junk.bin"],
        "not a PEM or DER X.509 certificate",
    );
}

#[test]
fn a_pem_leaf_without_a_root_is_a_usage_error_and_expect_identity_works_on_pem_too() {
    let t = tempdir().unwrap();
    let d = t.path();
    mesh(d);
    one_line_error(d, &["verify", "wl/cert.pem"], "pass --root or --ca");
    let r = verify_json(
        d,
        &[
            "wl/cert.pem",
            "--ca",
            "certs/c1",
            "--expect-identity",
            "foo/httpbin",
        ],
        0,
    );
    assert_eq!(check(&r, "expect-identity")["status"], "pass");
    let r = verify_json(
        d,
        &[
            "wl/cert.pem",
            "--ca",
            "certs/c1",
            "--expect-identity",
            "foo/other",
        ],
        1,
    );
    assert_eq!(check(&r, "expect-identity")["status"], "fail");
}

#[test]
fn every_truncation_and_byte_flip_of_a_dump_is_read_or_refused_without_a_panic() {
    use certgen::proxy::read;
    let t = tempdir().unwrap();
    let d = t.path();
    mesh(d);
    let chain = presented_chain(d, "wl");
    let root = read_text(d, "certs/root-cert.pem");
    let dumps = [
        serde_json::to_vec(&istioctl_secrets(&chain, &root)).unwrap(),
        serde_json::to_vec(&envoy_config_dump(&chain, &root)).unwrap(),
        serde_json::to_vec(&json!([{
            "identity": "spiffe://cluster.local/ns/foo/sa/httpbin",
            "state": "Available",
            "certChain": [ztunnel_cert(&read_text(d, "wl/cert.pem"))],
            "rootCerts": [ztunnel_cert(&root)]
        }]))
        .unwrap(),
    ];
    for dump in &dumps {
        assert!(read(dump, "dump").is_ok());
        let mut refused = 0;
        for cut in (0..dump.len()).step_by(13) {
            match read(&dump[..cut], "dump") {
                Ok(_) => {}
                Err(e) => {
                    refused += 1;
                    assert!(!e.to_string().contains('\n'), "{e}");
                }
            }
        }
        // A JSON document cut short is never whole.
        assert_eq!(refused, dump.len().div_ceil(13), "every cut was refused");
        for at in (0..dump.len()).step_by(29) {
            let mut flipped = dump.clone();
            flipped[at] ^= 0x5a;
            if let Err(e) = read(&flipped, "dump") {
                assert!(!e.to_string().contains('\n'), "{e}");
            }
        }
    }
}

fn read_text(dir: &Path, p: &str) -> String {
    read(dir.join(p))
}
