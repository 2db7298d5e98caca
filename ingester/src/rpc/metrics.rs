//! Per-endpoint RPC metrics. The `endpoint` label is `host[:port]` of a configured URL, so its
//! values are bounded by the Network's configuration.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Req {
    network: String,
    endpoint: String,
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Err {
    network: String,
    endpoint: String,
    class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Ep {
    network: String,
    endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Rot {
    network: String,
    reason: String,
}

/// RPC metric families.
#[derive(Clone)]
pub struct RpcMetrics {
    requests: Family<Req, Counter>,
    errors: Family<Err, Counter>,
    latency: Family<Ep, Histogram>,
    rotations: Family<Rot, Counter>,
    rate_limited: Family<Ep, Counter>,
    serves_network: Family<Ep, Gauge>,
}

impl Default for RpcMetrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            errors: Family::default(),
            latency: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.005, 2.0, 14))),
            rotations: Family::default(),
            rate_limited: Family::default(),
            serves_network: Family::default(),
        }
    }
}

impl RpcMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("chainwatch_rpc");
        r.register(
            "requests",
            "JSON-RPC HTTP requests sent, by endpoint and method (batch for batches)",
            m.requests.clone(),
        );
        r.register("errors", "Failed JSON-RPC requests by endpoint and error class", m.errors.clone());
        r.register("request_duration_seconds", "JSON-RPC request latency by endpoint", m.latency.clone());
        r.register(
            "rotations",
            "Retries that moved to another endpoint, by the error class that caused it",
            m.rotations.clone(),
        );
        r.register("rate_limited", "HTTP 429 answers by endpoint", m.rate_limited.clone());
        r.register(
            "endpoint_serves_network",
            "1 when the endpoint was verified to serve the Network's chain, 0 when it serves another (out of rotation)",
            m.serves_network.clone(),
        );
        m
    }

    /// An endpoint of the pool: its error and rate-limit series at zero, so an alert sees them
    /// before the first error.
    pub fn endpoint(&self, network: &str, endpoint: &str) {
        for class in super::RpcError::CLASSES {
            let _ = self.errors.get_or_create(&Err {
                network: network.into(),
                endpoint: endpoint.into(),
                class: class.into(),
            });
        }
        let _ = self.rate_limited.get_or_create(&Ep { network: network.into(), endpoint: endpoint.into() });
    }

    pub fn request(&self, network: &str, endpoint: &str, method: &str) {
        self.requests
            .get_or_create(&Req { network: network.into(), endpoint: endpoint.into(), method: method.into() })
            .inc();
    }

    pub fn error(&self, network: &str, endpoint: &str, class: &str) {
        self.errors
            .get_or_create(&Err { network: network.into(), endpoint: endpoint.into(), class: class.into() })
            .inc();
    }

    pub fn latency(&self, network: &str, endpoint: &str, d: Duration) {
        self.latency
            .get_or_create(&Ep { network: network.into(), endpoint: endpoint.into() })
            .observe(d.as_secs_f64());
    }

    pub fn rotation(&self, network: &str, reason: &str) {
        self.rotations.get_or_create(&Rot { network: network.into(), reason: reason.into() }).inc();
    }

    pub fn rate_limited(&self, network: &str, endpoint: &str) {
        self.rate_limited.get_or_create(&Ep { network: network.into(), endpoint: endpoint.into() }).inc();
    }

    pub fn serves_network(&self, network: &str, endpoint: &str, yes: bool) {
        self.serves_network
            .get_or_create(&Ep { network: network.into(), endpoint: endpoint.into() })
            .set(i64::from(yes));
    }

    /// Requests counted so far for an endpoint (all methods): tests and status.
    pub fn requests_to(&self, network: &str, endpoint: &str) -> u64 {
        // Family has no iteration API; callers use the registry text. This helper covers the
        // methods the ingester sends.
        [
            "batch",
            "eth_blockNumber",
            "eth_getBlockByNumber",
            "eth_getBlockReceipts",
            "eth_getTransactionReceipt",
            "eth_chainId",
            "getNetwork",
            "getLatestLedger",
            "getLedgers",
            "getTransactions",
            "getEvents",
        ]
        .iter()
        .map(|m| {
            self.requests
                .get_or_create(&Req {
                    network: network.into(),
                    endpoint: endpoint.into(),
                    method: (*m).into(),
                })
                .get()
        })
        .sum()
    }
}
