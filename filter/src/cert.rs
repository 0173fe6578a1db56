//! The certificate Envoy puts in an XFCC `Cert=` value, read as far as the
//! filter's check needs.
//!
//! Why not `x509_parser::parse_x509_certificate`: it deep-parses every extension
//! through x509-parser's registry of extension parsers, about 60 KB of the wasm
//! module, and the check never looks at an extension. The check compares the
//! certificate's SHA-256 with the digest Envoy reports for the connection, so a
//! certificate that passes is the very one Envoy already verified against the mesh
//! CA; what is left to check is that it is well-formed and inside its validity
//! dates. So the `TBSCertificate` fields up to the subject public key are parsed
//! with x509-parser's own types (`AlgorithmIdentifier`, `X509Name`, `Validity`,
//! `SubjectPublicKeyInfo`), and the optional unique IDs and extensions that follow
//! are only required to be well-formed DER with the context tags RFC 5280 allows.

use x509_parser::asn1_rs::{Any, BitString, Class, FromDer, Tag};
use x509_parser::certificate::Validity;
use x509_parser::x509::{AlgorithmIdentifier, SubjectPublicKeyInfo, X509Name, X509Version};

/// The DER bytes of the first `CERTIFICATE` block of a PEM text. Decoded here
/// rather than with x509-parser's PEM reader, whose base64 dependency costs
/// ~37 KB of wasm.
pub fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let start = pem.find(BEGIN)? + BEGIN.len();
    let len = pem.get(start..)?.find(END)?;
    base64_decode(pem.get(start..start + len)?)
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits, mut padding) = (0u32, 0u32, 0usize);
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                padding += 1;
                continue;
            }
            b' ' | b'\t' | b'\r' | b'\n' => continue,
            _ => return None,
        };
        if padding > 0 {
            return None;
        }
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
        }
    }
    (padding <= 2 && !out.is_empty()).then_some(out)
}

/// The validity of a DER X.509 certificate, or `None` when it is not one
/// (bad structure, or bytes after the certificate).
pub fn validity(der: &[u8]) -> Option<Validity> {
    // Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }
    let (rest, cert) = Any::from_der(der).ok()?;
    if !rest.is_empty() || cert.tag() != Tag::Sequence {
        return None;
    }
    let (after_tbs, tbs) = Any::from_der(cert.data).ok()?;
    if tbs.tag() != Tag::Sequence {
        return None;
    }
    let validity = tbs_validity(tbs.data)?;
    let (i, _) = AlgorithmIdentifier::from_der(after_tbs).ok()?;
    let (i, _) = BitString::from_der(i).ok()?;
    i.is_empty().then_some(validity)
}

fn tbs_validity(i: &[u8]) -> Option<Validity> {
    // version [0] EXPLICIT Version DEFAULT v1
    let i = match Any::from_der(i).ok()? {
        (rest, v) if v.class() == Class::ContextSpecific && v.tag() == Tag(0) => {
            let (after, _) = X509Version::from_der(v.data).ok()?;
            if !after.is_empty() {
                return None;
            }
            rest
        }
        _ => i,
    };
    let (i, serial) = Any::from_der(i).ok()?;
    if serial.tag() != Tag::Integer {
        return None;
    }
    let (i, _) = AlgorithmIdentifier::from_der(i).ok()?;
    let (i, _) = X509Name::from_der(i).ok()?;
    let (i, validity) = Validity::from_der(i).ok()?;
    let (i, _) = X509Name::from_der(i).ok()?;
    let (mut i, _) = SubjectPublicKeyInfo::from_der(i).ok()?;
    // issuerUniqueID [1], subjectUniqueID [2], extensions [3], in that order.
    let mut last = 0;
    while !i.is_empty() {
        let (rest, field) = Any::from_der(i).ok()?;
        let n = field.tag().0;
        if field.class() != Class::ContextSpecific || !(1..=3).contains(&n) || n <= last {
            return None;
        }
        last = n;
        i = rest;
    }
    Some(validity)
}

/// Certificates generated for tests (here and in `decide`).
#[cfg(test)]
pub(crate) mod testing {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use rcgen::{CertificateParams, KeyPair, SanType};

