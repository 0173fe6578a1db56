//! A tiny httpbin-like HTTP/1.1 echo server (std only): every request gets a
//! JSON body with its method, path and headers, so a test can see exactly the
//! `x-forwarded-client-cert` the application received.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

/// A running echo server; stops accepting when dropped.
pub struct EchoApp {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
}

impl EchoApp {
    /// Bind 127.0.0.1 on a free port and serve on background threads.
    pub fn start() -> io::Result<EchoApp> {
        EchoApp::start_with_banner(None)
    }

    /// A server-first app: like [`EchoApp::start`], but every accepted
    /// connection is first sent `banner` before the app reads anything (as SMTP,
    /// MySQL or an SSH server do), so a proxy that forwards upstream bytes before
    /// checking the client shows them to an unchecked client.
    pub fn start_with_banner(banner: Option<&'static [u8]>) -> io::Result<EchoApp> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let flag = Arc::clone(&stop);
        let count = Arc::clone(&accepted);
        thread::spawn(move || {
            for conn in listener.incoming() {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                if let Ok(mut stream) = conn {
                    count.fetch_add(1, Ordering::Relaxed);
                    thread::spawn(move || {
                        if let Some(b) = banner {
                            if stream.write_all(b).is_err() {
                                return;
                            }
                        }
                        let _ = serve(stream);
                    });
                }
            }
        });
        Ok(EchoApp {
            addr,
            stop,
            accepted,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for EchoApp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(stream: TcpStream) -> io::Result<()> {
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_string();
        let path = parts.next().unwrap_or_default().to_string();
        let mut headers = serde_json::Map::new();
        let mut content_length = 0usize;
        let mut close = false;
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
                let k = k.trim().to_ascii_lowercase();
                let v = v.trim().to_string();
                if k == "content-length" {
                    content_length = v.parse().unwrap_or(0);
                }
                if k == "connection" && v.eq_ignore_ascii_case("close") {
                    close = true;
                }
                match headers.get_mut(&k) {
                    Some(serde_json::Value::String(prev)) => {
                        prev.push_str(", ");
                        prev.push_str(&v);
                    }
                    _ => {
                        headers.insert(k, serde_json::Value::String(v));
                    }
                }
            }
        }
        let mut body = vec![0u8; content_length];
        reader.read_exact(&mut body)?;
        let reply = serde_json::json!({
            "method": method,
            "path": path,
            "headers": headers,
            "bodyLength": content_length,
        })
        .to_string();
        // One write per response: separate small writes meet Nagle's algorithm and
        // the peer's delayed ACK, which adds ~40 ms to every kept-alive request.
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{}",
            reply.len(),
            reply
        );
        writer.write_all(response.as_bytes())?;
        writer.flush()?;
        if close {
            return Ok(());
        }
    }
}
