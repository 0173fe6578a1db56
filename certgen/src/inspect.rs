//! A summary of any certificate: what `certgen inspect` shows.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::public_key::PublicKey;

use crate::pki::fmt_time;
use crate::Error;

/// Everything `inspect` reports about one certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertSummary {
    /// RFC 4514-style text, empty for an empty subject (as SPIFFE SVIDs have).
    pub subject: String,
    pub issuer: String,
    /// Colon-separated hex, as AWS and openssl print it.
    pub serial: String,
    /// RFC 3339.
    pub not_before: String,
    /// RFC 3339.
    pub not_after: String,
    /// Seconds from the inspection time to NotAfter; negative once expired.
    pub seconds_left: i64,
    /// `valid`, `expired` or `not-yet-valid` at the inspection time.
    pub validity_status: String,
    /// `EC P-256`, `EC P-384`, `Ed25519`, `RSA 2048` and so on.
    pub key: String,
    pub signature_algorithm: String,
    /// `DNS:…`, `URI:…`, `IP:…`, `email:…`.
    pub sans: Vec<String>,
    /// Whether the subjectAltName extension is marked critical (`None`: no extension).
    pub sans_critical: Option<bool>,
    /// The first `spiffe://` URI SAN.
    pub spiffe_id: Option<String>,
    /// `Some(reason)` when `spiffe_id` breaks the SPIFFE-ID rules.
    pub spiffe_id_error: Option<String>,
    pub is_ca: bool,
    pub path_len: Option<u32>,
    /// RFC 5280 names: `digitalSignature`, `keyEncipherment`, `keyCertSign`, `cRLSign`, …
    pub key_usages: Vec<String>,
    pub key_usage_critical: Option<bool>,
    /// `serverAuth`, `clientAuth`, … or a dotted OID.
    pub extended_key_usages: Vec<String>,
    pub self_signed: bool,
    /// Uppercase colon hex of SHA-256 over the DER, as `openssl x509 -fingerprint -sha256` prints.
    pub sha256_fingerprint: String,
}

/// Summaries of every certificate in `bytes` (PEM bundle or one DER cert), at `now`.
///
/// `Err(BadCertificate)` if nothing parses; `what` names the input in the message.
pub fn inspect_bytes(
    bytes: &[u8],
    what: &str,
    now: OffsetDateTime,
) -> Result<Vec<CertSummary>, Error> {
    crate::pem::certs_from_bytes(bytes, what)?
        .iter()
        .map(|der| summarize(der, now))
        .collect()
}

/// All certificates in `bytes` as DER (PEM bundle or one DER cert).
///
/// `Err(BadCertificate)` if nothing parses.
pub fn certs_der(bytes: &[u8], what: &str) -> Result<Vec<Vec<u8>>, Error> {
    crate::pem::certs_from_bytes(bytes, what)
}

/// A DER certificate as PEM text.
pub fn cert_pem(der: &[u8]) -> String {
    crate::pem::cert_to_pem(der)
}

pub(crate) fn parse(der: &[u8]) -> Result<X509Certificate<'_>, Error> {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, c)| c)
        .map_err(|e| Error::BadCertificate {
            what: "certificate".into(),
            reason: e.to_string(),
        })
}

/// The summary of one DER certificate at `now`. `Err(BadCertificate)` if it does not parse.
pub fn summarize(der: &[u8], now: OffsetDateTime) -> Result<CertSummary, Error> {
    let x = parse(der)?;
    let not_before = x.validity().not_before.to_datetime();
    let not_after = x.validity().not_after.to_datetime();
    let validity_status = if now < not_before {
        "not-yet-valid"
    } else if now > not_after {
        "expired"
    } else {
        "valid"
    };
    let (sans, sans_critical) = sans(&x);
    let spiffe_id = sans
        .iter()
        .filter_map(|s| s.strip_prefix("URI:"))
        .find(|u| u.starts_with("spiffe://"))
        .map(str::to_string);
    let spiffe_id_error = spiffe_id.as_deref().and_then(|id| {
        policy::spiffe::SpiffeId::parse(id)
            .err()
            .map(|e| e.to_string())
    });
    let bc = x.basic_constraints().ok().flatten();
    let ku = x.key_usage().ok().flatten();
    Ok(CertSummary {
        subject: x.subject().to_string(),
        issuer: x.issuer().to_string(),
        serial: x.raw_serial_as_string(),
        not_before: fmt_time(not_before),
        not_after: fmt_time(not_after),
        seconds_left: (not_after - now).whole_seconds(),
        validity_status: validity_status.into(),
        key: key_description(&x),
        signature_algorithm: oid_name(&x.signature_algorithm.algorithm),
        sans,
        sans_critical,
        spiffe_id,
        spiffe_id_error,
        is_ca: bc.as_ref().is_some_and(|b| b.value.ca),
        path_len: bc.and_then(|b| b.value.path_len_constraint),
        key_usages: ku
            .as_ref()
            .map(|k| key_usage_names(k.value))
            .unwrap_or_default(),
        key_usage_critical: ku.map(|k| k.critical),
        extended_key_usages: eku_names(&x),
        self_signed: x.subject().as_raw() == x.issuer().as_raw()
            && x.verify_signature(None).is_ok(),
        sha256_fingerprint: colon_hex(&Sha256::digest(der), true),
    })
}

