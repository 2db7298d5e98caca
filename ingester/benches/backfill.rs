//! Ingester benchmark against anvil and the broker:
//! 1. the raw RPC ceiling: a bare client issuing the ingester's requests (per block, one batch of
//!    `eth_getBlockByNumber(n, true)` + `eth_getBlockReceipts(n)`, 8 blocks in flight), JSON parsed;
//! 2. the ingester backfilling the same blocks (fetch, normalize, encode, publish to Kafka with
//!    acks=all, checkpoint) — and into the in-memory bus, to separate the broker's share;
//! 3. steady state: following a chain with 250 ms blocks for 20 s; the lag behind the head.
//!
//! `cargo bench -p chainwatch-ingester --bench backfill` (needs `scripts/testbed.sh up`).
//! `CHAINWATCH_BENCH_BLOCKS` (default 300) × `CHAINWATCH_BENCH_TXS` (default 50) transfers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy_primitives::{Address, U256};
use chainwatch_core::config::NetworkSettings;
use chainwatch_crds::ChainType;
use chainwatch_crds::network::Finality;
use chainwatch_devkit::devnet::Anvil;
use chainwatch_devkit::testbed::{anvil_bin, kafka_bootstrap, unique};
use chainwatch_ingester::checkpoint::FileCheckpoint;
use chainwatch_ingester::metrics::IngesterMetrics;
use chainwatch_ingester::rpc::Endpoint;
use chainwatch_ingester::rpc::RpcMetrics;
use chainwatch_ingester::status::IngestStatus;
use chainwatch_ingester::{Components, supervise};
use chainwatch_platform::bus::Producer;
use chainwatch_platform::bus::kafka::{KafkaArgs, TopicSpec};
use chainwatch_platform::bus::memory::MemoryBus;
use futures::StreamExt;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

async fn rpc(http: &reqwest::Client, url: &str, body: Value) -> Value {
    http.post(url).json(&body).send().await.unwrap().json().await.unwrap()
}

/// `blocks` blocks of `txs` token transfers each, sent as JSON-RPC batches.
async fn fill(anvil: &Anvil, token: Address, from: Address, to: Address, blocks: u64, txs: u64) {
    let http = reqwest::Client::new();
    anvil.set_automine(false).await.unwrap();
    for b in 0..blocks {
        let batch: Vec<Value> = (0..txs)
            .map(|i| {
                let data = format!("0xa9059cbb{:0>64}{:064x}", hex::encode(to.as_slice()), 1 + b * txs + i);
                json!({"jsonrpc": "2.0", "id": i, "method": "eth_sendTransaction", "params": [{"from": format!("{from:#x}"), "to": format!("{token:#x}"), "data": data, "gas": "0x186a0"}]})
            })
            .collect();
        rpc(&http, &anvil.url, Value::Array(batch)).await;
        anvil.mine(1).await.unwrap();
    }
    anvil.set_automine(true).await.unwrap();
}

/// The bare client: blocks/s for the same requests.
async fn ceiling(url: &str, first: u64, last: u64) -> f64 {
    let http = reqwest::Client::new();
    let started = Instant::now();
    let txs: usize = futures::stream::iter(first..=last)
        .map(|n| {
            let http = http.clone();
            async move {
                let body = json!([
                    {"jsonrpc": "2.0", "id": 1, "method": "eth_getBlockByNumber", "params": [format!("{n:#x}"), true]},
                    {"jsonrpc": "2.0", "id": 2, "method": "eth_getBlockReceipts", "params": [format!("{n:#x}")]}]);
                let v = rpc(&http, url, body).await;
                v[0]["result"]["transactions"].as_array().map_or(0, Vec::len)
            }
        })
        .buffered(8)
        .fold(0, |a, b| async move { a + b })
        .await;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "  raw RPC ceiling: {} blocks ({txs} txs) in {secs:.2} s = {:.0} blocks/s",
        last - first + 1,
        (last - first + 1) as f64 / secs
    );
    (last - first + 1) as f64 / secs
}

fn runtime(url: &str, start: u64, stop: Option<u64>, poll: Duration) -> NetworkSettings {
    NetworkSettings {
        chain: ChainType::Evm,
        endpoints: vec![Endpoint { url: url.into(), weight: 100, timeout: Duration::from_secs(10) }],
        confirmations: 0,
        finality: Finality::Latest,
        publish_seen: false,
        chain_id: None,
        network_passphrase: None,
        block_time: Duration::from_millis(250),
        poll_interval: poll,
        max_past_blocks: None,
        start: Some(start),
        stop_at: stop,
        partitions: 1,
        replication_factor: None,
        retention: None,
    }
}

/// Runs an ingester until it stops (bounded) or `stop` fires; returns its status channel.
async fn ingest(
    network: String,
    rt: NetworkSettings,
    producer: Arc<dyn Producer>,
    dir: &std::path::Path,
    stop: CancellationToken,
) -> (tokio::task::JoinHandle<()>, watch::Receiver<IngestStatus>) {
    let mut registry = Registry::default();
    let (status_tx, status_rx) = watch::channel(IngestStatus::default());
    let components = Components {
        producer,
        checkpoint: Arc::new(FileCheckpoint::new(dir, &network)),
        rpc_metrics: RpcMetrics::register(&mut registry),
        metrics: IngesterMetrics::register(&mut registry),
        status: status_tx,
        fetch_concurrency: None,
        max_in_flight: None,
        endpoint_recheck: None,
    };
    let (_config_tx, config_rx) = watch::channel(Some(Ok(rt)));
    let task = tokio::spawn(async move {
        let _keep = _config_tx;
        supervise(network, config_rx, components, stop).await.unwrap();
    });
    (task, status_rx)
}

