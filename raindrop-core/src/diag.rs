//! Setup problems said once, where the user will see them.

use std::collections::HashSet;
use std::sync::Mutex;

/// Causes remembered; past this many distinct causes, new ones are not said.
const MAX_CAUSES: usize = 256;

/// Reports a setup problem (no write key, a bad endpoint, a missing layer,
/// an interaction without a user id) once per `cause` per process.
///
/// It goes through `tracing` at WARN under target `raindrop` when the
/// current subscriber would show it, and to standard error otherwise: a
/// setup mistake must be visible even when the mistake is the logging
/// setup itself (no subscriber yet, or a filter that hides `raindrop`).
///
/// ```
/// raindrop_core::__private::setup_warning("doc-example", "shown once");
/// raindrop_core::__private::setup_warning("doc-example", "not shown: same cause");
/// ```
pub fn setup_warning(cause: &str, message: &str) {
    static SAID: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    {
        let mut said = SAID.lock().unwrap_or_else(|e| e.into_inner());
        let said = said.get_or_insert_with(HashSet::new);
        if said.len() >= MAX_CAUSES || !said.insert(cause.to_owned()) {
            return;
        }
    }
    let shown = tracing::dispatcher::get_default(|d| !d.is::<tracing::subscriber::NoSubscriber>())
        && tracing::enabled!(target: "raindrop", tracing::Level::WARN);
    if shown {
        tracing::warn!(target: "raindrop", cause, "{message}");
    } else {
        // Not `eprintln!`, which panics when stderr is closed.
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "WARN raindrop: {message}");
    }
}
