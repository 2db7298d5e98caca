//! One cache per kind, shared by everything in a process that reads that kind.
//!
//! A cache watches its kind cluster-wide, or in a changing set of namespaces (Secrets and
//! ConfigMaps are read only in tenant namespaces; everything namespaced only in the listed ones in a
//! namespace-scoped install, [`scope`]), decoding each object on its own
//! ([`guarded`]): an object that does not decode is left out, counted, logged and handed to whoever
//! asked to hear of it (the operator writes a condition on it), and it breaks nothing else.
//!
//! Every change is applied to the [`Store`] first and only then told to subscribers, so whatever
//! a subscriber does about a change (a reconcile it causes) reads a store that has it. Subscribers
//! get the objects present when they subscribe, then every change, unbounded and in order.

pub mod guarded;
pub mod scope;

use std::collections::{BTreeMap, HashSet};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, reflector::store::Writer};
use kube::{Client, Resource};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

pub use guarded::Guarded;
pub use scope::{WatchArgs, WatchScope};

/// A change of a cached object.
#[derive(Clone, Debug)]
pub enum Change<K> {
    /// Created or updated (the object as it is now).
    Applied(Arc<K>),
    /// Deleted, or no longer decodable, or its namespace is no longer watched (the last state).
    Deleted(Arc<K>),
}

impl<K> Change<K> {
    pub fn object(&self) -> &Arc<K> {
        match self {
            Change::Applied(o) | Change::Deleted(o) => o,
        }
    }
}

/// An object that was left out because it does not decode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Undecodable {
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    pub generation: Option<i64>,
    /// The decoder's message (names the position, never a value).
    pub error: String,
}

/// Whether the objects of a namespace (or the cluster) are known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// Listed: the cache has every object (and follows changes).
    Listed,
    /// Not listed yet.
    Listing,
    /// Listing failed (e.g. not permitted yet); retried with backoff.
    Failed(String),
    /// The cache does not watch it.
    NotWatched,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

/// Cache metric families (registered once per process, shared by its caches).
#[derive(Clone, Default)]
pub struct CacheMetrics {
    objects: Family<KindLabel, Gauge>,
    malformed: Family<KindLabel, Counter>,
    watch_errors: Family<KindLabel, Counter>,
}

impl CacheMetrics {
    /// Registers `cached_objects{kind}`, `malformed_objects_total{kind}` and
    /// `watch_errors_total{kind}` in `registry` (under its prefix).
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register("cached_objects", "Objects in the cache, by kind", m.objects.clone());
        registry.register(
            "malformed_objects",
            "Objects left out because they do not decode, by kind",
            m.malformed.clone(),
        );
        registry.register("watch_errors", "Failed lists and watches, by kind", m.watch_errors.clone());
        m
    }

    fn init(&self, kind: &str) {
        let l = KindLabel { kind: kind.into() };
        let _ = self.objects.get_or_create(&l);
        let _ = self.malformed.get_or_create(&l);
        let _ = self.watch_errors.get_or_create(&l);
    }
}

/// What a cache is told besides the API: where to count and whom to tell of undecodable objects.
#[derive(Clone, Default)]
pub struct CacheHooks {
    pub metrics: CacheMetrics,
    pub undecodable: Option<mpsc::UnboundedSender<Undecodable>>,
}

/// `None`: cluster-wide; `Some(ns)`: one namespace.
type Scope = Option<String>;

struct ScopeState<K: Cached> {
    readiness: Readiness,
    /// Objects of this scope in the store.
    keys: HashSet<ObjectRef<K>>,
    /// Objects seen in the current (re)list.
    listing: Option<HashSet<ObjectRef<K>>>,
    stop: CancellationToken,
}

struct State<K: Cached> {
    writer: Writer<K>,
    subscribers: Vec<mpsc::UnboundedSender<Change<K>>>,
    scopes: BTreeMap<Scope, ScopeState<K>>,
    /// The store was marked ready (every scope settled once).
    ready: bool,
}

