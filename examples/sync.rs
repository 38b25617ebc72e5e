//! A program with no async code of its own: plain `fn main`, OS threads, no
//! tokio. The SDK runs its own small background thread, so tracking calls
//! never block and never need a runtime from you.
//!
//! ```text
//! cargo run --example sync
//! ```

mod common;

use std::thread;
use std::time::Duration;

use raindrop::{AiEvent, Begin, Client, ClientOptions, Finish, ShutdownReport};

/// A deterministic stand-in for a model: no network.
fn answer(question: &str) -> Result<String, String> {
    if question.trim().is_empty() {
        return Err("empty question".to_owned());
    }
    let words = question.split_whitespace().count();
    Ok(format!("({words} words) You asked: {question}"))
}

/// What the example did.
pub struct Outcome {
    /// Event ids of the per-question `track_ai` calls.
    pub answered: Vec<String>,
    /// Event id of the batch interaction.
    pub batch_event_id: String,
    /// The shutdown report.
    pub report: ShutdownReport,
}

/// The example: a batch job answering questions on four worker threads.
pub fn run(options: ClientOptions) -> Result<Outcome, raindrop::Error> {
    // An explicit client (no global): handy in libraries and tests.
    let client = Client::new(options)?;

    let questions = [
        "How do I reset my password?",
        "What are your opening hours?",
        "Can I change my delivery address?",
        "", // fails: the batch records the error
        "Do you ship to Canada?",
        "Where is my order?",
    ];

    // One interaction for the whole batch; its fields arrive over time.
    let batch = client.begin(
        Begin::new("batch-bot", "nightly_batch")
            .input(format!("{} questions", questions.len()))
            .model("sim-1"),
    )?;

    let answered: Vec<String> = thread::scope(|s| {
        let handles: Vec<_> = questions
            .chunks(2)
            .enumerate()
            .map(|(worker, chunk)| {
                let client = client.clone(); // cheap: clones share one queue
                let batch = batch.clone(); // handles of one interaction share state
                s.spawn(move || {
                    let mut ids = Vec::new();
                    for q in chunk {
                        match answer(q) {
                            Ok(a) => {
                                // Never blocks: validates, queues, returns the id.
                                if let Ok(id) = client.track_ai(
                                    AiEvent::new(format!("customer-{worker}"), "faq_answer")
                                        .model("sim-1")
                                        .input(*q)
                                        .output(a)
                                        .property("worker", worker as i64),
                                ) {
                                    ids.push(id);
                                }
                            }
                            Err(e) => batch.set_property("last_error", e),
                        }
                    }
                    ids
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });

    batch.set_property("answered", answered.len() as i64);
    batch.finish_with(
        Finish::new()
            .output(format!(
                "{} of {} answered",
                answered.len(),
                questions.len()
            ))
            .property("failed", (questions.len() - answered.len()) as i64),
    );
    let batch_event_id = batch.event_id().unwrap_or_default().to_owned();

    // `flush` blocks this thread until everything queued so far is delivered
    // (or the timeout passes); `shutdown` flushes and stops the worker.
    client.flush(Duration::from_secs(5));
    let report = client.shutdown(Duration::from_secs(5));
    Ok(Outcome {
        answered,
        batch_event_id,
        report,
    })
}

fn main() -> Result<(), raindrop::Error> {
    let (options, sink) = common::options_for("sync");
    let outcome = run(options)?;
    println!(
        "answered {} questions; batch interaction {}",
        outcome.answered.len(),
        outcome.batch_event_id
    );
    common::print_report(sink.as_deref(), &outcome.report.stats);
    Ok(())
}
