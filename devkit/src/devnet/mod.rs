//! A local EVM chain for tests and `chainwatch dev --demo`: starts anvil, deploys the demo ERC-20,
//! sends transfers, mines blocks and causes reorgs (`anvil_reorg`). Uses anvil's unlocked dev
//! accounts, so nothing is signed here.

pub mod token;

use std::process::Stdio;
use std::time::{Duration, Instant};

use alloy_primitives::{Address, U256};
use serde_json::{Value, json};

/// A running anvil, killed when dropped.
pub struct Anvil {
    child: tokio::process::Child,
    pub url: String,
    http: reqwest::Client,
}

/// A devnet failure.
#[derive(Debug, thiserror::Error)]
pub enum DevnetError {
    #[error("starting anvil ({bin}): {source}")]
    Spawn { bin: String, source: std::io::Error },
    #[error("anvil did not answer within {0:?}")]
    NotReady(Duration),
    #[error("{method}: {message}")]
    Rpc { method: String, message: String },
}

impl Anvil {
    /// Starts `bin` on a free port with `extra` arguments and waits until it answers.
    pub async fn spawn(bin: &str, extra: &[&str]) -> Result<Self, DevnetError> {
        let port = crate::testbed::free_port();
        let child = tokio::process::Command::new(bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--silent"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| DevnetError::Spawn { bin: bin.into(), source })?;
        let anvil = Anvil { child, url: format!("http://127.0.0.1:{port}"), http: reqwest::Client::new() };
        let deadline = Instant::now() + Duration::from_secs(20);
        while anvil.rpc("eth_chainId", json!([])).await.is_err() {
            if Instant::now() > deadline {
                return Err(DevnetError::NotReady(Duration::from_secs(20)));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(anvil)
    }

    /// Kills anvil now (a crashed chain, for failover tests).
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// A JSON-RPC call.
    pub async fn rpc(&self, method: &str, params: Value) -> Result<Value, DevnetError> {
        let err = |message: String| DevnetError::Rpc { method: method.to_string(), message };
        let resp: Value = self
            .http
            .post(&self.url)
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
            .send()
            .await
            .map_err(|e| err(e.to_string()))?
            .json()
            .await
            .map_err(|e| err(e.to_string()))?;
        if let Some(e) = resp.get("error") {
            return Err(err(e.to_string()));
        }
        Ok(resp["result"].clone())
    }

    pub async fn accounts(&self) -> Result<Vec<Address>, DevnetError> {
        let v = self.rpc("eth_accounts", json!([])).await?;
        Ok(v.as_array().into_iter().flatten().filter_map(|a| a.as_str()?.parse().ok()).collect())
    }

    pub async fn block_number(&self) -> Result<u64, DevnetError> {
        let v = self.rpc("eth_blockNumber", json!([])).await?;
        Ok(v.as_str().and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok()).unwrap_or(0))
    }

    pub async fn set_automine(&self, on: bool) -> Result<(), DevnetError> {
        self.rpc("evm_setAutomine", json!([on])).await.map(|_| ())
    }

    /// Mines `n` blocks.
    pub async fn mine(&self, n: u64) -> Result<(), DevnetError> {
        self.rpc("anvil_mine", json!([format!("{n:#x}")])).await.map(|_| ())
    }

    /// Replaces the newest `depth` blocks (`anvil_reorg`).
    pub async fn reorg(&self, depth: u64) -> Result<(), DevnetError> {
        self.rpc("anvil_reorg", json!([depth, []])).await.map(|_| ())
    }

    async fn send(&self, from: Address, to: Option<Address>, data: String) -> Result<String, DevnetError> {
        let mut tx = json!({"from": format!("{from:#x}"), "data": data, "gas": "0x100000"});
        if let Some(to) = to {
            tx["to"] = json!(format!("{to:#x}"));
        }
        let hash = self.rpc("eth_sendTransaction", json!([tx])).await?;
        Ok(hash.as_str().unwrap_or_default().to_string())
    }

    async fn receipt(&self, hash: &str) -> Result<Value, DevnetError> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let r = self.rpc("eth_getTransactionReceipt", json!([hash])).await?;
            if !r.is_null() {
                return Ok(r);
            }
            if Instant::now() > deadline {
                return Err(DevnetError::Rpc {
                    method: "eth_getTransactionReceipt".into(),
                    message: format!("{hash} not mined"),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Deploys the demo ERC-20 from `from`, minting `supply` to it; mines the deployment.
    pub async fn deploy_token(&self, from: Address, supply: U256) -> Result<Address, DevnetError> {
        let data = format!("0x{}{}", token::BYTECODE, hex::encode(supply.to_be_bytes::<32>()));
        let hash = self.send(from, None, data).await?;
        self.mine_if_manual().await?;
        let receipt = self.receipt(&hash).await?;
        receipt["contractAddress"].as_str().and_then(|a| a.parse().ok()).ok_or_else(|| DevnetError::Rpc {
            method: "deploy".into(),
            message: format!("no contract address in {receipt}"),
        })
    }

    async fn mine_if_manual(&self) -> Result<(), DevnetError> {
        let auto =
            self.rpc("anvil_getAutomine", json!([])).await.ok().and_then(|v| v.as_bool()).unwrap_or(true);
        if !auto {
            self.mine(1).await?;
        }
        Ok(())
    }

    /// Sends `token.transfer(to, value)` from `from` (not mined when automine is off).
    pub async fn transfer(
        &self,
        token: Address,
        from: Address,
        to: Address,
        value: U256,
    ) -> Result<String, DevnetError> {
        let data = format!(
            "0xa9059cbb{:0>64}{}",
            hex::encode(to.as_slice()),
            hex::encode(value.to_be_bytes::<32>())
        );
        self.send(from, Some(token), data).await
    }

    /// Makes `blocks` blocks holding `per_block` token transfers each (automine is switched off
    /// meanwhile).
    pub async fn transfer_blocks(
        &self,
        token: Address,
        from: Address,
        to: Address,
        blocks: u64,
        per_block: u64,
    ) -> Result<(), DevnetError> {
        self.set_automine(false).await?;
        for b in 0..blocks {
            for i in 0..per_block {
                self.transfer(token, from, to, U256::from(1 + b * per_block + i)).await?;
            }
            self.mine(1).await?;
        }
        self.set_automine(true).await
    }
}
