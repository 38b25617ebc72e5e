//! async-openai's calls captured through its tower stack (`llm-tower`):
//! the real async-openai client, its `middleware` feature's
//! `with_http_service`, `LlmCaptureLayer` in the stack and nothing else,
//! against an OpenAI-compatible mock on 127.0.0.1, streamed and not. Each
//! call is also made by a client without the layer: the request the server
//! got and the values the client returned must be the same.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_openai::config::OpenAIConfig;
use async_openai::middleware::ReqwestService;
use async_openai::types::chat::{
    ChatCompletionRequestSystemMessage, ChatCompletionRequestUserMessage,
    CreateChatCompletionRequest, CreateChatCompletionRequestArgs,
};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use futures::StreamExt;
use raindrop::llm_http::tower::LlmCaptureLayer;
use raindrop::testing::Recorded;
use raindrop::{Client, ClientOptions};
use raindrop_test_support::spans::{assert_turn, attr, attr_int, attr_str};
use raindrop_test_support::{block_on_in_time, serial, serve, Capture};
use serde_json::{json, Value};
use tracing::Instrument;
use tracing_subscriber::prelude::*;

const PROMPT: &str = "What is the capital of France?";
const SYSTEM: &str = "You are terse.";
const ANSWER: &str = "Paris is the capital.";
const API_KEY: &str = "sk-test-secret-key-456";

/// What the mock received: the `Authorization` header and the body.
type Received = Arc<Mutex<Vec<(String, String)>>>;

fn chunks() -> Vec<String> {
    let mut c: Vec<String> = [
        json!({"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-mock-2024","choices":[{"index":0,"delta":{"role":"assistant","content":"Paris is "},"finish_reason":null}]}),
        json!({"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-mock-2024","choices":[{"index":0,"delta":{"content":"the capital."},"finish_reason":null}]}),
        json!({"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-mock-2024","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}),
        json!({"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-mock-2024","choices":[],"usage":{"prompt_tokens":11,"completion_tokens":5,"total_tokens":16}}),
    ]
    .iter()
    .map(|e| format!("data: {e}\n\n"))
    .collect();
    c.push("data: [DONE]\n\n".to_owned());
    c
}

async fn chat(State(received): State<Received>, headers: HeaderMap, body: String) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    received.lock().unwrap().push((auth, body.clone()));
    let req: Value = serde_json::from_str(&body).unwrap();
    if req["stream"] == true {
        let mut chunks = chunks();
        if req["stream_options"]["include_usage"] != true {
            // Like OpenAI: usage only when asked for.
            chunks.remove(3);
        }
        let stream = futures::stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok::<_, std::io::Error>(Bytes::from(c))),
        );
        return Response::builder()
            .header(header::CONTENT_TYPE, "text/event-stream")
            .body(Body::from_stream(stream))
            .unwrap();
    }
    let reply = json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-mock-2024",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(reply.to_string()))
        .unwrap()
}

async fn failing() -> Response {
    Response::builder()
        .status(500)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            r#"{"error":{"message":"the model is down","type":"server_error","param":null,"code":null}}"#,
        ))
        .unwrap()
}

/// The mock model server on 127.0.0.1, its runtime on its own thread.
fn start_mock() -> (SocketAddr, Received) {
    let received = Received::default();
    let app = Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/e500/v1/chat/completions", post(failing))
        .with_state(received.clone());
    (serve(app), received)
}

/// An async-openai client on the mock; with `layer`, its tower stack has
/// the capture layer (the only difference between the two).
fn openai(base: &str, layer: Option<LlmCaptureLayer>) -> async_openai::Client<OpenAIConfig> {
    let config = OpenAIConfig::new()
        .with_api_base(base)
        .with_api_key(API_KEY);
    let transport = ReqwestService::new(reqwest::Client::new());
    let client = async_openai::Client::with_config(config);
    match layer {
        Some(layer) => {
            client.with_http_service(tower::ServiceBuilder::new().layer(layer).service(transport))
        }
        None => client.with_http_service(transport),
    }
}

