//! XFCC parser and serializer. The `fixtures/xfcc/envoy-*.txt` headers were
//! written by a real Envoy 1.40 (see `fixtures/xfcc/regen.sh`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use policy::xfcc::{self, Element, Key, Limits, Xfcc, XfccError};
use proptest::prelude::*;

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/xfcc")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

const HASH: &str = "434b7f1a6b2bbbe9c7fd2ad9ff0be2d3e4e5a0a0a4cd1b6f0b4c2b9b6bd36fd1";

// ---- real headers ---------------------------------------------------------------

#[test]
fn istio_sidecar_header_parses_into_one_element() {
    let header = format!(
        "By=spiffe://cluster.local/ns/foo/sa/httpbin;Hash={HASH};Subject=\"\";URI=spiffe://cluster.local/ns/bar/sa/sleep"
    );
    let x = xfcc::parse(&header).unwrap();
    assert_eq!(
        x.elements,
        vec![Element {
            by: vec!["spiffe://cluster.local/ns/foo/sa/httpbin".into()],
            hash: Some(HASH.into()),
            subject: Some(String::new()),
            uri: vec!["spiffe://cluster.local/ns/bar/sa/sleep".into()],
            ..Element::default()
        }]
    );
    assert_eq!(x.to_header(), header);
}

#[test]
fn envoy_sanitize_set_header_carries_the_real_client_certificate_and_chain() {
    let header = fixture("envoy-sanitize-set.txt");
    let x = xfcc::parse(&header).unwrap();
    assert_eq!(x.elements.len(), 1);
    let e = x.last().unwrap();
    assert_eq!(e.by, ["spiffe://cluster.local/ns/bar/sa/httpbin"]);
    // openssl's digest of the leaf's DER, recorded when the fixture was made.
    assert_eq!(e.hash.as_deref(), Some(fixture("client.sha256").trim()));
    assert_eq!(e.cert.as_deref(), Some(fixture("client.pem").as_str()));
    assert_eq!(e.chain.as_deref(), Some(fixture("chain.pem").as_str()));
    // RFC 2253 escapes (`\;`, `\,`) from Envoy's unescaped form are kept as data.
    assert_eq!(
        e.subject.as_deref(),
        Some(r"CN=sleep,OU=a=b\;c,O=Acme\, Inc.")
    );
    assert_eq!(
        e.uri,
        [
            "spiffe://cluster.local/ns/foo/sa/sleep",
            "spiffe://cluster.local/ns/foo/sa/sleep-v2"
        ]
    );
    assert_eq!(e.dns, ["sleep.foo.svc", "sleep"]);
}

#[test]
fn serializer_writes_envoy_headers_byte_for_byte() {
    for name in ["envoy-sanitize-set.txt", "envoy-append-forward.txt"] {
        let header = fixture(name);
        assert_eq!(xfcc::parse(&header).unwrap().to_header(), header, "{name}");
    }
}

#[test]
fn envoy_append_forward_keeps_the_client_element_first_and_its_own_last() {
    let x = xfcc::parse(&fixture("envoy-append-forward.txt")).unwrap();
    assert_eq!(x.elements.len(), 2);
    let forged = &x.elements[0];
    assert_eq!(
        forged.by,
        ["spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"]
    );
    assert_eq!(forged.hash, None);
    let own = x.last().unwrap();
    assert_eq!(own.by, ["spiffe://cluster.local/ns/bar/sa/httpbin"]);
    assert_eq!(own.subject.as_deref(), Some("CN=legacy client"));
    // Envoy writes a bare `URI=` for a peer without a URI SAN.
    assert_eq!(own.uri, [""]);
    assert_eq!(own.peer_uris().count(), 0);
    assert_eq!(own.peer_dns().collect::<Vec<_>>(), ["legacy.example"]);
    assert!(own.hash_matches("4C70F796EC8D96B4F8188C2D93EAB1CFE5E717DBF47ABD4225AB4B6B5198C25A"));
    assert!(
        !forged.hash_matches("4c70f796ec8d96b4f8188c2d93eab1cfe5e717dbf47abd4225ab4b6b5198c25a")
    );
}

