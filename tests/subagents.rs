//! Detached sub-agents across two processes (issue 24): the launcher (this
//! process) dispatches work with a hand-off carrier; the child (this test
//! binary started again with `CHILD` set, see `subagent_child`) runs it as
//! its own event over real loopback HTTP. Both deliver to one capture
//! server. Also: carriers written exactly as the Python SDK writes them,
//! and the Rust launcher's carrier read the way a Python reader does.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use axum::routing::post;
use axum::{Json, Router};
use raindrop::handoff::Handoff;
use raindrop::propagate;
use raindrop::propagate::CarrierTrust;
use raindrop::{Begin, Client, ClientOptions};
use raindrop_test_support::{Capture, ChildService};
use serde::Deserialize;
use serde_json::Value;
use tracing_subscriber::prelude::*;

/// Set in the child process: the capture endpoint it delivers to.
const CHILD: &str = "RAINDROP_TEST_SUBAGENT_CHILD";
const SECRET: &str = "test-subagent-secret";

// ------------------------------------------------------------ the child

static CHILD_CLIENT: OnceLock<Client> = OnceLock::new();

#[raindrop::tool]
fn search(query: String) -> String {
    format!("found {query}")
}

/// A sub-agent's run from request headers: finishes its own event.
async fn run_route() -> &'static str {
    let run = raindrop::resume_interaction();
    run.set_input("research the thing");
    search("rust".into());
    run.finish("done by child");
    "ok"
}

/// A run that ends without a finish: cancelled when the request ends.
async fn dropped_route() -> &'static str {
    raindrop::resume_interaction().set_input("will be abandoned");
    search("abandoned".into());
    "ok"
}

/// An interaction handler under a hand-off is the child's own event, and
/// finishes it with its return value.
#[raindrop::interaction("child_turn")]
async fn interaction_route() -> String {
    search("inside".into());
    "answered".to_owned()
}

/// An ordinary continuation (no hand-off): joins the caller's interaction.
async fn join_route() -> &'static str {
    raindrop::resume_interaction().set_property("served_by", "rust");
    "ok"
}

#[derive(Deserialize)]
struct Job {
    carrier: BTreeMap<String, String>,
    fail: bool,
}

/// A job worker: the carrier comes in the payload. It either fails before
/// opening a span, or runs and is cancelled explicitly half way.
async fn job_route(Json(job): Json<Job>) -> &'static str {
    let client = CHILD_CLIENT.get().unwrap();
    let h = Handoff::from_pairs(job.carrier.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .unwrap()
        .unwrap();
    if job.fail {
        h.fail(client, "could not decode the job").unwrap();
        return "failed";
    }
    let (run, span) = propagate::resume_subagent(client, &h, CarrierTrust::Signed).unwrap();
    let _entered = span.enter();
    run.set_input("job input");
    search("before".into());
    run.cancel();
    search("after".into());
    "cancelled"
}

/// Not a test of its own: the child service when this binary runs with
/// `CHILD` set. It prints its address, serves until stdin closes, flushes
/// and prints its stats.
#[test]
fn subagent_child() {
    let Ok(endpoint) = std::env::var(CHILD) else {
        return;
    };
    let client = Client::new(
        ClientOptions::from_env()
            .endpoint(endpoint)
            .upload_interval(Duration::from_millis(50)),
    )
    .unwrap();
    CHILD_CLIENT.set(client.clone()).unwrap();
    let app = Router::new()
        .route("/run", post(run_route))
        .route("/dropped", post(dropped_route))
        .route("/join", post(join_route))
        .route("/interaction", post(interaction_route))
        .route("/job", post(job_route))
        .layer(propagate::tower::PropagationLayer::new());
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let c = client.clone();
    let server = std::thread::spawn(move || {
        let subscriber = tracing_subscriber::registry().with(raindrop::layer_for(&c));
        let _default = tracing::subscriber::set_default(subscriber);
        runtime().block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stop_rx.await;
                })
                .await;
        });
    });
    let addr: SocketAddr = addr_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    println!("RAINDROP-CHILD addr={addr}");
    std::io::stdout().flush().unwrap();
    let mut rest = String::new();
    let _ = std::io::stdin().read_to_string(&mut rest);
    let _ = stop.send(());
    server.join().unwrap();
    assert!(
        client.flush(Duration::from_secs(20)),
        "child flush timed out"
    );
    let s = client.stats();
    println!(
        "RAINDROP-CHILD stats={}",
        serde_json::json!({
            "carriers_unsigned": s.carriers_unsigned,
            "carriers_bad_signature": s.carriers_bad_signature,
            "carriers_stale": s.carriers_stale,
            "carriers_malformed": s.carriers_malformed,
        })
    );
    std::io::stdout().flush().unwrap();
}

