//! Evaluates Stellar monitors on a ledger (OpenZeppelin Monitor §4.6–4.7 for Stellar):
//!
//! * functions: `InvokeContract` operations (fee-bump inner transactions included) on a watched
//!   contract whose spec declares the function; the signature comes from the spec when arity and
//!   types fit, else from the runtime value types; arguments are named by the spec; the first
//!   matching condition wins per call;
//! * events: contract events of watched contracts; with a Protocol-23 event spec (found by prefix
//!   topics or name) parameters are named and typed by it, otherwise the first topic is the name
//!   and the other topics and the value are positional arguments `0`, `1`, …; every matching
//!   condition is recorded;
//! * transactions: status from the ledger (`SUCCESS`/`FAILED`) and an expression over `hash`,
//!   `ledger` and, per operation, `value`, `from`, `to` (any operation may satisfy it);
//! * the combination rule is the EVM one.
//!
//! Deliberately unlike upstream, the address gate applies to Stellar too: a transaction is only
//! evaluated for monitors that watch one of its accounts (source, fee source, operation sources,
//! payment destinations) or contracts (invoked or emitting). Upstream evaluates every transaction
//! of the ledger against monitors with only transaction conditions, whatever their addresses.

use std::collections::HashMap;
use std::sync::Arc;

use chainwatch_crds::{MatchConditions, TransactionStatus};
use stellar_xdr::ScVal;

use super::compare::{StellarArg, StellarExpr};
use super::decode::{self, DecodedEvent, DecodedTx, OpKind};
use super::monitor::{SignatureCond, StellarMonitor};
use super::scval;
use super::spec::{ContractSpec, DataFormat, ParamLocation, arg_kind, kind_fits, normalize_signature};
use crate::block::{StellarLedger, StellarTransaction};
use crate::matches::{MatchedArg, MatchedCall, MatchedEvent, MatchedOn, MatchedOnArgs};
use crate::monitor::CompiledMonitor;
use crate::monitor::stats::MatchStats;

/// A match before it is turned into a `MonitorMatch`: monitor index, transaction, what matched.
pub type RawMatch<'a> = (u32, &'a StellarTransaction, MatchedOn, MatchedOnArgs);

fn eval(expr: &Option<StellarExpr>, args: &[StellarArg], stats: &mut MatchStats) -> bool {
    match expr {
        None => true,
        Some(e) => match e.evaluate(&mut |leaf| leaf.eval(args)) {
            Ok(b) => b,
            Err(_) => {
                stats.eval_errors += 1;
                false
            }
        },
    }
}

fn arg(name: impl Into<String>, v: &ScVal) -> StellarArg {
    typed_arg(name, None, v)
}

/// An argument the contract spec types as `spec_type`.
fn typed_arg(name: impl Into<String>, spec_type: Option<&str>, v: &ScVal) -> StellarArg {
    StellarArg { name: name.into(), kind: arg_kind(spec_type, scval::kind(v)), value: scval::text(v) }
}

fn matched(args: &[StellarArg], indexed: impl Fn(usize) -> bool) -> Vec<MatchedArg> {
    args.iter()
        .enumerate()
        .map(|(i, a)| MatchedArg {
            name: a.name.clone(),
            value: a.value.clone(),
            kind: a.kind.clone(),
            indexed: indexed(i),
        })
        .collect()
}

/// Signature and named arguments of a call, if the contract's spec declares the function.
pub fn call_args(
    spec: Option<&ContractSpec>,
    function: &str,
    values: &[ScVal],
) -> Option<(String, Vec<StellarArg>)> {
    let f = spec?.functions.get(function)?;
    let kinds: Vec<&str> = values.iter().map(scval::kind).collect();
    let same_arity = f.inputs.len() == values.len();
    let fits = same_arity && f.inputs.iter().zip(&kinds).all(|((_, t), k)| kind_fits(t, k));
    let types: Vec<String> = if fits {
        f.inputs.iter().map(|(_, t)| t.clone()).collect()
    } else {
        kinds.iter().map(|k| k.to_string()).collect()
    };
    let args = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            if fits {
                typed_arg(f.inputs[i].0.clone(), Some(&f.inputs[i].1), v)
            } else {
                arg(if same_arity { f.inputs[i].0.clone() } else { i.to_string() }, v)
            }
        })
        .collect();
    Some((format!("{function}({})", types.join(",")), args))
}

