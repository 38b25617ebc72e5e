//! The raindrop layer with plain `tracing` spans: what it records, read back
//! through `raindrop::testing`.

use std::sync::{Arc, Mutex};

use raindrop::testing::Capture;
use raindrop::{Begin, ClientOptions};
use tracing::field::Empty;
use tracing_subscriber::prelude::*;

/// The scenario the conformance driver runs: interaction span, tool spans, output.
#[test]
fn plain_spans_make_an_interaction_with_linked_tool_spans() {
    let capture = Capture::new();
    capture.run(|| {
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
    let r = capture.recorded();

    assert_eq!(r.final_updates(), 1, "{}", r.render());
    let finished = r.finished_interactions();
    assert_eq!(finished.len(), 1);
    let p = finished[0];
    assert_eq!(p.event.as_deref(), Some("chat"));
    assert_eq!(p.user_id.as_deref(), Some("u-tr"));
    assert_eq!(p.input.as_deref(), Some("what is 2+2?"));
    assert_eq!(p.output.as_deref(), Some("4"));
    assert_eq!(p.convo_id.as_deref(), Some("c-tr"));
    assert_eq!(p.model, None);
    let event_id = p.event_id.as_str();
    assert_eq!(event_id.len(), 36, "generated uuid");

    assert_eq!(r.spans.len(), 3, "{}", r.render());
    let calc = r.span("calculator.tool").expect("calculator");
    let search = r.span("search.tool").expect("search");
    let wf = r.span("chat.workflow").expect("the workflow span");
    for tool in [calc, search] {
        assert_eq!(tool.kind.as_deref(), Some("tool"));
        assert_eq!(tool.attr_str("ai.operationId"), Some("ai.toolCall"));
        assert_eq!(tool.attr_str("traceloop.workflow.name"), Some("chat"));
        assert_eq!(
            tool.attr_str("traceloop.association.properties.event_id"),
            Some(event_id)
        );
        assert_eq!(
            tool.attr_str("ai.telemetry.metadata.raindrop.eventId"),
            Some(event_id)
        );
        assert_eq!(
            tool.attr_str("traceloop.association.properties.user_id"),
            Some("u-tr")
        );
        assert_eq!(
            tool.attr_str("traceloop.association.properties.convo_id"),
            Some("c-tr")
        );
        assert_eq!(
            tool.attr_str("traceloop.association.properties.event"),
            Some("chat")
        );
        // An OTLP intValue (a doubleValue or a string would not read as i64).
        assert!(tool.attributes["traceloop.entity.duration_ms"].is_i64());
        assert!(tool.is_child_of(wf), "{tool:?} under {wf:?}");
    }
    assert_eq!(calc.attr_str("traceloop.entity.name"), Some("calculator"));
    assert_eq!(
        calc.attr_str("traceloop.entity.input"),
        Some(r#"{"expr":"2+2"}"#)
    );
    assert_eq!(
        calc.attr_str("traceloop.entity.output"),
        Some(r#"{"value":4}"#)
    );
    // Status is ok (code 1) or error (code 2, with the message).
    assert_eq!(calc.error, None);
    assert_eq!(search.error.as_deref(), Some("backend down"));
    assert_eq!(wf.kind.as_deref(), Some("workflow"));
    assert_eq!(wf.attr_str("traceloop.entity.output"), Some("4"));
    assert_eq!(wf.parent_span_id, None);
    assert!(!wf.attributes.contains_key("ai.operationId"));
}

#[test]
fn user_id_recorded_later_lands_on_partial_and_spans() {
    let capture = Capture::new();
    capture.run(|| {
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
    let r = capture.recorded();
    assert_eq!(r.final_updates(), 1, "{}", r.render());
    let chat = r.finished_interactions()[0];
    assert_eq!(chat.user_id.as_deref(), Some("late-user"));
    let task = r.span("lookup.task").expect("the task span");
    assert_eq!(
        task.attr_str("traceloop.association.properties.user_id"),
        Some("late-user")
    );
    assert_eq!(task.kind.as_deref(), Some("task"));
    assert!(!task.attributes.contains_key("ai.operationId"));
}

#[test]
fn manual_finish_still_sends_exactly_one_final_partial() {
    let capture = Capture::new();
    capture.run(|| {
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
    let r = capture.recorded();
    assert_eq!(r.final_updates(), 1, "{}", r.render());
    let finished = r.finished_interactions();
    assert_eq!(finished.len(), 1);
    assert_eq!(finished[0].event_id, "evt-manual");
    assert_eq!(finished[0].output.as_deref(), Some("by hand"));
}

#[test]
fn resume_without_interaction_is_noop_and_sends_nothing() {
    let capture = Capture::new();
    capture.run(|| {
        let i = raindrop::resume_interaction();
        assert!(i.is_noop());
        i.set_property("x", 1);
        i.finish("nobody hears this");
        // Inside an ordinary span and a tool span outside any interaction: still noop.
        tracing::info_span!("ordinary").in_scope(|| {
            assert!(raindrop::resume_interaction().is_noop());
        });
        let in_tool =
            tracing::info_span!("t", raindrop.kind = "tool").in_scope(raindrop::resume_interaction);
        assert!(in_tool.is_noop());
    });
    // Without any subscriber at all.
    assert!(raindrop::resume_interaction().is_noop());
    let r = capture.recorded();
    assert!(r.events.is_empty(), "{}", r.render());
    assert_eq!(r.per_path.get("events/track_partial"), None);
    // Only the lone tool span was exported, with no association properties.
    assert_eq!(r.spans.len(), 1, "{}", r.render());
    assert_eq!(r.spans[0].name, "t.tool");
    assert_eq!(r.spans[0].event_id, None);
}

#[test]
fn nested_interactions_resolve_to_the_innermost() {
    let capture = Capture::new();
    capture.run(|| {
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
    let r = capture.recorded();
    assert_eq!(r.final_updates(), 2, "{}", r.render());
    assert!(r.event_by_id("evt-inner").is_some_and(|e| e.finished));
    assert!(r.event_by_id("evt-outer").is_some_and(|e| e.finished));
    let ev = |n: &str| r.span(n).and_then(|s| s.event_id.as_deref());
    assert_eq!(ev("inner_tool.tool"), Some("evt-inner"));
    assert_eq!(ev("outer_tool.tool"), Some("evt-outer"));
    let inner_wf = r.span("inner.workflow").expect("inner");
    let outer_wf = r.span("outer.workflow").expect("outer");
    assert!(inner_wf.is_child_of(outer_wf));
}

#[test]
fn begin_inside_an_interaction_span_binds_to_it() {
    let capture = Capture::new();
    capture.run(|| {
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
    let r = capture.recorded();
    // Every update was about evt-b.
    assert_eq!(r.events.len(), 1, "{}", r.render());
    assert_eq!(r.final_updates(), 1);
    let e = r.event_by_id("evt-b").expect("evt-b");
    assert!(e.interaction && e.finished);
    assert_eq!(e.user_id.as_deref(), Some("u-b"));
    assert_eq!(e.event.as_deref(), Some("support_chat"));
    assert_eq!(e.input.as_deref(), Some("question"));
    assert_eq!(e.output.as_deref(), Some("answer"));
    assert_eq!(e.convo_id.as_deref(), Some("c-b"));
    assert_eq!(e.properties["k"], 1);
    let wf = r.span("chat.workflow").expect("the workflow span");
    assert_eq!(
        wf.attr_str("traceloop.association.properties.user_id"),
        Some("u-b")
    );
    assert_eq!(
        wf.attr_str("traceloop.association.properties.event"),
        Some("support_chat")
    );
}

#[test]
fn panic_inside_an_interaction_span_finishes_with_error_and_propagates() {
    let capture = Capture::new();
    let result = capture.run(|| {
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
    let r = capture.recorded();
    assert_eq!(r.final_updates(), 1, "{}", r.render());
    assert_eq!(r.finished_interactions()[0].properties["error"], "panicked");
    assert_eq!(r.spans.len(), 1, "{}", r.render());
    assert!(r.spans[0].error.is_some(), "{:?}", r.spans[0]);
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
    let capture = Capture::new();
    let out = Buf::default();
    let seen = Seen::default();
    let w = out.clone();
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(move || w.clone())
        .with_ansi(false)
        .with_filter(tracing_subscriber::EnvFilter::new("warn"));
    let sub = tracing_subscriber::registry()
        .with(raindrop::layer_for(capture.client()))
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
    let r = capture.recorded();
    assert_eq!(r.final_updates(), 1, "{}", r.render());
    assert_eq!(r.spans.len(), 2, "{}", r.render());
    assert_eq!(r.spans_named("tool_a.tool").len(), 1);
    assert_eq!(r.spans_named("chat.workflow").len(), 1);
    // Ordinary spans stay visible to other layers; raindrop spans too.
    let seen = seen.0.lock().unwrap().clone();
    assert_eq!(seen, ["chat", "ordinary_span", "deeper", "tool_a"]);
    let printed = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    assert!(printed.contains("warn log, printed"), "{printed}");
    assert!(!printed.contains("info log"), "{printed}");
}

#[test]
fn a_global_warn_filter_disables_raindrop_spans_as_documented() {
    let chat = || {
        tracing::info_span!(
            "chat",
            raindrop.kind = "interaction",
            raindrop.user_id = "u",
            raindrop.input = "q"
        )
    };
    let capture = Capture::new();
    let sub = tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("warn"))
        .with(raindrop::layer_for(capture.client()));
    tracing::subscriber::with_default(sub, || {
        let chat = chat();
        let _in = chat.enter();
        assert!(chat.is_disabled());
        assert!(raindrop::resume_interaction().is_noop());
    });
    let r = capture.recorded();
    assert_eq!(r.requests, 0, "{}", r.render());
    // The same span with an "info" filter is recorded by the same layer.
    let sub = tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("info"))
        .with(raindrop::layer_for(capture.client()));
    tracing::subscriber::with_default(sub, || {
        let chat = chat();
        let _in = chat.enter();
        assert!(!chat.is_disabled());
        assert!(!raindrop::resume_interaction().is_noop());
    });
    let r = capture.recorded();
    assert_eq!(r.final_updates(), 1, "{}", r.render());
    assert_eq!(r.spans_named("chat.workflow").len(), 1);
}

#[test]
fn sdk_diagnostics_and_events_are_ignored() {
    let capture = Capture::new();
    capture.run(|| {
        tracing::error!(target: "raindrop", { raindrop.kind = "interaction" }, "an SDK diagnostic");
        tracing::info!(raindrop.kind = "tool", "an event with a raindrop field");
        tracing::info_span!("ordinary", kind = "interaction").in_scope(|| {});
    });
    let r = capture.recorded();
    assert_eq!(r.requests, 0, "{}", r.render());
    // The same subscriber does record a raindrop span.
    capture.run(|| tracing::info_span!("marked", raindrop.kind = "tool").in_scope(|| {}));
    let r = capture.recorded();
    assert_eq!(r.requests, 1, "{}", r.render());
    assert_eq!(r.spans_named("marked.tool").len(), 1);
}

#[test]
fn resume_across_threads_given_the_span() {
    let capture = Capture::new();
    let dispatch = capture.dispatch();
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
    let r = capture.recorded();
    let e = r.event_by_id("evt-thread").expect("evt-thread");
    for n in 0..4 {
        assert_eq!(e.properties[&format!("thread_{n}")], n, "{e:?}");
    }
}

#[test]
fn properties_and_text_caps() {
    let capture = Capture::with_options(ClientOptions::default().max_text_field_chars(40));
    let long = "x".repeat(100);
    capture.run(|| {
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
    let r = capture.recorded();
    let e = r.event_by_id("evt-props").expect("evt-props");
    assert_eq!(e.properties["region"], "eu", "{e:?}");
    assert_eq!(e.properties["tier"], "pro");
    assert_eq!(e.properties["n"], 3);
    let tool = r.span("fetch.tool").expect("the tool span");
    let input = tool.attr_str("traceloop.entity.input").unwrap();
    assert_eq!(input.chars().count(), 40);
    assert!(input.ends_with(raindrop::TRUNCATION_MARKER));
    // Each keeps its OTLP type: a string, an intValue (reads as i64), a
    // boolValue, a doubleValue (reads as f64).
    let p = |k: &str| &tool.attributes[&format!("traceloop.association.properties.{k}")];
    assert_eq!(p("provider"), "bing");
    assert!(p("attempt").is_i64());
    assert_eq!(p("attempt"), 2);
    assert_eq!(p("ok"), true);
    assert!(p("ratio").is_f64());
    assert_eq!(p("ratio"), 0.25);
    assert_eq!(p("user_id"), "u");
    assert_eq!(p("event_id"), "evt-props");
}

#[test]
fn spawned_instrumented_futures_resume_the_interaction() {
    use tracing::instrument::WithSubscriber;
    use tracing::Instrument;
    let capture = Capture::new();
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
        .with_subscriber(capture.dispatch()),
    );
    assert_eq!(instrumented.as_deref(), Some("evt-spawn"));
    assert!(bare);
    let r = capture.recorded();
    assert_eq!(r.final_updates(), 1, "{}", r.render());
    let tool = r.span("sub_tool.tool").expect("the tool span");
    assert_eq!(tool.event_id.as_deref(), Some("evt-spawn"));
    let wf = r.span("chat.workflow").expect("the workflow span");
    assert!(tool.is_child_of(wf));
}

/// An ERROR event inside a raindrop span marks that span's status error
/// (the nearest raindrop span, through ordinary spans; the first event
/// wins); WARN events and the SDK's own diagnostics do not; an interaction
/// still finishes with its own outcome. Same with the bare layer.
#[test]
fn error_events_mark_the_enclosing_raindrop_span_failed() {
    for bare in [false, true] {
        let capture = Capture::new();
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
            let sub =
                tracing_subscriber::registry().with(raindrop::RaindropLayer::new(capture.client()));
            tracing::subscriber::with_default(sub, run);
        } else {
            capture.run(run);
        }
        let r = capture.recorded();
        let flaky = r.spans_named("flaky.tool");
        assert_eq!(flaky.len(), 1, "bare={bare}");
        assert_eq!(
            flaky[0].error.as_deref(),
            Some("connection reset by peer"),
            "bare={bare}: {:?}",
            flaky[0]
        );
        let fine = r.spans_named("fine.tool");
        assert_eq!(fine.len(), 1, "bare={bare}");
        assert_eq!(fine[0].error, None, "bare={bare}: {:?}", fine[0]);
        let wf = r.spans_named("chat.workflow");
        assert_eq!(wf.len(), 1, "bare={bare}");
        assert_eq!(
            wf[0].error, None,
            "the event was in the tool, not the workflow"
        );
        assert_eq!(r.final_updates(), 1, "bare={bare}: {}", r.render());
        let f = r.finished_interactions()[0];
        assert_eq!(f.output.as_deref(), Some("recovered"));
        assert!(f.properties.get("error").is_none(), "{f:?}");
    }
}

/// A subscriber that is not `tracing_subscriber::Registry` but implements
/// `LookupSpan`: a wrapper keeping its spans in a registry it does not
/// expose (no downcast to `Registry` reaches it), which counts handles
/// itself and frees a closed span only after the layers' `on_close` ran.
mod wrapped {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use tracing::level_filters::LevelFilter;
    use tracing::span::{Attributes, Id, Record};
    use tracing::subscriber::Interest;
    use tracing::{Event, Metadata, Subscriber};
    use tracing_subscriber::filter::FilterId;
    use tracing_subscriber::registry::{LookupSpan, Registry};

    #[derive(Default)]
    pub struct Wrapper {
        spans: Registry,
        handles: Mutex<HashMap<u64, usize>>,
        /// Closed spans whose layers have been told: freed on the next call.
        closed: Mutex<Vec<Id>>,
    }

    impl Wrapper {
        fn free_closed(&self) {
            let closed = std::mem::take(&mut *self.closed.lock().unwrap());
            for id in closed {
                self.spans.try_close(id);
            }
        }
    }

    impl Subscriber for Wrapper {
        fn register_callsite(&self, m: &'static Metadata<'static>) -> Interest {
            self.spans.register_callsite(m)
        }
        fn max_level_hint(&self) -> Option<LevelFilter> {
            self.spans.max_level_hint()
        }
        fn enabled(&self, m: &Metadata<'_>) -> bool {
            self.spans.enabled(m)
        }
        fn event_enabled(&self, e: &Event<'_>) -> bool {
            self.spans.event_enabled(e)
        }
        fn new_span(&self, a: &Attributes<'_>) -> Id {
            self.free_closed();
            let id = self.spans.new_span(a);
            self.handles.lock().unwrap().insert(id.into_u64(), 1);
            id
        }
        fn record(&self, id: &Id, r: &Record<'_>) {
            self.spans.record(id, r)
        }
        fn record_follows_from(&self, id: &Id, follows: &Id) {
            self.spans.record_follows_from(id, follows)
        }
        fn event(&self, e: &Event<'_>) {
            self.spans.event(e)
        }
        fn enter(&self, id: &Id) {
            self.spans.enter(id)
        }
        fn exit(&self, id: &Id) {
            self.spans.exit(id)
        }
        fn clone_span(&self, id: &Id) -> Id {
            *self
                .handles
                .lock()
                .unwrap()
                .entry(id.into_u64())
                .or_default() += 1;
            id.clone()
        }
        fn try_close(&self, id: Id) -> bool {
            self.free_closed();
            let mut handles = self.handles.lock().unwrap();
            let Some(n) = handles.get_mut(&id.into_u64()) else {
                return false;
            };
            *n -= 1;
            if *n > 0 {
                return false;
            }
            handles.remove(&id.into_u64());
            self.closed.lock().unwrap().push(id);
            true
        }
        fn current_span(&self) -> tracing_core::span::Current {
            self.spans.current_span()
        }
    }

    impl<'a> LookupSpan<'a> for Wrapper {
        type Data = <Registry as LookupSpan<'a>>::Data;
        fn span_data(&'a self, id: &Id) -> Option<Self::Data> {
            self.spans.span_data(id)
        }
        // Per-layer filters (the raindrop layer's) need the registry's.
        fn register_filter(&mut self) -> FilterId {
            self.spans.register_filter()
        }
    }
}

#[test]
fn a_lookup_span_subscriber_that_is_not_registry_records_interactions() {
    use raindrop::RaindropSpanExt as _;
    let capture = Capture::new();
    let subscriber = wrapped::Wrapper::default().with(raindrop::layer_for(capture.client()));
    let mut event_id = None;
    tracing::subscriber::with_default(subscriber, || {
        let chat = tracing::info_span!(
            "chat",
            raindrop.kind = "interaction",
            raindrop.user_id = "u-wrapped",
            raindrop.output = Empty,
        );
        let _in = chat.enter();
        let resumed = raindrop::resume_interaction();
        assert!(!resumed.is_noop(), "resume_interaction() inside the span");
        resumed.set_property("stage", "wrapped");
        event_id = resumed.event_id().map(str::to_owned);
        let tool = tracing::info_span!("lookup", raindrop.kind = "tool");
        tool.in_scope(|| {
            assert_eq!(
                raindrop::resume_interaction().event_id(),
                event_id.as_deref()
            );
            tool.set_input("q");
            tool.set_output("a");
        });
        drop(tool);
        chat.record("raindrop.output", "done");
    });
    let r = capture.recorded();
    let finished = r.finished_interactions();
    assert_eq!(finished.len(), 1, "{}", r.render());
    let p = finished[0];
    assert_eq!(Some(p.event_id.as_str()), event_id.as_deref());
    assert_eq!(p.user_id.as_deref(), Some("u-wrapped"));
    assert_eq!(p.output.as_deref(), Some("done"));
    assert_eq!(p.properties["stage"], "wrapped");
    let tool = r.span("lookup.tool").expect("the tool span");
    assert_eq!(tool.attr_str("traceloop.entity.input"), Some("q"));
    assert_eq!(tool.attr_str("traceloop.entity.output"), Some("a"));
    assert_eq!(
        tool.attr_str("traceloop.association.properties.event_id"),
        event_id.as_deref()
    );
}

/// Sampling is decided once, by the interaction's handle: the layer builds
/// no record for the spans of an interaction `sample_rate` leaves out, and
/// counts each of them as sampled out.
#[test]
fn spans_of_unsampled_interactions_are_counted_not_sent() {
    use raindrop::{DropReason, ItemKind};
    let capture = Capture::with_options(ClientOptions::default().sample_rate(0.5));
    let mut kept = Vec::new();
    let mut left_out = 0u64;
    capture.run(|| {
        for n in 0..40 {
            let chat = tracing::info_span!(
                "chat",
                raindrop.kind = "interaction",
                raindrop.user_id = "u-s",
                raindrop.event_id = format!("sampled-{n}").as_str(),
            );
            chat.in_scope(|| {
                let i = raindrop::resume_interaction();
                if i.is_sampled() {
                    kept.push(i.event_id().unwrap().to_owned());
                } else {
                    left_out += 1;
                }
                tracing::info_span!("step", raindrop.kind = "tool").in_scope(|| {});
            });
        }
    });
    assert!(
        left_out > 0 && !kept.is_empty(),
        "40 ids split by a 0.5 rate"
    );
    let r = capture.recorded();
    assert_eq!(r.spans.len(), 2 * kept.len(), "{}", r.render());
    for s in &r.spans {
        let id = s.attr_str("traceloop.association.properties.event_id");
        assert!(kept.iter().any(|k| Some(k.as_str()) == id), "{id:?}");
    }
    let stats = capture.client().stats();
    assert_eq!(
        stats.lost(ItemKind::Span, DropReason::SampledOut),
        2 * left_out,
        "{stats:?}"
    );
}
