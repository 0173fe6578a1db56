//! SPIFFE ID rules (spiffe/spiffe `standards/SPIFFE-ID.md`), Istio identities and
//! allow-list patterns.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use policy::spiffe::{IstioIdentity, SpiffeError, SpiffeId, SpiffePattern};
use proptest::prelude::*;

fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn err(s: &str) -> SpiffeError {
    match SpiffeId::parse(s) {
        Ok(id) => panic!("{s} parsed as {id:?}"),
        Err(e) => e,
    }
}

// ---- valid IDs --------------------------------------------------------------------

#[test]
fn istio_workload_id_splits_into_trust_domain_and_path() {
    let id = id("spiffe://cluster.local/ns/foo/sa/httpbin");
    assert_eq!(id.trust_domain(), "cluster.local");
    assert_eq!(id.path(), "ns/foo/sa/httpbin");
    assert_eq!(
        id.segments().collect::<Vec<_>>(),
        ["ns", "foo", "sa", "httpbin"]
    );
    assert_eq!(id.to_string(), "spiffe://cluster.local/ns/foo/sa/httpbin");
}

#[test]
fn trust_domain_id_has_an_empty_path() {
    let id = id("spiffe://example.org");
    assert_eq!(id.path(), "");
    assert_eq!(id.segments().count(), 0);
    assert_eq!(id.to_string(), "spiffe://example.org");
}

#[test]
fn from_str_and_display_agree() {
    let id: SpiffeId = "spiffe://td_1-x.y/A.b-c_D/9".parse().unwrap();
    assert_eq!(id.to_string().parse::<SpiffeId>().unwrap(), id);
}

// ---- one passing and one failing case per rule -------------------------------------

#[test]
fn empty_id_is_rejected() {
    assert_eq!(err(""), SpiffeError::Empty);
}

#[test]
fn id_of_2048_bytes_passes_and_2049_fails() {
    let prefix = "spiffe://td/";
    let ok = format!("{prefix}{}", "a".repeat(2048 - prefix.len()));
    assert_eq!(id(&ok).to_string().len(), 2048);
    let long = format!("{ok}b");
    assert_eq!(err(&long), SpiffeError::TooLong { len: 2049 });
}

#[test]
fn scheme_must_be_spiffe() {
    id("spiffe://td/x");
    assert_eq!(
        err("https://td/x"),
        SpiffeError::WrongScheme {
            scheme: "https".into()
        }
    );
    assert_eq!(
        err("cluster.local/ns/foo/sa/bar"),
        SpiffeError::MissingScheme
    );
    assert_eq!(err("spiffe:/td/x"), SpiffeError::MissingScheme);
}

#[test]
fn scheme_must_be_lowercase() {
    assert_eq!(err("SPIFFE://td/x"), SpiffeError::SchemeNotLowercase);
    assert_eq!(err("Spiffe://td/x"), SpiffeError::SchemeNotLowercase);
}

#[test]
fn trust_domain_must_not_be_empty() {
    id("spiffe://a");
    assert_eq!(err("spiffe://"), SpiffeError::EmptyTrustDomain);
    assert_eq!(err("spiffe:///ns/foo"), SpiffeError::EmptyTrustDomain);
}

#[test]
fn trust_domain_of_255_bytes_passes_and_256_fails() {
    id(&format!("spiffe://{}/x", "a".repeat(255)));
    assert_eq!(
        err(&format!("spiffe://{}/x", "a".repeat(256))),
        SpiffeError::TrustDomainTooLong { len: 256 }
    );
}

#[test]
fn trust_domain_must_be_lowercase() {
    id("spiffe://cluster.local");
    let e = err("spiffe://Cluster.Local/ns/a");
    assert_eq!(
        e,
        SpiffeError::TrustDomainUppercase {
            lowercase: "cluster.local".into()
        }
    );
    assert_eq!(
        e.to_string(),
        "trust domain must be lowercase: write `cluster.local`"
    );
}

