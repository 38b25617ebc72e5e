//! One interaction across two services, offline.
//!
//! ```text
//! cargo run --example two_services
//! ```
//!
//! * **gateway** (service A): `POST /chat` is an
//!   `#[raindrop::interaction("chat")]` handler. It asks the agent service
//!   through a `#[raindrop::tool]` client call, with the W3C `traceparent`
//!   and `baggage` headers written by
//!   `raindrop::propagate::reqwest_middleware::InjectMiddleware`
//!   (or by hand with `raindrop::propagate::inject(&mut headers)`).
//! * **agent** (service B): its router is wrapped in
//!   `raindrop::propagate::tower::PropagationLayer`, so the request continues
//!   the gateway's interaction: B's `#[raindrop::tool]` spans land in the
//!   gateway's trace under its client span, and
//!   `raindrop::resume_interaction()` in B updates the gateway's event.
//!
//! The gateway began the interaction, so the gateway finishes it; B only adds
//! to it. Both services run in this one process (on two ports) and share one
//! client writing to a local file; in production they are two processes,
//! and B's updates merge into the same event by its event id.
//!
//! The gateway's headers include `x-raindrop-signature`; B joins the
//! interaction only because it verifies. Here, with no write key and no
//! `RAINDROP_PROPAGATION_SECRET`, the one client signs with a random key of
//! this process (and warns that two processes would need a shared secret).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tracing_subscriber::prelude::*;

// ---------------------------------------------------------------------------
// Service B: the agent
// ---------------------------------------------------------------------------

/// What the gateway asks the agent.
#[derive(Debug, Serialize, Deserialize)]
pub struct AgentRequest {
    /// The user's question.
    pub question: String,
}

/// Tool: finds documents (a stand-in for a vector search).
#[raindrop::tool]
async fn retrieve(question: String) -> Vec<String> {
    tokio::time::sleep(Duration::from_millis(3)).await;
    let q = question.to_lowercase();
    ["refunds take 5 business days", "shipping takes 3 to 5 days"]
        .into_iter()
        .filter(|d| {
            q.split_whitespace()
                .map(|w| w.trim_matches('?'))
                .any(|w| w.len() > 4 && d.contains(w))
        })
        .map(str::to_owned)
        .collect()
}

/// Tool: writes the answer from the documents.
#[raindrop::tool]
fn compose(docs: Vec<String>) -> String {
    if docs.is_empty() {
        "I could not find anything about that.".to_owned()
    } else {
        format!("From our docs: {}.", docs.join("; "))
    }
}

/// `POST /agent`: a plain handler; the propagation layer makes its tools
/// part of the caller's interaction.
async fn agent(Json(req): Json<AgentRequest>) -> String {
    let docs = retrieve(req.question).await;
    // The gateway's event, reached from service B.
    raindrop::resume_interaction().set_property("agent_docs", docs.len() as i64);
    compose(docs)
}

/// Service B's router.
pub fn agent_app() -> Router {
    Router::new()
        .route("/agent", post(agent))
        .layer(raindrop::propagate::tower::PropagationLayer)
}

// ---------------------------------------------------------------------------
// Service A: the gateway
// ---------------------------------------------------------------------------

/// `POST /chat` body.
#[derive(Debug, Serialize, Deserialize)]
pub struct ChatRequest {
    /// Who is asking.
    pub user_id: String,
    /// The question.
    pub message: String,
}

#[derive(Clone)]
struct Gateway {
    agent: SocketAddr,
    http: reqwest_middleware::ClientWithMiddleware,
}

/// Tool: the call to the agent service (the span B's spans hang under).
#[raindrop::tool(skip(gw))]
async fn ask_agent(gw: &Gateway, question: String) -> String {
    let body = serde_json::to_string(&AgentRequest { question }).unwrap_or_default();
    let sent = gw
        .http
        .post(format!("http://{}/agent", gw.agent))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await;
    match sent {
        Ok(resp) => resp.text().await.unwrap_or_default(),
        Err(e) => format!("agent unavailable: {e}"),
    }
}

#[raindrop::interaction("chat", user_id = req.user_id, input = req.message)]
async fn chat(State(gw): State<Gateway>, Json(req): Json<ChatRequest>) -> String {
    let answer = ask_agent(&gw, req.message).await;
    // The service that began the interaction finishes it.
    raindrop::resume_interaction().finish(answer.clone());
    answer
}

fn gateway_app(agent: SocketAddr) -> Router {
    let http = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(raindrop::propagate::reqwest_middleware::InjectMiddleware)
        .build();
    Router::new()
        .route("/chat", post(chat))
        .with_state(Gateway { agent, http })
}

// ---------------------------------------------------------------------------
// The demo
// ---------------------------------------------------------------------------

/// Serves `app` on 127.0.0.1 until `stop` resolves.
async fn serve(
    app: Router,
) -> std::io::Result<(
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stop_rx.await;
            })
            .await
    });
    Ok((addr, stop_tx, task))
}

/// Runs both services, sends the gateway two questions, stops both. Returns
/// the answers. Needs `raindrop::init` and a subscriber with the layer.
pub async fn run_demo(log: bool) -> std::io::Result<Vec<String>> {
    let (agent_addr, stop_agent, agent_task) = serve(agent_app()).await?;
    let (gw_addr, stop_gw, gw_task) = serve(gateway_app(agent_addr)).await?;
    if log {
        println!("agent on http://{agent_addr}, gateway on http://{gw_addr}\n");
    }
    let http = reqwest::Client::new();
    let mut answers = Vec::new();
    for (user, message) in [
        ("user-ada", "How long do refunds take?"),
        ("user-bob", "And shipping?"),
    ] {
        let body = serde_json::json!({"user_id": user, "message": message});
        let answer = http
            .post(format!("http://{gw_addr}/chat"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(std::io::Error::other)?
            .text()
            .await
            .map_err(std::io::Error::other)?;
        if log {
            println!("→ POST /chat {body}\n← {answer}\n");
        }
        answers.push(answer);
    }
    let _ = stop_gw.send(());
    let _ = stop_agent.send(());
    gw_task.await.map_err(std::io::Error::other)??;
    agent_task.await.map_err(std::io::Error::other)??;
    Ok(answers)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let (options, sink) = common::options_for("two_services");
    let guard = raindrop::init(options);
    let Some(client) = guard.client().cloned() else {
        eprintln!("raindrop could not start (see the log above)");
        return Ok(());
    };
    tracing_subscriber::registry()
        .with(raindrop::layer_for(&client))
        .init();

    run_demo(true).await?;

    let report = client.shutdown(Duration::from_secs(5));
    drop(guard);
    common::print_report(sink.as_deref(), &report.stats);
    Ok(())
}
