//! The certificate Envoy puts in an XFCC `Cert=` value, read as far as the
//! filter's check needs.
//!
//! The check compares the certificate's SHA-256 with the digest Envoy reports
//! for the connection, so a certificate that passes is the very one Envoy
//! already verified against the mesh CA; what is left to check is that it is
//! well-formed and inside its validity dates. So this module reads the DER
//! structure of the `Certificate` and its `TBSCertificate` up to the subject
//! public key (RFC 5280 section 4.1: version, serial, algorithm, names,
//! validity, key) and only requires the unique IDs and extensions after it to
//! be well-formed DER with the context tags RFC 5280 allows.
//!
//! Why not x509-parser: even with only its `TBSCertificate` field types (the
//! extension registry was dropped earlier) it and asn1-rs were ~25 KB of the
//! wasm module, for two dates. The tests check this reader against
//! x509-parser's full parse on every single-byte corruption of a certificate.

/// `notBefore` and `notAfter` as seconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub not_before: i64,
    pub not_after: i64,
}

impl Validity {
    /// RFC 5280: valid from `notBefore` to `notAfter`, both inclusive.
    pub fn is_valid_at(&self, unix: i64) -> bool {
        self.not_before <= unix && unix <= self.not_after
    }
}

const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
const END: &str = "-----END CERTIFICATE-----";

/// The DER bytes of a PEM text that is one `CERTIFICATE` block and nothing
/// else (whitespace around it aside). An XFCC `Cert=` is checked by hashing
/// this block, so text before or after it (a second certificate, say) would
/// ride along unchecked: such a value is `None`. Decoded here rather than with
/// x509-parser's PEM reader, whose base64 dependency costs ~37 KB of wasm.
pub fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    let (der, rest) = first_pem(pem.trim_start().strip_prefix(BEGIN)?)?;
    rest.trim().is_empty().then_some(der)
}

/// The DER bytes of the first `CERTIFICATE` block of a PEM chain (the leaf, in
/// the order TLS presents a chain and Envoy writes `Chain=`).
pub fn chain_leaf_der(pem: &str) -> Option<Vec<u8>> {
    let (der, _) = first_pem(pem.trim_start().strip_prefix(BEGIN)?)?;
    Some(der)
}

/// The block's body up to its END line, decoded, and the text after that line.
fn first_pem(body: &str) -> Option<(Vec<u8>, &str)> {
    let len = body.find(END)?;
    let der = base64_decode(body.get(..len)?)?;
    Some((der, body.get(len + END.len()..)?))
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
    let (cert, rest) = expect(der, SEQUENCE)?;
    if !rest.is_empty() {
        return None;
    }
    let (tbs, i) = expect(cert, SEQUENCE)?;
    let validity = tbs_validity(tbs)?;
    let i = algorithm(i)?;
    let (_, i) = bit_string(i)?;
    i.is_empty().then_some(validity)
}

const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OID: u8 = 0x06;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
/// `[0] EXPLICIT` (version), `[1]`/`[2] IMPLICIT BIT STRING` (unique IDs),
/// `[3] EXPLICIT` (extensions).
const VERSION: u8 = 0xa0;
const TBS_TAIL: [u8; 3] = [0x81, 0x82, 0xa3];

/// One DER element: its identifier byte, contents and what follows. Only the
/// low tag numbers RFC 5280 uses and definite, minimally encoded lengths.
fn tlv(i: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, i) = i.split_first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, mut i) = i.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || i.first() == Some(&0) {
            return None;
        }
        let (bytes, rest) = (i.get(..n)?, i.get(n..)?);
        i = rest;
        let len = bytes.iter().fold(0usize, |l, b| (l << 8) | usize::from(*b));
        if len < 0x80 {
            return None;
        }
        len
    };
    Some((tag, i.get(..len)?, i.get(len..)?))
}

fn expect(i: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (t, body, rest) = tlv(i)?;
    (t == tag).then_some((body, rest))
}

fn integer(i: &[u8]) -> Option<&[u8]> {
    let (body, rest) = expect(i, INTEGER)?;
    // DER: at least one byte, no redundant leading 0x00 or 0xff.
    match body {
        [] => None,
        [0x00, b, ..] if *b < 0x80 => None,
        [0xff, b, ..] if *b >= 0x80 => None,
        _ => Some(rest),
    }
}

fn oid(i: &[u8]) -> Option<&[u8]> {
    let (body, rest) = expect(i, OID)?;
    // Non-empty, each arc minimally encoded and the last one complete.
    let starts_arc = |at: usize| at == 0 || body.get(at - 1).is_some_and(|b| b & 0x80 == 0);
    let minimal = body
        .iter()
        .enumerate()
        .all(|(at, b)| !(starts_arc(at) && *b == 0x80));
    (body.last().is_some_and(|b| b & 0x80 == 0) && minimal).then_some(rest)
}

/// `AlgorithmIdentifier ::= SEQUENCE { algorithm OID, parameters ANY OPTIONAL }`
fn algorithm(i: &[u8]) -> Option<&[u8]> {
    let (body, rest) = expect(i, SEQUENCE)?;
    let params = oid(body)?;
    if !params.is_empty() {
        let (_, _, after) = tlv(params)?;
        if !after.is_empty() {
            return None;
        }
    }
    Some(rest)
}

fn bit_string(i: &[u8]) -> Option<(&[u8], &[u8])> {
    let (body, rest) = expect(i, BIT_STRING)?;
    match body {
        [unused, ..] if *unused > 7 => None,
        [unused] if *unused != 0 => None,
        [] => None,
        _ => Some((body, rest)),
    }
}

