//! `Network`: one chain to ingest (cluster-scoped). The operator turns it into an ingester
//! StatefulSet, a worker Deployment with autoscaling and a Kafka topic.

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Condition, DurationString, SecretKeyRef, Time, conditions_schema};

/// A chain to ingest, once, for every tenant. Mirrors OpenZeppelin Monitor's network JSON.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "chainwatch.io",
    version = "v1alpha1",
    kind = "Network",
    plural = "networks",
    status = "NetworkStatus",
    shortname = "cwnet",
    category = "chainwatch",
    doc = "A blockchain network to ingest. The operator runs one block ingester per Network and autoscaled filter workers for it.",
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
    printcolumn(name = "Head", type_ = "integer", json_path = ".status.head"),
    printcolumn(name = "Last Block", type_ = "integer", json_path = ".status.lastBlock"),
    printcolumn(name = "Lag", type_ = "integer", json_path = ".status.lag"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        priority = 1,
        json_path = r#".status.conditions[?(@.type=="Ready")].reason"#
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.pollInterval) && has(self.cronSchedule))")
    .message("set pollInterval or cronSchedule, not both"))]
#[x_kube(validation = Rule::new("self.rpc.exists(e, !has(e.weight) || e.weight > 0)")
    .message("at least one rpc endpoint needs a weight above 0 (weight 0 disables an endpoint)"))]
#[x_kube(validation = Rule::new("self.type != 'stellar' || has(self.networkPassphrase)")
    .message("stellar networks need spec.networkPassphrase, e.g. 'Public Global Stellar Network ; September 2015'"))]
#[x_kube(validation = Rule::new("!has(self.startBlock) || !has(self.backfill)")
    .message("set startBlock or backfill, not both: backfill.from already says where ingestion starts"))]
pub struct NetworkSpec {
    /// Chain family: `evm`, `stellar`, `solana` or `midnight` (OpenZeppelin Monitor `network_type`).
    #[serde(rename = "type")]
    pub chain_type: ChainType,
    /// EVM chain id (OpenZeppelin Monitor `chain_id`). When set, the ingester checks it against
    /// `eth_chainId` and refuses an endpoint that serves another chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_id: Option<u64>,
    /// Stellar network passphrase (OpenZeppelin Monitor `network_passphrase`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_passphrase: Option<String>,
    /// JSON-RPC endpoints. Requests are spread over endpoints in proportion to their weight; an
    /// endpoint that fails is taken out by a circuit breaker and retried later.
    #[schemars(length(min = 1, max = 16))]
    pub rpc: Vec<RpcEndpoint>,
    /// Expected time between blocks (OpenZeppelin Monitor `block_time_ms`), e.g. `12s`. Used for
    /// the default poll interval and for the lag estimate. Default per type: evm 12s, stellar 5s,
    /// solana 400ms, midnight 6s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_time: Option<DurationString>,
    /// Blocks to wait behind the head before a block is ingested (OpenZeppelin Monitor
    /// `confirmation_blocks`). 0 ingests the head at once; reorgs are still detected by parent
    /// hash. Default per type: evm 12, stellar 1, solana 0 (finalized commitment), midnight 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 10000))]
    pub confirmations: Option<u32>,
    /// Which head the EVM ingester follows: `latest` (minus confirmations, default), `safe` or
    /// `finalized` (the chain's own finality tags; confirmations are then not subtracted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finality: Option<Finality>,
    /// Also publish each block when it is first seen at the chain's head, before it reaches the
    /// confirmation depth (or the finality tag), and once more when it does: Monitors with
    /// `notifyAt: [seen, final]` are told at both. Each block is then read from the RPC twice.
    /// Default false: every block is published once, at the confirmation depth.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub publish_seen: bool,
    /// How often the head is polled, e.g. `2s`. Default: half the block time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_interval: Option<DurationString>,
    /// OpenZeppelin Monitor `cron_schedule` (6 fields, seconds first), accepted for imported
    /// configs: the ingester polls at the schedule's interval. Prefer pollInterval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron_schedule: Option<String>,
    /// How far behind the head ingestion may resume after downtime: a block count, or
    /// `unlimited` (default: no block is ever skipped). With a number, older blocks are skipped and
    /// the skipped range is reported in status and in a metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("type(self) == int ? self > 0 : self == 'unlimited'")
        .message("maxPastBlocks must be a positive number of blocks or the string 'unlimited'"))]
    pub max_past_blocks: Option<IntOrString>,
    /// Block to start from when there is no checkpoint yet. Default: the newest confirmed block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_block: Option<u64>,
    /// A range of past blocks to ingest before following the head; `to` may be omitted to mean
    /// "up to the head".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backfill: Option<BlockRange>,
    /// Kafka topic settings for `chainwatch.blocks.<network>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<NetworkKafka>,
    /// Filter workers for this network and their autoscaling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<Workers>,
    /// Ingester pod settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingester: Option<Ingester>,
}

/// Chain family.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChainType {
    /// Ethereum and EVM-compatible chains.
    Evm,
    /// Stellar (Soroban RPC).
    Stellar,
    /// Solana.
    Solana,
    /// Midnight.
    Midnight,
}

impl ChainType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Evm => "evm",
            Self::Stellar => "stellar",
            Self::Solana => "solana",
            Self::Midnight => "midnight",
        }
    }
}

