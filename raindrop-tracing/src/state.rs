//! What the layer keeps for a span, and the one way it goes: `open` (begin
//! an interaction, join one, or be a child of one), `apply` (fields recorded
//! later), `finish` (the exported record).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use raindrop_core::{
    truncate_text, AttributeValue, Begin, Client, Finish, Interaction, SpanRecord, SpanStatus,
};
use serde_json::Value;

use crate::diag;
use crate::fields::{Fields, Kind};
use crate::genai::{self, GenAi};

/// What the layer keeps in the extensions of a span it knows.
// The extensions box each entry already: boxing the large variant again
// would cost every span a second allocation.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Entry {
    /// A span being recorded.
    Open(SpanState),
    /// A span whose record was sent (the macro's function returned) while
    /// the span itself lives on (a clone in an instrumented `tokio::spawn`
    /// outliving the handler): children created later still join its trace
    /// and interaction, and `resume_interaction()` finds it.
    Ended(Lineage),
    /// A caller's context (another service, or a sub-agent's launcher): no
    /// span of this process, but raindrop spans created inside it join its
    /// trace and interaction.
    Remote(Lineage),
}

impl Entry {
    /// Where a child of this span belongs.
    pub(crate) fn lineage(&self) -> &Lineage {
        match self {
            Entry::Open(s) => &s.lineage,
            Entry::Ended(l) | Entry::Remote(l) => l,
        }
    }

    /// The open state, if the span is being recorded.
    pub(crate) fn open_mut(&mut self) -> Option<&mut SpanState> {
        match self {
            Entry::Open(s) => Some(s),
            _ => None,
        }
    }
}

/// The trace position and interaction of a span: what its children inherit.
#[derive(Clone)]
pub(crate) struct Lineage {
    pub(crate) trace_id: [u8; 16],
    pub(crate) span_id: [u8; 8],
    pub(crate) link: Option<Link>,
}

/// The interaction a span belongs to.
#[derive(Clone)]
pub(crate) struct Link {
    pub(crate) interaction: Interaction,
    pub(crate) workflow: Arc<str>,
    /// The interaction was begun by another service (continued from a
    /// request's headers): spans here join it and never finish it.
    pub(crate) remote: bool,
    /// The interaction's model calls, to fill it when it ends.
    pub(crate) calls: Arc<genai::Calls>,
    /// The interaction is a detached sub-agent's run: its spans carry the
    /// link to the launcher (`raindrop.handoff.*`).
    pub(crate) subagent: Option<Arc<raindrop_core::handoff::SubagentLink>>,
}

impl Link {
    /// A link to an interaction whose spans start here.
    pub(crate) fn new(interaction: Interaction, workflow: &str) -> Link {
        Link {
            interaction,
            workflow: workflow.into(),
            remote: false,
            calls: genai::Calls::new(),
            subagent: None,
        }
    }
}

/// The fields of an interaction, as recorded on its span: the one mapping
/// from span fields to an interaction, for its begin, a join and later records.
#[derive(Default)]
struct InteractionFields {
    user_id: Option<String>,
    convo_id: Option<String>,
    event: Option<String>,
    event_id: Option<String>,
    model: Option<String>,
    input: Option<String>,
    properties: Vec<(String, Value)>,
}

impl InteractionFields {
    /// Takes the interaction's fields out of `f` (`input` is given capped).
    fn take(f: &mut Fields, input: Option<String>) -> Self {
        InteractionFields {
            user_id: f.user_id.take(),
            convo_id: f.convo_id.take(),
            event: f.event.take(),
            event_id: f.event_id.take(),
            model: f.model.take(),
            input,
            properties: std::mem::take(&mut f.properties),
        }
    }

    /// Whether nothing would change (an event id alone changes nothing).
    fn is_empty(&self) -> bool {
        matches!(
            self,
            InteractionFields {
                user_id: None,
                convo_id: None,
                event: None,
                model: None,
                input: None,
                properties,
                ..
            } if properties.is_empty()
        )
    }

    /// What a span joining an interaction begun elsewhere may change: not
    /// its id or name, and, when another service owns it, not its input.
    fn for_join(mut self, remote: bool) -> Self {
        self.event = None;
        self.event_id = None;
        if remote {
            self.input = None;
        }
        self
    }

