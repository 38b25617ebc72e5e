//! The web server: the page, its JSON, and (with `--listen`) the ingest
//! routes the SDK posts to. Everything lives in memory, bounded.

use std::collections::VecDeque;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

use raindrop_core::testing::Recorded;

/// The page, with `/*RAINDROP_INITIAL_DATA*/null` replaced by the data at
/// the time it is served (so it renders before its first poll).
const PAGE: &str = include_str!("page.html");
const INITIAL_DATA: &str = "/*RAINDROP_INITIAL_DATA*/null";

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
    /// At most this many bytes of request bodies are kept; the oldest go first.
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
    /// The requests kept, oldest first, with their size.
    raw: VecDeque<(String, Value, usize)>,
    bytes: usize,
    /// Requests dropped to stay within the bounds.
    evicted: u64,
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
        self.lock().ingest(path, body, 0);
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
    /// `source`, `evicted` and `file_error`.
    pub fn data(&self) -> Value {
        let store = self.lock();
        store.data()
    }

    /// The current version (bumped on every change).
    pub fn version(&self) -> u64 {
        self.lock().version
    }

    /// The routes: `GET /` (the page), `GET /api/data[?since=VERSION]` (its
    /// JSON; `{"version", "unchanged": true}` when nothing changed since
    /// `VERSION`), `GET /api/text` (the plain-text tree) and, with
    /// [`Options::ingest`], `POST /v1/{path}` answering 204.
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
            app = app
                .route("/v1/{*path}", post(ingest_route))
                .layer(DefaultBodyLimit::max(32 * 1024 * 1024));
        }
        if loopback_only {
            app = app.layer(axum::middleware::from_fn(loopback_host));
        }
        app.with_state(self.clone())
    }
}

impl Store {
    fn ingest(&mut self, path: &str, body: Value, size: usize) {
        let size = if size == 0 {
            body.to_string().len()
        } else {
            size
        };
        self.rec.push(path, &body);
        self.raw.push_back((path.to_owned(), body, size));
        self.bytes += size;
        self.version += 1;
        if self.raw.len() > self.opts.max_requests || self.bytes > self.opts.max_bytes {
            // Drop down to 90% of the bounds at once, then rebuild the merge
            // from what is left: amortised, not once per request.
            let keep_n = self.opts.max_requests - self.opts.max_requests / 10;
            let keep_b = self.opts.max_bytes - self.opts.max_bytes / 10;
            while self.raw.len() > 1 && (self.raw.len() > keep_n || self.bytes > keep_b) {
                if let Some((_, _, n)) = self.raw.pop_front() {
                    self.bytes -= n;
                    self.evicted += 1;
                }
            }
            let mut rec = Recorded::default();
            for (p, b, _) in &self.raw {
                rec.push(p, b);
            }
            self.rec = rec;
        }
    }

    fn clear(&mut self) {
        self.raw.clear();
        self.bytes = 0;
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
            self.ingest(&path, body, line.len());
        }
        Ok(())
    }

    fn data(&self) -> Value {
        let mut v = crate::to_json(&self.rec);
        let source = match (&self.opts.file, self.opts.ingest) {
            (Some(f), true) => format!("{} and requests to /v1/", f.display()),
            (Some(f), false) => f.display().to_string(),
            (None, true) => "requests to /v1/".to_owned(),
            (None, false) => "nothing".to_owned(),
        };
        if let Value::Object(m) = &mut v {
            m.insert("version".into(), json!(self.version));
            m.insert("source".into(), json!(source));
            m.insert("ingest".into(), json!(self.opts.ingest));
            m.insert("evicted".into(), json!(self.evicted));
            m.insert("file_error".into(), json!(self.file_error));
        }
        v
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
    let data = viewer.data().to_string().replace('<', "\\u003c");
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
        json!({"version": version, "unchanged": true})
    } else {
        viewer.data()
    };
    ([(header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response()
}

async fn text(State(viewer): State<Viewer>) -> String {
    refreshed(&viewer).await;
    viewer.recorded().render()
}

async fn ingest_route(
    State(viewer): State<Viewer>,
    Path(path): Path<String>,
    body: Bytes,
) -> StatusCode {
    if !INGEST_PATHS.contains(&path.as_str()) {
        return StatusCode::NOT_FOUND;
    }
    let Ok(value) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    viewer.lock().ingest(&path, value, body.len());
    StatusCode::NO_CONTENT
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
}
