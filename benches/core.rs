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

/// PII redaction as the worker runs it on one input or output (never on the
/// caller's thread): a 200-character chat turn and a 20 KB text, each with a
/// few matches in it.
fn bench_redaction(c: &mut Criterion) {
    let turn = "Hi, I'm Sarah. Please email me at sarah.j@example.com or call \
                (415) 555-0123 about order 8812; ship it to 12 Main Street. Thanks!";
    let turn = format!(
        "{turn} {}",
        "x".repeat(200usize.saturating_sub(turn.len() + 1))
    );
    let filler = "The quick brown fox jumps over the lazy dog near the river bank. ";
    let long = filler.repeat(20_000 / filler.len()) + &turn;
    // The names rule at its busiest: a first name every ten words, in
    // several scripts (each one replaced).
    let names = "Abimbola asked Deniz and Priya whether Søren or Иван had seen the report today. ";
    let named = names.repeat(20_000 / names.len());
    // The first call builds the patterns and the set of first names.
    let t = std::time::Instant::now();
    black_box(raindrop::redact_pii("warm up"));
    eprintln!(
        "redact_pii first call (builds the rules): {:?}",
        t.elapsed()
    );
    let mut g = c.benchmark_group("redact_pii (worker)");
    g.bench_function("200 chars", |b| {
        b.iter(|| raindrop::redact_pii(black_box(&turn)).len())
    });
    g.bench_function("20 KB", |b| {
        b.iter(|| raindrop::redact_pii(black_box(&long)).len())
    });
    g.bench_function("20 KB, a name every 10 words", |b| {
        b.iter(|| raindrop::redact_pii(black_box(&named)).len())
    });
    g.finish();
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
    targets = bench_track_ai, bench_interaction, bench_redaction
}
criterion_main!(benches);
