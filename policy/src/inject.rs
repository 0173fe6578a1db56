//! The labels Istio's sidecar injector writes on a pod it injects.
//!
//! istiod selects workloads by the live pod's labels, not the pod template's,
//! so a PeerAuthentication (or Service, or WasmPlugin) selector naming one of
//! these labels picks every injected pod even though no manifest spells it.
//! The values follow the `metadata.labels` block of istio/istio
//! `manifests/charts/istio-control/istio-discovery/files/injection-template.yaml`;
//! the template is applied as an overlay (`pkg/kube/inject/inject.go`
//! `RunTemplate`), so its computed value is what the pod ends up with.
//!
//! Whether a pod is injected at all is decided once, in
//! [`crate::mesh::Mesh::build`]. Not modelled: `networking.istio.io/tunnel`,
//! which the template adds only when the proxy runs with
//! `ISTIO_META_ENABLE_HBONE`, a per-install setting peerauth does not read.

use std::collections::BTreeMap;

/// Read back by istiod into the endpoint's transport socket match (auto mTLS).
pub const TLS_MODE: &str = "security.istio.io/tlsMode";
pub const CANONICAL_NAME: &str = "service.istio.io/canonical-name";
pub const CANONICAL_REVISION: &str = "service.istio.io/canonical-revision";

/// Kubernetes' limit on a label value, which the template's `trunc 63` keeps to.
const MAX_LABEL_VALUE: usize = 63;

/// The pod's labels once injected: `template` plus the injector's three labels.
///
/// `workload_name` stands for the template's `DeploymentMeta.Name`; for every
/// kind peerauth reads (Deployment, StatefulSet, DaemonSet, ReplicaSet, Pod)
/// istiod's owner heuristic (`pkg/kube/util.go` `GetDeployMetaFromPod`) lands
/// on that resource's own name.
pub fn labels(
    workload_name: &str,
    template: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    // The template's `default` treats an empty value as missing, so a label
    // set to "" falls through to the next candidate rather than winning.
    let first = |keys: &[&str]| {
        keys.iter()
            .filter_map(|k| template.get(*k))
            .find(|v| !v.is_empty())
            .cloned()
    };
    let name = first(&[CANONICAL_NAME, "app.kubernetes.io/name", "app"])
        .unwrap_or_else(|| workload_name.to_string());
    let revision = first(&[CANONICAL_REVISION, "app.kubernetes.io/version", "version"])
        .unwrap_or_else(|| "latest".to_string());
    let mut out = template.clone();
    out.insert(
        TLS_MODE.into(),
        first(&[TLS_MODE]).unwrap_or_else(|| "istio".to_string()),
    );
    out.insert(CANONICAL_NAME.into(), label_value(&name));
    out.insert(CANONICAL_REVISION.into(), revision);
    out
}

/// The template's `trunc 63 | trimAll "-_."`: cut to the label limit, then
/// drop separators the cut (or the source) left at either end, which
/// Kubernetes would refuse as a label value.
fn label_value(name: &str) -> String {
    // Cut on a character boundary: a non-ASCII value is no valid label anyway,
    // and slicing inside a character would panic.
    let end = name
        .char_indices()
        .map(|(i, c)| i + c.len_utf8())
        .take_while(|&end| end <= MAX_LABEL_VALUE)
        .last()
        .unwrap_or(0);
    name.get(..end)
        .unwrap_or_default()
        .trim_matches(|c| matches!(c, '-' | '_' | '.'))
        .to_string()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    // Expected values below are the `.injected` outputs of istio/istio
    // `pkg/kube/inject/testdata/inject/`, named per case.

    #[test]
    fn a_deployment_labelled_app_gets_tls_mode_istio_its_app_as_name_and_revision_latest() {
        // hello.yaml: Deployment `hello`, pods `app: hello, tier: backend, track: stable`.
        let template = map(&[("app", "hello"), ("tier", "backend"), ("track", "stable")]);
        assert_eq!(
            labels("hello", &template),
            map(&[
                ("app", "hello"),
                ("security.istio.io/tlsMode", "istio"),
                ("service.istio.io/canonical-name", "hello"),
                ("service.istio.io/canonical-revision", "latest"),
                ("tier", "backend"),
                ("track", "stable"),
            ])
        );
    }

    #[test]
    fn a_pod_without_labels_is_named_after_itself() {
        // hello-multiport-metrics.yaml: a bare Pod `hellopod`.
        let out = labels("hellopod", &BTreeMap::new());
        assert_eq!(out[CANONICAL_NAME], "hellopod");
        assert_eq!(out[CANONICAL_REVISION], "latest");
    }

    #[test]
    fn the_revision_comes_from_version_or_the_recommended_version_label() {
        // hello-multi.yaml: `app: hello, version: v1` → revision v1.
        let out = labels("hello-v1", &map(&[("app", "hello"), ("version", "v1")]));
        assert_eq!(out[CANONICAL_NAME], "hello");
        assert_eq!(out[CANONICAL_REVISION], "v1");
        // hello-otel-semconv.yaml: `app.kubernetes.io/version: v1.2.3`.
        let out = labels(
            "hello",
            &map(&[("app", "hello"), ("app.kubernetes.io/version", "v1.2.3")]),
        );
        assert_eq!(out[CANONICAL_REVISION], "v1.2.3");
    }

    #[test]
    fn the_canonical_labels_themselves_win_over_the_recommended_labels_which_win_over_app() {
        // The order of the template's `default` chain.
        let all = map(&[
            ("service.istio.io/canonical-name", "cn"),
            ("app.kubernetes.io/name", "kn"),
            ("app", "a"),
            ("service.istio.io/canonical-revision", "cr"),
            ("app.kubernetes.io/version", "kv"),
            ("version", "v1"),
        ]);
        let out = labels("w", &all);
        assert_eq!(out[CANONICAL_NAME], "cn");
        assert_eq!(out[CANONICAL_REVISION], "cr");
        let out = labels("w", &map(&[("app.kubernetes.io/name", "kn"), ("app", "a")]));
        assert_eq!(out[CANONICAL_NAME], "kn");
    }

    #[test]
    fn a_tls_mode_the_template_sets_is_kept() {
        let out = labels("w", &map(&[("security.istio.io/tlsMode", "disabled")]));
        assert_eq!(out[TLS_MODE], "disabled");
    }

    #[test]
    fn an_empty_label_falls_through_to_the_next_candidate() {
        let out = labels("w", &map(&[("app", ""), ("version", "")]));
        assert_eq!(out[CANONICAL_NAME], "w");
        assert_eq!(out[CANONICAL_REVISION], "latest");
    }

    #[test]
    fn a_long_canonical_name_is_cut_to_63_characters_and_loses_a_trailing_dash() {
        // pkg/kube/inject/testdata/inject/truncate-canonical-name-pod.yaml.injected
        let out = labels(
            "helloworld-helloworld-helloworld-helloworld-helloworld-helloworld",
            &BTreeMap::new(),
        );
        assert_eq!(
            out[CANONICAL_NAME],
            "helloworld-helloworld-helloworld-helloworld-helloworld-hellowor"
        );
        // truncate-canonical-name-custom-controller-pod.yaml.injected: the cut
        // ends on `-`, which is trimmed.
        let out = labels(
            "helloworld-helloworld-helloworld-helloworld-helloworld-hellowo-ld",
            &BTreeMap::new(),
        );
        assert_eq!(
            out[CANONICAL_NAME],
            "helloworld-helloworld-helloworld-helloworld-helloworld-hellowo"
        );
    }
}
