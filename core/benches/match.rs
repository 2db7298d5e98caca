//! `cargo bench -p chainwatch-core --bench match` (or `just bench-match`): the matching engine on
//! real blocks, single-threaded.
//!
//! (a) OpenZeppelin Monitor's own USDC fixture monitor over its five fixture EVM blocks;
//! (b) 1,000 and 10,000 distinct monitors (random watched addresses, ten of them on the block's
//!     real USDT/USDC/WETH contracts) on Ethereum mainnet block 18,000,000 with its 94 receipts;
//! (c) expression evaluation alone;
//! plus compile time and peak memory (VmHWM) with 10,000 compiled monitors.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy_dyn_abi::DynSolValue;
use alloy_primitives::U256;
use chainwatch_core::block::{Block, EvmBlock};
use chainwatch_core::evm::ParamShape;
use chainwatch_core::evm::compare::{Arg, compile as compile_expr};
use chainwatch_core::expr::parse;
use chainwatch_core::monitor::{AbiCache, CompiledMonitor, MonitorKey, MonitorSource, NetworkIndex, compile};
use chainwatch_crds::{ChainType, MonitorSpec};
use chainwatch_upstream::monitor_from_upstream;
use serde_json::{Value, json};

fn fixtures() -> PathBuf {
    std::env::var("CHAINWATCH_FIXTURES").map(PathBuf::from).unwrap_or_else(|_| {
        PathBuf::from(
            std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into()),
        )
        .join("../../shared/fixtures")
    })
}

fn read(rel: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join(rel)).unwrap()).unwrap()
}

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn vm_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

struct Stats {
    mean: Duration,
    p50: Duration,
    p99: Duration,
}

/// Runs `f` for at least `min` time (and 20 iterations), returns per-iteration statistics.
fn measure(min: Duration, mut f: impl FnMut()) -> Stats {
    for _ in 0..3 {
        f();
    }
    let mut samples = Vec::new();
    let start = Instant::now();
    while start.elapsed() < min || samples.len() < 20 {
        let t = Instant::now();
        f();
        samples.push(t.elapsed());
    }
    samples.sort();
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    Stats {
        mean,
        p50: samples[samples.len() / 2],
        p99: samples[(samples.len() * 99 / 100).min(samples.len() - 1)],
    }
}

fn show(name: &str, s: &Stats, per: &str) {
    println!(
        "{name:<58} mean {:>10.3} ms  p50 {:>10.3} ms  p99 {:>10.3} ms  {per}",
        s.mean.as_secs_f64() * 1e3,
        s.p50.as_secs_f64() * 1e3,
        s.p99.as_secs_f64() * 1e3
    );
}

fn compile_one(name: &str, spec: &MonitorSpec, abis: &AbiCache) -> Arc<CompiledMonitor> {
    let no_config_maps = |r: &chainwatch_crds::ConfigMapKeyRef| Err(format!("no ConfigMap {}", r.name));
    let source = MonitorSource {
        key: MonitorKey::new("bench", name),
        generation: Some(1),
        spec,
        config_maps: &no_config_maps,
    };
    Arc::new(compile(&source, ChainType::Evm, abis).expect("bench monitors compile"))
}

/// A small deterministic generator (xorshift) so runs are comparable.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn erc20_abi() -> Value {
    json!([
        {"type": "event", "name": "Transfer", "anonymous": false, "inputs": [
            {"indexed": true, "name": "from", "type": "address"}, {"indexed": true, "name": "to", "type": "address"},
            {"indexed": false, "name": "value", "type": "uint256"}]},
        {"type": "event", "name": "Approval", "anonymous": false, "inputs": [
            {"indexed": true, "name": "owner", "type": "address"}, {"indexed": true, "name": "spender", "type": "address"},
            {"indexed": false, "name": "value", "type": "uint256"}]},
        {"type": "function", "name": "transfer", "stateMutability": "nonpayable", "inputs": [
            {"name": "to", "type": "address"}, {"name": "value", "type": "uint256"}], "outputs": [{"name": "", "type": "bool"}]},
        {"type": "function", "name": "transferFrom", "stateMutability": "nonpayable", "inputs": [
            {"name": "from", "type": "address"}, {"name": "to", "type": "address"}, {"name": "value", "type": "uint256"}], "outputs": [{"name": "", "type": "bool"}]},
        {"type": "function", "name": "approve", "stateMutability": "nonpayable", "inputs": [
            {"name": "spender", "type": "address"}, {"name": "value", "type": "uint256"}], "outputs": [{"name": "", "type": "bool"}]}
    ])
}

