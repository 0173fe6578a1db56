//! A local stand-in for AWS Certificate Manager private certificates issued
//! by AWS Private CA, for labs without an AWS account.
//!
//! The store is a folder:
//! ```text
//! <store>/store.json                    region, account, private CA ARN
//! <store>/ca/root-cert.pem, root-key.pem  the private CA (key 0600)
//! <store>/certificates/<uuid>/          certificate.pem, private-key.pem (0600), meta.json
//! ```
//! The private CA is created on first use. JSON shapes follow the ACM API
//! (`request-certificate`, `describe-certificate`, `export-certificate`,
//! `list-certificates`); times are epoch seconds as the API returns them.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use rcgen::{DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyUsagePurpose};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::files::{write_all, OutFile};
use crate::inspect::{eku_names, parse, sans};
use crate::pki::{dns_sans, random_bytes, LeafSpec};
use crate::{Ca, Error, KeyAlgorithm};

/// Default validity of an ACM private certificate: 13 months.
pub const DEFAULT_DAYS: u32 = 395;
/// AWS's example account id, used unless `--account` says otherwise.
pub const DEFAULT_ACCOUNT: &str = "123456789012";
/// The region used unless `--region` says otherwise.
pub const DEFAULT_REGION: &str = "us-east-1";

/// PBKDF2-HMAC-SHA256 rounds for exported keys: ten times OpenSSL's 2048
/// default, still fast enough to decrypt in a test.
const PBKDF2_ROUNDS: u32 = 20_000;

/// The key algorithms ACM offers for private certificates, named as ACM names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AcmKeyAlgorithm {
    #[serde(rename = "RSA_2048")]
    Rsa2048,
    #[serde(rename = "EC_prime256v1")]
    EcPrime256v1,
    #[serde(rename = "EC_secp384r1")]
    EcSecp384r1,
}

impl AcmKeyAlgorithm {
    /// ACM's name: `RSA_2048`, `EC_prime256v1`, `EC_secp384r1`.
    pub fn name(self) -> &'static str {
        match self {
            AcmKeyAlgorithm::Rsa2048 => "RSA_2048",
            AcmKeyAlgorithm::EcPrime256v1 => "EC_prime256v1",
            AcmKeyAlgorithm::EcSecp384r1 => "EC_secp384r1",
        }
    }

    fn key_algorithm(self) -> KeyAlgorithm {
        match self {
            AcmKeyAlgorithm::Rsa2048 => KeyAlgorithm::Rsa2048,
            AcmKeyAlgorithm::EcPrime256v1 => KeyAlgorithm::EcdsaP256,
            AcmKeyAlgorithm::EcSecp384r1 => KeyAlgorithm::EcdsaP384,
        }
    }
}

impl FromStr for AcmKeyAlgorithm {
    type Err = Error;

    /// `Err(InvalidInput)` for anything but ACM's three private-certificate names.
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "RSA_2048" => Ok(AcmKeyAlgorithm::Rsa2048),
            "EC_prime256v1" => Ok(AcmKeyAlgorithm::EcPrime256v1),
            "EC_secp384r1" => Ok(AcmKeyAlgorithm::EcSecp384r1),
            _ => Err(Error::InvalidInput(format!(
                "unknown ACM key algorithm `{s}`: use RSA_2048, EC_prime256v1 or EC_secp384r1"
            ))),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StoreMeta {
    region: String,
    account: String,
    certificate_authority_arn: String,
    created_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CertMeta {
    certificate_arn: String,
    domain_name: String,
    subject_alternative_names: Vec<String>,
    key_algorithm: AcmKeyAlgorithm,
    created_at: i64,
}

/// `request-certificate`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RequestResult {
    pub certificate_arn: String,
}

/// One `{"Name": …}` key usage, as ACM lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyUsage {
    pub name: String,
}

/// One extended key usage, as ACM lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtendedKeyUsage {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "OID")]
    pub oid: String,
}

