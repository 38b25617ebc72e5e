//! The background worker: one OS thread owning a current-thread tokio runtime.
//!
//! It drains the queue, merges interaction updates, serialises and batches
//! per route, and delivers through per-route lanes with bounded concurrency.
//! Nothing here ever runs on a caller's thread.
//!
//! Every item gets a sequence number as it leaves the queue, and every unit
//! of unsettled work (a batch being filled, a request waiting or in flight,
//! an interaction delta) knows the oldest sequence number in it. A flush
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
//! batches are sealed and due deltas ship at once instead of at the tick.

mod batch;
mod partial;
mod prepare;
mod retry;
mod send;
pub(crate) mod wire;

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use crate::item::{Control, Item};
use crate::options::{ClientOptions, LocalSink, WriteKey};
use crate::queue::Budget;
use crate::stats::{Counters, DropReason, ItemKind};
use batch::{Batcher, Body};
use partial::{Delta, PartialBuffer};
use send::{Outcome, Transport};

/// The ingestion routes, relative to the base URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    Track = 0,
    Partial = 1,
    Signals = 2,
    Identify = 3,
    Traces = 4,
}

impl Route {
    const ALL: [Route; 5] = [
        Route::Track,
        Route::Partial,
        Route::Signals,
        Route::Identify,
        Route::Traces,
    ];

    /// What one item of this route is, for loss accounting.
    pub fn kind(self) -> ItemKind {
        match self {
            Route::Track => ItemKind::Event,
            Route::Partial => ItemKind::InteractionUpdate,
            Route::Signals => ItemKind::Signal,
            Route::Identify => ItemKind::Identify,
            Route::Traces => ItemKind::Span,
        }
    }

    pub fn path(self) -> &'static str {
        match self {
            Route::Track => "events/track",
            Route::Partial => "events/track_partial",
            Route::Signals => "signals/track",
            Route::Identify => "users/identify",
            Route::Traces => "traces",
        }
    }
}

/// What the worker needs from the options.
pub(crate) struct WorkerConfig {
    pub base: reqwest::Url,
    pub write_key: Option<WriteKey>,
    pub project_id: Option<String>,
    pub local_sink: Option<LocalSink>,
    pub upload_size: usize,
    pub upload_interval: Duration,
    pub partial_idle_timeout: Duration,
    pub request_timeout: Duration,
    pub max_attempts: u32,
    pub max_retry_after: Duration,
    pub max_in_flight: usize,
    pub max_partials_in_flight: usize,
    pub max_text_field_chars: usize,
    pub shutdown_timeout: Duration,
    /// Content switch, redaction and the before-send hook.
    pub prepare: prepare::Prepare,
    /// Where to mirror requests for local debugging.
    pub workshop: crate::options::Workshop,
    /// What `Workshop::Auto` probes: `None` in a release build, which never
    /// mirrors unless told to.
    pub workshop_probe: Option<std::net::SocketAddr>,
    /// Shared with the client so `set_debug_logs` works at run time.
    pub debug_logs: Arc<std::sync::atomic::AtomicBool>,
    /// Root certificates and extra CAs for HTTPS.
    pub tls: crate::validate::Tls,
}

impl WorkerConfig {
    /// `o` has been clamped to sane ranges by the client.
    pub fn new(
        o: &ClientOptions,
        base: reqwest::Url,
        tls: crate::validate::Tls,
        project_id: Option<String>,
        debug_logs: Arc<std::sync::atomic::AtomicBool>,
    ) -> Self {
        WorkerConfig {
            base,
            write_key: o.write_key.clone(),
            project_id,
            local_sink: o.local_sink.clone(),
            upload_size: o.upload_size,
            upload_interval: o.upload_interval,
            partial_idle_timeout: o.partial_idle_timeout,
            request_timeout: o.request_timeout,
            max_attempts: o.max_attempts,
            max_retry_after: o.max_retry_after,
            max_in_flight: o.max_in_flight,
            max_partials_in_flight: o.max_partials_in_flight,
            max_text_field_chars: o.max_text_field_chars,
            shutdown_timeout: o.shutdown_timeout,
            prepare: prepare::Prepare::new(o),
            workshop: o.workshop.clone(),
            workshop_probe: o.debug_build.then_some(o.workshop_probe_addr),
            debug_logs,
            tls,
        }
    }
}

