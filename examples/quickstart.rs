//! Plain tracking, no `tracing` needed: identify a user, track an AI event,
//! record how the user reacted, and build an interaction step by step.
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! With no `RAINDROP_WRITE_KEY` the events go to a local file (printed at the
//! end) instead of the network. Set `RAINDROP_WRITE_KEY` to send them to
//! Raindrop.

mod common;

use std::time::Duration;

use raindrop::{
    AiEvent, Attachment, Begin, ClientOptions, Event, Role, Sentiment, ShutdownReport, Signal,
    SignalType,
};
use serde_json::json;

/// What the example did: the ids it tracked and the client's final report.
pub struct Outcome {
    /// The `track_ai` event.
    pub chat_event_id: String,
    /// The interaction built with `begin`/`finish`.
    pub interaction_event_id: String,
    /// The shutdown report.
    pub report: ShutdownReport,
}

/// The example itself, with any options.
pub fn run(options: ClientOptions) -> Result<Outcome, raindrop::Error> {
    // 1. Start the SDK once, early in `main`. Keep the guard alive: dropping it
    //    flushes and shuts down (within `shutdown_timeout`).
    let guard = raindrop::init(options);

    // 2. Say who the user is (optional; traits are free-form JSON).
    let traits = json!({"name": "Ada", "email": "ada@example.com", "plan": "pro"});
    raindrop::identify("user-42", traits.as_object().cloned().unwrap_or_default())?;

    // 3. One question and its answer, in one call. The returned id is what
    //    your front end sends back with feedback.
    let chat_event_id = raindrop::track_ai(
        AiEvent::new("user-42", "chat_message")
            .model("gpt-4o-mini")
            .input("What is the capital of France?")
            .output("The capital of France is Paris.")
            .convo_id("convo-1")
            .property("latency_ms", 412)
            .property("plan", "pro"),
    )?;

    // 4. How the user reacted: signals point at an event id.
    raindrop::track_signal(
        Signal::new(&chat_event_id, "thumbs_up").sentiment(Sentiment::Positive),
    )?;
    raindrop::track_signal(
        Signal::new(&chat_event_id, "user_feedback")
            .signal_type(SignalType::Feedback)
            .comment("Short and correct, thanks!")
            .sentiment(Sentiment::Positive),
    )?;

    // 5. An interaction whose fields arrive over time (an agent run, a
    //    streamed answer): begin, update, finish. Updates are merged and sent
    //    as `events/track_partial`.
    let run = raindrop::begin(
        Begin::new("user-42", "agent_run")
            .input("Summarise my last three orders")
            .model("gpt-4o")
            .convo_id("convo-1"),
    )?;
    run.set_property("stage", "fetching_orders");
    run.add_attachments([Attachment::code("SELECT * FROM orders LIMIT 3", "sql")
        .name("query.sql")
        .role(Role::Input)]);
    run.set_property("orders_found", 3);
    run.finish("You ordered a kettle, two mugs and a tea sampler.");
    let interaction_event_id = run.event_id().unwrap_or_default().to_owned();

    // 6. A plain (non-AI) event.
    raindrop::track(Event::new("user-42", "subscription_renewed").property("plan", "pro"))?;

    // 7. Shut down: deliver what is queued (here explicitly, to get the report;
    //    dropping the guard does the same).
    let report = match guard.client() {
        Some(client) => client.shutdown(Duration::from_secs(5)),
        None => return Err(raindrop::Error::NotInitialized),
    };
    drop(guard);
    Ok(Outcome {
        chat_event_id,
        interaction_event_id,
        report,
    })
}

fn main() -> Result<(), raindrop::Error> {
    let (options, sink) = common::options_for("quickstart");
    let outcome = run(options)?;
    println!("tracked chat_message {}", outcome.chat_event_id);
    println!("tracked agent_run    {}", outcome.interaction_event_id);
    common::print_report(sink.as_deref(), &outcome.report.stats);
    Ok(())
}
