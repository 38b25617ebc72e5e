//! The background worker: one OS thread owning a current-thread tokio runtime.
//!
//! It drains the queue, merges interaction updates, serialises and batches
//! per route, and delivers through per-route lanes with bounded concurrency.
//! Nothing here ever runs on a caller's thread.
//!
//! Every item gets a sequence number as it leaves the queue, and every unit
//! of unsettled work (a batch being filled, a request waiting or in flight,
//! an interaction update) knows the oldest sequence number in it. A flush
//! marker, travelling in the same FIFO queue, is answered once nothing older
//! than it is unsettled: later items never make it wait, and never make it
//! return early.
//!
//! The ledger, in one place: an accepted item is counted `queued` by the
//! caller, then is in exactly one of a batcher, the partial buffer, a lane's
//! queue or a request in flight ([`Worker::oldest_unsettled`] looks in all
//! four), until it settles as `delivered` or dropped with a reason
//! ([`Counters::drop_queued`]). So `queued == delivered + dropped + pending`
//! at any moment. While a flush or shutdown waits (`draining`), partial
//! batches are sealed and due updates ship at once instead of at the tick.

mod batch;
mod fit;
mod limit;
pub(crate) mod partial;
mod prepare;
mod retry;
mod send;
mod spool_hooks;
pub(crate) mod tls;
pub(crate) mod wire;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::item::{Control, Item, Reply};
use crate::options::ClientOptions;
use crate::queue::{Budget, Queued};
use crate::route::Route;
use crate::stats::{Counters, DropReason, ItemKind};
use batch::{Batcher, Body};
use partial::{MergedUpdate, PartialBuffer};
use send::{Outcome, Transport};
use spool_hooks::SpoolState;

/// What the worker needs: the client's options (clamped to sane ranges),
/// shared rather than copied, and what the client derived from them.
pub(crate) struct WorkerConfig {
    pub options: Arc<ClientOptions>,
    /// The endpoint, normalised.
    pub base: reqwest::Url,
    /// The `project_id` option, if it is a valid slug.
    pub project_id: Option<String>,
    /// Content switch, redaction and the before-send hook.
    pub prepare: prepare::Prepare,
    /// What `Workshop::Auto` probes: `None` in a release build, which never
    /// mirrors unless told to.
    pub workshop_probe: Option<std::net::SocketAddr>,
    /// Shared with the client so `set_debug_logs` works at run time.
    pub debug_logs: Arc<std::sync::atomic::AtomicBool>,
    /// Root certificates and extra CAs for HTTPS.
    pub tls: crate::endpoint::Tls,
    /// The durable spool, opened (and locked) by the client.
    pub spool: Option<crate::spool::Spool>,
}

impl WorkerConfig {
    /// `options` has been clamped to sane ranges by the client.
    pub fn new(
        options: &Arc<ClientOptions>,
        base: reqwest::Url,
        tls: crate::endpoint::Tls,
        project_id: Option<String>,
        debug_logs: Arc<std::sync::atomic::AtomicBool>,
        app_git: Arc<crate::app_git::AppGitState>,
    ) -> Self {
        WorkerConfig {
            prepare: prepare::Prepare::new(options, app_git),
            workshop_probe: options.debug_build.then_some(options.workshop_probe_addr),
            options: options.clone(),
            base,
            project_id,
            debug_logs,
            tls,
            spool: None,
        }
    }
}

