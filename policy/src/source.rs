//! Reading multi-document YAML and JSON (including Kubernetes `List`) into
//! located [`Resource`]s, with line numbers, never panicking, and with bounded
//! work on hostile input (alias expansion, nesting depth, size).
//!
//! `load` never fails as a whole: every problem becomes a [`LoadError`] with a
//! location, and the other documents are still returned. Which Kubernetes kinds
//! become which resources is the `kinds` module's job.

use crate::diagnostic::{self as rules, Diagnostic, Location, Rule};
use crate::kinds;
use crate::model::{Located, Resource};
use crate::yaml::{self, Budget, TreeError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Work bounds for one `load` call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_bytes: usize,
    pub max_documents: usize,
    pub max_depth: usize,
    /// Total nodes built, counting every alias expansion (billion laughs stops
    /// here). A text longer than this many bytes may build one node per byte
    /// instead: YAML without aliases never has more nodes than bytes, so a
    /// whole cluster's dump still loads while alias expansion stays bounded
    /// by the input's size.
    pub max_nodes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            // Room for `kubectl get -A -o yaml` of a 50,000-pod cluster (issue 18).
            max_bytes: 256 << 20,
            max_documents: 1_000_000,
            max_depth: 64,
            max_nodes: 1_000_000,
        }
    }
}

/// A document that could not be read. Each maps to a diagnostic with a stable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum LoadError {
    #[error("{location_text}: invalid YAML: {message}")]
    Yaml {
        location: Location,
        location_text: String,
        message: String,
    },
    #[error("{location_text}: invalid JSON: {message}")]
    Json {
        location: Location,
        location_text: String,
        message: String,
    },
    #[error("{location_text}: input exceeds a safety limit ({what}); split the file or remove YAML aliases")]
    Limit {
        location: Location,
        location_text: String,
        what: String,
    },
    #[error("{location_text}: document has no `kind`; add `kind:` and `apiVersion:`")]
    MissingKind {
        location: Location,
        location_text: String,
    },
    #[error("{location_text}: {kind} does not have the expected shape: {message}")]
    Shape {
        location: Location,
        location_text: String,
        kind: String,
        message: String,
    },
}

/// A document of a kind peerauth does not model (counted, not an error).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    pub kind: String,
    pub location: Location,
}

/// Everything read from one text.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Loaded {
    pub resources: Vec<Located<Resource>>,
    pub skipped: Vec<Skipped>,
    pub errors: Vec<LoadError>,
}

impl LoadError {
    /// Where the problem is.
    pub fn location(&self) -> &Location {
        match self {
            Self::Yaml { location, .. }
            | Self::Json { location, .. }
            | Self::Limit { location, .. }
            | Self::MissingKind { location, .. }
            | Self::Shape { location, .. } => location,
        }
    }

    /// The rule this error reports (`input-yaml`, `input-json`, `input-limit`,
    /// `input-missing-kind`, `input-shape`).
    pub fn rule(&self) -> &'static Rule {
        match self {
            Self::Yaml { .. } => &rules::INPUT_YAML,
            Self::Json { .. } => &rules::INPUT_JSON,
            Self::Limit { .. } => &rules::INPUT_LIMIT,
            Self::MissingKind { .. } => &rules::INPUT_MISSING_KIND,
            Self::Shape { .. } => &rules::INPUT_SHAPE,
        }
    }

    /// The stable diagnostic code.
    pub fn code(&self) -> &'static str {
        self.rule().code
    }

    /// The error as a diagnostic (severity error, code `input-*`).
    pub fn to_diagnostic(&self) -> Diagnostic {
        let (message, hint) = match self {
            Self::Yaml { message, .. } => (
                format!("invalid YAML: {message}"),
                "fix the YAML syntax at this line",
            ),
            Self::Json { message, .. } => (
                format!("invalid JSON: {message}"),
                "fix the JSON syntax at this line",
            ),
            Self::Limit { what, .. } => (
                format!("input exceeds a safety limit ({what})"),
                "split the file, reduce nesting or remove YAML aliases",
            ),
            Self::MissingKind { .. } => (
                "document has no `kind`".to_string(),
                "add `apiVersion:` and `kind:` to the document",
            ),
            Self::Shape { kind, message, .. } => (
                format!("{kind} does not have the expected shape: {message}"),
                "compare the field with the Kubernetes/Istio reference and fix its type",
            ),
        };
        self.rule()
            .diagnostic(message, hint)
            .at(self.location().clone())
    }
}

