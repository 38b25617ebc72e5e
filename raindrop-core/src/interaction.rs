//! `Interaction`: one AI event built up over time (`events/track_partial`).

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::Value;

use crate::item::{AiData, InteractionUpdate, UpdateSlot};
use crate::model::{Attachment, Begin, Finish};
use crate::pipeline::Pipeline;
use crate::properties::{properties_of, Properties};
use crate::stats::Refusal;

/// What every handle of one interaction shares.
pub(crate) struct InteractionCore {
    pub(crate) pipeline: Arc<Pipeline>,
    pub(crate) event_id: Arc<str>,
    finished: AtomicBool,
    /// Kept by `sample_rate`; an unsampled interaction queues nothing.
    pub(crate) sampled: bool,
    /// Some update so far had input, output or an attachment: known here, by
    /// the caller, so the empty-event gate never depends on worker memory.
    had_content: AtomicBool,
    /// Which of input / output / model were set by a mutator (bits
    /// `SET_INPUT`, `SET_OUTPUT`, `SET_MODEL`); values filled in from model
    /// calls never override them.
    set_fields: AtomicU8,
    sticky: Mutex<Sticky>,
    /// The interaction's updates still waiting in the queue, which later
    /// updates merge into (see [`Pipeline::enqueue_update`]).
    waiting: Mutex<Option<Arc<UpdateSlot>>>,
    /// Set when this handle joins an interaction another service began
    /// (from a carrier): it may not change the user, and may finish only
    /// when the owner delegated it.
    pub(crate) joined: Option<Joined>,
    /// Set when this interaction is a detached sub-agent's own event: the
    /// link every span it records carries (manual spans and tool calls
    /// here; the tracing layer stamps its spans itself).
    pub(crate) subagent: std::sync::OnceLock<Arc<crate::subagent_link::SubagentLink>>,
    /// The tools its model calls are offered (`begin(tools)`, `set_tools`).
    tools: Mutex<Option<Arc<Vec<String>>>>,
}

/// What a handle joined from another service may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Joined {
    /// The owner delegated finishing the interaction (in a signed carrier).
    pub(crate) may_finish: bool,
}

/// The identity fields, sent with every update so that any one delivered
/// update is a valid event, and kept so traces can carry them.
#[derive(Default, Clone)]
struct Sticky {
    user_id: Option<Arc<str>>,
    convo_id: Option<Arc<str>>,
    event: Option<Arc<str>>,
}

/// A live interaction: one AI event whose fields arrive over time.
///
/// Every method only queues a small update and returns; the worker merges
/// updates per event id and ships them as sparse `events/track_partial`
/// updates. Handles are cheap to clone and all refer to the same event.
/// A handle from [`Interaction::noop`] accepts every call and does nothing.
///
/// ```
/// use raindrop_core::{Begin, Client, ClientOptions};
/// let client = Client::new(ClientOptions::default()).unwrap(); // disabled: no key
/// let i = client.begin(Begin::new("user-1", "agent_run").input("question?")).unwrap();
/// i.set_property("stage", "tools");
/// i.finish("answer!");
/// assert!(i.is_finished());
/// ```
#[derive(Clone)]
pub struct Interaction {
    core: Option<Arc<InteractionCore>>,
}

impl fmt::Debug for Interaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.core {
            Some(c) => f
                .debug_struct("Interaction")
                .field("event_id", &&*c.event_id)
                .field("finished", &c.finished.load(Ordering::Relaxed))
                .finish(),
            None => f.write_str("Interaction(noop)"),
        }
    }
}

impl Interaction {
    pub(crate) fn from_core(core: Arc<InteractionCore>) -> Self {
        Interaction { core: Some(core) }
    }

    pub(crate) fn new_core(
        pipeline: Arc<Pipeline>,
        event_id: Arc<str>,
        user_id: Option<String>,
        convo_id: Option<String>,
        event: Option<String>,
        joined: Option<Joined>,
    ) -> Arc<InteractionCore> {
        Arc::new(InteractionCore {
            sampled: pipeline.sampled(&event_id),
            pipeline,
            event_id,
            finished: AtomicBool::new(false),
            had_content: AtomicBool::new(false),
            set_fields: AtomicU8::new(0),
            waiting: Mutex::new(None),
            sticky: Mutex::new(Sticky {
                user_id: user_id.map(Into::into),
                convo_id: convo_id.map(Into::into),
                event: event.map(Into::into),
            }),
            joined,
            subagent: std::sync::OnceLock::new(),
            tools: Mutex::new(None),
        })
    }

