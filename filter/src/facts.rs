//! What the filter knows about a request or connection, read from Envoy's
//! attributes through the [`Host`] trait so the gathering is tested natively.
//!
//! Encodings (measured on Envoy 1.40, see `shared/notes/envoy-wasm.md`): booleans
//! are one byte, ports 8-byte little-endian integers, strings raw UTF-8.

use std::borrow::Cow;
use std::collections::BTreeMap;

/// The few host services the decision needs.
pub trait Host {
    /// An Envoy attribute such as `["connection", "mtls"]`; `None` when absent or
    /// when the host refused (never panics).
    fn property(&self, path: &[&str]) -> Option<Vec<u8>>;

    /// [`Host::property`], telling an absent attribute (`Ok(None)`) from one
    /// the host has but would not hand over (`Err`).
    fn attribute(&self, path: &[&str]) -> Result<Option<Vec<u8>>, Refused> {
        Ok(self.property(path))
    }
}

/// The host refused an attribute it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused;

/// The pod an Istio sidecar runs in, from the node metadata its bootstrap
/// carries: `NAMESPACE`, and `LABELS`, which pilot-agent fills with the pod's
/// labels (the downward API's, so the injector's `security.istio.io/tlsMode`
/// and `service.istio.io/canonical-*` among them, all but `pod-template-hash`).
/// Envoy 1.40 serves them as `xds.node.metadata.*` (not `node.*`), already at
/// configure time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
}

/// Why the pod could not be known although Envoy's node says there is one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PodError {
    #[error("Envoy refused to hand over the node metadata's {0}")]
    Refused(&'static str),
    #[error("the node metadata's {0} is not in the encoding Envoy uses")]
    Encoding(&'static str),
    #[error("the node metadata's {field} holds {value:?}, which no Kubernetes pod has (a hand-written bootstrap? istio-agent writes the pod's namespace and labels as strings)")]
    NotKubernetes { field: &'static str, value: String },
}

impl Pod {
    /// `Ok(None)` when the node names no namespace (not an Istio sidecar, e.g.
    /// a hand-written Envoy): then the pluginConfig's `workload` is all there is.
    pub fn from_node(host: &dyn Host) -> Result<Option<Pod>, PodError> {
        const NAMESPACE: &str = "NAMESPACE";
        const LABELS: &str = "LABELS";
        let read = |key: &'static str| {
            host.attribute(&["xds", "node", "metadata", key])
                .map_err(|Refused| PodError::Refused(key))
        };
        let Some(namespace) = read(NAMESPACE)? else {
            return Ok(None);
        };
        let namespace = String::from_utf8(namespace).map_err(|_| PodError::Encoding(NAMESPACE))?;
        if namespace.is_empty() {
            return Ok(None);
        }
        // Envoy hands a number, a boolean or a nested value over as bytes that
        // may well be UTF-8: only Kubernetes' own syntax tells them apart.
        let not_kubernetes = |field, value: &str| PodError::NotKubernetes {
            field,
            value: value.to_string(),
        };
        if !policy::validate::is_namespace_name(&namespace) {
            return Err(not_kubernetes(NAMESPACE, &namespace));
        }
        // Istio leaves LABELS out of a pod without labels (`omitempty`).
        let labels = match read(LABELS)? {
            None => BTreeMap::new(),
            Some(bytes) => string_pairs(&bytes).ok_or(PodError::Encoding(LABELS))?,
        };
        for (k, v) in &labels {
            if !policy::validate::is_label_key(k) || !policy::validate::is_label_value(v) {
                return Err(not_kubernetes(LABELS, &format!("{k}={v}")));
            }
        }
        Ok(Some(Pod { namespace, labels }))
    }
}

/// The proxy-wasm pairs encoding Envoy uses for a map (an attribute such as
/// `LABELS`, a header map): a count, a key and a value length per pair (u32,
/// little-endian), then each key and value followed by a NUL. `None` unless
/// every byte is accounted for.
pub fn pairs(bytes: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    let word = |at: usize| -> Option<usize> {
        let b: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(b)).ok()
    };
    let count = word(0)?;
    let mut data = count.checked_mul(8)?.checked_add(4)?;
    let mut out = Vec::new();
    for i in 0..count {
        let mut text = |len: usize| -> Option<&[u8]> {
            let end = data.checked_add(len)?;
            let t = bytes.get(data..end)?;
            (bytes.get(end) == Some(&0)).then_some(())?;
            data = end + 1;
            Some(t)
        };
        let (klen, vlen) = (word(4 + 8 * i)?, word(8 + 8 * i)?);
        let key = text(klen)?;
        let value = text(vlen)?;
        out.push((key, value));
    }
    (data == bytes.len()).then_some(out)
}

