//! What every source of model calls is normalised to before export (wire
//! contract, model spans): the tool catalog (`ai.prompt.tools`), usage under
//! the contract's names, the provider-reported cost, and swiftide's
//! `langfuse.*` fields read as the GenAI fields the layer keys on.
//!
//! Pure functions over JSON values and field names: the sources (the GenAI
//! span mapping, the `llm_http` middleware) call them with what they read,
//! and set the GenAI fields that come back.

use std::borrow::Cow;
use std::sync::Arc;

use raindrop_core::AttributeValue;
use serde_json::{json, Map, Value};

pub(crate) type Attr = (Cow<'static, str>, AttributeValue);

/// The contract's name of the provider-reported cost of one call.
pub(crate) const PROVIDER_COST: &str = "gen_ai.usage.provider_reported_cost";
/// The tool definitions of one call (GenAI convention: a JSON array).
pub(crate) const TOOL_DEFINITIONS: &str = "gen_ai.tool.definitions";

/// Whether the layer reads a span or event field of this name (`ai.*`:
/// the Vercel AI SDK's names, as the OpenTelemetry exporter reads them too).
pub(crate) fn is_model_field(name: &str) -> bool {
    name.starts_with("gen_ai.")
        || name.starts_with("langfuse.")
        || name.starts_with("ai.")
        || name == "error.type"
}

/// The name the GenAI mapping keys on for a usage attribute spelled another
/// way (older GenAI names, OpenLLMetry, OpenInference, the Vercel AI SDK).
pub(crate) fn usage_alias(name: &str) -> Option<&'static str> {
    Some(match name {
        "gen_ai.usage.prompt_tokens"
        | "llm.usage.prompt_tokens"
        | "llm.token_count.prompt"
        | "ai.usage.promptTokens"
        | "ai.usage.inputTokens" => "gen_ai.usage.input_tokens",
        "gen_ai.usage.completion_tokens"
        | "llm.usage.completion_tokens"
        | "llm.token_count.completion"
        | "ai.usage.completionTokens"
        | "ai.usage.outputTokens" => "gen_ai.usage.output_tokens",
        "gen_ai.usage.reasoning.output_tokens"
        | "gen_ai.usage.reasoning_output_tokens"
        | "llm.token_count.completion_details.reasoning"
        | "ai.usage.reasoningTokens" => "gen_ai.usage.reasoning_tokens",
        "gen_ai.usage.cache_read.input_tokens"
        | "gen_ai.usage.cached_input_tokens"
        | "gen_ai.usage.cache_read_tokens"
        | "llm.token_count.prompt_details.cache_read"
        | "ai.usage.cachedInputTokens" => "gen_ai.usage.cache_read_input_tokens",
        "gen_ai.usage.cache_creation.input_tokens"
        | "gen_ai.usage.cache_creation_input_tokens"
        | "gen_ai.usage.cache_write.input_tokens"
        | "gen_ai.usage.cache_write_tokens"
        | "llm.token_count.prompt_details.cache_write" => "gen_ai.usage.cache_write_input_tokens",
        "gen_ai.usage.cost" | "llm.usage.cost" => PROVIDER_COST,
        _ => return None,
    })
}

/// Token counts and cost read from a provider's `usage` object.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(crate) struct BodyUsage {
    pub(crate) input: Option<i64>,
    pub(crate) output: Option<i64>,
    pub(crate) reasoning: Option<i64>,
    pub(crate) cache_read: Option<i64>,
    pub(crate) cache_write: Option<i64>,
    pub(crate) cost: Option<f64>,
}

fn int_at(u: &Value, paths: &[&str]) -> Option<i64> {
    paths
        .iter()
        .find_map(|p| u.pointer(p).and_then(Value::as_i64))
}

