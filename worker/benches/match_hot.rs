//! `cargo bench -p chainwatch-worker --bench match_hot` (or `just bench-match-hot`): the filter
//! stage's work per block when every monitor watches a contract the block really uses — the hard
//! case of a platform (the `core` bench `match` keeps the cold case: monitors on contracts the
//! block never touches).
//!
//! Monitors: 1,000 tenants; each monitor on one of the contracts Ethereum mainnet block
//! 18,000,000 uses most (by logs, then by calls: USDT, USDC, WETH, Uniswap V2 pairs and routers),
//! one of eight shapes (Transfer with a threshold, Transfer to/from, `transfer()` with a threshold,
//! upstream's USDC function+event+transaction monitor, Approval, Swap, Sync, a transaction
//! condition), each with its own threshold. Blocks: 18,000,000 itself (94 transactions, 291
//! logs) and a synthetic 2,000-transaction block made of its transactions repeated. Reports per
//! block p50/p99 of matching, of encoding the matches as the filter stage does
//! (`MatchRecord::encode`), evaluations, matches, bytes of match records, and RSS per compiled
//! monitor. `BENCH_SIZES=1000,10000` picks the sizes (default 1,000, 10,000, 100,000),
//! `BENCH_MS` the minimum time per measurement.

use std::collections::HashMap;
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chainwatch_core::block::{Block, EvmBlock};
use chainwatch_core::monitor::{AbiCache, CompiledMonitor, MonitorKey, MonitorSource, NetworkIndex, compile};
use chainwatch_crds::{ChainType, MonitorSpec};
use chainwatch_platform::codec::MatchRecord;
use serde_json::{Value, json};

