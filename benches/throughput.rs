//! End-to-end numbers for `track_ai` (run: `cargo bench --bench throughput`).
//!
//! Phases (pass one or more names to run only those; default: all):
//! - `caller`: caller latency of 200,000 `track_ai` calls, each timed on
//!   its own, in chunks of 2,048 with an untimed `flush` between chunks so the
//!   queue never fills (backend up).
//! - `latency`: the field mix at real network distance: a sink answering
//!   after 100 ms, 16 producers running 2,000 interactions/s and 5,000
//!   `track_ai`/s for 30 s; reports delivered rates, loss by the sink's own
//!   count, caller p99 during the run, worker CPU and peak RSS.
//! - `burst`: 1,000,000 `track_ai` events to a loopback sink running in a
//!   child process (so its memory is not ours). The producer waits for room
//!   with `Client::wait_ready` (opt-in back-pressure) before each call, so
//!   every event is accepted exactly once. Reports delivered events/s, loss
//!   and duplicates (by event id, counted by the sink), worker CPU per
//!   event, and peak RSS. Then the reqwest floor: plain reqwest posting
//!   pre-built 10-event bodies of the run's mean request size to a fresh
//!   child sink, as many in flight as the SDK's limiter chose.
//! - `down`: the backend is down (a closed loopback port: connection
//!   refused). 200,000 unpaced calls, each timed; reports caller mean/p99,
//!   RSS, and checks after `shutdown` that every call is accounted for in
//!   `stats()`: delivered + dropped == calls.
//!
//! - `spans`: 200,000 `export_span` calls (a tool span as the tracing layer
//!   builds it: 9 attributes, ~200 bytes of input/output) to a loopback
//!   sink, in chunks of 2,048 with a flush between; reports worker CPU per
//!   span (serialisation + delivery), the part of a span's cost that is not
//!   on the caller's thread.
//! - `tool`: 200,000 calls of a sync `#[raindrop::tool]` fn inside an
//!   interaction span with `raindrop::layer` installed, each timed (chunks
//!   of 2,048 + flush); reports per-call p50/p99 and caller/worker CPU per call.
//!
//! - `bursts`: 50,000 interactions (begin + 2 × set_property + finish), then
//!   50,000 sync `#[raindrop::tool]` spans (`RAINDROP_BENCH_BURST_N` for
//!   another count), as fast as one producer can go
//!   to a loopback sink, default options; reports what arrived (the sink's
//!   count of final updates; spans from `stats()`), what was lost by reason,
//!   and peak RSS. Then the same with opt-in back-pressure
//!   (`Client::wait_ready` before each unit): no loss.
//!
//! - `spool`: the durable spool's cost, same run, four clients in turn:
//!   no spool, then a spool with each fsync policy (`Never`, the default
//!   `Every(1 s)`, `Always`), in a directory under the system temp dir.
//!   For each: caller p99 of 100,000 timed `track_ai` (chunks of 2,048 +
//!   untimed flush, as in `caller`); delivered events/s of 100,000 paced
//!   `track_ai` to a counting loopback sink (`wait_ready` before each call;
//!   loss and duplicates by the sink's id set); worker CPU per event. Then
//!   disk bytes per event: 10,000 `track_ai` with the backend down, the
//!   spool's bytes after all were written, divided by 10,000.
//!
//! Every phase is bounded in time and stops by itself. Options other than
//! the endpoint and key are the defaults unless `RAINDROP_BENCH_UPLOAD_SIZE`
//! or `RAINDROP_BENCH_MAX_IN_FLIGHT` are set (for exploring).

#![allow(missing_docs)]

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use raindrop::{Client, DropReason};

const CHILD_ENV: &str = "RAINDROP_BENCH_SINK_CHILD";

fn main() {
    if std::env::var_os(CHILD_ENV).is_some() {
        child_sink();
        return;
    }
    let phases: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let run = |p: &str| phases.is_empty() || phases.iter().any(|x| x == p);
    print_machine();
    let mut up_p99 = None;
    if run("caller") {
        up_p99 = Some(caller_phase());
    }
    if run("latency") {
        latency_phase();
    }
    if run("burst") {
        burst_phase();
    }
    if run("down") {
        down_phase(up_p99);
    }
    if run("spans") {
        spans_phase();
    }
    if run("tool") {
        tool_phase();
    }
    if run("bursts") {
        bursts_phase(false);
        bursts_phase(true);
    }
    if run("spool") {
        spool_phase();
    }
}

fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn options(endpoint: &str) -> raindrop::ClientOptions {
    let mut o = support::options(endpoint);
    if let Some(n) = env_usize("RAINDROP_BENCH_UPLOAD_SIZE") {
        o = o.upload_size(n);
    }
    if let Some(n) = env_usize("RAINDROP_BENCH_MAX_IN_FLIGHT") {
        o = o.max_in_flight(n);
    }
    if let Some(n) = env_usize("RAINDROP_BENCH_PARTIALS_IN_FLIGHT") {
        o = o.max_partials_in_flight(n);
    }
    o
}

