//! Keys, CAs and the certificates they issue.
//!
//! Every certificate gets a random 128-bit serial (rcgen would otherwise
//! derive it from the public key, so two certs for one key would collide) and
//! a NotBefore two minutes in the past, as istiod does, to absorb clock skew.

use std::net::IpAddr;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, RsaKeySize, SanType, SerialNumber,
};
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;

use crate::pem::{cert_to_pem, certs_from_bytes, single_key_pem};
use crate::Error;

/// Clock-skew allowance subtracted from every NotBefore (istiod uses the same).
const BACKDATE: time::Duration = time::Duration::minutes(2);

/// Key algorithms; `Rsa*` only where the rcgen backend can generate them
/// (certgen builds rcgen on aws-lc-rs, which can).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    /// ECDSA on NIST P-256 with SHA-256 (the default).
    EcdsaP256,
    /// ECDSA on NIST P-384 with SHA-384.
    EcdsaP384,
    /// Ed25519.
    Ed25519,
    /// RSA 2048-bit, PKCS#1 v1.5 with SHA-256.
    Rsa2048,
    /// RSA 3072-bit, PKCS#1 v1.5 with SHA-256.
    Rsa3072,
    /// RSA 4096-bit, PKCS#1 v1.5 with SHA-256.
    Rsa4096,
}

impl KeyAlgorithm {
    /// Every algorithm, in the order `--help` lists them.
    pub const ALL: [KeyAlgorithm; 6] = [
        KeyAlgorithm::EcdsaP256,
        KeyAlgorithm::EcdsaP384,
        KeyAlgorithm::Ed25519,
        KeyAlgorithm::Rsa2048,
        KeyAlgorithm::Rsa3072,
        KeyAlgorithm::Rsa4096,
    ];

    /// The CLI name: `ec-p256`, `ec-p384`, `ed25519`, `rsa-2048`, `rsa-3072`, `rsa-4096`.
    pub fn name(self) -> &'static str {
        match self {
            KeyAlgorithm::EcdsaP256 => "ec-p256",
            KeyAlgorithm::EcdsaP384 => "ec-p384",
            KeyAlgorithm::Ed25519 => "ed25519",
            KeyAlgorithm::Rsa2048 => "rsa-2048",
            KeyAlgorithm::Rsa3072 => "rsa-3072",
            KeyAlgorithm::Rsa4096 => "rsa-4096",
        }
    }

    /// Whether this is an RSA algorithm (RSA leaves also get keyEncipherment).
    pub fn is_rsa(self) -> bool {
        matches!(
            self,
            KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096
        )
    }

    /// A fresh key pair. `Err(Generate)` if the backend refuses.
    pub(crate) fn generate(self) -> Result<KeyPair, Error> {
        let key = match self {
            KeyAlgorithm::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?,
            KeyAlgorithm::EcdsaP384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)?,
            KeyAlgorithm::Ed25519 => KeyPair::generate_for(&rcgen::PKCS_ED25519)?,
            KeyAlgorithm::Rsa2048 => {
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_2048)?
            }
            KeyAlgorithm::Rsa3072 => {
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_3072)?
            }
            KeyAlgorithm::Rsa4096 => {
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_4096)?
            }
        };
        Ok(key)
    }
}

impl std::fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for KeyAlgorithm {
    type Err = Error;

    /// Accepts the CLI names, a few common spellings, and ACM's names
    /// (`RSA_2048`, `EC_prime256v1`, `EC_secp384r1`). `Err(UnknownAlgorithm)` otherwise.
    fn from_str(s: &str) -> Result<Self, Error> {
        let alg = match s.to_ascii_lowercase().as_str() {
            "ec-p256" | "ecdsa-p256" | "p256" | "p-256" | "ec_prime256v1" | "prime256v1" => {
                KeyAlgorithm::EcdsaP256
            }
            "ec-p384" | "ecdsa-p384" | "p384" | "p-384" | "ec_secp384r1" | "secp384r1" => {
                KeyAlgorithm::EcdsaP384
            }
            "ed25519" => KeyAlgorithm::Ed25519,
            "rsa-2048" | "rsa2048" | "rsa_2048" => KeyAlgorithm::Rsa2048,
            "rsa-3072" | "rsa3072" | "rsa_3072" => KeyAlgorithm::Rsa3072,
            "rsa-4096" | "rsa4096" | "rsa_4096" => KeyAlgorithm::Rsa4096,
            _ => return Err(Error::UnknownAlgorithm(s.to_string())),
        };
        Ok(alg)
    }
}

