//! What admission reads besides the object itself, behind one trait: the Networks, the Tenants,
//! the Triggers of a namespace, ConfigMaps and Secrets, and an object's peers for quota ranks.
//!
//! Three implementations exist — the operator's caches, the worker's state, the CLI's files — and
//! every rule built on top of the raw lookups lives here, once: which Tenant owns a namespace
//! ([`owner_of`]), how a Secret value is decoded ([`secret_text`]), how a ConfigMap key is read,
//! and the quota rank ([`rank_in`]).

use std::sync::Arc;

use chainwatch_crds::{ConfigMapKeyRef, Network, SecretKeyRef, Tenant};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::jiff::Timestamp;

/// The answer of a lookup.
#[derive(Clone, Debug, PartialEq)]
pub enum Lookup<T> {
    Found(T),
    /// It does not exist.
    Missing,
    /// It cannot be told (yet): the namespace is not listed yet, or reading it is not permitted
    /// yet — not a verdict on the object that refers to it. The text completes "Secret ns/x …",
    /// e.g. "cannot be read yet: namespace ns is not listed yet".
    Unknown(String),
}

/// Why a reference does not resolve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefProblem {
    #[error("Secret {namespace}/{name} does not exist")]
    SecretNotFound { namespace: String, name: String },
    #[error("Secret {namespace}/{name} has no key {key}")]
    SecretKeyNotFound { namespace: String, name: String, key: String },
    #[error("Secret {namespace}/{name} key {key} is not UTF-8 text")]
    SecretNotText { namespace: String, name: String, key: String },
    #[error("ConfigMap {namespace}/{name} does not exist")]
    ConfigMapNotFound { namespace: String, name: String },
    #[error("ConfigMap {namespace}/{name} has no key {key}")]
    ConfigMapKeyNotFound { namespace: String, name: String, key: String },
    #[error("{what} {why}")]
    Unreadable { what: String, why: String },
}

impl RefProblem {
    /// Condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            RefProblem::SecretNotFound { .. } => "SecretNotFound",
            RefProblem::SecretKeyNotFound { .. } => "SecretKeyNotFound",
            RefProblem::SecretNotText { .. } => "SecretNotText",
            RefProblem::ConfigMapNotFound { .. } | RefProblem::ConfigMapKeyNotFound { .. } => {
                "ConfigMapNotFound"
            }
            RefProblem::Unreadable { .. } => "ReferencePending",
        }
    }

    /// Whether it may resolve by itself (nothing the object's author has to fix).
    pub fn is_transient(&self) -> bool {
        matches!(self, RefProblem::Unreadable { .. })
    }
}

/// The one decoding rule of Secret values: UTF-8 text, surrounding white space removed (a value
/// written with `echo` or `--from-file` ends in a newline that nobody means). `None` when the
/// bytes are not UTF-8.
pub fn secret_text(bytes: &[u8]) -> Option<String> {
    std::str::from_utf8(bytes).ok().map(|s| s.trim().to_string())
}

/// The one rule of namespace ownership: the oldest Tenant listing the namespace (by creation
/// time; ties, and objects without one, by name). A later claim is a conflict its Tenant reports.
pub fn owner_of<'a>(namespace: &str, tenants: impl IntoIterator<Item = &'a Tenant>) -> Option<&'a Tenant> {
    tenants
        .into_iter()
        .filter(|t| t.spec.namespaces.iter().any(|n| n == namespace))
        .min_by(|a, b| claim_order(a).cmp(&claim_order(b)))
}

fn claim_order(t: &Tenant) -> (Option<Timestamp>, String) {
    (t.metadata.creation_timestamp.as_ref().map(|t| t.0), t.metadata.name.clone().unwrap_or_default())
}

/// An object competing for a tenant's quota.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Peer {
    pub created: Option<Timestamp>,
    pub namespace: String,
    pub name: String,
}

impl Peer {
    pub fn of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Peer {
        Peer {
            created: meta.creation_timestamp.as_ref().map(|t| t.0),
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
        }
    }
}

/// Which quota an object counts against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Quota {
    Monitors,
    Triggers,
}

/// The quota rule: position of `(namespace, name)` among `peers`, oldest first (creation time has
/// one-second resolution; ties by namespace and name, so every replica and reconcile agrees).
pub fn rank_in(mut peers: Vec<Peer>, namespace: &str, name: &str) -> Option<usize> {
    peers.sort();
    peers.iter().position(|p| p.namespace == namespace && p.name == name)
}

/// What admission reads. Implementations provide the raw lookups; the rules are the provided
/// methods, which implementations do not override.
pub trait Catalog {
    /// A Network by name.
    fn network(&self, name: &str) -> Option<Arc<Network>>;
    /// Every Network's name, sorted (for messages that list what exists).
    fn network_names(&self) -> Vec<String>;
    /// Every Tenant.
    fn tenants(&self) -> Vec<Arc<Tenant>>;
    /// Names of the Triggers of a namespace, sorted.
    fn trigger_names(&self, namespace: &str) -> Vec<String>;
    /// The Monitors or Triggers of some namespaces, for quota ranks.
    fn peers(&self, quota: Quota, namespaces: &[String]) -> Vec<Peer>;
    fn config_map(&self, namespace: &str, name: &str) -> Lookup<Arc<ConfigMap>>;
    fn secret(&self, namespace: &str, name: &str) -> Lookup<Arc<Secret>>;