fn fixtures() -> PathBuf {
    std::env::var("CHAINWATCH_FIXTURES").map(PathBuf::from).unwrap_or_else(|_| {
        PathBuf::from(
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

fn vm_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// p50 and p99 of `f` over at least `min` and `at_least` runs (after one warm-up run).
fn measure(min: Duration, at_least: usize, mut f: impl FnMut()) -> (Duration, Duration, usize) {
    f();
    let mut samples = Vec::new();
    let start = Instant::now();
    while start.elapsed() < min || samples.len() < at_least {
        let t = Instant::now();
        f();
        samples.push(t.elapsed());
    }
    samples.sort();
    let p = |q: usize| samples[(samples.len() * q / 100).min(samples.len() - 1)];
    (p(50), p(99), samples.len())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The ABI every monitor carries: ERC-20, Uniswap V2 pair events, two router functions.
fn abi() -> Value {
    let p = |name: &str, ty: &str| json!({"name": name, "type": ty});
    let ip = |name: &str, ty: &str, indexed: bool| json!({"name": name, "type": ty, "indexed": indexed});
    json!([
        {"type": "event", "name": "Transfer", "anonymous": false, "inputs": [ip("from", "address", true), ip("to", "address", true), ip("value", "uint256", false)]},
        {"type": "event", "name": "Approval", "anonymous": false, "inputs": [ip("owner", "address", true), ip("spender", "address", true), ip("value", "uint256", false)]},
        {"type": "event", "name": "Swap", "anonymous": false, "inputs": [ip("sender", "address", true), ip("amount0In", "uint256", false), ip("amount1In", "uint256", false), ip("amount0Out", "uint256", false), ip("amount1Out", "uint256", false), ip("to", "address", true)]},
        {"type": "event", "name": "Sync", "anonymous": false, "inputs": [ip("reserve0", "uint112", false), ip("reserve1", "uint112", false)]},
        {"type": "function", "name": "transfer", "stateMutability": "nonpayable", "inputs": [p("to", "address"), p("value", "uint256")], "outputs": [p("", "bool")]},
        {"type": "function", "name": "transferFrom", "stateMutability": "nonpayable", "inputs": [p("from", "address"), p("to", "address"), p("value", "uint256")], "outputs": [p("", "bool")]},
        {"type": "function", "name": "approve", "stateMutability": "nonpayable", "inputs": [p("spender", "address"), p("value", "uint256")], "outputs": [p("", "bool")]},
        {"type": "function", "name": "swapExactETHForTokens", "stateMutability": "payable", "inputs": [p("amountOutMin", "uint256"), p("path", "address[]"), p("to", "address"), p("deadline", "uint256")], "outputs": [p("amounts", "uint256[]")]},
        {"type": "function", "name": "swapExactTokensForETH", "stateMutability": "nonpayable", "inputs": [p("amountIn", "uint256"), p("amountOutMin", "uint256"), p("path", "address[]"), p("to", "address"), p("deadline", "uint256")], "outputs": [p("amounts", "uint256[]")]}
    ])
}

/// The contracts of the block, most logs first, then most calls.
fn hot_contracts(block: &Value, receipts: &[Value], n: usize) -> Vec<String> {
    let mut score: HashMap<String, (usize, usize)> = HashMap::new();
    for r in receipts {
        for l in r["logs"].as_array().into_iter().flatten() {
            score.entry(l["address"].as_str().unwrap().to_lowercase()).or_default().0 += 1;
        }
    }
    for tx in block["transactions"].as_array().into_iter().flatten() {
        if let Some(to) = tx["to"].as_str() {
            score.entry(to.to_lowercase()).or_default().1 += 1;
        }
    }
    let mut all: Vec<(String, (usize, usize))> = score.into_iter().collect();
    all.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    all.into_iter().take(n).map(|(a, _)| a).collect()
}

/// A small deterministic generator (xorshift) so runs compare.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// A threshold spread over 10^3 … 10^21, so that some of every shape hold.
    fn threshold(&mut self) -> String {
        let digits = 3 + self.next() % 19;
        format!("{}{}", 1 + self.next() % 9, "0".repeat(digits as usize))
    }
}

fn conditions(shape: u64, rng: &mut Rng) -> Value {
    let t = rng.threshold();
    let ev = |sig: &str, expr: String| json!({"events": [{"signature": sig, "expression": expr}]});
    match shape {
        0 => ev("Transfer(address,address,uint256)", format!("value > {t}")),
        1 => ev(
            "Transfer(address,address,uint256)",
            format!("value > {t} AND to != 0x0000000000000000000000000000000000000000"),
        ),
        2 => {
            json!({"functions": [{"signature": "transfer(address,uint256)", "expression": format!("value > {t}")}]})
        }
        3 => json!({
            "functions": [{"signature": "transfer(address,uint256)", "expression": format!("value > {t}")}],
            "events": [{"signature": "Transfer(address,address,uint256)", "expression": format!("value > {t}")}],
            "transactions": [{"status": "Success", "expression": "value >= 0"}]}),
        4 => ev("Approval(address,address,uint256)", format!("value > {t}")),
        5 => ev(
            "Swap(address,uint256,uint256,uint256,uint256,address)",
            format!("amount0In > {t} OR amount1In > {t}"),
        ),
        6 => ev("Sync(uint112,uint112)", format!("reserve0 > {t}")),
        _ => {
            json!({"transactions": [{"status": "Success", "expression": format!("gas_used > {}", 21_000 + rng.next() % 200_000)}]})
        }
    }
}

fn monitors(n: usize, hot: &[String], abis: &AbiCache) -> Vec<Arc<CompiledMonitor>> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let abi = abi();
    let no_config_maps = |r: &chainwatch_crds::ConfigMapKeyRef| Err(format!("no ConfigMap {}", r.name));
    (0..n)
        .map(|i| {
            let spec: MonitorSpec = serde_json::from_value(json!({
                "networks": ["ethereum-mainnet"],
                "addresses": [{"address": hot[i % hot.len()], "contractSpec": abi}],
                "matchConditions": conditions((i / hot.len()) as u64 % 8, &mut rng),
                "triggers": ["t"],
            }))
            .unwrap();
            let key = MonitorKey::new(format!("tenant-{:04}", i % 1000), format!("m{i:06}"));
            let source =
                MonitorSource { key, generation: Some(1), spec: &spec, config_maps: &no_config_maps };
            Arc::new(compile(&source, ChainType::Evm, abis).expect("bench monitors compile"))
        })
        .collect()
}

/// Block 18,000,000's transactions repeated until there are `n` (new hashes and indexes).
fn synthetic(block: &Value, receipts: &[Value], n: usize) -> Block {
    let txs = block["transactions"].as_array().unwrap();
    let mut b = block.clone();
    let mut out_txs = Vec::new();
    let mut out_receipts = Vec::new();
    let mut log_index = 0u64;
    for i in 0..n {
        let (tx, r) = (&txs[i % txs.len()], &receipts[i % receipts.len()]);
        let hash = format!("0x{i:064x}");
        let mut tx = tx.clone();
        tx["hash"] = json!(hash);
        tx["transactionIndex"] = json!(format!("{i:#x}"));
        let mut r = r.clone();
        r["transactionHash"] = json!(hash);
        r["transactionIndex"] = json!(format!("{i:#x}"));
        for l in r["logs"].as_array_mut().unwrap() {
            l["transactionHash"] = json!(hash);
            l["transactionIndex"] = json!(format!("{i:#x}"));
            l["logIndex"] = json!(format!("{log_index:#x}"));
            log_index += 1;
        }
        out_txs.push(tx);
        out_receipts.push(r);
    }
    b["transactions"] = Value::Array(out_txs);
    Block::Evm(EvmBlock::from_rpc(&b, &out_receipts).unwrap())
}

fn run(label: &str, index: &NetworkIndex, block: &Block, min: Duration) {
    let (matches, stats) = index.match_block(block);
    let at_least = if stats.evaluations > 1_000_000 { 3 } else { 10 };
    let (p50, p99, runs) = measure(min, at_least, || {
        black_box(index.match_block(block));
    });
    // encoding as the filter stage does it: each match record once
    let records: Vec<MatchRecord> = matches
        .into_iter()
        .map(|m| MatchRecord { matched: m, block_published_at_ms: 0, produced_at_ms: 0 })
        .collect();
    let bytes: usize = records.iter().map(|r| r.encode().len()).sum();
    let (e50, e99, _) = measure(min / 2, at_least, || {
        for r in &records {
            black_box(r.encode());
        }
    });
    println!(
        "{label:<44} match p50 {:>9.1} ms p99 {:>9.1} ms | encode p50 {:>8.1} ms p99 {:>8.1} ms | {:>9} evaluations {:>8} matches {:>8.1} MiB of records ({runs} runs)",
        ms(p50),
        ms(p99),
        ms(e50),
        ms(e99),
        stats.evaluations,
        records.len(),
        bytes as f64 / (1 << 20) as f64
    );
}

fn main() {
    let min =
        Duration::from_millis(std::env::var("BENCH_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(2000));
    let sizes: Vec<usize> = std::env::var("BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1_000, 10_000, 100_000]);
    if sizes.len() > 1 {
        // one process per size: memory freed by a smaller size would hide a larger one's growth
        println!(
            "chainwatch hot-contract matching benchmark (one thread, {} build)",
            if cfg!(debug_assertions) { "debug" } else { "optimized" }
        );
        for n in sizes {
            let status = std::process::Command::new(std::env::current_exe().expect("the bench binary"))
                .env("BENCH_SIZES", n.to_string())
                .status()
                .expect("running the bench for one size");
            assert!(status.success(), "the bench for {n} monitors failed");
        }
        return;
    }
    let raw = rpc_result("eth_getBlockByNumber/test_08.json");
    let receipts = rpc_result("eth_getBlockReceipts/test_02.json").as_array().unwrap().clone();
    let real = Block::Evm(EvmBlock::from_rpc(&raw, &receipts).unwrap());
    let big = synthetic(&raw, &receipts, 2_000);
    let hot = hot_contracts(&raw, &receipts, 24);
    if sizes[0] <= 1_000 {
        println!("hot contracts of block 18,000,000: {}", hot.join(" "));
    }
    let abis = AbiCache::default();
    for n in sizes {
        let rss_before = vm_rss_kib();
        let t = Instant::now();
        let list = monitors(n, &hot, &abis);
        let index = NetworkIndex::build("ethereum-mainnet", list);
        let build = t.elapsed();
        let per_monitor = (vm_rss_kib().saturating_sub(rss_before)) as f64 * 1024.0 / n as f64;
        println!(
            "{n} hot monitors: compiled and indexed in {:.0} ms, RSS {:.1} KiB per monitor",
            ms(build),
            per_monitor / 1024.0
        );
        run(&format!("  block 18,000,000 ({} txs)", real.transaction_count()), &index, &real, min);
        run(&format!("  synthetic block ({} txs)", big.transaction_count()), &index, &big, min);
        drop(index);
    }
}
