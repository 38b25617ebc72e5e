//! The client works the same from plain threads, both tokio runtime flavours
//! and `Drop`, and flushing never deadlocks a current-thread runtime.

use std::time::Duration;

use raindrop_core::{AiEvent, Client, ClientOptions};
use raindrop_test_support::Capture;

fn client(cap: &Capture) -> Client {
    Client::new(
        ClientOptions::default()
            .write_key("rk_runtime")
            .endpoint(cap.endpoint()),
    )
    .unwrap()
}

fn event(id: &str) -> AiEvent {
    AiEvent::new("u", "chat")
        .event_id(id)
        .input("q")
        .output("a")
}

#[test]
fn blocking_flush_inside_current_thread_runtime_does_not_deadlock() {
    let cap = Capture::start(vec![]);
    let c = client(&cap);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        c.track_ai(event("ct-1")).unwrap();
        // A blocking flush from the runtime's only thread: the worker has its own.
        assert!(c.flush(Duration::from_secs(5)));
    });
    assert_eq!(cap.delivered("events/track").len(), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn async_flush_on_current_thread_runtime() {
    let cap = Capture::start(vec![]);
    let c = client(&cap);
    c.track_ai(event("ct-2")).unwrap();
    assert!(c.flush_async(Duration::from_secs(5)).await);
    assert_eq!(cap.delivered("events/track").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracking_from_spawned_tasks_on_multi_thread_runtime() {
    let cap = Capture::start(vec![]);
    let c = client(&cap);
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let c = c.clone();
            tokio::spawn(async move {
                for i in 0..50 {
                    c.track_ai(event(&format!("mt-{t}-{i}"))).unwrap();
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert!(c.flush_async(Duration::from_secs(10)).await);
    assert_eq!(cap.delivered("events/track").len(), 400);
}

#[test]
fn async_flush_needs_no_timer_in_the_callers_runtime() {
    let cap = Capture::start(vec![]);
    let c = client(&cap);
    // No `enable_time`: a tokio timer in flush_async would panic here.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    c.track_ai(event("nt-1")).unwrap();
    assert!(rt.block_on(c.flush_async(Duration::from_secs(5))));
}

struct TracksOnDrop(Client);

impl Drop for TracksOnDrop {
    fn drop(&mut self) {
        self.0.track_ai(event("drop-1")).unwrap();
    }
}

#[test]
fn tracking_inside_drop_and_from_plain_threads() {
    let cap = Capture::start(vec![]);
    let c = client(&cap);
    drop(TracksOnDrop(c.clone()));
    std::thread::scope(|s| {
        for t in 0..4 {
            let c = c.clone();
            s.spawn(move || c.track_ai(event(&format!("th-{t}"))).unwrap());
        }
    });
    assert!(c.flush(Duration::from_secs(5)));
    assert_eq!(cap.delivered("events/track").len(), 5);
}

#[test]
fn double_flush_never_sends_twice() {
    let cap = Capture::start(vec![]);
    let c = client(&cap);
    for i in 0..15 {
        c.track_ai(event(&format!("df-{i}"))).unwrap();
    }
    assert!(c.flush(Duration::from_secs(5)));
    assert!(c.flush(Duration::from_secs(5)));
    let ids: std::collections::HashSet<String> = cap
        .delivered("events/track")
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 15);
    assert_eq!(cap.delivered("events/track").len(), 15);
}

#[test]
fn dropping_every_handle_delivers_what_was_queued() {
    let cap = Capture::start(vec![]);
    let c = client(&cap);
    c.track_ai(event("last-1")).unwrap();
    drop(c);
    assert!(
        cap.wait_for(Duration::from_secs(5), |c| c
            .delivered("events/track")
            .len()
            == 1),
        "the worker drains when the last client handle is dropped"
    );
}
