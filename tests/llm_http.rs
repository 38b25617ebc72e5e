//! HTTP-level capture of model calls (`llm-http`): plain reqwest with
//! `LlmCaptureMiddleware` against in-process OpenAI-compatible and
//! Anthropic-shaped mocks on 127.0.0.1, the recording read at a capture
//! server. Every response is also fetched without the middleware: the
//! bytes (or the error) the client sees must be the same.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use raindrop::llm_http::LlmCaptureMiddleware;
use raindrop::testing::Recorded;
use raindrop::{Client, ClientOptions};
use raindrop_test_support::spans::{assert_turn, attr, attr_int, attr_str, llm_spans};
use raindrop_test_support::{block_on_in_time, serial, serve, Capture};
use reqwest_middleware::ClientBuilder;
use serde_json::{json, Value};
use tracing::Instrument;
use tracing_subscriber::prelude::*;

const PROMPT: &str = "What is the capital of France?";
const SYSTEM: &str = "You are terse.";
const ANSWER: &str = "Paris is the capital.";
const API_KEY: &str = "sk-test-secret-key-123";

fn sse(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| format!("data: {e}\n\n")).collect()
}

/// The request as the server got it, sent back in a header: the client
/// compares it between the runs with and without the middleware.
fn echo(headers: &HeaderMap, body: &str) -> String {
    let auth = headers
        .get("authorization")
        .or(headers.get("x-api-key"))
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    format!("{auth} {body}")
}

fn with_echo(mut r: Response, echo: String) -> Response {
    r.headers_mut()
        .insert("x-echo", echo.parse().expect("ASCII JSON"));
    r
}

fn stream_response(chunks: Vec<String>, cut: bool) -> Response {
    use futures::StreamExt;
    let items: Vec<Result<Bytes, std::io::Error>> =
        chunks.into_iter().map(|c| Ok(Bytes::from(c))).collect();
    // The cut comes after the headers and the first chunk went out.
    let cut_after_a_while = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        Err(std::io::Error::other("cut"))
    };
    let tail = futures::stream::iter(cut.then_some(cut_after_a_while)).then(|f| f);
    let stream = futures::stream::iter(items).chain(tail);
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap()
}

fn json_response(v: Value) -> Response {
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(v.to_string()))
        .unwrap()
}

fn openai_chunks() -> Vec<String> {
    let mut chunks = sse(&[
        json!({"id":"chatcmpl-1","model":"gpt-mock-2024","choices":[{"index":0,"delta":{"role":"assistant","content":"Paris is "},"finish_reason":null}]}),
        json!({"id":"chatcmpl-1","model":"gpt-mock-2024","choices":[{"index":0,"delta":{"content":"the capital."},"finish_reason":null}]}),
        json!({"id":"chatcmpl-1","model":"gpt-mock-2024","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}),
        json!({"id":"chatcmpl-1","model":"gpt-mock-2024","choices":[],"usage":{"prompt_tokens":11,"completion_tokens":5,"total_tokens":16}}),
    ]);
    chunks.push("data: [DONE]\n\n".to_owned());
    chunks
}

async fn openai(headers: HeaderMap, body: String) -> Response {
    assert_eq!(
        headers.get("authorization").and_then(|v| v.to_str().ok()),
        Some(format!("Bearer {API_KEY}").as_str())
    );
    let req: Value = serde_json::from_str(&body).unwrap();
    let echo = echo(&headers, &body);
    if req["stream"] == true {
        let mut chunks = openai_chunks();
        if req["stream_options"]["include_usage"] != true {
            // Like OpenAI: usage only when asked for.
            chunks.remove(3);
        }
        return with_echo(stream_response(chunks, false), echo);
    }
    with_echo(
        json_response(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-mock-2024",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}
        })),
        echo,
    )
}

async fn openai_tools(_body: String) -> Response {
    json_response(json!({
        "id": "chatcmpl-2", "model": "gpt-mock-2024",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": null,
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]},
            "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 7}
    }))
}

/// An OpenRouter-style answer: usage with the cost it charged.
async fn openrouter(_body: String) -> Response {
    json_response(json!({
        "id": "gen-1", "model": "mock/gpt-mock-2024",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16,
                  "prompt_tokens_details": {"cached_tokens": 4},
                  "completion_tokens_details": {"reasoning_tokens": 2},
                  "cost": 0.000123}
    }))
}

