//! Envoy's `x-forwarded-client-cert` header: parse and serialize, typed, bounded,
//! never panicking (Envoy `conn_manager_utility.cc`; docs `http_conn_man/headers`).
//!
//! # Grammar accepted
//!
//! * Elements are separated by `,`, pairs inside an element by `;`, and every pair
//!   is `Key=Value`. Spaces or tabs before a key are skipped, so a header that an
//!   HTTP hop joined with `", "` still parses.
//! * Keys are `By`, `Hash`, `Cert`, `Chain`, `Subject`, `URI`, `DNS`, matched
//!   case-insensitively. `By`, `URI` and `DNS` may repeat; the others may appear
//!   once per element.
//! * A value is either bare (everything up to the next `;` or `,`; `=` is data) or
//!   double-quoted. Inside quotes `,` `;` `=` are data, `\"` is a quote and `\\` a
//!   backslash; any other backslash is kept as it is. That reads both the escaped
//!   form Envoy's docs describe and the unescaped form Envoy's code really writes
//!   (RFC 2253 subjects such as `CN=a\,b` keep their backslash). The one
//!   ambiguity: an RFC 2253 subject that itself contains `\\` or `\"` loses one
//!   backslash there.
//! * `Cert` and `Chain` are percent-decoded (`%XX`, either case); a `%` not
//!   followed by two hex digits, or bytes that are not UTF-8, are errors.
//! * `Hash` must be 64 hex digits; it is stored lowercase.
//! * ASCII control characters (other than tab) are rejected: a real header cannot
//!   carry them.
//!
//! Values are kept as written: Envoy's bare `URI=` (a peer without a URI SAN)
//! becomes `uri == [""]`, so that `parse(h)?.to_header() == h` for Envoy's own
//! headers. [`Element::peer_uris`] and [`Element::peer_dns`] skip those empties.
//!
//! # Bounds
//!
//! [`Limits`] are checked as the header is read: the length before anything else,
//! the element and pair counts the moment they are exceeded. Parsing is one pass
//! over the input plus one pass over each Cert/Chain value.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Work bounds for parsing an untrusted header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_len: usize,
    pub max_elements: usize,
    pub max_pairs_per_element: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_len: 64 * 1024,
            max_elements: 16,
            max_pairs_per_element: 64,
        }
    }
}

/// One proxy's element, in Envoy's key order.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Element {
    pub by: Vec<String>,
    /// Lowercase hex SHA-256 of the peer certificate (DER).
    pub hash: Option<String>,
    /// URL-decoded PEM of the peer certificate.
    pub cert: Option<String>,
    /// URL-decoded PEM chain.
    pub chain: Option<String>,
    pub subject: Option<String>,
    pub uri: Vec<String>,
    pub dns: Vec<String>,
}

/// A whole header: elements in order (the last one was appended by the nearest proxy).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Xfcc {
    pub elements: Vec<Element>,
}

/// The keys of an XFCC element, in the order Envoy writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Key {
    By,
    Hash,
    Cert,
    Chain,
    Subject,
    Uri,
    Dns,
}

impl Key {
    /// The spelling Envoy writes.
    pub fn as_str(self) -> &'static str {
        match self {
            Key::By => "By",
            Key::Hash => "Hash",
            Key::Cert => "Cert",
            Key::Chain => "Chain",
            Key::Subject => "Subject",
            Key::Uri => "URI",
            Key::Dns => "DNS",
        }
    }

    /// `None` for anything but the seven XFCC keys (compared case-insensitively).
    pub fn from_name(name: &str) -> Option<Key> {
        [
            Key::By,
            Key::Hash,
            Key::Cert,
            Key::Chain,
            Key::Subject,
            Key::Uri,
            Key::Dns,
        ]
        .into_iter()
        .find(|k| k.as_str().eq_ignore_ascii_case(name))
    }
}

