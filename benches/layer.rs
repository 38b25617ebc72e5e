//! Cost of the tracing integration (run: `cargo bench --bench layer`):
//!
//! - `unrelated_span/*` and `unrelated_event/*`: one ordinary span (created,
//!   entered, exited, closed) and one ordinary INFO event, on a subscriber
//!   stack without and with `raindrop::layer_for(&client)`, for three stacks: the
//!   bare registry, the registry plus an application layer that sees every
//!   span, and the registry plus `tracing_subscriber::fmt` writing to
//!   `io::sink`; also with the bare `RaindropLayer::new` (no per-layer
//!   filter), and, in the same run on the same stacks, the peers:
//!   `tracing-opentelemetry` (SDK tracer provider, batch processor, no-op
//!   exporter) and `sentry-tracing` (a hub with default options and a test
//!   transport).
//! - `tool/*`: a sync `#[raindrop::tool]` fn called inside an interaction
//!   span with the layer installed (span, argument/return capture, export
//!   through the client queue), the same fn with no raindrop layer, and the
//!   same body as a plain fn. Exported spans are delivered to a loopback
//!   sink; measured in chunks of 2,048 calls with an untimed flush between.
//! - `resume_interaction/depth_*`: `raindrop::resume_interaction()` with the
//!   interaction span 1 and 10 spans up the current stack.
//!
//! Each bench builds its own subscriber, and every span comes from its own
//! callsite, so one bench's subscriber never changes another's callsite
//! interest.

#![allow(missing_docs)]

mod support;

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use tracing::{Dispatch, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

static APP_SPANS: AtomicU64 = AtomicU64::new(0);

/// An application's own layer: sees every span (so ordinary spans exist in
/// the registry, as they do under any real layer) and counts them.
struct AppLayer;

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for AppLayer {
    fn on_new_span(
        &self,
        _attrs: &tracing::span::Attributes<'_>,
        _id: &tracing::span::Id,
        _ctx: Context<'_, S>,
    ) {
        APP_SPANS.fetch_add(1, Relaxed);
    }
}

/// One ordinary span's whole life; each expansion is its own callsite.
macro_rules! unrelated_span {
    () => {{
        let span = tracing::info_span!("db_query", table = "users", rows = 3u64);
        let _entered = span.enter();
        black_box(&span);
    }};
}

fn fmt_layer<S>() -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer().with_writer(std::io::sink)
}

/// Benches `f` with `dispatch` as the thread's default subscriber.
fn with(dispatch: Dispatch, f: impl FnOnce()) {
    tracing::dispatcher::with_default(&dispatch, f);
}

/// One ordinary event (INFO, outside any span); each expansion is its own callsite.
macro_rules! unrelated_event {
    () => {{
        tracing::info!(table = "users", rows = 3u64, "query done");
    }};
}

/// An OpenTelemetry exporter that drops every batch: the cost measured is
/// the layer's and the SDK's span recording, not an export.
#[derive(Debug)]
struct NoopExporter;

impl opentelemetry_sdk::trace::SpanExporter for NoopExporter {
    async fn export(
        &self,
        batch: Vec<opentelemetry_sdk::trace::SpanData>,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        black_box(batch);
        Ok(())
    }
}

/// `tracing-opentelemetry` as its users register it: an SDK tracer provider
/// with a batch processor (here over a no-op exporter).
fn otel_layer<S>(provider: &opentelemetry_sdk::trace::SdkTracerProvider) -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    use opentelemetry::trace::TracerProvider as _;
    tracing_opentelemetry::layer().with_tracer(provider.tracer("bench"))
}

fn otel_provider() -> opentelemetry_sdk::trace::SdkTracerProvider {
    opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(NoopExporter)
        .build()
}

/// A sentry transport that drops every envelope.
struct NoopTransport;

impl sentry_core::Transport for NoopTransport {
    fn send_envelope(&self, envelope: sentry_core::Envelope) {
        black_box(envelope);
    }
}

/// A sentry hub as `sentry::init` makes it in sentry-tracing's getting
/// started (`traces_sample_rate(1.0)`), sending to a transport that drops.
fn sentry_hub() -> std::sync::Arc<sentry_core::Hub> {
    use std::sync::Arc;
    let mut options = sentry_core::ClientOptions::new().traces_sample_rate(1.0);
    options.dsn = Some("https://public@sentry.invalid/1".parse().expect("dsn"));
    let transport: Arc<dyn sentry_core::Transport> = Arc::new(NoopTransport);
    options.transport = Some(Arc::new(move |_: &sentry_core::ClientOptions| {
        transport.clone()
    }));
    Arc::new(sentry_core::Hub::new(
        Some(Arc::new(options.into())),
        Arc::new(Default::default()),
    ))
}

/// sentry-tracing as its docs register it: the span layer and the
/// breadcrumb layer, each filtered at INFO.
fn sentry_layer<S>() -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    use tracing_subscriber::filter::LevelFilter;
    sentry_tracing::SpanLayer::new()
        .with_filter(LevelFilter::INFO)
        .and_then(sentry_tracing::BreadcrumbLayer::new().with_filter(LevelFilter::INFO))
}

/// Benches an unrelated span and an unrelated event on `$stack` (an
/// expression building the subscriber) under `$name`; every expansion has its
/// own callsites.
macro_rules! bench_stack {
    ($g:expr, $name:expr, $stack:expr) => {{
        with(Dispatch::new($stack), || {
            $g.bench_function(format!("span/{}", $name), |b| b.iter(|| unrelated_span!()));
            $g.bench_function(format!("event/{}", $name), |b| {
                b.iter(|| unrelated_event!())
            });
        });
    }};
}