    /// A SPIFFE workload certificate like certgen's, valid for the given Unix
    /// times: its DER, and its PEM as rcgen writes it.
    pub(crate) fn generate(not_before: i64, not_after: i64) -> (Vec<u8>, String) {
        let mut p = CertificateParams::new(vec!["sleep.bar.svc".into()]).unwrap();
        p.subject_alt_names.push(SanType::URI(
            "spiffe://cluster.local/ns/bar/sa/sleep".try_into().unwrap(),
        ));
        p.not_before = time::OffsetDateTime::from_unix_timestamp(not_before).unwrap();
        p.not_after = time::OffsetDateTime::from_unix_timestamp(not_after).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        (cert.der().to_vec(), cert.pem())
    }

    /// The DER of [`generate`]'s certificate.
    pub(crate) fn der(not_before: i64, not_after: i64) -> Vec<u8> {
        generate(not_before, not_after).0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::testing::{der, generate};
    use super::*;
    use x509_parser::time::ASN1Time;

    #[test]
    fn reads_the_same_validity_as_the_full_parser() {
        for (nb, na) in [
            (0, 1),
            (1_700_000_000, 1_800_000_000),
            (946_684_800, 4_102_444_800),
        ] {
            let der = der(nb, na);
            let (_, full) = x509_parser::parse_x509_certificate(&der).unwrap();
            let ours = validity(&der).unwrap();
            assert_eq!(&ours, full.validity());
            assert_eq!(ours.not_before, ASN1Time::from_timestamp(nb).unwrap());
            assert_eq!(ours.not_after, ASN1Time::from_timestamp(na).unwrap());
        }
    }

    #[test]
    fn base64_decodes_with_padding_and_line_breaks_and_refuses_garbage() {
        assert_eq!(base64_decode("aGVs\nbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGVsbG8h").unwrap(), b"hello!");
        assert_eq!(base64_decode("aGV*"), None);
        assert_eq!(base64_decode("aG=Vs"), None);
        assert_eq!(pem_to_der("no pem here"), None);
    }

    #[test]
    fn the_pem_of_a_generated_certificate_gives_its_der() {
        let (der, pem) = generate(1_700_000_000, 1_800_000_000);
        assert_eq!(pem_to_der(&pem).unwrap(), der);
    }

    #[test]
    fn anything_but_exactly_one_certificate_is_refused() {
        let good = der(1_700_000_000, 1_800_000_000);
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(validity(&trailing).is_none(), "bytes after the certificate");
        for cut in [1, 10, good.len() / 2, good.len() - 1] {
            assert!(validity(&good[..cut]).is_none(), "truncated at {cut}");
        }
        assert!(validity(&[]).is_none());
        assert!(validity(&[0x30, 0x00]).is_none(), "empty SEQUENCE");
        // The TBSCertificate is a SEQUENCE too, but not a certificate.
        let (_, cert) = Any::from_der(&good).unwrap();
        let (after_tbs, _) = Any::from_der(cert.data).unwrap();
        let tbs = &cert.data[..cert.data.len() - after_tbs.len()];
        assert!(validity(tbs).is_none(), "a TBSCertificate alone");
    }

    /// Every single-byte corruption is refused or read as x509-parser reads it
    /// (without deep-parsing extensions); the two may only disagree on a byte
    /// inside the unique IDs and extensions, which this module checks as DER only.
    #[test]
    fn a_corrupted_certificate_is_refused_or_read_like_x509_parser_reads_it() {
        use x509_parser::certificate::X509CertificateParser;
        use x509_parser::nom::Parser;
        let good = der(1_700_000_000, 1_800_000_000);
        let (_, cert) = x509_parser::parse_x509_certificate(&good).unwrap();
        let offset = |s: &[u8]| s.as_ptr() as usize - good.as_ptr() as usize;
        let spki = cert.tbs_certificate.subject_pki.raw;
        let tbs = cert.tbs_certificate.as_ref();
        let only_der_checked = offset(spki) + spki.len()..offset(tbs) + tbs.len();
        assert!(
            !only_der_checked.is_empty(),
            "the test certificate has extensions"
        );
        let mut refused = 0;
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0xff;
            let Some(ours) = validity(&bad) else {
                refused += 1;
                continue;
            };
            let mut full = X509CertificateParser::new().with_deep_parse_extensions(false);
            match full.parse(&bad) {
                Ok(([], cert)) => {
                    assert_eq!(&ours, cert.validity(), "byte {at}");
                }
                _ => assert!(
                    only_der_checked.contains(&at),
                    "byte {at}: x509-parser refuses it, this module reads it ({only_der_checked:?} are DER-only)"
                ),
            }
        }
        // Structure bytes (tags, lengths) are most of a small certificate's header.
        assert!(
            refused > 20,
            "only {refused} of {} corruptions refused",
            good.len()
        );
    }
}
