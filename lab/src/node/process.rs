//! Running commands: one-shot commands whose failure is a [`NodeError::Command`],
//! processes started inside a pod's namespace, and killing them by process group.

use super::{NodeError, PROXY_UID};
use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The environment variable every lab process carries, so [`super::leftovers`] finds
/// it even once its namespace is gone.
pub(super) const LAB_ENV: &str = "PEERAUTH_LAB";

fn command_line<S: AsRef<std::ffi::OsStr>>(program: &str, args: &[S]) -> String {
    std::iter::once(program.to_string())
        .chain(
            args.iter()
                .map(|a| a.as_ref().to_string_lossy().into_owned()),
        )
        .collect::<Vec<_>>()
        .join(" ")
}

fn one_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if joined.is_empty() {
        "(no output)".into()
    } else {
        joined
    }
}

/// Run `program args` to completion; `Err` when it cannot start or exits non-zero,
/// with its stderr on one line.
pub(super) fn run(program: &str, args: &[&str]) -> Result<Output, NodeError> {
    run_with_stdin(program, args, None)
}

/// [`run`] with `input` written to its stdin.
pub(super) fn run_with_stdin(
    program: &str,
    args: &[&str],
    input: Option<&str>,
) -> Result<Output, NodeError> {
    let command = command_line(program, args);
    let failed = |stderr: String| NodeError::Command {
        command: command.clone(),
        stderr,
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(e.to_string()))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| failed(e.to_string()))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| failed(e.to_string()))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(failed(format!(
            "{} ({})",
            one_line(&out.stderr),
            out.status
        )))
    }
}

/// Whether `sudo` runs a command here without asking for a password.
pub(super) fn sudo_works() -> bool {
    Command::new("sudo")
        .args(["-n", "true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// SIGKILL to process group `pgid` (every lab process leads its own group). A group
/// that is already gone is not an error.
pub(super) fn kill_group(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// SIGKILL to one process.
pub(super) fn kill_pid(pid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A signal by name (`TERM`, `INT`) to one process.
pub(super) fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// `ip netns exec <netns> [setpriv …] program args`, in a new process group, tagged
/// with the lab's id. `ip netns exec` execs the program (no fork), so the pid is the
/// program's own and its group is the one [`kill_group`] kills.
fn in_netns(lab: &str, netns: &str, as_proxy: bool, program: &Path) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", netns]);
    if as_proxy {
        // istio-proxy's securityContext: runAsUser/runAsGroup 1337, no extra groups.
        let id = PROXY_UID.to_string();
        cmd.args([
            "setpriv",
            "--reuid",
            &id,
            "--regid",
            &id,
            "--clear-groups",
            "--",
        ]);
    }
    cmd.arg(program)
        .env(LAB_ENV, lab)
        .stdin(Stdio::null())
        .process_group(0);
    cmd
}

pub(super) fn spawn_in(
    lab: &str,
    netns: &str,
    as_proxy: bool,
    program: &Path,
    args: &[OsString],
    log: &Path,
) -> Result<Child, NodeError> {
    let command = format!(
        "ip netns exec {netns} {}",
        command_line(&program.to_string_lossy(), args)
    );
    let open = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| NodeError::io(format!("open log {}", log.display()), &e))
    };
    let (stdout, stderr) = (open()?, open()?);
    in_netns(lab, netns, as_proxy, program)
        .args(args)
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .map_err(|e| NodeError::Command {
            command,
            stderr: e.to_string(),
        })
}

pub(super) fn exec_in(
    lab: &str,
    netns: &str,
    program: &str,
    args: &[&str],
    timeout: Duration,
) -> Result<Output, NodeError> {
    let command = format!("ip netns exec {netns} {}", command_line(program, args));
    let mut child = in_netns(lab, netns, false, Path::new(program))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| NodeError::Command {
            command: command.clone(),
            stderr: e.to_string(),
        })?;
    // Drain both pipes on their own threads so a chatty child cannot block on a full
    // pipe while we wait for it.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out_t = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err_t = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                kill_group(child.id());
                let _ = child.wait();
                return Err(NodeError::Timeout {
                    command,
                    seconds: timeout.as_secs_f64(),
                });
            }
            Err(e) => {
                kill_group(child.id());
                return Err(NodeError::Command {
                    command,
                    stderr: e.to_string(),
                });
            }
        }
    };
    Ok(Output {
        status,
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
    })
}

/// `GET path` on Envoy's admin unix socket (`admin: {address: {pipe:
/// {path: …}}}`), so the admin needs no port in the pod and no capture exception.
///
/// `Ok` is the body of a 200 answer; `Err` when the socket cannot be reached or the
/// status is not 200 (the status line is in the message).
pub fn admin_get(socket: &Path, path: &str) -> io::Result<String> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    // HTTP/1.1 with `Connection: close` (Envoy's admin answers HTTP/1.0 with 426), so
    // the body simply ends at EOF.
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: envoy-admin\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n");
    let (head, body) = match split {
        Some(at) => (
            raw.get(..at).unwrap_or(&[]),
            raw.get(at + 4..).unwrap_or(&[]),
        ),
        None => (raw.as_slice(), &[][..]),
    };
    let head = String::from_utf8_lossy(head);
    let status = head.lines().next().unwrap_or("");
    // Envoy's admin chunks a large answer (`/stats/prometheus` of a busy sidecar):
    // chunk sizes would sit between the lines and could split one across two chunks.
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if status.split_whitespace().nth(1) == Some("200") {
        let body = if chunked {
            dechunk(body).ok_or_else(|| {
                io::Error::other(format!("admin GET {path}: a chunked body that ends early"))
            })?
        } else {
            body.to_vec()
        };
        Ok(String::from_utf8_lossy(&body).into_owned())
    } else {
        Err(io::Error::other(format!(
            "admin GET {path}: {}",
            if status.is_empty() {
                "no answer"
            } else {
                status
            }
        )))
    }
}

/// The payload of an HTTP/1.1 chunked body; `None` when it is not complete.
fn dechunk(raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(raw.len());
    let mut rest = raw;
    loop {
        let eol = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_line = std::str::from_utf8(rest.get(..eol)?).ok()?;
        let size = usize::from_str_radix(size_line.split(';').next()?.trim(), 16).ok()?;
        let after = rest.get(eol + 2..)?;
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(after.get(..size)?);
        rest = after.get(size..)?.strip_prefix(b"\r\n")?;
    }
}

#[cfg(test)]
mod chunked_tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::dechunk;

    #[test]
    fn a_chunked_body_is_joined_even_when_a_line_is_split_and_a_cut_one_is_refused() {
        assert_eq!(
            dechunk(b"5\r\npeera\r\n3\r\nuth\r\n0\r\n\r\n").as_deref(),
            Some(&b"peerauth"[..])
        );
        assert_eq!(dechunk(b"5\r\npee"), None);
        assert_eq!(dechunk(b"peerauth_requests_total 1\n"), None);
    }
}
