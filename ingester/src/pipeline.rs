//! The ingestion loop of one network.
//!
//! Blocks are fetched with bounded concurrency and handed on in order; each is checked against its
//! predecessor's hash, encoded and sent; sends are pipelined and acknowledged in order, and the
//! checkpoint only moves past acknowledged blocks. After downtime ingestion resumes at checkpoint + 1
//! and catches up in ranges of [`RANGE`] blocks (re-reading the head between ranges), never
//! skipping a block unless `maxPastBlocks` is a number, in which case the skipped range is reported.
//!
//! A reorg shows as a block whose parent hash is not the hash of the block published before it (or,
//! while idle at the head, as a changed hash at the newest published height). The loop then walks
//! back through the remembered block identities to the common ancestor, publishes a reorg record
//! naming the replaced blocks, and publishes the canonical blocks again from the ancestor on.
//!
//! With `publishSeen` the loop follows the chain's `latest` block instead of the confirmation
//! depth: a block above the depth is published as `seen`, and once the depth reaches it, it is read
//! again, checked against the hash published (a different one is a reorg, handled as above) and
//! published as `final` ([`chainwatch_core::phase`]). A block already at the depth when first read
//! is published once. `final` publications trail the head cursor and never pass it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use chainwatch_core::block::BlockId;
use chainwatch_core::phase::BlockPhase;
use chainwatch_platform::bus::{BusError, Producer, blocks_topic, parts};
use chainwatch_platform::codec::{BlockRecord, BlockTopicRecord, ReorgRecord, now_ms};
use futures::stream::{FuturesOrdered, StreamExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::checkpoint::{Checkpoint, CheckpointStore, RECENT_WINDOW};
use crate::metrics::IngesterMetrics;
use crate::source::{BlockSource, Head, SourceError};
use crate::status::{Health, IngestStatus};

/// Blocks per catch-up range (the head is read again between ranges).
pub const RANGE: u64 = 1_000;
/// Least time between two checkpoint saves while blocks flow (each is a write, an fsync and a
/// rename): after a crash, ingestion repeats at most this much of its output.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(100);

/// How far back, from the last acknowledgement before a failed publish, blocks are published
/// again: a broker that died may have lost records it acknowledged and had not written down yet
/// (seen with a single broker killed by SIGKILL). Consumers take a block twice without harm.
pub const REPUBLISH_AFTER_PUBLISH_FAILURE: Duration = Duration::from_secs(30);

/// How the loop runs.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub network: String,
    pub poll_interval: Duration,
    /// `None` = unlimited.
    pub max_past_blocks: Option<u64>,
    /// Where to start without a checkpoint (`None`: the newest confirmed block).
    pub start: Option<u64>,
    /// Stop after this block (a bounded backfill).
    pub stop_at: Option<u64>,
    pub fetch_concurrency: usize,
    pub max_in_flight: usize,
    /// Publish blocks at the head as `seen`, and again as `final` at the confirmation depth.
    pub publish_seen: bool,
}

impl Settings {
    /// The pipeline settings of a network's settings.
    pub fn of(network: &str, s: &chainwatch_core::config::NetworkSettings) -> Self {
        Self {
            poll_interval: s.poll_interval,
            max_past_blocks: s.max_past_blocks,
            start: s.start,
            stop_at: s.stop_at,
            publish_seen: s.publish_seen,
            ..Self::new(network)
        }
    }

    pub fn new(network: &str) -> Self {
        Self {
            network: network.to_string(),
            poll_interval: Duration::from_secs(2),
            max_past_blocks: None,
            start: None,
            stop_at: None,
            fetch_concurrency: 8,
            max_in_flight: 64,
            publish_seen: false,
        }
    }
}

/// Why a range stopped.
#[derive(Debug, thiserror::Error)]
enum RangeError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("publishing failed: {0}")]
    Publish(BusError),
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] std::io::Error),
    /// A block whose parent is not our tip (`parent`: the hash it named).
    #[error("reorg detected at block {at}")]
    Reorg { at: u64, parent: String },
    /// Answers that do not fit together (a parent hash of no block we know, while nothing was
    /// replaced).
    #[error("{0}")]
    Inconsistent(String),
    #[error("stopped")]
    Stopped,
}

/// An error that ends the loop.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] std::io::Error),
}

