//! Envoy's `x-forwarded-client-cert` header: parse and serialize, typed, bounded,
//! never panicking (Envoy `conn_manager_utility.cc`; docs `http_conn_man/headers`).

use serde::{Deserialize, Serialize};

/// Work bounds for parsing an untrusted header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_len: usize,
    pub max_elements: usize,
    pub max_pairs_per_element: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_len: 64 * 1024, max_elements: 16, max_pairs_per_element: 64 }
    }
}

/// One proxy's element, in Envoy's key order.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Element {
    pub by: Vec<String>,
    /// Lowercase hex SHA-256 of the peer certificate (DER).
    pub hash: Option<String>,
    /// URL-decoded PEM of the peer certificate.
    pub cert: Option<String>,
    /// URL-decoded PEM chain.
    pub chain: Option<String>,
    pub subject: Option<String>,
    pub uri: Vec<String>,
    pub dns: Vec<String>,
}

/// A whole header: elements in order (the last one was appended by the nearest proxy).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Xfcc {
    pub elements: Vec<Element>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum XfccError {
    // Variants per failure (too long, too many elements, unterminated quote,
    // missing `=`, unknown key, bad percent-encoding, …), with byte offsets.
    #[error("x-forwarded-client-cert header is empty")]
    Empty,
}

/// Parse with default limits.
pub fn parse(header: &str) -> Result<Xfcc, XfccError> {
    parse_with(header, &Limits::default())
}

/// Parse with explicit limits.
pub fn parse_with(header: &str, limits: &Limits) -> Result<Xfcc, XfccError> {
    let _ = (header, limits);
    todo!("policy implementation")
}

impl Xfcc {
    /// Serialize as Envoy writes it (`,` between elements, `;` between pairs,
    /// Subject/Cert/Chain quoted, Cert/Chain URL-encoded).
    pub fn to_header(&self) -> String {
        todo!("policy implementation")
    }
}
