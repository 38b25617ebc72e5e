//! The raindrop layer with plain `tracing` spans, against a loopback capture server.


use std::sync::{Arc, Mutex};
use std::time::Duration;

use raindrop::{Begin, Client, ClientOptions};
use serde_json::{json, Value};
use raindrop_test_support::Capture;
use tracing::field::Empty;
use tracing_subscriber::prelude::*;

fn client(cap: &Capture) -> Client {
    Client::new(
        ClientOptions::default()
            .write_key("rk_test_tracing")
            .endpoint(cap.endpoint())
            .upload_interval(Duration::from_millis(50)),
    )
    .unwrap()
}

fn flush(c: &Client) {
    assert!(c.flush(Duration::from_secs(20)), "flush timed out");
}

/// Every span delivered on the traces channel.
fn spans(cap: &Capture) -> Vec<Value> {
    cap.delivered("traces")
        .into_iter()
        .flat_map(|b| {
            b["resourceSpans"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .flat_map(|rs| rs["scopeSpans"].as_array().cloned().unwrap_or_default())
                .flat_map(|ss| ss["spans"].as_array().cloned().unwrap_or_default())
        })
        .collect()
}

fn attr(span: &Value, key: &str) -> Option<Value> {
    span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| a["value"].clone())
}

fn attr_str(span: &Value, key: &str) -> Option<String> {
    attr(span, key).and_then(|v| v["stringValue"].as_str().map(str::to_owned))
}

fn named<'a>(spans: &'a [Value], name: &str) -> Vec<&'a Value> {
    spans.iter().filter(|s| s["name"] == name).collect()
}

fn finals(cap: &Capture) -> Vec<Value> {
    cap.delivered("events/track_partial")
        .into_iter()
        .filter(|p| p["is_pending"] == false)
        .collect()
}

