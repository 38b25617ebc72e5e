//! The queue between callers and the worker: one FIFO channel, bounded per route.
//!
//! Every route (`events/track`, `events/track_partial`, signals, identify,
//! traces) has its own budget of `max_queue_size` items, counted from the
//! moment a caller queues an item until the worker puts it in flight (or
//! drops it). A slow or rate-limited route therefore fills only its own
//! budget: intake for the others goes on. The channel itself is unbounded
//! because the budgets bound it, which also lets flush and shutdown markers
//! travel in the same FIFO order as the data.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, Notify};

use crate::item::Item;
use crate::time::deadline_in;
use crate::worker::Route;

/// Why [`Queue::push`] refused an item.
pub(crate) enum Refused {
    /// The item's route is at its budget.
    Full(Route),
    /// The worker has stopped.
    Closed,
}

/// The callers' end: the sender and the shared budgets.
pub(crate) struct Queue {
    tx: mpsc::UnboundedSender<Item>,
    budget: Arc<Budget>,
}

/// The per-route budgets, shared with the worker (which releases them).
/// Kept apart from the sender so that the channel closes when the last
/// client handle is gone.
pub(crate) struct Budget {
    depth: [AtomicUsize; 5],
    capacity: usize,
    /// Callers waiting for room ([`Queue::ready`], [`Queue::wait_ready`]).
    waiters: AtomicUsize,
    /// The worker has stopped: waiting for room is pointless.
    stopped: AtomicBool,
    notify: Notify,
    lock: Mutex<()>,
    cond: Condvar,
}

impl Queue {
    pub fn new(capacity: usize) -> (Queue, Arc<Budget>, mpsc::UnboundedReceiver<Item>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let budget = Arc::new(Budget {
            depth: Default::default(),
            capacity: capacity.max(1),
            waiters: AtomicUsize::new(0),
            stopped: AtomicBool::new(false),
            notify: Notify::new(),
            lock: Mutex::new(()),
            cond: Condvar::new(),
        });
        (
            Queue {
                tx,
                budget: budget.clone(),
            },
            budget,
            rx,
        )
    }

    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    /// Queues a data item within its route's budget, or a control item always.
    pub fn push(&self, item: Item) -> Result<(), Refused> {
        if let Some(route) = item.route() {
            let b = &self.budget;
            let d = &b.depth[route as usize];
            if d.fetch_add(1, Ordering::AcqRel) >= b.capacity {
                d.fetch_sub(1, Ordering::AcqRel);
                return Err(Refused::Full(route));
            }
            if self.tx.send(item).is_err() {
                d.fetch_sub(1, Ordering::AcqRel);
                return Err(Refused::Closed);
            }
            return Ok(());
        }
        self.tx.send(item).map_err(|_| Refused::Closed)
    }
}

impl Budget {
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Items queued and not yet in flight, all routes.
    pub fn depth(&self) -> usize {
        self.depth.iter().map(|d| d.load(Ordering::Relaxed)).sum()
    }

    /// Items queued on `route` and not yet in flight.
    pub fn route_depth(&self, route: Route) -> usize {
        self.depth[route as usize].load(Ordering::Relaxed)
    }

    /// The worker is gone; wakes every waiter.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.notify.notify_waiters();
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.cond.notify_all();
    }

    /// The worker took `n` items of `route` out of its backlog (in flight or dropped).
    pub fn release(&self, route: Route, n: u64) {
        if n == 0 {
            return;
        }
        self.depth[route as usize].fetch_sub(n as usize, Ordering::AcqRel);
        if self.waiters.load(Ordering::Acquire) > 0 && self.has_room() {
            self.notify.notify_waiters();
            let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.cond.notify_all();
        }
    }

    /// Every route is at most half full: a caller that waited for this can
    /// make a handful of tracking calls without any being refused, even with
    /// many producers doing the same.
    pub fn has_room(&self) -> bool {
        self.depth
            .iter()
            .all(|d| d.load(Ordering::Acquire) <= self.capacity / 2)
    }

    /// Waits until [`has_room`](Self::has_room).
    pub async fn ready(&self) {
        if self.has_room() {
            return;
        }
        self.waiters.fetch_add(1, Ordering::AcqRel);
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.has_room() || self.stopped.load(Ordering::Acquire) {
                break;
            }
            notified.await;
        }
        self.waiters.fetch_sub(1, Ordering::AcqRel);
    }

    /// Blocks until [`has_room`](Self::has_room) or `timeout`; returns whether there is room.
    pub fn wait_ready(&self, timeout: Duration) -> bool {
        if self.has_room() {
            return true;
        }
        let deadline = deadline_in(timeout);
        self.waiters.fetch_add(1, Ordering::AcqRel);
        let mut guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let room = loop {
            if self.has_room() {
                break true;
            }
            let now = std::time::Instant::now();
            if now >= deadline || self.stopped.load(Ordering::Acquire) {
                break false;
            }
            // Bounded waits: a missed wake-up costs at most 50 ms, never a hang.
            let wait = (deadline - now).min(Duration::from_millis(50));
            guard = match self.cond.wait_timeout(guard, wait) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        };
        drop(guard);
        self.waiters.fetch_sub(1, Ordering::AcqRel);
        room
    }
}
