//! What a kept request costs in memory, estimated from what is held: the
//! parsed body (kept to rebuild the merge after an eviction) and what it
//! added to the decoded [`Recorded`]. A body's bytes undercount both: a
//! JSON number of one byte is a 32-byte `Value`, an object entry a map
//! slot, and the decoder copies strings (a span's input is both an
//! attribute and a field).
//!
//! The estimate: every string's length plus [`HEAP`] for its allocation,
//! [`NODE`] bytes per JSON value, [`ENTRY`] per object entry (its key on
//! top), and the size of each decoded struct (`RecordedSpan`,
//! `RecordedEvent`) and of its index entries. The constants were set
//! against the viewer's resident memory while it holds the chat example's
//! requests, and `tests/memory.rs` checks the two stay of one size.

use serde_json::Value;

use raindrop_core::testing::{Recorded, RecordedEvent, RecordedSpan};

/// One heap allocation beyond the bytes asked for: the allocator's header
/// and rounding (a 3-byte string takes a 32-byte chunk).
const HEAP: usize = 24;
/// One JSON value: a `serde_json::Value` in a slot of an array or a map
/// that grew by doubling (its string, array or map on top).
const NODE: usize = std::mem::size_of::<Value>() * 3 / 2;
/// One object entry beyond its value: the key's `String`, the map's slot
/// and hash index, and the slack of a growing table.
const ENTRY: usize = 96;
/// One JSON object beyond its entries: a map's first allocation (a B-tree
/// leaf with room for eleven entries, or with serde_json's
/// `preserve_order` a table for a few and its hash index), what most of an
/// OTLP body's many one- and two-entry objects cost.
const OBJECT: usize = 256;
/// One index entry (an id → position map, or a position in a list).
const INDEX: usize = 48;

/// The counts of what `rec` holds, taken before a push, to see what it added.
#[derive(Clone, Copy)]
pub(crate) struct Before {
    events: usize,
    pub(crate) spans: usize,
    pub(crate) signals: usize,
    users: usize,
    /// The size of the event a partial update merges into, if it exists.
    merged_into: Option<usize>,
}

impl Before {
    pub(crate) fn of(rec: &Recorded, path: &str, body: &Value) -> Before {
        let merged_into = (path == "events/track_partial")
            .then(|| rec.event_by_id(body["event_id"].as_str().unwrap_or_default()))
            .flatten()
            .map(event_size);
        Before {
            events: rec.events.len(),
            spans: rec.spans.len(),
            signals: rec.signals.len(),
            users: rec.users.len(),
            merged_into,
        }
    }
}

/// The estimated bytes one request holds: its parsed body and what pushing
/// it added to `rec` (taken right after the push).
pub(crate) fn request_size(rec: &Recorded, before: Before, path: &str, body: &Value) -> usize {
    let mut n = slot::<(String, Value, usize)>() + text(path) + value_size(body);
    n += rec.events[before.events.min(rec.events.len())..]
        .iter()
        .map(|e| event_size(e) + INDEX + text(&e.event_id))
        .sum::<usize>();
    if let Some(old) = before.merged_into {
        let id = body["event_id"].as_str().unwrap_or_default();
        let new = rec.event_by_id(id).map_or(old, event_size);
        n += new.saturating_sub(old);
    }
    n += rec.spans[before.spans.min(rec.spans.len())..]
        .iter()
        .map(span_size)
        .sum::<usize>();
    n += rec.signals[before.signals.min(rec.signals.len())..]
        .iter()
        .map(|s| value_size(s) + INDEX)
        .sum::<usize>();
    n += rec.users[before.users.min(rec.users.len())..]
        .iter()
        .map(value_size)
        .sum::<usize>();
    n
}

/// A JSON value: [`NODE`] per value, string lengths, [`ENTRY`] plus the
/// key per object entry. Iterative: a body may nest as deep as the parser
/// allowed.
pub(crate) fn value_size(v: &Value) -> usize {
    let mut n = 0;
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        n += NODE;
        match v {
            Value::String(s) => n += text(s),
            Value::Array(a) => {
                n += HEAP;
                stack.extend(a.iter());
            }
            Value::Object(m) => {
                n += OBJECT;
                for (k, v) in m {
                    n += ENTRY + text(k);
                    stack.push(v);
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
    n
}

/// A `T` in a vector that grew by doubling: half a slot more, on average.
fn slot<T>() -> usize {
    std::mem::size_of::<T>() * 3 / 2
}

/// A string's bytes and, when it has any, its allocation.
fn text(s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        s.len() + HEAP
    }
}

fn opt_len(s: &Option<String>) -> usize {
    s.as_deref().map_or(0, text)
}

fn span_size(s: &RecordedSpan) -> usize {
    slot::<RecordedSpan>()
        + INDEX
        + text(&s.trace_id)
        + text(&s.span_id)
        + opt_len(&s.parent_span_id)
        + text(&s.name)
        + opt_len(&s.kind)
        + opt_len(&s.input)
        + opt_len(&s.output)
        + opt_len(&s.event_id)
        + opt_len(&s.error)
        + s.attributes
            .iter()
            .map(|(k, v)| ENTRY + text(k) + value_size(v))
            .sum::<usize>()
}

fn event_size(e: &RecordedEvent) -> usize {
    slot::<RecordedEvent>()
        + text(&e.event_id)
        + opt_len(&e.user_id)
        + opt_len(&e.event)
        + opt_len(&e.model)
        + opt_len(&e.input)
        + opt_len(&e.output)
        + opt_len(&e.convo_id)
        + opt_len(&e.first_timestamp)
        + opt_len(&e.last_timestamp)
        + e.properties
            .iter()
            .map(|(k, v)| ENTRY + text(k) + value_size(v))
            .sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parsed_values_cost_more_than_their_bytes() {
        let body = json!([1, 2, 3, 4, 5, 6, 7, 8]);
        let bytes = body.to_string().len();
        assert!(value_size(&body) >= 9 * NODE, "{}", value_size(&body));
        assert!(value_size(&body) > 10 * bytes);
        let obj = json!({"key": "value"});
        assert_eq!(
            value_size(&obj),
            2 * NODE + OBJECT + ENTRY + 3 + 5 + 2 * HEAP
        );
    }
}
