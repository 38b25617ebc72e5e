//! PII redaction, the before-send hook, the content switch and sampling,
//! against the capture server on 127.0.0.1.

use std::collections::HashSet;
use std::time::Duration;

use raindrop_core::*;
use raindrop_test_support::Capture;
use serde_json::json;

fn opts(cap: &Capture) -> ClientOptions {
    ClientOptions::default()
        .write_key("rk_test")
        .endpoint(cap.endpoint())
}

/// Every request body the capture server got, as text.
fn all_bodies(cap: &Capture) -> String {
    cap.requests()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.raw).into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn redaction_replaces_every_rule_with_its_token_in_events_and_partials() {
    let cap = Capture::start(vec![]);
    let c = Client::new(opts(&cap).redact_pii(true)).unwrap();
    let text = "api_key=sk-123 card 4111 1111 1111 1111 mail ann@example.com \
                call (415) 555-0123 ssn 123-45-6789 password: hunter2 \
                ship to 12 Main Street please, ask james";
    let want = "<REDACTED_CREDENTIALS> card <REDACTED_CREDIT_CARD> mail <REDACTED_EMAIL> \
                call <REDACTED_PHONE> ssn <REDACTED_SSN> <REDACTED_SECRET> \
                ship to <REDACTED_ADDRESS> please, ask <REDACTED_NAME>";
    c.track_ai(
        AiEvent::new("u", "chat")
            .event_id("r-1")
            .input(text)
            .output("hi james")
            .property("note", "james@example.com"),
    )
    .unwrap();
    // The golden partial_lifecycle flow, with PII in input and output.
    let it = c
        .begin(
            Begin::new("u-1", "agent_run")
                .event_id("i-1")
                .input(text)
                .convo_id("c-9"),
        )
        .unwrap();
    it.set_property("stage", "tools");
    it.finish("write to bob@example.com");
    assert!(c.flush(Duration::from_secs(5)));
    let e = &cap.delivered("events/track")[0];
    assert_eq!(e["ai_data"]["input"], want);
    assert_eq!(e["ai_data"]["output"], "hi <REDACTED_NAME>");
    assert_eq!(
        e["properties"]["note"], "james@example.com",
        "properties are not redacted (as in the reference)"
    );
    let p = &cap.delivered("events/track_partial")[0];
    assert_eq!(p["ai_data"]["input"], want);
    assert_eq!(p["ai_data"]["output"], "write to <REDACTED_EMAIL>");
    assert_eq!(p["user_id"], "u-1");
    assert_eq!(p["properties"]["stage"], "tools");
}

#[test]
fn the_hook_changes_drops_and_survives_panics() {
    let cap = Capture::start(vec![]);
    let c = Client::new(opts(&cap).before_send(|item| match item {
        Outgoing::Event(e) => {
            e.properties.insert("seen_by_hook".into(), json!(true));
            e.event != "drop_me"
        }
        Outgoing::Identify(_) => panic!("a bug in the user's hook"),
        Outgoing::InteractionUpdate(u) => {
            u.properties.insert("hooked".into(), json!(1));
            true
        }
        _ => true,
    }))
    .unwrap();
    c.track_ai(AiEvent::new("u", "keep").input("q")).unwrap();
    c.track_ai(AiEvent::new("u", "drop_me").input("q")).unwrap();
    c.identify("u", Properties::new()).unwrap();
    c.begin(Begin::new("u", "run").input("q"))
        .unwrap()
        .finish("a");
    // The worker survived the panic: later items still go.
    c.track_ai(AiEvent::new("u", "after").input("q")).unwrap();
    assert!(c.flush(Duration::from_secs(5)));
    let events = cap.delivered("events/track");
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["keep", "after"]);
    assert!(events
        .iter()
        .all(|e| e["properties"]["seen_by_hook"] == true));
    assert!(cap.delivered("users/identify").is_empty());
    assert_eq!(
        cap.delivered("events/track_partial")[0]["properties"]["hooked"],
        1
    );
    let s = c.stats();
    assert_eq!(s.dropped(DropReason::DroppedByHook), 1, "{s:?}");
    assert_eq!(s.dropped(DropReason::HookPanicked), 1, "{s:?}");
    assert_eq!(s.pending(), 0);
}

