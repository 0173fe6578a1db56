//! SPIFFE IDs (spiffe/spiffe `standards/SPIFFE-ID.md`) and Istio's
//! `ns/<namespace>/sa/<service-account>` identity form.
//!
//! Rules enforced, each with its own [`SpiffeError`] variant: scheme exactly
//! `spiffe://` (lowercase); no userinfo, port, query or fragment; trust domain
//! non-empty, `[a-z0-9._-]`, at most 255 bytes; path segments `[a-zA-Z0-9._-]`,
//! none empty, `.` or `..`; no trailing `/`; the whole ID at most 2048 bytes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

const SCHEME: &str = "spiffe://";
/// SPIFFE-ID.md §2.1: trust domain names are at most 255 bytes.
pub const MAX_TRUST_DOMAIN_LEN: usize = 255;
/// SPIFFE-ID.md §2.3: a SPIFFE ID is at most 2048 bytes.
pub const MAX_ID_LEN: usize = 2048;

/// A valid SPIFFE ID. On the wire (serde) it is its string form, validated on the
/// way in, so a config or JSON document can never hold an invalid one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SpiffeId {
    trust_domain: String,
    /// Without the leading `/`; empty for a trust-domain ID.
    path: String,
}

/// Istio's identity inside a SPIFFE ID.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IstioIdentity {
    pub namespace: String,
    pub service_account: String,
}

/// The SPIFFE rule an ID (or pattern) breaks. Offsets are byte offsets into the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpiffeError {
    #[error("SPIFFE ID is empty")]
    Empty,
    #[error("SPIFFE ID is {len} bytes; shorten it to at most 2048 bytes")]
    TooLong { len: usize },
    #[error("SPIFFE ID must start with `spiffe://`")]
    MissingScheme,
    #[error("SPIFFE ID scheme must be `spiffe`, not `{scheme}`")]
    WrongScheme { scheme: String },
    #[error("SPIFFE ID scheme must be lowercase: write `spiffe://`")]
    SchemeNotLowercase,
    #[error("SPIFFE ID has no trust domain: write `spiffe://<trust-domain>/...`")]
    EmptyTrustDomain,
    #[error("trust domain is {len} bytes; shorten it to at most 255 bytes")]
    TrustDomainTooLong { len: usize },
    #[error("trust domain must be lowercase: write `{lowercase}`")]
    TrustDomainUppercase { lowercase: String },
    #[error("trust domain has `{ch}` at byte {offset}; use only `a-z`, `0-9`, `.`, `-` and `_`")]
    TrustDomainChar { ch: char, offset: usize },
    #[error("SPIFFE ID must not contain userinfo (`…@`); remove it")]
    Userinfo,
    #[error(
        "SPIFFE ID must not contain a port; remove `:` and what follows from the trust domain"
    )]
    Port,
    #[error("SPIFFE ID must not contain a query; remove `?` and what follows")]
    Query,
    #[error("SPIFFE ID must not contain a fragment; remove `#` and what follows")]
    Fragment,
    #[error("SPIFFE ID path has an empty segment at byte {offset}; remove the extra `/`")]
    EmptySegment { offset: usize },
    #[error("SPIFFE ID path has a `.` or `..` segment at byte {offset}; spell the path out")]
    DotSegment { offset: usize },
    #[error("SPIFFE ID must not end with `/`; remove it")]
    TrailingSlash,
    #[error("SPIFFE ID path has `{ch}` at byte {offset}; use only `a-z`, `A-Z`, `0-9`, `.`, `-` and `_`")]
    PathChar { ch: char, offset: usize },
    #[error("pattern segment at byte {offset} mixes `*` with other characters; a wildcard must be a whole segment (`*` or a final `**`)")]
    PartialWildcard { offset: usize },
    #[error("`**` at byte {offset} is not the last segment; `**` may only end a pattern")]
    DoubleStarNotLast { offset: usize },
}

