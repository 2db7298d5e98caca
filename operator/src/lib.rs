//! The operator: makes Networks into running pipelines, admits Monitors and Triggers, gives
//! Tenants their namespaces and RBAC.
//!
//! Four kube-runtime controllers (Network, Monitor, Trigger, Tenant) run while this replica holds
//! the leader Lease. Each reconcile reads what the object references, validates (pure), builds the
//! desired children (pure), server-side applies them with one field manager, and writes status only
//! when it changed. Transient errors back off per object; Warning events mark failures, Normal
//! events transitions.

pub mod conditions;
pub mod context;
pub mod error;
pub mod events;
pub mod labels;
pub mod leader;
pub mod metrics;
pub mod monitor;
pub mod network;
pub mod stores;
pub mod tenant;
pub mod trigger;
pub mod watches;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chainwatch_core::monitor::AbiCache;
use chainwatch_crds::{Monitor, Network, Tenant, Trigger};
use chainwatch_platform::AdminArgs;
use chainwatch_platform::admin::AdminServer;
use chainwatch_platform::bus::kafka::KafkaArgs;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, predicates, watcher};
use kube::{Client, Resource, ResourceExt};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use context::{Context, Ctx};
use error::Error;
use events::{Events, Level};
use metrics::OperatorMetrics;
use network::build::PodSettings;
use stores::Stores;

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
    /// ServiceAccount of the worker pods.
    #[arg(long, env = "CHAINWATCH_WORKER_SERVICE_ACCOUNT", default_value = "chainwatch-worker")]
    pub worker_service_account: String,
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

/// Consecutive failures per object, for exponential backoff.
#[derive(Default)]
struct Backoffs(Mutex<HashMap<String, u32>>);

impl Backoffs {
    fn bump(&self, key: &str) -> u32 {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(key.to_string()).or_default();
        *n += 1;
        *n
    }

    fn reset(&self, key: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }
}

fn object_key<K: Resource>(o: &K) -> String {
    format!(
        "{}/{}",
        o.meta().namespace.clone().unwrap_or_default(),
        o.meta().name.clone().unwrap_or_default()
    )
}

/// A failed reconcile and when to try that object again.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
struct Failed {
    error: Error,
    retry: Duration,
}

/// Wraps a controller's reconcile function with tracing, metrics, per-object exponential backoff
/// (1 s doubling to 5 min) and a Warning event on the first failure of a streak. Returns the
/// reconciler and the error policy for [`Controller::run`].
#[allow(clippy::type_complexity)]
fn supervised<K, F, Fut>(
    controller: &'static str,
    reconcile: F,
) -> (
    impl FnMut(Arc<K>, Arc<Ctx>) -> futures::future::BoxFuture<'static, Result<Action, Failed>>,
    impl Fn(Arc<K>, &Failed, Arc<Ctx>) -> Action,
)
where
    K: Resource<DynamicType = ()> + Send + Sync + 'static,
    F: Fn(Arc<K>, Ctx) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<Action, Error>> + Send + 'static,
{
    let backoffs = Arc::new(Backoffs::default());
    let run = move |obj: Arc<K>, ctx: Arc<Ctx>| {
        let backoffs = backoffs.clone();
        let reconcile = reconcile.clone();
        Box::pin(async move {
            let key = object_key(obj.as_ref());
            let span = tracing::info_span!("reconcile", controller, object = %key);
            match tracing::Instrument::instrument(reconcile(obj.clone(), ctx.as_ref().clone()), span).await {
                Ok(action) => {
                    backoffs.reset(&key);
                    Ok(action)
                }
                Err(error) => {
                    let n = backoffs.bump(&key);
                    ctx.metrics.error(controller, error.category());
                    tracing::warn!(controller, object = %key, attempt = n, %error, "reconcile failed");
                    if n == 1 {
                        ctx.events
                            .publish(obj.as_ref(), Level::Warning, error.category(), &error.to_string())
                            .await;
                    }
                    Err(Failed { error, retry: Duration::from_secs((1u64 << (n - 1).min(9)).min(300)) })
                }
            }
        }) as futures::future::BoxFuture<'static, Result<Action, Failed>>
    };
    (run, |_obj: Arc<K>, failed: &Failed, _ctx: Arc<Ctx>| Action::requeue(failed.retry))
}

/// The Network a child belongs to, by its label.
fn network_of<K: Resource>(child: K) -> Option<ObjectRef<Network>> {
    child.meta().labels.as_ref()?.get(labels::NETWORK).map(|n| ObjectRef::new(n))
}

