//! Delivery accounting: every accepted item ends up delivered or dropped with a reason.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Why an item was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DropReason {
    /// The queue of the item's route was full when the call was made.
    QueueFull,
    /// The event's JSON exceeded 1 MiB.
    Oversize,
    /// The API answered with a permanent 4xx (or a redirect, which is not followed).
    Rejected,
    /// Every attempt failed with a retryable error.
    RetriesExhausted,
    /// The call was made after shutdown.
    AfterShutdown,
    /// The input failed validation.
    Invalid,
    /// Still queued or in flight when the shutdown deadline passed.
    ShutdownTimeout,
    /// The client is disabled (no write key and no local sink).
    Disabled,
    /// A finished interaction had no input, output or attachment.
    EmptyInteraction,
    /// A free function of the `raindrop` facade ran before `raindrop::init`.
    NotInitialized,
    /// Not kept by `sample_rate`.
    SampledOut,
    /// The before-send hook returned `false`.
    DroppedByHook,
    /// The before-send hook panicked on the item.
    HookPanicked,
    /// The bytes held for delivery were at `max_buffered_bytes` when the call was made.
    MemoryLimit,
    /// A delivery task ended without an answer (it panicked); the items in its request are lost.
    Internal,
}

const REASONS: usize = 15;

impl DropReason {
    /// All reasons, in display order.
    pub const ALL: [DropReason; REASONS] = [
        DropReason::QueueFull,
        DropReason::Oversize,
        DropReason::Rejected,
        DropReason::RetriesExhausted,
        DropReason::AfterShutdown,
        DropReason::Invalid,
        DropReason::ShutdownTimeout,
        DropReason::Disabled,
        DropReason::EmptyInteraction,
        DropReason::NotInitialized,
        DropReason::SampledOut,
        DropReason::DroppedByHook,
        DropReason::HookPanicked,
        DropReason::MemoryLimit,
        DropReason::Internal,
    ];

    /// A stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::Oversize => "oversize",
            DropReason::Rejected => "rejected",
            DropReason::RetriesExhausted => "retries_exhausted",
            DropReason::AfterShutdown => "after_shutdown",
            DropReason::Invalid => "invalid",
            DropReason::ShutdownTimeout => "shutdown_timeout",
            DropReason::Disabled => "disabled",
            DropReason::EmptyInteraction => "empty_interaction",
            DropReason::NotInitialized => "not_initialized",
            DropReason::SampledOut => "sampled_out",
            DropReason::DroppedByHook => "dropped_by_hook",
            DropReason::HookPanicked => "hook_panicked",
            DropReason::MemoryLimit => "memory_limit",
            DropReason::Internal => "internal",
        }
    }

    fn index(self) -> usize {
        DropReason::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

/// What kind of item was dropped: the units users think in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ItemKind {
    /// An `events/track` event (`track_ai`, `track`).
    Event,
    /// A signal (`track_signal`).
    Signal,
    /// An identify call.
    Identify,
    /// One update of an interaction (`begin`, `set_*`, `finish`).
    InteractionUpdate,
    /// A finished interaction whose final update never reached the API.
    Interaction,
    /// A span for the `traces` route.
    Span,
}

const KINDS: usize = 6;

impl ItemKind {
    /// All kinds, in display order.
    pub const ALL: [ItemKind; KINDS] = [
        ItemKind::Event,
        ItemKind::Signal,
        ItemKind::Identify,
        ItemKind::InteractionUpdate,
        ItemKind::Interaction,
        ItemKind::Span,
    ];

    /// A stable snake_case name (plural, as in log lines).
    pub fn as_str(self) -> &'static str {
        match self {
            ItemKind::Event => "events",
            ItemKind::Signal => "signals",
            ItemKind::Identify => "identifies",
            ItemKind::InteractionUpdate => "interaction updates",
            ItemKind::Interaction => "interactions",
            ItemKind::Span => "spans",
        }
    }

    fn index(self) -> usize {
        ItemKind::ALL.iter().position(|k| *k == self).unwrap_or(0)
    }
}

