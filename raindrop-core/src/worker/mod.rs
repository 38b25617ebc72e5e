//! The background worker: one OS thread owning a current-thread tokio runtime.
//!
//! It drains the bounded queue, merges interaction updates, serialises and
//! batches per route, and delivers through per-route lanes with bounded
//! concurrency. Nothing here ever runs on a caller's thread.

mod batch;
mod partial;
mod retry;
mod send;
pub(crate) mod wire;

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use crate::item::Item;
use crate::options::{ClientOptions, LocalSink, WriteKey};
use crate::stats::{Counters, DropReason};
use batch::{Batcher, Body};
use partial::PartialBuffer;
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
    pub max_text_field_chars: usize,
    pub max_queue_size: usize,
    pub shutdown_timeout: Duration,
    /// Shared with the client so `set_debug_logs` works at run time.
    pub debug_logs: Arc<std::sync::atomic::AtomicBool>,
}

impl WorkerConfig {
    pub fn new(
        o: &ClientOptions,
        base: reqwest::Url,
        project_id: Option<String>,
        debug_logs: Arc<std::sync::atomic::AtomicBool>,
    ) -> Self {
        WorkerConfig {
            base,
            write_key: o.write_key.clone(),
            project_id,
            local_sink: o.local_sink.clone(),
            upload_size: o.upload_size,
            upload_interval: o.upload_interval.max(Duration::from_millis(1)),
            partial_idle_timeout: o.partial_idle_timeout,
            request_timeout: o.request_timeout,
            max_attempts: o.max_attempts,
            max_retry_after: o.max_retry_after,
            max_in_flight: o.max_in_flight,
            max_text_field_chars: o.max_text_field_chars,
            max_queue_size: o.max_queue_size,
            shutdown_timeout: o.shutdown_timeout,
            debug_logs,
        }
    }
}

/// How the worker answers a flush or shutdown.
pub(crate) enum Reply {
    Blocking(std::sync::mpsc::SyncSender<bool>),
    Async(oneshot::Sender<bool>),
}

/// The caller's end of a [`Reply`].
pub(crate) enum FlushWait {
    Blocking(std::sync::mpsc::Receiver<bool>),
    Async(oneshot::Receiver<bool>),
    Done(bool),
}

