//! `version = N` on the attributes, and manual spans and tool calls with the
//! caller's timing inside `tracing` spans: same trace, parented under the
//! current raindrop span, linked to the current interaction (on the wire of
//! a loopback server).

use std::time::Duration;

use raindrop::{Client, ClientOptions, SpanKind, ToolCall};
use raindrop_test_support::Capture;
use serde_json::{json, Value};
use tracing_subscriber::prelude::*;

#[raindrop::tool(version = 3)]
fn search(q: &str) -> String {
    let mut rerank = raindrop::start_span(SpanKind::Task, "rerank");
    rerank.set_input(q);
    rerank.end(None);
    raindrop::track_tool(ToolCall::new("fetch").duration(Duration::from_millis(7)));
    format!("found {q}")
}

#[raindrop::task(version = 2)]
fn plan(q: &str) -> String {
    search(q)
}

#[raindrop::interaction("chat", user_id = user, version = 1)]
fn chat(user: &str, q: &str) -> String {
    plan(q)
}

fn attr<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| &a["value"])
}

#[test]
fn versions_and_manual_spans_inside_tracing_spans() {
    let cap = Capture::start(vec![]);
    let client = Client::new(
        ClientOptions::default()
            .write_key("rk_manual")
            .endpoint(cap.endpoint())
            .upload_interval(Duration::from_millis(20))
            .app_git(false),
    )
    .unwrap();
    let dispatch =
        tracing::Dispatch::new(tracing_subscriber::registry().with(raindrop::layer_for(&client)));
    tracing::dispatcher::with_default(&dispatch, || {
        assert!(raindrop::current_span_context().is_none());
        assert_eq!(chat("user-v", "weather"), "found weather");
    });
    assert!(client.flush(Duration::from_secs(5)));
    let spans = cap.spans();
    let by = |name: &str| {
        spans
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {spans:?}"))
    };
    let (chat, plan, search, rerank, fetch) = (
        by("chat.workflow"),
        by("plan.task"),
        by("search.tool"),
        by("rerank.task"),
        by("fetch.tool"),
    );
    for (s, v) in [(chat, "1"), (plan, "2"), (search, "3")] {
        assert_eq!(
            attr(s, "traceloop.entity.version"),
            Some(&json!({"intValue": v})),
            "{}",
            s["name"]
        );
    }
    assert_eq!(attr(rerank, "traceloop.entity.version"), None);
    for s in [plan, search, rerank, fetch] {
        assert_eq!(s["traceId"], chat["traceId"], "{}", s["name"]);
    }
    assert_eq!(rerank["parentSpanId"], search["spanId"]);
    assert_eq!(fetch["parentSpanId"], search["spanId"]);
    let event_id = attr(chat, "traceloop.association.properties.event_id").unwrap();
    for s in [rerank, fetch] {
        assert_eq!(
            attr(s, "traceloop.association.properties.event_id"),
            Some(event_id)
        );
        assert_eq!(
            attr(s, "traceloop.association.properties.user_id"),
            Some(&json!({"stringValue": "user-v"}))
        );
    }
    assert_eq!(
        attr(rerank, "traceloop.entity.input"),
        Some(&json!({"stringValue": "{\"args\": [\"weather\"]}"}))
    );
    assert_eq!(
        attr(fetch, "traceloop.entity.duration_ms"),
        Some(&json!({"intValue": "7"}))
    );
}
