//! Client configuration, from code or from the environment.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The default ingestion endpoint.
pub const DEFAULT_ENDPOINT: &str = "https://api.raindrop.ai/v1/";

/// The Raindrop write key. Its `Debug` and `Display` never show the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct WriteKey(String);

impl WriteKey {
    /// Wraps a key.
    pub fn new(key: impl Into<String>) -> Self {
        WriteKey(key.into())
    }
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for WriteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WriteKey(***)")
    }
}

impl fmt::Display for WriteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The shared secret that signs the carriers one service sends another
/// (`x-raindrop-signature`, see [`propagation`](crate::propagation)). Its
/// `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct PropagationSecret(String);

impl PropagationSecret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        PropagationSecret(secret.into())
    }
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PropagationSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PropagationSecret(***)")
    }
}

impl fmt::Display for PropagationSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where the local sink writes: every request the SDK would send, as one JSON
/// line `{"path": ..., "body": ...}`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LocalSink {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
    /// Appended to a file (created if missing).
    File(PathBuf),
    /// Kept in memory, for tests and in-process inspection (see
    /// [`MemorySink`] and, with the `testing` feature, `testing::Recorded`).
    Memory(MemorySink),
}

/// An in-memory local sink: a shared buffer of sink lines. Clones share it.
///
/// ```
/// use raindrop_core::{Client, ClientOptions, LocalSink, MemorySink, Event};
/// use std::time::Duration;
///
/// let sink = MemorySink::new();
/// let client = Client::new(ClientOptions::default().local_sink(LocalSink::Memory(sink.clone()))).unwrap();
/// client.track(Event::new("user-1", "signed_up")).unwrap();
/// assert!(client.flush(Duration::from_secs(5)));
/// assert!(sink.text().contains(r#""path":"events/track""#));
/// ```
#[derive(Clone, Default)]
pub struct MemorySink(Arc<Mutex<Vec<u8>>>);

impl MemorySink {
    /// An empty sink.
    pub fn new() -> MemorySink {
        MemorySink::default()
    }

    /// Everything written so far: one `{"path": ..., "body": ...}` JSON line
    /// per request.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    /// Empties the sink.
    pub fn clear(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

impl std::io::Write for MemorySink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl fmt::Debug for MemorySink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let len = self.0.lock().map_or(0, |b| b.len());
        write!(f, "MemorySink({len} bytes)")
    }
}

/// Two handles are equal when they share one buffer.
impl PartialEq for MemorySink {
    fn eq(&self, other: &MemorySink) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for MemorySink {}

impl LocalSink {
    /// Parses `stdout`, `stderr`, or a file path.
    pub fn parse(value: &str) -> Option<LocalSink> {
        match value.trim() {
            "" | "0" | "false" | "off" => None,
            "stdout" | "-" | "1" | "true" => Some(LocalSink::Stdout),
            "stderr" => Some(LocalSink::Stderr),
            path => Some(LocalSink::File(PathBuf::from(path))),
        }
    }
}

/// Which root certificates HTTPS to the API trusts. One TLS stack (rustls)
/// either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TlsRoots {
    /// The Mozilla roots compiled into the binary (`webpki-roots`): the same
    /// on every machine, container images without a CA bundle included.
    #[default]
    Bundled,
    /// The platform's certificate store (feature `native-roots`): where a
    /// corporate TLS-inspecting proxy's CA is installed.
    Native,
    /// Both sets.
    BundledAndNative,
}

impl TlsRoots {
    /// Parses `bundled`, `native` or `both`.
    pub fn parse(value: &str) -> Option<TlsRoots> {
        match value.trim().to_ascii_lowercase().as_str() {
            "bundled" | "webpki" => Some(TlsRoots::Bundled),
            "native" | "system" => Some(TlsRoots::Native),
            "both" => Some(TlsRoots::BundledAndNative),
            _ => None,
        }
    }
}

