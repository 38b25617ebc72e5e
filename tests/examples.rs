//! End-to-end tests of the examples: each example's `run` is called in
//! process against the local sink, and the recorded JSON lines are checked.

// Each example includes `examples/common` itself, and so does this file.
#![allow(dead_code, clippy::duplicate_mod)]

#[path = "../examples/agent.rs"]
mod agent;
#[path = "../examples/chat.rs"]
mod chat;
#[path = "../examples/common/mod.rs"]
mod common;
#[path = "../examples/quickstart.rs"]
mod quickstart;
#[path = "../examples/sync.rs"]
mod sync_example;
#[path = "../examples/two_services.rs"]
mod two_services;

use std::time::Duration;

use raindrop::{ClientOptions, LocalSink};
use raindrop_view::Recorded;
use tracing_subscriber::prelude::*;

// `raindrop::init` installs a process-wide client: the examples run one at a
// time (`serial`).
use raindrop_test_support::serial;

fn sink_options(name: &str) -> (ClientOptions, std::path::PathBuf) {
    let path = common::temp_sink(name);
    // Not `from_env`: the test must not depend on the caller's environment.
    (
        ClientOptions::default().local_sink(LocalSink::File(path.clone())),
        path,
    )
}

/// Runs `f` on a multi-thread tokio runtime where every thread (workers and
/// the blocking pool) has a subscriber with the raindrop layer of `client` as
/// its default: what `.init()` does in the examples' `main`, but scoped to
/// this test.
fn block_on_traced<F: std::future::Future>(client: &raindrop::Client, f: F) -> F::Output {
    let dispatch =
        tracing::Dispatch::new(tracing_subscriber::registry().with(raindrop::layer_for(client)));
    let for_threads = dispatch.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_start(move || {
            // The runtime's threads end with the runtime; so does this default.
            std::mem::forget(tracing::dispatcher::set_default(&for_threads));
        })
        .build()
        .expect("tokio runtime");
    let out = tracing::dispatcher::with_default(&dispatch, || rt.block_on(f));
    rt.shutdown_timeout(Duration::from_secs(5));
    out
}

