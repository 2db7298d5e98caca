//! Notifications waiting for a retry, per trigger: what a Trigger's `pendingCount` says.
//!
//! A retry is counted while this worker holds its deferred record (due later, waiting in its
//! tenant's lane, or being delivered), from the record's arrival until its offset is done. A
//! tenant's deferred records all go to the worker that owns the tenant's partition, so that
//! worker's count is the trigger's; after a restart or a rebalance the records are read again
//! and counted by their new owner.

use std::collections::HashMap;
use std::sync::Arc;

use chainwatch_platform::bus::Message;

use crate::status::StatusSink;

pub struct PendingRetries {
    /// Held deferred records (by `topic/partition/offset`) → their trigger.
    held: HashMap<String, (String, String)>,
    counts: HashMap<(String, String), u64>,
    status: Arc<dyn StatusSink>,
}

impl PendingRetries {
    pub fn new(status: Arc<dyn StatusSink>) -> Self {
        Self { held: HashMap::new(), counts: HashMap::new(), status }
    }

    /// A retry of `namespace/trigger` arrived (`error`: why its last attempt failed).
    pub fn held(&mut self, msg: &Message, namespace: &str, trigger: &str, error: Option<&str>) {
        let key = (namespace.to_string(), trigger.to_string());
        if self.held.insert(msg.source(), key.clone()).is_none() {
            let n = self.counts.entry(key).or_default();
            *n += 1;
            self.status.pending(namespace, trigger, *n, error);
        }
    }

    /// A record's offset is done: if it was a held retry, it is not pending here any more.
    pub fn finished(&mut self, msg: &Message) {
        let Some(key) = self.held.remove(&msg.source()) else { return };
        let n = self.counts.entry(key.clone()).or_default();
        *n = n.saturating_sub(1);
        self.status.pending(&key.0, &key.1, *n, None);
        if *n == 0 {
            self.counts.remove(&key);
        }
    }

    /// Retries held, all triggers.
    pub fn total(&self) -> usize {
        self.held.len()
    }
}