/// A CA held in memory (certificate + key + its issuers up to the root).
pub struct Ca {
    cert_der: Vec<u8>,
    cert_pem: String,
    key_pem: String,
    issuer: Issuer<'static, KeyPair>,
    /// PEM of each issuer above this CA, nearest first, root last; empty for a root.
    issuers_pem: Vec<String>,
    subject: String,
    org: Option<String>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    /// `None` when the CA has no pathLenConstraint.
    path_len: Option<u8>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("subject", &self.subject)
            .field("not_after", &self.not_after)
            .field("path_len", &self.path_len)
            .finish_non_exhaustive()
    }
}

/// A certificate issued by a [`Ca`], with its new key.
#[derive(Debug, Clone)]
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    /// Issuers (not the leaf), nearest first, ending with the root.
    pub chain_pem: String,
}

/// What differs between the kinds of end-entity certificate.
pub(crate) struct LeafSpec {
    pub dn: DistinguishedName,
    pub sans: Vec<SanType>,
    pub key_usages: Vec<KeyUsagePurpose>,
    pub ekus: Vec<ExtendedKeyUsagePurpose>,
    pub validity: time::Duration,
}

pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], Error> {
    let mut b = [0u8; N];
    getrandom::getrandom(&mut b)
        .map_err(|e| Error::Generate(format!("no randomness from the OS: {e}")))?;
    Ok(b)
}

fn random_serial() -> Result<SerialNumber, Error> {
    // DER drops a leading zero byte, which would leave a 120-bit serial one
    // time in 256 (and failed lib_api's serial-length test as often): draw again.
    loop {
        let b = random_bytes::<16>()?;
        if b[0] != 0 {
            return Ok(SerialNumber::from_slice(&b));
        }
    }
}

pub(crate) fn fmt_time(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

fn days(d: u32) -> Result<time::Duration, Error> {
    if d == 0 {
        return Err(Error::InvalidInput(
            "validity of 0 days: pass --days 1 or more".into(),
        ));
    }
    Ok(time::Duration::days(i64::from(d)))
}

/// Parsed facts about a certificate that a CA check needs.
struct CaFacts {
    is_ca: bool,
    key_cert_sign: bool,
    path_len: Option<u8>,
    subject: String,
    org: Option<String>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    public_key: Vec<u8>,
}

fn ca_facts(x: &X509Certificate<'_>) -> CaFacts {
    let bc = x
        .basic_constraints()
        .ok()
        .flatten()
        .map(|e| e.value.clone());
    let ku = x
        .key_usage()
        .ok()
        .flatten()
        .map(|e| e.value.key_cert_sign());
    CaFacts {
        is_ca: bc.as_ref().is_some_and(|b| b.ca),
        // An absent keyUsage does not restrict signing (RFC 5280 4.2.1.3).
        key_cert_sign: ku.unwrap_or(true),
        path_len: bc
            .and_then(|b| b.path_len_constraint)
            .map(|n| u8::try_from(n).unwrap_or(u8::MAX)),
        subject: x.subject().to_string(),
        org: x
            .subject()
            .iter_organization()
            .next()
            .and_then(|a| a.as_str().ok())
            .map(str::to_string),
        not_before: x.validity().not_before.to_datetime(),
        not_after: x.validity().not_after.to_datetime(),
        public_key: x.public_key().subject_public_key.data.to_vec(),
    }
}

fn parse_one<'a>(der: &'a [u8], what: &str) -> Result<X509Certificate<'a>, Error> {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, c)| c)
        .map_err(|e| Error::BadCertificate {
            what: what.into(),
            reason: e.to_string(),
        })
}