    /// The fields as a [`Begin`]: given to `Client::begin`, or applied to a
    /// live interaction (where blank user and event names change nothing).
    fn into_begin(self, default_event: &str) -> Begin {
        let event = self.event.unwrap_or_else(|| default_event.to_owned());
        let mut b = Begin::new(self.user_id.unwrap_or_default(), event);
        if let Some(e) = self.event_id {
            b = b.event_id(e);
        }
        if let Some(i) = self.input {
            b = b.input(i);
        }
        if let Some(c) = self.convo_id {
            b = b.convo_id(c);
        }
        if let Some(m) = self.model {
            b = b.model(m);
        }
        for (k, v) in self.properties {
            b = b.property(k, v);
        }
        b
    }
}

/// A change of an interaction found while the span's extensions are locked,
/// sent with [`InteractionChange::send`] once the lock is released.
pub(crate) struct InteractionChange {
    interaction: Interaction,
    fields: InteractionFields,
}

impl InteractionChange {
    /// Applies the change to the interaction (one update).
    pub(crate) fn send(self) {
        let InteractionChange {
            interaction,
            mut fields,
        } = self;
        if let Some(id) = fields.event_id.take() {
            if interaction.event_id() != Some(id.as_str()) {
                tracing::debug!(target: "raindrop", "raindrop.event_id recorded after the interaction began; ignored");
            }
        }
        if !fields.is_empty() {
            raindrop_core::__private::apply_begin(&interaction, fields.into_begin(""));
        }
    }
}

/// What [`SpanState::open`] needs to know about a new span.
pub(crate) struct NewSpan {
    pub(crate) client: Client,
    /// The span's own name (the entity name unless `raindrop.name` is set).
    pub(crate) span_name: &'static str,
    pub(crate) fields: Fields,
    /// GenAI fields, for model-call and GenAI spans.
    pub(crate) gen: Option<Box<GenAi>>,
    /// The nearest ancestor the layer knows.
    pub(crate) parent: Option<Lineage>,
    /// The annotated function, for spans made by the attribute macros.
    pub(crate) fn_name: Option<&'static str>,
}

/// What the layer keeps for one span it records (in the span's extensions).
pub(crate) struct SpanState {
    client: Client,
    kind: Kind,
    name: String,
    lineage: Lineage,
    parent_span_id: Option<[u8; 8]>,
    start: SystemTime,
    started: Instant,
    input: Option<String>,
    output: Option<String>,
    error: Option<String>,
    /// The first ERROR event inside the span: its status is error, but an
    /// interaction still finishes with its own outcome.
    event_error: Option<String>,
    properties: Vec<(String, Value)>,
    /// `traceloop.entity.version`, when declared.
    version: Option<i64>,
    fn_name: Option<&'static str>,
    /// GenAI fields of a model-call or GenAI tool span.
    gen: Option<Box<GenAi>>,
}

/// `text` cut to `max` characters (with the truncation marker).
fn capped(text: Option<String>, max: usize) -> Option<String> {
    text.map(|t| {
        let cut = match truncate_text(&t, max) {
            Cow::Owned(s) => Some(s),
            Cow::Borrowed(_) => None,
        };
        cut.unwrap_or(t)
    })
}

