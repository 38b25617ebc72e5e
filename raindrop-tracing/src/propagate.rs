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
//! updates (properties, ...) merge into the same event by its event id.
//! B's `resume_interaction().finish(..)` is refused (counted in
//! `Stats::joined_finishes_refused`, warned) unless A delegated it with
//! [`inject_with`]`(headers, InjectOptions::new().delegate_finish())`; then
//! the first final update to arrive wins. B cannot change the event's user:
//! a `user_id` set in B differing from A's is refused
//! (`Stats::joined_user_changes_refused`). A's own second finish is counted
//! in `Stats::finishes_ignored` and warned.
//!
//! ## Signed carriers
//!
//! Event ids are not secrets (they reach front ends for feedback), so a
//! `baggage` naming one proves nothing. [`inject`] also writes
//! `x-raindrop-signature` (format in
//! [`CarrierKey`](raindrop_core::propagation::CarrierKey)): HMAC-SHA256 over
//! the trace id, the raindrop baggage members, a timestamp and the
//! delegation flag, with a key the services share:
//! `RAINDROP_PROPAGATION_SECRET` (`ClientOptions::propagation_secret`), or
//! when unset one derived from the write key, so services of one project
//! agree with no new setting. [`extract`] keeps the raindrop baggage only if
//! the signature verifies (constant-time) and its timestamp is within the
//! replay window (`ClientOptions::propagation_replay_window`, 5 minutes
//! either way: a captured carrier can be replayed into the same
//! interaction for that long, and clocks may differ by that much).
//!
//! An unsigned, altered, foreign-key or stale carrier **continues the W3C
//! trace only**: its spans join the caller's trace id, but the request
//! joins no interaction (an interaction span there begins its own event),
//! it is counted (`Stats::carriers_unsigned`, `carriers_bad_signature`,
//! `carriers_stale`) and warned at most every 30 s per cause. A trace id is
//! correlation any W3C caller may choose, and raindrop ties spans to an
//! event only through the event id; the interaction carries a user's
//! content, identity and outcome, so it is what is guarded.
//!
//! Where the network is the boundary (a mesh with mTLS, no outside
//! callers), `tower::PropagationLayer::trust_unsigned()` or
//! `RAINDROP_PROPAGATION_TRUST=unsigned` joins unsigned carriers (a signed
//! carrier's delegation flag is still read). With no secret and no write key
//! (local development), a client signs with a random key only its process
//! knows, said once in a warning: services in one process join each other,
//! services in two processes continue traces only until they share a
//! `RAINDROP_PROPAGATION_SECRET`.
//!
//! ## Detached sub-agents
//!
//! [`subagent`] launches work that runs elsewhere and reports as its own
//! event, linked to the current interaction; [`inject_handoff`] puts its
//! carrier on a request, and `tower::PropagationLayer` starts the child's
//! run (its spans carry the `raindrop.handoff.*` link) when a request
//! carries a hand-off. The carrier is the Python SDK's, signed; see
//! [`raindrop_core::handoff`] for the format, the trust rules and the API
//! for job workers ([`resume_subagent`], [`Handoff::fail`]).
//!
//! ## Cross-language carriers
//!
//! [`inject`] writes this SDK's spelling (`raindrop.event_id`,
//! `raindrop.user_id`, `raindrop.convo_id`, `raindrop.event`); [`extract`]
//! reads it and the Python SDK's (`raindrop-event-id`, `raindrop-user-id`,
//! `raindrop-convo-id`). Hand-offs are written in the Python spelling (the
//! only one Python reads) and read in both. The Python SDK does not sign:
//! a Rust service joins a Python caller's interaction, or runs a Python
//! launcher's sub-agent, only when it trusts unsigned carriers
//! (`PropagationLayer::trust_unsigned()`, `RAINDROP_PROPAGATION_TRUST=unsigned`).
//!
//! A remote carrier never hands out the handle of an interaction live in
//! the receiving process, even one with the same event id: the request gets
//! a handle of its own that merges into the event by id.
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
//! let subscriber = tracing_subscriber::registry().with(raindrop_tracing::layer_for(&client));
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