/// [`pairs`] whose keys and values are all UTF-8, as a map. Inserted one by
/// one: collecting into a `BTreeMap` links a sort and a bulk builder (~6 KB of
/// module code) for the handful of labels a pod has.
fn string_pairs(bytes: &[u8]) -> Option<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (k, v) in pairs(bytes)? {
        let k = std::str::from_utf8(k).ok()?;
        let v = std::str::from_utf8(v).ok()?;
        out.insert(k.to_string(), v.to_string());
    }
    Some(out)
}

/// The transport security of the downstream connection: mutual TLS, or not
/// (no TLS, or TLS without a client certificate; both are `plaintext` to
/// PeerAuthentication and the filter tells them apart nowhere, so it does not
/// spend a host call on `connection.tls_version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    Mtls,
    Plaintext,
}

impl Security {
    /// Istio's `connection_security_policy` label values.
    pub fn label(self) -> &'static str {
        match self {
            Security::Mtls => "mutual_tls",
            Security::Plaintext => "plaintext",
        }
    }
}

/// Everything gathered for one decision: the connection's facts (reachable
/// directly through `Deref`) plus what belongs to this request. The host layer
/// borrows the facts it caches per connection instead of copying them for every
/// decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts<'c> {
    pub conn: Cow<'c, ConnectionFacts>,
    /// `x-forwarded-client-cert` as it reached the filter (after Envoy's rewrite).
    pub xfcc: Option<String>,
    /// Seconds since the Unix epoch, for certificate validity checks.
    pub now_unix: Option<i64>,
    /// The peer certificate's subject and first DNS SAN, read only when the
    /// last XFCC element claims either (`None`: not read).
    pub peer_names: Option<PeerNames>,
}

/// What an XFCC element's `Subject=` and `DNS=` are checked against. Envoy
/// writes both from the same certificate accessors its attributes use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerNames {
    /// `connection.subject_peer_certificate` (RFC 2253 text; empty for an SVID).
    pub subject: Option<String>,
    /// `connection.dns_san_peer_certificate`: the first DNS SAN only.
    pub dns: Option<String>,
}

impl PeerNames {
    /// Read from the connection; a value that cannot be read is `None`, which
    /// matches no claim.
    pub fn gather(host: &dyn Host) -> PeerNames {
        PeerNames {
            subject: string(host, &["connection", "subject_peer_certificate"]),
            dns: string(host, &["connection", "dns_san_peer_certificate"]),
        }
    }
}

impl std::ops::Deref for Facts<'_> {
    type Target = ConnectionFacts;
    fn deref(&self) -> &ConnectionFacts {
        &self.conn
    }
}

fn string(host: &dyn Host, path: &[&str]) -> Option<String> {
    host.property(path)
        .and_then(|b| String::from_utf8(b).ok())
        .filter(|s| !s.is_empty())
}

/// A boolean attribute (one byte); absent or unreadable reads as `false`.
pub fn flag(host: &dyn Host, path: &[&str]) -> bool {
    matches!(host.property(path).as_deref(), Some([1, ..]))
}

