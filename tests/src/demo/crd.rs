//! Checks manifests the way the Kubernetes API server would: Istio kinds against their
//! CRD's `openAPIV3Schema` (types, enums, required, lengths, counts, ranges, patterns,
//! unknown fields, `x-kubernetes-*` markers) and its CEL `x-kubernetes-validations`;
//! the core kinds the lab uses (Namespace, ServiceAccount, Service, Deployment, Secret)
//! by hand-written rules for the fields that matter.
//!
//! CEL is not interpreted: each rule present in the vendored CRDs is implemented here in
//! Rust, keyed by its exact text. A rule this module does not know is reported as a
//! violation, so a CRD update can never silently skip a rule.

use regex::Regex;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// One thing the API server would refuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub source: String,
    /// 0-based document index in the source.
    pub document: usize,
    /// `Kind namespace/name`.
    pub object: String,
    /// JSON-pointer-like path of the offending field.
    pub path: String,
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (document {}) {}: {}: {}",
            self.source, self.document, self.object, self.path, self.message
        )
    }
}

/// Why the CRDs could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CrdError {
    #[error("{path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("no CRD files (*.yaml) in {0}")]
    Empty(PathBuf),
}

/// The served versions of every CRD in a folder, by (group, version, kind).
#[derive(Debug, Clone, Default)]
pub struct Crds {
    schemas: BTreeMap<(String, String, String), Value>,
}

/// The repository's vendored CRDs: `<repo>/../shared/istio-crds`.
pub fn shared_crd_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/istio-crds")
}

pub use peerauth_lab::yaml::yaml_documents;

