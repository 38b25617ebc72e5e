//! The durable spool (issue 25): what a process accepted during a backend
//! outage arrives after it is killed with SIGKILL and restarted with the
//! same spool directory; damaged segments are skipped and counted, never a
//! panic or a stall; one client per directory.
//!
//! The killed service is this test binary run again as a child process
//! (`CHILD` set), against a loopback port that refuses connections; the
//! restarted one talks to the loopback capture server.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use raindrop_core::*;
use raindrop_test_support::{refusing_addr, Capture};
use serde_json::Value;

const CHILD: &str = "RAINDROP_SPOOL_TEST_CHILD";

fn opts(endpoint: String) -> ClientOptions {
    ClientOptions::default()
        .write_key("rk_spool")
        .endpoint(endpoint)
        .workshop(Workshop::Off)
        .upload_size(100)
        .upload_interval(Duration::from_millis(50))
        .partial_idle_timeout(Duration::from_millis(100))
        .request_timeout(Duration::from_secs(5))
        .max_queue_size(100_000)
        .max_buffered_bytes(256 << 20)
}

fn temp_dir(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!(
        "raindrop-spool-{name}-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    out.sort();
    out
}

/// The service that gets killed: accepts `events` events and
/// `interactions` interactions (half finished, half still open) while the
/// backend refuses connections, waits until every one has settled in
/// memory (given up on, so written to the spool before), prints its stats
/// and waits to be killed.
fn child(spec: &str) {
    let spec: Value = serde_json::from_str(spec).unwrap();
    if spec["hang"] == true {
        return child_in_flight(&spec);
    }
    let dir = spec["dir"].as_str().unwrap();
    let endpoint = spec["endpoint"].as_str().unwrap().to_owned();
    let events = spec["events"].as_u64().unwrap();
    let interactions = spec["interactions"].as_u64().unwrap();
    let c = Client::new(opts(endpoint).max_attempts(1).spool(dir)).unwrap();
    let mut open = Vec::new();
    for i in 0..interactions {
        let it = c
            .begin(
                Begin::new("u", "chat")
                    .event_id(format!("int-{i}"))
                    .input("question"),
            )
            .unwrap();
        if i.is_multiple_of(2) {
            it.finish("answer");
        } else {
            it.set_output("half an answer");
            open.push(it);
        }
    }
    for i in 0..events {
        c.track_ai(
            AiEvent::new("u", "e")
                .event_id(format!("ev-{i}"))
                .input("q")
                .output("a"),
        )
        .unwrap();
    }
    // Everything before the flush marker was written to the spool before
    // any of it was sent; with the backend down it all settles as given up.
    let settled = c.flush(Duration::from_secs(120));
    let s = c.stats();
    let reasons: HashMap<&str, u64> = s.drop_reasons().map(|(r, n)| (r.as_str(), n)).collect();
    let line = serde_json::json!({
        "settled": settled,
        "queued": s.queued,
        "delivered": s.delivered,
        "reasons": reasons,
        "spool_written": s.spool_written,
        "spool_not_written": s.spool_not_written,
    });
    println!("SPOOL_CHILD {line}");
    std::io::stdout().flush().unwrap();
    // Killed long before this.
    std::thread::sleep(Duration::from_secs(300));
    drop(open);
}

/// The service killed while its requests are in flight (the server holds
/// them unanswered): tracks, waits until every event is written to the
/// spool, says so, and waits to be killed.
fn child_in_flight(spec: &Value) {
    let dir = spec["dir"].as_str().unwrap();
    let endpoint = spec["endpoint"].as_str().unwrap().to_owned();
    let events = spec["events"].as_u64().unwrap();
    let c = Client::new(opts(endpoint).spool(dir)).unwrap();
    for i in 0..events {
        c.track(Event::new("u", "e").event_id(format!("ev-{i}")))
            .unwrap();
    }
    let end = Instant::now() + Duration::from_secs(60);
    while c.stats().spool_written < events && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
    }
    let s = c.stats();
    let line = serde_json::json!({
        "spool_written": s.spool_written,
        "delivered": s.delivered,
        "requests": s.requests,
    });
    println!("SPOOL_CHILD {line}");
    std::io::stdout().flush().unwrap();
    std::thread::sleep(Duration::from_secs(300));
}

/// Starts the child, waits for its stats line, and returns both.
fn start_child(
    test: &str,
    dir: &Path,
    events: u64,
    interactions: u64,
) -> (std::process::Child, Value) {
    let spec = serde_json::json!({
        "dir": dir,
        "endpoint": format!("http://{}/v1/", refusing_addr()),
        "events": events,
        "interactions": interactions,
    });
    spawn_child(test, spec)
}

