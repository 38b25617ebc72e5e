//! `Client`: validates tracking calls and hands them to the worker.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;

use crate::app_git::{AppGitInfo, AppGitState};
use crate::diag::setup_warning;
use crate::endpoint;
use crate::interaction::{Interaction, InteractionCore, Joined};
use crate::item::{Control, EventRecord, IdentifyRecord, Item, Reply};
use crate::model::{AiEvent, Begin, Event, Signal};
use crate::options::{valid_project_slug, ClientOptions};
use crate::pipeline::{CarrierKind, Pipeline};
use crate::propagation::{
    CarrierGrant, CarrierKey, CarrierRefusal, CarrierTrust, InteractionBaggage,
};
use crate::queue::Queue;
use crate::span::SpanRecord;
use crate::stats::{Counters, DropReason, ItemKind, Stats};
use crate::time::deadline_in;
use crate::validate;
use crate::worker::{self, WorkerConfig};
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
    pipeline: Arc<Pipeline>,
    debug_logs: Arc<AtomicBool>,
    /// Live interactions by event id, for `resume_interaction_by_id`.
    registry: Mutex<Registry>,
    worker: Mutex<Option<JoinHandle<()>>>,
    report: Mutex<Option<ShutdownReport>>,
}

/// Live interactions by event id. Dropped and finished entries are swept
/// when the map reaches twice the size it had after the last sweep (at least
/// 1,024): amortised O(1) per `begin`, whatever the number of live ones.
#[derive(Default)]
struct Registry {
    live: HashMap<Arc<str>, Weak<InteractionCore>>,
    sweep_at: usize,
    sweeps: usize,
}

impl Registry {
    fn insert(&mut self, core: &Arc<InteractionCore>) {
        if self.live.len() >= self.sweep_at.max(1024) {
            self.live
                .retain(|_, w| w.upgrade().is_some_and(|core| !core.is_finished()));
            self.sweep_at = self.live.len().saturating_mul(2);
            self.sweeps += 1;
        }
        self.live
            .insert(core.event_id.clone(), Arc::downgrade(core));
    }
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
            .field("endpoint", &self.inner.pipeline.options.endpoint)
            .field("project_id", &self.inner.pipeline.project_id)
            .field("enabled", &self.is_enabled())
            .field("local_sink", &self.inner.pipeline.options.local_sink)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Builds a client and starts its worker thread.
    ///
    /// Without a write key and without a local sink the client is disabled:
    /// calls are validated and then counted as [`DropReason::Disabled`].
    /// Fails only on unusable configuration (an unparseable endpoint), or a
    /// spool directory that cannot be created or is in use by another
    /// client ([`ClientOptions::spool`]).
    pub fn new(options: ClientOptions) -> Result<Client, Error> {
        let (mut options, notes) = options.clamped();
        for note in notes {
            tracing::warn!(target: "raindrop", "{note}");
        }
        let endpoint = endpoint::normalise_endpoint(&options.endpoint)?;
        options.endpoint = endpoint.to_string();
        let tls = endpoint::tls(&options)?;
        // Other reqwest 0.13 clients of the process (rig's, genai's) find
        // ring installed rather than panicking for want of a provider.
        crate::install_tls_provider();
        // One copy, shared by the client and its worker.
        let options = Arc::new(options);

        let project_id = project_id(&options);

        let counters = Arc::new(Counters::new());
        let debug_logs = Arc::new(AtomicBool::new(options.debug_logs));
        let workshop_only = options.write_key.is_none()
            && options.local_sink.is_none()
            && matches!(options.workshop, crate::Workshop::At(_));
        let enabled = options.write_key.is_some() || options.local_sink.is_some() || workshop_only;
        if workshop_only {
            tracing::info!(target: "raindrop", "no write key: sending only to the local Workshop");
        }
        // A disabled client sends nothing: no lookup for it.
        let app_git = if enabled {
            AppGitState::start(&options.app_git)
        } else {
            AppGitState::none()
        };
        let mut worker_handle = None;
        let queue = if enabled {
            if options.local_sink.is_none() && options.write_key.is_some() {
                endpoint::warn_if_plain_http(&endpoint);
            }
            let spool = open_spool(&options, &counters)?;
            let (queue, budget, data_rx) =
                Queue::new(options.max_queue_size, options.max_buffered_bytes);
            let mut config = WorkerConfig::new(
                &options,
                endpoint,
                tls,
                project_id.clone(),
                debug_logs.clone(),
                app_git.clone(),
            );
            config.spool = spool;
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
            app_git,
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
            Arc::new(ClientOptions::default()),
            None,
            AppGitState::none(),
            None,
            DropReason::NotInitialized,
            Arc::new(Counters::new()),
            Arc::new(AtomicBool::new(false)),
            None,
        )
    }

