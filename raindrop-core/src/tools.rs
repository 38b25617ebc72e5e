//! The tool catalog of an interaction: the tools its model calls are
//! offered, normalised to the shape the wire contract names for
//! `ai.prompt.tools` (`{"type":"function","name","description","inputSchema"}`).

use serde_json::{json, Map, Value};

/// Normalises tool definitions in the OpenAI Chat Completions
/// (`{"type":"function","function":{"name","description","parameters"}}`),
/// OpenAI Responses (`{"type":"function","name","description","parameters"}`),
/// Anthropic (`{"name","description","input_schema"}`) or Raindrop
/// (`inputSchema`) shape into JSON strings; a definition without a name is
/// left out. A provider's own tool (OpenAI's `{"type":"web_search_preview"}`,
/// Anthropic's `{"type":"web_search_20250305","name":"web_search"}`: a type
/// other than `function`, and no schema) becomes
/// `{"type":"provider-defined","id","name"}`. A schema given as JSON text is
/// parsed; one that does not parse is left out (the tool is kept).
pub(crate) fn catalog(tools: impl IntoIterator<Item = Value>) -> Vec<String> {
    tools.into_iter().filter_map(|t| normalise(&t)).collect()
}

fn normalise(t: &Value) -> Option<String> {
    let t = t.as_object()?;
    let kind = t.get("type").and_then(Value::as_str);
    // OpenAI Chat Completions nests the definition under `function`.
    let nested = matches!(t.get("function"), Some(Value::Object(_)));
    let def: &Map<String, Value> = match t.get("function") {
        Some(Value::Object(f)) => f,
        _ => t,
    };
    let schema = def
        .get("inputSchema")
        .or_else(|| def.get("input_schema"))
        .or_else(|| def.get("parameters"))
        .filter(|s| !s.is_null());
    let name = def
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty());
    if let Some(kind) = kind.filter(|k| !nested && !matches!(*k, "function" | "custom" | "dynamic"))
    {
        if kind == "provider-defined" {
            let mut out = json!({"type": "provider-defined", "name": name?});
            if let Some(id) = t.get("id").filter(|v| v.is_string()) {
                out["id"] = id.clone();
            }
            if let Some(args) = t.get("args").filter(|v| v.is_object()) {
                out["args"] = args.clone();
            }
            return serde_json::to_string(&out).ok();
        }
        if schema.is_none() {
            let out = json!({"type": "provider-defined", "id": kind, "name": name.unwrap_or(kind)});
            return serde_json::to_string(&out).ok();
        }
    }
    let mut out = json!({"type": "function", "name": name?});
    if let Some(d) = def.get("description").filter(|d| d.is_string()) {
        out["description"] = d.clone();
    }
    let schema = match schema {
        Some(Value::String(text)) => serde_json::from_str::<Value>(text).ok(),
        other => other.cloned(),
    };
    if let Some(schema) = schema.filter(Value::is_object) {
        out["inputSchema"] = schema;
    }
    serde_json::to_string(&out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_anthropic_and_responses_shapes_normalise_alike() {
        let expected = r#"{"description":"Web search","inputSchema":{"type":"object"},"name":"search","type":"function"}"#;
        let shapes = [
            json!({"type": "function", "function": {"name": "search", "description": "Web search", "parameters": {"type": "object"}}}),
            json!({"type": "function", "name": "search", "description": "Web search", "parameters": {"type": "object"}}),
            json!({"name": "search", "description": "Web search", "input_schema": {"type": "object"}}),
            json!({"type": "function", "name": "search", "description": "Web search", "inputSchema": {"type": "object"}}),
        ];
        for s in shapes {
            let got = catalog([s.clone()]);
            let got: Value = serde_json::from_str(&got[0]).unwrap();
            let want: Value = serde_json::from_str(expected).unwrap();
            assert_eq!(got, want, "{s}");
        }
        assert!(catalog([json!({"description": "no name"}), json!("x")]).is_empty());
    }

    #[test]
    fn provider_tools_and_schemas_given_as_text() {
        let got: Vec<Value> = catalog([
            json!({"type": "web_search_preview"}),
            json!({"type": "web_search_20250305", "name": "web_search", "max_uses": 3}),
            json!({"type": "function", "name": "f", "parameters": "{\"type\":\"object\"}"}),
            json!({"type": "function", "name": "g", "parameters": "not json"}),
        ])
        .iter()
        .map(|s| serde_json::from_str(s).unwrap())
        .collect();
        assert_eq!(
            got,
            [
                json!({"type": "provider-defined", "id": "web_search_preview", "name": "web_search_preview"}),
                json!({"type": "provider-defined", "id": "web_search_20250305", "name": "web_search"}),
                json!({"type": "function", "name": "f", "inputSchema": {"type": "object"}}),
                json!({"type": "function", "name": "g"}),
            ]
        );
    }
}