/// The scenario the conformance driver runs: interaction span, tool spans, output.
#[test]
fn plain_spans_make_an_interaction_with_linked_tool_spans() {
    let cap = Capture::start(vec![]);
    let c = client(&cap);
    let sub = tracing_subscriber::registry().with(raindrop::layer(&c));
    tracing::subscriber::with_default(sub, || {
        let chat = tracing::info_span!(
            "interaction",
            raindrop.kind = "interaction",
            raindrop.name = "chat",
            raindrop.user_id = "u-tr",
            raindrop.convo_id = "c-tr",
            raindrop.input = "what is 2+2?",
            raindrop.output = Empty,
        );
        chat.in_scope(|| {
            for (name, input, output, error) in [
                (
                    "calculator",
                    r#"{"expr":"2+2"}"#,
                    Some(r#"{"value":4}"#),
                    None,
                ),
                ("search", r#"{"q":"math"}"#, None, Some("backend down")),
            ] {
                let tool = tracing::info_span!(
                    "tool",
                    raindrop.kind = "tool",
                    raindrop.name = name,
                    raindrop.input = input,
                    raindrop.output = Empty,
                    raindrop.error = Empty,
                );
                let _in = tool.enter();
                if let Some(o) = output {
                    tool.record("raindrop.output", o);
                }
                if let Some(e) = error {
                    tool.record("raindrop.error", e);
                }
            }
            chat.record("raindrop.output", "4");
        });
    });
    flush(&c);

    let partials = finals(&cap);
    assert_eq!(partials.len(), 1, "{partials:?}");
    let p = &partials[0];
    assert_eq!(p["event"], "chat");
    assert_eq!(p["user_id"], "u-tr");
    assert_eq!(
        p["ai_data"],
        json!({"input": "what is 2+2?", "output": "4", "convo_id": "c-tr"})
    );
    let event_id = p["event_id"].as_str().unwrap().to_owned();
    assert_eq!(event_id.len(), 36, "generated uuid");

    let spans = spans(&cap);
    assert_eq!(spans.len(), 3, "{spans:#?}");
    let calc = named(&spans, "calculator.tool")[0];
    let search = named(&spans, "search.tool")[0];
    let wf = named(&spans, "chat.workflow")[0];
    for tool in [calc, search] {
        assert_eq!(
            attr_str(tool, "traceloop.span.kind").as_deref(),
            Some("tool")
        );
        assert_eq!(
            attr_str(tool, "ai.operationId").as_deref(),
            Some("ai.toolCall")
        );
        assert_eq!(
            attr_str(tool, "traceloop.workflow.name").as_deref(),
            Some("chat")
        );
        assert_eq!(
            attr_str(tool, "traceloop.association.properties.event_id").as_deref(),
            Some(event_id.as_str())
        );
        assert_eq!(
            attr_str(tool, "ai.telemetry.metadata.raindrop.eventId").as_deref(),
            Some(event_id.as_str())
        );
        assert_eq!(
            attr_str(tool, "traceloop.association.properties.user_id").as_deref(),
            Some("u-tr")
        );
        assert_eq!(
            attr_str(tool, "traceloop.association.properties.convo_id").as_deref(),
            Some("c-tr")
        );
        assert_eq!(
            attr_str(tool, "traceloop.association.properties.event").as_deref(),
            Some("chat")
        );
        assert!(attr(tool, "traceloop.entity.duration_ms").unwrap()["intValue"].is_string());
        assert_eq!(tool["traceId"], wf["traceId"]);
        assert_eq!(tool["parentSpanId"], wf["spanId"]);
    }
    assert_eq!(
        attr_str(calc, "traceloop.entity.name").as_deref(),
        Some("calculator")
    );
    assert_eq!(
        attr_str(calc, "traceloop.entity.input").as_deref(),
        Some(r#"{"expr":"2+2"}"#)
    );
    assert_eq!(
        attr_str(calc, "traceloop.entity.output").as_deref(),
        Some(r#"{"value":4}"#)
    );
    assert_eq!(calc["status"], json!({"code": 1}));
    assert_eq!(
        search["status"],
        json!({"code": 2, "message": "backend down"})
    );
    assert_eq!(
        attr_str(wf, "traceloop.span.kind").as_deref(),
        Some("workflow")
    );
    assert_eq!(
        attr_str(wf, "traceloop.entity.output").as_deref(),
        Some("4")
    );
    assert!(wf.get("parentSpanId").is_none());
    assert!(attr(wf, "ai.operationId").is_none());
}

#[test]
fn user_id_recorded_later_lands_on_partial_and_spans() {
    let cap = Capture::start(vec![]);
    let c = client(&cap);
    let sub = tracing_subscriber::registry().with(raindrop::layer(&c));
    tracing::subscriber::with_default(sub, || {
        let chat = tracing::info_span!(
            "chat",
            raindrop.kind = "interaction",
            raindrop.user_id = Empty,
            raindrop.input = "hi",
            raindrop.output = Empty
        );
        let _in = chat.enter();
        chat.record("raindrop.user_id", "late-user");
        tracing::info_span!("lookup", raindrop.kind = "task").in_scope(|| {});
        chat.record("raindrop.output", "hello");
    });
    flush(&c);
    let partials = cap.delivered("events/track_partial");
    let final_ = finals(&cap);
    assert_eq!(final_.len(), 1);
    assert!(
        partials.iter().any(|p| p["user_id"] == "late-user"),
        "{partials:?}"
    );
    let spans = spans(&cap);
    let task = named(&spans, "lookup.task")[0];
    assert_eq!(
        attr_str(task, "traceloop.association.properties.user_id").as_deref(),
        Some("late-user")
    );
    assert_eq!(
        attr_str(task, "traceloop.span.kind").as_deref(),
        Some("task")
    );
    assert!(attr(task, "ai.operationId").is_none());
}

#[test]
fn manual_finish_still_sends_exactly_one_final_partial() {
    let cap = Capture::start(vec![]);
    let c = client(&cap);
    let sub = tracing_subscriber::registry().with(raindrop::layer(&c));
    tracing::subscriber::with_default(sub, || {
        let chat = tracing::info_span!(
            "chat",
            raindrop.kind = "interaction",
            raindrop.user_id = "u-1",
            raindrop.event_id = "evt-manual",
            raindrop.input = "q",
            raindrop.output = Empty
        );
        let _in = chat.enter();
        let i = raindrop::resume_interaction();
        assert_eq!(i.event_id(), Some("evt-manual"));
        i.finish("by hand");
        chat.record("raindrop.output", "from span");
    });
    flush(&c);
    let f = finals(&cap);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0]["event_id"], "evt-manual");
    assert_eq!(f[0]["ai_data"]["output"], "by hand");
}

#[test]
fn resume_without_interaction_is_noop_and_sends_nothing() {
    let cap = Capture::start(vec![]);
    let c = client(&cap);
    let sub = tracing_subscriber::registry().with(raindrop::layer(&c));
    tracing::subscriber::with_default(sub, || {
        let i = raindrop::resume_interaction();
        assert!(i.is_noop());
        i.set_property("x", 1);
        i.finish("nobody hears this");
        // Inside an ordinary span and a tool span outside any interaction: still noop.
        tracing::info_span!("ordinary").in_scope(|| {
            assert!(raindrop::resume_interaction().is_noop());
        });
        let _ =
            tracing::info_span!("t", raindrop.kind = "tool").in_scope(raindrop::resume_interaction);
    });
    // Without any subscriber at all.
    assert!(raindrop::resume_interaction().is_noop());
    flush(&c);
    assert!(cap.delivered("events/track_partial").is_empty());
    // Only the lone tool span was exported, with no association properties.
    let spans = spans(&cap);
    assert_eq!(spans.len(), 1);
    assert!(attr(&spans[0], "traceloop.association.properties.event_id").is_none());
}

#[test]
fn nested_interactions_resolve_to_the_innermost() {
    let cap = Capture::start(vec![]);
    let c = client(&cap);
    let sub = tracing_subscriber::registry().with(raindrop::layer(&c));
    tracing::subscriber::with_default(sub, || {
        let outer = tracing::info_span!(
            "outer",
            raindrop.kind = "interaction",
            raindrop.user_id = "u",
            raindrop.event_id = "evt-outer",
            raindrop.input = "o"
        );
        let _o = outer.enter();
        assert_eq!(raindrop::resume_interaction().event_id(), Some("evt-outer"));
        {
            let inner = tracing::info_span!(
                "inner",
                raindrop.kind = "interaction",
                raindrop.user_id = "u",
                raindrop.event_id = "evt-inner",
                raindrop.input = "i"
            );
            let _i = inner.enter();
            tracing::info_span!("plain").in_scope(|| {
                assert_eq!(raindrop::resume_interaction().event_id(), Some("evt-inner"));
                tracing::info_span!("inner_tool", raindrop.kind = "tool").in_scope(|| {});
            });
        }
        assert_eq!(raindrop::resume_interaction().event_id(), Some("evt-outer"));
        tracing::info_span!("outer_tool", raindrop.kind = "tool").in_scope(|| {});
    });
    flush(&c);
    let f = finals(&cap);
    assert_eq!(f.len(), 2);
    let spans = spans(&cap);
    let ev = |n: &str| {
        attr_str(
            named(&spans, n)[0],
            "traceloop.association.properties.event_id",
        )
    };
    assert_eq!(ev("inner_tool.tool").as_deref(), Some("evt-inner"));
    assert_eq!(ev("outer_tool.tool").as_deref(), Some("evt-outer"));
    let inner_wf = named(&spans, "inner.workflow")[0];
    let outer_wf = named(&spans, "outer.workflow")[0];
    assert_eq!(inner_wf["parentSpanId"], outer_wf["spanId"]);
    assert_eq!(inner_wf["traceId"], outer_wf["traceId"]);
}

#[test]
fn begin_inside_an_interaction_span_binds_to_it() {
    let cap = Capture::start(vec![]);
    let c = client(&cap);
    let sub = tracing_subscriber::registry().with(raindrop::layer(&c));
    tracing::subscriber::with_default(sub, || {
        let chat = tracing::info_span!(
            "chat",
            raindrop.kind = "interaction",
            raindrop.event_id = "evt-b"
        );
        let _in = chat.enter();
        tracing::info_span!("ordinary").in_scope(|| {
            // No global client is needed: begin binds to the span's interaction.
            let i = raindrop::begin(
                Begin::new("u-b", "support_chat")
                    .input("question")
                    .convo_id("c-b")
                    .property("k", 1),
            )
            .unwrap();
            assert_eq!(i.event_id(), Some("evt-b"));
            i.finish("answer");
        });
    });
    flush(&c);
    let all = cap.delivered("events/track_partial");
    assert!(all.iter().all(|p| p["event_id"] == "evt-b"), "{all:?}");
    let f = finals(&cap);
    assert_eq!(f.len(), 1);
    let merged: Vec<&Value> = all.iter().collect();
    let has = |k: &str, v: Value| merged.iter().any(|p| p.pointer(k) == Some(&v));
    assert!(has("/user_id", json!("u-b")));
    assert!(has("/event", json!("support_chat")));
    assert!(has("/ai_data/input", json!("question")));
    assert!(has("/ai_data/output", json!("answer")));
    assert!(has("/properties/k", json!(1)));
    let spans = spans(&cap);
    let wf = named(&spans, "chat.workflow")[0];
    assert_eq!(
        attr_str(wf, "traceloop.association.properties.user_id").as_deref(),
        Some("u-b")
    );
    assert_eq!(
        attr_str(wf, "traceloop.association.properties.event").as_deref(),
        Some("support_chat")
    );
}

#[test]
fn panic_inside_an_interaction_span_finishes_with_error_and_propagates() {
    let cap = Capture::start(vec![]);
    let c = client(&cap);
    let sub = tracing_subscriber::registry().with(raindrop::layer(&c));
    let result = tracing::subscriber::with_default(sub, || {
        std::panic::catch_unwind(|| {
            let chat = tracing::info_span!(
                "chat",
                raindrop.kind = "interaction",
                raindrop.user_id = "u",
                raindrop.input = "q"
            );
            let _in = chat.enter();
            panic!("boom");
        })
    });
    let payload = result.unwrap_err();
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"boom"));
    flush(&c);
    let f = finals(&cap);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0]["properties"]["error"], "panicked");
    let spans = spans(&cap);
    assert_eq!(spans[0]["status"]["code"], 2);
}