fn port(host: &dyn Host, path: &[&str]) -> Option<u32> {
    let bytes = host.property(path)?;
    let arr: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
    u32::try_from(u64::from_le_bytes(arr)).ok()
}

/// The connection-level part of [`Facts`]: the same for every request on one
/// connection, so the host layer reads it once per connection (property reads
/// are the filter's main per-request cost). Only what a decision uses is read:
/// the source address, needed only in a log line, is read when one is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionFacts {
    pub security: Security,
    /// First URI SAN of the peer certificate, unparsed (parsed during the decision).
    pub peer_uri: Option<String>,
    /// Lowercase hex SHA-256 of the peer certificate (DER).
    pub peer_sha256: Option<String>,
    pub destination_port: Option<u32>,
}

impl ConnectionFacts {
    /// Read the connection attributes. Call once the TLS handshake is done: for a
    /// network filter that is `on_downstream_data`, not `on_new_connection`.
    pub fn gather(host: &dyn Host) -> ConnectionFacts {
        let mtls = flag(host, &["connection", "mtls"]);
        let peer = |name: &str| {
            if mtls {
                string(host, &["connection", name])
            } else {
                None
            }
        };
        ConnectionFacts {
            security: if mtls {
                Security::Mtls
            } else {
                Security::Plaintext
            },
            peer_uri: peer("uri_san_peer_certificate"),
            peer_sha256: peer("sha256_peer_certificate_digest").map(|s| s.to_ascii_lowercase()),
            destination_port: port(host, &["destination", "port"]),
        }
    }
}

impl ConnectionFacts {
    /// The facts Envoy's own XFCC element states, for a connection manager
    /// that uses `APPEND_FORWARD` or `SANITIZE_SET` (see
    /// [`crate::config::Config::xfcc_from_envoy`]): there a header exists only
    /// on a connection with a client certificate, and its last element is
    /// Envoy's, with the certificate's `Hash` and (with `uri: true` in
    /// `set_current_client_cert_details`, as Istio's sidecar sets it) its URI
    /// SANs.
    ///
    /// `None` when the header alone cannot say which element is Envoy's: it
    /// holds more than one, or none that parses, or is blank, or its one
    /// element is not in the exact shape Envoy writes for an SVID (below). Envoy writes `URI=`
    /// and `DNS=` unquoted, so a peer certificate whose SAN holds a `,` splits
    /// Envoy's element in two and the peer's made-up half comes last; only the
    /// connection's own digest tells them apart.
    ///
    /// With the facts come the element's own `Subject=` and first `DNS=`, the
    /// certificate's as Envoy wrote them (`None` without a header).
    pub fn from_envoy_xfcc(
        header: Option<&str>,
        destination_port: Option<u32>,
    ) -> Option<(ConnectionFacts, Option<PeerNames>)> {
        let Some(header) = header else {
            let facts = ConnectionFacts {
                security: Security::Plaintext,
                peer_uri: None,
                peer_sha256: None,
                destination_port,
            };
            return Some((facts, None));
        };
        let mut elements = policy::xfcc::parse(header).ok()?.elements;
        let only = elements.pop().filter(|_| elements.is_empty())?;
        // Envoy writes a SAN unquoted, so one with `;` adds pairs to its own
        // element: `URI=<gateway>;DNS=x` from a URI SAN `<gateway>;DNS=x`, or a
        // second `URI=`, or a `By=` after the URI. Only an element exactly as
        // Envoy writes an SVID's (its key order and quoting, at most one `URI=`,
        // no `DNS=`) is taken from the header; the connection decides the rest.
        if !in_envoy_svid_shape(header, &only) {
            return None;
        }
        let facts = ConnectionFacts {
            security: Security::Mtls,
            // Envoy writes `URI=` (empty) for a certificate without a URI SAN.
            peer_uri: only.uri.first().filter(|u| !u.is_empty()).cloned(),
            peer_sha256: only.hash.map(|h| h.to_ascii_lowercase()),
            destination_port,
        };
        let names = PeerNames {
            subject: only.subject,
            dns: only.dns.into_iter().next(),
        };
        Some((facts, Some(names)))
    }
}

