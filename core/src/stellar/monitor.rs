//! The Stellar part of a compiled monitor.

use std::collections::HashMap;
use std::sync::Arc;

use chainwatch_crds::{MonitorSpec, TransactionStatus};

use super::compare::{StellarExpr, compile as compile_expr};
use super::spec::{ContractSpec, normalize_signature};
use crate::expr;
use crate::monitor::{AbiCache, CompileError, reasons};
use crate::signature::check_signature;

/// A function or event condition.
#[derive(Debug)]
pub struct SignatureCond {
    pub index: usize,
    /// Normalized signature (no whitespace, lower-case).
    pub signature: String,
    pub expr: Option<StellarExpr>,
}

/// A transaction condition.
#[derive(Debug)]
pub struct TxCond {
    pub index: usize,
    pub status: TransactionStatus,
    pub expr: Option<StellarExpr>,
}

/// A monitor compiled for Stellar networks.
#[derive(Debug)]
pub struct StellarMonitor {
    /// Watched accounts and contracts (strkeys, upper-case).
    pub addresses: Vec<String>,
    /// Contract specs by address.
    pub specs: HashMap<String, Arc<ContractSpec>>,
    pub functions: Vec<SignatureCond>,
    pub events: Vec<SignatureCond>,
    pub transactions: Vec<TxCond>,
}

/// Fixed parameters of transaction conditions: `hash`, `ledger`, and per operation `value`,
/// `from`, `to`.
pub fn tx_params() -> Vec<(String, String)> {
    [("hash", "String"), ("ledger", "I64"), ("value", "I64"), ("from", "Address"), ("to", "Address")]
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .to_vec()
}

fn spec_signature(name: &str, types: impl Iterator<Item = String>) -> String {
    format!("{name}({})", types.collect::<Vec<_>>().join(","))
}

/// Whether an event without a spec can carry `signature`: its parameters named by the kinds of
/// its topics and value (`transfer(Address,Address,I128)`), never by spec types such as
/// `Bytes32` or `Map<String,String>`.
fn positional_can_name(signature: &str) -> bool {
    let Some(params) = signature.trim().split_once('(').and_then(|(_, r)| r.strip_suffix(')')) else {
        return true; // a syntax error is reported on its own
    };
    params.trim().is_empty()
        || params.split(',').all(|t| super::scval::KINDS.iter().any(|k| k.eq_ignore_ascii_case(t.trim())))
}

