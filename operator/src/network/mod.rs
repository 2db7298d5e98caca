//! The Network controller: validates the spec, creates the block topic (finalizer: deleted or kept
//! per `kafka.deletionPolicy`), server-side applies the ingester and worker objects and the
//! autoscaler, deletes children no longer desired (by label), and reports `Ready`/`TopicReady`.

pub mod build;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chainwatch_crds::network::TopicDeletionPolicy;
use chainwatch_crds::network::conditions::{PROGRESSING, TOPIC_READY};
use chainwatch_crds::{Network, SecretKeyRef};
use chainwatch_platform::bus::blocks_topic;
use chainwatch_platform::bus::kafka::TopicSpec;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::conditions::{self, Desired};
use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::events::Level;
use crate::labels;
use build::Scaler;

/// Finalizer that deletes (or keeps) the Kafka topic.
pub const FINALIZER: &str = "chainwatch.io/kafka-topic";
/// Field manager of the operator's writes.
pub const MANAGER: &str = "chainwatch-operator";

pub fn keda_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("keda.sh", "v1alpha1", "ScaledObject"),
        "scaledobjects",
    )
}

/// Server-side applies an object with the operator's field manager.
pub async fn apply<K>(api: &Api<K>, obj: &K) -> Result<K>
where
    K: Resource<DynamicType = ()> + Serialize + DeserializeOwned + Clone + std::fmt::Debug,
{
    let name = obj.name_any();
    api.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(obj)).await.map_err(|source| {
        Error::Apply {
            kind: std::any::type_name::<K>().rsplit("::").next().unwrap_or("object"),
            name,
            source,
        }
    })
}

/// Deletes the objects of `api` matching `selector` whose name is not in `keep`.
async fn delete_others<K>(
    api: &Api<K>,
    kind: &'static str,
    selector: &str,
    keep: &BTreeSet<String>,
) -> Result<Vec<String>>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let list = match api.list(&ListParams::default().labels(selector)).await {
        Ok(l) => l,
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(vec![]), // kind not served
        Err(source) => return Err(Error::List { kind, source }),
    };
    let mut deleted = Vec::new();
    for o in list.items {
        let name = o.name_any();
        if !keep.contains(&name) {
            match api.delete(&name, &DeleteParams::background()).await {
                Ok(_) => deleted.push(format!("{kind}/{name}")),
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(source) => return Err(Error::Delete { kind, name, source }),
            }
        }
    }
    Ok(deleted)
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
    RoleBinding,
    Role,
    ClusterRoleBinding,
    ClusterRole,
}

impl Child {
    const ALL: [Child; 10] = [
        Child::Deployment,
        Child::Hpa,
        Child::ScaledObject,
        Child::StatefulSet,
        Child::Service,
        Child::ServiceAccount,
        Child::RoleBinding,
        Child::Role,
        Child::ClusterRoleBinding,
        Child::ClusterRole,
    ];

