//! Path validation and the SPIFFE X.509-SVID lint: what `certgen verify` checks.
//!
//! x509-parser has no path builder, so this module builds the path itself:
//! from the leaf, each step picks a certificate whose subject is the current
//! issuer and whose key verifies the current signature, preferring the given
//! roots, until a root is reached.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::Digest;
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;

use crate::inspect::{duration_words, eku_names, parse, sans};
use crate::pki::fmt_time;
use crate::proxy::{self, Format, Input, KeyState};
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

    pub(crate) fn push(&mut self, code: &str, status: Status, message: impl Into<String>) {
        if status == Status::Fail {
            self.ok = false;
        }
        self.checks.push(Check {
            code: code.into(),
            status,
            message: message.into(),
        });
    }

    pub(crate) fn pass(&mut self, code: &str, message: impl Into<String>) {
        self.push(code, Status::Pass, message);
    }

    pub(crate) fn fail(&mut self, code: &str, message: impl Into<String>) {
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

/// What `--expect-identity` names: `<namespace>/<serviceaccount>` (any trust
/// domain) or a whole SPIFFE ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpectedIdentity {
    Istio {
        namespace: String,
        service_account: String,
    },
    Spiffe(String),
}

impl ExpectedIdentity {
    /// `Err(InvalidInput)` for anything but `ns/sa` or a valid SPIFFE ID.
    pub fn parse(s: &str) -> Result<Self, Error> {
        if s.starts_with("spiffe://") {
            return policy::spiffe::SpiffeId::parse(s)
                .map(|_| ExpectedIdentity::Spiffe(s.to_string()))
                .map_err(|e| Error::InvalidSpiffeId {
                    id: s.into(),
                    reason: e.to_string(),
                });
        }
        match s.split('/').collect::<Vec<_>>().as_slice() {
            [ns, sa] if !ns.is_empty() && !sa.is_empty() => Ok(ExpectedIdentity::Istio {
                namespace: (*ns).into(),
                service_account: (*sa).into(),
            }),
            _ => Err(Error::InvalidInput(format!(
                "--expect-identity `{s}`: use <namespace>/<serviceaccount> (e.g. foo/httpbin) or a SPIFFE ID"
            ))),
        }
    }

    /// Whether the SPIFFE ID `id` is this identity.
    pub fn matches(&self, id: &str) -> bool {
        match self {
            ExpectedIdentity::Spiffe(want) => want == id,
            ExpectedIdentity::Istio {
                namespace,
                service_account,
            } => policy::spiffe::SpiffeId::parse(id)
                .ok()
                .and_then(|p| p.istio_identity())
                .is_some_and(|i| {
                    &i.namespace == namespace && &i.service_account == service_account
                }),
        }
    }

    fn text(&self) -> String {
        match self {
            ExpectedIdentity::Spiffe(s) => s.clone(),
            ExpectedIdentity::Istio {
                namespace,
                service_account,
            } => format!("{namespace}/{service_account}"),
        }
    }
}

fn leaf_spiffe_id(leaf: &[u8]) -> Option<String> {
    let x = parse(leaf).ok()?;
    let (sans, _) = sans(&x);
    sans.iter()
        .filter_map(|s| s.strip_prefix("URI:"))
        .find(|u| u.starts_with("spiffe://"))
        .map(str::to_string)
}

impl Report {
    /// Adds the `expect-identity` check: the leaf's SPIFFE ID is `expect`.
    pub fn check_identity(&mut self, leaf: &[u8], expect: &ExpectedIdentity) {
        match leaf_spiffe_id(leaf) {
            Some(id) if expect.matches(&id) => self.pass(
                "expect-identity",
                format!("the workload runs as {} (`{id}`)", expect.text()),
            ),
            Some(id) => self.fail(
                "expect-identity",
                format!(
                    "the workload runs as `{id}`, not {}: the pod's serviceAccountName differs from its manifests (or the pod was not restarted since it changed)",
                    expect.text()
                ),
            ),
            None => self.fail(
                "expect-identity",
                format!(
                    "the certificate carries no SPIFFE ID, so it cannot be {}",
                    expect.text()
                ),
            ),
        }
    }