/// Where the local Workshop debugger is, if anywhere: every request the SDK
/// sends is mirrored there (wire contract 12.4).
///
/// The mirror is a development tool: it gets every body the API gets
/// (prompts, outputs, traits) over plain HTTP, so [`Workshop::Auto`] only
/// looks for it in debug builds. A release build mirrors only when told to,
/// with [`Workshop::At`] or `RAINDROP_WORKSHOP`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Workshop {
    /// In a **debug build** with a write key, probe `127.0.0.1:5899` once (a
    /// TCP connect bounded by 100 ms, on the worker thread, never on the
    /// caller) and mirror there if something listens. In a release build,
    /// or without a key, nothing is probed and nothing is mirrored: whatever
    /// else listens on that port on a production host (another tenant, a
    /// sidecar) must not receive your users' content.
    ///
    /// "Debug build" is `cfg!(debug_assertions)` as `raindrop-core` was
    /// compiled. In a cargo build that follows the profile of your binary
    /// (`cargo build` debug, `cargo build --release` not), unless your
    /// `Cargo.toml` overrides `debug-assertions` for this package or all
    /// dependencies (`[profile.release.package."*"]`), which then decides.
    #[default]
    Auto,
    /// Never mirror, never probe.
    Off,
    /// Mirror to this base URL (e.g. `http://127.0.0.1:5899/v1/`), in any
    /// build. With no write key, the Workshop alone receives everything.
    At(String),
}

impl Workshop {
    /// The default Workshop address.
    pub const DEFAULT_URL: &'static str = "http://127.0.0.1:5899/v1/";

    /// The address [`Workshop::Auto`] probes (that of [`Self::DEFAULT_URL`]).
    pub(crate) const DEFAULT_ADDR: std::net::SocketAddr = std::net::SocketAddr::V4(
        std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 5899),
    );

    /// Parses `RAINDROP_WORKSHOP` / `RAINDROP_LOCAL_DEBUGGER`: a URL, or
    /// `1/true/yes/on` (the default address), or `0/false/no/off`.
    pub fn parse(value: &str) -> Workshop {
        match value.trim().to_ascii_lowercase().as_str() {
            "" => Workshop::Auto,
            "0" | "false" | "no" | "off" => Workshop::Off,
            "1" | "true" | "yes" | "on" => Workshop::At(Workshop::DEFAULT_URL.to_owned()),
            _ => Workshop::At(value.trim().to_owned()),
        }
    }
}

