//! Findings about a set of resources: a stable code, a severity, a message that
//! says what to change, and where.

use serde::{Deserialize, Serialize};

/// How bad a finding is. `Error` = Istio would reject it or traffic breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Informational.
    Info,
    /// Accepted by Istio but probably not what the author meant.
    Warning,
    /// Rejected by Istio's webhook/CRD, or certain to break traffic.
    Error,
}

/// What a finding says about the run that reports it, declared by each rule
/// next to its code so that a renamed code keeps its meaning for exit statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    /// Bad input: text that cannot be read, or a document the Kubernetes API
    /// server refuses by its schema before Istio sees it (an unknown enum value,
    /// a field of the wrong type, no name, an apiVersion that does not serve the
    /// kind). The CLI exits 2.
    Input,
    /// A finding about resources the API server accepts: Istio's own admission
    /// rules (webhook, CEL) and the analysis. The CLI exits 1 (for errors, and
    /// for warnings with `--strict`).
    Finding,
}

/// Where a resource or field came from: the source name given to the loader
/// (usually a file path), the 1-based line, and the 0-based document index.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Location {
    pub source: String,
    pub line: u32,
    pub document: u32,
}

/// Which resource a finding concerns.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ResourceRef {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

/// One finding. `code` is stable kebab-case (e.g. `pa-port-level-without-selector`);
/// `istio_code` carries the matching Istio/Kiali code (`IST0115`, `KIA0002`) when one exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    pub code: String,
    pub severity: Severity,
    pub message: String,
    /// What to change, one sentence.
    pub hint: Option<String>,
    pub istio_code: Option<String>,
    pub resource: Option<ResourceRef>,
    pub location: Option<Location>,
}

/// A rule: its stable code, its severity, whether it is bad input or a finding,
/// the matching Istio/Kiali code and a one-line summary. Every diagnostic `policy` produces comes from [`RULES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Rule {
    pub code: &'static str,
    pub severity: Severity,
    pub class: Class,
    pub istio_code: Option<&'static str>,
    pub summary: &'static str,
}

macro_rules! rules {
    ($($name:ident = $code:literal, $sev:ident, $class:ident, $istio:expr, $summary:literal;)*) => {
        $(
            #[doc = $summary]
            pub const $name: Rule = Rule { code: $code, severity: Severity::$sev, class: Class::$class, istio_code: $istio, summary: $summary };
        )*
        /// Every rule, in documentation order.
        pub const RULES: &[Rule] = &[$($name),*];
    };
}

