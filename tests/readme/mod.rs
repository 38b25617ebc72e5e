//! The code of the README and of the guides in `docs/`, compiled here
//! (included by `tests/examples.rs`, which checks that each module below is,
//! verbatim, a ```rust block of the file its `DOCS` table names, and by
//! `tests/setup.rs`, which runs the setup snippets of `docs/setup.md`). Edit
//! both together.
#![allow(dead_code, unused_imports)]

#[rustfmt::skip]
#[allow(clippy::all)]
pub mod readme_plain {
use raindrop::{AiEvent, Begin, ClientOptions, Sentiment, Signal, SignalType};

fn main() -> Result<(), raindrop::Error> {
    // Once, early. Reads RAINDROP_WRITE_KEY etc. Keep the guard: dropping it
    // delivers what is queued and shuts the SDK down.
    let _guard = raindrop::init(ClientOptions::from_env());

    // Who the user is (optional).
    let traits = serde_json::json!({"name": "Ada", "plan": "pro"});
    raindrop::identify("user-42", traits.as_object().cloned().unwrap_or_default())?;

    // One question and its answer. Keep the id: feedback points at it.
    let event_id = raindrop::track_ai(
        AiEvent::new("user-42", "chat_message")
            .model("gpt-4o-mini")
            .input("What is the capital of France?")
            .output("The capital of France is Paris.")
            .convo_id("convo-1"),
    )?;

    // How the user reacted.
    raindrop::track_signal(Signal::new(&event_id, "thumbs_up").sentiment(Sentiment::Positive))?;
    raindrop::track_signal(
        Signal::new(&event_id, "user_feedback")
            .signal_type(SignalType::Feedback)
            .comment("Short and correct, thanks!"),
    )?;

    // An interaction whose fields arrive over time (an agent run, a stream).
    let run = raindrop::begin(Begin::new("user-42", "agent_run").input("Summarise my orders"))?;
    run.set_property("stage", "fetching_orders");
    run.finish("You ordered a kettle and two mugs.");
    Ok(())
} // _guard dropped: flush + shutdown
} // end readme_plain

#[rustfmt::skip]
#[allow(clippy::all)]
pub mod readme_tracing {
use raindrop::ClientOptions;
use tracing_subscriber::prelude::*;

/// A tool: its arguments are the span's input, its return value the output,
/// and an `Err` marks the span failed.
#[raindrop::tool]
async fn search(query: String) -> Result<Vec<String>, String> {
    // Anywhere below an interaction, reach it without passing it around.
    raindrop::resume_interaction().set_property("searched", true);
    Ok(vec![format!("a page about {query}")])
}

/// One interaction = one AI event: user and input from the arguments, the
/// return value as output; an `Err` (or a panic) finishes it as failed.
#[raindrop::interaction("chat", user_id = user_id, input = message)]
async fn chat(user_id: String, message: String) -> Result<String, String> {
    let pages = search(message.clone()).await?;
    Ok(format!("I found {} page(s) about {message}", pages.len()))
}

#[tokio::main]
async fn main() -> Result<(), raindrop::Error> {
    let guard = raindrop::init(ClientOptions::from_env());
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer()) // your existing layers
        .with(raindrop::global_layer()) // + Raindrop (the client of `init`, before or after it)
        .init();

    let answer = chat("user-42".into(), "rust tracing".into()).await;
    println!("{answer:?}");
    drop(guard); // after the spans closed: deliver, then shut down
    Ok(())
}
} // end readme_tracing

#[rustfmt::skip]
#[allow(clippy::all)]
pub mod readme_stats {
fn report(client: &raindrop::Client) {
    let stats = client.stats(); // or raindrop::client()?.stats()
    println!(
        "queued={} delivered={} dropped={} pending={}",
        stats.queued, stats.delivered, stats.dropped_total(), stats.pending()
    );
    for reason in raindrop::DropReason::ALL {
        if stats.dropped(reason) > 0 {
            println!("  {}: {}", reason.as_str(), stats.dropped(reason));
        }
    }
}
} // end readme_stats

#[rustfmt::skip]
#[allow(clippy::all)]
pub mod readme_setup_new {
/// No tracing setup yet, or `tracing_subscriber::fmt::init()`: replace it.
pub fn setup(client: &raindrop::Client) {
    // fmt logs filtered by RUST_LOG (INFO when unset), per layer, + Raindrop.
    raindrop::tracing_init(client).expect("no other global subscriber");
}
} // end readme_setup_new

#[rustfmt::skip]
#[allow(clippy::all)]
pub mod readme_setup_fmt {
use tracing_subscriber::{prelude::*, EnvFilter};

/// Was: `tracing_subscriber::fmt().with_env_filter(EnvFilter::from_default_env()).init()`
pub fn setup(client: &raindrop::Client) {
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_filter(EnvFilter::from_default_env()))
        .with(raindrop::layer_for(client))
        .init();
}
} // end readme_setup_fmt

