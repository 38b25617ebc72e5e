//! The real genai client (its `otel` feature) against an in-process
//! OpenAI-compatible mock on 127.0.0.1, inside an interaction, with the
//! raindrop layer in the subscriber: the interaction and its LLM span are
//! filled from genai's own `gen_ai.*` spans, streamed and not. No code of
//! ours wraps the call.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use futures::StreamExt;
use genai::adapter::AdapterKind;
use genai::chat::{ChatMessage, ChatOptions, ChatRequest, ChatStreamEvent, Tool};
use genai::resolver::{AuthData, Endpoint, ServiceTargetResolver};
use genai::{ModelIden, ServiceTarget};
use raindrop::testing::Recorded;
use raindrop::{Client, ClientOptions};
use raindrop_test_support::spans::{assert_turn, attr, attr_int, attr_str, llm_spans};
use raindrop_test_support::{block_on_in_time, serial, serve, Capture};
use serde_json::{json, Value};
use tracing::Instrument;
use tracing_subscriber::prelude::*;

const PROMPT: &str = "What is the capital of France?";
const SYSTEM: &str = "You are terse.";
const ANSWER: &str = "Paris is the capital.";
const MODEL: &str = "gpt-mock";
const RESPONSE_MODEL: &str = "gpt-mock-2024";

fn json_response(status: u16, v: Value) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(v.to_string()))
        .unwrap()
}

