//! The real `certgen` binary, every command, cross-checked with openssl and x509-parser.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use tempfile::tempdir;

fn parse_pem(text: &str) -> Vec<Vec<u8>> {
    ::pem::parse_many(text)
        .unwrap()
        .into_iter()
        .map(|p| p.into_contents())
        .collect()
}

#[test]
fn root_is_a_self_signed_ca_with_cert_sign_and_crl_sign_and_a_private_key() {
    let t = tempdir().unwrap();
    let d = t.path();
    ok(
        d,
        &[
            "root",
            "--org",
            "Acme",
            "--cn",
            "Acme Root",
            "--days",
            "30",
            "--path-len",
            "2",
        ],
    );
    assert_eq!(mode(&d.join("certs/root-key.pem")), 0o600);
    let der = &parse_pem(&read(d.join("certs/root-cert.pem")))[0];
    let (_, x) = x509_parser::parse_x509_certificate(der).unwrap();
    assert_eq!(x.subject().to_string(), "O=Acme, CN=Acme Root");
    assert_eq!(x.subject(), x.issuer());
    let bc = x.basic_constraints().unwrap().unwrap();
    assert!(bc.critical && bc.value.ca);
    assert_eq!(bc.value.path_len_constraint, Some(2));
    let ku = x.key_usage().unwrap().unwrap();
    assert!(ku.critical && ku.value.key_cert_sign() && ku.value.crl_sign());
    assert!(!ku.value.digital_signature());
    let days =
        (x.validity().not_after.to_datetime() - x.validity().not_before.to_datetime()).whole_days();
    assert_eq!(days, 30);
    let (_, text) = openssl(
        d,
        &["x509", "-in", "certs/root-cert.pem", "-noout", "-text"],
    );
    assert!(text.contains("CA:TRUE, pathlen:2"), "{text}");
    assert!(text.contains("Certificate Sign, CRL Sign"), "{text}");
    assert!(text.contains("ASN1 OID: prime256v1"), "{text}");
}

#[test]
fn root_generates_each_advertised_key_algorithm() {
    let t = tempdir().unwrap();
    let d = t.path();
    for (alg, key, openssl_says) in [
        ("ec-p384", "EC P-384", "secp384r1"),
        ("ed25519", "Ed25519", "ED25519"),
        ("rsa-2048", "RSA 2048", "Public-Key: (2048 bit)"),
        ("rsa-3072", "RSA 3072", "Public-Key: (3072 bit)"),
    ] {
        ok(d, &["root", "--alg", alg, "--out", alg]);
        let s = json(d, &["inspect", &format!("{alg}/root-cert.pem")]);
        assert_eq!(s[0]["key"], key);
        let (verified, out) = openssl(
            d,
            &[
                "verify",
                "-CAfile",
                &format!("{alg}/root-cert.pem"),
                &format!("{alg}/root-cert.pem"),
            ],
        );
        assert!(verified, "{alg}: {out}");
        let (_, text) = openssl(
            d,
            &[
                "x509",
                "-in",
                &format!("{alg}/root-cert.pem"),
                "-noout",
                "-text",
            ],
        );
        assert!(text.contains(openssl_says), "{alg}: {text}");
    }
}

#[test]
fn unknown_algorithm_is_a_one_line_usage_error() {
    let t = tempdir().unwrap();
    let err = fails(t.path(), &["root", "--alg", "rsa-1024"], 2);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("rsa-1024") && err.contains("rsa-2048"),
        "{err}"
    );
    assert!(!t.path().join("certs").exists());
}