#[test]
fn chat_demo_records_interactions_tools_errors_and_feedback() {
    let _serial = serial();
    let (options, path) = sink_options("chat");
    let guard = raindrop::init(options);
    let client = guard.client().cloned().expect("client");
    let exchanges = block_on_traced(&client, chat::run_demo(false)).expect("demo ran");
    let report = client.shutdown(Duration::from_secs(5));
    drop(guard);
    assert!(report.completed, "{report:?}");
    assert_eq!(report.stats.dropped_total(), 0, "{:?}", report.stats);

    // What the HTTP clients saw.
    let statuses: Vec<u16> = exchanges.iter().map(|e| e.status).collect();
    assert_eq!(statuses, [200, 200, 200, 200, 422, 204, 204]);
    let event_ids: Vec<String> = exchanges[..4]
        .iter()
        .map(|e| {
            e.response["event_id"]
                .as_str()
                .expect("event id")
                .to_owned()
        })
        .collect();

    let rec = Recorded::read(&path).expect("sink file written");
    let chats: Vec<_> = rec
        .events
        .iter()
        .filter(|e| e.event.as_deref() == Some("chat"))
        .collect();
    assert_eq!(chats.len(), 5, "{}", rec.render());
    assert!(chats.iter().all(|e| e.interaction && e.finished));

    // Each answered request: one finished event whose output is the answer.
    for (i, id) in event_ids.iter().enumerate() {
        let e = rec
            .events
            .iter()
            .find(|e| &e.event_id == id)
            .expect("event recorded");
        assert_eq!(e.input.as_deref(), exchanges[i].request["message"].as_str());
        assert_eq!(
            e.output.as_deref(),
            exchanges[i].response["answer"].as_str()
        );
        assert_eq!(
            e.user_id.as_deref(),
            exchanges[i].request["user_id"].as_str()
        );
        assert_eq!(
            e.convo_id.as_deref(),
            exchanges[i].request["convo_id"].as_str()
        );
        assert_eq!(e.model.as_deref(), Some("sim-1"));
        // The interaction span and, under it, the tools and the model call.
        let spans = rec.spans_of(id);
        let root = spans
            .iter()
            .find(|s| s.kind.as_deref() == Some("workflow"))
            .expect("interaction span");
        assert!(root.parent_span_id.is_none());
        for s in spans.iter().filter(|s| s.span_id != root.span_id) {
            assert_eq!(
                s.parent_span_id.as_deref(),
                Some(root.span_id.as_str()),
                "{s:?}"
            );
            assert_eq!(s.trace_id, root.trace_id);
            assert!(s.end_ns >= s.start_ns);
        }
        assert!(spans.iter().any(|s| s.name == "generate.task"));
    }

    // Request 1: the search tool, with input, output and kb_hits set from inside it.
    let refunds = rec.spans_of(&event_ids[0]);
    let search = refunds
        .iter()
        .find(|s| s.name == "search.tool")
        .expect("search span");
    assert_eq!(search.input.as_deref(), Some("How long do refunds take?"));
    assert!(search
        .output
        .as_deref()
        .unwrap_or_default()
        .contains("\"id\":\"refunds\""));
    let e0 = rec
        .events
        .iter()
        .find(|e| e.event_id == event_ids[0])
        .unwrap();
    assert_eq!(e0.properties["kb_hits"], 1);

    // Request 2: the calculator's result.
    let calc = rec.spans_of(&event_ids[1]);
    let calc = calc
        .iter()
        .find(|s| s.name == "calculator.tool")
        .expect("calculator span");
    assert_eq!(calc.input.as_deref(), Some("12 * (3 + 4)"));
    assert_eq!(calc.output.as_deref(), Some("84.0"));
    assert!(calc.error.is_none());

    // Request 3: the failing tool is recorded as an error; the request still answers.
    let failed = rec.spans_of(&event_ids[2]);
    let failed = failed
        .iter()
        .find(|s| s.name == "calculator.tool")
        .expect("calculator span");
    assert_eq!(failed.error.as_deref(), Some("division by zero"));

    // Request 5: refused, so the interaction finished with an error.
    let refused = chats
        .iter()
        .find(|e| e.user_id.as_deref() == Some("user-eve"))
        .expect("refused interaction");
    assert!(refused.output.is_none());
    assert_eq!(
        refused.properties["error"],
        "refused: the assistant does not handle credentials"
    );

    // Feedback: two signals per request.
    let up = rec.signals_of(&event_ids[0]);
    assert_eq!(up.len(), 2);
    assert!(up
        .iter()
        .any(|s| s["signal_name"] == "thumbs_up" && s["sentiment"] == "POSITIVE"));
    assert!(up.iter().any(
        |s| s["signal_type"] == "feedback" && s["properties"]["comment"] == "Quick and clear."
    ));
    let down = rec.signals_of(&event_ids[2]);
    assert!(down
        .iter()
        .any(|s| s["signal_name"] == "thumbs_down" && s["sentiment"] == "NEGATIVE"));

    let report_text = common::report_text(Some(&path), &report.stats);
    assert!(
        report_text.contains(&format!(
            "Raw JSON lines (one request each): {}",
            path.display()
        )),
        "{report_text}"
    );
    assert!(report_text.contains("dropped=0"), "{report_text}");
    let tree = rec.render();
    assert!(tree.contains("tool calculator.tool"), "{tree}");
    assert!(tree.contains("ERROR: division by zero"), "{tree}");
    assert!(
        tree.contains("signal user_feedback (feedback) POSITIVE  comment: Quick and clear."),
        "{tree}"
    );
    // The viewer's page data, from this run (not only its checked-in fixture).
    let view = raindrop_view::to_json(&rec);
    let interactions = view["interactions"].as_array().expect("interactions");
    assert_eq!(interactions.len(), 5, "{view:#}");
    let maths = &interactions[position_of(interactions, &event_ids[2])];
    assert_eq!(maths["span_errors"], 1, "{maths:#}");
    assert_eq!(maths["spans"][0]["kind"], "workflow", "{maths:#}");
    assert!(
        maths["spans"][0]["children"]
            .as_array()
            .expect("children")
            .iter()
            .any(|s| s["name"] == "calculator.tool" && s["error"] == "division by zero"),
        "{maths:#}"
    );
    assert_eq!(maths["signals"].as_array().map(Vec::len), Some(2));
    let _ = std::fs::remove_file(path);
}

