//! `Client`: validates tracking calls and hands them to the worker.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;

use crate::diag::setup_warning;
use crate::interaction::{Interaction, InteractionCore};
use crate::item::{AiData, Control, EventRecord, IdentifyRecord, Item, SignalRecord};
use crate::model::{AiEvent, Attachment, Begin, Event, Properties, Signal, SignalType, Timestamp};
use crate::options::{valid_project_slug, ClientOptions};
use crate::queue::{Queue, Refused};
use crate::span::SpanRecord;
use crate::stats::{Counters, DropReason, ItemKind, Stats};
use crate::time::deadline_in;
use crate::worker::{self, FlushWait, Reply, WorkerConfig};
use crate::Error;

/// The Raindrop client. Cheap to clone: clones share one queue and worker.
///
/// Every tracking call validates its input, stamps id and time, puts the item
/// in a bounded queue and returns. A background thread with its own small
/// tokio runtime batches, serialises and delivers, with retries. The client
/// works the same from plain `fn main`, any tokio runtime, or a `Drop` impl.
///
/// ```
/// use raindrop_core::{AiEvent, Client, ClientOptions, LocalSink};
/// # let dir = std::env::temp_dir().join(format!("raindrop-doc-{}", std::process::id()));
/// let client = Client::new(ClientOptions::default().local_sink(LocalSink::File(dir.clone()))).unwrap();
/// let id = client.track_ai(AiEvent::new("user-1", "chat").input("hi").output("hello")).unwrap();
/// assert_eq!(id.len(), 36);
/// client.shutdown(std::time::Duration::from_secs(5));
/// assert_eq!(client.stats().delivered, 1);
/// # let _ = std::fs::remove_file(dir);
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    options: ClientOptions,
    project_id: Option<String>,
    /// `None` when the client is disabled.
    queue: Option<Queue>,
    /// What a call on a disabled client counts as.
    disabled_reason: DropReason,
    counters: Arc<Counters>,
    closed: AtomicBool,
    debug_logs: Arc<AtomicBool>,
    registry: Mutex<HashMap<Arc<str>, Weak<InteractionCore>>>,
    worker: Mutex<Option<JoinHandle<()>>>,
    report: Mutex<Option<ShutdownReport>>,
}

