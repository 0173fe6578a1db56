//! The properties the filter's fuzz targets check, shared with the corpus
//! replay in `filter/tests/fuzz_corpus.rs` (included there with `#[path]`).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::borrow::Cow;

use peerauth_filter::cert;
use peerauth_filter::config::{Action, Config};
use peerauth_filter::decide::{decide, Outcome};
use peerauth_filter::facts::{ConnectionFacts, Facts, PeerNames, Security};
use peerauth_filter::json::{self, Json};
use policy::MtlsMode;

/// Any bytes as a pluginConfig: no panic; a config that parses answers every
/// question the filter asks of it, and its effective modes are never `Unset`.
pub fn plugin_config(data: &[u8]) {
    let Ok(config) = Config::parse(data) else {
        return;
    };
    let _ = config.warnings();
    assert_ne!(config.workload_mode, MtlsMode::Unset);
    let mut ports = vec![None, Some(0), Some(1), Some(65535), Some(u32::MAX)];
    ports.extend(config.port_modes.iter().map(|(p, _)| Some(*p)));
    for port in ports {
        let rules = config.port_rules(port);
        assert_ne!(rules.mode, MtlsMode::Unset, "port {port:?}");
        assert_ne!(config.mode_for(port), MtlsMode::Unset, "port {port:?}");
        let _ = config.identities_for(port);
    }
}

/// The filter's JSON reader against serde_json: whatever it accepts serde_json
/// accepts with the same shape (it is stricter: repeated keys, depth), except
/// numbers beyond f64, which it checks for syntax only.
pub fn filter_json(data: &[u8]) {
    let Ok(ours) = json::parse(data) else {
        return;
    };
    match serde_json::from_slice::<serde_json::Value>(data) {
        Ok(reference) => assert!(same_shape(&ours, &reference), "{ours:?} vs {reference:?}"),
        Err(e) => assert!(
            e.to_string().contains("number out of range"),
            "accepted, serde_json refuses it: {e}"
        ),
    }
}

fn same_shape(ours: &Json, reference: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (ours, reference) {
        (Json::Null, Value::Null) => true,
        // The literal kept for `counterFlushMs`: a whole number reads as serde_json reads it.
        (Json::Number(literal), Value::Number(n)) => literal
            .parse::<u64>()
            .map_or(true, |v| n.as_u64() == Some(v)),
        (Json::Bool(a), Value::Bool(b)) => a == b,
        (Json::String(a), Value::String(b)) => a == b,
        (Json::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_shape(x, y))
        }
        (Json::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(k, v)| b.get(k).is_some_and(|w| same_shape(v, w)))
        }
        _ => false,
    }
}

/// Any bytes as the DER of a `Cert=` certificate: no panic; when x509-parser
/// also reads it as exactly one certificate, both read the same validity.
pub fn cert_der(data: &[u8]) {
    use x509_parser::certificate::X509CertificateParser;
    use x509_parser::nom::Parser;
    let ours = cert::validity(data);
    if let Some(v) = ours {
        let _ = v.is_valid_at(0);
    }
    let mut full = X509CertificateParser::new().with_deep_parse_extensions(false);
    if let (Some(ours), Ok(([], reference))) = (ours, full.parse(data)) {
        let r = reference.validity();
        assert_eq!(
            (ours.not_before, ours.not_after),
            (r.not_before.timestamp(), r.not_after.timestamp())
        );
    }
    // The PEM path takes text from the header; any text must be safe too.
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some(der) = cert::pem_to_der(text) {
            let _ = cert::validity(&der);
        }
    }
}

/// The oldest and newest instants RFC 5280 dates can carry that x509-parser
/// reads: 1950-01-01 (UTCTime starts there) to 9999-12-31T23:59:59Z.
const EARLIEST: i64 = -631_152_000;
const LATEST: i64 = 253_402_300_799;

/// A valid certificate whose dates, names and extensions come from the input,
/// made by rcgen: the filter's reader must accept it and read the dates rcgen
/// wrote, which x509-parser reads too.
pub fn cert_valid(data: &[u8]) {
    use rcgen::{CertificateParams, SanType, SerialNumber};
    let mut bytes = data.iter().copied().chain(std::iter::repeat(0));
    let mut take_i64 = || {
        let mut b = [0u8; 8];
        b.iter_mut().for_each(|x| *x = bytes.next().unwrap_or(0));
        i64::from_le_bytes(b)
    };
    let span = LATEST - EARLIEST + 1;
    let nb = EARLIEST + take_i64().rem_euclid(span);
    let na = EARLIEST + take_i64().rem_euclid(span);
    let (nb, na) = (nb.min(na), nb.max(na));
    let rest = data.get(16..).unwrap_or_default();
    let text = String::from_utf8_lossy(rest);
    let mut names = text.split('\n');
    let dns: Vec<String> = names
        .next()
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty() && s.is_ascii())
        .take(8)
        .map(str::to_owned)
        .collect();
    let mut p = CertificateParams::new(dns).unwrap_or_default();
    for uri in names.take(4) {
        if let Ok(uri) = uri.to_string().try_into() {
            p.subject_alt_names.push(SanType::URI(uri));
        }
    }
    if let Some(serial) = rest.get(..rest.len().min(20)) {
        if serial.first().is_some_and(|b| *b != 0 && *b < 0x80) {
            p.serial_number = Some(SerialNumber::from_slice(serial));
        }
    }
    p.not_before = time::OffsetDateTime::from_unix_timestamp(nb).unwrap();
    p.not_after = time::OffsetDateTime::from_unix_timestamp(na).unwrap();
    let Ok(generated) = p.self_signed(key()) else {
        return;
    };
    let der = generated.der();
    let ours = cert::validity(der).expect("a valid certificate is read");
    assert_eq!((ours.not_before, ours.not_after), (nb, na));
    let (rest, reference) = x509_parser::parse_x509_certificate(der).unwrap();
    assert!(rest.is_empty());
    let r = reference.validity();
    assert_eq!(
        (r.not_before.timestamp(), r.not_after.timestamp()),
        (nb, na)
    );
    assert_eq!(
        cert::pem_to_der(&generated.pem()).as_deref(),
        Some(der.as_ref())
    );
}

