//! Shutdown (issue 6): the deadline holds against a hanging server, what was
//! not delivered is reported, a second shutdown is a no-op, tracking after
//! shutdown is counted (never a panic), and the worker stops in every case.
//!
//! Tests here run one at a time (they count worker threads).

use std::time::{Duration, Instant};

use raindrop_core::*;
use raindrop_test_support::{serial, Answer, Capture};

fn opts(cap: &Capture) -> ClientOptions {
    ClientOptions::default()
        .write_key("rk_shutdown")
        .endpoint(cap.endpoint())
        .upload_interval(Duration::from_millis(50))
        .partial_idle_timeout(Duration::from_millis(100))
        // Against the hanging server, waiting for this timeout is the wrong
        // path; the tests tell the two apart with a wide margin.
        .request_timeout(Duration::from_secs(30))
}

fn hanging() -> Capture {
    Capture::start(vec![("*", vec![Answer::Hang; 64])])
}

/// Live `raindrop-worker` threads of this process.
fn workers() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|t| {
                    std::fs::read_to_string(t.path().join("comm"))
                        .is_ok_and(|c| c.trim() == "raindrop-worker")
                })
                .count()
        })
        .unwrap_or(0)
}

fn wait_until(timeout: Duration, f: impl Fn() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    f()
}

/// Every accepted item ended up delivered or dropped for a reason.
fn assert_settled(s: &Stats) {
    assert_eq!(s.pending(), 0, "{s:?}");
}

#[test]
fn deadline_holds_against_a_hanging_server_and_reports_the_undelivered() {
    let _g = serial();
    let cap = hanging();
    let c = Client::new(opts(&cap)).unwrap();
    for i in 0..30 {
        c.track_ai(AiEvent::new("u", "e").event_id(format!("h-{i}")).input("q"))
            .unwrap();
    }
    c.identify("u", Properties::new()).unwrap();
    c.track_signal(Signal::new("h-0", "thumbs_up")).unwrap();
    let open = c.begin(Begin::new("u", "run").input("q")).unwrap();
    open.set_property("k", 1);
    let t = Instant::now();
    let report = c.shutdown(Duration::from_millis(800));
    let took = t.elapsed();
    // Lower bound: it waited for its deadline. Upper bound: the deadline
    // plus a 2 s margin for a loaded machine, far below the 30 s timeout.
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_millis(2800),
        "{took:?}"
    );
    assert!(!report.completed);
    assert_eq!(report.undelivered, 34, "{report:?}");
    assert_eq!(report.stats.dropped(DropReason::ShutdownTimeout), 34);
    assert_eq!(report.stats.delivered, 0);
    assert_settled(&report.stats);
    assert!(wait_until(Duration::from_secs(3), || c.stats() == report.stats));
}

#[test]
fn second_shutdown_is_a_noop_returning_the_first_report() {
    let _g = serial();
    let cap = hanging();
    let c = Client::new(opts(&cap)).unwrap();
    c.track_ai(AiEvent::new("u", "e").input("q")).unwrap();
    let first = c.shutdown(Duration::from_millis(300));
    let requests = cap.requests().len();
    // Had it waited again, 30 s against a hanging server.
    let t = Instant::now();
    let second = c.shutdown(Duration::from_secs(30));
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(first, second);
    assert_eq!(cap.requests().len(), requests, "no new request");
    assert_eq!(
        c.clone().shutdown(Duration::from_secs(1)),
        first,
        "clones share the report"
    );
}

#[test]
fn tracking_after_shutdown_is_counted_not_a_panic() {
    let _g = serial();
    let cap = Capture::start(vec![]);
    let c = Client::new(opts(&cap)).unwrap();
    let open = c
        .begin(Begin::new("u", "run").event_id("late-i").input("q"))
        .unwrap();
    let report = c.shutdown(Duration::from_secs(5));
    assert!(report.completed);
    assert!(c.is_shut_down());
    // Refused for shutdown: counted, never an error the caller must handle.
    assert!(c.track_ai(AiEvent::new("u", "e").input("q")).is_ok());
    assert!(c.track(Event::new("u", "e")).is_ok());
    assert!(c.identify("u", Properties::new()).is_ok());
    assert!(c.track_signal(Signal::new("x", "thumbs_up")).is_ok());
    let late = c
        .begin(Begin::new("u", "late").input("q"))
        .expect("begin hands back a handle");
    late.set_input("more");
    late.finish("done");
    open.set_output("late output");
    open.finish("late finish");
    c.resume_interaction_by_id("late-i").set_property("k", 1);
    assert!(
        c.flush(Duration::from_millis(100)),
        "flush after shutdown returns at once"
    );
    let s = c.stats();
    // 4 calls + begin + set_input + finish + open.set_output + open.finish + resumed set_property
    assert_eq!(s.dropped(DropReason::AfterShutdown), 10, "{s:?}");
    assert_settled(&s);
    let delivered = cap.delivered("events/track_partial");
    assert_eq!(
        delivered.len(),
        1,
        "only the pre-shutdown pending snapshot: {delivered:?}"
    );
    assert_eq!(
        delivered[0]["is_pending"], true,
        "an open interaction ships as pending at shutdown"
    );
}