/// The position of the interaction `event_id` in the viewer's list.
fn position_of(interactions: &[serde_json::Value], event_id: &str) -> usize {
    interactions
        .iter()
        .position(|i| i["event_id"] == event_id)
        .unwrap_or_else(|| panic!("{event_id} not in the view"))
}

#[test]
fn two_services_record_one_interaction_per_chat_with_the_agent_spans_joined() {
    let _serial = serial();
    let (options, path) = sink_options("two_services");
    let client = raindrop::Client::new(options).expect("client");
    let answers = block_on_traced(&client, two_services::run_demo(false)).expect("demo ran");
    let report = client.shutdown(Duration::from_secs(5));
    assert!(report.completed, "{report:?}");
    assert_eq!(answers.len(), 2);
    assert!(
        answers[0].contains("refunds take 5 business days"),
        "{answers:?}"
    );

    let rec = Recorded::read(&path).expect("sink file written");
    // One event per chat: the agent service began none of its own.
    assert_eq!(rec.events.len(), 2, "{}", rec.render());
    for (event, answer) in rec.events.iter().zip(&answers) {
        assert!(event.interaction && event.finished, "{}", rec.render());
        assert_eq!(event.event.as_deref(), Some("chat"));
        assert_eq!(event.output.as_deref(), Some(answer.as_str()));
        // Set in service B through resume_interaction().
        assert!(event.properties["agent_docs"].as_i64().unwrap() >= 1);
        let spans = rec.spans_of(&event.event_id);
        let find = |name: &str| {
            spans
                .iter()
                .find(|s| s.name == name)
                .unwrap_or_else(|| panic!("{name} in {}", rec.render()))
        };
        let (root, call) = (find("chat.workflow"), find("ask_agent.tool"));
        for name in ["retrieve.tool", "compose.tool"] {
            let s = find(name);
            assert_eq!(s.trace_id, root.trace_id, "{}", rec.render());
            assert_eq!(s.parent_span_id.as_deref(), Some(call.span_id.as_str()));
        }
    }
}

#[test]
fn agent_reaches_the_interaction_from_spawned_tasks_and_threads() {
    let _serial = serial();
    let (options, path) = sink_options("agent");
    let client = raindrop::Client::new(options).expect("client");
    let results = block_on_traced(&client, agent::run_jobs());
    let report = client.shutdown(Duration::from_secs(5));
    assert!(report.completed, "{report:?}");
    assert_eq!(report.stats.dropped_total(), 0, "{:?}", report.stats);
    assert_eq!(results.len(), 2);
    for r in &results {
        assert_eq!(r.as_ref().expect("job succeeds"), "6 facts from 2 sources");
    }

    let rec = Recorded::read(&path).expect("sink file written");
    let runs: Vec<_> = rec
        .events
        .iter()
        .filter(|e| e.event.as_deref() == Some("research"))
        .collect();
    assert_eq!(runs.len(), 2, "{}", rec.render());
    for run in runs {
        assert!(run.finished);
        assert_eq!(run.output.as_deref(), Some("6 facts from 2 sources"));
        // Set by plain functions inside instrumented spawned tasks.
        assert_eq!(run.properties["facts_docs"], 3);
        assert_eq!(run.properties["facts_blog"], 3);
        assert_eq!(run.properties["sources_ok"], 2);
        // The pitfall the example shows.
        assert_eq!(run.properties["uninstrumented_task_saw_interaction"], false);

        let spans = rec.spans_of(&run.event_id);
        let fetches: Vec<_> = spans.iter().filter(|s| s.name == "fetch.tool").collect();
        assert_eq!(fetches.len(), 3);
        assert_eq!(fetches.iter().filter(|s| s.error.is_some()).count(), 1);
        let forum = fetches.iter().find(|s| s.error.is_some()).unwrap();
        assert!(forum.input.as_deref().unwrap_or_default().contains("forum"));
        // The task that ran on the blocking pool is linked too.
        let summary = spans
            .iter()
            .find(|s| s.name == "summarize.task")
            .expect("summarize span");
        assert_eq!(summary.output.as_deref(), Some("6 facts from 2 sources"));
        let root = spans
            .iter()
            .find(|s| s.name == "research.workflow")
            .expect("root span");
        assert_eq!(
            summary.parent_span_id.as_deref(),
            Some(root.span_id.as_str())
        );
    }
    let _ = std::fs::remove_file(path);
}

