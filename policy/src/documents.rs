//! Raw documents for readers that need fields `policy`'s model leaves out (a
//! Pod's `status.podIP` for `peerauth readiness`): the same YAML-stream-or-JSON
//! reading as [`crate::source::load`], with the same work limits, but the
//! values kept as they are and `kind: List` (`kubectl get -o yaml`) flattened.

use crate::source::Limits;
use crate::yaml::{self, Budget, TreeError};
use serde_json::Value;

/// Every document of `text` (YAML stream, or JSON when the first non-blank
/// character is `{` or `[`), with the `items` of `List` documents in place of
/// the list. `Err` is a one-line reason with its 1-based line when known.
pub fn values(text: &str) -> Result<Vec<Value>, String> {
    let limits = Limits::default();
    if text.len() > limits.max_bytes {
        return Err(format!("larger than {} bytes", limits.max_bytes));
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut docs = Vec::new();
    if matches!(text.trim_start().chars().next(), Some('{' | '[')) {
        let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
        for v in &mut stream {
            docs.push(v.map_err(|e| format!("invalid JSON: {e}"))?);
        }
    } else {
        let mut budget = Budget {
            nodes: 0,
            max_nodes: limits.max_nodes.max(text.len()),
            max_depth: limits.max_depth,
        };
        for tree in yaml::parse_chunk(text, 0, &mut budget) {
            match tree {
                Ok(t) => docs.push(t.value),
                Err(TreeError::Syntax { line, message }) => {
                    return Err(format!("invalid YAML at line {line}: {message}"))
                }
                Err(TreeError::Limit { line, what }) => {
                    return Err(format!(
                        "input exceeds a safety limit at line {line} ({what})"
                    ))
                }
            }
        }
    }
    let mut out = Vec::new();
    for doc in docs {
        flatten(doc, &mut out);
    }
    Ok(out)
}

fn flatten(doc: Value, out: &mut Vec<Value>) {
    match doc {
        Value::Array(items) => items.into_iter().for_each(|i| flatten(i, out)),
        Value::Object(mut map)
            if map
                .get("kind")
                .and_then(Value::as_str)
                .is_some_and(|k| k.ends_with("List"))
                && matches!(map.get("items"), Some(Value::Array(_))) =>
        {
            if let Some(Value::Array(items)) = map.remove("items") {
                items.into_iter().for_each(|i| flatten(i, out));
            }
        }
        Value::Null => {}
        other => out.push(other),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::values;

    #[test]
    fn lists_in_yaml_and_json_are_flattened_and_fields_are_kept() {
        let yaml = "apiVersion: v1\nkind: List\nitems:\n- kind: Pod\n  metadata: {name: a}\n  status: {podIP: 10.0.0.1}\n---\nkind: Namespace\nmetadata: {name: foo}\n";
        let v = values(yaml).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0]["status"]["podIP"], "10.0.0.1");
        let json = r#"{"kind":"PodList","items":[{"kind":"Pod","status":{"podIP":"10.0.0.2"}}]}"#;
        assert_eq!(values(json).unwrap()[0]["status"]["podIP"], "10.0.0.2");
        assert!(values("a: [")
            .unwrap_err()
            .starts_with("invalid YAML at line"));
    }
}