/// The `Certificate` object of `describe-certificate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CertificateDetail {
    pub certificate_arn: String,
    pub domain_name: String,
    pub subject_alternative_names: Vec<String>,
    /// Colon-separated lowercase hex.
    pub serial: String,
    pub subject: String,
    pub issuer: String,
    pub created_at: i64,
    pub issued_at: i64,
    /// `ISSUED`, or `EXPIRED` once NotAfter has passed.
    pub status: String,
    pub not_before: i64,
    pub not_after: i64,
    pub key_algorithm: AcmKeyAlgorithm,
    /// `SHA256WITHRSA`, `SHA256WITHECDSA`, `SHA384WITHECDSA`.
    pub signature_algorithm: String,
    pub in_use_by: Vec<String>,
    /// Always `PRIVATE`.
    #[serde(rename = "Type")]
    pub kind: String,
    pub key_usages: Vec<KeyUsage>,
    pub extended_key_usages: Vec<ExtendedKeyUsage>,
    pub certificate_authority_arn: String,
    pub renewal_eligibility: String,
    pub options: serde_json::Value,
}

/// `describe-certificate`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Described {
    pub certificate: CertificateDetail,
}

/// `export-certificate`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Exported {
    pub certificate: String,
    /// The issuers, not the certificate itself.
    pub certificate_chain: String,
    /// Passphrase-encrypted PKCS#8 (PBES2: PBKDF2-HMAC-SHA256, AES-256-CBC).
    pub private_key: String,
}

/// One entry of `list-certificates`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CertificateSummary {
    pub certificate_arn: String,
    pub domain_name: String,
    pub subject_alternative_name_summaries: Vec<String>,
    pub status: String,
    #[serde(rename = "Type")]
    pub kind: String,
    pub key_algorithm: AcmKeyAlgorithm,
    pub in_use: bool,
    pub created_at: i64,
    pub issued_at: i64,
    pub not_before: i64,
    pub not_after: i64,
}

/// `list-certificates`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Listed {
    pub certificate_summary_list: Vec<CertificateSummary>,
}

/// The annotation that attaches a certificate to an AWS load balancer Service.
pub fn service_annotation(arn: &str) -> String {
    format!("service.beta.kubernetes.io/aws-load-balancer-ssl-cert: {arn}")
}

/// An open store.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    meta: StoreMeta,
    ca: Ca,
}

fn uuid_v4() -> Result<String, Error> {
    let mut b = random_bytes::<16>()?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        reason: format!("damaged store file ({e}): restore it or start a new --store"),
    })
}

fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>, Error> {
    serde_json::to_vec_pretty(v).map_err(|e| Error::Generate(e.to_string()))
}

fn check_region(region: &str) -> Result<(), Error> {
    let parts: Vec<&str> = region.split('-').collect();
    let ok = parts.len() >= 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
        && parts
            .last()
            .is_some_and(|p| p.chars().all(|c| c.is_ascii_digit()));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!(
            "`{region}` is not an AWS region name: use a name such as us-east-1"
        )))
    }
}

impl Store {
    /// Opens the store at `dir`, creating it and its private CA on first use.
    ///
    /// `region`/`account` apply to a new store; for an existing one they must
    /// match it when given. `Err(InvalidInput)` for a bad region or account,
    /// or one that differs from the store's.
    pub fn open_or_create(
        dir: &Path,
        region: Option<&str>,
        account: Option<&str>,
    ) -> Result<Store, Error> {
        if dir.join("store.json").is_file() {
            return Store::open_matching(dir, region, account);
        }
        let region = region.unwrap_or(DEFAULT_REGION);
        let account = account.unwrap_or(DEFAULT_ACCOUNT);
        check_region(region)?;
        if account.len() != 12 || !account.chars().all(|c| c.is_ascii_digit()) {
            return Err(Error::InvalidInput(format!(
                "`{account}` is not an AWS account id: use 12 digits"
            )));
        }
        let ca = Ca::new_root(
            "certgen private CA",
            &format!("certgen private CA {region}"),
            KeyAlgorithm::EcdsaP256,
            3650,
            Some(0),
        )?;
        let meta = StoreMeta {
            region: region.into(),
            account: account.into(),
            certificate_authority_arn: format!(
                "arn:aws:acm-pca:{region}:{account}:certificate-authority/{}",
                uuid_v4()?
            ),
            created_at: OffsetDateTime::now_utc().unix_timestamp(),
        };
        write_all(
            &[
                OutFile::public(dir.join("ca/root-cert.pem"), ca.cert_pem()),
                OutFile::private(dir.join("ca/root-key.pem"), ca.key_pem()),
                OutFile::public(dir.join("store.json"), to_json(&meta)?),
            ],
            false,
        )?;
        Ok(Store {
            dir: dir.to_path_buf(),
            meta,
            ca,
        })
    }

