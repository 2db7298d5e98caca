//! The in-memory bus of `chainwatch dev`: one append-only log per topic (a single partition),
//! consumer groups with their own positions. Records live as long as the process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;

use super::offsets::OffsetTracker;
use super::{BusError, Consumer, Message, Producer};

#[derive(Default)]
struct Topic {
    records: Vec<(String, Arc<Vec<u8>>)>,
}

#[derive(Default)]
struct State {
    topics: HashMap<String, Topic>,
    /// (group, topic) → next offset to hand out
    positions: HashMap<(String, String), i64>,
    /// (group, topic) → committed position (records before it are processed)
    committed: HashMap<(String, String), i64>,
    closed: bool,
}

/// A process-local bus.
#[derive(Clone, Default)]
pub struct MemoryBus {
    state: Arc<Mutex<State>>,
    notify: Arc<Notify>,
}

impl MemoryBus {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A consumer of `topics` in `group`, starting at the group's committed position.
    pub fn consumer(&self, group: &str, topics: &[&str]) -> MemoryConsumer {
        let mut st = self.lock();
        for t in topics {
            let key = (group.to_string(), t.to_string());
            let committed = st.committed.get(&key).copied().unwrap_or(0);
            st.positions.insert(key, committed);
        }
        MemoryConsumer {
            bus: self.clone(),
            group: group.to_string(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            offsets: OffsetTracker::default(),
        }
    }

    /// Number of records in a topic.
    pub fn len(&self, topic: &str) -> usize {
        self.lock().topics.get(topic).map_or(0, |t| t.records.len())
    }

    /// Records of a topic (for tests and `chainwatch dev` output).
    pub fn records(&self, topic: &str) -> Vec<(String, Vec<u8>)> {
        self.lock()
            .topics
            .get(topic)
            .map(|t| t.records.iter().map(|(k, v)| (k.clone(), v.to_vec())).collect())
            .unwrap_or_default()
    }

    /// Wakes every waiting consumer with `Closed`.
    pub fn close(&self) {
        self.lock().closed = true;
        self.notify.notify_waiters();
    }
}

#[async_trait]
impl Producer for MemoryBus {
    async fn send(&self, topic: &str, key: &str, payload: Vec<u8>) -> Result<(), BusError> {
        self.send_all(topic, key, vec![payload]).await
    }

    async fn send_all(&self, topic: &str, key: &str, payloads: Vec<Vec<u8>>) -> Result<(), BusError> {
        {
            let mut st = self.lock();
            if st.closed {
                return Err(BusError::Closed);
            }
            let records = &mut st.topics.entry(topic.to_string()).or_default().records;
            records.extend(payloads.into_iter().map(|p| (key.to_string(), Arc::new(p))));
        }
        self.notify.notify_waiters();
        Ok(())
    }

    async fn flush(&self, _timeout: Duration) -> Result<(), BusError> {
        Ok(())
    }
}

/// A consumer of the in-memory bus.
pub struct MemoryConsumer {
    bus: MemoryBus,
    group: String,
    topics: Vec<String>,
    offsets: OffsetTracker,
}

#[async_trait]
impl Consumer for MemoryConsumer {
    async fn recv(&self) -> Result<Message, BusError> {
        loop {
            let notified = self.bus.notify.notified();
            {
                let mut st = self.bus.lock();
                if st.closed {
                    return Err(BusError::Closed);
                }
                for topic in &self.topics {
                    let key = (self.group.clone(), topic.clone());
                    let pos = st.positions.get(&key).copied().unwrap_or(0);
                    let record = st.topics.get(topic).and_then(|t| t.records.get(pos as usize)).cloned();
                    if let Some((k, payload)) = record {
                        st.positions.insert(key, pos + 1);
                        drop(st);
                        self.offsets.received(topic, 0, pos);
                        return Ok(Message {
                            topic: topic.clone(),
                            partition: 0,
                            offset: pos,
                            key: Some(k),
                            payload: payload.to_vec(),
                        });
                    }
                }
            }
            notified.await;
        }
    }

    fn done(&self, msg: &Message) {
        if let Some(next) = self.offsets.done(&msg.topic, msg.partition, msg.offset) {
            self.bus.lock().committed.insert((self.group.clone(), msg.topic.clone()), next);
        }
    }

    async fn commit(&self) -> Result<(), BusError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn groups_resume_from_processed_records() {
        let bus = MemoryBus::new();
        for i in 0..3 {
            bus.send("t", &i.to_string(), vec![i]).await.unwrap();
        }
        let c = bus.consumer("g", &["t"]);
        let a = c.recv().await.unwrap();
        let b = c.recv().await.unwrap();
        c.done(&b); // out of order: the position stays before `a`
        let again = bus.consumer("g", &["t"]);
        assert_eq!(again.recv().await.unwrap().offset, 0);
        c.done(&a);
        let after = bus.consumer("g", &["t"]);
        assert_eq!(after.recv().await.unwrap().offset, 2);
        let other = bus.consumer("other", &["t"]);
        assert_eq!(other.recv().await.unwrap().payload, vec![0]);
    }
}
