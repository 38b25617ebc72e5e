//! Model calls: rig's GenAI spans, genai-style fields, hand-written LLM spans
//! and streamed answers, checked at a capture server on 127.0.0.1.
//!
//! The tests run one at a time (`serial()`): in parallel, rig's callsites,
//! shared by every test, were now and then missed by one test's scoped
//! subscriber (about 1 run in 3).

// The example includes `examples/common` itself.
#![allow(dead_code, clippy::duplicate_mod)]

#[path = "../examples/rig_agent.rs"]
mod rig_example;

use std::time::Duration;

use raindrop::testing::Recorded;
use raindrop::{Client, ClientOptions, RaindropSpanExt};
use raindrop_test_support::spans::{attr, attr_int, attr_str, kind};
use raindrop_test_support::{block_on_in_time, serial, Capture};
use rig_example::openai_mock;
use serde_json::Value;
use tracing::field::Empty;
use tracing_subscriber::prelude::*;

fn client_with(cap: &Capture, opts: impl FnOnce(ClientOptions) -> ClientOptions) -> Client {
    Client::new(opts(
        ClientOptions::default()
            .write_key("rk_test_genai")
            .endpoint(cap.endpoint())
            .upload_interval(Duration::from_millis(50)),
    ))
    .unwrap()
}

fn client(cap: &Capture) -> Client {
    client_with(cap, |o| o)
}

fn flush(c: &Client) {
    assert!(c.flush(Duration::from_secs(20)), "flush timed out");
}

/// The interaction `event_id` as the backend would merge its partials:
/// objects deep-merged, scalars overwritten in order.
/// What the capture server accepted, read back by the SDK's decoder
/// (interaction updates merged by event id, as the backend does).
fn recorded(cap: &Capture) -> Recorded {
    let mut rec = Recorded::default();
    cap.each_accepted(|route, body| rec.push(route, body));
    rec
}

/// Runs the rig example's interaction against the mock model with the
/// raindrop layer of `c` as the default subscriber (a current-thread
/// runtime, so the default holds for every task).
fn run_rig_example(c: &Client) {
    let sub = tracing_subscriber::registry().with(raindrop::layer_for(c));
    let _default = tracing::subscriber::set_default(sub);
    block_on_in_time(Duration::from_secs(30), rig_example::run()).expect("agent answers");
}

