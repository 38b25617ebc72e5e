//! Delivery of one request: HTTP with retries, or a line in the local sink.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE};

use super::retry::{Attempt, Decision, Policy};
use super::WorkerConfig;
use crate::endpoint::Tls;
use crate::options::{LocalSink, Workshop};
use crate::route::Route;
use crate::stats::Counters;

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Delivered,
    Rejected(u16),
    Exhausted,
}

/// Where requests go, and the per-route pauses asked for by `Retry-After`.
pub(crate) struct Transport {
    /// The API (or the local sink); `None` when only the Workshop receives.
    kind: Option<Kind>,
    /// The local Workshop debugger, once resolved by the worker at start.
    mirror: OnceLock<Mirror>,
    /// Mirror requests not finished yet (waited for, briefly, at shutdown).
    mirroring: Arc<AtomicUsize>,
    /// One permit per mirror request under way, `max_in_flight` in all: the
    /// mirror never runs more requests at once than the API may.
    mirror_permits: Arc<tokio::sync::Semaphore>,
    /// Per route: until when (ms after `start`) the server asked us to wait; 0 for none.
    paused: [AtomicU64; 5],
    start: Instant,
}

enum Kind {
    Http {
        client: reqwest::Client,
        /// Each route's URL, by `Route as usize`, joined once (a parse per
        /// request was a visible part of the worker's per-request cost).
        urls: Box<[Option<reqwest::Url>; 5]>,
        policy: Policy,
        debug: Arc<AtomicBool>,
    },
    Sink(SinkWriter),
}

/// The local sink's writer: a thread of its own, fed in order, so a write
/// that blocks (stdout piped to a reader that stopped reading) holds up
/// only the requests waiting for it, never the worker's loop, its timers
/// or its deadlines.
struct SinkWriter {
    /// `Sender` is `Sync`: delivery tasks share it without a lock.
    lines: std::sync::mpsc::Sender<(Vec<u8>, tokio::sync::oneshot::Sender<bool>)>,
}

impl SinkWriter {
    fn start(mut out: Box<dyn Write + Send>) -> std::io::Result<SinkWriter> {
        let (tx, rx) = std::sync::mpsc::channel::<(Vec<u8>, tokio::sync::oneshot::Sender<bool>)>();
        std::thread::Builder::new()
            .name("raindrop-sink".into())
            .spawn(move || {
                // Ends when the transport, and with it the sender, is gone.
                for (line, done) in rx {
                    let ok = match out.write_all(&line).and_then(|_| out.flush()) {
                        Ok(()) => true,
                        Err(e) => {
                            tracing::warn!(target: "raindrop", "local sink write failed: {e}");
                            false
                        }
                    };
                    let _ = done.send(ok);
                }
            })?;
        Ok(SinkWriter { lines: tx })
    }

    async fn write(&self, line: Vec<u8>) -> bool {
        let (done, answer) = tokio::sync::oneshot::channel();
        let sent = self.lines.send((line, done)).is_ok();
        sent && answer.await.unwrap_or(false)
    }
}

/// `User-Agent` of every request.
const USER_AGENT: &str = concat!("raindrop-sdk-rust/", env!("CARGO_PKG_VERSION"));

/// Bytes of a response body read (and discarded) so the connection is reused.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// The Workshop mirror: same paths and bodies, no `Authorization`.
struct Mirror {
    client: reqwest::Client,
    urls: [Option<reqwest::Url>; 5],
}

/// The headers of every request, to the API and to the Workshop mirror
/// alike; only the API also gets `Authorization`.
fn common_headers(project_id: Option<&str>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(v) = project_id.and_then(|p| HeaderValue::from_str(p).ok()) {
        headers.insert("X-Raindrop-Project-Id", v);
    }
    headers
}

