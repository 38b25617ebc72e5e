//! Shared bench helpers: a loopback HTTP sink that answers 200 to every POST,
//! optionally counting the events it receives (and duplicates, by event id).
//!
//! The sink runs on its own OS thread with a current-thread tokio runtime, so
//! it never shares a runtime with the code under measurement. It binds
//! 127.0.0.1 only and stops when dropped.

#![allow(dead_code)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Router;
use raindrop::{Client, ClientOptions};

/// What a counting sink has seen.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// POST requests answered.
    pub requests: u64,
    /// Events received, duplicates included.
    pub events: u64,
    /// Distinct event ids received.
    pub unique: u64,
    /// Events whose id had been received before.
    pub duplicates: u64,
    /// Bodies that were not a JSON array of objects with an `event_id`.
    pub unparsed: u64,
    /// Request body bytes received.
    pub bytes: u64,
    /// Distinct interactions whose final update (`is_pending: false`) arrived.
    pub finals: u64,
    /// Final updates of an interaction whose final had arrived before.
    pub final_duplicates: u64,
    /// Pending interaction snapshots received.
    pub snapshots: u64,
}

#[derive(Default)]
struct Shared {
    count_ids: bool,
    /// Every answer waits this long: the network distance of the real API.
    delay: Duration,
    finals: Mutex<HashSet<u128>>,
    final_duplicates: AtomicU64,
    snapshots: AtomicU64,
    requests: AtomicU64,
    events: AtomicU64,
    duplicates: AtomicU64,
    unparsed: AtomicU64,
    bytes: AtomicU64,
    seen: Mutex<HashSet<u128>>,
}

/// A running loopback sink; stops when dropped.
pub struct Sink {
    port: u16,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(serde::Deserialize)]
struct IdOnly<'a> {
    #[serde(borrow)]
    event_id: &'a str,
    #[serde(default)]
    is_pending: Option<bool>,
}

/// The 128-bit value of a hyphenated UUID string, or `None`.
fn uuid_bits(s: &str) -> Option<u128> {
    let mut v: u128 = 0;
    let mut digits = 0;
    for b in s.bytes() {
        if b == b'-' {
            continue;
        }
        let d = (b as char).to_digit(16)?;
        v = (v << 4) | u128::from(d);
        digits += 1;
    }
    (digits == 32).then_some(v)
}

async fn ingest(State(st): State<Arc<Shared>>, body: Bytes) -> StatusCode {
    if !st.delay.is_zero() {
        tokio::time::sleep(st.delay).await;
    }
    st.requests.fetch_add(1, Relaxed);
    st.bytes.fetch_add(body.len() as u64, Relaxed);
    if !st.count_ids {
        return StatusCode::OK;
    }
    if body.first() == Some(&b'{') {
        // One interaction update (`events/track_partial`).
        match serde_json::from_slice::<IdOnly<'_>>(&body) {
            Ok(p) if p.is_pending == Some(false) => match uuid_bits(p.event_id) {
                Some(bits) => {
                    if !st.finals.lock().unwrap().insert(bits) {
                        st.final_duplicates.fetch_add(1, Relaxed);
                    }
                }
                None => {
                    st.unparsed.fetch_add(1, Relaxed);
                }
            },
            Ok(_) => {
                st.snapshots.fetch_add(1, Relaxed);
            }
            Err(_) => {
                st.unparsed.fetch_add(1, Relaxed);
            }
        }
        return StatusCode::OK;
    }
    match serde_json::from_slice::<Vec<IdOnly<'_>>>(&body) {
        Ok(events) => {
            st.events.fetch_add(events.len() as u64, Relaxed);
            let mut seen = st.seen.lock().unwrap();
            for e in events {
                match uuid_bits(e.event_id) {
                    Some(bits) => {
                        if !seen.insert(bits) {
                            st.duplicates.fetch_add(1, Relaxed);
                        }
                    }
                    None => {
                        st.unparsed.fetch_add(1, Relaxed);
                    }
                }
            }
        }
        Err(_) => {
            st.unparsed.fetch_add(1, Relaxed);
        }
    }
    StatusCode::OK
}