/// A snapshot of the client's counters, from [`Client::stats`](crate::Client::stats).
///
/// Items are tracking calls: one event, signal, identify, span or interaction
/// update. Updates of one interaction merged into one request count once each.
/// `queued == delivered + dropped_in_worker + pending` at any moment.
/// Losses are also counted per [`ItemKind`], including whole interactions
/// ([`ItemKind::Interaction`]: finished, and the final update never arrived).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Items accepted into the queue.
    pub queued: u64,
    /// Items delivered (a 2xx answer, or written to the local sink).
    pub delivered: u64,
    /// HTTP requests made, retries included.
    pub requests: u64,
    /// Retries made after a failed attempt.
    pub retries: u64,
    /// Items waiting in the queue right now (all routes).
    pub queue_depth: u64,
    /// The bound of each route's queue (`max_queue_size`).
    pub queue_capacity: u64,
    /// Bytes held for delivery right now (see `max_buffered_bytes`).
    pub buffered_bytes: u64,
    /// The byte bound (`max_buffered_bytes`).
    pub buffered_bytes_capacity: u64,
    /// Requests the local Workshop mirror accepted.
    pub workshop_sent: u64,
    /// Requests the local Workshop mirror did not accept (never retried;
    /// they do not affect delivery to the API).
    pub workshop_failures: u64,
    /// Incoming carriers (requests with raindrop `baggage`) whose
    /// interaction was not joined because they had no signature; their
    /// trace was continued.
    pub carriers_unsigned: u64,
    /// Incoming carriers refused because the signature was malformed, made
    /// with another key, or did not match what it came with.
    pub carriers_bad_signature: u64,
    /// Incoming carriers refused because their signature was older (or
    /// newer) than the replay window.
    pub carriers_stale: u64,
    /// Incoming sub-agent hand-offs refused because they were malformed:
    /// a field named twice with different values, a missing or bad id.
    pub carriers_malformed: u64,
    /// User id changes refused on an interaction joined from another
    /// service (the service that began it owns its user).
    pub joined_user_changes_refused: u64,
    /// Finishes refused on an interaction joined from another service that
    /// did not delegate finishing it.
    pub joined_finishes_refused: u64,
    /// Finishes ignored because the interaction was already finished.
    pub finishes_ignored: u64,
    /// Requests not mirrored to the Workshop because `max_in_flight` mirror
    /// requests were already under way (delivery to the API never waits
    /// for the mirror).
    pub workshop_skipped: u64,
    /// Model calls seen by an HTTP-level capture (`llm_http`) that could not
    /// be recorded whole: a request or response over the capture bound, a
    /// response body that did not parse, a stream cut short. The call went
    /// through untouched; its span lacks what was not read.
    pub llm_captures_incomplete: u64,
    /// Items written to the durable spool (`ClientOptions::spool`), replayed ones not again.
    pub spool_written: u64,
    /// Items the worker could not write to the spool (its `max_bytes`
    /// bound was reached, or a write failed): sent from memory, but they
    /// would not survive a restart.
    pub spool_not_written: u64,
    /// Items a previous process left in the spool, replayed by this one
    /// (counted in `queued` too).
    pub spool_replayed: u64,
    /// Damaged or unreadable parts of the spool skipped at replay: a torn
    /// or changed record region, an empty or headerless segment, a segment
    /// of a newer format version.
    pub spool_corrupt: u64,
    /// Bytes the spool holds on disk now.
    pub spool_bytes: u64,
    dropped: [[u64; REASONS]; KINDS],
    /// The part of the drops that had been queued first (settled on the worker).
    worker_dropped: u64,
    in_flight_limits: [u64; 5],
}

