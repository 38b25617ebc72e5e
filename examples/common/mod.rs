//! Helpers shared by the examples and by `tests/examples.rs`: where the local
//! sink writes, and a reader that turns the sink's JSON lines back into a
//! readable tree (user → event → spans → signals).
//!
//! Nothing here is part of the SDK. It reads the same bytes the SDK would POST
//! to the Raindrop API, so it doubles as a small "what did I send?" debugger.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use raindrop::{ClientOptions, LocalSink};
use serde_json::{Map, Value};

/// Options for an example run: the environment's settings when it names a
/// write key or a sink, otherwise the local sink in a fresh file
/// `<target dir>/raindrop-<name>.jsonl`. Returns the file the sink writes to,
/// when it is a file.
pub fn options_for(name: &str) -> (ClientOptions, Option<PathBuf>) {
    let opts = ClientOptions::from_env();
    match &opts.local_sink {
        Some(LocalSink::File(p)) => {
            let p = p.clone();
            (opts, Some(p))
        }
        Some(_) => (opts, None),
        None if opts.write_key.is_some() => (opts, None),
        None => {
            let path = default_sink_path(name);
            let _ = std::fs::remove_file(&path);
            (opts.local_sink(LocalSink::File(path.clone())), Some(path))
        }
    }
}

/// `<target dir>/raindrop-<name>.jsonl`, found from the running executable
/// (`<target>/<profile>/examples/<name>`), or the temp dir.
pub fn default_sink_path(name: &str) -> PathBuf {
    let file = format!("raindrop-{name}.jsonl");
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            let dir = exe.parent()?; // <target>/<profile>/examples
            let target = dir.parent()?.parent()?; // <target>
            target.is_dir().then(|| target.join(&file))
        })
        .unwrap_or_else(|| std::env::temp_dir().join(file))
}

