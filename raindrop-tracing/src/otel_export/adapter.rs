//! OpenTelemetry spans read by the layer's GenAI mapping (`genai`): what
//! is left here is what only OpenTelemetry has, its attribute values and
//! which spans are model calls.

use std::borrow::Cow;

use opentelemetry::{Array, KeyValue, Value as OtelValue};
use serde_json::Value;

use super::Attr;
use crate::fields::Kind;
use crate::genai::{self, GenAi};

/// What one GenAI span said, and how Raindrop sees it.
pub(super) struct Call {
    /// `llm`, `tool`, `task` (or the span's own `traceloop.span.kind`).
    kind: String,
    gen: GenAi,
}

impl Call {
    /// The GenAI reading of a span; `None` when it is no model, tool or
    /// agent span of the conventions.
    pub(super) fn read(attrs: &[KeyValue]) -> Option<Call> {
        let has = |k: &str| attrs.iter().any(|kv| kv.key.as_str() == k);
        let span_kind = attrs
            .iter()
            .find(|kv| kv.key.as_str() == "traceloop.span.kind")
            .map(|kv| kv.value.as_str().into_owned());
        let genai = [
            "gen_ai.operation.name",
            "gen_ai.request.model",
            "gen_ai.response.model",
            "ai.model.id",
            "llm.request.type",
        ]
        .into_iter()
        .any(has);
        if !genai && span_kind.as_deref() != Some("llm") {
            return None;
        }
        let gen = GenAi::from_pairs(attrs.iter().map(|kv| (kv.key.as_str(), json_of(&kv.value))));
        let kind = span_kind.unwrap_or_else(|| gen.kind().span_kind().to_owned());
        Some(Call { kind, gen })
    }

    /// A model call whose prompt and answer fill its interaction.
    pub(super) fn is_chat(&self) -> bool {
        self.kind == "llm" && self.gen.is_chat()
    }

    /// What Raindrop reads, as the layer writes it for its LLM and tool
    /// spans; the caller keeps the span's own value where it has one.
    pub(super) fn attributes(self, max: usize) -> Vec<Attr> {
        let Call { kind, mut gen } = self;
        let mut a: Vec<Attr> = vec![("traceloop.span.kind".into(), kind.as_str().into())];
        match kind.as_str() {
            "llm" => a.extend(genai::llm_attributes(gen, None, None, None, max)),
            "tool" => {
                a.push(("ai.operationId".into(), "ai.toolCall".into()));
                let d = genai::tool_defaults(&mut gen);
                if let Some(n) = d.name {
                    a.extend(genai::tool_attributes(&gen, &n));
                    a.push(("traceloop.entity.name".into(), n.into()));
                }
                for (k, v) in [
                    ("traceloop.entity.input", d.input),
                    ("traceloop.entity.output", d.output),
                ] {
                    if let Some(v) = v {
                        let v = raindrop_core::truncate_text(&v, max).into_owned();
                        a.push((Cow::Borrowed(k), v.into()));
                    }
                }
            }
            _ => {}
        }
        a
    }

    /// Feeds the call into its interaction's calls (the layer's rule).
    pub(super) fn record(&self, calls: &genai::Calls) {
        genai::record_call(calls, Kind::Llm, Some(&self.gen), None, None);
    }
}

/// An OpenTelemetry attribute value as the GenAI mapping reads it.
fn json_of(v: &OtelValue) -> Value {
    match v {
        OtelValue::Bool(b) => Value::Bool(*b),
        OtelValue::I64(i) => Value::from(*i),
        OtelValue::F64(f) => Value::from(*f),
        OtelValue::Array(Array::String(items)) => {
            Value::Array(items.iter().map(|s| Value::from(s.as_str())).collect())
        }
        other => Value::String(other.as_str().into_owned()),
    }
}
