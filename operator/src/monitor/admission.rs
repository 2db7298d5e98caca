//! Admission of a Monitor, as a pure function of the Monitor and what it refers to: its Tenant, the
//! Networks, the Triggers of its namespace, ConfigMaps, and its rank among the tenant's monitors.
//! Every problem becomes a condition whose message names the field and the fix.

use std::collections::{BTreeMap, BTreeSet};

use chainwatch_core::monitor::{AbiCache, MonitorKey, MonitorSource, compile};
use chainwatch_crds::monitor::conditions::{COMPILED, REFERENCES_RESOLVED, WITHIN_QUOTA};
use chainwatch_crds::{ChainType, ConfigMapKeyRef, Monitor, Tenant};
use kube::ResourceExt;

use crate::conditions::Desired;

/// What admission looks at besides the Monitor.
pub struct Input<'a> {
    pub tenant: Option<&'a Tenant>,
    /// Networks by name, with their chain type.
    pub networks: &'a BTreeMap<String, ChainType>,
    /// Triggers of the monitor's namespace.
    pub triggers: &'a BTreeSet<String>,
    pub config_maps: &'a dyn Fn(&ConfigMapKeyRef) -> Result<String, String>,
    /// Position of the monitor among its tenant's monitors, oldest first (0-based).
    pub rank: Option<usize>,
    pub abis: &'a AbiCache,
}

/// The outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Ready first, then Compiled, ReferencesResolved, WithinQuota.
    pub conditions: Vec<Desired>,
    pub tenant: Option<String>,
    pub admitted: bool,
}

fn list(names: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    let v: Vec<String> = names.into_iter().map(|s| s.as_ref().to_string()).take(10).collect();
    if v.is_empty() { "none".into() } else { v.join(", ") }
}

