//! What `LlmCaptureMiddleware` costs next to the HTTP call it wraps: the
//! same OpenAI-compatible call to a mock on 127.0.0.1 made by a
//! reqwest-middleware client with and without the middleware, inside one
//! interaction, interleaved call by call (the machine's load hits both
//! alike). Not streamed, and streamed with few and with many SSE events:
//! the per-event cost is the difference between the two streams' overheads.
//!
//! ```sh
//! CARGO_TARGET_DIR=/work/bench-target cargo bench -p raindrop-tracing --features llm-http --bench llm_http
//! RAINDROP_BENCH_CALLS=5000 cargo bench -p raindrop-tracing --features llm-http --bench llm_http
//! ```

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::Response;
use axum::routing::post;
use axum::serve::ListenerExt;
use axum::Router;
use raindrop_core::{Client, ClientOptions, LocalSink};
use raindrop_tracing::llm_http::LlmCaptureMiddleware;
use reqwest_middleware::{reqwest, ClientBuilder, ClientWithMiddleware};
use tracing::Instrument;
use tracing_subscriber::prelude::*;

const FEW: usize = 10;
const MANY: usize = 200;

fn answer() -> String {
    serde_json::json!({
        "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-mock-2024",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris is the capital of France."}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
    })
    .to_string()
}

/// `n` content events, a finish event, a usage event and `[DONE]`.
fn events(n: usize) -> Vec<Result<Bytes, std::io::Error>> {
    let mut out = Vec::with_capacity(n + 3);
    for i in 0..n {
        out.push(format!(
            "data: {{\"id\":\"chatcmpl-1\",\"model\":\"gpt-mock-2024\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"tok{i} \"}},\"finish_reason\":null}}]}}\n\n"
        ));
    }
    out.push("data: {\"id\":\"chatcmpl-1\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n".to_owned());
    out.push("data: {\"id\":\"chatcmpl-1\",\"choices\":[],\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":7}}\n\n".to_owned());
    out.push("data: [DONE]\n\n".to_owned());
    out.into_iter().map(|s| Ok(Bytes::from(s))).collect()
}

async fn chat(body: String) -> Response {
    let req: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    if req["stream"] == true {
        let n = req["max_tokens"].as_u64().unwrap_or(FEW as u64) as usize;
        return Response::builder()
            .header(header::CONTENT_TYPE, "text/event-stream")
            .body(Body::from_stream(futures::stream::iter(events(n))))
            .unwrap();
    }
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(answer()))
        .unwrap()
}

fn start_mock() -> SocketAddr {
    let app = Router::new().route("/v1/chat/completions", post(chat));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            // No Nagle: each SSE event leaves when written, as from a model
            // server (with it, a 200-event stream waits on delayed ACKs).
            let l = tokio::net::TcpListener::from_std(listener)
                .unwrap()
                .tap_io(|tcp| {
                    let _ = tcp.set_nodelay(true);
                });
            axum::serve(l, app).await.unwrap();
        });
    });
    addr
}

fn body(stream: Option<usize>) -> String {
    let mut b = serde_json::json!({
        "model": "gpt-mock",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "What is the capital of France?"}
        ]
    });
    if let Some(n) = stream {
        b["stream"] = true.into();
        b["max_tokens"] = n.into();
    }
    b.to_string()
}

/// One call, its whole body read chunk by chunk: how long it took.
async fn call(http: &ClientWithMiddleware, url: &str, body: &str) -> Duration {
    let started = Instant::now();
    let mut resp = http
        .post(url)
        .bearer_auth("sk-bench")
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .expect("the mock answers");
    while resp.chunk().await.expect("the whole body").is_some() {}
    started.elapsed()
}

struct Stats {
    median_us: f64,
    mean_us: f64,
}

fn stats(mut d: Vec<Duration>) -> Stats {
    d.sort();
    let us = |x: Duration| x.as_secs_f64() * 1e6;
    Stats {
        median_us: us(d[d.len() / 2]),
        mean_us: d.iter().map(|x| us(*x)).sum::<f64>() / d.len() as f64,
    }
}

