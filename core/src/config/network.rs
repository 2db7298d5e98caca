//! A Network's spec as the ingester runs it: defaults per chain type, endpoint URLs from their
//! Secrets, a cron schedule turned into a poll interval, the block topic's settings. The operator
//! validates Networks with it, the ingester and `chainwatch dev` run with it, `chainwatch check`
//! reports its errors.

use std::time::Duration;

use chainwatch_crds::network::{Finality, NetworkSpec};
use chainwatch_crds::{ChainType, SecretKeyRef};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::RefProblem;

/// One JSON-RPC endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub url: String,
    /// Share of requests (0 disables it).
    pub weight: u32,
    pub timeout: Duration,
}

/// Everything a network's ingestion runs with.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkSettings {
    pub chain: ChainType,
    pub endpoints: Vec<Endpoint>,
    pub confirmations: u64,
    pub finality: Finality,
    /// Publish blocks at the head too (`spec.publishSeen`, [`crate::phase`]).
    pub publish_seen: bool,
    pub chain_id: Option<u64>,
    pub network_passphrase: Option<String>,
    pub block_time: Duration,
    pub poll_interval: Duration,
    /// `None` = unlimited.
    pub max_past_blocks: Option<u64>,
    /// Where to start without a checkpoint (`None`: the newest confirmed block).
    pub start: Option<u64>,
    /// Stop after this block (a bounded backfill).
    pub stop_at: Option<u64>,
    /// Partitions of the block topic.
    pub partitions: i32,
    pub replication_factor: Option<i32>,
    pub retention: Option<Duration>,
}

/// A spec that cannot run: the field and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SpecError {
    pub field: String,
    pub message: String,
    /// Whether it may resolve by itself (an endpoint Secret not readable yet).
    pub transient: bool,
}

fn err(field: impl Into<String>, message: impl Into<String>) -> SpecError {
    SpecError { field: field.into(), message: message.into(), transient: false }
}

/// Defaults per chain type: block time and confirmations.
pub fn chain_defaults(chain: ChainType) -> (Duration, u64) {
    match chain {
        ChainType::Evm => (Duration::from_secs(12), 12),
        ChainType::Stellar => (Duration::from_secs(5), 1),
        ChainType::Solana => (Duration::from_millis(400), 0),
        ChainType::Midnight => (Duration::from_secs(6), 0),
    }
}

/// Default partitions of a block topic.
pub const DEFAULT_PARTITIONS: i32 = 6;

/// The interval between runs of a 6-field cron schedule (seconds first), for the patterns
/// OpenZeppelin Monitor configs use: `*/N * * * * *` (every N s), `0 */N * * * *` (every N min),
/// `0 0 */N * * *` (every N h), `S * * * * *` (every minute).
pub fn cron_interval(expr: &str) -> Result<Duration, String> {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    if fields.len() != 6 {
        return Err(format!(
            "`{expr}` is not a 6-field cron schedule (seconds first), e.g. `*/10 * * * * *`"
        ));
    }
    let step = |f: &str| -> Option<u64> {
        match f {
            "*" => Some(1),
            _ => f.strip_prefix("*/").and_then(|n| n.parse().ok()).filter(|n| *n > 0),
        }
    };
    let fixed = |f: &str| f.parse::<u64>().is_ok();
    let (s, m, h) = (fields[0], fields[1], fields[2]);
    if let Some(n) = step(s) {
        return Ok(Duration::from_secs(n));
    }
    if fixed(s) {
        if let Some(n) = step(m) {
            return Ok(Duration::from_secs(60 * n));
        }
        if fixed(m)
            && let Some(n) = step(h)
        {
            return Ok(Duration::from_secs(3600 * n));
        }
    }
    Err(format!(
        "cron schedule `{expr}` is not a fixed interval chainwatch understands; use pollInterval instead"
    ))
}