/// How the worker answers a flush or shutdown.
pub(crate) enum Reply {
    Blocking(std::sync::mpsc::SyncSender<bool>),
    Async(oneshot::Sender<bool>),
}

impl Reply {
    pub fn blocking() -> (Reply, std::sync::mpsc::Receiver<bool>) {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        (Reply::Blocking(tx), rx)
    }
    pub fn asynchronous() -> (Reply, oneshot::Receiver<bool>) {
        let (tx, rx) = oneshot::channel();
        (Reply::Async(tx), rx)
    }
    fn send(self, v: bool) {
        match self {
            Reply::Blocking(tx) => {
                let _ = tx.try_send(v);
            }
            Reply::Async(tx) => {
                let _ = tx.send(v);
            }
        }
    }
}

pub(crate) fn spawn(
    cfg: WorkerConfig,
    counters: Arc<Counters>,
    budget: Arc<Budget>,
    data: mpsc::UnboundedReceiver<Item>,
) -> std::io::Result<JoinHandle<()>> {
    let transport = Arc::new(Transport::new(&cfg)?);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("raindrop-worker".into())
        .spawn(move || {
            let worker = Worker::new(cfg, counters, transport, budget, data);
            rt.block_on(worker.run());
        })
}

/// One request: a body, and for an interaction delta the delta itself, kept
/// to merge it back if delivery fails.
struct Request {
    body: Body,
    /// Items of it still holding a place in the route's queue budget.
    held: u64,
    delta: Option<Delta>,
}

/// Requests of one route waiting for a free slot, and those in flight.
struct Lane {
    queue: VecDeque<Request>,
    max_in_flight: usize,
    /// Oldest sequence number of each request in flight (a multiset).
    in_flight: BTreeMap<u64, u32>,
    in_flight_count: usize,
    in_flight_items: u64,
}

impl Lane {
    fn new(max_in_flight: usize) -> Self {
        Lane {
            queue: VecDeque::new(),
            max_in_flight,
            in_flight: BTreeMap::new(),
            in_flight_count: 0,
            in_flight_items: 0,
        }
    }

    fn min_seq(&self) -> Option<u64> {
        let queued = self.queue.iter().map(|r| r.body.min_seq).min();
        let flying = self.in_flight.keys().next().copied();
        queued.into_iter().chain(flying).min()
    }

    fn landed(&mut self, seq: u64, items: u64) {
        self.in_flight_count -= 1;
        self.in_flight_items -= items;
        if let Some(n) = self.in_flight.get_mut(&seq) {
            *n -= 1;
            if *n == 0 {
                self.in_flight.remove(&seq);
            }
        }
    }
}

struct Done {
    route: Route,
    items: u64,
    min_seq: u64,
    delta: Option<Delta>,
    outcome: Outcome,
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
    data: mpsc::UnboundedReceiver<Item>,
    data_open: bool,
    /// Sequence number of the next data item.
    received: u64,
    batchers: [Batcher; 4],
    partials: PartialBuffer,
    lanes: [Lane; 5],
    tasks: JoinSet<Done>,
    flushes: Vec<Waiter>,
    shutdown: Option<Waiter>,
    ready: Vec<Body>,
    deltas: Vec<Delta>,
}

enum Wake {
    Done(Box<Done>),
    Item(Option<Item>),
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

impl Worker {
    fn new(
        cfg: WorkerConfig,
        counters: Arc<Counters>,
        transport: Arc<Transport>,
        budget: Arc<Budget>,
        data: mpsc::UnboundedReceiver<Item>,
    ) -> Self {
        let n = cfg.upload_size;
        let m = cfg.max_in_flight;
        Worker {
            batchers: [
                Batcher::array(n),
                Batcher::array(n),
                Batcher::array(n),
                Batcher::new(wire::traces_prefix(), wire::TRACES_SUFFIX, 50),
            ],
            partials: PartialBuffer::new(),
            // Partials go one object per request, many at once; deltas of one
            // event still go one at a time (the partial buffer sees to it).
            lanes: [
                Lane::new(m),
                Lane::new(cfg.max_partials_in_flight),
                Lane::new(m),
                Lane::new(m),
                Lane::new(m),
            ],
            cfg,
            counters,
            transport,
            budget,
            data,
            data_open: true,
            received: 0,
            tasks: JoinSet::new(),
            flushes: Vec::new(),
            shutdown: None,
            ready: Vec::new(),
            deltas: Vec::new(),
        }
    }

