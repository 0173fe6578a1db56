//! Chain assembly: which certificates travel together. A server's `tls.crt`
//! (the leaf and its intermediates, not the root), and the intermediates and
//! trust anchors a verification reads from files or from a plug-in CA folder.

use std::path::{Path, PathBuf};

use crate::inspect::{cert_pem, certs_der};
use crate::proxy::Input;
use crate::verify::{self, ExpectedIdentity, Options, ProxyReport, Report, RootOverride};
use crate::{Error, Leaf};

/// `tls.crt` of a Kubernetes TLS Secret for `leaf`: the leaf, then its
/// intermediates nearest first, without the root (clients hold that one).
///
/// `Err(BadCertificate)` when the leaf's chain does not parse.
pub fn tls_crt(leaf: &Leaf) -> Result<String, Error> {
    let chain = certs_der(leaf.chain_pem.as_bytes(), "chain")?;
    let mut out = leaf.cert_pem.clone();
    for der in chain.iter().take(chain.len().saturating_sub(1)) {
        out.push_str(&cert_pem(der));
    }
    Ok(out)
}

/// Where a verification takes more intermediates and its trust anchors from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainFiles {
    /// Intermediates besides those the leaf file or dump carries
    /// (`cert-chain.pem` of a CA folder), if any.
    pub chain: Option<PathBuf>,
    /// Trust anchors (`root-cert.pem`). For a proxy dump, `None` keeps the
    /// dump's own; a certificate file always needs one.
    pub root: Option<PathBuf>,
}

impl ChainFiles {
    /// From an Istio plug-in CA folder: `root-cert.pem`, and `cert-chain.pem`
    /// when the folder has one (a root folder does not).
    ///
    /// `Err(CaDirMissing)` when the folder does not exist, `Err(CaFileMissing)`
    /// when it has no `root-cert.pem`.
    pub fn from_ca_dir(dir: &Path) -> Result<Self, Error> {
        if !dir.is_dir() {
            return Err(Error::CaDirMissing(dir.to_path_buf()));
        }
        let root = dir.join("root-cert.pem");
        if !root.is_file() {
            return Err(Error::CaFileMissing {
                dir: dir.to_path_buf(),
                file: "root-cert.pem",
            });
        }
        let chain = dir.join("cert-chain.pem");
        Ok(Self {
            chain: chain.is_file().then_some(chain),
            root: Some(root),
        })
    }
}

/// Every certificate in the file at `path`.
///
/// `Err(Io | BadCertificate)` when it cannot be read or holds none.
pub fn read_certs(path: &Path) -> Result<Vec<Vec<u8>>, Error> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    certs_der(&bytes, &path.display().to_string())
}

/// [`verify::verify_proxy`] of a dump named `what`, with the intermediates and
/// the trust anchors (replacing the dump's) of `files`.
pub fn verify_proxy_with(
    input: &Input,
    what: &str,
    files: &ChainFiles,
    expect: Option<&ExpectedIdentity>,
    opts: Options,
) -> Result<ProxyReport, Error> {
    let roots = match &files.root {
        Some(r) => Some(RootOverride {
            certs: read_certs(r)?,
            from: format!("--root {}", r.display()),
        }),
        None => None,
    };
    let extra = match &files.chain {
        Some(c) => read_certs(c)?,
        None => Vec::new(),
    };
    verify::verify_proxy(input, what, roots.as_ref(), &extra, expect, opts)
}

/// [`verify::verify_files`] of the certificate file `leaf` through `chain` to
/// `root`, plus the `expect-identity` check when `expect` is given.
pub fn verify_leaf_file(
    leaf: &Path,
    chain: Option<&Path>,
    root: &Path,
    expect: Option<&ExpectedIdentity>,
    opts: Options,
) -> Result<Report, Error> {
    let mut report = verify::verify_files(leaf, chain, root, opts)?;
    if let Some(e) = expect {
        if let Some(first) = read_certs(leaf)?.first() {
            report.check_identity(first, e);
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::{Ca, KeyAlgorithm};

    #[test]
    fn tls_crt_is_the_leaf_and_its_intermediate_without_the_root() {
        let root = Ca::new_root("o", "root", KeyAlgorithm::EcdsaP256, 30, None).unwrap();
        let mid = root
            .intermediate("c1", KeyAlgorithm::EcdsaP256, 10)
            .unwrap();
        let leaf = mid
            .issue_server(&["a.example".into()], &[], KeyAlgorithm::EcdsaP256, 1)
            .unwrap();
        let certs = certs_der(tls_crt(&leaf).unwrap().as_bytes(), "tls.crt").unwrap();
        let leaf_der = certs_der(leaf.cert_pem.as_bytes(), "leaf").unwrap();
        assert_eq!(certs.len(), 2);
        assert_eq!(certs[0], leaf_der[0]);
        assert_eq!(certs[1], mid.cert_der());
        assert!(certs.iter().all(|c| c.as_slice() != root.cert_der()));
    }

    #[test]
    fn a_ca_folder_gives_its_root_and_its_chain_when_it_has_one() {
        let t = tempfile::tempdir().unwrap();
        assert!(matches!(
            ChainFiles::from_ca_dir(&t.path().join("nowhere")),
            Err(Error::CaDirMissing(_))
        ));
        assert!(matches!(
            ChainFiles::from_ca_dir(t.path()),
            Err(Error::CaFileMissing {
                file: "root-cert.pem",
                ..
            })
        ));
        std::fs::write(t.path().join("root-cert.pem"), "x").unwrap();
        let files = ChainFiles::from_ca_dir(t.path()).unwrap();
        assert_eq!(files.chain, None);
        assert_eq!(files.root, Some(t.path().join("root-cert.pem")));
        std::fs::write(t.path().join("cert-chain.pem"), "x").unwrap();
        let files = ChainFiles::from_ca_dir(t.path()).unwrap();
        assert_eq!(files.chain, Some(t.path().join("cert-chain.pem")));
    }
}
