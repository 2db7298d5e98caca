//! The message bus between the ingester and the worker stages: Kafka in a cluster
//! ([`kafka`]), an in-memory log in `chainwatch dev` ([`memory`]). Both give the same guarantees the
//! stages rely on: `send` returns once the record is durable, `recv` delivers records of a topic in
//! order per partition, and a consumer's position only moves past a record after `done` was called
//! for it and every earlier record of its partition ([`offsets::OffsetTracker`]).

pub mod credentials;
pub mod health;
pub mod kafka;
pub mod memory;
pub mod offsets;
pub mod parts;

use std::time::Duration;

use async_trait::async_trait;

/// Topic of a network's blocks.
pub fn blocks_topic(network: &str) -> String {
    format!("chainwatch.blocks.{network}")
}

/// Topic of matches (key `namespace/monitor`).
pub const MATCHES_TOPIC: &str = "chainwatch.matches";
/// Topic of notifications put aside: retries and tenant backlogs (key: the tenant).
pub const DEFERRED_TOPIC: &str = "chainwatch.notify.deferred";
/// Topic of records that could not be processed.
pub const DEADLETTER_TOPIC: &str = "chainwatch.deadletter";
/// Compacted topic of the dead letters delivered again (key: the dead letter's
/// `partition/offset`, value: the time, ms), so that each is redelivered once.
pub const REDELIVERED_TOPIC: &str = "chainwatch.redelivered";

/// Consumer group of a network's filter workers.
pub fn filter_group(network: &str) -> String {
    format!("chainwatch-filter-{network}")
}

/// Consumer group of the notify stage.
pub const NOTIFY_GROUP: &str = "chainwatch-notify";

/// A received record.
#[derive(Clone, Debug)]
pub struct Message {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub payload: Vec<u8>,
}

impl Message {
    /// `topic/partition@offset`, for logs and dead letters.
    pub fn source(&self) -> String {
        format!("{}/{}@{}", self.topic, self.partition, self.offset)
    }
}

/// A bus failure.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("{0}")]
    Other(String),
    #[error("the bus is closed")]
    Closed,
}

/// Publishes records.
#[async_trait]
pub trait Producer: Send + Sync + 'static {
    /// Sends a record and waits until the broker acknowledged it (all in-sync replicas).
    async fn send(&self, topic: &str, key: &str, payload: Vec<u8>) -> Result<(), BusError>;
    /// Sends records that must lie next to each other in their partition, in this order (the
    /// parts of one record, [`parts`]), and waits until the broker acknowledged every one.
    /// Records sent after this call started land after them.
    async fn send_all(&self, topic: &str, key: &str, payloads: Vec<Vec<u8>>) -> Result<(), BusError> {
        for payload in payloads {
            self.send(topic, key, payload).await?;
        }
        Ok(())
    }
    /// Sends a copy of a record to every partition of `topic`, so every consumer of its group
    /// reads it (a reorg notice on `chainwatch.matches`), and waits until each was acknowledged.
    /// A bus of one partition per topic sends it once.
    async fn broadcast(&self, topic: &str, key: &str, payload: Vec<u8>) -> Result<(), BusError> {
        self.send(topic, key, payload).await
    }
    /// Waits for every record in flight.
    async fn flush(&self, timeout: Duration) -> Result<(), BusError>;
}

/// Receives records of the topics it subscribed to.
#[async_trait]
pub trait Consumer: Send + Sync + 'static {
    /// The next record.
    async fn recv(&self) -> Result<Message, BusError>;
    /// Marks a record processed; the group's position moves past it once every earlier record of
    /// its partition is processed too.
    fn done(&self, msg: &Message);
    /// Commits the position now (shutdown).
    async fn commit(&self) -> Result<(), BusError>;
}