    /// The Tenant that owns a namespace ([`owner_of`]).
    fn tenant_of(&self, namespace: &str) -> Option<Arc<Tenant>> {
        let tenants = self.tenants();
        owner_of(namespace, tenants.iter().map(Arc::as_ref))
            .and_then(|owner| tenants.iter().find(|t| std::ptr::eq(t.as_ref(), owner)).cloned())
    }

    /// An object's rank among its tenant's objects of the same kind ([`rank_in`]).
    fn rank(&self, quota: Quota, tenant: &Tenant, namespace: &str, name: &str) -> Option<usize> {
        rank_in(self.peers(quota, &tenant.spec.namespaces), namespace, name)
    }

    /// A ConfigMap key's text.
    fn config_map_value(&self, namespace: &str, r: &ConfigMapKeyRef) -> Result<String, RefProblem> {
        match self.config_map(namespace, &r.name) {
            Lookup::Found(cm) => cm.data.as_ref().and_then(|d| d.get(&r.key)).cloned().ok_or_else(|| {
                RefProblem::ConfigMapKeyNotFound {
                    namespace: namespace.into(),
                    name: r.name.clone(),
                    key: r.key.clone(),
                }
            }),
            Lookup::Missing => {
                Err(RefProblem::ConfigMapNotFound { namespace: namespace.into(), name: r.name.clone() })
            }
            Lookup::Unknown(why) => {
                Err(RefProblem::Unreadable { what: format!("ConfigMap {namespace}/{}", r.name), why })
            }
        }
    }

    /// A Secret key's value, decoded by [`secret_text`]: from `data`, or `stringData` where a server
    /// kept it as written.
    fn secret_value(&self, namespace: &str, r: &SecretKeyRef) -> Result<String, RefProblem> {
        let secret = match self.secret(namespace, &r.name) {
            Lookup::Found(s) => s,
            Lookup::Missing => {
                return Err(RefProblem::SecretNotFound { namespace: namespace.into(), name: r.name.clone() });
            }
            Lookup::Unknown(why) => {
                return Err(RefProblem::Unreadable { what: format!("Secret {namespace}/{}", r.name), why });
            }
        };
        let bytes = r.value_in(&secret).ok_or_else(|| RefProblem::SecretKeyNotFound {
            namespace: namespace.into(),
            name: r.name.clone(),
            key: r.key.clone(),
        })?;
        secret_text(&bytes).ok_or_else(|| RefProblem::SecretNotText {
            namespace: namespace.into(),
            name: r.name.clone(),
            key: r.key.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tenant(name: &str, created: Option<&str>, namespaces: &[&str]) -> Tenant {
        let mut meta = json!({"name": name});
        if let Some(c) = created {
            meta["creationTimestamp"] = json!(c);
        }
        serde_json::from_value(json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Tenant",
            "metadata": meta, "spec": {"namespaces": namespaces}}))
        .unwrap()
    }

    #[test]
    fn the_oldest_claim_owns_a_namespace_whatever_the_order() {
        let old = tenant("zeta", Some("2026-01-01T00:00:00Z"), &["shared", "z"]);
        let new = tenant("alpha", Some("2026-06-01T00:00:00Z"), &["shared", "a"]);
        for order in [vec![&old, &new], vec![&new, &old]] {
            assert_eq!(
                owner_of("shared", order.iter().copied()).unwrap().metadata.name.as_deref(),
                Some("zeta")
            );
        }
        assert_eq!(owner_of("a", [&old, &new]).unwrap().metadata.name.as_deref(), Some("alpha"));
        assert!(owner_of("nobody", [&old, &new]).is_none());
        // without creation times (files): by name
        let (b, a) = (tenant("b", None, &["x"]), tenant("a", None, &["x"]));
        assert_eq!(owner_of("x", [&b, &a]).unwrap().metadata.name.as_deref(), Some("a"));
    }

    #[test]
    fn secret_values_are_trimmed_utf8() {
        assert_eq!(secret_text(b"  hmac-key\n").as_deref(), Some("hmac-key"));
        assert_eq!(secret_text(b"https://hooks.example/x\r\n").as_deref(), Some("https://hooks.example/x"));
        assert_eq!(secret_text(&[0xff, 0xfe]), None);
    }

    #[test]
    fn quota_ranks_are_oldest_first_then_by_namespace_and_name() {
        let at = |s: &str| Some(s.parse::<Timestamp>().unwrap());
        let peer = |c: Option<Timestamp>, ns: &str, n: &str| Peer {
            created: c,
            namespace: ns.into(),
            name: n.into(),
        };
        let peers = vec![
            peer(at("2026-01-01T00:00:02Z"), "a", "late"),
            peer(at("2026-01-01T00:00:01Z"), "b", "tie-b"),
            peer(at("2026-01-01T00:00:01Z"), "a", "tie-a"),
        ];
        assert_eq!(rank_in(peers.clone(), "a", "tie-a"), Some(0));
        assert_eq!(rank_in(peers.clone(), "b", "tie-b"), Some(1));
        assert_eq!(rank_in(peers.clone(), "a", "late"), Some(2));
        assert_eq!(rank_in(peers, "a", "absent"), None);
    }
}
