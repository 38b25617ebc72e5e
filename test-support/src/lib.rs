//! Helpers for the SDK's own tests (never published; the core and facade
//! test suites name it as a path-only dev-dependency):
//!
//! - [`Capture`]: an HTTP server on 127.0.0.1 that records every request and
//!   answers from a per-path fault plan, for the tests where the wire itself
//!   is under test (golden bodies, faults, latency, security, shutdown,
//!   overload, the Workshop mirror). Tests that only inspect what was
//!   recorded use `raindrop::testing` instead.
//! - [`RawServer`]: faults below HTTP (connections dropped mid-response).
//! - [`logs`]: everything `tracing` emits in the test binary.
//! - [`serial`]: one lock for the tests of a binary that must not overlap.
//! - [`spans`]: attribute lookups over the captured OTLP/JSON spans.
//! - [`serve`]: a mock (a model API) on 127.0.0.1, its runtime on its own
//!   thread.
//! - [`block_on_in_time`]: a test's async part on its own runtime, bounded.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// How the server answers one request.
#[derive(Debug, Clone)]
pub enum Answer {
    /// A status with an optional `Retry-After` and body.
    Status(u16, Option<String>, &'static str),
    /// Waits, then answers 204.
    Delay(Duration),
    /// Never answers (holds the connection for up to 30 s).
    Hang,
    /// 307 to this URL.
    Redirect(String),
}

pub mod logs;
pub mod spans;

/// Runs `fut` to its end on a fresh current-thread runtime (I/O and time
/// enabled); panics when it takes longer than `limit`, so a test that hangs
/// fails instead.
pub fn block_on_in_time<T>(limit: Duration, fut: impl std::future::Future<Output = T>) -> T {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // The timer is made inside the runtime: it needs its clock.
    rt.block_on(async { tokio::time::timeout(limit, fut).await })
        .unwrap_or_else(|_| panic!("the test's async part did not finish within {limit:?}"))
}

/// Serves `app` on 127.0.0.1 (a free port) from a runtime on its own
/// thread, for the whole test binary's life; returns where it listens.
pub fn serve(app: axum::Router) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(l, app).await.unwrap();
        });
    });
    addr
}

/// Serialises the tests of one test binary that must not overlap (they
/// measure time, count threads, or install process-wide state). A test that
/// panicked while holding it does not poison it for the others.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// One recorded request.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// When the server read it.
    pub at: Instant,
    /// The URL path (`/v1/events/track`).
    pub path: String,
    /// The request headers.
    pub headers: HeaderMap,
    /// The body as sent.
    pub raw: Bytes,
    /// The body parsed as JSON (`Null` when it is not JSON).
    pub body: Value,
    /// The status the server answered (0: it never answered).
    pub status: u16,
}

#[derive(Default)]
struct Inner {
    requests: Vec<Recorded>,
    plan: Vec<(String, VecDeque<Answer>)>,
    /// Requests with no planned answer wait `base + up to jitter`, then 204:
    /// the network distance of the real API, which loopback hides.
    latency: (Duration, Duration),
    draws: u64,
}

/// The running server. Dropping it stops it.
#[derive(Clone)]
pub struct Capture {
    /// Where it listens.
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    _stop: Arc<tokio::sync::oneshot::Sender<()>>,
}

impl Capture {
    /// Starts a server on an ephemeral loopback port, on its own thread and runtime.
    pub fn start(plan: Vec<(&str, Vec<Answer>)>) -> Capture {
        Capture::start_on("127.0.0.1:0".parse().unwrap(), plan)
    }

    /// Starts a server on `addr` (e.g. a port that was refusing connections
    /// until now, see [`refusing_addr`]).
    pub fn start_on(addr: SocketAddr, plan: Vec<(&str, Vec<Answer>)>) -> Capture {
        Capture::start_full(addr, plan, Duration::ZERO, Duration::ZERO)
    }

    /// A server at a distance: every unplanned answer waits `base` plus a
    /// pseudo-random part of up to `jitter` (so requests overtake each other).
    pub fn with_latency(
        plan: Vec<(&str, Vec<Answer>)>,
        base: Duration,
        jitter: Duration,
    ) -> Capture {
        Capture::start_full("127.0.0.1:0".parse().unwrap(), plan, base, jitter)
    }

