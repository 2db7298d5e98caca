//! The worker: turns block records into notifications for every tenant.
//!
//! * [`config`]: live configuration from watches (or files in `chainwatch dev`), compiled and
//!   indexed per network; a change applies on the next block.
//! * [`filter`]: consumes a network's blocks, produces matches.
//! * [`notify`]: consumes matches, runs trigger conditions, delivers through the channels.
//! * [`stage`]: the consume loop both stages share.
//! * [`stages`]: the one constructor of both stages, for the worker process and `chainwatch dev`.
//! * [`status`]: match and delivery counters on Monitors and Triggers.

pub mod config;
pub mod dead_letters;
pub mod filter;
pub mod metrics;
pub mod notify;
pub mod script;
pub mod stage;
pub mod stages;
pub mod status;

use std::sync::Arc;
use std::time::Duration;

use chainwatch_platform::AdminArgs;
use chainwatch_platform::admin::AdminServer;
use chainwatch_platform::bus::kafka::{KafkaArgs, KafkaConsumer, TopicSpec};
use chainwatch_platform::bus::{
    Consumer, DEADLETTER_TOPIC, DEFERRED_TOPIC, MATCHES_TOPIC, NOTIFY_GROUP, Producer, REDELIVERED_TOPIC,
    blocks_topic, filter_group,
};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use chainwatch_platform::cache::{CacheHooks, CacheMetrics, WatchArgs, WatchScope};
use config::{Admission, ConfigStore};
use metrics::WorkerMetrics;
use notify::dedup::DELIVERED_TOPIC;
use notify::destination::{Cidr, DestinationPolicy};
use script::{ScriptLimits, ScriptRunner};
use stages::{StageSettings, Stages};

/// Command-line arguments of the worker process.
#[derive(Clone, Debug, clap::Args)]
pub struct WorkerArgs {
    /// Stable identity of this worker in its consumer groups (static membership): a worker
    /// restarted with the same identity resumes its partitions without a rebalance. The
    /// Deployment sets it to the pod name.
    #[arg(long, env = "POD_NAME")]
    pub instance_id: Option<String>,
    /// Network whose blocks this worker filters (its Deployment is per network). Without it, only
    /// the notify stage runs.
    #[arg(long, env = "CHAINWATCH_NETWORK")]
    pub network: Option<String>,
    /// Run the notify stage in this process.
    #[arg(long, env = "CHAINWATCH_NOTIFY", default_value_t = true, action = clap::ArgAction::Set)]
    pub notify: bool,
    /// Which monitors are evaluated: those the operator admitted, or those that compile here.
    #[arg(long, env = "CHAINWATCH_ADMISSION", value_enum, default_value_t = Admission::Operator)]
    pub admission: Admission,
    /// Blocks evaluated concurrently.
    #[arg(long, env = "CHAINWATCH_FILTER_CONCURRENCY", default_value_t = 4)]
    pub filter_concurrency: usize,
    /// Notifications in flight at most, all tenants.
    #[arg(long, env = "CHAINWATCH_NOTIFY_CONCURRENCY", default_value_t = 32)]
    pub notify_concurrency: usize,
    /// Notifications of one tenant in flight at most (a slow receiver holds only these).
    #[arg(long, env = "CHAINWATCH_NOTIFY_PER_TENANT", default_value_t = 8)]
    pub notify_per_tenant: usize,
    /// Internal destinations notifications may go to (CIDR or IP, repeatable). Loopback, private,
    /// link-local and metadata addresses are refused otherwise.
    #[arg(long = "allow-destination", env = "CHAINWATCH_ALLOW_DESTINATIONS", value_delimiter = ',')]
    pub allow_destinations: Vec<Cidr>,
    /// Least time between two status writes of a Monitor or Trigger.
    #[arg(long, env = "CHAINWATCH_STATUS_INTERVAL", default_value = "5s", value_parser = chainwatch_crds::common::parse_duration)]
    pub status_interval: Duration,
    /// CPU seconds a script may use.
    #[arg(long, env = "CHAINWATCH_SCRIPT_CPU_SECONDS", default_value_t = 10)]
    pub script_cpu_seconds: u64,
    /// Address space of a script, in MiB.
    #[arg(long, env = "CHAINWATCH_SCRIPT_MEMORY_MIB", default_value_t = 1024)]
    pub script_memory_mib: u64,
    /// Where tenant scripts run: `local` (sandboxed processes of this worker: one machine,
    /// tests) or the URL of the tenants' runners, `{namespace}` standing for the runner's (the
    /// operator sets `http://chainwatch-script-runner.{namespace}.svc:8080/run`).
    #[arg(long, env = "CHAINWATCH_SCRIPT_RUNNER", default_value = "local")]
    pub script_runner: String,
    /// On SIGTERM, how long the work in progress may take to finish (a receiver that does not
    /// answer, a broker that does not acknowledge); what has not finished then is read again by
    /// the next consumer. Keep it under the pod's termination grace period (60 s).
    #[arg(long, env = "CHAINWATCH_DRAIN_TIMEOUT", default_value = "20s", value_parser = chainwatch_crds::common::parse_duration)]
    pub drain_timeout: Duration,
    #[command(flatten)]
    pub watch: WatchArgs,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub admin: AdminArgs,
}

