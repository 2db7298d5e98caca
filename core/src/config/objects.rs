//! A [`Catalog`] over plain sets of objects: the worker's state (fed by its watches, or by files in
//! `chainwatch dev`) and the CLI's manifest files.

use std::collections::BTreeMap;
use std::sync::Arc;

use chainwatch_crds::{Monitor, Network, Tenant, Trigger};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{Catalog, Lookup, Peer, Quota};

/// `(namespace, name)`.
pub type Key = (String, String);

/// Objects by kind.
#[derive(Clone, Debug, Default)]
pub struct ObjectSet {
    pub networks: BTreeMap<String, Arc<Network>>,
    pub tenants: BTreeMap<String, Arc<Tenant>>,
    pub monitors: BTreeMap<Key, Arc<Monitor>>,
    pub triggers: BTreeMap<Key, Arc<Trigger>>,
    pub secrets: BTreeMap<Key, Arc<Secret>>,
    pub config_maps: BTreeMap<Key, Arc<ConfigMap>>,
    /// Namespaces whose Secrets and ConfigMaps are not known (yet), and why: lookups there answer
    /// [`Lookup::Unknown`] instead of [`Lookup::Missing`].
    pub unreadable: BTreeMap<String, String>,
}

/// The `(namespace, name)` of an object.
pub fn key(meta: &ObjectMeta) -> Key {
    (meta.namespace.clone().unwrap_or_default(), meta.name.clone().unwrap_or_default())
}

impl ObjectSet {
    pub fn insert_network(&mut self, n: Network) {
        self.networks.insert(n.metadata.name.clone().unwrap_or_default(), Arc::new(n));
    }
    pub fn insert_tenant(&mut self, t: Tenant) {
        self.tenants.insert(t.metadata.name.clone().unwrap_or_default(), Arc::new(t));
    }
    pub fn insert_monitor(&mut self, m: Monitor) {
        self.monitors.insert(key(&m.metadata), Arc::new(m));
    }
    pub fn insert_trigger(&mut self, t: Trigger) {
        self.triggers.insert(key(&t.metadata), Arc::new(t));
    }
    pub fn insert_secret(&mut self, s: Secret) {
        self.secrets.insert(key(&s.metadata), Arc::new(s));
    }
    pub fn insert_config_map(&mut self, c: ConfigMap) {
        self.config_maps.insert(key(&c.metadata), Arc::new(c));
    }

    fn lookup<T>(&self, map: &BTreeMap<Key, Arc<T>>, namespace: &str, name: &str) -> Lookup<Arc<T>> {
        match map.get(&(namespace.to_string(), name.to_string())) {
            Some(o) => Lookup::Found(o.clone()),
            None => match self.unreadable.get(namespace) {
                Some(why) => Lookup::Unknown(why.clone()),
                None => Lookup::Missing,
            },
        }
    }
}

fn peers<T>(
    map: &BTreeMap<Key, Arc<T>>,
    namespaces: &[String],
    meta: impl Fn(&T) -> &ObjectMeta,
) -> Vec<Peer> {
    map.iter().filter(|((ns, _), _)| namespaces.contains(ns)).map(|(_, o)| Peer::of(meta(o))).collect()
}

impl Catalog for ObjectSet {
    fn network(&self, name: &str) -> Option<Arc<Network>> {
        self.networks.get(name).cloned()
    }

    fn network_names(&self) -> Vec<String> {
        self.networks.keys().cloned().collect()
    }

    fn tenants(&self) -> Vec<Arc<Tenant>> {
        self.tenants.values().cloned().collect()
    }

    fn trigger_names(&self, namespace: &str) -> Vec<String> {
        self.triggers.keys().filter(|(ns, _)| ns == namespace).map(|(_, n)| n.clone()).collect()
    }

    fn peers(&self, quota: Quota, namespaces: &[String]) -> Vec<Peer> {
        match quota {
            Quota::Monitors => peers(&self.monitors, namespaces, |m| &m.metadata),
            Quota::Triggers => peers(&self.triggers, namespaces, |t| &t.metadata),
        }
    }

    fn config_map(&self, namespace: &str, name: &str) -> Lookup<Arc<ConfigMap>> {
        self.lookup(&self.config_maps, namespace, name)
    }

    fn secret(&self, namespace: &str, name: &str) -> Lookup<Arc<Secret>> {
        self.lookup(&self.secrets, namespace, name)
    }
}
