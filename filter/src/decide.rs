//! The verdict: a pure function of the configuration and the gathered facts.

use crate::cert;
use crate::config::{Action, Config, PortRules, XfccPolicy};
use crate::facts::{Facts, PeerNames, Security};
use policy::spiffe::{SpiffeId, SpiffePattern};
use policy::xfcc;
use policy::MtlsMode;
use sha2::{Digest, Sha256};

/// What happens to the request or connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Allowed,
    Rejected,
    /// `audit` mode: allowed, but an `enforce` filter would have rejected it.
    WouldReject,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Rejected => "rejected",
            Outcome::WouldReject => "would_reject",
        }
    }
}

/// Why; `Ok` when nothing was wrong. Labels are stable metric values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Ok,
    /// Plaintext on a STRICT port.
    PlaintextOnStrict,
    /// (a) An XFCC header on a connection without mTLS.
    XfccOnPlaintext,
    /// (b) XFCC elements before Envoy's own, from a peer that is not a trusted forwarder.
    XfccSmuggled,
    /// (c) The nearest element's `Hash`, `URI`, `Subject`, `DNS`, `Chain` or
    /// `Cert` contradicts the peer certificate.
    XfccMismatch,
    /// The header could not be parsed.
    XfccMalformed,
    /// `Cert=` is not a parsable certificate or is outside its validity dates.
    XfccCertInvalid,
    /// Stripping or replacing the header failed in the host, so the untrusted
    /// header would have passed on.
    XfccRewriteFailed,
    /// A request header spelled like XFCC with `_` for `-` (`x_forwarded_client_cert`):
    /// Envoy's XFCC handling ignores it, and a CGI-style application server
    /// reads it as the same header (`xfccLookalikes: check`).
    XfccLookalike,
    /// An identity allow-list applies but the peer has no valid SPIFFE URI SAN.
    PeerIdentityMissing,
    /// An identity allow-list applies but the connection is not mutual TLS, so
    /// the peer has no identity at all.
    PlaintextNotAllowed,
    TrustDomainNotAllowed,
    IdentityNotAllowed,
    /// The configuration has port-level entries and the destination port could
    /// not be read or is not one of them: decided by the strictest rules.
    PortUnknown,
}

impl Reason {
    pub fn label(self) -> &'static str {
        match self {
            Reason::Ok => "ok",
            Reason::PlaintextOnStrict => "plaintext_on_strict",
            Reason::XfccOnPlaintext => "xfcc_on_plaintext",
            Reason::XfccSmuggled => "xfcc_smuggled",
            Reason::XfccMismatch => "xfcc_mismatch",
            Reason::XfccMalformed => "xfcc_malformed",
            Reason::XfccCertInvalid => "xfcc_cert_invalid",
            Reason::XfccRewriteFailed => "xfcc_rewrite_failed",
            Reason::XfccLookalike => "xfcc_lookalike",
            Reason::PeerIdentityMissing => "peer_identity_missing",
            Reason::PlaintextNotAllowed => "plaintext_not_allowed",
            Reason::TrustDomainNotAllowed => "trust_domain_not_allowed",
            Reason::IdentityNotAllowed => "identity_not_allowed",
            Reason::PortUnknown => "port_unknown",
        }
    }
}

/// What to do with the `x-forwarded-client-cert` header of an allowed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XfccAction {
    Keep,
    Strip,
    /// Replace the header with this value (only Envoy's own element).
    Replace(String),
}

/// How a forged or smuggled XFCC was handled (label of the forgery counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handling {
    Rejected,
    WouldReject,
    Stripped,
    WouldStrip,
    Ignored,
}

impl Handling {
    pub fn label(self) -> &'static str {
        match self {
            Handling::Rejected => "rejected",
            Handling::WouldReject => "would_reject",
            Handling::Stripped => "stripped",
            Handling::WouldStrip => "would_strip",
            Handling::Ignored => "ignored",
        }
    }
}

/// A forged/smuggled XFCC finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forgery {
    /// One of the `Xfcc*` reasons.
    pub form: Reason,
    pub handling: Handling,
}

impl Forgery {
    /// The `form` label of the forgery counter.
    pub fn form_label(&self) -> &'static str {
        match self.form {
            Reason::XfccOnPlaintext => "plaintext",
            Reason::XfccSmuggled => "smuggled",
            Reason::XfccMismatch => "mismatch",
            Reason::XfccCertInvalid => "cert_invalid",
            Reason::XfccLookalike => "lookalike",
            _ => "malformed",
        }
    }
}

/// The verdict plus the fields to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub port: Option<u32>,
    pub mode: MtlsMode,
    pub security: Security,
    pub outcome: Outcome,
    pub reason: Reason,
    pub xfcc_action: XfccAction,
    pub forgery: Option<Forgery>,
    /// An XFCC lookalike header beside it (`xfccLookalikes: check`), counted
    /// as its own forgery so neither hides the other.
    pub lookalike: Option<Handling>,
    /// The peer's URI SAN as the connection proved it (never taken from XFCC).
    pub peer: Option<String>,
}

impl Decision {
    /// One structured line (logfmt) for the proxy log; `source` is the peer's
    /// address (`source.address`).
    pub fn log_line(&self, source: Option<&str>) -> String {
        let port = self.port.map_or_else(|| "-".to_string(), |p| p.to_string());
        let mut line = format!(
            "peerauth: outcome={} reason={} port={} mode={} security={} peer={:?} source={:?}",
            self.outcome.label(),
            self.reason.label(),
            port,
            self.mode,
            self.security.label(),
            self.peer.as_deref().unwrap_or("-"),
            source.unwrap_or("-"),
        );
        if let Some(f) = &self.forgery {
            line.push_str(&format!(
                " xfcc_form={} xfcc_handling={}",
                f.form_label(),
                f.handling.label()
            ));
        }
        if let Some(h) = self.lookalike {
            line.push_str(&format!(" xfcc_lookalike={}", h.label()));
        }
        line
    }
}

