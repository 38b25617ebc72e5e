//! What happens to an item on the worker just before it is serialised: the
//! content switch, PII redaction, then the user's before-send hook (so the
//! hook sees what would be sent).

use std::borrow::Cow;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use crate::app_git::AppGitState;

use crate::item::{AiData, EventRecord, IdentifyRecord, InteractionUpdate, Outgoing, SignalRecord};
use crate::options::{BeforeSend, ClientOptions};
use crate::redact::redact_pii;
use crate::span::{AttributeValue, SpanRecord};
use crate::stats::DropReason;

/// Span attributes that carry content (inputs, outputs, arguments, message
/// texts): every one the tracing layer and its GenAI mapping write, the
/// `raindrop.*` fields they are read from, and the usual names of other
/// conventions (OpenLLMetry, the Vercel AI SDK, OpenInference) for spans
/// exported by hand; tool definitions too (the wire contract counts them as
/// content). Kept in step with `ClientOptions::capture_content`.
fn is_content_attribute(key: &str) -> bool {
    matches!(
        key,
        "traceloop.entity.input"
            | "traceloop.entity.output"
            | "raindrop.input"
            | "raindrop.output"
            | "gen_ai.input.messages"
            | "gen_ai.output.messages"
            | "gen_ai.system_instructions"
            | "gen_ai.tool.call.arguments"
            | "gen_ai.tool.call.result"
            | "gen_ai.tool.definitions"
            | "ai.prompt.tools"
            | "ai.prompt.tools.source"
            | "ai.prompt"
            | "ai.prompt.messages"
            | "ai.response.text"
            | "ai.response.object"
            | "ai.response.toolCalls"
            | "ai.toolCall.args"
            | "ai.toolCall.result"
            | "input.value"
            | "output.value"
    ) || key.starts_with("gen_ai.prompt.")
        || key.starts_with("gen_ai.completion.")
        || key.starts_with("llm.prompts.")
        || key.starts_with("llm.completions.")
        || key.starts_with("llm.input_messages.")
        || key.starts_with("llm.output_messages.")
}

/// Signal properties that carry the user's words: the feedback comment and
/// the corrected answer of an edit (wire contract, signals).
const SIGNAL_CONTENT: [&str; 2] = ["comment", "after"];

pub(crate) struct Prepare {
    capture_content: bool,
    redact: bool,
    redact_spans: bool,
    hook: Option<BeforeSend>,
    /// Provenance added to events, interaction updates and spans once known
    /// (signals and identify never get it). Added before the hook, which
    /// may remove it.
    app_git: Arc<AppGitState>,
}

impl Prepare {
    pub fn new(o: &ClientOptions, app_git: Arc<AppGitState>) -> Self {
        Prepare {
            capture_content: o.capture_content,
            redact: o.redact_pii,
            redact_spans: o.redact_pii && o.redact_pii_in_spans,
            hook: o.before_send.clone(),
            app_git,
        }
    }

    /// Content switch and redaction of AI fields.
    fn ai(&self, ai: &mut AiData, attachments: &mut Vec<crate::Attachment>) {
        if !self.capture_content {
            ai.input = None;
            ai.output = None;
            attachments.clear();
        } else if self.redact {
            for text in [&mut ai.input, &mut ai.output].into_iter().flatten() {
                if let Cow::Owned(r) = redact_pii(text) {
                    *text = r;
                }
            }
        }
    }

    /// Runs the hook; `Err` with the reason when the item must be dropped.
    fn hook(&self, item: Outgoing<'_>) -> Result<(), DropReason> {
        let Some(hook) = &self.hook else {
            return Ok(());
        };
        match catch_unwind(AssertUnwindSafe(|| hook(item))) {
            Ok(true) => Ok(()),
            Ok(false) => Err(DropReason::DroppedByHook),
            Err(_) => Err(DropReason::HookPanicked),
        }
    }

    pub fn event(&self, e: &mut EventRecord) -> Result<(), DropReason> {
        if let Some(g) = self.app_git.get() {
            g.add_to_properties(&mut e.properties);
        }
        if let Some(ai) = e.ai.as_mut() {
            self.ai(ai, &mut e.attachments);
        } else if !self.capture_content {
            e.attachments.clear();
        }
        self.hook(Outgoing::Event(e))
    }

    pub fn update(&self, u: &mut InteractionUpdate) -> Result<(), DropReason> {
        if let Some(g) = self.app_git.get() {
            g.add_to_properties(&mut u.properties);
        }
        self.ai(&mut u.ai, &mut u.attachments);
        self.hook(Outgoing::InteractionUpdate(u))
    }

    /// The content switch and redaction alone, for an update about to be
    /// written to the spool (the rest runs when it is sent; both are
    /// idempotent, so running them again then changes nothing).
    pub fn update_content(&self, u: &mut InteractionUpdate) {
        self.ai(&mut u.ai, &mut u.attachments);
    }

    pub fn signal(&self, s: &mut SignalRecord) -> Result<(), DropReason> {
        if !self.capture_content {
            for key in SIGNAL_CONTENT {
                s.properties.remove(key);
            }
        }
        self.hook(Outgoing::Signal(s))
    }

    pub fn identify(&self, i: &mut IdentifyRecord) -> Result<(), DropReason> {
        self.hook(Outgoing::Identify(i))
    }

    pub fn span(&self, s: &mut SpanRecord) -> Result<(), DropReason> {
        if let Some(g) = self.app_git.get() {
            g.add_to_span(s);
        }
        if !self.capture_content {
            s.attributes.retain(|(k, _)| !is_content_attribute(k));
        } else if self.redact_spans {
            for (k, v) in &mut s.attributes {
                if let (true, AttributeValue::String(text)) = (is_content_attribute(k), v) {
                    if let Cow::Owned(r) = redact_pii(text) {
                        *text = r;
                    }
                }
            }
        }
        self.hook(Outgoing::Span(s))
    }
}
