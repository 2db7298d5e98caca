//! What every controller's reconcile runs inside: a tracing span, the reconcile metrics, per-object
//! exponential backoff (1 s doubling to 5 min) and a Warning event on the first failure of a
//! streak.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::Resource;
use kube::runtime::controller::Action;

use crate::context::Ctx;
use crate::error::Error;
use crate::events::Level;

/// Consecutive failures per object.
#[derive(Default)]
struct Backoffs(Mutex<HashMap<String, u32>>);

impl Backoffs {
    fn bump(&self, key: &str) -> u32 {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(key.to_string()).or_default();
        *n += 1;
        *n
    }

    fn reset(&self, key: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }
}

fn object_key<K: Resource>(o: &K) -> String {
    format!(
        "{}/{}",
        o.meta().namespace.clone().unwrap_or_default(),
        o.meta().name.clone().unwrap_or_default()
    )
}

/// The delay after the `n`th consecutive failure.
pub fn backoff(n: u32) -> Duration {
    Duration::from_secs((1u64 << n.saturating_sub(1).min(9)).min(300))
}

/// A failed reconcile and when to try that object again.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct Failed {
    error: Error,
    retry: Duration,
}

type Reconcile<K> =
    Box<dyn FnMut(Arc<K>, Arc<Ctx>) -> futures::future::BoxFuture<'static, Result<Action, Failed>> + Send>;
type ErrorPolicy<K> = fn(Arc<K>, &Failed, Arc<Ctx>) -> Action;

/// Wraps `reconcile`; returns the reconciler and the error policy for
/// [`Controller::run`](kube::runtime::Controller::run).
pub fn supervised<K, F, Fut>(controller: &'static str, reconcile: F) -> (Reconcile<K>, ErrorPolicy<K>)
where
    K: Resource<DynamicType = ()> + Send + Sync + 'static,
    F: Fn(Arc<K>, Ctx) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<Action, Error>> + Send + 'static,
{
    let backoffs = Arc::new(Backoffs::default());
    let run = move |obj: Arc<K>, ctx: Arc<Ctx>| {
        let backoffs = backoffs.clone();
        let reconcile = reconcile.clone();
        Box::pin(async move {
            let key = object_key(obj.as_ref());
            let span = tracing::info_span!("reconcile", controller, object = %key);
            let started = std::time::Instant::now();
            let result =
                tracing::Instrument::instrument(reconcile(obj.clone(), ctx.as_ref().clone()), span).await;
            ctx.metrics.reconciled(controller, started.elapsed());
            match result {
                Ok(action) => {
                    backoffs.reset(&key);
                    Ok(action)
                }
                Err(error) => {
                    let n = backoffs.bump(&key);
                    ctx.metrics.error(controller, error.category());
                    tracing::warn!(controller, object = %key, attempt = n, %error, "reconcile failed");
                    if n == 1 {
                        ctx.events
                            .publish(obj.as_ref(), Level::Warning, error.category(), &error.to_string())
                            .await;
                    }
                    Err(Failed { error, retry: backoff(n) })
                }
            }
        }) as futures::future::BoxFuture<'static, Result<Action, Failed>>
    };
    (Box::new(run), |_obj: Arc<K>, failed: &Failed, _ctx: Arc<Ctx>| Action::requeue(failed.retry))
}

#[cfg(test)]
mod tests {
    #[test]
    fn backoff_doubles_to_five_minutes() {
        let d: Vec<u64> = (1..=12).map(|n| super::backoff(n).as_secs()).collect();
        assert_eq!(d, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
    }
}
