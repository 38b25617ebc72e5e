//! Raindrop for Rust: AI telemetry that records what your users asked, what
//! the model answered, which tools ran and how users reacted.
//!
//! This is the crate applications use (package `raindrop-sdk`, library
//! `raindrop`). It re-exports the client and data model of `raindrop-core`,
//! adds the process-wide client ([`init`] and the free functions), the
//! tracing layer ([`global_layer`], [`layer_for`], [`resume_interaction`]) and the attributes
//! [`interaction`](macro@interaction), [`task`](macro@task) and
//! [`tool`](macro@tool). The repository's README is the guided tour and its
//! `docs/` directory holds the guides (setup, attributes, testing, across
//! services, privacy, delivery, configuration, spool, OpenTelemetry); its
//! `examples/` run offline (`cargo run --example chat`).
//!
//! Tracking calls never block and never fail because of the network: they
//! validate, queue and return, and a background thread batches, delivers and
//! retries. Every item ends up delivered or dropped with a reason in
//! [`Client::stats`]. Without a write key (`RAINDROP_WRITE_KEY`) and without
//! a [`LocalSink`] the client is disabled and sends nothing.
//!
//! # Plain tracking
//!
//! ```
//! use std::time::Duration;
//! use raindrop::{AiEvent, Begin, ClientOptions, LocalSink, Sentiment, Signal, SignalType};
//!
//! # let path = std::env::temp_dir().join(format!("raindrop-facade-doc-{}.jsonl", std::process::id()));
//! // Once, early; keep the guard alive (dropping it flushes and shuts down).
//! // The local sink writes each request as a JSON line instead of sending it.
//! let guard = raindrop::init(ClientOptions::from_env().local_sink(LocalSink::File(path.clone())));
//!
//! let event_id = raindrop::track_ai(
//!     AiEvent::new("user-1", "chat_message").model("gpt-4o").input("2+2?").output("4"),
//! )?;
//! raindrop::track_signal(
//!     Signal::new(&event_id, "user_feedback")
//!         .signal_type(SignalType::Feedback)
//!         .sentiment(Sentiment::Positive)
//!         .comment("quick and right"),
//! )?;
//!
//! // An interaction: one AI event whose fields arrive over time.
//! let run = raindrop::begin(Begin::new("user-1", "agent_run").input("plan my trip"))?;
//! run.set_property("stage", "searching");
//! run.finish("Here is your plan.");
//!
//! let report = raindrop::client()?.shutdown(Duration::from_secs(5));
//! assert!(report.completed);
//! assert_eq!(report.stats.dropped_total(), 0);
//! assert_eq!(report.stats.delivered, report.stats.queued); // every call, delivered
//! # drop(guard);
//! # let _ = std::fs::remove_file(&path);
//! # Ok::<(), raindrop::Error>(())
//! ```
//!
//! # Tracing and the attribute macros
//!
//! With the default `tracing` and `macros` features, install
//! [`global_layer`] (or [`layer_for`]) in your subscriber and mark functions with
//! [`#[raindrop::interaction]`](macro@interaction), [`#[raindrop::task]`](macro@task) and
//! [`#[raindrop::tool]`](macro@tool). An interaction function begins one AI
//! event when called and finishes it when it returns (with its output, an
//! `Err`, or a panic); tasks and tools inside it are exported as trace spans
//! linked to that event; [`resume_interaction`] reaches the interaction from
//! any code inside it. Plain `tracing` spans work too: see the "Special span
//! fields" section of the `raindrop-tracing` crate docs.
//!
//! ```
//! use tracing_subscriber::prelude::*;
//!
//! #[raindrop::tool("search")]
//! fn search(query: &str) -> Vec<String> {
//!     vec![format!("result for {query}")]
//! }
//!
//! #[raindrop::interaction("chat", user_id = user, skip(user))]
//! fn chat(user: &str, message: &str) -> String {
//!     let hits = search(message);
//!     raindrop::resume_interaction().set_property("hits", hits.len());
//!     format!("found {}", hits.len())
//! }
//!
//! let guard = raindrop::init(raindrop::ClientOptions::from_env());
//! if let Some(client) = guard.client() {
//!     // Give other layers their own filters (`fmt::layer().with_filter(EnvFilter)`):
//!     // a global filter at WARN would disable the INFO spans the macros create.
//!     let _ = tracing_subscriber::registry().with(raindrop::layer_for(client)).try_init();
//! }
//! assert_eq!(chat("user-1", "weather?"), "found 1");
//! // Spans close before the guard flushes and shuts down.
//! drop(guard);
//! ```
//!
//! # Setup: the subscriber you already have
//!
//! The raindrop layer only sees spans the subscriber lets through, and a
//! process has one global subscriber. With none yet (or
//! `tracing_subscriber::fmt::init()`), [`tracing_init`] installs fmt logs
//! filtered by `RUST_LOG` per layer plus the raindrop layer. For every other
//! setup (an `fmt()` builder with a filter, a `registry()` stack with a
//! global `EnvFilter`, `RUST_LOG` unset), the repository's `docs/setup.md`
//! has a full snippet, each run by `tests/setup.rs`.
//!
//! Mistakes are loud: the first interaction no raindrop layer sees logs one
//! WARN naming the cause (no subscriber, no raindrop layer in it, a global
//! filter) and the fix, on stderr when your subscriber would not show it.
//! An interaction that finishes without a user id warns once.
//!
//! ```
//! use raindrop::{ClientOptions, LocalSink};
//!
//! #[raindrop::interaction("chat", user_id = user, skip(user))]
//! fn chat(user: &str, question: &str) -> String {
//!     tracing::info!("answering"); // a log line: shows the span, not the question
//!     format!("echo: {question}")
//! }
//!
//! # let path = std::env::temp_dir().join(format!("raindrop-facade-setup-{}.jsonl", std::process::id()));
//! let guard = raindrop::init(ClientOptions::default().local_sink(LocalSink::File(path.clone())));
//! let client = guard.client().expect("valid options").clone();
//! raindrop::tracing_init(&client).expect("no other global subscriber");
//! chat("user-1", "2+2?");
//! drop(guard); // delivers what is queued
//! let sent = std::fs::read_to_string(&path).unwrap();
//! assert!(sent.contains(r#""user_id":"user-1""#) && sent.contains("2+2?"));
//! # let _ = std::fs::remove_file(&path);
//! ```
//!
//! In a server, shut down on SIGTERM and Ctrl-C with [`shutdown_signal`]
//! (axum: `axum::serve(..).with_graceful_shutdown(raindrop::shutdown_signal())`),
//! then drop the guard: requests in flight finish, their interactions close,
//! and what is queued is delivered before the process exits. Delivery
//! guarantees, [`Client::stats`] and shutdown: `docs/delivery.md`.
//!
//! # Seeing what is sent
//!
//! With `RAINDROP_LOCAL_SINK=stdout` (or `stderr`, or a file path), or
//! [`ClientOptions::local_sink`], every request is written as one JSON line
//! `{"path": ..., "body": ...}` instead of being sent: no key and no network
//! needed. The repository's examples read such a file back and print it as a
//! tree of interactions, spans and signals.
//!
//! # Features
//!
//! * `tracing` (default): [`global_layer`], [`layer_for`], [`resume_interaction`] and the span fields.
//! * `macros` (default, implies `tracing`): the attributes.
//! * `subscriber` (default, implies `tracing`): [`subscriber`] and
//!   [`tracing_init`] (pulls tracing-subscriber's `fmt` and `env-filter`).
//! * `signal` (default): [`shutdown_signal`] (pulls tokio's `signal`).
//! * `testing`: `raindrop::testing`, a client recording in memory and the
//!   decoded records, for assertions in your own tests.
//! * `native-roots`: [`TlsRoots::Native`], the platform's certificate store.
//! * `tower`: `propagate::tower::PropagationLayer`, a server continuing
//!   its callers' traces and interactions (see [`propagate`]).
//! * `reqwest-middleware`: `propagate::reqwest_middleware::InjectMiddleware`
//!   (reqwest-middleware 0.5, reqwest 0.13), sending the current context on
//!   every request.
//! * `llm-http`: `llm_http::LlmCaptureMiddleware` (reqwest-middleware 0.5),
//!   recording OpenAI Chat Completions / Responses and Anthropic Messages
//!   calls, streamed or not, as LLM spans of the current interaction.
//! * `llm-tower` (implies `llm-http`): `llm_http::tower::LlmCaptureLayer`,
//!   the same capture as a tower layer for async-openai 0.43's `middleware`
//!   feature (`Client::with_http_service`).
//! * `opentelemetry`: with `tracing-opentelemetry` 0.34 (`opentelemetry`
//!   0.33) in the same subscriber, raindrop spans use its spans' trace and
//!   span ids.
//! * `otel-exporter`: `otel::RaindropExporter`, a span exporter of
//!   `opentelemetry_sdk` 0.33 sending the spans of Raindrop interactions to
//!   Raindrop beside your other exporters (`docs/opentelemetry.md`).
//!
//! Without them the crate is the plain client: [`init`], [`track_ai`],
//! [`track`], [`identify`], [`track_signal`], [`begin`] and [`Client`].

