//! The names of the reserved `raindrop.*` span fields (see the crate docs).

use std::fmt;

use serde_json::Value;
use tracing::field::{Field, Visit};

/// Field that marks a span for Raindrop: `interaction`, `task`, `tool` or `llm`.
pub const KIND: &str = "raindrop.kind";
/// Entity name (defaults to the span name).
pub const NAME: &str = "raindrop.name";
/// Event name of an interaction (defaults to the entity name).
pub const EVENT: &str = "raindrop.event";
/// User id of an interaction.
pub const USER_ID: &str = "raindrop.user_id";
/// Conversation id of an interaction.
pub const CONVO_ID: &str = "raindrop.convo_id";
/// Event id of an interaction (generated when absent).
pub const EVENT_ID: &str = "raindrop.event_id";
/// Input of the span (and of the interaction).
pub const INPUT: &str = "raindrop.input";
/// Output of the span (and the interaction's final answer).
pub const OUTPUT: &str = "raindrop.output";
/// Error message: marks the span failed (and the interaction finished with an error).
pub const ERROR: &str = "raindrop.error";
/// Model name of an interaction.
pub const MODEL: &str = "raindrop.model";
/// Entity version, an integer (`traceloop.entity.version`): what
/// `#[raindrop::tool(version = 2)]` declares.
pub const VERSION: &str = "raindrop.version";
/// A JSON object of properties.
pub const PROPERTIES: &str = "raindrop.properties";
/// Prefix of single properties: `raindrop.properties.<key>`.
pub const PROPERTY_PREFIX: &str = "raindrop.properties.";

/// What a marked span stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Interaction,
    Task,
    Tool,
    /// A model call: hand-written (`raindrop.kind = "llm"`) or a GenAI span.
    Llm,
}

impl Kind {
    fn parse(s: &str) -> Option<Kind> {
        match s.trim() {
            "interaction" | "workflow" => Some(Kind::Interaction),
            "task" => Some(Kind::Task),
            "tool" => Some(Kind::Tool),
            "llm" => Some(Kind::Llm),
            _ => None,
        }
    }

    /// The value of `traceloop.span.kind`.
    pub(crate) fn span_kind(self) -> &'static str {
        match self {
            Kind::Interaction => "workflow",
            Kind::Task => "task",
            Kind::Tool => "tool",
            Kind::Llm => "llm",
        }
    }
}

/// The raindrop fields found in one `Attributes` or `Record`.
#[derive(Default, Debug)]
pub(crate) struct Fields {
    pub(crate) kind: Option<Kind>,
    pub(crate) bad_kind: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) event: Option<String>,
    pub(crate) user_id: Option<String>,
    pub(crate) convo_id: Option<String>,
    pub(crate) event_id: Option<String>,
    pub(crate) input: Option<String>,
    pub(crate) output: Option<String>,
    pub(crate) error: Option<String>,
    pub(crate) model: Option<String>,
    pub(crate) version: Option<i64>,
    pub(crate) properties: Vec<(String, Value)>,
}

impl Fields {
    fn set(&mut self, name: &str, value: Value) {
        let text = || match &value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        match name {
            KIND => {
                let t = text();
                match Kind::parse(&t) {
                    Some(k) => self.kind = Some(k),
                    None => self.bad_kind = Some(t),
                }
            }
            NAME => self.name = Some(text()),
            EVENT => self.event = Some(text()),
            USER_ID => self.user_id = Some(text()),
            CONVO_ID => self.convo_id = Some(text()),
            EVENT_ID => self.event_id = Some(text()),
            INPUT => self.input = Some(text()),
            OUTPUT => self.output = Some(text()),
            ERROR => {
                self.error = match value {
                    Value::Bool(false) => None,
                    Value::Bool(true) => Some("error".to_owned()),
                    other => Some(match other {
                        Value::String(s) => s,
                        o => o.to_string(),
                    }),
                }
            }
            MODEL => self.model = Some(text()),
            VERSION => match value.as_i64().or_else(|| text().trim().parse().ok()) {
                Some(v) => self.version = Some(v),
                None => {
                    tracing::debug!(target: "raindrop", "`raindrop.version` is not an integer; ignored")
                }
            },
            PROPERTIES => match &value {
                Value::String(s) => match serde_json::from_str::<Value>(s) {
                    Ok(Value::Object(m)) => self.properties.extend(m),
                    _ => {
                        tracing::debug!(target: "raindrop", "`raindrop.properties` is not a JSON object; ignored")
                    }
                },
                Value::Object(m) => self.properties.extend(m.clone()),
                _ => {
                    tracing::debug!(target: "raindrop", "`raindrop.properties` is not a JSON object; ignored")
                }
            },
            other => {
                if let Some(key) = other.strip_prefix(PROPERTY_PREFIX) {
                    if !key.is_empty() {
                        self.properties.push((key.to_owned(), value));
                    }
                }
            }
        }
    }

    /// Whether nothing was found.
    pub(crate) fn is_empty(&self) -> bool {
        self.kind.is_none()
            && self.name.is_none()
            && self.event.is_none()
            && self.user_id.is_none()
            && self.convo_id.is_none()
            && self.event_id.is_none()
            && self.input.is_none()
            && self.output.is_none()
            && self.error.is_none()
            && self.model.is_none()
            && self.version.is_none()
            && self.properties.is_empty()
    }
}

fn is_ours(field: &Field) -> bool {
    field.name().starts_with("raindrop.")
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if is_ours(field) {
            self.set(field.name(), Value::String(value.to_owned()));
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        if is_ours(field) {
            self.set(field.name(), Value::from(value));
        }
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        if is_ours(field) {
            self.set(field.name(), Value::from(value));
        }
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        if is_ours(field) {
            self.set(field.name(), Value::from(value));
        }
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        if is_ours(field) {
            self.set(field.name(), Value::Bool(value));
        }
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if is_ours(field) {
            self.set(field.name(), Value::String(value.to_string()));
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if is_ours(field) {
            self.set(field.name(), Value::String(format!("{value:?}")));
        }
    }
}

/// Whether a callsite declares the marker field.
pub(crate) fn is_marked(meta: &tracing::Metadata<'_>) -> bool {
    meta.is_span() && meta.fields().field(KIND).is_some()
}
