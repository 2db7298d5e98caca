//! The Network controller, as a pipeline: read the settings
//! ([`chainwatch_core::config::network_settings`], endpoint Secrets from the cache) → ensure the
//! block topic → build the ingester and worker objects ([`build`], pure) → apply them and delete the
//! ones no longer desired → decide `Ready` ([`status`], pure) and write it. A finalizer deletes (or
//! keeps) the topic per `kafka.deletionPolicy`.

pub mod build;
pub mod kafka;
pub mod mapping;
pub mod pods;
pub mod policies;
pub mod status;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chainwatch_core::config::{Catalog, NetworkSettings, SpecError, network_settings};
use chainwatch_crds::Network;
use chainwatch_crds::network::TopicDeletionPolicy;
use chainwatch_crds::network::conditions::{PROGRESSING, TOPIC_READY};
use chainwatch_platform::bus::blocks_topic;
use chainwatch_platform::bus::kafka::{KafkaArgs, TopicSpec};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Pod, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, Role, RoleBinding};
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::{Controller, watcher};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::changes::{changed, mapped, own};
use crate::children::{apply, delete_others};
use crate::conditions::{self, Check};
use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::events::Level;
use crate::labels::{self, MANAGER};
use crate::supervise::supervised;
use build::{PodSettings, Scaler};

/// Finalizer that deletes (or keeps) the Kafka topic.
pub const FINALIZER: &str = "chainwatch.io/kafka-topic";

pub fn keda_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("keda.sh", "v1alpha1", "ScaledObject"),
        "scaledobjects",
    )
}

/// What of a Network its controller reacts to: the spec, deletion and finalizers (the finalizer
/// helper adds ours, then waits for that change), and the ingester's conditions — not the head
/// it reports every few seconds.
fn reacts_to(n: &Network) -> impl PartialEq + use<> {
    let ingester: Vec<(String, String, String)> = n
        .status
        .iter()
        .flat_map(|s| s.conditions.iter())
        .filter(|c| c.type_ == PROGRESSING || c.type_ == "RpcReachable")
        .map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone()))
        .collect();
    (n.metadata.generation, n.metadata.deletion_timestamp.is_some(), n.metadata.finalizers.clone(), ingester)
}

/// Runs the controller until `stop`.
pub async fn controller(ctx: Ctx, stop: CancellationToken) {
    let c = ctx.caches.clone();
    let ns = ctx.pods.namespace.clone();
    let client = ctx.client.clone();
    let (reconciler, on_error) = supervised("network", reconcile);
    let store = c.networks.store();
    let by_secret = store.clone();
    let own_ns = ns.clone();
    let kafka_secret = ctx.pods.kafka_secret.as_ref().map(|k| k.name.clone());
    let (by_config_map, cm_ns, kafka_config_map) = (store.clone(), ns.clone(), ctx.kafka_config_map.clone());
    let children = watcher::Config::default().labels(&format!("{}={}", labels::MANAGED_BY, MANAGER));
    Controller::for_stream(futures::stream::pending(), store.clone())
        .reconcile_on(own(changed(c.networks.subscribe(), reacts_to)))
        // endpoint URLs from Secrets of the operator's namespace
        .reconcile_on(mapped(
            changed(c.secrets.subscribe(), |s| (s.data.clone(), s.string_data.clone())),
            move |ch| {
                if ch.object().metadata.namespace.as_deref() == Some(own_ns.as_str()) {
                    mapping::for_secret(&by_secret.state(), ch.object(), kafka_secret.as_deref())
                } else {
                    Vec::new()
                }
            },
        ))
        // the Kafka settings every pipeline is given
        .reconcile_on(mapped(changed(c.config_maps.subscribe(), |m| m.data.clone()), move |ch| {
            let m = &ch.object().metadata;
            if m.namespace.as_deref() == Some(cm_ns.as_str())
                && m.name.is_some()
                && m.name == kafka_config_map
            {
                mapping::all(&by_config_map.state())
            } else {
                Vec::new()
            }
        }))
        .watches(Api::<StatefulSet>::namespaced(client.clone(), &ns), children.clone(), mapping::network_of)
        .watches(Api::<Deployment>::namespaced(client.clone(), &ns), children.clone(), mapping::network_of)
        .watches(Api::<Service>::namespaced(client.clone(), &ns), children.clone(), mapping::network_of)
        .watches(
            Api::<HorizontalPodAutoscaler>::namespaced(client.clone(), &ns),
            children.clone(),
            mapping::network_of,
        )
        .watches(Api::<NetworkPolicy>::namespaced(client.clone(), &ns), children.clone(), mapping::network_of)
        .watches(
            Api::<PodDisruptionBudget>::namespaced(client.clone(), &ns),
            children.clone(),
            mapping::network_of,
        )
        // the pipelines' pods: one that cannot run (crash loop, image pull, scheduling) shows at once
        .watches(Api::<Pod>::namespaced(client.clone(), &ns), children, mapping::network_of)
        .graceful_shutdown_on(stop.cancelled_owned())
        .run(reconciler, on_error, Arc::new(ctx))
        .for_each(|_| async {})
        .await;
}

