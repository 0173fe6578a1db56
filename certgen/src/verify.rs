//! Path validation and the SPIFFE X.509-SVID lint: what `certgen verify` checks.
//!
//! x509-parser has no path builder, so this module builds the path itself:
//! from the leaf, each step picks a certificate whose subject is the current
//! issuer and whose key verifies the current signature, preferring the given
//! roots, until a root is reached.

use std::path::Path;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;

use crate::inspect::{eku_names, parse, sans};
use crate::pki::fmt_time;
use crate::{Ca, Error};

/// When the SPIFFE X.509-SVID lint runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SpiffeLint {
    /// When the leaf carries a `spiffe://` URI SAN.
    #[default]
    Auto,
    Always,
    Never,
}

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

/// One named check and what it found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// Stable kebab-case code, e.g. `chain-signatures`, `svid-one-uri-san`.
    pub code: String,
    pub status: Status,
    pub message: String,
}

/// The verdict: `ok` is false when any check failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub ok: bool,
    /// The time validity was checked at (RFC 3339).
    pub at: String,
    /// Subjects from the leaf up to the root, as far as the path was built.
    pub path: Vec<String>,
    pub checks: Vec<Check>,
}

impl Report {
    fn new(at: OffsetDateTime) -> Self {
        Report {
            ok: true,
            at: fmt_time(at),
            path: Vec::new(),
            checks: Vec::new(),
        }
    }

    fn push(&mut self, code: &str, status: Status, message: impl Into<String>) {
        if status == Status::Fail {
            self.ok = false;
        }
        self.checks.push(Check {
            code: code.into(),
            status,
            message: message.into(),
        });
    }

    fn pass(&mut self, code: &str, message: impl Into<String>) {
        self.push(code, Status::Pass, message);
    }

    fn fail(&mut self, code: &str, message: impl Into<String>) {
        self.push(code, Status::Fail, message);
    }

    fn check(&mut self, code: &str, ok: bool, pass: impl Into<String>, fail: impl Into<String>) {
        if ok {
            self.pass(code, pass);
        } else {
            self.fail(code, fail);
        }
    }
}

/// Options for [`verify`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Check validity at this time instead of now.
    pub at: Option<OffsetDateTime>,
    pub spiffe: SpiffeLint,
}

fn name(x: &X509Certificate<'_>) -> String {
    let s = x.subject().to_string();
    if s.is_empty() {
        let (sans, _) = sans(x);
        match sans.first() {
            Some(n) => format!("(empty subject; {n})"),
            None => "(empty subject)".into(),
        }
    } else {
        s
    }
}

