//! Fairness between tenants in the notify stage: each tenant has a lane — at most `per_tenant`
//! notifications in flight and `queued` waiting. A tenant whose receiver is slow or failing fills
//! only its own lane; what does not fit is put aside on the deferred topic (so the matches topic's
//! offset moves on) and comes back later, while every other tenant's notifications go through at
//! once. Records due later (retries, put-aside backlogs) wait in [`Timers`].

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};

/// Limits of the lanes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fairness {
    /// Notifications of one tenant in flight at once.
    pub per_tenant: usize,
    /// Notifications of one tenant waiting for a slot, beyond which they are put aside.
    pub queued: usize,
}

impl Default for Fairness {
    fn default() -> Self {
        Self { per_tenant: 8, queued: 64 }
    }
}

/// What to do with a job offered to a lane.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit<J> {
    /// Start it now.
    Start(J),
    /// It waits in its lane.
    Queued,
    /// The lane is full: put it aside.
    Full(J),
}

#[derive(Debug)]
struct Lane<J> {
    running: usize,
    waiting: VecDeque<J>,
}

/// The lanes of every tenant.
#[derive(Debug)]
pub struct Lanes<J> {
    limits: Fairness,
    lanes: HashMap<String, Lane<J>>,
}

impl<J> Lanes<J> {
    pub fn new(limits: Fairness) -> Self {
        Self { limits, lanes: HashMap::new() }
    }

    /// Offers a job of `tenant`.
    pub fn admit(&mut self, tenant: &str, job: J) -> Admit<J> {
        let limits = self.limits;
        let lane = self
            .lanes
            .entry(tenant.to_string())
            .or_insert_with(|| Lane { running: 0, waiting: VecDeque::new() });
        if lane.running < limits.per_tenant.max(1) {
            lane.running += 1;
            Admit::Start(job)
        } else if lane.waiting.len() < limits.queued {
            lane.waiting.push_back(job);
            Admit::Queued
        } else {
            Admit::Full(job)
        }
    }

    /// A job of `tenant` finished: the next one of its lane, if any, to start now.
    pub fn finished(&mut self, tenant: &str) -> Option<J> {
        let lane = self.lanes.get_mut(tenant)?;
        match lane.waiting.pop_front() {
            Some(next) => Some(next),
            None => {
                lane.running = lane.running.saturating_sub(1);
                if lane.running == 0 {
                    self.lanes.remove(tenant);
                }
                None
            }
        }
    }

    /// Jobs held (running and waiting), all tenants.
    pub fn held(&self) -> usize {
        self.lanes.values().map(|l| l.running + l.waiting.len()).sum()
    }

    /// Jobs waiting, all tenants (on shutdown: not started, so not done).
    pub fn waiting(&self) -> usize {
        self.lanes.values().map(|l| l.waiting.len()).sum()
    }
}

/// Jobs due later, by due time (milliseconds since the epoch).
#[derive(Debug)]
pub struct Timers<J> {
    heap: BinaryHeap<Reverse<(u64, u64)>>,
    jobs: BTreeMap<u64, J>,
    seq: u64,
}

impl<J> Default for Timers<J> {
    fn default() -> Self {
        Self { heap: BinaryHeap::new(), jobs: BTreeMap::new(), seq: 0 }
    }
}

impl<J> Timers<J> {
    pub fn push(&mut self, due_ms: u64, job: J) {
        self.seq += 1;
        self.heap.push(Reverse((due_ms, self.seq)));
        self.jobs.insert(self.seq, job);
    }

    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// When the next job is due.
    pub fn next_due(&self) -> Option<u64> {
        self.heap.peek().map(|Reverse((due, _))| *due)
    }

    /// The jobs due at `now_ms`.
    pub fn due(&mut self, now_ms: u64) -> Vec<J> {
        let mut out = Vec::new();
        while let Some(Reverse((due, seq))) = self.heap.peek().copied() {
            if due > now_ms {
                break;
            }
            self.heap.pop();
            out.extend(self.jobs.remove(&seq));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_lane_puts_its_own_jobs_aside_and_never_another_tenants() {
        let mut lanes = Lanes::new(Fairness { per_tenant: 2, queued: 1 });
        assert_eq!(lanes.admit("slow", 1), Admit::Start(1));
        assert_eq!(lanes.admit("slow", 2), Admit::Start(2));
        assert_eq!(lanes.admit("slow", 3), Admit::Queued);
        assert_eq!(lanes.admit("slow", 4), Admit::Full(4));
        assert_eq!(lanes.admit("fast", 10), Admit::Start(10), "another tenant starts at once");
        assert_eq!(lanes.held(), 4);
        assert_eq!(lanes.finished("slow"), Some(3), "the waiting job takes the slot");
        assert_eq!(lanes.finished("slow"), None);
        assert_eq!(lanes.finished("slow"), None);
        assert_eq!(lanes.admit("slow", 5), Admit::Start(5));
        assert_eq!(lanes.finished("fast"), None);
        assert_eq!(lanes.held(), 1);
    }

    #[test]
    fn timers_release_jobs_in_due_order() {
        let mut t = Timers::default();
        t.push(30, "c");
        t.push(10, "a");
        t.push(20, "b");
        t.push(10, "a2");
        assert_eq!(t.next_due(), Some(10));
        assert_eq!(t.due(15), vec!["a", "a2"]);
        assert_eq!(t.due(25), vec!["b"]);
        assert_eq!(t.len(), 1);
        assert_eq!(t.due(100), vec!["c"]);
        assert!(t.is_empty());
    }
}
