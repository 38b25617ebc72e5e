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
