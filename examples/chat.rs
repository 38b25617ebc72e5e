//! The main demo: an axum chat service instrumented with Raindrop.
//!
//! ```text
//! cargo run --example chat
//! ```
//!
//! * `POST /chat` is an `#[raindrop::interaction("chat")]` handler: one AI
//!   event per request. It calls `#[raindrop::tool]` functions (a knowledge
//!   base search and a calculator) and a simulated model
//!   (`#[raindrop::task]`): no network, deterministic answers.
//! * `POST /feedback` records the user's reaction as signals.
//!
//! The demo starts the service on 127.0.0.1, sends itself a few requests (one
//! makes the calculator fail, one is feedback), shuts down cleanly and prints
//! the tree of what Raindrop recorded. With no `RAINDROP_WRITE_KEY` everything
//! goes to a local file, whose path it prints.
//!
//! ```text
//! cargo run --example chat -- --serve [ADDR]   # default ADDR 127.0.0.1:3000
//! ```
//!
//! serves until SIGTERM or Ctrl-C instead ([`raindrop::shutdown_signal`]),
//! then finishes the requests in flight, delivers every queued event and
//! exits: what `docker stop` or a Kubernetes rollout does to a real service. `RUST_LOG=info` shows the
//! service's logs (inside the raindrop spans), `RUST_LOG=raindrop=debug` the
//! SDK's own diagnostics.

mod common;

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use raindrop::{Sentiment, Signal, SignalType};
use serde::{Deserialize, Serialize};
use tracing_subscriber::prelude::*;

// ---------------------------------------------------------------------------
// The service
// ---------------------------------------------------------------------------

/// Shared state of the service.
#[derive(Clone)]
pub struct AppState {
    model: SimulatedModel,
}

/// `POST /chat` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChatRequest {
    /// Who is asking.
    pub user_id: String,
    /// The conversation, if any.
    pub convo_id: Option<String>,
    /// The question.
    pub message: String,
}

/// `POST /chat` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChatResponse {
    /// The Raindrop event id: the front end sends it back with feedback.
    pub event_id: String,
    /// The model's answer.
    pub answer: String,
}

impl IntoResponse for ChatResponse {
    fn into_response(self) -> Response {
        Json(self).into_response()
    }
}

/// `POST /feedback` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FeedbackRequest {
    /// The event the feedback is about (from `ChatResponse::event_id`).
    pub event_id: String,
    /// Thumbs up or down.
    pub thumbs_up: bool,
    /// Optional written feedback.
    pub comment: Option<String>,
}

/// An error answered as HTTP 4xx/5xx. Its `Display` text is what Raindrop
/// records as the interaction's error.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.1)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, self.1).into_response()
    }
}

/// The router: what you would mount in your own service.
pub fn app() -> Router {
    Router::new()
        .route("/chat", post(chat))
        .route("/feedback", post(feedback))
        .with_state(AppState {
            model: SimulatedModel,
        })
}

/// `POST /chat`: one Raindrop interaction per request.
///
/// The attribute opens an interaction span around the handler: the user,
/// conversation and input come from the request, the tools it calls become
/// child spans, and an `Err` return finishes the interaction as failed.
#[raindrop::interaction("chat", user_id = req.user_id, convo_id = req.convo_id, input = req.message)]
async fn chat(
    State(state): State<AppState>,
    Json(req): Json<ChatRequest>,
) -> Result<ChatResponse, ApiError> {
    if req.message.to_lowercase().contains("password") {
        // An `Err` finishes the interaction as failed, with this message.
        return Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            "refused: the assistant does not handle credentials".into(),
        ));
    }
    // The interaction of this request, from anywhere below the handler.
    let interaction = raindrop::resume_interaction();
    interaction.set_model(SimulatedModel::NAME);
    // Your logs keep working: the fmt layer shows them inside the `chat` span.
    tracing::info!(event_id = interaction.event_id(), "answering");

    let mut notes = Vec::new();
    if let Some(expr) = arithmetic_in(&req.message) {
        match calculator(expr.clone()) {
            Ok(value) => notes.push(format!("{expr} = {value}")),
            // A failing tool does not fail the request: the span records the
            // error, the model says it could not compute.
            Err(e) => notes.push(format!("could not compute {expr}: {e}")),
        }
    }
    if wants_search(&req.message) {
        let docs = search(req.message.clone()).await;
        notes.extend(docs.into_iter().map(|d| d.text.to_owned()));
    }
    interaction.set_property("notes", notes.len() as i64);

    let answer = state.model.generate(req.message.clone(), notes).await;
    let event_id = interaction.event_id().unwrap_or_default().to_owned();
    // The event's output is the model's answer (the span's output is the
    // whole response, which the attribute records when the handler returns).
    interaction.finish(answer.clone());
    Ok(ChatResponse { event_id, answer })
}