    fn start_full(
        addr: SocketAddr,
        plan: Vec<(&str, Vec<Answer>)>,
        base: Duration,
        jitter: Duration,
    ) -> Capture {
        let inner = Arc::new(Mutex::new(Inner {
            requests: Vec::new(),
            plan: plan
                .into_iter()
                .map(|(p, a)| (p.to_string(), a.into_iter().collect()))
                .collect(),
            latency: (base, jitter),
            draws: 0,
        }));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let state = inner.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                let app = axum::Router::new().fallback(handle).with_state(state);
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stop_rx.await;
                    })
                    .await;
            });
        });
        let addr = addr_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        Capture {
            addr,
            inner,
            _stop: Arc::new(stop_tx),
        }
    }

    /// The base URL to give the SDK as endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://{}/v1/", self.addr)
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.lock().unwrap().requests.clone()
    }

    /// Requests whose path ends with `/route`.
    pub fn to(&self, route: &str) -> Vec<Recorded> {
        let suffix = format!("/{route}");
        self.requests()
            .into_iter()
            .filter(|r| r.path.ends_with(&suffix))
            .collect()
    }

    /// Items in 2xx-answered requests to `route` (array bodies are flattened).
    pub fn delivered(&self, route: &str) -> Vec<Value> {
        self.to(route)
            .into_iter()
            .filter(|r| (200..300).contains(&r.status))
            .flat_map(|r| match r.body {
                Value::Array(a) => a,
                other => vec![other],
            })
            .collect()
    }

    /// Every span in 2xx-answered `traces` requests, as the OTLP/JSON sent
    /// (for tests that check the wire form of attributes).
    pub fn spans(&self) -> Vec<Value> {
        self.delivered("traces")
            .iter()
            .flat_map(|b| b["resourceSpans"].as_array().into_iter().flatten())
            .flat_map(|rs| rs["scopeSpans"].as_array().into_iter().flatten())
            .flat_map(|ss| ss["spans"].as_array().into_iter().flatten())
            .cloned()
            .collect()
    }

    /// Hands each 2xx-answered request to the SDK's API to `push` as
    /// (route under `/v1/`, body): how a test fills `raindrop::testing::
    /// Recorded`, a facade type this crate cannot name.
    pub fn each_accepted(&self, mut push: impl FnMut(&str, &Value)) {
        for r in self.requests() {
            if let Some(route) = r.path.strip_prefix("/v1/") {
                if (200..300).contains(&r.status) {
                    push(route, &r.body);
                }
            }
        }
    }

    /// Waits until `pred` holds (polling), up to `timeout`.
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&Capture) -> bool) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if pred(self) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        pred(self)
    }
}

async fn handle(
    State(state): State<Arc<Mutex<Inner>>>,
    uri: Uri,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let answer = {
        let mut s = state.lock().unwrap();
        let a = s
            .plan
            .iter_mut()
            .find(|(p, q)| (p == "*" || path.ends_with(&format!("/{p}"))) && !q.is_empty())
            .and_then(|(_, q)| q.pop_front());
        let (base, jitter) = s.latency;
        s.draws += 1;
        // A cheap hash of the draw number: spread over [0, jitter).
        let spread = s.draws.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
        let extra = jitter.mul_f64(spread as f64 / (1u64 << 24) as f64);
        a.unwrap_or(if base.is_zero() && jitter.is_zero() {
            Answer::Status(204, None, "")
        } else {
            Answer::Delay(base + extra)
        })
    };
    let status = match &answer {
        Answer::Status(s, _, _) => *s,
        Answer::Delay(_) => 204,
        Answer::Hang => 0,
        Answer::Redirect(_) => 307,
    };
    let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    state.lock().unwrap().requests.push(Recorded {
        at: Instant::now(),
        path,
        headers,
        raw: raw.clone(),
        body,
        status,
    });
    match answer {
        Answer::Status(s, ra, body) => {
            let mut resp = (StatusCode::from_u16(s).unwrap(), body.to_string()).into_response();
            if let Some(ra) = ra {
                resp.headers_mut()
                    .insert("retry-after", ra.parse().unwrap());
            }
            resp
        }
        Answer::Delay(d) => {
            tokio::time::sleep(d).await;
            StatusCode::NO_CONTENT.into_response()
        }
        Answer::Hang => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            StatusCode::NO_CONTENT.into_response()
        }
        Answer::Redirect(to) => {
            let mut resp = StatusCode::TEMPORARY_REDIRECT.into_response();
            resp.headers_mut().insert("location", to.parse().unwrap());
            resp
        }
    }
}

/// A loopback address on which nothing listens: connections are refused.
/// The port was free a moment ago, so [`Capture::start_on`] can later bring a
/// server up on it ("the server comes back").
pub fn refusing_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    addr
}

/// How the raw server answers one request, below the level of HTTP semantics.
#[derive(Debug, Clone)]
pub enum Raw {
    /// A complete response with this status (and `Connection: close`).
    Respond(u16),
    /// Reads the request, then closes the connection without a byte of answer.
    Drop,
    /// Sends the status line and half a header block, then closes mid-response.
    Truncate,
    /// Answers bytes that are not HTTP at all, then closes.
    Garbage,
}