/// A client builder trusting the configured roots and extra CAs (on ring:
/// see [`super::tls`]).
fn trusting(tls: &Tls) -> Result<reqwest::ClientBuilder, std::io::Error> {
    let config = super::tls::client_config(tls)?;
    Ok(reqwest::Client::builder().tls_backend_preconfigured(config))
}

/// Timeout of one mirror request; it is never retried.
const MIRROR_TIMEOUT: Duration = Duration::from_secs(2);

impl Mirror {
    fn new(base: &str, project_id: Option<&str>) -> Option<Mirror> {
        let base = reqwest::Url::parse(&format!("{}/", base.trim().trim_end_matches('/'))).ok()?;
        let headers = common_headers(project_id);
        let client = trusting(&Tls::default())
            .ok()?
            .default_headers(headers)
            .user_agent(USER_AGENT)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(MIRROR_TIMEOUT)
            .build()
            .ok()?;
        Some(Mirror {
            client,
            urls: Route::ALL.map(|r| base.join(r.path()).ok()),
        })
    }

    /// One attempt; whether the Workshop answered 2xx.
    async fn post(&self, route: Route, body: bytes::Bytes) -> bool {
        let Some(url) = &self.urls[route as usize] else {
            return false;
        };
        match self.client.post(url.clone()).body(body).send().await {
            Ok(resp) => {
                let ok = resp.status().is_success();
                let _ = resp.bytes().await;
                ok
            }
            Err(e) => {
                tracing::debug!(target: "raindrop", route = route.path(), "workshop mirror failed: {}", e.without_url());
                false
            }
        }
    }
}

impl Transport {
    pub fn new(cfg: &WorkerConfig) -> std::io::Result<Transport> {
        let primary = cfg.options.write_key.is_some() || cfg.options.local_sink.is_some();
        Ok(Transport {
            kind: if primary { Some(Kind::new(cfg)?) } else { None },
            mirror: OnceLock::new(),
            mirroring: Arc::new(AtomicUsize::new(0)),
            mirror_permits: Arc::new(tokio::sync::Semaphore::new(
                cfg.options.max_in_flight.max(1),
            )),
            paused: Default::default(),
            start: Instant::now(),
        })
    }

    /// Decides once, on the worker, whether to mirror to a Workshop: an
    /// explicit URL, or in a debug build with a write key a 100 ms TCP probe
    /// of the default address. Never runs on a caller's thread.
    pub async fn resolve_workshop(&self, cfg: &WorkerConfig) {
        let url = match &cfg.options.workshop {
            Workshop::Off => return,
            Workshop::At(url) => url.clone(),
            Workshop::Auto => {
                if cfg.options.write_key.is_none() {
                    return;
                }
                // A release build never hands content to whatever listens
                // on the port unless told to.
                let Some(addr) = cfg.workshop_probe else {
                    return;
                };
                let probe = tokio::net::TcpStream::connect(addr);
                match tokio::time::timeout(Duration::from_millis(100), probe).await {
                    Ok(Ok(_)) => format!("http://{addr}/v1/"),
                    _ => return,
                }
            }
        };
        match Mirror::new(&url, cfg.project_id.as_deref()) {
            Some(m) => {
                tracing::info!(target: "raindrop", "mirroring every request to the local Workshop at {url}");
                let _ = self.mirror.set(m);
            }
            None => crate::diag::setup_warning(
                "workshop_url",
                &format!("the Workshop URL `{url}` is not a usable URL; not mirroring"),
            ),
        }
    }

    /// Mirror requests still in flight.
    pub fn mirroring(&self) -> usize {
        self.mirroring.load(Relaxed)
    }

