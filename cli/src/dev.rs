//! `chainwatch dev`: the whole pipeline in one process — an ingester per Network, the filter and
//! notify stages of the worker — over the in-memory bus, with the configuration read from a
//! directory of CR YAML and reloaded when a file changes (the same store the worker feeds from
//! its watches). Matches are printed; notifications go to their channels, or to stdout with
//! `--dry-notify`.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use chainwatch_crds::{Network, SecretKeyRef};
use chainwatch_ingester::checkpoint::FileCheckpoint;
use chainwatch_ingester::config::{ConfigError, NetworkRuntime};
use chainwatch_ingester::metrics::IngesterMetrics;
use chainwatch_ingester::rpc::RpcMetrics;
use chainwatch_ingester::status::{Health, IngestStatus};
use chainwatch_platform::bus::memory::MemoryBus;
use chainwatch_platform::bus::{Consumer, MATCHES_TOPIC, NOTIFY_GROUP, Producer, blocks_topic, filter_group};
use chainwatch_platform::codec::MatchRecord;
use chainwatch_worker::config::{Admission, ConfigStore};
use chainwatch_worker::metrics::WorkerMetrics;
use chainwatch_worker::notify::channels::{Channels, DrySink};
use chainwatch_worker::notify::dedup::DeliveredLog;
use chainwatch_worker::notify::destination::{Cidr, DestinationPolicy};
use chainwatch_worker::notify::script::ScriptRunner;
use chainwatch_worker::notify::throttle::Throttles;
use chainwatch_worker::status::NoStatus;
use kube::ResourceExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::manifests::{self, Objects};

#[derive(Debug, Clone, clap::Args)]
pub struct DevArgs {
    /// Files or directories of CR YAML (Networks, Monitors, Triggers, Tenants, Secrets,
    /// ConfigMaps); reloaded when they change.
    #[arg(short = 'f', long = "config")]
    pub config: Vec<PathBuf>,
    /// Read the --config directories recursively (as `kubectl apply -R`).
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Run the demo: a local anvil chain with an ERC-20, a stream of transfers and example
    /// monitors (with --rpc: the Ethereum mainnet USDC example against that endpoint instead).
    #[arg(long)]
    pub demo: bool,
    /// Use this JSON-RPC endpoint for every Network instead of the ones in their specs.
    #[arg(long)]
    pub rpc: Option<String>,
    /// Print notifications instead of sending them.
    #[arg(long)]
    pub dry_notify: bool,
    /// Directory of the ingesters' checkpoints (default: a new temporary directory, so every run
    /// starts at the head).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Namespace of objects that do not set one.
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
    /// Internal destinations notifications may go to (CIDR or IP, repeatable); loopback,
    /// private and metadata addresses are refused otherwise.
    #[arg(long = "allow-destination", value_delimiter = ',')]
    pub allow_destinations: Vec<Cidr>,
    /// Stop after this many matches.
    #[arg(long)]
    pub exit_after_matches: Option<usize>,
    /// Stop after this long (e.g. `2m`).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// The anvil binary for --demo (default: $ANVIL_BIN, `anvil` on PATH, or the one
    /// `scripts/demo.sh` installs).
    #[arg(long, env = "ANVIL_BIN")]
    pub anvil: Option<String>,
    /// Print matches as JSON lines (OpenZeppelin Monitor's match JSON) instead of text.
    #[arg(long)]
    pub json: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    chainwatch_crds::common::parse_duration(s).map_err(|e| e.to_string())
}