struct Inner<K: Cached> {
    kind: String,
    client: Client,
    store: Store<K>,
    state: Mutex<State<K>>,
    hooks: CacheHooks,
    stop: CancellationToken,
    settled: watch::Sender<u64>,
}

/// The cache of one kind; cheap to clone.
pub struct Cache<K: Cached> {
    inner: Arc<Inner<K>>,
}

impl<K: Cached> Clone for Cache<K> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone() }
    }
}

/// What a cached kind needs.
pub trait Cached:
    Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static
{
}
impl<K> Cached for K where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static
{
}

fn object_ref<K: Resource<DynamicType = ()>>(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> ObjectRef<K> {
    let r = ObjectRef::new(meta.name.as_deref().unwrap_or_default());
    match &meta.namespace {
        Some(ns) => r.within(ns),
        None => r,
    }
}

impl<K: Cached> Cache<K> {
    fn new(client: Client, hooks: CacheHooks, stop: CancellationToken) -> Self {
        let (store, writer) = reflector::store();
        let kind = K::kind(&()).into_owned();
        hooks.metrics.init(&kind);
        Self {
            inner: Arc::new(Inner {
                kind,
                client,
                store,
                state: Mutex::new(State {
                    writer,
                    subscribers: Vec::new(),
                    scopes: BTreeMap::new(),
                    ready: false,
                }),
                hooks,
                stop,
                settled: watch::channel(0).0,
            }),
        }
    }

    /// A cache of every object of the kind, cluster-wide, until `stop`.
    pub fn cluster(client: Client, hooks: CacheHooks, stop: CancellationToken) -> Self {
        let cache = Self::new(client.clone(), hooks, stop);
        cache.start_scope(None, Api::all(client));
        cache
    }

    /// The store every reader shares.
    pub fn store(&self) -> Store<K> {
        self.inner.store.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<K>> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The objects now, then every change.
    pub fn subscribe(&self) -> impl Stream<Item = Change<K>> + Send + 'static {
        let (tx, rx) = mpsc::unbounded_channel();
        {
            let mut st = self.lock();
            for o in self.inner.store.state() {
                let _ = tx.send(Change::Applied(o));
            }
            st.subscribers.push(tx);
        }
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) })
    }

    /// Whether the objects of `namespace` (`None`: of a cluster-wide cache) are known.
    pub fn readiness(&self, namespace: Option<&str>) -> Readiness {
        let st = self.lock();
        let scope = match st.scopes.get(&None) {
            Some(s) => Some(s),
            None => st.scopes.get(&namespace.map(str::to_string)),
        };
        scope.map_or(Readiness::NotWatched, |s| s.readiness.clone())
    }

    /// Waits until every watched scope listed once or failed to.
    pub async fn wait_settled(&self) {
        let mut rx = self.inner.settled.subscribe();
        loop {
            if self.all_settled() {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    fn all_settled(&self) -> bool {
        self.lock().scopes.values().all(|s| s.readiness != Readiness::Listing)
    }

    /// Marks the store ready once every scope settled (controllers wait for that), and wakes
    /// [`Cache::wait_settled`].
    fn mark_settled(&self) {
        let mut st = self.lock();
        if !st.ready && st.scopes.values().all(|s| s.readiness != Readiness::Listing) {
            st.ready = true;
            // kube's store becomes ready at the end of a listing: replay its content as one
            let objects = self.inner.store.state();
            st.writer.apply_watcher_event(&Event::Init);
            for o in objects {
                st.writer.apply_watcher_event(&Event::InitApply(o.as_ref().clone()));
            }
            st.writer.apply_watcher_event(&Event::InitDone);
        }
        drop(st);
        self.inner.settled.send_modify(|n| *n += 1);
    }

    fn start_scope(&self, scope: Scope, api: Api<Guarded<K>>) {
        let stop = self.inner.stop.child_token();
        self.lock().scopes.insert(
            scope.clone(),
            ScopeState {
                readiness: Readiness::Listing,
                keys: HashSet::new(),
                listing: None,
                stop: stop.clone(),
            },
        );
        let cache = self.clone();
        tokio::spawn(async move {
            let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
            futures::pin_mut!(stream);
            loop {
                let event = tokio::select! {
                    _ = stop.cancelled() => return,
                    e = stream.next() => e,
                };
                match event {
                    None => return,
                    Some(Ok(e)) => cache.on_event(&scope, e),
                    Some(Err(e)) => cache.on_error(&scope, &e),
                }
            }
        });
    }

    fn notify(st: &mut State<K>, change: Change<K>) {
        st.subscribers.retain(|s| s.send(change.clone()).is_ok());
    }

    fn remove(&self, st: &mut State<K>, old: Arc<K>) {
        st.writer.apply_watcher_event(&Event::Delete(old.as_ref().clone()));
        Self::notify(st, Change::Deleted(old));
    }

    fn on_event(&self, scope: &Scope, event: Event<Guarded<K>>) {
        let mut settled = false;
        {
            let mut st = self.lock();
            match event {
                Event::Init => {
                    if let Some(s) = st.scopes.get_mut(scope) {
                        s.listing = Some(HashSet::new());
                    }
                }
                Event::InitApply(g) | Event::Apply(g) => self.apply(&mut st, scope, g),
                Event::Delete(g) => {
                    let key = object_ref::<K>(g.meta());
                    if let Some(s) = st.scopes.get_mut(scope) {
                        s.keys.remove(&key);
                    }
                    if let Some(old) = self.inner.store.get(&key) {
                        self.remove(&mut st, old);
                    }
                }
                Event::InitDone => {
                    let vanished: Vec<ObjectRef<K>> = match st.scopes.get_mut(scope) {
                        Some(s) => {
                            let seen = s.listing.take().unwrap_or_default();
                            let vanished: Vec<_> = s.keys.difference(&seen).cloned().collect();
                            s.keys = seen;
                            settled = s.readiness != Readiness::Listed;
                            s.readiness = Readiness::Listed;
                            vanished
                        }
                        None => Vec::new(),
                    };
                    for key in vanished {
                        if let Some(old) = self.inner.store.get(&key) {
                            self.remove(&mut st, old);
                        }
                    }
                }
            }
        }
        self.inner
            .hooks
            .metrics
            .objects
            .get_or_create(&KindLabel { kind: self.inner.kind.clone() })
            .set(self.inner.store.state().len() as i64);
        if settled {
            tracing::debug!(kind = %self.inner.kind, ?scope, "listed");
            self.mark_settled();
        }
    }

    fn apply(&self, st: &mut State<K>, scope: &Scope, g: Guarded<K>) {
        let key = object_ref::<K>(g.meta());
        match g {
            Guarded::Ok(k) => {
                if let Some(s) = st.scopes.get_mut(scope) {
                    s.keys.insert(key.clone());
                    if let Some(l) = s.listing.as_mut() {
                        l.insert(key);
                    }
                }
                st.writer.apply_watcher_event(&Event::Apply(k.clone()));
                Self::notify(st, Change::Applied(Arc::new(k)));
            }
            Guarded::Bad { meta, mut error } => {
                if self.inner.kind == "Secret" {
                    // a decoder's message can quote a value
                    error =
                        "it does not decode (the decoder's message is withheld: it may quote a secret value)"
                            .into();
                }
                self.inner
                    .hooks
                    .metrics
                    .malformed
                    .get_or_create(&KindLabel { kind: self.inner.kind.clone() })
                    .inc();
                let u = Undecodable {
                    kind: self.inner.kind.clone(),
                    namespace: meta.namespace.clone(),
                    name: meta.name.clone().unwrap_or_default(),
                    generation: meta.generation,
                    error,
                };
                tracing::warn!(kind = %u.kind, namespace = ?u.namespace, name = %u.name, error = %u.error, "left out an object that does not decode");
                if let Some(tx) = &self.inner.hooks.undecodable {
                    let _ = tx.send(u);
                }
                if let Some(s) = st.scopes.get_mut(scope) {
                    s.keys.remove(&key);
                }
                if let Some(old) = self.inner.store.get(&key) {
                    self.remove(st, old);
                }
            }
        }
    }

    fn on_error(&self, scope: &Scope, e: &watcher::Error) {
        self.inner
            .hooks
            .metrics
            .watch_errors
            .get_or_create(&KindLabel { kind: self.inner.kind.clone() })
            .inc();
        let status = match e {
            watcher::Error::InitialListFailed(kube::Error::Api(s))
            | watcher::Error::WatchStartFailed(kube::Error::Api(s)) => Some(s.code),
            watcher::Error::WatchError(s) => Some(s.code),
            _ => None,
        };
        let failed = {
            let mut st = self.lock();
            match st.scopes.get_mut(scope) {
                Some(s) if s.readiness != Readiness::Listed => {
                    let first = !matches!(s.readiness, Readiness::Failed(_));
                    s.readiness = Readiness::Failed(match status {
                        Some(403) => "not permitted to list it (yet)".to_string(),
                        _ => e.to_string(),
                    });
                    first
                }
                _ => false,
            }
        };
        if failed {
            tracing::warn!(kind = %self.inner.kind, ?scope, error = %e, "listing failed; retrying with backoff");
            self.mark_settled();
        } else {
            tracing::debug!(kind = %self.inner.kind, ?scope, error = %e, "watch failed; retrying with backoff");
        }
    }
}

impl<K> Cache<K>
where
    K: Cached + Resource<Scope = k8s_openapi::NamespaceResourceScope>,
{
    /// A cache of the objects in a set of namespaces ([`Cache::watch_namespaces`]), until `stop`.
    pub fn namespaced(client: Client, hooks: CacheHooks, stop: CancellationToken) -> Self {
        let cache = Self::new(client, hooks, stop);
        cache.mark_settled();
        cache
    }

    /// Watches exactly these namespaces: starts the new ones, stops the others (their objects
    /// leave the store, told to subscribers as deletions).
    pub fn watch_namespaces(&self, namespaces: &std::collections::BTreeSet<String>) {
        let (start, gone): (Vec<String>, Vec<ScopeState<K>>) = {
            let mut st = self.lock();
            let start = namespaces
                .iter()
                .filter(|ns| !st.scopes.contains_key(&Some((*ns).clone())))
                .cloned()
                .collect();
            let stale: Vec<Scope> = st
                .scopes
                .keys()
                .filter(|s| s.as_ref().is_some_and(|ns| !namespaces.contains(ns)))
                .cloned()
                .collect();
            let gone = stale.into_iter().filter_map(|s| st.scopes.remove(&s)).collect();
            (start, gone)
        };
        for scope in gone {
            scope.stop.cancel();
            let mut st = self.lock();
            for key in scope.keys {
                if let Some(old) = self.inner.store.get(&key) {
                    self.remove(&mut st, old);
                }
            }
        }
        for ns in start {
            let api = Api::namespaced(self.inner.client.clone(), &ns);
            self.start_scope(Some(ns), api);
        }
        self.mark_settled();
    }

    /// Lists a namespace again now if listing it failed (say, the permission to read it was just
    /// granted), instead of waiting for the watch's backoff.
    pub fn retry_failed(&self, namespace: &str) {
        let scope = Some(namespace.to_string());
        let failed = {
            let mut st = self.lock();
            match st.scopes.get(&scope) {
                Some(s) if matches!(s.readiness, Readiness::Failed(_)) => st.scopes.remove(&scope),
                _ => None,
            }
        };
        if let Some(old) = failed {
            old.stop.cancel();
            let api = Api::namespaced(self.inner.client.clone(), namespace);
            self.start_scope(scope, api);
        }
    }
}
