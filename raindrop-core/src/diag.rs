//! Setup problems said once, where the user will see them.

use std::sync::Mutex;

/// Reports a setup problem (no write key, a bad endpoint, a missing layer)
/// once per `cause` per process.
///
/// It goes through `tracing` at WARN under target `raindrop` when the
/// current subscriber would show it, and to standard error otherwise: a
/// setup mistake must be visible even when the mistake is the logging
/// setup itself (no subscriber yet, or a filter that hides `raindrop`).
///
/// ```
/// raindrop_core::setup_warning("doc-example", "shown once");
/// raindrop_core::setup_warning("doc-example", "not shown: same cause");
/// ```
pub fn setup_warning(cause: &'static str, message: &str) {
    static SAID: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    {
        let mut said = SAID.lock().unwrap_or_else(|e| e.into_inner());
        if said.contains(&cause) {
            return;
        }
        said.push(cause);
    }
    if tracing::enabled!(target: "raindrop", tracing::Level::WARN) {
        tracing::warn!(target: "raindrop", cause, "{message}");
    } else {
        eprintln!("WARN raindrop: {message}");
    }
}
