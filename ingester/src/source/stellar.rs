//! Stellar ledgers: `getLedgers` for the header, `getTransactions` and `getEvents` (contract
//! events) paged until the next ledger or an empty page. A request outside the RPC's retention window is reported as
//! such (JSON-RPC -32600 "… must be within the ledger range …").

use async_trait::async_trait;
use chainwatch_core::block::{Block, BlockId, StellarLedger};
use serde_json::{Value, json};

use super::{BlockSource, Head, SourceError};
use crate::rpc::{IdentityReport, RpcError, RpcPool};

const PAGE: u64 = 200;

/// Stellar ledger source.
pub struct StellarSource {
    rpc: RpcPool,
    confirmations: u64,
}

impl StellarSource {
    pub fn new(rpc: RpcPool, confirmations: u64) -> Self {
        Self { rpc, confirmations }
    }

    fn map_err(n: u64, e: RpcError) -> SourceError {
        let retention = e.jsonrpc_code() == Some(-32600)
            && e.jsonrpc_message().is_some_and(|m| m.contains("ledger range"));
        if retention {
            SourceError::OutsideRetention {
                number: n,
                message: e.jsonrpc_message().unwrap_or_default().to_string(),
            }
        } else {
            SourceError::Rpc(e)
        }
    }

    async fn ledger_entry(&self, n: u64) -> Result<Value, SourceError> {
        let r = self
            .rpc
            .call("getLedgers", json!({"startLedger": n, "pagination": {"limit": 1}}))
            .await
            .map_err(|e| Self::map_err(n, e))?;
        let ledger = r["ledgers"]
            .as_array()
            .and_then(|l| l.first())
            .cloned()
            .ok_or_else(|| SourceError::Other(format!("getLedgers returned no ledger {n}")))?;
        if ledger["sequence"].as_u64() != Some(n) {
            return Err(SourceError::Other(format!("asked for ledger {n}, got {}", ledger["sequence"])));
        }
        Ok(ledger)
    }

    /// Entries of ledger `n` from a paged method (`transactions` / `events`).
    async fn paged(
        &self,
        n: u64,
        method: &'static str,
        field: &str,
        extra: Value,
    ) -> Result<Vec<Value>, SourceError> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut params = extra.clone();
            match &cursor {
                None => {
                    params["startLedger"] = json!(n);
                    params["pagination"] = json!({"limit": PAGE});
                }
                Some(c) => params["pagination"] = json!({"limit": PAGE, "cursor": c}),
            }
            let r = self.rpc.call(method, params).await.map_err(|e| Self::map_err(n, e))?;
            let items = r[field].as_array().cloned().unwrap_or_default();
            let count = items.len() as u64;
            let mut past = false;
            for item in items {
                match item["ledger"].as_u64() {
                    Some(l) if l == n => out.push(item),
                    Some(l) if l > n => past = true,
                    _ => {}
                }
            }
            cursor = r["cursor"].as_str().map(str::to_string);
            // a short page is not proof of the end (servers may cap the page size): stop at an
            // empty page or at the next ledger
            if past || count == 0 || cursor.is_none() {
                return Ok(out);
            }
        }
    }
}

#[async_trait]
impl BlockSource for StellarSource {
    async fn head(&self) -> Result<Head, SourceError> {
        let r = self.rpc.call("getLatestLedger", json!({})).await?;
        let latest = r["sequence"]
            .as_u64()
            .ok_or_else(|| SourceError::Other(format!("getLatestLedger has no sequence: {r}")))?;
        Ok(Head { latest, target: latest.saturating_sub(self.confirmations) })
    }

    async fn block(&self, n: u64) -> Result<Block, SourceError> {
        let ledger = self.ledger_entry(n).await?;
        let txs = self.paged(n, "getTransactions", "transactions", json!({})).await?;
        let events = self.paged(n, "getEvents", "events", json!({"filters": [{"type": "contract"}]})).await?;
        let parsed = StellarLedger::from_rpc(&ledger, &txs, &events)
            .map_err(|source| SourceError::Malformed { number: n, source })?;
        Ok(Block::Stellar(parsed))
    }

    async fn block_id(&self, n: u64) -> Result<BlockId, SourceError> {
        let ledger = self.ledger_entry(n).await?;
        let parsed = StellarLedger::from_rpc(&ledger, &[], &[])
            .map_err(|source| SourceError::Malformed { number: n, source })?;
        Ok(BlockId { number: n, hash: parsed.hash, parent_hash: parsed.previous_hash })
    }

    fn endpoints(&self) -> Option<IdentityReport> {
        self.rpc.identity_report()
    }
}