#[test]
fn intermediate_folder_matches_istio_plug_in_layout_and_openssl_accepts_it() {
    let t = tempdir().unwrap();
    let d = t.path();
    mesh_ca(d);
    let c1 = d.join("certs/c1");
    for f in [
        "ca-cert.pem",
        "ca-key.pem",
        "cert-chain.pem",
        "root-cert.pem",
    ] {
        assert!(c1.join(f).is_file(), "{f}");
    }
    assert_eq!(mode(&c1.join("ca-key.pem")), 0o600);
    assert_eq!(
        read(c1.join("root-cert.pem")),
        read(d.join("certs/root-cert.pem"))
    );
    // cert-chain.pem: the intermediate, then the root, the order istiod expects.
    let chain = parse_pem(&read(c1.join("cert-chain.pem")));
    assert_eq!(chain.len(), 2);
    assert_eq!(chain[0], parse_pem(&read(c1.join("ca-cert.pem")))[0]);
    assert_eq!(chain[1], parse_pem(&read(c1.join("root-cert.pem")))[0]);
    let (_, x) = x509_parser::parse_x509_certificate(&chain[0]).unwrap();
    assert_eq!(x.subject().to_string(), "O=Istio, CN=Intermediate CA, L=c1");
    let bc = x.basic_constraints().unwrap().unwrap().value;
    assert!(bc.ca);
    assert_eq!(bc.path_len_constraint, Some(0));
    let (verified, out) = openssl(
        d,
        &[
            "verify",
            "-CAfile",
            "certs/root-cert.pem",
            "certs/c1/ca-cert.pem",
        ],
    );
    assert!(verified, "{out}");
    let r = json(d, &["verify", "--cacerts", "certs/c1"]);
    assert_eq!(r["ok"], true, "{r}");
}

#[test]
fn intermediate_can_write_the_cacerts_secret_and_secret_cacerts_prints_the_same_data() {
    let t = tempdir().unwrap();
    let d = t.path();
    ok(d, &["root"]);
    ok(d, &["intermediate", "--cluster", "east", "--secret-yaml"]);
    let dir = d.join("certs/east");
    assert_eq!(mode(&dir.join("cacerts.yaml")), 0o600);
    let printed = ok(d, &["secret", "cacerts", "--ca", "certs/east"]);
    assert_eq!(printed, read(dir.join("cacerts.yaml")));
    assert!(printed.contains("kind: Secret\n") && printed.contains("  name: cacerts\n"));
    assert!(printed.contains("  namespace: istio-system\n") && printed.contains("type: Opaque\n"));
    let data = secret_data(&printed);
    let keys: Vec<&str> = data.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "ca-cert.pem",
            "ca-key.pem",
            "root-cert.pem",
            "cert-chain.pem"
        ]
    );
    for (k, v) in &data {
        assert_eq!(v, &read(dir.join(k)), "{k}");
    }
}

#[test]
fn workload_is_a_spiffe_svid_that_openssl_and_our_verify_both_accept() {
    let t = tempdir().unwrap();
    let d = t.path();
    mesh_ca(d);
    ok(
        d,
        &[
            "workload",
            "--ca",
            "certs/c1",
            "--namespace",
            "foo",
            "--service-account",
            "bar",
            "--out",
            "w",
        ],
    );
    assert_eq!(mode(&d.join("w/key.pem")), 0o600);
    let der = &parse_pem(&read(d.join("w/cert.pem")))[0];
    let (_, x) = x509_parser::parse_x509_certificate(der).unwrap();
    assert!(x.subject().iter().next().is_none(), "subject must be empty");
    let san = x.subject_alternative_name().unwrap().unwrap();
    assert!(san.critical);
    let names: Vec<String> = san
        .value
        .general_names
        .iter()
        .map(|g| format!("{g:?}"))
        .collect();
    assert_eq!(names, [r#"URI("spiffe://cluster.local/ns/foo/sa/bar")"#]);
    let ku = x.key_usage().unwrap().unwrap();
    assert!(ku.critical && ku.value.digital_signature() && !ku.value.key_encipherment());
    let eku = x.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth);
    assert!(!x.basic_constraints().unwrap().unwrap().value.ca);
    let life = x.validity().not_after.to_datetime() - x.validity().not_before.to_datetime();
    assert_eq!(
        life.whole_minutes(),
        24 * 60 + 2,
        "24h plus the 2-minute backdate"
    );
    // The chain is intermediate then root.
    assert_eq!(
        read(d.join("w/chain.pem")),
        read(d.join("certs/c1/cert-chain.pem"))
    );
    for purpose in ["sslclient", "sslserver"] {
        let (verified, out) = openssl(
            d,
            &[
                "verify",
                "-purpose",
                purpose,
                "-CAfile",
                "w/root-cert.pem",
                "-untrusted",
                "w/chain.pem",
                "w/cert.pem",
            ],
        );
        assert!(verified, "{purpose}: {out}");
    }
    let r = json(
        d,
        &[
            "verify",
            "w/cert.pem",
            "--chain",
            "w/chain.pem",
            "--root",
            "w/root-cert.pem",
        ],
    );
    assert_eq!(r["ok"], true, "{r}");
    let codes: Vec<&str> = r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["code"].as_str().unwrap())
        .collect();
    assert!(
        codes.contains(&"svid-one-uri-san") && codes.contains(&"svid-san-critical"),
        "{codes:?}"
    );
}