#[test]
fn quickstart_records_identify_event_signals_interaction() {
    let _serial = serial();
    let (options, path) = sink_options("quickstart");
    let out = quickstart::run(options).expect("quickstart runs");
    assert!(out.report.completed, "{:?}", out.report);
    assert_eq!(out.report.undelivered, 0);
    assert_eq!(
        out.report.stats.dropped_total(),
        0,
        "{:?}",
        out.report.stats
    );

    let rec = Recorded::read(&path).expect("sink file written");
    assert_eq!(rec.users.len(), 1);
    assert_eq!(rec.users[0]["user_id"], "user-42");
    assert_eq!(rec.users[0]["traits"]["plan"], "pro");

    let chat = rec.event("chat_message").expect("chat_message tracked");
    assert!(!chat.interaction);
    assert_eq!(chat.event_id, out.chat_event_id);
    assert_eq!(chat.user_id.as_deref(), Some("user-42"));
    assert_eq!(
        chat.input.as_deref(),
        Some("What is the capital of France?")
    );
    assert_eq!(
        chat.output.as_deref(),
        Some("The capital of France is Paris.")
    );
    assert_eq!(chat.convo_id.as_deref(), Some("convo-1"));
    assert_eq!(chat.properties["latency_ms"], 412);

    let signals = rec.signals_of(&out.chat_event_id);
    assert_eq!(signals.len(), 2);
    assert!(signals
        .iter()
        .any(|s| s["signal_name"] == "thumbs_up" && s["sentiment"] == "POSITIVE"));
    assert!(signals.iter().any(|s| s["signal_type"] == "feedback"
        && s["properties"]["comment"] == "Short and correct, thanks!"));

    let run = rec.event("agent_run").expect("agent_run recorded");
    assert!(run.interaction && run.finished);
    assert_eq!(run.event_id, out.interaction_event_id);
    assert_eq!(run.input.as_deref(), Some("Summarise my last three orders"));
    assert_eq!(
        run.output.as_deref(),
        Some("You ordered a kettle, two mugs and a tea sampler.")
    );
    assert_eq!(run.properties["stage"], "fetching_orders");
    assert_eq!(run.properties["orders_found"], 3);
    assert_eq!(run.attachments, 1);

    assert!(rec.event("subscription_renewed").is_some());

    let tree = rec.render();
    assert!(tree.contains("interaction \"agent_run\""), "{tree}");
    assert!(
        tree.contains("signal user_feedback (feedback) POSITIVE"),
        "{tree}"
    );
    let _ = std::fs::remove_file(path);
}

