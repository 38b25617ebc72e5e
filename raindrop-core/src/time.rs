//! Saturating time arithmetic: any `Duration`, `Duration::MAX` included, is a
//! valid timeout and never panics.

use std::time::{Duration, Instant};

/// About thirty years: "never" for a deadline, and still representable.
const FAR: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

/// `now + d`, saturating at a deadline that is practically never.
pub(crate) fn deadline_in(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d.min(FAR))
        .or_else(|| now.checked_add(Duration::from_secs(24 * 3600)))
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_duration_gives_a_deadline() {
        assert!(deadline_in(Duration::MAX) > Instant::now());
        assert!(deadline_in(Duration::ZERO) <= Instant::now());
    }
}
