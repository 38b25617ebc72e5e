//! The web server: the page, its JSON, and (with `--listen`) the ingest
//! routes the SDK posts to. Everything lives in memory, bounded.
//!
//! Web pages open in the developer's browser can reach 127.0.0.1 too. They
//! cannot read anything (no CORS headers; the `Host` guard stops DNS
//! rebinding) and cannot send: the ingest routes take only
//! `application/json` bodies (a cross-origin page cannot send that type
//! without a CORS preflight, which is refused) from requests with no
//! `Origin` or a loopback one.

use std::collections::VecDeque;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Map, Value};

use raindrop_core::testing::Recorded;

use crate::held::{request_size, Before};
use crate::view::{to_json_text, RenderCache};

/// The page, with `/*RAINDROP_INITIAL_DATA*/null` replaced by the data at
/// the time it is served (so it renders before its first poll).
const PAGE: &str = include_str!("page.html");
const INITIAL_DATA: &str = "/*RAINDROP_INITIAL_DATA*/null";

/// The largest request body taken on the ingest routes.
const MAX_BODY: usize = 32 * 1024 * 1024;

/// The page's Content-Security-Policy: its own inline script and style, its
/// own `/api/data`, nothing else; never framed.
const CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                   connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'none'";

/// The paths (under `/v1/`) the SDK sends to.
pub const INGEST_PATHS: [&str; 5] = [
    "events/track",
    "events/track_partial",
    "signals/track",
    "users/identify",
    "traces",
];

/// What the viewer reads and how much it keeps.
#[derive(Debug, Clone)]
pub struct Options {
    /// A local-sink file to read, and re-read as it grows.
    pub file: Option<PathBuf>,
    /// Accept the SDK's POSTs under `/v1/` (the `--listen` mode).
    pub ingest: bool,
    /// At most this many requests are kept; the oldest go first.
    pub max_requests: usize,
    /// At most this many bytes are held, estimated from what is kept of
    /// each request (its parsed body and what it added to the merged
    /// records, several times its size on the wire: every string's length
    /// plus a fixed cost per JSON value, object entry and decoded span or
    /// event), with the events' JSON kept for the next poll; the oldest go
    /// first.
    pub max_bytes: usize,
    /// Only answer requests whose `Host` is a loopback name (`127.0.0.1`,
    /// `localhost`, `[::1]`), so a web page on another site cannot read the
    /// data through DNS rebinding. On by default; turned off when binding a
    /// non-loopback address on purpose.
    pub loopback_hosts_only: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            file: None,
            ingest: false,
            max_requests: 20_000,
            max_bytes: 256 * 1024 * 1024,
            loopback_hosts_only: true,
        }
    }
}

/// The viewer's state, shared by the routes. Cheap to clone.
#[derive(Clone)]
pub struct Viewer {
    inner: Arc<Mutex<Store>>,
}

struct Store {
    opts: Options,
    /// The requests kept, oldest first, with their estimated size in memory.
    raw: VecDeque<(String, Value, usize)>,
    /// The sum of those sizes.
    bytes: usize,
    /// Requests dropped to stay within the bounds.
    evicted: u64,
    /// Ingest requests refused as coming from a web page.
    refused: Refused,
    /// The events' JSON as last rendered.
    render: RenderCache,
    rec: Recorded,
    /// Bumped on every change; the page polls with the one it has.
    version: u64,
    tail: Tail,
    /// The last error reading the file, shown on the page.
    file_error: Option<String>,
}

/// How far the file was read.
#[derive(Default)]
struct Tail {
    offset: u64,
    /// Bytes after the last newline, kept until the line is complete.
    partial: Vec<u8>,
    /// The file's identity (inode), to notice it was replaced.
    id: Option<u64>,
    /// Its first bytes (up to [`HEAD_LEN`]): a new file can get the old
    /// one's inode, never its first line (a random event id).
    head: Vec<u8>,
}

const HEAD_LEN: usize = 256;

