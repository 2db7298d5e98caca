//! The EVM part of a compiled monitor: watched addresses, per-contract condition tables keyed by
//! selector and topic0 (each condition's expression compiled against that ABI entry's parameters),
//! and transaction conditions.

use std::collections::HashMap;
use std::sync::Arc;

use alloy_primitives::{Address, B256};
use chainwatch_crds::{MonitorSpec, TransactionStatus};

use super::abi::{ContractAbi, ParamShape};
use super::compare::{EvmExpr, compile as compile_expr, compile_for_one_of};
use super::txparams;
use crate::expr::{self, Expr};
use crate::monitor::{AbiCache, CompileError, reasons};
use crate::signature::{check_signature, normalize_signature};

/// A condition that applies to one ABI entry of one contract.
#[derive(Debug)]
pub struct CondRef {
    /// Index of the condition in the monitor's list (functions or events).
    pub index: usize,
    pub expr: Option<EvmExpr>,
}

/// The conditions that apply to one watched contract with an ABI.
#[derive(Debug)]
pub struct ContractConds {
    pub abi: Arc<ContractAbi>,
    pub functions: HashMap<[u8; 4], Vec<CondRef>>,
    pub events: HashMap<B256, Vec<CondRef>>,
}

/// A transaction condition.
#[derive(Debug)]
pub struct TxCond {
    pub status: TransactionStatus,
    pub expr: Option<EvmExpr>,
}

/// A monitor compiled for EVM networks.
#[derive(Debug)]
pub struct EvmMonitor {
    pub addresses: Vec<Address>,
    pub contracts: HashMap<Address, ContractConds>,
    pub transactions: Vec<TxCond>,
    pub has_functions: bool,
    pub has_events: bool,
}

fn parse_expr(source: &str, field: &str) -> Result<Expr, CompileError> {
    expr::parse(source)
        .map_err(|e| CompileError::new(field, reasons::EXPRESSION_SYNTAX, format!("`{source}`: {e}")))
}

/// A contract that declares a condition's signature: its address, the function's selector (`Ok`)
/// or the event's topic0 (`Err`), and the parameters there.
type Declaring<'a> = (&'a Address, Result<[u8; 4], B256>, Vec<ParamShape>);

