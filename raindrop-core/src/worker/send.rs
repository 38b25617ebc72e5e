//! Delivery of one request: HTTP with retries, or a line in the local sink.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE};

use super::retry::{Attempt, Decision, Policy};
use super::{Route, WorkerConfig};
use crate::options::LocalSink;
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
    kind: Kind,
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
    Sink(Mutex<Box<dyn Write + Send>>),
}

/// `User-Agent` of every request.
const USER_AGENT: &str = concat!("raindrop-sdk-rust/", env!("CARGO_PKG_VERSION"));

/// Bytes of a response body read (and discarded) so the connection is reused.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

impl Transport {
    pub fn new(cfg: &WorkerConfig) -> std::io::Result<Transport> {
        Ok(Transport {
            kind: Kind::new(cfg)?,
            paused: Default::default(),
            start: Instant::now(),
        })
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

    /// Delivers `body`, retrying as the policy says. Never panics.
    pub async fn deliver(&self, route: Route, body: bytes::Bytes, counters: &Counters) -> Outcome {
        match &self.kind {
            Kind::Sink(out) => Self::write_line(out, route, &body, counters),
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

    fn write_line(
        out: &Mutex<Box<dyn Write + Send>>,
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
        let mut w = out.lock().unwrap_or_else(|e| e.into_inner());
        match w.write_all(&line).and_then(|_| w.flush()) {
            Ok(()) => Outcome::Delivered,
            Err(e) => {
                tracing::warn!(target: "raindrop", "local sink write failed: {e}");
                Outcome::Exhausted
            }
        }
    }
}

impl Kind {
    fn new(cfg: &WorkerConfig) -> std::io::Result<Kind> {
        if let Some(sink) = &cfg.local_sink {
            let out: Box<dyn Write + Send> = match sink {
                LocalSink::Stdout => Box::new(std::io::stdout()),
                LocalSink::Stderr => Box::new(std::io::stderr()),
                LocalSink::File(path) => Box::new(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)?,
                ),
            };
            return Ok(Kind::Sink(Mutex::new(out)));
        }
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(key) = &cfg.write_key {
            if let Ok(mut v) = HeaderValue::from_str(&format!("Bearer {}", key.expose())) {
                v.set_sensitive(true);
                headers.insert(AUTHORIZATION, v);
            } else {
                tracing::error!(target: "raindrop", "the write key contains characters not allowed in a header; requests will be rejected");
            }
        }
        if let Some(p) = &cfg.project_id {
            if let Ok(v) = HeaderValue::from_str(p) {
                headers.insert("X-Raindrop-Project-Id", v);
            }
        }
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(USER_AGENT)
            // A redirect could carry the write key elsewhere; a 3xx is a
            // permanent failure, counted as rejected.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(cfg.request_timeout)
            .connect_timeout(cfg.request_timeout.min(Duration::from_secs(5)))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(std::io::Error::other)?;
        Ok(Kind::Http {
            client,
            urls: Box::new(Route::ALL.map(|r| cfg.base.join(r.path()).ok())),
            policy: Policy {
                max_attempts: cfg.max_attempts,
                base: Duration::from_millis(500),
                max_backoff: Duration::from_secs(8),
                max_retry_after: cfg.max_retry_after,
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