/// Set by tests to make the next delivery task panic.
pub(crate) static PANIC_NEXT_DELIVERY: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Set by tests to make the next [`spawn`] fail as if the OS refused a thread.
pub(crate) static FAIL_NEXT_SPAWN: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Starts the worker thread. Its runtime is built on that thread, never on
/// the caller's: a runtime dropped inside the caller's async context (when
/// the thread cannot start) would panic there. Waits for the thread to say
/// whether its runtime started, so a failure leaves the client disabled
/// instead of accepting items nobody will read.
pub(crate) fn spawn(
    cfg: WorkerConfig,
    counters: Arc<Counters>,
    budget: Arc<Budget>,
    data: mpsc::UnboundedReceiver<Queued>,
) -> std::io::Result<JoinHandle<()>> {
    let transport = Arc::new(Transport::new(&cfg)?);
    if FAIL_NEXT_SPAWN.swap(false, Ordering::AcqRel) {
        return Err(std::io::Error::other("thread spawn refused (simulated)"));
    }
    let (started_tx, started_rx) = std::sync::mpsc::sync_channel::<std::io::Result<()>>(1);
    let handle = std::thread::Builder::new()
        .name("raindrop-worker".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = started_tx.send(Err(e));
                    return;
                }
            };
            let _ = started_tx.send(Ok(()));
            let worker = Worker::new(cfg, counters, transport, budget, data);
            rt.block_on(worker.run());
        })?;
    match started_rx.recv() {
        Ok(Ok(())) => Ok(handle),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(std::io::Error::other(
            "the worker thread ended before starting",
        )),
    }
}

/// One request: a body, and for an interaction update the update itself, kept
/// to merge it back if delivery fails.
struct Request {
    body: Body,
    /// Items of it still holding a place in the route's queue budget.
    held: u64,
    update: Option<MergedUpdate>,
}

impl Request {
    /// A batch of serialised items: each holds its place in the queue budget.
    fn batch(body: Body) -> Request {
        Request {
            held: body.items,
            body,
            update: None,
        }
    }
}

/// Requests of one route waiting for a free slot, and those in flight.
struct Lane {
    queue: VecDeque<Request>,
    /// How many may be in flight, chosen from the route's answers.
    limiter: limit::Limiter,
    /// Oldest sequence number of each request in flight (a multiset).
    in_flight: BTreeMap<u64, u32>,
    in_flight_count: usize,
}

impl Lane {
    fn new(max_in_flight: usize) -> Self {
        Lane {
            queue: VecDeque::new(),
            limiter: limit::Limiter::new(max_in_flight),
            in_flight: BTreeMap::new(),
            in_flight_count: 0,
        }
    }

    fn min_seq(&self) -> Option<u64> {
        let queued = self.queue.iter().map(|r| r.body.min_seq).min();
        let flying = self.in_flight.keys().next().copied();
        queued.into_iter().chain(flying).min()
    }

    fn landed(&mut self, seq: u64) {
        self.in_flight_count -= 1;
        if let Some(n) = self.in_flight.get_mut(&seq) {
            *n -= 1;
            if *n == 0 {
                self.in_flight.remove(&seq);
            }
        }
    }
}

/// One route's state on the worker: the batch being filled and the lane of
/// requests. The interaction-update route's batcher stays empty: updates go
/// one per request, from the partial buffer ([`Worker::ship_partial`]).
struct RouteState {
    batcher: Batcher,
    lane: Lane,
}

/// Every route's state, one entry per [`Route`], in [`Route::ALL`] order.
struct Routes([RouteState; Route::ALL.len()]);

impl Routes {
    fn new(cfg: &WorkerConfig) -> Routes {
        let o = &cfg.options;
        Routes(Route::ALL.map(|route| RouteState {
            batcher: match route {
                Route::Traces => Batcher::new(wire::traces_prefix(), wire::TRACES_SUFFIX, 50),
                _ => Batcher::array(o.upload_size),
            },
            // Partials go one object per request, many at once; updates of
            // one event still go one at a time (the partial buffer sees to it).
            lane: Lane::new(match route {
                Route::Partial => o.max_partials_in_flight,
                _ => o.max_in_flight,
            }),
        }))
    }

    fn get(&self, route: Route) -> &RouteState {
        &self.0[route as usize]
    }

    fn get_mut(&mut self, route: Route) -> &mut RouteState {
        &mut self.0[route as usize]
    }

    fn iter(&self) -> impl Iterator<Item = &RouteState> {
        self.0.iter()
    }
}

/// What a delivery task hands back.
struct Done {
    update: Option<MergedUpdate>,
    outcome: Outcome,
}

