//! `chainwatch dev --demo`: a local anvil chain with the demo ERC-20 (DUSD, 6 decimals) and a
//! stream of transfers, example monitors and triggers written to a temporary directory (edit them
//! while it runs: they reload), and a local webhook receiver that prints what it is sent. With
//! `--rpc URL`, the Ethereum mainnet USDC example runs against that endpoint instead.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use alloy_primitives::{Address, U256};
use anyhow::Context;
use chainwatch_devkit::devnet::Anvil;
use chainwatch_worker::notify::destination::Cidr;
use tokio_util::sync::CancellationToken;

/// A running demo.
pub struct Demo {
    anvil: Option<std::sync::Arc<Anvil>>,
    token: Option<Address>,
    accounts: Vec<Address>,
    _dir: tempfile::TempDir,
    pub config_dir: PathBuf,
    /// Destinations the demo's triggers use (the local receiver).
    pub allow: Vec<Cidr>,
}

const ERC20: &str = r#"
        - {type: event, name: Transfer, anonymous: false, inputs: [{indexed: true, name: from, type: address}, {indexed: true, name: to, type: address}, {indexed: false, name: value, type: uint256}]}
        - {type: function, name: transfer, stateMutability: nonpayable, inputs: [{name: to, type: address}, {name: value, type: uint256}], outputs: [{name: "", type: bool}]}"#;

/// Finds anvil: the flag / ANVIL_BIN, PATH, or where `scripts/demo.sh` installs it.
fn find_anvil(explicit: Option<&str>) -> anyhow::Result<String> {
    if let Some(a) = explicit {
        return Ok(a.to_string());
    }
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = PathBuf::from(dir).join("anvil");
        if p.is_file() {
            return Ok(p.display().to_string());
        }
    }
    let cache = std::env::var("CHAINWATCH_CACHE").unwrap_or_else(|_| "/var/tmp/chainwatch".into());
    let installed = PathBuf::from(cache).join("testenv/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil");
    if installed.is_file() {
        return Ok(installed.display().to_string());
    }
    anyhow::bail!(
        "anvil not found: run `scripts/demo.sh` (it installs anvil from npm), or pass --anvil PATH / set ANVIL_BIN"
    )
}