/// The settings of `spec`. `secret` reads a Secret key of the namespace endpoint Secrets live in
/// (the operator's).
pub fn network_settings(
    spec: &NetworkSpec,
    secret: &dyn Fn(&SecretKeyRef) -> Result<String, RefProblem>,
) -> Result<NetworkSettings, SpecError> {
    let (default_block_time, default_confirmations) = chain_defaults(spec.chain_type);
    let block_time = match &spec.block_time {
        Some(d) => d.parse().map_err(|e| err("spec.blockTime", e.to_string()))?,
        None => default_block_time,
    };
    let mut endpoints = Vec::new();
    for (i, e) in spec.rpc.iter().enumerate() {
        let url = match (&e.url, &e.url_secret_ref) {
            (Some(u), _) => u.clone(),
            (None, Some(r)) => secret(r).map_err(|p| SpecError {
                field: format!("spec.rpc[{i}].urlSecretRef"),
                transient: p.is_transient(),
                message: format!("{p}; create it or fix the reference"),
            })?,
            (None, None) => return Err(err(format!("spec.rpc[{i}]"), "set url or urlSecretRef")),
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(err(
                format!("spec.rpc[{i}]"),
                "only http(s) endpoints are supported by the ingester",
            ));
        }
        let timeout = match &e.timeout {
            Some(d) => d.parse().map_err(|m| err(format!("spec.rpc[{i}].timeout"), m.to_string()))?,
            None => Duration::from_secs(10),
        };
        endpoints.push(Endpoint { url, weight: e.weight.unwrap_or(100), timeout });
    }
    let poll_interval = match (&spec.poll_interval, &spec.cron_schedule) {
        (Some(d), _) => d.parse().map_err(|e| err("spec.pollInterval", e.to_string()))?,
        (None, Some(c)) => cron_interval(c).map_err(|m| err("spec.cronSchedule", m))?,
        (None, None) => (block_time / 2).max(Duration::from_millis(250)),
    };
    let max_past_blocks = match &spec.max_past_blocks {
        None => None,
        Some(IntOrString::String(s)) if s == "unlimited" => None,
        Some(IntOrString::Int(n)) if *n > 0 => Some(*n as u64),
        Some(other) => {
            return Err(err(
                "spec.maxPastBlocks",
                format!("{other:?} is neither a positive number nor `unlimited`"),
            ));
        }
    };
    let kafka = spec.kafka.clone().unwrap_or_default();
    let retention = match &kafka.retention {
        Some(d) => Some(d.parse().map_err(|e| err("spec.kafka.retention", e.to_string()))?),
        None => Some(Duration::from_secs(7 * 24 * 3600)),
    };
    Ok(NetworkSettings {
        chain: spec.chain_type,
        endpoints,
        confirmations: u64::from(spec.confirmations.unwrap_or(default_confirmations as u32)),
        finality: spec.finality.unwrap_or_default(),
        publish_seen: spec.publish_seen,
        chain_id: spec.chain_id,
        network_passphrase: spec.network_passphrase.clone(),
        block_time,
        poll_interval,
        max_past_blocks,
        start: spec.start_block.or(spec.backfill.as_ref().map(|b| b.from)),
        stop_at: spec.backfill.as_ref().and_then(|b| b.to),
        partitions: kafka.partitions.unwrap_or(DEFAULT_PARTITIONS),
        replication_factor: kafka.replication_factor,
        retention,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_schedules_of_upstream_configs() {
        assert_eq!(cron_interval("*/10 * * * * *").unwrap(), Duration::from_secs(10));
        assert_eq!(cron_interval("0 */1 * * * *").unwrap(), Duration::from_secs(60));
        assert_eq!(cron_interval("0 */5 * * * *").unwrap(), Duration::from_secs(300));
        assert_eq!(cron_interval("0 0 */2 * * *").unwrap(), Duration::from_secs(7200));
        assert_eq!(cron_interval("* * * * * *").unwrap(), Duration::from_secs(1));
        assert!(cron_interval("*/10 * * * *").unwrap_err().contains("6-field"));
        assert!(cron_interval("0 15 10 * * MON").is_err());
    }

    #[test]
    fn defaults_and_secrets() {
        let spec: NetworkSpec = serde_json::from_value(serde_json::json!({
            "type": "evm", "rpc": [{"url": "https://a.example"}, {"urlSecretRef": {"name": "rpc", "key": "url"}, "weight": 0}],
            "maxPastBlocks": 50, "backfill": {"from": 100, "to": 200}
        }))
        .unwrap();
        let rt = network_settings(&spec, &|r| {
            if r.name == "rpc" {
                Ok(super::super::secret_text(b" https://b.example/key \n").unwrap())
            } else {
                Err(RefProblem::SecretNotFound { namespace: "ops".into(), name: r.name.clone() })
            }
        })
        .unwrap();
        assert_eq!(rt.confirmations, 12);
        assert_eq!(rt.poll_interval, Duration::from_secs(6));
        assert_eq!(rt.endpoints[1].url, "https://b.example/key");
        assert_eq!(rt.endpoints[1].weight, 0);
        assert_eq!(rt.max_past_blocks, Some(50));
        assert_eq!((rt.start, rt.stop_at), (Some(100), Some(200)));
        let missing = network_settings(&spec, &|r| {
            Err(RefProblem::SecretNotFound { namespace: "ops".into(), name: r.name.clone() })
        })
        .unwrap_err();
        assert!(missing.message.contains("Secret ops/rpc does not exist"), "{missing}");
        assert_eq!(missing.field, "spec.rpc[1].urlSecretRef");
    }
}
