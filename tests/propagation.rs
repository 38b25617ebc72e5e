//! One interaction across two services (issue 12): A's interaction calls B
//! over HTTP with W3C `traceparent` + `baggage` (+ `x-raindrop-signature`);
//! B's spans and updates join it. The first tests run each service on its
//! own thread, with its own runtime, subscriber and client; the carrier
//! tests (issue 21) run service B in a second process (this test binary
//! started again with `RAINDROP_TEST_SERVICE_B` set, see `service_b_child`).
//! Everything delivers to one loopback capture server.

use std::net::SocketAddr;
use std::time::Duration;

use axum::routing::post;
use axum::{Json, Router};
use raindrop::propagate;
use raindrop::{Client, ClientOptions};
use raindrop_test_support::{Capture, ChildService};
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

fn service_b_routes() -> Router {
    Router::new()
        .route("/tools", post(agent_tools))
        .route("/joined", post(agent_joined))
}

fn service_b() -> Router {
    service_b_routes().layer(propagate::tower::PropagationLayer)
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
    // B's `user_id = "someone-else"` was refused: the service that began
    // the interaction owns its user.
    assert!(
        partials.iter().all(|p| p["user_id"] == "user-a"),
        "every update carries A's user: {partials:#?}"
    );
    assert_eq!(client_b.stats().joined_user_changes_refused, 1);
    assert_eq!(client_b.stats().carriers_unsigned, 0);
    assert_eq!(client_b.stats().carriers_bad_signature, 0);

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

// ------------------------------------------------ carriers (issue 21)

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read as _, Write as _};

use raindrop::propagate::InjectOptions;
use raindrop_core::propagation::{CarrierKey, InteractionBaggage};

/// Set in a child process: the capture endpoint service B delivers to.
const CHILD: &str = "RAINDROP_TEST_SERVICE_B";
const SECRET: &str = "test-propagation-secret";

/// B's route that finishes the interaction it joined.
async fn finish_here() -> &'static str {
    raindrop::resume_interaction().finish("finished by b");
    "ok"
}

/// Not a test of its own: the body of service B when this binary runs as
/// the child process (`CHILD` set). B's client comes from the environment
/// the parent chose (write key, propagation secret). It prints its address,
/// serves until its stdin closes, flushes, and prints its stats.
#[test]
fn service_b_child() {
    let Ok(endpoint) = std::env::var(CHILD) else {
        return;
    };
    let client = Client::new(
        ClientOptions::from_env()
            .endpoint(endpoint)
            .upload_interval(Duration::from_millis(50)),
    )
    .unwrap();
    let app = service_b_routes()
        .route("/finish", post(finish_here))
        .layer(propagate::tower::PropagationLayer::new());
    let b = Service::start(&client, app);
    println!("RAINDROP-B addr={}", b.addr);
    std::io::stdout().flush().unwrap();
    let mut rest = String::new();
    let _ = std::io::stdin().read_to_string(&mut rest);
    drop(b);
    assert!(client.flush(Duration::from_secs(20)), "B flush timed out");
    let s = client.stats();
    println!(
        "RAINDROP-B stats={}",
        serde_json::json!({
            "carriers_unsigned": s.carriers_unsigned,
            "carriers_bad_signature": s.carriers_bad_signature,
            "carriers_stale": s.carriers_stale,
            "joined_user_changes_refused": s.joined_user_changes_refused,
            "joined_finishes_refused": s.joined_finishes_refused,
            "finishes_ignored": s.finishes_ignored,
        })
    );
    std::io::stdout().flush().unwrap();
}

