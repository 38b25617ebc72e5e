//! Detached sub-agents over HTTP and `tracing` (see
//! [`raindrop_core::handoff`] for the carrier and its trust rules).

use crate::state::{Lineage, Link};
use http::{HeaderMap, HeaderValue};
use raindrop_core::handoff::{Handoff, HandoffError, Subagent};
use raindrop_core::propagation::{CarrierRefusal, CarrierTrust};
use raindrop_core::Client;

/// Launches a detached sub-agent from the current interaction (see
/// [`Interaction::subagent`](raindrop_core::Interaction::subagent)): the
/// dispatch span (`ai.subagent.dispatch`) is a child of the current
/// raindrop span, in its trace. `None` outside any interaction.
///
/// ```
/// use raindrop_core::{Client, ClientOptions};
/// use tracing_subscriber::prelude::*;
///
/// let client = Client::new(ClientOptions::default().write_key("k").endpoint("http://127.0.0.1:9")).unwrap();
/// let subscriber = tracing_subscriber::registry().with(raindrop_tracing::layer_for(&client));
/// tracing::subscriber::with_default(subscriber, || {
///     assert!(raindrop_tracing::propagate::subagent("writer").is_none());
///     let turn = tracing::info_span!("chat", raindrop.kind = "interaction", raindrop.user_id = "u-1");
///     let handoff = turn.in_scope(|| raindrop_tracing::propagate::subagent("writer")).unwrap();
///     let mut headers = http::HeaderMap::new();
///     raindrop_tracing::propagate::inject_handoff(&handoff, &mut headers);
///     assert!(headers.contains_key("x-raindrop-handoff"));
/// });
/// ```
pub fn subagent(name: impl Into<String>) -> Option<Handoff> {
    let cx = super::current_context()?;
    let interaction = crate::access::interaction_in_scope()?;
    interaction.subagent_in(Some((cx.trace_id, cx.span_id)), name)
}

/// Writes a hand-off into request headers: `traceparent`, `baggage` (its
/// members replace any `baggage` already there: the child reads them),
/// `x-raindrop-handoff` and `x-raindrop-signature`.
pub fn inject_handoff(handoff: &Handoff, headers: &mut HeaderMap) {
    for (k, v) in handoff.to_map() {
        if let (Ok(name), Ok(value)) = (
            http::header::HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(&v),
        ) {
            headers.insert(name, value);
        }
    }
}

/// Reads a hand-off from request headers (see
/// [`Handoff::from_pairs`]): `Ok(None)` when they carry none. Header
/// values that are not text are skipped.
pub fn extract_handoff(headers: &HeaderMap) -> Result<Option<Handoff>, HandoffError> {
    Handoff::from_pairs(
        headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?))),
    )
}

/// What holds a sub-agent's run while the span made by [`subagent_span`]
/// is open: when the span closes unfinished, the run is cancelled.
struct HeldRun(#[allow(dead_code)] Subagent);

/// A span in which a sub-agent's run happens: raindrop spans created inside
/// it (at any depth) join the launcher's trace under its dispatch span,
/// belong to the child's event and carry the `raindrop.handoff.*` link; an
/// interaction span inside it is the child's event (and finishes it when it
/// ends); `resume_interaction()` returns the child's interaction. The span
/// holds the run: if it closes while the run is unfinished (and no other
/// [`Subagent`] handle lives), the run is cancelled.
///
/// It is an INFO span named `raindrop.subagent`, not exported itself.
/// Without a raindrop layer it is disabled and does nothing.
pub fn subagent_span(run: &Subagent) -> tracing::Span {
    let span = tracing::info_span!("raindrop.subagent", raindrop.kind = tracing::field::Empty);
    let link = run.link().clone();
    let lineage = |_| Lineage {
        trace_id: link.trace_id(),
        span_id: link.dispatch_span_id(),
        link: Some(Link {
            subagent: Some(link.clone()),
            ..Link::new(run.interaction().clone(), link.name())
        }),
    };
    crate::access::continue_remote(&span, lineage, |ext| {
        let _ = ext.replace(HeldRun(run.clone()));
    });
    #[cfg(feature = "opentelemetry")]
    crate::otel::set_remote_parent(
        &span,
        &raindrop_core::propagation::TraceParent {
            trace_id: link.trace_id(),
            parent_span_id: link.dispatch_span_id(),
            sampled: true,
        },
    );
    span
}

/// The request span for a hand-off in `headers`, if they carry one: the
/// sub-agent's run when it is accepted, else only the trace (a refused or
/// malformed hand-off, counted and warned). `None` without a hand-off.
#[cfg(feature = "tower")]
pub(crate) fn handoff_span(headers: &HeaderMap, trust: CarrierTrust) -> Option<tracing::Span> {
    let parsed = extract_handoff(headers);
    if matches!(parsed, Ok(None)) {
        return None;
    }
    let client = tracing::dispatcher::get_default(|d| {
        d.downcast_ref::<crate::layer::RaindropLayer>()
            .map(|l| l.client().clone())
    });
    let run = match (&parsed, client) {
        (Ok(Some(h)), Some(c)) => c.resume_subagent_with(h, trust).map_err(Some),
        (Err(e), Some(c)) => {
            c.refuse_malformed_handoff(e);
            Err(None)
        }
        _ => Err(None::<CarrierRefusal>),
    };
    match run {
        Ok(run) => Some(subagent_span(&run)),
        // Refused: continue the launcher's trace only.
        Err(_) => Some(trace_only(headers, parsed.ok().flatten())),
    }
}

#[cfg(feature = "tower")]
fn trace_only(headers: &HeaderMap, handoff: Option<Handoff>) -> tracing::Span {
    let parent = match handoff {
        Some(h) => Some(h.trace_parent()),
        None => headers
            .get(raindrop_core::propagation::TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(raindrop_core::propagation::TraceParent::parse),
    };
    match parent {
        Some(parent) => super::RemoteContext {
            parent,
            baggage: Default::default(),
            finish_delegated: false,
        }
        .span(),
        None => tracing::Span::none(),
    }
}

/// Starts a sub-agent's run from `handoff` with `client` and returns it
/// with its span ([`subagent_span`]); a refused hand-off is counted and
/// warned. For a job worker reading the carrier from a payload.
pub fn resume_subagent(
    client: &Client,
    handoff: &Handoff,
    trust: CarrierTrust,
) -> Result<(Subagent, tracing::Span), CarrierRefusal> {
    let run = client.resume_subagent_with(handoff, trust)?;
    let span = subagent_span(&run);
    Ok((run, span))
}
