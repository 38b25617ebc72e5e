//! Merges interaction updates per event id until they are due to ship.
//!
//! Each event id is in one of three states:
//!
//! ```text
//!            add                      take_ready                 settle(ok), nothing buffered
//!  absent ───────▶ buffered ────────────────────▶ in flight ──────────────────────────────▶ absent
//!                     ▲   (due: final, idle,        │  add: merged into the buffered update
//!                     │    split, aged, flush)      │  (the event stays in flight)
//!                     └─────────────────────────────┘
//!                       settle(ok or failed), something buffered
//! ```
//!
//! * buffered: one update per event, updates merged into it ([`merge`]);
//!   two only when an update cannot merge without changing what the
//!   receiver ends up with ([`conflicts`]), and the first must ship first.
//! * in flight (`busy`): exactly one update of the event has left; later
//!   updates wait merged, so updates of one event arrive in order.
//! * settle: a delivered or permanently refused update is done; an update that
//!   exhausted its retries is merged back in front of what is buffered, once
//!   ([`MergedUpdate::failures`]), and goes again at once.
//!
//! Nothing is remembered once an event is absent: every update carries the
//! identity and the content flag (stamped by the caller's handle).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::item::{AiData, InteractionUpdate};
use crate::model::Attachment;

/// Deep-merges `newer` into `dst`: objects merge key by key, anything else is replaced.
pub(crate) fn deep_merge(dst: &mut Map<String, Value>, newer: Map<String, Value>) {
    for (k, v) in newer {
        match (dst.get_mut(&k), v) {
            (Some(Value::Object(d)), Value::Object(n)) => deep_merge(d, n),
            (_, v) => {
                dst.insert(k, v);
            }
        }
    }
}

/// Whether deep-merging `newer` into the pending update `dst` would change what
/// a receiver ends up with: `newer` sets an object where `dst` holds a
/// non-object. Applied one after the other, the non-object first replaces the
/// receiver's value and the object then starts afresh; merged into one update,
/// the object would be deep-merged into the receiver's older value instead.
/// Such an update must ship before `newer` is merged.
pub(crate) fn conflicts(dst: &Map<String, Value>, newer: &Map<String, Value>) -> bool {
    newer.iter().any(|(k, n)| match (dst.get(k), n) {
        (Some(Value::Object(d)), Value::Object(n)) => conflicts(d, n),
        (Some(_), Value::Object(_)) => true,
        _ => false,
    })
}

/// Merges `newer` into `dst`: scalars newest-wins, properties deep-merged, attachments appended.
pub(crate) fn merge(dst: &mut InteractionUpdate, newer: InteractionUpdate) {
    if newer.user_id.is_some() {
        dst.user_id = newer.user_id;
    }
    if newer.event.is_some() {
        dst.event = newer.event;
    }
    if newer.timestamp.is_some() {
        dst.timestamp = newer.timestamp;
    }
    dst.ai.merge(newer.ai);
    deep_merge(&mut dst.properties, newer.properties);
    dst.attachments.extend(newer.attachments);
    dst.is_final |= newer.is_final;
    dst.had_content |= newer.had_content;
}

/// Updates of one event merged into one update.
pub(crate) struct MergedUpdate {
    /// The event id the updates were queued under: the buffer's key. The
    /// before-send hook may change `update.event_id`; the ledger never reads it.
    pub key: Arc<str>,
    pub update: InteractionUpdate,
    /// Updates merged in (what the accounting counts).
    pub updates: u64,
    /// Of those, how many still hold a place in the route's queue budget.
    pub held: u64,
    /// The worker sequence number of the oldest update in it.
    pub min_seq: u64,
    /// When the oldest update in it arrived.
    first: Instant,
    /// Times it failed delivery with retryable errors and was merged back.
    pub failures: u32,
    /// Bytes charged for its updates against `max_buffered_bytes`.
    pub cost: u64,
    /// The later part of an update too large for one request: it goes as soon
    /// as the part before it has settled.
    split: bool,
}

impl MergedUpdate {
    fn new(update: InteractionUpdate, seq: u64, updates: u64, cost: u64, now: Instant) -> Self {
        MergedUpdate {
            key: update.event_id.clone(),
            update,
            updates,
            held: 1,
            min_seq: seq,
            first: now,
            failures: 0,
            cost,
            split: false,
        }
    }