    /// Adds `expiry` (time left, and whether Istio should have renewed it by
    /// now) and `spiffe-id` for a proxy's workload certificate.
    fn check_workload(&mut self, leaf: &[u8], at: OffsetDateTime) {
        let Ok(x) = parse(leaf) else { return };
        let (nb, na) = (
            x.validity().not_before.to_datetime(),
            x.validity().not_after.to_datetime(),
        );
        let left = (na - at).whole_seconds();
        let lifetime = (na - nb).whole_seconds();
        if at > na {
            self.fail(
                "expiry",
                format!(
                    "the workload certificate expired {} ago ({}): the proxy has not renewed it; check that it reaches istiod",
                    duration_words(left),
                    fmt_time(na)
                ),
            );
        } else if at < nb {
            self.fail(
                "expiry",
                format!(
                    "the workload certificate is not valid before {}: check the clocks",
                    fmt_time(nb)
                ),
            );
        } else if lifetime > 0 && left * 2 < lifetime {
            // pilot-agent renews at SECRET_GRACE_PERIOD_RATIO (0.5) of the
            // lifetime (istio/istio pilot/cmd/pilot-agent/options/options.go).
            self.push(
                "expiry",
                Status::Warn,
                format!(
                    "{} left of {} (expires {}): past half its lifetime, when Istio's agent renews it; check the proxy's connection to istiod",
                    duration_words(left),
                    duration_words(lifetime),
                    fmt_time(na)
                ),
            );
        } else {
            self.pass(
                "expiry",
                format!(
                    "{} left of {} (expires {})",
                    duration_words(left),
                    duration_words(lifetime),
                    fmt_time(na)
                ),
            );
        }
        match leaf_spiffe_id(leaf) {
            Some(id) => match policy::spiffe::SpiffeId::parse(&id) {
                Ok(_) => self.pass("spiffe-id", format!("the proxy presents `{id}`")),
                Err(e) => self.fail("spiffe-id", format!("`{id}`: {e}")),
            },
            None => self.fail(
                "spiffe-id",
                "the workload certificate has no spiffe:// URI SAN: Istio peers cannot authorize it",
            ),
        }
    }
}

/// One workload certificate of a proxy dump and its verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadReport {
    /// The secret (`default`) or, for ztunnel, the identity it is held under.
    pub secret: String,
    /// The SPIFFE ID the leaf carries.
    pub spiffe_id: Option<String>,
    #[serde(flatten)]
    pub report: Report,
}

/// `verify` over a proxy dump: one report per workload certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyReport {
    pub ok: bool,
    pub input: String,
    /// See [`Format::name`].
    pub format: String,
    /// Where the trust anchors came from: the dump (`ROOTCA`, `rootCerts`) or `--root`.
    pub roots_from: String,
    pub workloads: Vec<WorkloadReport>,
}

/// Roots given on the command line instead of the dump's.
#[derive(Debug, Clone, Default)]
pub struct RootOverride {
    pub certs: Vec<Vec<u8>>,
    /// Named in the report, e.g. `--root root-cert.pem`.
    pub from: String,
}

