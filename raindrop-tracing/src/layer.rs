//! The layer, its per-layer filter and the per-span state.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use raindrop_core::{
    truncate_text, AttributeValue, Begin, Client, Finish, Interaction, SpanContext, SpanRecord,
    SpanStatus,
};
use serde_json::Value;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Dispatch, Metadata, Subscriber};
use tracing_subscriber::filter::Filtered;
use tracing_subscriber::layer::{Context, Filter, Layer};
use tracing_subscriber::registry::{LookupSpan, Registry};

use crate::diag;
use crate::fields::{Fields, Kind};

#[path = "genai.rs"]
pub(crate) mod genai;
use genai::is_tracked;

/// The [`Layer`] that turns spans marked with `raindrop.kind` into Raindrop
/// interactions and trace spans. Build it with [`layer`], which adds the
/// per-layer [`RaindropFilter`]; used bare, it still acts only on marked spans.
#[derive(Clone)]
pub struct RaindropLayer {
    /// `None`: the process-wide client, looked up for each span, so a layer
    /// installed before `raindrop::init` records once `init` has run.
    client: Option<Client>,
    live: Arc<Live>,
    /// The dispatcher this layer is part of (set when it is registered):
    /// how ids of other layers' spans are read while tracing's own default
    /// dispatcher is busy creating a span (feature `opentelemetry`).
    dispatch: Arc<std::sync::OnceLock<tracing::dispatcher::WeakDispatch>>,
}

/// Which span ids may be this layer's open spans: a counting filter over
/// the ids of the marked spans it saw created and not yet closed. A zero
/// counter proves a span is not one of them, so `on_close` and `on_record`
/// of every other span return without a registry lookup (an unrelated span
/// then costs the layer one metadata check on creation and one atomic load
/// on close). Counters, not bits: two live ids in one slot must both close
/// before the slot reads "none".
struct Live([AtomicU32; LIVE_SLOTS]);

const LIVE_BITS: u32 = 12;
const LIVE_SLOTS: usize = 1 << LIVE_BITS;

impl Live {
    fn new() -> Self {
        Live([const { AtomicU32::new(0) }; LIVE_SLOTS])
    }

    #[inline]
    fn slot(&self, id: &Id) -> &AtomicU32 {
        let h = id.into_u64().wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - LIVE_BITS);
        // `h < LIVE_SLOTS` by construction.
        &self.0[(h as usize) & (LIVE_SLOTS - 1)]
    }

    #[inline]
    fn add(&self, id: &Id) {
        self.slot(id).fetch_add(1, Ordering::Relaxed);
    }

    #[inline]
    fn may_hold(&self, id: &Id) -> bool {
        self.slot(id).load(Ordering::Relaxed) != 0
    }

    #[inline]
    fn remove(&self, id: &Id) {
        let _ = self
            .slot(id)
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }
}

impl fmt::Debug for RaindropLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("RaindropLayer");
        match &self.client {
            Some(c) => d.field("client", c),
            None => d.field("client", &"the global client"),
        };
        d.finish()
    }
}

impl RaindropLayer {
    /// A layer exporting through `client`, without its filter (see [`layer`]).
    pub fn new(client: &Client) -> Self {
        RaindropLayer {
            client: Some(client.clone()),
            live: Arc::new(Live::new()),
            dispatch: Arc::default(),
        }
    }

    /// A layer exporting through the process-wide client (`raindrop::init`),
    /// without its filter (see [`global_layer`]). The client is looked up
    /// for each raindrop span: installed before `init`, the layer records
    /// from the moment `init` has run (before, spans count as not
    /// initialised, said once).
    pub fn global() -> Self {
        RaindropLayer {
            client: None,
            live: Arc::new(Live::new()),
            dispatch: Arc::default(),
        }
    }

    /// The dispatcher this layer is registered in, when the ids of
    /// `tracing-opentelemetry` spans are to be shared (feature `opentelemetry`).
    fn otel_dispatch(&self) -> Option<Dispatch> {
        #[cfg(feature = "opentelemetry")]
        {
            self.dispatch.get().and_then(|w| w.upgrade())
        }
        #[cfg(not(feature = "opentelemetry"))]
        {
            None
        }
    }