    /// Splits `attachments` (taken from this update) off into the update that
    /// follows it. The later part carries the event's identity, the final
    /// flag and the accounting, so the interaction counts as delivered, and
    /// ends, only when its last part has arrived.
    pub fn split_tail(&mut self, attachments: Vec<Attachment>) -> MergedUpdate {
        let p = &mut self.update;
        let update = InteractionUpdate {
            event_id: p.event_id.clone(),
            user_id: p.user_id.clone(),
            event: p.event.clone(),
            ai: AiData {
                convo_id: p.ai.convo_id.clone(),
                ..AiData::default()
            },
            attachments,
            timestamp: p.timestamp.clone(),
            is_final: std::mem::take(&mut p.is_final),
            had_content: p.had_content,
            ..InteractionUpdate::default()
        };
        MergedUpdate {
            key: self.key.clone(),
            update,
            updates: std::mem::take(&mut self.updates),
            held: 0,
            min_seq: self.min_seq,
            first: self.first,
            failures: self.failures,
            cost: std::mem::take(&mut self.cost),
            split: true,
        }
    }

    /// Folds `newer` (later updates of the same event) into `self`.
    fn absorb(&mut self, newer: MergedUpdate) {
        merge(&mut self.update, newer.update);
        self.updates += newer.updates;
        self.held += newer.held;
        self.cost += newer.cost;
        self.min_seq = self.min_seq.min(newer.min_seq);
        self.first = self.first.min(newer.first);
    }
}

/// One event's unsent updates, oldest first (more than one only when an update
/// could not be merged without changing its meaning, see [`conflicts`]).
struct Entry {
    unsent: VecDeque<MergedUpdate>,
    /// An update of this event has left the buffer and not settled: the next
    /// one waits, so updates of one event arrive in order.
    busy: bool,
    last_update: Instant,
}

/// Open interactions' unsent updates, keyed by event id.
///
/// An entry lives while it has an update to send or one in flight; identity and
/// the content flag travel in every update, so nothing is remembered after.
/// Its size is bounded by the partial route's queue budget.
pub(crate) struct PartialBuffer {
    entries: HashMap<Arc<str>, Entry>,
    /// Events that may have an update to ship now.
    ready: Vec<Arc<str>>,
}

impl PartialBuffer {
    pub fn new() -> Self {
        PartialBuffer {
            entries: HashMap::new(),
            ready: Vec::new(),
        }
    }

    /// Merges `updates` updates (already merged into `update` while they
    /// waited in the queue; they hold one queue slot). A final update makes
    /// the event ready at once.
    pub fn add(
        &mut self,
        update: InteractionUpdate,
        seq: u64,
        updates: u64,
        cost: u64,
        now: Instant,
    ) {
        let is_final = update.is_final;
        let id = update.event_id.clone();
        let merged = MergedUpdate::new(update, seq, updates, cost, now);
        let e = self.entries.entry(id.clone()).or_insert_with(|| Entry {
            unsent: VecDeque::new(),
            busy: false,
            last_update: now,
        });
        e.last_update = now;
        match e.unsent.back_mut() {
            Some(last) if !conflicts(&last.update.properties, &merged.update.properties) => {
                last.absorb(merged)
            }
            _ => e.unsent.push_back(merged),
        }
        if is_final || e.unsent.len() > 1 {
            self.ready.push(id);
        }
    }

    /// Marks every event whose oldest update is due: finished, split by a
    /// conflict, idle for `idle`, pending for five times `idle` (so a
    /// never-pausing interaction still ships snapshots), or all when `force`.
    pub fn scan_due(&mut self, now: Instant, idle: Duration, force: bool) {
        let max_age = idle.saturating_mul(5);
        for (id, e) in &self.entries {
            if e.busy {
                continue;
            }
            let Some(front) = e.unsent.front() else {
                continue;
            };
            if force
                || front.update.is_final
                || e.unsent.len() > 1
                || now.saturating_duration_since(e.last_update) >= idle
                || now.saturating_duration_since(front.first) >= max_age
            {
                self.ready.push(id.clone());
            }
        }
    }

    /// Takes the updates that can leave now: one per ready event that has
    /// nothing in flight. The event stays busy until [`settle`](Self::settle).
    pub fn take_ready(&mut self, out: &mut Vec<MergedUpdate>) {
        for id in self.ready.drain(..) {
            let Some(e) = self.entries.get_mut(&id) else {
                continue;
            };
            if e.busy {
                continue;
            }
            if let Some(d) = e.unsent.pop_front() {
                e.busy = true;
                out.push(d);
            }
        }
    }