/// Whether `header` may hold a `key` pair, without parsing it: [`parse`] takes a
/// key in any ASCII case with nothing between it and its `=`, so every pair it
/// would read contains `<key>=` in some case. Text inside a value can match too
/// (a false positive); a pair the parser reads never goes unnoticed.
pub fn may_contain(header: &str, key: Key) -> bool {
    let name = key.as_str().as_bytes();
    header.as_bytes().windows(name.len() + 1).any(|w| {
        w.split_last()
            .is_some_and(|(eq, key)| *eq == b'=' && key.eq_ignore_ascii_case(name))
    })
}

/// Whether `header` may hold a `key` pair with a value that is not empty: as
/// [`may_contain`], less the matches followed by an empty value (`""` or
/// nothing, then the end, `;` or `,`), such as the `Subject=""` Envoy writes
/// for a certificate without a subject. A pair with a value the parser reads
/// never goes unnoticed.
pub fn may_contain_value(header: &str, key: Key) -> bool {
    let name = key.as_str().as_bytes();
    let bytes = header.as_bytes();
    let empty_from = |at: usize| {
        let rest = bytes.get(at..).unwrap_or_default();
        let rest = rest.strip_prefix(b"\"\"").unwrap_or(rest);
        matches!(rest.first(), None | Some(b';' | b','))
    };
    bytes.windows(name.len() + 1).enumerate().any(|(at, w)| {
        w.split_last().is_some_and(|(eq, key)| {
            *eq == b'=' && key.eq_ignore_ascii_case(name) && !empty_from(at + w.len())
        })
    })
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a header was rejected. Offsets are byte offsets into the header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum XfccError {
    #[error("x-forwarded-client-cert header is empty")]
    Empty,
    #[error("x-forwarded-client-cert header is {len} bytes, more than the limit of {max}; drop it or raise `Limits::max_len`")]
    TooLong { len: usize, max: usize },
    #[error("x-forwarded-client-cert header has more than {max} elements; drop it or raise `Limits::max_elements`")]
    TooManyElements { max: usize },
    #[error("element {element} has more than {max} key=value pairs; drop it or raise `Limits::max_pairs_per_element`")]
    TooManyPairs { element: usize, max: usize },
    #[error("empty element at byte {offset}: remove the extra `,`")]
    EmptyElement { offset: usize },
    #[error("empty pair at byte {offset}: remove the extra `;`")]
    EmptyPair { offset: usize },
    #[error("pair at byte {offset} has no `=`: write it as `Key=Value`")]
    MissingEquals { offset: usize },
    #[error(
        "unknown key `{key}` at byte {offset}: use By, Hash, Cert, Chain, Subject, URI or DNS"
    )]
    UnknownKey { key: String, offset: usize },
    #[error("key `{key}` appears twice in one element (second at byte {offset}); keep one")]
    DuplicateKey { key: Key, offset: usize },
    #[error("quoted value starting at byte {offset} has no closing `\"`")]
    UnterminatedQuote { offset: usize },
    #[error("unexpected character after the closing quote at byte {offset}: a quoted value must be followed by `;`, `,` or the end")]
    TrailingAfterQuote { offset: usize },
    #[error("control character at byte {offset}: header values cannot contain control characters")]
    ControlCharacter { offset: usize },
    #[error("{key} value has a `%` not followed by two hex digits at byte {offset}; URL-encode it as `%25`")]
    BadPercentEncoding { key: Key, offset: usize },
    #[error("{key} value at byte {offset} does not URL-decode to UTF-8 text; it must be a URL-encoded PEM")]
    NotUtf8 { key: Key, offset: usize },
    #[error("hash at byte {offset} must be 64 hex digits (a SHA-256), found {len} characters")]
    HashLength { offset: usize, len: usize },
    #[error("hash at byte {offset} has a non-hex character; it must be 64 hex digits (a SHA-256)")]
    HashNotHex { offset: usize },
}

/// Parse with default limits.
///
/// `Ok` holds at least one element, each with at least one pair; `Err` names the
/// first problem found (see [`XfccError`]).
pub fn parse(header: &str) -> Result<Xfcc, XfccError> {
    parse_with(header, &Limits::default())
}