    /// Whether the API server serves the kind (KEDA is optional; RBAC always is in a cluster).
    fn served(self, ctx: &Ctx) -> bool {
        match self {
            Child::ScaledObject => ctx.keda_installed,
            Child::RoleBinding | Child::Role | Child::ClusterRoleBinding | Child::ClusterRole => {
                ctx.rbac_available
            }
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
    // one call per kind: the typed Api differs, the rest does not
    macro_rules! others {
        ($api:expr, $kind:literal) => {
            delete_others(&$api, $kind, &sel, keep).await?
        };
    }
    for kind in kinds.iter().filter(|k| k.served(ctx)) {
        removed.extend(match kind {
            Child::Deployment => others!(Api::<Deployment>::namespaced(client.clone(), ns), "Deployment"),
            Child::Hpa => others!(
                Api::<HorizontalPodAutoscaler>::namespaced(client.clone(), ns),
                "HorizontalPodAutoscaler"
            ),
            Child::ScaledObject => others!(
                Api::<DynamicObject>::namespaced_with(client.clone(), ns, &keda_resource()),
                "ScaledObject"
            ),
            Child::StatefulSet => others!(Api::<StatefulSet>::namespaced(client.clone(), ns), "StatefulSet"),
            Child::Service => others!(Api::<Service>::namespaced(client.clone(), ns), "Service"),
            Child::ServiceAccount => {
                others!(Api::<ServiceAccount>::namespaced(client.clone(), ns), "ServiceAccount")
            }
            Child::RoleBinding => others!(Api::<RoleBinding>::namespaced(client.clone(), ns), "RoleBinding"),
            Child::Role => others!(Api::<Role>::namespaced(client.clone(), ns), "Role"),
            Child::ClusterRoleBinding => {
                others!(Api::<ClusterRoleBinding>::all(client.clone()), "ClusterRoleBinding")
            }
            Child::ClusterRole => others!(Api::<ClusterRole>::all(client.clone()), "ClusterRole"),
        });
    }
    Ok(removed)
}

/// Why a Secret reference does not resolve, if it does not.
async fn secret_problem(secrets: &Api<Secret>, r: &SecretKeyRef) -> Result<Option<String>> {
    match secrets.get_opt(&r.name).await {
        Ok(None) => Ok(Some(format!("Secret {} does not exist in the operator's namespace", r.name))),
        Ok(Some(s)) if r.value_in(&s).is_none() => {
            Ok(Some(format!("Secret {} has no key {}", r.name, r.key)))
        }
        Ok(Some(_)) => Ok(None),
        Err(source) => Err(Error::Read { what: format!("Secret {}", r.name), source }),
    }
}

/// Reconciles a Network (with its finalizer).
pub async fn reconcile(network: Arc<Network>, ctx: Ctx) -> Result<Action> {
    let started = std::time::Instant::now();
    let api: Api<Network> = Api::all(ctx.client.clone());
    let result = finalizer(&api, FINALIZER, network, |event| async {
        match event {
            Finalizer::Apply(n) => apply_network(n, ctx.clone()).await,
            Finalizer::Cleanup(n) => cleanup(n, ctx.clone()).await,
        }
    })
    .await;
    tracing::debug!(?result, "network reconciled");
    ctx.metrics.reconciled("network", started.elapsed());
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

async fn apply_network(n: Arc<Network>, ctx: Ctx) -> Result<Action> {
    let name = n.name_any();
    let ns = ctx.pods.namespace.clone();
    let mut problems: Vec<Desired> = Vec::new();

    // the spec as the ingester will read it
    let runtime =
        chainwatch_ingester::config::runtime(&name, &n.spec, &|_| Ok("https://placeholder.invalid".into()));
    if let Err(e) = &runtime {
        problems.push(Desired::new("Ready", false, "InvalidSpec", format!("{}: {}", e.field, e.message)));
    }
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    for (i, e) in n.spec.rpc.iter().enumerate() {
        if let Some(r) = &e.url_secret_ref
            && let Some(why) = secret_problem(&secrets, r).await?
        {
            problems.push(Desired::new(
                "Ready",
                false,
                "SecretNotFound",
                format!("spec.rpc[{i}].urlSecretRef: {why} ({ns}); create it or fix the reference"),
            ));
        }
    }
    let partitions_wanted = runtime.as_ref().map(|r| r.partitions).unwrap_or(build::DEFAULT_MAX_REPLICAS);

    // the topic
    let topic = blocks_topic(&name);
    let topic_condition;
    let mut partitions = partitions_wanted;
    match &ctx.kafka {
        None => {
            topic_condition = Desired::new(
                TOPIC_READY,
                false,
                "KafkaNotConfigured",
                "the operator has no --kafka-bootstrap",
            )
        }
        Some(kafka) => {
            let spec = TopicSpec {
                name: topic.clone(),
                partitions: partitions_wanted,
                replication_factor: runtime.as_ref().ok().and_then(|r| r.replication_factor),
                retention_ms: runtime.as_ref().ok().and_then(|r| r.retention).map(|d| d.as_millis() as i64),
                compact: false,
            };
            let ensured = match kafka.admin() {
                Ok(admin) => admin.ensure_topic(&spec).await,
                Err(e) => Err(e),
            };
            topic_condition = match ensured {
                Ok(p) => {
                    partitions = p;
                    let note = if p > partitions_wanted {
                        format!(" (the topic already had {p}; partitions are never removed)")
                    } else {
                        String::new()
                    };
                    Desired::new(TOPIC_READY, true, "TopicReady", format!("{topic} has {p} partitions{note}"))
                }
                Err(e) => Desired::new(TOPIC_READY, false, "KafkaUnavailable", format!("{topic}: {e}")),
            };
        }
    }

    // the children
    let workers = n.spec.workers.clone().unwrap_or_default();
    let mode = workers.autoscaling.as_ref().and_then(|a| a.mode).unwrap_or_default();
    let scaler = build::scaler(mode, ctx.keda_installed);
    let mut autoscaling_note = None;
    if mode == chainwatch_crds::network::AutoscalingMode::KafkaLag && !ctx.keda_installed {
        autoscaling_note = Some(
            "autoscaling.mode KafkaLag needs KEDA, which is not installed: scaling on CPU instead"
                .to_string(),
        );
    }
    let client = ctx.client.clone();
    let p = &ctx.pods;
    let sa_api: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let svc_api: Api<Service> = Api::namespaced(client.clone(), &ns);
    let dep_api: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let hpa_api: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), &ns);
    apply(&sa_api, &build::ingester_service_account(&n, p)).await?;
    let mut keep_roles = BTreeSet::new();
    if ctx.rbac_available {
        apply(&Api::<ClusterRole>::all(client.clone()), &build::ingester_cluster_role(&n)).await?;
        apply(&Api::<ClusterRoleBinding>::all(client.clone()), &build::ingester_cluster_role_binding(&n, p))
            .await?;
        if let (Some(role), Some(binding)) =
            (build::ingester_role(&n, p), build::ingester_role_binding(&n, p))
        {
            keep_roles.insert(role.name_any());
            apply(&Api::<Role>::namespaced(client.clone(), &ns), &role).await?;
            apply(&Api::<RoleBinding>::namespaced(client.clone(), &ns), &binding).await?;
        }
    }
    apply(&svc_api, &build::ingester_service(&n, p)).await?;
    apply(&sts_api, &build::ingester_statefulset(&n, p)).await?;
    apply(&dep_api, &build::worker_deployment(&n, p, partitions, scaler)).await?;
    let (worker, nothing) = (BTreeSet::from([build::worker_name(&name)]), BTreeSet::new());
    let mut removed = Vec::new();
    if scaler == Scaler::Hpa {
        apply(&hpa_api, &build::worker_hpa(&n, p, partitions)).await?;
    }
    removed.extend(
        prune(&ctx, &name, &[Child::Hpa], if scaler == Scaler::Hpa { &worker } else { &nothing }).await?,
    );
    if ctx.keda_installed && scaler == Scaler::Keda {
        let keda: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &keda_resource());
        let obj: DynamicObject = serde_json::from_value(build::worker_scaled_object(&n, p, partitions))
            .expect("a ScaledObject is an object");
        keda.patch(&build::worker_name(&name), &PatchParams::apply(MANAGER).force(), &Patch::Apply(&obj))
            .await
            .map_err(|source| Error::Apply {
                kind: "ScaledObject",
                name: build::worker_name(&name),
                source,
            })?;
    }
    removed.extend(
        prune(&ctx, &name, &[Child::ScaledObject], if scaler == Scaler::Keda { &worker } else { &nothing })
            .await?,
    );
    removed.extend(prune(&ctx, &name, &[Child::RoleBinding, Child::Role], &keep_roles).await?);
    if !removed.is_empty() {
        tracing::info!(network = %name, ?removed, "deleted children no longer desired");
    }

