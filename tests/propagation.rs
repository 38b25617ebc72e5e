//! One interaction across two services (issue 12): A's interaction calls B
//! over HTTP with W3C `traceparent` + `baggage`; B's spans and updates join
//! it. Each service runs on its own thread, with its own runtime, subscriber
//! and client (as two processes would), and both deliver to one loopback
//! capture server.

use std::net::SocketAddr;
use std::time::Duration;

use axum::routing::post;
use axum::{Json, Router};
use raindrop::propagate;
use raindrop::{Client, ClientOptions};
use raindrop_test_support::Capture;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing_subscriber::prelude::*;

fn client(cap: &Capture) -> Client {
    Client::new(
        ClientOptions::default()
            .write_key("rk_test_propagation")
            .endpoint(cap.endpoint())
            .upload_interval(Duration::from_millis(50)),
    )
    .unwrap()
}

fn attr_str(span: &Value, key: &str) -> Option<String> {
    span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .and_then(|a| a["value"]["stringValue"].as_str().map(str::to_owned))
}

fn one<'a>(spans: &'a [Value], name: &str) -> &'a Value {
    let found: Vec<&Value> = spans.iter().filter(|s| s["name"] == name).collect();
    assert_eq!(found.len(), 1, "one `{name}` span in {spans:#?}");
    found[0]
}