/// Read `text` (YAML stream or JSON, detected by content) named `source` in locations.
///
/// Never fails as a whole: unreadable documents become [`LoadError`]s and the
/// others are still returned. JSON is chosen when the first non-blank character
/// is `{` or `[`; JSON values get the same per-field line numbers as YAML.
pub fn load(text: &str, source: &str) -> Loaded {
    load_with(text, source, &Limits::default())
}

/// [`load`] with explicit limits.
pub fn load_with(text: &str, source: &str, limits: &Limits) -> Loaded {
    let mut ctx = Ctx::new(source, limits, text.len());
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.len() > limits.max_bytes {
        let what = format!("{} bytes, more than {}", text.len(), limits.max_bytes);
        let location = ctx.location(1, 0);
        ctx.out.errors.push(LoadError::Limit {
            location_text: location_text(&location),
            location,
            what,
        });
        return ctx.out;
    }
    if matches!(text.trim_start().chars().next(), Some('{' | '[')) {
        ctx.load_json(text);
        // `{kind: Namespace}` is YAML flow syntax, not JSON: when JSON fails
        // but the same text is clean YAML, it was YAML.
        if ctx
            .out
            .errors
            .iter()
            .any(|e| matches!(e, LoadError::Json { .. }))
        {
            let yaml = load_yaml_only(text, source, limits);
            if yaml.errors.is_empty() {
                return yaml;
            }
        }
    } else {
        ctx.load_yaml(text);
    }
    ctx.out
}

fn load_yaml_only(text: &str, source: &str, limits: &Limits) -> Loaded {
    let mut ctx = Ctx::new(source, limits, text.len());
    ctx.load_yaml(text);
    ctx.out
}

fn location_text(location: &Location) -> String {
    format!("{}:{}", location.source, location.line)
}

struct Ctx<'a> {
    source: &'a str,
    limits: &'a Limits,
    budget: Budget,
    out: Loaded,
    documents: usize,
}

/// One document (or List item) ready to be turned into a resource.
struct Doc {
    value: Value,
    line: u32,
    lines: BTreeMap<String, u32>,
    index: u32,
}

impl<'a> Ctx<'a> {
    fn new(source: &'a str, limits: &'a Limits, text_len: usize) -> Self {
        Ctx {
            source,
            limits,
            budget: Budget {
                nodes: 0,
                max_nodes: limits.max_nodes.max(text_len),
                max_depth: limits.max_depth,
            },
            out: Loaded::default(),
            documents: 0,
        }
    }

    fn location(&self, line: u32, document: u32) -> Location {
        Location {
            source: self.source.to_string(),
            line,
            document,
        }
    }

    fn error_limit(&mut self, line: u32, document: u32, what: String) {
        let location = self.location(line, document);
        self.out.errors.push(LoadError::Limit {
            location_text: location_text(&location),
            location,
            what,
        });
    }

    /// Count a document; `false` (after recording one error) once there are too many.
    fn next_document(&mut self, line: u32) -> Option<u32> {
        let index = self.documents;
        self.documents = self.documents.saturating_add(1);
        if index == self.limits.max_documents {
            let what = format!("more than {} documents", self.limits.max_documents);
            self.error_limit(line, u32::try_from(index).unwrap_or(u32::MAX), what);
        }
        if index >= self.limits.max_documents {
            return None;
        }
        Some(u32::try_from(index).unwrap_or(u32::MAX))
    }

