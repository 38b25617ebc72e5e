//! The plain-text tree (`raindrop-view --text`, the examples' end-of-run
//! report, a test's failure message): user → event → spans → signals.

use std::fmt::Write as _;

use serde_json::Value;

use super::record::{
    span_children as children_of, span_roots as roots_of, Recorded, RecordedEvent, RecordedSpan,
};

/// Deeper span trees than this are cut (a parent cycle in bad input).
pub const MAX_DEPTH: usize = 64;

impl Recorded {
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
        let orphans = self.orphan_spans();
        if !orphans.is_empty() {
            out.push_str("spans not linked to any event above\n");
            let roots = roots_of(&orphans);
            for (i, s) in roots.iter().enumerate() {
                render_span(&mut out, &orphans, s, "", i + 1 == roots.len(), 0);
            }
            out.push('\n');
        }
        for s in self.stray_signals() {
            let _ = writeln!(out, "signal {}", signal_line(s));
        }
        out
    }

    /// Spans whose event id names no event seen.
    pub fn orphan_spans(&self) -> Vec<&RecordedSpan> {
        self.spans
            .iter()
            .filter(|s| {
                s.event_id
                    .as_deref()
                    .is_none_or(|id| self.event_by_id(id).is_none())
            })
            .collect()
    }

    /// Signals whose event id names no event seen.
    pub fn stray_signals(&self) -> Vec<&Value> {
        self.signals
            .iter()
            .filter(|s| {
                s["event_id"]
                    .as_str()
                    .is_none_or(|id| self.event_by_id(id).is_none())
            })
            .collect()
    }

    fn render_event(&self, out: &mut String, e: &RecordedEvent) {
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
            render_span(out, &spans, s, "", i + 1 == total, 0);
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
}

fn render_span(
    out: &mut String,
    all: &[&RecordedSpan],
    s: &RecordedSpan,
    indent: &str,
    last: bool,
    depth: usize,
) {
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
    if depth >= MAX_DEPTH {
        return;
    }
    let children = children_of(all, s);
    for (i, c) in children.iter().enumerate() {
        render_span(
            out,
            all,
            c,
            &child_indent,
            i + 1 == children.len(),
            depth + 1,
        );
    }
}

/// `thumbs_down (default) NEGATIVE  comment: …`.
pub fn signal_line(s: &Value) -> String {
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

/// One line, at most `max` characters.
pub fn short(s: &str, max: usize) -> String {
    let one_line = s.replace('\n', "⏎");
    if one_line.chars().count() <= max {
        one_line
    } else {
        let cut: String = one_line.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

impl Recorded {
    /// `What was recorded (N requests: …):`, a blank line, then
    /// [`Recorded::render`]: what `raindrop-view --text` prints and the
    /// examples print at the end of a run.
    pub fn report(&self) -> String {
        format!(
            "What was recorded ({}):\n\n{}",
            self.summary_line(),
            self.render()
        )
    }
}
