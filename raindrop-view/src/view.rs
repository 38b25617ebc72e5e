//! The JSON the web page renders (`GET /api/data`): one object per
//! interaction or event, with its span tree and signals.

use std::collections::{HashMap, HashSet};

use serde_json::{json, Map, Value};

use raindrop_core::testing::{signal_line, span_tree, SpanNode};
use raindrop_core::testing::{Recorded, RecordedEvent, RecordedSpan};

/// Token counts found on an event's properties or its spans.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    /// Prompt / input tokens.
    pub input: Option<i64>,
    /// Completion / output tokens.
    pub output: Option<i64>,
    /// Total tokens (input + output when not given). Sums saturate at
    /// `i64::MIN`/`i64::MAX`.
    pub total: Option<i64>,
}

impl Tokens {
    fn is_empty(&self) -> bool {
        self.input.is_none() && self.output.is_none() && self.total.is_none()
    }

    /// Adds the usage named by `key` (the last dotted component:
    /// `input_tokens`, `prompt_tokens`, `output_tokens`, `completion_tokens`,
    /// `total_tokens`; e.g. `gen_ai.usage.input_tokens`).
    fn add(&mut self, key: &str, value: &Value) {
        let Some(n) = value
            .as_i64()
            .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
        else {
            return;
        };
        let slot = match key.rsplit('.').next().unwrap_or(key) {
            "input_tokens" | "prompt_tokens" => &mut self.input,
            "output_tokens" | "completion_tokens" => &mut self.output,
            "total_tokens" => &mut self.total,
            _ => return,
        };
        // Recorded numbers are input: a hostile count saturates, it does
        // not overflow.
        *slot = Some(slot.unwrap_or(0).saturating_add(n));
    }

    fn finish(mut self) -> Option<Tokens> {
        if self.total.is_none() && (self.input.is_some() || self.output.is_some()) {
            self.total = Some(
                self.input
                    .unwrap_or(0)
                    .saturating_add(self.output.unwrap_or(0)),
            );
        }
        (!self.is_empty()).then_some(self)
    }
}

/// Token usage of an event: from its properties (`usage.*`, or top-level
/// `input_tokens` etc.) when there, else summed over its spans' attributes
/// (`gen_ai.usage.*`, `llm.usage.*`).
pub fn tokens_of(e: &RecordedEvent, spans: &[&RecordedSpan]) -> Option<Tokens> {
    let mut t = Tokens::default();
    for (k, v) in &e.properties {
        match v {
            Value::Object(usage) if k == "usage" || k == "token_usage" => {
                for (k, v) in usage {
                    t.add(k, v);
                }
            }
            _ => t.add(k, v),
        }
    }
    if t.is_empty() {
        for s in spans {
            for (k, v) in &s.attributes {
                if k.contains("usage") || k.ends_with("_tokens") {
                    t.add(k, v);
                }
            }
        }
    }
    t.finish()
}

/// The whole view: `{requests, per_path, interactions, users, orphan_spans,
/// stray_signals}`. Interactions are in the order of the text tree.
pub fn to_json(rec: &Recorded) -> Value {
    let interactions: Vec<Value> = rec
        .ordered_events()
        .into_iter()
        .map(|e| event_json(rec, e))
        .collect();
    let mut v = everything_but_events(rec);
    if let Value::Object(m) = &mut v {
        m.insert("interactions".into(), interactions.into());
    }
    v
}

/// Each event's JSON text as last rendered, kept until the event changes:
/// a poll while a service sends renders what changed since the last one,
/// not everything held.
#[derive(Default)]
pub(crate) struct RenderCache {
    events: HashMap<String, String>,
    changed: HashSet<String>,
    bytes: usize,
}

impl RenderCache {
    /// The event (its record, spans or signals) changed.
    pub(crate) fn changed(&mut self, event_id: &str) {
        if self.events.contains_key(event_id) {
            self.changed.insert(event_id.to_owned());
        }
    }

    /// The bytes of text kept.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

/// [`to_json`] as text, with `extra` fields, reusing what `cache` holds for
/// events that did not change; returns it and how many events were
/// rendered afresh.
pub(crate) fn to_json_text(
    rec: &Recorded,
    cache: &mut RenderCache,
    extra: Map<String, Value>,
) -> (String, usize) {
    let mut top = everything_but_events(rec);
    if let Value::Object(m) = &mut top {
        m.extend(extra);
    }
    let mut text = top.to_string();
    text.pop(); // the closing brace
    text.push_str(",\"interactions\":[");
    let mut rendered = 0;
    for (i, e) in rec.ordered_events().into_iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        // Events/track may repeat an id: only the first with it is cached.
        let cacheable = rec
            .event_by_id(&e.event_id)
            .is_some_and(|first| std::ptr::eq(first, e));
        if cacheable && !cache.changed.contains(&e.event_id) {
            if let Some(json) = cache.events.get(&e.event_id) {
                text.push_str(json);
                continue;
            }
        }
        let json = event_json(rec, e).to_string();
        rendered += 1;
        text.push_str(&json);
        if cacheable {
            cache.bytes += json.len();
            if let Some(old) = cache.events.insert(e.event_id.clone(), json) {
                cache.bytes -= old.len();
            }
        }
    }
    cache.changed.clear();
    text.push_str("]}");
    (text, rendered)
}

