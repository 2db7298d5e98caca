//! Distinct notifications delivered per trigger, from the delivered-key log: what a Trigger's
//! `deliveredCount` is derived from, so that it survives a worker's crash. Every worker reads the
//! whole log, so every worker knows every trigger's count; counted by minute, so that a Trigger
//! deleted and created again under the same name counts from its creation.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

const MINUTE_MS: u64 = 60_000;

/// Deliveries per minute (minutes since the epoch), per (namespace, trigger).
type PerTrigger = HashMap<(String, String), BTreeMap<u64, u64>>;

#[derive(Clone, Default)]
pub struct DeliveredCounts(Arc<Mutex<PerTrigger>>);

impl DeliveredCounts {
    fn lock(&self) -> std::sync::MutexGuard<'_, PerTrigger> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A notification (a key not seen before) to `namespace/trigger` delivered at `at_ms`.
    pub fn add(&self, namespace: &str, trigger: &str, at_ms: u64) {
        let mut counts = self.lock();
        let minutes = counts.entry((namespace.to_string(), trigger.to_string())).or_default();
        *minutes.entry(at_ms / MINUTE_MS).or_default() += 1;
    }

    /// Deliveries to `namespace/trigger` from the minute of `since_ms` on.
    pub fn since(&self, namespace: &str, trigger: &str, since_ms: u64) -> u64 {
        let counts = self.lock();
        let Some(minutes) = counts.get(&(namespace.to_string(), trigger.to_string())) else { return 0 };
        minutes.range(since_ms / MINUTE_MS..).map(|(_, n)| n).sum()
    }

    /// Every trigger with a delivery.
    pub fn triggers(&self) -> Vec<(String, String)> {
        self.lock().keys().cloned().collect()
    }

    /// Forgets minutes before `oldest_ms` (the log's keys are forgotten then too).
    pub fn forget_before(&self, oldest_ms: u64) {
        let mut counts = self.lock();
        for minutes in counts.values_mut() {
            *minutes = minutes.split_off(&(oldest_ms / MINUTE_MS));
        }
        counts.retain(|_, m| !m.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_trigger_from_a_time_on() {
        let c = DeliveredCounts::default();
        let t0 = 100 * MINUTE_MS;
        c.add("acme", "hook", t0 - MINUTE_MS); // an earlier Trigger of the same name
        c.add("acme", "hook", t0 + 10);
        c.add("acme", "hook", t0 + 5 * MINUTE_MS);
        c.add("acme", "slack", t0);
        c.add("globex", "hook", t0);
        assert_eq!(c.since("acme", "hook", 0), 3);
        assert_eq!(c.since("acme", "hook", t0 + 30_000), 2, "the minute of the creation counts whole");
        assert_eq!(c.since("acme", "slack", t0), 1);
        assert_eq!(c.since("acme", "none", 0), 0);
        c.forget_before(t0);
        assert_eq!(c.since("acme", "hook", 0), 2);
        let mut triggers = c.triggers();
        triggers.sort();
        assert_eq!(triggers.len(), 3);
    }
}
