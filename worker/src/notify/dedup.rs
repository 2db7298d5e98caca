//! Which notifications were delivered, by idempotency key, so that a match delivered again (a
//! restart before the offset was committed, a rebalance, a duplicated record) is not notified twice.
//!
//! Keys are recorded on a compacted topic (`chainwatch.delivered`) right after each delivery and
//! read back by every worker: at startup until caught up, then continuously, so a restarted worker
//! and its peers know what was delivered. A crash between a delivery and its record (milliseconds)
//! can still repeat that one notification: delivery is at-least-once; webhooks also carry the key
//! in an `Idempotency-Key` header for receivers that deduplicate themselves.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chainwatch_platform::bus::{BusError, Consumer, Producer};
use chainwatch_platform::codec::now_ms;
use tokio_util::sync::CancellationToken;

use super::counts::DeliveredCounts;
use super::throttle::{Scope, Throttles};

/// The compacted topic of delivered keys.
pub const DELIVERED_TOPIC: &str = "chainwatch.delivered";

/// Prefix of a retraction's key: `retracted:<the notification's key>` (recorded when the
/// retraction was sent, or when the notification was dropped before it was ever sent).
const RETRACTED: &str = "retracted:";

/// The key recording that the notification `key` was retracted.
pub fn retraction_key(key: &str) -> String {
    format!("{RETRACTED}{key}")
}

/// Prefix recording that a `seen` notification was not sent because its `final` one went first:
/// `superseded:<the seen notification's key>` (a `seen` delivery still retrying when its block
/// turned final is never sent after the `final` one).
const SUPERSEDED: &str = "superseded:";

/// The key recording that the `seen` notification `key` gave way to its `final` one.
pub fn superseded_key(key: &str) -> String {
    format!("{SUPERSEDED}{key}")
}

/// Whether a recorded key is a marker (a retraction's, a superseded `seen`), not a delivery: not
/// counted as one, nor by any limit.
fn is_marker(key: &str) -> bool {
    key.starts_with(RETRACTED) || key.starts_with(SUPERSEDED)
}

/// Keys older than this are forgotten (matches older than this are not redelivered in practice).
pub const WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);

/// Delivered keys, shared by the notify tasks of a worker.
#[derive(Clone)]
pub struct DeliveredLog {
    keys: Arc<Mutex<HashMap<String, u64>>>,
    producer: Arc<dyn Producer>,
    /// Told of every delivery read back, so limits count what every worker sent.
    throttles: Arc<Throttles>,
    /// Distinct deliveries per trigger (the Triggers' `deliveredCount`).
    counts: DeliveredCounts,
    /// Keys being delivered by this worker now: a second record of the same notification (a
    /// match produced twice by a filter replay) does not race the first to the receiver.
    claimed: Arc<Mutex<std::collections::HashSet<String>>>,
}

/// A key being delivered; released when dropped (delivered, put aside or dead-lettered).
pub struct Claim {
    key: String,
    claimed: Arc<Mutex<std::collections::HashSet<String>>>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.claimed.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.key);
    }
}

/// Whose a delivery was: what its record says besides the key, for the throttles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sender {
    pub namespace: String,
    pub trigger: String,
    pub tenant: Option<String>,
}

impl Sender {
    fn scopes(&self) -> impl Iterator<Item = Scope> + '_ {
        std::iter::once(Scope::Trigger(self.namespace.clone(), self.trigger.clone()))
            .chain(self.tenant.clone().map(Scope::Tenant))
    }
}

/// A record's value: `<ms> <namespace>/<trigger> [<tenant>]` (names hold no spaces); a value of
/// only `<ms>` (v1.0 workers) names nobody.
fn encode(at_ms: u64, sender: &Sender) -> String {
    let mut v = format!("{at_ms} {}/{}", sender.namespace, sender.trigger);
    if let Some(t) = &sender.tenant {
        v.push(' ');
        v.push_str(t);
    }
    v
}

fn decode(value: &[u8]) -> (Option<u64>, Option<Sender>) {
    let text = std::str::from_utf8(value).unwrap_or_default();
    let mut parts = text.split(' ');
    let at = parts.next().and_then(|a| a.parse().ok());
    let sender = parts.next().and_then(|t| t.split_once('/')).map(|(namespace, trigger)| Sender {
        namespace: namespace.to_string(),
        trigger: trigger.to_string(),
        tenant: parts.next().filter(|t| !t.is_empty()).map(str::to_string),
    });
    (at, sender)
}

impl DeliveredLog {
    pub fn new(producer: Arc<dyn Producer>, throttles: Arc<Throttles>) -> Self {
        Self {
            keys: Arc::default(),
            producer,
            throttles,
            counts: DeliveredCounts::default(),
            claimed: Arc::default(),
        }
    }

    /// The right to deliver `key`: `None` when it was delivered, or is being delivered now.
    pub fn claim(&self, key: &str) -> Option<Claim> {
        if self.contains(key) {
            return None;
        }
        let mut claimed = self.claimed.lock().unwrap_or_else(|p| p.into_inner());
        claimed.insert(key.to_string()).then(|| Claim { key: key.to_string(), claimed: self.claimed.clone() })
    }

