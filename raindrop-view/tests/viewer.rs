//! The viewer over real HTTP on 127.0.0.1: the chat example's recording,
//! a file that grows, the `--listen` mode fed by a real SDK client, `--text`.

mod common;

use std::io::Write as _;
use std::time::Duration;

use common::{
    all_spans, data, fixture, get, post_all, request, request_with, start, temp_path, wait_until,
};
use serde_json::{json, Value};

fn interactions(d: &Value) -> Vec<Value> {
    d["interactions"].as_array().cloned().unwrap_or_default()
}

#[test]
fn serves_the_chat_recording_as_json_and_html() {
    let v = start(&[fixture().to_str().unwrap()]);
    let d = data(&v.base);
    let ixs = interactions(&d);
    // The chat example: five questions, each one interaction.
    let chats: Vec<&Value> = ixs.iter().filter(|i| i["event"] == "chat").collect();
    assert_eq!(chats.len(), 5, "{d:#}");
    assert!(chats
        .iter()
        .all(|i| i["kind"] == "interaction" && i["finished"] == true));
    // Four answered by the (simulated) model, one refused before it ran.
    assert_eq!(chats.iter().filter(|i| i["model"] == "sim-1").count(), 4);
    assert!(chats
        .iter()
        .all(|i| i["duration_ms"].as_f64().unwrap() > 0.0));

    // The division by zero: a failed calculator tool span under the workflow.
    let maths = chats
        .iter()
        .find(|i| i["input"] == "What is 10 / (5 - 5)?")
        .expect("the division question");
    let spans = all_spans(&maths["spans"]);
    let calc = spans
        .iter()
        .find(|s| s["name"] == "calculator.tool")
        .expect("calculator tool span");
    assert_eq!(calc["kind"], "tool");
    assert_eq!(calc["error"], "division by zero");
    assert_eq!(calc["input"], "10 / (5 - 5)");
    assert_eq!(maths["spans"][0]["kind"], "workflow");
    assert_eq!(maths["span_errors"], 1);
    // ... and its two signals, one with a comment.
    let signals = maths["signals"].as_array().unwrap();
    assert_eq!(signals.len(), 2, "{signals:?}");
    assert!(signals
        .iter()
        .any(|s| s["name"] == "user_feedback" && s["comment"] == "It could not do the maths."));

    // The refused question finishes as failed.
    let refused = chats
        .iter()
        .find(|i| i["status"] == "error")
        .expect("a failed interaction");
    assert!(
        refused["error"].as_str().unwrap().contains("refused"),
        "{refused:#}"
    );

    // Unchanged since this version: the page's poll gets a short answer.
    let version = d["version"].as_u64().unwrap();
    let again: Value =
        serde_json::from_str(&get(&v.base, &format!("/api/data?since={version}"))).unwrap();
    assert_eq!(again["unchanged"], true);

    // The page itself, with the data inlined (it renders before its first poll).
    let (status, head, html) = request(&v.base, "GET", "/", None, None);
    assert_eq!(status, 200);
    assert!(head.to_ascii_lowercase().contains("text/html"), "{head}");
    assert!(html.contains("<title>raindrop-view</title>"));
    assert!(html.contains("calculator.tool"));
    assert!(html.contains("division by zero"));
    assert!(
        !html.contains("/*RAINDROP_INITIAL_DATA*/"),
        "placeholder replaced"
    );
    assert!(html.contains("setInterval(poll, 1000)"), "the page polls");

    // The text tree over HTTP too.
    let text = get(&v.base, "/api/text");
    assert!(text.contains("tool calculator.tool"), "{text}");

    // Ingest routes are off without --listen.
    let (status, _, _) = request(&v.base, "POST", "/v1/events/track", None, Some("[]"));
    assert_ne!(status, 204);
}

#[test]
fn answers_loopback_host_names_only() {
    let v = start(&[fixture().to_str().unwrap()]);
    let (status, _, _) = request(&v.base, "GET", "/api/data", Some("evil.example:5898"), None);
    assert_eq!(status, 403, "a rebound DNS name must not read the data");
    let (status, _, _) = request(&v.base, "GET", "/api/data", Some("localhost:5898"), None);
    assert_eq!(status, 200);
}