    /// Opens an existing store whose region and account match those given.
    ///
    /// `Err(InvalidInput)` if there is no store at `dir` or it is for another region or account.
    pub fn open_matching(
        dir: &Path,
        region: Option<&str>,
        account: Option<&str>,
    ) -> Result<Store, Error> {
        let store = Store::open(dir)?;
        if let Some(r) = region.filter(|r| *r != store.meta.region) {
            return Err(Error::InvalidInput(format!(
                "the store at {} is for region {}, not {r}: drop --region or use another --store",
                dir.display(),
                store.meta.region
            )));
        }
        if let Some(a) = account.filter(|a| *a != store.meta.account) {
            return Err(Error::InvalidInput(format!(
                "the store at {} is for account {}, not {a}: drop --account or use another --store",
                dir.display(),
                store.meta.account
            )));
        }
        Ok(store)
    }

    /// Opens an existing store. `Err(InvalidInput)` if there is none at `dir`.
    pub fn open(dir: &Path) -> Result<Store, Error> {
        let meta_path = dir.join("store.json");
        if !meta_path.is_file() {
            return Err(Error::InvalidInput(format!(
                "no ACM store at {}: run `certgen acm request` first, or pass --store",
                dir.display()
            )));
        }
        let meta: StoreMeta = read_json(&meta_path)?;
        let ca = Ca::load_dir(&dir.join("ca"))?;
        Ok(Store {
            dir: dir.to_path_buf(),
            meta,
            ca,
        })
    }

    /// The private CA's ARN.
    pub fn certificate_authority_arn(&self) -> &str {
        &self.meta.certificate_authority_arn
    }

    /// `request-certificate`: issues at once (a private CA needs no validation).
    ///
    /// The domain name is also the first SAN, as ACM does. `Err(InvalidInput)`
    /// for a name that is not a DNS name or 0 days.
    pub fn request(
        &self,
        domain: &str,
        sans: &[String],
        alg: AcmKeyAlgorithm,
        days: u32,
    ) -> Result<RequestResult, Error> {
        let mut names = vec![domain.to_string()];
        for s in sans {
            if !names.contains(s) {
                names.push(s.clone());
            }
        }
        let san_types = dns_sans(&names)?;
        if days == 0 {
            return Err(Error::InvalidInput(
                "validity of 0 days: pass --days 1 or more".into(),
            ));
        }
        let mut dn = DistinguishedName::new();
        if domain.len() <= 64 {
            dn.push(DnType::CommonName, domain);
        }
        let leaf = self.ca.issue_leaf(
            LeafSpec {
                dn,
                sans: san_types,
                key_usages: vec![
                    KeyUsagePurpose::DigitalSignature,
                    KeyUsagePurpose::KeyEncipherment,
                ],
                ekus: vec![
                    ExtendedKeyUsagePurpose::ServerAuth,
                    ExtendedKeyUsagePurpose::ClientAuth,
                ],
                validity: time::Duration::days(i64::from(days)),
            },
            alg.key_algorithm(),
        )?;
        let id = uuid_v4()?;
        let arn = format!(
            "arn:aws:acm:{}:{}:certificate/{id}",
            self.meta.region, self.meta.account
        );
        let meta = CertMeta {
            certificate_arn: arn.clone(),
            domain_name: domain.into(),
            subject_alternative_names: names,
            key_algorithm: alg,
            created_at: OffsetDateTime::now_utc().unix_timestamp(),
        };
        let dir = self.dir.join("certificates").join(&id);
        write_all(
            &[
                OutFile::public(dir.join("certificate.pem"), leaf.cert_pem),
                OutFile::private(dir.join("private-key.pem"), leaf.key_pem),
                OutFile::public(dir.join("meta.json"), to_json(&meta)?),
            ],
            false,
        )?;
        Ok(RequestResult {
            certificate_arn: arn,
        })
    }

    /// The folder of a certificate, from its ARN (or bare id).
    fn cert_dir(&self, arn: &str) -> Result<PathBuf, Error> {
        if arn.trim().is_empty() {
            return Err(Error::InvalidInput(
                "empty certificate ARN: pass --certificate-arn (see `certgen acm list`)".into(),
            ));
        }
        let id = arn.rsplit('/').next().unwrap_or(arn);
        let ok_id = !id.is_empty() && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
        let dir = self.dir.join("certificates").join(id);
        if !ok_id || !dir.join("meta.json").is_file() {
            return Err(Error::AcmNotFound(arn.to_string()));
        }
        let meta: CertMeta = read_json(&dir.join("meta.json"))?;
        if arn.contains(':') && meta.certificate_arn != arn {
            return Err(Error::AcmNotFound(arn.to_string()));
        }
        Ok(dir)
    }