impl Crds {
    /// Load every CRD (`*.yaml`) in `dir`. `Err` if a file cannot be read or parsed, or
    /// the folder holds none.
    pub fn load_dir(dir: &Path) -> Result<Crds, CrdError> {
        let read = |path: &Path, message: String| CrdError::Read {
            path: path.to_path_buf(),
            message,
        };
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| read(dir, e.to_string()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .collect();
        entries.sort();
        let mut crds = Crds::default();
        for path in &entries {
            let text = std::fs::read_to_string(path).map_err(|e| read(path, e.to_string()))?;
            for doc in yaml_documents(&text).map_err(|e| read(path, e))? {
                if doc["kind"] != "CustomResourceDefinition" {
                    continue;
                }
                let spec = &doc["spec"];
                let group = spec["group"].as_str().unwrap_or_default();
                let kind = spec["names"]["kind"].as_str().unwrap_or_default();
                for v in spec["versions"].as_array().into_iter().flatten() {
                    if v["served"] != Value::Bool(true) {
                        continue;
                    }
                    let version = v["name"].as_str().unwrap_or_default();
                    let schema = v["schema"]["openAPIV3Schema"].clone();
                    if schema.is_null() {
                        return Err(read(
                            path,
                            format!("{kind} {version} has no openAPIV3Schema"),
                        ));
                    }
                    crds.schemas
                        .insert((group.into(), version.into(), kind.into()), schema);
                }
            }
        }
        if crds.schemas.is_empty() {
            return Err(CrdError::Empty(dir.to_path_buf()));
        }
        Ok(crds)
    }

    /// [`Crds::load_dir`] of [`shared_crd_dir`].
    pub fn load_shared() -> Result<Crds, CrdError> {
        Crds::load_dir(&shared_crd_dir())
    }

    /// `(group, version, kind)` of every loaded schema.
    pub fn kinds(&self) -> impl Iterator<Item = &(String, String, String)> {
        self.schemas.keys()
    }

    /// Check every document of a YAML stream. A YAML error is itself a violation.
    pub fn check_text(&self, source: &str, text: &str) -> Vec<Violation> {
        match yaml_documents(text) {
            Ok(docs) => docs
                .iter()
                .enumerate()
                .filter(|(_, d)| !d.is_null())
                .flat_map(|(i, d)| self.check_document(source, i, d))
                .collect(),
            Err(e) => vec![Violation {
                source: source.into(),
                document: 0,
                object: String::new(),
                path: String::new(),
                message: format!("invalid YAML: {e}"),
            }],
        }
    }

    /// Check one object.
    pub fn check_document(&self, source: &str, document: usize, doc: &Value) -> Vec<Violation> {
        let kind = doc["kind"].as_str().unwrap_or_default();
        let api_version = doc["apiVersion"].as_str().unwrap_or_default();
        let meta = &doc["metadata"];
        let object = format!(
            "{kind} {}/{}",
            meta["namespace"].as_str().unwrap_or("-"),
            meta["name"].as_str().unwrap_or("?")
        );
        let mut errs = Errors::default();
        if kind.is_empty() || api_version.is_empty() {
            errs.add("", "apiVersion and kind are required");
        } else {
            let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
            check_metadata(meta, namespaced(kind), &mut errs);
            if let Some(schema) =
                self.schemas
                    .get(&(group.to_string(), version.to_string(), kind.to_string()))
            {
                let mut body = doc.as_object().cloned().unwrap_or_default();
                // apiVersion, kind and metadata are the API server's, not the CRD's.
                for k in ["apiVersion", "kind", "metadata"] {
                    body.remove(k);
                }
                validate(schema, &Value::Object(body), "", true, &mut errs);
            } else if let Some(check) = core_check(group, version, kind) {
                check(doc, &mut errs);
            } else if self.schemas.keys().any(|(g, _, k)| g == group && k == kind) {
                errs.add(
                    "/apiVersion",
                    format!("{api_version} is not a served version of {kind}"),
                );
            } else {
                errs.add("/kind", format!("no schema known for {api_version} {kind}"));
            }
        }
        errs.0
            .into_iter()
            .map(|(path, message)| Violation {
                source: source.into(),
                document,
                object: object.clone(),
                path,
                message,
            })
            .collect()
    }
}

#[derive(Default)]
struct Errors(Vec<(String, String)>);

impl Errors {
    fn add(&mut self, path: &str, message: impl Into<String>) {
        self.0.push((path.to_string(), message.into()));
    }
}

fn join(path: &str, key: &str) -> String {
    format!("{path}/{}", key.replace('~', "~0").replace('/', "~1"))
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Validate `value` against an OpenAPI v3 structural schema. `structural` is false inside
/// `allOf`/`anyOf`/`oneOf`/`not` branches, which only add value constraints and so must
/// not report fields they do not list as unknown.
fn validate(schema: &Value, value: &Value, path: &str, structural: bool, errs: &mut Errors) {
    let Some(s) = schema.as_object() else { return };
    if value.is_null() && s.get("nullable") == Some(&Value::Bool(true)) {
        return;
    }
    let int_or_string = s.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    let actual = type_name(value);
    if int_or_string {
        if !matches!(actual, "integer" | "string") {
            errs.add(
                path,
                format!("must be an integer or a string, not {actual}"),
            );
            return;
        }
    } else if let Some(expected) = s.get("type").and_then(Value::as_str) {
        let ok = expected == actual || (expected == "number" && actual == "integer");
        if !ok {
            errs.add(path, format!("must be of type {expected}, not {actual}"));
            return;
        }
    }

    if let Some(options) = s.get("enum").and_then(Value::as_array) {
        if !options.contains(value) {
            let names: Vec<String> = options.iter().map(Value::to_string).collect();
            errs.add(
                path,
                format!("unsupported value {value}: use one of {}", names.join(", ")),
            );
        }
    }

    match value {
        Value::Object(map) => validate_object(s, map, path, structural, errs),
        Value::Array(items) => validate_array(s, items, path, structural, errs),
        Value::String(text) => validate_string(s, text, path, errs),
        Value::Number(n) => validate_number(s, n, path, errs),
        _ => {}
    }

    let branch_ok = |b: &Value| {
        let mut e = Errors::default();
        validate(b, value, path, false, &mut e);
        e.0.is_empty()
    };
    if let Some(all) = s.get("allOf").and_then(Value::as_array) {
        for b in all {
            validate(b, value, path, false, errs);
        }
    }
    if let Some(any) = s.get("anyOf").and_then(Value::as_array) {
        // int-or-string's anyOf is the type check already done above.
        if !int_or_string && !any.iter().any(branch_ok) {
            errs.add(
                path,
                "must match at least one of the schema's anyOf alternatives",
            );
        }
    }
    if let Some(one) = s.get("oneOf").and_then(Value::as_array) {
        let n = one.iter().filter(|b| branch_ok(b)).count();
        if n != 1 {
            errs.add(path, format!("must match exactly one of the schema's oneOf alternatives (matched {n}); set at most one of the mutually exclusive fields"));
        }
    }
    if let Some(not) = s.get("not") {
        if branch_ok(not) {
            errs.add(path, "must not match the schema's `not` alternative");
        }
    }

    for rule in s
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let text = rule["rule"].as_str().unwrap_or_default();
        let message = rule["message"].as_str().unwrap_or(text);
        match cel(text, value) {
            Some(true) => {}
            Some(false) => errs.add(path, message.to_string()),
            None => errs.add(
                path,
                format!("unrecognised CEL rule {text:?}: implement it in tests/src/demo/crd.rs"),
            ),
        }
    }
}

fn validate_object(
    s: &Map<String, Value>,
    map: &Map<String, Value>,
    path: &str,
    structural: bool,
    errs: &mut Errors,
) {
    for req in s
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(k) = req.as_str() {
            if !map.contains_key(k) {
                errs.add(path, format!("missing required field {k:?}"));
            }
        }
    }
    if let Some(max) = s.get("maxProperties").and_then(Value::as_u64) {
        if map.len() as u64 > max {
            errs.add(path, format!("at most {max} entries allowed"));
        }
    }
    if let Some(min) = s.get("minProperties").and_then(Value::as_u64) {
        if (map.len() as u64) < min {
            errs.add(path, format!("at least {min} entries required"));
        }
    }
    let props = s.get("properties").and_then(Value::as_object);
    let additional = s.get("additionalProperties");
    let preserve = s.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    for (k, v) in map {
        let p = join(path, k);
        if let Some(sub) = props.and_then(|ps| ps.get(k)) {
            validate(sub, v, &p, structural, errs);
        } else if let Some(sub) = additional.filter(|a| a.is_object()) {
            validate(sub, v, &p, structural, errs);
        } else if structural && !preserve && additional != Some(&Value::Bool(true)) {
            // kubectl apply validates fields strictly (server-side field validation).
            errs.add(&p, format!("unknown field {k:?}"));
        }
    }
}

