//! Setup mistakes are loud (issue 11): each common tracing setup is built as
//! a user would, in a child process of its own (a process has one global
//! subscriber, and each warning is printed once per process), one
//! interaction is run twice, and the test checks what the process printed
//! and what reached the local sink.
//!
//! The child is this test binary again, running the `child` test with
//! `RAINDROP_SETUP_SCENARIO` set; without it, `child` does nothing.

#![allow(clippy::duplicate_mod)]

#[path = "../examples/common/mod.rs"]
mod common;
#[path = "readme/mod.rs"]
mod readme;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use raindrop::{ClientOptions, LocalSink};
use tracing_subscriber::prelude::*;
use tracing_subscriber::EnvFilter;

const SCENARIO: &str = "RAINDROP_SETUP_SCENARIO";
const SINK: &str = "RAINDROP_SETUP_SINK";

#[raindrop::interaction("chat", user_id = user, skip(user))]
fn chat(user: &str, message: &str) -> String {
    let id = raindrop::resume_interaction().event_id().map(str::to_owned);
    println!("EVENT_ID={}", id.as_deref().unwrap_or("none"));
    format!("echo: {message}")
}

/// No `user_id`: the event goes out without a user, with a warning.
#[raindrop::interaction("anonymous_chat")]
fn anonymous_chat(message: &str) -> String {
    let id = raindrop::resume_interaction().event_id().map(str::to_owned);
    println!("EVENT_ID={}", id.as_deref().unwrap_or("none"));
    format!("echo: {message}")
}

/// The child: sets up tracing the way the scenario says, runs two interactions.
#[test]
fn child() {
    let Ok(name) = std::env::var(SCENARIO) else {
        return;
    };
    let sink = PathBuf::from(std::env::var(SINK).expect("sink path"));
    // 4. `raindrop::global_layer()` installed before `init`: it finds the client
    // `init` installs, span by span.
    if name == "global_layer_before_init" {
        tracing_subscriber::registry()
            .with(tracing_subscriber::fmt::layer())
            .with(raindrop::global_layer())
            .init();
    }
    let guard = raindrop::init(ClientOptions::default().local_sink(LocalSink::File(sink)));
    let client = guard.client().expect("client").clone();
    match name.as_str() {
        // 1. A global EnvFilter at WARN.
        "global_warn" => tracing_subscriber::registry()
            .with(EnvFilter::new("warn"))
            .with(tracing_subscriber::fmt::layer())
            .with(raindrop::layer_for(&client))
            .init(),
        // 1. `EnvFilter::from_default_env()` as a global filter, RUST_LOG unset.
        "global_default_env" => tracing_subscriber::registry()
            .with(EnvFilter::from_default_env())
            .with(tracing_subscriber::fmt::layer())
            .with(raindrop::layer_for(&client))
            .init(),
        "fix_per_layer" => readme::readme_setup_fmt::setup(&client),
        "fix_directive" => readme::readme_setup_registry::setup(&client),
        "fix_rust_log" => readme::readme_setup_rust_log::setup(&client),
        // 2. `fmt::init()` first; the subscriber with the raindrop layer is refused.
        "fmt_init_first" => {
            tracing_subscriber::fmt::init();
            let second = tracing_subscriber::registry()
                .with(raindrop::layer_for(&client))
                .try_init();
            println!("second init refused: {}", second.is_err());
            let third = raindrop::tracing_init(&client);
            println!("tracing_init refused: {}", third.is_err());
        }
        "fix_tracing_init" => readme::readme_setup_new::setup(&client),
        // 2. The `fmt()` builder with `raindrop::layer` (a per-layer filter).
        "fmt_builder_layer" => tracing_subscriber::fmt()
            .with_env_filter(EnvFilter::new("info"))
            .finish()
            .with(raindrop::layer_for(&client))
            .init(),
        "fix_fmt_builder" => readme::readme_setup_fmt_builder::setup(&client),
        // 3. No subscriber at all / a subscriber without the raindrop layer.
        "no_subscriber" => {}
        "no_layer" => tracing_subscriber::registry()
            .with(tracing_subscriber::fmt::layer())
            .init(),
        // 3. `resume_interaction()` alone, with no raindrop layer.
        "resume_no_layer" => {
            tracing_subscriber::registry()
                .with(tracing_subscriber::fmt::layer())
                .init();
            for _ in 0..3 {
                let i = raindrop::resume_interaction();
                println!("EVENT_ID={}", i.event_id().unwrap_or("none"));
            }
            return;
        }
        // 5. An interaction without a user id.
        "no_user" => readme::readme_setup_new::setup(&client),
        "global_layer_before_init" => {}
        other => panic!("unknown scenario {other}"),
    }
    for i in 0..2 {
        if name == "no_user" {
            anonymous_chat(&format!("anonymous question {i}"));
        } else {
            chat("user-setup", &format!("question {i}"));
        }
    }
    let report = client.shutdown(Duration::from_secs(10));
    println!(
        "STATS queued={} delivered={} dropped={}",
        report.stats.queued,
        report.stats.delivered,
        report.stats.dropped_total()
    );
    drop(guard);
}