/// A running ingestion of one network.
struct Ingestion {
    config: watch::Sender<Option<Result<NetworkRuntime, ConfigError>>>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

struct Pipeline {
    bus: MemoryBus,
    store: ConfigStore,
    state_dir: PathBuf,
    rpc_override: Option<String>,
    ingestions: HashMap<String, Ingestion>,
    rpc_metrics: RpcMetrics,
    ingester_metrics: IngesterMetrics,
    worker_metrics: WorkerMetrics,
    stop: CancellationToken,
}

fn runtime_of(n: &Network, o: &Objects, rpc: Option<&str>) -> Result<NetworkRuntime, ConfigError> {
    let mut spec = n.spec.clone();
    if let Some(url) = rpc {
        spec.rpc = vec![chainwatch_crds::RpcEndpoint {
            url: Some(url.into()),
            url_secret_ref: None,
            weight: None,
            timeout: None,
        }];
    }
    // endpoint Secrets live in the operator's namespace in a cluster; here any namespace will do
    let secret = |r: &SecretKeyRef| {
        o.secrets
            .iter()
            .find(|(_, s)| s.name_any() == r.name)
            .and_then(|(_, s)| o.secret_value(&s.namespace().unwrap_or_default(), &r.name, &r.key))
            .ok_or_else(|| format!("Secret {} with key {} is not among the files", r.name, r.key))
    };
    chainwatch_ingester::config::runtime(&n.name_any(), &spec, &secret)
}

impl Pipeline {
    /// Starts, updates or stops ingestions and filter stages to match the Networks.
    fn apply_networks(&mut self, o: &Objects) {
        let wanted: BTreeMap<String, &Network> = o.networks.iter().map(|(_, n)| (n.name_any(), n)).collect();
        self.ingestions.retain(|name, ing| {
            let keep = wanted.contains_key(name);
            if !keep {
                println!("network {name} removed: stopping its ingestion");
                ing.stop.cancel();
            }
            keep
        });
        for (name, n) in wanted {
            let rt = runtime_of(n, o, self.rpc_override.as_deref());
            if let Err(e) = &rt {
                println!("network {name}: {e}");
            }
            if let Some(ing) = self.ingestions.get(&name) {
                ing.config.send_replace(Some(rt));
                continue;
            }
            let (config, rx) = watch::channel(Some(rt));
            let stop = self.stop.child_token();
            let (status_tx, status_rx) = watch::channel(IngestStatus::default());
            let components = chainwatch_ingester::Components {
                producer: Arc::new(self.bus.clone()),
                checkpoint: Arc::new(FileCheckpoint::new(&self.state_dir, &name)),
                rpc_metrics: self.rpc_metrics.clone(),
                metrics: self.ingester_metrics.clone(),
                status: status_tx,
                fetch_concurrency: None,
                max_in_flight: None,
            };
            let filter = chainwatch_worker::filter::FilterStage {
                network: name.clone(),
                consumer: Arc::new(self.bus.consumer(&filter_group(&name), &[&blocks_topic(&name)])),
                producer: Arc::new(self.bus.clone()),
                config: self.store.subscribe(),
                metrics: self.worker_metrics.clone(),
                concurrency: 2,
                attempts: 5,
            };
            let task = tokio::spawn({
                let stop = stop.clone();
                let name = name.clone();
                async move {
                    let report = tokio::spawn(report_status(name.clone(), status_rx, stop.clone()));
                    let filter = tokio::spawn(filter.run(stop.clone()));
                    if let Err(e) =
                        chainwatch_ingester::supervise(name.clone(), rx, components, stop.clone()).await
                    {
                        println!("network {name}: ingestion stopped: {e}");
                    }
                    stop.cancel();
                    let _ = tokio::join!(report, filter);
                }
            });
            self.ingestions.insert(name, Ingestion { config, stop, task });
        }
    }
}

/// Prints what a user of `dev` wants to know about ingestion: errors (the RPC endpoints failing,
/// ingestion not progressing), and recovery from them.
async fn report_status(name: String, mut rx: watch::Receiver<IngestStatus>, stop: CancellationToken) {
    let (mut rpc, mut progress) = (None, None);
    loop {
        let s = rx.borrow_and_update().clone();
        report_change(&name, "RPC ", &s.rpc, &mut rpc, || "RPC reachable again".into());
        report_change(&name, "", &s.progressing, &mut progress, || {
            format!("ingesting again (block {})", s.last_published.map_or("-".into(), |b| b.to_string()))
        });
        tokio::select! {
            _ = stop.cancelled() => return,
            r = rx.changed() => if r.is_err() { return },
        }
    }
}

/// Prints `health` when it turns bad (`prefix` + reason — message) or good again (`recovered`).
fn report_change(
    network: &str,
    prefix: &str,
    health: &Health,
    last: &mut Option<(Option<bool>, String)>,
    recovered: impl FnOnce() -> String,
) {
    let now = (health.ok, health.reason.clone());
    if last.as_ref() == Some(&now) || health.ok.is_none() {
        return;
    }
    match health.ok {
        Some(false) => println!("network {network}: {prefix}{} — {}", health.reason, health.message),
        _ if last.is_some() => println!("network {network}: {}", recovered()),
        _ => {}
    }
    *last = Some(now);
}

/// A fingerprint of the config files (names, sizes, modification times).
fn fingerprint(paths: &[PathBuf], recursive: bool) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    manifests::files(paths, recursive)
        .unwrap_or_default()
        .into_iter()
        .map(|p| {
            let m = std::fs::metadata(&p).ok();
            (p, m.as_ref().map_or(0, |m| m.len()), m.and_then(|m| m.modified().ok()))
        })
        .collect()
}