impl Reply {
    pub fn blocking() -> (Reply, FlushWait) {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        (Reply::Blocking(tx), FlushWait::Blocking(rx))
    }
    pub fn asynchronous() -> (Reply, FlushWait) {
        let (tx, rx) = oneshot::channel();
        (Reply::Async(tx), FlushWait::Async(rx))
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

pub(crate) enum Command {
    /// Deliver everything counted up to `target` queued items.
    Flush {
        target: u64,
        deadline: Instant,
        reply: Reply,
    },
    /// Deliver everything, then stop; at `deadline` drop what is left.
    Shutdown { deadline: Instant, reply: Reply },
}

pub(crate) fn spawn(
    cfg: WorkerConfig,
    counters: Arc<Counters>,
    data: mpsc::Receiver<Item>,
    control: mpsc::UnboundedReceiver<Command>,
) -> std::io::Result<JoinHandle<()>> {
    let transport = Arc::new(Transport::new(&cfg)?);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("raindrop-worker".into())
        .spawn(move || {
            let worker = Worker::new(cfg, counters, transport, data, control);
            rt.block_on(worker.run());
        })
}

/// Requests of one route waiting for a free slot.
struct Lane {
    queue: VecDeque<Body>,
    in_flight: usize,
    max_in_flight: usize,
}

struct Done {
    route: Route,
    items: u64,
    outcome: Outcome,
}

struct Waiter {
    target: u64,
    deadline: Instant,
    reply: Reply,
}

struct Worker {
    cfg: WorkerConfig,
    counters: Arc<Counters>,
    transport: Arc<Transport>,
    data: mpsc::Receiver<Item>,
    control: mpsc::UnboundedReceiver<Command>,
    data_open: bool,
    batchers: [Batcher; 4],
    partials: PartialBuffer,
    lanes: [Lane; 5],
    tasks: JoinSet<Done>,
    flushes: Vec<Waiter>,
    shutdown: Option<Waiter>,
    ready: Vec<Body>,
}

enum Wake {
    Command(Option<Command>),
    Done(Done),
    Item(Option<Item>),
    Tick,
}

impl Worker {
    fn new(
        cfg: WorkerConfig,
        counters: Arc<Counters>,
        transport: Arc<Transport>,
        data: mpsc::Receiver<Item>,
        control: mpsc::UnboundedReceiver<Command>,
    ) -> Self {
        let n = cfg.upload_size;
        let lane = |max: usize| Lane {
            queue: VecDeque::new(),
            in_flight: 0,
            max_in_flight: max,
        };
        let m = cfg.max_in_flight;
        Worker {
            batchers: [
                Batcher::array(n),
                Batcher::array(n),
                Batcher::array(n),
                Batcher::new(wire::traces_prefix(), wire::TRACES_SUFFIX, 50),
            ],
            partials: PartialBuffer::new(cfg.max_queue_size),
            // Partials go one at a time so the deltas of one event arrive in order.
            lanes: [lane(m), lane(1), lane(m), lane(m), lane(m)],
            cfg,
            counters,
            transport,
            data,
            control,
            data_open: true,
            tasks: JoinSet::new(),
            flushes: Vec::new(),
            shutdown: None,
            ready: Vec::new(),
        }
    }

    /// Items buffered in the worker but not yet in flight.
    fn backlog(&self) -> u64 {
        let batched: u64 = self.batchers.iter().map(Batcher::len).sum();
        let queued: u64 = self
            .lanes
            .iter()
            .flat_map(|l| l.queue.iter())
            .map(|b| b.items)
            .sum();
        batched + queued
    }

    /// The worker stops pulling from the queue past this, so the queue bound is the memory bound.
    fn backlog_limit(&self) -> u64 {
        (self.cfg.upload_size * self.cfg.max_in_flight * 4).max(64) as u64
    }

    fn draining(&self) -> bool {
        !self.flushes.is_empty() || self.shutdown.is_some() || !self.data_open
    }

    async fn run(mut self) {
        let interval = self.cfg.upload_interval;
        let mut next_tick = Instant::now() + interval;
        let mut control_open = true;
        loop {
            let accepting = self.data_open && self.backlog() < self.backlog_limit();
            let next_wake = self
                .flushes
                .iter()
                .chain(self.shutdown.iter())
                .map(|w| w.deadline)
                .fold(next_tick, Instant::min);
            let wake = tokio::select! {
                biased;
                c = self.control.recv(), if control_open => Wake::Command(c),
                Some(Ok(d)) = self.tasks.join_next(), if !self.tasks.is_empty() => Wake::Done(d),
                i = self.data.recv(), if accepting => Wake::Item(i),
                _ = tokio::time::sleep_until(next_wake.into()) => Wake::Tick,
            };
            let now = Instant::now();
            match wake {
                Wake::Command(Some(cmd)) => self.on_command(cmd),
                Wake::Command(None) => control_open = false,
                Wake::Done(d) => self.on_done(d),
                Wake::Item(Some(item)) => {
                    self.on_item(item, now);
                    self.drain_queue(now);
                }
                Wake::Item(None) => self.on_disconnect(now),
                Wake::Tick => {}
            }
            // Checked after every wake, so a busy queue cannot starve the timer.
            if now >= next_tick {
                self.seal(now, false);
                next_tick = now + interval;
            }
            if self.draining() {
                self.drain_queue(now);
                self.seal(now, true);
            }
            self.pump();
            if self.answer_waiters() {
                return;
            }
        }
    }

    /// Every client handle is gone: deliver what is left, then stop.
    fn on_disconnect(&mut self, now: Instant) {
        self.data_open = false;
        if self.shutdown.is_none() {
            let (reply, _) = Reply::blocking();
            self.shutdown = Some(Waiter {
                target: 0,
                deadline: now + self.cfg.shutdown_timeout,
                reply,
            });
        }
    }

    /// Takes whatever is already queued, up to the backlog limit, without waiting.
    fn drain_queue(&mut self, now: Instant) {
        while self.data_open && self.backlog() < self.backlog_limit() {
            match self.data.try_recv() {
                Ok(item) => self.on_item(item, now),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => self.on_disconnect(now),
            }
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Flush {
                target,
                deadline,
                reply,
            } => self.flushes.push(Waiter {
                target,
                deadline,
                reply,
            }),
            Command::Shutdown { deadline, reply } => {
                if let Some(old) = self.shutdown.replace(Waiter {
                    target: 0,
                    deadline,
                    reply,
                }) {
                    old.reply.send(false);
                }
            }
        }
    }

    fn on_item(&mut self, item: Item, now: Instant) {
        let max = self.cfg.max_text_field_chars;
        let (index, bytes) = match item {
            Item::Event(mut e) => (Route::Track, wire::track_event(&mut e, max)),
            Item::Signal(s) => (Route::Signals, wire::signal(&s)),
            Item::Identify(i) => (Route::Identify, wire::identify(&i)),
            Item::Span(s) => (Route::Traces, wire::span(&s, max)),
            Item::Partial(p) => {
                let mut ship = Vec::new();
                if !self.partials.add(*p, now, &mut ship) {
                    self.counters.drop_queued(
                        DropReason::QueueFull,
                        1,
                        "too many open interactions (max_queue_size)",
                    );
                }
                for due in ship {
                    self.ship_partial(due);
                }
                return;
            }
        };
        self.add_serialised(index, bytes);
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

    fn add_serialised(&mut self, route: Route, bytes: Vec<u8>) {
        if bytes.is_empty() || !self.batcher(route).fits_alone(bytes.len()) {
            self.counters.drop_queued(
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
        self.batcher(route).push(&bytes, &mut out);
        for body in out.drain(..) {
            self.lanes[route as usize].queue.push_back(body);
        }
        self.ready = out;
    }

    /// Moves partial batches and due interaction deltas into the lanes.
    fn seal(&mut self, now: Instant, force: bool) {
        for route in [Route::Track, Route::Signals, Route::Identify, Route::Traces] {
            if let Some(body) = self.batcher(route).take() {
                self.lanes[route as usize].queue.push_back(body);
            }
        }
        for due in self
            .partials
            .take_due(now, self.cfg.partial_idle_timeout, force)
        {
            self.ship_partial(due);
        }
    }

    /// Serialises one interaction delta into the partial lane (in order).
    fn ship_partial(&mut self, due: partial::Due) {
        if due.empty {
            self.counters.drop_queued(
                DropReason::EmptyInteraction,
                due.patches,
                "interaction finished with no input, output or attachment",
            );
            return;
        }
        let bytes = wire::partial(&due.patch, self.cfg.max_text_field_chars);
        if bytes.len() > wire::MAX_BYTES {
            self.counters.drop_queued(
                DropReason::Oversize,
                due.patches,
                &format!(
                    "interaction update of {} bytes exceeds the 1 MiB limit",
                    bytes.len()
                ),
            );
            return;
        }
        self.lanes[Route::Partial as usize].queue.push_back(Body {
            bytes,
            items: due.patches,
        });
    }

    /// Starts requests while lanes have free slots.
    fn pump(&mut self) {
        for route in Route::ALL {
            let lane = &mut self.lanes[route as usize];
            while lane.in_flight < lane.max_in_flight {
                let Some(body) = lane.queue.pop_front() else {
                    break;
                };
                lane.in_flight += 1;
                let transport = self.transport.clone();
                let counters = self.counters.clone();
                self.tasks.spawn(async move {
                    let outcome = transport
                        .deliver(route, bytes::Bytes::from(body.bytes), &counters)
                        .await;
                    Done {
                        route,
                        items: body.items,
                        outcome,
                    }
                });
            }
        }
    }

    fn on_done(&mut self, d: Done) {
        self.lanes[d.route as usize].in_flight -= 1;
        match d.outcome {
            Outcome::Delivered => {
                self.counters.delivered.fetch_add(d.items, Ordering::AcqRel);
            }
            Outcome::Rejected(status) => self.counters.drop_queued(
                DropReason::Rejected,
                d.items,
                &format!("{} answered HTTP {status} (permanent)", d.route.path()),
            ),
            Outcome::Exhausted => self.counters.drop_queued(
                DropReason::RetriesExhausted,
                d.items,
                &format!("{}: retries exhausted", d.route.path()),
            ),
        }
    }

    /// Answers flushes that completed or expired; `true` when the worker should stop.
    fn answer_waiters(&mut self) -> bool {
        let now = Instant::now();
        let settled = self.counters.settled();
        let mut i = 0;
        while i < self.flushes.len() {
            let w = &self.flushes[i];
            if settled >= w.target || now >= w.deadline {
                let w = self.flushes.swap_remove(i);
                w.reply.send(settled >= w.target);
            } else {
                i += 1;
            }
        }
        let Some(sd) = &self.shutdown else {
            return false;
        };
        let queued = self.counters.queued.load(Ordering::Acquire);
        let idle = self.data.is_empty() && self.tasks.is_empty() && self.backlog() == 0;
        if settled >= queued && idle && self.partials.pending_patches() == 0 {
            if let Some(sd) = self.shutdown.take() {
                sd.reply.send(true);
            }
            return true;
        }
        if now >= sd.deadline {
            self.tasks.abort_all();
            let left = queued.saturating_sub(self.counters.settled());
            self.counters.drop_queued(
                DropReason::ShutdownTimeout,
                left,
                "shutdown deadline passed before delivery",
            );
            if let Some(sd) = self.shutdown.take() {
                sd.reply.send(false);
            }
            return true;
        }
        false
    }
}
