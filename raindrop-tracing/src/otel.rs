//! Sharing ids with `tracing-opentelemetry` (feature `opentelemetry`).
//!
//! When the subscriber also has `tracing_opentelemetry`'s layer, a raindrop
//! span takes the trace id and span id of the OpenTelemetry span made for
//! the same `tracing` span, so a trace in your own backend and in Raindrop
//! is one trace. Built against `tracing-opentelemetry` 0.34 and
//! `opentelemetry` 0.33 (the versions this crate pins).
//!
//! Either layer order works. The ids are read through
//! `tracing_opentelemetry::get_otel_context`, which starts the OpenTelemetry
//! span if it was not yet (as entering it would): when the OpenTelemetry
//! layer is added **before** the raindrop layer, that happens as the
//! raindrop span is created, so call `OpenTelemetrySpanExt::set_parent` on
//! an ordinary span around it rather than on the raindrop span itself. When
//! it is added after, ids are read when a child is created, when the
//! context is injected into headers, and when the span ends.

use tracing::span::Id;
use tracing::{Dispatch, Metadata};

/// The OpenTelemetry (trace id, span id) of span `id`, if dispatcher `d`
/// has an OpenTelemetry layer that tracks it. `meta` guards against a
/// dispatcher that is not the one the span belongs to. The caller
/// must hold no extensions lock of the span.
pub(crate) fn ids(
    id: &Id,
    meta: &'static Metadata<'static>,
    d: &Dispatch,
) -> Option<([u8; 16], [u8; 8])> {
    use opentelemetry::trace::TraceContextExt as _;
    let same = crate::access::on_span(d, id, |s| Some(std::ptr::eq(s.metadata(), meta)));
    if same != Some(true) {
        return None;
    }
    let cx = tracing_opentelemetry::get_otel_context(id, d)?;
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid()
        .then(|| (sc.trace_id().to_bytes(), sc.span_id().to_bytes()))
}

/// Makes the OpenTelemetry span of `span` a child of the remote parent, so
/// the spans below it are in the caller's trace on both sides.
pub(crate) fn set_remote_parent(
    span: &tracing::Span,
    parent: &raindrop_core::propagation::TraceParent,
) {
    use opentelemetry::trace::{SpanContext, TraceContextExt as _, TraceFlags, TraceState};
    use opentelemetry::trace::{SpanId, TraceId};
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let flags = if parent.sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    let sc = SpanContext::new(
        TraceId::from_bytes(parent.trace_id),
        SpanId::from_bytes(parent.parent_span_id),
        flags,
        true,
        TraceState::default(),
    );
    let cx = opentelemetry::Context::new().with_remote_span_context(sc);
    match span.set_parent(cx) {
        Ok(()) | Err(tracing_opentelemetry::SetParentError::LayerNotFound) => {}
        Err(e) => {
            tracing::debug!(target: "raindrop", "could not set the OpenTelemetry parent of the request span: {e}");
        }
    }
}
