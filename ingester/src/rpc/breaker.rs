//! A per-endpoint circuit breaker: 3 consecutive failures open it for a cool-down that starts at
//! 5 s and doubles up to 60 s while it keeps failing; after the cool-down one request probes it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

const THRESHOLD: u32 = 3;
const BASE_COOLDOWN: Duration = Duration::from_secs(5);
const MAX_COOLDOWN: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
struct State {
    consecutive_failures: u32,
    open_until: Option<Instant>,
    trips: u32,
}

/// The breaker of one endpoint.
#[derive(Debug, Default)]
pub struct Breaker(Mutex<State>);

impl Breaker {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a request may go to this endpoint now.
    pub fn available(&self, now: Instant) -> bool {
        self.lock().open_until.is_none_or(|t| now >= t)
    }

    /// When the breaker lets requests through again (now if closed).
    pub fn reopens_at(&self) -> Option<Instant> {
        self.lock().open_until
    }

    pub fn success(&self) {
        let mut s = self.lock();
        *s = State::default();
    }

    pub fn failure(&self, now: Instant) {
        let mut s = self.lock();
        s.consecutive_failures += 1;
        if s.consecutive_failures >= THRESHOLD {
            let cooldown = BASE_COOLDOWN.saturating_mul(1 << s.trips.min(4)).min(MAX_COOLDOWN);
            s.open_until = Some(now + cooldown);
            s.trips += 1;
            s.consecutive_failures = THRESHOLD - 1; // the probe after the cool-down decides alone
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_three_failures_and_backs_off() {
        let b = Breaker::default();
        let t0 = Instant::now();
        b.failure(t0);
        b.failure(t0);
        assert!(b.available(t0));
        b.failure(t0);
        assert!(!b.available(t0));
        assert!(b.available(t0 + Duration::from_secs(5)));
        // the probe fails: open again, for longer
        b.failure(t0 + Duration::from_secs(5));
        assert!(!b.available(t0 + Duration::from_secs(14)));
        assert!(b.available(t0 + Duration::from_secs(15)));
        b.success();
        assert!(b.available(t0));
    }
}
