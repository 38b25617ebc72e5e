//! Model calls: OpenTelemetry GenAI-convention spans (rig, genai, ...) and
//! hand-written `raindrop.kind = "llm"` spans.
//!
//! A span whose callsite declares `gen_ai.operation.name` or
//! `gen_ai.request.model` is interesting to the layer (decided once per
//! callsite from field names, like `raindrop.kind`). When it opens inside an
//! interaction it is tracked, classified from the value of
//! `gen_ai.operation.name`: `execute_tool` → tool span, `invoke_agent` /
//! `create_agent` → task span, anything else (`chat`, `generate_content`,
//! `text_completion`, `embeddings`, ...) → LLM span. Outside any interaction
//! it is ignored: it would carry no event id or user id to link it to, and
//! the backend would keep it (it has `gen_ai.*` attributes) without an event.
//!
//! The mapping depends only on field names, so it works for any library
//! that follows the conventions; names of rig-core (0.44) and genai (`otel`
//! feature) are covered, including their two names for reasoning tokens.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use raindrop_core::{truncate_text, AttributeValue, Interaction};
use serde_json::Value;
use tracing::field::{Field, Visit};

use crate::fields::{is_marked, Kind};

/// Whether a span callsite declares a GenAI field the layer keys on.
pub(crate) fn is_genai(meta: &tracing::Metadata<'_>) -> bool {
    if !meta.is_span() {
        return false;
    }
    let fields = meta.fields();
    fields.field("gen_ai.operation.name").is_some()
        || fields.field("gen_ai.request.model").is_some()
        || crate::llm_attrs::is_langfuse_span(meta)
}

/// Whether the layer looks at spans of this callsite at all.
pub(crate) fn is_tracked(meta: &tracing::Metadata<'_>) -> bool {
    is_marked(meta) || is_genai(meta)
}

/// Token counts of one call (or summed over an interaction's calls).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Usage {
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
    fn add(&mut self, o: &Usage) {
        add(&mut self.input, o.input);
        add(&mut self.output, o.output);
        add(&mut self.reasoning, o.reasoning);
        add(&mut self.cache_read, o.cache_read);
        add(&mut self.cache_write, o.cache_write);
    }
}

/// What a model-call or GenAI tool span recorded, by convention name.
///
/// Content (messages, arguments, results) is kept whatever the client's
/// `capture_content`: like content set by hand, the worker removes it before
/// anything leaves the process when the switch is off, in one place.
#[derive(Debug, Default)]
pub(crate) struct GenAi {
    operation: Option<String>,
    provider: Option<String>,
    request_model: Option<String>,
    response_model: Option<String>,
    response_id: Option<String>,
    finish_reasons: Option<String>,
    system: Option<String>,
    input_messages: Option<String>,
    /// Traceloop's indexed prompt (`gen_ai.prompt.N.role` / `.content`),
    /// read when there are no `input_messages`.
    indexed_prompt: BTreeMap<usize, (Option<String>, Option<String>)>,
    output_messages: Option<String>,
    /// A single answer text (`gen_ai.completion.0.content`,
    /// `ai.response.text`), read when there are no `output_messages`.
    completion: Option<String>,
    usage: Usage,
    time_to_first_chunk: Option<f64>,
    tool_name: Option<String>,
    tool_call_id: Option<String>,
    tool_arguments: Option<String>,
    tool_result: Option<String>,
    tool_error: Option<String>,
    /// Tools offered, provider-reported cost, a client's `error.type`.
    extra: crate::llm_attrs::CallExtras,
}

impl GenAi {
    /// The kind of an unmarked GenAI span, from its operation.
    pub(crate) fn kind(&self) -> Kind {
        match self.operation.as_deref().map(str::trim) {
            Some("execute_tool") => Kind::Tool,
            Some("invoke_agent" | "create_agent") => Kind::Task,
            _ => Kind::Llm,
        }
    }

