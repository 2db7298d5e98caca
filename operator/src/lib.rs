//! The operator: makes Networks into running pipelines, admits Monitors and Triggers, gives
//! Tenants their namespaces and RBAC.
//!
//! While this replica holds the leader Lease, four controllers run ([`network`], [`monitor`],
//! [`trigger`], [`tenant`]), each a pipeline: read what the object refers to through the shared
//! [`caches`], decide with `chainwatch_core::config` (pure), build the desired children (pure),
//! server-side apply them with one field manager, and write status only when it changed.
//! Transient errors back off per object ([`supervise`]); Warning events mark failures, Normal
//! events transitions.

pub mod caches;
pub mod census;
pub mod changes;
pub mod children;
pub mod conditions;
pub mod context;
pub mod error;
pub mod events;
pub mod labels;
pub mod leader;
pub mod metrics;
pub mod monitor;
pub mod netpol;
pub mod network;
pub mod supervise;
pub mod tenant;
pub mod trigger;
pub mod undecodable;

use std::sync::Arc;
use std::time::Duration;

use chainwatch_core::monitor::AbiCache;
use chainwatch_platform::AdminArgs;
use chainwatch_platform::admin::AdminServer;
use chainwatch_platform::bus::kafka::KafkaArgs;
use chainwatch_platform::cache::{CacheHooks, WatchArgs, WatchScope};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Client;
use kube::api::Api;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use caches::Caches;
use context::{Context, Ctx};
use events::Events;
use metrics::OperatorMetrics;
use network::build::PodSettings;

/// Command-line arguments of the operator.
#[derive(Clone, Debug, clap::Args)]
pub struct OperatorArgs {
    /// Namespace of the operator and of the pipelines it creates.
    #[arg(long, env = "POD_NAMESPACE", default_value = "chainwatch-system")]
    pub namespace: String,
    /// Image of the ingester and worker pods. Default: the image of the operator's own Pod (one
    /// image runs every chainwatch binary).
    #[arg(long, env = "CHAINWATCH_IMAGE")]
    pub image: Option<String>,
    /// imagePullPolicy of those pods.
    #[arg(long, env = "CHAINWATCH_IMAGE_PULL_POLICY")]
    pub image_pull_policy: Option<String>,
    /// This operator's own ServiceAccount (bound, with the workers', to read the Secrets and
    /// ConfigMaps of tenant namespaces).
    #[arg(long, env = "CHAINWATCH_SERVICE_ACCOUNT", default_value = "chainwatch-operator")]
    pub service_account: String,
    /// ServiceAccount of the worker pods.
    #[arg(long, env = "CHAINWATCH_WORKER_SERVICE_ACCOUNT", default_value = "chainwatch-worker")]
    pub worker_service_account: String,
    /// Ports pods reach the API server on, after the Service's translation (NetworkPolicies
    /// allow them): 443 for most managed clusters, 6443 for kubeadm and kind.
    #[arg(long = "api-server-port", env = "CHAINWATCH_API_SERVER_PORTS", value_delimiter = ',', default_values_t = [443u16, 6443])]
    pub api_server_ports: Vec<u16>,
    /// A Secret of `--namespace` with the Kafka credentials (SASL username and password, TLS
    /// certificates): mounted into every ingester and worker, whose pods roll when it changes.
    /// Mount it into the operator too and point `--kafka-credentials-dir` at it.
    #[arg(long, env = "CHAINWATCH_KAFKA_SECRET")]
    pub kafka_secret: Option<String>,
    /// A ConfigMap of `--namespace` whose `kafka-bootstrap` and `kafka-options` override the flags
    /// of the same meaning, read at every reconcile: an edit reaches the topic administration at
    /// once and rolls the pipelines, without restarting the operator.
    #[arg(long, env = "CHAINWATCH_KAFKA_CONFIG_MAP")]
    pub kafka_config_map: Option<String>,
    /// Internal destinations workers may notify (passed to them).
    #[arg(long = "allow-destination", env = "CHAINWATCH_ALLOW_DESTINATIONS")]
    pub allow_destinations: Option<String>,
    /// Hold a leader Lease before reconciling (run two replicas safely).
    #[arg(long, env = "CHAINWATCH_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// Name of the leader Lease.
    #[arg(long, env = "CHAINWATCH_LEASE_NAME", default_value = "chainwatch-operator")]
    pub lease_name: String,
    /// Lease duration in seconds.
    #[arg(long, env = "CHAINWATCH_LEASE_SECONDS", default_value_t = 15)]
    pub lease_seconds: u64,
    /// This replica's identity (default: the host name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Do not talk to Kafka (topics are then managed elsewhere).
    #[arg(long, env = "CHAINWATCH_NO_KAFKA", default_value_t = false)]
    pub no_kafka: bool,
    #[command(flatten)]
    pub watch: WatchArgs,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub admin: AdminArgs,
}