/// A hook that sees every item before it is sent, on the worker thread; see
/// [`ClientOptions::before_send`].
pub type BeforeSend = std::sync::Arc<dyn Fn(crate::Outgoing<'_>) -> bool + Send + Sync>;

/// Client configuration. Start from [`ClientOptions::default`] or
/// [`ClientOptions::from_env`] and chain the setters.
///
/// ```
/// use std::time::Duration;
/// let opts = raindrop_core::ClientOptions::default()
///     .write_key("rk_test")
///     .project_id("support-agent")
///     .upload_interval(Duration::from_millis(500));
/// // The key never shows up in Debug output.
/// assert!(!format!("{opts:?}").contains("rk_test"));
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct ClientOptions {
    /// The write key; without it (and without a local sink) the client is disabled.
    pub write_key: Option<WriteKey>,
    /// Base URL of the ingestion API (default [`DEFAULT_ENDPOINT`]).
    pub endpoint: String,
    /// Project slug sent as `X-Raindrop-Project-Id`; an invalid slug is ignored with a warning.
    pub project_id: Option<String>,
    /// Bound of each route's queue (default 10,000 items): events,
    /// interaction updates, signals, identifies and spans each have their own,
    /// so one slow route never stops the others. Past it new items of that
    /// route are dropped and counted, or callers wait for room with
    /// `Client::ready` / `Client::wait_ready`.
    pub max_queue_size: usize,
    /// Bound of the bytes held for delivery, all routes together (default
    /// 64 MiB): items waiting in the queue, interaction updates being merged,
    /// and request bodies waiting or in flight, counted from the sizes the
    /// caller passed (text, properties, attachments, plus a fixed overhead
    /// per item) until each item is delivered or dropped. Past it, calls are
    /// refused like a full queue ([`DropReason::MemoryLimit`](crate::DropReason::MemoryLimit),
    /// counted and warned), and `Client::ready` waits for bytes too. The
    /// default holds 10,000 typical events of 4 KiB with room to spare while
    /// keeping a hung backend from taking more than a small slice of a
    /// service's memory; raise it for large prompts at high volume.
    pub max_buffered_bytes: usize,
    /// Events per `events/track` request (default 10).
    pub upload_size: usize,
    /// How often partial batches are sent (default 1 s).
    pub upload_interval: Duration,
    /// A pending interaction is sent as a snapshot after this much inactivity (default 2 s).
    pub partial_idle_timeout: Duration,
    /// Timeout of one HTTP attempt (default 10 s).
    pub request_timeout: Duration,
    /// Attempts per request for retryable failures (default 3).
    pub max_attempts: u32,
    /// Longest `Retry-After` honoured (default 10 s).
    pub max_retry_after: Duration,
    /// The most requests in flight at once per batched route (default 256).
    /// A cap, not a setting to tune: each route's limit adapts to its round
    /// trips (a few requests on a fast link, as many as the rate times the
    /// round trip needs on a slow one; `Stats::in_flight_limit` shows it).
    /// 5,000 events/s at 300 ms in batches of 10 need about 150.
    pub max_in_flight: usize,
    /// The most `events/track_partial` requests in flight at once (default
    /// 2,048), a cap like `max_in_flight`. The route takes one interaction
    /// update per request: 2,000 interactions/s at 300 ms need about 600
    /// to 1,200. Updates of one interaction still go one at a time, in
    /// order. Over HTTP/2 (negotiated by TLS ALPN with servers that offer
    /// it) they share one connection; over HTTP/1.1 each request in flight
    /// holds a connection of its own.
    pub max_partials_in_flight: usize,
    /// Deadline of `shutdown` when the guard is dropped (default 10 s; any
    /// value, `Duration::MAX` included, is accepted).
    pub shutdown_timeout: Duration,
    /// AI text fields longer than this many characters are cut (default 1,000,000).
    pub max_text_field_chars: usize,
    /// Log every request at DEBUG under target `raindrop`.
    pub debug_logs: bool,
    /// Export trace spans (tool, task, LLM and interaction spans; default
    /// on). Off, spans are not queued or counted: events and interactions
    /// are still sent. [`Client::set_tracing_enabled`](crate::Client::set_tracing_enabled)
    /// switches it at run time.
    pub tracing_enabled: bool,
    /// Write requests to a local sink instead of the network.
    pub local_sink: Option<LocalSink>,
    /// Which root certificates HTTPS trusts (default: the bundled Mozilla set).
    pub tls_roots: TlsRoots,
    /// Extra trusted CA certificates, PEM (one or more per entry), e.g. a
    /// TLS-inspecting proxy's. Checked by `Client::new`.
    pub ca_certificates: Vec<Vec<u8>>,
    /// Redact PII (the Python SDK's rules) from `ai_data.input` and
    /// `ai_data.output` of events and interaction updates, on the worker
    /// (default off; `RAINDROP_REDACT_PII`).
    pub redact_pii: bool,
    /// Also redact span inputs and outputs (`traceloop.entity.input` /
    /// `output`) and gen_ai message texts. Beyond the reference SDKs; only
    /// with `redact_pii` (default off).
    pub redact_pii_in_spans: bool,
    /// Record content at all (default on; `RAINDROP_CAPTURE_CONTENT=false`
    /// turns it off). Off, the worker removes every text the user or the
    /// model wrote before anything is serialised (so the API, the local sink,
    /// the Workshop mirror and the before-send hook never see it):
    ///
    /// - events and interactions: `ai_data.input`, `ai_data.output` and
    ///   every attachment;
    /// - signals: `properties.comment` (feedback) and `properties.after`
    ///   (the corrected answer of an edit); the signal itself is still sent;
    /// - spans: `traceloop.entity.input` / `output` (tool, task and
    ///   interaction spans), `ai.prompt`, `ai.prompt.messages`,
    ///   `ai.response.text` / `object` / `toolCalls`, `ai.toolCall.args` /
    ///   `result`, `gen_ai.prompt.*`, `gen_ai.completion.*`,
    ///   `gen_ai.input.messages`, `gen_ai.output.messages`,
    ///   `gen_ai.system_instructions`, `gen_ai.tool.call.arguments` /
    ///   `result`, `raindrop.input` / `output`, `input.value` /
    ///   `output.value`, `llm.prompts.*`, `llm.completions.*`,
    ///   `llm.input_messages.*`, `llm.output_messages.*`, and the tool
    ///   catalog (`ai.prompt.tools`, `gen_ai.tool.definitions`).
    ///
    /// What remains: names, ids, user ids, models, token counts, timings,
    /// sizes, error messages, identify traits and the properties you set
    /// explicitly (put no content there).
    pub capture_content: bool,
    /// Share of events and interactions kept, 0.0 to 1.0 (default 1.0;
    /// `RAINDROP_SAMPLE_RATE`). Decided from the event id, so every service
    /// that handles one interaction (the id travels with it) decides the same.
    pub sample_rate: f64,
    /// The local Workshop debugger to mirror every request to (default
    /// [`Workshop::Auto`]: only in debug builds; `RAINDROP_WORKSHOP` or
    /// `RAINDROP_LOCAL_DEBUGGER`).
    /// The mirror gets the same path and body with a 2 s timeout, no
    /// retries and **no `Authorization` header**: a local debugger needs no
    /// key, and whatever listens on a loopback port must not be handed it.
    /// Its failures are counted (`Stats::workshop_failures`) and logged at
    /// DEBUG; they never affect delivery to the API. Mirror requests share
    /// the `max_in_flight` bound: when that many are already under way, a
    /// request is not mirrored (`Stats::workshop_skipped`) rather than
    /// waiting.
    pub workshop: Workshop,
    /// Whether [`Workshop::Auto`] treats this as a debug build (default
    /// `cfg!(debug_assertions)`, see [`Workshop::Auto`]). Not part of the
    /// API: for tests that play a release build.
    #[doc(hidden)]
    pub debug_build: bool,
    /// The address [`Workshop::Auto`] probes (default `127.0.0.1:5899`).
    /// Not part of the API: for tests, which put a listener on a free port.
    #[doc(hidden)]
    pub workshop_probe_addr: std::net::SocketAddr,
    /// Sees every event, interaction update, signal, identify and span just
    /// before it is serialised, and may change it or drop it (return
    /// `false`). Runs on the worker thread; a panic inside it drops the item
    /// (counted as `hook_panicked`), never the worker.
    pub before_send: Option<BeforeSend>,
    /// The secret that signs outgoing carriers and verifies incoming ones
    /// (`RAINDROP_PROPAGATION_SECRET`; the same on every service of an
    /// interaction). Unset, a key derived from the write key is used, so the
    /// services of one project agree; with neither, a key only this process
    /// knows (see `raindrop_tracing::propagate`).
    pub propagation_secret: Option<PropagationSecret>,
    /// Which incoming carriers may join an interaction (default
    /// [`CarrierTrust::Signed`](crate::propagation::CarrierTrust);
    /// `RAINDROP_PROPAGATION_TRUST=unsigned` for a network where no outsider
    /// reaches the services).
    pub propagation_trust: crate::propagation::CarrierTrust,
    /// How old (or how far in the future) a carrier's signature may be
    /// (default 5 minutes): the replay window and the tolerated clock skew.
    pub propagation_replay_window: Duration,
    /// Application Git provenance (`raindrop.app.commit_sha`, `commit_dirty`,
    /// `branch`) on events, interaction updates and spans: on by default, as
    /// in the Python SDK; see [`AppGit`](crate::AppGit) for its sources.
    /// `RAINDROP_APP_GIT=false` turns it off from the environment.
    pub app_git: crate::AppGit,
    /// A durable spool on disk, so what was accepted survives a restart
    /// (default none: items live in memory only; `RAINDROP_SPOOL_DIR`).
    /// See [`ClientOptions::spool`].
    pub spool: Option<crate::SpoolOptions>,
}

impl fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientOptions")
            .field("write_key", &self.write_key)
            .field("endpoint", &self.endpoint)
            .field("project_id", &self.project_id)
            .field("max_queue_size", &self.max_queue_size)
            .field("max_buffered_bytes", &self.max_buffered_bytes)
            .field("upload_size", &self.upload_size)
            .field("upload_interval", &self.upload_interval)
            .field("partial_idle_timeout", &self.partial_idle_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_attempts", &self.max_attempts)
            .field("max_retry_after", &self.max_retry_after)
            .field("max_in_flight", &self.max_in_flight)
            .field("max_partials_in_flight", &self.max_partials_in_flight)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("max_text_field_chars", &self.max_text_field_chars)
            .field("debug_logs", &self.debug_logs)
            .field("tracing_enabled", &self.tracing_enabled)
            .field("local_sink", &self.local_sink)
            .field("tls_roots", &self.tls_roots)
            .field("ca_certificates", &self.ca_certificates.len())
            .field("redact_pii", &self.redact_pii)
            .field("redact_pii_in_spans", &self.redact_pii_in_spans)
            .field("capture_content", &self.capture_content)
            .field("sample_rate", &self.sample_rate)
            .field("workshop", &self.workshop)
            .field("debug_build", &self.debug_build)
            .field("before_send", &self.before_send.as_ref().map(|_| "Fn"))
            .field("propagation_secret", &self.propagation_secret)
            .field("propagation_trust", &self.propagation_trust)
            .field("propagation_replay_window", &self.propagation_replay_window)
            .field("app_git", &self.app_git)
            .field("spool", &self.spool)
            .finish()
    }
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            write_key: None,
            endpoint: DEFAULT_ENDPOINT.to_owned(),
            project_id: None,
            max_queue_size: 10_000,
            max_buffered_bytes: 64 * 1024 * 1024,
            upload_size: 10,
            upload_interval: Duration::from_secs(1),
            partial_idle_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
            max_attempts: 3,
            max_retry_after: Duration::from_secs(10),
            max_in_flight: 256,
            max_partials_in_flight: 2048,
            shutdown_timeout: Duration::from_secs(10),
            max_text_field_chars: 1_000_000,
            debug_logs: false,
            tracing_enabled: true,
            local_sink: None,
            tls_roots: TlsRoots::Bundled,
            ca_certificates: Vec::new(),
            redact_pii: false,
            redact_pii_in_spans: false,
            capture_content: true,
            sample_rate: 1.0,
            workshop: Workshop::Auto,
            debug_build: cfg!(debug_assertions),
            workshop_probe_addr: Workshop::DEFAULT_ADDR,
            before_send: None,
            propagation_secret: None,
            propagation_trust: crate::propagation::CarrierTrust::Signed,
            propagation_replay_window: crate::propagation::REPLAY_WINDOW,
            app_git: crate::AppGit::default(),
            spool: None,
        }
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn falsy(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "0" | "false" | "no" | "off"
    )
}