/// The child in its own process, given these environment variables (plus
/// the capture endpoint).
fn start_child(cap: &Capture, env: &[(&str, &str)]) -> ChildService {
    let endpoint = cap.endpoint();
    let mut env = env.to_vec();
    env.push((CHILD, &endpoint));
    ChildService::start("subagent_child", "RAINDROP-CHILD ", &env)
}

// ------------------------------------------------------------ helpers

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn post_to(addr: SocketAddr, path: &str, headers: &BTreeMap<String, String>, body: &str) {
    let mut h = reqwest::header::HeaderMap::new();
    for (k, v) in headers {
        h.insert(
            reqwest::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    runtime().block_on(async {
        let res = reqwest::Client::new()
            .post(format!("http://{addr}{path}"))
            .headers(h)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .timeout(Duration::from_secs(20))
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "{res:?}");
    });
}

fn launcher(cap: &Capture) -> Client {
    Client::new(
        ClientOptions::default()
            .write_key("rk_test_launcher")
            .propagation_secret(SECRET)
            .endpoint(cap.endpoint())
            .workshop(raindrop::Workshop::Off)
            .upload_interval(Duration::from_millis(50)),
    )
    .unwrap()
}

fn attr(span: &Value, key: &str) -> Option<String> {
    span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .and_then(|a| a["value"]["stringValue"].as_str().map(str::to_owned))
}

fn spans_of<'a>(spans: &'a [Value], event_id: &str) -> Vec<&'a Value> {
    spans
        .iter()
        .filter(|s| {
            attr(s, "traceloop.association.properties.event_id").as_deref() == Some(event_id)
        })
        .collect()
}

/// OTLP/JSON ids are base64; the hand-off attributes are hex.
fn b64_hex(s: &str) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = String::new();
    for c in s.bytes().filter(|c| *c != b'=') {
        bits = bits << 6 | A.iter().position(|a| *a == c).unwrap() as u32;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push_str(&format!("{:02x}", (bits >> n) & 0xff));
        }
    }
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

fn finals_of(partials: &[Value], event_id: &str) -> Vec<Value> {
    partials
        .iter()
        .filter(|p| p["event_id"] == event_id && p["is_pending"] == false)
        .cloned()
        .collect()
}

/// The link attributes every span of a child carries, as the contract
/// names them.
fn assert_linked(span: &Value, h: &Handoff, cancelled: bool) {
    assert_eq!(
        attr(span, "raindrop.handoff.parentEventId").as_deref(),
        Some(h.parent_event_id.as_str()),
        "{span:#}"
    );
    assert_eq!(
        attr(span, "raindrop.handoff.parentSpanId"),
        Some(hex(&h.dispatch_span_id)),
        "{span:#}"
    );
    assert_eq!(
        attr(span, "raindrop.handoff.name").as_deref(),
        Some(h.name.as_str())
    );
    assert_eq!(
        attr(span, "raindrop.agent.role").as_deref(),
        Some("subagent")
    );
    assert_eq!(
        attr(span, "raindrop.handoff.terminal").as_deref(),
        cancelled.then_some("cancelled"),
        "{span:#}"
    );
    assert_eq!(b64_hex(span["traceId"].as_str().unwrap()), hex(&h.trace_id));
}

