//! Model calls captured at the HTTP level (feature `llm-http`): a
//! `reqwest-middleware` 0.5 middleware that records OpenAI Chat Completions,
//! OpenAI Responses and Anthropic Messages calls made with any reqwest 0.13
//! client, streamed (SSE) or not, as LLM spans of the current interaction.
//!
//! Inside an interaction span, a `POST` to a path ending in
//! `/chat/completions`, `/responses` or `/v1/messages` whose JSON body has
//! the API's shape opens an LLM span (`openai.chat_completions.llm`,
//! `openai.responses.llm`, `anthropic.messages.llm`) with the GenAI fields
//! rig writes, so the interaction is filled from it as from rig's calls
//! (model, input, output, token totals; what you set yourself wins). The
//! span gets the model, the messages, the tools offered (`ai.prompt.tools`,
//! normalised; the interaction's `set_tools` wins), the output text and
//! tool calls, usage (and the cost OpenRouter reports in `usage.cost`, as
//! `gen_ai.usage.provider_reported_cost`), finish reason, response id, the
//! HTTP status, the time to the
//! first chunk for streams, and ends with the error on a failed status
//! (429, 500, ...), a transport error or a stream cut short (`cancelled`
//! when the caller drops the response before its end).
//!
//! Each pass through the middleware is one call: placed after a retry
//! middleware, every attempt is its own LLM span.
//!
//! With the `llm-tower` feature, [`tower::LlmCaptureLayer`] does the same
//! in async-openai's tower stack.
//!
//! What the middleware never does:
//! * change the request: headers and body bytes go out as given (unless you
//!   opt in to [`LlmCaptureMiddleware::include_stream_usage`]); a streaming
//!   request body is passed through and not read;
//! * change the response: the client reads the server's bytes, chunk by
//!   chunk as they arrive; only a copy of at most
//!   [`LlmCaptureMiddleware::max_capture_bytes`] is parsed, past that capture
//!   stops and the bytes still flow (a call captured in part, or not at
//!   all because its request body was over the bound, or whose response
//!   did not parse or whose stream was cut, is counted in the client's
//!   `stats().llm_captures_incomplete`, with a warning at most every 30 s);
//! * record headers: the API key (`Authorization`, `x-api-key`) stays in the
//!   request;
//! * record anything outside an interaction.
//!
//! Messages and output go where every span's content goes: the client's
//! `capture_content(false)` and redaction apply to them on the worker. They
//! are handed to the raindrop layer alone, never written as span fields
//! that a log layer would print.
//!
//! ```
//! use reqwest_middleware::{reqwest, ClientBuilder};
//! use raindrop_tracing::llm_http::LlmCaptureMiddleware;
//! # raindrop_core::install_tls_provider(); // what `raindrop::init` does
//!
//! let client = ClientBuilder::new(reqwest::Client::new())
//!     .with(LlmCaptureMiddleware::new())
//!     .build();
//! # drop(client);
//! ```

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use reqwest_middleware::reqwest::{self, Request, Response, ResponseBuilderExt};
use reqwest_middleware::{Middleware, Next, Result};
use serde_json::{json, Map, Value};
use tracing::field::Empty;
use tracing::{Instrument, Span};

use raindrop_core::Interaction;

use crate::access::{apply_to_span, complete_span, tracked_cap};
use crate::fields::Fields;
use crate::genai;
use crate::llm_attrs::{self, message, text_of, BodyUsage};

#[cfg(feature = "llm-tower")]
pub mod tower;

/// The default bound on the bytes of one call kept for parsing (request
/// body, response body or stream).
pub const DEFAULT_MAX_CAPTURE_BYTES: usize = 1 << 20;

/// Records OpenAI Chat Completions, OpenAI Responses and Anthropic Messages
/// calls as LLM spans of the current interaction (see the
/// [module docs](self)).
#[derive(Debug, Clone)]
pub struct LlmCaptureMiddleware {
    include_stream_usage: bool,
    max_capture_bytes: usize,
}

impl Default for LlmCaptureMiddleware {
    fn default() -> Self {
        LlmCaptureMiddleware {
            include_stream_usage: false,
            max_capture_bytes: DEFAULT_MAX_CAPTURE_BYTES,
        }
    }
}

