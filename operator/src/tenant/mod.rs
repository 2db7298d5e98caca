//! The Tenant controller: the namespaces it owns ([`chainwatch_core::config::admit_tenant`]) exist,
//! its people may edit Monitors and Triggers there and the platform may read their Secrets and
//! ConfigMaps ([`build`]); bindings in namespaces it no longer owns are removed; status counts its
//! Monitors and Triggers.

pub mod build;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chainwatch_core::config::{Check, admit_tenant};
use chainwatch_crds::Tenant;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::changes::{changed, mapped, own, spec_changed};
use crate::children::apply;
use crate::conditions;
use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::events::Level;
use crate::labels;
use crate::supervise::supervised;

/// Every Tenant listing `namespace` (the owner, and any conflicting claim).
pub fn claimants(tenants: &[Arc<Tenant>], namespace: &str) -> Vec<ObjectRef<Tenant>> {
    tenants
        .iter()
        .filter(|t| t.spec.namespaces.iter().any(|n| n == namespace))
        .map(|t| ObjectRef::from_obj(t.as_ref()))
        .collect()
}

/// A Tenant changed: the other Tenants claiming one of its namespaces (a conflict may resolve).
pub fn rivals(tenants: &[Arc<Tenant>], changed: &Tenant) -> Vec<ObjectRef<Tenant>> {
    let mine: BTreeSet<&String> = changed.spec.namespaces.iter().collect();
    tenants
        .iter()
        .filter(|t| t.metadata.name != changed.metadata.name)
        .filter(|t| t.spec.namespaces.iter().any(|n| mine.contains(n)))
        .map(|t| ObjectRef::from_obj(t.as_ref()))
        .collect()
}

fn ready_status(m: &chainwatch_crds::Monitor) -> Option<String> {
    m.status.as_ref().and_then(|s| conditions::ready(&s.conditions)).map(|c| c.status.clone())
}

/// Runs the controller until `stop`.
pub async fn controller(ctx: Ctx, stop: CancellationToken) {
    let c = ctx.caches.clone();
    let (reconciler, on_error) = supervised("tenant", reconcile);
    let store = c.tenants.store();
    let (by_monitor, by_trigger, by_tenant) = (store.clone(), store.clone(), store.clone());
    Controller::for_stream(futures::stream::pending(), store.clone())
        .reconcile_on(own(spec_changed(c.tenants.subscribe())))
        .reconcile_on(mapped(spec_changed(c.tenants.subscribe()), move |ch| {
            rivals(&by_tenant.state(), ch.object())
        }))
        // counts of Monitors and of Ready ones: not on match counters
        .reconcile_on(mapped(
            changed(c.monitors.subscribe(), |m| (m.metadata.generation, ready_status(m))),
            move |ch| {
                ch.object().namespace().map(|ns| claimants(&by_monitor.state(), &ns)).unwrap_or_default()
            },
        ))
        .reconcile_on(mapped(spec_changed(c.triggers.subscribe()), move |ch| {
            ch.object().namespace().map(|ns| claimants(&by_trigger.state(), &ns)).unwrap_or_default()
        }))
        .graceful_shutdown_on(stop.cancelled_owned())
        .run(reconciler, on_error, Arc::new(ctx))
        .for_each(|_| async {})
        .await;
}

async fn ensure_namespace(ctx: &Ctx, t: &Tenant, ns: &str) -> Result<()> {
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    match api.get_opt(ns).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => match api.create(&PostParams::default(), &build::namespace(t, ns)).await {
            Ok(_) => {
                ctx.events
                    .publish(t, Level::Normal, "NamespaceCreated", &format!("created namespace {ns}"))
                    .await;
                Ok(())
            }
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
            Err(source) => Err(Error::Apply { kind: "Namespace".into(), name: ns.into(), source }),
        },
        Err(source) => Err(Error::Read { what: format!("Namespace {ns}"), source }),
    }
}

