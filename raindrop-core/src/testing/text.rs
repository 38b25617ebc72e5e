//! The plain-text tree (`raindrop-view --text`, the examples' end-of-run
//! report, a test's failure message): user → event → spans → signals.

use std::fmt::Write as _;

use serde_json::Value;

use super::record::{Recorded, RecordedEvent, RecordedSpan};
use super::tree::{span_tree, SpanNode};

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
            let trees = span_tree(&orphans);
            for (i, t) in trees.iter().enumerate() {
                render_span(&mut out, t, "", i + 1 == trees.len());
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
        let roots = span_tree(&spans);
        let total = roots.len() + signals.len();
        for (i, t) in roots.iter().enumerate() {
            render_span(out, t, "", i + 1 == total);
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

fn render_span(out: &mut String, node: &SpanNode<'_>, indent: &str, last: bool) {
    let s = node.span;
    let branch = if last { "└─" } else { "├─" };
    let kind = s.kind.as_deref().unwrap_or("span");
    let status = match &s.error {
        Some(m) => format!("  ERROR: {}", short(m, 60)),
        None => String::new(),
    };
    let marks = match (node.cycle, node.duplicate_id) {
        (true, true) => "  [cycle] [duplicate id]",
        (true, false) => "  [cycle]",
        (false, true) => "  [duplicate id]",
        (false, false) => "",
    };
    let _ = writeln!(
        out,
        "{indent}{branch} {kind} {}  {:.2} ms{status}{marks}",
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
    for (i, c) in node.children.iter().enumerate() {
        let last = i + 1 == node.children.len() && node.hidden == 0;
        render_span(out, c, &child_indent, last);
    }
    if node.hidden > 0 {
        let _ = writeln!(
            out,
            "{child_indent}└─ … {} deeper spans not shown",
            node.hidden
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
