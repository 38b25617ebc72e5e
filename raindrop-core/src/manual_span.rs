//! Spans made without `tracing`: tool calls with the caller's own timing
//! ([`ToolCall`], the Python SDK's `Interaction.track_tool`) and manual
//! spans started and ended by hand ([`ManualSpan`], its `start_span`).
//!
//! Both build a [`SpanRecord`] and queue it the way the tracing layer does
//! ([`Client::export_span`](crate::Client::export_span)): nothing is sent
//! with tracing turned off, and the content switch, redaction and the
//! before-send hook apply on the worker as to every span.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value;

use crate::interaction::Interaction;
use crate::pipeline::Pipeline;
use crate::span::{AttributeValue, SpanRecord, SpanStatus};
use crate::stats::ItemKind;
use crate::Error;

/// What a span stands for (`traceloop.span.kind`, and the suffix of its
/// name: `<name>.<kind>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpanKind {
    /// `workflow`
    Workflow,
    /// `task`
    Task,
    /// `agent`
    Agent,
    /// `tool`
    Tool,
    /// `llm`
    Llm,
}

impl SpanKind {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            SpanKind::Workflow => "workflow",
            SpanKind::Task => "task",
            SpanKind::Agent => "agent",
            SpanKind::Tool => "tool",
            SpanKind::Llm => "llm",
        }
    }
}

/// The ids that place a span in a trace: a parent for new spans.
///
/// Take it from a [`ManualSpan`] ([`ManualSpan::context`]) or, with the
/// tracing integration, from the current raindrop span
/// (`raindrop::current_span_context()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanContext {
    /// 16-byte trace id.
    pub trace_id: [u8; 16],
    /// 8-byte span id.
    pub span_id: [u8; 8],
}

/// Which event a span belongs to: the four association properties
/// (`traceloop.association.properties.event_id`, `user_id`, `event`,
/// `convo_id`). Given ones only are sent.
///
/// ```
/// use raindrop_core::Association;
/// let a = Association::new().event_id("evt-1").user_id("user-1");
/// assert_eq!(a.event_id.as_deref(), Some("evt-1"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Association {
    /// The event the span is attached to.
    pub event_id: Option<String>,
    /// The user.
    pub user_id: Option<String>,
    /// The event name.
    pub event: Option<String>,
    /// The conversation.
    pub convo_id: Option<String>,
}

impl Association {
    /// No association.
    pub fn new() -> Self {
        Association::default()
    }
    crate::model::setters! {
        text event_id: "Sets the event id.";
        text user_id: "Sets the user id.";
        text event: "Sets the event name.";
        text convo_id: "Sets the conversation id.";
    }
}

impl From<&Interaction> for Association {
    /// The interaction's ids as they are now.
    fn from(i: &Interaction) -> Self {
        Association {
            event_id: i.event_id().map(str::to_owned),
            user_id: i.user_id(),
            event: i.event_name(),
            convo_id: i.convo_id(),
        }
    }
}

/// Serialises like Python's `json.dumps` (`", "` and `": "` separators),
/// the form of the Python SDK's span inputs, outputs and JSON properties.
/// Non-ASCII text stays UTF-8 (Python escapes it; both parse the same).
pub(crate) fn python_json(v: &Value) -> String {
    struct Spaced;
    impl serde_json::ser::Formatter for Spaced {
        fn begin_array_value<W: ?Sized + std::io::Write>(
            &mut self,
            w: &mut W,
            first: bool,
        ) -> std::io::Result<()> {
            if first {
                Ok(())
            } else {
                w.write_all(b", ")
            }
        }
        fn begin_object_key<W: ?Sized + std::io::Write>(
            &mut self,
            w: &mut W,
            first: bool,
        ) -> std::io::Result<()> {
            if first {
                Ok(())
            } else {
                w.write_all(b", ")
            }
        }
        fn begin_object_value<W: ?Sized + std::io::Write>(
            &mut self,
            w: &mut W,
        ) -> std::io::Result<()> {
            w.write_all(b": ")
        }
    }
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, Spaced);
    if v.serialize(&mut ser).is_err() {
        return String::new();
    }
    String::from_utf8(out).unwrap_or_default()
}

/// The association keys a caller's properties cannot override.
const ASSOCIATION_KEYS: [&str; 4] = ["event_id", "user_id", "event", "convo_id"];

