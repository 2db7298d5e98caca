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

use chainwatch_core::config::{NetworkSettings, RefProblem, SpecError};
use chainwatch_crds::{Network, SecretKeyRef};
use chainwatch_ingester::checkpoint::FileCheckpoint;
use chainwatch_ingester::metrics::IngesterMetrics;
use chainwatch_ingester::rpc::RpcMetrics;
use chainwatch_ingester::status::{Health, IngestStatus};
use chainwatch_platform::bus::memory::MemoryBus;
use chainwatch_platform::bus::{
    Consumer, DEFERRED_TOPIC, MATCHES_TOPIC, NOTIFY_GROUP, Producer, blocks_topic, filter_group,
};
use chainwatch_platform::codec::MatchRecord;
use chainwatch_worker::config::{Admission, ConfigStore};
use chainwatch_worker::metrics::WorkerMetrics;
use chainwatch_worker::notify::channels::{Channels, DrySink};
use chainwatch_worker::notify::dedup::DELIVERED_TOPIC;
use chainwatch_worker::notify::destination::{Cidr, DestinationPolicy};
use chainwatch_worker::stages::{StageSettings, Stages};
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
    #[arg(long, value_parser = chainwatch_crds::common::parse_duration)]
    pub duration: Option<Duration>,
    /// The anvil binary for --demo (default: $ANVIL_BIN, `anvil` on PATH, or the one
    /// `scripts/demo.sh` installs).
    #[arg(long, env = "ANVIL_BIN")]
    pub anvil: Option<String>,
    /// Print matches as JSON lines (OpenZeppelin Monitor's match JSON) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// A running ingestion of one network.
struct Ingestion {
    config: watch::Sender<Option<Result<NetworkSettings, SpecError>>>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

struct Pipeline {
    bus: MemoryBus,
    stages: Stages,
    state_dir: PathBuf,
    rpc_override: Option<String>,
    ingestions: HashMap<String, Ingestion>,
    rpc_metrics: RpcMetrics,
    ingester_metrics: IngesterMetrics,
    stop: CancellationToken,
}

fn runtime_of(n: &Network, o: &Objects, rpc: Option<&str>) -> Result<NetworkSettings, SpecError> {
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
        o.any_secret_value(r).ok_or_else(|| RefProblem::Unreadable {
            what: format!("Secret {} with key {}", r.name, r.key),
            why: "is not among the files".into(),
        })
    };
    chainwatch_core::config::network_settings(&spec, &secret)
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
                endpoint_recheck: None,
            };
            let filter = self
                .stages
                .filter(&name, Arc::new(self.bus.consumer(&filter_group(&name), &[&blocks_topic(&name)])));
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

/// The objects of the files as the pipeline runs them. Without a Tenant among the files, one
/// implicit Tenant owns every namespace they use and allows scripts (admission needs a Tenant, a
/// developer's directory rarely has one); with one, the files' Tenants decide, as in a cluster.
fn objects_to_run(o: &Objects) -> (chainwatch_core::config::ObjectSet, Option<String>) {
    let mut set = o.object_set();
    if !o.tenants.is_empty() {
        return (set, None);
    }
    let mut namespaces: Vec<String> = o
        .monitors
        .iter()
        .filter_map(|(_, m)| m.namespace())
        .chain(o.triggers.iter().filter_map(|(_, t)| t.namespace()))
        .collect();
    namespaces.sort();
    namespaces.dedup();
    if namespaces.is_empty() {
        return (set, None);
    }
    let tenant: chainwatch_crds::Tenant = serde_json::from_value(serde_json::json!({
        "apiVersion": "chainwatch.io/v1alpha1", "kind": "Tenant", "metadata": {"name": "dev"},
        "spec": {"namespaces": namespaces, "limits": {"allowScripts": true}}}))
    .expect("a Tenant");
    set.insert_tenant(tenant);
    let note = format!(
        "no Tenant among the files: an implicit tenant `dev` owns namespace(s) {} and allows scripts (add a Tenant to run under its limits)",
        namespaces.join(", ")
    );
    (set, Some(note))
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
        let d = crate::demo::start(args.rpc.as_deref(), args.anvil.as_deref()).await?;
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
    let (set, note) = objects_to_run(&objects);
    store.replace_all(set);
    if let Some(note) = note {
        eprintln!("{note}");
    }
    let stop = shutdown.child_token();
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn({
        let store = store.clone();
        let stop = stop.clone();
        async move { store.run(stop).await }
    });
    store.rebuild_now();
    report_rejected(&store);

    // the worker's stages, put together as the worker process does
    let producer: Arc<dyn Producer> = Arc::new(bus.clone());
    let worker_metrics = WorkerMetrics::register(&mut registry);
    let settings = StageSettings {
        filter_concurrency: 2,
        destinations: DestinationPolicy { allow: args.allow_destinations.clone() },
        ..StageSettings::default()
    };
    let stages = if args.dry_notify {
        let sink: DrySink = Arc::new(|t, n| {
            let (title, body, _) = n.shown();
            println!(
                "{} [{} {}/{}] {}\n{}",
                if n.retraction.is_some() { "RETRACT" } else { "NOTIFY" },
                t.spec.channel().unwrap_or("?"),
                t.namespace,
                t.name,
                title,
                indent(body)
            );
        });
        Stages::with_channels(
            settings,
            producer,
            store.clone(),
            worker_metrics,
            Arc::new(NoStatus),
            Channels::dry_run(sink),
        )
    } else {
        Stages::new(settings, producer, store.clone(), worker_metrics, Arc::new(NoStatus))
    };
    tasks.spawn({
        let delivered = stages.delivered().clone();
        let consumer: Arc<dyn Consumer> =
            Arc::new(bus.consumer("chainwatch-dev-delivered", &[DELIVERED_TOPIC]));
        let (caught_up, _) = tokio::sync::oneshot::channel();
        let stop = stop.clone();
        async move { delivered.follow(consumer, None, caught_up, stop).await }
    });
    tasks.spawn(
        stages
            .notify(Arc::new(bus.consumer(NOTIFY_GROUP, &[MATCHES_TOPIC, DEFERRED_TOPIC])))
            .run(stop.clone()),
    );
    let mut pipeline = Pipeline {
        bus: bus.clone(),
        stages,
        state_dir,
        rpc_override: args.rpc.clone().filter(|_| !args.demo),
        ingestions: HashMap::new(),
        rpc_metrics: RpcMetrics::register(&mut registry),
        ingester_metrics: IngesterMetrics::register(&mut registry),
        stop: stop.clone(),
    };

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
                store.replace_all(objects_to_run(&o).0);
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