#[test]
fn sync_example_records_from_plain_threads_and_sync_attributes() {
    let _serial = serial();
    let (options, path) = sink_options("sync");
    let client = raindrop::Client::new(options).expect("client");
    let subscriber = tracing_subscriber::registry().with(raindrop::layer_for(&client));
    let out = tracing::subscriber::with_default(subscriber, || sync_example::run(&client))
        .expect("sync example runs");
    let report = client.shutdown(Duration::from_secs(5));
    assert!(report.completed, "{report:?}");
    assert_eq!(report.stats.dropped_total(), 0, "{:?}", report.stats);
    assert_eq!(out.answered.len(), 5);

    let rec = Recorded::read(&path).expect("sink file written");
    let answers: Vec<_> = rec
        .events
        .iter()
        .filter(|e| e.event.as_deref() == Some("faq_answer"))
        .collect();
    assert_eq!(answers.len(), 5);
    for id in &out.answered {
        assert!(answers.iter().any(|e| &e.event_id == id), "missing {id}");
    }
    let batch = rec.event("nightly_batch").expect("batch interaction");
    assert!(batch.interaction && batch.finished);
    assert_eq!(batch.output.as_deref(), Some("5 of 6 answered"));
    assert_eq!(batch.properties["last_error"], "empty question");
    assert_eq!(batch.properties["failed"], 1);

    // The traced sync interactions.
    assert_eq!(out.triaged.len(), 3);
    let triages: Vec<_> = rec
        .events
        .iter()
        .filter(|e| e.event.as_deref() == Some("triage"))
        .collect();
    assert_eq!(triages.len(), 3, "{}", rec.render());
    let billing = triages
        .iter()
        .find(|e| e.user_id.as_deref() == Some("customer-7"))
        .unwrap();
    assert_eq!(
        billing.output.as_deref(),
        Some("Hi customer-7, billing will refund the extra charge today.")
    );
    let spans = rec.spans_of(&billing.event_id);
    let classify = spans
        .iter()
        .find(|s| s.name == "classify.tool")
        .expect("classify span");
    assert_eq!(classify.output.as_deref(), Some("billing"));
    let failed = triages
        .iter()
        .find(|e| e.user_id.as_deref() == Some("customer-9"))
        .unwrap();
    assert_eq!(
        failed.properties["error"],
        "no template for category `other`"
    );
    let spans = rec.spans_of(&failed.event_id);
    let template = spans
        .iter()
        .find(|s| s.name == "reply_template.tool")
        .expect("template span");
    assert_eq!(
        template.error.as_deref(),
        Some("no template for category `other`")
    );
    let _ = std::fs::remove_file(path);
}

/// The first README command on a fresh machine: the built `chat` example,
/// run with no Raindrop variables, writes its sink file into the target
/// directory and prints the tree and the file's path.
#[test]
fn chat_binary_runs_offline_and_prints_the_tree() {
    // `cargo test` builds the examples next to the test binaries:
    // <target>/<profile>/deps/examples-<hash> and <target>/<profile>/examples/chat.
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe.parent().and_then(|d| d.parent()).expect("profile dir");
    let chat = profile_dir
        .join("examples")
        .join(format!("chat{}", std::env::consts::EXE_SUFFIX));
    if !chat.exists() {
        // Only when this test target was built alone (`cargo test --test examples`).
        eprintln!("skipped: {} not built", chat.display());
        return;
    }
    let _serial = serial();
    let out = std::process::Command::new(&chat)
        .env_remove("RAINDROP_WRITE_KEY")
        .env_remove("RAINDROP_LOCAL_SINK")
        .env_remove("RAINDROP_ENDPOINT")
        .env_remove("RUST_LOG")
        .output()
        .expect("chat example runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("chat service listening on http://127.0.0.1:"),
        "{stdout}"
    );
    assert!(stdout.contains("← 422"), "{stdout}");
    assert!(stdout.contains("dropped=0"), "{stdout}");
    assert!(stdout.contains("ERROR: division by zero"), "{stdout}");
    assert!(
        stdout.contains("signal user_feedback (feedback) POSITIVE"),
        "{stdout}"
    );
    let sink = profile_dir
        .parent()
        .expect("target dir")
        .join("raindrop-chat.jsonl");
    assert!(
        stdout.contains(&format!(
            "Raw JSON lines (one request each): {}",
            sink.display()
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "In a browser: cargo run -p raindrop-view -- {}",
            sink.display()
        )),
        "{stdout}"
    );
    let rec = Recorded::read(&sink).expect("sink file in the target dir");
    assert_eq!(rec.events.len(), 5);
}

