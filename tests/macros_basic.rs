//! `#[raindrop::interaction]`, `#[raindrop::task]` and `#[raindrop::tool]`
//! against a loopback capture server.


use std::fmt;
use std::time::Duration;

use axum::extract::State;
use axum::Json;
use raindrop::{Client, ClientOptions};
use serde::Serialize;
use serde_json::{json, Value};
use raindrop_test_support::Capture;
use tracing::instrument::WithSubscriber;
use tracing::Instrument;
use tracing_subscriber::prelude::*;

fn client(cap: &Capture) -> Client {
    Client::new(
        ClientOptions::default()
            .write_key("rk_test_macros")
            .endpoint(cap.endpoint())
            .upload_interval(Duration::from_millis(50)),
    )
    .unwrap()
}

fn dispatch(c: &Client) -> tracing::Dispatch {
    tracing::Dispatch::new(tracing_subscriber::registry().with(raindrop::layer(c)))
}

fn flush(c: &Client) {
    assert!(c.flush(Duration::from_secs(30)), "flush timed out");
}

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

fn attr_str(span: &Value, key: &str) -> Option<String> {
    span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .and_then(|a| a["value"]["stringValue"].as_str().map(str::to_owned))
}

fn named(spans: &[Value], name: &str) -> Value {
    spans
        .iter()
        .find(|s| s["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no span {name} in {spans:#?}"))
}

fn finals(cap: &Capture) -> Vec<Value> {
    cap.delivered("events/track_partial")
        .into_iter()
        .filter(|p| p["is_pending"] == false)
        .collect()
}

/// Everything delivered for one event id, merged (later values win).
fn merged(cap: &Capture, event_id: &str) -> Value {
    let mut out = json!({});
    for p in cap.delivered("events/track_partial") {
        if p["event_id"] == event_id {
            merge(&mut out, p);
        }
    }
    out
}

