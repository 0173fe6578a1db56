//! One call through the lab and its result, in the terms curl in a client pod shows
//! them; shared by the seed-lab demo (which adds what the lab documents) and
//! `peerauth lab`.

use std::fmt;

/// A call from a client pod to a Service port, as the seed lab makes it:
/// `curl http://<service>:<port>/ip` in the client pod.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServiceCall {
    /// Pod key of the caller, `sleep.foo`.
    pub client: String,
    /// `name.namespace` of the Service called, `httpbin.bar`.
    pub service: String,
    /// Service port.
    pub port: u16,
}

impl ServiceCall {
    /// `http://<service>:<port>`, the seed's URL base.
    pub fn base_url(&self) -> String {
        format!("http://{}:{}", self.service, self.port)
    }

    /// `(name, namespace)` of the Service.
    pub fn service_name(&self) -> (&str, &str) {
        self.service
            .split_once('.')
            .unwrap_or((self.service.as_str(), "default"))
    }
}

/// A call's result as the lab shows it: what curl's `-w "%{http_code}"` printed and
/// curl's exit status, and whether the app saw an X-Forwarded-Client-Cert header.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CallResult {
    /// `"200"`, `"503"`, `"000"` (no response: reset) …
    pub code: String,
    pub curl_exit: i32,
    pub mtls: bool,
}

impl CallResult {
    pub fn ok(mtls: bool) -> CallResult {
        CallResult {
            code: "200".into(),
            curl_exit: 0,
            mtls,
        }
    }

    /// A reset as curl reports it: no status, exit 56 ("failure with receiving network data").
    pub fn reset() -> CallResult {
        CallResult {
            code: "000".into(),
            curl_exit: 56,
            mtls: false,
        }
    }

    /// Same code and exit; the mTLS flag only matters for a 200 (a failed call carries
    /// no headers to show it).
    pub fn same_as(&self, other: &CallResult) -> bool {
        self.code == other.code
            && self.curl_exit == other.curl_exit
            && (self.code != "200" || self.mtls == other.mtls)
    }
}

impl fmt::Display for CallResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code.as_str(), self.curl_exit) {
            ("200", 0) if self.mtls => write!(f, "200 mTLS"),
            ("200", 0) => write!(f, "200 plain"),
            (code, 0) => write!(f, "{code}"),
            (code, exit) => write!(f, "{code} exit {exit}"),
        }
    }
}

/// What the caller really got.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Observed {
    pub result: CallResult,
    /// The X-Forwarded-Client-Cert the app echoed from `/headers`, if any
    /// (`result.mtls` is whether it names the caller's own SPIFFE ID).
    pub xfcc: Option<String>,
}

/// The inbound mode of one sidecar pod's port, as the sidecar was configured with it
/// (policy's PeerAuthentication resolution, which plays istiod's).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PortMode {
    pub pod: String,
    pub port: u16,
    pub mode: String,
}