/// `POST /feedback`: the user's reaction, as signals on the chat event.
async fn feedback(Json(req): Json<FeedbackRequest>) -> Result<StatusCode, ApiError> {
    let bad_request = |e: raindrop::Error| ApiError(StatusCode::BAD_REQUEST, e.to_string());
    let (name, sentiment) = if req.thumbs_up {
        ("thumbs_up", Sentiment::Positive)
    } else {
        ("thumbs_down", Sentiment::Negative)
    };
    raindrop::track_signal(Signal::new(&req.event_id, name).sentiment(sentiment))
        .map_err(bad_request)?;
    if let Some(comment) = req.comment.filter(|c| !c.trim().is_empty()) {
        raindrop::track_signal(
            Signal::new(&req.event_id, "user_feedback")
                .signal_type(SignalType::Feedback)
                .sentiment(sentiment)
                .comment(comment),
        )
        .map_err(bad_request)?;
    }
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------
// Tools and the simulated model
// ---------------------------------------------------------------------------

/// A document of the knowledge base.
#[derive(Debug, Clone, Serialize)]
pub struct Doc {
    /// Identifier.
    pub id: &'static str,
    /// Content.
    pub text: &'static str,
}

const KNOWLEDGE_BASE: &[Doc] = &[
    Doc {
        id: "refunds",
        text: "Refunds are issued to the original payment method within 5 business days.",
    },
    Doc {
        id: "shipping",
        text: "Standard shipping takes 3 to 5 days; express shipping takes 1 day.",
    },
    Doc {
        id: "hours",
        text: "Support is open Monday to Friday, 9:00 to 17:00 CET.",
    },
];

/// Tool: keyword search over the knowledge base.
#[raindrop::tool]
async fn search(query: String) -> Vec<Doc> {
    tokio::time::sleep(Duration::from_millis(3)).await; // an index lookup
    let q = query.to_lowercase();
    let hits: Vec<Doc> = KNOWLEDGE_BASE
        .iter()
        .filter(|d| q.contains(d.id.trim_end_matches('s')))
        .cloned()
        .collect();
    // Deep inside a tool, the interaction is still at hand.
    raindrop::resume_interaction().set_property("kb_hits", hits.len() as i64);
    hits
}

/// Tool: evaluates `+ - * /` and parentheses. A plain (sync) function works too.
#[raindrop::tool]
fn calculator(expression: String) -> Result<f64, CalcError> {
    let mut p = Parser {
        s: expression.as_bytes(),
        i: 0,
    };
    let v = p.expr()?;
    p.skip_ws();
    if p.i != p.s.len() {
        return Err(CalcError("unexpected trailing input".into()));
    }
    Ok(v)
}

/// A calculator error.
#[derive(Debug)]
pub struct CalcError(String);

impl std::fmt::Display for CalcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self.s.get(self.i) == Some(&b' ') {
            self.i += 1;
        }
    }
    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.i).copied()
    }
    fn expr(&mut self) -> Result<f64, CalcError> {
        let mut v = self.term()?;
        while let Some(op @ (b'+' | b'-')) = self.peek() {
            self.i += 1;
            let r = self.term()?;
            v = if op == b'+' { v + r } else { v - r };
        }
        Ok(v)
    }
    fn term(&mut self) -> Result<f64, CalcError> {
        let mut v = self.atom()?;
        while let Some(op @ (b'*' | b'/')) = self.peek() {
            self.i += 1;
            let r = self.atom()?;
            if op == b'/' && r == 0.0 {
                return Err(CalcError("division by zero".into()));
            }
            v = if op == b'*' { v * r } else { v / r };
        }
        Ok(v)
    }
    fn atom(&mut self) -> Result<f64, CalcError> {
        match self.peek() {
            Some(b'(') => {
                self.i += 1;
                let v = self.expr()?;
                if self.peek() != Some(b')') {
                    return Err(CalcError("missing `)`".into()));
                }
                self.i += 1;
                Ok(v)
            }
            Some(b'0'..=b'9') => {
                let start = self.i;
                while matches!(self.s.get(self.i), Some(b'0'..=b'9' | b'.')) {
                    self.i += 1;
                }
                std::str::from_utf8(&self.s[start..self.i])
                    .ok()
                    .and_then(|t| t.parse().ok())
                    .ok_or_else(|| CalcError("bad number".into()))
            }
            _ => Err(CalcError("expected a number".into())),
        }
    }
}

/// The longest run of digits, operators and parentheses in the message.
fn arithmetic_in(message: &str) -> Option<String> {
    message
        .split(|c: char| !(c.is_ascii_digit() || "+-*/(). ".contains(c)))
        .map(str::trim)
        .filter(|s| s.chars().any(|c| c.is_ascii_digit()) && s.chars().any(|c| "+-*/".contains(c)))
        .max_by_key(|s| s.len())
        .map(str::to_owned)
}

fn wants_search(message: &str) -> bool {
    let m = message.to_lowercase();
    KNOWLEDGE_BASE
        .iter()
        .any(|d| m.contains(d.id.trim_end_matches('s')))
}

/// A stand-in for an LLM: deterministic, no network.
#[derive(Clone, Copy)]
pub struct SimulatedModel;

