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
//!   which doubles the limit each round trip (slow start);
//! * while backlogged but round trips have grown (the server is queueing),
//!   it adds one slot per round trip;
//! * a request that failed after its retries halves the limit;
//! * while fewer than half the allowed requests are in flight, it shrinks
//!   by half a slot per answer, so a fast link keeps few connections open
//!   once a burst has passed.

use std::time::Duration;

/// Where every route starts, and the least it shrinks to when idle.
const INITIAL: f64 = 4.0;

pub(crate) struct Limiter {
    cap: f64,
    limit: f64,
    /// Smoothed round trip (1/8 weight per sample), in seconds.
    srtt: Option<f64>,
    /// The fastest recent round trip, drifting up slowly so that a route
    /// whose latency rose for good is not judged against a stale minimum.
    min_rtt: Option<f64>,
}

impl Limiter {
    pub fn new(cap: usize) -> Self {
        let cap = cap.max(1) as f64;
        Limiter {
            cap,
            limit: INITIAL.min(cap),
            srtt: None,
            min_rtt: None,
        }
    }

    /// Requests the route may have in flight now.
    pub fn slots(&self) -> usize {
        (self.limit as usize).max(1)
    }

    /// A request ended. `rtt`: how long it took; `answered`: it got an
    /// answer (delivered or refused for good) rather than failing after its
    /// retries; `backlogged`: requests are waiting for a slot; `in_flight`:
    /// requests still in flight.
    pub fn on_done(&mut self, rtt: Duration, answered: bool, backlogged: bool, in_flight: usize) {
        if !answered {
            self.limit = (self.limit / 2.0).max(1.0);
            return;
        }
        let rtt = rtt.as_secs_f64();
        let srtt = self.srtt.map_or(rtt, |s| s + (rtt - s) / 8.0);
        self.srtt = Some(srtt);
        let min = match self.min_rtt {
            Some(m) if rtt >= m => m + (rtt - m) / 256.0,
            _ => rtt,
        };
        self.min_rtt = Some(min);
        if backlogged {
            // Round trips within twice the fastest (plus 2 ms for loopback
            // jitter): the server keeps up, grow fast.
            let step = if srtt <= 2.0 * min + 0.002 {
                1.0
            } else {
                1.0 / self.limit
            };
            self.limit = (self.limit + step).min(self.cap);
        } else if (in_flight as f64 + 1.0) < self.limit / 2.0 {
            // Half a slot per answer while under half the limit is in use:
            // the limit a burst grew falls back within a few round trips.
            self.limit = (self.limit - 0.5).max(INITIAL.min(self.cap));
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
        let mut t = 0.0;
        let mut backlog = 0.0f64;
        while t < secs {
            // One round trip: `slots` requests go and come back.
            backlog += rate * step;
            let sent = (l.slots() as f64).min(backlog);
            backlog -= sent;
            for _ in 0..sent as usize {
                l.on_done(rtt, true, backlog >= 1.0, l.slots().saturating_sub(1));
            }
            t += step;
        }
        l.slots()
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
        for _ in 0..1000 {
            l.on_done(Duration::from_millis(10), true, true, 63);
        }
        assert_eq!(l.slots(), 64);
        l.on_done(Duration::from_millis(10), false, true, 63);
        assert_eq!(l.slots(), 32);
    }
}