impl SpanState {
    /// The state of a new span: begins its interaction, joins the one of a
    /// caller or launcher, or is a child of its parent's. `None` for a span
    /// the layer does not record (an unknown kind, a GenAI span outside any
    /// interaction).
    pub(crate) fn open(new: NewSpan) -> Option<SpanState> {
        let NewSpan {
            client,
            span_name,
            mut fields,
            mut gen,
            parent,
            fn_name,
        } = new;
        let Some(kind) = fields.kind.or_else(|| gen.as_ref().map(|g| g.kind())) else {
            if let Some(bad) = &fields.bad_kind {
                tracing::debug!(target: "raindrop", kind = %bad, "unknown raindrop.kind; span ignored");
            }
            return None;
        };
        let parent_link = parent.as_ref().and_then(|p| p.link.clone());
        if fields.kind.is_none() && parent_link.is_none() {
            return None; // a GenAI span outside any interaction: ignored
        }
        if kind != Kind::Llm && kind != Kind::Tool {
            gen = None;
        }
        let max = client.options().max_text_field_chars;
        let name = fields.name.take().unwrap_or_else(|| span_name.to_owned());
        let input = capped(fields.input.take(), max);
        let (link, properties) = if kind == Kind::Interaction {
            let f = InteractionFields::take(&mut fields, input.clone());
            let link = interaction_link(&client, &name, f, parent_link);
            (Some(link), Vec::new())
        } else {
            (parent_link, std::mem::take(&mut fields.properties))
        };
        let (trace_id, parent_span_id) = match &parent {
            Some(p) => (p.trace_id, Some(p.span_id)),
            None => (SpanRecord::new_trace_id(), None),
        };
        Some(SpanState {
            client,
            kind,
            name,
            lineage: Lineage {
                trace_id,
                span_id: SpanRecord::new_span_id(),
                link,
            },
            parent_span_id,
            start: SystemTime::now(),
            started: Instant::now(),
            input,
            output: capped(fields.output.take(), max),
            error: fields.error.take(),
            event_error: None,
            properties,
            version: fields.version,
            fn_name,
            gen,
        })
    }

    /// The client the span exports through.
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// The longest input or output text kept.
    pub(crate) fn max_chars(&self) -> usize {
        self.client.options().max_text_field_chars
    }

    /// Where the span's children belong.
    pub(crate) fn lineage(&self) -> &Lineage {
        &self.lineage
    }

    /// Takes the ids of the OpenTelemetry span made for the same span.
    #[cfg(feature = "opentelemetry")]
    pub(crate) fn set_ids(&mut self, trace_id: [u8; 16], span_id: [u8; 8]) {
        self.lineage.trace_id = trace_id;
        self.lineage.span_id = span_id;
    }

    /// The GenAI fields of a model-call or GenAI tool span.
    pub(crate) fn gen_mut(&mut self) -> Option<&mut GenAi> {
        self.gen.as_deref_mut()
    }

    /// Notes an ERROR event inside the span (the first one wins).
    pub(crate) fn note_error_event(&mut self, message: impl FnOnce() -> String) {
        if self.event_error.is_none() {
            self.event_error = capped(Some(message()), self.max_chars());
        }
    }

    /// Stores recorded fields; returns the change of the span's interaction
    /// to send once the extensions lock is released.
    pub(crate) fn apply(&mut self, mut f: Fields) -> Option<InteractionChange> {
        let max = self.max_chars();
        let input = capped(f.input.take(), max);
        if let Some(o) = capped(f.output.take(), max) {
            self.output = Some(o);
        }
        if let Some(e) = f.error.take() {
            self.error = Some(e);
        }
        if let Some(n) = f.name.take() {
            self.name = n;
        }
        if let Some(v) = f.version.take() {
            self.version = Some(v);
        }
        if self.kind != Kind::Interaction {
            self.input = input.or(self.input.take());
            self.properties.append(&mut f.properties);
            return None;
        }
        let link = self.lineage.link.as_ref()?;
        let mut fields = InteractionFields::take(&mut f, input.clone());
        if link.remote {
            fields.input = None;
        }
        if input.is_some() {
            self.input = input;
        }
        Some(InteractionChange {
            interaction: link.interaction.clone(),
            fields,
        })
    }

    /// Whether the span is exported: `sample_rate` keeps its interaction
    /// (decided once, by the interaction's handle).
    fn is_sampled(&self) -> bool {
        self.lineage
            .link
            .as_ref()
            .is_none_or(|l| l.interaction.is_noop() || l.interaction.is_sampled())
    }