    /// The reading of `(name, value)` pairs, as the layer reads span fields
    /// of those names (the OpenTelemetry exporter's attributes).
    #[cfg(feature = "otel-exporter")]
    pub(crate) fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, Value)>) -> GenAi {
        let mut g = GenAi::default();
        for (name, value) in pairs {
            g.set(name, value);
        }
        g
    }

    /// Whether the call's prompt and answer are what the user asked and the
    /// model said: embeddings, reranking, speech, images, tools and agents
    /// are not.
    pub(crate) fn is_chat(&self) -> bool {
        self.kind() == Kind::Llm
            && matches!(
                self.operation.as_deref().map(str::trim),
                None | Some("chat" | "generate_content" | "text_completion")
            )
    }

    fn set(&mut self, name: &str, value: Value) {
        if name.starts_with("langfuse.") {
            let text = value
                .as_str()
                .map_or_else(|| value.to_string(), str::to_owned);
            for (k, v) in crate::llm_attrs::from_langfuse(name, &text) {
                self.set(k, v);
            }
            return;
        }
        let name = crate::llm_attrs::usage_alias(name).unwrap_or(name);
        let text = || match &value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let int = || match &value {
            Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        };
        match name {
            "gen_ai.operation.name" => self.operation = Some(text()),
            "gen_ai.provider.name" | "gen_ai.system" | "ai.model.provider" => {
                self.provider = Some(text())
            }
            "gen_ai.request.model" => self.request_model = Some(text()),
            // The Vercel AI SDK's name: the convention's wins.
            "ai.model.id" => {
                self.request_model.get_or_insert_with(text);
            }
            "gen_ai.response.model" => self.response_model = Some(text()),
            "gen_ai.response.id" => self.response_id = Some(text()),
            "gen_ai.response.finish_reasons" => self.finish_reasons = Some(text()),
            "gen_ai.usage.input_tokens" | "gen_ai.usage.prompt_tokens" => self.usage.input = int(),
            "gen_ai.usage.output_tokens" | "gen_ai.usage.completion_tokens" => {
                self.usage.output = int()
            }
            "gen_ai.usage.reasoning_tokens" | "gen_ai.usage.reasoning.output_tokens" => {
                self.usage.reasoning = int()
            }
            "gen_ai.usage.cache_read.input_tokens" | "gen_ai.usage.cache_read_input_tokens" => {
                self.usage.cache_read = int()
            }
            "gen_ai.usage.cache_creation.input_tokens"
            | "gen_ai.usage.cache_write_input_tokens" => self.usage.cache_write = int(),
            "gen_ai.response.time_to_first_chunk" => self.time_to_first_chunk = value.as_f64(),
            "gen_ai.tool.name" => self.tool_name = Some(text()),
            "gen_ai.tool.call.id" => self.tool_call_id = Some(text()),
            "gen_ai.tool.error.type" => self.tool_error = Some(text()),
            "gen_ai.system_instructions" => self.system = Some(text()),
            "gen_ai.input.messages" | "ai.prompt.messages" => self.input_messages = Some(text()),
            "gen_ai.output.messages" => self.output_messages = Some(text()),
            "gen_ai.completion.0.content" | "ai.response.text" => self.completion = Some(text()),
            "gen_ai.tool.call.arguments" => self.tool_arguments = Some(text()),
            "gen_ai.tool.call.result" => self.tool_result = Some(text()),
            _ => {
                if !self.set_indexed_prompt(name, text()) {
                    self.extra.set(name, &value);
                }
            }
        }
    }

    /// Reads `gen_ai.prompt.N.role` / `.content`; `false` for other names.
    fn set_indexed_prompt(&mut self, name: &str, text: String) -> bool {
        let Some((n, field)) = name
            .strip_prefix("gen_ai.prompt.")
            .and_then(|rest| rest.split_once('.'))
        else {
            return false;
        };
        let Ok(n) = n.parse::<usize>() else {
            return false;
        };
        let slot = self.indexed_prompt.entry(n).or_default();
        match field {
            "role" => slot.0 = Some(text),
            "content" => slot.1 = Some(text),
            _ => return false,
        }
        true
    }

    /// The prompt's messages: the convention's JSON, or the indexed form.
    fn prompt_messages(&self) -> Vec<Message> {
        if let Some(json) = &self.input_messages {
            return parse_messages(json);
        }
        self.indexed_prompt
            .values()
            .filter_map(|(role, content)| {
                let content = content.clone()?;
                Some(Message {
                    role: role.clone().unwrap_or_else(|| "user".to_owned()),
                    text: Some(content.clone()),
                    content,
                })
            })
            .collect()
    }

    /// The assistant's text of the answer.
    fn answer_text(&self) -> Option<String> {
        let texts: Vec<String> = parse_messages(self.output_messages.as_deref().unwrap_or(""))
            .into_iter()
            .filter(|m| m.role == "assistant")
            .filter_map(|m| m.text)
            .collect();
        if texts.is_empty() {
            self.completion.clone()
        } else {
            Some(texts.join("\n"))
        }
    }

    fn model(&self) -> Option<&str> {
        self.response_model
            .as_deref()
            .or(self.request_model.as_deref())
    }
}

