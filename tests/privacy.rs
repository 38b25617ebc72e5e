//! Content is user data: it goes to Raindrop and nowhere else (issue 11).
//!
//! A log layer that prints everything it is given (every level, every span
//! event with its fields) sits next to the raindrop layer while an
//! axum-style interaction runs: the prompt, the answer, tool arguments and
//! results, properties, the model and the user id must reach the capture
//! server, and none of them the log output.

use std::time::Duration;

use axum::extract::State;
use axum::Json;
use raindrop::{Client, ClientOptions, RaindropSpanExt};
use raindrop_test_support::Capture;
use serde::{Deserialize, Serialize};
use tracing::instrument::WithSubscriber;
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::prelude::*;

#[derive(Clone, Debug)]
struct AppState {
    #[allow(dead_code)]
    secret: &'static str,
}

#[derive(Serialize, Deserialize, Debug)]
struct ChatRequest {
    user_id: String,
    prompt: String,
}

#[raindrop::tool]
fn lookup(query: String) -> String {
    tracing::info!("looking something up");
    tracing::Span::current().set_property("hint", "MARKER-TOOLPROP");
    format!("MARKER-TOOLOUT for {query}")
}

/// The bare attribute on an axum handler: the request body is the input.
#[raindrop::interaction("chat", user_id = req.user_id)]
async fn chat(State(_state): State<AppState>, Json(req): Json<ChatRequest>) -> String {
    tracing::info!("answering");
    let interaction = raindrop::resume_interaction();
    interaction.set_model("MARKER-MODEL");
    interaction.set_property("note", "MARKER-PROP");
    let found = lookup(format!("MARKER-TOOLARG {}", req.prompt));
    tracing::warn!(len = found.len(), "answered");
    format!("MARKER-OUTPUT {found}")
}

const MARKERS: [&str; 8] = [
    "MARKER-INPUT",
    "MARKER-OUTPUT",
    "MARKER-TOOLARG",
    "MARKER-TOOLOUT",
    "MARKER-TOOLPROP",
    "MARKER-PROP",
    "MARKER-MODEL",
    "MARKER-USER",
];

#[test]
fn content_reaches_raindrop_and_never_the_log_output() {
    let cap = Capture::start(vec![]);
    let client = Client::new(
        ClientOptions::default()
            .write_key("rk_test_privacy")
            .endpoint(cap.endpoint())
            .upload_interval(Duration::from_millis(50)),
    )
    .unwrap();
    // The service's ordinary logs, kept in memory to search them.
    let logs = raindrop::MemorySink::new();
    let writer = logs.clone();
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .with_span_events(FmtSpan::FULL) // span fields at creation and close
        .with_filter(tracing_subscriber::filter::LevelFilter::TRACE);
    let subscriber = tracing_subscriber::registry()
        .with(fmt)
        .with(raindrop::layer_for(&client));

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let answer = rt.block_on(
        chat(
            State(AppState {
                secret: "STATE-SECRET",
            }),
            Json(ChatRequest {
                user_id: "MARKER-USER".into(),
                prompt: "MARKER-INPUT what is my balance?".into(),
            }),
        )
        .with_subscriber(subscriber),
    );
    assert!(answer.starts_with("MARKER-OUTPUT"));
    assert!(client.flush(Duration::from_secs(20)), "flush timed out");

    // The log layer saw the spans and the log lines inside them...
    let logs = logs.text();
    for expected in [
        "answering",
        "looking something up",
        "answered",
        "chat{raindrop.kind=\"interaction\"}",
        "lookup{raindrop.kind=\"tool\"}",
        "close",
    ] {
        assert!(logs.contains(expected), "no {expected:?} in\n{logs}");
    }
    // ...and none of the content.
    for m in MARKERS {
        assert!(!logs.contains(m), "{m} leaked into the logs:\n{logs}");
    }
    assert!(!logs.contains("STATE-SECRET"), "{logs}");

    // Raindrop got all of it.
    let sent: String = cap
        .requests()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.raw).into_owned())
        .collect::<Vec<_>>()
        .join("\n");
    for m in MARKERS {
        assert!(sent.contains(m), "{m} not delivered:\n{sent}");
    }
    // The input is the request body, not the state or the argument list.
    assert!(!sent.contains("STATE-SECRET"), "{sent}");
    let final_partial = cap
        .delivered("events/track_partial")
        .into_iter()
        .rev()
        .find(|p| p["is_pending"] == false)
        .expect("final partial");
    let input: serde_json::Value = serde_json::from_str(
        final_partial["ai_data"]["input"]
            .as_str()
            .unwrap_or_else(|| panic!("input in {final_partial}")),
    )
    .expect("the input is the JSON body");
    assert_eq!(
        input,
        serde_json::json!({"user_id": "MARKER-USER", "prompt": "MARKER-INPUT what is my balance?"})
    );
    assert_eq!(final_partial["user_id"], "MARKER-USER");
}

/// `capture_content(false)`: the same interaction through the tracing
/// layer, and none of its words (the request body, the answer, the tool's
/// arguments and result) reach the capture server on any route; what the
/// code set explicitly (properties, the model, the user id) still does.
#[test]
fn with_content_capture_off_no_words_reach_raindrop_on_any_route() {
    let cap = Capture::start(vec![]);
    let client = Client::new(
        ClientOptions::default()
            .write_key("rk_test_privacy")
            .endpoint(cap.endpoint())
            .upload_interval(Duration::from_millis(50))
            .capture_content(false),
    )
    .unwrap();
    let subscriber = tracing_subscriber::registry().with(raindrop::layer_for(&client));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let answer = rt.block_on(
        chat(
            State(AppState {
                secret: "STATE-SECRET",
            }),
            Json(ChatRequest {
                user_id: "MARKER-USER".into(),
                prompt: "MARKER-INPUT what is my balance?".into(),
            }),
        )
        .with_subscriber(subscriber),
    );
    assert!(answer.starts_with("MARKER-OUTPUT"));
    assert!(client.flush(Duration::from_secs(20)), "flush timed out");
    let requests = cap.requests();
    let routes: std::collections::HashSet<&str> =
        requests.iter().map(|r| r.path.as_str()).collect();
    assert!(routes.contains("/v1/traces"), "{routes:?}");
    assert!(routes.contains("/v1/events/track_partial"), "{routes:?}");
    let sent: String = requests
        .iter()
        .map(|r| String::from_utf8_lossy(&r.raw).into_owned())
        .collect::<Vec<_>>()
        .join("\n");
    for m in [
        "MARKER-INPUT",
        "MARKER-OUTPUT",
        "MARKER-TOOLARG",
        "MARKER-TOOLOUT",
    ] {
        assert!(
            !sent.contains(m),
            "{m} sent with content capture off:\n{sent}"
        );
    }
    for m in [
        "MARKER-TOOLPROP",
        "MARKER-PROP",
        "MARKER-MODEL",
        "MARKER-USER",
    ] {
        assert!(sent.contains(m), "{m} not delivered:\n{sent}");
    }
}