#[test]
fn follows_the_file_as_it_grows_and_when_it_is_replaced() {
    let text = std::fs::read_to_string(fixture()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let path = temp_path("grow.jsonl");
    // Not there yet: the viewer waits for it.
    let v = start(&[path.to_str().unwrap()]);
    let d = data(&v.base);
    assert_eq!(interactions(&d).len(), 0);
    assert!(d["file_error"].is_string(), "{d:#}");

    // The first half, then the rest with a line cut in two writes.
    let half = lines.len() / 2;
    let mut f = std::fs::File::create(&path).unwrap();
    for l in &lines[..half] {
        writeln!(f, "{l}").unwrap();
    }
    f.flush().unwrap();
    let first = data(&v.base)["requests"].as_u64().unwrap();
    assert_eq!(first, half as u64);
    let (a, b) = lines[half].split_at(lines[half].len() / 2);
    write!(f, "{a}").unwrap();
    f.flush().unwrap();
    assert_eq!(
        data(&v.base)["requests"].as_u64().unwrap(),
        first,
        "half a line is not a request"
    );
    writeln!(f, "{b}").unwrap();
    for l in &lines[half + 1..] {
        writeln!(f, "{l}").unwrap();
    }
    f.flush().unwrap();
    assert!(wait_until(Duration::from_secs(5), || {
        data(&v.base)["requests"].as_u64() == Some(lines.len() as u64)
    }));
    let full = data(&v.base);
    assert_eq!(
        interactions(&full)
            .iter()
            .filter(|i| i["event"] == "chat")
            .count(),
        5
    );

    // A new run replaces the file: the viewer starts over.
    drop(f);
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, format!("{}\n", lines[0])).unwrap();
    assert!(wait_until(Duration::from_secs(5), || {
        data(&v.base)["requests"].as_u64() == Some(1)
    }));

    // Rewritten in place (same inode), longer than what was read: the first
    // line differs, so it is read again from the start, not from the old offset.
    let rewritten: String = lines
        .iter()
        .rev()
        .chain(lines.iter())
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&path, rewritten).unwrap();
    let d = data(&v.base);
    assert_eq!(
        d["requests"].as_u64(),
        Some(2 * lines.len() as u64),
        "{d:#}"
    );
    // The long `traces` line comes first now: read from the old offset, it
    // would be cut and lost.
    assert_eq!(d["per_path"]["traces"], 2, "{d:#}");
    assert_eq!(interactions(&d).len(), 5, "merged again by event id");
    let _ = std::fs::remove_file(&path);
}

#[test]
fn text_mode_prints_the_tree_and_exits() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_raindrop-view"))
        .args(["--text", fixture().to_str().unwrap()])
        .output()
        .expect("runs");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("What was recorded ("), "{text}");
    assert_eq!(text.matches("interaction \"chat\"").count(), 5, "{text}");
    assert!(text.contains("├─ workflow chat.workflow"), "{text}");
    assert!(text.contains("tool calculator.tool"), "{text}");
    assert!(text.contains("ERROR: division by zero"), "{text}");
    assert!(
        text.contains(
            "signal user_feedback (feedback) NEGATIVE  comment: It could not do the maths."
        ),
        "{text}"
    );
    // The one implementation: the binary prints what the library renders.
    let rec = raindrop_view::Recorded::read(&fixture()).unwrap();
    assert_eq!(text, rec.report());

    let missing = std::process::Command::new(env!("CARGO_BIN_EXE_raindrop-view"))
        .args(["--text", temp_path("missing.jsonl").to_str().unwrap()])
        .output()
        .expect("runs");
    assert!(!missing.status.success());
}