impl LlmCaptureMiddleware {
    /// Captures with the defaults: requests untouched, 1 MiB per call parsed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks streamed Chat Completions calls for their token usage by adding
    /// `"stream_options": {"include_usage": true}` to the request body when
    /// it has no `stream_options` (off by default: the request then goes out
    /// unchanged, and a stream reports usage only if the caller asked).
    /// The server then sends one more chunk, with no choices, that your
    /// code reads too.
    pub fn include_stream_usage(mut self, on: bool) -> Self {
        self.include_stream_usage = on;
        self
    }

    /// The most bytes of one request body and of one response kept for
    /// parsing (default [`DEFAULT_MAX_CAPTURE_BYTES`]). A larger request is
    /// not captured; past the bound a response is still passed through
    /// whole, but its capture stops.
    pub fn max_capture_bytes(mut self, max: usize) -> Self {
        self.max_capture_bytes = max;
        self
    }
}

/// Which API a request speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    ChatCompletions,
    Responses,
    AnthropicMessages,
}

impl Api {
    fn of(req: &Request) -> Option<Api> {
        if req.method() != reqwest::Method::POST {
            return None;
        }
        let path = req.url().path().trim_end_matches('/');
        if path.ends_with("/chat/completions") {
            Some(Api::ChatCompletions)
        } else if path.ends_with("/v1/messages") {
            Some(Api::AnthropicMessages)
        } else if path.ends_with("/responses") {
            Some(Api::Responses)
        } else {
            None
        }
    }

    /// Whether a request body has this API's shape.
    fn fits(self, body: &Map<String, Value>) -> bool {
        match self {
            Api::ChatCompletions | Api::AnthropicMessages => {
                body.get("messages").is_some_and(Value::is_array)
            }
            Api::Responses => body.contains_key("input"),
        }
    }
}

fn open_span(api: Api) -> Span {
    // One callsite per API: the span name is part of the callsite.
    macro_rules! llm_span {
        ($name:literal, $provider:literal) => {
            tracing::info_span!(
                $name,
                gen_ai.operation.name = "chat",
                gen_ai.provider.name = $provider,
                gen_ai.request.model = Empty,
            )
        };
    }
    match api {
        Api::ChatCompletions => llm_span!("openai.chat_completions", "openai"),
        Api::Responses => llm_span!("openai.responses", "openai"),
        Api::AnthropicMessages => llm_span!("anthropic.messages", "anthropic"),
    }
}

#[async_trait::async_trait]
impl Middleware for LlmCaptureMiddleware {
    async fn handle(
        &self,
        mut req: Request,
        extensions: &mut http::Extensions,
        next: Next<'_>,
    ) -> Result<Response> {
        let Some(call) = self.begin(&mut req) else {
            return next.run(req, extensions).await;
        };
        let result = next.run(req, extensions).instrument(call.span()).await;
        match result {
            Ok(resp) => Ok(call.finish(resp)),
            Err(e) => {
                call.fail(e.to_string());
                Err(e)
            }
        }
    }
}

/// One recognised model call, its LLM span open: what the middleware and
/// the tower layer share.
pub(crate) struct Call {
    span: Span,
    interaction: Interaction,
    api: Api,
    started: Instant,
    max: usize,
}

impl LlmCaptureMiddleware {
    /// Opens the LLM span of `req` when it is a recognised model call made
    /// inside an interaction, with the request's fields; `None` leaves the
    /// call alone. `req` is changed only to ask for stream usage when opted
    /// in ([`Self::include_stream_usage`]).
    pub(crate) fn begin(&self, req: &mut Request) -> Option<Call> {
        let api = Api::of(req)?;
        // Outside an interaction: nothing to record, nothing to parse.
        let interaction = crate::access::interaction_in_scope()?;
        // A streaming body has no bytes to read; a body over the bound is
        // not parsed.
        let bytes = req.body().and_then(reqwest::Body::as_bytes);
        let Some(bytes) = bytes.filter(|b| b.len() <= self.max_capture_bytes) else {
            if req.body().is_some() {
                incomplete(
                    &interaction,
                    "a model call's request body is streamed or over max_capture_bytes: \
                     the call was passed through and not recorded",
                );
            }
            return None;
        };
        // Not JSON: not one of these APIs (a path like `/responses` is
        // common), so not counted as a capture that failed.
        let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(bytes) else {
            return None;
        };
        if !api.fits(&body) {
            return None;
        }
        let span = open_span(api);
        // Outside an interaction (or with no raindrop layer) the span is not
        // tracked: nothing to record.
        tracked_cap(&span)?;
        if let Some(asked) = self.with_stream_usage(api, &body) {
            req.headers_mut().remove(http::header::CONTENT_LENGTH);
            *req.body_mut() = Some(reqwest::Body::from(asked));
        }
        genai::set_fields(&span, request_fields(api, &body));
        Some(Call {
            span,
            interaction,
            api,
            started: Instant::now(),
            max: self.max_capture_bytes,
        })
    }