/// Decide for one request (HTTP) or connection (TCP, `facts.xfcc` = `None`).
pub fn decide(config: &Config, facts: &Facts) -> Decision {
    decide_with(config, facts, config.port_rules(facts.destination_port))
}

/// [`decide`] with the port's rules already resolved (the host layer memoises
/// [`Config::port_rules`] per port).
pub fn decide_with(config: &Config, facts: &Facts, rules: PortRules) -> Decision {
    let port = facts.destination_port;
    let mode = rules.mode;
    let enforce = config.action == Action::Enforce;
    let peer_id = match facts.security {
        Security::Mtls => facts
            .peer_uri
            .as_deref()
            .and_then(|u| SpiffeId::parse(u).ok()),
        Security::Plaintext => None,
    };

    let mut violations: Vec<Reason> = Vec::new();
    if facts.security != Security::Mtls && mode == MtlsMode::Strict {
        violations.push(Reason::PlaintextOnStrict);
    }
    if let Some(r) = identity_violation(config, port, rules.known, facts.security, peer_id.as_ref())
    {
        violations.push(r);
    }
    if !rules.known {
        // The port's own rules are unknown: whichever strictest rule failed,
        // the reason says the port was not known.
        violations.fill(Reason::PortUnknown);
    }

    let mut xfcc_action = XfccAction::Keep;
    let mut forgery = None;
    if let Some((form, fix)) = check_xfcc(config, facts, peer_id.as_ref()) {
        let handling = match (config.xfcc, enforce) {
            (XfccPolicy::Ignore, _) => Handling::Ignored,
            (XfccPolicy::Verify, true) => Handling::Rejected,
            (XfccPolicy::Verify, false) => Handling::WouldReject,
            (XfccPolicy::Strip, true) => Handling::Stripped,
            (XfccPolicy::Strip, false) => Handling::WouldStrip,
        };
        match handling {
            Handling::Rejected | Handling::WouldReject => violations.push(form),
            Handling::Stripped => xfcc_action = fix,
            Handling::WouldStrip | Handling::Ignored => {}
        }
        forgery = Some(Forgery { form, handling });
    }

    let (outcome, reason) = match violations.first() {
        None if !rules.known => (Outcome::Allowed, Reason::PortUnknown),
        None => (Outcome::Allowed, Reason::Ok),
        Some(r) if enforce => (Outcome::Rejected, *r),
        Some(r) => (Outcome::WouldReject, *r),
    };
    if let Some(f) = forgery.as_mut() {
        // A forgery that is not the deciding reason rides along with the verdict.
        // (and audit counts what enforce would have done with it).
        if outcome == Outcome::Rejected && f.handling == Handling::Stripped {
            f.handling = Handling::Rejected;
        }
        if outcome == Outcome::WouldReject && f.handling == Handling::WouldStrip {
            f.handling = Handling::WouldReject;
        }
    }
    if outcome == Outcome::Rejected {
        xfcc_action = XfccAction::Keep;
    }
    Decision {
        port,
        mode,
        security: facts.security,
        outcome,
        reason,
        xfcc_action,
        forgery,
        lookalike: None,
        peer: match facts.security {
            Security::Mtls => facts.peer_uri.clone(),
            Security::Plaintext => None,
        },
    }
}

impl Decision {
    /// The request also carried an XFCC lookalike header: nothing Envoy or
    /// this filter wrote, and no element to keep, so it cannot be stripped
    /// into something trustworthy. Rejected (`would_reject` in audit) under
    /// `xfcc: verify` and `strip`, counted only under `ignore`; a request
    /// already rejected keeps its reason.
    pub fn with_lookalike(mut self, config: &Config) -> Decision {
        let enforce = config.action == Action::Enforce;
        let handling = match (config.xfcc, enforce) {
            (XfccPolicy::Ignore, _) => Handling::Ignored,
            (_, true) => Handling::Rejected,
            (_, false) => Handling::WouldReject,
        };
        if handling != Handling::Ignored && self.outcome == Outcome::Allowed {
            self.outcome = if enforce {
                Outcome::Rejected
            } else {
                Outcome::WouldReject
            };
            self.reason = Reason::XfccLookalike;
            self.xfcc_action = XfccAction::Keep;
            // A forgery `strip` would have repaired rides on the rejection.
            if let Some(f) = self.forgery.as_mut() {
                f.handling = match f.handling {
                    Handling::Stripped => Handling::Rejected,
                    Handling::WouldStrip => Handling::WouldReject,
                    other => other,
                };
            }
        }
        self.lookalike = Some(handling);
        self
    }
}

/// Whether a request header's name is XFCC's with `_` in place of some `-`
/// (Envoy hands names over lowercased): CGI-style servers map `-` and `_` to
/// one variable name, so such a header reaches the application as XFCC.
pub fn is_xfcc_lookalike(name: &[u8]) -> bool {
    const XFCC: &[u8] = b"x-forwarded-client-cert";
    name != XFCC
        && name.len() == XFCC.len()
        && name
            .iter()
            .zip(XFCC)
            .all(|(a, b)| a.to_ascii_lowercase() == *b || (*a == b'_' && *b == b'-'))
}

fn matches_any(patterns: &[SpiffePattern], id: &SpiffeId) -> bool {
    patterns.iter().any(|p| p.matches(id))
}