fn print_machine() {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("machine: {cpu}, {cores} cores, load average {}", loadavg());
    let o = options("http://127.0.0.1:1/");
    println!(
        "client options: upload_size {}, max_in_flight {}, max_partials_in_flight {}, max_queue_size {}",
        o.upload_size, o.max_in_flight, o.max_partials_in_flight, o.max_queue_size
    );
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Resets VmHWM to the current RSS (Linux `clear_refs` value 5).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// CPU time (user + system) of this process's threads named `name`, and of
/// the calling thread, in seconds (from /proc, 10 ms resolution).
fn thread_cpu(name: &str) -> f64 {
    let tick = 100.0; // USER_HZ on Linux
    let mut total = 0u64;
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    for t in dir.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        total += stat_ticks(&t.path().join("stat"));
    }
    total as f64 / tick
}

fn self_thread_cpu() -> f64 {
    stat_ticks(std::path::Path::new("/proc/thread-self/stat")) as f64 / 100.0
}

fn process_cpu(pid: u32) -> f64 {
    stat_ticks(std::path::Path::new(&format!("/proc/{pid}/stat"))) as f64 / 100.0
}

/// utime + stime from a /proc stat file.
fn stat_ticks(path: &std::path::Path) -> u64 {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the parenthesised comm: state is field 3; utime 14, stime 15.
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

struct Latencies(Vec<u64>);

impl Latencies {
    fn report(&mut self, label: &str) -> u64 {
        let v = &mut self.0;
        v.sort_unstable();
        let n = v.len();
        let mean = v.iter().sum::<u64>() as f64 / n as f64;
        let pct = |p: f64| v[((n as f64 * p) as usize).min(n - 1)];
        let p99 = pct(0.99);
        println!(
            "{label}: n={n} mean={:.3} µs p50={:.3} µs p99={:.3} µs p99.9={:.3} µs max={:.1} µs",
            mean / 1e3,
            pct(0.50) as f64 / 1e3,
            p99 as f64 / 1e3,
            pct(0.999) as f64 / 1e3,
            v[n - 1] as f64 / 1e3
        );
        p99
    }
}

/// Backend up: per-call latency with the queue never full. Returns p99 (ns).
fn caller_phase() -> u64 {
    println!("\n== caller: 200,000 track_ai, backend up, chunks of 2,048 + untimed flush ==");
    let sink = support::Sink::start(false);
    let client = Client::new(options(&sink.endpoint())).expect("client");
    const CALLS: usize = 200_000;
    let mut lat = Vec::with_capacity(CALLS);
    // Warm up: connections, allocator, caches.
    for _ in 0..2_048 {
        client.track_ai(support::chat_event()).expect("track_ai");
    }
    assert!(client.flush(Duration::from_secs(30)));
    let mut errors = 0u64;
    while lat.len() < CALLS {
        for _ in 0..2_048.min(CALLS - lat.len()) {
            let t = Instant::now();
            let r = client.track_ai(support::chat_event());
            lat.push(t.elapsed().as_nanos() as u64);
            errors += u64::from(r.is_err());
        }
        assert!(client.flush(Duration::from_secs(30)), "flush timed out");
    }
    let p99 = Latencies(lat).report("track_ai (backend up)");
    let report = client.shutdown(Duration::from_secs(10));
    println!(
        "errors={errors} delivered={} dropped={} requests={} load={}",
        report.stats.delivered,
        report.stats.dropped_total(),
        report.stats.requests,
        loadavg()
    );
    assert_eq!(errors, 0);
    p99
}

/// The field mix at real network distance: a sink answering after 100 ms
/// (`RAINDROP_BENCH_RTT_MS`), 16 producer threads running together 2,000
/// interactions/s (begin + 2 set_property + finish) and 5,000 track_ai/s for
/// 30 s (`RAINDROP_BENCH_SECS`), default options. Every call is timed.
fn latency_phase() {
    let rtt = env_usize("RAINDROP_BENCH_RTT_MS").unwrap_or(100) as u64;
    let secs = env_usize("RAINDROP_BENCH_SECS").unwrap_or(30) as u64;
    const THREADS: u64 = 16;
    const INTERACTIONS: u64 = 2_000;
    const EVENTS: u64 = 5_000;
    println!(
        "\n== latency: sink {rtt} ms away; {THREADS} producers, {INTERACTIONS} interactions/s + {EVENTS} track_ai/s for {secs} s =="
    );
    let mut sink = ChildSink::start_with_delay(Duration::from_millis(rtt));
    let endpoint = format!("http://127.0.0.1:{}/v1/", sink.port);
    let client = Client::new(options(&endpoint)).expect("client");
    reset_peak_rss();
    let rss_before = support::rss_kib();
    let start = Instant::now();
    let stop = std::sync::atomic::AtomicBool::new(false);
    // Per producer: call latencies, interactions, events.
    type Produced = (Vec<u64>, u64, u64);
    let (results, limits): (Vec<Produced>, Vec<(u64, u64)>) = std::thread::scope(|s| {
        // What the limiter chose, every 100 ms: (events/track, track_partial).
        let sampler = s.spawn(|| {
            let mut v = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let st = client.stats();
                v.push((
                    st.in_flight_limit("events/track"),
                    st.in_flight_limit("events/track_partial"),
                ));
                std::thread::sleep(Duration::from_millis(100));
            }
            v
        });
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let client = client.clone();
                s.spawn(move || {
                    let mut lat =
                        Vec::with_capacity(((INTERACTIONS * 4 + EVENTS) * secs / THREADS) as usize);
                    let (mut inter, mut events) = (0u64, 0u64);
                    let due = |rate: u64, step: u64| rate * step / 100 / THREADS;
                    let timed = |lat: &mut Vec<u64>, f: &mut dyn FnMut()| {
                        let t = Instant::now();
                        f();
                        lat.push(t.elapsed().as_nanos() as u64);
                    };
                    for step in 1..=secs * 100 {
                        while inter < due(INTERACTIONS, step) {
                            let mut it = None;
                            timed(&mut lat, &mut || {
                                it = client
                                    .begin(
                                        raindrop::Begin::new("user-1234", "agent_run")
                                            .input("Summarise my orders"),
                                    )
                                    .ok()
                            });
                            let it = it.expect("begin");
                            timed(&mut lat, &mut || it.set_property("stage", "tools"));
                            timed(&mut lat, &mut || it.set_property("tools", 2));
                            timed(&mut lat, &mut || it.finish("You ordered a kettle."));
                            inter += 1;
                        }
                        while events < due(EVENTS, step) {
                            timed(&mut lat, &mut || {
                                client.track_ai(support::chat_event()).expect("track_ai");
                            });
                            events += 1;
                        }
                        let next = start + Duration::from_millis(10 * step);
                        if let Some(w) = next.checked_duration_since(Instant::now()) {
                            std::thread::sleep(w);
                        }
                    }
                    (lat, inter, events)
                })
            })
            .collect();
        let results = handles
            .into_iter()
            .map(|h| h.join().expect("producer"))
            .collect();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (results, sampler.join().expect("sampler"))
    });
    let produced_in = start.elapsed();
    let flushed = client.flush(Duration::from_secs(120));
    let elapsed = start.elapsed();
    let worker_cpu = thread_cpu("raindrop-worker");
    let peak = support::peak_rss_kib();
    let stats = client.stats();
    let counts = sink.counts();
    let report = client.shutdown(Duration::from_secs(10));
    let (mut lat, mut inter, mut events) = (Vec::new(), 0, 0);
    for (l, i, e) in results {
        lat.extend(l);
        inter += i;
        events += e;
    }
    let calls = lat.len() as u64;
    Latencies(lat).report("caller cost per tracking call during the run");
    println!(
        "produced {inter} interactions + {events} events in {:.2} s; flushed={flushed} after {:.2} s",
        produced_in.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    println!(
        "delivered: {:.0} events/s, {:.0} interactions/s (finals) | loss: events {}, interactions {} | duplicates: events {}, finals {} | snapshots {} | requests {}",
        counts.unique as f64 / produced_in.as_secs_f64(),
        counts.finals as f64 / produced_in.as_secs_f64(),
        events.saturating_sub(counts.unique),
        inter.saturating_sub(counts.finals),
        counts.duplicates,
        counts.final_duplicates,
        counts.snapshots,
        counts.requests
    );
    // The limiter's choice over the second half of the run (steady state),
    // and the most it chose at any time.
    let steady = &limits[limits.len() / 2..];
    let median = |f: fn(&(u64, u64)) -> u64| {
        let mut v: Vec<u64> = steady.iter().map(f).collect();
        v.sort_unstable();
        v.get(v.len() / 2).copied().unwrap_or(0)
    };
    println!(
        "in flight chosen by the limiter (median of the second half / max): events/track {} / {}, track_partial {} / {}",
        median(|l| l.0),
        limits.iter().map(|l| l.0).max().unwrap_or(0),
        median(|l| l.1),
        limits.iter().map(|l| l.1).max().unwrap_or(0)
    );
    let by_reason: Vec<String> = stats
        .drop_reasons()
        .map(|(r, n)| format!("{}={n}", r.as_str()))
        .collect();
    println!(
        "stats: queued={} delivered={} dropped=[{}] | worker CPU {:.2} s = {:.2} µs per tracking call | RSS before {:.1} MiB, peak {:.1} MiB | shutdown completed={} | load={}",
        stats.queued,
        stats.delivered,
        by_reason.join(" "),
        worker_cpu,
        worker_cpu * 1e6 / calls.max(1) as f64,
        mib(rss_before),
        mib(peak),
        report.completed,
        loadavg()
    );
}

