use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde_json::{Map, Value};

/// One event as the backend would see it: `events/track` bodies as they are,
/// `events/track_partial` updates merged by `event_id` (properties
/// deep-merged, the newest scalar wins, attachments appended, the update with
/// `is_pending: false` finishes it).
#[derive(Debug, Clone, Default)]
pub struct RecordedEvent {
    /// `event_id`.
    pub event_id: String,
    /// `user_id`, if sent.
    pub user_id: Option<String>,
    /// Event name.
    pub event: Option<String>,
    /// `ai_data.model`.
    pub model: Option<String>,
    /// `ai_data.input`.
    pub input: Option<String>,
    /// `ai_data.output`.
    pub output: Option<String>,
    /// `ai_data.convo_id`.
    pub convo_id: Option<String>,
    /// Merged properties (`$context` removed).
    pub properties: Map<String, Value>,
    /// Number of attachments.
    pub attachments: usize,
    /// `events/track` (false) or an interaction built from partials (true).
    pub interaction: bool,
    /// For interactions: partial requests merged into this record.
    pub partials: usize,
    /// For interactions: whether the final (`is_pending: false`) update arrived.
    pub finished: bool,
    /// The `timestamp` of the first body seen for this event (RFC 3339), if any.
    pub first_timestamp: Option<String>,
    /// The `timestamp` of the newest body seen for this event (RFC 3339), if any.
    pub last_timestamp: Option<String>,
}

/// One span from the `traces` channel.
#[derive(Debug, Clone, Default)]
pub struct RecordedSpan {
    /// base64 trace id.
    pub trace_id: String,
    /// base64 span id.
    pub span_id: String,
    /// base64 parent span id.
    pub parent_span_id: Option<String>,
    /// Span name.
    pub name: String,
    /// `traceloop.span.kind`.
    pub kind: Option<String>,
    /// `traceloop.entity.input`.
    pub input: Option<String>,
    /// `traceloop.entity.output`.
    pub output: Option<String>,
    /// `traceloop.association.properties.event_id`.
    pub event_id: Option<String>,
    /// Start, Unix ns.
    pub start_ns: u128,
    /// End, Unix ns.
    pub end_ns: u128,
    /// Error message when status code is 2.
    pub error: Option<String>,
    /// Every attribute, values flattened to JSON.
    pub attributes: BTreeMap<String, Value>,
}

impl RecordedSpan {
    /// Duration in milliseconds.
    pub fn duration_ms(&self) -> f64 {
        self.end_ns.saturating_sub(self.start_ns) as f64 / 1e6
    }

    /// The attribute `key` when it is a string (`None` when absent or of
    /// another type: `attributes[key]` for numbers and booleans).
    pub fn attr_str(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).and_then(Value::as_str)
    }

    /// Whether its name (`search.tool`) or its entity name (`search`) is `name`.
    pub fn is_named(&self, name: &str) -> bool {
        self.name == name || self.attr_str("traceloop.entity.name") == Some(name)
    }

    /// Whether `other` is this span's parent (same trace, and its span id is
    /// this span's parent id).
    pub fn is_child_of(&self, other: &RecordedSpan) -> bool {
        self.trace_id == other.trace_id
            && self.parent_span_id.as_deref() == Some(other.span_id.as_str())
    }
}

/// Everything one run sent, merged.
#[derive(Debug, Clone, Default)]
pub struct Recorded {
    /// Number of requests read.
    pub requests: usize,
    /// Requests per path.
    pub per_path: BTreeMap<String, usize>,
    /// Events in the order first seen.
    pub events: Vec<RecordedEvent>,
    /// `signals/track` items.
    pub signals: Vec<Value>,
    /// `users/identify` items.
    pub users: Vec<Value>,
    /// Spans in arrival order.
    pub spans: Vec<RecordedSpan>,
    /// `event_id` → index in `events`.
    index: HashMap<String, usize>,
    /// `events/track_partial` bodies with `is_pending: false`.
    final_updates: usize,
    /// `event_id` → indexes in `spans` and in `signals`, kept as they are
    /// pushed: a page that shows every event asks for each one's spans.
    spans_by_event: HashMap<String, Vec<usize>>,
    signals_by_event: HashMap<String, Vec<usize>>,
    /// How many of `spans` and of `signals` the maps cover. The vectors are
    /// public: after an edit by hand changed their length, lookups scan.
    indexed: (usize, usize),
}

