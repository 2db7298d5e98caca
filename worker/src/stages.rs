//! The one place the worker's stages are put together, for the worker process (Kafka, the API
//! server) and for `chainwatch dev` (the in-memory bus, files): the same settings, channels,
//! delivered-key log, throttles and status sink feed both stages.

use std::sync::Arc;
use std::time::Duration;

use chainwatch_platform::bus::parts::Reassembling;
use chainwatch_platform::bus::{Consumer, Producer};

use crate::config::ConfigStore;
use crate::filter::FilterStage;
use crate::metrics::WorkerMetrics;
use crate::notify::NotifyStage;
use crate::notify::channels::Channels;
use crate::notify::dedup::DeliveredLog;
use crate::notify::destination::DestinationPolicy;
use crate::notify::throttle::Throttles;
use crate::script::ScriptRunner;
use crate::status::StatusSink;

/// How the stages run.
#[derive(Clone, Debug)]
pub struct StageSettings {
    /// Blocks evaluated concurrently.
    pub filter_concurrency: usize,
    /// Attempts per block before it is dead-lettered.
    pub filter_attempts: u32,
    /// Notifications in flight at most (all tenants).
    pub notify_concurrency: usize,
    /// Each tenant's share of the notify stage.
    pub fairness: crate::notify::lanes::Fairness,
    pub scripts: ScriptRunner,
    pub destinations: DestinationPolicy,
    /// How long a stopping stage waits for the work in progress (see [`crate::stage::finish`]).
    pub drain_timeout: Duration,
}

impl Default for StageSettings {
    fn default() -> Self {
        Self {
            filter_concurrency: 4,
            filter_attempts: 5,
            notify_concurrency: 32,
            fairness: crate::notify::lanes::Fairness::default(),
            scripts: ScriptRunner::default(),
            destinations: DestinationPolicy::default(),
            drain_timeout: Duration::from_secs(20),
        }
    }
}

/// What the stages share.
#[derive(Clone)]
pub struct Stages {
    settings: StageSettings,
    producer: Arc<dyn Producer>,
    store: ConfigStore,
    metrics: WorkerMetrics,
    status: Arc<dyn StatusSink>,
    channels: Arc<Channels>,
    delivered: DeliveredLog,
    throttles: Arc<Throttles>,
}

impl Stages {
    /// Stages that deliver through the real channels.
    pub fn new(
        settings: StageSettings,
        producer: Arc<dyn Producer>,
        store: ConfigStore,
        metrics: WorkerMetrics,
        status: Arc<dyn StatusSink>,
    ) -> Self {
        let channels = Channels::new(settings.destinations.clone(), settings.scripts.clone());
        Self::with_channels(settings, producer, store, metrics, status, channels)
    }

    /// Stages that deliver through `channels` (a dry run prints instead).
    pub fn with_channels(
        settings: StageSettings,
        producer: Arc<dyn Producer>,
        store: ConfigStore,
        metrics: WorkerMetrics,
        status: Arc<dyn StatusSink>,
        channels: Channels,
    ) -> Self {
        let throttles = Arc::new(Throttles::default());
        Self {
            delivered: DeliveredLog::new(producer.clone(), throttles.clone()),
            channels: Arc::new(channels),
            throttles,
            settings,
            producer,
            store,
            metrics,
            status,
        }
    }

    /// The log of delivered keys (follow it before notifying: [`DeliveredLog::follow`]).
    pub fn delivered(&self) -> &DeliveredLog {
        &self.delivered
    }

    /// The filter stage of `network`, consuming its blocks from `consumer` (blocks that came in
    /// parts reassembled).
    pub fn filter(&self, network: &str, consumer: Arc<dyn Consumer>) -> FilterStage {
        FilterStage {
            network: network.to_string(),
            consumer: Arc::new(Reassembling::new(consumer)),
            producer: self.producer.clone(),
            config: self.store.subscribe(),
            metrics: self.metrics.clone(),
            concurrency: self.settings.filter_concurrency,
            attempts: self.settings.filter_attempts,
            drain: self.settings.drain_timeout,
        }
    }

    /// The notify stage, consuming matches and deferred notifications from `consumer` (subscribed
    /// to `chainwatch.matches` and `chainwatch.notify.deferred`).
    pub fn notify(&self, consumer: Arc<dyn Consumer>) -> NotifyStage {
        NotifyStage {
            consumer,
            producer: self.producer.clone(),
            config: self.store.subscribe(),
            channels: self.channels.clone(),
            scripts: self.settings.scripts.clone(),
            delivered: self.delivered.clone(),
            recent: Default::default(),
            throttles: self.throttles.clone(),
            status: self.status.clone(),
            metrics: self.metrics.clone(),
            concurrency: self.settings.notify_concurrency,
            fairness: self.settings.fairness,
            drain: self.settings.drain_timeout,
        }
    }
}
