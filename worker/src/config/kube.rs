//! Feeds the [`ConfigStore`](super::ConfigStore) from the API server through the shared caches
//! (`chainwatch_platform::cache`): Networks and Tenants cluster-wide, Monitors and Triggers in every
//! namespace or only in those a namespace-scoped install watches, Secrets and ConfigMaps only in the
//! namespaces Tenants list (and the install watches) — the worker may read nothing else. An object
//! that does not decode is left out and counted, and breaks nothing for anyone else.

use std::collections::BTreeMap;

use ::kube::Client;
use chainwatch_crds::{Monitor, Network, Tenant, Trigger};
use chainwatch_platform::cache::{Cache, CacheHooks, Cached, Change, Readiness, WatchScope};
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use tokio_util::sync::CancellationToken;

use super::ConfigStore;

/// The worker's caches.
#[derive(Clone)]
pub struct Caches {
    monitors: Cache<Monitor>,
    triggers: Cache<Trigger>,
    networks: Cache<Network>,
    tenants: Cache<Tenant>,
    secrets: Cache<Secret>,
    config_maps: Cache<ConfigMap>,
    scope: WatchScope,
}

fn tenant_namespaces(tenants: &Cache<Tenant>) -> std::collections::BTreeSet<String> {
    tenants.store().state().iter().flat_map(|t| t.spec.namespaces.iter().cloned()).collect()
}

/// One kind's changes into the store.
fn feed_kind<K: Cached>(
    changes: impl Stream<Item = Change<K>> + Send + 'static,
    apply: impl Fn(K) + Send + 'static,
    delete: impl Fn(&K) + Send + 'static,
) -> impl Stream<Item = ()> + Send + 'static {
    changes.map(move |c| match c {
        Change::Applied(o) => apply(o.as_ref().clone()),
        Change::Deleted(o) => delete(o.as_ref()),
    })
}

fn ns_name<K: ::kube::Resource>(o: &K) -> (String, String) {
    (o.meta().namespace.clone().unwrap_or_default(), o.meta().name.clone().unwrap_or_default())
}

impl Caches {
    /// Starts the caches; returns once each listed what it watches (a tenant namespace the worker
    /// may not read yet does not hold it up: it is retried in the background and reported).
    pub async fn start(
        client: Client,
        scope: &WatchScope,
        hooks: CacheHooks,
        stop: CancellationToken,
    ) -> Caches {
        let caches = Caches {
            monitors: scope.cache(client.clone(), hooks.clone(), stop.clone()),
            triggers: scope.cache(client.clone(), hooks.clone(), stop.clone()),
            networks: Cache::cluster(client.clone(), hooks.clone(), stop.clone()),
            tenants: Cache::cluster(client.clone(), hooks.clone(), stop.clone()),
            secrets: Cache::namespaced(client.clone(), hooks.clone(), stop.clone()),
            config_maps: Cache::namespaced(client, hooks, stop),
            scope: scope.clone(),
        };
        caches.tenants.wait_settled().await;
        caches.follow_tenants();
        tokio::join!(
            caches.monitors.wait_settled(),
            caches.triggers.wait_settled(),
            caches.networks.wait_settled(),
            caches.secrets.wait_settled(),
            caches.config_maps.wait_settled(),
        );
        caches
    }

    fn follow_tenants(&self) {
        let namespaces = self.scope.within(tenant_namespaces(&self.tenants));
        self.secrets.watch_namespaces(&namespaces);
        self.config_maps.watch_namespaces(&namespaces);
    }

    /// Tenant namespaces whose Secrets or ConfigMaps are not known, and why.
    fn unreadable(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for ns in self.scope.within(tenant_namespaces(&self.tenants)) {
            for r in [self.secrets.readiness(Some(&ns)), self.config_maps.readiness(Some(&ns))] {
                match r {
                    Readiness::Listed => {}
                    Readiness::Listing => {
                        out.insert(
                            ns.clone(),
                            format!("cannot be read yet: namespace {ns} is not listed yet"),
                        );
                    }
                    Readiness::Failed(why) => {
                        out.insert(ns.clone(), format!("cannot be read yet: namespace {ns}: {why}"));
                    }
                    Readiness::NotWatched => {
                        out.insert(
                            ns.clone(),
                            format!("cannot be read yet: namespace {ns} is not watched yet"),
                        );
                    }
                }
            }
        }
        out
    }

    /// Feeds `store` until `stop`: every change, the namespaces the Tenants list, and which of
    /// them cannot be read yet.
    pub async fn feed(self, store: ConfigStore, stop: CancellationToken) {
        let s = store.clone();
        let (a, b, c, d, e, f) = (s.clone(), s.clone(), s.clone(), s.clone(), s.clone(), s.clone());
        let (a2, b2, c2, d2, e2, f2) = (s.clone(), s.clone(), s.clone(), s.clone(), s.clone(), s);
        let caches = self.clone();
        let tenants = self.tenants.subscribe().map(move |ch| {
            match &ch {
                Change::Applied(t) => d.apply_tenant(t.as_ref().clone()),
                Change::Deleted(t) => d2.delete_tenant(&ns_name(t.as_ref()).1),
            }
            caches.follow_tenants();
        });
        let all = futures::stream::select_all([
            feed_kind(
                self.monitors.subscribe(),
                move |o| a.apply_monitor(o),
                move |o| {
                    let (ns, n) = ns_name(o);
                    a2.delete_monitor(&ns, &n)
                },
            )
            .boxed(),
            feed_kind(
                self.triggers.subscribe(),
                move |o| b.apply_trigger(o),
                move |o| {
                    let (ns, n) = ns_name(o);
                    b2.delete_trigger(&ns, &n)
                },
            )
            .boxed(),
            feed_kind(
                self.networks.subscribe(),
                move |o| c.apply_network(o),
                move |o| c2.delete_network(&ns_name(o).1),
            )
            .boxed(),
            tenants.boxed(),
            feed_kind(
                self.secrets.subscribe(),
                move |o| e.apply_secret(o),
                move |o| {
                    let (ns, n) = ns_name(o);
                    e2.delete_secret(&ns, &n)
                },
            )
            .boxed(),
            feed_kind(
                self.config_maps.subscribe(),
                move |o| f.apply_config_map(o),
                move |o| {
                    let (ns, n) = ns_name(o);
                    f2.delete_config_map(&ns, &n)
                },
            )
            .boxed(),
        ]);
        futures::pin_mut!(all);
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            store.set_unreadable(self.unreadable());
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
                next = all.next() => if next.is_none() { return },
            }
        }
    }
}