fn truthy(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "on"
    )
}

impl ClientOptions {
    /// Defaults overridden by the environment:
    ///
    /// | variable | option |
    /// | --- | --- |
    /// | `RAINDROP_WRITE_KEY` | `write_key` |
    /// | `RAINDROP_ENDPOINT` | `endpoint` |
    /// | `RAINDROP_PROJECT_ID` | `project_id` |
    /// | `RAINDROP_DEBUG` | `debug_logs` (`1`, `true`, `yes`, `on`) |
    /// | `RAINDROP_TRACING_ENABLED` | `tracing_enabled` (`0`, `false`, `no`, `off` turn it off) |
    /// | `RAINDROP_LOCAL_SINK` | `local_sink` (`stdout`, `stderr` or a file path) |
    /// | `RAINDROP_TLS_ROOTS` | `tls_roots` (`bundled`, `native` or `both`) |
    /// | `RAINDROP_REDACT_PII` | `redact_pii` (`1`, `true`, `yes`, `on`) |
    /// | `RAINDROP_CAPTURE_CONTENT` | `capture_content` (`0`, `false`, `no`, `off` turn it off) |
    /// | `RAINDROP_SAMPLE_RATE` | `sample_rate` (a number from 0 to 1) |
    /// | `RAINDROP_MAX_BUFFERED_BYTES` | `max_buffered_bytes` (bytes) |
    /// | `RAINDROP_WORKSHOP`, `RAINDROP_LOCAL_DEBUGGER` | `workshop` (a URL, or on/off) |
    /// | `RAINDROP_PROPAGATION_SECRET` | `propagation_secret` |
    /// | `RAINDROP_PROPAGATION_TRUST` | `propagation_trust` (`unsigned`, or `signed`) |
    /// | `RAINDROP_APP_GIT` | `app_git` (`0`, `false`, `no`, `off` turn it off) |
    /// | `RAINDROP_SPOOL_DIR` | `spool` (a directory; default bound and sync policy) |
    pub fn from_env() -> Self {
        let mut o = ClientOptions::default();
        if let Some(k) = env("RAINDROP_WRITE_KEY") {
            o.write_key = Some(WriteKey::new(k.trim()));
        }
        if let Some(e) = env("RAINDROP_ENDPOINT") {
            o.endpoint = e;
        }
        o.project_id = env("RAINDROP_PROJECT_ID");
        o.debug_logs = env("RAINDROP_DEBUG").is_some_and(|v| truthy(&v));
        o.tracing_enabled = !env("RAINDROP_TRACING_ENABLED").is_some_and(|v| falsy(&v));
        o.local_sink = env("RAINDROP_LOCAL_SINK").and_then(|v| LocalSink::parse(&v));
        if let Some(v) = env("RAINDROP_TLS_ROOTS") {
            match TlsRoots::parse(&v) {
                Some(r) => o.tls_roots = r,
                None => crate::diag::setup_warning(
                    "tls_roots",
                    &format!("RAINDROP_TLS_ROOTS={v:?} is not bundled, native or both; the bundled roots are used"),
                ),
            }
        }
        o.redact_pii = env("RAINDROP_REDACT_PII").is_some_and(|v| truthy(&v));
        o.capture_content = !env("RAINDROP_CAPTURE_CONTENT").is_some_and(|v| falsy(&v));
        if env("RAINDROP_APP_GIT").is_some_and(|v| falsy(&v)) {
            o.app_git.enabled = false;
        }
        if let Some(v) = env("RAINDROP_WORKSHOP").or_else(|| env("RAINDROP_LOCAL_DEBUGGER")) {
            o.workshop = Workshop::parse(&v);
        }
        if let Some(v) = env("RAINDROP_MAX_BUFFERED_BYTES") {
            match v.trim().parse::<usize>() {
                Ok(n) => o.max_buffered_bytes = n,
                Err(_) => crate::diag::setup_warning(
                    "max_buffered_bytes_env",
                    &format!("RAINDROP_MAX_BUFFERED_BYTES=`{v}` is not a number of bytes; using the default"),
                ),
            }
        }
        if let Some(v) = env("RAINDROP_SAMPLE_RATE") {
            match v.trim().parse::<f64>() {
                Ok(r) => o.sample_rate = r,
                Err(_) => crate::diag::setup_warning(
                    "sample_rate_env",
                    &format!("RAINDROP_SAMPLE_RATE=`{v}` is not a number; keeping every event"),
                ),
            }
        }
        if let Some(dir) = env("RAINDROP_SPOOL_DIR") {
            o.spool = Some(crate::SpoolOptions::new(dir));
        }
        if let Some(v) = env("RAINDROP_PROPAGATION_SECRET") {
            o.propagation_secret = Some(PropagationSecret::new(v));
        }
        if let Some(v) = env("RAINDROP_PROPAGATION_TRUST") {
            match v.trim().to_ascii_lowercase().as_str() {
                "unsigned" => o.propagation_trust = crate::propagation::CarrierTrust::Unsigned,
                "signed" => {}
                _ => crate::diag::setup_warning(
                    "propagation-trust",
                    &format!("RAINDROP_PROPAGATION_TRUST={v:?} is not `unsigned` or `signed`; only signed carriers join interactions"),
                ),
            }
        }
        o
    }

