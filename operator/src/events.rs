//! Kubernetes Events about the objects the operator reconciles (core/v1 Events), emitted on
//! transitions only — never one per reconcile or per match.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::{Api, PostParams};
use kube::{Client, Resource, ResourceExt};

/// Writes events.
#[derive(Clone)]
pub struct Events {
    client: Client,
    /// Namespace of events about cluster-scoped objects.
    default_namespace: String,
    instance: String,
    /// Warnings held back for a grace, by object (see `conditions::announce_references`).
    pub held: Held,
}

/// A Warning not published yet: its problem may resolve by itself within a grace.
#[derive(Clone, Debug)]
pub struct HeldWarning {
    pub reason: String,
    pub due: std::time::Instant,
}

/// The held Warnings, by `Kind/namespace/name`.
#[derive(Clone, Default)]
pub struct Held(std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, HeldWarning>>>);

impl Held {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, HeldWarning>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
    pub fn hold(&self, key: String, warning: HeldWarning) {
        self.lock().insert(key, warning);
    }
    pub fn get(&self, key: &str) -> Option<HeldWarning> {
        self.lock().get(key).cloned()
    }
    pub fn drop_held(&self, key: &str) {
        self.lock().remove(key);
    }
}

/// Normal or Warning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Normal,
    Warning,
}

impl Events {
    pub fn new(client: Client, default_namespace: &str, instance: &str) -> Self {
        Self {
            client,
            default_namespace: default_namespace.into(),
            instance: instance.into(),
            held: Held::default(),
        }
    }

    /// Publishes an event about `obj` (failures to publish are logged, not returned).
    pub async fn publish<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        level: Level,
        reason: &str,
        message: &str,
    ) {
        let reference = ObjectReference {
            api_version: Some(K::api_version(&()).into_owned()),
            kind: Some(K::kind(&()).into_owned()),
            name: Some(obj.name_any()),
            namespace: obj.namespace(),
            uid: obj.meta().uid.clone(),
            resource_version: obj.meta().resource_version.clone(),
            ..Default::default()
        };
        self.publish_about(reference, level, reason, message).await;
    }

    /// Publishes an event about the object `reference` names.
    pub async fn publish_about(&self, reference: ObjectReference, level: Level, reason: &str, message: &str) {
        let ns = reference.namespace.clone().unwrap_or_else(|| self.default_namespace.clone());
        let now = k8s_openapi::jiff::Timestamp::now();
        let name = format!("{}.{:x}", reference.name.clone().unwrap_or_default(), now.as_nanosecond());
        let event = Event {
            metadata: ObjectMeta { name: Some(name), namespace: Some(ns.clone()), ..Default::default() },
            involved_object: reference,
            reason: Some(reason.into()),
            message: Some(message.chars().take(1024).collect()),
            type_: Some(
                match level {
                    Level::Normal => "Normal",
                    Level::Warning => "Warning",
                }
                .into(),
            ),
            source: Some(EventSource { component: Some("chainwatch-operator".into()), host: None }),
            reporting_component: Some("chainwatch.io/operator".into()),
            reporting_instance: Some(self.instance.clone()),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            event_time: Some(MicroTime(now)),
            action: Some("Reconcile".into()),
            count: Some(1),
            ..Default::default()
        };
        if let Err(e) =
            Api::<Event>::namespaced(self.client.clone(), &ns).create(&PostParams::default(), &event).await
        {
            tracing::debug!(error = %e, %reason, "publishing an event failed");
        }
    }
}
