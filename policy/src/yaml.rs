//! A small YAML → `serde_json::Value` tree builder on top of `saphyr-parser`'s
//! event stream, recording the line of every node by JSON-pointer path.
//!
//! Why our own builder instead of `saphyr`'s loader: we need line numbers per
//! field, and we need to *charge* alias expansions against a node budget so a
//! billion-laughs document fails after at most `max_nodes` nodes of work
//! instead of exhausting memory.

use saphyr_parser::{Event, Parser, ScalarStyle, Span, Tag};
use serde_json::{Map, Number, Value};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

/// Why a chunk of YAML could not be turned into a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TreeError {
    /// Syntax (or unsupported construct) at a 1-based absolute line.
    Syntax { line: u32, message: String },
    /// A work bound was hit.
    Limit { line: u32, what: String },
}

/// One YAML document as a JSON value, with the line of each node.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Tree {
    pub value: Value,
    /// 1-based absolute line of the document's root node.
    pub line: u32,
    /// JSON pointer → 1-based absolute line (of the key, for mapping values).
    pub lines: BTreeMap<String, u32>,
}

/// Shared work counter for one `load` call.
#[derive(Debug)]
pub(crate) struct Budget {
    pub nodes: usize,
    pub max_nodes: usize,
    pub max_depth: usize,
}

impl Budget {
    fn charge(&mut self, n: usize, line: u32) -> Result<(), TreeError> {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > self.max_nodes {
            return Err(TreeError::Limit {
                line,
                what: format!(
                    "more than {} YAML nodes, counting alias expansions",
                    self.max_nodes
                ),
            });
        }
        Ok(())
    }
}

/// A finished node: its value, how many nodes it expands to and how deep it is.
struct Built {
    value: Value,
    size: usize,
    height: usize,
}

enum Container {
    Map {
        map: Map<String, Value>,
        key: Option<(String, u32)>,
    },
    Seq(Vec<Value>),
}

struct Frame {
    container: Container,
    path: String,
    anchor: usize,
    size: usize,
    height: usize,
}

/// Escape one JSON-pointer segment (RFC 6901).
pub(crate) fn pointer_segment(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b == b'~' || b == b'/') {
        Cow::Owned(s.replace('~', "~0").replace('/', "~1"))
    } else {
        Cow::Borrowed(s)
    }
}

fn line_of(span: &Span, offset: u32) -> u32 {
    u32::try_from(span.start.line())
        .unwrap_or(u32::MAX)
        .saturating_add(offset)
}

/// YAML 1.2 core schema resolution for a plain scalar.
fn resolve_plain(s: &str) -> Value {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if let Some(n) = parse_int(s) {
        return n;
    }
    if looks_like_float(s) {
        if let Ok(f) = s.parse::<f64>() {
            if let Some(n) = Number::from_f64(f) {
                return Value::Number(n);
            }
        }
    }
    Value::String(s.to_string())
}

fn parse_int(s: &str) -> Option<Value> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if digits.is_empty() {
        return None;
    }
    let (radix, body) = if let Some(h) = digits.strip_prefix("0x") {
        (16, h)
    } else if let Some(o) = digits.strip_prefix("0o") {
        (8, o)
    } else {
        (10, digits)
    };
    if body.is_empty() || !body.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    if radix != 10 && neg {
        return None;
    }
    let magnitude = u64::from_str_radix(body, radix).ok()?;
    if neg {
        let v = i64::try_from(magnitude).ok()?;
        Some(Value::Number(Number::from(-v)))
    } else {
        Some(Value::Number(Number::from(magnitude)))
    }
}

fn looks_like_float(s: &str) -> bool {
    let body = s.strip_prefix(['-', '+']).unwrap_or(s);
    !body.is_empty()
        && body
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+'))
        && body
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit() || c == '.')
        && body.chars().any(|c| c.is_ascii_digit())
}

