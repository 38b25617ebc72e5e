//! The viewer over real HTTP on 127.0.0.1: the chat example's recording,
//! a file that grows, the `--listen` mode fed by a real SDK client, `--text`.

mod common;

use std::io::Write as _;
use std::time::Duration;

use common::{all_spans, data, fixture, get, request, start, temp_path, wait_until};
use serde_json::Value;

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

/// The README's `raindrop-view` commands name options the binary has.
#[test]
fn readme_commands_use_real_options() {
    let readme = include_str!("../../README.md");
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_raindrop-view"))
        .arg("--help")
        .output()
        .expect("runs");
    assert!(help.status.success());
    let help = String::from_utf8(help.stdout).unwrap();
    let mut commands = 0;
    for rest in readme.split("cargo run -p raindrop-view -- ").skip(1) {
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
