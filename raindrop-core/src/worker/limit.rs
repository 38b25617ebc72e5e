//! How many requests a route keeps in flight: chosen from what the route's
//! answers show, within the user's cap (`max_in_flight`,
//! `max_partials_in_flight`).
//!
//! Little's law says a route needs `rate × round trip` requests in flight:
//! a handful on a fast link, hundreds at 300 ms. The limiter finds that
//! number instead of asking the user for it:
//!
//! * while requests wait for a slot (the route is backlogged) and round
//!   trips are near the fastest seen, every answered request adds a slot,
//!   which doubles the limit each round trip (slow start), or two while
//!   more requests wait than are in flight (three times each round trip);
//! * while backlogged but round trips have grown (the server is queueing),
//!   it adds one slot per round trip;
//! * it never grows past twice what Little's law asks for at the answer
//!   rate (measured, or `limit / srtt` while that is higher), and gives
//!   back half a slot per answer above that: a route held back by the
//!   worker's CPU rather than by distance gains nothing from more requests
//!   (or connections) in flight;
//! * a request that failed after its retries halves the limit;
//! * while fewer than half the allowed requests are in flight, it shrinks
//!   by half a slot per answer, so a fast link keeps few connections open
//!   once a burst has passed.

use std::time::{Duration, Instant};

/// Where every route starts, and the least it shrinks to when idle.
const INITIAL: f64 = 4.0;

/// How long the fastest round trip stands for the route's distance. It is a
/// window in time, not a decay per answer: at 20,000 answers a second a
/// minimum that drifted towards each answer followed the round trips our
/// own queued requests stretched within milliseconds, and Little's law then
/// asked for ever more requests in flight on a link that needed ten. A
/// route whose distance grew for good is judged by the new one within this
/// window.
const MIN_RTT_WINDOW: Duration = Duration::from_secs(10);

pub(crate) struct Limiter {
    cap: f64,
    limit: f64,
    /// Smoothed round trip (1/8 weight per sample), in seconds.
    srtt: Option<f64>,
    /// The fastest round trip of the current window (see [`MIN_RTT_WINDOW`]).
    min_rtt: Option<f64>,
    /// When `min_rtt` was taken.
    min_rtt_at: Option<Instant>,
    /// Answers per second, smoothed over windows of at least one (fastest)
    /// round trip.
    rate: Option<f64>,
    window_start: Option<Instant>,
    window_count: u32,
}

impl Limiter {
    pub fn new(cap: usize) -> Self {
        let cap = cap.max(1) as f64;
        Limiter {
            cap,
            limit: INITIAL.min(cap),
            srtt: None,
            min_rtt: None,
            min_rtt_at: None,
            rate: None,
            window_start: None,
            window_count: 0,
        }
    }

    /// Requests the route may have in flight now.
    pub fn slots(&self) -> usize {
        (self.limit as usize).max(1)
    }

    /// A request ended. `rtt`: how long it took; `answered`: it got an
    /// answer (delivered or refused for good) rather than failing after its
    /// retries; `waiting`: requests waiting for a slot; `in_flight`:
    /// requests still in flight.
    pub fn on_done(
        &mut self,
        now: Instant,
        rtt: Duration,
        answered: bool,
        waiting: usize,
        in_flight: usize,
    ) {
        let backlogged = waiting > 0;
        self.count_answer(now);
        if !answered {
            self.limit = (self.limit / 2.0).max(1.0);
            return;
        }
        let rtt = rtt.as_secs_f64();
        let srtt = self.srtt.map_or(rtt, |s| s + (rtt - s) / 8.0);
        self.srtt = Some(srtt);
        let min = self.observe_min(now, rtt);
        // Little's law: in flight = rate × round trip, with the fastest
        // round trip (the distance, not time spent queued behind our own
        // requests, which more requests would only lengthen). Twice that
        // (plus the start) is room to find a higher rate; more does not help.
        // The answer rate is measured over a round trip, so while the limit
        // ramps up it lags a round trip behind; `limit / srtt` is the rate
        // the slots allow now. On a route our own requests queue up on,
        // srtt grows with the limit and that term stays at the real rate.
        let rate = self.rate.map(|r| r.max(self.limit / srtt));
        let needed = rate.map_or(f64::INFINITY, |r| 2.0 * r * min + INITIAL);
        if backlogged && self.limit < needed {
            // Round trips within twice the fastest (plus 2 ms for loopback
            // jitter): the server keeps up, grow fast; by two slots an
            // answer (three times the limit each round trip) while more
            // requests wait than are in flight, so that a cold start at
            // 300 ms catches up before the queue fills.
            let step = if srtt > 2.0 * min + 0.002 {
                1.0 / self.limit
            } else if waiting as f64 > self.limit {
                2.0
            } else {
                1.0
            };
            self.limit = (self.limit + step).min(self.cap).min(needed.max(INITIAL));
        } else if self.limit > needed || (in_flight as f64 + 1.0) < self.limit / 2.0 {
            // Half a slot per answer while under half the limit is in use:
            // the limit a burst grew falls back within a few round trips.
            self.limit = (self.limit - 0.5).max(INITIAL.min(self.cap));
        }
    }
}

