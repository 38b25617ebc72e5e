//! A `tower` layer continuing the caller's context on each request (feature
//! `tower`).

use std::task::{Context, Poll};

use tracing::instrument::{Instrument, Instrumented};

use super::CarrierTrust;

/// Wraps a service so each request continues the context in its
/// `traceparent` and `baggage` headers (see [`super::RemoteContext::span`]):
/// the request's future runs inside a span whose raindrop spans join the
/// caller's trace, and its interaction when the carrier's
/// `x-raindrop-signature` verifies (see [`super::extract`]; an unsigned or
/// bad one continues the trace only, counted and warned). A request without
/// (valid) headers runs as before. Works for any `Service<http::Request<B>>`:
/// axum, tonic, hyper.
///
/// A request carrying a sub-agent hand-off (`x-raindrop-handoff`, see
/// [`raindrop_core::handoff`]) runs as the sub-agent's own run instead
/// ([`super::subagent_span`]): its spans are the child's, linked to the
/// launcher, and if the request ends without finishing the child's event,
/// the run is cancelled. A refused hand-off (unsigned, forged, stale,
/// malformed: counted and warned) continues the launcher's trace only.
///
/// With axum: `Router::new().route(..).layer(PropagationLayer)` (or
/// `PropagationLayer::new()`). Behind a network no outsider reaches (a
/// mesh with mTLS), `PropagationLayer::trust_unsigned()` joins unsigned
/// carriers too. On any service:
///
/// ```
/// use std::task::{Context, Poll};
/// use raindrop_tracing::propagate::tower::PropagationLayer;
/// use tower_layer::Layer as _;
///
/// struct Hello;
/// impl tower_service::Service<http::Request<()>> for Hello {
///     type Response = &'static str;
///     type Error = std::convert::Infallible;
///     type Future = std::future::Ready<Result<&'static str, Self::Error>>;
///     fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
///         Poll::Ready(Ok(()))
///     }
///     fn call(&mut self, _: http::Request<()>) -> Self::Future {
///         // Raindrop spans created here continue the caller's context.
///         std::future::ready(Ok("hello"))
///     }
/// }
///
/// let service = PropagationLayer.layer(Hello);
/// # drop(service);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct PropagationLayer {
    trust: CarrierTrust,
}

/// The default layer as a value, so `.layer(PropagationLayer)` (from when
/// the layer had no settings) keeps compiling.
#[allow(non_upper_case_globals)]
pub const PropagationLayer: PropagationLayer = PropagationLayer {
    trust: CarrierTrust::Signed,
};

impl PropagationLayer {
    /// Joins interactions only from signed, fresh carriers (or as the
    /// client's `propagation_trust` option says).
    pub fn new() -> Self {
        PropagationLayer::default()
    }

    /// Joins interactions from unsigned carriers too: only where the
    /// network is the boundary (every caller is one of your services, e.g.
    /// a mesh with mTLS). Any caller that reaches the service can then name
    /// any event id and user in `baggage`.
    ///
    /// ```
    /// use raindrop_tracing::propagate::tower::PropagationLayer;
    /// let layer = PropagationLayer::trust_unsigned();
    /// # drop(layer);
    /// ```
    pub fn trust_unsigned() -> Self {
        PropagationLayer {
            trust: CarrierTrust::Unsigned,
        }
    }
}

impl<S> tower_layer::Layer<S> for PropagationLayer {
    type Service = PropagationService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PropagationService {
            inner,
            trust: self.trust,
        }
    }
}

/// The service made by [`struct@PropagationLayer`].
#[derive(Debug, Clone)]
pub struct PropagationService<S> {
    inner: S,
    trust: CarrierTrust,
}

impl<S, B> tower_service::Service<http::Request<B>> for PropagationService<S>
where
    S: tower_service::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Instrumented<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        // A sub-agent hand-off first: the request is the child's own run,
        // not a join of the launcher's interaction.
        let span = match super::handoff_span(req.headers(), self.trust) {
            Some(span) => span,
            None => match super::extract_with(req.headers(), self.trust) {
                Some(remote) => remote.span(),
                None => tracing::Span::none(),
            },
        };
        let fut = span.in_scope(|| self.inner.call(req));
        fut.instrument(span)
    }
}
