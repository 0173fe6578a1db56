//! The JSON examples in `cli/README.md` must stay valid documents of the types
//! they describe, so the documentation cannot drift from the contract.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use peerauth_cli::json::{CheckDocument, DescribeDocument, MatrixDocument, VERSION};

fn json_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```json") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), l) => {
                block.push_str(l);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

#[test]
fn every_json_example_in_the_readme_parses_as_its_document_type() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let mut seen = Vec::new();
    for block in json_blocks(&readme) {
        let value: serde_json::Value =
            serde_json::from_str(&block).unwrap_or_else(|e| panic!("{e}:\n{block}"));
        assert_eq!(value["version"], VERSION);
        let command = value["command"].as_str().unwrap().to_string();
        match command.as_str() {
            "check" => drop(serde_json::from_value::<CheckDocument>(value).unwrap()),
            "describe" => drop(serde_json::from_value::<DescribeDocument>(value).unwrap()),
            "matrix" => drop(serde_json::from_value::<MatrixDocument>(value).unwrap()),
            other => panic!("unknown command {other}"),
        }
        seen.push(command);
    }
    seen.sort();
    assert_eq!(seen, ["check", "describe", "matrix"]);
}
