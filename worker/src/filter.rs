//! The filter stage: consumes a network's blocks, evaluates every admitted monitor with the
//! configuration snapshot current for that block, produces the matches to `chainwatch.matches`, and
//! only then lets the block's offset move. A reorg record is passed on to every notify stage. A block that cannot be evaluated or whose matches cannot
//! be produced is retried, then dead-lettered with the reason — never silently counted as processed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chainwatch_core::phase::{self, BlockPhase};
use chainwatch_platform::Backoff;
use chainwatch_platform::bus::{Consumer, DEADLETTER_TOPIC, MATCHES_TOPIC, Message, Producer};
use chainwatch_platform::codec::{
    BlockRecord, BlockTopicRecord, DeadLetterRecord, MatchRecord, ReorgRecord, now_ms,
};
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::Snapshot;
use crate::dead_letters::Reason;
use crate::metrics::WorkerMetrics;

/// Why a block could not be processed.
#[derive(Debug, thiserror::Error)]
enum BlockFailure {
    #[error("{0}")]
    Evaluation(String),
    #[error("{0}")]
    Produce(String),
}

impl BlockFailure {
    /// The dead letter's reason (a bounded metric label).
    fn reason(&self) -> Reason {
        match self {
            BlockFailure::Evaluation(_) => Reason::EvaluationFailed,
            BlockFailure::Produce(_) => Reason::ProduceFailed,
        }
    }
}

/// The filter stage of one network.
#[derive(Clone)]
pub struct FilterStage {
    pub(crate) network: String,
    pub(crate) consumer: Arc<dyn Consumer>,
    pub(crate) producer: Arc<dyn Producer>,
    pub(crate) config: watch::Receiver<Arc<Snapshot>>,
    pub(crate) metrics: WorkerMetrics,
    /// Blocks evaluated concurrently.
    pub(crate) concurrency: usize,
    /// Attempts per block before it is dead-lettered.
    pub(crate) attempts: u32,
    /// How long a stop waits for the blocks in progress.
    pub(crate) drain: Duration,
}

impl FilterStage {
    /// Consumes until `stop`, then finishes the blocks in progress and commits.
    pub async fn run(self, stop: CancellationToken) {
        let (consumer, concurrency) = (self.consumer.clone(), self.concurrency);
        let name = format!("filter {}", self.network);
        crate::stage::consume(consumer, concurrency, stop, self.drain, &name, move |msg| {
            let stage = self.clone();
            async move { stage.process(&msg).await }
        })
        .await;
    }

    async fn dead_letter(
        &self,
        msg: &Message,
        reason: Reason,
        detail: String,
        payload: serde_json::Value,
        attempts: u32,
    ) {
        self.metrics.dead_letter("filter", reason);
        tracing::error!(network = %self.network, source = %msg.source(), %reason, %detail, "dead-lettering a block");
        let record = DeadLetterRecord {
            stage: "block".into(),
            reason: format!("{reason}: {detail}"),
            network: self.network.clone(),
            source: msg.source(),
            monitor: None,
            trigger: None,
            idempotency_key: None,
            attempts,
            at_ms: now_ms(),
            payload: Some(payload),
            record: None,
            tenant: None,
        };
        // the dead letter itself must land before the offset moves
        let backoff = Backoff::default();
        let mut attempt = 0;
        while let Err(e) = self.producer.send(DEADLETTER_TOPIC, &msg.source(), record.encode()).await {
            tracing::error!(error = %e, "writing a dead letter failed; retrying");
            tokio::time::sleep(backoff.delay(attempt.min(6))).await;
            attempt += 1;
        }
    }

    /// Passes a reorg on to every notify stage (every partition of `chainwatch.matches`): they
    /// retract what they notified for the replaced blocks, and notify nothing more of them. The
    /// block's offset moves only once every partition has it.
    async fn pass_on(&self, reorg: &ReorgRecord) {
        let replaced: Vec<u64> = reorg.replaced.iter().map(|b| b.number).collect();
        tracing::warn!(network = %self.network, ?replaced, "reorg: telling the notify stages to retract the replaced blocks' notifications; the canonical blocks follow");
        let backoff = Backoff::default();
        let mut attempt = 0;
        while let Err(e) = self.producer.broadcast(MATCHES_TOPIC, &self.network, reorg.encode()).await {
            tracing::error!(network = %self.network, error = %e, "passing a reorg on failed; retrying");
            tokio::time::sleep(backoff.delay(attempt.min(6))).await;
            attempt += 1;
        }
    }