/// Signature, named arguments and which of them are topics, for an event.
pub fn event_args(
    spec: Option<&ContractSpec>,
    ev: &DecodedEvent,
) -> Option<(String, Vec<StellarArg>, usize)> {
    let texts: Vec<String> = ev.topics.iter().map_while(scval::text_of).collect();
    if let Some(es) = spec.and_then(|s| s.event_for(&texts)) {
        let skip = es.prefix_topics.len().max(1);
        let mut topics = ev.topics.iter().skip(skip);
        let mut data_index = 0;
        let mut args = Vec::new();
        let mut ok = true;
        for (name, ty, location) in &es.params {
            let value = match location {
                ParamLocation::TopicList => topics.next().cloned(),
                ParamLocation::Data => {
                    let v = match es.data_format {
                        DataFormat::SingleValue => Some(ev.value.clone()),
                        DataFormat::Vec => match &ev.value {
                            ScVal::Vec(Some(items)) => items.get(data_index).cloned(),
                            _ => None,
                        },
                        DataFormat::Map => match &ev.value {
                            ScVal::Map(Some(entries)) => entries
                                .iter()
                                .find(|e| scval::text_of(&e.key).as_deref() == Some(name))
                                .map(|e| e.val.clone()),
                            _ => None,
                        },
                    };
                    data_index += 1;
                    v
                }
            };
            match value {
                Some(v) => args.push(typed_arg(name.clone(), Some(ty), &v)),
                None => {
                    ok = false;
                    break;
                }
            }
        }
        if ok {
            let topic_count = es.params.iter().filter(|(_, _, l)| *l == ParamLocation::TopicList).count();
            let types: Vec<&str> = es.params.iter().map(|(_, t, _)| t.as_str()).collect();
            return Some((format!("{}({})", es.name, types.join(",")), args, topic_count));
        }
    }
    // positional: the first topic names the event
    let name = texts.first()?.clone();
    let mut args: Vec<StellarArg> =
        ev.topics.iter().skip(1).enumerate().map(|(i, t)| arg(i.to_string(), t)).collect();
    let topic_count = args.len();
    if !matches!(ev.value, ScVal::Void) {
        args.push(arg(args.len().to_string(), &ev.value));
    }
    let kinds: Vec<&str> = args.iter().map(|a| a.kind.as_str()).collect();
    Some((format!("{name}({})", kinds.join(",")), args, topic_count))
}

fn tx_args(tx: &StellarTransaction, ledger: u32, decoded: &DecodedTx) -> Vec<Vec<StellarArg>> {
    let base =
        |name: &str, kind: &str, value: String| StellarArg { name: name.into(), kind: kind.into(), value };
    decoded
        .operations
        .iter()
        .map(|op| {
            let (value, to) = match &op.kind {
                OpKind::Payment { destination, amount } => (amount.to_string(), destination.clone()),
                OpKind::Invoke { contract, .. } => ("0".to_string(), contract.clone()),
                OpKind::Other => ("0".to_string(), String::new()),
            };
            vec![
                base("hash", "String", tx.hash.clone()),
                base("ledger", "I64", ledger.to_string()),
                base("value", "I64", value),
                base("from", "Address", op.source.clone()),
                base("to", "Address", to),
            ]
        })
        .collect()
}

fn first_passing<'c>(
    conds: &'c [SignatureCond],
    signature: &str,
    args: &[StellarArg],
    stats: &mut MatchStats,
) -> Option<&'c SignatureCond> {
    let normalized = normalize_signature(signature);
    conds.iter().find(|c| c.signature == normalized && eval(&c.expr, args, stats))
}