/// Compiles the Stellar part of a monitor.
pub fn compile(
    spec: &MonitorSpec,
    specs: &[Option<serde_json::Value>],
    abis: &AbiCache,
    warnings: &mut Vec<String>,
) -> Result<StellarMonitor, Vec<CompileError>> {
    let mut errors = Vec::new();
    let mut addresses = Vec::new();
    let mut contract_specs = HashMap::new();
    for (i, a) in spec.addresses.iter().enumerate() {
        let address = a.address.trim().to_uppercase();
        if !super::compare::is_address(&address) {
            errors.push(CompileError::new(
                format!("spec.addresses[{i}].address"),
                reasons::INVALID_ADDRESS,
                format!("`{}` is not a Stellar account (G…) or contract (C…) strkey", a.address.trim()),
            ));
            continue;
        }
        if let Some(Some(json)) = specs.get(i) {
            match abis.stellar(json) {
                Ok(s) => {
                    contract_specs.insert(address.clone(), s);
                }
                Err(e) => errors.push(CompileError::new(
                    format!("spec.addresses[{i}].contractSpec"),
                    reasons::INVALID_CONTRACT_SPEC,
                    e,
                )),
            }
        }
        if !addresses.contains(&address) {
            addresses.push(address);
        }
    }

    let conds = &spec.match_conditions;
    let mut compiled = [Vec::new(), Vec::new()];
    for (slot, (kind, list)) in
        [("functions", &conds.functions), ("events", &conds.events)].into_iter().enumerate()
    {
        for (ci, cond) in list.iter().enumerate() {
            let field = format!("spec.matchConditions.{kind}[{ci}]");
            if let Err(msg) = check_signature(&cond.signature) {
                errors.push(CompileError::new(format!("{field}.signature"), reasons::INVALID_SIGNATURE, msg));
                continue;
            }
            let wanted = normalize_signature(&cond.signature);
            // parameters known from a spec that declares this signature
            let known: Option<Vec<(String, String)>> = contract_specs.values().find_map(|s| {
                if kind == "functions" {
                    s.functions.values().find_map(|f| {
                        let sig = spec_signature(&f.name, f.inputs.iter().map(|(_, t)| t.clone()));
                        (normalize_signature(&sig) == wanted).then(|| f.inputs.clone())
                    })
                } else {
                    s.events.iter().find_map(|e| {
                        let sig = spec_signature(&e.name, e.params.iter().map(|(_, t, _)| t.clone()));
                        (normalize_signature(&sig) == wanted)
                            .then(|| e.params.iter().map(|(n, t, _)| (n.clone(), t.clone())).collect())
                    })
                }
            });
            if kind == "functions" && known.is_none() {
                warnings.push(format!(
                    "{field}.signature: no contract spec of this monitor declares `{}`; Stellar functions only match when the called contract's spec declares them (put the spec in contractSpec or contractSpecFrom)",
                    cond.signature.trim()
                ));
            }
            if kind == "events" && known.is_none() && !positional_can_name(&cond.signature) {
                warnings.push(format!(
                    "{field}.signature: no contract spec of this monitor declares `{}`, and an event without one is named by its values' kinds ({}), so this condition matches nothing; put the contract's spec in contractSpec or contractSpecFrom",
                    cond.signature.trim(),
                    super::scval::KINDS.join(", ")
                ));
            }
            let expr = match &cond.expression {
                Some(src) if !src.trim().is_empty() => {
                    let parsed = match expr::parse(src) {
                        Ok(e) => e,
                        Err(e) => {
                            errors.push(CompileError::new(
                                format!("{field}.expression"),
                                reasons::EXPRESSION_SYNTAX,
                                format!("`{src}`: {e}"),
                            ));
                            continue;
                        }
                    };
                    match compile_expr(src, &parsed, known.as_deref()) {
                        Ok(c) => Some(c),
                        Err(te) => {
                            errors.push(CompileError::new(
                                format!("{field}.expression"),
                                reasons::EXPRESSION_TYPE,
                                format!("`{src}` {te}"),
                            ));
                            continue;
                        }
                    }
                }
                _ => None,
            };
            compiled[slot].push(SignatureCond { index: ci, signature: wanted, expr });
        }
    }
    let [functions, events] = compiled;

    let mut transactions = Vec::new();
    let params = tx_params();
    for (ti, cond) in conds.transactions.iter().enumerate() {
        let field = format!("spec.matchConditions.transactions[{ti}].expression");
        let expr = match &cond.expression {
            Some(src) if !src.trim().is_empty() => match expr::parse(src) {
                Ok(e) => match compile_expr(src, &e, Some(&params)) {
                    Ok(c) => Some(c),
                    Err(te) => {
                        errors.push(CompileError::new(
                            field,
                            reasons::EXPRESSION_TYPE,
                            format!("`{src}` {te}"),
                        ));
                        continue;
                    }
                },
                Err(e) => {
                    errors.push(CompileError::new(
                        field,
                        reasons::EXPRESSION_SYNTAX,
                        format!("`{src}`: {e}"),
                    ));
                    continue;
                }
            },
            _ => None,
        };
        transactions.push(TxCond { index: ti, status: cond.status, expr });
    }
    if spec.addresses.is_empty() {
        warnings.push("spec.addresses is empty: chainwatch applies the address gate on Stellar too, so this monitor matches nothing".into());
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(StellarMonitor { addresses, specs: contract_specs, functions, events, transactions })
}
