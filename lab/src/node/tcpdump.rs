//! tcpdump on a pod's interface, and looking for bytes in what it captured.

use super::process::{self, LAB_ENV};
use super::NodeError;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static CAPTURES: AtomicU32 = AtomicU32::new(0);

/// A running tcpdump; [`Capture::stop`] ends it and returns the pcap file's bytes.
/// Dropping it without `stop` kills tcpdump.
pub struct Capture {
    child: Option<Child>,
    file: PathBuf,
    log: PathBuf,
}

pub(super) fn start(
    lab: &str,
    netns: &str,
    interface: &str,
    dir: &Path,
) -> Result<Capture, NodeError> {
    let n = CAPTURES.fetch_add(1, Ordering::Relaxed);
    let file = dir.join(format!("capture-{n}-{interface}.pcap"));
    let log = dir.join(format!("capture-{n}-{interface}.log"));
    let failed = |detail: String| NodeError::Tcpdump {
        netns: netns.to_string(),
        interface: interface.to_string(),
        detail,
    };
    let stderr = std::fs::File::create(&log)
        .map_err(|e| failed(format!("create {}: {e}", log.display())))?;
    let file_s = file.to_string_lossy().into_owned();
    // `-Z root`: Debian's tcpdump otherwise drops to user `tcpdump` once the file is
    // open, and the pcap is then that user's (seen on Debian 12); as root, every lab
    // file stays root's. `-U` writes each packet as it arrives, so the file
    // is complete as soon as tcpdump stops; `--immediate-mode` makes the kernel hand
    // each packet over at once (otherwise TPACKET_V3 holds them for up to the 1 s
    // buffer timeout, and a stop within that second loses them: "N packets received
    // by filter", "0 packets captured").
    let mut child = Command::new("ip")
        .args([
            "netns",
            "exec",
            netns,
            "tcpdump",
            "-i",
            interface,
            "-n",
            "-U",
            "-s",
            "0",
            "--immediate-mode",
            "-Z",
            "root",
            "-w",
            &file_s,
        ])
        .env(LAB_ENV, lab)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .process_group(0)
        .spawn()
        .map_err(|e| failed(e.to_string()))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let said = std::fs::read_to_string(&log).unwrap_or_default();
        // tcpdump prints this once the capture handle is active.
        if said.contains("listening on") {
            return Ok(Capture {
                child: Some(child),
                file,
                log,
            });
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(failed(format!("exited ({status}): {}", said.trim())));
        }
        if Instant::now() > deadline {
            process::kill_group(child.id());
            let _ = child.wait();
            return Err(failed(format!("not listening after 10s: {}", said.trim())));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Capture {
    /// The pcap file being written.
    pub fn path(&self) -> &Path {
        &self.file
    }

    /// Stop tcpdump (SIGTERM, so it closes the file) and return the pcap bytes.
    pub fn stop(mut self) -> Result<Vec<u8>, NodeError> {
        if let Some(mut child) = self.child.take() {
            // Let the last segments of a call that just ended (FIN, ACK) be written.
            std::thread::sleep(Duration::from_millis(100));
            process::signal(child.id(), "TERM");
            let _ = child.wait();
        }
        std::fs::read(&self.file).map_err(|e| NodeError::Tcpdump {
            netns: String::new(),
            interface: self.file.display().to_string(),
            detail: format!(
                "read capture: {e}; tcpdump said: {}",
                std::fs::read_to_string(&self.log)
                    .unwrap_or_default()
                    .trim()
            ),
        })
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            process::kill_group(child.id());
            let _ = child.wait();
        }
    }
}

/// The captured frames of a pcap file (classic format, either byte order, micro- or
/// nanosecond timestamps); stops at the first truncated record.
pub fn frames(pcap: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let Some(magic) = pcap.get(0..4) else {
        return out;
    };
    let big = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => false,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => true,
        _ => return out,
    };
    let u32_at = |at: usize| -> Option<usize> {
        let b: [u8; 4] = pcap.get(at..at + 4)?.try_into().ok()?;
        Some(if big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        } as usize)
    };
    // 24-byte file header, then per packet a 16-byte record header whose third word
    // is the captured length.
    let mut at = 24;
    while let Some(len) = u32_at(at + 8) {
        let start = at + 16;
        let Some(frame) = pcap.get(start..start + len) else {
            break;
        };
        out.push(frame);
        at = start + len;
    }
    out
}

/// Whether `needle` appears in any one captured frame (headers included). The
/// search is per frame, not over the reassembled stream, so a needle split across
/// two TCP segments is not found: keep needles short (a request line, a marker).
pub fn payload_contains(pcap: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && frames(pcap)
            .iter()
            .any(|f| f.windows(needle.len()).any(|w| w == needle))
}