/// One network's ingestion.
pub struct Ingester {
    pub settings: Settings,
    pub source: Arc<dyn BlockSource>,
    pub producer: Arc<dyn Producer>,
    pub checkpoint: Arc<dyn CheckpointStore>,
    pub status: watch::Sender<IngestStatus>,
    pub metrics: IngesterMetrics,
}

struct State {
    cp: Checkpoint,
    recent: VecDeque<BlockId>,
    next: u64,
    last_save: Instant,
    dirty: bool,
    /// Blocks acknowledged in the last [`REPUBLISH_AFTER_PUBLISH_FAILURE`] before the newest
    /// acknowledgement: (number, when).
    acked: VecDeque<(u64, Instant)>,
}

impl State {
    fn new(cp: Checkpoint, recent: VecDeque<BlockId>, next: u64, dirty: bool) -> Self {
        Self { cp, recent, next, last_save: Instant::now(), dirty, acked: VecDeque::new() }
    }

    /// After a failed publish: the first block to publish again, when some acknowledged ones may
    /// have been lost with the broker (the oldest acknowledged in the window before the failure).
    fn rewind_after_publish_failure(&mut self) -> Option<u64> {
        let from = self.acked.iter().map(|(n, _)| *n).min().filter(|n| *n < self.next);
        self.acked.clear();
        if let Some(from) = from {
            self.next = from;
            self.cp.republish_from = Some(self.cp.republish_from.map_or(from, |r| r.min(from)));
            self.dirty = true;
        }
        from
    }

    fn on_acked(&mut self, id: BlockId, phase: BlockPhase) {
        if phase != BlockPhase::Seen {
            self.cp.last_final = Some(self.cp.last_final().max(id.number));
        }
        let now = Instant::now();
        self.acked.push_back((id.number, now));
        while self
            .acked
            .front()
            .is_some_and(|(_, t)| now.duration_since(*t) > REPUBLISH_AFTER_PUBLISH_FAILURE)
        {
            self.acked.pop_front();
        }
        self.cp.last_published = self.cp.last_published.max(id.number);
        if self.cp.republish_from.is_some() && id.number >= self.cp.last_published {
            self.cp.republish_from = None;
        }
        while self.recent.back().is_some_and(|b| b.number >= id.number) {
            self.recent.pop_back();
        }
        self.recent.push_back(id);
        while self.recent.len() > RECENT_WINDOW {
            self.recent.pop_front();
        }
        self.dirty = true;
    }

    fn snapshot(&self) -> Checkpoint {
        Checkpoint { recent: self.recent.iter().cloned().collect(), ..self.cp.clone() }
    }
}

impl Ingester {
    fn topic(&self) -> String {
        blocks_topic(&self.settings.network)
    }

    async fn save(&self, st: &mut State) -> std::io::Result<()> {
        if st.dirty {
            self.checkpoint.save(&st.snapshot()).await?;
            st.dirty = false;
            st.last_save = Instant::now();
        }
        Ok(())
    }