    /// The body asking for the stream's usage, when opted in and the
    /// request is a streamed Chat Completions call that did not ask itself.
    fn with_stream_usage(&self, api: Api, body: &Map<String, Value>) -> Option<Vec<u8>> {
        let streamed = body.get("stream").and_then(Value::as_bool) == Some(true);
        if !(streamed
            && api == Api::ChatCompletions
            && self.include_stream_usage
            && !body.contains_key("stream_options"))
        {
            return None;
        }
        let mut asked = body.clone();
        asked.insert("stream_options".into(), json!({"include_usage": true}));
        serde_json::to_vec(&asked).ok()
    }
}

impl Call {
    /// The LLM span, to run the request in.
    pub(crate) fn span(&self) -> Span {
        self.span.clone()
    }

    /// The request failed before a response (transport error).
    pub(crate) fn fail(self, message: String) {
        end_with_error(&self.span, message);
    }

    /// Records the response's status and hands back the response, its
    /// body read through the capture (everything else as it was).
    pub(crate) fn finish(self, resp: Response) -> Response {
        let status = resp.status();
        apply_to_span(
            &self.span,
            Fields {
                properties: vec![("http.status_code".to_owned(), status.as_u16().into())],
                ..Fields::default()
            },
        );
        if !status.is_success() {
            // The body is the caller's to read (an error message); the
            // status is the error.
            end_with_error(&self.span, format!("HTTP {status}"));
            return resp;
        }
        let sse = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let capture = Capture {
            span: self.span,
            interaction: self.interaction,
            api: self.api,
            started: self.started,
            sse,
            max: self.max,
            kept: 0,
            full: false,
            buf: Vec::new(),
            reply: Reply::default(),
            first: None,
            done: false,
        };
        tee(resp, capture)
    }
}

/// Counts a call not (wholly) captured in the client's `stats()`, with a
/// rate-limited warning.
fn incomplete(interaction: &Interaction, detail: &str) {
    raindrop_core::__private::incomplete_capture(interaction, detail);
}

fn end_with_error(span: &Span, message: String) {
    apply_to_span(
        span,
        Fields {
            error: Some(message),
            ..Fields::default()
        },
    );
    complete_span(span);
}

/// The response with its body read through `capture`, everything else as
/// it was (status, version, headers, extensions, URL).
fn tee(resp: Response, capture: Capture) -> Response {
    let url = resp.url().clone();
    let (parts, body) = http::Response::<reqwest::Body>::from(resp).into_parts();
    let body = reqwest::Body::wrap(TeeBody {
        inner: body,
        capture,
    });
    let mut r = http::Response::from_parts(parts, body);
    // reqwest keeps the URL in an extension only its builder can set.
    if let Ok(holder) = http::Response::builder().url(url).body(()) {
        r.extensions_mut().extend(holder.into_parts().0.extensions);
    }
    Response::from(r)
}

/// The response body, passed through frame by frame, a copy parsed.
struct TeeBody {
    inner: reqwest::Body,
    capture: Capture,
}

impl HttpBody for TeeBody {
    type Data = Bytes;
    type Error = reqwest::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, reqwest::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.capture.data(data);
                }
            }
            Poll::Ready(Some(Err(e))) => {
                if !this.capture.done {
                    incomplete(
                        &this.capture.interaction,
                        "a model call's response stream was cut short: \
                         its span ends with the error and what came before",
                    );
                }
                this.capture.end(Some(e.to_string()))
            }
            Poll::Ready(None) => this.capture.end(None),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for TeeBody {
    fn drop(&mut self) {
        // Dropped before its end: the caller stopped reading.
        self.capture.end(Some("cancelled".to_owned()));
    }
}

