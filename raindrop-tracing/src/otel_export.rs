//! Raindrop as an OpenTelemetry span exporter (feature `otel-exporter`).
//!
//! [`RaindropExporter`] is a [`SpanExporter`] for `opentelemetry_sdk` 0.33:
//! add it to the tracer provider beside your other exporters (an OTLP
//! exporter to your Collector, ...) and the spans that belong to a Raindrop
//! interaction also go to Raindrop's `traces` route, in the shape the
//! tracing layer's spans have. It serves code instrumented with
//! OpenTelemetry directly and pipelines of `tracing` →
//! `tracing-opentelemetry` → the OpenTelemetry SDK alike.
//!
//! * **Which spans are sent.** A span is sent when it names its interaction
//!   by an attribute: `raindrop.event_id`,
//!   `traceloop.association.properties.event_id` (what Traceloop-instrumented
//!   code writes) or `ai.telemetry.metadata.raindrop.eventId`. Link every
//!   span started inside an interaction at once with [`link_context`] and
//!   the [`LinkProcessor`]; or one span with [`link_attributes`], or a
//!   `raindrop.event_id` field of a `tracing` span. Every other span is not
//!   sent (the backend would keep it linked to nothing) and counted in
//!   [`ExporterStats::unlinked`]. Spans with a `raindrop.kind` attribute are
//!   the raindrop layer's own `tracing` spans seen through
//!   `tracing-opentelemetry`: the layer sends those, so the exporter skips
//!   them ([`ExporterStats::layer_spans`]).
//! * **GenAI spans.** A span with GenAI-convention attributes
//!   (`gen_ai.operation.name`, `gen_ai.request.model`, ...) keeps them and
//!   gains what Raindrop reads, as the layer writes it: `traceloop.span.kind`,
//!   `ai.operationId`, `ai.model.id`, `gen_ai.response.model`, the prompt as
//!   `ai.prompt.messages`, the answer as `ai.response.text`, token usage under
//!   the normalised `gen_ai.usage.*` names. The repository's
//!   `docs/opentelemetry.md` lists them all.
//! * **The interaction is filled** from its chat-like model calls where
//!   nothing was set by hand, as the layer does for `tracing` spans: the
//!   model of the last call, the input (the last user text of the first
//!   call), the output (the assistant text of the last call that had some),
//!   and the properties `input_tokens`, `output_tokens`, `total_tokens`,
//!   `reasoning_tokens`, `cache_read_input_tokens` (summed) and
//!   `llm_calls`. Only an interaction begun in this process and still open
//!   when the span is exported is filled; a call exported after its
//!   interaction finished (or for one begun by another process) is sent as
//!   a span and counted in [`ExporterStats::unfilled_calls`].
//!
//! `export` only converts and queues on the client (the client's worker
//! batches and sends), so it suits a simple span processor: spans then reach
//! Raindrop as they end, before the interaction finishes. `shutdown` flushes
//! the client within the deadline the processor gives it, `force_flush`
//! within [`RaindropExporter::flush_timeout`]; neither shuts the client down
//! (it may serve other code). `opentelemetry_sdk` 0.33's processors do not
//! pass a provider's `force_flush` on to exporters: use
//! [`Client::flush`](raindrop_core::Client::flush) for that.
//!
//! ```
//! use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
//! use opentelemetry::KeyValue;
//! use opentelemetry_sdk::trace::SdkTracerProvider;
//! use raindrop_core::{Begin, Client, ClientOptions};
//! use raindrop_tracing::otel_export::{link_attributes, RaindropExporter};
//!
//! let client = Client::new(ClientOptions::default())?; // no write key: sends nothing
//! let exporter = RaindropExporter::new(&client);
//! let provider = SdkTracerProvider::builder()
//!     .with_simple_exporter(exporter.clone())
//!     // .with_batch_exporter(your_otlp_exporter)
//!     .build();
//! let tracer = provider.tracer("my-agent");
//!
//! let chat = client.begin(Begin::new("user-1", "chat").input("2+2?"))?;
//! let mut span = tracer.start("chat gpt-4o");
//! span.set_attributes(link_attributes(&chat));
//! span.set_attribute(KeyValue::new("gen_ai.operation.name", "chat"));
//! span.set_attribute(KeyValue::new("gen_ai.request.model", "gpt-4o"));
//! span.end();
//! tracer.start("GET /health").end(); // not linked: not sent to Raindrop
//! chat.finish("4");
//!
//! provider.shutdown()?; // flushes Raindrop too
//! assert_eq!(exporter.stats().unlinked, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use opentelemetry::trace::{SpanId, Status};
use opentelemetry::{Array, Context, KeyValue, Value as OtelValue};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter, SpanProcessor};
use raindrop_core::{truncate_text, AttributeValue, Client, Interaction, SpanRecord, SpanStatus};