/// The built `chat` example. `cargo test` builds it next to the test
/// binaries; when only this test target was built (`cargo test --test
/// examples`), it is built here.
fn chat_example_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe.parent().and_then(|d| d.parent()).expect("profile dir");
    let target_dir = profile_dir.parent().expect("target dir");
    let chat = profile_dir
        .join("examples")
        .join(format!("chat{}", std::env::consts::EXE_SUFFIX));
    if chat.exists() {
        return chat;
    }
    let mut build = std::process::Command::new(env!("CARGO"));
    build
        .args(["build", "--example", "chat"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("CARGO_TARGET_DIR", target_dir);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        build.arg("--release");
    }
    let status = build.status().expect("cargo runs");
    assert!(status.success(), "cargo build --example chat failed");
    chat
}

/// `cargo run --example chat -- --serve`: a real service stopped by SIGTERM
/// (what `docker stop` and Kubernetes send) finishes its requests and
/// delivers every event before it exits.
#[cfg(unix)]
#[test]
fn chat_server_delivers_every_event_on_sigterm() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    use std::time::Instant;

    let chat = chat_example_binary();
    let cap = raindrop_test_support::Capture::start(vec![]);
    let mut child = Command::new(&chat)
        .args(["--serve", "127.0.0.1:0"])
        .env_remove("RUST_LOG")
        .env_remove("RAINDROP_LOCAL_SINK")
        .env_remove("RAINDROP_DEBUG")
        .env("RAINDROP_WRITE_KEY", "rk_test_sigterm")
        .env("RAINDROP_ENDPOINT", cap.endpoint())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chat example starts");
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    stdout.read_line(&mut first).expect("first line");
    let addr = first
        .trim()
        .strip_prefix("chat service listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line: {first}"))
        .to_owned();

    // Three questions and a piece of feedback, as a front end would send them.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // This process builds no Raindrop client, which would install the
    // rustls provider reqwest needs (run alone, as nextest runs it).
    raindrop::install_tls_provider();
    let event_ids: Vec<String> = rt.block_on(async {
        let http = reqwest::Client::new();
        let mut ids = Vec::new();
        for (user, message) in [
            ("user-term-1", "How long do refunds take?"),
            ("user-term-2", "What is 6 * 7?"),
            ("user-term-3", "When does shipping arrive?"),
        ] {
            let body =
                serde_json::json!({"user_id": user, "convo_id": "c-term", "message": message});
            let resp = http
                .post(format!("http://{addr}/chat"))
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .expect("chat request");
            assert_eq!(resp.status(), 200);
            let text = resp.text().await.expect("answer");
            let v: serde_json::Value = serde_json::from_str(&text).expect("json answer");
            ids.push(v["event_id"].as_str().expect("event id").to_owned());
        }
        let feedback =
            serde_json::json!({"event_id": ids[0], "thumbs_up": true, "comment": "Great."});
        let resp = http
            .post(format!("http://{addr}/feedback"))
            .header("content-type", "application/json")
            .body(feedback.to_string())
            .send()
            .await
            .expect("feedback request");
        assert_eq!(resp.status(), 204);
        ids
    });
    let before = cap.requests().len();

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the server did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).expect("stdout");
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
    }
    // Exited normally (not killed by the signal), after flushing.
    assert!(status.success(), "{status:?}\n{rest}\n{stderr}");
    assert!(
        rest.contains("shutting down: delivering what is queued"),
        "{rest}"
    );
    assert!(rest.contains("dropped=0"), "{rest}");

    // Every event arrived: each interaction's final update and its spans,
    // and both feedback signals.
    let finals: Vec<serde_json::Value> = cap
        .delivered("events/track_partial")
        .into_iter()
        .filter(|p| p["is_pending"] == false)
        .collect();
    for id in &event_ids {
        assert_eq!(
            finals
                .iter()
                .filter(|p| p["event_id"] == id.as_str())
                .count(),
            1,
            "final update of {id} (requests before SIGTERM: {before}): {finals:#?}"
        );
    }
    // Decoded the way the backend reads them: each question's interaction
    // span, the tool its question calls and the model task, linked to its
    // event, and no other span.
    let mut recorded = Recorded::default();
    for r in cap.requests() {
        if (200..300).contains(&r.status) {
            recorded.push(r.path.trim_start_matches("/v1/"), &r.body);
        }
    }
    let tools = ["search.tool", "calculator.tool", "search.tool"];
    for (id, tool) in event_ids.iter().zip(tools) {
        let mut names: Vec<&str> = recorded
            .spans_of(id)
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        names.sort_unstable();
        let mut want = vec!["chat.workflow", "generate.task", tool];
        want.sort_unstable();
        assert_eq!(names, want, "spans of {id}:\n{}", recorded.render());
    }
    assert_eq!(recorded.spans.len(), 9, "{}", recorded.render());
    let signals = cap.delivered("signals/track");
    let signal_count: usize = signals
        .iter()
        .map(|b| b.as_array().map_or(1, Vec::len))
        .sum();
    assert_eq!(signal_count, 2, "{signals:#?}");
    eprintln!(
        "requests delivered before SIGTERM: {before}, after: {}",
        cap.requests().len()
    );
}