    /// Evaluates one record and produces its matches.
    pub async fn process(&self, msg: &Message) {
        let record = match BlockTopicRecord::decode(&msg.payload) {
            Ok(r) => r,
            Err(e) => {
                self.dead_letter(msg, Reason::Undecodable, e.to_string(), json!({"key": msg.key}), 1).await;
                return;
            }
        };
        let block = match record {
            BlockTopicRecord::Reorg(r) => {
                self.metrics.reorg(&self.network);
                self.pass_on(&r).await;
                return;
            }
            BlockTopicRecord::Block(b) => b,
        };
        let number = block.block.number();
        let backoff = Backoff::default();
        let mut last_error = BlockFailure::Evaluation(String::new());
        let mut pending: Option<Vec<(String, Vec<u8>)>> = None;
        for attempt in 0..self.attempts.max(1) {
            if attempt > 0 {
                tokio::time::sleep(backoff.delay(attempt - 1)).await;
            }
            // evaluated once, with the snapshot current when the block was first taken up; a retry
            // re-sends only the records the broker has not acknowledged, so a produce failure
            // mid-block gives no duplicate match record
            let records = match pending.take() {
                Some(records) => records,
                None => match self.evaluate(&block) {
                    Ok(records) => records,
                    Err(e) => {
                        last_error = e;
                        continue;
                    }
                },
            };
            let sends = records.into_iter().map(|(key, payload)| {
                let producer = self.producer.clone();
                async move {
                    match producer.send(MATCHES_TOPIC, &key, payload.clone()).await {
                        Ok(()) => Ok(()),
                        Err(e) => Err((key, payload, e)),
                    }
                }
            });
            let results = futures::future::join_all(sends).await;
            let mut unsent = Vec::new();
            let mut first_error = None;
            for (key, payload, e) in results.into_iter().filter_map(Result::err) {
                first_error.get_or_insert(e);
                unsent.push((key, payload));
            }
            match first_error {
                None => return,
                Some(e) => {
                    self.metrics.match_resends(&self.network, unsent.len() as u64);
                    last_error = BlockFailure::Produce(format!(
                        "producing {} match records failed: {e}",
                        unsent.len()
                    ));
                    tracing::warn!(network = %self.network, block = number, attempt, unsent = unsent.len(), error = %e, "re-sending the unacknowledged match records");
                    pending = Some(unsent);
                }
            }
        }
        self.dead_letter(
            msg,
            last_error.reason(),
            last_error.to_string(),
            json!({"block": number, "hash": block.block.id().hash}),
            self.attempts,
        )
        .await;
    }

    /// Evaluates every monitor on the block and encodes the matches, each with its record key. A
    /// block published as `seen` is evaluated for the Monitors told at `seen` only; each match
    /// carries the phase its Monitor is told at ([`phase::notified`]).
    fn evaluate(&self, block: &BlockRecord) -> Result<Vec<(String, Vec<u8>)>, BlockFailure> {
        let snapshot = self.config.borrow().clone();
        let indexes = match block.phase {
            BlockPhase::Seen => &snapshot.seen_indexes,
            BlockPhase::Once | BlockPhase::Final => &snapshot.indexes,
        };
        let Some(index) = indexes.get(&self.network).cloned() else {
            // no monitor knows this network (yet): nothing can match
            self.metrics.block(&self.network, Duration::ZERO, &Default::default());
            return Ok(Vec::new());
        };
        let started = Instant::now();
        let evaluated =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| index.match_block(&block.block)));
        let (matches, stats) = evaluated.map_err(|panic| {
            BlockFailure::Evaluation(format!("evaluation panicked: {}", panic_message(&panic)))
        })?;
        self.metrics.block(&self.network, started.elapsed(), &stats);
        for (tenant, monitors) in snapshot.tenant_monitors.get(&self.network).into_iter().flatten() {
            self.metrics.tenant_evaluations(tenant, *monitors);
        }
        let produced_at_ms = now_ms();
        // counted per tenant here, added to the metric once per tenant and block
        let mut per_tenant: HashMap<&str, u64> = HashMap::new();
        let records = matches
            .into_iter()
            .filter_map(|mut m| {
                m.phase = phase::notified(&m.monitor.notify_at, block.phase)?;
                Some(m)
            })
            .map(|m| {
                let ns = &m.monitor.key.namespace;
                *per_tenant.entry(snapshot.tenant_label(ns)).or_default() += 1;
                let key = snapshot.lane(ns);
                let record =
                    MatchRecord { matched: m, block_published_at_ms: block.published_at_ms, produced_at_ms };
                (key, record.encode())
            })
            .collect();
        for (tenant, n) in per_tenant {
            self.metrics.tenant_matches(tenant, n);
        }
        Ok(records)
    }
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown".into())
}
