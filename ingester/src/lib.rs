//! The block ingester: one per Network. It turns a chain into a gap-free stream of normalized
//! blocks on `chainwatch.blocks.<network>`.
//!
//! The same code runs in the ingester pod (configuration from the Network object, watched; status
//! written back to it) and inside `chainwatch dev` (configuration from a file, in-memory bus).

pub mod checkpoint;
pub mod metrics;
pub mod pipeline;
pub mod rpc;
pub mod source;
pub mod status;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chainwatch_crds::{ChainType, Network, SecretKeyRef};
use chainwatch_platform::AdminArgs;
use chainwatch_platform::admin::AdminServer;
use chainwatch_platform::bus::Producer;
use chainwatch_platform::bus::kafka::{KafkaArgs, TopicSpec};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use chainwatch_core::config::{NetworkSettings, RefProblem, SpecError, network_settings, secret_text};
use checkpoint::{CheckpointStore, FileCheckpoint};
use metrics::IngesterMetrics;
use pipeline::Ingester;
use rpc::identity::Identity;
use rpc::{RetryPolicy, RpcMetrics, RpcPool};
use source::BlockSource;
use status::{Health, IngestStatus};

/// Command-line arguments of the ingester process.
#[derive(Clone, Debug, clap::Args)]
pub struct IngesterArgs {
    /// Name of the Network to ingest.
    #[arg(long, env = "CHAINWATCH_NETWORK")]
    pub network: String,
    /// Directory of the checkpoint file (the StatefulSet's volume).
    #[arg(long, env = "CHAINWATCH_CHECKPOINT_DIR", default_value = "/var/lib/chainwatch")]
    pub checkpoint_dir: PathBuf,
    /// Namespace of the Secrets that `urlSecretRef`s name (the operator's namespace).
    #[arg(long, env = "CHAINWATCH_SECRETS_NAMESPACE", default_value = "chainwatch-system")]
    pub secrets_namespace: String,
    /// Least time between two status writes to the Network.
    #[arg(long, env = "CHAINWATCH_STATUS_INTERVAL", default_value = "5s", value_parser = chainwatch_crds::common::parse_duration)]
    pub status_interval: Duration,
    /// Blocks fetched concurrently.
    #[arg(long, env = "CHAINWATCH_FETCH_CONCURRENCY", default_value_t = 8)]
    pub fetch_concurrency: usize,
    /// Blocks sent and not yet acknowledged at most.
    #[arg(long, env = "CHAINWATCH_MAX_IN_FLIGHT", default_value_t = 64)]
    pub max_in_flight: usize,
    /// How often an endpoint in use is asked again which chain it serves (an endpoint of another
    /// chain is asked again after at most 1 min).
    #[arg(long, env = "CHAINWATCH_VERIFY_ENDPOINTS_EVERY", default_value = "5m", value_parser = chainwatch_crds::common::parse_duration)]
    pub verify_endpoints_every: Duration,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub admin: AdminArgs,
}

/// Builds the block source of a runtime configuration. Its endpoints are verified to serve the
/// Network's chain before use and every `recheck` (default [`rpc::identity::RECHECK`]).
pub fn build_source(
    name: &str,
    rt: &NetworkSettings,
    rpc_metrics: RpcMetrics,
    recheck: Option<Duration>,
) -> Result<Arc<dyn BlockSource>, String> {
    let pool = RpcPool::new(name, rt.endpoints.clone(), RetryPolicy::default(), rpc_metrics);
    let verifying = move |id: Identity| pool.verifying(if let Some(d) = recheck { id.every(d) } else { id });
    match rt.chain {
        ChainType::Evm => Ok(Arc::new(source::evm::EvmSource::new(
            verifying(Identity::evm(rt.chain_id)),
            rt.confirmations,
            rt.finality,
        ))),
        ChainType::Stellar => Ok(Arc::new(source::stellar::StellarSource::new(
            verifying(Identity::stellar(rt.network_passphrase.clone())),
            rt.confirmations,
        ))),
        other => Err(format!("ingesting {other} networks is not supported yet (evm and stellar are)")),
    }
}

/// What a network's ingestion needs besides its configuration.
#[derive(Clone)]
pub struct Components {
    pub producer: Arc<dyn Producer>,
    pub checkpoint: Arc<dyn CheckpointStore>,
    pub rpc_metrics: RpcMetrics,
    pub metrics: IngesterMetrics,
    pub status: watch::Sender<IngestStatus>,
    /// Overrides of the fetch settings (from the command line).
    pub fetch_concurrency: Option<usize>,
    pub max_in_flight: Option<usize>,
    /// How often a used endpoint is asked again which chain it serves (`None`: every 5 min).
    pub endpoint_recheck: Option<Duration>,
}