#[test]
fn workload_with_rsa_gets_key_encipherment_and_hours_set_the_lifetime() {
    let t = tempdir().unwrap();
    let d = t.path();
    mesh_ca(d);
    ok(
        d,
        &[
            "workload",
            "--ca",
            "certs/c1",
            "--spiffe-id",
            "spiffe://example.org/ns/a/sa/b",
            "--alg",
            "rsa-2048",
            "--hours",
            "1",
            "--out",
            "w",
        ],
    );
    let s = json(d, &["inspect", "w/cert.pem"]);
    assert_eq!(
        s[0]["key_usages"],
        serde_json::json!(["digitalSignature", "keyEncipherment"])
    );
    assert_eq!(s[0]["spiffe_id"], "spiffe://example.org/ns/a/sa/b");
    assert_eq!(s[0]["key"], "RSA 2048");
    let left = s[0]["seconds_left"].as_i64().unwrap();
    assert!((3500..=3600).contains(&left), "{left}");
}

#[test]
fn malformed_spiffe_id_is_refused_with_one_line_and_nothing_written() {
    let t = tempdir().unwrap();
    let d = t.path();
    mesh_ca(d);
    for id in [
        "spiffe://Cluster.local/ns/a/sa/b",
        "http://cluster.local/ns/a",
        "spiffe://td/a//b",
        "spiffe://td/a?x=1",
    ] {
        let err = fails(
            d,
            &[
                "workload",
                "--ca",
                "certs/c1",
                "--spiffe-id",
                id,
                "--out",
                "w",
            ],
            2,
        );
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains("invalid SPIFFE ID"), "{err}");
    }
    assert!(!d.join("w").exists());
}

#[test]
fn ca_folder_missing_a_file_names_the_file() {
    let t = tempdir().unwrap();
    let d = t.path();
    mesh_ca(d);
    std::fs::remove_file(d.join("certs/c1/ca-key.pem")).unwrap();
    let err = fails(
        d,
        &[
            "workload",
            "--ca",
            "certs/c1",
            "--namespace",
            "a",
            "--service-account",
            "b",
            "--out",
            "w",
        ],
        2,
    );
    assert!(err.contains("has no ca-key.pem"), "{err}");
    assert_eq!(err.trim().lines().count(), 1);
}

#[test]
fn a_key_from_another_cluster_is_refused() {
    let t = tempdir().unwrap();
    let d = t.path();
    mesh_ca(d);
    ok(d, &["intermediate", "--cluster", "c2"]);
    std::fs::copy(d.join("certs/c2/ca-key.pem"), d.join("certs/c1/ca-key.pem")).unwrap();
    let err = fails(
        d,
        &[
            "workload",
            "--ca",
            "certs/c1",
            "--namespace",
            "a",
            "--service-account",
            "b",
            "--out",
            "w",
        ],
        2,
    );
    assert!(err.contains("does not match"), "{err}");
    let r = fails(d, &["verify", "--cacerts", "certs/c1"], 1);
    let _ = r;
}

#[test]
fn a_leaf_cannot_be_used_as_a_ca() {
    let t = tempdir().unwrap();
    let d = t.path();
    mesh_ca(d);
    ok(
        d,
        &[
            "workload",
            "--ca",
            "certs/c1",
            "--namespace",
            "a",
            "--service-account",
            "b",
            "--out",
            "w",
        ],
    );
    // istio/istio#27605: an end-entity cert plugged in as ca-cert.pem.
    std::fs::copy(d.join("w/cert.pem"), d.join("certs/c1/ca-cert.pem")).unwrap();
    std::fs::copy(d.join("w/key.pem"), d.join("certs/c1/ca-key.pem")).unwrap();
    let err = fails(
        d,
        &[
            "workload",
            "--ca",
            "certs/c1",
            "--namespace",
            "a",
            "--service-account",
            "b",
            "--out",
            "w2",
        ],
        2,
    );
    assert!(
        err.contains("not a CA") || err.contains("cert-chain.pem must start"),
        "{err}"
    );
}

