//! A program with no async code of its own: plain `fn main`, OS threads, no
//! tokio. The SDK runs its own small background thread, so tracking calls
//! never block and never need a runtime from you; the attributes work on
//! plain (non-`async`) functions too.
//!
//! ```text
//! cargo run --example sync
//! ```

mod common;

use std::thread;
use std::time::Duration;

use raindrop::{AiEvent, Begin, Client, Finish};
use tracing_subscriber::prelude::*;

/// A deterministic stand-in for a model: no network.
fn answer(question: &str) -> Result<String, String> {
    if question.trim().is_empty() {
        return Err("empty question".to_owned());
    }
    let words = question.split_whitespace().count();
    Ok(format!("({words} words) You asked: {question}"))
}

/// A support ticket.
pub struct Ticket {
    /// Who wrote it.
    pub customer: String,
    /// What they wrote.
    pub text: String,
}

/// A traced interaction in plain sync code: the tools below become its spans.
#[raindrop::interaction("triage", user_id = ticket.customer, input = ticket.text)]
pub fn triage(ticket: &Ticket) -> Result<String, String> {
    let category = classify(&ticket.text);
    let reply = reply_template(category)?;
    Ok(reply.replace("{name}", &ticket.customer))
}

/// Tool: picks a category.
#[raindrop::tool]
fn classify(text: &str) -> &'static str {
    let t = text.to_lowercase();
    if t.contains("invoice") || t.contains("charge") {
        "billing"
    } else if t.contains("crash") || t.contains("error") {
        "bug"
    } else {
        "other"
    }
}

/// Tool: the canned reply of a category (there is none for `other`).
#[raindrop::tool]
fn reply_template(category: &str) -> Result<String, String> {
    match category {
        "billing" => Ok("Hi {name}, billing will refund the extra charge today.".to_owned()),
        "bug" => Ok("Hi {name}, thanks! Engineering is looking at the crash.".to_owned()),
        other => Err(format!("no template for category `{other}`")),
    }
}

/// What the example did.
pub struct Outcome {
    /// Event ids of the per-question `track_ai` calls.
    pub answered: Vec<String>,
    /// Event id of the batch interaction.
    pub batch_event_id: String,
    /// Results of the traced `triage` calls.
    pub triaged: Vec<Result<String, String>>,
}

/// The example: a batch job answering questions on worker threads with the
/// plain API, then traced triage calls. Expects the raindrop layer to be
/// installed (see `main`).
pub fn run(client: &Client) -> Result<Outcome, raindrop::Error> {
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

    // Traced sync calls: each `triage` is one interaction with its tool spans.
    let triaged = [
        ("customer-7", "I was charged twice on my last invoice"),
        ("customer-8", "The app shows an error and crashes on start"),
        ("customer-9", "Do you have stickers?"), // no template: the interaction fails
    ]
    .into_iter()
    .map(|(customer, text)| {
        triage(&Ticket {
            customer: customer.to_owned(),
            text: text.to_owned(),
        })
    })
    .collect();

    // `flush` blocks this thread until everything queued so far is delivered
    // (or the timeout passes).
    client.flush(Duration::from_secs(5));
    Ok(Outcome {
        answered,
        batch_event_id,
        triaged,
    })
}

fn main() -> Result<(), raindrop::Error> {
    let (options, sink) = common::options_for("sync");
    // An explicit client (no global `raindrop::init`): handy in libraries and tests.
    let client = Client::new(options)?;
    tracing_subscriber::registry()
        .with(raindrop::layer_for(&client))
        .init();

    let outcome = run(&client)?;
    println!(
        "answered {} questions; batch interaction {}",
        outcome.answered.len(),
        outcome.batch_event_id
    );
    for t in &outcome.triaged {
        println!("triage: {t:?}");
    }

    // Delivers what is left and stops the SDK's thread.
    let report = client.shutdown(Duration::from_secs(5));
    common::print_report(sink.as_deref(), &report.stats);
    Ok(())
}