#[test]
fn trust_domain_characters_are_limited() {
    id("spiffe://a-b_c.9");
    assert_eq!(
        err("spiffe://a%2eb/x"),
        SpiffeError::TrustDomainChar {
            ch: '%',
            offset: 10
        }
    );
    assert_eq!(
        err("spiffe://é/x"),
        SpiffeError::TrustDomainChar {
            ch: 'é', offset: 9
        }
    );
    // Uppercase mixed with another bad character: report the character.
    assert_eq!(
        err("spiffe://A!/x"),
        SpiffeError::TrustDomainChar { ch: 'A', offset: 9 }
    );
}

#[test]
fn userinfo_is_rejected() {
    assert_eq!(err("spiffe://user@td/x"), SpiffeError::Userinfo);
    assert_eq!(err("spiffe://user:pw@td/x"), SpiffeError::Userinfo);
}

#[test]
fn port_is_rejected() {
    assert_eq!(err("spiffe://td:8080/x"), SpiffeError::Port);
    assert_eq!(err("spiffe://td:443"), SpiffeError::Port);
}

#[test]
fn query_is_rejected() {
    assert_eq!(err("spiffe://td/x?a=b"), SpiffeError::Query);
    assert_eq!(err("spiffe://td?x"), SpiffeError::Query);
}

#[test]
fn fragment_is_rejected() {
    assert_eq!(err("spiffe://td/x#frag"), SpiffeError::Fragment);
}

#[test]
fn empty_path_segment_is_rejected() {
    id("spiffe://td/a/b");
    assert_eq!(
        err("spiffe://td/a//b"),
        SpiffeError::EmptySegment { offset: 14 }
    );
    assert_eq!(
        err("spiffe://td//a"),
        SpiffeError::EmptySegment { offset: 12 }
    );
}

#[test]
fn dot_segments_are_rejected() {
    id("spiffe://td/a/.b/..c");
    assert_eq!(
        err("spiffe://td/a/./b"),
        SpiffeError::DotSegment { offset: 14 }
    );
    assert_eq!(
        err("spiffe://td/a/.."),
        SpiffeError::DotSegment { offset: 14 }
    );
}

#[test]
fn trailing_slash_is_rejected() {
    assert_eq!(err("spiffe://td/"), SpiffeError::TrailingSlash);
    assert_eq!(err("spiffe://td/a/"), SpiffeError::TrailingSlash);
}

#[test]
fn path_characters_are_limited() {
    id("spiffe://td/AZaz09.-_");
    assert_eq!(
        err("spiffe://td/a/b%20c"),
        SpiffeError::PathChar {
            ch: '%',
            offset: 15
        }
    );
    assert_eq!(
        err("spiffe://td/a:b"),
        SpiffeError::PathChar {
            ch: ':',
            offset: 13
        }
    );
    assert_eq!(
        err("spiffe://td/*"),
        SpiffeError::PathChar {
            ch: '*',
            offset: 12
        }
    );
}

#[test]
fn every_error_message_is_lowercase_text_that_says_what_to_do() {
    let errors = [
        err("https://td/x"),
        err("spiffe://td:1/x"),
        err("spiffe://td/a/"),
        err("spiffe://td/a b"),
    ];
    for e in errors {
        let msg = e.to_string();
        assert!(msg.contains("must") || msg.contains("use only"), "{msg}");
    }
}

// ---- Istio identity ---------------------------------------------------------------

#[test]
fn istio_identity_is_read_from_exactly_ns_and_sa() {
    assert_eq!(
        id("spiffe://cluster.local/ns/foo/sa/httpbin").istio_identity(),
        Some(IstioIdentity {
            namespace: "foo".into(),
            service_account: "httpbin".into()
        })
    );
    for other in [
        "spiffe://cluster.local",
        "spiffe://cluster.local/ns/foo",
        "spiffe://cluster.local/ns/foo/sa/httpbin/extra",
        "spiffe://cluster.local/sa/foo/ns/httpbin",
        "spiffe://cluster.local/NS/foo/SA/httpbin",
    ] {
        assert_eq!(id(other).istio_identity(), None, "{other}");
    }
}