    fn detail(&self, dir: &Path) -> Result<CertificateDetail, Error> {
        let meta: CertMeta = read_json(&dir.join("meta.json"))?;
        let pem_path = dir.join("certificate.pem");
        let bytes = std::fs::read(&pem_path).map_err(|e| Error::io(&pem_path, e))?;
        let der =
            crate::pem::certs_from_bytes(&bytes, &pem_path.display().to_string())?.swap_remove(0);
        let x = parse(&der)?;
        let nb = x.validity().not_before.to_datetime();
        let na = x.validity().not_after.to_datetime();
        let status = if OffsetDateTime::now_utc() > na {
            "EXPIRED"
        } else {
            "ISSUED"
        };
        let sig = match x.signature_algorithm.algorithm.to_id_string().as_str() {
            "1.2.840.113549.1.1.11" => "SHA256WITHRSA".to_string(),
            "1.2.840.10045.4.3.2" => "SHA256WITHECDSA".to_string(),
            "1.2.840.10045.4.3.3" => "SHA384WITHECDSA".to_string(),
            other => other.to_string(),
        };
        let ku = x.key_usage().ok().flatten();
        let mut key_usages = Vec::new();
        if let Some(k) = ku {
            for (on, n) in [
                (k.value.digital_signature(), "DIGITAL_SIGNATURE"),
                (k.value.non_repudiation(), "NON_REPUDIATION"),
                (k.value.key_encipherment(), "KEY_ENCIPHERMENT"),
                (k.value.data_encipherment(), "DATA_ENCIPHERMENT"),
                (k.value.key_agreement(), "KEY_AGREEMENT"),
                (k.value.key_cert_sign(), "CERTIFICATE_SIGNING"),
                (k.value.crl_sign(), "CRL_SIGNING"),
            ] {
                if on {
                    key_usages.push(KeyUsage { name: n.into() });
                }
            }
        }
        let extended_key_usages = eku_names(&x)
            .into_iter()
            .map(|e| match e.as_str() {
                "serverAuth" => ExtendedKeyUsage {
                    name: "TLS_WEB_SERVER_AUTHENTICATION".into(),
                    oid: "1.3.6.1.5.5.7.3.1".into(),
                },
                "clientAuth" => ExtendedKeyUsage {
                    name: "TLS_WEB_CLIENT_AUTHENTICATION".into(),
                    oid: "1.3.6.1.5.5.7.3.2".into(),
                },
                other => ExtendedKeyUsage {
                    name: "CUSTOM".into(),
                    oid: other.into(),
                },
            })
            .collect();
        let (san_list, _) = sans(&x);
        Ok(CertificateDetail {
            certificate_arn: meta.certificate_arn,
            domain_name: meta.domain_name,
            subject_alternative_names: san_list
                .iter()
                .filter_map(|s| s.strip_prefix("DNS:"))
                .map(str::to_string)
                .collect(),
            serial: x.raw_serial_as_string(),
            subject: x.subject().to_string(),
            issuer: x.issuer().to_string(),
            created_at: meta.created_at,
            issued_at: meta.created_at,
            status: status.into(),
            not_before: nb.unix_timestamp(),
            not_after: na.unix_timestamp(),
            key_algorithm: meta.key_algorithm,
            signature_algorithm: sig,
            in_use_by: Vec::new(),
            kind: "PRIVATE".into(),
            key_usages,
            extended_key_usages,
            certificate_authority_arn: self.meta.certificate_authority_arn.clone(),
            renewal_eligibility: "INELIGIBLE".into(),
            options: serde_json::json!({"CertificateTransparencyLoggingPreference": "DISABLED"}),
        })
    }

    /// `describe-certificate`. `Err(AcmNotFound)` for an unknown ARN.
    pub fn describe(&self, arn: &str) -> Result<Described, Error> {
        let dir = self.cert_dir(arn)?;
        Ok(Described {
            certificate: self.detail(&dir)?,
        })
    }

