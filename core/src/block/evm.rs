//! The normalized EVM block: header fields the pipeline needs, every transaction with its receipt
//! and logs. Built by the ingester from `eth_getBlockByNumber(n, true)` + `eth_getBlockReceipts(n)`.

use alloy_primitives::{Address, B256, Bytes, U256};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{RpcShapeError, shape};

/// An EVM block with all transactions and their receipts.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct EvmBlock {
    pub number: u64,
    pub hash: B256,
    pub parent_hash: B256,
    /// Seconds since the Unix epoch.
    pub timestamp: u64,
    pub transactions: Vec<EvmTransaction>,
}

/// A transaction with the fields monitors can see.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct EvmTransaction {
    pub hash: B256,
    pub index: u64,
    pub from: Address,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Address>,
    pub value: U256,
    pub input: Bytes,
    pub nonce: u64,
    pub gas_limit: u64,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "decimal_u128")]
    pub gas_price: Option<u128>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "decimal_u128")]
    pub max_fee_per_gas: Option<u128>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "decimal_u128")]
    pub max_priority_fee_per_gas: Option<u128>,
    #[serde(default)]
    pub tx_type: u8,
    /// Always present in blocks the ingester publishes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<EvmReceipt>,
}

/// The execution result of a transaction.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct EvmReceipt {
    /// `true` = success. `None` only for pre-Byzantium receipts, which carry a state root instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<bool>,
    pub gas_used: u64,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "decimal_u128")]
    pub effective_gas_price: Option<u128>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contract_address: Option<Address>,
    pub logs: Vec<EvmLog>,
}

/// A log emitted by a transaction.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct EvmLog {
    pub address: Address,
    pub topics: Vec<B256>,
    pub data: Bytes,
    pub log_index: u64,
}

impl EvmTransaction {
    pub fn logs(&self) -> &[EvmLog] {
        self.receipt.as_ref().map_or(&[], |r| &r.logs)
    }

    /// Whether the transaction succeeded, from its receipt (never inferred from logs).
    pub fn succeeded(&self) -> Option<bool> {
        self.receipt.as_ref().and_then(|r| r.status)
    }
}

/// `Option<u128>` as a decimal string: JSON numbers above 2^64 do not survive every JSON reader (nor
/// serde's buffering of internally tagged enums).
mod decimal_u128 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<u128>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(n) => s.serialize_str(&n.to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u128>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        s.map(|s| s.parse().map_err(serde::de::Error::custom)).transpose()
    }
}

/// Reads JSON-RPC values: hex quantities, data, addresses, hashes.
struct Fields<'a> {
    what: &'static str,
    prefix: String,
    obj: &'a serde_json::Map<String, Value>,
}

impl<'a> Fields<'a> {
    fn new(what: &'static str, prefix: String, value: &'a Value) -> Result<Self, RpcShapeError> {
        let obj = value.as_object().ok_or_else(|| shape(what, prefix.clone(), "is not an object"))?;
        Ok(Self { what, prefix, obj })
    }

    fn name(&self, key: &str) -> String {
        if self.prefix.is_empty() { key.to_string() } else { format!("{}.{key}", self.prefix) }
    }

    fn opt_str(&self, key: &str) -> Result<Option<&'a str>, RpcShapeError> {
        match self.obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(shape(self.what, self.name(key), "is not a string")),
        }
    }

    fn str(&self, key: &str) -> Result<&'a str, RpcShapeError> {
        self.opt_str(key)?.ok_or_else(|| shape(self.what, self.name(key), "is missing"))
    }

    fn opt_quantity(&self, key: &str) -> Result<Option<U256>, RpcShapeError> {
        self.opt_str(key)?
            .map(|s| {
                parse_quantity(s)
                    .ok_or_else(|| shape(self.what, self.name(key), format!("is not a hex quantity: {s:?}")))
            })
            .transpose()
    }

    fn quantity(&self, key: &str) -> Result<U256, RpcShapeError> {
        self.opt_quantity(key)?.ok_or_else(|| shape(self.what, self.name(key), "is missing"))
    }

    fn u64(&self, key: &str) -> Result<u64, RpcShapeError> {
        u64::try_from(self.quantity(key)?)
            .map_err(|_| shape(self.what, self.name(key), "does not fit in 64 bits"))
    }

    fn opt_u128(&self, key: &str) -> Result<Option<u128>, RpcShapeError> {
        self.opt_quantity(key)?
            .map(|v| {
                u128::try_from(v).map_err(|_| shape(self.what, self.name(key), "does not fit in 128 bits"))
            })
            .transpose()
    }

    fn b256(&self, key: &str) -> Result<B256, RpcShapeError> {
        let s = self.str(key)?;
        s.parse().map_err(|_| shape(self.what, self.name(key), format!("is not a 32-byte hash: {s:?}")))
    }

    fn opt_address(&self, key: &str) -> Result<Option<Address>, RpcShapeError> {
        self.opt_str(key)?
            .map(|s| {
                s.parse().map_err(|_| shape(self.what, self.name(key), format!("is not an address: {s:?}")))
            })
            .transpose()
    }

    fn address(&self, key: &str) -> Result<Address, RpcShapeError> {
        self.opt_address(key)?.ok_or_else(|| shape(self.what, self.name(key), "is missing"))
    }

    fn bytes(&self, key: &str) -> Result<Bytes, RpcShapeError> {
        let s = self.str(key)?;
        s.parse().map_err(|_| shape(self.what, self.name(key), "is not hex data"))
    }

    fn array(&self, key: &str) -> Result<&'a Vec<Value>, RpcShapeError> {
        match self.obj.get(key) {
            Some(Value::Array(a)) => Ok(a),
            None | Some(Value::Null) => Err(shape(self.what, self.name(key), "is missing")),
            Some(_) => Err(shape(self.what, self.name(key), "is not an array")),
        }
    }
}

