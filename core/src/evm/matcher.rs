//! Evaluates one EVM monitor on one transaction (OpenZeppelin Monitor §4.7):
//!
//! * functions: the call's selector is looked up in the ABI of `tx.to`; the first function
//!   condition with that signature whose expression holds matches;
//! * events: for each log from a watched contract with an ABI, the event is found by topic0 and the
//!   first event condition with that signature whose expression holds matches (one per log);
//! * transactions: the first transaction condition whose status and expression hold matches. The
//!   status comes from the receipt, never from the presence of logs (upstream issue #498);
//! * they combine as: no conditions → match; only transaction conditions → T; no transaction
//!   conditions → E or F; otherwise (E or F) and T.
//!
//! The address gate (a watched address among `from`, `to` and the log emitters) is applied by the
//! index before this runs. Decoding is shared between monitors through [`DecodeCache`].

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use alloy_dyn_abi::DynSolValue;
use chainwatch_crds::{MatchConditions, TransactionStatus};

use super::abi::{ContractAbi, ParamShape};
use super::compare::{Arg, EvmExpr};
use super::monitor::EvmMonitor;
use super::render::render;
use super::txparams;
use crate::block::EvmTransaction;
use crate::matches::{MatchedArg, MatchedCall, MatchedEvent, MatchedOn, MatchedOnArgs};

type Decoded = Rc<Result<Vec<DynSolValue>, String>>;

/// Something per call or log and ABI: keyed by (transaction or log index, the ABI's address).
type PerAbi<T> = RefCell<HashMap<(u64, usize), T>>;

/// Decoded calls and logs of one block, shared by every monitor evaluated on it.
#[derive(Default)]
pub struct DecodeCache {
    calls: PerAbi<Decoded>,
    logs: PerAbi<Decoded>,
    tx_params: RefCell<HashMap<u64, Rc<[Option<DynSolValue>; 12]>>>,
    /// Rendered arguments of matched calls and logs, shared by every match on them.
    call_args: PerAbi<Arc<[MatchedArg]>>,
    log_args: PerAbi<Arc<[MatchedArg]>>,
    /// Expressions that failed to evaluate (the condition then does not match, as upstream).
    pub eval_errors: std::cell::Cell<u64>,
    /// Calls and logs that did not decode with the ABI that claims them.
    pub decode_errors: std::cell::Cell<u64>,
}

fn abi_id(abi: &Arc<ContractAbi>) -> usize {
    Arc::as_ptr(abi) as usize
}

impl DecodeCache {
    fn call(&self, tx: &EvmTransaction, abi: &Arc<ContractAbi>, selector: &[u8; 4]) -> Decoded {
        self.calls
            .borrow_mut()
            .entry((tx.index, abi_id(abi)))
            .or_insert_with(|| {
                let f = &abi.functions[selector];
                let r = f.decode(&tx.input[4..]);
                if r.is_err() {
                    self.decode_errors.set(self.decode_errors.get() + 1);
                }
                Rc::new(r)
            })
            .clone()
    }

    fn log(&self, log: &crate::block::EvmLog, abi: &Arc<ContractAbi>) -> Decoded {
        self.logs
            .borrow_mut()
            .entry((log.log_index, abi_id(abi)))
            .or_insert_with(|| {
                let e = &abi.events[&log.topics[0]];
                let r = e.decode(&log.topics, &log.data);
                if r.is_err() {
                    self.decode_errors.set(self.decode_errors.get() + 1);
                }
                Rc::new(r)
            })
            .clone()
    }

    fn call_args(
        &self,
        tx: &EvmTransaction,
        abi: &Arc<ContractAbi>,
        f: &super::abi::AbiFunction,
        values: &[DynSolValue],
    ) -> Arc<[MatchedArg]> {
        self.call_args
            .borrow_mut()
            .entry((tx.index, abi_id(abi)))
            .or_insert_with(|| matched_args(f.inputs.iter().map(|s| (s, false)), values).into())
            .clone()
    }

    fn log_args(
        &self,
        log: &crate::block::EvmLog,
        abi: &Arc<ContractAbi>,
        e: &super::abi::AbiEvent,
        values: &[DynSolValue],
    ) -> Arc<[MatchedArg]> {
        self.log_args
            .borrow_mut()
            .entry((log.log_index, abi_id(abi)))
            .or_insert_with(|| matched_args(e.inputs.iter().map(|(p, indexed)| (p, *indexed)), values).into())
            .clone()
    }

    fn tx_params(&self, tx: &EvmTransaction) -> Rc<[Option<DynSolValue>; 12]> {
        self.tx_params.borrow_mut().entry(tx.index).or_insert_with(|| Rc::new(txparams::values(tx))).clone()
    }

