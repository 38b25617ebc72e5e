//! The retry decision: a pure function of what one attempt returned.

use std::time::{Duration, SystemTime};

/// What one HTTP attempt returned.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Attempt {
    /// The server answered with this status (and maybe a `Retry-After` value).
    Status(u16, Option<String>),
    /// Connection refused or reset, timeout, or a broken response.
    NetworkError,
}

/// What to do next.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Decision {
    Delivered,
    /// Try again after this long.
    RetryAfter(Duration),
    /// Permanent failure (a 4xx other than 408/429).
    Rejected(u16),
    /// Retryable, but the attempts are used up.
    Exhausted,
}

pub(crate) struct Policy {
    pub max_attempts: u32,
    pub base: Duration,
    pub max_backoff: Duration,
    pub max_retry_after: Duration,
}

impl Policy {
    /// `attempt` counts from 1; `jitter` is in [0, 1).
    pub fn decide(&self, result: &Attempt, attempt: u32, jitter: f64) -> Decision {
        let retry_after = match result {
            Attempt::Status(s, _) if (200..300).contains(s) => return Decision::Delivered,
            Attempt::Status(s @ (408 | 429), ra) | Attempt::Status(s @ 500..=599, ra) => {
                let _ = s;
                ra.as_deref().and_then(parse_retry_after)
            }
            Attempt::Status(s, _) => return Decision::Rejected(*s),
            Attempt::NetworkError => None,
        };
        if attempt >= self.max_attempts {
            return Decision::Exhausted;
        }
        let wait = match retry_after {
            Some(d) => d.min(self.max_retry_after),
            None => {
                let exp = self.base.saturating_mul(1 << (attempt - 1).min(16));
                // ±20 % jitter keeps many clients from retrying in lockstep.
                exp.min(self.max_backoff).mul_f64(0.8 + 0.4 * jitter)
            }
        };
        Decision::RetryAfter(wait)
    }
}

/// `Retry-After` as delta-seconds or an HTTP date.
pub(crate) fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0)
            .then(|| Duration::from_secs_f64(secs.min(86_400.0)));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let when = SystemTime::from(when);
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            max_attempts: 3,
            base: Duration::from_millis(500),
            max_backoff: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(10),
        }
    }

    #[test]
    fn classifies_statuses() {
        let p = policy();
        assert_eq!(
            p.decide(&Attempt::Status(204, None), 1, 0.5),
            Decision::Delivered
        );
        assert_eq!(
            p.decide(&Attempt::Status(400, None), 1, 0.5),
            Decision::Rejected(400)
        );
        assert_eq!(
            p.decide(&Attempt::Status(401, None), 1, 0.5),
            Decision::Rejected(401)
        );
        assert_eq!(
            p.decide(&Attempt::Status(413, None), 1, 0.5),
            Decision::Rejected(413)
        );
        assert!(matches!(
            p.decide(&Attempt::Status(500, None), 1, 0.5),
            Decision::RetryAfter(_)
        ));
        assert!(matches!(
            p.decide(&Attempt::Status(408, None), 1, 0.5),
            Decision::RetryAfter(_)
        ));
        assert!(matches!(
            p.decide(&Attempt::NetworkError, 2, 0.5),
            Decision::RetryAfter(_)
        ));
        assert_eq!(
            p.decide(&Attempt::NetworkError, 3, 0.5),
            Decision::Exhausted
        );
    }

    #[test]
    fn backoff_grows_with_jitter_bounds() {
        let p = policy();
        let d = |a, j| match p.decide(&Attempt::Status(503, None), a, j) {
            Decision::RetryAfter(d) => d,
            other => panic!("{other:?}"),
        };
        assert_eq!(d(1, 0.5), Duration::from_millis(500));
        assert_eq!(d(2, 0.5), Duration::from_millis(1000));
        assert_eq!(d(1, 0.0), Duration::from_millis(400));
        assert!(d(1, 0.999) < Duration::from_millis(600));
    }

    #[test]
    fn retry_after_is_honoured_and_capped() {
        let p = policy();
        let r = |v: &str| p.decide(&Attempt::Status(429, Some(v.into())), 1, 0.5);
        assert_eq!(r("1"), Decision::RetryAfter(Duration::from_secs(1)));
        assert_eq!(r("120"), Decision::RetryAfter(Duration::from_secs(10)));
        let date = (chrono::Utc::now() + chrono::Duration::seconds(3)).to_rfc2822();
        match r(&date) {
            Decision::RetryAfter(d) => assert!(
                d <= Duration::from_secs(3) && d >= Duration::from_secs(1),
                "{d:?}"
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