use crate::genai::{self, Calls};

/// OpenTelemetry spans read by the layer's GenAI mapping.
mod adapter;

/// The span attributes that link a span to its interaction's event id, in
/// the order they are read: the short one, Traceloop's association
/// property (what the backend links by), and the one Raindrop's AI SDK
/// integrations write.
pub const EVENT_ID_ATTRIBUTES: [&str; 3] = [
    "raindrop.event_id",
    "traceloop.association.properties.event_id",
    "ai.telemetry.metadata.raindrop.eventId",
];

/// How long [`force_flush`](SpanExporter::force_flush), which has no deadline
/// of its own, waits for the client by default.
const DEFAULT_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Interactions whose model calls are summed at once; past this, the oldest
/// is forgotten (its later calls start a new sum).
const MAX_INTERACTIONS: usize = 10_000;

type Attr = (Cow<'static, str>, AttributeValue);

/// The attributes that link an OpenTelemetry span to `interaction`: its
/// event id (under the two keys the backend reads), user id, conversation id
/// and event name, as Traceloop association properties. Empty for a no-op
/// handle.
///
/// ```
/// let client = raindrop_core::Client::new(raindrop_core::ClientOptions::default()).unwrap();
/// let chat = client.begin(raindrop_core::Begin::new("user-1", "chat")).unwrap();
/// let attrs = raindrop_tracing::otel_export::link_attributes(&chat);
/// assert_eq!(attrs[0].key.as_str(), "traceloop.association.properties.event_id");
/// ```
pub fn link_attributes(interaction: &Interaction) -> Vec<KeyValue> {
    let Some(id) = interaction.event_id() else {
        return Vec::new();
    };
    let mut attrs = vec![
        KeyValue::new("traceloop.association.properties.event_id", id.to_owned()),
        KeyValue::new("ai.telemetry.metadata.raindrop.eventId", id.to_owned()),
    ];
    if let Some(u) = interaction.user_id() {
        attrs.push(KeyValue::new("traceloop.association.properties.user_id", u));
    }
    if let Some(c) = interaction.convo_id() {
        attrs.push(KeyValue::new(
            "traceloop.association.properties.convo_id",
            c,
        ));
    }
    if let Some(e) = interaction.event_name() {
        attrs.push(KeyValue::new("traceloop.association.properties.event", e));
    }
    attrs
}

/// A copy of `cx` that links the spans started in it (and in contexts made
/// from it: children, `tracing-opentelemetry` spans created under it) to
/// `interaction`, for [`LinkProcessor`] to stamp. Attach it around the work
/// of the interaction: `let _g = link_context(&Context::current(), &chat).attach();`.
///
/// The link is a value of this process's context, never baggage: no
/// propagator sends it, and no caller of another service can set it (a
/// remote caller naming an event id could otherwise fill a live
/// interaction of this process). A no-op handle gives `cx` unchanged.
///
/// ```
/// use opentelemetry::Context;
/// # let client = raindrop_core::Client::new(raindrop_core::ClientOptions::default()).unwrap();
/// let chat = client.begin(raindrop_core::Begin::new("user-1", "chat")).unwrap();
/// let _attached = raindrop_tracing::otel_export::link_context(&Context::current(), &chat).attach();
/// // Spans started here carry `raindrop.event_id` (with the LinkProcessor).
/// ```
pub fn link_context(cx: &Context, interaction: &Interaction) -> Context {
    match interaction.event_id() {
        Some(id) => cx.with_value(ContextLink(id.into())),
        None => cx.clone(),
    }
}

/// The event id [`link_context`] puts in an OpenTelemetry context.
#[derive(Debug, Clone)]
struct ContextLink(Arc<str>);

/// A span processor that stamps `raindrop.event_id` on every span started
/// in a context from [`link_context`], so that the spans of an interaction
/// (its children, the spans a library creates inside it) are linked without
/// attributes set by hand. Add it to the tracer provider with
/// `with_span_processor(LinkProcessor)`, in any position. It only reads the
/// parent context when a span starts; it exports nothing.
///
/// ```
/// use opentelemetry_sdk::trace::SdkTracerProvider;
/// use raindrop_tracing::otel_export::{LinkProcessor, RaindropExporter};
/// # let client = raindrop_core::Client::new(raindrop_core::ClientOptions::default()).unwrap();
/// let provider = SdkTracerProvider::builder()
///     .with_span_processor(LinkProcessor)
///     .with_simple_exporter(RaindropExporter::new(&client))
///     .build();
/// # drop(provider);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct LinkProcessor;

impl SpanProcessor for LinkProcessor {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &Context) {
        use opentelemetry::trace::Span as _;
        if let Some(ContextLink(id)) = cx.get::<ContextLink>() {
            span.set_attribute(KeyValue::new("raindrop.event_id", id.to_string()));
        }
    }

    fn on_end(&self, _span: SpanData) {}

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// What a [`RaindropExporter`] did with the spans it was given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExporterStats {
    /// Spans handed to the client for the `traces` route (its own
    /// `stats()` counts what happened to them after).
    pub sent: u64,
    /// Spans not sent: no interaction link (see [`EVENT_ID_ATTRIBUTES`]).
    pub unlinked: u64,
    /// Spans not sent: the raindrop layer's own spans (a `raindrop.kind`
    /// attribute), which the layer sends itself.
    pub layer_spans: u64,
    /// Model calls sent as spans that could not fill their interaction:
    /// it was not open in this process when the span was exported (it had
    /// finished, or it was begun by another process).
    pub unfilled_calls: u64,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    unlinked: AtomicU64,
    layer_spans: AtomicU64,
    unfilled_calls: AtomicU64,
}

