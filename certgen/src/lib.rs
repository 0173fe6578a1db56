//! certgen: certificates for a service mesh, without openssl recipes.
//!
//! The library makes and checks what an Istio mesh needs:
//! - [`Ca`]: a self-signed root and per-cluster intermediates in Istio's
//!   plug-in CA folder layout (`ca-cert.pem`, `ca-key.pem`, `cert-chain.pem`,
//!   `root-cert.pem`), loaded back with the checks istiod makes at start-up;
//! - SPIFFE X.509-SVID workload certificates and ingress server certificates ([`Leaf`]);
//! - [`inspect`] and [`verify`]: a summary of any certificate, and path
//!   validation plus a SPIFFE X.509-SVID lint;
//! - [`proxy`]: certificates as running proxies report them (Envoy's
//!   `/config_dump`, `istioctl proxy-config secret`, ztunnel's certificates);
//! - [`acm`]: a local store that mimics AWS Certificate Manager private
//!   certificates, for labs without an AWS account;
//! - [`secret`]: the Kubernetes Secrets (`cacerts`, `kubernetes.io/tls`) as YAML;
//! - [`chain`]: which certificates travel together (a TLS Secret's `tls.crt`,
//!   the chain and root a verification reads from files or a CA folder);
//! - [`files`]: the careful writer the binary uses (0600 keys, no silent
//!   overwrite, nothing half-written).
//!
//! Nothing here prints or exits; the `certgen` binary does that at its edge.
//!
//! # Example
//!
//! ```
//! use certgen::{inspect, verify, Ca, KeyAlgorithm};
//! use std::time::Duration;
//!
//! // A root, one cluster's intermediate, and a workload SVID under it.
//! let root = Ca::new_root("Istio", "Root CA", KeyAlgorithm::EcdsaP256, 3650, None)?;
//! let cluster = root.intermediate("cluster1", KeyAlgorithm::EcdsaP256, 365)?;
//! let id = "spiffe://cluster.local/ns/foo/sa/sleep";
//! let leaf = cluster.issue_workload(id, KeyAlgorithm::EcdsaP256, Duration::from_secs(3600))?;
//!
//! let cert = inspect::certs_der(leaf.cert_pem.as_bytes(), "cert.pem")?;
//! let chain = inspect::certs_der(leaf.chain_pem.as_bytes(), "chain.pem")?;
//! let roots = [root.cert_der().to_vec()];
//! let report = verify::verify(&cert[0], &chain, &roots, verify::Options::default());
//! assert!(report.ok, "{}", verify::render(&report));
//! # Ok::<(), certgen::Error>(())
//! ```
#![forbid(unsafe_code)]

pub mod acm;
pub mod chain;
pub mod files;
pub mod inspect;
mod pem;
pub mod pki;
pub mod proxy;
pub mod secret;
pub mod verify;

pub use pki::{Ca, KeyAlgorithm, Leaf};

use std::path::PathBuf;

/// Everything that can go wrong in certgen. Each message says what to fix.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A key algorithm name that certgen does not know.
    #[error("unknown key algorithm `{0}`: use one of ec-p256, ec-p384, ed25519, rsa-2048, rsa-3072, rsa-4096")]
    UnknownAlgorithm(String),
    /// A SPIFFE ID that breaks the SPIFFE-ID standard.
    #[error("invalid SPIFFE ID `{id}`: {reason}")]
    InvalidSpiffeId { id: String, reason: String },
    /// Any other argument that cannot be used as given.
    #[error("{0}")]
    InvalidInput(String),
    /// A CA folder that does not exist.
    #[error(
        "CA folder {0} does not exist: create it with `certgen root` or `certgen intermediate`"
    )]
    CaDirMissing(PathBuf),
    /// A CA folder without one of the files it needs.
    #[error("CA folder {dir} has no {file}: an Istio plug-in CA folder needs ca-cert.pem, ca-key.pem, cert-chain.pem and root-cert.pem (a root folder: root-cert.pem and root-key.pem)")]
    CaFileMissing { dir: PathBuf, file: &'static str },
    /// A file that holds no certificate that can be parsed.
    #[error("{what}: not a PEM or DER X.509 certificate ({reason}): pass a certificate file")]
    BadCertificate { what: String, reason: String },
    /// A proxy dump (Envoy config_dump, istioctl or ztunnel JSON) that cannot be read.
    #[error("{what}: {reason}")]
    BadProxyDump { what: String, reason: String },
    /// A private key that cannot be parsed.
    #[error("{what}: not a usable private key ({reason}): pass an unencrypted PKCS#8, SEC1 or PKCS#1 PEM key")]
    BadKey { what: String, reason: String },
    /// A private key that belongs to another certificate.
    #[error("{key} does not match the public key of {cert}: put the key that was generated with this certificate next to it")]
    KeyMismatch { key: String, cert: String },
    /// A certificate used as an issuer that is not a CA.
    #[error("{0} is not a CA certificate (basicConstraints CA:true and keyUsage keyCertSign are required): use a CA certificate, not a leaf")]
    NotCa(String),
    /// An issuer whose validity has ended, or not yet begun.
    #[error(
        "issuer {subject} is not valid now (valid {not_before} to {not_after}): renew the CA first"
    )]
    IssuerNotValid {
        subject: String,
        not_before: String,
        not_after: String,
    },
    /// An issuer whose path length constraint forbids another CA under it.
    #[error("issuer {subject} has pathlen:{path_len} and cannot sign another CA: sign the intermediate with the root, or make the root with a larger --path-len")]
    PathLenViolation { subject: String, path_len: u8 },
    /// A CA folder whose `cert-chain.pem` does not lead from `ca-cert.pem` to `root-cert.pem`.
    #[error("{0}")]
    BadChain(String),
    /// A file that exists and would be overwritten.
    #[error("{0} already exists: pass --force to overwrite it")]
    FileExists(PathBuf),
    /// A file that could not be read or written.
    #[error("{path}: {reason}")]
    Io { path: PathBuf, reason: String },
    /// The ACM-style store has no certificate with that ARN.
    #[error("no certificate {0} in the store: run `certgen acm list` to see the ARNs")]
    AcmNotFound(String),
    /// The cryptographic backend refused to make a key or certificate.
    #[error("certificate generation failed: {0}")]
    Generate(String),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, e: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            reason: e.to_string(),
        }
    }
}

impl From<rcgen::Error> for Error {
    fn from(e: rcgen::Error) -> Self {
        Error::Generate(e.to_string())
    }
}