    // status
    let ingester_progress =
        n.status.as_ref().and_then(|s| s.conditions.iter().find(|c| c.type_ == PROGRESSING).cloned());
    let ready = if let Some(p) = problems.first() {
        p.clone()
    } else if !topic_condition.ok {
        Desired::new("Ready", false, &topic_condition.reason, topic_condition.message.clone())
    } else {
        match &ingester_progress {
            Some(c) if c.status == "True" => {
                Desired::new("Ready", true, "Running", format!("ingesting into {topic}; {}", c.message))
            }
            Some(c) => {
                Desired::new("Ready", false, &c.reason, format!("the ingester reports: {}", c.message))
            }
            None => Desired::new(
                "Ready",
                false,
                conditions::WAITING_FOR_INGESTER,
                format!(
                    "{} applied; the ingester has not reported progress yet",
                    build::ingester_name(&name)
                ),
            ),
        }
    };
    let mut desired = vec![ready, topic_condition];
    if let Some(note) = autoscaling_note {
        desired.push(Desired::new("AutoscalingReady", false, "KedaNotInstalled", note));
    }
    write_status(&ctx, &n, &desired, &topic).await?;
    let retry = !desired[1].ok;
    Ok(if retry {
        Action::requeue(Duration::from_secs(30))
    } else {
        Action::requeue(Duration::from_secs(300))
    })
}

async fn write_status(ctx: &Ctx, n: &Network, desired: &[Desired], topic: &str) -> Result<()> {
    let current = n.status.clone().unwrap_or_default();
    let update = conditions::update(&current.conditions, desired, n.metadata.generation);
    if !update.changed
        && current.observed_generation == n.metadata.generation
        && current.topic.as_deref() == Some(topic)
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
/// owner references, but not before the Network is gone and not on servers without one) and the
/// topic unless `kafka.deletionPolicy: Retain`. The finalizer is removed only when all succeeded.
async fn cleanup(n: Arc<Network>, ctx: Ctx) -> Result<Action> {
    let name = n.name_any();
    let removed = prune(&ctx, &name, &Child::ALL, &BTreeSet::new()).await?;
    tracing::info!(network = %name, ?removed, "network deleted: children removed");

    let topic = blocks_topic(&name);
    let policy = n.spec.kafka.as_ref().and_then(|k| k.deletion_policy).unwrap_or_default();
    match (policy, &ctx.kafka) {
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