fn request(stream: bool) -> CreateChatCompletionRequest {
    CreateChatCompletionRequestArgs::default()
        .model("gpt-mock")
        .messages([
            ChatCompletionRequestSystemMessage::from(SYSTEM).into(),
            ChatCompletionRequestUserMessage::from(PROMPT).into(),
        ])
        .stream(stream)
        .build()
        .unwrap()
}

/// What the client returned: the response, or each streamed chunk, as JSON.
async fn call(client: &async_openai::Client<OpenAIConfig>, stream: bool) -> Vec<Value> {
    if !stream {
        let resp = client.chat().create(request(false)).await.unwrap();
        return vec![serde_json::to_value(resp).unwrap()];
    }
    let mut s = client.chat().create_stream(request(true)).await.unwrap();
    let mut seen = Vec::new();
    while let Some(chunk) = s.next().await {
        seen.push(serde_json::to_value(chunk.unwrap()).unwrap());
    }
    seen
}

fn recorded(cap: &Capture) -> Recorded {
    let mut rec = Recorded::default();
    cap.each_accepted(|route, body| rec.push(route, body));
    rec
}

fn client(cap: &Capture) -> Client {
    Client::new(
        ClientOptions::default()
            .write_key("rk_test_llm_tower")
            .endpoint(cap.endpoint())
            .upload_interval(Duration::from_millis(50)),
    )
    .unwrap()
}

/// One call with the layer (inside an interaction) and one without; what
/// each client returned, and what the server got each time.
fn run(layer: LlmCaptureLayer, stream: bool) -> (Capture, Vec<Value>, Vec<Value>, Received) {
    let cap = Capture::start(vec![]);
    // Built first: it installs ring as rustls's provider, which reqwest's
    // `rustls-no-provider` clients (the test's) need.
    let c = client(&cap);
    let (addr, received) = start_mock();
    let sub = tracing_subscriber::registry().with(raindrop::layer_for(&c));
    let _default = tracing::subscriber::set_default(sub);
    let (without, with) = block_on_in_time(Duration::from_secs(20), async {
        let base = format!("http://{addr}/v1");
        let without = call(&openai(&base, None), stream).await;
        let span = tracing::info_span!(
            "ask",
            raindrop.kind = "interaction",
            raindrop.user_id = "user-1",
        );
        let with = call(&openai(&base, Some(layer)), stream)
            .instrument(span)
            .await;
        (without, with)
    });
    assert!(c.flush(Duration::from_secs(20)), "flush timed out");
    (cap, without, with, received)
}

fn llm_span(cap: &Capture) -> Value {
    let spans: Vec<Value> = cap
        .spans()
        .into_iter()
        .filter(|s| attr_str(s, "traceloop.span.kind").as_deref() == Some("llm"))
        .collect();
    assert_eq!(spans.len(), 1, "one LLM span: {spans:#?}");
    spans.into_iter().next().unwrap()
}

/// The interaction and its one LLM span, as from a reqwest-middleware
/// client (tests/llm_http.rs); the span is returned.
fn check_recorded(cap: &Capture, stream: bool) -> Value {
    let rec = recorded(cap);
    let events = rec.interactions();
    assert_eq!(events.len(), 1, "one interaction: {events:?}");
    let ev = events[0];
    assert!(ev.finished);
    assert_eq!(ev.model.as_deref(), Some("gpt-mock-2024"));
    assert_eq!(ev.input.as_deref(), Some(PROMPT));
    assert_eq!(ev.output.as_deref(), Some(ANSWER));
    assert_eq!(ev.properties["llm_calls"], 1);
    let s = llm_span(cap);
    assert_eq!(s["name"], "openai.chat_completions.llm");
    assert_eq!(
        attr_str(&s, "traceloop.association.properties.event_id").as_deref(),
        Some(ev.event_id.as_str())
    );
    assert_turn(&s, SYSTEM, PROMPT, ANSWER);
    assert_eq!(
        attr_str(&s, "gen_ai.response.finish_reasons").as_deref(),
        Some("stop")
    );
    assert_eq!(
        attr_int(&s, "traceloop.association.properties.http.status_code"),
        Some(200)
    );
    assert_eq!(
        attr(&s, "gen_ai.response.time_to_first_chunk").is_some(),
        stream,
        "time to first chunk for streams only"
    );
    if !stream {
        assert_eq!(attr_int(&s, "gen_ai.usage.input_tokens"), Some(11));
        assert_eq!(attr_int(&s, "gen_ai.usage.output_tokens"), Some(5));
    }
    // The API key is never recorded.
    for r in cap.requests() {
        assert!(!r.body.to_string().contains(API_KEY), "{}", r.body);
    }
    s
}