    /// Ends the span: finishes its interaction (if it is one and began
    /// here), and returns its record, `None` when `sample_rate` does not
    /// keep its interaction (nothing is built then).
    pub(crate) fn finish(mut self) -> Option<SpanRecord> {
        let end = SystemTime::now();
        let duration_ms = i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX);
        let error = self
            .error
            .clone()
            .or_else(|| std::thread::panicking().then(|| "panicked".to_owned()));
        if self.kind == Kind::Interaction {
            self.finish_interaction(error.clone());
        }
        let sampled = self.is_sampled();
        let seen = self.take_seen(error);
        if let Some(link) = &self.lineage.link {
            genai::record_call(
                &link.calls,
                self.kind,
                seen.gen.as_deref(),
                seen.input.as_deref(),
                seen.output.as_deref(),
            );
        }
        sampled.then(|| self.record(seen, end, duration_ms))
    }

    /// Fills the span's interaction from its model calls, and finishes it
    /// unless it was joined from another service (which finishes it).
    fn finish_interaction(&self, error: Option<String>) {
        let Some(link) = self.lineage.link.as_ref() else {
            return;
        };
        let i = &link.interaction;
        genai::fill_interaction(&link.calls, i, self.output.is_some());
        if link.remote {
            return;
        }
        if !i.is_noop() && i.user_id().filter(|u| !u.trim().is_empty()).is_none() {
            diag::warn_no_user_id(&self.name, self.fn_name);
        }
        let mut finish = Finish::new();
        if let Some(o) = &self.output {
            finish = finish.output(o.clone());
        }
        if let Some(e) = &error {
            finish = finish.error(e);
        }
        // Finished by hand already: the span's end is not a second finish.
        if !i.is_finished() {
            i.finish_with(finish);
        }
    }

    /// Records an event that describes this span's model call (swiftide's
    /// `langfuse.*` DEBUG events) into the call.
    pub(crate) fn record_model_event(&mut self, event: &tracing::Event<'_>) {
        if let Some(g) = self.gen.as_deref_mut() {
            event.record(g);
        }
    }

    /// The span's outcome as the exported record shows it: what a GenAI
    /// tool span says fills what was not set by hand.
    fn take_seen(&mut self, error: Option<String>) -> Seen {
        let mut gen = self.gen.take();
        let (mut name, mut input, mut output) = (
            std::mem::take(&mut self.name),
            self.input.take(),
            self.output.take(),
        );
        let mut error = error;
        if let (Kind::Tool, Some(g)) = (self.kind, gen.as_deref_mut()) {
            let d = genai::tool_defaults(g);
            name = d.name.unwrap_or(name);
            input = input.or(d.input);
            output = output.or(d.output);
            error = error.or(d.error);
        }
        if let (Kind::Llm, Some(g)) = (self.kind, gen.as_deref_mut()) {
            // A client's own failure mark (genai's `error.type`).
            error = error.or_else(|| genai::call_error(g));
        }
        let error = error.or_else(|| self.event_error.take());
        Seen {
            gen,
            name,
            input,
            output,
            error,
        }
    }
}

/// A finished span's outcome, ready to become its record.
struct Seen {
    gen: Option<Box<GenAi>>,
    name: String,
    input: Option<String>,
    output: Option<String>,
    error: Option<String>,
}