#[test]
fn listen_mode_receives_a_real_sdk_client() {
    use raindrop_core::{
        AiEvent, AttributeValue, Begin, Client, ClientOptions, Sentiment, Signal, SpanRecord,
        SpanStatus,
    };

    // Port 0 on loopback: the viewer prints the port it got.
    let v = start(&["--listen", "127.0.0.1:0"]);
    assert!(
        v.banner.contains("RAINDROP_ENDPOINT=http://127.0.0.1:"),
        "{}",
        v.banner
    );
    assert_eq!(interactions(&data(&v.base)).len(), 0);

    let client = Client::new(
        ClientOptions::default()
            .write_key("any-key")
            .endpoint(format!("{}/v1/", v.base)),
    )
    .expect("client");
    let plain = client
        .track_ai(
            AiEvent::new("user-1", "summarize")
                .model("m-1")
                .input("a long text")
                .output("short"),
        )
        .unwrap();
    let run = client
        .begin(Begin::new("user-2", "agent_run").input("plan a trip"))
        .unwrap();
    let run_id = run.event_id().expect("an id").to_owned();
    run.set_property("stage", "searching");
    run.finish("booked");
    client
        .track_signal(Signal::new(&plain, "thumbs_up").sentiment(Sentiment::Positive))
        .unwrap();
    client.identify("user-1", serde_json::Map::new()).unwrap();
    let now = std::time::SystemTime::now();
    let (trace, root_id) = (SpanRecord::new_trace_id(), SpanRecord::new_span_id());
    let link = |id: &str| {
        (
            "traceloop.association.properties.event_id".into(),
            AttributeValue::from(id),
        )
    };
    client
        .export_span(SpanRecord {
            trace_id: trace,
            span_id: root_id,
            parent_span_id: None,
            name: "agent.workflow".into(),
            start: now,
            end: now + Duration::from_millis(30),
            status: SpanStatus::Ok,
            attributes: vec![
                link(&run_id),
                ("traceloop.span.kind".into(), "workflow".into()),
            ],
        })
        .unwrap();
    client
        .export_span(SpanRecord {
            trace_id: trace,
            span_id: SpanRecord::new_span_id(),
            parent_span_id: Some(root_id),
            name: "flights.tool".into(),
            start: now + Duration::from_millis(5),
            end: now + Duration::from_millis(20),
            status: SpanStatus::Error("no flights".into()),
            attributes: vec![link(&run_id), ("traceloop.span.kind".into(), "tool".into())],
        })
        .unwrap();
    let report = client.shutdown(Duration::from_secs(10));
    assert!(report.completed, "{report:?}");
    assert_eq!(report.stats.dropped_total(), 0, "{:?}", report.stats);

    let d = data(&v.base);
    let ixs = interactions(&d);
    assert_eq!(ixs.len(), 2, "{d:#}");
    let agent = ixs
        .iter()
        .find(|i| i["event_id"] == run_id.as_str())
        .unwrap();
    assert_eq!(agent["output"], "booked");
    assert_eq!(agent["properties"]["stage"], "searching");
    assert_eq!(agent["finished"], true);
    let spans = all_spans(&agent["spans"]);
    assert_eq!(agent["spans"][0]["name"], "agent.workflow");
    assert_eq!(agent["spans"][0]["children"][0]["name"], "flights.tool");
    assert_eq!(spans[1]["error"], "no flights");
    let summarize = ixs
        .iter()
        .find(|i| i["event_id"] == plain.as_str())
        .unwrap();
    assert_eq!(summarize["kind"], "event");
    assert_eq!(summarize["signals"][0]["name"], "thumbs_up");
    assert_eq!(d["users"][0]["user_id"], "user-1");
    for p in raindrop_view::INGEST_PATHS {
        assert!(d["per_path"][p].as_u64().unwrap_or(0) >= 1, "{p}: {d:#}");
    }

    // The same page shows them.
    let html = get(&v.base, "/");
    assert!(html.contains("flights.tool") && html.contains("no flights"));

    // Unknown paths and bad bodies are refused, not stored.
    let (status, _, _) = request(&v.base, "POST", "/v1/nope", None, Some("{}"));
    assert_eq!(status, 404);
    let (status, _, _) = request(&v.base, "POST", "/v1/traces", None, Some("not json"));
    assert_eq!(status, 400);
    assert_eq!(data(&v.base)["requests"], d["requests"]);
}

