//! Model calls recorded with no code beyond `#[raindrop::interaction]`: a
//! [rig](https://github.com/0xPlaygrounds/rig) agent with one tool.
//!
//! ```text
//! cargo run --example rig_agent
//! ```
//!
//! rig describes each model call and tool call as a `tracing` span with the
//! OpenTelemetry GenAI conventions (`gen_ai.request.model`,
//! `gen_ai.usage.input_tokens`, ...). The raindrop layer picks those spans up
//! inside an interaction: each model call becomes an LLM span (model,
//! provider, prompt and completion messages, token usage), the tool call a
//! tool span, and the interaction gets its model, input, output and token
//! totals from them.
//!
//! The agent talks to an OpenAI-compatible mock server that the example
//! starts on 127.0.0.1 (deterministic answers: a call of the `add` tool, then
//! the answer), so it runs offline; with no `RAINDROP_WRITE_KEY` what
//! Raindrop would receive goes to a local file, and the example prints the tree.
//!
//! rig sends with its own reqwest client (rig-core's `reqwest` feature), on
//! the same reqwest 0.13 and rustls as the SDK. With rig-core's default
//! `rustls` feature off (`default-features = false, features = ["reqwest",
//! "derive"]`) the build has one crypto provider too, ring, which
//! `raindrop::init` installs; with it on, reqwest also builds aws-lc-rs.

mod common;
#[path = "common/openai_mock.rs"]
pub mod openai_mock;

use std::time::Duration;

use rig_agent::completion::PromptError;
use rig_agent::{Agent, AgentBuilder};
use rig_core::providers::openai::OpenAIConfig;
use rig_core::tool::PortableTool;
use serde::Deserialize;
use tracing_subscriber::prelude::*;

/// The agent's one tool.
pub struct Add;

/// Arguments of [`Add`].
#[derive(Debug, Deserialize)]
pub struct AddArgs {
    a: i64,
    b: i64,
}

/// The error [`Add`] never returns.
#[derive(Debug)]
pub struct Overflow;

impl std::fmt::Display for Overflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("overflow")
    }
}

impl std::error::Error for Overflow {}

impl PortableTool for Add {
    const NAME: &'static str = "add";
    type Args = AddArgs;
    type Output = i64;
    type Error = Overflow;

    fn description(&self) -> String {
        "Adds two integers.".to_owned()
    }

    fn parameters(&self) -> serde_json::Value {
        serde_json::json!({
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"]
        })
    }

    async fn call(&self, args: AddArgs) -> Result<i64, Overflow> {
        args.a.checked_add(args.b).ok_or(Overflow)
    }
}

/// An agent on the OpenAI-compatible server at `base_url`.
pub fn agent(base_url: &str) -> Agent {
    let model = OpenAIConfig::new("sk-mock")
        .with_base_url(base_url)
        // rig's own reqwest client (rig-core's `reqwest` feature): the same
        // reqwest 0.13 and rustls as the SDK's.
        .client()
        .chat("gpt-mock");
    AgentBuilder::new(model)
        .name("math-helper")
        .preamble("You are a careful calculator. Use the add tool.")
        .tool(Add)
        // rig records prompts and answers on its spans only when asked to.
        .record_content_telemetry(true)
        // One turn for the tool call, one for the answer.
        .default_max_turns(3)
        .build()
}

/// One user question. Nothing is captured by hand: the layer fills the
/// interaction's input, output, model and token usage from rig's spans.
#[raindrop::interaction("math_help", user_id = "user-rig", skip_all)]
pub async fn ask(agent: &Agent, question: &str) -> Result<(), PromptError> {
    let answer = agent.prompt(question).await?;
    println!("agent: {}", answer.output());
    Ok(())
}

/// Starts the mock, builds the agent and asks it one question. Needs a
/// subscriber with `raindrop::layer` installed.
pub async fn run() -> Result<(), PromptError> {
    let base_url = openai_mock::start().await;
    let agent = agent(&base_url);
    println!("user: What is 2 + 3?");
    ask(&agent, "What is 2 + 3?").await
}

#[tokio::main]
async fn main() {
    let (options, sink) = common::options_for("rig_agent");
    let guard = raindrop::init(options);
    let Some(client) = guard.client().cloned() else {
        eprintln!("raindrop could not start (see the log above)");
        return;
    };
    tracing_subscriber::registry()
        .with(raindrop::layer_for(&client))
        .init();

    if let Err(e) = run().await {
        println!("the agent failed: {e}");
    }

    let report = client.shutdown(Duration::from_secs(5));
    drop(guard);
    common::print_report(sink.as_deref(), &report.stats);
}