async fn backfill(label: &str, url: &str, producer: Arc<dyn Producer>, first: u64, last: u64) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let network = unique("bench");
    if label == "Kafka" {
        KafkaArgs::new(kafka_bootstrap())
            .admin()
            .unwrap()
            .ensure_topic(&TopicSpec {
                name: chainwatch_platform::bus::blocks_topic(&network),
                partitions: 1,
                replication_factor: None,
                retention_ms: None,
                compact: false,
            })
            .await
            .unwrap();
    }
    let started = Instant::now();
    let stop = CancellationToken::new();
    let (task, mut status) = ingest(
        network.clone(),
        runtime(url, first, Some(last), Duration::from_millis(100)),
        producer,
        dir.path(),
        stop.clone(),
    )
    .await;
    loop {
        if status.borrow_and_update().last_published.is_some_and(|p| p >= last) {
            break;
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), status.changed()).await;
    }
    let secs = started.elapsed().as_secs_f64();
    stop.cancel();
    let _ = task.await;
    let rate = (last - first + 1) as f64 / secs;
    println!("  ingester → {label}: {} blocks in {secs:.2} s = {rate:.0} blocks/s", last - first + 1);
    rate
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let blocks = env("CHAINWATCH_BENCH_BLOCKS", 300);
    let txs = env("CHAINWATCH_BENCH_TXS", 50);
    let anvil = Anvil::spawn(&anvil_bin(), &["--gas-limit", "100000000"]).await.unwrap();
    let accounts = anvil.accounts().await.unwrap();
    let token = anvil.deploy_token(accounts[0], U256::from(10u64).pow(U256::from(30u64))).await.unwrap();
    let t = Instant::now();
    fill(&anvil, token, accounts[0], accounts[1], blocks, txs).await;
    let last = anvil.block_number().await.unwrap();
    let first = last - blocks + 1;
    println!(
        "backfill of {blocks} blocks × {txs} ERC-20 transfers (filled in {:.1} s), anvil on loopback, 2 cores:",
        t.elapsed().as_secs_f64()
    );
    // warm both paths once, then measure
    ceiling(&anvil.url, first, first + 20).await;
    let raw = ceiling(&anvil.url, first, last).await;
    let memory = backfill("memory bus", &anvil.url, Arc::new(MemoryBus::new()), first, last).await;
    let kafka = backfill(
        "Kafka",
        &anvil.url,
        Arc::new(KafkaArgs::new(kafka_bootstrap()).producer().unwrap()),
        first,
        last,
    )
    .await;
    println!(
        "  ingester / ceiling: {:.0} % (into Kafka), {:.0} % (in memory)",
        100.0 * kafka / raw,
        100.0 * memory / raw
    );

    // steady state: 250 ms blocks with 20 transfers each, for 20 s
    let steady = Anvil::spawn(&anvil_bin(), &["--block-time", "0.25"]).await.unwrap();
    let acc = steady.accounts().await.unwrap();
    let token = steady.deploy_token(acc[0], U256::from(10u64).pow(U256::from(30u64))).await.unwrap();
    let head = steady.block_number().await.unwrap();
    let stop = CancellationToken::new();
    let sender = tokio::spawn({
        let (url, stop) = (steady.url.clone(), stop.clone());
        let (from, to) = (acc[0], acc[1]);
        async move {
            let http = reqwest::Client::new();
            let mut i = 0u64;
            while !stop.is_cancelled() {
                let batch: Vec<Value> = (0..20u64)
                    .map(|k| json!({"jsonrpc": "2.0", "id": k, "method": "eth_sendTransaction", "params": [{"from": format!("{from:#x}"), "to": format!("{token:#x}"), "data": format!("0xa9059cbb{:0>64}{:064x}", hex::encode(to.as_slice()), 1 + i * 20 + k)}]}))
                    .collect();
                let _ = http.post(&url).json(&Value::Array(batch)).send().await;
                i += 1;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let network = unique("steady");
    KafkaArgs::new(kafka_bootstrap())
        .admin()
        .unwrap()
        .ensure_topic(&TopicSpec {
            name: chainwatch_platform::bus::blocks_topic(&network),
            partitions: 1,
            replication_factor: None,
            retention_ms: None,
            compact: false,
        })
        .await
        .unwrap();
    let ingest_stop = CancellationToken::new();
    let (task, status) = ingest(
        network.clone(),
        runtime(&steady.url, head, None, Duration::from_millis(100)),
        Arc::new(KafkaArgs::new(kafka_bootstrap()).producer().unwrap()),
        dir.path(),
        ingest_stop.clone(),
    )
    .await;
    let http = reqwest::Client::new();
    let mut lags = Vec::new();
    let started = Instant::now();
    let first_head = head;
    while started.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let chain_head = u64::from_str_radix(
            rpc(
                &http,
                &steady.url,
                json!({"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []}),
            )
            .await["result"]
                .as_str()
                .unwrap()
                .trim_start_matches("0x"),
            16,
        )
        .unwrap();
        let published = status.borrow().last_published.unwrap_or(first_head);
        lags.push(chain_head.saturating_sub(published));
    }
    stop.cancel();
    let _ = sender.await;
    let published = status.borrow().last_published.unwrap_or(first_head);
    ingest_stop.cancel();
    let _ = task.await;
    lags.sort_unstable();
    println!(
        "steady state, 250 ms blocks × 20 transfers for 20 s: {} blocks published; lag behind the head p50 {} p99 {} max {} blocks",
        published - first_head,
        lags[lags.len() / 2],
        lags[(lags.len() - 1) * 99 / 100],
        lags.last().unwrap()
    );
}
