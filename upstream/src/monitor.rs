//! OpenZeppelin Monitor's monitor JSON (§3.3) → [`MonitorSpec`]. Used by `chainwatch import` and
//! by the golden tests that run upstream's own fixture monitors.

use chainwatch_crds::{
    MatchConditions, MonitorSpec, MonitoredAddress, ScriptLanguage, ScriptSpec, SignatureCondition,
    TransactionCondition, TransactionStatus,
};
use serde_json::Value as Json;

/// A monitor converted from upstream JSON, with what could not be carried over.
#[derive(Debug, Clone)]
pub struct ImportedMonitor {
    /// Upstream `name` (becomes `displayName`).
    pub name: String,
    pub spec: MonitorSpec,
    /// `(field, message)` for each upstream field that has no equivalent.
    pub unsupported: Vec<(String, String)>,
    /// Upstream `script_path` of each trigger condition, in order (the importer reads the files).
    pub script_paths: Vec<String>,
}

use crate::{UpstreamError, err, str_field, unknown_fields};

fn opt_expression(v: &Json, at: &str) -> Result<Option<String>, UpstreamError> {
    match v.get("expression") {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(err(format!("{at}expression"), "is not a string")),
    }
}

/// Parses an upstream `language` value.
pub fn script_language(s: &str) -> Option<ScriptLanguage> {
    match s.to_ascii_lowercase().as_str() {
        "python" => Some(ScriptLanguage::Python),
        "javascript" => Some(ScriptLanguage::JavaScript),
        "bash" => Some(ScriptLanguage::Bash),
        _ => None,
    }
}

/// Converts upstream monitor JSON. Script contents are not read here: trigger conditions get an
/// empty inline `source` and their `script_path` is returned for the caller to read.
pub fn monitor_from_upstream(v: &Json) -> Result<ImportedMonitor, UpstreamError> {
    let name = str_field(v, "name", "")?.to_string();
    let networks = v
        .get("networks")
        .and_then(Json::as_array)
        .ok_or_else(|| err("networks", "is missing or not an array"))?
        .iter()
        .enumerate()
        .map(|(i, n)| {
            n.as_str().map(str::to_string).ok_or_else(|| err(format!("networks[{i}]"), "is not a string"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let paused = v.get("paused").and_then(Json::as_bool).unwrap_or(false);
    let mut addresses = Vec::new();
    for (i, a) in v.get("addresses").and_then(Json::as_array).into_iter().flatten().enumerate() {
        let at = format!("addresses[{i}].");
        let contract_spec = match a.get("contract_spec") {
            None | Some(Json::Null) => None,
            Some(Json::Array(items)) if items.is_empty() => None,
            Some(Json::Array(items)) => Some(items.clone()),
            Some(_) => return Err(err(format!("{at}contract_spec"), "is not an array")),
        };
        addresses.push(MonitoredAddress {
            address: str_field(a, "address", &at)?.to_string(),
            contract_spec,
            contract_spec_from: None,
        });
    }
    let mc = v.get("match_conditions").ok_or_else(|| err("match_conditions", "is missing"))?;
    let signature_list = |key: &str| -> Result<Vec<SignatureCondition>, UpstreamError> {
        mc.get(key)
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
            .enumerate()
            .map(|(i, c)| {
                let at = format!("match_conditions.{key}[{i}].");
                Ok(SignatureCondition {
                    signature: str_field(c, "signature", &at)?.to_string(),
                    expression: opt_expression(c, &at)?,
                })
            })
            .collect()
    };
    let functions = signature_list("functions")?;
    let events = signature_list("events")?;
    let mut transactions = Vec::new();
    for (i, c) in mc.get("transactions").and_then(Json::as_array).into_iter().flatten().enumerate() {
        let at = format!("match_conditions.transactions[{i}].");
        let status = match c.get("status").and_then(Json::as_str).unwrap_or("Any") {
            "Any" => TransactionStatus::Any,
            "Success" => TransactionStatus::Success,
            "Failure" => TransactionStatus::Failure,
            other => {
                return Err(err(format!("{at}status"), format!("`{other}` is not Any, Success or Failure")));
            }
        };
        transactions.push(TransactionCondition { status, expression: opt_expression(c, &at)? });
    }
    let mut trigger_conditions = Vec::new();
    let mut script_paths = Vec::new();
    for (i, t) in v.get("trigger_conditions").and_then(Json::as_array).into_iter().flatten().enumerate() {
        let at = format!("trigger_conditions[{i}].");
        let language = str_field(t, "language", &at)?;
        let language = script_language(language).ok_or_else(|| {
            err(format!("{at}language"), format!("`{language}` is not Python, JavaScript or Bash"))
        })?;
        let timeout_ms = t.get("timeout_ms").and_then(Json::as_u64).unwrap_or(1000);
        let arguments = t
            .get("arguments")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str().map(str::to_string))
            .collect();
        script_paths.push(str_field(t, "script_path", &at)?.to_string());
        trigger_conditions.push(ScriptSpec {
            language,
            source: Some(String::new()),
            source_from: None,
            arguments,
            timeout: Some(chainwatch_crds::DurationString::new(format!("{timeout_ms}ms"))),
        });
    }
    let triggers = v
        .get("triggers")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_str().map(str::to_string))
        .collect();
    let mut unsupported = Vec::new();
    if let Some(cc) =
        v.get("chain_configurations").filter(|c| !c.is_null() && c.as_array().is_none_or(|a| !a.is_empty()))
    {
        unsupported.push((
            "chain_configurations".to_string(),
            format!(
                "not supported (Midnight viewing keys); dropped: {}",
                cc.to_string().chars().take(80).collect::<String>()
            ),
        ));
    }
    const KNOWN: [&str; 9] = [
        "name",
        "networks",
        "paused",
        "addresses",
        "match_conditions",
        "trigger_conditions",
        "triggers",
        "chain_configurations",
        "$schema",
    ];
    unsupported.extend(unknown_fields(v, "", &KNOWN));
    Ok(ImportedMonitor {
        spec: MonitorSpec {
            display_name: Some(name.clone()),
            networks,
            paused,
            addresses,
            match_conditions: MatchConditions { functions, events, transactions },
            trigger_conditions,
            triggers,
            notify_at: Vec::new(),
        },
        name,
        unsupported,
        script_paths,
    })
}