/// Removes the tenant's bindings from namespaces it no longer owns: found cluster-wide, or in
/// each watched namespace of a namespace-scoped install (which may list nothing else).
async fn prune_bindings(ctx: &Ctx, tenant: &str, owned: &BTreeSet<String>) -> Result<()> {
    let params = ListParams::default().labels(&labels::tenant_children(tenant));
    let apis: Vec<Api<RoleBinding>> = match ctx.caches.scope.namespaces() {
        None => vec![Api::all(ctx.client.clone())],
        Some(set) => set.iter().map(|ns| Api::namespaced(ctx.client.clone(), ns)).collect(),
    };
    let mut found = Vec::new();
    for api in apis {
        let list =
            api.list(&params).await.map_err(|source| Error::List { kind: "RoleBinding".into(), source })?;
        found.extend(list.items);
    }
    for rb in found {
        let ns = rb.namespace().unwrap_or_default();
        if owned.contains(&ns) {
            continue;
        }
        match Api::<RoleBinding>::namespaced(ctx.client.clone(), &ns)
            .delete(&rb.name_any(), &DeleteParams::background())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(source) => {
                return Err(Error::Delete {
                    kind: "RoleBinding".into(),
                    name: format!("{ns}/{}", rb.name_any()),
                    source,
                });
            }
        }
    }
    Ok(())
}

/// The tenant's script runner in `runner_ns` (none when scripts are not allowed), and none in its
/// other namespaces.
async fn script_runner(
    ctx: &Ctx,
    t: &Tenant,
    runner_ns: Option<&str>,
    owned: &BTreeSet<String>,
) -> Result<()> {
    let c = ctx.client.clone();
    if let Some(ns) = runner_ns {
        let operator = (ctx.pods.namespace.as_str(), ctx.service_account.as_str());
        apply(&Api::<RoleBinding>::namespaced(c.clone(), ns), &build::runner_managers(t, ns, operator))
            .await?;
        apply(&Api::<ServiceAccount>::namespaced(c.clone(), ns), &build::runner_service_account(t, ns))
            .await?;
        apply(
            &Api::<NetworkPolicy>::namespaced(c.clone(), ns),
            &build::runner_network_policy(t, ns, &ctx.pods.namespace),
        )
        .await?;
        apply(&Api::<Service>::namespaced(c.clone(), ns), &build::runner_service(t, ns)).await?;
        apply(&Api::<Deployment>::namespaced(c.clone(), ns), &build::runner_deployment(t, ns, &ctx.pods))
            .await?;
    }
    for ns in owned.iter().filter(|n| Some(n.as_str()) != runner_ns) {
        // what a namespace no longer needs; the operator may be unable to see into it
        // any more (its runner-managers binding is gone): nothing to remove then
        let name = chainwatch_platform::runner::NAME;
        remove(&Api::<Deployment>::namespaced(c.clone(), ns), name).await?;
        remove(&Api::<Service>::namespaced(c.clone(), ns), name).await?;
        remove(&Api::<NetworkPolicy>::namespaced(c.clone(), ns), name).await?;
        remove(&Api::<ServiceAccount>::namespaced(c.clone(), ns), name).await?;
        remove(&Api::<RoleBinding>::namespaced(c.clone(), ns), build::RUNNER_MANAGERS_BINDING).await?;
    }
    Ok(())
}

/// Deletes an object if it exists (and may be seen).
async fn remove<K>(api: &Api<K>, name: &str) -> Result<()>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 403 => Ok(()),
        Err(source) => Err(Error::Delete { kind: K::kind(&()).into_owned(), name: name.into(), source }),
    }
}

