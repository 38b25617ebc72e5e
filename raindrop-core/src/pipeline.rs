//! The caller's side of delivery: where every tracking call's item goes.
//!
//! Both the [`Client`](crate::Client) and each interaction handle hold the
//! pipeline: it decides sampling, counts refusals and puts items in the
//! queue, and knows nothing of either.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::item::Item;
use crate::options::ClientOptions;
use crate::queue::{Queue, Refused};
use crate::stats::{Counters, DropReason, ItemKind};
use crate::validate;
use crate::Error;

pub(crate) struct Pipeline {
    pub(crate) options: ClientOptions,
    pub(crate) project_id: Option<String>,
    /// `None` when the client is disabled.
    pub(crate) queue: Option<Queue>,
    /// What a call on a disabled client counts as.
    pub(crate) disabled_reason: DropReason,
    pub(crate) counters: Arc<Counters>,
    pub(crate) closed: AtomicBool,
    /// Span export on or off (`Client::set_tracing_enabled`); here so that
    /// interaction handles and manual spans see the switch too.
    pub(crate) tracing_enabled: AtomicBool,
    /// The application's Git provenance, shared with the worker.
    pub(crate) app_git: Arc<crate::app_git::AppGitState>,
}

impl Pipeline {
    /// Queues an item; counts it whatever happens. Refusals for capacity,
    /// shutdown or a disabled client are counted and logged, never returned:
    /// telemetry must not fail the caller's request.
    pub(crate) fn enqueue(&self, item: Item) {
        let counters = &self.counters;
        let kind = match item.route() {
            Some(r) => r.kind(),
            None => return,
        };
        let final_update = matches!(&item, Item::Partial(p) if p.is_final);
        let lost = |reason: DropReason, detail: &str| {
            counters.drop_unqueued(kind, reason, 1, detail);
            if final_update {
                counters.interaction_lost(reason, detail);
            }
        };
        let Some(queue) = &self.queue else {
            let reason = self.disabled_reason;
            let detail = match reason {
                DropReason::NotInitialized => "raindrop::init was not called",
                _ => "client disabled (no write key and no local sink)",
            };
            lost(reason, detail);
            return;
        };
        if self.closed.load(Ordering::Acquire) {
            lost(DropReason::AfterShutdown, "tracked after shutdown");
            return;
        }
        // Interaction updates come from mutators that return nothing: check them here.
        let item = match item {
            Item::Partial(mut p) => {
                p.properties =
                    match validate::within_depth("properties", std::mem::take(&mut p.properties)) {
                        Ok(props) => props,
                        Err(e) => {
                            lost(DropReason::Invalid, &e.to_string());
                            return;
                        }
                    };
                let before = p.attachments.len();
                p.attachments.retain(|a| !a.value.is_empty());
                if p.attachments.len() < before {
                    tracing::warn!(target: "raindrop", event_id = &*p.event_id, "attachments with an empty value were left out of an interaction update");
                }
                Item::Partial(p)
            }
            other => other,
        };
        let route = item.route();
        let cost = item.cost();
        // Count first so the accounting never shows more settled than queued.
        counters.queued.fetch_add(1, Ordering::AcqRel);
        match queue.push(item, cost) {
            Ok(()) => {
                // Warn (rate-limited) at 80 % full, before anything is dropped.
                if let Some(r) = route {
                    let b = queue.budget();
                    if b.route_depth(r) > b.capacity() / 5 * 4 {
                        counters.warn_high_water(r.path(), b.capacity());
                    }
                }
            }
            Err(refused) => {
                counters.queued.fetch_sub(1, Ordering::AcqRel);
                match refused {
                    Refused::Full(r) => {
                        let detail = format!(
                            "the {} queue is full (max_queue_size); Client::ready() waits for room",
                            r.path()
                        );
                        lost(DropReason::QueueFull, &detail)
                    }
                    Refused::Bytes => {
                        let detail = format!(
                            "{} bytes are held for delivery (max_buffered_bytes {}); Client::ready() waits for room",
                            queue.budget().bytes(),
                            queue.budget().max_bytes()
                        );
                        lost(DropReason::MemoryLimit, &detail)
                    }
                    Refused::Closed => lost(DropReason::AfterShutdown, "worker stopped"),
                }
            }
        }
    }

    pub(crate) fn tracing_enabled(&self) -> bool {
        self.tracing_enabled.load(Ordering::Relaxed)
    }

    /// Queues a finished span unless tracing is off (then nothing is queued
    /// or counted); a span linked to an event `sample_rate` does not keep is
    /// counted as sampled out.
    pub(crate) fn export_span(&self, span: crate::SpanRecord) {
        if !self.tracing_enabled() {
            return;
        }
        let unsampled = self.options.sample_rate < 1.0
            && span.attributes.iter().any(|(k, v)| {
                k == "traceloop.association.properties.event_id"
                    && matches!(v, crate::AttributeValue::String(id) if !self.sampled(id))
            });
        if unsampled {
            self.sampled_out(ItemKind::Span);
        } else {
            self.enqueue(Item::Span(Box::new(span)));
        }
    }

    /// Whether `event_id` is kept by `sample_rate`: a pure function of the
    /// id (FNV-1a, then murmur3's 64-bit finaliser so that ids differing only
    /// in their last characters spread evenly), so every process that sees
    /// one interaction decides alike.
    pub(crate) fn sampled(&self, event_id: &str) -> bool {
        let rate = self.options.sample_rate;
        if rate >= 1.0 {
            return true;
        }
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in event_id.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^= h >> 33;
        (h as f64) < rate * u64::MAX as f64
    }

    /// Counts an item left out by sampling; it costs nothing more.
    pub(crate) fn sampled_out(&self, kind: ItemKind) {
        self.counters
            .drop_unqueued(kind, DropReason::SampledOut, 1, "not kept by sample_rate");
    }

    /// Counts a refused call (logged, rate-limited) and hands its error back.
    pub(crate) fn reject(&self, kind: ItemKind, e: Error) -> Error {
        self.counters
            .drop_unqueued(kind, DropReason::Invalid, 1, &e.to_string());
        e
    }
}