pub(crate) fn colon_hex(bytes: &[u8], upper: bool) -> String {
    bytes
        .iter()
        .map(|b| {
            if upper {
                format!("{b:02X}")
            } else {
                format!("{b:02x}")
            }
        })
        .collect::<Vec<_>>()
        .join(":")
}

fn oid_name(oid: &x509_parser::der_parser::oid::Oid<'_>) -> String {
    x509_parser::objects::oid2sn(oid, x509_parser::objects::oid_registry())
        .map(str::to_string)
        .unwrap_or_else(|_| oid.to_id_string())
}

fn key_description(x: &X509Certificate<'_>) -> String {
    let spki = x.public_key();
    if spki.algorithm.algorithm == x509_parser::oid_registry::OID_SIG_ED25519 {
        return "Ed25519".into();
    }
    match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) => format!("RSA {}", rsa.key_size()),
        Ok(PublicKey::EC(ec)) => format!("EC P-{}", ec.key_size()),
        _ => oid_name(&spki.algorithm.algorithm),
    }
}

pub(crate) fn sans(x: &X509Certificate<'_>) -> (Vec<String>, Option<bool>) {
    match x.subject_alternative_name() {
        Ok(Some(ext)) => {
            let names = ext
                .value
                .general_names
                .iter()
                .map(|g| match g {
                    GeneralName::DNSName(d) => format!("DNS:{d}"),
                    GeneralName::URI(u) => format!("URI:{u}"),
                    GeneralName::RFC822Name(m) => format!("email:{m}"),
                    GeneralName::IPAddress(b) => format!("IP:{}", ip_text(b)),
                    other => format!("other:{other:?}"),
                })
                .collect();
            (names, Some(ext.critical))
        }
        _ => (Vec::new(), None),
    }
}

fn ip_text(b: &[u8]) -> String {
    if let Ok(a) = <[u8; 4]>::try_from(b) {
        std::net::IpAddr::from(a).to_string()
    } else if let Ok(a) = <[u8; 16]>::try_from(b) {
        std::net::IpAddr::from(a).to_string()
    } else {
        colon_hex(b, false)
    }
}

fn key_usage_names(k: &x509_parser::extensions::KeyUsage) -> Vec<String> {
    [
        (k.digital_signature(), "digitalSignature"),
        (k.non_repudiation(), "nonRepudiation"),
        (k.key_encipherment(), "keyEncipherment"),
        (k.data_encipherment(), "dataEncipherment"),
        (k.key_agreement(), "keyAgreement"),
        (k.key_cert_sign(), "keyCertSign"),
        (k.crl_sign(), "cRLSign"),
        (k.encipher_only(), "encipherOnly"),
        (k.decipher_only(), "decipherOnly"),
    ]
    .into_iter()
    .filter(|(on, _)| *on)
    .map(|(_, n)| n.to_string())
    .collect()
}

pub(crate) fn eku_names(x: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(ext)) = x.extended_key_usage() else {
        return Vec::new();
    };
    let e = ext.value;
    let mut v: Vec<String> = [
        (e.any, "anyExtendedKeyUsage"),
        (e.server_auth, "serverAuth"),
        (e.client_auth, "clientAuth"),
        (e.code_signing, "codeSigning"),
        (e.email_protection, "emailProtection"),
        (e.time_stamping, "timeStamping"),
        (e.ocsp_signing, "OCSPSigning"),
    ]
    .into_iter()
    .filter(|(on, _)| *on)
    .map(|(_, n)| n.to_string())
    .collect();
    v.extend(e.other.iter().map(|o| o.to_id_string()));
    v
}

/// "2d 3h", "23h 59m", "5m": a span of seconds in words (its sign is ignored).
pub fn duration_words(secs: i64) -> String {
    let secs = secs.unsigned_abs();
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else {
        format!("{m}m")
    }
}

/// "23h 59m left", "expired 2d 3h ago": the time left in words.
pub fn time_left_text(s: &CertSummary) -> String {
    let words = duration_words;
    match s.validity_status.as_str() {
        "expired" => format!("EXPIRED {} ago", words(s.seconds_left)),
        "not-yet-valid" => "NOT YET VALID".into(),
        _ => format!("{} left", words(s.seconds_left)),
    }
}