/// Parse with explicit limits. Same outcomes as [`parse`], plus
/// [`XfccError::TooLong`], [`XfccError::TooManyElements`] and
/// [`XfccError::TooManyPairs`] when a bound is crossed.
pub fn parse_with(header: &str, limits: &Limits) -> Result<Xfcc, XfccError> {
    parse_keeping_last(header, limits).map(|(x, _)| x)
}

/// [`parse_with`], plus the text of the last element (the nearest proxy's) as
/// it stands in `header`, without the spaces before it: a proxy that keeps only
/// that element can pass it on byte for byte instead of re-encoding it.
pub fn parse_keeping_last<'h>(
    header: &'h str,
    limits: &Limits,
) -> Result<(Xfcc, &'h str), XfccError> {
    parse_nearest(header, limits).map(|(x, nearest)| (x, nearest.text))
}

/// The last element of a header as it was written: its text (see
/// [`parse_keeping_last`]) and which of its keys had a quoted value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nearest<'h> {
    pub text: &'h str,
    quoted: u8,
}

impl Nearest<'_> {
    /// Whether a value of `key` was written in quotes.
    pub fn quoted(&self, key: Key) -> bool {
        self.quoted & key_bit(key) != 0
    }

    /// Whether a key Envoy always writes bare (`By`, `Hash`, `URI`, `DNS`) has
    /// a quoted value: Envoy quotes only `Subject`, `Cert` and `Chain`
    /// (`conn_manager_utility.cc`), so such an element is not Envoy's, and its
    /// quotes can hide `,` and `;` that split it for a reader that does not
    /// honour them.
    pub fn quotes_a_bare_key(&self) -> bool {
        [Key::By, Key::Hash, Key::Uri, Key::Dns]
            .into_iter()
            .any(|k| self.quoted(k))
    }
}

fn key_bit(key: Key) -> u8 {
    1 << (key as u8)
}

/// [`parse_keeping_last`], with the last element's quoting.
pub fn parse_nearest<'h>(
    header: &'h str,
    limits: &Limits,
) -> Result<(Xfcc, Nearest<'h>), XfccError> {
    if header.len() > limits.max_len {
        return Err(XfccError::TooLong {
            len: header.len(),
            max: limits.max_len,
        });
    }
    let (xfcc, start, quoted) = Parser::new(limits).run(header)?;
    let text = header
        .get(start..)
        .unwrap_or_default()
        .trim_start_matches([' ', '\t']);
    Ok((xfcc, Nearest { text, quoted }))
}

/// Longest key worth buffering: anything longer is unknown anyway, and the error
/// shows only this much of it.
const MAX_KEY_SHOWN: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before a key; `after_semicolon` tells an empty pair from an empty element.
    KeyStart {
        after_semicolon: bool,
    },
    Key,
    ValueStart,
    Bare,
    Quoted,
    QuotedBackslash,
    AfterQuote,
}

struct Parser<'l> {
    limits: &'l Limits,
    out: Xfcc,
    element: Element,
    pairs_in_element: usize,
    state: State,
    key: String,
    key_offset: usize,
    current_key: Key,
    value: String,
    value_offset: usize,
    /// Byte offset just after the `,` that began the current element.
    last_start: usize,
    /// The keys given a quoted value in the current element ([`key_bit`]).
    quoted: u8,
}

impl<'l> Parser<'l> {
    fn new(limits: &'l Limits) -> Self {
        Self {
            limits,
            out: Xfcc::default(),
            element: Element::default(),
            pairs_in_element: 0,
            state: State::KeyStart {
                after_semicolon: false,
            },
            key: String::new(),
            key_offset: 0,
            current_key: Key::By,
            value: String::new(),
            value_offset: 0,
            last_start: 0,
            quoted: 0,
        }
    }

