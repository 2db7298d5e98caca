//! The consume loop both stages share: records processed concurrently up to a limit, each marked
//! done (so the group's position can move past it) only after it was processed; on stop, the
//! records in progress finish and the position is committed.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chainwatch_platform::bus::{Consumer, Message};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Runs `process` on every record of `consumer`, at most `concurrency` at a time, until `stop`.
/// `stage` names the loop in logs.
pub async fn consume<F, Fut>(
    consumer: Arc<dyn Consumer>,
    concurrency: usize,
    stop: CancellationToken,
    stage: &str,
    process: F,
) where
    F: Fn(Arc<Message>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let permit = tokio::select! {
            _ = stop.cancelled() => break,
            p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
        };
        let msg = tokio::select! {
            _ = stop.cancelled() => break,
            m = consumer.recv() => m,
        };
        match msg {
            Ok(msg) => {
                let msg = Arc::new(msg);
                let processed = process(msg.clone());
                let consumer = consumer.clone();
                tasks.spawn(async move {
                    processed.await;
                    consumer.done(&msg);
                    drop(permit);
                });
            }
            Err(e) => {
                tracing::warn!(%stage, error = %e, "consuming failed");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    if let Err(e) = consumer.commit().await {
        tracing::warn!(%stage, error = %e, "committing offsets on shutdown failed");
    }
    tracing::info!(%stage, "stopped");
}