    /// The oldest sequence number of any unsettled item, if any.
    fn oldest_unsettled(&self) -> Option<u64> {
        let batched = self.batchers.iter().filter_map(Batcher::min_seq);
        let lanes = self.lanes.iter().filter_map(Lane::min_seq);
        batched.chain(lanes).chain(self.partials.min_seq()).min()
    }

    async fn run(mut self) {
        // Items queue up meanwhile; the probe is bounded to 100 ms.
        self.transport.resolve_workshop(&self.cfg).await;
        let interval = self.cfg.upload_interval;
        let mut next_tick = Instant::now() + interval;
        loop {
            let next_wake = self
                .flushes
                .iter()
                .chain(self.shutdown.iter())
                .map(|w| w.deadline)
                .chain(self.pause_ends())
                .fold(next_tick, Instant::min);
            let wake = tokio::select! {
                biased;
                Some(Ok(d)) = self.tasks.join_next(), if !self.tasks.is_empty() => Wake::Done(Box::new(d)),
                i = self.data.recv(), if self.data_open => Wake::Item(i),
                _ = tokio::time::sleep_until(next_wake.into()) => Wake::Tick,
            };
            let now = Instant::now();
            match wake {
                Wake::Done(d) => self.on_done(*d),
                Wake::Item(Some(item)) => {
                    self.on_item(item, now);
                    self.drain_queue(now);
                }
                Wake::Item(None) => self.on_disconnect(),
                Wake::Tick => {}
            }
            // Checked after every wake, so a busy queue cannot starve the timer.
            if now >= next_tick {
                self.seal();
                self.partials
                    .scan_due(now, self.cfg.partial_idle_timeout, false);
                next_tick = now + interval;
            }
            if self.shutdown.is_some() {
                self.drain_all(now);
            }
            self.ship_partials();
            self.pump();
            if self.answer_waiters() {
                self.budget.stop();
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
            let waiting = !self.lanes[r as usize].queue.is_empty();
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
                deadline: crate::time::deadline_in(self.cfg.shutdown_timeout),
                reply,
            });
        }
    }

