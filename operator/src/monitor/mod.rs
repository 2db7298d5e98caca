//! The Monitor controller: admits Monitors (see [`admission`]) and reports it in status; the worker
//! only evaluates admitted monitors of the current generation. Re-evaluated when a referenced
//! Network, Trigger, ConfigMap or the Tenant changes.

pub mod admission;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chainwatch_crds::{ChainType, ConfigMapKeyRef, Monitor, Tenant};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use serde_json::json;

use crate::conditions;
use crate::context::Ctx;
use crate::error::{Error, Result};

/// The Tenant that owns a namespace: the oldest Tenant listing it (a later claim is a conflict the
/// Tenant controller reports).
pub fn tenant_of(tenants: &Store<Tenant>, namespace: &str) -> Option<Arc<Tenant>> {
    let mut owners: Vec<Arc<Tenant>> =
        tenants.state().into_iter().filter(|t| t.spec.namespaces.iter().any(|n| n == namespace)).collect();
    owners.sort_by(|a, b| {
        (a.metadata.creation_timestamp.clone().map(|t| t.0), a.name_any())
            .cmp(&(b.metadata.creation_timestamp.clone().map(|t| t.0), b.name_any()))
    });
    owners.into_iter().next()
}

/// Position of `(namespace, name)` among the objects of a tenant's namespaces, oldest first
/// (ties broken by namespace and name, so the order is the same for every replica and reconcile).
pub fn rank<K: kube::Resource>(
    items: Vec<Arc<K>>,
    tenant: &Tenant,
    namespace: &str,
    name: &str,
) -> Option<usize> {
    let mut mine: Vec<(Option<k8s_openapi::jiff::Timestamp>, String, String)> = items
        .iter()
        .filter(|o| o.meta().namespace.as_ref().is_some_and(|ns| tenant.spec.namespaces.contains(ns)))
        .map(|o| {
            (
                o.meta().creation_timestamp.clone().map(|t| t.0),
                o.meta().namespace.clone().unwrap_or_default(),
                o.meta().name.clone().unwrap_or_default(),
            )
        })
        .collect();
    mine.sort();
    mine.iter().position(|(_, ns, n)| ns == namespace && n == name)
}

/// Whether a Monitor is not (yet) admitted at its generation — it may name a Network or Trigger
/// that does not exist, so any Network or Trigger that appears may be the fix (and changes the
/// names its message lists as existing). Judged from the cache, which can lag the status just
/// written: a monitor without a current status counts too.
pub fn awaiting_admission(m: &Monitor) -> bool {
    m.status.as_ref().is_none_or(|s| {
        s.observed_generation != m.metadata.generation
            || crate::conditions::ready(&s.conditions).is_none_or(|c| c.status != "True")
    })
}

/// Objects (Monitors or Triggers) of the same tenant as a changed one that are waiting on quota:
/// a creation or deletion may change their rank, so they are looked at again at once.
pub fn over_quota_peers<K>(
    items: Vec<Arc<K>>,
    tenants: &Store<Tenant>,
    changed_namespace: Option<String>,
    over_quota: impl Fn(&K) -> bool,
) -> Vec<kube::runtime::reflector::ObjectRef<K>>
where
    K: kube::Resource<DynamicType = ()>,
{
    let Some(tenant) = changed_namespace.and_then(|ns| tenant_of(tenants, &ns)) else { return Vec::new() };
    items
        .iter()
        .filter(|o| o.meta().namespace.as_ref().is_some_and(|ns| tenant.spec.namespaces.contains(ns)))
        .filter(|o| over_quota(o))
        .map(|o| kube::runtime::reflector::ObjectRef::from_obj(o.as_ref()))
        .collect()
}

