//! In-order offset tracking for concurrent processing: records of a partition may finish in any
//! order, but the committable position only moves to the lowest record still in flight, so a crash
//! never skips an unprocessed record (it may redeliver processed ones: at-least-once).

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

/// Tracks records received and processed per `(topic, partition)`.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    inner: Mutex<HashMap<(String, i32), Partition>>,
}

#[derive(Debug, Default)]
struct Partition {
    in_flight: BTreeSet<i64>,
    /// Highest offset received so far.
    highest: Option<i64>,
}

impl OffsetTracker {
    /// Records that `offset` was handed out for processing.
    pub fn received(&self, topic: &str, partition: i32, offset: i64) {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let p = map.entry((topic.to_string(), partition)).or_default();
        p.in_flight.insert(offset);
        p.highest = Some(p.highest.map_or(offset, |h| h.max(offset)));
    }

    /// Records that `offset` is processed; returns the position to store (the next offset to
    /// read), if it moved.
    pub fn done(&self, topic: &str, partition: i32, offset: i64) -> Option<i64> {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let p = map.get_mut(&(topic.to_string(), partition))?;
        let was_lowest = p.in_flight.first() == Some(&offset);
        p.in_flight.remove(&offset);
        if !was_lowest {
            return None;
        }
        Some(match p.in_flight.first() {
            Some(lowest) => *lowest,
            None => p.highest.map_or(offset + 1, |h| h + 1),
        })
    }

    /// Forgets a partition (after it was revoked).
    pub fn forget(&self, topic: &str, partition: i32) {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).remove(&(topic.to_string(), partition));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_waits_for_the_lowest_record_in_flight() {
        let t = OffsetTracker::default();
        for o in 10..15 {
            t.received("t", 0, o);
        }
        assert_eq!(t.done("t", 0, 12), None);
        assert_eq!(t.done("t", 0, 11), None);
        assert_eq!(t.done("t", 0, 10), Some(13));
        assert_eq!(t.done("t", 0, 14), None);
        assert_eq!(t.done("t", 0, 13), Some(15));
        t.received("t", 1, 0);
        assert_eq!(t.done("t", 1, 0), Some(1));
        assert_eq!(t.done("t", 2, 0), None, "unknown partitions are ignored");
    }
}