    /// Sends `body` to the Workshop too, without waiting and without
    /// touching the outcome of the real delivery.
    fn mirror(self: &Arc<Self>, route: Route, body: &bytes::Bytes, counters: &Arc<Counters>) {
        if self.mirror.get().is_none() || self.kind.is_none() {
            return;
        }
        // Never waits for a permit: delivery to the API goes first.
        let Ok(permit) = self.mirror_permits.clone().try_acquire_owned() else {
            // Said once; the count is in `Stats::workshop_skipped`.
            if counters.workshop_skipped.fetch_add(1, Relaxed) == 0 {
                tracing::info!(target: "raindrop", route = route.path(), "not mirroring some requests to the Workshop: max_in_flight mirror requests already under way (counted in Stats::workshop_skipped)");
            }
            return;
        };
        let (this, body, counters) = (self.clone(), body.clone(), counters.clone());
        self.mirroring.fetch_add(1, Relaxed);
        tokio::spawn(async move {
            if let Some(m) = this.mirror.get() {
                if m.post(route, body).await {
                    counters.workshop_sent.fetch_add(1, Relaxed);
                } else {
                    counters.workshop_failures.fetch_add(1, Relaxed);
                }
            }
            drop(permit);
            this.mirroring.fetch_sub(1, Relaxed);
        });
    }

    /// Until when `route` is paused by a `Retry-After`, if it is.
    pub fn paused_until(&self, route: Route) -> Option<Instant> {
        match self.paused[route as usize].load(Relaxed) {
            0 => None,
            ms => self.start.checked_add(Duration::from_millis(ms)),
        }
    }

    /// A `Retry-After` on `route`: no new request starts on it for `wait`.
    fn pause(&self, route: Route, wait: Duration) {
        let until = (self.start.elapsed() + wait).as_millis() as u64;
        self.paused[route as usize].fetch_max(until.max(1), Relaxed);
    }