/// Reconciles one Monitor.
pub async fn reconcile(m: Arc<Monitor>, ctx: Ctx) -> Result<Action> {
    let stores = &ctx.stores;
    let started = std::time::Instant::now();
    let ns = m.namespace().unwrap_or_default();
    let name = m.name_any();
    let tenant = tenant_of(&stores.tenants, &ns);
    let networks: BTreeMap<String, ChainType> =
        stores.networks.state().iter().map(|n| (n.name_any(), n.spec.chain_type)).collect();
    let triggers: BTreeSet<String> = stores
        .triggers
        .state()
        .iter()
        .filter(|t| t.namespace().as_deref() == Some(ns.as_str()))
        .map(|t| t.name_any())
        .collect();
    let rank = tenant.as_ref().and_then(|t| rank(stores.monitors.state(), t, &ns, &name));

    // ConfigMaps named by the monitor, read now
    let mut config_maps: BTreeMap<String, Result<ConfigMap, String>> = BTreeMap::new();
    let referenced = m
        .spec
        .addresses
        .iter()
        .filter_map(|a| a.contract_spec_from.as_ref().map(|f| f.config_map_key_ref.name.clone()))
        .chain(
            m.spec
                .trigger_conditions
                .iter()
                .filter_map(|s| s.source_from.as_ref().map(|f| f.config_map_key_ref.name.clone())),
        );
    let cm_api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
    for cm in referenced {
        if config_maps.contains_key(&cm) {
            continue;
        }
        let read = match cm_api.get_opt(&cm).await {
            Ok(Some(c)) => Ok(c),
            Ok(None) => Err(format!("ConfigMap {ns}/{cm} does not exist")),
            Err(source) => return Err(Error::Read { what: format!("ConfigMap {ns}/{cm}"), source }),
        };
        config_maps.insert(cm, read);
    }
    let reader = |r: &ConfigMapKeyRef| -> std::result::Result<String, String> {
        match config_maps.get(&r.name) {
            Some(Ok(cm)) => cm
                .data
                .as_ref()
                .and_then(|d| d.get(&r.key))
                .cloned()
                .ok_or_else(|| format!("ConfigMap {ns}/{} has no key {}", r.name, r.key)),
            Some(Err(e)) => Err(e.clone()),
            None => Err(format!("ConfigMap {ns}/{} was not read", r.name)),
        }
    };
    let outcome = admission::admit(
        &m,
        &admission::Input {
            tenant: tenant.as_deref(),
            networks: &networks,
            triggers: &triggers,
            config_maps: &reader,
            rank,
            abis: &ctx.abis,
        },
    );

    // status, written only when it says something new
    let current = m.status.clone().unwrap_or_default();
    let update = conditions::update(&current.conditions, &outcome.conditions, m.metadata.generation);
    if update.changed
        || current.observed_generation != m.metadata.generation
        || current.tenant != outcome.tenant
    {
        let status = json!({"conditions": update.conditions, "observedGeneration": m.metadata.generation, "tenant": outcome.tenant});
        conditions::apply_status(&Api::<Monitor>::namespaced(ctx.client.clone(), &ns), &name, status).await?;
        // a different failure is news too
        let was = conditions::ready(&current.conditions).map(|c| (c.status == "True", c.reason.clone()));
        let ready = &outcome.conditions[0];
        if was.as_ref().map(|(ok, reason)| (*ok, reason.as_str())) != Some((ready.ok, ready.reason.as_str()))
        {
            conditions::announce(&ctx, m.as_ref(), None, ready, "Admitted").await;
        }
    }
    ctx.metrics.reconciled("monitor", started.elapsed());
    ctx.metrics.set_admitted(
        stores
            .monitors
            .state()
            .iter()
            .filter(|x| {
                let this = x.namespace().as_deref() == Some(ns.as_str()) && x.name_any() == name;
                if this {
                    outcome.admitted
                } else {
                    x.status
                        .as_ref()
                        .and_then(|s| conditions::ready(&s.conditions))
                        .is_some_and(|c| c.status == "True")
                }
            })
            .count(),
    );
    // over quota: a deletion elsewhere may admit it, so look again
    let over_quota = outcome.conditions.iter().any(|c| c.reason == "OverQuota");
    Ok(Action::requeue(if over_quota { Duration::from_secs(30) } else { Duration::from_secs(600) }))
}