impl Stats {
    /// Items dropped for `reason` (interaction updates counted one by one,
    /// whole interactions not counted again).
    pub fn dropped(&self, reason: DropReason) -> u64 {
        ItemKind::ALL
            .iter()
            .filter(|k| **k != ItemKind::Interaction)
            .map(|k| self.dropped[k.index()][reason.index()])
            .sum()
    }
    /// Items dropped for any reason.
    pub fn dropped_total(&self) -> u64 {
        DropReason::ALL.iter().map(|r| self.dropped(*r)).sum()
    }
    /// Items of `kind` dropped for `reason`.
    pub fn lost(&self, kind: ItemKind, reason: DropReason) -> u64 {
        self.dropped[kind.index()][reason.index()]
    }
    /// Items of `kind` dropped for any reason; `lost_total(ItemKind::Interaction)`
    /// is the number of finished interactions that never arrived.
    pub fn lost_total(&self, kind: ItemKind) -> u64 {
        self.dropped[kind.index()].iter().sum()
    }
    /// `(reason, count)` for every reason with drops.
    pub fn drop_reasons(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL
            .iter()
            .map(|r| (*r, self.dropped(*r)))
            .filter(|(_, n)| *n > 0)
    }
    /// Requests the SDK currently allows in flight on a route (`"events/track"`,
    /// `"events/track_partial"`, `"signals/track"`, `"users/identify"`,
    /// `"traces"`), as its adaptive limiter chose them from the route's round
    /// trips, within `max_in_flight` / `max_partials_in_flight`. 0 before
    /// the route's first answer.
    pub fn in_flight_limit(&self, route: &str) -> u64 {
        const ROUTES: [&str; 5] = [
            "events/track",
            "events/track_partial",
            "signals/track",
            "users/identify",
            "traces",
        ];
        ROUTES
            .iter()
            .position(|r| *r == route)
            .map_or(0, |i| self.in_flight_limits[i])
    }

    /// Accepted items not yet delivered or dropped.
    pub fn pending(&self) -> u64 {
        self.queued
            .saturating_sub(self.delivered + self.worker_dropped)
    }
}

/// Shared atomic counters. Lock-free: the disabled path and every drop only
/// touch atomics.
/// Something refused to keep one service's requests out of another's
/// interactions, counted in [`Stats`] and warned at most every 30 s per cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    CarrierUnsigned,
    CarrierBadSignature,
    CarrierStale,
    CarrierMalformed,
    JoinedUserChange,
    JoinedFinish,
    FinishIgnored,
}

const REFUSALS: usize = 7;

