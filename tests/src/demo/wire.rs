//! Data in motion (the seed's steps 3 and 6, after Istio's "Mutual TLS Migration"
//! task, which runs `tcpdump dst port 80 -A` in httpbin.foo's pod): a capture on the
//! server pod's `eth0` during one call, and whether the request line and a marker
//! sent in a header are readable in it.

use crate::demo::expected::ServiceCall;
use crate::demo::pods::PodLab;
use crate::demo::LabError;
use crate::node;

/// The request line every seed call sends.
pub const REQUEST_LINE: &str = "GET /ip HTTP/1.1";
/// The header that carries the marker.
pub const MARKER_HEADER: &str = "x-lab-marker";

/// One captured call.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WireCapture {
    pub step: String,
    /// `client → server:port`.
    pub call: String,
    /// The pod and interface captured on.
    pub pod: String,
    pub interface: String,
    pub mtls_seen: bool,
    pub observed: String,
    pub marker: String,
    pub request_line_readable: bool,
    pub marker_readable: bool,
    pub pcap_bytes: usize,
}

/// A marker no other packet carries: this process, the time, a counter.
pub fn fresh_marker() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!(
        "lab-{}-{nanos:x}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Capture on the pod behind `call`'s Service while `call` runs with a fresh marker.
///
/// `Err` when the Service has no endpoint pod, or tcpdump or the call cannot run.
pub fn capture(lab: &PodLab, step: &str, call: &ServiceCall) -> Result<WireCapture, LabError> {
    let (name, ns) = call.service_name();
    let topology = lab.topology();
    let server = topology
        .service(name, ns)
        .and_then(|s| {
            s.endpoints(topology, call.port)
                .first()
                .map(|e| e.pod.key())
        })
        .ok_or_else(|| {
            LabError::Missing(format!("an endpoint of {}:{}", call.service, call.port))
        })?;
    let (netns, interface) = lab
        .node()
        .interface(&server)
        .ok_or_else(|| LabError::Missing(format!("pod {server}")))?;
    let marker = fresh_marker();
    let running = lab.node().tcpdump(&server)?;
    let called = lab.call(call, &[(MARKER_HEADER, &marker)]);
    let pcap = running.stop()?;
    let (_, observed) = called?;
    Ok(WireCapture {
        step: step.to_string(),
        call: format!("{} → {}:{}", call.client, call.service, call.port),
        pod: server,
        interface: format!("{netns}/{interface}"),
        mtls_seen: observed.result.mtls,
        observed: observed.result.to_string(),
        request_line_readable: node::payload_contains(&pcap, REQUEST_LINE.as_bytes()),
        marker_readable: node::payload_contains(&pcap, marker.as_bytes()),
        marker,
        pcap_bytes: pcap.len(),
    })
}
