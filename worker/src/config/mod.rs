//! Live configuration: Monitors, Triggers, Networks, Tenants, Secrets and ConfigMaps in, a
//! [`Snapshot`] out — compiled monitors indexed per network, triggers with their credentials,
//! tenants by namespace. Feeders ([`kube`] in a cluster, a directory of YAML files in
//! `chainwatch dev`) apply objects; a rebuild task coalesces changes (at most one rebuild per
//! [`REBUILD_DEBOUNCE`]) and publishes a new snapshot that the next block is evaluated with.
//!
//! What is admitted is decided by `chainwatch_core::config`, not here: behind the operator, its
//! verdict in status ([`admitted_by_operator`]); alone (`chainwatch dev`), the same
//! [`admit_monitor`] the operator runs. Compiled monitors are cached by their inputs (the
//! Monitor's revision and the ConfigMap values it reads), so a change recompiles only what it
//! touched.

pub mod kube;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ::kube::ResourceExt;
use chainwatch_core::config::{
    Compiler, ObjectSet, admit_monitor, admitted_by_operator, compile_monitor, owner_of, resolve_trigger,
};
use chainwatch_core::monitor::{
    AbiCache, CompileError, CompiledMonitor, MonitorKey, MonitorSource, NetworkIndex,
};
use chainwatch_crds::{ChainType, Monitor, Network, NotifyPhase, Tenant, TenantLimits, Trigger};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use tokio::sync::{Notify, watch};

pub use chainwatch_core::config::ResolvedTrigger;

/// Longest wait between a change and the snapshot that contains it.
pub const REBUILD_DEBOUNCE: Duration = Duration::from_millis(20);

/// Which monitors are evaluated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Admission {
    /// Those the operator admitted: `Ready=True` for their current generation.
    Operator,
    /// Those core's admission admits here (`chainwatch dev`, or no operator).
    Local,
}

/// `namespace/name` of a namespaced object.
pub type ObjectKey = (String, String);

/// What a tenant is allowed.
#[derive(Clone, Debug, PartialEq)]
pub struct TenantInfo {
    pub name: String,
    pub limits: TenantLimits,
    /// Where its script runner is (its first namespace).
    pub runner_namespace: Option<String>,
}

impl TenantInfo {
    /// Who a script of this tenant runs for.
    pub fn run_for(&self) -> crate::script::RunFor {
        crate::script::RunFor {
            tenant: self.name.clone(),
            network: self.limits.script_network,
            runner_namespace: self.runner_namespace.clone(),
        }
    }
}

/// An immutable view of the configuration.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Increases with every rebuild.
    pub version: u64,
    pub built_at: Option<Instant>,
    pub networks: BTreeMap<String, ChainType>,
    pub indexes: HashMap<String, Arc<NetworkIndex>>,
    /// Per network with Monitors told at `seen` (`spec.notifyAt`), an index of those only: what a
    /// block published as `seen` is evaluated with.
    pub seen_indexes: HashMap<String, Arc<NetworkIndex>>,
    pub triggers: HashMap<ObjectKey, Arc<ResolvedTrigger>>,
    /// Tenant of each namespace (the one rule: `chainwatch_core::config::owner_of`).
    pub tenants: HashMap<String, TenantInfo>,
    /// Monitors left out and why (not admitted, compile errors), for logs and metrics.
    pub rejected: BTreeMap<MonitorKey, String>,
    /// Per network, how many of its evaluated monitors each tenant has ([`Snapshot::tenant_label`]):
    /// the per-tenant usage metrics.
    pub tenant_monitors: HashMap<String, Vec<(String, u64)>>,
}

impl Snapshot {
    pub fn tenant_of(&self, namespace: &str) -> Option<&TenantInfo> {
        self.tenants.get(namespace)
    }

    pub fn monitor_count(&self) -> usize {
        self.indexes.values().map(|i| i.len()).sum()
    }

