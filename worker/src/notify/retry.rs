//! How a trigger's failed deliveries are retried: upstream's quick retries first, then — while
//! the receiver is out (a transient error of the receiver, not a script's) — a slower schedule
//! for as long as the trigger's `retryPolicy.retryFor` (default 6 h), then a dead letter.

use std::time::Duration;

use chainwatch_crds::common::Jitter;
use chainwatch_platform::Backoff;

use crate::config::ResolvedTrigger;

/// How a trigger's failed deliveries are retried.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPlan {
    /// Quick retries after the first attempt (upstream's `max_retries`), with `backoff`.
    pub quick: u32,
    pub backoff: Backoff,
    /// How long after the first attempt a receiver's outage is waited out (transient errors).
    pub retry_for: Duration,
}

/// The first delay of the outage schedule, and its bound: 10 s doubling to 5 minutes.
const OUTAGE_FIRST: Duration = Duration::from_secs(10);
const OUTAGE_MAX: Duration = Duration::from_secs(300);
/// How long an outage is waited out unless the trigger says otherwise.
pub const DEFAULT_RETRY_FOR: Duration = Duration::from_secs(6 * 3600);

impl RetryPlan {
    /// The trigger's retry policy, with upstream's defaults for the quick retries.
    pub fn of(t: &ResolvedTrigger) -> Self {
        let p = t.spec.retry_policy.clone().unwrap_or_default();
        let dur = |d: &Option<chainwatch_crds::DurationString>, default: Duration| {
            d.as_ref().and_then(|d| d.parse().ok()).unwrap_or(default)
        };
        RetryPlan {
            quick: p.max_retries.unwrap_or(3),
            backoff: Backoff {
                initial: dur(&p.initial_backoff, Duration::from_millis(250)),
                max: dur(&p.max_backoff, Duration::from_secs(10)),
                base: p.base_for_backoff.unwrap_or(2),
                full_jitter: p.jitter.unwrap_or_default() == Jitter::Full,
            },
            retry_for: dur(&p.retry_for, DEFAULT_RETRY_FOR),
        }
    }

    /// The delay before retry number `attempt` (0 = the first retry) of a delivery first tried
    /// at `first_ms`, if there is one: a quick retry, then — for an outage (`outage`: a
    /// transient error of the receiver, not a script's) — 10 s doubling to 5 min, each between
    /// half and all of that (so that many waiting notifications do not all come back at once),
    /// while the retry is due within `retry_for` of the first attempt.
    pub fn delay(&self, attempt: u32, outage: bool, first_ms: u64, now_ms: u64) -> Option<Duration> {
        if attempt < self.quick {
            return Some(self.backoff.delay(attempt));
        }
        if !outage {
            return None;
        }
        let schedule = Backoff { initial: OUTAGE_FIRST, max: OUTAGE_MAX, base: 2, full_jitter: false };
        let delay = schedule.delay(attempt - self.quick).mul_f64(0.5 + rand::random::<f64>() / 2.0);
        let due = now_ms + delay.as_millis() as u64;
        (due.saturating_sub(first_ms) <= self.retry_for.as_millis() as u64).then_some(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(quick: u32, retry_for: Duration) -> RetryPlan {
        let backoff = Backoff {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(10),
            base: 2,
            full_jitter: false,
        };
        RetryPlan { quick, backoff, retry_for }
    }

    const HOUR_MS: u64 = 3_600_000;

    #[test]
    fn quick_retries_first_then_the_outage_schedule_until_retry_for() {
        let p = plan(3, Duration::from_secs(6 * 3600));
        let first = 1_000_000;
        // upstream's quick retries: 250 ms doubling
        assert_eq!(p.delay(0, true, first, first), Some(Duration::from_millis(250)));
        assert_eq!(p.delay(2, true, first, first), Some(Duration::from_secs(1)));
        // then 10 s doubling to 5 min, each between half and all of it
        let within = |attempt, lo: u64, hi: u64| {
            let d = p.delay(attempt, true, first, first).unwrap();
            assert!(d >= Duration::from_secs(lo) && d <= Duration::from_secs(hi), "retry {attempt}: {d:?}");
        };
        within(3, 5, 10);
        within(4, 10, 20);
        within(20, 150, 300);
        // until a retry would be due more than 6 h after the first attempt
        assert!(p.delay(30, true, first, first + 5 * HOUR_MS).is_some());
        assert_eq!(p.delay(30, true, first, first + 6 * HOUR_MS), None);
    }

    #[test]
    fn failures_that_are_not_an_outage_and_retry_for_zero_stop_after_the_quick_retries() {
        let first = 1_000_000;
        // a script's failure is not waited out: upstream's retries only
        assert_eq!(plan(3, Duration::from_secs(6 * 3600)).delay(3, false, first, first), None);
        // `retryFor: 0s`: upstream's behaviour
        let p = plan(3, Duration::ZERO);
        assert!(p.delay(2, true, first, first).is_some());
        assert_eq!(p.delay(3, true, first, first), None);
        // no quick retries: straight to the outage schedule
        assert!(plan(0, Duration::from_secs(60)).delay(0, true, first, first).is_some());
    }
}
