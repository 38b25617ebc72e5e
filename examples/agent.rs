//! A background agent job: the interaction fans out into spawned tasks and a
//! blocking thread, and code deep inside reaches the interaction with
//! `raindrop::resume_interaction()`, without passing a handle around.
//!
//! ```text
//! cargo run --example agent
//! ```
//!
//! The rule to remember: a span is current only where it is entered.
//! `tokio::spawn(fut)` starts `fut` with no current span, so instrument it
//! (`fut.in_current_span()`); on a thread, enter the span
//! (`span.in_scope(..)`). This example does both, and shows what a task that
//! was *not* instrumented sees: a no-op handle.

mod common;

use std::time::Duration;

use tracing::Instrument;
use tracing_subscriber::prelude::*;

/// Why a research job failed.
#[derive(Debug)]
pub struct AgentError(String);

impl std::fmt::Display for AgentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The sources the agent reads; `forum` times out.
pub const SOURCES: [&str; 3] = ["docs", "blog", "forum"];

/// The job: one interaction per research request.
#[raindrop::interaction("research", user_id = user_id, input = topic)]
pub async fn research(user_id: String, topic: String) -> Result<String, AgentError> {
    let interaction = raindrop::resume_interaction();
    interaction.set_model("sim-agent-1");

    // Fan out: one task per source. `.in_current_span()` carries the
    // interaction into the spawned task.
    let fetches: Vec<_> = SOURCES
        .iter()
        .map(|source| tokio::spawn(fetch(source.to_string(), topic.clone()).in_current_span()))
        .collect();
    let mut pages = Vec::new();
    for task in fetches {
        match task.await {
            Ok(Ok(page)) => pages.push(page),
            Ok(Err(_)) => {} // the tool span already recorded the error
            Err(join) => return Err(AgentError(format!("fetch task failed: {join}"))),
        }
    }
    interaction.set_property("sources_ok", pages.len() as i64);

    // The pitfall: a task spawned without instrumentation has no current
    // span, so it cannot see the interaction (it gets a no-op handle).
    let saw = tokio::spawn(async { !raindrop::resume_interaction().is_noop() })
        .await
        .unwrap_or(false);
    interaction.set_property("uninstrumented_task_saw_interaction", saw);

    if pages.is_empty() {
        return Err(AgentError("no source answered".into()));
    }

    // CPU-bound work on the blocking pool: enter the span on that thread.
    let span = tracing::Span::current();
    let summary = tokio::task::spawn_blocking(move || span.in_scope(|| summarize(pages)))
        .await
        .map_err(|e| AgentError(format!("summarize panicked: {e}")))?;
    Ok(summary)
}

/// Tool: fetches one source (simulated; `forum` times out).
#[raindrop::tool]
async fn fetch(source: String, topic: String) -> Result<String, AgentError> {
    tokio::time::sleep(Duration::from_millis(2)).await;
    if source == "forum" {
        return Err(AgentError(format!("{source}: timed out after 2 ms")));
    }
    let page = format!("[{source}] {topic}: three facts. first fact. second fact. third fact.");
    Ok(extract(&source, &page))
}

/// Plain code, two calls below the tool: no span of its own.
fn extract(source: &str, page: &str) -> String {
    let facts = page.matches("fact.").count();
    note_facts(source, facts);
    page.to_owned()
}

fn note_facts(source: &str, facts: usize) {
    // Deep inside a spawned task, the interaction is still reachable.
    raindrop::resume_interaction().set_property(format!("facts_{source}"), facts as i64);
}

/// Task: CPU-bound summary, run on a blocking thread.
#[raindrop::task]
fn summarize(pages: Vec<String>) -> String {
    let total: usize = pages.iter().map(|p| p.matches("fact.").count()).sum();
    format!("{total} facts from {} sources", pages.len())
}

/// Runs two research jobs concurrently, as a job queue would, and returns
/// their results. Needs a subscriber with `raindrop::layer` installed.
pub async fn run_jobs() -> Vec<Result<String, AgentError>> {
    let jobs = [
        ("user-ada", "rust async runtimes"),
        ("user-bob", "vector databases"),
    ];
    let handles: Vec<_> = jobs
        .iter()
        .map(|(user, topic)| tokio::spawn(research(user.to_string(), topic.to_string())))
        .collect();
    let mut results = Vec::new();
    for h in handles {
        results.push(h.await.unwrap_or_else(|e| Err(AgentError(e.to_string()))));
    }
    results
}

#[tokio::main]
async fn main() {
    let (options, sink) = common::options_for("agent");
    let guard = raindrop::init(options);
    let Some(client) = guard.client().cloned() else {
        eprintln!("raindrop could not start (see the log above)");
        return;
    };
    tracing_subscriber::registry()
        .with(raindrop::layer_for(&client))
        .init();

    for result in run_jobs().await {
        match result {
            Ok(summary) => println!("job done: {summary}"),
            Err(e) => println!("job failed: {e}"),
        }
    }

    let report = client.shutdown(Duration::from_secs(5));
    drop(guard);
    common::print_report(sink.as_deref(), &report.stats);
}
