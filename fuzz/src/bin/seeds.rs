//! Writes the generated seeds of the targets whose inputs are certificates
//! (cert_der, cert_valid, proxy_dump, decide) into `corpus/<target>/`:
//! `cargo run --bin seeds` from `fuzz/`. Text seeds (XFCC headers, manifests,
//! pluginConfigs, SPIFFE IDs) are copied by `run.sh --seed`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

fn main() {
    let root_key = KeyPair::generate().unwrap();
    let mut rp = CertificateParams::new(Vec::<String>::new()).unwrap();
    rp.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let root = rp.self_signed(&root_key).unwrap();
    let issuer = Issuer::new(rp, &root_key);

    let leaf_key = KeyPair::generate().unwrap();
    let mut lp = CertificateParams::new(vec!["sleep.bar.svc".into()]).unwrap();
    lp.subject_alt_names.push(SanType::URI(
        "spiffe://cluster.local/ns/bar/sa/sleep".try_into().unwrap(),
    ));
    let leaf = lp.signed_by(&leaf_key, &issuer).unwrap();

    // Dates on both sides of 2050, where RFC 5280 switches to GeneralizedTime.
    for (name, nb, na) in [
        ("utc", 1_700_000_000i64, 1_800_000_000i64),
        ("generalized", 2_524_608_000, 4_107_542_399),
        ("epoch", 0, 1),
    ] {
        let mut p = CertificateParams::new(vec!["a.example".into()]).unwrap();
        p.not_before = time::OffsetDateTime::from_unix_timestamp(nb).unwrap();
        p.not_after = time::OffsetDateTime::from_unix_timestamp(na).unwrap();
        let c = p.self_signed(&leaf_key).unwrap();
        write("cert_der", &format!("ok-{name}.der"), c.der());
        let mut v = nb.to_le_bytes().to_vec();
        v.extend(na.to_le_bytes());
        v.extend(b"\x01b.example,c.example\nspiffe://cluster.local/ns/a/sa/b");
        write("cert_valid", &format!("ok-{name}"), &v);
    }
    write("cert_der", "ok-leaf.der", leaf.der());
    write("cert_der", "ok-root.der", root.der());
    write("cert_der", "ok-leaf.pem", leaf.pem().as_bytes());

    let chain = format!("{}{}", leaf.pem(), root.pem());
    let istioctl = serde_json::json!({
        "dynamicActiveSecrets": [
            {"name": "default", "secret": {"name": "default", "tlsCertificate": {
                "certificateChain": {"inlineBytes": B64.encode(&chain)},
                "privateKey": {"inlineBytes": B64.encode("[redacted]")}}}},
            {"name": "ROOTCA", "secret": {"name": "ROOTCA", "validationContext": {
                "trustedCa": {"inlineBytes": B64.encode(root.pem())}}}}
        ]
    });
    let envoy = serde_json::json!({"configs": [
        {"@type": "type.googleapis.com/envoy.admin.v3.SecretsConfigDump",
         "dynamic_active_secrets": [
            {"name": "default", "secret": {"name": "default", "tls_certificate": {
                "certificate_chain": {"inline_bytes": B64.encode(&chain)}}}},
            {"name": "ROOTCA", "secret": {"name": "ROOTCA", "validation_context": {
                "trusted_ca": {"inline_bytes": B64.encode(root.pem())}}}}],
         "dynamic_warming_secrets": [{"name": "kubernetes://pending", "secret": {"name": "kubernetes://pending"}}]}
    ]});
    let ztunnel = serde_json::json!([{"identity": "spiffe://cluster.local/ns/bar/sa/sleep", "state": "Available",
        "certChain": [{"pem": leaf.pem(), "serialNumber": "1", "validFrom": "2026-12-01T00:00:00Z", "expirationTime": "2026-12-02T00:00:00Z"}],
        "rootCerts": [{"pem": root.pem()}]}]);
    write("proxy_dump", "ok-istioctl.json", istioctl.to_string().as_bytes());
    write("proxy_dump", "ok-envoy.json", envoy.to_string().as_bytes());
    write("proxy_dump", "ztunnel.json", ztunnel.to_string().as_bytes());
    write("proxy_dump", "ok-chain.pem", chain.as_bytes());
    write("proxy_dump", "ok-leaf.der", leaf.der());

    // decide: byte 0 picks config/transport/port/digest, then URI SAN, newline, XFCC.
    let digest = "ab".repeat(32);
    let cert_pem = policy::xfcc::percent_encode(&leaf.pem());
    for (i, pick) in [0u8, 0x08, 0x11, 0x43, 0x24, 0x05, 0x80].into_iter().enumerate() {
        let xfcc = format!(
            "By=spiffe://cluster.local/ns/foo/sa/httpbin;Hash={digest};Cert=\"{cert_pem}\";URI=spiffe://cluster.local/ns/bar/sa/sleep"
        );
        let smuggled = format!("URI=spiffe://cluster.local/ns/istio-system/sa/x,{xfcc}");
        let header = if i % 2 == 0 { xfcc } else { smuggled };
        let mut v = vec![pick];
        v.extend(b"spiffe://cluster.local/ns/bar/sa/sleep\n");
        v.extend(header.as_bytes());
        write("decide", &format!("seed-{i}"), &v);
    }
}