    fn run(mut self, header: &str) -> Result<(Xfcc, usize, u8), XfccError> {
        for (at, c) in header.char_indices() {
            if c.is_ascii_control() && c != '\t' {
                return Err(XfccError::ControlCharacter { offset: at });
            }
            self.step(at, c)?;
        }
        self.finish(header.len())
    }

    fn step(&mut self, at: usize, c: char) -> Result<(), XfccError> {
        match self.state {
            State::KeyStart { after_semicolon } => match c {
                ' ' | '\t' => {}
                ',' | ';' if after_semicolon => return Err(XfccError::EmptyPair { offset: at }),
                ',' => return Err(XfccError::EmptyElement { offset: at }),
                ';' if self.pairs_in_element == 0 => {
                    return Err(XfccError::EmptyPair { offset: at })
                }
                '=' => {
                    return Err(XfccError::UnknownKey {
                        key: String::new(),
                        offset: at,
                    })
                }
                _ => {
                    self.start_pair(at)?;
                    self.key.push(c);
                    self.state = State::Key;
                }
            },
            State::Key => match c {
                '=' => {
                    self.current_key =
                        Key::from_name(&self.key).ok_or_else(|| XfccError::UnknownKey {
                            key: self.key.clone(),
                            offset: self.key_offset,
                        })?;
                    self.value.clear();
                    self.value_offset = at + 1;
                    self.state = State::ValueStart;
                }
                ';' | ',' => {
                    return Err(XfccError::MissingEquals {
                        offset: self.key_offset,
                    })
                }
                _ => {
                    if self.key.len() < MAX_KEY_SHOWN {
                        self.key.push(c);
                    }
                }
            },
            State::ValueStart => match c {
                '"' => {
                    self.value_offset = at + 1;
                    self.quoted |= key_bit(self.current_key);
                    self.state = State::Quoted;
                }
                ';' | ',' => self.end_pair(c, at)?,
                _ => {
                    self.value.push(c);
                    self.state = State::Bare;
                }
            },
            State::Bare => match c {
                ';' | ',' => self.end_pair(c, at)?,
                _ => self.value.push(c),
            },
            State::Quoted => match c {
                '"' => self.state = State::AfterQuote,
                '\\' => self.state = State::QuotedBackslash,
                _ => self.value.push(c),
            },
            State::QuotedBackslash => {
                if c != '"' && c != '\\' {
                    // Not an escape: an RFC 2253 escape such as `\,` in a subject.
                    self.value.push('\\');
                }
                self.value.push(c);
                self.state = State::Quoted;
            }
            State::AfterQuote => match c {
                ';' | ',' => self.end_pair(c, at)?,
                _ => return Err(XfccError::TrailingAfterQuote { offset: at }),
            },
        }
        Ok(())
    }

    fn finish(mut self, end: usize) -> Result<(Xfcc, usize, u8), XfccError> {
        match self.state {
            State::KeyStart { after_semicolon } => {
                if after_semicolon {
                    return Err(XfccError::EmptyPair { offset: end });
                }
                if self.out.elements.is_empty() {
                    return Err(XfccError::Empty);
                }
                return Err(XfccError::EmptyElement { offset: end });
            }
            State::Key => {
                return Err(XfccError::MissingEquals {
                    offset: self.key_offset,
                })
            }
            State::Quoted | State::QuotedBackslash => {
                return Err(XfccError::UnterminatedQuote {
                    offset: self.value_offset.saturating_sub(1),
                })
            }
            State::ValueStart | State::Bare | State::AfterQuote => self.store_value()?,
        }
        self.out.elements.push(std::mem::take(&mut self.element));
        Ok((self.out, self.last_start, self.quoted))
    }

    fn start_pair(&mut self, at: usize) -> Result<(), XfccError> {
        if self.pairs_in_element == 0 && self.out.elements.len() >= self.limits.max_elements {
            return Err(XfccError::TooManyElements {
                max: self.limits.max_elements,
            });
        }
        if self.pairs_in_element >= self.limits.max_pairs_per_element {
            return Err(XfccError::TooManyPairs {
                element: self.out.elements.len(),
                max: self.limits.max_pairs_per_element,
            });
        }
        self.pairs_in_element += 1;
        self.key.clear();
        self.key_offset = at;
        Ok(())
    }