/// Reconciles one Tenant.
pub async fn reconcile(t: Arc<Tenant>, ctx: Ctx) -> Result<Action> {
    let name = t.name_any();
    let verdict = admit_tenant(&t, &ctx.caches);
    let mut problems: Vec<(&'static str, String)> =
        verdict.conflict_messages().into_iter().map(|m| ("NamespaceConflict", m)).collect();
    // a namespace-scoped install acts only in the namespaces it watches
    let (owned, unwatched): (BTreeSet<String>, BTreeSet<String>) =
        verdict.owned.iter().cloned().partition(|ns| ctx.caches.scope.watches(ns));
    if !unwatched.is_empty() {
        problems.push((
            "NamespacesNotWatched",
            format!(
                "this installation watches only {} (--watch-namespace), so the Monitors and Triggers of {} are not admitted: add {} to the install's watched namespaces, or remove {} from spec.namespaces",
                ctx.caches.scope,
                unwatched.iter().cloned().collect::<Vec<_>>().join(", "),
                if unwatched.len() == 1 { "it" } else { "them" },
                if unwatched.len() == 1 { "it" } else { "them" },
            ),
        ));
    }
    for ns in &owned {
        ensure_namespace(&ctx, &t, ns).await?;
    }
    if ctx.rbac_available {
        let platform = ctx.pods.namespace.as_str();
        let accounts =
            [(platform, ctx.service_account.as_str()), (platform, ctx.pods.worker_service_account.as_str())];
        for ns in &owned {
            let api = Api::<RoleBinding>::namespaced(ctx.client.clone(), ns);
            apply(&api, &build::editors(&t, ns)).await?;
            apply(&api, &build::platform_readers(&t, ns, &accounts)).await?;
            // the platform may read the namespace now: list it without waiting for a backoff
            ctx.caches.secrets.retry_failed(ns);
            ctx.caches.config_maps.retry_failed(ns);
        }
        prune_bindings(&ctx, &name, &owned).await?;
        let runner_ns =
            verdict.owned.iter().find(|ns| owned.contains(*ns)).filter(|_| t.spec.limits.allow_scripts);
        script_runner(&ctx, &t, runner_ns.map(String::as_str), &owned).await?;
    } else {
        problems.push((
            "RbacUnavailable",
            "the API server does not serve rbac.authorization.k8s.io: no RoleBindings were created".into(),
        ));
    }

    let in_tenant = |ns: Option<String>| ns.is_some_and(|n| owned.contains(&n));
    let monitors: Vec<_> =
        ctx.caches.monitors.store().state().into_iter().filter(|m| in_tenant(m.namespace())).collect();
    let ready_monitors = monitors.iter().filter(|m| ready_status(m).as_deref() == Some("True")).count();
    let triggers =
        ctx.caches.triggers.store().state().into_iter().filter(|x| in_tenant(x.namespace())).count();
    let ready = Check::ready_from(
        &problems,
        format!("{} namespaces; editors bound to {}", owned.len(), build::EDITOR_ROLE),
    );
    let current = t.status.clone().unwrap_or_default();
    let update = conditions::update(&current.conditions, std::slice::from_ref(&ready), t.metadata.generation);
    let counts = (Some(monitors.len() as u32), Some(ready_monitors as u32), Some(triggers as u32));
    if update.changed
        || current.observed_generation != t.metadata.generation
        || (current.monitors, current.ready_monitors, current.triggers) != counts
    {
        let status = json!({
            "conditions": update.conditions, "observedGeneration": t.metadata.generation,
            "monitors": counts.0, "readyMonitors": counts.1, "triggers": counts.2,
        });
        conditions::apply_status(&Api::<Tenant>::all(ctx.client.clone()), &name, status).await?;
        conditions::announce(&ctx, t.as_ref(), update.was_ready, &ready, "Ready").await;
    }
    Ok(Action::requeue(Duration::from_secs(300)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(name: &str, namespaces: &[&str]) -> Arc<Tenant> {
        Arc::new(
            serde_json::from_value(
                serde_json::json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Tenant",
                "metadata": {"name": name}, "spec": {"namespaces": namespaces}}),
            )
            .unwrap(),
        )
    }

    #[test]
    fn namespace_changes_reach_every_claimant_and_rival() {
        let all = vec![tenant("a", &["x", "y"]), tenant("b", &["y"]), tenant("c", &["z"])];
        let names = |v: Vec<ObjectRef<Tenant>>| v.into_iter().map(|r| r.name).collect::<Vec<_>>();
        assert_eq!(names(claimants(&all, "y")), ["a", "b"]);
        assert_eq!(names(claimants(&all, "z")), ["c"]);
        assert_eq!(names(rivals(&all, &all[0])), ["b"]);
        assert!(rivals(&all, &all[2]).is_empty());
    }
}