    /// Sets the secret that signs and verifies propagation carriers (see
    /// [`propagation_secret`](Self::propagation_secret)).
    ///
    /// ```
    /// let opts = raindrop_core::ClientOptions::default().propagation_secret("s3cret");
    /// assert!(!format!("{opts:?}").contains("s3cret"));
    /// ```
    pub fn propagation_secret(mut self, secret: impl Into<String>) -> Self {
        self.propagation_secret = Some(PropagationSecret::new(secret));
        self
    }
    /// Sets which incoming carriers may join an interaction.
    pub fn propagation_trust(mut self, trust: crate::propagation::CarrierTrust) -> Self {
        self.propagation_trust = trust;
        self
    }
    /// Sets the replay window of signed carriers.
    pub fn propagation_replay_window(mut self, window: Duration) -> Self {
        self.propagation_replay_window = window;
        self
    }

    /// Keeps accepted items in a durable spool in `dir` (created if
    /// missing), with the default bound (256 MiB) and sync policy (every
    /// second): the worker appends each item before sending it, and a
    /// client started after a crash or a restart sends what the previous
    /// process had not delivered, before anything new. One process per
    /// directory: [`Client::new`](crate::Client::new) fails with
    /// [`Error::Config`](crate::Error::Config) when another holds it.
    /// See `docs/spool.md` for the promises and the loss window.
    ///
    /// ```
    /// let dir = std::env::temp_dir().join("raindrop-spool-doc");
    /// let opts = raindrop_core::ClientOptions::default().spool(&dir);
    /// assert_eq!(opts.spool.unwrap().dir, dir);
    /// ```
    pub fn spool(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.spool = Some(crate::SpoolOptions::new(dir));
        self
    }