    /// The pipeline of a live handle (for the sub-agent hand-off).
    pub(crate) fn pipeline(&self) -> Option<&Arc<Pipeline>> {
        self.core.as_deref().map(|c| &c.pipeline)
    }

    /// A handle whose calls do nothing: what code outside any interaction gets.
    pub fn noop() -> Self {
        Interaction { core: None }
    }

    /// Whether this is a no-op handle.
    pub fn is_noop(&self) -> bool {
        self.core.is_none()
    }

    /// The event id; `None` for a no-op handle. Send it to your front end so
    /// signals (thumbs up, feedback) can point at this event.
    pub fn event_id(&self) -> Option<&str> {
        self.core.as_deref().map(|c| &*c.event_id)
    }

    /// Whether `sample_rate` keeps this interaction (false for a no-op
    /// handle). An unsampled handle keeps its event id, so signals can still
    /// name it, but records nothing; integrations can skip capture for it.
    pub fn is_sampled(&self) -> bool {
        self.core.as_deref().is_some_and(|c| c.sampled)
    }

    /// Whether `finish` has run (always false for a no-op handle).
    pub fn is_finished(&self) -> bool {
        self.core
            .as_deref()
            .is_some_and(|c| c.finished.load(Ordering::Acquire))
    }

    /// The user id, if known.
    pub fn user_id(&self) -> Option<String> {
        self.sticky(|s| s.user_id.as_deref().map(str::to_owned))
    }

    /// The conversation id, if known.
    pub fn convo_id(&self) -> Option<String> {
        self.sticky(|s| s.convo_id.as_deref().map(str::to_owned))
    }

    /// The event name, if known (unknown for a handle resumed by id).
    pub fn event_name(&self) -> Option<String> {
        self.sticky(|s| s.event.as_deref().map(str::to_owned))
    }

    fn sticky<T>(&self, f: impl FnOnce(&Sticky) -> Option<T>) -> Option<T> {
        let core = self.core.as_deref()?;
        let guard = core.sticky.lock().unwrap_or_else(|e| e.into_inner());
        f(&guard)
    }

    fn set_sticky(&self, f: impl FnOnce(&mut Sticky)) {
        if let Some(core) = self.core.as_deref() {
            f(&mut core.sticky.lock().unwrap_or_else(|e| e.into_inner()));
        }
    }

    /// Queues one update unless the handle is a no-op or already finished.
    pub(crate) fn send(&self, fill: impl FnOnce(&mut InteractionUpdate)) {
        let Some(core) = self.core.as_deref().filter(|c| c.sampled) else {
            return;
        };
        if core.finished.load(Ordering::Acquire) {
            tracing::debug!(target: "raindrop", event_id = &*core.event_id, "update after finish ignored");
            return;
        }
        let mut update = InteractionUpdate {
            event_id: core.event_id.clone(),
            ..Default::default()
        };
        fill(&mut update);
        core.mark_set(&update.ai.input, &update.ai.output, &update.ai.model);
        core.stamp(&mut update);
        // Refusals are counted in stats; the caller of a mutator is never bothered.
        core.pipeline.enqueue_update(&core.waiting, update);
    }

    /// Not a public API: the tracing layer's GenAI capture uses
    /// `raindrop_core::__private::fill_unset`.
    #[doc(hidden)]
    #[deprecated(note = "not a public API: use raindrop_core::__private::fill_unset")]
    pub fn fill_unset(&self, model: Option<String>, input: Option<String>, output: Option<String>) {
        self.fill_from_model_calls(model, input, output)
    }