    /// The update of `id` that left the buffer has settled. `failed` is given
    /// back when it failed with retryable errors: it is merged in front of
    /// what is pending and goes again with it. The event becomes ready if it
    /// has more to send (at once when `force`: a flush is waiting); it is
    /// forgotten when it has nothing.
    pub fn settle(&mut self, id: &Arc<str>, failed: Option<MergedUpdate>, force: bool) {
        let Some(e) = self.entries.get_mut(id) else {
            return;
        };
        e.busy = false;
        if let Some(mut f) = failed {
            f.held = 0;
            match e.unsent.pop_front() {
                Some(next) if !conflicts(&f.update.properties, &next.update.properties) => {
                    f.absorb(next);
                    e.unsent.push_front(f);
                }
                Some(next) => {
                    e.unsent.push_front(next);
                    e.unsent.push_front(f);
                }
                None => e.unsent.push_front(f),
            }
        }
        match e.unsent.front() {
            None => {
                self.entries.remove(id);
            }
            // A retried update or a finished one goes at once; an open one
            // waits for its idle timer as usual.
            Some(d)
                if force
                    || d.split
                    || d.failures > 0
                    || d.update.is_final
                    || e.unsent.len() > 1 =>
            {
                self.ready.push(id.clone())
            }
            Some(_) => {}
        }
    }

    /// Puts the later part of a split update in front of the event's unsent
    /// updates; the event is in flight with the earlier part.
    pub fn push_front(&mut self, tail: MergedUpdate) {
        let e = self
            .entries
            .entry(tail.key.clone())
            .or_insert_with(|| Entry {
                unsent: VecDeque::new(),
                busy: true,
                last_update: tail.first,
            });
        e.unsent.push_front(tail);
    }

    /// The oldest sequence number among unsent updates.
    pub fn min_seq(&self) -> Option<u64> {
        self.entries
            .values()
            .flat_map(|e| e.unsent.iter().map(|d| d.min_seq))
            .min()
    }

    /// Updates waiting to be sent (not in flight).
    #[cfg(test)]
    pub fn pending_updates(&self) -> u64 {
        self.entries
            .values()
            .flat_map(|e| e.unsent.iter().map(|d| d.updates))
            .sum()
    }