rules! {
    INPUT_YAML = "input-yaml", Error, Input, None, "the text is not valid YAML";
    INPUT_JSON = "input-json", Error, Input, None, "the text is not valid JSON";
    INPUT_LIMIT = "input-limit", Error, Input, None, "the input exceeds a size, depth, document or alias-expansion limit";
    INPUT_MISSING_KIND = "input-missing-kind", Error, Input, None, "a document has no `kind`";
    INPUT_SHAPE = "input-shape", Error, Input, Some("IST0106"), "a field has the wrong type for its kind";
    PA_API_VERSION = "pa-api-version", Error, Input, None, "PeerAuthentication apiVersion is not security.istio.io/v1 or v1beta1";
    PA_MISSING_NAME = "pa-missing-name", Error, Input, None, "PeerAuthentication has no metadata.name";
    PA_INVALID_NAMESPACE = "pa-invalid-namespace", Error, Input, None, "metadata.namespace is not an RFC 1123 label, so no pod can be in it";
    PA_UNKNOWN_MODE = "pa-unknown-mode", Error, Input, Some("IST0106"), "an mTLS mode is not UNSET, DISABLE, PERMISSIVE or STRICT";
    PA_PORT_LEVEL_WITHOUT_SELECTOR = "pa-port-level-without-selector", Error, Finding, Some("IST0106"), "portLevelMtls on a policy without a non-empty selector (mesh/namespace-wide)";
    PA_PORT_LEVEL_EMPTY = "pa-port-level-empty", Error, Finding, Some("IST0106"), "portLevelMtls is present but has no entries";
    PA_PORT_OUT_OF_RANGE = "pa-port-out-of-range", Error, Finding, Some("IST0106"), "a portLevelMtls key is not a plain decimal port number in 1..65535";
    PA_SELECTOR_EMPTY_KEY = "pa-selector-empty-key", Error, Finding, Some("IST0106"), "a selector label key is empty";
    PA_SELECTOR_WILDCARD = "pa-selector-wildcard", Error, Finding, Some("IST0106"), "a selector label key or value contains `*`";
    PA_SELECTOR_VALUE_TOO_LONG = "pa-selector-value-too-long", Error, Finding, None, "a selector label value is longer than 63 characters";
    PA_SELECTOR_WITHOUT_LABELS = "pa-selector-without-labels", Warning, Finding, Some("IST0133"), "a selector with no labels: istiod treats the policy as namespace-wide";
    PA_SELECTOR_IN_ROOT_NAMESPACE = "pa-selector-in-root-namespace", Warning, Finding, None, "a policy with a selector in the root namespace is ignored by istiod (#61023)";
    PA_INVALID_TIMESTAMP = "pa-invalid-creation-timestamp", Warning, Finding, None, "creationTimestamp is not RFC 3339; the policy sorts as newest";
    DR_API_VERSION = "dr-api-version", Error, Input, None, "DestinationRule apiVersion is not networking.istio.io/v1, v1beta1 or v1alpha3";
    DR_MISSING_NAME = "dr-missing-name", Error, Input, None, "DestinationRule has no metadata.name";
    DR_EMPTY_HOST = "dr-empty-host", Error, Finding, Some("IST0106"), "DestinationRule has no host";
    DR_UNKNOWN_TLS_MODE = "dr-unknown-tls-mode", Error, Input, Some("IST0106"), "a TLS mode is not DISABLE, SIMPLE, MUTUAL or ISTIO_MUTUAL";
    DR_PORT_MISSING = "dr-port-missing", Error, Finding, Some("IST0106"), "a portLevelSettings entry has no port number";
    DR_PORT_OUT_OF_RANGE = "dr-port-out-of-range", Error, Finding, Some("IST0106"), "a portLevelSettings port is not in 1..65535";
    RESOURCE_DUPLICATE = "resource-duplicate", Warning, Finding, None, "the same resource (kind, namespace, name) is defined more than once: the last definition replaces the others, as with `kubectl apply`";
    PA_SEVERAL_NAMESPACE_WIDE = "pa-several-namespace-wide", Warning, Finding, Some("KIA0002"), "several mesh-wide or namespace-wide policies: only the oldest applies";
    PA_SEVERAL_WORKLOAD_POLICIES = "pa-several-workload-policies", Warning, Finding, Some("KIA0003"), "several workload policies select one workload: only the oldest applies (#48036)";
    PA_SELECTOR_MATCHES_NO_WORKLOAD = "pa-selector-matches-no-workload", Warning, Finding, Some("KIA0004"), "a policy's selector matches no workload in its namespace";
    PA_PORT_IS_SERVICE_PORT = "pa-port-is-service-port", Warning, Finding, None, "a portLevelMtls key is a Service port, not the container port (#49098)";
    PA_PORT_NOT_TARGETED = "pa-port-not-targeted", Warning, Finding, None, "a portLevelMtls port is neither a container port nor targeted by any Service";
    PLAINTEXT_CLIENT_TO_STRICT = "plaintext-client-to-strict", Warning, Finding, None, "clients without a sidecar call a STRICT port: their connections are reset (if they really call it)";
    DR_DISABLE_TO_STRICT = "dr-disable-to-strict", Error, Finding, Some("KIA0207"), "a DestinationRule disables TLS towards a STRICT port: connections are reset";
    STRICT_WITHOUT_MTLS_CLIENTS = "strict-without-mtls-clients", Error, Finding, Some("KIA0501"), "auto mTLS is off and no ISTIO_MUTUAL DestinationRule covers a STRICT port";
    DR_MTLS_TO_NO_SIDECAR = "dr-mtls-to-workload-without-sidecar", Error, Finding, Some("IST0115"), "an ISTIO_MUTUAL DestinationRule targets workloads without a sidecar";
    DR_MTLS_TO_DISABLED_PORT = "dr-mtls-to-disabled-port", Error, Finding, Some("KIA0505"), "an ISTIO_MUTUAL DestinationRule targets a port whose policy is DISABLE";
    DR_OTHER_TLS_TO_SIDECAR = "dr-non-istio-tls-to-sidecar", Error, Finding, None, "SIMPLE/MUTUAL TLS to a sidecar: PERMISSIVE passes it through, STRICT resets it";
    DR_OTHER_TLS_TO_AMBIENT = "dr-non-istio-tls-to-ambient", Error, Finding, None, "SIMPLE/MUTUAL TLS to an ambient workload whose port is not named for TLS: sidecars carry it inside HBONE and the plaintext app gets TLS bytes";
    AMBIENT_DISABLE = "ambient-disable", Warning, Finding, None, "DISABLE (workload or port level) applies to ambient workloads: ztunnel treats it as PERMISSIVE, mesh traffic stays HBONE mTLS";
    AMBIENT_SELECTOR_WITHOUT_LABELS = "ambient-selector-without-labels", Warning, Finding, None, "`selector` without labels on a policy reaching ambient workloads: istiod's ambient index does not read it as namespace-/mesh-wide everywhere";
    AMBIENT_SIDECAR_ONLY_ANNOTATION = "ambient-sidecar-only-annotation", Warning, Finding, None, "an ambient pod carries traffic.sidecar.istio.io/* annotations, which only sidecar traffic redirection reads";
    WASMPLUGIN_SELECTOR_ON_AMBIENT = "wasmplugin-selector-on-ambient", Warning, Finding, None, "a WasmPlugin uses `selector` but the workloads it selects are ambient (no Envoy); waypoints ignore `selector` and need `targetRefs`";
    WASMPLUGIN_PORTS_ON_WAYPOINT = "wasmplugin-ports-on-waypoint", Warning, Finding, None, "a WasmPlugin attached to a waypoint selects ports: istiod matches waypoint plugins without a port, so it is never applied";
    WAYPOINT_MISSING = "waypoint-missing", Warning, Finding, None, "istio.io/use-waypoint names a waypoint (Gateway of class istio-waypoint) that is not in the input";
}