impl Recorded {
    /// Reads a local-sink file.
    pub fn read(path: &Path) -> std::io::Result<Recorded> {
        Ok(Recorded::parse(&std::fs::read_to_string(path)?))
    }

    /// Parses sink lines (`{"path": ..., "body": ...}`); bad lines are skipped.
    pub fn parse(text: &str) -> Recorded {
        let mut r = Recorded::default();
        for line in text.lines() {
            r.push_line(line);
        }
        r
    }

    /// Adds one sink line (`{"path": ..., "body": ...}`). Returns `false`
    /// (and changes nothing) when the line is blank or not JSON.
    pub fn push_line(&mut self, line: &str) -> bool {
        if line.trim().is_empty() {
            return false;
        }
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            return false;
        };
        self.push(v["path"].as_str().unwrap_or_default(), &v["body"]);
        true
    }

    /// Adds one request: its path relative to the API root (`events/track`,
    /// `events/track_partial`, `signals/track`, `users/identify`, `traces`)
    /// and its JSON body. Unknown paths are only counted.
    pub fn push(&mut self, path: &str, body: &Value) {
        self.requests += 1;
        *self.per_path.entry(path.to_owned()).or_default() += 1;
        match path {
            "events/track" => {
                for e in body.as_array().into_iter().flatten() {
                    let mut rec = RecordedEvent::default();
                    merge_event(&mut rec, e);
                    self.index
                        .entry(rec.event_id.clone())
                        .or_insert(self.events.len());
                    self.events.push(rec);
                }
            }
            "events/track_partial" => {
                let id = body["event_id"].as_str().unwrap_or_default();
                let i = match self.index.get(id) {
                    Some(&i) => i,
                    None => {
                        self.events.push(RecordedEvent {
                            interaction: true,
                            ..Default::default()
                        });
                        let i = self.events.len() - 1;
                        self.index.insert(id.to_owned(), i);
                        i
                    }
                };
                let rec = &mut self.events[i];
                merge_event(rec, body);
                rec.partials += 1;
                if body["is_pending"] == Value::Bool(false) {
                    rec.finished = true;
                    self.final_updates += 1;
                }
            }
            "signals/track" => self
                .signals
                .extend(body.as_array().into_iter().flatten().cloned()),
            "users/identify" => self
                .users
                .extend(body.as_array().into_iter().flatten().cloned()),
            "traces" => {
                for rs in body["resourceSpans"].as_array().into_iter().flatten() {
                    for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                        for s in ss["spans"].as_array().into_iter().flatten() {
                            self.spans.push(parse_span(s));
                        }
                    }
                }
            }
            _ => {}
        }
        self.index_new();
    }

    /// Adds the spans and signals pushed since the last call to the maps
    /// (all of them again if the vectors were edited by hand).
    fn index_new(&mut self) {
        if self.indexed.0 > self.spans.len() || self.indexed.1 > self.signals.len() {
            self.spans_by_event.clear();
            self.signals_by_event.clear();
            self.indexed = (0, 0);
        }
        for (i, s) in self.spans.iter().enumerate().skip(self.indexed.0) {
            if let Some(id) = &s.event_id {
                self.spans_by_event.entry(id.clone()).or_default().push(i);
            }
        }
        for (i, s) in self.signals.iter().enumerate().skip(self.indexed.1) {
            if let Some(id) = s["event_id"].as_str() {
                self.signals_by_event
                    .entry(id.to_owned())
                    .or_default()
                    .push(i);
            }
        }
        self.indexed = (self.spans.len(), self.signals.len());
    }

    /// The event with this name (the first one).
    pub fn event(&self, name: &str) -> Option<&RecordedEvent> {
        self.events
            .iter()
            .find(|e| e.event.as_deref() == Some(name))
    }

    /// The event with this id.
    pub fn event_by_id(&self, event_id: &str) -> Option<&RecordedEvent> {
        self.index.get(event_id).map(|&i| &self.events[i])
    }

    /// Spans linked to `event_id`.
    pub fn spans_of(&self, event_id: &str) -> Vec<&RecordedSpan> {
        let linked = |s: &&RecordedSpan| s.event_id.as_deref() == Some(event_id);
        if self.indexed.0 != self.spans.len() {
            return self.spans.iter().filter(linked).collect();
        }
        let at = self
            .spans_by_event
            .get(event_id)
            .map_or(&[][..], Vec::as_slice);
        at.iter()
            .filter_map(|&i| self.spans.get(i))
            .filter(linked)
            .collect()
    }

    /// The first span whose name or entity name is `name`.
    pub fn span(&self, name: &str) -> Option<&RecordedSpan> {
        self.spans.iter().find(|s| s.is_named(name))
    }

    /// Every span whose name or entity name is `name`, in arrival order.
    pub fn spans_named(&self, name: &str) -> Vec<&RecordedSpan> {
        self.spans.iter().filter(|s| s.is_named(name)).collect()
    }

    /// Signals about `event_id`.
    pub fn signals_of(&self, event_id: &str) -> Vec<&Value> {
        let about = |s: &&Value| s["event_id"].as_str() == Some(event_id);
        if self.indexed.1 != self.signals.len() {
            return self.signals.iter().filter(about).collect();
        }
        let at = self
            .signals_by_event
            .get(event_id)
            .map_or(&[][..], Vec::as_slice);
        at.iter()
            .filter_map(|&i| self.signals.get(i))
            .filter(about)
            .collect()
    }

    /// The interactions (events built from partial updates), in arrival order.
    pub fn interactions(&self) -> Vec<&RecordedEvent> {
        self.events.iter().filter(|e| e.interaction).collect()
    }

    /// The interactions whose final (`is_pending: false`) update arrived.
    pub fn finished_interactions(&self) -> Vec<&RecordedEvent> {
        self.events
            .iter()
            .filter(|e| e.interaction && e.finished)
            .collect()
    }

    /// How many final (`is_pending: false`) updates arrived, over all
    /// interactions: one per finished interaction, unless one was finished
    /// twice (which the merged [`events`](Recorded::events) cannot show).
    pub fn final_updates(&self) -> usize {
        self.final_updates
    }

    /// The spans with no parent among the recorded ones (the roots of the
    /// span trees), by start time.
    pub fn root_spans(&self) -> Vec<&RecordedSpan> {
        span_roots(&self.spans.iter().collect::<Vec<_>>())
    }

    /// The recorded children of `parent`, by start time.
    pub fn children(&self, parent: &RecordedSpan) -> Vec<&RecordedSpan> {
        span_children(&self.spans.iter().collect::<Vec<_>>(), parent)
    }

    /// `"12 requests: events/track_partial×5, traces×4, …"`.
    pub fn summary_line(&self) -> String {
        format!(
            "{} requests: {}",
            self.requests,
            self.per_path
                .iter()
                .map(|(p, n)| format!("{p}×{n}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }

    /// Events ordered by when their first span started (events without
    /// spans first, in arrival order): partial updates arrive in any order.
    pub fn ordered_events(&self) -> Vec<&RecordedEvent> {
        let mut first_start: HashMap<&str, u128> = HashMap::new();
        for s in &self.spans {
            if let Some(id) = s.event_id.as_deref() {
                let e = first_start.entry(id).or_insert(s.start_ns);
                *e = (*e).min(s.start_ns);
            }
        }
        let mut events: Vec<&RecordedEvent> = self.events.iter().collect();
        events.sort_by_key(|e| first_start.get(e.event_id.as_str()).copied().unwrap_or(0));
        events
    }
}

fn merge_event(rec: &mut RecordedEvent, body: &Value) {
    let s = |v: &Value| v.as_str().map(str::to_owned);
    if let Some(id) = s(&body["event_id"]) {
        rec.event_id = id;
    }
    if let Some(v) = s(&body["user_id"]) {
        rec.user_id = Some(v);
    }
    if let Some(v) = s(&body["event"]) {
        rec.event = Some(v);
    }
    if let Some(ts) = s(&body["timestamp"]) {
        if rec.first_timestamp.is_none() {
            rec.first_timestamp = Some(ts.clone());
        }
        rec.last_timestamp = Some(ts);
    }
    let ai = &body["ai_data"];
    for (field, slot) in [
        ("model", &mut rec.model),
        ("input", &mut rec.input),
        ("output", &mut rec.output),
        ("convo_id", &mut rec.convo_id),
    ] {
        if let Some(v) = s(&ai[field]) {
            *slot = Some(v);
        }
    }
    if let Some(p) = body["properties"].as_object() {
        for (k, v) in p {
            if k != "$context" {
                deep_merge(&mut rec.properties, k, v);
            }
        }
    }
    rec.attachments += body["attachments"].as_array().map_or(0, Vec::len);
}

fn deep_merge(into: &mut Map<String, Value>, key: &str, value: &Value) {
    match (into.get_mut(key), value) {
        (Some(Value::Object(old)), Value::Object(new)) => {
            for (k, v) in new {
                deep_merge(old, k, v);
            }
        }
        _ => {
            into.insert(key.to_owned(), value.clone());
        }
    }
}

fn parse_span(s: &Value) -> RecordedSpan {
    let mut attributes = BTreeMap::new();
    for a in s["attributes"].as_array().into_iter().flatten() {
        let Some(k) = a["key"].as_str() else { continue };
        attributes.insert(k.to_owned(), any_value(&a["value"]));
    }
    let text = |k: &str| {
        attributes.get(k).map(|v: &Value| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    };
    let nanos = |k: &str| {
        s[k].as_str()
            .and_then(|v| v.parse::<u128>().ok())
            .or_else(|| s[k].as_u64().map(u128::from))
            .unwrap_or(0)
    };
    RecordedSpan {
        trace_id: s["traceId"].as_str().unwrap_or_default().to_owned(),
        span_id: s["spanId"].as_str().unwrap_or_default().to_owned(),
        parent_span_id: s["parentSpanId"]
            .as_str()
            .filter(|p| !p.is_empty())
            .map(str::to_owned),
        name: s["name"].as_str().unwrap_or_default().to_owned(),
        kind: text("traceloop.span.kind"),
        input: text("traceloop.entity.input"),
        output: text("traceloop.entity.output"),
        event_id: text("traceloop.association.properties.event_id"),
        start_ns: nanos("startTimeUnixNano"),
        end_ns: nanos("endTimeUnixNano"),
        error: (s["status"]["code"].as_i64() == Some(2)).then(|| {
            s["status"]["message"]
                .as_str()
                .unwrap_or("error")
                .to_owned()
        }),
        attributes,
    }
}

/// OTLP `AnyValue` → plain JSON.
fn any_value(v: &Value) -> Value {
    if let Some(s) = v.get("stringValue") {
        return s.clone();
    }
    if let Some(i) = v.get("intValue") {
        return i
            .as_str()
            .and_then(|s| s.parse::<i64>().ok())
            .map_or_else(|| i.clone(), Value::from);
    }
    if let Some(d) = v.get("doubleValue") {
        return d.clone();
    }
    if let Some(b) = v.get("boolValue") {
        return b.clone();
    }
    if let Some(a) = v.get("arrayValue") {
        return Value::Array(
            a["values"]
                .as_array()
                .into_iter()
                .flatten()
                .map(any_value)
                .collect(),
        );
    }
    v.clone()
}

/// Spans whose parent is not among `spans`, by start time.
pub fn span_roots<'a>(spans: &[&'a RecordedSpan]) -> Vec<&'a RecordedSpan> {
    let ids: std::collections::HashSet<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    let mut roots: Vec<&RecordedSpan> = spans
        .iter()
        .copied()
        .filter(|s| !s.parent_span_id.as_deref().is_some_and(|p| ids.contains(p)))
        .collect();
    roots.sort_by_key(|s| s.start_ns);
    roots
}

/// The children of `parent` among `all`, by start time: one level. For
/// whole trees use [`span_tree`](super::span_tree), which places each span
/// once whatever the parent ids say.
pub fn span_children<'a>(all: &[&'a RecordedSpan], parent: &RecordedSpan) -> Vec<&'a RecordedSpan> {
    let mut children: Vec<&RecordedSpan> = all
        .iter()
        .copied()
        .filter(|c| c.parent_span_id.as_deref() == Some(parent.span_id.as_str()))
        .collect();
    children.sort_by_key(|c| c.start_ns);
    children
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn partial_deltas_merge_like_the_backend() {
        let mut r = Recorded::default();
        r.push(
            "events/track_partial",
            &json!({"event_id": "e1", "user_id": "u", "event": "chat", "is_pending": true,
                    "timestamp": "2026-01-01T00:00:00Z",
                    "ai_data": {"input": "hi", "model": "m1"},
                    "properties": {"a": {"x": 1, "y": 1}, "$context": {"lib": "x"}},
                    "attachments": [{"type": "text", "value": "1"}]}),
        );
        r.push(
            "events/track_partial",
            &json!({"event_id": "e1", "is_pending": false, "timestamp": "2026-01-01T00:00:02Z",
                    "ai_data": {"output": "hello", "model": "m2"},
                    "properties": {"a": {"y": 2}, "b": true},
                    "attachments": [{"type": "text", "value": "2"}]}),
        );
        r.push(
            "events/track",
            &json!([{"event_id": "e2", "user_id": "v", "event": "plain"}]),
        );
        assert_eq!(r.events.len(), 2);
        let e = r.event_by_id("e1").expect("merged");
        assert!(e.interaction && e.finished);
        assert_eq!(e.partials, 2);
        assert_eq!(e.user_id.as_deref(), Some("u"));
        assert_eq!(e.model.as_deref(), Some("m2"), "newest scalar wins");
        assert_eq!(e.input.as_deref(), Some("hi"));
        assert_eq!(e.output.as_deref(), Some("hello"));
        assert_eq!(
            Value::Object(e.properties.clone()),
            json!({"a": {"x": 1, "y": 2}, "b": true}),
            "deep merge, $context dropped"
        );
        assert_eq!(e.attachments, 2, "attachments append");
        assert_eq!(e.first_timestamp.as_deref(), Some("2026-01-01T00:00:00Z"));
        assert_eq!(e.last_timestamp.as_deref(), Some("2026-01-01T00:00:02Z"));
        let plain = r.event("plain").expect("plain event");
        assert!(!plain.interaction);
        assert_eq!(r.requests, 3);
        assert_eq!(r.per_path["events/track_partial"], 2);
    }

    #[test]
    fn helpers_find_spans_and_count_final_updates() {
        let mut r = Recorded::default();
        for pending in [true, false, false] {
            r.push(
                "events/track_partial",
                &json!({"event_id": "e1", "is_pending": pending}),
            );
        }
        assert_eq!(r.finished_interactions().len(), 1);
        assert_eq!(r.final_updates(), 2, "a second final is counted");
        let span = |id: &str, parent: &str, name: &str| {
            json!({"traceId": "t", "spanId": id, "parentSpanId": parent, "name": name,
                   "status": {"code": 1},
                   "attributes": [
                       {"key": "traceloop.entity.name", "value": {"stringValue": "search"}},
                       {"key": "n", "value": {"intValue": "3"}}]})
        };
        r.push(
            "traces",
            &json!({"resourceSpans": [{"scopeSpans": [{"spans": [
                span("a", "", "chat.workflow"),
                span("b", "a", "search.tool"),
                span("c", "a", "search.tool"),
            ]}]}]}),
        );
        assert_eq!(r.spans_named("search.tool").len(), 2);
        assert_eq!(r.spans_named("search").len(), 3, "entity names match too");
        let (wf, tool) = (&r.spans[0], &r.spans[1]);
        assert!(tool.is_child_of(wf) && !wf.is_child_of(tool));
        assert_eq!(tool.attr_str("traceloop.entity.name"), Some("search"));
        assert_eq!(tool.attr_str("n"), None, "not a string");
        assert_eq!(tool.attributes["n"], 3);
    }

    #[test]
    fn lookups_by_event_id_follow_pushes_and_edits() {
        let mut r = Recorded::default();
        let span = |id: &str, event: &str| {
            json!({"traceId": "t", "spanId": id, "name": id, "attributes": [
                {"key": "traceloop.association.properties.event_id", "value": {"stringValue": event}}]})
        };
        r.push(
            "traces",
            &json!({"resourceSpans": [{"scopeSpans": [{"spans": [span("a", "e1"), span("b", "e2"), span("c", "e1")]}]}]}),
        );
        r.push(
            "signals/track",
            &json!([{"event_id": "e1", "signal_name": "x"}, {"event_id": "e2", "signal_name": "y"}]),
        );
        let names = |r: &Recorded, id: &str| -> Vec<String> {
            r.spans_of(id).iter().map(|s| s.name.clone()).collect()
        };
        assert_eq!(names(&r, "e1"), ["a", "c"]);
        assert_eq!(r.signals_of("e2").len(), 1);
        assert!(r.spans_of("nope").is_empty());
        // The vectors are public: an edit by hand is seen, before and after
        // the next push.
        r.spans.remove(0);
        assert_eq!(names(&r, "e1"), ["c"]);
        r.signals.clear();
        assert!(r.signals_of("e2").is_empty());
        r.push(
            "traces",
            &json!({"resourceSpans": [{"scopeSpans": [{"spans": [span("d", "e1")]}]}]}),
        );
        assert_eq!(names(&r, "e1"), ["c", "d"]);
    }

    #[test]
    fn bad_lines_are_skipped() {
        let r = Recorded::parse(
            "not json\n\n{\"path\":\"users/identify\",\"body\":[{\"user_id\":\"u\"}]}\n",
        );
        assert_eq!(r.requests, 1);
        assert_eq!(r.users.len(), 1);
    }
}