/// The `raindrop-view` commands of the README and of its guide name options
/// the binary has.
#[test]
fn readme_commands_use_real_options() {
    let readme = include_str!("../../README.md");
    let guide = include_str!("../../docs/viewer.md");
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_raindrop-view"))
        .arg("--help")
        .output()
        .expect("runs");
    assert!(help.status.success());
    let help = String::from_utf8(help.stdout).unwrap();
    let mut commands = 0;
    let all = [readme, guide];
    for rest in all
        .iter()
        .flat_map(|text| text.split("cargo run -p raindrop-view -- ").skip(1))
    {
        commands += 1;
        let line = rest.lines().next().unwrap_or_default();
        let args = line.split('#').next().unwrap_or_default();
        for opt in args.split_whitespace().filter(|a| a.starts_with("--")) {
            assert!(
                help.contains(opt),
                "README uses {opt}, not in --help:\n{help}"
            );
        }
    }
    assert!(commands >= 3, "the README shows the viewer's commands");
    assert!(readme.contains("--listen") && readme.contains("--text"));
    assert!(readme.contains("](docs/viewer.png)"));
    assert!(
        std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/viewer.png")).is_file()
    );
}

/// Web pages in the developer's browser can reach 127.0.0.1: what they can
/// send without a CORS preflight (`text/plain`, forms) and what they would
/// send with one (JSON, from another origin) is refused, counted and
/// stored nowhere; the SDK (no `Origin`, JSON) and a loopback page are
/// taken. Nothing the viewer answers lets another origin read it.
#[test]
fn web_pages_cannot_send_to_the_listener() {
    let v = start(&["--listen", "127.0.0.1:0"]);
    let authority = v.base.trim_start_matches("http://").to_owned();
    let host = format!("Host: {authority}");
    let body = r#"[{"event_id": "injected", "event": "x", "user_id": "attacker"}]"#;
    let post = |headers: &[&str]| {
        let mut all = vec![host.as_str()];
        all.extend_from_slice(headers);
        request_with(&v.base, "POST", "/v1/events/track", &all, Some(body)).0
    };

    // A cross-origin page: a `text/plain` fetch or form (no preflight), and
    // JSON (had a preflight been skipped or allowed).
    let evil = "Origin: http://evil.example";
    assert_eq!(post(&[evil, "Content-Type: text/plain"]), 403);
    assert_eq!(post(&[evil, "Content-Type: text/plain;charset=UTF-8"]), 403);
    assert_eq!(post(&[evil, "Content-Type: application/json"]), 403);
    for origin in [
        "Origin: null",
        "Origin: http://127.0.0.1.evil.example",
        "Origin: http://localhost:5898@evil.example",
        "Origin: https://localhost",
        "Origin: HTTP://EVIL.EXAMPLE",
    ] {
        assert_eq!(
            post(&[origin, "Content-Type: application/json"]),
            403,
            "{origin}"
        );
    }
    // No origin, but not JSON: what a form or a beacon sends.
    assert_eq!(post(&["Content-Type: text/plain"]), 415);
    assert_eq!(
        post(&["Content-Type: application/x-www-form-urlencoded"]),
        415
    );
    assert_eq!(post(&[]), 415);
    let d = data(&v.base);
    assert_eq!(d["requests"], 0, "nothing refused was stored: {d:#}");
    assert_eq!(d["refused"], json!({"origin": 8, "content_type": 3}));

    // The SDK (no Origin) and a page on a loopback origin are taken.
    assert_eq!(post(&["Content-Type: application/json"]), 204);
    assert_eq!(
        post(&[
            "Origin: http://localhost:5898",
            "Content-Type: application/json; charset=utf-8"
        ]),
        204
    );
    let loopback = format!("Origin: http://{authority}");
    assert_eq!(post(&[&loopback, "Content-Type: Application/JSON"]), 204);
    let d = data(&v.base);
    assert_eq!(d["requests"], 3, "{d:#}");

    // A preflight gets no CORS grant, so a browser never sends the JSON.
    let (status, head, _) = request_with(
        &v.base,
        "OPTIONS",
        "/v1/events/track",
        &[
            &host,
            evil,
            "Access-Control-Request-Method: POST",
            "Access-Control-Request-Headers: content-type",
        ],
        None,
    );
    assert!(!(200..300).contains(&status), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("access-control-"),
        "{head}"
    );

    // Reads: no CORS grant either, and the page is not framed, sniffed or cached.
    for path in ["/", "/api/data", "/api/text"] {
        let (status, head, _) = request_with(&v.base, "GET", path, &[&host, evil], None);
        assert_eq!(status, 200, "{path}");
        let head = head.to_ascii_lowercase();
        assert!(!head.contains("access-control-"), "{path}: {head}");
        for h in [
            "x-content-type-options: nosniff",
            "x-frame-options: deny",
            "cross-origin-resource-policy: same-origin",
            "cache-control: no-store",
            "frame-ancestors 'none'",
            "connect-src 'self'",
        ] {
            assert!(head.contains(h), "{path}: {h}\n{head}");
        }
    }
}