    /// Sets model, input and output from what the interaction's model calls
    /// said, each only when no mutator (or begin) has set it: what the user
    /// sets by hand always wins.
    pub(crate) fn fill_from_model_calls(
        &self,
        model: Option<String>,
        input: Option<String>,
        output: Option<String>,
    ) {
        let Some(core) = self.core.as_deref() else {
            return;
        };
        let set = core.set_fields.load(Ordering::Acquire);
        let model = model.filter(|_| set & SET_MODEL == 0);
        let input = input.filter(|_| set & SET_INPUT == 0);
        let output = output.filter(|_| set & SET_OUTPUT == 0);
        if model.is_none() && input.is_none() && output.is_none() {
            return;
        }
        let Some(core) = self.core.as_deref().filter(|c| c.sampled) else {
            return;
        };
        if core.finished.load(Ordering::Acquire) {
            return;
        }
        let mut update = InteractionUpdate {
            event_id: core.event_id.clone(),
            ..Default::default()
        };
        update.ai.model = model;
        update.ai.input = input;
        update.ai.output = output;
        core.stamp(&mut update);
        core.pipeline.enqueue_update(&core.waiting, update);
    }

    /// Sets what the user asked.
    pub fn set_input(&self, input: impl Into<String>) {
        let input = input.into();
        self.send(|p| p.ai.input = Some(input));
    }

    /// Sets what the model answered so far (the final answer goes to [`finish`](Self::finish)).
    pub fn set_output(&self, output: impl Into<String>) {
        let output = output.into();
        self.send(|p| p.ai.output = Some(output));
    }

    /// Sets the model name.
    pub fn set_model(&self, model: impl Into<String>) {
        let model = model.into();
        self.send(|p| p.ai.model = Some(model));
    }

    /// Sets the conversation id.
    pub fn set_convo_id(&self, convo_id: impl Into<String>) {
        let convo_id: Arc<str> = convo_id.into().into();
        self.set_sticky(|s| s.convo_id = Some(convo_id));
        self.send(|_| {});
    }

    /// Sets the user id, for interactions whose user is only known later.
    pub fn set_user_id(&self, user_id: impl Into<String>) {
        let user_id = user_id.into();
        if user_id.trim().is_empty() || !self.may_set_user(&user_id) {
            return;
        }
        self.set_sticky(|s| s.user_id = Some(user_id.into()));
        self.send(|_| {});
    }

    /// Whether this handle may set the user to `user_id`: always, unless it
    /// joined another service's interaction and `user_id` is not the user
    /// that service sent (then the change is refused, counted and warned).
    fn may_set_user(&self, user_id: &str) -> bool {
        let Some(core) = self.core.as_deref() else {
            return true;
        };
        if core.joined.is_none() || self.user_id().as_deref() == Some(user_id) {
            return true;
        }
        core.pipeline.counters.refuse(
            Refusal::JoinedUserChange,
            "a user id change on an interaction joined from another service (the service that began it owns its user)",
        );
        false
    }

    /// Renames the event (a blank name is ignored).
    pub fn set_event(&self, event: impl Into<String>) {
        let event = event.into();
        if event.trim().is_empty() {
            return;
        }
        self.set_sticky(|s| s.event = Some(event.into()));
        self.send(|_| {});
    }

    /// Sets one property (object values deep-merge with earlier ones).
    pub fn set_property(&self, key: impl Into<String>, value: impl Into<Value>) {
        let (key, value) = (key.into(), value.into());
        self.send(|p| {
            p.properties.insert(key, value);
        });
    }

    /// Merges `properties` into the event's properties: a `serde_json` map
    /// or `json!({..})` object, or any `Serialize` struct or map. A value
    /// that is not a JSON object is refused: the update is dropped, counted
    /// as [`DropReason::Invalid`](crate::DropReason::Invalid) and logged.
    pub fn set_properties(&self, properties: impl Serialize) {
        let Some(core) = self.core.as_deref() else {
            return;
        };
        match crate::properties::to_properties(properties) {
            Ok(properties) => self.send(|p| p.properties = properties),
            Err(reason) => {
                core.pipeline.reject(
                    crate::ItemKind::InteractionUpdate,
                    crate::Error::invalid("properties", reason),
                );
            }
        }
    }

    /// Adds attachments.
    pub fn add_attachments(&self, attachments: impl IntoIterator<Item = Attachment>) {
        let attachments: Vec<Attachment> = attachments.into_iter().collect();
        if attachments.is_empty() {
            return;
        }
        self.send(|p| p.attachments = attachments);
    }

    /// Not a public API: the facade uses `raindrop_core::__private::apply_begin`.
    #[doc(hidden)]
    #[deprecated(note = "not a public API: use raindrop_core::__private::apply_begin")]
    pub fn apply_begin(&self, begin: Begin) {
        self.apply_begin_in_span(begin)
    }