/// Whether `header` is exactly what Envoy writes for this element of an SVID
/// (`By=…;Hash=…;Subject="…";URI=…`, each part optional, at most one `URI=`,
/// nothing else). Composed here rather than with policy's serializer, whose
/// quoting and URL-encoding code would add ~4 KB to the module for the `Cert=`
/// and `Chain=` that never take this path.
fn in_envoy_svid_shape(header: &str, e: &policy::xfcc::Element) -> bool {
    if e.cert.is_some() || e.chain.is_some() || !e.dns.is_empty() || e.uri.len() > 1 {
        return false;
    }
    let mut expect = String::with_capacity(header.len() + 1);
    for by in &e.by {
        expect.push_str("By=");
        expect.push_str(by);
        expect.push(';');
    }
    if let Some(hash) = &e.hash {
        expect.push_str("Hash=");
        expect.push_str(hash);
        expect.push(';');
    }
    if let Some(subject) = &e.subject {
        // `;` too: RFC 2253 text escapes it (`\;`), so an unescaped one is a
        // quote a peer opened in its own header that swallowed Envoy's
        // `,By=…;Hash=…;URI=` (a URI SAN with `"` then closes it).
        if subject.contains(['"', '\\', ';']) {
            return false;
        }
        expect.push_str("Subject=\"");
        expect.push_str(subject);
        expect.push_str("\";");
    }
    for uri in &e.uri {
        expect.push_str("URI=");
        expect.push_str(uri);
        expect.push(';');
    }
    expect.pop();
    expect == header
}

/// The destination port (`destination.port`).
pub fn destination_port(host: &dyn Host) -> Option<u32> {
    port(host, &["destination", "port"])
}

/// The downstream peer's address (`source.address`), for log lines.
pub fn source_address(host: &dyn Host) -> Option<String> {
    string(host, &["source", "address"])
}

/// Envoy's id of the downstream connection (`connection.id`), the key under
/// which [`ConnectionFacts`] can be reused across requests.
pub fn connection_id(host: &dyn Host) -> Option<u64> {
    let bytes = host.property(&["connection", "id"])?;
    let arr: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
    Some(u64::from_le_bytes(arr))
}

impl<'c> Facts<'c> {
    /// Read everything at once (see [`ConnectionFacts::gather`] for the timing rule).
    pub fn gather(host: &dyn Host, xfcc: Option<String>, now_unix: Option<i64>) -> Facts<'c> {
        Facts {
            conn: Cow::Owned(ConnectionFacts::gather(host)),
            xfcc,
            now_unix,
            peer_names: None,
        }
    }

    /// Combine connection facts with the request's XFCC header and the time.
    pub fn new(conn: &'c ConnectionFacts, xfcc: Option<String>, now_unix: Option<i64>) -> Self {
        Facts {
            conn: Cow::Borrowed(conn),
            xfcc,
            now_unix,
            peer_names: None,
        }
    }
}

#[cfg(test)]
pub(crate) mod fake {
    use super::Host;
    use std::collections::BTreeMap;

    /// A host whose attributes are a map, for native tests.
    #[derive(Default)]
    pub struct FakeHost {
        pub props: BTreeMap<String, Vec<u8>>,
    }

    impl FakeHost {
        pub fn with(mut self, path: &str, value: &[u8]) -> Self {
            self.props.insert(path.to_string(), value.to_vec());
            self
        }
        pub fn with_port(self, path: &str, port: u64) -> Self {
            self.with(path, &port.to_le_bytes())
        }
    }

