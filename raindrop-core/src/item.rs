//! What travels through the queue from callers to the worker.
//!
//! Items are validated but not serialised: truncation and JSON encoding
//! happen on the worker, off the caller's path.

use std::sync::Arc;
use std::time::Instant;

use crate::model::{Attachment, Properties, Sentiment, SignalType, Timestamp};
use crate::span::SpanRecord;
use crate::worker::{Reply, Route};

pub(crate) enum Item {
    Event(Box<TrackEvent>),
    Signal(Box<SignalItem>),
    Identify(Box<IdentifyItem>),
    Partial(Box<PartialPatch>),
    Span(Box<SpanRecord>),
    /// Answered once every item queued before it has settled. It travels in
    /// the same FIFO queue as the data, so "before" is exact.
    Flush(Control),
    /// Like `Flush`, then the worker stops.
    Shutdown(Control),
}

/// The deadline and reply channel of a flush or shutdown.
pub(crate) struct Control {
    pub deadline: Instant,
    pub reply: Reply,
}

impl Item {
    /// The route a data item travels on; `None` for control items.
    pub fn route(&self) -> Option<Route> {
        Some(match self {
            Item::Event(_) => Route::Track,
            Item::Signal(_) => Route::Signals,
            Item::Identify(_) => Route::Identify,
            Item::Partial(_) => Route::Partial,
            Item::Span(_) => Route::Traces,
            Item::Flush(_) | Item::Shutdown(_) => return None,
        })
    }
}

/// The AI fields of an event; only the given ones are sent.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct AiData {
    pub model: Option<String>,
    pub input: Option<String>,
    pub output: Option<String>,
    pub convo_id: Option<Arc<str>>,
}

impl AiData {
    pub fn is_empty(&self) -> bool {
        self.model.is_none()
            && self.input.is_none()
            && self.output.is_none()
            && self.convo_id.is_none()
    }
    pub fn has_content(&self) -> bool {
        self.input.as_deref().is_some_and(|s| !s.is_empty())
            || self.output.as_deref().is_some_and(|s| !s.is_empty())
    }
    /// Newer values win, field by field.
    pub fn merge(&mut self, newer: AiData) {
        macro_rules! take {
            ($($f:ident),*) => {$( if newer.$f.is_some() { self.$f = newer.$f; } )*};
        }
        take!(model, input, output, convo_id);
    }
}

/// One `events/track` event (AI when `ai` is set, plain otherwise).
pub(crate) struct TrackEvent {
    pub event_id: String,
    pub user_id: String,
    pub event: String,
    pub ai: Option<AiData>,
    pub properties: Properties,
    pub timestamp: Timestamp,
    pub attachments: Vec<Attachment>,
}

pub(crate) struct SignalItem {
    pub event_id: String,
    pub signal_name: String,
    pub timestamp: Timestamp,
    pub properties: Properties,
    pub attachment_id: Option<String>,
    pub sentiment: Option<Sentiment>,
    pub signal_type: SignalType,
}

pub(crate) struct IdentifyItem {
    pub user_id: String,
    pub traits: Properties,
}

/// A sparse update of one interaction; the worker merges updates per event id.
///
/// The caller's [`Interaction`](crate::Interaction) fills in the identity it
/// knows (`user_id`, `event`, `ai.convo_id`) on every update, so any one
/// delivered delta is a valid event, and says whether the interaction has had
/// content so far (`had_content`), so the worker needs no memory of earlier
/// deltas.
#[derive(Debug, Clone, Default)]
pub(crate) struct PartialPatch {
    pub event_id: Arc<str>,
    pub user_id: Option<Arc<str>>,
    pub event: Option<Arc<str>>,
    pub ai: AiData,
    pub properties: Properties,
    pub attachments: Vec<Attachment>,
    pub timestamp: Option<Timestamp>,
    pub is_final: bool,
    /// This or an earlier update of the interaction had input, output or an attachment.
    pub had_content: bool,
}
