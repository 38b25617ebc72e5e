//! Delivery accounting: every accepted item ends up delivered or dropped with a reason.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Why an item was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DropReason {
    /// The bounded queue was full when the call was made.
    QueueFull,
    /// The event's JSON exceeded 1 MiB.
    Oversize,
    /// The API answered with a permanent 4xx.
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
}

impl DropReason {
    /// All reasons, in display order.
    pub const ALL: [DropReason; 9] = [
        DropReason::QueueFull,
        DropReason::Oversize,
        DropReason::Rejected,
        DropReason::RetriesExhausted,
        DropReason::AfterShutdown,
        DropReason::Invalid,
        DropReason::ShutdownTimeout,
        DropReason::Disabled,
        DropReason::EmptyInteraction,
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
        }
    }

    fn index(self) -> usize {
        DropReason::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

/// A snapshot of the client's counters, from [`Client::stats`](crate::Client::stats).
///
/// Items are tracking calls: one event, signal, identify, span or interaction
/// update. Updates of one interaction merged into one request count once each.
/// `queued == delivered + dropped_in_worker + in_flight` at any quiet moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Items accepted into the queue.
    pub queued: u64,
    /// Items delivered (a 2xx answer, or written to the local sink).
    pub delivered: u64,
    /// HTTP requests made, retries included.
    pub requests: u64,
    /// Retries made after a failed attempt.
    pub retries: u64,
    /// Items dropped, by reason, in [`DropReason::ALL`] order.
    pub dropped_by_reason: [u64; 9],
    /// The part of `dropped_by_reason` that had been queued first.
    worker_dropped: [u64; 9],
}

impl Stats {
    /// Items dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped_by_reason[reason.index()]
    }
    /// Items dropped for any reason.
    pub fn dropped_total(&self) -> u64 {
        self.dropped_by_reason.iter().sum()
    }
    /// Accepted items not yet delivered or dropped.
    pub fn pending(&self) -> u64 {
        let settled = self.delivered + self.worker_dropped.iter().sum::<u64>();
        self.queued.saturating_sub(settled)
    }
}

/// Shared atomic counters.
#[derive(Debug)]
pub(crate) struct Counters {
    pub queued: AtomicU64,
    pub delivered: AtomicU64,
    pub requests: AtomicU64,
    pub retries: AtomicU64,
    dropped: [AtomicU64; 9],
    /// Drops of items that had been queued (settled on the worker).
    worker_dropped: [AtomicU64; 9],
    last_log: Mutex<[Option<(Instant, u64)>; 9]>,
    high_water_log: Mutex<Option<Instant>>,
}

const LOG_EVERY: Duration = Duration::from_secs(30);

impl Counters {
    pub fn new() -> Self {
        Counters {
            queued: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            dropped: Default::default(),
            worker_dropped: Default::default(),
            last_log: Mutex::new([None; 9]),
            high_water_log: Mutex::new(None),
        }
    }

    /// Items accepted into the queue and since settled (delivered or dropped on the worker).
    pub fn settled(&self) -> u64 {
        self.delivered.load(Relaxed)
            + self
                .worker_dropped
                .iter()
                .map(|a| a.load(Relaxed))
                .sum::<u64>()
    }

    /// Counts a drop of items that never entered the queue.
    pub fn drop_unqueued(&self, reason: DropReason, n: u64, detail: &str) {
        self.dropped[reason.index()].fetch_add(n, Relaxed);
        self.log_drop(reason, n, detail);
    }

    /// Counts a drop of items that were queued.
    pub fn drop_queued(&self, reason: DropReason, n: u64, detail: &str) {
        if n == 0 {
            return;
        }
        self.dropped[reason.index()].fetch_add(n, Relaxed);
        self.worker_dropped[reason.index()].fetch_add(n, Relaxed);
        self.log_drop(reason, n, detail);
    }

    /// The first drop of each reason warns; later ones at most every 30 s, with the total.
    fn log_drop(&self, reason: DropReason, n: u64, detail: &str) {
        let i = reason.index();
        let total = self.dropped[i].load(Relaxed);
        let Ok(mut last) = self.last_log.lock() else {
            return;
        };
        let now = Instant::now();
        let due = match last[i] {
            None => true,
            Some((at, _)) => now.duration_since(at) >= LOG_EVERY,
        };
        if !due {
            return;
        }
        last[i] = Some((now, total));
        drop(last);
        if reason == DropReason::Disabled {
            tracing::debug!(target: "raindrop", reason = reason.as_str(), dropped = n, total, "raindrop dropped {n} item(s): {detail}");
        } else {
            tracing::warn!(target: "raindrop", reason = reason.as_str(), dropped = n, total, "raindrop dropped {n} item(s): {detail}");
        }
    }

    /// The queue is over 80 % full: warn at most every 30 s.
    pub fn warn_high_water(&self, capacity: usize) {
        let Ok(mut last) = self.high_water_log.try_lock() else {
            return;
        };
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < LOG_EVERY) {
            return;
        }
        *last = Some(now);
        drop(last);
        tracing::warn!(target: "raindrop", capacity, "raindrop queue is over 80% full; events will be dropped if the backend stays slower than the producer");
    }

    pub fn snapshot(&self) -> Stats {
        let mut s = Stats {
            queued: self.queued.load(Relaxed),
            delivered: self.delivered.load(Relaxed),
            requests: self.requests.load(Relaxed),
            retries: self.retries.load(Relaxed),
            dropped_by_reason: [0; 9],
            worker_dropped: [0; 9],
        };
        for i in 0..9 {
            s.dropped_by_reason[i] = self.dropped[i].load(Relaxed);
            s.worker_dropped[i] = self.worker_dropped[i].load(Relaxed);
        }
        s
    }
}
