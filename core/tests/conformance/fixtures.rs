//! Access to the real chain data in `../shared/fixtures` (never copied into the repository).

use std::path::PathBuf;

use serde_json::Value;

pub fn dir() -> PathBuf {
    if let Ok(d) = std::env::var("CHAINWATCH_FIXTURES") {
        return PathBuf::from(d);
    }
    let d = PathBuf::from(
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../../shared/fixtures");
    assert!(
        d.is_dir(),
        "fixtures not found at {} (set CHAINWATCH_FIXTURES or keep ../shared beside the clone)",
        d.display()
    );
    d
}

pub fn json(rel: &str) -> Value {
    let path = dir().join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The `result` of the first recorded exchange of an Ethereum mainnet RPC fixture.
pub fn rpc_result(rel: &str) -> Value {
    let v = json(&format!("ethereum-mainnet-rpc/{rel}"));
    v[0]["response"]["result"].clone()
}
