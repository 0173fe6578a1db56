//! Certificates as running proxies report them: what `inspect` and `verify`
//! read besides PEM and DER.
//!
//! The format is told from the content, never from the file name:
//! - JSON whose top level is an object with `configs` is Envoy's admin
//!   `/config_dump` (whole, or filtered with `?resource=…`, whose entries are
//!   `SecretsConfigDump.DynamicSecret` / `.StaticSecret`);
//! - an object with `dynamicActiveSecrets`, `dynamicWarmingSecrets` or
//!   `staticSecrets` (or their snake_case names) is one `SecretsConfigDump`,
//!   which `istioctl proxy-config secret <pod> -o json` prints;
//! - an array of objects with `identity` (or an object with `certificates`,
//!   ztunnel's own `/config_dump`) is `istioctl ztunnel-config certificates -o json`;
//! - anything else is PEM (it holds `-----BEGIN`) or DER.
//!
//! Field names are read in both spellings, because protobuf JSON has two:
//! Envoy's admin prints the proto names (`dynamic_active_secrets`,
//! `inline_bytes`), istioctl marshals with golang/protobuf `jsonpb` defaults,
//! which print the camelCase JSON names (`dynamicActiveSecrets`,
//! `inlineBytes`) — istio/istio `istioctl/pkg/writer/envoy/configdump/configdump.go`
//! `PrintSecretDump` and `pkg/util/protomarshal`.
//!
//! istioctl's own users read it that way: istio/istio
//! `samples/security/spire/README.md` pipes `istioctl pc secret … -o json`
//! through `.dynamicActiveSecrets[0].secret.tlsCertificate.certificateChain.inlineBytes`,
//! and `tests/integration/pilot/istioctl_test.go` expects the key
//! `dynamicActiveSecrets` holding exactly `default` and `ROOTCA`.
//!
//! Facts this parser relies on, with where they were established:
//! - Istio's sidecar holds its workload chain in the SDS secret `default`
//!   and its trust anchors in `ROOTCA` (`validation_context.trusted_ca`);
//!   istioctl's own reader looks them up by those names
//!   (`istioctl/pkg/writer/envoy/configdump/configdump.go`,
//!   `PrintPodRootCAFromDynamicSecretDump`; testdata `secret/istio/config_dump.json`).
//!   With SPIRE, `ROOTCA` carries the bundles in a SPIFFE cert validator
//!   (`custom_validator_config.typed_config.trust_domains[].trust_bundle`,
//!   testdata `secret/spire/config_dump.json`).
//! - Envoy redacts the private key of a TLS certificate secret: bytes become
//!   the bytes `[redacted]` (`inline_bytes: "W3JlZGFjdGVkXQ=="`), strings and
//!   file names the string `[redacted]`. Seen in Envoy 1.40's own
//!   `/config_dump` (certgen's tests read it) and in istio's testdata above.
//! - A static secret given by file name is dumped as the file name, not its
//!   bytes (Envoy 1.40); certgen reads the file, as Envoy does, when it exists.
//! - ztunnel's certificates dump is an array of `{identity, state,
//!   certChain: [{pem, serialNumber, validFrom, expirationTime}], rootCerts: […]}`;
//!   older ztunnels put the root at the end of `certChain` and had no
//!   `rootCerts` (istio/istio `istioctl/pkg/writer/ztunnel/configdump/api.go`
//!   `CertsDump`, and `certificates.go` "Before, the root was part of the certChain").

use std::path::Path;

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::Error;

/// The shape an input was recognised as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// One or more PEM certificates.
    Pem,
    /// One DER certificate.
    Der,
    /// One `SecretsConfigDump`, as `istioctl proxy-config secret -o json` prints it.
    EnvoySecrets,
    /// Envoy's admin `/config_dump`, whole or filtered with `?resource=`.
    EnvoyConfigDump,
    /// `istioctl ztunnel-config certificates -o json` (or ztunnel's `/config_dump`).
    ZtunnelCertificates,
}

impl Format {
    /// The name used in messages and `--json`.
    pub fn name(self) -> &'static str {
        match self {
            Format::Pem => "pem",
            Format::Der => "der",
            Format::EnvoySecrets => "envoy-secrets",
            Format::EnvoyConfigDump => "envoy-config-dump",
            Format::ZtunnelCertificates => "ztunnel-certificates",
        }
    }

    /// Whether the input came from a running proxy rather than a certificate file.
    pub fn is_proxy(self) -> bool {
        !matches!(self, Format::Pem | Format::Der)
    }
}

