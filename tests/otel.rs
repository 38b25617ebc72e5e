//! Raindrop next to `tracing-opentelemetry` 0.34 (issue 12): with both layers
//! in one subscriber, every span raindrop exports has the trace id and span
//! id of the OpenTelemetry span made for the same `tracing` span, whichever
//! layer is added first.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use raindrop::{propagate, Client, ClientOptions};
use raindrop_test_support::spans::b64;
use raindrop_test_support::Capture;
use tracing::field::Empty;
use tracing_subscriber::prelude::*;

/// The in-memory exporter: every span the OpenTelemetry SDK ended.
#[derive(Debug, Clone, Default)]
struct Collect(Arc<Mutex<Vec<SpanData>>>);

impl SpanExporter for Collect {
    async fn export(&self, batch: Vec<SpanData>) -> opentelemetry_sdk::error::OTelSdkResult {
        self.0.lock().unwrap().extend(batch);
        Ok(())
    }
}

#[raindrop::tool]
fn lookup(q: String) -> String {
    format!("found {q}")
}

/// Spans of every shape: interaction, an ordinary span in between, a plain
/// tool span, a macro tool, a task; and a context injected from inside.
fn scenario() -> http::HeaderMap {
    let chat = tracing::info_span!(
        "chat",
        raindrop.kind = "interaction",
        raindrop.user_id = "u-1"
    );
    let _chat = chat.enter();
    let plain = tracing::info_span!("plain_step");
    let _plain = plain.enter();
    let tool = tracing::info_span!("search", raindrop.kind = "tool", raindrop.output = Empty);
    let mut headers = http::HeaderMap::new();
    tool.in_scope(|| {
        assert!(propagate::inject(&mut headers));
        let task = tracing::info_span!("rank", raindrop.kind = "task");
        task.in_scope(|| lookup("x".into()));
    });
    tool.record("raindrop.output", "ok");
    drop(_plain);
    drop(_chat);
    // The called service's side, in the same subscriber: a request span
    // continuing the injected context, and a tool inside it.
    let remote = propagate::extract(&headers).unwrap();
    remote.span().in_scope(|| {
        let _ = tracing::info_span!("serve", raindrop.kind = "tool").entered();
    });
    headers
}

fn check(otel_first: bool) {
    let cap = Capture::start(vec![]);
    let client = Client::new(
        ClientOptions::default()
            .write_key("rk_test_otel")
            .endpoint(cap.endpoint())
            .upload_interval(Duration::from_millis(50)),
    )
    .unwrap();
    let exported = Collect::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exported.clone())
        .build();
    let headers = if otel_first {
        let s = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
            .with(raindrop::layer_for(&client));
        tracing::subscriber::with_default(s, scenario)
    } else {
        let s = tracing_subscriber::registry()
            .with(raindrop::layer_for(&client))
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(s, scenario)
    };
    assert!(client.flush(Duration::from_secs(20)));
    let _ = provider.force_flush();

    let ours = cap.spans();
    assert_eq!(ours.len(), 5, "{ours:#?}");
    let theirs = exported.0.lock().unwrap().clone();
    // The OpenTelemetry side also has the ordinary span and the request span.
    assert_eq!(theirs.len(), 7, "{theirs:#?}");
    let by_name = |name: &str| {
        theirs
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("OTel span {name}"))
    };
    for s in &ours {
        let name = s["name"].as_str().unwrap();
        let otel_name = name.rsplit_once('.').unwrap().0;
        let o = by_name(otel_name);
        assert_eq!(
            s["traceId"],
            b64(&o.span_context.trace_id().to_bytes()),
            "order otel_first={otel_first}, span {name}"
        );
        assert_eq!(
            s["spanId"],
            b64(&o.span_context.span_id().to_bytes()),
            "order otel_first={otel_first}, span {name}"
        );
    }
    // Raindrop's parent skips the ordinary span; OpenTelemetry's does not.
    let chat = by_name("chat");
    let search = ours.iter().find(|s| s["name"] == "search.tool").unwrap();
    assert_eq!(
        search["parentSpanId"],
        b64(&chat.span_context.span_id().to_bytes())
    );
    assert_eq!(
        by_name("search").parent_span_id,
        by_name("plain_step").span_context.span_id()
    );
    // The injected context names the OpenTelemetry ids too.
    let remote = propagate::extract(&headers).unwrap();
    let search_otel = by_name("search");
    assert_eq!(
        remote.parent.trace_id,
        search_otel.span_context.trace_id().to_bytes()
    );
    assert_eq!(
        remote.parent.parent_span_id,
        search_otel.span_context.span_id().to_bytes()
    );
    // The request span continued the caller's trace on both sides; in
    // Raindrop the served tool hangs under the caller's span.
    let serve = ours.iter().find(|s| s["name"] == "serve.tool").unwrap();
    assert_eq!(serve["traceId"], b64(&remote.parent.trace_id));
    assert_eq!(serve["parentSpanId"], b64(&remote.parent.parent_span_id));
    assert_eq!(
        by_name("raindrop.remote").parent_span_id,
        search_otel.span_context.span_id()
    );
}

#[test]
fn ids_match_with_the_otel_layer_added_first() {
    check(true);
}

#[test]
fn ids_match_with_the_otel_layer_added_last() {
    check(false);
}
