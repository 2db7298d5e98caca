//! `chainwatch test`: one monitor on one block — the matches and the notifications its triggers
//! would send, without sending them. The block comes from an RPC endpoint (through the ingester's
//! own source, so it is normalized exactly as in production) or from recorded JSON-RPC exchanges.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use chainwatch_core::block::{Block, EvmBlock};
use chainwatch_core::monitor::{AbiCache, MonitorKey, MonitorSource, NetworkIndex, compile};
use chainwatch_core::{MonitorMatch, template};
use chainwatch_crds::{ChainType, Network, Trigger};
use kube::ResourceExt;
use serde_json::{Value, json};

use crate::manifests::{self, Objects};

#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// File(s) with the Monitor (and optionally its Network, Triggers, Secrets, ConfigMaps).
    #[arg(short, long = "monitor", required = true)]
    pub monitors: Vec<PathBuf>,
    /// File with the Network (if not in the monitor's files).
    #[arg(long)]
    pub network: Option<PathBuf>,
    /// More files or directories to read Triggers, Secrets and ConfigMaps from.
    #[arg(short = 'f', long = "config")]
    pub config: Vec<PathBuf>,
    /// Read directories recursively (as `kubectl apply -R`).
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Which monitor, when the files hold several (`name` or `namespace/name`).
    #[arg(long)]
    pub name: Option<String>,
    /// Block (EVM) or ledger (Stellar) number. Without it and without --blocks: the latest
    /// block (the endpoint's head, or the newest block recorded under --replay).
    #[arg(short, long, conflicts_with = "blocks")]
    pub block: Option<u64>,
    /// A range of blocks, both ends included: `--blocks 18000000..18000009`.
    #[arg(long, value_name = "FROM..TO", value_parser = parse_range)]
    pub blocks: Option<(u64, u64)>,
    /// Fetch the block from this JSON-RPC endpoint (default: the Network's endpoints).
    #[arg(long, conflicts_with = "replay")]
    pub rpc: Option<String>,
    /// Read the blocks from recorded JSON-RPC exchanges (`[{request, response}]` files, as in
    /// tests fixtures): EVM eth_getBlockByNumber with eth_getBlockReceipts or
    /// eth_getTransactionReceipt; Stellar getLedgers with getTransactions and getEvents.
    #[arg(long)]
    pub replay: Option<PathBuf>,
    /// Namespace of objects that do not set one.
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = crate::check::Format::Human)]
    pub output: crate::check::Format,
}

/// The most blocks one `chainwatch test` reads.
const MAX_BLOCKS: u64 = 10_000;

fn parse_range(s: &str) -> Result<(u64, u64), String> {
    let (from, to) = s
        .split_once("..")
        .ok_or_else(|| format!("`{s}` is not a range: write FROM..TO, e.g. 18000000..18000009"))?;
    let number = |t: &str| {
        t.trim_start_matches('=')
            .trim()
            .parse::<u64>()
            .map_err(|_| format!("`{t}` in `{s}` is not a block number"))
    };
    let (from, to) = (number(from)?, number(to)?);
    if to < from {
        return Err(format!("`{s}` ends before it starts: write FROM..TO with FROM <= TO"));
    }
    if to - from >= MAX_BLOCKS {
        return Err(format!("`{s}` is {} blocks; one run reads at most {MAX_BLOCKS}", to - from + 1));
    }
    Ok((from, to))
}

/// What a dry run found.
pub struct Outcome {
    pub network: String,
    /// The blocks read, both ends included.
    pub from: u64,
    pub to: u64,
    pub matches: Vec<MonitorMatch>,
    /// (trigger, channel, title, body) per match and trigger.
    pub notifications: Vec<(String, String, String, String)>,
}

fn pick_monitor(o: &Objects, name: Option<&str>) -> anyhow::Result<chainwatch_crds::Monitor> {
    let all: Vec<_> = o.monitors.iter().map(|(_, m)| m.clone()).collect();
    match name {
        None if all.len() == 1 => Ok(all[0].clone()),
        None => bail!(
            "the files hold {} monitors ({}): choose one with --name",
            all.len(),
            all.iter().map(|m| m.name_any()).collect::<Vec<_>>().join(", ")
        ),
        Some(n) => all
            .into_iter()
            .find(|m| {
                m.name_any() == n || format!("{}/{}", m.namespace().unwrap_or_default(), m.name_any()) == n
            })
            .with_context(|| format!("no monitor {n} in the files")),
    }
}

