//! What travels through the queue from callers to the worker.
//!
//! Items are validated but not serialised: truncation and JSON encoding
//! happen on the worker, off the caller's path.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::oneshot;

use crate::model::{Attachment, Sentiment, SignalType, Timestamp};
use crate::properties::Properties;
use crate::route::Route;
use crate::span::{AttributeValue, SpanRecord};

pub(crate) enum Item {
    Event(Box<EventRecord>),
    Signal(Box<SignalRecord>),
    Identify(Box<IdentifyRecord>),
    /// An interaction's updates waiting in the queue: later updates of the
    /// same interaction merge into it until the worker takes it, so an open
    /// interaction holds one queue slot, not one per update.
    Update(Arc<UpdateSlot>),
    Span(Box<SpanRecord>),
    /// Answered once every item queued before it has settled. It travels in
    /// the same FIFO queue as the data, so "before" is exact.
    Flush(Control),
    /// Like `Flush`, then the worker stops.
    Shutdown(Control),
}

/// Updates of one interaction merged while they wait in the queue.
pub(crate) struct UpdateSlot {
    /// `None` once the worker has taken it.
    pub state: std::sync::Mutex<Option<Waiting>>,
}

/// What an [`UpdateSlot`] holds.
pub(crate) struct Waiting {
    pub update: InteractionUpdate,
    /// Updates merged in, each counted `queued`.
    pub updates: u64,
    /// Bytes charged for them.
    pub cost: u64,
}

impl UpdateSlot {
    pub fn new(update: InteractionUpdate, cost: u64) -> Self {
        UpdateSlot {
            state: std::sync::Mutex::new(Some(Waiting {
                update,
                updates: 1,
                cost,
            })),
        }
    }

    /// Takes what waits here (the worker does, once).
    pub fn take(&self) -> Option<Waiting> {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// The deadline and reply channel of a flush or shutdown.
pub(crate) struct Control {
    pub deadline: Instant,
    pub reply: Reply,
}

/// How the worker answers a flush or shutdown.
pub(crate) enum Reply {
    Blocking(std::sync::mpsc::SyncSender<bool>),
    Async(oneshot::Sender<bool>),
}

impl Reply {
    pub fn blocking() -> (Reply, std::sync::mpsc::Receiver<bool>) {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        (Reply::Blocking(tx), rx)
    }
    pub fn asynchronous() -> (Reply, oneshot::Receiver<bool>) {
        let (tx, rx) = oneshot::channel();
        (Reply::Async(tx), rx)
    }
    pub(crate) fn send(self, v: bool) {
        match self {
            Reply::Blocking(tx) => {
                let _ = tx.try_send(v);
            }
            Reply::Async(tx) => {
                let _ = tx.send(v);
            }
        }
    }
}

/// Bytes charged per item on top of its text: the boxed record, its ids
/// and timestamps, the channel slot.
const ITEM_OVERHEAD: u64 = 256;

/// Bytes of a JSON value as held in memory, roughly: string and key bytes
/// plus a small fixed cost per node. Walks without recursion.
pub(crate) fn value_bytes(map: &Properties) -> u64 {
    let mut total = 0u64;
    let mut stack: Vec<&serde_json::Value> = Vec::new();
    for (k, v) in map {
        total += k.len() as u64 + 32;
        stack.push(v);
    }
    while let Some(v) = stack.pop() {
        total += 32;
        match v {
            serde_json::Value::String(s) => total += s.len() as u64,
            serde_json::Value::Array(a) => stack.extend(a.iter()),
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    total += k.len() as u64 + 32;
                    stack.push(v);
                }
            }
            _ => {}
        }
    }
    total
}

fn opt_len(s: &Option<impl AsRef<str>>) -> u64 {
    s.as_ref().map_or(0, |s| s.as_ref().len() as u64)
}

fn ai_bytes(ai: &AiData) -> u64 {
    opt_len(&ai.model) + opt_len(&ai.input) + opt_len(&ai.output) + opt_len(&ai.convo_id)
}