/// The parsing side of one response.
struct Capture {
    span: Span,
    /// Where an incomplete capture is counted.
    interaction: Interaction,
    api: Api,
    started: Instant,
    sse: bool,
    max: usize,
    /// Bytes looked at so far.
    kept: usize,
    /// Past `max`: nothing more is parsed.
    full: bool,
    /// A whole body (not SSE), or the current unfinished SSE line.
    buf: Vec<u8>,
    reply: Reply,
    first: Option<std::time::Duration>,
    done: bool,
}

impl Capture {
    fn data(&mut self, data: &[u8]) {
        if self.first.is_none() && !data.is_empty() {
            self.first = Some(self.started.elapsed());
        }
        if self.full || self.done {
            return;
        }
        self.kept += data.len();
        if self.kept > self.max {
            self.full = true;
            self.buf = Vec::new();
            incomplete(
                &self.interaction,
                "a model call's response is over max_capture_bytes: its capture \
                 stopped there (the span says capture_truncated), the response \
                 still reaches the caller whole",
            );
            apply_to_span(
                &self.span,
                Fields {
                    properties: vec![("capture_truncated".to_owned(), true.into())],
                    ..Fields::default()
                },
            );
            return;
        }
        if !self.sse {
            self.buf.extend_from_slice(data);
            return;
        }
        // SSE: handle each complete line, keep the rest.
        let mut rest = data;
        while let Some(n) = rest.iter().position(|&b| b == b'\n') {
            self.buf.extend_from_slice(&rest[..n]);
            let line = std::mem::take(&mut self.buf);
            self.sse_line(&line);
            rest = &rest[n + 1..];
        }
        self.buf.extend_from_slice(rest);
    }

    fn sse_line(&mut self, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(data) = line.strip_prefix(b"data:") else {
            return;
        };
        let data = data.strip_prefix(b" ").unwrap_or(data);
        if data == b"[DONE]" {
            return;
        }
        if let Ok(Value::Object(ev)) = serde_json::from_slice::<Value>(data) {
            self.reply.event(self.api, &ev);
        }
    }

    /// Ends the span once: with the reply parsed so far, and `error` (or the
    /// error the reply reports).
    fn end(&mut self, error: Option<String>) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        if !self.sse && !self.full && error.is_none() {
            match serde_json::from_slice::<Value>(&self.buf) {
                Ok(Value::Object(body)) => self.reply.whole(self.api, &body),
                _ => incomplete(
                    &self.interaction,
                    "a model call's response body is not a JSON object: \
                     its span has no output or usage",
                ),
            }
        } else if self.sse && !self.full && !self.buf.is_empty() {
            let line = std::mem::take(&mut self.buf);
            self.sse_line(&line);
        }
        self.buf = Vec::new();
        let reply = std::mem::take(&mut self.reply);
        let error = error.or(reply.error.clone());
        genai::set_fields(&self.span, reply.fields());
        if self.sse {
            if let Some(d) = self.first {
                genai::set_time_to_first_chunk(&self.span, d);
                let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
                apply_to_span(
                    &self.span,
                    Fields {
                        properties: vec![("time_to_first_chunk_ms".to_owned(), ms.into())],
                        ..Fields::default()
                    },
                );
            }
        }
        if let Some(e) = error {
            apply_to_span(
                &self.span,
                Fields {
                    error: Some(e),
                    ..Fields::default()
                },
            );
        }
        complete_span(&self.span);
    }
}

/// A tool call the model asked for.
#[derive(Debug, Default)]
struct ToolCall {
    id: String,
    name: String,
    arguments: String,
}

/// What the model answered, from a whole body or summed over stream events.
#[derive(Debug, Default)]
struct Reply {
    id: Option<String>,
    model: Option<String>,
    text: String,
    tool_calls: Vec<ToolCall>,
    finish: Vec<String>,
    usage: BodyUsage,
    error: Option<String>,
}

fn s(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).map(str::to_owned)
}

