//! The core of the Raindrop Rust SDK: the [`Client`], its data model and the
//! non-blocking batching transport.
//!
//! Most applications use the `raindrop` facade crate, which re-exports
//! everything here and adds the tracing integration. Use this crate directly
//! when you want the client without `tracing`.
//!
//! # How delivery works
//!
//! Tracking calls ([`Client::track_ai`], [`Client::track`],
//! [`Client::identify`], [`Client::track_signal`], [`Client::begin`] and the
//! [`Interaction`] methods) validate their input, stamp an id and a time, and
//! put the item in a bounded queue (`max_queue_size`, 10,000 by default).
//! They never wait on the network, never take a lock across I/O and never
//! panic. A worker thread with its own current-thread tokio runtime drains the
//! queue, caps text fields, serialises, batches per route (`events/track`
//! arrays of `upload_size` events under 1 MiB, sent when full or every
//! `upload_interval`), merges interaction updates into sparse
//! `events/track_partial` updates, and retries network errors, 408, 429 and
//! 5xx with exponential backoff and jitter, honouring `Retry-After` up to
//! 10 s. Every item ends up delivered or dropped with a reason in
//! [`Client::stats`].
//!
//! ```
//! use std::time::Duration;
//! use raindrop_core::{AiEvent, Client, ClientOptions, LocalSink, Signal, SignalType};
//!
//! # let path = std::env::temp_dir().join(format!("raindrop-core-doc-{}", std::process::id()));
//! let client = Client::new(ClientOptions::from_env().local_sink(LocalSink::File(path.clone())))?;
//! let event_id = client.track_ai(
//!     AiEvent::new("user-1", "chat_message").input("2+2?").output("4").model("gpt-4o"),
//! )?;
//! client.track_signal(
//!     Signal::new(&event_id, "user_feedback").signal_type(SignalType::Feedback).comment("quick!"),
//! )?;
//! let report = client.shutdown(Duration::from_secs(5));
//! assert!(report.completed);
//! assert_eq!(report.stats.delivered, 2);
//! # let _ = std::fs::remove_file(path);
//! # Ok::<(), raindrop_core::Error>(())
//! ```

mod app_git;
mod client;
mod diag;
mod endpoint;
mod error;
mod global;
pub mod handoff;
mod ids;
mod interaction;
mod item;
mod manual_span;
mod model;
mod options;
mod pipeline;
pub mod propagation;
mod properties;
mod queue;
mod redact;
mod route;
mod span;
mod spool;
mod stats;
mod subagent_link;
// Hidden: not part of the stable API (see the module docs).
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod testing;
mod time;
mod tools;
mod validate;
mod worker;

pub use app_git::{AppGit, AppGitInfo, BRANCH_KEY, COMMIT_DIRTY_KEY, COMMIT_SHA_KEY};
pub use client::{Client, ShutdownReport};
pub use error::Error;
pub use interaction::Interaction;
pub use item::{AiData, EventRecord, IdentifyRecord, InteractionUpdate, Outgoing, SignalRecord};
pub use manual_span::{
    unix_to_system_time, Association, ManualSpan, SpanContext, SpanKind, ToolCall,
};
pub use model::{
    AiEvent, Attachment, AttachmentType, Begin, Event, Finish, Role, Sentiment, Signal, SignalType,
    Timestamp,
};
pub use options::{
    BeforeSend, ClientOptions, LocalSink, MemorySink, PropagationSecret, TlsRoots, Workshop,
    WriteKey, DEFAULT_ENDPOINT,
};
pub use properties::Properties;
pub use redact::redact_pii;
pub use span::{AttributeValue, SpanRecord, SpanStatus};
pub use spool::{SpoolOptions, SpoolSync};
pub use stats::{DropReason, ItemKind, Stats};
pub use worker::tls::install_tls_provider;

/// The character cap's marker, appended to text cut at `max_text_field_chars`.
pub const TRUNCATION_MARKER: &str = worker::wire::TRUNCATION_MARKER;

/// Cuts `text` to at most `max_chars` characters, marker included: the rule
/// applied to AI text fields. Exposed so integrations cap the same way.
pub fn truncate_text(text: &str, max_chars: usize) -> std::borrow::Cow<'_, str> {
    worker::wire::cap(text, max_chars)
}

/// Reports a setup problem once per `cause`; not part of the stable API
/// (the facade and the tracing layer use it).
#[doc(hidden)]
#[deprecated(note = "not a public API: use raindrop_core::__private::setup_warning")]
pub fn setup_warning(cause: &str, message: &str) {
    diag::setup_warning(cause, message)
}

/// Not part of the stable API: what the facade and the tracing layer share.
#[doc(hidden)]
pub mod __private {
    pub use crate::diag::setup_warning;
    pub use crate::global::{current, global, set_global};

    /// Sets model, input and output of `interaction` from what its model
    /// calls said, each only where no mutator (or begin) set it: the
    /// tracing layer's GenAI capture.
    pub fn fill_unset(
        interaction: &crate::Interaction,
        model: Option<String>,
        input: Option<String>,
        output: Option<String>,
    ) {
        interaction.fill_from_model_calls(model, input, output)
    }

    /// Applies `begin` to an interaction a span already began (its event id
    /// is ignored): the facade's `begin` inside an interaction span.
    pub fn apply_begin(interaction: &crate::Interaction, begin: crate::Begin) {
        interaction.apply_begin_in_span(begin)
    }

    /// Tool definitions of any shape normalised for `ai.prompt.tools`.
    pub fn tool_catalog(tools: impl IntoIterator<Item = serde_json::Value>) -> Vec<String> {
        crate::tools::catalog(tools)
    }

    /// Counts, on the interaction's client, a model call captured in part
    /// (`Stats::llm_captures_incomplete`, with a rate-limited warning).
    pub fn incomplete_capture(interaction: &crate::Interaction, detail: &str) {
        if let Some(p) = interaction.pipeline() {
            p.counters.incomplete_capture(detail);
        }
    }

    /// Faults the SDK's own tests inject where nothing outside can cause them.
    pub mod faults {
        use std::sync::atomic::Ordering;

        /// The next `Client::new` fails to start its worker thread.
        pub fn fail_next_worker_spawn() {
            crate::worker::FAIL_NEXT_SPAWN.store(true, Ordering::Release);
        }

        /// The next delivery task panics before sending.
        pub fn panic_next_delivery() {
            crate::worker::PANIC_NEXT_DELIVERY.store(true, Ordering::Release);
        }
    }
}