/// A layer that counts the spans it is told about.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<String>>>);
impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Seen {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _: &tracing::span::Id,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        self.0
            .lock()
            .unwrap()
            .push(attrs.metadata().name().to_owned());
    }
}

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);
impl std::io::Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn layer_next_to_fmt_with_per_layer_warn_filter_keeps_raindrop_spans() {
    let cap = Capture::start(vec![]);
    let c = client(&cap);
    let out = Buf::default();
    let seen = Seen::default();
    let w = out.clone();
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(move || w.clone())
        .with_ansi(false)
        .with_filter(tracing_subscriber::EnvFilter::new("warn"));
    let sub = tracing_subscriber::registry()
        .with(raindrop::layer(&c))
        .with(fmt)
        .with(seen.clone());
    tracing::subscriber::with_default(sub, || {
        let chat = tracing::info_span!(
            "chat",
            raindrop.kind = "interaction",
            raindrop.user_id = "u",
            raindrop.input = "q"
        );
        let _in = chat.enter();
        tracing::info_span!("ordinary_span").in_scope(|| {
            tracing::info!("info log, filtered out of fmt");
            tracing::warn!("warn log, printed");
            // The ordinary span is enabled (other layers see it) and current:
            // resume walks up through it to the interaction.
            assert_eq!(
                tracing::Span::current().metadata().map(|m| m.name()),
                Some("ordinary_span")
            );
            tracing::info_span!("deeper").in_scope(|| {
                assert!(!raindrop::resume_interaction().is_noop());
            });
            tracing::info_span!("tool_a", raindrop.kind = "tool").in_scope(|| {});
        });
    });
    flush(&c);
    assert_eq!(finals(&cap).len(), 1);
    let spans = spans(&cap);
    assert_eq!(spans.len(), 2, "{spans:#?}");
    assert_eq!(named(&spans, "tool_a.tool").len(), 1);
    // Ordinary spans stay visible to other layers; raindrop spans too.
    let seen = seen.0.lock().unwrap().clone();
    assert_eq!(seen, ["chat", "ordinary_span", "deeper", "tool_a"]);
    let printed = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    assert!(printed.contains("warn log, printed"), "{printed}");
    assert!(!printed.contains("info log"), "{printed}");
}