/// Verifies the workload certificate(s) of a proxy dump: each chain against
/// the dump's own trust anchors (or `roots`), plus `expiry`, `spiffe-id`,
/// `private-key` and, with `expect`, `expect-identity`. An Envoy dump is
/// verified through its `default` secret; a ztunnel dump through every
/// identity it holds (or only those `expect` names).
///
/// `Err(BadProxyDump)` when the dump has no `default` secret, it is still
/// warming, or there are no trust anchors and no `roots`.
pub fn verify_proxy(
    input: &Input,
    what: &str,
    roots: Option<&RootOverride>,
    extra_chain: &[Vec<u8>],
    expect: Option<&ExpectedIdentity>,
    opts: Options,
) -> Result<ProxyReport, Error> {
    let at = opts.at.unwrap_or_else(OffsetDateTime::now_utc);
    let bad = |reason: String| Error::BadProxyDump {
        what: what.to_string(),
        reason,
    };
    let mut workloads = Vec::new();
    let roots_from;
    if input.format == Format::ZtunnelCertificates {
        roots_from = match roots {
            Some(r) => r.from.clone(),
            None => "each identity's rootCerts".into(),
        };
        for s in &input.secrets {
            let wanted = expect.is_none_or(|e| e.matches(&s.name));
            if !wanted {
                continue;
            }
            let mut r = Report::new(at);
            let state = s.state.as_str();
            if s.chain.is_empty() {
                let status =
                    if state.starts_with("Initializing") || state.contains("no longer needed") {
                        Status::Warn
                    } else {
                        Status::Fail
                    };
                r.push(
                    "certificate-state",
                    status,
                    format!("ztunnel holds no certificate for this identity (state `{state}`)"),
                );
                if let Some(e) = expect {
                    r.fail(
                        "expect-identity",
                        format!("ztunnel has no certificate for {} yet", e.text()),
                    );
                }
            } else {
                let anchors = roots
                    .map(|o| o.certs.clone())
                    .unwrap_or_else(|| s.roots.clone());
                let mut chain = s.chain[1..].to_vec();
                chain.extend_from_slice(extra_chain);
                r = verify(&s.chain[0], &chain, &anchors, opts);
                r.checks.insert(
                    0,
                    Check {
                        code: "certificate-state".into(),
                        status: if state == "Available" {
                            Status::Pass
                        } else {
                            Status::Warn
                        },
                        message: format!("ztunnel reports the certificate as `{state}`"),
                    },
                );
                r.check_workload(&s.chain[0], at);
                if let Some(e) = expect {
                    r.check_identity(&s.chain[0], e);
                }
            }
            workloads.push(WorkloadReport {
                secret: s.name.clone(),
                spiffe_id: s.chain.first().and_then(|d| leaf_spiffe_id(d)),
                report: r,
            });
        }
        if workloads.is_empty() {
            let mut r = Report::new(at);
            let held: Vec<&str> = input.secrets.iter().map(|s| s.name.as_str()).collect();
            r.fail(
                "expect-identity",
                format!(
                    "ztunnel holds no certificate for {} (it holds: {}): no pod of that service account runs on this node, or the pod runs as another service account",
                    expect.map(|e| e.text()).unwrap_or_default(),
                    held.join(", ")
                ),
            );
            workloads.push(WorkloadReport {
                secret: expect.map(|e| e.text()).unwrap_or_default(),
                spiffe_id: None,
                report: r,
            });
        }
    } else {
        let w = input.secret(proxy::WORKLOAD_SECRET).ok_or_else(|| {
            bad(format!(
                "no `{}` secret (secrets: {}): the proxy has no workload certificate; is it an Istio sidecar with mTLS (the istio-proxy container, not a plain Envoy)?",
                proxy::WORKLOAD_SECRET,
                input.secret_names()
            ))
        })?;
        if w.chain.is_empty() {
            return Err(bad(format!(
                "secret `{}` is {} and holds no certificate yet: wait for the proxy to get it from istiod, then dump again",
                w.name, w.state
            )));
        }
        let anchors = match roots {
            Some(o) => {
                roots_from = o.from.clone();
                o.certs.clone()
            }
            None => {
                let r = input
                    .secret(proxy::ROOT_SECRET)
                    .filter(|s| !s.roots.is_empty())
                    .ok_or_else(|| {
                        bad(format!(
                            "no `{}` secret with certificates (secrets: {}): pass the mesh root with --root root-cert.pem",
                            proxy::ROOT_SECRET,
                            input.secret_names()
                        ))
                    })?;
                roots_from = format!("the dump's {} secret", proxy::ROOT_SECRET);
                r.roots.clone()
            }
        };
        let mut chain = w.chain[1..].to_vec();
        chain.extend_from_slice(extra_chain);
        let mut r = verify(&w.chain[0], &chain, &anchors, opts);
        r.check_workload(&w.chain[0], at);
        match w.private_key {
            KeyState::Redacted => r.pass(
                "private-key",
                "redacted by Envoy (`[redacted]`): the dump holds no secret",
            ),
            KeyState::InClear => r.push(
                "private-key",
                Status::Warn,
                "the dump holds the private key itself: keep this file as secret as the key",
            ),
            KeyState::Absent => {}
        }
        if let Some(e) = expect {
            r.check_identity(&w.chain[0], e);
        }
        workloads.push(WorkloadReport {
            secret: w.name.clone(),
            spiffe_id: leaf_spiffe_id(&w.chain[0]),
            report: r,
        });
    }
    Ok(ProxyReport {
        ok: workloads.iter().all(|w| w.report.ok),
        input: what.to_string(),
        format: input.format.name().into(),
        roots_from,
        workloads,
    })
}