fn spawn_child(test: &str, spec: Value) -> (std::process::Child, Value) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            test,
            "--exact",
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, spec.to_string())
        .env_remove("RAINDROP_WRITE_KEY")
        .env_remove("RAINDROP_SPOOL_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if let Some((_, l)) = line.split_once("SPOOL_CHILD ") {
                let _ = tx.send(l.to_owned());
            }
        }
    });
    let line = match rx.recv_timeout(Duration::from_secs(180)) {
        Ok(l) => l,
        Err(e) => {
            let _ = child.kill();
            panic!("the child printed no stats: {e}");
        }
    };
    (child, serde_json::from_str(&line).unwrap())
}

/// Writes the first half of one more record (an event that was being
/// appended when the process died) at the end of the newest segment.
fn tear_tail(dir: &Path) {
    let last = segments(dir).pop().expect("a segment");
    let body = br#"{"event_id":"torn-0","user_id":"u","event":"e"}"#;
    let mut payload = vec![0u8];
    payload.extend_from_slice(body);
    let mut record = (payload.len() as u32).to_le_bytes().to_vec();
    record.extend_from_slice(&crc32fast_hash(&payload).to_le_bytes());
    record.extend_from_slice(&payload);
    let mut f = std::fs::OpenOptions::new().append(true).open(last).unwrap();
    f.write_all(&record[..record.len() / 2]).unwrap();
}