#[test]
fn rig_agent_interaction_llm_and_tool_spans_are_filled_from_gen_ai_spans() {
    let _serial = serial();
    let cap = Capture::start(vec![]);
    let c = client(&cap);
    run_rig_example(&c);
    flush(&c);

    let rec = recorded(&cap);
    let events = rec.interactions();
    assert_eq!(events.len(), 1, "one interaction: {events:?}");
    let ev = events[0];
    let id = ev.event_id.as_str();
    assert_eq!(ev.event.as_deref(), Some("math_help"));
    assert!(ev.finished);
    // Nothing set by hand (`skip_all`, the fn returns `()`): all from rig's spans.
    assert_eq!(ev.model.as_deref(), Some(openai_mock::RESPONSE_MODEL));
    assert_eq!(ev.input.as_deref(), Some("What is 2 + 3?"));
    assert_eq!(ev.output.as_deref(), Some(openai_mock::ANSWER));
    let [(i1, o1), (i2, o2)] = openai_mock::USAGE;
    assert_eq!(ev.properties["input_tokens"], i1 + i2);
    assert_eq!(ev.properties["output_tokens"], o1 + o2);
    assert_eq!(ev.properties["total_tokens"], i1 + i2 + o1 + o2);
    assert_eq!(ev.properties["llm_calls"], 2);

    let all = cap.spans();
    let root = all
        .iter()
        .find(|s| s["name"] == "math_help.workflow")
        .expect("interaction span");
    let llm: Vec<&Value> = all
        .iter()
        .filter(|s| kind(s).as_deref() == Some("llm"))
        .collect();
    assert_eq!(llm.len(), 2, "two model calls: {all:#?}");
    if std::env::var_os("GENAI_DUMP").is_some() {
        eprintln!("{llm:#?}");
    }
    for s in &llm {
        assert_eq!(s["traceId"], root["traceId"]);
        assert_eq!(
            attr_str(s, "traceloop.association.properties.event_id").as_deref(),
            Some(id)
        );
        assert_eq!(
            attr_str(s, "ai.telemetry.metadata.raindrop.eventId").as_deref(),
            Some(id)
        );
        assert_eq!(
            attr_str(s, "traceloop.association.properties.user_id").as_deref(),
            Some("user-rig")
        );
        assert_eq!(
            attr_str(s, "ai.operationId").as_deref(),
            Some("ai.generateText")
        );
        assert_eq!(
            attr_str(s, "gen_ai.response.model").as_deref(),
            Some(openai_mock::RESPONSE_MODEL)
        );
        assert_eq!(
            attr_str(s, "gen_ai.request.model").as_deref(),
            Some("gpt-mock")
        );
        assert_eq!(
            attr_str(s, "ai.model.id").as_deref(),
            Some(openai_mock::RESPONSE_MODEL)
        );
        assert_eq!(attr_str(s, "ai.model.provider").as_deref(), Some("openai"));
        assert_eq!(attr_str(s, "gen_ai.system").as_deref(), Some("openai"));
        // System instructions first, then the user's question.
        assert_eq!(
            attr_str(s, "gen_ai.prompt.0.role").as_deref(),
            Some("system")
        );
        assert_eq!(attr_str(s, "gen_ai.prompt.1.role").as_deref(), Some("user"));
        assert_eq!(
            attr_str(s, "gen_ai.prompt.1.content").as_deref(),
            Some("What is 2 + 3?")
        );
        let msgs: Value =
            serde_json::from_str(&attr_str(s, "ai.prompt.messages").expect("messages")).unwrap();
        assert_eq!(msgs[1]["content"], "What is 2 + 3?");
        assert_eq!(
            attr_str(s, "gen_ai.completion.0.role").as_deref(),
            Some("assistant")
        );
        // Pass-through rig names are normalised, not copied.
        assert!(attr(s, "gen_ai.input.messages").is_none());
        assert!(attr(s, "traceloop.entity.input").is_none());
    }
    // In call order: the tool call, then the answer.
    let mut llm = llm;
    llm.sort_by_key(|s| {
        s["startTimeUnixNano"]
            .as_str()
            .unwrap()
            .parse::<u128>()
            .unwrap()
    });
    assert_eq!(attr_int(llm[0], "gen_ai.usage.input_tokens"), Some(i1));
    assert_eq!(attr_int(llm[0], "gen_ai.usage.output_tokens"), Some(o1));
    assert_eq!(attr_int(llm[1], "gen_ai.usage.input_tokens"), Some(i2));
    assert_eq!(attr_int(llm[1], "gen_ai.usage.output_tokens"), Some(o2));
    assert!(attr_str(llm[0], "gen_ai.completion.0.content")
        .unwrap()
        .contains("call_add_1"));
    assert_eq!(
        attr_str(llm[1], "ai.response.text").as_deref(),
        Some(openai_mock::ANSWER)
    );
    // The second call carries the tool result as a message.
    assert!(attr_str(llm[1], "ai.prompt.messages")
        .unwrap()
        .contains("tool_call_response"));

    let tool = all
        .iter()
        .find(|s| kind(s).as_deref() == Some("tool"))
        .expect("tool span");
    assert_eq!(tool["name"], "add.tool");
    assert_eq!(
        attr_str(tool, "ai.operationId").as_deref(),
        Some("ai.toolCall")
    );
    assert_eq!(
        attr_str(tool, "traceloop.entity.name").as_deref(),
        Some("add")
    );
    assert_eq!(
        attr_str(tool, "gen_ai.tool.call.id").as_deref(),
        Some("call_add_1")
    );
    let args: Value =
        serde_json::from_str(&attr_str(tool, "traceloop.entity.input").unwrap()).unwrap();
    assert_eq!(args, serde_json::json!({"a": 2, "b": 3}));
    assert_eq!(
        attr_str(tool, "traceloop.entity.output").as_deref(),
        Some("5")
    );
    assert_eq!(
        attr_str(tool, "traceloop.association.properties.event_id").as_deref(),
        Some(id)
    );
    assert_eq!(tool["status"]["code"], 1);
}