#[test]
fn existing_files_are_kept_unless_force_is_given() {
    let t = tempdir().unwrap();
    let d = t.path();
    ok(d, &["root"]);
    let before = read(d.join("certs/root-cert.pem"));
    let err = fails(d, &["root"], 2);
    assert!(
        err.contains("already exists") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(read(d.join("certs/root-cert.pem")), before);
    ok(d, &["root", "--force"]);
    assert_ne!(read(d.join("certs/root-cert.pem")), before);
    assert_eq!(mode(&d.join("certs/root-key.pem")), 0o600);
    // No temporary files are left behind.
    let names: Vec<String> = std::fs::read_dir(d.join("certs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn a_partly_existing_output_folder_is_left_untouched() {
    let t = tempdir().unwrap();
    let d = t.path();
    mesh_ca(d);
    std::fs::create_dir(d.join("w")).unwrap();
    std::fs::write(d.join("w/chain.pem"), "mine").unwrap();
    fails(
        d,
        &[
            "workload",
            "--ca",
            "certs/c1",
            "--namespace",
            "a",
            "--service-account",
            "b",
            "--out",
            "w",
        ],
        2,
    );
    let names: Vec<String> = std::fs::read_dir(d.join("w"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["chain.pem"]);
    assert_eq!(read(d.join("w/chain.pem")), "mine");
}

#[test]
fn pathlen_zero_root_cannot_sign_an_intermediate_nor_can_an_intermediate() {
    let t = tempdir().unwrap();
    let d = t.path();
    ok(d, &["root", "--path-len", "0"]);
    let err = fails(d, &["intermediate", "--cluster", "c1"], 2);
    assert!(err.contains("pathlen:0"), "{err}");
    ok(d, &["root", "--force"]);
    ok(d, &["intermediate", "--cluster", "c1"]);
    let err = fails(
        d,
        &["intermediate", "--root", "certs/c1", "--cluster", "c2"],
        2,
    );
    assert!(err.contains("pathlen:0"), "{err}");
}

#[test]
fn an_expired_issuer_is_refused() {
    let t = tempdir().unwrap();
    let d = t.path();
    // Build a root that expired yesterday with rcgen directly.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::default();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::days(10);
    p.not_after = now - time::Duration::days(1);
    let cert = p.self_signed(&key).unwrap();
    std::fs::create_dir(d.join("old")).unwrap();
    std::fs::write(d.join("old/root-cert.pem"), cert.pem()).unwrap();
    std::fs::write(d.join("old/root-key.pem"), key.serialize_pem()).unwrap();
    let err = fails(
        d,
        &[
            "workload",
            "--ca",
            "old",
            "--namespace",
            "a",
            "--service-account",
            "b",
            "--out",
            "w",
        ],
        2,
    );
    assert!(
        err.contains("is not valid now") && err.contains("renew"),
        "{err}"
    );
    let err = fails(d, &["intermediate", "--root", "old", "--cluster", "c1"], 2);
    assert!(err.contains("is not valid now"), "{err}");
}

#[test]
fn server_cert_has_dns_and_ip_sans_and_a_tls_secret_openssl_accepts() {
    let t = tempdir().unwrap();
    let d = t.path();
    mesh_ca(d);
    ok(
        d,
        &[
            "server",
            "--ca",
            "certs/c1",
            "--dns",
            "bookinfo.example.com",
            "--dns",
            "*.example.com",
            "--ip",
            "10.0.0.7",
            "--out",
            "gw",
        ],
    );
    let s = json(d, &["inspect", "gw/cert.pem"]);
    assert_eq!(
        s[0]["sans"],
        serde_json::json!([
            "DNS:bookinfo.example.com",
            "DNS:*.example.com",
            "IP:10.0.0.7"
        ])
    );
    assert_eq!(s[0]["subject"], "CN=bookinfo.example.com");
    assert_eq!(
        s[0]["extended_key_usages"],
        serde_json::json!(["serverAuth"])
    );
    let (verified, out) = openssl(
        d,
        &[
            "verify",
            "-purpose",
            "sslserver",
            "-CAfile",
            "gw/root-cert.pem",
            "-untrusted",
            "gw/chain.pem",
            "gw/cert.pem",
        ],
    );
    assert!(verified, "{out}");
    let (_, text) = openssl(d, &["x509", "-in", "gw/cert.pem", "-noout", "-text"]);
    assert!(
        text.contains("DNS:bookinfo.example.com, DNS:*.example.com, IP Address:10.0.0.7"),
        "{text}"
    );
    let yaml = read(d.join("gw/tls-secret.yaml"));
    assert_eq!(mode(&d.join("gw/tls-secret.yaml")), 0o600);
    assert!(
        yaml.contains("type: kubernetes.io/tls\n")
            && yaml.contains("  name: bookinfo-example-com-credential\n")
    );
    let data = secret_data(&yaml);
    assert_eq!(data[0].0, "tls.crt");
    // tls.crt = leaf then the intermediate, no root.
    let crt = parse_pem(&data[0].1);
    assert_eq!(crt.len(), 2);
    assert_eq!(crt[0], parse_pem(&read(d.join("gw/cert.pem")))[0]);
    assert_eq!(crt[1], parse_pem(&read(d.join("certs/c1/ca-cert.pem")))[0]);
    assert_eq!(data[1], ("tls.key".into(), read(d.join("gw/key.pem"))));
    assert_eq!(
        data[2],
        ("ca.crt".into(), read(d.join("certs/root-cert.pem")))
    );
    let err = fails(
        d,
        &[
            "server", "--ca", "certs/c1", "--dns", "bad name", "--out", "gw2",
        ],
        2,
    );
    assert!(err.contains("is not a DNS name"), "{err}");
}

#[test]
fn secret_tls_wraps_given_files() {
    let t = tempdir().unwrap();
    let d = t.path();
    mesh_ca(d);
    ok(
        d,
        &[
            "server",
            "--ca",
            "certs/c1",
            "--dns",
            "a.example.com",
            "--out",
            "gw",
        ],
    );
    let yaml = ok(
        d,
        &[
            "secret",
            "tls",
            "--name",
            "gw-cred",
            "--namespace",
            "ingress",
            "--cert",
            "gw/cert.pem",
            "--key",
            "gw/key.pem",
        ],
    );
    assert!(yaml.contains("  name: gw-cred\n  namespace: ingress\n"));
    let data = secret_data(&yaml);
    assert_eq!(
        data,
        [
            ("tls.crt".to_string(), read(d.join("gw/cert.pem"))),
            ("tls.key".to_string(), read(d.join("gw/key.pem")))
        ]
    );
    let err = fails(
        d,
        &[
            "secret",
            "tls",
            "--name",
            "x",
            "--cert",
            "gw/cert.pem",
            "--key",
            "gw/cert.pem",
        ],
        2,
    );
    assert!(err.contains("no PEM private key"), "{err}");
}

#[test]
fn inspect_agrees_with_openssl_on_serial_fingerprint_and_dates_and_reads_der() {
    let t = tempdir().unwrap();
    let d = t.path();
    mesh_ca(d);
    let s = json(d, &["inspect", "certs/c1/cert-chain.pem"]);
    assert_eq!(s.as_array().unwrap().len(), 2);
    let (_, fp) = openssl(
        d,
        &[
            "x509",
            "-in",
            "certs/c1/ca-cert.pem",
            "-noout",
            "-fingerprint",
            "-sha256",
        ],
    );
    assert_eq!(
        fp.trim().split_once('=').unwrap().1,
        s[0]["sha256_fingerprint"]
    );
    let (_, serial) = openssl(
        d,
        &["x509", "-in", "certs/c1/ca-cert.pem", "-noout", "-serial"],
    );
    let ours = s[0]["serial"]
        .as_str()
        .unwrap()
        .replace(':', "")
        .to_uppercase();
    assert_eq!(
        serial
            .trim()
            .trim_start_matches("serial=")
            .trim_start_matches("00"),
        ours.trim_start_matches("00")
    );
    assert_eq!(s[0]["is_ca"], true);
    assert_eq!(s[0]["path_len"], 0);
    assert_eq!(s[1]["self_signed"], true);
    openssl(
        d,
        &[
            "x509",
            "-in",
            "certs/root-cert.pem",
            "-outform",
            "DER",
            "-out",
            "root.der",
        ],
    );
    let mut der = json(d, &["inspect", "root.der"]);
    // `seconds_left` moves with the clock between the two runs; the rest must match.
    let mut pem = s[1].clone();
    let left = |v: &mut serde_json::Value| v.as_object_mut().and_then(|o| o.remove("seconds_left"));
    let (der_left, pem_left) = (left(&mut der[0]), left(&mut pem));
    let secs = |v: Option<serde_json::Value>| v.and_then(|v| v.as_i64()).unwrap();
    assert!((secs(pem_left) - secs(der_left)).abs() <= 5);
    assert_eq!(der[0], pem);
    let human = ok(d, &["inspect", "certs/c1/ca-cert.pem"]);
    for label in [
        "Subject:",
        "Issuer:",
        "Serial:",
        "Not after:",
        "left)",
        "Key:",
        "SANs:",
        "CA:",
        "Key usage:",
        "SHA-256:",
    ] {
        assert!(human.contains(label), "{label}: {human}");
    }
    let err = fails(d, &["inspect", "certs/c1/ca-key.pem"], 2);
    assert!(err.contains("not a PEM or DER X.509 certificate"), "{err}");
}

#[test]
fn verify_fails_with_exit_1_where_openssl_fails_too() {
    let t = tempdir().unwrap();
    let d = t.path();
    mesh_ca(d);
    ok(d, &["root", "--out", "other"]);
    ok(
        d,
        &[
            "workload",
            "--ca",
            "certs/c1",
            "--namespace",
            "a",
            "--service-account",
            "b",
            "--out",
            "w",
        ],
    );
    // Wrong root.
    let (verified, _) = openssl(
        d,
        &[
            "verify",
            "-CAfile",
            "other/root-cert.pem",
            "-untrusted",
            "w/chain.pem",
            "w/cert.pem",
        ],
    );
    assert!(!verified);
    fails(
        d,
        &[
            "verify",
            "w/cert.pem",
            "--chain",
            "w/chain.pem",
            "--root",
            "other/root-cert.pem",
        ],
        1,
    );
    // Expired at a later time.
    let (verified, _) = openssl(
        d,
        &[
            "verify",
            "-attime",
            "4102444800",
            "-CAfile",
            "w/root-cert.pem",
            "-untrusted",
            "w/chain.pem",
            "w/cert.pem",
        ],
    );
    assert!(!verified);
    let out = certgen(d)
        .args([
            "verify",
            "w/cert.pem",
            "--ca",
            "certs/c1",
            "--at",
            "2100-01-01T00:00:00Z",
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let failed: Vec<&str> = r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "fail")
        .map(|c| c["code"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["validity"]);
    // Missing intermediate.
    let human = String::from_utf8(
        certgen(d)
            .args(["verify", "w/cert.pem", "--root", "w/root-cert.pem"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(
        human.contains("FAIL chain-signatures") && human.contains("verdict: FAILED"),
        "{human}"
    );
}

#[test]
fn verify_catches_a_pathlen_violation_that_openssl_also_rejects() {
    let t = tempdir().unwrap();
    let d = t.path();
    ok(d, &["root"]);
    ok(d, &["intermediate", "--cluster", "c1"]);
    // Sign a second-level CA under the pathlen:0 intermediate with openssl.
    std::fs::write(
        d.join("ext.cnf"),
        "basicConstraints=critical,CA:true\nkeyUsage=critical,keyCertSign,cRLSign\n",
    )
    .unwrap();
    openssl_issue(
        d,
        "sub",
        "/CN=Sub CA",
        ("certs/c1/ca-cert.pem", "certs/c1/ca-key.pem"),
        "10",
        Some("ext.cnf"),
    );
    let chain = format!(
        "{}{}",
        read(d.join("sub.pem")),
        read(d.join("certs/c1/ca-cert.pem"))
    );
    std::fs::write(d.join("chain.pem"), chain).unwrap();
    std::fs::create_dir(d.join("sub")).unwrap();
    std::fs::copy(d.join("sub.pem"), d.join("sub/root-cert.pem")).unwrap();
    // Issue a leaf from the sub CA with openssl too.
    openssl_issue(d, "leaf", "/CN=leaf", ("sub.pem", "sub.key"), "5", None);
    let (verified, out) = openssl(
        d,
        &[
            "verify",
            "-CAfile",
            "certs/root-cert.pem",
            "-untrusted",
            "chain.pem",
            "leaf.pem",
        ],
    );
    assert!(!verified && out.contains("path length"), "{out}");
    let out = certgen(d)
        .args([
            "verify",
            "leaf.pem",
            "--chain",
            "chain.pem",
            "--root",
            "certs/root-cert.pem",
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let failed: Vec<&str> = r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "fail")
        .map(|c| c["code"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["path-length"], "{r}");
}

#[test]
fn spiffe_lint_flags_an_istio_makefile_style_workload_that_openssl_accepts() {
    let t = tempdir().unwrap();
    let d = t.path();
    mesh_ca(d);
    // Istio's Makefile workload: keyUsage not critical, and here a DNS SAN next to the URI.
    std::fs::write(
        d.join("w.cnf"),
        "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=URI:spiffe://cluster.local/ns/a/sa/b,URI:spiffe://cluster.local/ns/a/sa/c\n",
    )
    .unwrap();
    openssl_issue(
        d,
        "w",
        "/O=Istio/CN=w",
        ("certs/c1/ca-cert.pem", "certs/c1/ca-key.pem"),
        "1",
        Some("w.cnf"),
    );
    let (verified, out) = openssl(
        d,
        &[
            "verify",
            "-CAfile",
            "certs/root-cert.pem",
            "-untrusted",
            "certs/c1/cert-chain.pem",
            "w.pem",
        ],
    );
    assert!(verified, "{out}");
    let out = certgen(d)
        .args(["verify", "w.pem", "--ca", "certs/c1", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let failed: Vec<&str> = r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "fail")
        .map(|c| c["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        failed,
        ["svid-one-uri-san", "svid-key-usage-critical"],
        "{r}"
    );
    // Without the lint, the path itself is fine.
    ok(
        d,
        &["verify", "w.pem", "--ca", "certs/c1", "--spiffe", "never"],
    );
}

#[test]
fn verify_cacerts_catches_a_reversed_cert_chain() {
    let t = tempdir().unwrap();
    let d = t.path();
    mesh_ca(d);
    let c1 = d.join("certs/c1");
    // istio/istio#32140: root first, intermediate second.
    let reversed = format!(
        "{}{}",
        read(c1.join("root-cert.pem")),
        read(c1.join("ca-cert.pem"))
    );
    std::fs::write(c1.join("cert-chain.pem"), reversed).unwrap();
    let out = certgen(d)
        .args(["verify", "--cacerts", "certs/c1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("must start with ca-cert.pem"), "{text}");
    // istio/istio#39001: the root listed twice.
    let dup = format!(
        "{}{}{}",
        read(c1.join("ca-cert.pem")),
        read(c1.join("root-cert.pem")),
        read(c1.join("root-cert.pem"))
    );
    std::fs::write(c1.join("cert-chain.pem"), dup).unwrap();
    let text = String::from_utf8(
        certgen(d)
            .args(["verify", "--cacerts", "certs/c1"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(text.contains("same certificate twice"), "{text}");
}

#[test]
fn acm_request_describe_export_list_round_trip_and_openssl_decrypts_the_key() {
    let t = tempdir().unwrap();
    let d = t.path();
    let r = json(
        d,
        &[
            "acm",
            "request",
            "--domain-name",
            "api.example.com",
            "--subject-alternative-names",
            "www.example.com,api2.example.com",
            "--key-algorithm",
            "EC_prime256v1",
        ],
    );
    let arn = r["CertificateArn"].as_str().unwrap().to_string();
    let id = arn
        .strip_prefix("arn:aws:acm:us-east-1:123456789012:certificate/")
        .unwrap();
    assert_eq!(id.len(), 36);
    let human = ok(d, &["acm", "request", "--domain-name", "b.example.com"]);
    assert!(human.contains("service.beta.kubernetes.io/aws-load-balancer-ssl-cert: arn:aws:acm:us-east-1:123456789012:certificate/"), "{human}");

    let c = &json(d, &["acm", "describe", "--certificate-arn", &arn])["Certificate"];
    assert_eq!(c["CertificateArn"], arn.as_str());
    assert_eq!(c["DomainName"], "api.example.com");
    assert_eq!(
        c["SubjectAlternativeNames"],
        serde_json::json!(["api.example.com", "www.example.com", "api2.example.com"])
    );
    assert_eq!(c["Status"], "ISSUED");
    assert_eq!(c["Type"], "PRIVATE");
    assert_eq!(c["KeyAlgorithm"], "EC_prime256v1");
    assert_eq!(c["SignatureAlgorithm"], "SHA256WITHECDSA");
    assert!(c["CertificateAuthorityArn"]
        .as_str()
        .unwrap()
        .starts_with("arn:aws:acm-pca:us-east-1:123456789012:certificate-authority/"));
    let days = (c["NotAfter"].as_i64().unwrap() - c["NotBefore"].as_i64().unwrap()) / 86_400;
    assert_eq!(days, 395);
    assert_eq!(
        c["KeyUsages"],
        serde_json::json!([{"Name": "DIGITAL_SIGNATURE"}, {"Name": "KEY_ENCIPHERMENT"}])
    );

    let e = json(
        d,
        &[
            "acm",
            "export",
            "--certificate-arn",
            &arn,
            "--passphrase",
            "correct-horse",
        ],
    );
    std::fs::write(d.join("cert.pem"), e["Certificate"].as_str().unwrap()).unwrap();
    std::fs::write(d.join("chain.pem"), e["CertificateChain"].as_str().unwrap()).unwrap();
    std::fs::write(d.join("enc.pem"), e["PrivateKey"].as_str().unwrap()).unwrap();
    assert!(e["PrivateKey"]
        .as_str()
        .unwrap()
        .starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
    let s = json(d, &["inspect", "cert.pem"]);
    assert_eq!(s[0]["serial"], c["Serial"]);
    let (verified, out) = openssl(d, &["verify", "-CAfile", "chain.pem", "cert.pem"]);
    assert!(verified, "{out}");
    let (a, out) = openssl(
        d,
        &[
            "pkcs8",
            "-in",
            "enc.pem",
            "-passin",
            "pass:correct-horse",
            "-out",
            "plain.pem",
        ],
    );
    assert!(a, "{out}");
    let (_, key_pub) = openssl(d, &["pkey", "-in", "plain.pem", "-pubout"]);
    let (_, cert_pub) = openssl(d, &["x509", "-in", "cert.pem", "-noout", "-pubkey"]);
    assert_eq!(key_pub, cert_pub);
    let (a, _) = openssl(
        d,
        &["pkcs8", "-in", "enc.pem", "-passin", "pass:wrong-pass"],
    );
    assert!(!a, "a wrong passphrase must not decrypt");

    let l = json(d, &["acm", "list"]);
    let arns: Vec<&str> = l["CertificateSummaryList"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["CertificateArn"].as_str().unwrap())
        .collect();
    assert_eq!(arns.len(), 2);
    assert!(arns.contains(&arn.as_str()));
    assert_eq!(
        mode(&d.join(format!("acm-store/certificates/{id}/private-key.pem"))),
        0o600
    );
}

#[test]
fn acm_rejects_bad_algorithm_passphrase_and_unknown_arn() {
    let t = tempdir().unwrap();
    let d = t.path();
    let err = fails(
        d,
        &[
            "acm",
            "request",
            "--domain-name",
            "a.example.com",
            "--key-algorithm",
            "RSA_1024",
        ],
        2,
    );
    assert!(
        err.contains("RSA_2048, EC_prime256v1 or EC_secp384r1"),
        "{err}"
    );
    let err = fails(
        d,
        &[
            "acm",
            "describe",
            "--certificate-arn",
            "arn:aws:acm:us-east-1:123456789012:certificate/00000000-0000-4000-8000-000000000000",
        ],
        2,
    );
    assert!(err.contains("no ACM store"), "{err}");
    let arn = json(
        d,
        &[
            "acm",
            "--store",
            "s",
            "--region",
            "eu-west-1",
            "request",
            "--domain-name",
            "a.example.com",
        ],
    )["CertificateArn"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(arn.starts_with("arn:aws:acm:eu-west-1:"));
    let err = fails(
        d,
        &[
            "acm",
            "--store",
            "s",
            "export",
            "--certificate-arn",
            &arn,
            "--passphrase",
            "has#hash",
        ],
        2,
    );
    assert!(err.contains("without #, $ or %"), "{err}");
    let err = fails(
        d,
        &[
            "acm",
            "--store",
            "s",
            "describe",
            "--certificate-arn",
            "arn:aws:acm:eu-west-1:123456789012:certificate/00000000-0000-4000-8000-000000000000",
        ],
        2,
    );
    assert!(err.contains("acm list"), "{err}");
    let err = fails(
        d,
        &["acm", "--store", "s", "--region", "us-east-1", "list"],
        2,
    );
    assert!(err.contains("is for region eu-west-1"), "{err}");
}

#[test]
fn help_documents_exit_codes_and_key_algorithms() {
    let t = tempdir().unwrap();
    let help = ok(t.path(), &["--help"]);
    assert!(
        help.contains("Exit codes:") && help.contains("1  verification failed"),
        "{help}"
    );
    assert!(
        help.contains("rsa-4096") && help.contains("aws-lc-rs"),
        "{help}"
    );
}
