//! Watch streams for `.watches_stream`: only the changes of another kind that matter to a
//! controller, so that status writes (an ingester reporting its head every few seconds, a worker
//! counting matches, a Tenant recounting its Monitors) do not re-reconcile everything that refers
//! to the object.

use std::collections::HashMap;

use futures::{Stream, StreamExt};
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;

/// Objects of `api` when they are created, deleted, or `key` of them changes.
pub fn changes<K, T>(
    api: Api<K>,
    key: impl Fn(&K) -> T + Send + 'static,
) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
    T: PartialEq + Send + 'static,
{
    let mut seen: HashMap<(Option<String>, String), T> = HashMap::new();
    watcher(api, watcher::Config::default()).default_backoff().filter_map(move |event| {
        let out = match event {
            Err(e) => Some(Err(e)),
            Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                let k = key(&o);
                match seen.insert((o.namespace(), o.name_any()), k) {
                    Some(previous) if previous == key(&o) => None,
                    _ => Some(Ok(o)),
                }
            }
            Ok(watcher::Event::Delete(o)) => {
                seen.remove(&(o.namespace(), o.name_any()));
                Some(Ok(o))
            }
            Ok(watcher::Event::Init | watcher::Event::InitDone) => None,
        };
        futures::future::ready(out)
    })
}

/// Objects of `api` when they are created, deleted, or their spec changes (a new
/// `metadata.generation`); status-only updates are dropped.
pub fn spec_changes<K>(api: Api<K>) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    changes(api, |o: &K| o.meta().generation)
}

#[cfg(test)]
mod tests {
    // The filtering is exercised against a real API server in tests/it (a status write by the
    // ingester must not re-admit Monitors: see `admission::status_writes_do_not_readmit`).
}
