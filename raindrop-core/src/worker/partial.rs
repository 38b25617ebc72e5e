//! Merges interaction updates per event id until they are due to ship.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::item::PartialPatch;

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

/// Whether deep-merging `newer` into the pending delta `dst` would change what
/// a receiver ends up with: `newer` sets an object where `dst` holds a
/// non-object. Applied one after the other, the non-object first replaces the
/// receiver's value and the object then starts afresh; merged into one delta,
/// the object would be deep-merged into the receiver's older value instead.
/// Such a delta must ship before `newer` is merged.
pub(crate) fn conflicts(dst: &Map<String, Value>, newer: &Map<String, Value>) -> bool {
    newer.iter().any(|(k, n)| match (dst.get(k), n) {
        (Some(Value::Object(d)), Value::Object(n)) => conflicts(d, n),
        (Some(_), Value::Object(_)) => true,
        _ => false,
    })
}

/// Merges `newer` into `dst`: scalars newest-wins, properties deep-merged, attachments appended.
pub(crate) fn merge(dst: &mut PartialPatch, newer: PartialPatch) {
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
}

struct Entry {
    delta: PartialPatch,
    /// Updates merged into `delta`.
    patches: u64,
    last_update: Instant,
    /// Some update so far had input, output or an attachment.
    had_content: bool,
    /// When the oldest update in `delta` arrived.
    first_pending: Instant,
}

impl Entry {
    /// Takes the merged delta out, leaving an empty one for the same event.
    fn take(&mut self) -> Due {
        let fresh = PartialPatch {
            event_id: self.delta.event_id.clone(),
            ..Default::default()
        };
        let patch = std::mem::replace(&mut self.delta, fresh);
        Due {
            empty: patch.is_final && !self.had_content,
            patch,
            patches: std::mem::take(&mut self.patches),
        }
    }
}

/// A merged delta ready to serialise.
pub(crate) struct Due {
    pub patch: PartialPatch,
    pub patches: u64,
    /// A final update of an interaction that never had any content.
    pub empty: bool,
}

/// Open interactions' unsent updates, keyed by event id.
pub(crate) struct PartialBuffer {
    entries: HashMap<Arc<str>, Entry>,
    max_entries: usize,
}

/// How long an entry with nothing left to send is kept, to remember `had_content`.
const FORGET_AFTER: Duration = Duration::from_secs(600);

impl PartialBuffer {
    pub fn new(max_entries: usize) -> Self {
        PartialBuffer {
            entries: HashMap::new(),
            max_entries,
        }
    }

    /// Updates waiting to be sent.
    pub fn pending_patches(&self) -> u64 {
        self.entries.values().map(|e| e.patches).sum()
    }

    /// Merges one update; `false` when a new interaction does not fit. When
    /// the update cannot be merged into the pending delta without changing
    /// its meaning ([`conflicts`]), that delta is moved to `ship` first, so
    /// merging stays associative: the deltas applied in order give the same
    /// event as every update applied in order.
    pub fn add(&mut self, patch: PartialPatch, now: Instant, ship: &mut Vec<Due>) -> bool {
        let content = patch.ai.has_content() || !patch.attachments.is_empty();
        if let Some(e) = self.entries.get_mut(&patch.event_id) {
            if e.patches > 0 && conflicts(&e.delta.properties, &patch.properties) {
                ship.push(e.take());
            }
            e.had_content |= content;
            if e.patches == 0 {
                e.first_pending = now;
            }
            e.patches += 1;
            e.last_update = now;
            merge(&mut e.delta, patch);
            return true;
        }
        if self.entries.len() >= self.max_entries && !self.evict_settled() {
            return false;
        }
        let key = patch.event_id.clone();
        self.entries.insert(
            key,
            Entry {
                delta: patch,
                patches: 1,
                last_update: now,
                had_content: content,
                first_pending: now,
            },
        );
        true
    }

    /// Frees the slot of the least recently updated interaction that has
    /// nothing left to send (kept only to remember `had_content`), so open but
    /// idle interactions cannot lock new ones out for `FORGET_AFTER`.
    fn evict_settled(&mut self) -> bool {
        let oldest = self
            .entries
            .iter()
            .filter(|(_, e)| e.patches == 0)
            .min_by_key(|(_, e)| e.last_update)
            .map(|(id, _)| id.clone());
        oldest.is_some_and(|id| self.entries.remove(&id).is_some())
    }