fn validate_array(
    s: &Map<String, Value>,
    items: &[Value],
    path: &str,
    structural: bool,
    errs: &mut Errors,
) {
    if let Some(max) = s.get("maxItems").and_then(Value::as_u64) {
        if items.len() as u64 > max {
            errs.add(
                path,
                format!("at most {max} items allowed, found {}", items.len()),
            );
        }
    }
    if let Some(min) = s.get("minItems").and_then(Value::as_u64) {
        if (items.len() as u64) < min {
            errs.add(path, format!("at least {min} items required"));
        }
    }
    if let Some(item_schema) = s.get("items") {
        for (i, item) in items.iter().enumerate() {
            validate(item_schema, item, &format!("{path}/{i}"), structural, errs);
        }
    }
    match s.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("map") => {
            let keys: Vec<&str> = s
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let mut seen = BTreeSet::new();
            for (i, item) in items.iter().enumerate() {
                let key: Vec<String> = keys.iter().map(|k| item[*k].to_string()).collect();
                if !seen.insert(key.clone()) {
                    errs.add(
                        &format!("{path}/{i}"),
                        format!("duplicate entry for key {}", key.join(",")),
                    );
                }
            }
        }
        Some("set") => {
            let mut seen = BTreeSet::new();
            for (i, item) in items.iter().enumerate() {
                if !seen.insert(item.to_string()) {
                    errs.add(&format!("{path}/{i}"), "duplicate value in a set");
                }
            }
        }
        _ => {}
    }
}

fn validate_string(s: &Map<String, Value>, text: &str, path: &str, errs: &mut Errors) {
    let len = text.chars().count() as u64;
    if let Some(max) = s.get("maxLength").and_then(Value::as_u64) {
        if len > max {
            errs.add(
                path,
                format!("at most {max} characters allowed, found {len}"),
            );
        }
    }
    if let Some(min) = s.get("minLength").and_then(Value::as_u64) {
        if len < min {
            errs.add(path, format!("at least {min} characters required"));
        }
    }
    if let Some(pattern) = s.get("pattern").and_then(Value::as_str) {
        match Regex::new(pattern) {
            Ok(re) if re.is_match(text) => {}
            Ok(_) => errs.add(path, format!("{text:?} does not match {pattern:?}")),
            Err(e) => errs.add(
                path,
                format!("schema pattern {pattern:?} does not compile: {e}"),
            ),
        }
    }
    if s.get("format").and_then(Value::as_str) == Some("date-time") && !looks_like_rfc3339(text) {
        errs.add(path, format!("{text:?} is not an RFC 3339 date-time"));
    }
}

fn looks_like_rfc3339(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && matches!(b[10], b'T' | b't')
        && b[13] == b':'
        && b[16] == b':'
}

