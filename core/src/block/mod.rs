//! The normalized block model: what the ingester publishes and workers evaluate, per chain.

pub mod evm;
pub mod stellar;

use serde::{Deserialize, Serialize};

pub use evm::{EvmBlock, EvmLog, EvmReceipt, EvmTransaction};
pub use stellar::{StellarEvent, StellarLedger, StellarTransaction};

/// A JSON-RPC response that does not have the shape of a block, ledger, receipt or transaction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {what}: field `{field}` {message}")]
pub struct RpcShapeError {
    pub what: &'static str,
    pub field: String,
    pub message: String,
}

pub(crate) fn shape(
    what: &'static str,
    field: impl Into<String>,
    message: impl Into<String>,
) -> RpcShapeError {
    RpcShapeError { what, field: field.into(), message: message.into() }
}

/// A block (EVM) or ledger (Stellar) with everything monitors can look at.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "chain", rename_all = "lowercase")]
pub enum Block {
    Evm(EvmBlock),
    Stellar(StellarLedger),
}

/// Identity of a block in a chain: enough to check continuity and to name it in records.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct BlockId {
    pub number: u64,
    pub hash: String,
    pub parent_hash: String,
}

impl Block {
    pub fn number(&self) -> u64 {
        match self {
            Block::Evm(b) => b.number,
            Block::Stellar(l) => u64::from(l.sequence),
        }
    }

    /// Seconds since the Unix epoch.
    pub fn timestamp(&self) -> u64 {
        match self {
            Block::Evm(b) => b.timestamp,
            Block::Stellar(l) => l.close_time,
        }
    }

    pub fn id(&self) -> BlockId {
        match self {
            Block::Evm(b) => BlockId {
                number: b.number,
                hash: format!("{:#x}", b.hash),
                parent_hash: format!("{:#x}", b.parent_hash),
            },
            Block::Stellar(l) => BlockId {
                number: u64::from(l.sequence),
                hash: l.hash.clone(),
                parent_hash: l.previous_hash.clone(),
            },
        }
    }

    pub fn transaction_count(&self) -> usize {
        match self {
            Block::Evm(b) => b.transactions.len(),
            Block::Stellar(l) => l.transactions.len(),
        }
    }
}