/// The kinds of a Network's children, in deletion order (dependents first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Child {
    Deployment,
    Hpa,
    ScaledObject,
    StatefulSet,
    Service,
    ServiceAccount,
    DisruptionBudget,
    NetworkPolicy,
    RoleBinding,
    Role,
}

impl Child {
    const ALL: [Child; 10] = [
        Child::Deployment,
        Child::Hpa,
        Child::ScaledObject,
        Child::StatefulSet,
        Child::Service,
        Child::ServiceAccount,
        Child::DisruptionBudget,
        Child::NetworkPolicy,
        Child::RoleBinding,
        Child::Role,
    ];

    /// Whether the API server serves the kind (KEDA is optional; RBAC always is in a cluster).
    fn served(self, ctx: &Ctx) -> bool {
        match self {
            Child::ScaledObject => ctx.keda_installed,
            Child::RoleBinding | Child::Role => ctx.rbac_available,
            _ => true,
        }
    }
}

/// Deletes the children of `network` of the given kinds whose name is not in `keep`; returns
/// `Kind/name` of each deleted one.
async fn prune(ctx: &Ctx, network: &str, kinds: &[Child], keep: &BTreeSet<String>) -> Result<Vec<String>> {
    let (client, ns) = (ctx.client.clone(), ctx.pods.namespace.as_str());
    let sel = labels::network_children(network);
    let mut removed = Vec::new();
    for kind in kinds.iter().filter(|k| k.served(ctx)) {
        removed.extend(match kind {
            Child::Deployment => {
                delete_others(&Api::<Deployment>::namespaced(client.clone(), ns), &sel, keep).await?
            }
            Child::Hpa => {
                delete_others(&Api::<HorizontalPodAutoscaler>::namespaced(client.clone(), ns), &sel, keep)
                    .await?
            }
            Child::ScaledObject => {
                let api = Api::<DynamicObject>::namespaced_with(client.clone(), ns, &keda_resource());
                delete_scaled_objects(&api, &sel, keep).await?
            }
            Child::StatefulSet => {
                delete_others(&Api::<StatefulSet>::namespaced(client.clone(), ns), &sel, keep).await?
            }
            Child::Service => {
                delete_others(&Api::<Service>::namespaced(client.clone(), ns), &sel, keep).await?
            }
            Child::ServiceAccount => {
                delete_others(&Api::<ServiceAccount>::namespaced(client.clone(), ns), &sel, keep).await?
            }
            Child::DisruptionBudget => {
                delete_others(&Api::<PodDisruptionBudget>::namespaced(client.clone(), ns), &sel, keep).await?
            }
            Child::NetworkPolicy => {
                delete_others(&Api::<NetworkPolicy>::namespaced(client.clone(), ns), &sel, keep).await?
            }
            Child::RoleBinding => {
                delete_others(&Api::<RoleBinding>::namespaced(client.clone(), ns), &sel, keep).await?
            }
            Child::Role => delete_others(&Api::<Role>::namespaced(client.clone(), ns), &sel, keep).await?,
        });
    }
    Ok(removed)
}

/// KEDA's kind is dynamic: the same as [`delete_others`], by hand.
async fn delete_scaled_objects(
    api: &Api<DynamicObject>,
    selector: &str,
    keep: &BTreeSet<String>,
) -> Result<Vec<String>> {
    let list = match api.list(&kube::api::ListParams::default().labels(selector)).await {
        Ok(l) => l,
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(vec![]),
        Err(source) => return Err(Error::List { kind: "ScaledObject".into(), source }),
    };
    let mut deleted = Vec::new();
    for o in list.items.into_iter().filter(|o| !keep.contains(&o.name_any())) {
        match api.delete(&o.name_any(), &kube::api::DeleteParams::background()).await {
            Ok(_) => deleted.push(format!("ScaledObject/{}", o.name_any())),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(source) => {
                return Err(Error::Delete { kind: "ScaledObject".into(), name: o.name_any(), source });
            }
        }
    }
    Ok(deleted)
}