fn validate_number(s: &Map<String, Value>, n: &serde_json::Number, path: &str, errs: &mut Errors) {
    let x = n.as_f64().unwrap_or(f64::NAN);
    if let Some(min) = s.get("minimum").and_then(Value::as_f64) {
        let exclusive = s.get("exclusiveMinimum") == Some(&Value::Bool(true));
        if x < min || (exclusive && x == min) {
            errs.add(path, format!("{n} is below the minimum {min}"));
        }
    }
    if let Some(max) = s.get("maximum").and_then(Value::as_f64) {
        let exclusive = s.get("exclusiveMaximum") == Some(&Value::Bool(true));
        if x > max || (exclusive && x == max) {
            errs.add(path, format!("{n} is above the maximum {max}"));
        }
    }
    let range = match s.get("format").and_then(Value::as_str) {
        Some("int32") => Some((i32::MIN as f64, i32::MAX as f64)),
        Some("uint32") => Some((0.0, u32::MAX as f64)),
        _ => None,
    };
    if let Some((lo, hi)) = range {
        if n.as_i64().is_none() && n.as_u64().is_none() || x < lo || x > hi {
            errs.add(
                path,
                format!("{n} does not fit the schema's integer format"),
            );
        }
    }
}

// ---- CEL rules of the vendored CRDs, by exact text ---------------------------------

const URL_RULE: &str = "isURL(self) ? (url(self).getScheme() in [\"\", \"http\", \"https\", \"oci\", \"file\"]) : (isURL(\"http://\" + self) &&\nurl(\"http://\" + self).getScheme() in [\"\", \"http\", \"https\", \"oci\", \"file\"])";

/// Evaluate one known rule on `this` (CEL's `self`). `None` = rule not known here.
fn cel(rule: &str, this: &Value) -> Option<bool> {
    let keys = || {
        this.as_object()
            .into_iter()
            .flatten()
            .map(|(k, _)| k.as_str())
    };
    let has = |field: &str| this.get(field).is_some_and(|v| !v.is_null());
    Some(match rule {
        "duration(self) >= duration('1ms')" => this
            .as_str()
            .and_then(go_duration_nanos)
            .is_some_and(|ns| ns >= 1_000_000),
        "!self.contains(\"*\")" => !this.as_str().unwrap_or_default().contains('*'),
        "self.size() == 0" => match this {
            Value::String(s) => s.is_empty(),
            Value::Array(a) => a.is_empty(),
            Value::Object(o) => o.is_empty(),
            _ => false,
        },
        "self.all(key, !key.contains(\"*\"))" => keys().all(|k| !k.contains('*')),
        "self.all(key, key.size() != 0)" => keys().all(|k| !k.is_empty()),
        // int() of a non-numeric key is a CEL error, which fails the rule.
        "self.all(key, 0 < int(key) && int(key) <= 65535)" => {
            keys().all(|k| k.parse::<i64>().is_ok_and(|p| 0 < p && p <= 65535))
        }
        "(has(self.valueFrom) ? self.valueFrom : \"\") != \"HOST\" || !has(self.value)" => {
            this.get("valueFrom").and_then(Value::as_str) != Some("HOST") || !has("value")
        }
        "(has(self.selector) ? 1 : 0) + (has(self.targetRef) ? 1 : 0) + (has(self.targetRefs) ? 1 : 0) <= 1" => {
            ["selector", "targetRef", "targetRefs"]
                .iter()
                .filter(|f| has(f))
                .count()
                <= 1
        }
        "has(self.portLevelMtls) ? (((has(self.selector) && has(self.selector.matchLabels)) ? self.selector.matchLabels : {}).size() > 0) : true" => {
            !has("portLevelMtls")
                || this["selector"]["matchLabels"]
                    .as_object()
                    .is_some_and(|m| !m.is_empty())
        }
        URL_RULE => {
            let url = this.as_str().unwrap_or_default();
            let allowed = |s: &str| ["", "http", "https", "oci", "file"].contains(&s);
            match go_request_uri_scheme(url) {
                Some(scheme) => allowed(&scheme),
                None => go_request_uri_scheme(&format!("http://{url}")).is_some_and(|s| allowed(&s)),
            }
        }
        _ => return None,
    })
}

/// Go's `time.ParseDuration` in nanoseconds: a sequence of decimal numbers with units
/// (`ns us µs ms s m h`), optional sign, or a bare `0`. `None` if malformed.
pub fn go_duration_nanos(s: &str) -> Option<i128> {
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..num_len];
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return None;
        }
        let value: f64 = num.parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    let ns = total as i128;
    Some(if neg { -ns } else { ns })
}