/// Sends the spans of Raindrop interactions from an `opentelemetry_sdk`
/// tracer provider to Raindrop, and fills the interactions from their model
/// calls. See the [module docs](self). Clones share their counters.
#[derive(Clone)]
pub struct RaindropExporter {
    shared: Arc<Shared>,
}

struct Shared {
    client: Client,
    flush_timeout: Duration,
    counters: Counters,
    calls: Mutex<CallLog>,
    said_unlinked: Once,
}

impl fmt::Debug for RaindropExporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RaindropExporter")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl RaindropExporter {
    /// An exporter that queues spans on `client`.
    pub fn new(client: &Client) -> Self {
        RaindropExporter::build(client.clone(), DEFAULT_FLUSH_TIMEOUT)
    }

    fn build(client: Client, flush_timeout: Duration) -> Self {
        RaindropExporter {
            shared: Arc::new(Shared {
                client,
                flush_timeout,
                counters: Counters::default(),
                calls: Mutex::new(CallLog::default()),
                said_unlinked: Once::new(),
            }),
        }
    }

    /// How long `force_flush` waits for the client (default 5 s);
    /// `shutdown` uses the provider's deadline. A new exporter: set it
    /// before cloning (counters are per exporter and its clones).
    ///
    /// ```
    /// # let client = raindrop_core::Client::new(raindrop_core::ClientOptions::default()).unwrap();
    /// use std::time::Duration;
    /// let exporter = raindrop_tracing::otel_export::RaindropExporter::new(&client)
    ///     .flush_timeout(Duration::from_secs(2));
    /// ```
    pub fn flush_timeout(self, timeout: Duration) -> Self {
        RaindropExporter::build(self.shared.client.clone(), timeout)
    }

    /// What this exporter (and its clones) did so far.
    pub fn stats(&self) -> ExporterStats {
        let c = &self.shared.counters;
        ExporterStats {
            sent: c.sent.load(Ordering::Relaxed),
            unlinked: c.unlinked.load(Ordering::Relaxed),
            layer_spans: c.layer_spans.load(Ordering::Relaxed),
            unfilled_calls: c.unfilled_calls.load(Ordering::Relaxed),
        }
    }

    /// Converts and queues one batch; never waits on the network.
    fn hand_over(&self, batch: Vec<SpanData>) {
        for span in batch {
            self.hand_over_one(span);
        }
    }

    fn hand_over_one(&self, span: SpanData) {
        let s = &*self.shared;
        if has_key(&span.attributes, "raindrop.kind") {
            s.counters.layer_spans.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let Some(event_id) = event_id_of(&span.attributes) else {
            s.counters.unlinked.fetch_add(1, Ordering::Relaxed);
            s.said_unlinked.call_once(|| {
                tracing::debug!(target: "raindrop", span = %span.name,
                    "an OpenTelemetry span with no raindrop.event_id is not sent to Raindrop (counted in RaindropExporter::stats().unlinked)");
            });
            return;
        };
        let interaction = s.client.resume_interaction_by_id(&event_id);
        let max = s.client.options().max_text_field_chars;
        let call = adapter::Call::read(&span.attributes);
        if let Some(call) = call.as_ref().filter(|c| c.is_chat()) {
            self.fill(&interaction, call);
        }
        let record = to_record(span, &event_id, &interaction, call, max);
        // `export_span` validates and queues; it never blocks.
        let _ = s.client.export_span(record);
        s.counters.sent.fetch_add(1, Ordering::Relaxed);
    }

    /// Fills a live, open interaction from one model call (the layer's rule:
    /// what the user set by hand wins, see `raindrop_core::__private::fill_unset`).
    fn fill(&self, interaction: &Interaction, call: &adapter::Call) {
        // Open in this process: a handle resumed by id for an event that
        // finished, or was begun elsewhere, knows nothing of what was set
        // by hand, and would override it.
        let open = interaction.event_name().is_some() && !interaction.is_finished();
        let Some(event_id) = interaction.event_id().filter(|_| open) else {
            self.shared
                .counters
                .unfilled_calls
                .fetch_add(1, Ordering::Relaxed);
            return;
        };
        let mut log = self.shared.calls.lock().unwrap_or_else(|e| e.into_inner());
        let calls = log.calls_of(event_id);
        call.record(calls);
        genai::fill_interaction_so_far(calls, interaction);
    }
}