impl Reply {
    /// A non-streamed response body.
    fn whole(&mut self, api: Api, body: &Map<String, Value>) {
        self.id = s(body.get("id"));
        self.model = s(body.get("model"));
        match api {
            Api::ChatCompletions => {
                for c in body
                    .get("choices")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let m = &c["message"];
                    if let Some(t) = m["content"].as_str() {
                        self.text.push_str(t);
                    }
                    for t in m["tool_calls"].as_array().into_iter().flatten() {
                        self.tool_calls.push(ToolCall {
                            id: t["id"].as_str().unwrap_or_default().to_owned(),
                            name: t["function"]["name"]
                                .as_str()
                                .unwrap_or_default()
                                .to_owned(),
                            arguments: t["function"]["arguments"]
                                .as_str()
                                .unwrap_or_default()
                                .to_owned(),
                        });
                    }
                    if let Some(f) = c["finish_reason"].as_str() {
                        self.finish.push(f.to_owned());
                    }
                }
                self.usage(body.get("usage"));
            }
            Api::Responses => self.responses_object(body),
            Api::AnthropicMessages => {
                for b in body
                    .get("content")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    self.anthropic_block(b);
                }
                if let Some(f) = s(body.get("stop_reason")) {
                    self.finish.push(f);
                }
                self.usage(body.get("usage"));
            }
        }
    }

    fn responses_object(&mut self, body: &Map<String, Value>) {
        self.id = s(body.get("id")).or(self.id.take());
        self.model = s(body.get("model")).or(self.model.take());
        let mut text = String::new();
        let mut calls = Vec::new();
        for item in body
            .get("output")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            match item["type"].as_str() {
                Some("message") => {
                    for part in item["content"].as_array().into_iter().flatten() {
                        if let Some(t) = part["text"].as_str() {
                            text.push_str(t);
                        }
                    }
                }
                Some("function_call") => calls.push(ToolCall {
                    id: item["call_id"].as_str().unwrap_or_default().to_owned(),
                    name: item["name"].as_str().unwrap_or_default().to_owned(),
                    arguments: item["arguments"].as_str().unwrap_or_default().to_owned(),
                }),
                _ => {}
            }
        }
        // The whole object wins over the deltas seen before it.
        if !text.is_empty() {
            self.text = text;
        }
        if !calls.is_empty() {
            self.tool_calls = calls;
        }
        if let Some(st) = s(body.get("status")) {
            self.finish = vec![st];
        }
        if let Some(m) = body.get("error").and_then(|e| e.get("message")) {
            self.error = m.as_str().map(str::to_owned);
        }
        if let Some(u) = body.get("usage") {
            self.usage = BodyUsage::of(u);
        }
    }

    /// A usage object; a stream's later parts add to the earlier ones.
    fn usage(&mut self, u: Option<&Value>) {
        if let Some(u) = u.filter(|u| u.is_object()) {
            self.usage = self.usage.merge(BodyUsage::of(u));
        }
    }

    fn anthropic_block(&mut self, b: &Value) {
        match b["type"].as_str() {
            Some("text") => self.text.push_str(b["text"].as_str().unwrap_or_default()),
            Some("tool_use") => self.tool_calls.push(ToolCall {
                id: b["id"].as_str().unwrap_or_default().to_owned(),
                name: b["name"].as_str().unwrap_or_default().to_owned(),
                arguments: match &b["input"] {
                    // Streamed: the input arrives as JSON deltas.
                    Value::Object(o) if o.is_empty() => String::new(),
                    Value::Null => String::new(),
                    v => v.to_string(),
                },
            }),
            _ => {}
        }
    }

    /// One SSE event of a stream.
    fn event(&mut self, api: Api, ev: &Map<String, Value>) {
        match api {
            Api::ChatCompletions => self.chat_event(ev),
            Api::Responses => self.responses_event(ev),
            Api::AnthropicMessages => self.anthropic_event(ev),
        }
    }

    /// A Chat Completions chunk: text and tool-call deltas, finish reasons,
    /// the final usage chunk.
    fn chat_event(&mut self, ev: &Map<String, Value>) {
        if self.id.is_none() {
            self.id = s(ev.get("id"));
        }
        if let Some(m) = s(ev.get("model")) {
            self.model = Some(m);
        }
        for c in ev
            .get("choices")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let d = &c["delta"];
            if let Some(t) = d["content"].as_str() {
                self.text.push_str(t);
            }
            for t in d["tool_calls"].as_array().into_iter().flatten() {
                let i = t["index"].as_u64().unwrap_or(0) as usize;
                while self.tool_calls.len() <= i && self.tool_calls.len() < 128 {
                    self.tool_calls.push(ToolCall::default());
                }
                if let Some(call) = self.tool_calls.get_mut(i) {
                    if let Some(id) = t["id"].as_str() {
                        call.id = id.to_owned();
                    }
                    if let Some(name) = t["function"]["name"].as_str() {
                        call.name.push_str(name);
                    }
                    if let Some(a) = t["function"]["arguments"].as_str() {
                        call.arguments.push_str(a);
                    }
                }
            }
            if let Some(f) = c["finish_reason"].as_str() {
                self.finish.push(f.to_owned());
            }
        }
        self.usage(ev.get("usage"));
        if let Some(m) = ev.get("error").and_then(|e| e.get("message")) {
            self.error = m.as_str().map(str::to_owned);
        }
    }

    /// A Responses API event: text deltas, then the whole response.
    fn responses_event(&mut self, ev: &Map<String, Value>) {
        match ev.get("type").and_then(Value::as_str) {
            Some("response.output_text.delta") => {
                self.text.push_str(ev["delta"].as_str().unwrap_or_default());
            }
            Some("response.created" | "response.in_progress") => {
                if let Some(Value::Object(r)) = ev.get("response") {
                    self.id = s(r.get("id"));
                    self.model = s(r.get("model"));
                }
            }
            Some("response.completed" | "response.incomplete" | "response.failed") => {
                if let Some(Value::Object(r)) = ev.get("response") {
                    self.responses_object(r);
                }
            }
            Some("error") => {
                self.error = s(ev.get("message")).or_else(|| Some("error".to_owned()));
            }
            _ => {}
        }
    }

    /// An Anthropic Messages event: the message start, content blocks and
    /// their deltas, the stop reason and usage.
    fn anthropic_event(&mut self, ev: &Map<String, Value>) {
        match ev.get("type").and_then(Value::as_str) {
            Some("message_start") => {
                let m = &ev["message"];
                self.id = s(m.get("id"));
                self.model = s(m.get("model"));
                self.usage(m.get("usage"));
            }
            Some("content_block_start") => self.anthropic_block(&ev["content_block"]),
            Some("content_block_delta") => {
                let d = &ev["delta"];
                match d["type"].as_str() {
                    Some("text_delta") => {
                        self.text.push_str(d["text"].as_str().unwrap_or_default())
                    }
                    Some("input_json_delta") => {
                        if let Some(call) = self.tool_calls.last_mut() {
                            call.arguments
                                .push_str(d["partial_json"].as_str().unwrap_or_default());
                        }
                    }
                    _ => {}
                }
            }
            Some("message_delta") => {
                if let Some(f) = ev["delta"]["stop_reason"].as_str() {
                    self.finish.push(f.to_owned());
                }
                self.usage(ev.get("usage"));
            }
            Some("error") => {
                self.error = ev["error"]["message"]
                    .as_str()
                    .map(str::to_owned)
                    .or_else(|| Some("error".to_owned()));
            }
            _ => {}
        }
    }

    /// The GenAI fields of the reply.
    fn fields(self) -> Vec<(&'static str, Value)> {
        let mut f = Vec::new();
        if let Some(m) = self.model {
            f.push(("gen_ai.response.model", Value::String(m)));
        }
        if let Some(id) = self.id {
            f.push(("gen_ai.response.id", Value::String(id)));
        }
        if !self.finish.is_empty() {
            f.push((
                "gen_ai.response.finish_reasons",
                Value::String(self.finish.join(",")),
            ));
        }
        let mut messages = Vec::new();
        if !self.text.is_empty() {
            messages.push(json!({"role": "assistant", "content": self.text}));
        }
        if !self.tool_calls.is_empty() {
            // Not text: the span shows them, the interaction's output does not.
            let calls: Vec<Value> = self
                .tool_calls
                .into_iter()
                .map(|c| {
                    json!({"type": "tool_call", "id": c.id, "name": c.name, "arguments": c.arguments})
                })
                .collect();
            messages.push(json!({"role": "assistant", "content": calls}));
        }
        if !messages.is_empty() {
            f.push((
                "gen_ai.output.messages",
                Value::String(Value::Array(messages).to_string()),
            ));
        }
        f.extend(self.usage.fields());
        f
    }
}

