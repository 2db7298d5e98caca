//! Rate limits: per-trigger throttle (at most N notifications per window, and a cool-down between
//! two) and the tenant's notifications per minute. Counted per worker replica.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Default)]
struct Window {
    sent: VecDeque<Instant>,
}

impl Window {
    fn admit(&mut self, now: Instant, max: u32, window: Duration, cooldown: Option<Duration>) -> bool {
        while self.sent.front().is_some_and(|t| now.duration_since(*t) >= window) {
            self.sent.pop_front();
        }
        if let (Some(c), Some(last)) = (cooldown, self.sent.back())
            && now.duration_since(*last) < c
        {
            return false;
        }
        if self.sent.len() as u32 >= max {
            return false;
        }
        self.sent.push_back(now);
        true
    }
}

/// Throttles of triggers and tenants.
#[derive(Default)]
pub struct Throttles {
    triggers: Mutex<HashMap<(String, String), Window>>,
    tenants: Mutex<HashMap<String, Window>>,
}

impl Throttles {
    /// Whether a trigger may send now (and counts the send if so).
    pub fn trigger(
        &self,
        key: &(String, String),
        max: u32,
        window: Duration,
        cooldown: Option<Duration>,
    ) -> bool {
        self.triggers.lock().unwrap_or_else(|p| p.into_inner()).entry(key.clone()).or_default().admit(
            Instant::now(),
            max,
            window,
            cooldown,
        )
    }

    /// Whether a tenant may send now (and counts the send if so).
    pub fn tenant(&self, tenant: &str, per_minute: u32) -> bool {
        self.tenants.lock().unwrap_or_else(|p| p.into_inner()).entry(tenant.to_string()).or_default().admit(
            Instant::now(),
            per_minute,
            Duration::from_secs(60),
            None,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_and_cooldowns() {
        let mut w = Window::default();
        let t0 = Instant::now();
        assert!(w.admit(t0, 2, Duration::from_secs(10), None));
        assert!(w.admit(t0, 2, Duration::from_secs(10), None));
        assert!(!w.admit(t0 + Duration::from_secs(5), 2, Duration::from_secs(10), None));
        assert!(w.admit(t0 + Duration::from_secs(10), 2, Duration::from_secs(10), None));
        let mut c = Window::default();
        assert!(c.admit(t0, 100, Duration::from_secs(60), Some(Duration::from_secs(30))));
        assert!(!c.admit(
            t0 + Duration::from_secs(29),
            100,
            Duration::from_secs(60),
            Some(Duration::from_secs(30))
        ));
        assert!(c.admit(
            t0 + Duration::from_secs(30),
            100,
            Duration::from_secs(60),
            Some(Duration::from_secs(30))
        ));
    }
}
