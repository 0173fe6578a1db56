//! An HTTP filter is never told that a connection closed, so the engine's
//! connection cache cannot release a connection's facts at close. Its memory is
//! bounded instead: `SLOTS` entries, and an XFCC value is only kept for reuse up
//! to `MAX_REUSED_XFCC` bytes. This measures the heap the cache holds, with a
//! counting allocator, after far more connections than slots.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use peerauth_filter::engine::{
    Engine, Level, Proxy, Unreadable, Verdict, MAX_REUSED_XFCC, SLOTS, XFCC,
};
use peerauth_filter::facts::Host;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicIsize, Ordering};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; only a
// byte count is kept on the side.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const HASH: &str = "434b0000000000000000000000000000000000000000000000000000000000ff";

/// A stream of mTLS requests, each on a new connection (`connection.id` counts
/// up), carrying a genuine Envoy element just under the reuse limit.
struct Connections {
    id: Cell<u64>,
    peer: String,
    subject: String,
    xfcc: String,
}

impl Host for Connections {
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        Some(match path.join(".").as_str() {
            "connection.id" => self.id.get().to_le_bytes().to_vec(),
            "connection.mtls" => vec![1],
            "connection.tls_version" => b"TLSv1.3".to_vec(),
            "connection.uri_san_peer_certificate" => self.peer.as_bytes().to_vec(),
            "connection.subject_peer_certificate" => self.subject.as_bytes().to_vec(),
            "connection.sha256_peer_certificate_digest" => HASH.as_bytes().to_vec(),
            "destination.port" => 8080u64.to_le_bytes().to_vec(),
            "source.address" => b"127.0.0.1:54321".to_vec(),
            _ => return None,
        })
    }
}

impl Proxy for Connections {
    fn request_header(&self, name: &str) -> Result<Option<String>, Unreadable> {
        Ok((name == XFCC).then(|| self.xfcc.clone()))
    }
    fn request_headers(&self) -> Result<Vec<u8>, Unreadable> {
        // Never asked for: the configurations here do not check lookalikes.
        Err(Unreadable)
    }
    fn set_request_header(&self, _: &str, _: Option<&str>) -> bool {
        true
    }
    fn send_response(&self, _: u32, _: &[(&str, &str)], _: &[u8]) -> bool {
        true
    }
    fn close_downstream(&self) -> bool {
        true
    }
    fn set_effective_context(&self, _: u32) -> bool {
        true
    }
    fn set_tick_period_ms(&self, _: u64) -> bool {
        true
    }
    fn now_unix(&self) -> Option<i64> {
        None
    }
    fn define_counter(&self, _: &str) -> Option<u32> {
        Some(0)
    }
    fn increment_counter(&self, _: u32, _: u64) {}
    fn define_gauge(&self, _: &str) -> Option<u32> {
        Some(1)
    }
    fn set_gauge(&self, _: u32, _: u64) {}
    fn vm_memory_bytes(&self) -> u64 {
        0
    }
    fn log(&self, _: Level, _: &str) {}
}

#[test]
fn the_connection_cache_stops_growing_at_its_slot_count() {
    let peer = format!("spiffe://cluster.local/ns/{}/sa/sleep", "n".repeat(60));
    // A long subject, so each connection also keeps the names it was checked
    // against (read once per connection when the element claims a subject).
    let element = |subject: &str| {
        format!("By=spiffe://cluster.local/ns/foo/sa/httpbin;Hash={HASH};Subject=\"{subject}\";URI={peer}")
    };
    let mut subject = "CN=sleep.bar".to_string();
    while element(&subject).len() + 40 <= MAX_REUSED_XFCC {
        subject.push_str(",OU=sleep.bar.svc.cluster.local");
    }
    let host = Connections {
        id: Cell::new(0),
        xfcc: element(&subject),
        peer,
        subject,
    };
    let engine = Engine::configure(&host, br#"{"mtls":{"mode":"STRICT"}}"#).unwrap();
    let live = || LIVE.load(Ordering::Relaxed);
    let before = live();
    let mut at = Vec::new();
    for round in 1..=4 {
        for _ in 0..SLOTS {
            host.id.set(host.id.get() + 1);
            assert_eq!(engine.on_request_headers(&host), Verdict::Continue);
        }
        at.push((round * SLOTS, live() - before));
    }
    let (_, full) = at[0];
    for &(connections, bytes) in &at[1..] {
        assert!(
            (bytes - full).abs() < 16 * 1024,
            "{connections} connections hold {bytes} bytes, {SLOTS} held {full}: {at:?}"
        );
    }
    let per_slot = full / SLOTS as isize;
    println!(
        "cache: {full} bytes for {SLOTS} connections ({per_slot} per connection, XFCC {} bytes); {at:?}",
        host.xfcc.len()
    );
    assert!(
        per_slot < 3 * 1024,
        "{per_slot} bytes per cached connection"
    );
}