    /// Keeps accepted items in a durable spool configured in full (bound,
    /// sync policy); see [`ClientOptions::spool`].
    pub fn spool_options(mut self, spool: crate::SpoolOptions) -> Self {
        self.spool = Some(spool);
        self
    }

    /// Sets the write key.
    pub fn write_key(mut self, key: impl Into<String>) -> Self {
        self.write_key = Some(WriteKey::new(key));
        self
    }
    /// Sets the base URL of the ingestion API.
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = endpoint.into();
        self
    }
    /// Sets the project slug.
    pub fn project_id(mut self, project_id: impl Into<String>) -> Self {
        self.project_id = Some(project_id.into());
        self
    }
    /// Sets the queue bound.
    pub fn max_queue_size(mut self, n: usize) -> Self {
        self.max_queue_size = n;
        self
    }
    /// Sets the byte bound of everything held for delivery
    /// ([`max_buffered_bytes`](Self::max_buffered_bytes)).
    pub fn max_buffered_bytes(mut self, n: usize) -> Self {
        self.max_buffered_bytes = n;
        self
    }
    /// Sets the number of events per request.
    pub fn upload_size(mut self, n: usize) -> Self {
        self.upload_size = n;
        self
    }
    /// Sets the batch interval.
    pub fn upload_interval(mut self, d: Duration) -> Self {
        self.upload_interval = d;
        self
    }
    /// Sets the inactivity delay before a pending interaction snapshot is sent.
    pub fn partial_idle_timeout(mut self, d: Duration) -> Self {
        self.partial_idle_timeout = d;
        self
    }
    /// Sets the timeout of one HTTP attempt.
    pub fn request_timeout(mut self, d: Duration) -> Self {
        self.request_timeout = d;
        self
    }
    /// Sets the attempts per request.
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n;
        self
    }
    /// Sets the longest `Retry-After` honoured.
    pub fn max_retry_after(mut self, d: Duration) -> Self {
        self.max_retry_after = d;
        self
    }
    /// Sets the number of requests in flight at once.
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n;
        self
    }
    /// Sets the number of `events/track_partial` requests in flight at once.
    pub fn max_partials_in_flight(mut self, n: usize) -> Self {
        self.max_partials_in_flight = n;
        self
    }
    /// Sets the shutdown deadline used by guards.
    pub fn shutdown_timeout(mut self, d: Duration) -> Self {
        self.shutdown_timeout = d;
        self
    }
    /// Sets the cap on AI text fields, in characters.
    pub fn max_text_field_chars(mut self, n: usize) -> Self {
        self.max_text_field_chars = n;
        self
    }
    /// Turns request logging on or off.
    pub fn debug_logs(mut self, on: bool) -> Self {
        self.debug_logs = on;
        self
    }
    /// Turns span export on or off (see the field).
    pub fn tracing_enabled(mut self, on: bool) -> Self {
        self.tracing_enabled = on;
        self
    }
    /// Which root certificates HTTPS trusts.
    pub fn tls_roots(mut self, roots: TlsRoots) -> Self {
        self.tls_roots = roots;
        self
    }
    /// Trusts these CA certificates too (PEM; a bundle of several is fine).
    ///
    /// ```
    /// # let pem = include_bytes!("../tests/fixtures/tls/ca.pem");
    /// let options = raindrop_core::ClientOptions::default().add_ca_certificate(pem.to_vec());
    /// assert!(raindrop_core::Client::new(options).is_ok());
    /// assert!(raindrop_core::Client::new(
    ///     raindrop_core::ClientOptions::default().add_ca_certificate(b"not a certificate".to_vec())
    /// ).is_err());
    /// ```
    pub fn add_ca_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_certificates.push(pem.into());
        self
    }
    /// Sends requests to a local sink instead of the network.
    pub fn local_sink(mut self, sink: LocalSink) -> Self {
        self.local_sink = Some(sink);
        self
    }
    /// Sets where (or whether) to mirror requests to a local Workshop debugger.
    pub fn workshop(mut self, workshop: Workshop) -> Self {
        self.workshop = workshop;
        self
    }
    /// Turns PII redaction of AI inputs and outputs on or off.
    pub fn redact_pii(mut self, on: bool) -> Self {
        self.redact_pii = on;
        self
    }
    /// Also redacts span inputs/outputs and gen_ai message texts (with `redact_pii`).
    pub fn redact_pii_in_spans(mut self, on: bool) -> Self {
        self.redact_pii_in_spans = on;
        self
    }
    /// Records content (inputs, outputs, arguments, message texts) or not.
    pub fn capture_content(mut self, on: bool) -> Self {
        self.capture_content = on;
        self
    }
    /// Application Git provenance: `false` turns it off, an
    /// [`AppGit`](crate::AppGit) gives explicit values or detection settings.
    pub fn app_git(mut self, app_git: impl Into<crate::AppGit>) -> Self {
        self.app_git = app_git.into();
        self
    }
    /// Sets the share of events and interactions kept (0.0 to 1.0).
    pub fn sample_rate(mut self, rate: f64) -> Self {
        self.sample_rate = rate;
        self
    }
    /// Sets the before-send hook: it sees each outgoing item on the worker
    /// thread and returns `false` to drop it.
    ///
    /// ```
    /// use raindrop_core::{ClientOptions, Outgoing};
    /// let opts = ClientOptions::default().before_send(|item| match item {
    ///     Outgoing::Event(e) => {
    ///         e.properties.remove("internal_note");
    ///         true
    ///     }
    ///     Outgoing::Signal(s) => s.signal_name != "debug_ping",
    ///     _ => true,
    /// });
    /// # let _ = opts;
    /// ```
    pub fn before_send(
        mut self,
        hook: impl Fn(crate::Outgoing<'_>) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.before_send = Some(std::sync::Arc::new(hook));
        self
    }
}