    /// The `tenant` label of a namespace's metrics: its Tenant's name, `none` without one
    /// (bounded by the Tenants the platform team creates).
    pub fn tenant_label(&self, namespace: &str) -> &str {
        self.tenant_of(namespace).map_or("none", |t| t.name.as_str())
    }

    /// The notify lane (and match record key) of a namespace's matches: its Tenant's name, or the
    /// namespace itself without one — one worker owns each lane's notifications and limits.
    pub fn lane(&self, namespace: &str) -> String {
        self.tenant_of(namespace).map_or_else(|| namespace.to_string(), |t| t.name.clone())
    }
}

/// A compiled monitor (or why it does not compile), with the fingerprint of its inputs.
type Compiled = (u64, Result<Arc<CompiledMonitor>, Vec<CompileError>>);

#[derive(Default)]
struct State {
    objects: ObjectSet,
    compiled: HashMap<(MonitorKey, ChainType), Compiled>,
    dirty: bool,
}

/// The store; cheap to clone.
#[derive(Clone)]
pub struct ConfigStore {
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
    snapshot: watch::Sender<Arc<Snapshot>>,
    abis: Arc<AbiCache>,
    admission: Admission,
}

/// What compilation of a monitor depends on: its spec (the generation when it has one, from the
/// API server; a hash of the spec from files) and the ConfigMap values it reads.
fn fingerprint(source: &MonitorSource<'_>) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    match source.generation {
        Some(g) => g.hash(&mut h),
        None => serde_json::to_string(source.spec).unwrap_or_default().hash(&mut h),
    }
    let refs = source
        .spec
        .addresses
        .iter()
        .filter_map(|a| a.contract_spec_from.as_ref())
        .chain(source.spec.trigger_conditions.iter().filter_map(|s| s.source_from.as_ref()));
    for r in refs {
        format!("{:?}", (source.config_maps)(&r.config_map_key_ref)).hash(&mut h);
    }
    h.finish()
}

/// A compiler that reuses what compiled before when the inputs are the same.
struct Cached<'a> {
    abis: &'a AbiCache,
    previous: &'a HashMap<(MonitorKey, ChainType), Compiled>,
    next: RefCell<HashMap<(MonitorKey, ChainType), Compiled>>,
}

impl Compiler for Cached<'_> {
    fn compile(
        &self,
        source: &MonitorSource<'_>,
        chain: ChainType,
    ) -> Result<Arc<CompiledMonitor>, Vec<CompileError>> {
        let key = (source.key.clone(), chain);
        let print = fingerprint(source);
        let result = match self.previous.get(&key) {
            Some((p, c)) if *p == print => c.clone(),
            _ => self.abis.compile(source, chain),
        };
        self.next.borrow_mut().insert(key, (print, result.clone()));
        result
    }
}

macro_rules! apply_delete {
    ($apply:ident, $delete:ident, $t:ty, $insert:ident, $map:ident, namespaced) => {
        pub fn $apply(&self, o: $t) {
            self.touch(|s| s.$insert(o));
        }
        pub fn $delete(&self, namespace: &str, name: &str) {
            self.touch(|s| {
                s.$map.remove(&(namespace.to_string(), name.to_string()));
            });
        }
    };
    ($apply:ident, $delete:ident, $t:ty, $insert:ident, $map:ident, cluster) => {
        pub fn $apply(&self, o: $t) {
            self.touch(|s| s.$insert(o));
        }
        pub fn $delete(&self, name: &str) {
            self.touch(|s| {
                s.$map.remove(name);
            });
        }
    };
}

