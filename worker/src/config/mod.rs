//! Live configuration: Monitors, Triggers, Networks, Tenants, Secrets and ConfigMaps in, a
//! [`Snapshot`] out — compiled monitors indexed per network, triggers with their credentials,
//! tenants by namespace. Feeders (Kubernetes watches in a cluster, a directory of YAML files in
//! `chainwatch dev`) apply objects; a rebuild task coalesces changes (at most one rebuild per
//! [`REBUILD_DEBOUNCE`]) and publishes a new snapshot that the next block is evaluated with.
//!
//! Compiled monitors are cached by (name, generation, chain type), so a change recompiles only the
//! monitor that changed; index rebuilds are cheap (5 ms for 10,000 monitors).

pub mod kube;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ::kube::ResourceExt;
use chainwatch_core::monitor::{
    AbiCache, CompileError, CompiledMonitor, MonitorKey, MonitorSource, NetworkIndex, compile,
};
use chainwatch_crds::{
    ChainType, ConfigMapKeyRef, Monitor, Network, SecretKeyRef, Tenant, TenantLimits, Trigger,
};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use tokio::sync::{Notify, watch};

/// Longest wait between a change and the snapshot that contains it.
pub const REBUILD_DEBOUNCE: Duration = Duration::from_millis(20);

/// Which monitors are evaluated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Admission {
    /// Those the operator admitted: `Ready=True` for their current generation.
    Operator,
    /// Those that compile and whose references resolve here (`chainwatch dev`, or no operator).
    Local,
}

/// `namespace/name` of a namespaced object.
pub type ObjectKey = (String, String);

/// A trigger with its credentials read.
#[derive(Clone, Debug)]
pub struct ResolvedTrigger {
    pub namespace: String,
    pub name: String,
    pub generation: Option<i64>,
    pub spec: chainwatch_crds::TriggerSpec,
    /// Secret values by reference; `Err` says which is missing.
    pub secrets: HashMap<SecretKeyRef, Result<String, String>>,
    /// Script text (inline or from its ConfigMap).
    pub script: Option<Result<chainwatch_core::monitor::ResolvedScript, String>>,
}

impl ResolvedTrigger {
    /// The value of a Secret reference of this trigger.
    pub fn secret(&self, r: &SecretKeyRef) -> Result<&str, String> {
        match self.secrets.get(r) {
            Some(Ok(v)) => Ok(v.as_str()),
            Some(Err(e)) => Err(e.clone()),
            None => Err(format!("Secret {}/{} was not read", r.name, r.key)),
        }
    }
}

/// What a tenant is allowed.
#[derive(Clone, Debug, PartialEq)]
pub struct TenantInfo {
    pub name: String,
    pub limits: TenantLimits,
}

/// An immutable view of the configuration.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Increases with every rebuild.
    pub version: u64,
    pub built_at: Option<Instant>,
    pub networks: BTreeMap<String, ChainType>,
    pub indexes: HashMap<String, Arc<NetworkIndex>>,
    pub triggers: HashMap<ObjectKey, Arc<ResolvedTrigger>>,
    /// Tenant of each namespace.
    pub tenants: HashMap<String, TenantInfo>,
    /// Monitors left out and why (not admitted, compile errors), for logs and metrics.
    pub rejected: BTreeMap<MonitorKey, String>,
}

impl Snapshot {
    pub fn tenant_of(&self, namespace: &str) -> Option<&TenantInfo> {
        self.tenants.get(namespace)
    }

    pub fn monitor_count(&self) -> usize {
        self.indexes.values().map(|i| i.len()).sum()
    }
}

/// A compiled monitor (or why it does not compile), with the fingerprint of its inputs.
type Compiled = (String, Result<Arc<CompiledMonitor>, Vec<CompileError>>);