pub use raindrop_core::*;

use raindrop_core::__private::{current, global, set_global};

#[cfg(feature = "tracing")]
#[allow(deprecated)]
pub use raindrop_tracing::current_interaction;
#[cfg(feature = "tracing")]
pub use raindrop_tracing::{
    current_span_context, layer_for, FilteredRaindropLayer, RaindropFilter, RaindropLayer,
    RaindropSpanExt,
};

/// The raindrop layer for the global client (what [`init`] installs),
/// looked up for each raindrop span: the subscriber may be built before or
/// after `init`. Before `init`, raindrop spans count as not initialised
/// (said once). [`layer_for`] binds a given client instead.
///
/// ```
/// use tracing_subscriber::prelude::*;
/// let _ = tracing_subscriber::registry().with(raindrop::global_layer()).try_init();
/// let _guard = raindrop::init(raindrop::ClientOptions::from_env());
/// ```
#[cfg(feature = "tracing")]
#[track_caller]
pub fn global_layer<S>() -> FilteredRaindropLayer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    raindrop_tracing::global_layer()
}

/// The raindrop layer for the global client: the same as [`global_layer`]
/// (the tracing crate's name).
#[cfg(feature = "tracing")]
#[deprecated(
    since = "0.1.0",
    note = "use `raindrop::global_layer()` (the same layer)"
)]
#[track_caller]
pub fn layer<S>() -> FilteredRaindropLayer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    raindrop_tracing::global_layer()
}