/// The human rendering of a proxy report.
pub fn render_proxy(p: &ProxyReport) -> String {
    let mut out = format!(
        "{} ({}), trust anchors from {}\n",
        p.input, p.format, p.roots_from
    );
    for w in &p.workloads {
        out.push_str(&format!(
            "== {}{}\n",
            w.secret,
            w.spiffe_id
                .as_deref()
                .filter(|id| *id != w.secret)
                .map(|id| format!(" ({id})"))
                .unwrap_or_default()
        ));
        out.push_str(&render(&w.report));
    }
    if p.workloads.len() > 1 {
        out.push_str(if p.ok {
            "overall: OK\n"
        } else {
            "overall: FAILED\n"
        });
    }
    out
}

/// A trust anchor, as `--same-root` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootInfo {
    pub subject: String,
    /// Uppercase colon hex, as `inspect` prints it.
    pub sha256_fingerprint: String,
}

/// One input of `--same-root`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyRoots {
    pub input: String,
    pub format: String,
    /// The SPIFFE ID of the workload certificate that was cross-checked, if any.
    pub spiffe_id: Option<String>,
    pub roots: Vec<RootInfo>,
}

/// `verify --same-root`: whether several proxies trust the same root and can verify each other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SameRootReport {
    pub ok: bool,
    pub proxies: Vec<ProxyRoots>,
    pub checks: Vec<Check>,
}

fn workload_chain(input: &Input) -> Option<&[Vec<u8>]> {
    match input.format {
        Format::Pem | Format::Der => {
            let first = input.certs.first()?;
            (!proxy::self_signed(first)).then_some(input.certs.as_slice())
        }
        Format::ZtunnelCertificates => input
            .secrets
            .iter()
            .find(|s| !s.chain.is_empty())
            .map(|s| s.chain.as_slice()),
        _ => input
            .secret(proxy::WORKLOAD_SECRET)
            .filter(|s| !s.chain.is_empty())
            .map(|s| s.chain.as_slice()),
    }
}