fn attachment_bytes(a: &[Attachment]) -> u64 {
    a.iter()
        .map(|a| {
            64 + a.value.len() as u64
                + opt_len(&a.name)
                + opt_len(&a.language)
                + opt_len(&a.attachment_id)
        })
        .sum()
}

/// What one interaction update holds in memory (see [`Item::cost`]).
pub(crate) fn update_cost(p: &InteractionUpdate) -> u64 {
    ITEM_OVERHEAD
        + p.event_id.len() as u64
        + opt_len(&p.user_id)
        + opt_len(&p.event)
        + ai_bytes(&p.ai)
        + value_bytes(&p.properties)
        + attachment_bytes(&p.attachments)
}

impl Item {
    /// What the item holds in memory, as charged against `max_buffered_bytes`:
    /// computed from the sizes the caller passed, once, at the call.
    pub fn cost(&self) -> u64 {
        ITEM_OVERHEAD
            + match self {
                Item::Event(e) => {
                    (e.event_id.len() + e.user_id.len() + e.event.len()) as u64
                        + e.ai.as_ref().map_or(0, ai_bytes)
                        + value_bytes(&e.properties)
                        + attachment_bytes(&e.attachments)
                }
                Item::Signal(s) => {
                    (s.event_id.len() + s.signal_name.len()) as u64
                        + value_bytes(&s.properties)
                        + opt_len(&s.attachment_id)
                }
                Item::Identify(i) => i.user_id.len() as u64 + value_bytes(&i.traits),
                Item::Update(slot) => {
                    let state = slot.state.lock().unwrap_or_else(|e| e.into_inner());
                    return state.as_ref().map_or(0, |w| w.cost);
                }
                Item::Span(s) => {
                    s.name.len() as u64
                        + s.attributes
                            .iter()
                            .map(|(k, v)| {
                                16 + k.len() as u64
                                    + match v {
                                        AttributeValue::String(s) => s.len() as u64,
                                        AttributeValue::StringArray(a) => {
                                            a.iter().map(|s| 24 + s.len() as u64).sum()
                                        }
                                        _ => 8,
                                    }
                            })
                            .sum::<u64>()
                }
                Item::Flush(_) | Item::Shutdown(_) => return 0,
            }
    }

    /// The route a data item travels on; `None` for control items.
    pub fn route(&self) -> Option<Route> {
        Some(match self {
            Item::Event(_) => Route::Track,
            Item::Signal(_) => Route::Signals,
            Item::Identify(_) => Route::Identify,
            Item::Update(_) => Route::Partial,
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
/// delivered update is a valid event, and says whether the interaction has had
/// content so far (`had_content`), so the worker needs no memory of earlier
/// updates.
///
/// The before-send hook sees the merged update that is about to be sent.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct InteractionUpdate {
    /// The interaction's event id.
    pub event_id: Arc<str>,
    /// The user id, if known.
    pub user_id: Option<Arc<str>>,
    /// The event name, if known.
    pub event: Option<Arc<str>>,
    /// The AI fields changed by this update (and the conversation id).
    pub ai: AiData,
    /// Properties changed by this update.
    pub properties: Properties,
    /// Attachments added by this update.
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
///
/// Every field may be changed, ids included. A changed id changes only what
/// is sent: the SDK keeps its own record of which interaction an update was
/// queued under (so merging, ordering and flushing are unaffected), and an
/// update that is retried is shown to the hook again.
#[derive(Debug)]
#[non_exhaustive]
pub enum Outgoing<'a> {
    /// An `events/track` event.
    Event(&'a mut EventRecord),
    /// A merged update of an interaction (`events/track_partial`).
    InteractionUpdate(&'a mut InteractionUpdate),
    /// A signal.
    Signal(&'a mut SignalRecord),
    /// An identify call.
    Identify(&'a mut IdentifyRecord),
    /// A span for the `traces` route.
    Span(&'a mut SpanRecord),
}
