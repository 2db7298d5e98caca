//! `MonitorSpec` → [`CompiledMonitor`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use chainwatch_crds::{ChainType, ConfigMapKeyRef, MonitorSpec, ScriptSpec};
use serde_json::{Value as Json, json};

use super::{ChainMatcher, CompileError, CompiledMonitor, MonitorKey, ResolvedScript, reasons};
use crate::evm::ContractAbi;
use crate::stellar::ContractSpec;

/// Compiled contract specs, shared by every monitor that uses the same one (10,000 monitors on
/// ERC-20 tokens hold one compiled ERC-20 ABI).
#[derive(Default, Debug)]
pub struct AbiCache {
    evm: Mutex<HashMap<String, Weak<ContractAbi>>>,
    stellar: Mutex<HashMap<String, Weak<ContractSpec>>>,
}

fn interned<T>(
    map: &Mutex<HashMap<String, Weak<T>>>,
    json: &Json,
    build: impl FnOnce(&Json) -> Result<T, String>,
) -> Result<Arc<T>, String> {
    let key = json.to_string();
    let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(existing) = map.get(&key).and_then(Weak::upgrade) {
        return Ok(existing);
    }
    let compiled = Arc::new(build(json)?);
    if map.len() > 1024 {
        map.retain(|_, w| w.strong_count() > 0);
    }
    map.insert(key, Arc::downgrade(&compiled));
    Ok(compiled)
}

impl AbiCache {
    pub fn evm(&self, json: &Json) -> Result<Arc<ContractAbi>, String> {
        interned(&self.evm, json, |j| ContractAbi::from_json(j).map_err(|e| e.to_string()))
    }

    pub fn stellar(&self, json: &Json) -> Result<Arc<ContractSpec>, String> {
        interned(&self.stellar, json, |j| ContractSpec::from_json(j).map_err(|e| e.to_string()))
    }
}

/// Reads a ConfigMap key; `Err` says what is missing.
pub type ConfigMapReader<'a> = dyn Fn(&ConfigMapKeyRef) -> Result<String, String> + 'a;

/// Everything compilation needs besides the spec.
pub struct MonitorSource<'a> {
    pub key: MonitorKey,
    pub generation: Option<i64>,
    pub spec: &'a MonitorSpec,
    /// Reads ConfigMaps of the monitor's namespace (contract specs and scripts kept there).
    pub config_maps: &'a ConfigMapReader<'a>,
}

/// Default time limit of scripts.
pub const DEFAULT_SCRIPT_TIMEOUT_MS: u64 = 1_000;

/// Reads a script's text, inline or from its ConfigMap.
pub fn resolve_script(
    script: &ScriptSpec,
    field: &str,
    config_maps: &ConfigMapReader<'_>,
) -> Result<ResolvedScript, CompileError> {
    let source = match (&script.source, &script.source_from) {
        (Some(text), _) => text.clone(),
        (None, Some(from)) => config_maps(&from.config_map_key_ref).map_err(|e| {
            CompileError::new(format!("{field}.sourceFrom"), reasons::CONFIG_MAP_NOT_FOUND, e)
        })?,
        (None, None) => {
            return Err(CompileError::new(
                field,
                reasons::INVALID_SCRIPT,
                "set source (inline script) or sourceFrom (a ConfigMap key)",
            ));
        }
    };
    let timeout_ms = match &script.timeout {
        None => DEFAULT_SCRIPT_TIMEOUT_MS,
        Some(d) => {
            let t = d.parse().map_err(|e| {
                CompileError::new(format!("{field}.timeout"), reasons::INVALID_SCRIPT, e.to_string())
            })?;
            if t.is_zero() {
                return Err(CompileError::new(
                    format!("{field}.timeout"),
                    reasons::INVALID_SCRIPT,
                    "the timeout must be above 0",
                ));
            }
            t.as_millis() as u64
        }
    };
    Ok(ResolvedScript { language: script.language, source, arguments: script.arguments.clone(), timeout_ms })
}

