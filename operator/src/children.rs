//! Writing the objects controllers build: server-side apply with the operator's field manager, and
//! deletion by label of what is no longer desired.

use std::collections::BTreeSet;

use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::labels::MANAGER;

/// Server-side applies an object with the operator's field manager.
pub async fn apply<K>(api: &Api<K>, obj: &K) -> Result<K>
where
    K: Resource<DynamicType = ()> + Serialize + DeserializeOwned + Clone + std::fmt::Debug,
{
    let name = obj.name_any();
    api.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(obj))
        .await
        .map_err(|source| Error::Apply { kind: K::kind(&()).into_owned(), name, source })
}

/// Deletes the objects of `api` (one namespace, or a cluster-scoped kind) matching `selector` whose name is not in `keep`; returns
/// `Kind/name` of each deleted one. A kind the server does not serve has nothing to delete.
pub async fn delete_others<K>(api: &Api<K>, selector: &str, keep: &BTreeSet<String>) -> Result<Vec<String>>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let kind = K::kind(&()).into_owned();
    let list = match api.list(&ListParams::default().labels(selector)).await {
        Ok(l) => l,
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(vec![]),
        Err(source) => return Err(Error::List { kind, source }),
    };
    let mut deleted = Vec::new();
    for o in list.items {
        let name = o.name_any();
        if !keep.contains(&name) {
            match api.delete(&name, &DeleteParams::background()).await {
                Ok(_) => deleted.push(format!("{kind}/{name}")),
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(source) => return Err(Error::Delete { kind, name, source }),
            }
        }
    }
    Ok(deleted)
}