fn scalar_value(text: Cow<'_, str>, style: ScalarStyle, tag: Option<&Tag>) -> Value {
    if let Some(tag) = tag {
        if tag.is_yaml_core_schema() {
            match tag.suffix.as_str() {
                "str" => return Value::String(text.into_owned()),
                "null" => return Value::Null,
                _ => {}
            }
        }
    }
    match style {
        ScalarStyle::Plain => resolve_plain(&text),
        _ => Value::String(text.into_owned()),
    }
}

fn key_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => Some(String::new()),
        _ => None,
    }
}

/// [`key_text`], taking the string instead of copying it.
fn into_key_text(v: Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s),
        other => key_text(&other),
    }
}

/// `parent/segment`, the JSON pointer of a child node.
fn child_path(parent: &str, segment: &str) -> String {
    let mut path = String::with_capacity(parent.len() + 1 + segment.len());
    path.push_str(parent);
    path.push('/');
    path.push_str(segment);
    path
}

/// Parse one chunk of YAML text (one or more documents) whose first line is
/// `line_offset + 1` of the whole input. Each document yields `Ok(Tree)` or an
/// error; a syntax error ends the chunk.
pub(crate) fn parse_chunk(
    text: &str,
    line_offset: u32,
    budget: &mut Budget,
) -> Vec<Result<Tree, TreeError>> {
    let mut out = Vec::new();
    let mut b = Builder {
        budget,
        line_offset,
        anchors: HashMap::new(),
        frames: Vec::new(),
        lines: BTreeMap::new(),
        root: None,
        root_line: 0,
        in_doc: false,
    };
    let mut parser = Parser::new_from_str(text);
    loop {
        let (event, span) = match parser.next_event() {
            None => break,
            Some(Ok(ev)) => ev,
            Some(Err(e)) => {
                let line = u32::try_from(e.marker().line())
                    .unwrap_or(u32::MAX)
                    .saturating_add(line_offset);
                // saphyr bounds flow nesting itself; report it as the limit it is.
                if e.info().contains("recursion limit") {
                    out.push(Err(TreeError::Limit {
                        line,
                        what: format!("nesting too deep ({})", e.info()),
                    }));
                } else {
                    out.push(Err(TreeError::Syntax {
                        line,
                        message: e.info().to_string(),
                    }));
                }
                return out;
            }
        };
        match event {
            Event::StreamEnd => break,
            Event::DocumentStart(_) => {
                b.start_document(line_of(&span, line_offset));
            }
            Event::DocumentEnd => {
                if let Some(tree) = b.finish_document() {
                    out.push(Ok(tree));
                }
            }
            other => {
                if let Err(e) = b.event(other, &span) {
                    out.push(Err(e));
                    return out;
                }
            }
        }
    }
    out
}

struct Builder<'b> {
    budget: &'b mut Budget,
    line_offset: u32,
    anchors: HashMap<usize, (Value, usize, usize)>,
    frames: Vec<Frame>,
    lines: BTreeMap<String, u32>,
    root: Option<Value>,
    root_line: u32,
    in_doc: bool,
}