/// A running service: its address, and a sender that stops it.
struct Service {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Service {
    /// Serves `app` on 127.0.0.1 on a thread whose default subscriber has a
    /// raindrop layer exporting through `client`.
    fn start(client: &Client, app: Router) -> Service {
        let client = client.clone();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let subscriber = tracing_subscriber::registry().with(raindrop::layer_for(&client));
            let _default = tracing::subscriber::set_default(subscriber);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stop_rx.await;
                    })
                    .await;
            });
        });
        let addr = addr_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        Service {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------- service B

#[derive(Serialize, Deserialize)]
struct AgentRequest {
    question: String,
}

#[raindrop::tool]
async fn lookup(question: String) -> Vec<String> {
    tokio::task::yield_now().await;
    vec![format!("doc about {question}")]
}

#[raindrop::tool]
fn rank(docs: Vec<String>) -> usize {
    docs.len()
}

/// A plain handler (no interaction of its own): its tools join the caller's
/// trace and its property lands on the caller's event.
async fn agent_tools(Json(req): Json<AgentRequest>) -> String {
    let docs = lookup(req.question).await;
    let n = rank(docs);
    raindrop::resume_interaction().set_property("served_by", "agent-b");
    format!("{n} docs")
}

/// An interaction handler in B: it joins the caller's interaction instead of
/// beginning a second one, and does not finish it.
#[raindrop::interaction("agent", user_id = "someone-else")]
async fn agent_joined(Json(req): Json<AgentRequest>) -> String {
    raindrop::resume_interaction().set_property("joined_question", req.question.len() as i64);
    let docs = lookup(req.question).await;
    format!("{} docs", docs.len())
}

fn service_b() -> Router {
    Router::new()
        .route("/tools", post(agent_tools))
        .route("/joined", post(agent_joined))
        .layer(propagate::tower::PropagationLayer)
}

// ---------------------------------------------------------------- service A

#[derive(Serialize, Deserialize)]
struct ChatRequest {
    user_id: String,
    message: String,
}

#[derive(Clone)]
struct AState {
    b: SocketAddr,
}

/// A's client span around the call to B: headers injected by hand.
#[raindrop::tool]
async fn call_agent(b: SocketAddr, question: String) -> String {
    let mut headers = axum::http::HeaderMap::new();
    assert!(propagate::inject(&mut headers), "inside a raindrop span");
    reqwest::Client::new()
        .post(format!("http://{b}/tools"))
        .headers(headers)
        .header("content-type", "application/json")
        .body(serde_json::to_string(&AgentRequest { question }).unwrap())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The second call goes through the reqwest-middleware middleware.
#[raindrop::tool]
async fn call_joined(b: SocketAddr, question: String) -> String {
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(propagate::reqwest_middleware::InjectMiddleware)
        .build();
    client
        .post(format!("http://{b}/joined"))
        .header("content-type", "application/json")
        .body(serde_json::to_string(&AgentRequest { question }).unwrap())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[raindrop::interaction("chat", user_id = req.user_id, input = req.message)]
async fn chat(
    axum::extract::State(s): axum::extract::State<AState>,
    Json(req): Json<ChatRequest>,
) -> String {
    let a = call_agent(s.b, req.message.clone()).await;
    let b = call_joined(s.b, req.message).await;
    format!("{a}; {b}")
}

fn service_a(b: SocketAddr) -> Router {
    Router::new()
        .route("/chat", post(chat))
        .with_state(AState { b })
}

#[test]
fn an_interaction_continues_across_two_axum_services() {
    let cap = Capture::start(vec![]);
    let (client_a, client_b) = (client(&cap), client(&cap));
    let b = Service::start(&client_b, service_b());
    let a = Service::start(&client_a, service_a(b.addr));

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let answer = rt.block_on(async {
        let res = reqwest::Client::new()
            .post(format!("http://{}/chat", a.addr))
            .timeout(Duration::from_secs(20))
            .header("content-type", "application/json")
            .body(
                serde_json::to_string(&ChatRequest {
                    user_id: "user-a".into(),
                    message: "refunds".into(),
                })
                .unwrap(),
            )
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "{res:?}");
        res.text().await.unwrap()
    });
    assert_eq!(answer, "1 docs; 1 docs");
    drop(a);
    drop(b);
    assert!(client_a.flush(Duration::from_secs(20)), "A flush timed out");
    assert!(client_b.flush(Duration::from_secs(20)), "B flush timed out");

    // One event: every partial, from A and from B, names the same event id.
    let partials = cap.delivered("events/track_partial");
    assert!(partials.len() >= 2, "A's and B's updates: {partials:#?}");
    let event_id = partials[0]["event_id"].as_str().unwrap().to_owned();
    assert!(
        partials.iter().all(|p| p["event_id"] == event_id.as_str()),
        "one event id: {partials:#?}"
    );
    // Only A finished it; B's interaction span joined without finishing.
    let finals: Vec<&Value> = partials
        .iter()
        .filter(|p| p["is_pending"] == false)
        .collect();
    assert_eq!(finals.len(), 1, "{partials:#?}");
    assert_eq!(finals[0]["user_id"], "user-a");
    // B's updates reached the event (merged by event id on the backend).
    let props = |key: &str| {
        partials
            .iter()
            .filter_map(|p| p["properties"].get(key).cloned())
            .collect::<Vec<_>>()
    };
    assert_eq!(props("served_by"), vec![Value::from("agent-b")]);
    assert_eq!(props("joined_question"), vec![Value::from(7)]);
    // B's `user_id = "someone-else"` updated the user; A's own final then
    // carries A's (the last write of A's process), so check B's partial.
    assert!(
        partials.iter().any(|p| p["user_id"] == "someone-else"),
        "B's joined interaction applied its user id: {partials:#?}"
    );

    let spans = cap.spans();
    let chat = one(&spans, "chat.workflow");
    let call_agent = one(&spans, "call_agent.tool");
    let call_joined = one(&spans, "call_joined.tool");
    let rank = one(&spans, "rank.tool");
    let agent = one(&spans, "agent.workflow");
    let lookups: Vec<&Value> = spans
        .iter()
        .filter(|s| s["name"] == "lookup.tool")
        .collect();
    assert_eq!(lookups.len(), 2, "{spans:#?}");
    let trace = &chat["traceId"];
    assert!(
        spans.iter().all(|s| &s["traceId"] == trace),
        "every span, A's and B's, in A's trace: {spans:#?}"
    );
    // B's spans hang under A's client spans.
    assert_eq!(rank["parentSpanId"], call_agent["spanId"]);
    assert_eq!(agent["parentSpanId"], call_joined["spanId"]);
    let lookup_parents: Vec<&Value> = lookups.iter().map(|s| &s["parentSpanId"]).collect();
    assert!(
        lookup_parents.contains(&&call_agent["spanId"]),
        "{spans:#?}"
    );
    assert!(lookup_parents.contains(&&agent["spanId"]), "{spans:#?}");
    // All of them linked to the one event.
    for s in &spans {
        assert_eq!(
            attr_str(s, "traceloop.association.properties.event_id").as_deref(),
            Some(event_id.as_str()),
            "{s:#?}"
        );
    }
    assert_eq!(
        attr_str(rank, "traceloop.workflow.name").as_deref(),
        Some("chat")
    );
}

#[test]
fn a_request_without_headers_starts_its_own_interaction() {
    let cap = Capture::start(vec![]);
    let client_b = client(&cap);
    let b = Service::start(&client_b, service_b());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let res = reqwest::Client::new()
            .post(format!("http://{}/joined", b.addr))
            .header(
                "traceparent",
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            )
            .header("baggage", "raindrop.event_id=forged")
            .timeout(Duration::from_secs(20))
            .header("content-type", "application/json")
            .body(r#"{"question":"hi"}"#)
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success());
    });
    drop(b);
    assert!(client_b.flush(Duration::from_secs(20)));
    let partials = cap.delivered("events/track_partial");
    assert!(!partials.is_empty());
    // An invalid traceparent: the baggage is not trusted, B begins (and
    // finishes) its own interaction under a fresh trace.
    assert!(
        partials.iter().all(|p| p["event_id"] != "forged"),
        "{partials:#?}"
    );
    assert_eq!(
        partials.iter().filter(|p| p["is_pending"] == false).count(),
        1
    );
    let spans = cap.spans();
    let agent = one(&spans, "agent.workflow");
    assert!(agent.get("parentSpanId").is_none(), "{agent:#?}");
    assert_ne!(agent["traceId"], "00000000000000000000000000000000");
}