/// The view without its events (they are rendered one by one).
fn everything_but_events(rec: &Recorded) -> Value {
    let orphans = rec.orphan_spans();
    let origin = orphans.iter().map(|s| s.start_ns).min().unwrap_or(0);
    object([
        ("requests", rec.requests.into()),
        ("per_path", json!(rec.per_path)),
        ("summary", rec.summary_line().into()),
        ("users", rec.users.clone().into()),
        (
            "orphan_spans",
            span_tree(&orphans)
                .iter()
                .map(|t| span_json(t, origin))
                .collect::<Vec<_>>()
                .into(),
        ),
        (
            "stray_signals",
            rec.stray_signals()
                .into_iter()
                .map(signal_json)
                .collect::<Vec<_>>()
                .into(),
        ),
    ])
}

/// An object of these fields, built directly: `json!` would serialize
/// every value again (a deep copy of each subtree, at each level).
fn object<const N: usize>(fields: [(&str, Value); N]) -> Value {
    Value::Object(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

fn text(s: &Option<String>) -> Value {
    s.clone().map_or(Value::Null, Value::String)
}

fn event_json(rec: &Recorded, e: &RecordedEvent) -> Value {
    let spans = rec.spans_of(&e.event_id);
    let start = spans.iter().map(|s| s.start_ns).min();
    let end = spans.iter().map(|s| s.end_ns).max();
    let duration_ms = match (start, end) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / 1e6),
        _ => None,
    };
    let trees = span_tree(&spans);
    let origin = start.unwrap_or(0);
    let error = e
        .properties
        .get("error")
        .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
        .or_else(|| trees.iter().find_map(|t| t.span.error.clone()));
    let status = if error.is_some() {
        "error"
    } else if e.interaction && !e.finished {
        "pending"
    } else {
        "ok"
    };
    let span_errors = spans.iter().filter(|s| s.error.is_some()).count();
    let tokens = tokens_of(e, &spans).map_or(Value::Null, |t| {
        object([
            ("input", t.input.into()),
            ("output", t.output.into()),
            ("total", t.total.into()),
        ])
    });
    let mut properties = e.properties.clone();
    properties.remove("error");
    let kind = if e.interaction {
        "interaction"
    } else {
        "event"
    };
    object([
        ("event_id", e.event_id.clone().into()),
        ("kind", kind.into()),
        ("event", text(&e.event)),
        ("user_id", text(&e.user_id)),
        ("convo_id", text(&e.convo_id)),
        ("model", text(&e.model)),
        ("input", text(&e.input)),
        ("output", text(&e.output)),
        ("properties", properties.into()),
        ("attachments", e.attachments.into()),
        ("partials", e.partials.into()),
        ("finished", (!e.interaction || e.finished).into()),
        ("status", status.into()),
        ("error", text(&error)),
        ("duration_ms", duration_ms.into()),
        ("first_timestamp", text(&e.first_timestamp)),
        ("last_timestamp", text(&e.last_timestamp)),
        ("tokens", tokens),
        ("span_count", spans.len().into()),
        ("span_errors", span_errors.into()),
        (
            "spans",
            trees
                .iter()
                .map(|t| span_json(t, origin))
                .collect::<Vec<_>>()
                .into(),
        ),
        (
            "signals",
            rec.signals_of(&e.event_id)
                .into_iter()
                .map(signal_json)
                .collect::<Vec<_>>()
                .into(),
        ),
    ])
}

/// One node of a span tree, with its children: `cycle` and `duplicate_id`
/// mark what hostile or broken parent ids made of it, `hidden` counts the
/// spans too deep to show.
fn span_json(node: &SpanNode<'_>, origin: u128) -> Value {
    let s = node.span;
    let attributes: Map<String, Value> = s
        .attributes
        .iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "traceloop.entity.input"
                    | "traceloop.entity.output"
                    | "traceloop.association.properties.event_id"
            )
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let children: Vec<Value> = node.children.iter().map(|c| span_json(c, origin)).collect();
    object([
        ("name", s.name.clone().into()),
        ("kind", s.kind.as_deref().unwrap_or("span").into()),
        ("span_id", s.span_id.clone().into()),
        (
            "offset_ms",
            (s.start_ns.saturating_sub(origin) as f64 / 1e6).into(),
        ),
        ("duration_ms", s.duration_ms().into()),
        ("input", text(&s.input)),
        ("output", text(&s.output)),
        ("error", text(&s.error)),
        ("attributes", attributes.into()),
        ("cycle", node.cycle.into()),
        ("duplicate_id", node.duplicate_id.into()),
        ("hidden", node.hidden.into()),
        ("children", children.into()),
    ])
}