impl Sink {
    /// Starts a sink on an ephemeral loopback port. With `count_ids` it
    /// parses every body as an `events/track` array and records event ids.
    pub fn start(count_ids: bool) -> Sink {
        Sink::start_with_delay(count_ids, Duration::ZERO)
    }

    /// Like [`start`](Self::start), answering every request after `delay`.
    pub fn start_with_delay(count_ids: bool, delay: Duration) -> Sink {
        let shared = Arc::new(Shared {
            count_ids,
            delay,
            ..Default::default()
        });
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let st = shared.clone();
        let thread = std::thread::Builder::new()
            .name("bench-sink".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("sink runtime");
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                        .await
                        .expect("bind loopback");
                    port_tx
                        .send(listener.local_addr().expect("addr").port())
                        .expect("port");
                    let app = Router::new()
                        .fallback(axum::routing::post(ingest))
                        .with_state(st);
                    axum::serve(listener, app)
                        .with_graceful_shutdown(async move {
                            let _ = stop_rx.await;
                        })
                        .await
                        .expect("sink serve");
                });
            })
            .expect("sink thread");
        let port = port_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("sink did not start");
        Sink {
            port,
            shared,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// The loopback port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The endpoint to give the client.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/v1/", self.port)
    }

    /// What the sink has seen so far.
    pub fn counts(&self) -> Counts {
        let unique = self.shared.seen.lock().unwrap().len() as u64;
        Counts {
            requests: self.shared.requests.load(Relaxed),
            events: self.shared.events.load(Relaxed),
            unique,
            duplicates: self.shared.duplicates.load(Relaxed),
            unparsed: self.shared.unparsed.load(Relaxed),
            bytes: self.shared.bytes.load(Relaxed),
            finals: self.shared.finals.lock().unwrap().len() as u64,
            final_duplicates: self.shared.final_duplicates.load(Relaxed),
            snapshots: self.shared.snapshots.load(Relaxed),
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        // Graceful shutdown waits for idle keep-alive connections only until
        // their clients close them; never hang a bench on it.
        if let Some(t) = self.thread.take() {
            let deadline = std::time::Instant::now() + Duration::from_secs(2);
            while !t.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

/// Client options pointing at `endpoint` with a dummy key and defaults otherwise.
pub fn options(endpoint: &str) -> ClientOptions {
    ClientOptions::default()
        .write_key("bench-key")
        .endpoint(endpoint)
}

/// A client delivering to `sink`, with default options.
pub fn client_for(sink: &Sink) -> Client {
    Client::new(options(&sink.endpoint())).expect("client")
}

/// The `AiEvent` every bench tracks: a short chat turn, like a typical call.
pub fn chat_event() -> raindrop::AiEvent {
    raindrop::AiEvent::new("user-1234", "chat_message")
        .model("gpt-4o-mini")
        .input("What is the capital of France?")
        .output("The capital of France is Paris.")
        .convo_id("convo-42")
}

/// Peak resident set size (VmHWM) of this process, in KiB.
pub fn peak_rss_kib() -> u64 {
    proc_status_kib("VmHWM:")
}

/// Current resident set size (VmRSS) of this process, in KiB.
pub fn rss_kib() -> u64 {
    proc_status_kib("VmRSS:")
}

fn proc_status_kib(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Calls per timed chunk: small enough that the queue (10,000) never fills.
const CHUNK: u64 = 2_048;

/// Times `iters` calls of `f` in chunks, timing only the calls; flushes
/// `client` between chunks so every timed call is a real enqueue.
pub fn chunked(client: &Client, iters: u64, mut f: impl FnMut()) -> std::time::Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(CHUNK);
        let start = std::time::Instant::now();
        for _ in 0..n {
            f();
        }
        total += start.elapsed();
        assert!(client.flush(Duration::from_secs(30)), "flush timed out");
        left -= n;
    }
    total
}
