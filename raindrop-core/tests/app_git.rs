//! Application Git provenance on the wire: each source in its order of
//! precedence, the local lookup bounded and off the caller's path, the
//! switch. The tests change the process environment, so each holds
//! `serial()` and starts from a clean set of the variables involved.
//! Unix only: the fake `git` is a shell script.

#![cfg(unix)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use raindrop_core::*;
use raindrop_test_support::{serial, Capture};
use serde_json::{json, Value};

const SHA_VERCEL: &str = "1111111111111111111111111111111111111111";
const SHA_GITHUB: &str = "2222222222222222222222222222222222222222";

const VARS: [&str; 16] = [
    "RAINDROP_APP_GIT",
    "RAINDROP_COMMIT_SHA",
    "RAINDROP_COMMIT_DIRTY",
    "RAINDROP_BRANCH",
    "RAINDROP_GIT_AUTO_DETECT",
    "RAINDROP_GIT_DETECT_BRANCH",
    "VERCEL",
    "VERCEL_GIT_COMMIT_SHA",
    "VERCEL_GIT_COMMIT_REF",
    "RAILWAY_ENVIRONMENT",
    "DYNO",
    "GITHUB_ACTIONS",
    "GITHUB_SHA",
    "GITHUB_REF_NAME",
    "GITLAB_CI",
    "CIRCLECI",
];

/// Sets `vars` (and clears the others) for the life of the value; PATH too
/// when given. Restores everything on drop.
struct Env {
    saved: Vec<(String, Option<String>)>,
}

impl Env {
    fn set(vars: &[(&str, &str)], path: Option<String>) -> Env {
        let mut names: Vec<String> = VARS.iter().map(|s| (*s).to_owned()).collect();
        names.push("PATH".into());
        let saved = names
            .iter()
            .map(|n| (n.clone(), std::env::var(n).ok()))
            .collect();
        for n in VARS {
            std::env::remove_var(n);
        }
        for (k, v) in vars {
            std::env::set_var(k, v);
        }
        if let Some(p) = path {
            std::env::set_var("PATH", p);
        }
        Env { saved }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for (k, v) in &self.saved {
            match v {
                Some(v) => std::env::set_var(k, v),
                None => std::env::remove_var(k),
            }
        }
    }
}

fn client(cap: &Capture, f: impl FnOnce(ClientOptions) -> ClientOptions) -> Client {
    Client::new(f(ClientOptions::default()
        .write_key("rk_git")
        .endpoint(cap.endpoint())
        .upload_interval(Duration::from_millis(20))))
    .unwrap()
}

/// Waits for the lookup to end (bounded), tracks one event, one span, one
/// interaction, one signal and one identify; returns the event's and the
/// interaction's properties and the span's attributes.
fn record(c: &Client, cap: &Capture) -> (Value, Value, Vec<Value>) {
    let t = Instant::now();
    while c.app_git_pending() {
        assert!(t.elapsed() < Duration::from_secs(3), "the lookup must end");
        std::thread::sleep(Duration::from_millis(5));
    }
    let id = c
        .track_ai(AiEvent::new("u", "e").input("q").property("kept", 1))
        .unwrap();
    c.track_tool(Association::new().event_id(&id), ToolCall::new("t"))
        .unwrap();
    let i = c.begin(Begin::new("u", "e").input("q")).unwrap();
    i.finish("a");
    c.track_signal(Signal::new(&id, "thumbs_up")).unwrap();
    c.identify("u", json!({"plan": "pro"})).unwrap();
    assert!(c.flush(Duration::from_secs(5)));
    let event = cap.delivered("events/track")[0]["properties"].clone();
    let partial = cap.delivered("events/track_partial")[0]["properties"].clone();
    let span = cap.spans()[0]["attributes"].as_array().unwrap().clone();
    // Never on signals or identify.
    let others = format!(
        "{:?}{:?}",
        cap.delivered("signals/track"),
        cap.delivered("users/identify")
    );
    assert!(!others.contains("raindrop.app"), "{others}");
    assert_eq!(event["kept"], 1);
    (event, partial, span)
}

