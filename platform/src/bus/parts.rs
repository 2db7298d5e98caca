//! Records too large for one Kafka message, carried in parts.
//!
//! A producer cuts a record larger than [`PART_BYTES`] into parts ([`split`]) and sends them
//! together ([`Producer::send_all`](super::Producer::send_all)), so they lie next to each other in
//! one partition. A consumer wrapped in [`Reassembling`] hands out the whole record instead: it
//! holds the parts it read until the last one arrives, checks the whole against the sha256 every
//! part names, and marks every part done when the whole record is. A crash before that reads the
//! parts again (the position never moves past an unfinished record's first part); parts that can
//! never make a record (an ingester that died half-way through a record publishes it again from
//! the start) are given up with a warning. The wire format is in `docs/wire-format.md`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use super::kafka::MAX_MESSAGE_BYTES;
use super::{BusError, Consumer, Message};
use crate::codec::{self, MAX_DECODED, PartHeader};

/// Records above this size travel in parts of this size: half the broker's message limit, so a
/// part with its header and the record batch around it always fits.
pub const PART_BYTES: usize = MAX_MESSAGE_BYTES / 2;

/// The messages that carry `record`: the record itself when it fits in `part_bytes`, else its
/// parts, in order.
pub fn split(record: Vec<u8>, part_bytes: usize) -> Vec<Vec<u8>> {
    if record.len() <= part_bytes {
        return vec![record];
    }
    let sha256 = hex::encode(Sha256::digest(&record));
    let chunks: Vec<&[u8]> = record.chunks(part_bytes.max(1)).collect();
    let count = chunks.len() as u32;
    chunks
        .iter()
        .enumerate()
        .map(|(i, chunk)| {
            let header =
                PartHeader { sha256: sha256.clone(), index: i as u32, count, size: record.len() as u64 };
            codec::encode_part(&header, chunk)
        })
        .collect()
}

/// What reading one message gave.
#[derive(Debug)]
pub enum Step {
    /// A record to process: `record` (for a reassembled one, its payload is the whole record and
    /// its position that of the first part) and the messages it came in (just `record` when it
    /// was not cut).
    Ready { record: Message, parts: Vec<Message> },
    /// A part, kept until the rest arrives.
    Held,
}

/// A set of parts read so far.
#[derive(Debug)]
struct Set {
    header: PartHeader,
    bytes: Vec<u8>,
    messages: Vec<Message>,
}

/// Reassembles records from their parts, per partition: the pure logic of [`Reassembling`].
#[derive(Debug, Default)]
pub struct Reassembly {
    sets: HashMap<(String, i32), Set>,
}

/// Parts given up: they will never make a whole record. `why` for the log.
#[derive(Debug)]
pub struct GivenUp {
    pub messages: Vec<Message>,
    pub why: String,
}