/// What the worker remembers of a request in flight, by its task's id: enough
/// to settle it even when the task never answers (it panicked, or the
/// shutdown deadline aborted it).
struct Flight {
    route: Route,
    items: u64,
    min_seq: u64,
    /// Bytes charged for it, released when it settles.
    cost: u64,
    started: Instant,
    /// For an interaction update: its event (the ledger's key) and whether it
    /// carried the final update.
    event: Option<(Arc<str>, bool)>,
}

struct Waiter {
    /// Settled when nothing older than this sequence number is unsettled.
    target: u64,
    deadline: Instant,
    reply: Reply,
}

struct Worker {
    cfg: WorkerConfig,
    counters: Arc<Counters>,
    transport: Arc<Transport>,
    budget: Arc<Budget>,
    data: mpsc::UnboundedReceiver<Queued>,
    data_open: bool,
    /// Sequence number of the next data item.
    received: u64,
    routes: Routes,
    partials: PartialBuffer,
    tasks: JoinSet<Done>,
    flights: HashMap<tokio::task::Id, Flight>,
    flushes: Vec<Waiter>,
    shutdown: Option<Waiter>,
    ready: Vec<Body>,
    updates: Vec<MergedUpdate>,
    /// The durable spool and what the worker needs of it (`spool_hooks.rs`).
    spool: SpoolState,
    /// Each event, signal, identify call or span is serialised here, then
    /// copied into its batch: one buffer for all, not one per item.
    scratch: Vec<u8>,
}

enum Wake {
    Done(Box<Result<(tokio::task::Id, Done), tokio::task::JoinError>>),
    Item(Option<Queued>),
    Tick,
}

/// The log detail of a drop decided by [`prepare`].
fn hook_detail(reason: DropReason) -> &'static str {
    match reason {
        DropReason::HookPanicked => {
            "the before_send hook panicked (the item is dropped, the worker goes on)"
        }
        _ => "the before_send hook dropped it",
    }
}

/// Items taken from the queue per wake-up before finished requests are
/// looked at again.
const INTAKE_BURST: usize = 512;

/// While items keep coming, the worker looks at the queue this often
/// instead of waiting on it. A worker waiting on the queue is woken by the
/// caller whose item arrives first: a syscall on the caller's thread
/// (writing the runtime's eventfd), which at a few thousand calls a second
/// from many threads was the caller's p99. Polling, callers never wake it.
/// Costs an item at most this much latency.
const POLL_EVERY: Duration = Duration::from_millis(1);

/// How long after the last item the worker keeps polling before it waits
/// on the queue again (and a caller's item wakes it): an idle service costs
/// no wake-ups, and a lone event at most ten polls.
const POLL_LINGER: Duration = Duration::from_millis(10);

/// Capacity the serialisation buffer keeps between items; a larger item's
/// buffer is given back after it.
const SCRATCH_KEEP: usize = 64 * 1024;

impl Worker {
    fn new(
        mut cfg: WorkerConfig,
        counters: Arc<Counters>,
        transport: Arc<Transport>,
        budget: Arc<Budget>,
        data: mpsc::UnboundedReceiver<Queued>,
    ) -> Self {
        let cfg_spool = cfg.spool.take();
        Worker {
            routes: Routes::new(&cfg),
            partials: PartialBuffer::new(),
            cfg,
            counters,
            transport,
            budget,
            data,
            data_open: true,
            received: 0,
            tasks: JoinSet::new(),
            flights: HashMap::new(),
            flushes: Vec::new(),
            shutdown: None,
            ready: Vec::new(),
            updates: Vec::new(),
            spool: SpoolState::new(cfg_spool),
            scratch: Vec::new(),
        }
    }

    /// The oldest sequence number of any unsettled item, if any.
    fn oldest_unsettled(&self) -> Option<u64> {
        let routes = self.routes.iter();
        let open = routes.flat_map(|r| [r.batcher.min_seq(), r.lane.min_seq()]);
        open.flatten().chain(self.partials.min_seq()).min()
    }