/// The scheme Go's `url.ParseRequestURI` gives `s` (lower-cased, `""` for an absolute
/// path), or `None` where it returns an error — Kubernetes CEL's `isURL` is that call.
/// Host syntax is checked only as far as Go rejects characters outright.
pub fn go_request_uri_scheme(s: &str) -> Option<String> {
    if s.bytes().any(|b| b < 0x20 || b == 0x7f || b == b' ') {
        return None;
    }
    let mut scheme = String::new();
    let mut rest = s;
    for (i, c) in s.char_indices() {
        if c.is_ascii_alphabetic() {
            continue;
        }
        if c.is_ascii_digit() || matches!(c, '+' | '-' | '.') {
            if i == 0 {
                break;
            }
            continue;
        }
        if c == ':' {
            if i == 0 {
                return None; // "missing protocol scheme"
            }
            scheme = s[..i].to_ascii_lowercase();
            rest = &s[i + 1..];
        }
        break;
    }
    if scheme.is_empty() {
        // No scheme: only an absolute path is a request URI.
        return rest.starts_with('/').then(String::new);
    }
    if let Some(after) = rest.strip_prefix("//") {
        let authority = after.split(['/', '?', '#']).next().unwrap_or_default();
        let host = authority.rsplit('@').next().unwrap_or_default();
        let ok = host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:[]%".contains(c));
        if !ok {
            return None;
        }
    }
    Some(scheme)
}

// ---- Kubernetes core kinds, by hand --------------------------------------------------

fn namespaced(kind: &str) -> bool {
    !matches!(
        kind,
        "Namespace" | "CustomResourceDefinition" | "ClusterRole" | "ClusterRoleBinding"
    )
}

type CoreCheck = fn(&Value, &mut Errors);

fn core_check(group: &str, version: &str, kind: &str) -> Option<CoreCheck> {
    Some(match (group, version, kind) {
        ("", "v1", "Namespace") => check_nothing,
        ("", "v1", "ServiceAccount") => check_nothing,
        ("", "v1", "Service") => check_service,
        ("apps", "v1", "Deployment") => check_deployment,
        ("", "v1", "Secret") => check_secret,
        _ => return None,
    })
}

fn check_nothing(_: &Value, _: &mut Errors) {}

fn dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(dns1123_label)
}

fn label_value(s: &str) -> bool {
    s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && (s.is_empty()
            || (s.as_bytes()[0].is_ascii_alphanumeric()
                && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()))
}

fn label_key(k: &str) -> bool {
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    prefix.is_none_or(dns1123_subdomain) && !name.is_empty() && label_value(name)
}

fn check_metadata(meta: &Value, namespaced: bool, errs: &mut Errors) {
    match meta["name"].as_str() {
        Some(n) if dns1123_subdomain(n) => {}
        Some(n) => errs.add(
            "/metadata/name",
            format!("{n:?} is not a DNS-1123 subdomain"),
        ),
        None => errs.add("/metadata", "missing required field \"name\""),
    }
    match meta["namespace"].as_str() {
        Some(ns) if !namespaced => errs.add(
            "/metadata/namespace",
            format!("cluster-scoped objects have no namespace ({ns:?})"),
        ),
        Some(ns) if !dns1123_label(ns) => errs.add(
            "/metadata/namespace",
            format!("{ns:?} is not a DNS-1123 label"),
        ),
        // Our manifests always name the namespace: `kubectl apply -f` into the current
        // context's namespace is how lab resources end up in the wrong place.
        None if namespaced => errs.add("/metadata", "missing \"namespace\" (state it explicitly)"),
        _ => {}
    }
    for (field, is_labels) in [("labels", true), ("annotations", false)] {
        for (k, v) in meta[field].as_object().into_iter().flatten() {
            let p = join(&format!("/metadata/{field}"), k);
            if !label_key(k) {
                errs.add(&p, format!("{k:?} is not a valid {field} key"));
            }
            match v.as_str() {
                Some(s) if is_labels && !label_value(s) => {
                    errs.add(&p, format!("{s:?} is not a valid label value"))
                }
                None => errs.add(&p, "must be a string"),
                _ => {}
            }
        }
    }
}

