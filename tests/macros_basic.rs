//! `#[raindrop::interaction]`, `#[raindrop::task]` and `#[raindrop::tool]`:
//! what they record, read back through `raindrop::testing`.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::Json;
use raindrop::testing::Capture;
use serde::Serialize;
use serde_json::{json, Value};
use tracing::instrument::WithSubscriber;
use tracing::Instrument;
use tracing_subscriber::prelude::*;

#[derive(Serialize, Debug)]
struct Hits {
    hits: u32,
}

#[raindrop::tool("kb_lookup")]
fn lookup(query: &str) -> Hits {
    raindrop::resume_interaction().set_property("kb_hits", 2);
    Hits {
        hits: query.len() as u32,
    }
}

#[raindrop::task]
fn compose(q: &str, hits: &Hits) -> String {
    raindrop::resume_interaction().set_property("composer", "v1");
    format!("answer to {q} with {} hits", hits.hits)
}

#[raindrop::interaction(
    "support_flow",
    user_id = "user-tr-1",
    convo_id = "convo-tr-1",
    event_id = "evt-tr-1"
)]
fn handle(q: &str) -> String {
    let hits = lookup(q);
    compose(q, &hits)
}

#[test]
fn sync_interaction_with_tool_and_task() {
    let capture = Capture::new();
    let out = capture.run(|| handle("reset password?"));
    assert_eq!(out, "answer to reset password? with 15 hits");
    let r = capture.recorded();
    assert_eq!(r.finished_interactions().len(), 1, "{}", r.render());
    assert_eq!(r.final_updates(), 1);
    let m = r.event_by_id("evt-tr-1").expect("the interaction");
    assert!(m.interaction && m.finished);
    assert_eq!(m.user_id.as_deref(), Some("user-tr-1"));
    assert_eq!(m.event.as_deref(), Some("support_flow"));
    assert_eq!(m.input.as_deref(), Some("reset password?"));
    assert_eq!(m.output.as_deref(), Some(out.as_str()));
    assert_eq!(m.convo_id.as_deref(), Some("convo-tr-1"));
    assert_eq!(m.properties["kb_hits"], 2);
    assert_eq!(m.properties["composer"], "v1");

    assert_eq!(r.spans.len(), 3, "{}", r.render());
    let tool = r.span("kb_lookup.tool").expect("the tool span");
    let task = r.span("compose.task").expect("the task span");
    let wf = r.span("support_flow.workflow").expect("the workflow span");
    assert_eq!(tool.input.as_deref(), Some("reset password?"));
    assert_eq!(tool.output.as_deref(), Some(r#"{"hits":15}"#));
    assert_eq!(
        task.input.as_deref(),
        Some(r#"{"hits":{"hits":15},"q":"reset password?"}"#)
    );
    assert_eq!(task.output.as_deref(), Some(out.as_str()));
    for s in [tool, task] {
        assert_eq!(s.event_id.as_deref(), Some("evt-tr-1"));
        assert_eq!(
            s.attr_str("traceloop.association.properties.user_id"),
            Some("user-tr-1")
        );
        assert_eq!(s.attr_str("traceloop.workflow.name"), Some("support_flow"));
        assert!(s.is_child_of(wf), "{s:?} under {wf:?}");
    }
}

#[derive(Debug)]
struct MyError(&'static str);
impl fmt::Display for MyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "my error: {}", self.0)
    }
}
impl std::error::Error for MyError {}

#[raindrop::tool(skip_all)]
fn parse_number(s: &str) -> Result<i64, std::num::ParseIntError> {
    s.trim().parse::<i64>()
}

#[raindrop::interaction(name = "calc", user_id = "u-calc", event_id = format!("evt-{}", id))]
fn calc(id: u32, text: &str) -> Result<i64, Box<dyn std::error::Error>> {
    if text.is_empty() {
        return Err(Box::new(MyError("empty")));
    }
    let n = parse_number(text)?;
    Ok(n * 2)
}

#[test]
fn result_err_early_return_and_question_mark() {
    let capture = Capture::new();
    capture.run(|| {
        assert_eq!(calc(1, "21").unwrap(), 42);
        assert!(calc(2, "").is_err());
        assert!(calc(3, "x").is_err());
    });
    let r = capture.recorded();
    assert_eq!(r.finished_interactions().len(), 3, "{}", r.render());
    assert_eq!(r.final_updates(), 3);
    let m1 = r.event_by_id("evt-1").expect("evt-1");
    assert_eq!(m1.output.as_deref(), Some("42"));
    assert!(m1.properties.get("error").is_none(), "{m1:?}");
    let m2 = r.event_by_id("evt-2").expect("evt-2");
    assert_eq!(m2.properties["error"], "my error: empty");
    let m3 = r.event_by_id("evt-3").expect("evt-3");
    assert_eq!(m3.properties["error"], "invalid digit found in string");
    let tools = r.spans_named("parse_number.tool");
    assert_eq!(tools.len(), 2, "{}", r.render());
    let failed = tools
        .iter()
        .find(|s| s.error.is_some())
        .expect("the failed call");
    assert_eq!(
        failed.error.as_deref(),
        Some("invalid digit found in string")
    );
    assert!(failed.input.is_none(), "skip_all");
    assert_eq!(failed.event_id.as_deref(), Some("evt-3"));
}

#[raindrop::interaction("boom", user_id = "u-boom", event_id = "evt-boom", input = "why")]
fn explode(_x: u32) -> u32 {
    panic!("kaboom")
}

#[test]
fn panic_finishes_with_error_and_propagates_unchanged() {
    let capture = Capture::new();
    let result = capture.run(|| std::panic::catch_unwind(|| explode(1)));
    let payload = result.unwrap_err();
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"kaboom"));
    let r = capture.recorded();
    let finished = r.finished_interactions();
    assert_eq!(finished.len(), 1, "{}", r.render());
    assert_eq!(r.final_updates(), 1);
    assert_eq!(finished[0].event_id, "evt-boom");
    assert_eq!(finished[0].properties["error"], "panicked");
    let wf = r.span("boom.workflow").expect("the workflow span");
    assert_eq!(wf.error.as_deref(), Some("panicked"));
    assert_eq!(wf.input.as_deref(), Some("why"));
}

