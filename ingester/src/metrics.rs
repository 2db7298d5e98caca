//! Ingester metrics (label `network`: bounded by the Networks of the cluster).

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Net {
    network: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NetReason {
    network: String,
    reason: String,
}

/// Ingester metric families.
#[derive(Clone)]
pub struct IngesterMetrics {
    head: Family<Net, Gauge>,
    last_published: Family<Net, Gauge>,
    published: Family<Net, Counter>,
    publish_latency: Family<Net, Histogram>,
    fetch_latency: Family<Net, Histogram>,
    block_bytes: Family<Net, Histogram>,
    fetch_errors: Family<NetReason, Counter>,
    reorgs: Family<Net, Counter>,
    reorg_depth: Family<Net, Gauge>,
    skipped: Family<Net, Counter>,
}

impl Default for IngesterMetrics {
    fn default() -> Self {
        Self {
            head: Family::default(),
            last_published: Family::default(),
            published: Family::default(),
            publish_latency: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 14))
            }),
            fetch_latency: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.005, 2.0, 14))
            }),
            block_bytes: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(1024.0, 4.0, 10))
            }),
            fetch_errors: Family::default(),
            reorgs: Family::default(),
            reorg_depth: Family::default(),
            skipped: Family::default(),
        }
    }
}

impl IngesterMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("chainwatch_ingester");
        r.register("head_block", "Newest block number the RPC reported", m.head.clone());
        r.register(
            "last_published_block",
            "Newest block published to Kafka and acknowledged",
            m.last_published.clone(),
        );
        r.register("blocks_published", "Blocks published and acknowledged", m.published.clone());
        r.register(
            "publish_duration_seconds",
            "Time from send to broker acknowledgement",
            m.publish_latency.clone(),
        );
        r.register(
            "fetch_duration_seconds",
            "Time to fetch a block with its receipts/events",
            m.fetch_latency.clone(),
        );
        r.register("block_record_bytes", "Encoded size of published block records", m.block_bytes.clone());
        r.register(
            "fetch_errors",
            "Failed block fetches by reason (they are retried)",
            m.fetch_errors.clone(),
        );
        r.register("reorgs", "Reorgs detected by parent-hash continuity", m.reorgs.clone());
        r.register("last_reorg_depth", "Depth of the newest reorg", m.reorg_depth.clone());
        r.register("skipped_blocks", "Blocks skipped because of a numeric maxPastBlocks", m.skipped.clone());
        m
    }

    fn net(network: &str) -> Net {
        Net { network: network.to_string() }
    }

    pub fn head(&self, network: &str, n: u64) {
        self.head.get_or_create(&Self::net(network)).set(n as i64);
    }

    pub fn published(&self, network: &str, number: u64, bytes: usize, took: Duration) {
        let l = Self::net(network);
        self.last_published.get_or_create(&l).set(number as i64);
        self.published.get_or_create(&l).inc();
        self.publish_latency.get_or_create(&l).observe(took.as_secs_f64());
        self.block_bytes.get_or_create(&l).observe(bytes as f64);
    }

    pub fn fetched(&self, network: &str, took: Duration) {
        self.fetch_latency.get_or_create(&Self::net(network)).observe(took.as_secs_f64());
    }

    pub fn fetch_error(&self, network: &str, reason: &str) {
        self.fetch_errors.get_or_create(&NetReason { network: network.into(), reason: reason.into() }).inc();
    }

    pub fn reorg(&self, network: &str, depth: u64) {
        self.reorgs.get_or_create(&Self::net(network)).inc();
        self.reorg_depth.get_or_create(&Self::net(network)).set(depth as i64);
    }

    pub fn skipped(&self, network: &str, n: u64) {
        self.skipped.get_or_create(&Self::net(network)).inc_by(n);
    }
}