// ------------------------------------------------------------ tests

#[test]
fn a_subagent_runs_in_another_process_as_its_own_linked_event() {
    let cap = Capture::start(vec![]);
    let child = start_child(
        &cap,
        &[
            ("RAINDROP_WRITE_KEY", "rk_test_child"),
            ("RAINDROP_PROPAGATION_SECRET", SECRET),
        ],
    );
    let client = launcher(&cap);
    let subscriber = tracing_subscriber::registry().with(raindrop::layer_for(&client));
    let (parent_event, handoffs) = tracing::subscriber::with_default(subscriber, || {
        let chat = tracing::info_span!(
            "chat",
            raindrop.kind = "interaction",
            raindrop.user_id = "u-1",
            raindrop.convo_id = "convo-1",
            raindrop.input = "plan the research"
        );
        chat.in_scope(|| {
            let parent_event = raindrop::resume_interaction()
                .event_id()
                .unwrap()
                .to_owned();
            let ran = raindrop::subagent("researcher").unwrap();
            post_to(child.addr, "/run", &ran.to_map(), "{}");
            let dropped = raindrop::subagent("abandoner").unwrap();
            post_to(child.addr, "/dropped", &dropped.to_map(), "{}");
            let turn = raindrop::subagent("interactive").unwrap();
            post_to(child.addr, "/interaction", &turn.to_map(), "{}");
            let job = raindrop::subagent("job-worker").unwrap();
            let body = serde_json::json!({"carrier": job.to_map(), "fail": false});
            post_to(child.addr, "/job", &BTreeMap::new(), &body.to_string());
            let failed = raindrop::subagent("failing-job").unwrap();
            let body = serde_json::json!({"carrier": failed.to_map(), "fail": true});
            post_to(child.addr, "/job", &BTreeMap::new(), &body.to_string());

            // A carrier naming its child event id twice, differently.
            let conflicting = raindrop::subagent("conflicting").unwrap();
            let mut map = conflicting.to_map();
            let twice = format!(
                "{},raindrop-child-event-id=someone-elses-event",
                map["x-raindrop-handoff"]
            );
            map.insert("x-raindrop-handoff".into(), twice);
            post_to(child.addr, "/run", &map, "{}");
            // A forged one: another user under the launcher's signature.
            let forged = raindrop::subagent("forged").unwrap();
            let mut map = forged.to_map();
            let other = map["x-raindrop-handoff"].replace("u-1", "mallory");
            map.insert("x-raindrop-handoff".into(), other);
            post_to(child.addr, "/run", &map, "{}");
            // An unsigned one.
            let unsigned = raindrop::subagent("unsigned").unwrap();
            let mut map = unsigned.to_map();
            map.remove("x-raindrop-signature");
            post_to(child.addr, "/run", &map, "{}");

            raindrop::resume_interaction().finish("launched");
            let hs = [
                ran,
                dropped,
                job,
                failed,
                conflicting,
                forged,
                unsigned,
                turn,
            ];
            (parent_event, hs)
        })
    });
    let stats = child.stop();
    assert!(client.flush(Duration::from_secs(20)));
    let [ran, dropped, job, failed, conflicting, forged, unsigned, turn] = handoffs;

    assert_eq!(stats["carriers_malformed"], 1, "{stats}");
    assert_eq!(stats["carriers_bad_signature"], 1, "{stats}");
    assert_eq!(stats["carriers_unsigned"], 1, "{stats}");
    assert_eq!(stats["carriers_stale"], 0, "{stats}");

    let spans = cap.spans();
    let partials = cap.delivered("events/track_partial");
    let chat = spans.iter().find(|s| s["name"] == "chat.workflow").unwrap();

    // The launcher's dispatch spans: children of its interaction span.
    let dispatches: Vec<&Value> = spans
        .iter()
        .filter(|s| s["name"] == "ai.subagent.dispatch")
        .collect();
    assert_eq!(dispatches.len(), 8, "{spans:#?}");
    for h in [&ran, &dropped, &job, &failed, &turn] {
        let d = dispatches
            .iter()
            .find(|d| {
                attr(d, "raindrop.handoff.childEventId").as_deref() == Some(&h.child_event_id)
            })
            .unwrap();
        assert_eq!(
            attr(d, "raindrop.handoff.mode").as_deref(),
            Some("detached")
        );
        assert_eq!(
            attr(d, "raindrop.handoff.name").as_deref(),
            Some(h.name.as_str())
        );
        assert_eq!(
            attr(d, "traceloop.association.properties.event_id").as_deref(),
            Some(parent_event.as_str())
        );
        assert_eq!(d["traceId"], chat["traceId"]);
        assert_eq!(d["parentSpanId"], chat["spanId"]);
        assert_eq!(
            b64_hex(d["spanId"].as_str().unwrap()),
            hex(&h.dispatch_span_id)
        );
        assert_eq!(h.parent_event_id, parent_event);
        assert_ne!(h.child_event_id, parent_event);
    }

    // The child ran as its own event, finished by itself, the launcher's user's.
    let finals = finals_of(&partials, &ran.child_event_id);
    assert_eq!(finals.len(), 1, "{partials:#?}");
    assert_eq!(finals[0]["ai_data"]["output"], "done by child");
    assert_eq!(finals[0]["user_id"], "u-1");
    assert_eq!(finals[0]["event"], "researcher");
    assert!(finals[0]["properties"]
        .get("raindrop.handoff.terminal")
        .is_none());
    let child_spans = spans_of(&spans, &ran.child_event_id);
    assert!(!child_spans.is_empty(), "{spans:#?}");
    for s in &child_spans {
        assert_linked(s, &ran, false);
    }
    let tool = child_spans
        .iter()
        .find(|s| s["name"] == "search.tool")
        .unwrap();
    assert_eq!(
        b64_hex(tool["parentSpanId"].as_str().unwrap()),
        hex(&ran.dispatch_span_id)
    );
    // The launcher's event is untouched by the child.
    let parent_finals = finals_of(&partials, &parent_event);
    assert_eq!(parent_finals.len(), 1);
    assert_eq!(parent_finals[0]["ai_data"]["output"], "launched");

    // An interaction span in the child is the child's event and ends it.
    let finals = finals_of(&partials, &turn.child_event_id);
    assert_eq!(finals.len(), 1, "{partials:#?}");
    assert_eq!(finals[0]["ai_data"]["output"], "answered");
    assert!(finals[0]["properties"]
        .get("raindrop.handoff.terminal")
        .is_none());
    let turn_spans = spans_of(&spans, &turn.child_event_id);
    assert!(
        turn_spans
            .iter()
            .any(|s| s["name"] == "child_turn.workflow"),
        "{spans:#?}"
    );
    assert_eq!(turn_spans.len(), 2, "{spans:#?}");
    for s in &turn_spans {
        assert_linked(s, &turn, false);
    }

    // Dropped without a finish: cancelled, as the event property.
    let finals = finals_of(&partials, &dropped.child_event_id);
    assert_eq!(finals.len(), 1, "{partials:#?}");
    assert_eq!(
        finals[0]["properties"]["raindrop.handoff.terminal"],
        "cancelled"
    );
    for s in spans_of(&spans, &dropped.child_event_id) {
        // Its tool span ended before the request did.
        assert_linked(s, &dropped, false);
    }

    // Cancelled explicitly: the event says so, and so do spans ending after.
    let finals = finals_of(&partials, &job.child_event_id);
    assert_eq!(finals.len(), 1, "{partials:#?}");
    assert_eq!(
        finals[0]["properties"]["raindrop.handoff.terminal"],
        "cancelled"
    );
    let job_spans = spans_of(&spans, &job.child_event_id);
    assert_eq!(job_spans.len(), 2, "{spans:#?}");
    for s in &job_spans {
        let after = attr(s, "traceloop.entity.input").is_some_and(|i| i.contains("after"));
        assert_linked(s, &job, after);
    }

    // Failed before any span: one ai.subagent.failed span, no event.
    let failed_spans = spans_of(&spans, &failed.child_event_id);
    assert_eq!(failed_spans.len(), 1, "{spans:#?}");
    let f = failed_spans[0];
    assert_eq!(f["name"], "ai.subagent.failed");
    assert_eq!(
        attr(f, "ai.operationId").as_deref(),
        Some("ai.subagent.failed")
    );
    assert_eq!(f["status"]["code"], 2);
    assert_eq!(f["status"]["message"], "could not decode the job");
    assert_linked(f, &failed, false);
    assert!(finals_of(&partials, &failed.child_event_id).is_empty());

    // Refused carriers record nothing under their child ids.
    for h in [&conflicting, &forged, &unsigned] {
        assert!(spans_of(&spans, &h.child_event_id).is_empty(), "{}", h.name);
        assert!(
            partials
                .iter()
                .all(|p| p["event_id"] != h.child_event_id.as_str()),
            "{}",
            h.name
        );
    }
    assert!(partials
        .iter()
        .all(|p| p["event_id"] != "someone-elses-event"));
}