#[test]
fn flush_async_after_shutdown_returns() {
    let _g = serial();
    let cap = Capture::start(vec![]);
    let c = Client::new(opts(&cap)).unwrap();
    c.shutdown(Duration::from_secs(1));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let done = rt.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(2),
            c.flush_async(Duration::from_secs(1)),
        )
        .await
    });
    assert_eq!(done, Ok(true));
}

#[test]
fn shutdown_with_a_zero_deadline_settles_everything() {
    let _g = serial();
    let cap = hanging();
    let c = Client::new(opts(&cap)).unwrap();
    for _ in 0..50 {
        c.track_ai(AiEvent::new("u", "e").input("q")).unwrap();
    }
    // Against a server that never answers, only the zero deadline can end
    // this before the 30 s request timeout.
    let t = Instant::now();
    let report = c.shutdown(Duration::ZERO);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(!report.completed);
    assert_eq!(
        report.stats.delivered + report.undelivered,
        50,
        "{report:?}"
    );
    assert_settled(&report.stats);
}

#[test]
fn concurrent_shutdowns_and_producers_agree() {
    let _g = serial();
    let cap = Capture::start(vec![]);
    let c = Client::new(opts(&cap)).unwrap();
    let reports: Vec<_> = std::thread::scope(|s| {
        for t in 0..4 {
            let c = c.clone();
            s.spawn(move || {
                for i in 0..500 {
                    let _ = c.track(Event::new("u", "e").event_id(format!("{t}-{i}")));
                }
            });
        }
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let c = c.clone();
                s.spawn(move || {
                    std::thread::sleep(Duration::from_millis(5));
                    c.shutdown(Duration::from_secs(5))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(
        reports.windows(2).all(|w| w[0] == w[1]),
        "every caller sees the one report"
    );
    let s = c.stats();
    assert!(reports[0].completed);
    assert_eq!(
        s.queued + s.dropped(DropReason::AfterShutdown) + s.dropped(DropReason::QueueFull),
        2000,
        "{s:?}"
    );
    assert_eq!(s.delivered, s.queued, "{s:?}");
    assert_eq!(cap.delivered("events/track").len() as u64, s.delivered);
}

#[test]
fn dropping_every_client_handle_without_shutdown_drains_and_stops_the_worker() {
    let _g = serial();
    assert!(
        wait_until(Duration::from_secs(5), || workers() == 0),
        "workers of earlier tests stopped"
    );
    let cap = Capture::start(vec![]);
    {
        let c = Client::new(opts(&cap)).unwrap();
        assert!(wait_until(Duration::from_secs(2), || workers() == 1));
        for i in 0..4 {
            c.track_ai(AiEvent::new("u", "e").event_id(format!("d-{i}")).input("q"))
                .unwrap();
        }
        // Let the worker go idle in its receive before the last handle goes
        // away: it then sees the channel close from `recv`, not `try_recv`.
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        wait_until(Duration::from_secs(5), || workers() == 0),
        "the worker thread must exit"
    );
    assert_eq!(
        cap.delivered("events/track").len(),
        4,
        "what was queued is still delivered"
    );
}

#[test]
fn shutdown_inside_a_current_thread_runtime_does_not_deadlock() {
    let _g = serial();
    let cap = hanging();
    let c = Client::new(opts(&cap)).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let report = rt.block_on(async {
        c.track_ai(AiEvent::new("u", "e").input("q")).unwrap();
        assert!(
            !c.flush_async(Duration::from_millis(200)).await,
            "hanging: flush gives up at its deadline"
        );
        // The hanging request would hold a blocking wait for its 30 s timeout.
        let t = Instant::now();
        let r = c.shutdown(Duration::from_millis(300));
        assert!(
            t.elapsed() < Duration::from_millis(2300),
            "{:?}",
            t.elapsed()
        );
        r
    });
    assert_eq!(report.undelivered, 1);
    drop(rt);
    assert!(wait_until(Duration::from_secs(3), || workers() == 0));
}
