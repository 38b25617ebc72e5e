//! Network faults (issue 6): every event within queue capacity is delivered
//! exactly once, and whatever is not is counted in `stats()` by reason.
//! Loopback only; every test bounded in time.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use raindrop_core::*;
use raindrop_test_support::{refusing_addr, Answer, Capture, Raw, RawServer};
use serde_json::Value;

fn opts(endpoint: String) -> ClientOptions {
    ClientOptions::default()
        .write_key("rk_faults")
        .endpoint(endpoint)
        .upload_interval(Duration::from_millis(50))
        .partial_idle_timeout(Duration::from_millis(100))
        .request_timeout(Duration::from_secs(2))
}

fn ids(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|v| v["event_id"].as_str().unwrap().to_owned())
        .collect()
}

/// Every id of `sent` arrived exactly once and nothing else arrived.
fn assert_exactly_once(delivered: &[Value], sent: &[String]) {
    let got = ids(delivered);
    let unique: HashSet<&String> = got.iter().collect();
    assert_eq!(unique.len(), got.len(), "duplicates delivered: {got:?}");
    let want: HashSet<&String> = sent.iter().collect();
    assert_eq!(unique, want);
}

fn track_n(c: &Client, n: usize, prefix: &str) -> Vec<String> {
    (0..n)
        .map(|i| {
            c.track_ai(
                AiEvent::new("u", "e")
                    .event_id(format!("{prefix}-{i}"))
                    .input("q")
                    .output("a"),
            )
            .unwrap()
        })
        .collect()
}

#[test]
fn burst_of_500_502_503_is_retried_and_delivered_exactly_once() {
    let burst = [500, 502, 503, 500, 502, 503]
        .map(|s| Answer::Status(s, None, ""))
        .to_vec();
    let cap = Capture::start(vec![("events/track", burst)]);
    let c = Client::new(opts(cap.endpoint()).upload_size(10).max_attempts(5)).unwrap();
    let sent = track_n(&c, 30, "burst");
    assert!(c.flush(Duration::from_secs(20)));
    assert_exactly_once(&cap.delivered("events/track"), &sent);
    let s = c.stats();
    assert_eq!(
        (s.delivered, s.retries, s.dropped_total()),
        (30, 6, 0),
        "{s:?}"
    );
    // Every failed body is resent byte for byte and eventually lands.
    let reqs = cap.to("events/track");
    let ok: Vec<_> = reqs
        .iter()
        .filter(|r| r.status == 204)
        .map(|r| r.raw.clone())
        .collect();
    for failed in reqs.iter().filter(|r| r.status >= 500) {
        assert!(
            ok.contains(&failed.raw),
            "a failed body was not resent identically"
        );
    }
}

#[test]
fn persistent_5xx_exhausts_retries_and_counts_them() {
    let cap = Capture::start(vec![(
        "events/track",
        vec![Answer::Status(503, None, "down"); 20],
    )]);
    let c = Client::new(opts(cap.endpoint()).max_attempts(2)).unwrap();
    track_n(&c, 5, "down");
    assert!(
        c.flush(Duration::from_secs(10)),
        "flush completes once everything is given up"
    );
    let s = c.stats();
    assert_eq!(s.dropped(DropReason::RetriesExhausted), 5, "{s:?}");
    assert_eq!((s.delivered, s.pending()), (0, 0));
    assert!(cap.delivered("events/track").is_empty());
}

#[test]
fn retry_after_in_seconds_is_honoured() {
    let cap = Capture::start(vec![(
        "events/track",
        vec![Answer::Status(429, Some("1".into()), "")],
    )]);
    let c = Client::new(opts(cap.endpoint())).unwrap();
    let sent = track_n(&c, 1, "ra-secs");
    assert!(c.flush(Duration::from_secs(10)));
    let reqs = cap.to("events/track");
    assert_eq!(reqs.len(), 2);
    let gap = reqs[1].at - reqs[0].at;
    assert!(
        gap >= Duration::from_millis(950),
        "waited {gap:?} for Retry-After: 1"
    );
    assert_exactly_once(&cap.delivered("events/track"), &sent);
}

#[test]
fn retry_after_as_http_date_is_honoured() {
    // HTTP dates have whole seconds: 3 s ahead is 2-3 s of waiting.
    let when = (chrono::Utc::now() + chrono::Duration::seconds(3))
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    let cap = Capture::start(vec![(
        "events/track",
        vec![Answer::Status(429, Some(when), "")],
    )]);
    let c = Client::new(opts(cap.endpoint())).unwrap();
    let sent = track_n(&c, 1, "ra-date");
    assert!(c.flush(Duration::from_secs(10)));
    let reqs = cap.to("events/track");
    assert_eq!(reqs.len(), 2);
    let gap = reqs[1].at - reqs[0].at;
    assert!(
        gap >= Duration::from_millis(1500),
        "waited only {gap:?} for a date 3 s ahead"
    );
    assert_exactly_once(&cap.delivered("events/track"), &sent);
}