#[derive(serde::Deserialize, Serialize, Debug, Clone)]
struct ChatRequest {
    user_id: String,
    convo_id: Option<String>,
    message: String,
}

#[derive(Clone)]
struct App {
    greeting: &'static str,
}

#[raindrop::tool("search")]
async fn search(q: String) -> Vec<String> {
    tokio::task::yield_now().await;
    vec![format!("result for {q}")]
}

#[raindrop::interaction(
    "chat",
    user_id = req.user_id,
    convo_id = req.convo_id,
    input = req.message,
    skip(app)
)]
async fn chat_handler(State(app): State<App>, Json(req): Json<ChatRequest>) -> Json<Value> {
    let results = search(req.message.clone()).await;
    let resumed = raindrop::resume_interaction();
    let id = resumed.event_id().map(str::to_owned);
    Json(json!({"reply": format!("{} {}", app.greeting, results[0]), "event_id": id}))
}

#[test]
fn async_axum_style_handler_with_destructured_arguments() {
    let capture = Capture::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let Json(reply) = rt.block_on(
        chat_handler(
            State(App { greeting: "hi" }),
            Json(ChatRequest {
                user_id: "u-axum".into(),
                convo_id: Some("c-axum".into()),
                message: "weather?".into(),
            }),
        )
        .with_subscriber(capture.dispatch()),
    );
    assert_eq!(reply["reply"], "hi result for weather?");
    let event_id = reply["event_id"].as_str().unwrap().to_owned();
    let r = capture.recorded();
    let m = r.event_by_id(&event_id).expect("the interaction");
    assert_eq!(m.user_id.as_deref(), Some("u-axum"));
    assert_eq!(m.event.as_deref(), Some("chat"));
    assert_eq!(m.input.as_deref(), Some("weather?"));
    assert_eq!(m.convo_id.as_deref(), Some("c-axum"));
    assert_eq!(
        m.output,
        Some(json!({"reply": "hi result for weather?", "event_id": event_id}).to_string())
    );
    assert!(m.finished);
    let tool = r.span("search.tool").expect("the tool span");
    assert_eq!(tool.event_id.as_deref(), Some(event_id.as_str()));
    assert_eq!(tool.output.as_deref(), Some(r#"["result for weather?"]"#));
}

struct Agent {
    calls: u32,
}

impl Agent {
    #[raindrop::task("plan")]
    fn plan(&self, goal: &str) -> impl fmt::Display {
        format!("plan for {goal} after {} calls", self.calls)
    }

    #[raindrop::tool]
    fn bump(&mut self, by: u32) -> u32 {
        self.calls += by;
        self.calls
    }

    #[raindrop::interaction("agent", user_id = "u-agent")]
    async fn run<T: fmt::Debug + Send>(&mut self, extra: T) -> Result<String, MyError> {
        let n = self.bump(2);
        if n > 100 {
            return Err(MyError("too many"));
        }
        let plan = self.plan(&format!("{extra:?}")).to_string();
        Ok(plan)
    }
}

#[test]
fn methods_generics_and_impl_trait() {
    let capture = Capture::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut agent = Agent { calls: 1 };
    let out = rt.block_on(agent.run(7u8).with_subscriber(capture.dispatch()));
    assert_eq!(out.unwrap(), "plan for 7 after 3 calls");
    let r = capture.recorded();
    assert_eq!(r.finished_interactions().len(), 1, "{}", r.render());
    assert_eq!(r.final_updates(), 1);
    let bump = r.span("bump.tool").expect("bump");
    assert_eq!(bump.input.as_deref(), Some("2"));
    let plan = r.span("plan.task").expect("plan");
    assert_eq!(plan.input.as_deref(), Some("7"));
    assert_eq!(plan.output.as_deref(), Some("plan for 7 after 3 calls"));
    let wf = r.span("agent.workflow").expect("the workflow span");
    assert_eq!(wf.input.as_deref(), Some("7"), "Debug capture of a generic");
}

/// Whether `resume_interaction()` finds the interaction from inside it.
#[raindrop::interaction("probe", user_id = "u-probe", event_id = "evt-probe")]
fn probe() -> bool {
    !raindrop::resume_interaction().is_noop()
}

/// A layer that writes down the name of every span it is told about.
#[derive(Clone, Default)]
struct Names(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Names {
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

#[test]
fn without_a_raindrop_layer_functions_behave_like_plain_functions() {
    let calls = || {
        assert_eq!(handle("q"), "answer to q with 1 hits");
        assert_eq!(calc(1, "2").unwrap(), 4);
        assert_eq!(calc(2, "").unwrap_err().to_string(), "my error: empty");
        let panic = std::panic::catch_unwind(|| explode(1)).unwrap_err();
        assert_eq!(panic.downcast_ref::<&str>(), Some(&"kaboom"));
        probe()
    };
    // No subscriber at all: the same results, errors and panics, and no
    // interaction to resume inside them.
    assert!(!calls(), "resume_interaction() found an interaction");

    // A subscriber without the raindrop layer: other layers still see the
    // spans, resume still finds nothing.
    let names = Names::default();
    let found = tracing::subscriber::with_default(
        tracing_subscriber::registry().with(names.clone()),
        calls,
    );
    assert!(!found, "resume_interaction() found an interaction");
    let names = names.0.lock().unwrap().clone();
    assert_eq!(
        names,
        [
            "support_flow",
            "kb_lookup",
            "compose",
            "calc",
            "parse_number",
            "calc",
            "boom",
            "probe"
        ]
    );

    // The same calls with the layer do record (so the two runs above were
    // not silent for some other reason) and resume does find its interaction.
    let capture = Capture::new();
    assert!(capture.run(calls), "resume_interaction() is a no-op");
    let r = capture.recorded();
    let mut ids: Vec<&str> = r
        .finished_interactions()
        .iter()
        .map(|e| e.event_id.as_str())
        .collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        ["evt-1", "evt-2", "evt-boom", "evt-probe", "evt-tr-1"],
        "{}",
        r.render()
    );
    assert_eq!(r.final_updates(), 5);
}

#[raindrop::task]
async fn background(n: usize) -> Option<String> {
    tokio::task::yield_now().await;
    raindrop::resume_interaction().event_id().map(str::to_owned)
}

#[raindrop::interaction("many", user_id = format!("user-{n}"), event_id = format!("evt-many-{n}"))]
async fn one_of_many(n: usize) -> String {
    let own = format!("evt-many-{n}");
    // Through an ordinary instrumented span, across awaits.
    let inner = async {
        tokio::task::yield_now().await;
        raindrop::resume_interaction().event_id().map(str::to_owned)
    }
    .instrument(tracing::info_span!("ordinary"))
    .await;
    assert_eq!(inner.as_deref(), Some(own.as_str()));
    // Across tokio::spawn of an instrumented future.
    // (with_current_subscriber only because the test uses a scoped subscriber)
    let spawned = tokio::spawn(background(n).in_current_span().with_current_subscriber())
        .await
        .unwrap();
    assert_eq!(spawned.as_deref(), Some(own.as_str()));
    // Across a thread given the span.
    let span = tracing::Span::current();
    let d = tracing::dispatcher::get_default(|d| d.clone());
    let from_thread = std::thread::spawn(move || {
        tracing::dispatcher::with_default(&d, || {
            span.in_scope(|| raindrop::resume_interaction().event_id().map(str::to_owned))
        })
    })
    .join()
    .unwrap();
    assert_eq!(from_thread.as_deref(), Some(own.as_str()));
    raindrop::resume_interaction().set_property("n", n);
    format!("done {n}")
}

#[test]
fn a_thousand_concurrent_interactions_each_resume_their_own() {
    let capture = Capture::new();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tasks: Vec<_> = (0..1000)
            .map(|n| tokio::spawn(one_of_many(n).with_subscriber(capture.dispatch())))
            .collect();
        for (n, t) in tasks.into_iter().enumerate() {
            assert_eq!(
                tokio::time::timeout(Duration::from_secs(60), t)
                    .await
                    .unwrap()
                    .unwrap(),
                format!("done {n}")
            );
        }
    });
    let r = capture.recorded();
    assert_eq!(r.finished_interactions().len(), 1000);
    assert_eq!(r.final_updates(), 1000);
    assert_eq!(r.events.len(), 1000);
    // Every interaction got its own property n and user, and nothing else's.
    for n in 0..1000usize {
        let e = r
            .event_by_id(&format!("evt-many-{n}"))
            .unwrap_or_else(|| panic!("no evt-many-{n}"));
        assert_eq!(e.properties["n"], n, "{e:?}");
        assert_eq!(e.user_id, Some(format!("user-{n}")));
    }
    let bg = r.spans_named("background.task");
    assert_eq!(bg.len(), 1000);
    for s in bg {
        let input = s.input.as_deref().expect("the task's input");
        assert_eq!(s.event_id, Some(format!("evt-many-{input}")));
    }
}

struct Store {
    name: String,
    items: Vec<String>,
}

impl Store {
    #[raindrop::tool(skip(self))]
    fn label(&self) -> &str {
        &self.name
    }

    #[raindrop::task]
    fn first<'a>(&self, items: &'a [String]) -> Option<&'a String> {
        items.first()
    }

    #[raindrop::task]
    async fn longest(&self) -> Option<&String> {
        self.items.iter().max_by_key(|s| s.len())
    }
}