#[test]
fn with_content_off_no_content_leaves_the_process() {
    let cap = Capture::start(vec![]);
    let c = Client::new(opts(&cap).capture_content(false)).unwrap();
    c.track_ai(
        AiEvent::new("u", "chat")
            .input("MARKER-INPUT-1")
            .output("MARKER-OUTPUT-1")
            .model("gpt-x")
            .property("plan", "pro")
            .attachments([Attachment::text("MARKER-ATTACH-1")]),
    )
    .unwrap();
    let it = c
        .begin(Begin::new("u", "run").input("MARKER-INPUT-2"))
        .unwrap();
    it.set_output("MARKER-OUTPUT-2");
    it.finish("MARKER-OUTPUT-3");
    let mut span = SpanRecord {
        trace_id: SpanRecord::new_trace_id(),
        span_id: SpanRecord::new_span_id(),
        parent_span_id: None,
        name: "search.tool".into(),
        start: std::time::SystemTime::now(),
        end: std::time::SystemTime::now(),
        status: SpanStatus::Ok,
        attributes: Vec::new(),
    };
    for (k, v) in [
        ("traceloop.entity.input", "MARKER-SPAN-IN"),
        ("traceloop.entity.output", "MARKER-SPAN-OUT"),
        ("gen_ai.input.messages", "MARKER-MSG"),
        ("traceloop.entity.name", "search"),
    ] {
        span.attributes.push((k.into(), v.into()));
    }
    c.export_span(span).unwrap();
    assert!(c.flush(Duration::from_secs(5)));
    let bodies = all_bodies(&cap);
    assert!(!bodies.contains("MARKER"), "{bodies}");
    // Names, ids, models, properties and the interaction itself still arrive.
    let e = &cap.delivered("events/track")[0];
    assert_eq!(e["ai_data"]["model"], "gpt-x");
    assert_eq!(e["properties"]["plan"], "pro");
    let finals: Vec<_> = cap
        .delivered("events/track_partial")
        .into_iter()
        .filter(|p| p["is_pending"] == false)
        .collect();
    assert_eq!(finals.len(), 1, "not dropped as empty: it had content");
    assert!(bodies.contains("search.tool"));
    assert_eq!(c.stats().dropped_total(), 0);
}

#[test]
fn sampling_keeps_the_share_and_decides_alike_everywhere() {
    let cap = Capture::start(vec![]);
    let a = Client::new(opts(&cap).sample_rate(0.25)).unwrap();
    let b = Client::new(opts(&cap).sample_rate(0.25)).unwrap();
    let n = 10_000;
    let mut kept = 0;
    for i in 0..n {
        let id = format!("trace-{i}");
        let ia = a.resume_interaction_by_id(&id);
        let ib = b.resume_interaction_by_id(&id);
        assert_eq!(ia.is_sampled(), ib.is_sampled(), "{id}");
        kept += usize::from(ia.is_sampled());
    }
    let share = kept as f64 / n as f64;
    assert!((share - 0.25).abs() < 0.02, "kept {share}");

    // Unsampled: nothing queued; its signals and spans are dropped and counted.
    let c = Client::new(opts(&cap).sample_rate(0.25)).unwrap();
    let mut unsampled = None;
    let mut sampled = None;
    let mut left_out = 0u64;
    for i in 0..100 {
        let it = c
            .begin(Begin::new("u", "run").event_id(format!("s-{i}")).input("q"))
            .unwrap();
        if it.is_sampled() {
            sampled.get_or_insert(it);
        } else {
            left_out += 1;
            unsampled.get_or_insert(it);
        }
    }
    let (kept_i, dropped_i) = (sampled.unwrap(), unsampled.unwrap());
    dropped_i.set_property("k", 1);
    dropped_i.finish("a");
    kept_i.finish("a");
    c.track_signal(Signal::new(dropped_i.event_id().unwrap(), "thumbs_up"))
        .unwrap();
    c.track_signal(Signal::new(kept_i.event_id().unwrap(), "thumbs_up"))
        .unwrap();
    assert!(c.flush(Duration::from_secs(5)));
    let ids: HashSet<String> = cap
        .delivered("events/track_partial")
        .iter()
        .map(|p| p["event_id"].as_str().unwrap().to_owned())
        .collect();
    assert!(ids.contains(kept_i.event_id().unwrap()));
    assert!(!ids.contains(dropped_i.event_id().unwrap()));
    let signals = cap.delivered("signals/track");
    assert_eq!(signals.len(), 1);
    assert_eq!(signals[0]["event_id"], kept_i.event_id().unwrap());
    let s = c.stats();
    // Each interaction left out is counted once, when it begins (not again
    // for its property, its finish or its handle being dropped).
    assert_eq!(
        s.lost(ItemKind::Interaction, DropReason::SampledOut),
        left_out,
        "{s:?}"
    );
    assert_eq!(s.lost(ItemKind::Signal, DropReason::SampledOut), 1);
}

