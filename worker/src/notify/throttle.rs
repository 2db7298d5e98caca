//! Rate limits: per-trigger throttle (at most N notifications per window, and a cool-down between
//! two) and the tenant's notifications per minute.
//!
//! A window holds the idempotency keys it counted, with their time. It counts what this worker
//! admitted and what any worker delivered, read back from the delivered log
//! ([`super::dedup::DeliveredLog`] records the trigger and tenant of each delivery), so a limit
//! holds across replicas and across a rebalance: the new owner of a tenant's partition knows what
//! the old one sent. A notification is counted once, however often it is seen.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use chainwatch_platform::codec::now_ms;

/// What a window counts.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// A Trigger's notifications (`spec.throttle`): namespace, name.
    Trigger(String, String),
    /// A tenant's notifications (`limits.notificationsPerMinute`).
    Tenant(String),
}

/// How long a window that only observed sends keeps them (no admission told it its length).
const OBSERVED_HORIZON_MS: u64 = 3_600_000;

struct Window {
    /// (when it was counted, idempotency key), oldest first.
    by_time: BTreeSet<(u64, String)>,
    /// Idempotency key → when it was counted.
    keys: HashMap<String, u64>,
    /// The window's length, once an admission said it; until then, [`OBSERVED_HORIZON_MS`].
    length_ms: u64,
}

impl Default for Window {
    fn default() -> Self {
        Self { by_time: BTreeSet::new(), keys: HashMap::new(), length_ms: OBSERVED_HORIZON_MS }
    }
}

impl Window {
    /// Forgets what was counted at or before `oldest_ms`.
    fn forget_until(&mut self, oldest_ms: u64) {
        while let Some((t, _)) = self.by_time.first()
            && *t <= oldest_ms
        {
            let (_, key) = self.by_time.pop_first().expect("a first entry");
            self.keys.remove(&key);
        }
    }

    fn count(&mut self, key: &str, at: u64) {
        self.keys.insert(key.to_string(), at);
        self.by_time.insert((at, key.to_string()));
    }

    fn admit(&mut self, key: &str, now: u64, max: u32, window: Duration, cooldown: Option<Duration>) -> bool {
        self.length_ms = window.as_millis() as u64;
        self.forget_until(now.saturating_sub(self.length_ms));
        if self.keys.contains_key(key) {
            return true; // counted already (seen again after a restart or a rebalance)
        }
        if let (Some(c), Some((last, _))) = (cooldown, self.by_time.last())
            && now.saturating_sub(*last) < c.as_millis() as u64
        {
            return false;
        }
        if self.keys.len() as u32 >= max {
            return false;
        }
        self.count(key, now);
        true
    }

    fn observe(&mut self, key: &str, at: u64) {
        if !self.keys.contains_key(key) {
            self.count(key, at);
        }
        if self.keys.len().is_multiple_of(1024) {
            self.forget_until(now_ms().saturating_sub(self.length_ms));
        }
    }
}

/// Throttles of triggers and tenants.
#[derive(Default)]
pub struct Throttles {
    windows: Mutex<HashMap<Scope, Window>>,
}

impl Throttles {
    /// Whether notification `key` of `scope` may be sent now: at most `max` per `window`, at
    /// least `cooldown` apart. Counts it if so.
    pub fn admit(
        &self,
        scope: Scope,
        key: &str,
        max: u32,
        window: Duration,
        cooldown: Option<Duration>,
    ) -> bool {
        self.admit_at(scope, key, now_ms(), max, window, cooldown)
    }

    fn admit_at(
        &self,
        scope: Scope,
        key: &str,
        now: u64,
        max: u32,
        window: Duration,
        cooldown: Option<Duration>,
    ) -> bool {
        self.windows
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(scope)
            .or_default()
            .admit(key, now, max, window, cooldown)
    }

    /// A notification of `scope` delivered at `at_ms` (by this worker or another).
    pub fn observe(&self, scope: Scope, key: &str, at_ms: u64) {
        self.windows.lock().unwrap_or_else(|p| p.into_inner()).entry(scope).or_default().observe(key, at_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn tenant() -> Scope {
        Scope::Tenant("acme".into())
    }

    #[test]
    fn windows_and_cooldowns() {
        let t = Throttles::default();
        let t0 = 1_000_000;
        let w = Duration::from_secs(10);
        assert!(t.admit_at(tenant(), "a", t0, 2, w, None));
        assert!(t.admit_at(tenant(), "b", t0, 2, w, None));
        assert!(!t.admit_at(tenant(), "c", t0 + 5_000, 2, w, None));
        assert!(t.admit_at(tenant(), "d", t0 + 10_000, 2, w, None));
        let trigger = || Scope::Trigger("ns".into(), "hook".into());
        let c = Some(Duration::from_secs(30));
        assert!(t.admit_at(trigger(), "a", t0, 100, MIN, c));
        assert!(!t.admit_at(trigger(), "b", t0 + 29_000, 100, MIN, c));
        assert!(t.admit_at(trigger(), "b", t0 + 30_000, 100, MIN, c));
    }

    #[test]
    fn sends_of_other_workers_count_and_nothing_counts_twice() {
        let t = Throttles::default();
        let now = now_ms();
        // the previous owner of the tenant's partition sent 5 of 6 (read back from the delivered log)
        for k in ["a", "b", "c", "d", "e"] {
            t.observe(tenant(), k, now - 1_000);
        }
        // one of them is seen again: already counted, not refused and not counted again
        assert!(t.admit_at(tenant(), "e", now, 6, MIN, None));
        assert!(t.admit_at(tenant(), "f", now, 6, MIN, None));
        assert!(!t.admit_at(tenant(), "g", now, 6, MIN, None), "6 per minute across workers");
        // our own admission read back from the log later: still one
        t.observe(tenant(), "f", now + 5);
        assert!(!t.admit_at(tenant(), "h", now + 10, 6, MIN, None));
        // a minute on, the old sends no longer count
        assert!(t.admit_at(tenant(), "i", now - 1_000 + 60_001, 6, MIN, None));
    }
}
