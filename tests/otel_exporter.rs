//! Raindrop as an OpenTelemetry exporter (issue 25): an `opentelemetry_sdk`
//! tracer provider with the Raindrop exporter and an in-memory exporter side
//! by side. The same spans reach both, the interaction is filled from the
//! model calls, unlinked spans stay out of Raindrop, and a provider shutdown
//! flushes Raindrop within its deadline. Spans also arrive through
//! `tracing` → `tracing-opentelemetry` → the SDK.

use std::time::{Duration, Instant};

use opentelemetry::trace::{Span as _, SpanKind, Status, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use raindrop::otel::{link_attributes, link_context, LinkProcessor, RaindropExporter};
use raindrop::testing::Capture;
use raindrop::{Begin, Client, ClientOptions, Finish};
use raindrop_test_support::spans::b64;
use raindrop_test_support::{Answer, Capture as Server};
use tracing_subscriber::prelude::*;

/// The (trace id, span id) of an SDK span as the `traces` route carries them.
fn wire_ids(s: &SpanData) -> (String, String) {
    (
        b64(&s.span_context.trace_id().to_bytes()),
        b64(&s.span_context.span_id().to_bytes()),
    )
}

fn messages(role: &str, text: &str) -> String {
    serde_json::json!([{"role": role, "parts": [{"type": "text", "content": text}]}]).to_string()
}

/// One model call of the GenAI conventions, linked to `chat`.
fn model_call(
    tracer: &opentelemetry_sdk::trace::SdkTracer,
    chat: &raindrop::Interaction,
    question: &str,
    answer: &str,
    tokens: (i64, i64),
) {
    let mut span = tracer
        .span_builder("chat gpt-4o")
        .with_kind(SpanKind::Client)
        .start(tracer);
    span.set_attributes(link_attributes(chat));
    span.set_attributes([
        KeyValue::new("gen_ai.operation.name", "chat"),
        KeyValue::new("gen_ai.provider.name", "OpenAI"),
        KeyValue::new("gen_ai.request.model", "gpt-4o"),
        KeyValue::new("gen_ai.input.messages", messages("user", question)),
        KeyValue::new("gen_ai.output.messages", messages("assistant", answer)),
        KeyValue::new("gen_ai.usage.input_tokens", tokens.0),
        KeyValue::new("gen_ai.usage.output_tokens", tokens.1),
    ]);
    span.end();
}

/// A provider exporting to Raindrop (through `client`) and to memory side
/// by side, each span handed to both as it ends.
fn both_exporters(client: &Client) -> (RaindropExporter, InMemorySpanExporter, SdkTracerProvider) {
    let raindrop = RaindropExporter::new(client);
    let memory = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(raindrop.clone())
        .with_simple_exporter(memory.clone())
        .build();
    (raindrop, memory, provider)
}

#[test]
fn the_same_spans_reach_both_exporters_and_fill_the_interaction() {
    let capture = Capture::new();
    let client = capture.client();
    let (raindrop, memory, provider) = both_exporters(client);
    let tracer = provider.tracer("agent");

    let chat = client.begin(Begin::new("u-1", "chat")).unwrap();
    let event_id = chat.event_id().unwrap().to_owned();
    let mut step = tracer.start("plan");
    step.set_attributes(link_attributes(&chat));
    step.set_status(Status::error("no plan"));
    step.end();
    model_call(&tracer, &chat, "what is 2+2?", "4", (12, 5));
    model_call(&tracer, &chat, "and times 3?", "12", (20, 3));
    tracer.start("GET /health").end(); // no link: not for Raindrop
    chat.finish_with(Finish::new());
    // Simple processors: every span was exported as it ended. (The
    // in-memory exporter forgets its spans on shutdown.)
    let all = memory.get_finished_spans().unwrap();
    provider.shutdown().unwrap();
    assert_eq!(all.len(), 4, "the in-memory exporter got every span");
    let recorded = capture.recorded();
    let linked: Vec<&SpanData> = all.iter().filter(|s| s.name != "GET /health").collect();
    assert_eq!(recorded.spans.len(), linked.len(), "{:?}", recorded.spans);
    for s in &linked {
        let (trace_id, span_id) = wire_ids(s);
        let r = recorded
            .spans
            .iter()
            .find(|r| r.span_id == span_id)
            .unwrap_or_else(|| panic!("span {} missing from Raindrop", s.name));
        assert_eq!(r.trace_id, trace_id);
        assert_eq!(r.name, s.name);
        assert_eq!(r.event_id.as_deref(), Some(event_id.as_str()));
    }
    assert!(!recorded.spans.iter().any(|r| r.name == "GET /health"));
    let plan = recorded.span("plan").unwrap();
    assert_eq!(plan.attr_str("traceloop.workflow.name"), Some("chat"));
    assert_eq!(
        plan.attr_str("traceloop.association.properties.user_id"),
        Some("u-1")
    );

    // The model calls carry what Raindrop reads, as the layer writes it.
    let call = recorded.spans_named("chat gpt-4o")[0];
    assert_eq!(call.attr_str("traceloop.span.kind"), Some("llm"));
    assert_eq!(call.attr_str("ai.model.id"), Some("gpt-4o"));
    assert_eq!(call.attr_str("gen_ai.response.model"), Some("gpt-4o"));
    assert_eq!(call.attr_str("ai.model.provider"), Some("openai"));
    assert!(call.attr_str("ai.response.text").is_some());
    assert!(call
        .attr_str("ai.prompt.messages")
        .is_some_and(|m| m.contains("\"role\":\"user\"")));

    // The interaction, filled from its calls: nothing was set by hand.
    let event = recorded.event_by_id(&event_id).unwrap();
    assert!(event.finished);
    assert_eq!(event.model.as_deref(), Some("gpt-4o"));
    assert_eq!(event.input.as_deref(), Some("what is 2+2?"));
    assert_eq!(event.output.as_deref(), Some("12"));
    assert_eq!(event.properties["input_tokens"], 32);
    assert_eq!(event.properties["output_tokens"], 8);
    assert_eq!(event.properties["total_tokens"], 40);
    assert_eq!(event.properties["llm_calls"], 2);

    let stats = raindrop.stats();
    assert_eq!(
        (stats.sent, stats.unlinked, stats.unfilled_calls),
        (3, 1, 0)
    );
}

#[test]
fn what_the_user_set_wins_and_unfilled_calls_are_counted() {
    let capture = Capture::new();
    let client = capture.client();
    let raindrop = RaindropExporter::new(client);
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(raindrop.clone())
        .build();
    let tracer = provider.tracer("agent");
    let chat = client
        .begin(Begin::new("u-2", "chat").input("typed by the user"))
        .unwrap();
    model_call(&tracer, &chat, "rewritten prompt", "the answer", (3, 4));
    chat.finish("the user's own output");
    // Exported after the interaction finished: sent, too late to fill it.
    model_call(&tracer, &chat, "late", "late answer", (1, 1));
    provider.shutdown().unwrap();

    let recorded = capture.recorded();
    let event = recorded.event_by_id(chat.event_id().unwrap()).unwrap();
    assert_eq!(event.input.as_deref(), Some("typed by the user"));
    assert_eq!(event.output.as_deref(), Some("the user's own output"));
    assert_eq!(event.model.as_deref(), Some("gpt-4o"));
    assert_eq!(event.properties["input_tokens"], 3);
    assert_eq!(recorded.spans.len(), 2);
    assert_eq!(raindrop.stats().unfilled_calls, 1);
}

/// A client sending to a loopback capture server.
fn client_for(server: &Server) -> Client {
    Client::new(
        ClientOptions::default()
            .write_key("rk_test_otel_exporter")
            .endpoint(server.endpoint()),
    )
    .unwrap()
}

#[test]
fn provider_shutdown_delivers_raindrop_spans_before_it_returns() {
    // A backend at a distance: delivery takes a while after the export.
    let server = Server::with_latency(vec![], Duration::from_millis(300), Duration::ZERO);
    let client = client_for(&server);
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(RaindropExporter::new(&client))
        .build();
    let tracer = provider.tracer("agent");
    let chat = client.begin(Begin::new("u-3", "chat")).unwrap();
    for n in 0..20 {
        let mut s = tracer.start(format!("step-{n}"));
        s.set_attributes(link_attributes(&chat));
        s.end();
    }
    // The batch processor still holds the spans (its delay is 5 s).
    assert!(server.spans().is_empty());
    let started = Instant::now();
    provider
        .shutdown_with_timeout(Duration::from_secs(5))
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    // Delivered, not merely queued, when shutdown returns.
    assert_eq!(server.spans().len(), 20);
    client.shutdown(Duration::from_secs(5));
}

#[test]
fn provider_shutdown_holds_its_deadline_when_raindrop_hangs() {
    let server = Server::start(vec![("traces", vec![Answer::Hang])]);
    let client = client_for(&server);
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(RaindropExporter::new(&client))
        .build();
    let tracer = provider.tracer("agent");
    let chat = client.begin(Begin::new("u-4", "chat")).unwrap();
    let mut s = tracer.start("step");
    s.set_attributes(link_attributes(&chat));
    s.end();
    let started = Instant::now();
    let result = provider.shutdown_with_timeout(Duration::from_millis(800));
    let took = started.elapsed();
    assert!(result.is_err(), "a hanging backend cannot be flushed");
    assert!(
        took < Duration::from_millis(800 + 700),
        "shutdown took {took:?} against an 800 ms deadline"
    );
    client.shutdown(Duration::from_millis(100));
}

#[test]
fn tracing_spans_through_tracing_opentelemetry_arrive() {
    let capture = Capture::new();
    let client = capture.client();
    let (raindrop, memory, provider) = both_exporters(client);
    // The pipeline a service already runs: no raindrop layer in it.
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("svc")));
    let chat = client.begin(Begin::new("u-5", "chat")).unwrap();
    let event_id = chat.event_id().unwrap().to_owned();
    tracing::subscriber::with_default(subscriber, || {
        let handler = tracing::info_span!("handle_request");
        let _in = handler.enter();
        let call = tracing::info_span!(
            "chat",
            raindrop.event_id = %event_id,
            gen_ai.operation.name = "chat",
            gen_ai.request.model = "claude-sonnet",
            gen_ai.input.messages = %messages("user", "name a colour"),
            gen_ai.output.messages = tracing::field::Empty,
            gen_ai.usage.input_tokens = 9_i64,
            gen_ai.usage.output_tokens = tracing::field::Empty,
        );
        let _call = call.enter();
        call.record(
            "gen_ai.output.messages",
            messages("assistant", "Blue.").as_str(),
        );
        call.record("gen_ai.usage.output_tokens", 2_i64);
    });
    chat.finish_with(Finish::new());
    let all = memory.get_finished_spans().unwrap();
    provider.shutdown().unwrap();
    assert_eq!(all.len(), 2, "both tracing spans reached the SDK");
    let sdk_call = all.iter().find(|s| s.name == "chat").unwrap();
    let recorded = capture.recorded();
    assert_eq!(
        recorded.spans.len(),
        1,
        "only the linked span goes to Raindrop"
    );
    let span = &recorded.spans[0];
    assert_eq!(
        (span.trace_id.clone(), span.span_id.clone()),
        wire_ids(sdk_call)
    );
    assert_eq!(span.event_id.as_deref(), Some(event_id.as_str()));
    assert_eq!(span.attr_str("ai.model.id"), Some("claude-sonnet"));
    assert_eq!(span.attr_str("ai.response.text"), Some("Blue."));
    let event = recorded.event_by_id(&event_id).unwrap();
    assert_eq!(event.model.as_deref(), Some("claude-sonnet"));
    assert_eq!(event.input.as_deref(), Some("name a colour"));
    assert_eq!(event.output.as_deref(), Some("Blue."));
    assert_eq!(event.properties["total_tokens"], 11);
    assert_eq!(raindrop.stats().unlinked, 1);
}