impl ClientOptions {
    /// The options brought into sane ranges, with a note for each change:
    /// no value, however large or small, can make the SDK panic or stall.
    pub(crate) fn clamped(mut self) -> (Self, Vec<String>) {
        let mut notes = Vec::new();
        fn clamp<T: PartialOrd + Copy + std::fmt::Debug>(
            name: &str,
            v: &mut T,
            lo: T,
            hi: T,
            notes: &mut Vec<String>,
        ) {
            let c = if *v < lo {
                lo
            } else if *v > hi {
                hi
            } else {
                return;
            };
            notes.push(format!("{name} {v:?} is out of range; using {c:?}"));
            *v = c;
        }
        const HOUR: Duration = Duration::from_secs(3600);
        let n = &mut notes;
        clamp("max_queue_size", &mut self.max_queue_size, 1, 10_000_000, n);
        // At least one largest request (1 MiB) must fit.
        clamp(
            "max_buffered_bytes",
            &mut self.max_buffered_bytes,
            2 * 1024 * 1024,
            usize::MAX / 2,
            n,
        );
        clamp("upload_size", &mut self.upload_size, 1, 10_000, n);
        clamp(
            "upload_interval",
            &mut self.upload_interval,
            Duration::from_millis(1),
            HOUR,
            n,
        );
        clamp(
            "partial_idle_timeout",
            &mut self.partial_idle_timeout,
            Duration::ZERO,
            HOUR,
            n,
        );
        clamp(
            "request_timeout",
            &mut self.request_timeout,
            Duration::from_millis(1),
            HOUR,
            n,
        );
        clamp("max_attempts", &mut self.max_attempts, 1, 100, n);
        clamp(
            "max_retry_after",
            &mut self.max_retry_after,
            Duration::ZERO,
            HOUR,
            n,
        );
        clamp("max_in_flight", &mut self.max_in_flight, 1, 4096, n);
        clamp(
            "max_partials_in_flight",
            &mut self.max_partials_in_flight,
            1,
            4096,
            n,
        );
        clamp(
            "max_text_field_chars",
            &mut self.max_text_field_chars,
            16,
            usize::MAX,
            n,
        );
        (self, notes)
    }
}