use crate::access::{find_in_scope, lineage_in_scope, sync_otel_ids};
use crate::layer::RaindropLayer;
use crate::state::{Lineage, Link};
use http::{HeaderMap, HeaderValue};
pub use raindrop_core::propagation::{
    CarrierGrant, CarrierRefusal, CarrierTrust, InteractionBaggage, TraceParent, REPLAY_WINDOW,
    SIGNATURE,
};
use raindrop_core::propagation::{BAGGAGE, TRACEPARENT};
use raindrop_core::Client;

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

    /// Writes `traceparent` and `baggage` into `headers`, **unsigned**
    /// (a receiving service joins the interaction only if it trusts
    /// unsigned carriers; [`inject`] signs). Members of an
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
        find_in_scope(d, id, |s| {
            lineage_in_scope(s)?;
            sync_otel_ids(s, Some(d));
            lineage_in_scope(s)
        })
    })
    .flatten()
    .map(
        |Lineage {
             trace_id,
             span_id,
             link,
         }| {
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
        },
    )
}

/// Writes the current raindrop span's context into `headers` (see the
/// module docs), signed with the client's key; returns whether there was
/// one. Never panics. The same as [`inject_with`] with default options (the
/// receiving service may not finish the interaction).
///
/// ```
/// let mut headers = http::HeaderMap::new();
/// // Outside any raindrop span there is nothing to send.
/// assert!(!raindrop_tracing::propagate::inject(&mut headers));
/// assert!(headers.is_empty());
/// ```
pub fn inject(headers: &mut HeaderMap) -> bool {
    inject_with(headers, InjectOptions::new())
}

/// What a signed carrier grants the service it is sent to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct InjectOptions {
    /// The receiving service may finish the interaction (default: only the
    /// service that began it does).
    pub delegate_finish: bool,
}

impl InjectOptions {
    /// Nothing delegated.
    pub fn new() -> Self {
        InjectOptions::default()
    }

    /// Lets the receiving service finish the interaction
    /// (`resume_interaction().finish(..)` there is accepted instead of
    /// refused). Covered by the signature, so it cannot be added on the way.
    pub fn delegate_finish(mut self) -> Self {
        self.delegate_finish = true;
        self
    }
}

/// Writes the current raindrop span's context into `headers` like
/// [`inject`], with `options` in the signed part; returns whether there was
/// a context. Never panics.
///
/// ```
/// use raindrop_tracing::propagate::{inject_with, InjectOptions};
/// let mut headers = http::HeaderMap::new();
/// assert!(!inject_with(&mut headers, InjectOptions::new().delegate_finish()));
/// ```
pub fn inject_with(headers: &mut HeaderMap, options: InjectOptions) -> bool {
    let span = tracing::Span::current();
    let Some(cx) = span_context(&span) else {
        return false;
    };
    cx.inject_into(headers);
    // A signature forwarded from an earlier hop never travels with ours.
    headers.remove(SIGNATURE);
    if cx.baggage.is_empty() {
        return true;
    }
    // Sign what the receiver will read back: the raindrop members actually
    // in the header (the W3C limits may have kept an older one).
    let sent = read_baggage(headers);
    let signature = client_of(&span)
        .and_then(|c| c.sign_carrier(&cx.trace_id, &sent, options.delegate_finish))
        .and_then(|v| HeaderValue::from_str(&v).ok());
    if let Some(v) = signature {
        headers.insert(SIGNATURE, v);
    }
    true
}

/// The client of the raindrop layer recording `span`.
fn client_of(span: &tracing::Span) -> Option<Client> {
    span.with_subscriber(|(_, d)| {
        d.downcast_ref::<RaindropLayer>()
            .map(|l| l.client().clone())
    })
    .flatten()
}

/// A caller's context read from request headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteContext {
    /// The caller's trace and span.
    pub parent: TraceParent,
    /// The caller's interaction (empty when it sent none, or when its
    /// carrier was refused).
    pub baggage: InteractionBaggage,
    /// The caller delegated finishing its interaction to this service.
    pub finish_delegated: bool,
}

/// Longest `baggage` read, over all its header lines together (the W3C limit).
const MAX_BAGGAGE: usize = 8192;

