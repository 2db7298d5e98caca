//! EVM blocks: `eth_getBlockByNumber(n, true)` and `eth_getBlockReceipts(n)` in one batch request;
//! where an endpoint lacks `eth_getBlockReceipts`, the receipts of the block's transactions are
//! fetched with `eth_getTransactionReceipt` in batches of 100.

use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use chainwatch_core::block::{Block, BlockId, EvmBlock, evm::parse_quantity};
use chainwatch_crds::network::Finality;
use serde_json::{Value, json};

use super::{BlockSource, Head, SourceError};
use crate::rpc::{Call, IdentityReport, RpcError, RpcPool};

/// EVM block source.
pub struct EvmSource {
    rpc: RpcPool,
    confirmations: u64,
    finality: Finality,
    block_receipts: AtomicBool,
}

impl EvmSource {
    /// A source over `rpc` (which verifies the chain id of its endpoints, see
    /// [`crate::rpc::identity`]).
    pub fn new(rpc: RpcPool, confirmations: u64, finality: Finality) -> Self {
        Self { rpc, confirmations, finality, block_receipts: AtomicBool::new(true) }
    }

    async fn receipts_one_by_one(&self, block: &Value) -> Result<Vec<Value>, RpcError> {
        let hashes: Vec<String> = block["transactions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["hash"].as_str().map(str::to_string))
            .collect();
        let mut out = Vec::with_capacity(hashes.len());
        for chunk in hashes.chunks(100) {
            let calls = chunk.iter().map(|h| Call::new("eth_getTransactionReceipt", json!([h]))).collect();
            out.extend(self.rpc.batch(calls).await?);
        }
        Ok(out)
    }
}

fn quantity(v: &Value, what: &str) -> Result<u64, SourceError> {
    v.as_str()
        .and_then(parse_quantity)
        .and_then(|q| u64::try_from(q).ok())
        .ok_or_else(|| SourceError::Other(format!("{what} is not a quantity: {v}")))
}

#[async_trait]
impl BlockSource for EvmSource {
    async fn head(&self) -> Result<Head, SourceError> {
        let latest = quantity(&self.rpc.call("eth_blockNumber", json!([])).await?, "eth_blockNumber")?;
        let target = match self.finality {
            Finality::Latest => latest.saturating_sub(self.confirmations),
            Finality::Safe | Finality::Finalized => {
                let tag = if self.finality == Finality::Safe { "safe" } else { "finalized" };
                let b = self.rpc.call("eth_getBlockByNumber", json!([tag, false])).await?;
                quantity(&b["number"], tag)?
            }
        };
        Ok(Head { latest, target })
    }

    async fn block(&self, n: u64) -> Result<Block, SourceError> {
        let number = format!("{n:#x}");
        let (block, receipts) = if self.block_receipts.load(Ordering::Relaxed) {
            let calls = vec![
                Call::new("eth_getBlockByNumber", json!([number, true])),
                Call::new("eth_getBlockReceipts", json!([number])),
            ];
            match self.rpc.batch(calls).await {
                Ok(mut r) => {
                    let receipts = r.pop().expect("two results");
                    (r.pop().expect("two results"), receipts)
                }
                Err(e) if e.jsonrpc_code() == Some(-32601) => {
                    tracing::info!(network = %self.rpc.network(), "eth_getBlockReceipts is not available: fetching receipts per transaction");
                    self.block_receipts.store(false, Ordering::Relaxed);
                    let block = self.rpc.call("eth_getBlockByNumber", json!([number, true])).await?;
                    let receipts = Value::Array(self.receipts_one_by_one(&block).await?);
                    (block, receipts)
                }
                Err(e) => return Err(e.into()),
            }
        } else {
            let block = self.rpc.call("eth_getBlockByNumber", json!([number, true])).await?;
            let receipts = Value::Array(self.receipts_one_by_one(&block).await?);
            (block, receipts)
        };
        let receipts = receipts.as_array().cloned().unwrap_or_default();
        let parsed = EvmBlock::from_rpc(&block, &receipts)
            .map_err(|source| SourceError::Malformed { number: n, source })?;
        if parsed.number != n {
            return Err(SourceError::Other(format!(
                "asked for block {n}, the endpoint answered block {}",
                parsed.number
            )));
        }
        Ok(Block::Evm(parsed))
    }

    async fn block_id(&self, n: u64) -> Result<BlockId, SourceError> {
        let b = self.rpc.call("eth_getBlockByNumber", json!([format!("{n:#x}"), false])).await?;
        let field = |k: &str| {
            b[k].as_str()
                .map(str::to_lowercase)
                .ok_or_else(|| SourceError::Other(format!("block {n} has no {k}")))
        };
        Ok(BlockId { number: n, hash: field("hash")?, parent_hash: field("parentHash")? })
    }

    fn endpoints(&self) -> Option<IdentityReport> {
        self.rpc.identity_report()
    }
}
