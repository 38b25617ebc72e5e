//! End-to-end tests of the examples: each example's `run` is called in
//! process against the local sink, and the recorded JSON lines are checked.

// Each example includes `examples/common` itself, and so does this file.
#![allow(dead_code, clippy::duplicate_mod)]

#[path = "../examples/common/mod.rs"]
mod common;
#[path = "../examples/quickstart.rs"]
mod quickstart;
#[path = "../examples/sync.rs"]
mod sync_example;

use std::sync::Mutex;

use common::Recorded;
use raindrop::{ClientOptions, LocalSink};

/// `raindrop::init` installs a process-wide client: run the examples one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn sink_options(name: &str) -> (ClientOptions, std::path::PathBuf) {
    let path = common::temp_sink(name);
    // Not `from_env`: the test must not depend on the caller's environment.
    (
        ClientOptions::default().local_sink(LocalSink::File(path.clone())),
        path,
    )
}

#[test]
fn quickstart_records_identify_event_signals_interaction() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (options, path) = sink_options("quickstart");
    let out = quickstart::run(options).expect("quickstart runs");
    assert!(out.report.completed, "{:?}", out.report);
    assert_eq!(out.report.undelivered, 0);
    assert_eq!(
        out.report.stats.dropped_total(),
        0,
        "{:?}",
        out.report.stats
    );

    let rec = Recorded::read(&path).expect("sink file written");
    assert_eq!(rec.users.len(), 1);
    assert_eq!(rec.users[0]["user_id"], "user-42");
    assert_eq!(rec.users[0]["traits"]["plan"], "pro");

    let chat = rec.event("chat_message").expect("chat_message tracked");
    assert!(!chat.interaction);
    assert_eq!(chat.event_id, out.chat_event_id);
    assert_eq!(chat.user_id.as_deref(), Some("user-42"));
    assert_eq!(
        chat.input.as_deref(),
        Some("What is the capital of France?")
    );
    assert_eq!(
        chat.output.as_deref(),
        Some("The capital of France is Paris.")
    );
    assert_eq!(chat.convo_id.as_deref(), Some("convo-1"));
    assert_eq!(chat.properties["latency_ms"], 412);

    let signals = rec.signals_of(&out.chat_event_id);
    assert_eq!(signals.len(), 2);
    assert!(signals
        .iter()
        .any(|s| s["signal_name"] == "thumbs_up" && s["sentiment"] == "POSITIVE"));
    assert!(signals.iter().any(|s| s["signal_type"] == "feedback"
        && s["properties"]["comment"] == "Short and correct, thanks!"));

    let run = rec.event("agent_run").expect("agent_run recorded");
    assert!(run.interaction && run.finished);
    assert_eq!(run.event_id, out.interaction_event_id);
    assert_eq!(run.input.as_deref(), Some("Summarise my last three orders"));
    assert_eq!(
        run.output.as_deref(),
        Some("You ordered a kettle, two mugs and a tea sampler.")
    );
    assert_eq!(run.properties["stage"], "fetching_orders");
    assert_eq!(run.properties["orders_found"], 3);
    assert_eq!(run.attachments, 1);

    assert!(rec.event("subscription_renewed").is_some());

    let tree = rec.render();
    assert!(tree.contains("interaction \"agent_run\""), "{tree}");
    assert!(
        tree.contains("signal user_feedback (feedback) POSITIVE"),
        "{tree}"
    );
    let _ = std::fs::remove_file(path);
}

#[test]
fn sync_example_records_from_plain_threads() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (options, path) = sink_options("sync");
    let out = sync_example::run(options).expect("sync example runs");
    assert!(out.report.completed, "{:?}", out.report);
    assert_eq!(
        out.report.stats.dropped_total(),
        0,
        "{:?}",
        out.report.stats
    );
    assert_eq!(out.answered.len(), 5);

    let rec = Recorded::read(&path).expect("sink file written");
    let answers: Vec<_> = rec
        .events
        .iter()
        .filter(|e| e.event.as_deref() == Some("faq_answer"))
        .collect();
    assert_eq!(answers.len(), 5);
    for id in &out.answered {
        assert!(answers.iter().any(|e| &e.event_id == id), "missing {id}");
    }
    let batch = rec.event("nightly_batch").expect("batch interaction");
    assert!(batch.interaction && batch.finished);
    assert_eq!(batch.output.as_deref(), Some("5 of 6 answered"));
    assert_eq!(batch.properties["last_error"], "empty question");
    assert_eq!(batch.properties["failed"], 1);
    let _ = std::fs::remove_file(path);
}

#[test]
fn printer_merges_partials_and_nests_spans() {
    // A hand-written sink file in the documented line format.
    let lines = [
        r#"{"path":"events/track_partial","body":{"event_id":"e1","user_id":"u","event":"chat","ai_data":{"input":"hi"},"properties":{"a":{"x":1}},"is_pending":true}}"#,
        r#"{"path":"events/track_partial","body":{"event_id":"e1","ai_data":{"output":"hello"},"properties":{"a":{"y":2}},"is_pending":false}}"#,
        r#"{"path":"traces","body":{"resourceSpans":[{"scopeSpans":[{"spans":[
            {"traceId":"AAAAAAAAAAAAAAAAAAAAAA==","spanId":"AQAAAAAAAAA=","name":"chat","startTimeUnixNano":"1000000","endTimeUnixNano":"5000000","status":{"code":1},
             "attributes":[{"key":"traceloop.span.kind","value":{"stringValue":"workflow"}},{"key":"traceloop.association.properties.event_id","value":{"stringValue":"e1"}}]},
            {"traceId":"AAAAAAAAAAAAAAAAAAAAAA==","spanId":"AgAAAAAAAAA=","parentSpanId":"AQAAAAAAAAA=","name":"search","startTimeUnixNano":"2000000","endTimeUnixNano":"3000000","status":{"code":2,"message":"boom"},
             "attributes":[{"key":"traceloop.span.kind","value":{"stringValue":"tool"}},{"key":"traceloop.entity.input","value":{"stringValue":"{\"q\":1}"}},{"key":"traceloop.association.properties.event_id","value":{"stringValue":"e1"}}]}
        ]}]}]}}"#,
    ];
    // The sink writes one request per line; the span batch above is split for
    // readability, so join it back.
    let text = lines.map(|l| l.replace('\n', "")).join("\n");
    let rec = Recorded::parse(&text);
    assert_eq!(rec.requests, 3);
    let e = rec.event("chat").unwrap();
    assert!(e.finished);
    assert_eq!(e.partials, 2);
    assert_eq!(e.properties["a"], serde_json::json!({"x": 1, "y": 2}));
    assert_eq!(rec.spans_of("e1").len(), 2);
    assert_eq!(rec.span("search").unwrap().error.as_deref(), Some("boom"));
    let tree = rec.render();
    assert!(tree.contains("└─ workflow chat  4.00 ms"), "{tree}");
    assert!(
        tree.contains("   └─ tool search  1.00 ms  ERROR: boom"),
        "{tree}"
    );
    assert!(tree.contains("in:  {\"q\":1}"), "{tree}");
}