#[test]
fn what_the_user_sets_wins_over_the_model_calls() {
    let _serial = serial();
    let cap = Capture::start(vec![]);
    let c = client(&cap);
    let sub = tracing_subscriber::registry().with(raindrop::layer_for(&c));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tracing::subscriber::with_default(sub, || {
        rt.block_on(async {
            let base = openai_mock::start().await;
            let agent = rig_example::agent(&base);
            let span = tracing::info_span!(
                "chat",
                raindrop.kind = "interaction",
                raindrop.user_id = "u-1",
                raindrop.model = "my-router",
            );
            async {
                tracing::Span::current().set_output("my own answer");
                raindrop::resume_interaction().set_input("my own input");
                let _ = agent.prompt("What is 2 + 3?").await.expect("answer");
            }
            .instrument_in(span)
            .await;
        })
    });
    flush(&c);
    let rec = recorded(&cap);
    let events = rec.interactions();
    assert_eq!(events.len(), 1);
    let ev = events[0];
    assert_eq!(ev.output.as_deref(), Some("my own answer"));
    assert_eq!(ev.input.as_deref(), Some("my own input"));
    assert_eq!(ev.model.as_deref(), Some("my-router"));
    // Token totals still come from the calls.
    assert!(ev.properties["input_tokens"].as_i64().unwrap() > 0);
}

/// `Instrument` by another name, to keep the import list short.
trait InstrumentIn: std::future::Future + Sized {
    fn instrument_in(self, span: tracing::Span) -> tracing::instrument::Instrumented<Self> {
        tracing::Instrument::instrument(self, span)
    }
}
impl<F: std::future::Future> InstrumentIn for F {}

#[test]
fn with_content_capture_off_no_prompt_or_completion_text_leaves() {
    let _serial = serial();
    let cap = Capture::start(vec![]);
    let c = client_with(&cap, |o| o.capture_content(false));
    run_rig_example(&c);
    flush(&c);
    let rec = recorded(&cap);
    let events = rec.interactions();
    assert_eq!(events.len(), 1, "{:#?}", cap.requests());
    let ev = events[0];
    // No update carries an input or output key at all.
    for p in cap.delivered("events/track_partial") {
        assert!(p["ai_data"].get("input").is_none(), "{p}");
        assert!(p["ai_data"].get("output").is_none(), "{p}");
    }
    // Not content: the model and token totals stay.
    assert_eq!(ev.model.as_deref(), Some(openai_mock::RESPONSE_MODEL));
    assert!(ev.properties["output_tokens"].as_i64().unwrap() > 0);
    let all = cap.spans();
    assert!(all.iter().any(|s| kind(s).as_deref() == Some("llm")));
    for s in &all {
        for a in s["attributes"].as_array().unwrap() {
            let k = a["key"].as_str().unwrap();
            assert!(
                !(k.starts_with("gen_ai.prompt.")
                    || k.starts_with("gen_ai.completion.")
                    || k.starts_with("ai.prompt")
                    || k == "ai.response.text"
                    || k.starts_with("traceloop.entity.input")
                    || k.starts_with("traceloop.entity.output")),
                "content attribute {k} sent with capture off"
            );
        }
    }
    // Nothing anywhere in the bodies mentions the question or the answer.
    for r in cap.requests() {
        let raw = String::from_utf8_lossy(&r.raw);
        assert!(!raw.contains("2 + 3"), "{raw}");
    }
}

