//! OpenZeppelin Monitor's configuration files (oz-monitor-semantics §3) → chainwatch specs: monitors,
//! networks and triggers. Pure conversions: no file IO (the importer reads the files and scripts),
//! and secret values are handed back to be written as Secrets, never put into a spec. Every
//! upstream field is carried over or reported in `unsupported` with its path.

mod monitor;
mod network;
mod trigger;

pub use monitor::{ImportedMonitor, monitor_from_upstream, script_language};
pub use network::{ImportedNetwork, network_from_upstream};
pub use trigger::{ImportedTrigger, trigger_from_upstream};

use serde_json::Value as Json;

/// A field of the upstream JSON that is missing or has the wrong type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct UpstreamError {
    pub field: String,
    pub message: String,
}

pub(crate) fn err(field: impl Into<String>, message: impl Into<String>) -> UpstreamError {
    UpstreamError { field: field.into(), message: message.into() }
}

pub(crate) fn str_field<'a>(v: &'a Json, key: &str, at: &str) -> Result<&'a str, UpstreamError> {
    v.get(key).and_then(Json::as_str).ok_or_else(|| err(format!("{at}{key}"), "is missing or not a string"))
}

/// `(path, message)` for each key of `v` not in `known`.
pub(crate) fn unknown_fields(v: &Json, at: &str, known: &[&str]) -> Vec<(String, String)> {
    v.as_object()
        .into_iter()
        .flat_map(|o| o.keys())
        .filter(|k| !known.contains(&k.as_str()))
        .map(|k| (format!("{at}{k}"), "unknown field (upstream rejects unknown fields too)".to_string()))
        .collect()
}

/// Where an upstream `SecretValue` comes from (§3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// The value itself.
    Plain(String),
    /// The name of an environment variable holding it.
    Environment(String),
    /// A HashiCorp Cloud Vault secret name (not readable by the importer).
    Vault(String),
}

/// A secret the imported object needs, to be written into a Secret under `key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeededSecret {
    /// Key in the Secret.
    pub key: String,
    /// Upstream field it came from.
    pub field: String,
    pub source: SecretSource,
}

/// Parses an upstream SecretValue `{"type": "plain"|"environment"|"hashicorpcloudvault", "value"}`
/// (type case-insensitive); a bare string is taken as plain.
pub(crate) fn secret_value(v: &Json, field: &str) -> Result<SecretSource, UpstreamError> {
    if let Some(s) = v.as_str() {
        return Ok(SecretSource::Plain(s.to_string()));
    }
    let kind =
        v.get("type").and_then(Json::as_str).ok_or_else(|| err(format!("{field}.type"), "is missing"))?;
    let value = str_field(v, "value", &format!("{field}."))?.to_string();
    match kind.to_ascii_lowercase().as_str() {
        "plain" => Ok(SecretSource::Plain(value)),
        "environment" => Ok(SecretSource::Environment(value)),
        "hashicorpcloudvault" => Ok(SecretSource::Vault(value)),
        other => Err(err(
            format!("{field}.type"),
            format!("`{other}` is not plain, environment or hashicorpcloudvault"),
        )),
    }
}

/// A Kubernetes name from an upstream slug, id or name: lower case, `-` for anything else.
pub fn kube_name(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let trimmed = out.trim_matches('-');
    let mut name: String = trimmed.chars().take(63).collect();
    while name.ends_with('-') {
        name.pop();
    }
    if name.is_empty() { "imported".into() } else { name }
}

/// Upstream's serde `Duration` (`{"secs", "nanos"}`) or milliseconds → a duration string.
pub(crate) fn duration(v: &Json, field: &str) -> Result<String, UpstreamError> {
    let ms = match v {
        Json::Object(o) => {
            let secs = o.get("secs").and_then(Json::as_u64).unwrap_or(0);
            let nanos = o.get("nanos").and_then(Json::as_u64).unwrap_or(0);
            secs * 1000 + nanos / 1_000_000
        }
        Json::Number(n) => n.as_u64().ok_or_else(|| err(field, "is not a whole number of milliseconds"))?,
        _ => return Err(err(field, "is not a duration ({\"secs\": 1, \"nanos\": 0})")),
    };
    Ok(if ms % 1000 == 0 { format!("{}s", ms / 1000) } else { format!("{ms}ms") })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_secrets_and_durations() {
        assert_eq!(kube_name("ethereum_mainnet"), "ethereum-mainnet");
        assert_eq!(kube_name("Large Transfer of USDC Token"), "large-transfer-of-usdc-token");
        assert_eq!(
            secret_value(&json!({"type": "Plain", "value": "x"}), "f").unwrap(),
            SecretSource::Plain("x".into())
        );
        assert_eq!(
            secret_value(&json!({"type": "environment", "value": "E"}), "f").unwrap(),
            SecretSource::Environment("E".into())
        );
        assert_eq!(duration(&json!({"secs": 1, "nanos": 500000000}), "f").unwrap(), "1500ms");
        assert_eq!(duration(&json!({"secs": 10, "nanos": 0}), "f").unwrap(), "10s");
    }
}
