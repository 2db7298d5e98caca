//! Upstream network JSON (§3.1) → [`NetworkSpec`].

use chainwatch_crds::network::ChainType;
use chainwatch_crds::{DurationString, NetworkSpec, RpcEndpoint, SecretKeyRef};
use serde_json::Value as Json;

use crate::{
    NeededSecret, SecretSource, UpstreamError, err, kube_name, secret_value, str_field, unknown_fields,
};

/// A network converted from upstream JSON.
#[derive(Debug, Clone)]
pub struct ImportedNetwork {
    /// Kubernetes name (from the slug).
    pub name: String,
    /// Upstream `name`.
    pub display_name: String,
    pub spec: NetworkSpec,
    /// Endpoint URLs that go into a Secret (credentials in the URL, or not plain values).
    pub secrets: Vec<NeededSecret>,
    pub unsupported: Vec<(String, String)>,
}

/// Whether a plain RPC URL may carry a credential (user info, a query string, or any path, where
/// Alchemy, Infura and Ankr put their keys): then it goes into a Secret.
pub fn url_has_credentials(url: &str) -> bool {
    // keys ride in userinfo, queries and paths (`/v2/<key>`, `/<key>`): anything past the host
    // may be one, so only a bare `scheme://host[:port]` stays in the spec
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    authority.contains('@') || !(tail.is_empty() || tail == "/")
}

/// Converts upstream network JSON; `secret_name` is the Secret that will hold endpoint URLs.
pub fn network_from_upstream(v: &Json, secret_name: &str) -> Result<ImportedNetwork, UpstreamError> {
    let chain_type = match str_field(v, "network_type", "")?.to_ascii_lowercase().as_str() {
        "evm" => ChainType::Evm,
        "stellar" => ChainType::Stellar,
        "solana" => ChainType::Solana,
        "midnight" => ChainType::Midnight,
        other => {
            return Err(err("network_type", format!("`{other}` is not EVM, Stellar, Solana or Midnight")));
        }
    };
    let slug = str_field(v, "slug", "")?;
    let display_name = v.get("name").and_then(Json::as_str).unwrap_or(slug).to_string();
    let mut secrets = Vec::new();
    let mut unsupported = Vec::new();
    if matches!(chain_type, ChainType::Solana | ChainType::Midnight) {
        unsupported.push((
            "network_type".into(),
            format!(
                "{chain_type} networks are carried over, but chainwatch does not ingest or match them yet: the Network will report Progressing=False (Unsupported) and its Monitors Ready=False (UnsupportedChain)"
            ),
        ));
    }
    let mut rpc = Vec::new();
    for (i, e) in v.get("rpc_urls").and_then(Json::as_array).into_iter().flatten().enumerate() {
        let at = format!("rpc_urls[{i}]");
        let url = secret_value(e.get("url").unwrap_or(&Json::Null), &format!("{at}.url"))?;
        let weight = e.get("weight").and_then(Json::as_u64).map(|w| w as u32);
        let key = format!("rpc-{i}-url");
        let (inline, secret) = match url {
            SecretSource::Plain(u) if !url_has_credentials(&u) => (Some(u), None),
            other => (None, Some(other)),
        };
        if let Some(source) = secret {
            secrets.push(NeededSecret { key: key.clone(), field: format!("{at}.url"), source });
        }
        rpc.push(RpcEndpoint {
            url_secret_ref: inline.is_none().then(|| SecretKeyRef { name: secret_name.to_string(), key }),
            url: inline,
            weight,
            timeout: None,
        });
        if let Some(t) = e.get("type_").and_then(Json::as_str).filter(|t| *t != "rpc" && *t != "ws_rpc") {
            unsupported.push((
                format!("{at}.type_"),
                format!("`{t}` endpoints are not supported; imported as a JSON-RPC endpoint"),
            ));
        }
        unsupported.extend(unknown_fields(e, &format!("{at}."), &["type_", "url", "weight"]));
    }
    // an int-or-string, built through serde (core does not depend on k8s-openapi)
    let max_past_blocks = match v.get("max_past_blocks") {
        None | Some(Json::Null) => None,
        Some(Json::String(s)) if s == "unlimited" => serde_json::from_value(Json::String(s.clone())).ok(),
        Some(Json::Number(n)) => {
            serde_json::from_value(Json::from(n.as_i64().unwrap_or(0).clamp(0, i32::MAX as i64))).ok()
        }
        Some(other) => {
            return Err(err("max_past_blocks", format!("`{other}` is not a number or \"unlimited\"")));
        }
    };
    if v.get("store_blocks").and_then(Json::as_bool) == Some(true) {
        unsupported.push((
            "store_blocks".into(),
            "not needed: normalized blocks are kept in the network's Kafka topic for kafka.retention".into(),
        ));
    }
    if let Some(r) = v.get("recovery_config").filter(|r| !r.is_null()) {
        let enabled = r.get("enabled").and_then(Json::as_bool).unwrap_or(false);
        unsupported.push((
            "recovery_config".into(),
            if enabled {
                "not needed: the ingester never skips a block (it retries a failed block until it succeeds); dropped".into()
            } else {
                "disabled upstream; dropped".into()
            },
        ));
    }
    unsupported.extend(unknown_fields(
        v,
        "",
        &[
            "network_type",
            "slug",
            "name",
            "rpc_urls",
            "chain_id",
            "network_passphrase",
            "block_time_ms",
            "confirmation_blocks",
            "cron_schedule",
            "max_past_blocks",
            "store_blocks",
            "recovery_config",
            "$schema",
        ],
    ));
    let block_time = v.get("block_time_ms").and_then(Json::as_u64).map(|ms| {
        DurationString::new(if ms % 1000 == 0 { format!("{}s", ms / 1000) } else { format!("{ms}ms") })
    });
    let spec = NetworkSpec {
        chain_type,
        chain_id: v.get("chain_id").and_then(Json::as_u64),
        network_passphrase: v.get("network_passphrase").and_then(Json::as_str).map(str::to_string),
        rpc,
        block_time,
        confirmations: v.get("confirmation_blocks").and_then(Json::as_u64).map(|c| c as u32),
        cron_schedule: v.get("cron_schedule").and_then(Json::as_str).map(str::to_string),
        max_past_blocks,
        ..serde_json::from_value(serde_json::json!({"type": chain_type, "rpc": []}))
            .expect("a minimal NetworkSpec")
    };
    Ok(ImportedNetwork { name: kube_name(slug), display_name, spec, secrets, unsupported })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_urls_are_detected() {
        assert!(!url_has_credentials("https://eth.drpc.org"));
        assert!(!url_has_credentials("https://soroban-testnet.stellar.org"));
        assert!(url_has_credentials("https://eth-mainnet.g.alchemy.com/v2/abcdefghijklmnopqrstuvwx"));
        assert!(url_has_credentials("https://user:pass@node.example"));
        assert!(url_has_credentials("https://node.example/rpc?key=1"));
        assert!(url_has_credentials("https://rpc.ankr.com/eth/0123abc"), "a short key in the path");
        assert!(url_has_credentials("https://node.example?apikey=x"));
        assert!(!url_has_credentials("https://node.example:8545/"));
    }
}