async fn responses(_body: String) -> Response {
    json_response(json!({
        "id": "resp_1", "object": "response", "model": "gpt-mock-2024", "status": "completed",
        "output": [{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": ANSWER}]}],
        "usage": {"input_tokens": 9, "output_tokens": 4}
    }))
}

async fn anthropic(headers: HeaderMap, body: String) -> Response {
    assert_eq!(
        headers.get("x-api-key").and_then(|v| v.to_str().ok()),
        Some(API_KEY)
    );
    let req: Value = serde_json::from_str(&body).unwrap();
    let echo = echo(&headers, &body);
    if req["stream"] == true {
        let events = [
            (
                "message_start",
                json!({"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-mock-1","content":[],"stop_reason":null,"usage":{"input_tokens":13,"output_tokens":1}}}),
            ),
            (
                "content_block_start",
                json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
            ),
            (
                "content_block_delta",
                json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Paris is "}}),
            ),
            (
                "content_block_delta",
                json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"the capital."}}),
            ),
            (
                "content_block_stop",
                json!({"type":"content_block_stop","index":0}),
            ),
            (
                "message_delta",
                json!({"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":6}}),
            ),
            ("message_stop", json!({"type":"message_stop"})),
        ];
        let chunks = events
            .iter()
            .map(|(name, data)| format!("event: {name}\ndata: {data}\n\n"))
            .collect();
        return with_echo(stream_response(chunks, false), echo);
    }
    with_echo(
        json_response(json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-mock-1",
            "content": [{"type": "text", "text": ANSWER}],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 13, "output_tokens": 6}
        })),
        echo,
    )
}

async fn status(code: u16) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap())
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"error":{"message":"slow down"}}"#))
        .unwrap()
}

async fn cut(_body: String) -> Result<Response, Infallible> {
    let mut chunks = openai_chunks();
    chunks.truncate(1);
    Ok(stream_response(chunks, true))
}