    /// Distinct deliveries per trigger, of every worker.
    pub fn counts(&self) -> &DeliveredCounts {
        &self.counts
    }

    /// Whether `key` is being delivered by this worker now.
    pub fn in_flight(&self, key: &str) -> bool {
        self.claimed.lock().unwrap_or_else(|p| p.into_inner()).contains(key)
    }

    pub fn contains(&self, key: &str) -> bool {
        self.keys.lock().unwrap_or_else(|p| p.into_inner()).contains_key(key)
    }

    pub fn len(&self) -> usize {
        self.keys.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A delivered key; counted for its trigger the first time it is seen.
    fn insert(&self, key: String, at_ms: u64, sender: Option<&Sender>) {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let counted = !is_marker(&key);
        if keys.insert(key, at_ms).is_none()
            && counted
            && let Some(s) = sender
        {
            self.counts.add(&s.namespace, &s.trigger, at_ms);
        }
        if keys.len().is_multiple_of(100_000) {
            let oldest = now_ms().saturating_sub(WINDOW.as_millis() as u64);
            keys.retain(|_, t| *t >= oldest);
            self.counts.forget_before(oldest);
        }
    }

    /// Records a delivery of `sender`'s (waits for the broker).
    pub async fn record(&self, key: &str, sender: &Sender) -> Result<(), BusError> {
        let at = now_ms();
        self.insert(key.to_string(), at, Some(sender));
        self.producer.send(DELIVERED_TOPIC, key, encode(at, sender).into_bytes()).await
    }

    /// Reads the topic, then follows it until `stop`. `caught_up` fires once the records that
    /// existed at startup are read: when every partition reached its end offset in `ends`
    /// (partition → end offset when the reader started), or — without `ends` (the in-memory bus)
    /// — after 1.5 s without a record.
    pub async fn follow(
        &self,
        consumer: Arc<dyn Consumer>,
        ends: Option<HashMap<i32, i64>>,
        caught_up: tokio::sync::oneshot::Sender<()>,
        stop: CancellationToken,
    ) {
        let mut caught_up = Some(caught_up);
        let mut pending: Option<HashMap<i32, i64>> =
            ends.map(|e| e.into_iter().filter(|(_, end)| *end > 0).collect());
        let check = |pending: &Option<HashMap<i32, i64>>,
                     caught_up: &mut Option<tokio::sync::oneshot::Sender<()>>| {
            if pending.as_ref().is_some_and(HashMap::is_empty)
                && let Some(tx) = caught_up.take()
            {
                tracing::info!(keys = self.len(), "delivered keys loaded");
                let _ = tx.send(());
            }
        };
        check(&pending, &mut caught_up);
        loop {
            let next = tokio::select! {
                _ = stop.cancelled() => return,
                m = tokio::time::timeout(Duration::from_millis(1500), consumer.recv()) => m,
            };
            match next {
                Ok(Ok(m)) => {
                    if let Some(key) = m.key.clone() {
                        let (at, sender) = decode(&m.payload);
                        let at = at.unwrap_or_else(now_ms);
                        let counted = sender.as_ref().filter(|_| !is_marker(&key));
                        for scope in counted.into_iter().flat_map(Sender::scopes) {
                            self.throttles.observe(scope, &key, at);
                        }
                        self.insert(key, at, sender.as_ref());
                    }
                    if let Some(p) = pending.as_mut()
                        && p.get(&m.partition).is_some_and(|end| m.offset + 1 >= *end)
                    {
                        p.remove(&m.partition);
                    }
                    check(&pending, &mut caught_up);
                    consumer.done(&m);
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "reading delivered keys failed");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                // quiet for 1.5 s: the backlog is read (only when end offsets are unknown)
                Err(_) if pending.is_none() => {
                    if let Some(tx) = caught_up.take() {
                        tracing::info!(keys = self.len(), "delivered keys loaded");
                        let _ = tx.send(());
                    }
                }
                Err(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_claimed_by_one_delivery_at_a_time() {
        let bus = chainwatch_platform::bus::memory::MemoryBus::new();
        let log = DeliveredLog::new(Arc::new(bus), Arc::default());
        let first = log.claim("k").expect("free");
        assert!(log.claim("k").is_none(), "a second record of the same notification waits its turn");
        drop(first); // put aside for a retry, say
        assert!(log.claim("k").is_some());
    }

    #[test]
    fn a_record_names_its_trigger_and_tenant() {
        let s = Sender { namespace: "acme".into(), trigger: "hook".into(), tenant: Some("acme-corp".into()) };
        assert_eq!(encode(17, &s), "17 acme/hook acme-corp");
        assert_eq!(decode(b"17 acme/hook acme-corp"), (Some(17), Some(s.clone())));
        let no_tenant = Sender { tenant: None, ..s };
        assert_eq!(decode(encode(17, &no_tenant).as_bytes()), (Some(17), Some(no_tenant)));
        // a v1.0 record: the time only
        assert_eq!(decode(b"17"), (Some(17), None));
        assert_eq!(decode(b"\xff"), (None, None));
    }
}
