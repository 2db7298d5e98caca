//! The consume loop both stages share: records processed concurrently up to a limit, each marked
//! done (so the group's position can move past it) only after it was processed; on stop, the
//! records in progress finish (for at most the drain timeout) and the position is committed.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chainwatch_platform::bus::{Consumer, Message};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Runs `process` on every record of `consumer`, at most `concurrency` at a time, until `stop`;
/// then waits up to `drain` for the records in progress. `stage` names the loop in logs.
pub async fn consume<F, Fut>(
    consumer: Arc<dyn Consumer>,
    concurrency: usize,
    stop: CancellationToken,
    drain: Duration,
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
    let deadline = Instant::now() + drain;
    let abandoned = finish(&mut tasks, deadline, |()| {}).await;
    commit(consumer.as_ref(), deadline, stage).await;
    tracing::info!(%stage, abandoned, "stopped");
}

/// Waits for `tasks` until `deadline`, handing each result to `done`. Tasks still running then
/// (a broker that does not acknowledge, a receiver that does not answer) are aborted: their
/// records were not marked done, so whoever consumes next reads them again. Returns how many.
pub async fn finish<T: 'static>(tasks: &mut JoinSet<T>, deadline: Instant, mut done: impl FnMut(T)) -> usize {
    loop {
        match tokio::time::timeout_at(deadline, tasks.join_next()).await {
            Ok(Some(Ok(t))) => done(t),
            Ok(Some(Err(_))) => {}
            Ok(None) => return 0,
            Err(_) => {
                let left = tasks.len();
                tasks.abort_all();
                tracing::warn!(
                    left,
                    "records still in progress at the drain timeout: read again after the restart"
                );
                return left;
            }
        }
    }
}

/// Commits the consumer's position, giving up (with a warning) at `deadline` or a second from
/// now, whichever is later; an uncommitted position only means records read again.
pub async fn commit(consumer: &dyn Consumer, deadline: Instant, stage: &str) {
    let by = deadline.max(Instant::now() + Duration::from_secs(1));
    match tokio::time::timeout_at(by, consumer.commit()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(%stage, error = %e, "committing offsets on shutdown failed"),
        Err(_) => tracing::warn!(%stage, "committing offsets on shutdown timed out"),
    }
}

#[cfg(test)]
mod tests {
    use chainwatch_platform::bus::Producer;
    use chainwatch_platform::bus::memory::MemoryBus;

    use super::*;

    /// A record whose processing never ends (a broker that never acknowledges) does not hold the
    /// stop past the drain timeout, and is read again by the next consumer of the group.
    #[tokio::test]
    async fn a_stop_waits_for_work_in_progress_only_until_the_drain_timeout() {
        let bus = MemoryBus::new();
        for i in 0..2u8 {
            bus.send("t", "k", vec![i]).await.unwrap();
        }
        let consumer: Arc<dyn Consumer> = Arc::new(bus.consumer("g", &["t"]));
        let stop = CancellationToken::new();
        let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
        let run = tokio::spawn(consume(
            consumer,
            4,
            stop.clone(),
            Duration::from_millis(300),
            "test",
            move |msg| {
                let seen = seen_tx.clone();
                async move {
                    seen.send(msg.offset).unwrap();
                    if msg.offset == 1 {
                        std::future::pending::<()>().await;
                    }
                }
            },
        ));
        assert_eq!((seen.recv().await, seen.recv().await), (Some(0), Some(1)));
        let stopped = Instant::now();
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(30), run)
            .await
            .expect("the stop ends at the drain timeout, not when the stuck record does")
            .unwrap();
        assert!(stopped.elapsed() >= Duration::from_millis(300), "it waited for the work in progress");
        let next = bus.consumer("g", &["t"]);
        assert_eq!(next.recv().await.unwrap().offset, 1, "the abandoned record is read again");
    }
}