    /// The client this layer exports through now.
    pub(crate) fn client(&self) -> Client {
        match &self.client {
            Some(c) => c.clone(),
            None => raindrop_core::__private::current(),
        }
    }

    /// Wraps the layer in its per-layer [`RaindropFilter`].
    pub fn with_raindrop_filter<S>(self) -> Filtered<RaindropLayer, RaindropFilter, S>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        Layer::with_filter(self, RaindropFilter)
    }
}

/// The raindrop layer wrapped in its own per-layer filter: what [`layer`] returns.
pub type FilteredRaindropLayer<S> = Filtered<RaindropLayer, RaindropFilter, S>;

/// The layer for `client`, carrying its own per-layer filter: it sees only
/// spans that declare `raindrop.kind` and ERROR events (which mark the raindrop span
/// they happen in failed), and never changes what
/// other layers of the same subscriber see.
///
/// Per-layer filters need a subscriber built with
/// `tracing_subscriber::registry()`. `tracing_subscriber::fmt()...finish()`
/// has none: adding this layer to it panics at once, with a message naming
/// the fix. For such a subscriber use the bare [`RaindropLayer::new`], which
/// needs no per-layer filter (see [Filters](crate#filters) in the crate docs,
/// and the repository's `docs/setup.md` for each common setup).
///
/// ```
/// use tracing_subscriber::prelude::*;
/// let client = raindrop_core::Client::new(raindrop_core::ClientOptions::default()).unwrap();
/// let subscriber = tracing_subscriber::registry().with(raindrop_tracing::layer(&client));
/// tracing::subscriber::with_default(subscriber, || {
///     let span = tracing::info_span!("chat", raindrop.kind = "interaction", raindrop.user_id = "u-1");
///     let _in = span.enter();
///     assert!(!raindrop_tracing::resume_interaction().is_noop());
/// });
/// ```
#[track_caller]
pub fn layer<S>(client: &Client) -> FilteredRaindropLayer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    filtered(
        RaindropLayer::new(client),
        "raindrop::layer_for(&client)",
        "raindrop::RaindropLayer::new(&client)",
    )
}

/// [`layer`] for the process-wide client (`raindrop::init`), looked up for
/// each raindrop span: the subscriber may be built before `init`.
///
/// ```
/// use tracing_subscriber::prelude::*;
/// let subscriber = tracing_subscriber::registry().with(raindrop_tracing::global_layer());
/// # drop(subscriber);
/// ```
#[track_caller]
pub fn global_layer<S>() -> FilteredRaindropLayer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    filtered(
        RaindropLayer::global(),
        "raindrop::layer()",
        "raindrop::RaindropLayer::global()",
    )
}

/// Adds the per-layer filter, or panics at the caller's line naming what was
/// called and the fix when the subscriber cannot carry per-layer filters.
#[track_caller]
fn filtered<S>(layer: RaindropLayer, called: &str, bare: &str) -> FilteredRaindropLayer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let stack = std::any::type_name::<S>();
    if stack.contains("tracing_subscriber::fmt::Subscriber<") {
        // tracing-subscriber would panic a moment later ("does not currently
        // support filters") without naming raindrop or the fix.
        panic!(
            "{called} cannot be added to a `tracing_subscriber::fmt()...finish()` \
             subscriber: it does not support the per-layer filter the raindrop layer carries. \
             Fix: add `{bare}` instead (no per-layer filter), or build the subscriber with \
             `tracing_subscriber::registry().with(fmt::layer()..).with({called})` \
             (or call `raindrop::tracing_init(&client)`)"
        );
    }
    layer.with_raindrop_filter()
}

/// An ERROR event that is not the SDK's own: it marks the raindrop span it
/// happens in as failed.
fn is_error_event(meta: &Metadata<'_>) -> bool {
    meta.is_event()
        && *meta.level() == tracing::Level::ERROR
        && !meta.target().starts_with("raindrop")
}

/// The text of an event's `message` field, else of its `error` field (what
/// `#[instrument(err)]` writes, as swiftide's model calls do).
#[derive(Default)]
struct Message(Option<String>);

impl Message {
    fn takes(&self, field: &tracing::field::Field) -> bool {
        field.name() == "message" || (field.name() == "error" && self.0.is_none())
    }
}

