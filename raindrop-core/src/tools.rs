//! The tool catalog of an interaction: the tools its model calls are
//! offered, normalised to the shape the wire contract names for
//! `ai.prompt.tools` (`{"type":"function","name","description","inputSchema"}`).

use serde_json::{json, Map, Value};

/// Normalises tool definitions in the OpenAI Chat Completions
/// (`{"type":"function","function":{"name","description","parameters"}}`),
/// OpenAI Responses (`{"type":"function","name","description","parameters"}`),
/// Anthropic (`{"name","description","input_schema"}`) or Raindrop
/// (`inputSchema`) shape into JSON strings; a definition without a name is
/// left out.
pub(crate) fn catalog(tools: impl IntoIterator<Item = Value>) -> Vec<String> {
    tools.into_iter().filter_map(|t| normalise(&t)).collect()
}

fn normalise(t: &Value) -> Option<String> {
    let t = t.as_object()?;
    // OpenAI Chat Completions nests the definition under `function`.
    let def: &Map<String, Value> = match t.get("function") {
        Some(Value::Object(f)) => f,
        _ => t,
    };
    let name = def.get("name")?.as_str()?;
    let description = def.get("description").cloned().unwrap_or(Value::Null);
    let schema = def
        .get("inputSchema")
        .or_else(|| def.get("input_schema"))
        .or_else(|| def.get("parameters"))
        .cloned()
        .unwrap_or(Value::Null);
    let mut out = json!({"type": "function", "name": name});
    if !description.is_null() {
        out["description"] = description;
    }
    if !schema.is_null() {
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
}