/// Streamed tool calls, each API its own way.
async fn tools_stream(uri: axum::http::Uri, _body: String) -> Response {
    let chunks = if uri.path().ends_with("/chat/completions") {
        let mut c = sse(&[
            json!({"id":"chatcmpl-3","model":"gpt-mock-2024","choices":[{"index":0,"delta":{"role":"assistant","tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"weather","arguments":""}}]}}]}),
            json!({"id":"chatcmpl-3","model":"gpt-mock-2024","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]}}]}),
            json!({"id":"chatcmpl-3","model":"gpt-mock-2024","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]}}]}),
            json!({"id":"chatcmpl-3","model":"gpt-mock-2024","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}),
        ]);
        c.push("data: [DONE]\n\n".to_owned());
        c
    } else if uri.path().ends_with("/messages") {
        [
            json!({"type":"message_start","message":{"id":"msg_2","model":"claude-mock-1","content":[],"usage":{"input_tokens":20,"output_tokens":1}}}),
            json!({"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_1","name":"weather","input":{}}}),
            json!({"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"city\":"}}),
            json!({"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"\"Paris\"}"}}),
            json!({"type":"content_block_stop","index":0}),
            json!({"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":7}}),
            json!({"type":"message_stop"}),
        ]
        .iter()
        .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap()))
        .collect()
    } else {
        // Responses: a text answer, streamed.
        [
            json!({"type":"response.created","response":{"id":"resp_2","model":"gpt-mock-2024","status":"in_progress","output":[]}}),
            json!({"type":"response.output_text.delta","delta":"Paris is "}),
            json!({"type":"response.output_text.delta","delta":"the capital."}),
            json!({"type":"response.completed","response":{"id":"resp_2","model":"gpt-mock-2024","status":"completed",
                "output":[{"type":"message","role":"assistant","content":[{"type":"output_text","text":ANSWER}]}],
                "usage":{"input_tokens":9,"output_tokens":4}}}),
        ]
        .iter()
        .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap()))
        .collect()
    };
    stream_response(chunks, false)
}

/// Set by the client when it has the first chunk of `/slow`.
static FIRST_CHUNK_SEEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A stream whose rest is sent only once the client has its first chunk
/// (or after 5 s): a middleware that buffered would wait those 5 s.
async fn slow(_body: String) -> Response {
    use futures::StreamExt;
    use std::sync::atomic::Ordering;
    let mut chunks = openai_chunks();
    let first = chunks.remove(0);
    let rest = async move {
        for _ in 0..500 {
            if FIRST_CHUNK_SEEN.load(Ordering::SeqCst) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok::<_, std::io::Error>(Bytes::from(chunks.concat()))
    };
    let stream = futures::stream::iter([Ok(Bytes::from(first))]).chain(futures::stream::once(rest));
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap()
}

/// The mock model server on 127.0.0.1, its runtime on its own thread.
fn start_mock() -> SocketAddr {
    let app = Router::new()
        .route("/v1/chat/completions", post(openai))
        .route("/tools/v1/chat/completions", post(openai_tools))
        .route("/v1/responses", post(responses))
        .route("/v1/messages", post(anthropic))
        .route("/e429/v1/chat/completions", post(|| status(429)))
        .route("/e429/v1/messages", post(|| status(429)))
        .route("/e500/v1/messages", post(|| status(500)))
        .route("/e500/v1/chat/completions", post(|| status(500)))
        .route("/cut/v1/chat/completions", post(cut))
        .route("/cut/v1/messages", post(cut))
        .route("/openrouter/v1/chat/completions", post(openrouter))
        .route(
            "/garbage/v1/chat/completions",
            post(|| async { "<html>a proxy's error page</html>" }),
        )
        .route("/slow/v1/chat/completions", post(slow))
        .route("/stream/v1/chat/completions", post(tools_stream))
        .route("/stream/v1/messages", post(tools_stream))
        .route("/stream/v1/responses", post(tools_stream));
    serve(app)
}

fn client_with(cap: &Capture, opts: impl FnOnce(ClientOptions) -> ClientOptions) -> Client {
    Client::new(opts(
        ClientOptions::default()
            .write_key("rk_test_llm_http")
            .endpoint(cap.endpoint())
            .upload_interval(Duration::from_millis(50)),
    ))
    .unwrap()
}

fn recorded(cap: &Capture) -> Recorded {
    let mut rec = Recorded::default();
    cap.each_accepted(|route, body| rec.push(route, body));
    rec
}

/// What the client saw: status and body bytes read chunk by chunk, or the
/// body error's kind.
#[derive(Debug, PartialEq)]
struct Seen {
    status: u16,
    /// The request the server got (`x-echo`).
    echo: Option<String>,
    url: String,
    content_length: Option<u64>,
    content_type: Option<String>,
    chunks: Vec<u8>,
    body_error: Option<(bool, bool)>,
}

async fn read(resp: reqwest::Response) -> Seen {
    let status = resp.status().as_u16();
    let echo = resp
        .headers()
        .get("x-echo")
        .map(|v| v.to_str().unwrap().to_owned());
    let url = resp.url().to_string();
    let content_length = resp.content_length();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let mut resp = resp;
    let mut chunks = Vec::new();
    let mut body_error = None;
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => chunks.extend_from_slice(&c),
            Ok(None) => break,
            Err(e) => {
                body_error = Some((e.is_body(), e.is_decode()));
                break;
            }
        }
    }
    Seen {
        status,
        echo,
        url,
        content_length,
        content_type,
        chunks,
        body_error,
    }
}

#[derive(Clone, Copy)]
enum Provider {
    OpenAi,
    Anthropic,
}

fn request_body(p: Provider, stream: bool) -> Value {
    match p {
        Provider::OpenAi if stream => json!({
            "model": "gpt-mock",
            "stream": true,
            "stream_options": {"include_usage": true},
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": PROMPT}
            ]
        }),
        Provider::OpenAi => json!({
            "model": "gpt-mock",
            "stream": false,
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": PROMPT}
            ]
        }),
        Provider::Anthropic => json!({
            "model": "claude-mock",
            "max_tokens": 100,
            "stream": stream,
            "system": SYSTEM,
            "messages": [{"role": "user", "content": [{"type": "text", "text": PROMPT}]}]
        }),
    }
}

/// Sends one call with and without the middleware (the latter inside the
/// interaction span too) and returns what the client saw each time.
fn run(c: &Client, url: &str, p: Provider, body: &Value, in_interaction: bool) -> (Seen, Seen) {
    run_with(c, url, p, body, in_interaction, LlmCaptureMiddleware::new())
}