#[test]
fn span_content_is_redacted_only_when_asked() {
    let span = |text: &str| {
        let mut s = SpanRecord {
            trace_id: SpanRecord::new_trace_id(),
            span_id: SpanRecord::new_span_id(),
            parent_span_id: None,
            name: "lookup.tool".into(),
            start: std::time::SystemTime::now(),
            end: std::time::SystemTime::now(),
            status: SpanStatus::Ok,
            attributes: Vec::new(),
        };
        s.attributes
            .push(("traceloop.entity.input".into(), text.into()));
        s
    };
    for (in_spans, want) in [
        (false, "mail ann@example.com"),
        (true, "mail <REDACTED_EMAIL>"),
    ] {
        let cap = Capture::start(vec![]);
        let c = Client::new(opts(&cap).redact_pii(true).redact_pii_in_spans(in_spans)).unwrap();
        c.export_span(span("mail ann@example.com")).unwrap();
        assert!(c.flush(Duration::from_secs(5)));
        let body = all_bodies(&cap);
        assert!(body.contains(want), "{in_spans}: {body}");
    }
}

#[test]
fn with_content_off_no_marker_reaches_the_api_or_the_workshop_on_any_route() {
    // Every place the SDK carries a user's or a model's words, each with its
    // own marker; the raw request bytes of every route, to the API and to
    // the Workshop mirror, must hold none of them.
    let cap = Capture::start(vec![]);
    let workshop = Capture::start(vec![]);
    let c = Client::new(
        opts(&cap)
            .capture_content(false)
            .workshop(Workshop::At(workshop.endpoint())),
    )
    .unwrap();
    let id = c
        .track_ai(
            AiEvent::new("u", "chat")
                .input("MARKER-PROMPT")
                .output("MARKER-OUTPUT")
                .attachments([
                    Attachment::text("MARKER-EVENT-ATTACHMENT"),
                    Attachment::new(AttachmentType::Code, "MARKER-CODE"),
                ]),
        )
        .unwrap();
    c.track(Event::new("u", "plain").attachments([Attachment::text("MARKER-PLAIN-ATTACHMENT")]))
        .unwrap();
    c.track_signal(
        Signal::new(&id, "feedback")
            .signal_type(SignalType::Feedback)
            .comment("MARKER-COMMENT"),
    )
    .unwrap();
    c.track_signal(
        Signal::new(&id, "edit")
            .signal_type(SignalType::Edit)
            .after("MARKER-AFTER")
            .comment("MARKER-EDIT-COMMENT"),
    )
    .unwrap();
    c.track_signal(Signal::new(&id, "thumbs_up").property("comment", "MARKER-PROP-COMMENT"))
        .unwrap();
    let it = c
        .begin(
            Begin::new("u", "run")
                .input("MARKER-INTERACTION-INPUT")
                .attachments([Attachment::text("MARKER-BEGIN-ATTACHMENT")]),
        )
        .unwrap();
    it.add_attachments([Attachment::text("MARKER-ADDED-ATTACHMENT")]);
    it.set_output("MARKER-INTERACTION-OUTPUT");
    it.finish_with(
        Finish::new()
            .output("MARKER-FINAL-OUTPUT")
            .attachments([Attachment::text("MARKER-FINISH-ATTACHMENT")]),
    );
    // A tool span and an LLM span as the tracing layer writes them, plus
    // other conventions' content keys on a span exported by hand.
    for (name, attrs) in [
        (
            "search.tool",
            vec![
                ("traceloop.entity.input", "MARKER-TOOL-INPUT"),
                ("traceloop.entity.output", "MARKER-TOOL-OUTPUT"),
                ("gen_ai.tool.call.arguments", "MARKER-TOOL-ARGS"),
                ("gen_ai.tool.call.result", "MARKER-TOOL-RESULT"),
            ],
        ),
        (
            "chat.llm",
            vec![
                ("ai.prompt", "MARKER-AI-PROMPT"),
                ("ai.prompt.messages", "MARKER-AI-MESSAGES"),
                ("gen_ai.prompt.0.content", "MARKER-GENAI-PROMPT"),
                ("gen_ai.completion.0.content", "MARKER-GENAI-COMPLETION"),
                ("ai.response.text", "MARKER-RESPONSE"),
                ("gen_ai.system_instructions", "MARKER-SYSTEM"),
            ],
        ),
        (
            "other.task",
            vec![
                ("raindrop.input", "MARKER-RAINDROP-INPUT"),
                ("raindrop.output", "MARKER-RAINDROP-OUTPUT"),
                ("input.value", "MARKER-OPENINFERENCE-IN"),
                ("output.value", "MARKER-OPENINFERENCE-OUT"),
                ("ai.toolCall.args", "MARKER-VERCEL-ARGS"),
                ("ai.toolCall.result", "MARKER-VERCEL-RESULT"),
                ("llm.prompts.0.content", "MARKER-LLM-PROMPTS"),
                (
                    "llm.input_messages.0.message.content",
                    "MARKER-LLM-INPUT-MESSAGES",
                ),
            ],
        ),
    ] {
        let mut span = SpanRecord {
            trace_id: SpanRecord::new_trace_id(),
            span_id: SpanRecord::new_span_id(),
            parent_span_id: None,
            name: name.into(),
            start: std::time::SystemTime::now(),
            end: std::time::SystemTime::now(),
            status: SpanStatus::Ok,
            attributes: vec![("traceloop.entity.name".into(), "kept".into())],
        };
        for (k, v) in attrs {
            span.attributes.push((k.into(), v.into()));
        }
        c.export_span(span).unwrap();
    }
    assert!(c.flush(Duration::from_secs(5)));
    let report = c.shutdown(Duration::from_secs(5));
    assert_eq!(report.stats.dropped_total(), 0, "{:?}", report.stats);
    let routes: HashSet<String> = cap.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(
        routes.len(),
        4,
        "events, partials, signals, traces: {routes:?}"
    );
    for server in [&cap, &workshop] {
        assert!(!server.requests().is_empty());
        for r in server.requests() {
            assert!(
                !r.raw.windows(b"MARKER".len()).any(|w| w == b"MARKER"),
                "{}: {}",
                r.path,
                String::from_utf8_lossy(&r.raw)
            );
        }
    }
    // The signals themselves still arrive, without their text.
    let signals = cap.delivered("signals/track");
    assert_eq!(signals.len(), 3);
    assert!(signals.iter().any(|s| s["signal_type"] == "edit"));
    assert!(all_bodies(&cap).contains("kept"));
}
