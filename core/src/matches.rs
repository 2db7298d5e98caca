//! A match of one monitor on one transaction, as the filter stage produces it and the notify stage
//! consumes it; plus OpenZeppelin Monitor's JSON shape of it for raw webhooks and scripts.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

use crate::block::EvmTransaction;
pub use crate::monitor::MatchedMonitor;
use chainwatch_crds::{NotifyPhase, SignatureCondition, TransactionCondition, TransactionStatus};

/// One match per (monitor, transaction).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct MonitorMatch {
    /// Shared by every match of the monitor (serialized as the object itself).
    pub monitor: Arc<MatchedMonitor>,
    /// Network name (the Network object; upstream's `network_slug`).
    pub network: String,
    pub block: MatchedBlock,
    pub transaction: MatchedTransaction,
    /// The conditions that matched.
    pub matched_on: MatchedOn,
    /// The decoded arguments of the matched functions and events, index-aligned with `matched_on`.
    pub matched_on_args: MatchedOnArgs,
    /// `seen` or `final` for a Monitor told at `seen` ([`crate::phase::notified`]); `None`: the
    /// one notification every other Monitor gets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<NotifyPhase>,
}

/// Where the match happened.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct MatchedBlock {
    pub number: u64,
    pub hash: String,
    /// Seconds since the Unix epoch.
    pub timestamp: u64,
}

/// The matched transaction.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "chain", rename_all = "lowercase")]
pub enum MatchedTransaction {
    /// Shared by every match on the transaction.
    Evm(Arc<EvmTransaction>),
    Stellar(StellarMatchedTransaction),
}

/// A Stellar transaction as matched.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct StellarMatchedTransaction {
    pub hash: String,
    pub status: String,
    pub application_order: u32,
    pub fee_bump: bool,
    pub envelope_xdr: String,
    pub result_xdr: String,
}

/// The conditions that matched, as upstream reports them: the expression the user wrote with the
/// canonical signature of what matched (`transfer(address,uint256)`, not the condition's spelling)
/// and the status the transaction had (`Success`/`Failure`, not the condition's `Any`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct MatchedOn {
    pub functions: Vec<SignatureCondition>,
    pub events: Vec<SignatureCondition>,
    pub transactions: Vec<TransactionCondition>,
}

impl MatchedOn {
    /// Records a function condition that matched a call whose canonical signature is `signature`.
    pub fn function(&mut self, condition: &SignatureCondition, signature: &str) {
        self.functions.push(SignatureCondition { signature: signature.to_string(), ..condition.clone() });
    }

    /// Records an event condition that matched an event whose canonical signature is `signature`.
    pub fn event(&mut self, condition: &SignatureCondition, signature: &str) {
        self.events.push(SignatureCondition { signature: signature.to_string(), ..condition.clone() });
    }

    /// Records a transaction condition that matched a transaction that succeeded or not
    /// (`None`: no receipt said, the condition's status stays).
    pub fn transaction(&mut self, condition: &TransactionCondition, succeeded: Option<bool>) {
        let status = match succeeded {
            Some(true) => TransactionStatus::Success,
            Some(false) => TransactionStatus::Failure,
            None => condition.status,
        };
        self.transactions.push(TransactionCondition { status, ..condition.clone() });
    }
}

/// Decoded arguments of what matched.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct MatchedOnArgs {
    pub functions: Vec<MatchedCall>,
    pub events: Vec<MatchedEvent>,
}

/// A matched function call.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct MatchedCall {
    pub signature: String,
    /// Shared by every match on the same call or log.
    pub args: Arc<[MatchedArg]>,
}

/// A matched event.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct MatchedEvent {
    pub signature: String,
    /// EVM: `0x` topic0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hex_signature: Option<String>,
    /// EVM log index in the block / Stellar event id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_index: Option<u64>,
    /// Shared by every match on the same call or log.
    pub args: Arc<[MatchedArg]>,
}

/// A decoded argument as upstream shows it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct MatchedArg {
    pub name: String,
    pub value: String,
    pub kind: String,
    #[serde(default)]
    pub indexed: bool,
}

impl MonitorMatch {
    /// Hash of the transaction, `0x` hex (EVM) or hex (Stellar).
    pub fn transaction_hash(&self) -> String {
        match &self.transaction {
            MatchedTransaction::Evm(tx) => format!("{:#x}", tx.hash),
            MatchedTransaction::Stellar(tx) => tx.hash.clone(),
        }
    }

    /// Log index of the first matched event, if any.
    pub fn first_log_index(&self) -> Option<u64> {
        self.matched_on_args.events.iter().find_map(|e| e.log_index)
    }

    /// The identity of the notification this match produces on `trigger`: the same match (a block
    /// redelivered after a restart, a duplicated record) always gives the same key. A `seen`
    /// notification's key is the `final` one's with `:seen` appended: one family, easy to pair.
    pub fn idempotency_key(&self, trigger: &str) -> String {
        let key = self.final_key(trigger);
        match self.phase {
            Some(NotifyPhase::Seen) => seen_key(&key),
            _ => key,
        }
    }

    /// The key of this match's notification at `final` (or its only one) on `trigger`.
    pub fn final_key(&self, trigger: &str) -> String {
        use sha2::{Digest, Sha256};
        let log = self.first_log_index().map_or_else(|| "-".to_string(), |i| i.to_string());
        let material = format!(
            "{}\n{}\n{}\n{}\n{}\n{}",
            self.monitor.key,
            trigger,
            self.network,
            self.block.hash,
            self.transaction_hash(),
            log
        );
        hex::encode(Sha256::digest(material.as_bytes()))
    }

    /// The key of the `seen` notification paired with this match's `final` one on `trigger`.
    pub fn seen_key(&self, trigger: &str) -> String {
        seen_key(&self.final_key(trigger))
    }