    async fn run(mut self) {
        // Items queue up meanwhile; the probe is bounded to 100 ms.
        self.transport.resolve_workshop(&self.cfg).await;
        let interval = self.cfg.options.upload_interval;
        let mut next_tick = Instant::now() + interval;
        // See `POLL_EVERY`: until then the worker looks at the queue itself
        // instead of being woken by each caller.
        let (mut poll_until, mut poll_now) = (Instant::now(), false);
        loop {
            let start = Instant::now();
            let polling = self.data_open && start < poll_until;
            let poll_at = polling.then(|| if poll_now { start } else { start + POLL_EVERY });
            let next_wake = self
                .flushes
                .iter()
                .chain(self.shutdown.iter())
                .map(|w| w.deadline)
                .chain(self.pause_ends())
                .chain(self.spool.wake_at())
                .chain(poll_at)
                .fold(next_tick, Instant::min);
            let wake = tokio::select! {
                biased;
                Some(d) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => Wake::Done(Box::new(d)),
                i = self.data.recv(), if self.data_open && !polling => Wake::Item(i),
                _ = tokio::time::sleep_until(next_wake.into()) => Wake::Tick,
            };
            let now = Instant::now();
            let mut taken = 0;
            match wake {
                Wake::Done(d) => self.on_joined(*d),
                Wake::Item(Some(q)) => {
                    self.on_item(q.item, q.cost, now);
                    taken = 1 + self.drain_queue(now);
                }
                Wake::Item(None) => self.on_disconnect(),
                Wake::Tick => {}
            }
            // Polling, every wake takes what is queued (answers come far
            // more often than the poll when the queue is busy).
            if polling {
                taken = self.drain_queue(now);
            }
            if taken > 0 {
                poll_until = now + POLL_LINGER;
            }
            // A full burst: more may be waiting, look again at once.
            poll_now = taken >= INTAKE_BURST;
            // Checked after every wake, so a busy queue cannot starve the timer.
            if now >= next_tick {
                self.seal();
                self.partials
                    .scan_due(now, self.cfg.options.partial_idle_timeout, false);
                next_tick = now + interval;
            }
            if self.shutdown.is_some() {
                self.drain_all(now);
            }
            // SPOOL HOOK: replay, write what was taken (before it is sent), delete what settled.
            self.spool_step(now);
            self.ship_partials();
            self.pump();
            if self.answer_waiters() {
                self.budget.stop();
                self.close_intake();
                // Give mirror requests a moment: they are best effort.
                let grace = Instant::now() + Duration::from_millis(500);
                while self.transport.mirroring() > 0 && Instant::now() < grace {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                return;
            }
        }
    }

    /// When paused routes with waiting requests may go again (future pauses
    /// only: a pause that ended must not make the loop spin).
    fn pause_ends(&self) -> impl Iterator<Item = Instant> + '_ {
        let now = Instant::now();
        Route::ALL.into_iter().filter_map(move |r| {
            let waiting = !self.routes.get(r).lane.queue.is_empty();
            waiting
                .then(|| self.transport.paused_until(r))
                .flatten()
                .filter(|until| *until > now)
        })
    }

    /// Every client handle is gone: deliver what is left, then stop.
    fn on_disconnect(&mut self) {
        self.data_open = false;
        if self.shutdown.is_none() {
            let (reply, _) = Reply::blocking();
            self.shutdown = Some(Waiter {
                target: self.received,
                deadline: crate::time::deadline_in(self.cfg.options.shutdown_timeout),
                reply,
            });
        }
    }