type Attr = (Cow<'static, str>, AttributeValue);

impl SpanState {
    /// The exported record of the span and its outcome `seen`.
    fn record(&self, seen: Seen, end: SystemTime, duration_ms: i64) -> SpanRecord {
        let s = self;
        let Seen {
            gen,
            name,
            input,
            output,
            error,
        } = seen;
        let max = s.max_chars();
        let mut attrs: Vec<Attr> = Vec::with_capacity(16 + s.properties.len());
        let mut push = |k: &'static str, v: AttributeValue| attrs.push((Cow::Borrowed(k), v));
        push("traceloop.span.kind", s.kind.span_kind().into());
        push("traceloop.entity.name", name.as_str().into());
        if let Some(v) = s.version {
            push("traceloop.entity.version", AttributeValue::Int(v));
        }
        let link = s.lineage.link.as_ref();
        if let Some(l) = link {
            push("traceloop.workflow.name", (&*l.workflow).into());
        }
        let (input, output) = match (s.kind, gen) {
            (Kind::Llm, g) => {
                let tools = link.and_then(|l| l.interaction.prompt_tools());
                let g = g.map(|g| *g).unwrap_or_default();
                attrs.extend(genai::llm_attributes(g, input, output, tools, max));
                (None, None)
            }
            (Kind::Tool, g) => {
                attrs.push((Cow::Borrowed("ai.operationId"), "ai.toolCall".into()));
                if let Some(g) = g.as_deref() {
                    attrs.extend(genai::tool_attributes(g, &name));
                }
                (input, output)
            }
            _ => (input, output),
        };
        entity_attributes(&mut attrs, input, output, duration_ms);
        if let Some(l) = link {
            association_attributes(&mut attrs, l);
        }
        property_attributes(&mut attrs, &s.properties, max);
        SpanRecord {
            trace_id: s.lineage.trace_id,
            span_id: s.lineage.span_id,
            parent_span_id: s.parent_span_id,
            name: format!("{}.{}", name, s.kind.span_kind()),
            start: s.start,
            end,
            status: match error {
                Some(m) => SpanStatus::Error(m),
                None => SpanStatus::Ok,
            },
            attributes: attrs,
        }
    }
}

fn entity_attributes(
    attrs: &mut Vec<Attr>,
    input: Option<String>,
    output: Option<String>,
    duration_ms: i64,
) {
    if let Some(i) = input {
        attrs.push(("traceloop.entity.input".into(), AttributeValue::String(i)));
    }
    if let Some(o) = output {
        attrs.push(("traceloop.entity.output".into(), AttributeValue::String(o)));
    }
    attrs.push((
        "traceloop.entity.duration_ms".into(),
        AttributeValue::Int(duration_ms),
    ));
}

/// The ids of the span's interaction, which link it to the event.
fn association_attributes(attrs: &mut Vec<Attr>, l: &Link) {
    let mut push = |k: &'static str, v: AttributeValue| attrs.push((Cow::Borrowed(k), v));
    let i = &l.interaction;
    if let Some(id) = i.event_id() {
        push("ai.telemetry.metadata.raindrop.eventId", id.into());
        push("traceloop.association.properties.event_id", id.into());
    }
    if let Some(u) = i.user_id() {
        push("traceloop.association.properties.user_id", u.into());
    }
    if let Some(c) = i.convo_id() {
        push("traceloop.association.properties.convo_id", c.into());
    }
    if let Some(e) = i.event_name() {
        push("traceloop.association.properties.event", e.into());
    }
    if let Some(sub) = &l.subagent {
        attrs.extend(sub.attributes());
    }
}

/// A task's or tool's properties, as association attributes.
fn property_attributes(attrs: &mut Vec<Attr>, properties: &[(String, Value)], max: usize) {
    const RESERVED: [&str; 4] = ["event_id", "user_id", "convo_id", "event"];
    for (k, v) in properties {
        if RESERVED.contains(&k.as_str()) || v.is_null() {
            continue;
        }
        let value = match v {
            Value::String(t) => AttributeValue::String(truncate_text(t, max).into_owned()),
            Value::Bool(b) => AttributeValue::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => AttributeValue::Int(i),
                None => AttributeValue::Double(n.as_f64().unwrap_or_default()),
            },
            other => AttributeValue::String(truncate_text(&other.to_string(), max).into_owned()),
        };
        attrs.push((
            Cow::Owned(format!("traceloop.association.properties.{k}")),
            value,
        ));
    }
}

/// The link of a new interaction span: joins the interaction of a remote
/// caller or a sub-agent's launcher above it, else begins one.
fn interaction_link(
    client: &Client,
    name: &str,
    f: InteractionFields,
    parent: Option<Link>,
) -> Link {
    if let Some(p) = parent.filter(|l| l.remote || l.subagent.is_some()) {
        // Inside a request continuing another service's interaction (or a
        // sub-agent's run): join it (same event) instead of beginning one.
        // A sub-agent's run is its own event: the span finishes it when it
        // ends (`remote` stays false).
        let f = f.for_join(p.remote);
        if !f.is_empty() {
            raindrop_core::__private::apply_begin(&p.interaction, f.into_begin(""));
        }
        return Link {
            workflow: name.into(),
            calls: genai::Calls::new(),
            ..p
        };
    }
    // `begin` only validates and queues; it never blocks.
    let interaction = client.begin(f.into_begin(name)).unwrap_or_else(|e| {
        tracing::debug!(target: "raindrop", "interaction span `{name}`: {e}; not tracked");
        Interaction::noop()
    });
    Link::new(interaction, name)
}
