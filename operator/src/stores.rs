//! Caches of the chainwatch objects every controller reads (reflectors), so admission never lists
//! from the API server.

use chainwatch_crds::{Monitor, Network, Tenant, Trigger};
use futures::StreamExt;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

/// Readers of the caches.
#[derive(Clone)]
pub struct Stores {
    pub monitors: Store<Monitor>,
    pub networks: Store<Network>,
    pub triggers: Store<Trigger>,
    pub tenants: Store<Tenant>,
}

fn start<K>(api: Api<K>, stop: CancellationToken, tasks: &mut tokio::task::JoinSet<()>) -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()).default_backoff())
        .touched_objects();
    tasks.spawn(async move {
        futures::pin_mut!(stream);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                item = stream.next() => match item {
                    None => return,
                    Some(Err(e)) => tracing::warn!(error = %e, kind = %K::kind(&()), "watch failed; retrying"),
                    Some(Ok(_)) => {}
                },
            }
        }
    });
    reader
}

impl Stores {
    /// Starts the reflectors and waits until each has listed once.
    pub async fn start(
        client: Client,
        stop: CancellationToken,
        tasks: &mut tokio::task::JoinSet<()>,
    ) -> Stores {
        let stores = Stores {
            monitors: start(Api::all(client.clone()), stop.clone(), tasks),
            networks: start(Api::all(client.clone()), stop.clone(), tasks),
            triggers: start(Api::all(client.clone()), stop.clone(), tasks),
            tenants: start(Api::all(client), stop.clone(), tasks),
        };
        let _ = tokio::join!(
            stores.monitors.wait_until_ready(),
            stores.networks.wait_until_ready(),
            stores.triggers.wait_until_ready(),
            stores.tenants.wait_until_ready()
        );
        stores
    }
}