/// The human rendering `certgen inspect` prints for one certificate.
pub fn render(s: &CertSummary) -> String {
    let or_none = |v: &[String]| {
        if v.is_empty() {
            "(none)".to_string()
        } else {
            v.join(", ")
        }
    };
    let crit = |c: Option<bool>| if c == Some(true) { " (critical)" } else { "" };
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<13}{v}\n"));
    line(
        "Subject:",
        if s.subject.is_empty() {
            "(empty)".into()
        } else {
            s.subject.clone()
        },
    );
    line("Issuer:", s.issuer.clone());
    line("Serial:", s.serial.clone());
    line("Not before:", s.not_before.clone());
    line(
        "Not after:",
        format!("{} ({})", s.not_after, time_left_text(s)),
    );
    line("Key:", s.key.clone());
    line("Signature:", s.signature_algorithm.clone());
    line(
        "SANs:",
        format!("{}{}", or_none(&s.sans), crit(s.sans_critical)),
    );
    if let Some(id) = &s.spiffe_id {
        let note = match &s.spiffe_id_error {
            Some(e) => format!(" (INVALID: {e})"),
            None => String::new(),
        };
        line("SPIFFE ID:", format!("{id}{note}"));
    }
    line(
        "CA:",
        match (s.is_ca, s.path_len) {
            (true, Some(n)) => format!("true, pathlen:{n}"),
            (true, None) => "true".into(),
            (false, _) => "false".into(),
        },
    );
    line(
        "Key usage:",
        format!("{}{}", or_none(&s.key_usages), crit(s.key_usage_critical)),
    );
    line("Ext. usage:", or_none(&s.extended_key_usages));
    if s.self_signed {
        line("Self-signed:", "yes".into());
    }
    line("SHA-256:", s.sha256_fingerprint.clone());
    out
}

/// Where a certificate was found in a proxy dump.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertSource {
    /// See [`crate::proxy::Format::name`].
    pub format: String,
    /// The secret (`default`, `ROOTCA`, …) or ztunnel identity.
    pub secret: String,
    /// `active`, `warming`, `static`, or ztunnel's state.
    pub state: String,
    /// `chain` (what the proxy presents, leaf first) or `root` (what it trusts).
    pub role: String,
    /// 1-based place in its chain or root list.
    pub position: usize,
    /// The length of that chain or list.
    pub of: usize,
    /// For a TLS certificate secret: `redacted`, `in-clear` or `absent`.
    pub private_key: Option<crate::proxy::KeyState>,
}

/// One certificate `inspect` reports: its summary and, for a proxy dump, where it was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    #[serde(flatten)]
    pub summary: CertSummary,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<CertSource>,
}

/// Every certificate of `input` at `now`: a PEM/DER file's in order, a
/// proxy dump's secret by secret (chain, then roots). Secrets without
/// certificates (warming) are left out. `Err(BadCertificate)` if one does not parse.
pub fn inspect_input(
    input: &crate::proxy::Input,
    now: OffsetDateTime,
) -> Result<Vec<Entry>, Error> {
    let mut out = Vec::new();
    if !input.format.is_proxy() {
        for der in &input.certs {
            out.push(Entry {
                summary: summarize(der, now)?,
                source: None,
            });
        }
        return Ok(out);
    }
    for s in &input.secrets {
        for (role, list) in [("chain", &s.chain), ("root", &s.roots)] {
            for (k, der) in list.iter().enumerate() {
                out.push(Entry {
                    summary: summarize(der, now)?,
                    source: Some(CertSource {
                        format: input.format.name().into(),
                        secret: s.name.clone(),
                        state: s.state.clone(),
                        role: role.into(),
                        position: k + 1,
                        of: list.len(),
                        private_key: (role == "chain"
                            && input.format != crate::proxy::Format::ZtunnelCertificates)
                            .then(|| s.private_key.clone()),
                    }),
                });
            }
        }
    }
    Ok(out)
}

/// The heading `inspect` prints above a certificate found in a proxy dump.
pub fn source_text(s: &CertSource) -> String {
    let what = if s.role == "chain" {
        match s.position {
            1 => "workload certificate".to_string(),
            n => format!("chain certificate {n} of {}", s.of),
        }
    } else {
        format!("trusted root {} of {}", s.position, s.of)
    };
    let key = match s.private_key.as_ref().filter(|_| s.position == 1) {
        Some(crate::proxy::KeyState::Redacted) => ", private key redacted by the proxy",
        Some(crate::proxy::KeyState::InClear) => ", PRIVATE KEY IN CLEAR in this dump",
        _ => "",
    };
    let holder = if s.format == crate::proxy::Format::ZtunnelCertificates.name() {
        "identity"
    } else {
        "secret"
    };
    format!("{holder} `{}` ({}), {what}{key}", s.secret, s.state)
}