/// Names of the reserved `raindrop.*` span fields (`fields::KIND` is
/// `"raindrop.kind"`, ...); see the `raindrop-tracing` crate docs.
#[cfg(feature = "tracing")]
pub use raindrop_tracing::fields;
#[cfg(feature = "tracing")]
pub use raindrop_tracing::stream;

#[cfg(feature = "testing")]
pub mod testing;

/// One interaction across services: inject and extract W3C `traceparent`
/// and `baggage`, and the signed carrier's types ([`CarrierTrust`](propagate::CarrierTrust)
/// for [`ClientOptions::propagation_trust`], ...). Inject, extract and the
/// `tower` / `reqwest_middleware` integrations need the `tracing` feature;
/// the `raindrop-tracing` crate's `propagate` module is the guide.
pub mod propagate {
    #[doc(inline)]
    pub use raindrop_core::propagation::*;
    #[cfg(feature = "tracing")]
    #[doc(inline)]
    pub use raindrop_tracing::propagate::*;
}

/// The carrier types, now in [`propagate`] with inject and extract: one
/// name for one concept. Each item here is a deprecated alias (a
/// deprecated module or re-export is not reported by the compiler).
#[doc(hidden)]
pub mod propagation {
    use raindrop_core::propagation as core;

    #[deprecated(note = "use raindrop::propagate::TRACEPARENT")]
    pub const TRACEPARENT: &str = core::TRACEPARENT;
    #[deprecated(note = "use raindrop::propagate::BAGGAGE")]
    pub const BAGGAGE: &str = core::BAGGAGE;
    #[deprecated(note = "use raindrop::propagate::SIGNATURE")]
    pub const SIGNATURE: &str = core::SIGNATURE;
    #[deprecated(note = "use raindrop::propagate::REPLAY_WINDOW")]
    pub const REPLAY_WINDOW: std::time::Duration = core::REPLAY_WINDOW;
    #[deprecated(note = "use raindrop::propagate::TraceParent")]
    pub type TraceParent = core::TraceParent;
    #[deprecated(note = "use raindrop::propagate::InteractionBaggage")]
    pub type InteractionBaggage = core::InteractionBaggage;
    #[deprecated(note = "use raindrop::propagate::CarrierTrust")]
    pub type CarrierTrust = core::CarrierTrust;
    #[deprecated(note = "use raindrop::propagate::CarrierRefusal")]
    pub type CarrierRefusal = core::CarrierRefusal;
    #[deprecated(note = "use raindrop::propagate::CarrierGrant")]
    pub type CarrierGrant = core::CarrierGrant;
    #[deprecated(note = "use raindrop::propagate::CarrierKey")]
    pub type CarrierKey = core::CarrierKey;
}