impl Ca {
    /// Wraps a CA certificate and its key after checking that the cert is a
    /// CA allowed to sign certificates and that the key is the cert's key.
    fn from_parts(
        cert_der: Vec<u8>,
        key_pem: String,
        issuers_pem: Vec<String>,
        cert_name: &str,
        key_name: &str,
    ) -> Result<Ca, Error> {
        let facts = {
            let x = parse_one(&cert_der, cert_name)?;
            ca_facts(&x)
        };
        if !facts.is_ca || !facts.key_cert_sign {
            return Err(Error::NotCa(format!("{cert_name} ({})", facts.subject)));
        }
        let key = KeyPair::from_pem(&key_pem).map_err(|e| Error::BadKey {
            what: key_name.into(),
            reason: e.to_string(),
        })?;
        if rcgen::PublicKeyData::der_bytes(&key) != facts.public_key.as_slice() {
            return Err(Error::KeyMismatch {
                key: key_name.into(),
                cert: cert_name.into(),
            });
        }
        let issuer = Issuer::from_ca_cert_der(&cert_der.as_slice().into(), key)?;
        Ok(Ca {
            cert_pem: cert_to_pem(&cert_der),
            cert_der,
            key_pem,
            issuer,
            issuers_pem,
            subject: facts.subject,
            org: facts.org,
            not_before: facts.not_before,
            not_after: facts.not_after,
            path_len: facts.path_len,
        })
    }

