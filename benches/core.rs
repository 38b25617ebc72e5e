//! Caller-side cost of the core client: `track_ai` enqueue and an interaction
//! (`begin` + 2 `set_property` + `finish`), with the worker delivering to a
//! loopback HTTP sink at the same time.
//!
//! Each measured batch is at most 2,048 calls, followed (outside the timing)
//! by a `flush`, so the bounded queue (10,000) never fills: the numbers are
//! the cost of a successful enqueue, never of the cheaper `QueueFull` path.
//! Every call's result is checked; a single error aborts the bench.
//!
//! Run: `cargo bench --bench core`.

#![allow(missing_docs)]

mod support;

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use raindrop::Begin;

fn bench_track_ai(c: &mut Criterion) {
    let sink = support::Sink::start(false);
    let client = support::client_for(&sink);
    let mut g = c.benchmark_group("track_ai");
    g.bench_function("build AiEvent only (reference)", |b| {
        b.iter(|| black_box(support::chat_event()))
    });
    g.bench_function("enqueue", |b| {
        b.iter_custom(|iters| {
            support::chunked(&client, iters, || {
                let id = client.track_ai(black_box(support::chat_event()));
                assert!(id.is_ok(), "track_ai failed: {id:?}");
                black_box(id.ok());
            })
        })
    });
    g.finish();
    let report = client.shutdown(Duration::from_secs(10));
    assert!(report.completed, "shutdown: {report:?}");
    assert_eq!(report.stats.dropped_total(), 0, "drops: {report:?}");
}

fn bench_interaction(c: &mut Criterion) {
    let sink = support::Sink::start(false);
    let client = support::client_for(&sink);
    let mut g = c.benchmark_group("interaction");
    g.bench_function("begin + 2 set_property + finish", |b| {
        b.iter_custom(|iters| {
            support::chunked(&client, iters, || {
                let i = client
                    .begin(black_box(
                        Begin::new("user-1234", "agent_run")
                            .input("Summarise my inbox")
                            .model("gpt-4o-mini"),
                    ))
                    .expect("begin");
                i.set_property("stage", "retrieval");
                i.set_property("documents", 12);
                i.finish(black_box("You have 3 unread messages."));
            })
        })
    });
    g.finish();
    let report = client.shutdown(Duration::from_secs(10));
    assert!(report.completed, "shutdown: {report:?}");
    assert_eq!(report.stats.dropped_total(), 0, "drops: {report:?}");
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_track_ai, bench_interaction
}
criterion_main!(benches);