/// Runs ingestion from the configuration channel until `shutdown`: a new configuration stops the
/// running ingestion (draining it and saving the checkpoint) and starts it again with the new one.
pub async fn supervise(
    name: String,
    mut config: watch::Receiver<Option<Result<NetworkSettings, SpecError>>>,
    c: Components,
    shutdown: CancellationToken,
) -> Result<(), pipeline::IngestError> {
    loop {
        let current = config.borrow_and_update().clone();
        match current {
            None => {}
            Some(Err(e)) => {
                tracing::error!(network = %name, error = %e, "the Network cannot be ingested");
                c.status.send_modify(|s| s.progressing = Health::failing("InvalidSpec", &e.to_string()));
            }
            Some(Ok(rt)) => match build_source(&name, &rt, c.rpc_metrics.clone(), c.endpoint_recheck) {
                Err(e) => c.status.send_modify(|s| s.progressing = Health::failing("Unsupported", &e)),
                Ok(source) => {
                    let mut settings = pipeline::Settings::of(&name, &rt);
                    if let Some(n) = c.fetch_concurrency {
                        settings.fetch_concurrency = n;
                    }
                    if let Some(n) = c.max_in_flight {
                        settings.max_in_flight = n;
                    }
                    let ingester = Ingester {
                        settings,
                        source,
                        producer: c.producer.clone(),
                        checkpoint: c.checkpoint.clone(),
                        status: c.status.clone(),
                        metrics: c.metrics.clone(),
                    };
                    let stop = shutdown.child_token();
                    let run = ingester.run(stop.clone());
                    tokio::pin!(run);
                    loop {
                        tokio::select! {
                            r = &mut run => {
                                r?;
                                if shutdown.is_cancelled() {
                                    return Ok(());
                                }
                                break;
                            }
                            changed = config.changed() => {
                                if changed.is_err() {
                                    stop.cancel();
                                    continue;
                                }
                                let new = config.borrow().clone();
                                if new.as_ref().and_then(|r| r.as_ref().ok()) != Some(&rt) {
                                    tracing::info!(network = %name, "the Network changed: restarting ingestion with the new settings");
                                    stop.cancel();
                                }
                            }
                        }
                    }
                    continue;
                }
            },
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = config.changed() => if r.is_err() { return Ok(()) },
        }
    }
}

/// Reads a Secret key (decoded by the one rule, `chainwatch_core::config::secret_text`).
async fn read_secret(api: &Api<Secret>, namespace: &str, r: &SecretKeyRef) -> Result<String, RefProblem> {
    let (ns, name, key) = (namespace.to_string(), r.name.clone(), r.key.clone());
    let secret = api
        .get_opt(&r.name)
        .await
        .map_err(|e| RefProblem::Unreadable {
            what: format!("Secret {ns}/{name}"),
            why: format!("cannot be read: {e}"),
        })?
        .ok_or_else(|| RefProblem::SecretNotFound { namespace: ns.clone(), name: name.clone() })?;
    let bytes = r.value_in(&secret).ok_or_else(|| RefProblem::SecretKeyNotFound {
        namespace: ns.clone(),
        name: name.clone(),
        key: key.clone(),
    })?;
    secret_text(&bytes).ok_or(RefProblem::SecretNotText { namespace: ns, name, key })
}

/// The ingester process: follows its Network on the API server, publishes to Kafka.
/// How often the block topic's presence on the broker is checked (and the topic created again).
const KEEP_TOPICS_EVERY: Duration = Duration::from_secs(5);