impl Limiter {
    /// Takes `rtt` into the window's fastest round trip and returns it.
    fn observe_min(&mut self, now: Instant, rtt: f64) -> f64 {
        let expired = self
            .min_rtt_at
            .is_none_or(|at| now.saturating_duration_since(at) > MIN_RTT_WINDOW);
        match self.min_rtt {
            Some(m) if !expired && rtt > m => m,
            _ => {
                self.min_rtt = Some(rtt);
                self.min_rtt_at = Some(now);
                rtt
            }
        }
    }

    /// Counts an answer towards the rate, measured over windows of at least
    /// the fastest round trip (and 10 ms).
    fn count_answer(&mut self, now: Instant) {
        let start = *self.window_start.get_or_insert(now);
        self.window_count += 1;
        let span = now.saturating_duration_since(start).as_secs_f64();
        // The fastest round trip, not the smoothed one: queueing behind our
        // own requests would stretch the window and let the limit run ahead.
        let min_span = self.min_rtt.unwrap_or(0.0).max(0.01);
        if span >= min_span {
            let r = f64::from(self.window_count) / span;
            // Up at once, down slowly: a lagging estimate would hold slow
            // start back to a few slots per round trip.
            self.rate = Some(match self.rate {
                Some(old) if r < old => old + (r - old) / 4.0,
                _ => r,
            });
            self.window_start = Some(now);
            self.window_count = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drives a limiter against a route with a fixed round trip and a
    /// producer of `rate` requests a second, for `secs` seconds of
    /// simulated time; returns the limit it settled on.
    fn settle(rtt_ms: u64, rate: f64, secs: f64, cap: usize) -> usize {
        let mut l = Limiter::new(cap);
        let rtt = Duration::from_millis(rtt_ms);
        let step = rtt.as_secs_f64();
        let t0 = Instant::now();
        let mut t = 0.0;
        let mut backlog = 0.0f64;
        while t < secs {
            // One round trip: `slots` requests go and come back, spread over it.
            backlog += rate * step;
            let sent = (l.slots() as f64).min(backlog);
            backlog -= sent;
            let n = sent as usize;
            for i in 0..n {
                let at = t0 + Duration::from_secs_f64(t + step * (i as f64 + 1.0) / n as f64);
                l.on_done(at, rtt, true, backlog as usize, l.slots().saturating_sub(1));
            }
            t += step;
        }
        l.slots()
    }

    /// A route whose answers come fast but at a rate the worker's CPU caps
    /// (a backlog that more requests in flight would not clear) stays small.
    #[test]
    fn a_route_held_back_by_cpu_not_distance_does_not_grow() {
        let mut l = Limiter::new(2048);
        let t0 = Instant::now();
        // 20,000 answers a second, each after 0.5 ms or, once more are in
        // flight than that carries, after as long as Little's law says they
        // wait; always backlogged.
        for i in 0..40_000u32 {
            let at = t0 + Duration::from_micros(50 * u64::from(i));
            let rtt = (l.slots() as f64 / 20_000.0).max(0.0005);
            l.on_done(at, Duration::from_secs_f64(rtt), true, 1, l.slots() - 1);
        }
        // Little's law: 20,000/s × 0.5 ms = 10 in flight.
        assert!(l.slots() <= 32, "{}", l.slots());
    }

    /// A server that answers 16,000 requests a second whatever the number
    /// in flight: each added request only waits longer in its queue. The
    /// limiter must not read the stretched round trips as distance.
    #[test]
    fn round_trips_our_own_requests_stretch_do_not_grow_the_limit() {
        let mut l = Limiter::new(2048);
        let t0 = Instant::now();
        let service = 1.0 / 16_000.0;
        for i in 0..160_000u32 {
            let at = t0 + Duration::from_secs_f64(service * f64::from(i));
            // 0.2 ms of distance, then the queue ahead of this request.
            let rtt = 0.0002 + l.slots() as f64 * service;
            l.on_done(at, Duration::from_secs_f64(rtt), true, 1, l.slots() - 1);
        }
        // The fastest answer came with the start's 4 in flight (0.45 ms):
        // Little's law asks for 16,000/s × 0.45 ms ≈ 7; the limiter may keep
        // twice that plus its start, not hundreds.
        assert!(l.slots() <= 20, "{}", l.slots());
    }

    /// A route whose distance grew for good (1 ms, then 100 ms) is judged
    /// by the new distance once the window has passed.
    #[test]
    fn a_distance_that_grew_for_good_is_learned() {
        let mut l = Limiter::new(2048);
        let t0 = Instant::now();
        let mut t = 0.0;
        // 2,000 requests a second throughout; 15 s at 1 ms, then 30 s at 100 ms.
        for i in 0..90_000u32 {
            t += 1.0 / 2000.0;
            let rtt = if i < 30_000 { 0.001 } else { 0.1 };
            l.on_done(
                t0 + Duration::from_secs_f64(t),
                Duration::from_secs_f64(rtt),
                true,
                1,
                l.slots() - 1,
            );
        }
        // 2,000/s × 100 ms = 200 in flight.
        assert!(l.slots() >= 200, "{}", l.slots());
    }

    /// From a cold start at `rtt_ms`, `rate` requests a second: the most
    /// requests waiting while the limit ramps up.
    fn ramp_peak_backlog(rtt_ms: u64, rate: f64) -> f64 {
        let mut l = Limiter::new(256);
        let rtt = Duration::from_millis(rtt_ms);
        let step = rtt.as_secs_f64();
        let t0 = Instant::now();
        let (mut t, mut backlog, mut peak) = (0.0, 0.0f64, 0.0f64);
        while t < 10.0 {
            backlog += rate * step;
            peak = peak.max(backlog);
            let n = (l.slots() as f64).min(backlog) as usize;
            backlog -= n as f64;
            for i in 0..n {
                let at = t0 + Duration::from_secs_f64(t + step * (i as f64 + 1.0) / n as f64);
                l.on_done(at, rtt, true, backlog as usize, l.slots().saturating_sub(1));
            }
            t += step;
        }
        peak
    }

    #[test]
    fn a_cold_start_at_300_ms_ramps_within_the_queue() {
        let peak = ramp_peak_backlog(300, 500.0);
        // The events route queues 1,000 requests (10,000 events). Growing
        // by one slot an answer, capped by the lagging measured rate, the
        // peak was 963 of them; now 590.
        assert!(peak < 650.0, "{peak} requests waiting at the peak");
    }

    #[test]
    fn a_slow_route_gets_enough_slots_and_a_fast_one_few() {
        // 500 requests/s at 300 ms need ~150 in flight.
        let slow = settle(300, 500.0, 30.0, 2048);
        assert!(slow >= 150, "{slow}");
        // The same rate at 1 ms needs one or two.
        let fast = settle(1, 500.0, 30.0, 2048);
        assert!(fast <= 16, "{fast}");
    }

    #[test]
    fn failures_halve_and_the_cap_holds() {
        let mut l = Limiter::new(64);
        let t0 = Instant::now();
        // 64 answers every 10 ms: Little's law asks for 64.
        for i in 0..1000u64 {
            let at = t0 + Duration::from_micros(10_000 * i / 64);
            l.on_done(at, Duration::from_millis(10), true, 1, 63);
        }
        assert_eq!(l.slots(), 64);
        l.on_done(t0, Duration::from_millis(10), false, 1, 63);
        assert_eq!(l.slots(), 32);
    }
}