fn bench_unrelated(c: &mut Criterion) {
    use tracing_subscriber::registry;
    let sink = support::Sink::start(false);
    let client = support::client_for(&sink);
    let provider = otel_provider();
    let hub = sentry_hub();
    let mut g = c.benchmark_group("unrelated");
    bench_stack!(g, "registry", registry());
    bench_stack!(
        g,
        "registry + raindrop",
        registry().with(raindrop::layer_for(&client))
    );

    bench_stack!(g, "registry + app layer", registry().with(AppLayer));
    bench_stack!(
        g,
        "registry + app layer + raindrop",
        registry().with(AppLayer).with(raindrop::layer_for(&client))
    );
    bench_stack!(
        g,
        "registry + app layer + bare RaindropLayer",
        registry()
            .with(AppLayer)
            .with(raindrop::RaindropLayer::new(&client))
    );
    bench_stack!(
        g,
        "registry + app layer + opentelemetry",
        registry().with(AppLayer).with(otel_layer(&provider))
    );
    sentry_core::Hub::run(hub.clone(), || {
        bench_stack!(
            g,
            "registry + app layer + sentry",
            registry().with(AppLayer).with(sentry_layer())
        );
    });

    bench_stack!(g, "registry + fmt", registry().with(fmt_layer()));
    bench_stack!(
        g,
        "registry + fmt + raindrop",
        registry()
            .with(fmt_layer())
            .with(raindrop::layer_for(&client))
    );
    bench_stack!(
        g,
        "registry + fmt + bare RaindropLayer",
        registry()
            .with(fmt_layer())
            .with(raindrop::RaindropLayer::new(&client))
    );
    bench_stack!(
        g,
        "registry + fmt + opentelemetry",
        registry().with(fmt_layer()).with(otel_layer(&provider))
    );
    sentry_core::Hub::run(hub.clone(), || {
        bench_stack!(
            g,
            "registry + fmt + sentry",
            registry().with(fmt_layer()).with(sentry_layer())
        );
    });
    g.finish();
    let _ = provider.shutdown();
    let stats = client.stats();
    assert_eq!(stats.queued, 0, "unrelated spans must not be exported");
    client.shutdown(Duration::from_secs(5));
}

#[raindrop::tool("calculator")]
fn add(a: i64, b: i64) -> i64 {
    a.wrapping_add(b)
}

#[inline(never)]
fn add_plain(a: i64, b: i64) -> i64 {
    a.wrapping_add(b)
}

fn bench_tool(c: &mut Criterion) {
    let sink = support::Sink::start(false);
    let client = support::client_for(&sink);
    let ran = std::cell::Cell::new(false);
    let mut g = c.benchmark_group("tool");
    g.bench_function("plain fn", |b| {
        b.iter(|| add_plain(black_box(2), black_box(40)))
    });
    with(Dispatch::new(tracing_subscriber::registry()), || {
        g.bench_function("#[tool] sync fn, no raindrop layer", |b| {
            b.iter(|| add(black_box(2), black_box(40)))
        });
    });
    with(
        Dispatch::new(tracing_subscriber::registry().with(raindrop::layer_for(&client))),
        || {
            g.bench_function("#[tool] sync fn in an interaction, layer on", |b| {
                b.iter_custom(|iters| {
                    ran.set(true);
                    let chat = tracing::info_span!(
                        "chat",
                        raindrop.kind = "interaction",
                        raindrop.user_id = "user-1234",
                        raindrop.input = "What is 2 + 40?",
                        raindrop.output = tracing::field::Empty,
                    );
                    let _in_chat = chat.enter();
                    let took = support::chunked(&client, iters, || {
                        black_box(add(black_box(2), black_box(40)));
                    });
                    chat.record("raindrop.output", "42");
                    took
                })
            });
        },
    );
    g.finish();
    let report = client.shutdown(Duration::from_secs(10));
    assert!(report.completed, "shutdown: {report:?}");
    assert_eq!(report.stats.dropped_total(), 0, "drops: {report:?}");
    assert!(
        !ran.get() || report.stats.delivered > 0,
        "no tool span was exported"
    );
}

/// Runs `f` with the interaction span `depth` spans up the current stack.
fn at_depth(depth: usize, f: &mut dyn FnMut()) {
    if depth <= 1 {
        f();
        return;
    }
    let span = tracing::info_span!("layer", depth);
    let _entered = span.enter();
    at_depth(depth - 1, f);
}

fn bench_resume(c: &mut Criterion) {
    let sink = support::Sink::start(false);
    let client = support::client_for(&sink);
    let mut g = c.benchmark_group("resume_interaction");
    with(
        Dispatch::new(
            tracing_subscriber::registry()
                .with(AppLayer)
                .with(raindrop::layer_for(&client)),
        ),
        || {
            let chat = tracing::info_span!(
                "chat",
                raindrop.kind = "interaction",
                raindrop.user_id = "user-1234",
                raindrop.input = "hello",
                raindrop.output = tracing::field::Empty,
            );
            let _in_chat = chat.enter();
            for depth in [1usize, 10] {
                at_depth(depth, &mut || {
                    assert!(!raindrop::resume_interaction().is_noop());
                    g.bench_function(format!("depth_{depth}"), |b| {
                        b.iter(|| black_box(raindrop::resume_interaction()))
                    });
                });
            }
            chat.record("raindrop.output", "hi");
        },
    );
    g.finish();
    client.shutdown(Duration::from_secs(10));
}

fn config() -> Criterion {
    // 2 s of warm-up: with 1 s the first bench of the process was still
    // bimodal (cold registry slab and caches).
    Criterion::default()
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_unrelated, bench_tool, bench_resume
}
criterion_main!(benches);
