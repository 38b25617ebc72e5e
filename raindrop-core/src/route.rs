//! The ingestion routes: where each kind of item is sent, relative to the
//! base URL. Items name their route (`Item::route`), the queue budgets per
//! route and the worker keeps one lane per route.

use crate::stats::ItemKind;

/// The ingestion routes, relative to the base URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    Track = 0,
    Partial = 1,
    Signals = 2,
    Identify = 3,
    Traces = 4,
}

impl Route {
    pub(crate) const ALL: [Route; 5] = [
        Route::Track,
        Route::Partial,
        Route::Signals,
        Route::Identify,
        Route::Traces,
    ];

    /// What one item of this route is, for loss accounting.
    pub fn kind(self) -> ItemKind {
        match self {
            Route::Track => ItemKind::Event,
            Route::Partial => ItemKind::InteractionUpdate,
            Route::Signals => ItemKind::Signal,
            Route::Identify => ItemKind::Identify,
            Route::Traces => ItemKind::Span,
        }
    }

    pub fn path(self) -> &'static str {
        match self {
            Route::Track => "events/track",
            Route::Partial => "events/track_partial",
            Route::Signals => "signals/track",
            Route::Identify => "users/identify",
            Route::Traces => "traces",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Route;

    /// The worker's route table and the per-route counters are indexed by
    /// `route as usize`: `ALL` must list every route at its own index.
    #[test]
    fn all_lists_each_route_at_its_index() {
        for (i, route) in Route::ALL.into_iter().enumerate() {
            assert_eq!(route as usize, i, "{route:?}");
        }
    }
}