    /// OpenZeppelin Monitor's serialized `MonitorMatch`: `{"EVM": {...}}` or `{"Stellar": {...}}`.
    /// Used for webhooks in raw payload mode and as the `monitor_match` given to scripts.
    pub fn upstream_json(&self) -> Json {
        let matched_on = json!({
            "functions": self.matched_on.functions.iter().map(signature_condition_json).collect::<Vec<_>>(),
            "events": self.matched_on.events.iter().map(signature_condition_json).collect::<Vec<_>>(),
            "transactions": self.matched_on.transactions.iter().map(|t| json!({
                "status": t.status, "expression": t.expression,
            })).collect::<Vec<_>>(),
        });
        let args = |list: &[MatchedArg]| -> Json {
            Json::Array(
                list.iter()
                    .map(|a| json!({"name": a.name, "value": a.value, "kind": a.kind, "indexed": a.indexed}))
                    .collect(),
            )
        };
        let matched_on_args = json!({
            "functions": self.matched_on_args.functions.iter().map(|f| json!({"signature": f.signature, "args": args(&f.args)})).collect::<Vec<_>>(),
            "events": self.matched_on_args.events.iter().map(|e| {
                let mut v = json!({"signature": e.signature, "args": args(&e.args)});
                if let Some(h) = &e.hex_signature { v["hex_signature"] = json!(h); }
                v
            }).collect::<Vec<_>>(),
        });
        match &self.transaction {
            MatchedTransaction::Evm(tx) => json!({"EVM": {
                "monitor": self.monitor.upstream,
                "transaction": evm_transaction_json(tx, &self.block),
                "receipt": tx.receipt.as_ref().map(|_| evm_receipt_json(tx, &self.block)),
                "logs": tx.logs().iter().map(|l| evm_log_json(l, tx, &self.block)).collect::<Vec<_>>(),
                "network_slug": self.network,
                "matched_on": matched_on,
                "matched_on_args": matched_on_args,
            }}),
            MatchedTransaction::Stellar(tx) => json!({"Stellar": {
                "monitor": self.monitor.upstream,
                "transaction": {
                    "status": tx.status, "txHash": tx.hash, "applicationOrder": tx.application_order,
                    "feeBump": tx.fee_bump, "envelopeXdr": tx.envelope_xdr, "resultXdr": tx.result_xdr,
                    "ledger": self.block.number,
                },
                "ledger": {"sequence": self.block.number, "hash": self.block.hash, "ledgerCloseTime": self.block.timestamp.to_string()},
                "network_slug": self.network,
                "matched_on": matched_on,
                "matched_on_args": matched_on_args,
            }}),
        }
    }
}

/// The `seen` key of the family whose `final` key is `key`.
fn seen_key(key: &str) -> String {
    format!("{key}:seen")
}

fn signature_condition_json(c: &SignatureCondition) -> Json {
    json!({"signature": c.signature, "expression": c.expression})
}

fn hex_u64(v: u64) -> String {
    format!("{v:#x}")
}

fn evm_transaction_json(tx: &EvmTransaction, block: &MatchedBlock) -> Json {
    let mut v = json!({
        "hash": format!("{:#x}", tx.hash),
        "nonce": hex_u64(tx.nonce),
        "blockHash": block.hash,
        "blockNumber": hex_u64(block.number),
        "transactionIndex": hex_u64(tx.index),
        "from": format!("{:#x}", tx.from),
        "to": tx.to.map(|a| format!("{a:#x}")),
        "value": format!("{:#x}", tx.value),
        "gas": hex_u64(tx.gas_limit),
        "input": format!("0x{}", hex::encode(&tx.input)),
        "type": format!("{:#x}", tx.tx_type),
    });
    if let Some(p) = tx.gas_price {
        v["gasPrice"] = json!(format!("{p:#x}"));
    }
    if let Some(p) = tx.max_fee_per_gas {
        v["maxFeePerGas"] = json!(format!("{p:#x}"));
    }
    if let Some(p) = tx.max_priority_fee_per_gas {
        v["maxPriorityFeePerGas"] = json!(format!("{p:#x}"));
    }
    v
}

fn evm_receipt_json(tx: &EvmTransaction, block: &MatchedBlock) -> Json {
    let r = tx.receipt.as_ref().expect("called with a receipt");
    json!({
        "transactionHash": format!("{:#x}", tx.hash),
        "transactionIndex": hex_u64(tx.index),
        "blockHash": block.hash,
        "blockNumber": hex_u64(block.number),
        "from": format!("{:#x}", tx.from),
        "to": tx.to.map(|a| format!("{a:#x}")),
        "gasUsed": hex_u64(r.gas_used),
        "effectiveGasPrice": r.effective_gas_price.map(|p| format!("{p:#x}")),
        "contractAddress": r.contract_address.map(|a| format!("{a:#x}")),
        "status": r.status.map(|s| if s { "0x1" } else { "0x0" }),
        "logs": r.logs.iter().map(|l| evm_log_json(l, tx, block)).collect::<Vec<_>>(),
    })
}

fn evm_log_json(l: &crate::block::EvmLog, tx: &EvmTransaction, block: &MatchedBlock) -> Json {
    json!({
        "address": format!("{:#x}", l.address),
        "topics": l.topics.iter().map(|t| format!("{t:#x}")).collect::<Vec<_>>(),
        "data": format!("0x{}", hex::encode(&l.data)),
        "blockHash": block.hash,
        "blockNumber": hex_u64(block.number),
        "transactionHash": format!("{:#x}", tx.hash),
        "transactionIndex": hex_u64(tx.index),
        "logIndex": hex_u64(l.log_index),
        "removed": false,
    })
}