    fn end_pair(&mut self, separator: char, at: usize) -> Result<(), XfccError> {
        self.store_value()?;
        if separator == ',' {
            self.last_start = at + 1;
            self.quoted = 0;
            self.out.elements.push(std::mem::take(&mut self.element));
            self.pairs_in_element = 0;
            self.state = State::KeyStart {
                after_semicolon: false,
            };
        } else {
            self.state = State::KeyStart {
                after_semicolon: true,
            };
        }
        Ok(())
    }

    fn store_value(&mut self) -> Result<(), XfccError> {
        let value = std::mem::take(&mut self.value);
        let key = self.current_key;
        let duplicate = XfccError::DuplicateKey {
            key,
            offset: self.key_offset,
        };
        let e = &mut self.element;
        match key {
            Key::By => e.by.push(value),
            Key::Uri => e.uri.push(value),
            Key::Dns => e.dns.push(value),
            Key::Hash => {
                if e.hash.is_some() {
                    return Err(duplicate);
                }
                e.hash = Some(normalise_hash(&value, self.value_offset)?);
            }
            Key::Cert | Key::Chain => {
                let slot = if key == Key::Cert {
                    &mut e.cert
                } else {
                    &mut e.chain
                };
                if slot.is_some() {
                    return Err(duplicate);
                }
                *slot = Some(percent_decode(&value, key, self.value_offset)?);
            }
            Key::Subject => {
                if e.subject.is_some() {
                    return Err(duplicate);
                }
                e.subject = Some(value);
            }
        }
        Ok(())
    }
}

fn normalise_hash(value: &str, offset: usize) -> Result<String, XfccError> {
    if !value.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(XfccError::HashNotHex { offset });
    }
    if value.len() != 64 {
        return Err(XfccError::HashLength {
            offset,
            len: value.len(),
        });
    }
    Ok(value.to_ascii_lowercase())
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// `offset` is where the value starts in the header; the reported offset adds the
/// position inside the value (exact, since Envoy's Cert/Chain carry no escapes).
fn percent_decode(value: &str, key: Key, offset: usize) -> Result<String, XfccError> {
    let mut bytes = Vec::with_capacity(value.len());
    let mut iter = value.bytes().enumerate();
    while let Some((i, b)) = iter.next() {
        if b != b'%' {
            bytes.push(b);
            continue;
        }
        let hi = iter.next().and_then(|(_, h)| hex_value(h));
        let lo = iter.next().and_then(|(_, l)| hex_value(l));
        match (hi, lo) {
            (Some(hi), Some(lo)) => bytes.push((hi << 4) | lo),
            _ => {
                return Err(XfccError::BadPercentEncoding {
                    key,
                    offset: offset + i,
                })
            }
        }
    }
    String::from_utf8(bytes).map_err(|_| XfccError::NotUtf8 { key, offset })
}

/// URL-encodes a PEM the way Envoy does (`Http::Utility::PercentEncoding::urlEncode`,
/// formerly `urlEncodeQueryParameter`): every byte except ASCII letters, digits and
/// `*` `-` `.` `_` becomes `%XX` with uppercase hex. Note `~` is encoded and `*` is
/// not, unlike RFC 3986's unreserved set. For a PEM this yields exactly what older
/// Envoys wrote by replacing `\n` ` ` `+` `/` `=`.
pub fn percent_encode(text: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(text.len() + text.len() / 4);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'*' | b'-' | b'.' | b'_') {
            out.push(char::from(b));
        } else {
            out.push('%');
            for nibble in [b >> 4, b & 0x0f] {
                if let Some(&h) = HEX.get(usize::from(nibble)) {
                    out.push(char::from(h));
                }
            }
        }
    }
    out
}