fn run_with(
    c: &Client,
    url: &str,
    p: Provider,
    body: &Value,
    in_interaction: bool,
    mw: LlmCaptureMiddleware,
) -> (Seen, Seen) {
    let sub = tracing_subscriber::registry().with(raindrop::layer_for(c));
    let _default = tracing::subscriber::set_default(sub);
    let plain = reqwest::Client::new();
    let with = ClientBuilder::new(reqwest::Client::new()).with(mw).build();
    let key = |rb: reqwest_middleware::RequestBuilder| match p {
        Provider::OpenAi => rb.bearer_auth(API_KEY),
        Provider::Anthropic => rb.header("x-api-key", API_KEY),
    };
    block_on_in_time(Duration::from_secs(20), async {
        let without = {
            let rb = plain.post(url).body(body.to_string());
            let rb = match p {
                Provider::OpenAi => rb.bearer_auth(API_KEY),
                Provider::Anthropic => rb.header("x-api-key", API_KEY),
            };
            read(rb.send().await.unwrap()).await
        };
        let call = async {
            let rb = key(with.post(url).body(body.to_string()));
            read(rb.send().await.unwrap()).await
        };
        let seen = if in_interaction {
            let span = tracing::info_span!(
                "ask",
                raindrop.kind = "interaction",
                raindrop.user_id = "user-1",
            );
            call.instrument(span).await
        } else {
            call.await
        };
        (without, seen)
    })
}

fn flush(c: &Client) {
    assert!(c.flush(Duration::from_secs(20)), "flush timed out");
}

fn check_recorded(cap: &Capture, model: &str, input_tokens: i64, output_tokens: i64) -> Value {
    let rec = recorded(cap);
    let events = rec.interactions();
    assert_eq!(events.len(), 1, "one interaction: {events:?}");
    let ev = events[0];
    assert!(ev.finished);
    assert_eq!(ev.model.as_deref(), Some(model));
    assert_eq!(ev.input.as_deref(), Some(PROMPT));
    assert_eq!(ev.output.as_deref(), Some(ANSWER));
    assert_eq!(ev.properties["input_tokens"], input_tokens);
    assert_eq!(ev.properties["output_tokens"], output_tokens);
    assert_eq!(ev.properties["total_tokens"], input_tokens + output_tokens);
    assert_eq!(ev.properties["llm_calls"], 1);
    let llm = llm_spans(cap);
    assert_eq!(llm.len(), 1, "one LLM span: {:#?}", cap.spans());
    let s = llm[0].clone();
    assert!(
        [
            "openai.chat_completions.llm",
            "openai.responses.llm",
            "anthropic.messages.llm"
        ]
        .contains(&s["name"].as_str().unwrap()),
        "{}",
        s["name"]
    );
    assert_eq!(
        s["traceId"],
        cap.spans()
            .iter()
            .find(|x| x["name"] == "ask.workflow")
            .expect("interaction span")["traceId"]
    );
    assert_eq!(
        attr_str(&s, "traceloop.association.properties.event_id").as_deref(),
        Some(ev.event_id.as_str())
    );
    assert_eq!(
        attr_str(&s, "gen_ai.response.model").as_deref(),
        Some(model)
    );
    assert_eq!(
        attr_str(&s, "gen_ai.prompt.0.role").as_deref(),
        Some("system")
    );
    assert_turn(&s, SYSTEM, PROMPT, ANSWER);
    assert_eq!(
        attr_int(&s, "gen_ai.usage.input_tokens"),
        Some(input_tokens)
    );
    assert_eq!(
        attr_int(&s, "gen_ai.usage.output_tokens"),
        Some(output_tokens)
    );
    // The API key is never recorded.
    for r in cap.requests() {
        assert!(!r.body.to_string().contains(API_KEY), "{}", r.body);
    }
    s
}

