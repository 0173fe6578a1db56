//! A mesh PKI for tests and the demo, issued with the `certgen` library and
//! written to a directory: root → cluster intermediate → SPIFFE workload
//! certificates, like istiod's plug-in CA issues them.

use certgen::{Ca, KeyAlgorithm};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Trust domain of the test mesh.
pub const TRUST_DOMAIN: &str = "cluster.local";
/// The ingress gateway identity (a trusted XFCC forwarder).
pub const GATEWAY: &str = "istio-ingressgateway.istio-system";
/// A workload name whose certificate is signed by the mesh CA but carries a
/// foreign trust domain (`spiffe://evil.example/ns/foo/sa/sleep`).
pub const FOREIGN: &str = "foreign.sleep.foo";

/// Files for one workload identity.
#[derive(Debug, Clone)]
pub struct WorkloadFiles {
    pub spiffe_id: String,
    /// Leaf followed by the intermediate (what a sidecar presents).
    pub cert_chain: PathBuf,
    pub key: PathBuf,
    /// Leaf only.
    pub leaf: PathBuf,
}

/// Error while issuing or writing test certificates.
#[derive(Debug)]
pub enum PkiError {
    Certgen(certgen::Error),
    Io(io::Error),
    UnknownWorkload(String),
}

impl std::fmt::Display for PkiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PkiError::Certgen(e) => write!(f, "certgen: {e}"),
            PkiError::Io(e) => write!(f, "writing test certificates: {e}"),
            PkiError::UnknownWorkload(w) => write!(f, "no test certificate for workload {w:?}"),
        }
    }
}

impl std::error::Error for PkiError {}

impl From<certgen::Error> for PkiError {
    fn from(e: certgen::Error) -> Self {
        PkiError::Certgen(e)
    }
}

impl From<io::Error> for PkiError {
    fn from(e: io::Error) -> Self {
        PkiError::Io(e)
    }
}

/// The mesh CA plus issued workloads, on disk under `dir`.
pub struct MeshPki {
    pub dir: PathBuf,
    /// The root certificate (what Envoy's `validation_context.trusted_ca` holds).
    pub root: PathBuf,
    ca: Ca,
    workloads: BTreeMap<String, WorkloadFiles>,
}

/// `spiffe://cluster.local/ns/<ns>/sa/<sa>` for a `<sa>.<ns>` workload name.
pub fn spiffe_id_for(workload: &str) -> String {
    if workload == FOREIGN {
        return "spiffe://evil.example/ns/foo/sa/sleep".to_string();
    }
    let (sa, ns) = workload.split_once('.').unwrap_or((workload, "default"));
    let sa = if workload == GATEWAY {
        "istio-ingressgateway-service-account"
    } else {
        sa
    };
    format!("spiffe://{TRUST_DOMAIN}/ns/{ns}/sa/{sa}")
}

impl MeshPki {
    /// Root and intermediate, plus the standard cast: `sleep.foo`, `sleep.bar`,
    /// `sleep.legacy`, `httpbin.foo`, the gateway and the foreign-trust-domain client.
    pub fn generate(dir: &Path) -> Result<MeshPki, PkiError> {
        std::fs::create_dir_all(dir)?;
        let root = Ca::new_root(
            TRUST_DOMAIN,
            "peerauth test root",
            KeyAlgorithm::EcdsaP256,
            3650,
            None,
        )?;
        let ca = root.intermediate("cluster1", KeyAlgorithm::EcdsaP256, 365)?;
        let root_path = dir.join("root-cert.pem");
        std::fs::write(&root_path, ca.root_pem())?;
        let mut pki = MeshPki {
            dir: dir.to_path_buf(),
            root: root_path,
            ca,
            workloads: BTreeMap::new(),
        };
        for w in [
            "sleep.foo",
            "sleep.bar",
            "sleep.legacy",
            "httpbin.foo",
            GATEWAY,
            FOREIGN,
        ] {
            pki.issue(w)?;
        }
        Ok(pki)
    }

    /// Issue (or re-issue) a workload certificate named `<sa>.<ns>`.
    pub fn issue(&mut self, workload: &str) -> Result<WorkloadFiles, PkiError> {
        self.issue_spiffe(workload, &spiffe_id_for(workload))
    }

    /// Issue (or re-issue) a certificate for any SPIFFE ID, stored under `name`: what
    /// istiod's CA gives a pod whose identity is not `<sa>.<ns>`-shaped in
    /// [`spiffe_id_for`]'s sense (the pod-faithful lab issues
    /// `spiffe://cluster.local/ns/<ns>/sa/<service account>` per sidecar pod).
    pub fn issue_spiffe(&mut self, name: &str, spiffe_id: &str) -> Result<WorkloadFiles, PkiError> {
        let leaf = self.ca.issue_workload(
            spiffe_id,
            KeyAlgorithm::EcdsaP256,
            Duration::from_secs(24 * 3600),
        )?;
        let files = WorkloadFiles {
            spiffe_id: spiffe_id.to_string(),
            cert_chain: self.dir.join(format!("{name}.chain.pem")),
            key: self.dir.join(format!("{name}.key.pem")),
            leaf: self.dir.join(format!("{name}.cert.pem")),
        };
        std::fs::write(
            &files.cert_chain,
            format!("{}{}", leaf.cert_pem, leaf.chain_pem),
        )?;
        std::fs::write(&files.key, &leaf.key_pem)?;
        std::fs::write(&files.leaf, &leaf.cert_pem)?;
        self.workloads.insert(name.to_string(), files.clone());
        Ok(files)
    }

    /// The intermediate CA that signs the workloads (for a test that needs a
    /// certificate certgen would refuse to issue, signed as the mesh's own).
    pub fn ca(&self) -> &Ca {
        &self.ca
    }

    /// Files of an issued workload.
    pub fn workload(&self, name: &str) -> Result<&WorkloadFiles, PkiError> {
        self.workloads
            .get(name)
            .ok_or_else(|| PkiError::UnknownWorkload(name.to_string()))
    }

    /// A second, unrelated CA's workload (its handshake must fail).
    pub fn outsider(&self, name: &str) -> Result<WorkloadFiles, PkiError> {
        let other = Ca::new_root(
            "outsider",
            "outsider root",
            KeyAlgorithm::EcdsaP256,
            30,
            None,
        )?;
        let spiffe_id = spiffe_id_for(name);
        let leaf = other.issue_workload(
            &spiffe_id,
            KeyAlgorithm::EcdsaP256,
            Duration::from_secs(3600),
        )?;
        let files = WorkloadFiles {
            spiffe_id,
            cert_chain: self.dir.join(format!("outsider.{name}.chain.pem")),
            key: self.dir.join(format!("outsider.{name}.key.pem")),
            leaf: self.dir.join(format!("outsider.{name}.cert.pem")),
        };
        std::fs::write(&files.cert_chain, &leaf.cert_pem)?;
        std::fs::write(&files.key, &leaf.key_pem)?;
        std::fs::write(&files.leaf, &leaf.cert_pem)?;
        Ok(files)
    }
}