fn check_port(v: &Value, path: &str, errs: &mut Errors) {
    if !v.as_i64().is_some_and(|p| (1..=65535).contains(&p)) {
        errs.add(
            path,
            format!("{v} is not a port number between 1 and 65535"),
        );
    }
}

fn check_service(doc: &Value, errs: &mut Errors) {
    let ports = doc["spec"]["ports"].as_array();
    if ports.is_none_or(|p| p.is_empty()) && doc["spec"]["type"] != "ExternalName" {
        errs.add("/spec/ports", "a Service needs at least one port");
    }
    let mut names = BTreeSet::new();
    let many = ports.is_some_and(|p| p.len() > 1);
    for (i, p) in ports.into_iter().flatten().enumerate() {
        let path = format!("/spec/ports/{i}");
        check_port(&p["port"], &format!("{path}/port"), errs);
        match &p["targetPort"] {
            Value::Null => {}
            Value::String(name) if dns1123_label(name) && name.len() <= 15 => {}
            v @ Value::Number(_) => check_port(v, &format!("{path}/targetPort"), errs),
            v => errs.add(
                &format!("{path}/targetPort"),
                format!("{v} is neither a port number nor a port name"),
            ),
        }
        if let Some(proto) = p["protocol"].as_str() {
            if !["TCP", "UDP", "SCTP"].contains(&proto) {
                errs.add(
                    &format!("{path}/protocol"),
                    format!("unsupported protocol {proto:?}"),
                );
            }
        }
        match p["name"].as_str() {
            Some(n) if !names.insert(n.to_string()) => {
                errs.add(&format!("{path}/name"), "duplicate port name")
            }
            None if many => errs.add(&path, "every port needs a name when there are several"),
            _ => {}
        }
    }
    for (k, v) in doc["spec"]["selector"].as_object().into_iter().flatten() {
        if !label_key(k) || !v.as_str().is_some_and(label_value) {
            errs.add(&join("/spec/selector", k), "invalid selector label");
        }
    }
}

fn check_deployment(doc: &Value, errs: &mut Errors) {
    let spec = &doc["spec"];
    let selector = spec["selector"]["matchLabels"].as_object();
    let labels = spec["template"]["metadata"]["labels"].as_object();
    match (selector, labels) {
        (Some(sel), Some(labels)) if !sel.is_empty() => {
            for (k, v) in sel {
                if labels.get(k) != Some(v) {
                    errs.add(
                        "/spec/selector/matchLabels",
                        format!("selector {k}={v} does not match the pod template's labels"),
                    );
                }
            }
        }
        _ => errs.add("/spec/selector", "apps/v1 Deployments need spec.selector.matchLabels matching spec.template.metadata.labels"),
    }
    if let Some(r) = spec.get("replicas") {
        if r.as_i64().is_none_or(|r| r < 0) {
            errs.add("/spec/replicas", "must be a non-negative integer");
        }
    }
    let containers = spec["template"]["spec"]["containers"].as_array();
    if containers.is_none_or(|c| c.is_empty()) {
        errs.add(
            "/spec/template/spec/containers",
            "at least one container is required",
        );
    }
    for (i, c) in containers.into_iter().flatten().enumerate() {
        let path = format!("/spec/template/spec/containers/{i}");
        if !c["name"].as_str().is_some_and(dns1123_label) {
            errs.add(
                &format!("{path}/name"),
                "a container needs a DNS-1123 label name",
            );
        }
        if c["image"].as_str().is_none_or(str::is_empty) {
            errs.add(&format!("{path}/image"), "a container needs an image");
        }
        if let Some(pp) = c["imagePullPolicy"].as_str() {
            if !["Always", "IfNotPresent", "Never"].contains(&pp) {
                errs.add(
                    &format!("{path}/imagePullPolicy"),
                    format!("unsupported value {pp:?}"),
                );
            }
        }
        for (j, p) in c["ports"].as_array().into_iter().flatten().enumerate() {
            check_port(
                &p["containerPort"],
                &format!("{path}/ports/{j}/containerPort"),
                errs,
            );
        }
    }
}

fn check_secret(doc: &Value, errs: &mut Errors) {
    for field in ["data", "stringData"] {
        for (k, v) in doc[field].as_object().into_iter().flatten() {
            let key_ok = !k.is_empty()
                && k.len() <= 253
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
            if !key_ok {
                errs.add(&join(&format!("/{field}"), k), "invalid Secret key");
            }
            if !v.is_string() {
                errs.add(&join(&format!("/{field}"), k), "must be a string");
            }
        }
    }
}