/// What a proxy says about a TLS certificate's private key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyState {
    /// Envoy replaced it with `[redacted]`, as it does for every key it dumps.
    Redacted,
    /// The dump carries the key itself: the file is as secret as the key.
    InClear,
    /// No private key field (ztunnel never shows one).
    Absent,
}

/// One secret of a proxy: a workload certificate chain, a set of trust anchors, or both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secret {
    /// The SDS secret name (`default`, `ROOTCA`, `kubernetes://…`) or, for ztunnel, the identity.
    pub name: String,
    /// `active`, `warming` or `static` for Envoy; ztunnel's `state` (`Available`, `Initializing`, `Unavailable: …`).
    pub state: String,
    /// The certificate chain the proxy presents, leaf first, as DER. Empty for a trust bundle.
    pub chain: Vec<Vec<u8>>,
    /// Trust anchors held in this secret (`ROOTCA`'s `trusted_ca`, ztunnel's `rootCerts`), as DER.
    pub roots: Vec<Vec<u8>>,
    pub private_key: KeyState,
}

/// Everything read from one input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    pub format: Format,
    /// For PEM and DER: the file's certificates, in file order.
    pub certs: Vec<Vec<u8>>,
    /// For proxy dumps: its secrets, in dump order (certificates only; warming secrets without data are kept, empty).
    pub secrets: Vec<Secret>,
}

/// The secret an Istio sidecar presents its workload certificate from.
pub const WORKLOAD_SECRET: &str = "default";
/// The secret an Istio sidecar validates peers with.
pub const ROOT_SECRET: &str = "ROOTCA";

fn bad(what: &str, reason: impl Into<String>) -> Error {
    Error::BadProxyDump {
        what: what.to_string(),
        reason: reason.into(),
    }
}

/// Reads `bytes` in whichever of the supported formats it is (see the module docs).
///
/// `Err(BadProxyDump)` for JSON that is truncated, malformed or not one of the
/// known dumps, a missing or undecodable certificate field, or a chain out of
/// order; `Err(BadCertificate)` for non-JSON that is neither PEM nor DER.
pub fn read(bytes: &[u8], what: &str) -> Result<Input, Error> {
    let text_start = bytes
        .strip_prefix(b"\xEF\xBB\xBF".as_slice())
        .unwrap_or(bytes)
        .iter()
        .find(|b| !b.is_ascii_whitespace());
    if !matches!(text_start, Some(b'{' | b'[')) {
        let certs = crate::pem::certs_from_bytes(bytes, what)?;
        let looks_pem = bytes.windows(10).any(|w| w == b"-----BEGIN");
        return Ok(Input {
            format: if looks_pem { Format::Pem } else { Format::Der },
            certs,
            secrets: Vec::new(),
        });
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        let at = format!("line {} column {}", e.line(), e.column());
        if e.classify() == serde_json::error::Category::Eof {
            bad(what, format!("the JSON is truncated (it ends at {at}): save the whole output of the command, e.g. `istioctl proxy-config secret <pod> -o json > secrets.json`"))
        } else {
            bad(
                what,
                format!("malformed JSON at {at} ({e}): pass the output of `istioctl proxy-config secret <pod> -o json`, Envoy's /config_dump or `istioctl ztunnel-config certificates -o json` unchanged"),
            )
        }
    })?;
    let (format, secrets) = match &value {
        Value::Object(o) if field(o, "configs").is_some() => {
            (Format::EnvoyConfigDump, envoy_config_dump(o, what)?)
        }
        Value::Object(o)
            if ["static_secrets", "dynamic_active_secrets", "dynamic_warming_secrets"]
                .iter()
                .any(|k| field(o, k).is_some()) =>
        {
            (Format::EnvoySecrets, secrets_config_dump(o, what)?)
        }
        Value::Object(o) if o.contains_key("certificates") => (
            Format::ZtunnelCertificates,
            ztunnel(o.get("certificates").unwrap_or(&Value::Null), what)?,
        ),
        Value::Array(items)
            if items.is_empty() || items.iter().any(|i| i.get("identity").is_some()) =>
        {
            (Format::ZtunnelCertificates, ztunnel(&value, what)?)
        }
        Value::Object(o) if o.is_empty() => {
            return Err(bad(
                what,
                "an empty JSON object: the proxy reported no secrets yet (is the sidecar running and connected to istiod?)",
            ))
        }
        _ => return Err(bad(
            what,
            "JSON that is none of the known dumps: pass `istioctl proxy-config secret <pod> -o json`, Envoy's /config_dump, or `istioctl ztunnel-config certificates -o json`",
        )),
    };
    let has_certs = secrets
        .iter()
        .any(|s| !s.chain.is_empty() || !s.roots.is_empty());
    if !has_certs {
        return Err(bad(
            what,
            match format {
                Format::ZtunnelCertificates => "ztunnel holds no certificate yet (every identity is initializing or unavailable): wait for it to reach istiod, then dump again",
                _ => "the proxy holds no certificate secret yet (none active): wait for the sidecar to get its certificate from istiod, then dump again",
            },
        ));
    }
    Ok(Input {
        format,
        certs: Vec::new(),
        secrets,
    })
}