/// What [`Client::shutdown`] achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Everything accepted was delivered or dropped for a reason other than the deadline.
    pub completed: bool,
    /// Items still queued or in flight when the deadline passed (dropped).
    pub undelivered: u64,
    /// The counters at the end.
    pub stats: Stats,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.inner.options.endpoint)
            .field("project_id", &self.inner.project_id)
            .field("enabled", &self.is_enabled())
            .field("local_sink", &self.inner.options.local_sink)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Builds a client and starts its worker thread.
    ///
    /// Without a write key and without a local sink the client is disabled:
    /// calls are validated and then counted as [`DropReason::Disabled`].
    /// Fails only on unusable configuration (an unparseable endpoint).
    pub fn new(options: ClientOptions) -> Result<Client, Error> {
        let (mut options, notes) = options.clamped();
        for note in notes {
            tracing::warn!(target: "raindrop", "{note}");
        }
        let endpoint = normalise_endpoint(&options.endpoint)?;
        options.endpoint = endpoint.to_string();

        let project_id = options.project_id.as_deref().map(str::trim).and_then(|p| {
            if p.is_empty() {
                None
            } else if valid_project_slug(p) {
                Some(p.to_owned())
            } else {
                tracing::warn!(target: "raindrop", "project_id `{p}` is not a valid slug (lowercase letters, digits, hyphens; 1-63 chars); sending no project header");
                None
            }
        });

        let counters = Arc::new(Counters::new());
        let debug_logs = Arc::new(AtomicBool::new(options.debug_logs));
        let workshop_only = options.write_key.is_none()
            && options.local_sink.is_none()
            && matches!(options.workshop, crate::Workshop::At(_));
        let enabled = options.write_key.is_some() || options.local_sink.is_some() || workshop_only;
        if workshop_only {
            tracing::info!(target: "raindrop", "no write key: sending only to the local Workshop");
        }
        let mut worker_handle = None;
        let queue = if enabled {
            if options.local_sink.is_none() && options.write_key.is_some() {
                warn_if_plain_http(&endpoint);
            }
            let (queue, budget, data_rx) = Queue::new(options.max_queue_size);
            let config =
                WorkerConfig::new(&options, endpoint, project_id.clone(), debug_logs.clone());
            match worker::spawn(config, counters.clone(), budget, data_rx) {
                Ok(handle) => {
                    worker_handle = Some(handle);
                    Some(queue)
                }
                Err(e) => {
                    setup_warning("worker", &format!("could not start the raindrop worker thread ({e}); raindrop is disabled and records nothing"));
                    None
                }
            }
        } else {
            setup_warning("disabled", "raindrop is disabled: no write key (RAINDROP_WRITE_KEY) and no local sink, so nothing is recorded. Set RAINDROP_WRITE_KEY, or RAINDROP_LOCAL_SINK=stdout (ClientOptions::local_sink) to see what would be sent");
            None
        };

        Ok(Client::from_parts(
            options,
            project_id,
            queue,
            DropReason::Disabled,
            counters,
            debug_logs,
            worker_handle,
        ))
    }

    /// A disabled client whose calls count as [`DropReason::NotInitialized`]:
    /// what the `raindrop` facade's free functions use before `init`.
    #[doc(hidden)]
    pub fn not_initialized() -> Client {
        Client::from_parts(
            ClientOptions::default(),
            None,
            None,
            DropReason::NotInitialized,
            Arc::new(Counters::new()),
            Arc::new(AtomicBool::new(false)),
            None,
        )
    }

    fn from_parts(
        options: ClientOptions,
        project_id: Option<String>,
        queue: Option<Queue>,
        disabled_reason: DropReason,
        counters: Arc<Counters>,
        debug_logs: Arc<AtomicBool>,
        worker: Option<JoinHandle<()>>,
    ) -> Client {
        Client {
            inner: Arc::new(Inner {
                options,
                project_id,
                queue,
                disabled_reason,
                counters,
                closed: AtomicBool::new(false),
                debug_logs,
                registry: Mutex::new(HashMap::new()),
                worker: Mutex::new(worker),
                report: Mutex::new(None),
            }),
        }
    }

    /// A client configured from the environment ([`ClientOptions::from_env`]).
    pub fn from_env() -> Result<Client, Error> {
        Client::new(ClientOptions::from_env())
    }

    /// Whether `self` and `other` are handles of the same client (one queue, one worker).
    pub fn ptr_eq(&self, other: &Client) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Whether the client sends anything (it has a key or a local sink).
    pub fn is_enabled(&self) -> bool {
        self.inner.queue.is_some()
    }

    /// The options in force (endpoint normalised).
    pub fn options(&self) -> &ClientOptions {
        &self.inner.options
    }

    /// Turns the per-request DEBUG logs (target `raindrop`) on or off at run
    /// time; the `debug_logs` option and `RAINDROP_DEBUG` set the initial value.
    pub fn set_debug_logs(&self, on: bool) {
        self.inner.debug_logs.store(on, Ordering::Relaxed);
    }

    /// Current counters.
    pub fn stats(&self) -> Stats {
        let (depth, cap) = match &self.inner.queue {
            Some(q) => (q.budget().depth(), q.budget().capacity()),
            None => (0, self.inner.options.max_queue_size),
        };
        self.inner.counters.snapshot(depth as u64, cap as u64)
    }

    /// Waits until every route's queue is at most half full. Opt-in
    /// back-pressure for batch work (evals, backfills, replays) where
    /// completeness matters more than latency: call it before each unit of
    /// tracking and nothing is dropped for capacity, while memory stays
    /// bounded by the queue. Returns at once when the client is disabled or
    /// shut down. Tracking calls themselves never wait.
    pub async fn ready(&self) {
        if let Some(q) = &self.inner.queue {
            q.budget().ready().await;
        }
    }

    /// Blocking form of [`ready`](Self::ready) for sync code: `false` if
    /// `timeout` passed first.
    pub fn wait_ready(&self, timeout: Duration) -> bool {
        match &self.inner.queue {
            Some(q) => q.budget().wait_ready(timeout),
            None => true,
        }
    }

    /// Queues an item; counts it whatever happens. Refusals for capacity,
    /// shutdown or a disabled client are counted and logged, never returned:
    /// telemetry must not fail the caller's request.
    pub(crate) fn enqueue(&self, item: Item) {
        let counters = &self.inner.counters;
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
        let Some(queue) = &self.inner.queue else {
            let reason = self.inner.disabled_reason;
            let detail = match reason {
                DropReason::NotInitialized => "raindrop::init was not called",
                _ => "client disabled (no write key and no local sink)",
            };
            lost(reason, detail);
            return;
        };
        if self.inner.closed.load(Ordering::Acquire) {
            lost(DropReason::AfterShutdown, "tracked after shutdown");
            return;
        }
        // Interaction updates come from mutators that return nothing: check them here.
        let item = match item {
            Item::Partial(mut p) => {
                p.properties = match within_depth("properties", std::mem::take(&mut p.properties)) {
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
        // Count first so the accounting never shows more settled than queued.
        counters.queued.fetch_add(1, Ordering::AcqRel);
        match queue.push(item) {
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
                    Refused::Closed => lost(DropReason::AfterShutdown, "worker stopped"),
                }
            }
        }
    }

    /// Whether `event_id` is kept by `sample_rate`: a pure function of the
    /// id (FNV-1a, then murmur3's 64-bit finaliser so that ids differing only
    /// in their last characters spread evenly), so every process that sees
    /// one interaction decides alike.
    pub(crate) fn sampled(&self, event_id: &str) -> bool {
        let rate = self.inner.options.sample_rate;
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
    fn sampled_out(&self, kind: ItemKind) {
        self.inner.counters.drop_unqueued(
            kind,
            DropReason::SampledOut,
            1,
            "not kept by sample_rate",
        );
    }

    fn reject(&self, kind: ItemKind, e: Error) -> Error {
        self.inner
            .counters
            .drop_unqueued(kind, DropReason::Invalid, 1, &e.to_string());
        e
    }

    /// Tracks an AI event on `events/track`; returns its event id.
    ///
    /// Needs a non-blank `user_id` and `event` and at least one of input and output.
    pub fn track_ai(&self, event: AiEvent) -> Result<String, Error> {
        let properties = within_depth("properties", event.properties)
            .map_err(|e| self.reject(ItemKind::Event, e))?;
        let ai = AiData {
            model: event.model,
            input: event.input,
            output: event.output,
            convo_id: event.convo_id.map(Into::into),
        };
        let item = (|| {
            if !ai.has_content() {
                return Err(Error::invalid(
                    "ai_data",
                    "track_ai needs a non-empty input or output",
                ));
            }
            self.track_event(
                event.user_id,
                event.event,
                event.event_id,
                Some(ai),
                properties,
                event.timestamp,
                event.attachments,
            )
        })()
        .map_err(|e| self.reject(ItemKind::Event, e))?;
        let id = item.event_id.clone();
        if self.sampled(&id) {
            self.enqueue(Item::Event(Box::new(item)));
        } else {
            self.sampled_out(ItemKind::Event);
        }
        Ok(id)
    }

    /// Tracks a plain (non-AI) event on `events/track`; returns its event id.
    pub fn track(&self, event: Event) -> Result<String, Error> {
        let properties = within_depth("properties", event.properties)
            .map_err(|e| self.reject(ItemKind::Event, e))?;
        let item = self
            .track_event(
                event.user_id,
                event.event,
                event.event_id,
                None,
                properties,
                event.timestamp,
                event.attachments,
            )
            .map_err(|e| self.reject(ItemKind::Event, e))?;
        let id = item.event_id.clone();
        if self.sampled(&id) {
            self.enqueue(Item::Event(Box::new(item)));
        } else {
            self.sampled_out(ItemKind::Event);
        }
        Ok(id)
    }

    #[allow(clippy::too_many_arguments)]
    fn track_event(
        &self,
        user_id: String,
        event: String,
        event_id: Option<String>,
        ai: Option<AiData>,
        properties: Properties,
        timestamp: Option<Timestamp>,
        attachments: Vec<Attachment>,
    ) -> Result<EventRecord, Error> {
        require("user_id", &user_id)?;
        require("event", &event)?;
        validate_attachments(&attachments)?;
        let timestamp = match timestamp {
            Some(t) => t.validate("timestamp")?,
            None => Timestamp::now(),
        };
        Ok(EventRecord {
            event_id: new_event_id(event_id)?,
            user_id,
            event,
            ai,
            properties,
            timestamp,
            attachments,
        })
    }

    /// Records who a user is (`users/identify`).
    pub fn identify(&self, user_id: impl Into<String>, traits: Properties) -> Result<(), Error> {
        let traits =
            within_depth("traits", traits).map_err(|e| self.reject(ItemKind::Identify, e))?;
        let user_id = user_id.into();
        require("user_id", &user_id).map_err(|e| self.reject(ItemKind::Identify, e))?;
        self.enqueue(Item::Identify(Box::new(IdentifyRecord { user_id, traits })));
        Ok(())
    }

    /// Records a user's reaction to an event (`signals/track`).
    ///
    /// Feedback needs a comment (the argument, or `properties.comment`; the
    /// argument wins) and an edit needs `after`; both travel in `properties`.
    pub fn track_signal(&self, signal: Signal) -> Result<(), Error> {
        let item = self
            .signal_item(signal)
            .map_err(|e| self.reject(ItemKind::Signal, e))?;
        if self.sampled(&item.event_id) {
            self.enqueue(Item::Signal(Box::new(item)));
        } else {
            // The event it refers to was not kept: the signal would dangle.
            self.sampled_out(ItemKind::Signal);
        }
        Ok(())
    }

    fn signal_item(&self, signal: Signal) -> Result<SignalRecord, Error> {
        let Signal {
            event_id,
            name,
            signal_type,
            sentiment,
            comment,
            after,
            properties,
            timestamp,
            attachment_id,
        } = signal;
        let mut properties = within_depth("properties", properties)?;
        require("event_id", &event_id)?;
        require("name", &name)?;
        let non_blank = |v: Option<&Value>| {
            v.and_then(Value::as_str)
                .is_some_and(|s| !s.trim().is_empty())
        };
        match signal_type {
            SignalType::Feedback => {
                if let Some(c) = comment {
                    if properties.contains_key("comment") {
                        tracing::warn!(target: "raindrop", "track_signal: comment argument replaces properties.comment");
                    }
                    properties.insert("comment".to_owned(), Value::String(c));
                }
                if !non_blank(properties.get("comment")) {
                    return Err(Error::invalid(
                        "comment",
                        "a feedback signal needs a non-empty comment",
                    ));
                }
            }
            SignalType::Edit => {
                if let Some(a) = after {
                    properties.insert("after".to_owned(), Value::String(a));
                }
                if !non_blank(properties.get("after")) {
                    return Err(Error::invalid(
                        "after",
                        "an edit signal needs the corrected text in `after`",
                    ));
                }
            }
            SignalType::Default => {
                if comment.is_some() || after.is_some() {
                    tracing::warn!(target: "raindrop", "track_signal: comment/after are ignored on a default signal");
                }
            }
        }
        let timestamp = match timestamp {
            Some(t) => t.validate("timestamp")?,
            None => Timestamp::now(),
        };
        Ok(SignalRecord {
            event_id,
            signal_name: name,
            timestamp,
            properties,
            attachment_id,
            sentiment,
            signal_type,
        })
    }

    /// Begins an interaction: an AI event whose fields arrive over time.
    ///
    /// Nothing is sent at once: updates are merged and shipped after
    /// `partial_idle_timeout` of inactivity (as a pending snapshot) or when
    /// the interaction finishes.
    pub fn begin(&self, begin: Begin) -> Result<Interaction, Error> {
        let Begin {
            user_id,
            event,
            event_id,
            input,
            model,
            convo_id,
            properties,
            attachments,
        } = begin;
        let properties = within_depth("properties", properties)
            .map_err(|e| self.reject(ItemKind::InteractionUpdate, e))?;
        let checked = (|| {
            require("event", &event)?;
            validate_attachments(&attachments)?;
            new_event_id(event_id)
        })();
        let event_id: Arc<str> = checked
            .map_err(|e| self.reject(ItemKind::InteractionUpdate, e))?
            .into();
        let core = Interaction::new_core(
            self.clone(),
            event_id.clone(),
            user_id.filter(|u| !u.trim().is_empty()),
            convo_id,
            Some(event),
        );
        if !core.sampled {
            self.sampled_out(ItemKind::Interaction);
        }
        self.remember_interaction(&core);
        let interaction = Interaction::from_core(core);
        interaction.send(|p| {
            p.ai.model = model;
            p.ai.input = input;
            p.properties = properties;
            p.attachments = attachments;
        });
        Ok(interaction)
    }

    /// The live interaction with this event id, or a handle that continues it.
    ///
    /// A resumed handle for an interaction begun elsewhere (another process)
    /// sends updates with no user or event name; the backend merges them by id.
    pub fn resume_interaction(&self, event_id: &str) -> Interaction {
        if let Some(core) = self
            .inner
            .registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(event_id)
            .and_then(Weak::upgrade)
        {
            return Interaction::from_core(core);
        }
        let core = Interaction::new_core(self.clone(), event_id.into(), None, None, None);
        Interaction::from_core(core)
    }

    /// A handle continuing the interaction named by a remote caller's
    /// `baggage` (see [`propagation`](crate::propagation)): the live one when
    /// it began in this process, otherwise a handle that knows the user,
    /// conversation and event name from the baggage (so its updates and
    /// spans carry them) without sending anything by itself. `None` without
    /// an event id.
    ///
    /// Updates through it merge into the caller's event by event id. The
    /// service that began the interaction finishes it; call `finish` here
    /// only if this service is meant to end it.
    ///
    /// ```
    /// use raindrop_core::{propagation::InteractionBaggage, Client, ClientOptions};
    /// let client = Client::new(ClientOptions::default()).unwrap();
    /// let b = InteractionBaggage::extract("raindrop.event_id=e-1,raindrop.user_id=u-1");
    /// let i = client.resume_remote(&b).unwrap();
    /// assert_eq!(i.event_id(), Some("e-1"));
    /// assert_eq!(i.user_id().as_deref(), Some("u-1"));
    /// ```
    pub fn resume_remote(
        &self,
        baggage: &crate::propagation::InteractionBaggage,
    ) -> Option<Interaction> {
        let event_id = baggage.event_id.as_deref()?;
        if let Some(core) = self
            .inner
            .registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(event_id)
            .and_then(Weak::upgrade)
        {
            return Some(Interaction::from_core(core));
        }
        let core = Interaction::new_core(
            self.clone(),
            event_id.into(),
            baggage.user_id.clone().filter(|u| !u.trim().is_empty()),
            baggage.convo_id.clone(),
            baggage.event.clone().filter(|e| !e.trim().is_empty()),
        );
        Some(Interaction::from_core(core))
    }

    fn remember_interaction(&self, core: &Arc<InteractionCore>) {
        let mut map = self
            .inner
            .registry
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // Sweep dead entries now and then, so a map of forgotten handles stays small.
        if map.len() >= 1024 && map.len().is_power_of_two() {
            map.retain(|_, w| w.strong_count() > 0);
        }
        map.insert(core.event_id.clone(), Arc::downgrade(core));
    }

    pub(crate) fn forget_interaction(&self, event_id: &str) {
        self.inner
            .registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(event_id);
    }

    /// Queues a finished span for the `traces` channel.
    ///
    /// A span linked to an event that `sample_rate` does not keep (its
    /// `traceloop.association.properties.event_id`) is counted and dropped.
    pub fn export_span(&self, span: SpanRecord) -> Result<(), Error> {
        let unsampled = self.inner.options.sample_rate < 1.0
            && span.attributes.iter().any(|(k, v)| {
                k == "traceloop.association.properties.event_id"
                    && matches!(v, crate::AttributeValue::String(id) if !self.sampled(id))
            });
        if unsampled {
            self.sampled_out(ItemKind::Span);
        } else {
            self.enqueue(Item::Span(Box::new(span)));
        }
        Ok(())
    }

    /// Blocks until everything queued before this call was delivered or given
    /// up, or `timeout` passed. Returns whether it completed in time: `true`
    /// means every item accepted before the call has been delivered or
    /// dropped with a reason, whatever happened to later items. Any
    /// `timeout` is accepted, `Duration::MAX` included.
    ///
    /// Safe to call from async code (it never needs the caller's runtime, so it
    /// cannot deadlock a current-thread runtime), but it blocks the thread:
    /// prefer [`flush_async`](Self::flush_async) there.
    pub fn flush(&self, timeout: Duration) -> bool {
        match self.request(timeout, Reply::blocking, Item::Flush) {
            // The worker answers at the deadline; the margin only guards a dead worker.
            Some(FlushWait::Blocking(rx)) => rx
                .recv_timeout(timeout.saturating_add(Duration::from_millis(200)))
                .unwrap_or(false),
            Some(FlushWait::Async(_)) => false,
            None => self.stats().pending() == 0,
        }
    }

    /// Puts a flush or shutdown marker in the queue, behind every item
    /// accepted so far. `None` when disabled or the worker is gone.
    fn request(
        &self,
        timeout: Duration,
        kind: fn() -> (Reply, FlushWait),
        make: fn(Control) -> Item,
    ) -> Option<FlushWait> {
        let queue = self.inner.queue.as_ref()?;
        let (reply, wait) = kind();
        let control = Control {
            deadline: deadline_in(timeout),
            reply,
        };
        queue.push(make(control)).ok()?;
        Some(wait)
    }

    /// Like [`flush`](Self::flush), without blocking the thread. Needs no
    /// timer in the caller's runtime: the worker enforces the timeout.
    pub async fn flush_async(&self, timeout: Duration) -> bool {
        match self.request(timeout, Reply::asynchronous, Item::Flush) {
            Some(FlushWait::Async(rx)) => rx.await.unwrap_or(false),
            Some(FlushWait::Blocking(_)) => false,
            None => self.stats().pending() == 0,
        }
    }

    /// Stops accepting items, delivers what is queued within `timeout`, and
    /// stops the worker. Idempotent: later calls return the first report.
    /// Items still undelivered at the deadline are dropped and counted.
    /// Any `timeout` is accepted, `Duration::MAX` included.
    pub fn shutdown(&self, timeout: Duration) -> ShutdownReport {
        let mut report_slot = self.inner.report.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = report_slot.as_ref() {
            return r.clone();
        }
        self.inner.closed.store(true, Ordering::Release);
        let mut completed = true;
        if self.inner.queue.is_some() {
            if let Some(FlushWait::Blocking(rx)) =
                self.request(timeout, Reply::blocking, Item::Shutdown)
            {
                // The worker holds the deadline itself; the margin covers its last bookkeeping.
                completed = rx
                    .recv_timeout(timeout.saturating_add(Duration::from_millis(500)))
                    .unwrap_or(false);
            }
            let handle = self
                .inner
                .worker
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            if let Some(h) = handle {
                if h.is_finished() || completed {
                    let _ = h.join();
                }
            }
        }
        let stats = self.stats();
        let report = ShutdownReport {
            completed,
            undelivered: stats.dropped(DropReason::ShutdownTimeout) + stats.pending(),
            stats,
        };
        if report.undelivered > 0 {
            tracing::warn!(target: "raindrop", undelivered = report.undelivered, "raindrop shut down with undelivered items");
        }
        *report_slot = Some(report.clone());
        report
    }

    /// Whether [`shutdown`](Self::shutdown) was called.
    pub fn is_shut_down(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }
}

fn require(field: &str, value: &str) -> Result<(), Error> {
    if value.trim().is_empty() {
        Err(Error::invalid(field, "must not be empty"))
    } else {
        Ok(())
    }
}

/// Deepest nesting of objects and arrays accepted in properties and traits
/// (the map itself is level 1). Deeper JSON would overflow the worker's stack
/// when serialised, so it is refused with an error naming the field.
pub(crate) const MAX_DEPTH: usize = 512;

/// Passes `map` through if its nesting is within [`MAX_DEPTH`]; otherwise
/// drops it without recursion and returns an error naming `field`. Callers
/// run it before any other check, so no early return drops a deep map
/// recursively.
fn within_depth(field: &str, map: Properties) -> Result<Properties, Error> {
    match check_depth(field, &map) {
        Ok(()) => Ok(map),
        Err(e) => {
            dismantle(map);
            Err(e)
        }
    }
}

/// Checks nesting without recursion, so the check itself cannot overflow.
fn check_depth(field: &str, map: &Properties) -> Result<(), Error> {
    let mut stack: Vec<(&Value, usize)> = map.values().map(|v| (v, 2)).collect();
    while let Some((v, depth)) = stack.pop() {
        match v {
            Value::Object(_) | Value::Array(_) if depth > MAX_DEPTH => {
                return Err(Error::invalid(
                    field,
                    format!("nested deeper than {MAX_DEPTH} levels of objects and arrays"),
                ));
            }
            Value::Object(m) => stack.extend(m.values().map(|c| (c, depth + 1))),
            Value::Array(a) => stack.extend(a.iter().map(|c| (c, depth + 1))),
            _ => {}
        }
    }
    Ok(())
}

/// Drops a refused value without recursion: serde_json drops nested values
/// recursively, which would overflow the caller's stack on very deep JSON.
fn dismantle(map: Properties) {
    let mut stack: Vec<Value> = map.into_iter().map(|(_, v)| v).collect();
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(m) => stack.extend(m.into_iter().map(|(_, v)| v)),
            Value::Array(a) => stack.extend(a),
            _ => {}
        }
    }
}