#[rustfmt::skip]
#[allow(clippy::all)]
pub mod readme_setup_fmt_builder {
use tracing_subscriber::{prelude::*, EnvFilter};

/// Keeping the `fmt()` builder: add the bare layer (no per-layer filter).
pub fn setup(client: &raindrop::Client) {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new("info")) // global: INFO or finer, or raindrop sees nothing
        .finish()
        .with(raindrop::RaindropLayer::new(client))
        .init();
}
} // end readme_setup_fmt_builder

#[rustfmt::skip]
#[allow(clippy::all)]
pub mod readme_setup_registry {
use tracing_subscriber::{prelude::*, EnvFilter};

/// An existing `registry()` stack whose filter is global (it applies to every layer).
pub fn setup(client: &raindrop::Client) {
    // `[{raindrop.kind}]=info` keeps the raindrop spans alive under "warn"
    // (and shows INFO logs written inside them).
    let filter = EnvFilter::new("warn,[{raindrop.kind}]=info");
    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer())
        .with(raindrop::layer_for(client))
        .init();
}
} // end readme_setup_registry

#[rustfmt::skip]
#[allow(clippy::all)]
pub mod readme_setup_rust_log {
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::{prelude::*, EnvFilter};

/// RUST_LOG may be unset: `EnvFilter::from_default_env()` then allows ERROR only.
pub fn setup(client: &raindrop::Client) {
    let logs = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into()) // when RUST_LOG is unset
        .from_env_lossy();
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_filter(logs)) // per layer
        .with(raindrop::layer_for(client))
        .init();
}
} // end readme_setup_rust_log

#[rustfmt::skip]
#[allow(clippy::all)]
pub mod readme_axum {
use axum::{routing::post, Json, Router};

#[derive(serde::Deserialize, serde::Serialize, Debug)]
struct ChatRequest { user_id: String, message: String }

/// The request body (`req`) is the input; `State`, `Extension` and headers never are.
#[raindrop::interaction("chat", user_id = req.user_id)]
async fn chat(Json(req): Json<ChatRequest>) -> String {
    format!("You said: {}", req.message)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let guard = raindrop::init(raindrop::ClientOptions::from_env());
    if let Some(client) = guard.client() {
        raindrop::tracing_init(client).expect("no other global subscriber");
    }
    let app = Router::new().route("/chat", post(chat));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    axum::serve(listener, app)
        .with_graceful_shutdown(raindrop::shutdown_signal()) // SIGTERM or Ctrl-C
        .await?;
    drop(guard); // every handler has returned: deliver what is queued, then exit
    Ok(())
}
} // end readme_axum

#[rustfmt::skip]
#[allow(clippy::all)]
pub mod readme_testing {
use raindrop::testing::{with_captured, Capture};
use tracing::instrument::WithSubscriber;

#[raindrop::interaction("support_chat", user_id = user, skip(user))]
fn answer(user: &str, question: &str) -> String {
    let hits = search_docs(question);
    raindrop::resume_interaction().set_property("hits", hits.len());
    format!("{} result(s)", hits.len())
}

#[raindrop::tool]
fn search_docs(query: &str) -> Vec<String> {
    vec![format!("the page about {query}")]
}

#[raindrop::interaction("summary", user_id = user, skip(user))]
async fn summarise(user: String, text: String) -> String {
    format!("{} words", text.split_whitespace().count())
}

#[test]
fn records_the_chat_and_its_tool() {
    let (reply, recorded) = with_captured(|| answer("user-7", "refunds"));
    assert_eq!(reply, "1 result(s)");

    let chat = recorded.event("support_chat").expect("the interaction");
    assert!(chat.finished);
    assert_eq!(chat.user_id.as_deref(), Some("user-7"));
    assert_eq!(chat.input.as_deref(), Some("refunds"));
    assert_eq!(chat.output.as_deref(), Some("1 result(s)"));
    assert_eq!(chat.properties["hits"], 1);

    let tool = recorded.span("search_docs").expect("the tool span");
    assert_eq!(tool.event_id.as_deref(), Some(chat.event_id.as_str()));
    assert_eq!(tool.input.as_deref(), Some("refunds"));
}

#[tokio::test]
async fn async_code_and_direct_calls_too() {
    let capture = Capture::new();
    summarise("user-7".into(), "one two three".into())
        .with_subscriber(capture.dispatch())
        .await;
    capture
        .client()
        .track_signal(raindrop::Signal::new("evt-1", "thumbs_up"))
        .unwrap();

    let recorded = capture.recorded_async().await;
    assert_eq!(recorded.event("summary").unwrap().output.as_deref(), Some("3 words"));
    assert_eq!(recorded.signals_of("evt-1").len(), 1);
}
} // end readme_testing