/// Parses a JSON-RPC quantity (`0x`-prefixed hex, no leading zeros required to be absent).
pub fn parse_quantity(s: &str) -> Option<U256> {
    let hex = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"))?;
    if hex.is_empty() || hex.len() > 64 {
        return None;
    }
    U256::from_str_radix(hex, 16).ok()
}

impl EvmBlock {
    /// Builds a block from an `eth_getBlockByNumber(n, true)` result and the receipts of its
    /// transactions (`eth_getBlockReceipts` or one `eth_getTransactionReceipt` per transaction, in
    /// any order). Every transaction must have a receipt: a block is never published without.
    pub fn from_rpc(block: &Value, receipts: &[Value]) -> Result<Self, RpcShapeError> {
        Self::parse_rpc(block, receipts, false)
    }

    /// Like [`EvmBlock::from_rpc`], but transactions without a receipt keep `receipt: None`
    /// (recorded data that lacks some receipts; the ingester never publishes such a block).
    pub fn from_rpc_partial(block: &Value, receipts: &[Value]) -> Result<Self, RpcShapeError> {
        Self::parse_rpc(block, receipts, true)
    }

    fn parse_rpc(block: &Value, receipts: &[Value], allow_missing: bool) -> Result<Self, RpcShapeError> {
        let f = Fields::new("block", String::new(), block)?;
        let number = f.u64("number")?;
        let hash = f.b256("hash")?;
        let mut receipts_by_hash = std::collections::HashMap::with_capacity(receipts.len());
        for (i, r) in receipts.iter().enumerate() {
            let rf = Fields::new("receipt", format!("receipts[{i}]"), r)?;
            let receipt = parse_receipt(&rf)?;
            let tx_hash = rf.b256("transactionHash")?;
            if let Some(block_hash) = rf.opt_str("blockHash")?
                && block_hash.parse::<B256>().ok() != Some(hash)
            {
                return Err(shape(
                    "receipt",
                    rf.name("blockHash"),
                    format!(
                        "{block_hash} is not the hash of block {number} ({hash}): the block changed between requests"
                    ),
                ));
            }
            receipts_by_hash.insert(tx_hash, receipt);
        }
        let mut transactions = Vec::new();
        for (i, tx) in f.array("transactions")?.iter().enumerate() {
            if tx.is_string() {
                return Err(shape(
                    "block",
                    format!("transactions[{i}]"),
                    "is a hash: request the block with full transactions",
                ));
            }
            let mut t = parse_transaction(&Fields::new("block", format!("transactions[{i}]"), tx)?)?;
            t.receipt = receipts_by_hash.remove(&t.hash);
            if t.receipt.is_none() && !allow_missing {
                return Err(shape(
                    "block",
                    format!("transactions[{i}]"),
                    format!("has no receipt ({})", t.hash),
                ));
            }
            transactions.push(t);
        }
        Ok(Self {
            number,
            hash,
            parent_hash: f.b256("parentHash")?,
            timestamp: f.u64("timestamp")?,
            transactions,
        })
    }
}

fn parse_transaction(f: &Fields<'_>) -> Result<EvmTransaction, RpcShapeError> {
    Ok(EvmTransaction {
        hash: f.b256("hash")?,
        index: f.u64("transactionIndex")?,
        from: f.address("from")?,
        to: f.opt_address("to")?,
        value: f.quantity("value")?,
        input: f.bytes("input")?,
        nonce: f.u64("nonce")?,
        gas_limit: f.u64("gas")?,
        gas_price: f.opt_u128("gasPrice")?,
        max_fee_per_gas: f.opt_u128("maxFeePerGas")?,
        max_priority_fee_per_gas: f.opt_u128("maxPriorityFeePerGas")?,
        tx_type: match f.opt_quantity("type")? {
            Some(t) => {
                u8::try_from(t).map_err(|_| shape(f.what, f.name("type"), "is not a transaction type"))?
            }
            None => 0,
        },
        receipt: None,
    })
}

fn parse_receipt(f: &Fields<'_>) -> Result<EvmReceipt, RpcShapeError> {
    let status = match f.opt_quantity("status")? {
        None => None,
        Some(s) if s == U256::from(1) => Some(true),
        Some(s) if s.is_zero() => Some(false),
        Some(s) => return Err(shape(f.what, f.name("status"), format!("is {s}, expected 0x0 or 0x1"))),
    };
    let mut logs = Vec::new();
    for (i, log) in f.array("logs")?.iter().enumerate() {
        let lf = Fields::new("receipt", format!("{}.logs[{i}]", f.prefix), log)?;
        let topics = lf
            .array("topics")?
            .iter()
            .enumerate()
            .map(|(j, t)| {
                t.as_str().and_then(|s| s.parse::<B256>().ok()).ok_or_else(|| {
                    shape("receipt", format!("{}.topics[{j}]", lf.prefix), "is not a 32-byte topic")
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        logs.push(EvmLog {
            address: lf.address("address")?,
            topics,
            data: lf.bytes("data")?,
            log_index: lf.u64("logIndex")?,
        });
    }
    Ok(EvmReceipt {
        status,
        gas_used: f.u64("gasUsed")?,
        effective_gas_price: f.opt_u128("effectiveGasPrice")?,
        contract_address: f.opt_address("contractAddress")?,
        logs,
    })
}