#[derive(Default)]
struct State {
    monitors: BTreeMap<MonitorKey, Monitor>,
    triggers: BTreeMap<ObjectKey, Trigger>,
    networks: BTreeMap<String, Network>,
    tenants: BTreeMap<String, Tenant>,
    secrets: HashMap<ObjectKey, Secret>,
    config_maps: HashMap<ObjectKey, ConfigMap>,
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

fn ns_key<K: ResourceExt>(o: &K) -> ObjectKey {
    (o.namespace().unwrap_or_default(), o.name_any())
}

/// The revision of a monitor's spec that compilation depends on: its generation when it has one
/// (API server), else a hash of the spec (files).
fn revision(m: &Monitor) -> String {
    match m.metadata.generation {
        Some(g) => format!("g{g}"),
        None => {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            serde_json::to_string(&m.spec).unwrap_or_default().hash(&mut h);
            format!("h{:x}", h.finish())
        }
    }
}

/// Whether the operator admitted the monitor's current generation.
pub fn operator_admitted(m: &Monitor) -> Result<(), String> {
    let status = m.status.as_ref().ok_or("not yet admitted by the operator (no status)")?;
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .ok_or("not yet admitted by the operator (no Ready condition)")?;
    if ready.status != "True" {
        return Err(format!("not admitted: {} ({})", ready.reason, ready.message));
    }
    if status.observed_generation != m.metadata.generation {
        return Err("the operator has not admitted the current generation yet".into());
    }
    Ok(())
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

    fn touch(&self, f: impl FnOnce(&mut State)) {
        let mut st = self.lock();
        f(&mut st);
        st.dirty = true;
        drop(st);
        self.changed.notify_one();
    }

    pub fn apply_monitor(&self, m: Monitor) {
        self.touch(|s| {
            s.monitors.insert(MonitorKey::new(m.namespace().unwrap_or_default(), m.name_any()), m);
        });
    }
    pub fn delete_monitor(&self, namespace: &str, name: &str) {
        self.touch(|s| {
            s.monitors.remove(&MonitorKey::new(namespace, name));
        });
    }
    pub fn apply_trigger(&self, t: Trigger) {
        self.touch(|s| {
            s.triggers.insert(ns_key(&t), t);
        });
    }
    pub fn delete_trigger(&self, namespace: &str, name: &str) {
        self.touch(|s| {
            s.triggers.remove(&(namespace.to_string(), name.to_string()));
        });
    }
    pub fn apply_network(&self, n: Network) {
        self.touch(|s| {
            s.networks.insert(n.name_any(), n);
        });
    }
    pub fn delete_network(&self, name: &str) {
        self.touch(|s| {
            s.networks.remove(name);
        });
    }
    pub fn apply_tenant(&self, t: Tenant) {
        self.touch(|s| {
            s.tenants.insert(t.name_any(), t);
        });
    }
    pub fn delete_tenant(&self, name: &str) {
        self.touch(|s| {
            s.tenants.remove(name);
        });
    }
    pub fn apply_secret(&self, sec: Secret) {
        self.touch(|s| {
            s.secrets.insert(ns_key(&sec), sec);
        });
    }
    pub fn delete_secret(&self, namespace: &str, name: &str) {
        self.touch(|s| {
            s.secrets.remove(&(namespace.to_string(), name.to_string()));
        });
    }
    pub fn apply_config_map(&self, cm: ConfigMap) {
        self.touch(|s| {
            s.config_maps.insert(ns_key(&cm), cm);
        });
    }
    pub fn delete_config_map(&self, namespace: &str, name: &str) {
        self.touch(|s| {
            s.config_maps.remove(&(namespace.to_string(), name.to_string()));
        });
    }
    /// Replaces every object of the store (a full resync, e.g. from a directory).
    pub fn replace_all(
        &self,
        monitors: Vec<Monitor>,
        triggers: Vec<Trigger>,
        networks: Vec<Network>,
        tenants: Vec<Tenant>,
        secrets: Vec<Secret>,
        config_maps: Vec<ConfigMap>,
    ) {
        self.touch(|s| {
            s.monitors = monitors
                .into_iter()
                .map(|m| (MonitorKey::new(m.namespace().unwrap_or_default(), m.name_any()), m))
                .collect();
            s.triggers = triggers.into_iter().map(|t| (ns_key(&t), t)).collect();
            s.networks = networks.into_iter().map(|n| (n.name_any(), n)).collect();
            s.tenants = tenants.into_iter().map(|t| (t.name_any(), t)).collect();
            s.secrets = secrets.into_iter().map(|x| (ns_key(&x), x)).collect();
            s.config_maps = config_maps.into_iter().map(|c| (ns_key(&c), c)).collect();
        });
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
        let networks: BTreeMap<String, ChainType> =
            st.networks.iter().map(|(n, net)| (n.clone(), net.spec.chain_type)).collect();
        let tenants: HashMap<String, TenantInfo> = st
            .tenants
            .values()
            .flat_map(|t| {
                t.spec.namespaces.iter().map(move |ns| {
                    (ns.clone(), TenantInfo { name: t.name_any(), limits: t.spec.limits.clone() })
                })
            })
            .collect();

        let config_maps = &st.config_maps;
        let read_cm = |ns: &str, r: &ConfigMapKeyRef| -> Result<String, String> {
            let cm = config_maps
                .get(&(ns.to_string(), r.name.clone()))
                .ok_or_else(|| format!("ConfigMap {ns}/{} not found", r.name))?;
            cm.data
                .as_ref()
                .and_then(|d| d.get(&r.key))
                .cloned()
                .ok_or_else(|| format!("ConfigMap {ns}/{} has no key {}", r.name, r.key))
        };

        // compile (cached by revision) and index per network
        let mut per_network: HashMap<String, Vec<Arc<CompiledMonitor>>> = HashMap::new();
        let mut rejected = BTreeMap::new();
        let mut live: std::collections::HashSet<(MonitorKey, ChainType)> = Default::default();
        for (key, m) in &st.monitors {
            if self.admission == Admission::Operator
                && let Err(why) = operator_admitted(m)
            {
                rejected.insert(key.clone(), why);
                continue;
            }
            let mut reasons = Vec::new();
            for network in &m.spec.networks {
                let Some(chain) = networks.get(network) else {
                    reasons.push(format!("network {network} not found"));
                    continue;
                };
                let rev = revision(m);
                live.insert((key.clone(), *chain));
                let cached = st
                    .compiled
                    .get(&(key.clone(), *chain))
                    .filter(|(r, _)| *r == rev)
                    .map(|(_, c)| c.clone());
                let compiled = match cached {
                    Some(c) => c,
                    None => {
                        let ns = key.namespace.clone();
                        let reader = |r: &ConfigMapKeyRef| read_cm(&ns, r);
                        let source = MonitorSource {
                            key: key.clone(),
                            generation: m.metadata.generation,
                            spec: &m.spec,
                            config_maps: &reader,
                        };
                        let c = compile(&source, *chain, &self.abis).map(Arc::new);
                        st.compiled.insert((key.clone(), *chain), (rev, c.clone()));
                        c
                    }
                };
                match compiled {
                    Ok(c) => per_network.entry(network.clone()).or_default().push(c),
                    Err(errors) => {
                        reasons.push(errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))
                    }
                }
            }
            if self.admission == Admission::Local {
                for t in &m.spec.triggers {
                    if !st.triggers.contains_key(&(key.namespace.clone(), t.clone())) {
                        reasons.push(format!("trigger {t} not found"));
                    }
                }
                if !reasons.is_empty() {
                    rejected.insert(key.clone(), reasons.join("; "));
                    for n in &m.spec.networks {
                        if let Some(list) = per_network.get_mut(n) {
                            list.retain(|c| &c.key != key);
                        }
                    }
                }
            } else if !reasons.is_empty() {
                rejected.insert(key.clone(), reasons.join("; "));
            }
        }
        st.compiled.retain(|k, _| live.contains(k));
        let indexes = networks
            .keys()
            .map(|n| (n.clone(), Arc::new(NetworkIndex::build(n, per_network.remove(n).unwrap_or_default()))))
            .collect();

        let secrets = &st.secrets;
        let triggers = st
            .triggers
            .iter()
            .map(|((ns, name), t)| {
                let mut resolved = HashMap::new();
                for r in t.spec.secret_refs() {
                    let v = secrets
                        .get(&(ns.clone(), r.name.clone()))
                        .ok_or_else(|| format!("Secret {ns}/{} not found", r.name))
                        .and_then(|s| {
                            r.value_in(s)
                                .ok_or_else(|| format!("Secret {ns}/{} has no key {}", r.name, r.key))
                        })
                        .and_then(|b| {
                            String::from_utf8(b)
                                .map_err(|_| format!("Secret {ns}/{}/{} is not UTF-8", r.name, r.key))
                        });
                    resolved.insert(r.clone(), v);
                }
                let script = t.spec.script.as_ref().map(|s| {
                    let reader = |r: &ConfigMapKeyRef| read_cm(ns, r);
                    chainwatch_core::monitor::compile::resolve_script(s, "spec.script", &reader)
                        .map_err(|e| e.to_string())
                });
                let rt = ResolvedTrigger {
                    namespace: ns.clone(),
                    name: name.clone(),
                    generation: t.metadata.generation,
                    spec: t.spec.clone(),
                    secrets: resolved,
                    script,
                };
                ((ns.clone(), name.clone()), Arc::new(rt))
            })
            .collect();

        Snapshot { version, built_at: Some(Instant::now()), networks, indexes, triggers, tenants, rejected }
    }
}