/// A unique file in the temp dir, for tests.
pub fn temp_sink(name: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let p = std::env::temp_dir().join(format!(
        "raindrop-example-{name}-{}-{n}.jsonl",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&p);
    p
}

/// One event as the backend would see it: `events/track` bodies as they are,
/// `events/track_partial` deltas merged by `event_id`.
#[derive(Debug, Clone, Default)]
pub struct EventRec {
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
}

/// One span from the `traces` channel.
#[derive(Debug, Clone, Default)]
pub struct SpanRec {
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

impl SpanRec {
    /// Duration in milliseconds.
    pub fn duration_ms(&self) -> f64 {
        self.end_ns.saturating_sub(self.start_ns) as f64 / 1e6
    }
}

/// Everything one run wrote to the local sink.
#[derive(Debug, Clone, Default)]
pub struct Recorded {
    /// Number of lines (requests) read.
    pub requests: usize,
    /// Requests per path.
    pub per_path: BTreeMap<String, usize>,
    /// Events in the order first seen.
    pub events: Vec<EventRec>,
    /// `signals/track` items.
    pub signals: Vec<Value>,
    /// `users/identify` items.
    pub users: Vec<Value>,
    /// Spans in arrival order.
    pub spans: Vec<SpanRec>,
}

impl Recorded {
    /// Reads a sink file.
    pub fn read(path: &Path) -> std::io::Result<Recorded> {
        Ok(Recorded::parse(&std::fs::read_to_string(path)?))
    }

    /// Parses sink lines (`{"path": ..., "body": ...}`); bad lines are skipped.
    pub fn parse(text: &str) -> Recorded {
        let mut r = Recorded::default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let Ok(v) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            let path = v["path"].as_str().unwrap_or_default().to_owned();
            let body = &v["body"];
            r.requests += 1;
            *r.per_path.entry(path.clone()).or_default() += 1;
            match path.as_str() {
                "events/track" => {
                    for e in body.as_array().into_iter().flatten() {
                        let mut rec = EventRec::default();
                        merge_event(&mut rec, e);
                        r.events.push(rec);
                    }
                }
                "events/track_partial" => {
                    let id = body["event_id"].as_str().unwrap_or_default();
                    let i = match r.events.iter().position(|e| e.event_id == id) {
                        Some(i) => i,
                        None => {
                            r.events.push(EventRec {
                                interaction: true,
                                ..Default::default()
                            });
                            r.events.len() - 1
                        }
                    };
                    let rec = &mut r.events[i];
                    merge_event(rec, body);
                    rec.partials += 1;
                    if body["is_pending"] == Value::Bool(false) {
                        rec.finished = true;
                    }
                }
                "signals/track" => r
                    .signals
                    .extend(body.as_array().into_iter().flatten().cloned()),
                "users/identify" => r
                    .users
                    .extend(body.as_array().into_iter().flatten().cloned()),
                "traces" => {
                    for rs in body["resourceSpans"].as_array().into_iter().flatten() {
                        for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                            for s in ss["spans"].as_array().into_iter().flatten() {
                                r.spans.push(parse_span(s));
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        r
    }

    /// The event with this name (the first one).
    pub fn event(&self, name: &str) -> Option<&EventRec> {
        self.events
            .iter()
            .find(|e| e.event.as_deref() == Some(name))
    }

    /// Spans linked to `event_id`.
    pub fn spans_of(&self, event_id: &str) -> Vec<&SpanRec> {
        self.spans
            .iter()
            .filter(|s| s.event_id.as_deref() == Some(event_id))
            .collect()
    }

    /// The first span whose name or entity name is `name`.
    pub fn span(&self, name: &str) -> Option<&SpanRec> {
        self.spans.iter().find(|s| {
            s.name == name
                || s.attributes
                    .get("traceloop.entity.name")
                    .and_then(Value::as_str)
                    == Some(name)
        })
    }

    /// Signals about `event_id`.
    pub fn signals_of(&self, event_id: &str) -> Vec<&Value> {
        self.signals
            .iter()
            .filter(|s| s["event_id"].as_str() == Some(event_id))
            .collect()
    }

    /// A readable tree of everything recorded.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for u in &self.users {
            let _ = writeln!(
                out,
                "user {}  traits {}",
                u["user_id"].as_str().unwrap_or("?"),
                short(&u["traits"].to_string(), 80)
            );
        }
        if !self.users.is_empty() {
            out.push('\n');
        }
        for e in self.ordered_events() {
            self.render_event(&mut out, e);
            out.push('\n');
        }
        let linked: Vec<&str> = self.events.iter().map(|e| e.event_id.as_str()).collect();
        let orphans: Vec<&SpanRec> = self
            .spans
            .iter()
            .filter(|s| !s.event_id.as_deref().is_some_and(|id| linked.contains(&id)))
            .collect();
        if !orphans.is_empty() {
            out.push_str("spans not linked to any event above\n");
            render_spans(&mut out, &orphans, "");
            out.push('\n');
        }
        let stray: Vec<&Value> = self
            .signals
            .iter()
            .filter(|s| {
                !s["event_id"]
                    .as_str()
                    .is_some_and(|id| linked.contains(&id))
            })
            .collect();
        for s in stray {
            let _ = writeln!(out, "signal {}", signal_line(s));
        }
        out
    }

    fn render_event(&self, out: &mut String, e: &EventRec) {
        let kind = if e.interaction {
            if e.finished {
                "interaction"
            } else {
                "interaction (not finished)"
            }
        } else {
            "event"
        };
        let _ = writeln!(
            out,
            "{kind} {:?}  id={}",
            e.event.as_deref().unwrap_or("?"),
            e.event_id
        );
        let mut meta = Vec::new();
        if let Some(u) = &e.user_id {
            meta.push(format!("user={u}"));
        }
        if let Some(c) = &e.convo_id {
            meta.push(format!("convo={c}"));
        }
        if let Some(m) = &e.model {
            meta.push(format!("model={m}"));
        }
        if e.attachments > 0 {
            meta.push(format!("attachments={}", e.attachments));
        }
        if e.interaction {
            meta.push(format!("partial updates={}", e.partials));
        }
        if !meta.is_empty() {
            let _ = writeln!(out, "│ {}", meta.join("  "));
        }
        if let Some(i) = &e.input {
            let _ = writeln!(out, "│ input:  {}", short(i, 90));
        }
        if let Some(o) = &e.output {
            let _ = writeln!(out, "│ output: {}", short(o, 90));
        }
        if !e.properties.is_empty() {
            let _ = writeln!(
                out,
                "│ properties: {}",
                short(&Value::Object(e.properties.clone()).to_string(), 90)
            );
        }
        let spans = self.spans_of(&e.event_id);
        let signals = self.signals_of(&e.event_id);
        let roots = roots_of(&spans);
        let total = roots.len() + signals.len();
        for (i, s) in roots.iter().enumerate() {
            render_span(out, &spans, s, "", i + 1 == total);
        }
        for (i, s) in signals.iter().enumerate() {
            let last = roots.len() + i + 1 == total;
            let _ = writeln!(
                out,
                "{} signal {}",
                if last { "└─" } else { "├─" },
                signal_line(s)
            );
        }
    }

    /// Events ordered by when their first span started (events without
    /// spans first, in arrival order): partial updates arrive in any order.
    fn ordered_events(&self) -> Vec<&EventRec> {
        let mut events: Vec<&EventRec> = self.events.iter().collect();
        events.sort_by_key(|e| {
            self.spans_of(&e.event_id)
                .iter()
                .map(|s| s.start_ns)
                .min()
                .unwrap_or(0)
        });
        events
    }
}

fn merge_event(rec: &mut EventRec, body: &Value) {
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

fn parse_span(s: &Value) -> SpanRec {
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
            .unwrap_or(0)
    };
    SpanRec {
        trace_id: s["traceId"].as_str().unwrap_or_default().to_owned(),
        span_id: s["spanId"].as_str().unwrap_or_default().to_owned(),
        parent_span_id: s["parentSpanId"].as_str().map(str::to_owned),
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
fn roots_of<'a>(spans: &[&'a SpanRec]) -> Vec<&'a SpanRec> {
    let ids: Vec<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    let mut roots: Vec<&SpanRec> = spans
        .iter()
        .copied()
        .filter(|s| {
            !s.parent_span_id
                .as_deref()
                .is_some_and(|p| ids.contains(&p))
        })
        .collect();
    roots.sort_by_key(|s| s.start_ns);
    roots
}

/// Spans as a tree: children under their parent, siblings by start time.
fn render_spans(out: &mut String, spans: &[&SpanRec], indent: &str) {
    let roots = roots_of(spans);
    for (i, s) in roots.iter().enumerate() {
        render_span(out, spans, s, indent, i + 1 == roots.len());
    }
}

fn render_span(out: &mut String, all: &[&SpanRec], s: &SpanRec, indent: &str, last: bool) {
    let branch = if last { "└─" } else { "├─" };
    let kind = s.kind.as_deref().unwrap_or("span");
    let status = match &s.error {
        Some(m) => format!("  ERROR: {}", short(m, 60)),
        None => String::new(),
    };
    let _ = writeln!(
        out,
        "{indent}{branch} {kind} {}  {:.2} ms{status}",
        s.name,
        s.duration_ms()
    );
    let child_indent = format!("{indent}{}", if last { "   " } else { "│  " });
    if let Some(i) = &s.input {
        let _ = writeln!(out, "{child_indent}  in:  {}", short(i, 80));
    }
    if let Some(o) = &s.output {
        let _ = writeln!(out, "{child_indent}  out: {}", short(o, 80));
    }
    let mut children: Vec<&SpanRec> = all
        .iter()
        .copied()
        .filter(|c| c.parent_span_id.as_deref() == Some(s.span_id.as_str()))
        .collect();
    children.sort_by_key(|c| c.start_ns);
    for (i, c) in children.iter().enumerate() {
        render_span(out, all, c, &child_indent, i + 1 == children.len());
    }
}

fn signal_line(s: &Value) -> String {
    let mut line = format!(
        "{} ({})",
        s["signal_name"].as_str().unwrap_or("?"),
        s["signal_type"].as_str().unwrap_or("default")
    );
    if let Some(sent) = s["sentiment"].as_str() {
        let _ = write!(line, " {sent}");
    }
    if let Some(c) = s["properties"]["comment"].as_str() {
        let _ = write!(line, "  comment: {}", short(c, 60));
    }
    if let Some(a) = s["properties"]["after"].as_str() {
        let _ = write!(line, "  after: {}", short(a, 60));
    }
    line
}

/// One line, at most `max` characters, quoted when it was text.
fn short(s: &str, max: usize) -> String {
    let one_line = s.replace('\n', "⏎");
    if one_line.chars().count() <= max {
        one_line
    } else {
        let cut: String = one_line.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

/// A summary line of [`raindrop::Stats`].
pub fn stats_line(stats: &raindrop::Stats) -> String {
    let drops: Vec<String> = raindrop::DropReason::ALL
        .iter()
        .filter(|r| stats.dropped(**r) > 0)
        .map(|r| format!("{}={}", r.as_str(), stats.dropped(*r)))
        .collect();
    format!(
        "queued={} delivered={} requests={} dropped={}{}",
        stats.queued,
        stats.delivered,
        stats.requests,
        stats.dropped_total(),
        if drops.is_empty() {
            String::new()
        } else {
            format!(" ({})", drops.join(", "))
        }
    )
}

/// Prints [`report_text`].
pub fn print_report(sink: Option<&Path>, stats: &raindrop::Stats) {
    print!("{}", report_text(sink, stats));
}

/// The end-of-run report: the stats, the tree of what was recorded, and
/// where the raw lines are.
pub fn report_text(sink: Option<&Path>, stats: &raindrop::Stats) -> String {
    let mut out = format!("\nraindrop stats: {}\n", stats_line(stats));
    match sink {
        Some(path) => match Recorded::read(path) {
            Ok(rec) => {
                let _ = writeln!(
                    out,
                    "\nWhat was recorded ({} requests: {}):\n",
                    rec.requests,
                    rec.per_path
                        .iter()
                        .map(|(p, n)| format!("{p}×{n}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                out.push_str(&rec.render());
                let _ = writeln!(out, "Raw JSON lines (one request each): {}", path.display());
            }
            Err(e) => {
                let _ = writeln!(out, "could not read {}: {e}", path.display());
            }
        },
        None => {
            out.push_str("(events went to the Raindrop API or to stdout/stderr, not to a file)\n")
        }
    }
    out
}