/// Compiles the EVM part of a monitor. `specs[i]` is the contract spec of `spec.addresses[i]`
/// (inline or read from its ConfigMap), if it has one.
pub fn compile(
    spec: &MonitorSpec,
    specs: &[Option<serde_json::Value>],
    abis: &AbiCache,
    warnings: &mut Vec<String>,
) -> Result<EvmMonitor, Vec<CompileError>> {
    let mut errors = Vec::new();
    let mut addresses = Vec::new();
    let mut with_abi: Vec<(Address, Arc<ContractAbi>)> = Vec::new();
    for (i, a) in spec.addresses.iter().enumerate() {
        let field = format!("spec.addresses[{i}].address");
        let text = a.address.trim();
        let parsed = text
            .strip_prefix("0x")
            .or_else(|| text.strip_prefix("0X"))
            .filter(|h| h.len() == 40 && h.bytes().all(|c| c.is_ascii_hexdigit()))
            .and_then(|_| text.parse::<Address>().ok());
        let Some(address) = parsed else {
            errors.push(CompileError::new(
                field,
                reasons::INVALID_ADDRESS,
                format!("`{text}` is not an EVM address: write 0x followed by 40 hex digits"),
            ));
            continue;
        };
        if addresses.contains(&address) {
            warnings.push(format!("spec.addresses[{i}]: {text} is listed twice"));
            continue;
        }
        addresses.push(address);
        if let Some(Some(json)) = specs.get(i) {
            match abis.evm(json) {
                Ok(abi) => with_abi.push((address, abi)),
                Err(e) => errors.push(CompileError::new(
                    format!("spec.addresses[{i}].contractSpec"),
                    reasons::INVALID_CONTRACT_SPEC,
                    e.to_string(),
                )),
            }
        }
    }

    let mut contracts: HashMap<Address, ContractConds> = with_abi
        .iter()
        .map(|(a, abi)| {
            (*a, ContractConds { abi: abi.clone(), functions: HashMap::new(), events: HashMap::new() })
        })
        .collect();

    let conds = &spec.match_conditions;
    for (kind, list) in [("functions", &conds.functions), ("events", &conds.events)] {
        for (ci, cond) in list.iter().enumerate() {
            let field = format!("spec.matchConditions.{kind}[{ci}]");
            if let Err(msg) = check_signature(&cond.signature) {
                errors.push(CompileError::new(format!("{field}.signature"), reasons::INVALID_SIGNATURE, msg));
                continue;
            }
            let parsed = match &cond.expression {
                Some(src) if !src.trim().is_empty() => {
                    match parse_expr(src, &format!("{field}.expression")) {
                        Ok(e) => Some((src.as_str(), e)),
                        Err(e) => {
                            errors.push(e);
                            continue;
                        }
                    }
                }
                _ => None,
            };
            let wanted = normalize_signature(&cond.signature);
            // the contracts that declare it, with their parameters
            let declaring: Vec<Declaring<'_>> = with_abi
                .iter()
                .filter_map(|(address, abi)| {
                    if kind == "functions" {
                        let (selector, f) = abi.function_by_signature(&wanted)?;
                        Some((address, Ok(*selector), f.inputs.clone()))
                    } else {
                        let (topic0, e) = abi.event_by_signature(&wanted)?;
                        Some((address, Err(*topic0), e.arg_shapes.clone()))
                    }
                })
                .collect();
            let found = !declaring.is_empty();
            let known_somewhere =
                |name: &str| declaring.iter().any(|(_, _, params)| params.iter().any(|p| p.name == name));
            // compiled per contract, as upstream evaluates it per contract
            let mut fits = Vec::new();
            let mut misfits = Vec::new();
            for (address, key, params) in &declaring {
                let expr = match &parsed {
                    Some((src, e)) => match compile_for_one_of(src, e, params, &known_somewhere) {
                        Ok((c, absent)) => {
                            if !absent.is_empty() {
                                warnings.push(format!(
                                    "{field}.expression: {} of {address:#x} has no parameter {} (its parameters: {}): a comparison on it fails there, so the expression matches there only when AND/OR is decided without it, as upstream",
                                    cond.signature.trim(),
                                    absent.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "),
                                    params.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", ")
                                ));
                            }
                            Some(c)
                        }
                        Err(te) => {
                            misfits.push((
                                address,
                                format!("`{src}` {te} (for {} of {address:#x})", cond.signature.trim()),
                            ));
                            continue;
                        }
                    },
                    None => None,
                };
                fits.push((address, *key, expr));
            }
            if fits.is_empty() {
                // fits none of the contracts that declare it: a mistake, not a difference of ABIs
                errors.extend(misfits.into_iter().map(|(_, message)| {
                    CompileError::new(format!("{field}.expression"), reasons::EXPRESSION_TYPE, message)
                }));
            } else {
                for (address, message) in misfits {
                    warnings.push(format!(
                        "{field}.expression does not apply to {address:#x}, so the condition never matches there: {message}"
                    ));
                }
            }
            for (address, key, expr) in fits {
                let entry = contracts.get_mut(*address).expect("every contract with an ABI has an entry");
                match key {
                    Ok(selector) => {
                        entry.functions.entry(selector).or_default().push(CondRef { index: ci, expr })
                    }
                    Err(topic0) => entry.events.entry(topic0).or_default().push(CondRef { index: ci, expr }),
                }
            }
            if !found {
                let what = if kind == "functions" { "function" } else { "event" };
                warnings.push(format!(
                    "{field}.signature: no contract spec of this monitor declares {what} `{}`, so it never matches",
                    cond.signature.trim()
                ));
            }
        }
    }

    let mut transactions = Vec::new();
    for (ti, cond) in conds.transactions.iter().enumerate() {
        let field = format!("spec.matchConditions.transactions[{ti}].expression");
        let expr = match &cond.expression {
            Some(src) if !src.trim().is_empty() => match parse_expr(src, &field) {
                Ok(e) => match compile_expr(src, &e, txparams::shapes()) {
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
                    errors.push(e);
                    continue;
                }
            },
            _ => None,
        };
        transactions.push(TxCond { status: cond.status, expr });
    }

    if spec.addresses.is_empty()
        && !(conds.functions.is_empty() && conds.events.is_empty() && conds.transactions.is_empty())
    {
        warnings.push("spec.addresses is empty: on EVM networks a monitor only matches transactions that touch one of its addresses".into());
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(EvmMonitor {
        addresses,
        contracts,
        transactions,
        has_functions: !conds.functions.is_empty(),
        has_events: !conds.events.is_empty(),
    })
}