impl Reassembly {
    /// Takes in the next message of its partition. A message that is not a part is `Ready` at once
    /// (a part that cannot be read too: the consumer reports it as the undecodable record it is).
    pub fn push(&mut self, msg: Message) -> (Step, Option<GivenUp>) {
        let header = match codec::decode_part(&msg.payload) {
            Ok(Some((header, _))) => header,
            Ok(None) | Err(_) => return (Step::Ready { parts: vec![msg.clone()], record: msg }, None),
        };
        let slot = (msg.topic.clone(), msg.partition);
        let mut given_up = None;
        if let Some(set) = self.sets.get(&slot)
            && (set.header.sha256 != header.sha256 || header.index != set.messages.len() as u32)
        {
            let set = self.sets.remove(&slot).expect("just seen");
            let why = format!(
                "{} of {} parts of a record of {} bytes, then part {} of another (or the same again): the record was published again",
                set.messages.len(),
                set.header.count,
                set.header.size,
                header.index
            );
            given_up = Some(GivenUp { messages: set.messages, why });
        }
        if !self.sets.contains_key(&slot) {
            if header.index != 0 || header.size > MAX_DECODED as u64 || header.count == 0 {
                let why = if header.index != 0 {
                    format!("part {} of {} without its first part", header.index, header.count)
                } else {
                    format!(
                        "a record of {} bytes in {} parts: more than {MAX_DECODED} bytes",
                        header.size, header.count
                    )
                };
                let mut messages = given_up.map(|g| g.messages).unwrap_or_default();
                messages.push(msg);
                return (Step::Held, Some(GivenUp { messages, why }));
            }
            let set = Set {
                header: header.clone(),
                bytes: Vec::with_capacity(header.size as usize),
                messages: vec![],
            };
            self.sets.insert(slot.clone(), set);
        }
        let set = self.sets.get_mut(&slot).expect("present");
        let (_, chunk) = codec::decode_part(&msg.payload).ok().flatten().expect("read above");
        set.bytes.extend_from_slice(chunk);
        set.messages.push(msg);
        if set.messages.len() < set.header.count as usize && set.bytes.len() < set.header.size as usize {
            return (Step::Held, given_up);
        }
        let set = self.sets.remove(&slot).expect("present");
        let whole = set.bytes.len() as u64 == set.header.size
            && set.messages.len() == set.header.count as usize
            && hex::encode(Sha256::digest(&set.bytes)) == set.header.sha256;
        let first = &set.messages[0];
        let record = Message {
            topic: first.topic.clone(),
            partition: first.partition,
            offset: first.offset,
            key: first.key.clone(),
            // parts that do not add up are handed on as a record no codec reads: dead-lettered
            // by the stage, with their position
            payload: if whole { set.bytes } else { Vec::new() },
        };
        if !whole {
            tracing::error!(
                source = %record.source(),
                parts = set.messages.len(),
                "the parts of a record do not add up to it (length or sha256): handed on as undecodable"
            );
        }
        (Step::Ready { record, parts: set.messages }, given_up)
    }
}

/// A consumer that hands out whole records, reassembling those that came in parts.
pub struct Reassembling {
    inner: Arc<dyn Consumer>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    reassembly: Reassembly,
    /// A reassembled record's position → the parts it came in (marked done with it).
    parts: HashMap<(String, i32, i64), Vec<Message>>,
}

