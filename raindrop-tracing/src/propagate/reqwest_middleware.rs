//! A `reqwest-middleware` middleware injecting the current context into each
//! request (feature `reqwest-middleware`, for `reqwest-middleware` 0.5 with
//! `reqwest` 0.13).

use reqwest_middleware::reqwest::{Request, Response};
use reqwest_middleware::{Middleware, Next, Result};

/// Writes `traceparent`, `baggage` and `x-raindrop-signature` for the
/// current raindrop span into every request (see [`super::inject`]; the
/// called service may not finish the interaction: for that, inject by hand
/// with [`super::inject_with`]); a request made outside raindrop spans is
/// sent unchanged.
///
/// ```
/// use reqwest_middleware::{reqwest, ClientBuilder};
/// # raindrop_core::install_tls_provider(); // what `raindrop::init` does
/// let client = ClientBuilder::new(reqwest::Client::new())
///     .with(raindrop_tracing::propagate::reqwest_middleware::InjectMiddleware)
///     .build();
/// # drop(client);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct InjectMiddleware;

#[async_trait::async_trait]
impl Middleware for InjectMiddleware {
    async fn handle(
        &self,
        mut req: Request,
        extensions: &mut http::Extensions,
        next: Next<'_>,
    ) -> Result<Response> {
        super::inject(req.headers_mut());
        next.run(req, extensions).await
    }
}