fn merge(a: &mut Value, b: Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

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
    let cap = Capture::start(vec![]);
    let c = client(&cap);
    let out = tracing::dispatcher::with_default(&dispatch(&c), || handle("reset password?"));
    assert_eq!(out, "answer to reset password? with 15 hits");
    flush(&c);
    let f = finals(&cap);
    assert_eq!(f.len(), 1, "{f:?}");
    let m = merged(&cap, "evt-tr-1");
    assert_eq!(m["user_id"], "user-tr-1");
    assert_eq!(m["event"], "support_flow");
    assert_eq!(m["ai_data"]["input"], "reset password?");
    assert_eq!(m["ai_data"]["output"], out);
    assert_eq!(m["ai_data"]["convo_id"], "convo-tr-1");
    assert_eq!(m["properties"]["kb_hits"], 2);
    assert_eq!(m["properties"]["composer"], "v1");

    let spans = spans(&cap);
    assert_eq!(spans.len(), 3);
    let tool = named(&spans, "kb_lookup.tool");
    let task = named(&spans, "compose.task");
    let wf = named(&spans, "support_flow.workflow");
    assert_eq!(
        attr_str(&tool, "traceloop.entity.input").as_deref(),
        Some("reset password?")
    );
    assert_eq!(
        attr_str(&tool, "traceloop.entity.output").as_deref(),
        Some(r#"{"hits":15}"#)
    );
    assert_eq!(
        attr_str(&task, "traceloop.entity.input").as_deref(),
        Some(r#"{"hits":{"hits":15},"q":"reset password?"}"#)
    );
    assert_eq!(
        attr_str(&task, "traceloop.entity.output").as_deref(),
        Some(out.as_str())
    );
    for s in [&tool, &task] {
        assert_eq!(
            attr_str(s, "traceloop.association.properties.event_id").as_deref(),
            Some("evt-tr-1")
        );
        assert_eq!(
            attr_str(s, "traceloop.association.properties.user_id").as_deref(),
            Some("user-tr-1")
        );
        assert_eq!(
            attr_str(s, "traceloop.workflow.name").as_deref(),
            Some("support_flow")
        );
        assert_eq!(s["parentSpanId"], wf["spanId"]);
        assert_eq!(s["traceId"], wf["traceId"]);
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
    let cap = Capture::start(vec![]);
    let c = client(&cap);
    let d = dispatch(&c);
    tracing::dispatcher::with_default(&d, || {
        assert_eq!(calc(1, "21").unwrap(), 42);
        assert!(calc(2, "").is_err());
        assert!(calc(3, "x").is_err());
    });
    flush(&c);
    assert_eq!(finals(&cap).len(), 3);
    let m1 = merged(&cap, "evt-1");
    assert_eq!(m1["ai_data"]["output"], "42");
    assert!(m1["properties"]["error"].is_null());
    let m2 = merged(&cap, "evt-2");
    assert_eq!(m2["properties"]["error"], "my error: empty");
    let m3 = merged(&cap, "evt-3");
    assert_eq!(m3["properties"]["error"], "invalid digit found in string");
    let spans = spans(&cap);
    let tools: Vec<&Value> = spans
        .iter()
        .filter(|s| s["name"] == "parse_number.tool")
        .collect();
    assert_eq!(tools.len(), 2);
    let failed = tools.iter().find(|s| s["status"]["code"] == 2).unwrap();
    assert_eq!(failed["status"]["message"], "invalid digit found in string");
    assert!(
        attr_str(failed, "traceloop.entity.input").is_none(),
        "skip_all"
    );
    assert_eq!(
        attr_str(failed, "traceloop.association.properties.event_id").as_deref(),
        Some("evt-3")
    );
}

#[raindrop::interaction("boom", user_id = "u-boom", event_id = "evt-boom", input = "why")]
fn explode(_x: u32) -> u32 {
    panic!("kaboom")
}

#[test]
fn panic_finishes_with_error_and_propagates_unchanged() {
    let cap = Capture::start(vec![]);
    let c = client(&cap);
    let d = dispatch(&c);
    let r = tracing::dispatcher::with_default(&d, || std::panic::catch_unwind(|| explode(1)));
    let payload = r.unwrap_err();
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"kaboom"));
    flush(&c);
    let f = finals(&cap);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0]["properties"]["error"], "panicked");
    let wf = named(&spans(&cap), "boom.workflow");
    assert_eq!(wf["status"]["code"], 2);
    assert_eq!(
        attr_str(&wf, "traceloop.entity.input").as_deref(),
        Some("why")
    );
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
    let cap = Capture::start(vec![]);
    let c = client(&cap);
    let d = dispatch(&c);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let Json(reply) = rt.block_on(tracing::instrument::WithSubscriber::with_subscriber(
        chat_handler(
            State(App { greeting: "hi" }),
            Json(ChatRequest {
                user_id: "u-axum".into(),
                convo_id: Some("c-axum".into()),
                message: "weather?".into(),
            }),
        ),
        d,
    ));
    assert_eq!(reply["reply"], "hi result for weather?");
    let event_id = reply["event_id"].as_str().unwrap().to_owned();
    flush(&c);
    let m = merged(&cap, &event_id);
    assert_eq!(m["user_id"], "u-axum");
    assert_eq!(m["event"], "chat");
    assert_eq!(m["ai_data"]["input"], "weather?");
    assert_eq!(m["ai_data"]["convo_id"], "c-axum");
    assert_eq!(
        m["ai_data"]["output"],
        json!({"reply": "hi result for weather?", "event_id": event_id}).to_string()
    );
    assert_eq!(m["is_pending"], false);
    let spans = spans(&cap);
    let tool = named(&spans, "search.tool");
    assert_eq!(
        attr_str(&tool, "traceloop.association.properties.event_id").as_deref(),
        Some(event_id.as_str())
    );
    assert_eq!(
        attr_str(&tool, "traceloop.entity.output").as_deref(),
        Some(r#"["result for weather?"]"#)
    );
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
    let cap = Capture::start(vec![]);
    let c = client(&cap);
    let d = dispatch(&c);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut agent = Agent { calls: 1 };
    let out = rt.block_on(tracing::instrument::WithSubscriber::with_subscriber(
        agent.run(7u8),
        d,
    ));
    assert_eq!(out.unwrap(), "plan for 7 after 3 calls");
    flush(&c);
    let f = finals(&cap);
    assert_eq!(f.len(), 1);
    let spans = spans(&cap);
    let bump = named(&spans, "bump.tool");
    assert_eq!(
        attr_str(&bump, "traceloop.entity.input").as_deref(),
        Some("2")
    );
    let plan = named(&spans, "plan.task");
    assert_eq!(
        attr_str(&plan, "traceloop.entity.input").as_deref(),
        Some("7")
    );
    assert_eq!(
        attr_str(&plan, "traceloop.entity.output").as_deref(),
        Some("plan for 7 after 3 calls")
    );
    let wf = named(&spans, "agent.workflow");
    assert_eq!(
        attr_str(&wf, "traceloop.entity.input").as_deref(),
        Some("7"),
        "Debug capture of a generic"
    );
}

