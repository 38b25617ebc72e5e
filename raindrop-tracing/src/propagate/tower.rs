//! A `tower` layer continuing the caller's context on each request (feature
//! `tower`).

use std::task::{Context, Poll};

use tracing::instrument::{Instrument, Instrumented};

/// Wraps a service so each request continues the context in its
/// `traceparent` and `baggage` headers (see [`super::RemoteContext::span`]):
/// the request's future runs inside a span whose raindrop spans join the
/// caller's trace and interaction. A request without (valid) headers runs
/// as before. Works for any `Service<http::Request<B>>`: axum, tonic, hyper.
///
/// With axum: `Router::new().route(..).layer(PropagationLayer)`. On any
/// service:
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
pub struct PropagationLayer;

impl<S> tower_layer::Layer<S> for PropagationLayer {
    type Service = PropagationService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PropagationService { inner }
    }
}

/// The service made by [`PropagationLayer`].
#[derive(Debug, Clone)]
pub struct PropagationService<S> {
    inner: S,
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
        let span = match super::extract(req.headers()) {
            Some(remote) => remote.span(),
            None => tracing::Span::none(),
        };
        let fut = span.in_scope(|| self.inner.call(req));
        fut.instrument(span)
    }
}
