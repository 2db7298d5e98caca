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

    /// Reads the topic: first until `caught_up` says so (startup), then until `stop`.
    pub async fn follow(
        &self,
        consumer: Arc<dyn Consumer>,
        caught_up: tokio::sync::oneshot::Sender<()>,
        stop: CancellationToken,
    ) {
        let mut caught_up = Some(caught_up);
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
                    consumer.done(&m);
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "reading delivered keys failed");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                // quiet for 1.5 s: the backlog is read
                Err(_) => {
                    if let Some(tx) = caught_up.take() {
                        tracing::info!(keys = self.len(), "delivered keys loaded");
                        let _ = tx.send(());
                    }
                }
            }
        }
    }
}