/// Verifies `leaf` (DER) through `intermediates` to one of `roots`.
///
/// Never fails as a function: every finding, including an unparsable input,
/// is a check in the report.
pub fn verify(leaf: &[u8], intermediates: &[Vec<u8>], roots: &[Vec<u8>], opts: Options) -> Report {
    let at = opts.at.unwrap_or_else(OffsetDateTime::now_utc);
    let mut r = Report::new(at);
    fn parsed(d: &[u8]) -> Option<X509Certificate<'_>> {
        parse(d).ok()
    }
    let Some(leaf_x) = parsed(leaf) else {
        r.fail("parse", "the leaf does not parse as an X.509 certificate");
        return r;
    };
    let pool: Vec<X509Certificate<'_>> = intermediates.iter().filter_map(|d| parsed(d)).collect();
    let anchors: Vec<X509Certificate<'_>> = roots.iter().filter_map(|d| parsed(d)).collect();
    if anchors.is_empty() {
        r.fail(
            "trust-anchor",
            "no root certificate given: pass --root (or --ca)",
        );
        return r;
    }

    // Build the path.
    let mut path: Vec<&X509Certificate<'_>> = vec![&leaf_x];
    let mut anchored = anchors.iter().any(|a| a.as_raw() == leaf_x.as_raw());
    let mut broken: Option<String> = None;
    while !anchored && path.len() < 10 {
        let Some(cur) = path.last().copied() else {
            break;
        };
        let named = |c: &&X509Certificate<'_>| c.subject().as_raw() == cur.issuer().as_raw();
        let signs = |c: &&X509Certificate<'_>| cur.verify_signature(Some(c.public_key())).is_ok();
        if let Some(a) = anchors.iter().filter(named).find(signs) {
            path.push(a);
            anchored = true;
        } else if let Some(c) = pool
            .iter()
            .filter(named)
            .filter(|c| !path.iter().any(|p| p.as_raw() == c.as_raw()))
            .find(signs)
        {
            path.push(c);
        } else {
            let by_name = anchors.iter().chain(pool.iter()).find(named);
            broken = Some(match by_name {
                Some(c) => format!(
                    "the signature on `{}` does not verify with the key of `{}`: the chain holds a different certificate with the same name",
                    name(cur),
                    name(c)
                ),
                None => format!(
                    "no certificate named `{}` (the issuer of `{}`) in the chain or roots: pass its issuer with --chain",
                    cur.issuer(),
                    name(cur)
                ),
            });
            break;
        }
    }
    r.path = path.iter().map(|c| name(c)).collect();
    match broken {
        Some(msg) => r.fail("chain-signatures", msg),
        None => r.pass(
            "chain-signatures",
            format!("each signature verifies: {}", r.path.join(" <- ")),
        ),
    }
    r.check(
        "trust-anchor",
        anchored,
        "the path ends at a given root",
        "the path does not reach a given root: pass the right --root",
    );

    // Validity of every certificate on the path.
    let bad_time: Vec<String> = path
        .iter()
        .filter_map(|c| {
            let (nb, na) = (
                c.validity().not_before.to_datetime(),
                c.validity().not_after.to_datetime(),
            );
            if at < nb {
                Some(format!(
                    "`{}` is not valid before {}",
                    name(c),
                    fmt_time(nb)
                ))
            } else if at > na {
                Some(format!("`{}` expired at {}", name(c), fmt_time(na)))
            } else {
                None
            }
        })
        .collect();
    r.check(
        "validity",
        bad_time.is_empty(),
        format!("every certificate is valid at {}", fmt_time(at)),
        format!("{}: renew it", bad_time.join("; ")),
    );

    // Issuers must be CAs allowed to sign, within their path length.
    let mut ca_problems = Vec::new();
    let mut len_problems = Vec::new();
    for (k, issuer) in path.iter().enumerate().skip(1) {
        let bc = issuer.basic_constraints().ok().flatten();
        let is_ca = bc.as_ref().is_some_and(|b| b.value.ca);
        let can_sign = issuer
            .key_usage()
            .ok()
            .flatten()
            .is_none_or(|ku| ku.value.key_cert_sign());
        if !is_ca {
            ca_problems.push(format!(
                "`{}` is not a CA (basicConstraints CA:true missing)",
                name(issuer)
            ));
        } else if !can_sign {
            ca_problems.push(format!("`{}` lacks keyUsage keyCertSign", name(issuer)));
        }
        let below = k.saturating_sub(1);
        if let Some(max) = bc.and_then(|b| b.value.path_len_constraint) {
            if below > max as usize {
                len_problems.push(format!(
                    "`{}` has pathlen:{max} but {below} CA certificate(s) sit below it",
                    name(issuer)
                ));
            }
        }
    }
    r.check(
        "ca-flags",
        ca_problems.is_empty(),
        "every issuer is a CA with keyCertSign",
        format!("{}: sign with a CA certificate", ca_problems.join("; ")),
    );
    r.check(
        "path-length",
        len_problems.is_empty(),
        "no path length constraint is exceeded",
        format!(
            "{}: issue from a CA higher up, or raise its pathlen",
            len_problems.join("; ")
        ),
    );

    // Go (and so istiod and the Istio agent) rejects SHA-1 signatures.
    let weak: Vec<String> = path
        .iter()
        .filter(|c| c.subject().as_raw() != c.issuer().as_raw())
        .filter(|c| {
            let oid = c.signature_algorithm.algorithm.to_id_string();
            oid == "1.2.840.113549.1.1.5"
                || oid == "1.2.840.10045.4.1"
                || oid == "1.2.840.113549.1.1.4"
        })
        .map(|c| name(c))
        .collect();
    r.check(
        "signature-algorithm",
        weak.is_empty(),
        "no SHA-1 or MD5 signatures",
        format!(
            "{} signed with SHA-1 or MD5, which Go and Envoy reject: reissue with SHA-256",
            weak.join(", ")
        ),
    );

    // An issuer's EKU limits its leaves (Go checks this); a CA EKU without
    // clientAuth silently breaks mTLS between proxies (istio/istio#27193).
    let narrow: Vec<String> = path
        .iter()
        .skip(1)
        .filter(|c| {
            let e = eku_names(c);
            let has = |n: &str| e.iter().any(|x| x == n);
            let allows_mtls =
                has("anyExtendedKeyUsage") || (has("serverAuth") && has("clientAuth"));
            !e.is_empty() && !allows_mtls
        })
        .map(|c| name(c))
        .collect();
    r.check(
        "issuer-eku",
        narrow.is_empty(),
        "no issuer restricts its leaves' usages below serverAuth+clientAuth",
        format!(
            "{} has an extendedKeyUsage without both serverAuth and clientAuth, so mTLS leaves under it are rejected: drop the EKU from the CA or add both",
            narrow.join(", ")
        ),
    );

    let (leaf_sans, _) = sans(&leaf_x);
    let has_spiffe = leaf_sans.iter().any(|s| s.starts_with("URI:spiffe://"));
    if opts.spiffe == SpiffeLint::Always || (opts.spiffe == SpiffeLint::Auto && has_spiffe) {
        spiffe_lint(&mut r, &leaf_x);
    }
    r
}

