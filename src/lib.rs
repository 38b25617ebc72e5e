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

pub use raindrop_core::*;

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
pub fn begin(begin: Begin) -> Result<Interaction, Error> {
    client()?.begin(begin)
}

/// [`Client::resume_interaction`] on the global client; a no-op handle when
/// raindrop is not initialised.
pub fn resume_interaction_by_id(event_id: &str) -> Interaction {
    global()
        .map(|c| c.resume_interaction(event_id))
        .unwrap_or_else(Interaction::noop)
}

/// [`Client::flush`] on the global client (`true` when not initialised).
pub fn flush(timeout: Duration) -> bool {
    global().is_none_or(|c| c.flush(timeout))
}