    /// Takes a burst of what is already queued, without waiting; returns
    /// how many items it took.
    fn drain_queue(&mut self, now: Instant) -> usize {
        for taken in 0..INTAKE_BURST {
            match self.data.try_recv() {
                Ok(q) => self.on_item(q.item, q.cost, now),
                Err(mpsc::error::TryRecvError::Empty) => return taken,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    self.on_disconnect();
                    return taken;
                }
            }
        }
        INTAKE_BURST
    }

    /// Makes everything buffered due now: open batches and every interaction
    /// update (a flush or shutdown is waiting for them).
    fn drain_all(&mut self, now: Instant) {
        self.seal();
        self.partials
            .scan_due(now, self.cfg.options.partial_idle_timeout, true);
    }

    fn on_item(&mut self, item: Item, cost: u64, now: Instant) {
        // SPOOL HOOK: while a previous process's items replay, new ones wait behind them.
        let Some(item) = self.spool_hold(item, cost) else {
            return;
        };
        let max = self.cfg.options.max_text_field_chars;
        let p = &self.cfg.prepare;
        let out = &mut self.scratch;
        let (route, fitted) = match item {
            Item::Event(mut e) => (
                Route::Track,
                p.event(&mut e).map(|()| fit::event(&mut e, max, out)),
            ),
            Item::Signal(mut s) => (
                Route::Signals,
                p.signal(&mut s).map(|()| fit::signal(&mut s, out)),
            ),
            Item::Identify(mut i) => (
                Route::Identify,
                p.identify(&mut i).map(|()| fit::identify(&mut i, out)),
            ),
            Item::Span(mut s) => (
                Route::Traces,
                p.span(&mut s).map(|()| fit::span(&mut s, max, out)),
            ),
            Item::Update(slot) => {
                if let Some(mut w) = slot.take() {
                    let seq = self.next_seq();
                    // SPOOL HOOK: append the update.
                    self.spool_update(&mut w.update, w.updates, seq);
                    self.partials.add(w.update, seq, w.updates, w.cost, now);
                }
                return;
            }
            Item::Flush(Control { deadline, reply }) => {
                self.flushes.push(Waiter {
                    target: self.received,
                    deadline,
                    reply,
                });
                self.drain_all(now);
                return;
            }
            Item::Shutdown(Control { deadline, reply }) => {
                let w = Waiter {
                    target: self.received,
                    deadline,
                    reply,
                };
                if let Some(old) = self.shutdown.replace(w) {
                    old.reply.send(false);
                }
                self.drain_all(now);
                return;
            }
        };
        self.add_fitted(route, fitted, cost);
    }

    /// Batches the item `on_item` serialised into the scratch buffer, or
    /// drops it with the reason `fitted` gives.
    fn add_fitted(
        &mut self,
        route: Route,
        fitted: Result<Result<(), usize>, DropReason>,
        cost: u64,
    ) {
        match fitted {
            Ok(Ok(())) => {
                let seq = self.next_seq();
                let bytes = std::mem::take(&mut self.scratch);
                // SPOOL HOOK: append the request JSON.
                self.spool.append_wire(route, &bytes, seq);
                self.add_serialised(route, &bytes, seq, cost);
                self.scratch = bytes;
            }
            Ok(Err(len)) => self.drop_unsent(
                route,
                DropReason::Oversize,
                1,
                cost,
                &format!(
                    "{} item of {len} bytes does not fit the 1 MiB request limit even with its text cut",
                    route.path()
                ),
            ),
            Err(reason) => self.drop_unsent(route, reason, 1, cost, hook_detail(reason)),
        }
        if self.scratch.capacity() > SCRATCH_KEEP {
            self.scratch = Vec::new();
        }
    }

    fn next_seq(&mut self) -> u64 {
        let s = self.received;
        self.received += 1;
        s
    }

    /// Drops queued items that never reached a request, releasing their budget.
    fn drop_unsent(&self, route: Route, reason: DropReason, n: u64, cost: u64, detail: &str) {
        self.budget.release(route, n);
        self.budget.release_bytes(cost);
        self.counters.drop_queued(route.kind(), reason, n, detail);
    }

    fn add_serialised(&mut self, route: Route, bytes: &[u8], seq: u64, cost: u64) {
        if bytes.is_empty() || !self.routes.get(route).batcher.fits_alone(bytes.len()) {
            self.drop_unsent(
                route,
                DropReason::Oversize,
                1,
                cost,
                &format!(
                    "{} item of {} bytes exceeds the 1 MiB limit",
                    route.path(),
                    bytes.len()
                ),
            );
            return;
        }
        let mut out = std::mem::take(&mut self.ready);
        let state = self.routes.get_mut(route);
        state.batcher.push(bytes, seq, cost, &mut out);
        for body in out.drain(..) {
            state.lane.queue.push_back(Request::batch(body));
        }
        self.ready = out;
    }

    /// Moves open batches into their lanes.
    fn seal(&mut self) {
        for state in &mut self.routes.0 {
            if let Some(body) = state.batcher.take() {
                state.lane.queue.push_back(Request::batch(body));
            }
        }
    }

    /// Serialises the interaction updates that may leave now into the partial lane.
    fn ship_partials(&mut self) {
        let mut updates = std::mem::take(&mut self.updates);
        self.partials.take_ready(&mut updates);
        for d in updates.drain(..) {
            self.ship_partial(d);
        }
        self.updates = updates;
    }

    fn ship_partial(&mut self, mut d: MergedUpdate) {
        let refuse = if d.update.is_final && !d.update.had_content {
            Some((
                DropReason::EmptyInteraction,
                "interaction finished with no input, output or attachment".to_owned(),
            ))
        } else {
            self.cfg
                .prepare
                .update(&mut d.update)
                .err()
                .map(|r| (r, hook_detail(r).to_owned()))
        };
        if let Some((reason, detail)) = refuse {
            self.drop_update(d, reason, &detail);
            return;
        }
        let max = self.cfg.options.max_text_field_chars;
        // Attachments beyond one request go in the next update of the event.
        let rest = fit::split_attachments(&mut d.update, max);
        if !rest.is_empty() {
            let tail = d.split_tail(rest);
            self.partials.push_front(tail);
        }
        let bytes = match fit::update(&mut d.update, max) {
            Ok(bytes) => bytes,
            Err(len) => {
                let detail = format!(
                    "interaction update of {len} bytes does not fit the 1 MiB request limit even with its text cut"
                );
                self.drop_update(d, DropReason::Oversize, &detail);
                return;
            }
        };
        self.routes
            .get_mut(Route::Partial)
            .lane
            .queue
            .push_back(Request {
                body: Body {
                    bytes,
                    items: d.updates,
                    min_seq: d.min_seq,
                    cost: d.cost,
                },
                held: d.held,
                update: Some(d),
            });
    }

    /// Drops one interaction update for good, and counts the interaction lost
    /// if it carried the final update.
    fn drop_update(&mut self, d: MergedUpdate, reason: DropReason, detail: &str) {
        // SPOOL HOOK: given up on here, kept on disk for the next start.
        self.spool.keep_if_transient(reason, d.min_seq);
        self.budget.release(Route::Partial, d.held);
        self.budget.release_bytes(d.cost);
        self.counters
            .drop_queued(ItemKind::InteractionUpdate, reason, d.updates, detail);
        if d.update.is_final {
            self.counters.interaction_lost(reason, detail);
        }
        self.partials.settle(&d.key, None, self.draining());
    }

    fn draining(&self) -> bool {
        !self.flushes.is_empty() || self.shutdown.is_some()
    }

    /// Starts requests while lanes have free slots and are not paused.
    fn pump(&mut self) {
        let now = Instant::now();
        for route in Route::ALL {
            if self
                .transport
                .paused_until(route)
                .is_some_and(|until| until > now)
            {
                continue;
            }
            let lane = &mut self.routes.get_mut(route).lane;
            while lane.in_flight_count < lane.limiter.slots() {
                let Some(mut req) = lane.queue.pop_front() else {
                    break;
                };
                // In flight: its place in the queue budget is free again
                // (its bytes stay charged until it settles).
                self.budget.release(route, req.held);
                if let Some(d) = req.update.as_mut() {
                    d.held = 0;
                }
                lane.in_flight_count += 1;
                *lane.in_flight.entry(req.body.min_seq).or_insert(0) += 1;
                let flight = Flight {
                    route,
                    items: req.body.items,
                    min_seq: req.body.min_seq,
                    cost: req.body.cost,
                    started: now,
                    event: req
                        .update
                        .as_ref()
                        .map(|d| (d.key.clone(), d.update.is_final)),
                };
                let transport = self.transport.clone();
                let counters = self.counters.clone();
                let bytes = req.body.bytes;
                let update = req.update;
                let task = self.tasks.spawn(async move {
                    if PANIC_NEXT_DELIVERY.swap(false, Ordering::AcqRel) {
                        panic!("injected delivery fault (test)");
                    }
                    let outcome = transport
                        .deliver(route, bytes::Bytes::from(bytes), &counters)
                        .await;
                    Done { update, outcome }
                });
                self.flights.insert(task.id(), flight);
            }
        }
    }

    /// A delivery task ended: with its answer, or without one (it panicked).
    fn on_joined(&mut self, joined: Result<(tokio::task::Id, Done), tokio::task::JoinError>) {
        let (id, done) = match joined {
            Ok((id, done)) => (id, Some(done)),
            Err(e) => (e.id(), None),
        };
        let Some(flight) = self.flights.remove(&id) else {
            return;
        };
        let lane = &mut self.routes.get_mut(flight.route).lane;
        lane.landed(flight.min_seq);
        let answered = done
            .as_ref()
            .is_some_and(|d| !matches!(d.outcome, Outcome::Exhausted));
        let now = Instant::now();
        lane.limiter.on_done(
            now,
            now.saturating_duration_since(flight.started),
            answered,
            lane.queue.len(),
            lane.in_flight_count,
        );
        self.counters.in_flight_limit[flight.route as usize]
            .store(lane.limiter.slots() as u64, Ordering::Relaxed);
        match done {
            Some(done) => self.on_done(flight, done),
            None => {
                const WHY: &str = "a delivery task panicked; its request is lost";
                self.settle_lost(flight, DropReason::Internal, WHY);
            }
        }
    }

    /// Counts a request in flight as lost for `reason`: its items, its bytes,
    /// and the interaction if it carried a final update.
    fn settle_lost(&mut self, flight: Flight, reason: DropReason, detail: &str) {
        // SPOOL HOOK: given up on here, kept on disk for the next start.
        self.spool.keep_if_transient(reason, flight.min_seq);
        self.budget.release_bytes(flight.cost);
        self.counters
            .drop_queued(flight.route.kind(), reason, flight.items, detail);
        if let Some((key, is_final)) = flight.event {
            if is_final {
                self.counters.interaction_lost(reason, detail);
            }
            self.partials.settle(&key, None, self.draining());
        }
    }

    fn on_done(&mut self, f: Flight, d: Done) {
        let kind = f.route.kind();
        let draining = self.draining();
        match (d.outcome, d.update) {
            (Outcome::Delivered, update) => {
                self.budget.release_bytes(f.cost);
                self.counters.delivered.fetch_add(f.items, Ordering::AcqRel);
                if let Some(update) = update {
                    self.partials.settle(&update.key, None, draining);
                }
            }
            (Outcome::Rejected(status), Some(update)) => {
                // A permanent refusal is not merged back: the same content
                // would be refused again and hold up the event's later
                // updates. Identity travels in every update, so those still
                // make a valid event.
                let detail = format!("{} answered HTTP {status} (permanent)", f.route.path());
                self.drop_update(update, DropReason::Rejected, &detail);
            }
            (Outcome::Exhausted, Some(mut update)) => {
                if update.failures == 0 {
                    // Merged back in front of the event's newer updates and
                    // sent again with them, never skipped while they ship.
                    // Its bytes stay charged.
                    update.failures += 1;
                    let key = update.key.clone();
                    self.partials.settle(&key, Some(update), draining);
                } else {
                    let detail = format!("{}: retries exhausted", f.route.path());
                    self.drop_update(update, DropReason::RetriesExhausted, &detail);
                }
            }
            (Outcome::Rejected(status), None) => {
                self.budget.release_bytes(f.cost);
                self.counters.drop_queued(
                    kind,
                    DropReason::Rejected,
                    f.items,
                    &format!("{} answered HTTP {status} (permanent)", f.route.path()),
                )
            }
            (Outcome::Exhausted, None) => {
                // SPOOL HOOK: given up on here, kept on disk for the next start.
                self.spool
                    .keep_if_transient(DropReason::RetriesExhausted, f.min_seq);
                self.budget.release_bytes(f.cost);
                self.counters.drop_queued(
                    kind,
                    DropReason::RetriesExhausted,
                    f.items,
                    &format!("{}: retries exhausted", f.route.path()),
                )
            }
        }
    }

    /// Answers flushes that completed or expired; `true` when the worker should stop.
    fn answer_waiters(&mut self) -> bool {
        let now = Instant::now();
        if !self.flushes.is_empty() {
            let oldest = self.oldest_unsettled();
            let settled = |w: &Waiter| oldest.is_none_or(|s| s >= w.target);
            let (answered, waiting): (Vec<Waiter>, Vec<Waiter>) = std::mem::take(&mut self.flushes)
                .into_iter()
                .partition(|w| settled(w) || now >= w.deadline);
            self.flushes = waiting;
            for w in answered {
                let done = settled(&w);
                w.reply.send(done);
            }
        }
        let Some(sd) = &self.shutdown else {
            return false;
        };
        let idle = self.data.is_empty() && self.tasks.is_empty();
        if idle && self.oldest_unsettled().is_none() {
            // SPOOL HOOK: settle and unlock before the caller hears back.
            self.spool_finish();
            if let Some(sd) = self.shutdown.take() {
                sd.reply.send(true);
            }
            return true;
        }
        if now >= sd.deadline {
            self.abandon_all();
            // SPOOL HOOK: unlock before the caller hears back.
            self.spool_finish();
            if let Some(sd) = self.shutdown.take() {
                sd.reply.send(false);
            }
            return true;
        }
        false
    }

    /// The shutdown deadline passed: drops everything unsettled, counted by kind.
    fn abandon_all(&mut self) {
        const WHY: &str = "shutdown deadline passed before delivery";
        // SPOOL HOOK: what is dropped now stays on disk for the next start.
        self.spool.freeze();
        let reason = DropReason::ShutdownTimeout;
        // Requests that finished but were not looked at yet settle as they ended.
        while let Some(joined) = self.tasks.try_join_next_with_id() {
            self.on_joined(joined);
        }
        self.tasks.abort_all();
        for (_, flight) in std::mem::take(&mut self.flights) {
            self.routes
                .get_mut(flight.route)
                .lane
                .landed(flight.min_seq);
            self.settle_lost(flight, reason, WHY);
        }
        for route in Route::ALL {
            let state = self.routes.get_mut(route);
            let waiting: Vec<Request> = state.lane.queue.drain(..).collect();
            let open = state.batcher.take();
            for req in waiting {
                match req.update {
                    Some(d) => self.drop_update(d, reason, WHY),
                    None => self.drop_unsent(route, reason, req.body.items, req.body.cost, WHY),
                }
            }
            if let Some(body) = open {
                self.drop_unsent(route, reason, body.items, body.cost, WHY);
            }
        }
        for d in self.partials.take_all() {
            self.drop_update(d, reason, WHY);
        }
        self.drop_queued_items(reason, WHY);
    }

    /// Drops what is still in the channel, counted (finals as lost interactions).
    fn drop_queued_items(&mut self, reason: DropReason, why: &str) {
        while let Ok(q) = self.data.try_recv() {
            let Some(route) = q.item.route() else {
                continue;
            };
            if let Item::Update(slot) = &q.item {
                // Its updates are counted one by one; it held one queue slot.
                self.budget.release(route, 1);
                if let Some(w) = slot.take() {
                    self.budget.release_bytes(w.cost);
                    self.counters
                        .drop_queued(route.kind(), reason, w.updates, why);
                    if w.update.is_final {
                        self.counters.interaction_lost(reason, why);
                    }
                }
                continue;
            }
            self.drop_unsent(route, reason, 1, q.cost, why);
        }
    }

    /// The worker is stopping: no item may enter after this, and any that
    /// slipped in after the last look (a caller that passed the `closed`
    /// check just before shutdown) is counted, not lost silently.
    fn close_intake(&mut self) {
        self.data.close();
        self.drop_queued_items(
            DropReason::AfterShutdown,
            "tracked while the worker was stopping",
        );
    }
}
