//! The error type returned to callers.

/// Why a tracking call was refused.
///
/// Tracking calls fail only for input the caller must fix. Capacity,
/// shutdown, a disabled client and delivery problems are counted in
/// [`Stats`](crate::Stats) by reason and logged (rate-limited), never
/// returned: telemetry must not fail the caller's request.
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
    /// No global client was installed with `raindrop::init` (only
    /// `raindrop::client()` returns it; tracking calls count and warn instead).
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