#[raindrop::interaction("explode_async", user_id = "u", event_id = format!("evt-async-{n}"))]
async fn explode_async(n: u32) -> u32 {
    tokio::task::yield_now().await;
    if n == 1 {
        panic!("async kaboom");
    }
    // n == 2: never completes; the caller drops it.
    std::future::pending::<()>().await;
    n
}

#[test]
fn borrowed_returns_async_panics_and_cancellation() {
    let capture = Capture::new();
    let store = Store {
        name: "shop".into(),
        items: vec!["a".into(), "ccc".into()],
    };
    capture.run(|| {
        assert_eq!(store.label(), "shop");
        assert_eq!(store.first(&store.items).map(String::as_str), Some("a"));
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(
        async {
            assert_eq!(store.longest().await.map(String::as_str), Some("ccc"));
            let joined = tokio::spawn(explode_async(1).with_current_subscriber()).await;
            let err = joined.unwrap_err();
            assert!(err.is_panic());
            let payload = err.into_panic();
            assert_eq!(payload.downcast_ref::<&str>(), Some(&"async kaboom"));
            let timed_out = tokio::time::timeout(Duration::from_millis(20), explode_async(2)).await;
            assert!(timed_out.is_err());
        }
        .with_subscriber(capture.dispatch()),
    );
    let r = capture.recorded();
    let output = |name: &str| r.span(name).and_then(|s| s.output.as_deref());
    assert_eq!(output("label.tool"), Some("shop"));
    assert_eq!(output("longest.task"), Some("ccc"));
    let wfs = r.spans_named("explode_async.workflow");
    assert_eq!(wfs.len(), 2, "{}", r.render());
    let error = |id: &str| {
        wfs.iter()
            .find(|s| s.event_id.as_deref() == Some(id))
            .unwrap_or_else(|| panic!("no workflow span for {id}"))
            .error
            .as_deref()
    };
    assert_eq!(error("evt-async-1"), Some("panicked"));
    assert_eq!(error("evt-async-2"), Some("cancelled"));
    let m1 = r.event_by_id("evt-async-1").expect("evt-async-1");
    assert_eq!(m1.input.as_deref(), Some("1"));
    assert_eq!(m1.properties["error"], "panicked");
    assert!(m1.finished);
    let m2 = r.event_by_id("evt-async-2").expect("evt-async-2");
    assert_eq!(m2.properties["error"], "cancelled");
    assert!(m2.finished);
}