/// A caller's property as a span attribute: strings capped, numbers and
/// booleans as they are, anything else as JSON text; `None` for null.
fn property_attribute(v: &Value, max: usize) -> Option<AttributeValue> {
    Some(match v {
        Value::Null => return None,
        Value::String(s) => AttributeValue::String(crate::truncate_text(s, max).into_owned()),
        Value::Bool(b) => AttributeValue::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => AttributeValue::Int(i),
            None => AttributeValue::Double(n.as_f64().unwrap_or_default()),
        },
        other => {
            AttributeValue::String(crate::truncate_text(&python_json(other), max).into_owned())
        }
    })
}

/// The parts of a span's attributes that tool calls and manual spans share,
/// in the Python SDK's order.
struct Attributes {
    attrs: Vec<(Cow<'static, str>, AttributeValue)>,
}

impl Attributes {
    fn new(kind: SpanKind, name: &str, version: Option<u32>) -> Self {
        let mut a = Attributes {
            attrs: Vec::with_capacity(16),
        };
        a.push("traceloop.span.kind", kind.as_str().into());
        a.push("traceloop.entity.name", name.into());
        if let Some(v) = version {
            a.push(
                "traceloop.entity.version",
                AttributeValue::Int(i64::from(v)),
            );
        }
        a
    }

    fn push(&mut self, k: &'static str, v: AttributeValue) {
        self.attrs.push((Cow::Borrowed(k), v));
    }

    fn association(&mut self, a: &Association) {
        let pairs = [
            ("traceloop.association.properties.event_id", &a.event_id),
            ("traceloop.association.properties.user_id", &a.user_id),
            ("traceloop.association.properties.event", &a.event),
            ("traceloop.association.properties.convo_id", &a.convo_id),
        ];
        for (k, v) in pairs {
            if let Some(v) = v {
                self.push(k, v.as_str().into());
            }
        }
    }

    fn properties<'a>(
        &mut self,
        props: impl IntoIterator<Item = (&'a String, &'a Value)>,
        max: usize,
    ) {
        for (k, v) in props {
            if ASSOCIATION_KEYS.contains(&k.as_str()) {
                continue;
            }
            if let Some(value) = property_attribute(v, max) {
                self.attrs.push((
                    Cow::Owned(format!("traceloop.association.properties.{k}")),
                    value,
                ));
            }
        }
    }

    /// What the Rust SDK's tool spans add (wire contract 9.5): the AI SDK
    /// operation and the event id under the metadata key the backend falls
    /// back to.
    fn rust_keys(&mut self, kind: SpanKind, a: &Association) {
        if kind == SpanKind::Tool {
            self.push("ai.operationId", "ai.toolCall".into());
        }
        if let Some(id) = &a.event_id {
            self.push("ai.telemetry.metadata.raindrop.eventId", id.as_str().into());
        }
    }
}

/// A start time in Unix seconds or milliseconds, read as the Python SDK
/// reads a numeric `start_time`: below 1e11 it is seconds (1e11 s is the
/// year 5138), otherwise milliseconds. `None` for a negative, NaN or
/// unrepresentable value.
pub fn unix_to_system_time(t: f64) -> Option<SystemTime> {
    if !t.is_finite() || t < 0.0 {
        return None;
    }
    let secs = if t < 1e11 { t } else { t / 1000.0 };
    let d = Duration::try_from_secs_f64(secs).ok()?;
    UNIX_EPOCH.checked_add(d)
}

/// One tool call with the caller's own timing, recorded as a `<name>.tool`
/// span: the Python SDK's `Interaction.track_tool` (its direct OTLP/JSON
/// path, wire contract 9.4).
///
/// Timing: with a duration and no start, the call ended now; with a start
/// and a duration, it ended at start + duration; with a start only, it
/// ended now; with neither, it is an instant now.
/// `traceloop.entity.duration_ms` (whole milliseconds) is sent only when a
/// duration is given.
///
/// ```
/// use std::time::Duration;
/// use raindrop_core::{Begin, Client, ClientOptions, ToolCall};
/// let client = Client::new(ClientOptions::default()).unwrap();
/// let i = client.begin(Begin::new("user-1", "agent_run").input("weather?")).unwrap();
/// i.track_tool(
///     ToolCall::new("web_search")
///         .input(serde_json::json!({"query": "weather"}))
///         .output(serde_json::json!({"results": ["Sunny"]}))
///         .duration(Duration::from_millis(150))
///         .property("provider", "bing")
///         .version(3),
/// );
/// i.track_tool(ToolCall::new("db_query").input("SELECT 1").start_unix(1_700_000_000.0).error("Connection timeout"));
/// ```
#[derive(Debug, Clone)]
#[must_use = "a ToolCall does nothing until given to track_tool"]
pub struct ToolCall {
    name: String,
    input: Option<Result<Value, String>>,
    output: Option<Result<Value, String>>,
    duration: Option<Duration>,
    start: Option<SystemTime>,
    error: Option<String>,
    properties: Vec<(String, Value)>,
    invalid: Option<String>,
    version: Option<u32>,
    parent: Option<SpanContext>,
}

