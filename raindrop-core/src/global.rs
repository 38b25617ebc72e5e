//! The process-wide client used by the facade's free functions.

use std::sync::RwLock;

use crate::Client;

static GLOBAL: RwLock<Option<Client>> = RwLock::new(None);

/// Installs `client` as the process-wide client, returning the previous one.
pub fn set_global(client: Option<Client>) -> Option<Client> {
    let mut g = GLOBAL.write().unwrap_or_else(|e| e.into_inner());
    std::mem::replace(&mut *g, client)
}

/// The process-wide client, if one was installed.
pub fn global() -> Option<Client> {
    GLOBAL.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// The process-wide client; before one is installed, a disabled stand-in
/// that validates calls, counts them as `DropReason::NotInitialized` and
/// says so once. Telemetry must not fail a request because `init` was
/// forgotten.
pub fn current() -> Client {
    if let Some(c) = global() {
        return c;
    }
    static STAND_IN: std::sync::OnceLock<Client> = std::sync::OnceLock::new();
    STAND_IN
        .get_or_init(|| {
            // Said once, when the stand-in is made; later calls take no lock here.
            crate::diag::setup_warning(
                "not_initialized",
                "a raindrop tracking call ran before raindrop::init: nothing is recorded. Call `let _guard = raindrop::init(raindrop::ClientOptions::from_env());` at start-up and keep the guard",
            );
            Client::not_initialized()
        })
        .clone()
}
