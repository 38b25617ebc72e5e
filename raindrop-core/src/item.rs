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
    Event(Box<EventRecord>),
    Signal(Box<SignalRecord>),
    Identify(Box<IdentifyRecord>),
    Partial(Box<InteractionUpdate>),
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

/// The AI fields of an event (`ai_data`); only the given ones are sent.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct AiData {
    /// The model name.
    pub model: Option<String>,
    /// What the user asked.
    pub input: Option<String>,
    /// What the model answered.
    pub output: Option<String>,
    /// The conversation id.
    pub convo_id: Option<Arc<str>>,
}

impl AiData {
    pub(crate) fn is_empty(&self) -> bool {
        self.model.is_none()
            && self.input.is_none()
            && self.output.is_none()
            && self.convo_id.is_none()
    }
    pub(crate) fn has_content(&self) -> bool {
        self.input.as_deref().is_some_and(|s| !s.is_empty())
            || self.output.as_deref().is_some_and(|s| !s.is_empty())
    }
    /// Newer values win, field by field.
    pub(crate) fn merge(&mut self, newer: AiData) {
        macro_rules! take {
            ($($f:ident),*) => {$( if newer.$f.is_some() { self.$f = newer.$f; } )*};
        }
        take!(model, input, output, convo_id);
    }
}

/// One `events/track` event (AI when `ai` is set, plain otherwise), as the
/// before-send hook sees it.
#[derive(Debug)]
#[non_exhaustive]
pub struct EventRecord {
    /// The event id.
    pub event_id: String,
    /// The user id.
    pub user_id: String,
    /// The event name.
    pub event: String,
    /// The AI fields, for `track_ai` events.
    pub ai: Option<AiData>,
    /// Properties.
    pub properties: Properties,
    /// When it happened.
    pub timestamp: Timestamp,
    /// Attachments.
    pub attachments: Vec<Attachment>,
}

/// One signal, as the before-send hook sees it.
#[derive(Debug)]
#[non_exhaustive]
pub struct SignalRecord {
    /// The event the signal is about.
    pub event_id: String,
    /// The signal name.
    pub signal_name: String,
    /// When it happened.
    pub timestamp: Timestamp,
    /// Properties (`comment`, `after` travel here).
    pub properties: Properties,
    /// An attachment of the event it refers to.
    pub attachment_id: Option<String>,
    /// Positive or negative.
    pub sentiment: Option<Sentiment>,
    /// Default, feedback, edit.
    pub signal_type: SignalType,
}

/// One identify call, as the before-send hook sees it.
#[derive(Debug)]
#[non_exhaustive]
pub struct IdentifyRecord {
    /// The user id.
    pub user_id: String,
    /// The user's traits.
    pub traits: Properties,
}

/// A sparse update of one interaction; the worker merges updates per event id.
///
/// The caller's [`Interaction`](crate::Interaction) fills in the identity it
/// knows (`user_id`, `event`, `ai.convo_id`) on every update, so any one
/// delivered delta is a valid event, and says whether the interaction has had
/// content so far (`had_content`), so the worker needs no memory of earlier
/// deltas.
///
/// The before-send hook sees the merged delta that is about to be sent.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct InteractionUpdate {
    /// The interaction's event id.
    pub event_id: Arc<str>,
    /// The user id, if known.
    pub user_id: Option<Arc<str>>,
    /// The event name, if known.
    pub event: Option<Arc<str>>,
    /// The AI fields changed by this delta (and the conversation id).
    pub ai: AiData,
    /// Properties changed by this delta.
    pub properties: Properties,
    /// Attachments added by this delta.
    pub attachments: Vec<Attachment>,
    /// A timestamp set at finish.
    pub timestamp: Option<Timestamp>,
    /// The final update (`is_pending: false`).
    pub is_final: bool,
    /// This or an earlier update of the interaction had input, output or an attachment.
    pub had_content: bool,
}

/// An item about to be sent, as the before-send hook sees it: change it in
/// place, or return `false` from the hook to drop it.
#[derive(Debug)]
#[non_exhaustive]
pub enum Outgoing<'a> {
    /// An `events/track` event.
    Event(&'a mut EventRecord),
    /// A merged delta of an interaction (`events/track_partial`).
    InteractionUpdate(&'a mut InteractionUpdate),
    /// A signal.
    Signal(&'a mut SignalRecord),
    /// An identify call.
    Identify(&'a mut IdentifyRecord),
    /// A span for the `traces` route.
    Span(&'a mut SpanRecord),
}