fn otlp_span(id: &str, parent: Option<&str>, event_id: &str, start_ns: u64) -> Value {
    json!({"traceId": "dHJhY2U=", "spanId": id, "parentSpanId": parent, "name": format!("s-{id}"),
           "startTimeUnixNano": start_ns.to_string(), "endTimeUnixNano": (start_ns + 1000).to_string(),
           "status": {"code": 1},
           "attributes": [{"key": "traceloop.association.properties.event_id",
                           "value": {"stringValue": event_id}}]})
}

fn traces(spans: Vec<Value>) -> String {
    json!({"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]}).to_string()
}

fn event(id: &str) -> (String, String) {
    (
        "events/track_partial".into(),
        json!({"event_id": id, "event": id, "user_id": "u", "is_pending": false}).to_string(),
    )
}

/// Spans whose parent ids loop or repeat: each is rendered once, marked, in
/// bounded time and memory (the naive walk made 2^64 nodes of the first
/// case, with the store locked).
#[test]
fn hostile_span_parents_render_once() {
    let v = start(&["--listen", "127.0.0.1:0"]);
    let rss_before = v.peak_rss();
    let mut bodies = vec![
        event("pair"),
        event("loop"),
        event("thousand"),
        // A root, and two spans reusing its id and naming it as parent.
        (
            "traces".into(),
            traces(vec![
                otlp_span("a", None, "pair", 1),
                otlp_span("a", Some("a"), "pair", 2),
                otlp_span("a", Some("a"), "pair", 3),
            ]),
        ),
        // Two spans naming each other, no root.
        (
            "traces".into(),
            traces(vec![
                otlp_span("x", Some("y"), "loop", 1),
                otlp_span("y", Some("x"), "loop", 2),
            ]),
        ),
        // And, not linked to any event, a span that is its own parent.
        (
            "traces".into(),
            traces(vec![otlp_span("self", Some("self"), "none", 1)]),
        ),
    ];
    // 1,000 spans with one id, each naming it as parent.
    bodies.push((
        "traces".into(),
        traces(
            (0..1000)
                .map(|i| otlp_span("same", Some("same"), "thousand", i))
                .collect(),
        ),
    ));
    post_all(&v.base, &bodies);

    let started = std::time::Instant::now();
    let body = get(&v.base, "/api/data");
    let text = get(&v.base, "/api/text");
    let page = get(&v.base, "/");
    let took = started.elapsed();
    println!(
        "rendered in {took:?}: data {} bytes, text {} bytes, page {} bytes",
        body.len(),
        text.len(),
        page.len()
    );
    assert!(
        took < Duration::from_secs(5),
        "bounded time: {took:?} (a naive walk never ends)"
    );
    // Bounded output: each of the 1,006 spans once, a few hundred bytes each.
    assert!(body.len() < 2_000_000, "{} bytes", body.len());
    let d: Value = serde_json::from_str(&body).unwrap();
    let ix = |id: &str| {
        interactions(&d)
            .into_iter()
            .find(|i| i["event_id"] == id)
            .unwrap()
    };

    let pair = all_spans(&ix("pair")["spans"]);
    assert_eq!(pair.len(), 3, "each span once: {pair:#?}");
    assert!(pair.iter().all(|s| s["duplicate_id"] == true));
    assert_eq!(ix("pair")["spans"].as_array().unwrap().len(), 1, "one root");

    let looped = ix("loop");
    assert_eq!(all_spans(&looped["spans"]).len(), 2, "{looped:#}");
    assert_eq!(looped["spans"][0]["cycle"], true);
    assert_eq!(looped["span_count"], 2);

    let thousand = all_spans(&ix("thousand")["spans"]);
    assert_eq!(thousand.len(), 1000);
    assert!(thousand.iter().all(|s| s["duplicate_id"] == true));
    let orphans = all_spans(&d["orphan_spans"]);
    assert_eq!(orphans.len(), 1);
    assert_eq!(orphans[0]["cycle"], true);

    // The text tree too: one line per span, marked.
    assert_eq!(text.matches("s-same").count(), 1000, "{} bytes", text.len());
    assert_eq!(text.matches("s-a ").count(), 3, "{text}");
    assert!(text.contains("[cycle]") && text.contains("[duplicate id]"));
    assert!(page.contains("s-same"));

    if let (Some(before), Some(after)) = (rss_before, v.peak_rss()) {
        println!("peak RSS {} KiB -> {} KiB", before / 1024, after / 1024);
        assert!(
            after < before + 64 * 1024 * 1024,
            "bounded memory: peak RSS grew from {before} to {after} bytes"
        );
    }
}

/// 20,000 requests (5,000 interactions: two partial updates, three spans
/// and a signal each), then the page's data: every span placed once, in
/// time linear in the requests; a poll after a change renders only the
/// events that changed.
#[test]
fn twenty_thousand_requests_render_in_linear_time() {
    // Room for one more than the default 20,000 (one more evicts 10%).
    let v = start(&["--listen", "127.0.0.1:0", "--max-requests", "30000"]);
    let mut bodies = Vec::with_capacity(20_000);
    for i in 0..5_000u64 {
        let id = format!("ev-{i}");
        bodies.push((
            "events/track_partial".into(),
            json!({"event_id": id, "event": "chat", "user_id": format!("u{}", i % 50),
                   "is_pending": true, "ai_data": {"input": format!("question {i}"), "model": "m"}})
            .to_string(),
        ));
        let (root, tool, llm) = (format!("r{i}"), format!("t{i}"), format!("l{i}"));
        bodies.push((
            "traces".into(),
            traces(vec![
                otlp_span(&root, None, &id, i * 10),
                otlp_span(&tool, Some(&root), &id, i * 10 + 1),
                otlp_span(&llm, Some(&root), &id, i * 10 + 2),
            ]),
        ));
        bodies.push((
            "events/track_partial".into(),
            json!({"event_id": id, "is_pending": false, "ai_data": {"output": format!("answer {i}")},
                   "properties": {"usage": {"input_tokens": i, "output_tokens": 2}}})
            .to_string(),
        ));
        bodies.push((
            "signals/track".into(),
            json!([{"event_id": id, "signal_name": "thumbs_up", "sentiment": "POSITIVE"}])
                .to_string(),
        ));
    }
    // A tenth first, rendered, then the rest: rendering is linear in what
    // changed (an events × spans scan made ten times the requests cost a
    // hundred times the work).
    let started = std::time::Instant::now();
    post_all(&v.base, &bodies[..2_000]);
    let (small, d) = timed_data(&v.base);
    assert_eq!(d["rendered_events"], 500);
    post_all(&v.base, &bodies[2_000..]);
    println!("20,000 requests ingested in {:?}", started.elapsed());
    let (render, d) = timed_data(&v.base);
    assert_eq!(d["rendered_events"], 4_500, "only the new events rendered");
    // Nothing changed: each event's JSON is reused.
    let (again, d2) = timed_data(&v.base);
    assert_eq!(d2["rendered_events"], 0);
    // One update: one event rendered.
    post_all(
        &v.base,
        &[(
            "events/track_partial".into(),
            json!({"event_id": "ev-42", "properties": {"rated": true}}).to_string(),
        )],
    );
    let (one, d3) = timed_data(&v.base);
    assert_eq!(d3["rendered_events"], 1);
    let ev42 = interactions(&d3)
        .into_iter()
        .find(|i| i["event_id"] == "ev-42")
        .unwrap();
    assert_eq!(ev42["properties"]["rated"], true, "the change is shown");
    let version = d3["version"].as_u64().unwrap();
    let started = std::time::Instant::now();
    let unchanged = get(&v.base, &format!("/api/data?since={version}"));
    let poll = started.elapsed();
    assert!(unchanged.contains("\"unchanged\":true"));
    println!(
        "a debug build: 2,000 requests rendered in {small:?}; 20,000 in {render:?} \
         ({} bytes), again in {again:?}, after one update in {one:?}; an unchanged \
         poll {poll:?}",
        d2.to_string().len()
    );
    assert!(
        render < small * 30,
        "9 times the new events took {:.0} times as long: {small:?}, then {render:?}",
        render.as_secs_f64() / small.as_secs_f64()
    );
    // The work done: every request kept, every span placed exactly once
    // under its own event, every signal with its event.
    assert_eq!(d["requests"], 20_000);
    assert_eq!(d["evicted"], 0);
    let ixs = interactions(&d);
    assert_eq!(ixs.len(), 5_000);
    for ix in &ixs {
        let spans = all_spans(&ix["spans"]);
        assert_eq!(spans.len(), 3, "{ix:#}");
        assert_eq!(ix["spans"][0]["children"].as_array().unwrap().len(), 2);
        assert_eq!(ix["signals"].as_array().unwrap().len(), 1);
        assert_eq!(ix["finished"], true);
    }
    // A generous bound: an unoptimised build on a shared 2-core machine.
    assert!(
        render < Duration::from_secs(10),
        "render of 20,000 requests took {render:?}"
    );
}

/// `GET /api/data`, timed.
fn timed_data(base: &str) -> (Duration, Value) {
    let started = std::time::Instant::now();
    let body = get(base, "/api/data");
    let took = started.elapsed();
    (took, serde_json::from_str(&body).unwrap())
}

/// Token counts are recorded numbers, i.e. input: `i64::MAX` in and out
/// saturates instead of overflowing (a panic in a debug build).
#[test]
fn hostile_token_counts_do_not_panic() {
    let v = start(&["--listen", "127.0.0.1:0"]);
    let max = i64::MAX;
    post_all(
        &v.base,
        &[
            (
                "events/track_partial".into(),
                json!({"event_id": "e1", "event": "chat", "is_pending": false,
                       "properties": {"usage": {"input_tokens": max, "output_tokens": max}}})
                .to_string(),
            ),
            (
                "events/track_partial".into(),
                json!({"event_id": "e2", "event": "chat", "is_pending": false}).to_string(),
            ),
            (
                "traces".into(),
                json!({"resourceSpans": [{"scopeSpans": [{"spans": (0..3).map(|i| json!({
                    "traceId": "t", "spanId": format!("s{i}"), "name": "llm",
                    "attributes": [
                        {"key": "traceloop.association.properties.event_id", "value": {"stringValue": "e2"}},
                        {"key": "gen_ai.usage.input_tokens", "value": {"intValue": max.to_string()}},
                        {"key": "gen_ai.usage.output_tokens", "value": {"intValue": i64::MIN.to_string()}}]
                })).collect::<Vec<_>>()}]}]})
                .to_string(),
            ),
        ],
    );
    let d = data(&v.base);
    let ix = |id: &str| {
        interactions(&d)
            .into_iter()
            .find(|i| i["event_id"] == id)
            .unwrap()
    };
    assert_eq!(
        ix("e1")["tokens"],
        json!({"input": max, "output": max, "total": max})
    );
    assert_eq!(
        ix("e2")["tokens"],
        json!({"input": max, "output": i64::MIN, "total": -1})
    );
    assert!(get(&v.base, "/api/text").contains("chat"));
    assert!(get(&v.base, "/").contains("9223372036854775807"));
}

/// A chain of spans deeper than the page shows: cut at 64 levels, the rest
/// counted, not lost and not recursed into.
#[test]
fn a_deep_span_chain_is_cut_and_counted() {
    let v = start(&["--listen", "127.0.0.1:0"]);
    let chain: Vec<Value> = (0..500u64)
        .map(|i| {
            let parent = i.checked_sub(1).map(|p| format!("c{p}"));
            otlp_span(&format!("c{i}"), parent.as_deref(), "deep", i)
        })
        .collect();
    post_all(&v.base, &[event("deep"), ("traces".into(), traces(chain))]);
    // 65 levels shown (the root and 64 below it), 435 counted.
    let body = get(&v.base, "/api/data");
    assert!(body.contains("\"hidden\":435"), "{} bytes", body.len());
    assert_eq!(body.matches("\"name\":\"s-c").count(), 65);
    let text = get(&v.base, "/api/text");
    assert!(text.contains("… 435 deeper spans not shown"), "{text}");
    assert_eq!(text.matches("s-c").count(), 65);
}