/// Why the operator stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("admin server: {0}")]
    Admin(#[from] std::io::Error),
    #[error("Kubernetes client: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Config(String),
}

/// The image (and pull policy) ingesters and workers run: `--image`, or the operator's own.
async fn own_image(
    client: &Client,
    args: &OperatorArgs,
    identity: &str,
) -> Result<(String, Option<String>), RunError> {
    if let Some(image) = &args.image {
        return Ok((image.clone(), args.image_pull_policy.clone()));
    }
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), &args.namespace);
    let pod = pods.get(identity).await.map_err(|e| {
        RunError::Config(format!("cannot read this operator's Pod {}/{identity} to learn its image ({e}): set --image / CHAINWATCH_IMAGE, or POD_NAME and POD_NAMESPACE", args.namespace))
    })?;
    let containers = pod.spec.map(|s| s.containers).unwrap_or_default();
    let c = containers
        .iter()
        .find(|c| c.name == "operator")
        .or(containers.first())
        .ok_or_else(|| RunError::Config("the operator's Pod has no containers".into()))?;
    let image =
        c.image.clone().ok_or_else(|| RunError::Config("the operator's container has no image".into()))?;
    Ok((image, args.image_pull_policy.clone().or_else(|| c.image_pull_policy.clone())))
}

/// Runs the four controllers until `stop` (each drains its reconciles after it).
pub async fn run_controllers(ctx: Ctx, stop: CancellationToken) {
    tokio::join!(
        network::controller(ctx.clone(), stop.clone()),
        monitor::controller(ctx.clone(), stop.clone()),
        trigger::controller(ctx.clone(), stop.clone()),
        tenant::controller(ctx, stop),
    );
}

/// Whether the API server serves a group.
async fn serves(client: &Client, group: &str) -> bool {
    match kube::discovery::Discovery::new(client.clone()).filter(&[group]).run().await {
        Ok(d) => d.has_group(group),
        Err(e) => {
            tracing::warn!(%group, error = %e, "discovery failed");
            false
        }
    }
}

/// Builds the shared context.
pub async fn context(
    client: Client,
    args: &OperatorArgs,
    image: (String, Option<String>),
    identity: &str,
    metrics: OperatorMetrics,
    caches: Caches,
) -> Context {
    Context {
        pods: PodSettings {
            image: image.0,
            image_pull_policy: image.1,
            namespace: args.namespace.clone(),
            kafka_bootstrap: args.kafka.bootstrap.clone(),
            kafka_options: (!args.kafka.options.is_empty()).then(|| {
                args.kafka.options.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
            }),
            allow_destinations: args.allow_destinations.clone(),
            worker_service_account: args.worker_service_account.clone(),
            api_server_ports: args.api_server_ports.clone(),
            kafka_secret: args
                .kafka_secret
                .clone()
                .map(|name| network::build::KafkaSecret { name, version: None }),
            kafka_settings_version: None,
            watch_namespaces: caches.scope.flag_value(),
        },
        kafka_config_map: args.kafka_config_map.clone(),
        kafka: (!args.no_kafka).then(|| args.kafka.clone()),
        metrics,
        events: Events::new(client.clone(), &args.namespace, identity),
        abis: AbiCache::default(),
        keda_installed: serves(&client, "keda.sh").await,
        rbac_available: serves(&client, "rbac.authorization.k8s.io").await,
        service_account: args.service_account.clone(),
        caches,
        client,
    }
}