/// A minimal HTTP/1.1 server on raw std sockets, for faults that a real HTTP
/// stack will not produce (a connection closed mid-response). One request per
/// connection; answers from `plan` in turn, then `204`.
#[derive(Clone)]
pub struct RawServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// `(path, body, answer)` of every request read in full.
    pub seen: Arc<Mutex<Vec<(String, Bytes, Raw)>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl RawServer {
    /// Starts a server answering from `plan` in turn, then `204`.
    pub fn start(plan: Vec<Raw>) -> RawServer {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let seen: Arc<Mutex<Vec<(String, Bytes, Raw)>>> = Arc::default();
        let plan = Arc::new(Mutex::new(plan.into_iter().collect::<VecDeque<_>>()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (seen2, stop2) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            let started = Instant::now();
            // Bounded in time whatever happens: at most 60 s.
            while !stop2.load(std::sync::atomic::Ordering::Relaxed)
                && started.elapsed() < Duration::from_secs(60)
            {
                let (mut conn, _) = match listener.accept() {
                    Ok(c) => c,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(2));
                        continue;
                    }
                };
                let (seen, plan) = (seen2.clone(), plan.clone());
                std::thread::spawn(move || {
                    conn.set_nonblocking(false).ok();
                    conn.set_read_timeout(Some(Duration::from_secs(5))).ok();
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 8192];
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        match conn.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                    let len = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    while buf.len() < head_end + len {
                        match conn.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                    let answer = plan
                        .lock()
                        .unwrap()
                        .pop_front()
                        .unwrap_or(Raw::Respond(204));
                    seen.lock().unwrap().push((
                        path,
                        Bytes::copy_from_slice(&buf[head_end..head_end + len]),
                        answer.clone(),
                    ));
                    let out: Vec<u8> = match answer {
                        Raw::Respond(s) => format!(
                            "HTTP/1.1 {s} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        )
                        .into_bytes(),
                        Raw::Drop => Vec::new(),
                        Raw::Truncate => b"HTTP/1.1 200 OK\r\nContent-Le".to_vec(),
                        Raw::Garbage => b"\x00\xffnot http at all\r\n\r\n".to_vec(),
                    };
                    let _ = conn.write_all(&out);
                    let _ = conn.flush();
                    let _ = conn.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        RawServer { addr, seen, stop }
    }

    /// The base URL to give the SDK as endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://{}/v1/", self.addr)
    }

    /// Requests answered with a complete 2xx.
    pub fn delivered_bodies(&self) -> Vec<Bytes> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, _, a)| matches!(a, Raw::Respond(s) if (200..300).contains(s)))
            .map(|(_, b, _)| b.clone())
            .collect()
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        if Arc::strong_count(&self.stop) == 1 {
            self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// A service in a process of its own: this test binary run again, with only
/// the test `test` selected, for tests that need two processes with their
/// own clients and subscribers. The child prints `<tag>addr=<socket>` once
/// it listens and `<tag>stats=<json>` once its standard input closes.
pub struct ChildService {
    child: std::process::Child,
    /// Where the child listens.
    pub addr: SocketAddr,
    lines: std::sync::mpsc::Receiver<String>,
}

impl ChildService {
    /// Starts the child with `env` set; nothing of this process's raindrop
    /// environment leaks in, and its Workshop mirror is off.
    pub fn start(test: &str, tag: &'static str, env: &[(&str, &str)]) -> ChildService {
        use std::io::BufRead as _;
        use std::process::{Command, Stdio};
        let mut cmd = Command::new(std::env::current_exe().expect("test binary"));
        cmd.args([test, "--exact", "--nocapture", "--test-threads=1"])
            .env_remove("RAINDROP_WRITE_KEY")
            .env_remove("RAINDROP_PROPAGATION_SECRET")
            .env_remove("RAINDROP_PROPAGATION_TRUST")
            .env_remove("RAINDROP_LOCAL_SINK")
            .env_remove("RUST_LOG")
            .env("RAINDROP_WORKSHOP", "off")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("the child service starts");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                // The test harness may print its own words before ours.
                if let Some((_, l)) = line.split_once(tag) {
                    let _ = tx.send(l.to_owned());
                }
            }
        });
        let first = lines
            .recv_timeout(Duration::from_secs(30))
            .expect("the child service printed its address");
        let addr = first.strip_prefix("addr=").unwrap().parse().unwrap();
        ChildService { child, addr, lines }
    }

    /// Stops the child (closes its standard input) and returns the stats
    /// it printed once it flushed.
    pub fn stop(mut self) -> Value {
        drop(self.child.stdin.take());
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(40))
            .expect("the child service printed its stats");
        let status = self.child.wait().unwrap();
        assert!(status.success(), "the child service failed: {status:?}");
        serde_json::from_str(line.strip_prefix("stats=").unwrap()).unwrap()
    }
}

impl Drop for ChildService {
    fn drop(&mut self) {
        // Only if a test failed before `stop`: never leave the child running.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