/// Admits (or not) a Monitor.
pub fn admit(m: &Monitor, input: &Input<'_>) -> Outcome {
    let ns = m.namespace().unwrap_or_default();
    let key = MonitorKey::new(&ns, m.name_any());

    // references
    let mut refs = Vec::new();
    for (i, n) in m.spec.networks.iter().enumerate() {
        if !input.networks.contains_key(n) {
            refs.push(("NetworkNotFound", format!("spec.networks[{i}]: Network {n} does not exist (existing: {}); create it or fix the name", list(input.networks.keys()))));
        }
    }
    for (i, t) in m.spec.triggers.iter().enumerate() {
        if !input.triggers.contains(t) {
            refs.push(("TriggerNotFound", format!("spec.triggers[{i}]: Trigger {t} does not exist in namespace {ns} (existing: {}); create it or fix the name", list(input.triggers))));
        }
    }
    let references = match refs.first() {
        None => Desired::new(REFERENCES_RESOLVED, true, "Resolved", "every Network and Trigger named exists"),
        Some((reason, _)) => Desired::new(
            REFERENCES_RESOLVED,
            false,
            reason,
            refs.iter().map(|(_, m)| m.as_str()).collect::<Vec<_>>().join("; "),
        ),
    };

    // compilation, once per chain type among its networks
    let chains: BTreeSet<ChainType> =
        m.spec.networks.iter().filter_map(|n| input.networks.get(n).copied()).collect();
    let source = MonitorSource {
        key: key.clone(),
        generation: m.metadata.generation,
        spec: &m.spec,
        config_maps: input.config_maps,
    };
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    for chain in &chains {
        match compile(&source, *chain, input.abis) {
            Ok(c) => warnings.extend(c.warnings.iter().cloned()),
            Err(e) => errors.extend(e),
        }
    }
    errors.dedup();
    warnings.sort();
    warnings.dedup();
    let compiled = match errors.first() {
        None if chains.is_empty() => Desired::new(
            COMPILED,
            false,
            "NoKnownNetwork",
            "none of spec.networks exists yet, so the chain type to compile for is unknown",
        ),
        None if warnings.is_empty() => {
            Desired::new(COMPILED, true, "Compiled", "expressions, signatures and contract specs compiled")
        }
        None => Desired::new(
            COMPILED,
            true,
            "CompiledWithWarnings",
            format!("compiled; warnings: {}", warnings.join("; ")),
        ),
        Some(first) => Desired::new(
            COMPILED,
            false,
            &first.reason,
            errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "),
        ),
    };

    // tenant, scripts, quota
    let tenant = input.tenant;
    let tenant_name = tenant.map(ResourceExt::name_any);
    let quota = match (tenant, input.rank) {
        (None, _) => Desired::new(
            WITHIN_QUOTA,
            false,
            "NoTenant",
            format!("namespace {ns} belongs to no Tenant: create a Tenant whose spec.namespaces lists {ns}"),
        ),
        (Some(t), rank) => match (t.spec.limits.max_monitors, rank) {
            (Some(max), Some(r)) if r as u32 >= max => Desired::new(
                WITHIN_QUOTA,
                false,
                "OverQuota",
                format!(
                    "tenant {} allows {max} monitors (spec.limits.maxMonitors); this is monitor number {} by creation time: delete a monitor or raise the limit",
                    t.name_any(),
                    r + 1
                ),
            ),
            _ if !m.spec.trigger_conditions.is_empty() && !t.spec.limits.allow_scripts => Desired::new(
                WITHIN_QUOTA,
                false,
                "ScriptsNotAllowed",
                format!(
                    "spec.triggerConditions: tenant {} does not allow scripts (spec.limits.allowScripts); remove the scripts or ask for the limit",
                    t.name_any()
                ),
            ),
            _ => Desired::new(
                WITHIN_QUOTA,
                true,
                "WithinQuota",
                format!("admitted under tenant {}", t.name_any()),
            ),
        },
    };

    let ready = if !quota.ok && quota.reason == "NoTenant" {
        Desired::new("Ready", false, "NoTenant", quota.message.clone())
    } else if !references.ok {
        Desired::new("Ready", false, &references.reason, references.message.clone())
    } else if !compiled.ok {
        Desired::new("Ready", false, &compiled.reason, compiled.message.clone())
    } else if !quota.ok {
        Desired::new("Ready", false, &quota.reason, quota.message.clone())
    } else if m.spec.paused {
        Desired::new("Ready", true, "Paused", "admitted; paused monitors are not evaluated")
    } else {
        Desired::new("Ready", true, "Admitted", format!("evaluated on {}", m.spec.networks.join(", ")))
    };
    let admitted = ready.ok;
    Outcome { conditions: vec![ready, compiled, references, quota], tenant: tenant_name, admitted }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn monitor(spec: serde_json::Value) -> Monitor {
        serde_json::from_value(json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Monitor", "metadata": {"name": "m", "namespace": "acme", "generation": 3}, "spec": spec})).unwrap()
    }

    fn tenant(limits: serde_json::Value) -> Tenant {
        serde_json::from_value(json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Tenant", "metadata": {"name": "acme"}, "spec": {"namespaces": ["acme"], "limits": limits}})).unwrap()
    }

    fn run(m: &Monitor, t: Option<&Tenant>, rank: usize) -> Outcome {
        let networks = BTreeMap::from([("eth".to_string(), ChainType::Evm)]);
        let triggers = BTreeSet::from(["slack".to_string()]);
        let cms = |r: &ConfigMapKeyRef| Err(format!("ConfigMap {} not found", r.name));
        let abis = AbiCache::default();
        admit(
            m,
            &Input {
                tenant: t,
                networks: &networks,
                triggers: &triggers,
                config_maps: &cms,
                rank: Some(rank),
                abis: &abis,
            },
        )
    }

    fn ready(o: &Outcome) -> (&str, bool, &str) {
        (o.conditions[0].reason.as_str(), o.conditions[0].ok, o.conditions[0].message.as_str())
    }

    #[test]
    fn each_problem_names_the_field_and_the_fix() {
        let t = tenant(json!({"maxMonitors": 2}));
        let ok = monitor(
            json!({"networks": ["eth"], "addresses": [{"address": "0x0000000000000000000000000000000000000001"}], "triggers": ["slack"]}),
        );
        assert_eq!(ready(&run(&ok, Some(&t), 0)).0, "Admitted");

        let no_tenant = run(&ok, None, 0);
        let (reason, admitted, message) = ready(&no_tenant);
        assert_eq!((reason, admitted), ("NoTenant", false));
        assert!(message.contains("create a Tenant whose spec.namespaces lists acme"));

        let bad_network = monitor(json!({"networks": ["ethh"], "triggers": ["slack"]}));
        let o = run(&bad_network, Some(&t), 0);
        assert_eq!(ready(&o).0, "NetworkNotFound");
        assert!(ready(&o).2.contains("spec.networks[0]: Network ethh does not exist (existing: eth)"));

        let bad_trigger = monitor(json!({"networks": ["eth"], "triggers": ["slak"]}));
        assert!(ready(&run(&bad_trigger, Some(&t), 0)).2.starts_with(
            "spec.triggers[0]: Trigger slak does not exist in namespace acme (existing: slack)"
        ));

        let bad_expr = monitor(
            json!({"networks": ["eth"], "triggers": ["slack"], "matchConditions": {"transactions": [{"expression": "value >> 1"}]}}),
        );
        let o = run(&bad_expr, Some(&t), 0);
        assert_eq!(ready(&o).0, "ExpressionSyntaxError");
        assert!(
            ready(&o).2.starts_with(
                "spec.matchConditions.transactions[0].expression: `value >> 1`: syntax error at column 8"
            ),
            "{}",
            ready(&o).2
        );

        let over = run(&ok, Some(&t), 2);
        assert_eq!(ready(&over).0, "OverQuota");
        assert!(ready(&over).2.contains("monitor number 3 by creation time"));

        let scripts = monitor(
            json!({"networks": ["eth"], "triggers": ["slack"], "triggerConditions": [{"language": "Bash", "source": "echo false"}]}),
        );
        assert_eq!(ready(&run(&scripts, Some(&t), 0)).0, "ScriptsNotAllowed");
        assert_eq!(ready(&run(&scripts, Some(&tenant(json!({"allowScripts": true}))), 0)).0, "Admitted");
    }
}