#[test]
fn printer_merges_partials_and_nests_spans() {
    // A hand-written sink file in the documented line format.
    let lines = [
        r#"{"path":"events/track_partial","body":{"event_id":"e1","user_id":"u","event":"chat","ai_data":{"input":"hi"},"properties":{"a":{"x":1}},"is_pending":true}}"#,
        r#"{"path":"events/track_partial","body":{"event_id":"e1","ai_data":{"output":"hello"},"properties":{"a":{"y":2}},"is_pending":false}}"#,
        r#"{"path":"traces","body":{"resourceSpans":[{"scopeSpans":[{"spans":[
            {"traceId":"AAAAAAAAAAAAAAAAAAAAAA==","spanId":"AQAAAAAAAAA=","name":"chat","startTimeUnixNano":"1000000","endTimeUnixNano":"5000000","status":{"code":1},
             "attributes":[{"key":"traceloop.span.kind","value":{"stringValue":"workflow"}},{"key":"traceloop.association.properties.event_id","value":{"stringValue":"e1"}}]},
            {"traceId":"AAAAAAAAAAAAAAAAAAAAAA==","spanId":"AgAAAAAAAAA=","parentSpanId":"AQAAAAAAAAA=","name":"search","startTimeUnixNano":"2000000","endTimeUnixNano":"3000000","status":{"code":2,"message":"boom"},
             "attributes":[{"key":"traceloop.span.kind","value":{"stringValue":"tool"}},{"key":"traceloop.entity.input","value":{"stringValue":"{\"q\":1}"}},{"key":"traceloop.association.properties.event_id","value":{"stringValue":"e1"}}]}
        ]}]}]}}"#,
    ];
    // The sink writes one request per line; the span batch above is split for
    // readability, so join it back.
    let text = lines.map(|l| l.replace('\n', "")).join("\n");
    let rec = Recorded::parse(&text);
    assert_eq!(rec.requests, 3);
    let e = rec.event("chat").unwrap();
    assert!(e.finished);
    assert_eq!(e.partials, 2);
    assert_eq!(e.properties["a"], serde_json::json!({"x": 1, "y": 2}));
    assert_eq!(rec.spans_of("e1").len(), 2);
    assert_eq!(rec.span("search").unwrap().error.as_deref(), Some("boom"));
    let tree = rec.render();
    assert!(tree.contains("└─ workflow chat  4.00 ms"), "{tree}");
    assert!(
        tree.contains("   └─ tool search  1.00 ms  ERROR: boom"),
        "{tree}"
    );
    assert!(tree.contains("in:  {\"q\":1}"), "{tree}");
}

// The code of the README and of the guides in `docs/` is compiled in
// `tests/readme/mod.rs`.
#[path = "readme/mod.rs"]
mod readme;

