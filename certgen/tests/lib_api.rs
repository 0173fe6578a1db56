//! The library contract other crates' tests use, exercised directly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use certgen::verify::{verify, Options, SpiffeLint};
use certgen::{Ca, Error, KeyAlgorithm};

fn ders(pem: &str) -> Vec<Vec<u8>> {
    ::pem::parse_many(pem)
        .unwrap()
        .into_iter()
        .map(|p| p.into_contents())
        .collect()
}

#[test]
fn every_key_algorithm_makes_a_root_intermediate_and_workload_that_verify() {
    for alg in KeyAlgorithm::ALL {
        let root = Ca::new_root("Istio", "Root CA", alg, 10, None).unwrap();
        let ca = root.intermediate("c1", alg, 5).unwrap();
        let leaf = ca
            .issue_workload(
                "spiffe://cluster.local/ns/a/sa/b",
                alg,
                Duration::from_secs(3600),
            )
            .unwrap();
        assert_eq!(leaf.chain_pem, ca.chain_pem(), "{alg}");
        assert_eq!(ca.root_pem(), root.cert_pem());
        let chain = ders(&leaf.chain_pem);
        let report = verify(
            &ders(&leaf.cert_pem)[0],
            &chain,
            &ders(&root.cert_pem()),
            Options {
                at: None,
                spiffe: SpiffeLint::Always,
            },
        );
        assert!(report.ok, "{alg}: {report:?}");
        let leaf_der = ders(&leaf.cert_pem).remove(0);
        let (_, x) = x509_parser::parse_x509_certificate(&leaf_der).unwrap();
        let ku = x.key_usage().unwrap().unwrap().value;
        assert_eq!(ku.key_encipherment(), alg.is_rsa(), "{alg}");
        assert_eq!(
            x.tbs_certificate.raw_serial().len(),
            16 + usize::from(x.tbs_certificate.raw_serial()[0] == 0)
        );
    }
}

#[test]
fn serials_are_random_even_for_the_same_issuer() {
    let root = Ca::new_root("Istio", "Root CA", KeyAlgorithm::EcdsaP256, 1, None).unwrap();
    let a = root
        .issue_server(&["a.example.com".into()], &[], KeyAlgorithm::EcdsaP256, 1)
        .unwrap();
    let b = root
        .issue_server(&["a.example.com".into()], &[], KeyAlgorithm::EcdsaP256, 1)
        .unwrap();
    let serial = |pem: &str| {
        let der = ders(pem).remove(0);
        let (_, x) = x509_parser::parse_x509_certificate(&der).unwrap();
        x.raw_serial_as_string()
    };
    assert_ne!(serial(&a.cert_pem), serial(&b.cert_pem));
}

#[test]
fn a_written_ca_folder_loads_back_with_the_same_chain() {
    let t = tempfile::tempdir().unwrap();
    let root = Ca::new_root("Istio", "Root CA", KeyAlgorithm::EcdsaP256, 10, None).unwrap();
    let ca = root
        .intermediate("west", KeyAlgorithm::EcdsaP384, 5)
        .unwrap();
    let dir = t.path().join("west");
    std::fs::create_dir(&dir).unwrap();
    for (f, v) in [
        ("ca-cert.pem", ca.cert_pem()),
        ("ca-key.pem", ca.key_pem()),
        ("cert-chain.pem", ca.chain_pem()),
        ("root-cert.pem", ca.root_pem()),
    ] {
        std::fs::write(dir.join(f), v).unwrap();
    }
    let loaded = Ca::load_dir(&dir).unwrap();
    assert_eq!(loaded.chain_pem(), ca.chain_pem());
    assert_eq!(loaded.root_pem(), root.cert_pem());
    let leaf = loaded
        .issue_workload(
            "spiffe://cluster.local/ns/x/sa/y",
            KeyAlgorithm::Ed25519,
            Duration::from_secs(60),
        )
        .unwrap();
    assert!(leaf.chain_pem.starts_with(&ca.cert_pem()));
}

#[test]
fn workload_validity_is_clamped_to_the_issuer() {
    let root = Ca::new_root("Istio", "Root CA", KeyAlgorithm::EcdsaP256, 1, None).unwrap();
    let leaf = root
        .issue_workload(
            "spiffe://td/ns/a/sa/b",
            KeyAlgorithm::EcdsaP256,
            Duration::from_secs(30 * 86_400),
        )
        .unwrap();
    let der = ders(&leaf.cert_pem).remove(0);
    let (_, x) = x509_parser::parse_x509_certificate(&der).unwrap();
    assert_eq!(x.validity().not_after, root_not_after(&root));
}

fn root_not_after(root: &Ca) -> x509_parser::time::ASN1Time {
    let (_, x) = x509_parser::parse_x509_certificate(root.cert_der()).unwrap();
    x.validity().not_after
}

#[test]
fn bad_inputs_map_to_typed_errors() {
    let root = Ca::new_root("Istio", "Root CA", KeyAlgorithm::EcdsaP256, 1, Some(0)).unwrap();
    assert!(matches!(
        root.intermediate("c1", KeyAlgorithm::EcdsaP256, 1),
        Err(Error::PathLenViolation { path_len: 0, .. })
    ));
    assert!(matches!(
        root.intermediate("../x", KeyAlgorithm::EcdsaP256, 1),
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        root.issue_workload(
            "spiffe://td/ns/a/sa/b/",
            KeyAlgorithm::EcdsaP256,
            Duration::from_secs(60)
        ),
        Err(Error::InvalidSpiffeId { .. })
    ));
    assert!(matches!(
        root.issue_server(&[], &[], KeyAlgorithm::EcdsaP256, 1),
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        "rsa-1024".parse::<KeyAlgorithm>(),
        Err(Error::UnknownAlgorithm(_))
    ));
    assert_eq!(
        "EC_prime256v1".parse::<KeyAlgorithm>().unwrap(),
        KeyAlgorithm::EcdsaP256
    );
    let t = tempfile::tempdir().unwrap();
    assert!(matches!(
        Ca::load_dir(&t.path().join("none")),
        Err(Error::CaDirMissing(_))
    ));
    assert!(matches!(
        Ca::load_dir(t.path()),
        Err(Error::CaFileMissing {
            file: "ca-cert.pem",
            ..
        })
    ));
}

#[test]
fn exported_key_decrypts_back_to_the_original() {
    let key = rcgen::KeyPair::generate().unwrap().serialize_pem();
    let enc = certgen::acm::encrypt_pkcs8(&key, b"pass-word").unwrap();
    assert!(enc.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----\n"));
    assert_eq!(
        certgen::acm::decrypt_pkcs8(&enc, b"pass-word").unwrap(),
        key
    );
    assert!(certgen::acm::decrypt_pkcs8(&enc, b"other").is_err());
}