/// The SPIFFE X.509-SVID rules for a leaf (spiffe/spiffe `standards/X509-SVID.md`).
fn spiffe_lint(r: &mut Report, x: &X509Certificate<'_>) {
    let (sans, san_critical) = sans(x);
    let uris: Vec<&str> = sans.iter().filter_map(|s| s.strip_prefix("URI:")).collect();
    r.check(
        "svid-one-uri-san",
        uris.len() == 1,
        "exactly one URI SAN",
        format!(
            "{} URI SANs: an X.509-SVID carries exactly one, its SPIFFE ID",
            uris.len()
        ),
    );
    if let Some(uri) = uris.first() {
        match policy::spiffe::SpiffeId::parse(uri) {
            Ok(id) if id.path().is_empty() => r.fail(
                "svid-spiffe-id",
                format!("`{uri}` names a trust domain, not a workload: a leaf SVID needs a path such as /ns/<ns>/sa/<sa>"),
            ),
            Ok(_) => r.pass("svid-spiffe-id", format!("`{uri}` is a valid SPIFFE ID")),
            Err(e) => r.fail("svid-spiffe-id", format!("`{uri}`: {e}")),
        }
    }
    let bc = x.basic_constraints().ok().flatten();
    r.check(
        "svid-leaf-not-ca",
        !bc.is_some_and(|b| b.value.ca),
        "the leaf is not a CA",
        "the leaf has CA:true: a leaf SVID must set cA to false",
    );
    let ku = x.key_usage().ok().flatten();
    match ku {
        None => r.fail(
            "svid-key-usage",
            "no keyUsage extension: an SVID must carry a critical keyUsage",
        ),
        Some(ku) => {
            r.check(
                "svid-key-usage-critical",
                ku.critical,
                "keyUsage is critical",
                "keyUsage is not critical: mark it critical",
            );
            r.check(
                "svid-digital-signature",
                ku.value.digital_signature(),
                "keyUsage has digitalSignature",
                "keyUsage lacks digitalSignature: add it",
            );
            r.check(
                "svid-no-cert-sign",
                !ku.value.key_cert_sign() && !ku.value.crl_sign(),
                "keyUsage has neither keyCertSign nor cRLSign",
                "a leaf SVID must not have keyCertSign or cRLSign",
            );
        }
    }
    let eku = eku_names(x);
    r.check(
        "svid-eku",
        eku.is_empty()
            || (eku.iter().any(|e| e == "serverAuth") && eku.iter().any(|e| e == "clientAuth")),
        "extendedKeyUsage allows serverAuth and clientAuth",
        format!(
            "extendedKeyUsage is [{}]: an SVID used for mTLS needs both serverAuth and clientAuth",
            eku.join(", ")
        ),
    );
    if x.subject().iter().next().is_none() {
        r.check(
            "svid-san-critical",
            san_critical == Some(true),
            "the subject is empty and the SAN extension is critical",
            "the subject is empty but subjectAltName is not critical (RFC 5280 4.2.1.6): mark it critical",
        );
    }
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

/// [`verify`] over files: the first certificate of `leaf` is the leaf, any
/// others in it join `chain`'s certificates as candidate intermediates.
///
/// `Err(Io | BadCertificate)` for unreadable or unparsable files.
pub fn verify_files(
    leaf: &Path,
    chain: Option<&Path>,
    root: &Path,
    opts: Options,
) -> Result<Report, Error> {
    let mut certs = crate::pem::certs_from_bytes(&read(leaf)?, &leaf.display().to_string())?;
    let leaf_der = certs.remove(0);
    if let Some(c) = chain {
        certs.extend(crate::pem::certs_from_bytes(
            &read(c)?,
            &c.display().to_string(),
        )?);
    }
    let roots = crate::pem::certs_from_bytes(&read(root)?, &root.display().to_string())?;
    Ok(verify(&leaf_der, &certs, &roots, opts))
}

/// The checks istiod makes on a `cacerts` folder at start-up, and then
/// [`verify`] of `ca-cert.pem` through `cert-chain.pem` to `root-cert.pem`.
///
/// `Err(CaDirMissing | CaFileMissing | Io)` when the folder cannot be read as
/// a plug-in CA folder at all; every other problem is a failed check.
pub fn verify_ca_dir(dir: &Path, at: Option<OffsetDateTime>) -> Result<Report, Error> {
    let loaded = Ca::load_dir(dir);
    let now = at.unwrap_or_else(OffsetDateTime::now_utc);
    match loaded {
        Err(e @ (Error::CaDirMissing(_) | Error::CaFileMissing { .. } | Error::Io { .. })) => {
            Err(e)
        }
        Err(e) => {
            let mut r = Report::new(now);
            r.fail("cacerts-load", e.to_string());
            Ok(r)
        }
        Ok(ca) => {
            let chain = crate::pem::certs_from_bytes(ca.chain_pem().as_bytes(), "cert-chain.pem")?;
            let roots = crate::pem::certs_from_bytes(ca.root_pem().as_bytes(), "root-cert.pem")?;
            let mut r = verify(
                ca.cert_der(),
                &chain[1..],
                &roots,
                Options {
                    at,
                    spiffe: SpiffeLint::Never,
                },
            );
            r.checks.insert(
                0,
                Check {
                    code: "cacerts-load".into(),
                    status: Status::Pass,
                    message: "ca-cert.pem is a CA, ca-key.pem matches it, cert-chain.pem leads to root-cert.pem".into(),
                },
            );
            Ok(r)
        }
    }
}

/// The human rendering of a report.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    if !r.path.is_empty() {
        out.push_str(&format!("path: {}\n", r.path.join(" <- ")));
    }
    for c in &r.checks {
        let tag = match c.status {
            Status::Pass => "ok  ",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        };
        out.push_str(&format!("{tag} {:<24} {}\n", c.code, c.message));
    }
    out.push_str(if r.ok {
        "verdict: OK\n"
    } else {
        "verdict: FAILED\n"
    });
    out
}
