//! Which Triggers a change of another object affects.

use std::sync::Arc;

use chainwatch_crds::Trigger;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::runtime::reflector::ObjectRef;

/// A Secret changed: the Triggers of its namespace naming it.
pub fn for_secret(triggers: &[Arc<Trigger>], secret: &Secret) -> Vec<ObjectRef<Trigger>> {
    let name = secret.metadata.name.clone().unwrap_or_default();
    triggers
        .iter()
        .filter(|t| t.metadata.namespace == secret.metadata.namespace)
        .filter(|t| t.spec.secret_refs().iter().any(|r| r.name == name))
        .map(|t| ObjectRef::from_obj(t.as_ref()))
        .collect()
}

/// A ConfigMap changed: the script Triggers of its namespace reading their script from it.
pub fn for_config_map(triggers: &[Arc<Trigger>], cm: &ConfigMap) -> Vec<ObjectRef<Trigger>> {
    let name = cm.metadata.name.clone().unwrap_or_default();
    triggers
        .iter()
        .filter(|t| t.metadata.namespace == cm.metadata.namespace)
        .filter(|t| {
            t.spec
                .script
                .as_ref()
                .and_then(|s| s.source_from.as_ref())
                .is_some_and(|f| f.config_map_key_ref.name == name)
        })
        .map(|t| ObjectRef::from_obj(t.as_ref()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
        serde_json::from_value(v).unwrap()
    }

    fn triggers() -> Vec<Arc<Trigger>> {
        [
            ("a", "slack", json!({"slack": {"webhookUrlSecretRef": {"name": "chat", "key": "url"}}})),
            ("a", "mail", json!({"email": {"host": "smtp.x", "sender": "a@x.io", "recipients": ["b@x.io"], "passwordSecretRef": {"name": "smtp", "key": "p"}}})),
            ("b", "slack", json!({"slack": {"webhookUrlSecretRef": {"name": "chat", "key": "url"}}})),
            ("a", "run", json!({"script": {"language": "Bash", "sourceFrom": {"configMapKeyRef": {"name": "scripts", "key": "run.sh"}}}})),
        ]
        .into_iter()
        .map(|(ns, name, spec)| {
            Arc::new(obj(json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Trigger", "metadata": {"name": name, "namespace": ns}, "spec": spec})))
        })
        .collect()
    }

    fn names(refs: Vec<ObjectRef<Trigger>>) -> Vec<String> {
        refs.into_iter().map(|r| format!("{}/{}", r.namespace.unwrap_or_default(), r.name)).collect()
    }

    #[test]
    fn secrets_and_config_maps_affect_their_readers_in_their_namespace() {
        let chat: Secret = obj(
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "chat", "namespace": "a"}}),
        );
        assert_eq!(names(for_secret(&triggers(), &chat)), ["a/slack"]);
        let smtp: Secret = obj(
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "smtp", "namespace": "a"}}),
        );
        assert_eq!(names(for_secret(&triggers(), &smtp)), ["a/mail"]);
        let scripts: ConfigMap = obj(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "scripts", "namespace": "a"}}),
        );
        assert_eq!(names(for_config_map(&triggers(), &scripts)), ["a/run"]);
    }
}