/// The counting sink, in a child process so its id set is not in our RSS.
struct ChildSink {
    child: Child,
    stdin: Option<ChildStdin>,
    out: BufReader<std::process::ChildStdout>,
    port: u16,
}

impl ChildSink {
    fn start() -> ChildSink {
        ChildSink::start_with_delay(Duration::ZERO)
    }

    /// A sink whose every answer waits `delay` (the distance of the real API).
    fn start_with_delay(delay: Duration) -> ChildSink {
        let exe = std::env::current_exe().expect("current_exe");
        let mut child = Command::new(exe)
            .env(CHILD_ENV, "1")
            .env(
                "RAINDROP_BENCH_SINK_DELAY_MS",
                delay.as_millis().to_string(),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn sink child");
        let stdin = child.stdin.take();
        let mut out = BufReader::new(child.stdout.take().expect("child stdout"));
        let mut line = String::new();
        out.read_line(&mut line).expect("child port");
        let port = line
            .trim()
            .strip_prefix("port ")
            .and_then(|p| p.parse().ok())
            .expect("child printed no port");
        ChildSink {
            child,
            stdin,
            out,
            port,
        }
    }

    fn counts(&mut self) -> support::Counts {
        let stdin = self.stdin.as_mut().expect("stdin");
        writeln!(stdin, "counts").expect("ask counts");
        stdin.flush().expect("flush");
        let mut line = String::new();
        self.out.read_line(&mut line).expect("counts");
        let v: Vec<u64> = line
            .split_whitespace()
            .map(|x| x.parse().expect("number"))
            .collect();
        support::Counts {
            requests: v[0],
            events: v[1],
            unique: v[2],
            duplicates: v[3],
            unparsed: v[4],
            bytes: v[5],
            finals: v[6],
            final_duplicates: v[7],
            snapshots: v[8],
        }
    }
}

impl Drop for ChildSink {
    fn drop(&mut self) {
        drop(self.stdin.take()); // EOF: the child exits.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Child process: run a counting sink, print its port, answer `counts` lines
/// on stdin, exit on EOF or after 15 minutes whatever happens.
fn child_sink() {
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(15 * 60));
        eprintln!("bench sink: 15-minute limit reached, exiting");
        std::process::exit(2);
    });
    let delay = std::env::var("RAINDROP_BENCH_SINK_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::ZERO, Duration::from_millis);
    let sink = support::Sink::start_with_delay(true, delay);
    let stdout = std::io::stdout();
    writeln!(stdout.lock(), "port {}", sink.port()).expect("print port");
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if line.trim() == "counts" {
            let c = sink.counts();
            let mut out = stdout.lock();
            writeln!(
                out,
                "{} {} {} {} {} {} {} {} {}",
                c.requests,
                c.events,
                c.unique,
                c.duplicates,
                c.unparsed,
                c.bytes,
                c.finals,
                c.final_duplicates,
                c.snapshots
            )
            .expect("print counts");
            out.flush().expect("flush");
        }
    }
}