    fn eval(&self, expr: &Option<EvmExpr>, args: &[Option<Arg<'_>>]) -> bool {
        match expr {
            None => true,
            Some(e) => match e.evaluate(&mut |leaf| leaf.eval(args)) {
                Ok(b) => b,
                Err(_) => {
                    self.eval_errors.set(self.eval_errors.get() + 1);
                    false
                }
            },
        }
    }
}

fn args_of<'a>(
    shapes: impl Iterator<Item = &'a ParamShape>,
    values: &'a [DynSolValue],
) -> Vec<Option<Arg<'a>>> {
    shapes.zip(values).map(|(shape, value)| Some(Arg { shape, value })).collect()
}

fn matched_args<'a>(
    shapes: impl Iterator<Item = (&'a ParamShape, bool)>,
    values: &[DynSolValue],
) -> Vec<MatchedArg> {
    shapes
        .zip(values)
        .map(|((shape, indexed), value)| MatchedArg {
            name: shape.name.clone(),
            value: render(value),
            kind: shape.type_string.clone(),
            indexed,
        })
        .collect()
}

/// Evaluates `monitor` on `tx`; `Some` when it matches.
pub fn match_transaction(
    monitor: &EvmMonitor,
    conditions: &MatchConditions,
    tx: &EvmTransaction,
    cache: &DecodeCache,
) -> Option<(MatchedOn, MatchedOnArgs)> {
    let mut on = MatchedOn::default();
    let mut args = MatchedOnArgs::default();

    // transaction conditions: the first that passes
    let mut tx_matched = false;
    if !monitor.transactions.is_empty() {
        let params = cache.tx_params(tx);
        let shapes = txparams::shapes();
        let arg_list: Vec<Option<Arg<'_>>> = shapes
            .iter()
            .zip(params.iter())
            .map(|(shape, v)| v.as_ref().map(|value| Arg { shape, value }))
            .collect();
        for (i, cond) in monitor.transactions.iter().enumerate() {
            let status_ok = match cond.status {
                TransactionStatus::Any => true,
                TransactionStatus::Success => tx.succeeded() == Some(true),
                TransactionStatus::Failure => tx.succeeded() == Some(false),
            };
            if status_ok && cache.eval(&cond.expr, &arg_list) {
                on.transaction(&conditions.transactions[i], tx.succeeded());
                tx_matched = true;
                break;
            }
        }
    }

    // function: the call to a watched contract with an ABI
    let mut fn_matched = false;
    if monitor.has_functions
        && tx.input.len() >= 4
        && let Some(contract) = tx.to.and_then(|to| monitor.contracts.get(&to))
    {
        let selector: [u8; 4] = tx.input[..4].try_into().expect("4 bytes");
        if let Some(conds) = contract.functions.get(&selector) {
            let decoded = cache.call(tx, &contract.abi, &selector);
            if let Ok(values) = decoded.as_ref() {
                let f = &contract.abi.functions[&selector];
                let arg_list = args_of(f.inputs.iter(), values);
                if let Some(c) = conds.iter().find(|c| cache.eval(&c.expr, &arg_list)) {
                    on.function(&conditions.functions[c.index], &f.signature);
                    args.functions.push(MatchedCall {
                        signature: f.signature.clone(),
                        args: cache.call_args(tx, &contract.abi, f, values),
                    });
                    fn_matched = true;
                }
            }
        }
    }

    // events: every log of a watched contract with an ABI, first condition per log
    let mut ev_matched = false;
    if monitor.has_events {
        for log in tx.logs() {
            let Some(topic0) = log.topics.first() else { continue };
            let Some(contract) = monitor.contracts.get(&log.address) else { continue };
            let Some(conds) = contract.events.get(topic0) else { continue };
            let decoded = cache.log(log, &contract.abi);
            let Ok(values) = decoded.as_ref() else { continue };
            let e = &contract.abi.events[topic0];
            let arg_list = args_of(e.arg_shapes.iter(), values);
            if let Some(c) = conds.iter().find(|c| cache.eval(&c.expr, &arg_list)) {
                on.event(&conditions.events[c.index], &e.signature);
                args.events.push(MatchedEvent {
                    signature: e.signature.clone(),
                    hex_signature: Some(e.hex_signature.clone()),
                    log_index: Some(log.log_index),
                    args: cache.log_args(log, &contract.abi, e, values),
                });
                ev_matched = true;
            }
        }
    }

    let has_tx = !monitor.transactions.is_empty();
    let matched = match (monitor.has_functions || monitor.has_events, has_tx) {
        (false, false) => true,
        (false, true) => tx_matched,
        (true, false) => ev_matched || fn_matched,
        (true, true) => (ev_matched || fn_matched) && tx_matched,
    };
    matched.then_some((on, args))
}
