//! Whether the broker answers: a metadata request every few seconds, off the async threads. A
//! process is not ready while its broker is unreachable (nothing would restart it otherwise), and
//! says since when.

use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::kafka::KafkaProducer;

/// The broker as last seen.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum BrokerState {
    #[default]
    Unknown,
    Reachable,
    Unreachable {
        since: SystemTime,
        error: String,
    },
}

impl BrokerState {
    pub fn is_reachable(&self) -> bool {
        *self == BrokerState::Reachable
    }
}

/// Checks the broker every `every` until `stop`.
pub fn watch_broker(
    producer: KafkaProducer,
    every: Duration,
    stop: CancellationToken,
) -> watch::Receiver<BrokerState> {
    let (tx, rx) = watch::channel(BrokerState::Unknown);
    tokio::spawn(async move {
        loop {
            let p = producer.clone();
            let answered = tokio::task::spawn_blocking(move || p.reachable(Duration::from_secs(3))).await;
            let next = match answered {
                Ok(Ok(())) => BrokerState::Reachable,
                Ok(Err(e)) => BrokerState::Unreachable { since: SystemTime::now(), error: e.to_string() },
                Err(e) => BrokerState::Unreachable { since: SystemTime::now(), error: e.to_string() },
            };
            tx.send_if_modified(|s| match (&*s, &next) {
                // keep the first failure's time
                (BrokerState::Unreachable { .. }, BrokerState::Unreachable { .. }) => false,
                (a, b) if a == b => false,
                _ => {
                    if let BrokerState::Unreachable { error, .. } = &next {
                        tracing::warn!(%error, "the Kafka broker does not answer");
                    } else if matches!(s, BrokerState::Unreachable { .. }) {
                        tracing::info!("the Kafka broker answers again");
                    }
                    *s = next.clone();
                    true
                }
            });
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    });
    rx
}