fn validate_attachments(attachments: &[Attachment]) -> Result<(), Error> {
    for (i, a) in attachments.iter().enumerate() {
        if a.value.is_empty() {
            return Err(Error::invalid(
                format!("attachments[{i}].value"),
                "must not be empty",
            ));
        }
    }
    Ok(())
}

fn new_event_id(given: Option<String>) -> Result<String, Error> {
    match given {
        Some(id) if id.trim().is_empty() => {
            Err(Error::invalid("event_id", "must not be empty when given"))
        }
        Some(id) => Ok(id),
        None => Ok(crate::ids::uuid_v4()),
    }
}

fn normalise_endpoint(endpoint: &str) -> Result<reqwest::Url, Error> {
    let trimmed = endpoint.trim().trim_end_matches('/');
    let url = reqwest::Url::parse(&format!("{trimmed}/")).map_err(|e| Error::Config {
        field: "endpoint",
        reason: format!("`{endpoint}` is not a URL: {e}"),
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::Config {
            field: "endpoint",
            reason: format!("scheme `{}` is not http or https", url.scheme()),
        });
    }
    Ok(url)
}

fn warn_if_plain_http(url: &reqwest::Url) {
    if url.scheme() != "http" {
        return;
    }
    let loopback = match url.host_str() {
        Some("localhost") => true,
        Some(h) => h
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    };
    if !loopback {
        tracing::warn!(target: "raindrop", "the endpoint uses plain http to a non-loopback host: the write key would travel unencrypted");
    }
}