/// Runs the controllers until `stop`.
pub async fn run_controllers(ctx: Ctx, stop: CancellationToken) {
    let client = ctx.client.clone();
    let stores = ctx.stores.clone();
    let wc = watcher::Config::default();
    let ns = ctx.pods.namespace.clone();

    // Networks: on spec changes, on the ingester's condition changes, and when children drift
    let networks = {
        let (reader, writer) = reflector::store();
        let stream = reflector::reflector(
            writer,
            watcher(Api::<Network>::all(client.clone()), wc.clone()).default_backoff(),
        )
        .applied_objects()
        .predicate_filter(
            |n: &Network| {
                use std::hash::{Hash, Hasher};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                n.metadata.generation.hash(&mut h);
                n.metadata.deletion_timestamp.is_some().hash(&mut h);
                // the finalizer helper adds ours, then waits for that change
                n.metadata.finalizers.hash(&mut h);
                if let Some(s) = &n.status {
                    for c in
                        s.conditions.iter().filter(|c| c.type_ == "Progressing" || c.type_ == "RpcReachable")
                    {
                        (&c.type_, &c.status, &c.reason).hash(&mut h);
                    }
                }
                Some(h.finish())
            },
            Default::default(),
        );
        let (reconciler, on_error) = supervised("network", network::reconcile);
        let by_secret = stores.networks.clone();
        let children =
            watcher::Config::default().labels(&format!("{}={}", labels::MANAGED_BY, labels::MANAGER));
        Controller::for_stream(stream, reader)
            // endpoint URLs from Secrets of the operator's namespace
            .watches(Api::<Secret>::namespaced(client.clone(), &ns), wc.clone(), move |s: Secret| {
                let name = s.name_any();
                by_secret
                    .state()
                    .iter()
                    .filter(|n| {
                        n.spec.rpc.iter().any(|e| e.url_secret_ref.as_ref().is_some_and(|r| r.name == name))
                    })
                    .map(|n| ObjectRef::from_obj(n.as_ref()))
                    .collect::<Vec<_>>()
            })
            // children, by their network label (not `.owns`: a namespaced child's owner reference
            // to the cluster-scoped Network would yield a namespaced object reference)
            .watches(Api::<StatefulSet>::namespaced(client.clone(), &ns), children.clone(), network_of)
            .watches(Api::<Deployment>::namespaced(client.clone(), &ns), children.clone(), network_of)
            .watches(Api::<Service>::namespaced(client.clone(), &ns), children.clone(), network_of)
            .watches(
                Api::<HorizontalPodAutoscaler>::namespaced(client.clone(), &ns),
                children.clone(),
                network_of,
            )
            .graceful_shutdown_on(stop.clone().cancelled_owned())
            .run(reconciler, on_error, Arc::new(ctx.clone()))
            .for_each(|_| async {})
    };

    // Monitors: on spec changes and when what they reference changes
    let monitors = {
        let (reader, writer) = reflector::store();
        let stream = reflector::reflector(
            writer,
            watcher(Api::<Monitor>::all(client.clone()), wc.clone()).default_backoff(),
        )
        .applied_objects()
        .predicate_filter(predicates::generation, Default::default());
        let by_network = stores.monitors.clone();
        let by_trigger = stores.monitors.clone();
        let by_tenant = stores.monitors.clone();
        let by_config_map = stores.monitors.clone();
        let (peers, tenants) = (stores.monitors.clone(), stores.tenants.clone());
        let (reconciler, on_error) = supervised("monitor", monitor::reconcile);
        Controller::for_stream(stream, reader)
            .watches_stream(watches::spec_changes(Api::<Monitor>::all(client.clone())), move |m: Monitor| {
                monitor::over_quota_peers(peers.state(), &tenants, m.namespace(), |p: &Monitor| {
                    p.status.as_ref().is_some_and(|s| s.conditions.iter().any(|c| c.reason == "OverQuota"))
                })
            })
            .watches_stream(watches::spec_changes(Api::<Network>::all(client.clone())), move |n: Network| {
                by_network
                    .state()
                    .iter()
                    // referencing it, or not admitted (it may name a Network that is missing)
                    .filter(|m| m.spec.networks.contains(&n.name_any()) || monitor::awaiting_admission(m))
                    .map(|m| ObjectRef::from_obj(m.as_ref()))
                    .collect::<Vec<_>>()
            })
            .watches_stream(watches::spec_changes(Api::<Trigger>::all(client.clone())), move |t: Trigger| {
                by_trigger
                    .state()
                    .iter()
                    .filter(|m| {
                        m.namespace() == t.namespace()
                            && (m.spec.triggers.contains(&t.name_any()) || monitor::awaiting_admission(m))
                    })
                    .map(|m| ObjectRef::from_obj(m.as_ref()))
                    .collect::<Vec<_>>()
            })
            .watches_stream(watches::spec_changes(Api::<Tenant>::all(client.clone())), move |t: Tenant| {
                by_tenant
                    .state()
                    .iter()
                    .filter(|m| m.namespace().is_some_and(|ns| t.spec.namespaces.contains(&ns)))
                    .map(|m| ObjectRef::from_obj(m.as_ref()))
                    .collect::<Vec<_>>()
            })
            .watches(Api::<ConfigMap>::all(client.clone()), wc.clone(), move |cm: ConfigMap| {
                let name = cm.name_any();
                by_config_map
                    .state()
                    .iter()
                    .filter(|m| m.namespace() == cm.namespace())
                    .filter(|m| {
                        m.spec.addresses.iter().any(|a| {
                            a.contract_spec_from.as_ref().is_some_and(|f| f.config_map_key_ref.name == name)
                        }) || m.spec.trigger_conditions.iter().any(|s| {
                            s.source_from.as_ref().is_some_and(|f| f.config_map_key_ref.name == name)
                        })
                    })
                    .map(|m| ObjectRef::from_obj(m.as_ref()))
                    .collect::<Vec<_>>()
            })
            .graceful_shutdown_on(stop.clone().cancelled_owned())
            .run(reconciler, on_error, Arc::new(ctx.clone()))
            .for_each(|_| async {})
    };

    // Triggers: on spec changes and when Secrets of their namespace change
    let triggers = {
        let (reader, writer) = reflector::store();
        let stream = reflector::reflector(
            writer,
            watcher(Api::<Trigger>::all(client.clone()), wc.clone()).default_backoff(),
        )
        .applied_objects()
        .predicate_filter(predicates::generation, Default::default());
        let by_secret = stores.triggers.clone();
        let by_tenant = stores.triggers.clone();
        let (peers, tenants) = (stores.triggers.clone(), stores.tenants.clone());
        let (reconciler, on_error) = supervised("trigger", trigger::reconcile);
        Controller::for_stream(stream, reader)
            .watches_stream(watches::spec_changes(Api::<Trigger>::all(client.clone())), move |t: Trigger| {
                monitor::over_quota_peers(peers.state(), &tenants, t.namespace(), |p: &Trigger| {
                    p.status.as_ref().is_some_and(|s| s.conditions.iter().any(|c| c.reason == "OverQuota"))
                })
            })
            .watches(Api::<Secret>::all(client.clone()), wc.clone(), move |s: Secret| {
                let name = s.name_any();
                by_secret
                    .state()
                    .iter()
                    .filter(|t| {
                        t.namespace() == s.namespace() && t.spec.secret_refs().iter().any(|r| r.name == name)
                    })
                    .map(|t| ObjectRef::from_obj(t.as_ref()))
                    .collect::<Vec<_>>()
            })
            .watches_stream(watches::spec_changes(Api::<Tenant>::all(client.clone())), move |tn: Tenant| {
                by_tenant
                    .state()
                    .iter()
                    .filter(|t| t.namespace().is_some_and(|ns| tn.spec.namespaces.contains(&ns)))
                    .map(|t| ObjectRef::from_obj(t.as_ref()))
                    .collect::<Vec<_>>()
            })
            .graceful_shutdown_on(stop.clone().cancelled_owned())
            .run(reconciler, on_error, Arc::new(ctx.clone()))
            .for_each(|_| async {})
    };

    // Tenants: on spec changes and when Monitors or Triggers of their namespaces change
    let tenants = {
        let by_monitor = stores.tenants.clone();
        let by_trigger = stores.tenants.clone();
        let (reconciler, on_error) = supervised("tenant", tenant::reconcile);
        Controller::new(Api::<Tenant>::all(client.clone()), wc.clone())
            // counts of Monitors and of Ready ones: not on match counters
            .watches_stream(
                watches::changes(Api::<Monitor>::all(client.clone()), |m: &Monitor| {
                    let ready = m
                        .status
                        .as_ref()
                        .and_then(|s| conditions::ready(&s.conditions))
                        .map(|c| c.status.clone());
                    (m.metadata.generation, ready)
                }),
                move |m: Monitor| {
                    m.namespace()
                        .and_then(|ns| monitor::tenant_of(&by_monitor, &ns))
                        .map(|t| ObjectRef::from_obj(t.as_ref()))
                },
            )
            .watches_stream(watches::spec_changes(Api::<Trigger>::all(client.clone())), move |t: Trigger| {
                t.namespace()
                    .and_then(|ns| monitor::tenant_of(&by_trigger, &ns))
                    .map(|t| ObjectRef::from_obj(t.as_ref()))
            })
            .graceful_shutdown_on(stop.clone().cancelled_owned())
            .run(reconciler, on_error, Arc::new(ctx.clone()))
            .for_each(|_| async {})
    };
    tokio::join!(networks, monitors, triggers, tenants);
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
    stores: Stores,
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
        },
        kafka: (!args.no_kafka).then(|| args.kafka.clone()),
        metrics,
        events: Events::new(client.clone(), &args.namespace, identity),
        abis: AbiCache::default(),
        keda_installed: serves(&client, "keda.sh").await,
        rbac_available: serves(&client, "rbac.authorization.k8s.io").await,
        stores,
        client,
    }
}