    /// Delivers `body`, retrying as the policy says, and mirrors it to the
    /// Workshop if there is one. Never panics.
    pub async fn deliver(
        self: &Arc<Self>,
        route: Route,
        body: bytes::Bytes,
        counters: &Arc<Counters>,
    ) -> Outcome {
        self.mirror(route, &body, counters);
        let Some(kind) = &self.kind else {
            return self.workshop_only(route, body, counters).await;
        };
        match kind {
            Kind::Sink(out) => Self::write_line(out, route, &body, counters).await,
            Kind::Http {
                client,
                urls,
                policy,
                debug,
            } => {
                let Some(url) = &urls[route as usize] else {
                    return Outcome::Rejected(0);
                };
                let mut attempt = 1u32;
                loop {
                    // A request that was started before its route was paused
                    // still waits out the pause before its attempt.
                    if let Some(until) = self.paused_until(route) {
                        tokio::time::sleep_until(until.into()).await;
                    }
                    counters.requests.fetch_add(1, Relaxed);
                    let result = match client.post(url.clone()).body(body.clone()).send().await {
                        Ok(mut resp) => {
                            let ra = resp
                                .headers()
                                .get(reqwest::header::RETRY_AFTER)
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_owned);
                            let status = resp.status().as_u16();
                            // Read (bounded) and discard the body, so the
                            // connection goes back to the pool.
                            let mut read = 0;
                            while read < MAX_RESPONSE_BYTES {
                                match resp.chunk().await {
                                    Ok(Some(c)) => read += c.len(),
                                    _ => break,
                                }
                            }
                            Attempt::Status(status, ra)
                        }
                        Err(e) => {
                            if debug.load(Relaxed) {
                                tracing::debug!(target: "raindrop", route = route.path(), attempt, "request failed: {}", e.without_url());
                            }
                            Attempt::NetworkError
                        }
                    };
                    let decision = policy.decide(&result, attempt, jitter());
                    if debug.load(Relaxed) {
                        tracing::debug!(target: "raindrop", route = route.path(), attempt, bytes = body.len(), ?result, ?decision, "request");
                    }
                    match decision {
                        Decision::Delivered => return Outcome::Delivered,
                        Decision::Rejected(s) => return Outcome::Rejected(s),
                        Decision::Exhausted => return Outcome::Exhausted,
                        Decision::RetryAfter(wait) => {
                            if matches!(&result, Attempt::Status(_, Some(_))) {
                                // The server asked this route to wait: pause it, not the others.
                                self.pause(route, wait);
                            }
                            counters.retries.fetch_add(1, Relaxed);
                            tokio::time::sleep(wait).await;
                            attempt += 1;
                        }
                    }
                }
            }
        }
    }

    /// No key: the Workshop alone receives, one attempt each.
    async fn workshop_only(
        &self,
        route: Route,
        body: bytes::Bytes,
        counters: &Counters,
    ) -> Outcome {
        counters.requests.fetch_add(1, Relaxed);
        match self.mirror.get() {
            Some(m) if m.post(route, body).await => {
                counters.workshop_sent.fetch_add(1, Relaxed);
                Outcome::Delivered
            }
            _ => {
                counters.workshop_failures.fetch_add(1, Relaxed);
                Outcome::Exhausted
            }
        }
    }

    async fn write_line(
        out: &SinkWriter,
        route: Route,
        body: &[u8],
        counters: &Counters,
    ) -> Outcome {
        let mut line = Vec::with_capacity(body.len() + route.path().len() + 24);
        line.extend_from_slice(br#"{"path":""#);
        line.extend_from_slice(route.path().as_bytes());
        line.extend_from_slice(br#"","body":"#);
        line.extend_from_slice(body);
        line.extend_from_slice(b"}\n");
        counters.requests.fetch_add(1, Relaxed);
        if out.write(line).await {
            Outcome::Delivered
        } else {
            Outcome::Exhausted
        }
    }
}

impl Kind {
    fn new(cfg: &WorkerConfig) -> std::io::Result<Kind> {
        if let Some(sink) = &cfg.options.local_sink {
            let out: Box<dyn Write + Send> = match sink {
                LocalSink::Stdout => Box::new(std::io::stdout()),
                LocalSink::Stderr => Box::new(std::io::stderr()),
                LocalSink::File(path) => Box::new(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)?,
                ),
                LocalSink::Memory(sink) => Box::new(sink.clone()),
            };
            return Ok(Kind::Sink(SinkWriter::start(out)?));
        }
        let mut headers = common_headers(cfg.project_id.as_deref());
        if let Some(key) = &cfg.options.write_key {
            if let Ok(mut v) = HeaderValue::from_str(&format!("Bearer {}", key.expose())) {
                v.set_sensitive(true);
                headers.insert(AUTHORIZATION, v);
            } else {
                tracing::error!(target: "raindrop", "the write key contains characters not allowed in a header; requests will be rejected");
            }
        }
        let client = trusting(&cfg.tls)?
            .default_headers(headers)
            .user_agent(USER_AGENT)
            // A redirect could carry the write key elsewhere; a 3xx is a
            // permanent failure, counted as rejected.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(cfg.options.request_timeout)
            .connect_timeout(cfg.options.request_timeout.min(Duration::from_secs(5)))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(std::io::Error::other)?;
        Ok(Kind::Http {
            client,
            urls: Box::new(Route::ALL.map(|r| cfg.base.join(r.path()).ok())),
            policy: Policy {
                max_attempts: cfg.options.max_attempts,
                base: Duration::from_millis(500),
                max_backoff: Duration::from_secs(8),
                max_retry_after: cfg.options.max_retry_after,
            },
            debug: cfg.debug_logs.clone(),
        })
    }
}

/// A number in [0, 1).
fn jitter() -> f64 {
    (crate::ids::random_u128() as u64 >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_urls_are_indexed_by_route() {
        for (i, r) in Route::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{r:?}");
        }
        let base = reqwest::Url::parse("http://127.0.0.1:1/v1/").unwrap();
        let urls = Route::ALL.map(|r| base.join(r.path()).ok());
        assert_eq!(
            urls[Route::Partial as usize].as_ref().map(|u| u.as_str()),
            Some("http://127.0.0.1:1/v1/events/track_partial")
        );
    }
}