#[test]
fn without_a_raindrop_layer_functions_behave_like_plain_functions() {
    // No subscriber at all.
    assert_eq!(handle("q"), "answer to q with 1 hits");
    assert_eq!(calc(1, "2").unwrap(), 4);
    assert!(calc(2, "").is_err());
    // A subscriber without the raindrop layer: spans exist, nothing is captured.
    let cap = Capture::start(vec![]);
    let c = client(&cap);
    let sub = tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::sink));
    tracing::subscriber::with_default(sub, || {
        assert_eq!(handle("q"), "answer to q with 1 hits");
        assert!(raindrop::resume_interaction().is_noop());
    });
    flush(&c);
    assert!(cap.requests().is_empty());
    let r = std::panic::catch_unwind(|| explode(1));
    assert!(r.is_err());
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
    let cap = Capture::start(vec![]);
    let c = client(&cap);
    let d = dispatch(&c);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tasks: Vec<_> = (0..1000)
            .map(|n| {
                tokio::spawn(tracing::instrument::WithSubscriber::with_subscriber(
                    one_of_many(n),
                    d.clone(),
                ))
            })
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
    flush(&c);
    let f = finals(&cap);
    assert_eq!(f.len(), 1000);
    let partials = cap.delivered("events/track_partial");
    for n in [0usize, 1, 499, 999] {
        let m = merged(&cap, &format!("evt-many-{n}"));
        assert_eq!(m["properties"]["n"], n, "{m}");
        assert_eq!(m["user_id"], format!("user-{n}"));
    }
    // Every property n landed on its own event.
    for p in &partials {
        if let Some(n) = p.pointer("/properties/n") {
            assert_eq!(p["event_id"], format!("evt-many-{n}"));
        }
    }
    let spans = spans(&cap);
    let bg: Vec<&Value> = spans
        .iter()
        .filter(|s| s["name"] == "background.task")
        .collect();
    assert_eq!(bg.len(), 1000);
    for s in bg {
        let input = attr_str(s, "traceloop.entity.input").unwrap();
        assert_eq!(
            attr_str(s, "traceloop.association.properties.event_id"),
            Some(format!("evt-many-{input}"))
        );
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
    let cap = Capture::start(vec![]);
    let c = client(&cap);
    let d = dispatch(&c);
    let store = Store {
        name: "shop".into(),
        items: vec!["a".into(), "ccc".into()],
    };
    tracing::dispatcher::with_default(&d, || {
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
        .with_subscriber(d.clone()),
    );
    flush(&c);
    let spans = spans(&cap);
    assert_eq!(
        attr_str(&named(&spans, "label.tool"), "traceloop.entity.output").as_deref(),
        Some("shop")
    );
    assert_eq!(
        attr_str(&named(&spans, "longest.task"), "traceloop.entity.output").as_deref(),
        Some("ccc")
    );
    let wfs: Vec<&Value> = spans
        .iter()
        .filter(|s| s["name"] == "explode_async.workflow")
        .collect();
    assert_eq!(wfs.len(), 2);
    let status = |id: &str| {
        wfs.iter()
            .find(|s| {
                attr_str(s, "traceloop.association.properties.event_id").as_deref() == Some(id)
            })
            .map(|s| s["status"].clone())
            .unwrap()
    };
    assert_eq!(
        status("evt-async-1"),
        json!({"code": 2, "message": "panicked"})
    );
    assert_eq!(
        status("evt-async-2"),
        json!({"code": 2, "message": "cancelled"})
    );
    let m1 = merged(&cap, "evt-async-1");
    assert_eq!(m1["ai_data"]["input"], "1");
    assert_eq!(m1["properties"]["error"], "panicked");
    assert_eq!(m1["is_pending"], false);
    let m2 = merged(&cap, "evt-async-2");
    assert_eq!(m2["properties"]["error"], "cancelled");
    assert_eq!(m2["is_pending"], false);
}