#[rustfmt::skip]
#[allow(clippy::all)]
pub mod readme_propagation {
use axum::{routing::post, Router};

// Service A (the gateway): send the current interaction with the request.
#[raindrop::tool(skip(http))]
async fn ask_agent(http: &reqwest::Client, question: String) -> Result<String, reqwest::Error> {
    let mut headers = reqwest::header::HeaderMap::new();
    raindrop::propagate::inject(&mut headers); // traceparent, baggage, x-raindrop-signature
    http.post("http://agent.internal/agent")
        .headers(headers)
        .body(question)
        .send()
        .await?
        .text()
        .await
}

// Service B (the agent): continue the caller's interaction on every signed request.
#[raindrop::tool]
async fn retrieve(question: String) -> Vec<String> {
    vec![format!("a document about {question}")]
}

async fn agent(question: String) -> String {
    let docs = retrieve(question).await; // a span in A's trace, under ask_agent
    raindrop::resume_interaction().set_property("agent_docs", docs.len() as i64); // A's event
    docs.join("\n")
}

fn agent_app() -> Router {
    Router::new()
        .route("/agent", post(agent))
        .layer(raindrop::propagate::tower::PropagationLayer)
}
} // end readme_propagation

#[cfg(feature = "llm-http")]
#[rustfmt::skip]
#[allow(clippy::all)]
pub mod readme_llm_http {
use raindrop::llm_http::LlmCaptureMiddleware;
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};

// Once: your reqwest client, with the middleware.
fn http_client() -> ClientWithMiddleware {
    ClientBuilder::new(reqwest::Client::new())
        .with(LlmCaptureMiddleware::new())
        .build()
}

// Each call inside the interaction becomes an LLM span; the interaction
// gets the model, input, output and token totals from them.
#[raindrop::interaction("chat", user_id = user, skip(http, key))]
async fn chat(http: &ClientWithMiddleware, key: &str, user: String, question: String) -> Result<(), reqwest_middleware::Error> {
    let body = serde_json::json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": question}],
    });
    http.post("https://api.openai.com/v1/chat/completions")
        .bearer_auth(key) // never recorded
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    Ok(())
}
} // end readme_llm_http

#[cfg(feature = "otel-exporter")]
#[rustfmt::skip]
#[allow(clippy::all)]
pub mod readme_otel_exporter {
use opentelemetry::trace::{Tracer as _, TracerProvider as _};
use opentelemetry::Context;
use opentelemetry_sdk::trace::SdkTracerProvider;
use raindrop::otel::{link_context, LinkProcessor, RaindropExporter};
use raindrop::{Begin, ClientOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _guard = raindrop::init(ClientOptions::from_env());
    let provider = SdkTracerProvider::builder()
        // .with_batch_exporter(otlp_exporter) // your Collector, as before
        .with_span_processor(LinkProcessor)
        .with_simple_exporter(RaindropExporter::new(&raindrop::client()?))
        .build();
    let tracer = provider.tracer("support-bot");

    let chat = raindrop::begin(Begin::new("user-42", "support_chat"))?;
    {
        // Every span started in here, at any depth, belongs to `chat`.
        let _linked = link_context(&Context::current(), &chat).attach();
        tracer.in_span("answer", |_cx| {
            // Your model client's spans (GenAI conventions) start here.
        });
    }
    chat.finish("It ships tomorrow.");

    provider.shutdown()?; // delivers what Raindrop holds, within its deadline
    Ok(())
}
} // end readme_otel_exporter
#[cfg(feature = "otel-exporter")]
#[rustfmt::skip]
#[allow(clippy::all)]
pub mod readme_otel_tracing {
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use raindrop::otel::{LinkProcessor, RaindropExporter};
use tracing_subscriber::prelude::*;

/// The subscriber a service already has, with Raindrop as one more exporter.
fn install(client: &raindrop::Client) -> SdkTracerProvider {
    let provider = SdkTracerProvider::builder()
        .with_span_processor(LinkProcessor)
        .with_simple_exporter(RaindropExporter::new(client))
        .build();
    tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("svc")))
        .init();
    provider
}

fn call_model(chat: &raindrop::Interaction) {
    let span = tracing::info_span!(
        "chat",
        raindrop.event_id = chat.event_id().unwrap_or_default(),
        gen_ai.operation.name = "chat",
        gen_ai.request.model = "gpt-4o",
        gen_ai.usage.input_tokens = tracing::field::Empty,
    );
    let _in = span.enter();
    // ... call the model, then:
    span.record("gen_ai.usage.input_tokens", 42);
}
} // end readme_otel_tracing
#[rustfmt::skip]
#[allow(clippy::all)]
pub mod readme_spool {
use raindrop::{Client, ClientOptions, SpoolOptions, SpoolSync};
use std::time::Duration;

fn client(dir: &std::path::Path) -> Client {
    let spool = SpoolOptions::new(dir)
        .max_bytes(512 << 20) // default 256 MiB
        .sync(SpoolSync::Every(Duration::from_millis(200))); // default every 1 s
    let options = ClientOptions::from_env().spool_options(spool);
    match Client::new(options) {
        Ok(client) => client,
        Err(e) => {
            // Another process holds the directory (or it cannot be created):
            // decide yourself whether to run without the spool.
            eprintln!("raindrop: {e}; sending from memory only");
            let mut options = ClientOptions::from_env();
            options.spool = None;
            Client::new(options).expect("valid options")
        }
    }
}
} // end readme_spool