    /// The ABI's pairs encoding, as Envoy writes a map (a header map, or a
    /// node metadata struct).
    pub fn encode_pairs<'a>(pairs: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> Vec<u8> {
        let pairs: Vec<_> = pairs.collect();
        let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
        for (k, v) in &pairs {
            out.extend((k.len() as u32).to_le_bytes());
            out.extend((v.len() as u32).to_le_bytes());
        }
        for (k, v) in &pairs {
            out.extend(*k);
            out.push(0);
            out.extend(*v);
            out.push(0);
        }
        out
    }

    impl Host for FakeHost {
        fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
            self.props.get(&path.join(".")).cloned()
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::fake::{encode_pairs, FakeHost};
    use super::*;

    /// `xds.node.metadata.LABELS` exactly as Envoy 1.40 returned it for a node
    /// with `LABELS: {app: httpbin, version: v1, security.istio.io/tlsMode:
    /// istio}` (a probe module's hex dump; Envoy's own key order).
    const ENVOY_LABELS: &str = "0300000019000000050000000300000007000000070000000200000073656375726974792e697374696f2e696f2f746c734d6f646500697374696f00617070006874747062696e0076657273696f6e00763100";

    fn unhex(h: &str) -> Vec<u8> {
        (0..h.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn the_pod_is_read_from_envoys_node_metadata_as_envoy_encodes_it() {
        let host = FakeHost::default()
            .with("xds.node.metadata.NAMESPACE", b"foo")
            .with("xds.node.metadata.LABELS", &unhex(ENVOY_LABELS));
        let pod = Pod::from_node(&host).unwrap().unwrap();
        assert_eq!(pod.namespace, "foo");
        let labels: Vec<(&str, &str)> = pod
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            labels,
            [
                ("app", "httpbin"),
                ("security.istio.io/tlsMode", "istio"),
                ("version", "v1")
            ]
        );
        // `LABELS: {}` comes back as a count of zero; a pod without labels has
        // no LABELS at all (Istio's `omitempty`).
        let empty = FakeHost::default()
            .with("xds.node.metadata.NAMESPACE", b"foo")
            .with("xds.node.metadata.LABELS", &[0, 0, 0, 0]);
        assert!(Pod::from_node(&empty).unwrap().unwrap().labels.is_empty());
        let none = FakeHost::default().with("xds.node.metadata.NAMESPACE", b"foo");
        assert!(Pod::from_node(&none).unwrap().unwrap().labels.is_empty());
        // Not an Istio sidecar: no pod.
        assert_eq!(Pod::from_node(&FakeHost::default()), Ok(None));
    }

    /// What Envoy hands over for a hand-written bootstrap whose metadata has a
    /// number where a label value belongs (8 bytes of a double: UTF-8, but no
    /// label value) or a namespace no pod can be in: refused, not resolved
    /// with a made-up pod (a STRICT policy became PERMISSIVE).
    #[test]
    fn node_metadata_that_no_kubernetes_pod_has_is_refused() {
        let labels =
            encode_pairs([(b"n".as_slice(), [0, 0, 0, 0, 0, 0, 8, 64].as_slice())].into_iter());
        let host = FakeHost::default()
            .with("xds.node.metadata.NAMESPACE", b"foo")
            .with("xds.node.metadata.LABELS", &labels);
        assert!(matches!(
            Pod::from_node(&host),
            Err(PodError::NotKubernetes {
                field: "LABELS",
                ..
            })
        ));
        for ns in [b"Foo".as_slice(), b"foo ", &5f64.to_le_bytes()[..]] {
            let host = FakeHost::default().with("xds.node.metadata.NAMESPACE", ns);
            let e = Pod::from_node(&host).unwrap_err();
            assert!(
                matches!(
                    e,
                    PodError::NotKubernetes {
                        field: "NAMESPACE",
                        ..
                    } | PodError::Encoding("NAMESPACE")
                ),
                "{e:?}"
            );
        }
    }

    #[test]
    fn labels_in_any_other_encoding_are_an_error_not_an_empty_set() {
        let good = unhex(ENVOY_LABELS);
        for bad in [
            good[..good.len() - 1].to_vec(),
            [good.as_slice(), b"x"].concat(),
            vec![1, 0, 0],
            good.iter()
                .map(|b| if *b == 0x76 { 0xff } else { *b })
                .collect(),
        ] {
            let host = FakeHost::default()
                .with("xds.node.metadata.NAMESPACE", b"foo")
                .with("xds.node.metadata.LABELS", &bad);
            assert_eq!(Pod::from_node(&host), Err(PodError::Encoding("LABELS")));
        }
    }

    #[test]
    fn an_mtls_connection_yields_the_peer_certificate_facts() {
        let host = FakeHost::default()
            .with("connection.mtls", &[1])
            .with("connection.tls_version", b"TLSv1.3")
            .with(
                "connection.uri_san_peer_certificate",
                b"spiffe://cluster.local/ns/foo/sa/sleep",
            )
            .with("connection.sha256_peer_certificate_digest", b"ABCDEF")
            .with_port("destination.port", 8080)
            .with("source.address", b"127.0.0.1:5555");
        let f = Facts::gather(&host, None, None);
        assert_eq!(f.security, Security::Mtls);
        assert_eq!(
            f.peer_uri.as_deref(),
            Some("spiffe://cluster.local/ns/foo/sa/sleep")
        );
        assert_eq!(f.peer_sha256.as_deref(), Some("abcdef"));
        assert_eq!(f.destination_port, Some(8080));
        assert_eq!(source_address(&host).as_deref(), Some("127.0.0.1:5555"));
    }

    #[test]
    fn missing_or_short_attributes_read_as_plaintext_and_unknown_port() {
        let f = Facts::gather(
            &FakeHost::default().with("destination.port", &[1, 2]),
            None,
            None,
        );
        assert_eq!(f.security, Security::Plaintext);
        assert_eq!(f.destination_port, None);
        assert_eq!(f.peer_uri, None);
    }

    #[test]
    fn peer_attributes_are_not_read_without_mtls_and_the_connection_id_is_little_endian() {
        let host = FakeHost::default()
            .with("connection.mtls", &[0])
            .with(
                "connection.uri_san_peer_certificate",
                b"spiffe://cluster.local/ns/foo/sa/sleep",
            )
            .with_port("connection.id", 42);
        let f = Facts::gather(&host, None, None);
        assert_eq!(f.peer_uri, None);
        assert_eq!(connection_id(&host), Some(42));
        assert_eq!(connection_id(&FakeHost::default()), None);
    }

    #[test]
    fn tls_without_a_client_certificate_is_not_mutual_tls_and_unused_attributes_are_not_read() {
        use std::cell::RefCell;
        struct Recording(FakeHost, RefCell<Vec<String>>);
        impl Host for Recording {
            fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
                self.1.borrow_mut().push(path.join("."));
                self.0.property(path)
            }
        }
        let host = Recording(
            FakeHost::default().with("connection.mtls", &[1]).with(
                "connection.uri_san_peer_certificate",
                b"spiffe://cluster.local/ns/foo/sa/sleep",
            ),
            RefCell::default(),
        );
        let f = ConnectionFacts::gather(&host);
        assert_eq!(f.security, Security::Mtls);
        assert_eq!(
            host.1.borrow().as_slice(),
            [
                "connection.mtls",
                "connection.uri_san_peer_certificate",
                "connection.sha256_peer_certificate_digest",
                "destination.port"
            ]
        );
        let tls_only = FakeHost::default()
            .with("connection.mtls", &[0])
            .with("connection.tls_version", b"TLSv1.3");
        let f = ConnectionFacts::gather(&tls_only);
        assert_eq!(f.security.label(), "plaintext");
    }
}