pub async fn run(args: IngesterArgs, shutdown: CancellationToken) -> Result<(), RunError> {
    let mut registry = Registry::default();
    let rpc_metrics = RpcMetrics::register(&mut registry);
    let metrics = IngesterMetrics::register(&mut registry);
    let admin = AdminServer::start(&args.admin, registry, shutdown.clone()).await?;
    let (admin_addr, ready) = (admin.addr, admin.ready.clone());
    tracing::info!(%admin_addr, network = %args.network, "ingester starting");

    let client = kube::Client::try_default().await?;
    let networks: Api<Network> = Api::all(client.clone());
    let secrets: Api<Secret> = Api::namespaced(client, &args.secrets_namespace);
    let kafka_producer = args.kafka.producer()?;
    let producer = Arc::new(kafka_producer.clone());
    let kafka_admin = args.kafka.admin()?;

    let (config_tx, config_rx) = watch::channel(None);
    let topic_ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (status_tx, status_rx) = watch::channel(IngestStatus::default());
    let name = args.network.clone();

    // follow the Network object
    let follow = {
        let networks = networks.clone();
        let name = name.clone();
        let shutdown = shutdown.clone();
        let ready = ready.clone();
        let topic_ready = topic_ready.clone();
        async move {
            let stream =
                watcher(networks, watcher::Config::default().fields(&format!("metadata.name={name}")))
                    .applied_objects();
            futures::pin_mut!(stream);
            let mut topic_ensured = false;
            let keeping = shutdown.child_token();
            loop {
                let next = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    n = stream.next() => n,
                };
                match next {
                    None => return,
                    Some(Err(e)) => {
                        tracing::warn!(network = %name, error = %e, "watching the Network failed; retrying")
                    }
                    Some(Ok(network)) => {
                        if network.metadata.deletion_timestamp.is_some() {
                            keeping.cancel();
                        }
                        let mut resolved = std::collections::HashMap::new();
                        for r in network.spec.rpc.iter().filter_map(|e| e.url_secret_ref.as_ref()) {
                            resolved.insert(
                                (r.name.clone(), r.key.clone()),
                                read_secret(&secrets, &args.secrets_namespace, r).await,
                            );
                        }
                        let lookup = |r: &SecretKeyRef| {
                            resolved.get(&(r.name.clone(), r.key.clone())).cloned().unwrap_or_else(|| {
                                Err(RefProblem::Unreadable {
                                    what: format!("Secret {}", r.name),
                                    why: "not read".into(),
                                })
                            })
                        };
                        let rt = network_settings(&network.spec, &lookup);
                        if let Ok(rt) = &rt
                            && !topic_ensured
                        {
                            let spec = TopicSpec {
                                name: chainwatch_platform::bus::blocks_topic(&name),
                                partitions: rt.partitions,
                                replication_factor: rt.replication_factor,
                                retention_ms: rt.retention.map(|d| d.as_millis() as i64),
                                compact: false,
                            };
                            match kafka_admin.ensure_topic(&spec).await {
                                Ok(_) => {
                                    topic_ensured = true;
                                    // a broker that comes back without it: created again, until
                                    // the Network is deleted (the operator deletes the topic then)
                                    let admin = kafka_admin.clone();
                                    let stop = keeping.clone();
                                    tokio::spawn(async move {
                                        admin.keep_topics(vec![spec], KEEP_TOPICS_EVERY, stop).await
                                    });
                                    topic_ready.store(true, std::sync::atomic::Ordering::SeqCst);
                                    ready.set(true);
                                }
                                Err(e) => {
                                    tracing::warn!(network = %name, error = %e, "cannot reach Kafka to check the block topic")
                                }
                            }
                        }
                        config_tx.send_replace(Some(rt));
                    }
                }
            }
        }
    };
    let follow = tokio::spawn(follow);
    // the broker: in the status ("unreachable since …") and in readiness — not ready while the
    // blocks cannot be published, so that something restarts or routes around this pod
    let broker = tokio::spawn({
        let mut health = chainwatch_platform::bus::health::watch_broker(
            kafka_producer,
            Duration::from_secs(3),
            shutdown.clone(),
        );
        let status = status_tx.clone();
        let ready = ready.clone();
        let shutdown = shutdown.clone();
        let topic_ready = topic_ready.clone();
        async move {
            loop {
                let state = health.borrow_and_update().clone();
                use chainwatch_platform::bus::health::BrokerState;
                let h = match &state {
                    BrokerState::Unknown => Health::default(),
                    BrokerState::Reachable => Health::ok("Reachable", "the broker answers"),
                    BrokerState::Unreachable { since, error } => Health::failing(
                        "BrokerUnreachable",
                        &format!("broker unreachable since {} ({error})", status::rfc3339(*since)),
                    ),
                };
                status.send_modify(|s| s.broker = h);
                ready.set(state.is_reachable() && topic_ready.load(std::sync::atomic::Ordering::SeqCst));
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    r = health.changed() => if r.is_err() { return },
                }
            }
        }
    });
    let status_writer = tokio::spawn(status::write_status(
        networks,
        name.clone(),
        status_rx,
        args.status_interval,
        shutdown.clone(),
    ));

    let components = Components {
        producer: producer.clone(),
        checkpoint: Arc::new(FileCheckpoint::new(&args.checkpoint_dir, &name)),
        rpc_metrics,
        metrics,
        status: status_tx,
        fetch_concurrency: Some(args.fetch_concurrency),
        max_in_flight: Some(args.max_in_flight),
        endpoint_recheck: Some(args.verify_endpoints_every),
    };
    let result = supervise(name.clone(), config_rx, components, shutdown.clone()).await;
    ready.set(false);
    shutdown.cancel();
    if let Err(e) = producer.flush(Duration::from_secs(30)).await {
        tracing::warn!(error = %e, "flushing the producer failed");
    }
    let _ = follow.await;
    let _ = status_writer.await;
    let _ = broker.await;
    admin.stopped().await;
    result?;
    tracing::info!(network = %name, "ingester stopped");
    Ok(())
}

/// Why the ingester process stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("admin server: {0}")]
    Admin(#[from] std::io::Error),
    #[error("Kubernetes client: {0}")]
    Kube(#[from] kube::Error),
    #[error("Kafka: {0}")]
    Bus(#[from] chainwatch_platform::bus::BusError),
    #[error(transparent)]
    Ingest(#[from] pipeline::IngestError),
}