impl BodyUsage {
    /// Reads OpenAI Chat Completions (`prompt_tokens`, `*_details`), OpenAI
    /// Responses (`input_tokens`, `*_details`), Anthropic (`cache_*`),
    /// OpenRouter (`cost`) and swiftide (`details`) usage objects.
    pub(crate) fn of(u: &Value) -> BodyUsage {
        if !u.is_object() {
            return BodyUsage::default();
        }
        let d = u.get("details").unwrap_or(&Value::Null);
        let either = |paths: &[&str]| int_at(u, paths).or_else(|| int_at(d, paths));
        BodyUsage {
            input: int_at(u, &["/input_tokens", "/prompt_tokens"]),
            output: int_at(u, &["/output_tokens", "/completion_tokens"]),
            reasoning: either(&[
                "/output_tokens_details/reasoning_tokens",
                "/completion_tokens_details/reasoning_tokens",
                "/reasoning_tokens",
            ]),
            cache_read: either(&[
                "/cache_read_input_tokens",
                "/prompt_tokens_details/cached_tokens",
                "/input_tokens_details/cached_tokens",
            ]),
            cache_write: either(&[
                "/cache_creation_input_tokens",
                "/prompt_tokens_details/cache_write_tokens",
                "/prompt_tokens_details/cache_creation_tokens",
            ]),
            cost: u.get("cost").and_then(Value::as_f64),
        }
    }

    /// `self` with the numbers `later` has (a stream reports usage in parts).
    #[cfg_attr(not(feature = "llm-http"), allow(dead_code))]
    pub(crate) fn merge(self, later: BodyUsage) -> BodyUsage {
        BodyUsage {
            input: later.input.or(self.input),
            output: later.output.or(self.output),
            reasoning: later.reasoning.or(self.reasoning),
            cache_read: later.cache_read.or(self.cache_read),
            cache_write: later.cache_write.or(self.cache_write),
            cost: later.cost.or(self.cost),
        }
    }

    /// The GenAI fields of these numbers, by the contract's names.
    pub(crate) fn fields(&self) -> Vec<(&'static str, Value)> {
        let mut f: Vec<(&'static str, Value)> = [
            ("gen_ai.usage.input_tokens", self.input),
            ("gen_ai.usage.output_tokens", self.output),
            ("gen_ai.usage.reasoning_tokens", self.reasoning),
            ("gen_ai.usage.cache_read_input_tokens", self.cache_read),
            ("gen_ai.usage.cache_write_input_tokens", self.cache_write),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k, Value::from(v?))))
        .collect();
        if let Some(c) = self.cost {
            f.push((PROVIDER_COST, Value::from(c)));
        }
        f
    }
}

/// What a model span carries besides the fields the GenAI mapping reads
/// itself: the tools the call was offered, its reported cost, and the error
/// type a client recorded (genai's `error.type`).
#[derive(Debug, Default)]
pub(crate) struct CallExtras {
    /// `None`: not known; empty: the call had no tools.
    tools: Option<Vec<String>>,
    cost: Option<f64>,
    error: Option<String>,
}

impl CallExtras {
    /// Takes a field the GenAI mapping has no slot for; `false` if it is not
    /// one of these either.
    pub(crate) fn set(&mut self, name: &str, value: &Value) -> bool {
        match name {
            TOOL_DEFINITIONS => {
                if let Some(t) = tools_of_definitions(value) {
                    self.tools = Some(t);
                }
            }
            PROVIDER_COST => {
                self.cost = match value {
                    Value::String(s) => s.trim().parse().ok(),
                    v => v.as_f64(),
                }
            }
            "error.type" => {
                if let Some(t) = value.as_str().filter(|t| !t.is_empty()) {
                    self.error = Some(format!("error.type {t}"));
                }
            }
            _ => return false,
        }
        true
    }

    /// The error type a client recorded on the call, once.
    pub(crate) fn take_error(&mut self) -> Option<String> {
        self.error.take()
    }

    /// The export attributes: the catalog set on the interaction wins over
    /// the one the call carried (and says so with `ai.prompt.tools.source`).
    pub(crate) fn attributes(&mut self, user_tools: Option<Arc<Vec<String>>>) -> Vec<Attr> {
        let mut attrs: Vec<Attr> = Vec::new();
        match (user_tools, self.tools.take()) {
            (Some(user), _) => {
                attrs.push((
                    "ai.prompt.tools".into(),
                    AttributeValue::StringArray(user.as_ref().clone()),
                ));
                attrs.push(("ai.prompt.tools.source".into(), "interaction".into()));
            }
            (None, Some(call)) => {
                attrs.push(("ai.prompt.tools".into(), AttributeValue::StringArray(call)));
            }
            (None, None) => {}
        }
        if let Some(c) = self.cost.filter(|c| c.is_finite() && *c >= 0.0) {
            attrs.push((PROVIDER_COST.into(), AttributeValue::Double(c)));
        }
        attrs
    }
}

