//! Which namespaces an installation watches: every namespace, or a listed set (a namespace-scoped
//! install). The operator and its workers agree on it (the operator passes it on); in a
//! namespace-scoped install they read Monitors, Triggers, Secrets and ConfigMaps only in the
//! listed namespaces, so RBAC need grant them nothing anywhere else.

use std::collections::BTreeSet;

use kube::{Client, Resource};
use tokio_util::sync::CancellationToken;

use super::{Cache, CacheHooks, Cached};

/// The namespaces watched, as a flag.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct WatchArgs {
    /// Watch only these namespaces (comma-separated or repeated): a namespace-scoped install,
    /// whose RBAC grants Monitors, Triggers, Secrets and ConfigMaps only there. Tenants may list
    /// other namespaces; those are reported on the Tenant and left alone. Default: every namespace.
    #[arg(long = "watch-namespace", env = "CHAINWATCH_WATCH_NAMESPACES", value_delimiter = ',')]
    pub watch_namespaces: Vec<String>,
}

/// Every namespace, or only some.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum WatchScope {
    #[default]
    Cluster,
    Namespaces(BTreeSet<String>),
}

/// Whether `name` is a namespace name (an RFC 1123 label).
fn is_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

impl WatchScope {
    /// The scope `--watch-namespace` names; an error names the bad entry and the rule.
    pub fn from_args(args: &WatchArgs) -> Result<Self, String> {
        let names: BTreeSet<String> =
            args.watch_namespaces.iter().map(|n| n.trim().to_string()).filter(|n| !n.is_empty()).collect();
        if let Some(bad) = names.iter().find(|n| !is_label(n)) {
            return Err(format!(
                "--watch-namespace: {bad:?} is not a namespace name (lower-case letters, digits and '-', at most 63, starting and ending with a letter or digit)"
            ));
        }
        Ok(if names.is_empty() { WatchScope::Cluster } else { WatchScope::Namespaces(names) })
    }

    /// Whether objects of `namespace` are watched.
    pub fn watches(&self, namespace: &str) -> bool {
        match self {
            WatchScope::Cluster => true,
            WatchScope::Namespaces(set) => set.contains(namespace),
        }
    }

    /// Those of `namespaces` that are watched.
    pub fn within(&self, namespaces: impl IntoIterator<Item = String>) -> BTreeSet<String> {
        namespaces.into_iter().filter(|n| self.watches(n)).collect()
    }

    /// The listed namespaces (`None`: every namespace).
    pub fn namespaces(&self) -> Option<&BTreeSet<String>> {
        match self {
            WatchScope::Cluster => None,
            WatchScope::Namespaces(set) => Some(set),
        }
    }

    /// The flag's value that names this scope to another process (`None`: every namespace).
    pub fn flag_value(&self) -> Option<String> {
        self.namespaces().map(|set| set.iter().cloned().collect::<Vec<_>>().join(","))
    }

    /// A cache of a namespaced kind over this scope, until `stop`.
    pub fn cache<K>(&self, client: Client, hooks: CacheHooks, stop: CancellationToken) -> Cache<K>
    where
        K: Cached + Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    {
        match self {
            WatchScope::Cluster => Cache::cluster(client, hooks, stop),
            WatchScope::Namespaces(set) => {
                let cache = Cache::namespaced(client, hooks, stop);
                cache.watch_namespaces(set);
                cache
            }
        }
    }
}

impl std::fmt::Display for WatchScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WatchScope::Cluster => f.write_str("every namespace"),
            WatchScope::Namespaces(set) => {
                write!(f, "namespaces {}", set.iter().cloned().collect::<Vec<_>>().join(", "))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(names: &[&str]) -> Result<WatchScope, String> {
        WatchScope::from_args(&WatchArgs { watch_namespaces: names.iter().map(|s| s.to_string()).collect() })
    }

    #[test]
    fn no_namespaces_means_every_namespace() {
        assert_eq!(scope(&[]), Ok(WatchScope::Cluster));
        assert_eq!(scope(&["", " "]), Ok(WatchScope::Cluster));
        assert!(WatchScope::Cluster.watches("anything"));
        assert_eq!(WatchScope::Cluster.flag_value(), None);
    }

    #[test]
    fn listed_namespaces_are_the_only_ones_watched() {
        let s = scope(&["team-b", "team-a", "team-a"]).unwrap();
        assert!(s.watches("team-a") && s.watches("team-b") && !s.watches("team-c"));
        assert_eq!(s.flag_value().as_deref(), Some("team-a,team-b"));
        assert_eq!(
            s.within(["team-c".to_string(), "team-a".to_string()]),
            BTreeSet::from(["team-a".to_string()])
        );
        assert_eq!(s.to_string(), "namespaces team-a, team-b");
    }

    #[test]
    fn a_bad_name_is_named_with_the_rule() {
        let e = scope(&["team-a", "Team_B"]).unwrap_err();
        assert!(e.contains("\"Team_B\"") && e.contains("--watch-namespace"), "{e}");
        assert!(scope(&["-a"]).is_err() && scope(&[&"a".repeat(64)]).is_err());
    }
}
