//! Tool calls with the caller's timing and manual spans, on the wire of a
//! loopback server: times, parents, the drop rule and the switches.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use raindrop_core::*;
use raindrop_test_support::Capture;
use serde_json::{json, Value};

fn client_with(cap: &Capture, f: impl FnOnce(ClientOptions) -> ClientOptions) -> Client {
    Client::new(f(ClientOptions::default()
        .write_key("rk_spans")
        .endpoint(cap.endpoint())
        .upload_interval(Duration::from_millis(20))
        .app_git(false)))
    .unwrap()
}

fn nanos(span: &Value, key: &str) -> u128 {
    span[key].as_str().unwrap().parse().unwrap()
}

fn attr<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| &a["value"])
}

fn span<'a>(spans: &'a [Value], name: &str) -> &'a Value {
    spans
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no span {name} in {spans:?}"))
}

fn unix_nanos(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).unwrap().as_nanos()
}

#[test]
fn explicit_start_and_end_are_honoured() {
    let cap = Capture::start(vec![]);
    let c = client_with(&cap, |o| o);
    let a = Association::new().event_id("evt-times");
    let start = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
    c.track_tool(
        a.clone(),
        ToolCall::new("given")
            .start_time(start)
            .duration(Duration::from_millis(250)),
    )
    .unwrap();
    // Numeric starts: below 1e11 seconds, otherwise milliseconds.
    c.track_tool(
        a.clone(),
        ToolCall::new("seconds")
            .start_unix(1_700_000_000.5)
            .duration_ms(10.0),
    )
    .unwrap();
    c.track_tool(
        a.clone(),
        ToolCall::new("millis")
            .start_unix(1_700_000_000_500.0)
            .duration_ms(10.9),
    )
    .unwrap();
    let before = SystemTime::now();
    c.track_tool(
        a.clone(),
        ToolCall::new("ended_now").duration(Duration::from_secs(3)),
    )
    .unwrap();
    c.track_tool(a, ToolCall::new("started_only").start_time(start))
        .unwrap();
    let after = SystemTime::now();
    assert!(c.flush(Duration::from_secs(5)));
    let spans = cap.spans();

    let s = span(&spans, "given.tool");
    assert_eq!(nanos(s, "startTimeUnixNano"), 1_700_000_000_123_000_000);
    assert_eq!(nanos(s, "endTimeUnixNano"), 1_700_000_000_373_000_000);
    assert_eq!(
        attr(s, "traceloop.entity.duration_ms"),
        Some(&json!({"intValue": "250"}))
    );

    let s = span(&spans, "seconds.tool");
    assert_eq!(nanos(s, "startTimeUnixNano"), 1_700_000_000_500_000_000);
    assert_eq!(nanos(s, "endTimeUnixNano"), 1_700_000_000_510_000_000);
    let m = span(&spans, "millis.tool");
    assert_eq!(nanos(m, "startTimeUnixNano"), nanos(s, "startTimeUnixNano"));
    // 10.9 ms: the attribute is truncated to whole milliseconds, the span keeps the time.
    assert_eq!(
        attr(m, "traceloop.entity.duration_ms"),
        Some(&json!({"intValue": "10"}))
    );
    assert_eq!(
        nanos(m, "endTimeUnixNano") - nanos(m, "startTimeUnixNano"),
        10_900_000
    );

    // A duration without a start: it ended now and began that long before.
    let s = span(&spans, "ended_now.tool");
    let end = nanos(s, "endTimeUnixNano");
    assert!(end >= unix_nanos(before) && end <= unix_nanos(after));
    assert_eq!(end - nanos(s, "startTimeUnixNano"), 3_000_000_000);

    // A start without a duration: it ended now, and sends no duration.
    let s = span(&spans, "started_only.tool");
    assert_eq!(nanos(s, "startTimeUnixNano"), 1_700_000_000_123_000_000);
    assert!(nanos(s, "endTimeUnixNano") >= unix_nanos(before));
    assert_eq!(attr(s, "traceloop.entity.duration_ms"), None);
}