/// Compiles a monitor for networks of `chain`. Errors name the field and the fix; warnings (in the
/// result) point at likely mistakes that do not stop admission.
pub fn compile(
    source: &MonitorSource<'_>,
    chain: ChainType,
    abis: &AbiCache,
) -> Result<CompiledMonitor, Vec<CompileError>> {
    let spec = source.spec;
    let mut errors = Vec::new();
    let mut warnings = Vec::new();

    let mut contract_specs = Vec::with_capacity(spec.addresses.len());
    for (i, a) in spec.addresses.iter().enumerate() {
        contract_specs.push(match (&a.contract_spec, &a.contract_spec_from) {
            (Some(inline), _) => Some(Json::Array(inline.clone())),
            (None, Some(from)) => match (source.config_maps)(&from.config_map_key_ref) {
                Ok(text) => match serde_json::from_str::<Json>(&text) {
                    Ok(j) => Some(j),
                    Err(e) => {
                        errors.push(CompileError::new(
                            format!("spec.addresses[{i}].contractSpecFrom"),
                            reasons::INVALID_CONTRACT_SPEC,
                            format!(
                                "ConfigMap {}/{} is not JSON: {e}",
                                from.config_map_key_ref.name, from.config_map_key_ref.key
                            ),
                        ));
                        None
                    }
                },
                Err(e) => {
                    errors.push(CompileError::new(
                        format!("spec.addresses[{i}].contractSpecFrom"),
                        reasons::CONFIG_MAP_NOT_FOUND,
                        e,
                    ));
                    None
                }
            },
            (None, None) => None,
        });
    }

    let mut trigger_conditions = Vec::new();
    for (i, script) in spec.trigger_conditions.iter().enumerate() {
        match resolve_script(script, &format!("spec.triggerConditions[{i}]"), source.config_maps) {
            Ok(s) => trigger_conditions.push(s),
            Err(e) => errors.push(e),
        }
    }

    let chain_matcher = match chain {
        ChainType::Evm => {
            crate::evm::monitor::compile(spec, &contract_specs, abis, &mut warnings).map(ChainMatcher::Evm)
        }
        ChainType::Stellar => crate::stellar::monitor::compile(spec, &contract_specs, abis, &mut warnings)
            .map(ChainMatcher::Stellar),
        other => Err(vec![CompileError::new(
            "spec.networks",
            reasons::UNSUPPORTED_CHAIN,
            format!("matching on {other} networks is not supported yet (evm and stellar are)"),
        )]),
    };
    let chain_matcher = match chain_matcher {
        Ok(m) => Some(m),
        Err(mut e) => {
            errors.append(&mut e);
            None
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let display_name = spec.display_name.clone().unwrap_or_else(|| source.key.name.clone());
    let matched = Arc::new(super::MatchedMonitor {
        key: source.key.clone(),
        generation: source.generation,
        display_name: display_name.clone(),
        triggers: spec.triggers.clone(),
        trigger_conditions: trigger_conditions.clone(),
        upstream: Arc::new(upstream_monitor_json(&source.key, spec, &trigger_conditions)),
        notify_at: spec.notify_at.clone(),
    });
    Ok(CompiledMonitor {
        key: source.key.clone(),
        generation: source.generation,
        display_name,
        networks: spec.networks.clone(),
        paused: spec.paused,
        triggers: spec.triggers.clone(),
        matched,
        trigger_conditions,
        match_conditions: spec.match_conditions.clone(),
        chain: chain_matcher.expect("no errors means a matcher"),
        warnings,
    })
}

/// The syntax errors of a monitor's expressions: what can be said before the chain type is known
/// (the grammar is the same for every chain; names and types need the chain's compiler).
pub fn syntax_errors(spec: &MonitorSpec) -> Vec<CompileError> {
    let conds = &spec.match_conditions;
    let expressions = conds
        .functions
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("spec.matchConditions.functions[{i}].expression"), c.expression.as_deref()))
        .chain(
            conds.events.iter().enumerate().map(|(i, c)| {
                (format!("spec.matchConditions.events[{i}].expression"), c.expression.as_deref())
            }),
        )
        .chain(conds.transactions.iter().enumerate().map(|(i, c)| {
            (format!("spec.matchConditions.transactions[{i}].expression"), c.expression.as_deref())
        }));
    expressions
        .filter_map(|(field, src)| {
            let src = src.filter(|s| !s.trim().is_empty())?;
            let e = crate::expr::parse(src).err()?;
            Some(CompileError::new(field, reasons::EXPRESSION_SYNTAX, format!("`{src}`: {e}")))
        })
        .collect()
}

/// The monitor in OpenZeppelin Monitor's JSON shape (contract specs stripped, as upstream does in
/// EVM matches).
fn upstream_monitor_json(key: &MonitorKey, spec: &MonitorSpec, scripts: &[ResolvedScript]) -> Json {
    let conds = &spec.match_conditions;
    json!({
        "name": spec.display_name.clone().unwrap_or_else(|| key.name.clone()),
        "networks": spec.networks,
        "paused": spec.paused,
        "addresses": spec.addresses.iter().map(|a| json!({"address": a.address, "contract_spec": null})).collect::<Vec<_>>(),
        "match_conditions": {
            "functions": conds.functions.iter().map(|c| json!({"signature": c.signature, "expression": c.expression})).collect::<Vec<_>>(),
            "events": conds.events.iter().map(|c| json!({"signature": c.signature, "expression": c.expression})).collect::<Vec<_>>(),
            "transactions": conds.transactions.iter().map(|c| json!({"status": c.status, "expression": c.expression})).collect::<Vec<_>>(),
        },
        "trigger_conditions": scripts.iter().enumerate().map(|(i, s)| json!({
            "script_path": format!("{key}/triggerConditions[{i}]"),
            "language": s.language,
            "arguments": s.arguments,
            "timeout_ms": s.timeout_ms,
        })).collect::<Vec<_>>(),
        "triggers": spec.triggers,
    })
}