impl ToolCall {
    /// A call of the tool `name`.
    pub fn new(name: impl Into<String>) -> Self {
        ToolCall {
            name: name.into(),
            input: None,
            output: None,
            duration: None,
            start: None,
            error: None,
            properties: Vec::new(),
            invalid: None,
            version: None,
            parent: None,
        }
    }
    /// What the tool was called with: any `Serialize` value, sent as
    /// `{"args": [input]}`.
    pub fn input(mut self, input: impl Serialize) -> Self {
        self.input = Some(crate::properties::to_value(input));
        self
    }
    /// What the tool returned: any `Serialize` value, sent as JSON (a string
    /// is sent quoted, as the Python SDK does).
    pub fn output(mut self, output: impl Serialize) -> Self {
        self.output = Some(crate::properties::to_value(output));
        self
    }
    /// How long the call took.
    pub fn duration(mut self, d: Duration) -> Self {
        self.duration = Some(d);
        self
    }
    /// How long the call took, in milliseconds (Python's `duration_ms`); a
    /// negative or NaN value is ignored.
    pub fn duration_ms(mut self, ms: f64) -> Self {
        self.duration = Duration::try_from_secs_f64(ms / 1000.0).ok();
        self
    }
    /// When the call started.
    pub fn start_time(mut self, t: SystemTime) -> Self {
        self.start = Some(t);
        self
    }
    /// When the call started, as a Unix time: below 1e11 seconds, otherwise
    /// milliseconds (Python's numeric `start_time`). A negative or NaN
    /// value is ignored.
    pub fn start_unix(mut self, t: f64) -> Self {
        self.start = unix_to_system_time(t);
        self
    }
    /// Marks the call failed (status ERROR with this message).
    pub fn error(mut self, message: impl Into<String>) -> Self {
        self.error = Some(message.into());
        self
    }
    /// Sets one property (`traceloop.association.properties.<key>`): strings
    /// capped, numbers and booleans as they are, other values as JSON text,
    /// nulls left out; `event_id`, `user_id`, `event` and `convo_id` are the
    /// interaction's and cannot be overridden.
    pub fn property(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.properties.push((key.into(), value.into()));
        self
    }
    /// Adds properties from a map or any `Serialize` struct (see
    /// [`property`](Self::property)). Anything but a JSON object makes the
    /// call invalid: it is refused and counted.
    pub fn properties(mut self, properties: impl Serialize) -> Self {
        match crate::properties::to_properties(properties) {
            Ok(map) => self.properties.extend(map),
            Err(e) => self.invalid = Some(e),
        }
        self
    }
    /// The tool's version (`traceloop.entity.version`).
    pub fn version(mut self, version: u32) -> Self {
        self.version = Some(version);
        self
    }
    /// Places the call under `parent` (its trace, as its child); without
    /// it the call starts a trace of its own.
    pub fn parent(mut self, parent: SpanContext) -> Self {
        self.parent = Some(parent);
        self
    }

