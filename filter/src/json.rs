//! A JSON reader for the pluginConfig: the syntax only, into a small tree that
//! `config` walks field by field.
//!
//! Why not serde_json: its generic deserialiser is instantiated once per
//! pluginConfig type and brings float formatting for its error messages; with
//! serde it was about a third of the wasm module, for a document read once per
//! configuration. The rules (which fields exist, what a mode or a port is) stay
//! in `config` and `policy`; this module only knows JSON (RFC 8259).

use std::fmt;

/// A JSON value. A number keeps its literal: `config` decides what it accepts
/// (a whole number of milliseconds), so no float parsing enters the module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Json {
    Null,
    Bool(bool),
    Number(String),
    String(String),
    Array(Vec<Json>),
    /// Members in document order; a key appears at most once.
    Object(Vec<(String, Json)>),
}

impl Json {
    /// What the value is, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "a boolean",
            Json::Number(_) => "a number",
            Json::String(_) => "a string",
            Json::Array(_) => "an array",
            Json::Object(_) => "an object",
        }
    }
}

/// Why a text is not JSON, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonError {
    pub what: &'static str,
    /// Byte offset into the text.
    pub at: usize,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.what, self.at)
    }
}

/// Nesting deeper than this is refused, so a hostile config cannot exhaust
/// the VM's stack (a pluginConfig nests five levels at most).
pub const MAX_DEPTH: usize = 64;

/// Parse one JSON document (whitespace around it allowed).
pub fn parse(text: &[u8]) -> Result<Json, JsonError> {
    // Checked once here, so every string slice below is valid UTF-8.
    if let Err(e) = std::str::from_utf8(text) {
        return Err(JsonError {
            what: "invalid UTF-8",
            at: e.valid_up_to(),
        });
    }
    let mut r = Reader { b: text, i: 0 };
    let v = r.value(0)?;
    r.ws();
    if r.i < r.b.len() {
        return Err(r.err("trailing characters"));
    }
    Ok(v)
}

struct Reader<'a> {
    b: &'a [u8],
    i: usize,
}

