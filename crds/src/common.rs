//! Types shared by several kinds: object references, durations, conditions, retry policy, scripts.

use std::borrow::Cow;

use kube::KubeSchema;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// A key in a Secret of the object's own namespace (for cluster-scoped objects: the operator's
/// namespace).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key inside the Secret's `data`.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

impl SecretKeyRef {
    /// The referenced key's value in `secret`: from `data`, or from `stringData` where a server
    /// kept it as written instead of folding it into `data` (the test API server does).
    pub fn value_in(&self, secret: &k8s_openapi::api::core::v1::Secret) -> Option<Vec<u8>> {
        let data = secret.data.as_ref().and_then(|d| d.get(&self.key)).map(|b| b.0.clone());
        data.or_else(|| secret.string_data.as_ref()?.get(&self.key).map(|v| v.as_bytes().to_vec()))
    }
}

/// A key in a ConfigMap of the object's own namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapKeyRef {
    /// Name of the ConfigMap.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key inside the ConfigMap's `data`.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// Where a script or a document comes from: a ConfigMap key.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapSource {
    /// The ConfigMap key holding the content.
    pub config_map_key_ref: ConfigMapKeyRef,
}

/// A duration written like `250ms`, `10s`, `1m30s` or `2h` (units: ms, s, m, h).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(transparent)]
pub struct DurationString(pub String);

/// Error of [`DurationString::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationParseError(pub String);

impl std::fmt::Display for DurationParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid duration '{}': write it like 250ms, 10s, 1m30s or 2h", self.0)
    }
}

impl std::error::Error for DurationParseError {}

impl DurationString {
    /// Regular expression used in the schema; [`DurationString::parse`] accepts the same language.
    pub const PATTERN: &'static str = r"^([0-9]+(ms|s|m|h))+$";

    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// Parses the text into a [`std::time::Duration`].
    pub fn parse(&self) -> Result<std::time::Duration, DurationParseError> {
        parse_duration(&self.0)
    }
}

impl std::fmt::Display for DurationString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses `250ms`, `10s`, `1m30s`, `2h`: one or more `<digits><unit>` groups, units ms, s, m, h.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, DurationParseError> {
    let err = || DurationParseError(text.to_string());
    let bytes = text.as_bytes();
    if bytes.is_empty() {
        return Err(err());
    }
    let mut total_ms: u64 = 0;
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if start == i {
            return Err(err());
        }
        let n: u64 = text[start..i].parse().map_err(|_| err())?;
        let unit_ms = if text[i..].starts_with("ms") {
            i += 2;
            1
        } else if text[i..].starts_with('s') {
            i += 1;
            1_000
        } else if text[i..].starts_with('m') {
            i += 1;
            60_000
        } else if text[i..].starts_with('h') {
            i += 1;
            3_600_000
        } else {
            return Err(err());
        };
        total_ms = n.checked_mul(unit_ms).and_then(|v| total_ms.checked_add(v)).ok_or_else(err)?;
    }
    Ok(std::time::Duration::from_millis(total_ms))
}

impl JsonSchema for DurationString {
    fn schema_name() -> Cow<'static, str> {
        "DurationString".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": Self::PATTERN,
        })
    }
}

/// Language of a script (trigger conditions and script triggers), as in OpenZeppelin Monitor.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum ScriptLanguage {
    /// Run with `python3 -c`.
    Python,
    /// Run with `node -e`.
    JavaScript,
    /// Run with `bash -c` (OpenZeppelin Monitor uses `sh -c`; chainwatch uses bash so bash-only
    /// syntax in upstream examples works).
    Bash,
}

/// A script run by the worker: inline text or a ConfigMap key, with arguments and a timeout.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.source) != has(self.sourceFrom)")
    .message("set exactly one of source (inline script text) or sourceFrom (a ConfigMap key)"))]
pub struct ScriptSpec {
    /// Interpreter for the script.
    pub language: ScriptLanguage,
    /// The script text, inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The script text, from a ConfigMap key in the same namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_from: Option<ConfigMapSource>,
    /// Arguments. As in OpenZeppelin Monitor they are passed in the JSON document on stdin
    /// (`{"monitor_match": ..., "args": [...]}`); chainwatch also passes them on argv.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arguments: Vec<String>,
    /// Time limit; the process is killed when it is exceeded. Default `1s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<DurationString>,
}

