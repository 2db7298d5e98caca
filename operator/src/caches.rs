//! The operator's caches: one per kind, shared by every controller, and the [`Catalog`] admission
//! reads through them.
//!
//! Networks and Tenants (cluster-scoped) are watched cluster-wide; Monitors and Triggers in every
//! namespace, or only in the listed ones of a namespace-scoped install ([`WatchScope`]). Secrets and
//! ConfigMaps are watched only in the namespaces Tenants list (and the install watches) and the
//! operator's own (endpoint URLs, the Kafka settings and credentials): the operator may read nothing
//! else, and the set follows the Tenants.

use std::collections::BTreeSet;
use std::sync::Arc;

use chainwatch_core::config::{Catalog, Lookup, Peer, Quota};
use chainwatch_crds::{Monitor, Network, Tenant, Trigger};
use chainwatch_platform::cache::{Cache, CacheHooks, Readiness, WatchScope};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Client;
use kube::runtime::reflector::ObjectRef;
use tokio_util::sync::CancellationToken;

/// The caches.
#[derive(Clone)]
pub struct Caches {
    pub monitors: Cache<Monitor>,
    pub triggers: Cache<Trigger>,
    pub networks: Cache<Network>,
    pub tenants: Cache<Tenant>,
    /// In tenant namespaces and the operator's.
    pub secrets: Cache<Secret>,
    /// In tenant namespaces and the operator's (the Kafka settings).
    pub config_maps: Cache<ConfigMap>,
    /// The operator's namespace.
    pub own_namespace: String,
    /// The namespaces this install watches.
    pub scope: WatchScope,
}

/// Namespaces listed by any Tenant.
pub fn tenant_namespaces(tenants: &[Arc<Tenant>]) -> BTreeSet<String> {
    tenants.iter().flat_map(|t| t.spec.namespaces.iter().cloned()).collect()
}

impl Caches {
    /// Starts every cache, keeps the namespaced ones on the Tenants' namespaces until `stop`, and
    /// returns once each has listed what it watches (or failed to: a namespace the operator may
    /// not read yet is retried in the background).
    pub async fn start(
        client: Client,
        own_namespace: &str,
        scope: &WatchScope,
        hooks: CacheHooks,
        stop: CancellationToken,
        tasks: &mut tokio::task::JoinSet<()>,
    ) -> Caches {
        let caches = Caches {
            monitors: scope.cache(client.clone(), hooks.clone(), stop.clone()),
            triggers: scope.cache(client.clone(), hooks.clone(), stop.clone()),
            networks: Cache::cluster(client.clone(), hooks.clone(), stop.clone()),
            tenants: Cache::cluster(client.clone(), hooks.clone(), stop.clone()),
            secrets: Cache::namespaced(client.clone(), hooks.clone(), stop.clone()),
            config_maps: Cache::namespaced(client, hooks, stop.clone()),
            own_namespace: own_namespace.to_string(),
            scope: scope.clone(),
        };
        caches.tenants.wait_settled().await;
        caches.follow_tenants();
        let follower = caches.clone();
        tasks.spawn(async move {
            let changes = follower.tenants.subscribe();
            futures::pin_mut!(changes);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    c = changes.next() => match c {
                        None => return,
                        Some(_) => follower.follow_tenants(),
                    },
                }
            }
        });
        tokio::join!(
            caches.monitors.wait_settled(),
            caches.triggers.wait_settled(),
            caches.networks.wait_settled(),
            caches.secrets.wait_settled(),
            caches.config_maps.wait_settled(),
        );
        caches
    }

    /// Points the namespaced caches at the Tenants' namespaces (those the install watches).
    fn follow_tenants(&self) {
        let mut namespaces = self.scope.within(tenant_namespaces(&self.tenants.store().state()));
        namespaces.insert(self.own_namespace.clone());
        self.config_maps.watch_namespaces(&namespaces);
        self.secrets.watch_namespaces(&namespaces);
    }
}

fn lookup<K>(cache: &Cache<K>, scope: &WatchScope, namespace: &str, name: &str) -> Lookup<Arc<K>>
where
    K: chainwatch_platform::cache::Cached,
{
    match cache.store().get(&ObjectRef::new(name).within(namespace)) {
        Some(o) => Lookup::Found(o),
        None => match cache.readiness(Some(namespace)) {
            Readiness::Listed => Lookup::Missing,
            Readiness::Listing => {
                Lookup::Unknown(format!("cannot be read yet: namespace {namespace} is not listed yet"))
            }
            Readiness::Failed(why) => {
                Lookup::Unknown(format!("cannot be read yet: namespace {namespace}: {why}"))
            }
            Readiness::NotWatched if !scope.watches(namespace) => Lookup::Unknown(format!(
                "cannot be read: this installation watches only {scope} (--watch-namespace), not namespace {namespace}"
            )),
            Readiness::NotWatched => Lookup::Unknown(format!(
                "cannot be read: namespace {namespace} belongs to no Tenant, so chainwatch does not read it"
            )),
        },
    }
}

impl Catalog for Caches {
    fn network(&self, name: &str) -> Option<Arc<Network>> {
        self.networks.store().get(&ObjectRef::new(name))
    }

    fn network_names(&self) -> Vec<String> {
        let mut names: Vec<String> =
            self.networks.store().state().iter().filter_map(|n| n.metadata.name.clone()).collect();
        names.sort();
        names
    }

    fn tenants(&self) -> Vec<Arc<Tenant>> {
        self.tenants.store().state()
    }

    fn trigger_names(&self, namespace: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .triggers
            .store()
            .state()
            .iter()
            .filter(|t| t.metadata.namespace.as_deref() == Some(namespace))
            .filter_map(|t| t.metadata.name.clone())
            .collect();
        names.sort();
        names
    }

    fn peers(&self, quota: Quota, namespaces: &[String]) -> Vec<Peer> {
        let within = |ns: &Option<String>| ns.as_ref().is_some_and(|ns| namespaces.contains(ns));
        match quota {
            Quota::Monitors => self
                .monitors
                .store()
                .state()
                .iter()
                .filter(|m| within(&m.metadata.namespace))
                .map(|m| Peer::of(&m.metadata))
                .collect(),
            Quota::Triggers => self
                .triggers
                .store()
                .state()
                .iter()
                .filter(|t| within(&t.metadata.namespace))
                .map(|t| Peer::of(&t.metadata))
                .collect(),
        }
    }

    fn config_map(&self, namespace: &str, name: &str) -> Lookup<Arc<ConfigMap>> {
        lookup(&self.config_maps, &self.scope, namespace, name)
    }

    fn secret(&self, namespace: &str, name: &str) -> Lookup<Arc<Secret>> {
        lookup(&self.secrets, &self.scope, namespace, name)
    }
}