    /// `export-certificate`: the key encrypted under `passphrase`
    /// (4–128 bytes without `#`, `$` or `%`, as ACM requires).
    ///
    /// `Err(InvalidInput)` for a passphrase ACM would refuse, `Err(AcmNotFound)` for an unknown ARN.
    pub fn export(&self, arn: &str, passphrase: &[u8]) -> Result<Exported, Error> {
        if passphrase.len() < 4
            || passphrase.len() > 128
            || passphrase.iter().any(|b| matches!(b, b'#' | b'$' | b'%'))
        {
            return Err(Error::InvalidInput(
                "the passphrase must be 4 to 128 characters without #, $ or %".into(),
            ));
        }
        let dir = self.cert_dir(arn)?;
        let read = |n: &str| {
            let p = dir.join(n);
            std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))
        };
        let cert = read("certificate.pem")?;
        let key_pem = read("private-key.pem")?;
        Ok(Exported {
            certificate: cert,
            certificate_chain: self.ca.chain_pem(),
            private_key: encrypt_pkcs8(&key_pem, passphrase)?,
        })
    }

    /// `list-certificates`, oldest first.
    pub fn list(&self) -> Result<Listed, Error> {
        let root = self.dir.join("certificates");
        let mut out = Vec::new();
        if root.is_dir() {
            let entries = std::fs::read_dir(&root).map_err(|e| Error::io(&root, e))?;
            for entry in entries {
                let entry = entry.map_err(|e| Error::io(&root, e))?;
                if !entry.path().join("meta.json").is_file() {
                    continue;
                }
                let d = self.detail(&entry.path())?;
                out.push(CertificateSummary {
                    certificate_arn: d.certificate_arn,
                    domain_name: d.domain_name,
                    subject_alternative_name_summaries: d.subject_alternative_names,
                    status: d.status,
                    kind: d.kind,
                    key_algorithm: d.key_algorithm,
                    in_use: false,
                    created_at: d.created_at,
                    issued_at: d.issued_at,
                    not_before: d.not_before,
                    not_after: d.not_after,
                });
            }
        }
        out.sort_by(|a, b| {
            (a.created_at, &a.certificate_arn).cmp(&(b.created_at, &b.certificate_arn))
        });
        Ok(Listed {
            certificate_summary_list: out,
        })
    }
}

/// PKCS#8 PEM → `ENCRYPTED PRIVATE KEY` PEM (PBES2, PBKDF2-HMAC-SHA256, AES-256-CBC),
/// which `openssl pkcs8 -passin` decrypts.
pub fn encrypt_pkcs8(key_pem: &str, passphrase: &[u8]) -> Result<String, Error> {
    let bad = |e: String| Error::BadKey {
        what: "stored key".into(),
        reason: e,
    };
    let block = ::pem::parse(key_pem).map_err(|e| bad(e.to_string()))?;
    let info = pkcs8::PrivateKeyInfo::try_from(block.contents()).map_err(|e| bad(e.to_string()))?;
    let salt = random_bytes::<16>()?;
    let iv = random_bytes::<16>()?;
    let params =
        pkcs8::pkcs5::pbes2::Parameters::pbkdf2_sha256_aes256cbc(PBKDF2_ROUNDS, &salt, &iv)
            .map_err(|e| Error::Generate(e.to_string()))?;
    let doc = info
        .encrypt_with_params(params, passphrase)
        .map_err(|e| Error::Generate(e.to_string()))?;
    let pem = doc
        .to_pem("ENCRYPTED PRIVATE KEY", pkcs8::LineEnding::LF)
        .map_err(|e| Error::Generate(e.to_string()))?;
    Ok(pem.to_string())
}

/// Decrypts what [`encrypt_pkcs8`] wrote, back to a `PRIVATE KEY` PEM.
///
/// `Err(BadKey)` for a wrong passphrase or a damaged key.
pub fn decrypt_pkcs8(encrypted_pem: &str, passphrase: &[u8]) -> Result<String, Error> {
    let bad = |e: String| Error::BadKey {
        what: "encrypted key".into(),
        reason: e,
    };
    let block = ::pem::parse(encrypted_pem).map_err(|e| bad(e.to_string()))?;
    let enc = pkcs8::EncryptedPrivateKeyInfo::try_from(block.contents())
        .map_err(|e| bad(e.to_string()))?;
    let doc = enc
        .decrypt(passphrase)
        .map_err(|e| bad(format!("{e} (wrong passphrase?)")))?;
    Ok(crate::pem::encode("PRIVATE KEY", doc.as_bytes()))
}