#[test]
fn manual_spans_nest_and_a_dropped_span_is_sent_as_cancelled() {
    let cap = Capture::start(vec![]);
    let c = client_with(&cap, |o| o);
    let i = c
        .begin(Begin::new("user-m", "manual").event_id("evt-m").input("go"))
        .unwrap();
    let mut parent = i.start_span(SpanKind::Task, "plan");
    parent.set_version(2);
    parent.set_properties(json!({"step": 1, "note": null, "user_id": "spoofed"}));
    let child = parent.start_child(SpanKind::Tool, "search");
    let ctx = child.context().unwrap();
    c.track_tool(
        &i,
        ToolCall::new("lookup").parent(ctx).output(json!([1, 2])),
    )
    .unwrap();
    drop(child); // never ended
                 // Ids set after the span began still land: they are read at its end.
    i.set_convo_id("convo-late");
    parent.end(None);
    i.finish("done");
    assert!(c.flush(Duration::from_secs(5)));
    let spans = cap.spans();
    assert_eq!(spans.len(), 3, "{spans:?}");
    let (plan, search, lookup) = (
        span(&spans, "plan.task"),
        span(&spans, "search.tool"),
        span(&spans, "lookup.tool"),
    );
    assert_eq!(plan["traceId"], search["traceId"]);
    assert_eq!(search["traceId"], lookup["traceId"]);
    assert!(plan.get("parentSpanId").is_none());
    assert_eq!(search["parentSpanId"], plan["spanId"]);
    assert_eq!(lookup["parentSpanId"], search["spanId"]);

    assert_eq!(search["status"], json!({"code": 2, "message": "cancelled"}));
    assert_eq!(plan["status"], json!({"code": 1}));
    assert_eq!(
        attr(plan, "traceloop.entity.version"),
        Some(&json!({"intValue": "2"}))
    );
    assert_eq!(
        attr(plan, "traceloop.association.properties.step"),
        Some(&json!({"intValue": "1"}))
    );
    assert_eq!(attr(plan, "traceloop.association.properties.note"), None);
    assert_eq!(
        attr(plan, "traceloop.association.properties.user_id"),
        Some(&json!({"stringValue": "user-m"}))
    );
    assert_eq!(
        attr(plan, "traceloop.association.properties.convo_id"),
        Some(&json!({"stringValue": "convo-late"}))
    );
    assert_eq!(
        attr(search, "ai.operationId"),
        Some(&json!({"stringValue": "ai.toolCall"}))
    );
    assert_eq!(
        attr(lookup, "traceloop.entity.output"),
        Some(&json!({"stringValue": "[1, 2]"}))
    );
    assert_eq!(
        attr(lookup, "ai.telemetry.metadata.raindrop.eventId"),
        Some(&json!({"stringValue": "evt-m"}))
    );
}

#[test]
fn content_off_strips_tool_input_and_output() {
    let cap = Capture::start(vec![]);
    let c = client_with(&cap, |o| o.capture_content(false));
    let i = c
        .begin(
            Begin::new("u", "e")
                .event_id("evt-c")
                .input("secret question"),
        )
        .unwrap();
    i.track_tool(
        ToolCall::new("search")
            .input("secret query")
            .output("secret result")
            .property("provider", "bing"),
    );
    let mut m = i.start_span(SpanKind::Task, "plan");
    m.set_input("secret plan");
    m.set_output("secret answer");
    m.end(None);
    assert!(c.flush(Duration::from_secs(5)));
    let spans = cap.spans();
    assert_eq!(spans.len(), 2);
    let wire = serde_json::to_string(&spans).unwrap();
    assert!(!wire.contains("secret"), "{wire}");
    assert!(attr(&spans[0], "traceloop.association.properties.provider").is_some());
}

#[test]
fn tracing_off_makes_tool_calls_and_manual_spans_no_ops() {
    let cap = Capture::start(vec![]);
    let c = client_with(&cap, |o| o.tracing_enabled(false));
    let i = c
        .begin(Begin::new("u", "e").event_id("evt-off").input("q"))
        .unwrap();
    i.track_tool(ToolCall::new("search").duration_ms(5.0));
    c.track_tool(&i, ToolCall::new("search")).unwrap();
    i.start_span(SpanKind::Tool, "manual").end(None);
    drop(c.start_span(SpanKind::Task, "dropped", &i));
    i.finish("a");
    assert!(c.flush(Duration::from_secs(5)));
    assert!(cap.spans().is_empty());
    let s = c.stats();
    assert_eq!(
        s.queued, 2,
        "only the interaction's begin and finish: {s:?}"
    );
    assert_eq!(s.dropped_total(), 0, "{s:?}");
}

