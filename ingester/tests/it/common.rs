//! Helpers: run an ingester in-process against the real broker, read back its topic.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chainwatch_core::block::Block;
use chainwatch_core::config::NetworkSettings;
use chainwatch_crds::ChainType;
use chainwatch_crds::network::Finality;
use chainwatch_devkit::testbed::{kafka_bootstrap, unique};
use chainwatch_ingester::checkpoint::FileCheckpoint;
use chainwatch_ingester::metrics::IngesterMetrics;
use chainwatch_ingester::rpc::{Endpoint, RpcMetrics};
use chainwatch_ingester::status::IngestStatus;
use chainwatch_ingester::{Components, supervise};
use chainwatch_platform::bus::blocks_topic;
use chainwatch_platform::bus::kafka::{KafkaArgs, TopicSpec};
use chainwatch_platform::codec::BlockTopicRecord;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub fn endpoint(url: &str, weight: u32) -> Endpoint {
    Endpoint { url: url.to_string(), weight, timeout: Duration::from_secs(5) }
}

/// A network's name and settings.
#[derive(Clone, Debug)]
pub struct Runtime {
    pub network: String,
    pub settings: NetworkSettings,
}

impl std::ops::Deref for Runtime {
    type Target = NetworkSettings;
    fn deref(&self) -> &NetworkSettings {
        &self.settings
    }
}

impl std::ops::DerefMut for Runtime {
    fn deref_mut(&mut self) -> &mut NetworkSettings {
        &mut self.settings
    }
}

pub fn runtime(network: &str, chain: ChainType, endpoints: Vec<Endpoint>) -> Runtime {
    Runtime {
        network: network.to_string(),
        settings: NetworkSettings {
            chain,
            endpoints,
            confirmations: 0,
            finality: Finality::Latest,
            publish_seen: false,
            chain_id: None,
            network_passphrase: None,
            block_time: Duration::from_secs(1),
            poll_interval: Duration::from_millis(100),
            max_past_blocks: None,
            start: None,
            stop_at: None,
            partitions: 1,
            replication_factor: None,
            retention: None,
        },
    }
}

/// An ingester running in this process.
#[allow(dead_code)]
pub struct Running {
    pub network: String,
    pub stop: CancellationToken,
    pub status: watch::Receiver<IngestStatus>,
    pub registry: Arc<std::sync::Mutex<Registry>>,
    pub task: tokio::task::JoinHandle<()>,
    pub config: watch::Sender<Option<Result<NetworkSettings, chainwatch_core::config::SpecError>>>,
}

impl Running {
    /// Waits until the newest published block is at least `n`.
    pub async fn wait_published(&mut self, n: u64, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let s = self.status.borrow_and_update().clone();
            if s.last_published.is_some_and(|p| p >= n) {
                return;
            }
            assert!(Instant::now() < deadline, "block {n} not published within {within:?}; status {s:?}");
            let _ = tokio::time::timeout(Duration::from_millis(200), self.status.changed()).await;
        }
    }

    /// Waits until `pred` holds for the status; `what` names it in the failure.
    pub async fn wait_for(&mut self, within: Duration, what: &str, pred: impl Fn(&IngestStatus) -> bool) {
        let deadline = Instant::now() + within;
        loop {
            let s = self.status.borrow_and_update().clone();
            if pred(&s) {
                return;
            }
            assert!(Instant::now() < deadline, "{what} not within {within:?}; status {s:?}");
            let _ = tokio::time::timeout(Duration::from_millis(200), self.status.changed()).await;
        }
    }

    /// Waits until `Progressing` is False with `reason`; returns that status.
    pub async fn wait_not_progressing(&mut self, reason: &str, within: Duration) -> IngestStatus {
        let what = format!("Progressing False, {reason}");
        self.wait_for(within, &what, |s| s.progressing.ok == Some(false) && s.progressing.reason == reason)
            .await;
        self.status.borrow().clone()
    }

    pub async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the ingester drains within 30 s")
            .unwrap();
    }

    pub fn metrics_text(&self) -> String {
        chainwatch_platform::admin::encode(&self.registry.lock().unwrap())
    }
}

/// Starts ingesting `rt` into a fresh single-partition topic; the checkpoint lives in `dir`.
pub async fn start(rt: Runtime, dir: &std::path::Path) -> Running {
    start_with(rt, dir, Options::default()).await
}

/// What [`start_with`] changes from the defaults.
#[derive(Default)]
pub struct Options {
    /// How often endpoints are asked which chain they serve (default 5 min).
    pub recheck: Option<Duration>,
    /// The broker (default: the test bed's).
    pub bootstrap: Option<String>,
}

/// As [`start`], with `options`.
pub async fn start_with(rt: Runtime, dir: &std::path::Path, options: Options) -> Running {
    let (network, rt) = (rt.network, rt.settings);
    let kafka = KafkaArgs::new(options.bootstrap.unwrap_or_else(kafka_bootstrap));
    kafka
        .admin()
        .unwrap()
        .ensure_topic(&TopicSpec {
            name: blocks_topic(&network),
            partitions: 1,
            replication_factor: None,
            retention_ms: None,
            compact: false,
        })
        .await
        .unwrap();
    let mut registry = Registry::default();
    let rpc_metrics = RpcMetrics::register(&mut registry);
    let metrics = IngesterMetrics::register(&mut registry);
    let (status_tx, status_rx) = watch::channel(IngestStatus::default());
    let (config_tx, config_rx) = watch::channel(Some(Ok(rt)));
    let components = Components {
        producer: Arc::new(kafka.producer().unwrap()),
        checkpoint: Arc::new(FileCheckpoint::new(dir, &network)),
        rpc_metrics,
        metrics,
        status: status_tx,
        fetch_concurrency: None,
        max_in_flight: None,
        endpoint_recheck: options.recheck,
    };
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let stop = stop.clone();
        let network = network.clone();
        async move { supervise(network, config_rx, components, stop).await.unwrap() }
    });
    Running {
        network,
        stop,
        status: status_rx,
        registry: Arc::new(std::sync::Mutex::new(registry)),
        task,
        config: config_tx,
    }
}

pub fn network_name(prefix: &str) -> String {
    unique(prefix)
}

/// Reads every record of a network's block topic (from the beginning, fresh group) until `until`
/// says enough or `within` passes.
pub async fn read_topic(
    network: &str,
    within: Duration,
    until: impl Fn(&[BlockTopicRecord]) -> bool,
) -> Vec<BlockTopicRecord> {
    read_topic_of(&kafka_bootstrap(), network, within, until).await
}

/// [`read_topic`] on the broker at `bootstrap`.
pub async fn read_topic_of(
    bootstrap: &str,
    network: &str,
    within: Duration,
    until: impl Fn(&[BlockTopicRecord]) -> bool,
) -> Vec<BlockTopicRecord> {
    let mut out = Vec::new();
    if !until(&out) {
        chainwatch_devkit::testbed::read_topic_of(bootstrap, &blocks_topic(network), within, |raw| {
            out.push(BlockTopicRecord::decode(&raw).unwrap());
            until(&out)
        })
        .await;
    }
    out
}

pub fn blocks(records: &[BlockTopicRecord]) -> Vec<&Block> {
    records
        .iter()
        .filter_map(|r| match r {
            BlockTopicRecord::Block(b) => Some(&b.block),
            BlockTopicRecord::Reorg(_) => None,
        })
        .collect()
}

pub fn anvil_bin() -> String {
    chainwatch_devkit::testbed::anvil_bin()
}
