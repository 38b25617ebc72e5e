//! The GenAI mapping for OpenTelemetry attributes.
//!
//! It follows the layer's `genai` module (the same convention names read,
//! the same attributes written, the same rules for filling an interaction),
//! which today works on the layer's own span state and so cannot be called
//! from here. Once `genai` returns attributes from what a call said, the
//! bodies below become calls into it; nothing outside this module changes.

use std::borrow::Cow;

use opentelemetry::KeyValue;
use raindrop_core::{truncate_text, AttributeValue, Interaction};
use serde_json::Value;

use super::Attr;

/// Token counts of one call, or summed over an interaction's calls.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Usage {
    input: Option<i64>,
    output: Option<i64>,
    reasoning: Option<i64>,
    cache_read: Option<i64>,
    cache_write: Option<i64>,
}

fn add(a: &mut Option<i64>, b: Option<i64>) {
    if let Some(b) = b {
        *a = Some(a.unwrap_or(0).saturating_add(b));
    }
}

impl Usage {
    pub(super) fn add(&mut self, o: &Usage) {
        add(&mut self.input, o.input);
        add(&mut self.output, o.output);
        add(&mut self.reasoning, o.reasoning);
        add(&mut self.cache_read, o.cache_read);
        add(&mut self.cache_write, o.cache_write);
    }
}

/// What one GenAI span said, by convention name.
#[derive(Debug, Default)]
pub(super) struct Call {
    operation: Option<String>,
    span_kind: Option<String>,
    provider: Option<String>,
    request_model: Option<String>,
    response_model: Option<String>,
    system: Option<String>,
    input_messages: Option<String>,
    output_messages: Option<String>,
    /// `gen_ai.prompt.N.role` / `.content` (Traceloop's indexed form).
    prompt: Vec<(usize, Option<String>, Option<String>)>,
    /// `gen_ai.completion.0.content` or `ai.response.text`.
    completion: Option<String>,
    tool_name: Option<String>,
    tool_arguments: Option<String>,
    tool_result: Option<String>,
    pub(super) usage: Usage,
}

fn int(v: &opentelemetry::Value) -> Option<i64> {
    match v {
        opentelemetry::Value::I64(i) => Some(*i),
        opentelemetry::Value::F64(f) => Some(*f as i64),
        other => other.as_str().trim().parse().ok(),
    }
}

impl Call {
    /// The GenAI reading of a span; `None` when it is no model, tool or
    /// agent span of the conventions.
    pub(super) fn read(attrs: &[KeyValue]) -> Option<Call> {
        let mut c = Call::default();
        let mut genai = false;
        for kv in attrs {
            let key = kv.key.as_str();
            let text = || Some(kv.value.as_str().into_owned());
            genai |= matches!(
                key,
                "gen_ai.operation.name"
                    | "gen_ai.request.model"
                    | "gen_ai.response.model"
                    | "ai.model.id"
                    | "llm.request.type"
            );
            match key {
                "gen_ai.operation.name" => c.operation = text(),
                "traceloop.span.kind" => c.span_kind = text(),
                "gen_ai.provider.name" | "gen_ai.system" | "ai.model.provider" => {
                    c.provider = text()
                }
                "gen_ai.request.model" | "ai.model.id" => {
                    c.request_model = c.request_model.take().or_else(text)
                }
                "gen_ai.response.model" => c.response_model = text(),
                "gen_ai.system_instructions" => c.system = text(),
                "gen_ai.input.messages" | "ai.prompt.messages" => c.input_messages = text(),
                "gen_ai.output.messages" => c.output_messages = text(),
                "gen_ai.completion.0.content" | "ai.response.text" => c.completion = text(),
                "gen_ai.tool.name" => c.tool_name = text(),
                "gen_ai.tool.call.arguments" => c.tool_arguments = text(),
                "gen_ai.tool.call.result" => c.tool_result = text(),
                "gen_ai.usage.input_tokens" | "gen_ai.usage.prompt_tokens" => {
                    c.usage.input = int(&kv.value)
                }
                "gen_ai.usage.output_tokens" | "gen_ai.usage.completion_tokens" => {
                    c.usage.output = int(&kv.value)
                }
                "gen_ai.usage.reasoning_tokens" | "gen_ai.usage.reasoning.output_tokens" => {
                    c.usage.reasoning = int(&kv.value)
                }
                "gen_ai.usage.cache_read.input_tokens" | "gen_ai.usage.cache_read_input_tokens" => {
                    c.usage.cache_read = int(&kv.value)
                }
                "gen_ai.usage.cache_creation.input_tokens"
                | "gen_ai.usage.cache_write_input_tokens" => c.usage.cache_write = int(&kv.value),
                _ => c.read_indexed_prompt(key, &kv.value),
            }
        }
        let llm_kind = c.span_kind.as_deref() == Some("llm");
        (genai || llm_kind).then_some(c)
    }