/// The catalog of `gen_ai.tool.definitions` (a JSON array, as text or as a
/// value) or of a request's `tools`: `None` when it is no array, or when it
/// lists tools and none has a name (recording nothing beats a wrong list).
pub(crate) fn tools_of_definitions(v: &Value) -> Option<Vec<String>> {
    let parsed;
    let v = match v {
        Value::String(s) => {
            parsed = serde_json::from_str::<Value>(s).ok()?;
            &parsed
        }
        v => v,
    };
    let list = v.as_array()?;
    let tools = raindrop_core::__private::tool_catalog(list.iter().cloned());
    (list.is_empty() || !tools.is_empty()).then_some(tools)
}

/// The tools of an OpenAI (Chat Completions, Responses) or Anthropic
/// request body, as given (an absent `tools` is an empty list: the whole
/// request was seen).
#[cfg_attr(not(feature = "llm-http"), allow(dead_code))]
pub(crate) fn request_tools(body: &Map<String, Value>) -> Value {
    match body.get("tools") {
        Some(Value::Array(t)) => Value::Array(t.clone()),
        _ => Value::Array(Vec::new()),
    }
}

/// The text of a content value: a string, or the text parts of an array
/// (`{"type":"text"|"input_text"|"output_text","text"}`, or a bare
/// `{"text"}` as in Bedrock's Converse).
pub(crate) fn text_of(content: &Value) -> Option<String> {
    match content {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => {
            let texts: Vec<&str> = parts
                .iter()
                .filter(|p| match p.get("type").and_then(Value::as_str) {
                    None => true,
                    Some(t) => matches!(t, "text" | "input_text" | "output_text"),
                })
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect();
            (!texts.is_empty()).then(|| texts.join("\n"))
        }
        _ => None,
    }
}

/// One message as `{role, content}`: content is the text when there is
/// some, otherwise the original value (tool calls, tool results, media),
/// which the layer shows but never takes as the user's input.
pub(crate) fn message(role: &str, content: &Value) -> Value {
    match text_of(content) {
        Some(t) => json!({"role": role, "content": t}),
        None => json!({"role": role, "content": content}),
    }
}

/// Whether a span callsite is a swiftide model call (`langfuse.type`).
pub(crate) fn is_langfuse_span(meta: &tracing::Metadata<'_>) -> bool {
    meta.is_span() && meta.fields().field("langfuse.type").is_some()
}

/// Whether an event callsite carries `langfuse.*` fields (swiftide records
/// a call's model, input, output and usage as a DEBUG event in its span).
pub(crate) fn is_langfuse_event(meta: &tracing::Metadata<'_>) -> bool {
    meta.is_event()
        && meta
            .fields()
            .iter()
            .any(|f| f.name().starts_with("langfuse."))
}

/// The GenAI fields a `langfuse.*` field stands for, as swiftide (0.32)
/// writes them: `type` (`GENERATION` on model-call spans), `model`,
/// `input` (the provider request as JSON), `output` (swiftide's response,
/// or the provider's, as JSON), `usage` (swiftide's `Usage` as JSON).
pub(crate) fn from_langfuse(name: &str, value: &str) -> Vec<(&'static str, Value)> {
    match name {
        "langfuse.type" => {
            let op = match value.trim().to_ascii_uppercase().as_str() {
                "GENERATION" => "chat",
                "TOOL" => "execute_tool",
                "EMBEDDING" => "embeddings",
                _ => "invoke_agent",
            };
            vec![("gen_ai.operation.name", Value::from(op))]
        }
        "langfuse.model" if !value.is_empty() => {
            vec![("gen_ai.request.model", Value::from(value))]
        }
        "langfuse.input" => langfuse_input(value),
        "langfuse.output" => langfuse_output(value),
        "langfuse.usage" => match serde_json::from_str::<Value>(value) {
            Ok(u) => BodyUsage::of(&u).fields(),
            Err(_) => Vec::new(),
        },
        _ => Vec::new(),
    }
}