    /// Applies the fields of `begin` (user, event name, input, model, convo id,
    /// properties, attachments) to this interaction as one update. `begin`'s
    /// event id is ignored: the handle keeps its own. The facade's `begin`
    /// uses it inside a span that already began this interaction.
    pub(crate) fn apply_begin_in_span(&self, mut begin: Begin) {
        let properties = std::mem::take(&mut begin.properties);
        let invalid = begin.invalid_properties.take();
        let properties =
            self.properties_or_warn(properties, invalid, "begin in an interaction span");
        self.begin_with(begin, properties);
    }

    /// A builder's properties, or none (warned) when they were refused: a
    /// call on a live interaction has no error to return.
    fn properties_or_warn(
        &self,
        properties: Properties,
        invalid: Option<String>,
        call: &str,
    ) -> Properties {
        properties_of(properties, invalid).unwrap_or_else(|e| {
            let event_id = self.event_id().unwrap_or_default();
            tracing::warn!(target: "raindrop", event_id, "{call}: {e}; properties left out");
            Properties::new()
        })
    }

    /// Sets the identity sent with every update: a blank user or event name
    /// is ignored, and so is a user change refused on a joined handle.
    fn set_identity(
        &self,
        user_id: Option<String>,
        convo_id: Option<String>,
        event: Option<String>,
    ) {
        let user_id = user_id.filter(|u| !u.trim().is_empty() && self.may_set_user(u));
        let event = event.filter(|e| !e.trim().is_empty());
        self.set_sticky(|s| {
            if let Some(u) = user_id {
                s.user_id = Some(u.into());
            }
            if let Some(c) = convo_id {
                s.convo_id = Some(c.into());
            }
            if let Some(e) = event {
                s.event = Some(e.into());
            }
        });
    }

    /// Takes `begin`'s identity (user, event name, convo id) and sends its
    /// content as one update, with `properties` checked apart: what
    /// [`Client::begin`](crate::Client::begin) and [`apply_begin_in_span`](Self::apply_begin_in_span)
    /// share, so a `Begin` field is read in this one place.
    pub(crate) fn begin_with(&self, begin: Begin, properties: Properties) {
        let Begin {
            user_id,
            event,
            event_id: _,
            input,
            model,
            convo_id,
            properties: _,
            invalid_properties: _,
            attachments,
            tools,
        } = begin;
        if let Some(tools) = tools {
            self.set_tools_normalised(tools);
        }
        self.set_identity(user_id, convo_id, Some(event));
        self.send(|p| {
            p.ai.input = input;
            p.ai.model = model;
            p.properties = properties;
            p.attachments = attachments;
        });
    }

    /// Sets the tools the interaction's model calls are offered (the Python
    /// SDK's `set_tools`), replacing earlier ones: every LLM span of the
    /// interaction recorded from now on carries them as `ai.prompt.tools`
    /// (JSON strings `{"type":"function","name","description","inputSchema"}`,
    /// normalised from the OpenAI, Responses or Anthropic shapes) with
    /// `ai.prompt.tools.source = "interaction"`.
    ///
    /// ```
    /// # let client = raindrop_core::Client::new(raindrop_core::ClientOptions::default()).unwrap();
    /// let i = client.begin(raindrop_core::Begin::new("u", "chat")).unwrap();
    /// i.set_tools([serde_json::json!({"name": "search", "input_schema": {"type": "object"}})]);
    /// assert_eq!(i.prompt_tools().unwrap().len(), 1);
    /// ```
    pub fn set_tools(&self, tools: impl IntoIterator<Item = Value>) {
        if let Some(core) = self.core.as_deref() {
            *core.tools.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(Arc::new(crate::tools::catalog(tools)));
        }
    }