/// The key every generated certificate carries, with one signature made once
/// and reused: neither the filter's reader nor x509-parser checks signatures,
/// so signing each input would only spend the target's time in ECDSA. The
/// certificates stay well-formed (a real P-256 key, a real ECDSA signature
/// value); only the signature does not cover their own contents.
struct PresignedKey {
    key: rcgen::KeyPair,
    signature: Vec<u8>,
}

impl rcgen::PublicKeyData for PresignedKey {
    fn der_bytes(&self) -> &[u8] {
        self.key.der_bytes()
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.key.algorithm()
    }
}

impl rcgen::SigningKey for PresignedKey {
    fn sign(&self, _msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        Ok(self.signature.clone())
    }
}

fn key() -> &'static PresignedKey {
    static KEY: std::sync::OnceLock<PresignedKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        let key = rcgen::KeyPair::generate().unwrap();
        let signature = rcgen::SigningKey::sign(&key, b"peerauth cert_valid").unwrap();
        PresignedKey { key, signature }
    })
}

/// pluginConfigs the decision target runs under, one per kind of expectation.
const CONFIGS: [&str; 6] = [
    r#"{"mtls":{"mode":"STRICT"}}"#,
    r#"{"mtls":{"mode":"PERMISSIVE"},"xfcc":"strip"}"#,
    r#"{"mtls":{"mode":"STRICT"},"action":"audit","xfcc":"ignore"}"#,
    r#"{"mtls":{"mode":"PERMISSIVE"},"portLevelMtls":{"8080":{"mode":"STRICT"},"9090":{"mode":"DISABLE"}}}"#,
    r#"{"mtls":{"mode":"STRICT"},"trustedForwarders":["spiffe://cluster.local/ns/istio-system/sa/*"],"allowedTrustDomains":["cluster.local"]}"#,
    r#"{"mtls":{"mode":"STRICT"},"allowedIdentities":{"*":["spiffe://cluster.local/ns/bar/**"],"8080":["spiffe://cluster.local/ns/foo/sa/sleep"]}}"#,
];

/// A decision for any request: the first byte picks the configuration,
/// transport, port and digest; the rest is the peer's URI SAN, a newline and
/// the XFCC header. No panic; the peer is only ever the connection's own URI
/// SAN, never XFCC's; plaintext to an enforced STRICT port is rejected
/// whatever the header says.
pub fn decide_request(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let config = Config::parse(CONFIGS[usize::from(pick) % CONFIGS.len()].as_bytes()).unwrap();
    let security = if pick & 0x08 == 0 {
        Security::Mtls
    } else {
        Security::Plaintext
    };
    let port = [None, Some(8080), Some(9090), Some(15006)][usize::from(pick >> 4) & 3];
    let text = String::from_utf8_lossy(rest);
    let (uri, header) = text.split_once('\n').unwrap_or((&text, ""));
    let conn = ConnectionFacts {
        security,
        peer_uri: (security == Security::Mtls && !uri.is_empty()).then(|| uri.to_owned()),
        peer_sha256: (pick & 0x40 != 0).then(|| "ab".repeat(32)),
        destination_port: port,
    };
    let facts = Facts {
        conn: Cow::Borrowed(&conn),
        xfcc: (pick & 0x80 == 0).then(|| header.to_owned()),
        now_unix: Some(1_750_000_000),
        peer_names: (pick & 0x04 != 0).then(|| PeerNames {
            subject: Some("CN=sleep.foo".into()),
            dns: None,
        }),
    };
    let d = decide(&config, &facts);
    let _ = d.log_line(Some("10.0.0.1:1234"));
    if let Some(peer) = &d.peer {
        assert_eq!(
            Some(peer),
            conn.peer_uri.as_ref(),
            "peer taken from elsewhere"
        );
    }
    if security == Security::Plaintext
        && config.action == Action::Enforce
        && config.port_rules(port).mode == MtlsMode::Strict
    {
        assert_eq!(d.outcome, Outcome::Rejected, "{d:?}");
    }
}