fn burst_phase() {
    const EVENTS: u64 = 1_000_000;
    println!("\n== burst: 1,000,000 track_ai to a loopback sink (child process) ==");
    let mut sink = ChildSink::start();
    let endpoint = format!("http://127.0.0.1:{}/v1/", sink.port);
    reset_peak_rss();
    let rss_before = support::rss_kib();
    let client = Client::new(options(&endpoint)).expect("client");
    let sink_cpu0 = process_cpu(sink.child.id());
    // `RAINDROP_BENCH_PRODUCERS=16`: the same million from 16 threads, to
    // show memory is bounded by the queue, not by the number of producers.
    let producers = env_usize("RAINDROP_BENCH_PRODUCERS").unwrap_or(1).max(1) as u64;
    println!("producers: {producers}");
    let start = Instant::now();
    let hard_limit = start + Duration::from_secs(300);
    let per_thread: Vec<(u64, u64, u64, f64)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..producers)
            .map(|_| {
                let client = client.clone();
                s.spawn(move || {
                    let (mut sent, mut waits, mut errors) = (0u64, 0u64, 0u64);
                    while sent < EVENTS / producers && Instant::now() < hard_limit {
                        // Opt-in back-pressure: wait for room instead of losing events.
                        if !client.wait_ready(Duration::from_secs(10)) {
                            waits += 1;
                        }
                        match client.track_ai(support::chat_event()) {
                            Ok(_) => sent += 1,
                            Err(_) => errors += 1,
                        }
                    }
                    (sent, waits, errors, self_thread_cpu())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("producer"))
            .collect()
    });
    let sent: u64 = per_thread.iter().map(|t| t.0).sum();
    let queue_full_retries: u64 = per_thread.iter().map(|t| t.1).sum();
    let other_errors: u64 = per_thread.iter().map(|t| t.2).sum();
    let enqueued_at = start.elapsed();
    let flushed = client.flush(Duration::from_secs(120));
    let elapsed = start.elapsed();
    let worker_cpu = thread_cpu("raindrop-worker");
    let caller_cpu: f64 = per_thread.iter().map(|t| t.3).sum();
    let sink_cpu = process_cpu(sink.child.id()) - sink_cpu0;
    let stats = client.stats();
    let peak = support::peak_rss_kib();
    let counts = sink.counts();
    let report = client.shutdown(Duration::from_secs(10));
    let rate = counts.unique as f64 / elapsed.as_secs_f64();
    let chosen = stats.in_flight_limit("events/track").max(1) as usize;
    println!(
        "sent={sent} in {:.2} s (enqueue), flushed={flushed}, all delivered after {:.2} s",
        enqueued_at.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    println!("delivered throughput: {rate:.0} events/s");
    let per = |cpu: f64| cpu * 1e6 / EVENTS as f64;
    println!(
        "CPU: worker thread {worker_cpu:.2} s ({:.2} µs/event), producer threads {caller_cpu:.2} s ({:.2} µs/event), \
         sink process {sink_cpu:.2} s ({:.2} µs/event); wall {:.2} s on 2 cores",
        per(worker_cpu),
        per(caller_cpu),
        per(sink_cpu),
        elapsed.as_secs_f64()
    );
    println!(
        "sink: requests={} events={} unique={} duplicates={} unparsed={} bytes={}",
        counts.requests,
        counts.events,
        counts.unique,
        counts.duplicates,
        counts.unparsed,
        counts.bytes
    );
    println!(
        "loss={} duplicates={} | stats: queued={} delivered={} requests={} retries={} \
         dropped(queue_full)={} dropped_total={} | producer: wait_ready timeouts={queue_full_retries} other errors={other_errors}",
        sent.saturating_sub(counts.unique),
        counts.duplicates,
        stats.queued,
        stats.delivered,
        stats.requests,
        stats.retries,
        stats.dropped(DropReason::QueueFull),
        stats.dropped_total(),
    );
    println!(
        "RSS: before client {:.1} MiB, peak during run {:.1} MiB (VmHWM, reset before the run) | shutdown completed={} | load={}",
        mib(rss_before),
        mib(peak),
        report.completed,
        loadavg()
    );
    drop(sink);
    // The floor, right after: the same sink, body size and in-flight count
    // (`RAINDROP_BENCH_FLOOR_IN_FLIGHT` overrides the limiter's choice).
    let in_flight = env_usize("RAINDROP_BENCH_FLOOR_IN_FLIGHT").unwrap_or(chosen);
    let (floor, floor_cpu) =
        floor_events_per_s(EVENTS, in_flight, counts.bytes / counts.requests.max(1));
    println!(
        "reqwest floor: {floor:.0} events/s at {in_flight} requests in flight (the limiter chose {chosen}); \
         delivered/floor = {:.0}%; the floor's thread {floor_cpu:.2} s CPU ({:.2} µs/event)",
        rate * 100.0 / floor,
        per(floor_cpu)
    );
}

/// The HTTP floor: plain reqwest on one current-thread runtime (as the
/// worker has) posting pre-built 10-event `events/track` bodies to a fresh
/// child sink, `in_flight` at once; returns events/s. The 1,000 bodies
/// (distinct event ids) are reused round-robin; each is padded towards
/// `body_bytes`, the SDK's mean request size in the run before. Also
/// returns the CPU seconds of the thread that ran it: what the HTTP work
/// alone costs, against the worker's CPU per event.
fn floor_events_per_s(events: u64, in_flight: usize, body_bytes: u64) -> (f64, f64) {
    let mut sink = ChildSink::start();
    let url = format!("http://127.0.0.1:{}/v1/events/track", sink.port);
    let bodies: Vec<bytes::Bytes> = (0..1000).map(|i| floor_body(i, body_bytes)).collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("floor runtime");
    let requests = events / 10;
    let start = Instant::now();
    let cpu0 = self_thread_cpu();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let mut tasks = tokio::task::JoinSet::new();
        let mut sent = 0u64;
        while sent < requests || !tasks.is_empty() {
            while tasks.len() < in_flight.max(1) && sent < requests {
                let req = client
                    .post(&url)
                    .header("authorization", "Bearer bench-key")
                    .header("content-type", "application/json")
                    .body(bodies[(sent % 1000) as usize].clone());
                tasks.spawn(async move {
                    if let Ok(resp) = req.send().await {
                        let _ = resp.bytes().await;
                    }
                });
                sent += 1;
            }
            tasks.join_next().await;
        }
    });
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = self_thread_cpu() - cpu0;
    let c = sink.counts();
    if c.events != events {
        println!(
            "reqwest floor: the sink counted {} events of {events}",
            c.events
        );
    }
    (events as f64 / elapsed, cpu)
}

