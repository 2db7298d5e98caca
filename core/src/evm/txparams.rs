//! The fixed parameters of EVM transaction conditions (upstream §4.6): `value, from, to, hash,
//! gas_price, max_fee_per_gas, max_priority_fee_per_gas, gas_limit, nonce, input, gas_used,
//! transaction_index`.

use std::sync::OnceLock;

use alloy_dyn_abi::DynSolValue;
use alloy_primitives::U256;

use super::abi::ParamShape;
use crate::block::EvmTransaction;

const FIELDS: [(&str, &str); 12] = [
    ("value", "uint256"),
    ("from", "address"),
    ("to", "address"),
    ("hash", "string"),
    ("gas_price", "uint256"),
    ("max_fee_per_gas", "uint256"),
    ("max_priority_fee_per_gas", "uint256"),
    ("gas_limit", "uint256"),
    ("nonce", "uint256"),
    ("input", "string"),
    ("gas_used", "uint256"),
    ("transaction_index", "uint64"),
];

/// Shapes of the transaction parameters, in the order [`values`] returns them.
pub fn shapes() -> &'static [ParamShape] {
    static SHAPES: OnceLock<Vec<ParamShape>> = OnceLock::new();
    SHAPES.get_or_init(|| FIELDS.iter().map(|(name, ty)| ParamShape::scalar(name, ty)).collect())
}

/// The parameter values of a transaction (`None` for fields it does not have).
pub fn values(tx: &EvmTransaction) -> [Option<DynSolValue>; 12] {
    let uint = |v: U256| Some(DynSolValue::Uint(v, 256));
    let opt = |v: Option<u128>| v.map(|v| DynSolValue::Uint(U256::from(v), 256));
    [
        uint(tx.value),
        Some(DynSolValue::Address(tx.from)),
        tx.to.map(DynSolValue::Address),
        Some(DynSolValue::String(format!("{:#x}", tx.hash))),
        opt(tx.gas_price.or(tx.receipt.as_ref().and_then(|r| r.effective_gas_price))),
        opt(tx.max_fee_per_gas),
        opt(tx.max_priority_fee_per_gas),
        uint(U256::from(tx.gas_limit)),
        uint(U256::from(tx.nonce)),
        Some(DynSolValue::String(format!("0x{}", hex::encode(&tx.input)))),
        tx.receipt.as_ref().map(|r| DynSolValue::Uint(U256::from(r.gas_used), 256)),
        Some(DynSolValue::Uint(U256::from(tx.index), 64)),
    ]
}