    fn load_yaml(&mut self, text: &str) {
        // A syntax error found at end of input points at the last line, not past it.
        let last_line = u32::try_from(text.lines().count())
            .unwrap_or(u32::MAX)
            .max(1);
        for (line_offset, chunk) in split_documents(text) {
            if self.documents > self.limits.max_documents {
                return;
            }
            for result in yaml::parse_chunk(chunk, line_offset, &mut self.budget) {
                let line = match &result {
                    Ok(tree) => tree.line,
                    Err(TreeError::Syntax { line, .. } | TreeError::Limit { line, .. }) => *line,
                };
                let Some(index) = self.next_document(line) else {
                    return;
                };
                match result {
                    Ok(tree) => self.document(Doc {
                        value: tree.value,
                        line: tree.line,
                        lines: tree.lines,
                        index,
                    }),
                    Err(TreeError::Syntax { line, message }) => {
                        let location = self.location(line.min(last_line), index);
                        self.out.errors.push(LoadError::Yaml {
                            location_text: location_text(&location),
                            location,
                            message,
                        });
                    }
                    Err(TreeError::Limit { line, what }) => self.error_limit(line, index, what),
                }
            }
        }
    }

    fn load_json(&mut self, text: &str) {
        let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
        loop {
            let start = stream.byte_offset();
            let next = stream.next();
            let end = stream.byte_offset();
            let prefix = text.get(..start).unwrap_or("");
            let value_text = text.get(start..end).unwrap_or("");
            let skipped = value_text.len() - value_text.trim_start().len();
            let first_line = line_at(text, start.saturating_add(skipped));
            match next {
                None => return,
                Some(Err(e)) => {
                    let last_line = u32::try_from(text.lines().count())
                        .unwrap_or(u32::MAX)
                        .max(1);
                    let line = u32::try_from(e.line())
                        .unwrap_or(u32::MAX)
                        .clamp(1, last_line);
                    let index = u32::try_from(self.documents).unwrap_or(u32::MAX);
                    let location = self.location(line, index);
                    let message = strip_serde_position(&e.to_string());
                    self.out.errors.push(LoadError::Json {
                        location_text: location_text(&location),
                        location,
                        message,
                    });
                    return;
                }
                Some(Ok(value)) => {
                    let Some(index) = self.next_document(first_line) else {
                        return;
                    };
                    // JSON is YAML flow syntax, so the YAML builder recovers the
                    // field lines (and enforces the depth and node limits).
                    let offset = count_lines(prefix);
                    let trees = yaml::parse_chunk(value_text, offset, &mut self.budget);
                    match trees.into_iter().next() {
                        Some(Err(TreeError::Limit { line, what })) => {
                            self.error_limit(line, index, what)
                        }
                        Some(Ok(tree)) => self.document(Doc {
                            value,
                            line: tree.line.max(first_line),
                            lines: tree.lines,
                            index,
                        }),
                        _ => self.document(Doc {
                            value,
                            line: first_line,
                            lines: BTreeMap::new(),
                            index,
                        }),
                    }
                }
            }
        }
    }