impl Reader<'_> {
    fn err(&self, what: &'static str) -> JsonError {
        JsonError { what, at: self.i }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json, JsonError> {
        self.ws();
        match self.peek() {
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => self.string().map(Json::String),
            Some(b't') => self.literal(b"true", Json::Bool(true)),
            Some(b'f') => self.literal(b"false", Json::Bool(false)),
            Some(b'n') => self.literal(b"null", Json::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.err("expected a value")),
            None => Err(self.err("unexpected end of input")),
        }
    }

    fn literal(&mut self, word: &[u8], v: Json) -> Result<Json, JsonError> {
        if self.b.get(self.i..self.i + word.len()) == Some(word) {
            self.i += word.len();
            Ok(v)
        } else {
            Err(self.err("expected a value"))
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> Result<Json, JsonError> {
        let start = self.i;
        self.eat(b'-');
        if !self.eat(b'0') && self.digits() == 0 {
            return Err(self.err("invalid number"));
        }
        if self.eat(b'.') && self.digits() == 0 {
            return Err(self.err("invalid number"));
        }
        if self.eat(b'e') || self.eat(b'E') {
            if !self.eat(b'+') {
                self.eat(b'-');
            }
            if self.digits() == 0 {
                return Err(self.err("invalid number"));
            }
        }
        // ASCII digits and signs only: always a valid str.
        let literal = self
            .b
            .get(start..self.i)
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or_default();
        Ok(Json::Number(literal.to_string()))
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let mut v = 0;
        for _ in 0..4 {
            let d = match self.peek() {
                Some(c @ b'0'..=b'9') => c - b'0',
                Some(c @ b'a'..=b'f') => c - b'a' + 10,
                Some(c @ b'A'..=b'F') => c - b'A' + 10,
                _ => return Err(self.err("invalid \\u escape")),
            };
            v = v * 16 + u32::from(d);
            self.i += 1;
        }
        Ok(v)
    }

    fn string(&mut self) -> Result<String, JsonError> {
        self.i += 1; // the opening quote
        let mut out = Vec::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(self.err("unterminated string"));
            };
            self.i += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let Some(e) = self.peek() else {
                        return Err(self.err("unterminated string"));
                    };
                    self.i += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode_escape()?,
                        _ => return Err(self.err("invalid escape")),
                    };
                    let mut buf = [0; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                0..=0x1f => return Err(self.err("control character in string")),
                _ => out.push(c),
            }
        }
        // Whole UTF-8 sequences from a valid text plus encoded chars: valid.
        String::from_utf8(out).map_err(|_| self.err("invalid UTF-8"))
    }

    fn unicode_escape(&mut self) -> Result<char, JsonError> {
        let hi = self.hex4()?;
        let code = match hi {
            0xd800..=0xdbff => {
                if !(self.eat(b'\\') && self.eat(b'u')) {
                    return Err(self.err("unpaired surrogate in \\u escape"));
                }
                let lo = self.hex4()?;
                if !(0xdc00..=0xdfff).contains(&lo) {
                    return Err(self.err("unpaired surrogate in \\u escape"));
                }
                0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00)
            }
            0xdc00..=0xdfff => return Err(self.err("unpaired surrogate in \\u escape")),
            _ => hi,
        };
        char::from_u32(code).ok_or_else(|| self.err("invalid \\u escape"))
    }

    fn array(&mut self, depth: usize) -> Result<Json, JsonError> {
        if depth > MAX_DEPTH {
            return Err(self.err("nested too deeply"));
        }
        self.i += 1;
        let mut items = Vec::new();
        self.ws();
        if self.eat(b']') {
            return Ok(Json::Array(items));
        }
        loop {
            items.push(self.value(depth)?);
            self.ws();
            if self.eat(b']') {
                return Ok(Json::Array(items));
            }
            if !self.eat(b',') {
                return Err(self.err("expected `,` or `]`"));
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<Json, JsonError> {
        if depth > MAX_DEPTH {
            return Err(self.err("nested too deeply"));
        }
        self.i += 1;
        let mut members: Vec<(String, Json)> = Vec::new();
        self.ws();
        if self.eat(b'}') {
            return Ok(Json::Object(members));
        }
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return Err(self.err("expected a string key"));
            }
            let at = self.i;
            let key = self.string()?;
            // A repeated key is refused rather than one copy silently winning.
            if members.iter().any(|(k, _)| *k == key) {
                return Err(JsonError {
                    what: "duplicate key",
                    at,
                });
            }
            self.ws();
            if !self.eat(b':') {
                return Err(self.err("expected `:`"));
            }
            let v = self.value(depth)?;
            members.push((key, v));
            self.ws();
            if self.eat(b'}') {
                return Ok(Json::Object(members));
            }
            if !self.eat(b',') {
                return Err(self.err("expected `,` or `}`"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// Accepted exactly where serde_json accepts a document (its duplicate-key
    /// behaviour aside, tested below).
    #[test]
    fn accepts_and_refuses_the_same_texts_as_serde_json() {
        let texts: &[&str] = &[
            "{}",
            " {\"a\" : [1, -2.5e+3, 0, true, false, null, \"x\"]}\n",
            r#"{"s":"\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00"}"#,
            "{\"é\":\"ü\"}",
            "[]",
            "\"str\"",
            "0",
            "-0.0e-0",
            "",
            "   ",
            "{",
            "{\"a\"}",
            "{\"a\":}",
            "{\"a\":1,}",
            "[1,]",
            "[1 2]",
            "{a:1}",
            "{'a':1}",
            "01",
            "1.",
            ".5",
            "-",
            "1e",
            "+1",
            "tru",
            "nul",
            "NaN",
            "\"\\x\"",
            "\"\\u12\"",
            "\"\\ud800\"",
            "\"\\udc00\"",
            "\"\\ud800\\u0041\"",
            "\"tab\there\"",
            "\"unterminated",
            "{} {}",
            "{}x",
            "[[[[]]]]",
        ];
        for t in texts {
            let ours = parse(t.as_bytes());
            let theirs = serde_json::from_str::<serde_json::Value>(t);
            assert_eq!(
                ours.is_ok(),
                theirs.is_ok(),
                "{t:?}: {ours:?} vs {theirs:?}"
            );
            if let (Ok(Json::Object(m)), Ok(serde_json::Value::Object(n))) = (&ours, &theirs) {
                assert_eq!(m.len(), n.len(), "{t:?}");
            }
        }
        let s = parse(br#""\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00""#).unwrap();
        assert_eq!(s, Json::String("\"\\/\u{8}\u{c}\n\r\té😀".into()));
    }

    #[test]
    fn a_repeated_key_invalid_utf8_and_deep_nesting_are_refused_without_a_panic() {
        assert_eq!(
            parse(br#"{"a":1,"a":2}"#).unwrap_err().what,
            "duplicate key"
        );
        assert_eq!(parse(b"\"\xff\"").unwrap_err().what, "invalid UTF-8");
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert_eq!(
            parse(deep.as_bytes()).unwrap_err().what,
            "nested too deeply"
        );
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(parse(ok.as_bytes()).is_ok());
        let hostile = "{\"a\":".repeat(100_000);
        assert!(parse(hostile.as_bytes()).is_err());
    }

    #[test]
    fn members_keep_document_order_and_errors_say_where() {
        let v = parse(br#"{"b":1,"a":{"c":[]}}"#).unwrap();
        let Json::Object(m) = v else { panic!() };
        assert_eq!(
            m.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            ["b", "a"]
        );
        assert_eq!(
            parse(b"{not json").unwrap_err().to_string(),
            "expected a string key at byte 1"
        );
    }
}
