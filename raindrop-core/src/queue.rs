//! The queue between callers and the worker: one FIFO channel, bounded per
//! route in items and across routes in bytes.
//!
//! Every route (`events/track`, `events/track_partial`, signals, identify,
//! traces) has its own budget of `max_queue_size` items, counted from the
//! moment a caller queues an item until the worker puts it in flight (or
//! drops it). A slow or rate-limited route therefore fills only its own
//! budget: intake for the others goes on. The channel itself is unbounded
//! because the budgets bound it, which also lets flush and shutdown markers
//! travel in the same FIFO order as the data.
//!
//! The byte budget (`max_buffered_bytes`) is charged with each item's
//! [`cost`](crate::item::Item::cost) at the call and released only when the
//! item is delivered or dropped: it covers the item in the channel, in the
//! partial buffer, and as a request body waiting or in flight.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, Notify};

use crate::item::Item;
use crate::route::Route;
use crate::time::deadline_in;

/// Why [`Queue::push`] refused an item.
pub(crate) enum Refused {
    /// The item's route is at its budget.
    Full(Route),
    /// The byte budget would be exceeded.
    Bytes,
    /// The worker has stopped.
    Closed,
}

/// The callers' end: the sender and the shared budgets.
pub(crate) struct Queue {
    tx: mpsc::UnboundedSender<Queued>,
    budget: Arc<Budget>,
}

/// The per-route budgets, shared with the worker (which releases them).
/// Kept apart from the sender so that the channel closes when the last
/// client handle is gone.
pub(crate) struct Budget {
    depth: [AtomicUsize; 5],
    capacity: usize,
    /// Bytes charged and not yet released, all routes.
    bytes: AtomicUsize,
    max_bytes: usize,
    /// Callers waiting for room ([`Queue::ready`], [`Queue::wait_ready`]).
    waiters: AtomicUsize,
    /// A waiter found no room and is about to sleep: the next release that
    /// makes room wakes the waiters and disarms this. Without it every
    /// release while a caller waited was a futex call on the worker (four
    /// per request in the 1M-event burst, with the producer out of room).
    armed: AtomicBool,
    /// Times a release woke the waiters (for tests).
    wakeups: AtomicUsize,
    /// The worker has stopped: waiting for room is pointless.
    stopped: AtomicBool,
    notify: Notify,
    lock: Mutex<()>,
    cond: Condvar,
}

/// An item in the channel with the bytes charged for it.
pub(crate) struct Queued {
    pub item: Item,
    pub cost: u64,
}