/// Python's `urllib.parse.quote(v, safe="")`, for writing carriers by hand.
fn py_quote(v: &str) -> String {
    v.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A reader of the Python carrier written from the contract: read
/// `x-raindrop-handoff` first, else `baggage`; members `key=value` split on
/// `,`, member properties after `;` dropped, values `unquote`d; only the
/// seven raindrop keys kept. It also checks what Python's `unquote` needs:
/// only unreserved characters and `%XX` escapes in values.
fn python_reader(headers: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    const KEYS: [&str; 7] = [
        "raindrop-event-id",
        "raindrop-child-event-id",
        "raindrop-handoff-name",
        "raindrop-convo-id",
        "raindrop-user-id",
        "raindrop-dispatch-span-id",
        "raindrop-trace-id",
    ];
    let text = headers
        .get("x-raindrop-handoff")
        .or_else(|| headers.get("baggage"))
        .expect("a carrier header");
    let mut out = BTreeMap::new();
    for member in text.split(',') {
        let kv = member.split(';').next().unwrap().trim();
        let (k, v) = kv.split_once('=').expect("key=value");
        if !KEYS.contains(&k) {
            continue;
        }
        assert!(
            v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)),
            "{k}={v} is not quoted as Python quotes"
        );
        let mut bytes = Vec::new();
        let raw = v.as_bytes();
        let mut i = 0;
        while i < raw.len() {
            if raw[i] == b'%' {
                let h = std::str::from_utf8(&raw[i + 1..i + 3]).unwrap();
                bytes.push(u8::from_str_radix(h, 16).unwrap());
                i += 3;
            } else {
                bytes.push(raw[i]);
                i += 1;
            }
        }
        let old = out.insert(k.to_owned(), String::from_utf8(bytes).unwrap());
        assert!(old.is_none(), "{k} twice");
    }
    out
}