    /// Takes the deltas due now: finished ones, ones idle for `idle`, ones
    /// pending for five times `idle` (so a never-pausing interaction still
    /// ships snapshots and its delta stays bounded), or all when `force`.
    pub fn take_due(&mut self, now: Instant, idle: Duration, force: bool) -> Vec<Due> {
        let max_age = idle.saturating_mul(5);
        let mut due = Vec::new();
        self.entries.retain(|_, e| {
            if e.patches == 0 {
                return now.duration_since(e.last_update) < FORGET_AFTER;
            }
            let ready = e.delta.is_final
                || force
                || now.duration_since(e.last_update) >= idle
                || now.duration_since(e.first_pending) >= max_age;
            if !ready {
                return true;
            }
            let taken = e.take();
            let keep = !taken.patch.is_final;
            due.push(taken);
            keep
        });
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::item::AiData;

    fn patch(id: &str) -> PartialPatch {
        PartialPatch {
            event_id: id.into(),
            ..Default::default()
        }
    }

    #[test]
    fn merges_until_final() {
        let mut b = PartialBuffer::new(10);
        let t = Instant::now();
        let mut p1 = patch("e");
        p1.ai.input = Some("q".into());
        p1.properties
            .insert("a".into(), serde_json::json!({"x": 1}));
        b.add(p1, t, &mut Vec::new());
        let mut p2 = patch("e");
        p2.properties
            .insert("a".into(), serde_json::json!({"y": 2}));
        b.add(p2, t, &mut Vec::new());
        assert!(b.take_due(t, Duration::from_secs(2), false).is_empty());
        let mut p3 = patch("e");
        p3.ai = AiData {
            output: Some("a".into()),
            ..Default::default()
        };
        p3.is_final = true;
        b.add(p3, t, &mut Vec::new());
        let due = b.take_due(t, Duration::from_secs(2), false);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].patches, 3);
        assert!(!due[0].empty);
        assert_eq!(
            due[0].patch.properties["a"],
            serde_json::json!({"x": 1, "y": 2})
        );
        assert_eq!(b.pending_patches(), 0);
        assert!(b.entries.is_empty());
    }

    #[test]
    fn idle_snapshot_then_sparse_final() {
        let mut b = PartialBuffer::new(10);
        let t = Instant::now();
        let mut p1 = patch("e");
        p1.ai.input = Some("q".into());
        b.add(p1, t, &mut Vec::new());
        let later = t + Duration::from_secs(3);
        let due = b.take_due(later, Duration::from_secs(2), false);
        assert_eq!(due.len(), 1);
        assert!(!due[0].patch.is_final);
        let mut fin = patch("e");
        fin.is_final = true;
        b.add(fin, later, &mut Vec::new());
        let due = b.take_due(later, Duration::from_secs(2), false);
        assert!(!due[0].empty, "content was sent in an earlier snapshot");
        assert!(due[0].patch.ai.input.is_none(), "only the delta is sent");
    }

    #[test]
    fn a_never_pausing_interaction_still_ships_snapshots() {
        let mut b = PartialBuffer::new(10);
        let idle = Duration::from_secs(2);
        let t0 = Instant::now();
        let mut shipped = 0;
        for step in 0..60u64 {
            let now = t0 + Duration::from_millis(500 * step);
            let mut p = patch("busy");
            p.ai.input = Some(format!("{step}"));
            b.add(p, now, &mut Vec::new());
            shipped += b.take_due(now, idle, false).len();
        }
        // 30 s of updates every 0.5 s: never idle for 2 s, yet a snapshot every 10 s.
        assert_eq!(shipped, 2);
    }

    #[test]
    fn bounded() {
        let mut b = PartialBuffer::new(1);
        assert!(b.add(patch("a"), Instant::now(), &mut Vec::new()));
        assert!(b.add(patch("a"), Instant::now(), &mut Vec::new()));
        assert!(!b.add(patch("b"), Instant::now(), &mut Vec::new()));
    }

    #[test]
    fn a_conflicting_update_ships_the_pending_delta_first() {
        let mut b = PartialBuffer::new(10);
        let t = Instant::now();
        let mut ship = Vec::new();
        let mut p1 = patch("e");
        p1.properties.insert("a".into(), serde_json::json!(5));
        p1.properties
            .insert("n".into(), serde_json::json!({"x": null}));
        b.add(p1, t, &mut ship);
        let mut p2 = patch("e");
        p2.properties
            .insert("n".into(), serde_json::json!({"x": 1, "y": 2}));
        b.add(p2, t, &mut ship);
        assert!(
            ship.is_empty(),
            "objects merge into objects; scalars replace: no conflict"
        );
        let mut p3 = patch("e");
        p3.properties
            .insert("a".into(), serde_json::json!({"z": 1}));
        b.add(p3, t, &mut ship);
        assert_eq!(
            ship.len(),
            1,
            "an object over a pending scalar splits the delta"
        );
        assert_eq!(ship[0].patches, 2);
        assert_eq!(ship[0].patch.properties["a"], serde_json::json!(5));
        assert_eq!(b.pending_patches(), 1);
        let mut p4 = patch("e");
        p4.properties
            .insert("n".into(), serde_json::json!({"x": {"deep": 1}}));
        b.add(p4, t, &mut ship);
        assert_eq!(ship.len(), 1, "no pending value at n.x in the new delta");
        let mut p5 = patch("e");
        p5.properties
            .insert("a".into(), serde_json::json!({"q": {"w": 1}}));
        p5.properties
            .insert("n".into(), serde_json::json!({"x": {"more": 2}}));
        b.add(p5, t, &mut ship);
        assert_eq!(ship.len(), 1, "nested objects into objects merge");
        let mut p6 = patch("e");
        p6.properties.insert(
            "n".into(),
            serde_json::json!({"x": {"deep": {"deeper": 1}}}),
        );
        b.add(p6, t, &mut ship);
        assert_eq!(
            ship.len(),
            2,
            "an object over a nested pending scalar splits too"
        );
    }

    #[test]
    fn settled_entries_make_room_for_new_interactions() {
        let mut b = PartialBuffer::new(2);
        let t = Instant::now();
        assert!(b.add(patch("a"), t, &mut Vec::new()));
        assert!(b.add(patch("b"), t + Duration::from_millis(1), &mut Vec::new()));
        // Both ship as pending snapshots and stay open with nothing to send.
        assert_eq!(
            b.take_due(t + Duration::from_secs(3), Duration::from_secs(2), false)
                .len(),
            2
        );
        assert!(
            b.add(patch("c"), t + Duration::from_secs(3), &mut Vec::new()),
            "the oldest settled entry is recycled"
        );
        assert!(!b.entries.contains_key("a") && b.entries.contains_key("b"));
        // Entries with unsent updates are never evicted.
        assert!(b.add(patch("b"), t + Duration::from_secs(4), &mut Vec::new()));
        assert!(!b.add(patch("d"), t + Duration::from_secs(4), &mut Vec::new()));
    }
}
