//! The one way from a [`tracing::Span`] (or a dispatcher and a span id) to
//! the raindrop state of the span and its ancestors.
//!
//! As `tracing-opentelemetry`'s `WithContext` does: when the layer is added
//! to a subscriber `S` it stores a function monomorphised for `S`
//! ([`visit_scope::<S>`]), and code holding only a `Dispatch` reaches it with
//! `Dispatch::downcast_ref::<RaindropLayer>()`. The function downcasts the
//! dispatcher to `S` and looks the span up there, so the layer works in any
//! subscriber that implements `LookupSpan`, not only `Registry`.

use raindrop_core::{Interaction, SpanContext};
use tracing::span::Id;
use tracing::{Dispatch, Subscriber};
use tracing_subscriber::registry::{Extensions, ExtensionsMut, LookupSpan, SpanRef};

use crate::fields::Fields;
use crate::layer::RaindropLayer;
use crate::state::{Entry, Lineage, SpanState};

/// One span of the subscriber, whatever its type.
pub(crate) trait SpanView {
    fn extensions(&self) -> Extensions<'_>;
    fn extensions_mut(&self) -> ExtensionsMut<'_>;
    #[cfg(feature = "opentelemetry")]
    fn metadata(&self) -> &'static tracing::Metadata<'static>;
    #[cfg(feature = "opentelemetry")]
    fn id(&self) -> Id;
}

impl<'a, R: LookupSpan<'a>> SpanView for SpanRef<'a, R> {
    fn extensions(&self) -> Extensions<'_> {
        SpanRef::extensions(self)
    }
    fn extensions_mut(&self) -> ExtensionsMut<'_> {
        SpanRef::extensions_mut(self)
    }
    #[cfg(feature = "opentelemetry")]
    fn metadata(&self) -> &'static tracing::Metadata<'static> {
        SpanRef::metadata(self)
    }
    #[cfg(feature = "opentelemetry")]
    fn id(&self) -> Id {
        SpanRef::id(self)
    }
}

/// Visits span `id` of the dispatcher, then (when `up`) its ancestors,
/// nearest first, until the visitor returns `true`.
pub(crate) type VisitScope = fn(&Dispatch, &Id, bool, &mut dyn FnMut(&dyn SpanView) -> bool);

/// [`VisitScope`] for a layer added to a subscriber of type `S`.
pub(crate) fn visit_scope<S>(
    d: &Dispatch,
    id: &Id,
    up: bool,
    visit: &mut dyn FnMut(&dyn SpanView) -> bool,
) where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let mut next = d.downcast_ref::<S>().and_then(|s| s.span(id));
    while let Some(span) = next {
        if visit(&span) || !up {
            return;
        }
        next = span.parent();
    }
}

/// The first `Some` that `f` returns for span `id` and its ancestors,
/// through the raindrop layer of `d`; `None` without one.
pub(crate) fn find_in_scope<T>(
    d: &Dispatch,
    id: &Id,
    mut f: impl FnMut(&dyn SpanView) -> Option<T>,
) -> Option<T> {
    let visit = d.downcast_ref::<RaindropLayer>()?.visit_scope()?;
    let mut found = None;
    visit(d, id, true, &mut |s| {
        found = f(s);
        found.is_some()
    });
    found
}

/// `f` on span `id` itself, through the raindrop layer of `d`.
pub(crate) fn on_span<T>(
    d: &Dispatch,
    id: &Id,
    f: impl FnOnce(&dyn SpanView) -> Option<T>,
) -> Option<T> {
    let mut f = Some(f);
    let visit = d.downcast_ref::<RaindropLayer>()?.visit_scope()?;
    let mut found = None;
    visit(d, id, false, &mut |s| {
        found = f.take().and_then(|f| f(s));
        true
    });
    found
}

/// `f` on the open state of `span`, if a raindrop layer records it. No
/// other lock of the span may be held.
pub(crate) fn with_state<T>(
    span: &tracing::Span,
    f: impl FnOnce(&mut SpanState) -> Option<T>,
) -> Option<T> {
    span.with_subscriber(|(id, d)| {
        on_span(d, id, |s| {
            let mut ext = s.extensions_mut();
            f(ext.get_mut::<Entry>()?.open_mut()?)
        })
    })
    .flatten()
}