fn signal_json(s: &Value) -> Value {
    object([
        ("event_id", s["event_id"].clone()),
        ("name", s["signal_name"].clone()),
        (
            "type",
            s["signal_type"].as_str().unwrap_or("default").into(),
        ),
        ("sentiment", s["sentiment"].clone()),
        ("comment", s["properties"]["comment"].clone()),
        ("after", s["properties"]["after"].clone()),
        ("timestamp", s["timestamp"].clone()),
        ("line", signal_line(s).into()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn span(attrs: Value, parent: Option<&str>, id: &str, status: i64) -> Value {
        let attributes: Vec<Value> = attrs
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| {
                let value = match v {
                    Value::String(s) => json!({"stringValue": s}),
                    Value::Number(n) => json!({"intValue": n.to_string()}),
                    other => json!({"stringValue": other.to_string()}),
                };
                json!({"key": k, "value": value})
            })
            .collect();
        json!({"traceId": "t", "spanId": id, "parentSpanId": parent, "name": format!("span-{id}"),
               "startTimeUnixNano": "1000000", "endTimeUnixNano": "3000000",
               "status": {"code": status, "message": "boom"}, "attributes": attributes})
    }

    #[test]
    fn tree_status_and_tokens() {
        let mut r = Recorded::default();
        r.push(
            "events/track_partial",
            &json!({"event_id": "e1", "event": "chat", "is_pending": false}),
        );
        let link = "traceloop.association.properties.event_id";
        r.push(
            "traces",
            &json!({"resourceSpans": [{"scopeSpans": [{"spans": [
                span(json!({link: "e1", "traceloop.span.kind": "workflow"}), None, "a", 1),
                span(json!({link: "e1", "traceloop.span.kind": "tool", "traceloop.entity.input": "2+2"}), Some("a"), "b", 2),
                span(json!({link: "e1", "gen_ai.usage.input_tokens": 7, "gen_ai.usage.output_tokens": 3}), Some("a"), "c", 1),
            ]}]}]}),
        );
        r.push(
            "signals/track",
            &json!([{"event_id": "e1", "signal_name": "thumbs_up", "sentiment": "POSITIVE"}]),
        );
        let v = to_json(&r);
        let ix = &v["interactions"][0];
        assert_eq!(ix["status"], "ok");
        assert_eq!(ix["span_count"], 3);
        assert_eq!(ix["span_errors"], 1);
        assert_eq!(ix["duration_ms"], 2.0);
        assert_eq!(ix["tokens"], json!({"input": 7, "output": 3, "total": 10}));
        let root = &ix["spans"][0];
        assert_eq!(root["kind"], "workflow");
        assert_eq!(root["children"].as_array().unwrap().len(), 2);
        assert_eq!(root["children"][0]["error"], "boom");
        assert_eq!(root["children"][0]["input"], "2+2");
        assert_eq!(ix["signals"][0]["name"], "thumbs_up");

        // An `error` property (a failed finish) makes the interaction an error.
        r.push(
            "events/track_partial",
            &json!({"event_id": "e1", "properties": {"error": "refused"}, "is_pending": false}),
        );
        let v = to_json(&r);
        assert_eq!(v["interactions"][0]["status"], "error");
        assert_eq!(v["interactions"][0]["error"], "refused");
    }

    #[test]
    fn tokens_from_properties_win() {
        let e = RecordedEvent {
            properties: json!({"usage": {"prompt_tokens": 5, "completion_tokens": 6}})
                .as_object()
                .cloned()
                .unwrap(),
            ..Default::default()
        };
        let t = tokens_of(&e, &[]).expect("tokens");
        assert_eq!((t.input, t.output, t.total), (Some(5), Some(6), Some(11)));
        assert_eq!(tokens_of(&RecordedEvent::default(), &[]), None);
    }

    #[test]
    fn hostile_token_counts_saturate() {
        let e = RecordedEvent {
            properties: json!({"usage": {"input_tokens": i64::MAX, "output_tokens": i64::MAX,
                                         "prompt_tokens": "9223372036854775807"}})
            .as_object()
            .cloned()
            .unwrap(),
            ..Default::default()
        };
        let t = tokens_of(&e, &[]).expect("tokens");
        assert_eq!(t.input, Some(i64::MAX));
        assert_eq!(t.total, Some(i64::MAX));
        let e = RecordedEvent {
            properties: json!({"input_tokens": i64::MIN, "output_tokens": -1})
                .as_object()
                .cloned()
                .unwrap(),
            ..Default::default()
        };
        assert_eq!(tokens_of(&e, &[]).unwrap().total, Some(i64::MIN));
        let span = RecordedSpan {
            attributes: [("gen_ai.usage.output_tokens".to_owned(), json!(i64::MAX))].into(),
            ..Default::default()
        };
        let t = tokens_of(&RecordedEvent::default(), &[&span, &span, &span]).unwrap();
        assert_eq!((t.output, t.total), (Some(i64::MAX), Some(i64::MAX)));
    }
}