/// Reads a file with [`read`]. `Err(Io)` when it cannot be read.
pub fn read_file(path: &Path) -> Result<Input, Error> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    read(&bytes, &path.display().to_string())
}

impl Input {
    /// The secret named `name`.
    pub fn secret(&self, name: &str) -> Option<&Secret> {
        self.secrets.iter().find(|s| s.name == name)
    }

    /// The names of the secrets, for messages.
    pub fn secret_names(&self) -> String {
        if self.secrets.is_empty() {
            return "none".into();
        }
        self.secrets
            .iter()
            .map(|s| format!("{} ({})", s.name, s.state))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Every trust anchor the input names: `ROOTCA`'s and every ztunnel identity's
    /// roots, or for PEM/DER the self-signed certificates of the file. Deduplicated.
    pub fn trust_roots(&self) -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = Vec::new();
        let all: Vec<&Vec<u8>> = if self.format.is_proxy() {
            self.secrets.iter().flat_map(|s| s.roots.iter()).collect()
        } else {
            self.certs.iter().filter(|d| self_signed(d)).collect()
        };
        for d in all {
            if !out.contains(d) {
                out.push(d.clone());
            }
        }
        out
    }
}

pub(crate) fn self_signed(der: &[u8]) -> bool {
    crate::inspect::parse(der)
        .map(|x| x.subject().as_raw() == x.issuer().as_raw() && x.verify_signature(None).is_ok())
        .unwrap_or(false)
}

/// `o[snake]`, or `o[camelCase(snake)]`: protobuf JSON's two spellings.
fn field<'a>(o: &'a Map<String, Value>, snake: &str) -> Option<&'a Value> {
    o.get(snake).or_else(|| {
        let mut camel = String::new();
        let mut up = false;
        for ch in snake.chars() {
            if ch == '_' {
                up = true;
            } else if up {
                camel.push(ch.to_ascii_uppercase());
                up = false;
            } else {
                camel.push(ch);
            }
        }
        o.get(&camel)
    })
}

fn obj(v: Option<&Value>) -> Option<&Map<String, Value>> {
    v.and_then(Value::as_object)
}

fn type_url(o: &Map<String, Value>) -> &str {
    o.get("@type").and_then(Value::as_str).unwrap_or("")
}

fn envoy_config_dump(o: &Map<String, Value>, what: &str) -> Result<Vec<Secret>, Error> {
    let Some(configs) = field(o, "configs").and_then(Value::as_array) else {
        return Err(bad(
            what,
            "`configs` is not an array: pass Envoy's /config_dump output unchanged",
        ));
    };
    let mut secrets = Vec::new();
    let mut saw_secrets = false;
    for c in configs.iter().filter_map(Value::as_object) {
        let t = type_url(c);
        if t.ends_with(".SecretsConfigDump") {
            saw_secrets = true;
            secrets.extend(secrets_config_dump(c, what)?);
        } else if t.ends_with(".SecretsConfigDump.DynamicSecret") {
            saw_secrets = true;
            let state = if obj(field(c, "secret")).is_some_and(has_payload) {
                "active"
            } else {
                "warming"
            };
            secrets.push(one_secret(c, state, what)?);
        } else if t.ends_with(".SecretsConfigDump.StaticSecret") {
            saw_secrets = true;
            secrets.push(one_secret(c, "static", what)?);
        }
    }
    if !saw_secrets {
        return Err(bad(
            what,
            "this config_dump has no SecretsConfigDump: the proxy has no TLS secrets, or the dump was filtered to another resource; use /config_dump or /config_dump?resource=dynamic_active_secrets",
        ));
    }
    Ok(secrets)
}