#[test]
fn retry_after_beyond_the_cap_is_capped() {
    let cap = Capture::start(vec![(
        "events/track",
        vec![Answer::Status(429, Some("120".into()), "")],
    )]);
    let c = Client::new(opts(cap.endpoint()).max_retry_after(Duration::from_millis(300))).unwrap();
    let sent = track_n(&c, 1, "ra-cap");
    // Uncapped, the retry would wait 120 s and this flush would give up.
    assert!(c.flush(Duration::from_secs(10)));
    let reqs = cap.to("events/track");
    let gap = reqs[1].at - reqs[0].at;
    assert!(gap >= Duration::from_millis(250), "{gap:?}");
    assert_exactly_once(&cap.delivered("events/track"), &sent);
}

#[test]
fn unparseable_negative_or_past_retry_after_falls_back_to_backoff() {
    let past = "Sun, 06 Nov 1994 08:49:37 GMT".to_owned();
    let plan = ["soon", "-5", "", past.as_str()]
        .map(|v| Answer::Status(429, Some(v.to_owned()), ""))
        .to_vec();
    let cap = Capture::start(vec![("events/track", plan)]);
    let c = Client::new(opts(cap.endpoint()).max_attempts(5)).unwrap();
    let sent = track_n(&c, 1, "ra-bad");
    assert!(c.flush(Duration::from_secs(15)));
    assert_eq!(cap.to("events/track").len(), 5);
    assert_exactly_once(&cap.delivered("events/track"), &sent);
}

#[test]
fn tracking_never_waits_on_retry_after() {
    let cap = Capture::start(vec![(
        "*",
        vec![Answer::Status(429, Some("5".into()), ""); 4],
    )]);
    let c = Client::new(opts(cap.endpoint())).unwrap();
    track_n(&c, 1, "hot-warm");
    // The route is paused once the first 429 has been read (the retry
    // counter moves after the pause is set).
    let paused = Instant::now() + Duration::from_secs(10);
    while c.stats().retries == 0 && Instant::now() < paused {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(c.stats().retries, 1);
    for i in 0..200 {
        c.track_ai(
            AiEvent::new("u", "e")
                .event_id(format!("hot-{i}"))
                .input("q"),
        )
        .unwrap();
    }
    // The route pauses 5 s after the first answer: had any call waited for
    // the pause, a second request would have started by now.
    assert_eq!(
        cap.to("events/track").len(),
        1,
        "calls returned inside the pause"
    );
    assert_eq!(c.stats().queued, 201);
    c.shutdown(Duration::from_millis(200));
}

#[test]
fn refused_connections_are_retried_until_the_server_comes_back() {
    let addr = refusing_addr();
    let c = Client::new(opts(format!("http://{addr}/v1/")).max_attempts(6)).unwrap();
    let sent = track_n(&c, 12, "back");
    c.identify("u-back", Properties::new()).unwrap();
    std::thread::sleep(Duration::from_millis(700));
    assert!(c.stats().retries >= 1, "attempts were refused and retried");
    let cap = Capture::start_on(addr, vec![]);
    assert!(c.flush(Duration::from_secs(15)));
    assert_exactly_once(&cap.delivered("events/track"), &sent);
    assert_eq!(cap.delivered("users/identify").len(), 1);
    let s = c.stats();
    assert_eq!((s.delivered, s.dropped_total()), (13, 0), "{s:?}");
}

#[test]
fn refused_connections_forever_are_counted_as_exhausted() {
    let addr = refusing_addr();
    let c = Client::new(opts(format!("http://{addr}/v1/")).max_attempts(2)).unwrap();
    track_n(&c, 3, "refused");
    c.track_signal(Signal::new("refused-0", "thumbs_up"))
        .unwrap();
    assert!(c.flush(Duration::from_secs(10)));
    let s = c.stats();
    assert_eq!(s.dropped(DropReason::RetriesExhausted), 4, "{s:?}");
    assert_eq!(s.requests, 4, "two routes, two attempts each");
}

#[test]
fn a_hanging_request_times_out_and_the_retry_delivers_once() {
    let cap = Capture::start(vec![("events/track", vec![Answer::Hang])]);
    let c = Client::new(opts(cap.endpoint()).request_timeout(Duration::from_millis(300))).unwrap();
    let sent = track_n(&c, 4, "hang");
    // Without the 300 ms timeout the request would hang past this flush.
    assert!(c.flush(Duration::from_secs(10)));
    assert_exactly_once(&cap.delivered("events/track"), &sent);
    let s = c.stats();
    assert_eq!((s.requests, s.retries, s.delivered), (2, 1, 4), "{s:?}");
}

#[test]
fn a_server_that_never_answers_exhausts_retries() {
    let cap = Capture::start(vec![("events/track", vec![Answer::Hang, Answer::Hang])]);
    let c = Client::new(
        opts(cap.endpoint())
            .request_timeout(Duration::from_millis(200))
            .max_attempts(2),
    )
    .unwrap();
    track_n(&c, 2, "never");
    assert!(c.flush(Duration::from_secs(10)));
    assert_eq!(c.stats().dropped(DropReason::RetriesExhausted), 2);
    assert!(cap.delivered("events/track").is_empty());
}

#[test]
fn connection_closed_mid_response_or_without_answer_is_retried() {
    let srv = RawServer::start(vec![Raw::Truncate, Raw::Drop, Raw::Garbage]);
    let c = Client::new(opts(srv.endpoint()).max_attempts(4)).unwrap();
    let sent = track_n(&c, 3, "cut");
    assert!(c.flush(Duration::from_secs(15)));
    let seen = srv.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 4, "three broken answers, then a 204");
    assert!(
        seen.windows(2).all(|w| w[0].1 == w[1].1),
        "identical body on every attempt"
    );
    let ok = srv.delivered_bodies();
    assert_eq!(ok.len(), 1);
    let items: Vec<Value> = serde_json::from_slice::<Value>(&ok[0])
        .unwrap()
        .as_array()
        .unwrap()
        .clone();
    assert_exactly_once(&items, &sent);
    let s = c.stats();
    assert_eq!(
        (s.delivered, s.retries, s.dropped_total()),
        (3, 3, 0),
        "{s:?}"
    );
}

