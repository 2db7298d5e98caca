//! Decoding of the XDR a ledger carries: transaction envelopes (v0, v1 and fee-bump with their
//! inner transaction) into operations, and contract events into topics and value.

use stellar_xdr::{
    FeeBumpTransactionInnerTx, HostFunction, Limits, MuxedAccount, Operation, OperationBody, ReadXdr, ScVal,
    TransactionEnvelope,
};

use super::scval;
use crate::block::{StellarEvent, StellarTransaction};

/// What a monitor can see of one operation.
#[derive(Debug, Clone)]
pub enum OpKind {
    /// A contract call (`InvokeHostFunction` / `InvokeContract`).
    Invoke { contract: String, function: String, args: Vec<ScVal> },
    /// A payment.
    Payment { destination: String, amount: i64 },
    /// Any other operation.
    Other,
}

/// An operation with its effective source account.
#[derive(Debug, Clone)]
pub struct DecodedOp {
    pub source: String,
    pub kind: OpKind,
}

/// A decoded transaction.
#[derive(Debug, Clone)]
pub struct DecodedTx {
    /// Source account of the (inner) transaction, `G…`.
    pub source: String,
    /// Fee source of a fee-bump envelope.
    pub fee_source: Option<String>,
    pub operations: Vec<DecodedOp>,
}

/// A decoded contract event.
#[derive(Debug, Clone)]
pub struct DecodedEvent {
    pub contract: String,
    pub topics: Vec<ScVal>,
    pub value: ScVal,
}

/// `G…` strkey of an ed25519 public key.
pub fn public_key(key: [u8; 32]) -> String {
    stellar_strkey::ed25519::PublicKey(key).to_string().as_str().to_string()
}

/// `G…` strkey of an account (the underlying key for muxed `M…` accounts).
pub fn account(m: &MuxedAccount) -> String {
    match m {
        MuxedAccount::Ed25519(k) => public_key(k.0),
        MuxedAccount::MuxedEd25519(mx) => public_key(mx.ed25519.0),
    }
}

fn operation(op: &Operation, tx_source: &str) -> DecodedOp {
    let source = op.source_account.as_ref().map_or_else(|| tx_source.to_string(), account);
    let kind = match &op.body {
        OperationBody::InvokeHostFunction(invoke) => match &invoke.host_function {
            HostFunction::InvokeContract(args) => OpKind::Invoke {
                contract: args.contract_address.to_string(),
                function: String::from_utf8_lossy(args.function_name.0.as_slice()).into_owned(),
                args: args.args.to_vec(),
            },
            _ => OpKind::Other,
        },
        OperationBody::Payment(p) => {
            OpKind::Payment { destination: account(&p.destination), amount: p.amount }
        }
        _ => OpKind::Other,
    };
    DecodedOp { source, kind }
}

/// Decodes a transaction's envelope.
pub fn transaction(tx: &StellarTransaction) -> Result<DecodedTx, String> {
    let env = TransactionEnvelope::from_xdr_base64(&tx.envelope_xdr, Limits::len(4 << 20))
        .map_err(|e| format!("transaction {}: invalid envelope XDR: {e}", tx.hash))?;
    Ok(match &env {
        TransactionEnvelope::TxV0(v0) => {
            let source = public_key(v0.tx.source_account_ed25519.0);
            let operations = v0.tx.operations.iter().map(|op| operation(op, &source)).collect();
            DecodedTx { source, fee_source: None, operations }
        }
        TransactionEnvelope::Tx(v1) => {
            let source = account(&v1.tx.source_account);
            let operations = v1.tx.operations.iter().map(|op| operation(op, &source)).collect();
            DecodedTx { source, fee_source: None, operations }
        }
        TransactionEnvelope::TxFeeBump(fb) => {
            let FeeBumpTransactionInnerTx::Tx(inner) = &fb.tx.inner_tx;
            let source = account(&inner.tx.source_account);
            let operations = inner.tx.operations.iter().map(|op| operation(op, &source)).collect();
            DecodedTx { source, fee_source: Some(account(&fb.tx.fee_source)), operations }
        }
    })
}

/// Decodes a contract event's topics and value.
pub fn event(e: &StellarEvent) -> Result<DecodedEvent, String> {
    let topics = e.topics.iter().map(|t| scval::from_base64(t)).collect::<Result<Vec<_>, _>>()?;
    Ok(DecodedEvent { contract: e.contract_id.clone(), topics, value: scval::from_base64(&e.value)? })
}