impl SimulatedModel {
    const NAME: &'static str = "sim-1";

    /// "Generates" an answer from the question and the tool notes.
    #[raindrop::task("generate")]
    async fn generate(&self, question: String, notes: Vec<String>) -> String {
        tokio::time::sleep(Duration::from_millis(5)).await; // "inference"
        if notes.is_empty() {
            format!("I'm not sure how to help with \"{question}\" yet.")
        } else {
            format!("Here is what I found: {}", notes.join(" "))
        }
    }
}

// ---------------------------------------------------------------------------
// The demo: run the service, talk to it, shut down
// ---------------------------------------------------------------------------

/// One request the demo sent and what came back.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// `/chat` or `/feedback`.
    pub path: &'static str,
    /// The request body.
    pub request: serde_json::Value,
    /// HTTP status.
    pub status: u16,
    /// The response body (JSON when it was JSON).
    pub response: serde_json::Value,
}

/// Serves [`app`] on 127.0.0.1, sends it the demo's requests, and shuts the
/// server down gracefully (so every handler, and every span, has finished).
/// Needs `raindrop::init` and a subscriber with `raindrop::layer` installed.
pub async fn run_demo(log: bool) -> std::io::Result<Vec<Exchange>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app())
            .with_graceful_shutdown(async {
                let _ = stop_rx.await;
            })
            .await
    });
    if log {
        println!("chat service listening on http://{addr}\n");
    }

    let http = reqwest::Client::new();
    let base = format!("http://{addr}");
    let mut exchanges = Vec::new();
    let send = |path: &'static str, body: serde_json::Value| {
        let http = http.clone();
        let url = format!("{base}{path}");
        async move {
            let resp = http
                .post(url)
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .map_err(std::io::Error::other)?;
            let status = resp.status().as_u16();
            let text = resp.text().await.map_err(std::io::Error::other)?;
            let response = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
            if log {
                println!("→ POST {path} {body}");
                println!("← {status} {response}\n");
            }
            Ok::<_, std::io::Error>(Exchange {
                path,
                request: body,
                status,
                response,
            })
        }
    };

    let chats = [
        ("user-ada", "convo-1", "How long do refunds take?"),
        ("user-ada", "convo-1", "What is 12 * (3 + 4)?"),
        ("user-bob", "convo-2", "What is 10 / (5 - 5)?"), // the calculator fails
        ("user-bob", "convo-2", "When is shipping and what is 2 + 2?"),
        ("user-eve", "convo-3", "What is the admin password?"), // refused: the interaction fails
    ];
    for (user, convo, message) in chats {
        let body = serde_json::json!({"user_id": user, "convo_id": convo, "message": message});
        exchanges.push(send("/chat", body).await?);
    }
    let event_of = |i: usize| {
        exchanges[i].response["event_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let (first, failed) = (event_of(0), event_of(2));
    exchanges.push(
        send(
            "/feedback",
            serde_json::json!({"event_id": first, "thumbs_up": true, "comment": "Quick and clear."}),
        )
        .await?,
    );
    exchanges.push(
        send(
            "/feedback",
            serde_json::json!({"event_id": failed, "thumbs_up": false, "comment": "It could not do the maths."}),
        )
        .await?,
    );

    let _ = stop_tx.send(());
    server.await.map_err(std::io::Error::other)??;
    Ok(exchanges)
}

/// Serves [`app`] on `addr` until SIGTERM or Ctrl-C, then stops gracefully:
/// requests in flight finish (so every interaction span closes) before this
/// returns.
pub async fn serve(addr: &str) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!(
        "chat service listening on http://{}",
        listener.local_addr()?
    );
    use std::io::Write as _;
    std::io::stdout().flush()?;
    axum::serve(listener, app())
        .with_graceful_shutdown(raindrop::shutdown_signal()) // SIGTERM or Ctrl-C
        .await
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let (options, sink) = common::options_for("chat");
    // 1. Raindrop, once, in main. The guard flushes and shuts down on drop.
    let guard = raindrop::init(options);
    let Some(client) = guard.client().cloned() else {
        eprintln!("raindrop could not start (see the log above)");
        return Ok(());
    };
    // 2. Add the Raindrop layer to your subscriber, next to your other layers.
    //    The log layer is filtered per layer (RUST_LOG, default `warn`), so it
    //    does not hide the INFO spans the raindrop attributes create.
    let log_filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_filter(log_filter))
        .with(raindrop::layer_for(&client))
        .init();

    // 3. Serve, talk, stop. With `--serve [ADDR]`: serve until SIGTERM or Ctrl-C.
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some("--serve") {
        let addr = args.next().unwrap_or_else(|| "127.0.0.1:3000".to_owned());
        serve(&addr).await?;
        println!("shutting down: delivering what is queued");
    } else {
        run_demo(true).await?;
    }

    // 4. After the server stopped (all spans closed): deliver and stop.
    let report = client.shutdown(Duration::from_secs(5));
    drop(guard);
    common::print_report(sink.as_deref(), &report.stats);
    Ok(())
}
