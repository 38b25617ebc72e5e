//! One interaction across services: W3C `traceparent` and `baggage` on HTTP
//! requests.
//!
//! * **Inject** (the calling service, A): [`inject`] writes the current
//!   raindrop span's context into an [`http::HeaderMap`]: `traceparent`
//!   (the trace id, the id of the current raindrop span as the parent, the
//!   sampled flag) and `baggage` with the interaction's `raindrop.event_id`,
//!   `raindrop.user_id`, `raindrop.convo_id` and `raindrop.event` (foreign
//!   baggage members already in the map are kept). With the
//!   `reqwest-middleware` feature, `reqwest_middleware::InjectMiddleware`
//!   does it for every request of a `reqwest_middleware::ClientWithMiddleware`.
//! * **Extract** (the called service, B): [`extract`] reads them back into a
//!   [`RemoteContext`], whose [`span`](RemoteContext::span) makes the spans
//!   created inside it continue the caller's context. With the `tower`
//!   feature, `tower::PropagationLayer` does it for every request of an
//!   axum, tonic or hyper server.
//!
//! Inside a request that carries an interaction:
//!
//! * raindrop task and tool spans join the caller's trace (same trace id),
//!   parented under the caller's span that made the request;
//! * an interaction span (`#[raindrop::interaction]`) **joins** the caller's
//!   interaction (same event id) instead of beginning a new one: its
//!   properties, user and convo id update the caller's event, and it is
//!   exported as a span of the caller's trace;
//! * `resume_interaction()` returns a handle on the caller's event.
//!
//! **Which side finishes:** the service that began the interaction. A
//! joined interaction span closing in B does not finish the event; B's
//! updates (properties, ...) merge into the same event by its event id. B
//! finishes it only when it calls `resume_interaction().finish(..)` itself
//! (then A's later finish is the one ignored in the process that made it;
//! across processes, the first final update to arrive wins).
//!
//! Headers come from other machines: a malformed, oversized or duplicated
//! `traceparent` or a bad `baggage` is ignored with a DEBUG line under
//! target `raindrop` (never a panic, and reading allocates at most the
//! bounded header size), and `baggage` can set only the four keys above.
//! Baggage is only used together with a valid `traceparent`.
//!
//! ```
//! use raindrop_core::{Client, ClientOptions};
//! use raindrop_tracing::propagate;
//! use tracing_subscriber::prelude::*;
//!
//! let client = Client::new(ClientOptions::default()).unwrap();
//! let subscriber = tracing_subscriber::registry().with(raindrop_tracing::layer(&client));
//! tracing::subscriber::with_default(subscriber, || {
//!     // Service A: an interaction calls B.
//!     let chat = tracing::info_span!("chat", raindrop.kind = "interaction", raindrop.user_id = "u-1");
//!     let mut headers = http::HeaderMap::new();
//!     let event_id = chat.in_scope(|| {
//!         assert!(propagate::inject(&mut headers));
//!         raindrop_tracing::resume_interaction().event_id().map(str::to_owned)
//!     });
//!
//!     // Service B: the request's headers continue A's interaction.
//!     let remote = propagate::extract(&headers).unwrap();
//!     assert_eq!(remote.baggage.event_id, event_id);
//!     remote.span().in_scope(|| {
//!         let i = raindrop_tracing::resume_interaction();
//!         assert_eq!(i.event_id().map(str::to_owned), event_id);
//!         i.set_property("served_by", "b");
//!     });
//! });
//! ```

use http::{HeaderMap, HeaderValue};
pub use raindrop_core::propagation::{InteractionBaggage, TraceParent};
use raindrop_core::propagation::{BAGGAGE, TRACEPARENT};
use tracing_subscriber::registry::{LookupSpan, Registry};

use crate::layer::{lineage, sync_otel_ids, Ended, Link, RaindropLayer, SpanState};