impl WorkerArgs {
    pub fn script_runner(&self) -> ScriptRunner {
        let limits = ScriptLimits {
            cpu_seconds: self.script_cpu_seconds,
            memory_bytes: self.script_memory_mib << 20,
            ..Default::default()
        };
        match self.script_runner.as_str() {
            "local" => ScriptRunner::local(limits),
            url => ScriptRunner::remote(url, limits),
        }
    }

    pub fn destination_policy(&self) -> DestinationPolicy {
        DestinationPolicy { allow: self.allow_destinations.clone() }
    }

    pub fn stage_settings(&self) -> StageSettings {
        StageSettings {
            filter_concurrency: self.filter_concurrency,
            filter_attempts: 5,
            notify_concurrency: self.notify_concurrency,
            scripts: self.script_runner(),
            destinations: self.destination_policy(),
            drain_timeout: self.drain_timeout,
            fairness: notify::lanes::Fairness {
                per_tenant: self.notify_per_tenant,
                queued: self.notify_per_tenant * 8,
            },
        }
    }
}

/// Why the worker process stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("admin server: {0}")]
    Admin(#[from] std::io::Error),
    #[error("Kubernetes client: {0}")]
    Kube(#[from] kube::Error),
    #[error("Kafka: {0}")]
    Bus(#[from] chainwatch_platform::bus::BusError),
    #[error("{0}")]
    Config(String),
}

/// Topics the worker writes to; created if missing.
pub fn worker_topics() -> Vec<TopicSpec> {
    vec![
        TopicSpec {
            name: MATCHES_TOPIC.into(),
            partitions: 12,
            replication_factor: None,
            retention_ms: Some(7 * 24 * 3600 * 1000),
            compact: false,
        },
        // as many partitions as the matches: a tenant's key lands in the same partition number of
        // both, and the range assignor gives both to the same worker
        TopicSpec {
            name: DEFERRED_TOPIC.into(),
            partitions: 12,
            replication_factor: None,
            retention_ms: Some(7 * 24 * 3600 * 1000),
            compact: false,
        },
        TopicSpec {
            name: DEADLETTER_TOPIC.into(),
            partitions: 3,
            replication_factor: None,
            retention_ms: Some(30 * 24 * 3600 * 1000),
            compact: false,
        },
        // which dead letters `chainwatch redeliver` sent again: kept as long as they are
        TopicSpec {
            name: REDELIVERED_TOPIC.into(),
            partitions: 1,
            replication_factor: None,
            retention_ms: Some(30 * 24 * 3600 * 1000),
            compact: true,
        },
        TopicSpec {
            name: DELIVERED_TOPIC.into(),
            partitions: 6,
            replication_factor: None,
            retention_ms: Some(7 * 24 * 3600 * 1000),
            compact: true,
        },
    ]
}

/// The worker process: configuration from the API server, Kafka in and out.
pub async fn run(args: WorkerArgs, shutdown: CancellationToken) -> Result<(), RunError> {
    let scope = WatchScope::from_args(&args.watch).map_err(RunError::Config)?;
    let mut registry = Registry::default();
    let metrics = WorkerMetrics::register(&mut registry);
    let cache_metrics = CacheMetrics::register(registry.sub_registry_with_prefix("chainwatch_worker"));
    let admin = AdminServer::start(&args.admin, registry, shutdown.clone()).await?;
    let (admin_addr, ready) = (admin.addr, admin.ready.clone());
    tracing::info!(%admin_addr, network = ?args.network, notify = args.notify, watching = %scope, "worker starting");

    let client = kube::Client::try_default().await?;
    let store = ConfigStore::new(args.admission);
    let background = CancellationToken::new();
    let rebuild = tokio::spawn({
        let store = store.clone();
        let stop = background.clone();
        async move { store.run(stop).await }
    });
    let caches = tokio::select! {
        c = config::kube::Caches::start(client.clone(), &scope, CacheHooks { metrics: cache_metrics, undecodable: None }, background.clone()) => c,
        _ = shutdown.cancelled() => {
            background.cancel();
            admin.stopped().await;
            return Ok(());
        }
    };
    let feed = tokio::spawn(caches.feed(store.clone(), background.clone()));
    let config_metrics = tokio::spawn({
        let mut rx = store.subscribe();
        let metrics = metrics.clone();
        let stop = background.clone();
        async move {
            loop {
                let snap = rx.borrow_and_update().clone();
                metrics.config(
                    snap.version,
                    snap.rejected.len(),
                    snap.indexes.iter().map(|(n, i)| (n.as_str(), i.len())),
                    snap.tenants.values().map(|t| t.name.as_str()),
                );
                for (k, why) in snap.rejected.iter().take(20) {
                    tracing::debug!(monitor = %k, %why, "monitor not evaluated");
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    r = rx.changed() => if r.is_err() { return },
                }
            }
        }
    });
    // the caches listed everything: a snapshot of it, before anything is evaluated
    tokio::time::sleep(config::REBUILD_DEBOUNCE * 2).await;
    store.rebuild_now();

    let admin_client = args.kafka.admin()?;
    for t in worker_topics() {
        admin_client.ensure_topic(&t).await?;
    }
    let kafka_producer = args.kafka.producer()?;
    let producer: Arc<dyn Producer> = Arc::new(kafka_producer.clone());
    let stages = shutdown.child_token();
    // a broker that comes back without them (lost data, a new cluster): created again
    tokio::spawn({
        let stop = stages.clone();
        async move { admin_client.keep_topics(worker_topics(), Duration::from_secs(5), stop).await }
    });
    let status = Arc::new(status::KubeStatus::new(client.clone()));
    let pipeline =
        Stages::new(args.stage_settings(), producer.clone(), store.clone(), metrics.clone(), status.clone());
    let mut tasks = tokio::task::JoinSet::new();
    let mut lag_sources: Vec<(String, Arc<KafkaConsumer>)> = Vec::new();

    if let Some(network) = args.network.clone() {
        let consumer = Arc::new(args.kafka.member(
            &filter_group(&network),
            &[&blocks_topic(&network)],
            args.instance_id.as_deref(),
        )?);
        lag_sources.push((filter_group(&network), consumer.clone()));
        tasks.spawn(pipeline.filter(&network, consumer).run(stages.clone()));
    }
    if args.notify {
        let delivered = pipeline.delivered().clone();
        // every worker reads all delivered keys, outside any group
        let (reader, ends) = args.kafka.reader(DELIVERED_TOPIC)?;
        let delivered_consumer: Arc<dyn Consumer> = Arc::new(reader);
        let (caught_up_tx, caught_up_rx) = tokio::sync::oneshot::channel();
        tasks.spawn({
            let delivered = delivered.clone();
            let stop = stages.clone();
            async move { delivered.follow(delivered_consumer, Some(ends), caught_up_tx, stop).await }
        });
        let _ = caught_up_rx.await;
        // what this worker's predecessor delivered but had not written to the Triggers yet;
        // bounded, so an API server that does not answer delays notifications only so long
        let recount = status.recount(delivered.counts());
        if tokio::time::timeout(Duration::from_secs(30), recount).await.is_err() {
            tracing::warn!("recounting deliveries took over 30 s; notifying without it");
        }
        let consumer = Arc::new(args.kafka.member(
            NOTIFY_GROUP,
            &[MATCHES_TOPIC, DEFERRED_TOPIC],
            args.instance_id.as_deref(),
        )?);
        lag_sources.push((NOTIFY_GROUP.to_string(), consumer.clone()));
        tasks.spawn(pipeline.notify(consumer).run(stages.clone()));
    }
    let status_writer = tokio::spawn({
        let status = status.clone();
        let stop = stages.clone();
        let interval = args.status_interval;
        async move { status.run(interval, stop).await }
    });
    let lag = tokio::spawn({
        let metrics = metrics.clone();
        let stop = stages.clone();
        async move {
            loop {
                for (group, c) in &lag_sources {
                    // the client's metadata calls block: off the async threads
                    let c = c.clone();
                    if let Ok((assigned, lag)) =
                        tokio::task::spawn_blocking(move || (c.assigned(), c.lag())).await
                    {
                        if let Ok(n) = assigned {
                            metrics.assigned(group, n);
                        }
                        if let Ok(l) = lag {
                            metrics.lag(group, l);
                        }
                    }
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                }
            }
        }
    });
    // ready while the broker answers: without it no match is published, no offset committed,
    // and something should restart or route around this pod
    let readiness = tokio::spawn({
        let mut health = chainwatch_platform::bus::health::watch_broker(
            kafka_producer,
            Duration::from_secs(3),
            stages.clone(),
        );
        let ready = ready.clone();
        async move {
            let mut said = false;
            loop {
                let reachable = health.borrow_and_update().is_reachable();
                ready.set(reachable);
                if reachable && !said {
                    tracing::info!("worker ready");
                    said = true;
                }
                if health.changed().await.is_err() {
                    return;
                }
            }
        }
    });

    shutdown.cancelled().await;
    // one drain budget for the whole stop: the stages wait for their work until it is spent,
    // the producer flushes what is left in it (at least a second)
    let deadline = tokio::time::Instant::now() + args.drain_timeout;
    readiness.abort();
    ready.set(false);
    stages.cancel();
    while tasks.join_next().await.is_some() {}
    // the last status write, within the budget too: an API server that does not answer does not
    // hold the stop (the Triggers' delivered counts come back from the delivered-key log)
    if tokio::time::timeout_at(deadline, status_writer).await.is_err() {
        tracing::warn!("the last status write did not finish within the drain timeout");
    }
    lag.abort();
    let left = deadline.saturating_duration_since(tokio::time::Instant::now()).max(Duration::from_secs(1));
    if let Err(e) = producer.flush(left).await {
        tracing::warn!(error = %e, "flushing the producer failed");
    }
    background.cancel();
    let _ = tokio::join!(rebuild, feed, config_metrics);
    admin.stopped().await;
    tracing::info!("worker stopped");
    Ok(())
}