fn case(p: Provider, stream: bool) {
    let _serial = serial();
    let mock = start_mock();
    let cap = Capture::start(vec![]);
    let c = client_with(&cap, |o| o);
    let (path, model, input, output) = match p {
        Provider::OpenAi => ("v1/chat/completions", "gpt-mock-2024", 11, 5),
        Provider::Anthropic => ("v1/messages", "claude-mock-1", 13, 6),
    };
    let url = format!("http://{mock}/{path}");
    let (without, with) = run(&c, &url, p, &request_body(p, stream), true);
    assert_eq!(with, without, "the client sees the server's bytes");
    assert_eq!(with.status, 200);
    assert!(with.echo.is_some(), "the mock echoes the request");
    assert!(with.body_error.is_none());
    flush(&c);
    let s = check_recorded(&cap, model, input, output);
    let finish = match p {
        Provider::OpenAi => "stop",
        Provider::Anthropic => "end_turn",
    };
    assert_eq!(
        attr_str(&s, "gen_ai.response.finish_reasons").as_deref(),
        Some(finish)
    );
    assert_ne!(s["status"]["code"], 2, "not an error: {s:#?}");
    assert_eq!(
        attr_int(&s, "traceloop.association.properties.http.status_code"),
        Some(200)
    );
    let ttfc = attr(&s, "gen_ai.response.time_to_first_chunk");
    assert_eq!(
        ttfc.is_some(),
        stream,
        "time to first chunk for streams only"
    );
}

#[test]
fn openai_chat_completions_not_streamed() {
    case(Provider::OpenAi, false);
}

#[test]
fn openai_chat_completions_streamed() {
    case(Provider::OpenAi, true);
}

#[test]
fn anthropic_messages_not_streamed() {
    case(Provider::Anthropic, false);
}

#[test]
fn anthropic_messages_streamed() {
    case(Provider::Anthropic, true);
}

#[test]
fn openai_responses_and_tool_calls() {
    let _serial = serial();
    let mock = start_mock();
    let cap = Capture::start(vec![]);
    let c = client_with(&cap, |o| o);
    let body = json!({"model": "gpt-mock", "instructions": SYSTEM, "input": PROMPT});
    let (without, with) = run(
        &c,
        &format!("http://{mock}/v1/responses"),
        Provider::OpenAi,
        &body,
        true,
    );
    assert_eq!(with, without);
    flush(&c);
    check_recorded(&cap, "gpt-mock-2024", 9, 4);

    let cap = Capture::start(vec![]);
    let c = client_with(&cap, |o| o);
    let (without, with) = run(
        &c,
        &format!("http://{mock}/tools/v1/chat/completions"),
        Provider::OpenAi,
        &request_body(Provider::OpenAi, false),
        true,
    );
    assert_eq!(with, without);
    flush(&c);
    let llm = llm_spans(&cap);
    assert_eq!(llm.len(), 1);
    let out = attr_str(&llm[0], "gen_ai.completion.0.content").expect("tool call recorded");
    assert!(out.contains("weather") && out.contains("Paris"), "{out}");
    assert_eq!(
        attr_str(&llm[0], "gen_ai.response.finish_reasons").as_deref(),
        Some("tool_calls")
    );
}

/// `incomplete`: the captures the client counts as incomplete.
fn error_case(path: &str, p: Provider, stream: bool, want: &str, incomplete: u64) -> Seen {
    let mock = start_mock();
    let cap = Capture::start(vec![]);
    let c = client_with(&cap, |o| o);
    let (without, with) = run(
        &c,
        &format!("http://{mock}/{path}"),
        p,
        &request_body(p, stream),
        true,
    );
    assert_eq!(with, without, "the client sees the same error");
    flush(&c);
    let llm = llm_spans(&cap);
    assert_eq!(llm.len(), 1, "{:#?}", cap.spans());
    let s = &llm[0];
    assert_eq!(s["status"]["code"], 2, "error status: {s:#?}");
    assert_eq!(
        attr_int(s, "traceloop.association.properties.http.status_code"),
        Some(i64::from(with.status))
    );
    let msg = s["status"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains(want), "{msg} should contain {want}");
    assert_eq!(c.stats().llm_captures_incomplete, incomplete, "{path}");
    with
}

