//! swiftide's model calls, as its `langfuse` feature traces them (0.32): a
//! span declaring `langfuse.type = "GENERATION"` (`#[instrument(skip_all,
//! err, fields(..))]` around `complete` / `prompt`, an `info_span!("stream",
//! ..)` around a stream) and, inside it, one DEBUG event with
//! `langfuse.model`, `langfuse.input` (the OpenAI request, pretty JSON),
//! `langfuse.output` (swiftide's response, pretty JSON) and
//! `langfuse.usage` (swiftide's `Usage`). swiftide itself is not a
//! dependency (it is large): these functions emit exactly its field names
//! and shapes. The interaction and the LLM span are filled as from rig's.

use std::time::Duration;

use raindrop::testing::Recorded;
use raindrop::{Client, ClientOptions};
use raindrop_test_support::spans::{assert_turn, attr, attr_int, attr_str, llm_spans};
use raindrop_test_support::{block_on_in_time, serial, Capture};
use serde_json::{json, Value};
use tracing::Instrument;
use tracing_subscriber::prelude::*;

const PROMPT: &str = "What is the capital of France?";
const SYSTEM: &str = "You are terse.";
const ANSWER: &str = "Paris is the capital.";
const MODEL: &str = "gpt-4o-mini";

/// The request swiftide's OpenAI integration builds (async-openai's
/// `CreateChatCompletionRequest`, serialised).
fn openai_request() -> Value {
    json!({
        "model": MODEL,
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": PROMPT}
        ],
        "tools": [{"type": "function", "function": {
            "name": "search", "description": "Searches the docs",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}]
    })
}

/// swiftide's `ChatCompletionResponse` and `Usage`, serialised.
fn swiftide_response() -> (Value, Value) {
    let usage = json!({"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16,
        "details": {"prompt_tokens_details": {"cached_tokens": 3}}});
    let response = json!({
        "id": "0b5c1f0e-7d0b-4a8e-9a56-2f7c3c1b9e11",
        "message": ANSWER,
        "tool_calls": null,
        "usage": usage,
        "reasoning": null,
        "delta": null
    });
    (response, usage)
}

/// What swiftide's `track_completion` emits (feature `langfuse`).
fn track_completion(model: &str, request: &Value, response: &Value, usage: &Value) {
    tracing::debug!(
        langfuse.model = model,
        langfuse.input = serde_json::to_string_pretty(request)
            .ok()
            .unwrap_or_default(),
        langfuse.output = serde_json::to_string_pretty(response)
            .ok()
            .unwrap_or_default(),
        langfuse.usage = serde_json::to_string_pretty(usage).ok().unwrap_or_default(),
    );
}

/// `ChatCompletion::complete` with swiftide's attribute.
#[tracing::instrument(skip_all, err, fields(langfuse.type = "GENERATION"))]
async fn complete(fail: bool) -> Result<String, String> {
    tokio::time::sleep(Duration::from_millis(5)).await;
    if fail {
        return Err("LanguageModelError: TransientError: 429 Too Many Requests".to_owned());
    }
    let (response, usage) = swiftide_response();
    track_completion(MODEL, &openai_request(), &response, &usage);
    Ok(ANSWER.to_owned())
}

/// `complete_stream`: the stream is instrumented with its own span and the
/// completion tracked when the stream ends.
async fn complete_stream() -> String {
    let span = tracing::info_span!("stream", langfuse.type = "GENERATION");
    async {
        let mut text = String::new();
        for part in ["Paris is ", "the capital."] {
            tokio::task::yield_now().await;
            text.push_str(part);
        }
        let (response, usage) = swiftide_response();
        track_completion(MODEL, &openai_request(), &response, &usage);
        text
    }
    .instrument(span)
    .await
}

fn client(cap: &Capture) -> Client {
    Client::new(
        ClientOptions::default()
            .write_key("rk_test_swiftide")
            .endpoint(cap.endpoint())
            .upload_interval(Duration::from_millis(50)),
    )
    .unwrap()
}

/// Runs `call` in an interaction span; the subscriber also has a log layer
/// filtered at INFO (swiftide's events are DEBUG: the raindrop layer's own
/// filter still sees them).
fn in_interaction<T>(c: &Client, call: impl std::future::Future<Output = T>) -> T {
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::sink)
        .with_filter(tracing_subscriber::filter::LevelFilter::INFO);
    let sub = tracing_subscriber::registry()
        .with(logs)
        .with(raindrop::layer_for(c));
    let _default = tracing::subscriber::set_default(sub);
    let span = tracing::info_span!(
        "ask",
        raindrop.kind = "interaction",
        raindrop.user_id = "u-1"
    );
    let out = block_on_in_time(Duration::from_secs(10), call.instrument(span));
    assert!(c.flush(Duration::from_secs(20)), "flush timed out");
    out
}

