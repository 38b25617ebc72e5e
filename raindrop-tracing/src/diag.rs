//! Setup diagnostics: one loud warning per cause per process.
//!
//! These warnings report the very setups that hide spans (a global filter, a
//! missing layer, no subscriber at all), so they must not depend on the
//! subscriber to be seen: when no subscriber would show a WARN under target
//! `raindrop`, they go to stderr instead.

use std::sync::atomic::{AtomicBool, Ordering};

use raindrop_core::__private::setup_warning;
use tracing::level_filters::LevelFilter;
use tracing::subscriber::NoSubscriber;
use tracing::{Dispatch, Level};

use crate::layer::RaindropLayer;

/// Why an interaction was not recorded (or recorded badly).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cause {
    /// No tracing subscriber is installed in this thread or process.
    NoSubscriber,
    /// A subscriber is installed, without a raindrop layer.
    NoLayer,
    /// The raindrop layer is installed but a global filter disabled the span.
    Filtered,
    /// The raindrop layer saw the span but keeps no state for it where
    /// code holding the span looks (the layer was not told its subscriber's
    /// type: added by a wrapper that does not forward `Layer::on_layer`).
    NoState,
}

impl Cause {
    /// The key under which the warning is said once.
    fn key(self) -> &'static str {
        match self {
            Cause::NoSubscriber => "tracing:no_subscriber",
            Cause::NoLayer => "tracing:no_layer",
            Cause::Filtered => "tracing:filtered",
            Cause::NoState => "tracing:no_state",
        }
    }
}

/// Whether `dispatch` contains a raindrop layer (bare or with its filter).
pub(crate) fn has_raindrop_layer(dispatch: &Dispatch) -> bool {
    dispatch.downcast_ref::<RaindropLayer>().is_some()
}

/// The cause of a span the raindrop layer did not track, judged from the
/// current dispatcher.
pub(crate) fn cause_of_untracked(disabled: bool) -> Cause {
    tracing::dispatcher::get_default(|d| {
        if d.is::<NoSubscriber>() {
            Cause::NoSubscriber
        } else if !has_raindrop_layer(d) {
            Cause::NoLayer
        } else if disabled {
            Cause::Filtered
        } else {
            Cause::NoState
        }
    })
}

/// Warns once per process about `cause`, for the span described by `meta`
/// (`what` is e.g. "#[raindrop::interaction] fn `chat` was not recorded";
/// `span` its level and target).
pub(crate) fn warn_untracked(
    cause: Cause,
    what: impl FnOnce() -> String,
    span: Option<(Level, &str)>,
) {
    // Cheap after the first time: the core remembers the cause.
    static SAID: [AtomicBool; 4] = [
        AtomicBool::new(false),
        AtomicBool::new(false),
        AtomicBool::new(false),
        AtomicBool::new(false),
    ];
    if SAID[cause as usize].swap(true, Ordering::Relaxed) {
        return;
    }
    setup_warning(cause.key(), &message(cause, &what(), span));
}

/// The text of a setup warning: the cause, then the fix.
pub(crate) fn message(cause: Cause, what: &str, span: Option<(Level, &str)>) -> String {
    match cause {
        Cause::NoSubscriber => format!(
            "{what}: no tracing subscriber is installed, so no raindrop \
             layer sees its span. Fix: install one with the raindrop layer, e.g. \
             `raindrop::tracing_init(&client)` (fmt logs + raindrop), or \
             `tracing_subscriber::registry().with(raindrop::layer_for(&client)).init()`."
        ),
        Cause::NoLayer => format!(
            "{what}: the current tracing subscriber has no raindrop layer. \
             A process has one global subscriber: if `tracing_subscriber::fmt::init()` (or \
             another `.init()`) ran first, a later one with the raindrop layer was refused. \
             Fix: add `raindrop::layer_for(&client)` to the subscriber you install, e.g. replace \
             `tracing_subscriber::fmt::init()` with `raindrop::tracing_init(&client)`."
        ),
        Cause::Filtered => {
            let (level, target) = span.unwrap_or((Level::INFO, "?"));
            let max = LevelFilter::current().to_string().to_uppercase();
            let unset = if LevelFilter::current() == LevelFilter::ERROR
                && std::env::var_os("RUST_LOG").is_none()
            {
                " (RUST_LOG is unset: `EnvFilter::from_default_env()` then allows ERROR only)"
            } else {
                ""
            };
            format!(
                "{what}: its {level} span (target `{target}`) was disabled by a \
                 global filter (max level {max}{unset}), which applies to every layer, the \
                 raindrop layer included. Fix: give the filter to your log layer only, \
                 `.with(tracing_subscriber::fmt::layer().with_filter(EnvFilter::from_default_env()))`, \
                 or add the directive `[{{raindrop.kind}}]=info` to the global EnvFilter \
                 (it also shows INFO logs inside raindrop spans)."
            )
        }
        Cause::NoState => format!(
            "{what}: the raindrop layer is installed but was never told the type of \
             its subscriber, so its span state cannot be found (a wrapper around the layer \
             that does not forward `Layer::on_layer`). Fix: add the layer with \
             `SubscriberExt::with(..)` (or `Layer::with_subscriber`), directly or through \
             wrappers that forward `on_layer`."
        ),
    }
}

/// Interaction names warned about for a missing user id, at most; span
/// names can be dynamic, and each would otherwise take one of the core's
/// bounded warning causes and could hide later, more serious warnings.
const MAX_NO_USER_NAMES: usize = 16;

/// The names warned about so far.
static NO_USER_NAMES: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Warns once per interaction name (for the first few names) that an
/// interaction finished without a user id.
pub(crate) fn warn_no_user_id(name: &str, fn_name: Option<&str>) {
    {
        let mut names = NO_USER_NAMES.lock().unwrap_or_else(|e| e.into_inner());
        if names.iter().any(|n| n == name) {
            return;
        }
        if names.len() >= MAX_NO_USER_NAMES {
            drop(names);
            setup_warning(
                "no_user_id:more",
                "more interactions finished without a user id; not naming each",
            );
            return;
        }
        names.push(name.to_owned());
    }
    let origin = match fn_name {
        Some(f) => format!("interaction `{name}` (#[raindrop::interaction] fn `{f}`)"),
        None => format!("interaction span `{name}`"),
    };
    setup_warning(&format!("no_user_id:{name}"), &format!(
        "{origin} finished without a user id; its event is sent with no user, so it cannot \
         be attributed or grouped by user. Fix: `#[raindrop::interaction(\"{name}\", user_id = ..)]` \
         with an expression of the arguments (e.g. `user_id = req.user_id`), or \
         `raindrop::resume_interaction().set_user_id(..)` inside it."
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dynamic interaction names take at most a few of the core's bounded
    /// warning causes, so later, more serious warnings still get through.
    #[test]
    fn dynamic_names_take_a_bounded_share_of_setup_warnings() {
        for n in 0..300 {
            warn_no_user_id(&format!("chat-{n}"), None);
        }
        let named = NO_USER_NAMES.lock().unwrap().len();
        assert_eq!(named, MAX_NO_USER_NAMES);
    }
}
