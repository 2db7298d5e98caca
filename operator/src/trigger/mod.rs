//! The Trigger controller: checks that a Trigger can deliver — its Secrets exist and hold what the
//! channel needs, URLs and addresses are well-formed, scripts are allowed for the tenant and the
//! tenant's trigger limit admits it — and reports `Ready` and the channel in status.

use std::sync::Arc;
use std::time::Duration;

use chainwatch_crds::Trigger;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use serde_json::json;

use crate::conditions;
use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::monitor::{rank, tenant_of};

/// Reconciles one Trigger.
pub async fn reconcile(t: Arc<Trigger>, ctx: Ctx) -> Result<Action> {
    let stores = &ctx.stores;
    let started = std::time::Instant::now();
    let ns = t.namespace().unwrap_or_default();
    let name = t.name_any();
    let spec = &t.spec;
    let mut problems: Vec<(&'static str, String)> = Vec::new();

    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let mut values = std::collections::HashMap::new();
    for r in spec.secret_refs() {
        match secrets.get_opt(&r.name).await {
            Ok(None) => problems.push((
                "SecretNotFound",
                format!("Secret {ns}/{} does not exist: create it with key {}", r.name, r.key),
            )),
            Ok(Some(s)) => match r.value_in(&s) {
                None => problems
                    .push(("SecretKeyNotFound", format!("Secret {ns}/{} has no key {}", r.name, r.key))),
                Some(v) => {
                    values.insert(
                        (r.name.clone(), r.key.clone()),
                        String::from_utf8_lossy(&v).trim().to_string(),
                    );
                }
            },
            Err(source) => return Err(Error::Read { what: format!("Secret {ns}/{}", r.name), source }),
        }
    }
    let value = |r: &chainwatch_crds::SecretKeyRef| values.get(&(r.name.clone(), r.key.clone())).cloned();
    problems.extend(
        chainwatch_core::trigger_checks::check(spec, &value).into_iter().map(|p| (p.reason, p.message)),
    );
    let tenant = tenant_of(&stores.tenants, &ns);
    if let Some(script) = &spec.script {
        if !tenant.as_ref().is_some_and(|t| t.spec.limits.allow_scripts) {
            problems.push((
                "ScriptsNotAllowed",
                "spec.script: the namespace's tenant does not allow scripts (spec.limits.allowScripts)"
                    .into(),
            ));
        }
        if let Some(from) = &script.source_from {
            let r = &from.config_map_key_ref;
            let cm = Api::<ConfigMap>::namespaced(ctx.client.clone(), &ns)
                .get_opt(&r.name)
                .await
                .map_err(|source| Error::Read { what: format!("ConfigMap {ns}/{}", r.name), source })?;
            if !cm.and_then(|c| c.data).is_some_and(|d| d.contains_key(&r.key)) {
                problems.push((
                    "ConfigMapNotFound",
                    format!(
                        "spec.script.sourceFrom: ConfigMap {ns}/{} with key {} does not exist",
                        r.name, r.key
                    ),
                ));
            }
        }
    }
    match &tenant {
        None => problems.push((
            "NoTenant",
            format!("namespace {ns} belongs to no Tenant: create a Tenant whose spec.namespaces lists {ns}"),
        )),
        Some(tn) => {
            if let (Some(max), Some(r)) =
                (tn.spec.limits.max_triggers, rank(stores.triggers.state(), tn, &ns, &name))
                && r as u32 >= max
            {
                problems.push(("OverQuota", format!("tenant {} allows {max} triggers (spec.limits.maxTriggers); this is trigger number {} by creation time", tn.name_any(), r + 1)));
            }
        }
    }

    let ready =
        conditions::ready_from(&problems, format!("{} trigger ready", spec.channel().unwrap_or("unknown")));
    let current = t.status.clone().unwrap_or_default();
    let update = conditions::update(&current.conditions, std::slice::from_ref(&ready), t.metadata.generation);
    let channel = spec.channel().map(str::to_string);
    if update.changed || current.observed_generation != t.metadata.generation || current.channel != channel {
        let status = json!({"conditions": update.conditions, "observedGeneration": t.metadata.generation, "channel": channel});
        conditions::apply_status(&Api::<Trigger>::namespaced(ctx.client.clone(), &ns), &name, status).await?;
        conditions::announce(&ctx, t.as_ref(), update.was_ready, &ready, "Ready").await;
    }
    ctx.metrics.reconciled("trigger", started.elapsed());
    Ok(Action::requeue(Duration::from_secs(if ready.ok { 600 } else { 60 })))
}
