//! The facade's `Guard` (issue 6): dropping it shuts the global client down
//! within its deadline, from plain threads and from inside tokio runtimes of
//! both flavours (even while the runtime itself shuts down), without panic or
//! deadlock, and delivers what was queued.

use std::time::{Duration, Instant};

// The global client is process-wide: these tests take turns (`serial`).
use raindrop_test_support::{serial, Answer, Capture};

fn opts(cap: &Capture, shutdown: Duration) -> raindrop::ClientOptions {
    raindrop::ClientOptions::default()
        .write_key("rk_guard")
        .endpoint(cap.endpoint())
        .upload_interval(Duration::from_millis(30))
        .shutdown_timeout(shutdown)
        // Waiting for this against the hanging server is the wrong path; the
        // tests tell it from the deadline with a wide margin.
        .request_timeout(Duration::from_secs(30))
}

fn hanging() -> Capture {
    Capture::start(vec![("*", vec![Answer::Hang; 32])])
}

fn track() {
    raindrop::track_ai(raindrop::AiEvent::new("u", "e").input("q").output("a")).unwrap();
}

#[test]
fn dropping_the_guard_delivers_what_was_queued() {
    let _s = serial();
    let cap = Capture::start(vec![]);
    let guard = raindrop::init(opts(&cap, Duration::from_secs(5)));
    for _ in 0..5 {
        track();
    }
    drop(guard);
    assert_eq!(cap.delivered("events/track").len(), 5);
    assert!(raindrop::client().is_err(), "the global client is gone");
    assert!(
        raindrop::track_ai(raindrop::AiEvent::new("u", "e").input("q")).is_ok(),
        "a call before init is counted, not an error"
    );
}

#[test]
fn guard_dropped_in_a_current_thread_runtime_holds_its_deadline() {
    let _s = serial();
    let cap = hanging();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let took = rt.block_on(async {
        let guard = raindrop::init(opts(&cap, Duration::from_millis(500)));
        track();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let t = Instant::now();
        drop(guard);
        t.elapsed()
    });
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_millis(2500),
        "{took:?}"
    );
}

#[test]
fn guard_dropped_in_a_multi_thread_runtime_task_holds_its_deadline() {
    let _s = serial();
    let cap = hanging();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let o = opts(&cap, Duration::from_millis(500));
    let took = rt.block_on(async move {
        tokio::spawn(async move {
            let guard = raindrop::init(o);
            track();
            let t = Instant::now();
            drop(guard);
            t.elapsed()
        })
        .await
        .unwrap()
    });
    assert!(took < Duration::from_millis(2500), "{took:?}");
}

#[test]
fn guard_dropped_while_its_runtime_shuts_down() {
    let _s = serial();
    let cap = hanging();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let o = opts(&cap, Duration::from_millis(300));
    let (tx, rx) = std::sync::mpsc::channel();
    rt.spawn(async move {
        let _guard = raindrop::init(o);
        track();
        tx.send(()).unwrap();
        std::future::pending::<()>().await;
    });
    rx.recv_timeout(Duration::from_secs(5)).unwrap();
    let t = Instant::now();
    // Dropping the runtime drops the task, and the guard with it, on a runtime thread.
    drop(rt);
    assert!(
        t.elapsed() < Duration::from_millis(2300),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn a_disabled_guard_dropped_in_a_runtime_is_harmless() {
    let _s = serial();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let guard = raindrop::init(raindrop::ClientOptions::default());
        assert!(raindrop::track_ai(raindrop::AiEvent::new("u", "e").input("q")).is_ok());
        // Nothing to flush: dropping it inside the runtime must not panic
        // (no blocking wait on a runtime thread is attempted).
        drop(guard);
    });
    // Invalid options give a disabled guard too, never a panic.
    let bad = raindrop::init(
        raindrop::ClientOptions::default()
            .write_key("k")
            .endpoint("not a url"),
    );
    assert!(bad.client().is_none());
    drop(bad);
}
