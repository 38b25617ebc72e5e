//! Where the worker meets the durable spool (`crate::spool`): every hook in
//! `mod.rs` is marked `SPOOL HOOK` and calls into this file.
//!
//! * an item taken from the queue is appended with its sequence number
//!   before it can be sent (written at [`Worker::spool_step`], which runs
//!   before the lanes are pumped);
//! * every 100 ms, segments whose items have all settled (nothing older
//!   than their last sequence number is unsettled) are deleted;
//! * an item given up on for a transient reason keeps its segments for the
//!   next start; after the shutdown deadline nothing is deleted;
//! * at start, a previous process's items are replayed, in order, before
//!   new ones (which wait in `held`), a window at a time.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{Route, Worker, INTAKE_BURST};
use crate::item::{InteractionUpdate, Item};
use crate::queue::Queued;
use crate::spool::{Replayed, Spool};
use crate::stats::DropReason;

/// How often settled segments are looked for.
const SETTLE_EVERY: Duration = Duration::from_millis(100);

pub(super) struct SpoolState {
    spool: Option<Spool>,
    /// Items that arrived while a previous process's items were replaying.
    held: VecDeque<Queued>,
    last_settle: Instant,
    /// Replay has more to feed and room for it: wake again at once.
    more: bool,
}

impl SpoolState {
    pub fn new(spool: Option<Spool>) -> Self {
        SpoolState {
            spool,
            held: VecDeque::new(),
            last_settle: Instant::now(),
            more: false,
        }
    }

    /// When the loop must wake for the spool.
    pub fn wake_at(&self) -> Option<Instant> {
        self.more.then(Instant::now)
    }

    pub fn append_wire(&mut self, route: Route, json: &[u8], seq: u64) {
        if let Some(s) = &mut self.spool {
            s.append_wire(route, json, seq);
        }
    }

    /// Items from `seq` on were given up on: for a reason that may not hold
    /// at the next start, their segments stay for it.
    pub fn keep_if_transient(&mut self, reason: DropReason, seq: u64) {
        let transient = matches!(
            reason,
            DropReason::RetriesExhausted | DropReason::ShutdownTimeout | DropReason::Internal
        );
        if let (true, Some(s)) = (transient, &mut self.spool) {
            s.keep_from(seq);
        }
    }

    pub fn freeze(&mut self) {
        if let Some(s) = &mut self.spool {
            s.freeze();
        }
    }

    fn replaying(&self) -> bool {
        self.spool.as_ref().is_some_and(Spool::replaying)
    }
}

impl Worker {
    /// Holds `item` back while replay runs (a shutdown goes through: it
    /// ends the replay); `None` when held.
    pub(super) fn spool_hold(&mut self, item: Item, cost: u64) -> Option<Item> {
        if !self.spool.replaying() || matches!(item, Item::Shutdown(_)) {
            return Some(item);
        }
        self.spool.held.push_back(Queued { item, cost });
        None
    }

    /// Appends an interaction update, its content switched off or redacted
    /// first so nothing the options remove reaches the disk.
    pub(super) fn spool_update(&mut self, patch: &mut InteractionUpdate, updates: u64, seq: u64) {
        if let Some(s) = &mut self.spool.spool {
            self.cfg.prepare.update_content(patch);
            s.append_update(patch, updates, seq);
        }
    }

    /// Replays a window, writes what was appended, deletes what settled.
    pub(super) fn spool_step(&mut self, now: Instant) {
        let Some(mut spool) = self.spool.spool.take() else {
            return;
        };
        self.spool.more = false;
        if spool.replaying() {
            if self.shutdown.is_some() || !self.data_open {
                spool.stop_replay();
            } else {
                self.replay_some(&mut spool, now);
            }
        }
        let done = !spool.replaying();
        self.spool.spool = Some(spool);
        if done {
            for q in std::mem::take(&mut self.spool.held) {
                self.on_item(q.item, q.cost, now);
            }
        }
        let settle_due =
            self.draining() || now.duration_since(self.spool.last_settle) >= SETTLE_EVERY;
        let watermark = settle_due.then(|| self.oldest_unsettled().unwrap_or(self.received));
        if let Some(spool) = &mut self.spool.spool {
            spool.commit();
            if let Some(w) = watermark {
                spool.settle(w);
                self.spool.last_settle = now;
            }
        }
    }

    /// Feeds replayed items while at most half a queue's worth of items is
    /// unsettled (in sequence numbers), so replay needs no more memory than
    /// the queue would.
    fn replay_some(&mut self, spool: &mut Spool, now: Instant) {
        let window = (self.budget.capacity() / 2).max(1) as u64;
        let oldest = self.oldest_unsettled().unwrap_or(self.received);
        let outstanding = self.received - oldest;
        let room = window.saturating_sub(outstanding).min(INTAKE_BURST as u64);
        for _ in 0..room {
            let Some(r) = spool.next_replayed() else {
                return;
            };
            let seq = self.next_seq();
            spool.replayed(seq);
            match r {
                Replayed::Wire(route, json) => {
                    let cost = json.len() as u64 + 256;
                    self.budget.admit_replayed(route, cost);
                    self.counters.queued.fetch_add(1, Ordering::AcqRel);
                    self.add_serialised(route, &json, seq, cost);
                }
                Replayed::Update(patch, updates) => {
                    let cost = crate::item::update_cost(&patch);
                    self.budget.admit_replayed(Route::Partial, cost);
                    self.counters.queued.fetch_add(updates, Ordering::AcqRel);
                    self.partials.add(*patch, seq, updates, cost, now);
                }
            }
        }
        self.spool.more = room > 0 && spool.replaying();
    }

    /// The worker stops: writes what is left, deletes what settled and
    /// releases the directory's lock, before the shutdown is answered (so a
    /// client made right after `shutdown` returns may take the directory).
    pub(super) fn spool_finish(&mut self) {
        if let Some(mut spool) = self.spool.spool.take() {
            spool.commit();
            spool.settle(self.oldest_unsettled().unwrap_or(self.received));
        }
    }
}