/// Recorded JSON-RPC results: (method, first positional parameter with block numbers in
/// decimal, result), in file order.
fn recorded(dir: &PathBuf) -> anyhow::Result<Vec<(String, String, Value)>> {
    let mut out = Vec::new();
    let files = manifests::files(std::slice::from_ref(dir), true).map_err(|e| anyhow::anyhow!("{e}"))?;
    for f in files.iter().filter(|f| f.extension().is_some_and(|e| e == "json")) {
        let Ok(v) = serde_json::from_str::<Value>(&std::fs::read_to_string(f)?) else { continue };
        for ex in v.as_array().into_iter().flatten() {
            let method = ex["request"]["method"].as_str().unwrap_or_default().to_string();
            let param = ex["request"]["params"][0].clone();
            let key = match &param {
                Value::String(s) if s.starts_with("0x") && s.len() <= 18 => u64::from_str_radix(&s[2..], 16)
                    .map(|n| n.to_string())
                    .unwrap_or_else(|_| s.to_lowercase()),
                Value::String(s) => s.to_lowercase(),
                other => other.to_string(),
            };
            if !ex["response"]["result"].is_null() {
                out.push((method, key, ex["response"]["result"].clone()));
            }
        }
    }
    Ok(out)
}

/// Recorded exchanges: EVM results by (method, first parameter), Stellar entries by ledger.
struct Replay {
    evm: HashMap<(String, String), Value>,
    stellar: Stellar,
}

/// Stellar results of recorded getLedgers / getTransactions / getEvents, by ledger.
#[derive(Default)]
struct Stellar {
    ledgers: HashMap<u64, Value>,
    transactions: HashMap<u64, Vec<Value>>,
    events: HashMap<u64, Vec<Value>>,
}

impl Replay {
    fn read(dir: &PathBuf) -> anyhow::Result<Self> {
        let all = recorded(dir)?;
        let mut stellar = Stellar::default();
        for (method, _, result) in &all {
            let (field, key) = match method.as_str() {
                "getLedgers" => ("ledgers", "sequence"),
                "getTransactions" => ("transactions", "ledger"),
                "getEvents" => ("events", "ledger"),
                _ => continue,
            };
            for item in result[field].as_array().into_iter().flatten() {
                let Some(n) = item[key].as_u64() else { continue };
                match field {
                    "ledgers" => {
                        stellar.ledgers.insert(n, item.clone());
                    }
                    "transactions" => push_once(stellar.transactions.entry(n).or_default(), item, "txHash"),
                    _ => push_once(stellar.events.entry(n).or_default(), item, "id"),
                }
            }
        }
        let evm = all.into_iter().map(|(method, key, result)| ((method, key), result)).collect();
        Ok(Self { evm, stellar })
    }

    /// The newest block recorded whole for `chain` (an EVM block with its receipts).
    fn latest(&self, dir: &std::path::Path, chain: ChainType) -> Option<u64> {
        match chain {
            ChainType::Stellar => self.stellar.ledgers.keys().max().copied(),
            _ => {
                let mut numbers: Vec<u64> = self
                    .evm
                    .keys()
                    .filter(|(m, _)| m == "eth_getBlockByNumber")
                    .filter_map(|(_, n)| n.parse().ok())
                    .collect();
                numbers.sort_unstable_by(|a, b| b.cmp(a));
                numbers.into_iter().find(|n| evm_replay_block(&self.evm, dir, *n).is_ok())
            }
        }
    }

    fn block(&self, dir: &std::path::Path, chain: ChainType, n: u64) -> anyhow::Result<Block> {
        match chain {
            ChainType::Evm => evm_replay_block(&self.evm, dir, n),
            ChainType::Stellar => {
                let ledger = self.stellar.ledgers.get(&n).with_context(|| {
                    format!("no getLedgers result for ledger {n} under {}", dir.display())
                })?;
                let none = Vec::new();
                let txs = self.stellar.transactions.get(&n).unwrap_or(&none);
                let events = self.stellar.events.get(&n).unwrap_or(&none);
                let parsed = chainwatch_core::block::StellarLedger::from_rpc(ledger, txs, events)
                    .map_err(|e| anyhow::anyhow!("ledger {n}: {e}"))?;
                Ok(Block::Stellar(parsed))
            }
            other => bail!("--replay reads EVM and Stellar exchanges; {other} networks are not ingested yet"),
        }
    }
}

/// Adds `item` unless one with the same `id_field` is there (pages recorded twice).
fn push_once(list: &mut Vec<Value>, item: &Value, id_field: &str) {
    if !list.iter().any(|x| x[id_field] == item[id_field]) {
        list.push(item.clone());
    }
}