/// `Name ::= SEQUENCE OF SET OF SEQUENCE { type OID, value ANY }`
fn name(i: &[u8]) -> Option<&[u8]> {
    let (mut rdns, rest) = expect(i, SEQUENCE)?;
    while !rdns.is_empty() {
        let (mut set, after) = expect(rdns, SET)?;
        if set.is_empty() {
            return None;
        }
        while !set.is_empty() {
            let (atv, next) = expect(set, SEQUENCE)?;
            let (_, _, end) = tlv(oid(atv)?)?;
            if !end.is_empty() {
                return None;
            }
            set = next;
        }
        rdns = after;
    }
    Some(rest)
}

/// Two decimal digits.
fn two(d: &[u8]) -> Option<i64> {
    match d {
        [a @ b'0'..=b'9', b @ b'0'..=b'9'] => Some(i64::from((a - b'0') * 10 + (b - b'0'))),
        _ => None,
    }
}

/// `UTCTime` (`YYMMDDHHMMSSZ`, 1950-2049) or `GeneralizedTime`
/// (`YYYYMMDDHHMMSSZ`), in the only forms RFC 5280 section 4.1.2.5 allows.
fn time(i: &[u8]) -> Option<(i64, &[u8])> {
    let (tag, body, rest) = tlv(i)?;
    let (year, t) = match (tag, body.len()) {
        (UTC_TIME, 13) => {
            let yy = two(body.get(..2)?)?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, body.get(2..)?)
        }
        (GENERALIZED_TIME, 15) => {
            let year = two(body.get(..2)?)? * 100 + two(body.get(2..4)?)?;
            (year, body.get(4..)?)
        }
        _ => return None,
    };
    let field = |at: usize| t.get(at..at + 2).and_then(two);
    let (month, day) = (field(0)?, field(2)?);
    let (hour, minute, second) = (field(4)?, field(6)?, field(8)?);
    if t.get(10..) != Some(b"Z") {
        return None;
    }
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if day < 1 || day > days_in_month || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    // Days from 1970-01-01 to the date (proleptic Gregorian; years from 0).
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + hour * 3_600 + minute * 60 + second, rest))
}

fn tbs_validity(i: &[u8]) -> Option<Validity> {
    // version [0] EXPLICIT Version DEFAULT v1: v1, v2 or v3
    let i = match expect(i, VERSION) {
        Some((v, rest)) => {
            let (n, after) = expect(v, INTEGER)?;
            if !after.is_empty() || !matches!(n, [0..=2]) {
                return None;
            }
            rest
        }
        None => i,
    };
    let i = integer(i)?; // serialNumber
    let i = algorithm(i)?; // signature
    let i = name(i)?; // issuer
    let (v, i) = expect(i, SEQUENCE)?;
    let (not_before, v) = time(v)?;
    let (not_after, v) = time(v)?;
    if !v.is_empty() {
        return None;
    }
    let i = name(i)?; // subject
    let (spki, mut i) = expect(i, SEQUENCE)?;
    let (_, end) = bit_string(algorithm(spki)?)?;
    if !end.is_empty() {
        return None;
    }
    // issuerUniqueID [1], subjectUniqueID [2], extensions [3], in that order.
    let mut next = 0;
    while !i.is_empty() {
        let (tag, _, rest) = tlv(i)?;
        let at = TBS_TAIL.iter().position(|t| *t == tag)?;
        if at < next {
            return None;
        }
        next = at + 1;
        i = rest;
    }
    Some(Validity {
        not_before,
        not_after,
    })
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

    #[test]
    fn reads_the_same_validity_as_the_full_parser() {
        // UTCTime up to 2049, GeneralizedTime from 2050 (rcgen follows RFC 5280),
        // the century boundaries, leap days and the last second of a year.
        for (nb, na) in [
            (0, 1),
            (1_700_000_000, 1_800_000_000),
            (946_684_800, 4_102_444_800),
            (-631_152_000, 2_524_607_999),
            (2_524_608_000, 4_107_542_399),
            (951_782_400, 1_078_012_799),
            (-1, 253_402_300_799),
        ] {
            let der = der(nb, na);
            let (_, full) = x509_parser::parse_x509_certificate(&der).unwrap();
            let ours = validity(&der).unwrap();
            assert_eq!(
                ours.not_before,
                full.validity().not_before.timestamp(),
                "{nb}"
            );
            assert_eq!(
                ours.not_after,
                full.validity().not_after.timestamp(),
                "{na}"
            );
            assert_eq!((ours.not_before, ours.not_after), (nb, na));
            assert!(ours.is_valid_at(nb) && ours.is_valid_at(na));
            assert!(!ours.is_valid_at(nb - 1) && !ours.is_valid_at(na + 1));
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
    fn a_cert_value_with_anything_besides_its_one_block_is_refused_but_a_chain_gives_its_leaf() {
        let (der, pem) = generate(1_700_000_000, 1_800_000_000);
        let (_, other) = generate(1_600_000_000, 1_900_000_000);
        assert_eq!(pem_to_der(&format!("\n  {pem}\n")).unwrap(), der);
        assert_eq!(pem_to_der(&format!("{pem}{other}")), None, "a second block");
        assert_eq!(pem_to_der(&format!("{pem}trailing")), None, "text after");
        assert_eq!(pem_to_der(&format!("x{pem}")), None, "text before");
        assert_eq!(chain_leaf_der(&format!("{pem}{other}")).unwrap(), der);
        assert_eq!(chain_leaf_der(&format!("x{pem}")), None);
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
        use x509_parser::asn1_rs::{Any, FromDer};
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
                    let v = cert.validity();
                    assert_eq!(
                        (ours.not_before, ours.not_after),
                        (v.not_before.timestamp(), v.not_after.timestamp()),
                        "byte {at}"
                    );
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
