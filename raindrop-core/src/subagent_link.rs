//! The link between a detached sub-agent's spans and its launcher. Its own
//! module, below both: the interaction holds it (every span of the child
//! carries it) and the hand-off (`handoff`) makes it.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::span::AttributeValue;

/// The event property and span attribute a cancelled child ends with
/// (value `cancelled`).
pub const TERMINAL: &str = "raindrop.handoff.terminal";

/// What links a child's spans to its launcher: the values of the
/// `raindrop.handoff.*` attributes, and whether the child was cancelled.
#[derive(Debug)]
pub struct SubagentLink {
    parent_event_id: String,
    parent_span_id: String,
    name: String,
    trace_id: [u8; 16],
    dispatch_span_id: [u8; 8],
    cancelled: AtomicBool,
}

impl SubagentLink {
    /// The link a hand-off describes (`parent_span_id` in 16 hex digits).
    pub(crate) fn new(
        parent_event_id: String,
        parent_span_id: String,
        name: String,
        trace_id: [u8; 16],
        dispatch_span_id: [u8; 8],
    ) -> SubagentLink {
        SubagentLink {
            parent_event_id,
            parent_span_id,
            name,
            trace_id,
            dispatch_span_id,
            cancelled: AtomicBool::new(false),
        }
    }

    /// Marks the child cancelled: spans ending from now on say so.
    pub(crate) fn mark_cancelled(&self) {
        self.cancelled.store(true, Ordering::Release);
    }

    /// The launching interaction's event id.
    pub fn parent_event_id(&self) -> &str {
        &self.parent_event_id
    }

    /// The sub-agent's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The launcher's trace id.
    pub fn trace_id(&self) -> [u8; 16] {
        self.trace_id
    }

    /// The launcher's dispatch span, the parent of the child's root spans.
    pub fn dispatch_span_id(&self) -> [u8; 8] {
        self.dispatch_span_id
    }

    /// Whether the child was cancelled (spans ending from now on say so).
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    /// The attributes every span of the child carries:
    /// `raindrop.handoff.parentEventId`, `raindrop.handoff.parentSpanId`
    /// (the dispatch span, 16 hex digits), `raindrop.handoff.name`,
    /// `raindrop.agent.role=subagent`, and once cancelled
    /// `raindrop.handoff.terminal=cancelled`.
    pub fn attributes(&self) -> Vec<(Cow<'static, str>, AttributeValue)> {
        let mut a: Vec<(Cow<'static, str>, AttributeValue)> = vec![
            (
                "raindrop.handoff.parentEventId".into(),
                self.parent_event_id.as_str().into(),
            ),
            (
                "raindrop.handoff.parentSpanId".into(),
                self.parent_span_id.as_str().into(),
            ),
            ("raindrop.handoff.name".into(), self.name.as_str().into()),
            ("raindrop.agent.role".into(), "subagent".into()),
        ];
        if self.is_cancelled() {
            a.push((TERMINAL.into(), "cancelled".into()));
        }
        a
    }
}