#[test]
fn error_statuses_and_a_cut_stream_end_the_span_with_the_error() {
    let _serial = serial();
    for (p, path) in [
        (Provider::OpenAi, "v1/chat/completions"),
        (Provider::Anthropic, "v1/messages"),
    ] {
        for stream in [false, true] {
            let seen = error_case(&format!("e429/{path}"), p, stream, "429", 0);
            assert_eq!(seen.status, 429);
            let seen = error_case(&format!("e500/{path}"), p, stream, "500", 0);
            assert_eq!(seen.status, 500);
            // The error body reaches the caller as the server sent it.
            assert!(String::from_utf8_lossy(&seen.chunks).contains("slow down"));
        }
        // A stream cut in the middle: the caller gets the body error it
        // gets without the SDK; the capture is counted as incomplete.
        let seen = error_case(&format!("cut/{path}"), p, true, "body", 1);
        assert!(seen.body_error.is_some(), "the stream was cut: {seen:?}");
    }
}

#[test]
fn outside_an_interaction_nothing_is_recorded() {
    let _serial = serial();
    let mock = start_mock();
    let cap = Capture::start(vec![]);
    let c = client_with(&cap, |o| o);
    let (without, with) = run(
        &c,
        &format!("http://{mock}/v1/chat/completions"),
        Provider::OpenAi,
        &request_body(Provider::OpenAi, true),
        false,
    );
    assert_eq!(with, without);
    flush(&c);
    assert!(cap.spans().is_empty(), "{:#?}", cap.spans());
    assert!(recorded(&cap).interactions().is_empty());
}

#[test]
fn with_capture_content_off_no_prompt_or_completion_leaves() {
    let _serial = serial();
    let mock = start_mock();
    for (p, path) in [
        (Provider::OpenAi, "v1/chat/completions"),
        (Provider::Anthropic, "v1/messages"),
    ] {
        for stream in [false, true] {
            let cap = Capture::start(vec![]);
            let c = client_with(&cap, |o| o.capture_content(false));
            let mut body = request_body(p, stream);
            body["tools"] = json!([{"name": "secret_tool", "description": "SECRET TOOL TEXT",
                "input_schema": {"type": "object"}}]);
            let (without, with) = run(&c, &format!("http://{mock}/{path}"), p, &body, true);
            assert_eq!(with, without);
            flush(&c);
            assert_eq!(llm_spans(&cap).len(), 1, "the call is still recorded");
            let rec = recorded(&cap);
            assert_eq!(rec.interactions().len(), 1);
            for r in cap.requests() {
                let body = r.body.to_string();
                for text in [
                    PROMPT,
                    SYSTEM,
                    ANSWER,
                    "Paris is ",
                    "the capital.",
                    "secret_tool",
                    "SECRET TOOL TEXT",
                ] {
                    assert!(!body.contains(text), "{text:?} sent: {body}");
                }
            }
        }
    }
}

#[test]
fn stream_usage_is_asked_for_only_when_opted_in() {
    let _serial = serial();
    let mock = start_mock();
    let url = format!("http://{mock}/v1/chat/completions");
    let body = json!({"model": "gpt-mock", "stream": true,
        "messages": [{"role": "user", "content": PROMPT}]});

    // Not opted in: the request goes out as given, no usage comes back.
    let cap = Capture::start(vec![]);
    let c = client_with(&cap, |o| o);
    let (without, with) = run(&c, &url, Provider::OpenAi, &body, true);
    assert_eq!(with, without);
    flush(&c);
    let rec = recorded(&cap);
    let ev = rec.interactions()[0];
    assert_eq!(ev.output.as_deref(), Some(ANSWER));
    assert!(ev.properties.get("input_tokens").is_none(), "{ev:?}");

    // Opted in: `stream_options.include_usage` is added, usage recorded.
    let cap = Capture::start(vec![]);
    let c = client_with(&cap, |o| o);
    let mw = LlmCaptureMiddleware::new().include_stream_usage(true);
    let (without, with) = run_with(&c, &url, Provider::OpenAi, &body, true, mw);
    assert_ne!(with.echo, without.echo, "the body was changed");
    assert!(with.echo.as_deref().unwrap().contains("include_usage"));
    flush(&c);
    let rec = recorded(&cap);
    let ev = rec.interactions()[0];
    assert_eq!(ev.properties["input_tokens"], 11);
    assert_eq!(ev.properties["output_tokens"], 5);
}

