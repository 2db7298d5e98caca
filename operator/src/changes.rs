//! Reconcile requests from cache subscriptions: a controller's own objects when what it reacts
//! to changed (status writes by the ingester or the worker — a head every few seconds, match
//! counters — are not changes of a spec, and do not re-reconcile), and objects of other kinds
//! mapped to the objects they affect.

use std::collections::HashMap;

use chainwatch_platform::cache::{Cached, Change};
use futures::{Stream, StreamExt};
use kube::runtime::reflector::ObjectRef;

/// `(namespace, name)` of an object.
fn id<K: kube::Resource>(o: &K) -> (Option<String>, String) {
    (o.meta().namespace.clone(), o.meta().name.clone().unwrap_or_default())
}

/// The changes whose `key` differs from the last one seen for the object; creations and
/// deletions always pass.
pub fn changed<K, T>(
    changes: impl Stream<Item = Change<K>> + Send + 'static,
    key: impl Fn(&K) -> T + Send + 'static,
) -> impl Stream<Item = Change<K>> + Send + 'static
where
    K: Cached,
    T: PartialEq + Send + 'static,
{
    let mut seen: HashMap<(Option<String>, String), T> = HashMap::new();
    changes.filter_map(move |c| {
        let out = match &c {
            Change::Applied(o) => {
                let k = key(o);
                let same = seen.get(&id(o.as_ref())).is_some_and(|previous| *previous == k);
                seen.insert(id(o.as_ref()), k);
                (!same).then_some(c)
            }
            Change::Deleted(o) => {
                seen.remove(&id(o.as_ref()));
                Some(c)
            }
        };
        futures::future::ready(out)
    })
}

/// Changes of the spec (a new `metadata.generation`), creations and deletions.
pub fn spec_changed<K: Cached>(
    changes: impl Stream<Item = Change<K>> + Send + 'static,
) -> impl Stream<Item = Change<K>> + Send + 'static {
    changed(changes, |o: &K| o.meta().generation)
}

/// Requests for the objects themselves, when they are created or changed.
pub fn own<K: Cached>(
    changes: impl Stream<Item = Change<K>> + Send + 'static,
) -> impl Stream<Item = ObjectRef<K>> + Send + 'static {
    changes.filter_map(|c| {
        futures::future::ready(match c {
            Change::Applied(o) => Some(ObjectRef::from_obj(o.as_ref())),
            Change::Deleted(_) => None,
        })
    })
}

/// Requests for the objects each change of another kind affects.
pub fn mapped<Other, K>(
    changes: impl Stream<Item = Change<Other>> + Send + 'static,
    mut map: impl FnMut(&Change<Other>) -> Vec<ObjectRef<K>> + Send + 'static,
) -> impl Stream<Item = ObjectRef<K>> + Send + 'static
where
    Other: Cached,
    K: Cached,
{
    changes.flat_map(move |c| futures::stream::iter(map(&c)))
}
