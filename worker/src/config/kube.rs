//! Feeds the [`ConfigStore`](super::ConfigStore) from the API server: one watch per kind.
//!
//! Objects are received untyped and decoded one by one, so an object that does not decode (stored
//! before a schema change, say) is skipped and counted instead of breaking the watch for everyone.
//! After a (re)list, objects of that kind that disappeared meanwhile are removed.

use std::collections::HashSet;

use ::kube::api::{Api, DynamicObject};
use ::kube::core::ApiResource;
use ::kube::runtime::WatchStreamExt;
use ::kube::runtime::watcher::{self, Event};
use ::kube::{Client, Resource, ResourceExt};
use chainwatch_crds::{Monitor, Network, Tenant, Trigger};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use super::ConfigStore;
use crate::metrics::WorkerMetrics;

/// How the store learns about one kind.
trait Kind: Resource<DynamicType = ()> + DeserializeOwned + Clone + Send + 'static {
    const NAME: &'static str;
    fn apply(store: &ConfigStore, o: Self);
    fn delete(store: &ConfigStore, namespace: &str, name: &str);
}

macro_rules! kind {
    ($t:ty, $name:literal, $apply:ident, $delete:ident, namespaced) => {
        impl Kind for $t {
            const NAME: &'static str = $name;
            fn apply(store: &ConfigStore, o: Self) {
                store.$apply(o)
            }
            fn delete(store: &ConfigStore, namespace: &str, name: &str) {
                store.$delete(namespace, name)
            }
        }
    };
    ($t:ty, $name:literal, $apply:ident, $delete:ident, cluster) => {
        impl Kind for $t {
            const NAME: &'static str = $name;
            fn apply(store: &ConfigStore, o: Self) {
                store.$apply(o)
            }
            fn delete(store: &ConfigStore, _namespace: &str, name: &str) {
                store.$delete(name)
            }
        }
    };
}

kind!(Monitor, "Monitor", apply_monitor, delete_monitor, namespaced);
kind!(Trigger, "Trigger", apply_trigger, delete_trigger, namespaced);
kind!(Network, "Network", apply_network, delete_network, cluster);
kind!(Tenant, "Tenant", apply_tenant, delete_tenant, cluster);
kind!(Secret, "Secret", apply_secret, delete_secret, namespaced);
kind!(ConfigMap, "ConfigMap", apply_config_map, delete_config_map, namespaced);

fn decode<K: Kind>(obj: DynamicObject, metrics: &WorkerMetrics) -> Option<K> {
    let name = format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any());
    let value = serde_json::to_value(&obj).ok()?;
    match serde_json::from_value::<K>(value) {
        Ok(o) => Some(o),
        Err(e) => {
            metrics.malformed_object(K::NAME);
            tracing::warn!(kind = K::NAME, object = %name, error = %e, "skipping an object that does not decode");
            None
        }
    }
}

async fn follow<K: Kind>(
    client: Client,
    store: ConfigStore,
    metrics: WorkerMetrics,
    stop: CancellationToken,
) {
    let ar = ApiResource::erase::<K>(&());
    let api: Api<DynamicObject> = Api::all_with(client, &ar);
    let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
    futures::pin_mut!(stream);
    // objects seen in the current (re)list, to drop those that vanished meanwhile
    let mut listing: Option<HashSet<(String, String)>> = None;
    let mut known: HashSet<(String, String)> = HashSet::new();
    loop {
        let event = tokio::select! {
            _ = stop.cancelled() => return,
            e = stream.next() => e,
        };
        match event {
            None => return,
            Some(Err(e)) => {
                metrics.watch_error(K::NAME);
                tracing::warn!(kind = K::NAME, error = %e, "watch failed; retrying with backoff");
            }
            Some(Ok(Event::Init)) => listing = Some(HashSet::new()),
            Some(Ok(Event::InitApply(obj) | Event::Apply(obj))) => {
                let id = (obj.namespace().unwrap_or_default(), obj.name_any());
                if let Some(l) = listing.as_mut() {
                    l.insert(id.clone());
                }
                known.insert(id);
                if let Some(o) = decode::<K>(obj, &metrics) {
                    K::apply(&store, o);
                }
            }
            Some(Ok(Event::Delete(obj))) => {
                let id = (obj.namespace().unwrap_or_default(), obj.name_any());
                known.remove(&id);
                K::delete(&store, &id.0, &id.1);
            }
            Some(Ok(Event::InitDone)) => {
                if let Some(seen) = listing.take() {
                    for (ns, name) in known.difference(&seen).cloned().collect::<Vec<_>>() {
                        K::delete(&store, &ns, &name);
                        known.remove(&(ns, name));
                    }
                }
                metrics.synced(K::NAME);
            }
        }
    }
}

/// Watches every kind the worker needs until `stop`.
pub async fn feed(client: Client, store: ConfigStore, metrics: WorkerMetrics, stop: CancellationToken) {
    tokio::join!(
        follow::<Monitor>(client.clone(), store.clone(), metrics.clone(), stop.clone()),
        follow::<Trigger>(client.clone(), store.clone(), metrics.clone(), stop.clone()),
        follow::<Network>(client.clone(), store.clone(), metrics.clone(), stop.clone()),
        follow::<Tenant>(client.clone(), store.clone(), metrics.clone(), stop.clone()),
        follow::<Secret>(client.clone(), store.clone(), metrics.clone(), stop.clone()),
        follow::<ConfigMap>(client, store, metrics, stop),
    );
}