impl Refusal {
    pub(crate) fn of_carrier(r: crate::propagation::CarrierRefusal) -> Refusal {
        use crate::propagation::CarrierRefusal as C;
        match r {
            C::Unsigned => Refusal::CarrierUnsigned,
            C::BadSignature => Refusal::CarrierBadSignature,
            C::Stale => Refusal::CarrierStale,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Counters {
    refusals: [AtomicU64; REFUSALS],
    refusal_log: [AtomicU64; REFUSALS],
    pub queued: AtomicU64,
    pub delivered: AtomicU64,
    pub requests: AtomicU64,
    pub retries: AtomicU64,
    pub workshop_sent: AtomicU64,
    pub workshop_failures: AtomicU64,
    pub workshop_skipped: AtomicU64,
    /// The durable spool's counters (written by the worker).
    pub spool: std::sync::Arc<crate::spool::SpoolCounters>,
    dropped: [[AtomicU64; REASONS]; KINDS],
    worker_dropped: AtomicU64,
    /// Per route (by `Route as usize`): the in-flight limit the worker chose.
    pub in_flight_limit: [AtomicU64; 5],
    /// Per reason: when it was last logged, in ms since [`epoch`] plus one (0: never).
    last_log: [AtomicU64; REASONS],
    high_water_log: AtomicU64,
    llm_captures_incomplete: AtomicU64,
    incomplete_capture_log: AtomicU64,
}

const LOG_EVERY: Duration = Duration::from_secs(30);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Claims the right to log now for a limiter slot: the first call wins, then
/// at most one call every [`LOG_EVERY`]. Lock-free.
fn claim_log(slot: &AtomicU64) -> bool {
    let now = epoch().elapsed().as_millis() as u64 + 1;
    let last = slot.load(Relaxed);
    if last != 0 && now.saturating_sub(last) < LOG_EVERY.as_millis() as u64 {
        return false;
    }
    slot.compare_exchange(last, now, Relaxed, Relaxed).is_ok()
}

impl Counters {
    pub fn new() -> Self {
        let _ = epoch();
        Counters {
            refusals: Default::default(),
            refusal_log: Default::default(),
            queued: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            workshop_sent: AtomicU64::new(0),
            workshop_failures: AtomicU64::new(0),
            workshop_skipped: AtomicU64::new(0),
            spool: Default::default(),
            dropped: Default::default(),
            worker_dropped: AtomicU64::new(0),
            in_flight_limit: Default::default(),
            last_log: Default::default(),
            high_water_log: AtomicU64::new(0),
            llm_captures_incomplete: AtomicU64::new(0),
            incomplete_capture_log: AtomicU64::new(0),
        }
    }

    /// Counts a drop of items that never entered the queue.
    pub fn drop_unqueued(&self, kind: ItemKind, reason: DropReason, n: u64, detail: &str) {
        self.dropped[kind.index()][reason.index()].fetch_add(n, Relaxed);
        self.log_drop(kind, reason, n, detail);
    }

    /// Counts a drop of items that were queued.
    pub fn drop_queued(&self, kind: ItemKind, reason: DropReason, n: u64, detail: &str) {
        if n == 0 {
            return;
        }
        self.dropped[kind.index()][reason.index()].fetch_add(n, Relaxed);
        self.worker_dropped.fetch_add(n, Relaxed);
        self.log_drop(kind, reason, n, detail);
    }

    /// Counts whole interactions lost (their final update never arrived);
    /// their updates are counted separately, so this settles nothing.
    pub fn interaction_lost(&self, reason: DropReason, detail: &str) {
        self.dropped[ItemKind::Interaction.index()][reason.index()].fetch_add(1, Relaxed);
        self.log_drop(ItemKind::Interaction, reason, 1, detail);
    }

    /// The first drop of each reason warns; later ones at most every 30 s, with the total.
    fn log_drop(&self, kind: ItemKind, reason: DropReason, n: u64, detail: &str) {
        if !claim_log(&self.last_log[reason.index()]) {
            return;
        }
        let total = self.dropped[kind.index()][reason.index()].load(Relaxed);
        let what = kind.as_str();
        if matches!(
            reason,
            DropReason::Disabled | DropReason::SampledOut | DropReason::DroppedByHook
        ) {
            // Said once, loudly, when the client was built; or asked for.
            tracing::debug!(target: "raindrop", reason = reason.as_str(), dropped = n, total, "raindrop dropped {n} {what}: {detail}");
        } else {
            tracing::warn!(target: "raindrop", reason = reason.as_str(), dropped = n, total, "raindrop dropped {n} {what} ({total} so far for this reason): {detail}; see Client::stats()");
        }
    }

    /// Counts a refusal; the first of each cause warns, later ones at most
    /// every 30 s, with the total.
    pub fn refuse(&self, r: Refusal, detail: &str) {
        let i = r as usize;
        let total = self.refusals[i].fetch_add(1, Relaxed) + 1;
        if claim_log(&self.refusal_log[i]) {
            tracing::warn!(target: "raindrop", total, "raindrop refused: {detail} ({total} so far); see Client::stats()");
        }
    }

    /// A route's queue is over 80 % full: warn at most every 30 s.
    pub fn warn_high_water(&self, route: &str, capacity: usize) {
        if !claim_log(&self.high_water_log) {
            return;
        }
        tracing::warn!(target: "raindrop", route, capacity, "raindrop queue for {route} is over 80% full; items will be dropped if the backend stays slower than the producer");
    }

    /// Counts a model call captured in part; the first warns, later ones at
    /// most every 30 s, with the total.
    pub fn incomplete_capture(&self, detail: &str) {
        let total = self.llm_captures_incomplete.fetch_add(1, Relaxed) + 1;
        if claim_log(&self.incomplete_capture_log) {
            tracing::warn!(target: "raindrop", total, "raindrop recorded a model call in part: {detail} ({total} so far); see Client::stats()");
        }
    }

    fn refused(&self, r: Refusal) -> u64 {
        self.refusals[r as usize].load(Relaxed)
    }

    pub fn snapshot(
        &self,
        queue_depth: u64,
        queue_capacity: u64,
        buffered_bytes: u64,
        buffered_bytes_capacity: u64,
    ) -> Stats {
        let spool = self.spool.snapshot();
        let mut s = Stats {
            spool_written: spool.written,
            spool_not_written: spool.not_written,
            spool_replayed: spool.replayed,
            spool_corrupt: spool.corrupt,
            spool_bytes: spool.bytes,
            buffered_bytes,
            buffered_bytes_capacity,
            queued: self.queued.load(Relaxed),
            delivered: self.delivered.load(Relaxed),
            requests: self.requests.load(Relaxed),
            retries: self.retries.load(Relaxed),
            queue_depth,
            queue_capacity,
            workshop_sent: self.workshop_sent.load(Relaxed),
            workshop_failures: self.workshop_failures.load(Relaxed),
            carriers_unsigned: self.refused(Refusal::CarrierUnsigned),
            carriers_bad_signature: self.refused(Refusal::CarrierBadSignature),
            carriers_stale: self.refused(Refusal::CarrierStale),
            carriers_malformed: self.refused(Refusal::CarrierMalformed),
            joined_user_changes_refused: self.refused(Refusal::JoinedUserChange),
            joined_finishes_refused: self.refused(Refusal::JoinedFinish),
            finishes_ignored: self.refused(Refusal::FinishIgnored),
            workshop_skipped: self.workshop_skipped.load(Relaxed),
            llm_captures_incomplete: self.llm_captures_incomplete.load(Relaxed),
            dropped: [[0; REASONS]; KINDS],
            worker_dropped: self.worker_dropped.load(Relaxed),
            in_flight_limits: std::array::from_fn(|i| self.in_flight_limit[i].load(Relaxed)),
        };
        for (k, row) in self.dropped.iter().enumerate() {
            for (r, a) in row.iter().enumerate() {
                s.dropped[k][r] = a.load(Relaxed);
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_limiter_lets_the_first_through_then_waits() {
        let slot = AtomicU64::new(0);
        assert!(claim_log(&slot));
        assert!(!claim_log(&slot));
    }

    #[test]
    fn incomplete_captures_are_counted() {
        let c = Counters::new();
        c.incomplete_capture("x");
        c.incomplete_capture("x");
        assert_eq!(c.snapshot(0, 1, 0, 0).llm_captures_incomplete, 2);
    }

    #[test]
    fn interactions_are_not_counted_twice_as_items() {
        let c = Counters::new();
        c.drop_queued(ItemKind::InteractionUpdate, DropReason::Rejected, 3, "x");
        c.interaction_lost(DropReason::Rejected, "x");
        let s = c.snapshot(0, 1, 0, 0);
        assert_eq!(s.dropped(DropReason::Rejected), 3);
        assert_eq!(s.lost_total(ItemKind::Interaction), 1);
        assert_eq!(s.lost(ItemKind::InteractionUpdate, DropReason::Rejected), 3);
        assert_eq!(s.queued, 0);
    }
}