impl tracing::field::Visit for Message {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if self.takes(field) {
            self.0 = Some(value.to_owned());
        }
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        if self.takes(field) {
            self.0 = Some(format!("{value:?}"));
        }
    }
}

/// Per-layer filter of [`RaindropLayer`]: enables spans whose callsite
/// declares `raindrop.kind` (or `gen_ai.operation.name` /
/// `gen_ai.request.model`: model calls), and ERROR events (which mark the raindrop span
/// they happen in as failed), and nothing else (decided once per callsite).
#[derive(Debug, Clone, Copy, Default)]
pub struct RaindropFilter;

impl<S> Filter<S> for RaindropFilter {
    fn enabled(&self, meta: &Metadata<'_>, _cx: &Context<'_, S>) -> bool {
        is_tracked(meta) || is_error_event(meta) || crate::llm_attrs::is_langfuse_event(meta)
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        if is_tracked(meta) || is_error_event(meta) || crate::llm_attrs::is_langfuse_event(meta) {
            Interest::always()
        } else {
            Interest::never()
        }
    }
}

/// What the attribute macros hand to the layer for a span they are about to
/// create, outside the span's fields so that no other layer sees it.
#[derive(Debug, Default)]
pub(crate) struct SpanInit {
    /// The span's name (to match the span this is meant for).
    pub(crate) span_name: &'static str,
    /// The annotated function.
    pub(crate) fn_name: &'static str,
    pub(crate) user_id: Option<String>,
    pub(crate) convo_id: Option<String>,
    pub(crate) event: Option<String>,
    pub(crate) event_id: Option<String>,
}

thread_local! {
    /// Set by the macros just before `span!`, taken by `on_new_span` (which
    /// runs on the same thread, inside `span!`), cleared by the macros after.
    static PENDING_INIT: RefCell<Option<SpanInit>> = const { RefCell::new(None) };
}

/// Hands `init` to the raindrop layer for the next span named `init.span_name`.
pub(crate) fn set_pending_init(init: SpanInit) {
    let _ = PENDING_INIT.try_with(|p| *p.borrow_mut() = Some(init));
}

/// Drops an init no layer took (the span was disabled, or no raindrop layer).
pub(crate) fn clear_pending_init() {
    let _ = PENDING_INIT.try_with(|p| p.borrow_mut().take());
}

