//! Reading the OTLP/JSON spans a [`Capture`] received: attribute lookups
//! by key and the LLM spans, as the facade's tests assert on them.

use serde_json::Value;

use crate::Capture;

/// The OTLP `AnyValue` of attribute `key` (`{"stringValue": ..}` etc.).
pub fn attr(span: &Value, key: &str) -> Option<Value> {
    span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| a["value"].clone())
}

/// Attribute `key` when it is a string.
pub fn attr_str(span: &Value, key: &str) -> Option<String> {
    attr(span, key).and_then(|v| v["stringValue"].as_str().map(str::to_owned))
}

/// Attribute `key` when it is an integer (OTLP/JSON sends it as a string).
pub fn attr_int(span: &Value, key: &str) -> Option<i64> {
    attr(span, key).and_then(|v| v["intValue"].as_str().and_then(|s| s.parse().ok()))
}

/// Asserts the span records the turn the model tests send: the system
/// message and the user's prompt as `gen_ai.prompt.0/1.content`, the
/// answer as `gen_ai.completion.0.content`.
#[track_caller]
pub fn assert_turn(span: &Value, system: &str, prompt: &str, answer: &str) {
    for (key, want) in [
        ("gen_ai.prompt.0.content", system),
        ("gen_ai.prompt.1.content", prompt),
        ("gen_ai.completion.0.content", answer),
    ] {
        assert_eq!(attr_str(span, key).as_deref(), Some(want), "{key}");
    }
}

/// The span's `traceloop.span.kind` (`llm`, `tool`, `workflow`, ..).
pub fn kind(span: &Value) -> Option<String> {
    attr_str(span, "traceloop.span.kind")
}

/// Every delivered span of kind `llm`.
pub fn llm_spans(cap: &Capture) -> Vec<Value> {
    cap.spans()
        .into_iter()
        .filter(|s| kind(s).as_deref() == Some("llm"))
        .collect()
}

/// Standard base64 with padding: how OTLP/JSON carries trace and span ids.
pub fn b64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            out.push(if i <= c.len() {
                T[(v >> shift) as usize & 63] as char
            } else {
                '='
            });
        }
    }
    out
}