/// Service B in its own process, given these environment variables (plus
/// the capture endpoint).
fn start_b(cap: &Capture, env: &[(&str, &str)]) -> ChildService {
    let endpoint = cap.endpoint();
    let mut env = env.to_vec();
    env.push((CHILD, &endpoint));
    ChildService::start("service_b_child", "RAINDROP-B ", &env)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn post_to(addr: SocketAddr, path: &str, headers: axum::http::HeaderMap, body: &str) {
    let res = reqwest::Client::new()
        .post(format!("http://{addr}{path}"))
        .headers(headers)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{res:?}");
}

fn client_with(cap: &Capture, key: &str, secret: Option<&str>) -> Client {
    let mut o = ClientOptions::default()
        .write_key(key)
        .endpoint(cap.endpoint())
        .workshop(raindrop::Workshop::Off)
        .upload_interval(Duration::from_millis(50));
    if let Some(s) = secret {
        o = o.propagation_secret(s);
    }
    Client::new(o).unwrap()
}

/// The event ids each delivered span is linked to, by span name.
fn span_events(spans: &[Value]) -> Vec<(String, Option<String>, String)> {
    spans
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap_or("").to_owned(),
                attr_str(s, "traceloop.association.properties.event_id"),
                s["traceId"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

#[test]
fn with_a_shared_secret_fifty_concurrent_chats_join_across_two_processes() {
    let cap = Capture::start(vec![]);
    let b = start_b(
        &cap,
        &[
            ("RAINDROP_WRITE_KEY", "rk_test_service_b"),
            ("RAINDROP_PROPAGATION_SECRET", SECRET),
        ],
    );
    // A has another write key: the shared secret is what they agree on.
    let client_a = client_with(&cap, "rk_test_service_a", Some(SECRET));
    let a = Service::start(&client_a, service_a(b.addr));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut chats = tokio::task::JoinSet::new();
        for n in 0..50 {
            let addr = a.addr;
            chats.spawn(async move {
                let body =
                    serde_json::json!({"user_id": format!("user-{n}"), "message": "refunds"});
                let res = reqwest::Client::new()
                    .post(format!("http://{addr}/chat"))
                    .header("content-type", "application/json")
                    .body(body.to_string())
                    .timeout(Duration::from_secs(60))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.text().await.unwrap(), "1 docs; 1 docs");
            });
        }
        while let Some(r) = chats.join_next().await {
            r.unwrap();
        }
    });
    drop(a);
    assert!(client_a.flush(Duration::from_secs(30)));
    let stats_b = b.stop();
    assert_eq!(stats_b["carriers_unsigned"], 0, "{stats_b}");
    assert_eq!(stats_b["carriers_bad_signature"], 0, "{stats_b}");
    assert_eq!(stats_b["carriers_stale"], 0, "{stats_b}");
    // B's `user_id = "someone-else"` refused once per chat.
    assert_eq!(stats_b["joined_user_changes_refused"], 50, "{stats_b}");

    let partials = cap.delivered("events/track_partial");
    let finals: BTreeMap<String, String> = partials
        .iter()
        .filter(|p| p["is_pending"] == false)
        .map(|p| {
            (
                p["event_id"].as_str().unwrap().to_owned(),
                p["user_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(finals.len(), 50, "one final per chat");
    let users: BTreeSet<&String> = finals.values().collect();
    assert_eq!(users.len(), 50, "each chat's own user: {finals:?}");
    for p in &partials {
        let id = p["event_id"].as_str().unwrap();
        assert_eq!(
            p["user_id"].as_str(),
            finals.get(id).map(String::as_str),
            "{p:#}"
        );
    }
    // B's updates reached every chat's event.
    for key in ["served_by", "joined_question"] {
        let with: BTreeSet<&str> = partials
            .iter()
            .filter(|p| p["properties"].get(key).is_some())
            .map(|p| p["event_id"].as_str().unwrap())
            .collect();
        assert_eq!(with.len(), 50, "{key} in every event");
    }
    // B's spans, made in the other process, sit in each chat's trace and event.
    let spans = span_events(&cap.spans());
    let chat_traces: BTreeMap<&Option<String>, &String> = spans
        .iter()
        .filter(|(n, _, _)| n == "chat.workflow")
        .map(|(_, e, t)| (e, t))
        .collect();
    assert_eq!(chat_traces.len(), 50);
    for name in ["agent.workflow", "rank.tool"] {
        let of_b: Vec<_> = spans.iter().filter(|(n, _, _)| n == name).collect();
        assert_eq!(of_b.len(), 50, "{name}");
        for (_, event, trace) in of_b {
            assert!(
                finals.contains_key(event.as_deref().unwrap_or("")),
                "{name} in a chat's event"
            );
            assert_eq!(
                chat_traces.get(event),
                Some(&trace),
                "{name} in its chat's trace"
            );
        }
    }
}

/// Forged carriers at service B (another process) naming an interaction
/// live in this process: none may write into it. `b_key` is the key B
/// verifies with, which the forger of the stale carrier holds (a replay of
/// a genuine carrier after the window is byte for byte the same).
fn forged_carriers_write_nothing(b_env: &[(&str, &str)], b_key: CarrierKey) {
    let cap = Capture::start(vec![]);
    let b = start_b(&cap, b_env);
    let client_a = client_with(&cap, "rk_test_victim", None);
    let victim = client_a
        .begin(raindrop::Begin::new("victim-user", "chat").input("victim question"))
        .unwrap();
    let victim_id = victim.event_id().unwrap().to_owned();
    let trace_id = [0x4b; 16];
    let traceparent = "00-4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b-00f067aa0ba902b7-01";
    let forged = InteractionBaggage {
        event_id: Some(victim_id.clone()),
        user_id: Some("attacker".into()),
        ..Default::default()
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let bogus = format!(
        "v1;kid={};ts={now};fin=1;sig={}",
        b_key.id(),
        "ab".repeat(32)
    );
    let signatures = [
        None,                                                                        // unsigned
        Some(bogus), // bogus signature
        Some(CarrierKey::from_secret(b"guess").sign(&trace_id, &forged, true, now)), // another key
        Some(b_key.sign(&trace_id, &forged, true, now - 600)), // replayed after the window
        Some(b_key.sign(&trace_id, &forged, true, now + 600)), // from the future
    ];
    let rt = runtime();
    rt.block_on(async {
        for (i, sig) in signatures.iter().enumerate() {
            for path in ["/tools", "/joined", "/finish"] {
                let mut h = axum::http::HeaderMap::new();
                h.insert("traceparent", traceparent.parse().unwrap());
                h.insert("baggage", forged.inject(None).unwrap().parse().unwrap());
                if let Some(s) = sig {
                    h.insert("x-raindrop-signature", s.parse().unwrap());
                }
                post_to(b.addr, path, h, &format!(r#"{{"question":"forged {i}"}}"#)).await;
            }
        }
    });
    victim.finish("victim answer");
    assert!(client_a.flush(Duration::from_secs(20)));
    let stats_b = b.stop();
    assert_eq!(stats_b["carriers_unsigned"], 3, "{stats_b}");
    assert_eq!(stats_b["carriers_bad_signature"], 6, "{stats_b}");
    assert_eq!(stats_b["carriers_stale"], 6, "{stats_b}");
    assert_eq!(
        stats_b["joined_finishes_refused"], 0,
        "nothing joined: {stats_b}"
    );

    let partials = cap.delivered("events/track_partial");
    let of_victim: Vec<&Value> = partials
        .iter()
        .filter(|p| p["event_id"] == victim_id.as_str())
        .collect();
    assert!(!of_victim.is_empty());
    for p in &of_victim {
        assert_eq!(p["user_id"], "victim-user", "{p:#}");
        assert!(
            p["properties"].get("served_by").is_none()
                && p["properties"].get("joined_question").is_none(),
            "nothing of B in the victim's event: {p:#}"
        );
    }
    let finals: Vec<&&Value> = of_victim
        .iter()
        .filter(|p| p["is_pending"] == false)
        .collect();
    assert_eq!(finals.len(), 1, "{of_victim:#?}");
    assert_eq!(finals[0]["ai_data"]["output"], "victim answer");
    assert!(
        partials.iter().all(|p| p["user_id"] != "attacker"),
        "the forged user id went nowhere"
    );
    // The forged requests' spans continue their trace but not the event:
    // B's interaction spans began events of their own.
    let spans = span_events(&cap.spans());
    let of_b: Vec<_> = spans
        .iter()
        .filter(|(n, _, _)| n == "agent.workflow" || n == "lookup.tool" || n == "rank.tool")
        .collect();
    assert_eq!(of_b.len(), 5 * 4, "{spans:?}");
    for (name, event, trace) in of_b {
        assert_ne!(
            event.as_deref(),
            Some(victim_id.as_str()),
            "{name} landed in the victim's event"
        );
        // OTLP JSON ids are base64: this is the forged traceparent's 0x4b * 16.
        assert_eq!(
            trace, "S0tLS0tLS0tLS0tLS0tLSw==",
            "{name}: the W3C trace continues"
        );
    }
}

#[test]
fn forged_carriers_write_nothing_into_a_live_interaction_with_a_shared_secret() {
    forged_carriers_write_nothing(
        &[
            ("RAINDROP_WRITE_KEY", "rk_test_service_b"),
            ("RAINDROP_PROPAGATION_SECRET", SECRET),
        ],
        CarrierKey::from_secret(SECRET.as_bytes()),
    );
}

#[test]
fn forged_carriers_write_nothing_into_a_live_interaction_with_no_secret_configured() {
    // B's key is derived from its write key.
    forged_carriers_write_nothing(
        &[("RAINDROP_WRITE_KEY", "rk_test_service_b")],
        CarrierKey::from_write_key("rk_test_service_b"),
    );
}

/// A carrier made by a raindrop interaction span of `client` (service A
/// without a server): its headers, its event id, and the span, which
/// finishes the interaction when dropped.
fn carrier_from(
    client: &Client,
    options: InjectOptions,
) -> (axum::http::HeaderMap, String, tracing::Span) {
    let subscriber = tracing_subscriber::registry().with(raindrop::layer_for(client));
    tracing::subscriber::with_default(subscriber, || {
        let span = tracing::info_span!(
            "chat",
            raindrop.kind = "interaction",
            raindrop.user_id = "owner"
        );
        let mut h = axum::http::HeaderMap::new();
        let id = span.in_scope(|| {
            let i = raindrop::resume_interaction();
            i.set_input("owner question");
            assert!(propagate::inject_with(&mut h, options));
            i.event_id().unwrap().to_owned()
        });
        (h, id, span)
    })
}

#[test]
fn a_joined_service_finishes_only_when_the_owner_delegated_it() {
    let cap = Capture::start(vec![]);
    let b = start_b(
        &cap,
        &[
            ("RAINDROP_WRITE_KEY", "rk_test_service_b"),
            ("RAINDROP_PROPAGATION_SECRET", SECRET),
        ],
    );
    let client_a = client_with(&cap, "rk_test_service_a", Some(SECRET));
    let (plain, plain_id, plain_span) = carrier_from(&client_a, InjectOptions::new());
    let (delegated, delegated_id, delegated_span) =
        carrier_from(&client_a, InjectOptions::new().delegate_finish());
    assert!(plain.contains_key("x-raindrop-signature"));
    runtime().block_on(async {
        post_to(b.addr, "/finish", plain, "{}").await;
        post_to(b.addr, "/finish", delegated, "{}").await;
    });
    drop((plain_span, delegated_span));
    assert!(client_a.flush(Duration::from_secs(20)));
    let stats_b = b.stop();
    assert_eq!(stats_b["joined_finishes_refused"], 1, "{stats_b}");
    assert_eq!(stats_b["carriers_bad_signature"], 0, "{stats_b}");

    let partials = cap.delivered("events/track_partial");
    let finals_of = |id: &str| -> Vec<Value> {
        partials
            .iter()
            .filter(|p| p["event_id"] == id && p["is_pending"] == false)
            .map(|p| p["ai_data"]["output"].clone())
            .collect()
    };
    assert!(
        !finals_of(&plain_id).contains(&Value::from("finished by b")),
        "{partials:#?}"
    );
    assert!(
        finals_of(&delegated_id).contains(&Value::from("finished by b")),
        "{partials:#?}"
    );
    assert!(
        partials.iter().all(|p| p["user_id"] == "owner"),
        "{partials:#?}"
    );
}

// ------------------------------------------------- live hijack (one process)

/// Request 1 of the hijack test: begins an interaction, tells the test its
/// event id, waits until request 2 is done, finishes with its own output.
#[raindrop::interaction("chat", user_id = "owner")]
async fn held(axum::extract::State(s): axum::extract::State<Hold>) -> String {
    let i = raindrop::resume_interaction();
    i.set_input("owner question");
    let _ = s.started.send(i.event_id().unwrap().to_owned()).await;
    let release = s.release.lock().await.take().unwrap();
    let _ = release.await;
    i.finish("owner answer");
    "owner answer".to_owned()
}

/// Request 2: tries everything with the interaction its carrier names.
async fn hijack() -> String {
    let i = raindrop::resume_interaction();
    i.set_user_id("attacker");
    i.finish("hijacked");
    format!("{:?}", i.event_id())
}

#[derive(Clone)]
struct Hold {
    started: tokio::sync::mpsc::Sender<String>,
    release: std::sync::Arc<tokio::sync::Mutex<Option<tokio::sync::oneshot::Receiver<()>>>>,
}

#[test]
fn a_carrier_never_hands_out_a_running_interaction_of_the_same_process() {
    let cap = Capture::start(vec![]);
    let client_a = client_with(&cap, "rk_test_service_a", None);
    let key = CarrierKey::from_write_key("rk_test_service_a");
    for signed in [false, true] {
        let (started_tx, mut started) = tokio::sync::mpsc::channel(1);
        let (release_tx, release_rx) = tokio::sync::oneshot::channel();
        let hold = Hold {
            started: started_tx,
            release: std::sync::Arc::new(tokio::sync::Mutex::new(Some(release_rx))),
        };
        let app = Router::new()
            .route("/held", post(held))
            .route("/hijack", post(hijack))
            .with_state(hold)
            .layer(propagate::tower::PropagationLayer::new());
        let a = Service::start(&client_a, app);
        let rt = runtime();
        rt.block_on(async {
            let addr = a.addr;
            let first =
                tokio::spawn(async move { post_to(addr, "/held", Default::default(), "{}").await });
            let id = tokio::time::timeout(Duration::from_secs(20), started.recv())
                .await
                .unwrap()
                .unwrap();
            // Request 2 names request 1's event id: unsigned, then with a
            // valid signature (a genuine carrier replayed within the
            // window): even then it gets no handle on request 1.
            let trace_id = [0x11; 16];
            let baggage = InteractionBaggage {
                event_id: Some(id.clone()),
                user_id: Some(if signed { "owner" } else { "attacker" }.into()),
                ..Default::default()
            };
            let mut h = axum::http::HeaderMap::new();
            h.insert(
                "traceparent",
                "00-11111111111111111111111111111111-00f067aa0ba902b7-01"
                    .parse()
                    .unwrap(),
            );
            h.insert("baggage", baggage.inject(None).unwrap().parse().unwrap());
            if signed {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                h.insert(
                    "x-raindrop-signature",
                    key.sign(&trace_id, &baggage, false, now).parse().unwrap(),
                );
            }
            post_to(addr, "/hijack", h, "{}").await;
            release_tx.send(()).unwrap();
            first.await.unwrap();
            assert!(client_a.flush(Duration::from_secs(20)));
            let partials = cap.delivered("events/track_partial");
            let of_owner: Vec<&Value> = partials
                .iter()
                .filter(|p| p["event_id"] == id.as_str())
                .collect();
            let finals: Vec<&&Value> = of_owner
                .iter()
                .filter(|p| p["is_pending"] == false)
                .collect();
            assert_eq!(finals.len(), 1, "signed={signed}: {of_owner:#?}");
            assert_eq!(finals[0]["ai_data"]["output"], "owner answer");
            assert_eq!(finals[0]["user_id"], "owner");
            assert!(
                of_owner.iter().all(|p| p["user_id"] == "owner"),
                "{of_owner:#?}"
            );
        });
        drop(a);
    }
    let s = client_a.stats();
    // The owner's finish was never the ignored one.
    assert_eq!(s.finishes_ignored, 0, "{s:?}");
    assert_eq!(s.carriers_unsigned, 1, "{s:?}");
    // Signed: joined, and both the user change and the finish refused.
    assert_eq!(s.joined_user_changes_refused, 1, "{s:?}");
    assert_eq!(s.joined_finishes_refused, 1, "{s:?}");
}

#[test]
fn trust_unsigned_joins_unsigned_carriers_where_the_network_is_the_boundary() {
    let cap = Capture::start(vec![]);
    let client_a = client_with(&cap, "rk_test_service_a", None);
    let client_b = client_with(&cap, "rk_test_service_b", None);
    let owner = client_a
        .begin(raindrop::Begin::new("owner", "chat").input("q"))
        .unwrap();
    let id = owner.event_id().unwrap().to_owned();
    let b = Service::start(
        &client_b,
        service_b_routes().layer(propagate::tower::PropagationLayer::trust_unsigned()),
    );
    let baggage = InteractionBaggage {
        event_id: Some(id.clone()),
        user_id: Some("owner".into()),
        ..Default::default()
    };
    runtime().block_on(async {
        let mut h = axum::http::HeaderMap::new();
        h.insert(
            "traceparent",
            "00-22222222222222222222222222222222-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        h.insert("baggage", baggage.inject(None).unwrap().parse().unwrap());
        post_to(b.addr, "/tools", h, r#"{"question":"q"}"#).await;
    });
    drop(b);
    owner.finish("a");
    assert!(client_a.flush(Duration::from_secs(20)));
    assert!(client_b.flush(Duration::from_secs(20)));
    assert_eq!(client_b.stats().carriers_unsigned, 0);
    let partials = cap.delivered("events/track_partial");
    assert!(
        partials
            .iter()
            .any(|p| p["event_id"] == id.as_str() && p["properties"]["served_by"] == "agent-b"),
        "{partials:#?}"
    );
}