impl ConfigStore {
    pub fn new(admission: Admission) -> Self {
        let (snapshot, _) = watch::channel(Arc::new(Snapshot::default()));
        Self {
            state: Arc::default(),
            changed: Arc::new(Notify::new()),
            snapshot,
            abis: Arc::new(AbiCache::default()),
            admission,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn touch(&self, f: impl FnOnce(&mut ObjectSet)) {
        let mut st = self.lock();
        f(&mut st.objects);
        st.dirty = true;
        drop(st);
        self.changed.notify_one();
    }

    apply_delete!(apply_monitor, delete_monitor, Monitor, insert_monitor, monitors, namespaced);
    apply_delete!(apply_trigger, delete_trigger, Trigger, insert_trigger, triggers, namespaced);
    apply_delete!(apply_network, delete_network, Network, insert_network, networks, cluster);
    apply_delete!(apply_tenant, delete_tenant, Tenant, insert_tenant, tenants, cluster);
    apply_delete!(apply_secret, delete_secret, Secret, insert_secret, secrets, namespaced);
    apply_delete!(apply_config_map, delete_config_map, ConfigMap, insert_config_map, config_maps, namespaced);

    /// Namespaces whose Secrets and ConfigMaps are not known (yet), and why.
    pub fn set_unreadable(&self, unreadable: BTreeMap<String, String>) {
        let mut st = self.lock();
        if st.objects.unreadable != unreadable {
            st.objects.unreadable = unreadable;
            st.dirty = true;
            drop(st);
            self.changed.notify_one();
        }
    }

    /// Replaces every object of the store (a full resync, e.g. from a directory).
    pub fn replace_all(&self, objects: ObjectSet) {
        self.touch(|s| *s = objects);
    }

    /// The current snapshot and its changes.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.snapshot.subscribe()
    }

    pub fn current(&self) -> Arc<Snapshot> {
        self.snapshot.borrow().clone()
    }

    /// Rebuilds now if anything changed (feeders call [`ConfigStore::run`] instead).
    pub fn rebuild_now(&self) {
        let mut st = self.lock();
        if !st.dirty && self.snapshot.borrow().version > 0 {
            return;
        }
        st.dirty = false;
        let snap = self.build(&mut st);
        drop(st);
        self.snapshot.send_replace(Arc::new(snap));
    }

    /// Rebuilds the snapshot whenever something changed, until the token is cancelled.
    pub async fn run(&self, stop: tokio_util::sync::CancellationToken) {
        loop {
            self.rebuild_now();
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.changed.notified() => {}
            }
            // coalesce a burst of changes
            tokio::time::sleep(REBUILD_DEBOUNCE).await;
        }
    }