    /// Self-signed root: O=org, CN=cn, CA:true (optional pathlen), KU keyCertSign+cRLSign (critical).
    ///
    /// `Err(InvalidInput)` for 0 days or an empty name, `Err(Generate)` if the backend fails.
    pub fn new_root(
        org: &str,
        cn: &str,
        alg: KeyAlgorithm,
        days: u32,
        path_len: Option<u8>,
    ) -> Result<Ca, Error> {
        if org.trim().is_empty() || cn.trim().is_empty() {
            return Err(Error::InvalidInput(
                "empty organization or common name: pass --org and --cn".into(),
            ));
        }
        let validity = self::days(days)?;
        let key = alg.generate()?;
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, org);
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(match path_len {
            Some(n) => BasicConstraints::Constrained(n),
            None => BasicConstraints::Unconstrained,
        });
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.serial_number = Some(random_serial()?);
        params.not_before = now - BACKDATE;
        params.not_after = now + validity;
        let cert = params.self_signed(&key)?;
        Ca::from_parts(
            cert.der().to_vec(),
            key.serialize_pem(),
            Vec::new(),
            "new root",
            "new root key",
        )
    }

    /// Intermediate for one cluster, as Istio's plug-in CA layout expects
    /// (O as the issuer's, CN=Intermediate CA, L=cluster, CA:true, pathlen:0,
    /// DNS SAN istiod.istio-system.svc). NotAfter is clamped to this CA's.
    ///
    /// `Err(InvalidInput)` for a cluster name that is not `[A-Za-z0-9._-]+` or
    /// 0 days, `Err(IssuerNotValid)` if this CA is expired,
    /// `Err(PathLenViolation)` if this CA has pathlen:0.
    pub fn intermediate(&self, cluster: &str, alg: KeyAlgorithm, days: u32) -> Result<Ca, Error> {
        let ok_name = !cluster.is_empty()
            && cluster != "."
            && cluster != ".."
            && cluster
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !ok_name {
            return Err(Error::InvalidInput(format!(
                "cluster name `{cluster}` must be letters, digits, `.`, `_` or `-` (it names a folder)"
            )));
        }
        let validity = self::days(days)?;
        let now = self.check_can_issue()?;
        if self.path_len == Some(0) {
            return Err(Error::PathLenViolation {
                subject: self.subject.clone(),
                path_len: 0,
            });
        }
        let key = alg.generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(
            DnType::OrganizationName,
            self.org.as_deref().unwrap_or("Istio"),
        );
        params
            .distinguished_name
            .push(DnType::CommonName, "Intermediate CA");
        params
            .distinguished_name
            .push(DnType::LocalityName, cluster);
        params.subject_alt_names = vec![SanType::DnsName("istiod.istio-system.svc".try_into()?)];
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial()?);
        params.not_before = now - BACKDATE;
        params.not_after = (now + validity).min(self.not_after);
        let cert = params.signed_by(&key, &self.issuer)?;
        let mut issuers = vec![self.cert_pem.clone()];
        issuers.extend(self.issuers_pem.iter().cloned());
        Ca::from_parts(
            cert.der().to_vec(),
            key.serialize_pem(),
            issuers,
            "new intermediate",
            "new intermediate key",
        )
    }

    /// This CA's certificate (PEM).
    pub fn cert_pem(&self) -> String {
        self.cert_pem.clone()
    }

    /// This CA's certificate (DER).
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// This CA's private key (PEM, as generated or as loaded).
    pub fn key_pem(&self) -> String {
        self.key_pem.clone()
    }

    /// This CA's cert followed by its issuers up to and including the root (Istio's cert-chain.pem).
    pub fn chain_pem(&self) -> String {
        let mut s = self.cert_pem.clone();
        for p in &self.issuers_pem {
            s.push_str(p);
        }
        s
    }

    /// The root certificate at the top of this CA's chain (itself for a root).
    pub fn root_pem(&self) -> String {
        self.issuers_pem
            .last()
            .cloned()
            .unwrap_or_else(|| self.cert_pem.clone())
    }

    /// Whether this CA is a self-signed root (no issuers above it).
    pub fn is_root(&self) -> bool {
        self.issuers_pem.is_empty()
    }

    /// The subject, as text (`O=Istio, CN=Root CA`).
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The end of this CA's validity.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// `Ok(now)` while this CA is inside its validity window.
    fn check_can_issue(&self) -> Result<OffsetDateTime, Error> {
        let now = OffsetDateTime::now_utc();
        if now < self.not_before || now > self.not_after {
            return Err(Error::IssuerNotValid {
                subject: self.subject.clone(),
                not_before: fmt_time(self.not_before),
                not_after: fmt_time(self.not_after),
            });
        }
        Ok(now)
    }

    pub(crate) fn issue_leaf(&self, spec: LeafSpec, alg: KeyAlgorithm) -> Result<Leaf, Error> {
        let now = self.check_can_issue()?;
        if spec.validity <= time::Duration::ZERO {
            return Err(Error::InvalidInput(
                "validity must be longer than zero: pass --hours or --days".into(),
            ));
        }
        let key = alg.generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = spec.dn;
        params.subject_alt_names = spec.sans;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = spec.key_usages;
        if alg.is_rsa()
            && !params
                .key_usages
                .contains(&KeyUsagePurpose::KeyEncipherment)
        {
            params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
        }
        params.extended_key_usages = spec.ekus;
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial()?);
        params.not_before = now - BACKDATE;
        params.not_after = (now + spec.validity).min(self.not_after);
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Leaf {
            cert_pem: cert_to_pem(cert.der()),
            key_pem: key.serialize_pem(),
            chain_pem: self.chain_pem(),
        })
    }

    /// SPIFFE X.509-SVID: exactly one (critical) URI SAN, empty subject, KU
    /// digitalSignature (+keyEncipherment for RSA), EKU serverAuth+clientAuth.
    /// NotAfter is clamped to this CA's.
    ///
    /// `Err(InvalidSpiffeId)` for an ID that breaks SPIFFE-ID.md,
    /// `Err(InvalidInput)` for a zero validity, `Err(IssuerNotValid)` if this CA is expired.
    pub fn issue_workload(
        &self,
        spiffe_id: &str,
        alg: KeyAlgorithm,
        validity: Duration,
    ) -> Result<Leaf, Error> {
        policy::spiffe::SpiffeId::parse(spiffe_id).map_err(|e| Error::InvalidSpiffeId {
            id: spiffe_id.to_string(),
            reason: e.to_string(),
        })?;
        let validity = time::Duration::try_from(validity)
            .map_err(|_| Error::InvalidInput("validity is too long".into()))?;
        let uri = spiffe_id.try_into().map_err(|_| Error::InvalidSpiffeId {
            id: spiffe_id.to_string(),
            reason: "not ASCII".into(),
        })?;
        self.issue_leaf(
            LeafSpec {
                dn: DistinguishedName::new(),
                sans: vec![SanType::URI(uri)],
                key_usages: vec![KeyUsagePurpose::DigitalSignature],
                ekus: vec![
                    ExtendedKeyUsagePurpose::ServerAuth,
                    ExtendedKeyUsagePurpose::ClientAuth,
                ],
                validity,
            },
            alg,
        )
    }

    /// Server cert with DNS (and optional IP) SANs, EKU serverAuth, CN = the first DNS name.
    ///
    /// `Err(InvalidInput)` with no names, a malformed DNS name or 0 days;
    /// `Err(IssuerNotValid)` if this CA is expired.
    pub fn issue_server(
        &self,
        dns: &[String],
        ips: &[IpAddr],
        alg: KeyAlgorithm,
        days: u32,
    ) -> Result<Leaf, Error> {
        if dns.is_empty() && ips.is_empty() {
            return Err(Error::InvalidInput(
                "a server certificate needs at least one name: pass --dns (or --ip)".into(),
            ));
        }
        let validity = self::days(days)?;
        let mut sans = dns_sans(dns)?;
        sans.extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
        let mut dn = DistinguishedName::new();
        if let Some(first) = dns.first().filter(|d| d.len() <= 64) {
            dn.push(DnType::CommonName, first.as_str());
        }
        self.issue_leaf(
            LeafSpec {
                dn,
                sans,
                key_usages: vec![KeyUsagePurpose::DigitalSignature],
                ekus: vec![ExtendedKeyUsagePurpose::ServerAuth],
                validity,
            },
            alg,
        )
    }

    /// Load a CA folder in Istio's plug-in layout (ca-cert.pem, ca-key.pem,
    /// cert-chain.pem, root-cert.pem), checking key/cert match and CA flags,
    /// that cert-chain.pem starts with ca-cert.pem and each cert is signed by
    /// the next up to root-cert.pem (what istiod checks at start-up). A root
    /// folder (root-cert.pem + root-key.pem, as `certgen root` and Istio's
    /// Makefile write it) loads too.
    ///
    /// An expired CA loads; issuing from it fails with `IssuerNotValid`.
    /// `Err(CaDirMissing | CaFileMissing | BadCertificate | BadKey | KeyMismatch | NotCa | BadChain | Io)`.
    pub fn load_dir(dir: &Path) -> Result<Ca, Error> {
        if !dir.is_dir() {
            return Err(Error::CaDirMissing(dir.to_path_buf()));
        }
        let has = |f: &str| dir.join(f).is_file();
        if !has("ca-cert.pem") && has("root-cert.pem") && has("root-key.pem") {
            return Ca::load_root(dir);
        }
        for file in [
            "ca-cert.pem",
            "ca-key.pem",
            "cert-chain.pem",
            "root-cert.pem",
        ] {
            if !has(file) {
                return Err(Error::CaFileMissing {
                    dir: dir.to_path_buf(),
                    file,
                });
            }
        }
        let name = |f: &str| dir.join(f).display().to_string();
        let ca_der = first_cert(&dir.join("ca-cert.pem"))?;
        let key_pem = read_key(&dir.join("ca-key.pem"))?;
        let chain = certs_from_bytes(&read(&dir.join("cert-chain.pem"))?, &name("cert-chain.pem"))?;
        let root_der = first_cert(&dir.join("root-cert.pem"))?;
        let issuers = check_chain(&ca_der, &chain, &root_der, dir)?;
        Ca::from_parts(
            ca_der,
            key_pem,
            issuers,
            &name("ca-cert.pem"),
            &name("ca-key.pem"),
        )
    }

    fn load_root(dir: &Path) -> Result<Ca, Error> {
        let cert_path = dir.join("root-cert.pem");
        let der = first_cert(&cert_path)?;
        {
            let x = parse_one(&der, &cert_path.display().to_string())?;
            if x.subject().as_raw() != x.issuer().as_raw() || x.verify_signature(None).is_err() {
                return Err(Error::BadChain(format!(
                    "{} is not self-signed: a root folder holds a root; for an intermediate use Istio's layout (ca-cert.pem, ca-key.pem, cert-chain.pem, root-cert.pem)",
                    cert_path.display()
                )));
            }
        }
        let key_path = dir.join("root-key.pem");
        Ca::from_parts(
            der,
            read_key(&key_path)?,
            Vec::new(),
            &cert_path.display().to_string(),
            &key_path.display().to_string(),
        )
    }
}

