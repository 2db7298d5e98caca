//! The Monitor controller: admits Monitors ([`chainwatch_core::config::admit_monitor`]) and says so
//! in status; the worker evaluates only monitors admitted at their current generation. Looked at
//! again when a Network, Trigger, ConfigMap or Tenant it depends on changes ([`mapping`]), and when
//! a peer of its tenant comes or goes (its quota rank may change).

pub mod mapping;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chainwatch_core::config::{Catalog, admit_monitor};
use chainwatch_crds::Monitor;
use chainwatch_platform::cache::Change;
use futures::StreamExt;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::changes::{changed, mapped, own, spec_changed};
use crate::conditions;
use crate::context::Ctx;
use crate::error::Result;
use crate::supervise::supervised;
use mapping::TenantNamespaces;

fn over_quota(m: &Monitor) -> bool {
    m.status.as_ref().is_some_and(|s| s.conditions.iter().any(|c| c.reason == "OverQuota"))
}

/// Runs the controller until `stop`.
pub async fn controller(ctx: Ctx, stop: CancellationToken) {
    let c = ctx.caches.clone();
    let (reconciler, on_error) = supervised("monitor", reconcile);
    let store = c.monitors.store();
    let (peers, tenants) = (c.clone(), c.clone());
    let (by_network, by_trigger, by_config_map, by_tenant) =
        (store.clone(), store.clone(), store.clone(), store.clone());
    let tenant_history = Mutex::new(TenantNamespaces::default());
    Controller::for_stream(futures::stream::pending(), store.clone())
        .reconcile_on(own(spec_changed(c.monitors.subscribe())))
        // a monitor created or deleted: its tenant's monitors over quota
        .reconcile_on(mapped(spec_changed(c.monitors.subscribe()), move |ch: &Change<Monitor>| {
            let tenant = ch.object().namespace().and_then(|ns| tenants.tenant_of(&ns));
            mapping::over_quota_peers(&peers.monitors.store().state(), tenant.as_deref(), over_quota)
        }))
        .reconcile_on(mapped(spec_changed(c.networks.subscribe()), move |ch| {
            mapping::for_network(&by_network.state(), ch.object())
        }))
        .reconcile_on(mapped(spec_changed(c.triggers.subscribe()), move |ch| {
            mapping::for_trigger(&by_trigger.state(), ch.object())
        }))
        .reconcile_on(mapped(changed(c.config_maps.subscribe(), |cm| cm.data.clone()), move |ch| {
            mapping::for_config_map(&by_config_map.state(), ch.object())
        }))
        .reconcile_on(mapped(spec_changed(c.tenants.subscribe()), move |ch| {
            let deleted = matches!(ch, Change::Deleted(_));
            let namespaces =
                tenant_history.lock().unwrap_or_else(|p| p.into_inner()).affected(ch.object(), deleted);
            mapping::in_namespaces(&by_tenant.state(), &namespaces)
        }))
        .graceful_shutdown_on(stop.cancelled_owned())
        .run(reconciler, on_error, Arc::new(ctx))
        .for_each(|_| async {})
        .await;
}

/// Reconciles one Monitor.
pub async fn reconcile(m: Arc<Monitor>, ctx: Ctx) -> Result<Action> {
    let ns = m.namespace().unwrap_or_default();
    let name = m.name_any();
    let verdict = admit_monitor(&m, &ctx.caches, &ctx.abis);

    // status, written only when it says something new
    let current = m.status.clone().unwrap_or_default();
    let update = conditions::update(&current.conditions, &verdict.conditions, m.metadata.generation);
    let mut held = None;
    if update.changed
        || current.observed_generation != m.metadata.generation
        || current.tenant != verdict.tenant
    {
        let status = json!({"conditions": update.conditions, "observedGeneration": m.metadata.generation, "tenant": verdict.tenant});
        conditions::apply_status(&Api::<Monitor>::namespaced(ctx.client.clone(), &ns), &name, status).await?;
        // a different failure is news too
        let was = conditions::ready(&current.conditions).map(|c| (c.status == "True", c.reason.clone()));
        let ready = verdict.ready();
        if was.as_ref().map(|(ok, reason)| (*ok, reason.as_str())) != Some((ready.ok, ready.reason.as_str()))
        {
            held = conditions::announce_references(&ctx, m.as_ref(), None, ready, "Admitted").await;
        }
    }
    let held = match held {
        Some(left) => Some(left),
        None => conditions::release_held(&ctx, m.as_ref(), verdict.ready()).await,
    };
    ctx.metrics.set_admitted(
        ctx.caches
            .monitors
            .store()
            .state()
            .iter()
            .filter(|x| {
                if x.namespace().as_deref() == Some(ns.as_str()) && x.name_any() == name {
                    verdict.admitted
                } else {
                    x.status
                        .as_ref()
                        .and_then(|s| conditions::ready(&s.conditions))
                        .is_some_and(|c| c.status == "True")
                }
            })
            .count(),
    );
    Ok(Action::requeue(if let Some(left) = held {
        // a Warning held for a grace: published then if the reference is still missing
        left + Duration::from_millis(100)
    } else if verdict.unsettled {
        // a Secret or ConfigMap of a namespace not listed yet: soon
        Duration::from_secs(2)
    } else if verdict.conditions.iter().any(|c| c.reason == "OverQuota") {
        // a deletion elsewhere may admit it
        Duration::from_secs(30)
    } else {
        Duration::from_secs(600)
    }))
}