fn has_payload(secret: &Map<String, Value>) -> bool {
    field(secret, "tls_certificate").is_some() || field(secret, "validation_context").is_some()
}

fn secrets_config_dump(o: &Map<String, Value>, what: &str) -> Result<Vec<Secret>, Error> {
    let mut out = Vec::new();
    for (key, state) in [
        ("static_secrets", "static"),
        ("dynamic_active_secrets", "active"),
        ("dynamic_warming_secrets", "warming"),
    ] {
        let Some(list) = field(o, key) else { continue };
        let Some(list) = list.as_array() else {
            return Err(bad(
                what,
                format!("`{key}` is not an array: pass the dump unchanged"),
            ));
        };
        for s in list.iter().filter_map(Value::as_object) {
            out.push(one_secret(s, state, what)?);
        }
    }
    Ok(out)
}

/// One `SecretsConfigDump.{Static,Dynamic}Secret`: `{name, secret: {tls_certificate | validation_context}}`.
fn one_secret(entry: &Map<String, Value>, state: &str, what: &str) -> Result<Secret, Error> {
    let secret = obj(field(entry, "secret"));
    let name = entry
        .get("name")
        .or_else(|| secret.and_then(|s| s.get("name")))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let mut out = Secret {
        name: name.clone(),
        state: state.into(),
        chain: Vec::new(),
        roots: Vec::new(),
        private_key: KeyState::Absent,
    };
    let Some(secret) = secret else {
        return Ok(out);
    };
    let at = |f: &str| format!("secret `{name}` {f}");
    if let Some(tls) = obj(field(secret, "tls_certificate")) {
        let chain_src = obj(field(tls, "certificate_chain")).ok_or_else(|| {
            bad(what, format!("{} has no certificate_chain: the proxy holds a key without a certificate; dump it again once the secret is active", at("tls_certificate")))
        })?;
        let bytes = data_source(chain_src, &at("certificate_chain"), what)?;
        out.chain = certs(&bytes, &at("certificate_chain"), what)?;
        check_order(&out.chain, &name, what)?;
        out.private_key = match obj(field(tls, "private_key")) {
            None => KeyState::Absent,
            Some(k) if is_redacted(k) => KeyState::Redacted,
            Some(_) => KeyState::InClear,
        };
    }
    if let Some(vc) = obj(field(secret, "validation_context")) {
        if let Some(ca) = obj(field(vc, "trusted_ca")).filter(|m| !m.is_empty()) {
            let bytes = data_source(ca, &at("trusted_ca"), what)?;
            out.roots.extend(certs(&bytes, &at("trusted_ca"), what)?);
        }
        // SPIRE-issued sidecars carry one bundle per trust domain in the SPIFFE validator.
        let spiffe = obj(field(vc, "custom_validator_config"))
            .and_then(|c| obj(field(c, "typed_config")))
            .and_then(|t| field(t, "trust_domains"))
            .and_then(Value::as_array);
        for td in spiffe.into_iter().flatten().filter_map(Value::as_object) {
            let td_name = td.get("name").and_then(Value::as_str).unwrap_or("?");
            if let Some(b) = obj(field(td, "trust_bundle")) {
                let place = at(&format!("trust bundle of `{td_name}`"));
                let bytes = data_source(b, &place, what)?;
                out.roots.extend(certs(&bytes, &place, what)?);
            }
        }
    }
    Ok(out)
}

fn is_redacted(key: &Map<String, Value>) -> bool {
    const R: &str = "[redacted]";
    let b64 = base64::engine::general_purpose::STANDARD.encode(R);
    ["inline_bytes", "inline_string", "filename"]
        .iter()
        .any(|f| {
            field(key, f)
                .and_then(Value::as_str)
                .is_some_and(|v| v == R || v == b64)
        })
}