    /// Turn one document (or List item) into a resource, a skip, or an error.
    fn document(&mut self, doc: Doc) {
        let Doc {
            mut value,
            line,
            lines,
            index,
        } = doc;
        strip_nulls(&mut value, 0);
        let location = self.location(line, index);
        match value {
            Value::Null => {}
            Value::Array(items) => self.items(items, &lines, "", index),
            Value::Object(mut map) => {
                let kind = match map.get("kind") {
                    Some(Value::String(k)) if !k.is_empty() => k.clone(),
                    _ => {
                        self.out.errors.push(LoadError::MissingKind {
                            location_text: location_text(&location),
                            location,
                        });
                        return;
                    }
                };
                if kind == "List"
                    || (kind.ends_with("List") && matches!(map.get("items"), Some(Value::Array(_))))
                {
                    match map.remove("items") {
                        Some(Value::Array(items)) => self.items(items, &lines, "/items", index),
                        None => {}
                        Some(_) => self.shape(location, &kind, "`items` must be a list".into()),
                    }
                    return;
                }
                let api_version = match map.get("apiVersion") {
                    Some(Value::String(v)) => v.clone(),
                    _ => String::new(),
                };
                match kinds::resource(&kind, api_version, map) {
                    Ok(Some(resource)) => {
                        // peerauth reads a WasmPlugin's attachment for the
                        // ambient checks but does not check the plugin, so
                        // it is still reported as skipped, as before.
                        if matches!(resource, Resource::WasmPlugin { .. }) {
                            self.out.skipped.push(Skipped {
                                kind: kind.clone(),
                                location: location.clone(),
                            });
                        }
                        let keep_all = matches!(
                            resource,
                            Resource::PeerAuthentication { .. } | Resource::DestinationRule { .. }
                        );
                        let mut field_lines = lines;
                        field_lines.retain(|path, _| {
                            !path.is_empty()
                                && (keep_all || path.bytes().filter(|&b| b == b'/').count() <= 3)
                        });
                        self.out.resources.push(Located {
                            value: resource,
                            location,
                            field_lines,
                        });
                    }
                    Ok(None) => self.out.skipped.push(Skipped { kind, location }),
                    Err(kinds::ShapeError { path, message }) => {
                        let line = lines.get(path).copied().unwrap_or(location.line);
                        self.shape(Location { line, ..location }, &kind, message)
                    }
                }
            }
            _ => self.shape(
                location,
                "document",
                "expected a mapping with `apiVersion` and `kind`".into(),
            ),
        }
    }

    fn shape(&mut self, location: Location, kind: &str, message: String) {
        self.out.errors.push(LoadError::Shape {
            location_text: location_text(&location),
            location,
            kind: kind.to_string(),
            message,
        });
    }

    fn items(
        &mut self,
        items: Vec<Value>,
        lines: &BTreeMap<String, u32>,
        prefix: &str,
        index: u32,
    ) {
        for (i, item) in items.into_iter().enumerate() {
            let item_prefix = format!("{prefix}/{i}");
            let mut item_lines = BTreeMap::new();
            for (path, line) in lines.range(item_prefix.clone()..) {
                let Some(rest) = path.strip_prefix(&item_prefix) else {
                    break;
                };
                if rest.is_empty() || rest.starts_with('/') {
                    item_lines.insert(rest.to_string(), *line);
                }
            }
            let line = item_lines.get("").copied().unwrap_or(1);
            self.document(Doc {
                value: item,
                line,
                lines: item_lines,
                index,
            });
        }
    }
}

/// serde_json appends " at line L column C"; the location carries that already.
fn strip_serde_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message.get(..i).unwrap_or(message).to_string(),
        None => message.to_string(),
    }
}

fn count_lines(text: &str) -> u32 {
    u32::try_from(text.bytes().filter(|&b| b == b'\n').count()).unwrap_or(u32::MAX)
}

/// 1-based line of byte offset `at`.
fn line_at(text: &str, at: usize) -> u32 {
    count_lines(text.get(..at).unwrap_or(text)).saturating_add(1)
}

/// Kubernetes treats `field: null` as an absent field; so do we, so that
/// `labels:` with nothing under it is not a type error.
fn strip_nulls(value: &mut Value, depth: usize) {
    if depth > 256 {
        return;
    }
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            for v in map.values_mut() {
                strip_nulls(v, depth + 1);
            }
        }
        Value::Array(items) => {
            for v in items {
                strip_nulls(v, depth + 1);
            }
        }
        _ => {}
    }
}

/// Split a YAML stream at `---` / `...` markers in column 0, so that a syntax
/// error in one document does not lose the documents after it. The YAML spec
/// forbids these markers inside content, so the split is exact.
fn split_documents(text: &str) -> Vec<(u32, &str)> {
    let mut chunks = Vec::new();
    let mut start = 0usize;
    let mut start_line = 0u32;
    let mut pos = 0usize;
    let mut line_no = 0u32;
    for line in text.split_inclusive('\n') {
        let is_marker = |m: &str| {
            line.strip_prefix(m)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r', '\n']))
        };
        let pending = text.get(start..pos).unwrap_or("");
        // Directives (`%YAML 1.2`) belong to the document their `---` starts.
        if is_marker("---") && pos > start && !only_directives(pending) {
            chunks.push((start_line, pending));
            start = pos;
            start_line = line_no;
        }
        pos += line.len();
        line_no = line_no.saturating_add(1);
        if is_marker("...") {
            chunks.push((start_line, text.get(start..pos).unwrap_or("")));
            start = pos;
            start_line = line_no;
        }
    }
    if pos > start {
        chunks.push((start_line, text.get(start..pos).unwrap_or("")));
    }
    chunks
}