/// `n` distinct monitors: `real` of them on contracts active in block 18,000,000, the rest on
/// random addresses. All carry an ERC-20 ABI, an event, a function and a transaction condition.
fn monitors(n: usize, real: usize, abis: &AbiCache) -> Vec<Arc<CompiledMonitor>> {
    const ACTIVE: [&str; 3] = [
        "0xdac17f958d2ee523a2206206994597c13d831ec7",
        "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48",
        "0xc02aaa39b223fe8d0a0e5c4f27ead9083c756cc2",
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let abi = erc20_abi();
    (0..n)
        .map(|i| {
            let address = if i < real { ACTIVE[i % ACTIVE.len()].to_string() } else { format!("0x{:016x}{:016x}{:08x}", rng.next(), rng.next(), rng.next() as u32) };
            let threshold = 1_000_000 + (rng.next() % 1_000_000_000);
            let spec: MonitorSpec = serde_json::from_value(json!({
                "networks": ["ethereum-mainnet"],
                "addresses": [{"address": address, "contractSpec": abi}],
                "matchConditions": {
                    "functions": [{"signature": "transfer(address,uint256)", "expression": format!("value > {threshold}")}],
                    "events": [{"signature": "Transfer(address,address,uint256)", "expression": format!("value > {threshold} AND to != 0x0000000000000000000000000000000000000000")}],
                    "transactions": [{"status": "Success", "expression": "gas_used > 21000"}]
                },
                "triggers": ["t"]
            }))
            .unwrap();
            compile_one(&format!("m{i:05}"), &spec, abis)
        })
        .collect()
}

fn main() {
    let min =
        Duration::from_millis(std::env::var("BENCH_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(2000));
    println!(
        "chainwatch matching benchmark (single thread, {} build)",
        if cfg!(debug_assertions) { "debug" } else { "optimized" }
    );

    // (a) upstream's USDC fixture monitor on upstream's five fixture blocks
    let receipts: Vec<Value> = read("oz-monitor/evm/transaction_receipts.json").as_array().unwrap().clone();
    let blocks: Vec<Block> = read("oz-monitor/evm/blocks.json")
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            let b = &b["EVM"];
            let mine: Vec<Value> =
                receipts.iter().filter(|r| r["blockNumber"] == b["number"]).cloned().collect();
            Block::Evm(EvmBlock::from_rpc_partial(b, &mine).unwrap())
        })
        .collect();
    let abis = AbiCache::default();
    let usdc = monitor_from_upstream(&read("oz-monitor/evm/monitors/monitor.json")).unwrap().spec;
    let index = NetworkIndex::build("ethereum_mainnet", [compile_one("usdc", &usdc, &abis)]);
    let txs: usize = blocks.iter().map(Block::transaction_count).sum();
    let s = measure(min, || {
        for b in &blocks {
            black_box(index.match_block(b));
        }
    });
    let per_block = Stats { mean: s.mean / 5, p50: s.p50 / 5, p99: s.p99 / 5 };
    show(
        "(a) upstream USDC monitor, 5 upstream blocks, per block",
        &per_block,
        &format!("({txs} txs in 5 blocks)"),
    );

    // (b) many monitors on mainnet block 18,000,000
    let block = {
        let b = &read("ethereum-mainnet-rpc/eth_getBlockByNumber/test_08.json")[0]["response"]["result"];
        let r =
            read("ethereum-mainnet-rpc/eth_getBlockReceipts/test_02.json")[0]["response"]["result"].clone();
        Block::Evm(EvmBlock::from_rpc(b, r.as_array().unwrap()).unwrap())
    };
    for n in [1_000, 10_000] {
        let rss_before = vm_rss_kib();
        let t = Instant::now();
        let list = monitors(n, 10, &abis);
        let compile_time = t.elapsed();
        let t = Instant::now();
        let index = NetworkIndex::build("ethereum-mainnet", list);
        let index_time = t.elapsed();
        let rss_after = vm_rss_kib();
        let (matches, stats) = index.match_block(&block);
        let s = measure(min, || {
            black_box(index.match_block(&block));
        });
        show(
            &format!("(b) {n} monitors, block 18,000,000 (94 txs, 291 logs)"),
            &s,
            &format!("{} matches, {} evaluations", matches.len(), stats.evaluations),
        );
        println!(
            "    compile {n} monitors {:.1} ms ({:.1} µs each), index {:.2} ms, RSS +{:.1} MiB",
            compile_time.as_secs_f64() * 1e3,
            compile_time.as_secs_f64() * 1e6 / n as f64,
            index_time.as_secs_f64() * 1e3,
            (rss_after.saturating_sub(rss_before)) as f64 / 1024.0
        );
    }
    println!(
        "    peak memory of the process (VmHWM) with 10,000 compiled monitors: {:.1} MiB",
        vm_hwm_kib() as f64 / 1024.0
    );

    // (c) expression evaluation alone
    let shapes = [
        ParamShape::scalar("from", "address"),
        ParamShape::scalar("to", "address"),
        ParamShape::scalar("value", "uint256"),
    ];
    let values = [
        DynSolValue::Address("0x58b704065b7aff3ed351052f8560019e05925023".parse().unwrap()),
        DynSolValue::Address("0xf423d9c1ffeb6386639d024f3b241dab2331b635".parse().unwrap()),
        DynSolValue::Uint(U256::from(8_181_710_000u64), 256),
    ];
    let args: Vec<Option<Arg<'_>>> =
        shapes.iter().zip(&values).map(|(shape, value)| Some(Arg { shape, value })).collect();
    for src in [
        "value > 8000000000",
        "to == 0xf423d9c1ffeb6386639d024f3b241dab2331b635 AND from == 0x58b704065b7aff3ed351052f8560019e05925023 AND value > 8000000000",
    ] {
        let compiled = compile_expr(src, &parse(src).unwrap(), &shapes).unwrap();
        const N: u32 = 100_000;
        let s = measure(min / 2, || {
            for _ in 0..N {
                black_box(compiled.evaluate(&mut |leaf| leaf.eval(black_box(&args)))).unwrap();
            }
        });
        let ns = s.mean.as_secs_f64() * 1e9 / f64::from(N);
        println!(
            "(c) evaluate `{}{}`: {ns:.1} ns per evaluation",
            &src[..src.len().min(60)],
            if src.len() > 60 { "…" } else { "" }
        );
    }
    let s = measure(min / 2, || {
        for _ in 0..10_000 {
            black_box(
                parse(black_box("to == 0xf423d9c1ffeb6386639d024f3b241dab2331b635 AND value > 8000000000"))
                    .unwrap(),
            );
        }
    });
    println!(
        "    parse (for comparison; done once per monitor generation): {:.2} µs",
        s.mean.as_secs_f64() * 1e6 / 10_000.0
    );
}