/// CRC-32 (IEEE), bit by bit: the test writes its own records without
/// borrowing the SDK's code.
fn crc32fast_hash(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn outage_kill_restart(test: &str, events: u64, interactions: u64, torn: bool) {
    let started = Instant::now();
    let dir = temp_dir(test);
    let (mut child, stats) = start_child(test, &dir, events, interactions);
    assert_eq!(stats["settled"], true, "child: {stats}");
    assert_eq!(stats["delivered"], 0, "the backend was down: {stats}");
    assert_eq!(stats["spool_not_written"], 0, "{stats}");
    // Nothing was refused at the call: every item was accepted.
    let reasons = stats["reasons"].as_object().unwrap();
    let kept: u64 = reasons.values().map(|n| n.as_u64().unwrap()).sum();
    assert_eq!(
        kept,
        stats["queued"].as_u64().unwrap(),
        "every accepted item was given up on in memory, for the backend's reasons only: {stats}"
    );
    assert!(
        reasons
            .keys()
            .all(|r| r == "retries_exhausted" || r == "internal"),
        "{stats}"
    );

    // A second process on the directory gets a clear error.
    let err = Client::new(opts("http://127.0.0.1:9/v1/".into()).spool(&dir)).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, Error::Config { field: "spool", .. }) && text.contains("in use"),
        "{text}"
    );

    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(!segments(&dir).is_empty(), "the spool survived the kill");
    for seg in segments(&dir) {
        let bytes = std::fs::read(&seg).unwrap();
        assert!(
            !bytes.windows(8).any(|w| w == b"rk_spool"),
            "the write key is never on disk: {}",
            seg.display()
        );
    }
    if torn {
        tear_tail(&dir);
    }

    let cap = Capture::start(vec![]);
    let c = Client::new(opts(cap.endpoint()).spool(&dir)).unwrap();
    let c2 = c.clone();
    // New items wait behind the replay, then go too.
    c2.track(Event::new("u", "after-restart").event_id("new-0"))
        .unwrap();
    assert!(c.flush(Duration::from_secs(120)), "{:?}", c.stats());

    let events_got: HashSet<String> = cap
        .delivered("events/track")
        .iter()
        .map(|v| v["event_id"].as_str().unwrap().to_owned())
        .collect();
    let mut want: HashSet<String> = (0..events).map(|i| format!("ev-{i}")).collect();
    want.insert("new-0".into());
    assert_eq!(
        events_got.len(),
        want.len(),
        "distinct event ids at the sink"
    );
    assert_eq!(
        events_got, want,
        "every accepted event arrived, none invented"
    );

    let partials = cap.delivered("events/track_partial");
    let mut by_id: HashMap<String, Vec<&Value>> = HashMap::new();
    for p in &partials {
        by_id
            .entry(p["event_id"].as_str().unwrap().to_owned())
            .or_default()
            .push(p);
    }
    let want: HashSet<String> = (0..interactions).map(|i| format!("int-{i}")).collect();
    assert_eq!(by_id.keys().cloned().collect::<HashSet<_>>(), want);
    for (id, deltas) in &by_id {
        let n: u64 = id.trim_start_matches("int-").parse().unwrap();
        let finished = deltas.iter().any(|d| d["is_pending"] == false);
        if n.is_multiple_of(2) {
            assert!(finished, "{id} was finished before the kill: {deltas:?}");
        } else {
            assert!(!finished, "{id} was open at the kill: no invented final");
            assert!(
                deltas
                    .iter()
                    .any(|d| d["ai_data"]["output"] == "half an answer"),
                "{id} replayed as recorded: {deltas:?}"
            );
        }
    }

    let s = c.stats();
    assert!(s.spool_replayed > 0);
    assert_eq!(s.spool_corrupt, torn as u64, "{s:?}");
    assert_eq!(s.dropped_total(), 0, "{s:?}");
    let report = c.shutdown(Duration::from_secs(10));
    assert!(report.completed, "{report:?}");
    assert!(segments(&dir).is_empty(), "delivered segments are removed");
    println!(
        "spool outage test: {events} events, {interactions} interactions, torn={torn}: {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The size of the default run (debug build, under 60 s on a loaded 2-core
/// box); the `#[ignore]`d tests run the full 50,000 events and 2,000
/// interactions.
const EVENTS: u64 = 20_000;
const INTERACTIONS: u64 = 1_000;

#[test]
fn outage_then_sigkill_then_restart_delivers_every_accepted_item() {
    if let Ok(spec) = std::env::var(CHILD) {
        return child(&spec);
    }
    outage_kill_restart(
        "outage_then_sigkill_then_restart_delivers_every_accepted_item",
        EVENTS,
        INTERACTIONS,
        false,
    );
}

/// Full size: 35 to 70 s in a debug build on the shared two cores (load 7
/// to 10), hence not in the default run.
#[test]
#[ignore = "full size, 35-70 s: cargo test -p raindrop-core --test spool -- --ignored"]
fn full_size_outage_50000_events_2000_interactions() {
    if let Ok(spec) = std::env::var(CHILD) {
        return child(&spec);
    }
    outage_kill_restart(
        "full_size_outage_50000_events_2000_interactions",
        50_000,
        2_000,
        false,
    );
}

#[test]
fn a_torn_tail_is_skipped_and_counted_and_the_rest_arrives() {
    if let Ok(spec) = std::env::var(CHILD) {
        return child(&spec);
    }
    outage_kill_restart(
        "a_torn_tail_is_skipped_and_counted_and_the_rest_arrives",
        EVENTS,
        INTERACTIONS,
        true,
    );
}

#[test]
#[ignore = "full size, 35-70 s: cargo test -p raindrop-core --test spool -- --ignored"]
fn full_size_outage_with_a_torn_tail() {
    if let Ok(spec) = std::env::var(CHILD) {
        return child(&spec);
    }
    outage_kill_restart("full_size_outage_with_a_torn_tail", 50_000, 2_000, true);
}

/// Leaves `n` events in the spool of `dir` (the backend is down: every
/// event is given up on, so its segment is kept). Nothing is sent before
/// the flush (one batch, no timer): a request given up on while items were
/// still being written would start a new segment, and the tests count them.
fn fill(dir: &Path, prefix: &str, n: usize) {
    let down = format!("http://{}/v1/", refusing_addr());
    let c = Client::new(
        opts(down)
            .max_attempts(1)
            .upload_size(1000)
            .upload_interval(Duration::from_secs(600))
            .spool_options(SpoolOptions::new(dir).sync(SpoolSync::Always)),
    )
    .unwrap();
    for i in 0..n {
        c.track(Event::new("u", "e").event_id(format!("{prefix}-{i}")))
            .unwrap();
    }
    c.flush(Duration::from_secs(30));
    let s = c.stats();
    assert_eq!(s.spool_written, n as u64, "{s:?}");
    // Everything was given up on: the shutdown is immediate, and the lock
    // is released before it returns.
    assert!(c.shutdown(Duration::from_secs(10)).completed);
}

#[test]
fn damaged_segments_are_skipped_and_counted_the_rest_replayed() {
    if std::env::var_os(CHILD).is_some() {
        return;
    }
    let dir = temp_dir("damaged");
    fill(&dir, "a", 200);
    let first = segments(&dir);
    assert_eq!(first.len(), 1);
    fill(&dir, "b", 200);
    let both = segments(&dir);
    assert_eq!(both.len(), 2, "{both:?}");

    // Flipped bytes in the middle of the first segment.
    let mut data = std::fs::read(&both[0]).unwrap();
    let mid = data.len() / 2;
    for b in &mut data[mid..mid + 3] {
        *b ^= 0x5a;
    }
    std::fs::write(&both[0], &data).unwrap();
    // A segment of a newer format version (a copy of the second), which
    // this SDK must not misread; it is left in place.
    let mut newer = std::fs::read(&both[1]).unwrap();
    newer[7] = 200;
    let newer_path = dir.join("0000000000000900.seg");
    std::fs::write(&newer_path, &newer).unwrap();
    // A zero-length segment (created, then the process died) and one of
    // random bytes.
    std::fs::write(dir.join("0000000000000901.seg"), b"").unwrap();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(dir.join("0000000000000902.seg"), &noise).unwrap();

    let cap = Capture::start(vec![]);
    let started = Instant::now();
    let c = Client::new(opts(cap.endpoint()).spool(&dir)).unwrap();
    assert!(c.flush(Duration::from_secs(30)));
    assert!(started.elapsed() < Duration::from_secs(20), "no stall");
    let got: HashSet<String> = cap
        .delivered("events/track")
        .iter()
        .map(|v| v["event_id"].as_str().unwrap().to_owned())
        .collect();
    let b: HashSet<String> = (0..200).map(|i| format!("b-{i}")).collect();
    assert!(
        got.is_superset(&b),
        "the undamaged segment is replayed whole"
    );
    let a_got = got.iter().filter(|id| id.starts_with("a-")).count();
    assert!(
        (190..200).contains(&a_got),
        "the flipped record is skipped, the rest of its segment replayed: {a_got}"
    );
    assert!(got
        .iter()
        .all(|id| id.starts_with("a-") || id.starts_with("b-")));
    let s = c.stats();
    // The flipped region, the newer version, the empty file, the noise.
    assert_eq!(s.spool_corrupt, 4, "{s:?}");
    assert_eq!(s.spool_replayed, got.len() as u64);
    c.shutdown(Duration::from_secs(5));
    let left = segments(&dir);
    assert!(
        left.contains(&newer_path),
        "a newer format is left for a newer SDK"
    );
    assert!(
        !left.contains(&dir.join("0000000000000901.seg")),
        "an empty segment is removed"
    );
    assert_eq!(left.len(), 2, "{left:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn one_client_per_directory_and_the_bound_keeps_the_oldest() {
    if std::env::var_os(CHILD).is_some() {
        return;
    }
    let dir = temp_dir("bound");
    let down = format!("http://{}/v1/", refusing_addr());
    let c = Client::new(
        opts(down.clone())
            .max_attempts(1)
            .spool_options(SpoolOptions::new(&dir).max_bytes(20_000)),
    )
    .unwrap();
    let second = Client::new(opts(down).spool(&dir)).unwrap_err();
    assert!(
        second
            .to_string()
            .contains("in use by another raindrop client"),
        "{second}"
    );
    for i in 0..400 {
        c.track(Event::new("u", "e").event_id(format!("e-{i}")))
            .unwrap();
    }
    c.flush(Duration::from_secs(30));
    let s = c.stats();
    assert!(s.spool_written > 0 && s.spool_not_written > 0, "{s:?}");
    assert_eq!(s.spool_written + s.spool_not_written, 400, "{s:?}");
    assert!(s.spool_bytes <= 20_000, "{s:?}");
    assert!(c.shutdown(Duration::from_secs(10)).completed);

    // The restart gets the oldest items: what the spool held was kept.
    let cap = Capture::start(vec![]);
    let c = Client::new(opts(cap.endpoint()).spool(&dir)).unwrap();
    assert!(c.flush(Duration::from_secs(30)));
    let got: HashSet<String> = cap
        .delivered("events/track")
        .iter()
        .map(|v| v["event_id"].as_str().unwrap().to_owned())
        .collect();
    let want: HashSet<String> = (0..s.spool_written).map(|i| format!("e-{i}")).collect();
    assert_eq!(got, want, "the oldest ones");
    c.shutdown(Duration::from_secs(5));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_kill_while_requests_are_in_flight_loses_nothing() {
    if let Ok(spec) = std::env::var(CHILD) {
        return child(&spec);
    }
    let dir = temp_dir("in-flight");
    // The first server takes the requests and never answers in time.
    let hung = Capture::with_latency(vec![], Duration::from_secs(60), Duration::ZERO);
    let spec = serde_json::json!({
        "dir": dir,
        "endpoint": hung.endpoint(),
        "events": 5_000,
        "hang": true,
    });
    let (mut child, stats) = spawn_child("a_kill_while_requests_are_in_flight_loses_nothing", spec);
    assert_eq!(stats["spool_written"], 5_000, "{stats}");
    assert_eq!(stats["delivered"], 0, "{stats}");
    assert!(
        hung.wait_for(Duration::from_secs(10), |c| !c.requests().is_empty()),
        "requests were in flight at the kill"
    );
    child.kill().unwrap();
    child.wait().unwrap();

    let cap = Capture::start(vec![]);
    let c = Client::new(opts(cap.endpoint()).spool(&dir)).unwrap();
    assert!(c.flush(Duration::from_secs(60)), "{:?}", c.stats());
    let got: HashSet<String> = cap
        .delivered("events/track")
        .iter()
        .map(|v| v["event_id"].as_str().unwrap().to_owned())
        .collect();
    let want: HashSet<String> = (0..5_000).map(|i| format!("ev-{i}")).collect();
    assert_eq!(got, want);
    c.shutdown(Duration::from_secs(10));
    assert!(segments(&dir).is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}