#[test]
fn istio_constructor_builds_and_validates() {
    let id = SpiffeId::istio("cluster.local", "foo", "sleep").unwrap();
    assert_eq!(id.to_string(), "spiffe://cluster.local/ns/foo/sa/sleep");
    assert_eq!(id.istio_identity().unwrap().to_string(), "ns/foo/sa/sleep");
    assert!(SpiffeId::istio("Cluster.local", "foo", "sleep").is_err());
}

// ---- patterns ---------------------------------------------------------------------

fn pattern(s: &str) -> SpiffePattern {
    SpiffePattern::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

#[test]
fn star_matches_exactly_one_segment() {
    let p = pattern("spiffe://cluster.local/ns/foo/sa/*");
    assert!(p.matches(&id("spiffe://cluster.local/ns/foo/sa/sleep")));
    assert!(!p.matches(&id("spiffe://cluster.local/ns/foo/sa")));
    assert!(!p.matches(&id("spiffe://cluster.local/ns/foo/sa/sleep/x")));
    assert!(!p.matches(&id("spiffe://cluster.local/ns/bar/sa/sleep")));
    let gw = pattern("spiffe://cluster.local/ns/*/sa/istio-ingressgateway-service-account");
    assert!(gw.matches(&id(
        "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"
    )));
    assert!(!gw.matches(&id("spiffe://cluster.local/ns/istio-system/sa/other")));
}

#[test]
fn final_double_star_matches_one_or_more_segments() {
    let p = pattern("spiffe://cluster.local/ns/foo/**");
    assert!(p.matches(&id("spiffe://cluster.local/ns/foo/sa")));
    assert!(p.matches(&id("spiffe://cluster.local/ns/foo/sa/sleep")));
    assert!(!p.matches(&id("spiffe://cluster.local/ns/foo")));
    assert!(!p.matches(&id("spiffe://cluster.local/ns/bar/sa/sleep")));
}

#[test]
fn literal_pattern_matches_only_that_id() {
    let p = pattern("spiffe://cluster.local/ns/foo/sa/sleep");
    assert!(p.matches(&id("spiffe://cluster.local/ns/foo/sa/sleep")));
    assert!(!p.matches(&id("spiffe://cluster.local/ns/foo/sa/sleep2")));
    assert!(!p.matches(&id("spiffe://other.local/ns/foo/sa/sleep")));
    let td = pattern("spiffe://cluster.local");
    assert!(td.matches(&id("spiffe://cluster.local")));
    assert!(!td.matches(&id("spiffe://cluster.local/ns")));
}

#[test]
fn star_trust_domain_matches_any_trust_domain() {
    let p = pattern("spiffe://*/ns/istio-system/sa/*");
    assert!(p.matches(&id("spiffe://cluster.local/ns/istio-system/sa/gw")));
    assert!(p.matches(&id("spiffe://east.example/ns/istio-system/sa/gw")));
    assert!(!p.matches(&id("spiffe://east.example/ns/default/sa/gw")));
}

#[test]
fn pattern_wildcards_must_be_whole_segments() {
    assert_eq!(
        SpiffePattern::parse("spiffe://td/ns/foo/sa/sleep-*"),
        Err(SpiffeError::PartialWildcard { offset: 22 })
    );
    assert_eq!(
        SpiffePattern::parse("spiffe://td/ns/***"),
        Err(SpiffeError::PartialWildcard { offset: 15 })
    );
    assert!(SpiffePattern::parse("spiffe://*.local/x").is_err());
}

#[test]
fn double_star_may_only_end_a_pattern() {
    assert_eq!(
        SpiffePattern::parse("spiffe://td/**/sa/x"),
        Err(SpiffeError::DoubleStarNotLast { offset: 12 })
    );
}

#[test]
fn patterns_follow_the_id_rules_for_their_literal_parts() {
    assert_eq!(
        SpiffePattern::parse("spiffe://TD/*"),
        Err(SpiffeError::TrustDomainUppercase {
            lowercase: "td".into()
        })
    );
    assert_eq!(
        SpiffePattern::parse("spiffe://td/*/"),
        Err(SpiffeError::TrailingSlash)
    );
    assert_eq!(
        SpiffePattern::parse("spiffe://td/*?x"),
        Err(SpiffeError::Query)
    );
    let p: SpiffePattern = "spiffe://td/*".parse().unwrap();
    assert_eq!(p.to_string(), "spiffe://td/*");
    assert_eq!(p.as_str(), "spiffe://td/*");
}

// ---- properties -------------------------------------------------------------------

fn segment() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9._-]{1,12}".prop_filter("no dot segments", |s| s != "." && s != "..")
}