/// An allow-list admits identities, and only mutual TLS proves one: like an
/// Istio AuthorizationPolicy with `principals`, it rejects plaintext whatever the
/// port's mode.
///
/// On a port that is not known (see [`PortRules`]) every list of the
/// configuration applies, since the port may be any of them.
fn identity_violation(
    config: &Config,
    port: Option<u32>,
    known: bool,
    security: Security,
    peer: Option<&SpiffeId>,
) -> Option<Reason> {
    let lists: Vec<&[SpiffePattern]> = if known {
        config.identities_for(port).into_iter().collect()
    } else {
        config
            .allowed_identities
            .iter()
            .map(|(_, v)| v.as_slice())
            .collect()
    };
    if config.allowed_trust_domains.is_empty() && lists.is_empty() {
        return None;
    }
    if security != Security::Mtls {
        return Some(Reason::PlaintextNotAllowed);
    }
    let Some(id) = peer else {
        return Some(Reason::PeerIdentityMissing);
    };
    if !config.allowed_trust_domains.is_empty()
        && !config
            .allowed_trust_domains
            .iter()
            .any(|td| td == id.trust_domain())
    {
        return Some(Reason::TrustDomainNotAllowed);
    }
    if lists.iter().any(|p| !matches_any(p, id)) {
        return Some(Reason::IdentityNotAllowed);
    }
    None
}

/// The XFCC finding, if any, and how `strip` would repair it.
fn check_xfcc(
    config: &Config,
    facts: &Facts,
    peer: Option<&SpiffeId>,
) -> Option<(Reason, XfccAction)> {
    // Present is present: a blank value on a plaintext connection was still
    // forwarded from the client, and on mTLS it is not Envoy's element.
    let header = facts.xfcc.as_deref()?;
    if facts.security != Security::Mtls {
        return Some((Reason::XfccOnPlaintext, XfccAction::Strip));
    }
    let Ok((parsed, own)) = xfcc::parse_nearest(header, &xfcc::Limits::default()) else {
        return Some((Reason::XfccMalformed, XfccAction::Strip));
    };
    let last = parsed.elements.last()?;
    // A quoted `By=` (never compared) could carry `,Hash=…;URI=<another
    // identity>` past this check to an application that splits on `,`.
    if own.quotes_a_bare_key() {
        return Some((Reason::XfccMismatch, XfccAction::Strip));
    }
    if let Some(r) = nearest_element_contradicts(last, facts) {
        return Some((r, XfccAction::Strip));
    }
    if parsed.elements.len() > 1 {
        let trusted = peer.is_some_and(|id| matches_any(&config.trusted_forwarders, id));
        if !trusted {
            // Envoy's own element, byte for byte as Envoy wrote it.
            return Some((
                Reason::XfccSmuggled,
                XfccAction::Replace(own.text.to_string()),
            ));
        }
    }
    None
}

/// Envoy's own element (the last) must describe the certificate of this connection.
///
/// `URI=`: an X.509-SVID has exactly one URI SAN (SPIFFE X509-SVID section 2),
/// and Envoy reports the first (`connection.uri_san_peer_certificate`), so the
/// element may name no URI (no claim, e.g. without `uri: true` in
/// `set_current_client_cert_details`) or exactly that one. A second `URI=`
/// is one the connection cannot vouch for, whichever an application reads,
/// and a `URI=` when the certificate has no URI SAN is made up.
/// `Chain=` must start with the connection's certificate.
fn nearest_element_contradicts(last: &xfcc::Element, facts: &Facts) -> Option<Reason> {
    let digest = facts.peer_sha256.as_deref();
    match (last.hash.as_deref(), digest) {
        (Some(h), Some(d)) if h.eq_ignore_ascii_case(d) => {}
        _ => return Some(Reason::XfccMismatch),
    }
    let uri_ok = match (last.uri.as_slice(), facts.peer_uri.as_deref()) {
        ([], _) => true,
        // Envoy writes an empty `URI=` for a certificate without a URI SAN.
        ([empty], None) if empty.is_empty() => true,
        ([one], Some(uri)) => one == uri,
        _ => false,
    };
    if !uri_ok {
        return Some(Reason::XfccMismatch);
    }
    if let Some(r) = names_contradict(last, facts.peer_names.as_ref()) {
        return Some(r);
    }
    if let Some(pem) = last.chain.as_deref() {
        // Envoy percent-encodes everything but PEM's own characters, so a `,`,
        // `;` or `:` left in the decoded chain was written raw by someone else:
        // inside the quotes it hid `,Hash=…;URI=<another identity>` after the
        // first certificate (only the first is compared) from this check, but
        // not from an application that splits on `,`.
        if !pem.chars().all(is_pem_char) {
            return Some(Reason::XfccMismatch);
        }
        let leaf = cert::chain_leaf_der(pem).map(|der| hex(&Sha256::digest(&der)));
        if leaf.is_none_or(|h| digest.is_none_or(|d| !d.eq_ignore_ascii_case(&h))) {
            return Some(Reason::XfccMismatch);
        }
    }
    if let Some(pem) = last.cert.as_deref() {
        return check_cert(pem, digest, facts.now_unix);
    }
    None
}

/// The characters of PEM text: the base64 alphabet, the `-----BEGIN …-----`
/// lines' letters, dashes and spaces, and line ends.
fn is_pem_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=' | '-' | ' ' | '\n' | '\r')
}

