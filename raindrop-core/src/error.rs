//! The error type returned to callers.

/// Why a tracking call was refused.
///
/// Tracking calls never fail because of the network: delivery problems are
/// counted in [`Stats`](crate::Stats) instead. An `Error` means the call
/// itself was refused before anything was queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A field failed validation; `field` names it as it appears on the wire.
    #[error("invalid `{field}`: {reason}")]
    InvalidField {
        /// The offending field, e.g. `user_id` or `attachments[1].type`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The bounded queue is full; the event was dropped and counted.
    #[error("raindrop queue is full (max_queue_size reached); event dropped")]
    QueueFull,
    /// The client was shut down; the event was dropped and counted.
    #[error("raindrop client is shut down; event dropped")]
    ShutDown,
    /// No global client was installed with `raindrop::init`.
    #[error("raindrop is not initialised; call raindrop::init first")]
    NotInitialized,
    /// A configuration value is unusable (for example an unparseable endpoint URL).
    #[error("invalid configuration `{field}`: {reason}")]
    Config {
        /// The option name.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl Error {
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidField {
            field: field.into(),
            reason: reason.into(),
        }
    }
}