impl Queue {
    pub fn new(
        capacity: usize,
        max_bytes: usize,
    ) -> (Queue, Arc<Budget>, mpsc::UnboundedReceiver<Queued>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let budget = Arc::new(Budget {
            depth: Default::default(),
            capacity: capacity.max(1),
            bytes: AtomicUsize::new(0),
            max_bytes: max_bytes.max(1),
            waiters: AtomicUsize::new(0),
            armed: AtomicBool::new(false),
            wakeups: AtomicUsize::new(0),
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

    /// Queues a data item within its route's budget and the byte budget
    /// (`cost` bytes), or a control item always.
    pub fn push(&self, item: Item, cost: u64) -> Result<(), Refused> {
        if let Some(route) = item.route() {
            let b = &self.budget;
            let d = &b.depth[route as usize];
            if d.fetch_add(1, Ordering::AcqRel) >= b.capacity {
                d.fetch_sub(1, Ordering::AcqRel);
                return Err(Refused::Full(route));
            }
            let cost = cost as usize;
            if b.bytes
                .fetch_add(cost, Ordering::AcqRel)
                .saturating_add(cost)
                > b.max_bytes
            {
                b.bytes.fetch_sub(cost, Ordering::AcqRel);
                d.fetch_sub(1, Ordering::AcqRel);
                return Err(Refused::Bytes);
            }
            if self
                .tx
                .send(Queued {
                    item,
                    cost: cost as u64,
                })
                .is_err()
            {
                b.bytes.fetch_sub(cost, Ordering::AcqRel);
                d.fetch_sub(1, Ordering::AcqRel);
                return Err(Refused::Closed);
            }
            return Ok(());
        }
        self.tx
            .send(Queued { item, cost: 0 })
            .map_err(|_| Refused::Closed)
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

    /// Charges `cost` bytes for an update merged into one already queued (it
    /// takes no queue slot of its own); `false` when over the byte budget.
    pub fn charge_bytes(&self, cost: u64) -> bool {
        let cost = cost as usize;
        if self
            .bytes
            .fetch_add(cost, Ordering::AcqRel)
            .saturating_add(cost)
            > self.max_bytes
        {
            self.bytes.fetch_sub(cost, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Charges an item the worker replays from the spool, as a caller's
    /// push would (the worker replays only while there is room).
    pub fn admit_replayed(&self, route: Route, cost: u64) {
        self.depth[route as usize].fetch_add(1, Ordering::AcqRel);
        self.bytes.fetch_add(cost as usize, Ordering::AcqRel);
    }

    /// Bytes held for delivery now.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// The byte bound.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
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
        self.wake_if_room();
    }

    /// Items worth `n` bytes were delivered or dropped.
    pub fn release_bytes(&self, n: u64) {
        if n == 0 {
            return;
        }
        self.bytes.fetch_sub(n as usize, Ordering::AcqRel);
        self.wake_if_room();
    }

    fn wake_if_room(&self) {
        // Pairs with the fence in `arm`: either the waiter sees this
        // release's room, or this sees its `armed` (never neither).
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.waiters.load(Ordering::Relaxed) > 0
            && self.armed.load(Ordering::Relaxed)
            && self.has_room()
            && self.armed.swap(false, Ordering::AcqRel)
        {
            self.wakeups.fetch_add(1, Ordering::Relaxed);
            self.notify.notify_waiters();
            let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.cond.notify_all();
        }
    }

    /// A waiter is about to check for room and sleep if there is none.
    fn arm(&self) {
        self.armed.store(true, Ordering::Relaxed);
        std::sync::atomic::fence(Ordering::SeqCst);
    }

    /// Every route is at most half full, and half the bytes are free: what a
    /// waiting caller waits for. It can then make a handful of tracking calls
    /// without any being refused, even with many producers doing the same.
    pub fn has_room(&self) -> bool {
        self.at_most(1, 2)
    }

    /// Every route is at most five eighths full, and so are the bytes: a
    /// caller that is not waiting goes on. The gap between
    /// this and [`has_room`](Self::has_room) is what makes waiting cheap:
    /// with one threshold, producers at the line were woken for each request
    /// the worker sent (ten events) and blocked again after ten calls, a
    /// futex wake and two context switches per ten events; with the gap a
    /// wake lets an eighth of the queue through (125 requests by default).
    /// Five eighths, not more: a fuller queue is more memory held.
    fn not_crowded(&self) -> bool {
        self.at_most(5, 8)
    }

    /// Every route's depth and the bytes held are at most `num / den` of their bounds.
    fn at_most(&self, num: usize, den: usize) -> bool {
        self.bytes.load(Ordering::Acquire) <= self.max_bytes / den * num
            && self
                .depth
                .iter()
                .all(|d| d.load(Ordering::Acquire) <= self.capacity * num / den)
    }

    /// Returns at once while [`not_crowded`](Self::not_crowded), else waits
    /// until [`has_room`](Self::has_room). Cancellation-safe: a
    /// dropped future no longer counts as a waiter.
    pub async fn ready(&self) {
        if self.not_crowded() {
            return;
        }
        let _waiting = Waiting::new(&self.waiters);
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // Armed only when about to sleep, so a caller woken with room
            // leaves without arming (which would cost the worker a wake
            // nobody waits for).
            if self.has_room() || self.stopped.load(Ordering::Acquire) {
                break;
            }
            self.arm();
            if self.has_room() || self.stopped.load(Ordering::Acquire) {
                break;
            }
            notified.await;
        }
    }

    /// Returns at once while [`not_crowded`](Self::not_crowded), else blocks
    /// until [`has_room`](Self::has_room) or `timeout`; returns whether there is room.
    pub fn wait_ready(&self, timeout: Duration) -> bool {
        if self.not_crowded() {
            return true;
        }
        let deadline = deadline_in(timeout);
        let _waiting = Waiting::new(&self.waiters);
        let mut guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let room = loop {
            if self.has_room() {
                break true;
            }
            self.arm();
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
        room
    }
}

/// One waiter counted in [`Budget::waiters`] for as long as it lives, so a
/// dropped `ready()` future cannot leave the count raised (which would make
/// every later release on the worker take the lock).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(waiters: &'a AtomicUsize) -> Self {
        waiters.fetch_add(1, Ordering::AcqRel);
        Waiting(waiters)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::item::Item;
    use crate::model::Event;

    fn item() -> Item {
        Item::Event(Box::new(
            crate::validate::event(Event::new("u", "e")).unwrap(),
        ))
    }

    #[test]
    fn bytes_are_bounded_across_routes_and_released_when_settled() {
        let (q, budget, _rx) = Queue::new(100, 1000);
        assert!(q.push(item(), 600).is_ok());
        assert!(matches!(q.push(item(), 600), Err(Refused::Bytes)));
        assert_eq!(budget.bytes(), 600, "a refusal charges nothing");
        assert!(!budget.has_room(), "over half the bytes: no room");
        budget.release_bytes(600);
        assert!(budget.has_room());
        assert!(q.push(item(), 600).is_ok());
    }

    #[test]
    fn a_dropped_ready_future_is_no_longer_a_waiter() {
        let (q, budget, _rx) = Queue::new(2, 1 << 20);
        q.push(item(), 1).ok();
        q.push(item(), 1).ok();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let waited = rt.block_on(async {
            tokio::time::timeout(Duration::from_millis(20), budget.ready()).await
        });
        assert!(waited.is_err(), "no room: still waiting when dropped");
        assert_eq!(budget.waiters.load(Ordering::Acquire), 0);
        assert!(!budget.wait_ready(Duration::from_millis(10)));
        assert_eq!(budget.waiters.load(Ordering::Acquire), 0);
    }

    /// A caller waiting for room is woken once when there is room, not once
    /// per release after that (each wake is a futex call on the worker), and
    /// never misses the release that makes room (the async wait has no
    /// timeout of its own to hide a lost wake-up).
    #[test]
    fn waiters_are_woken_once_per_wait_and_never_missed() {
        let (q, budget, _rx) = Queue::new(100, 1 << 20);
        for round in 0..50 {
            while q.push(item(), 1).is_ok() {}
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let releaser = {
                let budget = budget.clone();
                std::thread::spawn(move || {
                    while budget.waiters.load(Ordering::Acquire) == 0 {
                        std::thread::yield_now();
                    }
                    // Release everything, one item at a time.
                    for _ in 0..100 {
                        budget.release(Route::Track, 1);
                        budget.release_bytes(1);
                    }
                })
            };
            let woke = rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(10), budget.ready()).await
            });
            releaser.join().unwrap();
            assert!(woke.is_ok(), "round {round}: the wake-up was lost");
            let wakeups = budget.wakeups.swap(0, Ordering::Relaxed);
            // One, or two when room appeared between the waiter's arming
            // and its second look (it then leaves armed); never one per
            // release (39 here before).
            assert!(
                wakeups <= 2,
                "round {round}: {wakeups} wake-ups for one wait"
            );
        }
    }

    /// A caller goes on up to five eighths full; once past it, it waits
    /// until the queue is back to half.
    #[test]
    fn waiting_starts_past_five_eighths_and_ends_at_half() {
        let (q, budget, _rx) = Queue::new(100, 1 << 20);
        for _ in 0..62 {
            q.push(item(), 1).ok();
        }
        assert!(budget.wait_ready(Duration::ZERO), "62 of 100: goes on");
        q.push(item(), 1).ok();
        assert!(!budget.wait_ready(Duration::from_millis(10)), "63: waits");
        let done = Arc::new(AtomicBool::new(false));
        let waiter = {
            let (budget, done) = (budget.clone(), done.clone());
            std::thread::spawn(move || {
                let room = budget.wait_ready(Duration::from_secs(10));
                done.store(true, Ordering::Release);
                room
            })
        };
        while budget.waiters.load(Ordering::Acquire) == 0 {
            std::thread::yield_now();
        }
        budget.release(Route::Track, 12);
        // Longer than the waiter's 50 ms re-check.
        std::thread::sleep(Duration::from_millis(120));
        assert!(!done.load(Ordering::Acquire), "51: a waiter still waits");
        budget.release(Route::Track, 1);
        assert!(
            waiter.join().unwrap(),
            "50: back to half, the waiter goes on"
        );
    }
}
