//! Memory is bounded in bytes (issue 22): 10,000 `track_ai` calls with
//! 100 KB inputs against an endpoint that accepts connections and never
//! answers hold at most `max_buffered_bytes` plus a fixed overhead; the
//! refusals are counted; once the endpoint answers, everything accepted
//! arrives.
//!
//! The scenario runs in a child process (this test binary again, selected by
//! an environment variable) so its peak RSS is its own.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raindrop_core::*;

const CHILD: &str = "RAINDROP_MEMORY_CHILD";
const CALLS: usize = 10_000;
const INPUT: usize = 100_000;
const BUDGET: usize = 64 * 1024 * 1024;
/// Allowed above the budget: the runtime, the HTTP client and its
/// connections, the allocator's slack, the test harness.
const OVERHEAD: usize = 48 * 1024 * 1024;

fn status_kib(field: &str) -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

#[test]
fn memory_is_bounded_in_bytes_against_a_hung_endpoint() {
    if std::env::var_os(CHILD).is_some() {
        return child();
    }
    if !std::path::Path::new("/proc/self/status").exists() {
        eprintln!("SKIPPED: no /proc to read peak RSS from");
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "memory_is_bounded_in_bytes_against_a_hung_endpoint",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    for l in stdout
        .lines()
        .filter_map(|l| l.find("memory:").map(|i| &l[i..]))
    {
        println!("{l}");
    }
    assert!(
        out.status.success(),
        "child failed:\n{}\n{}",
        stdout.lines().rev().take(20).collect::<Vec<_>>().join("\n"),
        stderr.lines().rev().take(20).collect::<Vec<_>>().join("\n")
    );
}

/// A server that reads nothing and answers nothing while `open` is false,
/// then reads each body and answers 204, recording the event ids.
fn gated_server(
    open: Arc<tokio::sync::watch::Sender<bool>>,
    ids: Arc<Mutex<HashSet<String>>>,
) -> std::net::SocketAddr {
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let mut gate = open.subscribe();
        let ids = ids.clone();
        async move {
            // Hung: the body stays unread in the socket.
            let _ = gate.wait_for(|open| *open).await;
            let body = axum::body::to_bytes(req.into_body(), 4 << 20)
                .await
                .unwrap_or_default();
            if let Ok(serde_json::Value::Array(items)) = serde_json::from_slice(&body) {
                let mut ids = ids.lock().unwrap();
                for i in items {
                    if let Some(id) = i["event_id"].as_str() {
                        ids.insert(id.to_owned());
                    }
                }
            }
            axum::http::StatusCode::NO_CONTENT
        }
    });
    raindrop_test_support::serve(app)
}

fn child() {
    let open = Arc::new(tokio::sync::watch::channel(false).0);
    let ids = Arc::new(Mutex::new(HashSet::new()));
    let addr = gated_server(open.clone(), ids.clone());
    let before = status_kib("VmRSS:");
    let client = Client::new(
        ClientOptions::default()
            .write_key("rk_memory")
            .endpoint(format!("http://{addr}/v1/"))
            .max_buffered_bytes(BUDGET)
            // Hung requests are not given up while the test runs.
            .request_timeout(Duration::from_secs(120)),
    )
    .unwrap();
    let start = Instant::now();
    let mut accepted = Vec::new();
    for n in 0..CALLS {
        let id = format!("mem-{n}");
        client
            .track_ai(
                AiEvent::new("u", "big")
                    .event_id(id.clone())
                    .input("x".repeat(INPUT)),
            )
            .unwrap();
        accepted.push(id);
    }
    let calls = start.elapsed();
    // Let the worker take in and batch what was accepted.
    std::thread::sleep(Duration::from_millis(1500));
    let peak = status_kib("VmHWM:");
    let s = client.stats();
    let refused = s.dropped(DropReason::MemoryLimit);
    println!(
        "memory: {CALLS} calls of {INPUT} B in {calls:?}; accepted {}, refused for memory {refused}; \
         RSS before {} MiB, peak {} MiB (budget {} MiB, allowed overhead {} MiB); held {} B",
        s.queued,
        before / 1024,
        peak / 1024,
        BUDGET >> 20,
        OVERHEAD >> 20,
        s.buffered_bytes,
    );
    assert!(refused > 0, "{s:?}");
    assert_eq!(s.queued + refused, CALLS as u64, "{s:?}");
    assert!(s.buffered_bytes as usize <= BUDGET, "{s:?}");
    assert!(
        (peak.saturating_sub(before)) * 1024 <= BUDGET + OVERHEAD,
        "peak RSS {} MiB over {} MiB before",
        peak / 1024,
        before / 1024
    );
    // The endpoint recovers: everything accepted arrives.
    open.send_replace(true);
    assert!(
        client.flush(Duration::from_secs(60)),
        "{:?}",
        client.stats()
    );
    let s = client.stats();
    assert_eq!(s.delivered, s.queued, "{s:?}");
    assert_eq!(ids.lock().unwrap().len() as u64, s.queued);
    assert_eq!(s.buffered_bytes, 0);
    println!("memory: after recovery delivered {}", s.delivered);
}