/// Chat Completions, streamed when asked, usage included.
async fn openai(body: String) -> Response {
    let req: Value = serde_json::from_str(&body).unwrap();
    if req["stream"] != true {
        return json_response(
            200,
            json!({
                "id": "chatcmpl-1", "object": "chat.completion", "model": RESPONSE_MODEL,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16,
                          "prompt_tokens_details": {"cached_tokens": 2}}
            }),
        );
    }
    let events = [
        json!({"id":"chatcmpl-1","object":"chat.completion.chunk","model":RESPONSE_MODEL,"choices":[{"index":0,"delta":{"role":"assistant","content":"Paris is "},"finish_reason":null}]}),
        json!({"id":"chatcmpl-1","object":"chat.completion.chunk","model":RESPONSE_MODEL,"choices":[{"index":0,"delta":{"content":"the capital."},"finish_reason":null}]}),
        json!({"id":"chatcmpl-1","object":"chat.completion.chunk","model":RESPONSE_MODEL,"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}),
        json!({"id":"chatcmpl-1","object":"chat.completion.chunk","model":RESPONSE_MODEL,"choices":[],"usage":{"prompt_tokens":11,"completion_tokens":5,"total_tokens":16}}),
    ];
    let mut chunks: Vec<Result<Bytes, std::io::Error>> = events
        .iter()
        .map(|e| Ok(Bytes::from(format!("data: {e}\n\n"))))
        .collect();
    chunks.push(Ok(Bytes::from("data: [DONE]\n\n")));
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(Body::from_stream(futures::stream::iter(chunks)))
        .unwrap()
}

fn start_mock() -> SocketAddr {
    let app = Router::new()
        .route("/v1/chat/completions", post(openai))
        .route(
            "/e429/v1/chat/completions",
            post(|| async { json_response(429, json!({"error": {"message": "slow down"}})) }),
        );
    serve(app)
}

/// A genai client sending OpenAI requests to `base` (the mock).
fn genai_client(base: String) -> genai::Client {
    let resolver = ServiceTargetResolver::from_resolver_fn(
        move |t: ServiceTarget| -> Result<ServiceTarget, genai::resolver::Error> {
            Ok(ServiceTarget {
                endpoint: Endpoint::from_owned(base.clone()),
                auth: AuthData::from_single("sk-test"),
                model: ModelIden::new(AdapterKind::OpenAI, t.model.model_name),
            })
        },
    );
    genai::Client::builder()
        .with_service_target_resolver(resolver)
        .build()
        .expect("a genai client")
}

fn chat_request() -> ChatRequest {
    ChatRequest::new(vec![ChatMessage::user(PROMPT)])
        .with_system(SYSTEM)
        .with_tools(vec![Tool::new("weather")
            .with_description("The weather in a city")
            .with_schema(
                json!({"type": "object", "properties": {"city": {"type": "string"}}}),
            )])
}

fn client(cap: &Capture) -> Client {
    Client::new(
        ClientOptions::default()
            .write_key("rk_test_genai_client")
            .endpoint(cap.endpoint())
            .upload_interval(Duration::from_millis(50)),
    )
    .unwrap()
}

fn recorded(cap: &Capture) -> Recorded {
    let mut rec = Recorded::default();
    cap.each_accepted(|route, body| rec.push(route, body));
    rec
}

/// Runs `call` inside an interaction span with the raindrop layer of `c`
/// as the default subscriber; returns what genai answered.
fn in_interaction<F, T>(c: &Client, call: F) -> T
where
    F: std::future::Future<Output = T>,
{
    // genai records message content only when this is set (read once).
    std::env::set_var("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true");
    let sub = tracing_subscriber::registry().with(raindrop::layer_for(c));
    let _default = tracing::subscriber::set_default(sub);
    let span = tracing::info_span!(
        "ask",
        raindrop.kind = "interaction",
        raindrop.user_id = "u-1"
    );
    let out = block_on_in_time(Duration::from_secs(20), call.instrument(span));
    assert!(c.flush(Duration::from_secs(20)), "flush timed out");
    out
}

/// `model`: the response model for a call, the request model for a
/// stream (genai records no response model on a stream's span).
fn check(cap: &Capture, model: &str) -> Value {
    let rec = recorded(cap);
    let events = rec.interactions();
    assert_eq!(events.len(), 1, "{events:?}");
    let ev = events[0];
    assert_eq!(ev.model.as_deref(), Some(model));
    assert_eq!(ev.input.as_deref(), Some(PROMPT));
    assert_eq!(ev.output.as_deref(), Some(ANSWER));
    assert_eq!(ev.properties["input_tokens"], 11);
    assert_eq!(ev.properties["output_tokens"], 5);
    assert_eq!(ev.properties["llm_calls"], 1);
    let llm = llm_spans(cap);
    assert_eq!(llm.len(), 1, "{:#?}", cap.spans());
    let s = llm[0].clone();
    assert_eq!(s["status"]["code"], 1, "{s:#}");
    assert_eq!(
        attr_str(&s, "gen_ai.provider.name").as_deref(),
        Some("openai")
    );
    assert_eq!(attr_str(&s, "gen_ai.request.model").as_deref(), Some(MODEL));
    assert_eq!(
        attr_str(&s, "gen_ai.response.model").as_deref(),
        Some(model)
    );
    assert_turn(&s, SYSTEM, PROMPT, ANSWER);
    assert_eq!(attr_int(&s, "gen_ai.usage.input_tokens"), Some(11));
    assert_eq!(attr_int(&s, "gen_ai.usage.output_tokens"), Some(5));
    // The catalog, rebuilt from genai's `gen_ai.tool.definitions`.
    let tools = attr(&s, "ai.prompt.tools").expect("ai.prompt.tools");
    let tool: Value = serde_json::from_str(
        tools["arrayValue"]["values"][0]["stringValue"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        tool,
        json!({"type": "function", "name": "weather", "description": "The weather in a city",
               "inputSchema": {"type": "object", "properties": {"city": {"type": "string"}}}})
    );
    assert!(
        attr(&s, "ai.prompt.tools.source").is_none(),
        "exact capture"
    );
    s
}

#[test]
fn a_genai_call_fills_the_interaction_from_genais_spans() {
    let _serial = serial();
    let mock = start_mock();
    let cap = Capture::start(vec![]);
    let c = client(&cap);
    let g = genai_client(format!("http://{mock}/v1/"));
    let res = in_interaction(&c, async {
        g.exec_chat(MODEL, chat_request(), None).await.unwrap()
    });
    assert_eq!(res.first_text(), Some(ANSWER));
    let s = check(&cap, RESPONSE_MODEL);
    assert_eq!(
        attr_int(&s, "gen_ai.usage.cache_read_input_tokens"),
        Some(2)
    );
}

#[test]
fn a_streamed_genai_call_fills_the_interaction_from_genais_spans() {
    let _serial = serial();
    let mock = start_mock();
    let cap = Capture::start(vec![]);
    let c = client(&cap);
    let g = genai_client(format!("http://{mock}/v1/"));
    let text = in_interaction(&c, async {
        let opts = ChatOptions::default()
            .with_capture_usage(true)
            .with_capture_content(true);
        let mut res = g
            .exec_chat_stream(MODEL, chat_request(), Some(&opts))
            .await
            .unwrap();
        let mut text = String::new();
        while let Some(ev) = res.stream.next().await {
            if let ChatStreamEvent::Chunk(c) = ev.unwrap() {
                text.push_str(&c.content);
            }
        }
        text
    });
    assert_eq!(text, ANSWER);
    let s = check(&cap, MODEL);
    assert!(
        attr(&s, "gen_ai.response.time_to_first_chunk").is_some(),
        "{s:#}"
    );
}

#[test]
fn a_failed_genai_call_ends_its_span_with_the_error() {
    let _serial = serial();
    let mock = start_mock();
    let cap = Capture::start(vec![]);
    let c = client(&cap);
    let g = genai_client(format!("http://{mock}/e429/v1/"));
    let err = in_interaction(&c, async {
        g.exec_chat(MODEL, chat_request(), None)
            .await
            .expect_err("a 429")
    });
    assert!(err.to_string().contains("429"), "{err}");
    let llm = llm_spans(&cap);
    assert_eq!(llm.len(), 1, "{:#?}", cap.spans());
    assert_eq!(llm[0]["status"]["code"], 2, "{:#}", llm[0]);
    let msg = llm[0]["status"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("429"), "{msg}");
}
