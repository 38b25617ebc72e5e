//! The caller's side of delivery: where every tracking call's item goes.
//!
//! Both the [`Client`](crate::Client) and each interaction handle hold the
//! pipeline: it decides sampling, counts refusals and puts items in the
//! queue, and knows nothing of either.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::item::{update_cost, InteractionUpdate, Item, UpdateSlot};
use crate::options::ClientOptions;
use crate::queue::{Queue, Refused};
use crate::stats::{Counters, DropReason, ItemKind, Refusal};
use crate::worker::partial::{conflicts, merge};
use crate::Error;

pub(crate) struct Pipeline {
    pub(crate) options: Arc<ClientOptions>,
    pub(crate) project_id: Option<String>,
    /// `None` when the client is disabled.
    pub(crate) queue: Option<Queue>,
    /// What a call on a disabled client counts as.
    pub(crate) disabled_reason: DropReason,
    pub(crate) counters: Arc<Counters>,
    pub(crate) closed: AtomicBool,
    /// Signs outgoing carriers and verifies incoming ones; `None` only when
    /// there is no secret, no write key and the system gave no randomness.
    /// Here rather than on the client so an `Interaction` can sign the
    /// hand-off of a sub-agent it launches.
    pub(crate) carrier_key: Option<crate::propagation::CarrierKey>,
    /// The key is this process's own random one (no secret, no write key).
    pub(crate) carrier_key_local: bool,
    /// Span export on or off (`Client::set_tracing_enabled`); here so that
    /// interaction handles and manual spans see the switch too.
    pub(crate) tracing_enabled: AtomicBool,
    /// The application's Git provenance, shared with the worker.
    pub(crate) app_git: Arc<crate::app_git::AppGitState>,
}

/// Which kind of carrier a refusal is about, for its warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CarrierKind {
    /// `traceparent` + `baggage` continuing an interaction.
    Interaction,
    /// A sub-agent hand-off (`x-raindrop-handoff`).
    Handoff,
}

impl Pipeline {
    /// Said once, loudly: with neither secret nor write key, carriers are
    /// signed with a key only this process knows.
    pub(crate) fn warn_if_local_key(&self) {
        if self.carrier_key_local {
            crate::diag::setup_warning("propagation-local-key", "no RAINDROP_PROPAGATION_SECRET and no write key: raindrop signs the interactions it sends to other services with a key only this process knows, so services in other processes continue its traces but do not join its interactions (and it joins none of theirs). Give every service the same RAINDROP_PROPAGATION_SECRET (any string), or, on a closed network, RAINDROP_PROPAGATION_TRUST=unsigned on the receiving ones");
        }
    }

    /// Decides whether an incoming carrier is accepted: `verify` must pass
    /// with this client's key within the replay window, unless unsigned
    /// carriers are trusted (`trust`, or the `propagation_trust` option). A
    /// refusal is counted and warned.
    pub(crate) fn accept_signed(
        &self,
        signature: Option<&str>,
        trust: crate::propagation::CarrierTrust,
        kind: CarrierKind,
        verify: impl FnOnce(
            &crate::propagation::CarrierKey,
            &str,
            u64,
            std::time::Duration,
        ) -> Result<
            crate::propagation::CarrierGrant,
            crate::propagation::CarrierRefusal,
        >,
    ) -> Result<crate::propagation::CarrierGrant, crate::propagation::CarrierRefusal> {
        use crate::propagation::{CarrierGrant, CarrierKey, CarrierRefusal, CarrierTrust};
        if trust == CarrierTrust::Unsigned
            || self.options.propagation_trust == CarrierTrust::Unsigned
        {
            return Ok(CarrierGrant {
                delegate_finish: signature.is_some_and(CarrierKey::delegated_unverified),
            });
        }
        let result = match (signature, self.carrier_key.as_ref()) {
            (None, _) => Err(CarrierRefusal::Unsigned),
            (Some(_), None) => Err(CarrierRefusal::BadSignature),
            (Some(h), Some(key)) => verify(
                key,
                h,
                crate::time::unix_now(),
                self.options.propagation_replay_window,
            ),
        };
        if let Err(why) = result {
            let detail = match (kind, why) {
                (CarrierKind::Interaction, CarrierRefusal::Unsigned) => "an incoming request's raindrop baggage had no x-raindrop-signature: its trace continues, its interaction is not joined (sign it with raindrop's inject on the calling service, or on a closed network trust unsigned carriers: RAINDROP_PROPAGATION_TRUST=unsigned)",
                (CarrierKind::Interaction, CarrierRefusal::BadSignature) => "an incoming request's x-raindrop-signature did not verify (altered, or signed with another key: give both services the same RAINDROP_PROPAGATION_SECRET or the same write key): its trace continues, its interaction is not joined",
                (CarrierKind::Interaction, _) => "an incoming request's x-raindrop-signature is outside the replay window (a replay, or clocks too far apart; ClientOptions::propagation_replay_window): its trace continues, its interaction is not joined",
                (CarrierKind::Handoff, CarrierRefusal::Unsigned) => "a sub-agent hand-off had no x-raindrop-signature (the Python SDK does not sign): it was refused, no sub-agent event is recorded from it (sign it with raindrop's subagent() on the launching service, or on a closed network trust unsigned carriers: RAINDROP_PROPAGATION_TRUST=unsigned)",
                (CarrierKind::Handoff, CarrierRefusal::BadSignature) => "a sub-agent hand-off's x-raindrop-signature did not verify (altered, or signed with another key: give both services the same RAINDROP_PROPAGATION_SECRET or the same write key): it was refused",
                (CarrierKind::Handoff, _) => "a sub-agent hand-off's x-raindrop-signature is outside the replay window (a replay, a job that waited longer than ClientOptions::propagation_replay_window, or clocks too far apart): it was refused",
            };
            self.counters.refuse(Refusal::of_carrier(why), detail);
            self.warn_if_local_key();
        }
        result
    }