/// How long the controllers may take to finish their reconciles after a stop.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// Runs `controllers` until they finish after `stop`, or until [`DRAIN_LIMIT`] after it. Now and
/// then a kube-runtime controller's graceful shutdown never completes (about one stop in eight in
/// the leader test, a second or two after start — kube-runtime's runner holds its queue until
/// its cache is ready, and a stop can come first); a stop must not hang on it. A reconcile cut
/// short is harmless: they are idempotent, and the next leader runs them again.
async fn drain(controllers: impl std::future::Future<Output = ()>, stop: &CancellationToken) {
    tokio::select! {
        () = controllers => {}
        () = async {
            stop.cancelled().await;
            tokio::time::sleep(DRAIN_LIMIT).await;
        } => tracing::warn!(limit = ?DRAIN_LIMIT, "controllers did not drain in time: stopped"),
    }
}

/// The operator process.
pub async fn run(args: OperatorArgs, shutdown: CancellationToken) -> Result<(), RunError> {
    let mut registry = Registry::default();
    let metrics = OperatorMetrics::register(&mut registry);
    let admin = AdminServer::start(&args.admin, registry, shutdown.clone()).await?;
    let (admin_addr, ready) = (admin.addr, admin.ready.clone());
    let client = Client::try_default().await?;
    let identity = args.identity.clone().unwrap_or_else(|| {
        std::env::var("HOSTNAME").unwrap_or_else(|_| format!("chainwatch-operator-{}", std::process::id()))
    });
    let image = own_image(&client, &args, &identity).await?;
    tracing::info!(%admin_addr, %identity, namespace = %args.namespace, image = %image.0, "operator starting");
    ready.set(true); // a standby replica is healthy too

    loop {
        let leading = if args.leader_election {
            let election = leader::LeaderElection {
                api: Api::<Lease>::namespaced(client.clone(), &args.namespace),
                name: args.lease_name.clone(),
                identity: identity.clone(),
                lease_duration: Duration::from_secs(args.lease_seconds.max(3)),
            };
            match election.lead(shutdown.clone()).await {
                None => break,
                Some((token, renewer)) => Some((token, renewer, election)),
            }
        } else {
            None
        };
        metrics.leader(true);
        let stop = match &leading {
            Some((token, _, _)) => token.clone(),
            None => shutdown.child_token(),
        };
        let mut tasks = tokio::task::JoinSet::new();
        let stores = Stores::start(client.clone(), stop.clone(), &mut tasks).await;
        let ctx =
            Arc::new(context(client.clone(), &args, image.clone(), &identity, metrics.clone(), stores).await);
        tracing::info!(
            keda = ctx.keda_installed,
            rbac = ctx.rbac_available,
            kafka = ctx.kafka.is_some(),
            "controllers starting"
        );
        drain(run_controllers(ctx, stop.clone()), &stop).await;
        stop.cancel();
        while tasks.join_next().await.is_some() {}
        metrics.leader(false);
        if let Some((_, renewer, election)) = leading {
            let _ = renewer.await;
            // only now that nothing reconciles any more: a standby takes over at once
            if shutdown.is_cancelled() {
                election.release().await;
            }
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
