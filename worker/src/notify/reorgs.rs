//! What the notify stage remembers so that a reorg can be answered: the matches it took up for
//! the newest blocks of every network (to retract what was notified for a replaced block), and
//! the blocks that were replaced (so that a match of one that arrives after the reorg, or a retry
//! of one that comes due, is never notified).
//!
//! The memory is bounded (blocks and matches; the oldest are forgotten first) and lives in the
//! process: a worker restarted between a notification and the reorg that replaces its block
//! cannot retract it (docs/monitors.md says so). A reorg reaches every worker (the filter stage
//! sends it to every partition of `chainwatch.matches`); each retracts what it took up.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;

use chainwatch_platform::codec::{MatchRecord, ReorgRecord};

/// Blocks whose matches are remembered, all networks.
pub const MAX_BLOCKS: usize = 2048;
/// Matches remembered, all blocks.
pub const MAX_MATCHES: usize = 100_000;
/// Replaced blocks remembered.
pub const MAX_REPLACED: usize = 8192;

/// A block: its network and hash.
type BlockKey = (String, String);

#[derive(Default)]
struct Inner {
    /// Matches taken up per block, each once (by its identity).
    blocks: HashMap<BlockKey, Vec<(String, MatchRecord)>>,
    /// The blocks in `blocks`, oldest first.
    order: VecDeque<BlockKey>,
    matches: usize,
    replaced: HashSet<BlockKey>,
    replaced_order: VecDeque<BlockKey>,
}

/// The notify stage's memory of recent blocks.
#[derive(Default)]
pub struct Recent(Mutex<Inner>);

fn key_of(r: &MatchRecord) -> BlockKey {
    (r.matched.network.clone(), r.matched.block.hash.clone())
}

/// A match's identity within its block: the same for every copy of it (a replay, a retry).
fn identity(r: &MatchRecord) -> String {
    r.matched.idempotency_key("")
}

impl Recent {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Remembers a match taken up (a copy already remembered is not added twice); `false` when
    /// its block was replaced already (it must not be notified). One lock for both: a reorg
    /// handled in between either finds the match or makes this answer `false`.
    pub fn took_up(&self, record: &MatchRecord) -> bool {
        let key = key_of(record);
        let id = identity(record);
        let mut inner = self.lock();
        if inner.replaced.contains(&key) {
            return false;
        }
        let inner = &mut *inner;
        let entry = inner.blocks.entry(key.clone()).or_insert_with(|| {
            inner.order.push_back(key);
            Vec::new()
        });
        if entry.iter().any(|(i, _)| *i == id) {
            return true;
        }
        entry.push((id, record.clone()));
        inner.matches += 1;
        while inner.order.len() > MAX_BLOCKS || inner.matches > MAX_MATCHES {
            let Some(oldest) = inner.order.pop_front() else { break };
            if let Some(gone) = inner.blocks.remove(&oldest) {
                inner.matches -= gone.len();
            }
        }
        true
    }

    /// A reorg: its replaced blocks are remembered as replaced, and the matches taken up for
    /// them are handed back (to be retracted), each once.
    pub fn replaced(&self, reorg: &ReorgRecord) -> Vec<MatchRecord> {
        let mut inner = self.lock();
        let mut out = Vec::new();
        for block in &reorg.replaced {
            let key = (reorg.network.clone(), block.hash.clone());
            if let Some(gone) = inner.blocks.remove(&key) {
                inner.matches -= gone.len();
                inner.order.retain(|k| *k != key);
                out.extend(gone.into_iter().map(|(_, r)| r));
            }
            if inner.replaced.insert(key.clone()) {
                inner.replaced_order.push_back(key);
            }
        }
        while inner.replaced_order.len() > MAX_REPLACED {
            if let Some(oldest) = inner.replaced_order.pop_front() {
                inner.replaced.remove(&oldest);
            }
        }
        out
    }

    /// Whether the match's block was replaced by a reorg this worker heard of.
    pub fn is_replaced(&self, record: &MatchRecord) -> bool {
        self.lock().replaced.contains(&key_of(record))
    }

    /// Matches remembered now.
    pub fn len(&self) -> usize {
        self.lock().matches
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use chainwatch_core::block::BlockId;

    use super::*;

    fn record(block_hash: &str, tx: u8) -> MatchRecord {
        use std::sync::Arc;

        use chainwatch_core::MonitorMatch;
        use chainwatch_core::matches::{MatchedBlock, MatchedTransaction};
        use chainwatch_core::monitor::{MatchedMonitor, MonitorKey};
        let transaction = serde_json::from_value(serde_json::json!({
            "hash": format!("0x{tx:064x}"), "index": 0, "from": format!("0x{:040x}", 1), "value": "0",
            "input": "0x", "nonce": 0, "gas_limit": 21000,
        }))
        .expect("a transaction");
        let matched = MonitorMatch {
            monitor: Arc::new(MatchedMonitor {
                key: MonitorKey::new("team-a", "m"),
                generation: Some(1),
                display_name: "m".into(),
                triggers: vec!["hook".into()],
                trigger_conditions: Vec::new(),
                upstream: Arc::new(serde_json::json!({})),
                notify_at: Vec::new(),
            }),
            network: "eth".into(),
            block: MatchedBlock { number: 1, hash: block_hash.into(), timestamp: 0 },
            transaction: MatchedTransaction::Evm(Arc::new(transaction)),
            matched_on: Default::default(),
            matched_on_args: Default::default(),
            phase: None,
        };
        MatchRecord { matched, block_published_at_ms: 0, produced_at_ms: 0 }
    }

    fn reorg(network: &str, hashes: &[&str]) -> ReorgRecord {
        ReorgRecord {
            network: network.into(),
            replaced: hashes
                .iter()
                .enumerate()
                .map(|(i, h)| BlockId { number: i as u64, hash: h.to_string(), parent_hash: String::new() })
                .collect(),
            replacement: Vec::new(),
            detected_at_ms: 0,
        }
    }

    #[test]
    fn a_reorg_hands_back_each_match_of_its_replaced_blocks_once() {
        let recent = Recent::default();
        let network = "eth";
        for r in [record("0xa", 1), record("0xa", 2), record("0xa", 1), record("0xb", 3)] {
            assert!(recent.took_up(&r));
        }
        assert_eq!(recent.len(), 3, "a copy of a match is remembered once");
        let back = recent.replaced(&reorg(network, &["0xa"]));
        assert_eq!(back.len(), 2);
        assert!(recent.replaced(&reorg(network, &["0xa"])).is_empty(), "a second notice retracts nothing");
        assert!(recent.is_replaced(&record("0xa", 9)), "a late match of the replaced block is known");
        assert!(!recent.is_replaced(&record("0xb", 3)));
        assert!(!recent.took_up(&record("0xa", 9)), "a late match of a replaced block is not to be notified");
        assert_eq!(recent.len(), 1, "a late match of a replaced block is not remembered for retraction");
        assert!(recent.replaced(&reorg("other-network", &["0xb"])).is_empty(), "blocks are per network");
    }

    #[test]
    fn memory_is_bounded_oldest_block_first() {
        let recent = Recent::default();
        let network = "eth";
        for b in 0..MAX_BLOCKS + 10 {
            recent.took_up(&record(&format!("0x{b:x}"), 1));
        }
        assert_eq!(recent.len(), MAX_BLOCKS);
        assert!(recent.replaced(&reorg(network, &["0x0"])).is_empty(), "the oldest block was forgotten");
        assert_eq!(recent.replaced(&reorg(network, &[&format!("0x{:x}", MAX_BLOCKS + 9)])).len(), 1);
    }
}