fn valid_id() -> impl Strategy<Value = String> {
    ("[a-z0-9._-]{1,40}", prop::collection::vec(segment(), 0..6)).prop_map(|(td, segs)| {
        let mut s = format!("spiffe://{td}");
        for seg in segs {
            s.push('/');
            s.push_str(&seg);
        }
        s
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn generated_valid_ids_parse_and_round_trip(s in valid_id()) {
        let id = SpiffeId::parse(&s).unwrap();
        prop_assert_eq!(id.to_string(), s.clone());
        prop_assert_eq!(s.parse::<SpiffeId>().unwrap(), id.clone());
        // An ID used as a pattern matches itself, and `**` under its trust domain matches it.
        prop_assert!(SpiffePattern::parse(&s).unwrap().matches(&id));
        if !id.path().is_empty() {
            let any = format!("spiffe://{}/**", id.trust_domain());
            prop_assert!(SpiffePattern::parse(&any).unwrap().matches(&id));
        }
    }

    #[test]
    fn arbitrary_text_never_panics(s in "\\PC{0,80}") {
        if let Ok(id) = SpiffeId::parse(&s) {
            prop_assert_eq!(id.to_string(), s.clone());
        }
        if let Ok(p) = SpiffePattern::parse(&s) {
            let _ = p.matches(&SpiffeId::parse("spiffe://td/a").unwrap());
        }
    }
}

#[test]
fn serde_reads_ids_and_patterns_as_strings_and_rejects_invalid_ones() {
    let id: policy::spiffe::SpiffeId =
        serde_json::from_str("\"spiffe://cluster.local/ns/foo/sa/sleep\"").unwrap();
    assert_eq!(id.trust_domain(), "cluster.local");
    assert_eq!(
        serde_json::to_string(&id).unwrap(),
        "\"spiffe://cluster.local/ns/foo/sa/sleep\""
    );
    assert!(serde_json::from_str::<policy::spiffe::SpiffeId>("\"spiffe://UPPER/x\"").is_err());
    let p: policy::spiffe::SpiffePattern =
        serde_json::from_str("\"spiffe://cluster.local/ns/*/sa/sleep\"").unwrap();
    assert!(p.matches(&id));
    assert!(p.matches(
        &policy::spiffe::SpiffeId::parse("spiffe://cluster.local/ns/bar/sa/sleep").unwrap()
    ));
    assert!(
        serde_json::from_str::<policy::spiffe::SpiffePattern>("\"spiffe://td/ns/sa-*\"").is_err()
    );
}

/// Istio issues `spiffe://<trust domain>/ns/<namespace>/sa/<service account>`
/// (Istio's security concepts); a pattern of another shape admits none of them.
#[test]
fn a_pattern_of_another_shape_than_istios_identities_is_flagged() {
    for ok in [
        "spiffe://cluster.local/ns/foo/sa/sleep",
        "spiffe://cluster.local/ns/foo/sa/*",
        "spiffe://cluster.local/ns/*/sa/*",
        "spiffe://cluster.local/ns/**",
        "spiffe://cluster.local/**",
        "spiffe://*/ns/istio-system/sa/*",
    ] {
        assert!(
            SpiffePattern::parse(ok).unwrap().can_match_istio_identity(),
            "{ok}"
        );
    }
    for none in [
        "spiffe://cluster.local",
        "spiffe://cluster.local/ns/*",
        "spiffe://cluster.local/ns/foo",
        "spiffe://cluster.local/ns/foo/sa/sleep/extra",
        "spiffe://cluster.local/namespace/foo/sa/*",
        "spiffe://cluster.local/ns/foo/serviceaccount/*",
    ] {
        assert!(
            !SpiffePattern::parse(none)
                .unwrap()
                .can_match_istio_identity(),
            "{none}"
        );
    }
}
