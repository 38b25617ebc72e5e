//! Setup diagnostics: one loud warning per cause per process.
//!
//! These warnings report the very setups that hide spans (a global filter, a
//! missing layer, no subscriber at all), so they must not depend on the
//! subscriber to be seen: when no subscriber would show a WARN under target
//! `raindrop`, they go to stderr instead.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

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
    /// The raindrop layer saw the span but could not keep state for it
    /// (a subscriber that is not built on `tracing_subscriber::Registry`).
    NotRegistry,
}

const CAUSES: usize = 4;
static WARNED: [AtomicBool; CAUSES] = [
    AtomicBool::new(false),
    AtomicBool::new(false),
    AtomicBool::new(false),
    AtomicBool::new(false),
];

impl Cause {
    fn index(self) -> usize {
        match self {
            Cause::NoSubscriber => 0,
            Cause::NoLayer => 1,
            Cause::Filtered => 2,
            Cause::NotRegistry => 3,
        }
    }
}

/// Whether `dispatch` contains a raindrop layer (bare or with its filter).
pub(crate) fn has_raindrop_layer(dispatch: &Dispatch) -> bool {
    dispatch.downcast_ref::<RaindropLayer>().is_some()
}

/// Writes a setup warning where the user will see it: as a WARN under
/// target `raindrop` when the current subscriber would show one, on stderr
/// otherwise (no subscriber yet, or a filter that hides the `raindrop` target).
pub(crate) fn emit(message: &str) {
    let shown = tracing::dispatcher::get_default(|d| !d.is::<NoSubscriber>())
        && tracing::enabled!(target: "raindrop", Level::WARN);
    if shown {
        tracing::warn!(target: "raindrop", "{message}");
    } else {
        // Not `eprintln!`, which panics when stderr is closed.
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "WARN raindrop: {message}");
    }
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
            Cause::NotRegistry
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
    if WARNED[cause.index()].load(Ordering::Relaxed)
        || WARNED[cause.index()].swap(true, Ordering::Relaxed)
    {
        return;
    }
    emit(&message(cause, &what(), span));
}

/// The text of a setup warning: the cause, then the fix.
pub(crate) fn message(cause: Cause, what: &str, span: Option<(Level, &str)>) -> String {
    match cause {
        Cause::NoSubscriber => format!(
            "{what}: no tracing subscriber is installed, so no raindrop \
             layer sees its span. Fix: install one with the raindrop layer, e.g. \
             `raindrop::tracing_init(&client)` (fmt logs + raindrop), or \
             `tracing_subscriber::registry().with(raindrop::layer(&client)).init()`."
        ),
        Cause::NoLayer => format!(
            "{what}: the current tracing subscriber has no raindrop layer. \
             A process has one global subscriber: if `tracing_subscriber::fmt::init()` (or \
             another `.init()`) ran first, a later one with the raindrop layer was refused. \
             Fix: add `raindrop::layer(&client)` to the subscriber you install, e.g. replace \
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
        Cause::NotRegistry => format!(
            "{what}: the raindrop layer is installed but the subscriber is \
             not built on `tracing_subscriber::Registry`, where the layer keeps its span \
             state. Fix: build it with `tracing_subscriber::registry().with(..)`."
        ),
    }
}

/// Names already warned about for a missing user id (bounded).
static NO_USER: Mutex<Option<HashSet<String>>> = Mutex::new(None);
const NO_USER_MAX: usize = 64;

/// Warns once per interaction name that an interaction finished without a
/// user id.
pub(crate) fn warn_no_user_id(name: &str, fn_name: Option<&str>) {
    {
        let mut seen = NO_USER.lock().unwrap_or_else(|e| e.into_inner());
        let seen = seen.get_or_insert_with(HashSet::new);
        if seen.len() >= NO_USER_MAX || !seen.insert(name.to_owned()) {
            return;
        }
    }
    let origin = match fn_name {
        Some(f) => format!("interaction `{name}` (#[raindrop::interaction] fn `{f}`)"),
        None => format!("interaction span `{name}`"),
    };
    emit(&format!(
        "{origin} finished without a user id; its event is sent with no user, so it cannot \
         be attributed or grouped by user. Fix: `#[raindrop::interaction(\"{name}\", user_id = ..)]` \
         with an expression of the arguments (e.g. `user_id = req.user_id`), or \
         `raindrop::resume_interaction().set_user_id(..)` inside it."
    ));
}