#[test]
fn slow_responses_are_waited_for_without_retry() {
    let slow = vec![Answer::Delay(Duration::from_millis(400)); 3];
    let cap = Capture::start(vec![("*", slow)]);
    let c = Client::new(opts(cap.endpoint()).upload_size(5)).unwrap();
    let sent = track_n(&c, 15, "slow");
    let t = Instant::now();
    assert!(c.flush(Duration::from_secs(10)));
    assert!(t.elapsed() >= Duration::from_millis(350));
    assert_exactly_once(&cap.delivered("events/track"), &sent);
    assert_eq!(c.stats().retries, 0);
}

#[test]
fn mixed_faults_on_every_route_deliver_everything_exactly_once() {
    let plan = vec![
        Answer::Status(500, None, "<html>oops</html>"),
        Answer::Status(429, Some("0".into()), ""),
        Answer::Delay(Duration::from_millis(100)),
        Answer::Status(503, None, ""),
        Answer::Hang,
        Answer::Status(502, None, "\u{0}garbage"),
        Answer::Status(408, None, ""),
    ];
    let cap = Capture::start(vec![("*", plan)]);
    let c = Client::new(
        opts(cap.endpoint())
            .request_timeout(Duration::from_millis(300))
            .max_attempts(8)
            .upload_size(7),
    )
    .unwrap();
    let events = track_n(&c, 40, "mix");
    let plain: Vec<String> = (0..10)
        .map(|i| {
            c.track(Event::new("u", "p").event_id(format!("mixp-{i}")))
                .unwrap()
        })
        .collect();
    for i in 0..10 {
        c.track_signal(Signal::new(format!("mix-{i}"), "thumbs_up"))
            .unwrap();
        c.identify(format!("user-{i}"), Properties::new()).unwrap();
    }
    let mut interactions = Vec::new();
    for i in 0..5 {
        let it = c
            .begin(
                Begin::new("u", "run")
                    .event_id(format!("mixi-{i}"))
                    .input("q"),
            )
            .unwrap();
        it.set_property("step", i);
        it.finish("done");
        interactions.push(format!("mixi-{i}"));
    }
    assert!(c.flush(Duration::from_secs(30)));
    let all: Vec<String> = events.into_iter().chain(plain).collect();
    assert_exactly_once(&cap.delivered("events/track"), &all);
    assert_eq!(cap.delivered("signals/track").len(), 10);
    assert_eq!(cap.delivered("users/identify").len(), 10);
    let finals: Vec<Value> = cap
        .delivered("events/track_partial")
        .into_iter()
        .filter(|p| p["is_pending"] == false)
        .collect();
    assert_exactly_once(&finals, &interactions);
    let s = c.stats();
    assert_eq!(s.dropped_total(), 0, "{s:?}");
    assert_eq!(s.delivered, s.queued, "{s:?}");
}
