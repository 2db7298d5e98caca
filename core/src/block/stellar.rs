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

use serde_json::Value;
use stellar_xdr::{LedgerHeaderHistoryEntry, Limits, ReadXdr};

use super::{RpcShapeError, shape};

fn str_at<'a>(v: &'a Value, what: &'static str, at: &str, key: &str) -> Result<&'a str, RpcShapeError> {
    v.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| shape(what, format!("{at}{key}"), "is missing or not a string"))
}

fn u64_at(v: &Value, what: &'static str, at: &str, key: &str) -> Result<u64, RpcShapeError> {
    match v.get(key) {
        Some(Value::Number(n)) => {
            n.as_u64().ok_or_else(|| shape(what, format!("{at}{key}"), "is not a non-negative integer"))
        }
        Some(Value::String(s)) => {
            s.parse().map_err(|_| shape(what, format!("{at}{key}"), format!("is not a number: {s:?}")))
        }
        _ => Err(shape(what, format!("{at}{key}"), "is missing")),
    }
}

impl StellarLedger {
    /// Builds a ledger from a `getLedgers` entry and the ledger's `getTransactions` and `getEvents`
    /// entries (entries of other ledgers are an error: the caller pages per ledger).
    pub fn from_rpc(ledger: &Value, transactions: &[Value], events: &[Value]) -> Result<Self, RpcShapeError> {
        let sequence = u64_at(ledger, "ledger", "", "sequence")? as u32;
        let header_xdr = str_at(ledger, "ledger", "", "headerXdr")?;
        let header = LedgerHeaderHistoryEntry::from_xdr_base64(header_xdr, Limits::len(1 << 20))
            .map_err(|e| shape("ledger", "headerXdr", format!("is not a LedgerHeaderHistoryEntry: {e}")))?;
        let hash = str_at(ledger, "ledger", "", "hash")?.to_lowercase();
        let mut txs = Vec::with_capacity(transactions.len());
        for (i, t) in transactions.iter().enumerate() {
            let at = format!("transactions[{i}].");
            let tx_ledger = u64_at(t, "transaction", &at, "ledger")?;
            if tx_ledger != u64::from(sequence) {
                return Err(shape(
                    "transaction",
                    format!("{at}ledger"),
                    format!("is {tx_ledger}, not {sequence}"),
                ));
            }
            txs.push(StellarTransaction {
                hash: str_at(t, "transaction", &at, "txHash")?.to_string(),
                status: str_at(t, "transaction", &at, "status")?.to_string(),
                application_order: u64_at(t, "transaction", &at, "applicationOrder")? as u32,
                fee_bump: t.get("feeBump").and_then(Value::as_bool).unwrap_or(false),
                envelope_xdr: str_at(t, "transaction", &at, "envelopeXdr")?.to_string(),
                result_xdr: str_at(t, "transaction", &at, "resultXdr")?.to_string(),
                created_at: u64_at(t, "transaction", &at, "createdAt").unwrap_or(0),
            });
        }
        txs.sort_by_key(|t| t.application_order);
        let mut evs = Vec::with_capacity(events.len());
        for (i, e) in events.iter().enumerate() {
            let at = format!("events[{i}].");
            let topics = e
                .get("topic")
                .and_then(Value::as_array)
                .ok_or_else(|| shape("event", format!("{at}topic"), "is missing"))?
                .iter()
                .map(|t| {
                    t.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| shape("event", format!("{at}topic"), "has a non-string entry"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            evs.push(StellarEvent {
                event_type: str_at(e, "event", &at, "type")?.to_string(),
                contract_id: e.get("contractId").and_then(Value::as_str).unwrap_or_default().to_string(),
                id: str_at(e, "event", &at, "id")?.to_string(),
                tx_hash: e.get("txHash").and_then(Value::as_str).unwrap_or_default().to_string(),
                topics,
                value: str_at(e, "event", &at, "value")?.to_string(),
                in_successful_contract_call: e
                    .get("inSuccessfulContractCall")
                    .and_then(Value::as_bool)
                    .unwrap_or(true),
            });
        }
        evs.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(StellarLedger {
            sequence,
            hash,
            previous_hash: hex::encode(header.header.previous_ledger_hash.0),
            close_time: u64_at(ledger, "ledger", "", "ledgerCloseTime")?,
            transactions: txs,
            events: evs,
        })
    }
}