// ---- grammar details --------------------------------------------------------------

#[test]
fn documented_escaped_quotes_and_separators_inside_quotes_are_data() {
    let x =
        xfcc::parse(r#"By=spiffe://a/b;Subject="CN=x\"y, z;w=v";URI="spiffe://a/q;r""#).unwrap();
    let e = x.last().unwrap();
    assert_eq!(e.subject.as_deref(), Some(r#"CN=x"y, z;w=v"#));
    assert_eq!(e.uri, ["spiffe://a/q;r"]);
}

#[test]
fn escaped_backslash_inside_quotes_is_one_backslash() {
    let x = xfcc::parse(r#"Subject="a\\";URI=u"#).unwrap();
    assert_eq!(x.last().unwrap().subject.as_deref(), Some("a\\"));
}

#[test]
fn keys_match_case_insensitively_and_hash_is_lowercased() {
    let upper = HASH.to_ascii_uppercase();
    let x = xfcc::parse(&format!("by=a;HASH={upper};uri=b;Dns=c;subject=\"s\"")).unwrap();
    let e = x.last().unwrap();
    assert_eq!(e.by, ["a"]);
    assert_eq!(e.hash.as_deref(), Some(HASH));
    assert_eq!(e.uri, ["b"]);
    assert_eq!(e.dns, ["c"]);
    assert_eq!(e.subject.as_deref(), Some("s"));
}

#[test]
fn bare_values_may_contain_equals_signs() {
    let x = xfcc::parse("URI=spiffe://a/b?x=y").unwrap();
    assert_eq!(x.last().unwrap().uri, ["spiffe://a/b?x=y"]);
}

#[test]
fn elements_joined_with_comma_space_parse() {
    let x = xfcc::parse("By=a;URI=b, By=c;URI=d").unwrap();
    assert_eq!(x.elements.len(), 2);
    assert_eq!(x.elements[1].by, ["c"]);
}

#[test]
fn serializer_writes_keys_in_envoy_order_whatever_the_input_order() {
    let x = xfcc::parse(&format!("DNS=d;URI=u;Subject=\"s\";Hash={HASH};By=b")).unwrap();
    assert_eq!(
        x.to_header(),
        format!("By=b;Hash={HASH};Subject=\"s\";URI=u;DNS=d")
    );
}

#[test]
fn serializer_quotes_and_escapes_values_with_separators() {
    let x = Xfcc {
        elements: vec![Element {
            by: vec!["a,b".into()],
            uri: vec!["q\"r".into(), "plain".into()],
            dns: vec![" padded".into()],
            ..Element::default()
        }],
    };
    let header = x.to_header();
    assert_eq!(header, r#"By="a,b";URI="q\"r";URI=plain;DNS=" padded""#);
    assert_eq!(xfcc::parse(&header).unwrap(), x);
}

#[test]
fn cert_is_percent_encoded_like_envoy() {
    assert_eq!(
        xfcc::percent_encode("-----BEGIN CERTIFICATE-----\nab+/=*._~\n"),
        "-----BEGIN%20CERTIFICATE-----%0Aab%2B%2F%3D*._%7E%0A"
    );
}

#[test]
fn percent_decoding_accepts_lowercase_hex() {
    let x = xfcc::parse("Cert=\"a%2fb%0a\"").unwrap();
    assert_eq!(x.last().unwrap().cert.as_deref(), Some("a/b\n"));
}

#[test]
fn xfcc_implements_from_str_and_display() {
    let x: Xfcc = "By=a;URI=b".parse().unwrap();
    assert_eq!(x.to_string(), "By=a;URI=b");
    assert_eq!(Key::from_name("uRi"), Some(Key::Uri));
    assert_eq!(Key::from_name("Url"), None);
}

// ---- one test per error -----------------------------------------------------------

fn err(header: &str) -> XfccError {
    match xfcc::parse(header) {
        Ok(x) => panic!("{header:?} parsed as {x:?}"),
        Err(e) => e,
    }
}

#[test]
fn empty_or_blank_header_is_rejected() {
    assert_eq!(err(""), XfccError::Empty);
    assert_eq!(err("  "), XfccError::Empty);
}

#[test]
fn header_longer_than_the_limit_is_rejected_before_parsing() {
    let limits = Limits {
        max_len: 10,
        ..Limits::default()
    };
    // Garbage past the limit: the length check must come first.
    assert_eq!(
        xfcc::parse_with("\"\"\"\"\"\"\"\"\"\"\"", &limits),
        Err(XfccError::TooLong { len: 11, max: 10 })
    );
    assert!(xfcc::parse_with("By=abcdefg", &limits).is_ok());
}

#[test]
fn too_many_elements_are_rejected() {
    let limits = Limits {
        max_elements: 2,
        ..Limits::default()
    };
    assert!(xfcc::parse_with("By=a,By=b", &limits).is_ok());
    assert_eq!(
        xfcc::parse_with("By=a,By=b,By=c", &limits),
        Err(XfccError::TooManyElements { max: 2 })
    );
}

#[test]
fn too_many_pairs_in_an_element_are_rejected() {
    let limits = Limits {
        max_pairs_per_element: 2,
        ..Limits::default()
    };
    assert!(xfcc::parse_with("By=a;By=b,By=c;By=d", &limits).is_ok());
    assert_eq!(
        xfcc::parse_with("By=a,By=b;By=c;By=d", &limits),
        Err(XfccError::TooManyPairs { element: 1, max: 2 })
    );
}

#[test]
fn empty_element_is_rejected() {
    assert_eq!(err("By=a,,By=b"), XfccError::EmptyElement { offset: 5 });
    assert_eq!(err("By=a,"), XfccError::EmptyElement { offset: 5 });
    assert_eq!(err(",By=a"), XfccError::EmptyElement { offset: 0 });
}

#[test]
fn empty_pair_is_rejected() {
    assert_eq!(err("By=a;;URI=b"), XfccError::EmptyPair { offset: 5 });
    assert_eq!(err("By=a;"), XfccError::EmptyPair { offset: 5 });
    assert_eq!(err(";By=a"), XfccError::EmptyPair { offset: 0 });
}

#[test]
fn pair_without_equals_is_rejected() {
    assert_eq!(err("By=a;URI"), XfccError::MissingEquals { offset: 5 });
    assert_eq!(err("By;URI=a"), XfccError::MissingEquals { offset: 0 });
}

#[test]
fn unknown_key_is_rejected_with_its_name() {
    assert_eq!(
        err("By=a;Foo=b"),
        XfccError::UnknownKey {
            key: "Foo".into(),
            offset: 5
        }
    );
    assert_eq!(
        err("=b"),
        XfccError::UnknownKey {
            key: String::new(),
            offset: 0
        }
    );
    let long = format!("{}=v", "k".repeat(1000));
    match err(&long) {
        XfccError::UnknownKey { key, offset: 0 } => assert_eq!(key.len(), 32),
        other => panic!("{other:?}"),
    }
}

#[test]
fn single_valued_keys_may_not_repeat() {
    assert_eq!(
        err(&format!("Hash={HASH};Hash={HASH}")),
        XfccError::DuplicateKey {
            key: Key::Hash,
            offset: 70
        }
    );
    assert_eq!(
        err("Subject=\"a\";Subject=\"b\""),
        XfccError::DuplicateKey {
            key: Key::Subject,
            offset: 12
        }
    );
    assert!(matches!(
        err("Cert=a;Cert=b"),
        XfccError::DuplicateKey { key: Key::Cert, .. }
    ));
    assert!(matches!(
        err("Chain=a;Chain=b"),
        XfccError::DuplicateKey {
            key: Key::Chain,
            ..
        }
    ));
    // Multi-valued keys may.
    assert!(xfcc::parse("By=a;By=b;URI=c;URI=d;DNS=e;DNS=f").is_ok());
}

#[test]
fn unterminated_quote_is_rejected() {
    assert_eq!(
        err("By=a;Subject=\"CN=x"),
        XfccError::UnterminatedQuote { offset: 13 }
    );
    assert_eq!(
        err("Subject=\"CN=x\\\""),
        XfccError::UnterminatedQuote { offset: 8 }
    );
}

#[test]
fn characters_after_a_closing_quote_are_rejected() {
    assert_eq!(
        err("Subject=\"a\"b;By=c"),
        XfccError::TrailingAfterQuote { offset: 11 }
    );
}

#[test]
fn control_characters_are_rejected() {
    assert_eq!(
        err("By=a\r\nX: y"),
        XfccError::ControlCharacter { offset: 4 }
    );
    assert_eq!(
        err("Subject=\"a\0\""),
        XfccError::ControlCharacter { offset: 10 }
    );
    assert!(xfcc::parse("Subject=\"a\tb\"").is_ok());
}

#[test]
fn bad_percent_encoding_in_cert_or_chain_is_rejected() {
    assert_eq!(
        err("Cert=\"ab%zz\""),
        XfccError::BadPercentEncoding {
            key: Key::Cert,
            offset: 8
        }
    );
    assert_eq!(
        err("Chain=\"ab%4\""),
        XfccError::BadPercentEncoding {
            key: Key::Chain,
            offset: 9
        }
    );
    assert_eq!(
        err("Cert=%"),
        XfccError::BadPercentEncoding {
            key: Key::Cert,
            offset: 5
        }
    );
}

#[test]
fn cert_that_decodes_to_invalid_utf8_is_rejected() {
    assert_eq!(
        err("By=a;Cert=\"%C3%28\""),
        XfccError::NotUtf8 {
            key: Key::Cert,
            offset: 11
        }
    );
}

#[test]
fn hash_of_the_wrong_length_is_rejected() {
    assert_eq!(err("Hash=abc"), XfccError::HashLength { offset: 5, len: 3 });
    assert_eq!(
        err("Hash=;By=a"),
        XfccError::HashLength { offset: 5, len: 0 }
    );
    assert_eq!(
        err(&format!("Hash={HASH}0")),
        XfccError::HashLength { offset: 5, len: 65 }
    );
}

#[test]
fn hash_with_a_non_hex_character_is_rejected() {
    let bad = format!("{}g", &HASH[..63]);
    assert_eq!(
        err(&format!("Hash={bad}")),
        XfccError::HashNotHex { offset: 5 }
    );
}

#[test]
fn error_messages_say_what_to_fix() {
    let msg = err("By=a;Foo=b").to_string();
    assert_eq!(
        msg,
        "unknown key `Foo` at byte 5: use By, Hash, Cert, Chain, Subject, URI or DNS"
    );
    assert!(err("Hash=abc").to_string().contains("64 hex digits"));
}

// ---- bounds and robustness --------------------------------------------------------

#[test]
fn a_maximal_hostile_header_of_escapes_parses_completely() {
    // 64 KiB of escapes inside one quoted value, right at the length limit. How fast
    // this is belongs in a benchmark; here we check it is read in full and correctly.
    let body = "\\\"".repeat(32 * 1024 - 8);
    let header = format!("Subject=\"{body}\"");
    assert!(header.len() <= Limits::default().max_len);
    let x = xfcc::parse(&header).unwrap();
    assert_eq!(
        x.last().unwrap().subject.as_deref(),
        Some("\"".repeat(32 * 1024 - 8).as_str())
    );
}

/// The XFCC corpus of the fuzz project. Every file in it is replayed through the
/// fuzz target's property by `tests/fuzz_corpus.rs`; this test adds what only
/// the named seeds carry: `ok-*` must parse and `bad-*` must fail (`fuzz/run.sh
/// --cmin` keeps named seeds).
fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/xfcc")
}

#[test]
fn the_named_fuzz_seeds_parse_or_fail_as_their_names_say() {
    let mut seen = 0;
    for entry in std::fs::read_dir(corpus_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let must_parse = name.starts_with("ok-");
        if !must_parse && !name.starts_with("bad-") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let parsed = std::str::from_utf8(&bytes)
            .map_err(|e| e.to_string())
            .and_then(|text| xfcc::parse(text).map_err(|e| e.to_string()));
        assert_eq!(parsed.is_ok(), must_parse, "{name}: {parsed:?}");
        seen += 1;
    }
    assert!(seen >= 10, "only {seen} named seeds");
}

// ---- properties -------------------------------------------------------------------

/// Strings that a header can carry, biased towards the characters the grammar cares about.
fn header_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9:/._-]{0,24}",
        "[ ,;=\"\\\\a-z\t]{0,12}",
        "[^\\x00-\\x08\\x0a-\\x1f\\x7f]{0,16}",
    ]
}

fn element() -> impl Strategy<Value = Element> {
    (
        prop::collection::vec(header_text(), 0..3),
        prop::option::of("[0-9a-f]{64}"),
        prop::option::of(any::<String>()),
        prop::option::of(any::<String>()),
        prop::option::of(header_text()),
        prop::collection::vec(header_text(), 0..3),
        prop::collection::vec(header_text(), 0..3),
    )
        .prop_map(|(by, hash, cert, chain, subject, uri, dns)| Element {
            by,
            hash,
            cert,
            chain,
            subject,
            uri,
            dns,
        })
        .prop_filter("an element needs at least one pair", |e| {
            *e != Element::default()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_serialized_header_parses_back_to_itself(
        elements in prop::collection::vec(element(), 1..5)
    ) {
        let x = Xfcc { elements };
        let header = x.to_header();
        prop_assert_eq!(xfcc::parse(&header), Ok(x), "header: {}", header);
    }

    #[test]
    fn arbitrary_text_never_panics_and_parsed_headers_round_trip(s in "\\PC{0,200}") {
        if let Ok(x) = xfcc::parse(&s) {
            prop_assert_eq!(xfcc::parse(&x.to_header()), Ok(x));
        }
    }

    #[test]
    fn grammar_shaped_text_never_panics_and_parsed_headers_round_trip(
        s in "((By|Hash|Cert|Chain|Subject|URI|DNS|x)?(=)?(\"|\\\\|,|;|%|[a-f0-9]{1,3}| )?){0,30}"
    ) {
        if let Ok(x) = xfcc::parse(&s) {
            prop_assert_eq!(xfcc::parse(&x.to_header()), Ok(x));
        }
    }
}

#[test]
fn may_contain_finds_every_key_the_parser_reads_in_any_case() {
    for header in ["Cert=\"x\"", "cert=x", "By=a;CERT=x", "By=a; cErT=\"y\""] {
        assert!(xfcc::may_contain(header, Key::Cert), "{header}");
        assert!(
            xfcc::parse(header).is_ok_and(|x| x.elements[0].cert.is_some()),
            "{header}"
        );
    }
    assert!(!xfcc::may_contain("Hash=ab;URI=spiffe://x", Key::Cert));
    assert!(!xfcc::may_contain("Cert", Key::Cert));
    assert!(!xfcc::may_contain("", Key::Cert));
}

#[test]
fn may_contain_value_skips_only_empty_values() {
    for header in [
        "Subject=\"CN=a\"",
        "subject=x",
        "Hash=ab;SUBJECT=\"\\\"\"",
        "Subject=\"\";Subject=\"CN=b\"",
    ] {
        assert!(xfcc::may_contain_value(header, Key::Subject), "{header}");
    }
    for header in [
        "Hash=ab;Subject=\"\";URI=spiffe://x",
        "Subject=",
        "Subject=\"\",By=x",
        "Hash=ab",
    ] {
        assert!(!xfcc::may_contain_value(header, Key::Subject), "{header}");
        assert!(
            xfcc::parse(header).map_or(true, |x| x
                .elements
                .iter()
                .all(|e| e.subject.as_deref().is_none_or(str::is_empty))),
            "{header}"
        );
    }
}

proptest! {
    /// A non-empty `Subject=` the parser reads is always flagged, so the filter
    /// never skips reading the certificate's subject it must compare.
    #[test]
    fn may_contain_value_misses_no_subject_the_parser_reads(
        s in "((By|Hash|Cert|Chain|Subject|subject|URI|DNS|x)?(=)?(\"|\\\\|,|;|%|[a-f0-9]{1,3}| )?){0,30}"
    ) {
        if let Ok(x) = xfcc::parse(&s) {
            if x.elements.iter().any(|e| e.subject.as_deref().is_some_and(|v| !v.is_empty())) {
                prop_assert!(xfcc::may_contain_value(&s, Key::Subject), "{}", s);
            }
        }
    }
}

#[test]
fn the_last_element_is_kept_as_written_and_a_quoted_comma_does_not_end_one() {
    let limits = Limits::default();
    let header = "By=spiffe://a;URI=spiffe://x, By=spiffe://b;Subject=\"CN=s,O=o\";URI=spiffe://y";
    let (x, last) = xfcc::parse_keeping_last(header, &limits).unwrap();
    assert_eq!(last, "By=spiffe://b;Subject=\"CN=s,O=o\";URI=spiffe://y");
    assert_eq!(xfcc::parse(last).unwrap().elements, [x.elements[1].clone()]);
    let (_, only) = xfcc::parse_keeping_last("URI=spiffe://x", &limits).unwrap();
    assert_eq!(only, "URI=spiffe://x");
}

/// Envoy quotes only `Subject`, `Cert` and `Chain`; the last element's quoting
/// is reported so a reader can refuse quotes Envoy never writes (they can hide
/// `,` and `;` from an application that does not honour them).
#[test]
fn the_last_elements_quoted_keys_are_reported_and_envoys_own_quotes_are_not_bare_ones() {
    let limits = Limits::default();
    let envoy = "By=spiffe://cluster.local/ns/foo/sa/httpbin;Hash=ab12;Subject=\"\";URI=spiffe://cluster.local/ns/foo/sa/sleep";
    let envoy = envoy.replace("ab12", &"ab".repeat(32));
    let (_, nearest) = xfcc::parse_nearest(&envoy, &limits).unwrap();
    assert_eq!(nearest.text, envoy);
    assert!(nearest.quoted(Key::Subject));
    assert!(!nearest.quotes_a_bare_key());
    for (header, key) in [
        ("URI=spiffe://a;By=\"x,URI=spiffe://admin\"", Key::By),
        ("URI=\"spiffe://a\"", Key::Uri),
        ("DNS=\"a;b\"", Key::Dns),
    ] {
        let (_, nearest) = xfcc::parse_nearest(header, &limits).unwrap();
        assert!(
            nearest.quoted(key) && nearest.quotes_a_bare_key(),
            "{header}"
        );
    }
    // Quotes in an earlier element are not the last element's.
    let (_, nearest) =
        xfcc::parse_nearest("By=\"a,b\";URI=spiffe://x,URI=spiffe://y", &limits).unwrap();
    assert_eq!(nearest.text, "URI=spiffe://y");
    assert!(!nearest.quotes_a_bare_key());
}