impl Visit for GenAi {
    fn record_str(&mut self, field: &Field, value: &str) {
        if crate::llm_attrs::is_model_field(field.name()) {
            self.set(field.name(), Value::String(value.to_owned()));
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        if field.name().starts_with("gen_ai.") {
            self.set(field.name(), Value::from(value));
        }
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name().starts_with("gen_ai.") {
            self.set(field.name(), Value::from(value));
        }
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        if field.name().starts_with("gen_ai.") {
            self.set(field.name(), Value::from(value));
        }
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        if field.name().starts_with("gen_ai.") {
            self.set(field.name(), Value::Bool(value));
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // rig records the tool call id with `display(..)`, which arrives here.
        if crate::llm_attrs::is_model_field(field.name()) {
            self.set(field.name(), Value::String(format!("{value:?}")));
        }
    }
}

/// The model calls of one interaction so far, to fill it when it ends.
#[derive(Debug, Default)]
pub(crate) struct Calls(Mutex<Summary>);

#[derive(Debug, Default)]
struct Summary {
    count: u32,
    model: Option<String>,
    first_input: Option<String>,
    last_output: Option<String>,
    /// The first input was handed to the interaction already (and dropped).
    input_filled: bool,
    usage: Usage,
}

impl Calls {
    pub(crate) fn new() -> Arc<Calls> {
        Arc::new(Calls::default())
    }
}

/// One chat message in Raindrop's `{role, content}` form.
struct Message {
    role: String,
    content: String,
    /// Text parts only (no tool calls, tool results or media).
    text: Option<String>,
}

/// Reads `[{role, parts: [{type, content | ..}]}]` (the GenAI convention, as
/// rig and genai write it) or `[{role, content}]` (OpenAI-style).
fn parse_messages(json: &str) -> Vec<Message> {
    let Ok(Value::Array(items)) = serde_json::from_str::<Value>(json) else {
        return Vec::new();
    };
    items
        .into_iter()
        .filter_map(|m| {
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
        })
        .collect()
}

/// The system instructions as one text (rig writes them as a parts array).
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

type Attr = (std::borrow::Cow<'static, str>, AttributeValue);

fn push(attrs: &mut Vec<Attr>, k: &'static str, v: impl Into<AttributeValue>) {
    attrs.push((k.into(), v.into()));
}

/// What a GenAI tool span (`execute_tool`) says of itself: the span's name,
/// input, output and error where none was set by hand.
#[derive(Default)]
pub(crate) struct ToolDefaults {
    pub(crate) name: Option<String>,
    pub(crate) input: Option<String>,
    pub(crate) output: Option<String>,
    pub(crate) error: Option<String>,
}

/// The failure a model client marked on its span (genai's `error.type`),
/// taken out of `g`.
pub(crate) fn call_error(g: &mut GenAi) -> Option<String> {
    g.extra.take_error()
}

/// Takes what a GenAI tool span recorded about its call out of `g`.
pub(crate) fn tool_defaults(g: &mut GenAi) -> ToolDefaults {
    ToolDefaults {
        name: g.tool_name.take(),
        input: g.tool_arguments.take(),
        output: g.tool_result.take(),
        error: g.tool_error.take(),
    }
}

/// Feeds a finished model call into its interaction's summary (what fills
/// the interaction when it ends): chat-like LLM spans only.
pub(crate) fn record_call(
    calls: &Calls,
    kind: Kind,
    g: Option<&GenAi>,
    input: Option<&str>,
    output: Option<&str>,
) {
    // Embeddings, reranking, speech, images: exported, but they are not
    // what the user asked and the model answered.
    let Some(g) = g.filter(|g| kind == Kind::Llm && g.is_chat()) else {
        return;
    };
    let mut s = calls.0.lock().unwrap_or_else(|e| e.into_inner());
    s.count += 1;
    if let Some(m) = g.model() {
        s.model = Some(m.to_owned());
    }
    s.usage.add(&g.usage);
    if s.first_input.is_none() && !s.input_filled {
        s.first_input = input.map(str::to_owned).or_else(|| {
            // Tool results come back as `user` messages with only a
            // `tool_call_response` part: not what the user said.
            g.prompt_messages()
                .into_iter()
                .rev()
                .find(|m| m.role == "user" && m.text.is_some())
                .and_then(|m| m.text)
        });
    }
    let out = output.map(str::to_owned).or_else(|| g.answer_text());
    if out.is_some() {
        s.last_output = out;
    }
}

/// Fills the interaction from its model calls, when it ends: what the user
/// set wins.
pub(crate) fn fill_interaction(calls: &Calls, i: &Interaction, has_output: bool) {
    let s = std::mem::take(&mut *calls.0.lock().unwrap_or_else(|e| e.into_inner()));
    if s.count == 0 {
        return;
    }
    let output = if has_output { None } else { s.last_output };
    raindrop_core::__private::fill_unset(i, s.model, s.first_input, output);
    set_usage_properties(i, &s.usage, s.count);
}

/// Fills a live interaction from its model calls so far, as each call is
/// exported (the OpenTelemetry exporter, which sees no interaction end):
/// the texts are handed over and dropped, the sums kept for the next call.
#[cfg(feature = "otel-exporter")]
pub(crate) fn fill_interaction_so_far(calls: &Calls, i: &Interaction) {
    let mut s = calls.0.lock().unwrap_or_else(|e| e.into_inner());
    if s.count == 0 {
        return;
    }
    let input = s.first_input.take();
    s.input_filled |= input.is_some();
    raindrop_core::__private::fill_unset(i, s.model.take(), input, s.last_output.take());
    set_usage_properties(i, &s.usage, s.count);
}

/// The interaction's usage properties, from the sum of its calls.
fn set_usage_properties(i: &Interaction, u: &Usage, count: u32) {
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
    i.set_property("llm_calls", count);
}

/// The attributes of an LLM span (wire contract 9.4 / 9.5), replacing the
/// generic `traceloop.entity.*` ones: from its GenAI fields, its `input` and
/// `output` as set by hand, and the `tools` its interaction's calls are
/// offered (`begin(tools)`, `set_tools`).
pub(crate) fn llm_attributes(
    mut g: GenAi,
    input: Option<String>,
    output: Option<String>,
    tools: Option<Arc<Vec<String>>>,
    max: usize,
) -> Vec<Attr> {
    let mut attrs = Vec::with_capacity(24);
    // The tools offered (what the interaction was given wins over the
    // call's own catalog) and the provider-reported cost.
    attrs.extend(g.extra.attributes(tools));
    model_attributes(&mut attrs, &g);
    prompt_attributes(&mut attrs, &g, input, max);
    let output = output.or_else(|| {
        let msgs = parse_messages(g.output_messages.as_deref().unwrap_or(""));
        let parts: Vec<String> = msgs.into_iter().map(|m| m.content).collect();
        (!parts.is_empty())
            .then(|| parts.join("\n"))
            .or_else(|| g.completion.take())
    });
    if let Some(o) = output {
        let o = truncate_text(&o, max).into_owned();
        push(&mut attrs, "ai.response.text", o.as_str());
        push(&mut attrs, "gen_ai.completion.0.role", "assistant");
        push(&mut attrs, "gen_ai.completion.0.content", o);
    }
    let u = g.usage;
    for (k, v) in [
        ("gen_ai.usage.input_tokens", u.input),
        ("gen_ai.usage.output_tokens", u.output),
        ("gen_ai.usage.reasoning_tokens", u.reasoning),
        ("gen_ai.usage.cache_read_input_tokens", u.cache_read),
        ("gen_ai.usage.cache_write_input_tokens", u.cache_write),
    ] {
        if let Some(v) = v.filter(|v| *v > 0) {
            push(&mut attrs, k, AttributeValue::Int(v));
        }
    }
    if let Some(t) = g.time_to_first_chunk {
        push(
            &mut attrs,
            "gen_ai.response.time_to_first_chunk",
            AttributeValue::Double(t),
        );
    }
    attrs
}

/// The operation, model, provider and response ids of an LLM span.
fn model_attributes(attrs: &mut Vec<Attr>, g: &GenAi) {
    let op = match g.operation.as_deref() {
        Some("embeddings") => "ai.embed",
        _ => "ai.generateText",
    };
    push(attrs, "ai.operationId", op);
    if let Some(o) = &g.operation {
        push(attrs, "gen_ai.operation.name", o.as_str());
    }
    if let Some(m) = g.model() {
        push(attrs, "ai.model.id", m);
        push(
            attrs,
            "gen_ai.request.model",
            g.request_model.as_deref().unwrap_or(m),
        );
        // The backend reads per-span usage only with a response model.
        push(attrs, "gen_ai.response.model", m);
    }
    if let Some(p) = &g.provider {
        let p = p.trim().to_ascii_lowercase();
        push(attrs, "ai.model.provider", p.as_str());
        push(attrs, "gen_ai.system", p.as_str());
        push(attrs, "gen_ai.provider.name", p);
    }
    if let Some(id) = &g.response_id {
        push(attrs, "gen_ai.response.id", id.as_str());
    }
    if let Some(f) = &g.finish_reasons {
        push(attrs, "gen_ai.response.finish_reasons", f.as_str());
    }
}

/// The prompt of an LLM span: a single `input`, or the messages (system
/// instructions first).
fn prompt_attributes(attrs: &mut Vec<Attr>, g: &GenAi, input: Option<String>, max: usize) {
    let cap = |s: &str| truncate_text(s, max).into_owned();
    let mut messages: Vec<(String, String)> = g
        .prompt_messages()
        .into_iter()
        .map(|m| (m.role, m.content))
        .collect();
    // rig repeats its system instructions as the first message; genai may not.
    if !messages.iter().any(|(r, _)| r == "system") {
        if let Some(sys) = g.system.as_deref().map(system_text) {
            if !sys.is_empty() {
                messages.insert(0, ("system".to_owned(), sys));
            }
        }
    }
    if let Some(i) = input {
        if messages.is_empty() {
            push(attrs, "ai.prompt", cap(&i));
        }
        messages.push(("user".to_owned(), i));
    }
    if messages.is_empty() {
        return;
    }
    let arr: Vec<Value> = messages
        .iter()
        .map(|(r, c)| serde_json::json!({"role": r, "content": c}))
        .collect();
    push(
        attrs,
        "ai.prompt.messages",
        cap(&Value::Array(arr).to_string()),
    );
    for (n, (role, content)) in messages.iter().enumerate() {
        attrs.push((
            format!("gen_ai.prompt.{n}.role").into(),
            role.as_str().into(),
        ));
        attrs.push((
            format!("gen_ai.prompt.{n}.content").into(),
            cap(content).into(),
        ));
    }
}

/// The GenAI attributes of a tool span made from `execute_tool` (`name`:
/// the span's name as exported).
pub(crate) fn tool_attributes(g: &GenAi, name: &str) -> Vec<Attr> {
    let mut attrs = Vec::with_capacity(3);
    push(&mut attrs, "gen_ai.operation.name", "execute_tool");
    push(&mut attrs, "gen_ai.tool.name", name);
    if let Some(id) = &g.tool_call_id {
        push(&mut attrs, "gen_ai.tool.call.id", id.as_str());
    }
    attrs
}

/// The GenAI state of a new span: for hand-written LLM spans and unmarked
/// GenAI spans; `None` for every other span.
pub(crate) fn new_span(
    attrs: &tracing::span::Attributes<'_>,
    f: &crate::fields::Fields,
) -> Option<Box<GenAi>> {
    match f.kind {
        Some(Kind::Llm) => {}
        Some(_) => return None,
        None if !is_genai(attrs.metadata()) => return None,
        None => {}
    }
    let mut g = GenAi::default();
    attrs.record(&mut g);
    if let Some(m) = &f.model {
        g.request_model.get_or_insert_with(|| m.clone());
    }
    Some(Box::new(g))
}

/// Records the time to the first chunk on a tracked LLM span (seconds, as
/// genai's `gen_ai.response.time_to_first_chunk`), unless it has one.
pub(crate) fn set_time_to_first_chunk(span: &tracing::Span, d: std::time::Duration) {
    crate::access::with_state(span, |s| {
        let g = s.gen_mut()?;
        g.time_to_first_chunk.get_or_insert(d.as_secs_f64());
        Some(())
    });
}

/// Sets GenAI convention fields on a tracked LLM span directly, without
/// going through span fields (which every layer of the subscriber sees: a
/// log layer would print the prompt). Names as in [`GenAi::set`].
#[cfg(feature = "llm-http")]
pub(crate) fn set_fields(span: &tracing::Span, fields: Vec<(&'static str, Value)>) {
    crate::access::with_state(span, |s| {
        let g = s.gen_mut()?;
        for (k, v) in fields {
            g.set(k, v);
        }
        Some(())
    });
}