/// Model calls of any reqwest-middleware 0.5 client, and of async-openai's
/// tower stack (`llm-tower`), recorded as LLM spans (see the
/// `raindrop-tracing` crate's `llm_http` module).
#[cfg(feature = "llm-http")]
pub use raindrop_tracing::llm_http;

/// Raindrop as an OpenTelemetry span exporter: `RaindropExporter` beside
/// your other exporters in an `opentelemetry_sdk` 0.33 tracer provider (see
/// the `raindrop-tracing` crate's `otel_export` module and
/// `docs/opentelemetry.md`).
#[cfg(feature = "otel-exporter")]
pub use raindrop_tracing::otel_export as otel;

#[cfg(feature = "macros")]
pub use raindrop_macros::{interaction, task, tool};

use std::time::Duration;

/// Flushes and shuts the global client down (within its `shutdown_timeout`)
/// when dropped. Keep it alive for as long as you track: `let _guard = raindrop::init(..)`.
#[must_use = "dropping the guard shuts raindrop down at once"]
#[derive(Debug)]
pub struct Guard {
    client: Option<Client>,
}

impl Guard {
    /// The client this guard owns.
    pub fn client(&self) -> Option<&Client> {
        self.client.as_ref()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            let timeout = c.options().shutdown_timeout;
            c.shutdown(timeout);
            // Leave a client installed by a later `init` alone.
            if global().is_some_and(|g| g.ptr_eq(&c)) {
                set_global(None);
            }
        }
    }
}

/// Builds a client from `options`, installs it as the global client, and
/// returns a guard that shuts it down when dropped. Invalid options are logged
/// and give a disabled client: telemetry never takes the application down.
pub fn init(options: ClientOptions) -> Guard {
    match try_init(options) {
        Ok(g) => g,
        Err(e) => {
            raindrop_core::__private::setup_warning(
                "init",
                &format!("raindrop::init: {e}; raindrop is disabled and records nothing (raindrop::try_init returns this error)"),
            );
            Guard { client: None }
        }
    }
}

/// Like [`init`], but returns configuration errors.
pub fn try_init(options: ClientOptions) -> Result<Guard, Error> {
    let client = Client::new(options)?;
    set_global(Some(client.clone()));
    Ok(Guard {
        client: Some(client),
    })
}

/// The global client, or `Error::NotInitialized`.
pub fn client() -> Result<Client, Error> {
    global().ok_or(Error::NotInitialized)
}

/// [`Client::track_ai`] on the global client. `Err` only for input to fix.
pub fn track_ai(event: AiEvent) -> Result<String, Error> {
    current().track_ai(event)
}

/// [`Client::track`] on the global client. `Err` only for input to fix.
pub fn track(event: Event) -> Result<String, Error> {
    current().track(event)
}

/// [`Client::identify`] on the global client. `Err` only for input to fix.
pub fn identify(user_id: impl Into<String>, traits: impl serde::Serialize) -> Result<(), Error> {
    current().identify(user_id, traits)
}

/// [`Client::track_signal`] on the global client. `Err` only for input to fix.
pub fn track_signal(signal: Signal) -> Result<(), Error> {
    current().track_signal(signal)
}

/// [`Client::begin`] on the global client.
///
/// Inside an interaction span (`#[raindrop::interaction]` or a span marked
/// `raindrop.kind = "interaction"`, at any depth), this binds to that span's
/// interaction instead of starting a second event: the fields of `begin`
/// (user, event name, input, model, convo id, properties, attachments) are
/// applied to it and its handle is returned. The span's event id is kept.
pub fn begin(begin: Begin) -> Result<Interaction, Error> {
    #[cfg(feature = "tracing")]
    if let Some(i) = current_span_interaction().filter(|i| !i.is_finished()) {
        raindrop_core::__private::apply_begin(&i, begin);
        return Ok(i);
    }
    current().begin(begin)
}

/// The interaction of the current span's nearest interaction span, if any
/// (silently: no warning when there is none).
#[cfg(feature = "tracing")]
fn current_span_interaction() -> Option<Interaction> {
    Some(tracing::Span::current().interaction()).filter(|i| !i.is_noop())
}