    fn read_indexed_prompt(&mut self, key: &str, value: &opentelemetry::Value) {
        let Some(rest) = key.strip_prefix("gen_ai.prompt.") else {
            return;
        };
        let Some((n, field)) = rest.split_once('.') else {
            return;
        };
        let Ok(n) = n.parse::<usize>() else {
            return;
        };
        let slot = match self.prompt.iter().position(|p| p.0 == n) {
            Some(i) => &mut self.prompt[i],
            None => {
                self.prompt.push((n, None, None));
                self.prompt.last_mut().expect("just pushed")
            }
        };
        match field {
            "role" => slot.1 = Some(value.as_str().into_owned()),
            "content" => slot.2 = Some(value.as_str().into_owned()),
            _ => {}
        }
    }

    /// `tool`, `task` or `llm`, from the operation (the layer's rule).
    fn kind(&self) -> &'static str {
        match self.operation.as_deref().map(str::trim) {
            Some("execute_tool") => "tool",
            Some("invoke_agent" | "create_agent") => "task",
            _ => "llm",
        }
    }

    /// A call whose prompt and answer are what the user asked and the
    /// model said (not embeddings, tools or agents).
    pub(super) fn is_chat(&self) -> bool {
        self.kind() == "llm"
            && matches!(
                self.operation.as_deref().map(str::trim),
                None | Some("chat" | "generate_content" | "text_completion")
            )
    }

    pub(super) fn model(&self) -> Option<&str> {
        self.response_model
            .as_deref()
            .or(self.request_model.as_deref())
    }

    /// The prompt as `(role, content, text)`, system instructions first.
    fn messages(&self) -> Vec<Message> {
        let mut msgs = match &self.input_messages {
            Some(json) => parse_messages(json),
            None => {
                let mut indexed: Vec<_> = self.prompt.iter().collect();
                indexed.sort_by_key(|p| p.0);
                indexed
                    .into_iter()
                    .filter_map(|(_, role, content)| {
                        let content = content.clone()?;
                        Some(Message {
                            role: role.clone().unwrap_or_else(|| "user".to_owned()),
                            text: Some(content.clone()),
                            content,
                        })
                    })
                    .collect()
            }
        };
        if !msgs.iter().any(|m| m.role == "system") {
            if let Some(sys) = self.system.as_deref().map(system_text) {
                if !sys.is_empty() {
                    msgs.insert(
                        0,
                        Message {
                            role: "system".to_owned(),
                            content: sys,
                            text: None,
                        },
                    );
                }
            }
        }
        msgs
    }

    /// The last user text of the prompt (tool results, which come back
    /// as user messages without text parts, are skipped).
    pub(super) fn user_text(&self) -> Option<String> {
        self.messages()
            .into_iter()
            .rev()
            .find(|m| m.role == "user" && m.text.is_some())
            .and_then(|m| m.text)
    }

    /// The assistant's text of the answer.
    pub(super) fn answer(&self) -> Option<String> {
        if let Some(json) = &self.output_messages {
            let texts: Vec<String> = parse_messages(json)
                .into_iter()
                .filter(|m| m.role == "assistant")
                .filter_map(|m| m.text)
                .collect();
            if !texts.is_empty() {
                return Some(texts.join("\n"));
            }
        }
        self.completion.clone()
    }

    /// What Raindrop reads, as the layer writes it for its LLM and tool
    /// spans; the caller keeps the span's own value where it has one.
    pub(super) fn attributes(&self, max: usize) -> Vec<Attr> {
        let mut a: Vec<Attr> = Vec::new();
        let mut push = |k: &'static str, v: AttributeValue| a.push((Cow::Borrowed(k), v));
        let kind = self.span_kind.as_deref().unwrap_or(self.kind());
        push("traceloop.span.kind", kind.into());
        match kind {
            "tool" => {
                push("ai.operationId", "ai.toolCall".into());
                if let Some(n) = &self.tool_name {
                    push("traceloop.entity.name", n.as_str().into());
                }
                if let Some(i) = &self.tool_arguments {
                    push("traceloop.entity.input", cap(i, max));
                }
                if let Some(o) = &self.tool_result {
                    push("traceloop.entity.output", cap(o, max));
                }
                return a;
            }
            "llm" => {}
            _ => return a,
        }
        let op = match self.operation.as_deref() {
            Some("embeddings") => "ai.embed",
            _ => "ai.generateText",
        };
        push("ai.operationId", op.into());
        if let Some(m) = self.model() {
            push("ai.model.id", m.into());
            push(
                "gen_ai.request.model",
                self.request_model.as_deref().unwrap_or(m).into(),
            );
            // The backend reads per-span usage only with a response model.
            push("gen_ai.response.model", m.into());
        }
        if let Some(p) = &self.provider {
            let p = p.trim().to_ascii_lowercase();
            push("ai.model.provider", p.as_str().into());
            push("gen_ai.system", p.as_str().into());
            push("gen_ai.provider.name", p.into());
        }
        self.content_attributes(&mut a, max);
        let u = self.usage;
        for (k, v) in [
            ("gen_ai.usage.input_tokens", u.input),
            ("gen_ai.usage.output_tokens", u.output),
            ("gen_ai.usage.reasoning_tokens", u.reasoning),
            ("gen_ai.usage.cache_read_input_tokens", u.cache_read),
            ("gen_ai.usage.cache_write_input_tokens", u.cache_write),
        ] {
            if let Some(v) = v.filter(|v| *v > 0) {
                a.push((Cow::Borrowed(k), AttributeValue::Int(v)));
            }
        }
        a
    }

    /// The prompt and the answer in Raindrop's forms.
    fn content_attributes(&self, a: &mut Vec<Attr>, max: usize) {
        let messages = self.messages();
        if !messages.is_empty() {
            let arr: Vec<Value> = messages
                .iter()
                .map(|m| serde_json::json!({"role": m.role, "content": m.content}))
                .collect();
            a.push((
                "ai.prompt.messages".into(),
                cap(&Value::Array(arr).to_string(), max),
            ));
            for (n, m) in messages.iter().enumerate() {
                a.push((
                    format!("gen_ai.prompt.{n}.role").into(),
                    m.role.as_str().into(),
                ));
                a.push((
                    format!("gen_ai.prompt.{n}.content").into(),
                    cap(&m.content, max),
                ));
            }
        }
        if let Some(o) = self.answer() {
            a.push(("ai.response.text".into(), cap(&o, max)));
            a.push(("gen_ai.completion.0.role".into(), "assistant".into()));
            a.push(("gen_ai.completion.0.content".into(), cap(&o, max)));
        }
    }
}

