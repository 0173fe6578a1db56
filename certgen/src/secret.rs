//! Kubernetes Secrets as YAML, byte-for-byte what
//! `kubectl create secret … --dry-run=client -o yaml` would hold in `data`.

use base64::Engine;

use crate::Ca;

/// A Secret manifest with base64 `data`, keys in the given order.
pub fn secret_yaml(name: &str, namespace: &str, kind: &str, data: &[(&str, &str)]) -> String {
    let mut y = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {namespace}\ntype: {kind}\ndata:\n"
    );
    for (k, v) in data {
        let b64 = base64::engine::general_purpose::STANDARD.encode(v.as_bytes());
        y.push_str(&format!("  {k}: {b64}\n"));
    }
    y
}

/// Istio's plug-in CA Secret (`cacerts` in `istio-system` by default), the
/// same four keys as `kubectl create secret generic cacerts --from-file=…`.
pub fn cacerts_yaml(ca: &Ca, namespace: &str) -> String {
    secret_yaml(
        "cacerts",
        namespace,
        "Opaque",
        &[
            ("ca-cert.pem", &ca.cert_pem()),
            ("ca-key.pem", &ca.key_pem()),
            ("root-cert.pem", &ca.root_pem()),
            ("cert-chain.pem", &ca.chain_pem()),
        ],
    )
}

/// A `kubernetes.io/tls` Secret for an Istio gateway `credentialName`:
/// `tls.crt` (leaf then issuers), `tls.key`, and `ca.crt` when given.
pub fn tls_yaml(
    name: &str,
    namespace: &str,
    cert_chain: &str,
    key: &str,
    ca: Option<&str>,
) -> String {
    let mut data = vec![("tls.crt", cert_chain), ("tls.key", key)];
    if let Some(ca) = ca {
        data.push(("ca.crt", ca));
    }
    secret_yaml(name, namespace, "kubernetes.io/tls", &data)
}

/// The `kubectl` command that makes the `cacerts` Secret from a CA folder.
pub fn cacerts_kubectl(dir: &std::path::Path) -> String {
    let f = |n: &str| dir.join(n).display().to_string();
    format!(
        "kubectl create secret generic cacerts -n istio-system --from-file={} --from-file={} --from-file={} --from-file={}",
        f("ca-cert.pem"),
        f("ca-key.pem"),
        f("root-cert.pem"),
        f("cert-chain.pem")
    )
}
