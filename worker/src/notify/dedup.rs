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

/// The compacted topic of delivered keys.
pub const DELIVERED_TOPIC: &str = "chainwatch.delivered";

/// Keys older than this are forgotten (matches older than this are not redelivered in practice).
pub const WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);

/// Delivered keys, shared by the notify tasks of a worker.
#[derive(Clone)]
pub struct DeliveredLog {
    keys: Arc<Mutex<HashMap<String, u64>>>,
    producer: Arc<dyn Producer>,
}

impl DeliveredLog {
    pub fn new(producer: Arc<dyn Producer>) -> Self {
        Self { keys: Arc::default(), producer }
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

    fn insert(&self, key: String, at_ms: u64) {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        keys.insert(key, at_ms);
        if keys.len().is_multiple_of(100_000) {
            let oldest = now_ms().saturating_sub(WINDOW.as_millis() as u64);
            keys.retain(|_, t| *t >= oldest);
        }
    }

    /// Records a delivery (waits for the broker).
    pub async fn record(&self, key: &str) -> Result<(), BusError> {
        let at = now_ms();
        self.insert(key.to_string(), at);
        self.producer.send(DELIVERED_TOPIC, key, at.to_string().into_bytes()).await
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
                        let at = std::str::from_utf8(&m.payload)
                            .ok()
                            .and_then(|s| s.parse().ok())
                            .unwrap_or_else(now_ms);
                        self.insert(key, at);
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
