//! PEM in and out: certificates as PEM text with LF line endings, and the
//! lenient reading (PEM bundle or a single DER blob) that `inspect` and
//! `verify` accept.

use crate::Error;

fn config() -> ::pem::EncodeConfig {
    ::pem::EncodeConfig::new().set_line_ending(::pem::LineEnding::LF)
}

pub(crate) fn cert_to_pem(der: &[u8]) -> String {
    ::pem::encode_config(&::pem::Pem::new("CERTIFICATE", der), config())
}

pub(crate) fn encode(tag: &str, der: &[u8]) -> String {
    ::pem::encode_config(&::pem::Pem::new(tag, der), config())
}

/// Every certificate in `bytes`, as DER: a PEM bundle (other blocks such as
/// keys are skipped) or one DER certificate. `what` names the input in errors.
pub(crate) fn certs_from_bytes(bytes: &[u8], what: &str) -> Result<Vec<Vec<u8>>, Error> {
    let bad = |reason: String| Error::BadCertificate {
        what: what.to_string(),
        reason,
    };
    let looks_pem = bytes
        .windows(b"-----BEGIN".len())
        .any(|w| w == b"-----BEGIN");
    if looks_pem {
        let blocks = ::pem::parse_many(bytes).map_err(|e| bad(e.to_string()))?;
        let certs: Vec<Vec<u8>> = blocks
            .into_iter()
            .filter(|p| p.tag() == "CERTIFICATE" || p.tag() == "X509 CERTIFICATE")
            .map(|p| p.into_contents())
            .collect();
        if certs.is_empty() {
            return Err(bad("no CERTIFICATE block found".into()));
        }
        for der in &certs {
            x509_parser::parse_x509_certificate(der).map_err(|e| bad(e.to_string()))?;
        }
        Ok(certs)
    } else {
        let (rest, _) =
            x509_parser::parse_x509_certificate(bytes).map_err(|e| bad(e.to_string()))?;
        if !rest.is_empty() {
            return Err(bad(format!(
                "{} trailing bytes after the certificate",
                rest.len()
            )));
        }
        Ok(vec![bytes.to_vec()])
    }
}

/// The single private key block of a PEM file, as text.
pub(crate) fn single_key_pem(text: &str, what: &str) -> Result<String, Error> {
    let blocks = ::pem::parse_many(text).map_err(|e| Error::BadKey {
        what: what.into(),
        reason: e.to_string(),
    })?;
    let keys: Vec<_> = blocks
        .iter()
        .filter(|p| p.tag().ends_with("PRIVATE KEY"))
        .collect();
    match keys.as_slice() {
        [one] if one.tag() == "ENCRYPTED PRIVATE KEY" => Err(Error::BadKey {
            what: what.into(),
            reason: "the key is encrypted".into(),
        }),
        [one] => Ok(::pem::encode_config(one, config())),
        [] => Err(Error::BadKey {
            what: what.into(),
            reason: "no PRIVATE KEY block found".into(),
        }),
        _ => Err(Error::BadKey {
            what: what.into(),
            reason: "more than one private key in the file".into(),
        }),
    }
}