/// The GenAI fields of a request body: model and input messages.
fn request_fields(api: Api, body: &Map<String, Value>) -> Vec<(&'static str, Value)> {
    let mut f = Vec::new();
    if let Some(m) = s(body.get("model")) {
        f.push(("gen_ai.request.model", Value::String(m)));
    }
    let mut messages = Vec::new();
    match api {
        Api::ChatCompletions => {
            for m in body
                .get("messages")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let role = m["role"].as_str().unwrap_or("user");
                let role = if role == "developer" { "system" } else { role };
                if let Some(calls) = m.get("tool_calls").filter(|c| c.is_array()) {
                    messages.push(json!({"role": role, "content": calls}));
                    continue;
                }
                messages.push(message(role, &m["content"]));
            }
        }
        Api::Responses => {
            if let Some(i) = s(body.get("instructions")) {
                messages.push(json!({"role": "system", "content": i}));
            }
            match body.get("input") {
                Some(Value::String(t)) => messages.push(json!({"role": "user", "content": t})),
                Some(Value::Array(items)) => {
                    for item in items {
                        match item["role"].as_str() {
                            Some(role) => {
                                let role = if role == "developer" { "system" } else { role };
                                messages.push(message(role, &item["content"]));
                            }
                            // function_call, function_call_output, ...
                            None => messages.push(json!({"role": "tool", "content": [item]})),
                        }
                    }
                }
                _ => {}
            }
        }
        Api::AnthropicMessages => {
            if let Some(sys) = body.get("system") {
                if let Some(t) = text_of(sys) {
                    messages.push(json!({"role": "system", "content": t}));
                }
            }
            for m in body
                .get("messages")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                messages.push(message(m["role"].as_str().unwrap_or("user"), &m["content"]));
            }
        }
    }
    if !messages.is_empty() {
        f.push((
            "gen_ai.input.messages",
            Value::String(Value::Array(messages).to_string()),
        ));
    }
    f.push((llm_attrs::TOOL_DEFINITIONS, llm_attrs::request_tools(body)));
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capture(api: Api, sse: bool, max: usize) -> Capture {
        Capture {
            span: Span::none(),
            interaction: Interaction::noop(),
            api,
            started: Instant::now(),
            sse,
            max,
            kept: 0,
            full: false,
            buf: Vec::new(),
            reply: Reply::default(),
            first: None,
            done: false,
        }
    }

    #[test]
    fn sse_events_split_anywhere_and_crlf_lines_are_read() {
        let stream = concat!(
            "data: {\"id\":\"c1\",\"model\":\"m\",\"choices\":[{\"delta\":{\"content\":\"Hé\"}}]}\r\n\r\n",
            ": a comment\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"llo\"},\"finish_reason\":\"stop\"}]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\n\n",
            "data: [DONE]\n\n",
        );
        // One byte at a time: lines and UTF-8 characters cut anywhere.
        let mut c = capture(Api::ChatCompletions, true, 1 << 20);
        for b in stream.as_bytes() {
            c.data(std::slice::from_ref(b));
        }
        assert_eq!(c.reply.text, "Héllo");
        assert_eq!(c.reply.id.as_deref(), Some("c1"));
        assert_eq!(c.reply.finish, ["stop"]);
        assert_eq!(
            (c.reply.usage.input, c.reply.usage.output),
            (Some(3), Some(2))
        );
        assert!(c.first.is_some());
    }

    #[test]
    fn an_error_event_in_a_stream_is_the_calls_error() {
        let mut c = capture(Api::AnthropicMessages, true, 1 << 20);
        c.data(b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n");
        assert_eq!(c.reply.error.as_deref(), Some("Overloaded"));
    }

    #[test]
    fn past_the_bound_nothing_more_is_kept() {
        let mut c = capture(Api::ChatCompletions, true, 10);
        c.data(b"data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n");
        assert!(c.full);
        assert!(c.buf.is_empty() && c.reply.text.is_empty());
    }

    #[test]
    fn request_messages_keep_text_and_mark_the_rest() {
        let body = json!({
            "model": "claude",
            "system": [{"type": "text", "text": "be brief"}],
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "42"}]}
            ]
        });
        let Value::Object(body) = body else {
            unreachable!()
        };
        let f = request_fields(Api::AnthropicMessages, &body);
        assert_eq!(f[0], ("gen_ai.request.model", json!("claude")));
        let msgs: Value = serde_json::from_str(f[1].1.as_str().unwrap()).unwrap();
        assert_eq!(msgs[0], json!({"role": "system", "content": "be brief"}));
        assert_eq!(msgs[1], json!({"role": "user", "content": "hi"}));
        // Not text: kept as JSON, never taken as what the user said.
        assert!(msgs[3]["content"].is_array());
    }
}