/// Loads the config; `Err` lists what is wrong (the previous config then stays in effect).
fn load(paths: &[PathBuf], recursive: bool, namespace: &str) -> Result<Objects, String> {
    let (docs, errors) = manifests::load(paths, recursive);
    if docs.is_empty() && errors.is_empty() {
        return Err(manifests::nothing_found(paths, recursive));
    }
    let (o, bad) = Objects::from_docs(&docs, namespace);
    let mut problems: Vec<String> = errors.iter().map(ToString::to_string).collect();
    problems.extend(bad.iter().map(|(d, e)| format!("{}: {}: {e}", d.source, d.describe())));
    for d in &docs {
        for v in chainwatch_crds::validate::validate(&d.value).unwrap_or_default() {
            problems.push(format!("{}: {}: {v}", d.source, d.describe()));
        }
    }
    if problems.is_empty() { Ok(o) } else { Err(problems.join("\n")) }
}

fn print_match(r: &MatchRecord, json: bool) {
    let m = &r.matched;
    if json {
        println!("{}", m.upstream_json());
        return;
    }
    let what: Vec<String> = m
        .matched_on_args
        .events
        .iter()
        .map(|e| {
            let args: Vec<String> = e.args.iter().map(|a| format!("{}={}", a.name, a.value)).collect();
            format!("{}({})", e.signature.split('(').next().unwrap_or_default(), args.join(", "))
        })
        .chain(m.matched_on_args.functions.iter().map(|f| {
            let args: Vec<String> = f.args.iter().map(|a| format!("{}={}", a.name, a.value)).collect();
            format!("{}({})", f.signature.split('(').next().unwrap_or_default(), args.join(", "))
        }))
        .collect();
    let latency = r.produced_at_ms.saturating_sub(r.block_published_at_ms);
    println!(
        "MATCH {} on {} block {} tx {}{} ({latency} ms after ingestion)",
        m.monitor.key,
        m.network,
        m.block.number,
        m.transaction_hash(),
        if what.is_empty() { String::new() } else { format!(": {}", what.join("; ")) },
    );
}