/// Serves the demo's webhooks: prints each notification it receives.
async fn receiver() -> anyhow::Result<SocketAddr> {
    use axum::Json;
    use axum::routing::post;
    let app = axum::Router::new().route(
        "/{trigger}",
        post(
            |axum::extract::Path(trigger): axum::extract::Path<String>,
             Json(body): Json<serde_json::Value>| async move {
                println!(
                    "  NOTIFIED via webhook {trigger}: {} — {}",
                    body["title"].as_str().unwrap_or_default(),
                    body["body"].as_str().unwrap_or_default()
                );
                "ok"
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(addr)
}

fn write(dir: &std::path::Path, name: &str, text: &str) -> anyhow::Result<()> {
    std::fs::write(dir.join(name), text.trim_start()).with_context(|| format!("writing {name}"))
}

fn triggers(receiver: SocketAddr) -> String {
    format!(
        r#"
apiVersion: chainwatch.io/v1alpha1
kind: Trigger
metadata: {{name: large-transfer-webhook, namespace: demo}}
spec:
  webhook: {{url: "http://{receiver}/large-transfer-webhook"}}
  message:
    title: "${{monitor.name}}"
    body: "${{events.0.args.value}} units from ${{events.0.args.from}} to ${{events.0.args.to}} in block ${{block.number}} (tx ${{transaction.hash}})"
---
apiVersion: chainwatch.io/v1alpha1
kind: Trigger
metadata: {{name: carol-webhook, namespace: demo}}
spec:
  webhook: {{url: "http://{receiver}/carol-webhook"}}
  message:
    title: "${{monitor.name}}"
    body: "transfer(to=${{functions.0.args.to}}, value=${{functions.0.args.value}}) in tx ${{transaction.hash}}"
"#
    )
}

/// Starts the demo's chain, receiver and configuration.
pub async fn start(rpc: Option<&str>, anvil: Option<&str>) -> anyhow::Result<Demo> {
    let dir = tempfile::Builder::new().prefix("chainwatch-demo-").tempdir()?;
    let config_dir = dir.path().to_path_buf();
    let receiver = receiver().await?;
    let allow = vec![format!("{}/32", receiver.ip()).parse().map_err(|e| anyhow::anyhow!("{e}"))?];
    write(
        &config_dir,
        "00-tenant.yaml",
        "apiVersion: chainwatch.io/v1alpha1\nkind: Tenant\nmetadata: {name: demo}\nspec: {namespaces: [demo]}\n",
    )?;
    write(&config_dir, "20-triggers.yaml", &triggers(receiver))?;

    if let Some(url) = rpc {
        // the Ethereum mainnet USDC example against a real endpoint
        write(
            &config_dir,
            "10-network.yaml",
            &format!(
                "apiVersion: chainwatch.io/v1alpha1\nkind: Network\nmetadata: {{name: ethereum-mainnet}}\nspec: {{type: evm, chainId: 1, rpc: [{{url: \"{url}\"}}], confirmations: 2, blockTime: 12s}}\n"
            ),
        )?;
        write(
            &config_dir,
            "30-monitor.yaml",
            &format!(
                r#"
apiVersion: chainwatch.io/v1alpha1
kind: Monitor
metadata: {{name: large-usdc-transfers, namespace: demo}}
spec:
  displayName: USDC transfers above 10,000 USDC
  networks: [ethereum-mainnet]
  addresses:
    - address: "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"
      contractSpec:{ERC20}
  matchConditions:
    events:
      - {{signature: "Transfer(address,address,uint256)", expression: "value > 10000000000"}}
  triggers: [large-transfer-webhook]
"#
            ),
        )?;
        println!(
            "demo: USDC transfers above 10,000 USDC on Ethereum mainnet via {url}; config in {}",
            config_dir.display()
        );
        return Ok(Demo { anvil: None, token: None, accounts: vec![], _dir: dir, config_dir, allow });
    }

    let bin = find_anvil(anvil)?;
    let anvil = Anvil::spawn(&bin, &["--block-time", "1"]).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let accounts = anvil.accounts().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let supply = U256::from(1_000_000_000u64) * U256::from(1_000_000u64);
    let token = anvil.deploy_token(accounts[0], supply).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let carol = accounts[3];
    write(
        &config_dir,
        "10-network.yaml",
        &format!(
            "apiVersion: chainwatch.io/v1alpha1\nkind: Network\nmetadata: {{name: devnet}}\nspec: {{type: evm, chainId: 31337, rpc: [{{url: \"{}\"}}], confirmations: 0, blockTime: 1s, pollInterval: 250ms, kafka: {{partitions: 1}}}}\n",
            anvil.url
        ),
    )?;
    write(
        &config_dir,
        "30-monitors.yaml",
        &format!(
            r#"
# Transfers of more than 10,000 DUSD (6 decimals): an event condition with an expression.
apiVersion: chainwatch.io/v1alpha1
kind: Monitor
metadata: {{name: large-dusd-transfers, namespace: demo}}
spec:
  displayName: DUSD transfer above 10,000
  networks: [devnet]
  addresses:
    - address: "{token}"
      contractSpec:{ERC20}
  matchConditions:
    events:
      - {{signature: "Transfer(address,address,uint256)", expression: "value > 10000000000"}}
  triggers: [large-transfer-webhook]
---
# Any transfer() call paying carol: a function condition comparing an address.
apiVersion: chainwatch.io/v1alpha1
kind: Monitor
metadata: {{name: payments-to-carol, namespace: demo}}
spec:
  displayName: DUSD paid to carol
  networks: [devnet]
  addresses:
    - address: "{token}"
      contractSpec:{ERC20}
  matchConditions:
    functions:
      - {{signature: "transfer(address,uint256)", expression: "to == {carol}"}}
    transactions:
      - status: Success
  triggers: [carol-webhook]
"#
        ),
    )?;
    println!("demo: anvil at {} with DUSD (ERC-20, 6 decimals) at {token}", anvil.url);
    println!("demo: monitors in {} — edit them while this runs, they reload", config_dir.display());
    Ok(Demo {
        anvil: Some(std::sync::Arc::new(anvil)),
        token: Some(token),
        accounts,
        _dir: dir,
        config_dir,
        allow,
    })
}

fn dusd(units: u64) -> String {
    format!("{}.{:06}", units / 1_000_000, units % 1_000_000)
}

impl Demo {
    /// Sends a transfer every 700 ms: mostly small, sometimes above the monitor's threshold,
    /// sometimes to carol.
    pub fn start_transfers(&self, stop: CancellationToken) {
        let (Some(anvil), Some(token)) = (self.anvil.clone(), self.token) else { return };
        let accounts = self.accounts.clone();
        tokio::spawn(async move {
            let amounts = [1_500u64, 250, 42_000, 9_999, 12_500, 3, 75_000, 800];
            for i in 0usize.. {
                let to = accounts[1 + i % 4];
                let units = amounts[i % amounts.len()] * 1_000_000 + (i as u64 % 1000);
                match anvil.transfer(token, accounts[0], to, U256::from(units)).await {
                    Ok(hash) => println!("sent {} DUSD to {to} (tx {hash})", dusd(units)),
                    Err(e) => println!("demo transfer failed: {e}"),
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(700)) => {}
                }
            }
        });
    }

    /// Stops the chain.
    pub async fn stop(self) {
        drop(self.anvil);
    }
}