impl Viewer {
    /// A viewer with nothing recorded yet.
    pub fn new(opts: Options) -> Viewer {
        Viewer {
            inner: Arc::new(Mutex::new(Store {
                opts,
                raw: VecDeque::new(),
                bytes: 0,
                evicted: 0,
                refused: Refused::default(),
                render: RenderCache::default(),
                rec: Recorded::default(),
                version: 0,
                tail: Tail::default(),
                file_error: None,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Store> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records one request (`path` relative to `/v1/`, its JSON body), as if
    /// the SDK had sent it.
    pub fn ingest(&self, path: &str, body: Value) {
        self.lock().ingest(path, body);
    }

    /// The estimated bytes held for the requests kept (see
    /// [`Options::max_bytes`]).
    ///
    /// ```
    /// use raindrop_view::{Options, Viewer};
    ///
    /// let viewer = Viewer::new(Options::default());
    /// viewer.ingest("users/identify", serde_json::json!([{"user_id": "u"}]));
    /// // Parsed and decoded, a request holds more than its bytes on the wire.
    /// assert!(viewer.held_bytes() > r#"[{"user_id":"u"}]"#.len());
    /// ```
    pub fn held_bytes(&self) -> usize {
        self.lock().bytes
    }

    /// [`Viewer::data`] as JSON text: what the routes send.
    fn data_text(&self) -> String {
        self.lock().data_text()
    }

    /// Reads what was appended to the file since the last call (all of it
    /// the first time; from the start again when it was truncated or
    /// replaced). Returns whether anything changed.
    pub fn refresh(&self) -> bool {
        self.lock().refresh()
    }

    /// A copy of everything kept, merged.
    pub fn recorded(&self) -> Recorded {
        self.lock().rec.clone()
    }

    /// The data the page renders: [`crate::to_json`] plus `version`,
    /// `source`, `evicted`, `held_bytes`, `max_bytes`, `render_bytes` (the
    /// events' JSON kept to answer the next poll; counted against
    /// `max_bytes` too), `refused` (ingest requests refused:
    /// `{"origin": N, "content_type": N}`), `file_error` and
    /// `rendered_events` (how many events the answer rendered afresh: here
    /// all of them; on the routes those that changed since the last poll).
    pub fn data(&self) -> Value {
        // Built, not parsed from the routes' text: a parser's depth limit
        // (serde_json's is 128) would refuse a deep span tree.
        let store = self.lock();
        let mut v = crate::to_json(&store.rec);
        if let Value::Object(m) = &mut v {
            m.extend(store.extra());
            m.insert("render_bytes".into(), json!(store.render.bytes()));
            m.insert("rendered_events".into(), json!(store.rec.events.len()));
        }
        v
    }

    /// The current version (bumped on every change).
    pub fn version(&self) -> u64 {
        self.lock().version
    }

    /// The routes: `GET /` (the page), `GET /api/data[?since=VERSION]` (its
    /// JSON; `{"version", "unchanged": true}` when nothing changed since
    /// `VERSION`), `GET /api/text` (the plain-text tree) and, with
    /// [`Options::ingest`], `POST /v1/{path}` answering 204: only for an
    /// `application/json` body (else 415) with no `Origin` or a loopback
    /// one (else 403), so a web page cannot send to it.
    pub fn router(&self) -> Router {
        let (ingest, loopback_only) = {
            let s = self.lock();
            (s.opts.ingest, s.opts.loopback_hosts_only)
        };
        let mut app = Router::new()
            .route("/", get(page))
            .route("/api/data", get(data))
            .route("/api/text", get(text));
        if ingest {
            app = app.route("/v1/{*path}", post(ingest_route));
        }
        if loopback_only {
            app = app.layer(axum::middleware::from_fn(loopback_host));
        }
        app.layer(axum::middleware::from_fn(local_only_headers))
            .with_state(self.clone())
    }
}

impl Store {
    fn ingest(&mut self, path: &str, body: Value) {
        let before = Before::of(&self.rec, path, &body);
        self.rec.push(path, &body);
        let size = request_size(&self.rec, before, path, &body);
        self.changed_events(path, &body, before);
        self.raw.push_back((path.to_owned(), body, size));
        self.bytes = self.bytes.saturating_add(size);
        self.version += 1;
        let held = self.bytes.saturating_add(self.render.bytes());
        if self.raw.len() > self.opts.max_requests || held > self.opts.max_bytes {
            // Drop down to 90% of the bounds at once, then rebuild the merge
            // from what is left: amortised, not once per request. A request
            // larger than the bound on its own is not kept either.
            let keep_n = self.opts.max_requests - self.opts.max_requests / 10;
            let keep_b = self.opts.max_bytes - self.opts.max_bytes / 10;
            while !self.raw.is_empty() && (self.raw.len() > keep_n || self.bytes > keep_b) {
                if let Some((_, _, n)) = self.raw.pop_front() {
                    self.bytes -= n;
                    self.evicted += 1;
                }
            }
            // The old merge goes first: never two of them at once.
            self.rec = Recorded::default();
            self.render = RenderCache::default();
            for (p, b, _) in &self.raw {
                self.rec.push(p, b);
            }
        }
    }

    /// Tells the render cache which events the request just pushed changed.
    fn changed_events(&mut self, path: &str, body: &Value, before: Before) {
        match path {
            "events/track_partial" => {
                self.render
                    .changed(body["event_id"].as_str().unwrap_or_default());
            }
            "traces" => {
                for s in self.rec.spans.iter().skip(before.spans) {
                    if let Some(id) = &s.event_id {
                        self.render.changed(id);
                    }
                }
            }
            "signals/track" => {
                for s in self.rec.signals.iter().skip(before.signals) {
                    self.render
                        .changed(s["event_id"].as_str().unwrap_or_default());
                }
            }
            // New events are rendered when first seen; identifies are not
            // part of an event.
            _ => {}
        }
    }

    fn clear(&mut self) {
        self.raw.clear();
        self.bytes = 0;
        self.render = RenderCache::default();
        self.rec = Recorded::default();
        self.tail = Tail::default();
        self.version += 1;
    }

    fn refresh(&mut self) -> bool {
        let Some(path) = self.opts.file.clone() else {
            return false;
        };
        let before = self.version;
        match self.read_file(&path) {
            Ok(()) => self.file_error = None,
            Err(e) => {
                let msg = format!("{}: {e}", path.display());
                if self.file_error.as_ref() != Some(&msg) {
                    self.file_error = Some(msg);
                    self.version += 1;
                }
            }
        }
        self.version != before
    }

    fn read_file(&mut self, path: &std::path::Path) -> std::io::Result<()> {
        let mut f = std::fs::File::open(path)?;
        let meta = f.metadata()?;
        let id = file_id(&meta);
        let replaced = self.tail.offset > 0 && {
            let mut head = vec![0; self.tail.head.len()];
            f.read_exact(&mut head).is_err() || head != self.tail.head
        };
        if replaced
            || meta.len() < self.tail.offset
            || (self.tail.id.is_some() && id != self.tail.id)
        {
            // Truncated or replaced (the examples start a fresh file per run).
            self.clear();
        }
        self.tail.id = id;
        if meta.len() == self.tail.offset {
            return Ok(());
        }
        f.seek(SeekFrom::Start(self.tail.offset))?;
        let mut buf = Vec::new();
        f.take(meta.len() - self.tail.offset)
            .read_to_end(&mut buf)?;
        if self.tail.head.len() < HEAD_LEN {
            let more = (HEAD_LEN - self.tail.head.len()).min(buf.len());
            self.tail.head.extend_from_slice(&buf[..more]);
        }
        self.tail.offset += buf.len() as u64;
        let mut pending = std::mem::take(&mut self.tail.partial);
        pending.extend_from_slice(&buf);
        let complete = pending
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        self.tail.partial = pending.split_off(complete);
        for line in pending.split(|&b| b == b'\n') {
            let Ok(v) = serde_json::from_slice::<Value>(line) else {
                continue;
            };
            let path = v["path"].as_str().unwrap_or_default().to_owned();
            let mut v = v;
            let body = v["body"].take();
            self.ingest(&path, body);
        }
        Ok(())
    }

    /// The fields beside the view: where it comes from, the bounds, the
    /// refusals.
    fn extra(&self) -> Map<String, Value> {
        let source = match (&self.opts.file, self.opts.ingest) {
            (Some(f), true) => format!("{} and requests to /v1/", f.display()),
            (Some(f), false) => f.display().to_string(),
            (None, true) => "requests to /v1/".to_owned(),
            (None, false) => "nothing".to_owned(),
        };
        let mut extra = Map::new();
        extra.insert("version".into(), json!(self.version));
        extra.insert("source".into(), json!(source));
        extra.insert("ingest".into(), json!(self.opts.ingest));
        extra.insert("evicted".into(), json!(self.evicted));
        extra.insert("held_bytes".into(), json!(self.bytes));
        extra.insert("max_bytes".into(), json!(self.opts.max_bytes));
        extra.insert(
            "refused".into(),
            json!({"origin": self.refused.origin, "content_type": self.refused.content_type}),
        );
        extra.insert("file_error".into(), json!(self.file_error));
        extra
    }

    fn data_text(&mut self) -> String {
        let extra = self.extra();
        let (mut text, rendered) = to_json_text(&self.rec, &mut self.render, extra);
        text.pop(); // the closing brace
        text.push_str(&format!(
            ",\"render_bytes\":{},\"rendered_events\":{rendered}}}",
            self.render.bytes()
        ));
        text
    }
}

#[cfg(unix)]
fn file_id(meta: &std::fs::Metadata) -> Option<u64> {
    use std::os::unix::fs::MetadataExt as _;
    Some(meta.ino())
}

#[cfg(not(unix))]
fn file_id(_meta: &std::fs::Metadata) -> Option<u64> {
    None
}

/// Reads the file (on the blocking pool) before answering.
async fn refreshed(viewer: &Viewer) {
    let v = viewer.clone();
    let _ = tokio::task::spawn_blocking(move || v.refresh()).await;
}

async fn page(State(viewer): State<Viewer>, uri: axum::http::Uri) -> Html<String> {
    // `?inline=0`: no data in the page, its first poll brings it (the
    // browser test checks the poll this way).
    if uri.query() == Some("inline=0") {
        return Html(PAGE.replacen(INITIAL_DATA, "null", 1));
    }
    refreshed(&viewer).await;
    // `<` only appears inside JSON strings; escaped, no `</script>` can end
    // the script early.
    let data = viewer.data_text().replace('<', "\\u003c");
    Html(PAGE.replacen(INITIAL_DATA, &data, 1))
}

async fn data(State(viewer): State<Viewer>, uri: axum::http::Uri) -> Response {
    refreshed(&viewer).await;
    let since = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .find_map(|kv| kv.strip_prefix("since="))
        .and_then(|s| s.parse::<u64>().ok());
    let version = viewer.version();
    let body = if since == Some(version) {
        json!({"version": version, "unchanged": true}).to_string()
    } else {
        viewer.data_text()
    };
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn text(State(viewer): State<Viewer>) -> String {
    refreshed(&viewer).await;
    viewer.recorded().render()
}

async fn ingest_route(
    State(viewer): State<Viewer>,
    Path(path): Path<String>,
    req: axum::extract::Request,
) -> Response {
    // Before the body is read: a refused request costs nothing more.
    if let Err(refusal) = check_sender(req.headers()) {
        viewer.lock().refused.count(&refusal, &path);
        let (status, msg) = match refusal {
            Refusal::Origin(_) => (
                StatusCode::FORBIDDEN,
                "raindrop-view takes requests from local programs, not web pages\n",
            ),
            Refusal::ContentType(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "raindrop-view takes application/json bodies only\n",
            ),
        };
        return (status, msg).into_response();
    }
    if !INGEST_PATHS.contains(&path.as_str()) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let Ok(body) = axum::body::to_bytes(req.into_body(), MAX_BODY).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let Ok(value) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    drop(body);
    viewer.lock().ingest(&path, value);
    StatusCode::NO_CONTENT.into_response()
}

/// Why an ingest request was refused, with the header as received.
enum Refusal {
    /// An `Origin` that is not a loopback one (a web page), or several.
    Origin(String),
    /// Not one `application/json` `Content-Type`.
    ContentType(String),
}

/// Refusals counted, and when each kind was last logged.
#[derive(Default)]
struct Refused {
    origin: u64,
    content_type: u64,
    logged_origin: Option<Instant>,
    logged_content_type: Option<Instant>,
}

/// A refusal is logged at most this often per kind (with the count so far).
const LOG_EVERY: Duration = Duration::from_secs(10);

impl Refused {
    fn count(&mut self, refusal: &Refusal, path: &str) {
        let (n, logged, what, value) = match refusal {
            Refusal::Origin(v) => (&mut self.origin, &mut self.logged_origin, "Origin", v),
            Refusal::ContentType(v) => (
                &mut self.content_type,
                &mut self.logged_content_type,
                "Content-Type",
                v,
            ),
        };
        *n += 1;
        if logged.is_none_or(|at| at.elapsed() >= LOG_EVERY) {
            *logged = Some(Instant::now());
            // The header is the sender's text: quoted, cut short.
            let value: String = value.chars().take(80).collect();
            eprintln!(
                "raindrop-view: refused POST /v1/{} with {what} {value:?} \
                 (only local programs may send here; {n} refused so far)",
                crate::short(path, 40),
            );
        }
    }
}

/// Whether the request may be ingested: no `Origin` or one loopback
/// `Origin`, and one `application/json` `Content-Type`.
fn check_sender(headers: &HeaderMap) -> Result<(), Refusal> {
    let text = |v: &HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned();
    let mut origins = headers.get_all(header::ORIGIN).iter();
    if let Some(origin) = origins.next() {
        let ok = origins.next().is_none() && origin.to_str().is_ok_and(is_loopback_origin);
        if !ok {
            return Err(Refusal::Origin(text(origin)));
        }
    }
    let mut types = headers.get_all(header::CONTENT_TYPE).iter();
    let Some(content_type) = types.next() else {
        return Err(Refusal::ContentType(String::new()));
    };
    let media_type = content_type
        .to_str()
        .ok()
        .and_then(|t| t.split(';').next())
        .map(str::trim);
    if types.next().is_some()
        || !media_type.is_some_and(|t| t.eq_ignore_ascii_case("application/json"))
    {
        return Err(Refusal::ContentType(text(content_type)));
    }
    Ok(())
}

/// Whether `origin` (an `Origin` header) is a page served from this
/// machine's loopback interface over plain HTTP: `http://127.0.0.1`,
/// `http://localhost` or `http://[::1]`, with or without a port. `null`
/// (a sandboxed frame, a `file:` page), other schemes, paths, user info and
/// look-alikes (`http://127.0.0.1.evil.example`) are not.
///
/// ```
/// use raindrop_view::is_loopback_origin;
///
/// assert!(is_loopback_origin("http://localhost:5898"));
/// assert!(!is_loopback_origin("null"));
/// assert!(!is_loopback_origin("http://127.0.0.1.evil.example"));
/// ```
pub fn is_loopback_origin(origin: &str) -> bool {
    let Some(rest) = origin
        .get(..7)
        .filter(|scheme| scheme.eq_ignore_ascii_case("http://"))
        .map(|_| &origin[7..])
    else {
        return false;
    };
    let (host, port) = match rest.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((host, port)) => (host, port),
            None => return false,
        },
        None => rest.split_at(rest.find(':').unwrap_or(rest.len())),
    };
    let host_ok = host == "::1" || host == "127.0.0.1" || host.eq_ignore_ascii_case("localhost");
    let port_ok = port.is_empty()
        || port.strip_prefix(':').is_some_and(|p| {
            (1..=5).contains(&p.len())
                && p.bytes().all(|b| b.is_ascii_digit())
                && p.parse::<u16>().is_ok_and(|n| n > 0)
        });
    host_ok && port_ok
}

/// Headers for a local tool holding private data: nothing is cached,
/// sniffed as another type, embedded or framed by another site, and the
/// page runs only its own script.
async fn local_only_headers(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    res
}

/// Whether `host` (a `Host` header: name or address, maybe a port) names
/// this machine's loopback interface.
pub fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

async fn loopback_host(
    headers: HeaderMap,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    if !is_loopback_host(host) {
        return (
            StatusCode::FORBIDDEN,
            "raindrop-view answers loopback hosts only\n",
        )
            .into_response();
    }
    next.run(req).await
}

/// Serves `viewer` on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, viewer: Viewer) -> std::io::Result<()> {
    axum::serve(listener, viewer.router()).await
}

/// Binds `addr` and serves `viewer` on it; returns the bound address and the
/// server's task (abort it to stop).
pub async fn spawn(
    addr: SocketAddr,
    viewer: Viewer,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((local, tokio::spawn(serve(listener, viewer))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in [
            "127.0.0.1:5898",
            "localhost:1",
            "LOCALHOST",
            "[::1]:80",
            "127.0.0.1",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "evil.example",
            "evil.example:5898",
            "10.0.0.1:5898",
            "",
            "[::2]:1",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    #[test]
    fn loopback_origins_only() {
        for o in [
            "http://127.0.0.1",
            "http://127.0.0.1:5898",
            "http://localhost",
            "http://localhost:3000",
            "http://LOCALHOST:1",
            "HTTP://127.0.0.1:65535",
            "http://[::1]",
            "http://[::1]:5898",
        ] {
            assert!(is_loopback_origin(o), "{o}");
        }
        for o in [
            "null",
            "",
            "http://evil.example",
            "http://127.0.0.1.evil.example",
            "http://127.0.0.1.evil.example:5898",
            "http://localhost.evil.example",
            "http://evil.example#127.0.0.1",
            "http://localhost:5898@evil.example",
            "http://user@localhost:5898",
            "http://127.0.0.1:5898/",
            "http://127.0.0.1:5898/path",
            "http://127.0.0.1:",
            "http://127.0.0.1:0",
            "http://127.0.0.1:65536",
            "http://127.0.0.1:123456",
            "http://127.0.0.1:+80",
            "http://127.0.0.1:80:80",
            "http://127.1",
            "http://2130706433",
            "http://[::ffff:127.0.0.1]",
            "http://[::1",
            "http://[::1]x",
            "http://::1",
            "https://localhost",
            "file://",
            "chrome-extension://abc",
            "http://localhost ",
            " http://localhost",
            "http://lоcalhost",
        ] {
            assert!(!is_loopback_origin(o), "{o}");
        }
    }

    #[test]
    fn senders_are_checked_by_origin_then_content_type() {
        let headers = |pairs: &[(&str, &[u8])]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.append(
                    axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_bytes(v).unwrap(),
                );
            }
            h
        };
        let json: (&str, &[u8]) = ("content-type", b"application/json");
        for ok in [
            headers(&[json]),
            headers(&[("content-type", b"Application/JSON; charset=utf-8")]),
            headers(&[("origin", b"http://localhost:5898"), json]),
        ] {
            assert!(check_sender(&ok).is_ok(), "{ok:?}");
        }
        for (h, origin) in [
            (headers(&[("origin", b"http://evil.example"), json]), true),
            (headers(&[("origin", b"null"), json]), true),
            (
                headers(&[
                    ("origin", b"http://localhost"),
                    ("origin", b"http://evil.example"),
                    json,
                ]),
                true,
            ),
            (headers(&[("origin", b"http://localhost\xff"), json]), true),
            (
                headers(&[
                    ("origin", b"http://evil.example"),
                    ("content-type", b"text/plain"),
                ]),
                true,
            ),
            (headers(&[]), false),
            (headers(&[("content-type", b"text/plain")]), false),
            (
                headers(&[("content-type", b"application/x-www-form-urlencoded")]),
                false,
            ),
            (
                headers(&[("content-type", b"multipart/form-data; boundary=x")]),
                false,
            ),
            (headers(&[("content-type", b"application/jsonp")]), false),
            (
                headers(&[("content-type", b"text/plain; application/json")]),
                false,
            ),
            (headers(&[json, ("content-type", b"text/plain")]), false),
        ] {
            match check_sender(&h) {
                Err(Refusal::Origin(_)) if origin => {}
                Err(Refusal::ContentType(_)) if !origin => {}
                _ => panic!(
                    "{h:?}: expected a refusal by {}",
                    if origin { "origin" } else { "type" }
                ),
            }
        }
    }

    #[test]
    fn memory_stays_bounded() {
        let v = Viewer::new(Options {
            max_requests: 100,
            ..Options::default()
        });
        for i in 0..1000 {
            v.ingest(
                "events/track",
                json!([{"event_id": format!("e{i}"), "event": "x", "user_id": "u"}]),
            );
        }
        let rec = v.recorded();
        assert!(rec.events.len() <= 100, "{}", rec.events.len());
        assert_eq!(
            rec.events.last().unwrap().event_id,
            "e999",
            "the newest are kept"
        );
        let data = v.data();
        assert!(data["evicted"].as_u64().unwrap() >= 900);
        assert_eq!(data["version"], 1000);
    }

    #[test]
    fn a_poll_renders_the_events_that_changed() {
        let v = Viewer::new(Options::default());
        // What the routes answer.
        let data = |v: &Viewer| serde_json::from_str::<Value>(&v.data_text()).unwrap();
        let span = |event: &str| {
            json!({"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "t", "spanId": "s",
                "name": "tool", "attributes": [{"key": "traceloop.association.properties.event_id",
                "value": {"stringValue": event}}]}]}]}]})
        };
        v.ingest(
            "events/track_partial",
            json!({"event_id": "e1", "event": "chat"}),
        );
        v.ingest(
            "events/track",
            json!([{"event_id": "e2", "event": "plain"}]),
        );
        assert_eq!(data(&v)["rendered_events"], 2);
        assert_eq!(data(&v)["rendered_events"], 0, "nothing changed");
        let rendered = |v: &Viewer| {
            let d = data(v);
            (d["rendered_events"].as_u64().unwrap(), d)
        };
        // A span, a signal, an update: each re-renders its event only.
        v.ingest("traces", span("e1"));
        let (n, d) = rendered(&v);
        assert_eq!(n, 1);
        assert_eq!(d["interactions"][0]["spans"][0]["name"], "tool", "{d:#}");
        v.ingest(
            "signals/track",
            json!([{"event_id": "e2", "signal_name": "thumbs_up"}]),
        );
        let (n, d) = rendered(&v);
        assert_eq!(n, 1);
        let plain = d["interactions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["event_id"] == "e2")
            .unwrap()
            .clone();
        assert_eq!(plain["signals"][0]["name"], "thumbs_up");
        v.ingest(
            "events/track_partial",
            json!({"event_id": "e1", "is_pending": false}),
        );
        let (n, d) = rendered(&v);
        assert_eq!(n, 1);
        assert_eq!(d["interactions"][0]["finished"], true);
        // Not about an event: nothing re-rendered, still shown.
        v.ingest("users/identify", json!([{"user_id": "u"}]));
        let (n, d) = rendered(&v);
        assert_eq!(n, 0);
        assert_eq!(d["users"][0]["user_id"], "u");
        assert!(d["render_bytes"].as_u64().unwrap() > 0);
    }

    #[test]
    fn the_byte_bound_counts_what_is_held_not_body_bytes() {
        // Small on the wire (about 2 bytes a number), many values once parsed.
        let body = json!([{"event_id": "e", "event": "x", "properties": {"n": vec![1; 1000]}}]);
        let wire = body.to_string().len();
        let probe = Viewer::new(Options::default());
        probe.ingest("events/track", body.clone());
        // A `Value` is 32 or 80 bytes (with serde_json's preserve_order,
        // which another crate in the build may turn on).
        let one = probe.held_bytes();
        assert!(one > 20 * wire, "{one} held for {wire} bytes");

        let bound = 4 * one;
        let v = Viewer::new(Options {
            max_bytes: bound,
            ..Options::default()
        });
        for _ in 0..100 {
            v.ingest("events/track", body.clone());
        }
        assert!(v.held_bytes() <= bound, "{}", v.held_bytes());
        let kept = v.recorded().events.len();
        // Counting body bytes would keep all 100.
        assert!((1..=4).contains(&kept), "{kept} kept");

        // A request larger than the whole bound is not kept.
        let huge = json!([{"event_id": "h", "properties": {"s": "x".repeat(bound)}}]);
        v.ingest("events/track", huge);
        assert!(v.held_bytes() <= bound);
        assert!(v.recorded().event_by_id("h").is_none());
    }
}
