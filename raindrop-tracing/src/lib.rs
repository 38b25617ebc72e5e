//! A [`tracing-subscriber`](tracing_subscriber) layer that turns spans marked
//! with `raindrop.kind` into Raindrop interactions and trace spans.
//!
//! * An **interaction** span begins an [`Interaction`](raindrop_core::Interaction)
//!   (one AI event on `events/track_partial`) when it is created and finishes
//!   it when it closes: with its `raindrop.output`, or with its
//!   `raindrop.error` (a panic while the span closes counts as an error).
//!   Exactly one final update is sent, even if `finish` was also called by hand.
//! * **Task** and **tool** spans, and the interaction's own span, are exported
//!   on the `traces` channel as OTLP/JSON, named `<name>.task`, `<name>.tool`
//!   and `<name>.workflow`, linked to the enclosing interaction's event by
//!   `traceloop.association.properties.event_id` (plus `user_id`, `convo_id`,
//!   `event`, read when the span closes so values set later still land).
//! * [`resume_interaction`] returns the interaction of the nearest enclosing
//!   interaction span, through any depth of ordinary spans, across `.await`,
//!   instrumented spawned futures and threads that enter the span.
//!
//! * [`propagate`] carries an interaction across services in W3C
//!   `traceparent` and `baggage` headers: inject on the client, continue on
//!   the server (features `tower` and `reqwest-middleware` add a server layer
//!   and a client middleware). With the `opentelemetry` feature, spans take
//!   the ids of `tracing-opentelemetry`'s spans (see `otel`).
//! * [`otel_export`] (feature `otel-exporter`): Raindrop as a span exporter
//!   of an `opentelemetry_sdk` tracer provider, beside your other exporters.
//!
//! Most code uses this through the `raindrop` facade: `raindrop::layer_for(&client)`,
//! `raindrop::resume_interaction()` and the `#[raindrop::interaction]`,
//! `#[raindrop::task]` and `#[raindrop::tool]` attributes. The repository's
//! README and its `docs/` guides (setup, attributes, across services,
//! privacy, delivery) are the tour; this page is the reference for the
//! span fields, the wire attributes and model calls.
//!
//! ```
//! use std::time::Duration;
//! use raindrop_core::{Client, ClientOptions, LocalSink};
//! use tracing_subscriber::prelude::*;
//!
//! # let path = std::env::temp_dir().join(format!("raindrop-tracing-doc-{}", std::process::id()));
//! let client = Client::new(ClientOptions::default().local_sink(LocalSink::File(path.clone())))?;
//! let subscriber = tracing_subscriber::registry().with(raindrop_tracing::layer_for(&client));
//! tracing::subscriber::with_default(subscriber, || {
//!     let chat = tracing::info_span!(
//!         "chat",
//!         raindrop.kind = "interaction",
//!         raindrop.user_id = "user-1",
//!         raindrop.input = "what is 2+2?",
//!         raindrop.output = tracing::field::Empty,
//!     );
//!     let _in_chat = chat.enter();
//!     {
//!         let tool = tracing::info_span!(
//!             "calculator",
//!             raindrop.kind = "tool",
//!             raindrop.input = r#"{"expr":"2+2"}"#,
//!             raindrop.output = tracing::field::Empty,
//!             raindrop.error = tracing::field::Empty,
//!         );
//!         let _in_tool = tool.enter();
//!         // Any code in here can reach the interaction:
//!         raindrop_tracing::resume_interaction().set_property("tool_calls", 1);
//!         tool.record("raindrop.output", "4");
//!     } // the tool span closes: exported as `calculator.tool`
//!     chat.record("raindrop.output", "2+2 is 4");
//! }); // the interaction span closes: the interaction finishes with its output
//! assert!(client.flush(Duration::from_secs(5)));
//! // Three interaction updates (begin, property, finish; merged into one
//! // final partial on the wire), the tool span and the workflow span.
//! assert_eq!(client.stats().delivered, 5);
//! # let _ = std::fs::remove_file(path);
//! # Ok::<(), raindrop_core::Error>(())
//! ```
//!
//! # Special span fields
//!
//! A span is seen by the layer only if its callsite declares `raindrop.kind`.
//! The other fields are optional. They are ordinary span fields: **every
//! layer sees them**, so a log layer prints `raindrop.input="<the prompt>"`
//! on each line written inside the span. To keep content out of your logs,
//! declare only `raindrop.kind` (and `raindrop.name`) and hand the content
//! to the raindrop layer alone with [`RaindropSpanExt`]
//! (`span.set_input(..)`, `set_output`, `set_error`, `set_property`), as the
//! attribute macros do:
//!
//! ```
//! use raindrop_tracing::RaindropSpanExt;
//! let tool = tracing::info_span!("search", raindrop.kind = "tool");
//! tool.set_input("the user's question"); // seen by the raindrop layer only
//! ```
//!
//! Fields recorded later with
//! [`Span::record`](tracing::Span::record) must be declared when the span is
//! created (as `tracing::field::Empty`): tracing silently ignores a record of
//! an undeclared field.
//!
//! | field | spans | meaning |
//! | --- | --- | --- |
//! | `raindrop.kind` | all | `"interaction"` (or `"workflow"`), `"task"`, `"tool"` or `"llm"` (a model call, see [Model calls](#model-calls)); required, declared when the span is created |
//! | `raindrop.name` | all | entity name; defaults to the span name. Span names on the wire are `<name>.workflow` / `<name>.task` / `<name>.tool` |
//! | `raindrop.event` | interaction | event name; defaults to the entity name |
//! | `raindrop.user_id` | interaction | user id; may be recorded later (it then also lands on spans closing after it) |
//! | `raindrop.convo_id` | interaction | conversation id |
//! | `raindrop.event_id` | interaction | event id, at creation only; a UUID v4 is generated when absent |
//! | `raindrop.model` | interaction, llm | model name |
//! | `raindrop.input` | all | input: `ai_data.input` of the interaction, `traceloop.entity.input` of the span (JSON text, or a plain string) |
//! | `raindrop.output` | all | output: the interaction's final answer, `traceloop.entity.output` of the span |
//! | `raindrop.error` | all | error message: span status error; the interaction finishes with `properties.error` |
//! | `raindrop.version` | all | entity version, an integer (`traceloop.entity.version`) |
//! | `raindrop.properties` | all | a JSON object of properties (text) |
//! | `raindrop.properties.<key>` | all | one property |
//!
//! On an interaction span, properties go to the event's `properties`; on a
//! task or tool span they become `traceloop.association.properties.<key>`
//! attributes. Input and output text is capped at the client's
//! `max_text_field_chars`.
//!
//! Each exported span carries `traceloop.span.kind` (`workflow`, `task`,
//! `tool`), `traceloop.entity.name`, `traceloop.workflow.name` (the enclosing
//! interaction's name), `traceloop.entity.input` / `output`,
//! `traceloop.entity.duration_ms` (integer), `ai.operationId = ai.toolCall`
//! on tools, and, inside an interaction,
//! `ai.telemetry.metadata.raindrop.eventId` and
//! `traceloop.association.properties.{event_id,user_id,convo_id,event}`.
//! The trace id is inherited from the nearest raindrop ancestor span, which is
//! also the parent span id; ordinary spans in between are skipped.
//!
//! **ERROR events mark the span failed.** An event at level ERROR inside a
//! raindrop span (`tracing::error!(..)`, at any depth below it) sets the
//! status of the nearest raindrop span to error, with the event's message
//! (the first such event wins), as `tracing-opentelemetry` and
//! `sentry-tracing` do. It changes only the exported span's status: an
//! interaction still finishes with its own output and error (a handler that
//! logs an error and recovers is not a failed interaction). Other events are
//! never looked at, and the SDK's own diagnostics (target `raindrop`) never
//! mark anything; all events pass through to your other layers untouched.
//!
//! # Model calls
//!
//! Libraries that describe model calls with the OpenTelemetry GenAI
//! conventions (rig, genai's `otel` feature) are recorded with no code of
//! yours: the per-layer filter also takes span callsites that declare
//! `gen_ai.operation.name` or `gen_ai.request.model` (decided once per
//! callsite from field names; nothing else is enabled). Inside an
//! interaction, such a span becomes
//!
//! * an **LLM span** (`<name>.llm`, `traceloop.span.kind = llm`) for
//!   `chat`, `generate_content`, `text_completion`, `embeddings`, ...: with
//!   `ai.operationId` (`ai.generateText`), `ai.model.id`,
//!   `gen_ai.request.model`, `gen_ai.response.model` (the request model when
//!   the response names none), `ai.model.provider` / `gen_ai.system` /
//!   `gen_ai.provider.name` (lowercase), the prompt as `ai.prompt.messages`
//!   (`[{role, content}]`, system instructions first) and
//!   `gen_ai.prompt.N.role/content`, the answer as `ai.response.text` and
//!   `gen_ai.completion.0.role/content`, token usage under the normalised
//!   names `gen_ai.usage.{input,output,reasoning}_tokens`,
//!   `gen_ai.usage.cache_read_input_tokens`, `cache_write_input_tokens`
//!   (rig's, genai's and other conventions' differing names all read), the
//!   cost the provider reported as `gen_ai.usage.provider_reported_cost`
//!   (OpenRouter's `usage.cost`), the tools the call was offered as
//!   `ai.prompt.tools` (JSON strings `{"type":"function","name",
//!   "description","inputSchema"}`, rebuilt from `gen_ai.tool.definitions`
//!   or the request's `tools`; the catalog set on the interaction with
//!   `Begin::tools` / `set_tools` wins, marked `ai.prompt.tools.source =
//!   "interaction"`), the failure a client recorded as `error.type` (genai)
//!   as the span's error, and the interaction's association attributes,
//!   like a tool span;
//! * a **tool span** for `execute_tool`, named after `gen_ai.tool.name`,
//!   with the arguments and result as `traceloop.entity.input` / `output`
//!   and `gen_ai.tool.call.id`;
//! * a task span for `invoke_agent`.
//!
//! swiftide (feature `langfuse`) describes its model calls with Langfuse's
//! names instead: a span declaring `langfuse.type = "GENERATION"` and, in
//! it, a DEBUG event with `langfuse.model`, `langfuse.input` (the provider
//! request), `langfuse.output` and `langfuse.usage`. Both are read as the
//! GenAI fields above (the per-layer filter takes those DEBUG events even
//! when your log filter is at INFO; a global filter or a `max_level_*`
//! feature of `tracing` that drops DEBUG events leaves the span without
//! them). swiftide's agent tool spans carry no such marker and are not
//! recorded.
//!
//! When the interaction ends, what its chat-like model calls (`chat`,
//! `generate_content`, `text_completion`; not embeddings) said fills it where
//! nothing was set by hand (a field, `set_*`, a captured argument or a
//! non-unit return value of the macros): the model of the last call, the
//! input (the last user text of the first call; tool results, which come
//! back as user messages, are skipped), the output (the assistant text of
//! the last call that had some), and the properties `input_tokens`,
//! `output_tokens`, `total_tokens`, `reasoning_tokens`,
//! `cache_read_input_tokens` (summed) and `llm_calls`.
//!
//! A GenAI span **outside any interaction is ignored**: with no event id and
//! no user it could only reach the backend linked to nothing.
//!
//! Content follows the client's `capture_content` switch: off, no prompt,
//! answer, tool argument or result leaves the process (the worker removes
//! it, as it does for content set by hand); model names, usage and timings
//! still do. rig records content on its spans only with
//! `record_content_telemetry(true)`.
//!
//! rig records the agent's prompt and answer on the *enclosing* span as
//! `gen_ai.prompt` / `gen_ai.completion`. An interaction span does not
//! declare those fields (so tracing drops them): declared, they would show
//! the prompt in every log line of your fmt layer. The same text reaches the
//! interaction from the model-call spans instead.
//!
//! A model call you make yourself is a `raindrop.kind = "llm"` span with
//! `raindrop.model`, `raindrop.input` (a single prompt) or
//! `gen_ai.input.messages`, `raindrop.output`, and any `gen_ai.usage.*`
//! field:
//!
//! ```
//! let llm = tracing::info_span!(
//!     "summarise",
//!     raindrop.kind = "llm",
//!     raindrop.model = "claude-sonnet",
//!     raindrop.output = tracing::field::Empty,
//!     gen_ai.usage.input_tokens = tracing::field::Empty,
//!     gen_ai.usage.output_tokens = tracing::field::Empty,
//! );
//! # let (answer, usage) = ("Blue sky.", (11u64, 3u64));
//! llm.record("raindrop.output", answer);
//! llm.record("gen_ai.usage.input_tokens", usage.0);
//! llm.record("gen_ai.usage.output_tokens", usage.1);
//! ```
//!
//! A streamed answer: wrap the stream with [`stream::text_stream`], which
//! ends the span when the stream ends (with the whole text and the time to
//! the first chunk) or is dropped (as `cancelled`).
//!
//! # Filters
//!
//! [`layer_for`] carries its own per-layer filter: spans without `raindrop.kind`
//! (or a GenAI field, see [Model calls](#model-calls)) cost it nothing and stay visible to the other layers of the subscriber
//! (fmt, `EnvFilter`, tracing-opentelemetry).
//!
//! A **global** filter applies to every layer: an `EnvFilter` at `WARN`
//! added with `.with(EnvFilter::new("warn"))` on the registry disables the
//! INFO spans the raindrop macros create, so nothing is tracked (the macros
//! then warn once, naming the cause; so does [`resume_interaction`] when the
//! subscriber has no raindrop layer at all). Filter your log output **per
//! layer** instead (`fmt::layer().with_filter(EnvFilter::..)`), or add the
//! directive `[{raindrop.kind}]=info` to the global filter. The repository's
//! `docs/setup.md` has a full snippet for each common setup.
//!
//! [`layer_for`]'s per-layer filter needs a subscriber built with
//! `tracing_subscriber::registry()`. A `tracing_subscriber::fmt()...finish()`
//! subscriber supports none: add the bare [`RaindropLayer::new`] to it (its
//! own filter, from `with_env_filter`, is global and must allow INFO):
//!
//! ```
//! use tracing_subscriber::prelude::*;
//! # let client = raindrop_core::Client::new(raindrop_core::ClientOptions::default()).unwrap();
//! let subscriber = tracing_subscriber::fmt()
//!     .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
//!     .finish()
//!     .with(raindrop_tracing::RaindropLayer::new(&client));
//! # drop(subscriber);
//! ```
//!
//! # Instrument spawned futures
//!
//! A span is current only where it is entered. `tokio::spawn` starts the
//! future with no current span, so `resume_interaction()` in it finds nothing
//! unless the future is instrumented:
//!
//! ```
//! use tracing::Instrument;
//! # fn spawn<F: std::future::Future + Send + 'static>(_: F) {}
//! // With tokio: tokio::spawn(...)
//! spawn(
//!     async { raindrop_tracing::resume_interaction().set_property("bg", true) }
//!         .in_current_span(),
//! );
//! ```
//!
//! On a thread, enter the span: `let span = Span::current();
//! std::thread::spawn(move || span.in_scope(|| ...))`.
//!
//! # Shutdown
//!
//! An interaction finishes when its span closes, which happens when the last
//! handle to the span is dropped. Finished spans and updates are queued on the
//! client; call [`Client::flush`](raindrop_core::Client::flush) or
//! [`Client::shutdown`](raindrop_core::Client::shutdown) (the facade's guard
//! does it when dropped) **after** the spans have closed, or what they would
//! send is not delivered. Interaction spans still open at shutdown send
//! nothing final.
//!
//! # Limits
//!
//! * One raindrop layer per subscriber (a second one ignores spans the first
//!   already tracks).
//! * The layer keeps its state in the subscriber's span extensions: it
//!   works in any subscriber that implements
//!   [`LookupSpan`](tracing_subscriber::registry::LookupSpan) (what
//!   `Layer::with_subscriber` hands it), not only
//!   [`tracing_subscriber::Registry`].
//! * `raindrop.event_id` can only be given when the span is created.

mod access;
mod diag;
pub mod fields;
mod genai;
mod init;
mod layer;
mod llm_attrs;
#[cfg(feature = "llm-http")]
pub mod llm_http;
#[cfg(feature = "opentelemetry")]
pub mod otel;
#[cfg(feature = "otel-exporter")]
pub mod otel_export;
pub mod propagate;
mod state;
pub mod stream;
mod support;

#[allow(deprecated)]
pub use access::current_interaction;
pub use access::{current_span_context, resume_interaction, RaindropSpanExt};
#[allow(deprecated)]
pub use layer::layer;
pub use layer::{global_layer, layer_for, FilteredRaindropLayer, RaindropFilter, RaindropLayer};

/// Support for the code generated by `raindrop-macros`. Not a public API.
#[doc(hidden)]
pub mod __macro_support {
    pub use crate::support::*;
    pub use tracing;
}
