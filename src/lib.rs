//! Raindrop for Rust: AI telemetry that records what your users asked, what
//! the model answered, which tools ran and how users reacted.
//!
//! ```
//! use std::time::Duration;
//! // With no RAINDROP_WRITE_KEY the client is disabled and sends nothing.
//! let _guard = raindrop::init(raindrop::ClientOptions::from_env());
//! let id = raindrop::track_ai(
//!     raindrop::AiEvent::new("user-1", "chat_message").input("2+2?").output("4"),
//! );
//! assert!(id.is_ok());
//! ```
//!
//! # Tracing and the attribute macros
//!
//! With the default `tracing` and `macros` features, install
//! [`layer`] in your subscriber and mark functions with
//! [`#[raindrop::interaction]`](macro@interaction), [`#[raindrop::task]`](macro@task) and
//! [`#[raindrop::tool]`](macro@tool). An interaction function begins one AI
//! event when called and finishes it when it returns (with its output, an
//! `Err`, or a panic); tasks and tools inside it are exported as trace spans
//! linked to that event; [`resume_interaction`] reaches the interaction from
//! any code inside it. Plain `tracing` spans work too: see the "Special span
//! fields" section of the `raindrop-tracing` crate docs.
//!
//! ```
//! use tracing_subscriber::prelude::*;
//!
//! #[raindrop::tool("search")]
//! fn search(query: &str) -> Vec<String> {
//!     vec![format!("result for {query}")]
//! }
//!
//! #[raindrop::interaction("chat", user_id = user, skip(user))]
//! fn chat(user: &str, message: &str) -> String {
//!     let hits = search(message);
//!     raindrop::resume_interaction().set_property("hits", hits.len());
//!     format!("found {}", hits.len())
//! }
//!
//! let guard = raindrop::init(raindrop::ClientOptions::from_env());
//! if let Some(client) = guard.client() {
//!     // Give other layers their own filters (`fmt::layer().with_filter(EnvFilter)`):
//!     // a global filter at WARN would disable the INFO spans the macros create.
//!     let _ = tracing_subscriber::registry().with(raindrop::layer(client)).try_init();
//! }
//! assert_eq!(chat("user-1", "weather?"), "found 1");
//! // Spans close before the guard flushes and shuts down.
//! drop(guard);
//! ```

pub use raindrop_core::*;

#[cfg(feature = "tracing")]
pub use raindrop_tracing::{
    current_interaction, layer, FilteredRaindropLayer, RaindropFilter, RaindropLayer,
    RaindropSpanExt,
};

/// Names of the reserved `raindrop.*` span fields (`fields::KIND` is
/// `"raindrop.kind"`, ...); see the `raindrop-tracing` crate docs.
#[cfg(feature = "tracing")]
pub use raindrop_tracing::fields;

#[cfg(feature = "macros")]
pub use raindrop_macros::{interaction, task, tool};

use std::time::Duration;

/// Flushes and shuts the global client down (within its `shutdown_timeout`)
/// when dropped. Keep it alive for as long as you track: `let _guard = raindrop::init(..)`.
#[must_use = "dropping the guard shuts raindrop down at once"]
#[derive(Debug)]
pub struct Guard {
    client: Option<Client>,
}

impl Guard {
    /// The client this guard owns.
    pub fn client(&self) -> Option<&Client> {
        self.client.as_ref()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            let timeout = c.options().shutdown_timeout;
            c.shutdown(timeout);
            set_global(None);
        }
    }
}

/// Builds a client from `options`, installs it as the global client, and
/// returns a guard that shuts it down when dropped. Invalid options are logged
/// and give a disabled client: telemetry never takes the application down.
pub fn init(options: ClientOptions) -> Guard {
    match try_init(options) {
        Ok(g) => g,
        Err(e) => {
            tracing::error!(target: "raindrop", "raindrop::init: {e}; raindrop is disabled");
            Guard { client: None }
        }
    }
}

/// Like [`init`], but returns configuration errors.
pub fn try_init(options: ClientOptions) -> Result<Guard, Error> {
    let client = Client::new(options)?;
    set_global(Some(client.clone()));
    Ok(Guard {
        client: Some(client),
    })
}

/// The global client, or `Error::NotInitialized`.
pub fn client() -> Result<Client, Error> {
    global().ok_or(Error::NotInitialized)
}

/// [`Client::track_ai`] on the global client.
pub fn track_ai(event: AiEvent) -> Result<String, Error> {
    client()?.track_ai(event)
}

/// [`Client::track`] on the global client.
pub fn track(event: Event) -> Result<String, Error> {
    client()?.track(event)
}

/// [`Client::identify`] on the global client.
pub fn identify(user_id: impl Into<String>, traits: Properties) -> Result<(), Error> {
    client()?.identify(user_id, traits)
}

/// [`Client::track_signal`] on the global client.
pub fn track_signal(signal: Signal) -> Result<(), Error> {
    client()?.track_signal(signal)
}

/// [`Client::begin`] on the global client.
///
/// Inside an interaction span (`#[raindrop::interaction]` or a span marked
/// `raindrop.kind = "interaction"`, at any depth), this binds to that span's
/// interaction instead of starting a second event: the fields of `begin`
/// (user, event name, input, model, convo id, properties, attachments) are
/// applied to it and its handle is returned. The span's event id is kept.
pub fn begin(begin: Begin) -> Result<Interaction, Error> {
    #[cfg(feature = "tracing")]
    if let Some(i) =
        raindrop_tracing::current_interaction().filter(|i| !i.is_noop() && !i.is_finished())
    {
        i.apply_begin(begin);
        return Ok(i);
    }
    client()?.begin(begin)
}

/// The interaction of the nearest enclosing interaction span (through any
/// ordinary spans, across `.await`, instrumented spawned futures and threads
/// that enter the span); nested interactions resolve to the innermost.
///
/// With no interaction span in scope (or without the `tracing` feature) it
/// returns [`Interaction::noop`] and logs one DEBUG line under target
/// `raindrop`: it never panics and never sends anything by itself.
pub fn resume_interaction() -> Interaction {
    #[cfg(feature = "tracing")]
    {
        raindrop_tracing::resume_interaction()
    }
    #[cfg(not(feature = "tracing"))]
    {
        tracing::debug!(target: "raindrop", "resume_interaction(): the `tracing` feature is off; returning a no-op handle");
        Interaction::noop()
    }
}

/// [`Client::resume_interaction`] on the global client; a no-op handle when
/// raindrop is not initialised.
pub fn resume_interaction_by_id(event_id: &str) -> Interaction {
    global()
        .map(|c| c.resume_interaction(event_id))
        .unwrap_or_else(Interaction::noop)
}

/// Support for the code generated by the attribute macros. Not a public API.
#[doc(hidden)]
#[cfg(feature = "macros")]
pub mod __private {
    pub use raindrop_tracing::__macro_support::*;
}

/// [`Client::flush`] on the global client (`true` when not initialised).
pub fn flush(timeout: Duration) -> bool {
    global().map_or(true, |c| c.flush(timeout))
}