/// The ```rust blocks of a markdown text.
fn rust_blocks(md: &str) -> Vec<&str> {
    md.split("```rust\n")
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .collect()
}

/// The README and every guide, by path, with the modules of
/// `tests/readme/mod.rs` that hold their blocks.
const DOCS: &[(&str, &str, &[&str])] = &[
    (
        "README.md",
        include_str!("../README.md"),
        &["readme_plain", "readme_tracing", "readme_llm_http"],
    ),
    (
        "docs/setup.md",
        include_str!("../docs/setup.md"),
        &[
            "readme_setup_new",
            "readme_setup_fmt",
            "readme_setup_fmt_builder",
            "readme_setup_registry",
            "readme_setup_rust_log",
            "readme_axum",
        ],
    ),
    (
        "docs/attributes.md",
        include_str!("../docs/attributes.md"),
        &[],
    ),
    (
        "docs/testing.md",
        include_str!("../docs/testing.md"),
        &["readme_testing"],
    ),
    (
        "docs/cross-service.md",
        include_str!("../docs/cross-service.md"),
        &["readme_propagation"],
    ),
    ("docs/privacy.md", include_str!("../docs/privacy.md"), &[]),
    (
        "docs/delivery.md",
        include_str!("../docs/delivery.md"),
        &["readme_stats"],
    ),
    (
        "docs/configuration.md",
        include_str!("../docs/configuration.md"),
        &[],
    ),
    ("docs/python.md", include_str!("../docs/python.md"), &[]),
    (
        "docs/limitations.md",
        include_str!("../docs/limitations.md"),
        &[],
    ),
    ("docs/viewer.md", include_str!("../docs/viewer.md"), &[]),
    (
        "docs/opentelemetry.md",
        include_str!("../docs/opentelemetry.md"),
        &["readme_otel_exporter", "readme_otel_tracing"],
    ),
    (
        "docs/spool.md",
        include_str!("../docs/spool.md"),
        &["readme_spool"],
    ),
];

#[test]
fn readme_code_is_the_compiled_code() {
    let this = include_str!("readme/mod.rs");
    // Every guide is checked: a new file in docs/ must be added to DOCS.
    let docs_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/docs");
    for entry in std::fs::read_dir(docs_dir).expect("docs/") {
        let name = entry.expect("entry").file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".md") {
            let path = format!("docs/{name}");
            assert!(
                DOCS.iter().any(|(p, _, _)| *p == path),
                "{path} is not in DOCS of tests/examples.rs"
            );
        }
    }
    // The one block not compiled here is an excerpt of examples/chat.rs.
    let chat = include_str!("../examples/chat.rs");
    for (path, text, modules) in DOCS {
        let blocks = rust_blocks(text);
        let mut compiled = Vec::new();
        for name in *modules {
            let start = format!("mod {name} {{\n");
            let end = format!("}} // end {name}");
            let body = this
                .split(start.as_str())
                .nth(1)
                .and_then(|rest| rest.split(end.as_str()).next())
                .unwrap_or_else(|| panic!("module {name} not found"));
            assert!(
                blocks.contains(&body),
                "{path} has no block equal to `mod {name}` of tests/readme/mod.rs:\n{body}"
            );
            compiled.push(body);
        }
        for block in blocks.iter().filter(|b| !compiled.contains(b)) {
            let first = block.lines().next().unwrap_or_default();
            assert!(
                chat.contains(first),
                "{path}: block not compiled anywhere:\n{block}"
            );
        }
        // Every example named exists.
        for name in text.split("cargo run --example ").skip(1) {
            let name: String = name
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let example = format!("{}/examples/{name}.rs", env!("CARGO_MANIFEST_DIR"));
            assert!(
                std::path::Path::new(&example).exists(),
                "{path} names a missing example: {name}"
            );
        }
    }
    // The two commands, exactly as a newcomer types them.
    let readme = DOCS[0].1;
    assert!(readme.contains("cargo run --example chat"));
    assert!(readme.contains("cargo test --workspace --all-features"));
}