impl Builder<'_> {
    fn start_document(&mut self, line: u32) {
        self.anchors.clear();
        self.frames.clear();
        self.lines.clear();
        self.root = None;
        self.root_line = line;
        self.in_doc = true;
    }

    fn finish_document(&mut self) -> Option<Tree> {
        if !self.in_doc {
            return None;
        }
        self.in_doc = false;
        let value = self.root.take().unwrap_or(Value::Null);
        Some(Tree {
            value,
            line: self.root_line,
            lines: std::mem::take(&mut self.lines),
        })
    }

    /// The path and line a new node at the current position gets. `None`
    /// means the node is a mapping key.
    fn position(&mut self, node_line: u32) -> Option<(String, u32)> {
        match self.frames.last() {
            None => {
                // The document's line is its root node's, not the `---` before it.
                self.root_line = node_line;
                Some((String::new(), node_line))
            }
            Some(frame) => match &frame.container {
                Container::Map {
                    key: Some((k, key_line)),
                    ..
                } => Some((child_path(&frame.path, &pointer_segment(k)), *key_line)),
                Container::Map { key: None, .. } => None,
                Container::Seq(items) => {
                    Some((child_path(&frame.path, &items.len().to_string()), node_line))
                }
            },
        }
    }

    fn event(&mut self, event: Event<'_>, span: &Span) -> Result<(), TreeError> {
        let line = line_of(span, self.line_offset);
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                self.budget.charge(1, line)?;
                let value = scalar_value(text, style, tag.as_deref());
                self.leaf(
                    Built {
                        value,
                        size: 1,
                        height: 1,
                    },
                    anchor,
                    line,
                )
            }
            Event::Alias(id) => {
                let Some((value, size, height)) = self.anchors.get(&id).cloned() else {
                    return Err(TreeError::Syntax {
                        line,
                        message: "alias to an unknown anchor".into(),
                    });
                };
                self.budget.charge(size, line)?;
                if self.frames.len().saturating_add(height) > self.budget.max_depth {
                    return Err(self.depth_error(line));
                }
                self.leaf(
                    Built {
                        value,
                        size,
                        height,
                    },
                    0,
                    line,
                )
            }
            Event::MappingStart(anchor, _) | Event::SequenceStart(anchor, _) => {
                let is_map = matches!(event, Event::MappingStart(..));
                self.budget.charge(1, line)?;
                if self.frames.len() >= self.budget.max_depth {
                    return Err(self.depth_error(line));
                }
                let Some((path, node_line)) = self.position(line) else {
                    return Err(TreeError::Syntax {
                        line,
                        message:
                            "mapping and sequence keys are not supported; use a plain string key"
                                .into(),
                    });
                };
                self.lines.insert(path.clone(), node_line);
                let container = if is_map {
                    Container::Map {
                        map: Map::new(),
                        key: None,
                    }
                } else {
                    Container::Seq(Vec::new())
                };
                self.frames.push(Frame {
                    container,
                    path,
                    anchor,
                    size: 1,
                    height: 1,
                });
                Ok(())
            }
            Event::MappingEnd | Event::SequenceEnd => {
                let Some(frame) = self.frames.pop() else {
                    return Err(TreeError::Syntax {
                        line,
                        message: "unbalanced collection end".into(),
                    });
                };
                let value = match frame.container {
                    Container::Map { map, .. } => Value::Object(map),
                    Container::Seq(items) => Value::Array(items),
                };
                self.finish(
                    Built {
                        value,
                        size: frame.size,
                        height: frame.height,
                    },
                    frame.anchor,
                )
            }
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart(_)
            | Event::DocumentEnd => Ok(()),
        }
    }

    fn depth_error(&self, line: u32) -> TreeError {
        TreeError::Limit {
            line,
            what: format!("nesting deeper than {} levels", self.budget.max_depth),
        }
    }

    /// A scalar or alias at the current position: either a mapping key or a value.
    fn leaf(&mut self, built: Built, anchor: usize, line: u32) -> Result<(), TreeError> {
        if let Some(Frame {
            container:
                Container::Map {
                    map,
                    key: key @ None,
                },
            ..
        }) = self.frames.last_mut()
        {
            let k = if anchor != 0 {
                let k = key_text(&built.value);
                self.anchors
                    .insert(anchor, (built.value, built.size, built.height));
                k
            } else {
                into_key_text(built.value)
            };
            let Some(k) = k else {
                return Err(TreeError::Syntax {
                    line,
                    message: "mapping keys must be scalars".into(),
                });
            };
            if map.contains_key(&k) {
                return Err(TreeError::Syntax {
                    line,
                    message: format!("duplicate key {k:?}; remove one of them"),
                });
            }
            *key = Some((k, line));
            return Ok(());
        }
        if let Some((path, node_line)) = self.position(line) {
            self.lines.insert(path, node_line);
        }
        self.finish(built, anchor)
    }

    /// Attach a finished value to its parent (or make it the document root).
    fn finish(&mut self, built: Built, anchor: usize) -> Result<(), TreeError> {
        if anchor != 0 {
            self.anchors
                .insert(anchor, (built.value.clone(), built.size, built.height));
        }
        match self.frames.last_mut() {
            None => {
                self.root = Some(built.value);
                Ok(())
            }
            Some(frame) => {
                frame.size = frame.size.saturating_add(built.size);
                frame.height = frame.height.max(built.height.saturating_add(1));
                match &mut frame.container {
                    Container::Map { map, key } => {
                        if let Some((k, _)) = key.take() {
                            map.insert(k, built.value);
                        }
                    }
                    Container::Seq(items) => items.push(built.value),
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn budget() -> Budget {
        Budget {
            nodes: 0,
            max_nodes: 10_000,
            max_depth: 16,
        }
    }

    #[test]
    fn plain_scalars_resolve_by_the_yaml_1_2_core_schema() {
        assert_eq!(resolve_plain("80"), Value::from(80u64));
        assert_eq!(resolve_plain("-3"), Value::from(-3i64));
        assert_eq!(resolve_plain("0x1F"), Value::from(31u64));
        assert_eq!(resolve_plain("true"), Value::Bool(true));
        assert_eq!(resolve_plain("yes"), Value::from("yes"));
        assert_eq!(resolve_plain("~"), Value::Null);
        assert_eq!(resolve_plain("1.5"), Value::from(1.5));
        assert_eq!(resolve_plain("1.2.3"), Value::from("1.2.3"));
        assert_eq!(resolve_plain("STRICT"), Value::from("STRICT"));
    }

    #[test]
    fn quoted_scalars_stay_strings() {
        let docs = parse_chunk("a: \"80\"\nb: '1'\nc: !!str 3\n", 0, &mut budget());
        let tree = docs[0].as_ref().unwrap();
        assert_eq!(tree.value["a"], Value::from("80"));
        assert_eq!(tree.value["b"], Value::from("1"));
        assert_eq!(tree.value["c"], Value::from("3"));
    }

    #[test]
    fn lines_are_recorded_per_pointer_with_the_offset() {
        let text = "spec:\n  portLevelMtls:\n    80:\n      mode: DISABLE\n  list:\n  - a\n  - b\n";
        let docs = parse_chunk(text, 10, &mut budget());
        let tree = docs[0].as_ref().unwrap();
        assert_eq!(tree.lines["/spec"], 11);
        assert_eq!(tree.lines["/spec/portLevelMtls"], 12);
        assert_eq!(tree.lines["/spec/portLevelMtls/80"], 13);
        assert_eq!(tree.lines["/spec/portLevelMtls/80/mode"], 14);
        assert_eq!(tree.lines["/spec/list/1"], 17);
    }

    #[test]
    fn aliases_are_expanded_and_charged() {
        let mut b = budget();
        let docs = parse_chunk("a: &x [1, 2, 3]\nb: *x\nc: *x\n", 0, &mut b);
        let tree = docs[0].as_ref().unwrap();
        assert_eq!(tree.value["c"], serde_json::json!([1, 2, 3]));
        // root 1 + a (4) + two expansions of 4.
        assert_eq!(b.nodes, 1 + 4 + 4 + 4 + 3);
    }

    #[test]
    fn duplicate_keys_are_rejected_with_their_line() {
        let docs = parse_chunk("a: 1\nb: 2\na: 3\n", 0, &mut budget());
        assert!(
            matches!(&docs[0], Err(TreeError::Syntax { line: 3, .. })),
            "{docs:?}"
        );
    }

    #[test]
    fn complex_keys_are_rejected() {
        let docs = parse_chunk("? [a]\n: 1\n", 0, &mut budget());
        assert!(
            matches!(&docs[0], Err(TreeError::Syntax { .. })),
            "{docs:?}"
        );
    }
}