/// How long the controllers may take to finish their reconciles after a stop.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// Runs `controllers` until they finish after `stop`, or until [`DRAIN_LIMIT`] after it: a stop
/// must not hang on a reconcile stuck on a slow API server. When the leader lease was `lost`, the
/// limit is the election's (shorter: a new leader may soon take over). A reconcile cut short is
/// harmless: they are idempotent, and the next leader runs them again.
async fn drain(
    controllers: impl std::future::Future<Output = ()>,
    stop: &CancellationToken,
    lost: Option<(CancellationToken, Duration)>,
) {
    let after_loss = async {
        match lost {
            Some((lost, limit)) => {
                lost.cancelled().await;
                tokio::time::sleep(limit).await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = controllers => {}
        () = async {
            stop.cancelled().await;
            tokio::time::sleep(DRAIN_LIMIT).await;
        } => tracing::warn!(limit = ?DRAIN_LIMIT, "controllers did not drain in time: stopped"),
        () = after_loss => tracing::warn!("controllers did not stop in time after the lease was lost: stopped"),
    }
}

/// The operator process.
pub async fn run(args: OperatorArgs, shutdown: CancellationToken) -> Result<(), RunError> {
    let scope = WatchScope::from_args(&args.watch).map_err(RunError::Config)?;
    let mut registry = Registry::default();
    let metrics = OperatorMetrics::register(&mut registry);
    let admin = AdminServer::start(&args.admin, registry, shutdown.clone()).await?;
    let (admin_addr, ready) = (admin.addr, admin.ready.clone());
    let client = Client::try_default().await?;
    let identity = args.identity.clone().unwrap_or_else(|| {
        std::env::var("HOSTNAME").unwrap_or_else(|_| format!("chainwatch-operator-{}", std::process::id()))
    });
    let image = own_image(&client, &args, &identity).await?;
    tracing::info!(%admin_addr, %identity, namespace = %args.namespace, image = %image.0, watching = %scope, "operator starting");
    ready.set(true); // a standby replica is healthy too

    loop {
        let leading = if args.leader_election {
            let election = leader::LeaderElection::new(
                Api::<Lease>::namespaced(client.clone(), &args.namespace),
                &args.lease_name,
                &identity,
                Duration::from_secs(args.lease_seconds.max(3)),
            );
            match election.lead(shutdown.clone()).await {
                None => break,
                Some(leadership) => Some((leadership, election.drain_after_loss())),
            }
        } else {
            None
        };
        metrics.leader(true);
        let stop = match &leading {
            Some((leadership, _)) => leadership.stop.clone(),
            None => shutdown.child_token(),
        };
        let lost = leading.as_ref().map(|(l, after)| (l.lost.clone(), *after));
        let mut tasks = tokio::task::JoinSet::new();
        let (undecodable_tx, undecodable_rx) = tokio::sync::mpsc::unbounded_channel();
        let hooks = CacheHooks { metrics: metrics.cache.clone(), undecodable: Some(undecodable_tx) };
        let caches =
            Caches::start(client.clone(), &args.namespace, &scope, hooks, stop.clone(), &mut tasks).await;
        let ctx =
            Arc::new(context(client.clone(), &args, image.clone(), &identity, metrics.clone(), caches).await);
        tasks.spawn(undecodable::report(client.clone(), ctx.events.clone(), undecodable_rx, stop.clone()));
        tasks.spawn(census::run(ctx.clone(), Duration::from_secs(5), stop.clone()));
        tracing::info!(
            keda = ctx.keda_installed,
            rbac = ctx.rbac_available,
            kafka = ctx.kafka.is_some(),
            "controllers starting"
        );
        drain(run_controllers(ctx, stop.clone()), &stop, lost).await;
        stop.cancel();
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        metrics.leader(false);
        if let Some((leadership, _)) = leading {
            // only now that nothing reconciles any more: a standby takes over at once
            leadership.step_down(shutdown.is_cancelled()).await;
        }
        if shutdown.is_cancelled() {
            break;
        }
        tracing::warn!("leadership lost: waiting to lead again");
    }
    ready.set(false);
    admin.stopped().await;
    tracing::info!("operator stopped");
    Ok(())
}