#[test]
fn python_carriers_are_understood_and_rust_carriers_read_as_python_reads_them() {
    // The Rust launcher's carrier, read by the Python reader.
    let cap = Capture::start(vec![]);
    let client = launcher(&cap);
    let turn = client
        .begin(
            Begin::new("ada lovelace+1@example.com", "chat")
                .convo_id("c;1=2,3")
                .input("hi"),
        )
        .unwrap();
    let h = turn.subagent("web/research, part 2").unwrap();
    let headers = h.to_map();
    let read = python_reader(&headers);
    let want: BTreeMap<String, String> = [
        ("raindrop-event-id", turn.event_id().unwrap().to_owned()),
        ("raindrop-child-event-id", h.child_event_id.clone()),
        ("raindrop-handoff-name", "web/research, part 2".to_owned()),
        ("raindrop-convo-id", "c;1=2,3".to_owned()),
        ("raindrop-user-id", "ada lovelace+1@example.com".to_owned()),
        ("raindrop-dispatch-span-id", hex(&h.dispatch_span_id)),
        ("raindrop-trace-id", hex(&h.trace_id)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(read, want);
    assert_eq!(headers["baggage"], headers["x-raindrop-handoff"]);
    assert_eq!(
        headers["traceparent"],
        format!("00-{}-{}-01", hex(&h.trace_id), hex(&h.dispatch_span_id))
    );

    // A carrier written exactly as Python's `to_headers()` writes it, to a
    // Rust child that trusts unsigned carriers (Python does not sign).
    let child = start_child(
        &cap,
        &[
            ("RAINDROP_WRITE_KEY", "rk_test_child"),
            ("RAINDROP_PROPAGATION_TRUST", "unsigned"),
        ],
    );
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let dispatch = "00f067aa0ba902b7";
    let members = [
        ("raindrop-event-id", "py-parent-1"),
        ("raindrop-child-event-id", "py-child-1"),
        ("raindrop-handoff-name", "web research"),
        ("raindrop-convo-id", "convo/7"),
        ("raindrop-user-id", "ada@example.com"),
        ("raindrop-dispatch-span-id", dispatch),
        ("raindrop-trace-id", trace),
    ]
    .iter()
    .map(|(k, v)| format!("{k}={}", py_quote(v)))
    .collect::<Vec<_>>()
    .join(",");
    assert!(members.contains("raindrop-handoff-name=web%20research,raindrop-convo-id=convo%2F7,raindrop-user-id=ada%40example.com"));
    let py_headers: BTreeMap<String, String> = [
        ("traceparent", format!("00-{trace}-{dispatch}-01")),
        ("baggage", members.clone()),
        ("x-raindrop-handoff", members),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    post_to(child.addr, "/run", &py_headers, "{}");
    // A Python continuation (not a hand-off), in Python's spelling.
    let continuation: BTreeMap<String, String> = [
        ("traceparent", format!("00-{trace}-{dispatch}-01")),
        (
            "baggage",
            "raindrop-event-id=py-event-2,raindrop-user-id=ada%40example.com".to_owned(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    post_to(child.addr, "/join", &continuation, "{}");
    let stats = child.stop();
    assert_eq!(stats["carriers_unsigned"], 0, "{stats}");
    assert_eq!(stats["carriers_malformed"], 0, "{stats}");

    let spans = cap.spans();
    let partials = cap.delivered("events/track_partial");
    let finals = finals_of(&partials, "py-child-1");
    assert_eq!(finals.len(), 1, "{partials:#?}");
    assert_eq!(finals[0]["user_id"], "ada@example.com");
    assert_eq!(finals[0]["ai_data"]["convo_id"], "convo/7");
    assert_eq!(finals[0]["ai_data"]["output"], "done by child");
    let py_handoff = Handoff::from_pairs(py_headers.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .unwrap()
        .unwrap();
    let child_spans = spans_of(&spans, "py-child-1");
    assert!(!child_spans.is_empty(), "{spans:#?}");
    for s in child_spans {
        assert_linked(s, &py_handoff, false);
        assert_eq!(
            attr(s, "raindrop.handoff.parentSpanId").as_deref(),
            Some(dispatch)
        );
    }
    let joined: Vec<&Value> = partials
        .iter()
        .filter(|p| p["event_id"] == "py-event-2")
        .collect();
    assert!(
        joined
            .iter()
            .any(|p| p["properties"]["served_by"] == "rust"),
        "{partials:#?}"
    );
    drop(turn);
}