fn span_attr(attrs: &[Value], key: &str) -> Option<Value> {
    attrs
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| a["value"].clone())
}

/// The commit every channel carries, checked to be the same on each.
fn sha_sent(c: &Client, cap: &Capture) -> Option<String> {
    let (event, partial, span) = record(c, cap);
    let sha = event[COMMIT_SHA_KEY].as_str().map(str::to_owned);
    assert_eq!(partial[COMMIT_SHA_KEY].as_str(), sha.as_deref());
    assert_eq!(
        span_attr(&span, COMMIT_SHA_KEY).map(|v| v["stringValue"].clone()),
        sha.as_ref().map(|s| json!(s))
    );
    sha
}

fn local_head() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "--verify", "HEAD"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// A directory holding only a `git` that runs `body` (a shell script).
fn fake_git(name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("raindrop-fake-git-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let git = dir.join("git");
    std::fs::write(&git, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&git, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

#[test]
fn sources_in_order_of_precedence() {
    let _s = serial();
    let deploy = [
        ("RAINDROP_COMMIT_SHA", "env-sha"),
        ("RAINDROP_BRANCH", "env-branch"),
        ("VERCEL", "1"),
        ("VERCEL_GIT_COMMIT_SHA", SHA_VERCEL),
        ("GITHUB_ACTIONS", "true"),
        ("GITHUB_SHA", SHA_GITHUB),
    ];
    // 1. The options beat the variables; explicit fields join.
    {
        let _e = Env::set(&deploy, None);
        let cap = Capture::start(vec![]);
        let c = client(&cap, |o| {
            o.app_git(AppGit::new().commit_sha("opt-sha").commit_dirty(true))
        });
        let (event, _, span) = record(&c, &cap);
        assert_eq!(event[COMMIT_SHA_KEY], "opt-sha");
        assert_eq!(event[COMMIT_DIRTY_KEY], true);
        assert_eq!(event[BRANCH_KEY], "env-branch");
        assert_eq!(
            span_attr(&span, COMMIT_DIRTY_KEY),
            Some(json!({"boolValue": true}))
        );
    }
    // 2. RAINDROP_COMMIT_SHA beats the deployment.
    {
        let _e = Env::set(&deploy, None);
        let cap = Capture::start(vec![]);
        let c = client(&cap, |o| o);
        assert_eq!(sha_sent(&c, &cap).as_deref(), Some("env-sha"));
    }
    // 3. A marked deployment beats the local checkout (this test runs in one).
    {
        let _e = Env::set(&deploy[2..], None);
        let cap = Capture::start(vec![]);
        let c = client(&cap, |o| o);
        assert_eq!(sha_sent(&c, &cap).as_deref(), Some(SHA_VERCEL));
    }
    // 4. The local checkout beats CI metadata.
    if let Some(head) = local_head() {
        let _e = Env::set(&deploy[4..], None);
        let cap = Capture::start(vec![]);
        let c = client(&cap, |o| o);
        assert_eq!(sha_sent(&c, &cap), Some(head));
        assert!(c.app_git().unwrap().commit_dirty.is_some(), "status ran");
    }
    // 5. Without git, CI metadata is the fallback.
    {
        let empty = fake_git("missing", "exit 127");
        std::fs::remove_file(empty.join("git")).unwrap();
        let _e = Env::set(&deploy[4..], Some(empty.display().to_string()));
        let cap = Capture::start(vec![]);
        let c = client(&cap, |o| o);
        assert_eq!(sha_sent(&c, &cap).as_deref(), Some(SHA_GITHUB));
    }
    // 6. Nothing at all: nothing is added.
    {
        let empty = fake_git("none", "exit 128");
        let _e = Env::set(&[], Some(empty.display().to_string()));
        let cap = Capture::start(vec![]);
        let c = client(&cap, |o| o);
        assert_eq!(sha_sent(&c, &cap), None);
    }
}

#[test]
fn the_switch_turns_it_off_and_caller_values_win() {
    let _s = serial();
    let vars = [("RAINDROP_COMMIT_SHA", "env-sha")];
    {
        let _e = Env::set(&vars, None);
        let cap = Capture::start(vec![]);
        let c = client(&cap, |o| o.app_git(false));
        assert_eq!(sha_sent(&c, &cap), None);
        assert_eq!(c.app_git(), None);
    }
    {
        let _e = Env::set(
            &[
                ("RAINDROP_COMMIT_SHA", "env-sha"),
                ("RAINDROP_APP_GIT", "false"),
            ],
            None,
        );
        let cap = Capture::start(vec![]);
        let o = ClientOptions::from_env();
        assert!(!o.app_git.enabled);
        let c = client(&cap, |_| o.write_key("rk_git").endpoint(cap.endpoint()));
        assert_eq!(sha_sent(&c, &cap), None);
    }
    {
        let _e = Env::set(&vars, None);
        let cap = Capture::start(vec![]);
        let c = client(&cap, |o| o);
        c.track(Event::new("u", "e").property(COMMIT_SHA_KEY, "caller-sha"))
            .unwrap();
        assert!(c.flush(Duration::from_secs(5)));
        assert_eq!(
            cap.delivered("events/track")[0]["properties"][COMMIT_SHA_KEY],
            "caller-sha"
        );
    }
}

#[test]
fn a_slow_git_never_delays_a_tracking_call_and_the_lookup_gives_up_at_its_bound() {
    let _s = serial();
    let slow = fake_git("slow", "exec sleep 5");
    let _e = Env::set(&[], Some(format!("{}:/usr/bin:/bin", slow.display())));
    let cap = Capture::start(vec![]);
    let t0 = Instant::now();
    let c = client(&cap, |o| o);
    let built = t0.elapsed();
    let t1 = Instant::now();
    let id = c.track(Event::new("u", "early")).unwrap();
    c.track_tool(Association::new().event_id(&id), ToolCall::new("t"))
        .unwrap();
    let call = t1.elapsed();
    assert!(c.app_git_pending(), "git is still sleeping");
    assert!(
        built < Duration::from_millis(500),
        "Client::new took {built:?}"
    );
    assert!(
        call < Duration::from_millis(100),
        "two tracking calls took {call:?}"
    );
    // Delivery is not held back either: delivered while git still sleeps.
    assert!(c.flush(Duration::from_secs(2)));
    let flushed = t0.elapsed();
    assert!(c.app_git_pending(), "flushed after {flushed:?}");
    let events = cap.delivered("events/track");
    assert_eq!(events.len(), 1);
    assert!(events[0]["properties"].get(COMMIT_SHA_KEY).is_none());
    while c.app_git_pending() {
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "the lookup must give up at its bound"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let gave_up = t0.elapsed();
    assert!(gave_up >= Duration::from_millis(700), "{gave_up:?}");
    assert!(gave_up < Duration::from_millis(1_500), "{gave_up:?}");
    assert_eq!(c.app_git(), None);
    eprintln!(
        "client {built:?}, two calls {call:?}, flushed at {flushed:?}, lookup gave up after {gave_up:?}"
    );
}

#[test]
fn odd_bytes_in_a_branch_are_cleaned_and_lengths_capped() {
    let _s = serial();
    let long = "x".repeat(5_000);
    let odd = format!("feat/\u{1b}[31m\"quote\"\r\nX-Injected: 1\u{0}é{long}");
    // The environment cannot hold a NUL; the options can.
    let _e = Env::set(&[("RAINDROP_COMMIT_SHA", "abc\r\n\u{7f}def")], None);
    let cap = Capture::start(vec![]);
    let c = client(&cap, |o| o.app_git(AppGit::new().branch(odd)));
    let (event, _, span) = record(&c, &cap);
    assert_eq!(event[COMMIT_SHA_KEY], "abcdef");
    let b = event[BRANCH_KEY].as_str().unwrap();
    assert!(b.starts_with("feat/[31m\"quote\"X-Injected: 1é"), "{b}");
    assert_eq!(b.chars().count(), 256);
    assert!(!b.chars().any(char::is_control));
    assert_eq!(
        span_attr(&span, BRANCH_KEY),
        Some(json!({"stringValue": b}))
    );
    for r in cap.requests() {
        assert!(!r.headers.contains_key("x-injected"));
    }
}