/// Makes `span` (one no raindrop layer knows yet) a caller's context that
/// raindrop spans created inside it join: `lineage` gets the client of the
/// raindrop layer; `keep` may add to the span's extensions. Returns whether
/// a raindrop layer took the span.
pub(crate) fn continue_remote(
    span: &tracing::Span,
    lineage: impl FnOnce(raindrop_core::Client) -> Lineage,
    keep: impl FnOnce(&mut ExtensionsMut<'_>),
) -> bool {
    span.with_subscriber(|(id, d)| {
        let client = d.downcast_ref::<RaindropLayer>()?.client();
        on_span(d, id, |s| {
            let mut ext = s.extensions_mut();
            if ext.get_mut::<Entry>().is_some() {
                return None; // already a raindrop span
            }
            let _ = ext.replace(Entry::Remote(lineage(client)));
            keep(&mut ext);
            Some(())
        })
    })
    .flatten()
    .is_some()
}

/// The lineage of `s`, if the layer knows it (to find the nearest one in a
/// scope with [`find_in_scope`]).
pub(crate) fn lineage_in_scope(s: &dyn SpanView) -> Option<Lineage> {
    s.extensions().get::<Entry>().map(|e| e.lineage().clone())
}

/// The interaction of span `id` or of its nearest interaction ancestor.
fn interaction_of(d: &Dispatch, id: &Id) -> Option<Interaction> {
    find_in_scope(d, id, lineage_in_scope)
        .and_then(|l| l.link)
        .map(|l| l.interaction)
}

/// Applies `f` to the raindrop state of `span`, without recording anything
/// on the span itself. Returns whether a raindrop layer records the span.
pub(crate) fn apply_to_span(span: &tracing::Span, f: Fields) -> bool {
    match with_state(span, |s| Some(s.apply(f))) {
        Some(change) => {
            if let Some(c) = change {
                c.send();
            }
            true
        }
        None => false,
    }
}

/// `Some(max_text_field_chars)` when a raindrop layer records `span`.
pub(crate) fn tracked_cap(span: &tracing::Span) -> Option<usize> {
    if span.is_disabled() {
        return None;
    }
    with_state(span, |s| Some(s.max_chars()))
}

/// Ends `span` now if a raindrop layer records it (at most once per span):
/// `f` gets its last change first.
pub(crate) fn complete_span_with(span: &tracing::Span, f: Option<Fields>) {
    span.with_subscriber(|(id, d)| {
        on_span(d, id, |s| {
            sync_otel_ids(s, Some(d));
            let (state, change) = {
                let mut ext = s.extensions_mut();
                let Entry::Open(state) = ext.get_mut::<Entry>()? else {
                    return None;
                };
                let change = f.and_then(|f| state.apply(f));
                // The span may outlive the function: keep what later
                // children need to link to it.
                let lineage = state.lineage().clone();
                let Some(Entry::Open(state)) = ext.replace(Entry::Ended(lineage)) else {
                    return None;
                };
                (state, change)
            };
            // Outside the extensions lock: what follows may log.
            if let Some(c) = change {
                c.send();
            }
            complete(state);
            Some(())
        })
    });
}

/// Takes the ids of the OpenTelemetry span made for the same `tracing` span
/// into its raindrop state (feature `opentelemetry`; see `crate::otel`).
/// No extensions lock of the span may be held.
#[cfg(feature = "opentelemetry")]
pub(crate) fn sync_otel_ids(span: &dyn SpanView, dispatch: Option<&Dispatch>) {
    let Some(d) = dispatch else {
        return;
    };
    let open = |e: &Extensions<'_>| matches!(e.get::<Entry>(), Some(Entry::Open(_)));
    if !open(&span.extensions()) {
        return;
    }
    if let Some((trace_id, span_id)) = crate::otel::ids(&span.id(), span.metadata(), d) {
        if let Some(st) = span
            .extensions_mut()
            .get_mut::<Entry>()
            .and_then(Entry::open_mut)
        {
            st.set_ids(trace_id, span_id);
        }
    }
}

#[cfg(not(feature = "opentelemetry"))]
#[inline(always)]
pub(crate) fn sync_otel_ids(_: &dyn SpanView, _: Option<&Dispatch>) {}

/// Ends `span` now if a raindrop layer records it (at most once per span).
pub(crate) fn complete_span(span: &tracing::Span) {
    complete_span_with(span, None);
}

/// Ends a span: finishes its interaction (if it is one) and exports it.
///
/// The one way a raindrop span ends, from whichever comes first: the
/// macro's function returning ([`complete_span_with`], which leaves an
/// [`Entry::Ended`] for children created later under a span that lives on)
/// or the span closing (`on_close`). The state is taken out of the span's
/// extensions either way, so it runs once.
pub(crate) fn complete(state: SpanState) {
    let client = state.client().clone();
    client.export_sampled_span(state.finish());
}

/// The interaction of the nearest enclosing interaction span, walking up from
/// the current span through any ordinary spans; `None` when there is none.
#[deprecated(
    since = "0.1.0",
    note = "use `resume_interaction()` (a no-op handle, `is_noop()`, when there is none), or `Span::current().interaction()` to skip its warning"
)]
pub fn current_interaction() -> Option<Interaction> {
    interaction_in_scope()
}

/// The interaction of the nearest enclosing interaction span, if any.
pub(crate) fn interaction_in_scope() -> Option<Interaction> {
    tracing::dispatcher::get_default(|d| {
        let id = d.current_span().id()?.clone();
        interaction_of(d, &id)
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
/// let subscriber = tracing_subscriber::registry().with(raindrop_tracing::layer_for(&client));
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
        let l = find_in_scope(d, &id, lineage_in_scope)?;
        Some(SpanContext {
            trace_id: l.trace_id,
            span_id: l.span_id,
        })
    })
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
    interaction_in_scope().unwrap_or_else(|| {
        let cause = crate::diag::cause_of_untracked(false);
        if matches!(cause, crate::diag::Cause::NoSubscriber | crate::diag::Cause::NoLayer) {
            crate::diag::warn_untracked(
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
    fn set_property(&self, key: impl Into<String>, value: impl Into<serde_json::Value>);
}

impl RaindropSpanExt for tracing::Span {
    fn interaction(&self) -> Interaction {
        self.with_subscriber(|(id, d)| interaction_of(d, id))
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

    fn set_property(&self, key: impl Into<String>, value: impl Into<serde_json::Value>) {
        let f = Fields {
            properties: vec![(key.into(), value.into())],
            ..Fields::default()
        };
        apply_to_span(self, f);
    }
}
