//! Where blocks come from: one small trait, one implementation per chain family.

pub mod evm;
pub mod stellar;

use async_trait::async_trait;
use chainwatch_core::block::{Block, BlockId, RpcShapeError};

use crate::rpc::{IdentityReport, RpcError};

/// The chain's head as the ingester sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    /// Newest block the RPC knows.
    pub latest: u64,
    /// Newest block ingestion may reach (after confirmations or the finality tag).
    pub target: u64,
}

/// Why a block or the head could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Rpc(#[from] RpcError),
    #[error("block {number}: {source}")]
    Malformed { number: u64, source: RpcShapeError },
    #[error(
        "block {number} is outside the RPC's retention window ({message}); set startBlock or backfill within it"
    )]
    OutsideRetention { number: u64, message: String },
    #[error("{0}")]
    Other(String),
}

impl SourceError {
    /// Metric label / condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            SourceError::Rpc(e) if e.is_wrong_chain() => "WrongChain",
            SourceError::Rpc(_) => "RpcError",
            SourceError::Malformed { .. } => "MalformedBlock",
            SourceError::OutsideRetention { .. } => "OutsideRetentionWindow",
            SourceError::Other(_) => "SourceError",
        }
    }
}

/// A chain's blocks.
#[async_trait]
pub trait BlockSource: Send + Sync + 'static {
    async fn head(&self) -> Result<Head, SourceError>;
    /// Block `n` with its transactions, receipts / events.
    async fn block(&self, n: u64) -> Result<Block, SourceError>;
    /// Identity of the canonical block at `n` (for reorg walk-back).
    async fn block_id(&self, n: u64) -> Result<BlockId, SourceError>;
    /// Which of the endpoints were verified to serve the Network's chain.
    fn endpoints(&self) -> Option<IdentityReport> {
        None
    }
}