/// Reconciles a Network (with its finalizer).
pub async fn reconcile(network: Arc<Network>, ctx: Ctx) -> Result<Action> {
    let api: Api<Network> = Api::all(ctx.client.clone());
    let result = finalizer(&api, FINALIZER, network, |event| async {
        match event {
            Finalizer::Apply(n) => apply_network(n, ctx.clone()).await,
            Finalizer::Cleanup(n) => cleanup(n, ctx.clone()).await,
        }
    })
    .await;
    tracing::debug!(?result, "network reconciled");
    match result {
        // a second cleanup of a Network that is already gone (two queued reconciles): done
        Err(kube::runtime::finalizer::Error::RemoveFinalizer(kube::Error::Api(e))) if e.code == 404 => {
            Ok(Action::await_change())
        }
        other => other.map_err(|e| match e {
            kube::runtime::finalizer::Error::ApplyFailed(e)
            | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
            other => Error::Finalizer(other.to_string()),
        }),
    }
}

/// Step 1: the spec as the ingester will run it, endpoint Secrets read from the cache.
fn read_settings(n: &Network, ctx: &Ctx) -> (std::result::Result<NetworkSettings, SpecError>, Vec<Check>) {
    let ns = &ctx.pods.namespace;
    let settings = network_settings(&n.spec, &|r| ctx.caches.secret_value(ns, r));
    let problems = match &settings {
        Ok(_) => Vec::new(),
        Err(e) => {
            let reason = if e.transient {
                conditions::REFERENCE_PENDING
            } else if e.field.contains("urlSecretRef") {
                "SecretNotFound"
            } else {
                "InvalidSpec"
            };
            vec![Check::new(
                "Ready",
                false,
                reason,
                format!("{}: {} (Secrets of namespace {ns})", e.field, e.message),
            )]
        }
    };
    (settings, problems)
}

/// Step 2: the block topic; returns its condition and the partitions it has.
async fn ensure_topic(
    n: &Network,
    settings: Option<&NetworkSettings>,
    kafka: Option<&KafkaArgs>,
) -> (Check, i32) {
    let topic = blocks_topic(&n.name_any());
    let wanted = settings.map(|s| s.partitions).unwrap_or(build::DEFAULT_MAX_REPLICAS);
    let Some(kafka) = kafka else {
        // --no-kafka: topics are someone else's (the flag's promise), not a problem of the Network
        return (
            Check::new(
                TOPIC_READY,
                true,
                "ManagedElsewhere",
                format!(
                    "the operator manages no topics (--no-kafka): {topic} must exist, with {wanted} partitions for {wanted} workers"
                ),
            ),
            wanted,
        );
    };
    let spec = TopicSpec {
        name: topic.clone(),
        partitions: wanted,
        replication_factor: settings.and_then(|s| s.replication_factor),
        retention_ms: settings.and_then(|s| s.retention).map(|d| d.as_millis() as i64),
        compact: false,
    };
    let ensured = match kafka.admin() {
        Ok(admin) => admin.ensure_topic(&spec).await,
        Err(e) => Err(e),
    };
    match ensured {
        Ok(p) => {
            let note = if p > wanted {
                format!(" (the topic already had {p}; partitions are never removed)")
            } else {
                String::new()
            };
            (Check::new(TOPIC_READY, true, "TopicReady", format!("{topic} has {p} partitions{note}")), p)
        }
        Err(e) => (Check::new(TOPIC_READY, false, "KafkaUnavailable", format!("{topic}: {e}")), wanted),
    }
}