#[allow(clippy::too_many_arguments)]
fn match_transaction(
    m: &StellarMonitor,
    conditions: &MatchConditions,
    tx: &StellarTransaction,
    ledger: u32,
    decoded: &DecodedTx,
    events: &[DecodedEvent],
    stats: &mut MatchStats,
) -> Option<(MatchedOn, MatchedOnArgs)> {
    let mut on = MatchedOn::default();
    let mut out = MatchedOnArgs::default();
    let watched = |a: &str| m.addresses.iter().any(|w| w == a);

    let mut tx_matched = false;
    if !m.transactions.is_empty() {
        let per_op = tx_args(tx, ledger, decoded);
        for cond in &m.transactions {
            let status_ok = match cond.status {
                TransactionStatus::Any => true,
                TransactionStatus::Success => tx.succeeded(),
                TransactionStatus::Failure => !tx.succeeded(),
            };
            if status_ok && (cond.expr.is_none() || per_op.iter().any(|args| eval(&cond.expr, args, stats))) {
                on.transaction(&conditions.transactions[cond.index], Some(tx.succeeded()));
                tx_matched = true;
                break;
            }
        }
    }

    let mut fn_matched = false;
    if !m.functions.is_empty() {
        for op in &decoded.operations {
            let OpKind::Invoke { contract, function, args } = &op.kind else { continue };
            if !watched(contract) {
                continue;
            }
            let Some((signature, named)) = call_args(m.specs.get(contract).map(Arc::as_ref), function, args)
            else {
                continue;
            };
            if let Some(c) = first_passing(&m.functions, &signature, &named, stats) {
                on.function(&conditions.functions[c.index], &signature);
                out.functions.push(MatchedCall { signature, args: matched(&named, |_| false).into() });
                fn_matched = true;
            }
        }
    }

    let mut ev_matched = false;
    if !m.events.is_empty() {
        for ev in events.iter().filter(|e| watched(&e.contract)) {
            let Some((signature, named, topics)) = event_args(m.specs.get(&ev.contract).map(Arc::as_ref), ev)
            else {
                continue;
            };
            let normalized = normalize_signature(&signature);
            for c in m.events.iter().filter(|c| c.signature == normalized) {
                if eval(&c.expr, &named, stats) {
                    on.event(&conditions.events[c.index], &signature);
                    out.events.push(MatchedEvent {
                        signature: signature.clone(),
                        hex_signature: None,
                        log_index: None,
                        args: matched(&named, |i| i < topics).into(),
                    });
                    ev_matched = true;
                }
            }
        }
    }

    let matched = match (!m.functions.is_empty() || !m.events.is_empty(), !m.transactions.is_empty()) {
        (false, false) => true,
        (false, true) => tx_matched,
        (true, false) => ev_matched || fn_matched,
        (true, true) => (ev_matched || fn_matched) && tx_matched,
    };
    matched.then_some((on, out))
}

/// Evaluates the Stellar monitors of an index on a ledger.
pub fn match_ledger<'a>(
    ledger: &'a StellarLedger,
    by_address: &HashMap<String, Vec<u32>>,
    monitors: &[Arc<CompiledMonitor>],
) -> (Vec<RawMatch<'a>>, MatchStats) {
    let mut stats = MatchStats { transactions: ledger.transactions.len() as u64, ..Default::default() };
    let mut out = Vec::new();
    if by_address.is_empty() {
        return (out, stats);
    }
    let mut events_by_tx: HashMap<&str, Vec<DecodedEvent>> = HashMap::new();
    for e in ledger.events.iter().filter(|e| e.event_type == "contract") {
        match decode::event(e) {
            Ok(d) => events_by_tx.entry(e.tx_hash.as_str()).or_default().push(d),
            Err(_) => stats.decode_errors += 1,
        }
    }
    let mut candidates: Vec<u32> = Vec::new();
    for tx in &ledger.transactions {
        let decoded = match decode::transaction(tx) {
            Ok(d) => d,
            Err(_) => {
                stats.decode_errors += 1;
                continue;
            }
        };
        let events = events_by_tx.get(tx.hash.as_str()).map(Vec::as_slice).unwrap_or_default();
        candidates.clear();
        let mut add = |a: &str| {
            if let Some(ms) = by_address.get(a) {
                candidates.extend_from_slice(ms);
            }
        };
        add(&decoded.source);
        if let Some(f) = &decoded.fee_source {
            add(f);
        }
        for op in &decoded.operations {
            add(&op.source);
            match &op.kind {
                OpKind::Invoke { contract, .. } => add(contract),
                OpKind::Payment { destination, .. } => add(destination),
                OpKind::Other => {}
            }
        }
        for e in events {
            add(&e.contract);
        }
        if candidates.is_empty() {
            continue;
        }
        candidates.sort_unstable();
        candidates.dedup();
        for &i in &candidates {
            let monitor = &monitors[i as usize];
            let crate::monitor::ChainMatcher::Stellar(sm) = &monitor.chain else { continue };
            stats.evaluations += 1;
            if let Some((on, args)) = match_transaction(
                sm,
                &monitor.match_conditions,
                tx,
                ledger.sequence,
                &decoded,
                events,
                &mut stats,
            ) {
                out.push((i, tx, on, args));
            }
        }
    }
    stats.matches = out.len() as u64;
    (out, stats)
}
