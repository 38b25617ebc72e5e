//! Overload (issue 6): a producer far faster than the network. The queue
//! bound holds, memory stays bounded, and the drop count equals what was sent
//! minus what arrived. Tests here run one at a time (one measures RSS).

use std::collections::HashSet;
use std::time::Duration;

use raindrop_core::*;
use raindrop_test_support::{serial, Answer, Capture};
use serde_json::Value;

/// A server that takes `delay` per request, for the next `n` requests.
fn slow_server(delay: Duration, n: usize) -> Capture {
    Capture::start(vec![("*", vec![Answer::Delay(delay); n])])
}

fn opts(cap: &Capture, queue: usize) -> ClientOptions {
    ClientOptions::default()
        .write_key("rk_overload")
        .endpoint(cap.endpoint())
        .upload_interval(Duration::from_millis(20))
        .partial_idle_timeout(Duration::from_millis(100))
        .max_queue_size(queue)
        .max_in_flight(1)
        .upload_size(10)
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
fn fast_producer_slow_network_queue_bound_holds_and_drops_add_up() {
    let _g = serial();
    let cap = slow_server(Duration::from_millis(20), 10_000);
    let queue = 200;
    let c = Client::new(opts(&cap, queue)).unwrap();
    // Pending = the route's queue budget (items not yet in flight, batches
    // being filled included) + the one batch in flight.
    let bound = (queue + 10) as u64;
    let sent = 20_000u64;
    let mut max_pending = 0u64;
    // Refusals (asserted below) are what prove the calls never waited for
    // the network: a blocking producer would never find the queue full.
    for i in 0..sent {
        // A full queue is counted, never an error.
        c.track_ai(
            AiEvent::new("u", "e")
                .event_id(format!("o-{i}"))
                .input("q")
                .output("a"),
        )
        .unwrap();
        if i % 100 == 0 {
            max_pending = max_pending.max(c.stats().pending());
        }
    }
    let refused = c.stats().dropped(DropReason::QueueFull);
    assert!(
        refused > 0,
        "the producer must outrun a 20 ms-per-request server"
    );
    assert!(
        max_pending <= bound,
        "pending {max_pending} > bound {bound}"
    );
    assert!(c.flush(Duration::from_secs(20)));
    let arrived = cap.delivered("events/track");
    let unique: HashSet<_> = arrived
        .iter()
        .map(|v| v["event_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(unique.len(), arrived.len(), "no duplicates");
    let s = c.stats();
    assert_eq!(s.lost(ItemKind::Event, DropReason::QueueFull), refused);
    assert_eq!(
        s.dropped(DropReason::QueueFull),
        sent - arrived.len() as u64,
        "{s:?}"
    );
    assert_eq!(s.delivered, arrived.len() as u64);
    assert_eq!(s.dropped_total(), s.dropped(DropReason::QueueFull), "{s:?}");
    c.shutdown(Duration::from_secs(1));
}

#[test]
fn memory_stays_bounded_under_a_flood_of_large_events() {
    let _g = serial();
    // A server that hangs: nothing ever leaves, so only the bounds limit memory.
    let cap = Capture::start(vec![("*", vec![Answer::Hang; 64])]);
    let c = Client::new(opts(&cap, 100).request_timeout(Duration::from_secs(30))).unwrap();
    let payload = "x".repeat(10 * 1024);
    // Warm up allocator and worker.
    for _ in 0..200 {
        let _ = c.track_ai(AiEvent::new("u", "e").input(payload.clone()));
    }
    std::thread::sleep(Duration::from_millis(100));
    let before = rss_bytes();
    let n = 50_000u64; // 500 MB of payload if it were all kept
    let refused_before = c.stats().dropped(DropReason::QueueFull);
    for _ in 0..n {
        c.track_ai(AiEvent::new("u", "e").input(payload.clone()))
            .unwrap();
    }
    let refused = c.stats().dropped(DropReason::QueueFull) - refused_before;
    let grown = rss_bytes().saturating_sub(before);
    assert!(
        grown < 64 * 1024 * 1024,
        "RSS grew by {} MiB",
        grown / (1024 * 1024)
    );
    assert!(
        refused >= n - 200,
        "nearly everything was refused: {refused}"
    );
    let report = c.shutdown(Duration::from_millis(300));
    let s = report.stats;
    assert_eq!(
        s.queued + s.dropped(DropReason::QueueFull),
        n + 200,
        "{s:?}"
    );
    assert_eq!(s.pending(), 0, "{s:?}");
}

#[test]
fn flood_of_interactions_is_bounded_and_accounted() {
    let _g = serial();
    let cap = slow_server(Duration::from_millis(5), 10_000);
    let c = Client::new(opts(&cap, 20)).unwrap();
    let n = 400u64;
    for i in 0..n {
        let it = c
            .begin(
                Begin::new("u", "run")
                    .event_id(format!("fi-{i}"))
                    .input("q"),
            )
            .unwrap();
        it.set_property("i", i);
        it.finish("a");
    }
    assert!(c.flush(Duration::from_secs(20)));
    let s = c.stats();
    let arrived = cap.delivered("events/track_partial");
    let finals = arrived.iter().filter(|p| p["is_pending"] == false).count() as u64;
    // Each interaction is three updates; the queue and the open-interaction
    // table (both max_queue_size) refuse the rest, and every refusal is counted.
    assert_eq!(
        s.delivered + s.dropped(DropReason::QueueFull),
        3 * n,
        "{s:?}"
    );
    assert_eq!(s.dropped_total(), s.dropped(DropReason::QueueFull), "{s:?}");
    // Every finished interaction either arrived whole or is counted lost.
    assert!(finals > 0, "{s:?}");
    assert_eq!(finals + s.lost_total(ItemKind::Interaction), n, "{s:?}");
    let unique: HashSet<_> = arrived
        .iter()
        .map(|v| v["event_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        unique.len() as u64,
        arrived.len() as u64,
        "one final delta per interaction"
    );
}

/// An interaction's updates merge while they wait in the queue, so a burst
/// with no waiting keeps at least as many whole interactions as the queue
/// has slots (before, each update took a slot and ~6 % survived).
#[test]
fn a_burst_of_interactions_keeps_at_least_a_queue_of_whole_ones() {
    let _g = serial();
    // The server holds the first request, so the worker's intake is the only
    // thing draining the queue while the burst runs.
    let cap = slow_server(Duration::from_millis(200), 10_000);
    let q = 50;
    let c = Client::new(opts(&cap, q)).unwrap();
    let n = 1_000u64;
    for i in 0..n {
        let it = c
            .begin(Begin::new("u", "run").event_id(format!("b-{i}")).input("q"))
            .unwrap();
        it.set_property("step", 1);
        it.set_property("other", 2);
        it.finish("a");
    }
    assert!(c.flush(Duration::from_secs(60)), "{:?}", c.stats());
    let s = c.stats();
    let arrived = cap.delivered("events/track_partial");
    let finals: Vec<&Value> = arrived
        .iter()
        .filter(|p| p["is_pending"] == false)
        .collect();
    let whole = finals
        .iter()
        .filter(|p| p["properties"]["step"] == 1 && p["properties"]["other"] == 2)
        .count();
    assert!(
        whole as u64 >= q as u64,
        "{whole} whole interactions: {s:?}"
    );
    // Every finished interaction arrived (whole or in part) or is counted lost.
    assert_eq!(
        finals.len() as u64 + s.lost_total(ItemKind::Interaction),
        n,
        "{s:?}"
    );
    assert_eq!(s.pending(), 0, "{s:?}");
}

#[test]
fn idle_open_interactions_do_not_lock_out_new_ones() {
    let _g = serial();
    let cap = Capture::start(vec![]);
    let c = Client::new(opts(&cap, 10)).unwrap();
    // Fill the open-interaction table with interactions that are never finished.
    let open: Vec<Interaction> = (0..10)
        .map(|i| {
            c.begin(
                Begin::new("u", "open")
                    .event_id(format!("open-{i}"))
                    .input("q"),
            )
            .unwrap()
        })
        .collect();
    // Their pending snapshots ship after the idle timeout; they stay open.
    assert!(cap.wait_for(Duration::from_secs(5), |c| c
        .delivered("events/track_partial")
        .len()
        == 10));
    // A new interaction must still get through (it did not, for 10 minutes, before the fix).
    let fresh = c
        .begin(Begin::new("u", "fresh").event_id("fresh-1").input("q"))
        .unwrap();
    fresh.finish("a");
    assert!(c.flush(Duration::from_secs(5)));
    let s = c.stats();
    assert_eq!(s.dropped(DropReason::QueueFull), 0, "{s:?}");
    let got: Vec<_> = cap
        .delivered("events/track_partial")
        .into_iter()
        .filter(|p| p["event_id"] == "fresh-1")
        .collect();
    assert_eq!(got.len(), 1, "{got:?}");
    // And an old one that finishes later (its table entry may have been recycled) is still delivered.
    open[0].finish("late");
    assert!(c.flush(Duration::from_secs(5)));
    let late: Vec<_> = cap
        .delivered("events/track_partial")
        .into_iter()
        .filter(|p| p["event_id"] == "open-0" && p["is_pending"] == false)
        .collect();
    assert_eq!(late.len(), 1);
    assert_eq!(late[0]["ai_data"]["output"], "late");
}