/// Steps 3 and 4: the children, built and applied, and the stale ones deleted. Returns a note on
/// autoscaling when what was asked for is not possible.
async fn apply_children(
    n: &Network,
    settings: Option<&NetworkSettings>,
    p: &PodSettings,
    partitions: i32,
    ctx: &Ctx,
) -> Result<Option<Check>> {
    let name = n.name_any();
    let ns = ctx.pods.namespace.clone();
    let client = ctx.client.clone();
    let workers = n.spec.workers.clone().unwrap_or_default();
    let mode = workers.autoscaling.as_ref().and_then(|a| a.mode).unwrap_or_default();
    let scaler = build::scaler(mode, ctx.keda_installed);
    let note =
        (mode == chainwatch_crds::network::AutoscalingMode::KafkaLag && !ctx.keda_installed).then(|| {
            Check::new(
                "AutoscalingReady",
                false,
                "KedaNotInstalled",
                "autoscaling.mode KafkaLag needs KEDA, which is not installed: scaling on CPU instead",
            )
        });

    apply(&Api::<ServiceAccount>::namespaced(client.clone(), &ns), &build::ingester_service_account(n, p))
        .await?;
    let mut keep_roles = BTreeSet::new();
    if ctx.rbac_available {
        let networks = ctx.caches.networks.store().state();
        apply(&Api::<ClusterRoleBinding>::all(client.clone()), &build::ingester_binding(&networks, p))
            .await?;
        if let (Some(role), Some(binding)) = (build::ingester_role(n, p), build::ingester_role_binding(n, p))
        {
            keep_roles.insert(role.name_any());
            apply(&Api::<Role>::namespaced(client.clone(), &ns), &role).await?;
            apply(&Api::<RoleBinding>::namespaced(client.clone(), &ns), &binding).await?;
        }
    }
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    apply(&services, &build::metrics_service(n, p, labels::INGESTER)).await?;
    apply(&services, &build::metrics_service(n, p, labels::WORKER)).await?;
    // contained before they run: the policies and budgets come before the pods' controllers
    let netpols: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns);
    apply(&netpols, &policies::ingester_policy(n, p, settings)).await?;
    apply(&netpols, &policies::worker_policy(n, p)).await?;
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &ns);
    apply(&pdbs, &policies::ingester_budget(n, p)).await?;
    apply(&pdbs, &policies::worker_budget(n, p)).await?;
    apply(&Api::<StatefulSet>::namespaced(client.clone(), &ns), &build::ingester_statefulset(n, p)).await?;
    apply(
        &Api::<Deployment>::namespaced(client.clone(), &ns),
        &build::worker_deployment(n, p, partitions, scaler),
    )
    .await?;
    let (worker, nothing) = (BTreeSet::from([build::worker_name(&name)]), BTreeSet::new());
    let mut removed = Vec::new();
    if scaler == Scaler::Hpa {
        apply(
            &Api::<HorizontalPodAutoscaler>::namespaced(client.clone(), &ns),
            &build::worker_hpa(n, p, partitions),
        )
        .await?;
    }
    removed.extend(
        prune(ctx, &name, &[Child::Hpa], if scaler == Scaler::Hpa { &worker } else { &nothing }).await?,
    );
    if ctx.keda_installed && scaler == Scaler::Keda {
        let keda: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &keda_resource());
        let obj: DynamicObject = serde_json::from_value(build::worker_scaled_object(n, p, partitions))
            .expect("a ScaledObject is an object");
        keda.patch(&build::worker_name(&name), &PatchParams::apply(MANAGER).force(), &Patch::Apply(&obj))
            .await
            .map_err(|source| Error::Apply {
                kind: "ScaledObject".into(),
                name: build::worker_name(&name),
                source,
            })?;
    }
    removed.extend(
        prune(ctx, &name, &[Child::ScaledObject], if scaler == Scaler::Keda { &worker } else { &nothing })
            .await?,
    );
    removed.extend(prune(ctx, &name, &[Child::RoleBinding, Child::Role], &keep_roles).await?);
    if !removed.is_empty() {
        tracing::info!(network = %name, ?removed, "deleted children no longer desired");
    }
    Ok(note)
}

