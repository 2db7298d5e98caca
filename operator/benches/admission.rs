//! Operator benchmark against kube-testenv: time to admit 1,000 Monitors from a cold start (the
//! Monitors exist before the operator starts), then to re-admit them all after a spec change, with
//! the reconciles per second the Monitor controller did meanwhile.
//!
//! `cargo bench -p chainwatch-operator --bench admission` (needs `scripts/testbed.sh up`).
//! `CHAINWATCH_BENCH_MONITORS` changes the count.

#[path = "../tests/it/harness.rs"]
#[allow(dead_code)]
mod harness;

use std::time::{Duration, Instant};

use chainwatch_crds::Monitor;
use futures::StreamExt;
use kube::Client;
use kube::api::{Api, ListParams};
use serde_json::json;

fn monitor(ns: &str, i: usize, threshold: u64) -> serde_json::Value {
    json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Monitor", "metadata": {"name": format!("m-{i:05}"), "namespace": ns}, "spec": {
        "networks": ["bench-eth"],
        "addresses": [{"address": format!("0x{:040x}", i + 1), "contractSpec": [
            {"type": "event", "name": "Transfer", "anonymous": false, "inputs": [
                {"indexed": true, "name": "from", "type": "address"}, {"indexed": true, "name": "to", "type": "address"},
                {"indexed": false, "name": "value", "type": "uint256"}]}]}],
        "matchConditions": {"events": [{"signature": "Transfer(address,address,uint256)", "expression": format!("value > {threshold} AND to != 0x0000000000000000000000000000000000000000")}]},
        "triggers": ["hook"],
    }})
}

async fn apply_all(client: &Client, ns: &str, n: usize, threshold: u64) -> Duration {
    let started = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let client = client.clone();
            let m = monitor(ns, i, threshold);
            async move { harness::apply_value(&client, &m).await.expect("apply monitor") }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    started.elapsed()
}

/// Waits until every monitor is Ready=True at its current generation.
async fn all_admitted(client: &Client, ns: &str, n: usize) -> Duration {
    let api: Api<Monitor> = Api::namespaced(client.clone(), ns);
    let started = Instant::now();
    loop {
        let list = api.list(&ListParams::default()).await.unwrap();
        let admitted = list
            .items
            .iter()
            .filter(|m| {
                let s = m.status.as_ref();
                s.is_some_and(|s| s.observed_generation == m.metadata.generation)
                    && harness::condition(*m, "Ready").is_some_and(|c| c.0 == "True")
            })
            .count();
        if admitted == n {
            return started.elapsed();
        }
        if started.elapsed() > Duration::from_secs(600) {
            panic!("only {admitted}/{n} admitted after 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks benches to list their tests
    }
    let n: usize =
        std::env::var("CHAINWATCH_BENCH_MONITORS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let client = harness::client().await;
    harness::install_crds(&client).await;
    harness::reset(&client).await;
    let op_ns = chainwatch_devkit::testbed::unique("cw-bench");
    let ns = "bench-tenant";
    harness::namespace(&client, &op_ns).await;
    harness::namespace(&client, ns).await;
    for v in [
        json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Tenant", "metadata": {"name": "bench"}, "spec": {"namespaces": [ns], "limits": {"maxMonitors": n + 10}}}),
        json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Network", "metadata": {"name": "bench-eth"}, "spec": {"type": "evm", "rpc": [{"url": "http://127.0.0.1:1"}]}}),
        json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Trigger", "metadata": {"name": "hook", "namespace": ns}, "spec": {"webhook": {"url": "https://hooks.example/x"}, "message": {"title": "t", "body": "b"}}}),
    ] {
        harness::apply_value(&client, &v).await.unwrap();
    }
    let created = apply_all(&client, ns, n, 1_000_000).await;
    println!("created {n} monitors in {:.1} s (API server, 16 in flight)", created.as_secs_f64());

    let op = harness::Operator::start(&op_ns, "bench", &["--no-kafka"]).await;
    let cold = all_admitted(&client, ns, n).await;
    let reconciles = op.metric("chainwatch_operator_reconciles_total{controller=\"monitor\"}").await;
    println!(
        "cold start: {n} monitors admitted in {:.2} s ({:.0} monitors/s); {reconciles} monitor reconciles ({:.0}/s)",
        cold.as_secs_f64(),
        n as f64 / cold.as_secs_f64(),
        reconciles / cold.as_secs_f64()
    );

    let started = Instant::now();
    apply_all(&client, ns, n, 2_000_000).await;
    let changed = all_admitted(&client, ns, n).await.max(started.elapsed());
    let after = op.metric("chainwatch_operator_reconciles_total{controller=\"monitor\"}").await;
    println!(
        "spec change of all {n}: re-admitted {:.2} s after the first apply; {} reconciles ({:.0}/s)",
        changed.as_secs_f64(),
        after - reconciles,
        (after - reconciles) / changed.as_secs_f64()
    );
    let p = op.metrics().await;
    for l in p.lines().filter(|l| {
        l.starts_with("chainwatch_operator_reconcile_duration_seconds_sum{controller=\"monitor\"}")
            || l.starts_with("chainwatch_operator_reconcile_duration_seconds_count{controller=\"monitor\"}")
    }) {
        println!("{l}");
    }
    op.stop().await;
    harness::reset(&client).await;
}