/// Jitter applied to retry delays.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum Jitter {
    /// Each delay is uniformly random between zero and the computed backoff (default).
    #[default]
    Full,
    /// Delays are exactly the computed backoff.
    None,
}

/// How failed deliveries are retried: exponential backoff `initialBackoff * baseForBackoff^attempt`,
/// capped at `maxBackoff`. Defaults match OpenZeppelin Monitor (3 retries, base 2, 250ms, 10s, full
/// jitter).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetryPolicy {
    /// Retries after the first attempt. Default 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub max_retries: Option<u32>,
    /// Growth factor of the backoff. Default 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10))]
    pub base_for_backoff: Option<u32>,
    /// Delay before the first retry. Default `250ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_backoff: Option<DurationString>,
    /// Upper bound of any delay. Default `10s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_backoff: Option<DurationString>,
    /// `Full` (default) or `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<Jitter>,
    /// How long a notification is retried through an outage of its receiver after the quick
    /// retries above failed with a transient error: every 10 s at first, doubling up to every
    /// 5 minutes, until this long after its first attempt; then it is dead-lettered (and can be
    /// delivered again with `chainwatch redeliver`). Default `6h`; `0s` dead-letters right after
    /// the quick retries, as OpenZeppelin Monitor does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_for: Option<DurationString>,
}

/// Condition types and reasons shared by every kind.
pub mod conditions {
    /// Summary condition of every kind.
    pub const READY: &str = "Ready";
    pub const TRUE: &str = "True";
    pub const FALSE: &str = "False";
    pub const UNKNOWN: &str = "Unknown";
}

/// Schema extension that makes `conditions` a map keyed by `type`, so that several field managers
/// (operator, ingester, worker) can each own their own conditions under server-side apply.
pub fn conditions_schema(generator: &mut SchemaGenerator) -> Schema {
    let mut schema = generator.subschema_for::<Vec<Condition>>();
    schema.insert("x-kubernetes-list-type".into(), "map".into());
    schema.insert("x-kubernetes-list-map-keys".into(), serde_json::json!(["type"]));
    schema
}

/// Schema of a free-form JSON document (ABIs and contract specs): an array of objects whose fields
/// are kept as written.
pub fn json_array_of_objects_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "items": { "type": "object", "x-kubernetes-preserve-unknown-fields": true }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn secret_values_come_from_data_then_string_data() {
        use k8s_openapi::ByteString;
        use k8s_openapi::api::core::v1::Secret;
        let r = |key: &str| SecretKeyRef { name: "s".into(), key: key.into() };
        let secret = Secret {
            data: Some([("a".to_string(), ByteString(b"from-data".to_vec()))].into()),
            string_data: Some(
                [
                    ("a".to_string(), "shadowed".to_string()),
                    ("b".to_string(), "from-string-data".to_string()),
                ]
                .into(),
            ),
            ..Default::default()
        };
        assert_eq!(r("a").value_in(&secret).as_deref(), Some(&b"from-data"[..]));
        assert_eq!(r("b").value_in(&secret).as_deref(), Some(&b"from-string-data"[..]));
        assert_eq!(r("c").value_in(&secret), None);
        assert_eq!(r("a").value_in(&Secret::default()), None);
    }

    #[test]
    fn durations_parse_like_the_schema_pattern_says() {
        let ok = [
            ("250ms", Duration::from_millis(250)),
            ("10s", Duration::from_secs(10)),
            ("1m30s", Duration::from_secs(90)),
            ("2h", Duration::from_secs(7200)),
            ("0s", Duration::ZERO),
            ("1h1m1s1ms", Duration::from_millis(3_661_001)),
        ];
        for (text, want) in ok {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
        for bad in ["", "10", "s", "1.5s", "10 s", "-1s", "1d", "ms"] {
            let err = parse_duration(bad).unwrap_err();
            assert!(err.to_string().contains("250ms"), "{bad}: {err}");
        }
    }
}
