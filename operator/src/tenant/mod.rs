//! The Tenant controller: its namespaces exist, its users and groups may edit Monitors and
//! Triggers there (RoleBindings), RoleBindings in namespaces it no longer lists are removed, and its
//! status counts its Monitors and Triggers.

pub mod build;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chainwatch_crds::Tenant;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::controller::Action;
use serde_json::json;

use crate::conditions;
use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::events::Level;
use crate::labels;
use crate::monitor::tenant_of;
use crate::network::apply;

/// Reconciles one Tenant.
pub async fn reconcile(t: Arc<Tenant>, ctx: Ctx) -> Result<Action> {
    let stores = &ctx.stores;
    let started = std::time::Instant::now();
    let name = t.name_any();
    let mut problems: Vec<(&'static str, String)> = Vec::new();
    let mut owned = BTreeSet::new();
    let ns_api: Api<Namespace> = Api::all(ctx.client.clone());
    for ns in &t.spec.namespaces {
        if let Some(owner) = tenant_of(&stores.tenants, ns)
            && owner.name_any() != name
        {
            problems.push(("NamespaceConflict", format!("namespace {ns} already belongs to tenant {} (the oldest claim wins); remove it from spec.namespaces", owner.name_any())));
            continue;
        }
        match ns_api.get_opt(ns).await {
            Ok(Some(_)) => {}
            Ok(None) => match ns_api.create(&PostParams::default(), &build::namespace(&t, ns)).await {
                Ok(_) => {
                    ctx.events
                        .publish(
                            t.as_ref(),
                            Level::Normal,
                            "NamespaceCreated",
                            &format!("created namespace {ns}"),
                        )
                        .await
                }
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(source) => return Err(Error::Apply { kind: "Namespace", name: ns.clone(), source }),
            },
            Err(source) => return Err(Error::Read { what: format!("Namespace {ns}"), source }),
        }
        owned.insert(ns.clone());
    }
    if ctx.rbac_available {
        for ns in &owned {
            apply(&Api::<RoleBinding>::namespaced(ctx.client.clone(), ns), &build::role_binding(&t, ns))
                .await?;
        }
        // RoleBindings of namespaces it no longer lists
        let all: Api<RoleBinding> = Api::all(ctx.client.clone());
        let list = all
            .list(&ListParams::default().labels(&labels::tenant_children(&name)))
            .await
            .map_err(|source| Error::List { kind: "RoleBinding", source })?;
        for rb in list.items {
            let ns = rb.namespace().unwrap_or_default();
            if !owned.contains(&ns) {
                let api: Api<RoleBinding> = Api::namespaced(ctx.client.clone(), &ns);
                match api.delete(&rb.name_any(), &DeleteParams::background()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(source) => {
                        return Err(Error::Delete {
                            kind: "RoleBinding",
                            name: format!("{ns}/{}", rb.name_any()),
                            source,
                        });
                    }
                }
            }
        }
    } else {
        problems.push((
            "RbacUnavailable",
            "the API server does not serve rbac.authorization.k8s.io: no RoleBindings were created".into(),
        ));
    }

    let in_tenant = |ns: Option<String>| ns.is_some_and(|n| owned.contains(&n));
    let monitors: Vec<_> = stores.monitors.state().into_iter().filter(|m| in_tenant(m.namespace())).collect();
    let ready_monitors = monitors
        .iter()
        .filter(|m| {
            m.status
                .as_ref()
                .and_then(|s| conditions::ready(&s.conditions))
                .is_some_and(|c| c.status == "True")
        })
        .count();
    let triggers = stores.triggers.state().into_iter().filter(|x| in_tenant(x.namespace())).count();
    let ready = conditions::ready_from(
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
    ctx.metrics.reconciled("tenant", started.elapsed());
    Ok(Action::requeue(Duration::from_secs(300)))
}