impl SpanExporter for RaindropExporter {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        self.hand_over(batch);
        std::future::ready(Ok(()))
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        flush(&self.shared.client, timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        flush(&self.shared.client, self.shared.flush_timeout)
    }
}

/// Delivers what the client holds within `timeout` (the client keeps
/// running: other code may use it).
fn flush(client: &Client, timeout: Duration) -> OTelSdkResult {
    if client.flush(timeout) {
        Ok(())
    } else {
        Err(OTelSdkError::Timeout(timeout))
    }
}

fn has_key(attrs: &[KeyValue], key: &str) -> bool {
    attrs.iter().any(|kv| kv.key.as_str() == key)
}

fn event_id_of(attrs: &[KeyValue]) -> Option<String> {
    EVENT_ID_ATTRIBUTES.iter().find_map(|name| {
        attrs
            .iter()
            .find(|kv| kv.key.as_str() == *name)
            .map(|kv| kv.value.as_str().trim().to_owned())
            .filter(|id| !id.is_empty())
    })
}

/// The span as the `traces` route takes it: its own attributes, then what
/// Raindrop reads that it lacks (the link, the GenAI mapping).
fn to_record(
    span: SpanData,
    event_id: &str,
    interaction: &Interaction,
    call: Option<adapter::Call>,
    max: usize,
) -> SpanRecord {
    let mut attrs: Vec<Attr> = span
        .attributes
        .iter()
        .map(|kv| {
            (
                Cow::Owned(kv.key.as_str().to_owned()),
                value_of(&kv.value, max),
            )
        })
        .collect();
    let mut added: Vec<Attr> = Vec::new();
    if let Some(call) = call {
        added.extend(call.attributes(max));
    }
    added.push((
        "traceloop.association.properties.event_id".into(),
        event_id.into(),
    ));
    added.push((
        "ai.telemetry.metadata.raindrop.eventId".into(),
        event_id.into(),
    ));
    for (key, value) in [
        (
            "traceloop.association.properties.user_id",
            interaction.user_id(),
        ),
        (
            "traceloop.association.properties.convo_id",
            interaction.convo_id(),
        ),
        (
            "traceloop.association.properties.event",
            interaction.event_name(),
        ),
        ("traceloop.workflow.name", interaction.event_name()),
    ] {
        if let Some(v) = value {
            added.push((key.into(), v.into()));
        }
    }
    for (k, v) in added {
        if !attrs.iter().any(|(have, _)| *have == k) {
            attrs.push((k, v));
        }
    }
    let parent = span.parent_span_id;
    SpanRecord {
        trace_id: span.span_context.trace_id().to_bytes(),
        span_id: span.span_context.span_id().to_bytes(),
        parent_span_id: (parent != SpanId::INVALID).then(|| parent.to_bytes()),
        name: span.name.into_owned(),
        start: span.start_time,
        end: span.end_time,
        status: match span.status {
            Status::Error { description } => SpanStatus::Error(description.into_owned()),
            _ => SpanStatus::Ok,
        },
        attributes: attrs,
    }
}

/// An OpenTelemetry attribute value in the OTLP/JSON form Raindrop sends;
/// text capped at the client's `max_text_field_chars`.
fn value_of(v: &OtelValue, max: usize) -> AttributeValue {
    match v {
        OtelValue::Bool(b) => AttributeValue::Bool(*b),
        OtelValue::I64(i) => AttributeValue::Int(*i),
        OtelValue::F64(f) => AttributeValue::Double(*f),
        OtelValue::String(s) => AttributeValue::String(truncate_text(s.as_str(), max).into_owned()),
        OtelValue::Array(Array::String(items)) => AttributeValue::StringArray(
            items
                .iter()
                .map(|s| truncate_text(s.as_str(), max).into_owned())
                .collect(),
        ),
        other => AttributeValue::String(truncate_text(&other.as_str(), max).into_owned()),
    }
}

