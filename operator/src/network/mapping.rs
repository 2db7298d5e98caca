//! Which Networks a change of another object affects.

use std::sync::Arc;

use chainwatch_crds::Network;
use k8s_openapi::api::core::v1::Secret;
use kube::Resource;
use kube::runtime::reflector::ObjectRef;

use crate::labels;

/// A Secret of the operator's namespace changed: the Networks whose endpoints read it, or all of
/// them when it is the Kafka credentials Secret (`kafka_secret`) every pipeline mounts.
pub fn for_secret(
    networks: &[Arc<Network>],
    secret: &Secret,
    kafka_secret: Option<&str>,
) -> Vec<ObjectRef<Network>> {
    let name = secret.metadata.name.clone().unwrap_or_default();
    let everyone = kafka_secret == Some(name.as_str());
    networks
        .iter()
        .filter(|n| {
            everyone || n.spec.rpc.iter().any(|e| e.url_secret_ref.as_ref().is_some_and(|r| r.name == name))
        })
        .map(|n| ObjectRef::from_obj(n.as_ref()))
        .collect()
}

/// Every Network (a setting all pipelines share changed).
pub fn all(networks: &[Arc<Network>]) -> Vec<ObjectRef<Network>> {
    networks.iter().map(|n| ObjectRef::from_obj(n.as_ref())).collect()
}

/// A child changed: its Network, by the child's label (not by owner reference: a namespaced
/// child's owner reference to the cluster-scoped Network would give a namespaced reference).
pub fn network_of<K: Resource>(child: K) -> Option<ObjectRef<Network>> {
    child.meta().labels.as_ref()?.get(labels::NETWORK).map(|n| ObjectRef::new(n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_and_children_find_their_networks() {
        let n = |name: &str, rpc: serde_json::Value| -> Arc<Network> {
            Arc::new(
                serde_json::from_value(json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Network",
                "metadata": {"name": name}, "spec": {"type": "evm", "rpc": rpc}}))
                .unwrap(),
            )
        };
        let all = vec![
            n("a", json!([{"urlSecretRef": {"name": "alchemy", "key": "url"}}])),
            n("b", json!([{"url": "https://x"}])),
        ];
        let alchemy: Secret = serde_json::from_value(json!({"metadata": {"name": "alchemy"}})).unwrap();
        assert_eq!(for_secret(&all, &alchemy, None).into_iter().map(|r| r.name).collect::<Vec<_>>(), ["a"]);
        assert_eq!(
            for_secret(&all, &alchemy, Some("alchemy")).into_iter().map(|r| r.name).collect::<Vec<_>>(),
            ["a", "b"],
            "the Kafka credentials: every pipeline"
        );
        let sts: k8s_openapi::api::apps::v1::StatefulSet = serde_json::from_value(
            json!({"metadata": {"name": "x", "labels": {"chainwatch.io/network": "b"}}}),
        )
        .unwrap();
        assert_eq!(network_of(sts).map(|r| r.name).as_deref(), Some("b"));
    }
}