#[test]
fn a_chat_completion_is_recorded_and_the_client_sees_the_same() {
    let _serial = serial();
    let (cap, without, with, received) = run(LlmCaptureLayer::new(), false);
    assert_eq!(with, without, "the client's values are unchanged");
    assert_eq!(with[0]["choices"][0]["message"]["content"], ANSWER);
    let received = received.lock().unwrap();
    assert_eq!(received.len(), 2);
    assert_eq!(received[0], received[1], "the request went out unchanged");
    assert_eq!(received[1].0, format!("Bearer {API_KEY}"));

    check_recorded(&cap, false);
}

#[test]
fn a_streamed_chat_completion_is_recorded_and_the_client_sees_the_same_chunks() {
    let _serial = serial();
    let (cap, without, with, received) = run(LlmCaptureLayer::new(), true);
    assert_eq!(with, without, "the client's chunks are unchanged");
    assert_eq!(with.len(), 3, "no usage chunk unless asked for: {with:#?}");
    let received = received.lock().unwrap();
    assert_eq!(received[0], received[1], "the request went out unchanged");

    let span = check_recorded(&cap, true);
    // Usage was not asked for: none in the stream, none recorded.
    assert_eq!(attr_int(&span, "gen_ai.usage.input_tokens"), None);
}

#[test]
fn stream_usage_is_asked_for_only_when_opted_in() {
    let _serial = serial();
    let (cap, _without, with, received) =
        run(LlmCaptureLayer::new().include_stream_usage(true), true);
    assert_eq!(with.len(), 4, "the usage chunk reaches the client too");
    let received = received.lock().unwrap();
    let sent: Value = serde_json::from_str(&received[1].1).unwrap();
    assert_eq!(sent["stream_options"], json!({"include_usage": true}));
    let span = llm_span(&cap);
    assert_eq!(attr_int(&span, "gen_ai.usage.input_tokens"), Some(11));
    assert_eq!(attr_int(&span, "gen_ai.usage.output_tokens"), Some(5));
}

#[test]
fn a_server_error_ends_the_span_with_it_and_the_client_sees_the_same_error() {
    let _serial = serial();
    let cap = Capture::start(vec![]);
    let c = client(&cap);
    let (addr, _received) = start_mock();
    let sub = tracing_subscriber::registry().with(raindrop::layer_for(&c));
    let _default = tracing::subscriber::set_default(sub);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let base = format!("http://{addr}/e500/v1");
    let (without, with) = rt.block_on(async {
        let without = openai(&base, None).chat().create(request(false)).await;
        let span = tracing::info_span!(
            "ask",
            raindrop.kind = "interaction",
            raindrop.user_id = "user-1",
        );
        let with = openai(&base, Some(LlmCaptureLayer::new()))
            .chat()
            .create(request(false))
            .instrument(span)
            .await;
        (without, with)
    });
    let (without, with) = (without.unwrap_err(), with.unwrap_err());
    assert_eq!(with.to_string(), without.to_string());
    assert!(with.to_string().contains("the model is down"), "{with}");
    assert!(c.flush(Duration::from_secs(20)), "flush timed out");
    let s = llm_span(&cap);
    assert_eq!(s["status"]["code"], 2, "an error: {s:#?}");
    assert_eq!(
        attr_int(&s, "traceloop.association.properties.http.status_code"),
        Some(500)
    );
}
