//! The lab's stand-in application: [`run`] with `--port 80 [--port N]… [--banner TEXT]`,
//! as the `lab-app` binary (tests/) or `peerauth`'s hidden `__lab-app` subcommand runs it.
//!
//! Without `--banner`, an HTTP/1.1 server (std only: one thread per connection,
//! keep-alive) that answers like httpbin where the lab needs it:
//! - `GET /ip` → `{"origin": "<peer ip>"}`: the address the app saw, so a test can
//!   tell the client pod's IP from Envoy's `127.0.0.6`;
//! - `GET /headers` → `{"headers": {…}}`, the request headers as received;
//! - `/status/<code>` → that status;
//! - anything else → 200 with one line naming the local address and the request,
//!   which shows where a connection actually landed (e.g. port 15001 after capture).
//!
//! With `--banner TEXT`, a server-first TCP app: it writes TEXT on accept, then echoes
//! what it reads until the peer closes.
//!
//! Listens on `0.0.0.0:<port>` for each port and prints `listening on 0.0.0.0:<port>`
//! once bound. Exit 2 on bad arguments or a port it cannot bind.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;

struct Args {
    ports: Vec<u16>,
    banner: Option<String>,
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Args, String> {
    let mut ports = Vec::new();
    let mut banner = None;
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--port" => {
                let v = it.next().ok_or("--port needs a number")?;
                ports.push(
                    v.parse()
                        .map_err(|_| format!("--port {v}: not a port number"))?,
                );
            }
            "--banner" => banner = Some(it.next().ok_or("--banner needs a text")?),
            "-h" | "--help" => {
                return Err("usage: lab-app --port N [--port N]… [--banner TEXT]".into())
            }
            other => {
                return Err(format!(
                    "unknown argument {other}; usage: lab-app --port N [--port N]… [--banner TEXT]"
                ))
            }
        }
    }
    if ports.is_empty() {
        return Err("at least one --port is needed".into());
    }
    Ok(Args { ports, banner })
}

/// Serve on every `--port` until killed. `args` are the arguments after the program
/// (or subcommand) name. Returns the exit code: 2 on bad arguments or a port it cannot
/// bind (with one line on stderr), 0 if every listener ends.
pub fn run(args: impl IntoIterator<Item = String>) -> u8 {
    let args = match parse_args(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("lab-app: {e}");
            return 2;
        }
    };
    let mut listeners = Vec::new();
    for port in &args.ports {
        match TcpListener::bind(("0.0.0.0", *port)) {
            Ok(l) => listeners.push(l),
            Err(e) => {
                eprintln!("lab-app: bind 0.0.0.0:{port}: {e}");
                return 2;
            }
        }
        println!("listening on 0.0.0.0:{port}");
    }
    let _ = io::stdout().flush();
    let threads: Vec<_> = listeners
        .into_iter()
        .map(|l| {
            let banner = args.banner.clone();
            thread::spawn(move || accept_loop(l, banner))
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    0
}

fn accept_loop(listener: TcpListener, banner: Option<String>) {
    for conn in listener.incoming() {
        let Ok(stream) = conn else { continue };
        let banner = banner.clone();
        thread::spawn(move || {
            let _ = match banner {
                Some(text) => serve_banner(stream, &text),
                None => serve_http(stream),
            };
        });
    }
}

fn serve_banner(mut stream: TcpStream, text: &str) -> io::Result<()> {
    stream.write_all(text.as_bytes())?;
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&buf[..n])?;
    }
}

fn serve_http(stream: TcpStream) -> io::Result<()> {
    let peer = stream.peer_addr()?;
    let local = stream.local_addr()?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    // A TLS ClientHello (record type 22) reaching this plaintext app gets what an HTTP
    // server answers bytes it cannot parse, 400 and close, as httpbin's would; the
    // client's TLS stack then reports the protocol error (rather than waiting for a
    // line the ClientHello may never contain).
    if reader.fill_buf()?.first() == Some(&0x16) {
        out.write_all(
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )?;
        return out.flush();
    }
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let request_line = line.trim_end().to_string();
        if request_line.is_empty() {
            continue;
        }
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("/").to_string();
        let version = parts.next().unwrap_or("HTTP/1.0").to_string();
        // Header names as sent (httpbin shows them title-cased; curl already sends
        // them so), in arrival order for the echo but keyed for lookups.
        let mut headers: Vec<(String, String)> = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h)? == 0 {
                return Ok(());
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        let length: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        io::copy(&mut (&mut reader).take(length as u64), &mut io::sink())?;
        let connection = header("connection").map(str::to_ascii_lowercase);
        let keep_alive = match version.as_str() {
            "HTTP/1.1" => connection.as_deref() != Some("close"),
            _ => connection.as_deref() == Some("keep-alive"),
        };
        let (status, content_type, body) = if path == "/ip" {
            let body = serde_json::json!({ "origin": peer.ip().to_string() });
            (200, "application/json", format!("{body:#}\n"))
        } else if path == "/headers" {
            let map: BTreeMap<&str, &str> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let body = serde_json::json!({ "headers": map });
            (200, "application/json", format!("{body:#}\n"))
        } else if let Some(code) = path
            .strip_prefix("/status/")
            .and_then(|c| c.parse::<u16>().ok())
            .filter(|c| (200..=599).contains(c))
        {
            (code, "text/plain", String::new())
        } else {
            (
                200,
                "text/plain",
                format!("lab-app on {local}: {method} {path} from {peer}\n"),
            )
        };
        let reason = match status {
            200 => "OK",
            404 => "Not Found",
            503 => "Service Unavailable",
            _ => "Status",
        };
        write!(
            out,
            "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n{body}",
            body.len(),
            if keep_alive { "keep-alive" } else { "close" }
        )?;
        out.flush()?;
        if !keep_alive {
            return Ok(());
        }
    }
}