/// Whether a chunk holds nothing but blank lines, comments and directives.
fn only_directives(chunk: &str) -> bool {
    chunk.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || l.starts_with('%')
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use std::time::{Duration, Instant};

    const MULTI: &str = "\
# leading comment
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: default
  namespace: foo
spec:
  mtls:
    mode: STRICT
---
# only a comment
---
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata:
  name: httpbin
  namespace: bar
spec:
  selector:
    matchLabels:
      app: httpbin
  portLevelMtls:
    80:
      mode: DISABLE
";

    #[test]
    fn multi_document_yaml_keeps_resource_and_field_lines() {
        let loaded = load(MULTI, "pa.yaml");
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        assert_eq!(loaded.resources.len(), 2);
        let first = &loaded.resources[0];
        assert_eq!((first.location.line, first.location.document), (2, 0));
        assert_eq!(first.field_lines["/spec/mtls/mode"], 9);
        assert_eq!(first.field_lines["/metadata/name"], 5);
        let second = &loaded.resources[1];
        assert_eq!(second.location.line, 13);
        assert_eq!(
            second.location.document, 2,
            "the comment-only document still counts"
        );
        assert_eq!(second.location.source, "pa.yaml");
        assert_eq!(second.field_lines["/spec/selector"], 19);
        assert_eq!(second.field_lines["/spec/portLevelMtls"], 22);
        assert_eq!(second.field_lines["/spec/portLevelMtls/80"], 23);
        assert_eq!(second.field_lines["/spec/portLevelMtls/80/mode"], 24);
        match &second.value {
            Resource::PeerAuthentication { spec, meta, .. } => {
                assert_eq!(meta.namespace.as_deref(), Some("bar"));
                assert_eq!(
                    spec.port_level_mtls.as_ref().unwrap()["80"].mode.as_deref(),
                    Some("DISABLE")
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn json_objects_get_field_lines() {
        let text = "\n{\n  \"apiVersion\": \"networking.istio.io/v1\",\n  \"kind\": \"DestinationRule\",\n  \"metadata\": {\"name\": \"d\", \"namespace\": \"bar\"},\n  \"spec\": {\n    \"host\": \"httpbin\",\n    \"trafficPolicy\": {\"tls\": {\"mode\": \"ISTIO_MUTUAL\"}}\n  }\n}\n";
        let loaded = load(text, "dr.json");
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        let dr = &loaded.resources[0];
        assert_eq!(dr.location.line, 2);
        assert_eq!(dr.field_lines["/spec/host"], 7);
        assert_eq!(dr.field_lines["/spec/trafficPolicy/tls/mode"], 8);
    }

    #[test]
    fn a_json_list_gives_each_item_its_own_line() {
        let text = r#"{
  "apiVersion": "v1",
  "kind": "List",
  "items": [
    {
      "apiVersion": "security.istio.io/v1",
      "kind": "PeerAuthentication",
      "metadata": {"name": "a", "namespace": "foo"},
      "spec": {"mtls": {"mode": "STRICT"}}
    },
    {
      "apiVersion": "v1",
      "kind": "Namespace",
      "metadata": {"name": "foo", "labels": {"istio-injection": "enabled"}}
    },
    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}
  ]
}"#;
        let loaded = load(text, "list.json");
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        assert_eq!(loaded.resources.len(), 2);
        assert_eq!(loaded.resources[0].location.line, 5);
        assert_eq!(loaded.resources[0].field_lines["/spec/mtls/mode"], 9);
        assert_eq!(loaded.resources[1].location.line, 11);
        assert_eq!(loaded.skipped.len(), 1);
        assert_eq!(loaded.skipped[0].kind, "ConfigMap");
        assert_eq!(loaded.skipped[0].location.line, 16);
    }

    #[test]
    fn a_yaml_list_and_a_json_array_are_read_item_by_item() {
        let yaml = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Namespace\n  metadata:\n    name: a\n- apiVersion: v1\n  kind: Namespace\n  metadata:\n    name: b\n";
        let loaded = load(yaml, "l.yaml");
        assert_eq!(loaded.resources.len(), 2);
        assert_eq!(loaded.resources[1].location.line, 8);
        let json = r#"[{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"a"}}]"#;
        assert_eq!(load(json, "a.json").resources.len(), 1);
    }

    #[test]
    fn invalid_yaml_reports_its_line_and_keeps_the_other_documents() {
        let text = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n---\nkind: [unclosed\nfoo: bar\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: c\n";
        let loaded = load(text, "bad.yaml");
        assert_eq!(loaded.resources.len(), 2, "{loaded:?}");
        assert_eq!(loaded.errors.len(), 1);
        match &loaded.errors[0] {
            LoadError::Yaml { location, .. } => {
                assert!((6..=8).contains(&location.line), "{location:?}");
                assert_eq!(location.document, 1);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(loaded.resources[1].location.document, 2);
        assert_eq!(loaded.errors[0].to_diagnostic().code, "input-yaml");
    }

    #[test]
    fn yaml_flow_syntax_that_is_not_json_is_read_as_yaml() {
        let loaded = load("{kind: Namespace, metadata: {name: a}}\n", "flow.yaml");
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        assert_eq!(loaded.resources.len(), 1);
    }

    #[test]
    fn invalid_json_reports_its_line() {
        let loaded = load(
            "{\n  \"kind\": \"Namespace\",\n  \"metadata\": {\n}\n",
            "bad.json",
        );
        match &loaded.errors[..] {
            [LoadError::Json {
                location, message, ..
            }] => {
                assert_eq!(location.line, 4, "end of input points at the last line");
                assert!(!message.contains(" at line "), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn billion_laughs_hits_the_node_limit_quickly() {
        let mut text = String::from(
            "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
        );
        let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"];
        for w in names.windows(2) {
            let (prev, next) = (w[0], w[1]);
            let refs = vec![format!("*{prev}"); 9].join(",");
            text.push_str(&format!("{next}: &{next} [{refs}]\n"));
        }
        text.push_str("kind: Namespace\n");
        let start = Instant::now();
        let loaded = load(&text, "lol.yaml");
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "took {:?}",
            start.elapsed()
        );
        assert!(
            matches!(loaded.errors.as_slice(), [LoadError::Limit { .. }]),
            "{:?}",
            loaded.errors
        );
        assert!(loaded.resources.is_empty());
        assert_eq!(loaded.errors[0].to_diagnostic().code, "input-limit");
    }

    #[test]
    fn deep_nesting_is_bounded_for_yaml_and_json() {
        let deep_flow = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let loaded = load(&format!("a: {deep_flow}"), "deep.yaml");
        assert!(
            matches!(loaded.errors.as_slice(), [LoadError::Limit { .. }]),
            "{:?}",
            loaded.errors
        );
        let loaded = load(&deep_flow, "deep.json");
        assert!(
            matches!(
                loaded.errors.as_slice(),
                [LoadError::Json { .. } | LoadError::Limit { .. }]
            ),
            "{:?}",
            loaded.errors
        );
        let mut block = String::new();
        for depth in 0..200 {
            block.push_str(&" ".repeat(depth));
            block.push_str("k:\n");
        }
        let loaded = load(&block, "block.yaml");
        assert!(
            matches!(loaded.errors.as_slice(), [LoadError::Limit { .. }]),
            "{:?}",
            loaded.errors
        );
        let json_70 = format!("{}{}", "[".repeat(70), "]".repeat(70));
        assert!(matches!(
            load(&json_70, "j.json").errors.as_slice(),
            [LoadError::Limit { .. }]
        ));
    }

    #[test]
    fn size_and_document_limits_apply() {
        let limits = Limits {
            max_bytes: 10,
            ..Limits::default()
        };
        let loaded = load_with("apiVersion: v1\nkind: Namespace\n", "big.yaml", &limits);
        assert!(matches!(
            loaded.errors.as_slice(),
            [LoadError::Limit { .. }]
        ));
        let limits = Limits {
            max_documents: 2,
            ..Limits::default()
        };
        let text = "kind: Namespace\nmetadata: {name: a}\n---\nkind: Namespace\nmetadata: {name: b}\n---\nkind: Namespace\nmetadata: {name: c}\n---\nkind: Namespace\n";
        let loaded = load_with(text, "many.yaml", &limits);
        assert_eq!(loaded.resources.len(), 2);
        assert_eq!(loaded.errors.len(), 1, "{:?}", loaded.errors);
    }

    #[test]
    fn missing_kind_unknown_kind_empty_documents_and_bad_shapes() {
        let text = "---\n---\n# nothing\n---\nmetadata:\n  name: x\n---\napiVersion: v1\nkind: Secret\n---\nkind: Service\nspec:\n  ports: 5\n---\n- 1\n- 2\n---\nplain scalar\n";
        let loaded = load(text, "mixed.yaml");
        let codes: Vec<&str> = loaded.errors.iter().map(LoadError::code).collect();
        // A top-level sequence is read as a list of resources: two bad items, then the scalar.
        assert_eq!(
            codes,
            [
                "input-missing-kind",
                "input-shape",
                "input-shape",
                "input-shape",
                "input-shape"
            ],
            "{:?}",
            loaded.errors
        );
        assert_eq!(loaded.errors[0].location().line, 5);
        assert_eq!(loaded.skipped.len(), 1);
        assert_eq!(loaded.skipped[0].kind, "Secret");
    }

    #[test]
    fn a_yaml_directive_stays_with_its_document() {
        let text = "%YAML 1.2\n---\nkind: Namespace\nmetadata:\n  name: a\n---\nkind: Namespace\nmetadata:\n  name: b\n";
        let loaded = load(text, "d.yaml");
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        assert_eq!(loaded.resources.len(), 2);
        assert_eq!(loaded.resources[0].location.line, 3);
        assert_eq!(loaded.resources[1].location.document, 1);
    }

    #[test]
    fn null_fields_count_as_absent() {
        let text = "kind: Namespace\nmetadata:\n  name: a\n  labels:\n";
        let loaded = load(text, "n.yaml");
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    }

    #[test]
    fn a_byte_order_mark_and_crlf_line_ends_are_accepted() {
        let text = "\u{feff}kind: Namespace\r\nmetadata:\r\n  name: a\r\n---\r\nkind: Namespace\r\nmetadata:\r\n  name: b\r\n";
        let loaded = load(text, "crlf.yaml");
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        assert_eq!(loaded.resources.len(), 2);
        assert_eq!(loaded.resources[1].location.line, 5);
    }

    mod never_panics {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn load_never_panics_on_arbitrary_text(text in "\\PC{0,400}") {
                let _ = load(&text, "p");
            }

            #[test]
            fn load_never_panics_on_yaml_like_text(
                parts in proptest::collection::vec(
                    prop_oneof![
                        Just("kind: PeerAuthentication\n"), Just("---\n"), Just("  "), Just("- "), Just(": "),
                        Just("&a "), Just("*a "), Just("["), Just("]"), Just("{"), Just("}"), Just("\""),
                        Just("mode: STRICT\n"), Just("portLevelMtls:\n"), Just("80:"), Just("\n"), Just("..."),
                        Just("? "), Just("!!str "), Just("|\n"), Just("#"), Just("\t"), Just("items:\n"),
                    ],
                    0..60,
                )
            ) {
                let text: String = parts.concat();
                let _ = load(&text, "p");
                let _ = crate::check(&[("p", &text)], crate::MeshConfig::default());
            }
        }
    }
}
