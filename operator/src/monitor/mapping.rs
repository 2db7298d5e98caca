//! Which Monitors a change of another object affects.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use chainwatch_crds::{Monitor, Network, Tenant, Trigger};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::reflector::ObjectRef;

/// Whether a Monitor is not (yet) admitted at its generation: it may name a Network or Trigger
/// that does not exist, so any Network or Trigger that appears may be the fix (and changes the
/// names its message lists as existing). A monitor without a current status counts too.
pub fn awaiting_admission(m: &Monitor) -> bool {
    m.status.as_ref().is_none_or(|s| {
        s.observed_generation != m.metadata.generation
            || s.conditions.iter().find(|c| c.type_ == "Ready").is_none_or(|c| c.status != "True")
    })
}

fn refs<'a>(monitors: impl Iterator<Item = &'a Arc<Monitor>>) -> Vec<ObjectRef<Monitor>> {
    monitors.map(|m| ObjectRef::from_obj(m.as_ref())).collect()
}

/// A Network changed: the Monitors naming it, and those not admitted (it may be the one they miss).
pub fn for_network(monitors: &[Arc<Monitor>], network: &Network) -> Vec<ObjectRef<Monitor>> {
    let name = network.metadata.name.clone().unwrap_or_default();
    refs(monitors.iter().filter(|m| m.spec.networks.contains(&name) || awaiting_admission(m)))
}

/// A Trigger changed: the Monitors of its namespace naming it, or not admitted.
pub fn for_trigger(monitors: &[Arc<Monitor>], trigger: &Trigger) -> Vec<ObjectRef<Monitor>> {
    let name = trigger.metadata.name.clone().unwrap_or_default();
    refs(monitors.iter().filter(|m| {
        m.metadata.namespace == trigger.metadata.namespace
            && (m.spec.triggers.contains(&name) || awaiting_admission(m))
    }))
}

/// A ConfigMap changed: the Monitors of its namespace reading it (contract specs, scripts).
pub fn for_config_map(monitors: &[Arc<Monitor>], cm: &ConfigMap) -> Vec<ObjectRef<Monitor>> {
    let name = cm.metadata.name.clone().unwrap_or_default();
    refs(monitors.iter().filter(|m| m.metadata.namespace == cm.metadata.namespace).filter(|m| {
        m.spec
            .addresses
            .iter()
            .any(|a| a.contract_spec_from.as_ref().is_some_and(|f| f.config_map_key_ref.name == name))
            || m.spec
                .trigger_conditions
                .iter()
                .any(|s| s.source_from.as_ref().is_some_and(|f| f.config_map_key_ref.name == name))
    }))
}

/// The namespaces a Tenant listed before and lists now, remembered per Tenant: a namespace it
/// drops loses its Tenant as much as one it adds gains one.
#[derive(Default)]
pub struct TenantNamespaces(HashMap<String, BTreeSet<String>>);

impl TenantNamespaces {
    /// The namespaces affected by this version of `tenant` (`deleted`: it is gone).
    pub fn affected(&mut self, tenant: &Tenant, deleted: bool) -> BTreeSet<String> {
        let name = tenant.metadata.name.clone().unwrap_or_default();
        let now: BTreeSet<String> = tenant.spec.namespaces.iter().cloned().collect();
        let before = if deleted { self.0.remove(&name) } else { self.0.insert(name, now.clone()) };
        before.unwrap_or_default().union(&now).cloned().collect()
    }
}

/// Objects in any of `namespaces`.
pub fn in_namespaces<K: kube::Resource<DynamicType = ()>>(
    objects: &[Arc<K>],
    namespaces: &BTreeSet<String>,
) -> Vec<ObjectRef<K>> {
    objects
        .iter()
        .filter(|o| o.meta().namespace.as_ref().is_some_and(|ns| namespaces.contains(ns)))
        .map(|o| ObjectRef::from_obj(o.as_ref()))
        .collect()
}

