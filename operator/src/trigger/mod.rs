//! The Trigger controller: admits Triggers ([`chainwatch_core::config::admit_trigger`]) — their
//! Secrets exist and hold what the channel needs, URLs and addresses are well-formed, scripts are
//! allowed and resolve, the tenant's limit admits it — and reports `Ready` and the channel.

pub mod mapping;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chainwatch_core::config::{Catalog, admit_trigger};
use chainwatch_crds::Trigger;
use chainwatch_platform::cache::Change;
use futures::StreamExt;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::changes::{changed, mapped, own, spec_changed};
use crate::conditions::{self, Check};
use crate::context::Ctx;
use crate::error::Result;
use crate::monitor::mapping::{TenantNamespaces, in_namespaces, over_quota_peers};
use crate::supervise::supervised;

fn over_quota(t: &Trigger) -> bool {
    t.status.as_ref().is_some_and(|s| s.conditions.iter().any(|c| c.reason == "OverQuota"))
}

/// Runs the controller until `stop`.
pub async fn controller(ctx: Ctx, stop: CancellationToken) {
    let c = ctx.caches.clone();
    let (reconciler, on_error) = supervised("trigger", reconcile);
    let store = c.triggers.store();
    let (peers, tenants) = (store.clone(), c.clone());
    let (by_secret, by_config_map, by_tenant) = (store.clone(), store.clone(), store.clone());
    let tenant_history = Mutex::new(TenantNamespaces::default());
    Controller::for_stream(futures::stream::pending(), store.clone())
        .reconcile_on(own(spec_changed(c.triggers.subscribe())))
        // the workers' Delivering condition: Ready says whether deliveries succeed
        .reconcile_on(own(changed(c.triggers.subscribe(), |t| {
            delivering(t).map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
        })))
        .reconcile_on(mapped(spec_changed(c.triggers.subscribe()), move |ch: &Change<Trigger>| {
            let tenant = ch.object().namespace().and_then(|ns| tenants.tenant_of(&ns));
            over_quota_peers(&peers.state(), tenant.as_deref(), over_quota)
        }))
        .reconcile_on(mapped(
            changed(c.secrets.subscribe(), |s| (s.data.clone(), s.string_data.clone())),
            move |ch| mapping::for_secret(&by_secret.state(), ch.object()),
        ))
        .reconcile_on(mapped(changed(c.config_maps.subscribe(), |cm| cm.data.clone()), move |ch| {
            mapping::for_config_map(&by_config_map.state(), ch.object())
        }))
        .reconcile_on(mapped(spec_changed(c.tenants.subscribe()), move |ch| {
            let deleted = matches!(ch, Change::Deleted(_));
            let namespaces =
                tenant_history.lock().unwrap_or_else(|p| p.into_inner()).affected(ch.object(), deleted);
            in_namespaces(&by_tenant.state(), &namespaces)
        }))
        .graceful_shutdown_on(stop.cancelled_owned())
        .run(reconciler, on_error, Arc::new(ctx))
        .for_each(|_| async {})
        .await;
}

/// The workers' `Delivering` condition of a Trigger.
fn delivering(t: &Trigger) -> Option<&chainwatch_crds::common::Condition> {
    t.status.as_ref()?.conditions.iter().find(|c| c.type_ == "Delivering")
}

/// `Ready` of an admitted Trigger also says whether its deliveries succeed: the workers'
/// `Delivering=False` (retrying through an outage, dead-lettered, rejected) makes it False with
/// that reason and message. A Trigger that is not admitted keeps admission's verdict.
pub fn with_delivery(admitted: Check, delivering: Option<&chainwatch_crds::common::Condition>) -> Check {
    match delivering {
        Some(d) if admitted.ok && d.status == "False" => {
            Check::new("Ready", false, &d.reason, d.message.clone())
        }
        _ => admitted,
    }
}

/// Reconciles one Trigger.
pub async fn reconcile(t: Arc<Trigger>, ctx: Ctx) -> Result<Action> {
    let ns = t.namespace().unwrap_or_default();
    let name = t.name_any();
    let verdict = admit_trigger(&t, &ctx.caches);
    let ready = with_delivery(verdict.ready, delivering(&t));
    let current = t.status.clone().unwrap_or_default();
    let update = conditions::update(&current.conditions, std::slice::from_ref(&ready), t.metadata.generation);
    let channel = t.spec.channel().map(str::to_string);
    let mut held = None;
    if update.changed || current.observed_generation != t.metadata.generation || current.channel != channel {
        let status = json!({"conditions": update.conditions, "observedGeneration": t.metadata.generation, "channel": channel});
        conditions::apply_status(&Api::<Trigger>::namespaced(ctx.client.clone(), &ns), &name, status).await?;
        held = conditions::announce_references(&ctx, t.as_ref(), update.was_ready, &ready, "Ready").await;
    }
    let held = match held {
        Some(left) => Some(left),
        None => conditions::release_held(&ctx, t.as_ref(), &ready).await,
    };
    if let Some(left) = held {
        // a Warning held for a grace: published then if the reference is still missing
        return Ok(Action::requeue(left + Duration::from_millis(100)));
    }
    Ok(Action::requeue(Duration::from_secs(if verdict.unsettled {
        2
    } else if ready.ok {
        600
    } else {
        60
    })))
}

#[cfg(test)]
mod delivery_tests {
    use super::*;

    fn delivering(status: &str, reason: &str) -> chainwatch_crds::common::Condition {
        serde_json::from_value(serde_json::json!({"type": "Delivering", "status": status, "reason": reason,
            "message": "HTTP 500 from https://hooks.example", "lastTransitionTime": "2026-01-01T00:00:00Z"}))
        .unwrap()
    }

    #[test]
    fn failing_deliveries_make_an_admitted_trigger_not_ready() {
        let admitted = Check::new("Ready", true, "Ready", "webhook trigger ready");
        let failed = with_delivery(admitted.clone(), Some(&delivering("False", "DeliveryFailed")));
        assert_eq!(
            (failed.ok, failed.reason.as_str(), failed.message.as_str()),
            (false, "DeliveryFailed", "HTTP 500 from https://hooks.example")
        );
        assert!(with_delivery(admitted.clone(), Some(&delivering("True", "Delivered"))).ok);
        assert!(with_delivery(admitted.clone(), None).ok);
        // not admitted: admission's reason stays (the workers do not deliver through it anyway)
        let missing = Check::new("Ready", false, "SecretNotFound", "spec.webhook.secretRef");
        assert_eq!(
            with_delivery(missing, Some(&delivering("False", "DeliveryFailed"))).reason,
            "SecretNotFound"
        );
    }
}