impl Rule {
    /// Whether a diagnostic of this rule is bad input rather than a finding.
    pub fn is_input(&self) -> bool {
        self.class == Class::Input
    }

    /// The rule with this code, if any.
    pub fn find(code: &str) -> Option<&'static Rule> {
        RULES.iter().find(|r| r.code == code)
    }

    /// A diagnostic for this rule (no location yet).
    pub fn diagnostic(&self, message: impl Into<String>, hint: impl Into<String>) -> Diagnostic {
        Diagnostic {
            code: self.code.to_string(),
            severity: self.severity,
            message: message.into(),
            hint: Some(hint.into()),
            istio_code: self.istio_code.map(str::to_string),
            resource: None,
            location: None,
        }
    }
}

impl Diagnostic {
    /// Attach the resource the finding concerns.
    pub fn on(mut self, kind: &str, namespace: &str, name: &str) -> Self {
        self.resource = Some(ResourceRef {
            kind: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
        });
        self
    }

    /// Attach a location.
    pub fn at(mut self, location: Location) -> Self {
        self.location = Some(location);
        self
    }

    /// Override the Istio/Kiali code (for rules whose code depends on the level).
    pub fn with_istio_code(mut self, code: Option<&str>) -> Self {
        self.istio_code = code.map(str::to_string);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn rule_codes_are_unique_and_kebab_case() {
        let mut seen = BTreeSet::new();
        for rule in RULES {
            assert!(seen.insert(rule.code), "duplicate code {}", rule.code);
            let kebab = !rule.code.is_empty()
                && !rule.code.starts_with('-')
                && !rule.code.ends_with('-')
                && !rule.code.contains("--")
                && rule
                    .code
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            assert!(kebab, "{} is not kebab-case", rule.code);
        }
    }

    #[test]
    fn every_input_rule_is_an_error_that_istioctl_does_not_call_a_warning() {
        // Bad input stops a pipeline before Istio sees the resource, so it is
        // never a warning; IST0133 is a warning in istioctl, so never input.
        for rule in RULES.iter().filter(|r| r.is_input()) {
            assert_eq!(rule.severity, Severity::Error, "{}", rule.code);
            assert_ne!(rule.istio_code, Some("IST0133"), "{}", rule.code);
        }
    }

    #[test]
    fn istio_codes_look_like_ist_or_kia_codes() {
        for rule in RULES {
            if let Some(code) = rule.istio_code {
                let ok = (code.starts_with("IST") || code.starts_with("KIA"))
                    && code.len() == 7
                    && code[3..].chars().all(|c| c.is_ascii_digit());
                assert!(ok, "{code}");
            }
        }
    }
}
