//! The monitors of one network, indexed by watched address so that the cost of a block grows with
//! the transactions that touch watched contracts, not with the number of monitors.
//!
//! For each transaction the index collects the monitors watching `from`, `to` or a log emitter
//! (this is also upstream's EVM address gate); within a monitor, calls and logs are found by
//! (contract, selector) and (contract, topic0). Monitors are evaluated in key order, so matches come
//! out in (transaction, monitor) order.

use std::collections::HashMap;
use std::sync::Arc;

use alloy_primitives::Address;

pub use super::stats::MatchStats;
use super::{ChainMatcher, CompiledMonitor};
use crate::block::{Block, EvmBlock, EvmTransaction, StellarLedger};
use crate::evm::{DecodeCache, match_transaction};
use crate::matches::{MatchedBlock, MatchedTransaction, MonitorMatch, StellarMatchedTransaction};

/// The admitted, unpaused monitors of one network.
#[derive(Debug, Default)]
pub struct NetworkIndex {
    pub network: String,
    monitors: Vec<Arc<CompiledMonitor>>,
    evm_by_address: HashMap<Address, Vec<u32>>,
    stellar_by_address: HashMap<String, Vec<u32>>,
}

impl NetworkIndex {
    /// Builds the index; paused monitors and monitors of other chains are left out.
    pub fn build(network: &str, monitors: impl IntoIterator<Item = Arc<CompiledMonitor>>) -> Self {
        let mut list: Vec<Arc<CompiledMonitor>> = monitors.into_iter().filter(|m| !m.paused).collect();
        list.sort_by(|a, b| a.key.cmp(&b.key));
        let mut index =
            NetworkIndex { network: network.to_string(), monitors: Vec::new(), ..Default::default() };
        for m in list {
            let i = index.monitors.len() as u32;
            match &m.chain {
                ChainMatcher::Evm(evm) => {
                    for a in &evm.addresses {
                        index.evm_by_address.entry(*a).or_default().push(i);
                    }
                }
                ChainMatcher::Stellar(st) => {
                    for a in &st.addresses {
                        index.stellar_by_address.entry(a.clone()).or_default().push(i);
                    }
                }
            }
            index.monitors.push(m);
        }
        index
    }

    pub fn len(&self) -> usize {
        self.monitors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.monitors.is_empty()
    }

    pub fn monitors(&self) -> &[Arc<CompiledMonitor>] {
        &self.monitors
    }

    /// Evaluates every monitor on a block.
    pub fn match_block(&self, block: &Block) -> (Vec<MonitorMatch>, MatchStats) {
        match block {
            Block::Evm(b) => self.match_evm(b),
            Block::Stellar(l) => self.match_stellar(l),
        }
    }

    fn match_evm(&self, block: &EvmBlock) -> (Vec<MonitorMatch>, MatchStats) {
        let mut stats = MatchStats { transactions: block.transactions.len() as u64, ..Default::default() };
        let mut matches = Vec::new();
        if self.evm_by_address.is_empty() {
            return (matches, stats);
        }
        let cache = DecodeCache::default();
        let block_ref = MatchedBlock {
            number: block.number,
            hash: format!("{:#x}", block.hash),
            timestamp: block.timestamp,
        };
        let mut candidates: Vec<u32> = Vec::new();
        for tx in &block.transactions {
            candidates.clear();
            let mut add = |a: &Address| {
                if let Some(ms) = self.evm_by_address.get(a) {
                    candidates.extend_from_slice(ms);
                }
            };
            add(&tx.from);
            if let Some(to) = &tx.to {
                add(to);
            }
            for log in tx.logs() {
                add(&log.address);
            }
            if candidates.is_empty() {
                continue;
            }
            candidates.sort_unstable();
            candidates.dedup();
            // one copy of the transaction, shared by every match on it
            let mut shared: Option<Arc<EvmTransaction>> = None;
            for &i in &candidates {
                let m = &self.monitors[i as usize];
                let ChainMatcher::Evm(evm) = &m.chain else { continue };
                stats.evaluations += 1;
                if let Some((on, args)) = match_transaction(evm, &m.match_conditions, tx, &cache) {
                    let tx = shared.get_or_insert_with(|| Arc::new(tx.clone())).clone();
                    matches.push(MonitorMatch {
                        monitor: m.matched.clone(),
                        network: self.network.clone(),
                        block: block_ref.clone(),
                        transaction: MatchedTransaction::Evm(tx),
                        matched_on: on,
                        matched_on_args: args,
                        phase: None,
                    });
                }
            }
        }
        stats.matches = matches.len() as u64;
        stats.eval_errors = cache.eval_errors.get();
        stats.decode_errors = cache.decode_errors.get();
        (matches, stats)
    }

    fn match_stellar(&self, ledger: &StellarLedger) -> (Vec<MonitorMatch>, MatchStats) {
        let (raw, stats) =
            crate::stellar::matcher::match_ledger(ledger, &self.stellar_by_address, &self.monitors);
        let block = MatchedBlock {
            number: u64::from(ledger.sequence),
            hash: ledger.hash.clone(),
            timestamp: ledger.close_time,
        };
        let matches = raw
            .into_iter()
            .map(|(i, tx, on, args)| MonitorMatch {
                monitor: self.monitors[i as usize].matched.clone(),
                network: self.network.clone(),
                block: block.clone(),
                transaction: MatchedTransaction::Stellar(StellarMatchedTransaction {
                    hash: tx.hash.clone(),
                    status: tx.status.clone(),
                    application_order: tx.application_order,
                    fee_bump: tx.fee_bump,
                    envelope_xdr: tx.envelope_xdr.clone(),
                    result_xdr: tx.result_xdr.clone(),
                }),
                matched_on: on,
                matched_on_args: args,
                phase: None,
            })
            .collect();
        (matches, stats)
    }
}