#[test]
fn a_stream_reaches_the_client_chunk_by_chunk() {
    use std::sync::atomic::Ordering;
    let _serial = serial();
    let mock = start_mock();
    let cap = Capture::start(vec![]);
    let c = client_with(&cap, |o| o);
    let sub = tracing_subscriber::registry().with(raindrop::layer_for(&c));
    let _default = tracing::subscriber::set_default(sub);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let http = ClientBuilder::new(reqwest::Client::new())
        .with(LlmCaptureMiddleware::new())
        .build();
    let url = format!("http://{mock}/slow/v1/chat/completions");
    let span = tracing::info_span!("ask", raindrop.kind = "interaction", raindrop.user_id = "u");
    let first_after = rt.block_on(
        async {
            let started = std::time::Instant::now();
            let mut resp = http
                .post(&url)
                .body(request_body(Provider::OpenAi, true).to_string())
                .send()
                .await
                .unwrap();
            let first = resp.chunk().await.unwrap().expect("a first chunk");
            let first_after = started.elapsed();
            assert!(String::from_utf8_lossy(&first).contains("Paris is "));
            FIRST_CHUNK_SEEN.store(true, Ordering::SeqCst);
            while resp.chunk().await.unwrap().is_some() {}
            first_after
        }
        .instrument(span),
    );
    assert!(
        first_after < Duration::from_secs(3),
        "the first chunk waited for the whole stream: {first_after:?}"
    );
    drop(_default);
    flush(&c);
    let rec = recorded(&cap);
    assert_eq!(rec.interactions()[0].output.as_deref(), Some(ANSWER));
}

