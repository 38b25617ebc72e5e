//! The same capture as a tower layer (feature `llm-tower`), for
//! async-openai 0.43's `middleware` feature: its tower stack carries each
//! HTTP call as an `HttpRequestFactory` and answers a `reqwest::Response`.
//!
//! Put [`LlmCaptureLayer`] in the stack given to
//! `Client::with_http_service` and every Chat Completions and Responses
//! call the client makes inside an interaction is recorded as an LLM span,
//! streamed or not, exactly as [`LlmCaptureMiddleware`] records a
//! reqwest-middleware client's: nothing else in your code changes.
//!
//! To read the call, the layer builds the factory's request once more (a
//! copy of its JSON body, already serialized); the request given to the
//! rest of the stack is the factory itself, untouched (unless you opt in to
//! [`LlmCaptureLayer::include_stream_usage`]). The response comes back
//! with its body read through the capture, byte for byte. Calls outside an
//! interaction are passed on without being built. Placed outside
//! async-openai's retry layer, one call is one span with its final
//! outcome; inside it, each attempt is its own span.
//!
//! ```
//! use async_openai::config::OpenAIConfig;
//! use async_openai::middleware::{retry::OpenAIRetryLayer, ReqwestService};
//! use raindrop_tracing::llm_http::tower::LlmCaptureLayer;
//! use tower_layer::{Layer, Stack};
//!
//! # raindrop_core::install_tls_provider(); // what `raindrop::init` does
//! // What `tower::ServiceBuilder::new().layer(..).layer(..).service(..)` builds.
//! let layers = Stack::new(OpenAIRetryLayer::default(), LlmCaptureLayer::new());
//! let service = layers.layer(ReqwestService::new(reqwest_middleware::reqwest::Client::new()));
//! let client = async_openai::Client::with_config(OpenAIConfig::default())
//!     .with_http_service(service);
//! # drop(client);
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_openai::middleware::HttpRequestFactory;
use bytes::Bytes;
use reqwest_middleware::reqwest::{self, Response};
use tower_layer::Layer;
use tower_service::Service;
use tracing::Instrument;

use super::{Call, LlmCaptureMiddleware};

/// Records the model calls of an async-openai client's tower stack as LLM
/// spans of the current interaction (see the [module docs](self)).
#[derive(Debug, Clone, Default)]
pub struct LlmCaptureLayer {
    capture: LlmCaptureMiddleware,
}

impl LlmCaptureLayer {
    /// Captures with the defaults: requests untouched, 1 MiB per call parsed.
    pub fn new() -> Self {
        Self::default()
    }

    /// As [`LlmCaptureMiddleware::include_stream_usage`].
    pub fn include_stream_usage(mut self, on: bool) -> Self {
        self.capture = self.capture.include_stream_usage(on);
        self
    }

    /// As [`LlmCaptureMiddleware::max_capture_bytes`].
    pub fn max_capture_bytes(mut self, max: usize) -> Self {
        self.capture = self.capture.max_capture_bytes(max);
        self
    }
}

impl From<LlmCaptureMiddleware> for LlmCaptureLayer {
    /// The layer capturing with the middleware's settings.
    fn from(capture: LlmCaptureMiddleware) -> Self {
        LlmCaptureLayer { capture }
    }
}

impl<S> Layer<S> for LlmCaptureLayer {
    type Service = LlmCapture<S>;

    fn layer(&self, inner: S) -> LlmCapture<S> {
        LlmCapture {
            inner,
            capture: self.capture.clone(),
        }
    }
}

/// The service [`LlmCaptureLayer`] wraps around the rest of the stack.
#[derive(Debug, Clone)]
pub struct LlmCapture<S> {
    inner: S,
    capture: LlmCaptureMiddleware,
}

impl<S> Service<HttpRequestFactory> for LlmCapture<S>
where
    S: Service<HttpRequestFactory, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: std::fmt::Display + Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, factory: HttpRequestFactory) -> Self::Future {
        // The service that was polled ready makes this call; a clone waits
        // for the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let capture = self.capture.clone();
        Box::pin(async move {
            let (call, factory) = match begin(&capture, factory).await {
                Ok(begun) => begun,
                Err(factory) => return inner.call(factory).await,
            };
            let result = inner.call(factory).instrument(call.span()).await;
            match result {
                Ok(resp) => Ok(call.finish(resp)),
                Err(e) => {
                    call.fail(e.to_string());
                    Err(e)
                }
            }
        })
    }
}

/// The open call of `factory`'s request when it is a recognised model call
/// inside an interaction, with the factory to send; otherwise the factory
/// back, untouched.
async fn begin(
    capture: &LlmCaptureMiddleware,
    factory: HttpRequestFactory,
) -> Result<(Call, HttpRequestFactory), HttpRequestFactory> {
    if crate::access::interaction_in_scope().is_none() {
        return Err(factory);
    }
    let Ok(mut copy) = factory.build().await else {
        return Err(factory);
    };
    let sent = body_of(&copy);
    let Some(call) = capture.begin(&mut copy) else {
        return Err(factory);
    };
    // `begin` changes the body only to ask for stream usage: send that.
    let asked = body_of(&copy).filter(|b| Some(b) != sent.as_ref());
    let factory = match asked {
        Some(body) => with_body(factory, body),
        None => factory,
    };
    Ok((call, factory))
}

fn body_of(req: &reqwest::Request) -> Option<Bytes> {
    req.body()
        .and_then(reqwest::Body::as_bytes)
        .map(Bytes::copy_from_slice)
}

/// `factory`'s requests with `body` as their body.
fn with_body(factory: HttpRequestFactory, body: Bytes) -> HttpRequestFactory {
    HttpRequestFactory::new(move || {
        let factory = factory.clone();
        let body = body.clone();
        async move {
            let mut req = factory.build().await?;
            req.headers_mut().remove(http::header::CONTENT_LENGTH);
            *req.body_mut() = Some(reqwest::Body::from(body));
            Ok(req)
        }
    })
}