/// Compares the trust anchors of several inputs (proxy dumps, or PEM files
/// whose self-signed certificates count as roots) and checks that each one's
/// workload certificate verifies under every other one's roots — what
/// multi-cluster mTLS needs, and what separate self-signed istiod CAs break.
/// Never fails as a function: every finding is a check.
pub fn same_root(inputs: &[(String, Input)], opts: Options) -> SameRootReport {
    let mut r = Report::new(opts.at.unwrap_or_else(OffsetDateTime::now_utc));
    let fp = |d: &[u8]| crate::inspect::colon_hex(&sha2::Sha256::digest(d), true);
    let roots: Vec<Vec<Vec<u8>>> = inputs.iter().map(|(_, i)| i.trust_roots()).collect();
    let proxies: Vec<ProxyRoots> = inputs
        .iter()
        .zip(&roots)
        .map(|((what, input), rs)| ProxyRoots {
            input: what.clone(),
            format: input.format.name().into(),
            spiffe_id: workload_chain(input).and_then(|c| leaf_spiffe_id(&c[0])),
            roots: rs
                .iter()
                .map(|d| RootInfo {
                    subject: parse(d).map(|x| name(&x)).unwrap_or_default(),
                    sha256_fingerprint: fp(d),
                })
                .collect(),
        })
        .collect();
    for p in proxies.iter().filter(|p| p.roots.is_empty()) {
        r.fail(
            "roots",
            format!(
                "{} holds no trust anchor (no ROOTCA, rootCerts or self-signed certificate)",
                p.input
            ),
        );
    }
    let common: Vec<&RootInfo> = proxies
        .first()
        .map(|first| {
            first
                .roots
                .iter()
                .filter(|root| {
                    proxies.iter().all(|p| {
                        p.roots
                            .iter()
                            .any(|o| o.sha256_fingerprint == root.sha256_fingerprint)
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    match common.first() {
        Some(root) => r.pass(
            "same-root",
            format!(
                "all {} trust `{}` (SHA-256 {})",
                proxies.len(),
                root.subject,
                root.sha256_fingerprint
            ),
        ),
        None => {
            let each: Vec<String> = proxies
                .iter()
                .map(|p| {
                    let rs: Vec<String> = p
                        .roots
                        .iter()
                        .map(|x| {
                            format!(
                                "`{}` ({}…)",
                                x.subject,
                                &x.sha256_fingerprint[..x.sha256_fingerprint.len().min(11)]
                            )
                        })
                        .collect();
                    format!(
                        "{} trusts {}",
                        p.input,
                        if rs.is_empty() {
                            "nothing".into()
                        } else {
                            rs.join(", ")
                        }
                    )
                })
                .collect();
            r.fail(
                "same-root",
                format!(
                    "no root is trusted by all: {}; each cluster signs with its own CA — plug in intermediates from one root in every cluster (certgen intermediate --root <root> --cluster <name>, then the cacerts Secret)",
                    each.join("; ")
                ),
            );
        }
    }
    for (a, (what_a, input_a)) in inputs.iter().enumerate() {
        let Some(chain) = workload_chain(input_a) else {
            continue;
        };
        for (b, (what_b, _)) in inputs.iter().enumerate() {
            if a == b || roots[b].is_empty() {
                continue;
            }
            let v = verify(&chain[0], &chain[1..], &roots[b], opts);
            let reached = v
                .checks
                .iter()
                .filter(|c| c.code == "chain-signatures" || c.code == "trust-anchor")
                .all(|c| c.status == Status::Pass);
            r.check(
                "cross-trust",
                reached,
                format!("{what_a}'s workload certificate verifies under {what_b}'s roots"),
                format!("{what_a}'s workload certificate does not verify under {what_b}'s roots: mTLS between them fails"),
            );
        }
    }
    SameRootReport {
        ok: r.ok,
        proxies,
        checks: r.checks,
    }
}

/// The human rendering of a `--same-root` report.
pub fn render_same_root(s: &SameRootReport) -> String {
    let mut out = String::new();
    for p in &s.proxies {
        out.push_str(&format!(
            "{} ({}){}\n",
            p.input,
            p.format,
            p.spiffe_id
                .as_deref()
                .map(|i| format!(": {i}"))
                .unwrap_or_default()
        ));
        for root in &p.roots {
            out.push_str(&format!(
                "  root {}  {}\n",
                root.sha256_fingerprint, root.subject
            ));
        }
    }
    let r = Report {
        ok: s.ok,
        at: String::new(),
        path: Vec::new(),
        checks: s.checks.clone(),
    };
    out.push_str(&render(&r));
    out
}