#[test]
fn a_global_warn_filter_disables_raindrop_spans_as_documented() {
    let cap = Capture::start(vec![]);
    let c = client(&cap);
    let sub = tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("warn"))
        .with(raindrop::layer(&c));
    tracing::subscriber::with_default(sub, || {
        let chat = tracing::info_span!(
            "chat",
            raindrop.kind = "interaction",
            raindrop.user_id = "u",
            raindrop.input = "q"
        );
        let _in = chat.enter();
        assert!(chat.is_disabled());
        assert!(raindrop::resume_interaction().is_noop());
    });
    flush(&c);
    assert!(cap.requests().is_empty());
}

#[test]
fn sdk_diagnostics_and_events_are_ignored() {
    let cap = Capture::start(vec![]);
    let c = client(&cap);
    let sub = tracing_subscriber::registry().with(raindrop::layer(&c));
    tracing::subscriber::with_default(sub, || {
        tracing::error!(target: "raindrop", { raindrop.kind = "interaction" }, "an SDK diagnostic");
        tracing::info!(raindrop.kind = "tool", "an event with a raindrop field");
        tracing::info_span!("ordinary", kind = "interaction").in_scope(|| {});
    });
    flush(&c);
    assert!(cap.requests().is_empty());
}

#[test]
fn resume_across_threads_given_the_span() {
    let cap = Capture::start(vec![]);
    let c = client(&cap);
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(raindrop::layer(&c)));
    tracing::dispatcher::with_default(&dispatch, || {
        let chat = tracing::info_span!(
            "chat",
            raindrop.kind = "interaction",
            raindrop.event_id = "evt-thread",
            raindrop.user_id = "u",
            raindrop.input = "q"
        );
        let handles: Vec<_> = (0..4)
            .map(|n| {
                let span = chat.clone();
                let d = dispatch.clone();
                std::thread::spawn(move || {
                    tracing::dispatcher::with_default(&d, || {
                        span.in_scope(|| {
                            tracing::info_span!("worker").in_scope(|| {
                                let i = raindrop::resume_interaction();
                                i.set_property(format!("thread_{n}"), n);
                                i.event_id().map(str::to_owned)
                            })
                        })
                    })
                })
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap().as_deref(), Some("evt-thread"));
        }
        use raindrop::RaindropSpanExt;
        assert_eq!(chat.interaction().event_id(), Some("evt-thread"));
        let child = tracing::info_span!(parent: &chat, "child", raindrop.kind = "task");
        assert_eq!(child.interaction().event_id(), Some("evt-thread"));
        assert!(tracing::info_span!(parent: None, "root")
            .interaction()
            .is_noop());
    });
    flush(&c);
    let all = cap.delivered("events/track_partial");
    for n in 0..4 {
        let key = format!("/properties/thread_{n}");
        assert!(
            all.iter().any(|p| p.pointer(&key) == Some(&json!(n))),
            "{all:?}"
        );
    }
}