/// The model calls of the interactions seen, summed per event id.
#[derive(Default)]
struct CallLog {
    by_event: HashMap<String, Calls>,
    order: VecDeque<String>,
}

impl CallLog {
    /// The calls of an interaction so far (its texts are dropped once they
    /// filled it, so an entry stays small until it is evicted).
    fn calls_of(&mut self, event_id: &str) -> &Calls {
        if !self.by_event.contains_key(event_id) {
            if self.order.len() >= MAX_INTERACTIONS {
                if let Some(old) = self.order.pop_front() {
                    self.by_event.remove(&old);
                }
            }
            self.order.push_back(event_id.to_owned());
        }
        self.by_event.entry(event_id.to_owned()).or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::adapter::Call;
    use super::*;

    fn attrs(pairs: &[(&'static str, &'static str)]) -> Vec<KeyValue> {
        pairs.iter().map(|(k, v)| KeyValue::new(*k, *v)).collect()
    }

    fn find<'a>(a: &'a [Attr], key: &str) -> Option<&'a AttributeValue> {
        a.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    #[test]
    fn traceloop_indexed_prompts_and_old_usage_names_are_read() {
        let mut a = attrs(&[
            ("llm.request.type", "chat"),
            ("gen_ai.request.model", "gpt-4o-mini"),
            ("gen_ai.prompt.1.role", "user"),
            ("gen_ai.prompt.1.content", "second"),
            ("gen_ai.prompt.0.role", "system"),
            ("gen_ai.prompt.0.content", "be brief"),
            ("gen_ai.completion.0.content", "ok"),
        ]);
        a.push(KeyValue::new("gen_ai.usage.prompt_tokens", 7_i64));
        a.push(KeyValue::new("gen_ai.usage.completion_tokens", "3"));
        let call = Call::read(&a).expect("a model call");
        assert!(call.is_chat());
        let out = call.attributes(1000);
        assert_eq!(
            find(&out, "ai.response.text"),
            Some(&AttributeValue::String("ok".into()))
        );
        assert_eq!(
            find(&out, "gen_ai.usage.input_tokens"),
            Some(&AttributeValue::Int(7))
        );
        assert_eq!(
            find(&out, "gen_ai.usage.output_tokens"),
            Some(&AttributeValue::Int(3))
        );
        // System first, as the layer writes the prompt.
        let Some(AttributeValue::String(m)) = find(&out, "ai.prompt.messages") else {
            panic!("no prompt messages");
        };
        // (Parsed: key order depends on serde_json's `preserve_order`.)
        let m: serde_json::Value = serde_json::from_str(m).unwrap();
        assert_eq!(
            m[0],
            serde_json::json!({"role": "system", "content": "be brief"})
        );
        assert_eq!(
            m[1],
            serde_json::json!({"role": "user", "content": "second"})
        );
    }

    #[test]
    fn tools_and_plain_spans_are_told_apart() {
        let tool = Call::read(&attrs(&[
            ("gen_ai.operation.name", "execute_tool"),
            ("gen_ai.tool.name", "search"),
            ("gen_ai.tool.call.arguments", r#"{"q":"x"}"#),
        ]))
        .expect("a GenAI span");
        assert!(!tool.is_chat());
        let out = tool.attributes(1000);
        assert_eq!(
            find(&out, "traceloop.entity.name"),
            Some(&AttributeValue::String("search".into()))
        );
        assert_eq!(
            find(&out, "traceloop.span.kind"),
            Some(&AttributeValue::String("tool".into()))
        );
        assert_eq!(
            find(&out, "traceloop.entity.input"),
            Some(&AttributeValue::String(r#"{"q":"x"}"#.into()))
        );
        assert!(Call::read(&attrs(&[("http.method", "GET")])).is_none());
        let embed = Call::read(&attrs(&[
            ("gen_ai.operation.name", "embeddings"),
            ("gen_ai.request.model", "e-3"),
        ]))
        .expect("a GenAI span");
        assert!(!embed.is_chat(), "embeddings do not fill the interaction");
    }

    #[test]
    fn the_first_event_id_attribute_that_is_not_blank_links() {
        let a = attrs(&[
            ("raindrop.event_id", "  "),
            ("traceloop.association.properties.event_id", "e-1"),
        ]);
        assert_eq!(event_id_of(&a).as_deref(), Some("e-1"));
        assert_eq!(event_id_of(&attrs(&[("x", "y")])), None);
    }
}