/// An object of a tenant was created or deleted: the tenant's objects of the same kind waiting on
/// quota (their rank may have changed).
pub fn over_quota_peers<K: kube::Resource<DynamicType = ()>>(
    objects: &[Arc<K>],
    tenant: Option<&Tenant>,
    over_quota: impl Fn(&K) -> bool,
) -> Vec<ObjectRef<K>> {
    let Some(tenant) = tenant else { return Vec::new() };
    let namespaces: BTreeSet<String> = tenant.spec.namespaces.iter().cloned().collect();
    let waiting: Vec<Arc<K>> = objects.iter().filter(|o| over_quota(o)).cloned().collect();
    in_namespaces(&waiting, &namespaces)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
        serde_json::from_value(v).unwrap()
    }

    fn monitor(ns: &str, name: &str, spec: serde_json::Value, ready: Option<(&str, i64)>) -> Arc<Monitor> {
        let mut m = json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Monitor",
            "metadata": {"name": name, "namespace": ns, "generation": 2}, "spec": spec});
        if let Some((status, generation)) = ready {
            m["status"] = json!({"observedGeneration": generation, "conditions": [{"type": "Ready", "status": status,
                "reason": "x", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]});
        }
        Arc::new(obj(m))
    }

    fn names(refs: Vec<ObjectRef<Monitor>>) -> Vec<String> {
        let mut v: Vec<String> =
            refs.into_iter().map(|r| format!("{}/{}", r.namespace.unwrap_or_default(), r.name)).collect();
        v.sort();
        v
    }

    fn world() -> Vec<Arc<Monitor>> {
        vec![
            monitor(
                "a",
                "on-eth",
                json!({"networks": ["eth"], "triggers": ["slack"], "addresses": [{"address": "0x1",
                "contractSpecFrom": {"configMapKeyRef": {"name": "abi", "key": "k"}}}]}),
                Some(("True", 2)),
            ),
            monitor("a", "on-sol", json!({"networks": ["sol"], "triggers": ["pager"]}), Some(("True", 2))),
            monitor(
                "a",
                "waiting",
                json!({"networks": ["polygon"], "triggers": ["nope"]}),
                Some(("False", 2)),
            ),
            monitor("b", "stale", json!({"networks": ["sol"], "triggers": ["slack"]}), Some(("True", 1))),
            monitor("b", "new", json!({"networks": ["sol"], "triggers": ["slack"]}), None),
        ]
    }

    #[test]
    fn a_network_affects_who_names_it_and_who_waits() {
        let eth: Network = obj(
            json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Network", "metadata": {"name": "eth"},
            "spec": {"type": "evm", "rpc": [{"url": "https://x"}]}}),
        );
        assert_eq!(names(for_network(&world(), &eth)), ["a/on-eth", "a/waiting", "b/new", "b/stale"]);
    }

    #[test]
    fn a_trigger_affects_its_namespace_only() {
        let slack: Trigger = obj(json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Trigger",
            "metadata": {"name": "slack", "namespace": "a"}, "spec": {"webhook": {"url": "https://x"}}}));
        assert_eq!(names(for_trigger(&world(), &slack)), ["a/on-eth", "a/waiting"]);
    }

    #[test]
    fn a_config_map_affects_its_readers() {
        let cm: ConfigMap = obj(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "abi", "namespace": "a"}}),
        );
        assert_eq!(names(for_config_map(&world(), &cm)), ["a/on-eth"]);
        let other: ConfigMap = obj(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "abi", "namespace": "b"}}),
        );
        assert!(for_config_map(&world(), &other).is_empty());
    }

    #[test]
    fn a_tenant_affects_the_namespaces_it_had_and_has() {
        let tenant = |namespaces: &[&str]| -> Tenant {
            obj(
                json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Tenant", "metadata": {"name": "t"}, "spec": {"namespaces": namespaces}}),
            )
        };
        let mut history = TenantNamespaces::default();
        assert_eq!(history.affected(&tenant(&["a"]), false), BTreeSet::from(["a".to_string()]));
        let moved = history.affected(&tenant(&["b"]), false);
        assert_eq!(moved, BTreeSet::from(["a".to_string(), "b".to_string()]));
        assert_eq!(names(in_namespaces(&world(), &moved)).len(), 5);
        assert_eq!(history.affected(&tenant(&["b"]), true), BTreeSet::from(["b".to_string()]));
    }

    #[test]
    fn quota_peers_are_the_tenants_waiting_objects() {
        let t: Tenant = obj(
            json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Tenant", "metadata": {"name": "t"}, "spec": {"namespaces": ["a"]}}),
        );
        let waiting =
            over_quota_peers(&world(), Some(&t), |m: &Monitor| m.metadata.name.as_deref() == Some("waiting"));
        assert_eq!(names(waiting), ["a/waiting"]);
        assert!(over_quota_peers(&world(), None, |_: &Monitor| true).is_empty());
    }
}