impl std::fmt::Display for ChainType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which head an EVM ingester follows.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Finality {
    /// `eth_blockNumber` minus `confirmations`.
    #[default]
    Latest,
    /// The `safe` block tag.
    Safe,
    /// The `finalized` block tag.
    Finalized,
}

/// One JSON-RPC endpoint.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.url) != has(self.urlSecretRef)")
    .message("set exactly one of url or urlSecretRef"))]
#[x_kube(validation = Rule::new("!has(self.url) || self.url.startsWith('http://') || self.url.startsWith('https://') || self.url.startsWith('ws://') || self.url.startsWith('wss://')")
    .message("url must start with http://, https://, ws:// or wss://"))]
pub struct RpcEndpoint {
    /// Endpoint URL. Use urlSecretRef instead when the URL carries an API key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Endpoint URL from a Secret in the operator's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_secret_ref: Option<SecretKeyRef>,
    /// Share of requests, 0..100 (default 100). 0 disables the endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub weight: Option<u32>,
    /// Per-request timeout. Default `10s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<DurationString>,
}

/// An inclusive block range.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.to) || self.from <= self.to").message("backfill.from must not be after backfill.to"))]
pub struct BlockRange {
    /// First block.
    pub from: u64,
    /// Last block (inclusive). Omit to mean "up to the head".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<u64>,
}

/// Kafka topic settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkKafka {
    /// Partitions of the block topic; also the upper bound of worker replicas. Default 6.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub partitions: Option<i32>,
    /// Replication factor of the block topic. Default: the broker's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10))]
    pub replication_factor: Option<i32>,
    /// How long block records are kept. Default `168h` (7 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<DurationString>,
    /// What happens to the topic when the Network is deleted: `Delete` (default) or `Retain`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<TopicDeletionPolicy>,
}

/// What happens to a Kafka topic when its owner is deleted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum TopicDeletionPolicy {
    /// Delete the topic with the Network.
    #[default]
    Delete,
    /// Keep the topic (and its data).
    Retain,
}

/// Filter workers and their autoscaling.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.minReplicas) || !has(self.maxReplicas) || self.minReplicas <= self.maxReplicas")
    .message("workers.minReplicas must not exceed workers.maxReplicas"))]
pub struct Workers {
    /// Fewest worker replicas. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub min_replicas: Option<i32>,
    /// Most worker replicas; never more than the topic's partitions. Default 4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: Option<i32>,
    /// How replicas are scaled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,
    /// Resources of each worker container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

/// Worker autoscaling.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Autoscaling {
    /// `Auto` (default: KEDA on consumer lag when KEDA is installed, else an HPA on CPU), `Cpu`,
    /// `KafkaLag` (requires KEDA) or `Disabled` (fixed minReplicas).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<AutoscalingMode>,
    /// Target average CPU utilization in percent for the HPA. Default 70.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub target_cpu_utilization: Option<i32>,
    /// Consumer lag (blocks) per replica that KEDA aims for. Default 20.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub lag_threshold: Option<i64>,
}

/// Autoscaling mode.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum AutoscalingMode {
    /// KEDA when its CRD is installed, otherwise CPU.
    #[default]
    Auto,
    /// autoscaling/v2 HorizontalPodAutoscaler on CPU.
    Cpu,
    /// KEDA ScaledObject on Kafka consumer lag.
    KafkaLag,
    /// No autoscaler; minReplicas workers.
    Disabled,
}

/// Ingester pod settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Ingester {
    /// Resources of the ingester container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Size of the volume holding the checkpoint. Default `64Mi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_size: Option<String>,
    /// StorageClass of the checkpoint volume. Default: the cluster default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

/// Observed state. The operator writes `conditions` Ready and TopicReady; the ingester writes the
/// block counters and the RpcReachable and Progressing conditions.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkStatus {
    /// Ready (the pipeline is running and progressing), TopicReady, RpcReachable, Progressing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// The generation the operator last reconciled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Newest block number the RPC reported (before confirmations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<u64>,
    /// Newest block published to Kafka and acknowledged (the checkpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_block: Option<u64>,
    /// head − lastBlock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<u64>,
    /// When lastBlock last advanced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_block_time: Option<Time>,
    /// The Kafka topic carrying this network's blocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// Ranges skipped because of a numeric maxPastBlocks (newest last, at most 10).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped_ranges: Vec<BlockRange>,
    /// The most recent reorg the ingester detected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reorg: Option<ReorgStatus>,
}

/// A reorg seen by the ingester.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReorgStatus {
    /// First replaced block.
    pub from_block: u64,
    /// Number of replaced blocks.
    pub depth: u64,
    /// When it was detected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Time>,
}

/// Network condition types (besides Ready).
pub mod conditions {
    /// The Kafka topic exists with the requested partitions (operator).
    pub const TOPIC_READY: &str = "TopicReady";
    /// At least one RPC endpoint answers (ingester).
    pub const RPC_REACHABLE: &str = "RpcReachable";
    /// The checkpoint advances with the head (ingester).
    pub const PROGRESSING: &str = "Progressing";
    /// The Kafka broker answers and takes the blocks (ingester).
    pub const BROKER_REACHABLE: &str = "BrokerReachable";
    /// Every enabled endpoint serves the Network's chain (ingester).
    pub const ENDPOINTS_VERIFIED: &str = "EndpointsVerified";
}