/// The interaction of the nearest enclosing interaction span (through any
/// ordinary spans, across `.await`, instrumented spawned futures and threads
/// that enter the span); nested interactions resolve to the innermost.
///
/// With no interaction span in scope (or without the `tracing` feature) it
/// returns [`Interaction::noop`] and logs one DEBUG line under target
/// `raindrop`: it never panics and never sends anything by itself.
pub fn resume_interaction() -> Interaction {
    #[cfg(feature = "tracing")]
    {
        raindrop_tracing::resume_interaction()
    }
    #[cfg(not(feature = "tracing"))]
    {
        tracing::debug!(target: "raindrop", "resume_interaction(): the `tracing` feature is off; returning a no-op handle");
        Interaction::noop()
    }
}

/// Launches a detached sub-agent from the current interaction: mints the
/// child's event id, records the dispatch on a span under the current
/// raindrop span and returns the carrier to send with the work (see
/// [`handoff`]; `propagate::inject_handoff` puts it on a request). `None`
/// outside any interaction (or without the `tracing` feature).
///
/// ```
/// // Outside any interaction there is nothing to launch from.
/// assert!(raindrop::subagent("researcher").is_none());
/// ```
pub fn subagent(name: impl Into<String>) -> Option<handoff::Handoff> {
    #[cfg(feature = "tracing")]
    {
        raindrop_tracing::propagate::subagent(name)
    }
    #[cfg(not(feature = "tracing"))]
    {
        let _ = name.into();
        None
    }
}

/// Starts a [`ManualSpan`] on the global client, for code that cannot use
/// `tracing` spans: linked to the current interaction (if any), and a child
/// of the current raindrop span (if any), so it lands in the same trace.
///
/// ```
/// let span = raindrop::start_span(raindrop::SpanKind::Task, "rerank");
/// span.end(None);
/// ```
pub fn start_span(kind: SpanKind, name: impl Into<String>) -> ManualSpan {
    #[cfg(feature = "tracing")]
    {
        let span = match current_span_interaction() {
            Some(i) => i.start_span(kind, name),
            None => current().start_span(kind, name, Association::new()),
        };
        match raindrop_tracing::current_span_context() {
            Some(parent) => span.with_parent(parent),
            None => span,
        }
    }
    #[cfg(not(feature = "tracing"))]
    {
        current().start_span(kind, name, Association::new())
    }
}

/// Records a [`ToolCall`] with the caller's timing on the global client:
/// linked to the current interaction (if any) and a child of the current
/// raindrop span (if any). See [`Interaction::track_tool`].
///
/// ```
/// use std::time::Duration;
/// raindrop::track_tool(raindrop::ToolCall::new("search").input("weather").duration(Duration::from_millis(120)));
/// ```
pub fn track_tool(call: ToolCall) {
    #[cfg(feature = "tracing")]
    {
        let call = match raindrop_tracing::current_span_context() {
            Some(parent) => call.parent(parent),
            None => call,
        };
        if let Some(i) = current_span_interaction() {
            i.track_tool(call);
            return;
        }
        let _ = current().track_tool(Association::new(), call);
    }
    #[cfg(not(feature = "tracing"))]
    {
        let _ = current().track_tool(Association::new(), call);
    }
}

/// [`Client::resume_interaction_by_id`] on the global client; a no-op handle when
/// raindrop is not initialised.
pub fn resume_interaction_by_id(event_id: &str) -> Interaction {
    global()
        .map(|c| c.resume_interaction_by_id(event_id))
        .unwrap_or_else(Interaction::noop)
}

/// The subscriber most services want, with the raindrop layer in it: a
/// [`tracing_subscriber::registry()`] with a `fmt` log layer filtered **per
/// layer** by `RUST_LOG` (INFO when unset or invalid), plus
/// [`layer_for(client)`](layer_for).
///
/// The filter applies to your logs only, so whatever `RUST_LOG` says, the
/// raindrop layer still sees the INFO spans the attributes create. Install
/// it with `.init()` / `.try_init()` (what [`tracing_init`] does), or add
/// more layers first with `.with(..)`.
///
/// ```
/// use tracing_subscriber::prelude::*;
/// let guard = raindrop::init(raindrop::ClientOptions::from_env());
/// if let Some(client) = guard.client() {
///     let subscriber = raindrop::subscriber(client);
///     tracing::subscriber::with_default(subscriber, || tracing::info!("inside"));
/// }
/// ```
#[cfg(feature = "subscriber")]
pub fn subscriber(client: &Client) -> impl tracing::Subscriber + Send + Sync + 'static {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::Layer as _;
    let logs = tracing_subscriber::EnvFilter::builder()
        .with_default_directive(tracing::level_filters::LevelFilter::INFO.into())
        .from_env_lossy();
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_filter(logs))
        .with(layer_for(client))
}