    fn build(&self, st: &mut State) -> Snapshot {
        let version = self.snapshot.borrow().version + 1;
        let objects = &st.objects;
        let networks: BTreeMap<String, ChainType> =
            objects.networks.iter().map(|(n, net)| (n.clone(), net.spec.chain_type)).collect();
        let listed: BTreeSet<&String> =
            objects.tenants.values().flat_map(|t| t.spec.namespaces.iter()).collect();
        let tenants: HashMap<String, TenantInfo> = listed
            .into_iter()
            .filter_map(|ns| {
                let owner = owner_of(ns, objects.tenants.values().map(Arc::as_ref))?;
                Some((
                    ns.clone(),
                    TenantInfo {
                        name: owner.name_any(),
                        limits: owner.spec.limits.clone(),
                        runner_namespace: owner.spec.namespaces.first().cloned(),
                    },
                ))
            })
            .collect();

        // compile (cached by inputs) and index per network
        let compiler = Cached { abis: &self.abis, previous: &st.compiled, next: RefCell::default() };
        let mut per_network: HashMap<String, Vec<Arc<CompiledMonitor>>> = HashMap::new();
        let mut rejected = BTreeMap::new();
        for (key, m) in &objects.monitors {
            let key = MonitorKey::new(&key.0, &key.1);
            let compiled = match self.admission {
                Admission::Operator => match admitted_by_operator(m) {
                    Err(why) => Err(why.to_string()),
                    Ok(()) => {
                        let c = compile_monitor(m, objects, &compiler);
                        match c.errors.is_empty() {
                            true => Ok(c.compiled),
                            false => {
                                Err(c.errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))
                            }
                        }
                    }
                },
                Admission::Local => {
                    let v = admit_monitor(m, objects, &compiler);
                    if v.admitted {
                        Ok(v.compiled)
                    } else {
                        Err(format!("{}: {}", v.ready().reason, v.ready().message))
                    }
                }
            };
            match compiled {
                Err(why) => {
                    rejected.insert(key, why);
                }
                Ok(compiled) => {
                    for network in &m.spec.networks {
                        let chain = networks.get(network);
                        if let Some(c) = compiled.iter().find(|c| Some(&c.chain.chain_type()) == chain) {
                            per_network.entry(network.clone()).or_default().push(c.clone());
                        }
                    }
                }
            }
        }
        let compiled = compiler.next.into_inner();
        let seen_indexes = per_network
            .iter()
            .filter_map(|(n, monitors)| {
                let seen = monitors.iter().filter(|m| m.matched.notify_at.contains(&NotifyPhase::Seen));
                let index = NetworkIndex::build(n, seen.cloned());
                (!index.is_empty()).then(|| (n.clone(), Arc::new(index)))
            })
            .collect();
        let indexes = networks
            .keys()
            .map(|n| (n.clone(), Arc::new(NetworkIndex::build(n, per_network.remove(n).unwrap_or_default()))))
            .collect();
        let triggers = objects
            .triggers
            .iter()
            .map(|(k, t)| (k.clone(), Arc::new(resolve_trigger(t, objects))))
            .collect();
        let mut snapshot = Snapshot {
            version,
            built_at: Some(Instant::now()),
            networks,
            indexes,
            seen_indexes,
            triggers,
            tenants,
            rejected,
            tenant_monitors: HashMap::new(),
        };
        snapshot.tenant_monitors = snapshot
            .indexes
            .iter()
            .map(|(network, index)| {
                let mut counts: BTreeMap<String, u64> = BTreeMap::new();
                for m in index.monitors() {
                    *counts.entry(snapshot.tenant_label(&m.key.namespace).to_string()).or_default() += 1;
                }
                (network.clone(), counts.into_iter().collect())
            })
            .collect();
        st.compiled = compiled;
        snapshot
    }

    /// A copy of the objects the store holds.
    pub fn objects(&self) -> ObjectSet {
        self.lock().objects.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_changed_config_map_recompiles_the_monitor_that_reads_it() {
        let store = ConfigStore::new(Admission::Local);
        store.apply_network(obj(
            json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Network", "metadata": {"name": "eth"},
            "spec": {"type": "evm", "rpc": [{"url": "https://x"}]}}),
        ));
        store.apply_tenant(obj(
            json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Tenant", "metadata": {"name": "t"},
            "spec": {"namespaces": ["t"]}}),
        ));
        store.apply_monitor(obj(json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Monitor", "metadata": {"name": "m", "namespace": "t", "generation": 1},
            "spec": {"networks": ["eth"], "addresses": [{"address": "0x0000000000000000000000000000000000000001",
                "contractSpecFrom": {"configMapKeyRef": {"name": "abi", "key": "abi.json"}}}],
                "matchConditions": {"events": [{"signature": "Transfer(address,address,uint256)"}]}}})));
        let abi = |events: &str| -> ConfigMap {
            obj(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "abi", "namespace": "t"},
                "data": {"abi.json": events}}),
            )
        };
        store.apply_config_map(abi("not json"));
        store.rebuild_now();
        assert!(store.current().rejected.values().next().unwrap().contains("is not JSON"));
        store.apply_config_map(abi(r#"[{"type":"event","name":"Transfer","anonymous":false,"inputs":[
            {"indexed":true,"name":"from","type":"address"},{"indexed":true,"name":"to","type":"address"},
            {"indexed":false,"name":"value","type":"uint256"}]}]"#));
        store.rebuild_now();
        let snap = store.current();
        assert!(snap.rejected.is_empty(), "{:?}", snap.rejected);
        assert_eq!(snap.monitor_count(), 1);
    }
}