fn cap(s: &str, max: usize) -> AttributeValue {
    AttributeValue::String(truncate_text(s, max).into_owned())
}

/// The interaction's usage properties, from the sum of its calls.
pub(super) fn set_usage_properties(i: &Interaction, u: &Usage, calls: u32) {
    for (k, v) in [
        ("input_tokens", u.input),
        ("output_tokens", u.output),
        ("reasoning_tokens", u.reasoning),
        ("cache_read_input_tokens", u.cache_read),
    ] {
        if let Some(v) = v {
            i.set_property(k, v);
        }
    }
    if u.input.is_some() || u.output.is_some() {
        let total = u.input.unwrap_or(0).saturating_add(u.output.unwrap_or(0));
        i.set_property("total_tokens", total);
    }
    i.set_property("llm_calls", calls);
}

/// One chat message in Raindrop's `{role, content}` form.
struct Message {
    role: String,
    content: String,
    /// Text parts only (no tool calls, tool results or media).
    text: Option<String>,
}

/// Reads `[{role, parts: [{type, content}]}]` (the GenAI convention) or
/// `[{role, content}]` (OpenAI-style, and `ai.prompt.messages`).
fn parse_messages(json: &str) -> Vec<Message> {
    let Ok(Value::Array(items)) = serde_json::from_str::<Value>(json) else {
        return Vec::new();
    };
    items.into_iter().filter_map(message).collect()
}

fn message(m: Value) -> Option<Message> {
    let Value::Object(mut m) = m else {
        return None;
    };
    let role = match m.remove("role") {
        Some(Value::String(r)) => r,
        _ => "user".to_owned(),
    };
    if let Some(Value::Array(parts)) = m.get("parts") {
        let texts: Vec<&str> = parts
            .iter()
            .filter(|p| p.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|p| p.get("content").and_then(Value::as_str))
            .collect();
        let text = (!texts.is_empty()).then(|| texts.join("\n"));
        let content = text
            .clone()
            .unwrap_or_else(|| Value::Array(parts.clone()).to_string());
        return Some(Message {
            role,
            content,
            text,
        });
    }
    match m.remove("content") {
        Some(Value::String(s)) => Some(Message {
            role,
            text: Some(s.clone()),
            content: s,
        }),
        Some(other) if !other.is_null() => Some(Message {
            role,
            content: other.to_string(),
            text: None,
        }),
        _ => None,
    }
}

/// The system instructions as one text (a parts array, or plain text).
fn system_text(s: &str) -> String {
    match serde_json::from_str::<Value>(s) {
        Ok(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("content").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => s.to_owned(),
    }
}
