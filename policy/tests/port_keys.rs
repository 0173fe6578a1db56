//! Which `portLevelMtls` keys name a port. Expected values restate two Go
//! readers: the PeerAuthentication CRD's CEL rule
//! `self.all(key, 0 < int(key) && int(key) <= 65535)` (cel-go converts with
//! `strconv.ParseInt(s, 10, 64)`: no blanks, a sign and leading zeros allowed)
//! and istiod's decoding of the spec with golang/protobuf `jsonpb`, which reads
//! a uint32 map key with `encoding/json` (no sign, no leading zero).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use policy::{check, MeshConfig};

fn policy_with_port_key(key: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: a, namespace: foo}}
spec:
  selector: {{matchLabels: {{app: httpbin}}}}
  portLevelMtls:
    {key}: {{mode: DISABLE}}
"
    )
}

/// The codes `check` reports for a policy whose only port key is `key`
/// (written into the YAML as is, so quote it to get a string key).
fn codes(key: &str) -> Vec<String> {
    let report = check(
        &[("pa.yaml", &policy_with_port_key(key))],
        MeshConfig::default(),
    );
    report.diagnostics.into_iter().map(|d| d.code).collect()
}

#[test]
fn a_plain_decimal_port_key_from_1_to_65535_is_accepted() {
    for key in ["\"1\"", "\"8080\"", "\"65535\""] {
        assert!(
            !codes(key).iter().any(|c| c == "pa-port-out-of-range"),
            "{key}"
        );
    }
}

#[test]
fn a_port_key_the_api_server_or_istiod_refuses_is_pa_port_out_of_range() {
    // Blank-padded: CEL's int() fails, the API server refuses the object.
    // Signed or zero-padded: CEL accepts, istiod's jsonpb fails to decode it.
    // Out of range, empty, or not a number: CEL refuses.
    for key in [
        "\" 8080\"",
        "\"8080 \"",
        "\"+8080\"",
        "\"08080\"",
        "\"0\"",
        "\"65536\"",
        "\"-1\"",
        "\"\"",
        "\"8e3\"",
        "\"http\"",
        "\"99999999999\"",
    ] {
        assert!(
            codes(key).iter().any(|c| c == "pa-port-out-of-range"),
            "{key}: {:?}",
            codes(key)
        );
    }
}

#[test]
fn the_message_for_a_badly_spelled_port_key_says_to_write_plain_digits() {
    let report = check(
        &[("pa.yaml", &policy_with_port_key("\"08080\""))],
        MeshConfig::default(),
    );
    let d = report
        .diagnostics
        .iter()
        .find(|d| d.code == "pa-port-out-of-range")
        .unwrap();
    assert_eq!(
        d.message,
        "port \"08080\" must be a plain decimal number in range 1..65535 (no sign, spaces or leading zeros)"
    );
    assert_eq!(d.location.as_ref().map(|l| l.line), Some(7));
}

#[test]
fn an_unquoted_yaml_integer_key_is_its_decimal_port_and_is_applied() {
    // kubectl sends these as the JSON keys "8080" (YAML → JSON keeps the value).
    for key in ["8080", "0x1F90"] {
        assert_eq!(codes(key), Vec::<String>::new(), "{key}");
        let report = check(
            &[("pa.yaml", &policy_with_port_key(key))],
            MeshConfig::default(),
        );
        let p = &report.mesh.peer_authentications[0];
        let ports: Vec<u32> = p.port_level.keys().copied().collect();
        assert_eq!(ports, [8080], "{key}");
    }
}

#[test]
fn a_badly_spelled_port_key_is_not_applied() {
    let report = check(
        &[("pa.yaml", &policy_with_port_key("\"+8080\""))],
        MeshConfig::default(),
    );
    assert!(report
        .mesh
        .peer_authentications
        .iter()
        .all(|p| p.port_level.is_empty()));
}

#[test]
fn two_yaml_keys_spelling_one_port_are_refused_as_a_duplicate_key() {
    // `8080:` and `0x1F90:` are the same key once read, as they are for kubectl.
    let yaml = "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: a, namespace: foo}
spec:
  selector: {matchLabels: {app: httpbin}}
  portLevelMtls:
    8080: {mode: DISABLE}
    0x1F90: {mode: STRICT}
";
    let report = check(&[("pa.yaml", yaml)], MeshConfig::default());
    let d = &report.diagnostics[0];
    assert_eq!(d.code, "input-yaml");
    assert!(
        d.message.contains("duplicate key \"8080\""),
        "{}",
        d.message
    );
    assert_eq!(d.location.as_ref().map(|l| l.line), Some(8));
}