fn needs_quotes(value: &str) -> bool {
    value.contains([',', ';', '=', '"'])
        || value.starts_with([' ', '\t'])
        || value.ends_with([' ', '\t'])
}

fn push_quoted(out: &mut String, value: &str) {
    out.push('"');
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => out.push_str("\\\""),
            // A backslash is written bare (as Envoy does for RFC 2253 escapes) unless
            // the parser would otherwise read it as the start of an escape.
            '\\' if matches!(chars.peek(), None | Some('"') | Some('\\')) => out.push_str("\\\\"),
            _ => out.push(c),
        }
    }
    out.push('"');
}

/// Writes one element's pairs, `;` between them.
struct PairWriter<'o> {
    out: &'o mut String,
    first: bool,
}

impl PairWriter<'_> {
    fn pair(&mut self, key: Key, value: &str, quote: bool) {
        if !self.first {
            self.out.push(';');
        }
        self.first = false;
        self.out.push_str(key.as_str());
        self.out.push('=');
        if quote {
            push_quoted(self.out, value);
        } else {
            self.out.push_str(value);
        }
    }

    fn plain(&mut self, key: Key, value: &str) {
        self.pair(key, value, needs_quotes(value));
    }
}

impl Element {
    /// The element's peer URI SANs, skipping the empty `URI=` Envoy writes for a
    /// peer without one.
    pub fn peer_uris(&self) -> impl Iterator<Item = &str> {
        self.uri
            .iter()
            .map(String::as_str)
            .filter(|u| !u.is_empty())
    }

    /// The element's peer DNS SANs, skipping empty values.
    pub fn peer_dns(&self) -> impl Iterator<Item = &str> {
        self.dns
            .iter()
            .map(String::as_str)
            .filter(|d| !d.is_empty())
    }

    /// `true` when this element carries a `Hash` equal (ignoring case) to `hex`, e.g.
    /// Envoy's `connection.sha256_peer_certificate_digest` property.
    pub fn hash_matches(&self, hex: &str) -> bool {
        self.hash
            .as_deref()
            .is_some_and(|h| h.eq_ignore_ascii_case(hex))
    }

    fn write(&self, out: &mut String) {
        let mut w = PairWriter { out, first: true };
        for by in &self.by {
            w.plain(Key::By, by);
        }
        if let Some(hash) = &self.hash {
            w.plain(Key::Hash, hash);
        }
        if let Some(cert) = &self.cert {
            w.pair(Key::Cert, &percent_encode(cert), true);
        }
        if let Some(chain) = &self.chain {
            w.pair(Key::Chain, &percent_encode(chain), true);
        }
        if let Some(subject) = &self.subject {
            w.pair(Key::Subject, subject, true);
        }
        for uri in &self.uri {
            w.plain(Key::Uri, uri);
        }
        for dns in &self.dns {
            w.plain(Key::Dns, dns);
        }
    }
}

impl Xfcc {
    /// Serialize as Envoy writes it (`,` between elements, `;` between pairs,
    /// Subject/Cert/Chain quoted, Cert/Chain URL-encoded).
    ///
    /// Other values are quoted (with `\"` escapes) only when they contain `,` `;`
    /// `=` `"` or start or end with a space or tab. The result parses back to
    /// `self` whenever `self` is something [`parse`] can return: at least one
    /// element, no element without fields, a 64-digit lowercase hash, and no
    /// control characters in values.
    pub fn to_header(&self) -> String {
        let mut out = String::new();
        for (i, element) in self.elements.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            element.write(&mut out);
        }
        out
    }

    /// The element appended by the nearest proxy (the one that terminated the
    /// connection this request arrived on); `None` for an empty header value.
    pub fn last(&self) -> Option<&Element> {
        self.elements.last()
    }
}

impl fmt::Display for Xfcc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_header())
    }
}

impl std::str::FromStr for Xfcc {
    type Err = XfccError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s)
    }
}