    /// The span, or why the call is refused.
    fn into_record(self, a: &Association, max: usize) -> Result<SpanRecord, Error> {
        if let Some(e) = self.invalid {
            return Err(Error::invalid("properties", e));
        }
        if self.name.trim().is_empty() {
            return Err(Error::invalid("name", "must not be empty"));
        }
        let text = |field: &str, v: Option<Result<Value, String>>, wrap: bool| match v {
            None => Ok(None),
            Some(Err(e)) => Err(Error::invalid(field, e)),
            Some(Ok(v)) => {
                let v = if wrap {
                    serde_json::json!({ "args": [v] })
                } else {
                    v
                };
                Ok(Some(
                    crate::truncate_text(&python_json(&v), max).into_owned(),
                ))
            }
        };
        let input = text("input", self.input, true)?;
        let output = text("output", self.output, false)?;
        let now = SystemTime::now();
        let (start, end) = match (self.start, self.duration) {
            (Some(s), Some(d)) => (s, s.checked_add(d).unwrap_or(s)),
            (Some(s), None) => (s, now.max(s)),
            (None, Some(d)) => (now.checked_sub(d).unwrap_or(UNIX_EPOCH), now),
            (None, None) => (now, now),
        };
        let mut at = Attributes::new(SpanKind::Tool, &self.name, self.version);
        if let Some(i) = input {
            at.push("traceloop.entity.input", AttributeValue::String(i));
        }
        if let Some(o) = output {
            at.push("traceloop.entity.output", AttributeValue::String(o));
        }
        if let Some(d) = self.duration {
            let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
            at.push("traceloop.entity.duration_ms", AttributeValue::Int(ms));
        }
        at.association(a);
        at.properties(self.properties.iter().map(|(k, v)| (k, v)), max);
        at.rust_keys(SpanKind::Tool, a);
        let (trace_id, parent_span_id) = match self.parent {
            Some(p) => (p.trace_id, Some(p.span_id)),
            None => (SpanRecord::new_trace_id(), None),
        };
        Ok(SpanRecord {
            trace_id,
            span_id: SpanRecord::new_span_id(),
            parent_span_id,
            name: format!("{}.tool", self.name),
            start,
            end,
            status: match self.error {
                Some(e) => SpanStatus::Error(crate::truncate_text(&e, max).into_owned()),
                None => SpanStatus::Ok,
            },
            attributes: at.attrs,
        })
    }
}

/// Records a tool call through `pipeline`: a no-op with tracing off;
/// refusals are counted as invalid spans.
pub(crate) fn track_tool(
    pipeline: &Pipeline,
    association: &Association,
    call: ToolCall,
    link: Vec<(Cow<'static, str>, AttributeValue)>,
) -> Result<(), Error> {
    if !pipeline.tracing_enabled() {
        return Ok(());
    }
    let max = pipeline.options.max_text_field_chars;
    let mut record = call
        .into_record(association, max)
        .map_err(|e| pipeline.reject(ItemKind::Span, e))?;
    record.attributes.extend(link);
    pipeline.export_span(record);
    Ok(())
}

/// Where a manual span takes its association from.
enum Link {
    /// Read from the interaction when the span ends, so ids set later land.
    Interaction(Interaction),
    Fixed(Association),
}

struct Open {
    pipeline: Arc<Pipeline>,
    kind: SpanKind,
    name: String,
    link: Link,
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent_span_id: Option<[u8; 8]>,
    start: SystemTime,
    started: Instant,
    version: Option<u32>,
    input: Option<String>,
    output: Option<String>,
    properties: Vec<(String, Value)>,
}

/// A span started and ended by hand, for code that cannot use `tracing`
/// spans (callbacks, state machines, work handed between threads): the
/// Python SDK's `start_span` / `Interaction.start_span`.
///
/// Exported as `<name>.<kind>` when it ends: with [`end`](Self::end)
/// (`end(None)` OK, `end(Some(message))` ERROR), or when dropped without
/// `end`: then it is sent as failed with the message `cancelled`
/// (`panicked` while the thread panics), so a span abandoned by a `?` or a
/// cancelled future is visible instead of lost.
///
/// Children started with [`start_child`](Self::start_child) share its
/// trace and association; [`context`](Self::context) hands its ids to a
/// [`ToolCall`] or to another span.
///
/// ```
/// use raindrop_core::{Begin, Client, ClientOptions, SpanKind};
/// let client = Client::new(ClientOptions::default()).unwrap();
/// let i = client.begin(Begin::new("user-1", "agent_run").input("go")).unwrap();
/// let mut fetch = i.start_span(SpanKind::Tool, "async_fetch");
/// fetch.set_input("https://example.com");
/// fetch.set_property("retries", 0);
/// let mut parse = fetch.start_child(SpanKind::Task, "parse");
/// parse.set_output(serde_json::json!({"status": 200}));
/// parse.end(None);
/// fetch.end(Some("timed out"));
/// ```
#[must_use = "a manual span ends (and is sent) when dropped; keep it for the work it measures"]
pub struct ManualSpan {
    open: Option<Box<Open>>,
}

impl fmt::Debug for ManualSpan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.open {
            Some(o) => f
                .debug_struct("ManualSpan")
                .field("kind", &o.kind)
                .field("name", &o.name)
                .finish_non_exhaustive(),
            None => f.write_str("ManualSpan(ended)"),
        }
    }
}