/// A non-empty `Subject=` must be the certificate's subject, and `DNS=` its DNS
/// SAN. Envoy reports only the first DNS SAN, so an element naming several
/// cannot be vouched for and is refused; one that names nothing claims nothing.
/// Unread names (`None`) match no claim: the engine reads them whenever the
/// header may make one.
fn names_contradict(last: &xfcc::Element, names: Option<&PeerNames>) -> Option<Reason> {
    let subject = last.subject.as_deref().filter(|s| !s.is_empty());
    if subject.is_none() && last.dns.is_empty() {
        return None;
    }
    let Some(names) = names else {
        return Some(Reason::XfccMismatch);
    };
    if subject.is_some_and(|s| names.subject.as_deref() != Some(s)) {
        return Some(Reason::XfccMismatch);
    }
    match last.dns.as_slice() {
        [] => None,
        [one] if names.dns.as_deref() == Some(one.as_str()) => None,
        _ => Some(Reason::XfccMismatch),
    }
}

/// `Cert=` must parse, be inside its validity dates and hash to the connection's digest.
fn check_cert(pem: &str, digest: Option<&str>, now_unix: Option<i64>) -> Option<Reason> {
    let Some(der) = cert::pem_to_der(pem) else {
        return Some(Reason::XfccCertInvalid);
    };
    let hash = hex(&Sha256::digest(&der));
    if digest.is_none_or(|d| !d.eq_ignore_ascii_case(&hash)) {
        return Some(Reason::XfccMismatch);
    }
    let Some(validity) = cert::validity(&der) else {
        return Some(Reason::XfccCertInvalid);
    };
    // Without a clock the dates cannot be checked, and an unchecked `Cert=` is
    // not a valid one.
    match now_unix {
        Some(now) if validity.is_valid_at(now) => None,
        _ => Some(Reason::XfccCertInvalid),
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    // A nibble is below 16, so `get` always finds its digit.
    let digit = |n: u8| char::from(DIGITS.get(usize::from(n)).copied().unwrap_or(b'0'));
    for b in bytes {
        s.push(digit(b >> 4));
        s.push(digit(b & 0x0f));
    }
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::facts::ConnectionFacts;
    use std::borrow::Cow;

    const FOO: &str = "spiffe://cluster.local/ns/foo/sa/sleep";
    const GW: &str =
        "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account";
    const HASH: &str = "434b0000000000000000000000000000000000000000000000000000000000ff";

    fn cfg(json: &str) -> Config {
        Config::parse(json.as_bytes()).unwrap()
    }

    fn plaintext_conn(port: u32) -> ConnectionFacts {
        ConnectionFacts {
            security: Security::Plaintext,
            peer_uri: None,
            peer_sha256: None,
            destination_port: Some(port),
        }
    }

    fn plaintext(port: u32) -> Facts<'static> {
        Facts {
            conn: Cow::Owned(plaintext_conn(port)),
            xfcc: None,
            now_unix: Some(1_800_000_000),
            peer_names: None,
        }
    }

    fn mtls(port: u32, peer: &str) -> Facts<'static> {
        Facts {
            conn: Cow::Owned(ConnectionFacts {
                security: Security::Mtls,
                peer_uri: Some(peer.into()),
                peer_sha256: Some(HASH.into()),
                ..plaintext_conn(port)
            }),
            ..plaintext(port)
        }
    }

    fn envoy_element(peer: &str) -> String {
        format!("By=spiffe://cluster.local/ns/foo/sa/httpbin;Hash={HASH};Subject=\"\";URI={peer}")
    }

    #[test]
    fn plaintext_on_a_strict_port_is_rejected_and_only_recorded_in_audit() {
        let d = decide(&cfg(r#"{"mtls":{"mode":"STRICT"}}"#), &plaintext(80));
        assert_eq!(
            (d.outcome, d.reason),
            (Outcome::Rejected, Reason::PlaintextOnStrict)
        );
        let d = decide(
            &cfg(r#"{"mtls":{"mode":"STRICT"},"action":"audit"}"#),
            &plaintext(80),
        );
        assert_eq!(
            (d.outcome, d.reason),
            (Outcome::WouldReject, Reason::PlaintextOnStrict)
        );
    }

    #[test]
    fn permissive_and_disable_ports_pass_plaintext_and_mtls() {
        let c =
            cfg(r#"{"mtls":{"mode":"PERMISSIVE"},"portLevelMtls":{"9090":{"mode":"DISABLE"}}}"#);
        for facts in [
            plaintext(80),
            plaintext(9090),
            mtls(80, FOO),
            mtls(9090, FOO),
        ] {
            let d = decide(&c, &facts);
            assert_eq!(d.outcome, Outcome::Allowed, "{facts:?}");
        }
        assert_eq!(decide(&c, &plaintext(9090)).mode, MtlsMode::Disable);
    }

    #[test]
    fn xfcc_on_plaintext_is_rejected_stripped_or_ignored_by_configuration() {
        let mut f = plaintext(80);
        f.xfcc = Some(format!("URI={GW}"));
        let d = decide(&cfg("{}"), &f);
        assert_eq!(
            (d.outcome, d.reason),
            (Outcome::Rejected, Reason::XfccOnPlaintext)
        );
        let d = decide(&cfg(r#"{"xfcc":"strip"}"#), &f);
        assert_eq!(
            (d.outcome, &d.xfcc_action),
            (Outcome::Allowed, &XfccAction::Strip)
        );
        assert_eq!(d.forgery.unwrap().handling, Handling::Stripped);
        let d = decide(&cfg(r#"{"xfcc":"ignore"}"#), &f);
        assert_eq!(
            (d.outcome, &d.xfcc_action),
            (Outcome::Allowed, &XfccAction::Keep)
        );
        assert_eq!(d.forgery.unwrap().form_label(), "plaintext");
    }

    #[test]
    fn a_genuine_envoy_element_passes() {
        let mut f = mtls(80, FOO);
        f.xfcc = Some(envoy_element(FOO));
        let d = decide(&cfg(r#"{"mtls":{"mode":"STRICT"}}"#), &f);
        assert_eq!(d.outcome, Outcome::Allowed);
        assert_eq!(d.forgery, None);
    }

    #[test]
    fn an_element_smuggled_before_envoys_own_is_caught_unless_the_peer_is_a_trusted_forwarder() {
        let mut f = mtls(80, FOO);
        f.xfcc = Some(format!("Hash={HASH};URI={GW},{}", envoy_element(FOO)));
        let d = decide(&cfg("{}"), &f);
        assert_eq!(
            (d.outcome, d.reason),
            (Outcome::Rejected, Reason::XfccSmuggled)
        );
        let d = decide(&cfg(r#"{"xfcc":"strip"}"#), &f);
        assert_eq!(d.outcome, Outcome::Allowed);
        let XfccAction::Replace(v) = d.xfcc_action else {
            panic!("{d:?}")
        };
        assert!(!v.contains(GW) && v.contains(FOO), "{v}");

        let mut g = mtls(80, GW);
        g.xfcc = Some(format!("Hash={HASH};URI={FOO},{}", envoy_element(GW)));
        let d = decide(
            &cfg(r#"{"trustedForwarders":["spiffe://cluster.local/ns/istio-system/sa/*"]}"#),
            &g,
        );
        assert_eq!((d.outcome, d.forgery), (Outcome::Allowed, None));
    }

    #[test]
    fn an_element_whose_hash_or_uri_contradicts_the_certificate_is_a_mismatch() {
        let mut f = mtls(80, FOO);
        f.xfcc = Some(envoy_element(FOO).replace(HASH, &"0".repeat(64)));
        assert_eq!(decide(&cfg("{}"), &f).reason, Reason::XfccMismatch);
        f.xfcc = Some(envoy_element(GW));
        assert_eq!(decide(&cfg("{}"), &f).reason, Reason::XfccMismatch);
        f.xfcc = Some(format!("URI={FOO}"));
        assert_eq!(decide(&cfg("{}"), &f).reason, Reason::XfccMismatch);
    }

    /// An X.509-SVID has exactly one URI SAN (SPIFFE X509-SVID section 2): a
    /// second `URI=` in the element, before or after the connection's, or any
    /// `URI=` when the certificate has none, is a claim the connection does not
    /// back (the audit's `FORWARD_ONLY` forms, each once `allowed`).
    #[test]
    fn an_element_naming_a_uri_the_certificate_does_not_carry_is_a_mismatch_wherever_it_sits() {
        const ADMIN: &str = "spiffe://cluster.local/ns/admin/sa/admin";
        let mut f = mtls(80, FOO);
        for header in [
            format!("Hash={HASH};URI={FOO};URI={ADMIN}"),
            format!("Hash={HASH};URI={ADMIN};URI={FOO}"),
            format!("Hash={HASH};uri={FOO};uri={ADMIN}"),
        ] {
            f.xfcc = Some(header.clone());
            let d = decide(&cfg("{}"), &f);
            assert_eq!(
                (d.outcome, d.reason),
                (Outcome::Rejected, Reason::XfccMismatch),
                "{header}"
            );
        }
        f.xfcc = Some(format!("Hash={HASH};URI={FOO}"));
        assert_eq!(decide(&cfg("{}"), &f).reason, Reason::Ok);
        f.xfcc = Some(format!("Hash={HASH};Subject=\"\""));
        assert_eq!(decide(&cfg("{}"), &f).reason, Reason::Ok, "no URI claimed");

        f.conn.to_mut().peer_uri = None;
        f.xfcc = Some(format!("Hash={HASH};URI={ADMIN}"));
        assert_eq!(decide(&cfg("{}"), &f).reason, Reason::XfccMismatch);
        // What Envoy writes for a certificate without a URI SAN: an empty `URI=`.
        f.xfcc = Some(format!("Hash={HASH};Subject=\"CN=x\";URI="));
        f.peer_names = Some(PeerNames {
            subject: Some("CN=x".into()),
            dns: None,
        });
        assert_eq!(decide(&cfg("{}"), &f).reason, Reason::Ok);
        f.peer_names = None;
        f.xfcc = Some(format!("Hash={HASH}"));
        assert_eq!(decide(&cfg("{}"), &f).reason, Reason::Ok);
    }

    /// Envoy writes `By`, `Hash`, `URI` and `DNS` bare. A quoted `By=` (which
    /// is not compared) could carry `,Hash=…;URI=<admin>` that an application
    /// splitting on `,` reads as the nearest element; before, the element
    /// passed because its own `Hash` and `URI` are the connection's.
    #[test]
    fn a_quoted_value_for_a_key_envoy_writes_bare_is_a_mismatch() {
        const ADMIN: &str = "spiffe://cluster.local/ns/admin/sa/admin";
        let zeros = "0".repeat(64);
        let mut f = mtls(80, FOO);
        for header in [
            format!("Hash={HASH};URI={FOO};By=\"x,Hash={zeros};URI={ADMIN}\""),
            format!("By=\"x,Hash={zeros};URI={ADMIN};By=\";Hash={HASH};URI={FOO}"),
            format!("Hash=\"{HASH}\";URI={FOO}"),
            format!("Hash={HASH};URI=\"{FOO}\""),
        ] {
            f.xfcc = Some(header.clone());
            let d = decide(&cfg("{}"), &f);
            assert_eq!(
                (d.outcome, d.reason),
                (Outcome::Rejected, Reason::XfccMismatch),
                "{header}"
            );
        }
        // Quoted where Envoy quotes (`Subject`), and a quoted `By` in an
        // earlier element a trusted forwarder vouches for, still pass.
        f.xfcc = Some(envoy_element(FOO));
        assert!(f.xfcc.as_deref().is_some_and(|h| h.contains("Subject=\"")));
        assert_eq!(decide(&cfg("{}"), &f).reason, Reason::Ok);
        let mut g = mtls(80, GW);
        g.xfcc = Some(format!(
            "By=\"q,r\";Hash={HASH};URI={FOO},{}",
            envoy_element(GW)
        ));
        let d = decide(
            &cfg(r#"{"trustedForwarders":["spiffe://cluster.local/ns/istio-system/sa/*"]}"#),
            &g,
        );
        assert_eq!((d.outcome, d.forgery), (Outcome::Allowed, None));
    }

    /// A request rejected for another reason takes its strippable forgery
    /// with it: enforce counts the forgery `rejected`, so audit must count it
    /// `would_reject` (it counted `would_strip`).
    #[test]
    fn audit_counts_a_forgery_riding_on_a_rejection_as_enforce_does() {
        let mut f = plaintext(80);
        f.xfcc = Some(format!("URI={FOO}"));
        for (action, outcome, handling) in [
            ("enforce", Outcome::Rejected, Handling::Rejected),
            ("audit", Outcome::WouldReject, Handling::WouldReject),
        ] {
            let c = cfg(&format!(
                r#"{{"mtls":{{"mode":"STRICT"}},"xfcc":"strip","action":"{action}"}}"#
            ));
            let d = decide(&c, &f);
            assert_eq!(
                (d.outcome, d.reason),
                (outcome, Reason::PlaintextOnStrict),
                "{action}"
            );
            assert_eq!(d.forgery.map(|f| f.handling), Some(handling), "{action}");
        }
    }

    /// A blank header was still sent by someone: on plaintext by the client,
    /// and on mTLS it is not the element Envoy writes. Before, it was "absent".
    #[test]
    fn a_blank_xfcc_header_is_present_not_absent() {
        let mut f = plaintext(80);
        f.xfcc = Some(String::new());
        let d = decide(&cfg("{}"), &f);
        assert_eq!(
            (d.outcome, d.reason),
            (Outcome::Rejected, Reason::XfccOnPlaintext)
        );
        let mut f = mtls(80, FOO);
        f.xfcc = Some("  ".into());
        let d = decide(&cfg("{}"), &f);
        assert_eq!(
            (d.outcome, d.reason),
            (Outcome::Rejected, Reason::XfccMalformed)
        );
    }

    /// `Subject=` and `DNS=` in the last element are claims about the
    /// certificate: checked against its subject and first DNS SAN when either
    /// is claimed (an empty `Subject=""`, which Envoy writes for an SVID, claims
    /// nothing), and refused when they were not read or there are several
    /// `DNS=` (Envoy reports only the first DNS SAN). Before, never compared.
    #[test]
    fn subject_and_dns_claims_must_be_the_certificates() {
        let names = |subject: &str, dns: &str| PeerNames {
            subject: Some(subject.into()).filter(|s: &String| !s.is_empty()),
            dns: Some(dns.into()).filter(|s: &String| !s.is_empty()),
        };
        let mut f = mtls(80, FOO);
        let cases: [(&str, Option<PeerNames>, Reason); 9] = [
            ("Subject=\"\"", None, Reason::Ok),
            (
                "Subject=\"CN=sleep.foo\"",
                Some(names("CN=sleep.foo", "")),
                Reason::Ok,
            ),
            (
                "Subject=\"CN=admin\"",
                Some(names("CN=sleep.foo", "")),
                Reason::XfccMismatch,
            ),
            (
                "Subject=\"CN=admin\"",
                Some(names("", "")),
                Reason::XfccMismatch,
            ),
            ("Subject=\"CN=admin\"", None, Reason::XfccMismatch),
            ("DNS=foo.svc", Some(names("", "foo.svc")), Reason::Ok),
            (
                "DNS=admin.svc",
                Some(names("", "foo.svc")),
                Reason::XfccMismatch,
            ),
            (
                "DNS=foo.svc;DNS=admin.svc",
                Some(names("", "foo.svc")),
                Reason::XfccMismatch,
            ),
            ("DNS=foo.svc", None, Reason::XfccMismatch),
        ];
        for (claim, peer_names, want) in cases {
            f.xfcc = Some(format!("Hash={HASH};{claim};URI={FOO}"));
            f.peer_names = peer_names.clone();
            assert_eq!(
                decide(&cfg("{}"), &f).reason,
                want,
                "{claim} against {peer_names:?}"
            );
        }
    }

    /// Envoy's `Chain=` is the chain the peer presented, leaf first: one that
    /// does not start with the connection's certificate is not Envoy's.
    #[test]
    fn a_chain_that_does_not_start_with_the_connections_certificate_is_a_mismatch() {
        let (der, pem) = crate::cert::testing::generate(1_700_000_000, 1_800_000_000);
        let (_, other) = crate::cert::testing::generate(1_700_000_000, 1_800_000_000);
        let own = hex(&Sha256::digest(&der));
        let mut f = mtls(80, FOO);
        f.conn.to_mut().peer_sha256 = Some(own.clone());
        let with_chain = |chain: &str| {
            format!(
                "Hash={own};Chain=\"{}\";URI={FOO}",
                xfcc::percent_encode(chain)
            )
        };
        f.xfcc = Some(with_chain(&format!("{pem}{other}")));
        assert_eq!(decide(&cfg("{}"), &f).reason, Reason::Ok);
        for chain in [format!("{other}{pem}"), "garbage".to_string()] {
            f.xfcc = Some(with_chain(&chain));
            assert_eq!(decide(&cfg("{}"), &f).reason, Reason::XfccMismatch);
        }
        // After the real first certificate, raw `,Hash=…;URI=<admin>` inside
        // the quotes: percent-decoding passes raw bytes through, and only the
        // first certificate was compared, so this passed while an application
        // splitting on `,` read the admin identity.
        let hidden = format!(
            "Hash={own};URI={FOO};Chain=\"{},Hash={};URI=spiffe://cluster.local/ns/admin/sa/admin;DNS=\"",
            xfcc::percent_encode(&pem),
            "0".repeat(64)
        );
        f.xfcc = Some(hidden);
        assert_eq!(decide(&cfg("{}"), &f).reason, Reason::XfccMismatch);
    }

    /// Only the first block of `Cert=` was hashed: a second certificate after it
    /// rode along unchecked.
    #[test]
    fn a_cert_value_carrying_a_second_certificate_is_refused() {
        let (der, pem) = crate::cert::testing::generate(1_700_000_000, 1_800_000_000);
        let (_, other) = crate::cert::testing::generate(1_700_000_000, 1_800_000_000);
        let own = hex(&Sha256::digest(&der));
        let mut f = mtls(80, FOO);
        f.conn.to_mut().peer_sha256 = Some(own.clone());
        f.now_unix = Some(1_750_000_000);
        let with_cert = |cert: &str| {
            format!(
                "Hash={own};Cert=\"{}\";URI={FOO}",
                xfcc::percent_encode(cert)
            )
        };
        f.xfcc = Some(with_cert(&pem));
        assert_eq!(decide(&cfg("{}"), &f).reason, Reason::Ok);
        f.xfcc = Some(with_cert(&format!("{pem}{other}")));
        assert_eq!(decide(&cfg("{}"), &f).reason, Reason::XfccCertInvalid);
    }

    #[test]
    fn an_unparsable_header_or_cert_is_a_defined_outcome() {
        let mut f = mtls(80, FOO);
        f.xfcc = Some("Hash=\"unterminated".into());
        assert_eq!(decide(&cfg("{}"), &f).reason, Reason::XfccMalformed);
        f.xfcc = Some(format!("{};Cert=\"not%20a%20cert\"", envoy_element(FOO)));
        assert_eq!(decide(&cfg("{}"), &f).reason, Reason::XfccCertInvalid);
    }

    #[test]
    fn foreign_trust_domains_and_unlisted_identities_are_refused() {
        let c = cfg(
            r#"{"allowedTrustDomains":["cluster.local"],"allowedIdentities":{"8080":["spiffe://cluster.local/ns/foo/sa/*"]}}"#,
        );
        let d = decide(&c, &mtls(8080, "spiffe://evil.example/ns/foo/sa/sleep"));
        assert_eq!(
            (d.outcome, d.reason),
            (Outcome::Rejected, Reason::TrustDomainNotAllowed)
        );
        // Port 80 is not named while 8080 is: the strictest rules, counted apart.
        let d = decide(&c, &mtls(80, "spiffe://evil.example/ns/foo/sa/sleep"));
        assert_eq!(
            (d.outcome, d.reason),
            (Outcome::Rejected, Reason::PortUnknown)
        );
        assert_eq!(decide(&c, &mtls(8080, FOO)).outcome, Outcome::Allowed);
        let d = decide(&c, &mtls(8080, "spiffe://cluster.local/ns/bar/sa/sleep"));
        assert_eq!(d.reason, Reason::IdentityNotAllowed);
        let d = decide(&c, &mtls(8080, "not a spiffe id"));
        assert_eq!(d.reason, Reason::PeerIdentityMissing);
        let audit = cfg(r#"{"allowedTrustDomains":["cluster.local"],"action":"audit"}"#);
        let d = decide(&audit, &mtls(80, "spiffe://evil.example/ns/foo/sa/sleep"));
        assert_eq!(d.outcome, Outcome::WouldReject);
    }

    #[test]
    fn an_allow_list_rejects_plaintext_on_every_port_it_applies_to_whatever_the_mode() {
        let c = cfg(
            r#"{"mtls":{"mode":"PERMISSIVE"},"portLevelMtls":{"9090":{"mode":"DISABLE"},"8080":{}},
                "allowedIdentities":{"8080":["spiffe://cluster.local/ns/foo/sa/*"]}}"#,
        );
        let d = decide(&c, &plaintext(8080));
        assert_eq!(
            (d.outcome, d.reason),
            (Outcome::Rejected, Reason::PlaintextNotAllowed)
        );
        assert_eq!(d.reason.label(), "plaintext_not_allowed");
        // No list applies to 9090: plaintext passes there.
        assert_eq!(decide(&c, &plaintext(9090)).outcome, Outcome::Allowed);
        let td = cfg(r#"{"allowedTrustDomains":["cluster.local"],"action":"audit"}"#);
        let d = decide(&td, &plaintext(80));
        assert_eq!(
            (d.outcome, d.reason),
            (Outcome::WouldReject, Reason::PlaintextNotAllowed)
        );
        // On a STRICT port the mode's own reason comes first.
        let strict = cfg(r#"{"mtls":{"mode":"STRICT"},"allowedTrustDomains":["cluster.local"]}"#);
        assert_eq!(
            decide(&strict, &plaintext(80)).reason,
            Reason::PlaintextOnStrict
        );
    }

    #[test]
    fn an_unknown_port_is_decided_by_the_strictest_mode_and_every_identity_list() {
        let c = cfg(
            r#"{"mtls":{"mode":"PERMISSIVE"},"portLevelMtls":{"8080":{"mode":"STRICT"}},
                "allowedIdentities":{"9090":["spiffe://cluster.local/ns/*/sa/sleep"],"8080":["spiffe://cluster.local/ns/foo/sa/*"]}}"#,
        );
        let mut unreadable = plaintext(80);
        unreadable.conn.to_mut().destination_port = None;
        for facts in [plaintext(80), unreadable] {
            let d = decide(&c, &facts);
            assert_eq!(
                (d.outcome, d.reason, d.mode),
                (Outcome::Rejected, Reason::PortUnknown, MtlsMode::Strict),
                "{facts:?}"
            );
        }
        // sleep.foo satisfies both lists; foo's other accounts only 8080's.
        let d = decide(&c, &mtls(80, FOO));
        assert_eq!(
            (d.outcome, d.reason),
            (Outcome::Allowed, Reason::PortUnknown)
        );
        let d = decide(&c, &mtls(80, "spiffe://cluster.local/ns/foo/sa/other"));
        assert_eq!(
            (d.outcome, d.reason),
            (Outcome::Rejected, Reason::PortUnknown)
        );
        // The named port itself keeps its own rules.
        let d = decide(&c, &mtls(9090, "spiffe://cluster.local/ns/bar/sa/sleep"));
        assert_eq!((d.outcome, d.reason), (Outcome::Allowed, Reason::Ok));
        let audit = cfg(r#"{"action":"audit","portLevelMtls":{"8080":{"mode":"STRICT"}}}"#);
        let d = decide(&audit, &plaintext(80));
        assert_eq!(
            (d.outcome, d.reason),
            (Outcome::WouldReject, Reason::PortUnknown)
        );
    }

    #[test]
    fn the_log_line_names_outcome_reason_port_mode_and_peer() {
        let f = mtls(80, "spiffe://evil.example/ns/foo/sa/sleep");
        let d = decide(&cfg(r#"{"allowedTrustDomains":["cluster.local"]}"#), &f);
        let line = d.log_line(Some("127.0.0.1:40000"));
        assert!(line.starts_with("peerauth: outcome=rejected reason=trust_domain_not_allowed port=80 mode=PERMISSIVE security=mutual_tls peer=\"spiffe://evil.example/ns/foo/sa/sleep\""), "{line}");
    }

    /// XFCC with Envoy's element carrying `Cert=` (URL-encoded as Envoy does) for
    /// the certificate `der` / `pem`.
    fn cert_element(peer: &str, der: &[u8], pem: &str) -> String {
        format!(
            "By=spiffe://cluster.local/ns/foo/sa/httpbin;Hash={};Cert=\"{}\";Subject=\"\";URI={peer}",
            hex(&Sha256::digest(der)),
            xfcc::percent_encode(pem)
        )
    }

    #[test]
    fn a_cert_element_must_hash_to_the_connection_digest_and_be_within_its_dates() {
        let (not_before, not_after) = (1_700_000_000, 1_800_000_000);
        let (der, pem) = crate::cert::testing::generate(not_before, not_after);
        let c = cfg("{}");
        let facts_at = |now: i64, digest: String| {
            let mut f = mtls(80, FOO);
            f.conn.to_mut().peer_sha256 = Some(digest);
            f.xfcc = Some(cert_element(FOO, &der, &pem));
            f.now_unix = Some(now);
            f
        };
        let own = hex(&Sha256::digest(&der));
        let d = decide(&c, &facts_at(1_750_000_000, own.clone()));
        assert_eq!((d.outcome, d.reason), (Outcome::Allowed, Reason::Ok));
        for now in [not_before - 1, not_after + 1] {
            let d = decide(&c, &facts_at(now, own.clone()));
            assert_eq!(d.reason, Reason::XfccCertInvalid, "at {now}");
        }
        // No clock: the dates cannot be checked, so the element is not valid.
        let mut unknown_time = facts_at(1_750_000_000, own.clone());
        unknown_time.now_unix = None;
        assert_eq!(decide(&c, &unknown_time).reason, Reason::XfccCertInvalid);
        // A certificate that is not the connection's: its Hash= matches Cert=,
        // but neither matches what Envoy reports for the connection.
        let d = decide(&c, &facts_at(1_750_000_000, HASH.into()));
        assert_eq!(d.reason, Reason::XfccMismatch);
    }

    /// `Hash=` names the connection's certificate, `Cert=` carries another one
    /// (valid, in its dates): only the digest of `Cert=` itself tells them apart.
    #[test]
    fn a_cert_element_with_the_connections_hash_but_another_certificate_is_a_mismatch() {
        let (not_before, not_after) = (1_700_000_000, 1_800_000_000);
        let (der, _) = crate::cert::testing::generate(not_before, not_after);
        let (other_der, other_pem) = crate::cert::testing::generate(not_before, not_after);
        assert_ne!(der, other_der);
        let own = hex(&Sha256::digest(&der));
        let mut f = mtls(80, FOO);
        f.conn.to_mut().peer_sha256 = Some(own.clone());
        f.xfcc = Some(format!(
            "By=spiffe://cluster.local/ns/foo/sa/httpbin;Hash={own};Cert=\"{}\";Subject=\"\";URI={FOO}",
            xfcc::percent_encode(&other_pem)
        ));
        f.now_unix = Some(1_750_000_000);
        let d = decide(&cfg("{}"), &f);
        assert_eq!(
            (d.outcome, d.reason),
            (Outcome::Rejected, Reason::XfccMismatch)
        );
    }

    #[test]
    fn sha256_hex_is_lowercase_and_complete() {
        assert_eq!(
            hex(&Sha256::digest(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