#[test]
fn hand_written_llm_span_and_genai_style_fields_are_normalised() {
    let _serial = serial();
    let cap = Capture::start(vec![]);
    let c = client(&cap);
    let sub = tracing_subscriber::registry().with(raindrop::layer_for(&c));
    tracing::subscriber::with_default(sub, || {
        let chat = tracing::info_span!(
            "chat",
            raindrop.kind = "interaction",
            raindrop.user_id = "u-2"
        );
        let _in = chat.enter();
        // A hand-written model call.
        let llm = tracing::info_span!(
            "summarise",
            raindrop.kind = "llm",
            raindrop.model = "claude-mock",
            raindrop.input = "Summarise: the sky is blue.",
            raindrop.output = Empty,
            gen_ai.provider.name = "Anthropic",
            gen_ai.usage.input_tokens = Empty,
            gen_ai.usage.output_tokens = Empty,
        );
        llm.record("raindrop.output", "Blue sky.");
        llm.record("gen_ai.usage.input_tokens", 11u64);
        llm.record("gen_ai.usage.output_tokens", 3u64);
        drop(llm);
        // What genai's `otel` feature writes: OpenAI-style messages and its
        // own name for reasoning tokens.
        let g = tracing::info_span!(
            "genai.chat",
            gen_ai.operation.name = "chat",
            gen_ai.system = "openai",
            gen_ai.request.model = "gpt-mock",
            gen_ai.response.model = Empty,
            gen_ai.input.messages = r#"[{"role":"user","content":"second question"}]"#,
            gen_ai.output.messages = Empty,
            gen_ai.usage.input_tokens = 5i64,
            gen_ai.usage.output_tokens = 7i64,
            gen_ai.usage.reasoning.output_tokens = 4i64,
            gen_ai.response.finish_reasons = Empty,
        );
        g.record("gen_ai.response.model", "gpt-mock-2");
        g.record(
            "gen_ai.output.messages",
            r#"[{"role":"assistant","content":"second answer"}]"#,
        );
        g.record("gen_ai.response.finish_reasons", r#"["stop"]"#);
        drop(g);
        // An embedding call: exported, but it does not fill the interaction.
        let e = tracing::info_span!(
            "embeddings",
            gen_ai.operation.name = "embeddings",
            gen_ai.request.model = "embed-mock",
            gen_ai.usage.input_tokens = 100i64,
        );
        drop(e);
    });
    flush(&c);
    let all = cap.spans();
    let hand = all
        .iter()
        .find(|s| s["name"] == "summarise.llm")
        .expect("llm span");
    assert_eq!(
        attr_str(hand, "ai.model.id").as_deref(),
        Some("claude-mock")
    );
    assert_eq!(
        attr_str(hand, "gen_ai.response.model").as_deref(),
        Some("claude-mock")
    );
    assert_eq!(
        attr_str(hand, "ai.model.provider").as_deref(),
        Some("anthropic")
    );
    assert_eq!(
        attr_str(hand, "ai.prompt").as_deref(),
        Some("Summarise: the sky is blue.")
    );
    assert_eq!(
        attr_str(hand, "gen_ai.prompt.0.content").as_deref(),
        Some("Summarise: the sky is blue.")
    );
    assert_eq!(
        attr_str(hand, "ai.response.text").as_deref(),
        Some("Blue sky.")
    );
    assert_eq!(attr_int(hand, "gen_ai.usage.input_tokens"), Some(11));
    assert_eq!(attr_int(hand, "gen_ai.usage.output_tokens"), Some(3));
    assert!(attr_str(hand, "traceloop.association.properties.event_id").is_some());

    let g = all
        .iter()
        .find(|s| s["name"] == "genai.chat.llm")
        .expect("genai span");
    assert_eq!(
        attr_str(g, "gen_ai.response.model").as_deref(),
        Some("gpt-mock-2")
    );
    assert_eq!(
        attr_str(g, "gen_ai.request.model").as_deref(),
        Some("gpt-mock")
    );
    assert_eq!(attr_int(g, "gen_ai.usage.reasoning_tokens"), Some(4));
    assert!(attr(g, "gen_ai.usage.reasoning.output_tokens").is_none());
    assert_eq!(
        attr_str(g, "gen_ai.prompt.0.content").as_deref(),
        Some("second question")
    );
    assert_eq!(
        attr_str(g, "ai.response.text").as_deref(),
        Some("second answer")
    );

    let e = all
        .iter()
        .find(|s| s["name"] == "embeddings.llm")
        .expect("embedding span");
    assert_eq!(attr_str(e, "ai.operationId").as_deref(), Some("ai.embed"));
    assert_eq!(attr_int(e, "gen_ai.usage.input_tokens"), Some(100));

    // The interaction: model of the last call, input of the first, output of the last.
    let rec = recorded(&cap);
    let ev = rec.interactions()[0];
    assert_eq!(ev.model.as_deref(), Some("gpt-mock-2"));
    assert_eq!(ev.input.as_deref(), Some("Summarise: the sky is blue."));
    assert_eq!(ev.output.as_deref(), Some("second answer"));
    assert_eq!(ev.properties["input_tokens"], 16);
    assert_eq!(ev.properties["reasoning_tokens"], 4);
}

/// Traceloop's indexed prompt and single completion fields (what the
/// OpenTelemetry exporter reads too) fill the model span and the interaction.
#[test]
fn traceloop_indexed_prompt_fields_are_read() {
    let _serial = serial();
    let cap = Capture::start(vec![]);
    let c = client(&cap);
    let sub = tracing_subscriber::registry().with(raindrop::layer_for(&c));
    tracing::subscriber::with_default(sub, || {
        let chat = tracing::info_span!(
            "chat",
            raindrop.kind = "interaction",
            raindrop.user_id = "u-3"
        );
        let _in = chat.enter();
        drop(tracing::info_span!(
            "openai.chat",
            gen_ai.request.model = "gpt-mock",
            "gen_ai.prompt.1.role" = "user",
            "gen_ai.prompt.1.content" = "what is blue?",
            "gen_ai.prompt.0.role" = "system",
            "gen_ai.prompt.0.content" = "be brief",
            "gen_ai.completion.0.content" = "the sky",
        ));
    });
    flush(&c);
    let all = cap.spans();
    let llm = all
        .iter()
        .find(|s| s["name"] == "openai.chat.llm")
        .expect("llm span");
    let messages: Value =
        serde_json::from_str(&attr_str(llm, "ai.prompt.messages").expect("prompt")).unwrap();
    assert_eq!(messages[0]["role"], "system");
    assert_eq!(messages[1]["content"], "what is blue?");
    assert_eq!(
        attr_str(llm, "ai.response.text").as_deref(),
        Some("the sky")
    );
    let rec = recorded(&cap);
    let ev = rec.interactions()[0];
    assert_eq!(ev.input.as_deref(), Some("what is blue?"));
    assert_eq!(ev.output.as_deref(), Some("the sky"));
}

/// `set_tools` on the current interaction: its GenAI model spans carry
/// the catalog as `ai.prompt.tools`; its other spans do not.
#[test]
fn model_spans_carry_the_tool_catalog_set_on_the_interaction() {
    let _serial = serial();
    let cap = Capture::start(vec![]);
    let c = client(&cap);
    let sub = tracing_subscriber::registry().with(raindrop::layer_for(&c));
    tracing::subscriber::with_default(sub, || {
        let chat = tracing::info_span!(
            "chat",
            raindrop.kind = "interaction",
            raindrop.user_id = "u-3"
        );
        let _in = chat.enter();
        raindrop::resume_interaction().set_tools([serde_json::json!({
            "type": "function",
            "function": {"name": "add", "description": "Adds", "parameters": {"type": "object"}}
        })]);
        let g = tracing::info_span!(
            "genai.chat",
            gen_ai.operation.name = "chat",
            gen_ai.request.model = "gpt-mock",
            gen_ai.input.messages = r#"[{"role":"user","content":"1+1?"}]"#,
        );
        drop(g);
        raindrop::resume_interaction().set_output("2");
    });
    flush(&c);
    let spans = cap.spans();
    let llm = spans
        .iter()
        .find(|s| kind(s).as_deref() == Some("llm"))
        .expect("an llm span");
    let tools = attr(llm, "ai.prompt.tools").expect("ai.prompt.tools");
    let first = tools["arrayValue"]["values"][0]["stringValue"]
        .as_str()
        .unwrap();
    let first: Value = serde_json::from_str(first).unwrap();
    assert_eq!(
        first,
        serde_json::json!({"type": "function", "name": "add", "description": "Adds", "inputSchema": {"type": "object"}})
    );
    assert_eq!(
        attr_str(llm, "ai.prompt.tools.source").as_deref(),
        Some("interaction")
    );
    for s in spans.iter().filter(|s| kind(s).as_deref() != Some("llm")) {
        assert!(attr(s, "ai.prompt.tools").is_none(), "{s}");
    }
}

#[test]
fn gen_ai_spans_outside_an_interaction_are_ignored() {
    let _serial = serial();
    let cap = Capture::start(vec![]);
    let c = client(&cap);
    let sub = tracing_subscriber::registry().with(raindrop::layer_for(&c));
    tracing::subscriber::with_default(sub, || {
        let g = tracing::info_span!(
            "chat",
            gen_ai.operation.name = "chat",
            gen_ai.request.model = "gpt-mock",
        );
        let _in = g.enter();
        // A marked span inside it is still tracked on its own.
        let t = tracing::info_span!("after", raindrop.kind = "task");
        drop(t);
    });
    flush(&c);
    let names: Vec<Value> = cap.spans().iter().map(|s| s["name"].clone()).collect();
    assert_eq!(names, vec![Value::from("after.task")]);
}

#[test]
fn a_streamed_answer_finishes_the_interaction_with_the_whole_text() {
    let _serial = serial();
    use raindrop::stream::text_stream;
    let cap = Capture::start(vec![]);
    let c = client(&cap);
    let sub = tracing_subscriber::registry().with(raindrop::layer_for(&c));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tracing::subscriber::with_default(sub, || {
        rt.block_on(async {
            // Read to the end.
            let span = tracing::info_span!(
                "stream_chat",
                raindrop.kind = "interaction",
                raindrop.user_id = "u-s"
            );
            let chunks = futures::stream::iter(["Hel", "lo, ", "world."].map(String::from));
            let mut s = text_stream(span, chunks);
            let mut seen = String::new();
            while let Some(c) = futures::StreamExt::next(&mut s).await {
                seen.push_str(&c);
            }
            assert_eq!(seen, "Hello, world.");
            drop(s);
            // Dropped half way (the client went away).
            let span = tracing::info_span!(
                "stream_chat",
                raindrop.kind = "interaction",
                raindrop.user_id = "u-d"
            );
            let chunks = futures::stream::iter(["part one, ", "part two"].map(String::from));
            let mut s = text_stream(span, chunks);
            let _ = futures::StreamExt::next(&mut s).await;
            drop(s);
        })
    });
    flush(&c);
    let rec = recorded(&cap);
    let events = rec.interactions();
    assert_eq!(events.len(), 2);
    let of = |user: &str| {
        *events
            .iter()
            .find(|e| e.user_id.as_deref() == Some(user))
            .unwrap()
    };
    let whole = of("u-s");
    assert!(whole.finished);
    assert_eq!(whole.output.as_deref(), Some("Hello, world."));
    assert!(whole.properties["time_to_first_chunk_ms"].is_i64());
    assert!(whole.properties.get("error").is_none());
    let cut = of("u-d");
    assert!(cut.finished);
    assert_eq!(cut.output.as_deref(), Some("part one, "));
    assert_eq!(cut.properties["error"], "cancelled");
}

#[test]
fn rig_example_runs_offline_on_the_local_sink_and_its_tree_shows_the_calls() {
    let _serial = serial();
    let path =
        std::env::temp_dir().join(format!("raindrop-genai-rig-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let c =
        Client::new(ClientOptions::default().local_sink(raindrop::LocalSink::File(path.clone())))
            .unwrap();
    run_rig_example(&c);
    let report = c.shutdown(Duration::from_secs(10));
    assert!(report.completed, "{report:?}");
    assert_eq!(report.stats.dropped_total(), 0, "{:?}", report.stats);
    let rec = raindrop_view::Recorded::read(&path).expect("sink file written");
    let ev = rec.event("math_help").expect("the interaction");
    assert!(ev.finished);
    assert_eq!(ev.model.as_deref(), Some(openai_mock::RESPONSE_MODEL));
    assert_eq!(ev.input.as_deref(), Some("What is 2 + 3?"));
    assert_eq!(ev.output.as_deref(), Some(openai_mock::ANSWER));
    let tree = rec.report();
    assert_eq!(tree.matches("llm chat.llm").count(), 2, "{tree}");
    assert!(tree.contains("tool add.tool"), "{tree}");
    let _ = std::fs::remove_file(path);
}