/// Validates everything but wildcards; `wildcards` lets a pattern through.
fn split(s: &str, wildcards: bool) -> Result<(&str, &str), SpiffeError> {
    if s.is_empty() {
        return Err(SpiffeError::Empty);
    }
    if s.len() > MAX_ID_LEN {
        return Err(SpiffeError::TooLong { len: s.len() });
    }
    let rest = match s.strip_prefix(SCHEME) {
        Some(rest) => rest,
        None => return Err(scheme_error(s)),
    };
    // Query and fragment first: their `?`/`#` would otherwise read as bad characters.
    if s.contains('#') {
        return Err(SpiffeError::Fragment);
    }
    if s.contains('?') {
        return Err(SpiffeError::Query);
    }
    let (td, path) = match rest.split_once('/') {
        Some((td, path)) => (td, Some(path)),
        None => (rest, None),
    };
    check_trust_domain(td, wildcards)?;
    let Some(path) = path else {
        return Ok((td, ""));
    };
    // Offsets reported below are into `s`; the path starts after the `/`.
    let path_start = SCHEME.len() + td.len() + 1;
    if path.is_empty() {
        return Err(SpiffeError::TrailingSlash);
    }
    let mut offset = path_start;
    let mut segments = path.split('/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        check_segment(segment, offset, last, wildcards)?;
        offset += segment.len() + 1;
    }
    Ok((td, path))
}

fn scheme_error(s: &str) -> SpiffeError {
    match s.split_once("://") {
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("spiffe") => {
            SpiffeError::SchemeNotLowercase
        }
        Some((scheme, _)) if !scheme.is_empty() && !scheme.contains('/') => {
            SpiffeError::WrongScheme {
                scheme: scheme.chars().take(32).collect(),
            }
        }
        _ => SpiffeError::MissingScheme,
    }
}

/// A trust domain as a SPIFFE ID would carry it (lowercase letters, digits,
/// `.`, `-`, `_`; no port or userinfo; at most 255 bytes), with the reason when
/// it is not one.
pub fn validate_trust_domain(td: &str) -> Result<(), SpiffeError> {
    check_trust_domain(td, false)
}

fn check_trust_domain(td: &str, wildcards: bool) -> Result<(), SpiffeError> {
    if td.is_empty() {
        return Err(SpiffeError::EmptyTrustDomain);
    }
    if wildcards && td == "*" {
        return Ok(());
    }
    if td.contains('@') {
        return Err(SpiffeError::Userinfo);
    }
    if td.contains(':') {
        return Err(SpiffeError::Port);
    }
    if td.len() > MAX_TRUST_DOMAIN_LEN {
        return Err(SpiffeError::TrustDomainTooLong { len: td.len() });
    }
    for (i, ch) in td.char_indices() {
        if ch.is_ascii_lowercase() || ch.is_ascii_digit() || matches!(ch, '.' | '-' | '_') {
            continue;
        }
        if ch.is_ascii_uppercase() {
            let lowercase = td.to_ascii_lowercase();
            if lowercase
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b".-_".contains(&b))
            {
                return Err(SpiffeError::TrustDomainUppercase { lowercase });
            }
        }
        return Err(SpiffeError::TrustDomainChar {
            ch,
            offset: SCHEME.len() + i,
        });
    }
    Ok(())
}

fn check_segment(
    segment: &str,
    offset: usize,
    last: bool,
    wildcards: bool,
) -> Result<(), SpiffeError> {
    if segment.is_empty() {
        return Err(if last {
            SpiffeError::TrailingSlash
        } else {
            SpiffeError::EmptySegment { offset }
        });
    }
    if segment == "." || segment == ".." {
        return Err(SpiffeError::DotSegment { offset });
    }
    if wildcards && segment.contains('*') {
        return match segment {
            "*" => Ok(()),
            "**" if last => Ok(()),
            "**" => Err(SpiffeError::DoubleStarNotLast { offset }),
            _ => Err(SpiffeError::PartialWildcard { offset }),
        };
    }
    match segment.char_indices().find(|&(_, ch)| !is_path_char(ch)) {
        Some((i, ch)) => Err(SpiffeError::PathChar {
            ch,
            offset: offset + i,
        }),
        None => Ok(()),
    }
}

fn is_path_char(ch: char) -> bool {
    ch.is_ascii_alphanumeric() || matches!(ch, '.' | '-' | '_')
}