/// Runs `dev` until `shutdown` (or the exit conditions of the arguments).
pub async fn run(mut args: DevArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut demo = None;
    if args.demo {
        let d = crate::demo::start(&args).await?;
        args.config.push(d.config_dir.clone());
        args.allow_destinations.extend(d.allow.iter().cloned());
        demo = Some(d);
    }
    if args.config.is_empty() {
        anyhow::bail!("nothing to run: pass --config DIR (CR YAML) or --demo");
    }
    // fingerprint before loading: an edit made while loading is seen as a change
    let mut seen = fingerprint(&args.config, args.recursive);
    let objects = load(&args.config, args.recursive, &args.namespace)
        .map_err(|e| anyhow::anyhow!("the configuration has problems:\n{e}"))?;
    let temp_state;
    let state_dir = match &args.state_dir {
        Some(d) => d.clone(),
        None => {
            temp_state = tempfile::tempdir()?;
            temp_state.path().to_path_buf()
        }
    };
    std::fs::create_dir_all(&state_dir)?;

    let mut registry = prometheus_client::registry::Registry::default();
    let bus = MemoryBus::new();
    let store = ConfigStore::new(Admission::Local);
    objects.replace_into(&store);
    let stop = shutdown.child_token();
    let mut pipeline = Pipeline {
        bus: bus.clone(),
        store: store.clone(),
        state_dir,
        rpc_override: args.rpc.clone().filter(|_| !args.demo),
        ingestions: HashMap::new(),
        rpc_metrics: RpcMetrics::register(&mut registry),
        ingester_metrics: IngesterMetrics::register(&mut registry),
        worker_metrics: WorkerMetrics::register(&mut registry),
        stop: stop.clone(),
    };
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn({
        let store = store.clone();
        let stop = stop.clone();
        async move { store.run(stop).await }
    });
    store.rebuild_now();
    report_rejected(&store);

    // notify stage
    let producer: Arc<dyn Producer> = Arc::new(bus.clone());
    let channels = if args.dry_notify {
        let sink: DrySink = Arc::new(|t, n| {
            println!(
                "NOTIFY [{} {}/{}] {}\n{}",
                t.spec.channel().unwrap_or("?"),
                t.namespace,
                t.name,
                n.title,
                indent(&n.body)
            );
        });
        Channels::dry_run(sink)
    } else {
        Channels::new(DestinationPolicy { allow: args.allow_destinations.clone() }, ScriptRunner::default())
    };
    let notify = chainwatch_worker::notify::NotifyStage {
        consumer: Arc::new(bus.consumer(NOTIFY_GROUP, &[MATCHES_TOPIC])),
        producer: producer.clone(),
        config: store.subscribe(),
        channels: Arc::new(channels),
        scripts: ScriptRunner::default(),
        delivered: DeliveredLog::new(producer.clone()),
        throttles: Arc::new(Throttles::default()),
        status: Arc::new(NoStatus),
        metrics: pipeline.worker_metrics.clone(),
        concurrency: 8,
    };
    tasks.spawn(notify.run(stop.clone()));

    // the match printer
    let matches = Arc::new(AtomicUsize::new(0));
    let enough = CancellationToken::new();
    tasks.spawn({
        let consumer = bus.consumer("chainwatch-dev-print", &[MATCHES_TOPIC]);
        let stop = stop.clone();
        let matches = matches.clone();
        let enough = enough.clone();
        let limit = args.exit_after_matches;
        let json = args.json;
        async move {
            loop {
                let msg = tokio::select! {
                    _ = stop.cancelled() => return,
                    m = consumer.recv() => m,
                };
                let Ok(msg) = msg else { return };
                if let Ok(r) = MatchRecord::decode(&msg.payload) {
                    print_match(&r, json);
                    let n = matches.fetch_add(1, Ordering::SeqCst) + 1;
                    if limit.is_some_and(|l| n >= l) {
                        enough.cancel();
                    }
                }
                consumer.done(&msg);
            }
        }
    });

    pipeline.apply_networks(&objects);
    println!(
        "chainwatch dev: {} network(s), {} monitor(s), {} trigger(s); watching {} for changes; Ctrl-C stops",
        objects.networks.len(),
        objects.monitors.len(),
        objects.triggers.len(),
        args.config.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    );
    if let Some(d) = &demo {
        d.start_transfers(stop.clone());
    }

    // reload on change, until done
    let deadline = args.duration.map(|d| tokio::time::Instant::now() + d);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = enough.cancelled() => break,
            _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => break,
            _ = tokio::time::sleep(Duration::from_millis(300)) => {}
        }
        let now = fingerprint(&args.config, args.recursive);
        if now == seen {
            continue;
        }
        seen = now;
        match load(&args.config, args.recursive, &args.namespace) {
            Err(e) => println!("config not reloaded (the previous one stays in effect):\n{e}"),
            Ok(o) => {
                o.replace_into(&store);
                store.rebuild_now();
                pipeline.apply_networks(&o);
                println!(
                    "config reloaded: {} network(s), {} monitor(s), {} trigger(s)",
                    o.networks.len(),
                    o.monitors.len(),
                    o.triggers.len()
                );
                report_rejected(&store);
            }
        }
    }
    stop.cancel();
    for (_, ing) in pipeline.ingestions.drain() {
        ing.stop.cancel();
        let _ = ing.task.await;
    }
    while tasks.join_next().await.is_some() {}
    bus.close();
    if let Some(d) = demo {
        d.stop().await;
    }
    eprintln!("stopped after {} match(es)", matches.load(Ordering::SeqCst));
    Ok(())
}

fn report_rejected(store: &ConfigStore) {
    for (k, why) in &store.current().rejected {
        println!("monitor {k} is not evaluated: {why}");
    }
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")
}