    /// Takes a burst of what is already queued, without waiting.
    fn drain_queue(&mut self, now: Instant) {
        for _ in 0..INTAKE_BURST {
            match self.data.try_recv() {
                Ok(item) => self.on_item(item, now),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    self.on_disconnect();
                    break;
                }
            }
        }
    }

    /// Makes everything buffered due now: open batches and every interaction
    /// delta (a flush or shutdown is waiting for them).
    fn drain_all(&mut self, now: Instant) {
        self.seal();
        self.partials
            .scan_due(now, self.cfg.partial_idle_timeout, true);
    }

    fn on_item(&mut self, item: Item, now: Instant) {
        let max = self.cfg.max_text_field_chars;
        let p = &self.cfg.prepare;
        let (route, bytes) = match item {
            Item::Event(mut e) => (
                Route::Track,
                p.event(&mut e).map(|()| wire::track_event(&mut e, max)),
            ),
            Item::Signal(mut s) => (Route::Signals, p.signal(&mut s).map(|()| wire::signal(&s))),
            Item::Identify(mut i) => (
                Route::Identify,
                p.identify(&mut i).map(|()| wire::identify(&i)),
            ),
            Item::Span(mut s) => (Route::Traces, p.span(&mut s).map(|()| wire::span(&s, max))),
            Item::Partial(p) => {
                let seq = self.next_seq();
                self.partials.add(*p, seq, now);
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
        match bytes {
            Ok(bytes) => {
                let seq = self.next_seq();
                self.add_serialised(route, bytes, seq);
            }
            Err(reason) => self.drop_unsent(route, reason, 1, hook_detail(reason)),
        }
    }

    fn next_seq(&mut self) -> u64 {
        let s = self.received;
        self.received += 1;
        s
    }

    fn batcher(&mut self, route: Route) -> &mut Batcher {
        let i = match route {
            Route::Track => 0,
            Route::Signals => 1,
            Route::Identify => 2,
            Route::Traces => 3,
            Route::Partial => unreachable!("partials are not batched"),
        };
        &mut self.batchers[i]
    }

    /// Drops queued items that never reached a request, releasing their budget.
    fn drop_unsent(&self, route: Route, reason: DropReason, n: u64, detail: &str) {
        self.budget.release(route, n);
        self.counters.drop_queued(route.kind(), reason, n, detail);
    }

    fn add_serialised(&mut self, route: Route, bytes: Vec<u8>, seq: u64) {
        if bytes.is_empty() || !self.batcher(route).fits_alone(bytes.len()) {
            self.drop_unsent(
                route,
                DropReason::Oversize,
                1,
                &format!(
                    "{} item of {} bytes exceeds the 1 MiB limit",
                    route.path(),
                    bytes.len()
                ),
            );
            return;
        }
        let mut out = std::mem::take(&mut self.ready);
        self.batcher(route).push(&bytes, seq, &mut out);
        for body in out.drain(..) {
            self.lanes[route as usize].queue.push_back(Request {
                held: body.items,
                body,
                delta: None,
            });
        }
        self.ready = out;
    }

    /// Moves open batches into their lanes.
    fn seal(&mut self) {
        for route in [Route::Track, Route::Signals, Route::Identify, Route::Traces] {
            if let Some(body) = self.batcher(route).take() {
                self.lanes[route as usize].queue.push_back(Request {
                    held: body.items,
                    body,
                    delta: None,
                });
            }
        }
    }

    /// Serialises the interaction deltas that may leave now into the partial lane.
    fn ship_partials(&mut self) {
        let mut deltas = std::mem::take(&mut self.deltas);
        self.partials.take_ready(&mut deltas);
        for d in deltas.drain(..) {
            self.ship_partial(d);
        }
        self.deltas = deltas;
    }

    fn ship_partial(&mut self, mut d: Delta) {
        let refuse = if d.patch.is_final && !d.patch.had_content {
            Some((
                DropReason::EmptyInteraction,
                "interaction finished with no input, output or attachment".to_owned(),
            ))
        } else {
            self.cfg
                .prepare
                .update(&mut d.patch)
                .err()
                .map(|r| (r, hook_detail(r).to_owned()))
        };
        let bytes = match refuse {
            Some(_) => Vec::new(),
            None => wire::partial(&d.patch, self.cfg.max_text_field_chars),
        };
        let refuse = refuse.or_else(|| {
            (bytes.len() > wire::MAX_BYTES).then(|| {
                (
                    DropReason::Oversize,
                    format!(
                        "interaction update of {} bytes exceeds the 1 MiB limit",
                        bytes.len()
                    ),
                )
            })
        });
        if let Some((reason, detail)) = refuse {
            self.drop_delta(d, reason, &detail);
            return;
        }
        self.lanes[Route::Partial as usize]
            .queue
            .push_back(Request {
                body: Body {
                    bytes,
                    items: d.patches,
                    min_seq: d.min_seq,
                },
                held: d.held,
                delta: Some(d),
            });
    }

    /// Drops one interaction delta for good, and counts the interaction lost
    /// if it carried the final update.
    fn drop_delta(&mut self, d: Delta, reason: DropReason, detail: &str) {
        self.budget.release(Route::Partial, d.held);
        self.counters
            .drop_queued(ItemKind::InteractionUpdate, reason, d.patches, detail);
        if d.patch.is_final {
            self.counters.interaction_lost(reason, detail);
        }
        self.partials
            .settle(&d.patch.event_id, None, self.draining());
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
            let lane = &mut self.lanes[route as usize];
            while lane.in_flight_count < lane.max_in_flight {
                let Some(mut req) = lane.queue.pop_front() else {
                    break;
                };
                // In flight: its place in the queue budget is free again.
                self.budget.release(route, req.held);
                if let Some(d) = req.delta.as_mut() {
                    d.held = 0;
                }
                lane.in_flight_count += 1;
                lane.in_flight_items += req.body.items;
                *lane.in_flight.entry(req.body.min_seq).or_insert(0) += 1;
                let transport = self.transport.clone();
                let counters = self.counters.clone();
                self.tasks.spawn(async move {
                    let Body {
                        bytes,
                        items,
                        min_seq,
                    } = req.body;
                    let outcome = transport
                        .deliver(route, bytes::Bytes::from(bytes), &counters)
                        .await;
                    Done {
                        route,
                        items,
                        min_seq,
                        delta: req.delta,
                        outcome,
                    }
                });
            }
        }
    }

    fn on_done(&mut self, d: Done) {
        self.lanes[d.route as usize].landed(d.min_seq, d.items);
        let kind = d.route.kind();
        let draining = self.draining();
        match (d.outcome, d.delta) {
            (Outcome::Delivered, delta) => {
                self.counters.delivered.fetch_add(d.items, Ordering::AcqRel);
                if let Some(delta) = delta {
                    self.partials.settle(&delta.patch.event_id, None, draining);
                }
            }
            (Outcome::Rejected(status), Some(delta)) => {
                // A permanent refusal is not merged back: the same content
                // would be refused again and hold up the event's later
                // updates. Identity travels in every update, so those still
                // make a valid event.
                let detail = format!("{} answered HTTP {status} (permanent)", d.route.path());
                self.drop_delta(delta, DropReason::Rejected, &detail);
            }
            (Outcome::Exhausted, Some(mut delta)) => {
                if delta.failures == 0 {
                    // Merged back in front of the event's newer updates and
                    // sent again with them, never skipped while they ship.
                    delta.failures += 1;
                    let id = delta.patch.event_id.clone();
                    self.partials.settle(&id, Some(delta), draining);
                } else {
                    let detail = format!("{}: retries exhausted", d.route.path());
                    self.drop_delta(delta, DropReason::RetriesExhausted, &detail);
                }
            }
            (Outcome::Rejected(status), None) => self.counters.drop_queued(
                kind,
                DropReason::Rejected,
                d.items,
                &format!("{} answered HTTP {status} (permanent)", d.route.path()),
            ),
            (Outcome::Exhausted, None) => self.counters.drop_queued(
                kind,
                DropReason::RetriesExhausted,
                d.items,
                &format!("{}: retries exhausted", d.route.path()),
            ),
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
            if let Some(sd) = self.shutdown.take() {
                sd.reply.send(true);
            }
            return true;
        }
        if now >= sd.deadline {
            self.abandon_all();
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
        let reason = DropReason::ShutdownTimeout;
        self.tasks.abort_all();
        for route in Route::ALL {
            let lane = &mut self.lanes[route as usize];
            let flying = std::mem::take(&mut lane.in_flight_items);
            let waiting: Vec<Request> = lane.queue.drain(..).collect();
            self.counters.drop_queued(route.kind(), reason, flying, WHY);
            for req in waiting {
                match req.delta {
                    Some(d) => self.drop_delta(d, reason, WHY),
                    None => self.drop_unsent(route, reason, req.body.items, WHY),
                }
            }
        }
        for route in [Route::Track, Route::Signals, Route::Identify, Route::Traces] {
            if let Some(body) = self.batcher(route).take() {
                self.drop_unsent(route, reason, body.items, WHY);
            }
        }
        for d in self.partials.take_all() {
            self.drop_delta(d, reason, WHY);
        }
        while let Ok(item) = self.data.try_recv() {
            if let Some(route) = item.route() {
                if let Item::Partial(p) = &item {
                    if p.is_final {
                        self.counters.interaction_lost(reason, WHY);
                    }
                }
                self.drop_unsent(route, reason, 1, WHY);
            }
        }
    }
}