/// The context of a raindrop span as it travels to another service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanContext {
    /// The trace id.
    pub trace_id: [u8; 16],
    /// The id of the raindrop span (the remote side's parent).
    pub span_id: [u8; 8],
    /// Whether the interaction is sampled (true outside any interaction).
    pub sampled: bool,
    /// The interaction's fields (empty outside any interaction).
    pub baggage: InteractionBaggage,
}

impl SpanContext {
    /// The `traceparent` this context sends.
    pub fn trace_parent(&self) -> TraceParent {
        TraceParent {
            trace_id: self.trace_id,
            parent_span_id: self.span_id,
            sampled: self.sampled,
        }
    }

    /// Writes `traceparent` and `baggage` into `headers`. Members of an
    /// existing `baggage` header that are not raindrop's are kept; if the
    /// result would break the W3C size limits the existing header is left
    /// as it was.
    pub fn inject_into(&self, headers: &mut HeaderMap) {
        if let Ok(v) = HeaderValue::from_str(&self.trace_parent().to_header()) {
            headers.insert(TRACEPARENT, v);
        }
        if self.baggage.is_empty() {
            return;
        }
        let existing = match headers.get(BAGGAGE).map(|v| v.to_str()) {
            None => None,
            Some(Ok(s)) => Some(s),
            // Not ours to rewrite.
            Some(Err(_)) => return,
        };
        if let Some(v) = self
            .baggage
            .inject(existing)
            .and_then(|b| HeaderValue::from_str(&b).ok())
        {
            headers.insert(BAGGAGE, v);
        }
    }
}

/// The context of the nearest raindrop span around the current span (through
/// any ordinary spans); `None` outside raindrop spans or without a raindrop
/// layer.
pub fn current_context() -> Option<SpanContext> {
    span_context(&tracing::Span::current())
}

/// The context of the nearest raindrop span at or above `span`.
pub fn span_context(span: &tracing::Span) -> Option<SpanContext> {
    span.with_subscriber(|(id, d)| {
        let reg = d.downcast_ref::<Registry>()?;
        let span = reg.span(id)?;
        let nearest = span.scope().find(|s| lineage(&s.extensions()).is_some())?;
        sync_otel_ids(&nearest, Some(d));
        let found = lineage(&nearest.extensions());
        found
    })
    .flatten()
    .map(|(trace_id, span_id, link)| {
        let (sampled, baggage) = match link {
            Some(l) => {
                let i = &l.interaction;
                let b = InteractionBaggage {
                    event_id: i.event_id().map(str::to_owned),
                    user_id: i.user_id(),
                    convo_id: i.convo_id(),
                    event: i.event_name(),
                };
                (i.is_noop() || i.is_sampled(), b)
            }
            None => (true, InteractionBaggage::default()),
        };
        SpanContext {
            trace_id,
            span_id,
            sampled,
            baggage,
        }
    })
}

/// Writes the current raindrop span's context into `headers` (see the
/// module docs); returns whether there was one. Never panics.
///
/// ```
/// let mut headers = http::HeaderMap::new();
/// // Outside any raindrop span there is nothing to send.
/// assert!(!raindrop_tracing::propagate::inject(&mut headers));
/// assert!(headers.is_empty());
/// ```
pub fn inject(headers: &mut HeaderMap) -> bool {
    match current_context() {
        Some(cx) => {
            cx.inject_into(headers);
            true
        }
        None => false,
    }
}

/// A caller's context read from request headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteContext {
    /// The caller's trace and span.
    pub parent: TraceParent,
    /// The caller's interaction (empty when it sent none).
    pub baggage: InteractionBaggage,
}

/// Longest `baggage` read, over all its header lines together (the W3C limit).
const MAX_BAGGAGE: usize = 8192;