fn evm_replay_block(
    index: &HashMap<(String, String), Value>,
    dir: &std::path::Path,
    n: u64,
) -> anyhow::Result<Block> {
    let block = index
        .get(&("eth_getBlockByNumber".to_string(), n.to_string()))
        .with_context(|| format!("no eth_getBlockByNumber for block {n} under {}", dir.display()))?;
    let receipts: Vec<Value> = match index.get(&("eth_getBlockReceipts".to_string(), n.to_string())) {
        Some(r) => r.as_array().cloned().unwrap_or_default(),
        None => block["transactions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|tx| {
                let h = tx["hash"].as_str().unwrap_or_default().to_lowercase();
                index
                    .get(&("eth_getTransactionReceipt".to_string(), h.clone()))
                    .cloned()
                    .with_context(|| format!("no receipts for block {n}: neither eth_getBlockReceipts nor eth_getTransactionReceipt for {h}"))
            })
            .collect::<anyhow::Result<_>>()?,
    };
    Ok(Block::Evm(EvmBlock::from_rpc(block, &receipts).map_err(|e| anyhow::anyhow!("block {n}: {e}"))?))
}

/// The ingester's own source for the Network (or for `--rpc`).
fn rpc_source(
    network: &Network,
    rpc: Option<&str>,
) -> anyhow::Result<Arc<dyn chainwatch_ingester::source::BlockSource>> {
    let mut spec = network.spec.clone();
    if let Some(url) = rpc {
        spec.rpc = vec![chainwatch_crds::RpcEndpoint {
            url: Some(url.to_string()),
            url_secret_ref: None,
            weight: None,
            timeout: None,
        }];
    }
    let no_secrets = |r: &chainwatch_crds::SecretKeyRef| {
        Err(chainwatch_core::config::RefProblem::Unreadable {
            what: format!("Secret {}", r.name),
            why: "cannot be read here: pass --rpc".into(),
        })
    };
    let rt = chainwatch_core::config::network_settings(&spec, &no_secrets)
        .map_err(|e| anyhow::anyhow!("Network {}: {e}", network.name_any()))?;
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = chainwatch_ingester::rpc::RpcMetrics::register(&mut registry);
    chainwatch_ingester::build_source(&network.name_any(), &rt, metrics, None).map_err(|e| anyhow::anyhow!(e))
}

/// Renders what each trigger of the monitor would send for each match.
pub fn notifications(o: &Objects, matches: &[MonitorMatch]) -> Vec<(String, String, String, String)> {
    let mut out = Vec::new();
    for m in matches {
        let vars = template::variables(m);
        for t in &m.monitor.triggers {
            let trig: Option<&Trigger> = o.triggers.iter().map(|(_, t)| t).find(|x| {
                x.name_any() == *t && x.namespace().as_deref() == Some(m.monitor.key.namespace.as_str())
            });
            match trig {
                None => {
                    out.push((t.clone(), "?".into(), "(trigger not among the files)".into(), String::new()))
                }
                Some(x) => {
                    let channel = x.spec.channel().unwrap_or("?").to_string();
                    let (title, body) = match &x.spec.message {
                        Some(msg) => {
                            (template::render(&msg.title, &vars), template::render(&msg.body, &vars))
                        }
                        None => ("(raw payload)".into(), m.upstream_json().to_string()),
                    };
                    out.push((t.clone(), channel, title, body));
                }
            }
        }
    }
    out
}