impl ManualSpan {
    pub(crate) fn start(
        pipeline: Arc<Pipeline>,
        kind: SpanKind,
        name: String,
        link: Option<Interaction>,
        association: Association,
    ) -> ManualSpan {
        let link = match link {
            Some(i) => Link::Interaction(i),
            None => Link::Fixed(association),
        };
        ManualSpan {
            open: Some(Box::new(Open {
                pipeline,
                kind,
                name,
                link,
                trace_id: SpanRecord::new_trace_id(),
                span_id: SpanRecord::new_span_id(),
                parent_span_id: None,
                start: SystemTime::now(),
                started: Instant::now(),
                version: None,
                input: None,
                output: None,
                properties: Vec::new(),
            })),
        }
    }

    /// A span that records nothing (what a no-op interaction starts).
    pub fn noop() -> ManualSpan {
        ManualSpan { open: None }
    }

    /// Places the span under `parent`: its trace, as its child.
    pub fn with_parent(mut self, parent: SpanContext) -> Self {
        if let Some(o) = self.open.as_deref_mut() {
            o.trace_id = parent.trace_id;
            o.parent_span_id = Some(parent.span_id);
        }
        self
    }

    /// This span's ids, as a parent for others; `None` for a no-op span.
    pub fn context(&self) -> Option<SpanContext> {
        self.open.as_deref().map(|o| SpanContext {
            trace_id: o.trace_id,
            span_id: o.span_id,
        })
    }

    /// A span under this one: same trace, same association.
    pub fn start_child(&self, kind: SpanKind, name: impl Into<String>) -> ManualSpan {
        let Some(o) = self.open.as_deref() else {
            return ManualSpan::noop();
        };
        let (link, association) = match &o.link {
            Link::Interaction(i) => (Some(i.clone()), Association::default()),
            Link::Fixed(a) => (None, a.clone()),
        };
        let child = ManualSpan::start(o.pipeline.clone(), kind, name.into(), link, association);
        child.with_parent(SpanContext {
            trace_id: o.trace_id,
            span_id: o.span_id,
        })
    }

    fn max(&self) -> usize {
        self.open
            .as_deref()
            .map_or(0, |o| o.pipeline.options.max_text_field_chars)
    }

    /// Sets the input (any `Serialize` value, sent as `{"args": [input]}`).
    /// A value that cannot be serialised is left out and logged.
    pub fn set_input(&mut self, input: impl Serialize) {
        let max = self.max();
        let Some(o) = self.open.as_deref_mut() else {
            return;
        };
        match crate::properties::to_value(input) {
            Ok(v) => {
                let text = python_json(&serde_json::json!({ "args": [v] }));
                o.input = Some(crate::truncate_text(&text, max).into_owned());
            }
            Err(e) => {
                tracing::warn!(target: "raindrop", span = %o.name, "span input left out: {e}")
            }
        }
    }

    /// Sets the output (any `Serialize` value, sent as JSON).
    pub fn set_output(&mut self, output: impl Serialize) {
        let max = self.max();
        let Some(o) = self.open.as_deref_mut() else {
            return;
        };
        match crate::properties::to_value(output) {
            Ok(v) => o.output = Some(crate::truncate_text(&python_json(&v), max).into_owned()),
            Err(e) => {
                tracing::warn!(target: "raindrop", span = %o.name, "span output left out: {e}")
            }
        }
    }

    /// Sets one property (`traceloop.association.properties.<key>`; see
    /// [`ToolCall::property`] for how values are sent).
    pub fn set_property(&mut self, key: impl Into<String>, value: impl Into<Value>) {
        if let Some(o) = self.open.as_deref_mut() {
            o.properties.push((key.into(), value.into()));
        }
    }

    /// Adds properties from a map or any `Serialize` struct; anything but a
    /// JSON object is left out and logged.
    pub fn set_properties(&mut self, properties: impl Serialize) {
        let Some(o) = self.open.as_deref_mut() else {
            return;
        };
        match crate::properties::to_properties(properties) {
            Ok(map) => o.properties.extend(map),
            Err(e) => {
                tracing::warn!(target: "raindrop", span = %o.name, "span properties left out: {e}")
            }
        }
    }

    /// Sets the entity version (`traceloop.entity.version`).
    pub fn set_version(&mut self, version: u32) {
        if let Some(o) = self.open.as_deref_mut() {
            o.version = Some(version);
        }
    }

    /// Ends the span now: OK with `None`, failed with `Some(message)`.
    pub fn end(mut self, error: Option<&str>) {
        self.finish(error.map(str::to_owned));
    }