fn messages_field(messages: Vec<Value>) -> Option<(&'static str, Value)> {
    (!messages.is_empty()).then(|| {
        (
            "gen_ai.input.messages",
            Value::from(Value::Array(messages).to_string()),
        )
    })
}

/// A provider request (Chat Completions, Responses, Anthropic, Bedrock
/// Converse): its messages and tools; plain text is one user message.
fn langfuse_input(value: &str) -> Vec<(&'static str, Value)> {
    let Ok(Value::Object(req)) = serde_json::from_str::<Value>(value) else {
        return messages_field(vec![json!({"role": "user", "content": value})])
            .into_iter()
            .collect();
    };
    let mut msgs = Vec::new();
    if let Some(sys) = req.get("system").or_else(|| req.get("instructions")) {
        if let Some(t) = text_of(sys) {
            msgs.push(json!({"role": "system", "content": t}));
        }
    }
    let items = req.get("messages").or_else(|| req.get("input"));
    match items {
        Some(Value::String(t)) => msgs.push(json!({"role": "user", "content": t})),
        Some(Value::Array(items)) => {
            for m in items {
                let role = m.get("role").and_then(Value::as_str).unwrap_or("tool");
                let role = if role == "developer" { "system" } else { role };
                match m.get("tool_calls").filter(|c| c.is_array()) {
                    Some(calls) => msgs.push(json!({"role": role, "content": calls})),
                    None if m.get("role").is_none() => {
                        msgs.push(json!({"role": role, "content": [m]}))
                    }
                    None => msgs.push(message(role, &m["content"])),
                }
            }
        }
        _ => {}
    }
    let mut f: Vec<(&'static str, Value)> = messages_field(msgs).into_iter().collect();
    let tools = req
        .get("tools")
        .or_else(|| req.get("toolConfig").and_then(|c| c.get("tools")))
        .cloned()
        .map(|t| match t {
            // Bedrock Converse wraps each definition in `toolSpec`, its
            // schema in `{"json": ..}`.
            Value::Array(list) => Value::Array(list.into_iter().map(unwrap_tool_spec).collect()),
            other => other,
        });
    f.push((TOOL_DEFINITIONS, tools.unwrap_or(Value::Array(Vec::new()))));
    if let Some(m) = req.get("model").filter(|m| m.is_string()) {
        f.push(("gen_ai.request.model", m.clone()));
    }
    f
}

fn unwrap_tool_spec(t: Value) -> Value {
    match t.get("toolSpec") {
        Some(Value::Object(spec)) => {
            let mut spec = spec.clone();
            if let Some(s) = spec.get("inputSchema").and_then(|s| s.get("json")).cloned() {
                spec.insert("inputSchema".into(), s);
            }
            Value::Object(spec)
        }
        _ => t,
    }
}

/// A response: swiftide's (`message`, `tool_calls`), or a provider's
/// (`choices`, `output`, `content`); plain text is the answer.
fn langfuse_output(value: &str) -> Vec<(&'static str, Value)> {
    let Ok(Value::Object(res)) = serde_json::from_str::<Value>(value) else {
        return output_field(Some(value.to_owned()), Vec::new());
    };
    let mut text: Option<String> = res.get("message").and_then(text_of);
    let mut calls: Vec<Value> = Vec::new();
    if let Some(Value::Array(c)) = res.get("tool_calls") {
        calls.extend(c.iter().cloned());
    }
    for c in res
        .get("choices")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let m = &c["message"];
        if let Some(t) = text_of(&m["content"]) {
            text.get_or_insert_with(String::new).push_str(&t);
        }
        calls.extend(m["tool_calls"].as_array().into_iter().flatten().cloned());
    }
    for item in res
        .get("output")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match item["type"].as_str() {
            Some("message") => {
                if let Some(t) = text_of(&item["content"]) {
                    text.get_or_insert_with(String::new).push_str(&t);
                }
            }
            Some("function_call") => calls.push(item.clone()),
            _ => {}
        }
    }
    if text.is_none() {
        text = res.get("content").and_then(text_of);
    }
    let mut f = output_field(text, calls);
    if res.contains_key("choices") || res.contains_key("output") {
        if let Some(m) = res.get("model").filter(|m| m.is_string()) {
            f.push(("gen_ai.response.model", m.clone()));
        }
        if let Some(u) = res.get("usage") {
            f.extend(BodyUsage::of(u).fields());
        }
    }
    f
}