struct Run {
    stdout: String,
    stderr: String,
    success: bool,
    sink: PathBuf,
}

impl Run {
    fn output(&self) -> String {
        format!("--- stdout\n{}\n--- stderr\n{}", self.stdout, self.stderr)
    }

    /// How many times `text` was printed, on stdout and stderr together.
    fn count(&self, text: &str) -> usize {
        self.stdout.matches(text).count() + self.stderr.matches(text).count()
    }

    /// The interactions the sink received, by event name.
    fn recorded(&self, event: &str) -> Vec<raindrop_view::RecordedEvent> {
        if !self.sink.exists() {
            return Vec::new();
        }
        raindrop_view::Recorded::read(&self.sink)
            .expect("sink readable")
            .events
            .into_iter()
            .filter(|e| e.event.as_deref() == Some(event))
            .collect()
    }

    /// The event ids `resume_interaction()` saw inside the interactions.
    fn event_ids(&self) -> Vec<String> {
        self.stdout
            .split("EVENT_ID=")
            .skip(1)
            .filter_map(|rest| rest.lines().next())
            .map(str::to_owned)
            .collect()
    }
}

fn run(scenario: &str, rust_log: Option<&str>) -> Run {
    let sink = std::env::temp_dir().join(format!(
        "raindrop-setup-{scenario}-{}.jsonl",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&sink);
    let exe = std::env::current_exe().expect("test binary");
    let mut cmd = Command::new(exe);
    cmd.args(["child", "--exact", "--nocapture", "--test-threads=1"])
        .env(SCENARIO, scenario)
        .env(SINK, &sink)
        .env_remove("RUST_LOG")
        .env_remove("RAINDROP_WRITE_KEY")
        .env_remove("RAINDROP_LOCAL_SINK")
        .env_remove("RAINDROP_DEBUG")
        .env("NO_COLOR", "1");
    if let Some(l) = rust_log {
        cmd.env("RUST_LOG", l);
    }
    let out = cmd.output().expect("child runs");
    Run {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        success: out.status.success(),
        sink,
    }
}

/// The interaction was recorded twice, with its user, and `resume_interaction()`
/// inside it saw the recorded event ids; no setup warning was printed.
fn assert_recorded(r: &Run) {
    assert!(r.success, "{}", r.output());
    let chats = r.recorded("chat");
    assert_eq!(chats.len(), 2, "{}", r.output());
    let mut recorded_ids: Vec<String> = chats.iter().map(|e| e.event_id.clone()).collect();
    let mut seen_ids = r.event_ids();
    recorded_ids.sort();
    seen_ids.sort();
    assert_eq!(recorded_ids, seen_ids, "{}", r.output());
    for e in &chats {
        assert!(e.finished, "{e:?}");
        assert_eq!(e.user_id.as_deref(), Some("user-setup"));
        assert!(e
            .input
            .as_deref()
            .unwrap_or_default()
            .starts_with("question "));
        assert!(e
            .output
            .as_deref()
            .unwrap_or_default()
            .starts_with("echo: "));
    }
    assert_eq!(r.count("was not recorded"), 0, "{}", r.output());
    assert_eq!(r.count("without a user id"), 0, "{}", r.output());
    let _ = std::fs::remove_file(&r.sink);
}

/// Nothing was recorded and `resume_interaction()` found no interaction.
fn assert_not_recorded(r: &Run) {
    assert!(r.success, "{}", r.output());
    assert!(r.recorded("chat").is_empty(), "{}", r.output());
    assert_eq!(r.event_ids(), ["none", "none"], "{}", r.output());
    assert!(r.stdout.contains("STATS queued=0 "), "{}", r.output());
    let _ = std::fs::remove_file(&r.sink);
}

fn assert_contains(haystack: &str, needles: &[&str], r: &Run) {
    for n in needles {
        assert!(haystack.contains(n), "missing {n:?} in\n{}", r.output());
    }
}

// 1. A global filter.

#[test]
fn global_warn_filter_warns_once_naming_the_filter_and_the_fix() {
    let r = run("global_warn", None);
    assert_not_recorded(&r);
    // The WARN passes the user's own filter: it is a tracing event, printed
    // by their fmt layer (stdout), not an eprintln.
    assert_contains(
        &r.stdout,
        &[
            "WARN raindrop:",
            "#[raindrop::interaction] fn `chat` was not recorded",
            "disabled by a global filter (max level WARN)",
            "fmt::layer().with_filter(EnvFilter::from_default_env())",
            "[{raindrop.kind}]=info",
        ],
        &r,
    );
    assert_eq!(r.count("disabled by a global filter"), 1, "{}", r.output());
}

#[test]
fn global_default_env_filter_with_rust_log_unset_warns_on_stderr() {
    let r = run("global_default_env", None);
    assert_not_recorded(&r);
    // ERROR only: the user's subscriber would hide a WARN, so it goes to stderr.
    assert_contains(
        &r.stderr,
        &[
            "WARN raindrop: #[raindrop::interaction] fn `chat` was not recorded",
            "its INFO span (target `setup`) was disabled by a global filter",
            "max level ERROR (RUST_LOG is unset",
        ],
        &r,
    );
    assert_eq!(r.count("disabled by a global filter"), 1, "{}", r.output());
}

#[test]
fn per_layer_filter_records_under_rust_log_warn() {
    assert_recorded(&run("fix_per_layer", Some("warn")));
}

#[test]
fn raindrop_kind_directive_keeps_spans_under_a_global_warn_filter() {
    assert_recorded(&run("fix_directive", None));
}

#[test]
fn default_directive_for_rust_log_unset_records() {
    assert_recorded(&run("fix_rust_log", None));
}

// 2. `fmt::init()` and the `fmt()` builder.

#[test]
fn fmt_init_first_warns_on_stderr_that_the_subscriber_has_no_raindrop_layer() {
    let r = run("fmt_init_first", None);
    assert_not_recorded(&r);
    assert!(
        r.stdout.contains("second init refused: true"),
        "{}",
        r.output()
    );
    assert!(
        r.stdout.contains("tracing_init refused: true"),
        "{}",
        r.output()
    );
    assert_contains(
        &r.stderr,
        &[
            "WARN raindrop: raindrop::tracing_init:",
            "(`tracing_subscriber::fmt::init()`?)",
        ],
        &r,
    );
    assert_contains(
        &r.stderr,
        &[
            "WARN raindrop: #[raindrop::interaction] fn `chat` was not recorded",
            "the current tracing subscriber has no raindrop layer",
            "tracing_subscriber::fmt::init()",
            "raindrop::tracing_init(&client)",
        ],
        &r,
    );
    assert_eq!(r.count("has no raindrop layer"), 1, "{}", r.output());
}

#[test]
fn tracing_init_instead_of_fmt_init_records() {
    assert_recorded(&run("fix_tracing_init", None));
}

#[test]
fn fmt_builder_with_raindrop_layer_fails_naming_raindrop_and_the_fix() {
    let r = run("fmt_builder_layer", None);
    assert!(!r.success, "{}", r.output());
    assert_contains(
        &r.stderr,
        &[
            "raindrop::layer_for(&client) cannot be added to a `tracing_subscriber::fmt()...finish()`",
            "raindrop::RaindropLayer::new(&client)",
            // The panic points at the user's line, not into the SDK.
            "tests/setup.rs",
        ],
        &r,
    );
    assert!(
        !r.stderr.contains("does not currently support filters"),
        "{}",
        r.output()
    );
}

#[test]
fn the_global_layer_installed_before_init_records() {
    assert_recorded(&run("global_layer_before_init", None));
}

#[test]
fn fmt_builder_with_the_bare_layer_records() {
    assert_recorded(&run("fix_fmt_builder", None));
}

// 3. No subscriber, or no raindrop layer in it.

#[test]
fn no_subscriber_warns_on_stderr() {
    let r = run("no_subscriber", None);
    assert_not_recorded(&r);
    assert_contains(
        &r.stderr,
        &[
            "WARN raindrop: #[raindrop::interaction] fn `chat` was not recorded",
            "no tracing subscriber is installed",
            "raindrop::tracing_init(&client)",
        ],
        &r,
    );
    // One warning for the cause, although two interactions and two
    // `resume_interaction()` calls missed.
    assert_eq!(
        r.count("no tracing subscriber is installed"),
        1,
        "{}",
        r.output()
    );
}

#[test]
fn subscriber_without_raindrop_layer_warns_through_it() {
    let r = run("no_layer", None);
    assert_not_recorded(&r);
    // The subscriber shows WARNs: the warning is one of its log lines.
    assert_contains(
        &r.stdout,
        &[
            "WARN raindrop: #[raindrop::interaction] fn `chat` was not recorded",
            "the current tracing subscriber has no raindrop layer",
        ],
        &r,
    );
    assert_eq!(r.count("has no raindrop layer"), 1, "{}", r.output());
}

#[test]
fn resume_interaction_without_raindrop_layer_warns_once() {
    let r = run("resume_no_layer", None);
    assert!(r.success, "{}", r.output());
    assert_eq!(r.event_ids(), ["none", "none", "none"], "{}", r.output());
    assert_contains(
        &r.stdout,
        &[
            "WARN raindrop: raindrop::resume_interaction() found no interaction",
            "the current tracing subscriber has no raindrop layer",
        ],
        &r,
    );
    assert_eq!(r.count("found no interaction"), 1, "{}", r.output());
}

// 5. No user id.

#[test]
fn interaction_without_user_id_warns_once_naming_the_fn_and_is_still_sent() {
    let r = run("no_user", None);
    assert!(r.success, "{}", r.output());
    let sent = r.recorded("anonymous_chat");
    assert_eq!(sent.len(), 2, "{}", r.output());
    assert!(sent.iter().all(|e| e.finished && e.user_id.is_none()));
    // The bare attribute took the argument as the input.
    assert!(sent.iter().all(|e| e
        .input
        .as_deref()
        .unwrap_or_default()
        .starts_with("anonymous question")));
    let warning = "interaction `anonymous_chat` (#[raindrop::interaction] fn `anonymous_chat`) finished without a user id";
    assert_eq!(r.count(warning), 1, "{}", r.output());
    assert!(
        r.output().contains("user_id = req.user_id"),
        "{}",
        r.output()
    );
    let _ = std::fs::remove_file(&r.sink);
}