/// One 10-event body shaped like the SDK's `events/track` requests.
fn floor_body(n: usize, body_bytes: u64) -> bytes::Bytes {
    let events: Vec<serde_json::Value> = (0..10)
        .map(|i| {
            serde_json::json!({
                "event_id": format!("floor-{n}-{i}-0000-0000-000000000000"),
                "user_id": "user-1234",
                "event": "chat_message",
                "ai_data": {
                    "model": "gpt-4o-mini",
                    "input": "What is the capital of France?",
                    "output": "The capital of France is Paris.",
                    "convo_id": "convo-42"
                },
                "properties": {"$context": {
                    "library": {"name": "raindrop-sdk-rust", "version": "0.1.0"},
                    "metadata": {"language": "rust"}
                }},
                "timestamp": "2026-12-06T09:00:00.123456789Z",
                "attachments": null
            })
        })
        .collect();
    let mut body = serde_json::to_vec(&events).expect("json");
    // Pad the last event's properties so the body has the SDK's size.
    let pad = (body_bytes as usize).saturating_sub(body.len() + 12);
    if pad > 0 {
        let mut v: Vec<serde_json::Value> = events;
        v[9]["properties"]["pad"] = "x".repeat(pad).into();
        body = serde_json::to_vec(&v).expect("json");
    }
    body.into()
}