    /// Sets an already normalised catalog (from `Begin::tools`).
    pub(crate) fn set_tools_normalised(&self, tools: Vec<String>) {
        if let Some(core) = self.core.as_deref() {
            *core.tools.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(tools));
        }
    }

    /// The tool catalog set with [`set_tools`](Self::set_tools) or
    /// [`Begin::tools`](crate::Begin::tools), as the JSON strings sent.
    pub fn prompt_tools(&self) -> Option<Arc<Vec<String>>> {
        self.core
            .as_deref()
            .and_then(|c| c.tools.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }

    /// The sub-agent link attributes of this interaction's spans (none
    /// unless it is a detached sub-agent's own event).
    pub(crate) fn subagent_attributes(
        &self,
    ) -> Vec<(std::borrow::Cow<'static, str>, crate::AttributeValue)> {
        self.core
            .as_deref()
            .and_then(|c| c.subagent.get())
            .map(|l| l.attributes())
            .unwrap_or_default()
    }

    /// Finishes the interaction with the model's answer.
    pub fn finish(&self, output: impl Into<String>) {
        self.finish_with(Finish::new().output(output));
    }

    /// Finishes the interaction, setting any field. Only the first finish of an
    /// interaction is sent; a later one is ignored, counted
    /// ([`Stats::finishes_ignored`](crate::Stats::finishes_ignored)) and
    /// warned. On a handle that joined another service's interaction (from
    /// a carrier) finishing is refused, counted
    /// ([`Stats::joined_finishes_refused`](crate::Stats::joined_finishes_refused))
    /// and warned, unless that service delegated it.
    pub fn finish_with(&self, finish: Finish) {
        let Some(core) = self.core.as_deref() else {
            return;
        };
        if core.joined.is_some_and(|j| !j.may_finish) {
            core.pipeline.counters.refuse(
                Refusal::JoinedFinish,
                "a finish of an interaction joined from another service that did not delegate finishing it (inject_with(.., InjectOptions::new().delegate_finish()))",
            );
            return;
        }
        if core.finished.swap(true, Ordering::AcqRel) {
            core.pipeline.counters.refuse(
                Refusal::FinishIgnored,
                "a second finish of an interaction (only the first is sent)",
            );
            return;
        }
        let Finish {
            output,
            input,
            model,
            convo_id,
            user_id,
            event,
            timestamp,
            properties,
            invalid_properties,
            attachments,
            error,
        } = finish;
        let mut properties = self.properties_or_warn(properties, invalid_properties, "finish");
        if let Some(e) = error {
            properties.insert("error".to_owned(), Value::String(e));
        }
        let timestamp = match timestamp.map(|t| t.validate("timestamp")) {
            Some(Ok(t)) => Some(t),
            Some(Err(e)) => {
                tracing::warn!(target: "raindrop", event_id = &*core.event_id, "finish: {e}; timestamp ignored");
                None
            }
            None => None,
        };
        self.set_identity(user_id, convo_id, event);
        let mut update = InteractionUpdate {
            event_id: core.event_id.clone(),
            ai: AiData {
                model,
                input,
                output,
                convo_id: None,
            },
            properties,
            attachments,
            timestamp,
            is_final: true,
            ..Default::default()
        };
        core.stamp(&mut update);
        if core.sampled {
            core.pipeline.enqueue_update(&core.waiting, update);
        }
    }
}

const SET_INPUT: u8 = 1;
const SET_OUTPUT: u8 = 2;
const SET_MODEL: u8 = 4;

impl InteractionCore {
    /// Whether the final update was sent (or refused).
    pub(crate) fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }

    /// Remembers which of input / output / model a mutator set.
    fn mark_set(&self, input: &Option<String>, output: &Option<String>, model: &Option<String>) {
        let bit = |set: bool, b: u8| if set { b } else { 0 };
        let bits = bit(input.is_some(), SET_INPUT)
            | bit(output.is_some(), SET_OUTPUT)
            | bit(model.is_some(), SET_MODEL);
        if bits != 0 {
            self.set_fields.fetch_or(bits, Ordering::AcqRel);
        }
    }

    /// Fills in the identity and the content flag of an update.
    fn stamp(&self, update: &mut InteractionUpdate) {
        let content = update.ai.has_content() || !update.attachments.is_empty();
        update.had_content = if content {
            self.had_content.store(true, Ordering::Release);
            true
        } else {
            self.had_content.load(Ordering::Acquire)
        };
        let s = self.sticky.lock().unwrap_or_else(|e| e.into_inner());
        update.user_id.clone_from(&s.user_id);
        update.event.clone_from(&s.event);
        update.ai.convo_id.clone_from(&s.convo_id);
    }
}