    fn finish(&mut self, error: Option<String>) {
        let Some(o) = self.open.take() else {
            return;
        };
        let max = o.pipeline.options.max_text_field_chars;
        let (association, mut link) = match &o.link {
            Link::Interaction(i) => (Association::from(i), i.subagent_attributes()),
            Link::Fixed(a) => (a.clone(), Vec::new()),
        };
        // A model span carries the tools its interaction's calls are offered.
        if let (SpanKind::Llm, Link::Interaction(i)) = (o.kind, &o.link) {
            if let Some(tools) = i.prompt_tools() {
                link.push((
                    "ai.prompt.tools".into(),
                    AttributeValue::StringArray(tools.as_ref().clone()),
                ));
                link.push(("ai.prompt.tools.source".into(), "interaction".into()));
            }
        }
        let mut at = Attributes::new(o.kind, &o.name, o.version);
        let Open {
            pipeline,
            kind,
            name,
            trace_id,
            span_id,
            parent_span_id,
            start,
            started,
            input,
            output,
            properties,
            ..
        } = *o;
        if let Some(i) = input {
            at.push("traceloop.entity.input", AttributeValue::String(i));
        }
        if let Some(out) = output {
            at.push("traceloop.entity.output", AttributeValue::String(out));
        }
        let ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        at.push("traceloop.entity.duration_ms", AttributeValue::Int(ms));
        at.association(&association);
        at.properties(properties.iter().map(|(k, v)| (k, v)), max);
        at.rust_keys(kind, &association);
        at.attrs.extend(link);
        let end = start
            .checked_add(started.elapsed())
            .unwrap_or_else(SystemTime::now);
        pipeline.export_span(SpanRecord {
            trace_id,
            span_id,
            parent_span_id,
            name: format!("{name}.{}", kind.as_str()),
            start,
            end,
            status: match error {
                Some(e) => SpanStatus::Error(crate::truncate_text(&e, max).into_owned()),
                None => SpanStatus::Ok,
            },
            attributes: at.attrs,
        });
    }
}

impl Drop for ManualSpan {
    fn drop(&mut self) {
        if self.open.is_some() {
            let why = if std::thread::panicking() {
                "panicked"
            } else {
                "cancelled"
            };
            self.finish(Some(why.to_owned()));
        }
    }
}

/// The manual spans of an interaction: defined here so the interaction
/// needs nothing of this module, which reads the interaction's ids.
impl Interaction {
    /// Records a tool call with the caller's own timing as a `<name>.tool`
    /// span linked to this interaction (the Python SDK's
    /// `Interaction.track_tool`); see [`ToolCall`]. Works
    /// after `finish` too (a tool span may arrive late). A no-op with
    /// tracing off or on a no-op handle; an invalid call (properties that
    /// are not an object, an empty name) is counted and logged.
    pub fn track_tool(&self, call: ToolCall) {
        let Some(pipeline) = self.pipeline() else {
            return;
        };
        let association = Association::from(self);
        let _ = track_tool(pipeline, &association, call, self.subagent_attributes());
    }

    /// Starts a span by hand, linked to this interaction (its ids are read
    /// when the span ends); see [`ManualSpan`]. A no-op
    /// handle starts a span that records nothing.
    pub fn start_span(&self, kind: SpanKind, name: impl Into<String>) -> ManualSpan {
        match self.pipeline() {
            Some(pipeline) => ManualSpan::start(
                pipeline.clone(),
                kind,
                name.into(),
                Some(self.clone()),
                Association::default(),
            ),
            None => ManualSpan::noop(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_json_spacing() {
        let v = serde_json::json!({"args": [{"query": "weather"}], "n": [1, 2]});
        assert_eq!(
            python_json(&v),
            r#"{"args": [{"query": "weather"}], "n": [1, 2]}"#
        );
        assert_eq!(python_json(&Value::String("x".into())), r#""x""#);
    }

    #[test]
    fn numeric_start_below_1e11_is_seconds() {
        let s = unix_to_system_time(1_700_000_000.5).unwrap();
        assert_eq!(
            s.duration_since(UNIX_EPOCH).unwrap().as_millis(),
            1_700_000_000_500
        );
        let ms = unix_to_system_time(1_700_000_000_500.0).unwrap();
        assert_eq!(ms, s);
        assert_eq!(unix_to_system_time(f64::NAN), None);
        assert_eq!(unix_to_system_time(-1.0), None);
        assert_eq!(unix_to_system_time(f64::MAX), None);
    }
}
