//! The layer: its callbacks, its per-layer filter and how it is built.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use raindrop_core::Client;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Dispatch, Metadata, Subscriber};
use tracing_subscriber::filter::Filtered;
use tracing_subscriber::layer::{Context, Filter, Layer};
use tracing_subscriber::registry::LookupSpan;

use crate::access::{self, VisitScope};
use crate::fields::Fields;
use crate::genai::{self, is_tracked};
use crate::init;
use crate::state::{Entry, NewSpan, SpanState};

/// The [`Layer`] that turns spans marked with `raindrop.kind` into Raindrop
/// interactions and trace spans. Build it with [`layer_for`], which adds the
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
    /// How code holding only a `Span` finds its state in the subscriber this
    /// layer was added to (set by `on_layer`; see `access`).
    visit_scope: Option<VisitScope>,
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
    /// A layer exporting through `client`, without its filter (see [`layer_for`]).
    pub fn new(client: &Client) -> Self {
        RaindropLayer {
            client: Some(client.clone()),
            live: Arc::new(Live::new()),
            dispatch: Arc::default(),
            visit_scope: None,
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
            visit_scope: None,
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

    /// The lookup of spans in this layer's subscriber, once it was added to one.
    pub(crate) fn visit_scope(&self) -> Option<VisitScope> {
        self.visit_scope
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

/// The raindrop layer wrapped in its own per-layer filter: what [`layer_for`] returns.
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
/// let subscriber = tracing_subscriber::registry().with(raindrop_tracing::layer_for(&client));
/// tracing::subscriber::with_default(subscriber, || {
///     let span = tracing::info_span!("chat", raindrop.kind = "interaction", raindrop.user_id = "u-1");
///     let _in = span.enter();
///     assert!(!raindrop_tracing::resume_interaction().is_noop());
/// });
/// ```
#[track_caller]
pub fn layer_for<S>(client: &Client) -> FilteredRaindropLayer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    filtered(
        RaindropLayer::new(client),
        "raindrop::layer_for(&client)",
        "raindrop::RaindropLayer::new(&client)",
    )
}

/// The layer for `client`: the same as [`layer_for`] (the facade's name).
#[deprecated(since = "0.1.0", note = "use `layer_for(&client)` (the same layer)")]
#[track_caller]
pub fn layer<S>(client: &Client) -> FilteredRaindropLayer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    layer_for(client)
}

/// [`layer_for`] for the process-wide client (`raindrop::init`), looked up
/// for each raindrop span: the subscriber may be built before `init`.
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
        "raindrop::global_layer()",
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

impl<S> Layer<S> for RaindropLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_layer(&mut self, _subscriber: &mut S) {
        // How code holding only a `Span` reaches the state (see `access`).
        self.visit_scope = Some(access::visit_scope::<S>);
    }

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
        if span.extensions().get::<Entry>().is_some() {
            // Another raindrop layer in the same subscriber got here first.
            return;
        }
        let name = attrs.metadata().name();
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        let gen = genai::new_span(attrs, &fields);
        let init = init::take_for(name).flatten();
        let fn_name = init.as_ref().map(|i| i.fn_name);
        if let Some(init) = init {
            fields.user_id = init.user_id.or(fields.user_id);
            fields.convo_id = init.convo_id.or(fields.convo_id);
            fields.event = init.event.or(fields.event);
            fields.event_id = init.event_id.or(fields.event_id);
        }
        let dispatch = self.otel_dispatch();
        // The nearest ancestor this layer knows (ordinary spans are skipped).
        let parent = span
            .scope()
            .skip(1)
            .find(|p| p.extensions().get::<Entry>().is_some());
        let parent = parent.and_then(|p| {
            access::sync_otel_ids(&p, dispatch.as_ref());
            access::lineage_in_scope(&p)
        });
        let Some(state) = SpanState::open(NewSpan {
            client: self.client(),
            span_name: name,
            fields,
            gen,
            parent,
            fn_name,
        }) else {
            return;
        };
        let max = state.max_chars();
        // `replace`, not `insert`: never panic, even if another layer raced us.
        let _ = span.extensions_mut().replace(Entry::Open(state));
        access::sync_otel_ids(&span, dispatch.as_ref());
        init::report_recorded(name, max);
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        if crate::llm_attrs::is_langfuse_event(event.metadata()) {
            // swiftide's model, input, output and usage, onto its model span.
            if let Some(span) = ctx.event_span(event) {
                let mut ext = span.extensions_mut();
                if let Some(state) = ext.get_mut::<Entry>().and_then(Entry::open_mut) {
                    state.record_model_event(event);
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
            let Some(state) = ext.get_mut::<Entry>().and_then(Entry::open_mut) else {
                continue;
            };
            state.note_error_event(|| {
                let mut m = Message::default();
                event.record(&mut m);
                m.0.unwrap_or_else(|| "ERROR event".to_owned())
            });
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
        let change = {
            let mut ext = span.extensions_mut();
            let Some(state) = ext.get_mut::<Entry>().and_then(Entry::open_mut) else {
                return;
            };
            if let Some(g) = state.gen_mut() {
                values.record(g);
            }
            if f.is_empty() {
                return;
            }
            state.apply(f)
        };
        if let Some(c) = change {
            c.send();
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
        access::sync_otel_ids(&span, self.otel_dispatch().as_ref());
        // Only an open entry is taken out (the others go with the span).
        let entry = {
            let mut ext = span.extensions_mut();
            match ext.get_mut::<Entry>() {
                Some(Entry::Open(_)) => ext.remove::<Entry>(),
                _ => None,
            }
        };
        if let Some(Entry::Open(state)) = entry {
            access::complete(state);
        }
    }
}