#[test]
fn streamed_tool_calls_and_a_streamed_responses_answer() {
    let _serial = serial();
    let mock = start_mock();
    for (p, path) in [
        (Provider::OpenAi, "v1/chat/completions"),
        (Provider::Anthropic, "v1/messages"),
    ] {
        let cap = Capture::start(vec![]);
        let c = client_with(&cap, |o| o);
        let url = format!("http://{mock}/stream/{path}");
        let (without, with) = run(&c, &url, p, &request_body(p, true), true);
        assert_eq!(with, without);
        flush(&c);
        let llm = llm_spans(&cap);
        assert_eq!(llm.len(), 1);
        let out = attr_str(&llm[0], "gen_ai.completion.0.content").expect("tool call recorded");
        let calls: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(calls[0]["name"], "weather", "{out}");
        assert_eq!(calls[0]["arguments"], r#"{"city":"Paris"}"#, "{out}");
        // A tool call is not the interaction's answer.
        assert_eq!(recorded(&cap).interactions()[0].output, None);
    }

    let cap = Capture::start(vec![]);
    let c = client_with(&cap, |o| o);
    let body = json!({"model": "gpt-mock", "stream": true, "instructions": SYSTEM,
        "input": [{"role": "user", "content": [{"type": "input_text", "text": PROMPT}]}]});
    let url = format!("http://{mock}/stream/v1/responses");
    let (without, with) = run(&c, &url, Provider::OpenAi, &body, true);
    assert_eq!(with, without);
    flush(&c);
    check_recorded(&cap, "gpt-mock-2024", 9, 4);
}

#[test]
fn past_the_capture_bound_the_bytes_still_flow() {
    let _serial = serial();
    let mock = start_mock();
    for stream in [false, true] {
        let cap = Capture::start(vec![]);
        let c = client_with(&cap, |o| o);
        let url = format!("http://{mock}/v1/chat/completions");
        let body = request_body(Provider::OpenAi, stream);
        // Room for the request, not for the response.
        let bound = body.to_string().len() + 10;
        let mw = LlmCaptureMiddleware::new().max_capture_bytes(bound);
        let (without, with) = run_with(&c, &url, Provider::OpenAi, &body, true, mw);
        assert_eq!(with, without, "the whole response reaches the client");
        assert!(with.chunks.len() > bound, "{}", with.chunks.len());
        flush(&c);
        let llm = llm_spans(&cap);
        assert_eq!(llm.len(), 1, "the call is recorded");
        assert_eq!(
            attr_str(&llm[0], "gen_ai.prompt.1.content").as_deref(),
            Some(PROMPT)
        );
        assert_eq!(
            attr(
                &llm[0],
                "traceloop.association.properties.capture_truncated"
            ),
            Some(json!({"boolValue": true}))
        );
        assert_eq!(c.stats().llm_captures_incomplete, 1);
        // Not the whole answer: capture stopped at the bound.
        assert_ne!(
            attr_str(&llm[0], "gen_ai.completion.0.content").as_deref(),
            Some(ANSWER)
        );
    }
}

/// The tools a request offers become the span's `ai.prompt.tools` (each
/// API's shape normalised); usage is read by the contract's names, with the
/// cost OpenRouter reports.
#[test]
fn request_tools_usage_and_the_provider_reported_cost() {
    let _serial = serial();
    let mock = start_mock();
    let cap = Capture::start(vec![]);
    let c = client_with(&cap, |o| o);
    let mut body = request_body(Provider::OpenAi, false);
    body["tools"] = json!([
        {"type": "function", "function": {"name": "weather", "description": "Weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
        {"type": "web_search_preview"}
    ]);
    let url = format!("http://{mock}/openrouter/v1/chat/completions");
    let (without, with) = run(&c, &url, Provider::OpenAi, &body, true);
    assert_eq!(with, without);
    flush(&c);
    let llm = llm_spans(&cap);
    assert_eq!(llm.len(), 1);
    let s = &llm[0];
    let tools: Vec<Value> = attr(s, "ai.prompt.tools").expect("ai.prompt.tools")["arrayValue"]
        ["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| serde_json::from_str(v["stringValue"].as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(
        tools,
        [
            json!({"type": "function", "name": "weather", "description": "Weather in a city",
                "inputSchema": {"type": "object", "properties": {"city": {"type": "string"}}}}),
            json!({"type": "provider-defined", "id": "web_search_preview", "name": "web_search_preview"}),
        ]
    );
    assert!(attr(s, "ai.prompt.tools.source").is_none(), "exact capture");
    assert_eq!(
        attr(s, "gen_ai.usage.provider_reported_cost"),
        Some(json!({"doubleValue": 0.000123}))
    );
    assert_eq!(attr_int(s, "gen_ai.usage.cache_read_input_tokens"), Some(4));
    assert_eq!(attr_int(s, "gen_ai.usage.reasoning_tokens"), Some(2));
    assert_eq!(attr_int(s, "gen_ai.usage.input_tokens"), Some(11));
    assert_eq!(c.stats().llm_captures_incomplete, 0);

    // Anthropic's shape; a request with no tools says so with an empty list.
    let cap = Capture::start(vec![]);
    let c = client_with(&cap, |o| o);
    let mut body = request_body(Provider::Anthropic, false);
    body["tools"] = json!([{"name": "weather", "input_schema": {"type": "object"}}]);
    let url = format!("http://{mock}/v1/messages");
    run(&c, &url, Provider::Anthropic, &body, true);
    run(
        &c,
        &url,
        Provider::Anthropic,
        &request_body(Provider::Anthropic, false),
        true,
    );
    flush(&c);
    let llm = llm_spans(&cap);
    assert_eq!(llm.len(), 2);
    let lists: Vec<Value> = llm
        .iter()
        .map(|s| attr(s, "ai.prompt.tools").expect("ai.prompt.tools")["arrayValue"].clone())
        .collect();
    assert!(
        lists.iter().any(|l| l["values"][0]["stringValue"]
            .as_str()
            .is_some_and(|t| t.contains(r#""inputSchema":{"type":"object"}"#))),
        "{lists:?}"
    );
    assert!(
        lists.iter().any(|l| l
            .get("values")
            .is_none_or(|v| v.as_array().is_some_and(Vec::is_empty))),
        "{lists:?}"
    );
}

/// A 200 answer that is not the API's JSON (a proxy's page): the client
/// reads it as sent, the call is recorded without output and counted as
/// captured in part.
#[test]
fn an_unparseable_answer_is_passed_through_and_counted() {
    let _serial = serial();
    let mock = start_mock();
    let cap = Capture::start(vec![]);
    let c = client_with(&cap, |o| o);
    let url = format!("http://{mock}/garbage/v1/chat/completions");
    let body = request_body(Provider::OpenAi, false);
    let (without, with) = run(&c, &url, Provider::OpenAi, &body, true);
    assert_eq!(with, without);
    assert!(String::from_utf8_lossy(&with.chunks).contains("proxy"));
    flush(&c);
    let llm = llm_spans(&cap);
    assert_eq!(llm.len(), 1);
    assert!(attr(&llm[0], "gen_ai.completion.0.content").is_none());
    assert_eq!(c.stats().llm_captures_incomplete, 1);
}