    /// Runs until `stop` is cancelled (shutdown or a configuration change), draining in-flight
    /// publishes and saving the checkpoint before it returns.
    pub async fn run(&self, stop: CancellationToken) -> Result<(), IngestError> {
        let network = self.settings.network.clone();
        let mut st = match self.checkpoint.load().await? {
            Some(mut cp) => {
                // an older checkpoint: everything published was published at the depth
                cp.last_final = Some(cp.last_final());
                tracing::info!(%network, last_published = cp.last_published, resume_at = cp.resume_at(), "resuming from the checkpoint");
                // the status says where ingestion stands from the start, not only after a new block
                let last = cp.last_published;
                self.status.send_modify(|s| s.last_published = s.last_published.max(Some(last)));
                let next = cp.resume_at();
                let recent = cp.recent.iter().cloned().collect();
                State::new(cp, recent, next, false)
            }
            None => {
                let head = loop {
                    match self.source.head().await {
                        Ok(h) => break h,
                        Err(e) => {
                            self.head_unavailable(&e, None);
                            if sleep_or_stop(Duration::from_secs(2), &stop).await {
                                return Ok(());
                            }
                        }
                    }
                };
                let next = self.settings.start.unwrap_or(head.target);
                tracing::info!(%network, start = next, "no checkpoint: starting");
                let cp = Checkpoint {
                    version: 1,
                    last_published: next.saturating_sub(1),
                    recent: vec![],
                    republish_from: None,
                    last_final: Some(next.saturating_sub(1)),
                };
                State::new(cp, VecDeque::new(), next, true)
            }
        };
        let mut failures: u32 = 0;
        // whether blocks were published again since the last range that went through
        let mut rewound = false;
        // the last head read, and when: what the status says while no endpoint answers
        let mut last_head: Option<(Head, Instant)> = None;
        let stale_after = (self.settings.poll_interval * 3).max(Duration::from_secs(10));
        loop {
            if stop.is_cancelled() {
                break;
            }
            let head = match self.source.head().await {
                Ok(h) => {
                    self.rpc_up(h);
                    last_head = Some((h, Instant::now()));
                    h
                }
                Err(e) => {
                    self.head_unavailable(&e, last_head.filter(|(_, at)| at.elapsed() >= stale_after));
                    failures += 1;
                    if sleep_or_stop(backoff(failures, self.settings.poll_interval), &stop).await {
                        break;
                    }
                    continue;
                }
            };
            // the head cursor follows `latest` with publishSeen, else the confirmation depth
            let mut target = if self.settings.publish_seen { head.latest } else { head.target };
            let mut final_target = head.target;
            if let Some(stop_at) = self.settings.stop_at {
                final_target = final_target.min(stop_at);
                if st.next > stop_at {
                    self.progress(true, "BackfillComplete", &format!("backfill finished at block {stop_at}"));
                    if sleep_or_stop(self.settings.poll_interval, &stop).await {
                        break;
                    }
                    continue;
                }
                target = target.min(stop_at);
            }
            // blocks published as `seen` that reached the confirmation depth: `final` now
            match self.finalize(&mut st, final_target, &stop).await {
                Ok(()) => {}
                Err(RangeError::Stopped) => break,
                Err(RangeError::Checkpoint(e)) => return Err(e.into()),
                Err(e) => {
                    failures += 1;
                    tracing::warn!(%network, error = %e, "publishing blocks that turned final failed; retrying");
                    self.progress(false, "FinalizeFailed", &e.to_string());
                    if sleep_or_stop(backoff(failures, self.settings.poll_interval), &stop).await {
                        break;
                    }
                    continue;
                }
            }
            if st.next > target {
                // at the head: check that the newest published block is still canonical
                if let Some(tip) = st.recent.back().cloned() {
                    match self.source.block_id(tip.number).await {
                        Ok(canonical) if canonical.hash != tip.hash => {
                            if let Err(e) = self.reorg(&mut st, tip.number + 1, None).await {
                                failures += 1;
                                tracing::warn!(%network, error = %e, "handling a reorg failed; retrying");
                                if sleep_or_stop(backoff(failures, self.settings.poll_interval), &stop).await
                                {
                                    break;
                                }
                            }
                            continue;
                        }
                        Ok(_) => {}
                        Err(e) => tracing::debug!(%network, error = %e, "tip check failed"),
                    }
                }
                self.progress(
                    true,
                    "AtHead",
                    &format!("waiting for block {} (head {})", st.next, head.latest),
                );
                if sleep_or_stop(self.settings.poll_interval, &stop).await {
                    break;
                }
                continue;
            }
            if let Some(max) = self.settings.max_past_blocks {
                let behind = target + 1 - st.next;
                if behind > max {
                    let resume = target + 1 - max;
                    let from = st.next;
                    self.skip(&mut st, from, resume - 1);
                    st.next = resume;
                }
            }
            let end = target.min(st.next + RANGE - 1);
            match self.range(&mut st, end, final_target, &stop).await {
                Ok(()) => (failures, rewound) = (0, false),
                Err(RangeError::Stopped) => break,
                Err(RangeError::Reorg { at, parent }) => match self.reorg(&mut st, at, Some(&parent)).await {
                    Ok(()) => {}
                    Err(RangeError::Inconsistent(why)) => {
                        failures += 1;
                        let wait = backoff(failures, self.settings.poll_interval);
                        self.metrics.fetch_error(&network, "inconsistent");
                        tracing::warn!(%network, block = at, attempt = failures, "{why}; fetching it again in {wait:?}");
                        self.progress(
                            false,
                            "InconsistentAnswers",
                            &format!("{why}; fetching it again (attempt {failures})"),
                        );
                        if sleep_or_stop(wait, &stop).await {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(%network, error = %e, "handling a reorg failed; retrying");
                        failures += 1;
                        if sleep_or_stop(backoff(failures, self.settings.poll_interval), &stop).await {
                            break;
                        }
                    }
                },
                Err(RangeError::Inconsistent(why)) => {
                    failures += 1;
                    self.progress(false, "InconsistentAnswers", &why);
                    if sleep_or_stop(backoff(failures, self.settings.poll_interval), &stop).await {
                        break;
                    }
                }
                Err(RangeError::Source(e)) => {
                    failures += 1;
                    self.metrics.fetch_error(&network, e.reason());
                    tracing::warn!(%network, block = st.next, error = %e, "fetching failed; retrying (no block is skipped)");
                    self.progress(false, e.reason(), &format!("block {}: {e}", st.next));
                    if sleep_or_stop(backoff(failures, self.settings.poll_interval), &stop).await {
                        break;
                    }
                }
                Err(RangeError::Publish(e)) => {
                    failures += 1;
                    tracing::warn!(%network, block = st.next, error = %e, "publishing failed; retrying from the checkpoint");
                    // once until a range goes through: a record the broker refuses (too large)
                    // fails again after the rewind, and must not rewind again and again
                    if !rewound && let Some(from) = st.rewind_after_publish_failure() {
                        rewound = true;
                        tracing::warn!(%network, from, "the broker may have lost what it acknowledged last: publishing again from block {from}");
                    }
                    self.progress(false, "PublishFailed", &e.to_string());
                    if sleep_or_stop(backoff(failures, self.settings.poll_interval), &stop).await {
                        break;
                    }
                }
                Err(RangeError::Checkpoint(e)) => return Err(e.into()),
            }
        }
        self.save(&mut st).await?;
        tracing::info!(%network, last_published = st.cp.last_published, "ingestion stopped; checkpoint saved");
        Ok(())
    }

    /// Publishes as `final` the blocks published as `seen` that reached the confirmation depth
    /// (`final_target`), in order, each read again and checked against the hash published: a
    /// different one is a reorg (handled here: the head cursor publishes the canonical blocks).
    async fn finalize(
        &self,
        st: &mut State,
        final_target: u64,
        stop: &CancellationToken,
    ) -> Result<(), RangeError> {
        let network = &self.settings.network;
        let upto = final_target.min(st.next.saturating_sub(1));
        while st.cp.last_final() < upto {
            if stop.is_cancelled() {
                return Err(RangeError::Stopped);
            }
            let n = st.cp.last_final() + 1;
            let block = self.source.block(n).await?;
            let id = block.id();
            let published = st.recent.iter().rev().find(|b| b.number == n);
            if published.is_some_and(|b| b.hash != id.hash) {
                tracing::warn!(%network, block = n, "a block published as seen was replaced before it turned final: reorg");
                return self.reorg(st, st.next, None).await;
            }
            let record = BlockTopicRecord::Block(BlockRecord {
                network: network.clone(),
                block,
                published_at_ms: now_ms(),
                phase: BlockPhase::Final,
            });
            let parts = parts::split(record.encode(), parts::PART_BYTES);
            self.producer
                .send_all(&self.topic(), &n.to_string(), parts)
                .await
                .map_err(RangeError::Publish)?;
            st.cp.last_final = Some(n);
            st.dirty = true;
            if st.last_save.elapsed() > CHECKPOINT_INTERVAL {
                self.save(st).await?;
            }
        }
        self.save(st).await?;
        Ok(())
    }

    /// Fetches, checks, publishes `st.next ..= end` (as `seen` above `final_target`); returns after
    /// every send was acknowledged (or failed) and the checkpoint was saved.
    async fn range(
        &self,
        st: &mut State,
        end: u64,
        final_target: u64,
        stop: &CancellationToken,
    ) -> Result<(), RangeError> {
        let network = self.settings.network.clone();
        let topic = self.topic();
        let source = self.source.clone();
        let start = st.next;
        let mut fetches = futures::stream::iter(start..=end)
            .map(move |n| {
                let s = source.clone();
                async move {
                    let t = Instant::now();
                    (n, s.block(n).await, t.elapsed())
                }
            })
            .buffered(self.settings.fetch_concurrency.max(1));
        let mut acks = FuturesOrdered::new();
        let mut prev: Option<BlockId> = st.recent.back().cloned();
        let mut outcome: Result<(), RangeError> = Ok(());
        let mut fetching = true;
        // after a failed send, later acknowledgements must not move the checkpoint past the gap
        let mut publish_failed = false;
        loop {
            if (!fetching || outcome.is_err()) && acks.is_empty() {
                break; // nothing more to fetch and every send settled
            }
            let can_fetch = fetching && outcome.is_ok() && acks.len() < self.settings.max_in_flight;
            tokio::select! {
                biased;
                _ = stop.cancelled(), if outcome.is_ok() => {
                    outcome = Err(RangeError::Stopped);
                }
                Some(ack) = acks.next(), if !acks.is_empty() => {
                    match ack {
                        Ok(_) if publish_failed => {}
                        Ok((id, phase, bytes, started)) => {
                            let id: BlockId = id;
                            let started: Instant = started;
                            self.metrics.published(&network, id.number, bytes, started.elapsed());
                            let number = id.number;
                            st.on_acked(id, phase);
                            st.next = number + 1;
                            self.status.send_modify(|s| {
                                s.last_published = Some(number);
                                s.last_published_at = Some(SystemTime::now());
                            });
                            // a crash repeats at most this much (plus what is in flight)
                            if st.last_save.elapsed() > CHECKPOINT_INTERVAL {
                                self.save(st).await?;
                            }
                        }
                        Err(e) => {
                            publish_failed = true;
                            if !matches!(outcome, Err(RangeError::Publish(_))) {
                                outcome = Err(RangeError::Publish(e));
                            }
                        }
                    }
                }
                item = fetches.next(), if can_fetch => {
                    match item {
                        None => fetching = false,
                        Some((n, Err(e), _)) => {
                            let _ = n;
                            outcome = Err(RangeError::Source(e));
                        }
                        Some((n, Ok(block), took)) => {
                            self.metrics.fetched(&network, took);
                            let id = block.id();
                            if let Some(p) = &prev
                                && p.number + 1 == n && p.hash != id.parent_hash {
                                    tracing::warn!(%network, block = n, expected_parent = %p.hash, parent = %id.parent_hash, "parent hash mismatch: reorg");
                                    outcome = Err(RangeError::Reorg { at: n, parent: id.parent_hash.clone() });
                                    continue;
                                }
                            prev = Some(id.clone());
                            let phase = if n <= final_target { BlockPhase::Once } else { BlockPhase::Seen };
                            let record = BlockTopicRecord::Block(BlockRecord { network: network.clone(), block, published_at_ms: now_ms(), phase });
                            let bytes = record.encode();
                            let len = bytes.len();
                            let producer = self.producer.clone();
                            let topic = topic.clone();
                            let started = Instant::now();
                            // a block above the broker's message limit goes in parts (bus::parts)
                            let parts = parts::split(bytes, parts::PART_BYTES);
                            if parts.len() > 1 {
                                tracing::info!(%network, block = n, bytes = len, parts = parts.len(), "publishing a block too large for one message in parts");
                            }
                            acks.push_back(async move {
                                producer.send_all(&topic, &n.to_string(), parts).await.map(|()| (id, phase, len, started))
                            });
                        }
                    }
                }
                else => break,
            }
        }
        self.save(st).await?;
        outcome
    }

    /// Walks back from a mismatch at height `at` to the common ancestor, publishes a reorg record
    /// and arranges for the canonical blocks to be published again.
    async fn reorg(&self, st: &mut State, at: u64, parent: Option<&str>) -> Result<(), RangeError> {
        let network = self.settings.network.clone();
        let mut replaced = Vec::new();
        let mut replacement = Vec::new();
        let mut ancestor = None;
        for id in st.recent.iter().rev().filter(|b| b.number < at) {
            let canonical = self.source.block_id(id.number).await?;
            if canonical.hash == id.hash {
                ancestor = Some(id.number);
                break;
            }
            replaced.push(id.clone());
            replacement.push(canonical);
        }
        if replaced.is_empty() {
            // the block after our tip came from another fork than the tip we still see as
            // canonical (endpoints disagreeing, or one answering wrong): fetch it again, later
            let tip = st.recent.back().map(|b| b.hash.clone()).unwrap_or_default();
            let named = parent.map_or_else(String::new, |p| format!(" ({p})"));
            return Err(RangeError::Inconsistent(format!(
                "block {at} names a parent{named} that is not block {} ({tip}), which is still canonical: an endpoint answered a block of another fork; asking again",
                at.saturating_sub(1)
            )));
        }
        let ancestor = ancestor.unwrap_or_else(|| {
            let oldest = replaced.last().map_or(at, |b| b.number);
            tracing::error!(%network, oldest, "reorg deeper than the {RECENT_WINDOW} remembered blocks: republishing from the oldest remembered one");
            oldest.saturating_sub(1)
        });
        replaced.reverse();
        replacement.reverse();
        let depth = replaced.len() as u64;
        tracing::warn!(%network, from = ancestor + 1, depth, "reorg: publishing a reorg record and the canonical blocks");
        let record = BlockTopicRecord::Reorg(ReorgRecord {
            network: network.clone(),
            replaced,
            replacement,
            detected_at_ms: now_ms(),
        });
        self.producer
            .send(&self.topic(), &(ancestor + 1).to_string(), record.encode())
            .await
            .map_err(RangeError::Publish)?;
        st.recent.retain(|b| b.number <= ancestor);
        // a reorg deeper than the confirmation depth: the canonical blocks are final afresh
        st.cp.last_final = Some(st.cp.last_final().min(ancestor));
        st.cp.republish_from = Some(ancestor + 1);
        st.next = ancestor + 1;
        st.dirty = true;
        self.save(st).await?;
        self.metrics.reorg(&network, depth);
        self.status.send_modify(|s| s.last_reorg = Some((ancestor + 1, depth, SystemTime::now())));
        Ok(())
    }

    fn skip(&self, st: &mut State, from: u64, to: u64) {
        let network = &self.settings.network;
        tracing::warn!(%network, from, to, "maxPastBlocks: skipping blocks");
        self.metrics.skipped(network, to - from + 1);
        st.recent.clear(); // the chain of parent hashes is broken on purpose
        st.cp.republish_from = None;
        // the skipped blocks are not published at all, `seen` blocks before them not as `final`
        st.cp.last_final = Some(to);
        st.dirty = true;
        self.status.send_modify(|s| {
            s.skipped.push((from, to));
            if s.skipped.len() > 10 {
                s.skipped.remove(0);
            }
        });
    }

    fn rpc_up(&self, head: Head) {
        let network = &self.settings.network;
        self.metrics.head(network, head.latest);
        self.status.send_modify(|s| {
            s.head = Some(head.latest);
            s.target = Some(head.target);
            s.rpc = Health::ok("Reachable", "the head was read");
        });
        self.report_endpoints();
    }

    /// The head could not be read: the RPC condition says why; `Progressing` turns False at once
    /// when no endpoint serves this chain, and when the last head read (`stale`) is too old.
    fn head_unavailable(&self, e: &SourceError, stale: Option<(Head, Instant)>) {
        self.rpc_down(e);
        if e.reason() == "WrongChain" {
            // nothing is fetched from an endpoint of another chain: say so at once
            self.progress(false, "WrongChain", &e.to_string());
        } else if let Some((h, at)) = stale {
            let message = format!(
                "no endpoint answered for {}s: the head was block {} then ({e})",
                at.elapsed().as_secs(),
                h.latest
            );
            self.progress(false, "HeadUnknown", &message);
        }
    }

    fn rpc_down(&self, e: &SourceError) {
        self.status.send_modify(|s| s.rpc = Health::failing(e.reason(), &e.to_string()));
        self.report_endpoints();
    }

    fn report_endpoints(&self) {
        if let Some(r) = self.source.endpoints() {
            let h = Health::of_endpoints(&r);
            self.status.send_if_modified(|s| {
                let changed = s.endpoints != h;
                s.endpoints = h;
                changed
            });
        }
    }

    fn progress(&self, ok: bool, reason: &str, message: &str) {
        self.status.send_modify(|s| {
            s.progressing = if ok { Health::ok(reason, message) } else { Health::failing(reason, message) };
        });
    }
}

/// The wait after `failures` consecutive failures: doubling from 250 ms, with jitter, and never
/// above two poll intervals (at least 1 s, at most 30 s) — so ingestion resumes within about two
/// poll intervals after an endpoint (or the broker) returns.
fn backoff(failures: u32, poll: Duration) -> Duration {
    let cap = (poll * 2).clamp(Duration::from_secs(1), Duration::from_secs(30));
    let nominal = Duration::from_millis(250u64 << failures.saturating_sub(1).min(7)).min(cap);
    // ±25 %: endpoints shared by many ingesters are not hit in step
    nominal.mul_f64(0.75 + rand::random::<f64>() * 0.5).min(cap)
}

/// Sleeps; `true` when `stop` was cancelled first.
async fn sleep_or_stop(d: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = stop.cancelled() => true,
    }
}