    /// Takes every unsent update (at the shutdown deadline).
    pub fn take_all(&mut self) -> Vec<MergedUpdate> {
        self.ready.clear();
        self.entries
            .drain()
            .flat_map(|(_, e)| e.unsent.into_iter())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::item::AiData;

    fn update(id: &str) -> InteractionUpdate {
        InteractionUpdate {
            event_id: id.into(),
            ..Default::default()
        }
    }

    fn taken(b: &mut PartialBuffer) -> Vec<MergedUpdate> {
        let mut out = Vec::new();
        b.take_ready(&mut out);
        out
    }

    #[test]
    fn merges_until_final_which_is_ready_at_once() {
        let mut b = PartialBuffer::new();
        let t = Instant::now();
        let mut p1 = update("e");
        p1.ai.input = Some("q".into());
        p1.properties
            .insert("a".into(), serde_json::json!({"x": 1}));
        b.add(p1, 0, 1, 0, t);
        let mut p2 = update("e");
        p2.properties
            .insert("a".into(), serde_json::json!({"y": 2}));
        b.add(p2, 1, 1, 0, t);
        assert!(taken(&mut b).is_empty(), "open and not idle: not due");
        let mut p3 = update("e");
        p3.ai = AiData {
            output: Some("a".into()),
            ..Default::default()
        };
        p3.is_final = true;
        b.add(p3, 2, 1, 0, t);
        let due = taken(&mut b);
        assert_eq!(due.len(), 1, "a final is ready without a tick");
        assert_eq!(due[0].updates, 3);
        assert_eq!(due[0].min_seq, 0);
        assert_eq!(
            due[0].update.properties["a"],
            serde_json::json!({"x": 1, "y": 2})
        );
        assert_eq!(b.pending_updates(), 0);
        b.settle(&"e".into(), None, false);
        assert!(b.entries.is_empty(), "settled and empty: forgotten");
    }

    #[test]
    fn one_delta_per_event_in_flight() {
        let mut b = PartialBuffer::new();
        let t = Instant::now();
        b.add(update("e"), 0, 1, 0, t);
        b.scan_due(t, Duration::ZERO, false);
        let first = taken(&mut b);
        assert_eq!(first.len(), 1);
        let mut fin = update("e");
        fin.is_final = true;
        b.add(fin, 1, 1, 0, t);
        assert!(
            taken(&mut b).is_empty(),
            "the final waits while the snapshot is in flight"
        );
        assert_eq!(b.min_seq(), Some(1));
        b.settle(&"e".into(), None, false);
        let second = taken(&mut b);
        assert_eq!(second.len(), 1);
        assert!(second[0].update.is_final);
    }

    #[test]
    fn a_failed_delta_is_merged_back_before_newer_updates() {
        let mut b = PartialBuffer::new();
        let t = Instant::now();
        let mut p1 = update("e");
        p1.ai.input = Some("q".into());
        p1.user_id = Some("u".into());
        b.add(p1, 0, 1, 0, t);
        b.scan_due(t, Duration::ZERO, false);
        let mut sent = taken(&mut b);
        let mut fin = update("e");
        fin.ai.output = Some("a".into());
        fin.is_final = true;
        b.add(fin, 1, 1, 0, t);
        let mut failed = sent.pop().unwrap();
        failed.failures += 1;
        b.settle(&"e".into(), Some(failed), false);
        let again = taken(&mut b);
        assert_eq!(again.len(), 1);
        let d = &again[0];
        assert_eq!(d.updates, 2);
        assert_eq!(d.held, 1, "the retried part no longer holds queue budget");
        assert_eq!(d.update.ai.input.as_deref(), Some("q"));
        assert_eq!(d.update.ai.output.as_deref(), Some("a"));
        assert!(d.update.is_final);
        assert_eq!(d.min_seq, 0);
    }

    #[test]
    fn a_never_pausing_interaction_still_ships_snapshots() {
        let mut b = PartialBuffer::new();
        let idle = Duration::from_secs(2);
        let t0 = Instant::now();
        let mut shipped = 0;
        for step in 0..60u64 {
            let now = t0 + Duration::from_millis(500 * step);
            let mut p = update("busy");
            p.ai.input = Some(format!("{step}"));
            b.add(p, step, 1, 0, now);
            b.scan_due(now, idle, false);
            let out = taken(&mut b);
            shipped += out.len();
            if !out.is_empty() {
                b.settle(&"busy".into(), None, false);
            }
        }
        // 30 s of updates every 0.5 s: never idle for 2 s, yet a snapshot every 10 s.
        assert_eq!(shipped, 2);
    }

    #[test]
    fn a_conflicting_update_splits_the_delta() {
        let mut b = PartialBuffer::new();
        let t = Instant::now();
        let mut p1 = update("e");
        p1.properties.insert("a".into(), serde_json::json!(5));
        p1.properties
            .insert("n".into(), serde_json::json!({"x": null}));
        b.add(p1, 0, 1, 0, t);
        let mut p2 = update("e");
        p2.properties
            .insert("n".into(), serde_json::json!({"x": 1, "y": 2}));
        b.add(p2, 1, 1, 0, t);
        assert!(
            taken(&mut b).is_empty(),
            "objects merge into objects; scalars replace: no conflict"
        );
        let mut p3 = update("e");
        p3.properties
            .insert("a".into(), serde_json::json!({"z": 1}));
        b.add(p3, 2, 1, 0, t);
        let out = taken(&mut b);
        assert_eq!(out.len(), 1, "an object over a pending scalar splits");
        assert_eq!(out[0].updates, 2);
        assert_eq!(out[0].update.properties["a"], serde_json::json!(5));
        assert_eq!(b.pending_updates(), 1);
        let mut p4 = update("e");
        p4.properties.insert(
            "n".into(),
            serde_json::json!({"x": {"deep": {"deeper": 1}}}),
        );
        b.add(p4, 3, 1, 0, t);
        let mut p5 = update("e");
        p5.properties
            .insert("n".into(), serde_json::json!({"x": {"deep": 2}}));
        b.add(p5, 4, 1, 0, t);
        let mut p6 = update("e");
        p6.properties
            .insert("n".into(), serde_json::json!({"x": {"deep": {"again": 1}}}));
        b.add(p6, 5, 1, 0, t);
        assert_eq!(
            b.entries["e"].unsent.len(),
            2,
            "an object over a nested pending scalar splits too"
        );
    }
}
