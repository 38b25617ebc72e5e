//! Driver for the Raindrop conformance harness (`../shared/conformance`).
//!
//! Reads a JSON array of single-key steps on stdin, runs each through the
//! public API of the `raindrop` facade, and prints one timing line per step.
//! Configuration comes only from `RAINDROP_SINK_URL`, `RAINDROP_WRITE_KEY`
//! and `RAINDROP_PROJECT_ID`; everything else stays at the SDK's defaults.

use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use raindrop::{
    AiEvent, Attachment, AttachmentType, Begin, Client, ClientOptions, Error, Event, Finish,
    Interaction, Properties, Role, Sentiment, Signal, SignalType,
};
use serde_json::{json, Value};

const DRIVER_VERSION: &str = "1";

fn main() -> ExitCode {
    if std::env::args().any(|a| a == "--describe") {
        let caps = [
            "events.track_ai",
            "events.track",
            "events.track_partial",
            "identify",
            "signal",
            "traces.tracing",
            "ext.repeat",
            "ext.parallel",
        ];
        let d = json!({
            "sdk_name": "raindrop-sdk-rust",
            "sdk_version": env!("CARGO_PKG_VERSION"),
            "driver_version": DRIVER_VERSION,
            "protocol": 1,
            "capabilities": caps,
        });
        println!("{d}");
        return ExitCode::SUCCESS;
    }
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let (Some(sink), Some(key)) = (env("RAINDROP_SINK_URL"), env("RAINDROP_WRITE_KEY")) else {
        eprintln!("refusing to run: RAINDROP_SINK_URL and RAINDROP_WRITE_KEY must both be set");
        return ExitCode::from(1);
    };
    let mut input = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut input) {
        eprintln!("cannot read steps: {e}");
        return ExitCode::from(1);
    }
    let steps: Vec<Value> = match serde_json::from_str(&input) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("steps are not a JSON array: {e}");
            return ExitCode::from(1);
        }
    };
    let mut options = ClientOptions::default()
        .endpoint(format!("{}/v1/", sink.trim_end_matches('/')))
        .write_key(key)
        // The scenarios fix request bodies; the checkout's commit is not theirs.
        .app_git(false);
    options.project_id = env("RAINDROP_PROJECT_ID");
    let mut driver = Driver {
        options,
        client: None,
        open: None,
        _tracing: None,
    };
    for (index, step) in steps.iter().enumerate() {
        let Some((name, args)) = step.as_object().and_then(|o| o.iter().next()) else {
            eprintln!("step {index} is not a single-key object");
            return ExitCode::from(1);
        };
        let start = Instant::now();
        let result = driver.run(name, args);
        let ms = start.elapsed().as_secs_f64() * 1000.0;
        let line = match result {
            Ok(()) => json!({"step": index, "ms": ms}),
            Err(StepError::Sdk(e)) => json!({"step": index, "ms": ms, "error": e.to_string()}),
            Err(StepError::Unsupported) => {
                println!("unsupported:{name}");
                return ExitCode::from(3);
            }
            Err(StepError::Fatal(msg)) => {
                eprintln!("step {index} ({name}): {msg}");
                return ExitCode::from(1);
            }
        };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
    if driver.open.is_some() {
        eprintln!("an interaction is still open at the end");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

enum StepError {
    /// The SDK refused the call (reported, not fatal).
    Sdk(Error),
    Unsupported,
    Fatal(String),
}

impl From<Error> for StepError {
    fn from(e: Error) -> Self {
        StepError::Sdk(e)
    }
}

struct Driver {
    options: ClientOptions,
    client: Option<Client>,
    open: Option<Interaction>,
    _tracing: Option<tracing::subscriber::DefaultGuard>,
}

impl Driver {
    fn client(&self) -> Result<&Client, StepError> {
        self.client
            .as_ref()
            .ok_or_else(|| StepError::Fatal("no `init` step before this one".into()))
    }

    fn run(&mut self, name: &str, args: &Value) -> Result<(), StepError> {
        match name {
            "init" => {
                let client = Client::new(self.options.clone())?;
                self._tracing = Some(traced::install(&client));
                self.client = Some(client);
                Ok(())
            }
            "track_ai" => {
                self.client()?.track_ai(ai_event(args)?)?;
                Ok(())
            }
            "track" => {
                self.client()?.track(event(args)?)?;
                Ok(())
            }
            "identify" => {
                let traits = obj(args, "traits").unwrap_or_default();
                self.client()?
                    .identify(string(args, "user_id").unwrap_or_default(), traits)?;
                Ok(())
            }
            "signal" => {
                self.client()?.track_signal(signal(args)?)?;
                Ok(())
            }
            "begin" => {
                let i = self.client()?.begin(begin(args)?)?;
                self.open = Some(i);
                Ok(())
            }
            "patch" => {
                let i = self.open()?;
                if let Some(v) = string(args, "input") {
                    i.set_input(v);
                }
                if let Some(v) = string(args, "output") {
                    i.set_output(v);
                }
                if let Some(v) = string(args, "model") {
                    i.set_model(v);
                }
                if let Some(v) = string(args, "convo_id") {
                    i.set_convo_id(v);
                }
                if let Some(p) = obj(args, "properties") {
                    i.set_properties(p);
                }
                let a = attachments(args)?;
                if !a.is_empty() {
                    i.add_attachments(a);
                }
                Ok(())
            }
            "finish" => {
                let mut f = Finish::new();
                if let Some(v) = string(args, "output") {
                    f = f.output(v);
                }
                if let Some(v) = string(args, "model") {
                    f = f.model(v);
                }
                if let Some(p) = obj(args, "properties") {
                    f = f.properties(p);
                }
                f = f.attachments(attachments(args)?);
                self.open()?.finish_with(f);
                self.open = None;
                Ok(())
            }
            "flush" => {
                self.client()?.flush(Duration::from_secs(60));
                Ok(())
            }
            "close" => {
                let c = self.client()?;
                c.shutdown(c.options().shutdown_timeout);
                Ok(())
            }
            "sleep" => {
                let ms = args.get("ms").and_then(Value::as_u64).unwrap_or(0);
                std::thread::sleep(Duration::from_millis(ms));
                Ok(())
            }
            "repeat" => {
                let count = args.get("count").and_then(Value::as_u64).unwrap_or(0);
                let (step, inner) = single(args.get("step"))?;
                for i in 0..count {
                    let a = substitute(inner, &[("{i}", i)]);
                    self.run_inner(step, &a)?;
                }
                Ok(())
            }
            "parallel" => {
                let threads = args.get("threads").and_then(Value::as_u64).unwrap_or(1);
                let count = args.get("count").and_then(Value::as_u64).unwrap_or(0);
                let (step, inner) = single(args.get("step"))?;
                let client = self.client()?.clone();
                let errors: Vec<String> = std::thread::scope(|s| {
                    let handles: Vec<_> = (0..threads)
                        .map(|t| {
                            let client = client.clone();
                            s.spawn(move || {
                                let mut d = Driver {
                                    options: ClientOptions::default(),
                                    client: Some(client),
                                    open: None,
                                    _tracing: None,
                                };
                                for i in 0..count {
                                    let a = substitute(inner, &[("{t}", t), ("{i}", i)]);
                                    if let Err(StepError::Fatal(m)) = d.run_inner(step, &a) {
                                        return Some(m);
                                    }
                                }
                                None
                            })
                        })
                        .collect();
                    handles
                        .into_iter()
                        .filter_map(|h| h.join().unwrap_or(Some("thread panicked".into())))
                        .collect()
                });
                match errors.into_iter().next() {
                    Some(e) => Err(StepError::Fatal(e)),
                    None => Ok(()),
                }
            }
            "traced_interaction" => traced::run(self.client()?, args),
            _ => Err(StepError::Unsupported),
        }
    }

    /// A step inside `repeat`/`parallel`: SDK refusals are not fatal.
    fn run_inner(&mut self, name: &str, args: &Value) -> Result<(), StepError> {
        match self.run(name, args) {
            Err(StepError::Sdk(_)) => Ok(()),
            other => other,
        }
    }

    fn open(&self) -> Result<&Interaction, StepError> {
        self.open
            .as_ref()
            .ok_or_else(|| StepError::Fatal("no open interaction".into()))
    }
}

fn single(step: Option<&Value>) -> Result<(&str, &Value), StepError> {
    step.and_then(Value::as_object)
        .and_then(|o| o.iter().next())
        .map(|(k, v)| (k.as_str(), v))
        .ok_or_else(|| StepError::Fatal("`step` must be a single-key object".into()))
}

/// Replaces `{i}` / `{t}` in every string value.
fn substitute(v: &Value, vars: &[(&str, u64)]) -> Value {
    match v {
        Value::String(s) => {
            let mut s = s.clone();
            for (k, n) in vars {
                s = s.replace(k, &n.to_string());
            }
            Value::String(s)
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| substitute(x, vars)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| (k.clone(), substitute(x, vars)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// A string argument; JSON `null` means "not given".
fn string(args: &Value, key: &str) -> Option<String> {
    match args.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

fn obj(args: &Value, key: &str) -> Option<Properties> {
    args.get(key).and_then(Value::as_object).cloned()
}

fn attachments(args: &Value) -> Result<Vec<Attachment>, Error> {
    let Some(list) = args.get("attachments").and_then(Value::as_array) else {
        return Ok(Vec::new());
    };
    list.iter()
        .map(|a| {
            let kind: AttachmentType = string(a, "type").unwrap_or_default().parse()?;
            let mut att = Attachment::new(kind, string(a, "value").unwrap_or_default());
            if let Some(n) = string(a, "name") {
                att = att.name(n);
            }
            if let Some(r) = string(a, "role") {
                att = att.role(r.parse::<Role>()?);
            }
            if let Some(l) = string(a, "language") {
                att = att.language(l);
            }
            if let Some(id) = string(a, "attachment_id") {
                att = att.attachment_id(id);
            }
            Ok(att)
        })
        .collect()
}

fn ai_event(a: &Value) -> Result<AiEvent, Error> {
    let mut e = AiEvent::new(
        string(a, "user_id").unwrap_or_default(),
        string(a, "event").unwrap_or_default(),
    );
    if let Some(v) = string(a, "event_id") {
        e = e.event_id(v);
    }
    if let Some(v) = string(a, "input") {
        e = e.input(v);
    }
    if let Some(v) = string(a, "output") {
        e = e.output(v);
    }
    if let Some(v) = string(a, "model") {
        e = e.model(v);
    }
    if let Some(v) = string(a, "convo_id") {
        e = e.convo_id(v);
    }
    if let Some(p) = obj(a, "properties") {
        e = e.properties(p);
    }
    if let Some(t) = string(a, "timestamp") {
        e = e.timestamp(t);
    }
    Ok(e.attachments(attachments(a)?))
}

fn event(a: &Value) -> Result<Event, Error> {
    let mut e = Event::new(
        string(a, "user_id").unwrap_or_default(),
        string(a, "event").unwrap_or_default(),
    );
    if let Some(v) = string(a, "event_id") {
        e = e.event_id(v);
    }
    if let Some(p) = obj(a, "properties") {
        e = e.properties(p);
    }
    if let Some(t) = string(a, "timestamp") {
        e = e.timestamp(t);
    }
    Ok(e.attachments(attachments(a)?))
}

fn signal(a: &Value) -> Result<Signal, Error> {
    let mut s = Signal::new(
        string(a, "event_id").unwrap_or_default(),
        string(a, "name").unwrap_or_default(),
    );
    if let Some(t) = string(a, "signal_type") {
        s = s.signal_type(t.parse::<SignalType>()?);
    }
    if let Some(v) = string(a, "sentiment") {
        s = s.sentiment(v.parse::<Sentiment>()?);
    }
    if let Some(v) = string(a, "comment") {
        s = s.comment(v);
    }
    if let Some(v) = string(a, "after") {
        s = s.after(v);
    }
    if let Some(p) = obj(a, "properties") {
        s = s.properties(p);
    }
    if let Some(t) = string(a, "timestamp") {
        s = s.timestamp(t);
    }
    if let Some(v) = string(a, "attachment_id") {
        s = s.attachment_id(v);
    }
    Ok(s)
}

fn begin(a: &Value) -> Result<Begin, Error> {
    let mut b = Begin::new(
        string(a, "user_id").unwrap_or_default(),
        string(a, "event").unwrap_or_default(),
    );
    if let Some(v) = string(a, "event_id") {
        b = b.event_id(v);
    }
    if let Some(v) = string(a, "input") {
        b = b.input(v);
    }
    if let Some(v) = string(a, "model") {
        b = b.model(v);
    }
    if let Some(v) = string(a, "convo_id") {
        b = b.convo_id(v);
    }
    if let Some(p) = obj(a, "properties") {
        b = b.properties(p);
    }
    Ok(b.attachments(attachments(a)?))
}

/// The `traced_interaction` step, run through real spans and the raindrop layer.
mod traced {
    use super::*;
    use tracing::field::Empty;
    use tracing_subscriber::prelude::*;

    /// Installs the raindrop layer as the process's subscriber.
    pub fn install(client: &Client) -> tracing::subscriber::DefaultGuard {
        let subscriber = tracing_subscriber::registry().with(raindrop::layer_for(client));
        tracing::subscriber::set_default(subscriber)
    }

    /// JSON text for a span field; a plain string stays unquoted.
    fn text(v: Option<&Value>) -> Option<String> {
        match v? {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    }

    pub fn run(_client: &Client, args: &Value) -> Result<(), StepError> {
        let name = string(args, "name").unwrap_or_else(|| "interaction".into());
        let interaction = tracing::info_span!(
            "interaction",
            raindrop.kind = "interaction",
            raindrop.name = name.as_str(),
            raindrop.user_id = Empty,
            raindrop.convo_id = Empty,
            raindrop.input = Empty,
            raindrop.output = Empty,
        );
        if let Some(u) = string(args, "user_id") {
            interaction.record("raindrop.user_id", u.as_str());
        }
        if let Some(c) = string(args, "convo_id") {
            interaction.record("raindrop.convo_id", c.as_str());
        }
        if let Some(i) = text(args.get("input")) {
            interaction.record("raindrop.input", i.as_str());
        }
        interaction.in_scope(|| {
            let tools = args.get("tools").and_then(Value::as_array);
            for tool in tools.into_iter().flatten() {
                let span = tracing::info_span!(
                    "tool",
                    raindrop.kind = "tool",
                    raindrop.name = string(tool, "name").unwrap_or_default().as_str(),
                    raindrop.input = Empty,
                    raindrop.output = Empty,
                    raindrop.error = Empty,
                );
                if let Some(i) = text(tool.get("input")) {
                    span.record("raindrop.input", i.as_str());
                }
                if let Some(e) = text(tool.get("error")) {
                    span.record("raindrop.error", e.as_str());
                } else if let Some(o) = text(tool.get("output")) {
                    span.record("raindrop.output", o.as_str());
                }
            }
        });
        if let Some(o) = text(args.get("output")) {
            interaction.record("raindrop.output", o.as_str());
        }
        drop(interaction);
        Ok(())
    }
}