impl SpiffeId {
    /// Parse and validate. `Err` names the broken rule.
    pub fn parse(s: &str) -> Result<Self, SpiffeError> {
        let (td, path) = split(s, false)?;
        Ok(Self {
            trust_domain: td.to_owned(),
            path: path.to_owned(),
        })
    }
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }
    pub fn path(&self) -> &str {
        &self.path
    }
    /// The path's segments; none for a trust-domain ID.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.path.split('/').filter(|s| !s.is_empty())
    }
    /// `Some` when the path is exactly `ns/<ns>/sa/<sa>`.
    pub fn istio_identity(&self) -> Option<IstioIdentity> {
        let mut it = self.path.split('/');
        match (it.next(), it.next(), it.next(), it.next(), it.next()) {
            (Some("ns"), Some(ns), Some("sa"), Some(sa), None) => Some(IstioIdentity {
                namespace: ns.to_owned(),
                service_account: sa.to_owned(),
            }),
            _ => None,
        }
    }
    /// Istio's identity for `trust_domain`, namespace and service account.
    /// `Err` when any part breaks a SPIFFE rule (e.g. an uppercase trust domain).
    pub fn istio(
        trust_domain: &str,
        namespace: &str,
        service_account: &str,
    ) -> Result<Self, SpiffeError> {
        Self::parse(&format!(
            "{SCHEME}{trust_domain}/ns/{namespace}/sa/{service_account}"
        ))
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}", self.trust_domain)?;
        if !self.path.is_empty() {
            write!(f, "/{}", self.path)?;
        }
        Ok(())
    }
}

impl FromStr for SpiffeId {
    type Err = SpiffeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for IstioIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ns/{}/sa/{}", self.namespace, self.service_account)
    }
}

/// An allow-list pattern such as `spiffe://cluster.local/ns/foo/sa/*` or
/// `spiffe://cluster.local/ns/*/sa/istio-ingressgateway-service-account`:
/// `*` matches exactly one path segment, a final `**` matches any rest.
///
/// A final `**` needs at least one segment to match (`…/ns/foo/**` does not match
/// a bare `…/ns/foo`). The trust domain is literal, or exactly `*` to accept any
/// trust domain (e.g. `spiffe://*/ns/istio-system/sa/*` across a multi-cluster
/// mesh). Literal parts follow the SPIFFE ID rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SpiffePattern {
    raw: String,
}

impl SpiffePattern {
    /// `Err` if the pattern is not a SPIFFE ID with `*`/`**` segments: the same
    /// errors as [`SpiffeId::parse`], plus [`SpiffeError::PartialWildcard`] and
    /// [`SpiffeError::DoubleStarNotLast`].
    pub fn parse(s: &str) -> Result<Self, SpiffeError> {
        split(s, true)?;
        Ok(Self { raw: s.to_owned() })
    }

    /// `true` when `id` matches: same trust domain (or a `*` trust domain), and
    /// every pattern segment matches its ID segment (`*` any one, a final `**`
    /// one or more).
    pub fn matches(&self, id: &SpiffeId) -> bool {
        let Some(rest) = self.raw.strip_prefix(SCHEME) else {
            return false;
        };
        let (td, path) = rest.split_once('/').unwrap_or((rest, ""));
        if td != "*" && td != id.trust_domain {
            return false;
        }
        let mut want = path.split('/').filter(|s| !s.is_empty());
        let mut have = id.segments();
        loop {
            match (want.next(), have.next()) {
                (None, None) => return true,
                (Some("**"), Some(_)) => return true,
                (Some("*"), Some(_)) => {}
                (Some(w), Some(h)) if w == h => {}
                _ => return false,
            }
        }
    }

    /// Whether the pattern can match an identity of the shape Istio issues,
    /// `spiffe://<trust domain>/ns/<namespace>/sa/<service account>` (Istio's
    /// security concepts, "Istio identity"): `false` flags a pattern that
    /// admits no Istio workload at all, such as `spiffe://cluster.local/ns/*`.
    pub fn can_match_istio_identity(&self) -> bool {
        let Some(rest) = self.raw.strip_prefix(SCHEME) else {
            return false;
        };
        let (td, path) = rest.split_once('/').unwrap_or((rest, ""));
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        // The pattern's own literals where the shape has a free segment, so a
        // pattern naming a namespace or account is probed with them.
        let free = |i: usize, fallback: &'static str| match segments.get(i) {
            Some(s) if *s != "*" && *s != "**" => *s,
            _ => fallback,
        };
        let td = if td == "*" { "cluster.local" } else { td };
        SpiffeId::istio(td, free(1, "x"), free(3, "y")).is_ok_and(|id| self.matches(&id))
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }
}

impl fmt::Display for SpiffePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl FromStr for SpiffePattern {
    type Err = SpiffeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for SpiffeId {
    type Error = SpiffeError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<SpiffeId> for String {
    fn from(id: SpiffeId) -> String {
        id.to_string()
    }
}

impl TryFrom<String> for SpiffePattern {
    type Error = SpiffeError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<SpiffePattern> for String {
    fn from(p: SpiffePattern) -> String {
        p.to_string()
    }
}
