//! Helpers for the viewer's tests: run the binary, talk HTTP/1.1 to it over
//! 127.0.0.1 with a plain `TcpStream`, wait with a deadline.
#![allow(dead_code)]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The recording of one `cargo run --example chat`, checked in.
pub fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/chat.jsonl")
}

/// A unique path in the temp dir.
pub fn temp_path(name: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let p = std::env::temp_dir().join(format!("raindrop-view-{}-{n}-{name}", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

/// A running `raindrop-view`, killed on drop.
pub struct Running {
    child: Child,
    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub base: String,
    /// What it printed before serving.
    pub banner: String,
}

impl Running {
    /// The viewer's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The viewer's peak resident memory in bytes (`VmHWM`), where the
    /// system reports it (Linux).
    pub fn peak_rss(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kb * 1024)
    }
}

/// Sends `bodies` (path under `/v1/`, JSON body) as POSTs over one
/// keep-alive connection, each answered before the next; panics unless
/// every answer is 204.
pub fn post_all(base: &str, bodies: &[(String, String)]) {
    let authority = base.trim_start_matches("http://");
    let s = TcpStream::connect(authority).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // One write per request, sent at once: small writes wait for delayed
    // ACKs (40 ms each) otherwise.
    s.set_nodelay(true).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    for (path, body) in bodies {
        let req = format!(
            "POST /v1/{path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        w.write_all(req.as_bytes()).expect("write");
        let mut status = String::new();
        r.read_line(&mut status).expect("status line");
        assert!(status.starts_with("HTTP/1.1 204"), "{path}: {status}");
        // A 204 has no body: read to the blank line.
        loop {
            let mut line = String::new();
            r.read_line(&mut line).expect("header");
            if line == "\r\n" || line.is_empty() {
                break;
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary with `args` (plus `--port 0` unless `--listen` is
/// given) and waits (10 s at most) for the URL it prints.
pub fn start(args: &[&str]) -> Running {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_raindrop-view"));
    cmd.args(args);
    if !args.contains(&"--listen") {
        cmd.args(["--port", "0"]);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("raindrop-view starts");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut banner = String::new();
        let mut lines = BufReader::new(stdout).lines();
        while let Some(Ok(line)) = lines.next() {
            banner.push_str(&line);
            banner.push('\n');
            if line.contains("reading") || line.contains("receiving") {
                let _ = tx.send(banner.clone());
            }
        }
    });
    let banner = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("raindrop-view printed its URL within 10 s");
    let url = banner
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .expect("a URL")
        .trim_end_matches('/')
        .to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "loopback: {url}");
    Running {
        child,
        base: url,
        banner,
    }
}

/// One HTTP/1.1 request with `Connection: close` and a JSON
/// `Content-Type`; returns (status, headers, body).
pub fn request(
    base: &str,
    method: &str,
    path: &str,
    host: Option<&str>,
    body: Option<&str>,
) -> (u16, String, String) {
    let authority = base.trim_start_matches("http://");
    let host = format!("Host: {}", host.unwrap_or(authority));
    request_with(
        base,
        method,
        path,
        &[&host, "Content-Type: application/json"],
        body,
    )
}

/// One HTTP/1.1 request with `Connection: close` and exactly the header
/// lines given (`Name: value`; give the `Host`); returns (status, headers,
/// body).
pub fn request_with(
    base: &str,
    method: &str,
    path: &str,
    headers: &[&str],
    body: Option<&str>,
) -> (u16, String, String) {
    let authority = base.trim_start_matches("http://");
    let mut s = TcpStream::connect(authority).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let body = body.unwrap_or("");
    let mut head = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    write!(s, "{head}Content-Length: {}\r\n\r\n{body}", body.len()).expect("write");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    let raw = String::from_utf8(raw).expect("utf-8");
    let (head, rest) = raw.split_once("\r\n\r\n").expect("a response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    (status, head.to_owned(), body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

/// `GET path`, expecting 200.
pub fn get(base: &str, path: &str) -> String {
    let (status, head, body) = request(base, "GET", path, None, None);
    assert_eq!(status, 200, "{head}\n{body}");
    body
}

/// `GET /api/data` as JSON.
pub fn data(base: &str) -> Value {
    serde_json::from_str(&get(base, "/api/data")).expect("JSON")
}

/// Polls `f` every 50 ms until it is true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every span in a tree of span JSON nodes, depth first.
pub fn all_spans(nodes: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for n in nodes.as_array().into_iter().flatten() {
        out.push(n.clone());
        out.extend(all_spans(&n["children"]));
    }
    out
}