#[test]
fn spans_started_in_a_linked_context_are_linked_by_the_processor() {
    let capture = Capture::new();
    let client = capture.client();
    let raindrop = RaindropExporter::new(client);
    let memory = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(raindrop.clone())
        .with_span_processor(LinkProcessor)
        .with_simple_exporter(memory.clone())
        .build();
    let tracer = provider.tracer("agent");
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("svc")));
    let chat = client.begin(Begin::new("u-6", "chat")).unwrap();
    let event_id = chat.event_id().unwrap().to_owned();
    {
        let _linked = link_context(&Context::current(), &chat).attach();
        // OpenTelemetry directly: a root and a child started from its context.
        tracer.in_span("agent", |cx| {
            let mut child = tracer.start_with_context("lookup", &cx);
            child.set_attribute(KeyValue::new("gen_ai.operation.name", "execute_tool"));
            child.set_attribute(KeyValue::new("gen_ai.tool.name", "lookup"));
            child.end();
        });
        // `tracing` spans created in the linked context, and their children.
        tracing::subscriber::with_default(subscriber, || {
            let outer = tracing::info_span!("handle_request");
            let _in = outer.enter();
            tracing::info_span!("inner_step").in_scope(|| {});
        });
    }
    tracer.start("after").end(); // the context is detached: not linked
    let all = memory.get_finished_spans().unwrap();
    provider.shutdown().unwrap();

    assert_eq!(all.len(), 5);
    let recorded = capture.recorded();
    let mut names: Vec<&str> = recorded.spans.iter().map(|s| s.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["agent", "handle_request", "inner_step", "lookup"]);
    assert!(recorded
        .spans
        .iter()
        .all(|s| s.event_id.as_deref() == Some(event_id.as_str())));
    // Linked spans keep the link in every exporter (the id only).
    let sdk_lookup = all.iter().find(|s| s.name == "lookup").unwrap();
    assert!(sdk_lookup
        .attributes
        .iter()
        .any(|kv| kv.key.as_str() == "raindrop.event_id"));
    let lookup = recorded.span("lookup").unwrap();
    assert_eq!(lookup.kind.as_deref(), Some("tool"));
    assert_eq!(lookup.attr_str("ai.operationId"), Some("ai.toolCall"));
    assert_eq!(raindrop.stats().unlinked, 1);
}

#[test]
fn ending_spans_never_waits_on_raindrop() {
    // Every request hangs: an export that waited on the network would hold
    // each span's end for the request timeout.
    let server = Server::start(vec![("traces", vec![Answer::Hang; 8])]);
    let client = client_for(&server);
    let raindrop = RaindropExporter::new(&client);
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(raindrop.clone())
        .build();
    let tracer = provider.tracer("agent");
    let chat = client.begin(Begin::new("u-7", "chat")).unwrap();
    let started = Instant::now();
    for _ in 0..500 {
        model_call(&tracer, &chat, "q", "a", (1, 1));
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "500 span ends took {took:?}");
    assert_eq!(raindrop.stats().sent, 500);
    let _ = provider.shutdown_with_timeout(Duration::from_millis(100));
    client.shutdown(Duration::from_millis(100));
}