#[test]
fn invalid_tool_calls_are_refused_and_counted() {
    let cap = Capture::start(vec![]);
    let c = client_with(&cap, |o| o);
    let e = c
        .track_tool(
            Association::new(),
            ToolCall::new("x").properties("not an object"),
        )
        .unwrap_err();
    assert!(e.to_string().contains("properties"), "{e}");
    assert!(c
        .track_tool(Association::new(), ToolCall::new(" "))
        .is_err());
    assert_eq!(c.stats().dropped(DropReason::Invalid), 2);
    // A no-op interaction records nothing and refuses nothing.
    Interaction::noop().track_tool(ToolCall::new("x"));
    Interaction::noop()
        .start_span(SpanKind::Tool, "x")
        .end(None);
    assert!(c.flush(Duration::from_secs(5)));
    assert!(cap.spans().is_empty());
}

/// A detached sub-agent's manual spans and tool calls carry the link to the
/// launching turn, like its tracing spans.
#[test]
fn a_subagents_manual_spans_and_tool_calls_carry_the_link() {
    let cap = Capture::start(vec![]);
    let c = client_with(&cap, |o| o);
    let launcher = c
        .begin(Begin::new("u", "chat").event_id("parent-1").input("q"))
        .unwrap();
    let handoff = launcher.subagent("researcher").expect("a hand-off");
    let child = c.resume_subagent(&handoff).expect("signed with our key");
    child.set_input("research this");
    child.track_tool(ToolCall::new("search").input("q").output("r"));
    child.start_span(SpanKind::Task, "plan").end(None);
    child.finish("done");
    launcher.finish("a");
    assert!(c.flush(Duration::from_secs(5)));
    let spans = cap.spans();
    for name in ["search.tool", "plan.task"] {
        let s = span(&spans, name);
        assert_eq!(
            attr(s, "raindrop.handoff.parentEventId"),
            Some(&json!({"stringValue": "parent-1"})),
            "{name}: {s}"
        );
        assert_eq!(
            attr(s, "raindrop.handoff.name"),
            Some(&json!({"stringValue": "researcher"})),
            "{name}"
        );
        assert_eq!(
            attr(s, "raindrop.agent.role"),
            Some(&json!({"stringValue": "subagent"})),
            "{name}"
        );
        assert!(attr(s, "raindrop.handoff.parentSpanId").is_some(), "{name}");
    }
}

/// `Begin::tools` / `set_tools`: the interaction's model spans carry the
/// tool catalog, normalised, as `ai.prompt.tools`.
#[test]
fn model_spans_carry_the_interactions_tool_catalog() {
    let cap = Capture::start(vec![]);
    let c = client_with(&cap, |o| o);
    let i = c
        .begin(
            Begin::new("u", "chat")
                .event_id("tools-1")
                .input("q")
                .tools([json!({"type": "function", "function": {"name": "search", "description": "Web search", "parameters": {"type": "object"}}})]),
        )
        .unwrap();
    i.start_span(SpanKind::Llm, "first").end(None);
    i.set_tools([json!({"name": "lookup", "input_schema": {"type": "object"}})]);
    i.start_span(SpanKind::Llm, "second").end(None);
    i.start_span(SpanKind::Task, "not-a-model").end(None);
    i.finish("a");
    assert!(c.flush(Duration::from_secs(5)));
    let spans = cap.spans();
    let tools = |name: &str| -> Vec<Value> {
        attr(span(&spans, name), "ai.prompt.tools")
            .map(|v| {
                v["arrayValue"]["values"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| serde_json::from_str(s["stringValue"].as_str().unwrap()).unwrap())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(
        tools("first.llm"),
        vec![
            json!({"type": "function", "name": "search", "description": "Web search", "inputSchema": {"type": "object"}})
        ]
    );
    assert_eq!(
        tools("second.llm"),
        vec![json!({"type": "function", "name": "lookup", "inputSchema": {"type": "object"}})]
    );
    assert_eq!(
        attr(span(&spans, "second.llm"), "ai.prompt.tools.source"),
        Some(&json!({"stringValue": "interaction"}))
    );
    assert!(tools("not-a-model.task").is_empty(), "only model spans");
}