fn down_phase(up_p99: Option<u64>) {
    const CALLS: u64 = 200_000;
    println!("\n== backend down: 200,000 unpaced track_ai, connection refused ==");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    }; // dropped: the port is closed
    reset_peak_rss();
    let rss_before = support::rss_kib();
    let client = Client::new(options(&format!("http://127.0.0.1:{port}/v1/"))).expect("client");
    let mut lat = Vec::with_capacity(CALLS as usize);
    let (mut ok, mut other) = (0u64, 0u64);
    for _ in 0..CALLS {
        let t = Instant::now();
        let r = client.track_ai(support::chat_event());
        lat.push(t.elapsed().as_nanos() as u64);
        match r {
            Ok(_) => ok += 1,
            Err(_) => other += 1,
        }
    }
    let full = client.stats().dropped(DropReason::QueueFull);
    let p99 = Latencies(lat).report("track_ai (backend down)");
    if let Some(up) = up_p99 {
        println!(
            "p99 down / p99 up = {:.2} (target ≤ 2)",
            p99 as f64 / up.max(1) as f64
        );
    }
    let rss_calls = support::rss_kib();
    let peak_calls = support::peak_rss_kib();
    let t = Instant::now();
    let report = client.shutdown(Duration::from_secs(2));
    let s = &report.stats;
    println!(
        "calls={CALLS} ok={ok} queue_full={full} other_errors={other} | shutdown(2 s) took {:.2} s, completed={}, undelivered={}",
        t.elapsed().as_secs_f64(),
        report.completed,
        report.undelivered
    );
    let by_reason: Vec<String> = DropReason::ALL
        .iter()
        .filter(|r| s.dropped(**r) > 0)
        .map(|r| format!("{}={}", r.as_str(), s.dropped(*r)))
        .collect();
    println!(
        "stats: queued={} delivered={} requests={} retries={} dropped_total={} [{}] pending={}",
        s.queued,
        s.delivered,
        s.requests,
        s.retries,
        s.dropped_total(),
        by_reason.join(" "),
        s.pending()
    );
    let accounted = s.delivered + s.dropped_total();
    println!(
        "accounting: delivered + dropped = {accounted} vs calls {CALLS}: {} | queue_full in stats {} vs seen after the calls {full}: {}",
        if accounted == CALLS { "exact" } else { "MISMATCH" },
        s.dropped(DropReason::QueueFull),
        if s.dropped(DropReason::QueueFull) == full { "exact" } else { "MISMATCH" },
    );
    println!(
        "RSS: before client {:.1} MiB, after calls {:.1} MiB, peak {:.1} MiB | load={}",
        mib(rss_before),
        mib(rss_calls),
        mib(peak_calls.max(support::peak_rss_kib())),
        loadavg()
    );
}