fn recorded(cap: &Capture) -> Recorded {
    let mut rec = Recorded::default();
    cap.each_accepted(|route, body| rec.push(route, body));
    rec
}

fn tools_of(span: &Value) -> Vec<Value> {
    let tools = attr(span, "ai.prompt.tools").expect("ai.prompt.tools");
    tools["arrayValue"]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| serde_json::from_str(v["stringValue"].as_str().unwrap()).unwrap())
        .collect()
}

fn check(cap: &Capture, span_name: &str) -> Value {
    let rec = recorded(cap);
    let ev = rec.interactions()[0];
    assert_eq!(ev.model.as_deref(), Some(MODEL));
    assert_eq!(ev.input.as_deref(), Some(PROMPT));
    assert_eq!(ev.output.as_deref(), Some(ANSWER));
    assert_eq!(ev.properties["input_tokens"], 11);
    assert_eq!(ev.properties["output_tokens"], 5);
    assert_eq!(ev.properties["cache_read_input_tokens"], 3);
    assert_eq!(ev.properties["llm_calls"], 1);
    let llm = llm_spans(cap);
    assert_eq!(llm.len(), 1, "{:#?}", cap.spans());
    let s = llm[0].clone();
    assert_eq!(s["name"], format!("{span_name}.llm"));
    assert_eq!(s["status"]["code"], 1);
    assert_eq!(attr_str(&s, "gen_ai.request.model").as_deref(), Some(MODEL));
    assert_eq!(
        attr_str(&s, "gen_ai.prompt.0.role").as_deref(),
        Some("system")
    );
    assert_turn(&s, SYSTEM, PROMPT, ANSWER);
    assert_eq!(attr_int(&s, "gen_ai.usage.input_tokens"), Some(11));
    assert_eq!(attr_int(&s, "gen_ai.usage.output_tokens"), Some(5));
    assert_eq!(
        attr_int(&s, "gen_ai.usage.cache_read_input_tokens"),
        Some(3)
    );
    s
}

#[test]
fn a_swiftide_completion_fills_the_interaction_and_its_llm_span() {
    let _serial = serial();
    let cap = Capture::start(vec![]);
    let c = client(&cap);
    let out = in_interaction(&c, complete(false));
    assert_eq!(out.as_deref(), Ok(ANSWER));
    let s = check(&cap, "complete");
    // The request's tools, normalised; an exact capture carries no source.
    assert_eq!(
        tools_of(&s),
        [
            json!({"type": "function", "name": "search", "description": "Searches the docs",
                "inputSchema": {"type": "object", "properties": {"q": {"type": "string"}}}})
        ]
    );
    assert!(attr(&s, "ai.prompt.tools.source").is_none());
}

#[test]
fn a_swiftide_stream_fills_the_interaction_and_its_llm_span() {
    let _serial = serial();
    let cap = Capture::start(vec![]);
    let c = client(&cap);
    let text = in_interaction(&c, complete_stream());
    assert_eq!(text, ANSWER);
    check(&cap, "stream");
}

#[test]
fn the_tools_set_on_the_interaction_win_over_the_requests() {
    let _serial = serial();
    let cap = Capture::start(vec![]);
    let c = client(&cap);
    in_interaction(&c, async {
        raindrop::resume_interaction()
            .set_tools([json!({"name": "lookup", "input_schema": {"type": "object"}})]);
        complete(false).await
    })
    .unwrap();
    let s = check(&cap, "complete");
    assert_eq!(
        tools_of(&s),
        [json!({"type": "function", "name": "lookup", "inputSchema": {"type": "object"}})]
    );
    assert_eq!(
        attr_str(&s, "ai.prompt.tools.source").as_deref(),
        Some("interaction")
    );
}

#[test]
fn a_failed_swiftide_completion_ends_its_span_with_the_error() {
    let _serial = serial();
    let cap = Capture::start(vec![]);
    let c = client(&cap);
    let out = in_interaction(&c, complete(true));
    assert!(out.is_err());
    let llm = llm_spans(&cap);
    assert_eq!(llm.len(), 1, "{:#?}", cap.spans());
    assert_eq!(llm[0]["status"]["code"], 2);
    let msg = llm[0]["status"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("429"), "{msg}");
}