/// Reads `traceparent`, `baggage` and `x-raindrop-signature` from
/// `headers`. `None` when there is no valid `traceparent` (one header line,
/// as the spec requires); a bad `baggage` is dropped and the trace still
/// continues. The raindrop baggage is kept only when its signature verifies
/// with the current raindrop layer's client and is fresh, or when that
/// client trusts unsigned carriers (`RAINDROP_PROPAGATION_TRUST=unsigned`);
/// otherwise it is emptied (counted in the client's `stats()`, warned) and
/// only the trace continues. Never panics; allocates at most the bounded
/// header size.
///
/// ```
/// let mut h = http::HeaderMap::new();
/// h.insert("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().unwrap());
/// h.insert("baggage", "raindrop.event_id=e-1,team=ai".parse().unwrap());
/// // Unsigned: the trace continues, the interaction is not joined.
/// let remote = raindrop_tracing::propagate::extract(&h).unwrap();
/// assert_eq!(remote.parent.trace_id[0], 0x4b);
/// assert!(remote.baggage.is_empty());
///
/// h.insert("traceparent", "not a traceparent".parse().unwrap());
/// assert!(raindrop_tracing::propagate::extract(&h).is_none());
/// ```
pub fn extract(headers: &HeaderMap) -> Option<RemoteContext> {
    extract_with(headers, CarrierTrust::Signed)
}

/// [`extract`], trusting unsigned carriers when `trust` is
/// [`CarrierTrust::Unsigned`] (what `PropagationLayer::trust_unsigned`
/// uses). [`CarrierTrust::Signed`] leaves it to the client's
/// `propagation_trust` option.
///
/// ```
/// use raindrop_tracing::propagate::{extract_with, CarrierTrust};
/// use raindrop_core::{Client, ClientOptions};
/// use tracing_subscriber::prelude::*;
///
/// let client = Client::new(ClientOptions::default()).unwrap();
/// let subscriber = tracing_subscriber::registry().with(raindrop_tracing::layer_for(&client));
/// let mut h = http::HeaderMap::new();
/// h.insert("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().unwrap());
/// h.insert("baggage", "raindrop.event_id=e-1".parse().unwrap());
/// tracing::subscriber::with_default(subscriber, || {
///     let trusted = extract_with(&h, CarrierTrust::Unsigned).unwrap();
///     assert_eq!(trusted.baggage.event_id.as_deref(), Some("e-1"));
///     let checked = extract_with(&h, CarrierTrust::Signed).unwrap();
///     assert!(checked.baggage.is_empty());
/// });
/// assert_eq!(client.stats().carriers_unsigned, 1);
/// ```
pub fn extract_with(headers: &HeaderMap, trust: CarrierTrust) -> Option<RemoteContext> {
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
    let mut baggage = read_baggage(headers);
    let mut finish_delegated = false;
    if !baggage.is_empty() {
        let client = tracing::dispatcher::get_default(|d| {
            d.downcast_ref::<RaindropLayer>()
                .map(|l| l.client().clone())
        });
        let grant = match client {
            Some(c) => c
                .accept_carrier(read_signature(headers), &parent.trace_id, &baggage, trust)
                .ok(),
            // No raindrop layer: nothing would be recorded; join nothing.
            None => None,
        };
        match grant {
            Some(g) => finish_delegated = g.delegate_finish,
            None => baggage = InteractionBaggage::default(),
        }
    }
    Some(RemoteContext {
        parent,
        baggage,
        finish_delegated,
    })
}

/// The one `x-raindrop-signature` line, if there is exactly one and it is text.
fn read_signature(headers: &HeaderMap) -> Option<&str> {
    let mut lines = headers.get_all(SIGNATURE).iter();
    let first = lines.next()?;
    if lines.next().is_some() {
        return None;
    }
    first.to_str().ok()
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
        let lineage = |client: Client| {
            let grant = CarrierGrant {
                delegate_finish: self.finish_delegated,
            };
            let workflow = self.baggage.event.as_deref().unwrap_or("interaction");
            let link = client
                .join_remote(&self.baggage, grant)
                .map(|interaction| Link {
                    remote: true,
                    ..Link::new(interaction, workflow)
                });
            Lineage {
                trace_id: self.parent.trace_id,
                span_id: self.parent.parent_span_id,
                link,
            }
        };
        let took = crate::access::continue_remote(span, lineage, |_| {});
        #[cfg(feature = "opentelemetry")]
        crate::otel::set_remote_parent(span, &self.parent);
        took
    }
}

mod subagent;
pub use raindrop_core::handoff::{Handoff, HandoffError, Subagent, SubagentLink};
#[cfg(feature = "tower")]
pub(crate) use subagent::handoff_span;
pub use subagent::{extract_handoff, inject_handoff, resume_subagent, subagent, subagent_span};

#[cfg(feature = "tower")]
pub mod tower;

#[cfg(feature = "reqwest-middleware")]
pub mod reqwest_middleware;
