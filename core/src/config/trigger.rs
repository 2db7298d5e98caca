//! Admission of a Trigger: the Secrets it names exist and hold what the channel needs, URLs and
//! addresses are well-formed, scripts are allowed for the tenant and their text resolves, and the
//! tenant's trigger limit admits it. The result also carries the Trigger resolved for delivery
//! (credentials decoded by the one rule, the script text read), which the worker sends with.

use std::collections::HashMap;

use chainwatch_crds::{SecretKeyRef, Trigger, TriggerSpec};

use super::{Catalog, Check, Quota, RefProblem, trigger_checks};
use crate::monitor::compile::resolve_script;
use crate::monitor::{CompileError, ResolvedScript};

/// A trigger with its credentials read, as the worker delivers through it.
#[derive(Clone, Debug)]
pub struct ResolvedTrigger {
    pub namespace: String,
    pub name: String,
    pub generation: Option<i64>,
    pub spec: TriggerSpec,
    /// Secret values by reference; `Err` says why one does not resolve.
    pub secrets: HashMap<SecretKeyRef, Result<String, RefProblem>>,
    /// Script text (inline or from its ConfigMap), for script triggers.
    pub script: Option<Result<ResolvedScript, CompileError>>,
}

impl ResolvedTrigger {
    /// The value of a Secret reference of this trigger.
    pub fn secret(&self, r: &SecretKeyRef) -> Result<&str, RefProblem> {
        match self.secrets.get(r) {
            Some(Ok(v)) => Ok(v.as_str()),
            Some(Err(e)) => Err(e.clone()),
            None => Err(RefProblem::Unreadable {
                what: format!("Secret {}/{} (key {})", self.namespace, r.name, r.key),
                why: "cannot be read yet: the trigger was resolved before it named it".into(),
            }),
        }
    }

    /// Every secret value it holds (to scrub them from anything written down).
    pub fn secret_values(&self) -> impl Iterator<Item = &str> {
        self.secrets.values().filter_map(|v| v.as_deref().ok())
    }
}

/// Resolves a Trigger's credentials and script.
pub fn resolve_trigger(t: &Trigger, catalog: &dyn Catalog) -> ResolvedTrigger {
    let ns = t.metadata.namespace.clone().unwrap_or_default();
    let secrets =
        t.spec.secret_refs().into_iter().map(|r| (r.clone(), catalog.secret_value(&ns, r))).collect();
    let script = t.spec.script.as_ref().map(|s| {
        let reader = |r: &chainwatch_crds::ConfigMapKeyRef| {
            catalog.config_map_value(&ns, r).map_err(|p| p.to_string())
        };
        resolve_script(s, "spec.script", &reader)
    });
    ResolvedTrigger {
        name: t.metadata.name.clone().unwrap_or_default(),
        namespace: ns,
        generation: t.metadata.generation,
        spec: t.spec.clone(),
        secrets,
        script,
    }
}

/// The verdict on a Trigger.
#[derive(Debug)]
pub struct TriggerVerdict {
    pub tenant: Option<String>,
    /// Ready: True, or False with the first problem's reason and every message.
    pub ready: Check,
    /// Every problem: `(reason, message)`; messages about a field start with it.
    pub problems: Vec<(&'static str, String)>,
    /// A reference could not be read yet: the verdict may change without any object changing.
    pub unsettled: bool,
    pub resolved: ResolvedTrigger,
}

/// Admits (or not) a Trigger.
pub fn admit_trigger(t: &Trigger, catalog: &dyn Catalog) -> TriggerVerdict {
    let resolved = resolve_trigger(t, catalog);
    let (ns, name) = (&resolved.namespace, &resolved.name);
    let spec = &t.spec;
    let mut problems: Vec<(&'static str, String)> = Vec::new();
    let mut unsettled = false;
    for r in spec.secret_refs() {
        if let Some(Err(p)) = resolved.secrets.get(r) {
            unsettled |= p.is_transient();
            let fix = match p {
                RefProblem::SecretNotFound { .. } => format!(": create it with key {}", r.key),
                _ => String::new(),
            };
            problems.push((p.reason(), format!("{p}{fix}")));
        }
    }
    let value = |r: &SecretKeyRef| resolved.secrets.get(r).and_then(|v| v.clone().ok());
    problems.extend(trigger_checks::check(spec, &value).into_iter().map(|p| (p.reason, p.message)));
    let tenant = catalog.tenant_of(ns);
    if spec.script.is_some() {
        if !tenant.as_ref().is_some_and(|t| t.spec.limits.allow_scripts) {
            problems.push((
                "ScriptsNotAllowed",
                "spec.script: the namespace's tenant does not allow scripts (spec.limits.allowScripts)"
                    .into(),
            ));
        }
        if let Some(Err(e)) = &resolved.script {
            problems.push((
                if e.reason == "ConfigMapNotFound" { "ConfigMapNotFound" } else { "InvalidScript" },
                e.to_string(),
            ));
        }
    }
    match &tenant {
        None => problems.push((
            "NoTenant",
            format!("namespace {ns} belongs to no Tenant: create a Tenant whose spec.namespaces lists {ns}"),
        )),
        Some(tn) => {
            if let Some(max) = tn.spec.limits.max_triggers
                && let Some(r) = catalog.rank(Quota::Triggers, tn, ns, name)
                && r as u32 >= max
            {
                problems.push(("OverQuota", format!("tenant {} allows {max} triggers (spec.limits.maxTriggers); this is trigger number {} by creation time", tn.metadata.name.clone().unwrap_or_default(), r + 1)));
            }
        }
    }
    let ready =
        Check::ready_from(&problems, format!("{} trigger ready", spec.channel().unwrap_or("unknown")));
    TriggerVerdict {
        tenant: tenant.and_then(|t| t.metadata.name.clone()),
        ready,
        problems,
        unsettled,
        resolved,
    }
}
