//! Saturating time arithmetic: any `Duration`, `Duration::MAX` included, is a
//! valid timeout and never panics.

use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// About thirty years: "never" for a deadline, and still representable.
const FAR: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

/// `now + d`, saturating at a deadline that is practically never.
pub(crate) fn deadline_in(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d.min(FAR))
        .or_else(|| now.checked_add(Duration::from_secs(24 * 3600)))
        .unwrap_or(now)
}

/// Alarms waiting on the SDK's timer thread, soonest not necessarily first.
struct Alarms {
    pending: Mutex<Vec<(Instant, oneshot::Sender<()>)>>,
    wake: Condvar,
}

/// A receiver that resolves at `at`, from a timer thread of the SDK's own:
/// the async flush and shutdown keep their deadline on the caller's side
/// even when the caller's runtime has no timer, and even when the worker is
/// held up (a blocking before-send hook, a stalled sink). `None` if the
/// timer thread could not be started.
fn alarm(at: Instant) -> Option<oneshot::Receiver<()>> {
    static ALARMS: OnceLock<Option<&'static Alarms>> = OnceLock::new();
    let alarms = (*ALARMS.get_or_init(|| {
        let alarms: &'static Alarms = Box::leak(Box::new(Alarms {
            pending: Mutex::new(Vec::new()),
            wake: Condvar::new(),
        }));
        std::thread::Builder::new()
            .name("raindrop-timer".into())
            .spawn(move || ring(alarms))
            .ok()
            .map(|_| alarms)
    }))?;
    let (tx, rx) = oneshot::channel();
    alarms
        .pending
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((at, tx));
    alarms.wake.notify_one();
    Some(rx)
}

/// The timer thread: fires due alarms, forgets those nobody waits for.
fn ring(alarms: &'static Alarms) {
    let mut pending = alarms.pending.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let now = Instant::now();
        pending.retain_mut(|(at, tx)| {
            if tx.is_closed() {
                return false;
            }
            if *at <= now {
                // Replaced by a closed sender; the retain drops the entry.
                let (dead, _) = oneshot::channel();
                let _ = std::mem::replace(tx, dead).send(());
                return false;
            }
            true
        });
        // Checked at least every second, for alarms whose waiter went away.
        let next = pending
            .iter()
            .map(|(at, _)| *at)
            .min()
            .unwrap_or(now + Duration::from_secs(1))
            .min(now + Duration::from_secs(1));
        pending = match alarms
            .wake
            .wait_timeout(pending, next.saturating_duration_since(now))
        {
            Ok((g, _)) => g,
            Err(e) => e.into_inner().0,
        };
    }
}

/// Waits for `rx`, or until `deadline`: `None` when the deadline came first
/// or the sender went away.
pub(crate) async fn answer_by<T>(rx: oneshot::Receiver<T>, deadline: Instant) -> Option<T> {
    let Some(timer) = alarm(deadline) else {
        return rx.await.ok();
    };
    tokio::select! {
        v = rx => v.ok(),
        _ = timer => None,
    }
}

/// Seconds since the Unix epoch (0 for a clock before it).
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_duration_gives_a_deadline() {
        assert!(deadline_in(Duration::MAX) > Instant::now());
        assert!(deadline_in(Duration::ZERO) <= Instant::now());
    }

    #[test]
    fn an_answer_nobody_gives_ends_at_the_deadline() {
        // A runtime without a timer: the deadline comes from the SDK's thread.
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (_tx, rx) = oneshot::channel::<bool>();
        let start = Instant::now();
        let got = rt.block_on(answer_by(rx, start + Duration::from_millis(150)));
        assert_eq!(got, None);
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(150), "{took:?}");
        assert!(took < Duration::from_secs(5), "{took:?}");
        let (tx, rx) = oneshot::channel::<bool>();
        tx.send(true).unwrap();
        assert_eq!(
            rt.block_on(answer_by(rx, deadline_in(Duration::MAX))),
            Some(true)
        );
    }
}