pub(crate) fn dns_sans(dns: &[String]) -> Result<Vec<SanType>, Error> {
    dns.iter()
        .map(|d| {
            let ok = !d.is_empty()
                && d.len() <= 253
                && d.split('.').enumerate().all(|(i, label)| {
                    (i == 0 && label == "*")
                        || (!label.is_empty()
                            && label.len() <= 63
                            && !label.starts_with('-')
                            && !label.ends_with('-')
                            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
                });
            if !ok {
                return Err(Error::InvalidInput(format!(
                    "`{d}` is not a DNS name: use letters, digits and `-` in dot-separated labels (a leading `*.` is allowed)"
                )));
            }
            Ok(SanType::DnsName(d.as_str().try_into()?))
        })
        .collect()
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

fn first_cert(path: &Path) -> Result<Vec<u8>, Error> {
    let mut certs = certs_from_bytes(&read(path)?, &path.display().to_string())?;
    Ok(certs.swap_remove(0))
}

fn read_key(path: &Path) -> Result<String, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    single_key_pem(&text, &path.display().to_string())
}

/// istiod's start-up check: cert-chain.pem = ca-cert, then each issuer,
/// each signed by the next, ending at (or just below) root-cert. Returns the
/// issuers above ca-cert as PEM, nearest first, root last.
fn check_chain(
    ca_der: &[u8],
    chain: &[Vec<u8>],
    root_der: &[u8],
    dir: &Path,
) -> Result<Vec<String>, Error> {
    let bad = |msg: String| Error::BadChain(format!("{}: {msg}", dir.display()));
    if chain.first().map(Vec::as_slice) != Some(ca_der) {
        return Err(bad(
            "cert-chain.pem must start with ca-cert.pem, then its issuers up to the root (intermediate first, then root)".into(),
        ));
    }
    for (i, a) in chain.iter().enumerate() {
        if chain[i + 1..].contains(a) {
            return Err(bad(
                "cert-chain.pem lists the same certificate twice: list each certificate once"
                    .into(),
            ));
        }
    }
    let mut path: Vec<&[u8]> = chain.iter().map(Vec::as_slice).collect();
    if path.last() != Some(&root_der) {
        path.push(root_der);
    }
    for pair in path.windows(2) {
        let child = parse_one(pair[0], "cert-chain.pem")?;
        let parent = parse_one(pair[1], "cert-chain.pem")?;
        if child.verify_signature(Some(parent.public_key())).is_err() {
            return Err(bad(format!(
                "`{}` is not signed by `{}`: put the certificates in cert-chain.pem in order, each followed by its issuer, ending with root-cert.pem",
                child.subject(),
                parent.subject()
            )));
        }
    }
    let root = parse_one(root_der, "root-cert.pem")?;
    if root.verify_signature(None).is_err() {
        return Err(bad(
            "root-cert.pem is not a self-signed root: put the root certificate there".into(),
        ));
    }
    Ok(path[1..].iter().map(|d| cert_to_pem(d)).collect())
}