    // A private constructor naming each part once; a struct would only repeat them.
    #[allow(clippy::too_many_arguments)]
    fn from_parts(
        options: Arc<ClientOptions>,
        project_id: Option<String>,
        app_git: Arc<AppGitState>,
        queue: Option<Queue>,
        disabled_reason: DropReason,
        counters: Arc<Counters>,
        debug_logs: Arc<AtomicBool>,
        worker: Option<JoinHandle<()>>,
    ) -> Client {
        let (carrier_key, carrier_key_local) = carrier_key(&options);
        Client {
            inner: Arc::new(Inner {
                pipeline: Arc::new(Pipeline {
                    carrier_key,
                    carrier_key_local,
                    tracing_enabled: AtomicBool::new(options.tracing_enabled),
                    app_git,
                    options,
                    project_id,
                    queue,
                    disabled_reason,
                    counters,
                    closed: AtomicBool::new(false),
                }),
                debug_logs,
                registry: Mutex::new(Registry::default()),
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
        self.inner.pipeline.queue.is_some()
    }

    /// The options in force (endpoint normalised).
    pub fn options(&self) -> &ClientOptions {
        &self.inner.pipeline.options
    }

    /// Turns the per-request DEBUG logs (target `raindrop`) on or off at run
    /// time; the `debug_logs` option and `RAINDROP_DEBUG` set the initial value.
    pub fn set_debug_logs(&self, on: bool) {
        self.inner.debug_logs.store(on, Ordering::Relaxed);
    }

    /// Turns span export on or off at run time; the `tracing_enabled`
    /// option and `RAINDROP_TRACING_ENABLED` set the initial value.
    pub fn set_tracing_enabled(&self, on: bool) {
        self.inner
            .pipeline
            .tracing_enabled
            .store(on, Ordering::Relaxed);
    }

    /// Whether spans are exported now.
    pub fn tracing_enabled(&self) -> bool {
        self.inner.pipeline.tracing_enabled()
    }

    /// The application Git provenance added to events and spans: `None`
    /// while the local `git` lookup runs (at most 750 ms after
    /// [`Client::new`]), when nothing was found, or when it is off.
    pub fn app_git(&self) -> Option<AppGitInfo> {
        self.inner.pipeline.app_git.get().cloned()
    }

    /// Whether the local `git` lookup is still running. Not part of the
    /// stable API (the SDK's tests bound the lookup with it).
    #[doc(hidden)]
    pub fn app_git_pending(&self) -> bool {
        self.inner.pipeline.app_git.pending()
    }

    /// Current counters.
    pub fn stats(&self) -> Stats {
        let o = &self.inner.pipeline.options;
        let (depth, cap, bytes, max_bytes) = match &self.inner.pipeline.queue {
            Some(q) => {
                let b = q.budget();
                (b.depth(), b.capacity(), b.bytes(), b.max_bytes())
            }
            None => (0, o.max_queue_size, 0, o.max_buffered_bytes),
        };
        self.inner.pipeline.counters.snapshot(
            depth as u64,
            cap as u64,
            bytes as u64,
            max_bytes as u64,
        )
    }

    /// Returns at once while every route's queue is at most five eighths
    /// full and at most five eighths of `max_buffered_bytes` is held; past
    /// that, waits until they have drained to half (so that producers
    /// waiting together are woken once per eighth of the queue, not once
    /// per request the worker sends). Opt-in
    /// back-pressure for batch work (evals, backfills, replays) where
    /// completeness matters more than latency: call it before each unit of
    /// tracking and nothing is dropped for capacity, while memory stays
    /// bounded by the queue. Returns at once when the client is disabled or
    /// shut down. Tracking calls themselves never wait.
    pub async fn ready(&self) {
        if let Some(q) = &self.inner.pipeline.queue {
            q.budget().ready().await;
        }
    }

    /// Blocking form of [`ready`](Self::ready) for sync code: `false` if
    /// `timeout` passed first.
    pub fn wait_ready(&self, timeout: Duration) -> bool {
        match &self.inner.pipeline.queue {
            Some(q) => q.budget().wait_ready(timeout),
            None => true,
        }
    }

    /// Tracks an AI event on `events/track`; returns its event id.
    ///
    /// Needs a non-blank `user_id` and `event` and at least one of input and output.
    pub fn track_ai(&self, event: AiEvent) -> Result<String, Error> {
        let item = validate::ai_event(event)
            .map_err(|e| self.inner.pipeline.reject(ItemKind::Event, e))?;
        Ok(self.enqueue_event(item))
    }

    /// Tracks a plain (non-AI) event on `events/track`; returns its event id.
    pub fn track(&self, event: Event) -> Result<String, Error> {
        let item =
            validate::event(event).map_err(|e| self.inner.pipeline.reject(ItemKind::Event, e))?;
        Ok(self.enqueue_event(item))
    }

    fn enqueue_event(&self, item: EventRecord) -> String {
        let id = item.event_id.clone();
        if self.inner.pipeline.sampled(&id) {
            self.inner.pipeline.enqueue(Item::Event(Box::new(item)));
        } else {
            self.inner.pipeline.sampled_out(ItemKind::Event);
        }
        id
    }

    /// Records who a user is (`users/identify`). `traits` is a `serde_json`
    /// map or `json!({..})` object, or any `Serialize` struct or map.
    ///
    /// ```
    /// # let client = raindrop_core::Client::new(raindrop_core::ClientOptions::default()).unwrap();
    /// #[derive(serde::Serialize)]
    /// struct Traits { plan: &'static str, seats: u32 }
    /// client.identify("user-1", Traits { plan: "pro", seats: 7 }).unwrap();
    /// client.identify("user-2", serde_json::json!({"plan": "free"})).unwrap();
    /// assert!(client.identify("user-3", "not an object").is_err());
    /// ```
    pub fn identify(
        &self,
        user_id: impl Into<String>,
        traits: impl Serialize,
    ) -> Result<(), Error> {
        let user_id = user_id.into();
        let traits = validate::identify(&user_id, crate::properties::to_properties(traits))
            .map_err(|e| self.inner.pipeline.reject(ItemKind::Identify, e))?;
        self.inner
            .pipeline
            .enqueue(Item::Identify(Box::new(IdentifyRecord { user_id, traits })));
        Ok(())
    }

    /// Records a user's reaction to an event (`signals/track`).
    ///
    /// Feedback needs a comment (the argument, or `properties.comment`; the
    /// argument wins) and an edit needs `after`; both travel in `properties`.
    pub fn track_signal(&self, signal: Signal) -> Result<(), Error> {
        let item = validate::signal(signal)
            .map_err(|e| self.inner.pipeline.reject(ItemKind::Signal, e))?;
        if self.inner.pipeline.sampled(&item.event_id) {
            self.inner.pipeline.enqueue(Item::Signal(Box::new(item)));
        } else {
            // The event it refers to was not kept: the signal would dangle.
            self.inner.pipeline.sampled_out(ItemKind::Signal);
        }
        Ok(())
    }

    /// Begins an interaction: an AI event whose fields arrive over time.
    ///
    /// Nothing is sent at once: updates are merged and shipped after
    /// `partial_idle_timeout` of inactivity (as a pending snapshot) or when
    /// the interaction finishes.
    pub fn begin(&self, mut begin: Begin) -> Result<Interaction, Error> {
        let checked = validate::begin(&mut begin)
            .map_err(|e| self.inner.pipeline.reject(ItemKind::InteractionUpdate, e))?;
        let event_id: Arc<str> = checked.event_id.into();
        let core = Interaction::new_core(
            self.inner.pipeline.clone(),
            event_id,
            None,
            None,
            None,
            None,
        );
        if !core.sampled {
            self.inner.pipeline.sampled_out(ItemKind::Interaction);
        }
        self.remember_interaction(&core);
        let interaction = Interaction::from_core(core);
        interaction.begin_with(begin, checked.properties);
        Ok(interaction)
    }

    /// The live interaction with this event id, or a handle that continues it.
    ///
    /// A resumed handle for an interaction begun elsewhere (another process)
    /// sends updates with no user or event name; the backend merges them by id.
    pub fn resume_interaction_by_id(&self, event_id: &str) -> Interaction {
        if let Some(core) = self.live(event_id) {
            return Interaction::from_core(core);
        }
        let core = Interaction::new_core(
            self.inner.pipeline.clone(),
            event_id.into(),
            None,
            None,
            None,
            None,
        );
        Interaction::from_core(core)
    }

    /// A handle joining the interaction named by a remote caller's
    /// `baggage` (see [`propagation`](crate::propagation)), as
    /// [`join_remote`](Self::join_remote) with nothing delegated: it may not
    /// finish the interaction or change its user. `None` without an event id.
    ///
    /// It never returns the handle of an interaction live in this process,
    /// even one with the same event id: a caller of another service must
    /// not get hold of a request's own interaction. Use
    /// [`resume_interaction_by_id`](Self::resume_interaction_by_id) for that,
    /// from code you trust. The baggage is trusted as given: read it with
    /// `raindrop_tracing::propagate::extract`, which checks its signature.
    ///
    /// ```
    /// use raindrop_core::{propagation::InteractionBaggage, Client, ClientOptions};
    /// let client = Client::new(ClientOptions::default()).unwrap();
    /// let b = InteractionBaggage::extract("raindrop.event_id=e-1,raindrop.user_id=u-1");
    /// let i = client.resume_remote(&b).unwrap();
    /// assert_eq!(i.event_id(), Some("e-1"));
    /// assert_eq!(i.user_id().as_deref(), Some("u-1"));
    /// ```
    pub fn resume_remote(&self, baggage: &InteractionBaggage) -> Option<Interaction> {
        self.join_remote(
            baggage,
            CarrierGrant {
                delegate_finish: false,
            },
        )
    }

    /// A handle joining the interaction named by a remote caller's
    /// verified `baggage`, with what the caller's signed carrier granted: a
    /// new handle that knows the user, conversation and event name from the
    /// baggage (so its updates and spans carry them) without sending
    /// anything by itself. Its updates merge into the caller's event by
    /// event id. It refuses (counts in [`Stats`] and warns) a change of the
    /// user id, and a finish unless `grant.delegate_finish`. `None` without
    /// an event id.
    ///
    /// ```
    /// use raindrop_core::propagation::{CarrierGrant, InteractionBaggage};
    /// use raindrop_core::{Client, ClientOptions};
    /// let client = Client::new(ClientOptions::default()).unwrap();
    /// let b = InteractionBaggage::extract("raindrop.event_id=e-1,raindrop.user_id=u-1");
    /// let i = client.join_remote(&b, CarrierGrant { delegate_finish: false }).unwrap();
    /// i.set_user_id("someone-else");
    /// i.finish("done");
    /// assert_eq!(i.user_id().as_deref(), Some("u-1"));
    /// assert!(!i.is_finished());
    /// assert_eq!(client.stats().joined_user_changes_refused, 1);
    /// assert_eq!(client.stats().joined_finishes_refused, 1);
    /// ```
    pub fn join_remote(
        &self,
        baggage: &InteractionBaggage,
        grant: CarrierGrant,
    ) -> Option<Interaction> {
        let event_id = baggage.event_id.as_deref()?;
        let core = Interaction::new_core(
            self.inner.pipeline.clone(),
            event_id.into(),
            baggage.user_id.clone().filter(|u| !u.trim().is_empty()),
            baggage.convo_id.clone(),
            baggage.event.clone().filter(|e| !e.trim().is_empty()),
            Some(Joined {
                may_finish: grant.delegate_finish,
            }),
        );
        Some(Interaction::from_core(core))
    }

    /// The `x-raindrop-signature` value for a carrier this client sends
    /// (see [`CarrierKey`]), signed now. Used by
    /// `raindrop_tracing::propagate::inject`; not part of the stable API.
    #[doc(hidden)]
    pub fn sign_carrier(
        &self,
        trace_id: &[u8; 16],
        baggage: &InteractionBaggage,
        delegate_finish: bool,
    ) -> Option<String> {
        let key = self.inner.pipeline.carrier_key.as_ref()?;
        self.warn_if_local_key();
        Some(key.sign(trace_id, baggage, delegate_finish, crate::time::unix_now()))
    }

    /// Decides whether an incoming carrier's interaction may be joined:
    /// its signature must verify with this client's key and be within the
    /// replay window, unless unsigned carriers are trusted (`trust`, or the
    /// `propagation_trust` option). A refusal is counted and warned. Used
    /// by `raindrop_tracing::propagate::extract`; not part of the stable API.
    #[doc(hidden)]
    pub fn accept_carrier(
        &self,
        signature: Option<&str>,
        trace_id: &[u8; 16],
        baggage: &InteractionBaggage,
        trust: CarrierTrust,
    ) -> Result<CarrierGrant, CarrierRefusal> {
        self.inner.pipeline.accept_signed(
            signature,
            trust,
            CarrierKind::Interaction,
            |key, h, now, window| key.verify(h, trace_id, baggage, now, window),
        )
    }

    /// Said once, loudly: with neither secret nor write key, carriers are
    /// signed with a key only this process knows.
    fn warn_if_local_key(&self) {
        self.inner.pipeline.warn_if_local_key();
    }

    /// The pipeline, for the hand-off code of this crate.
    pub(crate) fn pipeline(&self) -> &Arc<Pipeline> {
        &self.inner.pipeline
    }

    /// The interaction begun in this process with this id, if a handle of
    /// it is alive and it is not finished.
    fn live(&self, event_id: &str) -> Option<Arc<InteractionCore>> {
        self.inner
            .registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .live
            .get(event_id)
            .and_then(Weak::upgrade)
            .filter(|core| !core.is_finished())
    }

    pub(crate) fn remember_interaction(&self, core: &Arc<InteractionCore>) {
        self.inner
            .registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(core);
    }

    /// Queues a finished span for the `traces` channel: the extension point
    /// for span sources other than the tracing layer (which uses it too).
    /// [`SpanRecord`] is the OTLP span as the wire contract describes it;
    /// both are part of the stable API.
    ///
    /// A span linked to an event that `sample_rate` does not keep (its
    /// `traceloop.association.properties.event_id`) is counted and dropped;
    /// with tracing turned off ([`set_tracing_enabled`](Self::set_tracing_enabled))
    /// nothing is queued or counted.
    pub fn export_span(&self, span: SpanRecord) -> Result<(), Error> {
        self.inner.pipeline.export_span(span);
        Ok(())
    }

    /// Queues a span whose sampling the caller already decided from its
    /// interaction's handle ([`Interaction::is_sampled`]), so its attributes
    /// are not searched for the event id again; `None` counts one span
    /// sampled out. The tracing layer's way in; not a stable API.
    #[doc(hidden)]
    pub fn export_sampled_span(&self, span: Option<SpanRecord>) {
        self.inner.pipeline.export_sampled_span(span);
    }

    /// Records a tool call with the caller's own timing as a `<name>.tool`
    /// span, linked to the event `association` names (an
    /// [`&Interaction`](Interaction) or an [`Association`](crate::Association)
    /// of ids); see [`ToolCall`](crate::ToolCall). A no-op with tracing off.
    ///
    /// ```
    /// use std::time::Duration;
    /// use raindrop_core::{Association, Client, ClientOptions, ToolCall};
    /// let client = Client::new(ClientOptions::default()).unwrap();
    /// client.track_tool(
    ///     Association::new().event_id("evt-1").user_id("user-1"),
    ///     ToolCall::new("db_query").input("SELECT 1").duration(Duration::from_millis(50)),
    /// )?;
    /// # Ok::<(), raindrop_core::Error>(())
    /// ```
    pub fn track_tool(
        &self,
        association: impl Into<crate::Association>,
        call: crate::ToolCall,
    ) -> Result<(), Error> {
        crate::manual_span::track_tool(&self.inner.pipeline, &association.into(), call, Vec::new())
    }

    /// Starts a span by hand, linked to the event `association` names (an
    /// [`Association`](crate::Association) of ids, or an
    /// [`&Interaction`](Interaction)'s ids as they are now;
    /// [`Interaction::start_span`] reads them when the span ends instead);
    /// see [`ManualSpan`](crate::ManualSpan).
    ///
    /// ```
    /// use raindrop_core::{Association, Client, ClientOptions, SpanKind};
    /// let client = Client::new(ClientOptions::default()).unwrap();
    /// let span = client.start_span(SpanKind::Task, "failing", Association::new().event_id("evt-1"));
    /// span.end(Some("boom"));
    /// ```
    pub fn start_span(
        &self,
        kind: crate::SpanKind,
        name: impl Into<String>,
        association: impl Into<crate::Association>,
    ) -> crate::ManualSpan {
        crate::ManualSpan::start(
            self.inner.pipeline.clone(),
            kind,
            name.into(),
            None,
            association.into(),
        )
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
        let (reply, rx) = Reply::blocking();
        if !self.request(timeout, reply, Item::Flush) {
            return self.stats().pending() == 0;
        }
        // The worker answers at the deadline; the margin only guards a dead worker.
        rx.recv_timeout(timeout.saturating_add(Duration::from_millis(200)))
            .unwrap_or(false)
    }

    /// Puts a flush or shutdown marker in the queue, behind every item
    /// accepted so far. `false` when disabled or the worker is gone (the
    /// reply is then dropped unanswered).
    fn request(&self, timeout: Duration, reply: Reply, make: fn(Control) -> Item) -> bool {
        let Some(queue) = self.inner.pipeline.queue.as_ref() else {
            return false;
        };
        let control = Control {
            deadline: deadline_in(timeout),
            reply,
        };
        queue.push(make(control), 0).is_ok()
    }

    /// Like [`flush`](Self::flush), without blocking the thread. Needs no
    /// timer in the caller's runtime: the worker enforces the timeout.
    ///
    /// The deadline also holds on the caller's side: if the worker cannot
    /// answer in time (a before-send hook or a local-sink write that blocks),
    /// this returns `false` shortly after `timeout` all the same.
    pub async fn flush_async(&self, timeout: Duration) -> bool {
        let (reply, rx) = Reply::asynchronous();
        if !self.request(timeout, reply, Item::Flush) {
            return self.stats().pending() == 0;
        }
        let by = deadline_in(timeout.saturating_add(Duration::from_millis(200)));
        crate::time::answer_by(rx, by).await.unwrap_or(false)
    }

    /// Stops accepting items, delivers what is queued within `timeout`, and
    /// stops the worker. Idempotent: later calls return the first report.
    /// Items still undelivered at the deadline are dropped and counted.
    /// Any `timeout` is accepted, `Duration::MAX` included.
    ///
    /// Blocks the thread (safely, even on a runtime thread: the worker has
    /// its own); in async code [`shutdown_async`](Self::shutdown_async)
    /// does not.
    pub fn shutdown(&self, timeout: Duration) -> ShutdownReport {
        let mut slot = self.inner.report.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = slot.as_ref() {
            return r.clone();
        }
        let mut completed = true;
        if !self.inner.pipeline.closed.swap(true, Ordering::AcqRel) {
            let (reply, rx) = Reply::blocking();
            if self.request(timeout, reply, Item::Shutdown) {
                // The worker holds the deadline itself; the margin covers its last bookkeeping.
                completed = rx
                    .recv_timeout(timeout.saturating_add(Duration::from_millis(500)))
                    .unwrap_or(false);
            }
        }
        self.settle_shutdown(&mut slot, completed)
    }

    /// [`shutdown`](Self::shutdown) without blocking the thread: the worker
    /// enforces the deadline, so it needs no timer in the caller's runtime,
    /// and the caller's side holds it too (see [`flush_async`](Self::flush_async)).
    pub async fn shutdown_async(&self, timeout: Duration) -> ShutdownReport {
        if let Some(r) = self.report() {
            return r;
        }
        let mut completed = true;
        if !self.inner.pipeline.closed.swap(true, Ordering::AcqRel) {
            let (reply, rx) = Reply::asynchronous();
            if self.request(timeout, reply, Item::Shutdown) {
                let by = deadline_in(timeout.saturating_add(Duration::from_millis(500)));
                completed = crate::time::answer_by(rx, by).await.unwrap_or(false);
            }
        }
        let mut slot = self.inner.report.lock().unwrap_or_else(|e| e.into_inner());
        self.settle_shutdown(&mut slot, completed)
    }

    fn report(&self) -> Option<ShutdownReport> {
        self.inner
            .report
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The end of a shutdown: joins a worker that has stopped, writes the
    /// report once (a shutdown that lost a race returns the first report).
    fn settle_shutdown(
        &self,
        slot: &mut Option<ShutdownReport>,
        completed: bool,
    ) -> ShutdownReport {
        if let Some(r) = slot.as_ref() {
            return r.clone();
        }
        let handle = self
            .inner
            .worker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(h) = handle {
            // A worker past its deadline ends by itself; only a finished one is waited for.
            if h.is_finished() || completed {
                let _ = h.join();
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
        *slot = Some(report.clone());
        report
    }

    /// Whether [`shutdown`](Self::shutdown) was called.
    pub fn is_shut_down(&self) -> bool {
        self.inner.pipeline.closed.load(Ordering::Acquire)
    }
}

/// The carrier key for these options, and whether it is this process's own
/// random one: the propagation secret, else one derived from the write key,
/// else a random key shared by the clients of this process (so services in
/// one process, as in the examples and tests, still join each other).
fn carrier_key(options: &ClientOptions) -> (Option<CarrierKey>, bool) {
    if let Some(s) = options
        .propagation_secret
        .as_ref()
        .filter(|s| !s.expose().is_empty())
    {
        return (Some(CarrierKey::from_secret(s.expose().as_bytes())), false);
    }
    if let Some(k) = options
        .write_key
        .as_ref()
        .filter(|k| !k.expose().is_empty())
    {
        return (Some(CarrierKey::from_write_key(k.expose())), false);
    }
    static LOCAL: std::sync::OnceLock<Option<CarrierKey>> = std::sync::OnceLock::new();
    let local = LOCAL.get_or_init(|| {
        use ring::rand::SecureRandom as _;
        let mut secret = [0u8; 32];
        ring::rand::SystemRandom::new()
            .fill(&mut secret)
            .ok()
            .map(|()| CarrierKey::from_secret(&secret))
    });
    (local.clone(), true)
}

/// The `project_id` option when it is a valid slug (warned and left out
/// otherwise).
fn project_id(options: &ClientOptions) -> Option<String> {
    let p = options.project_id.as_deref().map(str::trim)?;
    if p.is_empty() {
        None
    } else if valid_project_slug(p) {
        Some(p.to_owned())
    } else {
        tracing::warn!(target: "raindrop", "project_id `{p}` is not a valid slug (lowercase letters, digits, hyphens; 1-63 chars); sending no project header");
        None
    }
}

/// Opens (and locks) the spool directory, if one is configured: here, not
/// on the worker, so a second process learns at once that it is in use.
fn open_spool(
    options: &ClientOptions,
    counters: &Counters,
) -> Result<Option<crate::spool::Spool>, Error> {
    let Some(o) = &options.spool else {
        return Ok(None);
    };
    crate::spool::Spool::open(o, counters.spool.clone())
        .map(Some)
        .map_err(|reason| Error::Config {
            field: "spool",
            reason,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With about 1,024 interactions live, a `begin` must not sweep the
    /// whole map every time (it did when the sweep ran at powers of two).
    #[test]
    fn registry_sweeps_are_amortised() {
        let client = Client::new(ClientOptions::default()).unwrap();
        let live: Vec<Interaction> = (0..1023)
            .map(|n| {
                client
                    .begin(Begin::new("u", "e").event_id(format!("live-{n}")))
                    .unwrap()
            })
            .collect();
        for n in 0..500 {
            drop(client.begin(Begin::new("u", "e").event_id(format!("gone-{n}"))));
        }
        let r = client.inner.registry.lock().unwrap();
        assert!(r.sweeps <= 1, "{} sweeps", r.sweeps);
        drop(r);
        drop(live);
    }
}
