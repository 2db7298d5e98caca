//! The normalized Stellar ledger: header fields, the ledger's transactions (XDR kept as the RPC sent
//! it, base64) and its contract events. Built by the ingester from `getLedgers`, `getTransactions`
//! and `getEvents`; decoded by `crate::stellar` when monitors are evaluated.

use serde::{Deserialize, Serialize};

/// A closed ledger with its transactions and contract events.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct StellarLedger {
    pub sequence: u32,
    /// Ledger hash, lower-case hex.
    pub hash: String,
    /// Hash of the previous ledger, lower-case hex (from the ledger header).
    pub previous_hash: String,
    /// Close time, seconds since the Unix epoch.
    pub close_time: u64,
    pub transactions: Vec<StellarTransaction>,
    #[serde(default)]
    pub events: Vec<StellarEvent>,
}

/// A transaction as `getTransactions` returns it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct StellarTransaction {
    /// Transaction hash, lower-case hex.
    pub hash: String,
    /// `SUCCESS` or `FAILED`.
    pub status: String,
    pub application_order: u32,
    pub fee_bump: bool,
    /// TransactionEnvelope, base64 XDR.
    pub envelope_xdr: String,
    /// TransactionResult, base64 XDR.
    pub result_xdr: String,
    /// Seconds since the Unix epoch.
    #[serde(default)]
    pub created_at: u64,
}

/// A contract event as `getEvents` returns it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct StellarEvent {
    /// `contract`, `system` or `diagnostic`.
    pub event_type: String,
    /// Emitting contract (strkey `C…`).
    pub contract_id: String,
    /// Event id (`<toid>-<index>`), unique and ordered within the ledger.
    pub id: String,
    /// Hash of the transaction that emitted it.
    pub tx_hash: String,
    /// Topics, each an ScVal in base64 XDR.
    pub topics: Vec<String>,
    /// Value, an ScVal in base64 XDR.
    pub value: String,
    pub in_successful_contract_call: bool,
}

impl StellarTransaction {
    pub fn succeeded(&self) -> bool {
        self.status == "SUCCESS"
    }
}