/// Whether `slug` is a valid project id: 1–63 lowercase letters, digits and
/// hyphens, not starting or ending with a hyphen.
pub(crate) fn valid_project_slug(slug: &str) -> bool {
    let b = slug.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert!(valid_project_slug("support-agent"));
        assert!(valid_project_slug("a"));
        assert!(!valid_project_slug("-a"));
        assert!(!valid_project_slug("a-"));
        assert!(!valid_project_slug("Support"));
        assert!(!valid_project_slug(&"a".repeat(64)));
        assert!(!valid_project_slug(""));
    }

    #[test]
    fn extreme_values_are_clamped_with_a_note() {
        let (o, notes) = ClientOptions::default()
            .upload_interval(Duration::MAX)
            .request_timeout(Duration::ZERO)
            .max_in_flight(0)
            .shutdown_timeout(Duration::MAX)
            .clamped();
        assert_eq!(o.upload_interval, Duration::from_secs(3600));
        assert_eq!(o.request_timeout, Duration::from_millis(1));
        assert_eq!(o.max_in_flight, 1);
        assert_eq!(
            o.shutdown_timeout,
            Duration::MAX,
            "any shutdown deadline is fine"
        );
        assert_eq!(notes.len(), 3, "{notes:?}");
        assert!(ClientOptions::default().clamped().1.is_empty());
    }

    #[test]
    fn key_is_redacted() {
        let o = ClientOptions::default().write_key("secret-key-123");
        assert!(!format!("{o:?}").contains("secret-key-123"));
        assert_eq!(WriteKey::new("secret").to_string(), "***");
    }
}