async fn apply_network(n: Arc<Network>, ctx: Ctx) -> Result<Action> {
    let name = n.name_any();
    let (settings, mut problems) = read_settings(&n, &ctx);
    let kafka = kafka::current(&ctx);
    if !kafka.problems.is_empty() {
        // the pipelines keep the settings they run (or are not made yet): nothing is applied
        // with settings known to be wrong; the topic's condition stays as it was last seen
        problems.extend(kafka.problems);
        if let Some(ready) = status::blocked(&problems) {
            let mut desired = vec![ready];
            // applied again as last seen (a condition left out of an apply would be removed)
            desired.extend(
                n.status
                    .iter()
                    .flat_map(|s| &s.conditions)
                    .filter(|c| c.type_ == TOPIC_READY)
                    .map(|c| Check::new(TOPIC_READY, c.status == "True", &c.reason, c.message.clone())),
            );
            write_status(&ctx, &n, &desired).await?;
        }
        return Ok(Action::requeue(Duration::from_secs(30)));
    }
    let (topic, partitions) = ensure_topic(&n, settings.as_ref().ok(), kafka.admin.as_ref()).await;
    let note = apply_children(&n, settings.as_ref().ok(), &kafka.pods, partitions, &ctx).await?;
    // a pod that cannot run says why the ingester does not report (or the workers do not work)
    let pod_trouble = match Api::<Pod>::namespaced(ctx.client.clone(), &ctx.pods.namespace)
        .list(&ListParams::default().labels(&labels::network_children(&name)))
        .await
    {
        Ok(list) => pods::trouble(&list.items),
        Err(e) => {
            tracing::warn!(network = %name, error = %e, "listing the pipeline's pods failed");
            None
        }
    };
    if let Some((reason, message)) = &pod_trouble {
        problems.push(Check::new("Ready", false, reason, message.clone()));
    }

    // step 5: status
    let ingester = n.status.as_ref().and_then(|s| s.conditions.iter().find(|c| c.type_ == PROGRESSING));
    let ready =
        status::ready(&problems, &topic, ingester, &build::ingester_name(&name), &blocks_topic(&name));
    let retry = !topic.ok
        || pod_trouble.is_some()
        || problems.iter().any(|p| p.reason == conditions::REFERENCE_PENDING);
    let mut desired = vec![ready, topic];
    desired.extend(note);
    write_status(&ctx, &n, &desired).await?;
    Ok(Action::requeue(Duration::from_secs(if retry { 30 } else { 300 })))
}

async fn write_status(ctx: &Ctx, n: &Network, desired: &[Check]) -> Result<()> {
    let topic = blocks_topic(&n.name_any());
    let current = n.status.clone().unwrap_or_default();
    let update = conditions::update(&current.conditions, desired, n.metadata.generation);
    if !update.changed
        && current.observed_generation == n.metadata.generation
        && current.topic.as_deref() == Some(topic.as_str())
    {
        return Ok(());
    }
    let status =
        json!({"conditions": update.conditions, "observedGeneration": n.metadata.generation, "topic": topic});
    conditions::apply_status(&Api::<Network>::all(ctx.client.clone()), &n.name_any(), status).await?;
    conditions::announce(ctx, n, update.was_ready, &desired[0], "Running").await;
    Ok(())
}

/// Deletes the Network's children (the API server's garbage collector would too, through the
/// owner references, but not before the Network is gone and not on servers without one), takes its
/// ingester out of the ingesters' binding, and deletes the topic unless `kafka.deletionPolicy:
/// Retain`. The finalizer is removed only when all succeeded.
async fn cleanup(n: Arc<Network>, ctx: Ctx) -> Result<Action> {
    let name = n.name_any();
    let removed = prune(&ctx, &name, &Child::ALL, &BTreeSet::new()).await?;
    if ctx.rbac_available {
        // the cache has this Network with its deletion timestamp: it is left out
        let networks: Vec<Arc<Network>> =
            ctx.caches.networks.store().state().into_iter().filter(|x| x.name_any() != name).collect();
        apply(
            &Api::<ClusterRoleBinding>::all(ctx.client.clone()),
            &build::ingester_binding(&networks, &ctx.pods),
        )
        .await?;
    }
    tracing::info!(network = %name, ?removed, "network deleted: children removed");

    let topic = blocks_topic(&name);
    let policy = n.spec.kafka.as_ref().and_then(|k| k.deletion_policy).unwrap_or_default();
    match (policy, kafka::current(&ctx).admin) {
        (TopicDeletionPolicy::Retain, _) => {
            ctx.events
                .publish(
                    n.as_ref(),
                    Level::Normal,
                    "TopicRetained",
                    &format!("kept {topic} (kafka.deletionPolicy: Retain)"),
                )
                .await;
        }
        (TopicDeletionPolicy::Delete, None) => {
            tracing::warn!(%topic, "no Kafka configured: the topic, if any, is left in place");
        }
        (TopicDeletionPolicy::Delete, Some(kafka)) => {
            let deleted = match kafka.admin() {
                Ok(admin) => admin.delete_topic(&topic).await,
                Err(e) => Err(e),
            };
            deleted.map_err(|source| Error::Topic { topic: topic.clone(), source })?;
            ctx.events.publish(n.as_ref(), Level::Normal, "TopicDeleted", &format!("deleted {topic}")).await;
        }
    }
    Ok(Action::await_change())
}