/// Runs the dry run.
pub async fn dry_run(args: &TestArgs) -> anyhow::Result<(Outcome, Objects)> {
    let mut paths = args.monitors.clone();
    paths.extend(args.network.iter().cloned());
    paths.extend(args.config.iter().cloned());
    let (docs, errors) = manifests::load(&paths, args.recursive);
    if let Some(e) = errors.first() {
        bail!("{e}");
    }
    let (o, bad) = Objects::from_docs(&docs, &args.namespace);
    if let Some((d, e)) = bad.first() {
        bail!("{}: {}: {e} (run `chainwatch check` for details)", d.source, d.describe());
    }
    let monitor = pick_monitor(&o, args.name.as_deref())?;
    let network = match monitor
        .spec
        .networks
        .iter()
        .find_map(|n| o.networks.iter().find(|(_, x)| x.name_any() == *n))
    {
        Some((_, n)) => n.clone(),
        None => bail!(
            "the monitor's networks ({}) are not among the files: pass --network FILE",
            monitor.spec.networks.join(", ")
        ),
    };
    let ns = monitor.namespace().unwrap_or_default();
    let set = o.object_set();
    let cms = |r: &chainwatch_crds::ConfigMapKeyRef| {
        use chainwatch_core::config::Catalog;
        set.config_map_value(&ns, r).map_err(|p| p.to_string())
    };
    let source = MonitorSource {
        key: MonitorKey::new(&ns, monitor.name_any()),
        generation: None,
        spec: &monitor.spec,
        config_maps: &cms,
    };
    let compiled = compile(&source, network.spec.chain_type, &AbiCache::default()).map_err(|errs| {
        anyhow::anyhow!(
            "the monitor does not compile:\n{}",
            errs.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n")
        )
    })?;
    let chain = network.spec.chain_type;
    let index = NetworkIndex::build(&network.name_any(), [Arc::new(compiled)]);
    let mut matches = Vec::new();
    let (from, to) = match &args.replay {
        Some(dir) => {
            let replay = Replay::read(dir)?;
            let (from, to) = match blocks_asked(args) {
                Some(r) => r,
                None => {
                    let n = replay.latest(dir, chain).with_context(|| {
                        format!("no {chain} block is recorded under {}: pass --block", dir.display())
                    })?;
                    (n, n)
                }
            };
            for n in from..=to {
                matches.extend(index.match_block(&replay.block(dir, chain, n)?).0);
            }
            (from, to)
        }
        None => {
            let source = rpc_source(&network, args.rpc.as_deref())?;
            let (from, to) = match blocks_asked(args) {
                Some(r) => r,
                None => {
                    let head =
                        source.head().await.map_err(|e| anyhow::anyhow!("asking for the head: {e}"))?;
                    (head.latest, head.latest)
                }
            };
            for n in from..=to {
                let block = source.block(n).await.map_err(|e| anyhow::anyhow!("fetching block {n}: {e}"))?;
                matches.extend(index.match_block(&block).0);
            }
            (from, to)
        }
    };
    let notifications = notifications(&o, &matches);
    Ok((Outcome { network: network.name_any(), from, to, matches, notifications }, o))
}

/// `--block N` or `--blocks FROM..TO`, as a range; `None`: the latest.
fn blocks_asked(args: &TestArgs) -> Option<(u64, u64)> {
    args.blocks.or(args.block.map(|n| (n, n)))
}

fn human(out: &Outcome) -> String {
    let blocks = if out.from == out.to {
        format!("block {}", out.from)
    } else {
        format!("blocks {}..{} ({})", out.from, out.to, out.to - out.from + 1)
    };
    let mut s = format!("{blocks} on {}: {} match(es)\n", out.network, out.matches.len());
    for m in &out.matches {
        s.push_str(&format!(
            "\n  {} matched tx {} in block {}\n",
            m.monitor.display_name,
            m.transaction_hash(),
            m.block.number
        ));
        for f in &m.matched_on_args.functions {
            let args: Vec<String> = f.args.iter().map(|a| format!("{}={}", a.name, a.value)).collect();
            s.push_str(&format!(
                "    function {}({})\n",
                f.signature.split('(').next().unwrap_or_default(),
                args.join(", ")
            ));
        }
        for e in &m.matched_on_args.events {
            let args: Vec<String> = e.args.iter().map(|a| format!("{}={}", a.name, a.value)).collect();
            s.push_str(&format!(
                "    event {}({}) log {}\n",
                e.signature.split('(').next().unwrap_or_default(),
                args.join(", "),
                e.log_index.map_or("-".into(), |i| i.to_string())
            ));
        }
        for t in &m.matched_on.transactions {
            s.push_str(&format!(
                "    transaction {:?}{}\n",
                t.status,
                t.expression.as_ref().map(|e| format!(" where {e}")).unwrap_or_default()
            ));
        }
    }
    if !out.notifications.is_empty() {
        s.push_str("\nnotifications (not sent):\n");
        for (t, channel, title, body) in &out.notifications {
            s.push_str(&format!("\n  [{channel}] {t}: {title}\n"));
            for line in body.lines() {
                s.push_str(&format!("    {line}\n"));
            }
        }
    }
    s
}

/// The command.
pub async fn run(args: TestArgs) -> anyhow::Result<()> {
    let (out, _) = dry_run(&args).await?;
    match args.output {
        crate::check::Format::Human => print!("{}", human(&out)),
        crate::check::Format::Json => {
            let v = json!({
                "network": out.network,
                "from": out.from,
                "to": out.to,
                "matches": out.matches.iter().map(|m| m.upstream_json()).collect::<Vec<_>>(),
                "notifications": out.notifications.iter().map(|(t, c, title, body)| json!({"trigger": t, "channel": c, "title": title, "body": body})).collect::<Vec<_>>(),
            });
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
    }
    Ok(())
}