fn output_field(text: Option<String>, calls: Vec<Value>) -> Vec<(&'static str, Value)> {
    let mut msgs = Vec::new();
    if let Some(t) = text.filter(|t| !t.is_empty()) {
        msgs.push(json!({"role": "assistant", "content": t}));
    }
    if !calls.is_empty() {
        // Not text: the span shows them, the interaction's output does not.
        msgs.push(json!({"role": "assistant", "content": calls}));
    }
    if msgs.is_empty() {
        return Vec::new();
    }
    vec![(
        "gen_ai.output.messages",
        Value::from(Value::Array(msgs).to_string()),
    )]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field<'a>(f: &'a [(&'static str, Value)], k: &str) -> Option<&'a Value> {
        f.iter().find(|(n, _)| *n == k).map(|(_, v)| v)
    }

    #[test]
    fn usage_objects_of_each_provider_read_alike() {
        let openai = json!({"prompt_tokens": 10, "completion_tokens": 4,
            "prompt_tokens_details": {"cached_tokens": 3},
            "completion_tokens_details": {"reasoning_tokens": 2}});
        let responses = json!({"input_tokens": 10, "output_tokens": 4,
            "input_tokens_details": {"cached_tokens": 3},
            "output_tokens_details": {"reasoning_tokens": 2}});
        let swiftide = json!({"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14,
            "details": {"prompt_tokens_details": {"cached_tokens": 3},
                        "completion_tokens_details": {"reasoning_tokens": 2}}});
        let want = BodyUsage {
            input: Some(10),
            output: Some(4),
            reasoning: Some(2),
            cache_read: Some(3),
            ..BodyUsage::default()
        };
        for u in [openai, responses, swiftide] {
            assert_eq!(BodyUsage::of(&u), want, "{u}");
        }
        let anthropic = json!({"input_tokens": 5, "output_tokens": 1,
            "cache_read_input_tokens": 7, "cache_creation_input_tokens": 8});
        let a = BodyUsage::of(&anthropic);
        assert_eq!((a.cache_read, a.cache_write), (Some(7), Some(8)));
        let openrouter = json!({"prompt_tokens": 1, "completion_tokens": 1, "cost": 0.00042});
        let o = BodyUsage::of(&openrouter);
        assert_eq!(o.cost, Some(0.00042));
        assert_eq!(field(&o.fields(), PROVIDER_COST), Some(&json!(0.00042)));
        assert_eq!(BodyUsage::of(&json!("x")), BodyUsage::default());
    }

    #[test]
    fn a_stream_usage_in_parts_merges() {
        let start = BodyUsage::of(&json!({"input_tokens": 9, "output_tokens": 1}));
        let end = BodyUsage::of(&json!({"output_tokens": 4}));
        let u = start.merge(end);
        assert_eq!((u.input, u.output), (Some(9), Some(4)));
    }

    #[test]
    fn usage_aliases_map_to_the_contract_names() {
        assert_eq!(
            usage_alias("gen_ai.usage.prompt_tokens"),
            Some("gen_ai.usage.input_tokens")
        );
        assert_eq!(
            usage_alias("gen_ai.usage.cache_creation.input_tokens"),
            Some("gen_ai.usage.cache_write_input_tokens")
        );
        assert_eq!(
            usage_alias("gen_ai.usage.reasoning.output_tokens"),
            Some("gen_ai.usage.reasoning_tokens")
        );
        assert_eq!(usage_alias("gen_ai.usage.cost"), Some(PROVIDER_COST));
        assert_eq!(usage_alias("gen_ai.usage.input_tokens"), None);
    }

    #[test]
    fn tool_definitions_rebuild_the_catalog() {
        let defs = r#"[{"type":"function","name":"weather","description":"Weather","parameters":{"type":"object"}}]"#;
        let t = tools_of_definitions(&Value::from(defs)).unwrap();
        let t: Value = serde_json::from_str(&t[0]).unwrap();
        assert_eq!(
            t,
            json!({"type": "function", "name": "weather", "description": "Weather", "inputSchema": {"type": "object"}})
        );
        assert_eq!(tools_of_definitions(&json!([])), Some(vec![]));
        assert_eq!(tools_of_definitions(&json!("not json")), None);
        assert_eq!(tools_of_definitions(&json!([{"description": "x"}])), None);
    }

    #[test]
    fn what_the_user_set_wins_over_the_call() {
        let mut e = CallExtras::default();
        assert!(e.set(TOOL_DEFINITIONS, &json!([{"name": "from_call"}])));
        let user = Arc::new(vec![r#"{"type":"function","name":"from_user"}"#.to_owned()]);
        let attrs = e.attributes(Some(user));
        let AttributeValue::StringArray(t) = &attrs[0].1 else {
            panic!("{attrs:?}")
        };
        assert!(t[0].contains("from_user"));
        assert_eq!(attrs[1].0, "ai.prompt.tools.source");

        let mut e = CallExtras::default();
        e.set(TOOL_DEFINITIONS, &json!([{"name": "from_call"}]));
        e.set(PROVIDER_COST, &json!("0.5"));
        let attrs = e.attributes(None);
        assert_eq!(attrs.len(), 2, "no source for an exact capture: {attrs:?}");
        assert_eq!(
            attrs[1],
            (PROVIDER_COST.into(), AttributeValue::Double(0.5))
        );
        assert!(!e.set("gen_ai.other", &json!(1)));
    }

    #[test]
    fn swiftide_fields_read_as_genai_fields() {
        let input = serde_json::to_string_pretty(&json!({
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "hi"}]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                {"role": "tool", "content": "42", "tool_call_id": "c"}
            ],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
        }))
        .unwrap();
        let f = from_langfuse("langfuse.input", &input);
        let msgs: Value = serde_json::from_str(
            field(&f, "gen_ai.input.messages")
                .unwrap()
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(msgs[0], json!({"role": "system", "content": "be brief"}));
        assert_eq!(msgs[1], json!({"role": "user", "content": "hi"}));
        assert!(msgs[2]["content"].is_array());
        let tools = tools_of_definitions(field(&f, TOOL_DEFINITIONS).unwrap()).unwrap();
        assert!(tools[0].contains("\"name\":\"f\""));

        let output = r#"{"id":"5f0c","message":"Paris.","tool_calls":null,"usage":null}"#;
        let f = from_langfuse("langfuse.output", output);
        let out: Value = serde_json::from_str(
            field(&f, "gen_ai.output.messages")
                .unwrap()
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(out, json!([{"role": "assistant", "content": "Paris."}]));

        let f = from_langfuse(
            "langfuse.usage",
            r#"{"prompt_tokens":7,"completion_tokens":2,"total_tokens":9}"#,
        );
        assert_eq!(field(&f, "gen_ai.usage.input_tokens"), Some(&json!(7)));
        assert_eq!(field(&f, "gen_ai.usage.output_tokens"), Some(&json!(2)));
        assert_eq!(
            from_langfuse("langfuse.type", "GENERATION"),
            [("gen_ai.operation.name", json!("chat"))]
        );
        assert!(from_langfuse("langfuse.usage", "").is_empty());
    }

    #[test]
    fn provider_responses_in_langfuse_output() {
        let body = json!({"model": "gpt-x", "choices": [{"message": {"content": "A"}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 2, "cost": 0.1}});
        let f = from_langfuse("langfuse.output", &body.to_string());
        assert_eq!(field(&f, "gen_ai.response.model"), Some(&json!("gpt-x")));
        assert_eq!(field(&f, PROVIDER_COST), Some(&json!(0.1)));
        let resp = json!({"output": [{"type": "message", "content": [{"type": "output_text", "text": "B"}]}]});
        let f = from_langfuse("langfuse.output", &resp.to_string());
        assert!(field(&f, "gen_ai.output.messages")
            .unwrap()
            .as_str()
            .unwrap()
            .contains("\"B\""));
    }
}