/// `calls` pairs (plain, captured), interleaved; returns their stats.
async fn pairs(
    plain: &ClientWithMiddleware,
    with: &ClientWithMiddleware,
    url: &str,
    body: &str,
    calls: usize,
) -> (Stats, Stats) {
    for _ in 0..calls / 10 {
        call(plain, url, body).await;
        call(with, url, body).await;
    }
    let mut a = Vec::with_capacity(calls);
    let mut b = Vec::with_capacity(calls);
    for i in 0..calls {
        // Alternate which goes first, so neither always gets a warm socket.
        if i % 2 == 0 {
            a.push(call(plain, url, body).await);
            b.push(call(with, url, body).await);
        } else {
            b.push(call(with, url, body).await);
            a.push(call(plain, url, body).await);
        }
    }
    (stats(a), stats(b))
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` / `--no-run` friendliness
    }
    let calls: usize = std::env::var("RAINDROP_BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let mock = start_mock();
    let url = format!("http://{mock}/v1/chat/completions");
    let sink = std::env::temp_dir().join(format!("raindrop-bench-llm-http-{}", std::process::id()));
    // `RAINDROP_BENCH_SINK=none`: a disabled client (spans are built and
    // counted as dropped, nothing serialised): the caller's side alone.
    let disabled = std::env::var("RAINDROP_BENCH_SINK").is_ok_and(|v| v == "none");
    let options = if disabled {
        ClientOptions::default()
    } else {
        ClientOptions::default().local_sink(LocalSink::File(sink.clone()))
    };
    let client = Client::new(options).expect("a client");
    let sub = tracing_subscriber::registry().with(raindrop_tracing::layer_for(&client));
    let _default = tracing::subscriber::set_default(sub);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let plain = ClientBuilder::new(reqwest::Client::new()).build();
    let with = ClientBuilder::new(reqwest::Client::new())
        .with(LlmCaptureMiddleware::new())
        .build();
    println!(
        "llm_http: {calls} interleaved pairs per row, loopback mock, one interaction, sink: {}",
        if disabled {
            "none (disabled client)"
        } else {
            "local file"
        }
    );
    println!(
        "{:<28} {:>14} {:>14} {:>16} {:>14}",
        "call", "plain med µs", "captured med", "overhead med µs", "overhead mean"
    );
    let mut overhead = Vec::new();
    for (label, stream) in [
        ("not streamed".to_owned(), None),
        (format!("streamed, {FEW} events"), Some(FEW)),
        (format!("streamed, {MANY} events"), Some(MANY)),
    ] {
        let b = body(stream);
        let span = tracing::info_span!(
            "bench",
            raindrop.kind = "interaction",
            raindrop.user_id = "bench"
        );
        let (p, w) = rt.block_on(pairs(&plain, &with, &url, &b, calls).instrument(span));
        let med = w.median_us - p.median_us;
        overhead.push(med);
        println!(
            "{label:<28} {:>14.1} {:>14.1} {:>16.1} {:>14.1}",
            p.median_us,
            w.median_us,
            med,
            w.mean_us - p.mean_us
        );
    }
    // Outside an interaction the middleware only looks at the method and path.
    let b = body(None);
    let (p, w) = rt.block_on(pairs(&plain, &with, &url, &b, calls));
    println!(
        "{:<28} {:>14.1} {:>14.1} {:>16.1} {:>14.1}",
        "outside an interaction",
        p.median_us,
        w.median_us,
        w.median_us - p.median_us,
        w.mean_us - p.mean_us
    );
    let per_event = (overhead[2] - overhead[1]) / (MANY - FEW) as f64;
    println!("per SSE event (from the two streams' median overheads): {per_event:.2} µs");
    assert!(client.flush(Duration::from_secs(30)), "flush");
    let st = client.stats();
    println!(
        "spans delivered to the local sink: {}, dropped: {}",
        st.delivered,
        st.dropped_total()
    );
    let _ = std::fs::remove_file(sink);
}