impl Reassembling {
    pub fn new(inner: Arc<dyn Consumer>) -> Self {
        Reassembling { inner, state: Mutex::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl Consumer for Reassembling {
    async fn recv(&self) -> Result<Message, BusError> {
        loop {
            let msg = self.inner.recv().await?;
            let (step, given_up) = self.lock().reassembly.push(msg);
            if let Some(g) = given_up {
                let first = g.messages.first().map(Message::source).unwrap_or_default();
                tracing::warn!(from = %first, parts = g.messages.len(), why = %g.why, "giving up parts of a record");
                for m in &g.messages {
                    self.inner.done(m);
                }
            }
            match step {
                Step::Held => continue,
                Step::Ready { record, parts } => {
                    if parts.len() > 1 {
                        tracing::debug!(source = %record.source(), parts = parts.len(), bytes = record.payload.len(), "reassembled a record");
                        self.lock()
                            .parts
                            .insert((record.topic.clone(), record.partition, record.offset), parts);
                    }
                    return Ok(record);
                }
            }
        }
    }

    fn done(&self, msg: &Message) {
        let parts = self.lock().parts.remove(&(msg.topic.clone(), msg.partition, msg.offset));
        match parts {
            Some(parts) => parts.iter().for_each(|p| self.inner.done(p)),
            None => self.inner.done(msg),
        }
    }

    async fn commit(&self) -> Result<(), BusError> {
        self.inner.commit().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::Producer;
    use crate::bus::memory::MemoryBus;

    fn message(offset: i64, payload: Vec<u8>) -> Message {
        Message { topic: "t".into(), partition: 0, offset, key: Some("k".into()), payload }
    }

    fn record(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn a_small_record_is_not_cut_and_a_large_one_comes_back_whole() {
        assert_eq!(split(record(10), 10), vec![record(10)]);
        let parts = split(record(25), 10);
        assert_eq!(parts.len(), 3);
        let mut r = Reassembly::default();
        let mut steps = parts.into_iter().enumerate().map(|(i, p)| r.push(message(5 + i as i64, p)));
        assert!(matches!(steps.next(), Some((Step::Held, None))));
        assert!(matches!(steps.next(), Some((Step::Held, None))));
        let Some((Step::Ready { record: whole, parts }, None)) = steps.next() else {
            panic!("the last part completes it")
        };
        assert_eq!(whole.payload, record(25));
        assert_eq!(whole.offset, 5, "the record sits where its first part does");
        assert_eq!(parts.iter().map(|p| p.offset).collect::<Vec<_>>(), vec![5, 6, 7]);
    }

    #[test]
    fn a_record_published_again_after_a_partial_one_is_reassembled_and_the_partial_given_up() {
        let parts = split(record(25), 10);
        let mut r = Reassembly::default();
        assert!(matches!(r.push(message(0, parts[0].clone())), (Step::Held, None)));
        assert!(matches!(r.push(message(1, parts[1].clone())), (Step::Held, None)));
        // the producer died; it publishes the record again from its first part
        let (step, given_up) = r.push(message(2, parts[0].clone()));
        assert!(matches!(step, Step::Held));
        let g = given_up.expect("the partial set is given up");
        assert_eq!(g.messages.iter().map(|m| m.offset).collect::<Vec<_>>(), vec![0, 1]);
        r.push(message(3, parts[1].clone()));
        let (Step::Ready { record: whole, .. }, None) = r.push(message(4, parts[2].clone())) else {
            panic!("complete")
        };
        assert_eq!((whole.offset, whole.payload), (2, record(25)));
    }

    #[test]
    fn parts_without_their_first_part_or_that_do_not_add_up_are_not_taken_for_a_record() {
        let parts = split(record(25), 10);
        let mut r = Reassembly::default();
        let (step, given_up) = r.push(message(0, parts[1].clone()));
        assert!(matches!(step, Step::Held));
        assert!(given_up.unwrap().why.contains("without its first part"));

        let mut corrupt = parts.clone();
        let n = corrupt[1].len();
        corrupt[1][n - 1] ^= 1;
        let mut r = Reassembly::default();
        r.push(message(0, corrupt[0].clone()));
        r.push(message(1, corrupt[1].clone()));
        let (Step::Ready { record: bad, parts }, _) = r.push(message(2, corrupt[2].clone())) else {
            panic!()
        };
        assert!(bad.payload.is_empty(), "handed on as a record no codec reads");
        assert_eq!(parts.len(), 3);
    }

    /// Through a bus: the consumer hands out the whole record between the records around it, and
    /// the group's position moves past the parts only once the whole record is done.
    #[tokio::test]
    async fn the_position_moves_past_the_parts_only_with_the_whole_record() {
        let bus = MemoryBus::new();
        bus.send("t", "a", b"before".to_vec()).await.unwrap();
        bus.send_all("t", "b", split(record(25), 10)).await.unwrap();
        bus.send("t", "c", b"after".to_vec()).await.unwrap();
        let c = Reassembling::new(Arc::new(bus.consumer("g", &["t"])));
        let before = c.recv().await.unwrap();
        let whole = c.recv().await.unwrap();
        let after = c.recv().await.unwrap();
        assert_eq!(
            (before.payload.as_slice(), whole.payload.clone(), after.payload.as_slice()),
            (&b"before"[..], record(25), &b"after"[..])
        );
        c.done(&before);
        let again = Reassembling::new(Arc::new(bus.consumer("g", &["t"])));
        assert_eq!(again.recv().await.unwrap().payload, record(25), "not done yet: read again");
        c.done(&whole);
        let next = bus.consumer("g", &["t"]);
        assert_eq!(next.recv().await.unwrap().payload, b"after", "every part done with the record");
    }
}