/// Installs [`subscriber(client)`](subscriber) as the process's global
/// subscriber: `fmt` logs filtered by `RUST_LOG` (INFO when unset) and the
/// raindrop layer. Use it **instead of** `tracing_subscriber::fmt::init()`.
///
/// A process has one global subscriber: if one was installed already (an
/// earlier `fmt::init()`), this returns the error and warns (on stderr, as
/// no subscriber of ours would show it), because the raindrop layer then
/// sees nothing. Add [`layer`] to that subscriber instead.
///
/// ```no_run
/// let guard = raindrop::init(raindrop::ClientOptions::from_env());
/// if let Some(client) = guard.client() {
///     raindrop::tracing_init(client).expect("no other global subscriber");
/// }
/// tracing::info!("logs as with fmt::init(), and raindrop sees its spans");
/// ```
#[cfg(feature = "subscriber")]
pub fn tracing_init(client: &Client) -> Result<(), tracing_subscriber::util::TryInitError> {
    use tracing_subscriber::util::SubscriberInitExt as _;
    subscriber(client).try_init().inspect_err(|e| {
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "WARN raindrop: raindrop::tracing_init: {e}: another global tracing subscriber was \
             installed first (`tracing_subscriber::fmt::init()`?), so the raindrop layer sees \
             no span. Fix: call raindrop::tracing_init instead of it, or add \
             `raindrop::layer_for(&client)` to the subscriber you install."
        );
    })
}

/// Resolves when the process receives SIGTERM (what `docker stop`,
/// Kubernetes and systemd send) or Ctrl-C (SIGINT), whichever comes first.
///
/// Give it to your server's graceful shutdown, then drop the guard (or call
/// `client.shutdown(..)`) once the server has stopped: every handler has
/// returned, every interaction span has closed, and what is queued is
/// delivered before the process exits. Without it, SIGTERM kills the
/// process at once and the queued events are lost. Nothing is installed
/// behind your back: the signal handlers exist from the first poll of this
/// future (needs a tokio runtime with the signal driver, as
/// `#[tokio::main]` has).
///
/// ```no_run
/// # async fn serve(listener: tokio::net::TcpListener, app: axum::Router) -> std::io::Result<()> {
/// axum::serve(listener, app)
///     .with_graceful_shutdown(raindrop::shutdown_signal())
///     .await
/// # }
/// ```
#[cfg(feature = "signal")]
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    let which = tokio::select! {
        () = ctrl_c => "Ctrl-C",
        () = terminate => "SIGTERM",
    };
    tracing::info!(target: "raindrop", "{which} received: shutting down");
}

/// Support for the code generated by the attribute macros. Not a public API.
#[doc(hidden)]
#[cfg(feature = "macros")]
pub mod __private {
    pub use raindrop_tracing::__macro_support::*;
}

/// [`Client::flush`] on the global client (`true` when not initialised).
pub fn flush(timeout: Duration) -> bool {
    global().is_none_or(|c| c.flush(timeout))
}

/// [`Client::flush_async`] on the global client (`true` when not initialised).
pub async fn flush_async(timeout: Duration) -> bool {
    match global() {
        Some(c) => c.flush_async(timeout).await,
        None => true,
    }
}

/// [`Client::shutdown_async`] on the global client, for async shutdown
/// paths (a guard's drop blocks its thread); `None` when not initialised.
/// The guard's later drop returns the same report at once.
pub async fn shutdown_async(timeout: Duration) -> Option<ShutdownReport> {
    match global() {
        Some(c) => Some(c.shutdown_async(timeout).await),
        None => None,
    }
}

/// [`Client::set_debug_logs`] on the global client.
pub fn set_debug_logs(on: bool) {
    if let Some(c) = global() {
        c.set_debug_logs(on);
    }
}

/// [`Client::set_tracing_enabled`] on the global client: spans stop (or
/// resume) being exported; events and interactions are not affected.
pub fn set_tracing_enabled(on: bool) {
    if let Some(c) = global() {
        c.set_tracing_enabled(on);
    }
}

/// [`Client::stats`] of the global client (all zero when not initialised).
pub fn stats() -> Stats {
    global().map(|c| c.stats()).unwrap_or_default()
}