#[test]
fn properties_and_text_caps() {
    let cap = Capture::start(vec![]);
    let c = Client::new(
        ClientOptions::default()
            .write_key("rk_test_tracing")
            .endpoint(cap.endpoint())
            .upload_interval(Duration::from_millis(50))
            .max_text_field_chars(40),
    )
    .unwrap();
    let long = "x".repeat(100);
    let sub = tracing_subscriber::registry().with(raindrop::layer(&c));
    tracing::subscriber::with_default(sub, || {
        let chat = tracing::info_span!(
            "chat",
            raindrop.kind = "interaction",
            raindrop.user_id = "u",
            raindrop.event_id = "evt-props",
            raindrop.input = "q",
            raindrop.properties.region = "eu",
            raindrop.properties = Empty,
        );
        let _in = chat.enter();
        chat.record("raindrop.properties", r#"{"tier": "pro", "n": 3}"#);
        let tool = tracing::info_span!(
            "fetch",
            raindrop.kind = "tool",
            raindrop.input = long.as_str(),
            raindrop.properties.provider = "bing",
            raindrop.properties.attempt = 2,
            raindrop.properties.ok = true,
            raindrop.properties.ratio = 0.25,
            raindrop.properties.user_id = "cannot override",
        );
        tool.in_scope(|| {});
    });
    flush(&c);
    let partials = cap.delivered("events/track_partial");
    let has = |k: &str, v: Value| partials.iter().any(|p| p.pointer(k) == Some(&v));
    assert!(has("/properties/region", json!("eu")), "{partials:?}");
    assert!(has("/properties/tier", json!("pro")));
    assert!(has("/properties/n", json!(3)));
    let spans = spans(&cap);
    let tool = named(&spans, "fetch.tool")[0];
    let input = attr_str(tool, "traceloop.entity.input").unwrap();
    assert_eq!(input.chars().count(), 40);
    assert!(input.ends_with(raindrop::TRUNCATION_MARKER));
    let p = |k: &str| attr(tool, &format!("traceloop.association.properties.{k}")).unwrap();
    assert_eq!(p("provider"), json!({"stringValue": "bing"}));
    assert_eq!(p("attempt"), json!({"intValue": "2"}));
    assert_eq!(p("ok"), json!({"boolValue": true}));
    assert_eq!(p("ratio"), json!({"doubleValue": 0.25}));
    assert_eq!(p("user_id"), json!({"stringValue": "u"}));
    assert_eq!(p("event_id"), json!({"stringValue": "evt-props"}));
}

#[test]
fn spawned_instrumented_futures_resume_the_interaction() {
    use tracing::instrument::WithSubscriber;
    use tracing::Instrument;
    let cap = Capture::start(vec![]);
    let c = client(&cap);
    let d = tracing::Dispatch::new(tracing_subscriber::registry().with(raindrop::layer(&c)));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (instrumented, bare) = rt.block_on(
        async {
            let chat = tracing::info_span!(
                "chat",
                raindrop.kind = "interaction",
                raindrop.event_id = "evt-spawn",
                raindrop.user_id = "u",
                raindrop.input = "q"
            );
            async {
                let instrumented = tokio::spawn(
                    async {
                        tokio::task::yield_now().await;
                        tracing::info_span!("sub_tool", raindrop.kind = "tool").in_scope(|| {});
                        raindrop::resume_interaction().event_id().map(str::to_owned)
                    }
                    .in_current_span()
                    .with_current_subscriber(),
                )
                .await
                .unwrap();
                // Not instrumented: the spawned task has no current span.
                let bare = tokio::spawn(
                    async { raindrop::resume_interaction().is_noop() }.with_current_subscriber(),
                )
                .await
                .unwrap();
                (instrumented, bare)
            }
            .instrument(chat)
            .await
        }
        .with_subscriber(d),
    );
    assert_eq!(instrumented.as_deref(), Some("evt-spawn"));
    assert!(bare);
    flush(&c);
    assert_eq!(finals(&cap).len(), 1);
    let spans = spans(&cap);
    let tool = named(&spans, "sub_tool.tool")[0];
    assert_eq!(
        attr_str(tool, "traceloop.association.properties.event_id").as_deref(),
        Some("evt-spawn")
    );
    assert_eq!(
        tool["parentSpanId"],
        named(&spans, "chat.workflow")[0]["spanId"]
    );
}

/// An ERROR event inside a raindrop span marks that span's status error
/// (the nearest raindrop span, through ordinary spans; the first event
/// wins); WARN events and the SDK's own diagnostics do not; an interaction
/// still finishes with its own outcome. Same with the bare layer.
#[test]
fn error_events_mark_the_enclosing_raindrop_span_failed() {
    for bare in [false, true] {
        let cap = Capture::start(vec![]);
        let c = client(&cap);
        let run = || {
            let chat = tracing::info_span!(
                "chat",
                raindrop.kind = "interaction",
                raindrop.user_id = "u-err",
                raindrop.output = Empty,
            );
            chat.in_scope(|| {
                let tool = tracing::info_span!("flaky", raindrop.kind = "tool");
                tool.in_scope(|| {
                    let db = tracing::info_span!("db_query");
                    db.in_scope(|| {
                        tracing::warn!("slow query");
                        tracing::error!(attempt = 1, "connection reset by peer");
                        tracing::error!("second error");
                    });
                });
                let ok = tracing::info_span!("fine", raindrop.kind = "tool");
                ok.in_scope(|| {
                    tracing::warn!("only a warning");
                    tracing::error!(target: "raindrop", "an SDK diagnostic");
                });
                chat.record("raindrop.output", "recovered");
            });
        };
        if bare {
            let sub = tracing_subscriber::registry().with(raindrop::RaindropLayer::new(&c));
            tracing::subscriber::with_default(sub, run);
        } else {
            let sub = tracing_subscriber::registry().with(raindrop::layer(&c));
            tracing::subscriber::with_default(sub, run);
        }
        flush(&c);
        let spans = spans(&cap);
        let flaky = named(&spans, "flaky.tool");
        assert_eq!(flaky.len(), 1, "bare={bare}");
        assert_eq!(flaky[0]["status"]["code"], 2, "bare={bare}: {:?}", flaky[0]);
        assert_eq!(flaky[0]["status"]["message"], "connection reset by peer");
        let fine = named(&spans, "fine.tool");
        assert_ne!(fine[0]["status"]["code"], 2, "bare={bare}: {:?}", fine[0]);
        let wf = named(&spans, "chat.workflow");
        assert_ne!(
            wf[0]["status"]["code"], 2,
            "the event was in the tool, not the workflow"
        );
        let f = finals(&cap);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0]["ai_data"]["output"], "recovered");
        assert!(f[0]["properties"].get("error").is_none(), "{:?}", f[0]);
    }
}
