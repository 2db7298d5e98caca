//! `cargo bench -p chainwatch-worker --bench fairness` (or `just bench-fairness`; needs the test
//! bed's broker): does one tenant's slow receiver hold back another tenant's notifications?
//!
//! The notify stage over the real Kafka-protocol broker, two tenants, local webhook receivers.
//! Tenant B gets 100 notifications, 10 per second; its latency is match produced → request at
//! B's receiver. Three runs:
//!   1. B alone;
//!   2. tenant A's receiver takes 10 s per request and A has a backlog of 2,000 notifications,
//!      with each tenant in its own lane (the notify stage as it is);
//!   3. the same, with one shared limit for everyone (one lane as wide as the stage: what the
//!      notify stage did before lanes).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chainwatch_core::MonitorMatch;
use chainwatch_core::block::{Block, EvmBlock};
use chainwatch_core::config::ObjectSet;
use chainwatch_devkit::receivers::HttpReceiver;
use chainwatch_devkit::testbed::{kafka_bootstrap, unique};
use chainwatch_platform::bus::kafka::{KafkaArgs, TopicSpec};
use chainwatch_platform::bus::{Consumer, DEFERRED_TOPIC, Producer};
use chainwatch_platform::codec::{MatchRecord, now_ms};
use chainwatch_worker::config::{Admission, ConfigStore};
use chainwatch_worker::metrics::WorkerMetrics;
use chainwatch_worker::notify::destination::DestinationPolicy;
use chainwatch_worker::notify::lanes::Fairness;
use chainwatch_worker::stages::{StageSettings, Stages};
use chainwatch_worker::status::NoStatus;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

fn fixtures() -> std::path::PathBuf {
    std::env::var("CHAINWATCH_FIXTURES").map(std::path::PathBuf::from).unwrap_or_else(|_| {
        std::path::PathBuf::from(
            std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into()),
        )
        .join("../../shared/fixtures")
    })
}

fn rpc_result(rel: &str) -> Value {
    let v: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("ethereum-mainnet-rpc").join(rel)).unwrap(),
    )
    .unwrap();
    v[0]["response"]["result"].clone()
}

fn obj<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap()
}

/// A real match of mainnet block 18,000,000 (a large USDT transfer), to be relabelled.
fn a_match() -> MonitorMatch {
    let r = rpc_result("eth_getBlockReceipts/test_02.json");
    let block = Block::Evm(
        EvmBlock::from_rpc(&rpc_result("eth_getBlockByNumber/test_08.json"), r.as_array().unwrap()).unwrap(),
    );
    let mut set = ObjectSet::default();
    set.insert_network(obj(json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Network", "metadata": {"name": "eth"}, "spec": {"type": "evm", "rpc": [{"url": "https://x"}]}})));
    let m: chainwatch_crds::Monitor = obj(
        json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Monitor", "metadata": {"name": "m", "namespace": "a"},
        "spec": {"networks": ["eth"], "addresses": [{"address": "0xdac17f958d2ee523a2206206994597c13d831ec7", "contractSpec": [
            {"type": "event", "name": "Transfer", "anonymous": false, "inputs": [
                {"indexed": true, "name": "from", "type": "address"}, {"indexed": true, "name": "to", "type": "address"},
                {"indexed": false, "name": "value", "type": "uint256"}]}]}],
        "matchConditions": {"events": [{"signature": "Transfer(address,address,uint256)", "expression": "value > 1000000000"}]}}}),
    );
    set.insert_monitor(m.clone());
    let compiled =
        chainwatch_core::config::compile_monitor(&m, &set, &chainwatch_core::monitor::AbiCache::default());
    let index = chainwatch_core::monitor::NetworkIndex::build("eth", compiled.compiled);
    index.match_block(&block).0.remove(0)
}

/// The configuration: tenants `a` and `b` (namespaces of the same name), a webhook each.
fn config(a: &HttpReceiver, b: &HttpReceiver) -> ConfigStore {
    let store = ConfigStore::new(Admission::Local);
    let mut set = ObjectSet::default();
    for (t, r) in [("a", a), ("b", b)] {
        set.insert_tenant(obj(json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Tenant", "metadata": {"name": t}, "spec": {"namespaces": [t]}})));
        set.insert_trigger(obj(json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Trigger", "metadata": {"name": "hook", "namespace": t},
            "spec": {"webhook": {"url": r.url(&format!("/{t}"))}, "message": {"title": "t", "body": "${transaction.hash}"},
                "retryPolicy": {"maxRetries": 0}}})));
    }
    store.replace_all(set);
    store.rebuild_now();
    store
}