/// The bytes of an Envoy `DataSource` (`inline_bytes` base64, `inline_string`, `filename`).
fn data_source(src: &Map<String, Value>, place: &str, what: &str) -> Result<Vec<u8>, Error> {
    if let Some(v) = field(src, "inline_bytes") {
        let s = v
            .as_str()
            .ok_or_else(|| bad(what, format!("{place}: inline_bytes is not a string")))?;
        let compact: String = s.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        return base64::engine::general_purpose::STANDARD
            .decode(&compact)
            .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(&compact))
            .map_err(|e| bad(what, format!("{place}: inline_bytes is not valid base64 ({e}): the dump was edited or cut; dump it again")));
    }
    if let Some(v) = field(src, "inline_string") {
        return v
            .as_str()
            .map(|s| s.as_bytes().to_vec())
            .ok_or_else(|| bad(what, format!("{place}: inline_string is not a string")));
    }
    if let Some(v) = field(src, "filename").and_then(Value::as_str) {
        // Envoy dumps a file-based secret as its file name; read it as Envoy does.
        return std::fs::read(v).map_err(|e| {
            bad(what, format!("{place} is the file {v}, which cannot be read here ({e}): run certgen where the proxy runs, or pass that file itself"))
        });
    }
    if let Some(v) = field(src, "environment_variable").and_then(Value::as_str) {
        return Err(bad(what, format!("{place} comes from the proxy's environment variable {v}, which the dump does not show: pass the certificate file itself")));
    }
    Err(bad(
        what,
        format!(
            "{place} holds no inline_bytes, inline_string or filename: pass the dump unchanged"
        ),
    ))
}

fn certs(bytes: &[u8], place: &str, what: &str) -> Result<Vec<Vec<u8>>, Error> {
    crate::pem::certs_from_bytes(bytes, place).map_err(|e| match e {
        Error::BadCertificate { reason, .. } => bad(
            what,
            format!("{place} does not hold PEM certificates ({reason}): dump it again unchanged"),
        ),
        other => other,
    })
}

/// A presented chain must run leaf first, each certificate followed by its issuer.
fn check_order(chain: &[Vec<u8>], name: &str, what: &str) -> Result<(), Error> {
    for (i, pair) in chain.windows(2).enumerate() {
        let (Ok(child), Ok(parent)) = (
            crate::inspect::parse(&pair[0]),
            crate::inspect::parse(&pair[1]),
        ) else {
            continue;
        };
        let issues = child.issuer().as_raw() == parent.subject().as_raw()
            && child.verify_signature(Some(parent.public_key())).is_ok();
        if !issues {
            return Err(bad(
                what,
                format!(
                    "secret `{name}`: certificate chain out of order: certificate {} (`{}`) did not issue certificate {} (`{}`); a proxy's chain must run leaf first, each certificate followed by its issuer — fix the order where the proxy gets it (cert-chain.pem of the plug-in CA)",
                    i + 2,
                    label(&parent),
                    i + 1,
                    label(&child)
                ),
            ));
        }
    }
    Ok(())
}

fn label(x: &x509_parser::certificate::X509Certificate<'_>) -> String {
    let s = x.subject().to_string();
    if !s.is_empty() {
        return s;
    }
    let (sans, _) = crate::inspect::sans(x);
    sans.first()
        .cloned()
        .unwrap_or_else(|| "empty subject".into())
}

fn ztunnel(v: &Value, what: &str) -> Result<Vec<Secret>, Error> {
    let Some(items) = v.as_array() else {
        return Err(bad(what, "`certificates` is not an array: pass `istioctl ztunnel-config certificates -o json` unchanged"));
    };
    let mut out = Vec::new();
    for (n, item) in items.iter().enumerate() {
        let Some(o) = item.as_object() else {
            return Err(bad(what, format!("entry {} is not an object: pass `istioctl ztunnel-config certificates -o json` unchanged", n + 1)));
        };
        let identity = o
            .get("identity")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(what, format!("entry {} has no `identity`", n + 1)))?
            .to_string();
        let state = o
            .get("state")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let pems = |key: &str| -> Result<Vec<Vec<u8>>, Error> {
            let mut ders = Vec::new();
            let list = o.get(key).and_then(Value::as_array);
            for (k, c) in list.into_iter().flatten().enumerate() {
                let place = format!("`{identity}` {key}[{k}]");
                let pem = c.get("pem").and_then(Value::as_str).ok_or_else(|| {
                    bad(
                        what,
                        format!("{place} has no `pem`: pass the dump unchanged"),
                    )
                })?;
                ders.extend(certs(pem.as_bytes(), &place, what)?);
            }
            Ok(ders)
        };
        let mut chain = pems("certChain")?;
        let mut roots = pems("rootCerts")?;
        if roots.is_empty() && chain.len() > 1 && chain.last().is_some_and(|d| self_signed(d)) {
            // Older ztunnels listed the root as the chain's last certificate.
            roots.extend(chain.pop());
        }
        check_order(&chain, &identity, what)?;
        out.push(Secret {
            name: identity,
            state,
            chain,
            roots,
            private_key: KeyState::Absent,
        });
    }
    Ok(out)
}
