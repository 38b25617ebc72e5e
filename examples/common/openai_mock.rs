//! For the rig example and its tests: an OpenAI-compatible chat-completions
//! server on 127.0.0.1 with deterministic answers. rig reaches it with its
//! own reqwest client (the SDK's reqwest 0.13: one HTTP and TLS stack).
//!
//! Nothing here is part of the SDK.
#![allow(dead_code)]

use std::net::SocketAddr;

use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

/// The model the mock says it is.
pub const RESPONSE_MODEL: &str = "gpt-mock-2026-01";
/// Token usage of the first call (which asks for the tool) and of the second.
pub const USAGE: [(i64, i64); 2] = [(31, 12), (52, 9)];
/// The final answer.
pub const ANSWER: &str = "2 + 3 = 5.";

/// The reply to one chat-completions request: a call of the `add` tool
/// first, the answer once the request carries the tool's result.
fn reply(req: &Value) -> Value {
    let has_tool_result = req["messages"]
        .as_array()
        .is_some_and(|m| m.iter().any(|m| m["role"] == "tool"));
    let (message, finish, (input, output)) = if has_tool_result {
        (
            json!({"role": "assistant", "content": ANSWER}),
            "stop",
            USAGE[1],
        )
    } else {
        (
            json!({"role": "assistant", "content": null, "tool_calls": [{
                "id": "call_add_1",
                "type": "function",
                "function": {"name": "add", "arguments": "{\"a\":2,\"b\":3}"}
            }]}),
            "tool_calls",
            USAGE[0],
        )
    };
    json!({
        "id": if has_tool_result { "chatcmpl-mock-2" } else { "chatcmpl-mock-1" },
        "object": "chat.completion",
        "created": 1_767_225_600,
        "model": RESPONSE_MODEL,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output}
    })
}

/// Starts the mock on an ephemeral loopback port (on the current tokio
/// runtime) and returns its base URL, `http://127.0.0.1:<port>/v1`.
pub async fn start() -> String {
    let app = Router::new().route(
        "/v1/chat/completions",
        post(|Json(req): Json<Value>| async move { Json(reply(&req)) }),
    );
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("bind 127.0.0.1");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/v1")
}