fn record(template: &MonitorMatch, tenant: &str, n: usize) -> MatchRecord {
    let mut m = template.clone();
    Arc::make_mut(&mut m.monitor).key = chainwatch_core::monitor::MonitorKey::new(tenant, "m");
    Arc::make_mut(&mut m.monitor).triggers = vec!["hook".into()];
    m.block.hash = format!("{tenant}-{n}-{}", unique("run")); // its own idempotency key
    MatchRecord { matched: m, block_published_at_ms: now_ms(), produced_at_ms: now_ms() }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn run(name: &str, template: &MonitorMatch, slow_backlog: usize, fairness: Fairness) {
    let (a, b) = (HttpReceiver::start().await, HttpReceiver::start().await);
    a.answer_after(Duration::from_secs(10));
    let store = config(&a, &b);
    let kafka = KafkaArgs::new(kafka_bootstrap());
    let topic = unique("bench-matches");
    let admin = kafka.admin().unwrap();
    for t in [&topic, &DEFERRED_TOPIC.to_string()] {
        admin
            .ensure_topic(&TopicSpec {
                name: t.clone(),
                partitions: 12,
                replication_factor: None,
                retention_ms: None,
                compact: false,
            })
            .await
            .unwrap();
    }
    let producer: Arc<dyn Producer> = Arc::new(kafka.producer().unwrap());
    let mut registry = prometheus_client::registry::Registry::default();
    let settings = StageSettings {
        notify_concurrency: 32,
        fairness,
        destinations: DestinationPolicy { allow: vec!["127.0.0.1".parse().unwrap()] },
        ..StageSettings::default()
    };
    let stages = Stages::new(
        settings,
        producer.clone(),
        store,
        WorkerMetrics::register(&mut registry),
        Arc::new(NoStatus),
    );
    let consumer: Arc<dyn Consumer> =
        Arc::new(kafka.consumer(&unique("bench-notify"), &[&topic, DEFERRED_TOPIC]).unwrap());
    let stop = CancellationToken::new();
    let stage = tokio::spawn(stages.notify(consumer).run(stop.clone()));
    // A's backlog first
    for i in 0..slow_backlog {
        producer.send(&topic, "a", record(template, "a", i).encode()).await.unwrap();
    }
    // then B, 10 per second
    let mut sent = Vec::new();
    for i in 0..100 {
        sent.push(Instant::now());
        producer.send(&topic, "b", record(template, "b", i).encode()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = b.wait_for(100, Duration::from_secs(300)).await;
    // latency: the nth request B received against the nth record sent (B's records are sent in order)
    let mut lat: Vec<Duration> =
        got.iter().zip(&sent).map(|(r, s)| r.at.saturating_duration_since(*s)).collect();
    lat.sort();
    if lat.is_empty() {
        println!("{name:<58} B received nothing in 300 s");
    } else {
        println!(
            "{name:<58} B: {} of 100   p50 {:>8.1} ms   p99 {:>8.1} ms   max {:>8.1} ms   (A delivered {})",
            got.len(),
            percentile(&lat, 0.5).as_secs_f64() * 1e3,
            percentile(&lat, 0.99).as_secs_f64() * 1e3,
            lat.last().unwrap().as_secs_f64() * 1e3,
            a.received().len()
        );
    }
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(15), stage).await;
    let _ = admin.delete_topic(&topic).await;
}

#[tokio::main]
async fn main() {
    let template = a_match();
    let lanes = Fairness::default();
    run("B alone", &template, 0, lanes).await;
    run("A at 10 s per request, 2,000 behind; lanes (now)", &template, 2000, lanes).await;
    run(
        "A at 10 s per request, 2,000 behind; one shared limit (before)",
        &template,
        2000,
        Fairness { per_tenant: 32, queued: 1_000_000 },
    )
    .await;
}