fn take_pending_init(span_name: &str) -> Option<SpanInit> {
    PENDING_INIT
        .try_with(|p| {
            let mut p = p.borrow_mut();
            if p.as_ref().is_some_and(|i| i.span_name == span_name) {
                p.take()
            } else {
                None
            }
        })
        .ok()
        .flatten()
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

/// What stays of a marked span in the registry once the macro's function
/// returned (its record is sent) while the span itself is still open (a
/// clone lives on, e.g. in an instrumented `tokio::spawn` that outlives the
/// handler): enough for children created later to join its trace and link
/// to its interaction, and for `resume_interaction()` to find it.
pub(crate) struct Ended {
    pub(crate) trace_id: [u8; 16],
    pub(crate) span_id: [u8; 8],
    pub(crate) link: Option<Link>,
}

/// The trace id, span id and interaction link of a marked span, open or ended.
pub(crate) fn lineage(
    ext: &tracing_subscriber::registry::Extensions<'_>,
) -> Option<([u8; 16], [u8; 8], Option<Link>)> {
    if let Some(s) = ext.get::<SpanState>() {
        return Some((s.trace_id, s.span_id, s.link.clone()));
    }
    ext.get::<Ended>()
        .map(|e| (e.trace_id, e.span_id, e.link.clone()))
}

/// What the layer keeps for one marked span (in the registry's extensions).
pub(crate) struct SpanState {
    client: Client,
    kind: Kind,
    name: String,
    trace_id: [u8; 16],
    span_id: [u8; 8],
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
    pub(crate) link: Option<Link>,
    /// The annotated function, for spans made by the attribute macros.
    fn_name: Option<&'static str>,
    /// GenAI fields of a model-call or GenAI tool span.
    gen: Option<Box<genai::GenAi>>,
}

fn cap_in_place(text: &mut String, max: usize) {
    if let Cow::Owned(s) = truncate_text(text, max) {
        *text = s;
    }
}

impl SpanState {
    fn max_chars(&self) -> usize {
        self.client.options().max_text_field_chars
    }

    /// Stores recorded fields; returns the interaction updates to make once
    /// the extensions lock is released.
    fn apply(&mut self, mut f: Fields) -> Option<(Interaction, Fields)> {
        let max = self.max_chars();
        if let Some(mut i) = f.input.take() {
            cap_in_place(&mut i, max);
            if self.kind == Kind::Interaction && !self.link.as_ref().is_some_and(|l| l.remote) {
                // The interaction's begin/update needs its own copy.
                f.input = Some(i.clone());
            }
            self.input = Some(i);
        }
        if let Some(mut o) = f.output.take() {
            cap_in_place(&mut o, max);
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
        if self.kind == Kind::Interaction {
            let link = self.link.as_ref()?;
            Some((link.interaction.clone(), f))
        } else {
            self.properties.append(&mut f.properties);
            None
        }
    }
}

/// Applies recorded fields to an interaction (outside any lock).
fn update_interaction(i: &Interaction, f: Fields) {
    if let Some(u) = f.user_id {
        i.set_user_id(u);
    }
    if let Some(c) = f.convo_id {
        i.set_convo_id(c);
    }
    if let Some(e) = f.event {
        i.set_event(e);
    }
    if let Some(m) = f.model {
        i.set_model(m);
    }
    if let Some(input) = f.input {
        i.set_input(input);
    }
    for (k, v) in f.properties {
        i.set_property(k, v);
    }
    if let Some(id) = f.event_id {
        if i.event_id() != Some(id.as_str()) {
            tracing::debug!(target: "raindrop", "raindrop.event_id recorded after the interaction began; ignored");
        }
    }
}

impl<S> Layer<S> for RaindropLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        let _ = self.dispatch.set(subscriber.downgrade());
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if !is_tracked(attrs.metadata()) {
            return;
        }
        // Paired with the `remove` in `on_close` (same marked-span test).
        self.live.add(id);
        let Some(span) = ctx.span(id) else {
            return;
        };
        if span.extensions().get::<SpanState>().is_some() {
            // Another raindrop layer in the same subscriber got here first.
            return;
        }
        let mut f = Fields::default();
        attrs.record(&mut f);
        let mut gen = genai::new_span(attrs, &f);
        let init = take_pending_init(attrs.metadata().name());
        let fn_name = init.as_ref().map(|i| i.fn_name);
        if let Some(init) = init {
            f.user_id = init.user_id.or(f.user_id);
            f.convo_id = init.convo_id.or(f.convo_id);
            f.event = init.event.or(f.event);
            f.event_id = init.event_id.or(f.event_id);
        }
        let Some(kind) = f.kind.or_else(|| gen.as_ref().map(|g| g.kind())) else {
            if let Some(bad) = &f.bad_kind {
                tracing::debug!(target: "raindrop", kind = %bad, "unknown raindrop.kind; span ignored");
            }
            return;
        };
        // The nearest ancestor this layer tracks (ordinary spans are skipped).
        #[cfg(feature = "opentelemetry")]
        if let Some(p) = span.scope().skip(1).find(|p| {
            let e = p.extensions();
            e.get::<SpanState>().is_some() || e.get::<Ended>().is_some()
        }) {
            sync_otel_ids(&p, self.otel_dispatch().as_ref());
        }
        let parent = span.scope().skip(1).find_map(|p| lineage(&p.extensions()));
        let (trace_id, parent_span_id, parent_link) = match parent {
            Some((t, s, l)) => (t, Some(s), l),
            None => (SpanRecord::new_trace_id(), None, None),
        };
        if f.kind.is_none() && parent_link.is_none() {
            return; // a GenAI span outside any interaction: ignored
        }
        if kind != Kind::Llm && kind != Kind::Tool {
            gen = None;
        }
        let client = self.client();
        let max = client.options().max_text_field_chars;
        let name = f
            .name
            .take()
            .unwrap_or_else(|| attrs.metadata().name().to_owned());
        let mut input = f.input.take();
        if let Some(i) = input.as_mut() {
            cap_in_place(i, max);
        }
        let mut output = f.output.take();
        if let Some(o) = output.as_mut() {
            cap_in_place(o, max);
        }
        let mut properties = Vec::new();
        let link = if let Some(remote) = parent_link
            .as_ref()
            .filter(|l| kind == Kind::Interaction && (l.remote || l.subagent.is_some()))
        {
            // Inside a request continuing another service's interaction:
            // join it (same event) instead of beginning a new one.
            let joined = remote.interaction.clone();
            f.event_id = None;
            if let Some(u) = f.user_id.take() {
                joined.set_user_id(u);
            }
            if let Some(c) = f.convo_id.take() {
                joined.set_convo_id(c);
            }
            if let Some(m) = f.model.take() {
                joined.set_model(m);
            }
            for (k, v) in f.properties.drain(..) {
                joined.set_property(k, v);
            }
            // A sub-agent's run is its own event: the interaction span
            // finishes it when it ends (`remote` stays false).
            Some(Link {
                interaction: joined,
                workflow: name.as_str().into(),
                remote: remote.remote,
                calls: genai::Calls::new(),
                subagent: remote.subagent.clone(),
            })
        } else if kind == Kind::Interaction {
            let event = f.event.take().unwrap_or_else(|| name.clone());
            let mut b = Begin::new(f.user_id.take().unwrap_or_default(), event);
            if let Some(e) = f.event_id.take() {
                b = b.event_id(e);
            }
            if let Some(i) = &input {
                b = b.input(i.clone());
            }
            if let Some(c) = f.convo_id.take() {
                b = b.convo_id(c);
            }
            if let Some(m) = f.model.take() {
                b = b.model(m);
            }
            for (k, v) in f.properties.drain(..) {
                b = b.property(k, v);
            }
            // `begin` only validates and queues; it never blocks.
            let interaction = client.begin(b).unwrap_or_else(|e| {
                tracing::debug!(target: "raindrop", "interaction span `{name}`: {e}; not tracked");
                Interaction::noop()
            });
            Some(Link {
                interaction,
                workflow: name.as_str().into(),
                remote: false,
                calls: genai::Calls::new(),
                subagent: None,
            })
        } else {
            properties = std::mem::take(&mut f.properties);
            parent_link
        };
        let state = SpanState {
            client: client.clone(),
            kind,
            name,
            trace_id,
            span_id: SpanRecord::new_span_id(),
            parent_span_id,
            start: SystemTime::now(),
            started: Instant::now(),
            input,
            output,
            error: f.error.take(),
            event_error: None,
            properties,
            version: f.version,
            link,
            fn_name,
            gen,
        };
        // `replace`, not `insert`: never panic, even if another layer raced us.
        let _ = span.extensions_mut().replace(state);
        sync_otel_ids(&span, self.otel_dispatch().as_ref());
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        if crate::llm_attrs::is_langfuse_event(event.metadata()) {
            // swiftide's model, input, output and usage, onto its model span.
            if let Some(span) = ctx.event_span(event) {
                let mut ext = span.extensions_mut();
                if let Some(g) = ext
                    .get_mut::<SpanState>()
                    .and_then(|s| s.gen.as_deref_mut())
                {
                    event.record(g);
                }
            }
        }
        if !is_error_event(event.metadata()) {
            return;
        }
        let Some(scope) = ctx.event_scope(event) else {
            return;
        };
        for span in scope {
            let mut ext = span.extensions_mut();
            let Some(state) = ext.get_mut::<SpanState>() else {
                continue;
            };
            if state.event_error.is_none() {
                let mut m = Message::default();
                event.record(&mut m);
                let mut text = m.0.unwrap_or_else(|| "ERROR event".to_owned());
                cap_in_place(&mut text, state.max_chars());
                state.event_error = Some(text);
            }
            return;
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if !self.live.may_hold(id) {
            return;
        }
        let Some(span) = ctx.span(id) else {
            return;
        };
        if !is_tracked(span.metadata()) {
            return;
        }
        let mut f = Fields::default();
        values.record(&mut f);
        let update = {
            let mut ext = span.extensions_mut();
            let Some(state) = ext.get_mut::<SpanState>() else {
                return;
            };
            if let Some(g) = state.gen.as_deref_mut() {
                values.record(g);
            }
            if f.is_empty() {
                return;
            }
            state.apply(f)
        };
        if let Some((i, f)) = update {
            update_interaction(&i, f);
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        if !self.live.may_hold(&id) {
            return; // not a span of this layer: no registry lookup
        }
        let Some(span) = ctx.span(&id) else {
            return;
        };
        if !is_tracked(span.metadata()) {
            return;
        }
        self.live.remove(&id);
        sync_otel_ids(&span, self.otel_dispatch().as_ref());
        let state = span.extensions_mut().remove::<SpanState>();
        if let Some(state) = state {
            complete(state);
        }
    }
}

/// Takes the ids of the OpenTelemetry span made for the same `tracing` span
/// into its raindrop state (feature `opentelemetry`; see `crate::otel`).
/// No extensions lock of the span may be held.
#[cfg(feature = "opentelemetry")]
pub(crate) fn sync_otel_ids<'a, R: LookupSpan<'a>>(
    span: &tracing_subscriber::registry::SpanRef<'a, R>,
    dispatch: Option<&Dispatch>,
) {
    let Some(d) = dispatch else {
        return;
    };
    if span.extensions().get::<SpanState>().is_none() {
        return;
    }
    if let Some((trace_id, span_id)) = crate::otel::ids(&span.id(), span.metadata(), d) {
        if let Some(st) = span.extensions_mut().get_mut::<SpanState>() {
            st.trace_id = trace_id;
            st.span_id = span_id;
        }
    }
}

#[cfg(not(feature = "opentelemetry"))]
#[inline(always)]
pub(crate) fn sync_otel_ids<'a, R: LookupSpan<'a>>(
    _: &tracing_subscriber::registry::SpanRef<'a, R>,
    _: Option<&Dispatch>,
) {
}

/// Ends a span: finishes its interaction (if it is one) and exports it.
///
/// The one way a raindrop span ends. It is reached from whichever comes
/// first: the macro's function returning ([`complete_span`], which leaves an
/// [`Ended`] marker for children created later under a span that lives on)
/// or the span closing (`on_close`, for spans written by hand). The state is
/// taken out of the span's extensions either way, so it runs once.
pub(crate) fn complete(mut state: SpanState) {
    genai::on_complete(&mut state);
    let end = SystemTime::now();
    let duration_ms = i64::try_from(state.started.elapsed().as_millis()).unwrap_or(i64::MAX);
    let error = state
        .error
        .clone()
        .or_else(|| std::thread::panicking().then(|| "panicked".to_owned()));
    if state.kind == Kind::Interaction {
        // A joined remote interaction is finished by the service that began it.
        if let Some(link) = state.link.as_ref().filter(|l| !l.remote) {
            let i = &link.interaction;
            if !i.is_noop() && i.user_id().filter(|u| !u.trim().is_empty()).is_none() {
                diag::warn_no_user_id(&state.name, state.fn_name);
            }
            let mut finish = Finish::new();
            if let Some(o) = &state.output {
                finish = finish.output(o.clone());
            }
            if let Some(e) = &error {
                finish = finish.error(e);
            }
            // Finished by hand already: the span's end is not a second finish.
            if !link.interaction.is_finished() {
                link.interaction.finish_with(finish);
            }
        }
    }
    let client = state.client.clone();
    let error = error.or_else(|| state.event_error.clone());
    let _ = client.export_span(to_record(state, end, duration_ms, error));
}

/// Builds the exported record, moving the span's strings into it.
fn to_record(
    mut s: SpanState,
    end: SystemTime,
    duration_ms: i64,
    error: Option<String>,
) -> SpanRecord {
    type Attr = (Cow<'static, str>, AttributeValue);
    let mut attrs: Vec<Attr> = Vec::with_capacity(16 + s.properties.len());
    let mut push = |k: &'static str, v: AttributeValue| attrs.push((Cow::Borrowed(k), v));
    push("traceloop.span.kind", s.kind.span_kind().into());
    push("traceloop.entity.name", s.name.as_str().into());
    if let Some(v) = s.version {
        push("traceloop.entity.version", AttributeValue::Int(v));
    }
    let max = s.max_chars();
    if let Some(l) = &s.link {
        push("traceloop.workflow.name", (&*l.workflow).into());
    }
    if s.kind == Kind::Tool {
        push("ai.operationId", "ai.toolCall".into());
    }
    if s.kind == Kind::Llm {
        genai::llm_attributes(&mut s, &mut attrs, max);
    } else if s.kind == Kind::Tool {
        genai::tool_attributes(&s, &mut attrs);
    }
    let mut push = |k: &'static str, v: AttributeValue| attrs.push((Cow::Borrowed(k), v));
    if let Some(i) = s.input.take() {
        push("traceloop.entity.input", AttributeValue::String(i));
    }
    if let Some(o) = s.output.take() {
        push("traceloop.entity.output", AttributeValue::String(o));
    }
    push(
        "traceloop.entity.duration_ms",
        AttributeValue::Int(duration_ms),
    );
    if let Some(l) = &s.link {
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
    const RESERVED: [&str; 4] = ["event_id", "user_id", "convo_id", "event"];
    for (k, v) in &s.properties {
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
    SpanRecord {
        trace_id: s.trace_id,
        span_id: s.span_id,
        parent_span_id: s.parent_span_id,
        name: format!("{}.{}", s.name, s.kind.span_kind()),
        start: s.start,
        end,
        status: match error {
            Some(m) => SpanStatus::Error(m),
            None => SpanStatus::Ok,
        },
        attributes: attrs,
    }
}

/// Runs `f` on the registry of the current dispatcher, if it has one.
fn with_registry<T>(dispatch: &Dispatch, f: impl FnOnce(&Registry) -> Option<T>) -> Option<T> {
    dispatch.downcast_ref::<Registry>().and_then(f)
}

/// The interaction of span `id` or of its nearest interaction ancestor.
fn interaction_of(reg: &Registry, id: &Id) -> Option<Interaction> {
    let span = reg.span(id)?;
    let found = span
        .scope()
        .find_map(|s| lineage(&s.extensions()).map(|(_, _, link)| link));
    found.flatten().map(|l| l.interaction)
}

/// The interaction of the nearest enclosing interaction span, walking up from
/// the current span through any ordinary spans; `None` when there is none.
pub fn current_interaction() -> Option<Interaction> {
    tracing::dispatcher::get_default(|d| {
        let id = d.current_span().id()?.clone();
        with_registry(d, |reg| interaction_of(reg, &id))
    })
}

/// The trace and span ids of the nearest enclosing raindrop span (walking
/// up through ordinary spans): the parent to give a
/// [`ManualSpan`](raindrop_core::ManualSpan) or a
/// [`ToolCall`](raindrop_core::ToolCall) recorded inside it. `None` outside
/// raindrop spans.
///
/// ```
/// use tracing_subscriber::prelude::*;
/// let client = raindrop_core::Client::new(raindrop_core::ClientOptions::default()).unwrap();
/// let subscriber = tracing_subscriber::registry().with(raindrop_tracing::layer(&client));
/// tracing::subscriber::with_default(subscriber, || {
///     assert!(raindrop_tracing::current_span_context().is_none());
///     let span = tracing::info_span!("step", raindrop.kind = "task");
///     let _in = span.enter();
///     assert!(raindrop_tracing::current_span_context().is_some());
/// });
/// ```
pub fn current_span_context() -> Option<SpanContext> {
    tracing::dispatcher::get_default(|d| {
        let id = d.current_span().id()?.clone();
        with_registry(d, |reg| {
            let span = reg.span(&id)?;
            span.scope().find_map(|s| {
                lineage(&s.extensions())
                    .map(|(trace_id, span_id, _)| SpanContext { trace_id, span_id })
            })
        })
    })
}

/// Raindrop helpers on [`tracing::Span`].
///
/// The `set_*` methods hand their value to the raindrop layer directly, in
/// the span's extensions (the way `tracing-opentelemetry`'s span extension
/// reaches its layer): unlike `span.record("raindrop.input", ..)`, the value
/// never becomes a span field, so no other layer (your log output, an
/// OpenTelemetry exporter) sees it. They do nothing on a span no raindrop
/// layer tracks.
pub trait RaindropSpanExt {
    /// The interaction of this span, or of its nearest interaction ancestor;
    /// [`Interaction::noop`] when there is none (or no raindrop layer).
    fn interaction(&self) -> Interaction;

    /// Sets the span's input (an interaction's input, a task's or tool's
    /// `traceloop.entity.input`).
    fn set_input(&self, input: impl Into<String>);

    /// Sets the span's output (an interaction's final answer).
    fn set_output(&self, output: impl Into<String>);

    /// Marks the span failed with `message` (an interaction finishes with it
    /// as its error).
    fn set_error(&self, message: impl Into<String>);

    /// Sets one property: on an interaction span, of the event; on a task or
    /// tool span, a `traceloop.association.properties.<key>` attribute.
    fn set_property(&self, key: impl Into<String>, value: impl Into<Value>);
}

impl RaindropSpanExt for tracing::Span {
    fn interaction(&self) -> Interaction {
        self.with_subscriber(|(id, d)| with_registry(d, |reg| interaction_of(reg, id)))
            .flatten()
            .unwrap_or_else(Interaction::noop)
    }

    fn set_input(&self, input: impl Into<String>) {
        let f = Fields {
            input: Some(input.into()),
            ..Fields::default()
        };
        apply_to_span(self, f);
    }

    fn set_output(&self, output: impl Into<String>) {
        let f = Fields {
            output: Some(output.into()),
            ..Fields::default()
        };
        apply_to_span(self, f);
    }

    fn set_error(&self, message: impl Into<String>) {
        let f = Fields {
            error: Some(message.into()),
            ..Fields::default()
        };
        apply_to_span(self, f);
    }

    fn set_property(&self, key: impl Into<String>, value: impl Into<Value>) {
        let f = Fields {
            properties: vec![(key.into(), value.into())],
            ..Fields::default()
        };
        apply_to_span(self, f);
    }
}

/// Applies `f` to the raindrop state of `span`, without recording anything
/// on the span itself. Returns whether a raindrop layer tracks the span.
pub(crate) fn apply_to_span(span: &tracing::Span, f: Fields) -> bool {
    let update = span
        .with_subscriber(|(id, d)| {
            with_registry(d, |reg| {
                let s = reg.span(id)?;
                let mut ext = s.extensions_mut();
                let state = ext.get_mut::<SpanState>()?;
                Some(state.apply(f))
            })
        })
        .flatten();
    match update {
        Some(Some((i, f))) => {
            update_interaction(&i, f);
            true
        }
        Some(None) => true,
        None => false,
    }
}

/// The interaction of the nearest enclosing interaction span, or
/// [`Interaction::noop`] when no interaction span is in scope. Never panics,
/// never sends anything by itself.
///
/// When the current subscriber has no raindrop layer at all (or there is no
/// subscriber), that is a setup mistake: it warns once per process, naming
/// the fix (as a WARN under target `raindrop`, or on stderr when no
/// subscriber would show it). Otherwise (no interaction span in scope, e.g.
/// a spawned future that is not instrumented) it logs one DEBUG line.
pub fn resume_interaction() -> Interaction {
    current_interaction().unwrap_or_else(|| {
        let cause = diag::cause_of_untracked(false);
        if matches!(cause, diag::Cause::NoSubscriber | diag::Cause::NoLayer) {
            diag::warn_untracked(
                cause,
                || "raindrop::resume_interaction() found no interaction (returning a no-op handle)".to_owned(),
                None,
            );
        } else {
            tracing::debug!(target: "raindrop", "resume_interaction(): no interaction span in scope (is the spawned future instrumented?); returning a no-op handle");
        }
        Interaction::noop()
    })
}

/// `Some(max_text_field_chars)` when a raindrop layer tracks `span`.
pub(crate) fn tracked_cap(span: &tracing::Span) -> Option<usize> {
    span.with_subscriber(|(id, d)| {
        with_registry(d, |reg| {
            let s = reg.span(id)?;
            let ext = s.extensions();
            ext.get::<SpanState>().map(SpanState::max_chars)
        })
    })
    .flatten()
}

/// Ends `span` now if a raindrop layer tracks it (at most once per span).
pub(crate) fn complete_span(span: &tracing::Span) {
    let state = span
        .with_subscriber(|(id, d)| {
            with_registry(d, |reg| {
                let s = reg.span(id)?;
                sync_otel_ids(&s, Some(d));
                let mut ext = s.extensions_mut();
                let state = ext.remove::<SpanState>()?;
                // The span may outlive the function: keep what later
                // children need to link to it.
                let _ = ext.replace(Ended {
                    trace_id: state.trace_id,
                    span_id: state.span_id,
                    link: state.link.clone(),
                });
                Some(state)
            })
        })
        .flatten();
    if let Some(state) = state {
        complete(state);
    }
}