    /// The queue, if items may be queued now; otherwise counts the refusal.
    fn open_queue(&self, lost: &dyn Fn(DropReason, &str)) -> Option<&Queue> {
        let Some(queue) = &self.queue else {
            let reason = self.disabled_reason;
            let detail = match reason {
                DropReason::NotInitialized => "raindrop::init was not called",
                _ => "client disabled (no write key and no local sink)",
            };
            lost(reason, detail);
            return None;
        };
        if self.closed.load(Ordering::Acquire) {
            lost(DropReason::AfterShutdown, "tracked after shutdown");
            return None;
        }
        Some(queue)
    }

    /// Queues an item; counts it whatever happens. Refusals for capacity,
    /// shutdown or a disabled client are counted and logged, never returned:
    /// telemetry must not fail the caller's request.
    pub(crate) fn enqueue(&self, item: Item) {
        let Some(route) = item.route() else {
            return;
        };
        let kind = route.kind();
        let lost = |reason: DropReason, detail: &str| {
            self.counters.drop_unqueued(kind, reason, 1, detail);
        };
        let Some(queue) = self.open_queue(&lost) else {
            return;
        };
        let cost = item.cost();
        self.push(queue, item, cost, &lost);
    }

    /// Puts a data item in the queue, counted queued, or counts its refusal.
    fn push(&self, queue: &Queue, item: Item, cost: u64, lost: &dyn Fn(DropReason, &str)) -> bool {
        let Some(route) = item.route() else {
            return false;
        };
        let counters = &self.counters;
        // Count first so the accounting never shows more settled than queued.
        counters.queued.fetch_add(1, Ordering::AcqRel);
        match queue.push(item, cost) {
            Ok(()) => {
                // Warn (rate-limited) at 80 % full, before anything is dropped.
                let b = queue.budget();
                if b.route_depth(route) > b.capacity() / 5 * 4 {
                    counters.warn_high_water(route.path(), b.capacity());
                }
                true
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
                        lost(DropReason::MemoryLimit, &self.memory_detail(queue, cost))
                    }
                    Refused::Closed => lost(DropReason::AfterShutdown, "worker stopped"),
                }
                false
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
        self.export_sampled_span((!unsampled).then_some(span));
    }

    /// Queues a span whose sampling the caller decided (`None`: counted as
    /// sampled out), unless tracing is off.
    pub(crate) fn export_sampled_span(&self, span: Option<crate::SpanRecord>) {
        if !self.tracing_enabled() {
            return;
        }
        match span {
            Some(span) => self.enqueue(Item::Span(Box::new(span))),
            None => self.sampled_out(ItemKind::Span),
        }
    }

    /// Why an item of `cost` bytes was refused: the bound and what is held.
    fn memory_detail(&self, queue: &Queue, cost: u64) -> String {
        format!(
            "an item of {cost} bytes does not fit beside the {} bytes held for delivery (max_buffered_bytes {}); Client::ready() waits for room",
            queue.budget().bytes(),
            queue.budget().max_bytes()
        )
    }

    /// Queues an interaction update. While an earlier update of the same
    /// interaction still waits in the queue (`waiting`, kept by the
    /// interaction's handles), the new one is merged into it: an open
    /// interaction takes one queue slot however many updates it gets before
    /// the worker looks, and a burst of interactions keeps as many of them
    /// as the queue has slots. An update that cannot merge without changing
    /// what the receiver ends up with ([`conflicts`]) takes a slot of its own.
    pub(crate) fn enqueue_update(
        &self,
        waiting: &Mutex<Option<Arc<UpdateSlot>>>,
        mut update: InteractionUpdate,
    ) {
        let is_final = update.is_final;
        let counters = &self.counters;
        let lost = |reason: DropReason, detail: &str| {
            counters.drop_unqueued(ItemKind::InteractionUpdate, reason, 1, detail);
            if is_final {
                counters.interaction_lost(reason, detail);
            }
        };
        let Some(queue) = self.open_queue(&lost) else {
            return;
        };
        // Interaction updates come from mutators that return nothing: check them here.
        update.properties = match crate::properties::within_depth(
            "properties",
            std::mem::take(&mut update.properties),
        ) {
            Ok(props) => props,
            Err(e) => {
                lost(DropReason::Invalid, &e.to_string());
                return;
            }
        };
        let before = update.attachments.len();
        update.attachments.retain(|a| !a.value.is_empty());
        if update.attachments.len() < before {
            tracing::warn!(target: "raindrop", event_id = &*update.event_id, "attachments with an empty value were left out of an interaction update");
        }
        let cost = update_cost(&update);
        let mut slot = waiting.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = slot.as_ref() {
            let mut state = s.state.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(w) = state.as_mut() {
                if !conflicts(&w.update.properties, &update.properties) {
                    if !queue.budget().charge_bytes(cost) {
                        lost(DropReason::MemoryLimit, &self.memory_detail(queue, cost));
                        return;
                    }
                    counters.queued.fetch_add(1, Ordering::AcqRel);
                    merge(&mut w.update, update);
                    w.updates += 1;
                    w.cost += cost;
                    return;
                }
            }
        }
        let new = Arc::new(UpdateSlot::new(update, cost));
        if self.push(queue, Item::Update(new.clone()), cost, &lost) {
            *slot = Some(new);
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