/// Reads `traceparent` and `baggage` from `headers`. `None` when there is no
/// valid `traceparent` (one header line, as the spec requires); a bad
/// `baggage` is dropped and the trace still continues. Never panics;
/// allocates at most the bounded header size.
///
/// ```
/// let mut h = http::HeaderMap::new();
/// h.insert("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().unwrap());
/// h.insert("baggage", "raindrop.event_id=e-1,team=ai".parse().unwrap());
/// let remote = raindrop_tracing::propagate::extract(&h).unwrap();
/// assert_eq!(remote.baggage.event_id.as_deref(), Some("e-1"));
///
/// h.insert("traceparent", "not a traceparent".parse().unwrap());
/// assert!(raindrop_tracing::propagate::extract(&h).is_none());
/// ```
pub fn extract(headers: &HeaderMap) -> Option<RemoteContext> {
    let mut lines = headers.get_all(TRACEPARENT).iter();
    let first = lines.next()?;
    if lines.next().is_some() {
        tracing::debug!(target: "raindrop", "ignored the incoming traceparent: more than one header line");
        return None;
    }
    let Ok(text) = first.to_str() else {
        tracing::debug!(target: "raindrop", "ignored the incoming traceparent: not visible ASCII");
        return None;
    };
    let parent = TraceParent::parse(text)?;
    Some(RemoteContext {
        parent,
        baggage: read_baggage(headers),
    })
}

fn read_baggage(headers: &HeaderMap) -> InteractionBaggage {
    let mut joined = String::new();
    for line in headers.get_all(BAGGAGE) {
        let Ok(text) = line.to_str() else {
            tracing::debug!(target: "raindrop", "ignored the incoming baggage: not visible ASCII");
            return InteractionBaggage::default();
        };
        if joined.len() + text.len() + 1 > MAX_BAGGAGE {
            tracing::debug!(target: "raindrop", "ignored the incoming baggage: over 8192 bytes");
            return InteractionBaggage::default();
        }
        if !joined.is_empty() {
            joined.push(',');
        }
        joined.push_str(text);
    }
    InteractionBaggage::extract(&joined)
}

impl RemoteContext {
    /// A span continuing this context: raindrop spans created inside it
    /// (at any depth, through ordinary spans) join the caller's trace under
    /// the caller's span, an interaction span joins the caller's interaction,
    /// and `resume_interaction()` returns a handle on it. Enter it, or
    /// instrument the request's future with it (what
    /// `tower::PropagationLayer` does).
    ///
    /// It is an INFO span named `raindrop.remote` declaring only an empty
    /// `raindrop.kind` (nothing of the request is recorded on it, and it is
    /// not exported). Without a raindrop layer it is disabled and does nothing.
    pub fn span(&self) -> tracing::Span {
        let span = tracing::info_span!("raindrop.remote", raindrop.kind = tracing::field::Empty);
        self.continue_in(&span);
        span
    }

    /// Makes `span` (one no raindrop layer tracks yet, e.g. one you made
    /// for the request, declaring `raindrop.kind = tracing::field::Empty`)
    /// continue this context. Returns whether a raindrop layer took it.
    pub fn continue_in(&self, span: &tracing::Span) -> bool {
        let took = span
            .with_subscriber(|(id, d)| {
                let client = d.downcast_ref::<RaindropLayer>()?.client();
                let reg = d.downcast_ref::<Registry>()?;
                let s = reg.span(id)?;
                let link = client.resume_remote(&self.baggage).map(|interaction| Link {
                    workflow: self
                        .baggage
                        .event
                        .as_deref()
                        .unwrap_or("interaction")
                        .into(),
                    interaction,
                    remote: true,
                    calls: crate::layer::genai::Calls::new(),
                });
                let mut ext = s.extensions_mut();
                if ext.get_mut::<SpanState>().is_some() || ext.get_mut::<Ended>().is_some() {
                    return None; // already a raindrop span
                }
                let _ = ext.replace(Ended {
                    trace_id: self.parent.trace_id,
                    span_id: self.parent.parent_span_id,
                    link,
                });
                Some(())
            })
            .flatten()
            .is_some();
        #[cfg(feature = "opentelemetry")]
        crate::otel::set_remote_parent(span, &self.parent);
        took
    }
}

#[cfg(feature = "tower")]
pub mod tower;

#[cfg(feature = "reqwest-middleware")]
pub mod reqwest_middleware;
