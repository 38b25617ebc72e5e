//! For the rig example and its tests: an OpenAI-compatible chat-completions
//! server on 127.0.0.1 with deterministic answers, and the HTTP transport rig
//! sends through (the SDK's own `reqwest` 0.12, so the workspace keeps one
//! HTTP and TLS stack; rig's bundled transport would add reqwest 0.13).
//!
//! Nothing here is part of the SDK.
#![allow(dead_code)]

use std::net::SocketAddr;

use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use rig_core::http_client::{
    self, HttpClientExt, LazyBody, MultipartForm, Request, Response, StreamingResponse,
};
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

/// rig's HTTP transport on `reqwest` 0.12.
#[derive(Debug, Clone, Default)]
pub struct Http(pub reqwest::Client);

fn to_reqwest<T: Into<Bytes>>(
    client: &reqwest::Client,
    req: Request<T>,
) -> reqwest::RequestBuilder {
    let (parts, body) = req.into_parts();
    let method = reqwest::Method::from_bytes(parts.method.as_str().as_bytes())
        .unwrap_or(reqwest::Method::POST);
    let mut b = client.request(method, parts.uri.to_string());
    for (k, v) in &parts.headers {
        b = b.header(k.as_str(), v.as_bytes());
    }
    b.body(body.into())
}

async fn head(
    resp: reqwest::Response,
) -> http_client::Result<(http_client::StatusCode, reqwest::Response)> {
    let status = http_client::StatusCode::from_u16(resp.status().as_u16())
        .map_err(|e| http_client::Error::Protocol(e.into()))?;
    if !status.is_success() {
        let text = resp.text().await.unwrap_or_default();
        return Err(http_client::Error::non_success_with_details(
            status,
            Default::default(),
            text,
        ));
    }
    Ok((status, resp))
}

impl HttpClientExt for Http {
    fn send<T, U>(
        &self,
        req: Request<T>,
    ) -> impl std::future::Future<Output = http_client::Result<Response<LazyBody<U>>>> + Send + 'static
    where
        T: Into<Bytes> + Send,
        U: From<Bytes> + Send + 'static,
    {
        let request = to_reqwest(&self.0, req);
        async move {
            let resp = request.send().await.map_err(http_client::Error::instance)?;
            let (status, resp) = head(resp).await?;
            let body: LazyBody<U> = Box::pin(async move {
                let bytes = resp.bytes().await.map_err(http_client::Error::instance)?;
                Ok(U::from(bytes))
            });
            Response::builder()
                .status(status)
                .body(body)
                .map_err(http_client::Error::Protocol)
        }
    }

    fn send_multipart<U>(
        &self,
        _req: Request<MultipartForm>,
    ) -> impl std::future::Future<Output = http_client::Result<Response<LazyBody<U>>>> + Send + 'static
    where
        U: From<Bytes> + Send + 'static,
    {
        // The mock has no multipart route.
        std::future::ready(Err(http_client::Error::StreamEnded))
    }

    fn send_streaming<T>(
        &self,
        req: Request<T>,
    ) -> impl std::future::Future<Output = http_client::Result<StreamingResponse>> + Send
    where
        T: Into<Bytes> + Send,
    {
        let request = to_reqwest(&self.0, req);
        async move {
            let resp = request.send().await.map_err(http_client::Error::instance)?;
            let (status, resp) = head(resp).await?;
            let chunks = futures::stream::unfold(Some(resp), |resp| async move {
                let mut resp = resp?;
                match resp.chunk().await {
                    Ok(Some(b)) => Some((Ok(b), Some(resp))),
                    Ok(None) => None,
                    Err(e) => Some((Err(http_client::Error::instance(e)), None)),
                }
            });
            let body: http_client::BoxedStream = Box::pin(chunks);
            Response::builder()
                .status(status)
                .body(body)
                .map_err(http_client::Error::Protocol)
        }
    }
}