fn tool_span(i: u64) -> raindrop::SpanRecord {
    use raindrop::AttributeValue as V;
    let now = std::time::SystemTime::now();
    raindrop::SpanRecord {
        trace_id: [7; 16],
        span_id: (i + 1).to_le_bytes(),
        parent_span_id: Some([9; 8]),
        name: "calculator.tool".into(),
        start: now,
        end: now,
        status: raindrop::SpanStatus::Ok,
        attributes: vec![
            ("traceloop.span.kind".into(), V::from("tool")),
            ("traceloop.entity.name".into(), V::from("calculator")),
            (
                "traceloop.entity.input".into(),
                V::from(r#"{"a":2,"b":40,"note":"add two numbers for the user"}"#),
            ),
            ("traceloop.entity.output".into(), V::from("42")),
            ("traceloop.workflow.name".into(), V::from("chat")),
            (
                "traceloop.association.properties.event_id".into(),
                V::from("3f1e2d4c-5b6a-4789-9abc-def012345678"),
            ),
            (
                "traceloop.association.properties.user_id".into(),
                V::from("user-1234"),
            ),
            (
                "traceloop.association.properties.convo_id".into(),
                V::from("convo-42"),
            ),
            ("duration_ms".into(), V::Int(0)),
        ],
    }
}

fn spans_phase() {
    const SPANS: u64 = 200_000;
    println!("\n== spans: 200,000 export_span, chunks of 2,048 + flush ==");
    let sink = support::Sink::start(false);
    let client = Client::new(options(&sink.endpoint())).expect("client");
    let worker0 = thread_cpu("raindrop-worker");
    let start = Instant::now();
    let mut sent = 0;
    while sent < SPANS {
        for _ in 0..2_048.min(SPANS - sent) {
            client.export_span(tool_span(sent)).expect("export_span");
            sent += 1;
        }
        assert!(client.flush(Duration::from_secs(60)), "flush timed out");
    }
    let elapsed = start.elapsed();
    let worker = thread_cpu("raindrop-worker") - worker0;
    let report = client.shutdown(Duration::from_secs(10));
    println!(
        "spans={SPANS} delivered={} requests={} in {:.2} s ({:.0} spans/s) | worker CPU {:.2} s = {:.2} µs/span | load={}",
        report.stats.delivered,
        report.stats.requests,
        elapsed.as_secs_f64(),
        SPANS as f64 / elapsed.as_secs_f64(),
        worker,
        worker * 1e6 / SPANS as f64,
        loadavg()
    );
    assert_eq!(report.stats.delivered, SPANS);
}

#[raindrop::tool("calculator")]
fn add(a: i64, b: i64) -> i64 {
    a.wrapping_add(b)
}

/// The interaction span the `tool` and `bursts` phases call tools in.
fn chat_span() -> tracing::Span {
    tracing::info_span!(
        "chat",
        raindrop.kind = "interaction",
        raindrop.user_id = "user-1234",
        raindrop.input = "What is 2 + 40?",
        raindrop.output = tracing::field::Empty,
    )
}

fn tool_phase() {
    use tracing_subscriber::layer::SubscriberExt;
    const CALLS: usize = 200_000;
    println!("\n== tool: 200,000 sync #[raindrop::tool] calls in an interaction, layer on ==");
    let sink = support::Sink::start(false);
    let client = Client::new(options(&sink.endpoint())).expect("client");
    let subscriber = tracing_subscriber::registry().with(raindrop::layer_for(&client));
    let mut lat = Vec::with_capacity(CALLS);
    let mut caller_cpu = 0.0;
    let worker0 = thread_cpu("raindrop-worker");
    tracing::subscriber::with_default(subscriber, || {
        let chat = chat_span();
        let _in_chat = chat.enter();
        for _ in 0..2_048 {
            std::hint::black_box(add(2, 40));
        }
        assert!(client.flush(Duration::from_secs(30)));
        let cpu0 = self_thread_cpu();
        while lat.len() < CALLS {
            for _ in 0..2_048.min(CALLS - lat.len()) {
                let t = Instant::now();
                std::hint::black_box(add(std::hint::black_box(2), 40));
                lat.push(t.elapsed().as_nanos() as u64);
            }
            // Waiting in flush blocks without using CPU.
            assert!(client.flush(Duration::from_secs(30)), "flush timed out");
        }
        caller_cpu = self_thread_cpu() - cpu0;
        chat.record("raindrop.output", "42");
    });
    let worker = thread_cpu("raindrop-worker") - worker0;
    Latencies(lat).report("#[tool] sync fn (layer on, in an interaction)");
    let report = client.shutdown(Duration::from_secs(10));
    println!(
        "delivered={} dropped={} | CPU per call: caller thread {:.2} µs, worker {:.2} µs | load={}",
        report.stats.delivered,
        report.stats.dropped_total(),
        caller_cpu * 1e6 / CALLS as f64,
        worker * 1e6 / CALLS as f64,
        loadavg()
    );
}

fn bursts_phase(back_pressure: bool) {
    use tracing_subscriber::layer::SubscriberExt;
    let n = env_usize("RAINDROP_BENCH_BURST_N").unwrap_or(50_000) as u64;
    let how = if back_pressure {
        "with back-pressure (wait_ready before each)"
    } else {
        "default (never waits)"
    };
    println!("\n== bursts: {n} interactions, then {n} #[tool] spans, {how} ==");
    let mut sink = ChildSink::start();
    let endpoint = format!("http://127.0.0.1:{}/v1/", sink.port);
    let client = Client::new(options(&endpoint)).expect("client");
    reset_peak_rss();
    let t = Instant::now();
    for _ in 0..n {
        if back_pressure {
            client.wait_ready(Duration::from_secs(30));
        }
        let it = client
            .begin(raindrop::Begin::new("user-1234", "agent_run").input("q"))
            .expect("begin");
        it.set_property("stage", "tools");
        it.set_property("step", 2);
        it.finish("a");
    }
    let produced = t.elapsed();
    client.flush(Duration::from_secs(120));
    let counts = sink.counts();
    let s = client.stats();
    println!(
        "interactions: produced in {:.2} s; arrived finished {} of {n}, lost {} (stats: interactions lost {} [{}])",
        produced.as_secs_f64(),
        counts.finals,
        n - counts.finals,
        s.lost_total(raindrop::ItemKind::Interaction),
        raindrop::DropReason::ALL
            .iter()
            .filter(|r| s.lost(raindrop::ItemKind::Interaction, **r) > 0)
            .map(|r| format!("{}={}", r.as_str(), s.lost(raindrop::ItemKind::Interaction, *r)))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let subscriber = tracing_subscriber::registry().with(raindrop::layer_for(&client));
    let spans_before = client.stats();
    let t = Instant::now();
    tracing::subscriber::with_default(subscriber, || {
        let chat = chat_span();
        let _in_chat = chat.enter();
        for _ in 0..n {
            if back_pressure {
                client.wait_ready(Duration::from_secs(30));
            }
            std::hint::black_box(add(std::hint::black_box(2), 40));
        }
    });
    let produced = t.elapsed();
    client.flush(Duration::from_secs(120));
    let s = client.stats();
    let lost =
        s.lost_total(raindrop::ItemKind::Span) - spans_before.lost_total(raindrop::ItemKind::Span);
    println!(
        "#[tool] spans: produced in {:.2} s; lost {lost} of {n} (by reason: {}) | peak RSS {:.1} MiB",
        produced.as_secs_f64(),
        raindrop::DropReason::ALL
            .iter()
            .filter(|r| s.lost(raindrop::ItemKind::Span, **r) > 0)
            .map(|r| format!("{}={}", r.as_str(), s.lost(raindrop::ItemKind::Span, *r)))
            .collect::<Vec<_>>()
            .join(" "),
        mib(support::peak_rss_kib())
    );
    client.shutdown(Duration::from_secs(10));
}

/// A fresh spool directory under the system temp dir (removed afterwards).
fn spool_dir(label: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "raindrop-bench-spool-{label}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The spool's cost: the same measurements without it and with each fsync policy.
fn spool_phase() {
    use raindrop::{SpoolOptions, SpoolSync};
    println!("\n== spool: caller p99 and delivered events/s, without and with the spool (each fsync policy) ==");
    let configs: [(&str, Option<SpoolSync>); 4] = [
        ("no spool", None),
        ("spool, sync Never", Some(SpoolSync::Never)),
        (
            "spool, sync Every(1s)",
            Some(SpoolSync::Every(Duration::from_secs(1))),
        ),
        ("spool, sync Always", Some(SpoolSync::Always)),
    ];
    const CALLS: usize = 100_000;
    for (label, sync) in configs {
        let sink = support::Sink::start(true);
        let dir = spool_dir("run");
        let mut o = options(&sink.endpoint());
        if let Some(sync) = sync {
            o = o.spool_options(SpoolOptions::new(&dir).sync(sync));
        }
        let client = Client::new(o).expect("client");
        // Caller cost: the queue never full (untimed flush between chunks).
        let mut lat = Vec::with_capacity(CALLS);
        while lat.len() < CALLS {
            for _ in 0..2_048.min(CALLS - lat.len()) {
                let t = Instant::now();
                client.track_ai(support::chat_event()).expect("track_ai");
                lat.push(t.elapsed().as_nanos() as u64);
            }
            assert!(client.flush(Duration::from_secs(60)), "flush timed out");
        }
        Latencies(lat).report(&format!("{label}: track_ai caller"));
        // Delivery rate: paced by the queue, measured to the flush.
        let before = sink.counts().unique;
        let cpu0 = thread_cpu("raindrop-worker");
        let t = Instant::now();
        let mut peak_spool = 0;
        for i in 0..CALLS {
            client.wait_ready(Duration::from_secs(10));
            client.track_ai(support::chat_event()).expect("track_ai");
            if i.is_multiple_of(1_000) {
                peak_spool = peak_spool.max(client.stats().spool_bytes);
            }
        }
        assert!(client.flush(Duration::from_secs(120)), "flush timed out");
        let secs = t.elapsed().as_secs_f64();
        let worker = thread_cpu("raindrop-worker") - cpu0;
        let c = sink.counts();
        let got = c.unique - before;
        let s = client.stats();
        println!(
            "{label}: delivered {got} of {CALLS} in {secs:.2} s = {:.0} events/s, duplicates {}, worker CPU {:.2} µs/event, spool written {} not written {}, peak spool bytes {peak_spool}, load {}",
            got as f64 / secs,
            c.duplicates,
            worker * 1e6 / CALLS as f64,
            s.spool_written,
            s.spool_not_written,
            loadavg()
        );
        let report = client.shutdown(Duration::from_secs(10));
        assert!(report.completed);
        if sync.is_some() {
            let left = std::fs::read_dir(&dir).map_or(0, |d| {
                d.flatten()
                    .filter(|e| e.path().extension().is_some_and(|x| x == "seg"))
                    .count()
            });
            println!("{label}: segments left after shutdown: {left}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    // What one fsync costs on this disk: the unit of the policies' cost.
    let dir = spool_dir("fsync");
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut f = std::fs::File::create(dir.join("probe")).expect("probe file");
    let mut syncs = Vec::with_capacity(200);
    for _ in 0..200 {
        f.write_all(&[b'x'; 500]).expect("write");
        let t = Instant::now();
        f.sync_data().expect("fsync");
        syncs.push(t.elapsed().as_nanos() as u64);
    }
    Latencies(syncs).report("fsync of a 500-byte append (temp dir)");
    let _ = std::fs::remove_dir_all(&dir);
    // Disk bytes per event: nothing is delivered, so nothing is deleted.
    let dir = spool_dir("bytes");
    let down = format!(
        "http://{}/v1/",
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
    );
    let client = Client::new(
        options(&down)
            .max_attempts(1)
            .spool_options(SpoolOptions::new(&dir)),
    )
    .expect("client");
    const N: u64 = 10_000;
    for _ in 0..N {
        client.track_ai(support::chat_event()).expect("track_ai");
    }
    client.flush(Duration::from_secs(60));
    let s = client.stats();
    println!(
        "spool disk bytes per event (chat_event, backend down): {} bytes for {} events = {:.0} bytes/event",
        s.spool_bytes,
        s.spool_written,
        s.spool_bytes as f64 / s.spool_written.max(1) as f64
    );
    client.shutdown(Duration::from_millis(100));
    let _ = std::fs::remove_dir_all(&dir);
}
